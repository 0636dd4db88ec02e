/*
 * cli.c — `outpost`, the operator's command-line tool: queue summary, list,
 * show; hold, release, delete, bounce, retry; suspend, resume; AUTH blocks
 * and unblock; the delivery log; passwd, hash, dkim keygen.
 * Owns: command dispatch (one table, cli_cmds[]; options in cli_opts[]) and
 * output formats (a table for people, JSON Lines with --json).  Must not:
 * write to the queue (it opens LMDB read-only; every change goes through the
 * daemon's control socket, mta/control.h, so the scheduler stays
 * consistent), create keys, or print an e-mail address in clear — addresses
 * are shown as their keyed hash (queue_addr_hash) and their domain.
 * Commands that only talk to the socket open neither LMDB nor a key, so an
 * operator without access to the queue files can run them.  One thread,
 * but `queue summary` walks the queue with a few (queue_walk_range).
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
#include <pthread.h>
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
/* The control protocol (mta/control.h): a command line is at most
 * CTL_LINE_MAX bytes with its LF; a suspension 1 s to 365 days. */
#define CLI_CTL_LINE_MAX  4096
#define CLI_CTL_REPLY_MAX (16u << 20) /* bytes of an answer we take */
#define CLI_CTL_TIMEOUT_MS                                                     \
	120000 /* for the answer (a change over                                \
		  a large queue takes a while) */
#define CLI_SUSPEND_MAX_S      31536000
#define CLI_SUSPEND_DEFAULT    "1h"
#define CLI_REASON_MAX         200
#define CLI_SUMMARY_THREADS    8          /* at most */
#define CLI_SUMMARY_PER_THREAD 20000      /* messages, before a second thread */
#define CLI_HEADERS_MAX        (1u << 20) /* bytes of a header block shown */
#define CLI_LOG_POLL_MS        250 /* -f: look for more (or a new file) */
#define CLI_LOG_EVENTS_MAX     16

