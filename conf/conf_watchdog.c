/*
 * conf_watchdog.c — the sections watchdog (is it on, the learning period,
 * the trap list, the alert command and the thresholds of every signal)
 * and watchdog_override "IDENTITY" (some thresholds for one sending
 * identity: an AUTH user or the relay identity), and the lookup of an
 * identity's thresholds.
 * Uses conf_ctx.c and conf_num.c only.  Thread: main, under conf_mutex;
 * conf_watchdog_limits_of on any thread (the tree never changes).
 * Invariants: every threshold is set (an override's unset keys take
 * watchdog's); ratios are in [0, 1], the volume factor >= 1.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <confuse.h>

#include "conf/conf_int.h"

#define CONF_WATCHDOG_RATIO_MAX  1.0
#define CONF_WATCHDOG_FACTOR_MAX 1000.0
#define CONF_WATCHDOG_NAME_MAX   255 /* as a user name */

static int conf_watchdog_ratio_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
				  void *result);

/* The thresholds' keys, with their defaults (watchdog) or none
 * (watchdog_override: unset takes watchdog's). */
#define CONF_WATCHDOG_LIMIT_OPTS(share, bounce, complaint, factor, shift,      \
				 minmsg, infected)                             \
	CFG_STR_CB("new_recipient_share", share, CFGF_NONE,                    \
		   conf_watchdog_ratio_cb),                                    \
	    CFG_STR_CB("bounce_rate", bounce, CFGF_NONE,                       \
		       conf_watchdog_ratio_cb),                                \
	    CFG_STR_CB("complaint_rate", complaint, CFGF_NONE,                 \
		       conf_watchdog_ratio_cb),                                \
	    CFG_STR_CB("volume_factor", factor, CFGF_NONE,                     \
		       conf_watchdog_ratio_cb),                                \
	    CFG_STR_CB("domain_shift", shift, CFGF_NONE,                       \
		       conf_watchdog_ratio_cb),                                \
	    CFG_STR_CB("min_messages", minmsg, CFGF_NONE, conf_num_cb),        \
	    CFG_STR_CB("infected", infected, CFGF_NONE, conf_num_cb)

