/*
 * scan.h — the malware scan of a submitted message, before its 250: the
 * message is streamed to clamd (zINSTREAM, over a few persistent
 * zIDSESSION connections of each I/O loop) unless the verdict cache
 * (scan_cache.h) already knows it or its parts, and the verdict comes back
 * to the session's loop.  An infected message is refused (554 5.7.1), its
 * rejection logged per recipient (hashed), counted, audited once per user
 * a minute and reported to the watchdog (watchdog_note_infected).
 *
 * Threads: scan_message and its done() on the caller's I/O loop (the
 * hashing and the MIME walk on the worker pool: no pass over megabytes on
 * a loop; the socket work event-driven on the loop: never a blocking
 * connect, read or write); the rest on any thread.  Memory: a scan holds
 * at most SCAN_OUT_MAX_BYTES of output beside the caller's body.
 */
#ifndef OUTPOST_MTA_RECEIVE_SCAN_H
#define OUTPOST_MTA_RECEIVE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/receive/scan_cache.h"

struct conf;
struct loop;
struct queue_envelope;

#define SCAN_OUT_MAX_BYTES (256 * 1024) /* output queued to clamd */
#define SCAN_CHUNK_BYTES   (64 * 1024)  /* one zINSTREAM chunk */
#define SCAN_REPLY_MAX                                                         \
	1024                  /* a clamd reply longer than this is             \
				 garbage */
#define SCAN_VERSION_MS 60000 /* VERSION asked this often */

enum scan_result {
	SCAN_R_CLEAN,    /* clamd (or the cache) found nothing */
	SCAN_R_INFECTED, /* name holds the signature */
	SCAN_R_ERROR,    /* clamd unreachable, timed out, or garbage: why */
	SCAN_R_OVERSIZE, /* over scan.max_size with on_oversize = refuse */
};

struct scan_job; /* scan.c's progress of one request */

struct scan_req {
	/* in */
	struct loop *loop;
	const struct conf *conf; /* the session's (scan { }) */
	const uint8_t *body;     /* the message as queued; the caller's,
				    unchanged until done */
	size_t len;
	size_t trace_len; /* BODY's first bytes are the server's Received:
			     field, unique to the message: left out of the
			     whole-body key of the verdict cache */
	void (*done)(struct scan_req *r); /* on LOOP, never inline */
	void *arg;
	/* out, when done runs */
	enum scan_result result;
	char name[SCAN_NAME_MAX]; /* printable ASCII, cut to fit */
	char why[160];            /* SCAN_R_ERROR: what went wrong */
	bool cached;              /* the verdict came from the cache */
	bool truncated;           /* only the first max_size bytes scanned */
	/* private */
	struct scan_job *job;
};

/*
 * scan_init — the verdict cache of C (scan.cache_entries, cache_ttl: they
 * take effect at a restart).  Main thread, before the loops run.  0, or -1
 * out of memory.  scan_free — release it and every loop's connections,
 * after the loops and the worker pool stopped.
 */
int scan_init(const struct conf *c);
void scan_free(void);

/*
 * scan_loop_start — open the scanner of loop L (its connections, the
 * VERSION probe every SCAN_VERSION_MS, with the configuration in force).
 * Post it to L (loop_post): it runs on L's thread.  ARG is L.
 */
void scan_loop_start(void *arg);

/* scan_reconf — C is in force (a reload): the probes use its scan.clamd;
 * scans use their session's.  Main thread. */
void scan_reconf(const struct conf *c);

/*
 * scan_message — scan R->body for R->conf (scan.clamd must be set); done()
 * follows on R->loop, never inline.  R is the caller's until then.
 * Loop thread.
 */
void scan_message(struct scan_req *r);

/*
 * scan_note_infected — the rejection of message ENV (its user, its
 * recipients hashed: one "rejection" event each, with the signature NAME),
 * counted, reported to the watchdog as IDENTITY's, audited through the
 * hook once per user a minute.  Any thread.
 */
void scan_note_infected(const struct queue_envelope *env, const char *identity,
			const char *name, int code, const char *reply);

/*
 * scan_audit_hook — FN(USER, NAME, ARG) records a detection in the audit
 * log (at most once per user a minute; USER NULL for relay clients); FN
 * must only hand the work over (loop_post).  Main thread, before the
 * loops run.
 */
typedef void scan_audit_fn(const char *user, const char *name, void *arg);
void scan_audit_hook(scan_audit_fn *fn, void *arg);

/*
 * scan_status — `outpost scan status`: clamd reachable, its version and
 * signature date, the cache's size and hit rate, scans, detections,
 * errors; a table or (JSON) one object.  Malloc'd text, *LEN its length;
 * NULL out of memory.  Any thread.
 */
char *scan_status(const struct conf *c, bool json, size_t *len);

/* scan_flush — forget every cached verdict (`outpost scan flush`).  Any
 * thread.  Returns the entries there were. */
uint64_t scan_flush(void);

/* scan_metrics_text — outpost_scan_* families, a metrics_text_fn. */
size_t scan_metrics_text(char *buf, size_t len);

/* scan_error_accepted — count a message queued unscanned (on_error =
 * accept).  Any thread. */
void scan_error_accepted(void);

#endif
