/*
 * cli_int.h — what the files of the `outpost` command share: the parsed
 * command line (struct cli), the command table's row (struct cli_cmd), the
 * control-socket client (cli.c) and the commands each family file runs:
 *     cli.c        main, dispatch, usage, setup, the control-socket client
 *     cli_queue.c  queue views and changes, suspend, resume, suspensions,
 *                  status
 *     cli_log.c    log, hash
 *     cli_logfiles.c  a log's lines across the daemon's rotation
 *     cli_config.c config
 *     cli_keys.c   passwd, dkim keygen, auth blocks and unblock
 *     cli_purge.c  purge
 *     cli_export.c queue export, queue import
 *     cli_restore.c restore list, verify, POINT (offline: the queue key)
 *     cli_suppress.c suppress list, add, remove, check
 *     cli_watchdog.c watchdog status, history, release
 *     cli_scan.c   scan status, flush
 * One thread; every function prints its own errors on stderr (cli_errx).
 */
#ifndef OUTPOST_MTA_CLI_INT_H
#define OUTPOST_MTA_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conf/conf.h"
#include "queue/queue.h"

/* Every file of the command includes this one last of all. */
#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

/* Exit status. */
#define CLI_OK    0
#define CLI_ERR   1
#define CLI_USAGE 2

#define CLI_ARGS_MAX        16
#define CLI_DOMAIN_MAX      255
#define CLI_SUSPEND_DEFAULT "1h"

struct cli {
	const char *conf_file; /* -c, $OUTPOST_CONF or the system file;
				  NULL = embedded defaults (cli.c) */
	const struct cli_cmd *cmd;
	struct conf *conf;
	uint8_t hash_key[QUEUE_KEY_BYTES];
	bool json;
	/* dkim keygen */
	bool ed25519;
	unsigned rsa_bits;
	const char *key_path, *txt_path;
	/* queue selectors and filters */
	const char *domain, *user;
	bool all, held, deferred;
	/* queue show */
	bool headers;
	/* suspend */
	const char *duration, *reason;
	/* drain */
	bool intake_only;
	/* retry, resume */
	bool respect_backoff;
	/* queue export, import */
	const char *to, *key_file, *passphrase_file;
	bool remove;
	/* log */
	const char *rcpt, *event, *id, *since, *until;
	bool follow;
	/* restore */
	bool no_log_replay;
	/* watchdog release */
	bool learn;
	int argc; /* positional arguments after the command words */
	char *argv[CLI_ARGS_MAX];
};

struct cli_cmd {
	const char *name;
	const char *sub; /* second word, or NULL */
	const char *args;
	const char *help;
	unsigned needs; /* CLI_NEED_* (cli.c) */
	unsigned opts;  /* CLI_O_* (cli.c) */
	int min_args, max_args;
	int (*run)(struct cli *c);
	const char *ctl_verb; /* changes: the control-socket command */
	const char *done;     /* changes: "held", "released", … */
};

/* An answer of the daemon, whole (cli_ctl). */
struct cli_reply {
	char *data;  /* the whole answer, NUL-terminated (owned) */
	char *lines; /* the data lines before the final one (into data) */
	char *final; /* the final line, without its LF (into data) */
	bool ok;
	long count; /* "ok N"; -1 for a bare "ok" or an err */
};

/* cli_errx — "outpost: " FMT "\n" on stderr. */
void cli_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * cli_hash_key_load — the log-hash key of C's configuration into
 * c->hash_key; never creates one (a new key would match no log line).
 * 0, or -1 (said on stderr).
 */
int cli_hash_key_load(struct cli *c);

/*
 * cli_ctl — send LINE (one command, without its LF) to the daemon and read
 * the whole answer.  0: it was "ok" and R holds it (free it with
 * cli_reply_free); -1: no answer, or an "err" one (said on stderr after
 * WHAT; R holds nothing).
 */
int cli_ctl(const struct cli *c, const char *what, const char *line,
	    struct cli_reply *r);

/*
 * cli_ctl_open — connect and send LINE (without its LF): the socket, or -1
 * with ERR.  cli_ctl_read — the whole answer on FD (closed), as cli_ctl's
 * R, 0; or -1 with ERR (no answer).  For commands with a dialogue
 * (export, import: cli_export.c).
 */
int cli_ctl_open(const struct cli *c, const char *line, char *err,
		 size_t errlen);
int cli_ctl_read(const struct cli *c, int fd, struct cli_reply *r, char *err,
		 size_t errlen);

/* cli_reply_free — R's answer; R is zeroed. */
void cli_reply_free(struct cli_reply *r);

/*
 * cli_ctl_view — send LINE and copy the answer's data lines to stdout as
 * they come (a listing of a big queue streams; it is never held here).
 * WHAT prefixes errors.  CLI_OK, or CLI_ERR (said on stderr).
 */
