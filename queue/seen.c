/*
 * seen.c — the "seen" database: which recipients each sending identity has
 * sent to, and on which day last (queue.h, queue_seen_*), for the watchdog's
 * share of never-seen recipients; its ops for the writer thread.
 * Owns: nothing past a call (an op belongs to the writer once submitted).
 * Must not: store an address or an identity in clear (keys are keyed
 * hashes), nor write on the calling thread (every change is a queue op).
 * Threads: key and get on any thread (get: its own read transaction, no
 * disk write); put any thread; expire and purge block until their ops are
 * committed (a worker thread, never an I/O loop); seen_op_apply on the
 * writer.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "queue/crypt_int.h"
#include "queue/queue_int.h"

#define SEEN_IDENTITY_CONTEXT "outpost seen identity"
#define SEEN_RCPT_CONTEXT     "outpost seen recipient"
#define SEEN_ADDR_MAX         512 /* bytes of an address we normalise */
/* Entries one expire or purge op looks at: the writer's transaction
 * stays short, so acceptance's commits never wait long behind it. */
#define SEEN_SWEEP_BATCH 20000

/* A caller of expire or purge waiting for its op. */
struct seen_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
};

static void
seen_hash8(struct queue *q, const char *context, const uint8_t *in, size_t len,
	   uint8_t out[QUEUE_SEEN_HALF_BYTES])
{
	uint8_t h[16];

	crypt_key_hash(q->key, context, in, len, h, sizeof(h));
	memcpy(out, h, QUEUE_SEEN_HALF_BYTES);
}

void
queue_seen_identity(struct queue *q, const char *identity,
		    uint8_t out[QUEUE_SEEN_HALF_BYTES])
{
	seen_hash8(q, SEEN_IDENTITY_CONTEXT, (const uint8_t *)identity,
		   strlen(identity), out);
}

void
queue_seen_key(struct queue *q, const uint8_t id[QUEUE_SEEN_HALF_BYTES],
	       const char *rcpt, uint8_t key[QUEUE_SEEN_KEY_BYTES])
{
	uint8_t buf[SEEN_ADDR_MAX];
	const char *s = rcpt, *e = rcpt + strlen(rcpt);
	size_t i, n;

	/* As queue_addr_hash: no angle brackets, ASCII lower-cased. */
	if (s < e && *s == '<')
		s++;
	if (e > s && e[-1] == '>')
		e--;
	n = (size_t)(e - s) < sizeof(buf) ? (size_t)(e - s) : sizeof(buf);
	for (i = 0; i < n; i++)
		buf[i] = s[i] >= 'A' && s[i] <= 'Z'
			     ? (uint8_t)(s[i] - 'A' + 'a')
			     : (uint8_t)s[i];
	memcpy(key, id, QUEUE_SEEN_HALF_BYTES);
	seen_hash8(q, SEEN_RCPT_CONTEXT, buf, n, key + QUEUE_SEEN_HALF_BYTES);
}

int
queue_seen_get(struct queue *q, const uint8_t (*keys)[QUEUE_SEEN_KEY_BYTES],
	       size_t n, uint32_t *days, char *err, size_t errlen)
{
	MDB_txn *txn = NULL;
	MDB_val key, val;
	size_t i;
	int rc;

	queue_read_trim(q);
	if ((rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn)) != 0) {
		(void)snprintf(err, errlen, "%s: reading seen: %s", q->path,
			       mdb_strerror(rc));
		return -1;
	}
	for (i = 0; i < n; i++) {
		key.mv_size = QUEUE_SEEN_KEY_BYTES;
		key.mv_data = (void *)keys[i];
		rc = mdb_get(txn, q->db_seen, &key, &val);
		if (rc == 0 && val.mv_size == 4)
			days[i] = record_be32_get(val.mv_data);
		else if (rc == 0 || rc == MDB_NOTFOUND)
			days[i] = 0;
		else {
			(void)snprintf(err, errlen, "%s: reading seen: %s",
				       q->path, mdb_strerror(rc));
			mdb_txn_abort(txn);
			return -1;
		}
	}
	mdb_txn_abort(txn);
	return 0;
}

/* The done() of a put: nobody waits for it (a lost put makes a recipient
 * look new once more, which the next message corrects). */
static void
seen_put_done(struct queue_op *op, int status, void *arg)
{
	(void)status;
	(void)arg;
	queue_op_free(op);
}

int
queue_seen_put(struct queue *q, const uint8_t (*keys)[QUEUE_SEEN_KEY_BYTES],
	       size_t n, uint32_t day)
{
	struct queue_op *op;

	if (n == 0)
		return 0;
	if ((op = queue_op_new(QOP_SEEN_PUT)) == NULL ||
	    (op->body = malloc(n * QUEUE_SEEN_KEY_BYTES)) == NULL) {
		queue_op_free(op);
		return -1;
	}
	memcpy(op->body, keys, n * QUEUE_SEEN_KEY_BYTES);
	op->body_len = n * QUEUE_SEEN_KEY_BYTES;
	op->old_due_ms = day;
	op->lazy = true;
	queue_submit(q, op, seen_put_done, NULL);
	return 0;
}

