/*
 * control_point.c — `restore-point` (a restore point now, answered once it
 * is on disk), the `status` row of the last point, and the restore
 * thread's metrics.
 * Owns: nothing; the restore thread is main.c's (control_point_hook).
 * Must not: wait for the point on the loop: the session waits in CS_RUN
 * and the thread's answer comes back through loop_post.
 * Threads: delivery loop, but for the thread's callback and
 * control_point_metrics_text (any thread).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"

static struct queue_point_thread *point_thread; /* control_point_hook */

/* What the restore thread hands back to the loop. */
struct control_point_answer {
	struct control_session *s;
	int status;
	struct queue_point_info pi;
	char err[CONTROL_RESULT_MAX];
};

void
control_point_hook(struct queue_point_thread *t)
{
	point_thread = t;
}

/* Delivery loop: the point is on disk (or failed): answer. */
static void
control_point_answer_cb(void *arg)
{
	struct control_point_answer *a = arg;
	struct control_session *s = a->s;

	if (a->status == 0) {
		if (s->bev != NULL)
			evbuffer_add_printf(
			    bufferevent_get_output(s->bev),
			    "point %s size %" PRIu64 " messages %" PRIu64
			    " recipients %" PRIu64 " duration_ms %" PRId64
			    " verified %s\n",
			    a->pi.name, a->pi.size, a->pi.messages,
			    a->pi.recipients, a->pi.duration_ms,
			    a->pi.verified ? "yes" : "no");
		control_result(s, true, "ok 1");
		s->count = 1;
	} else {
		control_result(s, false, "err %s", a->err);
	}
	control_finish(s);
	free(a);
}

/* Restore thread: hand the result to the loop. */
static void
control_point_done(int status, const struct queue_point_info *pi,
		   const char *err, void *arg)
{
	struct control_point_answer *a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		fatal("calloc");
	a->s = arg;
	a->status = status;
	if (pi != NULL)
		a->pi = *pi;
	(void)snprintf(a->err, sizeof(a->err), "%s", err != NULL ? err : "");
	loop_post(control_server.loop, control_point_answer_cb, a);
}

void
control_point_run(struct control_session *s)
{
	if (point_thread == NULL) {
		control_result(s, false, "err restore points are not running");
		control_finish(s);
		return;
	}
	log_info("control uid %u: restore-point", (unsigned)s->uid);
	control_enter(s, CS_RUN);
	if (queue_point_thread_request(point_thread, control_point_done, s) !=
	    0) {
		control_result(s, false, "err out of memory");
		control_finish(s);
	}
}

/* The last point, or false when none was taken since start. */
static bool
control_point_last(struct queue_point_stats *st)
{
	if (point_thread == NULL)
		return false;
	queue_point_thread_stats(point_thread, st);
	return st->have_last;
}

unsigned
control_point_text(struct evbuffer *out)
{
	struct queue_point_stats st;
	char at[32];

	if (!control_point_last(&st)) {
		evbuffer_add_printf(out, "%-14s none since start\n",
				    "restore point");
		return 1;
	}
	json_time_fmt(st.last.time_ms, false, at, sizeof(at));
	evbuffer_add_printf(
	    out,
	    "%-14s %s (%s UTC, %" PRId64 " s ago): %" PRIu64
	    " messages, %" PRIu64 " bytes, %" PRId64 " ms%s; %" PRIu64
	    " taken, %" PRIu64 " failed since start\n",
	    "restore point", st.last.name, at,
	    (util_wall_ms() - st.last.time_ms) / 1000, st.last.messages,
	    st.last.size, st.last.duration_ms,
	    st.last.verified ? "" : ", NOT verified", st.taken, st.failed);
	return 1;
}

