/*
 * smtp_spool.c — a message body written to the queue while it arrives:
 * once the body (after the header block) passes a chunk, each full chunk
 * goes to the worker pool (the streaming DKIM body hash, in order, then
 * sealing) and on to the writer (QOP_SPOOL_PUT), so a session holds its
 * header block and about one chunk, never the message.
 * Owns: struct smtp_spool, which outlives its session when needed (its
 * chunks in flight end, then a give-up deletes them: QOP_SPOOL_DEL).
 * Threads: the session's loop; the hash and the seal on the pool (one job
 * at a time per spool keeps the hash in order); the writer's done() only
 * posts back.  Invariant: at most SMTP_SPOOL_INFLIGHT_MAX chunks are
 * between spill and commit; the session reads no more until one commits.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "conf/conf.h"
#include "dkim/dkim.h"
#include "queue/queue.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/receive/smtp_mem.h"
#include "mta/receive/smtp_server_int.h"

struct smtp_spool {
	struct loop *loop;
	struct smtp_server_session *s; /* NULL once the session let go */
	uint64_t id;
	int64_t started_ms;
	uint32_t chunks;      /* handed off: chunks 1..chunks */
	uint64_t bytes;       /* their octets */
	unsigned inflight;    /* handed off, not committed (nor failed) yet */
	atomic_bool failed;   /* a chunk was not written: no 250 for this one */
	atomic_bool map_full; /* ... because the queue's map is full */
	bool hash_failed;     /* no memory for the body hash */
	struct dkim_bodyhash *bh; /* NULL: nothing will sign */
	bool working;             /* the pool has job (hash, seal) */
	struct queue_op *job;     /* the chunk the pool works on */
	/* The next ones, held for order: a chunk's commit may come back
	 * before the pool's done(), so up to the in-flight limit wait. */
	struct queue_op *waiting[SMTP_SPOOL_INFLIGHT_MAX];
	unsigned nwaiting;
	bool adopted; /* an insert took the chunks */
};

static void smtp_spool_job_run(void *arg);
static void smtp_spool_job_done(void *arg);

/* Nothing in flight: a spool nobody holds any more is finished. */
static void
smtp_spool_end(struct smtp_spool *sp)
{
	struct queue_op *op;

	if (sp->s != NULL || sp->inflight > 0 || sp->working)
		return;
	if (!sp->adopted && sp->chunks > 0 &&
	    (op = queue_op_new(QOP_SPOOL_DEL)) != NULL) {
		/* Fire and forget: a failure leaves a record that the
		 * next start sweeps. */
		op->env.id = sp->id;
		op->lazy = true;
		queue_submit(smtp_server_queue, op, smtp_spool_deleted_cb,
			     NULL);
	} else if (!sp->adopted && sp->chunks > 0) {
		log_warnx("smtp: no memory to delete the spooled chunks of "
			  "%016" PRIx64 " (the next start does)",
			  sp->id);
	}
	dkim_bodyhash_free(sp->bh);
	free(sp);
}

void
smtp_spool_deleted_cb(struct queue_op *op, int status, void *arg)
{
	(void)arg;
	if (status != 0)
		log_warnx("smtp: deleting the spooled chunks of %016" PRIx64
			  " failed: %s (the next start does)",
			  op->env.id, op->err);
	queue_op_free(op);
}

/* A chunk committed (or failed): S may read again, or end its data. */
static void
smtp_spool_on_committed(void *arg)
{
	struct smtp_spool *sp = arg;

	sp->inflight--;
	smtp_mem_give(QUEUE_CHUNK_BYTES);
	if (sp->s != NULL)
		smtp_server_data_spooled(sp->s);
	else
		smtp_spool_end(sp);
}

/* Writer thread. */
static void
smtp_spool_committed_cb(struct queue_op *op, int status, void *arg)
{
	struct smtp_spool *sp = arg;

	if (status != 0 && op->map_full)
		atomic_store(&sp->map_full, true);
	if (status != 0 && !atomic_exchange(&sp->failed, true))
		log_warnx("smtp: spooling chunk %" PRIu32 " of %016" PRIx64
			  " failed: %s",
			  op->spool_chunk, op->env.id, op->err);
	queue_op_free(op);
	loop_post(sp->loop, smtp_spool_on_committed, sp);
}

/* Pool thread: the hash in order, the seal, then the writer. */
static void
smtp_spool_job_run(void *arg)
{
	struct smtp_spool *sp = arg;
	struct queue_op *op = sp->job;

	if (sp->bh != NULL)
		dkim_bodyhash_update(sp->bh, op->body, op->body_len);
	/* The plaintext goes once sealed: the writer copies the sealed
	 * chunk, it needs only the length. */
	if (queue_op_seal(smtp_server_queue, op) == 0) {
		sodium_memzero(op->body, op->body_len);
		free(op->body);
		op->body = NULL;
	}
	sp->job = NULL;
	queue_submit(smtp_server_queue, op, smtp_spool_committed_cb, sp);
}

