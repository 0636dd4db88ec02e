/*
 * spool.c — bodies written while they arrive: the "spool" record of a
 * message whose chunks 1..n are in "body" before its envelope exists, the
 * insert that adopts them (the envelope, chunk 0 and the last chunks in one
 * commit), the give-up that deletes them, and the sweep at open of those a
 * stopped process left.  Owns the "spool" database.  Writer thread (and
 * queue_open() for the sweep); queue_spool_read on any thread.
 * Invariant: every "body" chunk is named by an envelope or a spool record;
 * a spool record's count is the chunks written under it, in order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <lmdb.h>

#include "queue/queue_int.h"

#define SPOOL_VAL_BYTES 12 /* started_ms(8) chunks(4) */

/* The spool record of ID: its chunk count in *N.  0, MDB_NOTFOUND, or an
 * LMDB error (MDB_CORRUPTED for a value of the wrong size). */
static int
spool_get(struct queue *q, MDB_txn *txn, uint64_t id, uint32_t *n)
{
	uint8_t k[QUEUE_ENV_KEY_BYTES];
	MDB_val key = { sizeof(k), k }, val;
	int rc;

	queue_env_key(k, id);
	if ((rc = mdb_get(txn, q->db_spool, &key, &val)) != 0)
		return rc;
	if (val.mv_size != SPOOL_VAL_BYTES)
		return MDB_CORRUPTED;
	*n = record_be32_get((const uint8_t *)val.mv_data + 8);
	return 0;
}

int
spool_mark(struct queue *q, MDB_txn *txn, uint64_t id, int64_t started_ms)
{
	uint8_t k[QUEUE_ENV_KEY_BYTES], v[SPOOL_VAL_BYTES];
	MDB_val key = { sizeof(k), k }, val = { sizeof(v), v };

	queue_env_key(k, id);
	record_be64_put(v, (uint64_t)started_ms);
	record_be32_put(v + 8, 0);
	return mdb_put(txn, q->db_spool, &key, &val, 0);
}

static int
spool_del(struct queue *q, MDB_txn *txn, uint64_t id)
{
	uint8_t k[QUEUE_ENV_KEY_BYTES];
	MDB_val key = { sizeof(k), k };
	int rc;

	queue_env_key(k, id);
	rc = mdb_del(txn, q->db_spool, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
spool_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
	       const char **what)
{
	uint8_t k[QUEUE_ENV_KEY_BYTES], v[SPOOL_VAL_BYTES];
	MDB_val key = { sizeof(k), k }, val = { sizeof(v), v };
	uint32_t n = 0;
	bool more;
	int rc;

	/* A give-up, or the rest of a delete (op->deleting): some chunks per
	 * commit, so that a full map can still be emptied (LMDB needs pages
	 * to record the pages it frees); the spool record goes last. */
	if (op->kind == QOP_SPOOL_DEL || op->deleting) {
		*what = "mdb_del(body)";
		if ((rc = queue_body_chunks_del(
			 q, txn, op->env.id, QUEUE_DEL_CHUNKS_MAX, &more)) != 0)
			return rc;
		op->again = more;
		if (more)
			return 0;
		*what = "mdb_del(spool)";
		return spool_del(q, txn, op->env.id);
	}
	/* QOP_SPOOL_PUT: the count first (chunks come in order, else the op
	 * fails alone), then its chunk (writer.c). */
	*what = "mdb_get(spool)";
	rc = spool_get(q, txn, op->env.id, &n);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (op->spool_chunk != n + 1) {
		(void)snprintf(op->err, sizeof(op->err),
			       "spooled chunk %" PRIu32 " after %" PRIu32,
			       op->spool_chunk, n);
		return 1; /* WRITER_OP_LOCAL: nothing changed */
	}
	queue_env_key(k, op->env.id);
	record_be64_put(v, (uint64_t)op->env.created_ms);
	record_be32_put(v + 8, op->spool_chunk);
	*what = "mdb_put(spool)";
	return mdb_put(txn, q->db_spool, &key, &val, 0);
}

int
spool_insert_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		   const char **what)
{
	char qid[QUEUE_ID_HEX_BYTES];
	uint32_t n = 0;
	bool more;
	int rc;

	*what = "mdb_get(spool)";
	rc = spool_get(q, txn, op->env.id, &n);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (op->spooled == 0) {
		/* The body is whole in the op: what was spooled goes. */
		if (rc == MDB_NOTFOUND)
			return 0;
		*what = "mdb_del(body)";
		if ((rc = queue_body_chunks_del(q, txn, op->env.id, 0,
						&more)) != 0)
			return rc;
	} else if (rc == MDB_NOTFOUND || n != op->spooled) {
		queue_id_format(op->env.id, qid);
		(void)snprintf(op->err, sizeof(op->err),
			       "record %s: %" PRIu32 " body chunks spooled, "
			       "the insert names %" PRIu32,
			       qid, rc == 0 ? n : 0, op->spooled);
		return 1; /* WRITER_OP_LOCAL: nothing changed */
	}
	*what = "mdb_del(spool)";
	return spool_del(q, txn, op->env.id);
}

