/*
 * control_int.h — between the files of mta/control:
 * - control.c (the socket, sessions, limits by uid, the command table that
 *   says who may run what, dispatch), control_audit.c (the audit record),
 *   control_admin.c (the change commands and the AUTH blocks) and
 *   control_query.c (ping, suspensions, and the views handed to a thread);
 * - control_query.c and control_view.c (what `outpost queue
 *   summary|list|show` print, computed in the daemon, which holds the queue
 *   and log-hash keys, so the CLI needs neither the keys nor access to the
 *   queue files), and between the views' files.
 */
#ifndef OUTPOST_MTA_CONTROL_INT_H
#define OUTPOST_MTA_CONTROL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue/archive.h"
#include "mta/control/control_proto.h"
#include "mta/deliver/delivery.h"

struct queue;
struct conf;
struct loop;
struct event_base;

/* ---- the sessions (control.c, control_audit.c, control_admin.c,
 * control_query.c); all on the delivery loop unless said ---- */

#define CONTROL_ARG_MAX     256 /* id, domain or user, NUL included */
#define CONTROL_DOMAIN_MAX  253
#define CONTROL_REASON_MAX  200 /* bytes of a suspension reason */
#define CONTROL_RESULT_MAX  320 /* the final answer line */
#define CONTROL_COMMAND_MAX (2 * CONTROL_LINE_MAX) /* scrubbed command */

enum control_state {
	CS_READ,  /* waiting for the command line */
	CS_RUN,   /* handed to the scheduler */
	CS_AUDIT, /* the audit record is being written (worker pool) */
	CS_VIEW,  /* a view thread writes to the socket (control_view.c) */
	CS_WRITE, /* the answer is being flushed; then the session ends */
	CS__COUNT
};

struct control_session;

#define CCF_AUDIT 0x1u /* recorded in the audit log, also when it works */
#define CCF_SEL   0x2u /* takes a selector (sched_admin) */
#define CCF_DEST  0x4u /* its argument is a destination domain */
#define CCF_VIEW  0x8u /* a view of the queue (control_view.c) */

/* One command: the right it needs is here and nowhere else. */
struct control_cmd {
	const char *verb;
	unsigned right;         /* CONF_RIGHT_* needed */
	unsigned flags;         /* CCF_* */
	enum sched_admin_op op; /* control_admin_run */
	int (*parse)(struct control_session *s, char *args);
	void (*run)(struct control_session *s);
};

struct control_session {
	struct bufferevent
	    *bev; /* NULL once dropped while a completion is due */
	enum control_state state;
	uid_t uid;
	pid_t pid;
	const struct control_cmd *cmd;
	bool refused; /* lacked the right: recorded, answered with err */
	/* the request */
	enum sched_admin_sel sel;
	char arg[CONTROL_ARG_MAX]; /* queue id (hex), domain or user */
	uint64_t id;               /* SAS_ID */
	uint64_t seconds;          /* suspend */
	bool respect_backoff;      /* retry, resume: the gentle form */
	char reason[CONTROL_REASON_MAX * 2];
	char command[CONTROL_COMMAND_MAX]; /* as received, scrubbed */
	/* the result */
	bool ok;
	int count; /* -1: none */
	char result[CONTROL_RESULT_MAX];
	bool audit;       /* this request is recorded (show … headers) */
	bool json;        /* status json */
	bool intake_only; /* drain intake-only */
	bool then_drain;  /* drain: stop the daemon once this session ends */
	bool retention;   /* purge: started by a user's retention clock */
	uint64_t history; /* purge: history records removed */
	struct control_view *view; /* CCF_VIEW: the request, then result */
	pthread_t thread;          /* the view's */
	bool joined;               /* its thread is joined already */
	int view_rc;               /* control_view_run()'s */
	int view_fd;               /* the socket, written by the view */
	struct control_xfer *xfer; /* export, import (control_xfer.c) */
	int audit_status;          /* 0 written (or no audit log), -1 failed */
	char audit_err[160];
	struct control_session *prev, *next;
};

/* What the command files share of the server (control.c owns it). */
struct control_server {
	bool stopped; /* control_stop() ran: the worker pool may be gone */
	const struct conf *conf;
	struct queue *queue;
	struct loop *loop; /* the delivery loop */
	struct control_session *sessions;
	unsigned nsessions;
	unsigned nviews; /* view threads running */
};

extern struct control_server control_server;