void
control_point_json(struct evbuffer *out)
{
	struct queue_point_stats st;
	char at[32];

	if (!control_point_last(&st)) {
		evbuffer_add_printf(out, "\"restore_point\":null");
		return;
	}
	json_time_fmt(st.last.time_ms, true, at, sizeof(at));
	evbuffer_add_printf(
	    out,
	    "\"restore_point\":{\"name\":\"%s\",\"at\":\"%s\",\"size\":%" PRIu64
	    ",\"messages\":%" PRIu64 ",\"recipients\":%" PRIu64
	    ",\"duration_ms\":%" PRId64 ",\"verified\":%s,\"taken\":%" PRIu64
	    ",\"failed\":%" PRIu64 "}",
	    st.last.name, at, st.last.size, st.last.messages,
	    st.last.recipients, st.last.duration_ms,
	    st.last.verified ? "true" : "false", st.taken, st.failed);
}

/* One metric family: HELP, TYPE and its samples, appended at *O. */
static int control_point_family(char *buf, size_t len, size_t *o,
				const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
control_point_family(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(*o < len ? buf + *o : NULL, *o < len ? len - *o : 0, fmt,
		      ap);
	va_end(ap);
	if (w < 0)
		return -1;
	*o += (size_t)w;
	return 0;
}

size_t
control_point_metrics_text(char *buf, size_t len)
{
	struct queue_point_stats st;
	size_t o = 0;
	int64_t age;

	if (point_thread == NULL)
		return 0;
	queue_point_thread_stats(point_thread, &st);
	age = st.have_last ? (util_wall_ms() - st.last.time_ms) / 1000 : -1;
	if (control_point_family(
		buf, len, &o,
		"# HELP outpost_restore_points_total Restore points, by "
		"result (unverified: taken, but a record did not open).\n"
		"# TYPE outpost_restore_points_total counter\n"
		"outpost_restore_points_total{result=\"taken\"} %" PRIu64 "\n"
		"outpost_restore_points_total{result=\"failed\"} %" PRIu64 "\n"
		"outpost_restore_points_total{result=\"unverified\"} %" PRIu64
		"\n"
		"# HELP outpost_restore_points_removed_total Restore points "
		"removed by retention (and leftovers of interrupted ones).\n"
		"# TYPE outpost_restore_points_removed_total counter\n"
		"outpost_restore_points_removed_total %" PRIu64 "\n"
		"# HELP outpost_restore_copies_failed_total Copies to "
		"restore.copy_to that failed.\n"
		"# TYPE outpost_restore_copies_failed_total counter\n"
		"outpost_restore_copies_failed_total %" PRIu64 "\n",
		st.taken, st.failed, st.unverified, st.removed,
		st.copies_failed) != 0 ||
	    control_point_family(
		buf, len, &o,
		"# HELP outpost_restore_commands_total restore.command runs, "
		"by result.\n"
		"# TYPE outpost_restore_commands_total counter\n"
		"outpost_restore_commands_total{result=\"ok\"} %" PRIu64 "\n"
		"outpost_restore_commands_total{result=\"failed\"} %" PRIu64
		"\n"
		"outpost_restore_commands_total{result=\"killed\"} %" PRIu64
		"\n"
		"outpost_restore_commands_total{result=\"skipped\"} %" PRIu64
		"\n",
		st.commands_ok, st.commands_failed, st.commands_killed,
		st.commands_skipped) != 0 ||
	    control_point_family(
		buf, len, &o,
		"# HELP outpost_restore_point_last_duration_seconds Time the "
		"last restore point took (copy, walk, manifest).\n"
		"# TYPE outpost_restore_point_last_duration_seconds gauge\n"
		"outpost_restore_point_last_duration_seconds %.3f\n"
		"# HELP outpost_restore_point_last_bytes Size of the last "
		"restore point.\n"
		"# TYPE outpost_restore_point_last_bytes gauge\n"
		"outpost_restore_point_last_bytes %" PRIu64 "\n"
		"# HELP outpost_restore_point_last_age_seconds Age of the "
		"last restore point (-1: none since start).\n"
		"# TYPE outpost_restore_point_last_age_seconds gauge\n"
		"outpost_restore_point_last_age_seconds %" PRId64 "\n",
		(double)st.last.duration_ms / 1000, st.last.size, age) != 0)
		return 0;
	return o;
}
