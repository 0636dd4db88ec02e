/*
 * arf_test.c — the complaint-report parser (mta/receive/arf.c) on reports
 * shaped like those Yahoo, AOL, Microsoft (JMRP), Comcast and Fastmail
 * send, RFC 5965's own example, and broken ones; and the sealed
 * identifier X-Outpost-FB (arf_id.c): it opens only under its key and
 * unaltered.  Each row is a report written with LF line ends (turned into
 * CRLF unless the row keeps LF), @FB@ standing for a sealed identifier
 * and @RET@ for the returned message, encoded as the row says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "mta/receive/arf.h"
#include "t/unit/test_row.h"

static const uint8_t key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

enum enc { E_NONE, E_B64, E_QP, E_B64_CUT };

struct row {
	const char *name;
	const char *report; /* with @RET@ where the returned message goes */
	const char *ret;    /* the returned message, with @FB@ */
	enum enc enc;
	bool lf; /* keep LF line ends */
	int rc;
	enum arf_shape shape;
	const char *type, *agent, *rcpt_to, *to, *hotmail, *feedback_id;
	bool fb; /* a verifying identifier expected */
	bool truncated;
};

/* Text growing on the heap. */
struct buf {
	char *p;
	size_t n;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	assert_non_null(b->p);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* S with every TOKEN replaced by WITH. */
static char *
subst(const char *s, const char *token, const char *with)
{
	struct buf b = { NULL, 0 };
	const char *t;

	buf_add(&b, "", strlen(""));
	while ((t = strstr(s, token)) != NULL) {
		buf_add(&b, s, (size_t)(t - s));
		buf_add(&b, with, strlen(with));
		s = t + strlen(token);
	}
	buf_add(&b, s, strlen(s));
	return b.p;
}

/* LF to CRLF (CRs dropped first). */
static char *
crlf(const char *s)
{
	struct buf b = { NULL, 0 };

	buf_add(&b, "", strlen(""));
	for (; *s != '\0'; s++) {
		if (*s == '\r')
			continue;
		if (*s == '\n')
			buf_add(&b, "\r", strlen("\r"));
		buf_add(&b, s, 1);
	}
	return b.p;
}

static char *
encode(const char *s, enum enc e)
{
	struct buf b = { NULL, 0 };
	size_t n = strlen(s),
	       blen =
		   sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL),
	       i;
	char *t;

	buf_add(&b, "", strlen(""));
	if (e == E_QP) {
		/* '=' encoded, and a soft break in every line over 60. */
		size_t col = 0;

		for (i = 0; i < n; i++) {
			if (s[i] == '\r' || s[i] == '\n') {
				buf_add(&b, s + i, 1);
				col = 0;
				continue;
			}
			if (col >= 60) {
				buf_add(&b, "=\r\n", strlen("=\r\n"));
				col = 0;
			}
			if (s[i] == '=')
				buf_add(&b, "=3D", strlen("=3D"));
			else
				buf_add(&b, s + i, 1);
			col++;
		}
		return b.p;
	}
	t = malloc(blen);
	assert_non_null(t);
	sodium_bin2base64(t, blen, (const unsigned char *)s, n,
			  sodium_base64_VARIANT_ORIGINAL);
	n = strlen(t);
	if (e == E_B64_CUT)
		n -= 6; /* cut inside a quantum: what a size cap does */
	for (i = 0; i < n; i += 76) {
		buf_add(&b, t + i, n - i < 76 ? n - i : 76);
		buf_add(&b, "\r\n", strlen("\r\n"));
	}
	free(t);
	return b.p;
}

static char *
sealed(void)
{
	struct arf_id id;
	char field[2048], *nl;
	int n;

	memset(&id, 0, sizeof(id));
	id.queue_id = 0x0123456789abcdefULL;
	id.time_ms = 1700000000000;
	snprintf(id.identity, sizeof(id.identity), "acme");
	snprintf(id.campaign, sizeof(id.campaign), "spring-sale");
	n = arf_id_seal(key, &id, field, sizeof(field));
	assert_true(n > 0);
	/* Without its final CRLF: the template has the line end. */
	field[n - 2] = '\0';
	nl = crlf(field);
	return nl;
}

