/*
 * reencode_test.c — unit tests for dkim/reencode.c, table-driven: message
 * structures (single part 7bit/8bit/QP/base64, multipart with preamble,
 * epilogue and padded boundaries, nested multiparts, message/rfc822, a
 * missing close delimiter, thousands of parts) with lines of 1,500 and
 * 100,000 octets.  For each: no output line over 998 octets (76 in the
 * re-encoded QP parts), every leaf decodes to the original octets, parts
 * without a long line are byte-identical.  And the refusals: a header
 * token that cannot be folded, growth past the limit, nesting past 32, an
 * unknown Content-Transfer-Encoding.  The decoders here are the test's own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "dkim/dkim.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf
#pragma GCC poison sprintf
#endif

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void
buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* A long line of N octets: 8-bit octets, '=', '-', tabs, a lone CR and
 * LF (not as CRLF), trailing spaces. */
static void
long_line(struct buf *b, size_t n)
{
	static const char unit[] = "<td style=\"a:b\"> --x =3D.\t\xc3\xa9\x01"
				   "\r \n\xff=";
	size_t i;

	for (i = 0; i + 2 < n; i++)
		buf_put(b, &unit[i % (sizeof(unit) - 1)], 1);
	buf_put(b, "  ", n >= 2 ? 2 : n);
}

static void
qp_line(struct buf *b, size_t n)
{
	static const char unit[] = "caf=C3=A9 --x =3D soft=20 \xe9 = ";
	size_t i;

	for (i = 0; i < n; i++)
		buf_put(b, &unit[i % (sizeof(unit) - 1)], 1);
}

static void
b64_line(struct buf *b, size_t n)
{
	size_t i;

	for (i = 0; i < n / 4; i++)
		buf_put(b, "QUJD", 4);
}

/* The template with @L (long line), @Q (long QP line), @B (long base64),
 * @S (spaces) of N octets, @A (250 'a') and @W (1,200 spaces) expanded. */
static struct buf
expand(const char *t, size_t n)
{
	struct buf b = { NULL, 0, 0 };

	for (; *t != '\0'; t++) {
		if (t[0] == '@' && t[1] == 'L') {
			long_line(&b, n);
			t++;
		} else if (t[0] == '@' && t[1] == 'Q') {
			qp_line(&b, n);
			t++;
		} else if (t[0] == '@' && t[1] == 'A') {
			for (size_t i = 0; i < 250; i++)
				buf_put(&b, "a", 1);
			t++;
		} else if (t[0] == '@' && t[1] == 'W') {
			for (size_t i = 0; i < 1200; i++)
				buf_put(&b, " ", 1);
			t++;
		} else if (t[0] == '@' && t[1] == 'S') {
			for (size_t i = 0; i < n; i++)
				buf_put(&b, " ", 1);
			t++;
		} else if (t[0] == '@' && t[1] == 'B') {
			b64_line(&b, n);
			t++;
		} else
			buf_put(&b, t, 1);
	}
	return b;
}

/* Decoding, the test's own --------------------------------------------- */

static int
hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void
qp_decode(struct buf *out, const uint8_t *p, size_t n)
{
	size_t i, k;
	uint8_t c;

	for (i = 0; i < n; i++) {
		if (p[i] != '=') {
			buf_put(out, &p[i], 1);
			continue;
		}
		for (k = i + 1; k < n && (p[k] == ' ' || p[k] == '\t'); k++)
			;
		if (k + 1 < n && p[k] == '\r' && p[k + 1] == '\n') {
			i = k + 1; /* a soft break, padding and all */
			continue;
		}
		if (i + 2 < n && hexval(p[i + 1]) >= 0 &&
		    hexval(p[i + 2]) >= 0) {
			c = (uint8_t)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
			buf_put(out, &c, 1);
			i += 2;
			continue;
		}
		buf_put(out, "=", 1);
	}
}

static void
b64_strip(struct buf *out, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != '\r' && p[i] != '\n' && p[i] != ' ' && p[i] != '\t')
			buf_put(out, &p[i], 1);
}

static const uint8_t *
find(const uint8_t *p, size_t n, const char *s)
{
	size_t k = strlen(s), i;

	for (i = 0; i + k <= n; i++)
		if (memcmp(p + i, s, k) == 0)
			return p + i;
	return NULL;
}

static const uint8_t *
find_ci(const uint8_t *p, size_t n, const char *s)
{
	size_t k = strlen(s), i;

	for (i = 0; i + k <= n; i++)
		if (strncasecmp((const char *)p + i, s, k) == 0)
			return p + i;
	return NULL;
}

