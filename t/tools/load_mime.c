/*
 * load_mime.c — the campaign-like message of outpost-load (load_mime.h).
 * Owns nothing past its calls but the tail it hands back.  Single-threaded.
 * Must not: start a line with '.' (the DATA form is dot-stuffed once, for
 * the static tail), make the attachment of two messages equal in unique
 * mode.  Invariant: head + tail is one well-formed multipart/mixed body.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "t/tools/load_mime.h"

#define LOAD_MIME_BOUNDARY "=_outpost_load_7f3a"
#define LOAD_MIME_LINE_IN  57 /* octets per base64 line: 76 characters */

/* One base64 line of IN (LOAD_MIME_LINE_IN octets or fewer) into OUT. */
static size_t
load_mime_line(const uint8_t *in, size_t n, char *out)
{
	return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int
load_mime_prepare(struct load_mime *m, size_t bytes, const char *tag,
		  char **tail, size_t *tail_len)
{
	static const char close[] = "--" LOAD_MIME_BOUNDARY "--\r\n";
	uint8_t *raw;
	uint64_t x = 0x243f6a8885a308d3ull;
	size_t i, off, o = 0, lines;
	char *t;

	if (bytes < LOAD_MIME_LINE_IN)
		bytes = LOAD_MIME_LINE_IN;
	snprintf(m->tag, sizeof(m->tag), "%s", tag);
	if ((raw = malloc(bytes)) == NULL)
		return -1;
	/* A PDF's head, then xorshift bytes: compressed streams look so. */
	for (i = 0; i < bytes; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		raw[i] = (uint8_t)x;
	}
	memcpy(raw, "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 15);
	lines = (bytes + LOAD_MIME_LINE_IN - 1) / LOAD_MIME_LINE_IN;
	if ((t = malloc(lines * 80 + sizeof(close))) == NULL) {
		free(raw);
		return -1;
	}
	load_mime_line(raw, LOAD_MIME_LINE_IN, m->first);
	for (off = LOAD_MIME_LINE_IN; off < bytes; off += LOAD_MIME_LINE_IN) {
		size_t n = bytes - off < LOAD_MIME_LINE_IN ? bytes - off
							   : LOAD_MIME_LINE_IN;
		o += load_mime_line(raw + off, n, t + o);
		t[o++] = '\r';
		t[o++] = '\n';
	}
	memcpy(t + o, close, sizeof(close));
	*tail = t;
	*tail_len = o + sizeof(close) - 1;
	free(raw);
	return 0;
}

size_t
load_mime_head(const struct load_mime *m, uint64_t seq, char *buf, size_t size)
{
	uint8_t own[LOAD_MIME_LINE_IN];
	char line[80];
	int n;

	if (m->mode == LOAD_MIME_UNIQUE) {
		/* This message's own first line: the attachment differs from
		 * every other message's, in this run and in others. */
		memset(own, ' ', sizeof(own));
		n = snprintf((char *)own, sizeof(own),
			     "%%PDF-1.4\n%% %s %" PRIu64, m->tag, seq);
		if (n > 0 && (size_t)n < sizeof(own))
			own[n] = ' ';
		load_mime_line(own, sizeof(own), line);
	} else {
		snprintf(line, sizeof(line), "%s", m->first);
	}
	n = snprintf(
	    buf, size,
	    "Content-Type: multipart/mixed; boundary=\"" LOAD_MIME_BOUNDARY
	    "\"\r\n"
	    "\r\n"
	    "This is a multi-part message in MIME format.\r\n"
	    "--" LOAD_MIME_BOUNDARY "\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "\r\n"
	    "Dear customer %" PRIu64 ",\r\n"
	    "\r\n"
	    "your statement %s-%" PRIu64 " is attached.\r\n"
	    "--" LOAD_MIME_BOUNDARY "\r\n"
	    "Content-Type: application/pdf; name=\"statement.pdf\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; "
	    "filename=\"statement.pdf\"\r\n"
	    "\r\n"
	    "%s\r\n",
	    seq, m->tag, seq, line);
	if (n < 0 || (size_t)n >= size)
		return 0;
	return (size_t)n;
}
