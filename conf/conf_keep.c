/*
 * conf_keep.c — what Outpost keeps and for how long: the sections restore
 * (restore points of the queue: when, where, the off-site copies, which
 * points are kept) and retention (the lifetime of every store: delivery
 * and audit log files, restore points, per-recipient and per-user history,
 * the data of a user removed from the configuration).
 * Uses conf_ctx.c and conf_num.c only.  Thread: main, under conf_mutex.
 * Invariants: every lifetime is set (a key not written takes
 * retention.lifetime); nothing is kept longer than its lifetime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <confuse.h>

#include "conf/conf_int.h"

cfg_opt_t conf_restore_opts[] = {
	/* 0: no restore points. */
	CFG_STR_CB("interval", "5m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("dir", "restore", CFGF_NONE, conf_text_cb),
	/* A directory on another mount that each point is copied into. */
	CFG_STR_CB("copy_to", NULL, CFGF_NONE, conf_text_cb),
	/* A program and its arguments, run with the new point's path
	 * appended (no shell). */
	CFG_STR_LIST_CB("command", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("command_timeout", "10m", CFGF_NONE, conf_num_cb),
	/* Every point younger than keep_all; one an hour younger than
	 * keep_hourly; one a day younger than keep_daily; none older. */
	CFG_STR_CB("keep_all", "1h", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("keep_hourly", "1d", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("keep_daily", "7d", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

/* Lifetimes; each key not written takes "lifetime". */
static const char *const conf_retention_keys[] = {
	"delivery_log", "audit_log", "restore_points", "history", "user_data",
};

cfg_opt_t conf_retention_opts[] = {
	CFG_STR_CB("lifetime", "90d", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("delivery_log", NULL, CFGF_NONE, conf_num_cb),
	CFG_STR_CB("audit_log", NULL, CFGF_NONE, conf_num_cb),
	CFG_STR_CB("restore_points", NULL, CFGF_NONE, conf_num_cb),
	CFG_STR_CB("history", NULL, CFGF_NONE, conf_num_cb),
	CFG_STR_CB("user_data", NULL, CFGF_NONE, conf_num_cb),
	CFG_END(),
};

static int
conf_build_restore(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "restore");
	struct conf_restore *r = &c->restore;
	const char *s;
	unsigned i, n;

	r->interval_ms = conf_num_get(x, sec, "interval");
	if (r->interval_ms != 0 && r->interval_ms < 1000) {
		conf_fail(x, conf_line_of(x, sec, "interval"),
			  "restore.interval: 0 (off) or 1s..1d");
		return -1;
	}
	r->command_timeout_ms = conf_num_get(x, sec, "command_timeout");
	r->keep_all_ms = conf_num_get(x, sec, "keep_all");
	r->keep_hourly_ms = conf_num_get(x, sec, "keep_hourly");
	r->keep_daily_ms = conf_num_get(x, sec, "keep_daily");
	if (conf_order_check(x, sec, "keep_all", r->keep_all_ms, "keep_hourly",
			     r->keep_hourly_ms) != 0 ||
	    conf_order_check(x, sec, "keep_hourly", r->keep_hourly_ms,
			     "keep_daily", r->keep_daily_ms) != 0)
		return -1;
	if (conf_path_get(x, c, sec, "dir", &r->dir) != 0)
		return -1;
	s = cfg_getstr(sec, "copy_to");
	if (s != NULL && *s != '\0' &&
	    conf_path_get(x, c, sec, "copy_to", &r->copy_to) != 0)
		return -1;
	n = cfg_size(sec, "command");
	if (n == 0)
		return 0;
	if ((r->command = calloc(n + 1, sizeof(*r->command))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		s = cfg_getnstr(sec, "command", i);
		if ((r->command[i] = conf_strdup(x, s)) == NULL)
			return -1;
	}
	if (r->command[0][0] != '/') {
		conf_fail(x, conf_line_of(x, sec, "command"),
			  "restore.command: \"%s\": the program must be an "
			  "absolute path (no shell, no PATH search)",
			  r->command[0]);
		return -1;
	}
	return 0;
}

static int
conf_build_retention(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "retention");
	struct conf_retention *r = &c->retention;
	uint64_t *out[] = { &r->delivery_log_ms, &r->audit_log_ms,
			    &r->restore_points_ms, &r->history_ms,
			    &r->user_data_ms };
	size_t i;

	r->lifetime_ms = conf_num_get(x, sec, "lifetime");
	for (i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		*out[i] = cfg_getstr(sec, conf_retention_keys[i]) != NULL
			      ? conf_num_get(x, sec, conf_retention_keys[i])
			      : r->lifetime_ms;
	/* A point kept daily past its lifetime would break the promise: the
	 * defaults give way to a shorter lifetime, a value written does not. */
	if (!conf_is_set(cfg_getsec(cfg, "restore"), "keep_daily")) {
		struct conf_restore *p = &c->restore;

		if (p->keep_daily_ms > r->restore_points_ms)
			p->keep_daily_ms = r->restore_points_ms;
		if (p->keep_hourly_ms > p->keep_daily_ms)
			p->keep_hourly_ms = p->keep_daily_ms;
		if (p->keep_all_ms > p->keep_hourly_ms)
			p->keep_all_ms = p->keep_hourly_ms;
	}
	if (c->restore.keep_daily_ms > r->restore_points_ms) {
		conf_fail(
		    x,
		    conf_line_of(x, cfg_getsec(cfg, "restore"), "keep_daily"),
		    "restore.keep_daily is longer than "
		    "retention.restore_points (%llu days)",
		    (unsigned long long)(r->restore_points_ms / 86400000));
		return -1;
	}
	return 0;
}

int
conf_keep_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	if (conf_build_restore(x, cfg, c) != 0 ||
	    conf_build_retention(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

void
conf_keep_free(struct conf *c)
{
	size_t i;

	free(c->restore.dir);
	free(c->restore.copy_to);
	for (i = 0; c->restore.command != NULL && c->restore.command[i]; i++)
		free(c->restore.command[i]);
	free(c->restore.command);
}
