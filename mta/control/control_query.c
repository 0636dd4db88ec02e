/*
 * control_query.c — the commands that only read (control_int.h): ping,
 * suspensions (the scheduler's, read on the loop), and the views of the
 * queue (summary, list, show), each walked on a thread of its own
 * (control_view_run) that writes onto the client's socket.
 * Owns: the view threads (at most CONTROL_VIEWS_MAX, CONTROL_UID_VIEWS_MAX
 * a uid).  Must not: check rights (control.c's command table did, and the
 * look at headers is on record before its thread starts).
 * Threads: the delivery loop; control_query_thread on its own thread,
 * which touches only its session's view and socket until it posts back.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/deliver/delivery.h"
#include "mta/core/loop.h"

#define CONTROL_UID_VIEWS_MAX 2 /* views of one uid at once */

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
