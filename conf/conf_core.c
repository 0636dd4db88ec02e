/*
 * conf_core.c — the sections of the SMTP front: the top-level keys
 * (hostname, data_dir, run_as, threads), tls, queue, limits, auth_limit,
 * relay, listener and user; their schema, their build into struct conf,
 * their release, and the lookups on them (conf_user_find,
 * conf_user_may_send, conf_network_match).
 * Uses conf_ctx.c, conf_num.c and conf_parse.c; conf_dkim_domain_cb for
 * the dkim_domain of user and relay.  Thread: load and free on the main
 * thread, under conf_mutex; lookups on any thread.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "conf/conf_int.h"
#include "dns/dns.h"

#define CONF_USER_NAME_MAX   255
#define CONF_PWHASH_MAX      127 /* crypto_pwhash_STRBYTES - 1 */
#define CONF_ARGON2ID_PREFIX "$argon2id$"

/*
 * TLS versions as OpenSSL numbers them (TLS1_2_VERSION and TLS1_3_VERSION
 * in <openssl/prov_ssl.h>); conf/ does not depend on OpenSSL.
 */
#define CONF_TLS1_2_VERSION 0x0303
#define CONF_TLS1_3_VERSION 0x0304

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

static int
conf_cidr_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char hint[96];
	struct conf_network n;
	const char *why;

	if (conf_cidr_parse(value, &n, &why, hint, sizeof(hint)) != 0) {
		return conf_value_fail(cfg, opt, value, why);
	}
	*(const char **)result = value;
	return 0;
}

/* sender_domains: lower-cased and without a trailing dot on the way in. */
static int
conf_domain_list_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
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
		return conf_value_fail(cfg, opt, value, why);
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

/* ---- schema (assembled into the root by conf.c) ---- */

cfg_opt_t conf_tls_opts[] = {
	CFG_STR_CB("cert_file", "keys/tls.crt", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("key_file", "keys/tls.key", CFGF_NONE, conf_text_cb),
	CFG_BOOL_CB("generate", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("ciphers", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("min_version", "TLSv1.2", CFGF_NONE, conf_tls_version_cb),
	CFG_END(),
};

cfg_opt_t conf_queue_opts[] = {
	CFG_STR_CB("path", "queue", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("key_file", "keys/queue.key", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("map_size", "16G", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("commit_interval", "0ms", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("commit_max_batch", "1024", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("prepare_wait", "2ms", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

cfg_opt_t conf_limits_opts[] = {
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

cfg_opt_t conf_auth_limit_opts[] = {
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

cfg_opt_t conf_relay_opts[] = {
	CFG_STR_LIST_CB("networks", NULL, CFGF_NONE, conf_cidr_cb),
	CFG_STR_CB("pool", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("dkim_domain", NULL, CFGF_NONE, conf_dkim_domain_cb),
	CFG_BOOL_CB("allow_unaligned", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("identity", "relay", CFGF_NONE, conf_text_cb),
	CFG_END(),
};

cfg_opt_t conf_listener_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("tls", "starttls", CFGF_NONE, conf_tls_mode_cb),
	CFG_BOOL_CB("auth", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_BOOL_CB("auth_without_tls", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_BOOL_CB("require_auth", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("cert_file", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("key_file", NULL, CFGF_NONE, conf_text_cb),
	CFG_END(),
};

cfg_opt_t conf_user_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("password", NULL, CFGF_NONE, conf_password_cb),
	CFG_STR_LIST_CB("sender_domains", NULL, CFGF_NONE, conf_domain_list_cb),
	CFG_STR_CB("pool", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("dkim_domain", NULL, CFGF_NONE, conf_dkim_domain_cb),
	CFG_BOOL_CB("allow_unaligned", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("max_messages_per_hour", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_messages_per_day", "0", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

/* ---- build: from libconfuse's tree to struct conf ---- */

unsigned
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
	c->shutdown_timeout_ms =
	    (unsigned)conf_num_get(x, cfg, "shutdown_timeout");
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

	if (l->auth_without_tls &&
	    !dns_addr_is_loopback((const struct sockaddr *)&l->addr)) {
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
	const char *why, *id = cfg_getstr(sec, "identity");
	char hint[96];

	if (id == NULL || id[0] == '\0' || conf_user_find(c, id) != NULL) {
		conf_fail(x, conf_where(x, sec, "identity"),
			  "relay.identity: \"%s\" %s", id ? id : "",
			  id == NULL || id[0] == '\0'
			      ? "is empty"
			      : "is also a user's name");
		return -1;
	}
	if ((c->relay_identity = conf_strdup(x, id)) == NULL)
		return -1;
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
	u->max_messages_per_hour =
	    (unsigned)conf_num_get(x, sec, "max_messages_per_hour");
	u->max_messages_per_day =
	    (unsigned)conf_num_get(x, sec, "max_messages_per_day");
	if (x->failed)
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

int
conf_core_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c, bool embedded)
{
	if (conf_build_top(x, cfg, c) != 0 || conf_build_tls(x, cfg, c) != 0 ||
	    conf_build_queue(x, cfg, c) != 0 ||
	    conf_build_limits(x, cfg, c) != 0 ||
	    conf_build_auth_limit(x, cfg, c) != 0 ||
	    conf_build_listeners(x, cfg, c, embedded) != 0 ||
	    conf_build_users(x, cfg, c) != 0 ||
	    conf_build_networks(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

void
conf_core_free(struct conf *c)
{
	size_t i, j;

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
	free(c->relay_identity);
	for (i = 0; i < c->nusers; i++) {
		struct conf_user *u = &c->users[i];

		free(u->name);
		free(u->password_hash);
		for (j = 0; j < u->nsender_domains; j++)
			free(u->sender_domains[j]);
		free(u->sender_domains);
	}
	free(c->users);
}

/* ---- lookups ---- */

const char *
conf_identity(const struct conf *c, const char *user)
{
	if (user != NULL && user[0] != '\0')
		return user;
	return c != NULL && c->relay_identity != NULL ? c->relay_identity
						      : "relay";
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
