/*
 * cli_scan.c — `outpost scan status [--json]` and `outpost scan flush`:
 * the daemon holds the scanner (its counts, clamd's version, the verdict
 * cache); this side sends the command and prints the answer.
 * Must not: print an address (the report holds numbers and clamd's
 * words only).  One thread.
 */
#include <stdbool.h>
#include <stdio.h>

#include "mta/control/control_proto.h"
#include "mta/cli/cli_int.h"

int
cli_scan_status(struct cli *c)
{
	struct cli_reply r;

	if (cli_ctl(c, "scan status",
		    c->json ? "scan-status json" : "scan-status", &r) != 0)
		return CLI_ERR;
	fputs(r.lines != NULL ? r.lines : "", stdout);
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

int
cli_scan_flush(struct cli *c)
{
	long count;

	if (cli_ctl_change(c, "scan flush", "scan-flush", &count) != 0)
		return CLI_ERR;
	printf("verdict cache flushed: %ld verdict(s) forgotten\n",
	       count < 0 ? 0 : count);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
