/*
 * control_reload.c — `reload` (the configuration read again; answered with
 * what changed, or why the file was refused) and the last reload's record
 * for `status`.
 *
 * Owns: that record and a reference to the configuration it loaded.  The
 * reload itself is main.c's (main thread): the session waits in CS_RUN for
 * control_reload_done, which comes back through loop_post.  Delivery loop
 * thread, but for control_reload_done (any thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conf/conf.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"

/* What control_reload_done hands to the loop. */
struct control_reload_answer {
	struct control_session *s; /* NULL: a SIGHUP's, recorded only */
	bool ok;
	int64_t at_ms;
	char *text;              /* lines; the last is the result's */
	const struct conf *conf; /* the new configuration (a reference) */
};

static struct {
	void (*fn)(void *token); /* control_reload_hook */
	int64_t last_ms;         /* 0: none since start */
	bool last_ok;
	char last[CONTROL_RESULT_MAX];
	const struct conf *conf; /* the last one loaded (a reference), or
				    NULL: control_server.conf */
} R;

void
control_reload_hook(void (*fn)(void *token))
{
	R.fn = fn;
}

void
control_reload_run(struct control_session *s)
{
	if (R.fn == NULL) {
		control_result(s, false, "err reload is not available");
		control_finish(s);
		return;
	}
	log_info("control uid %u: reload", (unsigned)s->uid);
	control_enter(s, CS_RUN);
	R.fn(s);
}

/* Delivery loop: record A, answer its session (data lines, then the
 * result: "ok LINES" or "err TEXT"). */
static void
control_reload_answer_cb(void *arg)
{
	struct control_reload_answer *a = arg;
	struct control_session *s = a->s;
	char *line, *next, *last;
	unsigned n = 0;

	last = strrchr(a->text, '\n');
	last = last != NULL ? last + 1 : a->text;
	if (a->conf != NULL) {
		conf_unref(R.conf);
		R.conf = a->conf;
	}
	R.last_ms = a->at_ms;
	R.last_ok = a->ok;
	snprintf(R.last, sizeof(R.last), "%s", a->ok ? a->text : last);
	if ((line = strchr(R.last, '\n')) != NULL)
		*line = '\0'; /* the first line says it all */
	if (s != NULL) {
		for (line = a->text; a->ok && line != NULL; line = next) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			if (s->bev != NULL)
				evbuffer_add_printf(
				    bufferevent_get_output(s->bev), "%s\n",
				    line);
			n++;
		}
		if (a->ok)
			control_result(s, true, "ok %u", n);
		else
			control_result(s, false, "err %s", last);
		s->count = a->ok ? 1 : 0;
		control_finish(s);
	}
	free(a->text);
	free(a);
}

void
control_reload_done(void *token, bool ok, const char *text,
		    const struct conf *c)
{
	struct control_reload_answer *a;

	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (a->text = strdup(text)) == NULL)
		fatal("malloc");
	a->s = token;
	a->ok = ok;
	a->at_ms = util_wall_ms();
	a->conf = conf_ref(c);
	loop_post(control_server.loop, control_reload_answer_cb, a);
}

const struct conf *
control_reload_conf(void)
{
	return R.conf != NULL ? R.conf : control_server.conf;
}

unsigned
control_reload_text(struct evbuffer *out)
{
	char at[32];

	if (R.last_ms == 0) {
		evbuffer_add_printf(out, "%-14s %s\n", "reload",
				    "none since start");
		return 1;
	}
	json_time_fmt(R.last_ms, false, at, sizeof(at));
	evbuffer_add_printf(out, "%-14s %s UTC %s: %s\n", "reload", at,
			    R.last_ok ? "ok" : "failed", R.last);
	return 1;
}

void
control_reload_json(struct evbuffer *out)
{
	char at[32], buf[2 * CONTROL_RESULT_MAX + 3];
	size_t off = 0;

	if (R.last_ms == 0) {
		evbuffer_add_printf(out, "\"reload\":null");
		return;
	}
	json_time_fmt(R.last_ms, true, at, sizeof(at));
	json_cat(buf, sizeof(buf), &off, R.last);
	evbuffer_add_printf(out,
			    "\"reload\":{\"at\":\"%s\",\"ok\":%s,"
			    "\"result\":%.*s}",
			    at, R.last_ok ? "true" : "false", (int)off, buf);
}

void
control_reload_free(void)
{
	conf_unref(R.conf);
	R.conf = NULL;
}