/* What a command needs before it runs. */
#define CLI_NEED_CONF     0x1u
#define CLI_NEED_HASH_KEY 0x2u /* implies CLI_NEED_CONF */
#define CLI_NEED_QUEUE    0x4u /* implies CLI_NEED_CONF */

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
	struct queue *queue;
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
	  CLI_NEED_QUEUE, CLI_O_JSON, 0, 0, cli_queue_summary, NULL, NULL },
	{ "queue", "list", "[--domain D] [--held] [--deferred] [--json]",
	  "list queued messages (addresses as keyed hash and domain)",
	  CLI_NEED_QUEUE | CLI_NEED_HASH_KEY, CLI_O_JSON | CLI_O_FILTER, 0, 0,
	  cli_queue_list, NULL, NULL },
	{ "queue", "show", "ID [--headers] [--json]",
	  "show one message's envelope and recipients; --headers: its "
	  "header block, every address as hash:HASH@domain (needs the export "
	  "right)",
	  CLI_NEED_QUEUE | CLI_NEED_HASH_KEY, CLI_O_JSON | CLI_O_HEADERS, 1, 1,
	  cli_queue_show, NULL, NULL },
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
cli_json_u64(struct cli_json *j, const char *key, uint64_t v)
{
	cli_json_key(j, key);
	fprintf(j->f, "%" PRIu64, v);
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

/* An address shown without the address: keyed hash, lower-case domain. */
struct cli_addr {
	char hash[QUEUE_HASH_HEX_BYTES];
	char *domain; /* malloc'd; "" when the address has no '@' */
};

static int
cli_addr_make(const struct cli *c, const char *addr, struct cli_addr *a)
{
	const char *at = strrchr(addr, '@');
	char *p;

	queue_addr_hash(c->hash_key, addr, a->hash);
	if ((a->domain = strdup(at != NULL ? at + 1 : "")) == NULL)
		return -1;
	for (p = a->domain; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	/* "<jane@example.org>" as given: drop the closing bracket. */
	if ((p = strrchr(a->domain, '>')) != NULL && p[1] == '\0')
		*p = '\0';
	return 0;
}

/* "key": {"hash": "…", "domain": "…"}, or null for the null sender. */
static int
cli_json_addr(const struct cli *c, struct cli_json *j, const char *key,
	      const char *addr)
{
	struct cli_addr a;
	struct cli_json o;

	cli_json_key(j, key);
	if (addr == NULL || *addr == '\0') {
		fputs("null", j->f);
		return 0;
	}
	if (cli_addr_make(c, addr, &a) != 0)
		return -1;
	cli_json_begin(&o, j->f);
	cli_json_str(&o, "hash", a.hash);
	cli_json_str(&o, "domain", a.domain);
	cli_json_end(&o);
	free(a.domain);
	return 0;
}

/* Table form: "HASH  DOMAIN", or "<>" for the null sender. */
static int
cli_text_addr(const struct cli *c, FILE *f, const char *addr)
{
	struct cli_addr a;

	if (addr == NULL || *addr == '\0') {
		fputs("<>", f);
		return 0;
	}
	if (cli_addr_make(c, addr, &a) != 0)
		return -1;
	fprintf(f, "%s  ", a.hash);
	cli_text_put(f, a.domain, false);
	free(a.domain);
	return 0;
}

static const char *
cli_state_name(bool held)
{
	return held ? "held" : "pending";
}

static const char *
cli_rcpt_state_name(uint8_t state)
{
	static const char *names[] = { [QR_PENDING] = "pending",
				       [QR_DELIVERED] = "delivered",
				       [QR_BOUNCED] = "bounced",
				       [QR_EXPIRED] = "expired" };

	return state < sizeof(names) / sizeof(names[0]) ? names[state]
							: "unknown";
}

/* The authenticated user, unless it is address-shaped (then hashed). */
static int
cli_json_user(const struct cli *c, struct cli_json *j, const char *user)
{
	if (user != NULL && strchr(user, '@') != NULL)
		return cli_json_addr(c, j, "user", user);
	cli_json_str(j, "user", user);
	return 0;
}

static int
cli_text_user(const struct cli *c, FILE *f, const char *user)
{
	if (user == NULL) {
		fputs("-", f);
		return 0;
	}
	if (strchr(user, '@') != NULL)
		return cli_text_addr(c, f, user);
	cli_text_put(f, user, false);
	return 0;
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
	struct queue_config qc;
	char err[1024];

	if (needs & (CLI_NEED_QUEUE | CLI_NEED_HASH_KEY))
		needs |= CLI_NEED_CONF;
	if (needs & CLI_NEED_CONF) {
		if (conf_load(&c->conf, c->conf_file, err, sizeof(err)) != 0) {
			cli_errx("%s", err);
			return -1;
		}
	}
	if (needs & CLI_NEED_QUEUE) {
		memset(&qc, 0, sizeof(qc));
		qc.path = c->conf->queue.path;
		qc.key_file = c->conf->queue.key_file;
		qc.map_size = c->conf->queue.map_size;
		if (queue_open(&c->queue, &qc, QUEUE_RDONLY, err,
			       sizeof(err)) != 0) {
			cli_errx("queue: %s", err);
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
	if (c->queue != NULL)
		queue_close(c->queue);
	conf_free(c->conf);
	sodium_memzero(c->hash_key, sizeof(c->hash_key));
}

/* The schedule index ---------------------------------------------------- */

/*
 * Where a message stands is in the schedule index, not in its envelope: the
 * daemon moves only the index entry when it holds, releases or reschedules
 * (QOP_RESCHED), so an envelope's flags and next attempt may be stale.
 */
struct cli_sched {
	uint64_t id;
	int64_t due_ms;
	bool held;
};

struct cli_sched_index {
	struct cli_sched *v; /* sorted by id */
	size_t n, cap;
};

static int
cli_sched_cb(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct cli_sched_index *x = arg;
	struct cli_sched *nv;

	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 4096;

		if ((nv = realloc(x->v, cap * sizeof(*nv))) == NULL)
			return -2;
		x->v = nv;
		x->cap = cap;
	}
	x->v[x->n].id = id;
	x->v[x->n].due_ms = due_ms;
	x->v[x->n].held = (flags & QUEUE_F_HELD) != 0;
	x->n++;
	return 0;
}

static int
cli_sched_cmp(const void *a, const void *b)
{
	const struct cli_sched *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Sort the index by id: LSD radix sort, 16 bits a pass, passes in which
 * every id has the same digit skipped (ids are time-ordered: their high
 * bits rarely differ).  A million entries take a few tens of ms, a third
 * of what qsort() takes.  -1: out of memory.
 */
static int
cli_sched_sort(struct cli_sched_index *x)
{
	struct cli_sched *tmp, *src = x->v, *dst, *t;
	size_t *count, i, pos, sum;
	unsigned shift, d;

	if ((tmp = malloc(x->n * sizeof(*tmp))) == NULL)
		return -1;
	if ((count = malloc(65536 * sizeof(*count))) == NULL) {
		free(tmp);
		return -1;
	}
	dst = tmp;
	for (shift = 0; shift < 64; shift += 16) {
		memset(count, 0, 65536 * sizeof(*count));
		for (i = 0; i < x->n; i++)
			count[(src[i].id >> shift) & 0xffff]++;
		if (count[(src[0].id >> shift) & 0xffff] == x->n)
			continue; /* one digit for all: nothing to do */
		for (sum = 0, d = 0; d < 65536; d++) {
			pos = count[d];
			count[d] = sum;
			sum += pos;
		}
		for (i = 0; i < x->n; i++)
			dst[count[(src[i].id >> shift) & 0xffff]++] = src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != x->v)
		memcpy(x->v, src, x->n * sizeof(*src));
	free(count);
	free(tmp);
	return 0;
}

/* Read the schedule index (no decryption: fast), sorted by id. */
static int
cli_sched_load(struct cli *c, struct cli_sched_index *x, const char *what)
{
	char err[512] = "";
	size_t i;
	int rc;

	memset(x, 0, sizeof(*x));
	if ((rc = queue_sched_walk(c->queue, cli_sched_cb, x, err,
				   sizeof(err))) != 0) {
		cli_errx("%s: %s", what,
			 rc == -2 || err[0] == '\0' ? "out of memory" : err);
		free(x->v);
		x->v = NULL;
		return -1;
	}
	for (i = 1; i < x->n; i++)
		if (x->v[i - 1].id > x->v[i].id)
			break;
	if (i < x->n && cli_sched_sort(x) != 0) {
		cli_errx("%s: out of memory", what);
		free(x->v);
		x->v = NULL;
		return -1;
	}
	return 0;
}

/* The entry of ID, or NULL (a message the index does not know yet). */
static const struct cli_sched *
cli_sched_find(const struct cli_sched_index *x, uint64_t id)
{
	struct cli_sched key = { .id = id };

	if (x->n == 0)
		return NULL;
	return bsearch(&key, x->v, x->n, sizeof(*x->v), cli_sched_cmp);
}

/* Held and due time of ENV: the index's, else the envelope's own. */
static void
cli_env_state(const struct queue_envelope *env, const struct cli_sched *e,
	      bool *held, int64_t *due_ms)
{
	*held = e != NULL ? e->held : (env->flags & QUEUE_F_HELD) != 0;
	*due_ms = e != NULL ? e->due_ms : env->next_attempt_ms;
}

/* The control socket (mta/control.h) ------------------------------------ */

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
 * cli_ctl — send LINE (one command, without its LF) to the daemon and read
 * the whole answer.  0: R is filled (r->ok says ok or err; free it with
 * cli_reply_free); -1: no answer (why in ERR: not running, no access, …).
 * One sequence — connect, write, read to EOF, all under one deadline — so
 * one function, longer than most.
 */
static int
cli_ctl(const struct cli *c, const char *line, struct cli_reply *r, char *err,
	size_t errlen)
{
	const char *path = c->conf->control.socket;
	struct sockaddr_un sun;
	int64_t deadline = cli_mono_ms() + CLI_CTL_TIMEOUT_MS;
	size_t len = 0, cap = 0, off = 0, n = strlen(line);
	char *msg = NULL, *nd;
	ssize_t w;
	int fd;

	memset(r, 0, sizeof(*r));
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
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		snprintf(err, errlen, "control socket %s: %s%s", path,
			 strerror(errno),
			 errno == ENOENT || errno == ECONNREFUSED
			     ? " (is outpostd running?)"
			     : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((msg = malloc(n + 1)) == NULL)
		goto fail_errno;
	memcpy(msg, line, n);
	msg[n] = '\n';
	for (off = 0; off < n + 1; off += (size_t)w) {
		if (cli_ctl_wait(fd, POLLOUT, deadline) != 0)
			goto fail_errno;
		w = send(fd, msg + off, n + 1 - off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				w = 0;
			else
				goto fail_errno;
		}
	}
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
		if (w < 0)
			goto fail_errno;
		if (w == 0)
			break;
		len += (size_t)w;
	}
	r->data[len] = '\0';
	close(fd);
	free(msg);
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
	free(msg);
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

/* The recipient domain of ADDR, lower-case, without '>' or a final dot. */
static void
cli_domain_of(const char *addr, char *out, size_t outlen)
{
	const char *at = strrchr(addr, '@');
	size_t n = 0;

	if (at != NULL)
		for (at++; *at != '\0' && *at != '>' && n + 1 < outlen; at++)
			out[n++] = *at >= 'A' && *at <= 'Z'
				       ? (char)(*at - 'A' + 'a')
				       : *at;
	if (n > 0 && out[n - 1] == '.')
		n--;
	out[n] = '\0';
}

/* DOMAIN lower-case, without a final dot. */
static void
cli_domain_lower(const char *domain, char *out, size_t outlen)
{
	size_t n;

	for (n = 0; domain[n] != '\0' && n + 1 < outlen; n++)
		out[n] = domain[n] >= 'A' && domain[n] <= 'Z'
			     ? (char)(domain[n] - 'A' + 'a')
			     : domain[n];
	if (n > 0 && out[n - 1] == '.')
		n--;
	out[n] = '\0';
}

/* "45s", "12m", "3h05m", "2d04h" */
static void
cli_age_fmt(int64_t ms, char *buf, size_t size)
{
	int64_t s = ms > 0 ? ms / 1000 : 0;

	if (s < 60)
		snprintf(buf, size, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, size, "%" PRId64 "m", s / 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600,
			 s / 60 % 60);
	else
		snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", s / 86400,
			 s / 3600 % 24);
}

static int64_t
cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* queue list ---------------------------------------------------------- */

struct cli_list {
	struct cli *c;
	struct cli_sched_index idx;
	size_t pos; /* cursor into idx: the walk goes in id order too */
	char domain[CLI_DOMAIN_MAX + 1]; /* --domain, lower-case */
};

/* Does ENV pass --domain and --deferred? */
static bool
cli_list_match(const struct cli_list *l, const struct queue_envelope *env)
{
	char dom[CLI_DOMAIN_MAX + 1];
	bool dom_ok = l->c->domain == NULL, deferred = false;
	uint32_t i;

	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		if (env->rcpts[i].attempts > 0)
			deferred = true;
		if (!dom_ok) {
			cli_domain_of(env->rcpts[i].addr, dom, sizeof(dom));
			dom_ok = strcmp(dom, l->domain) == 0;
		}
	}
	return dom_ok && (deferred || !l->c->deferred);
}

static int
cli_list_cb(const struct queue_envelope *env, void *arg)
{
	struct cli_list *l = arg;
	struct cli *c = l->c;
	const struct cli_sched *e = NULL;
	struct cli_json j;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];
	int64_t due;
	bool held;

	while (l->pos < l->idx.n && l->idx.v[l->pos].id < env->id)
		l->pos++;
	if (l->pos < l->idx.n && l->idx.v[l->pos].id == env->id)
		e = &l->idx.v[l->pos];
	cli_env_state(env, e, &held, &due);
	if ((c->held && !held) || !cli_list_match(l, env))
		return 0;
	queue_id_format(env->id, id);
	cli_time_fmt(env->created_ms, c->json, created, sizeof(created));
	cli_time_fmt(due, c->json, next, sizeof(next));
	if (c->json) {
		cli_json_begin(&j, stdout);
		cli_json_str(&j, "id", id);
		cli_json_str(&j, "created", created);
		cli_json_i64(&j, "created_ms", env->created_ms);
		cli_json_u64(&j, "size", env->size);
		cli_json_u64(&j, "nrcpts", env->nrcpts);
		cli_json_str(&j, "state", cli_state_name(held));
		cli_json_str(&j, "next_attempt", next);
		cli_json_i64(&j, "next_attempt_ms", due);
		if (cli_json_addr(c, &j, "sender", env->sender) != 0)
			return -1;
		cli_json_end(&j);
		fputc('\n', stdout);
		return 0;
	}
	printf("%-16s  %-19s  %10" PRIu64 "  %5" PRIu32 "  %-7s  %-19s  ", id,
	       created, env->size, env->nrcpts, cli_state_name(held), next);
	if (cli_text_addr(c, stdout, env->sender) != 0)
		return -1;
	fputc('\n', stdout);
	return 0;
}

static int
cli_queue_list(struct cli *c)
{
	struct cli_list l;
	char err[512] = "";
	int rc;

	memset(&l, 0, sizeof(l));
	l.c = c;
	if (c->domain != NULL) {
		if (!cli_domain_ok(c->domain)) {
			cli_errx("queue list: --domain %s: not a domain name",
				 c->domain);
			return CLI_USAGE;
		}
		cli_domain_lower(c->domain, l.domain, sizeof(l.domain));
	}
	if (cli_sched_load(c, &l.idx, "queue list") != 0)
		return CLI_ERR;
	if (!c->json)
		printf("%-16s  %-19s  %10s  %5s  %-7s  %-19s  %s\n", "ID",
		       "CREATED (UTC)", "SIZE", "RCPTS", "STATE",
		       "NEXT ATTEMPT", "SENDER (HASH  DOMAIN)");
	rc = queue_walk(c->queue, cli_list_cb, &l, err, sizeof(err));
	free(l.idx.v);
	if (rc != 0) {
		cli_errx("queue list: %s",
			 err[0] != '\0' ? err : "out of memory");
		return CLI_ERR;
	}
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* queue show ---------------------------------------------------------- */

/* The header block of a message, read from its body. */
struct cli_hdrs {
	char *buf;
	size_t len, cap;
	bool truncated; /* longer than CLI_HEADERS_MAX */
};

/* Body chunks until the empty line that ends the header block. */
static int
cli_hdrs_chunk(const uint8_t *data, size_t len, void *arg)
{
	struct cli_hdrs *h = arg;
	size_t from = h->len > 3 ? h->len - 3 : 0, i;
	char *nb;

	if (len > CLI_HEADERS_MAX - h->len) {
		len = CLI_HEADERS_MAX - h->len;
		h->truncated = true;
	}
	if (h->len + len + 1 > h->cap) {
		size_t cap = h->len + len + 1 + 4096;

		if ((nb = realloc(h->buf, cap)) == NULL)
			return -1;
		h->buf = nb;
		h->cap = cap;
	}
	memcpy(h->buf + h->len, data, len);
	h->len += len;
	h->buf[h->len] = '\0';
	/* An empty first line: no header at all. */
	if (h->len >= 1 &&
	    (h->buf[0] == '\n' ||
	     (h->buf[0] == '\r' && h->len >= 2 && h->buf[1] == '\n'))) {
		h->len = 0;
		h->buf[0] = '\0';
		return 1;
	}
	for (i = from; i + 1 < h->len; i++) {
		if (h->buf[i] != '\n')
			continue;
		if (h->buf[i + 1] == '\n' ||
		    (h->buf[i + 1] == '\r' && i + 2 < h->len &&
		     h->buf[i + 2] == '\n')) {
			h->len = i + 1; /* keep the last field's line end */
			h->buf[h->len] = '\0';
			return 1;
		}
	}
	return h->truncated ? 1 : 0;
}

/* May C appear in the local part of an address (dot-atom, UTF-8)? */
static bool
cli_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch >= 0x80 ||
	       strchr("!#$%&'*+-/=?^_`{|}~.", ch) != NULL;
}

static bool
cli_dtext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch >= 0x80 || ch == '-' ||
	       ch == '.' || ch == '_';
}

struct cli_str {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
cli_str_add(struct cli_str *s, const char *p, size_t n)
{
	char *np;

	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;

		if ((np = realloc(s->p, cap)) == NULL) {
			s->oom = true;
			return;
		}
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
}

/*
 * S (LEN bytes of header text) with every address-shaped run — a local part
 * (dot-atom or quoted string) '@' a domain (or [literal]) — replaced by
 * "hash:HASH@domain", HASH as `outpost hash` and the logs make it.  Errs on
 * the side of hiding (a Message-ID is hidden too).  Returns a malloc'd
 * string, or NULL (out of memory).
 */
static char *
cli_scrub(const struct cli *c, const char *s, size_t len)
{
	struct cli_str out = { 0 };
	char hash[QUEUE_HASH_HEX_BYTES], dom[CLI_DOMAIN_MAX + 1], *addr;
	const char *at;
	size_t i = 0, a, ls, de, k;

	cli_str_add(&out, "", 0);
	while (i < len && (at = memchr(s + i, '@', len - i)) != NULL) {
		a = (size_t)(at - s);
		ls = a;
		if (ls > i && s[ls - 1] == '"') {
			for (k = ls - 1; k > i && s[k - 1] != '"'; k--)
				;
			ls = k > i ? k - 1 : ls;
		} else
			while (ls > i && cli_atext((unsigned char)s[ls - 1]))
				ls--;
		de = a + 1;
		if (de < len && s[de] == '[') {
			while (de < len && s[de] != ']' && s[de] != '\n')
				de++;
			de += de < len && s[de] == ']';
		} else
			while (de < len && cli_dtext((unsigned char)s[de]))
				de++;
		while (de > a + 1 && s[de - 1] == '.')
			de--;
		if (ls == a || de == a + 1) {
			cli_str_add(&out, s + i, a + 1 - i);
			i = a + 1;
			continue;
		}
		cli_str_add(&out, s + i, ls - i);
		if ((addr = strndup(s + ls, de - ls)) == NULL) {
			out.oom = true;
			break;
		}
		queue_addr_hash(c->hash_key, addr, hash);
		cli_domain_of(addr, dom, sizeof(dom));
		free(addr);
		cli_str_add(&out, "hash:", 5);
		cli_str_add(&out, hash, strlen(hash));
		cli_str_add(&out, "@", 1);
		cli_str_add(&out, dom, strlen(dom));
		i = de;
	}
	if (i < len)
		cli_str_add(&out, s + i, len - i);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}

/* The header block, scrubbed: physical lines (text) or unfolded fields
 * (a JSON array).  0, or -1 out of memory. */
static int
cli_hdrs_print(const struct cli *c, const struct cli_hdrs *h, bool json)
{
	struct cli_str field = { 0 };
	const char *p = h->buf, *end = h->buf + h->len, *nl;
	size_t n;
	bool first = true;
	char *line, *q;

	if (json)
		fputc('[', stdout);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (json) {
			/* A line starting with white space continues the
			 * field (RFC 5322 unfolding). */
			if (field.len > 0 && n > 0 && p[0] != ' ' &&
			    p[0] != '\t') {
				if ((line = cli_scrub(c, field.p, field.len)) ==
				    NULL)
					goto oom;
				fputs(first ? "" : ",", stdout);
				cli_text_put(stdout, line, true);
				free(line);
				first = false;
				field.len = 0;
			}
			cli_str_add(&field, p, n);
		} else {
			if ((line = cli_scrub(c, p, n)) == NULL)
				goto oom;
			for (q = line; *q != '\0'; q++)
				if (*q == '\t')
					*q = ' ';
			fputs("  ", stdout);
			cli_text_put(stdout, line, false);
			fputc('\n', stdout);
			free(line);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (json && field.len > 0) {
		if ((line = cli_scrub(c, field.p, field.len)) == NULL)
			goto oom;
		fputs(first ? "" : ",", stdout);
		cli_text_put(stdout, line, true);
		free(line);
	}
	if (json)
		fputc(']', stdout);
	if (field.oom)
		goto oom;
	free(field.p);
	return 0;
oom:
	free(field.p);
	return -1;
}

static void
cli_json_flags(struct cli_json *j, uint32_t flags)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = { { QUEUE_F_8BITMIME, "8bitmime" },
		      { QUEUE_F_SMTPUTF8, "smtputf8" },
		      { QUEUE_F_HELD, "held" },
		      { QUEUE_F_DSN, "dsn" } };
	size_t i;
	bool first = true;

	cli_json_key(j, "flags");
	fputc('[', j->f);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].bit))
			continue;
		fprintf(j->f, "%s\"%s\"", first ? "" : ",", names[i].name);
		first = false;
	}
	fputc(']', j->f);
}

