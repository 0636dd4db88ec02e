/*
 * sched_round.c — a round of attempts for one message: its envelope read
 * back from the queue (worker pool; each job reads the body as it sends
 * it), expiry, one job per destination, and the settle that writes down
 * what the round did.
 *
 * Owns: struct sched_round (the envelope in memory).  Must not:
 * settle a round twice, or fail a recipient without its DSN.  Delivery
 * loop thread, but for sched_round_load_run (a worker).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/deliver/bounce.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"
#include "mta/observe/metrics.h"
#include "mta/observe/stats.h"

const struct conf_pool *
sched_pool_for(const struct queue_envelope *env)
{
	const struct conf_user *u;

	if (env->user != NULL && (u = conf_user_find(sched->conf, env->user)) &&
	    u->pool != NULL)
		return u->pool;
	if (env->user == NULL && sched->conf->relay_pool != NULL)
		return sched->conf->relay_pool;
	return sched->conf->default_pool;
}

/* Give M a round: ENV (moved in, zeroed at the source). */
int
sched_round_new(struct sched_msg *m, struct queue_envelope *env)
{
	struct sched_round *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	r->env = *env;
	memset(env, 0, sizeof(*env));
	r->pool = sched_pool_for(&r->env);
	m->r = r;
	r->next = sched->active;
	if (sched->active != NULL)
		sched->active->r->prev = m;
	sched->active = m;
	sched->nactive++;
	return 0;
}

/* The round is over: drop everything but the stub. */
void
sched_round_free(struct sched_msg *m)
{
	struct sched_round *r = m->r;
	uint32_t i;

	if (r == NULL)
		return;
	if (r->remote != NULL)
		for (i = 0; i < r->nremote; i++)
			free(r->remote[i]);
	free(r->remote);
	free(r->category);
	free(r->bounced);
	free(r->corrupt);
	if (r->body != NULL) {
		sodium_memzero(r->body, r->body_len);
		free(r->body);
		atomic_fetch_sub(&sched_main.body_kept, r->body_charge);
	}
	queue_envelope_clear(&r->env);
	if (r->prev != NULL)
		r->prev->r->next = r->next;
	else
		sched->active = r->next;
	if (r->next != NULL)
		r->next->r->prev = r->prev;
	free(r);
	m->r = NULL;
	sched->nactive--;
}

uint64_t
sched_retry_interval_ms(const struct conf_delivery *d, unsigned attempts)
{
	size_t k;

	if (d->nretry_intervals == 0)
		return SCHED_RETRY_DEFAULT_MS;
	k = attempts == 0 ? 0 : attempts - 1;
	if (k >= d->nretry_intervals)
		k = d->nretry_intervals - 1;
	return d->retry_intervals_ms[k];
}

/* The wait before the next attempt: the schedule's interval, ± jitter. */
static uint64_t
sched_round_delay_ms(unsigned attempts)
{
	const struct conf_delivery *d = &sched->conf->delivery;
	uint64_t base, jit;

	base = sched_retry_interval_ms(d, attempts);
	if (d->retry_jitter_pct == 0 || base < 10)
		return base;
	/* ± jitter%, so retries of a burst do not come back as a burst. */
	jit = base * d->retry_jitter_pct / 100;
	return base - jit +
	       randombytes_uniform((uint32_t)(jit * 2 + 1 > UINT32_MAX
						  ? UINT32_MAX
						  : jit * 2 + 1));
}

/* Recipient RI of M failed (or was deferred) as CAT: what its DSN says. */
static void
sched_round_category(struct sched_msg *m, uint32_t ri,
		     enum conf_bounce_category cat)
{
	if (m->r->category == NULL && cat != CONF_BC_NONE)
		m->r->category = calloc(m->r->env.nrcpts, 1);
	if (m->r->category != NULL)
		m->r->category[ri] = (uint8_t)cat;
}

/* Recipient RI of M failed for good (STATE: QR_BOUNCED or QR_EXPIRED): it
 * goes into this round's DSN.  Out of memory for that, it stays pending and
 * M comes back after a retry interval (never failed without its DSN):
 * returns -1. */
