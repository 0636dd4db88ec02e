/*
 * reencode.c — make a message obey RFC 5322's 998-octet line limit before it
 * is signed: MIME parts with an over-long line become quoted-printable
 * (7bit/8bit/binary) or are re-wrapped (QP, base64); long header lines fold.
 * Owns: nothing past the call (the output buffer goes to the caller).
 * Must not: change a part without an over-long line (copied byte for byte),
 * change what any part decodes to, grow past the caller's limit, recurse
 * past REENCODE_DEPTH_MAX, or take more than a few linear passes per level.
 * Thread: any (pure; the worker pool in outpostd).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/dkim.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define RE_QP_LINE_MAX  76  /* RFC 2045 6.7 (5), the soft break included */
#define RE_B64_LINE_MAX 76  /* RFC 2045 6.8 */
#define RE_BOUNDARY_MAX 200 /* RFC 2046 says 70; be lenient, but bounded */
#define RE_IS_WSP(c)    ((c) == ' ' || (c) == '\t')

static const char re_cte_qp[] = "Content-Transfer-Encoding: quoted-printable";
static const char re_hex[] = "0123456789ABCDEF";

enum re_cte { RE_CTE_IDENTITY, RE_CTE_QP, RE_CTE_B64, RE_CTE_UNKNOWN };
enum re_kind { RE_LEAF, RE_MULTIPART, RE_MESSAGE };

struct re_ctx {
	uint8_t *buf;
	size_t len, cap, max;
	enum reencode_result fail; /* REENCODE_OK while all is well */
	char *why;
	size_t whylen;
};

/* What the header block of one entity says. */
struct re_head {
	size_t hend;     /* where the fields end (the empty line, or body) */
	size_t body_off; /* where the body starts */
	bool nosep;      /* the body starts without an empty line */
	bool mime_version;
	enum re_kind kind;
	enum re_cte cte;
	bool digest; /* multipart/digest: parts default to message/rfc822 */
	char boundary[RE_BOUNDARY_MAX + 1];
	size_t blen;
};

static void re_refuse(struct re_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
re_refuse(struct re_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->fail != REENCODE_OK)
		return;
	c->fail = REENCODE_REFUSED;
	va_start(ap, fmt);
	(void)vsnprintf(c->why, c->whylen, fmt, ap);
	va_end(ap);
}

/* Output ---------------------------------------------------------------- */

static int
re_grow(struct re_ctx *c, size_t n)
{
	size_t ncap;
	uint8_t *nb;

	if (c->fail != REENCODE_OK)
		return -1;
	if (n > c->max - c->len) {
		c->fail = REENCODE_TOO_BIG;
		return -1;
	}
	if (c->len + n <= c->cap)
		return 0;
	ncap = c->cap < 4096 ? 4096 : c->cap;
	while (ncap < c->len + n)
		ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
	if (ncap > c->max)
		ncap = c->max;
	if ((nb = realloc(c->buf, ncap)) == NULL) {
		c->fail = REENCODE_NOMEM;
		return -1;
	}
	c->buf = nb;
	c->cap = ncap;
	return 0;
}

static void
re_put(struct re_ctx *c, const void *p, size_t n)
{
	if (n == 0 || re_grow(c, n) != 0)
		return;
	memcpy(c->buf + c->len, p, n);
	c->len += n;
}

static void
re_puts(struct re_ctx *c, const char *s)
{
	re_put(c, s, strlen(s));
}

/* Lines ----------------------------------------------------------------- */

/*
 * re_line — the line of P[0..N) at OFF: its length before the CRLF (only
 * CRLF ends a line; a lone CR or LF is content) and the offset past it.
 * *TERM: the line ends with CRLF (false for the last, unterminated one).
 */
static size_t
re_line(const uint8_t *p, size_t n, size_t off, size_t *next, bool *term)
{
	const uint8_t *q = p + off, *cr;
	size_t left = n - off;

	while ((cr = memchr(q, '\r', left)) != NULL) {
		size_t at = (size_t)(cr - (p + off));

		if (off + at + 1 < n && cr[1] == '\n') {
			*next = off + at + 2;
			*term = true;
			return at;
		}
		left = n - (off + at + 1);
		q = cr + 1;
	}
	*next = n;
	*term = false;
	return n - off;
}

