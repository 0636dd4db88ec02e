/*
 * control_query.c — the commands that only read (control_int.h): ping,
 * suspensions and status (the daemon's own state, read on the loop), and
 * the views of the queue (summary, list, show), each walked on a thread of
 * its own (control_view_run) that writes onto the client's socket.
 * Owns: the view threads (CONTROL_VIEWS_MAX, CONTROL_UID_VIEWS_MAX a uid)
 * and status's rate sampler (a 1 s timer).  Must not: check rights (the
 * command table did; a look at headers is on record before its thread).
 * Threads: the delivery loop; control_query_thread on its own, touching
 * only its session's view and socket until it posts back.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/deliver/delivery.h"
#include "mta/core/json.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/stats.h"
#include "mta/receive/listen.h"

#define CONTROL_UID_VIEWS_MAX 2 /* views of one uid at once */
#ifndef OUTPOST_VERSION
#define OUTPOST_VERSION "unknown"
#endif

static void control_query_done(void *arg);

/* sched_suspensions()'s lines, printable ASCII only; malloc'd, or NULL. */
static char *
control_query_suspensions(void)
{
	size_t len = 4096, need, i;
	char *buf, *nb;

	if ((buf = malloc(len)) == NULL)
		return NULL;
	need = sched_suspensions(buf, len);
	if (need >= len) {
		len = need + 1;
		if ((nb = realloc(buf, len)) == NULL) {
			free(buf);
			return NULL;
		}
		buf = nb;
		need = sched_suspensions(buf, len);
		if (need >= len)
			need = len - 1;
	}
	buf[need] = '\0';
	for (i = 0; i < need; i++)
		if (buf[i] != '\n' && ((unsigned char)buf[i] < 0x20 ||
				       (unsigned char)buf[i] > 0x7e))
			buf[i] = '?';
	return buf;
}

/*
 * summary [json]
 * list [json] [held] [deferred] [domain DOMAIN]
 * show HEX16 [json] [headers]
 * Words after the verb in any order; each once.
 */
int
control_query_parse_view(struct control_session *s, char *args)
{
	struct control_view *v;
	const char *verb = s->cmd->verb;
	char *w;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		control_result(s, false, "err out of memory");
		return -1;
	}
	s->view = v;
	atomic_init(&v->cancel, false);
	v->kind = verb[0] == 's' && verb[1] == 'u' ? CVK_SUMMARY
		  : verb[0] == 'l'                 ? CVK_LIST
						   : CVK_SHOW;
	if (v->kind == CVK_SHOW) {
		w = control_word(&args);
		if (w == NULL || strlen(w) != QUEUE_ID_HEX_BYTES - 1 ||
		    queue_id_parse(w, &v->id) != 0) {
			control_result(
			    s, false, "err usage: show HEX16 [json] [headers]");
			return -1;
		}
		queue_id_format(v->id, s->arg);
	}
	while ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "json") == 0 && !v->json)
			v->json = true;
		else if (v->kind == CVK_LIST && strcmp(w, "held") == 0 &&
			 !v->held)
			v->held = true;
		else if (v->kind == CVK_LIST && strcmp(w, "deferred") == 0 &&
			 !v->deferred)
			v->deferred = true;
		else if (v->kind == CVK_LIST && strcmp(w, "domain") == 0 &&
			 v->domain[0] == '\0') {
			if ((w = control_word(&args)) == NULL ||
			    !control_domain_ok(w, v->domain,
					       sizeof(v->domain))) {
				control_result(s, false, "err bad domain");
				return -1;
			}
		} else if (v->kind == CVK_SHOW && strcmp(w, "headers") == 0 &&
			   !v->headers)
			v->headers = s->audit = true;
		else {
			control_result(
			    s, false,
			    "err usage: summary [json] | list [json] "
			    "[held] [deferred] [domain DOMAIN] | "
			    "show HEX16 [json] [headers]");
			return -1;
		}
	}
	return 0;
}

void
control_query_run_ping(struct control_session *s)
{
	control_result(s, true, "ok");
	control_finish(s);
}

/* A view thread: the walk, then the completion back on the loop. */
static void *
control_query_thread(void *arg)
{
	struct control_session *s = arg;

	s->view_rc = control_view_run(control_server.queue, control_server.conf,
				      s->view_fd, s->view);
	loop_post(control_server.loop, control_query_done, s);
	return NULL;
}

