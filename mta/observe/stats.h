/*
 * stats.h — process-wide counters (atomics), read by the metrics endpoint
 * (mta/observe/metrics.c renders every field; a new field needs a line in its
 * table) and the shutdown summary.  Increment with STATS_INC(); any thread.
 * Counters only ever grow.  The rejected_* fields are disjoint reasons
 * (outpost_messages_rejected_total{reason=…}): bump exactly one per refusal.
 */
#ifndef OUTPOST_MTA_STATS_H
#define OUTPOST_MTA_STATS_H

#include <stdatomic.h>
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

#define STATS_INC(field)                                                       \
	atomic_fetch_add_explicit(&stats.field, 1, memory_order_relaxed)
#define STATS_ADD(field, n)                                                    \
	atomic_fetch_add_explicit(&stats.field, (n), memory_order_relaxed)
#define STATS_GET(field)                                                       \
	atomic_load_explicit(&stats.field, memory_order_relaxed)

#endif
