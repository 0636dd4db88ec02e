/*
 * spf.c — SPF (RFC 7208) for the DMARC pre-check: the record parser and
 * the macro expander (pure), and check_host() on the dns/ resolver (never
 * the system resolver, never blocking).  The cache is in spf_cache.c.
 * Owns: struct spf_query (one evaluation over a set of addresses).
 * Must not: block, call back from inside spf_check(), read
 * outside given lengths, exceed 10 DNS-querying terms or 2 void lookups
 * per check_host().  Thread: parsing and expansion on any thread; a query
 * on its resolver's loop.
 * Invariants: a query waits on at most one dns_query; it is freed exactly
 * once (after its callback, or on cancel).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"
#include "dkim/spf_int.h"
#include "dns/dns.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf
#pragma GCC poison sprintf
#endif

#define SPF_LOOKUPS_MAX    10 /* RFC 7208 4.6.4 */
#define SPF_VOIDS_MAX      2
#define SPF_MX_HOSTS_MAX   10
#define SPF_DEPTH_MAX      (SPF_LOOKUPS_MAX + 1)
#define SPF_NAME_MAX       253
#define SPF_TERMS_MAX      4096 /* a TXT answer is at most 64 KiB */
#define SPF_NEGATIVE_TTL_S 60
#define SPF_TTL_MAX_S      3600 /* results are kept at most this long */

const char *
spf_result_str(enum spf_result r)
{
	switch (r) {
	case SPF_NONE:
		return "none";
	case SPF_NEUTRAL:
		return "neutral";
	case SPF_PASS:
		return "pass";
	case SPF_FAIL:
		return "fail";
	case SPF_SOFTFAIL:
		return "softfail";
	case SPF_TEMPERROR:
		return "temperror";
	case SPF_PERMERROR:
		return "permerror";
	}
	return "?";
}

/* ---------------------------------------------------------------------- */
/* Records (RFC 7208 4.5, 12)                                              */

/*
 * spf_record_is — see dkim.h (4.5: "v=spf1" exactly, case-insensitive,
 * then a space or the end).
 */
bool
spf_record_is(const char *txt, size_t len)
{
	return txt != NULL && len >= 6 && dkim_token_is(txt, 6, "v=spf1") &&
	       (len == 6 || txt[6] == ' ');
}

/* A macro-string (7.1) of N octets at P: literals %x21-7E, "%%", "%_",
 * "%-" and well-formed "%{…}".  Letters are checked by the expander. */
static bool
spf_macro_string_ok(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return false;
		if (p[i] != '%') {
			i++;
			continue;
		}
		if (i + 1 >= n)
			return false;
		if (p[i + 1] == '%' || p[i + 1] == '_' || p[i + 1] == '-') {
			i += 2;
			continue;
		}
		if (p[i + 1] != '{' || i + 2 >= n ||
		    strchr("sloidphcrtvSLOIDPHCRTV", p[i + 2]) == NULL ||
		    p[i + 2] == '\0')
			return false;
		i += 3;
		while (i < n && DKIM_IS_DIGIT(p[i]))
			i++;
		if (i < n && (p[i] == 'r' || p[i] == 'R'))
			i++;
		while (i < n && p[i] != '\0' && strchr(".-+,/_=", p[i]) != NULL)
			i++;
		if (i >= n || p[i] != '}')
			return false;
		i++;
	}
	return true;
}

/* A domain-spec: a non-empty macro-string. */
static bool
spf_domain_spec_ok(const char *p, size_t n)
{
	return n > 0 && spf_macro_string_ok(p, n);
}

/* "/N" with N in 0..MAX, no leading zero (12: ip4-cidr-length). */
static int
spf_cidr_scan(const char *p, size_t n, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	if (n < 2 || p[0] != '/' || n > 4 || (p[1] == '0' && n > 2))
		return -1;
	for (i = 1; i < n; i++) {
		if (!DKIM_IS_DIGIT(p[i]))
			return -1;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * spf_dual_cidr — strip a trailing dual-cidr-length ("/24", "//64",
 * "/24//64") from the argument of a or mx (P, *N octets) into T.
 */
static int
spf_dual_cidr(const char *p, size_t *n, struct spf_term *t)
{
	size_t i, end = *n;

	/* "//N" at the end: the IPv6 length. */
	for (i = end; i > 0 && DKIM_IS_DIGIT(p[i - 1]); i--)
		;
	if (i >= 2 && i < end && p[i - 1] == '/' && p[i - 2] == '/') {
		if (spf_cidr_scan(p + i - 1, end - i + 1, 128, &t->cidr6) != 0)
			return -1;
		end = i - 2;
	}
	for (i = end; i > 0 && DKIM_IS_DIGIT(p[i - 1]); i--)
		;
	if (i >= 1 && i < end && p[i - 1] == '/') {
		if (spf_cidr_scan(p + i - 1, end - i + 1, 32, &t->cidr4) != 0)
			return -1;
		end = i - 1;
	}
	*n = end;
	return 0;
}

/* ip4-network / ip6-network with an optional length. */
static int
spf_ip_arg(const char *p, size_t n, struct spf_term *t)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = memchr(p, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - p) : n;
	bool v6 = t->kind == SPF_T_IP6;

	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, p, alen);
	buf[alen] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, t->ip) != 1)
		return -1;
	if (slash != NULL && spf_cidr_scan(slash, n - alen, v6 ? 128 : 32,
					   v6 ? &t->cidr6 : &t->cidr4) != 0)
		return -1;
	return 0;
}

