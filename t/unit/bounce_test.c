/*
 * bounce_test.c — DSNs (mta/deliver/bounce.c): the RFC 3464 report's structure
 * (multipart/report, one message/delivery-status block per failed
 * recipient, the original headers), its line lengths, and the DSN list of a
 * round (bounce_collect) when memory runs out: realloc is wrapped
 * (-Wl,--wrap=realloc) so a test can make the next ones fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/deliver/bounce.h"

/* realloc fails while fail_reallocs > 0 (each failure counts one down). */
static int fail_reallocs;
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

void *
__wrap_realloc(void *p, size_t n)
{
	if (fail_reallocs > 0) {
		fail_reallocs--;
		return NULL;
	}
	return __real_realloc(p, n);
}

/* bounce_collect ------------------------------------------------------- */

static void
test_collect_appends_in_order(void **state)
{
	struct queue_rcpt r[3];
	uint32_t *list = NULL;
	unsigned n = 0;

	(void)state;
	memset(r, 0, sizeof(r));
	assert_int_equal(bounce_collect(&r[2], 2, QR_BOUNCED, &list, &n), 0);
	assert_int_equal(bounce_collect(&r[0], 0, QR_EXPIRED, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0], 2);
	assert_int_equal(list[1], 0);
	assert_int_equal(r[2].state, QR_BOUNCED);
	assert_int_equal(r[0].state, QR_EXPIRED);
	assert_int_equal(r[1].state, QR_PENDING);
	free(list);
}

/* Out of memory: the recipient is not failed (it would be, without a DSN)
 * but stays pending for the next round; the list is as it was. */
static void
test_collect_oom_keeps_recipient(void **state)
{
	struct queue_rcpt r[2];
	uint32_t *list = NULL;
	unsigned n = 0;

	(void)state;
	memset(r, 0, sizeof(r));
	assert_int_equal(bounce_collect(&r[0], 0, QR_BOUNCED, &list, &n), 0);
	fail_reallocs = 1;
	assert_int_equal(bounce_collect(&r[1], 1, QR_BOUNCED, &list, &n), -1);
	assert_int_equal(fail_reallocs, 0);
	assert_int_equal(r[1].state, QR_PENDING);
	assert_int_equal(n, 1);
	assert_int_equal(list[0], 0);
	/* Memory again: the retry adds it. */
	assert_int_equal(bounce_collect(&r[1], 1, QR_EXPIRED, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[1], 1);
	assert_int_equal(r[1].state, QR_EXPIRED);
	free(list);
}

/* bounce_dsn_build ------------------------------------------------------ */

/* The human part's reason dsn_build_in gives when IN has none; NULL: the
 * causes say it. */
static const char *dsn_reason = "the receiving server refused it permanently";

/* The DSN of IN (hostname, qid, sender, arrival, reason filled here when
 * unset) as a string. */
static char *
dsn_build_in(const struct bounce_input *base)
{
	struct bounce_input in = *base;
	uint8_t *out = NULL;
	size_t len = 0;
	char *s;

	in.hostname = "mx.outpost.test";
	in.qid = "0123456789abcdef";
	in.sender = "sender@origin.test";
	in.arrival_ms = 1700000000000;
	if (in.reason == NULL)
		in.reason = dsn_reason;
	assert_int_equal(bounce_dsn_build(&in, &out, &len), 0);
	assert_non_null(out);
	/* No NUL inside: the rest of the tests treat it as a string. */
	assert_null(memchr(out, '\0', len));
	s = malloc(len + 1);
	assert_non_null(s);
	memcpy(s, out, len);
	s[len] = '\0';
	free(out);
	return s;
}

static char *
dsn_build(const struct bounce_rcpt *r, size_t n, const char *headers,
	  size_t headers_len)
{
	struct bounce_input in;

	memset(&in, 0, sizeof(in));
	in.rcpts = r;
	in.nrcpts = n;
	in.headers = (const uint8_t *)headers;
	in.headers_len = headers_len;
	return dsn_build_in(&in);
}

/* Every line ends in CRLF (no bare CR or LF) and holds at most 998 octets
 * (RFC 5322 2.1.1). */
static void
check_lines(const char *s)
{
	const char *p = s, *e;

	assert_true(strlen(s) >= 2);
	assert_memory_equal(s + strlen(s) - 2, "\r\n", 2);
	while (*p != '\0') {
		e = strstr(p, "\r\n");
		assert_non_null(e);
		assert_null(memchr(p, '\n', (size_t)(e - p)));
		assert_null(memchr(p, '\r', (size_t)(e - p)));
		if (e - p > 998)
			fail_msg("a line of %zu octets", (size_t)(e - p));
		p = e + 2;
	}
}

/* The text between "--BOUNDARY\r\n" number K (from 1) and the next
 * delimiter, malloc'd. */
static char *
dsn_part(const char *s, int k)
{
	const char *b = strstr(s, "boundary=\""), *p, *e;
	char delim[64];
	size_t blen;
	char *out;
	int i;

	assert_non_null(b);
	b += strlen("boundary=\"");
	blen = strcspn(b, "\"");
	assert_true(blen > 0 && blen < 40);
	snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)blen, b);
	p = strstr(s, "\r\n\r\n"); /* the body starts after the header */
	assert_non_null(p);
	for (i = 0; i < k; i++) {
		p = strstr(p, delim);
		assert_non_null(p);
		p += strlen(delim);
	}
	assert_memory_equal(p, "\r\n", 2); /* not the closing "--" */
	p += 2;
	e = strstr(p, delim);
	assert_non_null(e);
	out = strndup(p, (size_t)(e - p));
	assert_non_null(out);
	return out;
}

