/*
 * queue_fixture.c — the scratch queue of the queue's unit tests
 * (queue_fixture.h).
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <sys/stat.h>
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "t/unit/queue_fixture.h"

char qfix_dir[256], qfix_queue[300], qfix_key[300];

static int
qfix_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int
qfix_setup(void **state)
{
	const char *base = getenv("TMPDIR");

	(void)state;
	snprintf(qfix_dir, sizeof(qfix_dir), "%s/qtest.XXXXXX",
		 base != NULL ? base : "/tmp");
	assert_non_null(mkdtemp(qfix_dir));
	snprintf(qfix_queue, sizeof(qfix_queue), "%s/queue", qfix_dir);
	snprintf(qfix_key, sizeof(qfix_key), "%s/queue.key", qfix_dir);
	return 0;
}

int
qfix_teardown(void **state)
{
	(void)state;
	return nftw(qfix_dir, qfix_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

struct queue *
qfix_open(uint64_t map_size)
{
	struct queue_config cfg = { 0 };
	struct queue *q;
	char err[256];

	cfg.path = qfix_queue;
	cfg.key_file = qfix_key;
	cfg.map_size = map_size;
	if (queue_open(&q, &cfg, err, sizeof(err)) != 0)
		fail_msg("queue_open: %s", err);
	return q;
}

bool
qfix_file_has(const char *needle)
{
	char path[600], *buf;
	size_t n, len = strlen(needle), i;
	bool found = false;
	FILE *f;

	assert_true(snprintf(path, sizeof(path), "%s/data.mdb", qfix_queue) <
		    (int)sizeof(path));
	assert_non_null(f = fopen(path, "rb"));
	assert_non_null(buf = malloc(16 << 20));
	n = fread(buf, 1, 16 << 20, f);
	fclose(f);
	for (i = 0; i + len <= n && !found; i++)
		found = memcmp(buf + i, needle, len) == 0;
	free(buf);
	return found;
}

char *
qfix_strdup(const char *s)
{
	char *p = strdup(s);

	assert_non_null(p);
	return p;
}

void
qfix_done(struct queue_op *op, int status, void *arg)
{
	(void)arg;
	assert_int_equal(status, 0);
	queue_op_free(op);
}

struct queue_op *
qfix_insert_op(uint64_t id)
{
	struct queue_op *op = queue_op_new(QOP_INSERT);

	assert_non_null(op);
	op->env.id = id;
	op->env.created_ms = op->env.next_attempt_ms = 1000;
	op->env.sender = qfix_strdup("s@example.test");
	op->env.client = qfix_strdup("127.0.0.1");
	op->env.helo = qfix_strdup("client.example.test");
	assert_non_null(op->env.rcpts = calloc(1, sizeof(*op->env.rcpts)));
	op->env.rcpts[0].addr = qfix_strdup("r@example.test");
	op->env.nrcpts = 1;
	return op;
}

uint8_t *
qfix_body(unsigned seed, size_t len)
{
	uint8_t *b = malloc(len + 1);
	size_t i;

	assert_non_null(b);
	for (i = 0; i < len; i++)
		b[i] = (uint8_t)((i * 31 + i / QUEUE_CHUNK_BYTES * 7 + seed) %
				 251);
	return b;
}
