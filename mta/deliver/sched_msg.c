/*
 * sched_msg.c — queued messages in memory: the stubs and their id map,
 * holds, the retry heap and its timer, the queue writes that follow every
 * change, and the DSNs a round's failures call for.
 *
 * Owns: every struct sched_msg (freed here, once no write is in flight).
 * Must not: keep a message's due time in memory apart from its schedule
 * entry on disk (every move is written).  Delivery loop thread, but for
 * the writer thread's completions (posted back to the loop).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/deliver/bounce.h"
#include "mta/deliver/sched_int.h"

#define SCHED_ROUND_BATCH 2000 /* rounds started per loop turn */

struct sched_msg *
sched_msg_new(uint64_t id, int64_t due)
{
	struct sched_msg *m = calloc(1, sizeof(*m));

	if (m != NULL) {
		m->id = id;
		m->due_ms = due;
		m->heap_idx = UINT32_MAX;
		m->park_idx = UINT32_MAX;
		if (idmap_put(&sched->ids, id, m) != 0) {
			free(m);
			return NULL;
		}
		sched->nmsgs++;
	}
	return m;
}

void
sched_msg_free(struct sched_msg *m)
{
	idmap_del(&sched->ids, m->id);
	sched_park_remove(m);
	if (m->flags & SM_HELD)
		sched->nheld--;
	if (m->flags & SM_CORRUPT)
		sched->ncorrupt--;
	free(m);
	sched->nmsgs--;
}

/* A held message waits here, outside the heap, until released. */
void
sched_msg_hold(struct sched_msg *m)
{
	if (!(m->flags & SM_HELD)) {
		m->flags |= SM_HELD;
		sched->nheld++;
	}
}

/* Undo sched_msg_hold() (and a hold for a damaged record). */
void
sched_msg_unhold(struct sched_msg *m)
{
	if (m->flags & SM_HELD) {
		m->flags &= ~SM_HELD;
		sched->nheld--;
	}
	if (m->flags & SM_CORRUPT) {
		m->flags &= ~SM_CORRUPT;
		sched->ncorrupt--;
	}
}

/* Attempt M again in MS, the schedule index on disk moved along (the due
 * time in memory is the key of M's entry there, so they must not part). */
void
sched_msg_retry_later(struct sched_msg *m, int64_t ms)
{
	int64_t old = m->due_ms;

	m->due_ms = util_wall_ms() + ms;
	sched_write_resched(m, old, false);
	sched_msg_due(m);
}

/* The retry heap (min-heap on due_ms, sched_heap.c) ------------------- */

void
sched_retry_arm(void)
{
	if (sched->heap.n == 0 || sched->stopping) {
		evtimer_del(sched->retry_timer);
		return;
	}
	sched_timer_ms(sched->retry_timer,
		       sched->heap.v[0]->due_ms - util_wall_ms());
}

/* M is due at M->due_ms: into the heap, the timer moved if it comes first. */
void
sched_msg_due(struct sched_msg *m)
{
	if (m->heap_idx != UINT32_MAX)
		return;
	if (sched_heap_push(&sched->heap, m) != 0)
		panic("out of memory growing the retry heap");
	if (m->heap_idx == 0)
		sched_retry_arm();
}

/* Start the rounds that are due, as far as SCHED_MAX_ACTIVE allows. */
void
sched_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = util_wall_ms();
	unsigned n = 0;

	(void)fd;
	(void)what;
	(void)arg;
	while (sched->heap.n > 0 && sched->heap.v[0]->due_ms <= now &&
	       n++ < SCHED_ROUND_BATCH && !sched->stopping &&
	       sched->nactive + sched->nloading < SCHED_MAX_ACTIVE)
		sched_round_start(sched_heap_pop(&sched->heap));
	if (sched->heap.n > 0 && sched->heap.v[0]->due_ms <= now &&
	    sched->nactive + sched->nloading < SCHED_MAX_ACTIVE)
		sched_timer_ms(sched->retry_timer, 0); /* yield, then go on */
	else if (sched->heap.n > 0 && sched->heap.v[0]->due_ms <= now)
		; /* a settling round re-arms (sched_retry_wake) */
	else
		sched_retry_arm();
}

