/*
 * queue_state_test.c — the "state" database (queue/state.c): records put,
 * replaced and deleted through the writer survive a close and reopen; a
 * load gives each kind its own records only, in force, with their data;
 * expired records are dropped at load and deleted (gone at the next);
 * nothing of a name or its data is in data.mdb in clear; a record moved
 * to another key does not open (dropped); the derived subkey is the same
 * after a reopen and differs per context.
 */
#include <sys/stat.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lmdb.h>

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define NAME_A   "ops@held.example"
#define REASON_A "reason-A-7f3a9c quota"

/* Whole seconds are enough here: every end time is an hour off. */
static int64_t
now_ms(void)
{
	return (int64_t)time(NULL) * 1000;
}

/* What a load saw. */
struct seen {
	unsigned n;
	int64_t until[8];
	char data[8][64];
	int stop_at; /* return 7 at this record (1-based); 0: never */
};

static int
on_record(int64_t until_ms, const uint8_t *data, size_t len, void *arg)
{
	struct seen *s = arg;

	assert_true(s->n < 8 && len < sizeof(s->data[0]));
	s->until[s->n] = until_ms;
	memcpy(s->data[s->n], data, len);
	s->data[s->n][len] = '\0';
	s->n++;
	return s->stop_at != 0 && (int)s->n == s->stop_at ? 7 : 0;
}

static bool
seen_has(const struct seen *s, const char *data)
{
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->data[i], data) == 0)
			return true;
	return false;
}

static void
load(struct queue *q, enum queue_state_kind kind, struct seen *s,
     uint64_t *dropped)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	if (queue_state_load(q, kind, now_ms(), on_record, s, dropped, err,
			     sizeof(err)) != 0)
		fail_msg("queue_state_load: %s", err);
}

static void
test_put_del_reload(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	int64_t t = now_ms(), hour = t + 3600 * 1000;
	struct seen s;
	uint64_t dropped = 99;

	(void)state;
	assert_int_equal(queue_state_put(q, QS_SUSPEND, NAME_A, strlen(NAME_A),
					 hour, "old", 3),
			 0);
	/* Replaced: the last put wins (the writer keeps the order). */
	assert_int_equal(queue_state_put(q, QS_SUSPEND, NAME_A, strlen(NAME_A),
					 hour, REASON_A, strlen(REASON_A)),
			 0);
	assert_int_equal(
	    queue_state_put(q, QS_SUSPEND, "b.test", 6, hour, "gone-b", 6), 0);
	assert_int_equal(queue_state_del(q, QS_SUSPEND, "b.test", 6), 0);
	assert_int_equal(queue_state_del(q, QS_SUSPEND, "never.test", 10), 0);
	/* Expired already: dropped at the load. */
	assert_int_equal(
	    queue_state_put(q, QS_SUSPEND, "c.test", 6, t - 1, "expired-c", 9),
	    0);
	/* Same name, another kind: a record of its own. */
	assert_int_equal(queue_state_put(q, QS_BACKOFF, NAME_A, strlen(NAME_A),
					 hour + 5, "backoff-a", 9),
			 0);
	assert_int_equal(
	    queue_state_put(q, QS_AUTH_BLOCK, "x", 1, hour, "block-x", 7), 0);
	/* Too large: refused at once. */
	assert_int_equal(queue_state_put(q, QS_AUTH_BLOCK, "y", 1, hour, "",
					 QUEUE_STATE_DATA_MAX + 1),
			 -1);
	queue_close(q); /* commits every op submitted */
	assert_false(qfix_file_has(NAME_A));
	assert_false(qfix_file_has("ops@held"));
	assert_false(qfix_file_has(REASON_A));
	assert_false(qfix_file_has("backoff-a"));

	q = qfix_open(16 << 20);
	load(q, QS_SUSPEND, &s, &dropped);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.data[0], REASON_A);
	assert_true(s.until[0] == hour);
	assert_int_equal(dropped, 1); /* c.test */
	load(q, QS_BACKOFF, &s, NULL);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.data[0], "backoff-a");
	assert_true(s.until[0] == hour + 5);
	load(q, QS_AUTH_BLOCK, &s, &dropped);
	assert_int_equal(s.n, 1);
	assert_true(seen_has(&s, "block-x"));
	assert_int_equal(dropped, 0);
	queue_close(q); /* the drop's delete committed */

	q = qfix_open(16 << 20);
	load(q, QS_SUSPEND, &s, &dropped);
	assert_int_equal(s.n, 1);
	assert_int_equal(dropped, 0); /* deleted at the last load */
	assert_int_equal(queue_state_del(q, QS_SUSPEND, NAME_A, strlen(NAME_A)),
			 0);
	queue_close(q);
	q = qfix_open(16 << 20);
	load(q, QS_SUSPEND, &s, &dropped);
	assert_int_equal(s.n, 0);
	load(q, QS_BACKOFF, &s, NULL);
	assert_int_equal(s.n, 1);
	queue_close(q);
}

