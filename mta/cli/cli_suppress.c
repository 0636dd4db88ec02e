/*
 * cli_suppress.c — `outpost suppress list|add|remove|check`: the
 * suppression list, through the daemon (control_suppress.c), which holds
 * the log-hash key and the list.
 * Must not: print an address the operator did not give on this command
 * line (the daemon answers with hashes only), or put one on the control
 * socket but hex-encoded (it is a word of printable ASCII there).  One
 * thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mta/control/control_proto.h"
#include "mta/core/json.h"
#include "mta/cli/cli_int.h"

#define CLI_SUPPRESS_WORD_MAX 255 /* bytes of an address or user name */

/* " WORD HEX" (or " HEX" when WORD is "") of S onto LINE at *OFF; -1
 * when it does not fit. */
static int
cli_suppress_hex_cat(char *line, size_t size, size_t *off, const char *word,
		     const char *s)
{
	char hex[2 * CLI_SUPPRESS_WORD_MAX + 1];
	size_t n = strlen(s);
	int w;

	if (n == 0 || n > CLI_SUPPRESS_WORD_MAX)
		return -1;
	sodium_bin2hex(hex, sizeof(hex), (const unsigned char *)s, n);
	w = snprintf(line + *off, size - *off, " %s%s%s", word,
		     word[0] != '\0' ? " " : "", hex);
	if (w < 0 || (size_t)w >= size - *off)
		return -1;
	*off += (size_t)w;
	return 0;
}

/* One "entry SCOPE RCPT REASON TIME_MS" line, as a row or a JSON line.
 * ADDR: the address the operator gave (check), or NULL (list). */
static void
cli_suppress_entry_print(const struct cli *c, char *line, const char *addr)
{
	char *scope, *rcpt, *reason, *t, *save = NULL, when[40];
	int64_t ms;

	if (strtok_r(line, " ", &save) == NULL ||
	    (scope = strtok_r(NULL, " ", &save)) == NULL ||
	    (rcpt = strtok_r(NULL, " ", &save)) == NULL ||
	    (reason = strtok_r(NULL, " ", &save)) == NULL ||
	    (t = strtok_r(NULL, " ", &save)) == NULL)
		return;
	ms = strtoll(t, NULL, 10);
	if (strncmp(scope, "hash:", 5) == 0)
		scope += 5;
	json_time_fmt(ms, c->json, when, sizeof(when));
	if (c->json) {
		fputs("{\"scope\":", stdout);
		json_put(stdout,
			 strcmp(scope, "global") == 0 ? "global" : "user");
		if (strcmp(scope, "global") != 0) {
			fputs(",\"user_hash\":", stdout);
			json_put(stdout, scope);
		}
		if (addr != NULL) {
			fputs(",\"address\":", stdout);
			json_put(stdout, addr);
		}
		fputs(",\"rcpt_hash\":", stdout);
		json_put(stdout, rcpt);
		fputs(",\"reason\":", stdout);
		json_put(stdout, reason);
		fputs(",\"time\":", stdout);
		json_put(stdout, when);
		printf(",\"time_ms\":%" PRId64 "}\n", ms);
		return;
	}
	printf("%-32s  %-32s  %-18s  %s\n", scope, rcpt, reason, when);
}

/* The entry lines of R. */
static void
cli_suppress_entries(const struct cli *c, struct cli_reply *r, const char *addr)
{
	char *line, *save = NULL;

	for (line = strtok_r(r->lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "entry ", 6) == 0)
			cli_suppress_entry_print(c, line, addr);
		else if (strcmp(line, "truncated") == 0)
			cli_errx("suppress list: cut at the daemon's limit "
				 "(use --user to list one scope)");
}

int
cli_suppress(struct cli *c)
{
	const char *sub = c->cmd->sub;
	bool list = strcmp(sub, "list") == 0;
	char line[CONTROL_LINE_MAX], what[32];
	struct cli_reply r;
	size_t off = 0;
	long count;
	int w;

	if (c->domain != NULL || c->all || c->duration != NULL ||
	    (c->reason != NULL && strcmp(sub, "add") != 0) ||
	    (c->json && !list && strcmp(sub, "check") != 0)) {
		cli_errx("suppress %s: usage: outpost suppress %s", sub,
			 c->cmd->args);
		return CLI_USAGE;
	}
	(void)snprintf(what, sizeof(what), "suppress %s", sub);
	w = snprintf(line, sizeof(line), "suppress-%s", sub);
	off = (size_t)w;
	if ((!list && cli_suppress_hex_cat(line, sizeof(line), &off, "",
					   c->argv[0]) != 0) ||
	    (c->user != NULL && cli_suppress_hex_cat(line, sizeof(line), &off,
						     "user", c->user) != 0)) {
		cli_errx("%s: address or user name empty or longer than %d "
			 "bytes",
			 what, CLI_SUPPRESS_WORD_MAX);
		return CLI_USAGE;
	}
	if (c->reason != NULL) {
		w = snprintf(line + off, sizeof(line) - off, " reason %s",
			     c->reason);
		if (!cli_ctl_word_ok(c->reason, 32) || w < 0 ||
		    (size_t)w >= sizeof(line) - off) {
			cli_errx("%s: --reason is one of bounce-bad-mailbox, "
				 "bounce-bad-domain, complaint, operator",
				 what);
			return CLI_USAGE;
		}
	}
	if (!list && strcmp(sub, "check") != 0) {
		if (cli_ctl_change(c, what, line, &count) != 0)
			return CLI_ERR;
		printf("%s: %s\n", sub,
		       strcmp(sub, "add") == 0 ? "suppressed"
		       : count > 0             ? "removed"
					       : "was not suppressed");
		return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
	}
	if (cli_ctl(c, what, line, &r) != 0)
		return CLI_ERR;
	if (!c->json && (list || r.count > 0))
		printf("%-32s  %-32s  %-18s  %s\n", "SCOPE", "RCPT_HASH",
		       "REASON", "SINCE (UTC)");
	cli_suppress_entries(c, &r, list ? NULL : c->argv[0]);
	if (!list && r.count == 0 && !c->json)
		printf("not suppressed\n");
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