/* A round ended (or a load failed): room for a due one. */
void
sched_retry_wake(void)
{
	if (!sched->stopping && sched->heap.n > 0 &&
	    sched->heap.v[0]->due_ms <= util_wall_ms() &&
	    sched->nactive + sched->nloading < SCHED_MAX_ACTIVE)
		sched_timer_ms(sched->retry_timer, 0);
}

/* Queue writes -------------------------------------------------------- */

/* A queue write in flight: its op, and the message it is about (NULL for a
 * DSN, which becomes a message of its own once committed). */
struct sched_write {
	struct queue_op *op;
	struct sched_msg *msg;
	struct loop *loop;    /* the scheduler's, where it completes */
	struct loop_msg post; /* its way back there (no allocation) */
};

static void sched_write_done(void *arg);

/* Writer thread: the completion goes back to the loop. */
static void
sched_write_done_cb(struct queue_op *op, int status, void *arg)
{
	struct sched_write *w = arg;

	(void)op;
	(void)status;
	w->post.fn = sched_write_done;
	w->post.arg = w;
	w->post.ours = false;
	/* With the rest of the commit's, after its last (queue_done_hook). */
	loop_post_defer(w->loop, &w->post);
}

/* Submit OP (taken) about M (NULL: a message of our own): in flight until its
 * completion.  0, or -1 when out of memory (OP is still the caller's). */
static int
sched_write_submit(struct sched_msg *m, struct queue_op *op)
{
	struct sched_write *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return -1;
	w->op = op;
	w->msg = m;
	w->loop = sched->loop;
	if (m != NULL)
		m->writes++;
	sched->writes++;
	if (sched->wq.n == 0)
		event_active(sched->wq_flush, EV_TIMEOUT, 1);
	queue_batch_add(&sched->wq, op, sched_write_done_cb, w);
	return 0;
}

void
sched_write_flush(void)
{
	queue_batch_submit(sched->queue, &sched->wq);
}

void
sched_write_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sched_write_flush();
}

/* A write is committed (or failed): a DSN joins the queue; a message whose
 * last write this was and that is gone is freed. */
static void
sched_write_done(void *arg)
{
	struct sched_write *w = arg;
	struct sched_msg *m = w->msg;
	struct queue_op *op = w->op;
	char qid[QUEUE_ID_HEX_BYTES];

	sched->writes--;
	free(w);
	queue_id_format(op->env.id, qid);
	if (op->kind == QOP_INSERT) {
		if (op->status != 0) {
			log_warnx("DSN %s could not be queued: %s", qid,
				  op->err);
			queue_op_free(op);
		} else {
			log_info("%s DSN queued", qid);
			sched_message_add(op);
		}
		sched_maybe_stop();
		return;
	}
	if (op->status != 0)
		log_warnx("%s queue write failed: %s (the message stays as "
			  "it was on disk and is retried)",
			  qid, op->err);
	if (m != NULL) {
		m->writes--;
		if ((m->flags & SM_DELETED) && m->writes == 0 &&
		    !(m->flags & SM_LOADING) && m->r == NULL)
			sched_msg_free(m);
	}
	queue_op_free(op);
	sched_admin_written();
	sched_maybe_stop();
}

void
sched_write(struct sched_msg *m, enum queue_op_kind kind, int64_t old_due)
{
	struct queue_op *op = queue_op_new(kind);

	if (op == NULL)
		goto oom;
	/* Moved, not copied: the round ends right after (sched_int.h). */
	op->env = m->r->env;
	memset(&m->r->env, 0, sizeof(m->r->env));
	op->old_due_ms = old_due;
	/* A settle gates no reply: it may share the next commit.  A crash
	 * before then delivers the message again (at least once). */
	op->lazy = true;
	if (sched_write_submit(m, op) == 0)
		return;
oom:
	/* The state stays as it is on disk: the message is retried from
	 * there after a restart.  Better than crashing. */
	log_warnx("out of memory writing a queue update");
	if (op != NULL)
		queue_op_free(op);
}

