/*
 * queue_txn_read_test.c — the readers' kept transactions (queue/txn_read.c):
 * a thread that reads again and again holds one reader slot, not one per
 * read; a renewed transaction sees what was committed since its last use;
 * a nested read gets a transaction of its own; a thread's slot goes back
 * when the thread ends; a queue closed and opened again in the same thread
 * is read with a transaction of the new environment.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lmdb.h>

#include "queue/queue.h"
#include "queue/queue_int.h"
#include "t/unit/queue_fixture.h"

/* mdb_reader_list's callback: a line per slot in use, after a header. */
static int
count_line(const char *msg, void *ctx)
{
	if (strncmp(msg, "    pid", 7) != 0 && strncmp(msg, "(no", 3) != 0)
		(*(int *)ctx)++;
	return 0;
}

/* Reader slots of Q's environment in use (by any thread). */
static int
readers(struct queue *q)
{
	int n = 0;

	assert_true(mdb_reader_list(q->env, count_line, &n) >= 0);
	return n;
}

static void
committed(struct queue_op *op, int status, void *arg)
{
	assert_int_equal(status, 0);
	queue_op_free(op);
	atomic_store((_Atomic int *)arg, 1);
}

/* Queue a message of LEN bytes and wait for its commit. */
static uint64_t
insert_now(struct queue *q, unsigned seed, size_t len)
{
	struct queue_op *op = qfix_insert_op(queue_id_next(q));
	struct timespec ts = { 0, 1000000 };
	_Atomic int done = 0;
	uint64_t id = op->env.id;
	int i;

	op->body = qfix_body(seed, len);
	op->body_len = len;
	queue_submit(q, op, committed, &done);
	for (i = 0; i < 10000 && !atomic_load(&done); i++)
		nanosleep(&ts, NULL);
	assert_true(atomic_load(&done));
	return id;
}

/* Read ID's body whole; its length. */
static size_t
read_body(struct queue *q, uint64_t id)
{
	struct queue_envelope env;
	struct queue_body_reader *r;
	const uint8_t *p;
	char err[256];
	size_t n, total = 0;
	int rc;

	memset(&env, 0, sizeof(env));
	rc = queue_envelope_get(q, id, &env, err, sizeof(err));
	if (rc != 0)
		fail_msg("envelope: rc %d: %s", rc, err);
	assert_int_equal(queue_body_open(q, &env, &r), 0);
	while ((rc = queue_body_next(r, &p, &n, err, sizeof(err))) == 0)
		total += n;
	if (rc != 1)
		fail_msg("body: rc %d: %s", rc, err);
	queue_body_close(r);
	queue_envelope_clear(&env);
	return total;
}

struct reader_arg {
	struct queue *q;
	uint64_t id;
	int during; /* slots in use while this thread held its own */
};

static void *
reader_main(void *arg)
{
	struct reader_arg *a = arg;

	assert_int_equal(read_body(a->q, a->id), 1000);
	a->during = readers(a->q);
	return NULL;
}

static void
test_one_slot_per_thread(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	struct reader_arg a = { .q = q };
	pthread_t th;
	uint64_t id;
	int i;

	(void)state;
	id = insert_now(q, 1, 1000);
	assert_int_equal(readers(q), 0);
	/* Each read is three transactions (envelope, chunk, end): one slot
	 * for all of them, and for the next forty. */
	for (i = 0; i < 40; i++)
		assert_int_equal(read_body(q, id), 1000);
	assert_int_equal(readers(q), 1);

	/* Another thread takes a slot of its own, and gives it back at
	 * its end. */
	a.id = id;
	assert_int_equal(pthread_create(&th, NULL, reader_main, &a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(a.during, 2);
	assert_int_equal(readers(q), 1);
	queue_close(q);
}

static void
test_renewed_sees_new_commits(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	uint64_t a, b;

	(void)state;
	a = insert_now(q, 1, 1000);
	assert_int_equal(read_body(q, a), 1000);
	/* Committed after this thread's kept transaction was last used. */
	b = insert_now(q, 2, 3000);
	assert_int_equal(read_body(q, b), 3000);
	assert_int_equal(readers(q), 1);
	queue_close(q);
}

static void
test_nested_read(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	MDB_txn *outer, *inner;
	char err[256];
	uint64_t id;

	(void)state;
	id = insert_now(q, 1, 1000);
	assert_int_equal(queue_txn_read(q, &outer, err, sizeof(err)), 0);
	/* While the kept one is handed out, a read gets its own. */
	assert_int_equal(queue_txn_read(q, &inner, err, sizeof(err)), 0);
	assert_ptr_not_equal(outer, inner);
	assert_int_equal(read_body(q, id), 1000);
	assert_int_equal(readers(q), 2);
	queue_txn_read_end(q, inner);
	queue_txn_read_end(q, outer);
	/* The kept one stays; the others went. */
	assert_int_equal(readers(q), 1);
	assert_int_equal(queue_txn_read(q, &inner, err, sizeof(err)), 0);
	assert_ptr_equal(inner, outer);
	queue_txn_read_end(q, inner);
	queue_close(q);
}

static void
test_queue_reopened(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	uint64_t id;

	(void)state;
	id = insert_now(q, 1, 1000);
	assert_int_equal(read_body(q, id), 1000);
	queue_close(q);
	/* The kept transaction went with the old environment; the new one
	 * is read with one of its own. */
	q = qfix_open(64 << 20);
	assert_int_equal(readers(q), 0);
	assert_int_equal(read_body(q, id), 1000);
	assert_int_equal(readers(q), 1);
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_slot_per_thread,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_renewed_sees_new_commits,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_nested_read, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_queue_reopened, qfix_setup,
						qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