static char *
build(const struct row *r)
{
	char *fb = sealed(), *ret, *ret2, *enc, *rep, *out;

	ret = subst(r->ret != NULL ? r->ret : "", "@FB@", fb);
	ret2 = crlf(ret);
	enc = r->enc == E_NONE ? strdup(ret2) : encode(ret2, r->enc);
	rep = subst(r->report, "@RET@", enc);
	out = r->lf ? strdup(rep) : crlf(rep);
	if (r->lf) {
		char *p, *q;

		for (p = q = out; *p != '\0'; p++)
			if (*p != '\r')
				*q++ = *p;
		*q = '\0';
	}
	free(fb);
	free(ret);
	free(ret2);
	free(enc);
	free(rep);
	return out;
}

#define RET_OURS                                                               \
	"Received: from mta.example.com (mta.example.com [127.0.0.25])\n"      \
	"\tby mx.example.net; Tue, 3 Dec 2024 10:00:00 +0000\n"                \
	"DKIM-Signature: v=1; a=rsa-sha256; d=shop.example; s=s1;\n"           \
	"\th=From:To:Subject:X-Outpost-FB; bh=abc=; b=def=\n"                  \
	"@FB@\n"                                                               \
	"From: Shop <news@shop.example>\n"                                     \
	"To: Jane <jane@mail.example.net>\n"                                   \
	"Subject: Spring sale\n"                                               \
	"Feedback-ID: spring-sale:acme:promo:outpost\n"                        \
	"Message-ID: <20241203100000.12345@shop.example>\n"                    \
	"\n"                                                                   \
	"Buy now.\n"

#define ARF_HEAD(ua, extra)                                                    \
	"From: fbl@provider.example\n"                                         \
	"To: fbl@mta.example\n"                                                \
	"Subject: Complaint\n"                                                 \
	"MIME-Version: 1.0\n"                                                  \
	"Content-Type: multipart/report; report-type=feedback-report;\n"       \
	"\tboundary=\"----=_Part_1\"\n"                                        \
	"\n"                                                                   \
	"------=_Part_1\n"                                                     \
	"Content-Type: text/plain\n"                                           \
	"\n"                                                                   \
	"This is an email abuse report.\n"                                     \
	"------=_Part_1\n"                                                     \
	"Content-Type: message/feedback-report\n"                              \
	"\n"                                                                   \
	"Feedback-Type: abuse\n"                                               \
	"User-Agent: " ua "\n" extra "\n"                                      \
	"------=_Part_1\n"

