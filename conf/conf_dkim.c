/*
 * conf_dkim.c — the signing half of the configuration (issue "Sign and
 * align"): the sections dkim, dkim_sign and dmarc (schema, parse callbacks,
 * build), the dkim_domain references of user and relay, their release, and
 * the lookup conf_dkim_find().
 * Thread: build and free run inside conf_load()/conf_free() (conf.c's
 * mutex); conf_dkim_find() reads a finished tree from any thread.
 * Invariants: as conf.c — each value is checked as it is read, with its
 * line; key files are named here, never opened (the daemon loads and
 * mode-checks them); dkims_by_domain holds every dkim section once, sorted.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf_int.h"

#define CONF_DKIM_HEADERS_MAX  64  /* names in headers, in oversign */
#define CONF_HEADER_NAME_MAX   128 /* one header field name */
#define CONF_DKIM_NAME_MAX     253 /* SELECTOR._domainkey.DOMAIN */
#define CONF_DKIM_EXPIRE_MIN_S 60  /* x= sooner than this is a typo */
#define CONF_DOMAINKEY         "._domainkey."

/* ---- parse callbacks ---- */

/* selector, ed25519_selector: dot-separated LDH labels (RFC 6376 3.1). */
static int
conf_selector_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *why;

	if (conf_domain_check(value, false, &why) != 0) {
		return conf_value_fail(cfg, opt, value, why);
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/*
 * c= (RFC 6376 3.5): "HEADER/BODY", or one word for the header alone, the
 * body then being simple ("relaxed" is relaxed/simple).
 */
static const struct conf_canon_name {
	const char *name;
	enum conf_canon hcanon, bcanon;
} conf_canons[] = {
	{ "relaxed/relaxed", CONF_CANON_RELAXED, CONF_CANON_RELAXED },
	{ "relaxed/simple", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
	{ "simple/relaxed", CONF_CANON_SIMPLE, CONF_CANON_RELAXED },
	{ "simple/simple", CONF_CANON_SIMPLE, CONF_CANON_SIMPLE },
	{ "relaxed", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
	{ "simple", CONF_CANON_SIMPLE, CONF_CANON_SIMPLE },
};

static const char *const conf_canon_words[] = {
	"relaxed/relaxed",
	"relaxed/simple",
	"simple/relaxed",
	"simple/simple",
	"relaxed",
	"simple",
	NULL,
};

static int
conf_canon_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_canon_words,
			      "relaxed/relaxed, relaxed/simple, "
			      "simple/relaxed, simple/simple, relaxed, simple");
}

/*
 * headers, oversign: header field names (RFC 5322 3.6.8 ftext: printable
 * ASCII but ':'), each once whatever its case, at most
 * CONF_DKIM_HEADERS_MAX.  libconfuse has added this value's slot already.
 */
static int
conf_header_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	unsigned i, n = cfg_opt_size(opt);
	const unsigned char *p;
	const char *prev;

	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (n > CONF_DKIM_HEADERS_MAX) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: more than %d names", key, CONF_DKIM_HEADERS_MAX);
		return -1;
	}
	if (value == NULL || *value == '\0') {
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s: an empty name",
			  key);
		return -1;
	}
	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		if (*p < 0x21 || *p > 0x7e || *p == ':') {
			conf_fail(conf_cur, conf_cfg_line(cfg),
				  "%s: \"%s\" is not a header field name "
				  "(printable ASCII without ':' or spaces)",
				  key, value);
			return -1;
		}
	}
	if (strlen(value) > CONF_HEADER_NAME_MAX) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: a name longer than %d characters", key,
			  CONF_HEADER_NAME_MAX);
		return -1;
	}
	for (i = 0; i + 1 < n; i++) {
		prev = cfg_opt_getnstr(opt, i);
		if (prev != NULL && strcasecmp(prev, value) == 0) {
			conf_fail(conf_cur, conf_cfg_line(cfg),
				  "%s: \"%s\" is listed twice (as \"%s\"; "
				  "names are not case-sensitive)",
				  key, value, prev);
			return -1;
		}
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* expire: 0 (no x=), or CONF_DKIM_EXPIRE_MIN_S..the range table's max. */
static int
conf_expire_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	uint64_t us;

	if (conf_num_cb(cfg, opt, value, result) != 0)
		return -1;
	if (conf_duration_scan(value, &us, false) == 0 && us != 0 &&
	    us < (uint64_t)CONF_DKIM_EXPIRE_MIN_S * 1000000) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is less than the minimum, 1m (or 0 for "
			  "no x= tag)",
			  key, value);
		return -1;
	}
	return 0;
}