static bool
re_has_long_line(const uint8_t *p, size_t n)
{
	size_t off = 0, next;
	bool term;

	while (off < n) {
		if (re_line(p, n, off, &next, &term) > REENCODE_LINE_MAX)
			return true;
		off = next;
	}
	return false;
}

/* Header fields --------------------------------------------------------- */

static int
re_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static bool
re_eq(const uint8_t *p, size_t n, const char *lit)
{
	size_t i;

	if (strlen(lit) != n)
		return false;
	for (i = 0; i < n; i++)
		if (re_lower(p[i]) != lit[i])
			return false;
	return true;
}

/* The length of the field name of line P[0..N) (no trailing WSP), or 0 when
 * it is not a field (no colon, empty or invalid name). */
static size_t
re_field_name(const uint8_t *p, size_t n)
{
	size_t i, end;

	for (i = 0; i < n && p[i] != ':'; i++)
		if (!RE_IS_WSP(p[i]) && (p[i] < 33 || p[i] > 126))
			return 0;
	if (i == n)
		return 0;
	end = i;
	while (end > 0 && RE_IS_WSP(p[end - 1]))
		end--;
	for (i = 0; i < end; i++)
		if (p[i] < 33 || p[i] > 126)
			return 0;
	return end;
}

/*
 * re_field_next — the next field of the header block P[0..HEND) at *OFF:
 * [*FS, *FE) without its final CRLF, continuation lines included.  false at
 * the end.
 */
static bool
re_field_next(const uint8_t *p, size_t hend, size_t *off, size_t *fs,
	      size_t *fe)
{
	size_t len, next;
	bool term;

	if (*off >= hend)
		return false;
	*fs = *off;
	len = re_line(p, hend, *off, &next, &term);
	*fe = *off + len;
	*off = next;
	while (*off < hend && RE_IS_WSP(p[*off])) {
		len = re_line(p, hend, *off, &next, &term);
		*fe = *off + len;
		*off = next;
	}
	return true;
}

/* Structured field values (RFC 2045 5.1): CFWS, tokens, quoted strings. */
static void
re_skip_cfws(const uint8_t *p, size_t e, size_t *i)
{
	unsigned depth;

	while (*i < e) {
		if (RE_IS_WSP(p[*i]) || p[*i] == '\r' || p[*i] == '\n') {
			(*i)++;
			continue;
		}
		if (p[*i] != '(')
			return;
		for (depth = 0; *i < e; (*i)++) {
			if (p[*i] == '\\' && *i + 1 < e)
				(*i)++;
			else if (p[*i] == '(')
				depth++;
			else if (p[*i] == ')' && --depth == 0) {
				(*i)++;
				break;
			}
		}
	}
}

static size_t
re_token(const uint8_t *p, size_t e, size_t *i)
{
	size_t s = *i;

	while (*i < e && p[*i] > 32 && p[*i] < 127 &&
	       strchr("()<>@,;:\\\"/[]?=", p[*i]) == NULL)
		(*i)++;
	return *i - s;
}

/* A parameter value (token or quoted string), consumed whole; into OUT
 * when it fits (-1 when not: a value is never cut short, nor is the rest of
 * a quoted string read as more parameters). */
static int
re_param_value(const uint8_t *p, size_t e, size_t *i, char *out, size_t cap,
	       size_t *olen)
{
	size_t n = 0, s;
	bool fits = true;

	if (*i < e && p[*i] == '"') {
		for ((*i)++; *i < e && p[*i] != '"'; (*i)++) {
			if (p[*i] == '\\' && *i + 1 < e)
				(*i)++;
			if (p[*i] == '\r' || p[*i] == '\n')
				continue; /* folding inside the string */
			if (n + 1 >= cap)
				fits = false;
			else
				out[n++] = (char)p[*i];
		}
		if (*i < e)
			(*i)++;
	} else {
		s = *i;
		n = re_token(p, e, i);
		if (n + 1 >= cap)
			fits = false;
		else
			memcpy(out, p + s, n);
	}
	if (!fits) {
		*olen = 0;
		out[0] = '\0';
		return -1;
	}
	while (n > 0 && RE_IS_WSP(out[n - 1]))
		n--; /* a boundary never ends in space (RFC 2046 5.1.1) */
	out[n] = '\0';
	*olen = n;
	return 0;
}

