/*
 * cli_logfiles.c — a log file's lines across the daemon's rotation
 * (cli_log_each): FILE's rotated files FILE-YYYY-MM-DD and
 * FILE-YYYY-MM-DD.gz (mta/core/logkeep.h names them), oldest first, then
 * FILE itself.  Read through zlib, which passes plain files through as
 * they are.  Must not: hold more than one line (a long one grows the
 * buffer, as `outpost log` always has) and one read block.  One thread.
 */
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "mta/core/logkeep.h"
#include "mta/cli/cli_int.h"

#define CLI_LOGFILES_READ_BYTES (128 * 1024)

struct cli_logfile {
	int64_t day_ms;
	bool gz;
	char *name; /* the directory entry (owned) */
};

/* The lines of one open file, whatever it ends with. */
struct cli_logfiles_buf {
	char *p;
	size_t len, cap;
};

/* Oldest first; on the same day the .gz first (cli_logfiles_rotated). */
static int
cli_logfiles_cmp(const void *a, const void *b)
{
	const struct cli_logfile *x = a, *y = b;

	if (x->day_ms != y->day_ms)
		return x->day_ms < y->day_ms ? -1 : 1;
	return (int)y->gz - (int)x->gz;
}

/*
 * Every line of the file open at FD (taken: closed here), compressed or
 * not, to FN; an unfinished last line counts as a line.  0, FN's non-zero
 * answer, or -1 with ERR (NAME says which file).
 */