struct leaf {
	struct buf raw;     /* the segment as it is */
	struct buf decoded; /* its body decoded */
	char cte[32];
	int longline;
};

struct leaves {
	struct leaf v[6000];
	size_t n;
};

static int
has_long(const uint8_t *p, size_t n)
{
	size_t i, col = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			col = 0;
			i++;
			continue;
		}
		if (++col > 998)
			return 1;
	}
	return 0;
}

static void leaves_of(struct leaves *l, const uint8_t *p, size_t n, int digest);

/* "--BB", "--CC" or "--DD", maybe "--" after, then only WSP. */
static int
is_delim(const uint8_t *p, size_t len, int *close)
{
	size_t i = 4;

	if (len < 4 || p[0] != '-' || p[1] != '-' || p[2] != p[3] ||
	    (p[2] != 'B' && p[2] != 'C' && p[2] != 'D'))
		return 0;
	*close = len >= 6 && p[4] == '-' && p[5] == '-';
	if (*close)
		i = 6;
	for (; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t')
			return 0;
	return 1;
}

/* One segment: header, body; decode per its CTE, or descend. */
static void
segment(struct leaves *l, const uint8_t *p, size_t n, int digest)
{
	const uint8_t *sep, *b, *cte, *ct;
	size_t hn, bn, i;
	struct leaf *f;

	if (n >= 2 && p[0] == '\r' && p[1] == '\n') {
		hn = 0;
		b = p + 2;
	} else if ((sep = find(p, n, "\r\n\r\n")) != NULL) {
		hn = (size_t)(sep - p) + 2;
		b = sep + 4;
	} else {
		hn = n;
		b = p + n;
	}
	bn = n - (size_t)(b - p);
	ct = find_ci(p, hn, "content-type:");
	if (ct != NULL &&
	    find_ci(ct, hn - (size_t)(ct - p), "multipart/") != NULL &&
	    find_ci(ct, hn - (size_t)(ct - p), "multipart/") < ct + 40)
		return leaves_of(l, b, bn,
				 find_ci(ct, hn - (size_t)(ct - p),
					 "multipart/digest") != NULL);
	if (ct != NULL &&
	    find_ci(ct, hn - (size_t)(ct - p), "message/rfc822") != NULL)
		return segment(l, b, bn, 0);
	if (ct == NULL && digest)
		return segment(l, b, bn, 0); /* RFC 2046 5.1.5 */
	assert_true(l->n < NELEM(l->v));
	f = &l->v[l->n++];
	memset(f, 0, sizeof(*f));
	buf_put(&f->raw, p, n);
	f->longline = has_long(p, n);
	cte = find_ci(p, hn, "content-transfer-encoding:");
	if (cte != NULL) {
		cte += strlen("content-transfer-encoding:");
		while (*cte == ' ')
			cte++;
		for (i = 0;
		     i + 1 < sizeof(f->cte) && cte[i] > ' ' && cte[i] != ';';
		     i++)
			f->cte[i] = (char)cte[i];
	}
	if (strcasecmp(f->cte, "quoted-printable") == 0)
		qp_decode(&f->decoded, b, bn);
	else if (strcasecmp(f->cte, "base64") == 0)
		b64_strip(&f->decoded, b, bn);
	else
		buf_put(&f->decoded, b, bn);
}

/* The leaves of a multipart body (boundaries BB, CC, DD: "--X" lines), or
 * of a whole message. */
static void
leaves_of(struct leaves *l, const uint8_t *p, size_t n, int digest)
{
	size_t off = 0, start = 0, end;
	int inpart = 0, any = 0;

	while (off < n) {
		const uint8_t *eol = find(p + off, n - off, "\r\n");
		size_t len = eol ? (size_t)(eol - (p + off)) : n - off;
		size_t next = eol ? off + len + 2 : n;
		int close = 0, delim = is_delim(p + off, len, &close);

		if (delim) {
			any = 1;
			end = off >= start + 2 ? off - 2 : start;
			if (inpart)
				segment(l, p + start, end - start, digest);
			inpart = !close;
			start = next;
			if (!inpart)
				return;
		}
		off = next;
	}
	if (!any)
		segment(l, p, n, 0);
	else if (inpart)
		segment(l, p + start, n - start, digest);
}

static void
leaves_free(struct leaves *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].raw.p);
		free(l->v[i].decoded.p);
	}
	l->n = 0;
}

/* The table ------------------------------------------------------------ */