/* A change of M's schedule entry alone (QOP_RESCHED, QOP_DELETE: no
 * envelope): M's due time, FLAGS, OLD_DUE its entry's key.  0, or -1 when
 * out of memory (nothing written). */
static int
sched_write_entry(struct sched_msg *m, enum queue_op_kind kind, int64_t old_due,
		  unsigned flags)
{
	struct queue_op *op = queue_op_new(kind);

	if (op != NULL) {
		op->env.id = m->id;
		op->env.next_attempt_ms = m->due_ms;
		op->env.flags = flags;
		op->old_due_ms = old_due;
		if (sched_write_submit(m, op) == 0)
			return 0;
		queue_op_free(op);
	}
	log_warnx("out of memory writing a queue change");
	return -1;
}

void
sched_write_resched(struct sched_msg *m, int64_t old_due, bool held)
{
	(void)sched_write_entry(m, QOP_RESCHED, old_due,
				held ? QUEUE_F_HELD : 0);
}

void
sched_write_delete(struct sched_msg *m)
{
	if (sched_write_entry(m, QOP_DELETE, 0, 0) == 0)
		m->flags |= SM_DELETED;
}

/* DSNs ---------------------------------------------------------------- */

/* The original message for a DSN, read back from the queue (rounds keep
 * no body): its header block only, or all of it for RET=FULL. */
struct sched_dsn_orig {
	uint8_t *p;
	size_t len, cap;
	bool full, oom;
};

static int
sched_dsn_orig_chunk(const uint8_t *data, size_t len, void *arg)
{
	struct sched_dsn_orig *o = arg;
	uint8_t *np;
	size_t cap;

	if (o->len + len > o->cap) {
		cap = o->cap ? o->cap : 65536;
		while (cap < o->len + len)
			cap *= 2;
		if ((np = realloc(o->p, cap)) == NULL) {
			o->oom = true;
			return 1;
		}
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, data, len);
	o->len += len;
	/* The header block is whole once its blank line is in. */
	return !o->full && bounce_headers_len(o->p, o->len) < o->len;
}

/*
 * M's original message for its DSN into O: read on the delivery loop, a
 * rare path (a failure); the header block alone is usually within the
 * first chunk (one read transaction, one chunk decrypted).  RET=FULL reads
 * the whole message, as the DSN carries it whole anyway.  0, or -1 (the
 * DSN goes without it; logged).
 */
static int
sched_dsn_original(struct sched_msg *m, struct sched_dsn_orig *o,
		   const char *qid)
{
	char err[200];
	int rc;

	memset(o, 0, sizeof(*o));
	o->full = (m->r->env.flags & QUEUE_F_RET_FULL) != 0;
	rc = queue_body_read(sched->queue, m->id, sched_dsn_orig_chunk, o, err,
			     sizeof(err));
	if (rc == 0 && o->oom)
		snprintf(err, sizeof(err), "out of memory");
	if (rc != 0 || o->oom) {
		log_warnx("%s the DSN goes without the original message: %s",
			  qid, err);
		free(o->p);
		memset(o, 0, sizeof(*o));
		return -1;
	}
	return 0;
}

/*
 * Queue the DSN IN (hostname, qid, sender, arrival, envid, full set here)
 * of M for its sender.  0, or -1 out of memory (logged).
 */
static int
sched_dsn_queue(struct sched_msg *m, struct bounce_input *in, const char *qid)
{
	const struct queue_envelope *env = &m->r->env;
	struct queue_op *op;
	struct sched_dsn_orig orig;

	in->hostname = sched->conf->hostname;
	in->qid = qid;
	in->sender = env->sender;
	in->arrival_ms = env->created_ms;
	in->envid = env->envid;
	if (sched_dsn_original(m, &orig, qid) == 0) {
		in->headers = orig.p;
		in->headers_len = bounce_headers_len(orig.p, orig.len);
		if (orig.full) { /* RFC 3461 4.3 */
			in->full = orig.p;
			in->full_len = orig.len;
		}
	}
	op = queue_op_new(QOP_INSERT);
	if (op == NULL || bounce_dsn_build(in, &op->body, &op->body_len) != 0) {
		free(orig.p);
		if (op != NULL)
			queue_op_free(op);
		goto oom;
	}
	free(orig.p);
	in->headers = in->full = NULL;
	if (sched_local_submit(op, env->sender) == 0)
		return 0;
oom:
	log_warnx("%s out of memory building a DSN", qid);
	return -1;
}