static void
seen_wait_done(struct queue_op *op, int status, void *arg)
{
	struct seen_wait *w = arg;

	(void)op;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Submit sweeps of KIND (PREFIX: a purge's identity) until the whole
 * database was looked at; *REMOVED gets the entries deleted. */
static int
seen_sweep(struct queue *q, enum queue_op_kind kind, const uint8_t *prefix,
	   uint32_t before_day, uint64_t *removed, char *err, size_t errlen)
{
	struct seen_wait w = { .mu = PTHREAD_MUTEX_INITIALIZER,
			       .cv = PTHREAD_COND_INITIALIZER };
	uint8_t from[QUEUE_SEEN_KEY_BYTES];
	uint64_t entries, bytes;
	struct queue_op *op;
	int ret = -1;

	*removed = 0;
	/* An expiry with nothing kept writes nothing (no op: an idle
	 * daemon's hourly sweep stays off the writer).  Not a purge: keys
	 * submitted before it may not be committed yet. */
	if (prefix == NULL && queue_seen_stat(q, &entries, &bytes) == 0 &&
	    entries == 0)
		return 0;
	memset(from, 0, sizeof(from));
	if (prefix != NULL)
		memcpy(from, prefix, QUEUE_SEEN_HALF_BYTES);
	for (;;) {
		if ((op = queue_op_new(kind)) == NULL ||
		    (op->body = malloc(QUEUE_SEEN_KEY_BYTES)) == NULL) {
			queue_op_free(op);
			(void)snprintf(err, errlen, "out of memory");
			break;
		}
		memcpy(op->body, from, QUEUE_SEEN_KEY_BYTES);
		op->body_len = QUEUE_SEEN_KEY_BYTES;
		op->old_due_ms = before_day;
		op->lazy = true;
		w.done = false;
		queue_submit(q, op, seen_wait_done, &w);
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		if (w.status != 0) {
			(void)snprintf(err, errlen, "%s", op->err);
			queue_op_free(op);
			break;
		}
		*removed += op->seen_removed;
		/* The op leaves in its body where the next sweep begins,
		 * body_len 0 when it reached the end. */
		if (op->body_len == 0) {
			queue_op_free(op);
			ret = 0;
			break;
		}
		memcpy(from, op->body, QUEUE_SEEN_KEY_BYTES);
		queue_op_free(op);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return ret;
}

int
queue_seen_expire(struct queue *q, uint32_t before_day, uint64_t *removed,
		  char *err, size_t errlen)
{
	return seen_sweep(q, QOP_SEEN_SWEEP, NULL, before_day, removed, err,
			  errlen);
}

int
queue_seen_purge(struct queue *q, const uint8_t id[QUEUE_SEEN_HALF_BYTES],
		 uint64_t *removed, char *err, size_t errlen)
{
	return seen_sweep(q, QOP_SEEN_SWEEP, id, UINT32_MAX, removed, err,
			  errlen);
}

int
queue_seen_stat(struct queue *q, uint64_t *entries, uint64_t *bytes)
{
	MDB_txn *txn;
	MDB_stat st;
	int rc;

	if (mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	rc = mdb_stat(txn, q->db_seen, &st);
	mdb_txn_abort(txn);
	if (rc != 0)
		return -1;
	*entries = st.ms_entries;
	*bytes = (uint64_t)st.ms_psize *
		 (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages);
	return 0;
}

/* A sweep: from the key in the body, at most SEEN_SWEEP_BATCH entries;
 * those of day < old_due_ms go (a purge: the identity's, any day). */
static int
seen_op_sweep(struct queue *q, MDB_txn *txn, struct queue_op *op,
	      const char **what)
{
	uint8_t prefix[QUEUE_SEEN_HALF_BYTES];
	bool purge = op->old_due_ms == UINT32_MAX;
	MDB_cursor *cur = NULL;
	MDB_val key = { QUEUE_SEEN_KEY_BYTES, op->body }, val;
	unsigned n = 0;
	int rc;

	memcpy(prefix, op->body, sizeof(prefix));
	op->seen_removed = 0;
	*what = "sweeping seen";
	if ((rc = mdb_cursor_open(txn, q->db_seen, &cur)) != 0)
		return rc;
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	for (; rc == 0; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (purge && (key.mv_size != QUEUE_SEEN_KEY_BYTES ||
			      memcmp(key.mv_data, prefix, sizeof(prefix)) != 0))
			break;
		if (++n > SEEN_SWEEP_BATCH) {
			/* Where the next op takes over. */
			memcpy(op->body, key.mv_data, QUEUE_SEEN_KEY_BYTES);
			mdb_cursor_close(cur);
			return 0;
		}
		if (purge || val.mv_size != 4 ||
		    record_be32_get(val.mv_data) < (uint32_t)op->old_due_ms) {
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			op->seen_removed++;
		}
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	op->body_len = 0;
	return 0;
}

int
seen_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
	      const char **what)
{
	uint8_t day[4];
	MDB_val key, val = { sizeof(day), day };
	size_t i;
	int rc;

	if (op->kind == QOP_SEEN_SWEEP)
		return seen_op_sweep(q, txn, op, what);
	*what = "mdb_put(seen)";
	record_be32_put(day, (uint32_t)op->old_due_ms);
	for (i = 0; i + QUEUE_SEEN_KEY_BYTES <= op->body_len;
	     i += QUEUE_SEEN_KEY_BYTES) {
		key.mv_size = QUEUE_SEEN_KEY_BYTES;
		key.mv_data = op->body + i;
		if ((rc = mdb_put(txn, q->db_seen, &key, &val, 0)) != 0)
			return rc;
	}
	return 0;
}
