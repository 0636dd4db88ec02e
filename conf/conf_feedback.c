/*
 * conf_feedback.c — the section feedback: the address that feedback-loop
 * (ARF, RFC 5965) complaint reports from mailbox providers are sent to,
 * the limits on those reports, and whether outgoing mail carries the
 * sealed identifier (X-Outpost-FB) that lets a report be traced back.
 * Uses conf_ctx.c and conf_num.c only.  Thread: main, under conf_mutex.
 * Invariants: address, when set, is one mailbox "local@domain" with an
 * LDH domain, lower-cased domain; limits are within conf_num's ranges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <confuse.h>

#include "conf/conf_int.h"

cfg_opt_t conf_feedback_opts[] = {
	/* The mailbox reports are sent to; unset: no report is taken. */
	CFG_STR_CB("address", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("max_report_size", "1M", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("reports_per_minute", "60", CFGF_NONE, conf_num_cb),
	CFG_BOOL_CB("identifier", cfg_true, CFGF_NONE, conf_bool_cb),
	CFG_END(),
};

int
conf_mailbox_check(const char *a, const char **why)
{
	const char *at = strchr(a, '@'), *p;

	*why = "must be one address local@domain";
	if (at == NULL || at == a || strchr(at + 1, '@') != NULL ||
	    strlen(a) > 254 || at - a > 64)
		return -1;
	for (p = a; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '<' || *p == '>' ||
		    *p == '"' || *p == '\\')
			return -1;
	return conf_domain_check(at + 1, false, why);
}

int
conf_feedback_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "feedback");
	struct conf_feedback *f = &c->feedback;
	const char *a = cfg_getstr(sec, "address"), *why;
	char *at;

	f->max_report_size = conf_num_get(x, sec, "max_report_size");
	f->reports_per_minute =
	    (unsigned)conf_num_get(x, sec, "reports_per_minute");
	f->identifier = cfg_getbool(sec, "identifier");
	if (a == NULL || a[0] == '\0')
		return x->failed ? -1 : 0;
	if (conf_mailbox_check(a, &why) != 0) {
		conf_fail(x, conf_where(x, sec, "address"),
			  "feedback.address: \"%s\" %s", a, why);
		return -1;
	}
	if ((f->address = conf_strdup(x, a)) == NULL)
		return -1;
	/* Domains compare without case; the local part keeps its own. */
	for (at = strchr(f->address, '@'); *at != '\0'; at++)
		if (*at >= 'A' && *at <= 'Z')
			*at = (char)(*at - 'A' + 'a');
	return x->failed ? -1 : 0;
}

void
conf_feedback_free(struct conf *c)
{
	free(c->feedback.address);
	c->feedback.address = NULL;
}
