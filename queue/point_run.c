/*
 * point_run.c — the restore thread: a point every interval or on request,
 * its off-site copy and command, then the pruning of old points.
 * Owns: the thread, its settings (copied), the requests waiting, the one
 * command that may run, and the counters.  Must not: be waited for by an
 * I/O loop (requests are answered through a callback), let a command block
 * the next point (it runs on its own; the thread only polls it).
 * Threads: the public calls from any thread under t->mu; everything that
 * touches the disk on the restore thread, never holding the lock.
 */
#define _DEFAULT_SOURCE /* syscall(SYS_gettid, SYS_ioprio_set) */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/crypt_int.h"
#include "queue/point_int.h"
#include "queue/queue_int.h"

#define RUN_COMMAND_POLL_MS 200 /* how often a running command is checked */
#define RUN_COPY_BYTES      (1u << 20)
/* The thread's CPU and I/O priority: the lowest.  A point copies, hashes
 * and decrypts the whole queue; on a busy host that must cost acceptance
 * nothing, so the point takes longer instead.  LMDB's copy thread and the
 * command inherit both. */
#define RUN_NICE           19
#define RUN_IOPRIO_BE_LAST ((2 << 13) | 7) /* IOPRIO_CLASS_BE, level 7 */
#define RUN_IOPRIO_WHO_TID 1               /* IOPRIO_WHO_PROCESS */

/* A settings copy that owns its strings. */
struct run_settings {
	struct queue_point_settings s;
	char *dir, *copy_to;
	char **argv;
};

/* A request of queue_point_thread_request. */
struct run_request {
	queue_point_done_fn *done;
	void *arg;
	struct run_request *next;
};

struct queue_point_thread {
	struct queue *q;
	queue_point_log_fn *log;
	void *log_arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	struct run_settings *set; /* replaced by queue_point_thread_set */
	struct run_request *reqs; /* waiting, newest first */
	int64_t last_mono_ms;     /* the last point (or start) */
	struct queue_point_stats stats;
	/* The command: restore thread only. */
	pid_t cmd_pid; /* 0: none running */
	int64_t cmd_deadline_ms;
	char cmd_point[32]; /* its point's name */
};

static int64_t
run_mono_ms(void)
{
	return (int64_t)(queue_clock_us(CLOCK_MONOTONIC) / 1000);
}

static void run_log(struct queue_point_thread *t, enum queue_point_level level,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
run_log(struct queue_point_thread *t, enum queue_point_level level,
	const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (t->log != NULL)
		t->log(level, buf, t->log_arg);
}

/* Settings ---------------------------------------------------------------- */

static void
run_settings_free(struct run_settings *rs)
{
	size_t i;

	if (rs == NULL)
		return;
	free(rs->dir);
	free(rs->copy_to);
	for (i = 0; rs->argv != NULL && rs->argv[i] != NULL; i++)
		free(rs->argv[i]);
	free(rs->argv);
	free(rs);
}

static struct run_settings *
run_settings_copy(const struct queue_point_settings *s)
{
	struct run_settings *rs;
	size_t n = 0, i;

	if ((rs = calloc(1, sizeof(*rs))) == NULL)
		return NULL;
	rs->s = *s;
	if ((rs->dir = strdup(s->dir)) == NULL ||
	    (s->copy_to != NULL && (rs->copy_to = strdup(s->copy_to)) == NULL))
		goto fail;
	while (s->command != NULL && s->command[n] != NULL)
		n++;
	if (n > 0) {
		if ((rs->argv = calloc(n + 2, sizeof(*rs->argv))) == NULL)
			goto fail;
		for (i = 0; i < n; i++)
			if ((rs->argv[i] = strdup(s->command[i])) == NULL)
				goto fail;
	}
	rs->s.dir = rs->dir;
	rs->s.copy_to = rs->copy_to;
	rs->s.command = rs->argv;
	return rs;
fail:
	run_settings_free(rs);
	return NULL;
}

/* Off-site copy ----------------------------------------------------------- */

/* Copy SRC to DST.tmp, fsync, rename to DST.  0, or -1 with errno. */
static int
run_file_copy(const char *src, const char *dst)
{
	char tmp[PATH_MAX];
	uint8_t *buf = NULL;
	ssize_t n;
	int in = -1, out = -1, ret = -1, saved;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", dst) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((buf = malloc(RUN_COPY_BYTES)) == NULL ||
	    (in = open(src, O_RDONLY | O_CLOEXEC)) < 0 ||
	    (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
		0)
		goto done;
	while ((n = read(in, buf, RUN_COPY_BYTES)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto done;
		if (crypt_write_all(out, buf, (size_t)n) != 0)
			goto done;
	}
	if (fsync(out) != 0)
		goto done;
	ret = close(out);
	out = -1;
	if (ret == 0)
		ret = rename(tmp, dst);
done:
	saved = errno;
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	if (ret != 0)
		(void)unlink(tmp);
	free(buf);
	errno = saved;
	return ret;
}

/* The point NAME of DIR into TO: file, then manifest, then the directory
 * synced.  0, or -1 with err set. */
static int
run_copy_to(const char *dir, const char *to, const char *name, char *err,
	    size_t errlen)
{
	static const char *const exts[] = { "mdb", "json" };
	char src[PATH_MAX], dst[PATH_MAX];
	int i;

	if (crypt_dir_make(to, err, errlen) != 0)
		return -1;
	for (i = 0; i < 2; i++) {
		if (point_path(src, sizeof(src), dir, name, exts[i]) != 0 ||
		    point_path(dst, sizeof(dst), to, name, exts[i]) != 0 ||
		    run_file_copy(src, dst) != 0) {
			(void)snprintf(err, errlen, "%s: %s", to,
				       strerror(errno));
			return -1;
		}
	}
	if (queue_dir_sync(to, "") != 0) {
		(void)snprintf(err, errlen, "%s: fsync: %s", to,
			       strerror(errno));
		return -1;
	}
	return 0;
}

/* The command ------------------------------------------------------------- */

int
queue_command_spawn(char *const *argv, char *const *extra, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, dfl;
	char **av;
	size_t n = 0, m = 0, i;
	int rc;

	while (argv[n] != NULL)
		n++;
	while (extra != NULL && extra[m] != NULL)
		m++;
	if ((av = calloc(n + m + 1, sizeof(*av))) == NULL)
		return ENOMEM;
	for (i = 0; i < n; i++)
		av[i] = argv[i];
	for (i = 0; i < m; i++)
		av[n + i] = extra[i];
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGUSR1);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&sa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, 2, 1);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &dfl);
	posix_spawnattr_setpgroup(&sa, 0);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK |
					  POSIX_SPAWN_SETSIGDEF |
					  POSIX_SPAWN_SETPGROUP);
	rc = posix_spawn(pid, av[0], &fa, &sa, av, NULL);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	free(av);
	return rc;
}

