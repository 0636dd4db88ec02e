/*
 * conf.c — libconfuse schema, parse-time validation of every value, the
 * build of the immutable struct conf tree, conf_free(), and lookups on it.
 * The delivery sections (dns, delivery, destination, pool, route) live in
 * conf_deliver.c, the signing ones (dkim, dkim_sign, dmarc) in conf_dkim.c,
 * log, metrics and control in conf_observe.c; their ranges are in conf_nums
 * below with all the others.
 * Thread: conf_load()/conf_free() on the main thread; conf_load() holds
 * conf_mutex throughout (libconfuse's lexer is global state, and callbacks
 * reach the load in progress through conf_cur).  Lookups: any thread.
 * Invariants: errors are "file:line: message" ("file: message" when no
 * line applies), the first one wins; nothing is created on disk; a tree
 * handed out is complete and never changes.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "conf/conf_int.h"

#define CONF_EMBEDDED_LABEL  "(embedded defaults)"
#define CONF_MSG_MAX         1024
#define CONF_THREADS_MAX     64
#define CONF_USER_NAME_MAX   255
#define CONF_PWHASH_MAX      127 /* crypto_pwhash_STRBYTES - 1 */
#define CONF_ARGON2ID_PREFIX "$argon2id$"

/*
 * TLS versions as OpenSSL numbers them (TLS1_2_VERSION and TLS1_3_VERSION
 * in <openssl/prov_ssl.h>); conf/ does not depend on OpenSSL.
 */
#define CONF_TLS1_2_VERSION 0x0303
#define CONF_TLS1_3_VERSION 0x0304

#define KIB(n)   ((uint64_t)(n) << 10)
#define MIB(n)   ((uint64_t)(n) << 20)
#define GIB(n)   ((uint64_t)(n) << 30)
#define TIB(n)   ((uint64_t)(n) << 40)
#define US_MS(n) ((uint64_t)(n)*1000)
#define US_S(n)  ((uint64_t)(n)*1000000)
#define US_M(n)  (US_S(n) * 60)
#define US_H(n)  (US_M(n) * 60)
#define US_D(n)  (US_H(n) * 24)

/*
 * The defaults with no file: parsed like a file, on top of the schema's
 * defaults, so both go through one code path.
 */
static const char conf_embedded[] =
    "listener \"127.0.0.1:2525\" {\n"
    "\ttls = starttls\n"
    "\tauth = true\n"
    "}\n"
    "tls {\n"
    "\tgenerate = true\n"
    "}\n"
    "relay {\n"
    "\tnetworks = { \"127.0.0.0/8\", \"::1/128\" }\n"
    "}\n";

enum conf_kind {
	CK_COUNT, /* a whole number */
	CK_SIZE,  /* bytes: "25M" */
	CK_MS,    /* a duration, kept in milliseconds */
	CK_US,    /* a duration, kept in microseconds */
	CK_S,     /* a duration in whole seconds, kept in seconds */
};

static const char *const conf_kind_hint[] = {
	[CK_COUNT] = "a whole number",
	[CK_SIZE] = "a size (use e.g. 25M)",
	[CK_MS] = "a duration (use e.g. 30s, 5m, 250ms)",
	[CK_US] = "a duration (use e.g. 5ms, 500us)",
	[CK_S] = "a duration (use e.g. 30s, 5m, 1h)",
};

/* Every numeric key and its range; durations' bounds in microseconds. */
static const struct conf_num {
	const char *sec; /* libconfuse's section name, "root" at the top */
	const char *key;
	enum conf_kind kind;
	uint64_t min, max;
} conf_nums[] = {
	{ "root", "smtp_threads", CK_COUNT, 0, CONF_THREADS_MAX },
	{ "root", "worker_threads", CK_COUNT, 0, CONF_THREADS_MAX },
	{ "queue", "map_size", CK_SIZE, MIB(1), TIB(16) },
	{ "queue", "commit_interval", CK_US, 0, US_S(1) },
	{ "queue", "commit_max_batch", CK_COUNT, 1, 100000 },
	{ "queue", "prepare_wait", CK_US, 0, US_S(1) },
	{ "limits", "max_message_size", CK_SIZE, KIB(64), GIB(1) },
	{ "limits", "max_recipients", CK_COUNT, 1, 100000 },
	{ "limits", "max_errors", CK_COUNT, 1, 1000 },
	{ "limits", "max_sessions", CK_COUNT, 1, 1000000 },
	{ "limits", "max_sessions_per_client", CK_COUNT, 1, 1000000 },
	{ "limits", "command_timeout", CK_MS, US_S(1), US_H(1) },
	{ "limits", "data_timeout", CK_MS, US_S(1), US_H(1) },
	{ "limits", "tls_handshake_timeout", CK_MS, US_S(1), US_M(10) },
	{ "log", "disk_reserve", CK_SIZE, 0, TIB(1) },
	{ "log", "disk_reserve_percent", CK_COUNT, 0, 50 },
	{ "limits", "session_lifetime", CK_MS, US_S(1), US_D(7) },
	{ "limits", "data_min_rate", CK_SIZE, 0, MIB(100) },
	{ "limits", "data_rate_interval", CK_MS, US_S(1), US_H(1) },
	{ "limits", "stress_threshold", CK_COUNT, 0, 100 },
	{ "limits", "stress_timeout", CK_MS, US_S(1), US_H(1) },
	{ "limits", "max_body_memory", CK_SIZE, MIB(1), TIB(1) },
	{ "auth_limit", "max_failures", CK_COUNT, 1, 1000 },
	{ "auth_limit", "window", CK_MS, US_S(1), US_D(1) },
	{ "auth_limit", "block", CK_MS, US_S(1), US_D(7) },
	{ "auth_limit", "delay_base", CK_MS, 0, US_M(1) },
	{ "auth_limit", "delay_max", CK_MS, 0, US_M(10) },
	{ "auth_limit", "cache_ttl", CK_MS, 0, US_D(1) },
	{ "auth_limit", "max_failures_per_address", CK_COUNT, 1, 100000 },
	{ "auth_limit", "success_exempt", CK_MS, 0, US_D(7) },
	{ "auth_limit", "ipv4_prefix", CK_COUNT, 8, 32 },
	{ "auth_limit", "ipv6_prefix", CK_COUNT, 16, 128 },
	{ "auth_limit", "max_entries", CK_COUNT, 100, 10000000 },
	{ "dns", "timeout", CK_MS, US_MS(100), US_M(1) },
	{ "dns", "tries", CK_COUNT, 1, 10 },
	{ "dns", "cache_size", CK_COUNT, 0, 10000000 },
	{ "dns", "min_ttl", CK_S, 0, US_D(1) },
	{ "dns", "max_ttl", CK_S, US_S(1), US_D(7) },
	{ "dns", "negative_ttl_max", CK_S, 0, US_D(1) },
	{ "delivery", "port", CK_COUNT, 1, 65535 },
	{ "delivery", "connect_timeout", CK_MS, US_S(1), US_M(10) },
	{ "delivery", "greeting_timeout", CK_MS, US_S(1), US_H(1) },
	{ "delivery", "command_timeout", CK_MS, US_S(1), US_H(1) },
	{ "delivery", "data_timeout", CK_MS, US_S(1), US_H(1) },
	{ "delivery", "idle_timeout", CK_MS, 0, US_M(10) },
	{ "delivery", "max_age", CK_MS, US_S(1), US_D(30) },
	{ "delivery", "retry_intervals", CK_MS, US_S(1), US_D(7) },
	{ "delivery", "retry_jitter", CK_COUNT, 0, 50 },
	{ "delivery", "max_connections", CK_COUNT, 1, 1000000 },
	{ "delivery", "max_mx_addresses", CK_COUNT, 1, 1000 },
	{ "delivery", "max_mx_sessions", CK_COUNT, 1, 100 },
	{ "delivery", "attempt_timeout", CK_MS, US_S(1), US_H(1) },
	{ "destination", "max_connections", CK_COUNT, 1, 100000 },
	{ "destination", "max_messages_per_connection", CK_COUNT, 1, 1000000 },
	{ "destination", "max_recipients_per_transaction", CK_COUNT, 1,
	  100000 },
	{ "destination", "max_messages_per_minute", CK_COUNT, 0, 1000000 },
	{ "destination", "max_messages_per_hour", CK_COUNT, 0, 100000000 },
	{ "destination", "suspend_for", CK_MS, US_S(1), US_D(7) },
	{ "destination", "backoff_pause", CK_MS, US_S(1), US_D(1) },
	{ "destination", "backoff_max", CK_MS, US_S(1), US_D(7) },
	{ "destination", "max_mx_addresses", CK_COUNT, 1, 1000 },
	{ "destination", "max_mx_sessions", CK_COUNT, 1, 100 },
	{ "destination", "attempt_timeout", CK_MS, US_S(1), US_H(1) },
	/* 0 = no x=; 1s..1m is refused too, by conf_expire_cb */
	{ "dkim_sign", "expire", CK_S, 0, US_D(365) },
};