/* Content-Type: the kind, and the boundary of a multipart. */
static void
re_content_type(const uint8_t *p, size_t s, size_t e, struct re_head *h)
{
	size_t i = s, ts, tl, ss, sl, as, al;
	char val[RE_BOUNDARY_MAX + 2];
	size_t vlen;

	re_skip_cfws(p, e, &i);
	ts = i;
	tl = re_token(p, e, &i);
	re_skip_cfws(p, e, &i);
	if (tl == 0 || i >= e || p[i] != '/')
		return; /* invalid: the default stays (RFC 2045 5.2) */
	i++;
	re_skip_cfws(p, e, &i);
	ss = i;
	sl = re_token(p, e, &i);
	if (re_eq(p + ts, tl, "multipart")) {
		h->kind = RE_MULTIPART;
		h->digest = re_eq(p + ss, sl, "digest");
	} else if (re_eq(p + ts, tl, "message") &&
		   (re_eq(p + ss, sl, "rfc822") || re_eq(p + ss, sl, "global")))
		h->kind = RE_MESSAGE;
	else
		h->kind = RE_LEAF;
	for (;;) {
		re_skip_cfws(p, e, &i);
		if (i >= e || p[i] != ';')
			return;
		i++;
		re_skip_cfws(p, e, &i);
		as = i;
		al = re_token(p, e, &i);
		re_skip_cfws(p, e, &i);
		if (al == 0 || i >= e || p[i] != '=')
			return;
		i++;
		re_skip_cfws(p, e, &i);
		if (re_param_value(p, e, &i, val, sizeof(val), &vlen) != 0)
			vlen = 0; /* over-long: no usable boundary */
		if (re_eq(p + as, al, "boundary") && h->blen == 0 && vlen > 0 &&
		    vlen <= RE_BOUNDARY_MAX) {
			memcpy(h->boundary, val, vlen + 1);
			h->blen = vlen;
		}
	}
}

static enum re_cte
re_cte(const uint8_t *p, size_t s, size_t e)
{
	size_t i = s, ts, tl;

	re_skip_cfws(p, e, &i);
	ts = i;
	tl = re_token(p, e, &i);
	if (re_eq(p + ts, tl, "7bit") || re_eq(p + ts, tl, "8bit") ||
	    re_eq(p + ts, tl, "binary"))
		return RE_CTE_IDENTITY;
	if (re_eq(p + ts, tl, "quoted-printable"))
		return RE_CTE_QP;
	if (re_eq(p + ts, tl, "base64"))
		return RE_CTE_B64;
	return RE_CTE_UNKNOWN;
}

/*
 * re_head_parse — the header block of the entity P[0..N): it ends at the
 * empty line, or at the first line that is neither a field nor a
 * continuation (a body without the empty line, as parsers read it).
 */
static void
re_head_parse(const uint8_t *p, size_t n, bool digest_part, struct re_head *h)
{
	size_t off = 0, len, next, nl, fs, fe, vs;
	bool term, seen_ct = false, seen_cte = false, infield = false;

	memset(h, 0, sizeof(*h));
	h->kind = digest_part ? RE_MESSAGE : RE_LEAF;
	h->cte = RE_CTE_IDENTITY;
	h->hend = h->body_off = n;
	while (off < n) {
		len = re_line(p, n, off, &next, &term);
		if (len == 0 && term) {
			h->hend = off;
			h->body_off = next;
			break;
		}
		if (RE_IS_WSP(p[off]) ? !infield
				      : re_field_name(p + off, len) == 0) {
			h->hend = h->body_off = off;
			h->nosep = true;
			break;
		}
		infield = true;
		off = next;
	}
	off = 0;
	while (re_field_next(p, h->hend, &off, &fs, &fe)) {
		nl = re_field_name(p + fs, fe - fs);
		for (vs = fs + nl; vs < fe && p[vs] != ':'; vs++)
			;
		vs++; /* past the colon (after WSP, RFC 5322 obs-optional) */
		if (re_eq(p + fs, nl, "content-type") && !seen_ct) {
			seen_ct = true;
			re_content_type(p, vs, fe, h);
		} else if (re_eq(p + fs, nl, "content-transfer-encoding") &&
			   !seen_cte) {
			seen_cte = true;
			h->cte = re_cte(p, vs, fe);
		} else if (re_eq(p + fs, nl, "mime-version"))
			h->mime_version = true;
	}
}

