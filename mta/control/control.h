/*
 * control.h — outpostd's control socket: how `outpost` (and operators'
 * scripts) change the queue while the daemon runs, so that the scheduler
 * stays the only writer of what it schedules (Postfix showq, KumoMTA's
 * admin API).
 *
 * Transport: a Unix stream socket at conf->control.socket, mode 0660
 * (owner and group of the daemon; give operators the group, or chown it).
 * The caller is identified by the kernel (SO_PEERCRED), never by what it
 * says; its uid's rights come from conf_rights_for_uid().
 *
 * Protocol: control_proto.h (shared with the CLI): one command line per
 * connection, data lines, then one final "ok" or "err" line.
 *
 * Limits: a uid with no right is answered "err permission denied" and
 * closed at accept; one uid holds at most 8 sessions; the last 16 of the
 * CONTROL_SESSIONS_MAX are kept for uids with write or delete; past 10
 * refused commands a minute, a uid is answered "err too many refused
 * commands" and the rest of the minute is recorded as one line.
 *
 * Audit: every change command, every `show … headers` and every refusal is
 * appended to conf->log.audit_file (0600, O_APPEND, fsync'd; one JSON
 * object per line: time, time_ms, uid, user, command, result), before the
 * answer is sent, and emits an EV_ADMIN event to the delivery log.  The
 * command is recorded as parsed, never as received: a user (an address,
 * a VERP sender) as hash:HASH (evlog_hash), an unparsable line by its verb. The
 * file is opened for each record (changes are rare), so logrotate needs no
 * signal; the daemon rotates it itself at UTC midnight (mta/core/logkeep.h,
 * control_audit_rotated).  Reads (ping, suspensions) are not recorded.
 *
 * Threads: everything runs on the delivery loop (the scheduler's); the
 * audit record (getpwuid_r, write, fsync) is written on the worker pool, so
 * the loop never waits for the disk.
 */
#ifndef OUTPOST_MTA_CONTROL_H
#define OUTPOST_MTA_CONTROL_H

#include <stddef.h>

#include "mta/control/control_proto.h"

#define CONTROL_SESSIONS_MAX 64 /* at once; more are answered "err busy" */
#define CONTROL_VIEWS_MAX    4  /* summary/list/show threads at once */
#define CONTROL_VIEW_TIME_MAX_MS                                               \
	600000 /* a view's whole answer; its read transaction is open */
#define CONTROL_SUSPEND_MAX_S                                                  \
	31536000 /* longest suspension, seconds (365 days) */

struct loop;
struct conf;
struct queue;

/*
 * control_start — create the control socket at c->control.socket (a stale
 * socket there is removed; a live one — another outpostd — or a file that
 * is not a socket is an error; its directory must exist), make the parent
 * directory of c->log.audit_file (0700) and check that the audit file can be
 * opened (created 0600), and serve the socket on DLOOP's event base.
 * C must stay valid until control_stop() (and, for commands still in flight
 * then, until the delivery loop is freed).  Call once, on DLOOP's thread,
 * after sched_init() and with the worker pool running.  Returns 0, or -1
 * with a message in err.
 */
int control_start(struct loop *dloop, const struct conf *c, struct queue *q,
		  char *err, size_t errlen);

/*
 * control_audit_rotated — the audit file was renamed (the daemon's own
 * rotation): returns once every record that opened the old file is written,
 * so the keeper may compress it; later records open a new file.  ARG is
 * unused (logkeep_reopen_fn).  Blocks for one write and fsync: the log
 * keeper's thread, never a loop.
 */
void control_audit_rotated(void *arg);

/*
 * control_stop — stop listening, remove the socket file, drop the sessions
 * that wait for nothing.  A change already handed to the scheduler is still
 * recorded in the audit log when it completes (its session is freed then;
 * loop_free() of the delivery loop runs what is left).  Delivery loop
 * thread, at shutdown, before sched_shutdown(); a no-op if control_start()
 * did not succeed.
 */
void control_stop(void);

/*
 * control_purge_start — the retention clock of users' data: the users kept
 * in Q (QS_USER records) are compared with C's; a user no longer
 * configured gets removed_at = now, one configured again loses it (both
 * logged, and kept in Q); at start and hourly, on the delivery loop, a
 * user removed retention.user_data ago or more is purged as by `purge
 * user` (logged, and recorded in the audit log as the daemon's own), and
 * its record forgotten; the history stores are swept of what is older
 * than retention.history (on the pool).  Main thread, after
 * control_start() and sched_start(), before the loops run.  0, or -1 with
 * err.
 */
int control_purge_start(const struct conf *c, struct queue *q, char *err,
			size_t errlen);

/*
 * control_purge_reconf — compare the users of C (a reload's configuration,
 * now in force) with the clocks, as at start; retention's durations are
 * C's from now on.  Main thread.
 */
void control_purge_reconf(const struct conf *c);

/*
 * control_drain_hook — FN stops the daemon as SIGTERM does; `drain` calls
 * it on the delivery loop once its answer is written (or its client left).
 * FN must only hand the stop to another thread.  Main thread, before the
 * loops run.
 */
void control_drain_hook(void (*fn)(void));

/*
 * control_reload_hook — FN(TOKEN) asks for a reload; `reload` calls it on
 * the delivery loop.  FN must only hand the work to the main thread, which
 * answers with control_reload_done(TOKEN, …).  Main thread, before the
 * loops run.
 */
void control_reload_hook(void (*fn)(void *token));

/*
 * control_point_hook — T serves `restore-point` (NULL: the command answers
 * that restore points are not running).  Main thread, before the loops
 * run; T must outlive control_stop() and the delivery loop's last job.
 */
struct queue_point_thread;
void control_point_hook(struct queue_point_thread *t);

/* control_point_metrics_text — the restore thread's metrics (restore
 * points taken/failed, commands by result, the last point's duration,
 * bytes and age) as a metrics_text_fn.  Any thread. */
size_t control_point_metrics_text(char *buf, size_t len);

/*
 * control_reload_done — a reload ended: OK and TEXT (lines: what changed
 * and its warnings, or on failure the reason, "file:line: message"); C the
 * configuration now in force when it worked (referenced for `status`),
 * else NULL.  TOKEN: the session FN was given, or NULL for a reload asked
 * by SIGHUP (then it is only recorded).  Any thread.
 */
void control_reload_done(void *token, bool ok, const char *text,
			 const struct conf *c);

/* control_reload_free — drop what the reloads left (main thread, after
 * the delivery loop ended). */
void control_reload_free(void);

#endif