static int
sched_round_rcpt_fail(struct sched_msg *m, uint32_t ri, uint8_t state)
{
	char qid[QUEUE_ID_HEX_BYTES];

	if (bounce_collect(&m->r->env.rcpts[ri], ri, state, &m->r->bounced,
			   &m->r->nbounced) == 0)
		return 0;
	m->r->kept = true;
	queue_id_format(m->id, qid);
	log_warnx("%s out of memory adding recipient #%" PRIu32 " to the DSN: "
		  "kept for a retry",
		  qid, ri + 1);
	return -1;
}

/* An operator bounced M: every pending recipient fails now. */
static void
sched_round_bounce_all(struct sched_msg *m)
{
	struct queue_envelope *env = &m->r->env;
	uint32_t i;

	m->flags &= ~SM_BOUNCE_REQ;
	for (i = 0; i < env->nrcpts; i++) {
		struct queue_rcpt *r = &env->rcpts[i];

		if (r->state != QR_PENDING)
			continue;
		if (sched_round_rcpt_fail(m, i, QR_BOUNCED) != 0) {
			/* Kept pending: bounced at the next settle. */
			m->flags |= SM_BOUNCE_REQ;
			continue;
		}
		r->last_code = 0;
		free(r->last_reply);
		r->last_reply =
		    strdup("5.0.0 returned by the mail system administrator");
		STATS_INC(bounced);
		sched_admin_bounced(m, i);
		sched_metrics_final(m, r->addr, false);
	}
}

static void sched_round_load_failed(struct sched_msg *m, int status,
				    const char *err);

/* Every job of M's round is back: write down what happened, once, and
 * drop the round (the envelope) from memory. */
void
sched_round_settle(struct sched_msg *m)
{
	struct queue_envelope *env = &m->r->env;
	int64_t now = util_wall_ms(), old_due = m->due_ms;
	int64_t expiry =
	    env->created_ms + (int64_t)sched->conf->delivery.max_age_ms;
	unsigned pending = 0, attempts = 0;
	char qid[QUEUE_ID_HEX_BYTES];
	uint32_t i;

	if (m->r->corrupt != NULL) {
		/* Found damaged while it was sent: held as if found at the
		 * round's start, nothing of the round written. */
		char *why = m->r->corrupt;

		m->r->corrupt = NULL;
		m->flags &= ~SM_FORCE;
		sched_round_free(m);
		sched_round_load_failed(m, QUEUE_CORRUPT, why);
		free(why);
		sched_retry_wake();
		return;
	}
	if (m->r->park != NULL && !m->r->tried && m->r->nbounced == 0 &&
	    !m->r->kept &&
	    !(m->flags & (SM_BOUNCE_REQ | SM_DELETE_REQ | SM_HOLD_REQ)) &&
	    sched_park_add(m->r->park, m, expiry) == 0) {
		/* Nothing was tried: its destination is paused.  Held in
		 * place, as it is on disk: nothing to write. */
		m->flags &= ~SM_FORCE;
		sched_round_free(m);
		sched_retry_wake();
		return;
	}
	m->flags &= ~SM_FORCE;
	if (m->flags & SM_BOUNCE_REQ)
		sched_round_bounce_all(m);
	if (!(m->flags & SM_DELETE_REQ))
		sched_dsn(m);
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		if (m->flags & SM_DELETE_REQ)
			continue; /* deleted by an operator: no DSN, gone */
		pending++;
		if (env->rcpts[i].attempts > attempts)
			attempts = env->rcpts[i].attempts;
	}
	queue_id_format(m->id, qid);
	if (pending == 0) {
		log_debug("%s done: removed from the queue", qid);
		env->next_attempt_ms = old_due;
		m->flags |= SM_DELETED;
		sched_write(m, QOP_DELETE, old_due);
		sched_round_free(m);
		if (m->writes == 0)
			sched_msg_free(m);
		sched_retry_wake();
		return;
	}
	m->due_ms = now + (int64_t)sched_round_delay_ms(attempts);
	/* Not past expiry; but a recipient kept after running out of memory
	 * for its DSN waits a retry interval, not "now" again. */
	if (m->due_ms > expiry && !m->r->kept)
		m->due_ms = expiry > now ? expiry : now;
	env->next_attempt_ms = m->due_ms;
	if (m->flags & SM_HOLD_REQ) {
		/* Held by an operator while it was being attempted. */
		m->flags &= ~SM_HOLD_REQ;
		env->flags |= QUEUE_F_HELD;
		sched_write(m, QOP_UPDATE, old_due);
		sched_round_free(m);
		sched_msg_hold(m);
		sched_retry_wake();
		return;
	}
	log_debug("%s %u recipient(s) deferred; next attempt in %" PRId64 " s",
		  qid, pending, (m->due_ms - now + 999) / 1000);
	sched_write(m, QOP_UPDATE, old_due);
	sched_round_free(m);
	sched_msg_due(m);
	sched_retry_wake();
}

