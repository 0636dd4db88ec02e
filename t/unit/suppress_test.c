/*
 * suppress_test.c — mta/observe/suppress.c on a scratch queue: a hard
 * bounce of the bad-mailbox or bad-domain kind suppresses the recipient
 * for its sender's identity (other categories, deferrals and deliveries do
 * not); a complaint does; scope user keeps identities apart, scope global
 * does not; action drop gives the drop verdict; the list off lets all
 * through; an entry past retention.history counts as gone and the sweep
 * (history_expire) deletes it; a purged user loses its list; the file
 * holds neither the address nor the identity in clear.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "conf/conf.h"
#include "mta/observe/history.h"
#include "mta/observe/suppress.h"
#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define RCPT  "Gone.Mailbox@Dest.Example"
#define RCPT2 "other@dest.example"

static const uint8_t hash_key[QUEUE_KEY_BYTES] = { 7, 7, 7 };
static struct conf conf;
static struct queue *q;

static void
on_done(int status, void *arg)
{
	atomic_store((_Atomic int *)arg, status == 0 ? 1 : -1);
}

/* Every op submitted so far is committed (the writer keeps the order). */
static void
barrier(void)
{
	static const struct queue_suppress_entry e = { .reason = QSR_OPERATOR,
						       .scope = { 0xff },
						       .rcpt = { 0xff } };
	struct timespec ms = { 0, 1000000 };
	_Atomic int done = 0;
	int i;

	assert_int_equal(queue_suppress_put(q, &e, on_done, &done), 0);
	for (i = 0; i < 10000 && atomic_load(&done) == 0; i++)
		nanosleep(&ms, NULL);
	assert_int_equal(atomic_load(&done), 1);
}

static int
setup(void **state)
{
	qfix_setup(state);
	memset(&conf, 0, sizeof(conf));
	conf.suppress.enabled = true;
	conf.suppress.scope = CONF_SUPPRESS_USER;
	conf.suppress.action = CONF_SUPPRESS_REFUSE;
	conf.retention.history_ms = 90ULL * 86400000;
	q = qfix_open(16 << 20);
	assert_int_equal(suppress_init(q, &conf, hash_key), 0);
	return 0;
}

static int
teardown(void **state)
{
	queue_close(q);
	history_clear();
	return qfix_teardown(state);
}

static void
test_bounce_rule(void **state)
{
	struct suppress_hit hit;

	(void)state;
	/* Not a hard bounce of the right kind: nothing. */
	assert_int_equal(
	    suppress_note_result("alice", RCPT, 1, false, CONF_BC_BAD_MAILBOX),
	    0);
	assert_int_equal(
	    suppress_note_result("alice", RCPT, 1, true, CONF_BC_QUOTA), 0);
	assert_int_equal(
	    suppress_note_result("alice", RCPT, 1, true, CONF_BC_NONE), 0);
	barrier();
	assert_int_equal(suppress_check("alice", RCPT, NULL), SUPPRESS_PASS);

	assert_int_equal(
	    suppress_note_result("alice", RCPT, 1, true, CONF_BC_BAD_MAILBOX),
	    0);
	assert_int_equal(
	    suppress_note_result("alice", RCPT2, 1, true, CONF_BC_BAD_DOMAIN),
	    0);
	barrier();
	assert_int_equal(suppress_check("alice", RCPT, &hit), SUPPRESS_REFUSE);
	assert_int_equal(hit.reason, QSR_BAD_MAILBOX);
	assert_false(hit.global);
	/* The same address however written (case, brackets). */
	assert_int_equal(
	    suppress_check("alice", "<gone.mailbox@dest.example>", NULL),
	    SUPPRESS_REFUSE);
	assert_int_equal(suppress_check("alice", RCPT2, &hit), SUPPRESS_REFUSE);
	assert_int_equal(hit.reason, QSR_BAD_DOMAIN);
	/* Scope user: another identity may still send there. */
	assert_int_equal(suppress_check("bob", RCPT, NULL), SUPPRESS_PASS);
	assert_int_equal(suppress_check("relay", RCPT, NULL), SUPPRESS_PASS);

	/* Drop instead of refuse; the list off. */
	conf.suppress.action = CONF_SUPPRESS_DROP;
	suppress_configure(&conf);
	assert_int_equal(suppress_check("alice", RCPT, NULL), SUPPRESS_DROP);
	conf.suppress.enabled = false;
	suppress_configure(&conf);
	assert_int_equal(suppress_check("alice", RCPT, NULL), SUPPRESS_PASS);

	/* Nothing of the address or the identity in the queue's file. */
	queue_close(q);
	assert_false(qfix_file_has("dest.example"));
	assert_false(qfix_file_has("Dest.Example"));
	assert_false(qfix_file_has("alice"));
	q = qfix_open(16 << 20);
}