static size_t
count(const char *s, const char *what)
{
	size_t n = 0;

	while ((s = strstr(s, what)) != NULL) {
		n++;
		s += strlen(what);
	}
	return n;
}

static const char orig_headers[] = "From: Sender <sender@origin.test>\r\n"
				   "To: list@origin.test\r\n"
				   "Subject: the quarterly report\r\n"
				   "Message-ID: <abc@origin.test>\r\n"
				   "\r\n";

/* RFC 3464 / 3462: a multipart/report of delivery-status with three parts:
 * for people, for machines (one block per recipient), the headers. */
static void
test_dsn_structure(void **state)
{
	const struct bounce_rcpt r[2] = {
		{ "one@dest.test", "5.1.1", "mx.dest.test", 550,
		  "5.1.1 no such user", BOUNCE_REFUSED, CONF_BC_NONE },
		{ "two@other.test", "4.4.7", NULL, 0,
		  "4.4.7 delivery time expired", BOUNCE_EXPIRED, CONF_BC_NONE },
	};
	char *s, *p1, *p2, *p3;
	const char *blk;

	(void)state;
	s = dsn_build(r, 2, orig_headers, strlen(orig_headers));
	check_lines(s);
	assert_non_null(strstr(s, "\r\nTo: <sender@origin.test>\r\n"));
	assert_non_null(strstr(s, "\r\nMIME-Version: 1.0\r\n"));
	assert_non_null(strstr(s, "\r\nAuto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(s, "Content-Type: multipart/report; "
				  "report-type=delivery-status;"));
	p1 = dsn_part(s, 1);
	p2 = dsn_part(s, 2);
	p3 = dsn_part(s, 3);
	assert_memory_equal(p1, "Content-Type: text/plain", 24);
	assert_non_null(strstr(p1, "<one@dest.test>: host mx.dest.test said: "
				   "550 5.1.1 no such user\r\n"));
	assert_non_null(strstr(p1, "<two@other.test>: 4.4.7 delivery time "
				   "expired\r\n"));
	/* Machines: the per-message fields, then a block per recipient. */
	assert_memory_equal(p2,
			    "Content-Type: message/delivery-status\r\n\r\n"
			    "Reporting-MTA: dns; mx.outpost.test\r\n",
			    strlen("Content-Type: message/delivery-status"
				   "\r\n\r\nReporting-MTA: dns; "
				   "mx.outpost.test\r\n"));
	assert_non_null(strstr(p2, "\r\nArrival-Date: "));
	assert_int_equal(count(p2, "\r\n\r\nFinal-Recipient: "), 2);
	assert_int_equal(count(p2, "Action: failed\r\n"), 2);
	blk = strstr(p2, "Final-Recipient: rfc822; one@dest.test\r\n");
	assert_non_null(blk);
	assert_non_null(strstr(blk, "Status: 5.1.1\r\n"
				    "Remote-MTA: dns; mx.dest.test\r\n"
				    "Diagnostic-Code: smtp; 550 5.1.1 no such "
				    "user\r\nLast-Attempt-Date: "));
	blk = strstr(p2, "Final-Recipient: rfc822; two@other.test\r\n"
			 "Action: failed\r\nStatus: 4.4.7\r\n"
			 "Diagnostic-Code: X-Outpost; 4.4.7 delivery time "
			 "expired\r\n");
	assert_non_null(blk);
	/* The headers, whole, and the message ends with the close. */
	assert_string_equal(p3, "Content-Type: text/rfc822-headers\r\n\r\n"
				"From: Sender <sender@origin.test>\r\n"
				"To: list@origin.test\r\n"
				"Subject: the quarterly report\r\n"
				"Message-ID: <abc@origin.test>\r\n\r\n");
	assert_int_equal(count(s, "--\r\n"), 1);
	assert_memory_equal(s + strlen(s) - 4, "--\r\n", 4);
	free(p1);
	free(p2);
	free(p3);
	free(s);
}

