/*
 * stats.h — process-wide counters, read by the metrics endpoint
 * (mta/observe/metrics.c renders every field; a new field needs a line in its
 * table) and the shutdown summary.  Increment with STATS_INC(); any thread.
 * Counters only ever grow.  The rejected_* fields are disjoint reasons
 * (outpost_messages_rejected_total{reason=…}): bump exactly one per refusal.
 *
 * Each thread counts in a block of its own (mta/observe/counters.c, made at
 * its first count), so that loops counting every message (a reception, a
 * delivery) never write to one cache line together; STATS_GET and the
 * metrics endpoint add the blocks up, and a thread's block is folded into
 * `stats` when the thread ends.  `stats` also counts for a thread whose
 * block could not be made, and takes what is stored into it directly.
 */
#ifndef OUTPOST_MTA_STATS_H
#define OUTPOST_MTA_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct stats {
	_Atomic uint64_t sessions;         /* accepted connections */
	_Atomic uint64_t sessions_refused; /* over a session limit */
	_Atomic uint64_t tls_handshakes;
	_Atomic uint64_t tls_failures;
	_Atomic uint64_t messages_accepted; /* 250 after commit */
	_Atomic uint64_t recipients_accepted;
	_Atomic uint64_t messages_rejected; /* refused at end of data */
	_Atomic uint64_t queue_failures;    /* 4xx because the commit failed */
	_Atomic uint64_t rejected_relay;
	_Atomic uint64_t rejected_sender;
	_Atomic uint64_t rejected_smuggling; /* bare CR/LF */
	_Atomic uint64_t rejected_dmarc;     /* would fail DMARC, or 451 */
	_Atomic uint64_t rejected_size;      /* over the size limit: at MAIL
						(SIZE=) or at the end of data */
	_Atomic uint64_t rejected_content;   /* NUL, line > 998, malformed
						header, not one From: address */
	_Atomic uint64_t dkim_signatures;
	_Atomic uint64_t auth_success;
	_Atomic uint64_t auth_failures;
	_Atomic uint64_t auth_blocked;
	_Atomic uint64_t auth_verifications; /* Argon2id runs */
	_Atomic uint64_t timeouts;
	_Atomic uint64_t protocol_errors;
	/* delivery, per recipient */
	_Atomic uint64_t delivered;
	_Atomic uint64_t deferred;
	_Atomic uint64_t bounced;
	_Atomic uint64_t expired;
	/* adaptive back-off: steps down taken (destination throttle_on) */
	_Atomic uint64_t throttle_steps;
	/* pauses found past their end with nothing set to end them */
	_Atomic uint64_t pauses_overdue;
	/* feedback-loop reports (mta/receive/arf.h), by result */
	_Atomic uint64_t complaints;
	_Atomic uint64_t fb_ok;
	_Atomic uint64_t fb_malformed;
	_Atomic uint64_t fb_unverified;
	_Atomic uint64_t fb_unknown;
};

extern struct stats stats;

/* The calling thread's block (NULL until its first count). */
extern _Thread_local struct stats *stats_self;
/* stats_self_make — make the calling thread's block and return it; &stats
 * when out of memory. */
struct stats *stats_self_make(void);
/* stats_sum — the field at byte offset OFF of struct stats, over `stats`
 * and every thread's block. */
uint64_t stats_sum(size_t off);

#define STATS_MINE() (stats_self != NULL ? stats_self : stats_self_make())
#define STATS_INC(field)                                                       \
	atomic_fetch_add_explicit(&STATS_MINE()->field, 1, memory_order_relaxed)
#define STATS_ADD(field, n)                                                    \
	atomic_fetch_add_explicit(&STATS_MINE()->field, (n),                   \
				  memory_order_relaxed)
#define STATS_GET(field) stats_sum(offsetof(struct stats, field))

#endif
