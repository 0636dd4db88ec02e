/*
 * evlog.c — the delivery log: JSON Lines, one object per event (evlog.h).
 *
 * Owns: the log file, its writer thread, the pending buffer and the address
 * hash key (sodium_malloc'd, read-only once loaded, wiped at close).  Callers
 * (any thread) format a line on their own stack, then append it to the
 * pending buffer under one mutex; the writer thread swaps that buffer out and
 * write(2)s it at least once a second, sooner past EVLOG_FLUSH_BYTES.
 * Must not: write an address, a local part or a VERP form in clear (every text
 * field goes through evlog_scrub() then log_escape()); make a caller wait for
 * the disk; emit a line that is not one valid JSON object in valid UTF-8.
 */
/* For PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP (glibc): see evl.mu. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "mta/evlog.h"
#include "mta/log.h"
#include "queue/queue.h"

_Static_assert(QUEUE_KEY_BYTES == 32, "evlog.h takes a 32-byte hash key");

#define EVLOG_LINE_BYTES (16 * 1024) /* one formatted line, at most */
#define EVLOG_SCAN_BYTES 2048        /* of one text field; the rest is cut */
/* Past the cut, for an '@' whose local part starts before it. */
#define EVLOG_LOOKAHEAD_BYTES   1024
#define EVLOG_TEXT_BYTES        4096 /* one field, scrubbed or escaped */
#define EVLOG_DOMAIN_BYTES      512
#define EVLOG_LOCAL_MAX_BYTES   256 /* known local parts longer: not searched */
#define EVLOG_FLUSH_BYTES       (64 * 1024)        /* wake the writer early */
#define EVLOG_PENDING_MAX_BYTES (16 * 1024 * 1024) /* past this, drop */
#define EVLOG_BUF_INIT_BYTES    (128 * 1024)
#define EVLOG_BUF_KEEP_BYTES    (1024 * 1024) /* a bigger spare is shrunk */
#define EVLOG_FLUSH_MS          1000
#define EVLOG_SCRUB             "<address>"
/* Room always kept at the end of a line: '…', closing '"', "}\n". */
#define JW_TAIL 8

enum evlog_state { EVL_CLOSED, EVL_NULL, EVL_OPEN };

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* CLOCK_MONOTONIC; initialised once, kept */
	/* Under mu: the pending buffer, requests, counters. */
	char *buf;
	size_t len, cap;
	size_t reopen_mark; /* lines before it go to the old file */
	bool reopen, stop;
	uint64_t lines, dropped, bytes;
	/* The writer thread's own (and the opener's, before it starts). */
	char *spare;
	size_t spare_cap;
	int fd;
	bool failing; /* last write failed: warned once */
	/* Set by evlog_open, read-only until evlog_close. */
	char *path;
	uint8_t *key;
	pthread_t thread;
} evl = {
	/* Held for a memcpy of one line: three loops append at every event,
	 * and spinning a moment is cheaper than sleeping in the kernel. */
	.mu = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP,
	.fd = -1,
};

static _Atomic int evl_state = EVL_CLOSED;
/* Callers between their state check and the end of their call: evlog_close
 * waits for none before it tears down. */
static _Atomic int evl_inflight;
static _Atomic unsigned evl_key_gen; /* one more at every evlog_open() */
static pthread_once_t evl_once = PTHREAD_ONCE_INIT;

/* Byte classes, filled once by evlog_once_init(). */
#define C_TOK    0x01 /* of an address-shaped token, as log_escape() sees it */
#define C_LOCAL  0x02 /* of a local part outside quotes and comments */
#define C_DOMAIN 0x04 /* of a domain after '@' */
#define C_LABEL  0x08 /* of a domain label */
#define C_WORD   0x10 /* of a word (local parts stand alone between others) */
#define C_PLAIN  0x20 /* copied as is into a JSON string */
#define C_SAFE   0x40 /* copied as is by log_escape() */
static uint8_t evl_cls[256];
#define CLS(c, m) ((evl_cls[(unsigned char)(c)] & (m)) != 0)

static const char *const evlog_type_names[EV__COUNT] = {
	[EV_RECEPTION] = "reception",
	[EV_DELIVERY] = "delivery",
	[EV_TRANSIENT] = "transient_failure",
	[EV_BOUNCE] = "bounce",
	[EV_EXPIRATION] = "expiration",
	[EV_REJECTION] = "rejection",
	[EV_ADMIN] = "admin",
};

