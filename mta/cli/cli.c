/*
 * cli.c — `outpost`: main, the command table (cli_cmds[]; options in
 * cli_opts[]), usage, setup (which configuration: cli_conf_find), and the
 * client of the daemon's control socket (connect, send one line, read or
 * stream the answer); the commands live in one file per family
 * (cli_int.h).  Exit: 0 ok, 1 error, 2 usage.
 * Must not: open the queue or its key — every view (computed by outpostd:
 * mta/control/control_view.c) and every change goes through the control
 * socket, which checks the caller's rights (the one exception: `restore`,
 * cli_restore.c, which works offline with the daemon stopped); create
 * keys; or print an e-mail address in clear.  One thread.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "queue/queue.h"
#include "mta/control/control_proto.h"
#include "mta/core/util.h"
#include "mta/cli/cli_int.h"

#define CLI_CTL_REPLY_MAX (16u << 20) /* bytes of an answer we take */
/* The line goes out within the protocol's CONTROL_TIMEOUT_MS (the daemon
 * drops a slower client); its answer may take longer than that: a change
 * over a large queue, or a view, runs while we wait. */
#define CLI_CTL_ANSWER_WAIT_MS 120000
/* A socket not there yet: outpostd may be starting. */
#define CLI_CTL_CONNECT_WAIT_MS 3000
/* The configuration without -c or OUTPOST_CONF, when it exists (the
 * packaged daemon's); a build for other paths may say another. */
#ifndef CLI_CONF_SYSTEM
#define CLI_CONF_SYSTEM "/etc/outpost/outpost.conf"
#endif
#define CLI_CONF_ENV "OUTPOST_CONF"

/* What a command needs before it runs. */
#define CLI_NEED_CONF     0x1u
#define CLI_NEED_HASH_KEY 0x2u /* implies CLI_NEED_CONF */

/* Option groups a command accepts (struct cli_cmd.opts). */
#define CLI_O_JSON    0x01u /* --json */
#define CLI_O_KEYGEN  0x02u /* --rsa BITS, --ed25519, --key F, --txt F */
#define CLI_O_SELECT  0x04u /* --domain D, --user U, --all */
#define CLI_O_FILTER  0x08u /* --domain D, --held, --deferred */
#define CLI_O_HEADERS 0x10u /* --headers */
#define CLI_O_SUSPEND 0x20u /* --for DURATION, --reason TEXT */
#define CLI_O_LOG     0x40u /* --rcpt A, --event E, --id, --since, --until, -f */
#define CLI_O_CONFIG  0x80u   /* --all */
#define CLI_O_DRAIN   0x100u  /* --intake-only */
#define CLI_O_BACKOFF 0x200u  /* --respect-backoff */
#define CLI_O_ARCHIVE 0x400u  /* --key-file F, --passphrase-file F */
#define CLI_O_EXPORT  0x800u  /* --to FILE, --remove */
#define CLI_O_RESTORE 0x1000u /* --no-log-replay */
#define CLI_O_LEARN   0x2000u /* --learn */

#define CLI_SEL_ARGS "ID... | --domain D | --user U | --all  [--json]"