#define H "From: <a@example.test>\r\nSubject: t\r\n"

static const struct row {
	const char *name;
	const char *tmpl;
	enum reencode_result want;
	const char *why; /* in the refusal */
} rows[] = {
	{ "single part, no CTE", H "\r\nshort\r\n@L\r\nend\r\n", REENCODE_OK,
	  NULL },
	{ "single part, 8bit",
	  H "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n@L\r\n.\r\n@L\r\n",
	  REENCODE_OK, NULL },
	{ "single part, binary, CTE folded",
	  H "Content-Transfer-Encoding:\r\n binary\r\n\r\n@L\r\n", REENCODE_OK,
	  NULL },
	{ "single part, already QP",
	  H "Content-Transfer-Encoding: quoted-printable\r\n\r\nok=\r\n@Q\r\n"
	    "@Q=  \r\n@Q\r\n",
	  REENCODE_OK, NULL },
	{ "single part, base64",
	  H "Content-Transfer-Encoding: base64\r\n\r\n@B\r\nQUJD\r\n",
	  REENCODE_OK, NULL },
	{ "multipart, preamble, padded boundary, epilogue",
	  H "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
	    "preamble @L\r\n--BB\r\nContent-Type: text/plain\r\n\r\nshort\r\n"
	    "--BB  \t\r\nContent-Type: text/html\r\n\r\n@L\r\n--BB\r\n"
	    "Content-Transfer-Encoding: Quoted-Printable\r\n\r\n@Q\r\n--BB\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n@B\r\n--BB\r\n\r\n@L"
	    "\r\n--BB--\r\nepilogue @L\r\n",
	  REENCODE_OK, NULL },
	{ "nested, message/rfc822, no close delimiter",
	  H "Content-Type: multipart/mixed;\r\n\tboundary=BB\r\n\r\n--BB\r\n"
	    "Content-Type: multipart/alternative; boundary=\"CC\"\r\n\r\n"
	    "--CC\r\n\r\nshort\r\n--CC\r\nContent-Transfer-Encoding: 8bit\r\n"
	    "\r\n@L\r\n--CC--\r\n--BB\r\nContent-Type: message/rfc822\r\n\r\n"
	    "Subject: inner\r\nContent-Type: multipart/mixed; boundary=DD\r\n"
	    "\r\n--DD\r\n\r\n@L\r\n--DD\r\n\r\nshort too\r\n--DD--\r\n",
	  REENCODE_OK, NULL },
	{ "boundary line padded past 998",
	  H "Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\n\r\n"
	    "short\r\n--BB@S\r\n\r\nshort\r\n--BB--@S\r\n",
	  REENCODE_OK, NULL },
	{ "over-long parameter hiding a boundary",
	  H "Content-Type: multipart/mixed; x=\"@A; boundary=CC\"; "
	    "boundary=BB\r\n\r\n--BB\r\n\r\n@L\r\n--BB--\r\n",
	  REENCODE_OK, NULL },
	{ "long part header folded, CTE with a comment, digest default",
	  H "Content-Type: multipart/digest; boundary=BB\r\n\r\n--BB\r\n"
	    "X-Words: a b c d e f g h i j k l m n o p q r s t u v w x y z @W"
	    "word\r\nContent-Transfer-Encoding: (old) 8BIT (really)\r\n"
	    "Content-Type: text/plain\r\n\r\n@L\r\n--BB\r\n\r\n"
	    "Subject: digest\r\n\r\n@L\r\n--BB--\r\n",
	  REENCODE_OK, NULL },
	{ "no long line", H "\r\nshort\r\n", REENCODE_UNCHANGED, NULL },
	{ "unfoldable header", "Subject: @B\r\n\r\nx\r\n", REENCODE_REFUSED,
	  "Subject" },
	{ "unknown CTE",
	  H "Content-Transfer-Encoding: x-uuencode\r\n\r\n@L\r\n",
	  REENCODE_REFUSED, "unknown Content-Transfer-Encoding" },
	{ "multipart without boundary",
	  H "Content-Type: multipart/mixed\r\n\r\n@L\r\n", REENCODE_REFUSED,
	  "boundary" },
};

