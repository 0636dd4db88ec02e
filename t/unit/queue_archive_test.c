/*
 * queue_archive_test.c — the export archive (queue/archive.c): messages
 * written come back whole (envelope fields, recipients' state, bodies of
 * 0, 1 and several chunks) with the manifest and header; a wrong key is
 * told apart; an archive cut at any length, with any byte changed, or
 * with bytes after its end, is refused before its end is reached; the
 * passphrase's key depends on the salt and a key-file archive takes no
 * passphrase.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/archive.h"

#define BIG_BYTES (3 * ARCHIVE_CHUNK_BYTES + 17)

static uint8_t key[QUEUE_KEY_BYTES];
static uint8_t *big;

static struct queue_rcpt rcpts[2] = {
	{ "a@one.example", QR_PENDING, 3, 451, "451 4.2.1 busy", 0x03,
	  "rfc822;a@one.example" },
	{ "b@two.example", QR_DELIVERED, 1, 250, NULL, 0, NULL },
};

static struct queue_envelope envs[3] = {
	{ .id = 0x1a2b3c4d5e6f7081ull,
	  .created_ms = 1700000000123,
	  .next_attempt_ms = 1700000900000,
	  .flags = QUEUE_F_HELD | QUEUE_F_8BITMIME,
	  .size = 5,
	  .nchunks = 1,
	  .sender = "news@example.test",
	  .user = "campaign",
	  .client = "127.0.0.1",
	  .helo = "client.test",
	  .msgid = "<m1@example.test>",
	  .campaign = "spring",
	  .envid = "E1",
	  .rcpts = rcpts,
	  .nrcpts = 2 },
	{ .id = 2,
	  .created_ms = 1,
	  .size = 0,
	  .sender = "",
	  .rcpts = rcpts + 1,
	  .nrcpts = 1 },
	{ .id = 3,
	  .created_ms = 2,
	  .size = BIG_BYTES,
	  .nchunks = 1,
	  .sender = "x@example.test",
	  .rcpts = rcpts,
	  .nrcpts = 1 },
};

static const uint8_t *
body_of(size_t i)
{
	return i == 0 ? (const uint8_t *)"hello" : i == 1 ? NULL : big;
}

/* A new archive of envs[] in a temporary file: its fd (at offset 0). */
static int
archive_make(const struct archive_params *p)
{
	char path[] = "/tmp/qarchive.XXXXXX";
	struct archive_manifest m = { .messages = 3, .time_ms = 42 };
	struct archive_writer *w;
	char err[200];
	size_t i;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	snprintf(m.source, sizeof(m.source), "node-a.example");
	assert_int_equal(
	    archive_writer_open(&w, fd, key, p, &m, err, sizeof(err)), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(
		    archive_writer_message(w, &envs[i], err, sizeof(err)), 0);
		if (envs[i].size > 0)
			assert_int_equal(archive_writer_body(w, body_of(i),
							     envs[i].size, err,
							     sizeof(err)),
					 0);
	}
	assert_int_equal(archive_writer_end(w, err, sizeof(err)), 0);
	archive_writer_free(w);
	return fd;
}

/* Read FD whole: 0 at a verified end (messages checked), or -1 with ERR. */
static int
archive_read_all(int fd, const uint8_t *k, char *err, size_t errlen)
{
	struct archive_manifest m;
	struct archive_reader *r;
	struct queue_envelope env;
	uint8_t *body;
	size_t len;
	int rc;

	if (archive_reader_open(&r, fd, k, &m, err, errlen) != 0)
		return -1;
	while ((rc = archive_reader_next(r, &env, &body, &len, err, errlen)) ==
	       1) {
		queue_envelope_clear(&env);
		free(body);
	}
	archive_reader_free(r);
	return rc;
}

static void
test_roundtrip(void **state)
{
	struct archive_params p, got;
	struct archive_manifest m;
	struct archive_reader *r;
	struct queue_envelope env;
	uint8_t *body;
	size_t len, i;
	char err[200];
	int fd;

	(void)state;
	archive_params_new(&p, ARCHIVE_KDF_KEY);
	fd = archive_make(&p);
	assert_int_equal(archive_header_read(fd, &got, err, sizeof(err)), 0);
	assert_int_equal(got.kdf, ARCHIVE_KDF_KEY);
	assert_memory_equal(got.salt, p.salt, ARCHIVE_SALT_BYTES);
	assert_int_equal(archive_reader_open(&r, fd, key, &m, err, sizeof(err)),
			 0);
	assert_int_equal(m.messages, 3);
	assert_int_equal(m.time_ms, 42);
	assert_string_equal(m.source, "node-a.example");
	for (i = 0; i < 3; i++) {
		assert_int_equal(
		    archive_reader_next(r, &env, &body, &len, err, sizeof(err)),
		    1);
		assert_int_equal(env.id, envs[i].id);
		assert_int_equal(env.created_ms, envs[i].created_ms);
		assert_int_equal(env.next_attempt_ms, envs[i].next_attempt_ms);
		assert_int_equal(env.flags, envs[i].flags);
		assert_string_equal(env.sender, envs[i].sender);
		assert_int_equal(env.nrcpts, envs[i].nrcpts);
		assert_string_equal(env.rcpts[0].addr, envs[i].rcpts[0].addr);
		assert_int_equal(env.rcpts[0].state, envs[i].rcpts[0].state);
		assert_int_equal(env.rcpts[0].attempts,
				 envs[i].rcpts[0].attempts);
		assert_int_equal(len, envs[i].size);
		if (len > 0)
			assert_memory_equal(body, body_of(i), len);
		if (i == 0) {
			assert_string_equal(env.user, "campaign");
			assert_string_equal(env.msgid, "<m1@example.test>");
			assert_string_equal(env.campaign, "spring");
			assert_string_equal(env.envid, "E1");
			assert_string_equal(env.rcpts[0].orcpt,
					    "rfc822;a@one.example");
			assert_int_equal(env.rcpts[0].notify, 0x03);
			assert_string_equal(env.rcpts[1].addr, "b@two.example");
		}
		queue_envelope_clear(&env);
		free(body);
	}
	assert_int_equal(
	    archive_reader_next(r, &env, &body, &len, err, sizeof(err)), 0);
	archive_reader_free(r);
	close(fd);
}

