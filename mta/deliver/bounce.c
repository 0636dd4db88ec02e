/*
 * bounce.c — building DSNs.
 *
 * Owns: the text of the report (with each recipient's bounce category,
 * for people and as X-Outpost-Bounce-Category for machines).  Pure (no I/O);
 * any thread.  Remote reply text is untrusted: it is reduced to printable ASCII
 * and folded before it goes into a header field.  A DSN is itself never bounced
 * (the scheduler marks it QUEUE_F_DSN and sends it with a null sender).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "mta/deliver/bounce.h"

/* Octets of the original header block a DSN returns at most. */
#define BOUNCE_HEADERS_MAX 65536

struct bounce_buf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void
bounce_add(struct bounce_buf *b, const void *data, size_t n)
{
	uint8_t *np;
	size_t cap;

	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void bounce_printf(struct bounce_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
bounce_printf(struct bounce_buf *b, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	bounce_add(b, line, (size_t)n);
}

/* Octets since the last line break: where the next one would go. */
static size_t
bounce_col(const struct bounce_buf *b)
{
	size_t i = b->len;

	while (i > 0 && b->p[i - 1] != '\n')
		i--;
	return b->len - i;
}

/* Untrusted text as one folded header-safe value (printable ASCII), from
 * the column the line is at: no line over 998 octets, however long what
 * came before it on the line (an address, a host name). */
static void
bounce_add_text(struct bounce_buf *b, const char *s)
{
	size_t i, col = bounce_col(b);

	for (i = 0; s != NULL && s[i] != '\0' && i < 4000; i++) {
		char c = s[i];

		if ((unsigned char)c < 0x20 || (unsigned char)c > 0x7e)
			c = ' ';
		if (col >= 76 && c == ' ') {
			bounce_add(b, "\r\n ", 3);
			col = 1;
			continue;
		}
		if (col >= 990) {
			bounce_add(b, "\r\n ", 3);
			col = 1;
		}
		bounce_add(b, &c, 1);
		col++;
	}
}

static bool
bounce_is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* The original header block, cut to BOUNCE_HEADERS_MAX at the last field
 * boundary (a line break not followed by a continuation) within it, else
 * at the last line break: a DSN stays small whatever the message held
 * (RFC 3462's text/rfc822-headers need not be complete). */
static size_t
bounce_headers_cut(const uint8_t *h, size_t len)
{
	size_t i, line = 0;

	if (len <= BOUNCE_HEADERS_MAX)
		return len;
	for (i = BOUNCE_HEADERS_MAX; i >= 2; i--) {
		if (h[i - 2] != '\r' || h[i - 1] != '\n')
			continue;
		if (h[i] != ' ' && h[i] != '\t')
			return i;
		if (line == 0)
			line = i;
	}
	return line;
}

size_t
bounce_headers_len(const uint8_t *msg, size_t len)
{
	size_t i;

	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
		return 2;
	for (i = 0; i + 3 < len; i++)
		if (msg[i] == '\r' && msg[i + 1] == '\n' &&
		    msg[i + 2] == '\r' && msg[i + 3] == '\n')
			return i + 4;
	return len;
}

#define BOUNCE_ADMIN_TEXT "returned by the mail system administrator"

/* The human-readable part's reason: the recipients' cause when they share
 * one, else a pointer to each one's line. */
static const char *
bounce_reason(const struct bounce_input *in)
{
	size_t i;

	if (in->reason != NULL)
		return in->reason;
	for (i = 1; i < in->nrcpts; i++)
		if (in->rcpts[i].cause != in->rcpts[0].cause)
			return "the reason for each is given below";
	switch (in->nrcpts > 0 ? in->rcpts[0].cause : BOUNCE_REFUSED) {
	case BOUNCE_EXPIRED:
		return "delivery was given up after the maximum time in the "
		       "queue";
	case BOUNCE_ADMIN:
		return "it was " BOUNCE_ADMIN_TEXT;
	case BOUNCE_REFUSED:
		break;
	}
	return "the receiving server refused it permanently";
}

int
bounce_dsn_build(const struct bounce_input *in, uint8_t **out, size_t *outlen)
{
	struct bounce_buf b = { 0 };
	char date[64], arrival[64], boundary[40];
	unsigned char rnd[12];
	time_t now = (time_t)(queue_wall_ms() / 1000),
	       arr = (time_t)(in->arrival_ms / 1000);
	struct tm tm;
	size_t i, hlen;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	gmtime_r(&arr, &tm);
	strftime(arrival, sizeof(arrival), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(boundary, sizeof(boundary), rnd, sizeof(rnd));

	bounce_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n",
		      in->hostname);
	bounce_printf(&b, "To: <%s>\r\n", in->sender);
	bounce_printf(&b, "Subject: %s\r\n",
		      in->relayed ? "Successful Mail Delivery Report"
				  : "Undelivered Mail Returned to Sender");
	bounce_printf(&b, "Date: %s\r\n", date);
	bounce_printf(&b, "Message-ID: <%s.%lld.dsn@%s>\r\n", in->qid,
		      (long long)now, in->hostname);
	bounce_printf(&b, "Auto-Submitted: auto-replied\r\n");
	bounce_printf(&b, "MIME-Version: 1.0\r\n");
	bounce_printf(&b,
		      "Content-Type: multipart/report; "
		      "report-type=delivery-status;\r\n"
		      "\tboundary=\"%s\"\r\n",
		      boundary);
	bounce_printf(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	/* 1. For people. */
	bounce_printf(&b,
		      "--%s\r\nContent-Type: text/plain; "
		      "charset=utf-8\r\n\r\n",
		      boundary);
	bounce_printf(&b, "This is the mail system at %s.\r\n\r\n",
		      in->hostname);
	if (in->relayed)
		bounce_printf(&b,
			      "Your message was handed over for delivery to "
			      "the recipients below,\r\nwhose next server "
			      "sends no delivery notifications:\r\n\r\n");
	else {
		bounce_printf(&b,
			      "Your message could not be delivered to %s of "
			      "its recipients:\r\n",
			      in->nrcpts == 1 ? "one" : "some");
		bounce_printf(&b, "%s.\r\n\r\n", bounce_reason(in));
	}
	for (i = 0; i < in->nrcpts; i++) {
		const struct bounce_rcpt *r = &in->rcpts[i];

		bounce_printf(&b, "<%s>: ", r->addr);
		if (r->cause == BOUNCE_ADMIN) {
			bounce_printf(&b, "%s\r\n", BOUNCE_ADMIN_TEXT);
			continue;
		}
		if (r->remote_mta != NULL)
			bounce_printf(&b, "host %s said: ", r->remote_mta);
		if (r->code != 0)
			bounce_printf(&b, "%d ", r->code);
		bounce_add_text(&b, r->diag ? r->diag : r->status);
		bounce_printf(&b, "\r\n");
		if (r->category != CONF_BC_NONE)
			bounce_printf(&b, "    (bounce category: %s)\r\n",
				      conf_bounce_category_name(r->category));
	}

	/* 2. For machines (RFC 3464). */
	bounce_printf(&b,
		      "\r\n--%s\r\nContent-Type: "
		      "message/delivery-status\r\n\r\n",
		      boundary);
	if (in->envid != NULL) /* RFC 3464 2.2.1: first */
		bounce_printf(&b, "Original-Envelope-Id: %s\r\n", in->envid);
	bounce_printf(&b, "Reporting-MTA: dns; %s\r\n", in->hostname);
	bounce_printf(&b, "X-Outpost-Queue-ID: %s\r\n", in->qid);
	bounce_printf(&b, "Arrival-Date: %s\r\n", arrival);
	for (i = 0; i < in->nrcpts; i++) {
		const struct bounce_rcpt *r = &in->rcpts[i];

		bounce_printf(&b, "\r\n");
		if (in->orcpts != NULL && in->orcpts[i] != NULL)
			/* printable ASCII (mta/receive/dsn_param.c) */
			bounce_printf(&b, "Original-Recipient: %s\r\n",
				      in->orcpts[i]);
		bounce_printf(&b, "Final-Recipient: %s; %s\r\n",
			      bounce_is_ascii(r->addr) ? "rfc822" : "utf-8",
			      r->addr);
		bounce_printf(&b, "Action: %s\r\n",
			      in->relayed ? "relayed" : "failed");
		bounce_printf(&b, "Status: %s\r\n", r->status);
		if (r->cause == BOUNCE_ADMIN) {
			/* No server's word and no attempt of ours: the
			 * operator's decision (a last reply is not why). */
			bounce_printf(&b,
				      "Diagnostic-Code: X-Outpost; %s %s\r\n",
				      r->status, BOUNCE_ADMIN_TEXT);
			continue;
		}
		if (r->remote_mta != NULL)
			bounce_printf(&b, "Remote-MTA: dns; %s\r\n",
				      r->remote_mta);
		if (r->code != 0) {
			bounce_printf(&b, "Diagnostic-Code: smtp; %d ",
				      r->code);
			bounce_add_text(&b, r->diag);
			bounce_printf(&b, "\r\n");
		} else if (r->diag != NULL) {
			bounce_printf(&b, "Diagnostic-Code: X-Outpost; ");
			bounce_add_text(&b, r->diag);
			bounce_printf(&b, "\r\n");
		}
		if (r->category != CONF_BC_NONE) /* RFC 3464 3.3: X- field */
			bounce_printf(&b, "X-Outpost-Bounce-Category: %s\r\n",
				      conf_bounce_category_name(r->category));
		bounce_printf(&b, "Last-Attempt-Date: %s\r\n", date);
	}

	/* 3. What was sent: RET=FULL the message, else its headers. */
	bounce_printf(&b, "\r\n--%s\r\nContent-Type: %s\r\n\r\n", boundary,
		      in->full != NULL ? "message/rfc822"
				       : "text/rfc822-headers");
	if (in->full != NULL) {
		bounce_add(&b, in->full, in->full_len);
		hlen = in->full_len;
		if (hlen < 2 || memcmp(in->full + hlen - 2, "\r\n", 2) != 0)
			bounce_add(&b, "\r\n", 2);
	} else {
		hlen = in->headers != NULL
			   ? bounce_headers_cut(in->headers, in->headers_len)
			   : 0;
		if (hlen > 0) {
			bounce_add(&b, in->headers, hlen);
			if (hlen < 2 ||
			    memcmp(in->headers + hlen - 2, "\r\n", 2) != 0)
				bounce_add(&b, "\r\n", 2);
		}
	}
	bounce_printf(&b, "\r\n--%s--\r\n", boundary);
	if (b.oom) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}

int
bounce_collect(struct queue_rcpt *rcpt, uint32_t idx, uint8_t state,
	       uint32_t **list, unsigned *n)
{
	uint32_t *nl;

	nl = realloc(*list, (*n + 1) * sizeof(*nl));
	if (nl == NULL)
		return -1; /* RCPT untouched: still pending */
	*list = nl;
	(*list)[(*n)++] = idx;
	rcpt->state = state;
	return 0;
}
