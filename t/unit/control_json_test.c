/*
 * control_json_test.c — the JSON string escaper of the control socket's
 * records (json_cat of mta/core/json.h, with which control_audit.c writes the
 * audit log): quotes, backslashes and controls escaped, valid UTF-8 kept,
 * every invalid sequence one U+FFFD, and a full buffer cut between
 * characters, never inside one: every output is valid UTF-8 JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mta/core/json.h"

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, up to U+10FFFF). */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;
	uint32_t c;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			n = 2, c = s[i] & 0x1f;
		else if (s[i] >= 0xe0 && s[i] <= 0xef)
			n = 3, c = s[i] & 0x0f;
		else if (s[i] >= 0xf0 && s[i] <= 0xf4)
			n = 4, c = s[i] & 0x07;
		else
			return false;
		if (i + n > len)
			return false;
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			c = c << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
		    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
			return false;
		i += n;
	}
	return true;
}

/* A JSON string: quoted, no raw control, no raw '"' or '\' inside, only
 * the escapes JSON knows. */
static bool
json_string_valid(const char *s)
{
	size_t len = strlen(s), i;

	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return false;
	for (i = 1; i < len - 1; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == '"')
			return false;
		if (c != '\\')
			continue;
		if (i + 1 >= len - 1)
			return false;
		c = (unsigned char)s[++i];
		if (c == 'u') {
			if (i + 4 >= len - 1 ||
			    strspn(s + i + 1, "0123456789abcdefABCDEF") < 4)
				return false;
			i += 4;
		} else if (strchr("\"\\/bfnrt", c) == NULL)
			return false;
	}
	return utf8_valid((const unsigned char *)s, len);
}

static const struct json_case {
	const char *name, *in, *want;
} json_cases[] = {
	{ "plain", "suspend example.org 60", "\"suspend example.org 60\"" },
	{ "empty", "", "\"\"" },
	{ "quote and backslash", "a\"b\\c", "\"a\\\"b\\\\c\"" },
	{ "controls", "a\tb\x01\x7f", "\"a\\u0009b\\u0001\\u007f\"" },
	{ "valid 2, 3, 4 bytes kept", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
	  "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"" },
	{ "ellipsis kept", "cut\xe2\x80\xa6", "\"cut\xe2\x80\xa6\"" },
	{ "lone 0xff",
	  "a\xff"
	  "b",
	  "\"a\\ufffdb\"" },
	{ "continuation byte alone", "\x80x", "\"\\ufffdx\"" },
	{ "lead byte at the end", "x\xc3", "\"x\\ufffd\"" },
	{ "cut 3-byte sequence", "\xe2\x82 ok", "\"\\ufffd\\ufffd ok\"" },
	{ "overlong slash", "\xc0\xaf", "\"\\ufffd\\ufffd\"" },
	{ "overlong 3 bytes", "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"" },
	{ "surrogate", "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },
	{ "past U+10FFFF", "\xf4\x90\x80\x80",
	  "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },
	{ "0xf5 lead", "\xf5\x80", "\"\\ufffd\\ufffd\"" },
};

static void
test_escape(void **state)
{
	char buf[256];
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
		const struct json_case *c = &json_cases[i];

		off = 0;
		json_cat(buf, sizeof(buf), &off, c->in);
		if (strcmp(buf, c->want) != 0 || off != strlen(buf))
			fail_msg("%s: got %s, want %s", c->name, buf, c->want);
		if (!json_string_valid(buf))
			fail_msg("%s: not valid UTF-8 JSON: %s", c->name, buf);
	}
}

/* Appending after what is there: OFF moves on, the text before stays. */
static void
test_append(void **state)
{
	char buf[64] = "{\"user\":";
	size_t off = strlen(buf);

	(void)state;
	json_cat(buf, sizeof(buf), &off, "r\xfft");
	assert_string_equal(buf, "{\"user\":\"r\\ufffdt\"");
	assert_int_equal(off, strlen(buf));
}

/* Every buffer size: the output is NUL-terminated within the buffer, and
 * once it has both quotes it is a valid JSON string: a multi-byte character
 * or an escape that does not fit is left out whole. */
static void
test_cut(void **state)
{
	static const char *const inputs[] = {
		"\xe2\x80\xa6\xe2\x80\xa6\xe2\x80\xa6\xe2\x80\xa6",
		"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
		"a\xff\xfe\"\\\x01\xc3\xa9z",
	};
	char buf[64];
	size_t i, size, off, len;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
		for (size = 3; size < sizeof(buf); size++) {
			memset(buf, 'X', sizeof(buf));
			off = 0;
			json_cat(buf, size, &off, inputs[i]);
			assert_true(off < size);
			len = strlen(buf);
			assert_int_equal(len, off);
			if (!json_string_valid(buf))
				fail_msg("input %zu, size %zu: %s", i, size,
					 buf);
			/* Nothing written past the buffer. */
			assert_int_equal(buf[size], 'X');
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
