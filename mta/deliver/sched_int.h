/*
 * sched_int.h — the scheduler's private header: its objects, its one state
 * (struct sched), and the calls its files make of each other.  Only
 * mta/deliver/sched*.c include it; the rest of the daemon sees delivery.h.
 *
 * Vocabulary (KumoMTA/Postfix qmgr):
 *   message  a queued message (struct sched_msg), with its envelope
 *   dest     a recipient domain; it resolves to a site
 *   site     the set of MX hosts (or a route); domains with the same MX set
 *            share one site, hence its connections (MX roll-up)
 *   path     a site as seen from one source pool: connections, limits,
 *            rate, back-off and the FIFO of jobs live here
 *   job      one transaction's worth: a message and some of its recipients
 *            (all of one dest, at most max_recipients_per_transaction)
 *
 * Files: scheduler.c (state, paths and connections, start and stop),
 * sched_msg.c (messages, the retry heap, queue writes, DSNs), sched_round.c
 * (a round of attempts: read, start, settle), sched_job.c (jobs and their
 * results), sched_dest.c (destinations, MX, routes, sites), sched_limit.c
 * (limits, rate, back-off, reply-pattern suspensions), sched_admin.c
 * (operators' changes), sched_metrics.c (gauges), sched_heap.c (the retry
 * heap's array), sched_park.c (messages held in place while their
 * destination is paused).
 *
 * Everything here belongs to its shard's delivery loop thread (sched),
 * but for the gauges' snapshot (gauge_mu), the counts sched_totals_get
 * reads and what sched_share.c shares.  Files added for the shards:
 * sched_shard.c (which shard owns a message; changes spread and gathered;
 * MTA-STS from any shard), sched_share.c (a destination's limits between
 * shards).
 */
#ifndef OUTPOST_MTA_SCHED_INT_H
#define OUTPOST_MTA_SCHED_INT_H

#include <sys/queue.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "conf/conf.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "mta/core/htab.h"
#include "mta/deliver/delivery.h"
#include "mta/deliver/mtasts.h"
#include "mta/deliver/outcome.h"
#include "mta/observe/metrics_top.h"
#include "mta/deliver/sched_heap.h"
#include "mta/deliver/smtp_client.h"

/* Rounds in flight at once (envelopes in memory): a restart with a
 * million due messages must not read them all at once
 * (delivery.max_messages_in_memory, over every shard: each its part). */
#define SCHED_MAX_ACTIVE sched_max_active()
/* A path's line of waiting jobs is held to what it delivered in
 * SCHED_LINE_SECONDS (measured over windows of SCHED_RATE_WINDOW_MS while
 * its line never ran dry), and never below SCHED_LINE_MIN: the messages
 * past it wait parked, without a round, so that one slow or rate-limited
 * destination cannot take every round and starve the others. */
#define SCHED_LINE_SECONDS   30
#define SCHED_LINE_MIN       64
#define SCHED_RATE_WINDOW_MS 2000
/* A path the cluster turned away (at its connection limit) asks again
 * after this long, or when one of its own connections ends. */
#define SCHED_LEASE_RETRY_MS 200
/* A new message's body up to SCHED_BODY_KEEP_BYTES is kept, as committed,
 * for its first round, so that the first attempt neither reads nor opens
 * it again; all kept bodies together stay under SCHED_BODY_KEEP_TOTAL
 * (past it, or for a larger body, delivery reads the queue).  4 MiB, not
 * 8: the 100 KB relay then peaks 2-4 MiB lower, and reads about one body
 * in nine back from the queue at no measurable CPU. */
#define SCHED_BODY_KEEP_BYTES (256 * 1024)
#define SCHED_BODY_KEEP_TOTAL (4 * 1024 * 1024)

struct event;
struct loop;
struct metrics_text;
struct dns_resolver;
struct sched_park;

/*
 * What a message costs while it waits: this stub (about 40 bytes and a heap
 * slot).  Its envelope and body are read back from the queue only for a
 * round of attempts (struct sched_round) and dropped when it settles, so a
 * queue of a million recipients stays small in memory.
 */
struct sched_msg {
	uint64_t id;
	int64_t due_ms;          /* next attempt; also its key in "sched" */
	struct sched_round *r;   /* during a round, else NULL */
	struct sched_park *park; /* held in place by a paused destination */
	uint32_t heap_idx;       /* in the retry heap, or UINT32_MAX */
	uint32_t park_idx;       /* its place in park */
	uint16_t flags;          /* SM_* */
	uint8_t writes;          /* queue ops in flight */
};

#define SM_LOADING    0x01u /* envelope being read by a worker */
#define SM_DELETED    0x02u /* final: freed when the last op returns */
#define SM_HELD       0x04u /* held: not scheduled */
#define SM_FORCE      0x08u /* operator: try now, past a back-off */
#define SM_HOLD_REQ   0x10u /* operator: hold once the round settles */
#define SM_DELETE_REQ 0x20u /* operator: delete (no DSN) at settle */
#define SM_BOUNCE_REQ 0x40u /* operator: bounce every pending recipient */
/* Its record is damaged (QUEUE_CORRUPT): held in memory (SM_HELD too), never
 * read again unless an operator releases it; `delete` removes it, `bounce`
 * cannot (no envelope to bounce to).  Not written to disk: the next start
 * finds it again, once. */
#define SM_CORRUPT 0x80u
/* Claimed by an export with --remove: out of the heap and the parks (or
 * held), untouched by operators' changes, until the archive is on disk
 * (then removed: SA_EXPORTED) or the export failed (sched_export_release). */
#define SM_EXPORT 0x100u