/* The commands. */
static const struct cli_cmd cli_cmds[] = {
	{ "status", NULL, "[--json]",
	  "the daemon: version, uptime, configuration and its load time, "
	  "listeners, queue totals, rates, drain state",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_queue_status, NULL, NULL },
	{ "queue", "summary", "[--json]",
	  "per recipient domain: queued, deferred and held recipients, the "
	  "oldest, the last error (code and status), suspensions",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_queue_summary, NULL, NULL },
	{ "queue", "list", "[--domain D] [--held] [--deferred] [--json]",
	  "list queued messages (addresses as keyed hash and domain)",
	  CLI_NEED_CONF, CLI_O_JSON | CLI_O_FILTER, 0, 0, cli_queue_list, NULL,
	  NULL },
	{ "queue", "show", "ID [--headers] [--json]",
	  "show one message's envelope and recipients; --headers: its "
	  "header block, every address as hash:HASH@domain (needs the export "
	  "right)",
	  CLI_NEED_CONF, CLI_O_JSON | CLI_O_HEADERS, 1, 1, cli_queue_show, NULL,
	  NULL },
	{ "queue", "hold", CLI_SEL_ARGS,
	  "stop delivery attempts of the messages selected", CLI_NEED_CONF,
	  CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX, cli_queue_change, "hold",
	  "held" },
	{ "queue", "release", CLI_SEL_ARGS,
	  "undo hold: deliver the messages selected now", CLI_NEED_CONF,
	  CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX, cli_queue_change,
	  "release", "released" },
	{ "queue", "retry", CLI_SEL_ARGS " [--respect-backoff]",
	  "attempt the messages selected now, past a back-off of their "
	  "destination (held ones stay held); --respect-backoff: due now, "
	  "but a backed-off destination keeps its back-off",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON | CLI_O_BACKOFF, 0,
	  CLI_ARGS_MAX, cli_queue_change, "retry", "scheduled for a retry" },
	{ "queue", "delete", CLI_SEL_ARGS,
	  "remove the messages selected, without a bounce", CLI_NEED_CONF,
	  CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX, cli_queue_change,
	  "delete", "deleted" },
	{ "queue", "bounce", CLI_SEL_ARGS,
	  "fail every pending recipient of the messages selected: a bounce "
	  "to the sender, then removal",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX,
	  cli_queue_change, "bounce", "bounced" },
	{ "purge", NULL, "--user NAME [--json]",
	  "a cancelled account: remove user NAME's queued messages (no "
	  "bounce) and its per-user history (AUTH blocks, metrics series …) "
	  "now (needs the delete right; audited)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, 0, cli_purge, NULL,
	  NULL },
	{ "queue", "export",
	  "ID... | --domain D | --user U | --all  --to FILE "
	  "(--key-file F | --passphrase-file F) [--remove]",
	  "write the messages to a new encrypted archive FILE (export right; "
	  "--remove: then take them out of this queue, delete right too)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_ARCHIVE | CLI_O_EXPORT, 0,
	  CLI_ARGS_MAX, cli_export_export, NULL, NULL },
	{ "queue", "import", "FILE (--key-file F | --passphrase-file F)",
	  "add the messages of archive FILE to this queue, keeping their ids, "
	  "attempts, expiry and hold (import right; an archive is taken once)",
	  CLI_NEED_CONF, CLI_O_ARCHIVE, 1, 1, cli_export_import, NULL, NULL },
	{ "suspend", NULL, "DOMAIN [--for DURATION] [--reason TEXT]",
	  "no deliveries to DOMAIN for DURATION (default " CLI_SUSPEND_DEFAULT
	  "; e.g. 30m, 2h, 1d)",
	  CLI_NEED_CONF, CLI_O_SUSPEND, 1, 1, cli_queue_suspend, NULL, NULL },
	{ "resume", NULL, "DOMAIN [--respect-backoff]",
	  "end a suspension of DOMAIN (and its back-off) now: its messages "
	  "are due; --respect-backoff: its back-off stays",
	  CLI_NEED_CONF, CLI_O_BACKOFF, 1, 1, cli_queue_resume, NULL, NULL },
	{ "drain", NULL, "[--intake-only]",
	  "new SMTP connections get 421; then outpostd stops as on SIGTERM "
	  "(in-flight transactions and deliveries end first); --intake-only: "
	  "it keeps delivering instead (needs the write right; audited)",
	  CLI_NEED_CONF, CLI_O_DRAIN, 0, 0, cli_queue_drain, NULL, NULL },
	{ "resume-intake", NULL, "",
	  "undo drain --intake-only: take new SMTP connections again",
	  CLI_NEED_CONF, 0, 0, 0, cli_queue_resume_intake, NULL, NULL },
	{ "reload", NULL, "",
	  "read the configuration again, as SIGHUP does: new sessions and "
	  "deliveries follow it, those in flight end as they began; an "
	  "invalid file is refused (file:line) and the old one stays (needs "
	  "the write right; audited)",
	  CLI_NEED_CONF, 0, 0, 0, cli_reload, NULL, NULL },
	{ "restore", "now", "",
	  "take a restore point now (the daemon's restore thread; answered "
	  "once it is on disk: its name, size and counts; needs the write "
	  "right; audited)",
	  CLI_NEED_CONF, 0, 0, 0, cli_point_now, NULL, NULL },
	{ "restore", "list", "[--json]",
	  "the restore points in restore.dir: time, size, messages, "
	  "recipients, verified",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_restore_list, NULL, NULL },
	{ "restore", "verify", "POINT",
	  "open point POINT read-only, walk every record, open every seal, "
	  "check its manifest (offline; reads the queue key)",
	  CLI_NEED_CONF, 0, 1, 1, cli_restore_verify, NULL, NULL },
	{ "restore", NULL, "POINT [--no-log-replay]",
	  "with outpostd stopped: verify POINT, move the queue aside to "
	  "<queue.path>.before-restore-POINT, install the point; recipients "
	  "the delivery log settled after it are marked done (not with "
	  "--no-log-replay); audited",
	  CLI_NEED_CONF, CLI_O_RESTORE, 1, 1, cli_restore, NULL, NULL },
	{ "suspensions", NULL, "[--json]",
	  "list suspended destinations (operators', reply patterns, "
	  "back-off)",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_queue_suspensions, NULL, NULL },
	{ "auth", "blocks", "[--json]",
	  "list the SMTP AUTH blocks in force: a user name from a client "
	  "network, or a whole network (auth_limit)",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_keys_auth_blocks, NULL, NULL },
	{ "auth", "unblock", "ADDRESS[/LEN] | USER | --user USER | --all",
	  "lift the AUTH blocks of a client address or network, or of a "
	  "user name from anywhere (needs the write right; audited)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, 1, cli_keys_auth_unblock,
	  NULL, NULL },
	{ "suppress", "list", "[--user USER] [--json]",
	  "the suppression list: scope (global, or the user's hash), "
	  "recipient hash (as `outpost hash` prints it), reason, since "
	  "(audited)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, 0, cli_suppress, NULL,
	  NULL },
	{ "suppress", "add", "ADDRESS [--user USER] [--reason R]",
	  "suppress ADDRESS for USER's mail (without --user: for every "
	  "sender); R: operator (default), complaint, bounce-bad-mailbox, "
	  "bounce-bad-domain (needs the write right; audited)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_SUSPEND, 1, 1, cli_suppress, NULL,
	  NULL },
	{ "suppress", "remove", "ADDRESS [--user USER]",
	  "take ADDRESS off the list (needs the write right; audited)",
	  CLI_NEED_CONF, CLI_O_SELECT, 1, 1, cli_suppress, NULL, NULL },
	{ "suppress", "check", "ADDRESS [--user USER] [--json]",
	  "is ADDRESS suppressed for USER's mail (or for every sender)? "
	  "(audited)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 1, 1, cli_suppress, NULL,
	  NULL },
	{ "watchdog", "status", "[USER] [--json]",
	  "the watchdog's view of each sending identity (or USER): state, "
	  "each signal's value, limit and baseline",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 1, cli_watchdog_status, NULL, NULL },
	{ "watchdog", "history", "USER [--json]",
	  "USER's stops and releases, and its signals' values of the last "
	  "days",
	  CLI_NEED_CONF, CLI_O_JSON, 1, 1, cli_watchdog_history, NULL, NULL },
	{ "watchdog", "release", "USER [--learn]",
	  "let a stopped USER send again and deliver its held mail (needs "
	  "the write right; audited); --learn: its current pattern becomes "
	  "its baseline",
	  CLI_NEED_CONF, CLI_O_LEARN, 1, 1, cli_watchdog_release, NULL, NULL },
	{ "scan", "status", "[--json]",
	  "the malware scan: clamd reachable, its version and signature "
	  "date, the verdict cache's size and hit rate, scans, detections, "
	  "errors",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_scan_status, NULL, NULL },
	{ "scan", "flush", "",
	  "forget every cached scan verdict (needs the write right; "
	  "audited)",
	  CLI_NEED_CONF, 0, 0, 0, cli_scan_flush, NULL, NULL },
	{ "log", NULL,
	  "[--rcpt ADDRESS] [--event E[,E…]] [--id QUEUEID|MSGID] [--since "
	  "WHEN] "
	  "[--until WHEN] [-f] [FILE]",
	  "print the delivery log's lines (FILE: log.delivery_file) of one "
	  "recipient, events, message and/or time span (WHEN: 2h, 30m, or "
	  "2026-12-04T10:00:00Z); -f: from its end on, across rotations",
	  CLI_NEED_CONF, CLI_O_LOG | CLI_O_JSON, 0, 1, cli_log, NULL, NULL },
	{ "config", NULL, "[--all]",
	  "print the effective configuration in outpost.conf syntax: the "
	  "keys that differ from the defaults (--all: every key); "
	  "password hashes are never shown",
	  CLI_NEED_CONF, CLI_O_CONFIG, 0, 0, cli_config, NULL, NULL },
	{ "passwd", NULL, "[USER [DOMAIN ...]]",
	  "read a password on stdin, print its Argon2id hash (with USER: a "
	  "user block for the configuration)",
	  0, 0, 0, CLI_ARGS_MAX, cli_keys_passwd, NULL, NULL },
	{ "hash", NULL, "ADDRESS",
	  "print the keyed hash of ADDRESS, as the logs and queue show it",
	  CLI_NEED_HASH_KEY, 0, 1, 1, cli_log_hash, NULL, NULL },
	{ "dkim", "keygen",
	  "DOMAIN SELECTOR [--rsa BITS | --ed25519] [--key FILE] [--txt FILE]",
	  "make a DKIM key (RSA-2048 by default; 0600), print the DNS TXT "
	  "record to publish and the configuration block",
	  CLI_NEED_CONF, CLI_O_KEYGEN, 2, 2, cli_keys_dkim_keygen, NULL, NULL },
};

