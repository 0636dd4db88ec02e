/*
 * sched_export.c — the scheduler's side of `outpost queue export`: which
 * messages an export takes (a copy, or claimed for removal), their
 * release when it fails, and their removal once the archive is on disk.
 * Owns: nothing past a call (the claim is SM_EXPORT on each message).
 * Must not: claim a message in a round (it could be delivered here and
 * by the node that imports it), or remove one before the archive's fsync
 * (the control room calls sched_export_remove only then).  Each shard
 * claims and releases its own messages; a claim is gathered back on the
 * caller's loop.  Delivery loops' threads.
 */
#include <stdlib.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"

static int
sched_export_cmp(const void *a, const void *b)
{
	const struct sched_export_item *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Take M into OUT (with REMOVE: claim it); false when it is skipped. */
static bool
sched_export_take(struct sched_msg *m, bool remove,
		  struct sched_export_item *out)
{
	if (m->flags & (SM_DELETED | SM_CORRUPT | SM_EXPORT))
		return false;
	if (remove &&
	    (m->r != NULL || (m->flags & (SM_LOADING | SM_HOLD_REQ |
					  SM_DELETE_REQ | SM_BOUNCE_REQ))))
		return false;
	out->id = m->id;
	out->due_ms = m->due_ms;
	out->held = (m->flags & SM_HELD) != 0;
	if (!remove)
		return true;
	m->flags |= SM_EXPORT;
	if (!out->held) {
		/* Out of the schedule: no round starts meanwhile. */
		sched_heap_remove(&sched->heap, m);
		sched_park_remove(m);
	}
	return true;
}

/* A claim spread over the shards, and one shard's part of it. */
struct sched_export_claim {
	struct loop *home;
	sched_export_claim_fn *cb;
	void *arg;
	bool all, remove;
	unsigned left; /* parts not back */
	bool failed;
	unsigned skipped;
	struct sched_export_item *v;
	size_t n, cap;
};

struct sched_export_part {
	struct sched_export_claim *c;
	uint64_t *ids; /* this shard's (not with all) */
	size_t nids;
	struct sched_export_item *v;
	size_t n;
	unsigned skipped;
	bool failed;
};

static void sched_export_release_here(const struct sched_export_item *items,
				      size_t n);

/* On the caller's loop: a part is back; after the last, the answer. */
static void
sched_export_collect(void *arg)
{
	struct sched_export_part *p = arg;
	struct sched_export_claim *c = p->c;
	struct sched_export_item *nv;

	c->skipped += p->skipped;
	if (p->failed)
		c->failed = true;
	else if (p->n > 0 && c->n + p->n > c->cap) {
		if ((nv = realloc(c->v, (c->n + p->n) * sizeof(*nv))) == NULL) {
			c->failed = true;
			sched_export_release(p->v, p->n);
		} else {
			c->v = nv;
			c->cap = c->n + p->n;
		}
	}
	if (!p->failed && p->n > 0 && c->n + p->n <= c->cap) {
		memcpy(c->v + c->n, p->v, p->n * sizeof(*p->v));
		c->n += p->n;
	}
	free(p->v);
	free(p->ids);
	free(p);
	if (--c->left > 0)
		return;
	if (c->failed) {
		/* Nothing claimed: what the others took goes back. */
		if (c->remove)
			sched_export_release(c->v, c->n);
		free(c->v);
		c->cb(-1, NULL, 0, 0, c->arg);
	} else {
		qsort(c->v, c->n, sizeof(*c->v), sched_export_cmp);
		c->cb(0, c->v, c->n, c->skipped, c->arg);
	}
	free(c);
}

/* On a shard: its part of the claim. */
static void
sched_export_part_run(void *arg)
{
	struct sched_export_part *p = arg;
	struct sched_msg *m;
	size_t k, cap = p->c->all ? sched->nmsgs : p->nids;

	if ((p->v = calloc(cap > 0 ? cap : 1, sizeof(*p->v))) == NULL) {
		p->failed = true;
		loop_post(p->c->home, sched_export_collect, p);
		return;
	}
	if (p->c->all) {
		for (k = 0; k < sched->ids.cap && p->n < cap; k++) {
			if ((m = sched->ids.vals[k]) == NULL)
				continue;
			if (sched_export_take(m, p->c->remove, &p->v[p->n]))
				p->n++;
			else
				p->skipped++;
		}
	} else {
		for (k = 0; k < p->nids; k++) {
			if ((m = idmap_get(&sched->ids, p->ids[k])) == NULL)
				p->skipped++;
			else if (sched_export_take(m, p->c->remove,
						   &p->v[p->n]))
				p->n++;
			else
				p->skipped++;
		}
	}
	loop_post(p->c->home, sched_export_collect, p);
}

void
sched_export_claim(const uint64_t *ids, size_t n, bool all, bool remove,
		   sched_export_claim_fn *cb, void *arg)
{
	struct sched_export_part *part[SCHED_SHARDS_MAX] = { NULL };
	struct sched_export_claim *c = calloc(1, sizeof(*c));
	size_t k, count[SCHED_SHARDS_MAX] = { 0 };
	unsigned i;

	if (c == NULL) {
		cb(-1, NULL, 0, 0, arg);
		return;
	}
	c->home = sched->loop;
	c->cb = cb;
	c->arg = arg;
	c->all = all;
	c->remove = remove;
	for (k = 0; !all && k < n; k++)
		count[sched_shard_of(ids[k])->index]++;
	/* Every shard answers (an empty part at once), so there is one. */
	c->left = sched_nshards;
	for (i = 0; i < sched_nshards; i++) {
		if ((part[i] = calloc(1, sizeof(*part[i]))) == NULL ||
		    (count[i] > 0 &&
		     (part[i]->ids = calloc(count[i], sizeof(uint64_t))) ==
			 NULL)) {
			/* Nothing posted yet: nothing claimed. */
			for (k = 0; k <= i; k++)
				if (part[k] != NULL) {
					free(part[k]->ids);
					free(part[k]);
				}
			free(c);
			cb(-1, NULL, 0, 0, arg);
			return;
		}
		part[i]->c = c;
	}
	for (k = 0; !all && k < n; k++) {
		struct sched_export_part *p =
		    part[sched_shard_of(ids[k])->index];

		p->ids[p->nids++] = ids[k];
	}
	for (i = 0; i < sched_nshards; i++)
		loop_post(sched_shards[i]->loop, sched_export_part_run,
			  part[i]);
}

/* On a shard: its part of a release. */
struct sched_export_release {
	struct sched_export_item *items;
	size_t n;
};

static void
sched_export_release_run(void *arg)
{
	struct sched_export_release *r = arg;

	sched_export_release_here(r->items, r->n);
	free(r->items);
	free(r);
}

void
sched_export_release(const struct sched_export_item *items, size_t n)
{
	unsigned i;
	size_t k;

	if (sched_nshards == 1) {
		sched_export_release_here(items, n);
		return;
	}
	for (i = 0; i < sched_nshards; i++) {
		struct sched_export_release *r = calloc(1, sizeof(*r));

		/* A release lost would keep messages claimed until the next
		 * start: an invariant, not a reply. */
		if (r == NULL ||
		    (r->items = calloc(n > 0 ? n : 1, sizeof(*items))) == NULL)
			panic("out of memory");
		for (k = 0; k < n; k++)
			if (sched_shard_of(items[k].id)->index == i)
				r->items[r->n++] = items[k];
		if (r->n == 0) {
			free(r->items);
			free(r);
			continue;
		}
		loop_post(sched_shards[i]->loop, sched_export_release_run, r);
	}
}

static void
sched_export_release_here(const struct sched_export_item *items, size_t n)
{
	struct sched_msg *m;
	size_t k;

	for (k = 0; k < n; k++) {
		if ((m = idmap_get(&sched->ids, items[k].id)) == NULL ||
		    !(m->flags & SM_EXPORT))
			continue;
		m->flags &= ~SM_EXPORT;
		if (!(m->flags & SM_HELD))
			sched_msg_due(m);
	}
}

void
sched_export_removed(struct sched_msg *m)
{
	struct evlog_event ev;

	m->flags &= ~SM_EXPORT;
	sched_msg_unhold(m);
	sched_write_delete(m);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_EXPORT;
	ev.id = m->id;
	ev.nrcpts = -1;
	ev.attempt = -1;
	ev.queue_time_ms = -1;
	ev.tls_verified = -1;
	ev.count = -1;
	ev.reason = "exported";
	evlog_write(&ev);
}

void
sched_export_remove(const struct sched_export_item *items, size_t n,
		    sched_admin_fn *cb, void *cbarg)
{
	uint64_t *ids = calloc(n > 0 ? n : 1, sizeof(*ids));
	size_t k;

	if (ids == NULL) {
		/* Still claimed: nothing delivers them; the next start has
		 * them back (the archive holds them too: say so). */
		cb(0, "out of memory removing the exported messages", cbarg);
		return;
	}
	for (k = 0; k < n; k++)
		ids[k] = items[k].id;
	sched_admin_ids(SA_EXPORTED, ids, n, cb, cbarg);
}