/* The envelope as shown: the held bit and due time from the index. */
struct cli_show {
	const struct queue_envelope *env;
	bool held;
	int64_t due_ms;
	const struct cli_hdrs *hdrs; /* --headers, else NULL */
};

static int
cli_show_json(struct cli *c, const struct cli_show *sh)
{
	const struct queue_envelope *env = sh->env;
	struct cli_json j, r;
	struct cli_addr a;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];
	uint32_t i, flags;

	queue_id_format(env->id, id);
	cli_time_fmt(env->created_ms, true, created, sizeof(created));
	cli_time_fmt(sh->due_ms, true, next, sizeof(next));
	flags = (env->flags & ~QUEUE_F_HELD) | (sh->held ? QUEUE_F_HELD : 0);
	cli_json_begin(&j, stdout);
	cli_json_str(&j, "id", id);
	cli_json_str(&j, "created", created);
	cli_json_i64(&j, "created_ms", env->created_ms);
	cli_json_u64(&j, "size", env->size);
	cli_json_u64(&j, "chunks", env->nchunks);
	cli_json_str(&j, "state", cli_state_name(sh->held));
	cli_json_flags(&j, flags);
	cli_json_str(&j, "next_attempt", next);
	cli_json_i64(&j, "next_attempt_ms", sh->due_ms);
	if (cli_json_addr(c, &j, "sender", env->sender) != 0 ||
	    cli_json_user(c, &j, env->user) != 0)
		return -1;
	cli_json_str(&j, "client", env->client);
	cli_json_str(&j, "helo", env->helo);
	cli_json_u64(&j, "nrcpts", env->nrcpts);
	cli_json_key(&j, "recipients");
	fputc('[', stdout);
	for (i = 0; i < env->nrcpts; i++) {
		if (i > 0)
			fputc(',', stdout);
		cli_json_begin(&r, stdout);
		if (cli_addr_make(c, env->rcpts[i].addr, &a) != 0)
			return -1;
		cli_json_str(&r, "hash", a.hash);
		cli_json_str(&r, "domain", a.domain);
		free(a.domain);
		cli_json_str(&r, "state",
			     cli_rcpt_state_name(env->rcpts[i].state));
		cli_json_u64(&r, "attempts", env->rcpts[i].attempts);
		cli_json_u64(&r, "last_code", env->rcpts[i].last_code);
		cli_json_end(&r);
	}
	fputc(']', stdout);
	if (sh->hdrs != NULL) {
		cli_json_key(&j, "headers");
		if (cli_hdrs_print(c, sh->hdrs, true) != 0)
			return -1;
		if (sh->hdrs->truncated) {
			cli_json_key(&j, "headers_truncated");
			fputs("true", stdout);
		}
	}
	cli_json_end(&j);
	fputc('\n', stdout);
	return 0;
}

