/*
 * quota.h — per user (tenant) quotas: the messages a user may submit per
 * UTC hour and per UTC day (user "NAME" { max_messages_per_hour,
 * max_messages_per_day }).  Checked at MAIL (over quota: 452 4.7.0),
 * counted as each message is queued.
 *
 * Alone, a node counts its own.  In a cluster (cluster { redis }), each
 * window's count lives in Redis: every second the cluster's link
 * (deliver/cluster.c) adds what this node queued since (quota_sync_take)
 * and learns the total (quota_sync_done), so a user over quota is refused
 * on every node within a second or so.  While Redis is away
 * (quota_shared(false)), a node may add to the last total it knew at most
 * its share of what was left (left / nodes, at least 1), and gives Redis
 * what it counted once Redis is back.
 *
 * Threads: any (one mutex; taken only for users with a quota).
 */
#ifndef OUTPOST_MTA_QUOTA_H
#define OUTPOST_MTA_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;

enum quota_period { QUOTA_HOUR, QUOTA_DAY, QUOTA__COUNT };

/* quota_open — the users' quotas of C; NODES: the cluster's nodes (1
 * without a cluster).  0, or -1 (out of memory).  Main thread. */
int quota_open(const struct conf *c, unsigned nodes);

/* quota_reconf — a reload: quotas of C (counts of users kept). */
void quota_reconf(const struct conf *c);

void quota_close(void);

/*
 * quota_check — may USER (NULL: a relay client, never limited) submit one
 * more message at NOW_MS?  true, or false with the period over quota, its
 * limit and when its window ends (*PERIOD, *LIMIT, *UNTIL_MS).
 */
bool quota_check(const char *user, int64_t now_ms, enum quota_period *period,
		 unsigned *limit, int64_t *until_ms);

/* quota_note — USER queued one message at NOW_MS. */
void quota_note(const char *user, int64_t now_ms);

/* quota_shared — Redis answers (true) or is away (false). */
void quota_shared(bool shared);

/*
 * quota_sync_take — the counts to give Redis, for every user with a quota
 * and each period: FN(user, period, window, delta, ARG), DELTA counted here
 * since the last sync (0: only the total is wanted).  What is taken is in
 * flight until quota_sync_done or quota_sync_failed.
 */
typedef void quota_sync_fn(const char *user, enum quota_period period,
			   int64_t window, uint64_t delta, void *arg);
void quota_sync_take(int64_t now_ms, quota_sync_fn *fn, void *arg);

/* quota_sync_done — Redis counted DELTA: USER's PERIOD WINDOW total is
 * TOTAL, all nodes together. */
void quota_sync_done(const char *user, enum quota_period period, int64_t window,
		     uint64_t delta, uint64_t total);

/* quota_sync_failed — DELTA did not reach Redis: counted here again. */
void quota_sync_failed(const char *user, enum quota_period period,
		       int64_t window, uint64_t delta);

/* quota_period_name — "hour" or "day". */
const char *quota_period_name(enum quota_period p);

/* quota_metrics_text — a metrics_text_fn: by user and period, refusals,
 * the count used in the current window and the quota. */
size_t quota_metrics_text(char *buf, size_t len);

#endif
