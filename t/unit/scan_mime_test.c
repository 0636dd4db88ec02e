/*
 * scan_mime_test.c — the MIME leaf walker of mta/receive/scan_mime.c on
 * the shapes campaign and other mail takes, malformed ones included.  Each
 * row names the content of every leaf (a string found exactly once in the
 * message: its place is the leaf's offset, its length the leaf's length)
 * and the text the leaf's typing header block starts with; every result is
 * also held to the contract of scan_cache.h (in order, disjoint, inside).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/receive/scan_cache.h"
#include "t/unit/test_row.h"

struct leaf_want {
	const char *content; /* the leaf's bytes, once in the message */
	const char *hdr;     /* the typing header block starts with it */
};

struct mime_row {
	const char *name;
	const char *msg;
	size_t max; /* 0: SCAN_PARTS_MAX */
	size_t n;
	struct leaf_want leaf[4];
};

static const struct mime_row mime_rows[] = {
	{ "plain text",
	  "From: <a@example.com>\r\nSubject: hi\r\n\r\nHello world\r\nBye\r\n",
	  0,
	  1,
	  { { "Hello world\r\nBye\r\n", "From:" } } },
	{ "no body",
	  "From: <a@example.com>\r\nSubject: hi\r\n",
	  0,
	  0,
	  { { 0 } } },
	{ "empty body", "Subject: hi\r\n\r\n", 0, 0, { { 0 } } },
	{ "multipart/alternative",
	  "MIME-Version: 1.0\r\n"
	  "Content-Type: multipart/alternative; boundary=\"alt1\"\r\n\r\n"
	  "--alt1\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
	  "--alt1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
	  "--alt1--\r\n",
	  0,
	  2,
	  { { "plain text", "Content-Type: text/plain" },
	    { "<p>html</p>", "Content-Type: text/html" } } },
	{ "multipart/mixed with a base64 attachment",
	  "Content-Type: multipart/mixed; boundary=mix\r\n\r\n"
	  "--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	  "Body text\r\nline 2\r\n"
	  "--mix\r\nContent-Type: application/pdf; name=a.pdf\r\n"
	  "Content-Transfer-Encoding: base64\r\n"
	  "Content-Disposition: attachment; filename=a.pdf\r\n\r\n"
	  "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+Pgpz\r\n"
	  "dHJlYW0K\r\n"
	  "--mix--\r\n",
	  0,
	  2,
	  { { "Body text\r\nline 2", "Content-Type: text/plain;" },
	    { "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+Pgpz\r\n"
	      "dHJlYW0K",
	      "Content-Type: application/pdf" } } },
	{ "nested mixed > alternative + attachment",
	  "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
	  "--outer\r\n"
	  "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
	  "--inner\r\nContent-Type: text/plain\r\n\r\nnested plain\r\n"
	  "--inner\r\nContent-Type: text/html\r\n\r\nnested html\r\n"
	  "--inner--\r\n"
	  "--outer\r\nContent-Type: application/octet-stream\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\nQUJDRA==\r\n"
	  "--outer--\r\n",
	  0,
	  3,
	  { { "nested plain", "Content-Type: text/plain" },
	    { "nested html", "Content-Type: text/html" },
	    { "QUJDRA==", "Content-Type: application/octet-stream" } } },
	{ "message/rfc822 attachment: one leaf",
	  "Content-Type: multipart/mixed; boundary=fw\r\n\r\n"
	  "--fw\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
	  "--fw\r\nContent-Type: message/rfc822\r\n\r\n"
	  "Subject: inner\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
	  "--in\r\n\r\ninner part\r\n--in--\r\n"
	  "--fw--\r\n",
	  0,
	  2,
	  { { "see below", "Content-Type: text/plain" },
	    { "Subject: inner\r\nContent-Type: multipart/mixed; boundary=in"
	      "\r\n\r\n--in\r\n\r\ninner part\r\n--in--",
	      "Content-Type: message/rfc822" } } },
	{ "quoted boundary, folded field, names in capitals",
	  "CONTENT-TYPE: Multipart/Mixed;\r\n\tBOUNDARY=\"=_q:a'b(c)?\"\r\n\r\n"
	  "--=_q:a'b(c)?\r\ncontent-type: text/plain\r\n\r\nquoted one\r\n"
	  "--=_q:a'b(c)?--\r\n",
	  0,
	  1,
	  { { "quoted one", "content-type: text/plain" } } },
	{ "boundary with a space, delimiters with transport padding",
	  "Content-Type: multipart/mixed; boundary=\"with space\"\r\n\r\n"
	  "--with space \t\r\nContent-Type: text/plain\r\n\r\n"
	  "a\r\n--with spacey\r\nb\r\n"
	  "--with space\r\nX-A: 1\r\n\r\nsecond\r\n"
	  "--with space--  \r\n",
	  0,
	  2,
	  { { "a\r\n--with spacey\r\nb", "Content-Type: text/plain" },
	    { "second", "X-A: 1" } } },
	{ "missing closing delimiter: the last part runs to the end",
	  "Content-Type: multipart/mixed; boundary=m\r\n\r\n"
	  "--m\r\n\r\nfirst\r\n"
	  "--m\r\nContent-Type: text/plain\r\n\r\nsecond runs to the end\r\n",
	  0,
	  2,
	  { { "first", "\r\nfirst" },
	    { "second runs to the end\r\n", "Content-Type: text/plain" } } },
	{ "boundary never present: the body is one leaf",
	  "Subject: x\r\nContent-Type: multipart/mixed; "
	  "boundary=nothere\r\n\r\n"
	  "just text\r\n--other\r\nmore\r\n",
	  0,
	  1,
	  { { "just text\r\n--other\r\nmore\r\n", "Subject: x" } } },
	{ "multipart without a boundary parameter",
	  "Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nno split\r\n",
	  0,
	  1,
	  { { "--b\r\n\r\nno split\r\n", "Content-Type" } } },
	{ "preamble and epilogue are framing",
	  "Content-Type: multipart/mixed; boundary=p\r\n\r\n"
	  "This is a preamble.\r\n"
	  "--p\r\nContent-Type: text/plain\r\n\r\nreal part\r\n"
	  "--p--\r\nThis is the epilogue.\r\n",
	  0,
	  1,
	  { { "real part", "Content-Type: text/plain" } } },
	{ "two Content-Type fields: not split",
	  "Content-Type: multipart/mixed; boundary=a\r\n"
	  "Content-Type: text/plain\r\n\r\n"
	  "--a\r\n\r\none\r\n--a--\r\n",
	  0,
	  1,
	  { { "--a\r\n\r\none\r\n--a--\r\n", "Content-Type: multipart" } } },
	{ "a part without its blank line is all content",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nno blank line here\r\n--b--\r\n",
	  0,
	  1,
	  { { "no blank line here", "no blank line here" } } },
	{ "closing delimiter first: the body is one leaf",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b--\r\nstuff\r\n",
	  0,
	  1,
	  { { "--b--\r\nstuff\r\n", "Content-Type" } } },
	{ "empty part",
	  "Content-Type: multipart/mixed; boundary=e\r\n\r\n"
	  "--e\r\nX-Empty: 1\r\n\r\n\r\n--e\r\nX-B: 2\r\n\r\nfull\r\n--e--\r\n",
	  0,
	  2,
	  { { "", "X-Empty" }, { "full", "X-B" } } },
	{ "past MAX leaves the last one runs to the end of the last",
	  "Content-Type: multipart/mixed; boundary=z\r\n\r\n"
	  "--z\r\nX-1: a\r\n\r\nleaf one\r\n--z\r\nX-2: b\r\n\r\nleaf two\r\n"
	  "--z\r\nX-3: c\r\n\r\nleaf three\r\n--z--\r\n",
	  2,
	  2,
	  { { "leaf one", "X-1" },
	    { "leaf two\r\n--z\r\nX-3: c\r\n\r\nleaf three", "X-2" } } },
};

