/*
 * mtasts_test.c — MTA-STS's pure parts (mta/deliver/mtasts.c), table-driven:
 * the policy file parser (RFC 8461 section 3.2), the TXT record's id
 * (section 3.1) and MX pattern matching (section 4.1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/deliver/mtasts.h"

static const struct parse_case {
	const char *name, *text;
	int rc;
	enum mtasts_mode mode;
	uint32_t max_age;
	size_t nmx;
	const char *why; /* a part of the error */
} parse_cases[] = {
	{ "enforce, CRLF",
	  "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
	  "mx: *.example.net\r\nmax_age: 86400\r\n",
	  0, MTASTS_ENFORCE, 86400, 2, NULL },
	{ "testing, LF, no final line end",
	  "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 604800",
	  0, MTASTS_TESTING, 604800, 1, NULL },
	{ "none needs no mx", "version: STSv1\nmode: none\nmax_age: 1\n", 0,
	  MTASTS_NONE, 1, 0, NULL },
	{ "blanks around values, unknown keys ignored",
	  "version:STSv1  \nmode:\tenforce\nextension: whatever\n"
	  "mx:   MX.Example.COM \nmax_age: 0\n",
	  0, MTASTS_ENFORCE, 0, 1, NULL },
	{ "first of a repeated key counts",
	  "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\n"
	  "max_age: 5\nmax_age: x\n",
	  0, MTASTS_TESTING, 5, 1, NULL },
	{ "no version", "mode: enforce\nmx: a.example\nmax_age: 5\n", -1, 0, 0,
	  0, "version missing" },
	{ "wrong version", "version: STSv2\nmode: enforce\nmx: a\nmax_age: 5\n",
	  -1, 0, 0, 0, "STSv1" },
	{ "bad mode", "version: STSv1\nmode: strict\nmx: a\nmax_age: 5\n", -1,
	  0, 0, 0, "mode" },
	{ "no max_age", "version: STSv1\nmode: enforce\nmx: a\n", -1, 0, 0, 0,
	  "max_age missing" },
	{ "max_age over a year",
	  "version: STSv1\nmode: enforce\nmx: a\nmax_age: 31557601\n", -1, 0, 0,
	  0, "max_age" },
	{ "max_age not a number",
	  "version: STSv1\nmode: enforce\nmx: a\nmax_age: -5\n", -1, 0, 0, 0,
	  "max_age" },
	{ "enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 5\n",
	  -1, 0, 0, 0, "no mx" },
	{ "mx not a host name",
	  "version: STSv1\nmode: enforce\nmx: mail..example\nmax_age: 5\n", -1,
	  0, 0, 0, "mx pattern" },
	{ "wildcard in the middle",
	  "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 5\n", -1, 0,
	  0, 0, "mx pattern" },
	{ "a line without a colon",
	  "version: STSv1\nmode enforce\nmx: a\nmax_age: 5\n", -1, 0, 0, 0,
	  "key" },
	{ "HTML instead of a policy", "<html><body>hello</body></html>\n", -1,
	  0, 0, 0, "key" },
};

static void
test_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct mtasts_policy p;
		char err[200] = "";
		int rc = mtasts_policy_parse(c->text, strlen(c->text), &p, err,
					     sizeof(err));

		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc,
				 err);
		if (rc != 0) {
			if (strstr(err, c->why) == NULL)
				fail_msg("%s: error \"%s\" lacks \"%s\"",
					 c->name, err, c->why);
			assert_int_equal(p.nmx, 0);
			continue;
		}
		if (p.mode != c->mode || p.max_age_s != c->max_age ||
		    p.nmx != c->nmx)
			fail_msg("%s: mode %d max_age %u nmx %zu", c->name,
				 p.mode, p.max_age_s, p.nmx);
		mtasts_policy_clear(&p);
	}
}