static pthread_mutex_t conf_mutex = PTHREAD_MUTEX_INITIALIZER;
struct conf_ctx *conf_cur; /* the load in progress; conf_mutex */

/* Control characters would break the one-line message: show them as '?'. */
static void
conf_err_clean(char *err, size_t errlen)
{
	char *p;

	if (err == NULL || errlen == 0)
		return;
	for (p = err; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

/*
 * Record the first error as "file:line: message" (BUFLINE 0: "file:
 * message", the main file).  Later errors are consequences: dropped.
 */
void
conf_fail(struct conf_ctx *x, unsigned bufline, const char *fmt, ...)
{
	char msg[CONF_MSG_MAX];
	const char *file;
	unsigned line;
	va_list ap;
	int n;

	if (x->failed)
		return;
	x->failed = true;
	if (x->err == NULL || x->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_src_where(&x->src, bufline, &file, &line);
	if (line != 0)
		n = snprintf(x->err, x->errlen, "%s:%u: %s", file, line, msg);
	else
		n = snprintf(x->err, x->errlen, "%s: %s", file, msg);
	/* n >= errlen truncates: the file:line prefix is what must survive */
	if (n < 0)
		snprintf(x->err, x->errlen, "configuration error");
	conf_err_clean(x->err, x->errlen);
}

unsigned
conf_cfg_line(const cfg_t *cfg)
{
	return cfg != NULL && cfg->line > 0 ? (unsigned)cfg->line : 0;
}

/*
 * "control." for a section inside another ("control.access \"root\""):
 * libconfuse keeps no link to the parent, and each such name is unique.
 */
static const char *
conf_sec_parent(const cfg_t *sec)
{
	static const struct {
		const char *sec, *parent;
	} nested[] = {
		{ "access", "control." },
	};
	size_t i;

	for (i = 0; i < sizeof(nested) / sizeof(nested[0]); i++) {
		if (strcmp(sec->name, nested[i].sec) == 0)
			return nested[i].parent;
	}
	return "";
}

void
conf_key_name(const cfg_t *sec, const char *key, char *buf, size_t len)
{
	int n;

	if (sec == NULL || sec->name == NULL || strcmp(sec->name, "root") == 0)
		n = snprintf(buf, len, "%s", key);
	else if (sec->title != NULL)
		n = snprintf(buf, len, "%s%s \"%s\".%s", conf_sec_parent(sec),
			     sec->name, sec->title, key);
	else
		n = snprintf(buf, len, "%s%s.%s", conf_sec_parent(sec),
			     sec->name, key);
	if (n < 0)
		snprintf(buf, len, "%s", key);
	/* n >= len: a long title is cut short, the message stays useful */
}

/* libconfuse's own messages ("no such option 'x'") arrive here. */
static void conf_confuse_err_cb(cfg_t *, const char *, va_list)
    __attribute__((format(printf, 2, 0)));

static void
conf_confuse_err_cb(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[CONF_MSG_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (conf_cur == NULL)
		return;
	if (cfg == NULL || cfg->name == NULL || strcmp(cfg->name, "root") == 0)
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s", msg);
	else if (cfg->title != NULL)
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s%s \"%s\": %s",
			  conf_sec_parent(cfg), cfg->name, cfg->title, msg);
	else
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s%s: %s",
			  conf_sec_parent(cfg), cfg->name, msg);
}

void
conf_line_note(struct conf_ctx *x, const cfg_t *sec, const char *key,
	       unsigned line)
{
	if (x->nlines == x->linecap) {
		size_t cap = x->linecap != 0 ? x->linecap * 2 : 64;
		struct conf_line *l = realloc(x->lines, cap * sizeof(*l));

		if (l == NULL)
			return; /* only messages lose their line */
		x->lines = l;
		x->linecap = cap;
	}
	x->lines[x->nlines].sec = sec;
	x->lines[x->nlines].key = key;
	x->lines[x->nlines].line = line;
	x->nlines++;
}

unsigned
conf_line_of(const struct conf_ctx *x, const cfg_t *sec, const char *key)
{
	size_t i;

	for (i = x->nlines; i > 0; i--) {
		const struct conf_line *l = &x->lines[i - 1];

		if (l->sec == sec && strcmp(l->key, key) == 0)
			return l->line;
	}
	return 0;
}

unsigned
conf_where(const struct conf_ctx *x, cfg_t *sec, const char *key)
{
	unsigned line = key != NULL ? conf_line_of(x, sec, key) : 0;

	return line != 0 ? line : conf_sec_line(sec);
}

unsigned
conf_sec_line(cfg_t *sec)
{
	unsigned i;

	for (i = 0; sec->opts[i].name != NULL; i++) {
		if (strcmp(sec->opts[i].name, CONF_LINE_OPT) == 0)
			return (unsigned)cfg_opt_getnint(&sec->opts[i], 0);
	}
	return 0;
}

/*
 * libconfuse marks an option modified when the file assigns it, even "= { }"
 * (and clears the mark after setting a default).
 */
bool
conf_is_set(cfg_t *sec, const char *key)
{
	cfg_opt_t *opt = cfg_getopt(sec, key);

	return opt != NULL && (opt->flags & CFGF_MODIFIED) != 0;
}

/* ---- parse callbacks: one value each, with the line it is on ---- */

char conf_line_magic[] = "0";

int
conf_line_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value == NULL || strcmp(value, conf_line_magic) != 0) {
		/* someone wrote the hidden name: as unknown as any typo */
		cfg_error(cfg, "no such option '%s'", opt->name);
		return -1;
	}
	*(long *)result = cfg->line;
	return 0;
}