static void
test_wrong_key(void **state)
{
	struct archive_params p;
	uint8_t other[QUEUE_KEY_BYTES];
	char err[200];
	int fd;

	(void)state;
	archive_params_new(&p, ARCHIVE_KDF_KEY);
	fd = archive_make(&p);
	memcpy(other, key, sizeof(other));
	other[7] ^= 0x40;
	assert_int_equal(archive_read_all(fd, other, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "wrong key or passphrase"));
	close(fd);
}

/* A copy of SRC's LEN bytes, byte AT xor'd with X (X 0: none), with
 * EXTRA bytes after them. */
static int
archive_copy(const uint8_t *src, size_t len, size_t at, uint8_t x, size_t extra)
{
	char path[] = "/tmp/qarchive.XXXXXX";
	uint8_t *b = calloc(1, len + extra + 1);
	int fd = mkstemp(path);

	assert_non_null(b);
	assert_true(fd >= 0);
	unlink(path);
	memcpy(b, src, len);
	if (x != 0)
		b[at] ^= x;
	assert_int_equal(write(fd, b, len + extra), (ssize_t)(len + extra));
	free(b);
	return fd;
}

static void
test_cut_changed_extended(void **state)
{
	struct archive_params p;
	char err[200];
	uint8_t *all;
	off_t size;
	size_t i;
	int fd, c;

	(void)state;
	archive_params_new(&p, ARCHIVE_KDF_KEY);
	fd = archive_make(&p);
	size = lseek(fd, 0, SEEK_END);
	all = malloc((size_t)size);
	assert_non_null(all);
	assert_int_equal(pread(fd, all, (size_t)size, 0), size);
	close(fd);
	for (i = 0; i < (size_t)size; i += i < 400 ? 1 : 997) {
		c = archive_copy(all, i, 0, 0, 0);
		assert_int_equal(archive_read_all(c, key, err, sizeof(err)),
				 -1);
		assert_non_null(strstr(err, "truncated"));
		close(c);
	}
	for (i = 0; i < (size_t)size; i += i < 400 ? 1 : 613) {
		c = archive_copy(all, (size_t)size, i, 0x01, 0);
		assert_int_equal(archive_read_all(c, key, err, sizeof(err)),
				 -1);
		close(c);
	}
	c = archive_copy(all, (size_t)size, 0, 0, 1);
	assert_int_equal(archive_read_all(c, key, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "after its end"));
	close(c);
	c = archive_copy(all, (size_t)size, 0, 0, 0);
	assert_int_equal(archive_read_all(c, key, err, sizeof(err)), 0);
	close(c);
	free(all);
}

static void
test_passphrase(void **state)
{
	struct archive_params p, q;
	uint8_t k1[QUEUE_KEY_BYTES], k2[QUEUE_KEY_BYTES], k3[QUEUE_KEY_BYTES];
	char err[200];

	(void)state;
	archive_params_new(&p, ARCHIVE_KDF_ARGON2ID);
	archive_params_new(&q, ARCHIVE_KDF_ARGON2ID);
	assert_memory_not_equal(p.salt, q.salt, ARCHIVE_SALT_BYTES);
	assert_int_equal(archive_key_derive(&p, "pw", 2, k1, err, sizeof(err)),
			 0);
	assert_int_equal(archive_key_derive(&p, "pw", 2, k2, err, sizeof(err)),
			 0);
	assert_int_equal(archive_key_derive(&q, "pw", 2, k3, err, sizeof(err)),
			 0);
	assert_memory_equal(k1, k2, sizeof(k1));
	assert_memory_not_equal(k1, k3, sizeof(k1));
	archive_params_new(&q, ARCHIVE_KDF_KEY);
	assert_int_equal(archive_key_derive(&q, "pw", 2, k3, err, sizeof(err)),
			 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_cut_changed_extended),
		cmocka_unit_test(test_passphrase),
	};
	size_t i;

	big = malloc(BIG_BYTES);
	assert_non_null(big);
	for (i = 0; i < BIG_BYTES; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	for (i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	i = (size_t)cmocka_run_group_tests(tests, NULL, NULL);
	free(big);
	return (int)i;
}
