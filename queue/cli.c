/*
 * cli.c — `outpost`, the operator's command-line tool: queue list/show,
 * passwd, hash.
 * Owns: command dispatch (one table, cli_cmds[]) and output formats (a
 * table for people, JSON Lines with --json).  Must not: write to the queue
 * (it opens LMDB read-only; changes will go through the daemon's control
 * socket), create keys, or print an e-mail address in clear — addresses are
 * shown as their keyed hash (queue_addr_hash) and their domain.  Single
 * thread.  Exit status: 0 ok, 1 runtime error, 2 usage error.
 */
#include <errno.h>
#include <inttypes.h>
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

/* What a command needs before it runs. */
#define CLI_NEED_CONF     0x1u
#define CLI_NEED_HASH_KEY 0x2u /* implies CLI_NEED_CONF */
#define CLI_NEED_QUEUE    0x4u /* implies CLI_NEED_CONF */

struct cli {
	const char *conf_file; /* -c; NULL = embedded defaults */
	struct conf *conf;
	struct queue *queue;
	uint8_t hash_key[QUEUE_KEY_BYTES];
	bool json;
	/* dkim keygen */
	bool ed25519;
	unsigned rsa_bits;
	const char *key_path, *txt_path;
	int argc; /* positional arguments after the command words */
	char *argv[CLI_ARGS_MAX];
};

struct cli_cmd {
	const char *name;
	const char *sub; /* second word, or NULL */
	const char *args;
	const char *help;
	unsigned needs;
	bool json_ok; /* accepts --json */
	bool keygen_opts; /* accepts --rsa BITS, --ed25519, --key F, --txt F */
	int min_args, max_args;
	int (*run)(struct cli *c);
};

static int cli_queue_list(struct cli *c);
static int cli_queue_show(struct cli *c);
static int cli_passwd(struct cli *c);
static int cli_hash(struct cli *c);
static int cli_dkim_keygen(struct cli *c);

/*
 * The commands.  Later: queue summary|hold|release|delete|bounce|retry and
 * suspend DOMAIN (through the control socket), dkim keygen.
 */
static const struct cli_cmd cli_cmds[] = {
	{ "queue", "list", "[--json]",
	  "list queued messages (addresses as keyed hash and domain)",
	  CLI_NEED_QUEUE | CLI_NEED_HASH_KEY, true, false, 0, 0,
	  cli_queue_list },
	{ "queue", "show", "ID [--json]",
	  "show one message's envelope and recipients",
	  CLI_NEED_QUEUE | CLI_NEED_HASH_KEY, true, false, 1, 1,
	  cli_queue_show },
	{ "passwd", NULL, "[USER [DOMAIN ...]]",
	  "read a password on stdin, print its Argon2id hash (with USER: a "
	  "user block for the configuration)",
	  0, false, false, 0, CLI_ARGS_MAX, cli_passwd },
	{ "hash", NULL, "ADDRESS",
	  "print the keyed hash of ADDRESS, as the logs and queue show it",
	  CLI_NEED_HASH_KEY, false, false, 1, 1, cli_hash },
	{ "dkim", "keygen",
	  "DOMAIN SELECTOR [--rsa BITS | --ed25519] [--key FILE] [--txt FILE]",
	  "make a DKIM key (RSA-2048 by default; 0600), print the DNS TXT "
	  "record to publish and the configuration block",
	  CLI_NEED_CONF, false, true, 2, 2, cli_dkim_keygen },
};

