/*
 * sched_admin.c — operators' changes (the control socket): hold, release,
 * delete, bounce, retry by id, domain, user or all; destination
 * suspensions and their list.
 *
 * Owns: nothing past a call.  Must not: touch a message in a round (the
 * change waits for its settle).  Delivery loop thread, but for the
 * selector's queue walk (a worker).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/deliver/sched_int.h"

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
	switch (op) {
	case SA_HOLD:
		if (held || (m->flags & SM_HOLD_REQ))
			return false;
		if (sched_admin_busy(m)) {
			m->flags |= SM_HOLD_REQ;
			return true;
		}
		sched_heap_remove(&sched.heap, m);
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
	case SA_RETRY:
		if (held)
			return false;
		/* Now, past its destination's back-off (SM_FORCE lifts
		 * it when the job meets the paused path). */
		m->flags |= SM_FORCE;
		if (sched_admin_busy(m))
			return true; /* being attempted right now */
		sched_heap_remove(&sched.heap, m);
		sched_park_remove(m);
		sched_admin_due_now(m);
		return true;
	case SA_DELETE:
		if (sched_admin_busy(m)) {
			m->flags |= SM_DELETE_REQ;
			return true;
		}
		sched_heap_remove(&sched.heap, m);
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
		sched_heap_remove(&sched.heap, m);
		sched_park_remove(m);
		sched_msg_unhold(m);
		sched_round_start(m);
		return true;
	}
	return false;
}

struct sched_admin_job {
	enum sched_admin_op op;
	enum sched_admin_sel sel;
	char arg[256];
	sched_admin_fn *cb;
	void *cbarg;
	uint64_t *ids;
	size_t nids, capids;
	int status;
	char err[200];
};

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

static int
sched_admin_walk_cb(const struct queue_envelope *env, void *arg)
{
	struct sched_admin_job *j = arg;
	uint64_t *n;

	if (!sched_admin_match(j, env))
		return 0;
	if (j->nids == j->capids) {
		size_t cap = j->capids ? j->capids * 2 : 256;

		if ((n = realloc(j->ids, cap * sizeof(*n))) == NULL)
			return -2;
		j->ids = n;
		j->capids = cap;
	}
	j->ids[j->nids++] = env->id;
	return 0;
}

/* Worker thread: which messages does the selector pick? */
static void
sched_admin_walk_run(void *arg)
{
	struct sched_admin_job *j = arg;
	uint64_t skipped;

	/* A damaged record matches no selector: skipped, not an error. */
	j->status = queue_walk_skip(sched.queue, sched_admin_walk_cb, j,
				    &skipped, j->err, sizeof(j->err));
	if (j->status == -2)
		snprintf(j->err, sizeof(j->err), "out of memory");
}

static void
sched_admin_walk_done(void *arg)
{
	struct sched_admin_job *j = arg;
	struct sched_msg *m;
	unsigned count = 0;
	size_t i;

	if (j->status != 0) {
		j->cb(0, j->err[0] ? j->err : "queue walk failed", j->cbarg);
	} else {
		for (i = 0; i < j->nids; i++)
			if ((m = idmap_get(&sched.ids, j->ids[i])) != NULL &&
			    sched_admin_apply(j->op, m))
				count++;
		j->cb(count, NULL, j->cbarg);
	}
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

	if ((j->ids = calloc(sched.nmsgs ? sched.nmsgs : 1, sizeof(*j->ids))) ==
	    NULL) {
		j->status = -1;
		snprintf(j->err, sizeof(j->err), "out of memory");
	}
	for (k = 0;
	     j->ids != NULL && k < sched.ids.cap && j->nids < sched.nmsgs; k++)
		if (sched.ids.vals[k] != NULL)
			j->ids[j->nids++] = sched.ids.keys[k];
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
	else if ((m = idmap_get(&sched.ids, id)) == NULL ||
		 (m->flags & SM_DELETED))
		j->cb(0, "no such message", j->cbarg);
	else
		j->cb(sched_admin_apply(j->op, m) ? 1 : 0, NULL, j->cbarg);
	free(j);
}

void
sched_admin(enum sched_admin_op op, enum sched_admin_sel sel, const char *arg,
	    sched_admin_fn *cb, void *cbarg)
{
	struct sched_admin_job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		cb(0, "out of memory", cbarg);
		return;
	}
	j->op = op;
	j->sel = sel;
	j->cb = cb;
	j->cbarg = cbarg;
	/* Domains are compared lower-case (as sched_rcpt_domain gives). */
	if (sel == SAS_DOMAIN)
		util_domain_lower(arg != NULL ? arg : "", j->arg,
				  sizeof(j->arg));
	else
		snprintf(j->arg, sizeof(j->arg), "%s", arg != NULL ? arg : "");
	if (sel == SAS_ID)
		loop_post(sched.loop, sched_admin_id_done, j);
	else if (sel == SAS_ALL)
		loop_post(sched.loop, sched_admin_all, j);
	else
		worker_submit(sched.loop, sched_admin_walk_run,
			      sched_admin_walk_done, j);
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

int
sched_suspend(const char *domain, uint64_t ms, const char *reason, char *err,
	      size_t errlen)
{
	struct sched_dest *d;
	struct sched_job *job, **pp;
	char dom[256];
	unsigned i;

	if (util_domain_lower(domain, dom, sizeof(dom)) == 0 ||
	    strlen(domain) >= sizeof(dom)) {
		snprintf(err, errlen, "bad domain");
		return -1;
	}
	if ((d = sched_dest_get(dom)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(d->suspend_reason);
	d->suspend_reason = NULL;
	if (ms == 0) {
		/* Resume: the operator's suspension, and a reply-pattern
		 * suspension or back-off of its site as well. */
		d->suspended_until_ms = 0;
		d->park.until_ms = 0;
		sched_state_suspend_forget(dom);
		log_info("destination %s resumed by an operator", dom);
		for (i = 0; d->site != NULL && i < d->site->npaths; i++) {
			struct sched_path *p = d->site->paths[i];

			p->paused_until_ms = 0;
			p->suspended = false;
			p->backoff_level = 0;
			sched_limit_unpause(p, true, "resumed by an operator");
			sched_path_kick(p);
		}
		sched_park_release(&d->park, UINT32_MAX);
		/* "Try now": those waiting for their next attempt too. */
		sched_admin(SA_RETRY, SAS_DOMAIN, dom, sched_admin_resume_done,
			    NULL);
		return 0;
	}
	d->suspended_until_ms = util_wall_ms() + (int64_t)ms;
	d->park.until_ms = d->suspended_until_ms;
	sched_park_release(&d->park, 0); /* its timer moved to the new end */
	d->suspend_reason = strdup(reason != NULL ? reason : "");
	sched_state_suspend_save(dom, d->suspended_until_ms, reason);
	log_info("destination %s suspended by an operator for %" PRIu64 " s",
		 dom, ms / 1000);
	/* What waits on its site for this domain goes back now. */
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
	return 0;
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
	for (e = htab_first(&sched.dests, &it); e != NULL;
	     e = htab_next(&sched.dests, e, &it)) {
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
	for (e = htab_first(&sched.dests, &it); e != NULL;
	     e = htab_next(&sched.dests, e, &it)) {
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
