/*
 * tlsrpt_test.c — the TLSRPT TXT record's rua list (RFC 8460 section 3),
 * table-driven (mta/deliver/tlsrpt.c, tlsrpt_txt_rua).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mta/deliver/tlsrpt.h"

static const struct rua_case {
	const char *txt;
	int rc;
	const char *want[3];
} cases[] = {
	{ "v=TLSRPTv1; rua=mailto:tls@example.com",
	  1,
	  { "mailto:tls@example.com" } },
	{ "v=TLSRPTv1;rua=mailto:a@x.test,https://r.x.test/v1",
	  2,
	  { "mailto:a@x.test", "https://r.x.test/v1" } },
	{ " v=TLSRPTv1 ; rua=https://r.test/a , mailto:b@c.test ;",
	  2,
	  { "https://r.test/a", "mailto:b@c.test" } },
	{ "v=TLSRPTv1; ext=1; rua=mailto:a@b.test; rua=mailto:c@d.test",
	  1,
	  { "mailto:a@b.test" } }, /* the first rua counts */
	{ "v=spf1 -all", 0, { NULL } },
	{ "rua=mailto:a@b.test; v=TLSRPTv1", 0, { NULL } },
	{ "", 0, { NULL } },
	{ "v=TLSRPTv1;", -1, { NULL } },                     /* no rua */
	{ "v=TLSRPTv1; rua=", -1, { NULL } },                /* empty */
	{ "v=TLSRPTv1; rua=http://r.test/a", -1, { NULL } }, /* not https */
	{ "v=TLSRPTv1; rua=ftp://r.test/a", -1, { NULL } },
	{ "v=TLSRPTv1; rua=mailto:", -1, { NULL } },
};

static void
test_rua(void **state)
{
	size_t i;
	int k;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct rua_case *c = &cases[i];
		const char *uris[4];
		char buf[256];
		int rc = tlsrpt_txt_rua(c->txt, strlen(c->txt), buf,
					sizeof(buf), uris, 4);

		if (rc != c->rc)
			fail_msg("\"%s\": rc %d, want %d", c->txt, rc, c->rc);
		for (k = 0; k < rc; k++)
			if (strcmp(uris[k], c->want[k]) != 0)
				fail_msg("\"%s\": uri %d \"%s\", want \"%s\"",
					 c->txt, k, uris[k], c->want[k]);
	}
}

static void
test_rua_limits(void **state)
{
	static const char txt[] = "v=TLSRPTv1; rua=mailto:a@b.test,"
				  "mailto:c@d.test,mailto:e@f.test";
	static const char nul[] = "v=TLSRPTv1; rua=mailto:a@b.test\0x";
	const char *uris[2];
	char buf[16];
	char big[256];

	(void)state;
	/* at most MAX URIs kept */
	assert_int_equal(
	    tlsrpt_txt_rua(txt, sizeof(txt) - 1, big, sizeof(big), uris, 2), 2);
	/* a record larger than the buffer, or with a NUL: refused */
	assert_int_equal(
	    tlsrpt_txt_rua(txt, sizeof(txt) - 1, buf, sizeof(buf), uris, 2),
	    -1);
	assert_int_equal(
	    tlsrpt_txt_rua(nul, sizeof(nul) - 1, big, sizeof(big), uris, 2),
	    -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rua),
		cmocka_unit_test(test_rua_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