#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

/* The options; a command takes those of the groups in its opts. */
static const struct cli_opt {
	const char *name;
	const char *alias; /* or NULL */
	unsigned groups;   /* CLI_O_* */
	enum { CLI_OPT_FLAG, CLI_OPT_STR, CLI_OPT_BITS } kind;
	size_t off; /* of its bool, const char * or unsigned in struct cli */
} cli_opts[] = {
	{ "--json", NULL, CLI_O_JSON, CLI_OPT_FLAG,
	  offsetof(struct cli, json) },
	{ "--rsa", NULL, CLI_O_KEYGEN, CLI_OPT_BITS,
	  offsetof(struct cli, rsa_bits) },
	{ "--ed25519", NULL, CLI_O_KEYGEN, CLI_OPT_FLAG,
	  offsetof(struct cli, ed25519) },
	{ "--key", NULL, CLI_O_KEYGEN, CLI_OPT_STR,
	  offsetof(struct cli, key_path) },
	{ "--txt", NULL, CLI_O_KEYGEN, CLI_OPT_STR,
	  offsetof(struct cli, txt_path) },
	{ "--domain", NULL, CLI_O_SELECT | CLI_O_FILTER, CLI_OPT_STR,
	  offsetof(struct cli, domain) },
	{ "--user", NULL, CLI_O_SELECT, CLI_OPT_STR,
	  offsetof(struct cli, user) },
	{ "--all", NULL, CLI_O_SELECT | CLI_O_CONFIG, CLI_OPT_FLAG,
	  offsetof(struct cli, all) },
	{ "--held", NULL, CLI_O_FILTER, CLI_OPT_FLAG,
	  offsetof(struct cli, held) },
	{ "--deferred", NULL, CLI_O_FILTER, CLI_OPT_FLAG,
	  offsetof(struct cli, deferred) },
	{ "--headers", NULL, CLI_O_HEADERS, CLI_OPT_FLAG,
	  offsetof(struct cli, headers) },
	{ "--for", NULL, CLI_O_SUSPEND, CLI_OPT_STR,
	  offsetof(struct cli, duration) },
	{ "--reason", NULL, CLI_O_SUSPEND, CLI_OPT_STR,
	  offsetof(struct cli, reason) },
	{ "--intake-only", NULL, CLI_O_DRAIN, CLI_OPT_FLAG,
	  offsetof(struct cli, intake_only) },
	{ "--respect-backoff", NULL, CLI_O_BACKOFF, CLI_OPT_FLAG,
	  offsetof(struct cli, respect_backoff) },
	{ "--to", NULL, CLI_O_EXPORT, CLI_OPT_STR, offsetof(struct cli, to) },
	{ "--remove", NULL, CLI_O_EXPORT, CLI_OPT_FLAG,
	  offsetof(struct cli, remove) },
	{ "--key-file", NULL, CLI_O_ARCHIVE, CLI_OPT_STR,
	  offsetof(struct cli, key_file) },
	{ "--passphrase-file", NULL, CLI_O_ARCHIVE, CLI_OPT_STR,
	  offsetof(struct cli, passphrase_file) },
	{ "--rcpt", NULL, CLI_O_LOG, CLI_OPT_STR, offsetof(struct cli, rcpt) },
	{ "--event", NULL, CLI_O_LOG, CLI_OPT_STR,
	  offsetof(struct cli, event) },
	{ "--id", NULL, CLI_O_LOG, CLI_OPT_STR, offsetof(struct cli, id) },
	{ "--since", NULL, CLI_O_LOG, CLI_OPT_STR,
	  offsetof(struct cli, since) },
	{ "--until", NULL, CLI_O_LOG, CLI_OPT_STR,
	  offsetof(struct cli, until) },
	{ "--follow", "-f", CLI_O_LOG, CLI_OPT_FLAG,
	  offsetof(struct cli, follow) },
	{ "--no-log-replay", NULL, CLI_O_RESTORE, CLI_OPT_FLAG,
	  offsetof(struct cli, no_log_replay) },
	{ "--learn", NULL, CLI_O_LEARN, CLI_OPT_FLAG,
	  offsetof(struct cli, learn) },
};

