/*
 * conf.c — the top of conf/: the root of the libconfuse schema assembled
 * from every section's options, conf_load() (preprocess, parse, build each
 * part in order) and conf_free().  The sections live in conf_core.c (top
 * keys, tls, queue, limits, auth_limit, relay, listener, user),
 * conf_deliver.c (dns, delivery, destination, pool, route), conf_dkim.c
 * (dkim, dkim_sign, dmarc), conf_observe.c (log, metrics, control),
 * conf_keep.c (restore, retention) and conf_bounce.c (bounce);
 * conf_host.c records what conf_check_host() checks.  They share the load
 * context, errors and callbacks of conf_ctx.c and the ranges of conf_num.c;
 * none of them calls into this file.
 * Thread: conf_load()/conf_free() on the main thread; conf_load() holds
 * conf_mutex throughout (libconfuse's lexer is global state, and callbacks
 * reach the load in progress through conf_cur).
 * Invariants: errors are "file:line: message" ("file: message" when no
 * line applies), the first one wins; nothing is created on disk; a tree
 * handed out is complete and never changes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <confuse.h>

#include "conf/conf_int.h"

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

/* libconfuse's lexer is global: one load at a time (conf_cur is it). */
static pthread_mutex_t conf_mutex = PTHREAD_MUTEX_INITIALIZER;

static cfg_opt_t conf_opts[] = {
	CFG_STR_CB("hostname", NULL, CFGF_NONE, conf_hostname_cb),
	CFG_STR_CB("data_dir", "./var", CFGF_NONE, conf_text_cb),
	CFG_STR_CB("run_as", "outpost", CFGF_NONE, conf_text_cb),
	CFG_BOOL_CB("allow_root", cfg_false, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("hash_key_file", "keys/loghash.key", CFGF_NONE,
		   conf_text_cb),
	CFG_STR_CB("smtp_threads", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("worker_threads", "0", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("shutdown_timeout", "10s", CFGF_NONE, conf_num_cb),
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
	CFG_SEC("cluster", conf_cluster_opts, CFGF_NONE),
	CFG_SEC("tls_report", conf_tls_report_opts, CFGF_NONE),
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
	CFG_SEC("restore", conf_restore_opts, CFGF_NONE),
	CFG_SEC("retention", conf_retention_opts, CFGF_NONE),
	CFG_SEC("suppress", conf_suppress_opts, CFGF_NONE),
	CFG_SEC("bounce", conf_bounce_opts, CFGF_NONE),
	CFG_SEC("feedback", conf_feedback_opts, CFGF_NONE),
	CFG_SEC("watchdog", conf_watchdog_opts, CFGF_NONE),
	CFG_SEC("scan", conf_scan_opts, CFGF_NONE),
	CFG_SEC("watchdog_override", conf_watchdog_override_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END(),
};

static int
conf_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c, bool embedded)
{
	if (conf_core_build(x, cfg, c, embedded) != 0 ||
	    conf_deliver_build(x, cfg, c) != 0 ||
	    conf_dkim_build(x, cfg, c) != 0 ||
	    conf_host_build(x, cfg, c) != 0 ||
	    conf_observe_build(x, cfg, c) != 0 ||
	    conf_keep_build(x, cfg, c) != 0 ||
	    conf_suppress_build(x, cfg, c) != 0 ||
	    conf_bounce_build(x, cfg, c, embedded) != 0 ||
	    conf_feedback_build(x, cfg, c) != 0 ||
	    conf_watchdog_build(x, cfg, c) != 0 ||
	    conf_scan_build(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

/* conf_load's work; with PRINT, a tree that passed every check is also
 * printed there (conf_print_cfg) before libconfuse's copy is freed. */
static int
conf_load_print(struct conf **out, const char *file, FILE *print, bool all,
		char *err, size_t errlen)
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
	c->refs = 1;
	if ((c->file = conf_strdup(&x, label)) == NULL ||
	    conf_build(&x, cfg, c, file == NULL) != 0)
		goto out;
	if (print != NULL && conf_print_cfg(cfg, print, all) != 0) {
		conf_fail(&x, 0, "cannot print: %s", strerror(errno));
		goto out;
	}
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

int
conf_load(struct conf **out, const char *file, char *err, size_t errlen)
{
	return conf_load_print(out, file, NULL, false, err, errlen);
}

int
conf_print(FILE *fp, const char *file, bool all, char *err, size_t errlen)
{
	struct conf *c = NULL;
	int rc;

	rc = conf_load_print(&c, file, fp, all, err, errlen);
	conf_free(c);
	return rc;
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	free(c->file);
	conf_core_free(c);
	conf_host_free(c);
	conf_deliver_free(c);
	conf_dkim_free(c);
	conf_observe_free(c);
	conf_keep_free(c);
	conf_bounce_free(c);
	conf_feedback_free(c);
	conf_watchdog_free(c);
	conf_scan_free(c);
	free(c);
}