/*
 * re_fold_line — one physical header line P[0..N) of over 998 octets, cut
 * before whitespace (RFC 5322 2.2.3, 3.2.2: unfolding removes only the
 * CRLF, so the field means the same), each piece within the limit and
 * holding a non-WSP octet.  Each cut is the last legal one within the
 * limit (which makes the fewest pieces and never fails where another
 * choice would succeed); it may fall inside a run of whitespace.  FROM:
 * the first octet a cut may fall before (past the colon on a field's first
 * line).  -1 when no such cut exists (a token longer than the limit).
 */
static int
re_fold_line(struct re_ctx *c, const uint8_t *p, size_t n, size_t from)
{
	size_t seg = 0, i, first, last;

	for (last = n; last > 0 && RE_IS_WSP(p[last - 1]); last--)
		;
	while (n - seg > REENCODE_LINE_MAX) {
		for (first = seg; first < n && RE_IS_WSP(p[first]); first++)
			;
		for (i = seg + REENCODE_LINE_MAX; i > first; i--)
			if (RE_IS_WSP(p[i]) && i < last && i >= from)
				break;
		if (i <= first)
			return -1;
		re_put(c, p + seg, i - seg);
		re_puts(c, "\r\n");
		seg = i;
	}
	re_put(c, p + seg, n - seg);
	return 0;
}

/* A field [FS, FE) with a line over the limit, folded. */
static void
re_fold_field(struct re_ctx *c, const uint8_t *p, size_t fs, size_t fe)
{
	size_t off = fs, len, next, nl = re_field_name(p + fs, fe - fs);
	size_t colon = nl;
	bool term;

	while (p[fs + colon] != ':')
		colon++;
	while (off < fe) {
		len = re_line(p, fe, off, &next, &term);
		if (len <= REENCODE_LINE_MAX)
			re_put(c, p + off, len);
		else if (re_fold_line(c, p + off, len,
				      off == fs ? colon + 1 : 0) != 0) {
			re_refuse(c,
				  "header field %.*s has a line over %d "
				  "octets that cannot be folded",
				  (int)(nl > 64 ? 64 : nl),
				  (const char *)p + fs, REENCODE_LINE_MAX);
			return;
		}
		if (term)
			re_puts(c, "\r\n");
		off = next;
	}
}

/*
 * re_head_emit — the header block of P with long lines folded; with QP set
 * the Content-Transfer-Encoding becomes quoted-printable (the first such
 * field replaced, others dropped, or one added) and a message without
 * MIME-Version gets one.  Ends after the empty line.
 */
static void
re_head_emit(struct re_ctx *c, const uint8_t *p, const struct re_head *h,
	     bool qp, bool message)
{
	size_t off = 0, fs, fe, nl, copied = 0;
	bool cte_done = false;

	while (re_field_next(p, h->hend, &off, &fs, &fe)) {
		nl = re_field_name(p + fs, fe - fs);
		if (qp && re_eq(p + fs, nl, "content-transfer-encoding")) {
			re_put(c, p + copied, fs - copied);
			if (!cte_done) {
				re_puts(c, re_cte_qp);
				copied = fe;
				cte_done = true;
			} else
				copied = off; /* dropped, its CRLF too */
		} else if (re_has_long_line(p + fs, fe - fs)) {
			re_put(c, p + copied, fs - copied);
			re_fold_field(c, p, fs, fe);
			copied = fe;
		}
	}
	re_put(c, p + copied, h->hend - copied);
	if (qp && !cte_done) {
		re_puts(c, re_cte_qp);
		re_puts(c, "\r\n");
	}
	if (qp && message && !h->mime_version)
		re_puts(c, "MIME-Version: 1.0\r\n");
	if (qp && h->nosep)
		re_puts(c, "\r\n");
	re_put(c, p + h->hend, h->body_off - h->hend);
}