static const struct {
	const char *name;
	enum spf_kind kind;
	int arg; /* 0 none, 1 optional domain-spec, 2 required */
	bool cidr;
} spf_mechs[] = {
	{ "all", SPF_T_ALL, 0, false }, { "include", SPF_T_INCLUDE, 2, false },
	{ "a", SPF_T_A, 1, true },      { "mx", SPF_T_MX, 1, true },
	{ "ptr", SPF_T_PTR, 1, false }, { "ip4", SPF_T_IP4, 2, false },
	{ "ip6", SPF_T_IP6, 2, false }, { "exists", SPF_T_EXISTS, 2, false },
};

/* One directive (P, N octets) into T; its domain-spec copied into BUF at
 * *OFF (NUL-terminated). */
static int
spf_directive(const char *p, size_t n, struct spf_term *t, char *buf,
	      size_t *off, char *err, size_t errlen)
{
	size_t i, nlen, alen;
	const char *arg;

	memset(t, 0, sizeof(*t));
	t->qual = SPF_PASS;
	t->cidr4 = 32;
	t->cidr6 = 128;
	if (n > 0 && strchr("+-~?", p[0]) != NULL && p[0] != '\0') {
		t->qual = p[0] == '+'   ? SPF_PASS
			  : p[0] == '-' ? SPF_FAIL
			  : p[0] == '~' ? SPF_SOFTFAIL
					: SPF_NEUTRAL;
		p++;
		n--;
	}
	for (nlen = 0;
	     nlen < n && (DKIM_IS_ALPHA(p[nlen]) || DKIM_IS_DIGIT(p[nlen]));
	     nlen++)
		;
	for (i = 0; i < sizeof(spf_mechs) / sizeof(spf_mechs[0]); i++)
		if (dkim_token_is(p, nlen, spf_mechs[i].name))
			break;
	if (i == sizeof(spf_mechs) / sizeof(spf_mechs[0]) ||
	    (nlen < n && p[nlen] != ':' && p[nlen] != '/')) {
		dkim_err(err, errlen, "unknown mechanism \"%.*s\"",
			 (int)(n > 40 ? 40 : n), p);
		return -1;
	}
	t->kind = spf_mechs[i].kind;
	arg = p + nlen;
	alen = n - nlen;
	if (spf_mechs[i].cidr && spf_dual_cidr(arg, &alen, t) != 0) {
		dkim_err(err, errlen, "%s: bad CIDR length", spf_mechs[i].name);
		return -1;
	}
	if (alen > 0 && arg[0] == '/') {
		dkim_err(err, errlen, "%s: unexpected '/'", spf_mechs[i].name);
		return -1;
	}
	if (alen > 0) { /* ":" argument */
		arg++;
		alen--;
		if (spf_mechs[i].arg == 0) {
			dkim_err(err, errlen, "%s takes no argument",
				 spf_mechs[i].name);
			return -1;
		}
	} else if (spf_mechs[i].arg == 2) {
		dkim_err(err, errlen, "%s needs an argument",
			 spf_mechs[i].name);
		return -1;
	}
	if (t->kind == SPF_T_IP4 || t->kind == SPF_T_IP6) {
		if (spf_ip_arg(arg, alen, t) != 0) {
			dkim_err(err, errlen, "%s: bad network \"%.*s\"",
				 spf_mechs[i].name,
				 (int)(alen > 45 ? 45 : alen), arg);
			return -1;
		}
		return 0;
	}
	if (spf_mechs[i].arg != 0 && (alen > 0 || p[nlen] == ':')) {
		if (!spf_domain_spec_ok(arg, alen)) {
			dkim_err(err, errlen, "%s: bad domain-spec",
				 spf_mechs[i].name);
			return -1;
		}
		memcpy(buf + *off, arg, alen);
		buf[*off + alen] = '\0';
		t->spec = buf + *off;
		*off += alen + 1;
	}
	return 0;
}

/*
 * spf_modifier — if the term P (N octets) is a modifier (name "=" value,
 * name = ALPHA *(ALPHA / DIGIT / "-" / "_" / ".")), take it: redirect= is
 * kept in R (its domain-spec copied into r->buf at *OFF), exp= is checked
 * only, others are ignored (RFC 7208 6).  1: taken; 0: not a modifier;
 * -1 with err: a bad value, or redirect= or exp= a second time.
 */
