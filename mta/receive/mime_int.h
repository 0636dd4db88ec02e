/*
 * mime_int.h — the length-checked MIME readers shared by the complaint-report
 * parser (arf.c) and the scan's leaf walker (scan_mime.c): lines, header
 * fields, Content-Type parameters, delimiter lines (RFC 2045, 2046).  Private
 * to mta/receive.  Pure; any thread; none reads past its END.
 */
#ifndef OUTPOST_MTA_RECEIVE_MIME_INT_H
#define OUTPOST_MTA_RECEIVE_MIME_INT_H

#include <stddef.h>
#include <stdint.h>

/* A header block being read: P moves, never past END. */
struct mime_hdrs {
	const uint8_t *p, *end;
	size_t nfields;
};

/*
 * mime_line — the next line of [P, END): its length without CR LF, and in
 * *NEXT where the following line starts (END for the last one).  LF-only
 * line ends are taken too.
 */
size_t mime_line(const uint8_t *p, const uint8_t *end, const uint8_t **next);

/*
 * mime_hdrs_next — the next field of H into NAME (NAMELEN bytes,
 * lower-cased) and VALUE (VALUELEN bytes, unfolded: the line breaks of folds
 * removed, their white space kept).  Returns 1 a field, 0 the end of the
 * block (H->p just past the blank line, or at END), -1 malformed (*WHY says
 * how: a continuation line first, no colon, a bad name, more than
 * FIELDS_MAX fields, a value longer than VALUELEN - 1; H->p unmoved).
 */
int mime_hdrs_next(struct mime_hdrs *h, char *name, size_t namelen, char *value,
		   size_t valuelen, size_t fields_max, const char **why);

/*
 * mime_param — the parameter NAME (case-insensitive) of the Content-Type
 * value V (NUL-terminated) into OUT: a token or a quoted string unquoted.
 * Returns 1 found, 0 absent, -1 malformed (an unterminated quote, a value
 * longer than OUTLEN - 1).
 */
int mime_param(const char *v, const char *name, char *out, size_t outlen);

/* mime_media_type — the media type of Content-Type value V, lower-cased,
 * into OUT ("" for none). */
void mime_media_type(const char *v, char *out, size_t outlen);

/*
 * mime_delimiter — is the line [P, P+N) (without its line break) a
 * delimiter line of boundary B (BLEN bytes): "--" B, then "--" for the
 * closing one, then only transport padding (RFC 2046 5.1.1)?  Returns 1 a
 * part follows, 2 the closing delimiter, 0 neither.
 */
int mime_delimiter(const uint8_t *p, size_t n, const char *b, size_t blen);

#endif