static const char *const conf_dmarc_actions[] = { "reject", "hold", "accept",
						  NULL };

static int
conf_dmarc_action_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
		     void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_dmarc_actions,
			      "reject, hold, accept");
}

/* psl_file: a path, or "" for the built-in list. */
static int
conf_psl_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value != NULL && *value == '\0') {
		conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
		*(const char **)result = value;
		return 0;
	}
	return conf_text_cb(cfg, opt, value, result);
}

/*
 * dkim_domain of user and relay: one domain, lower-cased and without a
 * trailing dot on the way in.  Whether a dkim section names it is known
 * only once the whole file is read: conf_dkim_build().
 */
int
conf_dkim_domain_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char *norm = conf_cur->norm;
	const char *why = "is longer than 253 characters";
	size_t i, len = value != NULL ? strlen(value) : 0;

	if (len < sizeof(conf_cur->norm)) {
		for (i = 0; i < len; i++) {
			char ch = value[i];

			norm[i] = ch >= 'A' && ch <= 'Z'
				      ? (char)(ch - 'A' + 'a')
				      : ch;
		}
		if (len > 1 && norm[len - 1] == '.')
			len--;
		norm[len] = '\0';
	}
	if (len >= sizeof(conf_cur->norm) ||
	    conf_domain_check(norm, false, &why) != 0) {
		return conf_value_fail(cfg, opt, value, why);
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = norm;
	return 0;
}

/* ---- schema ---- */

cfg_opt_t conf_dkim_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("selector", NULL, CFGF_NONE, conf_selector_cb),
	CFG_STR_CB("rsa_key", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("ed25519_selector", NULL, CFGF_NONE, conf_selector_cb),
	CFG_STR_CB("ed25519_key", NULL, CFGF_NONE, conf_text_cb),
	CFG_END(),
};

