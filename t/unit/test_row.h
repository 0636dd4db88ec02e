/*
 * test_row.h — table-driven cmocka tests: a failing row says which row and
 * what it got (as LMDB's mtest CHECK does).  Shared by dmarc_test.c,
 * spf_test.c and spf_eval_test.c; include after <cmocka.h>.
 */
#ifndef OUTPOST_T_UNIT_TEST_ROW_H
#define OUTPOST_T_UNIT_TEST_ROW_H

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Fails the test when COND is false, naming row NAME; the rest is printf
 * arguments saying what the row got. */
#define ROW_CHECK(cond, name, ...)                                             \
	do {                                                                   \
		if (!(cond)) {                                                 \
			print_error("%s:%d: row \"%s\": %s: ", __FILE__,       \
				    __LINE__, (name), #cond);                  \
			print_error(__VA_ARGS__);                              \
			print_error("\n");                                     \
			fail();                                                \
		}                                                              \
	} while (0)

#endif
