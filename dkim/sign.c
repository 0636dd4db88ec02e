/*
 * sign.c — dkim_sign(): header selection (RFC 6376 5.4, 5.4.2), over-
 * signing, the DKIM-Signature field folded exactly as libopendkim 2.11
 * folds it, the header hash and its signature; the default header lists.
 * Owns: the returned field.  Must not: keep state between calls, modify
 * the message, sign a message without its From field.
 * Thread: any (the worker pool); keys and messages are only read.
 * Invariants: for RSA keys the output is byte-identical to libopendkim's
 * dkim_getsighdr_d() with the same lists (DKIM_OPTS_SIGNHDRS,
 * DKIM_OPTS_OVERSIGNHDRS), time and canonicalization; the hashed field
 * is the emitted one with the b= value empty.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/canon_int.h"
#include "dkim/keys_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define SIGN_FIELD_NAME     "DKIM-Signature"
#define SIGN_MARGIN_COLUMNS 75 /* libopendkim's DKIM_HDRMARGIN */
#define SIGN_TAB_COLUMNS    8  /* libopendkim counts a TAB as 8 columns */
#define SIGN_NAME_MAX_BYTES 253

/*
 * Signed when present.  RFC 6376 5.4.1's list for a bulk sender, plus what
 * receivers judge a campaign message by: Message-ID, MIME-Version and the
 * Content-* fields (a body re-typed by a relay must fail), List-* (RFC
 * 8058 one-click unsubscribe), Feedback-ID (Gmail FBL), In-Reply-To and
 * References (threading).  Not Received/Return-Path (added in transit),
 * not Sender (Outpost never adds one; a relay that does would break the
 * signature).  From is signed whatever the list says.
 */
const char *const dkim_default_sign_headers[] = {
	"From",
	"To",
	"Cc",
	"Subject",
	"Date",
	"Message-ID",
	"Reply-To",
	"In-Reply-To",
	"References",
	"MIME-Version",
	"Content-Type",
	"Content-Transfer-Encoding",
	"List-Id",
	"List-Unsubscribe",
	"List-Unsubscribe-Post",
	"Feedback-ID",
	NULL,
};

/*
 * Over-signed: listed once more than they occur, so that no instance can
 * be added (RFC 6376 8.15): the fields a display or an unsubscribe click
 * acts on.  Each is also signed when present (even if missing from the
 * sign list).
 */
const char *const dkim_default_oversign_headers[] = {
	"From", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", NULL,
};

static void
sign_err(char *err, size_t errlen, const char *what)
{
	dkim_err(err, errlen, "dkim_sign: %s", what);
}

/* A header field name usable in h=: ftext (RFC 5322) without ';'. */
static int
sign_name_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > SIGN_NAME_MAX_BYTES)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 ||
		    s[i] == ':' || s[i] == ';')
			return 0;
	return 1;
}

/* d= and s=: letters, digits, '-', '_', '.'; not empty, no edge dots. */
static int
sign_label_ok(const char *s)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > SIGN_NAME_MAX_BYTES ||
	    s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_' || s[i] == '.'))
			return 0;
	return 1;
}

/*
 * The names that select fields: From, then the sign list, then the over-
 * sign list, case-insensitively deduplicated.  A field's name id is the
 * index of its name here, or -1.
 */
struct sign_names {
	const char **v;
	size_t n;
};

static void
sign_names_add(struct sign_names *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strlen(s->v[i]) == strlen(name) &&
		    dkim_ascii_casecmp(s->v[i], name, strlen(name)) == 0)
			return;
	s->v[s->n++] = name;
}

