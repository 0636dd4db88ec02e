/*
 * cluster.h — limits shared with the other nodes of a cluster through Redis
 * (conf `cluster { redis = … }`): connection leases, so that a destination's
 * max_connections holds across every node, and the messages a destination
 * takes per minute and per hour, counted once for the whole cluster.
 *
 * A lease is a member of a Redis sorted set per path (pool and MX set),
 * scored by its expiry on Redis' clock; taking one purges the expired and
 * counts the rest in one Lua script.  A rate is a "next message not
 * before" time per limit in Redis (GCRA without a burst): a message goes
 * when every limit's time has come, and moves each by its interval.  Held
 * leases are renewed every third of their life, so a node that dies frees its
 * leases when they expire. While Redis is away (unreachable, refusing, or
 * slower than cluster.timeout), each node keeps to its share of each limit
 * (limit / cluster.nodes, at least 1), says so once, and counts it; the
 * connections it opens meanwhile get local leases, registered in Redis when it
 * is back.
 *
 * Threads: every call on the scheduler's loop (the one given to
 * cluster_init), but cluster_metrics_text (any thread).  Callbacks are
 * never called from within the call that asked.
 */
#ifndef OUTPOST_MTA_CLUSTER_H
#define OUTPOST_MTA_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct conf_cluster;

enum cluster_answer {
	CLUSTER_GRANTED, /* a lease: the caller may open one connection */
	CLUSTER_DENIED,  /* the cluster is at the limit: ask again later */
	CLUSTER_AWAY,    /* Redis went away: keep to the share */
};

/* The answer to cluster_lease_ask; LEASE is the lease when GRANTED, else
 * 0.  Runs on the scheduler's loop. */
typedef void cluster_lease_fn(enum cluster_answer a, uint64_t lease, void *arg);

/* cluster_changed_fn — Redis came back or went away: the limits changed
 * (the scheduler kicks its paths). */
typedef void cluster_changed_fn(void);

/*
 * cluster_init — read CC's password file (if any) and get ready to connect
 * on BASE once its loop runs; CHANGED is called on each change between
 * shared limits and shares.  With no cluster configured, does nothing.
 * 0, or -1 with err.  Main thread, before the loop runs.
 */
int cluster_init(struct event_base *base, const struct conf_cluster *cc,
		 cluster_changed_fn *changed, char *err, size_t errlen);

/* cluster_on — a cluster is configured (leases are needed). */
bool cluster_on(void);

/* cluster_shared — configured and Redis answers: limits are shared. */
bool cluster_shared(void);

/* cluster_share — what this node may use of LIMIT while Redis is away. */
unsigned cluster_share(unsigned limit);

/*
 * cluster_lease_ask — a lease under KEY (a path's name; copied) while the
 * cluster holds fewer than LIMIT.  0: FN follows with ARG (never from
 * within this call); -1: Redis is away (use cluster_lease_local).
 */
int cluster_lease_ask(const char *key, unsigned limit, cluster_lease_fn *fn,
		      void *arg);

/* cluster_lease_local — a lease under KEY for a connection opened on the
 * share while Redis is away: registered in Redis once it is back.  0 when
 * out of memory (the connection then goes unleased). */
uint64_t cluster_lease_local(const char *key);

/* cluster_lease_drop — LEASE (from either call; 0 is ignored) is over. */
void cluster_lease_drop(uint64_t lease);

/* The answer to cluster_rate_ask: GRANTED messages may go now (> 0), or
 * none and the ms to wait before asking again (WAIT_MS > 0), or Redis went
 * away (WAIT_MS < 0: keep to the share).  On the scheduler's loop. */
typedef void cluster_rate_fn(unsigned granted, int64_t wait_ms, void *arg);

/*
 * cluster_rate_ask — may WANT messages go under KEY now, at most one every
 * IV[0] ms on the minute limit, IV[1] on the hour limit and IV[2] on the
 * day's (a warm-up's) budget (0: that limit is off), counted across the
 * cluster?  0: FN follows with ARG (never from within this call); -1: Redis
 * is away (keep to the share locally).
 */
#define CLUSTER_RATES 3
int cluster_rate_ask(const char *key, const unsigned iv[CLUSTER_RATES],
		     unsigned want, cluster_rate_fn *fn, void *arg);

/*
 * Adaptive back-off shared by the nodes: a node that takes a destination a
 * step down says so (cluster_throttle_push: KEY at LEVEL for REMAIN_MS);
 * every second each node reads the steps in force and FN (the hook) hears
 * each: KEY, its LEVEL, the ms it has left.  On the scheduler's loop.
 */
typedef void cluster_throttle_fn(const char *key, unsigned level,
				 int64_t remain_ms);
void cluster_throttle_hook(cluster_throttle_fn *fn);
/* cluster_throttle_lookup — the step in force for KEY as last read
 * (*LEVEL, *REMAIN_MS), for a path made since: true if there is one. */
bool cluster_throttle_lookup(const char *key, unsigned *level,
			     int64_t *remain_ms);
void cluster_throttle_push(const char *key, unsigned level, int64_t remain_ms);

/* cluster_stop — stopping: every lease dropped, the link closed; asks
 * still waiting get CLUSTER_AWAY. */
void cluster_stop(void);

/* cluster_free — what is left (main thread, after the loop ended). */
void cluster_free(void);

/* cluster_metrics_text — a metrics_text_fn: the cluster's families. */
size_t cluster_metrics_text(char *buf, size_t len);

#endif
