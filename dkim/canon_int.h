/*
 * canon_int.h — dkim/ internals shared by its files (and the fuzz
 * harnesses): ASCII helpers, the diagnostic formatter, a growable byte
 * buffer, RFC 6376 3.4 canonicalization of header fields and bodies,
 * SHA-256 and base64.  Not part of the public interface (dkim/dkim.h).
 */
#ifndef OUTPOST_DKIM_CANON_INT_H
#define OUTPOST_DKIM_CANON_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkim/dkim.h"

#define DKIM_SHA256_BYTES 32
#define DKIM_BH_B64_BYTES 44 /* base64 of 32 octets, without the NUL */

/* WSP (RFC 5234): SP or HTAB.  Evaluates C twice. */
#define DKIM_IS_WSP(c) ((c) == ' ' || (c) == '\t')
/* ALPHA and DIGIT (RFC 5234), ASCII only.  Evaluate C more than once. */
#define DKIM_IS_ALPHA(c)                                                       \
	(((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define DKIM_IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* dkim_ascii_lower — C with ASCII letters lower-cased (no locale). */
int dkim_ascii_lower(int c);

/* dkim_ascii_casecmp — memcmp with ASCII letters folded (no locale). */
int dkim_ascii_casecmp(const char *a, const char *b, size_t n);

/* dkim_token_is — P (N octets) equals LIT, ASCII letters folded. */
bool dkim_token_is(const void *p, size_t n, const char *lit);

/*
 * dkim_err — the one diagnostic formatter of dkim/: FMT into ERR (ERRLEN
 * bytes; nothing when ERR is NULL or ERRLEN is 0), cut to fit (the text is
 * for a log or a reply; nothing parses it).  Any thread.
 */
void dkim_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * struct dkim_buf — a growable byte buffer; data is NUL-terminated after
 * every successful add (the NUL is not counted in len).  Zero-initialise,
 * free with dkim_buf_free().  Adds fail (-1) only when memory runs out;
 * the buffer then keeps its old contents.
 */
struct dkim_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

int dkim_buf_add(struct dkim_buf *b, const void *p, size_t n);
int dkim_buf_addc(struct dkim_buf *b, uint8_t c);
int dkim_buf_adds(struct dkim_buf *b, const char *s);
void dkim_buf_free(struct dkim_buf *b);

/*
 * dkim_canon_header — append the canonical form (RFC 6376 3.4.1 simple,
 * 3.4.2 relaxed) of one header field FIELD (LEN octets, folding CRLFs kept,
 * no final CRLF; its name is the first NAME_LEN octets and the colon
 * follows after optional WSP) to OUT, without a final CRLF.  0 or -1 (out
 * of memory, or no colon after the name).
 */
int dkim_canon_header(struct dkim_buf *out, enum dkim_canon c,
		      const char *field, size_t len, size_t name_len);

/*
 * dkim_canon_body_sha256 — SHA-256 of the canonical body BODY (LEN octets;
 * lines end in CRLF, a missing final CRLF is added; RFC 6376 3.4.3 simple:
 * an empty body is one CRLF; 3.4.4 relaxed: an empty body is empty).
 * Streams: no copy of the body is made.  0 or -1 (OpenSSL out of memory).
 */
int dkim_canon_body_sha256(const uint8_t *body, size_t len, enum dkim_canon c,
			   uint8_t digest[DKIM_SHA256_BYTES]);

/*
 * dkim_canon_body_write — the canonical body itself, appended to OUT
 * (for tests and the fuzz harness; signing never materialises it).
 */
int dkim_canon_body_write(struct dkim_buf *out, const uint8_t *body, size_t len,
			  enum dkim_canon c);

/* dkim_sha256 — one-shot SHA-256 (OpenSSL, SHA-NI/AVX2 when present). */
int dkim_sha256(const void *p, size_t n, uint8_t digest[DKIM_SHA256_BYTES]);

/*
 * dkim_base64 — standard base64 (RFC 4648 4, padded, no line breaks) of IN
 * into OUT (at least 4 * ((n + 2) / 3) + 1 bytes, NUL-terminated).
 * Returns the length written, or -1 when OUT is too small.
 */
int dkim_base64(const uint8_t *in, size_t n, char *out, size_t outlen);

#endif
