/*
 * conf_deliver.c — the delivery half of the configuration: the sections
 * dns, delivery, destination, pool and route (schema, parse callbacks,
 * build), the pool references of user and relay, their release, and the
 * lookups conf_destination_find() and conf_route_find().
 * Thread: build and free run inside conf_load()/conf_free() (conf.c's
 * mutex); the lookups read a finished tree from any thread.
 * Invariants: as conf.c — each value is checked as it is read, with its
 * line; every destination is complete (inherited keys copied, regexes
 * compiled) and owns all it points to, so conf_free() frees each once.
 */
#define _DEFAULT_SOURCE /* timegm */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf_int.h"
#include "dns/dns.h"

#define CONF_DNS_PORT          53
#define CONF_DNS_SERVERS_MAX   16
#define CONF_DNS_SERVERS_BYTES 1024 /* normalised, 16 x "[v6]:port," */
#define CONF_RETRY_MAX         32   /* retry_intervals items */
#define CONF_REGEX_MAX_BYTES   1000 /* one suspend_on pattern */
#define CONF_POOL_SOURCES_MAX  256
#define CONF_POOL_NAME_MAX     64
#define CONF_REGEX_FLAGS       (REG_EXTENDED | REG_ICASE | REG_NOSUB)
#define CONF_HOST_MAX          256

/* ---- dns.servers: "ADDR[:PORT],…" ---- */

/*
 * Check S item by item; with OUT, also write the normalised list there
 * ("ADDR:PORT" with the port always written).  -1 with *why, and the item
 * at fault in BAD (BADLEN bytes, cut short if need be).  *NONLOOP (may be
 * NULL): the first item that is not a loopback address, or "".
 */
static int
conf_servers_norm(const char *s, char *out, size_t outlen, char *bad,
		  size_t badlen, const char **why, char *nonloop,
		  size_t nonlooplen)
{
	char item[CONF_HOST_MAX], host[CONF_HOST_MAX], addr[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	const char *p = s, *e;
	size_t n = 0, used = 0, il;
	unsigned port;
	int w;

	snprintf(bad, badlen, "%s", s != NULL ? s : "");
	if (s == NULL || *s == '\0') {
		*why = "is empty (leave servers out to use the system "
		       "resolver)";
		return -1;
	}
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		for (e = p; *e != '\0' && *e != ',' && *e != ' ' && *e != '\t';
		     e++)
			;
		il = (size_t)(e - p);
		if (il == 0) {
			snprintf(bad, badlen, "%s", s);
			*why = "has an empty item";
			return -1;
		}
		snprintf(bad, badlen, "%.*s", (int)il, p);
		if (il >= sizeof(item)) {
			*why = "is not ADDR[:PORT]";
			return -1;
		}
		memcpy(item, p, il);
		item[il] = '\0';
		if (conf_hostport_scan(item, false, host, sizeof(host), &port,
				       &ss, why) != 0)
			return -1;
		if (nonloop != NULL && nonloop[0] == '\0' &&
		    !dns_addr_is_loopback((const struct sockaddr *)&ss))
			snprintf(nonloop, nonlooplen, "%s", item);
		if (++n > CONF_DNS_SERVERS_MAX) {
			snprintf(bad, badlen, "%s", s);
			*why = "lists more than 16 servers";
			return -1;
		}
		if (out != NULL) {
			const void *a =
			    ss.ss_family == AF_INET6
				? (const void *)&((struct sockaddr_in6 *)&ss)
				      ->sin6_addr
				: (const void *)&((struct sockaddr_in *)&ss)
				      ->sin_addr;

			if (inet_ntop(ss.ss_family, a, addr, sizeof(addr)) ==
			    NULL)
				return -1;
			w = snprintf(out + used, outlen - used,
				     ss.ss_family == AF_INET6 ? "%s[%s]:%u"
							      : "%s%s:%u",
				     used > 0 ? "," : "", addr,
				     port != 0 ? port : CONF_DNS_PORT);
			if (w < 0 || (size_t)w >= outlen - used)
				return -1;
			used += (size_t)w;
		}
		while (*e == ' ' || *e == '\t')
			e++;
		if (*e == '\0')
			return 0;
		if (*e != ',') {
			snprintf(bad, badlen, "%s", s);
			*why = "is not a comma-separated list";
			return -1;
		}
		p = e + 1;
	}
}

static int
conf_servers_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char bad[CONF_HOST_MAX];
	const char *why;

	if (conf_servers_norm(value, NULL, 0, bad, sizeof(bad), &why, NULL,
			      0) != 0) {
		return conf_value_fail(cfg, opt, bad, why);
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* ---- other values ---- */

/*
 * retry_intervals: each a duration in range (conf_num_cb), at most
 * CONF_RETRY_MAX, never less than the one before.  libconfuse has added
 * the slot of this value already, so the one before is nvalues - 2.
 */
static int
conf_retry_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	unsigned n = cfg_opt_size(opt);
	uint64_t cur, prev;
	const char *p;

	if (conf_num_cb(cfg, opt, value, result) != 0)
		return -1;
	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (n > CONF_RETRY_MAX) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: more than %d intervals", key, CONF_RETRY_MAX);
		return -1;
	}
	if (n >= 2 && (p = cfg_opt_getnstr(opt, n - 2)) != NULL &&
	    conf_duration_scan(p, &prev, false) == 0 &&
	    conf_duration_scan(value, &cur, false) == 0 && cur < prev) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is less than the interval before it, "
			  "\"%s\" (intervals must not decrease)",
			  key, value, p);
		return -1;
	}
	return 0;
}

/* throttle_on: bounce category names (conf/bounce-categories). */
static int
conf_category_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (conf_bounce_category_lookup(value) == CONF_BC_NONE)
		return conf_value_fail(
		    cfg, opt, value,
		    "is not a bounce category (rate-limited, "
		    "spam-related, policy-related, "
		    "connection, transient-other, ...)");
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* "HOST[:PORT]" as it is read: HOST a name too when NAMES. */
static int
conf_hostport_check(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
		    bool names)
{
	char host[CONF_HOST_MAX];
	struct sockaddr_storage ss;
	const char *why;
	unsigned port;

	if (conf_hostport_scan(value, names, host, sizeof(host), &port, &ss,
			       &why) != 0)
		return conf_value_fail(cfg, opt, value, why);
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* relay_host, route host: "HOST[:PORT]". */
static int
conf_hostport_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_hostport_check(cfg, opt, value, result, true);
}

