/*
 * cli.c — `outpost`, the operator's command-line tool: queue summary, list,
 * show; hold, release, delete, bounce, retry; suspend, resume; AUTH blocks and
 * unblock; the delivery log; passwd, hash, dkim keygen.
 * Owns: command dispatch (one table, cli_cmds[]; options in cli_opts[]).
 * Must not: open the queue or its key — every view (summary, list, show,
 * computed by outpostd: mta/control/control_view.c, which prints the table or the
 * JSON Lines) and every change goes through the daemon's control socket
 * (mta/control/control.h), which checks the caller's rights; create keys; or print
 * an e-mail address in clear.  Only `hash` and `log --rcpt` read the
 * log-hash key.  One thread.
 * Exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "conf/conf.h"
#include "dkim/dkim.h"
#include "queue/queue.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define CLI_OK    0
#define CLI_ERR   1
#define CLI_USAGE 2

#define CLI_PASSWORD_MAX_BYTES 1024
#define CLI_ARGS_MAX           16
#define CLI_DOMAIN_MAX         255
/* The control protocol (mta/control/control.h): a command line is at most
 * CTL_LINE_MAX bytes with its LF; a suspension 1 s to 365 days. */
#define CLI_CTL_LINE_MAX  4096
#define CLI_CTL_REPLY_MAX (16u << 20) /* bytes of an answer we take */
#define CLI_CTL_TIMEOUT_MS                                                     \
	120000 /* for the answer (a change over                                \
		  a large queue takes a while) */
#define CLI_CTL_CONNECT_WAIT_MS                                                \
	3000 /* a socket not there yet: outpostd may be starting */
#define CLI_SUSPEND_MAX_S   31536000
#define CLI_SUSPEND_DEFAULT "1h"
#define CLI_REASON_MAX      200
#define CLI_LOG_POLL_MS     250 /* -f: look for more (or a new file) */
#define CLI_LOG_EVENTS_MAX  16

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
#define CLI_O_LOG     0x40u /* --rcpt ADDRESS, --event E, -f */

struct cli {
	const char *conf_file; /* -c; NULL = embedded defaults */
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
	/* log */
	const char *rcpt, *event;
	bool follow;
	int argc; /* positional arguments after the command words */
	char *argv[CLI_ARGS_MAX];
};

struct cli_cmd {
	const char *name;
	const char *sub; /* second word, or NULL */
	const char *args;
	const char *help;
	unsigned needs;
	unsigned opts; /* CLI_O_* */
	int min_args, max_args;
	int (*run)(struct cli *c);
	const char *ctl_verb; /* changes: the control-socket command */
	const char *done;     /* changes: "held", "released", … */
};

static int cli_queue_summary(struct cli *c);
static int cli_queue_list(struct cli *c);
static int cli_queue_show(struct cli *c);
static int cli_queue_change(struct cli *c);
static int cli_suspend(struct cli *c);
static int cli_resume(struct cli *c);
static int cli_suspensions(struct cli *c);
static int cli_auth_blocks(struct cli *c);
static int cli_auth_unblock(struct cli *c);
static int cli_log(struct cli *c);
static int cli_passwd(struct cli *c);
static int cli_hash(struct cli *c);
static int cli_dkim_keygen(struct cli *c);

#define CLI_SEL_ARGS "ID... | --domain D | --user U | --all  [--json]"

