/*
 * control_purge.c — a user's data removed: `purge user NAME`, and the clock
 * of users removed from the configuration, purged as by the command
 * retention.user_data later; its hourly check also sweeps the history
 * stores (retention.history).  Owns: the clocks (CP: name, removed_at, 0
 * while configured; each a QS_USER record in the queue's "state").  Must
 * not: remove a message itself (SA_PURGE does), purge a configured user by
 * its clock, or write a user's name in the audit log (hash:HEX).  Threads:
 * command, check and purges on the delivery loop; history on the pool;
 * start and reconf on the main thread.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/deliver/delivery.h"
#include "mta/observe/evlog.h"
#include "mta/observe/history.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"

#define CONTROL_PURGE_CHECK_MS 3600000 /* the clocks and the sweep, hourly */
#define CONTROL_PURGE_REC_HDR  8       /* removed_at (BE), then the name */

/* One user the clock follows. */
struct control_purge_user {
	char *name;
	int64_t removed_ms; /* 0: configured */
	bool purging;       /* its purge is running */
};

static pthread_mutex_t cp_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	bool started, stopped;
	struct queue *queue;
	struct control_purge_user *v;
	size_t n, cap;
	uint64_t user_data_ms, history_ms;
	struct event *timer; /* on the delivery loop */
	bool sweeping;       /* a history sweep is on the pool */
} CP;

/* The command --------------------------------------------------------- */

/* purge user NAME | user-hex HEX: a user name as auth-unblock takes it
 * (NAME the rest of the line; HEX for any byte but NUL). */
int
control_purge_parse(struct control_session *s, char *args)
{
	if (strncmp(args, "user ", 5) != 0 && strncmp(args, "user-hex ", 9)) {
		control_result(s, false,
			       "err usage: purge user NAME | user-hex HEX");
		return -1;
	}
	return control_admin_parse_auth_unblock(s, args);
}

static void control_purge_clock_done(struct control_session *s, bool ok);

/* Pool: the history stores (the registry locks itself). */
static void
control_purge_history_run(void *arg)
{
	struct control_session *s = arg;

	s->history += history_purge_user(s->arg);
}

/* Delivery loop: everything is removed; the counts, then the answer. */
static void
control_purge_history_done(void *arg)
{
	struct control_session *s = arg;

	if (s->bev != NULL)
		evbuffer_add_printf(bufferevent_get_output(s->bev),
				    "purged %d %" PRIu64 "\n", s->count,
				    s->history);
	control_result(s, true, "ok %d", s->count);
	if (s->retention)
		control_purge_clock_done(s, true);
	control_finish(s);
}

/* Delivery loop: the queued messages are gone (or the walk failed). */
static void
control_purge_sched_cb(unsigned count, const char *err, void *arg)
{
	struct control_session *s = arg;
	char esc[200];

	if (err != NULL) {
		log_escape(esc, sizeof(esc), err, strlen(err));
		control_result(s, false, "err %s", esc);
		if (s->retention)
			control_purge_clock_done(s, false);
		control_finish(s);
		return;
	}
	s->count = count > INT_MAX ? INT_MAX : (int)count;
	/* The scheduler's own per-user series belong to this loop. */
	s->history = sched_metrics_user_forget(s->arg);
	if (control_server.stopped) {
		/* Shutting down: the pool may be gone already. */
		control_purge_history_run(s);
		control_purge_history_done(s);
		return;
	}
	worker_submit(control_server.loop, control_purge_history_run,
		      control_purge_history_done, s);
}

/* The messages first (through the scheduler, which answers once their
 * removal is visible), then the history. */
void
control_purge_run(struct control_session *s)
{
	control_enter(s, CS_RUN);
	/* S may be gone when this returns: the callback can run at once. */
	sched_admin(SA_PURGE, SAS_USER, s->arg, control_purge_sched_cb, s);
}

/* The clock ----------------------------------------------------------- */

/* NAME's entry, or NULL.  cp_mu held. */
static struct control_purge_user *
control_purge_user_find(const char *name)
{
	size_t i;

	for (i = 0; i < CP.n; i++)
		if (strcmp(CP.v[i].name, name) == 0)
			return &CP.v[i];
	return NULL;
}

/* A new entry for NAME; NULL when out of memory.  cp_mu held. */
static struct control_purge_user *
control_purge_user_add(const char *name, int64_t removed_ms)
{
	struct control_purge_user *v;
	size_t cap;

	if (CP.n == CP.cap) {
		cap = CP.cap ? CP.cap * 2 : 16;
		if ((v = realloc(CP.v, cap * sizeof(*v))) == NULL)
			return NULL;
		CP.v = v;
		CP.cap = cap;
	}
	v = &CP.v[CP.n];
	if ((v->name = strdup(name)) == NULL)
		return NULL;
	v->removed_ms = removed_ms;
	v->purging = false;
	CP.n++;
	return v;
}