/* Record one recipient's result. */
void
sched_round_rcpt_result(struct sched_msg *m, uint32_t ri,
			const struct smtp_client_result *r,
			const struct outcome *o, const char *remote)
{
	struct queue_rcpt *rc = &m->r->env.rcpts[ri];

	m->r->tried = true;
	sched_round_category(m, ri, o->category);
	if (r->stage != OS_LOCAL || r->code != 0)
		rc->attempts++;
	rc->last_code = (uint16_t)r->code;
	free(rc->last_reply);
	rc->last_reply = r->text != NULL ? strdup(r->text) : NULL;
	if (remote != NULL && remote[0] != '\0') {
		if (m->r->remote == NULL) {
			m->r->remote =
			    calloc(m->r->env.nrcpts, sizeof(*m->r->remote));
			m->r->nremote = m->r->remote ? m->r->env.nrcpts : 0;
		}
		if (m->r->remote != NULL) {
			free(m->r->remote[ri]);
			m->r->remote[ri] = strdup(remote);
		}
	}
	switch (o->action) {
	case OA_DELIVERED:
		rc->state = QR_DELIVERED;
		STATS_INC(delivered);
		break;
	case OA_BOUNCE:
		if (sched_round_rcpt_fail(m, ri, QR_BOUNCED) == 0)
			STATS_INC(bounced);
		else
			STATS_INC(deferred);
		break;
	case OA_DEFER:
		STATS_INC(deferred);
		break;
	}
}

struct sched_load {
	struct sched_msg *msg;
	struct queue *queue; /* for the worker */
	int status;          /* as queue_envelope_get() */
	char err[200];
	struct queue_envelope env;
	struct sched_load *next; /* in its batch (sched->loads) */
};

/* Envelope loads go to the pool in batches: one job (one lock of the
 * pool's list, one post back) per SCHED_LOAD_BATCH loads or per loop turn,
 * whichever comes first; small enough that a turn's loads (up to 2,000)
 * still spread over the workers. */
#define SCHED_LOAD_BATCH 64

/* Worker thread: read and decrypt the envelope from the queue (the body
 * is read by each job as it is sent: sched_job.c). */
static void
sched_round_load_run(void *arg)
{
	struct sched_load *l = arg;

	l->status = queue_envelope_get(l->queue, l->msg->id, &l->env, l->err,
				       sizeof(l->err));
}

/* Worker thread: every load of a batch, in order. */
static void
sched_round_loads_run(void *arg)
{
	struct sched_load *l;

	for (l = arg; l != NULL; l = l->next)
		sched_round_load_run(l);
}

static void sched_round_load_done(void *arg);

/* Loop thread: every completion of a batch, in order (each frees its
 * load). */
static void
sched_round_loads_done(void *arg)
{
	struct sched_load *l, *next;

	for (l = arg; l != NULL; l = next) {
		next = l->next;
		sched_round_load_done(l);
	}
}

/* The shard's gathered loads go to the pool as one job. */
static void
sched_round_loads_submit(void)
{
	struct sched_load *head = sched->loads;

	sched->loads = NULL;
	sched->loads_tail = &sched->loads;
	sched->nloads = 0;
	if (head != NULL)
		worker_submit(sched->loop, sched_round_loads_run,
			      sched_round_loads_done, head);
}

void
sched_round_loads_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sched_round_loads_submit();
}

void
sched_round_loads_free(void)
{
	struct sched_load *l, *next;

	for (l = sched->loads; l != NULL; l = next) {
		next = l->next;
		free(l);
	}
	sched->loads = NULL;
	sched->loads_tail = &sched->loads;
	sched->nloads = 0;
}

/*
 * M could not be read for a round (STATUS, ERR: from sched_round_load_run).  A
 * damaged record is held and said once (its id and what is wrong: nothing
 * of the envelope); anything else is tried again in a minute.  An operator's
 * delete or hold asked for meanwhile is applied now (neither needs the
 * record); a bounce cannot be.
 */