#define CLI_NOPTS (sizeof(cli_opts) / sizeof(cli_opts[0]))

void
cli_errx(const char *fmt, ...)
{
	va_list ap;

	fputs("outpost: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
cli_usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: outpost [-c FILE] COMMAND [ARGS]\n"
		   "       outpost --help | --version\n\n"
		   "  -c FILE  configuration file; without it: $" CLI_CONF_ENV
		   ", else " CLI_CONF_SYSTEM " if it exists, else the "
		   "embedded defaults (data under ./var)\n\ncommands:\n");
	for (i = 0; i < CLI_NCMDS; i++)
		fprintf(f, "  %s%s%s %s\n      %s\n", cli_cmds[i].name,
			cli_cmds[i].sub != NULL ? " " : "",
			cli_cmds[i].sub != NULL ? cli_cmds[i].sub : "",
			cli_cmds[i].args, cli_cmds[i].help);
}

static void
cli_cmd_usage(FILE *f, const struct cli_cmd *cmd)
{
	fprintf(f, "usage: outpost [-c FILE] %s%s%s %s\n  %s\n", cmd->name,
		cmd->sub != NULL ? " " : "", cmd->sub != NULL ? cmd->sub : "",
		cmd->args, cmd->help);
}

/* Setup --------------------------------------------------------------- */

