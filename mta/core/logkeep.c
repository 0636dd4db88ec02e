/*
 * logkeep.c — rotation and retention of the daemon's log files (logkeep.h).
 * Owns: the keeper thread and its table of logs (path, lifetime, hook).
 * Must not: run on an I/O loop or a log writer (a day's file takes seconds
 * to compress); remove anything but FILE-YYYY-MM-DD[.gz] of a kept log;
 * leave a partial .gz under its final name (written as .tmp, renamed).
 * Threads: logkeep_add/start/stop on the main thread (start also renames
 * a log left from an earlier day, before the loops run); the keeper does
 * the rest; logkeep_lifetime_set from any thread.
 */
#define _GNU_SOURCE /* timegm, strndup */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "mta/core/logkeep.h"
#include "mta/core/log.h"
#include "mta/core/util.h"

int64_t
logkeep_day_start(int64_t ms)
{
	int64_t r = ms % LOGKEEP_DAY_MS;

	return ms - (r < 0 ? r + LOGKEEP_DAY_MS : r);
}

void
logkeep_day_format(int64_t ms, char out[LOGKEEP_DAY_BYTES])
{
	time_t t = (time_t)(logkeep_day_start(ms) / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, LOGKEEP_DAY_BYTES, "%Y-%m-%d", &tm) == 0)
		snprintf(out, LOGKEEP_DAY_BYTES, "0000-00-00");
}

bool
logkeep_name_day(const char *base, const char *name, int64_t *day_ms, bool *gz)
{
	size_t blen = strlen(base);
	const char *d;
	char back[LOGKEEP_DAY_BYTES];
	struct tm tm;
	time_t t;
	int i;

	if (strncmp(name, base, blen) != 0 || name[blen] != '-')
		return false;
	d = name + blen + 1;
	for (i = 0; i < LOGKEEP_DAY_BYTES - 1; i++)
		if (i == 4 || i == 7 ? d[i] != '-' : d[i] < '0' || d[i] > '9')
			return false;
	if (strcmp(d + 10, "") != 0 && strcmp(d + 10, ".gz") != 0)
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (d[0] - '0') * 1000 + (d[1] - '0') * 100 +
		     (d[2] - '0') * 10 + (d[3] - '0') - 1900;
	tm.tm_mon = (d[5] - '0') * 10 + (d[6] - '0') - 1;
	tm.tm_mday = (d[8] - '0') * 10 + (d[9] - '0');
	if ((t = timegm(&tm)) == (time_t)-1)
		return false;
	/* 2026-02-30 would normalise to March: not one of our names. */
	logkeep_day_format((int64_t)t * 1000, back);
	if (strncmp(back, d, 10) != 0)
		return false;
	*day_ms = (int64_t)t * 1000;
	*gz = d[10] != '\0';
	return true;
}

/* The keeper ---------------------------------------------------------- */

struct logkeep_log {
	const char *name;
	char *path, *dir, *base;
	_Atomic int64_t lifetime_ms;
	logkeep_reopen_fn reopen;
	void *arg;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* CLOCK_MONOTONIC */
	bool stop, sweep;    /* under mu */
	bool running;        /* main thread's */
	pthread_t thread;
	struct logkeep_log logs[LOGKEEP_MAX];
	int n;
} lk = { .mu = PTHREAD_MUTEX_INITIALIZER };

int
logkeep_add(const char *name, const char *path, int64_t lifetime_ms,
	    logkeep_reopen_fn reopen, void *arg, char *err, size_t errlen)
{
	struct logkeep_log *l;
	const char *slash = strrchr(path, '/');

	if (lk.n == LOGKEEP_MAX || lifetime_ms <= 0 || reopen == NULL) {
		snprintf(err, errlen, "%s %s: %s", name, path,
			 lk.n == LOGKEEP_MAX ? "too many logs to keep"
					     : "no lifetime or no writer hook");
		return -1;
	}
	l = &lk.logs[lk.n];
	memset(l, 0, sizeof(*l));
	if ((l->path = strdup(path)) == NULL ||
	    (l->base = strdup(slash != NULL ? slash + 1 : path)) == NULL ||
	    (l->dir = slash == NULL ? strdup(".")
		      : slash == path
			  ? strdup("/")
			  : strndup(path, (size_t)(slash - path))) == NULL) {
		free(l->path);
		free(l->base);
		snprintf(err, errlen, "%s %s: %s", name, path,
			 strerror(ENOMEM));
		return -1;
	}
	l->name = name;
	atomic_store(&l->lifetime_ms, lifetime_ms);
	l->reopen = reopen;
	l->arg = arg;
	lk.n++;
	return 0;
}

