/*
 * sched_admin.c — operators' changes (the control socket): hold, release,
 * delete, bounce, retry by id, domain, user or all, a user's purge (a
 * delete logged message by message); destination
 * suspensions and their list.
 *
 * Owns: the changes waiting to be visible (sched->admin_waiting).  Must
 * not: touch a message in a round (the change waits for its settle), or
 * answer before the change is visible to the next reader (its queue
 * writes committed, the memory updated).  A change is applied by each
 * shard that owns one of its messages, and answered once (sched_fan).
 * Delivery loops' threads, but for the selector's queue walk (a worker).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"

/* How long a change waits for messages in the middle of a delivery attempt
 * (which take it when they settle) before it answers anyway. */
#define SCHED_ADMIN_WAIT_MS 30000
/* The changes waiting are looked at again after every queue write, and at
 * this interval for what settles without one (and the wait's end). */
#define SCHED_ADMIN_POLL_MS 100

/* In a round (or being read for one): changes wait for the settle. */
static bool
sched_admin_busy(const struct sched_msg *m)
{
	return m->r != NULL || (m->flags & SM_LOADING);
}

/* Waiting M (out of the heap) is due now: its schedule entry moves too. */
static void
sched_admin_due_now(struct sched_msg *m)
{
	int64_t old = m->due_ms;

	m->due_ms = util_wall_ms();
	sched_write_resched(m, old, false);
	sched_msg_due(m);
	sched_retry_arm();
}

/* Apply OP to M; true when M changed. */
static bool
sched_admin_apply(enum sched_admin_op op, struct sched_msg *m)
{
	int64_t old = m->due_ms;
	bool held = (m->flags & SM_HELD) != 0;

	if (m->flags & SM_DELETED)
		return false;
	/* Claimed by an export: only its end (removal, release) moves it. */
	if ((m->flags & SM_EXPORT) != 0 && op != SA_EXPORTED)
		return false;
	switch (op) {
	case SA_HOLD:
		if (held || (m->flags & SM_HOLD_REQ))
			return false;
		if (sched_admin_busy(m)) {
			m->flags |= SM_HOLD_REQ;
			return true;
		}
		sched_heap_remove(&sched->heap, m);
		sched_park_remove(m);
		sched_write_resched(m, old, true);
		sched_msg_hold(m);
		return true;
	case SA_RELEASE:
		if (m->flags & SM_HOLD_REQ) {
			m->flags &= ~SM_HOLD_REQ;
			return true;
		}
		if (!held)
			return false;
		sched_msg_unhold(m);
		sched_admin_due_now(m);
		return true;
	case SA_DUE:
		if (held)
			return false;
		/* Due already, waiting out its destination's pause in
		 * place: it goes when the pause ends, as asked. */
		if (sched_admin_busy(m) || m->park != NULL)
			return true;
		sched_heap_remove(&sched->heap, m);
		sched_admin_due_now(m);
		return true;
	case SA_RETRY:
		if (held)
			return false;
		/* Now, past its destination's back-off (SM_FORCE lifts
		 * it when the job meets the paused path). */
		m->flags |= SM_FORCE;
		if (sched_admin_busy(m))
			return true; /* being attempted right now */
		sched_heap_remove(&sched->heap, m);
		sched_park_remove(m);
		sched_admin_due_now(m);
		return true;
	case SA_DELETE:
	case SA_PURGE:
		if (sched_admin_busy(m)) {
			m->flags |= SM_DELETE_REQ;
			return true;
		}
		sched_heap_remove(&sched->heap, m);
		sched_park_remove(m);
		sched_msg_unhold(m);
		sched_write_delete(m);
		return true;
	case SA_BOUNCE:
		if (m->flags & SM_CORRUPT)
			return false; /* no envelope: nobody to tell */
		m->flags |= SM_BOUNCE_REQ;
		if (sched_admin_busy(m))
			return true;
		/* Read it back and settle it at once: a DSN, then gone. */
		sched_heap_remove(&sched->heap, m);
		sched_park_remove(m);
		sched_msg_unhold(m);
		sched_round_start(m);
		return true;
	case SA_EXPORTED:
		if (!(m->flags & SM_EXPORT))
			return false;
		sched_export_removed(m);
		return true;
	}
	return false;
}