int
cli_hash_key_load(struct cli *c)
{
	char err[1024];

	/* Never created here: a new key would match no log line. */
	if (queue_keyfile_load(c->conf->hash_key_file, false, c->hash_key, err,
			       sizeof(err)) != 0) {
		cli_errx("hash key: %s (has outpostd run?)", err);
		return -1;
	}
	return 0;
}

/*
 * Which configuration C reads: -c FILE, else $OUTPOST_CONF (not empty),
 * else CLI_CONF_SYSTEM unless it is absent, else the embedded defaults
 * (c->conf_file NULL).  A system file that is there but cannot be looked
 * at is still chosen, so that its error is said rather than the defaults
 * quietly taken (they name another control socket).  *FROM: how the file
 * was named, for messages ("" for -c).
 */
static void
cli_conf_find(struct cli *c, const char **from)
{
	const char *env = getenv(CLI_CONF_ENV);
	struct stat st;

	*from = "";
	if (c->conf_file != NULL)
		return;
	if (env != NULL && env[0] != '\0') {
		c->conf_file = env;
		*from = " (named by " CLI_CONF_ENV ")";
	} else if (stat(CLI_CONF_SYSTEM, &st) == 0 ||
		   (errno != ENOENT && errno != ENOTDIR))
		c->conf_file = CLI_CONF_SYSTEM;
}

static int
cli_setup(struct cli *c, unsigned needs)
{
	const char *from;
	char err[1024];

	if (needs & CLI_NEED_HASH_KEY)
		needs |= CLI_NEED_CONF;
	if (needs & CLI_NEED_CONF) {
		cli_conf_find(c, &from);
		if (conf_load(&c->conf, c->conf_file, err, sizeof(err)) != 0) {
			cli_errx("%s%s", err, from);
			return -1;
		}
	}
	if ((needs & CLI_NEED_HASH_KEY) && cli_hash_key_load(c) != 0)
		return -1;
	return 0;
}

static void
cli_teardown(struct cli *c)
{
	conf_free(c->conf);
	sodium_memzero(c->hash_key, sizeof(c->hash_key));
}

/* The control socket (mta/control/control_proto.h) ------------------------ */

void
cli_reply_free(struct cli_reply *r)
{
	free(r->data);
	memset(r, 0, sizeof(*r));
}

