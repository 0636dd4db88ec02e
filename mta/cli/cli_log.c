/*
 * cli_log.c — `outpost log` (the delivery log's lines of one recipient,
 * some events, one message and/or a time span, its rotated files
 * included; -f follows the file from its end, across rotations) and `outpost
 * hash` (an address's keyed hash, as the logs and the queue views show it).
 * Both read the log-hash key (cli_hash_key_load) and nothing of the queue.
 * Must not: create the key, or print an address in clear.  One thread.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/core/util.h"
#include "mta/cli/cli_int.h"

#define CLI_LOG_POLL_MS    250 /* -f: look for more (or a new file) */
#define CLI_LOG_EVENTS_MAX 16

/* The log's JSON, read as far as the filter needs --------------------- */

/* Skip white space. */
static const char *
cli_log_js_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

/* Past the JSON string at P (at its opening quote); copy its value
 * (escapes decoded, non-ASCII \u as '?') into OUT if not NULL.  NULL:
 * malformed. */
static const char *
cli_log_js_str(const char *p, const char *end, char *out, size_t outlen)
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
cli_log_js_skip(const char *p, const char *end)
{
	int depth = 0;

	do {
		p = cli_log_js_ws(p, end);
		if (p >= end)
			return NULL;
		if (*p == '"') {
			if ((p = cli_log_js_str(p, end, NULL, 0)) == NULL)
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
int
cli_log_js_get(const char *p, const char *end, const char *key, char *out,
	       size_t outlen)
{
	char k[64];

	p = cli_log_js_ws(p, end);
	if (p >= end || *p++ != '{')
		return -1;
	for (;;) {
		p = cli_log_js_ws(p, end);
		if (p < end && *p == '}')
			return 0;
		if ((p = cli_log_js_str(p, end, k, sizeof(k))) == NULL)
			return -1;
		p = cli_log_js_ws(p, end);
		if (p >= end || *p++ != ':')
			return -1;
		p = cli_log_js_ws(p, end);
		if (strcmp(k, key) == 0) {
			if (p < end && *p == '"')
				return cli_log_js_str(p, end, out, outlen) !=
					       NULL
					   ? 1
					   : -1;
			return 0;
		}
		if ((p = cli_log_js_skip(p, end)) == NULL)
			return -1;
		p = cli_log_js_ws(p, end);
		if (p < end && *p == ',')
			p++;
		else if (p < end && *p == '}')
			return 0;
		else
			return -1;
	}
}

/*
 * "YYYY-MM-DDTHH:MM[:SS[.fff]]Z" (the log's "time", or an operator's)
 * into Unix ms.  0, or -1 when S is not such a time.
 */
int
cli_log_time_parse(const char *s, int64_t *ms)
{
	struct tm tm;
	const char *p;
	int64_t frac = 0, scale = 100;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	if ((p = strptime(s, "%Y-%m-%dT%H:%M", &tm)) == NULL)
		return -1;
	if (*p == ':') {
		if (p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
			return -1;
		tm.tm_sec = (p[1] - '0') * 10 + (p[2] - '0');
		p += 3;
		if (*p == '.')
			for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
				frac += (*p - '0') * scale;
	}
	if (strcmp(p, "Z") != 0 || tm.tm_sec > 60)
		return -1;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	*ms = (int64_t)t * 1000 + frac;
	return 0;
}

/* --since / --until WHEN: a duration back from now ("2h", "30m") or a
 * time (cli_log_time_parse).  0, or -1 (said on stderr). */
static int
cli_log_when(const char *opt, const char *when, int64_t *ms)
{
	uint64_t ago;

	if (cli_log_time_parse(when, ms) == 0)
		return 0;
	if (conf_parse_duration(when, &ago) == 0 && ago <= INT64_MAX / 2) {
		*ms = util_wall_ms() - (int64_t)ago;
		return 0;
	}
	cli_errx("log: %s %s: a duration back from now (2h, 30m, 90s) or a "
		 "UTC time (2026-12-04T10:00:00Z)",
		 opt, when);
	return -1;
}

struct cli_log_filter {
	const char *hash; /* --rcpt: its rcpt_hash, or NULL */
	char *events[CLI_LOG_EVENTS_MAX];
	int nevents;
	char id[QUEUE_ID_HEX_BYTES]; /* --id, lower case; "" for any */
	const char *msgid_hash;      /* --id MESSAGE-ID: its msgid_hash */
	bool since, until;           /* --since, --until given */
	int64_t since_ms, until_ms;  /* the span's ends, both included */
	bool skip_partial;           /* -f began inside a line: drop it */
};

/* Is the line's "time" within the span?  A line without one is not. */
static bool
cli_log_match_time(const struct cli_log_filter *f, const char *line, size_t len)
{
	char v[64];
	int64_t ms;

	if (!f->since && !f->until)
		return true;
	if (cli_log_js_get(line, line + len, "time", v, sizeof(v)) != 1 ||
	    cli_log_time_parse(v, &ms) != 0)
		return false;
	return (!f->since || ms >= f->since_ms) &&
	       (!f->until || ms <= f->until_ms);
}

static bool
cli_log_match(const struct cli_log_filter *f, const char *line, size_t len)
{
	char v[128];
	int i;

	if (f->id[0] != '\0' &&
	    (cli_log_js_get(line, line + len, "id", v, sizeof(v)) != 1 ||
	     strcasecmp(v, f->id) != 0))
		return false;
	if (f->msgid_hash != NULL &&
	    (cli_log_js_get(line, line + len, "msgid_hash", v, sizeof(v)) !=
		 1 ||
	     strcmp(v, f->msgid_hash) != 0))
		return false;
	if (!cli_log_match_time(f, line, len))
		return false;
	if (f->hash != NULL &&
	    (cli_log_js_get(line, line + len, "rcpt_hash", v, sizeof(v)) != 1 ||
	     strcmp(v, f->hash) != 0))
		return false;
	if (f->nevents == 0)
		return true;
	if (cli_log_js_get(line, line + len, "event", v, sizeof(v)) != 1)
		return false;
	for (i = 0; i < f->nevents; i++)
		if (strcmp(v, f->events[i]) == 0)
			return true;
	return false;
}

/* The complete lines in BUF[0..*len): print those that match; keep the
 * unfinished last line at the front of BUF. */
static void
cli_log_lines(struct cli_log_filter *f, char *buf, size_t *len, bool flush)
{
	char *p = buf, *end = buf + *len, *nl;

	if (f->skip_partial) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			*len = 0;
			return;
		}
		p = nl + 1;
		f->skip_partial = false;
	}
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
cli_log_read(int fd, struct cli_log_filter *f, char **buf, size_t *len,
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

/* The filters of C's options into F (f->hash stays for the caller).
 * CLI_OK, or CLI_USAGE (said on stderr). */
static int
cli_log_filter_set(const struct cli *c, struct cli_log_filter *f)
{
	size_t i;

	/* 16 hex digits: a queue id; a Message-ID holds an '@' or comes
	 * in its angle brackets, so the two never meet (matched by
	 * msgid_hash); anything else is a slip of the operator's. */
	if (c->id != NULL && (strlen(c->id) != QUEUE_ID_HEX_BYTES - 1 ||
			      strspn(c->id, "0123456789abcdefABCDEF") !=
				  QUEUE_ID_HEX_BYTES - 1)) {
		if (strchr(c->id, '@') == NULL &&
		    (c->id[0] != '<' || strlen(c->id) < 3 ||
		     c->id[strlen(c->id) - 1] != '>')) {
			cli_errx("log: --id %s: a queue id is 16 hex digits, "
				 "a Message-ID <left@right>",
				 c->id);
			return CLI_USAGE;
		}
		f->msgid_hash = ""; /* the caller hashes it with the key */
	} else if (c->id != NULL) {
		for (i = 0; i < QUEUE_ID_HEX_BYTES - 1; i++)
			f->id[i] = (char)(c->id[i] >= 'A' && c->id[i] <= 'F'
					      ? c->id[i] - 'A' + 'a'
					      : c->id[i]);
	}
	if (c->since != NULL) {
		if (cli_log_when("--since", c->since, &f->since_ms) != 0)
			return CLI_USAGE;
		f->since = true;
	}
	if (c->until != NULL) {
		if (cli_log_when("--until", c->until, &f->until_ms) != 0)
			return CLI_USAGE;
		f->until = true;
	}
	return CLI_OK;
}

/* cli_log_each's callback: print LINE if it matches. */
static int
cli_log_each_line(const char *line, size_t len, void *arg)
{
	if (cli_log_match(arg, line, len)) {
		fwrite(line, 1, len, stdout);
		if (putchar('\n') == EOF)
			return -1;
	}
	return 0;
}

/*
 * With -f, start where the file ends now (as tail -f does: what is there
 * is history, --since reads it instead), past a line being written.
 */
static void
cli_log_follow_start(int fd, const struct stat *st, struct cli_log_filter *f)
{
	char last;

	if (st->st_size == 0 || lseek(fd, st->st_size, SEEK_SET) < 0)
		return;
	f->skip_partial =
	    pread(fd, &last, 1, st->st_size - 1) == 1 && last != '\n';
}

/*
 * log — filter the delivery log (JSON Lines) by recipient (its keyed hash,
 * as `outpost hash` makes it), event, queue id or Message-ID (its
 * msgid_hash) and/or time, over the files the daemon rotated (all, or
 * from --since's day: cli_log_each) and the file.  With -f,
 * follow the file as tail -F does, from its end (from the rotated files of
 * --since's day): wait for more, and when the name points to a new file
 * (the daemon's midnight rotation or logrotate moved the old one) finish
 * the old one and go on with the new.
 * Its length is the follow loop, which reads better in one piece.
 */
int
cli_log(struct cli *c)
{
	struct cli_log_filter f;
	struct stat st, nst;
	char hash[QUEUE_HASH_HEX_BYTES], *events = NULL, *tok, *save = NULL;
	char msgid_hash[QUEUE_HASH_HEX_BYTES], err[512] = "";
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
	if ((rc = cli_log_filter_set(c, &f)) != CLI_OK)
		goto done;
	rc = CLI_ERR;
	if (c->rcpt != NULL || f.msgid_hash != NULL) {
		if (cli_hash_key_load(c) != 0)
			goto done;
	}
	if (c->rcpt != NULL) {
		queue_addr_hash(c->hash_key, c->rcpt, hash);
		f.hash = hash;
	}
	if (f.msgid_hash != NULL) {
		/* As the delivery log hashes it (evlog.h): brackets, white
		 * space and case do not matter. */
		queue_addr_hash(c->hash_key, c->id, msgid_hash);
		f.msgid_hash = msgid_hash;
	}
	if (!c->follow) {
		/* The daemon's rotated files (from --since's day), then
		 * the file. */
		if (cli_log_each(path, f.since ? f.since_ms : 0,
				 cli_log_each_line, &f, err,
				 sizeof(err)) != 0) {
			if (err[0] != '\0')
				cli_errx("log: %s", err);
			goto done;
		}
		rc = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
		goto done;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		cli_errx("log: %s: %s", path, strerror(errno));
		goto done;
	}
	if (!f.since)
		cli_log_follow_start(fd, &st, &f);
	else if (cli_log_each_rotated(path, f.since_ms, &st, cli_log_each_line,
				      &f, NULL, err, sizeof(err)) != 0) {
		if (err[0] != '\0')
			cli_errx("log: %s", err);
		goto done;
	}
	for (;;) {
		if (cli_log_read(fd, &f, &buf, &len, &cap) != 0) {
			cli_errx("log: %s: %s", path, strerror(errno));
			goto done;
		}
		if (fflush(stdout) != 0)
			goto done;
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
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(events);
	return rc;
}

/* hash ---------------------------------------------------------------- */

int
cli_log_hash(struct cli *c)
{
	char hash[QUEUE_HASH_HEX_BYTES];

	queue_addr_hash(c->hash_key, c->argv[0], hash);
	printf("%s\n", hash);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}