static int
cli_logfiles_read(int fd, const char *name, struct cli_logfiles_buf *b,
		  int (*fn)(const char *line, size_t len, void *arg), void *arg,
		  char *err, size_t errlen)
{
	gzFile gz;
	char *nb, *p, *nl, *end;
	int r, rc = 0, zerr;

	b->len = 0;
	if ((gz = gzdopen(fd, "rb")) == NULL) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	(void)gzbuffer(gz, CLI_LOGFILES_READ_BYTES);
	for (;;) {
		if (b->cap - b->len < CLI_LOGFILES_READ_BYTES) {
			if ((nb = realloc(b->p, b->cap * 2 +
						    CLI_LOGFILES_READ_BYTES)) ==
			    NULL) {
				snprintf(err, errlen, "%s: out of memory",
					 name);
				rc = -1;
				break;
			}
			b->p = nb;
			b->cap = b->cap * 2 + CLI_LOGFILES_READ_BYTES;
		}
		r = gzread(gz, b->p + b->len,
			   (unsigned)CLI_LOGFILES_READ_BYTES);
		/* A cut .gz ends with 0 and Z_BUF_ERROR, not with -1. */
		if (r < 0 || (r == 0 && (gzerror(gz, &zerr), zerr != Z_OK))) {
			snprintf(err, errlen, "%s: %s", name,
				 gzerror(gz, &zerr));
			rc = -1;
			break;
		}
		if (r == 0) {
			if (b->len > 0)
				rc = fn(b->p, b->len, arg);
			b->len = 0;
			break;
		}
		b->len += (size_t)r;
		p = b->p;
		end = b->p + b->len;
		while (rc == 0 &&
		       (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			rc = fn(p, (size_t)(nl - p), arg);
			p = nl + 1;
		}
		memmove(b->p, p, (size_t)(end - p));
		b->len = (size_t)(end - p);
		if (rc != 0)
			break;
	}
	gzclose_r(gz);
	return rc;
}

/* FILE's directory and name into DIR and BASE. 0, or -1 with ERR. */
static int
cli_logfiles_split(const char *file, char *dir, char *base, char *err,
		   size_t errlen)
{
	const char *slash = strrchr(file, '/');
	int n;

	if (slash == NULL)
		n = snprintf(dir, PATH_MAX, ".");
	else if (slash == file)
		n = snprintf(dir, PATH_MAX, "/");
	else
		n = snprintf(dir, PATH_MAX, "%.*s", (int)(slash - file), file);
	if (n < 0 || n >= PATH_MAX ||
	    snprintf(base, NAME_MAX + 1, "%s",
		     slash == NULL ? file : slash + 1) > NAME_MAX) {
		snprintf(err, errlen, "%s: path too long", file);
		return -1;
	}
	return 0;
}

/* FILE's rotated files of days from SINCE_MS's on into *OUT (sorted,
 * cli_logfiles_cmp; free with cli_logfiles_free).  0, or -1 with ERR. */
static int
cli_logfiles_list(const char *dir, const char *base, int64_t since_ms,
		  struct cli_logfile **out, size_t *n, char *err, size_t errlen)
{
	struct cli_logfile *v = NULL, *nv;
	size_t cap = 0;
	struct dirent *de;
	int64_t day, from;
	bool gz;
	DIR *d;

	/* The file of the day before holds the first moments of SINCE's
	 * day too: the lines written between midnight and the rename. */
	from = since_ms > 0 ? logkeep_day_start(since_ms) - LOGKEEP_DAY_MS : 0;
	*n = 0;
	if ((d = opendir(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!logkeep_name_day(base, de->d_name, &day, &gz) ||
		    (since_ms > 0 && day < from))
			continue;
		if (*n == cap) {
			cap = cap * 2 + 16;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL)
				goto nomem;
			v = nv;
		}
		if ((v[*n].name = strdup(de->d_name)) == NULL)
			goto nomem;
		v[*n].day_ms = day;
		v[(*n)++].gz = gz;
	}
	closedir(d);
	if (*n > 0)
		qsort(v, *n, sizeof(*v), cli_logfiles_cmp);
	*out = v;
	return 0;
nomem:
	closedir(d);
	while (*n > 0)
		free(v[--*n].name);
	free(v);
	snprintf(err, errlen, "%s: out of memory", dir);
	return -1;
}

int
cli_log_each_rotated(const char *file, int64_t since_ms,
		     const struct stat *held,
		     int (*fn)(const char *line, size_t len, void *arg),
		     void *arg, size_t *nread, char *err, size_t errlen)
{
	char dir[PATH_MAX], base[NAME_MAX + 1], path[PATH_MAX + NAME_MAX + 8];
	struct cli_logfiles_buf b = { NULL, 0, 0 };
	struct cli_logfile *v = NULL;
	struct stat st;
	size_t n = 0, i;
	int fd, rc = 0;

	if (cli_logfiles_split(file, dir, base, err, errlen) != 0 ||
	    cli_logfiles_list(dir, base, since_ms, &v, &n, err, errlen) != 0)
		return -1;
	for (i = 0; i < n && rc == 0; i++) {
		/* Both: the .gz is whole (renamed into place once written)
		 * and holds all the plain one does. */
		if (i > 0 && v[i].day_ms == v[i - 1].day_ms)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, v[i].name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && !v[i].gz) {
			/* Compressed (and removed) since the listing. */
			snprintf(path, sizeof(path), "%s/%s.gz", dir,
				 v[i].name);
			fd = open(path, O_RDONLY | O_CLOEXEC);
		}
		if (fd < 0 && errno == ENOENT)
			continue; /* removed by age since the listing */
		if (fd < 0 || fstat(fd, &st) != 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			rc = -1;
			break;
		}
		/* The file the caller holds, renamed a moment ago: it is
		 * read last, as FILE. */
		if (held != NULL && st.st_dev == held->st_dev &&
		    st.st_ino == held->st_ino) {
			close(fd);
			continue;
		}
		rc = cli_logfiles_read(fd, path, &b, fn, arg, err, errlen);
		if (nread != NULL)
			(*nread)++;
	}
	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
	free(b.p);
	return rc;
}

int
cli_log_each(const char *file, int64_t since_ms,
	     int (*fn)(const char *line, size_t len, void *arg), void *arg,
	     char *err, size_t errlen)
{
	struct cli_logfiles_buf b = { NULL, 0, 0 };
	struct stat st;
	size_t nread = 0;
	int fd, rc;

	/* FILE first: if the daemon rotates it meanwhile, the renamed file
	 * is still this one, read once, last. */
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return -1;
	}
	if (fd >= 0 && fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		close(fd);
		return -1;
	}
	rc = cli_log_each_rotated(file, since_ms, fd >= 0 ? &st : NULL, fn, arg,
				  &nread, err, errlen);
	if (rc != 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (fd < 0 && nread == 0) {
		snprintf(err, errlen, "%s: %s", file, strerror(ENOENT));
		return -1;
	}
	if (fd < 0)
		return 0; /* between the daemon's rename and its reopen */
	rc = cli_logfiles_read(fd, file, &b, fn, arg, err, errlen);
	free(b.p);
	return rc;
}