static const struct conf_num *
conf_num_find(const char *sec, const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(conf_nums) / sizeof(conf_nums[0]); i++) {
		if (strcmp(conf_nums[i].sec, sec) == 0 &&
		    strcmp(conf_nums[i].key, key) == 0)
			return &conf_nums[i];
	}
	return NULL;
}

static void
conf_num_format(enum conf_kind kind, uint64_t v, char *buf, size_t len)
{
	switch (kind) {
	case CK_COUNT:
		snprintf(buf, len, "%llu", (unsigned long long)v);
		break;
	case CK_SIZE:
		conf_size_format(v, buf, len);
		break;
	case CK_MS:
	case CK_US:
	case CK_S:
		conf_duration_format(v, buf, len);
		break;
	}
}

/* Scan and range-check VALUE of numeric key N in SEC; *out in its unit. */
static int
conf_num_check(struct conf_ctx *x, const cfg_t *sec, const struct conf_num *n,
	       const char *value, unsigned bufline, uint64_t *out)
{
	char key[CONF_KEY_MAX], bound[32];
	uint64_t v = 0;
	int rc = -1;

	conf_key_name(sec, n->key, key, sizeof(key));
	if (value == NULL) {
		conf_fail(x, bufline, "%s: no value", key);
		return -1;
	}
	switch (n->kind) {
	case CK_COUNT:
		rc = conf_count_scan(value, &v);
		break;
	case CK_SIZE:
		rc = conf_size_scan(value, &v);
		break;
	case CK_MS:
	case CK_US:
	case CK_S:
		rc = conf_duration_scan(value, &v, n->kind == CK_US);
		break;
	}
	if (rc == -1) {
		conf_fail(x, bufline, "%s: \"%s\" is not %s", key, value,
			  conf_kind_hint[n->kind]);
		return -1;
	}
	if (rc != 0 || v > n->max) {
		conf_num_format(n->kind, n->max, bound, sizeof(bound));
		conf_fail(x, bufline, "%s: \"%s\" is more than the maximum, %s",
			  key, value, bound);
		return -1;
	}
	if (v < n->min) {
		conf_num_format(n->kind, n->min, bound, sizeof(bound));
		conf_fail(x, bufline, "%s: \"%s\" is less than the minimum, %s",
			  key, value, bound);
		return -1;
	}
	if (n->kind == CK_S && v % US_S(1) != 0) {
		conf_fail(x, bufline,
			  "%s: \"%s\" is not a whole number of seconds", key,
			  value);
		return -1;
	}
	*out = v;
	return 0;
}

int
conf_num_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const struct conf_num *n = conf_num_find(cfg->name, opt->name);
	uint64_t v;

	if (n == NULL) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: no range defined (a bug in conf.c)", opt->name);
		return -1;
	}
	if (conf_num_check(conf_cur, cfg, n, value, conf_cfg_line(cfg), &v) !=
	    0)
		return -1;
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

uint64_t
conf_num_get(struct conf_ctx *x, cfg_t *sec, const char *key)
{
	const struct conf_num *n = conf_num_find(sec->name, key);
	uint64_t v = 0;

	if (n == NULL) {
		conf_fail(x, 0, "%s: no range defined (a bug in conf.c)", key);
		return 0;
	}
	/* Values from the file passed already; this checks the defaults. */
	if (conf_num_check(x, sec, n, cfg_getstr(sec, key),
			   conf_where(x, sec, key), &v) != 0)
		return 0;
	if (n->kind == CK_MS)
		return v / 1000;
	return n->kind == CK_S ? v / US_S(1) : v;
}

/* Printable text: paths, cipher lists. */
static int
conf_text_check(struct conf_ctx *x, cfg_t *cfg, cfg_opt_t *opt,
		const char *value)
{
	char key[CONF_KEY_MAX];
	const char *p;

	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (value == NULL || *value == '\0') {
		conf_fail(x, conf_cfg_line(cfg), "%s: must not be empty", key);
		return -1;
	}
	for (p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			conf_fail(x, conf_cfg_line(cfg),
				  "%s: contains a control character", key);
			return -1;
		}
	}
	if (strlen(value) >= PATH_MAX) {
		conf_fail(x, conf_cfg_line(cfg), "%s: longer than %d bytes",
			  key, PATH_MAX - 1);
		return -1;
	}
	conf_line_note(x, cfg, opt->name, conf_cfg_line(cfg));
	return 0;
}