static const struct row rows[] = {
	{ "rfc5965 minimal (B.1)",
	  "From: <abusedesk@example.com>\n"
	  "Date: Thu, 8 Mar 2005 17:40:36 EDT\n"
	  "Subject: FW: Earn money\n"
	  "To: <abuse@example.net>\n"
	  "MIME-Version: 1.0\n"
	  "Content-Type: multipart/report; report-type=feedback-report;\n"
	  "     boundary=\"part1_13d.2e68ed54_boundary\"\n"
	  "\n"
	  "--part1_13d.2e68ed54_boundary\n"
	  "Content-Type: text/plain; charset=\"US-ASCII\"\n"
	  "Content-Transfer-Encoding: 7bit\n"
	  "\n"
	  "This is an email abuse report for an email message received\n"
	  "\n"
	  "--part1_13d.2e68ed54_boundary\n"
	  "Content-Type: message/feedback-report\n"
	  "\n"
	  "Feedback-Type: abuse\n"
	  "User-Agent: SomeGenerator/1.0\n"
	  "Version: 1\n"
	  "\n"
	  "--part1_13d.2e68ed54_boundary\n"
	  "Content-Type: message/rfc822\n"
	  "Content-Disposition: inline\n"
	  "\n"
	  "@RET@"
	  "--part1_13d.2e68ed54_boundary--\n",
	  "Received: from mailserver.example.net\n"
	  "        (mailserver.example.net [127.0.0.21])\n"
	  "        by example.com with ESMTP id M63d4137594e46;\n"
	  "        Thu, 08 Mar 2005 14:00:00 -0400\n"
	  "From: <somespammer@example.net>\n"
	  "To: <Undisclosed Recipients>\n"
	  "Subject: Earn money\n"
	  "\n"
	  "Spam Spam Spam\n",
	  E_NONE, false, 0, ARF_SHAPE_RFC5965, "abuse", "SomeGenerator/1.0", "",
	  "", "", "", false, false },
	{ "yahoo",
	  ARF_HEAD(
	      "Yahoo!-Mail-Feedback/2.0",
	      "Version: 0.1\n"
	      "Original-Mail-From: <bounce@shop.example>\n"
	      "Original-Rcpt-To: <jane@mail.example.net>\n"
	      "Received-Date: Tue, 3 Dec 2024 10:00:00 +0000\n"
	      "Reported-Domain: shop.example\n"
	      "Authentication-Results: mta.yahoo.example; dkim=pass\n") "Conten"
									"t-"
									"Type: "
									"messag"
									"e/"
									"rfc822"
									"\n\n@"
									"RET@"
									"\n----"
									"--=_"
									"Part_"
									"1--\n",
	  RET_OURS, E_NONE, false, 0, ARF_SHAPE_RFC5965, "abuse",
	  "Yahoo!-Mail-Feedback/2.0", "jane@mail.example.net",
	  "jane@mail.example.net", "", "spring-sale:acme:promo:outpost", true,
	  false },
	{ "aol (redacted)",
	  ARF_HEAD("AOL SComp",
		   "Version: 0.1\n"
		   "Received-Date: Tue, 3 Dec 2024 10:00:00 +0000\n"
		   "Source-IP: 127.0.0.25\n"
		   "Reported-Domain: shop.example\n"
		   "Redacted-Address: redacted\n"
		   "Redacted-Address: redacted@\n") "Content-Type: "
						    "message/"
						    "rfc822\n\n@RET@\n------=_"
						    "Part_1--\n",
	  "Received: by mx.aol.example\n"
	  "@FB@\n"
	  "From: Shop <news@shop.example>\n"
	  "To: redacted\n"
	  "Subject: Spring sale\n"
	  "\n"
	  "Buy now.\n",
	  E_NONE, false, 0, ARF_SHAPE_RFC5965, "abuse", "AOL SComp", "", "", "",
	  "", true, false },
	{ "microsoft jmrp",
	  "From: staff@hotmail.example\n"
	  "To: fbl@mta.example\n"
	  "Subject: complaint about message from 127.0.0.25\n"
	  "MIME-Version: 1.0\n"
	  "Content-Type: multipart/mixed;\n"
	  " boundary=\"_jmrp_boundary_\"\n"
	  "\n"
	  "--_jmrp_boundary_\n"
	  "Content-Type: text/plain; charset=\"us-ascii\"\n"
	  "\n"
	  "This is an email abuse report for an email message with the\n"
	  "message-id of 20241203100000.12345@shop.example\n"
	  "--_jmrp_boundary_\n"
	  "Content-Type: message/rfc822\n"
	  "Content-Disposition: attachment\n"
	  "\n"
	  "@RET@"
	  "--_jmrp_boundary_--\n",
	  "X-HmXmrOriginalRecipient: <jane@outlook.example>\n"
	  "X-MS-Exchange-Organization-SCL: 5\n" RET_OURS,
	  E_NONE, false, 0, ARF_SHAPE_RETURNED, "abuse", "", "",
	  "jane@mail.example.net", "jane@outlook.example",
	  "spring-sale:acme:promo:outpost", true, false },
	{ "comcast (base64 returned message)",
	  ARF_HEAD(
	      "ReturnPathFBL/2.0",
	      "Version: 1\n"
	      "Original-Rcpt-To: jane@comcast.example\n"
	      "Arrival-Date: Tue, 3 Dec 2024 10:00:00 "
	      "+0000\n"
	      "Source-IP: 127.0.0.25\n") "Content-Type: message/rfc822\n"
					 "Content-Transfer-Encoding: "
					 "base64\n\n@RET@------=_Part_1--\n",
	  RET_OURS, E_B64, false, 0, ARF_SHAPE_RFC5965, "abuse",
	  "ReturnPathFBL/2.0", "jane@comcast.example", "jane@mail.example.net",
	  "", "spring-sale:acme:promo:outpost", true, false },
	{ "fastmail (headers only, quoted-printable)",
	  ARF_HEAD(
	      "Fastmail-FBL/1.0",
	      "Version: 1\n"
	      "Original-Rcpt-To: <jane@fastmail.example>\n") "Content-Type: "
							     "text/"
							     "rfc822-headers\n"
							     "Content-Transfer-"
							     "Encoding: "
							     "quoted-"
							     "printable\n\n@"
							     "RET@"
							     "------=_Part_1--"
							     "\n",
	  "Received: by mx.fastmail.example\n"
	  "@FB@\n"
	  "From: Shop <news@shop.example>\n"
	  "To: <jane@fastmail.example>\n",
	  E_QP, false, 0, ARF_SHAPE_RFC5965, "abuse", "Fastmail-FBL/1.0",
	  "jane@fastmail.example", "jane@fastmail.example", "", "", true,
	  false },
	{ "LF line ends, no closing boundary",
	  ARF_HEAD("Tiny/1",
		   "Version: 1\n") "Content-Type: message/rfc822\n\n@RET@",
	  RET_OURS, E_NONE, true, 0, ARF_SHAPE_RFC5965, "abuse", "Tiny/1", "",
	  "jane@mail.example.net", "", "spring-sale:acme:promo:outpost", true,
	  true },
	{ "top-level message/rfc822 (forwarded)",
	  "From: abuse@isp.example\nTo: fbl@mta.example\n"
	  "Content-Type: message/rfc822\n\n@RET@",
	  RET_OURS, E_NONE, false, 0, ARF_SHAPE_RETURNED, "abuse", "", "",
	  "jane@mail.example.net", "", "spring-sale:acme:promo:outpost", true,
	  false },
	/* Broken ones. */
	{ "missing returned part",
	  ARF_HEAD("X/1", "Version: 1\n") "Content-Type: text/plain\n\nhi\n"
					  "------=_Part_1--\n",
	  NULL, .enc = E_NONE, .rc = -1 },
	{ "feedback-report declared, part missing",
	  "Content-Type: multipart/report; report-type=feedback-report; "
	  "boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\n"
	  "Content-Type: message/rfc822\n\n@RET@--b--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "wrong boundary",
	  "Content-Type: multipart/report; report-type=feedback-report; "
	  "boundary=right\n\n--wrong\nContent-Type: message/feedback-report\n\n"
	  "Feedback-Type: abuse\n--wrong\nContent-Type: message/rfc822\n\n"
	  "@RET@--wrong--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "no boundary parameter",
	  "Content-Type: multipart/report; report-type=feedback-report\n\n"
	  "--b\nContent-Type: message/rfc822\n\n@RET@--b--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "unterminated quote in an earlier parameter",
	  "Content-Type: multipart/mixed; x=\"abc; boundary=b\n\n--b\n"
	  "Content-Type: message/rfc822\n\n@RET@--b--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "unterminated boundary quote",
	  "Content-Type: multipart/mixed; boundary=\"b\n\n--b\n"
	  "Content-Type: message/rfc822\n\n@RET@--b--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "no Feedback-Type",
	  "Content-Type: multipart/report; report-type=feedback-report; "
	  "boundary=b\n\n--b\nContent-Type: message/feedback-report\n\n"
	  "User-Agent: X/1\nVersion: 1\n\n--b\n"
	  "Content-Type: message/rfc822\n\n@RET@--b--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "truncated base64",
	  ARF_HEAD("X/1",
		   "Version: 1\n") "Content-Type: message/rfc822\n"
				   "Content-Transfer-Encoding: base64\n\n"
				   "@RET@------=_Part_1--\n",
	  RET_OURS, .enc = E_B64_CUT, .rc = -1 },
	{ "unknown transfer encoding",
	  ARF_HEAD("X/1", "Version: 1\n") "Content-Type: message/rfc822\n"
					  "Content-Transfer-Encoding: x-uue\n\n"
					  "@RET@------=_Part_1--\n",
	  RET_OURS, .enc = E_NONE, .rc = -1 },
	{ "not a report", "Content-Type: text/plain\n\nplease stop\n", NULL,
	  .enc = E_NONE, .rc = -1 },
	{ "no header block at all", "just text with no colon\n", NULL,
	  .enc = E_NONE, .rc = -1 },
	{ "returned message is not a message",
	  ARF_HEAD("X/1", "Version: 1\n") "Content-Type: message/rfc822\n\n"
					  "@RET@------=_Part_1--\n",
	  "this is no header\n\nbody\n", .enc = E_NONE, .rc = -1 },
};

