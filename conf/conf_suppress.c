/*
 * conf_suppress.c — the section suppress: whether the suppression list is
 * consulted and fed, whose list a recipient lands on (the sending
 * identity's, or one for all) and what a RCPT to a suppressed recipient
 * gets (refused, or accepted and dropped).
 * Uses conf_ctx.c only.  Thread: main, under conf_mutex.
 * Invariants: every value is one of its choices (checked as it is read).
 */
#include <strings.h>

#include <confuse.h>

#include "conf/conf_int.h"

static const char *const conf_suppress_scopes[] = { "user", "global", NULL };
static const char *const conf_suppress_actions[] = { "refuse", "drop", NULL };

static int
conf_suppress_scope_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
		       void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_suppress_scopes,
			      "user, global");
}

static int
conf_suppress_action_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
			void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_suppress_actions,
			      "refuse, drop");
}

cfg_opt_t conf_suppress_opts[] = {
	CFG_BOOL_CB("enabled", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_STR_CB("scope", "user", CFGF_NONE, conf_suppress_scope_cb),
	CFG_STR_CB("action", "refuse", CFGF_NONE, conf_suppress_action_cb),
	CFG_END(),
};

int
conf_suppress_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "suppress");

	c->suppress.enabled = cfg_getbool(sec, "enabled") != cfg_false;
	c->suppress.scope = strcasecmp(cfg_getstr(sec, "scope"), "global") == 0
				? CONF_SUPPRESS_GLOBAL
				: CONF_SUPPRESS_USER;
	c->suppress.action = strcasecmp(cfg_getstr(sec, "action"), "drop") == 0
				 ? CONF_SUPPRESS_DROP
				 : CONF_SUPPRESS_REFUSE;
	return x->failed ? -1 : 0;
}
