/*
 * queue_batch_test.c — ops handed to the writer as a batch
 * (queue_batch_add, queue_batch_submit): each completes once, in the
 * order added, and is committed; an insert and a delete of one message in
 * one batch leave it gone (order kept on disk); the batch is empty after
 * and can be used again; the done hook runs after every completion of a
 * commit, not before.
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

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define NOPS 50

/* What the completions saw, in order (writer thread). */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t seen[2 * NOPS + 2];
static size_t nseen;

static void
done(struct queue_op *op, int status, void *arg)
{
	assert_int_equal(status, 0);
	queue_op_free(op);
	pthread_mutex_lock(&seen_mu);
	assert_true(nseen < sizeof(seen) / sizeof(seen[0]));
	seen[nseen++] = (uintptr_t)arg;
	pthread_mutex_unlock(&seen_mu);
}

/* Wait until N completions came. */
static void
wait_seen(size_t n)
{
	struct timespec ts = { 0, 1000000 };
	size_t got = 0;
	int i;

	for (i = 0; i < 10000; i++) {
		pthread_mutex_lock(&seen_mu);
		got = nseen;
		pthread_mutex_unlock(&seen_mu);
		if (got >= n)
			break;
		nanosleep(&ts, NULL);
	}
	assert_int_equal(got, n);
}

static int
exists(struct queue *q, uint64_t id)
{
	struct queue_envelope env;
	char err[256];
	int rc;

	memset(&env, 0, sizeof(env));
	rc = queue_envelope_get(q, id, &env, err, sizeof(err));
	queue_envelope_clear(&env);
	assert_true(rc == 0 || rc == 1);
	return rc == 0;
}

static void
test_batch(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	struct queue_batch b = { 0 };
	struct queue_op *op;
	uint64_t ids[NOPS], gone;
	size_t i;

	(void)state;
	nseen = 0;
	for (i = 0; i < NOPS; i++) {
		op = qfix_insert_op(queue_id_next(q));
		ids[i] = op->env.id;
		queue_batch_add(&b, op, done, (void *)(uintptr_t)(i + 1));
	}
	assert_int_equal(b.n, NOPS);
	queue_batch_submit(q, &b);
	assert_null(b.head);
	assert_int_equal(b.n, 0);
	wait_seen(NOPS);
	for (i = 0; i < NOPS; i++) {
		assert_int_equal(seen[i], i + 1);
		assert_true(exists(q, ids[i]));
	}

	/* The same batch again: an insert, then the delete of that message. */
	op = qfix_insert_op(queue_id_next(q));
	gone = op->env.id;
	queue_batch_add(&b, op, done, (void *)(uintptr_t)1000);
	op = queue_op_new(QOP_DELETE);
	assert_non_null(op);
	op->env.id = gone;
	op->env.next_attempt_ms = 1000; /* its schedule key */
	queue_batch_add(&b, op, done, (void *)(uintptr_t)1001);
	queue_batch_submit(q, &b);
	wait_seen(NOPS + 2);
	assert_int_equal(seen[NOPS], 1000);
	assert_int_equal(seen[NOPS + 1], 1001);
	assert_false(exists(q, gone));
	/* An empty batch is nothing. */
	queue_batch_submit(q, &b);
	queue_close(q);
	assert_int_equal(nseen, NOPS + 2);
}

/* The done hook: how many completions it came after, each time. */
static size_t hook_saw[2 * NOPS];
static _Atomic size_t nhooks;

static void
hook(void)
{
	size_t k = atomic_load(&nhooks);

	pthread_mutex_lock(&seen_mu);
	assert_true(k < sizeof(hook_saw) / sizeof(hook_saw[0]));
	hook_saw[k] = nseen;
	pthread_mutex_unlock(&seen_mu);
	atomic_store(&nhooks, k + 1);
}

static void
test_done_hook(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	struct queue_batch b = { 0 };
	struct timespec ts = { 0, 1000000 };
	size_t i, k;

	(void)state;
	nseen = 0;
	atomic_store(&nhooks, 0);
	queue_done_hook(q, hook);
	for (i = 0; i < NOPS; i++)
		queue_batch_add(&b, qfix_insert_op(queue_id_next(q)), done,
				(void *)(uintptr_t)(i + 1));
	queue_batch_submit(q, &b);
	wait_seen(NOPS);
	for (i = 0; i < 10000; i++) {
		k = atomic_load(&nhooks);
		if (k > 0 && hook_saw[k - 1] == NOPS)
			break;
		nanosleep(&ts, NULL);
	}
	/* Once per commit (the writer may cut a batch), each after its
	 * ops' completions: the last after all of them. */
	k = atomic_load(&nhooks);
	assert_true(k >= 1 && k <= NOPS);
	assert_int_equal(hook_saw[k - 1], NOPS);
	for (i = 1; i < k; i++)
		assert_true(hook_saw[i] > hook_saw[i - 1]);
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_batch, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_done_hook, qfix_setup,
						qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