/* Delivery loop: the view is written; send its final line. */
static void
control_query_done(void *arg)
{
	struct control_session *s = arg;

	if (!s->joined)
		pthread_join(s->thread, NULL);
	s->joined = true;
	control_server.nviews--;
	/* The client stopped reading or left, or the daemon is stopping
	 * (the loop may not run again to flush an answer). */
	if (s->view_rc != 0 || control_server.stopped) {
		control_session_free(s);
		return;
	}
	control_result(s, strncmp(s->view->result, "ok", 2) == 0, "%s",
		       s->view->result);
	control_answer(s);
}

/* May S start a view?  At most CONTROL_VIEWS_MAX at once, 2 per uid, and
 * the last one kept for uids with write or delete (a slow reader of a big
 * listing holds a thread until it is done). */
static bool
control_query_room(const struct control_session *s)
{
	const struct control_session *o;
	unsigned mine = 0;

	if (control_server.nviews >= CONTROL_VIEWS_MAX)
		return false;
	for (o = control_server.sessions; o != NULL; o = o->next)
		mine += o->state == CS_VIEW && o->uid == s->uid;
	if (mine >= CONTROL_UID_VIEWS_MAX)
		return false;
	return control_server.nviews + 1 < CONTROL_VIEWS_MAX ||
	       (conf_rights_for_uid(control_server.conf, s->uid) &
		(CONF_RIGHT_WRITE | CONF_RIGHT_DELETE)) != 0;
}

/* Start the view's thread (its right is checked, its look on record). */
void
control_query_view_start(struct control_session *s)
{
	if (s->bev == NULL || control_server.stopped) {
		control_result(s, false, "err outpostd stopping");
		control_answer(s);
		return;
	}
	if (!control_query_room(s)) {
		control_result(s, false,
			       "err busy: listings running, try again");
		control_answer(s);
		return;
	}
	/* The suspensions the summary and show give are the scheduler's: read
	 * them here. */
	if (s->view->kind != CVK_LIST &&
	    (s->view->suspensions = control_query_suspensions()) == NULL) {
		control_result(s, false, "err out of memory");
		control_answer(s);
		return;
	}
	control_enter(s, CS_VIEW);
	s->view_fd = bufferevent_getfd(s->bev);
	s->joined = false;
	if (pthread_create(&s->thread, NULL, control_query_thread, s) != 0) {
		s->joined = true;
		control_result(s, false, "err cannot start a thread");
		control_answer(s);
		return;
	}
	control_server.nviews++;
}

void
control_query_run_view(struct control_session *s)
{
	if (s->audit) { /* headers: on record first (control_audit_done) */
		control_result(s, true, "ok");
		control_finish(s);
		return;
	}
	control_query_view_start(s);
}

void
control_query_run_suspensions(struct control_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char *buf, *line, *save = NULL;
	unsigned n = 0;

	if ((buf = control_query_suspensions()) == NULL) {
		control_result(s, false, "err out of memory");
		control_finish(s);
		return;
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		evbuffer_add_printf(out, "suspended %s\n", line);
		n++;
	}
	free(buf);
	control_result(s, true, "ok %u", n);
	control_finish(s);
}

/* status [json] ------------------------------------------------------------ */

/* The rates' window: one sample a second, the last minute's kept. */
#define CONTROL_RATE_WINDOW_S 60
#define CONTROL_RATE_SLOTS    (CONTROL_RATE_WINDOW_S + 1)

struct control_rate_sample {
	int64_t mono_ms;
	uint64_t accepted;  /* messages accepted (250 after commit) */
	uint64_t delivered; /* recipients delivered */
};

/* The sampler (control_query_rates_start) and the start times. */
static struct {
	struct event *timer;
	int64_t started_wall_ms, started_mono_ms;
	struct control_rate_sample s[CONTROL_RATE_SLOTS];
	unsigned next, n; /* ring: next slot written, samples held */
} R;

static void
control_rate_sample(void)
{
	struct control_rate_sample *x = &R.s[R.next];

	x->mono_ms = util_mono_ms();
	x->accepted = STATS_GET(messages_accepted);
	x->delivered = STATS_GET(delivered);
	R.next = (R.next + 1) % CONTROL_RATE_SLOTS;
	if (R.n < CONTROL_RATE_SLOTS)
		R.n++;
}

