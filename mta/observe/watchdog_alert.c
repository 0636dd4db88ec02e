/*
 * watchdog_alert.c — watchdog.alert_command: the program run at a stop,
 * with the identity and the signals (JSON) appended; no shell, stdin
 * /dev/null, output to our stderr, a process group of its own, signals as
 * a fresh process has them (as the restore command: queue/point_run.c),
 * killed with its group after alert_timeout.
 * Owns: the alerts running (at most WD_ALERTS_MAX; their pids).  Must
 * not: run on a loop's thread (each alert has a detached thread that
 * waits for it).  Threads: wd_alert_run any; wd_alert_stop main.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/watchdog_int.h"

#define WD_ALERT_POLL_MS 50

static pthread_mutex_t wd_alert_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t wd_alert_pids[WD_ALERTS_MAX]; /* 0: free */
static bool wd_alert_stopping;

struct wd_alert {
	pid_t pid;
	unsigned slot;
	int64_t deadline_ms;
	char identity[256];
};

static pid_t
wd_alert_spawn(char *const *argv, const char *identity, const char *signals)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, dfl;
	char **av;
	size_t n = 0, i;
	pid_t pid = 0;
	int rc;

	while (argv[n] != NULL)
		n++;
	if ((av = calloc(n + 3, sizeof(*av))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		av[i] = argv[i];
	av[n] = (char *)identity;
	av[n + 1] = (char *)signals;
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
	rc = posix_spawn(&pid, av[0], &fa, &sa, av, NULL);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	free(av);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return pid;
}

/* The alert's own thread: wait for it, or kill it at its deadline. */
static void *
wd_alert_wait(void *arg)
{
	struct wd_alert *a = arg;
	struct timespec ts = { 0, WD_ALERT_POLL_MS * 1000000L };
	bool killed = false;
	int status = 0;
	pid_t r;

	thread_name_set("wd-alert");
	while ((r = waitpid(a->pid, &status, WNOHANG)) == 0) {
		if (util_mono_ms() >= a->deadline_ms) {
			(void)kill(-a->pid, SIGKILL);
			killed = true;
			while ((r = waitpid(a->pid, &status, 0)) < 0 &&
			       errno == EINTR)
				;
			break;
		}
		nanosleep(&ts, NULL);
	}
	if (killed)
		log_warnx("watchdog: alert command for %s killed after "
			  "alert_timeout",
			  a->identity);
	else if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		log_warnx("watchdog: alert command for %s exited with "
			  "status %d",
			  a->identity, WEXITSTATUS(status));
	else if (r > 0 && WIFSIGNALED(status))
		log_warnx("watchdog: alert command for %s killed by signal %d",
			  a->identity, WTERMSIG(status));
	else if (r > 0)
		log_info("watchdog: alert command for %s done", a->identity);
	pthread_mutex_lock(&wd_alert_mu);
	wd_alert_pids[a->slot] = 0;
	pthread_mutex_unlock(&wd_alert_mu);
	free(a);
	return NULL;
}

void
wd_alert_run(char *const *argv, int64_t timeout_ms, const char *identity,
	     const char *signals)
{
	struct wd_alert *a;
	pthread_attr_t at;
	pthread_t t;
	unsigned i;

	pthread_mutex_lock(&wd_alert_mu);
	for (i = 0; i < WD_ALERTS_MAX && wd_alert_pids[i] != 0; i++)
		;
	if (wd_alert_stopping || i == WD_ALERTS_MAX ||
	    (a = calloc(1, sizeof(*a))) == NULL) {
		pthread_mutex_unlock(&wd_alert_mu);
		log_warnx("watchdog: alert command for %s not run: %d "
			  "already running",
			  identity, WD_ALERTS_MAX);
		return;
	}
	a->slot = i;
	snprintf(a->identity, sizeof(a->identity), "%s", identity);
	if ((a->pid = wd_alert_spawn(argv, identity, signals)) < 0) {
		pthread_mutex_unlock(&wd_alert_mu);
		log_warn("watchdog: alert command %s", argv[0]);
		free(a);
		return;
	}
	wd_alert_pids[i] = a->pid;
	a->deadline_ms = util_mono_ms() + timeout_ms;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, wd_alert_wait, a) != 0) {
		/* Nobody would reap it: it goes now. */
		(void)kill(-a->pid, SIGKILL);
		(void)waitpid(a->pid, NULL, 0);
		wd_alert_pids[i] = 0;
		free(a);
		log_warnx("watchdog: alert command for %s: no thread",
			  identity);
	}
	pthread_attr_destroy(&at);
	pthread_mutex_unlock(&wd_alert_mu);
}

void
wd_alert_stop(void)
{
	unsigned i;

	pthread_mutex_lock(&wd_alert_mu);
	wd_alert_stopping = true;
	for (i = 0; i < WD_ALERTS_MAX; i++)
		if (wd_alert_pids[i] != 0)
			(void)kill(-wd_alert_pids[i], SIGKILL);
	pthread_mutex_unlock(&wd_alert_mu);
}