/* Wait for FD to be ready for EVENTS until DEADLINE (CLOCK_MONOTONIC ms). */
static int
cli_ctl_wait(int fd, short events, int64_t deadline_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t now;
	int rc;

	for (;;) {
		now = util_mono_ms();
		if (now >= deadline_ms) {
			errno = ETIMEDOUT;
			return -1;
		}
		rc = poll(&p, 1, (int)(deadline_ms - now));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* Split the answer into data lines and the final "ok …" / "err …" line. */
static int
cli_reply_parse(struct cli_reply *r, size_t len, char *err, size_t errlen)
{
	char *end, *last;

	if (len == 0 || r->data[len - 1] != '\n') {
		snprintf(err, errlen, "outpostd closed without an answer");
		return -1;
	}
	r->data[len - 1] = '\0';
	last = strrchr(r->data, '\n');
	r->final = last != NULL ? last + 1 : r->data;
	if (last != NULL)
		*last = '\0';
	r->lines = last != NULL ? r->data : r->data + len - 1;
	r->count = -1;
	if (strcmp(r->final, "ok") == 0) {
		r->ok = true;
		return 0;
	}
	if (strncmp(r->final, "ok ", 3) == 0) {
		errno = 0;
		r->count = strtol(r->final + 3, &end, 10);
		if (*end == '\0' && errno == 0 && r->count >= 0) {
			r->ok = true;
			return 0;
		}
	}
	if (strncmp(r->final, "err ", 4) == 0) {
		r->ok = false;
		return 0;
	}
	snprintf(err, errlen, "unexpected answer from outpostd");
	return -1;
}

/*
 * Connect to the daemon and send LINE (one command, without its LF) within
 * CONTROL_TIMEOUT_MS.  A socket that is not there yet (the daemon makes it
 * a moment after it starts listening) is tried again for
 * CLI_CTL_CONNECT_WAIT_MS.  A daemon that answers and closes before reading
 * (a refusal at accept) is not an error here: its answer is read next.  The
 * socket, or -1 (ERR).
 */
int
cli_ctl_open(const struct cli *c, const char *line, char *err, size_t errlen)
{
	const char *path = c->conf->control.socket;
	int64_t give_up = util_mono_ms() + CLI_CTL_CONNECT_WAIT_MS, deadline;
	struct sockaddr_un sun;
	size_t off, n = strlen(line);
	char *msg = NULL;
	ssize_t w;
	int fd;

	if (n + 1 > CONTROL_LINE_MAX) {
		snprintf(err, errlen, "command too long");
		return -1;
	}
	if (path == NULL || strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "no control socket configured");
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	for (;;) {
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			break;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			break;
		close(fd);
		fd = -1;
		if ((errno != ENOENT && errno != ECONNREFUSED) ||
		    util_mono_ms() >= give_up)
			break;
		poll(NULL, 0, 50);
	}
	if (fd < 0) {
		snprintf(err, errlen, "control socket %s: %s%s", path,
			 strerror(errno),
			 errno == ENOENT || errno == ECONNREFUSED
			     ? " (is outpostd running?)"
			     : "");
		return -1;
	}
	if ((msg = malloc(n + 1)) == NULL)
		goto fail;
	memcpy(msg, line, n);
	msg[n] = '\n';
	deadline = util_mono_ms() + CONTROL_TIMEOUT_MS;
	for (off = 0; off < n + 1; off += (size_t)w) {
		if (cli_ctl_wait(fd, POLLOUT, deadline) != 0)
			goto fail;
		w = send(fd, msg + off, n + 1 - off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			break; /* answered and closed: read the answer */
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				w = 0;
			else
				goto fail;
		}
	}
	free(msg);
	return fd;
fail:
	snprintf(err, errlen, "control socket %s: %s", path,
		 errno == ETIMEDOUT ? "no answer in time" : strerror(errno));
	free(msg);
	close(fd);
	return -1;
}

/*
 * Send LINE (one command, without its LF) to the daemon and read the whole
 * answer.  0: R is filled (r->ok says ok or err; free it with
 * cli_reply_free); -1: no answer (why in ERR: not running, no access, …).
 */
static int
cli_ctl_ask(const struct cli *c, const char *line, struct cli_reply *r,
	    char *err, size_t errlen)
{
	int fd;

	memset(r, 0, sizeof(*r));
	if ((fd = cli_ctl_open(c, line, err, errlen)) < 0)
		return -1;
	return cli_ctl_read(c, fd, r, err, errlen);
}

int
cli_ctl_read(const struct cli *c, int fd, struct cli_reply *r, char *err,
	     size_t errlen)
{
	const char *path = c->conf->control.socket;
	int64_t deadline;
	size_t len = 0, cap = 0;
	char *nd;
	ssize_t w;

	memset(r, 0, sizeof(*r));
	deadline = util_mono_ms() + CLI_CTL_ANSWER_WAIT_MS;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > CLI_CTL_REPLY_MAX) {
				snprintf(err, errlen, "answer too long");
				goto fail;
			}
			if ((nd = realloc(r->data, cap)) == NULL)
				goto fail_errno;
			r->data = nd;
		}
		if (cli_ctl_wait(fd, POLLIN, deadline) != 0)
			goto fail_errno;
		w = recv(fd, r->data + len, cap - len - 1, MSG_DONTWAIT);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w == 0 || (w < 0 && errno == ECONNRESET))
			break; /* a refusal closes without reading */
		if (w < 0)
			goto fail_errno;
		len += (size_t)w;
	}
	r->data[len] = '\0';
	close(fd);
	if (cli_reply_parse(r, len, err, errlen) != 0) {
		cli_reply_free(r);
		return -1;
	}
	return 0;
fail_errno:
	snprintf(err, errlen, "control socket %s: %s", path,
		 errno == ETIMEDOUT ? "no answer in time" : strerror(errno));
fail:
	close(fd);
	cli_reply_free(r);
	return -1;
}

bool
cli_ctl_word_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return n > 0 && n <= max;
}

bool
cli_domain_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CLI_DOMAIN_MAX || s[0] == '.')
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' ||
		      *s == '_'))
			return false;
	return true;
}