static void
test_rows(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(rows); i++) {
		const struct row *w = &rows[i];
		struct arf_report r;
		struct arf_id id;
		char err[120], *m = build(w);
		int rc = arf_parse((const uint8_t *)m, strlen(m), &r, err,
				   sizeof(err));

		ROW_CHECK(rc == w->rc, w->name, "rc %d (%s)", rc,
			  rc ? err : "");
		free(m);
		if (rc != 0)
			continue;
		ROW_CHECK(r.shape == w->shape, w->name, "shape %d", r.shape);
		ROW_CHECK(strcmp(r.feedback_type, w->type) == 0, w->name,
			  "type %s", r.feedback_type);
		ROW_CHECK(strcmp(r.user_agent, w->agent) == 0, w->name,
			  "agent %s", r.user_agent);
		ROW_CHECK(strcmp(r.original_rcpt_to, w->rcpt_to) == 0, w->name,
			  "Original-Rcpt-To %s", r.original_rcpt_to);
		ROW_CHECK(strcmp(r.returned_to, w->to) == 0, w->name, "To %s",
			  r.returned_to);
		ROW_CHECK(strcmp(r.hotmail_rcpt, w->hotmail) == 0, w->name,
			  "JMRP %s", r.hotmail_rcpt);
		ROW_CHECK(strcmp(r.feedback_id, w->feedback_id) == 0, w->name,
			  "Feedback-ID %s", r.feedback_id);
		ROW_CHECK(r.truncated == w->truncated, w->name, "truncated %d",
			  r.truncated);
		ROW_CHECK((arf_id_open(key, r.fb_id, &id) == 0) == w->fb,
			  w->name, "identifier \"%s\"", r.fb_id);
		if (w->fb) {
			ROW_CHECK(id.queue_id == 0x0123456789abcdefULL &&
				      strcmp(id.identity, "acme") == 0 &&
				      strcmp(id.campaign, "spring-sale") == 0,
				  w->name, "opened %s/%s", id.identity,
				  id.campaign);
		}
	}
}

