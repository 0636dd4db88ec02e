/*
 * queue_spool_test.c — bodies written while they arrive (queue/spool.c):
 * chunks spooled one by one, then an insert that adopts them with chunk 0
 * and the last chunks (sizes of every kind, none full but the limit), read
 * back byte for byte by both readers after a reopen; an insert naming the
 * wrong count fails alone and changes nothing; a chunk out of order fails;
 * an insert with the body whole replaces what was spooled; QOP_SPOOL_DEL
 * and the sweep at open delete spooled chunks and their records (counted);
 * a restore point taken while chunks are spooled verifies; deletes of more
 * chunks than one commit frees end with nothing left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define CHUNK QUEUE_CHUNK_BYTES

/* The status of OP once committed (or failed). */
static void
status_done(struct queue_op *op, int status, void *arg)
{
	queue_op_free(op);
	__atomic_store_n((int *)arg, status, __ATOMIC_SEQ_CST);
}

static int
submit_wait(struct queue *q, struct queue_op *op)
{
	struct timespec ms = { 0, 1000000 };
	int st = 99;

	queue_submit(q, op, status_done, &st);
	while (__atomic_load_n(&st, __ATOMIC_SEQ_CST) == 99)
		nanosleep(&ms, NULL);
	return st;
}

static int
count_cb(const struct queue_envelope *env, void *arg)
{
	(void)env;
	(*(unsigned *)arg)++;
	return 0;
}

/* The envelopes in Q. */
static unsigned
queue_ids_count(struct queue *q)
{
	unsigned n = 0;
	char err[256];

	assert_int_equal(queue_walk(q, count_cb, &n, err, sizeof(err)), 0);
	return n;
}

static int
spool_put(struct queue *q, uint64_t id, uint32_t k, const uint8_t *p, size_t n)
{
	struct queue_op *op = queue_op_new(QOP_SPOOL_PUT);

	assert_non_null(op);
	op->env.id = id;
	op->env.created_ms = 1000;
	op->spool_chunk = k;
	assert_non_null(op->body = malloc(n));
	memcpy(op->body, p, n);
	op->body_len = n;
	return submit_wait(q, op);
}

/* An insert of ID: HEAD (chunk 0, or the whole body when SPOOLED is 0),
 * SPOOLED chunks of SPOOLED_BYTES already in the queue, then TAIL. */
static int
insert(struct queue *q, uint64_t id, const uint8_t *head, size_t hlen,
       uint32_t spooled, uint64_t spooled_bytes, const uint8_t *tail,
       size_t tlen)
{
	struct queue_op *op = qfix_insert_op(id);

	assert_non_null(op->body = malloc(hlen + 1));
	memcpy(op->body, head, hlen);
	op->body_len = hlen;
	op->spool = true;
	op->spooled = spooled;
	op->spooled_bytes = spooled_bytes;
	if (tlen > 0) {
		assert_non_null(op->tail = malloc(tlen));
		memcpy(op->tail, tail, tlen);
		op->tail_len = tlen;
	}
	return submit_wait(q, op);
}

struct acc {
	uint8_t *p;
	size_t len;
};

static int
acc_cb(const uint8_t *data, size_t len, void *arg)
{
	struct acc *a = arg;

	memcpy(a->p + a->len, data, len);
	a->len += len;
	return 0;
}

/* ID reads back as WANT (LEN bytes) in NCHUNKS chunks, both ways. */
static void
check_body(struct queue *q, uint64_t id, const uint8_t *want, size_t len,
	   uint32_t nchunks)
{
	struct queue_envelope env;
	struct queue_body_reader *r;
	struct acc a = { NULL, 0 };
	const uint8_t *p;
	char err[256];
	size_t n, got = 0;
	unsigned k = 0;
	int rc;

	memset(&env, 0, sizeof(env));
	assert_int_equal(queue_envelope_get(q, id, &env, err, sizeof(err)), 0);
	assert_int_equal(env.size, len);
	assert_int_equal(env.nchunks, nchunks);
	assert_non_null(a.p = malloc(len + 1));
	assert_int_equal(queue_body_open(q, &env, &r), 0);
	while ((rc = queue_body_next(r, &p, &n, err, sizeof(err))) == 0) {
		assert_true(n > 0 && n <= CHUNK && got + n <= len);
		assert_memory_equal(p, want + got, n);
		got += n;
		k++;
	}
	if (rc != 1)
		fail_msg("body reader: %d: %s", rc, err);
	assert_int_equal(got, len);
	assert_int_equal(k, nchunks);
	queue_body_close(r);
	if (queue_body_read(q, id, acc_cb, &a, err, sizeof(err)) != 0)
		fail_msg("queue_body_read: %s", err);
	assert_int_equal(a.len, len);
	assert_memory_equal(a.p, want, len);
	free(a.p);
	queue_envelope_clear(&env);
}