struct sched_round {
	struct queue_envelope env;
	const struct conf_pool *pool;
	unsigned inflight; /* jobs not finished */
	uint32_t *bounced; /* rcpt indexes that failed this round */
	unsigned nbounced;
	unsigned nadmin; /* the last of bounced[]: bounced by an operator */
	bool kept;       /* a failed rcpt kept pending: no memory to list it */
	/* a job found the body damaged (QUEUE_CORRUPT) as it sent it: why;
	 * the round settles as a damaged record read at its start would */
	char *corrupt;
	/* the body as committed, kept for the first round of a new message
	 * (SCHED_BODY_KEEP_BYTES), or NULL: jobs read the queue.  Read-only
	 * while jobs run; wiped and freed with the round */
	uint8_t *body;
	size_t body_len;
	size_t body_charge; /* what it counts in sched->body_kept */
	bool tried;         /* a recipient got a result (an attempt, a DSN) */
	struct sched_park *park;       /* a job met a paused destination here */
	char **remote;                 /* per rcpt: the host that answered */
	uint32_t nremote;              /* remote's length (env may be gone) */
	uint8_t *category;             /* per rcpt: the bounce category (enum
					  conf_bounce_category) of this round's failure,
					  for the DSN; NULL until one */
	struct sched_msg *prev, *next; /* the active list */
};

/*
 * A job: what the SMTP client sees of it (cj: its recipients' addresses,
 * results and what the client learned, in cj.nrcpt entries) and the
 * scheduler's own.  Valid while its round is (msg->r).
 */
struct sched_job {
	struct smtp_client_job cj;
	struct sched_msg *msg;
	struct sched_dest *dest;
	struct sched_path *path;
	uint32_t *rcpt;     /* cj.nrcpt indexes into msg->r->env.rcpts */
	const char **addrs; /* their addresses (cj.rcpts) */
	/* the body, a chunk at a time as the client sends it (cj.body_arg):
	 * a job holds at most one decrypted chunk, never the message */
	struct queue_body_reader *body;
	/* or the round's kept body (sched_round.body), handed out whole once */
	const uint8_t *kept;
	size_t kept_len;
	bool kept_sent;
	int body_rc;             /* its failure (queue_body_next), 0 if none */
	char body_err[200];      /* and why */
	struct sched_conn *conn; /* the connection running it */
	/* its connection had begun to leave when the job reached it: back
	 * unsent, results untouched (sched_conn.c) */
	bool unsent;
	struct sched_job *next;
};

/* The job whose client part is P (what the done callback gives back). */
#define SCHED_JOB_OF(p)                                                        \
	((struct sched_job *)(void *)((char *)(p)-offsetof(struct sched_job,   \
							   cj)))

/*
 * Messages held in place while a destination is paused (a path's back-off
 * or reply-pattern suspension, an operator's suspension): out of the retry
 * heap, their due time and queue record untouched, so a pause costs no
 * write, no delivery-log line and no counter per message.  The timer
 * releases each one when its time in the queue runs out (it then expires
 * with its DSN) and all at until_ms: an operator's suspension's end, or
 * for a path, a last resort after its probes (sched_limit_unpause).
 */
struct sched_park_ent {
	struct sched_msg *m;
	int64_t expires_ms;
};

struct sched_park {
	struct sched_park_ent *v; /* a min-heap on expires_ms */
	uint32_t n, cap;
	int64_t until_ms;        /* 0: only by its owner (sched_park_release) */
	struct event *timer;     /* made on first use */
	_Atomic uint32_t *total; /* N counted over every shard as well (a
				    path's share record), or NULL */
};

/*
 * A delivery loop that holds connections (sched_conn.c): loop 0 is the
 * scheduler's own (sched->loop), the others are made for delivery.threads.
 */
struct sched_outbox;

struct sched_cloop {
	struct loop *loop;
	struct smtp_client_env env; /* its clients': its base, its resolver */
	unsigned nconn;             /* scheduler: connections placed here */
	/* what loop 0 hands this loop (down) and this loop hands loop 0
	 * (up): batched, one post per loop turn (sched_conn.c); NULL for
	 * loop 0 itself */
	struct sched_outbox *down, *up;
	/* its resolver's counters, copied on its own loop once a second
	 * (sched_metrics_dns asks) and read on loop 0, under sched->gauge_mu */
	struct dns_stats dns_snap;
};

/*
 * A connection as the scheduler sees it.  The client itself lives on its
 * home loop and only that loop's thread touches C; the scheduler decides
 * everything (limits, slots, which job) on loop 0 and hands the home loop
 * what to do through its mailbox.  Freed on the home loop, after the
 * scheduler has heard it closed, so nothing posted to it is ever late.
 */
struct sched_conn {
	struct sched_path *path; /* scheduler */
	struct sched_cloop *home;
	struct smtp_client *c;       /* home loop; NULL once closed */
	struct smtp_client_target t; /* home loop: what it opens */
	uint64_t lease;              /* scheduler: its cluster lease, or 0 */
	unsigned msgs;               /* scheduler: jobs given to it */
	unsigned out;                /* scheduler: of those, not back yet */
	bool quitting;               /* scheduler: told to go */
	bool closed;                 /* scheduler: its closed report came */
	/* how it closed (home loop, before it tells the scheduler) */
	bool failed;
	enum outcome_stage stage;
	int code;
	char *text;
	const char *tls_failure; /* smtp_client_tls_failure at the close */
	bool dane;               /* smtp_client_dane at the close */
};

struct sched_site {
	char *key;
	struct smtp_client_host *hosts; /* MX hosts, or a route's host */
	unsigned nhosts;
	unsigned port;
	bool implicit; /* the domain itself, no MX */
	/* an MTA-STS policy's site (its key ends "|sts=MODE:DOMAIN"): its
	 * hosts are those the policy allows (enforce), its connections verify
	 * the certificate (enforce) or report it (testing) */
	enum mtasts_mode sts_mode;
	bool dane; /* its MX answer was validated (dns.dnssec): DANE per
		      host (its key ends "|dane:DOMAIN") */
	char *policy_domain;       /* with a policy (STS or DANE): the recipient
				      domain whose policy it is (TLS reports);
				      never changes once made */
	struct sched_path **paths; /* one per pool in use */
	unsigned npaths;
};