static int
spf_modifier(const char *p, size_t n, struct spf_record *r, size_t *off,
	     bool *seen_exp, char *err, size_t errlen)
{
	const char *v;
	size_t k = 0, vn;

	if (n > 0 && DKIM_IS_ALPHA(p[0]))
		for (k = 1;
		     k < n && (DKIM_IS_ALPHA(p[k]) || DKIM_IS_DIGIT(p[k]) ||
			       p[k] == '-' || p[k] == '_' || p[k] == '.');
		     k++)
			;
	if (k == 0 || k == n || p[k] != '=')
		return 0;
	v = p + k + 1;
	vn = n - k - 1;
	if (!spf_macro_string_ok(v, vn)) {
		dkim_err(err, errlen, "%.*s: bad value", (int)k, p);
		return -1;
	}
	if (dkim_token_is(p, k, "redirect")) {
		if (r->redirect != NULL || !spf_domain_spec_ok(v, vn)) {
			dkim_err(err, errlen, "redirect= %s",
				 r->redirect != NULL ? "twice"
						     : "without a domain");
			return -1;
		}
		memcpy(r->buf + *off, v, vn);
		r->buf[*off + vn] = '\0';
		r->redirect = r->buf + *off;
		*off += vn + 1;
	} else if (dkim_token_is(p, k, "exp")) {
		if (*seen_exp) {
			dkim_err(err, errlen, "exp= twice");
			return -1;
		}
		*seen_exp = true;
	}
	return 1;
}

/*
 * spf_record_parse — see dkim.h.  Terms are separated by one or more
 * spaces (4.6.1).  Unknown modifiers are ignored (6); redirect= and exp=
 * at most once each (6: otherwise permerror).  exp= is checked but not
 * kept (we never explain a failure to anyone).
 */