/* Bodies ---------------------------------------------------------------- */

/* One octet as QP; AT_BOL: first on its output line ("-" there is encoded
 * so that no soft break can make a line read as a boundary). */
static size_t
re_qp_token(uint8_t ch, bool at_bol, bool last, char tok[3])
{
	if ((ch > 32 && ch < 127 && ch != '=' && !(at_bol && ch == '-')) ||
	    (RE_IS_WSP(ch) && !last)) {
		tok[0] = (char)ch;
		return 1;
	}
	tok[0] = '=';
	tok[1] = re_hex[ch >> 4];
	tok[2] = re_hex[ch & 15];
	return 3;
}

/*
 * re_qp_encode — a 7bit/8bit/binary body as quoted-printable (RFC 2045
 * 6.7): CRLF becomes a hard line break, every other octet is kept or
 * encoded so that the decoded body is the original, byte for byte.
 */
static void
re_qp_encode(struct re_ctx *c, const uint8_t *p, size_t n)
{
	size_t off = 0, len, next, i, col, tl;
	bool term;
	char tok[3];

	while (off < n && c->fail == REENCODE_OK) {
		len = re_line(p, n, off, &next, &term);
		col = 0;
		for (i = 0; i < len; i++) {
			tl = re_qp_token(p[off + i], col == 0, i + 1 == len,
					 tok);
			if (col + tl > RE_QP_LINE_MAX - 1) {
				re_puts(c, "=\r\n");
				col = 0;
				tl = re_qp_token(p[off + i], true, i + 1 == len,
						 tok);
			}
			re_put(c, tok, tl);
			col += tl;
		}
		if (term)
			re_puts(c, "\r\n");
		off = next;
	}
}

static bool
re_is_hex(uint8_t ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F') ||
	       (ch >= 'a' && ch <= 'f');
}

/*
 * re_qp_rewrap — a quoted-printable body whose lines are too long: each
 * line over 76 octets gets soft breaks, never inside an "=XX"; nothing is
 * decoded and encoded again.  A stray "=" becomes "=3D", a raw 8-bit or
 * control octet "=XX" (what lenient decoders already made of them), a
 * soft break's transport padding is dropped (RFC 2045 6.7 (3)).
 */
static void
re_qp_rewrap(struct re_ctx *c, const uint8_t *p, size_t n)
{
	size_t off = 0, len, next, i, col, tl, used, end;
	bool term, soft;
	const uint8_t *l;
	char tok[3];

	while (off < n && c->fail == REENCODE_OK) {
		len = re_line(p, n, off, &next, &term);
		if (len <= RE_QP_LINE_MAX) {
			re_put(c, p + off, next - off);
			off = next;
			continue;
		}
		l = p + off;
		for (end = len; end > 0 && RE_IS_WSP(l[end - 1]); end--)
			;
		/* "=" at the end of an unterminated last line (the CRLF
		 * before a boundary is the boundary's) is no soft break. */
		soft = term && end > 0 && l[end - 1] == '=';
		end = soft ? end - 1 : len;
		col = 0;
		for (i = 0; i < end; i += used) {
			used = 1;
			if (l[i] == '=' && i + 2 < end && re_is_hex(l[i + 1]) &&
			    re_is_hex(l[i + 2])) {
				memcpy(tok, l + i, 3);
				tl = used = 3;
			} else
				tl = re_qp_token(l[i], col == 0, false, tok);
			if (col + tl > RE_QP_LINE_MAX - 1) {
				re_puts(c, "=\r\n");
				col = 0;
				if (used == 1)
					tl =
					    re_qp_token(l[i], true, false, tok);
			}
			re_put(c, tok, tl);
			col += tl;
		}
		if (soft)
			re_puts(c, "=");
		if (term)
			re_puts(c, "\r\n");
		off = next;
	}
}