static int
sign_names_build(struct sign_names *s, const char *const *sign,
		 const char *const *over, char *err, size_t errlen)
{
	size_t i, cap = 1;

	for (i = 0; sign[i] != NULL; i++)
		cap++;
	for (i = 0; over[i] != NULL; i++)
		cap++;
	if ((s->v = calloc(cap, sizeof(*s->v))) == NULL) {
		sign_err(err, errlen, "out of memory");
		return -1;
	}
	s->n = 0;
	sign_names_add(s, "From");
	for (i = 0; sign[i] != NULL; i++) {
		if (!sign_name_ok(sign[i])) {
			sign_err(err, errlen, "bad name in the sign list");
			return -1;
		}
		sign_names_add(s, sign[i]);
	}
	for (i = 0; over[i] != NULL; i++) {
		if (!sign_name_ok(over[i])) {
			sign_err(err, errlen, "bad name in the oversign list");
			return -1;
		}
		sign_names_add(s, over[i]);
	}
	return 0;
}

static long
sign_names_id(const struct sign_names *s, const struct dkim_header *h)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strlen(s->v[i]) == h->name_len &&
		    dkim_ascii_casecmp(s->v[i], h->field, h->name_len) == 0)
			return (long)i;
	return -1;
}

/*
 * sign_select — the fields to hash, in hash order, into ORDER (*NSEL
 * entries), and in message order into SEL (for h=).  As libopendkim does:
 * h= names every selected field in message order; the field hashed for
 * the j-th occurrence of a name in h= is the j-th from the bottom of the
 * fields of that name (RFC 6376 5.4.2), in O(fields).
 */
static int
sign_select(const struct dkim_msg *m, const struct sign_names *names,
	    size_t *sel, size_t *order, size_t *nsel, char *err, size_t errlen)
{
	size_t *count = NULL, *first = NULL, *next = NULL;
	size_t i, j, k, n = 0;
	long *id = NULL;
	int rc = -1;

	if ((id = calloc(m->nhdrs + 1, sizeof(*id))) == NULL ||
	    (next = calloc(m->nhdrs + 1, sizeof(*next))) == NULL ||
	    (count = calloc(names->n, sizeof(*count))) == NULL ||
	    (first = calloc(names->n, sizeof(*first))) == NULL) {
		sign_err(err, errlen, "out of memory");
		goto done;
	}
	for (i = 0; i < m->nhdrs; i++) {
		if ((id[i] = sign_names_id(names, &m->hdrs[i])) < 0)
			continue;
		sel[n++] = i;
		count[id[i]]++;
	}
	if (count[0] == 0) {
		sign_err(err, errlen, "no From field (RFC 6376 5.4)");
		goto done;
	}
	/* Per name, its selected fields bottom-up: a singly linked list
	 * built by pushing in message order (each push lands in front). */
	for (k = 0; k < names->n; k++)
		first[k] = SIZE_MAX;
	for (j = 0; j < n; j++) {
		i = sel[j];
		next[i] = first[id[i]];
		first[id[i]] = i;
	}
	for (j = 0; j < n; j++) {
		k = (size_t)id[sel[j]];
		order[j] = first[k];
		first[k] = next[first[k]];
	}
	*nsel = n;
	rc = 0;
done:
	free(id);
	free(next);
	free(count);
	free(first);
	return rc;
}

/*
 * Folding, as libopendkim 2.11's dkim_getsighdr_d() does it with margin 75
 * and a TAB counted as 8 columns.  Tags are separated by "; " or, when the
 * next tag would pass the margin, ";" CRLF TAB.  A wrapped h= breaks at
 * colons (":" CRLF TAB SP); a wrapped bh= or b= breaks inside the value at
 * the margin (CRLF TAB SP).  b= always starts a line (libopendkim forces
 * it for RSA, and an Ed25519 b= never fits either).
 */
struct sign_fold {
	struct dkim_buf *out;
	size_t col;
	int first;
	int failed;
};

static void
sign_fold_put(struct sign_fold *f, const char *p, size_t n)
{
	if (dkim_buf_add(f->out, p, n) != 0)
		f->failed = 1;
}