static int
cli_show_text(struct cli *c, const struct cli_show *sh)
{
	const struct queue_envelope *env = sh->env;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];
	uint32_t i;

	queue_id_format(env->id, id);
	cli_time_fmt(env->created_ms, true, created, sizeof(created));
	cli_time_fmt(sh->due_ms, true, next, sizeof(next));
	printf("id:            %s\n"
	       "created:       %s\n"
	       "size:          %" PRIu64 " bytes in %" PRIu32 " chunk%s\n"
	       "state:         %s\n"
	       "flags:        %s%s%s%s%s\n"
	       "next attempt:  %s\n"
	       "sender:        ",
	       id, created, env->size, env->nchunks,
	       env->nchunks == 1 ? "" : "s", cli_state_name(sh->held),
	       env->flags & QUEUE_F_8BITMIME ? " 8bitmime" : "",
	       env->flags & QUEUE_F_SMTPUTF8 ? " smtputf8" : "",
	       sh->held ? " held" : "", env->flags & QUEUE_F_DSN ? " dsn" : "",
	       (env->flags & ~QUEUE_F_HELD) == 0 && !sh->held ? " -" : "",
	       next);
	if (cli_text_addr(c, stdout, env->sender) != 0)
		return -1;
	fputs("\nuser:          ", stdout);
	if (cli_text_user(c, stdout, env->user) != 0)
		return -1;
	fputs("\nclient:        ", stdout);
	cli_text_put(stdout, env->client != NULL ? env->client : "-", false);
	fputs("\nhelo:          ", stdout);
	cli_text_put(stdout, env->helo != NULL ? env->helo : "-", false);
	printf("\nrecipients:    %" PRIu32 "\n", env->nrcpts);
	if (env->nrcpts > 0)
		printf("  %-9s  %8s  %4s  %-32s  %s\n", "STATE", "ATTEMPTS",
		       "LAST", "HASH", "DOMAIN");
	for (i = 0; i < env->nrcpts; i++) {
		printf("  %-9s  %8u  ",
		       cli_rcpt_state_name(env->rcpts[i].state),
		       env->rcpts[i].attempts);
		if (env->rcpts[i].last_code != 0)
			printf("%4u  ", env->rcpts[i].last_code);
		else
			printf("%4s  ", "-");
		if (cli_text_addr(c, stdout, env->rcpts[i].addr) != 0)
			return -1;
		fputc('\n', stdout);
	}
	if (sh->hdrs != NULL) {
		printf("headers%s:\n",
		       sh->hdrs->truncated ? " (truncated)" : "");
		if (cli_hdrs_print(c, sh->hdrs, false) != 0)
			return -1;
	}
	return 0;
}

