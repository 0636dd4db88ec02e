/*
 * msg.c — the header block parser: splits a queued message (CRLF lines)
 * into header fields, folding kept, and the body, in one bounded pass.
 * Owns: the dkim_msg field array.  Must not: copy or modify the message,
 * read a byte outside [data, data + len), accept a header block a verifier
 * could split differently (bare CR, bare LF, NUL, continuation first).
 * Thread: any; no state outside the caller's struct dkim_msg.
 * Invariants: each field lies inside the header block, starts with its
 * name, holds its colon, and never includes its final CRLF.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define MSG_HDRS_START 32

/*
 * A length-checked reader (c-ares ares_buf shape) over the message, named
 * as every byte reader of the tree (queue/record.c record_rd_*, dns/cache.c
 * dns_rd_*, dkim/dmarc.c dmarc_rd_*): every look checks the bytes left; the
 * line fetch fails (-1) without moving.
 */
struct msg_rd {
	const uint8_t *data;
	size_t len;
	size_t off;
};

static size_t
msg_rd_left(const struct msg_rd *r)
{
	return r->len - r->off;
}

static int
msg_rd_peek(const struct msg_rd *r, size_t at, uint8_t *c)
{
	if (msg_rd_left(r) <= at)
		return -1;
	*c = r->data[r->off + at];
	return 0;
}

/*
 * msg_rd_line — the line at the cursor: *LINE_LEN octets before its
 * CRLF (or before the end of the data for an unterminated last line); the
 * cursor moves past the CRLF.  -1 (cursor unmoved) on a bare CR, a bare LF
 * or a NUL: a header block must split the same way for every reader.
 */
static int
msg_rd_line(struct msg_rd *r, size_t *line_len, const char **why)
{
	const uint8_t *p = r->data + r->off;
	size_t n = msg_rd_left(r), i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			if (i + 1 >= n || p[i + 1] != '\n') {
				*why = "bare CR in the header block";
				return -1;
			}
			*line_len = i;
			r->off += i + 2;
			return 0;
		}
		if (p[i] == '\n') {
			*why = "bare LF in the header block";
			return -1;
		}
		if (p[i] == '\0') {
			*why = "NUL in the header block";
			return -1;
		}
	}
	*line_len = n;
	r->off += n;
	return 0;
}

static int
msg_hdr_append(struct dkim_msg *m, size_t *cap, const uint8_t *start,
	       size_t name_len)
{
	struct dkim_header *n;
	size_t ncap;

	if (m->nhdrs == *cap) {
		ncap = *cap == 0 ? MSG_HDRS_START : *cap * 2;
		if (ncap < *cap || ncap > SIZE_MAX / sizeof(*n))
			return -1;
		if ((n = realloc(m->hdrs, ncap * sizeof(*n))) == NULL)
			return -1;
		m->hdrs = n;
		*cap = ncap;
	}
	m->hdrs[m->nhdrs].field = (const char *)start;
	m->hdrs[m->nhdrs].len = 0;
	m->hdrs[m->nhdrs].name_len = name_len;
	m->nhdrs++;
	return 0;
}

/*
 * msg_name_len — the field name of the first line LINE (LEN octets): the
 * octets before the colon, trailing WSP excluded (RFC 5322 obs-optional).
 * Printable ASCII only (ftext, RFC 5322 2.2).  -1 with *WHY otherwise.
 */
static int
msg_name_len(const uint8_t *line, size_t len, size_t *name_len,
	     const char **why)
{
	size_t i, end;

	for (i = 0; i < len && line[i] != ':'; i++)
		;
	if (i == len) {
		*why = "header line without a colon";
		return -1;
	}
	end = i;
	while (end > 0 && DKIM_IS_WSP(line[end - 1]))
		end--;
	if (end == 0) {
		*why = "empty header field name";
		return -1;
	}
	for (i = 0; i < end; i++)
		if (line[i] < 33 || line[i] > 126) {
			*why = "invalid character in a header field name";
			return -1;
		}
	*name_len = end;
	return 0;
}

int
dkim_msg_parse(const uint8_t *data, size_t len, struct dkim_msg *m, char *err,
	       size_t errlen)
{
	struct msg_rd r = { data, len, 0 };
	struct dkim_header *cur = NULL;
	const char *why = NULL;
	size_t cap = 0, line_off = 0, line_len, name_len;
	uint8_t c0, c1;

	memset(m, 0, sizeof(*m));
	m->data = data;
	m->len = len;
	m->body_off = len;
	if (data == NULL && len != 0) {
		why = "no message";
		goto fail;
	}
	while (msg_rd_left(&r) > 0) {
		/* The empty line ends the header block. */
		if (msg_rd_peek(&r, 0, &c0) == 0 && c0 == '\r' &&
		    msg_rd_peek(&r, 1, &c1) == 0 && c1 == '\n') {
			m->body_off = r.off + 2;
			break;
		}
		line_off = r.off;
		if (msg_rd_line(&r, &line_len, &why) != 0)
			goto fail;
		if (DKIM_IS_WSP(c0)) {
			if (cur == NULL) {
				why = "continuation line before any field";
				goto fail;
			}
			/* Folding: the field grows to this line's end. */
			cur->len = line_off + line_len -
				   (size_t)((const uint8_t *)cur->field - data);
			continue;
		}
		if (msg_name_len(data + line_off, line_len, &name_len, &why) !=
		    0)
			goto fail;
		if (msg_hdr_append(m, &cap, data + line_off, name_len) != 0) {
			why = "out of memory";
			goto fail;
		}
		cur = &m->hdrs[m->nhdrs - 1];
		cur->len = line_len;
	}
	return 0;
fail:
	dkim_err(err, errlen, "%s (line at offset %zu)", why, line_off);
	dkim_msg_clear(m);
	return -1;
}

void
dkim_msg_clear(struct dkim_msg *m)
{
	if (m == NULL)
		return;
	free(m->hdrs);
	m->hdrs = NULL;
	m->nhdrs = 0;
}

static int
msg_name_is(const struct dkim_header *h, const char *name, size_t len)
{
	return h->name_len == len &&
	       dkim_ascii_casecmp(h->field, name, len) == 0;
}

const struct dkim_header *
dkim_header_find(const struct dkim_msg *m, const char *name, size_t nth)
{
	size_t i, len = strlen(name);

	for (i = 0; i < m->nhdrs; i++)
		if (msg_name_is(&m->hdrs[i], name, len) && nth-- == 0)
			return &m->hdrs[i];
	return NULL;
}

size_t
dkim_header_count(const struct dkim_msg *m, const char *name)
{
	size_t i, n = 0, len = strlen(name);

	for (i = 0; i < m->nhdrs; i++)
		if (msg_name_is(&m->hdrs[i], name, len))
			n++;
	return n;
}
