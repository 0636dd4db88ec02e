/*
 * suppress.c — the "suppress" database: the suppression list (queue.h,
 * queue_suppress_*), its ops for the writer thread, its readers.
 * Owns: nothing past a call (an op belongs to the writer once submitted).
 * Must not: write on the calling thread (every change is a queue op), nor
 * hash or see an address: the caller hands in keyed hashes.
 * Threads: put/del/get/count on any thread (get on an I/O loop too: one
 * read transaction, one mdb_get); walk and drop on a worker thread;
 * suppress_op_apply on the writer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "queue/queue_int.h"

#define SUPPRESS_KEY_BYTES    (2 * QUEUE_SUPPRESS_HASH_BYTES)
#define SUPPRESS_RECORD_BYTES 10 /* version(1) reason(1) time_ms(8) */

static const char *const suppress_reason_names[] = {
	[QSR_BAD_MAILBOX] = "bounce-bad-mailbox",
	[QSR_BAD_DOMAIN] = "bounce-bad-domain",
	[QSR_COMPLAINT] = "complaint",
	[QSR_OPERATOR] = "operator",
};

#define SUPPRESS_NREASONS                                                      \
	(sizeof(suppress_reason_names) / sizeof(suppress_reason_names[0]))

const char *
queue_suppress_reason_name(enum queue_suppress_reason r)
{
	if ((unsigned)r == 0 || (unsigned)r >= SUPPRESS_NREASONS)
		return "unknown";
	return suppress_reason_names[r];
}

int
queue_suppress_reason_parse(const char *name, enum queue_suppress_reason *r)
{
	unsigned i;

	for (i = 1; i < SUPPRESS_NREASONS; i++)
		if (strcmp(name, suppress_reason_names[i]) == 0) {
			*r = (enum queue_suppress_reason)i;
			return 0;
		}
	return -1;
}

/* What a suppress op's done() hands on. */
struct suppress_wait {
	queue_suppress_done_fn *done;
	void *arg;
};

/* The done() of every suppress op: tell the caller if it waits. */
static void
suppress_op_done(struct queue_op *op, int status, void *arg)
{
	struct suppress_wait *w = arg;

	queue_op_free(op);
	if (w == NULL)
		return;
	w->done(status, w->arg);
	free(w);
}

static int
suppress_submit(struct queue *q, enum queue_op_kind kind, const uint8_t *scope,
		const uint8_t *rcpt, uint8_t *body,
		queue_suppress_done_fn *done, void *arg)
{
	struct suppress_wait *w = NULL;
	struct queue_op *op;

	if ((op = queue_op_new(kind)) == NULL ||
	    (done != NULL && (w = malloc(sizeof(*w))) == NULL)) {
		free(op);
		free(body);
		return -1;
	}
	if (w != NULL) {
		w->done = done;
		w->arg = arg;
	}
	memcpy(op->suppress_key, scope, QUEUE_SUPPRESS_HASH_BYTES);
	memcpy(op->suppress_key + QUEUE_SUPPRESS_HASH_BYTES, rcpt,
	       QUEUE_SUPPRESS_HASH_BYTES);
	op->body = body;
	op->body_len = body != NULL ? SUPPRESS_RECORD_BYTES : 0;
	queue_submit(q, op, suppress_op_done, w);
	return 0;
}

int
queue_suppress_put(struct queue *q, const struct queue_suppress_entry *e,
		   queue_suppress_done_fn *done, void *arg)
{
	uint8_t *rec;

	if ((rec = malloc(SUPPRESS_RECORD_BYTES)) == NULL)
		return -1;
	rec[0] = QUEUE_SUPPRESS_VERSION;
	rec[1] = (uint8_t)e->reason;
	record_be64_put(rec + 2, (uint64_t)e->time_ms);
	return suppress_submit(q, QOP_SUPPRESS_PUT, e->scope, e->rcpt, rec,
			       done, arg);
}