/* tls_ca_file, tls_ca_path: a path, or "" for the system store. */
static int
conf_ca_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value != NULL && *value == '\0') {
		conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
		*(const char **)result = value;
		return 0;
	}
	return conf_text_cb(cfg, opt, value, result);
}

static const char *const conf_tls_policies[] = { "none",   "may",  "encrypt",
						 "verify", "dane", "dane-only",
						 NULL };

static int
conf_tls_policy_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_tls_policies,
			      "none, may, encrypt, verify, dane, dane-only");
}

/* suspend_on: compiled here to report a bad one with its line. */
static int
conf_regex_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX], msg[256];
	regex_t re;
	int rc;

	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (cfg_opt_size(opt) > CONF_SUSPEND_ON_MAX) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: more than %d patterns", key,
			  CONF_SUSPEND_ON_MAX);
		return -1;
	}
	if (value == NULL || *value == '\0') {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: an empty pattern would match every reply", key);
		return -1;
	}
	if (strlen(value) > CONF_REGEX_MAX_BYTES) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: a pattern longer than %d bytes", key,
			  CONF_REGEX_MAX_BYTES);
		return -1;
	}
	if ((rc = regcomp(&re, value, CONF_REGEX_FLAGS)) != 0) {
		regerror(rc, &re, msg, sizeof(msg));
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is not an extended regular expression: "
			  "%s",
			  key, value, msg);
		return -1;
	}
	regfree(&re);
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