/* Run the command of the point NAME unless one still runs. */
static void
run_command_start(struct queue_point_thread *t, const struct run_settings *rs,
		  const char *name)
{
	char path[PATH_MAX];
	int rc;

	if (rs->argv == NULL)
		return;
	if (t->cmd_pid != 0) {
		pthread_mutex_lock(&t->mu);
		t->stats.commands_skipped++;
		pthread_mutex_unlock(&t->mu);
		run_log(t, QPL_WARN,
			"restore point %s: command skipped: the one for %s "
			"still runs",
			name, t->cmd_point);
		return;
	}
	rc = point_path(path, sizeof(path), rs->dir, name, "mdb") != 0
		 ? ENAMETOOLONG
		 : queue_command_spawn(rs->argv, (char *const[]){ path, NULL },
				       &t->cmd_pid);
	if (rc != 0) {
		t->cmd_pid = 0;
		pthread_mutex_lock(&t->mu);
		t->stats.commands_failed++;
		pthread_mutex_unlock(&t->mu);
		run_log(t, QPL_WARN, "restore point %s: command %s: %s", name,
			rs->argv[0], strerror(rc));
		return;
	}
	t->cmd_deadline_ms = run_mono_ms() + rs->s.command_timeout_ms;
	(void)snprintf(t->cmd_point, sizeof(t->cmd_point), "%s", name);
}

/* Has the command ended (or run out of time, or must it go now)?
 * Counted and logged once it is reaped. */
static void
run_command_poll(struct queue_point_thread *t, bool now)
{
	int status;
	pid_t r;
	bool killed = false;

	if (t->cmd_pid == 0)
		return;
	if ((r = waitpid(t->cmd_pid, &status, WNOHANG)) == 0) {
		if (!now && run_mono_ms() < t->cmd_deadline_ms)
			return;
		(void)kill(-t->cmd_pid, SIGKILL);
		killed = true;
		while ((r = waitpid(t->cmd_pid, &status, 0)) < 0 &&
		       errno == EINTR)
			;
	}
	pthread_mutex_lock(&t->mu);
	if (killed)
		t->stats.commands_killed++;
	else if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		t->stats.commands_ok++;
	else
		t->stats.commands_failed++;
	pthread_mutex_unlock(&t->mu);
	if (killed)
		run_log(t, QPL_WARN, "restore point %s: command killed %s",
			t->cmd_point,
			now ? "at shutdown" : "after command_timeout");
	else if (r > 0 && WIFEXITED(status))
		run_log(t, WEXITSTATUS(status) == 0 ? QPL_INFO : QPL_WARN,
			"restore point %s: command exited with status %d",
			t->cmd_point, WEXITSTATUS(status));
	else if (r > 0 && WIFSIGNALED(status))
		run_log(t, QPL_WARN,
			"restore point %s: command killed by signal %d",
			t->cmd_point, WTERMSIG(status));
	else
		run_log(t, QPL_WARN, "restore point %s: command: %s",
			t->cmd_point, strerror(errno));
	t->cmd_pid = 0;
}

