/*
 * mime.c — the MIME readers of mime_int.h, shared by arf.c (complaint
 * reports) and scan_mime.c (the scan's leaf parts).  Owns nothing.  Any
 * thread; no state.  Must not: read past END or N (every byte is a peer's),
 * write past OUTLEN.  Strict where arf.c needs it (mime_hdrs_next reports a
 * malformed block); the scan walker decides itself what a failure means.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "mta/receive/mime_int.h"

size_t
mime_line(const uint8_t *p, const uint8_t *end, const uint8_t **next)
{
	const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
	size_t n;

	if (lf == NULL) {
		*next = end;
		return (size_t)(end - p);
	}
	*next = lf + 1;
	n = (size_t)(lf - p);
	if (n > 0 && p[n - 1] == '\r')
		n--;
	return n;
}

int
mime_hdrs_next(struct mime_hdrs *h, char *name, size_t namelen, char *value,
	       size_t valuelen, size_t fields_max, const char **why)
{
	const uint8_t *line = h->p, *next, *colon;
	size_t n = mime_line(line, h->end, &next), nlen, vlen, i;

	if (h->p >= h->end || n == 0) {
		h->p = h->p >= h->end ? h->end : next;
		return 0;
	}
	if (line[0] == ' ' || line[0] == '\t') {
		*why = "header block starts with a continuation line";
		return -1;
	}
	if ((colon = memchr(line, ':', n)) == NULL || colon == line) {
		*why = "malformed header line";
		return -1;
	}
	for (nlen = (size_t)(colon - line);
	     nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t');)
		nlen--;
	if (nlen == 0 || nlen >= namelen) {
		*why = "malformed header field name";
		return -1;
	}
	for (i = 0; i < nlen; i++) {
		if (line[i] < 33 || line[i] > 126) {
			*why = "malformed header field name";
			return -1;
		}
		name[i] = (char)(line[i] >= 'A' && line[i] <= 'Z'
				     ? line[i] - 'A' + 'a'
				     : line[i]);
	}
	name[nlen] = '\0';
	if (++h->nfields > fields_max) {
		*why = "too many header fields";
		return -1;
	}
	vlen = 0;
	line = colon + 1;
	n -= (size_t)(line - h->p);
	for (;;) {
		if (vlen + n >= valuelen) {
			*why = "header field too long";
			return -1;
		}
		memcpy(value + vlen, line, n);
		vlen += n;
		line = next;
		if (line >= h->end || (line[0] != ' ' && line[0] != '\t'))
			break;
		n = mime_line(line, h->end, &next);
	}
	value[vlen] = '\0';
	h->p = line;
	return 1;
}

/* A parameter's value at Q (after "="): a token or a quoted string, into
 * OUT.  0, or -1 (an unterminated quote, longer than OUTLEN - 1). */
static int
mime_param_value(const char *q, char *out, size_t outlen)
{
	size_t n = 0;

	if (*q != '"') {
		for (; *q != '\0' && *q != ';' && *q != ' ' && *q != '\t';
		     q++) {
			if (n + 1 >= outlen)
				return -1;
			out[n++] = *q;
		}
		out[n] = '\0';
		return 0;
	}
	for (q++; *q != '"'; q++) {
		if (*q == '\\' && q[1] != '\0')
			q++;
		if (*q == '\0' || n + 1 >= outlen)
			return -1;
		out[n++] = *q;
	}
	out[n] = '\0';
	return 0;
}

int
mime_param(const char *v, const char *name, char *out, size_t outlen)
{
	const char *p = strchr(v, ';'), *q;
	size_t nlen = strlen(name);

	while (p != NULL && *p == ';') {
		for (p++; *p == ' ' || *p == '\t'; p++)
			;
		if (strncasecmp(p, name, nlen) == 0) {
			for (q = p + nlen; *q == ' ' || *q == '\t'; q++)
				;
			if (*q++ == '=') {
				while (*q == ' ' || *q == '\t')
					q++;
				return mime_param_value(q, out, outlen) == 0
					   ? 1
					   : -1;
			}
		}
		/* On to the next ';' outside a quoted string. */
		for (; *p != '\0' && *p != ';'; p++) {
			if (*p != '"')
				continue;
			for (p++; *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				if (*p == '\0')
					return -1;
			}
		}
	}
	return 0;
}

void
mime_media_type(const char *v, char *out, size_t outlen)
{
	size_t n = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v != '\0' && *v != ';' && *v != ' ' && *v != '\t' &&
	       n + 1 < outlen;
	     v++)
		out[n++] = (char)(*v >= 'A' && *v <= 'Z' ? *v - 'A' + 'a' : *v);
	out[n] = '\0';
}

int
mime_delimiter(const uint8_t *p, size_t n, const char *b, size_t blen)
{
	size_t i;
	int kind = 1;

	if (n < blen + 2 || p[0] != '-' || p[1] != '-' ||
	    memcmp(p + 2, b, blen) != 0)
		return 0;
	i = blen + 2;
	if (n - i >= 2 && p[i] == '-' && p[i + 1] == '-') {
		kind = 2;
		i += 2;
	}
	for (; i < n; i++) /* transport padding (RFC 2046 5.1.1) */
		if (p[i] != ' ' && p[i] != '\t')
			return 0;
	return kind;
}