/* A base64 body re-wrapped at 76 (RFC 2045 6.8): whitespace and line
 * breaks dropped (decoders ignore them), every other octet kept. */
static void
re_b64_rewrap(struct re_ctx *c, const uint8_t *p, size_t n)
{
	size_t i, s, col = 0;
	bool term = n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n';

	for (i = 0; i < n && c->fail == REENCODE_OK;) {
		if (p[i] == '\r' || p[i] == '\n' || RE_IS_WSP(p[i])) {
			i++;
			continue;
		}
		if (col == RE_B64_LINE_MAX) {
			re_puts(c, "\r\n");
			col = 0;
		}
		for (s = i; i < n && col < RE_B64_LINE_MAX && p[i] != '\r' &&
			    p[i] != '\n' && !RE_IS_WSP(p[i]);
		     i++)
			col++;
		re_put(c, p + s, i - s);
	}
	if (term)
		re_puts(c, "\r\n");
}

/*
 * re_ignored — a multipart's preamble or epilogue (RFC 2046 5.1.1: text to
 * be ignored): an over-long line is cut into lines of at most 998 octets,
 * each continuation starting with a space, so that no piece reads as a
 * boundary.
 */
static void
re_ignored(struct re_ctx *c, const uint8_t *p, size_t n)
{
	size_t off = 0, len, next, s, k;
	bool term;

	while (off < n && c->fail == REENCODE_OK) {
		len = re_line(p, n, off, &next, &term);
		if (len <= REENCODE_LINE_MAX) {
			re_put(c, p + off, next - off);
			off = next;
			continue;
		}
		for (s = 0; s < len; s += k) {
			k = s == 0 ? REENCODE_LINE_MAX : REENCODE_LINE_MAX - 1;
			if (k > len - s)
				k = len - s;
			if (s > 0)
				re_puts(c, "\r\n ");
			re_put(c, p + off + s, k);
		}
		if (term)
			re_puts(c, "\r\n");
		off = next;
	}
}

/* Entities -------------------------------------------------------------- */

static void re_entity(struct re_ctx *c, const uint8_t *p, size_t n,
		      unsigned depth, bool message, bool digest_part);

/* Is line P[0..LEN) a delimiter of boundary B: "--" B ["--"] LWSP*?  Sets
 * *CLOSE for the close delimiter. */
static bool
re_is_delim(const uint8_t *p, size_t len, const struct re_head *h, bool *close)
{
	size_t i;

	if (len < 2 + h->blen || p[0] != '-' || p[1] != '-' ||
	    memcmp(p + 2, h->boundary, h->blen) != 0)
		return false;
	i = 2 + h->blen;
	*close = i + 2 <= len && p[i] == '-' && p[i + 1] == '-';
	if (*close)
		i += 2;
	for (; i < len; i++)
		if (!RE_IS_WSP(p[i]))
			return false;
	return true;
}

/*
 * re_multipart — the body P[0..N) of a multipart (RFC 2046 5.1.1): the
 * CRLF before each delimiter belongs to the delimiter; a missing close
 * delimiter ends the last part at the end of the body.
 */
static void
re_multipart(struct re_ctx *c, const uint8_t *p, size_t n,
	     const struct re_head *h, unsigned depth)
{
	size_t off = 0, len, next, part = 0, emitted = 0, end;
	bool term, close, inpart = false;

	while (off < n && c->fail == REENCODE_OK) {
		len = re_line(p, n, off, &next, &term);
		if (!re_is_delim(p + off, len, h, &close)) {
			off = next;
			continue;
		}
		/* The text before: the preamble or a part. */
		end = off >= emitted + 2 ? off - 2 : emitted;
		if (inpart)
			re_entity(c, p + part, end - part, depth + 1, false,
				  h->digest);
		else
			re_ignored(c, p + emitted, end - emitted);
		re_put(c, p + end, off - end);
		/* The delimiter, without its padding if that is too long. */
		if (len > REENCODE_LINE_MAX) {
			re_put(c, p + off, 2 + h->blen + (close ? 2 : 0));
			if (term)
				re_puts(c, "\r\n");
		} else
			re_put(c, p + off, next - off);
		emitted = part = next;
		inpart = !close;
		off = next;
		if (close) {
			re_ignored(c, p + next, n - next);
			return;
		}
	}
	if (inpart)
		re_entity(c, p + part, n - part, depth + 1, false, h->digest);
	else
		re_ignored(c, p + emitted, n - emitted);
}