/* A header field over ARF_FIELD_MAX_BYTES, unfolded, is refused. */
static void
test_huge_header(void **state)
{
	struct buf b = { NULL, 0 };
	struct arf_report r;
	char err[120];
	int i;

	(void)state;
	buf_add(&b, "Subject: x", strlen("Subject: x"));
	for (i = 0; i < 200; i++)
		buf_add(
		    &b, "\r\n\tfolded-line-of-fifty-octets-0123456789abcdef",
		    strlen(
			"\r\n\tfolded-line-of-fifty-octets-0123456789abcdef"));
	buf_add(&b, "\r\nContent-Type: message/rfc822\r\n\r\nA: b\r\n",
		strlen("\r\nContent-Type: message/rfc822\r\n\r\nA: b\r\n"));
	assert_int_equal(arf_parse((uint8_t *)b.p, b.n, &r, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "header field too long");
	free(b.p);
}

/* Twenty parts: over ARF_PARTS_MAX. */
static void
test_too_many_parts(void **state)
{
	struct buf b = { NULL, 0 };
	struct arf_report r;
	char err[120];
	int i;

	(void)state;
	buf_add(&b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
		strlen("Content-Type: multipart/mixed; boundary=b\r\n\r\n"));
	for (i = 0; i < 20; i++)
		buf_add(&b, "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n",
			strlen("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"));
	buf_add(&b, "--b--\r\n", strlen("--b--\r\n"));
	assert_int_equal(arf_parse((uint8_t *)b.p, b.n, &r, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "too many MIME parts");
	free(b.p);
}

static void
test_id_roundtrip(void **state)
{
	struct arf_id in, out;
	char field[2048], *p, *line;
	int n;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.queue_id = 42;
	in.time_ms = 1700000000123;
	snprintf(in.identity, sizeof(in.identity), "relay");
	snprintf(in.rcpt, sizeof(in.rcpt), "Jane.Doe@example.com");
	memset(in.campaign, 'c', 255);
	n = arf_id_seal(key, &in, field, sizeof(field));
	assert_true(n > 0 && (size_t)n == strlen(field));
	assert_memory_equal(field, "X-Outpost-FB: v=1; id=", 22);
	/* Neither the identity nor the address in clear; folded lines of
	 * at most 78 columns, CRLF-terminated. */
	assert_null(strstr(field, "relay"));
	assert_null(strstr(field, "Jane"));
	for (line = field; (p = strstr(line, "\r\n")) != NULL; line = p + 2)
		assert_true(p - line <= 78);
	assert_string_equal(line, "");
	/* The value, as arf_parse keeps it: unfolded, CRLFs gone. */
	{
		char *v = subst(field + 14, "\r\n", "");

		assert_int_equal(arf_id_open(key, v, &out), 0);
		assert_int_equal(out.queue_id, 42);
		assert_int_equal(out.time_ms, 1700000000123);
		assert_string_equal(out.identity, "relay");
		assert_string_equal(out.rcpt, "Jane.Doe@example.com");
		assert_string_equal(out.campaign, in.campaign);
		free(v);
	}
	/* A string over 255 bytes does not fit. */
	memset(in.identity, 'i', 255);
	in.identity[255] = 'j';
	assert_int_equal(arf_id_seal(key, &in, field, sizeof(field)), -1);
}

static void
test_id_forged(void **state)
{
	static const uint8_t other[32] = { 9 };
	struct arf_id in, out;
	char field[2048], *v;
	size_t i;
	int n;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.queue_id = 7;
	snprintf(in.identity, sizeof(in.identity), "acme");
	n = arf_id_seal(key, &in, field, sizeof(field));
	assert_true(n > 0);
	v = subst(field + 14, "\r\n", "");
	assert_int_equal(arf_id_open(key, v, &out), 0);
	/* Another installation's key. */
	assert_int_equal(arf_id_open(other, v, &out), -1);
	assert_string_equal(out.identity, "");
	/* Any one character changed. */
	for (i = strlen("v=1; id="); i < strlen(v); i += 7) {
		char c = v[i];

		if (c == '\t')
			continue;
		v[i] = c == 'A' ? 'B' : 'A';
		assert_int_equal(arf_id_open(key, v, &out), -1);
		v[i] = c;
	}
	/* Cut, empty, another version, garbage. */
	v[strlen(v) - 3] = '\0';
	assert_int_equal(arf_id_open(key, v, &out), -1);
	assert_int_equal(arf_id_open(key, "", &out), -1);
	assert_int_equal(arf_id_open(key, "v=2; id=AAAA", &out), -1);
	assert_int_equal(arf_id_open(key, "v=1; id=!!!!", &out), -1);
	free(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_huge_header),
		cmocka_unit_test(test_too_many_parts),
		cmocka_unit_test(test_id_roundtrip),
		cmocka_unit_test(test_id_forged),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
