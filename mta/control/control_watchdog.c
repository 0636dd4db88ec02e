/*
 * control_watchdog.c — the watchdog's commands (watchdog-status,
 * watchdog-history: read; watchdog-release: write, audited) and the
 * action of a stop: the identity's queued mail held through the
 * scheduler, recorded in the audit log as the daemon's own.
 * Owns: nothing past a session.  Must not: write an identity in clear in
 * the audit log (recorded as "user hash:", as every user), or decide a
 * stop (mta/observe/watchdog.c does).
 * Threads: the delivery loop; control_watchdog_on_stop hands over to it
 * from whichever thread stopped the identity.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conf/conf.h"
#include "mta/control/control_int.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/observe/evlog.h"
#include "mta/observe/watchdog.h"

/* The scheduler's selector of IDENTITY's messages: its user name, or ""
 * (the messages without a user) for the relay identity. */
static const char *
control_watchdog_sel_arg(const char *identity)
{
	const struct conf *c = control_server.conf;

	if (c->relay_identity != NULL &&
	    strcmp(identity, c->relay_identity) == 0 &&
	    conf_user_find(c, identity) == NULL)
		return "";
	return identity;
}

/* A stop ------------------------------------------------------------------- */

/* What to hold: the identity's mail, or one message of it (a stop's
 * late comer, ID not 0). */
struct control_watchdog_hold {
	uint64_t id;
	bool release; /* another node released it: its held mail goes */
	char name[];
};

/* Delivery loop: hold the stopped identity's mail (ARG: what). */
static void
control_watchdog_hold(void *arg)
{
	struct control_watchdog_hold *h = arg;
	struct control_session *s;
	char hex[QUEUE_HASH_HEX_BYTES], qid[QUEUE_ID_HEX_BYTES];

	if (control_server.stopped ||
	    (s = control_session_new(getuid())) == NULL) {
		log_warnx(
		    "watchdog: %s: its queued mail not held (%s)", h->name,
		    control_server.stopped ? "shutting down" : "out of memory");
		free(h);
		return;
	}
	s->pid = getpid();
	s->audit = true;
	evlog_hash(h->name, hex);
	if (h->release) {
		s->sel = SAS_USER;
		snprintf(s->arg, sizeof(s->arg), "%s",
			 control_watchdog_sel_arg(h->name));
		snprintf(s->command, sizeof(s->command),
			 "release user hash:%s (watchdog release on another "
			 "node)",
			 hex);
		snprintf(s->reason, sizeof(s->reason), "watchdog release");
		free(h);
		control_enter(s, CS_RUN);
		sched_admin(SA_RELEASE, s->sel, s->arg, control_admin_cb, s);
		return;
	}
	if (h->id != 0) {
		s->sel = SAS_ID;
		s->id = h->id;
		queue_id_format(h->id, qid);
		snprintf(s->arg, sizeof(s->arg), "%s", qid);
		snprintf(s->command, sizeof(s->command),
			 "hold id %s (watchdog stop of user hash:%s)", qid,
			 hex);
	} else {
		s->sel = SAS_USER;
		snprintf(s->arg, sizeof(s->arg), "%s",
			 control_watchdog_sel_arg(h->name));
		snprintf(s->command, sizeof(s->command),
			 "hold user hash:%s (watchdog stop)", hex);
	}
	snprintf(s->reason, sizeof(s->reason), "watchdog stop");
	free(h);
	control_enter(s, CS_RUN);
	sched_admin(SA_HOLD, s->sel, s->arg, control_admin_cb, s);
}

/* The watchdog's stop hook: any thread; hands the hold to the loop. */
static void
control_watchdog_on_stop(const char *identity, const char *signals, uint64_t id,
			 void *arg)
{
	struct control_watchdog_hold *h;
	size_t n = strlen(identity);

	(void)signals;
	(void)arg;
	if (control_server.loop == NULL ||
	    (h = malloc(sizeof(*h) + n + 1)) == NULL) {
		log_warnx("watchdog: %s: its queued mail not held", identity);
		return;
	}
	h->id = id;
	h->release = false;
	memcpy(h->name, identity, n + 1);
	loop_post(control_server.loop, control_watchdog_hold, h);
}

