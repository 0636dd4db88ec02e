/*
 * canon.c — RFC 6376 3.4 canonicalization (simple, relaxed) of header
 * fields and bodies, the streaming body hash (any split of a body into
 * pieces hashes alike: dkim_bodyhash_*), SHA-256 and base64.
 * Owns: nothing beyond each call (the SHA-256 method is fetched once and
 * kept).  Must not: copy a body (it streams through a fixed buffer), read
 * outside the given ranges, depend on the locale.
 * Thread: any; the one shared object (the fetched EVP_MD) is set up once
 * under pthread_once and then only read.
 * Invariants: the result equals libopendkim 2.11's for CRLF input without
 * NUL, bare CR/LF, VT or FF in header values (where it departs from the
 * RFC; we follow the RFC there, as python3-dkim and Mail::DKIM do).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dkim/canon_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define CANON_CHUNK_BYTES (64 * 1024) /* relaxed body output, then hashed */
#define CANON_BUF_START   256

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

int
dkim_ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int
dkim_ascii_casecmp(const char *a, const char *b, size_t n)
{
	size_t i;
	int d;

	for (i = 0; i < n; i++)
		if ((d = dkim_ascii_lower((unsigned char)a[i]) -
			 dkim_ascii_lower((unsigned char)b[i])) != 0)
			return d;
	return 0;
}

bool
dkim_token_is(const void *p, size_t n, const char *lit)
{
	return strlen(lit) == n && dkim_ascii_casecmp(p, lit, n) == 0;
}