/* A UTF-8 address is an utf-8 address type (RFC 6533). */
static void
test_dsn_utf8_recipient(void **state)
{
	const struct bounce_rcpt r[1] = {
		{ "j\xc3\xb6rg@d\xc3\xa9st.test", "5.1.1", NULL, 550, "no",
		  BOUNCE_REFUSED, CONF_BC_NONE },
	};
	char *s;

	(void)state;
	s = dsn_build(r, 1, NULL, 0);
	check_lines(s);
	assert_non_null(strstr(s, "Final-Recipient: utf-8; "
				  "j\xc3\xb6rg@d\xc3\xa9st.test\r\n"));
	free(s);
}

/* Only the recipients given: not one that was delivered (or anyone named
 * in a reply as text), and a reply cannot add a header line of its own. */
static void
test_dsn_no_other_recipient(void **state)
{
	const struct bounce_rcpt r[1] = {
		{ "failed@dest.test", "5.7.1", "mx.dest.test", 550,
		  "5.7.1 refused\r\nFinal-Recipient: rfc822; "
		  "injected@evil.test\r\nStatus: 2.0.0",
		  BOUNCE_REFUSED, CONF_BC_NONE },
	};
	char *s;

	(void)state;
	s = dsn_build(r, 1, orig_headers, strlen(orig_headers));
	check_lines(s);
	assert_int_equal(count(s, "\r\nFinal-Recipient:"), 1);
	assert_null(strstr(s, "\r\nFinal-Recipient: rfc822; injected"));
	assert_null(strstr(s, "\r\nStatus: 2.0.0"));
	assert_null(strstr(s, "delivered@dest.test"));
	assert_int_equal(count(s, "failed@dest.test"), 2);
	free(s);
}

/* Long parts: a 254-octet address, a long host name, a reply of 1500
 * octets without a space: still no line over 998. */
static void
test_dsn_line_lengths(void **state)
{
	char addr[255], host[300], diag[1501], *s;
	struct bounce_rcpt r[1];

	(void)state;
	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	memcpy(addr + sizeof(addr) - 11, "@dest.test", 10);
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	memset(diag, 'x', sizeof(diag) - 1);
	diag[sizeof(diag) - 1] = '\0';
	memcpy(diag, "5.1.1 ", 6);
	r[0] = (struct bounce_rcpt){ addr, "5.1.1",        host,        550,
				     diag, BOUNCE_REFUSED, CONF_BC_NONE };
	s = dsn_build(r, 1, orig_headers, strlen(orig_headers));
	check_lines(s);
	free(s);
}

/* The body is not returned: only the header block. */
static void
test_dsn_headers_only(void **state)
{
	static const char msg[] = "Subject: s\r\nX-A: 1\r\n\r\nSECRET BODY\r\n";
	const struct bounce_rcpt r[1] = {
		{ "a@dest.test", "5.0.0", NULL, 550, "no", BOUNCE_REFUSED,
		  CONF_BC_NONE },
	};
	size_t hl = bounce_headers_len((const uint8_t *)msg, strlen(msg));
	char *s, *p3;

	(void)state;
	assert_int_equal(hl, strlen("Subject: s\r\nX-A: 1\r\n\r\n"));
	assert_int_equal(bounce_headers_len((const uint8_t *)"\r\nbody", 6), 2);
	assert_int_equal(bounce_headers_len((const uint8_t *)"A: b\r\n", 6), 6);
	s = dsn_build(r, 1, msg, hl);
	check_lines(s);
	assert_null(strstr(s, "SECRET BODY"));
	p3 = dsn_part(s, 3);
	assert_non_null(strstr(p3, "\r\n\r\nSubject: s\r\nX-A: 1\r\n"));
	free(p3);
	free(s);
}

