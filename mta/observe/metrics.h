/*
 * metrics.h — the Prometheus endpoint of outpostd: GET /metrics on an evhttp
 * listener, text exposition format 0.0.4.
 *
 * What a scrape shows: the process-wide counters of mta/observe/stats.h, the
 * queue writer's counters (queue_stats_get), the delivery log's
 * (evlog_stats_get), open SMTP sessions (metrics_set_sessions), build and start
 * time, a few process_* gauges, the histograms below, and whatever text the
 * hooks added with metrics_add_text() produce (the scheduler's queue and
 * connection gauges).  Every family has # HELP and # TYPE; names use base units
 * and counters end in _total.  No label ever carries an address, a message id
 * or any other unbounded value.
 *
 * Threads: metrics_start(), metrics_stop(), metrics_add_text() and
 * metrics_render() on the thread that runs the event base given to
 * metrics_start() (outpostd's main thread, which otherwise only handles
 * signals); scrapes are answered there.  metrics_observe() on any thread,
 * lock-free.
 */
#ifndef OUTPOST_MTA_METRICS_H
#define OUTPOST_MTA_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"

struct event_base;
struct evbuffer;
struct queue;

/* The Content-Type of a scrape. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Finite bucket bounds a histogram may have (+Inf is implicit). */
#define METRICS_HIST_BOUNDS_MAX 24
/* Text hooks metrics_add_text() accepts. */
#define METRICS_TEXT_HOOKS_MAX 16

/*
 * A histogram with fixed buckets, cumulative on output.  The fields are
 * private to metrics.c: callers only pass a pointer to metrics_observe().
 * counts[i] holds the observations v with bounds[i-1] < v <= bounds[i];
 * counts[nbounds] those above the last bound.  Each bucket is its own
 * counter and the scrape sums them, so le="+Inf" always equals _count.
 */
struct metrics_hist_counts {
	_Atomic uint64_t counts[METRICS_HIST_BOUNDS_MAX + 1];
	_Atomic uint64_t sum_bits; /* the sum: the bits of a double */
};
struct metrics_hist {
	const char *name; /* family name */
	const char *help;
	unsigned idx; /* its place in each thread's block (counters.c) */
	size_t nbounds;
	double bounds[METRICS_HIST_BOUNDS_MAX]; /* ascending, finite */
	/* what threads that ended, or had no block, counted (each thread
	 * counts in its own block first: mta/observe/stats.h) */
	struct metrics_hist_counts c;
};
#define METRICS_NHISTS 4

/*
 * The histograms the daemon feeds (metrics_observe(&metrics_…, v)):
 *
 * metrics_accept_latency  outpost_accept_latency_seconds: from the end of
 *     DATA (or BDAT LAST) to the 250 reply, i.e. DMARC, signing and the
 *     queue commit; 0.0005 … 10 s.
 * metrics_delivery_latency  outpost_delivery_latency_seconds: time a
 *     recipient spent in the queue until it was delivered; 0.01 … 86400 s.
 * metrics_commit_batch  outpost_queue_commit_batch_ops: ops per LMDB write
 *     transaction; 1 … 4096.  Fed by the queue writer's commit hook
 *     (commit_observed() in main.c).
 * metrics_sign_seconds  outpost_dkim_sign_duration_seconds: DKIM signing
 *     time per message, all signatures; 0.00005 … 1 s.
 */
extern struct metrics_hist metrics_accept_latency;
extern struct metrics_hist metrics_delivery_latency;
extern struct metrics_hist metrics_commit_batch;
extern struct metrics_hist metrics_sign_seconds;

/*
 * metrics_bounce_category — one more failed (BOUNCE: bounced or expired)
 * or deferred recipient of category CAT (CONF_BC_NONE: nothing counted):
 * outpost_bounce_category_total{category, kind}.  Any thread; never
 * blocks.  metrics_bounce_text — that family's exposition text (a
 * metrics_text_fn, rendered at every scrape).
 */
void metrics_bounce_category(enum conf_bounce_category cat, bool bounce);
size_t metrics_bounce_text(char *buf, size_t len);

/*
 * metrics_observe — count VALUE (seconds, ops …) in H.  A NaN or an infinity
 * is ignored; a negative value (a clock stepped back) counts as 0.  Any thread;
 * lock-free, and in the calling thread's own block (relaxed atomics that no
 * other thread writes), never blocks.
 */
void metrics_observe(struct metrics_hist *h, double value);

/*
 * metrics_text_fn — a producer of extra exposition text, called at scrape
 * time on the metrics thread.  Write complete families (# HELP, # TYPE,
 * samples, each line ending in "\n") into BUF, at most LEN bytes, and return
 * the length of the complete text, as snprintf does; no NUL is needed.  A
 * return >= LEN means "truncated": the hook is called once more with a
 * buffer larger than the value returned; if it is still too small, its
 * text is left out of that scrape.  Must not block (take a snapshot under
 * the producer's own mutex) and must not call back into metrics_*.
 */
typedef size_t metrics_text_fn(char *buf, size_t len);

/*
 * metrics_add_text — append FN's text to every scrape, after the built-in
 * families, in the order hooks were added.  Before or after metrics_start();
 * metrics_stop() forgets all hooks.  At most METRICS_TEXT_HOOKS_MAX hooks
 * (more is a programming error: panic).  Metrics thread.
 */
void metrics_add_text(metrics_text_fn *fn);

/* The number of SMTP server sessions open now; any thread, lock-free. */
typedef unsigned metrics_sessions_fn(void);

/*
 * metrics_set_sessions — where the outpost_smtp_sessions gauge reads its
 * value (outpostd: the receiving side's peer_sessions_total).  NULL, the
 * default, reads 0.  Metrics thread.
 */
void metrics_set_sessions(metrics_sessions_fn *fn);

/*
 * metrics_start — listen on ADDR (LEN bytes; IPv4 or IPv6, port 0 picks a
 * free port: see metrics_local_addr) and answer scrapes on BASE:
 * GET and HEAD /metrics (any query string) get 200 with
 * METRICS_CONTENT_TYPE; other paths 404; other methods on /metrics 405
 * with "Allow: GET, HEAD".  Q (may be NULL: the outpost_queue_* counters
 * are then left out) is only read through queue_stats_get() and must
 * outlive metrics_stop().  Also records outpost_start_time_seconds.
 * Returns 0, or -1 with a message in ERR (address in use, already
 * started …).  Thread of BASE, which the caller keeps running.
 */
int metrics_start(struct event_base *base, const struct sockaddr *addr,
		  socklen_t len, struct queue *q, char *err, size_t errlen);

/*
 * metrics_local_addr — the address the listener is bound to (its real port
 * when metrics_start() was given port 0), into SS and *LEN.  0 ok, -1 when
 * not started.  Metrics thread.
 */
int metrics_local_addr(struct sockaddr_storage *ss, socklen_t *len);

/*
 * metrics_stop — close the listener and every scrape connection, forget the
 * hooks.  Histograms and stats keep their values.  Safe when not started.
 * Metrics thread, before BASE is freed.
 */
void metrics_stop(void);

/*
 * metrics_render — append one complete exposition (what GET /metrics
 * returns) to OUT.  For the control socket and tests; works whether or not
 * the listener is started (without metrics_start(): no queue families and
 * outpost_start_time_seconds 0).  Returns 0, or -1 when OUT could not grow
 * (its content is then incomplete).  Metrics thread.
 */
int metrics_render(struct evbuffer *out);

#endif
