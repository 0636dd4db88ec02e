/*
 * scrub.c — the address scrubber (scrub.h), shared by the diagnostics
 * (log_escape), the delivery log and the audit log.
 *
 * Owns: the byte classes, the per-thread context.  Works on the caller's
 * stack only (a mask and a lower-cased copy of at most SCRUB_SCAN_BYTES), so
 * it is safe on any thread and never allocates.  Invariant: an '@' never
 * survives; a known local part never survives whole, nor as the cut tail of
 * a text.  Cost: a few memchr scans per text and per known local part.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/core/scrub.h"

/* Known local parts shorter than this match only standing alone ("ab" is
 * in too many words); longer ones match anywhere, whatever is around. */
#define SCRUB_ANYWHERE_MIN_BYTES 4
#define SCRUB_LOCAL_MAX_BYTES    256 /* known local parts longer: skipped */

#define C_TOK    0x01 /* of a token, between separators */
#define C_LOCAL  0x02 /* of a local part outside quotes and comments */
#define C_DOMAIN 0x04 /* of a domain after '@' */
#define C_LABEL  0x08 /* of a domain label */
#define C_WORD   0x10 /* of a word (local parts stand alone between others) */
#define C_SAFE   0x20 /* copied as is by scrub_escape() */
/* Filled before main() runs (a constructor): no once-check per call. */
static uint8_t scrub_cls[256];
#define CLS(c, m) ((scrub_cls[(unsigned char)(c)] & (m)) != 0)

static _Thread_local const struct scrub_ctx *scrub_cur;

static void scrub_cls_init(void) __attribute__((constructor));

static void
scrub_cls_init(void)
{
	unsigned c;
	uint8_t m;
	bool alnum;

	for (c = 0; c < 256; c++) {
		m = 0;
		alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9');
		if (c > ' ' && c != 0x7f &&
		    strchr("<>()[],;:'`", (int)c) == NULL)
			m |= C_TOK;
		/* RFC 5322 atext, '.' and a stray '@'; 8-bit (RFC 6531). */
		if (c > ' ' && c != 0x7f &&
		    strchr("<>()[],;:\"", (int)c) == NULL)
			m |= C_LOCAL;
		if ((m & C_TOK) && c != '"')
			m |= C_DOMAIN;
		if (alnum || c == '-' || c == '_' || c >= 0x80)
			m |= C_LABEL;
		if (alnum || c >= 0x80)
			m |= C_WORD;
		if (c >= 0x20 && c < 0x7f && c != '\\')
			m |= C_SAFE;
		scrub_cls[c] = m;
	}
}

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

const struct scrub_ctx *
scrub_ctx_enter(const struct scrub_ctx *ctx)
{
	const struct scrub_ctx *prev = scrub_cur;

	scrub_cur = ctx;
	return prev;
}

void
scrub_ctx_leave(const struct scrub_ctx *prev)
{
	scrub_cur = prev;
}

/* The text being scrubbed: S (N bytes kept, FULL read), its lower-case
 * copy when known local parts are searched, and the marks over it. */
struct scrub_in {
	const char *s;
	size_t n, full;
	char low[SCRUB_SCAN_BYTES];
	bool have_low;
	uint8_t m[SCRUB_SCAN_BYTES];
	bool used;
};

static void
mask_set(struct scrub_in *t, size_t from, size_t to)
{
	if (to > t->n)
		to = t->n;
	if (from >= to)
		return;
	if (!t->used) {
		memset(t->m, 0, t->n);
		t->used = true;
	}
	memset(t->m + from, 1, to - from);
}

/* Back from S[AT] (exclusive) over a local part, jumping over quoted
 * strings ("jane doe"@) and comments (jane(x)@).  An unbalanced quote or
 * comment takes everything before it: better too much than a name. */