/*
 * One change: its selector's ids (those it changed, once applied), and
 * while their change is not visible yet, its place in the waiting list:
 * ids[seen..nids) are still to be seen done.
 */
struct sched_admin_job {
	enum sched_admin_op op;
	enum sched_admin_sel sel;
	char arg[256];
	sched_admin_fn *cb;
	void *cbarg;
	uint64_t *ids;
	size_t nids, capids, seen;
	int64_t give_up_ms;  /* answer then, whatever is still in a round */
	struct queue *queue; /* for the walk, on a worker */
	int status;
	char err[200];
	struct sched_admin_job *next; /* sched->admin_waiting */
};

/* Is OP's change of message ID visible to the next reader?  Gone from
 * memory is final; otherwise no write of its own in flight, and for the
 * changes a round takes at its settle, that settle done. */
static bool
sched_admin_visible(enum sched_admin_op op, uint64_t id)
{
	struct sched_msg *m = idmap_get(&sched->ids, id);

	if (m == NULL)
		return true;
	if (m->writes > 0)
		return false;
	switch (op) {
	case SA_RETRY:
	case SA_DUE:
	case SA_RELEASE:
		return true; /* in a round is "now" too */
	case SA_HOLD:
		return !sched_admin_busy(m) && !(m->flags & SM_HOLD_REQ);
	case SA_DELETE:
	case SA_PURGE:
	case SA_BOUNCE:
	case SA_EXPORTED:
		return !sched_admin_busy(m) &&
		       !(m->flags &
			 (SM_DELETE_REQ | SM_BOUNCE_REQ | SM_DELETED));
	}
	return true;
}

/* Has J's change become visible (or its wait ended)?  Ids are looked at in
 * order and never again once seen done: a long list costs its length once,
 * however many writes end meanwhile. */
static bool
sched_admin_job_visible(struct sched_admin_job *j)
{
	while (j->seen < j->nids && sched_admin_visible(j->op, j->ids[j->seen]))
		j->seen++;
	return j->seen == j->nids || sched->stopping ||
	       util_mono_ms() >= j->give_up_ms;
}

static void
sched_admin_job_answer(struct sched_admin_job *j)
{
	char qid[QUEUE_ID_HEX_BYTES];

	if (j->seen < j->nids && !sched->stopping) {
		queue_id_format(j->ids[j->seen], qid);
		log_info("operator's change: %zu message(s), %s the first, "
			 "still in a delivery attempt after %d s: they take "
			 "the change when it ends",
			 j->nids - j->seen, qid, SCHED_ADMIN_WAIT_MS / 1000);
	}
	j->cb((unsigned)j->nids, NULL, j->cbarg);
	free(j->ids);
	free(j);
}

static void sched_admin_poll_arm(void);

static void
sched_admin_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sched->admin_poll_armed = false;
	sched_admin_written();
	sched_admin_poll_arm();
}

static void
sched_admin_poll_arm(void)
{
	struct timeval tv = { 0, SCHED_ADMIN_POLL_MS * 1000 };

	if (sched->admin_waiting == NULL || sched->admin_poll_armed)
		return;
	/* A one-shot event: nothing to free if the loop ends first. */
	if (event_base_once(sched->loop->base, -1, EV_TIMEOUT,
			    sched_admin_poll_cb, NULL, &tv) == 0)
		sched->admin_poll_armed = true;
}

void
sched_admin_written(void)
{
	struct sched_admin_job **pp, *j, *done = NULL;

	for (pp = &sched->admin_waiting; (j = *pp) != NULL;) {
		if (!sched_admin_job_visible(j)) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		j->next = done;
		done = j;
	}
	/* Answered after the walk: a callback may start another change. */
	while ((j = done) != NULL) {
		done = j->next;
		sched_admin_job_answer(j);
	}
}

/* J's changes are applied (J->ids: the messages changed): answer once they
 * are visible. */