/* Another node released IDENTITY (watchdog_remote): any thread; hands the
 * release of its held mail to the loop. */
static void
control_watchdog_on_release(const char *identity)
{
	struct control_watchdog_hold *h;
	size_t n = strlen(identity);

	if (control_server.loop == NULL ||
	    (h = malloc(sizeof(*h) + n + 1)) == NULL) {
		log_warnx("watchdog: %s: its held mail not released", identity);
		return;
	}
	h->id = 0;
	h->release = true;
	memcpy(h->name, identity, n + 1);
	loop_post(control_server.loop, control_watchdog_hold, h);
}

void
control_watchdog_start(void)
{
	watchdog_stop_hook(control_watchdog_on_stop, NULL);
	watchdog_release_hook(control_watchdog_on_release);
}

/* The commands ------------------------------------------------------------- */

/*
 * [json] [learn] [user NAME | user-hex HEX]: flags first (a user name may
 * hold spaces: it is the rest of the line).  NEED_USER: the user is
 * required.
 */
static int
control_watchdog_parse(struct control_session *s, char *args, bool need_user,
		       bool learn_ok)
{
	char *w;

	s->arg[0] = '\0';
	s->sel = SAS_ALL;
	while ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "json") == 0)
			s->json = true;
		else if (learn_ok && strcmp(w, "learn") == 0)
			snprintf(s->reason, sizeof(s->reason),
				 "learn the new pattern");
		else if ((strcmp(w, "user") == 0 ||
			  strcmp(w, "user-hex") == 0) &&
			 *args != '\0')
			return control_admin_user_arg(s, w, args);
		else
			goto usage;
	}
	if (!need_user)
		return 0;
usage:
	control_result(s, false,
		       "err usage: %s [json]%s %suser NAME | user-hex HEX%s",
		       s->cmd->verb, learn_ok ? " [learn]" : "",
		       need_user ? "" : "[", need_user ? "" : "]");
	return -1;
}

int
control_watchdog_parse_status(struct control_session *s, char *args)
{
	return control_watchdog_parse(s, args, false, false);
}

int
control_watchdog_parse_history(struct control_session *s, char *args)
{
	return control_watchdog_parse(s, args, true, false);
}

int
control_watchdog_parse_release(struct control_session *s, char *args)
{
	return control_watchdog_parse(s, args, true, true);
}

/* watchdog-status, watchdog-history: the report as data lines. */
static void
control_watchdog_report(struct control_session *s, bool history)
{
	size_t len, count;
	char *text;

	text = watchdog_report(s->sel == SAS_USER ? s->arg : NULL, history,
			       s->json, &len, &count);
	if (text == NULL) {
		control_result(s, false, "err out of memory");
	} else if (count == 0 && s->sel == SAS_USER) {
		control_result(s, false,
			       "err no watchdog profile for that "
			       "identity");
	} else {
		if (s->bev != NULL)
			evbuffer_add(bufferevent_get_output(s->bev), text, len);
		control_result(s, true, "ok %zu", count);
	}
	free(text);
	control_finish(s);
}

void
control_watchdog_run_status(struct control_session *s)
{
	control_watchdog_report(s, false);
}

void
control_watchdog_run_history(struct control_session *s)
{
	control_watchdog_report(s, true);
}

/* watchdog-release: the identity goes again, then its held mail. */
void
control_watchdog_run_release(struct control_session *s)
{
	int rc = watchdog_release(s->arg, s->reason[0] != '\0');

	if (rc < 0) {
		control_result(s, false,
			       "err no watchdog profile for that "
			       "identity");
		control_finish(s);
		return;
	}
	control_enter(s, CS_RUN);
	/* S may be gone when this returns: the callback can run at once. */
	sched_admin(SA_RELEASE, SAS_USER, control_watchdog_sel_arg(s->arg),
		    control_admin_cb, s);
}