/* The commands. */
static const struct cli_cmd cli_cmds[] = {
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
	{ "queue", "retry", CLI_SEL_ARGS,
	  "attempt the messages selected now (held ones stay held)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX,
	  cli_queue_change, "retry", "scheduled for a retry" },
	{ "queue", "delete", CLI_SEL_ARGS,
	  "remove the messages selected, without a bounce", CLI_NEED_CONF,
	  CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX, cli_queue_change,
	  "delete", "deleted" },
	{ "queue", "bounce", CLI_SEL_ARGS,
	  "fail every pending recipient of the messages selected: a bounce "
	  "to the sender, then removal",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, CLI_ARGS_MAX,
	  cli_queue_change, "bounce", "bounced" },
	{ "suspend", NULL, "DOMAIN [--for DURATION] [--reason TEXT]",
	  "no deliveries to DOMAIN for DURATION (default " CLI_SUSPEND_DEFAULT
	  "; e.g. 30m, 2h, 1d)",
	  CLI_NEED_CONF, CLI_O_SUSPEND, 1, 1, cli_suspend, NULL, NULL },
	{ "resume", NULL, "DOMAIN",
	  "end a suspension of DOMAIN (and its back-off) now", CLI_NEED_CONF, 0,
	  1, 1, cli_resume, NULL, NULL },
	{ "suspensions", NULL, "[--json]",
	  "list suspended destinations (operators', reply patterns, "
	  "back-off)",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_suspensions, NULL, NULL },
	{ "auth", "blocks", "[--json]",
	  "list the SMTP AUTH blocks in force: a user name from a client "
	  "network, or a whole network (auth_limit)",
	  CLI_NEED_CONF, CLI_O_JSON, 0, 0, cli_auth_blocks, NULL, NULL },
	{ "auth", "unblock", "ADDRESS[/LEN] | USER | --user USER | --all",
	  "lift the AUTH blocks of a client address or network, or of a "
	  "user name from anywhere (needs the write right; audited)",
	  CLI_NEED_CONF, CLI_O_SELECT | CLI_O_JSON, 0, 1, cli_auth_unblock,
	  NULL, NULL },
	{ "log", NULL, "[--rcpt ADDRESS] [--event E[,E…]] [-f] [FILE]",
	  "print the delivery log's lines (FILE: log.delivery_file) of one "
	  "recipient and/or of some events; -f: follow it, across rotations",
	  CLI_NEED_CONF, CLI_O_LOG | CLI_O_JSON, 0, 1, cli_log, NULL, NULL },
	{ "passwd", NULL, "[USER [DOMAIN ...]]",
	  "read a password on stdin, print its Argon2id hash (with USER: a "
	  "user block for the configuration)",
	  0, 0, 0, CLI_ARGS_MAX, cli_passwd, NULL, NULL },
	{ "hash", NULL, "ADDRESS",
	  "print the keyed hash of ADDRESS, as the logs and queue show it",
	  CLI_NEED_HASH_KEY, 0, 1, 1, cli_hash, NULL, NULL },
	{ "dkim", "keygen",
	  "DOMAIN SELECTOR [--rsa BITS | --ed25519] [--key FILE] [--txt FILE]",
	  "make a DKIM key (RSA-2048 by default; 0600), print the DNS TXT "
	  "record to publish and the configuration block",
	  CLI_NEED_CONF, CLI_O_KEYGEN, 2, 2, cli_dkim_keygen, NULL, NULL },
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
	{ "--all", NULL, CLI_O_SELECT, CLI_OPT_FLAG,
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
	{ "--rcpt", NULL, CLI_O_LOG, CLI_OPT_STR, offsetof(struct cli, rcpt) },
	{ "--event", NULL, CLI_O_LOG, CLI_OPT_STR,
	  offsetof(struct cli, event) },
	{ "--follow", "-f", CLI_O_LOG, CLI_OPT_FLAG,
	  offsetof(struct cli, follow) },
};

#define CLI_NOPTS (sizeof(cli_opts) / sizeof(cli_opts[0]))

static void cli_errx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
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
		   "       outpost --help\n\n"
		   "  -c FILE  configuration file (default: the embedded "
		   "defaults, data under ./var)\n\ncommands:\n");
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

/* Output helpers ------------------------------------------------------ */

/*
 * Length of the valid UTF-8 sequence at S (1..4), or 0 if it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are not).
 */
static size_t
cli_utf8_len(const unsigned char *s, uint32_t *cp)
{
	size_t n, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
	} else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return n;
}

/*
 * Print S from the queue (peer-supplied bytes): as a JSON string (quoted,
 * escaped, invalid UTF-8 as U+FFFD), or for a terminal (control characters,
 * C1 controls and invalid bytes as \xNN / \uNNNN, so nothing reaches the
 * terminal as an escape sequence).
 */
static void
cli_text_put(FILE *f, const char *s, bool json)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	size_t n;

	if (json)
		fputc('"', f);
	while (*p != '\0') {
		n = cli_utf8_len(p, &cp);
		if (n == 0) {
			if (json)
				fputs("\\ufffd", f);
			else
				fprintf(f, "\\x%02x", *p);
			p++;
			continue;
		}
		if (json && (cp == '"' || cp == '\\'))
			fprintf(f, "\\%c", (char)cp);
		else if (cp < 0x20 || cp == 0x7f ||
			 (!json && cp >= 0x80 && cp < 0xa0))
			fprintf(f, json ? "\\u%04x" : "\\x%02x", (unsigned)cp);
		else
			fwrite(p, 1, n, f);
		p += n;
	}
	if (json)
		fputc('"', f);
}

/* A JSON object written field by field. */
struct cli_json {
	FILE *f;
	bool first;
};

static void
cli_json_begin(struct cli_json *j, FILE *f)
{
	j->f = f;
	j->first = true;
	fputc('{', f);
}

static void
cli_json_key(struct cli_json *j, const char *key)
{
	if (!j->first)
		fputc(',', j->f);
	j->first = false;
	cli_text_put(j->f, key, true);
	fputc(':', j->f);
}

static void
cli_json_str(struct cli_json *j, const char *key, const char *v)
{
	cli_json_key(j, key);
	if (v == NULL)
		fputs("null", j->f);
	else
		cli_text_put(j->f, v, true);
}

static void
cli_json_i64(struct cli_json *j, const char *key, int64_t v)
{
	cli_json_key(j, key);
	fprintf(j->f, "%" PRId64, v);
}

static void
cli_json_end(struct cli_json *j)
{
	fputc('}', j->f);
}

/* "2024-01-02T03:04:05.678Z" (JSON) or "2024-01-02 03:04:05" (table). */
static void
cli_time_fmt(int64_t ms, bool precise, char *buf, size_t size)
{
	struct tm tm;
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	char base[32];
	int n;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(base, sizeof(base),
		     precise ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S",
		     &tm) == 0) {
		n = snprintf(buf, size, "%" PRId64 "ms", ms);
	} else if (precise) {
		n = snprintf(buf, size, "%s.%03dZ", base,
			     (int)(((ms % 1000) + 1000) % 1000));
	} else
		n = snprintf(buf, size, "%s", base);
	if (n < 0 || (size_t)n >= size)
		buf[0] = '\0';
}

/* Setup --------------------------------------------------------------- */

static int
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