int
cli_ctl_view(struct cli *c, const char *what, const char *line)
{
	char err[600], *buf = NULL, *nb, *nl;
	size_t len = 0, cap = 0, start = 0, last = 0;
	bool have_last = false;
	ssize_t w;
	int fd, rc = CLI_ERR;

	if ((fd = cli_ctl_open(c, line, err, sizeof(err))) < 0) {
		cli_errx("%s: %s", what, err);
		return CLI_ERR;
	}
	for (;;) {
		if (len + 65536 + 1 > cap) {
			cap = len + 65536 + 1;
			if (cap > CLI_CTL_REPLY_MAX + 65536 + 1) {
				cli_errx("%s: a line of the answer is too "
					 "long",
					 what);
				goto done;
			}
			if ((nb = realloc(buf, cap)) == NULL) {
				cli_errx("%s: out of memory", what);
				goto done;
			}
			buf = nb;
		}
		/* A deadline per read: a listing may take long in all. */
		if (cli_ctl_wait(fd, POLLIN,
				 util_mono_ms() + CLI_CTL_ANSWER_WAIT_MS) !=
		    0) {
			cli_errx("%s: control socket: %s", what,
				 errno == ETIMEDOUT ? "no answer in time"
						    : strerror(errno));
			goto done;
		}
		w = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w == 0 || (w < 0 && errno == ECONNRESET))
			break;
		if (w < 0) {
			cli_errx("%s: control socket: %s", what,
				 strerror(errno));
			goto done;
		}
		len += (size_t)w;
		/* Every complete line but the newest goes out. */
		while ((nl = memchr(buf + start, '\n', len - start)) != NULL) {
			if (have_last && fwrite(buf + last, 1, start - last,
						stdout) != start - last)
				goto done;
			last = start;
			have_last = true;
			start = (size_t)(nl - buf) + 1;
		}
		if (have_last && last > 0) {
			memmove(buf, buf + last, len - last);
			len -= last;
			start -= last;
			last = 0;
		}
	}
	if (!have_last || start != len) {
		cli_errx("%s: outpostd closed without an answer", what);
		goto done;
	}
	buf[start - 1] = '\0';
	if (strncmp(buf + last, "ok", 2) == 0 &&
	    (buf[last + 2] == '\0' || buf[last + 2] == ' '))
		rc = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
	else if (strncmp(buf + last, "err ", 4) == 0) {
		fflush(stdout);
		cli_errx("%s: %s", what, buf + last + 4);
	} else
		cli_errx("%s: unexpected answer from outpostd", what);
done:
	free(buf);
	close(fd);
	return rc;
}

int
cli_ctl(const struct cli *c, const char *what, const char *line,
	struct cli_reply *r)
{
	char err[600];

	if (cli_ctl_ask(c, line, r, err, sizeof(err)) != 0) {
		cli_errx("%s: %s", what, err);
		return -1;
	}
	if (!r->ok) {
		cli_errx("%s: %s", what, r->final + 4);
		cli_reply_free(r);
		return -1;
	}
	return 0;
}

int
cli_ctl_change(const struct cli *c, const char *what, const char *line,
	       long *count)
{
	struct cli_reply r;

	if (cli_ctl(c, what, line, &r) != 0)
		return -1;
	*count = r.count;
	cli_reply_free(&r);
	return 0;
}

void
cli_ctl_user_line(const char *verb, const char *user, char *line, size_t size)
{
	size_t i, n = strlen(user);
	bool plain = n > 0 && user[0] != ' ' && user[n - 1] != ' ';
	char hex[2 * 255 + 1];

	for (i = 0; plain && i < n; i++)
		if ((unsigned char)user[i] < 0x20 ||
		    (unsigned char)user[i] > 0x7e ||
		    (user[i] == ' ' && user[i + 1] == ' '))
			plain = false;
	if (plain)
		snprintf(line, size, "%s user %s", verb, user);
	else
		snprintf(line, size, "%s user-hex %s", verb,
			 sodium_bin2hex(hex, sizeof(hex),
					(const unsigned char *)user,
					n < 255 ? n : 255));
}

/* Dispatch ------------------------------------------------------------ */

/* The command named by ARGV[0] (and ARGV[1]); *words = words it used.
 * A row with ARGV[1] as its second word wins over one without ("restore
 * list" before "restore POINT"), wherever the rows stand. */
static const struct cli_cmd *
cli_cmd_find(int argc, char **argv, int *words)
{
	const struct cli_cmd *one = NULL;
	size_t i;

	for (i = 0; i < CLI_NCMDS; i++) {
		if (strcmp(argv[0], cli_cmds[i].name) != 0)
			continue;
		if (cli_cmds[i].sub == NULL) {
			if (one == NULL)
				one = &cli_cmds[i];
			continue;
		}
		if (argc > 1 && strcmp(argv[1], cli_cmds[i].sub) == 0) {
			*words = 2;
			return &cli_cmds[i];
		}
	}
	*words = 1;
	return one;
}

/* Is NAME a command that takes a second word (e.g. "queue")? */
static bool
cli_cmd_has_subs(const char *name)
{
	size_t i;

	for (i = 0; i < CLI_NCMDS; i++)
		if (strcmp(name, cli_cmds[i].name) == 0 &&
		    cli_cmds[i].sub != NULL)
			return true;
	return false;
}

/* Store option O (with VALUE, or NULL) into C; CLI_OK or CLI_USAGE. */
static int
cli_opt_set(struct cli *c, const struct cli_opt *o, const char *value)
{
	void *field = (char *)c + o->off;
	bool *flag = field;
	const char **str = field;
	unsigned *bits = field;
	char *end;

	if ((o->kind == CLI_OPT_FLAG && *flag) ||
	    (o->kind == CLI_OPT_STR && *str != NULL) ||
	    (o->kind == CLI_OPT_BITS && *bits != 0)) {
		cli_errx("option %s given twice", o->name);
		return CLI_USAGE;
	}
	switch (o->kind) {
	case CLI_OPT_FLAG:
		*flag = true;
		break;
	case CLI_OPT_STR:
		*str = value;
		break;
	case CLI_OPT_BITS:
		*bits = (unsigned)strtoul(value, &end, 10);
		if (*end != '\0' || *bits < 1024 || *bits > 8192) {
			cli_errx("%s: 1024 to 8192 bits", o->name);
			return CLI_USAGE;
		}
		break;
	}
	return CLI_OK;
}