static void
test_parse_nul_and_size(void **state)
{
	static const char t[] = "version: STSv1\nmode: none\0x\nmax_age: 5\n";
	struct mtasts_policy p;
	char err[100];

	(void)state;
	assert_int_equal(
	    mtasts_policy_parse(t, sizeof(t) - 1, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NUL"));
}

/* The policy as fetched: LEN bytes exactly, no NUL after them (under
 * ASan's strict_string_checks a string read past them is an error). */
static void
test_parse_unterminated(void **state)
{
	static const char t[] = "version: STSv1\r\nmode: enforce\r\n"
				"max_age: 600\r\nmx: mail.example.com";
	struct mtasts_policy p;
	char err[100], *buf = malloc(sizeof(t) - 1);

	(void)state;
	assert_non_null(buf);
	memcpy(buf, t, sizeof(t) - 1);
	assert_int_equal(
	    mtasts_policy_parse(buf, sizeof(t) - 1, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nmx, 1);
	assert_string_equal(p.mx[0], "mail.example.com");
	mtasts_policy_clear(&p);
	free(buf);
}

static const struct txt_case {
	const char *txt;
	int rc;
	const char *id;
} txt_cases[] = {
	{ "v=STSv1; id=20160831085700Z;", 1, "20160831085700Z" },
	{ "v=STSv1;id=abc", 1, "abc" },
	{ "  v=STSv1 ;  id=X1 ; ext=1 ", 1, "X1" },
	{ "v=spf1 -all", 0, NULL },
	{ "id=abc; v=STSv1", 0, NULL },
	{ "", 0, NULL },
	{ "v=STSv1;", -1, NULL },
	{ "v=STSv1; id=bad-id", -1, NULL },
	{ "v=STSv1; id=123456789012345678901234567890123", -1, NULL },
	{ "v=STSv1; id=12345678901234567890123456789012", 1,
	  "12345678901234567890123456789012" },
};

static void
test_txt_id(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(txt_cases) / sizeof(txt_cases[0]); i++) {
		const struct txt_case *c = &txt_cases[i];
		char id[MTASTS_ID_MAX + 1] = "";
		int rc = mtasts_txt_id(c->txt, strlen(c->txt), id);

		if (rc != c->rc)
			fail_msg("\"%s\": rc %d, want %d", c->txt, rc, c->rc);
		if (rc == 1 && strcmp(id, c->id) != 0)
			fail_msg("\"%s\": id %s, want %s", c->txt, id, c->id);
	}
}

static void
test_mx_match(void **state)
{
	char *pats[] = { "mail.example.com", "*.example.net" };
	struct mtasts_policy p = { .mode = MTASTS_ENFORCE,
				   .mx = pats,
				   .nmx = 2 };
	static const struct {
		const char *host;
		bool want;
	} cases[] = {
		{ "mail.example.com", true },
		{ "MAIL.Example.COM.", true },
		{ "mx1.example.net", true },
		{ "example.net", false },     /* the wildcard needs a label */
		{ "a.b.example.net", false }, /* … exactly one */
		{ "other.example.com", false },
		{ "mail.example.com.evil", false },
		{ "xmail.example.com", false },
		{ "", false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (mtasts_mx_match(&p, cases[i].host) != cases[i].want)
			fail_msg("%s: want %d", cases[i].host, cases[i].want);
}

static void
test_copy(void **state)
{
	static const char t[] = "version: STSv1\nmode: enforce\nmx: a.example\n"
				"mx: *.b.example\nmax_age: 60\n";
	struct mtasts_policy p, q;
	char err[100];

	(void)state;
	assert_int_equal(
	    mtasts_policy_parse(t, sizeof(t) - 1, &p, err, sizeof(err)), 0);
	assert_int_equal(mtasts_policy_copy(&q, &p), 0);
	mtasts_policy_clear(&p);
	assert_int_equal(q.nmx, 2);
	assert_string_equal(q.mx[1], "*.b.example");
	assert_true(mtasts_mx_match(&q, "x.b.example"));
	mtasts_policy_clear(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_nul_and_size),
		cmocka_unit_test(test_parse_unterminated),
		cmocka_unit_test(test_txt_id),
		cmocka_unit_test(test_mx_match),
		cmocka_unit_test(test_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
