/*
 * conf_num.c — every numeric key with its kind and range (conf_nums), the
 * parse callback that scans and range-checks one (conf_num_cb), the read of
 * a value in its unit at build time (conf_num_get), and the check that one
 * value does not exceed another (conf_order_check).
 * Uses conf_ctx.c and conf_parse.c only.  Thread: main, under conf_mutex.
 * Invariants: a key without a row in conf_nums is an error, never a value.
 */
#include <stdio.h>
#include <string.h>

#include <confuse.h>

#include "conf/conf_int.h"

#define KIB(n)   ((uint64_t)(n) << 10)
#define MIB(n)   ((uint64_t)(n) << 20)
#define GIB(n)   ((uint64_t)(n) << 30)
#define TIB(n)   ((uint64_t)(n) << 40)
#define US_MS(n) ((uint64_t)(n)*1000)
#define US_S(n)  ((uint64_t)(n)*1000000)
#define US_M(n)  (US_S(n) * 60)
#define US_H(n)  (US_M(n) * 60)
#define US_D(n)  (US_H(n) * 24)

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
	{ "root", "shutdown_timeout", CK_MS, US_S(1), US_H(1) },
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
	{ "metrics", "top_destinations", CK_COUNT, 1, 1000 },
	{ "metrics", "top_users", CK_COUNT, 1, 1000 },
	{ "metrics", "queue_scan_interval", CK_MS, 0, US_H(1) },
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
	{ "dns", "max_inflight", CK_COUNT, 1, 65536 },
	{ "user", "max_messages_per_hour", CK_COUNT, 0, 100000000 },
	{ "user", "max_messages_per_day", CK_COUNT, 0, 1000000000 },
	{ "tls_report", "delay", CK_MS, 0, US_D(1) },
	{ "cluster", "nodes", CK_COUNT, 1, 1000 },
	{ "cluster", "timeout", CK_MS, US_MS(10), US_M(1) },
	{ "cluster", "lease", CK_MS, US_S(1), US_H(1) },
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
	{ "delivery", "max_messages_in_memory", CK_COUNT, 100, 10000000 },
	{ "delivery", "threads", CK_COUNT, 0, CONF_THREADS_MAX },
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
	{ "destination", "throttle_factor", CK_COUNT, 1, 99 },
	{ "destination", "throttle_for", CK_MS, US_S(1), US_D(1) },
	{ "destination", "throttle_max_steps", CK_COUNT, 1, 16 },
	{ "destination", "max_mx_addresses", CK_COUNT, 1, 1000 },
	{ "destination", "max_mx_sessions", CK_COUNT, 1, 100 },
	{ "destination", "attempt_timeout", CK_MS, US_S(1), US_H(1) },
	{ "restore", "interval", CK_MS, 0, US_D(1) },
	{ "feedback", "max_report_size", CK_SIZE, KIB(16), MIB(64) },
	{ "feedback", "reports_per_minute", CK_COUNT, 1, 100000 },
	{ "watchdog", "learning", CK_MS, 0, US_D(365) },
	{ "watchdog", "alert_timeout", CK_MS, US_S(1), US_H(1) },
	{ "watchdog", "bounce_window", CK_COUNT, 10, 1024 },
	{ "watchdog", "identities_max", CK_COUNT, 1, 1000000 },
	{ "watchdog", "min_messages", CK_COUNT, 1, 1000000 },
	{ "watchdog_override", "min_messages", CK_COUNT, 1, 1000000 },
	{ "watchdog", "infected", CK_COUNT, 0, 1000000 },
	{ "watchdog_override", "infected", CK_COUNT, 0, 1000000 },
	{ "scan", "timeout", CK_MS, US_MS(100), US_H(1) },
	{ "scan", "connections", CK_COUNT, 1, 64 },
	{ "scan", "max_size", CK_SIZE, KIB(64), GIB(4) - 1 },
	{ "scan", "cache_entries", CK_COUNT, 0, 100000000 },
	{ "scan", "cache_ttl", CK_MS, US_S(1), US_D(30) },
	{ "restore", "command_timeout", CK_MS, US_S(1), US_D(1) },
	{ "restore", "keep_all", CK_MS, 0, US_D(3650) },
	{ "restore", "keep_hourly", CK_MS, 0, US_D(3650) },
	{ "restore", "keep_daily", CK_MS, 0, US_D(3650) },
	{ "retention", "lifetime", CK_MS, US_D(1), US_D(3650) },
	{ "retention", "delivery_log", CK_MS, US_D(1), US_D(3650) },
	{ "retention", "audit_log", CK_MS, US_D(1), US_D(3650) },
	{ "retention", "restore_points", CK_MS, US_H(1), US_D(3650) },
	{ "retention", "history", CK_MS, US_D(1), US_D(3650) },
	{ "retention", "user_data", CK_MS, US_D(1), US_D(3650) },
	/* 0 = no x=; 1s..1m is refused too, by conf_expire_cb */
	{ "dkim_sign", "expire", CK_S, 0, US_D(365) },
};

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
			  "%s: no range defined (a bug in conf_num.c)",
			  opt->name);
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
		conf_fail(x, 0, "%s: no range defined (a bug in conf_num.c)",
			  key);
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
