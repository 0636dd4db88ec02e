/*
 * outcome.c — reply → settle / defer / bounce, in one place.
 *
 * Owns: the classification rules, and the one table of which reply codes
 * each command may get (outcome_reply); the bounce category of a result
 * (outcome_categorize, by the configured rules of conf_bounce.c).  Pure
 * functions: no state, no I/O; any thread.  Every decision the scheduler takes
 * about a recipient after an attempt comes from outcome_classify(); every reply
 * the SMTP client reads is judged by outcome_reply().
 */
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "mta/deliver/outcome.h"

static const char *const outcome_stage_names[OS__COUNT] = {
	[OS_CONNECT] = "connect", [OS_GREETING] = "greeting",
	[OS_EHLO] = "ehlo",       [OS_STARTTLS] = "starttls",
	[OS_TLS] = "tls",         [OS_MAIL] = "mail",
	[OS_RCPT] = "rcpt",       [OS_DATA] = "data",
	[OS_EOM] = "eom",         [OS_LOCAL] = "local",
	[OS_HELO] = "helo",       [OS_RSET] = "rset",
	[OS_QUIT] = "quit",
};

const char *
outcome_stage_name(enum outcome_stage stage)
{
	return stage < OS__COUNT ? outcome_stage_names[stage] : "?";
}

bool
outcome_enhanced(int code, const char *text, char out[12])
{
	const char *p = text;
	int n = 0, dots = 0;

	if (text == NULL || *p != '0' + code / 100 || p[1] != '.')
		return false;
	for (; *p != '\0' && *p != ' ' && n < 11; p++, n++) {
		if (*p == '.')
			dots++;
		else if (*p < '0' || *p > '9')
			return false;
	}
	if (dots != 2 || (*p != '\0' && *p != ' ') || p[-1] == '.')
		return false;
	memcpy(out, text, (size_t)n);
	out[n] = '\0';
	return true;
}

/* Stages before MAIL concern the host, not the message. */
static bool
outcome_host_stage(enum outcome_stage stage)
{
	return stage == OS_CONNECT || stage == OS_GREETING ||
	       stage == OS_EHLO || stage == OS_HELO || stage == OS_STARTTLS ||
	       stage == OS_TLS;
}

enum outcome_reply
outcome_reply(enum outcome_stage stage, int code)
{
	if (code < 200 || code > 599)
		return OR_PROTOCOL; /* 1xx is not SMTP; nor is 6xx or 000 */
	if (code >= 500)
		return OR_PERM;
	if (code >= 400)
		return OR_TEMP;
	switch (stage) {
	case OS_GREETING:
	case OS_STARTTLS:
		return code == 220 ? OR_OK : OR_PROTOCOL;
	case OS_EHLO:
	case OS_HELO:
		return code == 250 ? OR_OK : OR_PROTOCOL;
	case OS_DATA:
		return code == 354 ? OR_OK : OR_PROTOCOL;
	case OS_MAIL:
	case OS_RCPT:
	case OS_EOM: /* and BDAT */
	case OS_RSET:
	case OS_QUIT:
		return code < 300 ? OR_OK : OR_PROTOCOL;
	case OS_CONNECT:
	case OS_TLS:
	case OS_LOCAL:
	case OS__COUNT:
		break;
	}
	/* No peer reply belongs to these: no success is possible. */
	return OR_PROTOCOL;
}

/* A configured suspend_on pattern that matches "CODE TEXT". */
static void
outcome_suspend(int code, const char *text,
		const struct outcome_pattern *patterns, unsigned npatterns,
		struct outcome *out)
{
	char line[600];
	unsigned i;

	if (npatterns == 0)
		return;
	snprintf(line, sizeof(line), "%d %s", code, text ? text : "");
	for (i = 0; i < npatterns; i++) {
		if (regexec((const regex_t *)patterns[i].re, line, 0, NULL,
			    0) == 0) {
			out->suspend = true;
			out->suspend_ms = patterns[i].suspend_ms;
			break;
		}
	}
}