static void
sched_admin_job_wait(struct sched_admin_job *j)
{
	j->seen = 0;
	j->give_up_ms = util_mono_ms() + SCHED_ADMIN_WAIT_MS;
	if (sched_admin_job_visible(j)) {
		sched_admin_job_answer(j);
		return;
	}
	j->next = sched->admin_waiting;
	sched->admin_waiting = j;
	sched_admin_poll_arm();
}

/* An operator's bounce of recipient RI: the delivery-log event a bounce
 * has (sched_job_log's, with the operator as its reason), and the DSN
 * learns that this one is the operator's (the last nadmin of bounced[]). */
void
sched_admin_bounced(struct sched_msg *m, uint32_t ri)
{
	const struct queue_rcpt *r = &m->r->env.rcpts[ri];
	struct evlog_event ev;
	char dom[256];

	m->r->nadmin++;
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_BOUNCE;
	ev.id = m->id;
	ev.user = m->r->env.user;
	ev.pool = m->r->pool != NULL ? m->r->pool->name : NULL;
	ev.destination = sched_rcpt_domain(r->addr, dom, sizeof(dom));
	ev.rcpt = r->addr;
	ev.sender = m->r->env.sender;
	ev.size = m->r->env.size;
	ev.nrcpts = -1;
	ev.attempt = r->attempts;
	ev.queue_time_ms = util_wall_ms() - m->r->env.created_ms;
	ev.enhanced = "5.0.0";
	ev.reply = r->last_reply;
	ev.reason = "admin";
	ev.msgid = m->r->env.msgid;
	ev.msgid_clear = (m->r->env.flags & QUEUE_F_MSGID_CLEAR) != 0;
	ev.campaign = m->r->env.campaign;
	ev.tls_verified = -1;
	ev.count = -1;
	evlog_write(&ev);
}

/* A purge removed message ID of J's user: one delivery-log line each,
 * the user as its keyed hash (a cancelled account's name is not written
 * again in clear). */
static void
sched_admin_purged(const struct sched_admin_job *j, uint64_t id)
{
	struct evlog_event ev;
	char hex[33], command[64];

	evlog_hash(j->arg, hex);
	snprintf(command, sizeof(command), "purge user hash:%s", hex);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_ADMIN;
	ev.id = id;
	ev.nrcpts = ev.attempt = ev.tls_verified = ev.count = -1;
	ev.queue_time_ms = -1;
	ev.reason = "purged";
	ev.command = command;
	evlog_write(&ev);
}

static bool
sched_admin_match(const struct sched_admin_job *j,
		  const struct queue_envelope *env)
{
	char dom[256];
	uint32_t i;

	switch (j->sel) {
	case SAS_ALL:
		return true;
	case SAS_USER:
		/* "": the relay identity's messages, those without a user. */
		if (j->arg[0] == '\0')
			return env->user == NULL || env->user[0] == '\0';
		return env->user != NULL && strcmp(env->user, j->arg) == 0;
	case SAS_DOMAIN:
		for (i = 0; i < env->nrcpts; i++) {
			if (env->rcpts[i].state != QR_PENDING)
				continue;
			sched_rcpt_domain(env->rcpts[i].addr, dom, sizeof(dom));
			if (strcmp(dom, j->arg) == 0)
				return true;
		}
		return false;
	case SAS_ID:
		break;
	}
	return false;
}

/* ID into J's list.  0, or -2 when out of memory. */
static int
sched_admin_ids_add(struct sched_admin_job *j, uint64_t id)
{
	uint64_t *n;

	if (j->nids == j->capids) {
		size_t cap = j->capids ? j->capids * 2 : 256;

		if ((n = realloc(j->ids, cap * sizeof(*n))) == NULL)
			return -2;
		j->ids = n;
		j->capids = cap;
	}
	j->ids[j->nids++] = id;
	return 0;
}

static int
sched_admin_walk_cb(const struct queue_envelope *env, void *arg)
{
	struct sched_admin_job *j = arg;

	if (!sched_admin_match(j, env))
		return 0;
	return sched_admin_ids_add(j, env->id);
}