cfg_opt_t conf_dkim_sign_opts[] = {
	CFG_STR_CB("canonicalization", "relaxed/relaxed", CFGF_NONE,
		   conf_canon_cb),
	CFG_STR_LIST_CB("headers", NULL, CFGF_NONE, conf_header_cb),
	CFG_STR_LIST_CB("oversign", NULL, CFGF_NONE, conf_header_cb),
	CFG_STR_CB("expire", "0", CFGF_NONE, conf_expire_cb),
	CFG_BOOL_CB("timestamp", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_END(),
};

cfg_opt_t conf_dmarc_opts[] = {
	CFG_BOOL_CB("check", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("action", "reject", CFGF_NONE, conf_dmarc_action_cb),
	CFG_STR_CB("psl_file", NULL, CFGF_NONE, conf_psl_cb),
	CFG_END(),
};

/* ---- build ---- */

/*
 * The title of a dkim section: lower-cased, without a trailing dot, into a
 * new string.  One domain: d= names exactly one.
 */
static char *
conf_dkim_title(struct conf_ctx *x, cfg_t *sec)
{
	const char *title = cfg_title(sec), *why, *rest = NULL;
	unsigned line = conf_sec_line(sec);
	char *d;
	size_t i, len;

	if (title == NULL)
		title = "";
	if ((d = conf_strdup(x, title)) == NULL)
		return NULL;
	len = strlen(d);
	for (i = 0; i < len; i++) {
		if (d[i] >= 'A' && d[i] <= 'Z')
			d[i] = (char)(d[i] - 'A' + 'a');
	}
	if (len > 1 && d[len - 1] == '.')
		d[--len] = '\0';
	if (strcmp(d, "*") == 0) {
		conf_fail(x, line,
			  "dkim \"%s\": a dkim section is for one signing "
			  "domain (d=); for a fallback signing domain set "
			  "dkim_domain in user or relay",
			  title);
		goto fail;
	}
	if (strncmp(d, "*.", 2) == 0)
		rest = d + 2;
	else if (d[0] == '.' && d[1] != '\0')
		rest = d + 1;
	if (rest != NULL) {
		conf_fail(x, line,
			  "dkim \"%s\": a dkim section is for one signing "
			  "domain (d=): write \"%s\" (under relaxed DMARC "
			  "alignment it covers mail from its subdomains)",
			  title, rest);
		goto fail;
	}
	if (conf_domain_check(d, false, &why) != 0) {
		conf_fail(x, line, "dkim \"%s\": the domain %s", title, why);
		goto fail;
	}
	return d;
fail:
	free(d);
	return NULL;
}

/* The later of the lines KEY1 and KEY2 of SEC were set on. */
static unsigned
conf_later_line(struct conf_ctx *x, cfg_t *sec, const char *key1,
		const char *key2)
{
	unsigned l1 = conf_where(x, sec, key1), l2 = conf_where(x, sec, key2);

	return l1 > l2 ? l1 : l2;
}

/*
 * One selector with its key: both or neither (a selector names the TXT
 * record of its key), and SELECTOR._domainkey.DOMAIN must be a DNS name.
 */
static int
conf_dkim_pair(struct conf_ctx *x, cfg_t *sec, const struct conf_dkim *d,
	       const char *selkey, const char *keykey)
{
	const char *title = cfg_title(sec);
	const char *sel = cfg_getstr(sec, selkey);

	if (cfg_getstr(sec, keykey) != NULL && sel == NULL) {
		conf_fail(x, conf_where(x, sec, keykey),
			  "dkim \"%s\": %s needs %s (its public key is "
			  "published at SELECTOR._domainkey.%s)",
			  title, keykey, selkey, d->domain);
		return -1;
	}
	if (cfg_getstr(sec, keykey) == NULL && sel != NULL) {
		conf_fail(x, conf_where(x, sec, selkey),
			  "dkim \"%s\": %s is set but %s is not (%s)", title,
			  selkey, keykey,
			  strcmp(selkey, "selector") == 0
			      ? "selector names the record of the RSA key; "
				"the Ed25519 key's is ed25519_selector"
			      : "ed25519_selector names the record of the "
				"Ed25519 key");
		return -1;
	}
	/* not conf_key_name(): a long title would cut the name short */
	if (sel != NULL &&
	    strlen(sel) + strlen(CONF_DOMAINKEY) + strlen(d->domain) >
		CONF_DKIM_NAME_MAX) {
		conf_fail(x, conf_where(x, sec, selkey),
			  "dkim \"%s\".%s: \"%s" CONF_DOMAINKEY
			  "%s\" would be longer than %d characters",
			  title, selkey, sel, d->domain, CONF_DKIM_NAME_MAX);
		return -1;
	}
	return 0;
}

static int
conf_build_dkim(struct conf_ctx *x, cfg_t *sec, struct conf *c,
		struct conf_dkim *d)
{
	const char *title = cfg_title(sec), *sel, *esel;

	if ((d->domain = conf_dkim_title(x, sec)) == NULL)
		return -1;
	if (cfg_getstr(sec, "rsa_key") == NULL &&
	    cfg_getstr(sec, "ed25519_key") == NULL) {
		conf_fail(x, conf_where(x, sec, NULL),
			  "dkim \"%s\": no key (set selector and rsa_key, "
			  "and/or ed25519_selector and ed25519_key)",
			  title);
		return -1;
	}
	if (conf_dkim_pair(x, sec, d, "selector", "rsa_key") != 0 ||
	    conf_dkim_pair(x, sec, d, "ed25519_selector", "ed25519_key") != 0)
		return -1;
	sel = cfg_getstr(sec, "selector");
	esel = cfg_getstr(sec, "ed25519_selector");
	/* DNS names are not case-sensitive: S1 and s1 are one record */
	if (sel != NULL && esel != NULL && strcasecmp(sel, esel) == 0) {
		conf_fail(
		    x, conf_later_line(x, sec, "selector", "ed25519_selector"),
		    "dkim \"%s\": RSA and Ed25519 keys need different "
		    "selectors (one TXT record per selector)",
		    title);
		return -1;
	}
	if ((sel != NULL && (d->selector = conf_strdup(x, sel)) == NULL) ||
	    (esel != NULL &&
	     (d->ed25519_selector = conf_strdup(x, esel)) == NULL))
		return -1;
	if (conf_path_get(x, c, sec, "rsa_key", &d->rsa_key) != 0 ||
	    conf_path_get(x, c, sec, "ed25519_key", &d->ed25519_key) != 0)
		return -1;
	if (d->rsa_key != NULL && d->ed25519_key != NULL &&
	    strcmp(d->rsa_key, d->ed25519_key) == 0) {
		conf_fail(x, conf_later_line(x, sec, "rsa_key", "ed25519_key"),
			  "dkim \"%s\": rsa_key and ed25519_key are the same "
			  "file (each key has a file of its own)",
			  title);
		return -1;
	}
	return 0;
}

/* By domain, then in file order (the array's order). */
static int
conf_dkim_cmp(const void *a, const void *b)
{
	const struct conf_dkim *da = *(const struct conf_dkim *const *)a;
	const struct conf_dkim *db = *(const struct conf_dkim *const *)b;
	int r = strcmp(da->domain, db->domain);

	if (r != 0)
		return r;
	return da < db ? -1 : da > db;
}

/*
 * Sort the index; a domain listed twice (in another case, or with a
 * trailing dot: libconfuse catches the same title spelt the same) is an
 * error on the first section, in file order, that repeats one before it.
 * Sorting, not comparing pairs: an ESP lists a dkim section per customer.
 */
static int
conf_dkim_index(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	const struct conf_dkim **idx;
	size_t i, first = 0, dup = c->ndkims, orig = 0;
	cfg_t *sec;

	idx = calloc(c->ndkims, sizeof(*idx));
	if ((c->dkims_by_domain = idx) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < c->ndkims; i++)
		idx[i] = &c->dkims[i];
	qsort(idx, c->ndkims, sizeof(*idx), conf_dkim_cmp);
	for (i = 1; i < c->ndkims; i++) {
		size_t at = (size_t)(idx[i] - c->dkims);

		if (strcmp(idx[i]->domain, idx[first]->domain) != 0) {
			first = i;
			continue;
		}
		if (at < dup) {
			dup = at;
			orig = (size_t)(idx[first] - c->dkims);
		}
	}
	if (dup == c->ndkims)
		return 0;
	sec = cfg_getnsec(cfg, "dkim", (unsigned)dup);
	conf_fail(x, conf_sec_line(sec),
		  "dkim \"%s\": the same domain as dkim \"%s\"", cfg_title(sec),
		  cfg_title(cfg_getnsec(cfg, "dkim", (unsigned)orig)));
	return -1;
}

static int
conf_build_dkims(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i, n = cfg_size(cfg, "dkim");

	if (n == 0)
		return 0;
	if ((c->dkims = calloc(n, sizeof(*c->dkims))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		c->ndkims = i + 1; /* conf_free() sees what is built */
		if (conf_build_dkim(x, cfg_getnsec(cfg, "dkim", (unsigned)i), c,
				    &c->dkims[i]) != 0)
			return -1;
	}
	return conf_dkim_index(x, cfg, c);
}

/*
 * A list of header names of SEC into *out (NULL-terminated) and *n; left
 * NULL when the file does not set KEY (the signer's built-in list).
 */
static int
conf_header_list(struct conf_ctx *x, cfg_t *sec, const char *key, char ***out,
		 size_t *n)
{
	size_t i, len = cfg_size(sec, key);

	if (!conf_is_set(sec, key))
		return 0;
	if ((*out = calloc(len + 1, sizeof(char *))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (((*out)[i] = conf_strdup(
			 x, cfg_getnstr(sec, key, (unsigned)i))) == NULL)
			return -1;
		*n = i + 1;
	}
	return 0;
}

static int
conf_build_dkim_sign(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "dkim_sign");
	struct conf_dkim_sign *s = &c->dkim_sign;
	const char *canon = cfg_getstr(sec, "canonicalization");
	unsigned line;
	size_t i;

	for (i = 0; i < sizeof(conf_canons) / sizeof(conf_canons[0]); i++) {
		if (strcasecmp(canon, conf_canons[i].name) == 0)
			break;
	}
	if (i == sizeof(conf_canons) / sizeof(conf_canons[0])) {
		/* checked by conf_canon_cb as it was read */
		conf_fail(x, conf_where(x, sec, "canonicalization"),
			  "dkim_sign.canonicalization: \"%s\" is unknown",
			  canon);
		return -1;
	}
	s->hcanon = conf_canons[i].hcanon;
	s->bcanon = conf_canons[i].bcanon;
	if (conf_header_list(x, sec, "headers", &s->headers, &s->nheaders) !=
		0 ||
	    conf_header_list(x, sec, "oversign", &s->oversign, &s->noversign) !=
		0)
		return -1;
	for (i = 0; s->headers != NULL && i < s->nheaders; i++) {
		if (strcasecmp(s->headers[i], "From") == 0)
			break;
	}
	if (s->headers != NULL && i == s->nheaders) {
		/* an empty list has no value line: its section's "}" */
		line = conf_line_of(x, sec, "headers");
		conf_fail(x, line != 0 ? line : conf_cfg_line(sec),
			  "dkim_sign.headers: \"From\" is missing (RFC 6376 "
			  "5.4: the From field is always signed)");
		return -1;
	}
	/* conf_num_get(): CK_S, in seconds */
	s->expire_ms = conf_num_get(x, sec, "expire") * 1000;
	s->timestamp = cfg_getbool(sec, "timestamp");
	return x->failed ? -1 : 0;
}

static int
conf_build_dmarc(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "dmarc");
	struct conf_dmarc *d = &c->dmarc;
	const char *s;

	d->check = cfg_getbool(sec, "check");
	s = cfg_getstr(sec, "action");
	d->action = strcasecmp(s, "hold") == 0     ? CONF_DMARC_HOLD
		    : strcasecmp(s, "accept") == 0 ? CONF_DMARC_ACCEPT
						   : CONF_DMARC_REJECT;
	s = cfg_getstr(sec, "psl_file");
	if (s == NULL || *s == '\0')
		return 0; /* the built-in list */
	return conf_path_get(x, c, sec, "psl_file", &d->psl_file);
}

/*
 * dkim_domain and allow_unaligned of SEC (a user, or relay): the dkim
 * section named, or NULL when unset; -1 when none is.
 */
static int
conf_dkim_ref(struct conf_ctx *x, const struct conf *c, cfg_t *sec,
	      const struct conf_dkim **out, bool *allow)
{
	const char *name = cfg_getstr(sec, "dkim_domain");
	char key[CONF_KEY_MAX], what[CONF_KEY_MAX];

	*out = NULL;
	*allow = cfg_getbool(sec, "allow_unaligned");
	if (name == NULL) {
		if (!*allow)
			return 0;
		if (sec->title != NULL)
			snprintf(what, sizeof(what), "%s \"%s\"", sec->name,
				 sec->title);
		else
			snprintf(what, sizeof(what), "%s", sec->name);
		conf_fail(x, conf_where(x, sec, "allow_unaligned"),
			  "%s: allow_unaligned = true needs dkim_domain (the "
			  "fallback signing domain it lets sign unaligned "
			  "mail)",
			  what);
		return -1;
	}
	if ((*out = conf_dkim_find(c, name)) != NULL)
		return 0;
	conf_key_name(sec, "dkim_domain", key, sizeof(key));
	conf_fail(x, conf_where(x, sec, "dkim_domain"),
		  "%s: no dkim \"%s\" is defined (add dkim \"%s\" { selector "
		  "= ...  rsa_key = ... })",
		  key, name, name);
	return -1;
}

static int
conf_build_dkim_refs(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i;

	for (i = 0; i < c->nusers; i++) {
		struct conf_user *u = &c->users[i];

		if (conf_dkim_ref(x, c, cfg_getnsec(cfg, "user", (unsigned)i),
				  &u->dkim_fallback, &u->allow_unaligned) != 0)
			return -1;
	}
	return conf_dkim_ref(x, c, cfg_getsec(cfg, "relay"),
			     &c->relay_dkim_fallback,
			     &c->relay_allow_unaligned);
}

int
conf_dkim_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	if (conf_build_dkims(x, cfg, c) != 0 ||
	    conf_build_dkim_sign(x, cfg, c) != 0 ||
	    conf_build_dmarc(x, cfg, c) != 0 ||
	    conf_build_dkim_refs(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

static void
conf_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
conf_dkim_free(struct conf *c)
{
	size_t i;

	for (i = 0; i < c->ndkims; i++) {
		free(c->dkims[i].domain);
		free(c->dkims[i].selector);
		free(c->dkims[i].rsa_key);
		free(c->dkims[i].ed25519_selector);
		free(c->dkims[i].ed25519_key);
	}
	free(c->dkims);
	free(c->dkims_by_domain);
	conf_strv_free(c->dkim_sign.headers, c->dkim_sign.nheaders);
	conf_strv_free(c->dkim_sign.oversign, c->dkim_sign.noversign);
	free(c->dmarc.psl_file);
}

/* ---- lookup ---- */

static int
conf_dkim_key_cmp(const void *key, const void *el)
{
	return strcmp(key, (*(const struct conf_dkim *const *)el)->domain);
}

const struct conf_dkim *
conf_dkim_find(const struct conf *c, const char *domain)
{
	const struct conf_dkim *const *hit;
	char key[CONF_DKIM_NAME_MAX + 1];
	size_t i, len;

	if (c == NULL || domain == NULL || c->dkims_by_domain == NULL)
		return NULL;
	len = strlen(domain);
	if (len > 1 && domain[len - 1] == '.')
		len--; /* tolerate the absolute form */
	if (len == 0 || len >= sizeof(key))
		return NULL;
	for (i = 0; i < len; i++) {
		char ch = domain[i];

		key[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	key[len] = '\0';
	hit = bsearch(key, c->dkims_by_domain, c->ndkims,
		      sizeof(*c->dkims_by_domain), conf_dkim_key_cmp);
	return hit != NULL ? *hit : NULL;
}
