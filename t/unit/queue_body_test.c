/*
 * queue_body_test.c — the body reader (queue/body.c): bodies of 0, 1,
 * N x QUEUE_CHUNK_BYTES and N x QUEUE_CHUNK_BYTES +/- 1 bytes come back
 * byte for byte, chunk by chunk in order, each within the chunk size, the
 * end said once and again; a chunk deleted, altered or added behind the
 * queue's back, or an envelope whose size disagrees, fails with
 * QUEUE_CORRUPT at that chunk (what came before it is handed out), and
 * every call after a failure fails.
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

#define CHUNK QUEUE_CHUNK_BYTES

/* Queue a message of LEN bytes (committed when the queue closes). */
static uint64_t
insert(struct queue *q, unsigned seed, size_t len)
{
	struct queue_op *op = qfix_insert_op(queue_id_next(q));

	op->body = qfix_body(seed, len);
	op->body_len = len;
	queue_submit(q, op, qfix_done, NULL);
	return op->env.id;
}

/* Read ID whole through a reader opened with ENV (its own when NULL);
 * RC the first failure (0 if none), the chunks and bytes before it. */
struct got {
	int rc;
	unsigned chunks;
	size_t len;
	uint8_t *data;
	char err[256];
};

static void
read_all(struct queue *q, uint64_t id, const struct queue_envelope *env,
	 struct got *g)
{
	struct queue_envelope own;
	struct queue_body_reader *r;
	const uint8_t *p;
	size_t n;
	int rc;

	memset(g, 0, sizeof(*g));
	memset(&own, 0, sizeof(own));
	if (env == NULL) {
		assert_int_equal(
		    queue_envelope_get(q, id, &own, g->err, sizeof(g->err)), 0);
		env = &own;
	}
	assert_int_equal(queue_body_open(q, env, &r), 0);
	assert_non_null(g->data = malloc(env->size + 1));
	while ((rc = queue_body_next(r, &p, &n, g->err, sizeof(g->err))) == 0) {
		assert_true(n > 0 && n <= CHUNK);
		assert_true(g->len + n <= env->size);
		memcpy(g->data + g->len, p, n);
		g->len += n;
		g->chunks++;
	}
	if (rc == 1) {
		/* The end stays the end. */
		assert_int_equal(
		    queue_body_next(r, &p, &n, g->err, sizeof(g->err)), 1);
		assert_int_equal(n, 0);
		g->rc = 0;
	} else {
		char again[256];

		g->rc = rc;
		/* A failed reader stays failed. */
		assert_int_equal(
		    queue_body_next(r, &p, &n, again, sizeof(again)), rc);
	}
	queue_body_close(r);
	queue_envelope_clear(&own);
}

static void
test_sizes(void **state)
{
	static const size_t sizes[] = { 0,         1,
					CHUNK - 1, CHUNK,
					CHUNK + 1, 3 * CHUNK - 1,
					3 * CHUNK, 3 * CHUNK + 1 };
	uint64_t ids[sizeof(sizes) / sizeof(sizes[0])];
	struct queue *q = qfix_open(64 << 20);
	struct got g;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		ids[i] = insert(q, (unsigned)i, sizes[i]);
	queue_close(q);
	q = qfix_open(64 << 20);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *want = qfix_body((unsigned)i, sizes[i]);

		read_all(q, ids[i], NULL, &g);
		if (g.rc != 0)
			fail_msg("size %zu: rc %d: %s", sizes[i], g.rc, g.err);
		assert_int_equal(g.len, sizes[i]);
		assert_int_equal(g.chunks, (sizes[i] + CHUNK - 1) / CHUNK);
		assert_memory_equal(g.data, want, sizes[i]);
		free(want);
		free(g.data);
	}
	queue_close(q);
}

enum tamper { T_DELETE, T_ALTER, T_ADD };

/* Chunk CHUNK_I of ID deleted, altered (a byte of its seal) or copied to
 * the index after the last (T_ADD), straight in LMDB. */