static bool
conf_sockaddr_same(const struct sockaddr_storage *a,
		   const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr,
			      4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* pool source: a bare address, not one listed before it in the pool. */
static int
conf_source_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	struct sockaddr_storage ss, prev;
	unsigned i, n = cfg_opt_size(opt);
	const char *why, *p;
	socklen_t len;

	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (n > CONF_POOL_SOURCES_MAX) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: more than %d addresses", key,
			  CONF_POOL_SOURCES_MAX);
		return -1;
	}
	if (conf_ip_scan(value, &ss, &len, &why) != 0) {
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" %s", key,
			  value != NULL ? value : "", why);
		return -1;
	}
	for (i = 0; i + 1 < n; i++) {
		p = cfg_opt_getnstr(opt, i);
		if (p != NULL && conf_ip_scan(p, &prev, &len, &why) == 0 &&
		    conf_sockaddr_same(&ss, &prev)) {
			conf_fail(conf_cur, conf_cfg_line(cfg),
				  "%s: \"%s\" is listed twice (as \"%s\")", key,
				  value, p);
			return -1;
		}
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* ---- schema ---- */

cfg_opt_t conf_dns_opts[] = {
	CFG_STR_CB("servers", NULL, CFGF_NONE, conf_servers_cb),
	CFG_STR_CB("timeout", "2s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("tries", "2", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("cache_size", "100000", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("min_ttl", "0s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_ttl", "1d", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("negative_ttl_max", "1h", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_inflight", "256", CFGF_NONE, conf_num_cb),
	CFG_BOOL_CB("dnssec", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_END(),
};

/* cluster.redis: "ADDRESS[:PORT]", an IP address (hiredis would look a
 * name up with a blocking call, on the loop). */
static int
conf_redis_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_hostport_check(cfg, opt, value, result, false);
}

/* cluster.prefix: printable, no space (it starts every key). */
static int
conf_prefix_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *p;

	for (p = value; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return conf_value_fail(cfg, opt, value,
					       "holds a space or a "
					       "character that is not "
					       "printable ASCII");
	if (strlen(value) > 64)
		return conf_value_fail(cfg, opt, value,
				       "is longer than 64 characters");
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

cfg_opt_t conf_tls_report_opts[] = {
	CFG_BOOL_CB("enabled", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("organization", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("contact", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("from", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("delay", "1h", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

cfg_opt_t conf_cluster_opts[] = {
	CFG_STR_CB("redis", NULL, CFGF_NONE, conf_redis_cb),
	CFG_STR_CB("password_file", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("node", NULL, CFGF_NONE, conf_prefix_cb),
	CFG_STR_CB("nodes", "1", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("timeout", "500ms", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("lease", "30s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("prefix", "outpost:", CFGF_NONE, conf_prefix_cb),
	CFG_END(),
};

/* The fan-out of one delivery attempt (Postfix: 5 addresses, 2 sessions).
 * Two sessions, so that a backup MX gets its chance after one server that
 * accepts and fails; five addresses cover two hosts with a v4 and a v6
 * address each and one more.  Five minutes bound it even when each wait
 * has its own longer timeout (greeting_timeout is 5m). */
#define CONF_MX_ADDRESSES_DEFAULT    "5"
#define CONF_MX_SESSIONS_DEFAULT     "2"
#define CONF_ATTEMPT_TIMEOUT_DEFAULT "5m"

/*
 * retry_intervals' default is parsed by libconfuse at cfg_init() (no file
 * line: its values count as unset), so "retry_intervals += { … }" in a
 * file extends it and "=" replaces it.
 */
cfg_opt_t conf_delivery_opts[] = {
	CFG_STR_CB("port", "25", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("connect_timeout", "30s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("greeting_timeout", "5m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("command_timeout", "5m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("data_timeout", "10m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("idle_timeout", "10s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_age", "2d", CFGF_NONE, conf_num_cb),
	CFG_STR_LIST_CB("retry_intervals", "{5m, 10m, 20m, 40m, 1h, 2h, 4h}",
			CFGF_NONE, conf_retry_cb),
	CFG_STR_CB("retry_jitter", "10", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("relay_host", NULL, CFGF_NONE, conf_hostport_cb),
	CFG_STR_CB("ehlo", NULL, CFGF_NONE, conf_hostname_cb),
	CFG_STR_CB("max_connections", "1000", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_messages_in_memory", "20000", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("threads", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_mx_addresses", CONF_MX_ADDRESSES_DEFAULT, CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("max_mx_sessions", CONF_MX_SESSIONS_DEFAULT, CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("attempt_timeout", CONF_ATTEMPT_TIMEOUT_DEFAULT, CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("tls_ca_file", NULL, CFGF_NONE, conf_ca_cb),
	CFG_STR_CB("tls_ca_path", NULL, CFGF_NONE, conf_ca_cb),
	CFG_END(),
};

cfg_opt_t conf_destination_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("max_connections", "20", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_messages_per_connection", "100", CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("max_recipients_per_transaction", "50", CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("max_messages_per_minute", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_messages_per_hour", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("tls", "may", CFGF_NONE, conf_tls_policy_cb),
	CFG_BOOL_CB("mta_sts", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_STR_LIST_CB("suspend_on", NULL, CFGF_NONE, conf_regex_cb),
	CFG_STR_CB("suspend_for", "10m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("backoff_pause", "1m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("backoff_max", "30m", CFGF_NONE, conf_num_cb),
	CFG_STR_LIST_CB("throttle_on", NULL, CFGF_NONE, conf_category_cb),
	CFG_STR_CB("throttle_factor", "50", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("throttle_for", "10m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("throttle_max_steps", "4", CFGF_NONE, conf_num_cb),
	/* Not set in "*": delivery's value (conf_dest_from_delivery). */
	CFG_STR_CB("max_mx_addresses", CONF_MX_ADDRESSES_DEFAULT, CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("max_mx_sessions", CONF_MX_SESSIONS_DEFAULT, CFGF_NONE,
		   conf_num_cb),
	CFG_STR_CB("attempt_timeout", CONF_ATTEMPT_TIMEOUT_DEFAULT, CFGF_NONE,
		   conf_num_cb),
	CFG_END(),
};

static cfg_opt_t conf_warmup_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_LIST_CB("daily", NULL, CFGF_NONE, conf_text_cb),
	CFG_END(),
};

cfg_opt_t conf_pool_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_LIST_CB("source", NULL, CFGF_NONE, conf_source_cb),
	CFG_STR_CB("ehlo", NULL, CFGF_NONE, conf_hostname_cb),
	CFG_STR_CB("warmup_start", NULL, CFGF_NONE, conf_text_cb),
	CFG_SEC("warmup", conf_warmup_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END(),
};

cfg_opt_t conf_route_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_CB("host", NULL, CFGF_NONE, conf_hostport_cb),
	CFG_END(),
};

/* ---- build ---- */

static int
conf_build_dns(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "dns");
	struct conf_dns *d = &c->dns;
	char buf[CONF_DNS_SERVERS_BYTES], bad[CONF_HOST_MAX];
	char nonloop[CONF_HOST_MAX] = "";
	const char *s = cfg_getstr(sec, "servers"), *why;

	d->dnssec = cfg_getbool(sec, "dnssec");
	if (d->dnssec && s == NULL) {
		conf_fail(x, conf_where(x, sec, "dnssec"),
			  "dns.dnssec: needs dns.servers: validating resolvers "
			  "on loopback (the AD bit is trusted only from them)");
		return -1;
	}
	if (s != NULL) {
		if (conf_servers_norm(s, buf, sizeof(buf), bad, sizeof(bad),
				      &why, nonloop, sizeof(nonloop)) != 0) {
			/* checked as it was read: only a bug gets here */
			conf_fail(x, conf_where(x, sec, "servers"),
				  "dns.servers: \"%s\" cannot be used", bad);
			return -1;
		}
		if ((d->servers = conf_strdup(x, buf)) == NULL)
			return -1;
		if (d->dnssec && nonloop[0] != '\0') {
			conf_fail(
			    x, conf_where(x, sec, "dnssec"),
			    "dns.dnssec: server %s is not on loopback: the "
			    "AD bit is trusted only from a validating "
			    "resolver on this host (127.0.0.1, ::1)",
			    nonloop);
			return -1;
		}
	}
	d->timeout_ms = (unsigned)conf_num_get(x, sec, "timeout");
	d->tries = (unsigned)conf_num_get(x, sec, "tries");
	d->cache_size = (unsigned)conf_num_get(x, sec, "cache_size");
	d->min_ttl_s = (uint32_t)conf_num_get(x, sec, "min_ttl");
	d->max_ttl_s = (uint32_t)conf_num_get(x, sec, "max_ttl");
	d->negative_ttl_max_s =
	    (uint32_t)conf_num_get(x, sec, "negative_ttl_max");
	d->max_inflight = (unsigned)conf_num_get(x, sec, "max_inflight");
	if (x->failed)
		return -1;
	return conf_order_check(x, sec, "min_ttl", d->min_ttl_s, "max_ttl",
				d->max_ttl_s);
}

static int conf_hostport_get(struct conf_ctx *x, cfg_t *sec, const char *key,
			     unsigned defport, char **host, unsigned *port);

static int
conf_build_cluster(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "cluster");
	struct conf_cluster *k = &c->cluster;
	const char *node = cfg_getstr(sec, "node");
	char host[256];

	k->nodes = (unsigned)conf_num_get(x, sec, "nodes");
	k->timeout_ms = (unsigned)conf_num_get(x, sec, "timeout");
	k->lease_ms = (unsigned)conf_num_get(x, sec, "lease");
	if (x->failed)
		return -1;
	if (cfg_getstr(sec, "redis") == NULL) {
		if (cfg_getstr(sec, "password_file") != NULL) {
			conf_fail(
			    x, conf_where(x, sec, "password_file"),
			    "cluster.password_file without cluster.redis");
			return -1;
		}
		return 0;
	}
	if ((uint64_t)k->timeout_ms * 3 >= k->lease_ms) {
		conf_fail(x, conf_where(x, sec, "timeout"),
			  "cluster.timeout (%u ms) must be under a third of "
			  "cluster.lease (%u ms): a lease is renewed every "
			  "third of its life",
			  k->timeout_ms, k->lease_ms);
		return -1;
	}
	if (node == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "outpost");
		host[sizeof(host) - 1] = '\0';
		node = host;
	}
	if (conf_hostport_get(x, sec, "redis", 6379, &k->redis_host,
			      &k->redis_port) != 0 ||
	    (k->node = conf_strdup(x, node)) == NULL ||
	    (k->prefix = conf_strdup(x, cfg_getstr(sec, "prefix"))) == NULL)
		return -1;
	if (cfg_getstr(sec, "password_file") != NULL &&
	    conf_path_get(x, c, sec, "password_file", &k->password_file) != 0)
		return -1;
	return 0;
}

static int
conf_build_tls_report(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "tls_report");
	struct conf_tls_report *t = &c->tls_report;
	const char *org = cfg_getstr(sec, "organization");
	const char *contact = cfg_getstr(sec, "contact");
	const char *from = cfg_getstr(sec, "from"), *why;
	char def[300];

	t->enabled = cfg_getbool(sec, "enabled");
	t->delay_ms = conf_num_get(x, sec, "delay");
	if (x->failed)
		return -1;
	if (from != NULL && conf_mailbox_check(from, &why) != 0) {
		conf_fail(x, conf_where(x, sec, "from"),
			  "tls_report.from: \"%s\" %s", from, why);
		return -1;
	}
	if ((t->organization =
		 conf_strdup(x, org != NULL ? org : c->hostname)) == NULL)
		return -1;
	snprintf(def, sizeof(def), "postmaster@%s", c->hostname);
	if ((t->contact = conf_strdup(x, contact != NULL ? contact : def)) ==
	    NULL)
		return -1;
	snprintf(def, sizeof(def), "tlsrpt-noreply@%s", c->hostname);
	if ((t->from = conf_strdup(x, from != NULL ? from : def)) == NULL)
		return -1;
	return 0;
}

/* An empty list has no value line: point at the section's closing brace. */
static unsigned
conf_list_line(struct conf_ctx *x, cfg_t *sec, const char *key)
{
	unsigned line = conf_line_of(x, sec, key);

	if (line == 0)
		line = conf_sec_line(sec);
	return line != 0 ? line : conf_cfg_line(sec);
}

static int
conf_build_retry(struct conf_ctx *x, cfg_t *sec, struct conf_delivery *d)
{
	size_t i, n = cfg_size(sec, "retry_intervals");
	uint64_t us;

	if (n == 0) {
		conf_fail(x, conf_list_line(x, sec, "retry_intervals"),
			  "delivery.retry_intervals: the list is empty (give "
			  "at least one interval, e.g. { \"10m\" })");
		return -1;
	}
	d->retry_intervals_ms = calloc(n, sizeof(*d->retry_intervals_ms));
	if (d->retry_intervals_ms == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		/* checked by conf_retry_cb as it was read */
		if (conf_duration_scan(cfg_getnstr(sec, "retry_intervals", i),
				       &us, false) != 0) {
			conf_fail(x, conf_where(x, sec, "retry_intervals"),
				  "delivery.retry_intervals: bad item");
			return -1;
		}
		d->retry_intervals_ms[i] = us / 1000;
	}
	d->nretry_intervals = n;
	return 0;
}

/* "HOST[:PORT]" of SEC's KEY into *host and *port (default DEFPORT). */
static int
conf_hostport_get(struct conf_ctx *x, cfg_t *sec, const char *key,
		  unsigned defport, char **host, unsigned *port)
{
	char name[CONF_KEY_MAX], h[CONF_HOST_MAX];
	const char *s = cfg_getstr(sec, key), *why;
	struct sockaddr_storage ss;

	if (conf_hostport_scan(s, true, h, sizeof(h), port, &ss, &why) != 0) {
		conf_key_name(sec, key, name, sizeof(name));
		conf_fail(x, conf_where(x, sec, key), "%s: \"%s\" %s", name,
			  s != NULL ? s : "", why);
		return -1;
	}
	if (*port == 0)
		*port = defport;
	*host = conf_strdup(x, h);
	return *host != NULL ? 0 : -1;
}

static int
conf_ca_get(struct conf_ctx *x, const struct conf *c, cfg_t *sec,
	    const char *key, char **out)
{
	const char *s = cfg_getstr(sec, key);

	*out = NULL;
	if (s == NULL || *s == '\0')
		return 0; /* the system store */
	return conf_path_get(x, c, sec, key, out);
}

static int
conf_build_delivery(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "delivery");
	struct conf_delivery *d = &c->delivery;
	const char *s;

	d->port = (unsigned)conf_num_get(x, sec, "port");
	d->connect_timeout_ms =
	    (unsigned)conf_num_get(x, sec, "connect_timeout");
	d->greeting_timeout_ms =
	    (unsigned)conf_num_get(x, sec, "greeting_timeout");
	d->command_timeout_ms =
	    (unsigned)conf_num_get(x, sec, "command_timeout");
	d->data_timeout_ms = (unsigned)conf_num_get(x, sec, "data_timeout");
	d->idle_timeout_ms = (unsigned)conf_num_get(x, sec, "idle_timeout");
	d->max_age_ms = conf_num_get(x, sec, "max_age");
	d->retry_jitter_pct = (unsigned)conf_num_get(x, sec, "retry_jitter");
	d->max_connections = (unsigned)conf_num_get(x, sec, "max_connections");
	d->max_rounds =
	    (unsigned)conf_num_get(x, sec, "max_messages_in_memory");
	d->threads = conf_threads(conf_num_get(x, sec, "threads"));
	d->max_mx_addresses =
	    (unsigned)conf_num_get(x, sec, "max_mx_addresses");
	d->max_mx_sessions = (unsigned)conf_num_get(x, sec, "max_mx_sessions");
	d->attempt_timeout_ms =
	    (unsigned)conf_num_get(x, sec, "attempt_timeout");
	if (x->failed || conf_build_retry(x, sec, d) != 0)
		return -1;
	if (cfg_getstr(sec, "relay_host") != NULL &&
	    conf_hostport_get(x, sec, "relay_host", d->port, &d->relay_host,
			      &d->relay_port) != 0)
		return -1;
	s = cfg_getstr(sec, "ehlo");
	if ((d->ehlo = conf_strdup(x, s != NULL ? s : c->hostname)) == NULL)
		return -1;
	if (conf_ca_get(x, c, sec, "tls_ca_file", &d->tls_ca_file) != 0 ||
	    conf_ca_get(x, c, sec, "tls_ca_path", &d->tls_ca_path) != 0)
		return -1;
	return 0;
}

/*
 * The title of a destination or route: lower-cased, without a trailing
 * dot, into a new string.  "*" only when ALLOW_STAR.
 */
static char *
conf_title_domain(struct conf_ctx *x, cfg_t *sec, bool allow_star)
{
	const char *title = cfg_title(sec), *why;
	unsigned line = conf_sec_line(sec);
	char *d;
	size_t i, len;

	if ((d = conf_strdup(x, title != NULL ? title : "")) == NULL)
		return NULL;
	len = strlen(d);
	for (i = 0; i < len; i++) {
		if (d[i] >= 'A' && d[i] <= 'Z')
			d[i] = (char)(d[i] - 'A' + 'a');
	}
	if (len > 1 && d[len - 1] == '.')
		d[--len] = '\0';
	if (strcmp(d, "*") == 0 && !allow_star) {
		conf_fail(x, line, "%s \"%s\": %s", sec->name, title,
			  strcmp(sec->name, "route") == 0
			      ? "a route is for a domain; to send every "
				"domain to one host use delivery.relay_host"
			      : "the defaults are destination \"*\"");
		goto fail;
	}
	if (strncmp(d, "*.", 2) == 0) {
		conf_fail(x, line,
			  "%s \"%s\": write \"%s\" for the subdomains of %s",
			  sec->name, title, d + 1, d + 2);
		goto fail;
	}
	if (conf_domain_check(d, true, &why) != 0) {
		conf_fail(x, line, "%s \"%s\": the domain %s", sec->name,
			  title != NULL ? title : "", why);
		goto fail;
	}
	return d;
fail:
	free(d);
	return NULL;
}

/* Numeric keys of a destination and where they go. */
static const struct conf_dest_num {
	const char *key;
	size_t off;
	bool u64; /* uint64_t (a duration in ms), else unsigned */
} conf_dest_nums[] = {
	{ "max_connections", offsetof(struct conf_destination, max_connections),
	  false },
	{ "max_messages_per_connection",
	  offsetof(struct conf_destination, max_messages_per_connection),
	  false },
	{ "max_recipients_per_transaction",
	  offsetof(struct conf_destination, max_recipients_per_transaction),
	  false },
	{ "max_messages_per_minute",
	  offsetof(struct conf_destination, max_messages_per_minute), false },
	{ "max_messages_per_hour",
	  offsetof(struct conf_destination, max_messages_per_hour), false },
	{ "suspend_for", offsetof(struct conf_destination, suspend_for_ms),
	  true },
	{ "backoff_pause", offsetof(struct conf_destination, backoff_pause_ms),
	  true },
	{ "backoff_max", offsetof(struct conf_destination, backoff_max_ms),
	  true },
	{ "throttle_factor", offsetof(struct conf_destination, throttle_factor),
	  false },
	{ "throttle_for", offsetof(struct conf_destination, throttle_for_ms),
	  true },
	{ "throttle_max_steps",
	  offsetof(struct conf_destination, throttle_max_steps), false },
	{ "max_mx_addresses",
	  offsetof(struct conf_destination, max_mx_addresses), false },
	{ "max_mx_sessions", offsetof(struct conf_destination, max_mx_sessions),
	  false },
	{ "attempt_timeout",
	  offsetof(struct conf_destination, attempt_timeout_ms), false },
};

/* Destination "*" takes what it leaves out of these from delivery { }. */
static void
conf_dest_from_delivery(cfg_t *star, const struct conf_delivery *dl,
			struct conf_destination *d)
{
	if (!conf_is_set(star, "max_mx_addresses"))
		d->max_mx_addresses = dl->max_mx_addresses;
	if (!conf_is_set(star, "max_mx_sessions"))
		d->max_mx_sessions = dl->max_mx_sessions;
	if (!conf_is_set(star, "attempt_timeout"))
		d->attempt_timeout_ms = dl->attempt_timeout_ms;
}

/* suspend_on: SEC's own list, or (not set there) a copy of BASE's. */
static int
conf_dest_suspend(struct conf_ctx *x, cfg_t *sec,
		  const struct conf_destination *base,
		  struct conf_destination *d)
{
	bool own = base == NULL || conf_is_set(sec, "suspend_on");
	size_t i, n = own ? cfg_size(sec, "suspend_on") : base->nsuspend_on;
	regex_t *re;

	if (n == 0)
		return 0;
	d->suspend_on = calloc(n + 1, sizeof(char *));
	d->suspend_re = re = calloc(n, sizeof(regex_t));
	if (d->suspend_on == NULL || re == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *p = own ? cfg_getnstr(sec, "suspend_on", i)
				    : base->suspend_on[i];

		if ((d->suspend_on[i] = conf_strdup(x, p)) == NULL)
			return -1;
		/* checked by conf_regex_cb as it was read */
		if (regcomp(&re[i], p, CONF_REGEX_FLAGS) != 0) {
			free(d->suspend_on[i]);
			d->suspend_on[i] = NULL;
			conf_fail(x, conf_where(x, sec, "suspend_on"),
				  "%s \"%s\".suspend_on: \"%s\" does not "
				  "compile",
				  sec->name, cfg_title(sec), p);
			return -1;
		}
		d->nsuspend_on = i + 1; /* conf_free() frees what is built */
	}
	return 0;
}

/*
 * Fill D from destination section SEC; a key SEC leaves out comes from
 * BASE (NULL for "*" itself: the built-in defaults, i.e. the schema's).
 */
static int
conf_dest_fill(struct conf_ctx *x, cfg_t *sec,
	       const struct conf_destination *base, struct conf_destination *d)
{
	char lo[32], hi[32];
	unsigned l1, l2;
	const char *s;
	size_t i;

	for (i = 0; i < sizeof(conf_dest_nums) / sizeof(conf_dest_nums[0]);
	     i++) {
		const struct conf_dest_num *k = &conf_dest_nums[i];
		char *to = (char *)d + k->off;
		uint64_t v;

		if (base != NULL && !conf_is_set(sec, k->key)) {
			memcpy(to, (const char *)base + k->off,
			       k->u64 ? sizeof(uint64_t) : sizeof(unsigned));
			continue;
		}
		v = conf_num_get(x, sec, k->key);
		if (k->u64)
			memcpy(to, &v, sizeof(v));
		else
			*(unsigned *)(void *)to = (unsigned)v;
	}
	if (x->failed)
		return -1;
	if (base != NULL && !conf_is_set(sec, "tls")) {
		d->tls = base->tls;
	} else {
		s = cfg_getstr(sec, "tls");
		d->tls = strcmp(s, "none") == 0        ? CONF_TLSP_NONE
			 : strcmp(s, "encrypt") == 0   ? CONF_TLSP_ENCRYPT
			 : strcmp(s, "verify") == 0    ? CONF_TLSP_VERIFY
			 : strcmp(s, "dane") == 0      ? CONF_TLSP_DANE
			 : strcmp(s, "dane-only") == 0 ? CONF_TLSP_DANE_ONLY
						       : CONF_TLSP_MAY;
	}
	d->mta_sts = base != NULL && !conf_is_set(sec, "mta_sts")
			 ? base->mta_sts
			 : cfg_getbool(sec, "mta_sts");
	if (conf_dest_suspend(x, sec, base, d) != 0)
		return -1;
	if (base != NULL && !conf_is_set(sec, "throttle_on")) {
		d->throttle_on = base->throttle_on;
	} else {
		for (i = 0; i < cfg_size(sec, "throttle_on"); i++)
			d->throttle_on |=
			    UINT32_C(1) << conf_bounce_category_lookup(
				cfg_getnstr(sec, "throttle_on", (unsigned)i));
	}
	if (d->backoff_pause_ms > d->backoff_max_ms) {
		/* one of the two is set here, or "*" would have failed */
		l1 = conf_line_of(x, sec, "backoff_pause");
		l2 = conf_line_of(x, sec, "backoff_max");
		conf_duration_format(d->backoff_pause_ms * 1000, lo,
				     sizeof(lo));
		conf_duration_format(d->backoff_max_ms * 1000, hi, sizeof(hi));
		conf_fail(x, l1 > l2 ? l1 : l2,
			  "%s \"%s\": backoff_pause (%s) is more than "
			  "backoff_max (%s)",
			  sec->name, cfg_title(sec), lo, hi);
		return -1;
	}
	return 0;
}

/*
 * "*" first (added to the tree with the built-in defaults when the file
 * has none), so that each listed destination can inherit from it.
 */
static int
conf_build_destinations(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *star = cfg_gettsec(cfg, "destination", "*");
	size_t i, j, k, n;

	if (star == NULL &&
	    (star = cfg_addtsec(cfg, "destination", "*")) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	if (conf_dest_fill(x, star, NULL, &c->dest_default) != 0)
		return -1;
	conf_dest_from_delivery(star, &c->delivery, &c->dest_default);
	n = cfg_size(cfg, "destination") - 1;
	if (n == 0)
		return 0;
	if ((c->destinations = calloc(n, sizeof(*c->destinations))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0, k = 0; k < n; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "destination", (unsigned)i);
		struct conf_destination *d = &c->destinations[k];

		if (sec == star)
			continue;
		c->ndestinations = ++k;
		if ((d->domain = conf_title_domain(x, sec, false)) == NULL)
			return -1;
		for (j = 0; j + 1 < k; j++) {
			if (strcmp(c->destinations[j].domain, d->domain) == 0) {
				conf_fail(x, conf_sec_line(sec),
					  "destination \"%s\": the same domain "
					  "as destination \"%s\"",
					  cfg_title(sec),
					  c->destinations[j].domain);
				return -1;
			}
		}
		if (conf_dest_fill(x, sec, &c->dest_default, d) != 0)
			return -1;
	}
	return 0;
}

/* warmup_start: "YYYY-MM-DD", UTC.  0, or -1 with the failure said. */
static int
conf_build_warmup_start(struct conf_ctx *x, cfg_t *sec, struct conf_pool *p)
{
	const char *s = cfg_getstr(sec, "warmup_start");
	struct tm tm;
	int y, m, d, n = 0;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 ||
	    s[n] != '\0' || n != 10 || y < 2000 || y > 2999 || m < 1 ||
	    m > 12 || d < 1 || d > 31) {
		conf_fail(x, conf_where(x, sec, "warmup_start"),
			  "pool \"%s\": warmup needs warmup_start = "
			  "\"YYYY-MM-DD\" (the UTC day that is day 1)%s%s%s",
			  p->name, s != NULL ? ", not \"" : "",
			  s != NULL ? s : "", s != NULL ? "\"" : "");
		return -1;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	p->warmup_start_ms = (int64_t)timegm(&tm) * 1000;
	return 0;
}

/* POOL's warmup sections (and warmup_start, which they need). */
static int
conf_build_warmups(struct conf_ctx *x, cfg_t *sec, struct conf_pool *p)
{
	size_t i, k, n = cfg_size(sec, "warmup"), nd;
	const char *why;
	char *end;

	if (n == 0) {
		if (cfg_getstr(sec, "warmup_start") != NULL) {
			conf_fail(x, conf_where(x, sec, "warmup_start"),
				  "pool \"%s\": warmup_start without a "
				  "warmup section",
				  p->name);
			return -1;
		}
		return 0;
	}
	if (conf_build_warmup_start(x, sec, p) != 0)
		return -1;
	if ((p->warmups = calloc(n, sizeof(*p->warmups))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		cfg_t *w = cfg_getnsec(sec, "warmup", (unsigned)i);
		struct conf_warmup *cw = &p->warmups[i];
		const char *title = cfg_title(w);
		unsigned line = conf_sec_line(w);

		p->nwarmups = i + 1;
		if ((cw->dest = conf_strdup(x, title)) == NULL)
			return -1;
		for (k = 0; cw->dest[k] != '\0'; k++)
			cw->dest[k] = (char)tolower((unsigned char)cw->dest[k]);
		if (strcmp(cw->dest, "*") != 0 &&
		    conf_domain_check(cw->dest[0] == '.' ? cw->dest + 1
							 : cw->dest,
				      false, &why) != 0) {
			conf_fail(x, line, "pool \"%s\": warmup \"%s\": %s",
				  p->name, title, why);
			return -1;
		}
		if ((nd = cfg_size(w, "daily")) == 0) {
			conf_fail(x, line,
				  "pool \"%s\": warmup \"%s\": daily is "
				  "missing or empty (messages per address on "
				  "day 1, 2, ...)",
				  p->name, title);
			return -1;
		}
		if ((cw->daily = calloc(nd, sizeof(*cw->daily))) == NULL) {
			conf_fail(x, 0, "out of memory");
			return -1;
		}
		for (k = 0; k < nd; k++) {
			const char *v = cfg_getnstr(w, "daily", (unsigned)k);
			unsigned long long u;

			errno = 0;
			u = strtoull(v, &end, 10);
			if (v[0] < '0' || v[0] > '9' || *end != '\0' ||
			    errno != 0 || u < 1 || u > 100000000) {
				conf_fail(x, conf_where(x, w, "daily"),
					  "pool \"%s\": warmup \"%s\".daily: "
					  "\"%s\" is not a whole number of "
					  "1..100000000",
					  p->name, title, v);
				return -1;
			}
			cw->daily[k] = (unsigned)u;
		}
		cw->ndays = nd;
	}
	return 0;
}

static int
conf_build_pool(struct conf_ctx *x, cfg_t *sec, struct conf *c,
		struct conf_pool *p)
{
	const char *title = cfg_title(sec), *s, *why;
	unsigned line = conf_sec_line(sec);
	size_t i, n, len;
	socklen_t sl;

	if ((p->name = conf_strdup(x, title != NULL ? title : "")) == NULL)
		return -1;
	len = strlen(p->name);
	for (i = 0; i < len; i++) {
		char ch = p->name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-'))
			break;
	}
	if (len == 0 || len > CONF_POOL_NAME_MAX || i < len) {
		conf_fail(x, line,
			  "pool \"%s\": a pool name is 1..%d letters, digits, "
			  "'.', '_' or '-'",
			  p->name, CONF_POOL_NAME_MAX);
		return -1;
	}
	for (i = 0; &c->pools[i] != p; i++) {
		if (strcasecmp(c->pools[i].name, p->name) == 0) {
			conf_fail(x, line,
				  "pool \"%s\": the same name as pool \"%s\" "
				  "(names are not case-sensitive)",
				  p->name, c->pools[i].name);
			return -1;
		}
	}
	if ((n = cfg_size(sec, "source")) == 0) {
		conf_fail(x, line,
			  "pool \"%s\": source is missing or empty (list the "
			  "addresses to send from, e.g. source = { "
			  "\"192.0.2.1\" })",
			  p->name);
		return -1;
	}
	if ((p->sources = calloc(n, sizeof(*p->sources))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		s = cfg_getnstr(sec, "source", (unsigned)i);
		/* checked by conf_source_cb as it was read */
		if (conf_ip_scan(s, &p->sources[i], &sl, &why) != 0) {
			conf_fail(x, conf_where(x, sec, "source"),
				  "pool \"%s\".source: \"%s\" %s", p->name, s,
				  why);
			return -1;
		}
	}
	p->nsources = n;
	if ((s = cfg_getstr(sec, "ehlo")) != NULL &&
	    (p->ehlo = conf_strdup(x, s)) == NULL)
		return -1;
	return conf_build_warmups(x, sec, p);
}

uint64_t
conf_pool_warmup(const struct conf_pool *p, const char *dest, int64_t now_ms)
{
	const struct conf_warmup *w = NULL;
	int64_t day;
	size_t i;

	for (i = 0; i < p->nwarmups; i++) {
		if (strcasecmp(p->warmups[i].dest, dest) == 0) {
			w = &p->warmups[i];
			break;
		}
		if (strcmp(p->warmups[i].dest, "*") == 0)
			w = &p->warmups[i];
	}
	if (w == NULL)
		return 0;
	day = now_ms < p->warmup_start_ms
		  ? 0
		  : (now_ms - p->warmup_start_ms) / 86400000;
	if ((uint64_t)day >= w->ndays)
		return 0;
	return (uint64_t)w->daily[day] * p->nsources;
}

static int
conf_build_pools(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i, n = cfg_size(cfg, "pool");

	if (n == 0)
		return 0;
	if ((c->pools = calloc(n, sizeof(*c->pools))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		c->npools = i + 1;
		if (conf_build_pool(x, cfg_getnsec(cfg, "pool", (unsigned)i), c,
				    &c->pools[i]) != 0)
			return -1;
	}
	for (i = 0; i < n; i++) {
		if (strcasecmp(c->pools[i].name, "default") == 0)
			c->default_pool = &c->pools[i];
	}
	return 0;
}

/* `pool = "NAME"` of SEC: the pool, NULL when unset; -1 when undefined. */
static int
conf_pool_ref(struct conf_ctx *x, const struct conf *c, cfg_t *sec,
	      const struct conf_pool **out)
{
	const char *name = cfg_getstr(sec, "pool");
	char key[CONF_KEY_MAX];
	size_t i;

	*out = NULL;
	if (name == NULL)
		return 0;
	for (i = 0; i < c->npools; i++) {
		if (strcasecmp(c->pools[i].name, name) == 0) {
			*out = &c->pools[i];
			return 0;
		}
	}
	conf_key_name(sec, "pool", key, sizeof(key));
	conf_fail(x, conf_where(x, sec, "pool"),
		  "%s: no pool \"%s\" is defined (add pool \"%s\" { source = "
		  "{ ... } })",
		  key, name, name);
	return -1;
}

static int
conf_build_pool_refs(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i;

	for (i = 0; i < c->nusers; i++) {
		if (conf_pool_ref(x, c, cfg_getnsec(cfg, "user", (unsigned)i),
				  &c->users[i].pool) != 0)
			return -1;
	}
	return conf_pool_ref(x, c, cfg_getsec(cfg, "relay"), &c->relay_pool);
}

static int
conf_build_route(struct conf_ctx *x, cfg_t *sec, struct conf *c,
		 struct conf_route *r)
{
	size_t i;

	if ((r->domain = conf_title_domain(x, sec, false)) == NULL)
		return -1;
	for (i = 0; &c->routes[i] != r; i++) {
		if (strcmp(c->routes[i].domain, r->domain) == 0) {
			conf_fail(x, conf_sec_line(sec),
				  "route \"%s\": the same domain as route "
				  "\"%s\"",
				  cfg_title(sec), c->routes[i].domain);
			return -1;
		}
	}
	if (cfg_getstr(sec, "host") == NULL) {
		conf_fail(x, conf_sec_line(sec),
			  "route \"%s\": host is missing (e.g. host = "
			  "\"mx.example.net:25\")",
			  cfg_title(sec));
		return -1;
	}
	return conf_hostport_get(x, sec, "host", c->delivery.port, &r->host,
				 &r->port);
}

static int
conf_build_routes(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i, n = cfg_size(cfg, "route");

	if (n == 0)
		return 0;
	if ((c->routes = calloc(n, sizeof(*c->routes))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		c->nroutes = i + 1;
		if (conf_build_route(x, cfg_getnsec(cfg, "route", (unsigned)i),
				     c, &c->routes[i]) != 0)
			return -1;
	}
	return 0;
}

int
conf_deliver_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	if (conf_build_dns(x, cfg, c) != 0 ||
	    conf_build_cluster(x, cfg, c) != 0 ||
	    conf_build_tls_report(x, cfg, c) != 0 ||
	    conf_build_delivery(x, cfg, c) != 0 ||
	    conf_build_pools(x, cfg, c) != 0 ||
	    conf_build_pool_refs(x, cfg, c) != 0 ||
	    conf_build_destinations(x, cfg, c) != 0 ||
	    conf_build_routes(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

static void
conf_dest_free(struct conf_destination *d)
{
	regex_t *re = d->suspend_re;
	size_t i;

	free(d->domain);
	for (i = 0; i < d->nsuspend_on; i++) {
		free(d->suspend_on[i]);
		regfree(&re[i]);
	}
	free(d->suspend_on);
	free(d->suspend_re);
}

void
conf_deliver_free(struct conf *c)
{
	size_t i, k;

	free(c->dns.servers);
	free(c->tls_report.organization);
	free(c->tls_report.contact);
	free(c->tls_report.from);
	free(c->cluster.redis_host);
	free(c->cluster.password_file);
	free(c->cluster.node);
	free(c->cluster.prefix);
	free(c->delivery.retry_intervals_ms);
	free(c->delivery.relay_host);
	free(c->delivery.ehlo);
	free(c->delivery.tls_ca_file);
	free(c->delivery.tls_ca_path);
	conf_dest_free(&c->dest_default);
	for (i = 0; i < c->ndestinations; i++)
		conf_dest_free(&c->destinations[i]);
	free(c->destinations);
	for (i = 0; i < c->npools; i++) {
		free(c->pools[i].name);
		free(c->pools[i].sources);
		free(c->pools[i].ehlo);
		for (k = 0; k < c->pools[i].nwarmups; k++) {
			free(c->pools[i].warmups[k].dest);
			free(c->pools[i].warmups[k].daily);
		}
		free(c->pools[i].warmups);
	}
	free(c->pools);
	for (i = 0; i < c->nroutes; i++) {
		free(c->routes[i].domain);
		free(c->routes[i].host);
	}
	free(c->routes);
}

/* ---- lookups ---- */

/*
 * The element of ARR (N of SIZE bytes, a lower-case `char *` name at OFF)
 * named DOMAIN exactly, else ".PARENT" for the nearest parent, else NULL.
 */
static const void *
conf_domain_match(const void *arr, size_t n, size_t size, size_t off,
		  const char *domain)
{
	const char *p, *end;
	size_t dl, i;

	if (arr == NULL || domain == NULL || *domain == '\0' || *domain == '.')
		return NULL;
	dl = strlen(domain);
	if (domain[dl - 1] == '.')
		dl--; /* tolerate the absolute form */
	end = domain + dl;
	for (p = domain; p != NULL;
	     p = memchr(p + 1, '.', (size_t)(end - (p + 1)))) {
		size_t pl = (size_t)(end - p);

		for (i = 0; i < n; i++) {
			const char *el = (const char *)arr + i * size;
			const char *name =
			    *(char *const *)(const void *)(el + off);

			if (strlen(name) == pl && strncasecmp(name, p, pl) == 0)
				return el;
		}
		if (p + 1 >= end)
			break;
	}
	return NULL;
}

const struct conf_destination *
conf_destination_find(const struct conf *c, const char *domain)
{
	const struct conf_destination *d;

	if (c == NULL)
		return NULL;
	d = conf_domain_match(c->destinations, c->ndestinations, sizeof(*d),
			      offsetof(struct conf_destination, domain),
			      domain);
	return d != NULL ? d : &c->dest_default;
}

const struct conf_route *
conf_route_find(const struct conf *c, const char *domain)
{
	if (c == NULL)
		return NULL;
	return conf_domain_match(c->routes, c->nroutes,
				 sizeof(struct conf_route),
				 offsetof(struct conf_route, domain), domain);
}