static void
check_output(const struct row *r, const struct buf *in, const uint8_t *out,
	     size_t outlen)
{
	struct leaves *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	size_t i;

	assert_non_null(a);
	assert_non_null(b);
	if (has_long(out, outlen))
		fail_msg("%s: an output line is over 998 octets", r->name);
	segment(a, in->p, in->n, 0);
	segment(b, out, outlen, 0);
	if (a->n != b->n)
		fail_msg("%s: %zu leaves in, %zu out", r->name, a->n, b->n);
	for (i = 0; i < a->n; i++) {
		struct leaf *x = &a->v[i], *y = &b->v[i];

		if (x->decoded.n != y->decoded.n ||
		    memcmp(x->decoded.p, y->decoded.p, x->decoded.n) != 0)
			fail_msg("%s: leaf %zu decodes to %zu octets, want "
				 "%zu",
				 r->name, i, y->decoded.n, x->decoded.n);
		if (!x->longline && (x->raw.n != y->raw.n ||
				     memcmp(x->raw.p, y->raw.p, x->raw.n) != 0))
			fail_msg("%s: leaf %zu had no long line but changed",
				 r->name, i);
		if (x->longline &&
		    strcasecmp(y->cte, "quoted-printable") == 0) {
			const uint8_t *p = y->raw.p, *e = p + y->raw.n, *s, *nl;

			s = find(p, y->raw.n, "\r\n\r\n");
			for (s = s ? s + 4 : p; s < e; s = nl + 2) {
				nl = find(s, (size_t)(e - s), "\r\n");
				if (nl == NULL)
					nl = e;
				if (nl - s > 76)
					fail_msg("%s: leaf %zu: QP line of %td",
						 r->name, i, nl - s);
				if (nl == e)
					break;
			}
		}
	}
	leaves_free(a);
	leaves_free(b);
	free(a);
	free(b);
}

static void
test_table(void **state)
{
	static const size_t sizes[] = { 1500, 100000 };
	size_t i, k, outlen;
	uint8_t *out;
	char why[200];
	enum reencode_result rc;

	(void)state;
	for (i = 0; i < NELEM(rows); i++) {
		for (k = 0; k < NELEM(sizes); k++) {
			const struct row *r = &rows[i];
			struct buf in = expand(r->tmpl, sizes[k]);

			rc = reencode_message(in.p, in.n, 64u << 20, &out,
					      &outlen, why, sizeof(why));
			if (rc != r->want)
				fail_msg("%s (%zu): result %d, want %d (%s)",
					 r->name, sizes[k], rc, r->want, why);
			if (rc == REENCODE_OK)
				check_output(r, &in, out, outlen);
			else
				assert_null(out);
			if (r->why != NULL && strstr(why, r->why) == NULL)
				fail_msg("%s: why \"%s\" lacks \"%s\"", r->name,
					 why, r->why);
			free(out);
			free(in.p);
		}
	}
}

/* The CTE header: added (with MIME-Version) or replaced, once. */
static void
test_cte_header(void **state)
{
	struct buf in = expand(H "\r\n@L\r\n", 1500);
	struct buf in2 = expand(H "MIME-Version: 1.0\r\nContent-Transfer-"
				  "Encoding: 8bit\r\nContent-Transfer-Encoding:"
				  " 7bit\r\n\r\n@L\r\n",
				1500);
	uint8_t *out;
	size_t outlen;
	char why[200];

	(void)state;
	assert_int_equal(reencode_message(in.p, in.n, 1u << 20, &out, &outlen,
					  why, sizeof(why)),
			 REENCODE_OK);
	assert_non_null(find(out, outlen,
			     "Subject: t\r\nContent-Transfer-Encoding: "
			     "quoted-printable\r\nMIME-Version: 1.0\r\n\r\n"));
	free(out);
	assert_int_equal(reencode_message(in2.p, in2.n, 1u << 20, &out, &outlen,
					  why, sizeof(why)),
			 REENCODE_OK);
	assert_non_null(find(out, outlen,
			     "MIME-Version: 1.0\r\nContent-Transfer-Encoding: "
			     "quoted-printable\r\n\r\n"));
	assert_null(find(out, outlen, "7bit"));
	assert_null(find(out, outlen, "8bit"));
	free(out);
	free(in.p);
	free(in2.p);
}

/* A long header folded before whitespace, unfolding to the original. */
static void
test_header_fold(void **state)
{
	struct buf in = { NULL, 0, 0 };
	uint8_t *out;
	size_t outlen, i, j;
	char why[200], w[16];

	(void)state;
	buf_put(&in, "Subject:", 8);
	for (i = 0; i < 2000; i++) {
		int n = snprintf(w, sizeof(w), " w%zu", i);

		buf_put(&in, w, (size_t)n);
	}
	buf_put(&in, "\r\n\r\nbody\r\n", 10);
	assert_int_equal(reencode_message(in.p, in.n, 1u << 20, &out, &outlen,
					  why, sizeof(why)),
			 REENCODE_OK);
	assert_false(has_long(out, outlen));
	/* Unfold: drop every CRLF followed by WSP. */
	for (i = j = 0; i < outlen; i++) {
		if (out[i] == '\r' && i + 2 < outlen && out[i + 1] == '\n' &&
		    (out[i + 2] == ' ' || out[i + 2] == '\t')) {
			i++;
			continue;
		}
		out[j++] = out[i];
	}
	assert_int_equal(j, in.n);
	assert_memory_equal(out, in.p, in.n);
	free(out);
	free(in.p);
}