static void check_lines(const char *s);
static char *dsn_part(const char *s, int k);

/* RFC 3461: the ENVID as Original-Envelope-Id, each ORCPT as
 * Original-Recipient; RET=FULL returns the whole message (message/rfc822);
 * a "relayed" report (NOTIFY=SUCCESS) says so. */
static void
test_dsn_rfc3461_fields(void **state)
{
	static const char msg[] = "Subject: s\r\n\r\nTHE BODY\r\n";
	struct bounce_rcpt r[2] = {
		{ "a@dest.test", "5.1.1", NULL, 550, "no", BOUNCE_REFUSED,
		  CONF_BC_NONE },
		{ "b@dest.test", "5.1.1", NULL, 550, "no", BOUNCE_REFUSED,
		  CONF_BC_NONE },
	};
	const char *const orcpts[2] = { "rfc822;orig-a@list.test", NULL };
	struct bounce_input in;
	char *s, *p2, *p3;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.orcpts = orcpts;
	in.rcpts = r;
	in.nrcpts = 2;
	in.headers = (const uint8_t *)msg;
	in.headers_len = strlen("Subject: s\r\n\r\n");
	in.envid = "QQ314159 t7";
	s = dsn_build_in(&in);
	check_lines(s);
	p2 = dsn_part(s, 2);
	assert_non_null(strstr(p2, "\r\nOriginal-Envelope-Id: QQ314159 t7\r\n"
				   "Reporting-MTA: "));
	assert_non_null(strstr(p2, "\r\n\r\nOriginal-Recipient: "
				   "rfc822;orig-a@list.test\r\n"
				   "Final-Recipient: rfc822; a@dest.test\r\n"));
	assert_null(strstr(strstr(p2, "b@dest.test"), "Original-Recipient"));
	assert_null(strstr(s, "THE BODY")); /* RET absent: headers only */
	free(p2);
	free(s);

	/* RET=FULL: the whole message, as message/rfc822. */
	in.full = (const uint8_t *)msg;
	in.full_len = strlen(msg);
	s = dsn_build_in(&in);
	check_lines(s);
	p3 = dsn_part(s, 3);
	assert_string_equal(p3, "Content-Type: message/rfc822\r\n\r\n"
				"Subject: s\r\n\r\nTHE BODY\r\n");
	free(p3);
	free(s);

	/* A success report (relayed: the next hop takes no DSN request). */
	in.full = NULL;
	in.relayed = true;
	r[0].status = r[1].status = "2.0.0";
	r[0].code = r[1].code = 250;
	r[0].diag = r[1].diag = "2.0.0 queued as X";
	s = dsn_build_in(&in);
	check_lines(s);
	assert_non_null(strstr(s, "\r\nSubject: Successful Mail Delivery "
				  "Report\r\n"));
	assert_null(strstr(s, "could not be delivered"));
	p2 = dsn_part(s, 2);
	assert_int_equal(count(p2, "Action: relayed\r\n"), 2);
	assert_int_equal(count(p2, "Status: 2.0.0\r\n"), 2);
	assert_null(strstr(p2, "Action: failed"));
	free(p2);
	free(s);
}

/* A huge header block (or a message without an empty line, all header):
 * the DSN returns only the first fields, cut at a field boundary, so a
 * DSN stays small. */
static void
test_dsn_headers_truncated(void **state)
{
	const struct bounce_rcpt r[1] = {
		{ "a@dest.test", "5.0.0", NULL, 550, "no", BOUNCE_REFUSED,
		  CONF_BC_NONE },
	};
	size_t n = 20000, i, len = 0;
	char *h = malloc(n * 60 + 1), *s, *p3, *last;

	(void)state;
	assert_non_null(h);
	for (i = 0; i < n; i++)
		len += (size_t)sprintf(
		    h + len, "X-Field-%05zu: value\r\n continued\r\n", i);
	s = dsn_build(r, 1, h, len);
	check_lines(s);
	assert_true(strlen(s) < 80 * 1024);
	p3 = dsn_part(s, 3);
	assert_non_null(strstr(p3, "\r\n\r\nX-Field-00000: value\r\n"));
	assert_null(strstr(p3, "X-Field-19999"));
	/* It ends after a whole field (its continuation line included). */
	last = strrchr(p3, 'X');
	assert_non_null(last);
	assert_non_null(strstr(last, ": value\r\n continued\r\n"));
	free(p3);
	free(s);
	free(h);
}