static void
sched_round_load_failed(struct sched_msg *m, int status, const char *err)
{
	char qid[QUEUE_ID_HEX_BYTES];
	bool hold = (m->flags & SM_HOLD_REQ) != 0;

	m->flags &= ~(SM_HOLD_REQ | SM_BOUNCE_REQ);
	queue_id_format(m->id, qid);
	if (m->flags & SM_DELETE_REQ) {
		m->flags &= ~SM_DELETE_REQ;
		sched_msg_unhold(m);
		sched_write_delete(m);
		return;
	}
	if (status == QUEUE_CORRUPT) {
		log_warnx("%s queue record corrupt: %s; held (not attempted "
			  "again; `outpost queue delete %s` removes it)",
			  qid, err, qid);
		sched_msg_hold(m);
		m->flags |= SM_CORRUPT;
		sched->ncorrupt++;
		sched->corrupt_total++;
		return;
	}
	log_warnx("%s could not be read from the queue: %s", qid,
		  err[0] ? err : "error");
	if (hold) {
		sched_write_resched(m, m->due_ms, true);
		sched_msg_hold(m);
		return;
	}
	sched_msg_retry_later(m, 60000);
}

static void
sched_round_load_done(void *arg)
{
	struct sched_load *l = arg;
	struct sched_msg *m = l->msg;
	int status = l->status;
	char err[sizeof(l->err)];

	m->flags &= ~SM_LOADING;
	sched->nloading--;
	snprintf(err, sizeof(err), "%s", l->err);
	if (status == 0 && !(m->flags & SM_DELETED) &&
	    sched_round_new(m, &l->env) != 0) {
		status = -1;
		snprintf(err, sizeof(err), "out of memory");
	}
	queue_envelope_clear(&l->env);
	free(l);
	if (m->flags & SM_DELETED) {
		if (m->writes == 0 && m->r == NULL)
			sched_msg_free(m);
		sched_retry_wake();
		return;
	}
	if (status == 1) {
		/* Gone from the queue (deleted behind our back): forget it. */
		sched_msg_free(m);
		sched_retry_wake();
		return;
	}
	if (status != 0) {
		sched_round_load_failed(m, status, err);
		sched_retry_wake();
		return;
	}
	sched_round_start(m);
}

/* Recipients whose time in the queue is over. */
static bool
sched_round_expire(struct sched_msg *m, int64_t now)
{
	uint32_t i;
	bool any = false;

	if (now <
	    m->r->env.created_ms + (int64_t)sched->conf->delivery.max_age_ms)
		return false;
	for (i = 0; i < m->r->env.nrcpts; i++) {
		struct queue_rcpt *r = &m->r->env.rcpts[i];
		char text[400], dom[256];
		const char *last = r->last_reply;
		enum conf_bounce_category cat;

		if (r->state != QR_PENDING)
			continue;
		any = true; /* the round settles, no attempt */
		if (sched_round_rcpt_fail(m, i, QR_EXPIRED) != 0)
			continue; /* kept pending: expired next round */
		/* Never tried itself (held while its destination was
		 * paused): the destination's own last failure is why. */
		if (last == NULL && r->last_code == 0)
			last = sched_dest_last_error(
			    sched_rcpt_domain(r->addr, dom, sizeof(dom)),
			    m->r->pool);
		/* What kept it from being delivered: its last failure. */
		cat = outcome_category_last(sched->conf, r->last_code, last);
		sched_round_category(m, i, cat);
		metrics_bounce_category(cat, true);
		if (r->last_code != 0)
			snprintf(text, sizeof(text),
				 "4.4.7 delivery time expired; "
				 "last attempt: %d %s",
				 r->last_code, last ? last : "");
		else
			snprintf(text, sizeof(text),
				 "4.4.7 delivery time expired; last error: %s",
				 last ? last : "never attempted");
		free(r->last_reply);
		r->last_reply = strdup(text);
		STATS_INC(expired);
		sched_metrics_final(m, r->addr, true);
		{
			struct evlog_event ev;

			memset(&ev, 0, sizeof(ev));
			ev.type = EV_EXPIRATION;
			ev.id = m->id;
			ev.user = m->r->env.user;
			ev.rcpt = r->addr;
			ev.sender = m->r->env.sender;
			ev.size = m->r->env.size;
			ev.nrcpts = -1;
			ev.attempt = r->attempts;
			ev.queue_time_ms = now - m->r->env.created_ms;
			ev.enhanced = "4.4.7";
			ev.reply = r->last_reply;
			ev.tls_verified = -1;
			ev.count = -1;
			ev.msgid = m->r->env.msgid;
			ev.msgid_clear =
			    (m->r->env.flags & QUEUE_F_MSGID_CLEAR) != 0;
			ev.campaign = m->r->env.campaign;
			ev.category = conf_bounce_category_name(cat);
			evlog_write(&ev);
		}
	}
	if (any) {
		char qid[QUEUE_ID_HEX_BYTES];

		queue_id_format(m->id, qid);
		log_info("%s expired after %" PRIu64 " s in the queue", qid,
			 (uint64_t)(now - m->r->env.created_ms) / 1000);
	}
	return any;
}

