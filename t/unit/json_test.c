/*
 * json_test.c — mta/core/json.h, the one JSON string escaper that the
 * delivery log, the control socket's views and audit log and the `outpost`
 * command share: rows pin each rule; every form (json_escape into a bounded
 * buffer, json_cat, json_put onto a FILE) gives the same bytes as the
 * reference below, which is the escaper control_view.c and the CLI each
 * kept before (the delivery log's agreed with it on every input); the
 * terminal form and the delivery log's cut are checked the same way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/core/json.h"

/* The escapers as they were (control_view.c's cv_utf8_len and
 * cv_text_put), byte by byte: the reference. */
static size_t
ref_utf8_len(const unsigned char *s, uint32_t *cp)
{
	size_t n, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return n;
}

static void
ref_text_put(FILE *f, const char *s, bool json)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	size_t n;

	if (json)
		fputc('"', f);
	while (*p != '\0') {
		if ((n = ref_utf8_len(p, &cp)) == 0) {
			if (json)
				fputs("\\ufffd", f);
			else
				fprintf(f, "\\x%02x", *p);
			p++;
			continue;
		}
		if (json && (cp == '"' || cp == '\\'))
			fprintf(f, "\\%c", (char)cp);
		else if (cp < 0x20 || cp == 0x7f ||
			 (!json && cp >= 0x80 && cp < 0xa0))
			fprintf(f, json ? "\\u%04x" : "\\x%02x", (unsigned)cp);
		else
			fwrite(p, 1, n, f);
		p += n;
	}
	if (json)
		fputc('"', f);
}

/* What a FILE writer printed, NUL-terminated (free it). */
struct capture {
	FILE *f;
	char *buf;
	size_t len;
};

static void
capture_open(struct capture *c)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
}

static char *
capture_close(struct capture *c)
{
	assert_int_equal(fclose(c->f), 0);
	return c->buf;
}

static char *
ref_json(const char *s)
{
	struct capture c;

	capture_open(&c);
	ref_text_put(c.f, s, true);
	return capture_close(&c);
}

static char *
put_json(const char *s)
{
	struct capture c;

	capture_open(&c);
	json_put(c.f, s);
	return capture_close(&c);
}

static char *
put_term(const char *s, bool ref)
{
	struct capture c;

	capture_open(&c);
	if (ref)
		ref_text_put(c.f, s, false);
	else
		json_term_put(c.f, s);
	return capture_close(&c);
}

static const struct json_row {
	const char *name, *in;
	size_t len; /* 0: strlen(in) */
	const char *want;
} json_rows[] = {
	{ "plain", "queue example.org", 0, "queue example.org" },
	{ "quote, backslash, slash kept", "a\"b\\c/d", 0, "a\\\"b\\\\c/d" },
	{ "controls and DEL", "\t\r\n\x1b\x7f", 0,
	  "\\u0009\\u000d\\u000a\\u001b\\u007f" },
	{ "C1 control is valid UTF-8: kept", "\xc2\x85", 0, "\xc2\x85" },
	{ "2, 3, 4 bytes kept", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 0,
	  "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" },
	{ "highest code point", "\xf4\x8f\xbf\xbf", 0, "\xf4\x8f\xbf\xbf" },
	{ "one U+FFFD per byte that starts nothing", "\xe2\x82x", 0,
	  "\\ufffd\\ufffdx" },
	{ "overlong NUL", "\xc0\x80", 0, "\\ufffd\\ufffd" },
	{ "overlong 4 bytes", "\xf0\x8f\xbf\xbf", 0,
	  "\\ufffd\\ufffd\\ufffd\\ufffd" },
	{ "surrogate", "\xed\xb0\x80", 0, "\\ufffd\\ufffd\\ufffd" },
	/* The delivery log escapes fields by length, the other writers C
	 * strings: a NUL inside a length is \u0000, never an end. */
	{ "NUL inside a length", "a\0b", 3, "a\\u0000b" },
	/* A sequence cut by the end of the length is not completed by the
	 * bytes past it. */
	{ "sequence cut by the length", "\xc3\xa9", 1, "\\ufffd" },
};

static void
test_rows(void **state)
{
	char out[256];
	size_t i, len, used, n;

	(void)state;
	for (i = 0; i < sizeof(json_rows) / sizeof(json_rows[0]); i++) {
		const struct json_row *r = &json_rows[i];

		len = r->len != 0 ? r->len : strlen(r->in);
		n = json_escape(r->in, len, out, sizeof(out), &used);
		if (n != strlen(r->want) || memcmp(out, r->want, n) != 0 ||
		    used != len)
			fail_msg("%s: got %.*s (%zu of %zu bytes), want %s",
				 r->name, (int)n, out, used, len, r->want);
	}
}

/* json_put: NULL is null; a string longer than its chunk is whole. */
static void
test_put(void **state)
{
	char *got, big[2000];
	size_t i;

	(void)state;
	got = put_json(NULL);
	assert_string_equal(got, "null");
	free(got);
	/* 3-byte characters and escapes across every chunk boundary. */
	for (i = 0; i + 4 < sizeof(big); i += 4)
		memcpy(big + i, i % 12 == 0 ? "\"\xe2\x82\xac" : "ab\xe2\x82",
		       4);
	big[i] = '\0';
	for (i = 0; i < 8; i++) {
		char *want = ref_json(big + i);

		got = put_json(big + i);
		assert_string_equal(got, want);
		free(got);
		free(want);
	}
}

