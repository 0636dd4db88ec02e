/*
 * state.c — the "state" database: operators' and limiters' state, and the
 * users' retention clocks (QS_USER), kept across restarts (queue.h,
 * queue_state_*), its ops for the writer thread, and their sealing.
 * Owns: nothing past a call (an op belongs to the writer once submitted).
 * Must not: write on the calling thread (every change is a queue op), nor
 * store a name in clear (keys are keyed hashes, records are sealed).
 * Threads: put/del on any thread; load at start-up on any thread (its own
 * read transaction); state_op_seal/state_op_apply on the writer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "queue/crypt_int.h"
#include "queue/queue_int.h"

#define STATE_HEADER_BYTES 9 /* version(1) until_ms(8) */
#define STATE_HASH_BYTES   (QUEUE_STATE_KEY_BYTES - 1)
#define STATE_NAME_CONTEXT "outpost state name"

/* The LMDB key of NAME of KIND: the kind, then a keyed hash of the name. */
static void
state_key_make(struct queue *q, enum queue_state_kind kind, const void *name,
	       size_t namelen, uint8_t k[QUEUE_STATE_KEY_BYTES])
{
	k[0] = (uint8_t)kind;
	crypt_key_hash(q->key, STATE_NAME_CONTEXT, name, namelen, k + 1,
		       STATE_HASH_BYTES);
}

/* The done() of every state op: nobody waits for it.  A failed write is
 * counted in the queue's stats (failed_ops); the state it carried is
 * still in force in memory, and the next change of it writes again. */
static void
state_done(struct queue_op *op, int status, void *arg)
{
	(void)status;
	(void)arg;
	if (op->body != NULL)
		sodium_memzero(op->body, op->body_len);
	queue_op_free(op);
}

/* Submit a state op for the LMDB key K (BODY: a PUT's record, owned). */
static int
state_submit(struct queue *q, enum queue_op_kind kind,
	     const uint8_t k[QUEUE_STATE_KEY_BYTES], uint8_t *body,
	     size_t body_len)
{
	struct queue_op *op;

	if ((op = queue_op_new(kind)) == NULL) {
		free(body);
		return -1;
	}
	memcpy(op->state_key, k, QUEUE_STATE_KEY_BYTES);
	op->body = body;
	op->body_len = body_len;
	queue_submit(q, op, state_done, NULL);
	return 0;
}

int
queue_state_put(struct queue *q, enum queue_state_kind kind, const void *name,
		size_t namelen, int64_t until_ms, const void *data, size_t len)
{
	uint8_t k[QUEUE_STATE_KEY_BYTES], *rec;

	if (len > QUEUE_STATE_DATA_MAX ||
	    (rec = malloc(STATE_HEADER_BYTES + len)) == NULL)
		return -1;
	rec[0] = QUEUE_STATE_VERSION;
	record_be64_put(rec + 1, (uint64_t)until_ms);
	if (len > 0)
		memcpy(rec + STATE_HEADER_BYTES, data, len);
	state_key_make(q, kind, name, namelen, k);
	return state_submit(q, QOP_STATE_PUT, k, rec, STATE_HEADER_BYTES + len);
}

int
queue_state_del(struct queue *q, enum queue_state_kind kind, const void *name,
		size_t namelen)
{
	uint8_t k[QUEUE_STATE_KEY_BYTES];

	state_key_make(q, kind, name, namelen, k);
	return state_submit(q, QOP_STATE_DEL, k, NULL, 0);
}

void
queue_state_subkey(struct queue *q, const char *context,
		   uint8_t out[QUEUE_KEY_BYTES])
{
	crypt_key_hash(q->key, context, NULL, 0, out, QUEUE_KEY_BYTES);
}

int
state_op_seal(struct queue *q, struct queue_op *op)
{
	struct queue_sealed *s;
	char why[128];

	if (op->kind != QOP_STATE_PUT)
		return 0;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->buf = malloc(crypt_sealed_len(op->body_len))) == NULL) {
		free(s);
		(void)snprintf(op->err, sizeof(op->err),
			       "out of memory sealing");
		return -1;
	}
	s->env_len = crypt_sealed_len(op->body_len);
	if (crypt_seal(q->key, CRYPT_DB_STATE, op->state_key,
		       QUEUE_STATE_KEY_BYTES, op->body, op->body_len, s->buf,
		       why, sizeof(why)) != 0) {
		(void)snprintf(op->err, sizeof(op->err), "seal: %s", why);
		free(s->buf);
		free(s);
		return -1;
	}
	op->sealed = s;
	return 0;
}