/* An operator's bounce: the administrator returned it, no server refused
 * it; its last reply and host are not given as the reason.  With other
 * causes in the same report, each recipient's line says its own. */
static void
test_dsn_admin(void **state)
{
	const struct bounce_rcpt r[2] = {
		{ "a@dest.test", "5.0.0", "mx.dest.test", 0,
		  "5.0.0 returned by the mail system administrator",
		  BOUNCE_ADMIN, CONF_BC_NONE },
		{ "b@dest.test", "5.1.1", "mx.dest.test", 550,
		  "5.1.1 no such user", BOUNCE_REFUSED, CONF_BC_NONE },
	};
	char *s, *p1, *p2;

	(void)state;
	dsn_reason = NULL;
	s = dsn_build(r, 1, orig_headers, strlen(orig_headers));
	p1 = dsn_part(s, 1);
	p2 = dsn_part(s, 2);
	assert_non_null(strstr(p1, "returned by the mail system "
				   "administrator"));
	assert_non_null(strstr(p1, "<a@dest.test>: returned by the mail "
				   "system administrator\r\n"));
	assert_null(strstr(p1, "refused"));
	assert_null(strstr(p1, "mx.dest.test"));
	assert_non_null(strstr(p2, "Action: failed\r\nStatus: 5.0.0\r\n"
				   "Diagnostic-Code: X-Outpost; 5.0.0 "
				   "returned by the mail system "
				   "administrator\r\n"));
	assert_null(strstr(p2, "Remote-MTA"));
	assert_null(strstr(p2, "Last-Attempt-Date"));
	check_lines(s);
	free(p1);
	free(p2);
	free(s);

	s = dsn_build(r, 2, NULL, 0);
	p1 = dsn_part(s, 1);
	assert_non_null(strstr(p1, "the reason for each is given below"));
	assert_non_null(strstr(p1, "<a@dest.test>: returned by the mail "
				   "system administrator\r\n"));
	assert_non_null(strstr(p1, "<b@dest.test>: host mx.dest.test said: "
				   "550 5.1.1 no such user\r\n"));
	free(p1);
	free(s);
	dsn_reason = "the receiving server refused it permanently";
}

/* Each recipient's bounce category: an X- field of its block for machines
 * (RFC 3464 3.3 allows extension fields), a line for people; none for a
 * recipient without one. */
static void
test_dsn_category(void **state)
{
	const struct bounce_rcpt r[2] = {
		{ "one@dest.test", "5.2.2", "mx.dest.test", 552,
		  "5.2.2 mailbox full", BOUNCE_REFUSED, CONF_BC_QUOTA },
		{ "two@other.test", "5.0.0", NULL, 0, NULL, BOUNCE_ADMIN,
		  CONF_BC_NONE },
	};
	char *s, *p1, *p2;
	const char *blk;

	(void)state;
	s = dsn_build(r, 2, orig_headers, strlen(orig_headers));
	check_lines(s);
	p1 = dsn_part(s, 1);
	p2 = dsn_part(s, 2);
	assert_non_null(strstr(p1, "552 5.2.2 mailbox full\r\n"
				   "    (bounce category: quota)\r\n"));
	assert_int_equal(count(p1, "bounce category:"), 1);
	blk = strstr(p2, "Final-Recipient: rfc822; one@dest.test\r\n");
	assert_non_null(blk);
	assert_non_null(strstr(blk, "Diagnostic-Code: smtp; 552 5.2.2 mailbox "
				    "full\r\nX-Outpost-Bounce-Category: quota"
				    "\r\nLast-Attempt-Date: "));
	assert_int_equal(count(p2, "X-Outpost-Bounce-Category:"), 1);
	free(p1);
	free(p2);
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collect_appends_in_order),
		cmocka_unit_test(test_collect_oom_keeps_recipient),
		cmocka_unit_test(test_dsn_structure),
		cmocka_unit_test(test_dsn_category),
		cmocka_unit_test(test_dsn_admin),
		cmocka_unit_test(test_dsn_utf8_recipient),
		cmocka_unit_test(test_dsn_no_other_recipient),
		cmocka_unit_test(test_dsn_line_lengths),
		cmocka_unit_test(test_dsn_headers_only),
		cmocka_unit_test(test_dsn_headers_truncated),
		cmocka_unit_test(test_dsn_rfc3461_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