/*
 * OP (a QOP_INSERT whose body is set) as a message of the daemon's own,
 * from the null sender to RCPT: a DSN, a TLS report.  Its envelope is
 * filled here; 8-bit flags follow the body and RCPT.  0 (OP is the
 * writer's), or -1 out of memory (OP freed).
 */
int
sched_local_submit(struct queue_op *op, const char *rcpt)
{
	int64_t now = util_wall_ms();
	size_t i;

	op->env.id = queue_id_next(sched->queue);
	op->env.created_ms = op->env.next_attempt_ms = now;
	op->env.flags = QUEUE_F_DSN;
	for (i = 0; rcpt[i] != '\0'; i++)
		if ((unsigned char)rcpt[i] >= 0x80)
			op->env.flags |= QUEUE_F_SMTPUTF8 | QUEUE_F_8BITMIME;
	for (i = 0; i < op->body_len; i++)
		if (op->body[i] >= 0x80) {
			/* The original headers may be 8-bit. */
			op->env.flags |= QUEUE_F_8BITMIME;
			break;
		}
	op->env.size = op->body_len;
	op->env.sender = strdup("");
	op->env.client = strdup("127.0.0.1");
	op->env.helo = strdup(sched->conf->hostname);
	op->env.rcpts = calloc(1, sizeof(*op->env.rcpts));
	if (op->env.sender == NULL || op->env.client == NULL ||
	    op->env.helo == NULL || op->env.rcpts == NULL)
		goto oom;
	op->env.nrcpts = 1;
	if ((op->env.rcpts[0].addr = strdup(rcpt)) == NULL ||
	    sched_write_submit(NULL, op) != 0)
		goto oom;
	return 0;
oom:
	queue_op_free(op);
	return -1;
}

int
sched_report_queue(uint8_t *msg, size_t len, const char *rcpt)
{
	struct queue_op *op = queue_op_new(QOP_INSERT);

	if (op == NULL) {
		free(msg);
		log_warnx("out of memory queueing a TLS report");
		return -1;
	}
	op->body = msg;
	op->body_len = len;
	if (sched_local_submit(op, rcpt) != 0) {
		log_warnx("out of memory queueing a TLS report");
		return -1;
	}
	return 0;
}

/* Does recipient R want a DSN for ITS outcome (QUEUE_NOTIFY_FAILURE or
 * _SUCCESS)?  Without NOTIFY (RFC 3461 4.1), failures only. */
static bool
sched_dsn_wanted(const struct queue_rcpt *r, uint8_t its)
{
	return r->notify == 0 ? its == QUEUE_NOTIFY_FAILURE
			      : (r->notify & its) != 0;
}

/*
 * NOTIFY=SUCCESS (RFC 3461 5.2.2.1): the next hop is not asked for DSNs
 * (the client sends no DSN parameters), so a recipient delivered there is
 * reported "relayed", once: its SUCCESS bit is dropped as it is, and the
 * envelope written after this round keeps that.
 */
