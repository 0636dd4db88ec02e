/*
 * bounce_test.c — DSNs (mta/bounce.c): the RFC 3464 report's structure
 * (multipart/report, one message/delivery-status block per failed
 * recipient, the original headers), its line lengths, and the DSN list of a
 * round (bounce_collect) when memory runs out: realloc is wrapped
 * (-Wl,--wrap=realloc) so a test can make the next ones fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/bounce.h"

/* realloc fails while fail_reallocs > 0 (each failure counts one down). */
static int fail_reallocs;
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

void *
__wrap_realloc(void *p, size_t n)
{
	if (fail_reallocs > 0) {
		fail_reallocs--;
		return NULL;
	}
	return __real_realloc(p, n);
}

/* bounce_collect ------------------------------------------------------- */

static void
test_collect_appends_in_order(void **state)
{
	struct queue_rcpt r[3];
	uint32_t *list = NULL;
	unsigned n = 0;

	(void)state;
	memset(r, 0, sizeof(r));
	assert_int_equal(bounce_collect(&r[2], 2, QR_BOUNCED, &list, &n), 0);
	assert_int_equal(bounce_collect(&r[0], 0, QR_EXPIRED, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0], 2);
	assert_int_equal(list[1], 0);
	assert_int_equal(r[2].state, QR_BOUNCED);
	assert_int_equal(r[0].state, QR_EXPIRED);
	assert_int_equal(r[1].state, QR_PENDING);
	free(list);
}

/* Out of memory: the recipient is not failed (it would be, without a DSN)
 * but stays pending for the next round; the list is as it was. */
static void
test_collect_oom_keeps_recipient(void **state)
{
	struct queue_rcpt r[2];
	uint32_t *list = NULL;
	unsigned n = 0;

	(void)state;
	memset(r, 0, sizeof(r));
	assert_int_equal(bounce_collect(&r[0], 0, QR_BOUNCED, &list, &n), 0);
	fail_reallocs = 1;
	assert_int_equal(bounce_collect(&r[1], 1, QR_BOUNCED, &list, &n), -1);
	assert_int_equal(fail_reallocs, 0);
	assert_int_equal(r[1].state, QR_PENDING);
	assert_int_equal(n, 1);
	assert_int_equal(list[0], 0);
	/* Memory again: the retry adds it. */
	assert_int_equal(bounce_collect(&r[1], 1, QR_EXPIRED, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[1], 1);
	assert_int_equal(r[1].state, QR_EXPIRED);
	free(list);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collect_appends_in_order),
		cmocka_unit_test(test_collect_oom_keeps_recipient),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