/* Worker thread: which messages does the selector pick? */
static void
sched_admin_walk_run(void *arg)
{
	struct sched_admin_job *j = arg;
	uint64_t skipped;

	/* A damaged record matches no selector: skipped, not an error. */
	j->status = queue_walk_skip(j->queue, sched_admin_walk_cb, j, &skipped,
				    j->err, sizeof(j->err));
	if (j->status == -2)
		snprintf(j->err, sizeof(j->err), "out of memory");
}

/* The selector's ids are known: apply the change to each, keep those it
 * changed, and answer once that is visible. */
static void
sched_admin_walk_done(void *arg)
{
	struct sched_admin_job *j = arg;
	struct sched_msg *m;
	size_t i, n = 0;

	if (j->status != 0) {
		j->cb(0, j->err[0] ? j->err : "queue walk failed", j->cbarg);
		free(j->ids);
		free(j);
		return;
	}
	for (i = 0; i < j->nids; i++)
		if ((m = idmap_get(&sched->ids, j->ids[i])) != NULL &&
		    sched_admin_apply(j->op, m)) {
			j->ids[n++] = j->ids[i];
			if (j->op == SA_PURGE)
				sched_admin_purged(j, m->id);
		}
	j->nids = n;
	sched_admin_job_wait(j);
}

/* A new change of OP answering CB; NULL (CB told) when out of memory. */
static struct sched_admin_job *
sched_admin_job_new(enum sched_admin_op op, sched_admin_fn *cb, void *cbarg)
{
	struct sched_admin_job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		cb(0, "out of memory", cbarg);
		return NULL;
	}
	j->op = op;
	j->queue = sched->queue;
	j->cb = cb;
	j->cbarg = cbarg;
	return j;
}

/*
 * Apply OP (with ARG: a purge's user) to IDS (N; malloc'd, taken over):
 * each shard to its own, CB (CBARG) told once every shard's part is
 * visible.  With one shard the ids go as they are; with more, one list
 * per shard that owns any.
 */
static void
sched_admin_spread(enum sched_admin_op op, const char *arg, uint64_t *ids,
		   size_t n, sched_admin_fn *cb, void *cbarg)
{
	struct sched_admin_job *part[SCHED_SHARDS_MAX] = { NULL };
	struct sched_fan *f;
	size_t k, count[SCHED_SHARDS_MAX] = { 0 };
	unsigned i, parts = 0;

	for (k = 0; sched_nshards > 1 && k < n; k++)
		count[sched_shard_of(ids[k])->index]++;
	if (sched_nshards == 1)
		count[0] = n;
	for (i = 0; i < sched_nshards; i++)
		parts += count[i] > 0;
	if (parts == 0) {
		free(ids);
		cb(0, NULL, cbarg);
		return;
	}
	if ((f = sched_fan_new(parts, cb, cbarg)) == NULL) {
		free(ids);
		return;
	}
	for (i = 0; i < sched_nshards; i++) {
		struct sched_admin_job *j;

		if (count[i] == 0)
			continue;
		/* Never fails here: the fan is told the part's failure. */
		if ((j = sched_admin_job_new(op, sched_fan_part, f)) == NULL)
			continue;
		snprintf(j->arg, sizeof(j->arg), "%s", arg);
		if (sched_nshards == 1) {
			j->ids = ids;
			ids = NULL;
		} else if ((j->ids = calloc(count[i], sizeof(*j->ids))) ==
			   NULL) {
			free(j);
			sched_fan_part(0, "out of memory", f);
			continue;
		}
		j->capids = count[i];
		part[i] = j;
	}
	for (k = 0; sched_nshards > 1 && k < n; k++) {
		struct sched_admin_job *j = part[sched_shard_of(ids[k])->index];

		if (j != NULL)
			j->ids[j->nids++] = ids[k];
	}
	free(ids);
	for (i = 0; i < sched_nshards; i++) {
		if (part[i] == NULL)
			continue;
		part[i]->nids = part[i]->capids;
		loop_post(sched_shards[i]->loop, sched_admin_walk_done,
			  part[i]);
	}
}