/*
 * control.c, for the command files:
 * control_session_new  a session of UID with no socket (bev NULL), linked
 *                      in; NULL when out of memory
 * control_session_free unlink and free S, its socket and its view
 * control_result       the final answer line ("ok …" / "err …"), no LF
 * control_enter        the only writer of S->state
 * control_answer       send S->result, end the session once flushed
 * control_finish       the result is known: record it if it must be
 *                      (control_audit_run on the pool), then answer
 * control_word         the next space-separated word of *P, NUL-terminated
 *                      in place, or NULL
 * control_domain_ok    is S a host name?  copied lower-case, without a
 *                      trailing dot, into OUT
 */
struct control_session *control_session_new(uid_t uid);
void control_session_free(struct control_session *s);
void control_result(struct control_session *s, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void control_enter(struct control_session *s, enum control_state st);
void control_answer(struct control_session *s);
void control_finish(struct control_session *s);
char *control_word(char **p);
bool control_domain_ok(const char *s, char *out, size_t outlen);

/*
 * control_reload.c:
 * control_reload_run     `reload`: hand it to the main thread; the session
 *                        waits in CS_RUN for control_reload_done
 * control_reload_conf    the configuration in force (the last reload's, or
 *                        the start's), for `status`
 * control_reload_text    the `status` row of the last reload onto OUT;
 *                        returns the rows written (1)
 * control_reload_json    its "reload":{…} member (null: none) onto OUT
 */
struct evbuffer;
void control_reload_run(struct control_session *s);
const struct conf *control_reload_conf(void);
unsigned control_reload_text(struct evbuffer *out);
void control_reload_json(struct evbuffer *out);

/*
 * control_point.c:
 * control_point_run      `restore-point`: ask the restore thread; the
 *                        session waits in CS_RUN for its answer
 * control_point_text     the `status` row of the last point onto OUT;
 *                        returns the rows written (1)
 * control_point_json     its "restore_point":{…} member (null: none)
 */
void control_point_run(struct control_session *s);
unsigned control_point_text(struct evbuffer *out);
void control_point_json(struct evbuffer *out);

/*
 * control_suppress.c: `suppress-list|add|remove|check`.
 * control_suppress_parse       the request into S (see the file)
 * control_suppress_run_list    the entries, walked on the worker pool
 * control_suppress_run_check   the entry the RCPT check would find
 * control_suppress_run_change  add or remove; answered once committed
 * control_suppress_audit_text  what the audit record says of the request
 *                              (hashes only) into OUT
 */
int control_suppress_parse(struct control_session *s, char *args);
void control_suppress_run_list(struct control_session *s);
void control_suppress_run_check(struct control_session *s);
void control_suppress_run_change(struct control_session *s);
void control_suppress_audit_text(const struct control_session *s, char *out,
				 size_t len);

/*
 * control_audit.c:
 * control_audit_init     remember PATH (NULL or "": no audit log), make its
 *                        directory (0700) and check the file opens (0600);
 *                        0, or -1 with a message in ERR.  At start-up.
 * control_audit_command_make  S->command: what the logs record of the
 *                        command, rebuilt from what was parsed (PARSED)
 * control_audit_run      write S's record and EV_ADMIN event: worker pool
 *                        (or the loop once stopped); reads S's request and
 *                        result only, which the loop leaves alone in
 *                        CS_AUDIT
 * control_audit_done     its completion (delivery loop): answer, or start
 *                        the view whose look is now on record
 * control_audit_coalesced one record for many refusals of UID, with no
 *                        session behind it
 */
int control_audit_init(const char *path, char *err, size_t errlen);
void control_audit_command_make(struct control_session *s, bool parsed);
void control_audit_run(void *arg);
void control_audit_done(void *arg);
void control_audit_coalesced(uid_t uid, const char *command, const char *fmt,
			     ...) __attribute__((format(printf, 3, 4)));

/*
 * control_admin.c: the change commands (hold, release, retry, delete,
 * bounce through sched_admin; suspend, resume through sched_suspend and
 * sched_resume: each answers once its change is visible) and
 * the AUTH blocks (auth-blocks, auth-unblock), intake (drain,
 * resume-intake).  Parsers fill S's request
 * and return 0, or set an "err" result and return -1; runners end with
 * control_finish (control_admin_run from the scheduler's callback).
 */
int control_admin_parse_sel(struct control_session *s, char *args);
int control_admin_parse_retry(struct control_session *s, char *args);
int control_admin_parse_suspend(struct control_session *s, char *args);
int control_admin_parse_resume(struct control_session *s, char *args);
int control_admin_parse_auth_unblock(struct control_session *s, char *args);
int control_admin_parse_drain(struct control_session *s, char *args);
void control_admin_run(struct control_session *s);
/* control_admin_cb — a sched_admin completion (ARG: the session): its
 * count or error is the result; control_finish. */
void control_admin_cb(unsigned count, const char *err, void *arg);
void control_admin_run_drain(struct control_session *s);
void control_admin_run_resume_intake(struct control_session *s);
void control_admin_run_suspend(struct control_session *s);
void control_admin_run_auth_blocks(struct control_session *s);
void control_admin_run_auth_unblock(struct control_session *s);
/* control_admin_user_arg — KW "user" (ARGS: the name, spaces allowed) or
 * "user-hex" (ARGS: its bytes in hex) into S->arg, S->sel = SAS_USER; 0,
 * or -1 with an "err" result. */
int control_admin_user_arg(struct control_session *s, const char *kw,
			   const char *args);

/*
 * control_purge.c: `purge user NAME` (the user's queued messages through
 * the scheduler, SA_PURGE, then its history: mta/observe/history.h),
 * answered "purged MESSAGES RECORDS" and "ok MESSAGES"; the same purge is
 * started by the retention clock of a user removed from the configuration.
 * control_purge_stop (control_stop) ends the clock.
 */
int control_purge_parse(struct control_session *s, char *args);
void control_purge_run(struct control_session *s);
void control_purge_stop(void);

/*
 * control_watchdog.c: watchdog-status, watchdog-history (read) and
 * watchdog-release (write); control_watchdog_start (control_start)
 * registers the action of a stop (hold, audited as the daemon's own).
 */
int control_watchdog_parse_status(struct control_session *s, char *args);
int control_watchdog_parse_history(struct control_session *s, char *args);
int control_watchdog_parse_release(struct control_session *s, char *args);
void control_watchdog_run_status(struct control_session *s);
void control_watchdog_run_history(struct control_session *s);
void control_watchdog_run_release(struct control_session *s);
void control_watchdog_start(void);

/*
 * control_scan.c: scan-status (read), scan-flush (write, audited);
 * control_scan_start (control_start) records each detection in the audit
 * log, once per user a minute.
 */
int control_scan_parse_status(struct control_session *s, char *args);
void control_scan_run_status(struct control_session *s);
void control_scan_run_flush(struct control_session *s);
void control_scan_start(void);

/*
 * control_xfer.c: export and import.  The parser fills S->xfer (and for
 * export S->sel, S->arg); control_xfer_run hands the session to the
 * transfer's thread (CS_VIEW: it owns the socket until its stage ends).
 */
struct control_xfer {
	bool import, remove;
	bool failed;   /* err says why: the answer */
	uint64_t *ids; /* export: ids named or selected; import: ids read */
	size_t nids, capids;
	int fd;                          /* the archive (SCM_RIGHTS), or -1 */
	uint8_t key[QUEUE_KEY_BYTES];    /* wiped at free */
	struct archive_params params;    /* export: the header's */
	struct sched_export_item *items; /* export: claimed; the first
					    nwritten are in the archive */
	size_t nitems, nwritten;
	unsigned nbusy;      /* export: selected, not taken (busy, damaged) */
	uint64_t unreadable; /* export: gone or damaged when written */
	uint64_t nadded, nskipped, nfailed, nwritefail; /* import */
	int64_t max_age_ms; /* import: delivery.max_age when it began */
	uint8_t archive_id[ARCHIVE_ID_BYTES];
	char archive_hex[2 * ARCHIVE_ID_BYTES + 1];
	atomic_bool cancel; /* set by control_stop */
	char err[CONTROL_RESULT_MAX - 8];
};
int control_xfer_parse(struct control_session *s, char *args);
void control_xfer_run(struct control_session *s);
void control_xfer_free(struct control_xfer *x);

/*
 * control_query.c: the read commands (ping, suspensions, status, summary,
 * list, show).  control_query_view_start starts S's view thread once its right
 * is checked and its look on record (the answer comes from its
 * completion).
 */
int control_query_parse_view(struct control_session *s, char *args);
void control_query_run_ping(struct control_session *s);
void control_query_run_suspensions(struct control_session *s);
void control_query_run_view(struct control_session *s);
void control_query_view_start(struct control_session *s);
int control_query_parse_status(struct control_session *s, char *args);
void control_query_run_status(struct control_session *s);
/* control_query_rates_start — status's rates: sample the counters every
 * second on BASE (the delivery loop's); control_query_rates_stop ends it.
 * Called by control_start and control_stop. */
void control_query_rates_start(struct event_base *base);
void control_query_rates_stop(void);

/* ---- between control_query.c and the views (control_view.c) ---- */

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