/* The contract of scan_cache.h, for any input. */
static void
mime_contract_check(const char *name, size_t len, const struct scan_part *p,
		    size_t n, size_t max)
{
	size_t i;

	ROW_CHECK(n <= max, name, "n %zu max %zu", n, max);
	for (i = 0; i < n; i++) {
		ROW_CHECK(p[i].hoff <= p[i].off && p[i].off <= len &&
			      p[i].len <= len - p[i].off,
			  name, "leaf %zu: hoff %zu off %zu len %zu of %zu", i,
			  p[i].hoff, p[i].off, p[i].len, len);
		ROW_CHECK(i == 0 || p[i].hoff >= p[i - 1].off + p[i - 1].len,
			  name, "leaf %zu overlaps leaf %zu", i, i - 1);
	}
}

static size_t
mime_find_once(const char *name, const char *msg, const char *s)
{
	const char *at = strstr(msg, s);

	ROW_CHECK(at != NULL, name, "\"%s\" not in the message", s);
	ROW_CHECK(s[0] == '\0' || strstr(at + 1, s) == NULL, name,
		  "\"%s\" twice in the message", s);
	return (size_t)(at - msg);
}

static void
test_mime_rows(void **state)
{
	struct scan_part p[SCAN_PARTS_MAX];
	size_t r, i, n, len, max, off;

	(void)state;
	for (r = 0; r < NELEM(mime_rows); r++) {
		const struct mime_row *w = &mime_rows[r];

		len = strlen(w->msg);
		max = w->max ? w->max : SCAN_PARTS_MAX;
		memset(p, 0xa5, sizeof(p));
		n = scan_mime_leaves((const uint8_t *)w->msg, len, p, max);
		ROW_CHECK(n == w->n, w->name, "%zu leaves, want %zu", n, w->n);
		mime_contract_check(w->name, len, p, n, max);
		for (i = 0; i < n && i < w->n; i++) {
			const struct leaf_want *l = &w->leaf[i];

			/* An empty leaf: where its header block ends. */
			off = l->content[0] != '\0'
				  ? mime_find_once(w->name, w->msg, l->content)
				  : p[i].off;
			ROW_CHECK(
			    p[i].off == off && p[i].len == strlen(l->content),
			    w->name, "leaf %zu: off %zu len %zu, want %zu %zu",
			    i, p[i].off, p[i].len, off, strlen(l->content));
			off = mime_find_once(w->name, w->msg, l->hdr);
			ROW_CHECK(p[i].hoff == off, w->name,
				  "leaf %zu: hoff %zu, want %zu", i, p[i].hoff,
				  off);
		}
	}
}

