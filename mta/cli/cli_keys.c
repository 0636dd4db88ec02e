/*
 * cli_keys.c — the commands about credentials: `outpost passwd` (an
 * Argon2id hash, or a user block for the configuration), `outpost dkim
 * keygen` (a key file and the DNS record to publish) and `outpost auth
 * blocks|unblock` (the daemon's AUTH failure blocks, over the control
 * socket).
 * Must not: keep a password anywhere but sodium_malloc'd memory, read it
 * through stdio (a buffer would keep a copy), or leave the terminal without
 * echo.  One thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "dkim/dkim.h"
#include "mta/control/control_proto.h"
#include "mta/core/json.h"
#include "mta/cli/cli_int.h"

#define CLI_KEYS_PASSWORD_MAX_BYTES 1024

/* passwd -------------------------------------------------------------- */

static struct termios cli_keys_tty_saved;
static volatile sig_atomic_t cli_keys_tty_echo_off;

/* Give the terminal its echo back if interrupted at the prompt. */
static void
cli_keys_tty_signal(int sig)
{
	if (cli_keys_tty_echo_off)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_keys_tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Read one line from stdin into PW (room for CLI_KEYS_PASSWORD_MAX_BYTES + 1)
 * with read(2), so no stdio buffer keeps a copy.  Returns its length
 * without the line end, or -1 (message printed).
 */
static ssize_t
cli_keys_line_read(char *pw)
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
		if (n == CLI_KEYS_PASSWORD_MAX_BYTES) {
			cli_errx("passwd: password longer than %d bytes",
				 CLI_KEYS_PASSWORD_MAX_BYTES);
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
cli_keys_password_read(char *pw, const char *prompt)
{
	struct termios t;
	ssize_t n;

	if (prompt == NULL)
		return cli_keys_line_read(pw);
	if (tcgetattr(STDIN_FILENO, &cli_keys_tty_saved) != 0) {
		cli_errx("passwd: %s", strerror(errno));
		return -1;
	}
	t = cli_keys_tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	signal(SIGINT, cli_keys_tty_signal);
	signal(SIGTERM, cli_keys_tty_signal);
	signal(SIGHUP, cli_keys_tty_signal);
	fputs(prompt, stderr);
	fflush(stderr);
	cli_keys_tty_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) != 0) {
		cli_keys_tty_echo_off = 0;
		cli_errx("passwd: %s", strerror(errno));
		return -1;
	}
	n = cli_keys_line_read(pw);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_keys_tty_saved);
	cli_keys_tty_echo_off = 0;
	return n;
}

/* May S go inside a configuration string as is? */
static bool
cli_keys_conf_word_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e ||
		    *s == '"' || *s == '\\')
			return false;
	return true;
}

