/*
 * history.h — the registry of what the daemon keeps per user or per
 * recipient (the AUTH limiter's blocks, per-user metrics, suppression
 * lists, watchdog history …), so that retention reaches every store
 * without knowing it: `outpost purge --user NAME` (and the removal clock of
 * a user gone from the configuration) calls every store's purge_user, and
 * the hourly sweep calls every store's expire with now - retention.history.
 *
 * Here, in mta/observe/, because observation is what keeps history and
 * every room that keeps some (receive, deliver, observe, a later guard)
 * may reach observe, while control and main, which purge and sweep, reach
 * it too (core <- observe <- {receive, deliver} <- control <- main).
 *
 * Threads: stores register on the main thread before the loops and the
 * pool run; purge_user and expire are called on a worker thread of the
 * pool (never an I/O loop: a store may read or write its disk), one call
 * of this registry at a time (history_purge_user and history_expire hold
 * one lock), so a store only guards its data against its other users.
 */
#ifndef OUTPOST_MTA_HISTORY_H
#define OUTPOST_MTA_HISTORY_H

#include <stdint.h>

#define HISTORY_STORES_MAX 16 /* stores registered at once */

/* One store of per-user or per-recipient history. */
struct history_store {
	const char *name; /* for the logs: "auth-limit", "metrics" … */
	/* Forget everything kept of USER (an AUTH user name); returns the
	 * records removed.  NULL: the store keeps nothing per user. */
	uint64_t (*purge_user)(const char *user, void *arg);
	/* Forget what was last touched before OLDER_THAN_MS (Unix ms,
	 * util_wall_ms's clock); returns the records removed.  NULL: the
	 * store's records end by themselves. */
	uint64_t (*expire)(int64_t older_than_ms, void *arg);
	void *arg;
};

/*
 * history_register — add S (copied; S->name and S->arg must outlive the
 * registry).  0, or -1 past HISTORY_STORES_MAX.  Main thread, at start-up,
 * before any purge or sweep.
 */
int history_register(const struct history_store *s);

/*
 * history_purge_user — every store's purge_user(USER); returns the records
 * removed in all.  Each store's count is logged at debug level.  A worker
 * thread (or any thread but an I/O loop).
 */
uint64_t history_purge_user(const char *user);

/*
 * history_expire — every store's expire(OLDER_THAN_MS); returns the
 * records removed in all (logged when not 0).  A worker thread (or any
 * thread but an I/O loop).
 */
uint64_t history_expire(int64_t older_than_ms);

/* history_clear — forget the stores (tests; shutdown).  Main thread. */
void history_clear(void);

#endif