int
state_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
	       const char **what)
{
	MDB_val key = { QUEUE_STATE_KEY_BYTES, op->state_key }, val;
	const struct queue_sealed *s = op->sealed;
	int rc;

	if (op->kind == QOP_STATE_PUT) {
		*what = "mdb_put(state)";
		val.mv_data = s->buf;
		val.mv_size = s->env_len;
		return mdb_put(txn, q->db_state, &key, &val, 0);
	}
	*what = "mdb_del(state)";
	rc = mdb_del(txn, q->db_state, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Keys of the records queue_state_load() drops, deleted once its read
 * transaction is over. */
struct state_drop {
	uint8_t (*keys)[QUEUE_STATE_KEY_BYTES];
	size_t n, cap;
};

static void
state_drop_add(struct state_drop *dr, const void *k)
{
	uint8_t(*nk)[QUEUE_STATE_KEY_BYTES];
	size_t cap;

	if (dr->n == dr->cap) {
		cap = dr->cap ? dr->cap * 2 : 16;
		/* Out of memory: it is dropped at the next start instead. */
		if ((nk = realloc(dr->keys, cap * sizeof(*nk))) == NULL)
			return;
		dr->keys = nk;
		dr->cap = cap;
	}
	memcpy(dr->keys[dr->n++], k, QUEUE_STATE_KEY_BYTES);
}

/*
 * Open one record into BUF (room for a whole record).  1: in force, with
 * *until and *plen; 0: to drop (expired, damaged, another version).
 */
static int
state_record_open(struct queue *q, const MDB_val *key, const MDB_val *val,
		  int64_t now, uint8_t *buf, size_t *plen, int64_t *until)
{
	char why[128];

	if (key->mv_size != QUEUE_STATE_KEY_BYTES ||
	    val->mv_size < CRYPT_OVERHEAD_BYTES + STATE_HEADER_BYTES ||
	    val->mv_size >
		crypt_sealed_len(STATE_HEADER_BYTES + QUEUE_STATE_DATA_MAX))
		return 0;
	if (crypt_open(q->key, CRYPT_DB_STATE, key->mv_data, key->mv_size,
		       val->mv_data, val->mv_size, buf, plen, why,
		       sizeof(why)) != 0 ||
	    buf[0] != QUEUE_STATE_VERSION)
		return 0;
	*until = (int64_t)record_be64_get(buf + 1);
	return *until > now;
}

int
queue_state_load(struct queue *q, enum queue_state_kind kind, int64_t now_ms,
		 queue_state_fn *fn, void *arg, uint64_t *ndropped, char *err,
		 size_t errlen)
{
	uint8_t first = (uint8_t)kind,
		buf[STATE_HEADER_BYTES + QUEUE_STATE_DATA_MAX];
	struct state_drop dr = { 0 };
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key = { 1, &first }, val;
	MDB_cursor_op how = MDB_SET_RANGE;
	int64_t until;
	size_t plen, i;
	int rc, ret = -1;

	if (ndropped != NULL)
		*ndropped = 0;
	if ((rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_cursor_open(txn, q->db_state, &cur)) != 0) {
		(void)snprintf(err, errlen, "%s: reading state: %s", q->path,
			       mdb_strerror(rc));
		goto done;
	}
	for (;; how = MDB_NEXT) {
		rc = mdb_cursor_get(cur, &key, &val, how);
		if (rc == MDB_NOTFOUND ||
		    (rc == 0 && (key.mv_size < 1 ||
				 ((const uint8_t *)key.mv_data)[0] != first))) {
			ret = 0;
			break;
		}
		if (rc != 0) {
			(void)snprintf(err, errlen, "%s: reading state: %s",
				       q->path, mdb_strerror(rc));
			break;
		}
		if (!state_record_open(q, &key, &val, now_ms, buf, &plen,
				       &until)) {
			if (key.mv_size == QUEUE_STATE_KEY_BYTES)
				state_drop_add(&dr, key.mv_data);
			continue;
		}
		rc = fn(until, buf + STATE_HEADER_BYTES,
			plen - STATE_HEADER_BYTES, arg);
		if (rc != 0) {
			ret = rc;
			break;
		}
	}
done:
	sodium_memzero(buf, sizeof(buf));
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	for (i = 0; i < dr.n; i++)
		(void)state_submit(q, QOP_STATE_DEL, dr.keys[i], NULL, 0);
	if (ndropped != NULL)
		*ndropped = dr.n;
	free(dr.keys);
	return ret;
}