int
conf_text_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (conf_text_check(conf_cur, cfg, opt, value) != 0)
		return -1;
	*(const char **)result = value;
	return 0;
}

/* hostname, and the EHLO names of delivery and pools */
int
conf_hostname_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	const char *why;

	if (conf_domain_check(value, false, &why) != 0) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" %s", key,
			  value != NULL ? value : "", why);
		return -1;
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* VALUE (case-insensitive) in the NULL-terminated list ONEOF, else fail. */
int
conf_choice_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
	       const char *const *oneof, const char *list)
{
	char key[CONF_KEY_MAX];
	size_t i;

	for (i = 0; value != NULL && oneof[i] != NULL; i++) {
		if (strcasecmp(value, oneof[i]) == 0) {
			conf_line_note(conf_cur, cfg, opt->name,
				       conf_cfg_line(cfg));
			*(const char **)result = oneof[i];
			return 0;
		}
	}
	conf_key_name(cfg, opt->name, key, sizeof(key));
	conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" is not one of %s",
		  key, value != NULL ? value : "", list);
	return -1;
}

static const char *const conf_tls_modes[] = { "starttls", "implicit", "none",
					      NULL };
static const char *const conf_tls_versions[] = { "TLSv1.2", "TLSv1.3", NULL };

static const char *const conf_long_lines_modes[] = { "reencode", "reject",
						     NULL };

static int
conf_long_lines_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_long_lines_modes,
			      "reencode, reject");
}

static int
conf_tls_mode_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_tls_modes,
			      "starttls, implicit, none");
}

static int
conf_tls_version_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_tls_versions,
			      "TLSv1.2, TLSv1.3");
}

int
conf_bool_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	int b = value != NULL ? cfg_parse_boolean(value) : -1;

	if (b == -1) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is not true or false", key,
			  value != NULL ? value : "");
		return -1;
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(int *)result = b;
	return 0;
}

static int
conf_cidr_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX], hint[96];
	struct conf_network n;
	const char *why;

	if (conf_cidr_parse(value, &n, &why, hint, sizeof(hint)) != 0) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" %s", key,
			  value != NULL ? value : "", why);
		return -1;
	}
	*(const char **)result = value;
	return 0;
}

/* sender_domains: lower-cased and without a trailing dot on the way in. */
static int
conf_domain_list_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	char *norm = conf_cur->norm;
	const char *why = "is longer than 253 characters";
	size_t i, len = value != NULL ? strlen(value) : 0;

	if (len < sizeof(conf_cur->norm)) {
		for (i = 0; i < len; i++) {
			char c = value[i];

			norm[i] =
			    c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
		if (len > 1 && norm[len - 1] == '.')
			len--;
		norm[len] = '\0';
	}
	if (len >= sizeof(conf_cur->norm) ||
	    conf_domain_check(norm, true, &why) != 0) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" %s", key,
			  value != NULL ? value : "", why);
		return -1;
	}
	*(const char **)result = norm;
	return 0;
}

static int
conf_password_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	const char *p;
	bool ok = value != NULL &&
		  strncmp(value, CONF_ARGON2ID_PREFIX,
			  sizeof(CONF_ARGON2ID_PREFIX) - 1) == 0 &&
		  strlen(value) <= CONF_PWHASH_MAX;

	for (p = value; ok && *p != '\0'; p++)
		ok = (unsigned char)*p > 0x20 && *p != 0x7f;
	if (!ok) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(
		    conf_cur, conf_cfg_line(cfg),
		    "%s: not an Argon2id hash (\"$argon2id$...\"); make one "
		    "with: outpost passwd %s",
		    key, cfg->title != NULL ? cfg->title : "USER");
		return -1;
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/*
 * ---- schema (the delivery sections are in conf_deliver.c, the signing
 * ones in conf_dkim.c, log, metrics and control in conf_observe.c) ----
 */

