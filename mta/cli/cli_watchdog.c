/*
 * cli_watchdog.c — `outpost watchdog status [USER] [--json]`, `outpost
 * watchdog history USER [--json]` and `outpost watchdog release USER
 * [--learn]`: the daemon computes the reports (it holds the profiles) and
 * releases; this side sends the command and prints the answer.
 * Must not: print an address in clear (the daemon's reports hold
 * identities and numbers only).  One thread.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mta/control/control_proto.h"
#include "mta/cli/cli_int.h"

/* status and history: the daemon's data lines, as they are. */
static int
cli_watchdog_report(struct cli *c, const char *verb, const char *what)
{
	char line[CONTROL_LINE_MAX], v[64];
	struct cli_reply r;

	snprintf(v, sizeof(v), "%s%s", verb, c->json ? " json" : "");
	if (c->argc > 0)
		cli_ctl_user_line(v, c->argv[0], line, sizeof(line));
	else
		snprintf(line, sizeof(line), "%s", v);
	if (cli_ctl(c, what, line, &r) != 0)
		return CLI_ERR;
	if (r.count == 0 && !c->json)
		printf("no identity watched yet\n");
	fputs(r.lines != NULL ? r.lines : "", stdout);
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

int
cli_watchdog_status(struct cli *c)
{
	return cli_watchdog_report(c, "watchdog-status", "watchdog status");
}

int
cli_watchdog_history(struct cli *c)
{
	return cli_watchdog_report(c, "watchdog-history", "watchdog history");
}

int
cli_watchdog_release(struct cli *c)
{
	char line[CONTROL_LINE_MAX];
	long count;

	cli_ctl_user_line(c->learn ? "watchdog-release learn"
				   : "watchdog-release",
			  c->argv[0], line, sizeof(line));
	if (cli_ctl_change(c, "watchdog release", line, &count) != 0)
		return CLI_ERR;
	printf("released; %ld held message(s) due now%s\n",
	       count < 0 ? 0 : count,
	       c->learn ? "; its current pattern is its baseline" : "");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