/* Exact numbers for one case, not derived from the message text. */
static void
test_mime_plain_offsets(void **state)
{
	static const char m[] = "Subject: a\r\n\r\nbody\r\n";
	struct scan_part p[2];

	(void)state;
	assert_int_equal(
	    scan_mime_leaves((const uint8_t *)m, sizeof(m) - 1, p, 2), 1);
	assert_int_equal(p[0].hoff, 0);
	assert_int_equal(p[0].off, 14);
	assert_int_equal(p[0].len, 6);
	assert_int_equal(
	    scan_mime_leaves((const uint8_t *)m, sizeof(m) - 1, p, 0), 0);
	assert_int_equal(scan_mime_leaves((const uint8_t *)m, 0, p, 2), 0);
}

/* LF-only line ends (never queued: the server refuses bare LF) are read
 * without harm; every prefix of the message too (no read past LEN). */
static void
test_mime_lf_only_and_prefixes(void **state)
{
	static const char m[] =
	    "Content-Type: multipart/alternative; boundary=\"lf\"\n\n"
	    "--lf\nContent-Type: text/plain\n\nplain\n"
	    "--lf\nContent-Type: text/html\n\n<b>x</b>\n--lf--\n";
	struct scan_part p[SCAN_PARTS_MAX];
	size_t n, len;
	uint8_t *copy;

	(void)state;
	n = scan_mime_leaves((const uint8_t *)m, sizeof(m) - 1, p,
			     SCAN_PARTS_MAX);
	assert_int_equal(n, 2);
	assert_int_equal(p[0].off, (size_t)(strstr(m, "\n\nplain\n") - m) + 2);
	assert_int_equal(p[0].len, 5);
	for (len = 0; len <= sizeof(m) - 1; len++) {
		/* An exact-size heap copy, so that ASan sees any overread. */
		copy = malloc(len ? len : 1);
		assert_non_null(copy);
		memcpy(copy, m, len);
		n = scan_mime_leaves(copy, len, p, SCAN_PARTS_MAX);
		mime_contract_check("prefix", len, p, n, SCAN_PARTS_MAX);
		free(copy);
	}
}

