/*
 * smtp_mem.c — the body memory budget (see smtp_mem.h).
 *
 * Owns: the charge (an atomic: takes and gives are lock-free) and the FIFO
 * of waiters (behind one mutex, taken only when someone waits).  Called from
 * every SMTP loop.  Invariants: a waiter is in the FIFO iff its state is
 * SMTP_MEM_QUEUED; held_waiting is the sum of the queued waiters' held.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

#include "mta/receive/smtp_mem.h"

static uint64_t mem_budget;
static _Atomic uint64_t mem_used;
static _Atomic unsigned mem_nwaiting;
static pthread_mutex_t mem_mu = PTHREAD_MUTEX_INITIALIZER;
static struct smtp_mem_waiter *mem_head, *mem_tail;
static uint64_t mem_held_waiting;

void
smtp_mem_init(uint64_t budget)
{
	mem_budget = budget;
}

uint64_t
smtp_mem_used(void)
{
	return atomic_load(&mem_used);
}

size_t
smtp_mem_metrics_text(char *buf, size_t len)
{
	int n = snprintf(
	    buf, len,
	    "# HELP outpost_smtp_body_memory_bytes Memory charged to the body "
	    "budget now: bodies the SMTP sessions hold, and spooled chunks "
	    "not yet committed.\n"
	    "# TYPE outpost_smtp_body_memory_bytes gauge\n"
	    "outpost_smtp_body_memory_bytes %llu\n"
	    "# HELP outpost_smtp_body_memory_limit_bytes The body budget "
	    "(limits.max_body_memory).\n"
	    "# TYPE outpost_smtp_body_memory_limit_bytes gauge\n"
	    "outpost_smtp_body_memory_limit_bytes %llu\n",
	    (unsigned long long)atomic_load(&mem_used),
	    (unsigned long long)mem_budget);

	return n < 0 ? 0 : (size_t)n;
}

/* Charge N if it fits under the budget (FORCE: whatever the budget). */
static bool
smtp_mem_charge(uint64_t n, bool force)
{
	uint64_t cur = atomic_load(&mem_used);

	do {
		if (!force && cur + n > mem_budget)
			return false;
	} while (!atomic_compare_exchange_weak(&mem_used, &cur, cur + n));
	return true;
}

bool
smtp_mem_take(uint64_t n, bool force)
{
	if (!force && atomic_load(&mem_nwaiting) > 0)
		return false;
	return smtp_mem_charge(n, force);
}

static void
smtp_mem_unlink_locked(struct smtp_mem_waiter *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		mem_head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		mem_tail = w->prev;
	w->next = w->prev = NULL;
	mem_held_waiting -= w->held;
	atomic_fetch_sub(&mem_nwaiting, 1);
}

/*
 * Answer the head while what it wants fits.  When it could not fit even
 * once every session still reading gave its memory back (the waiters hold
 * the rest), refuse the newest waiter and look again.
 */
static void
smtp_mem_grant_locked(void)
{
	struct smtp_mem_waiter *w;

	while ((w = mem_head) != NULL) {
		if (smtp_mem_charge(w->want, false)) {
			smtp_mem_unlink_locked(w);
			w->state = SMTP_MEM_GRANTED;
			w->answer(w);
			continue;
		}
		if (mem_held_waiting + w->want <= mem_budget)
			return; /* sessions still reading will give some back */
		w = mem_tail;
		smtp_mem_unlink_locked(w);
		w->state = SMTP_MEM_REFUSED;
		w->answer(w);
	}
}

void
smtp_mem_give(uint64_t n)
{
	if (n == 0)
		return;
	atomic_fetch_sub(&mem_used, n);
	if (atomic_load(&mem_nwaiting) == 0)
		return;
	pthread_mutex_lock(&mem_mu);
	smtp_mem_grant_locked();
	pthread_mutex_unlock(&mem_mu);
}

void
smtp_mem_wait(struct smtp_mem_waiter *w)
{
	pthread_mutex_lock(&mem_mu);
	w->state = SMTP_MEM_QUEUED;
	w->cancelled = false;
	w->next = NULL;
	w->prev = mem_tail;
	if (mem_tail != NULL)
		mem_tail->next = w;
	else
		mem_head = w;
	mem_tail = w;
	mem_held_waiting += w->held;
	atomic_fetch_add(&mem_nwaiting, 1);
	/* Memory given back since the caller's smtp_mem_take() failed found
	 * nobody waiting: look again now that W is in the queue. */
	smtp_mem_grant_locked();
	pthread_mutex_unlock(&mem_mu);
}

bool
smtp_mem_cancel(struct smtp_mem_waiter *w)
{
	bool queued;

	pthread_mutex_lock(&mem_mu);
	queued = w->state == SMTP_MEM_QUEUED;
	if (queued) {
		smtp_mem_unlink_locked(w);
		w->state = SMTP_MEM_IDLE;
		smtp_mem_grant_locked(); /* those behind may fit now */
	} else {
		w->cancelled = true;
	}
	pthread_mutex_unlock(&mem_mu);
	return queued;
}

enum smtp_mem_state
smtp_mem_collect(struct smtp_mem_waiter *w, bool *cancelled)
{
	enum smtp_mem_state st;

	pthread_mutex_lock(&mem_mu);
	st = w->state;
	*cancelled = w->cancelled;
	w->state = SMTP_MEM_IDLE;
	w->cancelled = false;
	pthread_mutex_unlock(&mem_mu);
	return st;
}