int
queue_suppress_del(struct queue *q,
		   const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		   const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		   queue_suppress_done_fn *done, void *arg)
{
	return suppress_submit(q, QOP_SUPPRESS_DEL, scope, rcpt, NULL, done,
			       arg);
}

int
suppress_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		  const char **what)
{
	MDB_val key = { SUPPRESS_KEY_BYTES, op->suppress_key }, val;
	int rc;

	if (op->kind == QOP_SUPPRESS_PUT) {
		*what = "mdb_put(suppress)";
		val.mv_data = op->body;
		val.mv_size = op->body_len;
		return mdb_put(txn, q->db_suppress, &key, &val, 0);
	}
	*what = "mdb_del(suppress)";
	rc = mdb_del(txn, q->db_suppress, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The entry of one record: 0, or -1 when it is not one of ours. */
static int
suppress_record_read(const MDB_val *key, const MDB_val *val,
		     struct queue_suppress_entry *e)
{
	const uint8_t *v = val->mv_data;

	if (key->mv_size != SUPPRESS_KEY_BYTES ||
	    val->mv_size != SUPPRESS_RECORD_BYTES ||
	    v[0] != QUEUE_SUPPRESS_VERSION)
		return -1;
	memcpy(e->scope, key->mv_data, QUEUE_SUPPRESS_HASH_BYTES);
	memcpy(e->rcpt,
	       (const uint8_t *)key->mv_data + QUEUE_SUPPRESS_HASH_BYTES,
	       QUEUE_SUPPRESS_HASH_BYTES);
	e->reason = (enum queue_suppress_reason)v[1];
	e->time_ms = (int64_t)record_be64_get(v + 2);
	return 0;
}

int
queue_suppress_get(struct queue *q,
		   const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		   const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		   struct queue_suppress_entry *out, char *err, size_t errlen)
{
	uint8_t k[SUPPRESS_KEY_BYTES];
	struct queue_suppress_entry e;
	MDB_val key = { sizeof(k), k }, val;
	MDB_txn *txn;
	int rc, ret = -1;

	memcpy(k, scope, QUEUE_SUPPRESS_HASH_BYTES);
	memcpy(k + QUEUE_SUPPRESS_HASH_BYTES, rcpt, QUEUE_SUPPRESS_HASH_BYTES);
	queue_read_trim(q);
	if ((rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn)) != 0) {
		(void)snprintf(err, errlen, "%s: suppression list: %s", q->path,
			       mdb_strerror(rc));
		return -1;
	}
	rc = mdb_get(txn, q->db_suppress, &key, &val);
	if (rc == MDB_NOTFOUND)
		ret = 0;
	else if (rc != 0)
		(void)snprintf(err, errlen, "%s: suppression list: %s", q->path,
			       mdb_strerror(rc));
	else if (suppress_record_read(&key, &val, &e) != 0)
		ret = 0;
	else {
		if (out != NULL)
			*out = e;
		ret = 1;
	}
	mdb_txn_abort(txn);
	return ret;
}

int
queue_suppress_walk(struct queue *q, const uint8_t *scope,
		    queue_suppress_fn *fn, void *arg, char *err, size_t errlen)
{
	uint8_t first[QUEUE_SUPPRESS_HASH_BYTES] = { 0 };
	struct queue_suppress_entry e;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key = { sizeof(first), first }, val;
	MDB_cursor_op how = MDB_SET_RANGE;
	size_t n = 0;
	int rc, ret = -1;

	if (scope != NULL)
		memcpy(first, scope, sizeof(first));
	if ((rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_cursor_open(txn, q->db_suppress, &cur)) != 0)
		goto fail;
	for (;; how = MDB_NEXT) {
		if (++n % QUEUE_WALK_TRIM_EVERY == 0)
			queue_map_trim(q);
		rc = mdb_cursor_get(cur, &key, &val, how);
		if (rc == MDB_NOTFOUND) {
			ret = 0;
			break;
		}
		if (rc != 0)
			goto fail;
		if (suppress_record_read(&key, &val, &e) != 0)
			continue;
		if (scope != NULL &&
		    memcmp(e.scope, scope, sizeof(first)) != 0) {
			ret = 0;
			break;
		}
		if ((rc = fn(&e, arg)) != 0) {
			ret = rc;
			break;
		}
	}
	goto done;
fail:
	(void)snprintf(err, errlen, "%s: reading the suppression list: %s",
		       q->path, mdb_strerror(rc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	return ret;
}

/* The keys queue_suppress_drop() deletes, gathered during its walk. */
struct suppress_drop {
	int64_t older_than_ms;
	uint8_t (*keys)[SUPPRESS_KEY_BYTES];
	size_t n, cap;
};

static int
suppress_drop_add(const struct queue_suppress_entry *e, void *arg)
{
	struct suppress_drop *d = arg;
	uint8_t(*nk)[SUPPRESS_KEY_BYTES];
	size_t cap;

	if (e->time_ms >= d->older_than_ms)
		return 0;
	if (d->n == d->cap) {
		cap = d->cap ? d->cap * 2 : 64;
		if ((nk = realloc(d->keys, cap * sizeof(*nk))) == NULL)
			return -2;
		d->keys = nk;
		d->cap = cap;
	}
	memcpy(d->keys[d->n], e->scope, QUEUE_SUPPRESS_HASH_BYTES);
	memcpy(d->keys[d->n] + QUEUE_SUPPRESS_HASH_BYTES, e->rcpt,
	       QUEUE_SUPPRESS_HASH_BYTES);
	d->n++;
	return 0;
}

int64_t
queue_suppress_drop(struct queue *q, const uint8_t *scope,
		    int64_t older_than_ms, char *err, size_t errlen)
{
	struct suppress_drop d = { .older_than_ms = older_than_ms };
	int64_t n = 0;
	size_t i;
	int rc;

	/* Deleted once the read transaction is over: the writer's
	 * transaction must not wait on our snapshot. */
	rc = queue_suppress_walk(q, scope, suppress_drop_add, &d, err, errlen);
	if (rc == -2)
		(void)snprintf(err, errlen, "out of memory");
	if (rc != 0) {
		free(d.keys);
		return -1;
	}
	for (i = 0; i < d.n; i++)
		if (suppress_submit(q, QOP_SUPPRESS_DEL, d.keys[i],
				    d.keys[i] + QUEUE_SUPPRESS_HASH_BYTES, NULL,
				    NULL, NULL) == 0)
			n++;
	free(d.keys);
	return n;
}

int
suppress_db_check(MDB_txn *txn, char *err, size_t errlen)
{
	struct queue_suppress_entry e;
	MDB_cursor *cur = NULL;
	MDB_cursor_op how = MDB_FIRST;
	MDB_val key, val;
	MDB_dbi dbi;
	int rc;

	if ((rc = mdb_dbi_open(txn, "suppress", 0, &dbi)) == MDB_NOTFOUND)
		return 0;
	if (rc != 0 || (rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		goto fail;
	for (;; how = MDB_NEXT) {
		if ((rc = mdb_cursor_get(cur, &key, &val, how)) == MDB_NOTFOUND)
			break;
		if (rc != 0)
			goto fail;
		if (suppress_record_read(&key, &val, &e) != 0) {
			(void)snprintf(err, errlen,
				       "suppression record: malformed (%zu "
				       "and %zu bytes)",
				       key.mv_size, val.mv_size);
			mdb_cursor_close(cur);
			return -1;
		}
	}
	mdb_cursor_close(cur);
	return 0;
fail:
	(void)snprintf(err, errlen, "reading the suppression list: %s",
		       mdb_strerror(rc));
	if (cur != NULL)
		mdb_cursor_close(cur);
	return -1;
}

uint64_t
queue_suppress_count(struct queue *q)
{
	MDB_txn *txn;
	MDB_stat st;
	uint64_t n = 0;

	if (mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn) != 0)
		return 0;
	if (mdb_stat(txn, q->db_suppress, &st) == 0)
		n = st.ms_entries;
	mdb_txn_abort(txn);
	return n;
}
