/*
 * cli_reload.c — `outpost reload`: the daemon reads its configuration
 * again (as on SIGHUP) and says what changed, or why it kept the old one.
 *
 * Owns: nothing; one control command (write right, audited).  Prints the
 * daemon's lines on stdout; a refusal ("file:line: message") on stderr,
 * exit 1.
 */
#include <stdio.h>

#include "mta/cli/cli_int.h"

int
cli_reload(struct cli *c)
{
	struct cli_reply r;

	if (cli_ctl(c, "reload", "reload", &r) != 0)
		return CLI_ERR;
	fputs(r.lines, stdout);
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