#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

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
cli_state_name(const struct queue_envelope *env)
{
	return env->flags & QUEUE_F_HELD ? "held" : "pending";
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
	if (needs & CLI_NEED_HASH_KEY) {
		/* Never created here: a new key would match no log line. */
		if (queue_keyfile_load(c->conf->hash_key_file, false,
				       c->hash_key, err, sizeof(err)) != 0) {
			cli_errx("hash key: %s (has outpostd run?)", err);
			return -1;
		}
	}
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

/* queue list ---------------------------------------------------------- */

static int
cli_list_cb(const struct queue_envelope *env, void *arg)
{
	struct cli *c = arg;
	struct cli_json j;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];

	queue_id_format(env->id, id);
	cli_time_fmt(env->created_ms, c->json, created, sizeof(created));
	cli_time_fmt(env->next_attempt_ms, c->json, next, sizeof(next));
	if (c->json) {
		cli_json_begin(&j, stdout);
		cli_json_str(&j, "id", id);
		cli_json_str(&j, "created", created);
		cli_json_i64(&j, "created_ms", env->created_ms);
		cli_json_u64(&j, "size", env->size);
		cli_json_u64(&j, "nrcpts", env->nrcpts);
		cli_json_str(&j, "state", cli_state_name(env));
		cli_json_str(&j, "next_attempt", next);
		cli_json_i64(&j, "next_attempt_ms", env->next_attempt_ms);
		if (cli_json_addr(c, &j, "sender", env->sender) != 0)
			return -1;
		cli_json_end(&j);
		fputc('\n', stdout);
		return 0;
	}
	printf("%-16s  %-19s  %10" PRIu64 "  %5" PRIu32 "  %-7s  %-19s  ", id,
	       created, env->size, env->nrcpts, cli_state_name(env), next);
	if (cli_text_addr(c, stdout, env->sender) != 0)
		return -1;
	fputc('\n', stdout);
	return 0;
}

static int
cli_queue_list(struct cli *c)
{
	char err[512];

	if (!c->json)
		printf("%-16s  %-19s  %10s  %5s  %-7s  %-19s  %s\n", "ID",
		       "CREATED (UTC)", "SIZE", "RCPTS", "STATE",
		       "NEXT ATTEMPT", "SENDER (HASH  DOMAIN)");
	if (queue_walk(c->queue, cli_list_cb, c, err, sizeof(err)) != 0) {
		cli_errx("queue list: %s",
			 err[0] != '\0' ? err : "out of memory");
		return CLI_ERR;
	}
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* queue show ---------------------------------------------------------- */

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

static int
cli_show_json(struct cli *c, const struct queue_envelope *env)
{
	struct cli_json j, r;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];
	uint32_t i;

	queue_id_format(env->id, id);
	cli_time_fmt(env->created_ms, true, created, sizeof(created));
	cli_time_fmt(env->next_attempt_ms, true, next, sizeof(next));
	cli_json_begin(&j, stdout);
	cli_json_str(&j, "id", id);
	cli_json_str(&j, "created", created);
	cli_json_i64(&j, "created_ms", env->created_ms);
	cli_json_u64(&j, "size", env->size);
	cli_json_u64(&j, "chunks", env->nchunks);
	cli_json_str(&j, "state", cli_state_name(env));
	cli_json_flags(&j, env->flags);
	cli_json_str(&j, "next_attempt", next);
	cli_json_i64(&j, "next_attempt_ms", env->next_attempt_ms);
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
		/* hash and domain, as the sender */
		{
			struct cli_addr a;

			if (cli_addr_make(c, env->rcpts[i].addr, &a) != 0)
				return -1;
			cli_json_str(&r, "hash", a.hash);
			cli_json_str(&r, "domain", a.domain);
			free(a.domain);
		}
		cli_json_str(&r, "state",
			     cli_rcpt_state_name(env->rcpts[i].state));
		cli_json_u64(&r, "attempts", env->rcpts[i].attempts);
		cli_json_u64(&r, "last_code", env->rcpts[i].last_code);
		cli_json_end(&r);
	}
	fputc(']', stdout);
	cli_json_end(&j);
	fputc('\n', stdout);
	return 0;
}

