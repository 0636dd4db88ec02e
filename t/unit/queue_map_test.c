/*
 * queue_map_test.c — LMDB's writes in 64 KiB pieces (queue/map.c): a page
 * of a freshly committed 2 MiB body, touched through LMDB's map, maps at
 * most one fault-around window (64 KiB), not the large folio one long
 * write makes (up to 2 MiB on Linux 6.18's ext4; a kernel without large
 * folios passes whatever is linked); and the wrappers change nothing a
 * caller sees: the bytes, the file offset after writev, a failure's errno
 * (EFBIG past RLIMIT_FSIZE, where a plain write would be short), a writev
 * on a pipe.
 */
#define _GNU_SOURCE /* pipe2 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "queue/queue.h"
#include "t/unit/queue_fixture.h"

#define WINDOW_KB 64

/* The Rss (kB) of the mapping of this process holding AT, from
 * /proc/self/smaps; -1 if not found. */
static long
map_rss_kb(const void *at)
{
	unsigned long lo, hi, a = (unsigned long)(uintptr_t)at;
	char line[512];
	bool in = false;
	long kb = -1;
	FILE *f;

	assert_non_null(f = fopen("/proc/self/smaps", "r"));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo <= a && a < hi;
			continue;
		}
		if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

static void
test_touch_maps_a_window(void **state)
{
	const size_t len = 2 << 20;
	struct queue *q = qfix_open(64 << 20);
	struct queue_op *op = qfix_insert_op(queue_id_next(q));
	uint64_t id = op->env.id;
	uint8_t k[12];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val key, val;
	long before, after;
	volatile uint8_t c;
	int i;

	(void)state;
	op->body = qfix_body(7, len);
	op->body_len = len;
	queue_submit(q, op, qfix_done, NULL);
	queue_close(q);

	/* Chunk 16 of 32: the middle of one long run of overflow pages. */
	for (i = 0; i < 8; i++)
		k[i] = (uint8_t)(id >> (56 - 8 * i));
	for (i = 0; i < 4; i++)
		k[8 + i] = (uint8_t)(16u >> (24 - 8 * i));
	key.mv_data = k;
	key.mv_size = sizeof(k);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(
	    mdb_env_open(env, qfix_queue, MDB_RDONLY | MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "body", 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
	assert_true(val.mv_size > 32 * 1024);
	before = map_rss_kb(val.mv_data);
	assert_true(before >= 0);
	c = ((const volatile uint8_t *)val.mv_data)[val.mv_size / 2];
	(void)c;
	after = map_rss_kb(val.mv_data);
	if (after - before > WINDOW_KB)
		fail_msg("one page touched mapped %ld kB of the queue's file "
			 "(want <= %d): LMDB's writes are not cut into pieces",
			 after - before, WINDOW_KB);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* LEN octets of pattern SEED. */
static uint8_t *
pattern(unsigned seed, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed + i / 4093);
	return p;
}

static int
scratch_file(void)
{
	char path[400];
	int fd;

	(void)snprintf(path, sizeof(path), "%s/scratch", qfix_dir);
	assert_true((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	return fd;
}

static void
assert_file_holds(int fd, off_t off, const uint8_t *want, size_t len)
{
	uint8_t *got = malloc(len);

	assert_non_null(got);
	assert_int_equal(pread(fd, got, len, off), (ssize_t)len);
	assert_memory_equal(got, want, len);
	free(got);
}

static void
test_writes_come_out_whole(void **state)
{
	const size_t a = 100000, b = 1, c = 900001, big = (1 << 20) + 777;
	uint8_t *p = pattern(1, big), *v = pattern(2, a + b + c);
	struct iovec iov[3] = { { v, a }, { v + a, b }, { v + a + b, c } };
	int fd = scratch_file(), pfd[2];
	char small[3] = "abc", back[3];

	(void)state;
	/* pwrite at an offset that is no multiple of a piece. */
	assert_int_equal(pwrite(fd, p, big, 12345), (ssize_t)big);
	assert_file_holds(fd, 12345, p, big);
	/* writev from the file offset, which it moves past the octets. */
	assert_int_equal(lseek(fd, 4096 * 300, SEEK_SET), 4096 * 300);
	assert_int_equal(writev(fd, iov, 3), (ssize_t)(a + b + c));
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 4096 * 300 + a + b + c);
	assert_file_holds(fd, 4096 * 300, v, a + b + c);
	close(fd);
	/* What cannot seek is written as it is. */
	assert_int_equal(pipe2(pfd, O_NONBLOCK), 0);
	iov[0].iov_base = small;
	iov[0].iov_len = sizeof(small);
	assert_int_equal(writev(pfd[1], iov, 1), (ssize_t)sizeof(small));
	assert_int_equal(read(pfd[0], back, sizeof(back)), sizeof(back));
	assert_memory_equal(back, small, sizeof(small));
	close(pfd[0]);
	close(pfd[1]);
	free(p);
	free(v);
}

static void
test_failure_keeps_its_errno(void **state)
{
	const size_t big = 1 << 20, limit = 300000;
	uint8_t *p = pattern(3, big);
	struct iovec iov = { p, big };
	struct rlimit old, lim;
	int fd = scratch_file();

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = limit;
	(void)signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	/* A plain pwrite would write 300,000 octets and say so; LMDB would
	 * call that short count EIO. */
	errno = 0;
	assert_int_equal(pwrite(fd, p, big, 0), -1);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	errno = 0;
	assert_int_equal(writev(fd, &iov, 1), -1);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	(void)signal(SIGXFSZ, SIG_DFL);
	/* What fitted is there; the offset is past it. */
	assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)limit);
	assert_file_holds(fd, 0, p, limit);
	close(fd);
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_touch_maps_a_window,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_writes_come_out_whole,
						qfix_setup, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_failure_keeps_its_errno,
						qfix_setup, qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