struct sched_path {
	struct sched_site *site;
	const struct conf_pool *pool; /* NULL: no source binding */
	const struct conf_destination *cfg;
	struct sched_job *head, *tail;
	unsigned njobs;
	unsigned nconn;           /* connections open or opening */
	unsigned nbusy;           /* connections running a job */
	unsigned nquitting;       /* of nconn, told to go */
	struct sched_conn **idle; /* idle connections, last parked last */
	unsigned nidle, idle_cap;
	unsigned source_next;     /* round robin over pool sources */
	int64_t paused_until_ms;  /* back-off or suspension */
	int64_t connect_after_ms; /* no new connection before (failures) */
	unsigned backoff_level;
	unsigned conn_failures; /* consecutive */
	bool suspended;         /* by a reply pattern */
	bool paused;            /* a pause was announced (logged) */
	bool pause_quiet;       /* it was another shard's: it said it */
	struct sched_park park; /* messages waiting out the pause, or for
				   room in the line (SCHED_LINE_SECONDS) */
	/* jobs done since rate_ms; the last full window's rate (a second;
	 * < 0: not measured); the line ran dry during this window */
	int64_t rate_ms;
	unsigned rate_done;
	double rate;
	bool rate_dry;
	char last_error[200]; /* what paused it, scrubbed */
	/* adaptive back-off (destination throttle_*): steps down, when the
	 * last ends (then one step back each throttle_for), when the last
	 * was taken, and the rate measured before the first (a second; < 0:
	 * none), which a destination without a rate of its own is held to */
	unsigned throttle_level;
	int64_t throttle_until_ms, throttle_step_ms;
	double throttle_base_rate;
	int64_t next_send_ms; /* rate limit: next message allowed */
	int64_t next_send_hour_ms;
	int64_t next_send_day_ms; /* the pool's warm-up budget of the day */
	struct event *timer;      /* wake-up for pause / rate */
	/* cluster { }: a lease asked of Redis (one at a time), one granted
	 * and not yet used by a connection, no new ask before lease_retry_ms
	 * (the cluster was at the limit) */
	bool lease_asking;
	uint64_t lease_spare;
	int64_t lease_retry_ms;
	/* cluster { }, with a rate: a message asked of Redis, one granted
	 * and not yet sent, none before rate_wait_ms (Redis said so) */
	bool rate_asking;
	unsigned rate_tokens;
	int64_t rate_wait_ms;
	/* its limits as every shard sees them (sched_share.c), or NULL with
	 * one shard */
	struct sched_share *share;
	/* Waiting for a slot under delivery.max_connections (sched->waiting),
	 * and holding idle connections (sched->idlers): scheduler.c. */
	TAILQ_ENTRY(sched_path) wait_link, idle_link;
	bool waiting, idling;
};

/* DEST_POLICY: its MTA-STS policy is asked (mtasts_get), then its MX. */
enum sched_dest_state {
	DEST_NEW,
	DEST_POLICY,
	DEST_RESOLVING,
	DEST_READY,
	DEST_FAILED
};

struct sched_dest {
	char *domain;
	const struct conf_destination *cfg;
	enum sched_dest_state state;
	int64_t expires_ms;
	struct sched_site *site;
	int fail_code; /* DEST_FAILED: 451 (retry) or 550 (bounce) */
	char fail_text[200];
	struct sched_job *waiting;
	struct dns_query *q;
	int64_t suspended_until_ms; /* by an operator */
	char *suspend_reason;
	struct sched_park park; /* messages waiting out the suspension */
	char *ace; /* the A-label form of an internationalized domain, for
		      DNS (the U-label form is what the recipient carries) */
	/* its MTA-STS policy as of the last resolution (mode MTASTS_NONE:
	 * none in force), what went wrong getting it, and whether no MX
	 * host matched it (enforce: DEST_FAILED) */
	struct sched_sts *sts_q;
	struct mtasts_policy sts;
	enum mtasts_fail sts_fail;
	bool sts_nomatch;
	bool dane_missing; /* tls = dane-only and the MX answer was not
			      validated (DEST_FAILED) */
	uint64_t sts_gen;  /* mtasts_generation of the answer; 0: not asked */
};

struct sched_admin_job;

/* A shard's gauges as of its last second (sched_metrics.c), under its
 * gauge_mu: loop 0's composes every shard's into the exposition text. */
struct sched_snap {
	uint64_t waiting, active, held, corrupt, corrupt_total;
	uint64_t nconn, bodies_kept, bodies_read;
	uint64_t oldest_id; /* its oldest message, 0: none */
	/* connections by destination (a site's first MX host) and by pool,
	 * the labels its own (malloc'd) */
	struct metrics_gauge *conns, *pools;
	size_t nconns, npools;
	struct dns_stats dns; /* its resolver's (a shard's own) */
};

/* The scheduler's state: one per shard (sched_shard.c), the first
 * defined in scheduler.c. */
struct sched_load;

