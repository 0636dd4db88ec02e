/*
 * cli_queue.c — `outpost queue summary|list|show` (views the daemon
 * computes and streams: mta/control/control_view.c), `outpost status`,
 * `outpost queue
 * hold|release|retry|delete|bounce` and `outpost suspend|resume|
 * suspensions`: each checks its arguments, turns them into one control
 * command per selector and prints what the daemon answers.
 * Must not: read the queue itself (the daemon is the only reader and checks
 * rights), or put an unchecked word into a command line.  One thread.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/control/control_proto.h"
#include "mta/core/json.h"
#include "mta/core/util.h"
#include "mta/cli/cli_int.h"

#define CLI_QUEUE_SUSPEND_MAX_S 31536000 /* 365 days (control_proto.h) */
#define CLI_QUEUE_REASON_MAX    200

/* Views: summary, list, show (computed by outpostd) ------------------------ */

int
cli_queue_summary(struct cli *c)
{
	return cli_ctl_view(c, "queue summary",
			    c->json ? "summary json" : "summary");
}

/* `outpost status`: the daemon's table, or its one JSON object. */
int
cli_queue_status(struct cli *c)
{
	return cli_ctl_view(c, "status", c->json ? "status json" : "status");
}

int
cli_queue_list(struct cli *c)
{
	char line[CLI_DOMAIN_MAX + 64];

	if (c->domain != NULL && !cli_domain_ok(c->domain)) {
		cli_errx("queue list: --domain %s: not a domain name",
			 c->domain);
		return CLI_USAGE;
	}
	snprintf(line, sizeof(line), "list%s%s%s%s%s", c->json ? " json" : "",
		 c->held ? " held" : "", c->deferred ? " deferred" : "",
		 c->domain != NULL ? " domain " : "",
		 c->domain != NULL ? c->domain : "");
	return cli_ctl_view(c, "queue list", line);
}

int
cli_queue_show(struct cli *c)
{
	char line[128], id_hex[QUEUE_ID_HEX_BYTES];
	uint64_t id;

	if (queue_id_parse(c->argv[0], &id) != 0) {
		cli_errx("queue show: \"%s\" is not a queue id (16 hex "
			 "digits)",
			 c->argv[0]);
		return CLI_USAGE;
	}
	queue_id_format(id, id_hex);
	snprintf(line, sizeof(line), "show %s%s%s", id_hex,
		 c->json ? " json" : "", c->headers ? " headers" : "");
	return cli_ctl_view(c, "queue show", line);
}

/* Changes ----------------------------------------------------------------- */

/* queue hold|release|retry|delete|bounce ID… | --domain D | --user U |
 * --all: one command per id, or one for the selector. */
int
cli_queue_change(struct cli *c)
{
	const struct cli_cmd *cmd = c->cmd;
	char line[CONTROL_LINE_MAX], what[64], hex[QUEUE_ID_HEX_BYTES],
	    verb[64];
	long total = 0, count;
	uint64_t id;
	int i, nsel, failed = 0;

	snprintf(what, sizeof(what), "queue %s", cmd->sub);
	nsel = (c->argc > 0) + (c->domain != NULL) + (c->user != NULL) + c->all;
	if (nsel != 1) {
		cli_errx("%s: give one of ID..., --domain D, --user U or --all",
			 what);
		return CLI_USAGE;
	}
	for (i = 0; i < c->argc; i++)
		if (queue_id_parse(c->argv[i], &id) != 0) {
			cli_errx("%s: \"%s\" is not a queue id (16 hex "
				 "digits)",
				 what, c->argv[i]);
			return CLI_USAGE;
		}
	if (c->domain != NULL && !cli_domain_ok(c->domain)) {
		cli_errx("%s: --domain %s: not a domain name", what, c->domain);
		return CLI_USAGE;
	}
	if (c->user != NULL && !cli_ctl_word_ok(c->user, 255)) {
		cli_errx("%s: --user: printable, without spaces", what);
		return CLI_USAGE;
	}
	/* The option goes first, where no selector word can be. */
	snprintf(verb, sizeof(verb), "%s%s", cmd->ctl_verb,
		 c->respect_backoff ? " respect-backoff" : "");
	if (c->argc == 0) {
		if (c->all)
			snprintf(line, sizeof(line), "%s all", verb);
		else
			snprintf(line, sizeof(line), "%s %s %s", verb,
				 c->domain != NULL ? "domain" : "user",
				 c->domain != NULL ? c->domain : c->user);
		if (cli_ctl_change(c, what, line, &total) != 0)
			return CLI_ERR;
	}
	for (i = 0; i < c->argc; i++) {
		(void)queue_id_parse(c->argv[i], &id);
		queue_id_format(id, hex);
		snprintf(line, sizeof(line), "%s id %s", verb, hex);
		if (cli_ctl_change(c, what, line, &count) != 0) {
			failed++;
			continue;
		}
		total += count > 0 ? count : 0;
	}
	if (c->json) {
		fputs("{\"command\":", stdout);
		json_put(stdout, cmd->sub);
		printf(",\"changed\":%ld", total);
		if (failed > 0)
			printf(",\"failed\":%d", failed);
		fputs("}\n", stdout);
	} else
		printf("%ld message%s %s\n", total, total == 1 ? "" : "s",
		       cmd->done);
	if (fflush(stdout) != 0)
		return CLI_ERR;
	return failed > 0 ? CLI_ERR : CLI_OK;
}

