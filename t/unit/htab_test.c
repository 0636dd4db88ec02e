/*
 * htab_test.c — the string table and the id map of mta/htab.[ch].  The
 * header is included twice on purpose: every declaration must sit inside
 * its include guard (struct idmap once stood after the #endif, so a second
 * inclusion redefined it and failed to compile).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mta/core/htab.h"
#include "mta/core/htab.h" /* twice: the include guard must cover all of it */

static void
test_htab(void **state)
{
	struct htab h;
	struct htab_entry *e;
	char key[32];
	size_t i, n = 0;
	int v[3000];

	(void)state;
	assert_int_equal(htab_init(&h), 0);
	for (i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "k%zu", i);
		assert_int_equal(htab_put(&h, key, &v[i]), 0);
	}
	assert_ptr_equal(htab_get(&h, "k0"), &v[0]);
	assert_ptr_equal(htab_get(&h, "k2999"), &v[2999]);
	assert_null(htab_get(&h, "k3000"));
	assert_ptr_equal(htab_del(&h, "k17"), &v[17]);
	assert_null(htab_get(&h, "k17"));
	assert_null(htab_del(&h, "k17"));
	for (e = htab_first(&h, &i); e != NULL; e = htab_next(&h, e, &i))
		n++;
	assert_int_equal(n, 2999);
	htab_free(&h);
}

static void
test_idmap(void **state)
{
	struct idmap m;
	uint64_t k;
	int v[5000];

	(void)state;
	assert_int_equal(idmap_init(&m), 0);
	/* Enough keys to grow the table several times. */
	for (k = 1; k <= 5000; k++)
		assert_int_equal(idmap_put(&m, k << 20, &v[k - 1]), 0);
	assert_int_equal(m.n, 5000);
	assert_ptr_equal(idmap_get(&m, 1 << 20), &v[0]);
	assert_ptr_equal(idmap_get(&m, (uint64_t)5000 << 20), &v[4999]);
	assert_null(idmap_get(&m, 7));
	/* Replace keeps the count; delete leaves a tombstone lookups skip. */
	assert_int_equal(idmap_put(&m, 2 << 20, &v[10]), 0);
	assert_int_equal(m.n, 5000);
	assert_ptr_equal(idmap_get(&m, 2 << 20), &v[10]);
	for (k = 1; k <= 4000; k++)
		assert_non_null(idmap_del(&m, k << 20));
	assert_int_equal(m.n, 1000);
	assert_null(idmap_get(&m, 1 << 20));
	assert_null(idmap_del(&m, 1 << 20));
	assert_ptr_equal(idmap_get(&m, (uint64_t)4001 << 20), &v[4000]);
	/* Reinserting reuses tombstones. */
	for (k = 1; k <= 4000; k++)
		assert_int_equal(idmap_put(&m, k << 20, &v[k - 1]), 0);
	assert_int_equal(m.n, 5000);
	assert_ptr_equal(idmap_get(&m, 3 << 20), &v[2]);
	idmap_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_htab),
		cmocka_unit_test(test_idmap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
