/*
 * queue_commit_test.c — the queue end to end (queue/queue.c): 1000 inserts
 * from 4 threads group-committed, read back after a reopen (bodies over a
 * chunk included); updates and deletes move and remove schedule entries;
 * nothing in clear in data.mdb; a map-full batch fails alone; close drains;
 * format version and key checks; read-only opens; ids; the writer waits
 * for expected ops (queue_expect) and only for them.
 */
#include <sys/stat.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "queue/queue.h"
#include "queue/crypt_int.h"

#define NTHREADS    4
#define PER_THREAD  250
#define NOPS        (NTHREADS * PER_THREAD)
#define WINDOW      16 /* ops in flight per thread, like pipelined sessions */
#define SECRET      "SeCrEt-7f3a9c"
#define BODY_MARKER "BODY-MARKER-" SECRET
#define BIG_BODY    (300 * 1024)

static char tmpdir[256];
static char qpath[512], kpath[512];

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
setup_tmp(void **state)
{
	(void)state;
	assert_true(snprintf(tmpdir, sizeof(tmpdir), "%s/qcommit.XXXXXX",
			     getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp") <
		    (int)sizeof(tmpdir));
	assert_non_null(mkdtemp(tmpdir));
	assert_true(snprintf(qpath, sizeof(qpath), "%s/var/queue", tmpdir) <
		    (int)sizeof(qpath));
	assert_true(snprintf(kpath, sizeof(kpath), "%s/var/keys/queue.key",
			     tmpdir) < (int)sizeof(kpath));
	return 0;
}

static int
teardown_tmp(void **state)
{
	char cmd[512];

	(void)state;
	if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir) <
	    (int)sizeof(cmd))
		assert_int_equal(system(cmd), 0);
	return 0;
}

static unsigned open_prepare_wait_us, open_lazy_wait_us;

static struct queue *
open_queue(uint64_t map_size, unsigned interval_us)
{
	struct queue_config cfg = { 0 };
	struct queue *q = NULL;
	char err[256];

	cfg.path = qpath;
	cfg.key_file = kpath;
	cfg.map_size = map_size;
	cfg.commit_interval_us = interval_us;
	cfg.commit_max_batch = 1024;
	cfg.prepare_wait_us = open_prepare_wait_us;
	cfg.lazy_wait_us = open_lazy_wait_us;
	if (queue_open(&q, &cfg, err, sizeof(err)) != 0)
		fail_msg("queue_open: %s", err);
	return q;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	assert_non_null(p);
	return p;
}

/* The body of message ID: lines carrying the marker, cut to LEN bytes. */
static uint8_t *
body_make(uint64_t id, size_t len)
{
	uint8_t *b = malloc(len + 1);
	char line[80];
	size_t off = 0, n;
	unsigned i = 0;

	assert_non_null(b);
	while (off < len) {
		n = (size_t)snprintf(
		    line, sizeof(line),
		    BODY_MARKER " %016" PRIx64 " line %08u\r\n", id, i++);
		if (n > len - off)
			n = len - off;
		memcpy(b + off, line, n);
		off += n;
	}
	return b;
}

static size_t
body_len_for(unsigned n)
{
	if (n % 25 == 0)
		return BIG_BODY; /* two chunks */
	if (n == 1)
		return 2 * QUEUE_CHUNK_BYTES; /* exactly two chunks */
	if (n == 2)
		return 0;
	return 2000 + n * 7;
}

static struct queue_op *
insert_op(struct queue *q, unsigned n, size_t body_len, int64_t due)
{
	struct queue_op *op = queue_op_new(QOP_INSERT);
	char buf[96];
	uint32_t i;

	assert_non_null(op);
	op->env.id = queue_id_next(q);
	op->env.created_ms = now_ms();
	op->env.next_attempt_ms = due;
	op->env.flags = QUEUE_F_8BITMIME;
	assert_true(snprintf(buf, sizeof(buf), "sender.%s.%u@example.com",
			     SECRET, n) < (int)sizeof(buf));
	op->env.sender = xstrdup(buf);
	op->env.user = xstrdup("user-" SECRET);
	op->env.client = xstrdup("192.0.2.1");
	op->env.helo = xstrdup("helo-" SECRET ".example");
	op->env.nrcpts = 1 + n % 3;
	op->env.rcpts = calloc(op->env.nrcpts, sizeof(*op->env.rcpts));
	assert_non_null(op->env.rcpts);
	for (i = 0; i < op->env.nrcpts; i++) {
		assert_true(snprintf(buf, sizeof(buf),
				     "rcpt.%s.%u.%u@example.org", SECRET, n,
				     i) < (int)sizeof(buf));
		op->env.rcpts[i].addr = xstrdup(buf);
	}
	op->body = body_make(op->env.id, body_len);
	op->body_len = body_len;
	return op;
}

/* Completion tracking ------------------------------------------------- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned inflight, done, failed;
	struct queue_op **keep; /* NULL: free ops when done */
	unsigned nkeep;
};

