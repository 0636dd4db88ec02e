/*
 * cli_export.c — `outpost queue export` and `outpost queue import`.
 * Owns: opening the archive FILE with the caller's own permissions
 * (export: a new file, O_EXCL, 0600), making the archive key (a key file
 * of 64 hex digits, or a passphrase through Argon2id with a fresh salt),
 * and handing both to outpostd over the control socket (the descriptor
 * with SCM_RIGHTS: control_proto.h).  Must not: write the archive itself
 * (the daemon writes it, header included), keep the key past the command
 * (wiped), or delete FILE unless the daemon said the export failed
 * (then nothing was removed from the queue).
 * One thread (the command's).
 */
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "queue/archive.h"
#include "queue/queue.h"
#include "mta/control/control_proto.h"
#include "mta/core/util.h"
#include "mta/cli/cli_int.h"

#define CLI_PASSPHRASE_MAX 1024 /* bytes of a passphrase file */

/* The key: from --key-file, or --passphrase-file with P's KDF.  0, or -1
 * (said). */
static int
cli_export_key(const struct cli *c, const char *what,
	       const struct archive_params *p, uint8_t key[QUEUE_KEY_BYTES])
{
	char err[300], pw[CLI_PASSPHRASE_MAX + 2];
	size_t n;
	FILE *f;
	int rc;

	if ((c->key_file != NULL) == (c->passphrase_file != NULL)) {
		cli_errx("%s: give one of --key-file F or --passphrase-file F",
			 what);
		return -1;
	}
	if (c->key_file != NULL) {
		if (p->kdf != ARCHIVE_KDF_KEY) {
			cli_errx("%s: the archive was made with a passphrase: "
				 "give --passphrase-file",
				 what);
			return -1;
		}
		if (queue_keyfile_load(c->key_file, false, key, err,
				       sizeof(err)) != 0) {
			cli_errx("%s: %s", what, err);
			return -1;
		}
		return 0;
	}
	if (p->kdf != ARCHIVE_KDF_ARGON2ID) {
		cli_errx("%s: the archive was made with a key file: give "
			 "--key-file",
			 what);
		return -1;
	}
	if ((f = fopen(c->passphrase_file, "re")) == NULL) {
		cli_errx("%s: %s: %s", what, c->passphrase_file,
			 strerror(errno));
		return -1;
	}
	n = fread(pw, 1, sizeof(pw) - 1, f);
	fclose(f);
	/* One line: its newline is not part of it. */
	if (n > 0 && pw[n - 1] == '\n')
		n--;
	if (n > 0 && pw[n - 1] == '\r')
		n--;
	if (n == 0 || n > CLI_PASSPHRASE_MAX || memchr(pw, '\n', n) != NULL) {
		cli_errx("%s: %s: one line of 1 to %d bytes expected", what,
			 c->passphrase_file, CLI_PASSPHRASE_MAX);
		sodium_memzero(pw, sizeof(pw));
		return -1;
	}
	rc = archive_key_derive(p, pw, n, key, err, sizeof(err));
	sodium_memzero(pw, sizeof(pw));
	if (rc != 0)
		cli_errx("%s: %s", what, err);
	return rc;
}

/* The first line of the answer (without its LF) into LINE; 0, or -1. */
static int
cli_export_line(int fd, char *line, size_t size)
{
	int64_t deadline = util_mono_ms() + CONTROL_TIMEOUT_MS;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t n = 0;
	ssize_t r;

	while (n + 1 < size) {
		if (util_mono_ms() >= deadline ||
		    poll(&p, 1, CONTROL_TIMEOUT_MS) <= 0)
			return -1;
		r = recv(fd, line + n, 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (line[n] == '\n') {
			line[n] = '\0';
			return 0;
		}
		n++;
	}
	return -1;
}

/* The handoff: P's fields and KEY, with ARCHIVE_FD. */
static int
cli_export_send(int fd, int archive_fd, const struct archive_params *p,
		const uint8_t key[QUEUE_KEY_BYTES])
{
	uint8_t buf[CONTROL_XFER_BYTES];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr msg;
	struct cmsghdr *ch;
	ssize_t w;
	int i;

	buf[0] = (uint8_t)p->kdf;
	for (i = 0; i < 4; i++)
		buf[1 + i] = (uint8_t)(p->opslimit >> (24 - 8 * i));
	for (i = 0; i < 8; i++)
		buf[5 + i] = (uint8_t)(p->memlimit >> (56 - 8 * i));
	memcpy(buf + 13, p->salt, ARCHIVE_SALT_BYTES);
	memcpy(buf + 13 + ARCHIVE_SALT_BYTES, key, QUEUE_KEY_BYTES);
	memset(&msg, 0, sizeof(msg));
	memset(&cm, 0, sizeof(cm));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.b;
	msg.msg_controllen = sizeof(cm.b);
	ch = CMSG_FIRSTHDR(&msg);
	ch->cmsg_level = SOL_SOCKET;
	ch->cmsg_type = SCM_RIGHTS;
	ch->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(ch), &archive_fd, sizeof(int));
	do
		w = sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	sodium_memzero(buf, sizeof(buf));
	return w == (ssize_t)sizeof(buf) ? 0 : -1;
}

/*
 * Send LINE, hand over ARCHIVE_FD with P and KEY, print the answer's data
 * lines.  CLI_OK; CLI_ERR with *REFUSED set when the daemon answered "err"
 * (nothing done), clear when the outcome is unknown (no answer).
 */