/* "…/BASE-YYYY-MM-DD" of DAY_MS into OUT[PATH_MAX]. */
static int
logkeep_dated(const struct logkeep_log *l, int64_t day_ms, char *out)
{
	char day[LOGKEEP_DAY_BYTES];

	logkeep_day_format(day_ms, day);
	return snprintf(out, PATH_MAX, "%s-%s", l->path, day) < PATH_MAX ? 0
									 : -1;
}

/*
 * The day of the lines of the file open at FD (ST its fstat): the "time" of
 * its last whole line (both logs write one, from the test clock, which the
 * file's mtime does not follow), else the day of its mtime.
 */
static int64_t
logkeep_lines_day(int fd, const struct stat *st)
{
	char tail[4096], name[32], *p, *t;
	off_t from = st->st_size > (off_t)sizeof(tail) - 1
			 ? st->st_size - (off_t)sizeof(tail) + 1
			 : 0;
	ssize_t r = pread(fd, tail, (size_t)(st->st_size - from), from);
	int64_t day;
	bool gz;

	if (r > 0) {
		tail[r] = '\0';
		/* The last whole line starts after the LF before the last. */
		if (r > 1 && tail[r - 1] == '\n')
			tail[r - 1] = '\0';
		p = strrchr(tail, '\n');
		p = p != NULL ? p + 1 : tail;
		if ((t = strstr(p, "\"time\":\"")) != NULL) {
			snprintf(name, sizeof(name), "x-%.10s", t + 8);
			if (logkeep_name_day("x", name, &day, &gz))
				return day;
		}
	}
	return logkeep_day_start((int64_t)st->st_mtime * 1000);
}

/*
 * Compress PLAIN (a rotated file no one writes) into PLAIN.gz: written as
 * PLAIN.gz.tmp with PLAIN's group and mode, fsynced, renamed, then PLAIN
 * removed.  A PLAIN.gz already there (a day rotated twice: the clock went
 * back) is kept as the first gzip member of the new one.  0, or -1 (said).
 * Long for its one cleanup path over four descriptors and the gzip stream.
 */
