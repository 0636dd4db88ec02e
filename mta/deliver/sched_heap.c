/*
 * sched_heap.c — the scheduler's retry heap (min-heap on due_ms).
 *
 * Owns: the array of message pointers, not the messages; keeps each
 * message's heap_idx equal to its slot.  Delivery loop thread only.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "mta/deliver/sched_int.h"

static bool
sched_heap_less(const struct sched_heap *h, size_t a, size_t b)
{
	return h->v[a]->due_ms < h->v[b]->due_ms;
}

static void
sched_heap_swap(struct sched_heap *h, size_t a, size_t b)
{
	struct sched_msg *t = h->v[a];

	h->v[a] = h->v[b];
	h->v[b] = t;
	h->v[a]->heap_idx = (uint32_t)a;
	h->v[b]->heap_idx = (uint32_t)b;
}

static void
sched_heap_up(struct sched_heap *h, size_t i)
{
	while (i > 0 && sched_heap_less(h, i, (i - 1) / 2)) {
		sched_heap_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
sched_heap_down(struct sched_heap *h, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && sched_heap_less(h, l, m))
			m = l;
		if (r < h->n && sched_heap_less(h, r, m))
			m = r;
		if (m == i)
			return;
		sched_heap_swap(h, i, m);
		i = m;
	}
}

int
sched_heap_push(struct sched_heap *h, struct sched_msg *m)
{
	struct sched_msg **nv;

	if (m->heap_idx != UINT32_MAX)
		return 0;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;

		if ((nv = realloc(h->v, cap * sizeof(*nv))) == NULL)
			return -1;
		h->v = nv;
		h->cap = cap;
	}
	h->v[h->n] = m;
	m->heap_idx = (uint32_t)h->n++;
	sched_heap_up(h, m->heap_idx);
	return 0;
}

struct sched_msg *
sched_heap_pop(struct sched_heap *h)
{
	struct sched_msg *m;

	if (h->n == 0)
		return NULL;
	m = h->v[0];
	h->n--;
	if (h->n > 0) {
		h->v[0] = h->v[h->n];
		h->v[0]->heap_idx = 0;
		sched_heap_down(h, 0);
	}
	m->heap_idx = UINT32_MAX;
	return m;
}

void
sched_heap_remove(struct sched_heap *h, struct sched_msg *m)
{
	size_t i = m->heap_idx;

	if (i == UINT32_MAX)
		return;
	h->n--;
	if (i != h->n) {
		h->v[i] = h->v[h->n];
		h->v[i]->heap_idx = (uint32_t)i;
		sched_heap_up(h, i);
		sched_heap_down(h, h->v[i]->heap_idx);
	}
	m->heap_idx = UINT32_MAX;
}

void
sched_heap_free(struct sched_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
