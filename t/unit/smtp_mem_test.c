/*
 * smtp_mem_test.c — the body memory budget (mta/receive/smtp_mem.c): first
 * come, first served; memory given back goes to the oldest waiter; a budget
 * held only by waiters is unblocked by refusing the newest; cancels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mta/receive/smtp_mem.h"

#define NW 4

static struct smtp_mem_waiter w[NW];
static int order[16], norder; /* index of each waiter answered, in order */

static void
answer(struct smtp_mem_waiter *x)
{
	order[norder++] = (int)(x - w);
}

static void
waiter_ask(int i, uint64_t held, uint64_t want)
{
	w[i].answer = answer;
	w[i].held = held;
	w[i].want = want;
	smtp_mem_wait(&w[i]);
}

static enum smtp_mem_state
waiter_collect(int i)
{
	bool cancelled;

	return smtp_mem_collect(&w[i], &cancelled);
}

/* Each test starts from an empty budget of 100 and gives all back. */
static int
setup(void **state)
{
	(void)state;
	smtp_mem_init(100);
	norder = 0;
	return 0;
}

static void
test_take_within_budget(void **state)
{
	(void)state;
	assert_true(smtp_mem_take(60, false));
	assert_false(smtp_mem_take(41, false));
	assert_true(smtp_mem_take(40, false));
	assert_true(smtp_mem_take(2, true)); /* a CRLF may overshoot */
	assert_int_equal(smtp_mem_used(), 102);
	smtp_mem_give(102);
	assert_int_equal(smtp_mem_used(), 0);
}

static void
test_fifo_grants(void **state)
{
	(void)state;
	/* 100 held by sessions still reading; two wait, in this order. */
	assert_true(smtp_mem_take(90, false));
	assert_true(smtp_mem_take(10, false));
	waiter_ask(0, 10, 10);
	waiter_ask(1, 0, 10);
	assert_int_equal(norder, 0);
	/* Nobody jumps the queue, even for a byte that would fit. */
	smtp_mem_give(5);
	assert_false(smtp_mem_take(1, false));
	assert_int_equal(norder, 0);
	smtp_mem_give(5);
	assert_int_equal(norder, 1);
	assert_int_equal(order[0], 0);
	assert_int_equal(waiter_collect(0), SMTP_MEM_GRANTED);
	smtp_mem_give(80);
	assert_int_equal(norder, 2);
	assert_int_equal(order[1], 1);
	assert_int_equal(waiter_collect(1), SMTP_MEM_GRANTED);
	/* 10 (w0's body) + 10 + 10 granted. */
	assert_int_equal(smtp_mem_used(), 30);
	smtp_mem_give(30);
}

static void
test_deadlock_refuses_newest(void **state)
{
	(void)state;
	/* Two sessions hold 50 and 40 and both need 20 more: the first waits
	 * (the 10 others hold may come back), the second would make a
	 * deadlock, so the newest is refused and the first can go on. */
	assert_true(smtp_mem_take(50, false));
	assert_true(smtp_mem_take(40, false));
	waiter_ask(0, 50, 20);
	assert_int_equal(norder, 0);
	waiter_ask(1, 40, 20);
	assert_int_equal(norder, 1);
	assert_int_equal(order[0], 1);
	assert_int_equal(waiter_collect(1), SMTP_MEM_REFUSED);
	smtp_mem_give(40); /* the refused session frees its body */
	assert_int_equal(norder, 2);
	assert_int_equal(order[1], 0);
	assert_int_equal(waiter_collect(0), SMTP_MEM_GRANTED);
	assert_int_equal(smtp_mem_used(), 70);
	smtp_mem_give(70);
}

static void
test_cancel(void **state)
{
	bool cancelled;

	(void)state;
	assert_true(smtp_mem_take(100, false));
	waiter_ask(0, 0, 10);
	waiter_ask(1, 0, 10);
	/* Cancelled while queued: no answer will come; the next moves up. */
	assert_true(smtp_mem_cancel(&w[0]));
	smtp_mem_give(10);
	assert_int_equal(norder, 1);
	assert_int_equal(order[0], 1);
	/* Cancelled after the answer left: collect says so. */
	assert_false(smtp_mem_cancel(&w[1]));
	assert_int_equal(smtp_mem_collect(&w[1], &cancelled), SMTP_MEM_GRANTED);
	assert_true(cancelled);
	smtp_mem_give(10 + 90);
	assert_int_equal(smtp_mem_used(), 0);
	/* With nobody waiting, takes work again. */
	assert_true(smtp_mem_take(100, false));
	smtp_mem_give(100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_take_within_budget, setup),
		cmocka_unit_test_setup(test_fifo_grants, setup),
		cmocka_unit_test_setup(test_deadlock_refuses_newest, setup),
		cmocka_unit_test_setup(test_cancel, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
