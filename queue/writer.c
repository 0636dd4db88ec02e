/*
 * writer.c — the writer thread: one write transaction per batch of ops
 * (group commit), the waits that make batches (linger, expected ops, lazy
 * ops), and the periodic trim of the LMDB map; queue_submit() and
 * queue_expect() are its doors.
 * Owns: the pending-op list of struct queue (under q->mu) and every write
 * transaction.  Threads: queue_submit/queue_expect on any thread;
 * writer_start/writer_stop on the main thread; the rest on the writer.
 * Invariants: an op's done() is called exactly once, on the writer thread
 * after its transaction committed or failed (or by queue_submit() itself
 * when the writer is gone); nurgent counts the pending ops that are not
 * lazy.
 */
#define _GNU_SOURCE /* madvise(MADV_DONTNEED), RUSAGE_THREAD */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/crypt_int.h"
#include "queue/queue_int.h"

static uint64_t
writer_now_us(void)
{
	return queue_clock_us(CLOCK_MONOTONIC);
}

static void
writer_sched_key(uint8_t k[QUEUE_SCHED_KEY_BYTES], int64_t due_ms, uint64_t id)
{
	record_be64_put(k, (uint64_t)due_ms);
	record_be64_put(k + 8, id);
}

/* An error that fails one op without touching the transaction. */
#define WRITER_OP_LOCAL 1

/* Put every body chunk of an insert (sealed here, into the space LMDB
 * reserves for it) or the sealed one of a QOP_SPOOL_PUT.  A chunk that
 * cannot be sealed (out of memory) fails the batch with ENOMEM and *WHAT
 * "seal(body)": its reserved space holds no record, and is never
 * committed. */
static int
writer_body_put(struct queue *q, MDB_txn *txn, const struct queue_op *op,
		const char **what)
{
	const struct queue_sealed *s = op->sealed;
	const uint8_t *p = s->buf + s->env_len, *src;
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	MDB_val key = { sizeof(k), k }, val;
	char why[128];
	size_t n;
	uint32_t i, idx;
	int rc;

	*what = "mdb_put(body)";
	for (i = 0; i < s->nchunks; i++) {
		queue_op_piece(op, i, &idx, &src, &n);
		queue_body_key(k, op->env.id, idx);
		val.mv_data = (void *)p;
		val.mv_size = crypt_sealed_len(n);
		if ((rc = mdb_put(
			 txn, q->db_body, &key, &val,
			 (op->kind == QOP_SPOOL_PUT ? MDB_NOOVERWRITE : 0) |
			     (s->at_put ? MDB_RESERVE : 0))) != 0)
			return rc;
		if (!s->at_put) {
			p += val.mv_size;
			continue;
		}
		if (crypt_seal(q->key, CRYPT_DB_BODY, k, QUEUE_BODY_KEY_BYTES,
			       src, n, val.mv_data, why, sizeof(why)) != 0) {
			*what = "seal(body)";
			return ENOMEM;
		}
	}
	return 0;
}

/* The pages LMDB faulted in to free chunks leave our page tables: the
 * kernel maps a whole fault-around window (64 KiB) for the one header LMDB
 * reads, so a batch that deletes 20 MB of bodies would map 20 MB.  Done
 * every WRITER_UNMAP_CHUNKS chunks and after each commit, in one call for
 * them all, since each call flushes every core's TLB. */
#define WRITER_UNMAP_CHUNKS 16
static void
writer_unmap_deleted(struct queue *q)
{
	if (q->del_hi > q->del_lo)
		queue_map_unmap(q, (const void *)q->del_lo,
				q->del_hi - q->del_lo);
	q->del_lo = q->del_hi = 0;
	q->del_n = 0;
}

/* The span of the map under the chunks deleted since the last unmap
 * (writer thread only; see writer_unmap_deleted).  The pages stay valid
 * for LMDB: an unmapped page faults back in if it is read again. */
static void
writer_note_deleted(struct queue *q, const MDB_val *val)
{
	uintptr_t a = (uintptr_t)val->mv_data;

	if (!queue_map_has(q, val->mv_data, val->mv_size))
		return; /* a page of this transaction's own (heap) */
	if (q->del_lo == 0 || a < q->del_lo)
		q->del_lo = a;
	if (a + val->mv_size > q->del_hi)
		q->del_hi = a + val->mv_size;
	if (++q->del_n >= WRITER_UNMAP_CHUNKS)
		writer_unmap_deleted(q);
}

