/*
 * cli_purge.c — `outpost purge --user NAME`: a cancelled account's data
 * removed now (its queued messages, without a bounce, and its per-user
 * history), by the daemon (control command `purge user`, delete right,
 * audited); prints the counts it answers.
 * Owns: nothing.  Must not: print the user's name (it may be an address).
 * One thread.
 */
#include <stdio.h>
#include <string.h>

#include "mta/control/control_proto.h"
#include "mta/cli/cli_int.h"

int
cli_purge(struct cli *c)
{
	char line[CONTROL_LINE_MAX];
	struct cli_reply r;
	unsigned long long msgs, recs;

	if (c->user == NULL || c->domain != NULL || c->all) {
		cli_errx("purge: give --user NAME");
		return CLI_USAGE;
	}
	if (c->user[0] == '\0' || strlen(c->user) > 255) {
		cli_errx("purge: a user name is 1..255 bytes");
		return CLI_USAGE;
	}
	cli_ctl_user_line("purge", c->user, line, sizeof(line));
	if (cli_ctl(c, "purge", line, &r) != 0)
		return CLI_ERR;
	if (sscanf(r.lines, "purged %llu %llu", &msgs, &recs) != 2) {
		cli_errx("purge: unexpected answer from outpostd");
		cli_reply_free(&r);
		return CLI_ERR;
	}
	cli_reply_free(&r);
	if (c->json)
		printf("{\"command\":\"purge\",\"messages\":%llu,"
		       "\"history\":%llu}\n",
		       msgs, recs);
	else
		printf("%llu message%s and %llu history record%s removed\n",
		       msgs, msgs == 1 ? "" : "s", recs, recs == 1 ? "" : "s");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
