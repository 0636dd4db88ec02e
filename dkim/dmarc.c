/*
 * dmarc.c — DMARC (RFC 7489): the From domain (RFC 5322/6854 syntax), the
 * record parser, org domains (libpsl) and alignment, and the _dmarc TXT
 * lookup with the org-domain fallback of 6.6.3 through dns/.
 * Owns: the loaded public suffix list, struct dmarc_query.  Must not: block,
 * call back from inside dmarc_policy_lookup(), read outside given lengths.
 * Thread: parsing, org domains, alignment on any thread after dmarc_init();
 * a lookup on its resolver's loop.  Invariant: a query waits on at most one
 * dns_query and is freed exactly once (after its callback, or on cancel).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpsl.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"
#include "dkim/dmarc_int.h"
#include "dns/dns.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define DMARC_DOMAIN_MAX 253 /* octets of a domain name, no trailing dot */
#define DMARC_LABEL_MAX  63
#define DMARC_PREFIX     "_dmarc."
#define DMARC_NAME_BYTES (sizeof(DMARC_PREFIX) - 1 + DMARC_DOMAIN_MAX + 1)
#define DMARC_PCT_MAX    100

/* The list set by dmarc_init(); NULL: libpsl's built-in list. */
static psl_ctx_t *dmarc_psl;

/* dmarc_lower_copy — IN lower-cased (ASCII only) into OUT (LEN bytes);
 * -1 when it does not fit. */