static void
tamper(uint64_t id, uint32_t chunk_i, enum tamper how)
{
	uint8_t k[12], *copy;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val key, val;
	int i;

	for (i = 0; i < 8; i++)
		k[i] = (uint8_t)(id >> (56 - 8 * i));
	for (i = 0; i < 4; i++)
		k[8 + i] = (uint8_t)(chunk_i >> (24 - 8 * i));
	key.mv_data = k;
	key.mv_size = sizeof(k);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_open(env, qfix_queue, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "body", 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
	assert_non_null(copy = malloc(val.mv_size));
	memcpy(copy, val.mv_data, val.mv_size);
	val.mv_data = copy;
	switch (how) {
	case T_DELETE:
		assert_int_equal(mdb_del(txn, dbi, &key, NULL), 0);
		break;
	case T_ALTER:
		copy[val.mv_size / 2] ^= 0x40;
		assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
		break;
	case T_ADD:
		k[11]++;
		assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
		break;
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(copy);
}

static void
test_tampered(void **state)
{
	static const struct {
		const char *name;
		enum tamper how;
		uint32_t chunk; /* the chunk tampered with */
		unsigned good;  /* chunks handed out before the failure */
		const char *says;
	} cases[] = {
		{ "deleted", T_DELETE, 1, 1, "chunk 1 missing" },
		{ "altered", T_ALTER, 1, 1, "chunk 1" },
		{ "deleted last", T_DELETE, 2, 2, "chunk 2 missing" },
		{ "added", T_ADD, 2, 3, "past the 3" },
	};
	uint64_t ids[sizeof(cases) / sizeof(cases[0])];
	struct queue *q = qfix_open(64 << 20);
	struct got g;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ids[i] = insert(q, (unsigned)i, 2 * CHUNK + 100);
	queue_close(q);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tamper(ids[i], cases[i].chunk, cases[i].how);
	q = qfix_open(64 << 20);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *want = qfix_body((unsigned)i, 2 * CHUNK + 100);

		read_all(q, ids[i], NULL, &g);
		if (g.rc != QUEUE_CORRUPT || g.chunks != cases[i].good ||
		    strstr(g.err, cases[i].says) == NULL)
			fail_msg("%s: rc %d after %u chunks: %s", cases[i].name,
				 g.rc, g.chunks, g.err);
		/* What came before the failure was the body. */
		assert_memory_equal(g.data, want, g.len);
		free(want);
		free(g.data);
	}
	queue_close(q);
}

/* An envelope whose size or count disagrees with the chunks. */
static void
test_envelope_disagrees(void **state)
{
	struct queue *q = qfix_open(64 << 20);
	struct queue_envelope env;
	struct got g;
	char err[256];
	uint64_t id;

	(void)state;
	id = insert(q, 1, CHUNK + 10);
	queue_close(q);
	q = qfix_open(64 << 20);
	assert_int_equal(queue_envelope_get(q, id, &env, err, sizeof(err)), 0);
	env.size = CHUNK + 11; /* a byte more than the chunks hold */
	read_all(q, id, &env, &g);
	assert_int_equal(g.rc, QUEUE_CORRUPT);
	assert_int_equal(g.chunks, 2);
	free(g.data);
	env.size = CHUNK + 9; /* a byte less */
	read_all(q, id, &env, &g);
	assert_int_equal(g.rc, QUEUE_CORRUPT);
	assert_int_equal(g.chunks, 1);
	free(g.data);
	env.size = CHUNK + 10;
	env.nchunks = 1; /* a chunk past what it says */
	read_all(q, id, &env, &g);
	assert_int_equal(g.rc, QUEUE_CORRUPT);
	free(g.data);
	env.nchunks = 3; /* a chunk more than there is */
	read_all(q, id, &env, &g);
	assert_int_equal(g.rc, QUEUE_CORRUPT);
	free(g.data);
	queue_envelope_clear(&env);
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sizes, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_tampered, qfix_setup,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_envelope_disagrees,
						qfix_setup, qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
