/*
 * sched_export.c — the scheduler's side of `outpost queue export`: which
 * messages an export takes (a copy, or claimed for removal), their
 * release when it fails, and their removal once the archive is on disk.
 * Owns: nothing past a call (the claim is SM_EXPORT on each message).
 * Must not: claim a message in a round (it could be delivered here and
 * by the node that imports it), or remove one before the archive's fsync
 * (the control room calls sched_export_remove only then).
 * Delivery loop thread.
 */
#include <stdlib.h>
#include <string.h>

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

int
sched_export_claim(const uint64_t *ids, size_t n, bool all, bool remove,
		   struct sched_export_item **out, size_t *nout,
		   unsigned *skipped)
{
	struct sched_export_item *v;
	struct sched_msg *m;
	size_t k, cap = all ? sched->nmsgs : n;

	*out = NULL;
	*nout = 0;
	*skipped = 0;
	if ((v = calloc(cap > 0 ? cap : 1, sizeof(*v))) == NULL)
		return -1;
	if (all) {
		for (k = 0; k < sched->ids.cap && *nout < cap; k++) {
			if ((m = sched->ids.vals[k]) == NULL)
				continue;
			if (sched_export_take(m, remove, &v[*nout]))
				(*nout)++;
			else
				(*skipped)++;
		}
	} else {
		for (k = 0; k < n; k++) {
			if ((m = idmap_get(&sched->ids, ids[k])) == NULL)
				(*skipped)++;
			else if (sched_export_take(m, remove, &v[*nout]))
				(*nout)++;
			else
				(*skipped)++;
		}
	}
	qsort(v, *nout, sizeof(*v), sched_export_cmp);
	*out = v;
	return 0;
}

void
sched_export_release(const struct sched_export_item *items, size_t n)
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