static void
test_spooled_insert(void **state)
{
	/* Spooled chunks of any size; chunk 0 small; a tail of two. */
	static const size_t spooled[] = { CHUNK, 1000, CHUNK - 1, 1 };
	const size_t hlen = 700, tlen = CHUNK + 5;
	struct queue *q = qfix_open(64 << 20);
	uint64_t id = queue_id_next(q), msgs, chunks, off;
	size_t total = hlen + tlen, i;
	uint8_t *whole;

	(void)state;
	for (i = 0; i < 4; i++)
		total += spooled[i];
	whole = qfix_body(1, total);
	off = hlen;
	for (i = 0; i < 4; i++) {
		assert_int_equal(
		    spool_put(q, id, (uint32_t)i + 1, whole + off, spooled[i]),
		    0);
		off += spooled[i];
	}
	assert_int_equal(
	    insert(q, id, whole, hlen, 4, off - hlen, whole + off, tlen), 0);
	queue_close(q);
	q = qfix_open(64 << 20);
	queue_spool_swept(q, &msgs, &chunks);
	assert_int_equal(msgs, 0); /* the insert took its record */
	check_body(q, id, whole, total, 1 + 4 + 2);
	queue_close(q);
	free(whole);
}

static void
test_wrong_count_and_order(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	uint64_t id = queue_id_next(q), msgs, chunks;
	uint8_t *b = qfix_body(2, 3 * CHUNK);

	(void)state;
	/* A chunk out of order fails alone. */
	assert_int_not_equal(spool_put(q, id, 2, b, 100), 0);
	assert_int_equal(spool_put(q, id, 1, b, CHUNK), 0);
	assert_int_equal(spool_put(q, id, 2, b + CHUNK, CHUNK), 0);
	/* An insert naming three fails and leaves the two. */
	assert_int_not_equal(insert(q, id, b, 10, 3, 3 * CHUNK, NULL, 0), 0);
	assert_int_equal(queue_ids_count(q), 0);
	/* A restore point taken now counts them as spooled, not strays. */
	{
		struct queue_point_info pi;
		char dir[400], err[256] = "";

		snprintf(dir, sizeof(dir), "%s/points", qfix_dir);
		if (queue_point_take(q, dir, &pi, err, sizeof(err)) != 0)
			fail_msg("queue_point_take: %s", err);
		if (!pi.verified)
			fail_msg("the point does not verify: %s", err);
	}
	queue_close(q);
	q = qfix_open(64 << 20);
	queue_spool_swept(q, &msgs, &chunks);
	assert_int_equal(msgs, 1);
	assert_int_equal(chunks, 2);
	queue_close(q);
	free(b);
}

static void
test_whole_insert_and_delete(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	uint64_t a = queue_id_next(q), b = queue_id_next(q), msgs, chunks;
	uint8_t *body = qfix_body(3, 2 * CHUNK + 9);
	struct queue_op *op;

	(void)state;
	/* A: spooled, then queued whole (read back to re-encode, say). */
	assert_int_equal(spool_put(q, a, 1, body, CHUNK), 0);
	assert_int_equal(spool_put(q, a, 2, body, CHUNK), 0);
	assert_int_equal(spool_put(q, a, 3, body, 9), 0);
	assert_int_equal(insert(q, a, body, 2 * CHUNK + 9, 0, 0, NULL, 0), 0);
	/* B: spooled, then given up. */
	assert_int_equal(spool_put(q, b, 1, body, CHUNK), 0);
	assert_non_null(op = queue_op_new(QOP_SPOOL_DEL));
	op->env.id = b;
	assert_int_equal(submit_wait(q, op), 0);
	queue_close(q);
	q = qfix_open(64 << 20);
	queue_spool_swept(q, &msgs, &chunks);
	assert_int_equal(msgs, 0);
	assert_int_equal(chunks, 0);
	check_body(q, a, body, 2 * CHUNK + 9, 3);
	assert_int_equal(queue_ids_count(q), 1);
	queue_close(q);
	free(body);
}