/* sign_fold_value — "tag=" then VALUE broken at the margin (bh=, b=). */
static void
sign_fold_value(struct sign_fold *f, const char *tag, const char *v,
		size_t vlen)
{
	size_t n;

	sign_fold_put(f, tag, strlen(tag));
	f->col += strlen(tag);
	if (vlen == 0)
		return;
	sign_fold_put(f, v, 1);
	f->col++;
	v++;
	vlen--;
	while (vlen > 0) {
		if (f->col >= SIGN_MARGIN_COLUMNS) {
			sign_fold_put(f, "\r\n\t ", 4);
			f->col = SIGN_TAB_COLUMNS + 1;
		}
		n = SIGN_MARGIN_COLUMNS - f->col;
		if (n > vlen)
			n = vlen;
		sign_fold_put(f, v, n);
		f->col += n;
		v += n;
		vlen -= n;
	}
}

/* sign_fold_names — "h=" NAMES (colon-separated) broken at colons. */
static void
sign_fold_names(struct sign_fold *f, const char *tok, size_t len)
{
	const char *p = tok, *end = tok + len, *c;
	size_t n;
	int first = 1;

	while (p < end) {
		if ((c = memchr(p, ':', (size_t)(end - p))) == NULL)
			c = end;
		n = (size_t)(c - p);
		if (n > 0) {
			if (first) {
				first = 0;
			} else if (f->col + n + 1 > SIGN_MARGIN_COLUMNS) {
				sign_fold_put(f, ":\r\n\t ", 5);
				f->col = SIGN_TAB_COLUMNS + 1;
			} else {
				sign_fold_put(f, ":", 1);
				f->col++;
			}
			sign_fold_put(f, p, n);
			f->col += n;
		}
		p = c + 1;
	}
}

/*
 * sign_fold_tag — one tag TOK ("x=...;" with its ';', or "b=..." last).
 * FORCE puts it on a new line whatever its length.
 */
static void
sign_fold_tag(struct sign_fold *f, const char *tok, size_t len, int force)
{
	if (f->first) {
		f->first = 0;
		sign_fold_put(f, tok, len);
		f->col += len;
		return;
	}
	if (!force && f->col + len <= SIGN_MARGIN_COLUMNS) {
		sign_fold_put(f, " ", 1);
		sign_fold_put(f, tok, len);
		f->col += 1 + len;
		return;
	}
	sign_fold_put(f, "\r\n\t", 3);
	f->col = SIGN_TAB_COLUMNS;
	if (len >= 2 && tok[0] == 'h' && tok[1] == '=')
		sign_fold_names(f, tok, len);
	else if (len >= 2 && tok[0] == 'b' && tok[1] == '=')
		sign_fold_value(f, "b=", tok + 2, len - 2);
	else if (len >= 3 && memcmp(tok, "bh=", 3) == 0)
		sign_fold_value(f, "bh=", tok + 3, len - 3);
	else {
		sign_fold_put(f, tok, len);
		f->col += len;
	}
}

/* sign_fold_kv — the tag "TAG=VALUE;". */
static void
sign_fold_kv(struct sign_fold *f, const char *tag, const char *value)
{
	char t[SIGN_NAME_MAX_BYTES + 32];
	int w;

	w = snprintf(t, sizeof(t), "%s=%s;", tag, value);
	if (w < 0 || (size_t)w >= sizeof(t)) {
		f->failed = 1;
		return;
	}
	sign_fold_tag(f, t, (size_t)w, 0);
}

/*
 * sign_build_prefix — "DKIM-Signature: " and every tag up to and including
 * the line that starts "b=", value empty: exactly the field hashed, and
 * the start of the field emitted.
 */