/* Forget entry U (its record too).  cp_mu held. */
static void
control_purge_user_del(struct control_purge_user *u)
{
	(void)queue_state_del(CP.queue, QS_USER, u->name, strlen(u->name));
	free(u->name);
	*u = CP.v[--CP.n];
}

/* U's record (never expires by itself: the clock forgets it).  cp_mu
 * held.  A failed write leaves the state in memory in force; the next
 * start compares again. */
static void
control_purge_user_save(const struct control_purge_user *u)
{
	uint8_t rec[CONTROL_PURGE_REC_HDR + CONTROL_ARG_MAX];
	size_t n = strlen(u->name);
	unsigned i;

	if (n > sizeof(rec) - CONTROL_PURGE_REC_HDR)
		return;
	for (i = 0; i < CONTROL_PURGE_REC_HDR; i++)
		rec[i] = (uint8_t)((uint64_t)u->removed_ms >> (56 - 8 * i));
	memcpy(rec + CONTROL_PURGE_REC_HDR, u->name, n);
	if (queue_state_put(CP.queue, QS_USER, u->name, n, INT64_MAX, rec,
			    CONTROL_PURGE_REC_HDR + n) != 0)
		log_warnx("user data retention: out of memory keeping a "
			  "user's clock");
}

/* One QS_USER record (main thread, start-up). */
static int
control_purge_load_cb(int64_t until_ms, const uint8_t *data, size_t len,
		      void *arg)
{
	char name[CONTROL_ARG_MAX];
	uint64_t removed = 0;
	size_t n;
	unsigned i;

	(void)until_ms;
	(void)arg;
	if (len <= CONTROL_PURGE_REC_HDR ||
	    (n = len - CONTROL_PURGE_REC_HDR) >= sizeof(name))
		return 0;
	for (i = 0; i < CONTROL_PURGE_REC_HDR; i++)
		removed = removed << 8 | data[i];
	memcpy(name, data + CONTROL_PURGE_REC_HDR, n);
	name[n] = '\0';
	if (memchr(name, '\0', n) != NULL ||
	    control_purge_user_find(name) != NULL)
		return 0;
	if (control_purge_user_add(name, (int64_t)removed) == NULL)
		return -1;
	return 0;
}

/* Is NAME one of C's users? */
static bool
control_purge_configured(const struct conf *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nusers; i++)
		if (strcmp(c->users[i].name, name) == 0)
			return true;
	return false;
}

/* C's users against the clocks: a user gone starts its clock, one back
 * stops it, a new one is followed.  cp_mu held. */
static void
control_purge_compare(const struct conf *c, int64_t now)
{
	struct control_purge_user *u;
	char when[40];
	size_t i;

	CP.user_data_ms = c->retention.user_data_ms;
	CP.history_ms = c->retention.history_ms;
	for (i = 0; i < c->nusers; i++) {
		if ((u = control_purge_user_find(c->users[i].name)) == NULL) {
			if ((u = control_purge_user_add(c->users[i].name, 0)) !=
			    NULL)
				control_purge_user_save(u);
			continue;
		}
		if (u->removed_ms == 0)
			continue;
		u->removed_ms = 0;
		control_purge_user_save(u);
		log_info("user %s is in the configuration again: its data "
			 "is kept",
			 u->name);
	}
	for (i = 0; i < CP.n; i++) {
		u = &CP.v[i];
		if (u->removed_ms != 0 || control_purge_configured(c, u->name))
			continue;
		u->removed_ms = now;
		control_purge_user_save(u);
		json_time_fmt(now + (int64_t)CP.user_data_ms, false, when,
			      sizeof(when));
		log_info("user %s removed from the configuration: its data "
			 "is purged on %s UTC",
			 u->name, when);
	}
}

/* Pool: the history sweep (history_expire logs what it removed). */
static void
control_purge_sweep_run(void *arg)
{
	(void)history_expire(*(int64_t *)arg);
}

/* Delivery loop: the sweep ended. */
static void
control_purge_sweep_done(void *arg)
{
	free(arg);
	CP.sweeping = false;
}

/* Delivery loop: start the purge of a user whose time has come, as the
 * command does, recorded in the audit log as the daemon's own. */
static void
control_purge_clock_start(const char *name, int64_t days)
{
	struct control_session *s;
	char hex[QUEUE_HASH_HEX_BYTES];

	if ((s = control_session_new(getuid())) == NULL) {
		log_warnx("user data retention: out of memory");
		return;
	}
	s->pid = getpid();
	s->retention = true;
	s->audit = true;
	s->sel = SAS_USER;
	snprintf(s->arg, sizeof(s->arg), "%s", name);
	evlog_hash(name, hex);
	snprintf(s->command, sizeof(s->command),
		 "purge user hash:%s (retention)", hex);
	log_info("user %s: removed from the configuration %" PRId64
		 " day(s) ago, past retention.user_data: purging its data",
		 name, days);
	control_purge_run(s);
}