void
sched_admin_ids(enum sched_admin_op op, uint64_t *ids, size_t n,
		sched_admin_fn *cb, void *cbarg)
{
	sched_admin_spread(op, "", ids, n, cb, cbarg);
}

/* The selector's walk is over (on the loop that asked): its ids to the
 * shards that own them. */
static void
sched_admin_selected(void *arg)
{
	struct sched_admin_job *j = arg;

	if (j->status != 0)
		j->cb(0, j->err[0] ? j->err : "queue walk failed", j->cbarg);
	else
		sched_admin_spread(j->op, j->arg, j->ids, j->nids, j->cb,
				   j->cbarg);
	if (j->status != 0)
		free(j->ids);
	free(j);
}

/* SAS_ALL: every message the scheduler knows is every message queued; no
 * envelope needs reading (nor decrypting: a damaged one is selected too). */
static void
sched_admin_all(void *arg)
{
	struct sched_admin_job *j = arg;
	size_t k;

	if ((j->ids = calloc(sched->nmsgs ? sched->nmsgs : 1,
			     sizeof(*j->ids))) == NULL) {
		j->status = -1;
		snprintf(j->err, sizeof(j->err), "out of memory");
	}
	for (k = 0;
	     j->ids != NULL && k < sched->ids.cap && j->nids < sched->nmsgs;
	     k++)
		if (sched->ids.vals[k] != NULL)
			j->ids[j->nids++] = sched->ids.keys[k];
	sched_admin_walk_done(j);
}

static void
sched_admin_id_done(void *arg)
{
	struct sched_admin_job *j = arg;
	struct sched_msg *m;
	uint64_t id;

	if (queue_id_parse(j->arg, &id) != 0)
		j->cb(0, "malformed queue id", j->cbarg);
	else if ((m = idmap_get(&sched->ids, id)) == NULL ||
		 (m->flags & SM_DELETED))
		j->cb(0, "no such message", j->cbarg);
	else if (sched_admin_ids_add(j, id) != 0)
		j->cb(0, "out of memory", j->cbarg);
	else {
		j->status = 0;
		sched_admin_walk_done(j);
		return;
	}
	free(j->ids);
	free(j);
}

void
sched_admin(enum sched_admin_op op, enum sched_admin_sel sel, const char *arg,
	    sched_admin_fn *cb, void *cbarg)
{
	struct sched_admin_job *j;
	struct sched_fan *f = NULL;
	uint64_t id;
	unsigned i;

	/* By id: its shard's; all: every shard's, from memory; by domain or
	 * user: one walk here, then each shard its own (_selected). */
	if (sel == SAS_ID || sel == SAS_ALL) {
		f = sched_fan_new(sel == SAS_ID ? 1 : sched_nshards, cb, cbarg);
		if (f == NULL)
			return;
		cb = sched_fan_part;
		cbarg = f;
	}
	for (i = 0; i < (sel == SAS_ALL ? sched_nshards : 1); i++) {
		if ((j = sched_admin_job_new(op, cb, cbarg)) == NULL)
			continue;
		j->sel = sel;
		/* Domains are compared lower-case (as sched_rcpt_domain
		 * gives). */
		if (sel == SAS_DOMAIN)
			util_domain_lower(arg != NULL ? arg : "", j->arg,
					  sizeof(j->arg));
		else
			snprintf(j->arg, sizeof(j->arg), "%s",
				 arg != NULL ? arg : "");
		if (sel == SAS_ID)
			loop_post(queue_id_parse(j->arg, &id) == 0
				      ? sched_shard_of(id)->loop
				      : sched->loop,
				  sched_admin_id_done, j);
		else if (sel == SAS_ALL)
			loop_post(sched_shards[i]->loop, sched_admin_all, j);
		else
			worker_submit(sched->loop, sched_admin_walk_run,
				      sched_admin_selected, j);
	}
}

/* The retry a resume starts: nobody waits for its count. */
static void
sched_admin_resume_done(unsigned count, const char *err, void *arg)
{
	(void)arg;
	if (err != NULL)
		log_warnx("resume: retrying the destination's messages: %s",
			  err);
	else
		log_debug("resume: %u message(s) due now", count);
}