static void
sched_dsn_relayed(struct sched_msg *m, const char *qid)
{
	struct queue_envelope *env = &m->r->env;
	struct bounce_rcpt *br;
	const char **orcpts;
	struct bounce_input in;
	uint32_t i, n = 0;

	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == QR_DELIVERED &&
		    (env->rcpts[i].notify & QUEUE_NOTIFY_SUCCESS))
			n++;
	if (n == 0)
		return;
	br = calloc(n, sizeof(*br));
	orcpts = calloc(n, sizeof(*orcpts));
	if (br == NULL || orcpts == NULL) {
		log_warnx("%s out of memory building a DSN", qid);
		goto done;
	}
	for (i = 0, n = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];

		if (r->state != QR_DELIVERED ||
		    !(r->notify & QUEUE_NOTIFY_SUCCESS))
			continue;
		br[n].addr = r->addr;
		br[n].status = "2.0.0";
		br[n].code = r->last_code >= 200 ? r->last_code : 0;
		br[n].diag = r->last_reply;
		br[n].remote_mta = m->r->remote ? m->r->remote[i] : NULL;
		orcpts[n++] = r->orcpt;
	}
	memset(&in, 0, sizeof(in));
	in.rcpts = br;
	in.nrcpts = n;
	in.orcpts = orcpts;
	in.relayed = true;
	if (sched_dsn_queue(m, &in, qid) == 0)
		for (i = 0; i < env->nrcpts; i++)
			if (env->rcpts[i].state == QR_DELIVERED)
				env->rcpts[i].notify &=
				    (uint8_t)~QUEUE_NOTIFY_SUCCESS;
done:
	free(br);
	free(orcpts);
}

/* Queue a DSN for the recipients of M that failed this round (and asked
 * for one: NOTIFY), and one for those delivered that asked for that. */
void
sched_dsn(struct sched_msg *m)
{
	struct bounce_rcpt *br;
	char(*st)[12] = NULL;
	const char **orcpts = NULL;
	struct bounce_input in;
	char qid[QUEUE_ID_HEX_BYTES];
	unsigned i, n = 0;

	if (m->r->env.sender == NULL || m->r->env.sender[0] == '\0' ||
	    (m->r->env.flags & QUEUE_F_DSN))
		return;
	queue_id_format(m->id, qid);
	sched_dsn_relayed(m, qid);
	if (m->r->nbounced == 0)
		return;
	br = calloc(m->r->nbounced, sizeof(*br));
	st = calloc(m->r->nbounced, sizeof(*st));
	orcpts = calloc(m->r->nbounced, sizeof(*orcpts));
	if (br == NULL || st == NULL || orcpts == NULL) {
		log_warnx("%s out of memory building a DSN", qid);
		goto done;
	}
	for (i = 0; i < m->r->nbounced; i++) {
		const struct queue_rcpt *r = &m->r->env.rcpts[m->r->bounced[i]];
		const char *text = r->last_reply ? r->last_reply : "";

		if (!sched_dsn_wanted(r, QUEUE_NOTIFY_FAILURE))
			continue; /* NOTIFY=NEVER, or not FAILURE */
		orcpts[n] = r->orcpt;
		br[n].addr = r->addr;
		br[n].code = r->last_code >= 200 ? r->last_code : 0;
		br[n].diag = text;
		br[n].remote_mta =
		    m->r->remote ? m->r->remote[m->r->bounced[i]] : NULL;
		br[n].category = m->r->category != NULL
				     ? (enum conf_bounce_category)
					   m->r->category[m->r->bounced[i]]
				     : CONF_BC_NONE;
		/* The operator's bounces are the round's last NADMIN. */
		br[n].cause = r->state == QR_EXPIRED ? BOUNCE_EXPIRED
			      : i >= m->r->nbounced - m->r->nadmin
				  ? BOUNCE_ADMIN
				  : BOUNCE_REFUSED;
		/* The status: the reply's enhanced code (ours when there
		 * was no reply), else by state. */
		br[n].status = r->state == QR_EXPIRED ? "4.4.7" : "5.0.0";
		if (outcome_enhanced(r->last_code >= 200      ? r->last_code
				     : r->state == QR_EXPIRED ? 400
							      : 500,
				     text, st[n]))
			br[n].status = st[n];
		n++;
	}
	if (n == 0)
		goto done;
	memset(&in, 0, sizeof(in));
	in.rcpts = br;
	in.nrcpts = n;
	in.orcpts = orcpts; /* in.reason NULL: the causes say it */
	(void)sched_dsn_queue(m, &in, qid);
done:
	free(br);
	free(st);
	free(orcpts);
}