static void
test_too_big(void **state)
{
	struct buf in = { NULL, 0, 0 };
	uint8_t *out;
	size_t outlen, i;
	char why[200];

	(void)state;
	buf_put(&in, "Subject: x\r\n\r\n", 14);
	for (i = 0; i < 50000; i++)
		buf_put(&in, "=", 1);
	buf_put(&in, "\r\n", 2);
	assert_int_equal(reencode_message(in.p, in.n, 100000, &out, &outlen,
					  why, sizeof(why)),
			 REENCODE_TOO_BIG);
	assert_null(out);
	assert_int_equal(reencode_message(in.p, in.n, 200000, &out, &outlen,
					  why, sizeof(why)),
			 REENCODE_OK);
	assert_true(outlen <= 200000);
	free(out);
	free(in.p);
}

static void
test_depth(void **state)
{
	struct buf in = { NULL, 0, 0 };
	uint8_t *out;
	size_t outlen;
	char why[200], line[100];
	int i, n, depth;

	(void)state;
	for (depth = 30; depth <= 34; depth += 4) {
		in.n = 0;
		n = snprintf(line, sizeof(line),
			     "Content-Type: multipart/mixed; boundary=b0\r\n"
			     "\r\n");
		buf_put(&in, line, (size_t)n);
		for (i = 0; i < depth; i++) {
			n = snprintf(line, sizeof(line),
				     "--b%d\r\nContent-Type: multipart/mixed; "
				     "boundary=b%d\r\n\r\n",
				     i, i + 1);
			buf_put(&in, line, (size_t)n);
		}
		n = snprintf(line, sizeof(line), "--b%d\r\n\r\n", depth);
		buf_put(&in, line, (size_t)n);
		long_line(&in, 1500);
		buf_put(&in, "\r\n", 2);
		if (depth < REENCODE_DEPTH_MAX) {
			assert_int_equal(reencode_message(in.p, in.n, 1u << 20,
							  &out, &outlen, why,
							  sizeof(why)),
					 REENCODE_OK);
			assert_false(has_long(out, outlen));
			free(out);
		} else {
			assert_int_equal(reencode_message(in.p, in.n, 1u << 20,
							  &out, &outlen, why,
							  sizeof(why)),
					 REENCODE_REFUSED);
			assert_non_null(strstr(why, "nested"));
		}
	}
	free(in.p);
}

/* 5,000 parts, one with a long line: only that one changes. */
static void
test_many_parts(void **state)
{
	struct buf in = { NULL, 0, 0 };
	struct leaves *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint8_t *out;
	size_t outlen, i, changed = 0;
	char why[200];
	static const char head[] =
	    H "Content-Type: multipart/mixed; boundary=BB\r\n\r\n";

	(void)state;
	buf_put(&in, head, sizeof(head) - 1);
	for (i = 0; i < 5000; i++) {
		buf_put(&in, "--BB\r\n\r\n--BBx not a boundary\r\n", 31);
		if (i == 2500)
			long_line(&in, 3000);
		buf_put(&in, "\r\n", 2);
	}
	buf_put(&in, "--BB--\r\n", 8);
	assert_int_equal(reencode_message(in.p, in.n, 64u << 20, &out, &outlen,
					  why, sizeof(why)),
			 REENCODE_OK);
	segment(a, in.p, in.n, 0);
	segment(b, out, outlen, 0);
	assert_int_equal(a->n, 5000);
	assert_int_equal(b->n, 5000);
	for (i = 0; i < a->n; i++)
		if (a->v[i].raw.n != b->v[i].raw.n ||
		    memcmp(a->v[i].raw.p, b->v[i].raw.p, a->v[i].raw.n) != 0)
			changed++;
	assert_int_equal(changed, 1);
	leaves_free(a);
	leaves_free(b);
	free(a);
	free(b);
	free(out);
	free(in.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_cte_header),
		cmocka_unit_test(test_header_fold),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_many_parts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