/* DOMAIN's destination (DOM: its name lower-case), or NULL with ERR. */
static struct sched_dest *
sched_admin_dest(const char *domain, char dom[256], char *err, size_t errlen)
{
	struct sched_dest *d;

	if (util_domain_lower(domain, dom, 256) == 0 || strlen(domain) >= 256) {
		snprintf(err, errlen, "bad domain");
		return NULL;
	}
	if ((d = sched_dest_get(dom)) == NULL)
		snprintf(err, errlen, "out of memory");
	return d;
}

/* A suspension or resume of one destination, for the other shards. */
struct sched_admin_dest_change {
	char dom[256];
	int64_t until_ms; /* 0: resume */
	bool respect_backoff;
	char *reason;
};

static void sched_resume_here(struct sched_dest *d, bool respect_backoff);
static void sched_suspend_here(struct sched_dest *d, int64_t until_ms,
			       const char *reason);

/* On another shard: the change its caller made on its own. */
static void
sched_admin_dest_change_run(void *arg)
{
	struct sched_admin_dest_change *c = arg;
	struct sched_dest *d = sched_dest_get(c->dom);

	if (d == NULL)
		log_warnx("destination %s: out of memory %s it", c->dom,
			  c->until_ms ? "suspending" : "resuming");
	else if (c->until_ms == 0)
		sched_resume_here(d, c->respect_backoff);
	else
		sched_suspend_here(d, c->until_ms, c->reason);
	free(c->reason);
	free(c);
}

/* DOM's change to every other shard (posted: before anything posted to
 * them after it). */