/* The point ---------------------------------------------------------------- */

static void
run_removed(const char *name, const char *why, void *arg)
{
	struct queue_point_thread *t = arg;

	pthread_mutex_lock(&t->mu);
	t->stats.removed++;
	pthread_mutex_unlock(&t->mu);
	run_log(t, QPL_INFO, "restore point %s removed: %s", name, why);
}

/* Prune DIR (and COPY_TO) by RS's tiers. */
static void
run_prune(struct queue_point_thread *t, const struct run_settings *rs)
{
	char err[512];
	const char *dirs[2] = { rs->dir, rs->copy_to };
	int i;

	for (i = 0; i < 2; i++)
		if (dirs[i] != NULL &&
		    queue_point_prune(dirs[i], queue_wall_ms(), &rs->s.keep,
				      run_removed, t, err, sizeof(err)) < 0)
			run_log(t, QPL_WARN, "restore points: %s", err);
}

/* One point with RS, and what follows it.  0 with *PI, or -1 with err. */
static int
run_point(struct queue_point_thread *t, const struct run_settings *rs,
	  struct queue_point_info *pi, char *err, size_t errlen)
{
	char why[512];
	int rc;

	err[0] = '\0';
	rc = queue_point_take(t->q, rs->dir, pi, err, errlen);
	pthread_mutex_lock(&t->mu);
	if (rc != 0) {
		t->stats.failed++;
	} else {
		t->stats.taken++;
		t->stats.unverified += pi->verified ? 0 : 1;
		t->stats.have_last = true;
		t->stats.last = *pi;
	}
	pthread_mutex_unlock(&t->mu);
	if (rc != 0) {
		run_log(t, QPL_WARN, "restore point failed: %s", err);
		return -1;
	}
	run_log(t, QPL_INFO,
		"restore point %s: %" PRIu64 " messages, %" PRIu64
		" recipients, %" PRIu64 " bytes in %" PRId64 " ms",
		pi->name, pi->messages, pi->recipients, pi->size,
		pi->duration_ms);
	if (!pi->verified)
		run_log(t, QPL_WARN, "restore point %s is not whole: %s",
			pi->name, err);
	if (rs->s.interval_ms > 0 && pi->duration_ms > rs->s.interval_ms)
		run_log(t, QPL_WARN,
			"restore point %s took longer than restore.interval "
			"(%" PRId64 " ms): points follow one another",
			pi->name, rs->s.interval_ms);
	if (rs->copy_to != NULL && run_copy_to(rs->dir, rs->copy_to, pi->name,
					       why, sizeof(why)) != 0) {
		pthread_mutex_lock(&t->mu);
		t->stats.copies_failed++;
		pthread_mutex_unlock(&t->mu);
		run_log(t, QPL_WARN, "restore point %s: copy_to: %s", pi->name,
			why);
	}
	run_command_start(t, rs, pi->name);
	run_prune(t, rs);
	return 0;
}

/* Is a point due (interval elapsed, or asked for)?  Under t->mu. */
static bool
run_due(struct queue_point_thread *t, int64_t now)
{
	return t->reqs != NULL ||
	       (t->set->s.interval_ms > 0 &&
		now - t->last_mono_ms >= t->set->s.interval_ms);
}

/* How long to sleep: until the next point, or the next look at the
 * command.  Under t->mu. */
static int64_t
run_wait_ms(struct queue_point_thread *t, int64_t now)
{
	int64_t ms = INT64_MAX;

	if (t->set->s.interval_ms > 0)
		ms = t->last_mono_ms + t->set->s.interval_ms - now;
	if (t->cmd_pid != 0 && ms > RUN_COMMAND_POLL_MS)
		ms = RUN_COMMAND_POLL_MS;
	return ms < 0 ? 0 : ms;
}