const char *
evlog_type_name(enum evlog_type t)
{
	if ((unsigned)t >= EV__COUNT)
		return "unknown";
	return evlog_type_names[t];
}

static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* JSON writer -------------------------------------------------------- */

/* A line under construction.  Every field is written whole or not at all,
 * and strings are cut short before the last JW_TAIL bytes, so the line is
 * always one complete object. */
struct jw {
	char *p;
	size_t n, cap;
};

static bool
jw_room(const struct jw *w, size_t need)
{
	return w->n + need + JW_TAIL <= w->cap;
}

static void
jw_put(struct jw *w, const char *s, size_t len)
{
	memcpy(w->p + w->n, s, len);
	w->n += len;
}

/* ,"NAME": — false (nothing written) when NEED more bytes would not fit. */
static bool
jw_key(struct jw *w, const char *name, size_t need)
{
	size_t len = strlen(name);

	if (!jw_room(w, len + 4 + need))
		return false;
	w->p[w->n++] = ',';
	w->p[w->n++] = '"';
	jw_put(w, name, len);
	w->p[w->n++] = '"';
	w->p[w->n++] = ':';
	return true;
}

/* Length of the valid UTF-8 sequence at S (N bytes left), 0 if invalid:
 * no overlong forms, no surrogates, nothing past U+10FFFF (RFC 3629). */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* S (LEN bytes, any bytes) as the body of a JSON string: quotes and
 * backslashes escaped, control bytes as \u00XX, invalid UTF-8 as \ufffd.
 * Cut with "…" when the line is full. */
static void
jw_escape(struct jw *w, const unsigned char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t lim = w->cap - JW_TAIL, i = 0, j, k;
	char tmp[6];

	while (i < len) {
		if (CLS(s[i], C_PLAIN)) {
			for (j = i + 1; j < len && CLS(s[j], C_PLAIN); j++)
				;
			k = j - i;
			if (w->n + k > lim) {
				jw_put(w, (const char *)s + i, lim - w->n);
				goto cut;
			}
			jw_put(w, (const char *)s + i, k);
			i = j;
			continue;
		}
		if (s[i] == '"' || s[i] == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)s[i];
			k = 2;
			j = i + 1;
		} else if (s[i] < 0x80) {
			memcpy(tmp, "\\u00", 4);
			tmp[4] = hex[s[i] >> 4];
			tmp[5] = hex[s[i] & 15];
			k = 6;
			j = i + 1;
		} else if ((k = utf8_seq(s + i, len - i)) > 0) {
			if (w->n + k > lim)
				goto cut;
			jw_put(w, (const char *)s + i, k);
			i += k;
			continue;
		} else {
			memcpy(tmp, "\\ufffd", 6);
			k = 6;
			j = i + 1;
		}
		if (w->n + k > lim)
			goto cut;
		jw_put(w, tmp, k);
		i = j;
	}
	return;
cut:
	jw_put(w, "\xe2\x80\xa6", 3);
}

static void
jw_str(struct jw *w, const char *name, const char *s, size_t len)
{
	if (!jw_key(w, name, 2))
		return;
	w->p[w->n++] = '"';
	jw_escape(w, (const unsigned char *)s, len);
	w->p[w->n++] = '"';
}

/* Decimal digits of V into the end of BUF[24]; returns the first. */
static char *
fmt_u64(char buf[24], uint64_t v)
{
	char *p = buf + 24;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return p;
}

static void
jw_u64(struct jw *w, const char *name, uint64_t v)
{
	char buf[24], *p = fmt_u64(buf, v);

	if (jw_key(w, name, 24))
		jw_put(w, p, (size_t)(buf + 24 - p));
}

