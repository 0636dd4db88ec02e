/*
 * delivery.h — the delivery half: the scheduler (scheduler.c) and the SMTP
 * client (smtp_client.c), which work as a pair on the delivery loop.
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
 * Everything here belongs to the delivery loop's thread.
 */
#ifndef OUTPOST_MTA_DELIVERY_H
#define OUTPOST_MTA_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/deliver/outcome.h"
#include "mta/deliver/smtp_client.h"

struct loop;
struct dns_resolver;

/*
 * What a message costs while it waits: this stub (about 40 bytes and a heap
 * slot).  Its envelope and body are read back from the queue only for a
 * round of attempts (struct sched_round) and dropped when it settles, so a
 * queue of a million recipients stays small in memory.
 */
struct sched_msg {
	uint64_t id;
	int64_t due_ms;        /* next attempt; also its key in "sched" */
	struct sched_round *r; /* during a round, else NULL */
	uint32_t heap_idx;     /* in the retry heap, or UINT32_MAX */
	uint8_t flags;         /* SM_* */
	uint8_t writes;        /* queue ops in flight */
};

#define SM_LOADING    0x01u /* envelope/body being read by a worker */
#define SM_DELETED    0x02u /* final: freed when the last op returns */
#define SM_HELD       0x04u /* held: not scheduled */
#define SM_HOLD_REQ   0x10u /* operator: hold once the round settles */
#define SM_DELETE_REQ 0x20u /* operator: delete (no DSN) at settle */
#define SM_BOUNCE_REQ 0x40u /* operator: bounce every pending recipient */
/* Its record is damaged (QUEUE_CORRUPT): held in memory (SM_HELD too), never
 * read again unless an operator releases it; `delete` removes it, `bounce`
 * cannot (no envelope to bounce to).  Not written to disk: the next start
 * finds it again, once. */
#define SM_CORRUPT 0x80u

struct sched_round {
	struct queue_envelope env;
	const struct conf_pool *pool;
	uint8_t *body;
	size_t body_len;
	unsigned inflight; /* jobs not finished */
	uint32_t *bounced; /* rcpt indexes that failed this round */
	unsigned nbounced;
	bool kept;     /* a failed rcpt kept pending: no memory to list it */
	char **remote; /* per rcpt: the host that answered */
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
	struct sched_job *next;
};

/* The job whose client part is P (what the done callback gives back). */
#define SCHED_JOB_OF(p)                                                        \
	((struct sched_job *)(void *)((char *)(p)-offsetof(struct sched_job,   \
							   cj)))

struct sched_site {
	char *key;
	struct smtp_client_host *hosts; /* MX hosts, or a route's host */
	unsigned nhosts;
	unsigned port;
	bool implicit; /* the domain itself, no MX */
	unsigned refs;
	struct sched_path **paths; /* one per pool in use */
	unsigned npaths;
};

struct sched_path {
	struct sched_site *site;
	const struct conf_pool *pool; /* NULL: no source binding */
	const struct conf_destination *cfg;
	struct sched_job *head, *tail;
	unsigned njobs;
	unsigned nconn;            /* connections open or opening */
	unsigned nbusy;            /* connections running a job */
	struct smtp_client **idle; /* idle connections, last parked last */
	unsigned nidle, idle_cap;
	unsigned source_next;     /* round robin over pool sources */
	int64_t paused_until_ms;  /* back-off or suspension */
	int64_t connect_after_ms; /* no new connection before (failures) */
	unsigned backoff_level;
	unsigned conn_failures; /* consecutive */
	bool suspended;         /* by a reply pattern */
	int64_t next_send_ms;   /* rate limit: next message allowed */
	int64_t next_send_hour_ms;
	struct event *timer; /* wake-up for pause / rate */
};

/* Scheduler ----------------------------------------------------------- */

struct dns_config;
/* sched_dns_config — the resolver settings from the configuration (and the
 * OUTPOST_LOOPBACK_ONLY test switch).  False: no DNS may be used at all
 * (loopback-only without servers of its own). */
bool sched_dns_config(const struct conf *c, struct dns_config *dc);
/* sched_init — main thread, before the delivery loop runs.  0 or -1. */
int sched_init(struct loop *l, const struct conf *c, struct queue *q, char *err,
	       size_t errlen);
/* sched_start — post the start-up work (load the queue) to the loop. */
void sched_start(void);
/* sched_message_add — a message just committed (QOP_INSERT done): the
 * scheduler takes OP (envelope and body) and frees it.  Any thread. */
void sched_message_add(struct queue_op *op);
/* sched_shutdown — on the delivery loop: stop starting transactions; let
 * those in flight end (or cut them at the deadline); stop the loop once every
 * result is committed. */
void sched_shutdown(unsigned deadline_ms);
/* Operators' changes (the control socket) ------------------------------ */

enum sched_admin_op {
	SA_HOLD,    /* stop delivery attempts until released */
	SA_RELEASE, /* undo hold: due now */
	SA_DELETE,  /* remove from the queue, no DSN */
	SA_BOUNCE,  /* fail every pending recipient (DSN to the sender), then
		       remove */
	SA_RETRY,   /* due now (deferred or not) */
};

enum sched_admin_sel {
	SAS_ID,     /* ARG: one queue id (16 hex digits) */
	SAS_DOMAIN, /* ARG: messages with a pending recipient in this domain */
	SAS_USER,   /* ARG: messages submitted by this user */
	SAS_ALL,    /* every message (ARG ignored) */
};

/* Called on the delivery loop: COUNT messages changed, or ERR (NULL on
 * success). */
typedef void sched_admin_fn(unsigned count, const char *err, void *arg);

/*
 * sched_admin — apply OP to the messages SEL/ARG selects.  A damaged record
 * (SM_CORRUPT) is held: SA_DELETE removes it, SA_RELEASE has it read again,
 * SA_BOUNCE leaves it (there is no envelope to bounce); SAS_ALL selects from
 * memory (no envelope is read).  Every change is
 * applied in memory and its queue write submitted (group-committed within
 * milliseconds) before CB runs; a message in the middle of a round of
 * attempts takes the change when the round settles.  Selecting by domain or
 * user reads the envelopes on the worker pool (never on the loop).
 * Delivery loop thread; CB later on the same loop.
 */
void sched_admin(enum sched_admin_op op, enum sched_admin_sel sel,
		 const char *arg, sched_admin_fn *cb, void *cbarg);

/*
 * sched_suspend — suspend deliveries to DOMAIN for MS milliseconds (0 =
 * resume), whatever its reply patterns say; REASON is shown by `outpost
 * queue summary`.  0, or -1 with err.  Delivery loop thread.
 */
int sched_suspend(const char *domain, uint64_t ms, const char *reason,
		  char *err, size_t errlen);

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
/* sched_queued — messages the scheduler knows of (waiting or in a round);
 * main thread after the loop ended, or the loop's thread. */
uint64_t sched_queued(void);
/* sched_free — release everything; main thread, after the loop ended. */
void sched_free(void);

#endif