/* suspend, resume, suspensions -------------------------------------------- */

/* --reason TEXT as one protocol tail: printable ASCII, single spaces. */
static int
cli_queue_reason_norm(const char *in, char *out, size_t outlen)
{
	size_t n = 0;
	bool space = false;

	for (; *in != '\0'; in++) {
		unsigned char ch = (unsigned char)*in;

		if (ch == ' ' || ch == '\t') {
			space = n > 0;
			continue;
		}
		if (ch < 0x20 || ch > 0x7e)
			return -1;
		if (n + 2 >= outlen)
			return -1;
		if (space)
			out[n++] = ' ';
		space = false;
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	return 0;
}

int
cli_queue_suspend(struct cli *c)
{
	const char *dom = c->argv[0];
	char line[CONTROL_LINE_MAX], reason[CLI_QUEUE_REASON_MAX + 1],
	    until[40];
	uint64_t ms, secs;
	long count;

	if (!cli_domain_ok(dom)) {
		cli_errx("suspend: %s: not a domain name", dom);
		return CLI_USAGE;
	}
	if (conf_parse_duration(c->duration != NULL ? c->duration
						    : CLI_SUSPEND_DEFAULT,
				&ms) != 0 ||
	    (secs = (ms + 999) / 1000) == 0 || secs > CLI_QUEUE_SUSPEND_MAX_S) {
		cli_errx("suspend: --for %s: a duration from 1s to 365d (30m, "
			 "2h, 1d …)",
			 c->duration);
		return CLI_USAGE;
	}
	reason[0] = '\0';
	if (c->reason != NULL &&
	    cli_queue_reason_norm(c->reason, reason, sizeof(reason)) != 0) {
		cli_errx("suspend: --reason: printable ASCII, at most %d "
			 "bytes",
			 CLI_QUEUE_REASON_MAX);
		return CLI_USAGE;
	}
	snprintf(line, sizeof(line), "suspend %s %" PRIu64 "%s%s", dom, secs,
		 reason[0] != '\0' ? " " : "", reason);
	if (cli_ctl_change(c, "suspend", line, &count) != 0)
		return CLI_ERR;
	json_time_fmt(util_wall_ms() + (int64_t)secs * 1000, false, until,
		      sizeof(until));
	printf("%s suspended until %s UTC\n", dom, until);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

int
cli_queue_resume(struct cli *c)
{
	char line[CONTROL_LINE_MAX];
	long count;

	if (!cli_domain_ok(c->argv[0])) {
		cli_errx("resume: %s: not a domain name", c->argv[0]);
		return CLI_USAGE;
	}
	snprintf(line, sizeof(line), "resume %s%s", c->argv[0],
		 c->respect_backoff ? " respect-backoff" : "");
	if (cli_ctl_change(c, "resume", line, &count) != 0)
		return CLI_ERR;
	printf("%s resumed%s\n", c->argv[0],
	       c->respect_backoff ? " (a back-off stays in force)" : "");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* drain, resume-intake ------------------------------------------------- */

int
cli_queue_drain(struct cli *c)
{
	long count;

	if (cli_ctl_change(c, "drain",
			   c->intake_only ? "drain intake-only" : "drain",
			   &count) != 0)
		return CLI_ERR;
	puts(c->intake_only ? "intake stopped: new connections get 421, "
			      "delivery goes on"
			    : "draining: outpostd stops once the transactions "
			      "and deliveries in flight end");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

int
cli_queue_resume_intake(struct cli *c)
{
	long count;

	if (cli_ctl_change(c, "resume-intake", "resume-intake", &count) != 0)
		return CLI_ERR;
	puts("intake resumed");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

int
cli_queue_suspensions(struct cli *c)
{
	struct cli_reply r;
	char *line, *save = NULL, *until, *reason, *end, when[40];
	int64_t ms;

	if (cli_ctl(c, "suspensions", "suspensions", &r) != 0)
		return CLI_ERR;
	if (!c->json)
		printf("%-40s  %-23s  %s\n", "DESTINATION", "UNTIL (UTC)",
		       "REASON");
	for (line = strtok_r(r.lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "suspended ", 10) != 0 ||
		    (until = strchr(line + 10, ' ')) == NULL)
			continue;
		*until++ = '\0';
		if ((reason = strchr(until, ' ')) != NULL)
			*reason++ = '\0';
		ms = strtoll(until, &end, 10);
		json_time_fmt(ms, c->json, when, sizeof(when));
		if (c->json) {
			fputs("{\"destination\":", stdout);
			json_put(stdout, line + 10);
			fputs(",\"until\":", stdout);
			json_put(stdout, when);
			printf(",\"until_ms\":%" PRId64 ",\"reason\":", ms);
			json_put(stdout, reason);
			fputs("}\n", stdout);
		} else {
			printf("%-40s  %-23s  ", line + 10, when);
			json_term_put(stdout, reason != NULL ? reason : "");
			fputc('\n', stdout);
		}
	}
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