static void
smtp_spool_job_start(struct smtp_spool *sp, struct queue_op *op)
{
	sp->working = true;
	sp->job = op;
	worker_submit(sp->loop, smtp_spool_job_run, smtp_spool_job_done, sp);
}

/* The loop again: the next chunk to the pool, in order. */
static void
smtp_spool_job_done(void *arg)
{
	struct smtp_spool *sp = arg;
	struct queue_op *op;

	sp->working = false;
	if (sp->nwaiting > 0) {
		op = sp->waiting[0];
		memmove(sp->waiting, sp->waiting + 1,
			--sp->nwaiting * sizeof(sp->waiting[0]));
		smtp_spool_job_start(sp, op);
		return;
	}
	if (sp->s != NULL)
		smtp_server_data_spooled(sp->s);
	else
		smtp_spool_end(sp);
}

/* S's first spill: the spool, and the body hash when a key will sign. */
static struct smtp_spool *
smtp_spool_new(struct smtp_server_session *s)
{
	struct smtp_spool *sp;

	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	sp->loop = s->loop;
	sp->s = s;
	sp->id = s->msg_id;
	sp->started_ms = util_wall_ms();
	atomic_init(&sp->failed, false);
	atomic_init(&sp->map_full, false);
	if (intake_bodyhash_new(s->gen->keyset, s->user, s->body, s->hdr_end,
				&sp->bh) != 0)
		sp->hash_failed = true;
	return sp;
}

int
smtp_spool_spill(struct smtp_server_session *s, size_t n)
{
	struct smtp_spool *sp = s->spool;
	struct queue_op *op;
	size_t rest = s->body_len - s->hdr_end - n;

	if (sp == NULL && (sp = s->spool = smtp_spool_new(s)) == NULL)
		return -1;
	if ((op = queue_op_new(QOP_SPOOL_PUT)) == NULL ||
	    (op->body = malloc(n)) == NULL) {
		queue_op_free(op);
		return -1;
	}
	memcpy(op->body, s->body + s->hdr_end, n);
	memmove(s->body + s->hdr_end, s->body + s->hdr_end + n, rest);
	s->body_len = s->hdr_end + rest;
	op->body_len = n;
	op->env.id = sp->id;
	op->env.created_ms = sp->started_ms;
	op->spool_chunk = ++sp->chunks;
	sp->bytes += n;
	sp->inflight++;
	/* What the chunk holds until its commit, sealed or not. */
	(void)smtp_mem_take(QUEUE_CHUNK_BYTES, true);
	if (sp->working)
		sp->waiting[sp->nwaiting++] = op;
	else
		smtp_spool_job_start(sp, op);
	return 0;
}

bool
smtp_spool_full(const struct smtp_server_session *s)
{
	return s->spool != NULL &&
	       s->spool->inflight >= SMTP_SPOOL_INFLIGHT_MAX;
}

bool
smtp_spool_busy(const struct smtp_server_session *s)
{
	return s->spool != NULL &&
	       (s->spool->inflight > 0 || s->spool->working);
}

int
smtp_spool_adopt(struct smtp_server_session *s, struct queue_op *op,
		 struct dkim_bodyhash **bh, char *why, size_t whylen)
{
	struct smtp_spool *sp = s->spool;

	*bh = NULL;
	if (sp == NULL)
		return 0;
	if (atomic_load(&sp->failed) || sp->hash_failed) {
		snprintf(why, whylen, "%s",
			 sp->hash_failed ? "no memory for the body hash"
			 : atomic_load(&sp->map_full)
			     ? "the queue is full (a spooled chunk did not fit)"
			     : "a spooled chunk was not written");
		return atomic_load(&sp->map_full) ? -2 : -1;
	}
	op->spool = true;
	op->spooled = sp->chunks;
	op->spooled_bytes = sp->bytes;
	*bh = sp->bh;
	sp->bh = NULL;
	return 0;
}

uint64_t
smtp_spool_bytes(const struct smtp_server_session *s)
{
	return s->spool != NULL ? s->spool->bytes : 0;
}

void
smtp_spool_release(struct smtp_server_session *s, bool adopted)
{
	struct smtp_spool *sp = s->spool;

	if (sp == NULL)
		return;
	s->spool = NULL;
	sp->s = NULL;
	sp->adopted = adopted;
	smtp_spool_end(sp);
}
