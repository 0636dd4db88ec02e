/*
 * delivery.h — the delivery half as the rest of the daemon sees it: the
 * scheduler's entry points (start, new messages, shutdown, operators'
 * changes, gauges).  Its insides are in sched_int.h; the SMTP client it
 * drives has its own interface (smtp_client.h).
 *
 * Everything here belongs to the delivery loop's thread unless it says
 * otherwise.
 */
#ifndef OUTPOST_MTA_DELIVERY_H
#define OUTPOST_MTA_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "queue/queue.h"

struct loop;

/* Scheduler ----------------------------------------------------------- */

struct dns_config;

/* What the scheduler is given to start with; every pointer outlives it
 * (until sched_free). */
struct sched_config {
	struct loop *loop; /* the delivery loop (the scheduler's: loop 0) */
	const struct conf *conf;
	struct queue *queue;
	SSL_CTX *ssl_ctx; /* the client context (tls_client_ctx_new) */
	/* the resolver's settings (a resolver of its own is made on LOOP);
	 * NULL: no DNS at all (loopback-only tests without a server) */
	const struct dns_config *dns;
	bool loopback_only; /* connect to loopback addresses only */
};

/* sched_init — set the scheduler up from SC (SSL_CTX gets session
 * resumption: smtp_client_tls_init).  0, or -1 with err.  Main thread,
 * before the delivery loop runs. */
int sched_init(const struct sched_config *sc, char *err, size_t errlen);
/*
 * sched_reconf — a reload: C (referenced until the next one) replaces the
 * configuration on the delivery loop at its next turn.  Messages in a
 * round keep their pool by name; each destination re-reads its limits and
 * route, so the next delivery attempt follows C; connections already open
 * finish what they started.  Main thread.
 */
void sched_reconf(const struct conf *c);
/* sched_start — post the start-up work (load the queue) to every shard's
 * loop. */
void sched_start(void);
/* sched_ready — FN(ARG) is posted to loop 0 once every shard has loaded
 * the first step of the queue (all of a small one).  Main thread, before
 * sched_start. */
void sched_ready(void (*fn)(void *arg), void *arg);
/*
 * sched_loops_start — start the delivery loops beside loop 0
 * (delivery.threads - 1 threads, named deliverN: each a shard of the
 * scheduler, or with a cluster loop 0's connections).  0, or -1 (errno).
 * Main thread, once, with the signal mask the loops should have.
 */
int sched_loops_start(void);
/* sched_loops_flush — every delivery loop's mailbox (loop 0's too) run,
 * each under its own shard, until all are empty: a worker's completion
 * may reach a loop after it ended.  Main, after worker_stop(); sched_free
 * does it again, to be safe on every path. */
void sched_loops_flush(void);
/* sched_loops_stop — stop and join them (their last jobs run).  Main
 * thread, after the scheduler's loop has ended (every connection closed),
 * before sched_free. */
void sched_loops_stop(void);
/* The wait after an attempt when delivery.retry_intervals is empty. */
#define SCHED_RETRY_DEFAULT_MS 300000
/*
 * sched_retry_interval_ms — the retry schedule: how long a recipient that
 * has had ATTEMPTS attempts waits before the next one, before jitter
 * (delivery.retry_intervals, its last interval repeated).  The one place the
 * schedule is read: the scheduler adds jitter to it, the queue summary takes
 * it back from a due time to date the last attempt.  Pure; any thread.
 */
uint64_t sched_retry_interval_ms(const struct conf_delivery *d,
				 unsigned attempts);
/* sched_message_add — a message just committed (QOP_INSERT done): the
 * scheduler takes OP (envelope and body) and frees it.  Any thread. */
void sched_message_add(struct queue_op *op);
/* sched_shutdown — on the delivery loop: stop starting transactions; let
 * those in flight end (or cut them at the deadline); stop the loop once every
 * result is committed. */
void sched_shutdown(unsigned deadline_ms);
/* Operators' changes (the control socket) ------------------------------ */

