/*
 * cli_config.c — `outpost config [--all]`: the effective configuration, as
 * `postconf -n` shows Postfix's: the keys that differ from the defaults
 * (--all: every key), in outpost.conf syntax, from the file the command
 * reads (-c, $OUTPOST_CONF, the system file or the embedded defaults).
 * Must not: print a secret (conf_print() leaves the password hashes out),
 * or talk to the daemon: this is the file's view.  One thread.
 */
#include <stdio.h>

#include "conf/conf.h"
#include "mta/cli/cli_int.h"

int
cli_config(struct cli *c)
{
	char err[1024];

	/* cli_setup has loaded it once (its errors are said there); this
	 * load is the one that prints. */
	if (conf_print(stdout, c->conf_file, c->all, err, sizeof(err)) != 0) {
		cli_errx("config: %s", err);
		return CLI_ERR;
	}
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