struct sched {
	unsigned index; /* in sched_shards */
	struct loop *loop;
	const struct conf *conf;
	struct queue *queue;
	struct dns_resolver *dns; /* NULL: no DNS (sched_config.dns) */
	/* the delivery loops (delivery.threads; [0] is LOOP itself) and
	 * their clients' settings: sched_conn.c */
	struct sched_cloop *cloops;
	unsigned ncloops;
	struct htab dests, sites;
	struct idmap ids; /* every message in memory, by queue id */
	uint64_t nheld;
	uint64_t nparked;          /* held in place by a paused destination */
	uint64_t ncorrupt;         /* held because their record is damaged */
	uint64_t corrupt_total;    /* damaged records found since start */
	struct event *gauge_timer; /* refreshes the metrics snapshot */
	pthread_mutex_t gauge_mu;
	char *gauges;           /* exposition text of the scheduler's gauges */
	struct sched_heap heap; /* messages waiting for their due time */
	struct event *retry_timer;
	/* Queue writes of this loop turn, handed to the writer together at
	 * its end (wq_flush, made active by the first): one lock on the
	 * writer's list per turn, not one per settled message. */
	struct queue_batch wq;
	struct event *wq_flush;
	/* Envelope loads of this turn, for the pool in batches (sched_round.c:
	 * loads_flush, made active by the first, sends the rest). */
	struct sched_load *loads, **loads_tail;
	unsigned nloads;
	struct event *loads_flush;
	unsigned nconn;
	/* Paths turned away by delivery.max_connections, in turn; paths with
	 * idle connections, the longest idle first: a slot that ends goes to
	 * the first waiter, and a waiter takes an idler's slot. */
	TAILQ_HEAD(, sched_path) waiting, idlers;
	unsigned writes;
	uint64_t nmsgs;
	bool stopping;
	struct sched_msg *active; /* messages in a round (with r) */
	unsigned nactive, nloading;
	/* bytes of kept bodies, and of those on their way to the brain
	 * (SCHED_BODY_KEEP_TOTAL); any thread, sched_main's for all shards */
	_Atomic size_t body_kept;
	/* first attempts' bodies sent from memory, and bodies opened in the
	 * queue (outpost_delivery_bodies_total{from}) */
	uint64_t bodies_kept, bodies_read;
	/* operators' changes applied here whose effect is not visible yet
	 * (sched_admin.c), and whether their poll is armed */
	struct sched_admin_job *admin_waiting;
	bool admin_poll_armed;
	/* back-offs read at start-up until their paths exist
	 * (sched_state.c: "site\npool" -> pause), once read */
	struct htab state_pending;
	bool state_ready;
	/* the start-up load's place in the schedule index, and the messages
	 * it found for this shard (scheduler.c) */
	struct queue_sched_pos load_pos;
	uint64_t load_n;
	/* stopping, and nothing left in flight here (sched_maybe_stop) */
	bool stopped;
	struct sched_snap snap; /* under gauge_mu */
	uint64_t oldest_id;     /* its oldest message in memory, 0: unknown */
};

/*
 * The scheduler's state (sched_main), and the pointer each of its threads
 * reaches it by: delivery loop 0's and every connection loop's (set as each
 * starts: sched_bind) and the main thread's (from sched_init on).  Any
 * other thread has NULL there, so a stray touch faults at once rather than
 * racing: what runs on a worker or on the writer reaches the state only
 * through what it was handed, and the entry points that run on any thread
 * (sched_message_add, sched_metrics_text, imports) through sched_main.
 */
extern _Thread_local struct sched *sched;
extern struct sched sched_main;
/* sched_bind — a loop_fn: the calling thread is one of the scheduler's
 * (ARG: its state); on a loop's thread, its delivery log lines go in
 * batches (evlog_batch_begin).  sched_unbind — the loop's on_stop: the
 * batches end. */
void sched_bind(void *arg);
void sched_unbind(void *arg);

/* sched_shard.c -------------------------------------------------------- */

/* The shards, by index: sched_nshards of them, the first sched_main. */
#define SCHED_SHARDS_MAX 64
extern struct sched *sched_shards[SCHED_SHARDS_MAX];
extern unsigned sched_nshards;

/* This shard's part of delivery.max_messages_in_memory (SCHED_MAX_ACTIVE),
 * and of the least line a path keeps (SCHED_LINE_MIN). */
static inline unsigned
sched_max_active(void)
{
	unsigned n = sched_nshards > 1 ? sched_nshards : 1;

	return sched->conf->delivery.max_rounds / n > 0
		   ? sched->conf->delivery.max_rounds / n
		   : 1;
}

static inline unsigned
sched_line_min(void)
{
	unsigned n = sched_nshards > 1 ? sched_nshards : 1;

	return (SCHED_LINE_MIN + n - 1) / n;
}
/* sched_shard_of — the shard that owns queue id ID, for the message's
 * whole life.  Any thread. */
struct sched *sched_shard_of(uint64_t id);
/* sched_shard_of_loop — the shard that runs on L (loop 0's when L holds
 * only its connections). */
struct sched *sched_shard_of_loop(const struct loop *l);
/* sched_shard_init — S empty, on loop L (its timers there, its threads
 * bound to it as L starts), next in the table.  0, or -1 with ERR.  Main
 * thread (scheduler.c). */
int sched_shard_init(struct sched *s, struct loop *l,
		     const struct sched_config *sc, char *err, size_t errlen);
/* sched_shard_new — a shard of its own for delivery loop CL (its loop and
 * resolver), freed by sched_free.  0, or -1 with ERR.  Main thread. */
int sched_shard_new(struct sched_cloop *cl, const struct sched_config *sc,
		    char *err, size_t errlen);
/*
 * MTA-STS from any shard: mtasts.h lives on loop 0, so a shard elsewhere
 * asks through it and hears the answer on its own loop (the policy copied
 * for the call).  sched_sts_get: as mtasts_get; sched_sts_cancel: as
 * mtasts_cancel (Q pending).  sched_sts_stop: at shutdown, on loop 0
 * (mtasts_stop: asks on their way get no answer); sched_sts_free: main,
 * after the loops (what no answer came back for).
 */
struct sched_sts;
struct sched_sts *sched_sts_get(const char *domain, mtasts_cb *cb, void *arg);
void sched_sts_cancel(struct sched_sts *q);
void sched_sts_stop(void);
void sched_sts_free(void);

/* sched_share.c -------------------------------------------------------- */

