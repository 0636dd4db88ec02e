/*
 * queue_replay_test.c — log replay after a restore (queue/replay.c): the
 * recipients noted as settled are marked done (the hash matches whatever
 * the case of the address), the others stay pending with their message's
 * due time; a message left with nothing pending is removed; notes for
 * messages not in the queue, malformed hashes and pending states are
 * passed over; a second replay of the same notes changes nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define DUE_MS 1700000000000LL

static char tmpdir[256], qpath[300], kpath[300];
static uint8_t hash_key[QUEUE_KEY_BYTES];

static struct queue_config
config(void)
{
	struct queue_config cfg = { 0 };

	cfg.path = qpath;
	cfg.key_file = kpath;
	cfg.map_size = 16 << 20;
	return cfg;
}

/* A message to the NRCPTS addresses of RCPTS, all pending; its id. */
static uint64_t
insert(struct queue *q, const char *const *rcpts, uint32_t nrcpts)
{
	struct queue_op *op = queue_op_new(QOP_INSERT);
	uint32_t i;

	assert_non_null(op);
	op->env.id = queue_id_next(q);
	op->env.created_ms = DUE_MS - 1000;
	op->env.next_attempt_ms = DUE_MS + (int64_t)(op->env.id % 1000);
	assert_non_null(op->env.sender = strdup("s@example.com"));
	op->env.nrcpts = nrcpts;
	assert_non_null(op->env.rcpts = calloc(nrcpts, sizeof(*op->env.rcpts)));
	for (i = 0; i < nrcpts; i++)
		assert_non_null(op->env.rcpts[i].addr = strdup(rcpts[i]));
	op->body_len = 10;
	assert_non_null(op->body = malloc(op->body_len));
	memcpy(op->body, "0123456789", op->body_len);
	queue_submit(q, op, qfix_done, NULL);
	return op->env.id;
}

static void
note(struct queue_replay *r, uint64_t id, const char *addr,
     enum queue_rcpt_state st, int want)
{
	char hex[QUEUE_HASH_HEX_BYTES];

	queue_addr_hash(hash_key, addr, hex);
	assert_int_equal(queue_replay_note(r, id, hex, st), want);
}

static void
test_replay(void **state)
{
	static const char *const m1[] = { "x1@a.example", "x2@b.example" };
	static const char *const m2[] = { "y@a.example" };
	static const char *const m3[] = { "z@b.example" };
	struct queue_config cfg = config();
	struct queue_replay_result res;
	struct queue_replay *r;
	struct queue_envelope env;
	struct queue *q;
	uint64_t id1, id2, id3;
	int64_t due1;
	char err[256];

	(void)state;
	assert_int_equal(queue_open(&q, &cfg, err, sizeof(err)), 0);
	id1 = insert(q, m1, 2);
	id2 = insert(q, m2, 1);
	id3 = insert(q, m3, 1);
	queue_close(q);

	assert_int_equal(queue_replay_open(&r, &cfg, err, sizeof(err)), 0);
	assert_int_equal(queue_replay_messages(r), 3);
	note(r, id1, "X2@B.Example", QR_DELIVERED, 1); /* case folded */
	note(r, id2, "y@a.example", QR_BOUNCED, 1);
	note(r, id3, "other@b.example", QR_DELIVERED, 1);
	note(r, id3 + 1000, "z@b.example", QR_DELIVERED, 0); /* not here */
	note(r, id3, "z@b.example", QR_PENDING, 0);
	assert_int_equal(queue_replay_note(r, id3, "zz", QR_DELIVERED), 0);
	assert_int_equal(
	    queue_replay_apply(r, hash_key, &res, err, sizeof(err)), 0);
	assert_int_equal(res.messages, 3);
	assert_int_equal(res.notes, 3);
	assert_int_equal(res.marked, 2);
	assert_int_equal(res.removed, 1);
	queue_replay_close(r);

	assert_int_equal(queue_open(&q, &cfg, err, sizeof(err)), 0);
	assert_int_equal(queue_envelope_get(q, id1, &env, err, sizeof(err)), 0);
	assert_int_equal(env.rcpts[0].state, QR_PENDING);
	assert_int_equal(env.rcpts[1].state, QR_DELIVERED);
	due1 = env.next_attempt_ms;
	assert_int_equal(due1, DUE_MS + (int64_t)(id1 % 1000));
	queue_envelope_clear(&env);
	assert_int_equal(queue_envelope_get(q, id2, &env, err, sizeof(err)), 1);
	assert_int_equal(queue_envelope_get(q, id3, &env, err, sizeof(err)), 0);
	assert_int_equal(env.rcpts[0].state, QR_PENDING);
	queue_envelope_clear(&env);
	queue_close(q);

	/* Again: what is done stays done, nothing else moves. */
	assert_int_equal(queue_replay_open(&r, &cfg, err, sizeof(err)), 0);
	assert_int_equal(queue_replay_messages(r), 2);
	note(r, id1, "x2@b.example", QR_DELIVERED, 1);
	note(r, id2, "y@a.example", QR_BOUNCED, 0);
	assert_int_equal(
	    queue_replay_apply(r, hash_key, &res, err, sizeof(err)), 0);
	assert_int_equal(res.marked, 0);
	assert_int_equal(res.removed, 0);
	queue_replay_close(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay),
	};
	const char *base = getenv("TMPDIR");
	char path[400];
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "%s/qreplay.XXXXXX",
		 base != NULL ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	snprintf(qpath, sizeof(qpath), "%s/queue", tmpdir);
	snprintf(kpath, sizeof(kpath), "%s/queue.key", tmpdir);
	memset(hash_key, 7, sizeof(hash_key));
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(path, sizeof(path), "%s/data.mdb", qpath);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", qpath);
	unlink(path);
	rmdir(qpath);
	unlink(kpath);
	rmdir(tmpdir);
	return rc;
}
