/*
 * spf_fuzz.c — libFuzzer harness for the pure half of dkim/spf.c on
 * untrusted bytes.  Every input is used as an SPF TXT record
 * (spf_record_parse: a parsed record's terms must be sane: known kinds,
 * CIDR lengths in range, domain-specs non-empty and printable) and, up to
 * its first NUL, as a domain-spec for spf_macro_expand (a result is a name
 * of at most 253 octets).  Seeds: t/fuzz/corpus/spf.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dkim/dkim.h"
#include "t/fuzz/fuzz_check.h"

static void
fuzz_check_spec(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return;
	n = strlen(s);
	FUZZ_CHECK(n > 0);
	for (i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)s[i] >= 0x21 &&
			   (unsigned char)s[i] <= 0x7e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spf_record r;
	struct sockaddr_storage ss;
	char err[160], out[300], *spec;
	size_t i;

	if (spf_record_parse((const char *)data, size, &r, err, sizeof(err)) ==
	    0) {
		FUZZ_CHECK(spf_record_is((const char *)data, size));
		for (i = 0; i < r.nterms; i++) {
			const struct spf_term *t = &r.terms[i];

			FUZZ_CHECK(t->kind <= SPF_T_EXISTS);
			FUZZ_CHECK(t->qual == SPF_PASS || t->qual == SPF_FAIL ||
				   t->qual == SPF_SOFTFAIL ||
				   t->qual == SPF_NEUTRAL);
			FUZZ_CHECK(t->cidr4 <= 32 && t->cidr6 <= 128);
			fuzz_check_spec(t->spec);
			FUZZ_CHECK(t->spec != NULL ||
				   (t->kind != SPF_T_INCLUDE &&
				    t->kind != SPF_T_EXISTS));
		}
		fuzz_check_spec(r.redirect);
		spf_record_clear(&r);
	} else
		FUZZ_CHECK(err[0] != '\0');

	if ((spec = malloc(size + 1)) == NULL)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = size > 0 && (data[0] & 1) ? AF_INET6 : AF_INET;
	{
		struct spf_macro_env e = {
			.local = "a-b.c",
			.sender_domain = "example.test",
			.domain = "sub.example.test",
			.ip = &ss,
			.helo = "mx.example.test",
		};
		bool sender = false;

		if (spf_macro_expand(spec, &e, out, sizeof(out), &sender) == 0)
			FUZZ_CHECK(strlen(out) <= 253);
	}
	free(spec);
	return 0;
}