static int
sign_build_prefix(struct dkim_buf *out, const struct dkim_msg *m,
		  const char *bh, const struct dkim_sign_params *p,
		  const size_t *sel, size_t nsel, const char *const *over,
		  char *err, size_t errlen)
{
	struct sign_fold f = { out, 0, 1, 0 };
	struct dkim_buf h = { NULL, 0, 0 };
	char num[32];
	size_t i;

	sign_fold_put(&f, SIGN_FIELD_NAME ": ", sizeof(SIGN_FIELD_NAME) + 1);
	f.col = sizeof(SIGN_FIELD_NAME) + 1;
	sign_fold_kv(&f, "v", "1");
	sign_fold_kv(&f, "a",
		     dkim_key_alg(p->key) == DKIM_ALG_ED25519_SHA256
			 ? "ed25519-sha256"
			 : "rsa-sha256");
	(void)snprintf(num, sizeof(num), "%s/%s",
		       p->hcanon == DKIM_CANON_RELAXED ? "relaxed" : "simple",
		       p->bcanon == DKIM_CANON_RELAXED ? "relaxed" : "simple");
	sign_fold_kv(&f, "c", num);
	sign_fold_kv(&f, "d", p->domain);
	sign_fold_kv(&f, "s", p->selector);
	if (p->timestamp >= 0) {
		(void)snprintf(num, sizeof(num), "%" PRId64, p->timestamp);
		sign_fold_kv(&f, "t", num);
		if (p->expire_s != 0) {
			(void)snprintf(num, sizeof(num), "%" PRIu64,
				       (uint64_t)p->timestamp + p->expire_s);
			sign_fold_kv(&f, "x", num);
		}
	}
	sign_fold_kv(&f, "bh", bh);
	/* h=: the selected names as written, message order, then the over-
	 * signed names as listed. */
	if (dkim_buf_adds(&h, "h=") != 0)
		goto fail;
	for (i = 0; i < nsel; i++)
		if ((i > 0 && dkim_buf_addc(&h, ':') != 0) ||
		    dkim_buf_add(&h, m->hdrs[sel[i]].field,
				 m->hdrs[sel[i]].name_len) != 0)
			goto fail;
	for (i = 0; over[i] != NULL; i++)
		if (dkim_buf_addc(&h, ':') != 0 || dkim_buf_adds(&h, over[i]))
			goto fail;
	if (dkim_buf_addc(&h, ';') != 0)
		goto fail;
	sign_fold_tag(&f, (const char *)h.data, h.len, 0);
	sign_fold_tag(&f, "b=", 2, 1);
	dkim_buf_free(&h);
	if (f.failed)
		goto fail;
	return 0;
fail:
	dkim_buf_free(&h);
	sign_err(err, errlen, "out of memory building the field");
	return -1;
}

/* sign_check — everything about P and BH that could make a bad field. */
static int
sign_check(const struct dkim_sign_params *p, const char *bh, char *err,
	   size_t errlen)
{
	size_t i;

	if (p == NULL || p->key == NULL) {
		sign_err(err, errlen, "no key");
		return -1;
	}
	if (!sign_label_ok(p->domain) || !sign_label_ok(p->selector)) {
		sign_err(err, errlen, "bad d= or s= (letters, digits, - _ .)");
		return -1;
	}
	if (p->hcanon != DKIM_CANON_SIMPLE && p->hcanon != DKIM_CANON_RELAXED)
		goto badcanon;
	if (p->bcanon != DKIM_CANON_SIMPLE && p->bcanon != DKIM_CANON_RELAXED)
		goto badcanon;
	if (p->timestamp < -1 ||
	    (p->expire_s != 0 &&
	     (p->timestamp < 0 ||
	      p->expire_s > (uint64_t)INT64_MAX - (uint64_t)p->timestamp))) {
		sign_err(err, errlen, "bad t= / x= (x= needs t=)");
		return -1;
	}
	if (bh == NULL || strlen(bh) != DKIM_BH_B64_BYTES) {
		sign_err(err, errlen, "no body hash (dkim_body_hash failed?)");
		return -1;
	}
	for (i = 0; i < DKIM_BH_B64_BYTES; i++)
		if (!((bh[i] >= 'A' && bh[i] <= 'Z') ||
		      (bh[i] >= 'a' && bh[i] <= 'z') ||
		      (bh[i] >= '0' && bh[i] <= '9') || bh[i] == '+' ||
		      bh[i] == '/' || bh[i] == '=')) {
			sign_err(err, errlen, "body hash is not base64");
			return -1;
		}
	return 0;
badcanon:
	sign_err(err, errlen, "bad canonicalization");
	return -1;
}