static int
cli_setup(struct cli *c, unsigned needs)
{
	char err[1024];

	if (needs & CLI_NEED_HASH_KEY)
		needs |= CLI_NEED_CONF;
	if (needs & CLI_NEED_CONF) {
		if (conf_load(&c->conf, c->conf_file, err, sizeof(err)) != 0) {
			cli_errx("%s", err);
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

/* The control socket (mta/control/control.h) ------------------------------------ */

struct cli_reply {
	char *data;  /* the whole answer, NUL-terminated (owned) */
	char *lines; /* the data lines before the final one (into data) */
	char *final; /* the final line, without its LF (into data) */
	bool ok;
	long count; /* "ok N"; -1 for a bare "ok" or an err */
};

static void
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
	struct timespec ts;
	int64_t now;
	int rc;

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static int64_t
cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
cli_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
 * Connect to the daemon and send LINE (one command, without its LF), by
 * DEADLINE.  A socket that is not there yet (the daemon makes it a moment
 * after it starts listening) is tried again for CLI_CTL_CONNECT_WAIT_MS.
 * A daemon that answers and closes before reading (a refusal at accept)
 * is not an error here: its answer is read next.  The socket, or -1 (ERR).
 */
static int
cli_ctl_open(const struct cli *c, const char *line, int64_t deadline, char *err,
	     size_t errlen)
{
	const char *path = c->conf->control.socket;
	int64_t give_up = cli_mono_ms() + CLI_CTL_CONNECT_WAIT_MS;
	struct sockaddr_un sun;
	size_t off, n = strlen(line);
	char *msg = NULL;
	ssize_t w;
	int fd;

	if (n + 1 > CLI_CTL_LINE_MAX) {
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
		    cli_mono_ms() >= give_up)
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
 * cli_ctl — send LINE (one command, without its LF) to the daemon and read
 * the whole answer.  0: R is filled (r->ok says ok or err; free it with
 * cli_reply_free); -1: no answer (why in ERR: not running, no access, …).
 */
static int
cli_ctl(const struct cli *c, const char *line, struct cli_reply *r, char *err,
	size_t errlen)
{
	const char *path = c->conf->control.socket;
	int64_t deadline = cli_mono_ms() + CLI_CTL_TIMEOUT_MS;
	size_t len = 0, cap = 0;
	char *nd;
	ssize_t w;
	int fd;

	memset(r, 0, sizeof(*r));
	if ((fd = cli_ctl_open(c, line, deadline, err, errlen)) < 0)
		return -1;
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

/* Can S go into a control command as one word (printable, no space)? */
static bool
cli_ctl_word_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return n > 0 && n <= max;
}

/* Is S a host name as the control socket takes it? */
static bool
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

/* Views: summary, list, show (computed by outpostd) ------------------------ */

/*
 * Send LINE and copy the answer's data lines to stdout as they come (a
 * listing of a big queue streams; it is never held here); the last line
 * is the final "ok N" / "err TEXT", held back until the end.  WHAT
 * prefixes errors.  CLI_OK, or CLI_ERR (said on stderr).
 */
static int
cli_ctl_view(struct cli *c, const char *what, const char *line)
{
	char err[600], *buf = NULL, *nb, *nl;
	size_t len = 0, cap = 0, start = 0, last = 0;
	bool have_last = false;
	ssize_t w;
	int fd, rc = CLI_ERR;

	if ((fd = cli_ctl_open(c, line, cli_mono_ms() + CLI_CTL_TIMEOUT_MS, err,
			       sizeof(err))) < 0) {
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
				 cli_mono_ms() + CLI_CTL_TIMEOUT_MS) != 0) {
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

static int
cli_queue_summary(struct cli *c)
{
	return cli_ctl_view(c, "queue summary",
			    c->json ? "summary json" : "summary");
}

static int
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

static int
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

/* Changes through the control socket ------------------------------------- */

/* Send one command; print the daemon's error.  0 ok (*count set), -1. */
static int
cli_ctl_change(struct cli *c, const char *what, const char *line, long *count)
{
	struct cli_reply r;
	char err[600];

	if (cli_ctl(c, line, &r, err, sizeof(err)) != 0) {
		cli_errx("%s: %s", what, err);
		return -1;
	}
	if (!r.ok) {
		cli_errx("%s: %s", what, r.final + 4);
		cli_reply_free(&r);
		return -1;
	}
	*count = r.count;
	cli_reply_free(&r);
	return 0;
}

/* queue hold|release|retry|delete|bounce ID… | --domain D | --user U |
 * --all: one command per id, or one for the selector. */
static int
cli_queue_change(struct cli *c)
{
	const struct cli_cmd *cmd = c->cmd;
	char line[CLI_CTL_LINE_MAX], what[64], hex[QUEUE_ID_HEX_BYTES];
	long total = 0, count;
	uint64_t id;
	int i, nsel, failed = 0;
	struct cli_json j;

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
	if (c->argc == 0) {
		if (c->all)
			snprintf(line, sizeof(line), "%s all", cmd->ctl_verb);
		else
			snprintf(line, sizeof(line), "%s %s %s", cmd->ctl_verb,
				 c->domain != NULL ? "domain" : "user",
				 c->domain != NULL ? c->domain : c->user);
		if (cli_ctl_change(c, what, line, &total) != 0)
			return CLI_ERR;
	}
	for (i = 0; i < c->argc; i++) {
		(void)queue_id_parse(c->argv[i], &id);
		queue_id_format(id, hex);
		snprintf(line, sizeof(line), "%s id %s", cmd->ctl_verb, hex);
		if (cli_ctl_change(c, what, line, &count) != 0) {
			failed++;
			continue;
		}
		total += count > 0 ? count : 0;
	}
	if (c->json) {
		cli_json_begin(&j, stdout);
		cli_json_str(&j, "command", cmd->sub);
		cli_json_i64(&j, "changed", total);
		if (failed > 0)
			cli_json_i64(&j, "failed", failed);
		cli_json_end(&j);
		fputc('\n', stdout);
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
cli_reason_norm(const char *in, char *out, size_t outlen)
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

static int
cli_suspend(struct cli *c)
{
	const char *dom = c->argv[0];
	char line[CLI_CTL_LINE_MAX], reason[CLI_REASON_MAX + 1], until[40];
	uint64_t ms, secs;
	long count;

	if (!cli_domain_ok(dom)) {
		cli_errx("suspend: %s: not a domain name", dom);
		return CLI_USAGE;
	}
	if (conf_parse_duration(c->duration != NULL ? c->duration
						    : CLI_SUSPEND_DEFAULT,
				&ms) != 0 ||
	    (secs = (ms + 999) / 1000) == 0 || secs > CLI_SUSPEND_MAX_S) {
		cli_errx("suspend: --for %s: a duration from 1s to 365d (30m, "
			 "2h, 1d …)",
			 c->duration);
		return CLI_USAGE;
	}
	reason[0] = '\0';
	if (c->reason != NULL &&
	    cli_reason_norm(c->reason, reason, sizeof(reason)) != 0) {
		cli_errx("suspend: --reason: printable ASCII, at most %d "
			 "bytes",
			 CLI_REASON_MAX);
		return CLI_USAGE;
	}
	snprintf(line, sizeof(line), "suspend %s %" PRIu64 "%s%s", dom, secs,
		 reason[0] != '\0' ? " " : "", reason);
	if (cli_ctl_change(c, "suspend", line, &count) != 0)
		return CLI_ERR;
	cli_time_fmt(cli_now_ms() + (int64_t)secs * 1000, false, until,
		     sizeof(until));
	printf("%s suspended until %s UTC\n", dom, until);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

static int
cli_resume(struct cli *c)
{
	char line[CLI_CTL_LINE_MAX];
	long count;

	if (!cli_domain_ok(c->argv[0])) {
		cli_errx("resume: %s: not a domain name", c->argv[0]);
		return CLI_USAGE;
	}
	snprintf(line, sizeof(line), "resume %s", c->argv[0]);
	if (cli_ctl_change(c, "resume", line, &count) != 0)
		return CLI_ERR;
	printf("%s resumed\n", c->argv[0]);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

static int
cli_suspensions(struct cli *c)
{
	struct cli_reply r;
	struct cli_json j;
	char err[600], *line, *save = NULL, *until, *reason, *end, when[40];
	int64_t ms;

	if (cli_ctl(c, "suspensions", &r, err, sizeof(err)) != 0) {
		cli_errx("suspensions: %s", err);
		return CLI_ERR;
	}
	if (!r.ok) {
		cli_errx("suspensions: %s", r.final + 4);
		cli_reply_free(&r);
		return CLI_ERR;
	}
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
		cli_time_fmt(ms, c->json, when, sizeof(when));
		if (c->json) {
			cli_json_begin(&j, stdout);
			cli_json_str(&j, "destination", line + 10);
			cli_json_str(&j, "until", when);
			cli_json_i64(&j, "until_ms", ms);
			cli_json_str(&j, "reason", reason);
			cli_json_end(&j);
			fputc('\n', stdout);
		} else {
			printf("%-40s  %-23s  ", line + 10, when);
			cli_text_put(stdout, reason != NULL ? reason : "",
				     false);
			fputc('\n', stdout);
		}
	}
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* auth blocks, auth unblock ---------------------------------------------- */

/* Print one "block SCOPE NETWORK UNTIL_MS WHO" line of the daemon. */
static void
cli_auth_block_print(const struct cli *c, char *line)
{
	char *scope, *net, *until, *who, *save = NULL, when[40], name[256];
	const char *user = NULL, *hash = NULL;
	size_t n = 0;
	int64_t ms;
	struct cli_json j;

	if (strtok_r(line, " ", &save) == NULL ||
	    (scope = strtok_r(NULL, " ", &save)) == NULL ||
	    (net = strtok_r(NULL, " ", &save)) == NULL ||
	    (until = strtok_r(NULL, " ", &save)) == NULL ||
	    (who = strtok_r(NULL, " ", &save)) == NULL)
		return;
	ms = strtoll(until, NULL, 10);
	if (strncmp(who, "name:", 5) == 0 &&
	    sodium_hex2bin((unsigned char *)name, sizeof(name) - 1, who + 5,
			   strlen(who + 5), NULL, &n, NULL) == 0) {
		name[n] = '\0';
		user = name;
	} else if (strncmp(who, "hash:", 5) == 0)
		hash = who + 5;
	cli_time_fmt(ms, c->json, when, sizeof(when));
	if (c->json) {
		cli_json_begin(&j, stdout);
		cli_json_str(&j, "scope", scope);
		cli_json_str(&j, "network", net);
		cli_json_str(&j, "user", user);
		if (hash != NULL)
			cli_json_str(&j, "user_hash", hash);
		cli_json_str(&j, "until", when);
		cli_json_i64(&j, "until_ms", ms);
		cli_json_end(&j);
		fputc('\n', stdout);
		return;
	}
	printf("%-43s  %-19s  ", net, when);
	if (user != NULL)
		cli_text_put(stdout, user, false);
	else if (hash != NULL)
		printf("(not a user: hash %.16s)", hash);
	else
		printf("* (every name)");
	fputc('\n', stdout);
}

static int
cli_auth_blocks(struct cli *c)
{
	struct cli_reply r;
	char err[600], *line, *save = NULL;

	if (cli_ctl(c, "auth-blocks", &r, err, sizeof(err)) != 0) {
		cli_errx("auth blocks: %s", err);
		return CLI_ERR;
	}
	if (!r.ok) {
		cli_errx("auth blocks: %s", r.final + 4);
		cli_reply_free(&r);
		return CLI_ERR;
	}
	if (!c->json)
		printf("%-43s  %-19s  %s\n", "NETWORK", "UNTIL (UTC)", "USER");
	for (line = strtok_r(r.lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "block ", 6) == 0)
			cli_auth_block_print(c, line);
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* Is ARG an address, or ADDRESS/LEN?  1 yes, 0 no (a user name), -1 an
 * address with a bad LEN. */
static int
cli_auth_is_net(const char *arg)
{
	char addr[INET6_ADDRSTRLEN + 1], *end;
	unsigned char bin[16];
	const char *slash = strchr(arg, '/');
	size_t n = slash != NULL ? (size_t)(slash - arg) : strlen(arg);
	unsigned long v;
	int max;

	if (n == 0 || n >= sizeof(addr))
		return 0;
	memcpy(addr, arg, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, bin) == 1)
		max = 32;
	else if (inet_pton(AF_INET6, addr, bin) == 1)
		max = 128;
	else
		return 0;
	if (slash == NULL)
		return 1;
	errno = 0;
	v = strtoul(slash + 1, &end, 10);
	return slash[1] >= '0' && slash[1] <= '9' && *end == '\0' &&
		       errno == 0 && v <= (unsigned long)max
		   ? 1
		   : -1;
}

/* A user name as the protocol carries it: as is when it is printable
 * ASCII words with single spaces, else hex. */
static void
cli_auth_user_line(const char *user, char *line, size_t size)
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
		snprintf(line, size, "auth-unblock user %s", user);
	else
		snprintf(line, size, "auth-unblock user-hex %s",
			 sodium_bin2hex(hex, sizeof(hex),
					(const unsigned char *)user, n));
}

static int
cli_auth_unblock(struct cli *c)
{
	char line[CLI_CTL_LINE_MAX];
	const char *user = c->user;
	struct cli_json j;
	long count;
	int net = 0;

	if (c->domain != NULL ||
	    (c->argc > 0) + (c->user != NULL) + c->all != 1) {
		cli_errx("auth unblock: give one of ADDRESS, USER, --user "
			 "USER or --all");
		return CLI_USAGE;
	}
	if (c->argc > 0 && (net = cli_auth_is_net(c->argv[0])) < 0) {
		cli_errx("auth unblock: %s: the length after / is 0..32 "
			 "(IPv4) or 0..128 (IPv6)",
			 c->argv[0]);
		return CLI_USAGE;
	}
	if (c->argc > 0 && net == 0)
		user = c->argv[0];
	if (user != NULL && (user[0] == '\0' || strlen(user) > 255)) {
		cli_errx("auth unblock: a user name is 1..255 bytes");
		return CLI_USAGE;
	}
	if (c->all)
		snprintf(line, sizeof(line), "auth-unblock all");
	else if (user != NULL)
		cli_auth_user_line(user, line, sizeof(line));
	else
		snprintf(line, sizeof(line), "auth-unblock address %s",
			 c->argv[0]);
	if (cli_ctl_change(c, "auth unblock", line, &count) != 0)
		return CLI_ERR;
	if (count < 0)
		count = 0;
	if (c->json) {
		cli_json_begin(&j, stdout);
		cli_json_str(&j, "command", "auth unblock");
		cli_json_i64(&j, "lifted", count);
		cli_json_end(&j);
		fputc('\n', stdout);
	} else
		printf("%ld block%s lifted\n", count, count == 1 ? "" : "s");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* log ------------------------------------------------------------------ */

/* Skip white space. */
static const char *
cli_js_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

/* Past the JSON string at P (at its opening quote); copy its value
 * (escapes decoded, non-ASCII \u as '?') into OUT if not NULL.  NULL:
 * malformed. */
static const char *
cli_js_str(const char *p, const char *end, char *out, size_t outlen)
{
	size_t n = 0;
	char ch;

	if (p >= end || *p != '"')
		return NULL;
	for (p++; p < end && *p != '"'; p++) {
		ch = *p;
		if (ch == '\\') {
			if (++p >= end)
				return NULL;
			switch (*p) {
			case 'n':
				ch = '\n';
				break;
			case 't':
				ch = '\t';
				break;
			case 'r':
				ch = '\r';
				break;
			case 'b':
				ch = '\b';
				break;
			case 'f':
				ch = '\f';
				break;
			case 'u':
				if (end - p < 5)
					return NULL;
				ch = '?';
				p += 4;
				break;
			default:
				ch = *p; /* \" \\ \/ */
			}
		}
		if (out != NULL && n + 1 < outlen)
			out[n++] = ch;
	}
	if (p >= end)
		return NULL;
	if (out != NULL)
		out[n] = '\0';
	return p + 1;
}

/* Past the JSON value at P (any kind); NULL: malformed. */
static const char *
cli_js_skip(const char *p, const char *end)
{
	int depth = 0;

	do {
		p = cli_js_ws(p, end);
		if (p >= end)
			return NULL;
		if (*p == '"') {
			if ((p = cli_js_str(p, end, NULL, 0)) == NULL)
				return NULL;
		} else if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			if (--depth < 0)
				return NULL;
			p++;
		} else if (*p == ',' || *p == ':') {
			if (depth == 0)
				return NULL;
			p++;
		} else {
			while (p < end && *p != ',' && *p != '}' && *p != ']' &&
			       *p != ' ')
				p++;
		}
	} while (depth > 0);
	return p;
}

/*
 * The string value of the top-level member KEY of the JSON object in
 * [P, END), into OUT.  1 found, 0 absent (or not a string), -1 malformed.
 */
static int
cli_js_get(const char *p, const char *end, const char *key, char *out,
	   size_t outlen)
{
	char k[64];

	p = cli_js_ws(p, end);
	if (p >= end || *p++ != '{')
		return -1;
	for (;;) {
		p = cli_js_ws(p, end);
		if (p < end && *p == '}')
			return 0;
		if ((p = cli_js_str(p, end, k, sizeof(k))) == NULL)
			return -1;
		p = cli_js_ws(p, end);
		if (p >= end || *p++ != ':')
			return -1;
		p = cli_js_ws(p, end);
		if (strcmp(k, key) == 0) {
			if (p < end && *p == '"')
				return cli_js_str(p, end, out, outlen) != NULL
					   ? 1
					   : -1;
			return 0;
		}
		if ((p = cli_js_skip(p, end)) == NULL)
			return -1;
		p = cli_js_ws(p, end);
		if (p < end && *p == ',')
			p++;
		else if (p < end && *p == '}')
			return 0;
		else
			return -1;
	}
}

struct cli_logf {
	const char *hash; /* --rcpt: its rcpt_hash, or NULL */
	char *events[CLI_LOG_EVENTS_MAX];
	int nevents;
};

static bool
cli_log_match(const struct cli_logf *f, const char *line, size_t len)
{
	char v[128];
	int i;

	if (f->hash != NULL &&
	    (cli_js_get(line, line + len, "rcpt_hash", v, sizeof(v)) != 1 ||
	     strcmp(v, f->hash) != 0))
		return false;
	if (f->nevents == 0)
		return true;
	if (cli_js_get(line, line + len, "event", v, sizeof(v)) != 1)
		return false;
	for (i = 0; i < f->nevents; i++)
		if (strcmp(v, f->events[i]) == 0)
			return true;
	return false;
}

/* The complete lines in BUF[0..*len): print those that match; keep the
 * unfinished last line at the front of BUF. */
static void
cli_log_lines(const struct cli_logf *f, char *buf, size_t *len, bool flush)
{
	char *p = buf, *end = buf + *len, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (cli_log_match(f, p, (size_t)(nl - p)))
			fwrite(p, 1, (size_t)(nl - p + 1), stdout);
		p = nl + 1;
	}
	if (flush && p < end) {
		if (cli_log_match(f, p, (size_t)(end - p))) {
			fwrite(p, 1, (size_t)(end - p), stdout);
			fputc('\n', stdout);
		}
		p = end;
	}
	memmove(buf, p, (size_t)(end - p));
	*len = (size_t)(end - p);
}

/* Read what FD has now into the line buffer; 0 at its end, -1 error. */
static int
cli_log_read(int fd, const struct cli_logf *f, char **buf, size_t *len,
	     size_t *cap)
{
	ssize_t r;
	char *nb;

	for (;;) {
		if (*cap - *len < 65536) {
			if ((nb = realloc(*buf, *cap * 2 + 65536)) == NULL)
				return -1;
			*buf = nb;
			*cap = *cap * 2 + 65536;
		}
		r = read(fd, *buf + *len, *cap - *len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		*len += (size_t)r;
		cli_log_lines(f, *buf, len, false);
	}
}

/*
 * log — filter the delivery log (JSON Lines) by recipient (its keyed hash,
 * as `outpost hash` makes it) and/or event.  With -f, follow the file as
 * tail -F does: wait for more, and when the name points to a new file
 * (logrotate moved the old one) finish the old one and go on with the new.
 * Its length is the follow loop, which reads better in one piece.
 */
static int
cli_log(struct cli *c)
{
	struct cli_logf f;
	struct stat st, nst;
	char hash[QUEUE_HASH_HEX_BYTES], *events = NULL, *tok, *save = NULL;
	const char *path;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	struct timespec pause = { 0, CLI_LOG_POLL_MS * 1000000L };
	int fd = -1, rc = CLI_ERR;
	off_t off;

	memset(&f, 0, sizeof(f));
	path = c->argc > 0 ? c->argv[0] : c->conf->log.delivery_file;
	if (path == NULL) {
		cli_errx("log: no delivery log configured (log { "
			 "delivery_file }): give FILE");
		return CLI_USAGE;
	}
	if (c->event != NULL) {
		if ((events = strdup(c->event)) == NULL)
			return CLI_ERR;
		for (tok = strtok_r(events, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save)) {
			if (f.nevents == CLI_LOG_EVENTS_MAX) {
				cli_errx("log: --event: at most %d events",
					 CLI_LOG_EVENTS_MAX);
				free(events);
				return CLI_USAGE;
			}
			f.events[f.nevents++] = tok;
		}
	}
	if (c->rcpt != NULL) {
		if (cli_hash_key_load(c) != 0)
			goto done;
		queue_addr_hash(c->hash_key, c->rcpt, hash);
		f.hash = hash;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		cli_errx("log: %s: %s", path, strerror(errno));
		goto done;
	}
	for (;;) {
		if (cli_log_read(fd, &f, &buf, &len, &cap) != 0) {
			cli_errx("log: %s: %s", path, strerror(errno));
			goto done;
		}
		if (fflush(stdout) != 0)
			goto done;
		if (!c->follow)
			break;
		nanosleep(&pause, NULL);
		if (stat(path, &nst) != 0)
			continue; /* between rename and re-creation */
		if (nst.st_ino != st.st_ino || nst.st_dev != st.st_dev) {
			/* Rotated: the rest of the old file, then the new. */
			if (cli_log_read(fd, &f, &buf, &len, &cap) != 0)
				goto done;
			cli_log_lines(&f, buf, &len, true);
			close(fd);
			while ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
				nanosleep(&pause, NULL);
			if (fstat(fd, &st) != 0)
				memset(&st, 0, sizeof(st));
			continue;
		}
		off = lseek(fd, 0, SEEK_CUR);
		if (off > nst.st_size) {
			/* Truncated in place: start again from the top. */
			(void)lseek(fd, 0, SEEK_SET);
			len = 0;
		}
	}
	cli_log_lines(&f, buf, &len, true);
	rc = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(events);
	return rc;
}

/* passwd -------------------------------------------------------------- */

static struct termios cli_tty_saved;
static volatile sig_atomic_t cli_tty_echo_off;

/* Give the terminal its echo back if interrupted at the prompt. */
static void
cli_tty_signal(int sig)
{
	if (cli_tty_echo_off)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Read one line from stdin into PW (room for CLI_PASSWORD_MAX_BYTES + 1)
 * with read(2), so no stdio buffer keeps a copy.  Returns its length
 * without the line end, or -1 (message printed).
 */
static ssize_t
cli_line_read(char *pw)
{
	size_t n = 0;
	ssize_t r;
	char ch;

	for (;;) {
		if ((r = read(STDIN_FILENO, &ch, 1)) < 0) {
			if (errno == EINTR)
				continue;
			cli_errx("passwd: reading stdin: %s", strerror(errno));
			return -1;
		}
		if (r == 0 || ch == '\n')
			break;
		if (n == CLI_PASSWORD_MAX_BYTES) {
			cli_errx("passwd: password longer than %d bytes",
				 CLI_PASSWORD_MAX_BYTES);
			return -1;
		}
		pw[n++] = ch;
	}
	if (n > 0 && pw[n - 1] == '\r')
		n--;
	pw[n] = '\0';
	return (ssize_t)n;
}

/* Prompt on the terminal with echo off; NULL PROMPT: no terminal. */
static ssize_t
cli_password_read(char *pw, const char *prompt)
{
	struct termios t;
	ssize_t n;

	if (prompt == NULL)
		return cli_line_read(pw);
	if (tcgetattr(STDIN_FILENO, &cli_tty_saved) != 0) {
		cli_errx("passwd: %s", strerror(errno));
		return -1;
	}
	t = cli_tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	signal(SIGINT, cli_tty_signal);
	signal(SIGTERM, cli_tty_signal);
	signal(SIGHUP, cli_tty_signal);
	fputs(prompt, stderr);
	fflush(stderr);
	cli_tty_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) != 0) {
		cli_tty_echo_off = 0;
		cli_errx("passwd: %s", strerror(errno));
		return -1;
	}
	n = cli_line_read(pw);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_tty_saved);
	cli_tty_echo_off = 0;
	return n;
}

/* May S go inside a configuration string as is? */
static bool
cli_conf_word_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e ||
		    *s == '"' || *s == '\\')
			return false;
	return true;
}

static int
cli_passwd(struct cli *c)
{
	char hash[crypto_pwhash_STRBYTES];
	char *pw = NULL, *again = NULL;
	bool tty = isatty(STDIN_FILENO) != 0;
	ssize_t n;
	int i, rc = CLI_ERR;

	for (i = 0; i < c->argc; i++)
		if (!cli_conf_word_ok(c->argv[i])) {
			cli_errx("passwd: \"%s\": want printable ASCII without "
				 "quotes, backslashes or spaces",
				 c->argv[i]);
			return CLI_USAGE;
		}
	if (sodium_init() < 0) {
		cli_errx("passwd: libsodium initialisation failed");
		return CLI_ERR;
	}
	pw = sodium_malloc(CLI_PASSWORD_MAX_BYTES + 1);
	again = sodium_malloc(CLI_PASSWORD_MAX_BYTES + 1);
	if (pw == NULL || again == NULL) {
		cli_errx("passwd: out of memory");
		goto done;
	}
	if ((n = cli_password_read(pw, tty ? "Password: " : NULL)) < 0)
		goto done;
	if (n == 0) {
		cli_errx("passwd: empty password");
		goto done;
	}
	if (tty) {
		if (cli_password_read(again, "Again: ") < 0)
			goto done;
		if (strcmp(pw, again) != 0) {
			cli_errx("passwd: the passwords differ");
			goto done;
		}
	}
	if (crypto_pwhash_str_alg(hash, pw, (unsigned long long)n,
				  crypto_pwhash_OPSLIMIT_INTERACTIVE,
				  crypto_pwhash_MEMLIMIT_INTERACTIVE,
				  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		cli_errx("passwd: hashing failed (out of memory?)");
		goto done;
	}
	if (c->argc == 0)
		printf("%s\n", hash);
	else {
		printf("user \"%s\" {\n\tpassword = \"%s\"\n"
		       "\tsender_domains = {",
		       c->argv[0], hash);
		if (c->argc == 1)
			printf(" \"example.com\" } # the domains %s may use",
			       c->argv[0]);
		else {
			for (i = 1; i < c->argc; i++)
				printf(" \"%s\"%s", c->argv[i],
				       i + 1 < c->argc ? "," : "");
			printf(" }");
		}
		printf("\n}\n");
	}
	rc = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
done:
	sodium_free(pw);
	sodium_free(again);
	return rc;
}

/* hash ---------------------------------------------------------------- */

static int
cli_hash(struct cli *c)
{
	char hash[QUEUE_HASH_HEX_BYTES];

	queue_addr_hash(c->hash_key, c->argv[0], hash);
	printf("%s\n", hash);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* DKIM keys ----------------------------------------------------------- */

/* Print VALUE as a zone-file TXT record split in strings of <= 255. */
static void
cli_txt_zone(const char *name, const char *value)
{
	size_t n = strlen(value), i;

	printf("%s. IN TXT (", name);
	for (i = 0; i < n; i += 250)
		printf("\n\t\"%.*s\"", (int)(n - i < 250 ? n - i : 250),
		       value + i);
	printf(" )\n");
}

static int
cli_dkim_keygen(struct cli *c)
{
	const char *domain = c->argv[0], *sel = c->argv[1];
	enum dkim_alg alg =
	    c->ed25519 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
	char path[PATH_MAX], name[600], err[600], *txt = NULL;
	FILE *f;
	int rc;

	if (c->ed25519 && c->rsa_bits != 0) {
		cli_errx("--rsa and --ed25519 exclude each other");
		return CLI_USAGE;
	}
	if (strchr(domain, '/') != NULL || strchr(sel, '/') != NULL ||
	    domain[0] == '.' || sel[0] == '.') {
		cli_errx("bad domain or selector");
		return CLI_USAGE;
	}
	if (c->key_path != NULL)
		snprintf(path, sizeof(path), "%s", c->key_path);
	else if ((size_t)snprintf(path, sizeof(path), "%s/keys/dkim/%s.%s.key",
				  c->conf->data_dir, domain,
				  sel) >= sizeof(path)) {
		cli_errx("path too long");
		return CLI_ERR;
	}
	rc = dkim_keys_init(0, err, sizeof(err));
	if (rc < 0) {
		cli_errx("%s", err);
		return CLI_ERR;
	}
	if (dkim_key_generate(path, alg, c->rsa_bits ? c->rsa_bits : 2048, &txt,
			      err, sizeof(err)) != 0) {
		cli_errx("%s", err);
		return CLI_ERR;
	}
	if (c->txt_path != NULL) {
		if ((f = fopen(c->txt_path, "w")) == NULL ||
		    fprintf(f, "%s\n", txt) < 0 || fclose(f) != 0) {
			cli_errx("%s: %s", c->txt_path, strerror(errno));
			free(txt);
			return CLI_ERR;
		}
	}
	snprintf(name, sizeof(name), "%s._domainkey.%s", sel, domain);
	printf("# %s key written to %s (mode 0600).\n",
	       c->ed25519 ? "Ed25519" : "RSA", path);
	printf("# Publish this DNS record:\n");
	cli_txt_zone(name, txt);
	printf("# And in outpost.conf:\n");
	if (c->ed25519)
		printf("dkim \"%s\" { ed25519_selector = \"%s\" "
		       "ed25519_key = \"%s\" }\n",
		       domain, sel, path);
	else
		printf("dkim \"%s\" { selector = \"%s\" rsa_key = \"%s\" "
		       "}\n",
		       domain, sel, path);
	free(txt);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* Dispatch ------------------------------------------------------------ */

/* The command named by ARGV[0] (and ARGV[1]); *words = words it used. */
static const struct cli_cmd *
cli_cmd_find(int argc, char **argv, int *words)
{
	size_t i;

	for (i = 0; i < CLI_NCMDS; i++) {
		if (strcmp(argv[0], cli_cmds[i].name) != 0)
			continue;
		if (cli_cmds[i].sub == NULL) {
			*words = 1;
			return &cli_cmds[i];
		}
		if (argc > 1 && strcmp(argv[1], cli_cmds[i].sub) == 0) {
			*words = 2;
			return &cli_cmds[i];
		}
	}
	return NULL;
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