/*
 * A path's limits as every shard sees them (its "may I send"): the
 * connections open to it from all shards, and its rate's spacing, under
 * one lock held for a check.  A shard turned away at the limit is kicked
 * (its path of that name) when a connection of another ends.  Only with
 * more than one shard.  Any shard's thread.
 */
struct sched_share;
/* sched_share_get — the record of P's name (made if new), or NULL when
 * out of memory (P then keeps to its own counts). */
struct sched_share *sched_share_get(const struct sched_path *p);
/* sched_share_conn_take — one more connection for S under LIMIT: true,
 * or false (the calling shard is kicked when one ends). */
bool sched_share_conn_take(struct sched_share *s, unsigned limit);
/* sched_share_conn_waiting — is S at LIMIT with the calling shard
 * already waiting for one of its connections to end (and kick it)?  No
 * lock: a path with more jobs than connections asks at every round it
 * starts, under a backlog at every message; true means take would fail. */
bool sched_share_conn_waiting(const struct sched_share *s, unsigned limit);
/* sched_share_conn_give — one of S's connections has ended. */
void sched_share_conn_give(struct sched_share *s);
/* sched_share_nconn — S's connections from every shard. */
unsigned sched_share_nconn(const struct sched_share *s);
/* sched_share_quitting — one of S's connections was told to go (1), or
 * has gone (-1); sched_share_nquitting — how many are going, all shards. */
void sched_share_quitting(struct sched_share *s, int d);
unsigned sched_share_nquitting(const struct sched_share *s);
/* sched_share_wanted — does another shard wait for one of S's? */
bool sched_share_wanted(const struct sched_share *s);
/* sched_share_slot_take / _give — delivery.max_connections (MAX) over
 * every shard: one more connection at all, or one ended; a shard turned
 * away is kicked (sched_slots_kick) when one ends. */
bool sched_share_slot_take(unsigned max);
void sched_share_slot_give(void);
/* sched_share_slot_wanted — does another shard wait for a slot? */
bool sched_share_slot_wanted(void);
/* sched_share_rate — S's spacing times (next message per minute, hour,
 * day) under its lock: FN(TIMES, ARG) reads or moves them. */
void sched_share_rate(struct sched_share *s,
		      void (*fn)(int64_t times[3], void *arg), void *arg);
/* sched_share_throttle — a shard took S's path a step down, to LEVEL
 * until UNTIL_MS: every other shard's path of that name follows, and one
 * made later (sched_share_throttle_get). */
void sched_share_throttle(struct sched_share *s, unsigned level,
			  int64_t until_ms);
bool sched_share_throttle_get(struct sched_share *s, unsigned *level,
			      int64_t *until_ms);
/* sched_share_pause — a shard paused P (its share's path): every other
 * shard's path of that name follows (sched_limit_pause_follow), and one
 * made later (sched_share_pause_adopt, on P just made). */
void sched_share_pause(const struct sched_path *p);
void sched_share_pause_adopt(struct sched_path *p);
/* sched_share_pause_note — P's pause, kept across a restart, is the one
 * in force for every shard too (each restores its own: no post). */
void sched_share_pause_note(const struct sched_path *p);
/* sched_share_pause_over — the pause ending at UNTIL_MS is over on this
 * shard, which holds messages for it (HELD) or not.  Of every shard, the
 * first says so (*SAY, with *NHELD the messages held over them all) and
 * the first holding messages probes (true).  A pause that is not the one
 * in force (an operator ended it) leaves *SAY and *NHELD, and probes. */
bool sched_share_pause_over(struct sched_share *s, int64_t until_ms, bool held,
			    bool *say, uint32_t *nheld);
/* sched_share_answers — the path answers again (a delivery after a
 * back-off): every other shard lets what it holds for it go
 * (sched_limit_answered), unless a later pause is in force. */
void sched_share_answers(struct sched_share *s);
/* sched_share_unpause — an operator ended the pause (every shard is told
 * by the operator's change itself). */
void sched_share_unpause(struct sched_share *s);
/* sched_share_nparked — S's count of messages held over every shard. */
_Atomic uint32_t *sched_share_nparked(struct sched_share *s);
/* sched_share_free — every record (main, after the loops). */
void sched_share_free(void);
/*
 * A change spread over PARTS shards (sched_fan_new, on the caller's
 * shard): each part answers once, through sched_fan_part (a
 * sched_admin_fn, ARG the fan) on whatever shard it ran; CB (CBARG) hears
 * the sum of their counts and the first error on the caller's loop, after
 * the last part, and the fan is freed.  sched_fan_new: NULL when out of
 * memory, CB told so at once.
 */
struct sched_fan;
struct sched_fan *sched_fan_new(unsigned parts, sched_admin_fn *cb,
				void *cbarg);
void sched_fan_part(unsigned count, const char *err, void *arg);

/* sched_dns_share — ALL (dns { }) with its max_inflight shared over the N
 * delivery loops' resolvers (at least 1 each), so the questions in flight
 * from delivery stay under the configured cap whatever the loop count.
 * Into OUT (ALL's strings are borrowed, as dns_resolver_new copies). */
void sched_dns_share(const struct dns_config *all, unsigned n,
		     struct dns_config *out);

/* scheduler.c ---------------------------------------------------------- */

/* sched_timer_ms — (re)arm EV to fire in DELAY_MS (< 0: at once). */
void sched_timer_ms(struct event *ev, int64_t delay_ms);
/* sched_rcpt_domain — the domain of ADDR, lower-cased, into BUF. */
const char *sched_rcpt_domain(const char *addr, char *buf, size_t len);
/* sched_path_get — SITE's path for POOL (made with CFG if new), or NULL
 * when out of memory. */
struct sched_path *sched_path_get(struct sched_site *site,
				  const struct conf_pool *pool,
				  const struct conf_destination *cfg);
/* sched_path_key — P's name in the cluster (cluster.h): its pool and its
 * MX set, the same on every node with the same DNS and configuration. */
