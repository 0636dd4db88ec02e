/*
 * headroom.c — written blocks kept ahead of LMDB's last page while a
 * restore point pins a snapshot.  Why: the point's read transaction keeps
 * LMDB from reusing the pages freed after it, so every commit meanwhile
 * writes at the end of a growing file, and each commit's fdatasync then
 * also commits the file system's allocation and size (ext4: a journal
 * commit per transaction).  Blocks written beforehand (not fallocated:
 * unwritten extents cost the same conversion) make those commits plain
 * overwrites.  Owns: the file's tail past LMDB's last page and the queue's
 * headroom figures and its thread.  Threads: the headroom thread (started
 * with the writer, at the opener's priority: the restore thread is niced,
 * and a niced thread holding q->txn_mu would stall the writer) writes and
 * syncs; the restore thread asks it (headroom_ask); the queue writer holds
 * q->txn_mu across each write transaction.  Invariant:
 * a zero is written only at or past the file's size and only while no
 * write transaction is open, so it never lands on a page LMDB has written
 * or is writing.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <lmdb.h>

#include "queue/queue_int.h"

#define HEADROOM_CHUNK_BYTES (2u << 20)  /* written under the lock at once */
#define HEADROOM_ALIGN       4096        /* O_DIRECT offsets and lengths */
#define HEADROOM_SYNC_BYTES  (32u << 20) /* appended between two syncs */

/* The end of LMDB's last page: every byte LMDB has written is below it.
 * Call with q->txn_mu held (no write transaction open).  0 on failure. */