static void
control_rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 1, 0 };

	(void)fd;
	(void)what;
	(void)arg;
	control_rate_sample();
	evtimer_add(R.timer, &tv);
}

void
control_query_rates_start(struct event_base *base)
{
	struct timeval tv = { 1, 0 };

	memset(&R, 0, sizeof(R));
	R.started_wall_ms = util_wall_ms();
	R.started_mono_ms = util_mono_ms();
	control_rate_sample();
	/* Without the timer, status gives the rates since start. */
	if ((R.timer = evtimer_new(base, control_rate_cb, NULL)) != NULL)
		evtimer_add(R.timer, &tv);
}

void
control_query_rates_stop(void)
{
	if (R.timer != NULL)
		event_free(R.timer);
	R.timer = NULL;
}

/* Per second, from the oldest sample kept (at most a minute old) to now;
 * *WINDOW_S: the seconds that covers. */
static void
control_rates(double *accepted, double *delivered, double *window_s)
{
	const struct control_rate_sample *old =
	    &R.s[(R.next + CONTROL_RATE_SLOTS - R.n) % CONTROL_RATE_SLOTS];
	int64_t ms = util_mono_ms() - old->mono_ms;
	double s = ms > 0 ? (double)ms / 1000.0 : 1.0;

	*accepted = (double)(STATS_GET(messages_accepted) - old->accepted) / s;
	*delivered = (double)(STATS_GET(delivered) - old->delivered) / s;
	*window_s = s;
}

static const char *
control_tls_name(enum conf_tls_mode m)
{
	return m == CONF_TLS_NONE       ? "none"
	       : m == CONF_TLS_IMPLICIT ? "implicit"
					: "starttls";
}

/* S as one quoted JSON string onto OUT. */
static void
control_json_str(struct evbuffer *out, const char *s)
{
	char buf[2 * CONTROL_ARG_MAX + PATH_MAX];
	size_t off = 0;

	json_cat(buf, sizeof(buf), &off, s);
	evbuffer_add(out, buf, off);
}

/* The intake state as `outpost status` names it. */
static const char *
control_query_drain_state(void)
{
	switch (listen_intake_get()) {
	case LISTEN_INTAKE_STOPPED:
		return "intake stopped";
	case LISTEN_INTAKE_DRAINING:
		return "draining";
	default:
		return "running";
	}
}

/* One line of JSON (the `outpost status --json` object). */
static void
control_status_json(struct evbuffer *out, const struct conf *c,
		    const struct sched_totals *t, bool embedded)
{
	char started[32], loaded[32];
	double acc, del, win;
	size_t i;

	control_rates(&acc, &del, &win);
	json_time_fmt(R.started_wall_ms, true, started, sizeof(started));
	json_time_fmt(c->loaded_ms, true, loaded, sizeof(loaded));
	evbuffer_add_printf(out, "{\"version\":");
	control_json_str(out, OUTPOST_VERSION);
	evbuffer_add_printf(out,
			    ",\"started\":\"%s\",\"uptime_seconds\":%" PRId64
			    ",\"config\":{\"file\":",
			    started,
			    (util_mono_ms() - R.started_mono_ms) / 1000);
	if (embedded)
		evbuffer_add_printf(out, "null");
	else
		control_json_str(out, c->file);
	evbuffer_add_printf(out,
			    ",\"embedded_defaults\":%s,\"loaded\":\"%s\"},",
			    embedded ? "true" : "false", loaded);
	control_reload_json(out);
	evbuffer_add_printf(out, ",");
	control_point_json(out);
	evbuffer_add_printf(out, ",\"drain\":\"%s\",\"listeners\":[",
			    control_query_drain_state());
	for (i = 0; i < c->nlisteners; i++) {
		evbuffer_add_printf(out, "%s{\"address\":", i ? "," : "");
		control_json_str(out, c->listeners[i].name);
		evbuffer_add_printf(out, ",\"tls\":\"%s\",\"auth\":%s}",
				    control_tls_name(c->listeners[i].tls),
				    c->listeners[i].auth ? "true" : "false");
	}
	evbuffer_add_printf(
	    out,
	    "],\"queue\":{\"messages\":%" PRIu64 ",\"waiting\":%" PRIu64
	    ",\"active\":%" PRIu64 ",\"held\":%" PRIu64 ",\"corrupt\":%" PRIu64
	    ",\"recipients\":null},"
	    "\"rates\":{\"window_seconds\":%.3f,"
	    "\"messages_accepted_per_second\":%.3f,"
	    "\"recipients_delivered_per_second\":%.3f},"
	    "\"since_start\":{\"messages_accepted\":%" PRIu64
	    ",\"recipients_accepted\":%" PRIu64
	    ",\"recipients_delivered\":%" PRIu64
	    ",\"recipients_deferred\":%" PRIu64
	    ",\"recipients_bounced\":%" PRIu64
	    ",\"recipients_expired\":%" PRIu64 "}}\n",
	    t->messages, t->waiting, t->active, t->held, t->corrupt, win, acc,
	    del, STATS_GET(messages_accepted), STATS_GET(recipients_accepted),
	    STATS_GET(delivered), STATS_GET(deferred), STATS_GET(bounced),
	    STATS_GET(expired));
}

