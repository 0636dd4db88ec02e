/*
 * queue_suppress_test.c — the "suppress" database (queue/suppress.c):
 * entries put, replaced and deleted through the writer survive a close
 * and reopen; get finds an entry in its scope only; a walk gives one scope
 * or all, in key order; drop removes the entries of a scope or those
 * older than a time; the count follows; a waiting caller hears of the
 * commit; reason names round-trip; a restore point carries the list and
 * its verification walks it (a malformed record fails it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

static const uint8_t GLOBAL[QUEUE_SUPPRESS_HASH_BYTES];

/* A hash whose bytes are all B. */
static void
hash_fill(uint8_t h[QUEUE_SUPPRESS_HASH_BYTES], uint8_t b)
{
	memset(h, b, QUEUE_SUPPRESS_HASH_BYTES);
}

static void
put(struct queue *q, uint8_t scope, uint8_t rcpt, enum queue_suppress_reason r,
    int64_t t)
{
	struct queue_suppress_entry e;

	hash_fill(e.scope, scope);
	hash_fill(e.rcpt, rcpt);
	e.reason = r;
	e.time_ms = t;
	assert_int_equal(queue_suppress_put(q, &e, NULL, NULL), 0);
}

/* 1 found (with *E), 0 none. */
static int
get(struct queue *q, uint8_t scope, uint8_t rcpt,
    struct queue_suppress_entry *e)
{
	uint8_t s[QUEUE_SUPPRESS_HASH_BYTES], r[QUEUE_SUPPRESS_HASH_BYTES];
	char err[256];
	int rc;

	hash_fill(s, scope);
	hash_fill(r, rcpt);
	if ((rc = queue_suppress_get(q, s, r, e, err, sizeof(err))) < 0)
		fail_msg("queue_suppress_get: %s", err);
	return rc;
}

struct seen {
	unsigned n;
	uint8_t scope[8], rcpt[8];
};

static int
on_entry(const struct queue_suppress_entry *e, void *arg)
{
	struct seen *s = arg;

	assert_true(s->n < 8);
	s->scope[s->n] = e->scope[0];
	s->rcpt[s->n] = e->rcpt[0];
	s->n++;
	return 0;
}

static void
walk(struct queue *q, const uint8_t *scope, struct seen *s)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	if (queue_suppress_walk(q, scope, on_entry, s, err, sizeof(err)) != 0)
		fail_msg("queue_suppress_walk: %s", err);
}

static void
test_put_get_walk_reload(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	struct queue_suppress_entry e;
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES];
	struct seen s;

	(void)state;
	put(q, 0x00, 0x11, QSR_OPERATOR, 1000);
	put(q, 0x22, 0x11, QSR_BAD_MAILBOX, 2000);
	put(q, 0x22, 0x12, QSR_BAD_DOMAIN, 3000);
	put(q, 0x33, 0x13, QSR_COMPLAINT, 4000);
	/* Replaced: the later put wins. */
	put(q, 0x22, 0x12, QSR_COMPLAINT, 3500);
	put(q, 0x33, 0x14, QSR_OPERATOR, 5000);
	{
		uint8_t sc[QUEUE_SUPPRESS_HASH_BYTES],
		    r[QUEUE_SUPPRESS_HASH_BYTES];

		hash_fill(sc, 0x33);
		hash_fill(r, 0x14);
		assert_int_equal(queue_suppress_del(q, sc, r, NULL, NULL), 0);
		hash_fill(r, 0x77); /* nothing there: not an error */
		assert_int_equal(queue_suppress_del(q, sc, r, NULL, NULL), 0);
	}
	queue_close(q); /* commits every op submitted */

	q = qfix_open(16 << 20);
	assert_int_equal(get(q, 0x22, 0x12, &e), 1);
	assert_int_equal(e.reason, QSR_COMPLAINT);
	assert_int_equal(e.time_ms, 3500);
	assert_int_equal(e.scope[15], 0x22);
	assert_int_equal(e.rcpt[0], 0x12);
	assert_int_equal(get(q, 0x00, 0x11, &e), 1);
	assert_int_equal(e.reason, QSR_OPERATOR);
	/* Another scope's entry is not this scope's. */
	assert_int_equal(get(q, 0x33, 0x11, NULL), 0);
	assert_int_equal(get(q, 0x00, 0x12, NULL), 0);
	assert_int_equal(get(q, 0x33, 0x14, NULL), 0); /* deleted */
	assert_int_equal(queue_suppress_count(q), 4);

	walk(q, NULL, &s);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.scope[0], 0x00);
	assert_int_equal(s.scope[1], 0x22);
	assert_int_equal(s.rcpt[1], 0x11);
	assert_int_equal(s.rcpt[2], 0x12);
	assert_int_equal(s.scope[3], 0x33);
	hash_fill(scope, 0x22);
	walk(q, scope, &s);
	assert_int_equal(s.n, 2);
	walk(q, GLOBAL, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.rcpt[0], 0x11);
	queue_close(q);
}

