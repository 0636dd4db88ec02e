/*
 * queue_seen_test.c — the "seen" database (queue/seen.c): keys put
 * through the writer are found after a close and reopen with their day;
 * a recipient is the same whatever its case or angle brackets, and
 * another identity's is another; expire removes what was last seen
 * before a day, over more entries than one sweep takes; purge removes
 * one identity's entries only; no address is in data.mdb in clear.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define BIG 30000 /* more than one sweep's batch (seen.c) */

typedef uint8_t seen_key[QUEUE_SEEN_KEY_BYTES];

static uint32_t
day_of(struct queue *q, const char *identity, const char *rcpt)
{
	uint8_t id[QUEUE_SEEN_HALF_BYTES];
	seen_key k;
	uint32_t day = 7;
	char err[200];

	queue_seen_identity(q, identity, id);
	queue_seen_key(q, id, rcpt, k);
	if (queue_seen_get(q, (const seen_key *)&k, 1, &day, err,
			   sizeof(err)) != 0)
		fail_msg("queue_seen_get: %s", err);
	return day;
}

static void
put(struct queue *q, const char *identity, const char *rcpt, uint32_t day)
{
	uint8_t id[QUEUE_SEEN_HALF_BYTES];
	seen_key k;

	queue_seen_identity(q, identity, id);
	queue_seen_key(q, id, rcpt, k);
	assert_int_equal(queue_seen_put(q, (const seen_key *)&k, 1, day), 0);
}

/* data.mdb holds NEEDLE in clear? */
static bool
file_has(const char *needle)
{
	char path[600], *buf;
	size_t n;
	bool found;
	FILE *f;

	snprintf(path, sizeof(path), "%s/data.mdb", qfix_queue);
	assert_non_null(f = fopen(path, "rb"));
	assert_non_null(buf = malloc(16 << 20));
	n = fread(buf, 1, 16 << 20, f);
	fclose(f);
	found = memmem(buf, n, needle, strlen(needle)) != NULL;
	free(buf);
	return found;
}

static void
test_put_get_expire_purge(void **state)
{
	struct queue *q = qfix_open(16 << 20);
	uint8_t id[QUEUE_SEEN_HALF_BYTES];
	uint64_t removed, entries, bytes;
	char err[200];

	(void)state;
	put(q, "alice", "a1@dest.test", 100);
	put(q, "alice", "a2@dest.test", 100);
	put(q, "alice", "a3@dest.test", 200);
	put(q, "bob", "a1@dest.test", 150);
	queue_close(q);
	q = qfix_open(16 << 20);
	assert_int_equal(day_of(q, "alice", "a1@dest.test"), 100);
	assert_int_equal(day_of(q, "alice", "<A1@Dest.TEST>"), 100);
	assert_int_equal(day_of(q, "alice", "a3@dest.test"), 200);
	assert_int_equal(day_of(q, "alice", "never@dest.test"), 0);
	assert_int_equal(day_of(q, "bob", "a1@dest.test"), 150);
	assert_int_equal(day_of(q, "bob", "a2@dest.test"), 0);
	/* A later day replaces the earlier one. */
	put(q, "alice", "a2@dest.test", 120);
	assert_int_equal(queue_seen_expire(q, 110, &removed, err, sizeof(err)),
			 0);
	assert_int_equal(removed, 1);
	assert_int_equal(day_of(q, "alice", "a1@dest.test"), 0);
	assert_int_equal(day_of(q, "alice", "a2@dest.test"), 120);
	queue_seen_identity(q, "alice", id);
	assert_int_equal(queue_seen_purge(q, id, &removed, err, sizeof(err)),
			 0);
	assert_int_equal(removed, 2);
	assert_int_equal(day_of(q, "alice", "a3@dest.test"), 0);
	assert_int_equal(day_of(q, "bob", "a1@dest.test"), 150);
	assert_int_equal(queue_seen_stat(q, &entries, &bytes), 0);
	assert_int_equal(entries, 1);
	queue_close(q);
	assert_false(file_has("dest.test"));
	assert_false(file_has("alice"));
}

static void
test_expire_many(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	uint8_t id[QUEUE_SEEN_HALF_BYTES];
	seen_key *keys;
	uint64_t removed, entries, bytes;
	char rcpt[64], err[200];
	unsigned i;

	(void)state;
	assert_non_null(keys = calloc(BIG, sizeof(*keys)));
	queue_seen_identity(q, "carol", id);
	for (i = 0; i < BIG; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%u@dest.test", i);
		queue_seen_key(q, id, rcpt, keys[i]);
	}
	assert_int_equal(queue_seen_put(q, (const seen_key *)keys, BIG, 50), 0);
	put(q, "carol", "kept@dest.test", 60);
	/* An expiry of an empty database writes nothing: the puts first. */
	queue_close(q);
	q = qfix_open(64 << 20);
	assert_int_equal(queue_seen_expire(q, 60, &removed, err, sizeof(err)),
			 0);
	assert_int_equal(removed, BIG);
	assert_int_equal(queue_seen_stat(q, &entries, &bytes), 0);
	assert_int_equal(entries, 1);
	assert_int_equal(day_of(q, "carol", "kept@dest.test"), 60);
	free(keys);
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_expire_purge,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_expire_many, qfix_setup,
						qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