static size_t
local_start(const char *s, size_t at)
{
	size_t i = at, j, depth;

	while (i > 0) {
		unsigned char c = (unsigned char)s[i - 1];

		if (c == '"') {
			for (j = i - 1; j > 0; j--)
				if (s[j - 1] == '"' &&
				    (j < 2 || s[j - 2] != '\\'))
					break;
			i = j > 0 ? j - 1 : 0;
		} else if (c == ')') {
			for (j = i - 1, depth = 1; j > 0 && depth > 0; j--)
				if (s[j - 1] == ')')
					depth++;
				else if (s[j - 1] == '(')
					depth--;
			i = depth == 0 ? j : 0;
		} else if (CLS(c, C_LOCAL)) {
			i--;
		} else {
			break;
		}
	}
	return i;
}

/* Forward from S[J] over a domain or a [literal]. */
static size_t
domain_end(const char *s, size_t len, size_t j)
{
	if (j < len && s[j] == '[') {
		while (j < len && s[j] != ']')
			j++;
		if (j < len)
			j++;
	}
	while (j < len && CLS(s[j], C_DOMAIN))
		j++;
	return j;
}

/* Does S[0..N) start with something like a domain: two or more labels, the
 * last holding a letter ("example.org", not "3.5")? */
static bool
domain_like(const char *s, size_t n)
{
	size_t i = 0, labels = 0;
	bool alpha = false;

	for (;;) {
		size_t start = i;

		alpha = false;
		while (i < n && CLS(s[i], C_LABEL)) {
			if (!(s[i] >= '0' && s[i] <= '9') && s[i] != '-' &&
			    s[i] != '_')
				alpha = true;
			i++;
		}
		if (i == start)
			break;
		labels++;
		if (i + 1 < n && s[i] == '.' && CLS(s[i + 1], C_LABEL))
			i++;
		else
			break;
	}
	return labels >= 2 && alpha;
}

/* "tag=example.org" forms that name a domain, not an encoded address: DKIM
 * and Authentication-Results tags, and command-line options (--domain=). */
static bool
tag_exempt(const char *s, size_t n)
{
	static const char *const tags[] = { "d",           "s",
					    "header.d",    "header.s",
					    "header.from", "smtp.mailfrom",
					    "smtp.helo",   "domain" };
	size_t t, i;

	if (n > 0 && s[0] == '-')
		return true;
	for (t = 0; t < sizeof(tags) / sizeof(tags[0]); t++) {
		if (strlen(tags[t]) != n)
			continue;
		for (i = 0; i < n && lower(s[i]) == tags[t][i]; i++)
			;
		if (i == n)
			return true;
	}
	return false;
}

static bool
has_prefix_ci(const char *s, size_t n, const char *p)
{
	size_t i, k = strlen(p);

	if (n < k)
		return false;
	for (i = 0; i < k; i++)
		if (lower(s[i]) != p[i])
			return false;
	return true;
}

/* "&#64;", "&#064;", "&#x40;", "&#X0040;", "&commat;" at S (N bytes). */
static bool
html_at(const char *s, size_t n)
{
	size_t i = 2;
	bool hex;

	if (has_prefix_ci(s, n, "&commat"))
		return true;
	if (n < 4 || s[1] != '#')
		return false;
	hex = lower(s[2]) == 'x';
	if (hex)
		i++;
	while (i < n && s[i] == '0')
		i++;
	return has_prefix_ci(s + i, n - i, hex ? "40" : "64") &&
	       (i + 2 == n || !CLS(s[i + 2], C_WORD) ||
		(hex && s[i + 2] == ';'));
}

/* A token that encodes an address without '@': a VERP form
 * ("bounces+jane=example.org"), the percent hack ("jane%example.org"), a
 * URL-encoded '@' ("jane%40example.org", "%2540") or an HTML one
 * ("jane&#64;", "&#x40;", "&commat;"). */
static bool
tok_encoded(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i++) {
		if (s[i] == '&' && html_at(s + i, n - i))
			return true;
		if (s[i] != '=' && s[i] != '%')
			continue;
		if (s[i] == '%' && i + 2 < n && s[i + 1] == '4' &&
		    s[i + 2] == '0')
			return true;
		if (domain_like(s + i + 1, n - i - 1) &&
		    (s[i] == '%' || !tag_exempt(s, i)))
			return true;
	}
	return false;
}