static void
jw_bool(struct jw *w, const char *name, bool v)
{
	if (jw_key(w, name, 5))
		jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

/* MS milliseconds as seconds with three decimals ("12.045"). */
static void
jw_seconds(struct jw *w, const char *name, uint64_t ms)
{
	char buf[24], *p = fmt_u64(buf, ms / 1000), frac[4];

	if (!jw_key(w, name, 28))
		return;
	jw_put(w, p, (size_t)(buf + 24 - p));
	frac[0] = '.';
	frac[1] = (char)('0' + ms / 100 % 10);
	frac[2] = (char)('0' + ms / 10 % 10);
	frac[3] = (char)('0' + ms % 10);
	jw_put(w, frac, 4);
}

/* Time --------------------------------------------------------------- */

static void
put_digits(char *p, unsigned v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* MS (Unix ms) as "YYYY-MM-DDTHH:MM:SS.mmmZ" into OUT[24].  Civil date from
 * the day number without gmtime_r(), which takes glibc's tz lock. */
static void
evlog_time(char out[24], int64_t ms)
{
	int64_t days, z, era, doe, yoe, doy, mp, y, sod;
	unsigned m, d;

	if (ms < 0)
		ms = 0;
	if (ms > INT64_C(253402300799999)) /* 9999-12-31T23:59:59.999Z */
		ms = INT64_C(253402300799999);
	days = ms / 86400000;
	sod = ms % 86400000;
	z = days + 719468;
	era = z / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (m <= 2);
	put_digits(out, (unsigned)y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, (unsigned)(sod / 3600000), 2);
	out[13] = ':';
	put_digits(out + 14, (unsigned)(sod / 60000 % 60), 2);
	out[16] = ':';
	put_digits(out + 17, (unsigned)(sod / 1000 % 60), 2);
	out[19] = '.';
	put_digits(out + 20, (unsigned)(sod % 1000), 3);
	out[23] = 'Z';
}

/* Scrubbing ---------------------------------------------------------- */

/* The event's own local parts (rcpt, sender, and the recipient's inside a
 * VERP sender): searched for in free text. */
struct evlog_locals {
	const char *p[3];
	size_t n[3];
};

static void
evlog_cls_init(void)
{
	unsigned c;
	uint8_t m;
	bool alnum;

	for (c = 0; c < 256; c++) {
		m = 0;
		alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9');
		/* As log_addr_byte() in mta/log.c. */
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
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			m |= C_PLAIN;
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '@')
			m |= C_SAFE;
		evl_cls[c] = m;
	}
}

/* The scrubber's marks over its input, cleared on first use. */
struct scrub_mask {
	uint8_t m[EVLOG_SCAN_BYTES];
	size_t n;
	bool used;
};

static void
mask_set(struct scrub_mask *mk, size_t from, size_t to)
{
	if (to > mk->n)
		to = mk->n;
	if (from >= to)
		return;
	if (!mk->used) {
		memset(mk->m, 0, mk->n);
		mk->used = true;
	}
	memset(mk->m + from, 1, to - from);
}

/* The extent [*from, *to) of the address around the '@' at S[AT]: back over
 * the local part, jumping over quoted strings ("jane doe"@) and comments
 * (jane(x)@); forward over the domain, or a [literal].  An unbalanced quote
 * or comment takes everything before it: better too much than a name. */
static void
addr_extent(const char *s, size_t len, size_t at, size_t *from, size_t *to)
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
	*from = i;
	j = at + 1;
	if (j < len && s[j] == '[') {
		while (j < len && s[j] != ']')
			j++;
		if (j < len)
			j++;
	}
	while (j < len && CLS(s[j], C_DOMAIN))
		j++;
	*to = j;
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
		for (i = 0; i < n && ascii_lower(s[i]) == tags[t][i]; i++)
			;
		if (i == n)
			return true;
	}
	return false;
}

/* A token that encodes an address without '@': a VERP form
 * ("bounces+jane=example.org"), the percent hack ("jane%example.org"), a
 * URL-encoded '@' ("jane%40example.org") or an HTML one ("jane&#64"). */