/* One step of the sweep inside TXN: at most QUEUE_DEL_CHUNKS_MAX chunks of
 * the first spool record, and the record once they are all gone.  0,
 * MDB_NOTFOUND when nothing is left, or the LMDB error. */
static int
spool_sweep_step(struct queue *q, MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val key, val;
	MDB_stat before, after;
	bool more = false;
	int rc;

	if ((rc = mdb_stat(txn, q->db_body, &before)) != 0 ||
	    (rc = mdb_cursor_open(txn, q->db_spool, &cur)) != 0)
		return rc;
	if ((rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST)) == 0) {
		if (key.mv_size != QUEUE_ENV_KEY_BYTES)
			rc = MDB_CORRUPTED;
		else if ((rc = queue_body_chunks_del(
			      q, txn, record_be64_get(key.mv_data),
			      QUEUE_DEL_CHUNKS_MAX, &more)) == 0 &&
			 !more && (rc = mdb_cursor_del(cur, 0)) == 0)
			q->spool_swept_msgs++;
	}
	mdb_cursor_close(cur);
	if (rc == 0 && (rc = mdb_stat(txn, q->db_body, &after)) == 0)
		q->spool_swept_chunks += before.ms_entries - after.ms_entries;
	return rc;
}

int
spool_sweep(struct queue *q)
{
	MDB_txn *txn;
	int rc;

	for (;;) {
		if ((rc = mdb_txn_begin(q->env, NULL, 0, &txn)) != 0)
			return rc;
		if ((rc = spool_sweep_step(q, txn)) != 0) {
			mdb_txn_abort(txn);
			return rc == MDB_NOTFOUND ? 0 : rc;
		}
		if ((rc = mdb_txn_commit(txn)) != 0)
			return rc;
	}
}

void
queue_spool_swept(struct queue *q, uint64_t *msgs, uint64_t *chunks)
{
	*msgs = q->spool_swept_msgs;
	*chunks = q->spool_swept_chunks;
}

int
queue_spool_read(struct queue *q, uint64_t id, uint32_t n, queue_chunk_fn *fn,
		 void *arg, char *err, size_t errlen)
{
	struct queue_plain buf = { 0 };
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	char qid[QUEUE_ID_HEX_BYTES];
	MDB_txn *txn;
	MDB_val key, val;
	size_t plen;
	uint32_t i;
	int rc, ret = 0;

	if (queue_txn_read(q, &txn, err, errlen) != 0)
		return -1;
	for (i = 1; i <= n && ret == 0; i++) {
		queue_body_key(k, id, i);
		key.mv_data = k;
		key.mv_size = sizeof(k);
		if ((rc = mdb_get(txn, q->db_body, &key, &val)) != 0) {
			queue_id_format(id, qid);
			(void)snprintf(err, errlen,
				       "record %s: spooled chunk %" PRIu32
				       ": %s",
				       qid, i, mdb_strerror(rc));
			ret = rc == MDB_NOTFOUND ? QUEUE_CORRUPT : -1;
			break;
		}
		if ((ret = queue_chunk_open(q, &key, &val, i, &buf, &plen, err,
					    errlen)) != 0)
			break;
		if (fn(buf.p, plen, arg) != 0)
			break;
	}
	queue_txn_read_end(q, txn);
	queue_plain_free(&buf);
	return ret;
}