int
cli_keys_passwd(struct cli *c)
{
	char hash[crypto_pwhash_STRBYTES];
	char *pw = NULL, *again = NULL;
	bool tty = isatty(STDIN_FILENO) != 0;
	ssize_t n;
	int i, rc = CLI_ERR;

	for (i = 0; i < c->argc; i++)
		if (!cli_keys_conf_word_ok(c->argv[i])) {
			cli_errx("passwd: \"%s\": want printable ASCII without "
				 "quotes, backslashes or spaces",
				 c->argv[i]);
			return CLI_USAGE;
		}
	if (sodium_init() < 0) {
		cli_errx("passwd: libsodium initialisation failed");
		return CLI_ERR;
	}
	pw = sodium_malloc(CLI_KEYS_PASSWORD_MAX_BYTES + 1);
	again = sodium_malloc(CLI_KEYS_PASSWORD_MAX_BYTES + 1);
	if (pw == NULL || again == NULL) {
		cli_errx("passwd: out of memory");
		goto done;
	}
	if ((n = cli_keys_password_read(pw, tty ? "Password: " : NULL)) < 0)
		goto done;
	if (n == 0) {
		cli_errx("passwd: empty password");
		goto done;
	}
	if (tty) {
		if (cli_keys_password_read(again, "Again: ") < 0)
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

/* DKIM keys ----------------------------------------------------------- */

/* Print VALUE as a zone-file TXT record split in strings of <= 255. */
static void
cli_keys_txt_zone(const char *name, const char *value)
{
	size_t n = strlen(value), i;

	printf("%s. IN TXT (", name);
	for (i = 0; i < n; i += 250)
		printf("\n\t\"%.*s\"", (int)(n - i < 250 ? n - i : 250),
		       value + i);
	printf(" )\n");
}

/*
 * The configuration block of DOMAIN after keygen: the new key (ALG, SEL,
 * PATH) with the key of the other type that OLD (the domain's present
 * section, or NULL) holds, so that the block printed replaces the present
 * one whole; two blocks of the same title do not load.
 */
static void
cli_keys_dkim_block_print(const char *domain, const struct conf_dkim *old,
			  enum dkim_alg alg, const char *sel, const char *path)
{
	bool ed = alg == DKIM_ALG_ED25519_SHA256;
	const char *rsa_sel = old != NULL ? old->selector : NULL;
	const char *rsa_key = old != NULL ? old->rsa_key : NULL;
	const char *ed_sel = old != NULL ? old->ed25519_selector : NULL;
	const char *ed_key = old != NULL ? old->ed25519_key : NULL;
	const char *replaced = ed ? ed_sel : rsa_sel;
	const char *at = old == NULL               ? NULL
			 : old->rsa_key_at != NULL ? old->rsa_key_at
						   : old->ed25519_key_at;

	if (old == NULL)
		printf("# And in outpost.conf:\n");
	else
		printf("# And in outpost.conf, in place of the present dkim "
		       "\"%s\" block (see %s):\n",
		       domain, at != NULL ? at : "the configuration");
	if (replaced != NULL)
		printf("# (it replaces the %s key of selector \"%s\": keep "
		       "that TXT record published while mail signed with "
		       "it may still be on its way)\n",
		       ed ? "Ed25519" : "RSA", replaced);
	if (ed) {
		ed_sel = sel;
		ed_key = path;
	} else {
		rsa_sel = sel;
		rsa_key = path;
	}
	printf("dkim \"%s\" {\n", domain);
	if (rsa_key != NULL)
		printf("\tselector = \"%s\"\n\trsa_key = \"%s\"\n", rsa_sel,
		       rsa_key);
	if (ed_key != NULL)
		printf("\ted25519_selector = \"%s\"\n\ted25519_key = \"%s\"\n",
		       ed_sel, ed_key);
	printf("}\n");
}

int
cli_keys_dkim_keygen(struct cli *c)
{
	const char *domain = c->argv[0], *sel = c->argv[1];
	enum dkim_alg alg =
	    c->ed25519 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
	char path[PATH_MAX], name[600], err[600], *txt = NULL;
	const struct conf_dkim *old;
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
	cli_keys_txt_zone(name, txt);
	old = conf_dkim_find(c->conf, domain);
	cli_keys_dkim_block_print(old != NULL ? old->domain : domain, old, alg,
				  sel, path);
	free(txt);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* auth blocks, auth unblock ---------------------------------------------- */

/* Print one "block SCOPE NETWORK UNTIL_MS WHO" line of the daemon. */
static void
cli_keys_auth_block_print(const struct cli *c, char *line)
{
	char *scope, *net, *until, *who, *save = NULL, when[40], name[256];
	const char *user = NULL, *hash = NULL;
	size_t n = 0;
	int64_t ms;

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
	json_time_fmt(ms, c->json, when, sizeof(when));
	if (c->json) {
		fputs("{\"scope\":", stdout);
		json_put(stdout, scope);
		fputs(",\"network\":", stdout);
		json_put(stdout, net);
		fputs(",\"user\":", stdout);
		json_put(stdout, user);
		if (hash != NULL) {
			fputs(",\"user_hash\":", stdout);
			json_put(stdout, hash);
		}
		fputs(",\"until\":", stdout);
		json_put(stdout, when);
		printf(",\"until_ms\":%" PRId64 "}\n", ms);
		return;
	}
	printf("%-43s  %-19s  ", net, when);
	if (user != NULL)
		json_term_put(stdout, user);
	else if (hash != NULL)
		printf("(not a user: hash %.16s)", hash);
	else
		printf("* (every name)");
	fputc('\n', stdout);
}

int
cli_keys_auth_blocks(struct cli *c)
{
	struct cli_reply r;
	char *line, *save = NULL;

	if (cli_ctl(c, "auth blocks", "auth-blocks", &r) != 0)
		return CLI_ERR;
	if (!c->json)
		printf("%-43s  %-19s  %s\n", "NETWORK", "UNTIL (UTC)", "USER");
	for (line = strtok_r(r.lines, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "block ", 6) == 0)
			cli_keys_auth_block_print(c, line);
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* Is ARG an address, or ADDRESS/LEN?  1 yes, 0 no (a user name), -1 an
 * address with a bad LEN. */
static int
cli_keys_auth_is_net(const char *arg)
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

int
cli_keys_auth_unblock(struct cli *c)
{
	char line[CONTROL_LINE_MAX];
	const char *user = c->user;
	long count;
	int net = 0;

	if (c->domain != NULL ||
	    (c->argc > 0) + (c->user != NULL) + c->all != 1) {
		cli_errx("auth unblock: give one of ADDRESS, USER, --user "
			 "USER or --all");
		return CLI_USAGE;
	}
	if (c->argc > 0 && (net = cli_keys_auth_is_net(c->argv[0])) < 0) {
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
		cli_ctl_user_line("auth-unblock", user, line, sizeof(line));
	else
		snprintf(line, sizeof(line), "auth-unblock address %s",
			 c->argv[0]);
	if (cli_ctl_change(c, "auth unblock", line, &count) != 0)
		return CLI_ERR;
	if (count < 0)
		count = 0;
	if (c->json) {
		printf("{\"command\":\"auth unblock\",\"lifted\":%ld}\n",
		       count);
	} else
		printf("%ld block%s lifted\n", count, count == 1 ? "" : "s");
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