static bool
tok_encoded(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i++) {
		if (s[i] == '&' && i + 3 < n && s[i + 1] == '#' &&
		    (memcmp(s + i + 2, "64", 2) == 0 ||
		     (i + 4 < n && memcmp(s + i + 2, "x40", 3) == 0)))
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

/*
 * Mark every stand-alone occurrence of LOCAL (case-insensitive) in S, given
 * LOWER, S in lower case (mk->n bytes): memchr finds the candidates, so a
 * line costs a few vector scans rather than a compare per byte per local.
 */
static void
mask_local(struct scrub_mask *mk, const char *s, const char *lower,
	   const char *local, size_t m)
{
	char c0 = ascii_lower(local[0]);
	const char *p;
	size_t i, k, n = mk->n;

	for (i = 0; i + m <= n; i++) {
		if ((p = memchr(lower + i, c0, n - m + 1 - i)) == NULL)
			break;
		i = (size_t)(p - lower);
		if (i > 0 && CLS(s[i - 1], C_WORD))
			continue;
		if (i + m < n && CLS(s[i + m], C_WORD))
			continue;
		for (k = 1; k < m && lower[i + k] == ascii_lower(local[k]); k++)
			;
		if (k == m)
			mask_set(mk, i, i + m);
	}
}

#define SCRUB_LOCALS 0x1 /* free text: also the event's own local parts */

/*
 * evlog_scrub — IN (NUL-terminated, any bytes) with every address-shaped run
 * replaced by "<address>" (bytes otherwise as they were, for log_escape() to
 * make printable).  Beyond what log_escape() catches (any token with '@'),
 * this takes quoted local parts with spaces and comments, encoded forms
 * without '@' (tok_encoded) and, with SCRUB_LOCALS, the event's own local
 * parts standing alone.  Only the first EVLOG_SCAN_BYTES are kept ("..."
 * marks the cut, which never splits a token).  Returns IN itself when it
 * needs no change, else OUT (OUTCAP bytes); its length in *LEN.
 */
static const char *
evlog_scrub(const char *in, const struct evlog_locals *loc, unsigned flags,
	    char *out, size_t outcap, size_t *len)
{
	struct scrub_mask mk;
	char lower[EVLOG_SCAN_BYTES];
	size_t full, n, i, j, from, to, o = 0;
	const char *at;
	bool cut;

	full = strnlen(in, EVLOG_SCAN_BYTES + EVLOG_LOOKAHEAD_BYTES);
	n = full < EVLOG_SCAN_BYTES ? full : EVLOG_SCAN_BYTES;
	cut = n < full;
	if (cut) /* never keep half a token */
		while (n > 0 && CLS(in[n - 1], C_TOK))
			n--;
	mk.n = n;
	mk.used = false;
	for (i = 0; i < full && (at = memchr(in + i, '@', full - i)) != NULL;
	     i = to > (size_t)(at - in) ? to : (size_t)(at - in) + 1) {
		addr_extent(in, full, (size_t)(at - in), &from, &to);
		mask_set(&mk, from, to);
	}
	if (memchr(in, '=', n) != NULL || memchr(in, '%', n) != NULL ||
	    memchr(in, '&', n) != NULL) {
		for (i = 0; i < n; i = j) {
			for (j = i; j < n && CLS(in[j], C_TOK); j++)
				;
			if (j > i && tok_encoded(in + i, j - i))
				mask_set(&mk, i, j);
			if (j == i)
				j++;
		}
	}
	if ((flags & SCRUB_LOCALS) && loc != NULL) {
		for (i = 0; i < n; i++)
			lower[i] = ascii_lower(in[i]);
		for (i = 0; i < 3; i++)
			if (loc->p[i] != NULL && loc->n[i] >= 2 &&
			    loc->n[i] <= EVLOG_LOCAL_MAX_BYTES)
				mask_local(&mk, in, lower, loc->p[i],
					   loc->n[i]);
	}
	if (!mk.used && !cut) {
		*len = n;
		return in;
	}
	for (i = 0; i < n; i = j) {
		if (!mk.used || !mk.m[i]) {
			for (j = i; j < n && (!mk.used || !mk.m[j]); j++)
				;
			if (o + (j - i) >= outcap) {
				cut = true;
				break;
			}
			memcpy(out + o, in + i, j - i);
			o += j - i;
		} else {
			for (j = i; j < n && mk.m[j]; j++)
				;
			if (o + sizeof(EVLOG_SCRUB) - 1 >= outcap) {
				cut = true;
				break;
			}
			memcpy(out + o, EVLOG_SCRUB, sizeof(EVLOG_SCRUB) - 1);
			o += sizeof(EVLOG_SCRUB) - 1;
		}
	}
	if (cut && o + 3 < outcap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	*len = o;
	return out;
}

/* Would log_escape() copy T (N bytes) unchanged?  Then it need not run. */
static bool
escape_identity(const char *t, size_t n)
{
	size_t i;

	if (n + 8 >= EVLOG_TEXT_BYTES)
		return false;
	for (i = 0; i < n; i++)
		if (!CLS(t[i], C_SAFE))
			return false;
	return true;
}

/* A text field: scrubbed, then log_escape()d, then JSON-escaped. */
static void
jw_text(struct jw *w, const char *name, const char *s,
	const struct evlog_locals *loc, unsigned flags)
{
	char scrubbed[EVLOG_TEXT_BYTES], esc[EVLOG_TEXT_BYTES];
	const char *t;
	size_t n;

	if (s == NULL)
		return;
	t = evlog_scrub(s, loc, flags, scrubbed, sizeof(scrubbed), &n);
	if (escape_identity(t, n)) {
		jw_str(w, name, t, n);
		return;
	}
	log_escape(esc, sizeof(esc), t, n);
	jw_str(w, name, esc, strlen(esc));
}

/* Addresses ---------------------------------------------------------- */

/*
 * queue_addr_hash(KEY, ADDR) into HEX.  With MEMO (the sender), the last
 * answer of this thread is kept: campaign mail comes from a few senders,
 * and a keyed BLAKE2b is two compressions, worth saving on every line.
 */
static void
evlog_addr_hash(const uint8_t *key, const char *addr, bool memo,
		char hex[QUEUE_HASH_HEX_BYTES])
{
	static _Thread_local char m_addr[256], m_hex[QUEUE_HASH_HEX_BYTES];
	static _Thread_local unsigned m_gen; /* 0: empty */
	unsigned gen = atomic_load(&evl_key_gen);
	size_t n;

	if (memo && m_gen == gen && strcmp(m_addr, addr) == 0) {
		memcpy(hex, m_hex, sizeof(m_hex));
		return;
	}
	queue_addr_hash(key, addr, hex);
	if (memo && (n = strlen(addr)) < sizeof(m_addr)) {
		memcpy(m_addr, addr, n + 1);
		memcpy(m_hex, hex, sizeof(m_hex));
		m_gen = gen;
	}
}

void
evlog_hash(const char *addr, char hex[QUEUE_HASH_HEX_BYTES])
{
	if (evl.key == NULL) {
		hex[0] = '\0';
		return;
	}
	evlog_addr_hash(evl.key, addr, false, hex);
}

/* ADDR without surrounding white space and <> (as queue_addr_hash sees it),
 * as [*s, *e). */
static void
addr_trim(const char *addr, const char **s, const char **e)
{
	const char *p = addr, *q = addr + strlen(addr);
	int pass;

	for (pass = 0; pass < 2; pass++) {
		while (p < q &&
		       (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
			p++;
		while (q > p && (q[-1] == ' ' || q[-1] == '\t' ||
				 q[-1] == '\r' || q[-1] == '\n'))
			q--;
		if (pass == 0 && p < q && *p == '<')
			p++;
		if (pass == 0 && q > p && q[-1] == '>')
			q--;
	}
	*s = p;
	*e = q;
}

/* The recipient's local part inside a VERP local part L..LE
 * ("bounces+jane=example.org": "jane"), into LOC slot 2. */
static void
verp_local(const char *l, const char *le, struct evlog_locals *loc)
{
	const char *eq, *p;

	for (eq = le; eq > l; eq--)
		if (eq[-1] == '=' && domain_like(eq, (size_t)(le - eq)))
			break;
	if (eq == l)
		return;
	eq--;
	for (p = l; p < eq && *p != '+'; p++)
		;
	if (p == eq)
		for (p = l; p < eq && *p != '-'; p++)
			;
	if (p < eq) {
		loc->p[2] = p + 1;
		loc->n[2] = (size_t)(eq - p - 1);
	}
}

/* HNAME (keyed hash, left out for the null sender) and DNAME (domain, lower
 * case, "" without '@') for ADDR; its local part (quotes stripped) into LOC
 * slot SLOT, for scrubbing the free text. */
static void
jw_addr(struct jw *w, const char *hname, const char *dname, const char *addr,
	const uint8_t *key, struct evlog_locals *loc, int slot)
{
	char hex[QUEUE_HASH_HEX_BYTES], dom[EVLOG_DOMAIN_BYTES];
	const char *s, *e, *at, *l, *le;
	size_t i, n = 0;

	addr_trim(addr, &s, &e);
	if (s < e) {
		evlog_addr_hash(key, addr, slot == 1, hex);
		jw_str(w, hname, hex, strlen(hex));
	}
	for (at = e; at > s && at[-1] != '@'; at--)
		;
	if (at > s) { /* AT is past the last '@' */
		for (i = 0; at + i < e && i < sizeof(dom); i++)
			dom[i] = ascii_lower(at[i]);
		n = i;
	}
	l = s;
	le = at > s ? at - 1 : e;
	jw_str(w, dname, dom, n);
	if (le - l >= 2 && *l == '"' && le[-1] == '"') {
		l++;
		le--;
	}
	loc->p[slot] = l;
	loc->n[slot] = (size_t)(le - l);
	if (slot == 1)
		verp_local(l, le, loc);
}

/* Formatting --------------------------------------------------------- */

static int64_t
evlog_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * evlog_format — EV as one line (with its '\n') into LINE; returns its
 * length.  Fields in the order of the documentation, each only when set.
 * Long (~80 lines) because it is the list of fields, in order, and nothing
 * else.
 */
static size_t
evlog_format(const struct evlog_event *ev, const uint8_t *key, char *line,
	     size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	struct jw w = { line, 0, cap };
	struct evlog_locals loc = { { NULL, NULL, NULL }, { 0, 0, 0 } };
	const char *name = evlog_type_name(ev->type);
	char id[16];
	int i;

	jw_put(&w, "{\"time\":\"", 9);
	evlog_time(w.p + w.n, ev->time_ms != 0 ? ev->time_ms : evlog_now_ms());
	w.n += 24;
	jw_put(&w, "\",\"event\":\"", 11);
	jw_put(&w, name, strlen(name));
	w.p[w.n++] = '"';
	if (ev->id != 0) {
		for (i = 0; i < 16; i++)
			id[i] = hex[(ev->id >> (60 - 4 * i)) & 15];
		jw_str(&w, "id", id, 16);
	}
	jw_text(&w, "session", ev->session, NULL, 0);
	jw_text(&w, "user", ev->user, NULL, 0);
	jw_text(&w, "client", ev->client, NULL, 0);
	jw_text(&w, "pool", ev->pool, NULL, 0);
	jw_text(&w, "source_addr", ev->source_addr, NULL, 0);
	jw_text(&w, "destination", ev->destination, NULL, 0);
	jw_text(&w, "mx_host", ev->mx_host, NULL, 0);
	jw_text(&w, "mx_ip", ev->mx_ip, NULL, 0);
	/* Their local parts, for the free text that follows. */
	if (ev->rcpt != NULL)
		jw_addr(&w, "rcpt_hash", "rcpt_domain", ev->rcpt, key, &loc, 0);
	if (ev->sender != NULL)
		jw_addr(&w, "sender_hash", "sender_domain", ev->sender, key,
			&loc, 1);
	if (ev->size != 0)
		jw_u64(&w, "size", ev->size);
	if (ev->nrcpts >= 0)
		jw_u64(&w, "nrcpts", (uint64_t)ev->nrcpts);
	if (ev->attempt >= 0)
		jw_u64(&w, "attempt", (uint64_t)ev->attempt);
	if (ev->queue_time_ms >= 0)
		jw_seconds(&w, "queue_time_s", (uint64_t)ev->queue_time_ms);
	if (ev->code > 0)
		jw_u64(&w, "code", (uint64_t)ev->code);
	jw_text(&w, "enhanced_status", ev->enhanced, NULL, 0);
	jw_text(&w, "reply", ev->reply, &loc, SCRUB_LOCALS);
	jw_text(&w, "stage", ev->stage, NULL, 0);
	jw_text(&w, "tls_version", ev->tls_version, NULL, 0);
	jw_text(&w, "tls_cipher", ev->tls_cipher, NULL, 0);
	if (ev->tls_verified >= 0)
		jw_bool(&w, "tls_verified", ev->tls_verified != 0);
	jw_text(&w, "dkim", ev->dkim, NULL, 0);
	jw_text(&w, "dmarc", ev->dmarc, &loc, SCRUB_LOCALS);
	jw_text(&w, "reason", ev->reason, &loc, SCRUB_LOCALS);
	jw_text(&w, "admin", ev->admin, NULL, 0);
	jw_text(&w, "command", ev->command, &loc, SCRUB_LOCALS);
	if (ev->count >= 0)
		jw_u64(&w, "count", (uint64_t)ev->count);
	w.p[w.n++] = '}';
	w.p[w.n++] = '\n';
	return w.n;
}

/* The writer ---------------------------------------------------------- */

static void
evlog_once_init(void)
{
	pthread_condattr_t ca;

	evlog_cls_init();
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&evl.wake, &ca);
	pthread_condattr_destroy(&ca);
}

static uint64_t
count_lines(const char *p, size_t len)
{
	const char *e = p + len, *q;
	uint64_t n = 0;

	while (p < e && (q = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		n++;
		p = q + 1;
	}
	return n;
}

/* Write P (LEN bytes of whole lines) to the file and count them: written,
 * or dropped when write(2) fails.  Writer thread. */
static void
evlog_flush(const char *p, size_t len)
{
	size_t off = 0;
	ssize_t r;
	uint64_t done, lost;

	if (len == 0)
		return;
	while (off < len) {
		r = write(evl.fd, p + off, len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (!evl.failing)
				log_warn("evlog: write %s", evl.path);
			evl.failing = true;
			break;
		}
		off += (size_t)r;
	}
	if (off == len && evl.failing) {
		log_info("evlog: writing %s again", evl.path);
		evl.failing = false;
	}
	done = count_lines(p, off);
	lost = count_lines(p + off, len - off);
	pthread_mutex_lock(&evl.mu);
	evl.lines += done;
	evl.bytes += off;
	evl.dropped += lost;
	pthread_mutex_unlock(&evl.mu);
}

/* Reopen the path (logrotate moved the file); on failure keep writing to
 * the old one.  Writer thread. */
static void
evlog_reopen_file(void)
{
	int fd =
	    open(evl.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		log_warn("evlog: reopen %s (still writing the old file)",
			 evl.path);
		return;
	}
	close(evl.fd);
	evl.fd = fd;
}

/* Swap the pending buffer out and write it, at least every EVLOG_FLUSH_MS;
 * a reopen request cuts it where it was made.  Ends after the flush that
 * follows a stop request. */
static void *
evlog_writer_main(void *arg)
{
	struct timespec dl;
	char *buf;
	size_t len, cap, mark;
	bool reopen, stop;

	(void)arg;
	(void)prctl(PR_SET_NAME, (unsigned long)"evlog-writer", 0, 0, 0);
	pthread_mutex_lock(&evl.mu);
	for (;;) {
		if (!evl.stop && !evl.reopen && evl.len < EVLOG_FLUSH_BYTES) {
			clock_gettime(CLOCK_MONOTONIC, &dl);
			dl.tv_sec += EVLOG_FLUSH_MS / 1000;
			(void)pthread_cond_timedwait(&evl.wake, &evl.mu, &dl);
		}
		buf = evl.buf;
		len = evl.len;
		cap = evl.cap;
		reopen = evl.reopen;
		mark = evl.reopen_mark;
		stop = evl.stop;
		evl.buf = evl.spare;
		evl.cap = evl.spare_cap;
		evl.len = 0;
		evl.reopen = false;
		pthread_mutex_unlock(&evl.mu);

		if (reopen) {
			evlog_flush(buf, mark);
			evlog_reopen_file();
			evlog_flush(buf + mark, len - mark);
		} else {
			evlog_flush(buf, len);
		}
		if (cap > EVLOG_BUF_KEEP_BYTES) { /* after a burst */
			char *small = malloc(EVLOG_BUF_INIT_BYTES);

			if (small != NULL) {
				free(buf);
				buf = small;
				cap = EVLOG_BUF_INIT_BYTES;
			}
		}

		pthread_mutex_lock(&evl.mu);
		evl.spare = buf;
		evl.spare_cap = cap;
		if (stop)
			break;
	}
	pthread_mutex_unlock(&evl.mu);
	return NULL;
}

/* Append one formatted line, or count it as dropped. */
static void
evlog_append(const char *line, size_t n)
{
	bool wake = false;
	size_t cap;
	char *p;

	pthread_mutex_lock(&evl.mu);
	if (evl.len + n > EVLOG_PENDING_MAX_BYTES) {
		evl.dropped++;
		goto out;
	}
	if (evl.len + n > evl.cap) {
		for (cap = evl.cap * 2; cap < evl.len + n; cap *= 2)
			;
		if (cap > EVLOG_PENDING_MAX_BYTES)
			cap = EVLOG_PENDING_MAX_BYTES;
		if ((p = realloc(evl.buf, cap)) == NULL) {
			evl.dropped++;
			goto out;
		}
		evl.buf = p;
		evl.cap = cap;
	}
	memcpy(evl.buf + evl.len, line, n);
	evl.len += n;
	wake = evl.len >= EVLOG_FLUSH_BYTES && evl.len - n < EVLOG_FLUSH_BYTES;
out:
	pthread_mutex_unlock(&evl.mu);
	if (wake)
		pthread_cond_signal(&evl.wake);
}

/* Public ------------------------------------------------------------- */

static void
evlog_err(char *err, size_t errlen, const char *what, const char *path)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s%s%s", path != NULL ? path : "",
			 path != NULL ? ": " : "", what);
}

/* Free what evlog_open set up (the thread is not running). */
static void
evlog_teardown(void)
{
	if (evl.fd >= 0)
		close(evl.fd);
	evl.fd = -1;
	free(evl.buf);
	free(evl.spare);
	evl.buf = evl.spare = NULL;
	evl.len = evl.cap = evl.spare_cap = 0;
	free(evl.path);
	evl.path = NULL;
	if (evl.key != NULL) {
		sodium_mprotect_readwrite(evl.key);
		sodium_memzero(evl.key, QUEUE_KEY_BYTES);
		sodium_free(evl.key);
		evl.key = NULL;
	}
}

int
evlog_open(const char *path, const uint8_t hash_key[32], char *err,
	   size_t errlen)
{
	sigset_t all, old;
	int rc;

	pthread_once(&evl_once, evlog_once_init);
	if (atomic_load(&evl_state) != EVL_CLOSED) {
		evlog_err(err, errlen, "delivery log already open", NULL);
		return -1;
	}
	pthread_mutex_lock(&evl.mu);
	evl.lines = evl.dropped = evl.bytes = 0;
	evl.reopen = evl.stop = evl.failing = false;
	pthread_mutex_unlock(&evl.mu);
	if (path == NULL) {
		atomic_store(&evl_state, EVL_NULL);
		return 0;
	}
	if (hash_key == NULL) {
		evlog_err(err, errlen, "no address hash key", path);
		return -1;
	}
	if (sodium_init() < 0) {
		evlog_err(err, errlen, "libsodium initialisation failed", path);
		return -1;
	}
	if ((evl.key = sodium_malloc(QUEUE_KEY_BYTES)) == NULL ||
	    (evl.path = strdup(path)) == NULL ||
	    (evl.buf = malloc(EVLOG_BUF_INIT_BYTES)) == NULL ||
	    (evl.spare = malloc(EVLOG_BUF_INIT_BYTES)) == NULL) {
		evlog_err(err, errlen, strerror(ENOMEM), path);
		goto fail;
	}
	memcpy(evl.key, hash_key, QUEUE_KEY_BYTES);
	sodium_mprotect_readonly(evl.key);
	atomic_fetch_add(&evl_key_gen, 1); /* forget every thread's memo */
	evl.cap = evl.spare_cap = EVLOG_BUF_INIT_BYTES;
	evl.len = 0;
	evl.fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (evl.fd < 0) {
		evlog_err(err, errlen, strerror(errno), path);
		goto fail;
	}
	/* Signals belong to the main loop, not to the writer (faults stay
	 * deliverable, for the sanitizers' reports). */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&evl.thread, NULL, evlog_writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		evlog_err(err, errlen, strerror(rc), path);
		goto fail;
	}
	atomic_store(&evl_state, EVL_OPEN);
	return 0;
fail:
	evlog_teardown();
	return -1;
}

void
evlog_write(const struct evlog_event *ev)
{
	char line[EVLOG_LINE_BYTES];
	size_t n;

	if (ev == NULL ||
	    atomic_load_explicit(&evl_state, memory_order_relaxed) != EVL_OPEN)
		return;
	atomic_fetch_add(&evl_inflight, 1);
	if (atomic_load(&evl_state) == EVL_OPEN) {
		n = evlog_format(ev, evl.key, line, sizeof(line));
		evlog_append(line, n);
	}
	atomic_fetch_sub(&evl_inflight, 1);
}

void
evlog_reopen(void)
{
	if (atomic_load(&evl_state) != EVL_OPEN)
		return;
	atomic_fetch_add(&evl_inflight, 1);
	if (atomic_load(&evl_state) == EVL_OPEN) {
		pthread_mutex_lock(&evl.mu);
		evl.reopen = true;
		evl.reopen_mark = evl.len;
		pthread_mutex_unlock(&evl.mu);
		pthread_cond_signal(&evl.wake);
	}
	atomic_fetch_sub(&evl_inflight, 1);
}

void
evlog_close(void)
{
	struct timespec pause = { 0, 100000 };
	int state = atomic_exchange(&evl_state, EVL_CLOSED);

	if (state == EVL_CLOSED)
		return;
	/* A caller that saw the log open finishes its line first. */
	while (atomic_load(&evl_inflight) != 0)
		nanosleep(&pause, NULL);
	if (state == EVL_OPEN) {
		pthread_mutex_lock(&evl.mu);
		evl.stop = true;
		pthread_mutex_unlock(&evl.mu);
		pthread_cond_signal(&evl.wake);
		pthread_join(evl.thread, NULL);
	}
	evlog_teardown();
}

void
evlog_stats_get(struct evlog_stats *st)
{
	pthread_mutex_lock(&evl.mu);
	st->lines = evl.lines;
	st->dropped = evl.dropped;
	st->bytes = evl.bytes;
	pthread_mutex_unlock(&evl.mu);
}