/*
 * re_entity — one MIME entity P[0..N) (a message, or a body part): copied
 * as it is when it has no over-long line; else its header folded and its
 * body walked (multipart, message/rfc822) or re-encoded (a leaf).
 */
static void
re_entity(struct re_ctx *c, const uint8_t *p, size_t n, unsigned depth,
	  bool message, bool digest_part)
{
	struct re_head h;
	const uint8_t *b;
	size_t bn;
	bool blong;

	if (c->fail != REENCODE_OK)
		return;
	if (!re_has_long_line(p, n)) {
		re_put(c, p, n);
		return;
	}
	if (depth > REENCODE_DEPTH_MAX) {
		re_refuse(c,
			  "MIME parts nested deeper than %d levels hold a "
			  "line over %d octets",
			  REENCODE_DEPTH_MAX, REENCODE_LINE_MAX);
		return;
	}
	re_head_parse(p, n, digest_part, &h);
	b = p + h.body_off;
	bn = n - h.body_off;
	blong = re_has_long_line(b, bn);
	if (blong && h.cte == RE_CTE_UNKNOWN) {
		re_refuse(c,
			  "a part with an unknown Content-Transfer-Encoding "
			  "has a line over %d octets",
			  REENCODE_LINE_MAX);
		return;
	}
	if (blong && h.cte == RE_CTE_IDENTITY && h.kind == RE_MULTIPART &&
	    h.blen == 0) {
		re_refuse(c,
			  "a multipart without a boundary has a line over %d "
			  "octets",
			  REENCODE_LINE_MAX);
		return;
	}
	/* A multipart or message/rfc822 may only be 7bit/8bit/binary (RFC
	 * 2045 6.4, RFC 2046 5.2.1): re-encode inside it. */
	re_head_emit(c, p, &h,
		     blong && h.cte == RE_CTE_IDENTITY && h.kind == RE_LEAF,
		     message);
	if (!blong)
		re_put(c, b, bn);
	else if (h.cte == RE_CTE_QP)
		re_qp_rewrap(c, b, bn);
	else if (h.cte == RE_CTE_B64)
		re_b64_rewrap(c, b, bn);
	else if (h.kind == RE_MULTIPART)
		re_multipart(c, b, bn, &h, depth);
	else if (h.kind == RE_MESSAGE)
		re_entity(c, b, bn, depth + 1, true, false);
	else
		re_qp_encode(c, b, bn);
}

enum reencode_result
reencode_message(const uint8_t *data, size_t len, size_t max_bytes,
		 uint8_t **out, size_t *outlen, char *why, size_t whylen)
{
	struct re_ctx c;

	*out = NULL;
	*outlen = 0;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (!re_has_long_line(data, len))
		return REENCODE_UNCHANGED;
	memset(&c, 0, sizeof(c));
	c.max = max_bytes;
	c.why = why;
	c.whylen = why != NULL ? whylen : 0;
	re_entity(&c, data, len, 0, true, false);
	if (c.fail != REENCODE_OK) {
		free(c.buf);
		if (c.fail == REENCODE_TOO_BIG && why != NULL && whylen > 0)
			(void)snprintf(why, whylen,
				       "re-encoded message over %zu octets",
				       max_bytes);
		if (c.fail == REENCODE_NOMEM && why != NULL && whylen > 0)
			(void)snprintf(why, whylen, "out of memory");
		return c.fail;
	}
	*out = c.buf;
	*outlen = c.len;
	return REENCODE_OK;
}