static int
cli_export_run(const struct cli *c, const char *what, const char *line,
	       int archive_fd, const struct archive_params *p,
	       const uint8_t key[QUEUE_KEY_BYTES], bool *refused)
{
	struct cli_reply r;
	char err[600], first[CONTROL_LINE_MAX];
	int fd;

	*refused = false;
	if ((fd = cli_ctl_open(c, line, err, sizeof(err))) < 0) {
		cli_errx("%s: %s", what, err);
		*refused = true;
		return CLI_ERR;
	}
	if (cli_export_line(fd, first, sizeof(first)) != 0) {
		close(fd);
		cli_errx("%s: outpostd did not answer", what);
		return CLI_ERR;
	}
	if (strcmp(first, CONTROL_XFER_PROMPT) != 0) {
		close(fd);
		*refused = strncmp(first, "err ", 4) == 0;
		cli_errx("%s: %s", what,
			 *refused ? first + 4 : "unexpected answer");
		return CLI_ERR;
	}
	if (cli_export_send(fd, archive_fd, p, key) != 0) {
		close(fd);
		cli_errx("%s: control socket: %s", what, strerror(errno));
		return CLI_ERR;
	}
	if (cli_ctl_read(c, fd, &r, err, sizeof(err)) != 0) {
		cli_errx("%s: %s", what, err);
		return CLI_ERR;
	}
	if (!r.ok) {
		*refused = true;
		cli_errx("%s: %s", what, r.final + 4);
		cli_reply_free(&r);
		return CLI_ERR;
	}
	if (r.lines[0] != '\0')
		printf("%s\n", r.lines);
	cli_reply_free(&r);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* export's control line for C's selection, or -1 (said). */
static int
cli_export_line_make(const struct cli *c, char *line, size_t size)
{
	char hex[QUEUE_ID_HEX_BYTES];
	size_t off;
	uint64_t id;
	int i;

	if ((c->argc > 0) + (c->domain != NULL) + (c->user != NULL) + c->all !=
	    1) {
		cli_errx("queue export: give one of ID..., --domain D, --user "
			 "U or --all");
		return -1;
	}
	if (c->domain != NULL && !cli_domain_ok(c->domain)) {
		cli_errx("queue export: --domain %s: not a domain name",
			 c->domain);
		return -1;
	}
	if (c->user != NULL && !cli_ctl_word_ok(c->user, 255)) {
		cli_errx("queue export: --user: printable, without spaces");
		return -1;
	}
	if (c->all)
		off = (size_t)snprintf(line, size, "export all");
	else if (c->argc == 0)
		off = (size_t)snprintf(line, size, "export %s %s",
				       c->domain != NULL ? "domain" : "user",
				       c->domain != NULL ? c->domain : c->user);
	else
		off = (size_t)snprintf(line, size, "export id");
	for (i = 0; i < c->argc && off < size; i++) {
		if (queue_id_parse(c->argv[i], &id) != 0) {
			cli_errx("queue export: \"%s\" is not a queue id (16 "
				 "hex digits)",
				 c->argv[i]);
			return -1;
		}
		queue_id_format(id, hex);
		off += (size_t)snprintf(line + off, size - off, " %s", hex);
	}
	if (off < size && c->remove)
		off += (size_t)snprintf(line + off, size - off, " remove");
	return off < size ? 0 : -1;
}

int
cli_export_export(struct cli *c)
{
	struct archive_params p;
	uint8_t key[QUEUE_KEY_BYTES];
	char line[CONTROL_LINE_MAX];
	bool refused;
	int fd, rc;

	if (c->to == NULL) {
		cli_errx("queue export: --to FILE is needed");
		return CLI_USAGE;
	}
	if (cli_export_line_make(c, line, sizeof(line)) != 0)
		return CLI_USAGE;
	if (sodium_init() < 0) {
		cli_errx("queue export: libsodium initialisation failed");
		return CLI_ERR;
	}
	archive_params_new(&p, c->key_file != NULL ? ARCHIVE_KDF_KEY
						   : ARCHIVE_KDF_ARGON2ID);
	if (cli_export_key(c, "queue export", &p, key) != 0)
		return CLI_USAGE;
	/* The caller's own permissions decide where the archive may go. */
	fd = open(c->to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		sodium_memzero(key, sizeof(key));
		cli_errx("queue export: %s: %s", c->to, strerror(errno));
		return CLI_ERR;
	}
	rc = cli_export_run(c, "queue export", line, fd, &p, key, &refused);
	sodium_memzero(key, sizeof(key));
	close(fd);
	if (rc != CLI_OK && refused)
		unlink(c->to); /* nothing was exported, nor removed */
	else if (rc != CLI_OK)
		cli_errx("queue export: %s is kept: the export's outcome is "
			 "unknown (see `outpost queue list` and outpostd's "
			 "log)",
			 c->to);
	return rc;
}

int
cli_export_import(struct cli *c)
{
	struct archive_params p;
	uint8_t key[QUEUE_KEY_BYTES];
	char err[300];
	bool refused;
	int fd, rc;

	if ((fd = open(c->argv[0], O_RDONLY | O_CLOEXEC)) < 0) {
		cli_errx("queue import: %s: %s", c->argv[0], strerror(errno));
		return CLI_ERR;
	}
	if (archive_header_read(fd, &p, err, sizeof(err)) != 0) {
		cli_errx("queue import: %s: %s", c->argv[0], err);
		close(fd);
		return CLI_ERR;
	}
	if (cli_export_key(c, "queue import", &p, key) != 0) {
		close(fd);
		return CLI_ERR;
	}
	rc = cli_export_run(c, "queue import", "import", fd, &p, key, &refused);
	sodium_memzero(key, sizeof(key));
	close(fd);
	return rc;
}
