/*
 * outcome.c — reply → settle / defer / bounce, in one place.
 *
 * Owns: the classification rules.  Pure functions: no state, no I/O; any
 * thread.  Every decision the scheduler takes about a recipient after an
 * attempt comes from outcome_classify().
 */
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "mta/outcome.h"

static const char *const outcome_stage_names[OS__COUNT] = {
	[OS_CONNECT] = "connect", [OS_GREETING] = "greeting",
	[OS_EHLO] = "ehlo",       [OS_STARTTLS] = "starttls",
	[OS_TLS] = "tls",         [OS_MAIL] = "mail",
	[OS_RCPT] = "rcpt",       [OS_DATA] = "data",
	[OS_EOM] = "eom",         [OS_LOCAL] = "local",
};

const char *
outcome_stage_name(enum outcome_stage stage)
{
	return stage < OS__COUNT ? outcome_stage_names[stage] : "?";
}

/* "X.Y.Z" at the start of TEXT whose class matches CODE, into OUT. */
static bool
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
	       stage == OS_EHLO || stage == OS_STARTTLS || stage == OS_TLS;
}

void
outcome_classify(enum outcome_stage stage, int code, const char *text,
		 const struct outcome_pattern *patterns, unsigned npatterns,
		 struct outcome *out)
{
	char line[600];
	unsigned i;

	memset(out, 0, sizeof(*out));
	if (code == 0) {
		/* No reply: refused, timed out, reset, TLS failure. */
		out->action = OA_DEFER;
		out->next_host = outcome_host_stage(stage);
		out->site_backoff = stage == OS_CONNECT || stage == OS_GREETING;
		snprintf(out->status, sizeof(out->status), "%s",
			 stage == OS_CONNECT ? "4.4.1" : "4.4.2");
		return;
	}
	if (code >= 200 && code < 400) {
		out->action = OA_DELIVERED;
		if (!outcome_enhanced(code, text, out->status))
			snprintf(out->status, sizeof(out->status), "2.0.0");
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
	} else if (code < 500) {
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