/* Length of an at-sign at S (N bytes): '@', or the full-width and small
 * forms of RFC 6531 text (U+FF20, U+FE6B); 0 if none. */
static size_t
at_len(const char *s, size_t n)
{
	if (s[0] == '@')
		return 1;
	if (n >= 3 && (unsigned char)s[0] == 0xef &&
	    (((unsigned char)s[1] == 0xbc && (unsigned char)s[2] == 0xa0) ||
	     ((unsigned char)s[1] == 0xb9 && (unsigned char)s[2] == 0xab)))
		return 3;
	return 0;
}

/* Every at-sign: the whole address around it.  A spaced one ("jane @
 * example.org") takes the words on both sides. */
static void
mask_at(struct scrub_in *t)
{
	const char *s = t->s, *p, *q;
	size_t i, k, a, from, to;

	/* Two memchr scans, not a loop per byte: this runs on every field
	 * of every delivery-log line. */
	p = memchr(s, '@', t->full);
	q = memchr(s, 0xef, t->full);
	for (i = 0; i < t->full; i++) {
		if (p != NULL && p < s + i)
			p = memchr(s + i, '@', t->full - i);
		if (q != NULL && q < s + i)
			q = memchr(s + i, 0xef, t->full - i);
		if (p == NULL && q == NULL)
			break;
		i = (size_t)((q == NULL || (p != NULL && p < q) ? p : q) - s);
		if ((k = at_len(s + i, t->full - i)) == 0)
			continue;
		a = i;
		from = local_start(s, a);
		while (from == a && from > 0 && s[from - 1] == ' ')
			from = local_start(s, --a);
		to = i + k;
		while (to < t->full && s[to] == ' ')
			to++;
		if (to == i + k || domain_like(s + to, t->full - to))
			to = domain_end(s, t->full, to);
		else
			to = i + k;
		mask_set(t, from, to);
		if (to > i + 1)
			i = to - 1;
	}
}

/* Tokens that encode an address without '@'. */
static void
mask_encoded(struct scrub_in *t)
{
	const char *s = t->s;
	size_t i, j, n = t->n;

	if (memchr(s, '=', n) == NULL && memchr(s, '%', n) == NULL &&
	    memchr(s, '&', n) == NULL)
		return;
	for (i = 0; i < n; i = j) {
		for (j = i; j < n && CLS(s[j], C_TOK); j++)
			;
		if (j > i && tok_encoded(s + i, j - i))
			mask_set(t, i, j);
		if (j == i)
			j++;
	}
}

static void
need_low(struct scrub_in *t)
{
	size_t i;

	if (t->have_low)
		return;
	for (i = 0; i < t->n; i++)
		t->low[i] = lower(t->s[i]);
	t->have_low = true;
}

/* Length of a spelled-out '@' at S (N bytes), just after a space: "at ",
 * "(at) ", "[at] ", "{at} " in any case; 0 if none. */
static size_t
spelled_at_len(const char *s, size_t n)
{
	size_t o = 0;

	if (n > 0 && (s[0] == '(' || s[0] == '[' || s[0] == '{'))
		o = 1;
	if (o + 3 > n || lower(s[o]) != 'a' || lower(s[o + 1]) != 't')
		return 0;
	if (o == 1) {
		if (o + 4 > n || s[3] != (s[0] == '(' ? ')' : s[0] + 2))
			return 0;
		o++;
	}
	return s[o + 2] == ' ' ? o + 3 : 0;
}

/* "jane at example.org", "jane (at) example.org", "jane [at] …": the
 * spelled-out '@' of addresses written for humans.  One memchr per space,
 * not a pass per spelling. */
