/*
 * scan_int.h — between scan.c (requests, the cache, counts, reports) and
 * scan_clamd.c (each loop's connections to clamd and the protocol).
 */
#ifndef OUTPOST_MTA_RECEIVE_SCAN_INT_H
#define OUTPOST_MTA_RECEIVE_SCAN_INT_H

#include <stdatomic.h>

#include "mta/receive/scan.h"

/* A byte range of the body streamed to clamd. */
struct scan_seg {
	size_t off, len;
};

struct scan_job {
	struct scan_req *r;
	struct scan_job *next; /* waiting for a connection */
	struct event *timer;   /* the whole scan's timeout */
	struct scan_part parts[SCAN_PARTS_MAX];
	size_t nparts;
	unsigned unknown; /* leaves the cache did not know */
	size_t lone;      /* the index of the one unknown leaf */
	uint8_t whole[SCAN_HASH_BYTES];
	bool use_cache; /* hashes made: verdicts may be put */
	struct scan_seg segs[SCAN_PARTS_MAX + 1];
	size_t nsegs, seg, seg_off; /* the streaming cursor */
	uint64_t streamed;
	bool retried; /* once more on a fresh connection */
	struct scan_conn *conn;
};

/* Counters (relaxed atomics) and clamd's last word. */
struct scan_counts {
	atomic_uint_fast64_t scans; /* streamed to clamd */
	atomic_uint_fast64_t clean, infected, errors, timeouts, garbage;
	atomic_uint_fast64_t cached_clean, cached_infected;
	atomic_uint_fast64_t truncated, oversize, accepted_on_error;
	atomic_uint_fast64_t bytes; /* streamed */
	atomic_int reachable;       /* -1 unknown, 0 no, 1 yes */
};
extern struct scan_counts scan_counts;

/*
 * scan_clamd.c:
 * scan_clamd_submit   stream J (its segments) to R's clamd; J->r->done
 *                     follows through scan_job_finish.  Loop thread.
 * scan_clamd_free_all every loop's connections (main, loops stopped)
 * scan_job_finish     (scan.c) the verdict is in R: cache puts, counts,
 *                     done().  Loop thread.
 * scan_version_set    (scan.c) clamd's VERSION reply TEXT: kept, and the
 *                     cache flushed when the signatures changed
 * scan_conf_get       (scan.c) the configuration in force, referenced
 */
void scan_clamd_submit(struct scan_job *j);
void scan_clamd_free_all(void);
void scan_job_finish(struct scan_job *j);
void scan_version_set(const char *text);
const struct conf *scan_conf_get(void);

#endif
