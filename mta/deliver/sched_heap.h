/*
 * sched_heap.h — the scheduler's retry heap: a binary min-heap of messages
 * on their due time (sched_msg.due_ms), each message knowing its place
 * (sched_msg.heap_idx, UINT32_MAX when out) so it can be taken out from the
 * middle.  Equal due times come out in no particular order.  Not locked:
 * the delivery loop thread only.
 */
#ifndef OUTPOST_MTA_SCHED_HEAP_H
#define OUTPOST_MTA_SCHED_HEAP_H

#include <stddef.h>

struct sched_msg; /* sched_int.h */

struct sched_heap {
	struct sched_msg **v;
	size_t n, cap;
};

/* sched_heap_push — add M (a no-op when it is in already).  Returns 0, or
 * -1 when the heap cannot grow (M is then not in it). */
int sched_heap_push(struct sched_heap *h, struct sched_msg *m);

/* sched_heap_pop — take out the message due first; NULL when empty. */
struct sched_msg *sched_heap_pop(struct sched_heap *h);

/* sched_heap_remove — take M out, wherever it is (a no-op when out). */
void sched_heap_remove(struct sched_heap *h, struct sched_msg *m);

/* sched_heap_top — the message due first, left in; NULL when empty. */
static inline struct sched_msg *
sched_heap_top(const struct sched_heap *h)
{
	return h->n > 0 ? h->v[0] : NULL;
}

/* sched_heap_free — release the array (the messages are not the heap's). */
void sched_heap_free(struct sched_heap *h);

#endif