static void
waiter_init(struct waiter *w, struct queue_op **keep)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->keep = keep;
}

static void
waiter_fini(struct waiter *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

static void
on_done(struct queue_op *op, int status, void *arg)
{
	struct waiter *w = arg;
	bool keep;

	/* W may be gone once unlocked: decide everything before. */
	pthread_mutex_lock(&w->mu);
	assert_int_equal(status, op->status);
	if (status != 0)
		w->failed++;
	w->done++;
	w->inflight--;
	if ((keep = w->keep != NULL))
		w->keep[w->nkeep++] = op;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (!keep)
		queue_op_free(op);
}

static void
submit(struct queue *q, struct waiter *w, struct queue_op *op, unsigned window)
{
	pthread_mutex_lock(&w->mu);
	while (w->inflight >= window)
		pthread_cond_wait(&w->cv, &w->mu);
	w->inflight++;
	pthread_mutex_unlock(&w->mu);
	queue_submit(q, op, on_done, w);
}

static void
wait_all(struct waiter *w, unsigned n)
{
	pthread_mutex_lock(&w->mu);
	while (w->done < n)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

/* Submit ops one at a time and wait for each: for small tests. */
static struct queue_op *
run_op(struct queue *q, struct queue_op *op)
{
	struct queue_op *keep[1];
	struct waiter w;

	waiter_init(&w, keep);
	submit(q, &w, op, 1);
	wait_all(&w, 1);
	waiter_fini(&w);
	return keep[0];
}

/* 1000 inserts from 4 threads ----------------------------------------- */

struct expect {
	uint64_t id;
	size_t body_len;
	uint32_t nrcpts;
	int64_t due;
	unsigned n;
	bool seen;
};

static struct expect expects[NOPS];

struct producer {
	struct queue *q;
	unsigned t;
	struct waiter w;
};

static void *
producer_main(void *arg)
{
	struct producer *p = arg;
	struct queue_op *op;
	struct expect *e;
	unsigned i, n;

	for (i = 0; i < PER_THREAD; i++) {
		n = p->t * PER_THREAD + i;
		op = insert_op(p->q, n, body_len_for(n), now_ms() + n);
		e = &expects[n];
		e->id = op->env.id;
		e->body_len = op->body_len;
		e->nrcpts = op->env.nrcpts;
		e->due = op->env.next_attempt_ms;
		e->n = n;
		submit(p->q, &p->w, op, WINDOW);
	}
	wait_all(&p->w, PER_THREAD);
	return NULL;
}

static int
expect_cmp(const void *a, const void *b)
{
	const struct expect *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static struct expect *
expect_find(uint64_t id)
{
	struct expect key = { .id = id };

	return bsearch(&key, expects, NOPS, sizeof(expects[0]), expect_cmp);
}

struct walk_state {
	unsigned count;
	uint64_t last_id;
};

static int
walk_check(const struct queue_envelope *env, void *arg)
{
	struct walk_state *ws = arg;
	struct expect *e = expect_find(env->id);
	char buf[96];

	if (e == NULL)
		fail_msg("walk: unknown id %016" PRIx64, env->id);
	if (e->seen)
		fail_msg("walk: id %016" PRIx64 " twice", env->id);
	e->seen = true;
	if (env->id <= ws->last_id)
		fail_msg("walk: %016" PRIx64 " after %016" PRIx64, env->id,
			 ws->last_id);
	ws->last_id = env->id;
	assert_int_equal(env->size, e->body_len);
	assert_int_equal(env->nchunks, (e->body_len + QUEUE_CHUNK_BYTES - 1) /
					   QUEUE_CHUNK_BYTES);
	assert_int_equal(env->nrcpts, e->nrcpts);
	assert_int_equal(env->next_attempt_ms, e->due);
	assert_int_equal(env->flags, QUEUE_F_8BITMIME);
	assert_true(snprintf(buf, sizeof(buf), "rcpt.%s.%u.0@example.org",
			     SECRET, e->n) < (int)sizeof(buf));
	assert_string_equal(env->rcpts[0].addr, buf);
	assert_string_equal(env->helo, "helo-" SECRET ".example");
	assert_string_equal(env->user, "user-" SECRET);
	ws->count++;
	return 0;
}

struct body_check {
	const uint8_t *want;
	size_t len, off;
	unsigned chunks;
};

static int
body_cb(const uint8_t *data, size_t len, void *arg)
{
	struct body_check *bc = arg;

	if (len > bc->len - bc->off)
		fail_msg("body: %zu bytes past %zu of %zu", len, bc->off,
			 bc->len);
	if (memcmp(data, bc->want + bc->off, len) != 0)
		fail_msg("body differs in chunk %u", bc->chunks);
	bc->off += len;
	bc->chunks++;
	return 0;
}

static void
body_verify(struct queue *q, uint64_t id, size_t len)
{
	struct body_check bc = { 0 };
	char err[256];
	int rc;

	bc.want = body_make(id, len);
	bc.len = len;
	if ((rc = queue_body_read(q, id, body_cb, &bc, err, sizeof(err))) != 0)
		fail_msg("body of %016" PRIx64 ": rc %d %s", id, rc, err);
	assert_int_equal(bc.off, len);
	assert_int_equal(bc.chunks,
			 (len + QUEUE_CHUNK_BYTES - 1) / QUEUE_CHUNK_BYTES);
	free((void *)bc.want);
}

/* Does FILE contain NEEDLE anywhere? */
static bool
file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	size_t n = strlen(needle), len, i;
	uint8_t *buf;
	struct stat st;
	bool found = false;

	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &st), 0);
	len = (size_t)st.st_size;
	buf = malloc(len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, len, f), len);
	fclose(f);
	for (i = 0; i + n <= len && !found; i++)
		found = buf[i] == (uint8_t)needle[0] &&
			memcmp(buf + i, needle, n) == 0;
	free(buf);
	return found;
}