/* 100 parts: the first 63 are leaves, the 64th runs to the end of the
 * 100th. */
static void
test_mime_many_parts(void **state)
{
	char *m = malloc(16384), *at;
	struct scan_part p[SCAN_PARTS_MAX];
	size_t len = 0, n, i, end;
	char want[32];

	(void)state;
	assert_non_null(m);
	len += (size_t)snprintf(m + len, 16384 - len,
				"Content-Type: multipart/mixed; boundary=k\r\n"
				"\r\n");
	for (i = 0; i < 100; i++)
		len += (size_t)snprintf(
		    m + len, 16384 - len,
		    "--k\r\nX-Part: %zu\r\n\r\npart %03zu\r\n", i, i);
	len += (size_t)snprintf(m + len, 16384 - len, "--k--\r\n");
	n = scan_mime_leaves((const uint8_t *)m, len, p, SCAN_PARTS_MAX);
	assert_int_equal(n, SCAN_PARTS_MAX);
	mime_contract_check("100 parts", len, p, n, SCAN_PARTS_MAX);
	for (i = 0; i < SCAN_PARTS_MAX; i++) {
		snprintf(want, sizeof(want), "part %03zu", i);
		at = strstr(m, want);
		assert_non_null(at);
		assert_int_equal(p[i].off, (size_t)(at - m));
		if (i < SCAN_PARTS_MAX - 1)
			assert_int_equal(p[i].len, 8);
	}
	end = (size_t)(strstr(m, "part 099") - m) + 8;
	assert_int_equal(p[SCAN_PARTS_MAX - 1].off + p[SCAN_PARTS_MAX - 1].len,
			 end);
	free(m);
}

/* Nesting deeper than SCAN_MIME_DEPTH_MAX: the multipart at that depth is
 * one leaf. */
static void
test_mime_depth(void **state)
{
	char m[4096];
	struct scan_part p[4];
	size_t len = 0, n, i, levels = SCAN_MIME_DEPTH_MAX + 2;
	char want[32];

	(void)state;
	for (i = 0; i < levels; i++)
		len += (size_t)snprintf(m + len, sizeof(m) - len,
					"Content-Type: multipart/mixed; "
					"boundary=d%zu\r\n\r\n--d%zu\r\n",
					i, i);
	len += (size_t)snprintf(m + len, sizeof(m) - len, "\r\ndeep\r\n");
	for (i = levels; i-- > 0;)
		len += (size_t)snprintf(m + len, sizeof(m) - len,
					"--d%zu--\r\n", i);
	n = scan_mime_leaves((const uint8_t *)m, len, p, 4);
	assert_int_equal(n, 1);
	mime_contract_check("depth", len, p, n, 4);
	/* The leaf is the multipart at the depth limit, its header block
	 * that of boundary d8, "deep" inside. */
	m[len] = '\0';
	snprintf(want, sizeof(want), "boundary=d%d\r\n", SCAN_MIME_DEPTH_MAX);
	assert_int_equal(p[0].hoff,
			 (size_t)(strstr(m, want) - m) -
			     strlen("Content-Type: multipart/mixed; "));
	assert_int_equal(p[0].off, p[0].hoff + strlen(want) + 33);
	assert_non_null(strstr(m + p[0].off, "deep"));
	assert_true(strstr(m + p[0].off, "deep") < m + p[0].off + p[0].len);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mime_rows),
		cmocka_unit_test(test_mime_plain_offsets),
		cmocka_unit_test(test_mime_lf_only_and_prefixes),
		cmocka_unit_test(test_mime_many_parts),
		cmocka_unit_test(test_mime_depth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