/* --headers shows message contents: the daemon checks (and records) that
 * the caller has the export right. */
static int
cli_export_check(struct cli *c, const char *id)
{
	struct cli_reply r;
	char line[64], err[600];

	snprintf(line, sizeof(line), "check export id %s", id);
	if (cli_ctl(c, line, &r, err, sizeof(err)) != 0) {
		cli_errx("queue show --headers: the export right is checked "
			 "by outpostd: %s",
			 err);
		return -1;
	}
	if (!r.ok) {
		cli_errx("queue show --headers: %s", r.final + 4);
		cli_reply_free(&r);
		return -1;
	}
	cli_reply_free(&r);
	return 0;
}

static int
cli_queue_show(struct cli *c)
{
	struct cli_sched_index idx;
	struct queue_envelope env;
	struct cli_hdrs hdrs = { 0 };
	struct cli_show sh;
	char err[512], id_hex[QUEUE_ID_HEX_BYTES];
	uint64_t id;
	int rc;

	if (queue_id_parse(c->argv[0], &id) != 0) {
		cli_errx("queue show: \"%s\" is not a queue id (16 hex "
			 "digits)",
			 c->argv[0]);
		return CLI_USAGE;
	}
	queue_id_format(id, id_hex);
	if (c->headers && cli_export_check(c, id_hex) != 0)
		return CLI_ERR;
	if (cli_sched_load(c, &idx, "queue show") != 0)
		return CLI_ERR;
	if ((rc = queue_envelope_get(c->queue, id, &env, err, sizeof(err))) ==
	    1) {
		cli_errx("queue show: %s: no such message", c->argv[0]);
		free(idx.v);
		return CLI_ERR;
	}
	if (rc != 0) {
		cli_errx("queue show: %s", err);
		free(idx.v);
		return CLI_ERR;
	}
	memset(&sh, 0, sizeof(sh));
	sh.env = &env;
	cli_env_state(&env, cli_sched_find(&idx, id), &sh.held, &sh.due_ms);
	free(idx.v);
	if (c->headers) {
		rc = queue_body_read(c->queue, id, cli_hdrs_chunk, &hdrs, err,
				     sizeof(err));
		if (rc != 0 || hdrs.buf == NULL) {
			cli_errx("queue show: %s", rc == 1   ? "no such message"
						   : rc != 0 ? err
							     : "empty message");
			queue_envelope_clear(&env);
			free(hdrs.buf);
			return CLI_ERR;
		}
		sh.hdrs = &hdrs;
	}
	rc = c->json ? cli_show_json(c, &sh) : cli_show_text(c, &sh);
	queue_envelope_clear(&env);
	if (hdrs.buf != NULL) {
		sodium_memzero(hdrs.buf, hdrs.cap);
		free(hdrs.buf);
	}
	if (rc != 0) {
		cli_errx("queue show: out of memory");
		return CLI_ERR;
	}
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
/* queue summary --------------------------------------------------------- */

/* One recipient domain's line. */
struct cli_sum {
	char *domain; /* NULL: a free slot */
	uint64_t msgs, rcpts, deferred, held;
	uint64_t last_msg;   /* the last message counted in msgs */
	int64_t oldest_ms;   /* created_ms of the oldest; INT64_MAX none */
	int64_t err_at_ms;   /* when the last error came (estimated) */
	unsigned err_code;   /* its reply code, 0 = none */
	char err_status[12]; /* its enhanced status, "" = none */
	bool has_err;
	int64_t susp_until_ms; /* 0: not suspended */
	char *susp_reason;
};

struct cli_sum_tab {
	struct cli_sum *v;
	size_t cap, n;
};

/* One thread's share of the walk: envelopes with ids [first, last]. */
struct cli_sum_part {
	const struct cli *c;
	const struct cli_sched_index *idx;
	size_t pos; /* cursor into idx */
	uint64_t first, last;
	struct cli_sum_tab tab;
	uint64_t msgs, rcpts, deferred, held;
	int rc;
	char err[512];
	pthread_t thread;
};

static uint64_t
cli_fnv(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* The entry of DOMAIN, made if need be; NULL: out of memory. */
static struct cli_sum *
cli_sum_get(struct cli_sum_tab *t, const char *domain)
{
	struct cli_sum *e, *old;
	size_t i, oldcap;

	if ((t->n + 1) * 2 > t->cap) {
		old = t->v;
		oldcap = t->cap;
		t->cap = t->cap ? t->cap * 2 : 64;
		if ((t->v = calloc(t->cap, sizeof(*t->v))) == NULL) {
			t->v = old;
			t->cap = oldcap;
			return NULL;
		}
		for (i = 0; i < oldcap; i++) {
			if (old[i].domain == NULL)
				continue;
			for (e = &t->v[cli_fnv(old[i].domain) & (t->cap - 1)];
			     e->domain != NULL;
			     e = e + 1 == t->v + t->cap ? t->v : e + 1)
				;
			*e = old[i];
		}
		free(old);
	}
	for (e = &t->v[cli_fnv(domain) & (t->cap - 1)]; e->domain != NULL;
	     e = e + 1 == t->v + t->cap ? t->v : e + 1)
		if (strcmp(e->domain, domain) == 0)
			return e;
	if ((e->domain = strdup(domain)) == NULL)
		return NULL;
	e->oldest_ms = INT64_MAX;
	t->n++;
	return e;
}

static void
cli_sum_tab_free(struct cli_sum_tab *t)
{
	size_t i;

	for (i = 0; i < t->cap; i++) {
		free(t->v[i].domain);
		free(t->v[i].susp_reason);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* "4.7.1" at the start of a reply text (after its code, if given). */
static void
cli_enhanced_of(const char *text, char *out, size_t outlen)
{
	const char *p = text;
	size_t n = 0, dots = 0, run = 0;

	out[0] = '\0';
	if (p == NULL)
		return;
	if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' &&
	    p[2] >= '0' && p[2] <= '9' && (p[3] == ' ' || p[3] == '-'))
		p += 4;
	if (!(p[0] == '2' || p[0] == '4' || p[0] == '5') || p[1] != '.')
		return;
	for (; p[n] != '\0' && p[n] != ' '; n++) {
		if (p[n] == '.') {
			if (run == 0 || ++dots > 2)
				return;
			run = 0;
		} else if (p[n] >= '0' && p[n] <= '9') {
			if (++run > 3)
				return;
		} else
			return;
	}
	if (dots != 2 || run == 0 || n >= outlen)
		return;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* When did the last attempt of a recipient with ATTEMPTS end, given that
 * the next one is due at DUE_MS?  The retry interval before it, taken
 * back (jitter aside). */
static int64_t
cli_attempt_at(const struct conf *conf, int64_t due_ms, unsigned attempts)
{
	size_t n = conf->delivery.nretry_intervals, k;

	if (attempts == 0 || n == 0)
		return due_ms;
	k = attempts < n ? attempts - 1 : n - 1;
	return due_ms - (int64_t)conf->delivery.retry_intervals_ms[k];
}

static int
cli_sum_cb(const struct queue_envelope *env, void *arg)
{
	struct cli_sum_part *p = arg;
	const struct cli_sched *e = NULL;
	struct cli_sum *s;
	char dom[CLI_DOMAIN_MAX + 1];
	int64_t due, at;
	bool held, any = false;
	uint32_t i;

	while (p->pos < p->idx->n && p->idx->v[p->pos].id < env->id)
		p->pos++;
	if (p->pos < p->idx->n && p->idx->v[p->pos].id == env->id)
		e = &p->idx->v[p->pos];
	cli_env_state(env, e, &held, &due);
	for (i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];

		if (r->state != QR_PENDING)
			continue;
		cli_domain_of(r->addr, dom, sizeof(dom));
		if ((s = cli_sum_get(&p->tab, dom)) == NULL)
			return -2;
		any = true;
		if (s->last_msg != env->id || s->msgs == 0) {
			s->msgs++;
			s->last_msg = env->id;
		}
		s->rcpts++;
		p->rcpts++;
		if (held) {
			s->held++;
			p->held++;
		}
		if (r->attempts > 0) {
			s->deferred++;
			p->deferred++;
		}
		if (env->created_ms < s->oldest_ms)
			s->oldest_ms = env->created_ms;
		if (r->last_code == 0 && r->last_reply == NULL)
			continue; /* never tried yet */
		at = cli_attempt_at(p->c->conf, due, r->attempts);
		if (!s->has_err || at > s->err_at_ms) {
			s->has_err = true;
			s->err_at_ms = at;
			s->err_code = r->last_code;
			cli_enhanced_of(r->last_reply, s->err_status,
					sizeof(s->err_status));
		}
	}
	if (any)
		p->msgs++;
	return 0;
}

static void *
cli_sum_thread(void *arg)
{
	struct cli_sum_part *p = arg;

	p->rc = queue_walk_range(p->c->queue, p->first, p->last, cli_sum_cb, p,
				 p->err, sizeof(p->err));
	if (p->rc == -2)
		snprintf(p->err, sizeof(p->err), "out of memory");
	return NULL;
}

/* Fold FROM into TO. */
static int
cli_sum_merge(struct cli_sum_tab *to, const struct cli_sum_tab *from)
{
	struct cli_sum *d;
	size_t i;

	for (i = 0; i < from->cap; i++) {
		const struct cli_sum *s = &from->v[i];

		if (s->domain == NULL)
			continue;
		if ((d = cli_sum_get(to, s->domain)) == NULL)
			return -1;
		/* A message split between two parts is counted in both
		 * only if it were in both ranges: ranges do not overlap. */
		d->msgs += s->msgs;
		d->rcpts += s->rcpts;
		d->deferred += s->deferred;
		d->held += s->held;
		if (s->oldest_ms < d->oldest_ms)
			d->oldest_ms = s->oldest_ms;
		if (s->has_err &&
		    (!d->has_err || s->err_at_ms > d->err_at_ms)) {
			d->has_err = true;
			d->err_at_ms = s->err_at_ms;
			d->err_code = s->err_code;
			memcpy(d->err_status, s->err_status,
			       sizeof(d->err_status));
		}
	}
	return 0;
}

/*
 * Walk the queue in NPARTS slices at once, each with its own read
 * transaction (decrypting every envelope is what costs).  Slices split
 * the schedule index's ids evenly; the first and last reach to the ends of
 * the id space, so a message the index does not know yet is still seen.
 */
static int
cli_sum_walk(struct cli *c, const struct cli_sched_index *idx,
	     struct cli_sum_part *parts, unsigned nparts)
{
	unsigned k, started = 0;
	int rc = 0;

	for (k = 0; k < nparts; k++) {
		size_t lo = idx->n * k / nparts, hi = idx->n * (k + 1) / nparts;

		parts[k].c = c;
		parts[k].idx = idx;
		parts[k].pos = lo;
		parts[k].first = k == 0 ? 0 : idx->v[lo].id;
		parts[k].last =
		    k + 1 == nparts ? UINT64_MAX : idx->v[hi].id - 1;
	}
	for (k = 1; k < nparts; k++) {
		if (pthread_create(&parts[k].thread, NULL, cli_sum_thread,
				   &parts[k]) != 0)
			break;
		started++;
	}
	cli_sum_thread(&parts[0]);
	/* Threads that could not start: their slices run here. */
	for (k = started + 1; k < nparts; k++)
		cli_sum_thread(&parts[k]);
	for (k = 1; k <= started; k++)
		pthread_join(parts[k].thread, NULL);
	for (k = 0; k < nparts; k++)
		if (parts[k].rc != 0) {
			cli_errx("queue summary: %s", parts[k].err[0] != '\0'
							  ? parts[k].err
							  : "walk failed");
			rc = -1;
		}
	return rc;
}

/* The daemon's suspensions, each onto its domain's line.  -1: unknown
 * (a note says why). */
static int
cli_sum_suspensions(struct cli *c, struct cli_sum_tab *t)
{
	struct cli_reply r;
	struct cli_sum *s;
	char err[600], *line, *save = NULL, *dom, *until, *reason, *end;

	if (cli_ctl(c, "suspensions", &r, err, sizeof(err)) != 0) {
		cli_errx("note: suspensions unknown: %s", err);
		return -1;
	}
	if (!r.ok) {
		cli_errx("note: suspensions unknown: outpostd: %s",
			 r.final + 4);
		cli_reply_free(&r);
		return -1;
	}
	for (line = strtok_r(r.lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "suspended ", 10) != 0)
			continue;
		dom = line + 10;
		if ((until = strchr(dom, ' ')) == NULL)
			continue;
		*until++ = '\0';
		reason = strchr(until, ' ');
		if (reason != NULL)
			*reason++ = '\0';
		if ((s = cli_sum_get(t, dom)) == NULL)
			break;
		s->susp_until_ms = strtoll(until, &end, 10);
		free(s->susp_reason);
		s->susp_reason = strdup(reason != NULL ? reason : "");
	}
	cli_reply_free(&r);
	return 0;
}

static int
cli_sum_cmp(const void *a, const void *b)
{
	const struct cli_sum *x = *(const struct cli_sum *const *)a;
	const struct cli_sum *y = *(const struct cli_sum *const *)b;

	if (x->rcpts != y->rcpts)
		return x->rcpts > y->rcpts ? -1 : 1;
	return strcmp(x->domain, y->domain);
}

static void
cli_sum_print_json(const struct cli_sum *s, int64_t now, bool susp_known)
{
	struct cli_json j, o;

	cli_json_begin(&j, stdout);
	cli_json_str(&j, "domain", s->domain);
	cli_json_u64(&j, "messages", s->msgs);
	cli_json_u64(&j, "recipients", s->rcpts);
	cli_json_u64(&j, "deferred", s->deferred);
	cli_json_u64(&j, "held", s->held);
	if (s->oldest_ms != INT64_MAX) {
		cli_json_i64(&j, "oldest_ms", s->oldest_ms);
		cli_json_i64(&j, "oldest_age_s",
			     now > s->oldest_ms ? (now - s->oldest_ms) / 1000
						: 0);
	}
	if (s->has_err) {
		cli_json_key(&j, "last_error");
		cli_json_begin(&o, stdout);
		cli_json_u64(&o, "code", s->err_code);
		cli_json_str(&o, "status",
			     s->err_status[0] != '\0' ? s->err_status : NULL);
		cli_json_end(&o);
	}
	/* null: unknown (no answer from outpostd); false: not suspended. */
	cli_json_key(&j, "suspended");
	if (!susp_known)
		fputs("null", stdout);
	else if (s->susp_until_ms == 0)
		fputs("false", stdout);
	else {
		cli_json_begin(&o, stdout);
		cli_json_i64(&o, "until_ms", s->susp_until_ms);
		cli_json_str(&o, "reason", s->susp_reason);
		cli_json_end(&o);
	}
	cli_json_end(&j);
	fputc('\n', stdout);
}

static void
cli_sum_print_text(const struct cli_sum *s, int w, int64_t now, bool susp_known)
{
	char age[32], errs[32], until[40];

	if (s->oldest_ms != INT64_MAX)
		cli_age_fmt(now - s->oldest_ms, age, sizeof(age));
	else
		snprintf(age, sizeof(age), "-");
	if (!s->has_err)
		snprintf(errs, sizeof(errs), "-");
	else if (s->err_code != 0)
		snprintf(errs, sizeof(errs), "%u %s", s->err_code,
			 s->err_status);
	else
		snprintf(errs, sizeof(errs), "no reply %s", s->err_status);
	printf("%-*s  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64
	       "  %7s  %-15s  ",
	       w, s->domain[0] != '\0' ? s->domain : "(none)", s->msgs,
	       s->rcpts, s->deferred, s->held, age, errs);
	if (!susp_known)
		fputs("?", stdout);
	else if (s->susp_until_ms == 0)
		fputs("-", stdout);
	else {
		cli_time_fmt(s->susp_until_ms, false, until, sizeof(until));
		printf("until %s UTC", until);
		if (s->susp_reason != NULL && s->susp_reason[0] != '\0') {
			fputs(" (", stdout);
			cli_text_put(stdout, s->susp_reason, false);
			fputc(')', stdout);
		}
	}
	fputc('\n', stdout);
}

/*
 * queue summary — one line per recipient domain with pending recipients
 * (and per suspended destination).  The schedule index first (held bits,
 * due times, the ids to split the walk by), then every envelope, on up to
 * CLI_SUMMARY_THREADS threads.  This function is long because it is the
 * command's whole sequence: load, walk, merge, ask the daemon, print.
 */
static int
cli_queue_summary(struct cli *c)
{
	struct cli_sched_index idx;
	struct cli_sum_part *parts = NULL;
	struct cli_sum **rows = NULL;
	struct cli_sum_tab *all;
	uint64_t msgs = 0, rcpts = 0, deferred = 0, held = 0;
	int64_t now = cli_now_ms();
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nparts, k;
	size_t i, n = 0;
	int w = 6, rc = CLI_ERR;
	bool susp_known;

	if (cli_sched_load(c, &idx, "queue summary") != 0)
		return CLI_ERR;
	nparts = (unsigned)(idx.n / CLI_SUMMARY_PER_THREAD + 1);
	if (nparts > CLI_SUMMARY_THREADS)
		nparts = CLI_SUMMARY_THREADS;
	if (ncpu > 0 && nparts > (unsigned)ncpu)
		nparts = (unsigned)ncpu;
	if (nparts == 0 || idx.n < nparts)
		nparts = 1;
	if ((parts = calloc(nparts, sizeof(*parts))) == NULL) {
		cli_errx("queue summary: out of memory");
		goto done;
	}
	if (cli_sum_walk(c, &idx, parts, nparts) != 0)
		goto done;
	all = &parts[0].tab;
	for (k = 0; k < nparts; k++) {
		msgs += parts[k].msgs;
		rcpts += parts[k].rcpts;
		deferred += parts[k].deferred;
		held += parts[k].held;
		if (k > 0 && cli_sum_merge(all, &parts[k].tab) != 0) {
			cli_errx("queue summary: out of memory");
			goto done;
		}
	}
	susp_known = cli_sum_suspensions(c, all) == 0;
	if ((rows = calloc(all->n + 1, sizeof(*rows))) == NULL) {
		cli_errx("queue summary: out of memory");
		goto done;
	}
	for (i = 0; i < all->cap; i++)
		if (all->v[i].domain != NULL) {
			rows[n++] = &all->v[i];
			if ((int)strlen(all->v[i].domain) > w)
				w = (int)strlen(all->v[i].domain);
		}
	qsort(rows, n, sizeof(*rows), cli_sum_cmp);
	if (w > 40)
		w = 40;
	if (!c->json)
		printf("%-*s  %8s  %8s  %8s  %8s  %7s  %-15s  %s\n", w,
		       "DOMAIN", "MSGS", "RCPTS", "DEFERRED", "HELD", "OLDEST",
		       "LAST ERROR", "SUSPENDED");
	for (i = 0; i < n; i++) {
		if (c->json)
			cli_sum_print_json(rows[i], now, susp_known);
		else
			cli_sum_print_text(rows[i], w, now, susp_known);
	}
	if (!c->json)
		printf("%-*s  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64
		       "  %8" PRIu64 "\n",
		       w, "TOTAL", msgs, rcpts, deferred, held);
	rc = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
done:
	for (k = 0; parts != NULL && k < nparts; k++)
		cli_sum_tab_free(&parts[k].tab);
	free(parts);
	free(rows);
	free(idx.v);
	return rc;
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