/* The option ARG names ("--opt" or "--opt=VALUE"), or NULL; *eq points
 * to the value after '=' (or is NULL). */
static const struct cli_opt *
cli_opt_find(const char *arg, const char **eq)
{
	size_t i, n;

	*eq = NULL;
	for (i = 0; i < CLI_NOPTS; i++) {
		if ((cli_opts[i].alias != NULL &&
		     strcmp(arg, cli_opts[i].alias) == 0) ||
		    strcmp(arg, cli_opts[i].name) == 0)
			return &cli_opts[i];
		n = strlen(cli_opts[i].name);
		if (cli_opts[i].kind != CLI_OPT_FLAG &&
		    strncmp(arg, cli_opts[i].name, n) == 0 && arg[n] == '=') {
			*eq = arg + n + 1;
			return &cli_opts[i];
		}
	}
	return NULL;
}

/* Options and positional arguments of CMD into C; CLI_OK or CLI_USAGE. */
static int
cli_args_parse(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
	       bool *help)
{
	const struct cli_opt *o;
	const char *value;
	bool opts = true;
	int i, rc;

	for (i = 0; i < argc; i++) {
		if (opts && strcmp(argv[i], "--") == 0) {
			opts = false;
			continue;
		}
		if (opts && (strcmp(argv[i], "--help") == 0 ||
			     strcmp(argv[i], "-h") == 0)) {
			*help = true;
			continue;
		}
		if (opts && argv[i][0] == '-' && argv[i][1] != '\0') {
			if ((o = cli_opt_find(argv[i], &value)) == NULL ||
			    !(o->groups & cmd->opts)) {
				cli_errx("unknown option %s", argv[i]);
				return CLI_USAGE;
			}
			if (o->kind != CLI_OPT_FLAG && value == NULL) {
				if (i + 1 == argc) {
					cli_errx("option %s needs a value",
						 argv[i]);
					return CLI_USAGE;
				}
				value = argv[++i];
			} else if (o->kind == CLI_OPT_FLAG && value != NULL) {
				cli_errx("option %s takes no value", o->name);
				return CLI_USAGE;
			}
			if ((rc = cli_opt_set(c, o, value)) != CLI_OK)
				return rc;
			continue;
		}
		if (c->argc == CLI_ARGS_MAX) {
			cli_errx("too many arguments");
			return CLI_USAGE;
		}
		c->argv[c->argc++] = argv[i];
	}
	if (!*help && (c->argc < cmd->min_args || c->argc > cmd->max_args))
		return CLI_USAGE;
	return CLI_OK;
}

int
main(int argc, char *argv[])
{
	struct cli c;
	const struct cli_cmd *cmd;
	bool help = false;
	int i = 1, words, rc;

	memset(&c, 0, sizeof(c));
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			cli_usage(stdout);
			return CLI_OK;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("outpost %s\n", OUTPOST_VERSION);
			return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
		}
		if (strcmp(argv[i], "-c") == 0 && i + 1 == argc) {
			cli_errx("option -c needs a FILE");
			return CLI_USAGE;
		}
		if (strcmp(argv[i], "-c") == 0)
			c.conf_file = argv[++i];
		else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2] != '\0')
			c.conf_file = argv[i] + 2;
		else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			cli_errx("unknown option %s", argv[i]);
			cli_usage(stderr);
			return CLI_USAGE;
		}
	}
	if (i == argc) {
		cli_usage(stderr);
		return CLI_USAGE;
	}
	if ((cmd = cli_cmd_find(argc - i, argv + i, &words)) == NULL) {
		cli_errx("unknown command \"%s%s%s\"", argv[i],
			 cli_cmd_has_subs(argv[i]) && i + 1 < argc ? " " : "",
			 cli_cmd_has_subs(argv[i]) && i + 1 < argc ? argv[i + 1]
								   : "");
		cli_usage(stderr);
		return CLI_USAGE;
	}
	i += words;
	c.cmd = cmd;
	if ((rc = cli_args_parse(&c, cmd, argc - i, argv + i, &help)) !=
	    CLI_OK) {
		cli_cmd_usage(stderr, cmd);
		return rc;
	}
	if (help) {
		cli_cmd_usage(stdout, cmd);
		return CLI_OK;
	}
	if (cli_setup(&c, cmd->needs) != 0)
		rc = CLI_ERR;
	else
		rc = cmd->run(&c);
	cli_teardown(&c);
	return rc;
}