static void
test_group_commit(void **state)
{
	struct producer prod[NTHREADS];
	struct queue_stats st;
	struct walk_state ws = { 0 };
	struct stat sb;
	struct queue *q;
	pthread_t th[NTHREADS];
	uint64_t t0, t1, max_id = 0;
	char path[600], err[256];
	unsigned i;

	(void)state;
	q = open_queue(1ull << 30, 0);
	t0 = mono_us();
	for (i = 0; i < NTHREADS; i++) {
		prod[i].q = q;
		prod[i].t = i;
		waiter_init(&prod[i].w, NULL);
		assert_int_equal(
		    pthread_create(&th[i], NULL, producer_main, &prod[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(prod[i].w.failed, 0);
		assert_int_equal(prod[i].w.done, PER_THREAD);
		waiter_fini(&prod[i].w);
	}
	t1 = mono_us();
	queue_stats_get(q, &st);
	print_message("%u ops in %.3f s: %.0f ops/s; %" PRIu64
		      " commits, %.1f ops/commit (max %" PRIu64
		      "), %.2f ms/commit in mdb_txn_commit\n",
		      NOPS, (double)(t1 - t0) / 1e6,
		      NOPS * 1e6 / (double)(t1 - t0), st.commits,
		      (double)st.ops / (double)st.commits, st.max_batch,
		      (double)st.commit_us_total / 1000.0 / (double)st.commits);
	assert_int_equal(st.ops, NOPS);
	assert_int_equal(st.failed_ops, 0);
	if (st.commits >= st.ops)
		fail_msg("no group commit: %" PRIu64 " commits for %" PRIu64
			 " ops",
			 st.commits, st.ops);
	queue_close(q);

	/* Files and modes. */
	assert_int_equal(stat(qpath, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_true(snprintf(path, sizeof(path), "%s/data.mdb", qpath) <
		    (int)sizeof(path));
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(stat(kpath, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* Nothing in clear: not the body, addresses, helo or user. */
	assert_false(file_contains(path, BODY_MARKER));
	assert_false(file_contains(path, SECRET));
	assert_false(file_contains(path, "example.org"));
	assert_false(file_contains(path, "example.com"));

	/* Reopen: every message, in id order, with its body. */
	qsort(expects, NOPS, sizeof(expects[0]), expect_cmp);
	q = open_queue(1ull << 30, 0);
	if (queue_walk(q, walk_check, &ws, err, sizeof(err)) != 0)
		fail_msg("walk: %s", err);
	assert_int_equal(ws.count, NOPS);
	for (i = 0; i < NOPS; i++) {
		body_verify(q, expects[i].id, expects[i].body_len);
		if (expects[i].id > max_id)
			max_id = expects[i].id;
	}
	/* New ids are above every id in the queue. */
	assert_true(queue_id_next(q) > max_id);
	queue_close(q);
}

/* Updates and deletes ------------------------------------------------- */

/* The "sched" entries, read straight from LMDB after the queue closed. */
static unsigned
sched_read(uint64_t *ids, int64_t *dues, unsigned max)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	unsigned n = 0, i;
	int rc;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, qpath, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "sched", 0, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		assert_int_equal(k.mv_size, 16);
		assert_int_equal(v.mv_size, 0);
		assert_true(n < max);
		dues[n] = 0;
		ids[n] = 0;
		for (i = 0; i < 8; i++) {
			dues[n] = (int64_t)((uint64_t)dues[n] << 8 |
					    ((uint8_t *)k.mv_data)[i]);
			ids[n] = ids[n] << 8 | ((uint8_t *)k.mv_data)[8 + i];
		}
		n++;
	}
	assert_int_equal(rc, MDB_NOTFOUND);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return n;
}

/* Count "body" records of ID, straight from LMDB. */
static unsigned
body_records(uint64_t id)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	unsigned n = 0, i;
	uint64_t kid;
	int rc;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, qpath, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "body", 0, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		for (kid = 0, i = 0; i < 8; i++)
			kid = kid << 8 | ((uint8_t *)k.mv_data)[i];
		n += kid == id;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return n;
}

static int
count_cb(const struct queue_envelope *env, void *arg)
{
	(void)env;
	(*(unsigned *)arg)++;
	return 0;
}

static int
nop_chunk(const uint8_t *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	(void)arg;
	return 0;
}

static void
test_update_delete(void **state)
{
	struct queue_envelope env;
	struct queue_op *op;
	struct queue *q;
	uint64_t a, b, c, ids[8];
	int64_t due_a, due_b, due_c, new_due_a, dues[8];
	unsigned n;
	char err[256];

	(void)state;
	q = open_queue(64 << 20, 0);
	due_a = now_ms() + 1000;
	due_b = due_a + 1;
	due_c = due_a + 2;
	op = run_op(q, insert_op(q, 1, 1000, due_a));
	assert_int_equal(op->status, 0);
	a = op->env.id;
	queue_op_free(op);
	op = run_op(q, insert_op(q, 25, BIG_BODY, due_b));
	assert_int_equal(op->status, 0);
	b = op->env.id;
	queue_op_free(op);
	op = run_op(q, insert_op(q, 3, 10, due_c));
	assert_int_equal(op->status, 0);
	c = op->env.id;
	queue_op_free(op);

	/* Update A: new due time, a recipient deferred once. */
	op = queue_op_new(QOP_UPDATE);
	assert_non_null(op);
	assert_int_equal(queue_envelope_get(q, a, &op->env, err, sizeof(err)),
			 0);
	new_due_a = due_c + 60000;
	op->old_due_ms = op->env.next_attempt_ms;
	op->env.next_attempt_ms = new_due_a;
	op->env.rcpts[0].attempts = 1;
	op->env.rcpts[0].last_code = 451;
	op->env.rcpts[0].last_reply = xstrdup("4.7.1 greylisted, " SECRET);
	op = run_op(q, op);
	if (op->status != 0)
		fail_msg("update: %s", op->err);
	queue_op_free(op);

	/* Delete B (two chunks). */
	op = queue_op_new(QOP_DELETE);
	assert_non_null(op);
	op->env.id = b;
	op->env.next_attempt_ms = due_b;
	op = run_op(q, op);
	if (op->status != 0)
		fail_msg("delete: %s", op->err);
	queue_op_free(op);

	/* Updating or deleting what is gone fails that op alone. */
	op = queue_op_new(QOP_DELETE);
	assert_non_null(op);
	op->env.id = b;
	op = run_op(q, op);
	assert_int_equal(op->status, -1);
	assert_non_null(strstr(op->err, "not in the queue"));
	queue_op_free(op);
	/* Inserting an id twice fails too. */
	op = insert_op(q, 4, 10, due_c);
	op->env.id = c;
	op = run_op(q, op);
	assert_int_equal(op->status, -1);
	assert_non_null(strstr(op->err, "already queued"));
	queue_op_free(op);

	assert_int_equal(queue_envelope_get(q, a, &env, err, sizeof(err)), 0);
	assert_int_equal(env.next_attempt_ms, new_due_a);
	assert_int_equal(env.rcpts[0].attempts, 1);
	assert_int_equal(env.rcpts[0].last_code, 451);
	assert_string_equal(env.rcpts[0].last_reply,
			    "4.7.1 greylisted, " SECRET);
	queue_envelope_clear(&env);
	body_verify(q, a, 1000); /* the update left the body alone */
	assert_int_equal(queue_envelope_get(q, b, &env, err, sizeof(err)), 1);
	assert_int_equal(
	    queue_body_read(q, b, nop_chunk, NULL, err, sizeof(err)), 1);
	n = 0;
	assert_int_equal(queue_walk(q, count_cb, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	queue_close(q);

	/* The schedule: C, then A at its new time; B gone, body and all. */
	n = sched_read(ids, dues, 8);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], c);
	assert_int_equal(dues[0], due_c);
	assert_int_equal(ids[1], a);
	assert_int_equal(dues[1], new_due_a);
	assert_int_equal(body_records(b), 0);
	assert_int_equal(body_records(a), 1);
}

/* The schedule index walked in steps ---------------------------------- */

struct seen_list {
	uint64_t ids[32];
	int64_t dues[32];
	unsigned n;
};

static int
seen_cb(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct seen_list *l = arg;

	(void)flags;
	assert_true(l->n < 32);
	l->ids[l->n] = id;
	l->dues[l->n++] = due_ms;
	return 0;
}

/* One step of at most MAX entries: what it saw appended to L. */
static void
walk_step(struct queue *q, struct queue_sched_pos *pos, size_t max,
	  struct seen_list *l, unsigned want)
{
	unsigned before = l->n;
	char err[256];

	if (queue_sched_walk_batch(q, pos, max, seen_cb, l, err, sizeof(err)) !=
	    0)
		fail_msg("queue_sched_walk_batch: %s", err);
	assert_int_equal(l->n - before, want);
}

static void
resched(struct queue *q, uint64_t id, int64_t new_due)
{
	struct queue_op *op = queue_op_new(QOP_UPDATE);
	char err[256];

	assert_non_null(op);
	assert_int_equal(queue_envelope_get(q, id, &op->env, err, sizeof(err)),
			 0);
	op->old_due_ms = op->env.next_attempt_ms;
	op->env.next_attempt_ms = new_due;
	op = run_op(q, op);
	if (op->status != 0)
		fail_msg("update: %s", op->err);
	queue_op_free(op);
}

static void
drop(struct queue *q, uint64_t id, int64_t due)
{
	struct queue_op *op = queue_op_new(QOP_DELETE);

	assert_non_null(op);
	op->env.id = id;
	op->env.next_attempt_ms = due;
	op = run_op(q, op);
	assert_int_equal(op->status, 0);
	queue_op_free(op);
}

/*
 * The start-up load walks the index in steps with the queue live between
 * them: every entry once, in due order, across steps; the entry a step
 * stopped at may be gone when the next begins; an entry moved behind the
 * walk is not seen again, one moved ahead of it is seen at its new place,
 * one added behind it is not seen.  The whole walk equals the steps'.
 */
static void
test_sched_walk_batch(void **state)
{
	struct queue_sched_pos pos = { 0, 0, false, false };
	struct seen_list l = { { 0 }, { 0 }, 0 }, whole = { { 0 }, { 0 }, 0 };
	struct queue_op *op;
	struct queue *q;
	uint64_t id[10];
	int64_t base = now_ms() + 100000;
	char err[256];
	unsigned i;

	(void)state;
	q = open_queue(64 << 20, 0);
	for (i = 0; i < 10; i++) {
		op = run_op(q, insert_op(q, 3, 10, base + 10 * i));
		assert_int_equal(op->status, 0);
		id[i] = op->env.id;
		queue_op_free(op);
	}
	assert_int_equal(queue_sched_walk(q, seen_cb, &whole, err, sizeof(err)),
			 0);
	assert_int_equal(whole.n, 10);
	walk_step(q, &pos, 3, &l, 3); /* 0 1 2 */
	assert_false(pos.done);
	assert_int_equal(pos.id, id[2]);
	resched(q, id[0], base - 5);   /* moved, still behind: not again */
	resched(q, id[1], base + 500); /* moved ahead: seen at its place */
	drop(q, id[2], base + 20);     /* the one the step stopped at */
	drop(q, id[3], base + 30);     /* the next one */
	op = run_op(q, insert_op(q, 4, 10, base + 1)); /* behind: unseen */
	assert_int_equal(op->status, 0);
	queue_op_free(op);
	walk_step(q, &pos, 3, &l, 3); /* 4 5 6 */
	walk_step(q, &pos, 3, &l, 3); /* 7 8 9 */
	walk_step(q, &pos, 3, &l, 1); /* 1 at base + 500, then the end */
	assert_true(pos.done);
	walk_step(q, &pos, 3, &l, 0); /* done stays done */
	assert_int_equal(l.n, 10);
	for (i = 0; i < 3; i++) {
		assert_int_equal(l.ids[i], id[i]);
		assert_int_equal(l.dues[i], base + 10 * i);
	}
	for (i = 3; i < 9; i++) {
		assert_int_equal(l.ids[i], id[i + 1]);
		assert_int_equal(l.dues[i], base + 10 * (i + 1));
	}
	assert_int_equal(l.ids[9], id[1]);
	assert_int_equal(l.dues[9], base + 500);

	/* Steps of 1 over the same index see what one walk sees. */
	memset(&pos, 0, sizeof(pos));
	memset(&l, 0, sizeof(l));
	memset(&whole, 0, sizeof(whole));
	assert_int_equal(queue_sched_walk(q, seen_cb, &whole, err, sizeof(err)),
			 0);
	while (!pos.done)
		walk_step(q, &pos, 1, &l, l.n < whole.n ? 1 : 0);
	assert_int_equal(l.n, whole.n);
	assert_memory_equal(l.ids, whole.ids, whole.n * sizeof(l.ids[0]));
	assert_memory_equal(l.dues, whole.dues, whole.n * sizeof(l.dues[0]));
	queue_close(q);
}

/* A failed batch ---------------------------------------------------------- */

/*
 * Two inserts (bodies of LEN0 and 100 bytes) in one batch of Q (opened with
 * a linger) must both fail with WHY in their error (and map_full as
 * MAP_FULL says); nothing of them is committed.  Then the queue goes on:
 * N inserts of LEN bytes commit, and they are all it holds.
 */
static void
batch_fails_then_goes_on(struct queue *q, size_t len0, const char *why,
			 bool map_full, unsigned n, size_t len)
{
	struct queue_op *keep[16];
	struct queue_stats st;
	struct waiter w;
	unsigned i, count = 0;
	char err[256];

	waiter_init(&w, keep);
	submit(q, &w, insert_op(q, 10, len0, now_ms()), 2);
	submit(q, &w, insert_op(q, 11, 100, now_ms()), 2);
	wait_all(&w, 2);
	for (i = 0; i < 2; i++) {
		if (keep[i]->status != -1 || keep[i]->map_full != map_full ||
		    strstr(keep[i]->err, why) == NULL)
			fail_msg("op %u: status %d map_full %d err %s (want "
				 "%s)",
				 i, keep[i]->status, keep[i]->map_full,
				 keep[i]->err, why);
		queue_op_free(keep[i]);
	}
	waiter_fini(&w);
	assert_int_equal(queue_walk(q, count_cb, &count, err, sizeof(err)), 0);
	assert_int_equal(count, 0);
	waiter_init(&w, NULL);
	for (i = 0; i < n; i++)
		submit(q, &w, insert_op(q, 20 + i, len, now_ms()), 4);
	wait_all(&w, n);
	assert_int_equal(w.failed, 0);
	waiter_fini(&w);
	queue_stats_get(q, &st);
	assert_int_equal(st.failed_ops, 2);
	assert_int_equal(st.ops, n);
	assert_int_equal(queue_walk(q, count_cb, &count, err, sizeof(err)), 0);
	assert_int_equal(count, n);
}

/* A 2 MiB map and a 4 MiB body: MDB_MAP_FULL fails its batch; small
 * messages still commit. */
static void
test_map_full(void **state)
{
	struct queue *q;

	(void)state;
	q = open_queue(2 << 20, 200000);
	batch_fails_then_goes_on(q, 4 << 20, "MDB_MAP_FULL", true, 10, 1024);
	queue_close(q);
}

/* A body sealed into LMDB's reserved space: when its seal fails, the
 * batch fails whole and nothing of it is committed (no envelope without
 * its body, no reserved space without its record); the queue goes on,
 * bodies and all. */
static void
test_seal_fails_its_batch(void **state)
{
	struct queue *q;

	(void)state;
	q = open_queue(64 << 20, 200000);
	crypt_seal_fail_next(CRYPT_DB_BODY);
	batch_fails_then_goes_on(q, 100000, "seal(body)", false, 4, 70000);
	queue_close(q);
}

/* Close drains -------------------------------------------------------- */

static void
test_close_drains(void **state)
{
	struct waiter w;
	struct queue *q;
	unsigned i, n = 0;
	char err[256];

	(void)state;
	q = open_queue(64 << 20, 20000);
	waiter_init(&w, NULL);
	for (i = 0; i < 200; i++)
		submit(q, &w, insert_op(q, i, 100, now_ms()), 1000);
	queue_close(q); /* returns only after every done() */
	assert_int_equal(w.done, 200);
	assert_int_equal(w.failed, 0);
	waiter_fini(&w);
	q = open_queue(64 << 20, 0);
	assert_int_equal(queue_walk(q, count_cb, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 200);
	queue_close(q);
}

/* Waiting for expected ops --------------------------------------------- */

/*
 * Two messages announced (queue_expect +1 each, as intake does before a
 * worker signs them): the first submitted waits for the second, 100 ms
 * later, and both share one commit.  A lone op with nothing expected is
 * committed at once, long before the 2 s wait could end; and an expected
 * op given up (-1 without a submit) ends the wait at the deadline.
 */
static void
test_expect_wait(void **state)
{
	struct queue_stats st;
	struct waiter w;
	struct queue *q;
	uint64_t t0, dt;

	(void)state;
	open_prepare_wait_us = 2000000;
	q = open_queue(64 << 20, 0);
	open_prepare_wait_us = 0;
	waiter_init(&w, NULL);

	queue_expect(q, +1);
	queue_expect(q, +1);
	queue_expect(q, -1);
	submit(q, &w, insert_op(q, 1, 100, now_ms()), 10);
	nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
	pthread_mutex_lock(&w.mu);
	assert_int_equal(w.done, 0); /* still waiting for the second */
	pthread_mutex_unlock(&w.mu);
	queue_expect(q, -1);
	submit(q, &w, insert_op(q, 2, 100, now_ms()), 10);
	wait_all(&w, 2);
	queue_stats_get(q, &st);
	assert_int_equal(st.commits, 1);
	assert_int_equal(st.ops, 2);

	t0 = mono_us();
	submit(q, &w, insert_op(q, 3, 100, now_ms()), 10);
	wait_all(&w, 3);
	dt = mono_us() - t0;
	if (dt > 1000000)
		fail_msg("a lone op waited %" PRIu64 " us", dt);

	/* One expected, then given up: the wait ends at its deadline. */
	queue_expect(q, +1);
	t0 = mono_us();
	submit(q, &w, insert_op(q, 4, 100, now_ms()), 10);
	queue_expect(q, -1);
	wait_all(&w, 4);
	queue_stats_get(q, &st);
	assert_int_equal(st.commits, 3);
	assert_int_equal(w.failed, 0);
	queue_close(q);
	waiter_fini(&w);
}

/*
 * A lazy op (a settle) waits for company: with an urgent op 50 ms later
 * both share one commit; alone, it is committed when its wait (here 500 ms)
 * is over, not before.
 */
static void
test_lazy_ops(void **state)
{
	struct queue_stats st;
	struct queue_op *op;
	struct waiter w;
	struct queue *q;
	uint64_t t0, dt;

	(void)state;
	open_lazy_wait_us = 500000;
	q = open_queue(64 << 20, 0);
	open_lazy_wait_us = 0;
	waiter_init(&w, NULL);

	op = insert_op(q, 1, 100, now_ms());
	op->lazy = true;
	submit(q, &w, op, 10);
	nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
	pthread_mutex_lock(&w.mu);
	assert_int_equal(w.done, 0); /* waits for company */
	pthread_mutex_unlock(&w.mu);
	submit(q, &w, insert_op(q, 2, 100, now_ms()), 10);
	wait_all(&w, 2);
	queue_stats_get(q, &st);
	assert_int_equal(st.commits, 1);
	assert_int_equal(st.ops, 2);

	op = insert_op(q, 3, 100, now_ms());
	op->lazy = true;
	t0 = mono_us();
	submit(q, &w, op, 10);
	wait_all(&w, 3);
	dt = mono_us() - t0;
	if (dt < 400000 || dt > 5000000)
		fail_msg("a lone lazy op was committed after %" PRIu64 " us",
			 dt);
	queue_close(q);
	waiter_fini(&w);
}

/* Opening: read-only, versions, keys ---------------------------------- */

static void
meta_version_set(uint32_t v)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t buf[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
			   (uint8_t)(v >> 8), (uint8_t)v };
	MDB_val k = { 7, "version" }, val = { 4, buf };

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, qpath, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &val, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_open_checks(void **state)
{
	struct queue_config cfg = { 0 };
	struct queue *q = NULL;
	char err[512];
	FILE *f;

	(void)state;
	cfg.path = qpath;
	cfg.key_file = kpath;
	cfg.map_size = 16 << 20;
	q = open_queue(16 << 20, 0);
	queue_close(q);

	/* A newer format is refused with a clear message. */
	meta_version_set(QUEUE_FORMAT_VERSION + 1);
	assert_int_equal(queue_open(&q, &cfg, err, sizeof(err)), -1);
	if (strstr(err, "newer") == NULL)
		fail_msg("err: %s", err);
	meta_version_set(QUEUE_FORMAT_VERSION);

	/* Another key: refused, naming the key ids. */
	assert_int_equal(unlink(kpath), 0);
	f = fopen(kpath, "w");
	assert_non_null(f);
	fputs("ffffffffffffffffffffffffffffffff"
	      "ffffffffffffffffffffffffffffffff\n",
	      f);
	fclose(f);
	assert_int_equal(chmod(kpath, 0600), 0);
	assert_int_equal(queue_open(&q, &cfg, err, sizeof(err)), -1);
	if (strstr(err, "key id") == NULL)
		fail_msg("err: %s", err);
	/* A key file readable by others: refused. */
	assert_int_equal(chmod(kpath, 0644), 0);
	assert_int_equal(queue_open(&q, &cfg, err, sizeof(err)), -1);
	if (strstr(err, "mode 0644") == NULL)
		fail_msg("err: %s", err);
}

static unsigned bad_n;
static uint64_t bad_id;

static int
bad_cb(uint64_t id, const char *why, void *arg)
{
	(void)arg;
	assert_non_null(strstr(why, "authentication failed"));
	bad_n++;
	bad_id = id;
	return 0;
}

/* A record that fails to open makes the walk fail with its id;
 * queue_walk_checked hands it over and goes on. */
static void
test_walk_bad_record(void **state)
{
	uint64_t op_id;
	struct queue_op *op;
	struct queue *q;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	uint8_t *copy;
	char err[256], qid[QUEUE_ID_HEX_BYTES];
	unsigned n = 0;
	struct queue_envelope e;
	uint64_t id, skipped;

	(void)state;
	q = open_queue(16 << 20, 0);
	op = run_op(q, insert_op(q, 5, 10, now_ms()));
	assert_int_equal(op->status, 0);
	queue_id_format(op->env.id, qid);
	op_id = op->env.id;
	queue_op_free(op);
	/* A sound one after it (ids grow). */
	op = run_op(q, insert_op(q, 6, 10, now_ms()));
	assert_int_equal(op->status, 0);
	queue_op_free(op);
	queue_close(q);

	/* Flip a byte of the sealed envelope on disk. */
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, qpath, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "env", 0, &dbi), 0);
	{
		MDB_cursor *cur;

		assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
		assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
		copy = malloc(v.mv_size);
		assert_non_null(copy);
		memcpy(copy, v.mv_data, v.mv_size);
		copy[v.mv_size - 1] ^= 1;
		v.mv_data = copy;
		assert_int_equal(mdb_cursor_put(cur, &k, &v, MDB_CURRENT), 0);
		mdb_cursor_close(cur);
		free(copy);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	q = open_queue(16 << 20, 0);
	assert_int_equal(queue_walk(q, count_cb, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, qid));
	assert_non_null(strstr(err, "authentication failed (wrong key?)"));
	/* Read alone, it says "damaged" (not an error worth retrying). */
	assert_int_equal(queue_id_parse(qid, &id), 0);
	assert_int_equal(queue_envelope_get(q, id, &e, err, sizeof(err)),
			 QUEUE_CORRUPT);
	assert_non_null(strstr(err, qid));
	assert_int_equal(
	    queue_body_read(q, id, nop_chunk, NULL, err, sizeof(err)),
	    QUEUE_CORRUPT);
	/* queue_walk_skip passes over it and goes on to the sound one. */
	n = 0;
	assert_int_equal(
	    queue_walk_skip(q, count_cb, &n, &skipped, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(skipped, 1);
	/* queue_walk_checked: the bad one is handed over, the walk goes on. */
	n = 0;
	bad_n = 0;
	assert_int_equal(queue_walk_checked(q, 0, UINT64_MAX, count_cb, bad_cb,
					    &n, err, sizeof(err)),
			 0);
	assert_int_equal(bad_n, 1);
	assert_int_equal(n, 1); /* the sound one */
	assert_int_equal(bad_id, op_id);
	queue_close(q);
}

/* Ids ----------------------------------------------------------------- */

#define ID_THREADS 4
#define ID_EACH    100000

struct id_run {
	struct queue *q;
	uint64_t *ids;
};

static void *
id_main(void *arg)
{
	struct id_run *r = arg;
	unsigned i;

	for (i = 0; i < ID_EACH; i++)
		r->ids[i] = queue_id_next(r->q);
	return NULL;
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
test_ids(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t want;
	} cases[] = {
		{ "0123456789abcdef", 0, 0x0123456789abcdefULL },
		{ "FFFFFFFFFFFFFFFF", 0, UINT64_MAX },
		{ "0123456789abcde", -1, 0 },
		{ "0123456789abcdef0", -1, 0 },
		{ "0123456789abcdeg", -1, 0 },
		{ "", -1, 0 },
		{ " 123456789abcdef", -1, 0 },
	};
	struct id_run runs[ID_THREADS];
	pthread_t th[ID_THREADS];
	uint64_t *all, id, ms;
	char hex[QUEUE_ID_HEX_BYTES];
	struct queue *q;
	unsigned i, j;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		id = 0;
		if (queue_id_parse(cases[i].in, &id) != cases[i].rc ||
		    id != cases[i].want)
			fail_msg("parse \"%s\": %016" PRIx64, cases[i].in, id);
	}
	queue_id_format(0xabcULL, hex);
	assert_string_equal(hex, "0000000000000abc");

	q = open_queue(16 << 20, 0);
	all = calloc(ID_THREADS * ID_EACH, sizeof(*all));
	assert_non_null(all);
	for (i = 0; i < ID_THREADS; i++) {
		runs[i].q = q;
		runs[i].ids = all + i * ID_EACH;
		assert_int_equal(
		    pthread_create(&th[i], NULL, id_main, &runs[i]), 0);
	}
	for (i = 0; i < ID_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Increasing within each thread, unique overall, time-ordered. */
	for (i = 0; i < ID_THREADS; i++)
		for (j = 1; j < ID_EACH; j++)
			if (runs[i].ids[j] <= runs[i].ids[j - 1])
				fail_msg("thread %u: id %u not increasing", i,
					 j);
	qsort(all, ID_THREADS * ID_EACH, sizeof(*all), u64_cmp);
	for (j = 1; j < ID_THREADS * ID_EACH; j++)
		if (all[j] == all[j - 1])
			fail_msg("id %016" PRIx64 " issued twice", all[j]);
	ms = all[ID_THREADS * ID_EACH - 1] >> 20;
	assert_true(ms >= (uint64_t)now_ms() - 60000 &&
		    ms <= (uint64_t)now_ms() + 60000);
	free(all);

	/* A message from the "future" (a clock that stepped back since):
	 * after a reopen, ids stay above it. */
	{
		struct queue_op *op = insert_op(q, 7, 10, now_ms());

		op->env.id = ((uint64_t)now_ms() + 86400000) << 20;
		id = op->env.id;
		op = run_op(q, op);
		assert_int_equal(op->status, 0);
		queue_op_free(op);
	}
	queue_close(q);
	q = open_queue(16 << 20, 0);
	assert_true(queue_id_next(q) > id);
	assert_true(queue_id_next(q) > id + 1);
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_group_commit, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_update_delete, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_sched_walk_batch,
						setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_map_full, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_seal_fails_its_batch,
						setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_expect_wait, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_lazy_ops, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_close_drains, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_open_checks, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_walk_bad_record, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_ids, setup_tmp,
						teardown_tmp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
