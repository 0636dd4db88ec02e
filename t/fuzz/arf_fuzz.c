/*
 * arf_fuzz.c — libFuzzer harness: the complaint-report parser
 * (mta/receive/arf.c) and the identifier's opener (arf_id.c) on arbitrary
 * bytes.  Properties checked: a report that parses has a Feedback-Type
 * and a returned message; every string it keeps is NUL-terminated inside
 * its buffer and free of control characters; opening any identifier value
 * either fails or yields NUL-terminated fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mta/receive/arf.h"
#include "t/fuzz/fuzz_check.h"

static const uint8_t fuzz_key[32] = { 7 };

static void
fuzz_clean(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap), i;

	FUZZ_CHECK(n < cap);
	for (i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

#define CLEAN(f) fuzz_clean((f), sizeof(f))

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arf_report r;
	struct arf_id id;
	char err[120], value[ARF_ID_VALUE_MAX];
	size_t n;

	if (arf_parse(data, size, &r, err, sizeof(err)) == 0) {
		FUZZ_CHECK(r.feedback_type[0] != '\0');
		CLEAN(r.feedback_type);
		CLEAN(r.user_agent);
		CLEAN(r.version);
		CLEAN(r.original_rcpt_to);
		CLEAN(r.original_mail_from);
		CLEAN(r.arrival_date);
		CLEAN(r.source_ip);
		CLEAN(r.reported_domain);
		CLEAN(r.fb_id);
		CLEAN(r.feedback_id);
		CLEAN(r.returned_to);
		CLEAN(r.hotmail_rcpt);
		if (arf_id_open(fuzz_key, r.fb_id, &id) == 0)
			CLEAN(id.identity);
	} else {
		FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err) &&
			   err[0] != '\0');
	}
	/* The opener alone, on the input as a value. */
	n = size < sizeof(value) - 1 ? size : sizeof(value) - 1;
	memcpy(value, data, n);
	value[n] = '\0';
	if (arf_id_open(fuzz_key, value, &id) == 0) {
		CLEAN(id.identity);
		CLEAN(id.campaign);
		CLEAN(id.rcpt);
	}
	return 0;
}