static void
run_sleep(struct queue_point_thread *t, int64_t ms)
{
	struct timespec ts;

	if (ms == INT64_MAX) {
		pthread_cond_wait(&t->cv, &t->mu);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	(void)pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

/* Answer the requests REQS (oldest first) with one point's result. */
static void
run_answer(struct run_request *reqs, int status,
	   const struct queue_point_info *pi, const char *err)
{
	struct run_request *r, *prev = NULL, *next;

	for (r = reqs; r != NULL; r = next) { /* newest first: reverse */
		next = r->next;
		r->next = prev;
		prev = r;
	}
	for (r = prev; r != NULL; r = next) {
		next = r->next;
		r->done(status, status == 0 ? pi : NULL, err, r->arg);
		free(r);
	}
}

/* Lower this thread's priorities (Linux: per thread).  Failing is only
 * logged: the points still come. */
static void
run_priority_lower(struct queue_point_thread *t)
{
	long tid = syscall(SYS_gettid);

	if (setpriority(PRIO_PROCESS, (id_t)tid, RUN_NICE) != 0 ||
	    syscall(SYS_ioprio_set, RUN_IOPRIO_WHO_TID, (int)tid,
		    RUN_IOPRIO_BE_LAST) != 0)
		run_log(t, QPL_WARN,
			"restore thread: cannot lower its priority: %s",
			strerror(errno));
}

static void *
run_main(void *arg)
{
	struct queue_point_thread *t = arg;
	struct run_settings *rs;
	struct run_request *reqs;
	struct queue_point_info pi;
	char err[512];
	int rc;

	run_priority_lower(t);
	pthread_mutex_lock(&t->mu);
	while (!t->stopping) {
		/* The command is looked at between points too: points back
		 * to back must not keep it past its time. */
		pthread_mutex_unlock(&t->mu);
		run_command_poll(t, false);
		pthread_mutex_lock(&t->mu);
		if (t->stopping)
			break;
		if (!run_due(t, run_mono_ms())) {
			run_sleep(t, run_wait_ms(t, run_mono_ms()));
			continue;
		}
		/* The settings are used by this thread alone once taken:
		 * a reload meanwhile hands in new ones for the next point. */
		rs = run_settings_copy(&t->set->s);
		reqs = t->reqs;
		t->reqs = NULL;
		t->last_mono_ms = run_mono_ms();
		pthread_mutex_unlock(&t->mu);
		if (rs == NULL) {
			(void)snprintf(err, sizeof(err), "out of memory");
			rc = -1;
		} else {
			rc = run_point(t, rs, &pi, err, sizeof(err));
		}
		run_answer(reqs, rc, &pi, err);
		run_settings_free(rs);
		pthread_mutex_lock(&t->mu);
	}
	reqs = t->reqs;
	t->reqs = NULL;
	pthread_mutex_unlock(&t->mu);
	run_answer(reqs, -1, NULL, "the daemon is stopping");
	run_command_poll(t, true);
	return NULL;
}

/* Public ------------------------------------------------------------------- */

int
queue_point_thread_start(struct queue_point_thread **tp, struct queue *q,
			 const struct queue_point_settings *s,
			 queue_point_log_fn *log, void *log_arg, char *err,
			 size_t errlen)
{
	struct queue_point_thread *t;
	pthread_condattr_t ca;

	*tp = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->set = run_settings_copy(s)) == NULL) {
		free(t);
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	t->q = q;
	t->log = log;
	t->log_arg = log_arg;
	t->last_mono_ms = run_mono_ms();
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* What an earlier run left, and points past their time, go before
	 * the first new one. */
	run_prune(t, t->set);
	if (pthread_create(&t->thread, NULL, run_main, t) != 0) {
		(void)snprintf(err, errlen, "restore thread: %s",
			       strerror(errno));
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		run_settings_free(t->set);
		free(t);
		return -1;
	}
	*tp = t;
	return 0;
}

int
queue_point_thread_set(struct queue_point_thread *t,
		       const struct queue_point_settings *s)
{
	struct run_settings *rs = run_settings_copy(s), *old;

	if (rs == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	old = t->set;
	t->set = rs;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	run_settings_free(old);
	return 0;
}

int
queue_point_thread_request(struct queue_point_thread *t,
			   queue_point_done_fn *done, void *arg)
{
	struct run_request *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -1;
	r->done = done;
	r->arg = arg;
	pthread_mutex_lock(&t->mu);
	r->next = t->reqs;
	t->reqs = r;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	return 0;
}

void
queue_point_thread_stats(struct queue_point_thread *t,
			 struct queue_point_stats *st)
{
	pthread_mutex_lock(&t->mu);
	*st = t->stats;
	pthread_mutex_unlock(&t->mu);
}

void
queue_point_thread_stop(struct queue_point_thread *t)
{
	if (t == NULL)
		return;
	/* A point in progress gives up at its next read: at millions of
	 * messages its copy takes minutes, and a stop must not. */
	atomic_store(&t->q->points_cancel, true);
	pthread_mutex_lock(&t->mu);
	t->stopping = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	run_settings_free(t->set);
	free(t);
}