void sched_path_key(const struct sched_path *p, char *buf, size_t len);
/* sched_path_find — this shard's path named KEY (sched_path_key), or
 * NULL. */
struct sched_path *sched_path_find(const char *key);
/* sched_path_yield — another shard waits for a connection of the path
 * named KEY (NULL: for any slot): this shard's longest idle one of it (of
 * any path) goes. */
void sched_path_yield(const char *key);
/* sched_slots_kick — a slot under delivery.max_connections ended: the
 * paths that waited for one, in turn, while slots last. */
void sched_slots_kick(void);
/* sched_path_pop — the first job waiting on P, taken off; NULL if none. */
struct sched_job *sched_path_pop(struct sched_path *p);
/* sched_path_trim — P's limits went down: its idle connections past them
 * go now (busy ones go when their job is done). */
void sched_path_trim(struct sched_path *p);
/* sched_path_each — FN(P, ARG) for every path of every site.  FN may
 * kick P, not add or drop a site. */
void sched_path_each(void (*fn)(struct sched_path *p, void *arg), void *arg);
/* sched_path_kick — start as much work on P as its limits allow. */
void sched_path_kick(struct sched_path *p);
/* sched_maybe_stop — stopping, and nothing left in flight: end the loop. */
void sched_maybe_stop(void);
/* A connection's events, on the scheduler's loop (from sched_conn.c):
 * CN is ready for a job, done with JOB (or gave it back unsent), or gone
 * (CN->failed, stage, code, text say how; CN is freed after this). */
void sched_path_on_ready(struct sched_conn *cn);
void sched_path_on_done(struct sched_conn *cn, struct sched_job *job);
void sched_path_on_closed(struct sched_conn *cn);

/* sched_dest_reconf — sched->conf was replaced: every destination takes its
 * limits and route from it (sched_reconf, scheduler.c). */
void sched_dest_reconf(void);

/* sched_conn.c --------------------------------------------------------- */

/* sched_conn_init — the delivery loops: loop 0 (SC->loop) and N - 1 more,
 * each with its resolver; every client gets SC's SSL_CTX and the
 * delivery timeouts of C.  SHARDED: each loop past 0 gets a shard of the
 * scheduler of its own (sched_shard_new), and every shard keeps its
 * connections on its own loop; else loop 0's scheduler spreads its
 * connections over them all.  0, or -1 with err.  Main thread. */
int sched_conn_init(const struct sched_config *sc, unsigned n, bool sharded,
		    char *err, size_t errlen);
/* sched_conn_reconf — the delivery timeouts of DL for new waits, on every
 * loop (each takes them on its own thread). */
void sched_conn_reconf(const struct conf *c);
/* sched_conn_open — a connection of P to T on the loop with the fewest;
 * P's callbacks follow (sched_path_on_*).  NULL when out of memory. */
struct sched_conn *sched_conn_open(struct sched_path *p,
				   const struct smtp_client_target *t);
/* sched_conn_send — run JOB on ready or idle CN (done follows). */
void sched_conn_send(struct sched_conn *cn, struct sched_job *job);
/* sched_conn_quit — CN goes (QUIT if idle); closed follows. */
void sched_conn_quit(struct sched_conn *cn);
/* sched_conn_park — keep ready CN for reuse (its idle timeout runs). */
void sched_conn_park(struct sched_conn *cn);
/* sched_conn_abort_all — shutdown deadline: every connection on every
 * loop cut (jobs in flight done, deferred; then closed). */
void sched_conn_abort_all(void);
/* sched_conn_free — the loops made here and their resolvers (main, after
 * sched_loops_stop). */
void sched_conn_free(void);

/* sched_msg.c ---------------------------------------------------------- */

/* sched_msg_new — a stub for queue id ID due at DUE, in the id map; NULL
 * when out of memory. */
struct sched_msg *sched_msg_new(uint64_t id, int64_t due);
/* sched_msg_free — out of the id map and the counts, freed. */
void sched_msg_free(struct sched_msg *m);
/* sched_msg_hold — held: waits outside the heap until released. */
void sched_msg_hold(struct sched_msg *m);
/* sched_msg_unhold — undo sched_msg_hold() (and a damaged record's hold). */
void sched_msg_unhold(struct sched_msg *m);
/* sched_msg_retry_later — attempt M again in MS (written, then queued). */
void sched_msg_retry_later(struct sched_msg *m, int64_t ms);
/* sched_msg_due — M is due at M->due_ms: into the retry heap. */
void sched_msg_due(struct sched_msg *m);
/* sched_retry_arm — the retry timer set for the first message due. */
void sched_retry_arm(void);
/* sched_retry_cb — the retry timer: start the rounds that are due. */
void sched_retry_cb(evutil_socket_t fd, short what, void *arg);
/* sched_retry_wake — a round ended: room for one that is due. */
void sched_retry_wake(void);
/* sched_write_flush_cb — the shard's batched queue writes go to the
 * writer (its loop, at the end of a turn).  sched_write_flush — the same,
 * now (main thread at shutdown, the shard bound). */
void sched_write_flush_cb(evutil_socket_t fd, short what, void *arg);
/* sched_round_loads_flush_cb — the shard's gathered envelope loads go to
 * the pool (its loop, at the end of a turn).  sched_round_loads_free —
 * drop those never sent (shard's free). */
void sched_round_loads_flush_cb(evutil_socket_t fd, short what, void *arg);
void sched_round_loads_free(void);
void sched_write_flush(void);
/* sched_write — write M's envelope (QOP_UPDATE) or remove M (QOP_DELETE);
 * OLD_DUE: its key in the schedule index.  The envelope moves from M's
 * round to the op (no copy): the caller ends the round next. */