/* The table of `outpost status`; returns its lines. */
static unsigned
control_status_text(struct evbuffer *out, const struct conf *c,
		    const struct sched_totals *t, bool embedded)
{
	char started[32], loaded[32];
	double acc, del, win;
	int64_t up = (util_mono_ms() - R.started_mono_ms) / 1000;
	unsigned n = 0;
	size_t i;

	control_rates(&acc, &del, &win);
	json_time_fmt(R.started_wall_ms, false, started, sizeof(started));
	json_time_fmt(c->loaded_ms, false, loaded, sizeof(loaded));
#define ROW(...) (evbuffer_add_printf(out, __VA_ARGS__), n++)
	ROW("%-14s %s\n", "version", OUTPOST_VERSION);
	ROW("%-14s %" PRId64 "d %02" PRId64 ":%02" PRId64 ":%02" PRId64
	    " (started %s UTC)\n",
	    "uptime", up / 86400, up / 3600 % 24, up / 60 % 60, up % 60,
	    started);
	ROW("%-14s %s\n", "config", embedded ? "embedded defaults" : c->file);
	ROW("%-14s %s UTC\n", "loaded", loaded);
	n += control_reload_text(out);
	n += control_point_text(out);
	ROW("%-14s %s\n", "drain", control_query_drain_state());
	for (i = 0; i < c->nlisteners; i++)
		ROW("%-14s %s tls=%s auth=%s\n", "listener",
		    c->listeners[i].name, control_tls_name(c->listeners[i].tls),
		    c->listeners[i].auth ? "yes" : "no");
	ROW("%-14s %" PRIu64 " (waiting %" PRIu64 ", active %" PRIu64
	    ", held %" PRIu64 ", corrupt %" PRIu64 ")\n",
	    "messages", t->messages, t->waiting, t->active, t->held,
	    t->corrupt);
	ROW("%-14s %.3f/s messages accepted, %.3f/s recipients delivered "
	    "(last %.1f s)\n",
	    "rates", acc, del, win);
	ROW("%-14s %" PRIu64 " messages (%" PRIu64 " recipients) accepted; "
	    "recipients: %" PRIu64 " delivered, %" PRIu64 " deferred, %" PRIu64
	    " bounced, %" PRIu64 " expired\n",
	    "since start", STATS_GET(messages_accepted),
	    STATS_GET(recipients_accepted), STATS_GET(delivered),
	    STATS_GET(deferred), STATS_GET(bounced), STATS_GET(expired));
#undef ROW
	return n;
}

/* status [json] */
int
control_query_parse_status(struct control_session *s, char *args)
{
	char *w;

	while ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "json") != 0 || s->json) {
			control_result(s, false, "err usage: status [json]");
			return -1;
		}
		s->json = true;
	}
	return 0;
}

/* Everything is the daemon's own memory: answered at once, on the loop. */
void
control_query_run_status(struct control_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	const struct conf *c = control_reload_conf();
	bool embedded = strcmp(c->file, CONF_EMBEDDED_LABEL) == 0;
	struct sched_totals t;
	unsigned n = 1;

	sched_totals_get(&t);
	if (s->json)
		control_status_json(out, c, &t, embedded);
	else
		n = control_status_text(out, c, &t, embedded);
	control_result(s, true, "ok %u", n);
	control_finish(s);
}