/* A restore point after each commit while HOOK_Q is set (writer thread):
 * how many, and how many did not verify (the last one's reason). */
static struct queue *hook_q;
static int hook_points, hook_bad;
static char hook_why[256];

static void
hook_point(unsigned ops, uint64_t commit_us)
{
	struct queue *q = __atomic_load_n(&hook_q, __ATOMIC_SEQ_CST);
	struct queue_point_info pi;
	char dir[400], err[256] = "";

	(void)ops;
	(void)commit_us;
	if (q == NULL)
		return;
	snprintf(dir, sizeof(dir), "%s/points", qfix_dir);
	hook_points++;
	if (queue_point_take(q, dir, &pi, err, sizeof(err)) != 0 ||
	    !pi.verified) {
		hook_bad++;
		snprintf(hook_why, sizeof(hook_why), "%s", err);
	}
}

/* Deletes of more chunks than one commit frees (QUEUE_DEL_CHUNKS_MAX): a
 * delivered message's, a give-up's and the sweep's each end with nothing
 * left, done() once and successful, and the queue still takes writes. */
static void
test_deletes_in_steps(void **state)
{
	struct queue *q = qfix_open(256 << 20);
	uint64_t a = queue_id_next(q), b = queue_id_next(q),
		 c = queue_id_next(q), msgs, chunks;
	size_t len = (size_t)150 * CHUNK + 5;
	uint8_t *body = qfix_body(5, len);
	struct queue_op *op;
	uint32_t k;

	(void)state;
	queue_commit_hook(q, hook_point);
	/* A: queued whole (151 chunks), then deleted. */
	op = qfix_insert_op(a);
	assert_non_null(op->body = malloc(len));
	memcpy(op->body, body, len);
	op->body_len = len;
	assert_int_equal(submit_wait(q, op), 0);
	assert_int_equal(queue_ids_count(q), 1);
	assert_non_null(op = queue_op_new(QOP_DELETE));
	op->env.id = a;
	op->env.next_attempt_ms = 1000;
	op->lazy = true;
	assert_int_equal(submit_wait(q, op), 0);
	assert_int_equal(queue_ids_count(q), 0);
	/* B: 200 chunks spooled, then given up. */
	for (k = 1; k <= 200; k++)
		assert_int_equal(spool_put(q, b, k, body, CHUNK), 0);
	/* Restore points taken between its commits (on the writer thread,
	 * by the commit hook) verify: a spool record names no fixed count
	 * of chunks while they go. */
	assert_non_null(op = queue_op_new(QOP_SPOOL_DEL));
	op->env.id = b;
	__atomic_store_n(&hook_q, q, __ATOMIC_SEQ_CST);
	assert_int_equal(submit_wait(q, op), 0);
	__atomic_store_n(&hook_q, NULL, __ATOMIC_SEQ_CST);
	if (hook_points < 2 || hook_bad > 0)
		fail_msg("%d points during the delete, %d do not verify: %s",
			 hook_points, hook_bad, hook_why);
	/* C: 150 chunks spooled when the process stops. */
	for (k = 1; k <= 150; k++)
		assert_int_equal(spool_put(q, c, k, body, CHUNK), 0);
	queue_close(q);
	q = qfix_open(256 << 20);
	queue_spool_swept(q, &msgs, &chunks);
	assert_int_equal(msgs, 1);
	assert_int_equal(chunks, 150);
	queue_close(q);
	/* Nothing of A, B or C is left for the next open. */
	q = qfix_open(256 << 20);
	queue_spool_swept(q, &msgs, &chunks);
	assert_int_equal(msgs, 0);
	assert_int_equal(chunks, 0);
	assert_int_equal(queue_ids_count(q), 0);
	assert_int_equal(insert(q, queue_id_next(q), body, 100, 0, 0, NULL, 0),
			 0);
	queue_close(q);
	free(body);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_spooled_insert, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_wrong_count_and_order,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_whole_insert_and_delete,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_deletes_in_steps,
						qfix_setup, qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