enum sched_admin_op {
	SA_HOLD,     /* stop delivery attempts until released */
	SA_RELEASE,  /* undo hold: due now */
	SA_DELETE,   /* remove from the queue, no DSN */
	SA_BOUNCE,   /* fail every pending recipient (DSN to the sender), then
			remove */
	SA_RETRY,    /* due now (deferred or not), past its destination's
			back-off */
	SA_DUE,      /* due now, but a paused destination (back-off,
			suspension) keeps its pause: the message waits it out
			in place (`--respect-backoff`) */
	SA_EXPORTED, /* claimed by an export whose archive is on disk:
			removed, no DSN, an "exported" event (sched_export) */
	SA_PURGE,    /* as SA_DELETE, each message logged as purged (a
			user's data removed: `outpost purge --user`) */
};

enum sched_admin_sel {
	SAS_ID,     /* ARG: one queue id (16 hex digits) */
	SAS_DOMAIN, /* ARG: messages with a pending recipient in this domain */
	SAS_USER,   /* ARG: messages submitted by this user ("": by relay
		       clients, no user) */
	SAS_ALL,    /* every message (ARG ignored) */
};

/* Called on the delivery loop: COUNT messages changed, or ERR (NULL on
 * success). */
typedef void sched_admin_fn(unsigned count, const char *err, void *arg);

/*
 * sched_admin — apply OP to the messages SEL/ARG selects.  A damaged record
 * (SM_CORRUPT) is held: SA_DELETE removes it, SA_RELEASE has it read again,
 * SA_BOUNCE leaves it (there is no envelope to bounce); SAS_ALL selects from
 * memory (no envelope is read).  CB runs once the change is visible to the
 * next reader: applied in memory and its queue writes committed (a
 * bounce's DSN queued too).  A message in the middle of a round of
 * attempts takes the change when the round settles: CB waits for that
 * too, up to SCHED_ADMIN_WAIT_MS, then answers anyway (the change still
 * applies at the settle).  Selecting by domain or user reads the envelopes
 * on the worker pool (never on the loop).  Delivery loop thread; CB later
 * on the same loop.
 */
void sched_admin(enum sched_admin_op op, enum sched_admin_sel sel,
		 const char *arg, sched_admin_fn *cb, void *cbarg);

/* Queue export and import (`outpost queue export|import`) -------------- */

/* A message an export takes, as the scheduler knows it: its schedule
 * entry is the truth about its hold and due time (an envelope's may be
 * stale: QOP_RESCHED moves the entry only). */
struct sched_export_item {
	uint64_t id;
	int64_t due_ms;
	bool held;
};

/*
 * sched_export_claim — the messages an export takes: IDS (N of them), or
 * every message (ALL).  With REMOVE each is claimed (SM_EXPORT): out of
 * the schedule, left alone by operators' changes, until
 * sched_export_remove or sched_export_release; a message in the middle
 * of a delivery attempt, damaged, or being removed already is not taken
 * and is counted in *SKIPPED (it stays here; export it again later).
 * Without REMOVE, a copy: every known message but damaged ones (skipped).
 * Each shard takes its own; CB (ARG) then hears, on the caller's loop:
 * RC 0 and OUT (malloc'd, N items, in id order: the callback's), or -1 out
 * of memory (nothing claimed, OUT NULL).  IDS is copied.  Delivery loop.
 */
typedef void sched_export_claim_fn(int rc, struct sched_export_item *out,
				   size_t n, unsigned skipped, void *arg);
void sched_export_claim(const uint64_t *ids, size_t n, bool all, bool remove,
			sched_export_claim_fn *cb, void *arg);
/* sched_export_release — the export failed: its claimed messages go back
 * as they were (held, or due at their time), each on its shard.
 * Delivery loop. */
void sched_export_release(const struct sched_export_item *items, size_t n);
/*
 * sched_export_remove — the archive holding ITEMS is on disk: remove them
 * from the queue (no DSN; an "exported" delivery-log event each); CB as
 * sched_admin's once the removal is committed.  Delivery loop.
 */
void sched_export_remove(const struct sched_export_item *items, size_t n,
			 sched_admin_fn *cb, void *cbarg);

/*
 * An import: messages from an archive added to this queue with their ids,
 * creation time (so their expiry), flags (the held bit) and recipients'
 * state and attempts; due at once unless held.  Everything here is called
 * from the importing thread (never a loop: it waits for the writer); the
 * scheduler learns of each message after its commit (sched_message_add).
 */
