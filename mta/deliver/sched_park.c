/*
 * sched_park.c — messages held in place while their destination is paused
 * (struct sched_park, sched_int.h): no round, no queue write, no log line.
 *
 * Owns: each park's array (a min-heap on expiry) and timer.  Must not: move
 * a parked message's due time (the key of its schedule entry on disk; it
 * stays in the past, so a restart or a release finds it due at once).
 * Delivery loop thread.  Invariant: m->park is set exactly while M is in
 * that park's array at m->park_idx.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"

static void
sched_park_swap(struct sched_park *pk, uint32_t a, uint32_t b)
{
	struct sched_park_ent t = pk->v[a];

	pk->v[a] = pk->v[b];
	pk->v[b] = t;
	pk->v[a].m->park_idx = a;
	pk->v[b].m->park_idx = b;
}

static void
sched_park_up(struct sched_park *pk, uint32_t i)
{
	while (i > 0 && pk->v[i].expires_ms < pk->v[(i - 1) / 2].expires_ms) {
		sched_park_swap(pk, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
sched_park_down(struct sched_park *pk, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < pk->n && pk->v[l].expires_ms < pk->v[m].expires_ms)
			m = l;
		if (r < pk->n && pk->v[r].expires_ms < pk->v[m].expires_ms)
			m = r;
		if (m == i)
			return;
		sched_park_swap(pk, i, m);
		i = m;
	}
}

/* The timer at the first expiry, or at until_ms if that comes first. */
static void
sched_park_arm(struct sched_park *pk)
{
	int64_t at = pk->until_ms != 0 ? pk->until_ms : INT64_MAX;

	if (pk->timer == NULL)
		return;
	if (pk->n > 0 && pk->v[0].expires_ms < at)
		at = pk->v[0].expires_ms;
	if (pk->n == 0 || at == INT64_MAX) {
		evtimer_del(pk->timer);
		return;
	}
	sched_timer_ms(pk->timer, at - util_wall_ms());
}

/* Entry I out of the heap; its message no longer parked. */
static void
sched_park_take(struct sched_park *pk, uint32_t i)
{
	struct sched_msg *m = pk->v[i].m;

	pk->n--;
	if (i < pk->n) {
		pk->v[i] = pk->v[pk->n];
		pk->v[i].m->park_idx = i;
		sched_park_down(pk, i);
		sched_park_up(pk, i);
	}
	m->park = NULL;
	m->park_idx = UINT32_MAX;
	sched->nparked--;
	if (pk->total != NULL)
		atomic_fetch_sub_explicit(pk->total, 1, memory_order_relaxed);
}

static void
sched_park_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_park *pk = arg;
	int64_t now = util_wall_ms();
	struct sched_msg *m;

	(void)fd;
	(void)what;
	if (pk->until_ms != 0 && pk->until_ms <= now) {
		pk->until_ms = 0;
		sched_park_release(pk, UINT32_MAX);
		return;
	}
	/* Their time in the queue is over: they go to expire (a DSN with
	 * their last real error), paused or not. */
	while (pk->n > 0 && pk->v[0].expires_ms <= now) {
		m = pk->v[0].m;
		sched_park_take(pk, 0);
		sched_msg_due(m);
	}
	sched_park_arm(pk);
	sched_retry_arm();
}

int
sched_park_add(struct sched_park *pk, struct sched_msg *m, int64_t expires_ms)
{
	struct sched_park_ent *v;
	uint32_t cap;

	if (pk->timer == NULL &&
	    (pk->timer = evtimer_new(sched->loop->base, sched_park_timer_cb,
				     pk)) == NULL)
		return -1;
	if (pk->n == pk->cap) {
		cap = pk->cap ? pk->cap * 2 : 16;
		if ((v = realloc(pk->v, cap * sizeof(*v))) == NULL)
			return -1;
		pk->v = v;
		pk->cap = cap;
	}
	pk->v[pk->n].m = m;
	pk->v[pk->n].expires_ms = expires_ms;
	m->park = pk;
	m->park_idx = pk->n++;
	sched->nparked++;
	if (pk->total != NULL)
		atomic_fetch_add_explicit(pk->total, 1, memory_order_relaxed);
	sched_park_up(pk, m->park_idx);
	if (m->park_idx == 0)
		sched_park_arm(pk); /* the first to expire now */
	return 0;
}

void
sched_park_remove(struct sched_msg *m)
{
	if (m->park != NULL)
		sched_park_take(m->park, m->park_idx);
}

void
sched_park_release(struct sched_park *pk, uint32_t max)
{
	struct sched_msg *m;
	uint32_t k;

	/* The oldest first (they expire first). */
	for (k = 0; k < max && pk->n > 0; k++) {
		m = pk->v[0].m;
		sched_park_take(pk, 0);
		sched_msg_due(m);
	}
	sched_park_arm(pk);
	sched_retry_arm();
}

void
sched_park_free(struct sched_park *pk)
{
	if (pk->timer != NULL)
		event_free(pk->timer);
	if (pk->total != NULL)
		atomic_fetch_sub_explicit(pk->total, pk->n,
					  memory_order_relaxed);
	free(pk->v);
	pk->v = NULL;
	pk->n = pk->cap = 0;
	pk->timer = NULL;
}