/*
 * dkim_sign is long: it strings select → canonicalize → hash → sign →
 * emit together, each a call, with one cleanup label for all of them.
 */
int
dkim_sign(const struct dkim_msg *m, const char *bh,
	  const struct dkim_sign_params *p, char **out, size_t *outlen,
	  char *err, size_t errlen)
{
	const char *const *sign, *const *over;
	struct sign_names names = { NULL, 0 };
	struct dkim_buf canon = { NULL, 0, 0 }, field = { NULL, 0, 0 };
	struct sign_fold f;
	const struct dkim_header *h;
	uint8_t digest[DKIM_SHA256_BYTES], sig[DKIM_SIG_MAX_BYTES];
	char b64[DKIM_SIG_MAX_BYTES * 2];
	size_t *sel = NULL, *order = NULL, nsel = 0, siglen = 0, i;
	int b64len, rc = -1;

	*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if (sign_check(p, bh, err, errlen) != 0)
		return -1;
	sign = p->sign_headers != NULL ? p->sign_headers
				       : dkim_default_sign_headers;
	over = p->oversign_headers != NULL ? p->oversign_headers
					   : dkim_default_oversign_headers;
	if (sign_names_build(&names, sign, over, err, errlen) != 0)
		goto done;
	if ((sel = calloc(m->nhdrs + 1, sizeof(*sel))) == NULL ||
	    (order = calloc(m->nhdrs + 1, sizeof(*order))) == NULL) {
		sign_err(err, errlen, "out of memory");
		goto done;
	}
	if (sign_select(m, &names, sel, order, &nsel, err, errlen) != 0)
		goto done;

	/* The header hash: the selected fields in hash order, each with its
	 * CRLF, then this field with b= empty and no CRLF (RFC 6376 3.7). */
	for (i = 0; i < nsel; i++) {
		h = &m->hdrs[order[i]];
		if (dkim_canon_header(&canon, p->hcanon, h->field, h->len,
				      h->name_len) != 0 ||
		    dkim_buf_add(&canon, "\r\n", 2) != 0) {
			sign_err(err, errlen, "out of memory");
			goto done;
		}
	}
	if (sign_build_prefix(&field, m, bh, p, sel, nsel, over, err, errlen) !=
	    0)
		goto done;
	if (dkim_canon_header(&canon, p->hcanon, (const char *)field.data,
			      field.len, sizeof(SIGN_FIELD_NAME) - 1) != 0 ||
	    dkim_sha256(canon.data, canon.len, digest) != 0) {
		sign_err(err, errlen, "out of memory hashing");
		goto done;
	}
	if (dkim_key_sign_digest(p->key, digest, sig, &siglen, err, errlen) !=
	    0)
		goto done;
	if ((b64len = dkim_base64(sig, siglen, b64, sizeof(b64))) < 0) {
		sign_err(err, errlen, "signature too long");
		goto done;
	}

	/* The emitted field: the hashed one, the b= value folded on. */
	f.out = &field;
	f.col = SIGN_TAB_COLUMNS; /* the prefix ends in CRLF TAB "b=" */
	f.first = 0;
	f.failed = 0;
	field.len -= 2;
	sign_fold_value(&f, "b=", b64, (size_t)b64len);
	sign_fold_put(&f, "\r\n", 2);
	if (f.failed) {
		sign_err(err, errlen, "out of memory");
		goto done;
	}
	*out = (char *)field.data;
	if (outlen != NULL)
		*outlen = field.len;
	field.data = NULL;
	rc = 0;
done:
	free(names.v);
	free(sel);
	free(order);
	dkim_buf_free(&canon);
	dkim_buf_free(&field);
	return rc;
}
