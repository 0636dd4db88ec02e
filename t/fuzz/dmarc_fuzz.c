/*
 * dmarc_fuzz.c — libFuzzer harness for dkim/dmarc.c on untrusted bytes.
 * Every input is used three ways: as a DMARC TXT record
 * (dmarc_record_parse), as the value of a lone From field ("From:" + input,
 * any octet included) and as a header block through dkim_msg_parse().  A
 * From domain that comes out must be a clean name: at most 253 octets, no
 * ASCII upper case, no octet a domain cannot hold; its org domain must be a
 * suffix of it on a label boundary and align with it.  Seeds:
 * t/fuzz/corpus/dmarc.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/dkim.h"
#include "t/fuzz/fuzz_check.h"

#define FUZZ_FROM_MAX (64 * 1024)

static void
fuzz_check_domain(const char *dom)
{
	char org[256];
	size_t n = strlen(dom), o, i;

	FUZZ_CHECK(n > 0 && n <= 253);
	FUZZ_CHECK(dom[0] != '.' && dom[n - 1] != '.');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)dom[i];

		FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
		FUZZ_CHECK(c >= 0x80 || (c >= 'a' && c <= 'z') ||
			   (c >= '0' && c <= '9') || c == '-' || c == '_' ||
			   (c == '.' && dom[i + 1] != '.'));
	}
	dmarc_org_domain(dom, org, sizeof(org));
	o = strlen(org);
	FUZZ_CHECK(o > 0 && o <= n);
	FUZZ_CHECK(strcmp(dom + n - o, org) == 0);
	FUZZ_CHECK(o == n || dom[n - o - 1] == '.');
	FUZZ_CHECK(dmarc_aligned(dom, org, false));
	FUZZ_CHECK(dmarc_aligned(dom, dom, true));
	FUZZ_CHECK(dmarc_aligned(dom, org, true) == (o == n));
}

static void
fuzz_record(const uint8_t *data, size_t size)
{
	struct dmarc_record r;

	if (dmarc_record_parse((const char *)data, size, &r) == 0) {
		FUZZ_CHECK(r.p <= DMARC_P_REJECT && r.sp <= DMARC_P_REJECT);
		FUZZ_CHECK(r.sp_set || r.sp == r.p);
		FUZZ_CHECK(r.pct <= 100);
		FUZZ_CHECK(strcmp(dmarc_policy_str(r.p), "?") != 0);
	} else {
		FUZZ_CHECK(r.p == DMARC_P_NONE && r.pct == 100);
	}
}

/* The input as the value of the only field of a message. */
static void
fuzz_from_field(const uint8_t *data, size_t size)
{
	struct dkim_header h;
	struct dkim_msg m;
	char dom[256], err[128], *field;

	if (size > FUZZ_FROM_MAX || (field = malloc(size + 5)) == NULL)
		return;
	memcpy(field, "From:", 5);
	memcpy(field + 5, data, size);
	h.field = field;
	h.len = size + 5;
	h.name_len = 4;
	memset(&m, 0, sizeof(m));
	m.hdrs = &h;
	m.nhdrs = 1;
	err[0] = '\0';
	if (dmarc_from_domain(&m, dom, sizeof(dom), err, sizeof(err)) == 0)
		fuzz_check_domain(dom);
	else
		FUZZ_CHECK(dom[0] == '\0' && err[0] != '\0');
	free(field);
}

static void
fuzz_message(const uint8_t *data, size_t size)
{
	struct dkim_msg m;
	char dom[256], err[128];

	if (dkim_msg_parse(data, size, &m, err, sizeof(err)) != 0)
		return;
	if (dmarc_from_domain(&m, dom, sizeof(dom), err, sizeof(err)) == 0)
		fuzz_check_domain(dom);
	dkim_msg_clear(&m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char err[128];

	if (!ready) {
		if (dmarc_init(NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "dmarc_init: %s\n", err);
			abort();
		}
		ready = true;
	}
	fuzz_record(data, size);
	fuzz_from_field(data, size);
	fuzz_message(data, size);
	return 0;
}
