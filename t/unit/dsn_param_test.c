/*
 * dsn_param_test.c — the DSN parameters of MAIL and RCPT (RFC 3461),
 * mta/receive/dsn_param.c: xtext decoding, ENVID and ORCPT bounds, NOTIFY
 * lists, RET.  Table-driven: every malformed form is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue/queue.h"
#include "mta/receive/dsn_param.h"

static void
test_xtext(void **state)
{
	static const struct {
		const char *in, *want; /* want NULL: refused */
	} cases[] = {
		{ "abc", "abc" },
		{ "QQ314159", "QQ314159" },
		{ "a+2Bb", "a+b" },
		{ "a+3Db", "a=b" },
		{ "sp+20ace", "sp ace" },
		{ "+41+42", "AB" },
		{ "", "" },
		{ "a+2b", NULL },      /* hex digits are upper case */
		{ "a+2", NULL },       /* cut short */
		{ "a+", NULL },        /* cut short */
		{ "a+G0", NULL },      /* not hex */
		{ "a=b", NULL },       /* '=' must be encoded */
		{ "a b", NULL },       /* space must be encoded */
		{ "a\x7f", NULL },     /* DEL */
		{ "a\xc3\xa9", NULL }, /* 8-bit */
		{ "a+0D+0A", NULL },   /* decodes to a control character */
		{ "a+00", NULL },      /* NUL */
		{ "a+FF", NULL },      /* 8-bit, decoded */
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dsn_param_xtext(cases[i].in, out, sizeof(out));

		if (cases[i].want == NULL) {
			if (rc == 0)
				fail_msg("case %zu (%s): accepted as %s", i,
					 cases[i].in, out);
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu (%s): refused", i, cases[i].in);
		assert_string_equal(out, cases[i].want);
	}
	/* Too small an output buffer fails, never overflows. */
	assert_int_equal(dsn_param_xtext("abcdef", out, 4), -1);
}

static void
test_envid(void **state)
{
	char in[DSN_ENVID_MAX_BYTES + 2], *out = NULL;

	(void)state;
	assert_int_equal(dsn_param_envid("QQ314159+20x", &out), 0);
	assert_string_equal(out, "QQ314159 x");
	free(out);
	memset(in, 'e', DSN_ENVID_MAX_BYTES);
	in[DSN_ENVID_MAX_BYTES] = '\0';
	assert_int_equal(dsn_param_envid(in, &out), 0); /* at the limit */
	assert_int_equal(strlen(out), DSN_ENVID_MAX_BYTES);
	free(out);
	in[DSN_ENVID_MAX_BYTES] = 'e';
	in[DSN_ENVID_MAX_BYTES + 1] = '\0';
	out = NULL;
	assert_int_equal(dsn_param_envid(in, &out), -1); /* over */
	assert_null(out);
	assert_int_equal(dsn_param_envid("", &out), -1);
	assert_int_equal(dsn_param_envid("a+zz", &out), -1);
	assert_null(out);
}

static void
test_notify(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint8_t want;
	} cases[] = {
		{ "NEVER", 0, QUEUE_NOTIFY_NEVER },
		{ "never", 0, QUEUE_NOTIFY_NEVER },
		{ "SUCCESS", 0, QUEUE_NOTIFY_SUCCESS },
		{ "FAILURE", 0, QUEUE_NOTIFY_FAILURE },
		{ "DELAY", 0, QUEUE_NOTIFY_DELAY },
		{ "SUCCESS,FAILURE", 0,
		  QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE },
		{ "FAILURE,DELAY,SUCCESS", 0, 0x07 },
		{ "NEVER,FAILURE", -1, 0 },
		{ "FAILURE,NEVER", -1, 0 },
		{ "FAILURE,FAILURE", -1, 0 },
		{ "", -1, 0 },
		{ ",", -1, 0 },
		{ "FAILURE,", -1, 0 },
		{ ",FAILURE", -1, 0 },
		{ "FAIL", -1, 0 },
		{ "FAILURES", -1, 0 },
		{ "SUCCESS FAILURE", -1, 0 },
	};
	uint8_t v;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v = 0xff;
		if (dsn_param_notify(cases[i].in, &v) != cases[i].rc)
			fail_msg("case %zu (%s): rc", i, cases[i].in);
		if (cases[i].rc == 0)
			assert_int_equal(v, cases[i].want);
	}
}

static void
test_orcpt(void **state)
{
	char in[DSN_ORCPT_MAX_BYTES + 2], *out = NULL;

	(void)state;
	assert_int_equal(dsn_param_orcpt("rfc822;a+2Bb@example.org", &out), 0);
	assert_string_equal(out, "rfc822;a+b@example.org");
	free(out);
	assert_int_equal(dsn_param_orcpt("RFC822;x@y", &out), 0);
	assert_string_equal(out, "RFC822;x@y");
	free(out);
	out = NULL;
	assert_int_equal(dsn_param_orcpt("rfc822", &out), -1);   /* no ';' */
	assert_int_equal(dsn_param_orcpt(";a@b", &out), -1);     /* no type */
	assert_int_equal(dsn_param_orcpt("rfc822;", &out), -1);  /* no addr */
	assert_int_equal(dsn_param_orcpt("rf c;a@b", &out), -1); /* not atom */
	assert_int_equal(dsn_param_orcpt("rfc822;a=b@c", &out), -1);
	assert_null(out);
	memcpy(in, "rfc822;", 7);
	memset(in + 7, 'o', DSN_ORCPT_MAX_BYTES - 7);
	in[DSN_ORCPT_MAX_BYTES] = '\0';
	assert_int_equal(dsn_param_orcpt(in, &out), 0); /* at the limit */
	free(out);
	out = NULL;
	in[DSN_ORCPT_MAX_BYTES] = 'o';
	in[DSN_ORCPT_MAX_BYTES + 1] = '\0';
	assert_int_equal(dsn_param_orcpt(in, &out), -1);
	assert_null(out);
}

static void
test_ret(void **state)
{
	uint32_t f;

	(void)state;
	assert_int_equal(dsn_param_ret("FULL", &f), 0);
	assert_int_equal(f, QUEUE_F_RET_FULL);
	assert_int_equal(dsn_param_ret("hdrs", &f), 0);
	assert_int_equal(f, QUEUE_F_RET_HDRS);
	assert_int_equal(dsn_param_ret("", &f), -1);
	assert_int_equal(dsn_param_ret("HEADERS", &f), -1);
	assert_int_equal(dsn_param_ret("FULL,HDRS", &f), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xtext),  cmocka_unit_test(test_envid),
		cmocka_unit_test(test_notify), cmocka_unit_test(test_orcpt),
		cmocka_unit_test(test_ret),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
