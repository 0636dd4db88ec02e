/*
 * point_copy.c — a point's copy: LMDB's compacting copy streamed through a
 * pipe into the point's file, hashed on the way, written back window by
 * window.  Why: left to the page cache, hundreds of MB of dirty pages are
 * flushed in one burst by the final fsync, and the queue's own commits
 * (their fsync) wait behind it; written back steadily they interleave, and
 * the checksum costs no second read.  Owns: the pipe and LMDB's copy
 * thread, for one call.  Threads: the restore thread (blocking); the copy
 * thread inherits its priority and is joined before the call returns.
 */
#define _GNU_SOURCE /* sync_file_range, F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "queue/crypt_int.h"
#include "queue/point_int.h"
#include "queue/queue_int.h"

#define COPY_PIPE_BYTES   (1 << 20)  /* asked of the pipe; may get less */
#define COPY_BUF_BYTES    (1u << 20) /* one read from the pipe */
#define COPY_WINDOW_BYTES (8u << 20) /* written back at a time */
/* While the queue commits, the copy rests COPY_PACE times as long as its
 * last window took: it streams gigabytes through the caches and holds a
 * read transaction.  Measured over a queue of 1M messages (t/bench/
 * restore.sh): acceptance during a point at 0.73x its rate without with a
 * pace of 2, 0.85x with 6, no better with 20.  What remained was the read
 * transaction's, not the copy's: while it pins a snapshot, LMDB cannot
 * reuse the pages freed after it, each commit writes at the end of a
 * growing file, and its fdatasync then commits the file system's metadata
 * too.  The headroom (headroom.c), topped up here between windows, turns
 * those writes into overwrites.  An idle queue gets the copy at full
 * speed. */
#define COPY_PACE          6
#define COPY_REST_MAX_US   1000000
#define COPY_REST_SLICE_US 20000

/* After a window that took since *T0_US: rest if the queue committed
 * meanwhile (its writer is busy: acceptance or delivery). */
static void
copy_pace(struct queue *q, uint64_t *commits, uint64_t *t0_us)
{
	struct queue_stats st;
	uint64_t now = queue_clock_us(CLOCK_MONOTONIC), rest;
	struct timespec ts;

	queue_stats_get(q, &st);
	if (st.commits != *commits) {
		headroom_ask(q, q->headroom_want, false);
		rest = (now - *t0_us) * COPY_PACE;
		if (rest > COPY_REST_MAX_US)
			rest = COPY_REST_MAX_US;
		/* In slices, so that a stop does not wait out the rest. */
		while (rest > 0 && !atomic_load(&q->points_cancel)) {
			uint64_t slice = rest < COPY_REST_SLICE_US
					     ? rest
					     : COPY_REST_SLICE_US;

			ts.tv_sec = (time_t)(slice / 1000000);
			ts.tv_nsec = (long)(slice % 1000000) * 1000;
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
			rest -= slice;
		}
	}
	*commits = st.commits;
	*t0_us = queue_clock_us(CLOCK_MONOTONIC);
}

/* LMDB's side of the pipe. */
struct copy_feed {
	MDB_env *env;
	int fd;
	int rc;
};

static void *
copy_feed_main(void *arg)
{
	struct copy_feed *f = arg;
	sigset_t pipe_sig;

	/* A reader gone gives EPIPE here, never a signal to the process. */
	sigemptyset(&pipe_sig);
	sigaddset(&pipe_sig, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_sig, NULL);
	f->rc = mdb_env_copyfd2(f->env, f->fd, MDB_CP_COMPACT);
	close(f->fd); /* end of file for the reader */
	return NULL;
}

/*
 * Start the write-back of the window [FROM, TO) and wait for the one
 * before it: at most two windows of the point are dirty at any time.
 */
static int
copy_writeback(int fd, uint64_t from, uint64_t to, uint64_t prev)
{
	if (sync_file_range(fd, (off_t)from, (off_t)(to - from),
			    SYNC_FILE_RANGE_WRITE) != 0)
		return -1;
	if (from > prev &&
	    sync_file_range(fd, (off_t)prev, (off_t)(from - prev),
			    SYNC_FILE_RANGE_WAIT_BEFORE |
				SYNC_FILE_RANGE_WRITE |
				SYNC_FILE_RANGE_WAIT_AFTER) != 0)
		return -1;
	return 0;
}

/*
 * Read the pipe RD to its end into FD, hashing and writing back.  A write
 * error keeps reading (LMDB's thread must not block on a full pipe) and
 * is returned at the end; a stop (q->points_cancel) ends the reading at
 * once, and the caller's closing the pipe ends LMDB's copy.  0, or -1 with
 * err set.
 */
static int
copy_pump(struct queue *q, int rd, int fd, uint64_t *size, char sum[80],
	  char *err, size_t errlen)
{
	crypto_generichash_state st;
	uint8_t h[32], *buf;
	char hex[65];
	uint64_t prev = 0, from = 0, commits = 0,
		 t0 = queue_clock_us(CLOCK_MONOTONIC);
	ssize_t n;
	int saved = 0;

	if ((buf = malloc(COPY_BUF_BYTES)) == NULL) {
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	*size = 0;
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	while ((n = read(rd, buf, COPY_BUF_BYTES)) != 0) {
		if (atomic_load(&q->points_cancel)) {
			/* The caller closes the pipe: LMDB's copy fails. */
			saved = ECANCELED;
			break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			saved = errno;
			break;
		}
		if (saved != 0)
			continue; /* drain: LMDB's copy must end */
		/* What LMDB's walk of the map mapped for this piece leaves
		 * our page tables (the whole queue, else, for the copy's
		 * time). */
		queue_map_trim(q);
		crypto_generichash_update(&st, buf, (size_t)n);
		if (crypt_write_all(fd, buf, (size_t)n) != 0) {
			saved = errno;
			continue;
		}
		*size += (uint64_t)n;
		if (*size - from >= COPY_WINDOW_BYTES) {
			if (copy_writeback(fd, from, *size, prev) != 0)
				saved = errno;
			prev = from;
			from = *size;
			copy_pace(q, &commits, &t0);
		}
	}
	free(buf);
	if (saved == ECANCELED) {
		(void)snprintf(err, errlen, "given up: the daemon stops");
		return -1;
	}
	if (saved != 0) {
		(void)snprintf(err, errlen, "writing: %s", strerror(saved));
		return -1;
	}
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	(void)snprintf(sum, 80, POINT_CHECKSUM_LABEL "%s", hex);
	return 0;
}

int
point_copy_stream(struct queue *q, int fd, uint64_t *size, char sum[80],
		  char *err, size_t errlen)
{
	struct copy_feed f = { .env = q->env, .rc = 0 };
	pthread_t th;
	int p[2], rc;

	if (pipe2(p, O_CLOEXEC) != 0) {
		(void)snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	(void)fcntl(p[1], F_SETPIPE_SZ, COPY_PIPE_BYTES);
	f.fd = p[1];
	if ((rc = pthread_create(&th, NULL, copy_feed_main, &f)) != 0) {
		close(p[0]);
		close(p[1]);
		(void)snprintf(err, errlen, "copy thread: %s", strerror(rc));
		return -1;
	}
	rc = copy_pump(q, p[0], fd, size, sum, err, errlen);
	close(p[0]); /* a pump that stopped early: LMDB's writes fail now */
	pthread_join(th, NULL);
	if (rc != 0)
		return rc; /* the pump's reason, not LMDB's broken pipe */
	if (f.rc != 0) {
		(void)snprintf(err, errlen, "copy: %s", mdb_strerror(f.rc));
		return -1;
	}
	return rc;
}