static uint64_t
headroom_used_end(struct queue *q)
{
	MDB_envinfo info;
	MDB_stat st;

	if (mdb_env_info(q->env, &info) != 0 || mdb_env_stat(q->env, &st) != 0)
		return 0;
	return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

uint64_t
headroom_used(struct queue *q)
{
	uint64_t end;

	pthread_mutex_lock(&q->txn_mu);
	end = headroom_used_end(q);
	pthread_mutex_unlock(&q->txn_mu);
	return end;
}

/* Where zeros are written: LMDB's descriptor, and beside it one opened
 * with O_DIRECT on the same file when the file system takes it.  Direct
 * writes skip the page cache, whose cost (about 3 ms a MiB here, paid
 * while the writer waits for the lock) was most of a chunk's; the range is
 * past LMDB's last page, so no page of it is cached. */
struct headroom_out {
	int fd;        /* LMDB's: fstat, fdatasync, buffered writes */
	int direct_fd; /* -1: none */
};

/*
 * One step: when the file holds fewer than WANT bytes past LMDB's last
 * page, append up to one chunk of zeros at its end.  *ADDED: bytes
 * written.  0 (nothing more to do when *ADDED is 0), or -1 with errno.
 */
static int
headroom_step(struct queue *q, const struct headroom_out *o,
	      const uint8_t *zeros, uint64_t want, size_t *added)
{
	uint64_t end, have;
	struct stat sb;
	size_t n;
	ssize_t w;
	int rc = 0, fd;

	*added = 0;
	pthread_mutex_lock(&q->txn_mu);
	if ((end = headroom_used_end(q)) == 0 || fstat(o->fd, &sb) != 0) {
		rc = -1;
		errno = errno != 0 ? errno : EIO;
		goto done;
	}
	have = (uint64_t)sb.st_size > end ? (uint64_t)sb.st_size - end : 0;
	if (have >= want)
		goto done;
	n = want - have < HEADROOM_CHUNK_BYTES ? (size_t)(want - have)
					       : HEADROOM_CHUNK_BYTES;
	/* Direct writes need aligned offsets and lengths: LMDB's file ends
	 * on a page, and the chunk is rounded up to a whole block. */
	fd = o->direct_fd >= 0 && sb.st_size % HEADROOM_ALIGN == 0
		 ? o->direct_fd
		 : o->fd;
	if (fd == o->direct_fd)
		n = (n + HEADROOM_ALIGN - 1) / HEADROOM_ALIGN * HEADROOM_ALIGN;
	do
		w = pwrite(fd, zeros, n, sb.st_size);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		rc = -1;
	else
		*added = (size_t)w;
done:
	pthread_mutex_unlock(&q->txn_mu);
	return rc;
}

int
headroom_keep(struct queue *q, uint64_t want, uint64_t max_write,
	      uint64_t *written)
{
	struct headroom_out o = { -1, -1 };
	char path[PATH_MAX];
	void *zeros = NULL;
	uint64_t total = 0, unsynced = 0;
	size_t added;
	int rc = 0, saved;

	*written = 0;
	if (mdb_env_get_fd(q->env, &o.fd) != 0) {
		errno = EBADF;
		return -1;
	}
	if (posix_memalign(&zeros, HEADROOM_ALIGN, HEADROOM_CHUNK_BYTES) != 0)
		return -1;
	memset(zeros, 0, HEADROOM_CHUNK_BYTES);
	if (snprintf(path, sizeof(path), "%s/data.mdb", q->path) <
	    (int)sizeof(path))
		o.direct_fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	while (total < max_write) {
		if ((rc = headroom_step(q, &o, zeros, want, &added)) != 0 &&
		    o.direct_fd >= 0 && errno == EINVAL) {
			/* O_DIRECT opened but refused: buffered from now. */
			close(o.direct_fd);
			o.direct_fd = -1;
			continue;
		}
		if (rc != 0 || added == 0)
			break;
		total += added;
		/* Synced outside the lock, every HEADROOM_SYNC_BYTES and at the
		 * end: the new size and blocks cost one journal commit per
		 * sync, paid here rather than by a commit's fdatasync (one per
		 * chunk made one every few milliseconds). */
		if ((unsynced += added) >= HEADROOM_SYNC_BYTES) {
			unsynced = 0;
			if ((rc = fdatasync(o.fd)) != 0)
				break;
		}
	}
	if (unsynced > 0 && fdatasync(o.fd) != 0 && rc == 0)
		rc = -1;
	saved = errno;
	if (o.direct_fd >= 0)
		close(o.direct_fd);
	free(zeros);
	*written = total;
	pthread_mutex_lock(&q->stats_mu);
	q->stats.headroom_bytes += total;
	pthread_mutex_unlock(&q->stats_mu);
	errno = saved;
	return rc;
}

/* The headroom thread: keeps q->headroom_goal, then says it is done. */
static void *
headroom_main(void *arg)
{
	struct queue *q = arg;
	uint64_t goal, written;

	(void)prctl(PR_SET_NAME, (unsigned long)"queue-headroom", 0, 0, 0);
	pthread_mutex_lock(&q->headroom_mu);
	for (;;) {
		while (!q->headroom_stop && q->headroom_goal == 0)
			pthread_cond_wait(&q->headroom_cv, &q->headroom_mu);
		if (q->headroom_stop)
			break;
		goal = q->headroom_goal;
		pthread_mutex_unlock(&q->headroom_mu);
		(void)headroom_keep(q, goal, UINT64_MAX, &written);
		pthread_mutex_lock(&q->headroom_mu);
		if (q->headroom_goal == goal)
			q->headroom_goal = 0;
		pthread_cond_broadcast(&q->headroom_cv);
	}
	q->headroom_goal = 0;
	pthread_cond_broadcast(&q->headroom_cv);
	pthread_mutex_unlock(&q->headroom_mu);
	return NULL;
}

int
headroom_start(struct queue *q)
{
	if (pthread_create(&q->headroom_th, NULL, headroom_main, q) != 0)
		return -1;
	q->headroom_started = true;
	return 0;
}

void
headroom_stop(struct queue *q)
{
	if (!q->headroom_started)
		return;
	pthread_mutex_lock(&q->headroom_mu);
	q->headroom_stop = true;
	pthread_cond_broadcast(&q->headroom_cv);
	pthread_mutex_unlock(&q->headroom_mu);
	pthread_join(q->headroom_th, NULL);
	q->headroom_started = false;
}

void
headroom_ask(struct queue *q, uint64_t want, bool wait)
{
	if (!q->headroom_started)
		return;
	pthread_mutex_lock(&q->headroom_mu);
	if (want > q->headroom_goal)
		q->headroom_goal = want;
	pthread_cond_broadcast(&q->headroom_cv);
	while (wait && q->headroom_goal != 0 && !q->headroom_stop)
		pthread_cond_wait(&q->headroom_cv, &q->headroom_mu);
	pthread_mutex_unlock(&q->headroom_mu);
}