int
queue_body_chunks_del(struct queue *q, MDB_txn *txn, uint64_t id, unsigned max,
		      bool *more)
{
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	MDB_cursor *cur;
	MDB_val key, val;
	unsigned n = 0;
	int rc;

	*more = false;
	if ((rc = mdb_cursor_open(txn, q->db_body, &cur)) != 0)
		return rc;
	for (;;) {
		if (max != 0 && n == max) {
			*more = true;
			rc = 0;
			break;
		}
		queue_body_key(k, id, 0);
		key.mv_data = k;
		key.mv_size = sizeof(k);
		rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND ||
		    (rc == 0 && (key.mv_size != sizeof(k) ||
				 memcmp(key.mv_data, k, 8) != 0))) {
			rc = 0;
			break;
		}
		if (rc != 0 || (rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		n++;
		/* LMDB read the chunk's first page to free it: what that
		 * fault mapped leaves our page tables after the commit
		 * (writer_unmap_deleted). */
		writer_note_deleted(q, &val);
	}
	mdb_cursor_close(cur);
	return rc;
}

/* Add (PUT) or remove the schedule entry (DUE, ID).  Removing a missing
 * entry is tolerated: the entry written next is the right one. */
static int
writer_sched_set(struct queue *q, MDB_txn *txn, int64_t due, uint64_t id,
		 bool put, uint32_t flags)
{
	uint8_t k[QUEUE_SCHED_KEY_BYTES], v = 0;
	MDB_val key = { sizeof(k), k }, val = { 0, NULL };
	int rc;

	/* The value is the held bit only: nothing secret in "sched". */
	if (flags & QUEUE_F_HELD) {
		v = 1;
		val.mv_size = 1;
		val.mv_data = &v;
	}
	writer_sched_key(k, due, id);
	if (put)
		return mdb_put(txn, q->db_sched, &key, &val, 0);
	rc = mdb_del(txn, q->db_sched, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Apply one op inside TXN.  0 done; WRITER_OP_LOCAL when the op alone fails
 * before it changed anything (err set in the op); an LMDB error code (rc > 1)
 * that poisons the batch, with *what naming the call.
 */
static int
writer_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		const char **what)
{
	uint8_t k[QUEUE_ENV_KEY_BYTES];
	char qid[QUEUE_ID_HEX_BYTES];
	MDB_val key = { sizeof(k), k }, val;
	bool more;
	int rc;

	if (op->kind == QOP_STATE_PUT || op->kind == QOP_STATE_DEL)
		return state_op_apply(q, txn, op, what);
	if (op->kind == QOP_SUPPRESS_PUT || op->kind == QOP_SUPPRESS_DEL)
		return suppress_op_apply(q, txn, op, what);
	if (op->kind == QOP_SEEN_PUT || op->kind == QOP_SEEN_SWEEP)
		return seen_op_apply(q, txn, op, what);
	if (op->kind == QOP_SPOOL_DEL || op->deleting)
		return spool_op_apply(q, txn, op, what);
	if (op->kind == QOP_SPOOL_PUT) {
		if ((rc = spool_op_apply(q, txn, op, what)) != 0)
			return rc;
		return writer_body_put(q, txn, op, what);
	}
	queue_env_key(k, op->env.id);
	queue_id_format(op->env.id, qid);
	if (op->kind != QOP_INSERT) {
		*what = "mdb_get(env)";
		if ((rc = mdb_get(txn, q->db_env, &key, &val)) ==
		    MDB_NOTFOUND) {
			(void)snprintf(op->err, sizeof(op->err),
				       "record %s: not in the queue", qid);
			return WRITER_OP_LOCAL;
		}
		if (rc != 0)
			return rc;
	}
	if (op->kind == QOP_RESCHED) {
		/* Only the schedule entry moves (due time, held bit); the
		 * sealed envelope is left as it is. */
		*what = "mdb_del(sched)";
		if ((rc = writer_sched_set(q, txn, op->old_due_ms, op->env.id,
					   false, 0)) != 0)
			return rc;
		*what = "mdb_put(sched)";
		return writer_sched_set(q, txn, op->env.next_attempt_ms,
					op->env.id, true, op->env.flags);
	}
	if (op->kind == QOP_DELETE) {
		*what = "mdb_del(env)";
		if ((rc = mdb_del(txn, q->db_env, &key, NULL)) != 0)
			return rc;
		*what = "mdb_del(body)";
		if ((rc = queue_body_chunks_del(
			 q, txn, op->env.id, QUEUE_DEL_CHUNKS_MAX, &more)) != 0)
			return rc;
		/* The rest in commits of their own, under a spool record
		 * that queue_open sweeps should the process stop first. */
		*what = "mdb_put(spool)";
		if (more && (rc = spool_mark(q, txn, op->env.id,
					     op->env.created_ms)) != 0)
			return rc;
		op->again = more;
		*what = "mdb_del(sched)";
		return writer_sched_set(q, txn, op->env.next_attempt_ms,
					op->env.id, false, 0);
	}
	/* A spooled message's spool record first: the op may still fail
	 * alone (nothing changed yet); its chunks go when the body is here
	 * whole. */
	if (op->kind == QOP_INSERT && op->spool &&
	    (rc = spool_insert_apply(q, txn, op, what)) != 0)
		return rc;
	*what = "mdb_put(env)";
	val.mv_data = ((struct queue_sealed *)op->sealed)->buf;
	val.mv_size = ((struct queue_sealed *)op->sealed)->env_len;
	rc = mdb_put(txn, q->db_env, &key, &val,
		     op->kind == QOP_INSERT ? MDB_NOOVERWRITE : 0);
	if (rc == MDB_KEYEXIST) {
		(void)snprintf(op->err, sizeof(op->err),
			       "record %s: id already queued", qid);
		return WRITER_OP_LOCAL;
	}
	if (rc != 0)
		return rc;
	if (op->kind == QOP_INSERT) {
		if ((rc = writer_body_put(q, txn, op, what)) != 0)
			return rc;
	} else {
		*what = "mdb_del(sched)";
		if ((rc = writer_sched_set(q, txn, op->old_due_ms, op->env.id,
					   false, 0)) != 0)
			return rc;
	}
	*what = "mdb_put(sched)";
	return writer_sched_set(q, txn, op->env.next_attempt_ms, op->env.id,
				true, op->env.flags);
}

/*
 * The write transaction of a batch: every op still standing (status 0) is
 * applied, then committed.  Returns 0, or the LMDB error (with *what naming
 * the call) after aborting.  *commit_us: time spent in mdb_txn_commit();
 * *wait_us: waiting for headroom.c to finish a chunk.
 */
static int
writer_batch_txn(struct queue *q, struct queue_op *batch, const char **what,
		 uint64_t *commit_us, uint64_t *wait_us)
{
	struct queue_op *op;
	MDB_txn *txn = NULL;
	uint64_t t0;
	int rc;

	*what = "mdb_txn_begin";
	t0 = writer_now_us();
	pthread_mutex_lock(&q->txn_mu); /* headroom.c appends between txns */
	*wait_us = writer_now_us() - t0;
	if ((rc = mdb_txn_begin(q->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (op = batch; op != NULL; op = op->next) {
		if (op->status != 0)
			continue;
		rc = writer_op_apply(q, txn, op, what);
		/* The transaction holds its own copy now: the sealed bytes
		 * need not wait out the commit's fsync (a failed batch fails
		 * its ops, it does not put them again). */
		queue_sealed_free(op);
		if (rc == WRITER_OP_LOCAL) {
			op->status = -1;
			rc = 0;
		} else if (rc != 0)
			goto fail;
	}
	*what = "mdb_txn_commit";
	t0 = writer_now_us();
	rc = mdb_txn_commit(txn); /* frees txn, committed or not */
	*commit_us = writer_now_us() - t0;
	pthread_mutex_unlock(&q->txn_mu);
	return rc;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	pthread_mutex_unlock(&q->txn_mu);
	return rc;
}

/* OP at the end of the pending ops.  Called with q->mu held. */
static void
writer_append(struct queue *q, struct queue_op *op)
{
	if (q->head == NULL)
		q->lazy_since_us = writer_now_us();
	if (!op->lazy)
		q->nurgent++;
	*q->tailp = op;
	q->tailp = &op->next;
	q->npending++;
}

/* OP goes back at the end of the pending ops, as if just submitted (its
 * done() is not called yet).  Writer thread. */
static void
writer_requeue(struct queue *q, struct queue_op *op)
{
	pthread_mutex_lock(&q->mu);
	writer_append(q, op);
	pthread_mutex_unlock(&q->mu);
}

/*
 * One batch: seal, one write transaction, stats, then every done().  Ops
 * that cannot be sealed or do not apply fail alone; an LMDB error fails
 * every other op of the batch (map_full when it was MDB_MAP_FULL).
 */
static void
writer_batch_commit(struct queue *q, struct queue_op *batch)
{
	struct queue_op *op, *next;
	const char *what = "";
	uint64_t commit_us = 0, wait_us = 0, ok = 0, failed = 0;
	size_t live = 0;
	int rc = 0;

	for (op = batch; op != NULL; op = op->next) {
		op->status = 0;
		op->map_full = false;
		op->err[0] = '\0';
		if (queue_op_seal(q, op) != 0)
			op->status = -1;
		else
			live++;
	}
	if (live > 0)
		rc = writer_batch_txn(q, batch, &what, &commit_us, &wait_us);
	for (op = batch; op != NULL; op = op->next) {
		queue_sealed_free(op);
		if (rc != 0 && op->status == 0) {
			op->status = -1;
			op->map_full = rc == MDB_MAP_FULL;
			(void)snprintf(op->err, sizeof(op->err),
				       "queue write failed: %s: %s", what,
				       mdb_strerror(rc));
		}
		if (op->status == 0)
			ok++;
		else
			failed++;
	}
	pthread_mutex_lock(&q->stats_mu);
	q->stats.txn_wait_us_total += wait_us;
	if (rc == 0 && live > 0) {
		q->stats.commits++;
		q->stats.commit_us_total += commit_us;
		q->stats.last_batch = ok;
		if (ok > q->stats.max_batch)
			q->stats.max_batch = ok;
	}
	q->stats.ops += ok;
	q->stats.failed_ops += failed;
	pthread_mutex_unlock(&q->stats_mu);
	if (rc == 0 && live > 0 && q->commit_hook != NULL)
		q->commit_hook((unsigned)ok, commit_us);
	/* done() may free the op: read next first. */
	for (op = batch; op != NULL; op = next) {
		next = op->next;
		op->next = NULL;
		if (op->status == 0 && op->again) {
			/* Committed, with chunks left to delete. */
			op->again = false;
			op->deleting = op->kind == QOP_DELETE;
			writer_requeue(q, op);
			continue;
		}
		if (op->deleting) {
			/* The envelope went in an earlier commit: the message
			 * is deleted whatever became of the rest, which the
			 * next queue_open sweeps if it is still there. */
			op->status = 0;
		}
		op->done(op, op->status, op->arg);
	}
	if (q->done_hook != NULL)
		q->done_hook();
}

/* Wait until DEADLINE_US (CLOCK_MONOTONIC) unless the batch fills first. */
static void
writer_linger(struct queue *q, uint64_t deadline_us)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_us / 1000000);
	ts.tv_nsec = (long)(deadline_us % 1000000) * 1000;
	while (!q->stopping && q->npending < q->commit_max_batch &&
	       writer_now_us() < deadline_us)
		if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
}

/*
 * Wait (at most until DEADLINE_US) for the messages that were being signed
 * or sealed when the batch began to arrive (queue_expect), so that they
 * share its commit.  Under a CPU-bound load (RSA signing) this turns many
 * small commits into a few large ones, each fsync and wake-up saved going
 * to the signatures; an idle queue, or one message alone, waits not at all.
 * Called with q->mu held.
 */
static void
writer_wait_expected(struct queue *q, uint64_t deadline_us)
{
	uint64_t target = atomic_load(&q->expect_total);
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_us / 1000000);
	ts.tv_nsec = (long)(deadline_us % 1000000) * 1000;
	q->linger_target = target;
	q->lingering = true;
	while (!q->stopping && q->npending < q->commit_max_batch &&
	       atomic_load(&q->expect_done) < target &&
	       writer_now_us() < deadline_us)
		if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
	q->lingering = false;
}

void
queue_expect(struct queue *q, int delta)
{
	if (delta > 0)
		atomic_fetch_add(&q->expect_total, (uint64_t)delta);
	else if (delta < 0)
		atomic_fetch_add(&q->expect_done, (uint64_t)-delta);
}

/*
 * Ten times a second, unmap the pages of the LMDB map this process has
 * touched (MADV_DONTNEED on a shared file mapping only drops our page table
 * entries: the pages stay in the page cache and fault back in cheaply).
 * Otherwise every B-tree page ever read stays counted in our RSS, each
 * with its 64 KiB fault-around window, and a large queue looks like
 * gigabytes of process memory that the kernel would in fact reclaim at
 * will.  Every 5 s let a 1 MB relay map 30 MB between trims; the hot
 * B-tree pages fault back in for a few microseconds each.  Safe with
 * concurrent readers.
 *
 * Sooner, once the writer itself has taken WRITER_TRIM_FAULTS page faults
 * since the last trim (its own count, getrusage(RUSAGE_THREAD)): LMDB
 * copies every page it changes, so each commit leaves new B-tree pages
 * that the next one faults in, 64 KiB apiece.  At 10 MB messages, 100 ms
 * of commits left 12 MiB of the file mapped (110 runs of 64-320 KiB),
 * a quarter of the daemon's peak.
 */
#define WRITER_TRIM_US     (100 * 1000ull)
#define WRITER_TRIM_FAULTS 64

struct writer_trim {
	uint64_t us; /* when the map was last trimmed */
	long faults; /* the writer's page faults then */
};

static long
writer_faults(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return 0;
	return ru.ru_minflt + ru.ru_majflt;
}

static void
writer_trim(struct queue *q, struct writer_trim *t)
{
	uint64_t now = writer_now_us();
	long faults = writer_faults();

	if (now - t->us < WRITER_TRIM_US &&
	    faults - t->faults < WRITER_TRIM_FAULTS)
		return;
	queue_map_trim(q); /* drops entries: it takes no fault itself */
	t->us = now;
	t->faults = faults;
}

/*
 * Find the LMDB map (for the trim): LMDB does not say where it is
 * (mdb_env_info's me_mapaddr is only set with MDB_FIXEDMAP), so take a
 * value's address, which points into the map, and look it up
 * (queue_map_locate).  Without it (no /proc), no trim: only RSS is at
 * stake.
 */
static void
writer_map_find(struct queue *q)
{
	MDB_val key = { sizeof(QUEUE_META_VERSION) - 1, QUEUE_META_VERSION },
		val;
	MDB_txn *txn;
	const void *at = NULL;

	if (mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn) != 0)
		return;
	if (mdb_get(txn, q->db_meta, &key, &val) == 0)
		at = val.mv_data;
	mdb_txn_abort(txn);
	if (at == NULL || queue_map_locate(at, &q->map_addr, &q->map_len) != 0)
		return;
	if (mdb_env_get_fd(q->env, &q->map_fd) != 0)
		q->map_fd = -1;
}

/*
 * Until there is something to commit: an op that gates a reply (not lazy),
 * a full batch, lazy ops that have waited lazy_wait_us (a delivered
 * message's removal rides along with the next commit rather than paying for
 * one of its own), or the end.  Called with q->mu held.
 */
static void
writer_wait(struct queue *q, struct writer_trim *trimmed)
{
	uint64_t deadline, now;
	struct timespec ts;

	while (!q->stopping) {
		if (q->head == NULL) {
			/* Idle: still trim the map now and then, since the
			 * scheduler and the control socket's views read
			 * through it. */
			deadline = trimmed->us + WRITER_TRIM_US;
			if (writer_now_us() >= deadline) {
				pthread_mutex_unlock(&q->mu);
				writer_trim(q, trimmed);
				pthread_mutex_lock(&q->mu);
				continue;
			}
			ts.tv_sec = (time_t)(deadline / 1000000);
			ts.tv_nsec = (long)(deadline % 1000000) * 1000;
			(void)pthread_cond_timedwait(&q->cv, &q->mu, &ts);
			continue;
		}
		if (q->nurgent > 0 || q->npending >= q->commit_max_batch)
			return;
		deadline = q->lazy_since_us + q->lazy_wait_us;
		if ((now = writer_now_us()) >= deadline)
			return;
		ts.tv_sec = (time_t)(deadline / 1000000);
		ts.tv_nsec = (long)(deadline % 1000000) * 1000;
		q->lazy_waiting = true;
		(void)pthread_cond_timedwait(&q->cv, &q->mu, &ts);
		q->lazy_waiting = false;
	}
}

static void *
writer_main(void *arg)
{
	struct queue *q = arg;
	struct queue_op *batch, *last;
	struct writer_trim trimmed = { writer_now_us(), writer_faults() };
	size_t n, urgent;

	(void)prctl(PR_SET_NAME, (unsigned long)"queue-writer", 0, 0, 0);
	pthread_mutex_lock(&q->mu);
	for (;;) {
		writer_wait(q, &trimmed);
		if (q->head == NULL)
			break; /* stopping, and everything committed */
		if (q->commit_interval_us > 0)
			writer_linger(q,
				      writer_now_us() + q->commit_interval_us);
		if (q->prepare_wait_us > 0 && atomic_load(&q->expect_done) <
						  atomic_load(&q->expect_total))
			writer_wait_expected(q, writer_now_us() +
						    q->prepare_wait_us);
		/* Take everything pending, up to one batch. */
		batch = last = q->head;
		urgent = !last->lazy;
		for (n = 1; n < q->commit_max_batch && last->next != NULL;
		     n++) {
			last = last->next;
			urgent += !last->lazy;
		}
		q->nurgent -= urgent;
		q->head = last->next;
		last->next = NULL;
		if (q->head == NULL)
			q->tailp = &q->head;
		q->npending -= n;
		pthread_mutex_unlock(&q->mu);
		writer_batch_commit(q, batch);
		writer_unmap_deleted(q);
		writer_trim(q, &trimmed);
		pthread_mutex_lock(&q->mu);
	}
	q->writer_exited = true;
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

void
queue_batch_add(struct queue_batch *b, struct queue_op *op, queue_done_fn *done,
		void *arg)
{
	op->done = done;
	op->arg = arg;
	op->next = NULL;
	if (b->tailp == NULL)
		b->tailp = &b->head;
	*b->tailp = op;
	b->tailp = &op->next;
	b->n++;
}

/* Does OP, about to join the pending ops, need the writer woken?  q->mu. */
static bool
writer_wakes(const struct queue *q, const struct queue_op *op)
{
	return q->head == NULL || q->npending + 1 == q->commit_max_batch ||
	       (q->lingering &&
		atomic_load(&q->expect_done) >= q->linger_target) ||
	       (q->lazy_waiting && !op->lazy);
}

void
queue_batch_submit(struct queue *q, struct queue_batch *b)
{
	struct queue_op *op = b->head, *next;
	bool wake = false, refused;

	b->head = NULL;
	b->tailp = &b->head;
	b->n = 0;
	if (op == NULL)
		return;
	pthread_mutex_lock(&q->mu);
	refused = !q->writer_started || q->writer_exited;
	if (!refused) {
		for (; op != NULL; op = next) {
			next = op->next;
			op->next = NULL;
			wake = wake || writer_wakes(q, op);
			writer_append(q, op);
		}
		if (wake)
			pthread_cond_signal(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	for (; op != NULL; op = next) { /* refused: each fails alone */
		next = op->next;
		op->next = NULL;
		op->status = -1;
		op->map_full = false;
		(void)snprintf(op->err, sizeof(op->err), "queue %s", "closed");
		pthread_mutex_lock(&q->stats_mu);
		q->stats.failed_ops++;
		pthread_mutex_unlock(&q->stats_mu);
		op->done(op, -1, op->arg);
	}
	if (refused && q->done_hook != NULL)
		q->done_hook();
}

void
queue_submit(struct queue *q, struct queue_op *op, queue_done_fn *done,
	     void *arg)
{
	struct queue_batch b = { NULL, NULL, 0 };

	queue_batch_add(&b, op, done, arg);
	queue_batch_submit(q, &b);
}

int
writer_start(struct queue *q, char *err, size_t errlen)
{
	int rc;

	writer_map_find(q);
	if ((rc = pthread_create(&q->writer, NULL, writer_main, q)) != 0) {
		(void)snprintf(err, errlen, "cannot start the writer: %s",
			       strerror(rc));
		return -1;
	}
	q->writer_started = true;
	/* Without it restore points still work, only slower under load. */
	(void)headroom_start(q);
	return 0;
}

void
writer_stop(struct queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	if (q->writer_started)
		pthread_join(q->writer, NULL);
	headroom_stop(q);
}
