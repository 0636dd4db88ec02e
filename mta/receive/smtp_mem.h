/*
 * smtp_mem.h — the memory budget for message bodies being received
 * (limits.max_body_memory), shared by the sessions of every SMTP loop.
 *
 * A session charges the capacity it allocates (smtp_mem_take) and gives it
 * back when the body is freed or queued (smtp_mem_give).  A session that
 * needs more than is left waits in one FIFO (smtp_mem_wait) with its
 * reading paused; memory given back goes to the oldest waiter first.  When
 * only waiters hold the budget (nobody could ever give memory back), the
 * newest waiters are refused until the oldest can be served.
 */
#ifndef OUTPOST_MTA_SMTP_MEM_H
#define OUTPOST_MTA_SMTP_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_mem_state {
	SMTP_MEM_IDLE,
	SMTP_MEM_QUEUED,  /* in the FIFO */
	SMTP_MEM_GRANTED, /* want is charged to the budget now */
	SMTP_MEM_REFUSED, /* dropped to unblock the head: fail the message */
};

/* One waiter, embedded in its session.  The caller sets answer, want and
 * held; the rest belongs to smtp_mem.c. */
struct smtp_mem_waiter {
	/* Called once, from whichever thread gave the memory back or waited,
	 * with the budget's lock held: it must only hand off (loop_post). */
	void (*answer)(struct smtp_mem_waiter *);
	uint64_t want; /* the growth asked for */
	uint64_t held; /* what the waiter holds already */
	enum smtp_mem_state state;
	bool cancelled;
	struct smtp_mem_waiter *prev, *next;
};

/* smtp_mem_init — the budget in bytes.  Main thread, before the loops. */
void smtp_mem_init(uint64_t budget);

/*
 * smtp_mem_take — charge N bytes.  Unless FORCE (a few bytes that cannot
 * wait: a trace header, a final CRLF), fails when they do not fit or when
 * someone waits already (first come, first served).  Any thread.
 */
bool smtp_mem_take(uint64_t n, bool force);

/* smtp_mem_give — N bytes charged before are free; waiters may be
 * answered (from this thread).  Any thread. */
void smtp_mem_give(uint64_t n);

/* smtp_mem_wait — queue W (want, held and answer set).  W may be answered
 * before this returns.  The owner's thread. */
void smtp_mem_wait(struct smtp_mem_waiter *w);

/*
 * smtp_mem_cancel — W no longer waits.  Returns true when it was still in
 * the queue (no answer will come); false when the answer is on its way
 * (smtp_mem_collect() then reports it cancelled).  The owner's thread.
 */
bool smtp_mem_cancel(struct smtp_mem_waiter *w);

/*
 * smtp_mem_collect — in the answer's handler, on the owner's thread: the
 * answer (SMTP_MEM_GRANTED or SMTP_MEM_REFUSED); *CANCELLED when the owner
 * cancelled meanwhile (a grant must then be given back).  W is idle after.
 */
enum smtp_mem_state smtp_mem_collect(struct smtp_mem_waiter *w,
				     bool *cancelled);

/* smtp_mem_used — bytes charged now (tests, diagnostics).  Any thread. */
uint64_t smtp_mem_used(void);

/*
 * smtp_mem_metrics_text — the budget for a scrape (a metrics_text_fn):
 * outpost_smtp_body_memory_bytes (charged now: the bodies the sessions
 * hold, the chunks they spooled that are not yet committed) and
 * outpost_smtp_body_memory_limit_bytes.  Any thread.
 */
size_t smtp_mem_metrics_text(char *buf, size_t len);

#endif
