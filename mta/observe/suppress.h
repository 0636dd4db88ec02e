/*
 * suppress.h — the suppression list as the daemon uses it: what feeds it
 * (a hard bounce of the bad-mailbox or bad-domain kind, a complaint, an
 * operator), what consults it (the RCPT check at submission), what ends
 * its entries (retention.history, a user purged), and its metrics.
 *
 * The store is the queue's "suppress" database (queue/queue.h,
 * queue_suppress_*).  Both hashes of an entry are the delivery log's
 * (its key and queue_addr_hash, as evlog_hash): the recipient's is the
 * rcpt_hash of the delivery log's lines and what `outpost hash ADDRESS` prints,
 * the scope's that of the sending identity (conf_identity) as `outpost hash
 * NAME` prints it, or all zero for the global list.  No address or name is kept
 * in clear, nor written anywhere by this module.
 *
 * Settings (suppress { enabled scope action }, retention.history) are read
 * from atomics that suppress_configure() sets, so every thread sees one
 * value at a time without a lock.
 *
 * Threads: suppress_init() and suppress_configure() on the main thread;
 * the rest on any thread, and none blocks: a change is a queue op (the
 * writer's group commit), a check is one read transaction.
 */
#ifndef OUTPOST_MTA_SUPPRESS_H
#define OUTPOST_MTA_SUPPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "queue/queue.h"

enum suppress_verdict {
	SUPPRESS_PASS,   /* not suppressed (or the list is off) */
	SUPPRESS_REFUSE, /* suppressed: 550 5.1.1 */
	SUPPRESS_DROP,   /* suppressed: 250, not queued */
};

/* What a check found. */
struct suppress_hit {
	enum queue_suppress_reason reason;
	int64_t time_ms;
	bool global; /* the global entry, not the identity's */
};

/*
 * suppress_init — use Q (which must outlive every other call), C's
 * settings and HASH_KEY (the delivery log's, log.hash_key_file: copied to
 * locked memory); register the list with the history registry
 * (retention's sweep, `outpost purge --user`).  0, or -1 (out of memory,
 * the registry is full).  Main thread, at start-up.
 */
int suppress_init(struct queue *q, const struct conf *c,
		  const uint8_t hash_key[QUEUE_KEY_BYTES]);

/* suppress_configure — take C's settings (a reload).  Main thread. */
void suppress_configure(const struct conf *c);

/*
 * suppress_scope_hash — the scope of IDENTITY's entries under the
 * configured scope into OUT: the hash of IDENTITY (scope user), all zero
 * (scope global, or IDENTITY NULL).  Any thread.
 */
void suppress_scope_hash(const char *identity,
			 uint8_t out[QUEUE_SUPPRESS_HASH_BYTES]);

/* suppress_addr_hash — ADDR's recipient hash (evlog_hash as bytes) into
 * OUT; -1 when the delivery log's key is not loaded.  Any thread. */
int suppress_addr_hash(const char *addr,
		       uint8_t out[QUEUE_SUPPRESS_HASH_BYTES]);

/*
 * suppress_check — may IDENTITY (conf_identity) send to RCPT?  Looks at
 * the global entry, then (scope user) IDENTITY's; an entry older than
 * retention.history counts as gone.  HIT (may be NULL) gets what was
 * found.  SUPPRESS_PASS when the list is off or unreadable (logged: a
 * broken list must not stop mail).  Counts the verdict in the metrics.
 * Any thread, an SMTP loop too (one read transaction, no write).
 */
enum suppress_verdict suppress_check(const char *identity, const char *rcpt,
				     struct suppress_hit *hit);

/*
 * suppress_note_result — a delivery result of RCPT sent by IDENTITY in
 * message ID: BOUNCED (permanent failure) of CATEGORY CONF_BC_BAD_MAILBOX or
 * CONF_BC_BAD_DOMAIN puts RCPT on the list (an "admin" event in the
 * delivery log says so, hashed).  Anything else: nothing.  0, or -1 (out
 * of memory: not added).  Any thread; never blocks.
 */
int suppress_note_result(const char *identity, const char *rcpt, uint64_t id,
			 bool bounced, enum conf_bounce_category category);

/* suppress_complaint — RCPT complained about mail of IDENTITY (message ID,
 * 0 unknown): on the list, reason complaint.  0, or -1.  Any thread;
 * never blocks. */
int suppress_complaint(const char *identity, const char *rcpt, uint64_t id);

/*
 * suppress_add — put E on the list; suppress_remove — take (SCOPE, RCPT)
 * off it.  DONE(status, ARG) (may be NULL) on the writer thread once
 * committed.  0 submitted, -1 out of memory.  Any thread; never blocks.
 */
int suppress_add(const struct queue_suppress_entry *e,
		 queue_suppress_done_fn *done, void *arg);
int suppress_remove(const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		    const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		    queue_suppress_done_fn *done, void *arg);

/* suppress_get — the entry (SCOPE, RCPT), as queue_suppress_get (an
 * entry past retention.history counts as none).  Any thread. */
int suppress_get(const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		 const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		 struct queue_suppress_entry *out, char *err, size_t errlen);

/* suppress_walk — as queue_suppress_walk over the list in force.  A
 * worker thread (never an I/O loop). */
int suppress_walk(const uint8_t *scope, queue_suppress_fn *fn, void *arg,
		  char *err, size_t errlen);

/* suppress_scope_global — is the configured scope global?  Any thread. */
bool suppress_scope_global(void);

/* suppress_event — an EV_SUPPRESSED line for RCPT (ACTION "refused" or
 * "dropped"), sent by IDENTITY in SMTP session SESSION (hex) from CLIENT,
 * with HIT's reason.  Any thread. */
void suppress_event(const char *identity, const char *rcpt, const char *session,
		    const char *client, const char *action,
		    const struct suppress_hit *hit);

/*
 * Sharing with a cluster (mta/deliver/cluster.c): FN hears every change
 * made on this node (an operator's add or remove, an automatic add: E,
 * REMOVED), from whatever thread made it; suppress_apply makes a change
 * another node made, without telling FN again.  Both hashes of an entry
 * are keyed with the delivery log's key: nodes that share a list share
 * log.hash_key_file.
 */
typedef void suppress_share_fn(const struct queue_suppress_entry *e,
			       bool removed);
void suppress_share_hook(suppress_share_fn *fn);
int suppress_apply(const struct queue_suppress_entry *e, bool removed);

/* suppress_metrics_text — outpost_suppressed_total{action} and
 * outpost_suppression_entries (metrics_text_fn). */
size_t suppress_metrics_text(char *buf, size_t len);

#endif