static void
mask_spelled_at(struct scrub_in *t)
{
	const char *s = t->s, *p;
	size_t i, k, from, after;

	for (i = 1; i < t->n; i = (size_t)(p - s) + 1) {
		if ((p = memchr(s + i, ' ', t->n - i)) == NULL)
			break;
		k = (size_t)(p - s);
		after = spelled_at_len(p + 1, t->n - k - 1);
		if (after == 0)
			continue;
		after += k + 1;
		if (!domain_like(s + after, t->n - after))
			continue;
		from = local_start(s, k);
		if (from == k)
			continue; /* no word before it */
		mask_set(t, from, domain_end(s, t->n, after));
	}
}

/* Mark L (M bytes, lower-cased as compared) wherever it occurs: long ones
 * anywhere (with the word they sit in), short ones standing alone; and the
 * text's tail when it is L cut short (a reply cut by a buffer). */
static void
mask_local(struct scrub_in *t, const char *l, size_t m)
{
	const char *s = t->s, *low = t->low, *p;
	char c0 = lower(l[0]);
	size_t i, k, from, to, n = t->n;
	bool anywhere = m >= SCRUB_ANYWHERE_MIN_BYTES;

	for (i = 0; i + m <= n; i++) {
		if ((p = memchr(low + i, c0, n - m + 1 - i)) == NULL)
			break;
		i = (size_t)(p - low);
		if (!anywhere && ((i > 0 && CLS(s[i - 1], C_WORD)) ||
				  (i + m < n && CLS(s[i + m], C_WORD))))
			continue;
		for (k = 1; k < m && low[i + k] == lower(l[k]); k++)
			;
		if (k < m)
			continue;
		for (from = i; from > 0 && CLS(s[from - 1], C_WORD); from--)
			;
		for (to = i + m; to < n && CLS(s[to], C_WORD); to++)
			;
		mask_set(t, from, to);
	}
	/* The tail: at least 2 bytes of L's start, at a word's start. */
	for (i = n > m ? n - m + 1 : 0; i + 2 <= n; i++) {
		if (i > 0 && CLS(s[i - 1], C_WORD))
			continue;
		for (k = 0; i + k < n && low[i + k] == lower(l[k]); k++)
			;
		if (i + k == n) {
			mask_set(t, i, n);
			break;
		}
	}
}

static void
mask_local_checked(struct scrub_in *t, const char *l, size_t m)
{
	if (m >= 2 && m <= SCRUB_LOCAL_MAX_BYTES)
		mask_local(t, l, m);
}

/*
 * The local parts ADDR tells of, each marked in T: the local part itself
 * (quotes stripped), each word of a quoted one with spaces, the part before
 * a '+' sub-address, and the recipient's inside a VERP form
 * ("bounces+jane=example.org": "jane").
 */
static void
mask_addr(struct scrub_in *t, const char *addr)
{
	const char *s = addr, *e, *at, *w, *eq, *p;

	e = s + strlen(s);
	while (s < e && (*s == ' ' || *s == '\t' || *s == '<'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '>'))
		e--;
	for (at = e; at > s && at[-1] != '@'; at--)
		;
	if (at > s)
		e = at - 1;
	if (e - s >= 2 && *s == '"' && e[-1] == '"') {
		s++;
		e--;
	}
	if (s >= e)
		return;
	for (eq = e; eq > s; eq--)
		if (eq[-1] == '=' && domain_like(eq, (size_t)(e - eq)))
			break;
	/* A VERP local part whole is caught as an encoded address; its
	 * parts are searched below. */
	if (eq == s)
		mask_local_checked(t, s, (size_t)(e - s));
	if (memchr(s, ' ', (size_t)(e - s)) != NULL)
		for (w = s; w < e; w = p + 1) {
			for (p = w; p < e && *p != ' '; p++)
				;
			if (p - w >= 3)
				mask_local_checked(t, w, (size_t)(p - w));
		}
	for (p = s; p < e && *p != '+'; p++)
		;
	if (p < e && p - s >= 3)
		mask_local_checked(t, s, (size_t)(p - s));
	if (eq == s)
		return;
	eq--;
	for (p = s; p < eq && *p != '+'; p++)
		;
	if (p == eq)
		for (p = s; p < eq && *p != '-'; p++)
			;
	if (p < eq)
		mask_local_checked(t, p + 1, (size_t)(eq - p - 1));
}