int
spf_record_parse(const char *txt, size_t len, struct spf_record *r, char *err,
		 size_t errlen)
{
	size_t i, start, n, off = 0, nterms = 0;
	bool seen_exp = false;
	const char *p;

	memset(r, 0, sizeof(*r));
	if (!spf_record_is(txt, len)) {
		dkim_err(err, errlen, "not an SPF record");
		return -1;
	}
	for (i = 6; i < len; i++)
		if (txt[i] == ' ' && i + 1 < len && txt[i + 1] != ' ')
			nterms++;
	if (nterms > SPF_TERMS_MAX) {
		dkim_err(err, errlen, "more than %d terms", SPF_TERMS_MAX);
		return -1;
	}
	if ((r->buf = malloc(len + 1)) == NULL ||
	    (nterms > 0 &&
	     (r->terms = calloc(nterms, sizeof(*r->terms))) == NULL)) {
		dkim_err(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 6; i < len;) {
		if (txt[i] == ' ') {
			i++;
			continue;
		}
		start = i;
		while (i < len && txt[i] != ' ')
			i++;
		p = txt + start;
		n = i - start;
		switch (spf_modifier(p, n, r, &off, &seen_exp, err, errlen)) {
		case 1:
			continue;
		case -1:
			goto fail;
		}
		if (r->nterms == nterms ||
		    spf_directive(p, n, &r->terms[r->nterms], r->buf, &off, err,
				  errlen) != 0)
			goto fail;
		r->nterms++;
	}
	return 0;
fail:
	spf_record_clear(r);
	return -1;
}

void
spf_record_clear(struct spf_record *r)
{
	if (r == NULL)
		return;
	free(r->terms);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------------- */
/* Macros (RFC 7208 7)                                                     */

/* The value of macro letter C (lower case) into OUT; -1 when C is not
 * allowed outside exp= (c, r, t) or the value does not fit. */
static int
spf_macro_value(char c, const struct spf_macro_env *e, char *out, size_t len,
		bool *uses_sender)
{
	const struct sockaddr_storage *ss = e->ip;
	const uint8_t *b;
	size_t i, o = 0;
	int n = 0;

	switch (c) {
	case 's':
		*uses_sender = true;
		n = snprintf(out, len, "%s@%s",
			     e->local != NULL && e->local[0] != '\0'
				 ? e->local
				 : "postmaster",
			     e->sender_domain);
		break;
	case 'l':
		*uses_sender = true;
		n = snprintf(out, len, "%s",
			     e->local != NULL && e->local[0] != '\0'
				 ? e->local
				 : "postmaster");
		break;
	case 'o':
		n = snprintf(out, len, "%s", e->sender_domain);
		break;
	case 'd':
		n = snprintf(out, len, "%s", e->domain);
		break;
	case 'h':
		n = snprintf(out, len, "%s", e->helo != NULL ? e->helo : "");
		break;
	case 'p': /* validated PTR name: we never validate one (5.5) */
		n = snprintf(out, len, "unknown");
		break;
	case 'v':
		n = snprintf(out, len, "%s",
			     ss != NULL && ss->ss_family == AF_INET6
				 ? "ip6"
				 : "in-addr");
		break;
	case 'i':
		if (ss == NULL)
			return -1;
		if (ss->ss_family == AF_INET) {
			b = (const uint8_t *)&((const struct sockaddr_in *)ss)
				->sin_addr;
			n = snprintf(out, len, "%u.%u.%u.%u", b[0], b[1], b[2],
				     b[3]);
			break;
		}
		b = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
		if (len < 64)
			return -1;
		for (i = 0; i < 16; i++) {
			out[o++] = "0123456789abcdef"[b[i] >> 4];
			out[o++] = '.';
			out[o++] = "0123456789abcdef"[b[i] & 15];
			out[o++] = i < 15 ? '.' : '\0';
		}
		return 0;
	default:
		return -1; /* c, r, t: exp= only (7.2) */
	}
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Append N octets of P to OUT at *O, URL-escaped when ESC (7.3). */
static int
spf_put(char *out, size_t len, size_t *o, const char *p, size_t n, bool esc)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		bool plain = DKIM_IS_ALPHA((char)c) || DKIM_IS_DIGIT((char)c) ||
			     c == '-' || c == '.' || c == '_' || c == '~';

		if (!esc || plain) {
			if (*o + 1 >= len)
				return -1;
			out[(*o)++] = (char)c;
		} else {
			if (*o + 3 >= len)
				return -1;
			out[(*o)++] = '%';
			out[(*o)++] = "0123456789ABCDEF"[c >> 4];
			out[(*o)++] = "0123456789ABCDEF"[c & 15];
		}
	}
	return 0;
}

/* One "%{…}" at SPEC[*i] (past "%{"), expanded into OUT. */
static int
spf_expand_one(const char *spec, size_t *i, const struct spf_macro_env *e,
	       char *out, size_t len, size_t *o, bool *uses_sender)
{
	char val[512], delims[8];
	const char *parts[128];
	size_t plen[128], np = 0, nd = 0, k, keep = 0, first;
	char letter = spec[*i];
	bool upper = letter >= 'A' && letter <= 'Z', rev = false,
	     digits = false;

	if (spf_macro_value((char)dkim_ascii_lower((unsigned char)letter), e,
			    val, sizeof(val), uses_sender) != 0)
		return -1;
	(*i)++;
	while (DKIM_IS_DIGIT(spec[*i])) {
		digits = true;
		keep = keep * 10 + (size_t)(spec[*i] - '0');
		if (keep > 128)
			keep = 129;
		(*i)++;
	}
	if (digits && keep == 0)
		return -1; /* "%{d0}" (7.1: a zero is not allowed) */
	if (spec[*i] == 'r' || spec[*i] == 'R') {
		rev = true;
		(*i)++;
	}
	while (spec[*i] != '\0' && strchr(".-+,/_=", spec[*i]) != NULL) {
		if (nd < sizeof(delims) - 1 &&
		    memchr(delims, spec[*i], nd) == NULL)
			delims[nd++] = spec[*i];
		(*i)++;
	}
	if (spec[*i] != '}')
		return -1;
	(*i)++;
	if (nd == 0)
		delims[nd++] = '.';
	delims[nd] = '\0';
	/* Split on any delimiter, reverse, keep the rightmost KEEP parts,
	 * join with dots. */
	parts[0] = val;
	for (k = 0;; k++) {
		if (val[k] == '\0' || strchr(delims, val[k]) != NULL) {
			if (np == sizeof(parts) / sizeof(parts[0]))
				return -1;
			plen[np] = (size_t)(val + k - parts[np]);
			np++;
			if (val[k] == '\0')
				break;
			parts[np] = val + k + 1;
		}
	}
	if (rev)
		for (k = 0; k < np / 2; k++) {
			const char *tp = parts[k];
			size_t tl = plen[k];

			parts[k] = parts[np - 1 - k];
			plen[k] = plen[np - 1 - k];
			parts[np - 1 - k] = tp;
			plen[np - 1 - k] = tl;
		}
	first = digits && keep < np ? np - keep : 0;
	for (k = first; k < np; k++) {
		if (k > first && spf_put(out, len, o, ".", 1, false) != 0)
			return -1;
		if (spf_put(out, len, o, parts[k], plen[k], upper) != 0)
			return -1;
	}
	return 0;
}

/*
 * spf_macro_expand — see dkim.h.  The result longer than 253 octets loses
 * labels on the left until it fits (4.8).  A trailing dot is dropped.
 */
int
spf_macro_expand(const char *spec, const struct spf_macro_env *e, char *out,
		 size_t len, bool *uses_sender)
{
	char tmp[2048];
	size_t i = 0, o = 0, skip;
	bool dummy;

	if (uses_sender == NULL)
		uses_sender = &dummy;
	if (spec == NULL || e == NULL || out == NULL || len == 0)
		return -1;
	out[0] = '\0';
	while (spec[i] != '\0') {
		if (spec[i] != '%') {
			if (spf_put(tmp, sizeof(tmp), &o, spec + i, 1, false))
				return -1;
			i++;
			continue;
		}
		switch (spec[i + 1]) {
		case '%':
			if (spf_put(tmp, sizeof(tmp), &o, "%", 1, false))
				return -1;
			i += 2;
			break;
		case '_':
			if (spf_put(tmp, sizeof(tmp), &o, " ", 1, false))
				return -1;
			i += 2;
			break;
		case '-':
			if (spf_put(tmp, sizeof(tmp), &o, "%20", 3, false))
				return -1;
			i += 2;
			break;
		case '{':
			i += 2;
			if (spf_expand_one(spec, &i, e, tmp, sizeof(tmp), &o,
					   uses_sender) != 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	tmp[o] = '\0';
	if (o > 0 && tmp[o - 1] == '.')
		tmp[--o] = '\0';
	skip = 0;
	while (o - skip > SPF_NAME_MAX) {
		const char *dot = strchr(tmp + skip, '.');

		if (dot == NULL)
			return -1;
		skip = (size_t)(dot - tmp) + 1;
	}
	if (o - skip >= len)
		return -1;
	memcpy(out, tmp + skip, o - skip + 1);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* check_host() (RFC 7208 4) on dns/                                       */

enum spf_wait { SW_NONE, SW_TXT, SW_A, SW_MX, SW_MXA, SW_EXISTS };

struct spf_frame {
	char domain[SPF_NAME_MAX + 1];
	struct spf_record rec;
	bool have_rec;
	bool via_redirect;        /* none then means permerror (6.1) */
	enum spf_result inc_qual; /* the include's qualifier (depth > 0) */
	size_t next;              /* the next term */
	/* Hashes of the domains this frame left by redirect=, for loops. */
	uint64_t left[SPF_LOOKUPS_MAX];
	size_t nleft;
};

struct spf_query {
	struct dns_resolver *r;
	struct dns_query *dq;
	void (*cb)(const struct spf_check_reply *reply, void *arg);
	void *arg;
	bool in_callback;
	char local[65];
	char sender_domain[SPF_NAME_MAX + 1];
	char helo[SPF_NAME_MAX + 1];
	struct sockaddr_storage *addrs;
	size_t naddrs, cur; /* the address under evaluation */
	/* one check_host() */
	struct spf_frame frames[SPF_DEPTH_MAX];
	size_t depth;
	unsigned lookups, voids;
	enum spf_wait wait;
	const struct spf_term *term; /* the term waiting on DNS */
	struct dns_mx_host *mx;      /* SW_MXA: the MX hosts, owned */
	size_t nmx, mx_next;
	struct spf_check_reply reply;
};

static void spf_step(struct spf_query *q);

/* An answer of TTL seconds was used.  A negative answer without an SOA
 * (TTL 0) counts as SPF_NEGATIVE_TTL_S rather than making the whole
 * result uncacheable. */
static void
spf_ttl(struct spf_query *q, uint32_t ttl, bool negative)
{
	if (negative && ttl == 0)
		ttl = SPF_NEGATIVE_TTL_S;
	if (ttl < q->reply.ttl)
		q->reply.ttl = ttl;
}

static void
spf_frames_clear(struct spf_query *q)
{
	size_t i;

	for (i = 0; i < q->depth; i++) {
		spf_record_clear(&q->frames[i].rec);
		memset(&q->frames[i], 0, sizeof(q->frames[i]));
	}
	q->depth = 0;
	free(q->mx);
	q->mx = NULL;
	q->nmx = q->mx_next = 0;
}

static void
spf_free(struct spf_query *q)
{
	spf_frames_clear(q);
	free(q->addrs);
	free(q);
}

static void
spf_deliver(struct spf_query *q)
{
	if (q->reply.ttl > SPF_TTL_MAX_S)
		q->reply.ttl = SPF_TTL_MAX_S;
	q->in_callback = true;
	q->cb(&q->reply, q->arg);
	spf_free(q);
}

/* The address under evaluation ends with RES: the next one, or the end. */
static void
spf_addr_done(struct spf_query *q, enum spf_result res)
{
	spf_frames_clear(q);
	q->reply.result = res;
	if (res != SPF_PASS || q->cur + 1 == q->naddrs) {
		q->reply.addr_index = q->cur;
		spf_deliver(q);
		return;
	}
	q->cur++;
	q->lookups = q->voids = 0;
	q->reply.err[0] = '\0';
	/* The first frame again, for the next address. */
	snprintf(q->frames[0].domain, sizeof(q->frames[0].domain), "%s",
		 q->sender_domain);
	q->depth = 1;
	spf_step(q);
}

/* An error ends check_host() for this address, whatever the depth. */
static void spf_abort(struct spf_query *q, enum spf_result res, const char *fmt,
		      ...) __attribute__((format(printf, 3, 4)));

static void
spf_abort(struct spf_query *q, enum spf_result res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(q->reply.err, sizeof(q->reply.err), fmt, ap);
	va_end(ap);
	spf_addr_done(q, res);
}

/* The top frame's check_host() returns RES (4.7, 5.2). */
static void
spf_frame_done(struct spf_query *q, enum spf_result res)
{
	struct spf_frame *f = &q->frames[q->depth - 1];
	enum spf_result qual = f->inc_qual;

	if (res == SPF_NONE && f->via_redirect) {
		spf_abort(q, SPF_PERMERROR, "redirect to %s: no SPF record",
			  f->domain);
		return;
	}
	if (q->depth == 1) {
		spf_addr_done(q, res);
		return;
	}
	/* An include returns to its parent (5.2). */
	switch (res) {
	case SPF_PASS:
		break;
	case SPF_FAIL:
	case SPF_SOFTFAIL:
	case SPF_NEUTRAL:
		break;
	case SPF_TEMPERROR:
		spf_addr_done(q, SPF_TEMPERROR);
		return;
	case SPF_NONE:
		spf_abort(q, SPF_PERMERROR, "include:%s: no SPF record",
			  f->domain);
		return;
	case SPF_PERMERROR:
		spf_addr_done(q, SPF_PERMERROR);
		return;
	}
	spf_record_clear(&f->rec);
	q->depth--;
	if (res == SPF_PASS) {
		spf_frame_done(q, qual);
		return;
	}
	spf_step(q);
}

static int
spf_count_lookup(struct spf_query *q)
{
	if (++q->lookups > SPF_LOOKUPS_MAX) {
		spf_abort(q, SPF_PERMERROR, "more than %d DNS lookups",
			  SPF_LOOKUPS_MAX);
		return -1;
	}
	return 0;
}

static int
spf_count_void(struct spf_query *q)
{
	if (++q->voids > SPF_VOIDS_MAX) {
		spf_abort(q, SPF_PERMERROR, "more than %d void lookups",
			  SPF_VOIDS_MAX);
		return -1;
	}
	return 0;
}

/* The target of term T (its expanded domain-spec, or the current domain)
 * into OUT; -1 after aborting with permerror. */
static int
spf_target(struct spf_query *q, const char *spec, char *out, size_t len)
{
	struct spf_frame *f = &q->frames[q->depth - 1];
	struct spf_macro_env e = {
		.local = q->local,
		.sender_domain = q->sender_domain,
		.domain = f->domain,
		.ip = &q->addrs[q->cur],
		.helo = q->helo,
	};
	bool uses = false;

	if (spec == NULL) {
		snprintf(out, len, "%s", f->domain);
		return 0;
	}
	if (spf_macro_expand(spec, &e, out, len, &uses) != 0) {
		spf_abort(q, SPF_PERMERROR, "bad macro in a domain-spec");
		return -1;
	}
	if (uses)
		q->reply.sender_dependent = true;
	return 0;
}

static bool
spf_prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Does address SS fall in NET/bits (same family only)? */
static bool
spf_addr_in(const struct sockaddr_storage *ss, int family, const uint8_t *net,
	    unsigned cidr4, unsigned cidr6)
{
	if (ss->ss_family != family)
		return false;
	if (family == AF_INET)
		return spf_prefix_match(
		    (const uint8_t *)&((const struct sockaddr_in *)ss)
			->sin_addr,
		    net, cidr4);
	return spf_prefix_match(
	    ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr, net, cidr6);
}

static bool
spf_addrs_match(struct spf_query *q, const struct dns_addr_reply *rep,
		const struct spf_term *t)
{
	const struct sockaddr_storage *me = &q->addrs[q->cur];
	size_t i;

	for (i = 0; i < rep->naddrs; i++)
		if (rep->addrs[i].ss_family == me->ss_family &&
		    spf_addr_in(me, me->ss_family, spf_sa_bytes(&rep->addrs[i]),
				t->cidr4, t->cidr6))
			return true;
	return false;
}

static void spf_txt_cb(const struct dns_txt_reply *rep, void *arg);
static void spf_addr_cb(const struct dns_addr_reply *rep, void *arg);
static void spf_mx_cb(const struct dns_mx_reply *rep, void *arg);

/* A term matched: the frame returns its qualifier. */
static void
spf_match(struct spf_query *q, const struct spf_term *t)
{
	spf_frame_done(q, t->qual);
}

static uint64_t
spf_name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a, case folded */

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)dkim_ascii_lower((unsigned char)*s)) *
		    1099511628211ull;
	return h;
}

/* Is DOMAIN being evaluated, or left by redirect=, on the way here? */
static bool
spf_on_stack(const struct spf_query *q, const char *domain)
{
	uint64_t h = spf_name_hash(domain);
	size_t i, j;

	for (i = 0; i < q->depth; i++) {
		if (strcasecmp(q->frames[i].domain, domain) == 0)
			return true;
		for (j = 0; j < q->frames[i].nleft; j++)
			if (q->frames[i].left[j] == h)
				return true;
	}
	return false;
}

/*
 * spf_step — run the top frame until it needs DNS or ends.  Each pass
 * either returns after starting one lookup, or ends a frame (which may
 * call spf_step again, bounded by the lookup limit).  Longer than most:
 * one switch over the mechanisms, in the order of RFC 7208 5, so that
 * each can be read against its section.
 */
static void
spf_step(struct spf_query *q)
{
	struct spf_frame *f;
	const struct spf_term *t;
	char target[SPF_NAME_MAX + 1];
	int fam;

	for (;;) {
		f = &q->frames[q->depth - 1];
		if (!f->have_rec) {
			q->wait = SW_TXT;
			q->dq = dns_txt_lookup(q->r, f->domain, spf_txt_cb, q);
			if (q->dq == NULL)
				spf_abort(q, SPF_TEMPERROR, "out of memory");
			return;
		}
		if (f->next == f->rec.nterms) {
			if (f->rec.redirect == NULL) {
				spf_frame_done(q, SPF_NEUTRAL);
				return;
			}
			if (spf_count_lookup(q) != 0 ||
			    spf_target(q, f->rec.redirect, target,
				       sizeof(target)) != 0)
				return;
			if (spf_on_stack(q, target)) {
				spf_abort(q, SPF_PERMERROR,
					  "redirect loop at %s", target);
				return;
			}
			if (f->nleft < SPF_LOOKUPS_MAX)
				f->left[f->nleft++] = spf_name_hash(f->domain);
			spf_record_clear(&f->rec);
			f->have_rec = false;
			f->via_redirect = true;
			f->next = 0;
			snprintf(f->domain, sizeof(f->domain), "%s", target);
			continue;
		}
		t = &f->rec.terms[f->next++];
		q->term = t;
		fam = q->addrs[q->cur].ss_family;
		switch (t->kind) {
		case SPF_T_ALL:
			spf_match(q, t);
			return;
		case SPF_T_IP4:
		case SPF_T_IP6:
			if (spf_addr_in(&q->addrs[q->cur],
					t->kind == SPF_T_IP4 ? AF_INET
							     : AF_INET6,
					t->ip, t->cidr4, t->cidr6)) {
				spf_match(q, t);
				return;
			}
			continue;
		case SPF_T_PTR:
			/* 5.5: "SHOULD NOT be used"; counted, never
			 * matches (no reverse lookups from here). */
			if (spf_count_lookup(q) != 0)
				return;
			continue;
		case SPF_T_INCLUDE:
			if (spf_count_lookup(q) != 0 ||
			    spf_target(q, t->spec, target, sizeof(target)) != 0)
				return;
			if (spf_on_stack(q, target)) {
				spf_abort(q, SPF_PERMERROR,
					  "include loop at %s", target);
				return;
			}
			if (q->depth == SPF_DEPTH_MAX) {
				spf_abort(q, SPF_PERMERROR,
					  "includes too deep");
				return;
			}
			f = &q->frames[q->depth++];
			memset(f, 0, sizeof(*f));
			snprintf(f->domain, sizeof(f->domain), "%s", target);
			f->inc_qual = t->qual;
			continue;
		case SPF_T_A:
		case SPF_T_EXISTS:
			if (spf_count_lookup(q) != 0 ||
			    spf_target(q, t->spec, target, sizeof(target)) != 0)
				return;
			q->wait = t->kind == SPF_T_A ? SW_A : SW_EXISTS;
			q->dq = dns_addr_lookup(
			    q->r, target,
			    t->kind == SPF_T_EXISTS ? AF_INET : fam,
			    spf_addr_cb, q);
			if (q->dq == NULL)
				spf_abort(q, SPF_TEMPERROR, "out of memory");
			return;
		case SPF_T_MX:
			if (spf_count_lookup(q) != 0 ||
			    spf_target(q, t->spec, target, sizeof(target)) != 0)
				return;
			q->wait = SW_MX;
			q->dq = dns_mx_lookup(q->r, target, spf_mx_cb, q);
			if (q->dq == NULL)
				spf_abort(q, SPF_TEMPERROR, "out of memory");
			return;
		}
	}
}

/* The record of the top frame (4.4, 4.5). */
static void
spf_txt_cb(const struct dns_txt_reply *rep, void *arg)
{
	struct spf_query *q = arg;
	struct spf_frame *f = &q->frames[q->depth - 1];
	char err[160];
	size_t i, pick = 0, n = 0;

	q->dq = NULL;
	q->wait = SW_NONE;
	switch (rep->result) {
	case DNS_OK:
		spf_ttl(q, rep->ttl, false);
		for (i = 0; i < rep->ntxts; i++)
			if (spf_record_is(rep->txts[i], rep->lens[i])) {
				n++;
				pick = i;
			}
		if (n > 1) {
			spf_abort(q, SPF_PERMERROR, "%s: %zu SPF records",
				  f->domain, n);
			return;
		}
		if (n == 1) {
			if (memchr(rep->txts[pick], '\0', rep->lens[pick]) !=
				NULL ||
			    spf_record_parse(rep->txts[pick], rep->lens[pick],
					     &f->rec, err, sizeof(err)) != 0) {
				spf_abort(q, SPF_PERMERROR, "%s: %s", f->domain,
					  memchr(rep->txts[pick], '\0',
						 rep->lens[pick]) != NULL
					      ? "NUL in the record"
					      : err);
				return;
			}
			f->have_rec = true;
			spf_step(q);
			return;
		}
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
	case DNS_NULLMX:
	case DNS_BADNAME:
		spf_ttl(q, rep->ttl, true);
		break;
	case DNS_TEMPFAIL:
	default:
		spf_abort(q, SPF_TEMPERROR, "%s: %s", f->domain,
			  rep->err[0] ? rep->err : dns_result_str(rep->result));
		return;
	}
	spf_frame_done(q, SPF_NONE);
}

/* a, exists, and one MX host's addresses. */
static void
spf_addr_cb(const struct dns_addr_reply *rep, void *arg)
{
	struct spf_query *q = arg;
	const struct spf_term *t = q->term;
	enum spf_wait w = q->wait;

	q->dq = NULL;
	q->wait = SW_NONE;
	if (rep->result == DNS_TEMPFAIL) {
		spf_abort(q, SPF_TEMPERROR, "address lookup: %s",
			  rep->err[0] ? rep->err : "temporary failure");
		return;
	}
	spf_ttl(q, rep->ttl, rep->result != DNS_OK);
	if (rep->result != DNS_OK || rep->naddrs == 0) {
		if (w != SW_MXA && spf_count_void(q) != 0)
			return;
	} else if (w == SW_EXISTS || spf_addrs_match(q, rep, t)) {
		free(q->mx);
		q->mx = NULL;
		spf_match(q, t);
		return;
	}
	if (w == SW_MXA && q->mx_next < q->nmx) {
		q->wait = SW_MXA;
		q->dq =
		    dns_addr_lookup(q->r, q->mx[q->mx_next++].name,
				    q->addrs[q->cur].ss_family, spf_addr_cb, q);
		if (q->dq == NULL)
			spf_abort(q, SPF_TEMPERROR, "out of memory");
		return;
	}
	free(q->mx);
	q->mx = NULL;
	spf_step(q);
}

/* mx: the hosts, then each one's addresses (5.4).  No implicit MX. */
static void
spf_mx_cb(const struct dns_mx_reply *rep, void *arg)
{
	struct spf_query *q = arg;
	size_t i;

	q->dq = NULL;
	q->wait = SW_NONE;
	if (rep->result == DNS_TEMPFAIL) {
		spf_abort(q, SPF_TEMPERROR, "MX lookup: %s",
			  rep->err[0] ? rep->err : "temporary failure");
		return;
	}
	spf_ttl(q, rep->ttl, rep->result != DNS_OK || rep->implicit);
	if (rep->result != DNS_OK || rep->implicit || rep->nhosts == 0) {
		if (rep->result != DNS_NULLMX && spf_count_void(q) != 0)
			return;
		spf_step(q);
		return;
	}
	if (rep->nhosts > SPF_MX_HOSTS_MAX) {
		spf_abort(q, SPF_PERMERROR, "more than %d MX hosts",
			  SPF_MX_HOSTS_MAX);
		return;
	}
	/* The names are only valid during this call: one allocation holds
	 * the array and copies of them (freed with q->mx). */
	{
		size_t total = 0, off = 0;
		char *names;

		for (i = 0; i < rep->nhosts; i++)
			total += strlen(rep->hosts[i].name) + 1;
		q->mx = malloc(rep->nhosts * sizeof(*q->mx) + total);
		if (q->mx == NULL) {
			spf_abort(q, SPF_TEMPERROR, "out of memory");
			return;
		}
		names = (char *)(q->mx + rep->nhosts);
		for (i = 0; i < rep->nhosts; i++) {
			size_t n = strlen(rep->hosts[i].name) + 1;

			memcpy(names + off, rep->hosts[i].name, n);
			q->mx[i].name = names + off;
			q->mx[i].pref = rep->hosts[i].pref;
			off += n;
		}
	}
	q->nmx = rep->nhosts;
	q->mx_next = 1;
	q->wait = SW_MXA;
	q->dq = dns_addr_lookup(q->r, q->mx[0].name, q->addrs[q->cur].ss_family,
				spf_addr_cb, q);
	if (q->dq == NULL)
		spf_abort(q, SPF_TEMPERROR, "out of memory");
}

/*
 * spf_check — see dkim.h.
 */
struct spf_query *
spf_check(struct dns_resolver *r, const struct spf_check_params *p,
	  void (*cb)(const struct spf_check_reply *reply, void *arg), void *arg)
{
	struct spf_query *q;
	size_t i;

	if (r == NULL || p == NULL || cb == NULL || p->domain == NULL ||
	    p->naddrs == 0 || p->addrs == NULL)
		return NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->addrs = calloc(p->naddrs, sizeof(*q->addrs))) == NULL) {
		free(q);
		return NULL;
	}
	for (i = 0; i < p->naddrs; i++)
		q->addrs[i] = p->addrs[i];
	q->naddrs = p->naddrs;
	q->r = r;
	q->cb = cb;
	q->arg = arg;
	q->reply.ttl = UINT32_MAX;
	snprintf(q->local, sizeof(q->local), "%s",
		 p->local != NULL ? p->local : "");
	if (strlen(p->local != NULL ? p->local : "") >= sizeof(q->local))
		q->local[0] = '\0'; /* over 64 octets: not a valid local-part */
	snprintf(q->helo, sizeof(q->helo), "%s",
		 p->helo != NULL ? p->helo : "");
	for (i = 0; p->domain[i] != '\0' && i < SPF_NAME_MAX; i++)
		q->sender_domain[i] =
		    (char)dkim_ascii_lower((unsigned char)p->domain[i]);
	q->sender_domain[i] = '\0';
	/* A name dns/ cannot ask (too long, empty) fails there as BADNAME:
	 * the callback still comes from the loop, never inline. */
	snprintf(q->frames[0].domain, sizeof(q->frames[0].domain), "%s",
		 p->domain[i] == '\0' ? q->sender_domain : "");
	q->depth = 1;
	/* What spf_step() would do first, without its inline error path. */
	q->wait = SW_TXT;
	q->dq = dns_txt_lookup(r, q->frames[0].domain, spf_txt_cb, q);
	if (q->dq == NULL) {
		free(q->addrs);
		free(q);
		return NULL;
	}
	return q;
}

void
spf_cancel(struct spf_query *q)
{
	if (q == NULL || q->in_callback)
		return;
	if (q->dq != NULL)
		dns_cancel(q->dq);
	spf_free(q);
}