static void
test_complaint_scope_global(void **state)
{
	struct suppress_hit hit;

	(void)state;
	assert_int_equal(suppress_complaint("relay", RCPT, 0), 0);
	barrier();
	assert_int_equal(suppress_check("relay", RCPT, &hit), SUPPRESS_REFUSE);
	assert_int_equal(hit.reason, QSR_COMPLAINT);
	assert_int_equal(suppress_check("alice", RCPT, NULL), SUPPRESS_PASS);

	/* Scope global: one list for every sender. */
	conf.suppress.scope = CONF_SUPPRESS_GLOBAL;
	suppress_configure(&conf);
	assert_true(suppress_scope_global());
	/* The relay's entry is a per-user one: not consulted any more. */
	assert_int_equal(suppress_check("relay", RCPT, NULL), SUPPRESS_PASS);
	assert_int_equal(suppress_complaint("relay", RCPT2, 0), 0);
	barrier();
	assert_int_equal(suppress_check("alice", RCPT2, &hit), SUPPRESS_REFUSE);
	assert_true(hit.global);
	assert_int_equal(suppress_check(NULL, RCPT2, NULL), SUPPRESS_REFUSE);
}

static void
test_retention_and_purge(void **state)
{
	struct queue_suppress_entry e = { .reason = QSR_OPERATOR };
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES];
	char err[200];
	int64_t day = 86400000, now = (int64_t)time(NULL) * 1000;

	(void)state;
	/* Added 100 days ago, kept 90 days: gone already for the check. */
	suppress_scope_hash("alice", e.scope);
	assert_int_equal(suppress_addr_hash(RCPT, e.rcpt), 0);
	e.time_ms = now - 100 * day;
	assert_int_equal(suppress_add(&e, NULL, NULL), 0);
	assert_int_equal(suppress_complaint("alice", RCPT2, 0), 0);
	assert_int_equal(suppress_complaint("bob", RCPT2, 0), 0);
	barrier();
	assert_int_equal(suppress_check("alice", RCPT, NULL), SUPPRESS_PASS);
	assert_int_equal(suppress_get(e.scope, e.rcpt, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(queue_suppress_count(q), 4); /* barrier's too */
	/* The sweep deletes it; the fresh ones stay. */
	assert_int_equal(history_expire(now - 90 * day), 2); /* + barrier's */
	barrier();
	assert_int_equal(queue_suppress_count(q), 3);
	/* A purged user loses its list, the others keep theirs. */
	assert_true(history_purge_user("alice") >= 1);
	barrier();
	assert_int_equal(suppress_check("alice", RCPT2, NULL), SUPPRESS_PASS);
	assert_int_equal(suppress_check("bob", RCPT2, NULL), SUPPRESS_REFUSE);
	/* A user's scope is its hash, never all zero (the global list). */
	suppress_scope_hash("bob", scope);
	assert_false(sodium_is_zero(scope, sizeof(scope)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bounce_rule, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_complaint_scope_global,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_and_purge, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