void sched_write(struct sched_msg *m, enum queue_op_kind kind, int64_t old_due);
/* sched_write_resched — move M's schedule entry only (due time, held). */
void sched_write_resched(struct sched_msg *m, int64_t old_due, bool held);
/* sched_write_delete — remove waiting (or held) M: no round, no DSN. */
void sched_write_delete(struct sched_msg *m);
/* sched_dsn — queue a DSN for the recipients of M that failed this round. */
void sched_dsn(struct sched_msg *m);

/* sched_round.c -------------------------------------------------------- */

/* sched_pool_for — the source pool of ENV's message: its user's, the relay
 * clients', or the default (NULL: no source binding). */
const struct conf_pool *sched_pool_for(const struct queue_envelope *env);

/* sched_round_new — give M a round: ENV (moved in, zeroed at the source).
 * The body stays in the queue (each job reads it).  0, or -1 when out of
 * memory. */
int sched_round_new(struct sched_msg *m, struct queue_envelope *env);
/* sched_round_free — the round is over: drop everything but the stub. */
void sched_round_free(struct sched_msg *m);
/* sched_round_start — read M (if need be), then one job per destination
 * (and per max_recipients_per_transaction recipients). */
void sched_round_start(struct sched_msg *m);
/* sched_round_settle — every job of M's round is back: write down what
 * happened, once, and drop the round. */
void sched_round_settle(struct sched_msg *m);
/* sched_round_rcpt_result — record recipient RI's result R, as O says,
 * REMOTE the host that answered. */
void sched_round_rcpt_result(struct sched_msg *m, uint32_t ri,
			     const struct smtp_client_result *r,
			     const struct outcome *o, const char *remote);

/* sched_job.c ---------------------------------------------------------- */

/* sched_job_new — a job of M to D with room for N recipients (the round's
 * sender and body set), or NULL when out of memory. */
struct sched_job *sched_job_new(struct sched_msg *m, struct sched_dest *d,
				unsigned n);
/* sched_job_add — recipient RI of JOB's message goes in JOB. */
void sched_job_add(struct sched_job *job, uint32_t ri);
void sched_job_free(struct sched_job *job);
/* sched_job_fail — every recipient of JOB without a result gets this one;
 * then the results are applied (sched_job_results). */
void sched_job_fail(struct sched_job *job, enum outcome_stage stage, int code,
		    const char *text);
/* sched_job_park — JOB met a paused destination: its recipients keep their
 * state, its message is held in PK once the round settles untried. */
void sched_job_park(struct sched_job *job, struct sched_park *pk);
/* sched_job_results — JOB is back: apply its results, free it; its round
 * settles when it has no job left. */
void sched_job_results(struct sched_job *job);

/* sched_dest.c --------------------------------------------------------- */

/* sched_dest_get — the destination DOMAIN (lower case), made if new; NULL
 * when out of memory. */
struct sched_dest *sched_dest_get(const char *domain);
/* sched_dest_submit — JOB to D's site, once D's MX are known. */
void sched_dest_submit(struct sched_dest *d, struct sched_job *job);
/* sched_dest_last_error — why DOMAIN's deliveries from POOL wait (its
 * path's last failure, or an operator's suspension), or NULL. */
const char *sched_dest_last_error(const char *domain,
				  const struct conf_pool *pool);

/* sched_park.c --------------------------------------------------------- */

/* sched_park_add — hold M (no round, out of the heap) in PK until
 * released; EXPIRES_MS: when its time in the queue is over.  0, or -1 when
 * out of memory (M untouched). */
int sched_park_add(struct sched_park *pk, struct sched_msg *m,
		   int64_t expires_ms);
/* sched_park_remove — take M out of its park (a no-op when not parked). */
void sched_park_remove(struct sched_msg *m);
/* sched_park_release — up to MAX of PK's messages due again (in the heap,
 * at their unchanged due time). */
void sched_park_release(struct sched_park *pk, uint32_t max);
/* sched_park_free — PK's array and timer (its messages are not its own). */
void sched_park_free(struct sched_park *pk);

/* sched_limit.c -------------------------------------------------------- */

/* sched_limit_patterns — CFG's compiled suspend_on patterns into PATS;
 * returns how many. */
unsigned sched_limit_patterns(const struct conf_destination *cfg,
			      struct outcome_pattern pats[CONF_SUSPEND_ON_MAX]);
/* sched_limit_backoff — P failed again: pause it longer, defer its jobs. */
void sched_limit_backoff(struct sched_path *p, const char *why);
/* sched_limit_suspend — a reply matched a pattern: pause P for MS. */
void sched_limit_suspend(struct sched_path *p, uint64_t ms, const char *why);
/* sched_limit_unpause — P's pause is over (its time, an operator): said
 * once, and its held messages go again, ALL of them or a few to probe
 * (as many as its connections). */
void sched_limit_unpause(struct sched_path *p, bool all, const char *why);
/* sched_limit_pause_follow — another shard paused the path P has the
 * name of until UNTIL_MS (back-off LEVEL, or SUSPENDED by a reply
 * pattern) for WHY: P holds its messages in place until then too,
 * without a word (the other said it). */
void sched_limit_pause_follow(struct sched_path *p, int64_t until_ms,
			      unsigned level, bool suspended, const char *why);
/* sched_limit_answered — another shard's probe of P's name was answered:
 * its back-off is over, and all P holds goes (unless P paused since). */
void sched_limit_answered(struct sched_path *p);
/* sched_limit_timer_cb — P's timer (ARG): a pause or a rate wait is over. */
void sched_limit_timer_cb(evutil_socket_t fd, short what, void *arg);
/* sched_limit_sweep — once a second at NOW: a pause past its end with no
 * timer pending is logged (a broken invariant) and ended. */
void sched_limit_sweep(int64_t now);
/* sched_limit_throttle — a reply of one of P's throttle_on categories:
 * one step down (at most one a minute), said once per step. */
