/*
 * watchdog_alert.c — watchdog.alert_command: the program run at a stop,
 * with the identity and the signals (JSON) appended, started as the
 * restore command is (queue_command_spawn: no shell, a process group of
 * its own), killed with its group after alert_timeout.
 * Owns: the alerts running (at most WD_ALERTS_MAX; their pids).  Must
 * not: run on a loop's thread (each alert has a detached thread that
 * waits for it).  Threads: wd_alert_run any; wd_alert_stop main.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"
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
	int rc;

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
	if ((rc = queue_command_spawn(
		 argv,
		 (char *const[]){ (char *)identity, (char *)signals, NULL },
		 &a->pid)) != 0) {
		pthread_mutex_unlock(&wd_alert_mu);
		log_warnx("watchdog: alert command %s: %s", argv[0],
			  strerror(rc));
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