static int
logkeep_compress(const struct logkeep_log *l, const char *plain)
{
	char gzpath[PATH_MAX], tmp[PATH_MAX], buf[65536];
	struct stat st;
	int in = -1, out = -1, old = -1, zfd = -1, zerr;
	gzFile z = NULL;
	ssize_t r;

	if (snprintf(gzpath, sizeof(gzpath), "%s.gz", plain) >=
		(int)sizeof(gzpath) ||
	    snprintf(tmp, sizeof(tmp), "%s.gz.tmp", plain) >=
		(int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if ((in = open(plain, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
	    fstat(in, &st) != 0)
		goto fail;
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		   st.st_mode & 0777);
	if (out < 0)
		goto fail;
	/* The group first, then the mode: never wider with the wrong group;
	 * a group the account may not give is the old file's all the same
	 * only when the account is in it (evlog_file_perms). */
	if (fchown(out, (uid_t)-1, st.st_gid) != 0 && errno != EPERM)
		goto fail;
	if (fchmod(out, st.st_mode & 0777) != 0)
		goto fail;
	if ((old = open(gzpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
		while ((r = read(old, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)r) != r)
				goto fail;
		if (r < 0)
			goto fail;
	} else if (errno != ENOENT) {
		goto fail;
	}
	if ((zfd = dup(out)) < 0 || (z = gzdopen(zfd, "ab")) == NULL)
		goto fail;
	zfd = -1; /* z's now */
	while ((r = read(in, buf, sizeof(buf))) > 0)
		if (gzwrite(z, buf, (unsigned)r) != (int)r)
			goto zfail;
	if (r < 0)
		goto fail;
	zerr = gzclose_w(z);
	z = NULL;
	if (zerr != Z_OK) {
		errno = EIO;
		goto fail;
	}
	if (fsync(out) != 0 || close(out) != 0) {
		out = -1;
		goto fail;
	}
	out = -1;
	if (rename(tmp, gzpath) != 0 || unlink(plain) != 0)
		goto fail;
	if (old >= 0)
		close(old);
	close(in);
	return 0;
zfail:
	errno = EIO;
fail:
	log_warn("%s: compressing %s", l->name, plain);
	if (z != NULL)
		(void)gzclose_w(z);
	if (zfd >= 0)
		close(zfd);
	if (out >= 0) {
		close(out);
		(void)unlink(tmp);
	}
	if (old >= 0)
		close(old);
	if (in >= 0)
		close(in);
	return -1;
}

/* The log renamed DATED, and its writer told to reopen it.  False: not
 * renamed (said, but for a log that is not there). */
static bool
logkeep_rename(struct logkeep_log *l, const char *dated)
{
	if (rename(l->path, dated) != 0) {
		if (errno != ENOENT)
			log_warn("%s: rotating %s", l->name, l->path);
		return false;
	}
	l->reopen(l->arg);
	log_info("%s: rotated %s to %s", l->name, l->path, dated);
	return true;
}

/* The day of the log's lines into *DAY_MS (logkeep_lines_day).  False: no
 * log, or an empty one. */
static bool
logkeep_file_day(const struct logkeep_log *l, int64_t *day_ms)
{
	struct stat st;
	int fd;

	if ((fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return false;
	if (fstat(fd, &st) != 0 || st.st_size == 0) {
		close(fd);
		return false;
	}
	*day_ms = logkeep_lines_day(fd, &st);
	close(fd);
	return true;
}

/*
 * Rename the log to its DAY_MS's name and have its writer reopen it, then
 * compress the renamed file.  A name already taken (the clock went back) is
 * compressed first, so that the two days' lines end up in one .gz.
 */
static void
logkeep_rotate(struct logkeep_log *l, int64_t day_ms)
{
	char dated[PATH_MAX];
	struct stat st;

	if (logkeep_dated(l, day_ms, dated) != 0) {
		log_warnx("%s: %s: rotated name too long", l->name, l->path);
		return;
	}
	if (lstat(dated, &st) == 0 && logkeep_compress(l, dated) != 0)
		return;
	if (logkeep_rename(l, dated))
		(void)logkeep_compress(l, dated);
}

/*
 * Rotate the log if it holds lines of a day before TODAY_MS, under the day
 * of its last line; at MIDNIGHT, whatever its last line (one written
 * between midnight and now belongs with the day that ended), under that
 * day at the latest.  An empty or absent log is left alone.
 */
static void
logkeep_rotate_due(struct logkeep_log *l, int64_t today_ms, bool midnight)
{
	int64_t day;

	if (!logkeep_file_day(l, &day))
		return;
	if (midnight && day >= today_ms)
		day = today_ms - LOGKEEP_DAY_MS;
	if (day < today_ms)
		logkeep_rotate(l, day);
}

/*
 * At start, before any loop runs: a log whose lines are of an earlier day
 * is renamed now, on the caller's thread, so that no line of this run can
 * land in it (the keeper is a thread that may run late: a message accepted
 * meanwhile went into yesterday's file).  The keeper compresses it (its
 * sweep takes files left plain).  A dated name already taken is left to
 * the keeper, which merges the two days first.
 */
static void
logkeep_rotate_start(struct logkeep_log *l, int64_t today_ms)
{
	char dated[PATH_MAX];
	struct stat st;
	int64_t day;

	if (!logkeep_file_day(l, &day) || day >= today_ms ||
	    logkeep_dated(l, day, dated) != 0 || lstat(dated, &st) == 0)
		return;
	(void)logkeep_rename(l, dated);
}

/*
 * Over the log's rotated files: compress those left plain (a stop during a
 * compression, or a file rotated by hand) and remove those whose day ended
 * more than the lifetime before NOW_MS, each removal logged.
 */
static void
logkeep_sweep(struct logkeep_log *l, int64_t now_ms)
{
	int64_t lifetime = atomic_load(&l->lifetime_ms), day;
	char path[PATH_MAX], names[64][NAME_MAX + 1];
	struct dirent *de;
	int n = 0, i;
	bool gz, more;
	DIR *d;

	do {
		/* The directory is read whole before anything in it is
		 * renamed or removed; a long list takes several rounds. */
		if ((d = opendir(l->dir)) == NULL) {
			log_warn("%s: %s", l->name, l->dir);
			return;
		}
		n = 0;
		more = false;
		while ((de = readdir(d)) != NULL) {
			if (!logkeep_name_day(l->base, de->d_name, &day, &gz))
				continue;
			if (day + LOGKEEP_DAY_MS > now_ms - lifetime && gz)
				continue; /* kept, and already compressed */
			if (n == 64) {
				more = true;
				break;
			}
			snprintf(names[n++], NAME_MAX + 1, "%s", de->d_name);
		}
		closedir(d);
		for (i = 0; i < n; i++) {
			if (!logkeep_name_day(l->base, names[i], &day, &gz) ||
			    snprintf(path, sizeof(path), "%s/%s", l->dir,
				     names[i]) >= (int)sizeof(path))
				continue;
			if (day + LOGKEEP_DAY_MS > now_ms - lifetime) {
				if (logkeep_compress(l, path) != 0)
					more = false; /* not again now */
				continue;
			}
			if (unlink(path) != 0 && errno != ENOENT) {
				log_warn("%s: removing %s", l->name, path);
				more = false;
				continue;
			}
			log_info("%s: removed %s: its day is more than %lld "
				 "days old (retention)",
				 l->name, path,
				 (long long)(lifetime / LOGKEEP_DAY_MS));
		}
	} while (more);
}

/* Sleep until DEADLINE_MS of the test clock, at most a minute (the wall
 * clock may be set meanwhile), or a stop or sweep request.  Under lk.mu. */
static void
logkeep_wait(int64_t deadline_ms)
{
	int64_t ms = deadline_ms - util_wall_ms();
	struct timespec dl;

	if (ms <= 0 || lk.stop || lk.sweep)
		return;
	if (ms > 60000)
		ms = 60000;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += (time_t)(ms / 1000);
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	(void)pthread_cond_timedwait(&lk.wake, &lk.mu, &dl);
}

/* The keeper: at start, then at every UTC midnight and hourly. */
static void *
logkeep_main(void *arg)
{
	int64_t now = util_wall_ms(), today = logkeep_day_start(now);
	int64_t next_sweep;
	bool sweep;
	int i;

	(void)arg;
	(void)prctl(PR_SET_NAME, (unsigned long)"logkeep", 0, 0, 0);
	for (i = 0; i < lk.n; i++) {
		logkeep_rotate_due(&lk.logs[i], today, false);
		logkeep_sweep(&lk.logs[i], now);
	}
	next_sweep = now + LOGKEEP_SWEEP_MS;
	pthread_mutex_lock(&lk.mu);
	while (!lk.stop) {
		logkeep_wait(next_sweep < today + LOGKEEP_DAY_MS
				 ? next_sweep
				 : today + LOGKEEP_DAY_MS);
		if (lk.stop)
			break;
		sweep = lk.sweep;
		lk.sweep = false;
		pthread_mutex_unlock(&lk.mu);
		now = util_wall_ms();
		if (logkeep_day_start(now) > today) {
			/* Lines queued before the rename are the day's that
			 * ended; the writer's reopen cuts there. */
			today = logkeep_day_start(now);
			for (i = 0; i < lk.n; i++)
				logkeep_rotate_due(&lk.logs[i], today, true);
			sweep = true;
		}
		if (sweep || now >= next_sweep) {
			for (i = 0; i < lk.n; i++)
				logkeep_sweep(&lk.logs[i], now);
			next_sweep = now + LOGKEEP_SWEEP_MS;
		}
		pthread_mutex_lock(&lk.mu);
	}
	pthread_mutex_unlock(&lk.mu);
	return NULL;
}

int
logkeep_start(char *err, size_t errlen)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc, i;

	if (lk.n == 0 || lk.running)
		return 0;
	for (i = 0; i < lk.n; i++)
		logkeep_rotate_start(&lk.logs[i],
				     logkeep_day_start(util_wall_ms()));
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lk.wake, &ca);
	pthread_condattr_destroy(&ca);
	lk.stop = lk.sweep = false;
	/* Signals are the main loop's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&lk.thread, NULL, logkeep_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pthread_cond_destroy(&lk.wake);
		snprintf(err, errlen, "log keeper thread: %s", strerror(rc));
		return -1;
	}
	lk.running = true;
	return 0;
}

void
logkeep_lifetime_set(const char *path, int64_t lifetime_ms)
{
	int i;

	if (path == NULL || lifetime_ms <= 0)
		return;
	for (i = 0; i < lk.n; i++)
		if (strcmp(lk.logs[i].path, path) == 0 &&
		    atomic_exchange(&lk.logs[i].lifetime_ms, lifetime_ms) !=
			lifetime_ms) {
			pthread_mutex_lock(&lk.mu);
			lk.sweep = true;
			pthread_mutex_unlock(&lk.mu);
			if (lk.running)
				pthread_cond_signal(&lk.wake);
		}
}

void
logkeep_stop(void)
{
	int i;

	if (lk.running) {
		pthread_mutex_lock(&lk.mu);
		lk.stop = true;
		pthread_mutex_unlock(&lk.mu);
		pthread_cond_signal(&lk.wake);
		pthread_join(lk.thread, NULL);
		pthread_cond_destroy(&lk.wake);
		lk.running = false;
	}
	for (i = 0; i < lk.n; i++) {
		free(lk.logs[i].path);
		free(lk.logs[i].dir);
		free(lk.logs[i].base);
	}
	lk.n = 0;
}