/* Copy T's kept bytes into OUT with each marked run as SCRUB_MARK. */
static size_t
scrub_emit(const struct scrub_in *t, bool cut, char *out, size_t outcap)
{
	static const size_t mlen = sizeof(SCRUB_MARK) - 1;
	size_t i, j, o = 0;

	for (i = 0; i < t->n; i = j) {
		if (!t->used || !t->m[i]) {
			for (j = i; j < t->n && (!t->used || !t->m[j]); j++)
				;
			if (o + (j - i) >= outcap) {
				cut = true;
				break;
			}
			memcpy(out + o, t->s + i, j - i);
			o += j - i;
		} else {
			for (j = i; j < t->n && t->m[j]; j++)
				;
			if (o + mlen >= outcap) {
				cut = true;
				break;
			}
			memcpy(out + o, SCRUB_MARK, mlen);
			o += mlen;
		}
	}
	if (cut && o + 3 < outcap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return o;
}

const char *
scrub_text(const char *in, size_t len, const char *const *addrs, size_t naddrs,
	   unsigned flags, char *out, size_t outcap, size_t *outlen)
{
	const struct scrub_ctx *ctx = scrub_cur;
	struct scrub_in t;
	const char *a;
	size_t i;
	bool cut;

	t.s = in;
	t.full = len < SCRUB_SCAN_BYTES + SCRUB_LOOKAHEAD_BYTES
		     ? len
		     : SCRUB_SCAN_BYTES + SCRUB_LOOKAHEAD_BYTES;
	t.n = t.full < SCRUB_SCAN_BYTES ? t.full : SCRUB_SCAN_BYTES;
	cut = t.n < len;
	if (cut) /* never keep half a token */
		while (t.n > 0 && CLS(in[t.n - 1], C_TOK))
			t.n--;
	t.used = t.have_low = false;
	mask_at(&t);
	mask_encoded(&t);
	if (flags & SCRUB_KNOWN) {
		if (t.n >= 8) /* "a at b.c" */
			mask_spelled_at(&t);
		need_low(&t);
		for (i = 0; i < naddrs; i++)
			if (addrs[i] != NULL)
				mask_addr(&t, addrs[i]);
		for (i = 0; ctx != NULL && i < ctx->n; i++)
			if ((a = ctx->addr(ctx->arg, i)) != NULL)
				mask_addr(&t, a);
	}
	if (!t.used && !cut) {
		*outlen = t.n;
		return in;
	}
	*outlen = scrub_emit(&t, cut, out, outcap);
	return out;
}

size_t
scrub_cut(char *s, size_t len)
{
	size_t e = len;

	while (e > 0 && CLS(s[e - 1], C_TOK))
		e--;
	if (e + 3 > len) { /* no room for the mark: cut further back */
		e = len >= 3 ? len - 3 : 0;
		while (e > 0 && CLS(s[e - 1], C_TOK))
			e--;
	}
	if (e + 3 <= len) {
		memcpy(s + e, "...", 3);
		e += 3;
	}
	s[e] = '\0';
	return e;
}

char *
scrub_escape(char *dst, size_t dstlen, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0, k;
	char tmp[4];

	if (dstlen == 0)
		return dst;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (CLS(c, C_SAFE)) {
			tmp[0] = (char)c;
			k = 1;
		} else {
			tmp[0] = '\\';
			tmp[1] = 'x';
			tmp[2] = hex[c >> 4];
			tmp[3] = hex[c & 15];
			k = 4;
		}
		if (o + k + 4 >= dstlen) {
			/* Cut with an ellipsis (UTF-8 "…" is 3 bytes). */
			if (o + 4 <= dstlen) {
				memcpy(dst + o, "\xe2\x80\xa6", 3);
				o += 3;
			}
			break;
		}
		memcpy(dst + o, tmp, k);
		o += k;
	}
	dst[o < dstlen ? o : dstlen - 1] = '\0';
	return dst;
}