struct sched_pending {
	char domain[256];
	uint32_t idx;
};

static int
sched_round_pending_cmp(const void *a, const void *b)
{
	const struct sched_pending *x = a, *y = b;
	int c = strcmp(x->domain, y->domain);

	if (c != 0)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Start a round of attempts: one job per destination (and per
 * max_recipients_per_transaction recipients). */
void
sched_round_start(struct sched_msg *m)
{
	int64_t now = util_wall_ms();
	struct sched_pending *pend;
	struct sched_dest *d;
	struct sched_job *job;
	uint32_t i, j, n;
	unsigned per, k;

	if (sched->stopping) {
		if (m->r != NULL)
			sched_round_free(m);
		sched_msg_due(m);
		return;
	}
	if (m->flags & SM_HELD) {
		if (m->r != NULL)
			sched_round_free(m);
		return;
	}
	if (m->r == NULL) {
		struct sched_load *l = calloc(1, sizeof(*l));

		if (l == NULL)
			goto later;
		l->msg = m;
		l->queue = sched->queue;
		m->flags |= SM_LOADING;
		sched->nloading++;
		if (sched->nloads == 0)
			event_active(sched->loads_flush, EV_TIMEOUT, 1);
		*sched->loads_tail = l;
		sched->loads_tail = &l->next;
		if (++sched->nloads == SCHED_LOAD_BATCH)
			sched_round_loads_submit();
		return;
	}
	/* A round only starts for a message that is not held (a hold set
	 * by the DMARC action is lifted by `queue release`). */
	m->r->env.flags &= ~QUEUE_F_HELD;
	if ((m->flags & (SM_BOUNCE_REQ | SM_DELETE_REQ)) ||
	    sched_round_expire(m, now)) {
		sched_round_settle(m);
		return;
	}
	/* Pending recipients, grouped by domain. */
	if ((pend = malloc((m->r->env.nrcpts + 1) * sizeof(*pend))) == NULL)
		goto later;
	for (i = n = 0; i < m->r->env.nrcpts; i++) {
		if (m->r->env.rcpts[i].state != QR_PENDING)
			continue;
		sched_rcpt_domain(m->r->env.rcpts[i].addr, pend[n].domain,
				  sizeof(pend[n].domain));
		pend[n++].idx = i;
	}
	qsort(pend, n, sizeof(*pend), sched_round_pending_cmp);
	m->r->inflight++; /* hold the round open while jobs are made */
	for (i = 0; i < n; i = j) {
		for (j = i;
		     j < n && strcmp(pend[j].domain, pend[i].domain) == 0; j++)
			;
		d = sched_dest_get(pend[i].domain);
		per = d != NULL ? d->cfg->max_recipients_per_transaction : 0;
		if (per == 0)
			per = 1;
		for (k = i; k < j;) {
			/* Room for the recipients it takes, not for the
			 * transaction's most: one recipient made 1.4 KB of
			 * empty room at the default 50. */
			unsigned room = j - k < per ? j - k : per;

			job = d != NULL ? sched_job_new(m, d, room) : NULL;
			if (job == NULL) {
				/* What is left of the round is retried. */
				log_warnx("out of memory making delivery jobs");
				j = n;
				break;
			}
			while (k < j && job->cj.nrcpt < per)
				sched_job_add(job, pend[k++].idx);
			m->r->inflight++;
			sched_dest_submit(d, job);
		}
	}
	free(pend);
	if (--m->r->inflight == 0)
		sched_round_settle(m);
	return;
later:
	log_warnx("out of memory starting a delivery round; retrying later");
	if (m->r != NULL)
		sched_round_free(m);
	sched_msg_retry_later(m, 60000);
}