/* Random bytes, weighted to the interesting ones: json_put, json_cat and
 * json_escape give what the reference gives, and the terminal form too. */
static void
test_same_as_before(void **state)
{
	static const unsigned char pick[] = { 'a',  ' ',  '"',  '\\', 0x01,
					      0x7f, 0x80, 0x9f, 0xa0, 0xbf,
					      0xc2, 0xc3, 0xe0, 0xed, 0xef,
					      0xf0, 0xf4, 0xff };
	char in[40], cat[512], *want, *got;
	uint32_t seed = 12345;
	size_t i, k, n, off;

	(void)state;
	for (i = 0; i < 20000; i++) {
		n = i % 39;
		for (k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			in[k] = (char)pick[(seed >> 16) % sizeof(pick)];
		}
		in[n] = '\0';
		want = ref_json(in);
		got = put_json(in);
		if (strcmp(got, want) != 0)
			fail_msg("json_put: got %s, want %s", got, want);
		free(got);
		off = 0;
		json_cat(cat, sizeof(cat), &off, in);
		if (strcmp(cat, want) != 0 || off != strlen(cat))
			fail_msg("json_cat: got %s, want %s", cat, want);
		free(want);
		want = put_term(in, true);
		got = put_term(in, false);
		if (strcmp(got, want) != 0)
			fail_msg("json_term_put: got %s, want %s", got, want);
		free(got);
		free(want);
	}
}

/* The terminal form: no byte that a terminal acts on gets through. */
static void
test_term(void **state)
{
	char *got;

	(void)state;
	got = put_term("a\"b\\ \x1b[2J \xc2\x9b \xc3\xa9 \xff\x7f", false);
	assert_string_equal(got, "a\"b\\ \\x1b[2J \\x9b \xc3\xa9 \\xff\\x7f");
	free(got);
}

/* Bytes the first character of S (LEN > 0) takes escaped. */
static size_t
next_width(const char *s, size_t len)
{
	char tmp[JSON_CHAR_MAX];
	size_t m, used;

	for (m = 1; m < JSON_CHAR_MAX; m++)
		if (json_escape(s, len, tmp, m, &used) > 0)
			return m;
	return JSON_CHAR_MAX;
}

/*
 * A bounded buffer (the delivery log's line): cut between characters,
 * never inside one, *used says where, and every prefix that fits is as
 * long as it can be.
 */
static void
test_cut(void **state)
{
	static const char in[] = "ab\xe2\x82\xac\"\x01\xff"
				 "cd";
	char out[64], whole[64], again[64];
	size_t outlen, n, used, all, allused;

	(void)state;
	all = json_escape(in, sizeof(in) - 1, whole, sizeof(whole), &allused);
	assert_int_equal(allused, sizeof(in) - 1);
	assert_int_equal(all, strlen("ab\xe2\x82\xac\\\"\\u0001\\ufffdcd"));
	for (outlen = 0; outlen <= all; outlen++) {
		memset(out, 'X', sizeof(out));
		n = json_escape(in, sizeof(in) - 1, out, outlen, &used);
		assert_true(n <= outlen);
		assert_int_equal(out[outlen], 'X');
		/* What is written is the start of the whole... */
		assert_memory_equal(out, whole, n);
		/* ...and stands for exactly USED bytes of the input. */
		assert_int_equal(
		    json_escape(in, used, again, sizeof(again), &allused), n);
		/* The next character would not have fit. */
		if (used < sizeof(in) - 1)
			assert_true(
			    n + next_width(in + used, sizeof(in) - 1 - used) >
			    outlen);
	}
}

static void
test_time(void **state)
{
	char buf[40];

	(void)state;
	json_time_fmt(INT64_C(1704164645678), true, buf, sizeof(buf));
	assert_string_equal(buf, "2024-01-02T03:04:05.678Z");
	json_time_fmt(INT64_C(1704164645678), false, buf, sizeof(buf));
	assert_string_equal(buf, "2024-01-02 03:04:05");
	json_time_fmt(-1, true, buf, sizeof(buf));
	assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
	json_time_fmt(INT64_C(1704164645678), true, buf, 10);
	assert_string_equal(buf, "");
}

/* The audit record: its fields in order, escaped; a long command is cut
 * yet the line still closes (one JSON object per line). */
static void
test_audit_record(void **state)
{
	char buf[160], big[400];
	size_t n;

	(void)state;
	n = json_audit_record(buf, sizeof(buf), 1700000000123LL, 995, 42,
			      "op\"s", "hold id 0123456789abcdef", "ok 1");
	assert_string_equal(
	    buf,
	    "{\"time\":\"2023-11-14T22:13:20.123Z\",\"time_ms\":"
	    "1700000000123,\"uid\":995,\"pid\":42,\"user\":\"op\\\"s\","
	    "\"command\":\"hold id 0123456789abcdef\",\"result\":\"ok 1\"}\n");
	assert_int_equal(n, strlen(buf));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = json_audit_record(buf, sizeof(buf), 0, 0, 1, "root", big, "ok");
	assert_true(n < sizeof(buf));
	assert_int_equal(n, strlen(buf));
	assert_memory_equal(buf + n - 2, "}\n", 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_same_as_before),
		cmocka_unit_test(test_term),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_audit_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
