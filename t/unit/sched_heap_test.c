/*
 * sched_heap_test.c — the scheduler's retry heap (mta/deliver/sched_heap.c):
 * pops come in due order, a message taken out of the middle leaves the rest in
 * order, equal due times all come out, every message's heap_idx is its
 * slot, and many entries with pushes, pops and removes mixed keep all that.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/deliver/sched_int.h"

static struct sched_msg *
msgs_new(size_t n)
{
	struct sched_msg *m = calloc(n, sizeof(*m));
	size_t i;

	assert_non_null(m);
	for (i = 0; i < n; i++) {
		m[i].id = i + 1;
		m[i].heap_idx = UINT32_MAX;
	}
	return m;
}

/* Every slot's message knows its slot; every parent is due no later than
 * its children. */
static void
check_heap(const struct sched_heap *h)
{
	size_t i;

	for (i = 0; i < h->n; i++) {
		assert_int_equal(h->v[i]->heap_idx, i);
		if (i > 0)
			assert_true(h->v[(i - 1) / 2]->due_ms <=
				    h->v[i]->due_ms);
	}
}

static void
test_pop_in_due_order(void **state)
{
	static const int64_t due[] = { 50, 10, 40, 30, 20, 60, 0, -5 };
	struct sched_heap h = { 0 };
	struct sched_msg *m = msgs_new(8), *x;
	int64_t last = INT64_MIN;
	size_t i;

	(void)state;
	assert_null(sched_heap_pop(&h));
	assert_null(sched_heap_top(&h));
	for (i = 0; i < 8; i++) {
		m[i].due_ms = due[i];
		assert_int_equal(sched_heap_push(&h, &m[i]), 0);
		check_heap(&h);
	}
	assert_int_equal(h.n, 8);
	assert_ptr_equal(sched_heap_top(&h), &m[7]);
	for (i = 0; i < 8; i++) {
		x = sched_heap_pop(&h);
		assert_non_null(x);
		assert_true(x->due_ms >= last);
		assert_int_equal(x->heap_idx, UINT32_MAX);
		last = x->due_ms;
		check_heap(&h);
	}
	assert_int_equal(last, 60);
	assert_null(sched_heap_pop(&h));
	sched_heap_free(&h);
	free(m);
}

/* A message in already is not added twice. */
static void
test_push_twice_is_once(void **state)
{
	struct sched_heap h = { 0 };
	struct sched_msg *m = msgs_new(2);

	(void)state;
	m[0].due_ms = 5;
	m[1].due_ms = 7;
	sched_heap_push(&h, &m[0]);
	sched_heap_push(&h, &m[1]);
	assert_int_equal(sched_heap_push(&h, &m[0]), 0);
	assert_int_equal(h.n, 2);
	assert_ptr_equal(sched_heap_pop(&h), &m[0]);
	assert_ptr_equal(sched_heap_pop(&h), &m[1]);
	assert_null(sched_heap_pop(&h));
	sched_heap_free(&h);
	free(m);
}

static void
test_remove_from_the_middle(void **state)
{
	struct sched_heap h = { 0 };
	struct sched_msg *m = msgs_new(15), *x;
	size_t i;

	(void)state;
	for (i = 0; i < 15; i++) {
		m[i].due_ms = (int64_t)((i * 7) % 15); /* 0..14, shuffled */
		sched_heap_push(&h, &m[i]);
	}
	/* Out: a leaf, an inner node, the top; and one twice. */
	sched_heap_remove(&h, h.v[h.n - 1]);
	check_heap(&h);
	x = h.v[2];
	sched_heap_remove(&h, x);
	assert_int_equal(x->heap_idx, UINT32_MAX);
	check_heap(&h);
	sched_heap_remove(&h, x); /* not in: nothing happens */
	assert_int_equal(h.n, 13);
	sched_heap_remove(&h, h.v[0]);
	check_heap(&h);
	assert_int_equal(h.n, 12);
	/* What is left comes out in order, and again once back in. */
	{
		int64_t last = INT64_MIN;

		while ((x = sched_heap_pop(&h)) != NULL) {
			assert_true(x->due_ms >= last);
			last = x->due_ms;
		}
	}
	for (i = 0; i < 15; i++)
		assert_int_equal(m[i].heap_idx, UINT32_MAX);
	sched_heap_free(&h);
	free(m);
}

/* Equal due times: every one comes out, before the later ones. */
static void
test_equal_due_times(void **state)
{
	struct sched_heap h = { 0 };
	struct sched_msg *m = msgs_new(20), *x;
	unsigned seen[20] = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < 20; i++) {
		m[i].due_ms = i < 16 ? 1000 : 2000;
		sched_heap_push(&h, &m[i]);
	}
	sched_heap_remove(&h, &m[5]);
	check_heap(&h);
	for (i = 0; i < 19; i++) {
		x = sched_heap_pop(&h);
		assert_non_null(x);
		assert_int_equal(x->due_ms, i < 15 ? 1000 : 2000);
		seen[x->id - 1]++;
	}
	assert_null(sched_heap_pop(&h));
	for (i = 0; i < 20; i++)
		assert_int_equal(seen[i], i == 5 ? 0 : 1);
	sched_heap_free(&h);
	free(m);
}

/* Many entries (past the first growth of the array), pushes, pops and
 * removes mixed, against a count of what must still be in. */
static void
test_many_entries(void **state)
{
	enum { N = 5000 };
	struct sched_heap h = { 0 };
	struct sched_msg *m = msgs_new(N), *x;
	uint32_t seed = 12345;
	size_t i, in = 0;
	int64_t last;

	(void)state;
	for (i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		m[i].due_ms = (int64_t)(seed >> 16) % 1000; /* many equal */
		assert_int_equal(sched_heap_push(&h, &m[i]), 0);
		in++;
		if (i % 3 == 2) { /* take out one pushed earlier */
			x = &m[(seed >> 8) % (i + 1)];
			if (x->heap_idx != UINT32_MAX)
				in--;
			sched_heap_remove(&h, x);
		}
		if (i % 7 == 6) {
			x = sched_heap_pop(&h);
			assert_non_null(x);
			in--;
			/* Put it back later than it was. */
			x->due_ms += 500;
			sched_heap_push(&h, x);
			in++;
		}
	}
	check_heap(&h);
	assert_int_equal(h.n, in);
	for (i = 0; i < N; i++)
		if (m[i].heap_idx != UINT32_MAX)
			assert_ptr_equal(h.v[m[i].heap_idx], &m[i]);
	last = INT64_MIN;
	while ((x = sched_heap_pop(&h)) != NULL) {
		assert_true(x->due_ms >= last);
		last = x->due_ms;
		in--;
	}
	assert_int_equal(in, 0);
	sched_heap_free(&h);
	assert_null(h.v);
	free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pop_in_due_order),
		cmocka_unit_test(test_push_twice_is_once),
		cmocka_unit_test(test_remove_from_the_middle),
		cmocka_unit_test(test_equal_due_times),
		cmocka_unit_test(test_many_entries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