void
dkim_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	/* Cut to fit on purpose: a _dmarc name may fill the buffer alone. */
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
dkim_buf_add(struct dkim_buf *b, const void *p, size_t n)
{
	uint8_t *nd;
	size_t ncap;

	if (n > SIZE_MAX - b->len - 1)
		return -1;
	if (b->len + n + 1 > b->cap) {
		ncap = b->cap == 0 ? CANON_BUF_START : b->cap;
		while (ncap < b->len + n + 1) {
			if (ncap > SIZE_MAX / 2)
				return -1;
			ncap *= 2;
		}
		if ((nd = realloc(b->data, ncap)) == NULL)
			return -1;
		b->data = nd;
		b->cap = ncap;
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
dkim_buf_addc(struct dkim_buf *b, uint8_t c)
{
	return dkim_buf_add(b, &c, 1);
}

int
dkim_buf_adds(struct dkim_buf *b, const char *s)
{
	return dkim_buf_add(b, s, strlen(s));
}

void
dkim_buf_free(struct dkim_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---------------------------------------------------------------------- */
/* SHA-256 and base64                                                      */

static pthread_once_t canon_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *canon_md;

static void
canon_md_fetch(void)
{
	/* An explicit fetch, once: EVP_sha256() would look the provider up
	 * again (under a lock) on every digest. */
	canon_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *
canon_sha256_md(void)
{
	(void)pthread_once(&canon_md_once, canon_md_fetch);
	return canon_md;
}

/* A streaming SHA-256: out of memory is sticky and reported at the end. */
struct canon_sha {
	EVP_MD_CTX *ctx;
	int failed;
};

static void
canon_sha_init(struct canon_sha *s)
{
	const EVP_MD *md = canon_sha256_md();

	s->failed = 0;
	s->ctx = NULL;
	if (md == NULL || (s->ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex2(s->ctx, md, NULL) != 1)
		s->failed = 1;
}

static void
canon_sha_update(struct canon_sha *s, const void *p, size_t n)
{
	if (!s->failed && n > 0 && EVP_DigestUpdate(s->ctx, p, n) != 1)
		s->failed = 1;
}

static int
canon_sha_final(struct canon_sha *s, uint8_t digest[DKIM_SHA256_BYTES])
{
	unsigned int n = 0;

	if (!s->failed && (EVP_DigestFinal_ex(s->ctx, digest, &n) != 1 ||
			   n != DKIM_SHA256_BYTES))
		s->failed = 1;
	EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
	return s->failed ? -1 : 0;
}

int
dkim_sha256(const void *p, size_t n, uint8_t digest[DKIM_SHA256_BYTES])
{
	struct canon_sha s;

	canon_sha_init(&s);
	canon_sha_update(&s, p, n);
	return canon_sha_final(&s, digest);
}

int
dkim_base64(const uint8_t *in, size_t n, char *out, size_t outlen)
{
	size_t need;
	int w;

	if (n > (SIZE_MAX / 4 - 1) * 3 || n > 0x3fffffff)
		return -1;
	need = 4 * ((n + 2) / 3) + 1;
	if (outlen < need)
		return -1;
	w = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	if (w < 0 || (size_t)w + 1 != need)
		return -1;
	return w;
}

/* ---------------------------------------------------------------------- */
/* Header fields                                                           */

int
dkim_canon_header(struct dkim_buf *out, enum dkim_canon c, const char *field,
		  size_t len, size_t name_len)
{
	const uint8_t *f = (const uint8_t *)field;
	size_t i, start, colon;
	int space = 0, started = 0;
	uint8_t ch;

	if (c == DKIM_CANON_SIMPLE)
		return dkim_buf_add(out, field, len);

	for (colon = name_len; colon < len && f[colon] != ':'; colon++)
		if (!DKIM_IS_WSP(f[colon]))
			return -1;
	if (colon >= len)
		return -1;
	/* Relaxed: name lower-cased, WSP around the colon deleted, folding
	 * CRLFs removed, WSP runs to one SP, trailing WSP deleted. */
	start = out->len;
	for (i = 0; i < name_len; i++)
		if (dkim_buf_addc(out, (uint8_t)dkim_ascii_lower(f[i])) != 0)
			goto fail;
	if (dkim_buf_addc(out, ':') != 0)
		goto fail;
	for (i = colon + 1; i < len; i++) {
		ch = f[i];
		if (DKIM_IS_WSP(ch) || ch == '\r' || ch == '\n') {
			space = 1;
			continue;
		}
		/* A run before the first octet of the value is deleted. */
		if (space && started && dkim_buf_addc(out, ' ') != 0)
			goto fail;
		space = 0;
		started = 1;
		if (dkim_buf_addc(out, ch) != 0)
			goto fail;
	}
	return 0;
fail:
	out->len = start;
	if (out->data != NULL)
		out->data[start] = '\0';
	return -1;
}

/* ---------------------------------------------------------------------- */
/* Bodies                                                                  */

/*
 * A body goes through a fixed chunk that is hashed (or appended to a
 * buffer) when full: no copy of the body, no allocation per line.
 */
struct canon_sink {
	uint8_t chunk[CANON_CHUNK_BYTES];
	size_t used;
	struct canon_sha *sha; /* one of these two */
	struct dkim_buf *buf;
	int failed;
};

static void
canon_sink_flush(struct canon_sink *k)
{
	if (k->used == 0)
		return;
	if (k->sha != NULL)
		canon_sha_update(k->sha, k->chunk, k->used);
	else if (dkim_buf_add(k->buf, k->chunk, k->used) != 0)
		k->failed = 1;
	k->used = 0;
}

static void
canon_sink_put(struct canon_sink *k, const uint8_t *p, size_t n)
{
	size_t take;

	if (k->sha != NULL && n >= sizeof(k->chunk)) {
		/* Already whole: hashed in place, not copied. */
		canon_sink_flush(k);
		canon_sha_update(k->sha, p, n);
		return;
	}
	while (n > 0) {
		if (k->used == sizeof(k->chunk))
			canon_sink_flush(k);
		take = sizeof(k->chunk) - k->used;
		if (take > n)
			take = n;
		memcpy(k->chunk + k->used, p, take);
		k->used += take;
		p += take;
		n -= take;
	}
}

/* N CRLFs (empty lines held back until something follows them). */
static void
canon_sink_crlfs(struct canon_sink *k, uint64_t n)
{
	static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
	uint64_t take;

	for (; n > 0; n -= take) {
		take = n < 8 ? n : 8;
		canon_sink_put(k, (const uint8_t *)crlfs, (size_t)take * 2);
	}
}

/*
 * canon_zero_bytes — 0x80 in each byte of X that is zero, exactly (no
 * borrow from a neighbour: the top bit is handled apart).
 */
static uint64_t
canon_zero_bytes(uint64_t x)
{
	uint64_t y = (x & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL;

	return ~(y | x | 0x7f7f7f7f7f7f7f7fULL);
}

/*
 * canon_relaxed_span — a piece [P, Q) of a line that starts and ends with
 * a non-WSP octet, with each WSP run as one SP, straight into the chunk.
 * Ordinary text (single spaces, no TAB) is already canonical: 8 octets
 * at a time are checked (SWAR) and copied whole; a block with a TAB or two
 * WSP in a row goes through the octet loop, which is branch-free (the
 * text/space pattern defeats the predictor): every octet is stored, the
 * cursor advances unless it is WSP after WSP.  Output never outgrows input.
 */
static void
canon_relaxed_span(struct canon_sink *k, const uint8_t *p, const uint8_t *q)
{
	uint8_t *dst, c;
	const uint8_t *lim, *stop;
	uint64_t w, sp;
	unsigned ws = 0, is_ws;
	size_t n;

	while (p < q) {
		if (k->used == sizeof(k->chunk))
			canon_sink_flush(k);
		dst = k->chunk + k->used;
		n = sizeof(k->chunk) - k->used;
		if (n > (size_t)(q - p))
			n = (size_t)(q - p);
		lim = p + n;
		while (p < lim) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			while (lim - p >= 8) {
				memcpy(&w, p, 8);
				sp =
				    canon_zero_bytes(w ^ 0x2020202020202020ULL);
				if (canon_zero_bytes(
					w ^ 0x0909090909090909ULL) != 0 ||
				    (sp & (sp << 8)) != 0 ||
				    (ws && (sp & 0x80)))
					break;
				memcpy(dst, &w, 8);
				dst += 8;
				p += 8;
				ws = (unsigned)(sp >> 63);
			}
#endif
			stop = lim - p > 8 ? p + 8 : lim;
			while (p < stop) {
				c = *p++;
				is_ws = (unsigned)(c == ' ') |
					(unsigned)(c == '\t');
				*dst = is_ws ? ' ' : c;
				dst += 1 - (is_ws & ws);
				ws = is_ws;
			}
		}
		k->used = (size_t)(dst - k->chunk);
	}
}

/*
 * The state a body's canonicalization carries from one piece of the body
 * to the next, so that any split of the body gives the same output: a CR
 * at the end of a piece may start a CRLF; simple holds the CRLFs at the end
 * (empty lines at the end of the body vanish); relaxed holds the empty lines
 * and a WSP run (trailing WSP vanishes, a run inside a line is one SP).
 */
struct dkim_bodyhash {
	struct canon_sink sink;
	struct canon_sha sha;
	enum dkim_canon canon;
	bool cr;         /* the last piece ended in a CR not yet placed */
	uint64_t crlfs;  /* simple: CRLFs held at the end */
	uint64_t blanks; /* relaxed: empty lines held */
	bool ws;         /* relaxed: a WSP run held in the current line */
	bool started;    /* relaxed: the current line has a non-WSP octet */
};

/* Simple: everything but the CRLFs at the end goes out as it is. */
static void
canon_simple_update(struct dkim_bodyhash *b, const uint8_t *p, size_t n)
{
	size_t t;
	uint64_t k = 0;
	bool cr = false;

	if (n > 0 && b->cr) {
		b->cr = false;
		if (p[0] == '\n') {
			b->crlfs++;
			p++;
			n--;
		} else {
			canon_sink_crlfs(&b->sink, b->crlfs);
			b->crlfs = 0;
			canon_sink_put(&b->sink, (const uint8_t *)"\r", 1);
		}
	}
	if (n == 0)
		return;
	t = n;
	if (p[t - 1] == '\r') {
		cr = true;
		t--;
	}
	while (t >= 2 && p[t - 2] == '\r' && p[t - 1] == '\n') {
		t -= 2;
		k++;
	}
	if (t > 0) {
		canon_sink_crlfs(&b->sink, b->crlfs);
		canon_sink_put(&b->sink, p, t);
		b->crlfs = 0;
	}
	b->crlfs += k;
	b->cr = cr;
}

/* Relaxed: a piece [P, P + N) of a line (no CRLF inside). */
static void
canon_relaxed_piece(struct dkim_bodyhash *b, const uint8_t *p, size_t n)
{
	const uint8_t *e = p + n;
	bool trailing = false;

	while (p < e && DKIM_IS_WSP(*p)) {
		b->ws = true;
		p++;
	}
	if (p == e)
		return;
	while (DKIM_IS_WSP(e[-1])) {
		trailing = true;
		e--;
	}
	if (!b->started) {
		canon_sink_crlfs(&b->sink, b->blanks);
		b->blanks = 0;
		b->started = true;
	}
	if (b->ws)
		canon_sink_put(&b->sink, (const uint8_t *)" ", 1);
	canon_relaxed_span(&b->sink, p, e);
	b->ws = trailing;
}

/* Relaxed: the end of a line (its trailing WSP dropped). */
static void
canon_relaxed_eol(struct dkim_bodyhash *b)
{
	if (b->started)
		canon_sink_put(&b->sink, (const uint8_t *)"\r\n", 2);
	else
		b->blanks++;
	b->started = b->ws = false;
}

/* Relaxed: lines end at CRLF; a lone CR or LF is an ordinary octet
 * (Outpost never queues one). */
static void
canon_relaxed_update(struct dkim_bodyhash *b, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n, *nl;

	if (n > 0 && b->cr) {
		b->cr = false;
		if (p[0] == '\n') {
			canon_relaxed_eol(b);
			p++;
		} else {
			canon_relaxed_piece(b, (const uint8_t *)"\r", 1);
		}
	}
	while (p < end) {
		for (nl = p;
		     (nl = memchr(nl, '\n', (size_t)(end - nl))) != NULL; nl++)
			if (nl > p && nl[-1] == '\r')
				break;
		if (nl != NULL) {
			canon_relaxed_piece(b, p, (size_t)(nl - 1 - p));
			canon_relaxed_eol(b);
			p = nl + 1;
			continue;
		}
		if (end[-1] == '\r') {
			canon_relaxed_piece(b, p, (size_t)(end - 1 - p));
			b->cr = true;
		} else {
			canon_relaxed_piece(b, p, (size_t)(end - p));
		}
		break;
	}
}

/* The start of a body; into SHA or else BUF. */
static void
canon_body_init(struct dkim_bodyhash *b, enum dkim_canon c, bool sha,
		struct dkim_buf *buf)
{
	b->sink.used = 0;
	b->sink.failed = 0;
	b->sink.sha = sha ? &b->sha : NULL;
	b->sink.buf = buf;
	b->canon = c;
	b->cr = b->ws = b->started = false;
	b->crlfs = b->blanks = 0;
	if (sha)
		canon_sha_init(&b->sha);
}

static void
canon_body_update(struct dkim_bodyhash *b, const uint8_t *p, size_t n)
{
	if (b->canon == DKIM_CANON_SIMPLE)
		canon_simple_update(b, p, n);
	else
		canon_relaxed_update(b, p, n);
}

/* The end of the body: what was held is placed or dropped, the last line
 * gets its CRLF (simple: an empty body is one CRLF). */
static void
canon_body_end(struct dkim_bodyhash *b)
{
	if (b->canon == DKIM_CANON_SIMPLE) {
		if (b->cr) {
			canon_sink_crlfs(&b->sink, b->crlfs);
			canon_sink_put(&b->sink, (const uint8_t *)"\r", 1);
		}
		canon_sink_put(&b->sink, (const uint8_t *)"\r\n", 2);
	} else {
		if (b->cr)
			canon_relaxed_piece(b, (const uint8_t *)"\r", 1);
		if (b->started)
			canon_relaxed_eol(b);
	}
	b->cr = false;
	canon_sink_flush(&b->sink);
}

struct dkim_bodyhash *
dkim_bodyhash_new(enum dkim_canon c)
{
	struct dkim_bodyhash *b;

	/* 64 KB is too much stack for a worker thread: one malloc. */
	if ((b = malloc(sizeof(*b))) == NULL)
		return NULL;
	canon_body_init(b, c, true, NULL);
	return b;
}

void
dkim_bodyhash_update(struct dkim_bodyhash *b, const uint8_t *p, size_t n)
{
	canon_body_update(b, p, n);
}

int
dkim_bodyhash_final(struct dkim_bodyhash *b, char out[45])
{
	uint8_t digest[DKIM_SHA256_BYTES];
	int rc;

	out[0] = '\0';
	canon_body_end(b);
	rc = canon_sha_final(&b->sha, digest);
	free(b);
	if (rc != 0 ||
	    dkim_base64(digest, sizeof(digest), out, 45) != DKIM_BH_B64_BYTES) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

void
dkim_bodyhash_free(struct dkim_bodyhash *b)
{
	uint8_t digest[DKIM_SHA256_BYTES];

	if (b == NULL)
		return;
	(void)canon_sha_final(&b->sha, digest);
	free(b);
}

int
dkim_canon_body_sha256(const uint8_t *body, size_t len, enum dkim_canon c,
		       uint8_t digest[DKIM_SHA256_BYTES])
{
	struct dkim_bodyhash *b;

	if ((b = malloc(sizeof(*b))) == NULL)
		return -1;
	canon_body_init(b, c, true, NULL);
	canon_body_update(b, body, len);
	canon_body_end(b);
	if (canon_sha_final(&b->sha, digest) != 0) {
		free(b);
		return -1;
	}
	free(b);
	return 0;
}

int
dkim_canon_body_write(struct dkim_buf *out, const uint8_t *body, size_t len,
		      enum dkim_canon c)
{
	struct dkim_bodyhash *b;
	int failed;

	if ((b = malloc(sizeof(*b))) == NULL)
		return -1;
	canon_body_init(b, c, false, out);
	canon_body_update(b, body, len);
	canon_body_end(b);
	failed = b->sink.failed;
	free(b);
	return failed ? -1 : 0;
}

void
dkim_body_hash(const struct dkim_msg *m, enum dkim_canon bcanon, char out[45])
{
	struct dkim_bodyhash *b;

	out[0] = '\0';
	if (m->body_off > m->len || (b = dkim_bodyhash_new(bcanon)) == NULL)
		return;
	if (m->data != NULL)
		dkim_bodyhash_update(b, m->data + m->body_off,
				     m->len - m->body_off);
	(void)dkim_bodyhash_final(b, out);
}
