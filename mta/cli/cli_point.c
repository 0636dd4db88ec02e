/*
 * cli_point.c — `outpost restore now`: the daemon takes a restore point at
 * once (on its restore thread) and answers when it is on disk.
 *
 * Owns: nothing; one control command (write right, audited).  Prints
 * "restore point NAME: N messages, M recipients, SIZE bytes in MS ms" (and
 * a warning when a record of it did not open); a failure on stderr, exit 1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mta/cli/cli_int.h"

int
cli_point_now(struct cli *c)
{
	struct cli_reply r;
	char name[32], verified[8];
	uint64_t size, messages, rcpts;
	int64_t ms;
	int rc = CLI_ERR;

	if (cli_ctl(c, "restore now", "restore-point", &r) != 0)
		return CLI_ERR;
	if (sscanf(r.lines,
		   "point %31s size %" SCNu64 " messages %" SCNu64
		   " recipients %" SCNu64 " duration_ms %" SCNd64
		   " verified %7s",
		   name, &size, &messages, &rcpts, &ms, verified) != 6) {
		cli_errx("restore now: unexpected answer: %s", r.lines);
		goto done;
	}
	printf("restore point %s: %" PRIu64 " messages, %" PRIu64
	       " recipients, %" PRIu64 " bytes in %" PRId64 " ms\n",
	       name, messages, rcpts, size, ms);
	if (strcmp(verified, "yes") != 0) {
		cli_errx("restore point %s: a record did not open (see the "
			 "daemon's log; `outpost restore verify %s`)",
			 name, name);
		goto done;
	}
	rc = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
done:
	cli_reply_free(&r);
	return rc;
}
