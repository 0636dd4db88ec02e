/*
 * control_int.h — between control.c (the socket, rights, audit) and
 * control_view.c (what `outpost queue summary|list|show` print, computed
 * in the daemon, which holds the queue and log-hash keys, so the CLI needs
 * neither the keys nor access to the queue files).
 */
#ifndef OUTPOST_MTA_CONTROL_INT_H
#define OUTPOST_MTA_CONTROL_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue;
struct conf;

#define CONTROL_VIEW_RESULT_MAX 320

enum control_view_kind { CVK_SUMMARY, CVK_LIST, CVK_SHOW };

/* One view: filled on the delivery loop, run on a thread of its own. */
struct control_view {
	enum control_view_kind kind;
	bool json;
	bool held, deferred; /* list: only held / only deferred messages */
	bool headers;        /* show: the header block (export right) */
	char domain[256];    /* list: only this recipient domain ("": any) */
	uint64_t id;         /* show */
	char *suspensions;   /* summary: sched_suspensions()'s lines (owned) */
	atomic_bool cancel;  /* set by the loop (shutdown): stop soon */
	char result[CONTROL_VIEW_RESULT_MAX]; /* final line: "ok N" | "err …" */
};

/*
 * control_view_run — walk the queue (read transactions only) and write the
 * view's data lines to FD (a connected, non-blocking stream socket: each
 * write waits at most CONTROL_TIMEOUT_MS for room, so a client that stops
 * reading ends the view, and a large listing streams without being held in
 * memory).  The final line is left in V->result, for the loop to send.
 * Returns 0, or -1 when FD failed (client gone: no final line to send).
 * A view thread (never an I/O loop: a big queue takes seconds to walk).
 */
int control_view_run(struct queue *q, const struct conf *conf, int fd,
		     struct control_view *v);

/* ---- between the views' files (control_view.c, control_summary.c) ---- */

#include <stdio.h>

struct queue_envelope;

#define CV_OK         0
#define CV_ERR        1
#define CV_DOMAIN_MAX 255

/* One view being computed. */
struct cv {
	FILE *f; /* onto the client's socket */
	struct queue *queue;
	const struct conf *conf;
	struct control_view *v;
	bool json, held, deferred, headers;
	const char *domain;  /* list --domain, or NULL */
	bool failed;         /* the result is an error already */
	unsigned long count; /* lines (list) or rows (summary) sent */
};

/* A JSON object written field by field. */
struct cv_json {
	FILE *f;
	bool first;
};

/*
 * Where a message stands is in the schedule index, not in its envelope: the
 * daemon moves only the index entry when it holds, releases or reschedules
 * (QOP_RESCHED), so an envelope's flags and next attempt may be stale.
 */
struct cv_sched {
	uint64_t id;
	int64_t due_ms;
	bool held;
};

struct cv_sched_index {
	struct cv_sched *v; /* sorted by id */
	size_t n, cap;
};

/*
 * Helpers of the views (control_view.c), all on the view's thread (or the
 * summary's walking threads, which only read C and the index):
 * cv_errx      the first error becomes the final line ("err …")
 * cv_stopped   the client left, or the daemon stops: end the walk
 * cv_text_put  peer bytes as a JSON string or for a terminal (escaped)
 * cv_json_*    a JSON object, field by field, onto J->f
 * cv_sched_load the schedule index, sorted by id (free x->v); 0 or -1
 * cv_env_state held bit and due time of ENV: the index's, else its own
 * cv_domain_of a recipient's domain, lower-case; cv_age_fmt "3h05m"
 */
void cv_errx(struct cv *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool cv_stopped(const struct cv *c);
void cv_text_put(FILE *f, const char *s, bool json);
void cv_json_begin(struct cv_json *j, FILE *f);
void cv_json_key(struct cv_json *j, const char *key);
void cv_json_str(struct cv_json *j, const char *key, const char *v);
void cv_json_end(struct cv_json *j);
int cv_sched_load(struct cv *c, struct cv_sched_index *x, const char *what);
void cv_env_state(const struct queue_envelope *env, const struct cv_sched *e,
		  bool *held, int64_t *due_ms);
void cv_domain_of(const char *addr, char *out, size_t outlen);
void cv_age_fmt(int64_t ms, char *buf, size_t size);
void cv_json_u64(struct cv_json *j, const char *key, uint64_t v);
void cv_json_i64(struct cv_json *j, const char *key, int64_t v);

/* queue summary (control_summary.c): the view's lines; CV_OK or CV_ERR. */
int cv_queue_summary(struct cv *c);

#endif