static int
sched_admin_dest_spread(const char *dom, int64_t until_ms, bool respect_backoff,
			const char *reason, char *err, size_t errlen)
{
	unsigned i;

	for (i = 0; i < sched_nshards; i++) {
		struct sched_admin_dest_change *c;

		if (sched_shards[i] == sched)
			continue;
		if ((c = calloc(1, sizeof(*c))) == NULL ||
		    (reason != NULL && (c->reason = strdup(reason)) == NULL)) {
			free(c);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		snprintf(c->dom, sizeof(c->dom), "%s", dom);
		c->until_ms = until_ms;
		c->respect_backoff = respect_backoff;
		loop_post(sched_shards[i]->loop, sched_admin_dest_change_run,
			  c);
	}
	return 0;
}

int
sched_resume(const char *domain, bool respect_backoff, sched_admin_fn *cb,
	     void *cbarg, char *err, size_t errlen)
{
	struct sched_dest *d;
	char dom[256];

	if ((d = sched_admin_dest(domain, dom, err, errlen)) == NULL ||
	    sched_admin_dest_spread(dom, 0, respect_backoff, NULL, err,
				    errlen) != 0)
		return -1;
	sched_resume_here(d, respect_backoff);
	sched_state_suspend_forget(dom);
	log_info("destination %s resumed by an operator%s", dom,
		 respect_backoff ? " (a back-off of its site kept)" : "");
	/* "Now": those waiting for their next attempt too. */
	sched_admin(respect_backoff ? SA_DUE : SA_RETRY, SAS_DOMAIN, dom, cb,
		    cbarg);
	return 0;
}

/* D's operator suspension over on this shard; without RESPECT_BACKOFF a
 * reply-pattern suspension or back-off of its site as well.  Its messages
 * held here are due again (a paused site holds them in place). */
static void
sched_resume_here(struct sched_dest *d, bool respect_backoff)
{
	unsigned i;

	free(d->suspend_reason);
	d->suspend_reason = NULL;
	d->suspended_until_ms = 0;
	d->park.until_ms = 0;
	for (i = 0; !respect_backoff && d->site != NULL && i < d->site->npaths;
	     i++) {
		struct sched_path *p = d->site->paths[i];

		p->paused_until_ms = 0;
		p->suspended = false;
		p->backoff_level = 0;
		if (p->share != NULL)
			sched_share_unpause(p->share);
		sched_limit_unpause(p, true, "resumed by an operator");
		sched_path_kick(p);
	}
	sched_park_release(&d->park, UINT32_MAX);
}

int
sched_suspend(const char *domain, uint64_t ms, const char *reason, char *err,
	      size_t errlen)
{
	struct sched_dest *d;
	char dom[256];
	int64_t until_ms = util_wall_ms() + (int64_t)ms;

	if (ms == 0)
		return sched_resume(domain, false, sched_admin_resume_done,
				    NULL, err, errlen);
	if ((d = sched_admin_dest(domain, dom, err, errlen)) == NULL ||
	    sched_admin_dest_spread(dom, until_ms, false,
				    reason != NULL ? reason : "", err,
				    errlen) != 0)
		return -1;
	sched_suspend_here(d, until_ms, reason);
	sched_state_suspend_save(dom, until_ms, reason);
	log_info("destination %s suspended by an operator for %" PRIu64 " s",
		 dom, ms / 1000);
	return 0;
}

/* D suspended on this shard until UNTIL_MS for REASON: what waits on its
 * site for this domain goes back now, held with the rest. */
static void
sched_suspend_here(struct sched_dest *d, int64_t until_ms, const char *reason)
{
	struct sched_job *job, **pp;
	unsigned i;

	free(d->suspend_reason);
	d->suspend_reason = strdup(reason != NULL ? reason : "");
	d->suspended_until_ms = until_ms;
	d->park.until_ms = until_ms;
	sched_park_release(&d->park, 0); /* its timer moved to the new end */
	for (i = 0; d->site != NULL && i < d->site->npaths; i++) {
		struct sched_path *p = d->site->paths[i];
		struct sched_job *defer = NULL;

		for (pp = &p->head; (job = *pp) != NULL;) {
			if (job->dest != d) {
				pp = &job->next;
				continue;
			}
			*pp = job->next;
			p->njobs--;
			job->next = defer;
			defer = job;
		}
		p->tail = NULL;
		for (job = p->head; job != NULL; job = job->next)
			p->tail = job;
		while ((job = defer) != NULL) {
			defer = job->next;
			job->next = NULL;
			sched_job_park(job, &d->park);
		}
	}
}

size_t
sched_suspensions(char *buf, size_t len)
{
	struct htab_entry *e;
	int64_t now = util_wall_ms();
	size_t it, off = 0;
	unsigned i;
	int n;

	if (len > 0)
		buf[0] = '\0';
	for (e = htab_first(&sched->dests, &it); e != NULL;
	     e = htab_next(&sched->dests, e, &it)) {
		struct sched_dest *d = e->value;

		if (d->suspended_until_ms <= now)
			continue;
		n = snprintf(buf + (off < len ? off : len),
			     off < len ? len - off : 0, "%s %" PRId64 " %s\n",
			     d->domain, d->suspended_until_ms,
			     d->suspend_reason && d->suspend_reason[0]
				 ? d->suspend_reason
				 : "suspended by an operator");
		off += n > 0 ? (size_t)n : 0;
	}
	/* A paused site: each of its domains (what an operator names),
	 * once, unless suspended by an operator (listed above). */
	for (e = htab_first(&sched->dests, &it); e != NULL;
	     e = htab_next(&sched->dests, e, &it)) {
		struct sched_dest *d = e->value;
		struct sched_path *p = NULL;

		if (d->suspended_until_ms > now || d->site == NULL)
			continue;
		for (i = 0; i < d->site->npaths; i++)
			if (d->site->paths[i]->paused_until_ms > now &&
			    (p == NULL || d->site->paths[i]->paused_until_ms >
					      p->paused_until_ms))
				p = d->site->paths[i];
		if (p == NULL)
			continue;
		n = snprintf(
		    buf + (off < len ? off : len), off < len ? len - off : 0,
		    "%s %" PRId64 " %s\n", d->domain, p->paused_until_ms,
		    p->suspended ? "reply pattern" : "back-off after failures");
		off += n > 0 ? (size_t)n : 0;
	}
	return off;
}