int cli_ctl_view(struct cli *c, const char *what, const char *line);

/*
 * cli_ctl_change — send one command; print the daemon's error, prefixed
 * with WHAT.  0 (*count = the N of "ok N", -1 for a bare "ok"), or -1.
 */
int cli_ctl_change(const struct cli *c, const char *what, const char *line,
		   long *count);

/* cli_ctl_word_ok — can S go into a control command as one word
 * (printable, no space, 1..MAX bytes)? */
bool cli_ctl_word_ok(const char *s, size_t max);

/* cli_ctl_user_line — "VERB user USER" into LINE (SIZE bytes), or "VERB
 * user-hex HEX" when USER (1..255 bytes) is not printable ASCII words with
 * single spaces, as the control socket takes a user name. */
void cli_ctl_user_line(const char *verb, const char *user, char *line,
		       size_t size);

/* cli_domain_ok — is S a host name as the control socket takes it? */
bool cli_domain_ok(const char *s);

/*
 * cli_log_each — every line of FILE's rotated files (FILE-YYYY-MM-DD and
 * FILE-YYYY-MM-DD.gz, oldest first, compressed or not) that may hold lines
 * at or after SINCE_MS (those of its day and later, and of the day before,
 * which holds the lines written between midnight and the rotation;
 * SINCE_MS <= 0: all),
 * then FILE itself, each to FN without its LF (LINE is not NUL-terminated
 * and lives until FN returns; a line has no length limit).  FN returns 0 to
 * go on; anything else stops the walk and is returned.  0 when every line
 * was read, or -1 with ERR (a file unreadable or a .gz damaged: the lines
 * before it were given; FILE missing with no rotated file).
 */
int cli_log_each(const char *file, int64_t since_ms,
		 int (*fn)(const char *line, size_t len, void *arg), void *arg,
		 char *err, size_t errlen);

struct stat;
/*
 * cli_log_each_rotated — cli_log_each without FILE itself (`outpost log
 * -f` follows it on its own), skipping the rotated file that is HELD (the
 * caller's open FILE, renamed since it was opened; NULL: none).  *NREAD
 * (if not NULL) is increased by the files read.  Returns as cli_log_each.
 */
int cli_log_each_rotated(const char *file, int64_t since_ms,
			 const struct stat *held,
			 int (*fn)(const char *line, size_t len, void *arg),
			 void *arg, size_t *nread, char *err, size_t errlen);

/*
 * cli_log_js_get — the string value of the top-level member KEY of the
 * JSON object in [P, END) (a delivery-log line), into OUT.  1 found, 0
 * absent (or not a string), -1 malformed.  (cli_log.c)
 */
int cli_log_js_get(const char *p, const char *end, const char *key, char *out,
		   size_t outlen);

/*
 * cli_log_time_parse — "YYYY-MM-DDTHH:MM[:SS[.fff]]Z" (the log's "time",
 * or an operator's) into Unix ms.  0, or -1 when S is not such a time.
 */
int cli_log_time_parse(const char *s, int64_t *ms);

/* The commands (struct cli_cmd.run): CLI_OK, CLI_ERR or CLI_USAGE. */
int cli_queue_summary(struct cli *c);
int cli_queue_status(struct cli *c);
int cli_queue_list(struct cli *c);
int cli_queue_show(struct cli *c);
int cli_queue_change(struct cli *c);
int cli_queue_suspend(struct cli *c);
int cli_queue_resume(struct cli *c);
int cli_queue_drain(struct cli *c);
int cli_queue_resume_intake(struct cli *c);
int cli_queue_suspensions(struct cli *c);
int cli_log(struct cli *c);
int cli_log_hash(struct cli *c);
int cli_config(struct cli *c);
int cli_keys_passwd(struct cli *c);
int cli_keys_dkim_keygen(struct cli *c);
int cli_keys_auth_blocks(struct cli *c);
int cli_keys_auth_unblock(struct cli *c);
int cli_reload(struct cli *c);
int cli_purge(struct cli *c);
int cli_suppress(struct cli *c);
int cli_export_export(struct cli *c);
int cli_export_import(struct cli *c);
int cli_point_now(struct cli *c);
int cli_restore_list(struct cli *c);
int cli_restore_verify(struct cli *c);
int cli_restore(struct cli *c);

/* cli_watchdog.c: `watchdog status|history|release`. */
int cli_watchdog_status(struct cli *c);
int cli_watchdog_history(struct cli *c);
int cli_watchdog_release(struct cli *c);

/* cli_scan.c: `scan status|flush`. */
int cli_scan_status(struct cli *c);
int cli_scan_flush(struct cli *c);

#endif