static void
test_stop_and_subkey(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	uint8_t k1[QUEUE_KEY_BYTES], k2[QUEUE_KEY_BYTES], k3[QUEUE_KEY_BYTES];
	int64_t hour = now_ms() + 3600 * 1000;
	struct seen s;
	char err[256], name[16];
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(queue_state_put(q, QS_AUTH_BLOCK, name,
						 strlen(name), hour, name,
						 strlen(name)),
				 0);
	}
	queue_state_subkey(q, "context one", k1);
	queue_state_subkey(q, "context two", k2);
	assert_memory_not_equal(k1, k2, sizeof(k1));
	queue_close(q);
	q = qfix_open(16 << 20);
	queue_state_subkey(q, "context one", k3);
	assert_memory_equal(k1, k3, sizeof(k1));
	/* The callback's non-zero stops the load and is returned. */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	assert_int_equal(queue_state_load(q, QS_AUTH_BLOCK, now_ms(), on_record,
					  &s, NULL, err, sizeof(err)),
			 7);
	assert_int_equal(s.n, 2);
	load(q, QS_AUTH_BLOCK, &s, NULL);
	assert_int_equal(s.n, 5);
	queue_close(q);
}

/* Copy every "state" record to a key one bit off: the copies must not
 * open (the key is bound into the seal).  Returns how many were copied. */
static unsigned
records_move(void)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val key, val, nkey;
	uint8_t k[64][QUEUE_STATE_KEY_BYTES], v[64][512];
	size_t vlen[64];
	unsigned n = 0, i;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_open(env, qfix_queue, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "state", 0, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	while (n < 64 &&
	       mdb_cursor_get(cur, &key, &val, n ? MDB_NEXT : MDB_FIRST) == 0) {
		assert_int_equal(key.mv_size, QUEUE_STATE_KEY_BYTES);
		assert_true(val.mv_size <= sizeof(v[0]));
		memcpy(k[n], key.mv_data, key.mv_size);
		memcpy(v[n], val.mv_data, val.mv_size);
		vlen[n++] = val.mv_size;
	}
	mdb_cursor_close(cur);
	for (i = 0; i < n; i++) {
		k[i][QUEUE_STATE_KEY_BYTES - 1] ^= 1;
		nkey.mv_data = k[i];
		nkey.mv_size = QUEUE_STATE_KEY_BYTES;
		val.mv_data = v[i];
		val.mv_size = vlen[i];
		assert_int_equal(mdb_put(txn, dbi, &nkey, &val, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	return n;
}

static void
test_moved_record(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	int64_t hour = now_ms() + 3600 * 1000;
	struct seen s;
	uint64_t dropped;

	(void)state;
	assert_int_equal(queue_state_put(q, QS_SUSPEND, NAME_A, strlen(NAME_A),
					 hour, REASON_A, strlen(REASON_A)),
			 0);
	queue_close(q);
	assert_int_equal(records_move(), 1);
	q = qfix_open(16 << 20);
	load(q, QS_SUSPEND, &s, &dropped);
	assert_int_equal(s.n, 1); /* the original */
	assert_string_equal(s.data[0], REASON_A);
	assert_int_equal(dropped, 1); /* the copy */
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_del_reload, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_subkey,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_moved_record, qfix_setup,
						qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