cfg_opt_t conf_watchdog_opts[] = {
	CFG_BOOL_CB("enabled", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("learning", "7d", CFGF_NONE, conf_num_cb),
	/* Trap addresses, or their hashes as `outpost hash` prints them. */
	CFG_STR_CB("traps", NULL, CFGF_NONE, conf_text_cb),
	/* A program and its arguments, run with the identity and the
	 * signals (JSON) appended (no shell). */
	CFG_STR_LIST_CB("alert_command", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("alert_timeout", "1m", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("bounce_window", "200", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("identities_max", "10000", CFGF_NONE, conf_num_cb),
	CONF_WATCHDOG_LIMIT_OPTS("0.5", "0.1", "0.003", "4", "0.5", "50", "1"),
	CFG_END(),
};

cfg_opt_t conf_watchdog_override_opts[] = {
	CONF_OPT_LINE,
	CONF_WATCHDOG_LIMIT_OPTS(NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	CFG_END(),
};

/* A ratio in [0, 1], or (volume_factor) a factor in [1, 1000]. */
static int
conf_watchdog_ratio_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
		       void *result)
{
	bool factor = strcmp(opt->name, "volume_factor") == 0;
	double lo = factor ? 1.0 : 0.0;
	double hi = factor ? CONF_WATCHDOG_FACTOR_MAX : CONF_WATCHDOG_RATIO_MAX;
	char *end;
	double v;

	errno = 0;
	v = value != NULL ? strtod(value, &end) : NAN;
	if (value == NULL || end == value || *end != '\0' || errno != 0 ||
	    !(v >= lo && v <= hi))
		return conf_value_fail(cfg, opt, value != NULL ? value : "",
				       factor ? "must be a number from 1 to "
						"1000"
					      : "must be a number from 0 to 1");
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* The thresholds of SEC into L; a key not set keeps L's value. */
static void
conf_watchdog_limits_get(struct conf_ctx *x, cfg_t *sec,
			 struct conf_watchdog_limits *l)
{
	static const char *const keys[] = { "new_recipient_share",
					    "bounce_rate", "complaint_rate",
					    "volume_factor", "domain_shift" };
	double *out[] = { &l->new_recipient_share, &l->bounce_rate,
			  &l->complaint_rate, &l->volume_factor,
			  &l->domain_shift };
	const char *s;
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((s = cfg_getstr(sec, keys[i])) != NULL)
			*out[i] = strtod(s, NULL);
	if (cfg_getstr(sec, "min_messages") != NULL)
		l->min_messages = conf_num_get(x, sec, "min_messages");
	if (cfg_getstr(sec, "infected") != NULL)
		l->infected = conf_num_get(x, sec, "infected");
}

static int
conf_watchdog_override_build(struct conf_ctx *x, cfg_t *sec,
			     const struct conf_watchdog *w,
			     struct conf_watchdog_override *o)
{
	const char *title = cfg_title(sec);

	if (title == NULL || title[0] == '\0' ||
	    strlen(title) > CONF_WATCHDOG_NAME_MAX) {
		conf_fail(x, conf_sec_line(sec),
			  "watchdog_override: the title is a sending identity "
			  "(a user name or relay.identity)");
		return -1;
	}
	if ((o->identity = conf_strdup(x, title)) == NULL)
		return -1;
	o->limits = w->limits;
	conf_watchdog_limits_get(x, sec, &o->limits);
	return 0;
}

int
conf_watchdog_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "watchdog");
	struct conf_watchdog *w = &c->watchdog;
	const char *s;
	unsigned i, n;

	w->enabled = cfg_getbool(sec, "enabled");
	w->learning_ms = conf_num_get(x, sec, "learning");
	w->alert_timeout_ms = conf_num_get(x, sec, "alert_timeout");
	w->bounce_window = conf_num_get(x, sec, "bounce_window");
	w->identities_max = conf_num_get(x, sec, "identities_max");
	conf_watchdog_limits_get(x, sec, &w->limits);
	s = cfg_getstr(sec, "traps");
	if (s != NULL && *s != '\0' &&
	    conf_path_get(x, c, sec, "traps", &w->traps) != 0)
		return -1;
	if ((n = cfg_size(sec, "alert_command")) > 0) {
		if ((w->alert_command = calloc(n + 1, sizeof(char *))) ==
		    NULL) {
			conf_fail(x, 0, "out of memory");
			return -1;
		}
		for (i = 0; i < n; i++)
			if ((w->alert_command[i] = conf_strdup(
				 x, cfg_getnstr(sec, "alert_command", i))) ==
			    NULL)
				return -1;
		if (w->alert_command[0][0] != '/') {
			conf_fail(x, conf_line_of(x, sec, "alert_command"),
				  "watchdog.alert_command: \"%s\": the program "
				  "must be an absolute path (no shell, no PATH "
				  "search)",
				  w->alert_command[0]);
			return -1;
		}
	}
	n = cfg_size(cfg, "watchdog_override");
	if (n > 0 &&
	    (w->overrides = calloc(n, sizeof(*w->overrides))) == NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (conf_watchdog_override_build(
			x, cfg_getnsec(cfg, "watchdog_override", i), w,
			&w->overrides[i]) != 0)
			return -1;
		w->noverrides++;
	}
	return x->failed ? -1 : 0;
}

void
conf_watchdog_free(struct conf *c)
{
	struct conf_watchdog *w = &c->watchdog;
	size_t i;

	free(w->traps);
	for (i = 0; w->alert_command != NULL && w->alert_command[i]; i++)
		free(w->alert_command[i]);
	free(w->alert_command);
	for (i = 0; i < w->noverrides; i++)
		free(w->overrides[i].identity);
	free(w->overrides);
}

const struct conf_watchdog_limits *
conf_watchdog_limits_of(const struct conf *c, const char *identity)
{
	size_t i;

	for (i = 0; identity != NULL && i < c->watchdog.noverrides; i++)
		if (strcmp(c->watchdog.overrides[i].identity, identity) == 0)
			return &c->watchdog.overrides[i].limits;
	return &c->watchdog.limits;
}