static int
cli_show_text(struct cli *c, const struct queue_envelope *env)
{
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];
	uint32_t i;

	queue_id_format(env->id, id);
	cli_time_fmt(env->created_ms, true, created, sizeof(created));
	cli_time_fmt(env->next_attempt_ms, true, next, sizeof(next));
	printf("id:            %s\n"
	       "created:       %s\n"
	       "size:          %" PRIu64 " bytes in %" PRIu32 " chunk%s\n"
	       "state:         %s\n"
	       "flags:        %s%s%s%s%s\n"
	       "next attempt:  %s\n"
	       "sender:        ",
	       id, created, env->size, env->nchunks,
	       env->nchunks == 1 ? "" : "s", cli_state_name(env),
	       env->flags & QUEUE_F_8BITMIME ? " 8bitmime" : "",
	       env->flags & QUEUE_F_SMTPUTF8 ? " smtputf8" : "",
	       env->flags & QUEUE_F_HELD ? " held" : "",
	       env->flags & QUEUE_F_DSN ? " dsn" : "",
	       env->flags == 0 ? " -" : "", next);
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
	return 0;
}

static int
cli_queue_show(struct cli *c)
{
	struct queue_envelope env;
	uint64_t id;
	char err[512];
	int rc;

	if (queue_id_parse(c->argv[0], &id) != 0) {
		cli_errx("queue show: \"%s\" is not a queue id (16 hex "
			 "digits)",
			 c->argv[0]);
		return CLI_USAGE;
	}
	if ((rc = queue_envelope_get(c->queue, id, &env, err, sizeof(err))) ==
	    1) {
		cli_errx("queue show: %s: no such message", c->argv[0]);
		return CLI_ERR;
	}
	if (rc != 0) {
		cli_errx("queue show: %s", err);
		return CLI_ERR;
	}
	rc = c->json ? cli_show_json(c, &env) : cli_show_text(c, &env);
	queue_envelope_clear(&env);
	if (rc != 0) {
		cli_errx("queue show: out of memory");
		return CLI_ERR;
	}
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
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
	enum dkim_alg alg = c->ed25519 ? DKIM_ALG_ED25519_SHA256
				       : DKIM_ALG_RSA_SHA256;
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
				  c->conf->data_dir, domain, sel) >=
		 sizeof(path)) {
		cli_errx("path too long");
		return CLI_ERR;
	}
	rc = dkim_keys_init(0, err, sizeof(err));
	if (rc < 0) {
		cli_errx("%s", err);
		return CLI_ERR;
	}
	if (dkim_key_generate(path, alg, c->rsa_bits ? c->rsa_bits : 2048,
			      &txt, err, sizeof(err)) != 0) {
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

/* Options and positional arguments of CMD into C; CLI_OK or CLI_USAGE. */
static int
cli_args_parse(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
	       bool *help)
{
	bool opts = true;
	int i;

	for (i = 0; i < argc; i++) {
		if (opts && strcmp(argv[i], "--") == 0)
			opts = false;
		else if (opts && strcmp(argv[i], "--json") == 0 && cmd->json_ok)
			c->json = true;
		else if (opts && (strcmp(argv[i], "--help") == 0 ||
				  strcmp(argv[i], "-h") == 0))
			*help = true;
		else if (opts && cmd->keygen_opts &&
			 strcmp(argv[i], "--ed25519") == 0)
			c->ed25519 = true;
		else if (opts && cmd->keygen_opts &&
			 (strcmp(argv[i], "--rsa") == 0 ||
			  strcmp(argv[i], "--key") == 0 ||
			  strcmp(argv[i], "--txt") == 0)) {
			char *end;

			if (i + 1 == argc) {
				cli_errx("option %s needs a value", argv[i]);
				return CLI_USAGE;
			}
			if (strcmp(argv[i], "--key") == 0) {
				c->key_path = argv[++i];
			} else if (strcmp(argv[i], "--txt") == 0) {
				c->txt_path = argv[++i];
			} else {
				c->rsa_bits =
				    (unsigned)strtoul(argv[++i], &end, 10);
				if (*end != '\0' || c->rsa_bits < 1024 ||
				    c->rsa_bits > 8192) {
					cli_errx("--rsa: 1024 to 8192 bits");
					return CLI_USAGE;
				}
			}
		}
		else if (opts && argv[i][0] == '-' && argv[i][1] != '\0') {
			cli_errx("unknown option %s", argv[i]);
			return CLI_USAGE;
		} else if (c->argc == CLI_ARGS_MAX) {
			cli_errx("too many arguments");
			return CLI_USAGE;
		} else
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