static int
dmarc_lower_copy(const char *in, char *out, size_t len)
{
	size_t i, n = strlen(in);

	if (n >= len)
		return -1;
	for (i = 0; i <= n; i++)
		out[i] = (char)dkim_ascii_lower((unsigned char)in[i]);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The reader (dkim/dmarc_int.h)                                           */

void
dmarc_rd_init(struct dmarc_rd *r, const void *data, size_t len)
{
	r->data = data;
	r->len = data != NULL ? len : 0;
	r->off = 0;
}

int
dmarc_rd_peek(const struct dmarc_rd *r, size_t at, uint8_t *c)
{
	if (r->len - r->off <= at)
		return -1;
	*c = r->data[r->off + at];
	return 0;
}

bool
dmarc_rd_is(const struct dmarc_rd *r, size_t at, uint8_t want)
{
	uint8_t c;

	return dmarc_rd_peek(r, at, &c) == 0 && c == want;
}

int
dmarc_rd_skip(struct dmarc_rd *r, size_t n)
{
	if (n > r->len - r->off)
		return -1;
	r->off += n;
	return 0;
}

size_t
dmarc_rd_span(struct dmarc_rd *r, bool (*in)(uint8_t))
{
	size_t start = r->off;

	while (r->off < r->len && in(r->data[r->off]))
		r->off++;
	return r->off - start;
}

/* ---------------------------------------------------------------------- */
/* Policy records (RFC 7489 6.3, 6.4)                                      */

enum dmarc_rec {
	DMARC_REC_OK,
	DMARC_REC_NOT_DMARC, /* does not start with v=DMARC1 */
	DMARC_REC_NO_POLICY, /* v=DMARC1, but p= missing, bad, or repeated */
};

struct dmarc_tag {
	const uint8_t *name, *val;
	size_t name_len, val_len;
	bool ok; /* false: not "name = value" (skipped) */
};

enum dmarc_tag_id { TAG_V, TAG_P, TAG_SP, TAG_ADKIM, TAG_ASPF, TAG_PCT };

static const char *const dmarc_tag_names[] = {
	[TAG_V] = "v",         [TAG_P] = "p",       [TAG_SP] = "sp",
	[TAG_ADKIM] = "adkim", [TAG_ASPF] = "aspf", [TAG_PCT] = "pct",
};

/* The record may hold CR and LF (several character-strings, FWS). */
static bool
dmarc_rec_is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Between tag-specs: WSP and empty specs. */
static bool
dmarc_rec_is_sep(uint8_t c)
{
	return dmarc_rec_is_wsp(c) || c == ';';
}

/* A tag name: ALPHA *(ALPHA / DIGIT / "_"), the first octet checked apart. */
static bool
dmarc_rec_is_name(uint8_t c)
{
	return DKIM_IS_ALPHA(c) || DKIM_IS_DIGIT(c) || c == '_';
}

static bool
dmarc_rec_is_value(uint8_t c)
{
	return c != ';';
}

/*
 * dmarc_rec_tag_next — the next tag-spec "name = value" at the cursor,
 * and the cursor past its ';'.  Empty specs (";;") are skipped, except
 * before the first tag (FIRST): the record must start with one.  A spec
 * that is not "name=value" comes back with ok = false.  Returns 1 with a
 * tag, 0 at the end.
 */
static int
dmarc_rec_tag_next(struct dmarc_rd *r, struct dmarc_tag *t, bool first)
{
	size_t start, end;

	memset(t, 0, sizeof(*t));
	dmarc_rd_span(r, first ? dmarc_rec_is_wsp : dmarc_rec_is_sep);
	if (r->off == r->len)
		return 0;
	start = r->off;
	t->name_len = dmarc_rd_span(r, dmarc_rec_is_name);
	t->name = r->data + start;
	dmarc_rd_span(r, dmarc_rec_is_wsp);
	t->ok = t->name_len > 0 && DKIM_IS_ALPHA(t->name[0]) &&
		dmarc_rd_is(r, 0, '=') && dmarc_rd_skip(r, 1) == 0;
	if (t->ok)
		dmarc_rd_span(r, dmarc_rec_is_wsp);
	/* The value runs to the next ';'; trailing WSP is not part of it. */
	start = r->off;
	end = start + dmarc_rd_span(r, dmarc_rec_is_value);
	while (end > start && dmarc_rec_is_wsp(r->data[end - 1]))
		end--;
	t->val = r->data + start;
	t->val_len = end - start;
	/* Past the ';'; at the end there is none and the cursor stays. */
	(void)dmarc_rd_skip(r, 1);
	return 1;
}

static int
dmarc_policy_parse(const struct dmarc_tag *t, enum dmarc_policy *p)
{
	if (dkim_token_is(t->val, t->val_len, "none"))
		*p = DMARC_P_NONE;
	else if (dkim_token_is(t->val, t->val_len, "quarantine"))
		*p = DMARC_P_QUARANTINE;
	else if (dkim_token_is(t->val, t->val_len, "reject"))
		*p = DMARC_P_REJECT;
	else
		return -1;
	return 0;
}

/* "r" or "s"; anything else keeps the default (relaxed). */
static bool
dmarc_mode_strict(const struct dmarc_tag *t)
{
	return dkim_token_is(t->val, t->val_len, "s");
}

/* pct = 1*3DIGIT, 0..100; anything else keeps the default (100). */
static unsigned
dmarc_pct_parse(const struct dmarc_tag *t)
{
	unsigned v = 0;
	size_t i;

	if (t->val_len == 0 || t->val_len > 3)
		return DMARC_PCT_MAX;
	for (i = 0; i < t->val_len; i++) {
		if (!DKIM_IS_DIGIT(t->val[i]))
			return DMARC_PCT_MAX;
		v = v * 10 + (unsigned)(t->val[i] - '0');
	}
	return v <= DMARC_PCT_MAX ? v : DMARC_PCT_MAX;
}

/*
 * dmarc_rec_scan — parse TXT (LEN octets) into R (always initialised with
 * the defaults).  Tag names and the values of v, p, sp, adkim, aspf are
 * compared with ASCII case folded.  A tag we interpret that occurs twice
 * makes the record unusable (RFC 6376 3.2, whose tag-list RFC 7489 6.3
 * adopts): which of the two a receiver would apply is anyone's guess.
 */
static enum dmarc_rec
dmarc_rec_scan(const char *txt, size_t len, struct dmarc_record *r)
{
	struct dmarc_rd rd;
	struct dmarc_tag t;
	enum dmarc_policy sp = DMARC_P_NONE;
	bool p_ok = false, sp_ok = false, dup = false;
	unsigned seen = 1u << TAG_V, id;

	memset(r, 0, sizeof(*r));
	r->pct = DMARC_PCT_MAX;
	if (txt == NULL && len != 0)
		return DMARC_REC_NOT_DMARC;
	dmarc_rd_init(&rd, txt, len);
	if (dmarc_rec_tag_next(&rd, &t, true) != 1 || !t.ok ||
	    !dkim_token_is(t.name, t.name_len, "v") ||
	    !dkim_token_is(t.val, t.val_len, "DMARC1"))
		return DMARC_REC_NOT_DMARC;
	while (dmarc_rec_tag_next(&rd, &t, false) == 1) {
		if (!t.ok)
			continue;
		for (id = 0;
		     id < sizeof(dmarc_tag_names) / sizeof(dmarc_tag_names[0]);
		     id++)
			if (dkim_token_is(t.name, t.name_len,
					  dmarc_tag_names[id]))
				break;
		if (id == sizeof(dmarc_tag_names) / sizeof(dmarc_tag_names[0]))
			continue; /* unknown tags are ignored (6.3) */
		if (seen & (1u << id))
			dup = true;
		seen |= 1u << id;
		switch ((enum dmarc_tag_id)id) {
		case TAG_V:
			break;
		case TAG_P:
			p_ok = dmarc_policy_parse(&t, &r->p) == 0;
			break;
		case TAG_SP:
			sp_ok = dmarc_policy_parse(&t, &sp) == 0;
			break;
		case TAG_ADKIM:
			r->adkim_strict = dmarc_mode_strict(&t);
			break;
		case TAG_ASPF:
			r->aspf_strict = dmarc_mode_strict(&t);
			break;
		case TAG_PCT:
			r->pct = dmarc_pct_parse(&t);
			break;
		}
	}
	if (!p_ok || dup) {
		memset(r, 0, sizeof(*r)); /* no half-parsed record leaks out */
		r->pct = DMARC_PCT_MAX;
		return DMARC_REC_NO_POLICY;
	}
	r->sp_set = sp_ok;
	r->sp = sp_ok ? sp : r->p;
	return DMARC_REC_OK;
}

/*
 * dmarc_record_parse — see dkim.h.  Also -1 when a tag we interpret (v, p,
 * sp, adkim, aspf, pct) occurs twice.  On -1, R holds the defaults (p=none,
 * pct=100).  Any thread.
 */
int
dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r)
{
	return dmarc_rec_scan(txt, len, r) == DMARC_REC_OK ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* The From field (RFC 5322 3.4; groups per RFC 6854; UTF-8 per RFC 6532)  */

enum from_tok_kind { FT_END, FT_ATOM, FT_QSTR, FT_DLIT, FT_SPECIAL };

struct from_tok {
	enum from_tok_kind kind;
	uint8_t c;        /* FT_SPECIAL: one of < > @ , ; : . */
	const uint8_t *p; /* FT_ATOM: its octets */
	size_t len;
};

struct from_parser {
	struct dmarc_rd rd;
	struct from_tok tok; /* the lookahead */
	size_t naddrs;
	char domain[DMARC_DOMAIN_MAX + 1]; /* of the first address */
	const char *why;
};

#define FROM_IS(p, ch) ((p)->tok.kind == FT_SPECIAL && (p)->tok.c == (ch))

/* atext (RFC 5322 3.2.3) plus UTF-8 octets (RFC 6532 3.2). */
static bool
from_is_atext(uint8_t c)
{
	return c >= 0x80 || DKIM_IS_ALPHA(c) || DKIM_IS_DIGIT(c) ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* WSP (RFC 5234). */
static bool
from_is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* At a CR: a fold (CRLF WSP) is skipped and is whitespace; anything else
 * is a bare CR. */
static int
from_fold(struct from_parser *p)
{
	uint8_t c;

	if (dmarc_rd_is(&p->rd, 0, '\r') && dmarc_rd_is(&p->rd, 1, '\n') &&
	    dmarc_rd_peek(&p->rd, 2, &c) == 0 && from_is_wsp(c) &&
	    dmarc_rd_skip(&p->rd, 3) == 0)
		return 0;
	p->why = "bare CR or LF";
	return -1;
}

/*
 * from_quoted_pair — at a backslash: skip it and the octet it quotes (any
 * but NUL, CR, LF: RFC 5322 3.2.1 and its obsolete form, minus what no
 * verifier agrees on).
 */
static int
from_quoted_pair(struct from_parser *p)
{
	uint8_t c;

	if (dmarc_rd_peek(&p->rd, 1, &c) != 0 || c == '\0' || c == '\r' ||
	    c == '\n' || dmarc_rd_skip(&p->rd, 2) != 0) {
		p->why = "bad quoted-pair";
		return -1;
	}
	return 0;
}

/*
 * from_delimited — at OPEN ('(' comment, nesting; '"' quoted string; '['
 * domain literal): the cursor past the matching CLOSE.  Folds and
 * quoted-pairs inside are skipped; NUL and bare CR/LF are refused.
 */
static int
from_delimited(struct from_parser *p, uint8_t open, uint8_t close,
	       const char *unterminated)
{
	size_t depth = 1;
	uint8_t c;

	if (dmarc_rd_skip(&p->rd, 1) != 0) { /* OPEN */
		p->why = unterminated;
		return -1;
	}
	for (;;) {
		if (dmarc_rd_peek(&p->rd, 0, &c) != 0) {
			p->why = unterminated;
			return -1;
		}
		if (c == '\\') {
			if (from_quoted_pair(p) != 0)
				return -1;
			continue;
		}
		if (c == '\r' || c == '\n') {
			if (from_fold(p) != 0)
				return -1;
			continue;
		}
		if (c == '\0') {
			p->why = "NUL octet";
			return -1;
		}
		if (dmarc_rd_skip(&p->rd, 1) != 0) { /* C, just peeked */
			p->why = unterminated;
			return -1;
		}
		if (c == close && --depth == 0)
			return 0;
		if (c == open && open == '(')
			depth++;
		else if (open == '[' && c == '[') {
			p->why = "'[' inside a domain literal";
			return -1;
		}
	}
}

/* from_cfws — skip whitespace, folds and comments. */
static int
from_cfws(struct from_parser *p)
{
	uint8_t c;

	while (dmarc_rd_peek(&p->rd, 0, &c) == 0) {
		if (c == ' ' || c == '\t')
			dmarc_rd_span(&p->rd, from_is_wsp);
		else if (c == '\r' || c == '\n') {
			if (from_fold(p) != 0)
				return -1;
		} else if (c == '(') {
			if (from_delimited(p, '(', ')',
					   "unterminated comment") != 0)
				return -1;
		} else
			break;
	}
	return 0;
}

/* from_next — the next token into p->tok. */
static int
from_next(struct from_parser *p)
{
	struct from_tok *t = &p->tok;
	size_t start;
	uint8_t c;

	memset(t, 0, sizeof(*t));
	if (from_cfws(p) != 0)
		return -1;
	if (dmarc_rd_peek(&p->rd, 0, &c) != 0) {
		t->kind = FT_END;
		return 0;
	}
	start = p->rd.off;
	if (c == '"' || c == '[') {
		if (from_delimited(p, c, c == '"' ? '"' : ']',
				   c == '"'
				       ? "unterminated quoted string"
				       : "unterminated domain literal") != 0)
			return -1;
		t->kind = c == '"' ? FT_QSTR : FT_DLIT;
	} else if (c != '\0' && strchr("<>@,;:.", c) != NULL &&
		   dmarc_rd_skip(&p->rd, 1) == 0) {
		t->kind = FT_SPECIAL;
		t->c = c;
	} else if (from_is_atext(c)) {
		dmarc_rd_span(&p->rd, from_is_atext);
		t->kind = FT_ATOM;
	} else {
		p->why = c == ')'    ? "unbalanced ')'"
			 : c == ']'  ? "unbalanced ']'"
			 : c == '\\' ? "backslash outside quotes"
				     : "control character";
		return -1;
	}
	t->p = p->rd.data + start;
	t->len = p->rd.off - start;
	return 0;
}

/*
 * from_words — a run of words (atoms, quoted strings) and dots: a display
 * name (obs-phrase allows the dots), or a local-part when '@' follows.
 * *NWORDS counts the words; *LOCAL_OK turns false when two words meet
 * without a dot between them, which a phrase allows and a local-part not.
 */
static int
from_words(struct from_parser *p, size_t *nwords, bool *local_ok)
{
	bool prev_word = false;

	*nwords = 0;
	*local_ok = true;
	while (p->tok.kind == FT_ATOM || p->tok.kind == FT_QSTR ||
	       FROM_IS(p, '.')) {
		if (p->tok.kind != FT_SPECIAL) {
			if (prev_word)
				*local_ok = false;
			prev_word = true;
			(*nwords)++;
		} else
			prev_word = false;
		if (from_next(p) != 0)
			return -1;
	}
	return 0;
}

/*
 * from_domain — domain = atom *("." atom), CFWS allowed around the dots
 * (obs-domain), into OUT lower-cased (ASCII only; UTF-8 octets are kept as
 * they are).  Each label 1..63 octets of letters, digits, '-', '_' or
 * UTF-8; 253 octets at most; no trailing dot; no address literal.
 */
static int
from_domain(struct from_parser *p, char out[DMARC_DOMAIN_MAX + 1])
{
	size_t n = 0, i;
	uint8_t c;

	if (p->tok.kind == FT_DLIT) {
		p->why = "address literal as domain";
		return -1;
	}
	for (;;) {
		if (p->tok.kind != FT_ATOM) {
			p->why = n == 0 ? "address without a domain"
					: "empty label in the domain";
			return -1;
		}
		if (p->tok.len > DMARC_LABEL_MAX) {
			p->why = "domain label longer than 63 octets";
			return -1;
		}
		if (n + (n > 0) + p->tok.len > DMARC_DOMAIN_MAX) {
			p->why = "domain longer than 253 octets";
			return -1;
		}
		if (n > 0)
			out[n++] = '.';
		for (i = 0; i < p->tok.len; i++) {
			c = p->tok.p[i];
			if (!(c >= 0x80 || DKIM_IS_ALPHA(c) ||
			      DKIM_IS_DIGIT(c) || c == '-' || c == '_')) {
				p->why = "invalid character in the domain";
				return -1;
			}
			out[n++] = (char)dkim_ascii_lower(c);
		}
		if (from_next(p) != 0)
			return -1;
		if (!FROM_IS(p, '.'))
			break;
		if (from_next(p) != 0)
			return -1;
	}
	out[n] = '\0';
	return 0;
}

/* from_addr_domain — the domain of an address: counted, the first kept. */
static int
from_addr_domain(struct from_parser *p)
{
	char dom[DMARC_DOMAIN_MAX + 1];

	if (from_domain(p, dom) != 0)
		return -1;
	if (p->naddrs++ == 0)
		memcpy(p->domain, dom, strlen(dom) + 1);
	return 0;
}

/* from_local_part — the words before '@'; the cursor past the '@'. */
static int
from_local_part(struct from_parser *p, size_t nwords, bool local_ok)
{
	if (!FROM_IS(p, '@')) {
		p->why = "address without a domain";
		return -1;
	}
	if (nwords == 0) {
		p->why = "address without a local-part";
		return -1;
	}
	if (!local_ok) {
		p->why = "words without a dot between them before '@'";
		return -1;
	}
	return from_next(p);
}

/*
 * from_angle_addr — at '<': [obs-route] addr-spec '>'.  The obsolete route
 * ("<@relay.example,@b.example:user@example.com>") is checked and dropped.
 */
static int
from_angle_addr(struct from_parser *p)
{
	char route[DMARC_DOMAIN_MAX + 1];
	size_t nwords;
	bool local_ok;

	if (from_next(p) != 0)
		return -1;
	if (FROM_IS(p, '@') || FROM_IS(p, ',')) {
		for (;;) {
			while (FROM_IS(p, ','))
				if (from_next(p) != 0)
					return -1;
			if (!FROM_IS(p, '@'))
				break;
			if (from_next(p) != 0 || from_domain(p, route) != 0)
				return -1;
		}
		if (!FROM_IS(p, ':')) {
			p->why = "malformed route in '<>'";
			return -1;
		}
		if (from_next(p) != 0)
			return -1;
	}
	if (FROM_IS(p, '>')) {
		p->why = "null address <>";
		return -1;
	}
	if (from_words(p, &nwords, &local_ok) != 0 ||
	    from_local_part(p, nwords, local_ok) != 0 ||
	    from_addr_domain(p) != 0)
		return -1;
	if (!FROM_IS(p, '>')) {
		p->why = "missing '>'";
		return -1;
	}
	return from_next(p);
}

static int from_list(struct from_parser *p, bool in_group);

/*
 * from_address — mailbox (name-addr or addr-spec) or group.  What follows
 * the leading words decides: '<' name-addr, '@' addr-spec, ':' group.
 * An unquoted '@' in a display name ("a@b.example <c@d.example>") is a
 * syntax error, not a guess: parser differentials are how DMARC is
 * bypassed.
 */
static int
from_address(struct from_parser *p, bool in_group)
{
	size_t nwords;
	bool local_ok;

	if (from_words(p, &nwords, &local_ok) != 0)
		return -1;
	if (FROM_IS(p, '<'))
		return from_angle_addr(p);
	if (FROM_IS(p, '@')) {
		if (from_local_part(p, nwords, local_ok) != 0)
			return -1;
		return from_addr_domain(p);
	}
	if (FROM_IS(p, ':')) {
		if (in_group) {
			p->why = "group inside a group";
			return -1;
		}
		if (from_next(p) != 0 || from_list(p, true) != 0)
			return -1;
		return from_next(p); /* the ';' */
	}
	p->why = nwords > 0 ? "address without a domain" : "syntax error";
	return -1;
}

/*
 * from_list — address *("," address), empty elements tolerated (obs-mbox-
 * list).  IN_GROUP: the list of a group, which ends at ';' (left as the
 * lookahead); otherwise it ends at the end of the field.
 */
static int
from_list(struct from_parser *p, bool in_group)
{
	for (;;) {
		while (FROM_IS(p, ','))
			if (from_next(p) != 0)
				return -1;
		if (in_group && FROM_IS(p, ';'))
			return 0;
		if (p->tok.kind == FT_END) {
			if (!in_group)
				return 0;
			p->why = "group without ';'";
			return -1;
		}
		if (from_address(p, in_group) != 0)
			return -1;
		if (!FROM_IS(p, ',') && p->tok.kind != FT_END &&
		    !(in_group && FROM_IS(p, ';'))) {
			p->why = "unexpected text after an address";
			return -1;
		}
	}
}

/*
 * dmarc_from_domain — see dkim.h.  The field is parsed as RFC 5322 3.4
 * mailbox-list or, as RFC 6854 allows, address-list: display names with
 * quoted strings, comments, encoded words (plain text here) and UTF-8;
 * angle-addr with an obsolete route; groups ("undisclosed:;" holds no
 * address); empty list elements.  Refused besides: a domain literal, a
 * trailing dot, a label over 63 or a domain over 253 octets, characters
 * that cannot be in a host name, NUL and bare CR/LF.  A U-label domain is
 * returned as it is written, ASCII letters lower-cased, UTF-8 octets
 * untouched.  Any thread.
 */
int
dmarc_from_domain(const struct dkim_msg *m, char *domain, size_t len, char *err,
		  size_t errlen)
{
	const struct dkim_header *h;
	struct from_parser p;
	size_t n, colon;

	if (domain != NULL && len > 0)
		domain[0] = '\0';
	if (m == NULL || domain == NULL) {
		dkim_err(err, errlen, "%s", "no message");
		return -1;
	}
	if ((n = dkim_header_count(m, "From")) != 1 ||
	    (h = dkim_header_find(m, "From", 0)) == NULL) {
		if (n == 0)
			dkim_err(err, errlen, "%s", "no From field");
		else
			dkim_err(err, errlen, "%zu From fields", n);
		return -1;
	}
	for (colon = h->name_len; colon < h->len && (h->field[colon] == ' ' ||
						     h->field[colon] == '\t');
	     colon++)
		;
	if (colon >= h->len || h->field[colon] != ':') {
		dkim_err(err, errlen, "%s", "From field without a colon");
		return -1;
	}
	memset(&p, 0, sizeof(p));
	dmarc_rd_init(&p.rd, h->field + colon + 1, h->len - colon - 1);
	if (from_next(&p) != 0 || from_list(&p, false) != 0) {
		dkim_err(err, errlen, "From: %s (octet %zu of the value)",
			 p.why != NULL ? p.why : "syntax error", p.rd.off);
		return -1;
	}
	if (p.naddrs != 1) {
		if (p.naddrs == 0)
			dkim_err(err, errlen, "%s", "From holds no address");
		else
			dkim_err(err, errlen, "From holds %zu addresses",
				 p.naddrs);
		return -1;
	}
	n = strlen(p.domain);
	if (n >= len) {
		dkim_err(err, errlen, "%s", "domain buffer too small");
		return -1;
	}
	memcpy(domain, p.domain, n + 1);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Organizational domains and alignment                                    */

/*
 * dmarc_init — see dkim.h.  PSL_FILE is read with psl_load_file() (the
 * .dat text or a .dafsa); NULL takes psl_latest(NULL): the newer of the
 * list built into libpsl and Debian's publicsuffix package.  A file that
 * holds no rule is refused (everything would be its own org domain).
 * Calling it again swaps the list: main thread, while no other thread uses
 * this module.
 */
int
dmarc_init(const char *psl_file, char *err, size_t errlen)
{
	psl_ctx_t *ctx;

	ctx = psl_file != NULL ? psl_load_file(psl_file) : psl_latest(NULL);
	if (ctx == NULL) {
		dkim_err(err, errlen, "public suffix list: cannot load %s",
			 psl_file != NULL ? psl_file : "any list");
		return -1;
	}
	if (psl_suffix_count(ctx) == 0) {
		dkim_err(err, errlen, "public suffix list %s: no rules",
			 psl_file != NULL ? psl_file : "(latest)");
		psl_free(ctx);
		return -1;
	}
	psl_free(dmarc_psl); /* ignores NULL and the built-in list */
	dmarc_psl = ctx;
	return 0;
}

/* dmarc_done — free the list of dmarc_init(); the built-in one is used
 * until the next dmarc_init().  Main thread. */
void
dmarc_done(void)
{
	psl_free(dmarc_psl);
	dmarc_psl = NULL;
}

/*
 * dmarc_org_domain — see dkim.h.  The registrable domain of libpsl: the
 * public suffix (rules, wildcards, exceptions; an unknown TLD is a suffix
 * by the implicit "*" rule) plus one label.  DOMAIN is ASCII-lower-cased
 * here; it must not end in a dot (the caller strips it: "example.com." is
 * its own, different, name).  DOMAIN itself when it is a public suffix
 * ("co.uk", "github.io", "test") or libpsl finds no registrable part.
 * OUT gets "" when DOMAIN does not fit in it (it needs 256 bytes for any
 * valid name).  Any thread after dmarc_init(); before it, the built-in list.
 */
void
dmarc_org_domain(const char *domain, char *out, size_t len)
{
	char lower[DMARC_DOMAIN_MAX + 1 + 2];
	const psl_ctx_t *psl = dmarc_psl != NULL ? dmarc_psl : psl_builtin();
	const char *reg;

	if (out == NULL || len == 0)
		return;
	out[0] = '\0';
	if (domain == NULL ||
	    dmarc_lower_copy(domain, lower, sizeof(lower)) != 0 ||
	    strlen(lower) >= len)
		return;
	reg = psl != NULL ? psl_registrable_domain(psl, lower) : NULL;
	if (reg == NULL)
		reg = lower;
	/* REG is a suffix of LOWER, which fits. */
	memcpy(out, reg, strlen(reg) + 1);
}

/*
 * dmarc_aligned — see dkim.h (RFC 7489 3.1).  Compared with ASCII case
 * folded; an empty name aligns with nothing.  Any thread.
 */
bool
dmarc_aligned(const char *a, const char *b, bool strict)
{
	char oa[DMARC_DOMAIN_MAX + 1 + 2], ob[DMARC_DOMAIN_MAX + 1 + 2];
	size_t i, n;

	if (a == NULL || b == NULL || a[0] == '\0' || b[0] == '\0')
		return false;
	if (strict) {
		if ((n = strlen(a)) != strlen(b))
			return false;
		for (i = 0; i < n; i++)
			if (dkim_ascii_lower((uint8_t)a[i]) !=
			    dkim_ascii_lower((uint8_t)b[i]))
				return false;
		return true;
	}
	dmarc_org_domain(a, oa, sizeof(oa));
	dmarc_org_domain(b, ob, sizeof(ob));
	return oa[0] != '\0' && strcmp(oa, ob) == 0;
}

/* ---------------------------------------------------------------------- */
/* Policy discovery (RFC 7489 6.6.3)                                       */

struct dmarc_query {
	struct dns_resolver *r;
	struct dns_query *dq; /* the TXT lookup in flight, or NULL */
	void (*cb)(const struct dmarc_policy_reply *reply, void *arg);
	void *arg;
	bool at_org;      /* the lookup in flight is the org domain's */
	bool in_callback; /* cancel is then a no-op */
	char from[DMARC_DOMAIN_MAX + 1];
	char org[DMARC_DOMAIN_MAX + 1]; /* "" when the same as FROM */
	char name[DMARC_NAME_BYTES];    /* the _dmarc name in flight */
	uint32_t ttl; /* the least TTL left of the answers used */
	struct dmarc_policy_reply reply;
};

/*
 * The policies this thread looked up, for as long as DNS lets them live
 * (at most DMARC_MEMO_TTL_MAX_S): a campaign sends thousands of messages
 * From one domain, and each would otherwise pay the org-domain step, the
 * record parse and a trip through the loop for an answer the cache holds.
 * Direct-mapped by a hash of (resolver, From domain); a collision evicts.
 * Per thread, as each loop has its own resolver: no lock.
 */
#define DMARC_MEMO_SLOTS     256
#define DMARC_MEMO_TTL_MAX_S 300

struct dmarc_memo {
	const struct dns_resolver *r; /* NULL: empty */
	uint64_t expires_ms;          /* dns_clock_ms() */
	char from[DMARC_DOMAIN_MAX + 1];
	struct dmarc_policy_reply reply;
};

static _Thread_local struct dmarc_memo *dmarc_memo;

static struct dmarc_memo *
dmarc_memo_slot(const struct dns_resolver *r, const char *from)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)r;

	for (; *from != '\0'; from++)
		h = (h ^ (unsigned char)*from) * 1099511628211ull;
	return &dmarc_memo[h % DMARC_MEMO_SLOTS];
}

/* Remember Q's answer when every step of it may be kept a while. */
static void
dmarc_memo_put(const struct dmarc_query *q)
{
	struct dmarc_memo *m;
	uint32_t ttl =
	    q->ttl < DMARC_MEMO_TTL_MAX_S ? q->ttl : DMARC_MEMO_TTL_MAX_S;

	if (ttl == 0 || q->from[0] == '\0' || q->reply.result == DMARC_TEMPFAIL)
		return;
	if (dmarc_memo == NULL &&
	    (dmarc_memo = calloc(DMARC_MEMO_SLOTS, sizeof(*dmarc_memo))) ==
		NULL)
		return;
	m = dmarc_memo_slot(q->r, q->from);
	m->r = q->r;
	m->expires_ms = dns_clock_ms() + (uint64_t)ttl * 1000;
	memcpy(m->from, q->from, sizeof(m->from));
	m->reply = q->reply;
}

bool
dmarc_policy_cached(const struct dns_resolver *r, const char *from_domain,
		    struct dmarc_policy_reply *out)
{
	char from[DMARC_DOMAIN_MAX + 1];
	struct dmarc_memo *m;

	if (dmarc_memo == NULL || r == NULL || from_domain == NULL ||
	    from_domain[0] == '\0' ||
	    dmarc_lower_copy(from_domain, from, sizeof(from)) != 0)
		return false;
	m = dmarc_memo_slot(r, from);
	if (m->r != r || strcmp(m->from, from) != 0 ||
	    dns_clock_ms() >= m->expires_ms)
		return false;
	*out = m->reply;
	return true;
}

void
dmarc_memo_free(void)
{
	free(dmarc_memo);
	dmarc_memo = NULL;
}

static void dmarc_txt_cb(const struct dns_txt_reply *rep, void *arg);

static int
dmarc_query_start(struct dmarc_query *q, const char *domain)
{
	if (snprintf(q->name, sizeof(q->name), "%s%s", DMARC_PREFIX, domain) >=
	    (int)sizeof(q->name))
		return -1; /* cannot happen: DOMAIN has at most 253 octets */
	q->dq = dns_txt_lookup(q->r, q->name, dmarc_txt_cb, q);
	return q->dq != NULL ? 0 : -1;
}

/*
 * dmarc_policy_lookup — see dkim.h.  FROM_DOMAIN as dmarc_from_domain()
 * gives it (no trailing dot; case does not matter).  One that cannot be a
 * DNS name (empty, over 253 octets, a U-label: dns/ wants A-labels) ends
 * as DMARC_NONE with err saying why; when only _dmarc.FROM is too long,
 * the org domain is still asked.  The callback always comes from a DNS
 * callback: a name known to be bad is handed to dns/ as the empty name,
 * which dns/ answers DNS_BADNAME on a later loop iteration — so no event
 * base of our own is needed to keep the never-inline promise.  In the
 * reply, WHERE is the _dmarc name that decided the result (the last one
 * asked; for DMARC_FOUND the one holding the record).  Cancel pending
 * lookups before dns_resolver_free(R).  Loop thread of R.
 */
struct dmarc_query *
dmarc_policy_lookup(struct dns_resolver *r, const char *from_domain,
		    void (*cb)(const struct dmarc_policy_reply *reply,
			       void *arg),
		    void *arg)
{
	struct dmarc_query *q;

	if (r == NULL || from_domain == NULL || cb == NULL)
		return NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->r = r;
	q->cb = cb;
	q->arg = arg;
	q->ttl = UINT32_MAX;
	if (from_domain[0] == '\0' ||
	    dmarc_lower_copy(from_domain, q->from, sizeof(q->from)) != 0) {
		q->from[0] = '\0';
		q->dq = dns_txt_lookup(r, "", dmarc_txt_cb, q);
	} else {
		dmarc_org_domain(q->from, q->org, sizeof(q->org));
		if (strcmp(q->org, q->from) == 0)
			q->org[0] = '\0';
		(void)dmarc_query_start(q, q->from);
	}
	if (q->dq == NULL) {
		free(q);
		return NULL;
	}
	return q;
}

/* dmarc_policy_cancel — see dkim.h: no callback after it.  A no-op from
 * inside the query's own callback.  Loop thread. */
void
dmarc_policy_cancel(struct dmarc_query *q)
{
	if (q == NULL || q->in_callback)
		return;
	if (q->dq != NULL)
		dns_cancel(q->dq);
	free(q);
}

/*
 * dmarc_txt_cb — one _dmarc answer.  Only records starting "v=DMARC1"
 * count (6.6.3 step 2); none of them: the org domain next (step 3), once;
 * more than one: no policy (step 5), no fallback; one without a usable p=:
 * no policy (step 6; we send no reports, so its rua= changes nothing).
 * NXDOMAIN, NODATA and a bad name are "no record here"; TEMPFAIL ends the
 * lookup TEMPFAIL.
 */
static void
dmarc_txt_cb(const struct dns_txt_reply *rep, void *arg)
{
	struct dmarc_query *q = arg;
	struct dmarc_policy_reply *out = &q->reply;
	struct dmarc_record rec;
	size_t i, ndmarc = 0, pick = 0;
	const char *why =
	    rep->err[0] != '\0' ? rep->err : dns_result_str(rep->result);

	q->dq = NULL;
	if (rep->ttl < q->ttl)
		q->ttl = rep->ttl;
	dkim_err(out->where, sizeof(out->where), "%s", q->name);
	switch (rep->result) {
	case DNS_OK:
		for (i = 0; i < rep->ntxts; i++)
			if (dmarc_rec_scan(rep->txts[i], rep->lens[i], &rec) !=
			    DMARC_REC_NOT_DMARC) {
				ndmarc++;
				pick = i;
			}
		if (ndmarc > 1) {
			out->result = DMARC_NONE;
			dkim_err(out->err, sizeof(out->err),
				 "%s: %zu DMARC records, none applies", q->name,
				 ndmarc);
			goto done;
		}
		if (ndmarc == 1) {
			if (dmarc_rec_scan(rep->txts[pick], rep->lens[pick],
					   &out->record) == DMARC_REC_OK) {
				out->result = DMARC_FOUND;
				out->from_org = q->at_org;
			} else {
				out->result = DMARC_NONE;
				dkim_err(out->err, sizeof(out->err),
					 "%s: no valid p=, none applies",
					 q->name);
			}
			goto done;
		}
		why = "no DMARC record";
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
	case DNS_NULLMX:
	case DNS_BADNAME:
		break;
	case DNS_TEMPFAIL:
	default:
		out->result = DMARC_TEMPFAIL;
		dkim_err(out->err, sizeof(out->err), "%s: %s", q->name, why);
		goto done;
	}
	if (!q->at_org && q->org[0] != '\0') {
		q->at_org = true;
		if (dmarc_query_start(q, q->org) == 0)
			return;
		out->result = DMARC_TEMPFAIL;
		dkim_err(out->err, sizeof(out->err), "%s: out of memory",
			 q->name);
		goto done;
	}
	out->result = DMARC_NONE;
	if (q->from[0] == '\0')
		dkim_err(out->err, sizeof(out->err),
			 "no valid From domain to look up");
	else
		dkim_err(out->err, sizeof(out->err), "%s: %s", q->name, why);
done:
	dmarc_memo_put(q);
	q->in_callback = true;
	q->cb(out, q->arg);
	free(q);
}

/*
 * dmarc_effective — see dkim.h.  DMARC_P_NONE unless REPLY is DMARC_FOUND;
 * sp= when the record came from the org domain (which the lookup asks only
 * when the From domain differs from it), p= otherwise.  pct= is not
 * applied: the gate treats a sampled policy as the full one (the record
 * keeps pct for the caller).  np= (RFC 9989) is not read.  Any thread.
 */
enum dmarc_policy
dmarc_effective(const struct dmarc_policy_reply *reply)
{
	if (reply == NULL || reply->result != DMARC_FOUND)
		return DMARC_P_NONE;
	return reply->from_org ? reply->record.sp : reply->record.p;
}

/* dmarc_policy_str — "none", "quarantine", "reject" (static). */
const char *
dmarc_policy_str(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_P_NONE:
		return "none";
	case DMARC_P_QUARANTINE:
		return "quarantine";
	case DMARC_P_REJECT:
		return "reject";
	}
	return "?";
}