static void
test_drop(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES];
	char err[256];
	struct seen s;

	(void)state;
	put(q, 0x00, 0x01, QSR_OPERATOR, 1000);
	put(q, 0x00, 0x02, QSR_OPERATOR, 9000);
	put(q, 0x44, 0x01, QSR_BAD_MAILBOX, 1000);
	put(q, 0x44, 0x02, QSR_BAD_MAILBOX, 9000);
	put(q, 0x55, 0x01, QSR_COMPLAINT, 1000);
	queue_close(q);
	q = qfix_open(16 << 20);
	/* Older than 5000, every scope: one per scope. */
	assert_int_equal(queue_suppress_drop(q, NULL, 5000, err, sizeof(err)),
			 3);
	queue_close(q);
	q = qfix_open(16 << 20);
	walk(q, NULL, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.rcpt[0], 0x02);
	assert_int_equal(s.rcpt[1], 0x02);
	/* A whole scope (a user purged). */
	hash_fill(scope, 0x44);
	assert_int_equal(
	    queue_suppress_drop(q, scope, INT64_MAX, err, sizeof(err)), 1);
	queue_close(q);
	q = qfix_open(16 << 20);
	walk(q, NULL, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.scope[0], 0x00);
	assert_int_equal(queue_suppress_count(q), 1);
	queue_close(q);
}

static int done_status = 99;

static void
on_done(int status, void *arg)
{
	*(int *)arg = status;
}

static void
test_done_and_names(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	struct queue_suppress_entry e = { .reason = QSR_COMPLAINT,
					  .time_ms = 7 };
	enum queue_suppress_reason r;

	(void)state;
	hash_fill(e.rcpt, 0x66);
	assert_int_equal(queue_suppress_put(q, &e, on_done, &done_status), 0);
	queue_close(q); /* the writer commits, then calls on_done */
	assert_int_equal(done_status, 0);

	assert_string_equal(queue_suppress_reason_name(QSR_BAD_MAILBOX),
			    "bounce-bad-mailbox");
	assert_string_equal(queue_suppress_reason_name(QSR_BAD_DOMAIN),
			    "bounce-bad-domain");
	assert_string_equal(queue_suppress_reason_name(0), "unknown");
	assert_string_equal(queue_suppress_reason_name(99), "unknown");
	assert_int_equal(queue_suppress_reason_parse("complaint", &r), 0);
	assert_int_equal(r, QSR_COMPLAINT);
	assert_int_equal(queue_suppress_reason_parse("operator", &r), 0);
	assert_int_equal(r, QSR_OPERATOR);
	assert_int_equal(queue_suppress_reason_parse("bounce", &r), -1);
}

/* A restore point holds the list and its verification reads it; a record
 * that is not one of ours fails the point's walk. */
static void
test_point(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	struct queue_point_info pi;
	uint8_t key[QUEUE_KEY_BYTES];
	char dir[400], err[256];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 5, "bogus" }, v = { 3, "xyz" };

	(void)state;
	put(q, 0x00, 0x09, QSR_OPERATOR, 1000);
	assert_true(snprintf(dir, sizeof(dir), "%s/points", qfix_dir) <
		    (int)sizeof(dir));
	if (queue_point_take(q, dir, &pi, err, sizeof(err)) != 0)
		fail_msg("queue_point_take: %s", err);
	assert_true(pi.verified);
	assert_int_equal(
	    queue_keyfile_load(qfix_key, false, key, err, sizeof(err)), 0);
	if (queue_point_verify(dir, pi.name, key, NULL, err, sizeof(err)) != 0)
		fail_msg("queue_point_verify: %s", err);
	queue_close(q);

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_open(env, qfix_queue, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "suppress", 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	q = qfix_open(16 << 20);
	/* Passed over by the readers... */
	assert_int_equal(queue_suppress_count(q), 2);
	assert_int_equal(get(q, 0x00, 0x09, NULL), 1);
	/* ... but a point holding it is not whole. */
	assert_int_equal(queue_point_take(q, dir, &pi, err, sizeof(err)), 0);
	assert_false(pi.verified);
	assert_non_null(strstr(err, "suppression record"));
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_walk_reload,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_drop, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_done_and_names, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_point, qfix_setup,
						qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