/* Delivery loop: S's purge by the clock ended; OK: its clock is over. */
static void
control_purge_clock_done(struct control_session *s, bool ok)
{
	struct control_purge_user *u;

	pthread_mutex_lock(&cp_mu);
	if ((u = control_purge_user_find(s->arg)) != NULL) {
		u->purging = false;
		if (!ok)
			log_warnx("user %s: its data not purged (%s): tried "
				  "again in an hour",
				  s->arg, s->result);
		else if (u->removed_ms == 0)
			log_info("user %s: purged, and in the configuration "
				 "again meanwhile: followed anew",
				 s->arg);
		else {
			log_info("user %s: its data purged: %d message(s), "
				 "%" PRIu64 " history record(s)",
				 s->arg, s->count, s->history);
			if (!CP.stopped)
				control_purge_user_del(u);
		}
	}
	pthread_mutex_unlock(&cp_mu);
}

static void control_purge_timer_cb(evutil_socket_t fd, short what, void *arg);

/* Delivery loop: purge the users whose time has come, sweep the history;
 * again in an hour. */
static void
control_purge_check(void *arg)
{
	int64_t now = util_wall_ms(), *older;
	struct timeval tv = util_ms_timeval(CONTROL_PURGE_CHECK_MS);
	char **due = NULL;
	int64_t *days = NULL;
	size_t i, n = 0;

	(void)arg;
	if (control_server.stopped || CP.stopped)
		return;
	pthread_mutex_lock(&cp_mu);
	if (CP.n > 0 && (due = calloc(CP.n, sizeof(*due))) != NULL &&
	    (days = calloc(CP.n, sizeof(*days))) != NULL)
		for (i = 0; i < CP.n; i++) {
			struct control_purge_user *u = &CP.v[i];

			if (u->removed_ms == 0 || u->purging ||
			    now - u->removed_ms < (int64_t)CP.user_data_ms ||
			    (due[n] = strdup(u->name)) == NULL)
				continue;
			days[n] = (now - u->removed_ms) / 86400000;
			u->purging = true;
			n++;
		}
	pthread_mutex_unlock(&cp_mu);
	/* Started out of the lock: their completions take it. */
	for (i = 0; i < n; i++) {
		control_purge_clock_start(due[i], days[i]);
		free(due[i]);
	}
	free(due);
	free(days);
	if (!CP.sweeping && CP.history_ms > 0 &&
	    (older = malloc(sizeof(*older))) != NULL) {
		*older = now - (int64_t)CP.history_ms;
		CP.sweeping = true;
		worker_submit(control_server.loop, control_purge_sweep_run,
			      control_purge_sweep_done, older);
	}
	if (CP.timer != NULL)
		evtimer_add(CP.timer, &tv);
}

static void
control_purge_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	control_purge_check(arg);
}

int
control_purge_start(const struct conf *c, struct queue *q, char *err,
		    size_t errlen)
{
	int64_t now = util_wall_ms();
	int rc = -1;

	pthread_mutex_lock(&cp_mu);
	if (CP.started || control_server.loop == NULL) {
		snprintf(err, errlen, "user data retention: %s",
			 CP.started ? "started twice"
				    : "the control socket is not started");
		goto out;
	}
	CP.queue = q;
	if (queue_state_load(q, QS_USER, now, control_purge_load_cb, NULL, NULL,
			     err, errlen) != 0)
		goto out;
	control_purge_compare(c, now);
	CP.timer = evtimer_new(control_server.loop->base,
			       control_purge_timer_cb, NULL);
	if (CP.timer == NULL) {
		snprintf(err, errlen, "user data retention: libevent failed");
		goto out;
	}
	CP.started = true;
	rc = 0;
out:
	pthread_mutex_unlock(&cp_mu);
	/* After the queue's load (the delivery loop's mailbox is FIFO). */
	if (rc == 0)
		loop_post(control_server.loop, control_purge_check, NULL);
	return rc;
}

void
control_purge_reconf(const struct conf *c)
{
	pthread_mutex_lock(&cp_mu);
	if (CP.started && !CP.stopped)
		control_purge_compare(c, util_wall_ms());
	pthread_mutex_unlock(&cp_mu);
}

void
control_purge_stop(void)
{
	size_t i;

	pthread_mutex_lock(&cp_mu);
	CP.stopped = true;
	if (CP.timer != NULL)
		event_free(CP.timer);
	CP.timer = NULL;
	for (i = 0; i < CP.n; i++)
		free(CP.v[i].name);
	free(CP.v);
	CP.v = NULL;
	CP.n = CP.cap = 0;
	pthread_mutex_unlock(&cp_mu);
}