void sched_limit_throttle(struct sched_path *p, const char *why);
/* sched_limit_throttle_adopt — another node (FROM_CLUSTER: logged) or
 * another shard took P to LEVEL, for REMAIN_MS more: P follows if that is
 * deeper or lasts longer. */
void sched_limit_throttle_adopt(struct sched_path *p, unsigned level,
				int64_t remain_ms, bool from_cluster);
/* sched_limit_throttle_level — P's steps down at NOW (steps whose time
 * is over given back). */
unsigned sched_limit_throttle_level(const struct sched_path *p, int64_t now);
/* sched_limit_conns — connections P may have open now. */
unsigned sched_limit_conns(const struct sched_path *p);
/* sched_limit_rate_ok — may P send one more message at NOW?  If not, when
 * (*WHEN). */
bool sched_limit_rate_ok(struct sched_path *p, int64_t now, int64_t *when);
/* sched_limit_rate_take — P sends one message at NOW. */
void sched_limit_rate_take(struct sched_path *p, int64_t now);

/* sched_state.c -------------------------------------------------------- */

/* sched_state_load — start-up, before the queue's messages: the
 * suspensions kept (their destinations suspended again) and the back-offs
 * kept (each taken back by its path when it is made). */
void sched_state_load(void);
/* sched_state_free — the back-offs no path took back. */
void sched_state_free(void);
/* sched_state_suspend_save — DOMAIN suspended until UNTIL_MS for REASON:
 * kept across restarts (one queue op). */
void sched_state_suspend_save(const char *domain, int64_t until_ms,
			      const char *reason);
/* sched_state_suspend_forget — DOMAIN's suspension ended by an operator. */
void sched_state_suspend_forget(const char *domain);
/* sched_state_path_save — P paused (back-off or reply pattern) until
 * P->paused_until_ms: kept, with its level and last error. */
void sched_state_path_save(const struct sched_path *p);
/* sched_state_path_forget — P's pause is over (its time, an operator). */
void sched_state_path_forget(const struct sched_path *p);
/* sched_state_path_restore — P was just made: its pause of before the
 * restart, if one was kept and is not over. */
void sched_state_path_restore(struct sched_path *p);

/* sched_admin.c -------------------------------------------------------- */

/* sched_admin_written — a queue write of the scheduler's is done: the
 * changes waiting for theirs to be visible answer if they are. */
void sched_admin_written(void);
/* sched_admin_bounced — recipient RI of M was just bounced by an operator
 * (M's round settles): its delivery-log event; its DSN says so. */
void sched_admin_bounced(struct sched_msg *m, uint32_t ri);
/* sched_admin_ids — apply OP to the messages IDS (N of them; malloc'd,
 * taken over) and call CB as sched_admin does once it is visible. */
void sched_admin_ids(enum sched_admin_op op, uint64_t *ids, size_t n,
		     sched_admin_fn *cb, void *cbarg);

/* sched_export.c ------------------------------------------------------- */

/* sched_export_removed — M left the queue in an archive: its delivery-log
 * event ("exported"), and its removal (SA_EXPORTED's change). */
void sched_export_removed(struct sched_msg *m);

/* sched_metrics.c ------------------------------------------------------ */

/* sched_metrics_cb — once a second: the gauges' snapshot renewed. */
void sched_metrics_cb(evutil_socket_t fd, short what, void *arg);
/* sched_metrics_result — a recipient of M to DOMAIN had result R, which O
 * classified: counted by destination, pool and user. */
void sched_metrics_result(const struct sched_msg *m, const char *domain,
			  const struct smtp_client_result *r,
			  const struct outcome *o);
/* sched_metrics_final — recipient ADDR of M failed without an attempt:
 * EXPIRED, or bounced by an operator. */
void sched_metrics_final(const struct sched_msg *m, const char *addr,
			 bool expired);
/* sched_metrics_user_label — the user label of a message by USER (NULL:
 * a relay-network client) or, DSN, one of our own bounces ("_dsn"): the
 * one rule for counters and the queue scan's gauges. */
#define SCHED_METRICS_USER_DSN "_dsn"
void sched_metrics_user_label(const char *user, bool dsn,
			      char out[METRICS_LABEL_MAX]);
/* sched_metrics_stage_end — what this loop counted in its last turn goes
 * to the tables, and its stage is freed.  The loop's thread, at its end. */
void sched_metrics_stage_end(void);
/* sched_metrics_shard_free — this shard's snapshot (at stop). */
void sched_metrics_shard_free(void);
/* sched_metrics_free — the counter tables (at stop). */
void sched_metrics_free(void);

/* sched_scan.c --------------------------------------------------------- */

/* sched_scan_tick — from sched_metrics_cb at NOW_MS: start a queue scan
 * on a worker when metrics.queue_scan_interval has passed since the last
 * one began and none is running. */
void sched_scan_tick(int64_t now_ms);
/* sched_scan_text — the last scan's families (depth, held, oldest age per
 * destination, pool and user; its time, duration and totals) into T, ages
 * at NOW_MS.  Nothing before the first scan ends. */
void sched_scan_text(struct metrics_text *t, int64_t now_ms);
/* sched_scan_stop — stopping: a scan running ends at its next envelope. */
void sched_scan_stop(void);
/* sched_scan_postpone — the first scan comes one queue_scan_interval after
 * NOW_MS rather than at the first tick (start-up: deliveries first). */
void sched_scan_postpone(int64_t now_ms);
/* sched_scan_free — the last scan's snapshot (at stop, after the loop). */
void sched_scan_free(void);

/* sched_local_submit — OP (QOP_INSERT, body set) queued as a message of
 * the daemon's own from the null sender to RCPT (sched_msg.c).  0, or -1
 * out of memory (OP freed). */
int sched_local_submit(struct queue_op *op, const char *rcpt);
/* sched_report_queue — a TLS report mail (a tlsrpt_queue_fn). */
int sched_report_queue(uint8_t *msg, size_t len, const char *rcpt);

#endif