void
outcome_classify(enum outcome_stage stage, int code, const char *text,
		 const struct outcome_pattern *patterns, unsigned npatterns,
		 struct outcome *out)
{
	enum outcome_reply kind;

	memset(out, 0, sizeof(*out));
	if (code == 0) {
		/* No reply: refused, timed out, reset, TLS failure, or a
		 * reply too broken to carry a code.  TEXT is ours: it may
		 * name its status (a protocol error says 4.5.0). */
		out->action = OA_DEFER;
		out->next_host = outcome_host_stage(stage);
		if (!outcome_enhanced(400, text, out->status))
			snprintf(out->status, sizeof(out->status), "%s",
				 stage == OS_CONNECT ? "4.4.1" : "4.4.2");
		/* A silent or unreachable host slows the destination down; one
		 * that talks out of turn is skipped, like one that refuses. */
		out->site_backoff =
		    (stage == OS_CONNECT || stage == OS_GREETING) &&
		    strcmp(out->status, OUTCOME_PROTOCOL_STATUS) != 0;
		return;
	}
	kind = outcome_reply(stage, code);
	if (kind == OR_OK && stage == OS_EOM) {
		/* The one reply that delivers: end of data accepted. */
		out->action = OA_DELIVERED;
		if (!outcome_enhanced(code, text, out->status))
			snprintf(out->status, sizeof(out->status), "2.0.0");
		return;
	}
	if (kind == OR_OK || kind == OR_PROTOCOL) {
		/* A success short of the end of data (the transaction never
		 * ended), or a reply the command cannot get: out of step. */
		out->action = OA_DEFER;
		out->next_host = outcome_host_stage(stage);
		snprintf(out->status, sizeof(out->status), "%s",
			 OUTCOME_PROTOCOL_STATUS);
		outcome_suspend(code, text, patterns, npatterns, out);
		return;
	}
	if (!outcome_enhanced(code, text, out->status))
		snprintf(out->status, sizeof(out->status), "%d.0.0",
			 code >= 500 ? 5 : 4);
	if (code == 421) {
		/* The server is closing: the host is unwell or throttling. */
		out->action = OA_DEFER;
		out->next_host = outcome_host_stage(stage);
		out->site_backoff = true;
	} else if (stage == OS_RCPT && (code == 452 || code == 552) &&
		   (strcmp(out->status + 1, ".5.3") == 0 ||
		    strcmp(out->status + 1, ".0.0") == 0)) {
		out->action = OA_DEFER;
		out->retry_now = true;
	} else if (kind == OR_TEMP) {
		out->action = OA_DEFER;
		out->next_host = outcome_host_stage(stage);
	} else if (outcome_host_stage(stage)) {
		/* A 5xx banner or EHLO refusal is about this host: skip it
		 * (Postfix's smtp_skip_5xx_greeting); the message is not at
		 * fault, so it is deferred if no host takes it. */
		out->action = OA_DEFER;
		out->next_host = true;
	} else {
		out->action = OA_BOUNCE;
	}
	outcome_suspend(code, text, patterns, npatterns, out);
}

/* A reply out of step: ours, whatever the text (no refusal code). */
static bool
outcome_out_of_step(int code, const char *status)
{
	return (code < 400 || code > 599) &&
	       strcmp(status, OUTCOME_PROTOCOL_STATUS) == 0;
}

void
outcome_categorize(const struct conf *c, int code, const char *text,
		   struct outcome *o)
{
	if (o->action == OA_DELIVERED)
		o->category = CONF_BC_NONE;
	else if (outcome_out_of_step(code, o->status))
		o->category = CONF_BC_PROTOCOL;
	else
		o->category = conf_bounce_classify(c, code, o->status, text);
}

enum conf_bounce_category
outcome_category_last(const struct conf *c, int code, const char *text)
{
	char status[12] = "";

	(void)outcome_enhanced(code != 0 ? code : 400, text, status);
	if (outcome_out_of_step(code, status))
		return CONF_BC_PROTOCOL;
	return conf_bounce_classify(c, code, status[0] ? status : NULL, text);
}