static cfg_opt_t conf_tls_opts[] = {
	CFG_STR_CB("cert_file", "keys/tls.crt", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("key_file", "keys/tls.key", CFGF_NONE, conf_text_cb),
	CFG_BOOL_CB("generate", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("ciphers", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("min_version", "TLSv1.2", CFGF_NONE, conf_tls_version_cb),
	CFG_END(),
};

static cfg_opt_t conf_queue_opts[] = {
	CFG_STR_CB("path", "queue", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("key_file", "keys/queue.key", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("map_size", "16G", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("commit_interval", "0ms", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("commit_max_batch", "1024", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("prepare_wait", "2ms", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

static cfg_opt_t conf_limits_opts[] = {
	CFG_STR_CB("max_message_size", "25M", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_recipients", "1000", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_errors", "10", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_sessions", "2000", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_sessions_per_client", "100", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("command_timeout", "5m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("data_timeout", "3m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("tls_handshake_timeout", "30s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("long_lines", "reencode", CFGF_NONE, conf_long_lines_cb),
	CFG_STR_CB("session_lifetime", "1h", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("data_min_rate", "1K", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("data_rate_interval", "30s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("stress_threshold", "75", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("stress_timeout", "10s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_body_memory", "512M", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

static cfg_opt_t conf_auth_limit_opts[] = {
	CFG_STR_CB("max_failures", "5", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("window", "10m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("block", "15m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("delay_base", "250ms", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("delay_max", "4s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("cache_ttl", "10m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_failures_per_address", "30", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("success_exempt", "1d", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("ipv4_prefix", "32", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("ipv6_prefix", "64", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_entries", "100000", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

static cfg_opt_t conf_relay_opts[] = {
	CFG_STR_LIST_CB("networks", NULL, CFGF_NONE, conf_cidr_cb),
	CFG_STR_CB("pool", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("dkim_domain", NULL, CFGF_NONE, conf_dkim_domain_cb),
	CFG_BOOL_CB("allow_unaligned", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_END(),
};

static cfg_opt_t conf_listener_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("tls", "starttls", CFGF_NONE, conf_tls_mode_cb),
	CFG_BOOL_CB("auth", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_BOOL_CB("auth_without_tls", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_BOOL_CB("require_auth", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("cert_file", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("key_file", NULL, CFGF_NONE, conf_text_cb),
	CFG_END(),
};

static cfg_opt_t conf_user_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("password", NULL, CFGF_NONE, conf_password_cb),
	CFG_STR_LIST_CB("sender_domains", NULL, CFGF_NONE, conf_domain_list_cb),
	CFG_STR_CB("pool", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("dkim_domain", NULL, CFGF_NONE, conf_dkim_domain_cb),
	CFG_BOOL_CB("allow_unaligned", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_END(),
};

static cfg_opt_t conf_opts[] = {
	CFG_STR_CB("hostname", NULL, CFGF_NONE, conf_hostname_cb),
	CFG_STR_CB("data_dir", "./var", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("run_as", "outpost", CFGF_NONE, conf_text_cb),
	CFG_BOOL_CB("allow_root", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("hash_key_file", "keys/loghash.key", CFGF_NONE,
		   conf_text_cb),
	CFG_STR_CB("smtp_threads", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("worker_threads", "0", CFGF_NONE, conf_num_cb),
	CFG_SEC("tls", conf_tls_opts, CFGF_NONE),
	CFG_SEC("queue", conf_queue_opts, CFGF_NONE),
	CFG_SEC("limits", conf_limits_opts, CFGF_NONE),
	CFG_SEC("auth_limit", conf_auth_limit_opts, CFGF_NONE),
	CFG_SEC("relay", conf_relay_opts, CFGF_NONE),
	CFG_SEC("listener", conf_listener_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("user", conf_user_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("dns", conf_dns_opts, CFGF_NONE),
	CFG_SEC("delivery", conf_delivery_opts, CFGF_NONE),
	CFG_SEC("destination", conf_destination_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("pool", conf_pool_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("route", conf_route_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("dkim", conf_dkim_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("dkim_sign", conf_dkim_sign_opts, CFGF_NONE),
	CFG_SEC("dmarc", conf_dmarc_opts, CFGF_NONE),
	CFG_SEC("log", conf_log_opts, CFGF_NONE),
	CFG_SEC("metrics", conf_metrics_opts, CFGF_NONE),
	CFG_SEC("control", conf_control_opts, CFGF_NONE),
	CFG_END(),
};

/* ---- build: from libconfuse's tree to struct conf ---- */

/* Absolute IN with "." and empty components dropped ("/a/./b//" -> "/a/b"). */
static char *
conf_path_clean(const char *in)
{
	size_t o = 0, l;
	const char *p = in, *e;
	char *out;

	if ((out = malloc(strlen(in) + 2)) == NULL)
		return NULL;
	for (;;) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e != '\0' && *e != '/'; e++)
			;
		l = (size_t)(e - p);
		if (!(l == 1 && p[0] == '.')) {
			out[o++] = '/';
			memcpy(out + o, p, l);
			o += l;
		}
		p = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return out;
}

/*
 * P made absolute: as is when it starts with "/", else under BASE (or the
 * working directory when BASE is NULL).  NULL with the error recorded.
 */
static char *
conf_path_abs(struct conf_ctx *x, cfg_t *sec, const char *key, const char *base,
	      const char *p)
{
	char cwd[PATH_MAX], joined[2 * PATH_MAX + 2];
	char name[CONF_KEY_MAX];
	char *out;
	int n;

	conf_key_name(sec, key, name, sizeof(name));
	if (p[0] == '/') {
		n = snprintf(joined, sizeof(joined), "%s", p);
	} else {
		if (base == NULL) {
			if (getcwd(cwd, sizeof(cwd)) == NULL) {
				conf_fail(x, conf_where(x, sec, key),
					  "%s: cannot make \"%s\" absolute: %s",
					  name, p, strerror(errno));
				return NULL;
			}
			base = cwd;
		}
		n = snprintf(joined, sizeof(joined), "%s/%s", base, p);
	}
	if (n < 0 || (size_t)n >= sizeof(joined)) {
		conf_fail(x, conf_where(x, sec, key), "%s: path too long",
			  name);
		return NULL;
	}
	if ((out = conf_path_clean(joined)) == NULL) {
		conf_fail(x, conf_where(x, sec, key), "out of memory");
		return NULL;
	}
	if (strlen(out) >= PATH_MAX) {
		conf_fail(x, conf_where(x, sec, key), "%s: path too long",
			  name);
		free(out);
		return NULL;
	}
	return out;
}

int
conf_path_get(struct conf_ctx *x, const struct conf *c, cfg_t *sec,
	      const char *key, char **out)
{
	const char *p = cfg_getstr(sec, key);

	*out = NULL;
	if (p == NULL)
		return 0;
	*out = conf_path_abs(x, sec, key, c->data_dir, p);
	return *out != NULL ? 0 : -1;
}

char *
conf_strdup(struct conf_ctx *x, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		conf_fail(x, 0, "out of memory");
	return d;
}

static unsigned
conf_threads(uint64_t n)
{
	long cpus;

	if (n != 0)
		return (unsigned)n;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		return 1;
	return cpus > CONF_THREADS_MAX ? CONF_THREADS_MAX : (unsigned)cpus;
}

static int
conf_build_top(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	const char *host = cfg_getstr(cfg, "hostname");
	char name[256];

	if (host == NULL) {
		if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
			snprintf(name, sizeof(name), "localhost");
		name[sizeof(name) - 1] = '\0';
		host = name;
	}
	if ((c->hostname = conf_strdup(x, host)) == NULL ||
	    (c->user = conf_strdup(x, cfg_getstr(cfg, "run_as"))) == NULL)
		return -1;
	c->allow_root = cfg_getbool(cfg, "allow_root");
	if (strcmp(c->user, "root") == 0 && !c->allow_root)
		conf_fail(x, conf_line_of(x, cfg, "run_as"),
			  "run_as = \"root\" needs allow_root = true: outpostd "
			  "parses untrusted input and should not keep root");
	c->data_dir = conf_path_abs(x, cfg, "data_dir", NULL,
				    cfg_getstr(cfg, "data_dir"));
	if (c->data_dir == NULL ||
	    conf_path_get(x, c, cfg, "hash_key_file", &c->hash_key_file) != 0)
		return -1;
	c->smtp_threads = conf_threads(conf_num_get(x, cfg, "smtp_threads"));
	c->worker_threads =
	    conf_threads(conf_num_get(x, cfg, "worker_threads"));
	return x->failed ? -1 : 0;
}

static int
conf_build_tls(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "tls");
	const char *s;

	if (conf_path_get(x, c, sec, "cert_file", &c->tls.cert_file) != 0 ||
	    conf_path_get(x, c, sec, "key_file", &c->tls.key_file) != 0)
		return -1;
	c->tls.generate = cfg_getbool(sec, "generate");
	if ((s = cfg_getstr(sec, "ciphers")) != NULL &&
	    (c->tls.ciphers = conf_strdup(x, s)) == NULL)
		return -1;
	s = cfg_getstr(sec, "min_version");
	c->tls.min_version = s != NULL && strcasecmp(s, "TLSv1.3") == 0
				 ? CONF_TLS1_3_VERSION
				 : CONF_TLS1_2_VERSION;
	return 0;
}

static int
conf_build_queue(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "queue");

	if (conf_path_get(x, c, sec, "path", &c->queue.path) != 0 ||
	    conf_path_get(x, c, sec, "key_file", &c->queue.key_file) != 0)
		return -1;
	c->queue.map_size = conf_num_get(x, sec, "map_size");
	c->queue.commit_interval_us =
	    (unsigned)conf_num_get(x, sec, "commit_interval");
	c->queue.commit_max_batch =
	    (unsigned)conf_num_get(x, sec, "commit_max_batch");
	c->queue.prepare_wait_us =
	    (unsigned)conf_num_get(x, sec, "prepare_wait");
	return x->failed ? -1 : 0;
}

int
conf_order_check(struct conf_ctx *x, cfg_t *sec, const char *lo, uint64_t lov,
		 const char *hi, uint64_t hiv)
{
	unsigned l1 = conf_line_of(x, sec, lo), l2 = conf_line_of(x, sec, hi);
	char k1[CONF_KEY_MAX], k2[CONF_KEY_MAX];

	if (lov <= hiv)
		return 0;
	conf_key_name(sec, lo, k1, sizeof(k1));
	conf_key_name(sec, hi, k2, sizeof(k2));
	conf_fail(x, l1 > l2 ? l1 : l2, "%s (%s) is more than %s (%s)", k1,
		  cfg_getstr(sec, lo), k2, cfg_getstr(sec, hi));
	return -1;
}

static int
conf_build_limits(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "limits");
	struct conf_limits *l = &c->limits;

	l->max_message_size = conf_num_get(x, sec, "max_message_size");
	l->max_recipients = (unsigned)conf_num_get(x, sec, "max_recipients");
	l->max_errors = (unsigned)conf_num_get(x, sec, "max_errors");
	l->max_sessions = (unsigned)conf_num_get(x, sec, "max_sessions");
	l->max_sessions_per_client =
	    (unsigned)conf_num_get(x, sec, "max_sessions_per_client");
	l->command_timeout_ms =
	    (unsigned)conf_num_get(x, sec, "command_timeout");
	l->data_timeout_ms = (unsigned)conf_num_get(x, sec, "data_timeout");
	l->tls_handshake_timeout_ms =
	    (unsigned)conf_num_get(x, sec, "tls_handshake_timeout");
	l->long_lines = strcasecmp(cfg_getstr(sec, "long_lines"), "reject") == 0
			    ? CONF_LONG_LINES_REJECT
			    : CONF_LONG_LINES_REENCODE;
	l->session_lifetime_ms =
	    (unsigned)conf_num_get(x, sec, "session_lifetime");
	l->data_min_rate = conf_num_get(x, sec, "data_min_rate");
	l->data_rate_interval_ms =
	    (unsigned)conf_num_get(x, sec, "data_rate_interval");
	l->stress_threshold =
	    (unsigned)conf_num_get(x, sec, "stress_threshold");
	l->stress_timeout_ms = (unsigned)conf_num_get(x, sec, "stress_timeout");
	l->max_body_memory = conf_num_get(x, sec, "max_body_memory");
	if (x->failed)
		return -1;
	/* One message must fit in the budget, or it could never be read. */
	if (conf_order_check(x, sec, "max_message_size", l->max_message_size,
			     "max_body_memory", l->max_body_memory) != 0)
		return -1;
	return conf_order_check(x, sec, "max_sessions_per_client",
				l->max_sessions_per_client, "max_sessions",
				l->max_sessions);
}

static int
conf_build_auth_limit(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "auth_limit");
	struct conf_auth_limit *a = &c->auth_limit;

	a->max_failures = (unsigned)conf_num_get(x, sec, "max_failures");
	a->window_ms = (unsigned)conf_num_get(x, sec, "window");
	a->block_ms = (unsigned)conf_num_get(x, sec, "block");
	a->delay_base_ms = (unsigned)conf_num_get(x, sec, "delay_base");
	a->delay_max_ms = (unsigned)conf_num_get(x, sec, "delay_max");
	a->cache_ttl_ms = (unsigned)conf_num_get(x, sec, "cache_ttl");
	a->max_failures_per_address =
	    (unsigned)conf_num_get(x, sec, "max_failures_per_address");
	a->success_exempt_ms = (unsigned)conf_num_get(x, sec, "success_exempt");
	a->ipv4_prefix = (unsigned)conf_num_get(x, sec, "ipv4_prefix");
	a->ipv6_prefix = (unsigned)conf_num_get(x, sec, "ipv6_prefix");
	a->max_entries = (unsigned)conf_num_get(x, sec, "max_entries");
	if (x->failed)
		return -1;
	if (conf_order_check(x, sec, "delay_base", a->delay_base_ms,
			     "delay_max", a->delay_max_ms) != 0)
		return -1;
	/* Unset, the per-network cap follows a max_failures set above it
	 * (files written before the key existed keep working). */
	if (conf_line_of(x, sec, "max_failures_per_address") == 0 &&
	    a->max_failures_per_address < a->max_failures)
		a->max_failures_per_address = a->max_failures;
	return conf_order_check(x, sec, "max_failures", a->max_failures,
				"max_failures_per_address",
				a->max_failures_per_address);
}

/*
 * One listener: the title is the address; the cross-checks here are the
 * security posture (no AUTH in clear off loopback) and settings that would
 * leave a listener no one can use.
 */
static int
conf_build_listener(struct conf_ctx *x, cfg_t *sec, struct conf *c,
		    struct conf_listener *l)
{
	const char *title = cfg_title(sec), *why, *mode;
	unsigned line = conf_sec_line(sec);
	size_t i;

	if ((l->name = conf_strdup(x, title != NULL ? title : "")) == NULL)
		return -1;
	if (conf_addr_scan(l->name, &l->addr, &l->addrlen, &why) != 0) {
		conf_fail(x, line, "listener \"%s\": %s", l->name, why);
		return -1;
	}
	for (i = 0; &c->listeners[i] != l; i++) {
		if (c->listeners[i].addrlen == l->addrlen &&
		    memcmp(&c->listeners[i].addr, &l->addr, l->addrlen) == 0) {
			conf_fail(
			    x, line,
			    "listener \"%s\": same address as listener \"%s\"",
			    l->name, c->listeners[i].name);
			return -1;
		}
	}
	mode = cfg_getstr(sec, "tls");
	l->tls = strcmp(mode, "none") == 0       ? CONF_TLS_NONE
		 : strcmp(mode, "implicit") == 0 ? CONF_TLS_IMPLICIT
						 : CONF_TLS_STARTTLS;
	l->auth = cfg_getbool(sec, "auth");
	l->auth_without_tls = cfg_getbool(sec, "auth_without_tls");
	l->require_auth = cfg_getbool(sec, "require_auth");

	if (l->auth_without_tls && !conf_addr_is_loopback(&l->addr)) {
		conf_fail(
		    x, conf_where(x, sec, "auth_without_tls"),
		    "listener \"%s\": auth_without_tls = true is allowed only "
		    "on a loopback address (passwords would cross the network "
		    "in clear)",
		    l->name);
		return -1;
	}
	if (l->require_auth && !l->auth) {
		conf_fail(
		    x, conf_where(x, sec, "require_auth"),
		    "listener \"%s\": require_auth = true needs auth = true",
		    l->name);
		return -1;
	}
	if (l->require_auth && l->tls == CONF_TLS_NONE &&
	    !l->auth_without_tls) {
		conf_fail(
		    x, conf_where(x, sec, "require_auth"),
		    "listener \"%s\": require_auth = true, but with tls = "
		    "none and auth_without_tls = false AUTH is never offered",
		    l->name);
		return -1;
	}
	if (conf_path_get(x, c, sec, "cert_file", &l->cert_file) != 0 ||
	    conf_path_get(x, c, sec, "key_file", &l->key_file) != 0)
		return -1;
	if ((l->cert_file == NULL) != (l->key_file == NULL)) {
		const char *set =
		    l->cert_file != NULL ? "cert_file" : "key_file";

		conf_fail(
		    x, conf_where(x, sec, set),
		    "listener \"%s\": cert_file and key_file go together (set "
		    "both, or neither to use those of tls { })",
		    l->name);
		return -1;
	}
	return 0;
}

static int
conf_build_listeners(struct conf_ctx *x, cfg_t *cfg, struct conf *c,
		     bool embedded)
{
	size_t i, n = cfg_size(cfg, "listener");

	if (n == 0) {
		if (embedded)
			return 0;
		conf_fail(x, 0,
			  "no listener: add one, e.g. listener "
			  "\"127.0.0.1:2525\" { }");
		return -1;
	}
	if ((c->listeners = calloc(n, sizeof(*c->listeners))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		c->nlisteners = i + 1; /* conf_free() sees what is built */
		if (conf_build_listener(x, cfg_getnsec(cfg, "listener", i), c,
					&c->listeners[i]) != 0)
			return -1;
	}
	return 0;
}

static int
conf_build_networks(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "relay");
	size_t i, n = cfg_size(sec, "networks");
	const char *why;
	char hint[96];

	if (n == 0)
		return 0;
	if ((c->networks = calloc(n, sizeof(*c->networks))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *s = cfg_getnstr(sec, "networks", i);

		/* checked by conf_cidr_cb as it was read */
		if (conf_cidr_parse(s, &c->networks[i], &why, hint,
				    sizeof(hint)) != 0) {
			conf_fail(x, conf_where(x, sec, "networks"),
				  "relay.networks: \"%s\" %s", s, why);
			return -1;
		}
		c->nnetworks = i + 1;
	}
	return 0;
}

static int
conf_build_user(struct conf_ctx *x, cfg_t *sec, struct conf_user *u)
{
	const char *title = cfg_title(sec), *pw, *p;
	unsigned line = conf_sec_line(sec);
	size_t i, n, len;

	if ((u->name = conf_strdup(x, title != NULL ? title : "")) == NULL)
		return -1;
	len = strlen(u->name);
	for (p = u->name; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			break;
	}
	if (len == 0 || len > CONF_USER_NAME_MAX || *p != '\0' ||
	    u->name[0] == ' ' || u->name[len - 1] == ' ') {
		conf_fail(
		    x, line,
		    "user \"%s\": a user name is 1..%d printable characters, "
		    "without leading or trailing spaces",
		    u->name, CONF_USER_NAME_MAX);
		return -1;
	}
	if ((pw = cfg_getstr(sec, "password")) == NULL) {
		conf_fail(
		    x, line,
		    "user \"%s\": password is missing; make one with: outpost "
		    "passwd %s",
		    u->name, u->name);
		return -1;
	}
	if ((u->password_hash = conf_strdup(x, pw)) == NULL)
		return -1;
	if ((n = cfg_size(sec, "sender_domains")) == 0) {
		conf_fail(
		    x, conf_where(x, sec, "sender_domains"),
		    "user \"%s\": sender_domains is missing or empty (list the "
		    "domains this user may send from, or \"*\")",
		    u->name);
		return -1;
	}
	if ((u->sender_domains = calloc(n + 1, sizeof(char *))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		u->sender_domains[i] =
		    conf_strdup(x, cfg_getnstr(sec, "sender_domains", i));
		if (u->sender_domains[i] == NULL)
			return -1;
		u->nsender_domains = i + 1;
	}
	return 0;
}

static int
conf_build_users(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i, n = cfg_size(cfg, "user");

	if (n == 0)
		return 0;
	if ((c->users = calloc(n, sizeof(*c->users))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		c->nusers = i + 1;
		if (conf_build_user(x, cfg_getnsec(cfg, "user", i),
				    &c->users[i]) != 0)
			return -1;
	}
	return 0;
}

static int
conf_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c, bool embedded)
{
	if (conf_build_top(x, cfg, c) != 0 || conf_build_tls(x, cfg, c) != 0 ||
	    conf_build_queue(x, cfg, c) != 0 ||
	    conf_build_limits(x, cfg, c) != 0 ||
	    conf_build_auth_limit(x, cfg, c) != 0 ||
	    conf_build_listeners(x, cfg, c, embedded) != 0 ||
	    conf_build_networks(x, cfg, c) != 0 ||
	    conf_build_users(x, cfg, c) != 0 ||
	    conf_deliver_build(x, cfg, c) != 0 ||
	    conf_dkim_build(x, cfg, c) != 0 ||
	    conf_host_build(x, cfg, c) != 0 ||
	    conf_observe_build(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

/* ---- public ---- */

int
conf_load(struct conf **out, const char *file, char *err, size_t errlen)
{
	struct conf_ctx x = { .err = err, .errlen = errlen };
	const char *label = file != NULL ? file : CONF_EMBEDDED_LABEL;
	struct conf *c = NULL;
	cfg_t *cfg = NULL;
	FILE *fp = NULL;
	int rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen,
				 "%s: conf_load() without a result "
				 "pointer",
				 label);
		return -1;
	}
	*out = NULL;

	pthread_mutex_lock(&conf_mutex);
	conf_cur = &x;
	if (conf_src_load(&x.src, label, file != NULL ? NULL : conf_embedded,
			  err, errlen) != 0) {
		x.failed = true;
		conf_err_clean(err, errlen);
		goto out;
	}
	if ((cfg = cfg_init(conf_opts, CFGF_NONE)) == NULL) {
		conf_fail(&x, 0, "out of memory");
		goto out;
	}
	cfg_set_error_function(cfg, conf_confuse_err_cb);
	if ((fp = fmemopen(x.src.buf, x.src.len, "r")) == NULL) {
		conf_fail(&x, 0, "%s", strerror(errno));
		goto out;
	}
	if (cfg_parse_fp(cfg, fp) != CFG_SUCCESS) {
		/* libconfuse fails some input without a word ("" = 1) */
		conf_fail(&x, conf_cfg_line(cfg), "syntax error");
		goto out;
	}
	if (x.failed)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		conf_fail(&x, 0, "out of memory");
		goto out;
	}
	if ((c->file = conf_strdup(&x, label)) == NULL ||
	    conf_build(&x, cfg, c, file == NULL) != 0)
		goto out;
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (fp != NULL)
		fclose(fp);
	if (cfg != NULL)
		cfg_free(cfg); /* also resets libconfuse's lexer */
	conf_free(c);
	free(x.lines);
	conf_src_free(&x.src);
	conf_cur = NULL;
	pthread_mutex_unlock(&conf_mutex);
	return rc;
}

void
conf_free(struct conf *c)
{
	size_t i, j;

	if (c == NULL)
		return;
	free(c->file);
	free(c->hostname);
	free(c->data_dir);
	free(c->user);
	free(c->hash_key_file);
	free(c->tls.cert_file);
	free(c->tls.key_file);
	free(c->tls.ciphers);
	free(c->queue.path);
	free(c->queue.key_file);
	for (i = 0; i < c->nlisteners; i++) {
		free(c->listeners[i].name);
		free(c->listeners[i].cert_file);
		free(c->listeners[i].key_file);
	}
	free(c->listeners);
	free(c->networks);
	for (i = 0; i < c->nusers; i++) {
		struct conf_user *u = &c->users[i];

		free(u->name);
		free(u->password_hash);
		for (j = 0; j < u->nsender_domains; j++)
			free(u->sender_domains[j]);
		free(u->sender_domains);
	}
	free(c->users);
	conf_host_free(c);
	conf_deliver_free(c);
	conf_dkim_free(c);
	conf_observe_free(c);
	free(c);
}

const struct conf_user *
conf_user_find(const struct conf *c, const char *name)
{
	size_t i;

	if (c == NULL || name == NULL)
		return NULL;
	for (i = 0; i < c->nusers; i++) {
		if (strcmp(c->users[i].name, name) == 0)
			return &c->users[i];
	}
	return NULL;
}

bool
conf_user_may_send(const struct conf_user *u, const char *domain)
{
	size_t i, dl, sl;

	if (u == NULL || domain == NULL || *domain == '\0')
		return false;
	dl = strlen(domain);
	if (domain[dl - 1] == '.')
		dl--; /* tolerate the absolute form */
	for (i = 0; i < u->nsender_domains; i++) {
		const char *s = u->sender_domains[i];

		if (strcmp(s, "*") == 0)
			return true;
		sl = strlen(s);
		if (s[0] == '.') {
			/* ".example.com": a.example.com, not example.com */
			if (dl > sl &&
			    strncasecmp(domain + dl - sl, s, sl) == 0)
				return true;
		} else if (dl == sl && strncasecmp(domain, s, sl) == 0) {
			return true;
		}
	}
	return false;
}

static bool
conf_prefix_match(const uint8_t *net, const uint8_t *a, unsigned bits)
{
	size_t full = bits / 8;
	unsigned rest = bits % 8;
	uint8_t mask;

	if (memcmp(net, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xffu << (8 - rest));
	return (net[full] & mask) == (a[full] & mask);
}

bool
conf_network_match(const struct conf *c, int family, const void *addr)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	const uint8_t *a = addr;
	size_t i;

	if (c == NULL || a == NULL)
		return false;
	if (family == AF_INET6 && memcmp(a, mapped, sizeof(mapped)) == 0) {
		family = AF_INET;
		a += sizeof(mapped);
	}
	if (family != AF_INET && family != AF_INET6)
		return false;
	for (i = 0; i < c->nnetworks; i++) {
		if (c->networks[i].family == family &&
		    conf_prefix_match(c->networks[i].addr, a,
				      c->networks[i].prefix))
			return true;
	}
	return false;
}