struct sched_import;
/* sched_import_new — NULL when out of memory. */
struct sched_import *sched_import_new(void);
/*
 * sched_import_add — queue ENV (its members taken over and ENV zeroed)
 * and BODY (LEN bytes, malloc'd, taken over).  Waits while
 * SCHED_IMPORT_INFLIGHT messages are not committed yet.  0 submitted, 1
 * skipped (its id is queued already), -1 out of memory.
 */
int sched_import_add(struct sched_import *im, struct queue_envelope *env,
		     uint8_t *body, size_t len);
/* sched_import_end — wait for every commit; the counts: ADDED committed,
 * SKIPPED already queued, FAILED not written (queue full, error; their
 * reason logged).  IM is freed. */
void sched_import_end(struct sched_import *im, uint64_t *added,
		      uint64_t *skipped, uint64_t *failed);
/*
 * sched_import_seen — has archive ID been imported here?  1 (with *WHEN_MS
 * its import time), 0, or -1 with err.  sched_import_remember — it was,
 * at NOW: kept (the queue's "state" database, QS_IMPORTED) until UNTIL_MS.
 */
int sched_import_seen(const uint8_t id[16], int64_t *when_ms, char *err,
		      size_t errlen);
int sched_import_remember(const uint8_t id[16], int64_t until_ms);

/*
 * sched_suspend — suspend deliveries to DOMAIN for MS milliseconds (0 =
 * resume: sched_resume past any back-off, nobody waiting for its
 * messages), whatever its reply patterns say; REASON is shown by `outpost
 * queue summary`.  0, or -1 with err.  Delivery loop thread.
 */
int sched_suspend(const char *domain, uint64_t ms, const char *reason,
		  char *err, size_t errlen);

/*
 * sched_resume — end an operator's suspension of DOMAIN and make its
 * messages due now.  Without RESPECT_BACKOFF, past any pause of its site
 * as well (a back-off, a reply-pattern suspension: SA_RETRY); with it, a
 * backed-off site keeps its back-off and the messages wait it out in place
 * (SA_DUE).  CB (CBARG) as sched_admin's, for those messages; it may run
 * before this returns.  0, or -1 with ERR (CB not called).  Delivery loop
 * thread.
 */
int sched_resume(const char *domain, bool respect_backoff, sched_admin_fn *cb,
		 void *cbarg, char *err, size_t errlen);

/*
 * sched_suspensions — the suspended destinations as text lines
 * "DOMAIN UNTIL_MS REASON\n" into BUF (NUL-terminated); returns the length
 * it needed.  Delivery loop thread.
 */
size_t sched_suspensions(char *buf, size_t len);

/* sched_metrics_text — the scheduler's gauges (queue by state: waiting,
 * active, held, corrupt; outbound connections, busiest destinations) and
 * outpost_queue_corrupt_total (damaged records found since start) as
 * exposition text, refreshed every second; a metrics_text_fn.  Any thread. */
size_t sched_metrics_text(char *buf, size_t len);
/* sched_metrics_user_forget — drop USER's series of the per-user result
 * counters (its data purged); 1 when it had one, else 0.  Delivery loop
 * thread. */
unsigned sched_metrics_user_forget(const char *user);
/* The queue as the scheduler counts it in memory (sched_totals_get). */
struct sched_totals {
	uint64_t messages; /* every message it knows of */
	uint64_t waiting;  /* for their next attempt: deferred, or due now */
	uint64_t active;   /* in a delivery attempt (or being read for one) */
	uint64_t held;     /* held, by an operator or as corrupt */
	uint64_t corrupt;  /* held because their record is damaged */
};
/* sched_totals_get — the counts above into T, exact at the call (no
 * walk: counters the scheduler keeps).  Delivery loop thread. */
void sched_totals_get(struct sched_totals *t);
/* sched_queued — messages the scheduler knows of (waiting or in a round);
 * main thread after the loop ended, or the loop's thread. */
uint64_t sched_queued(void);
/* sched_free — release everything; main thread, after the loop ended. */
void sched_free(void);

#endif
