/*
 * map.c — the queue's data file in this process: where LMDB's map lies,
 * which of its pages stay in our page tables (queue_map_*), and how LMDB's
 * writes reach the page cache (__wrap_pwrite, __wrap_writev: every program
 * linking the queue links LMDB statically with `ld --wrap=pwrite
 * --wrap=writev`, CMakeLists.txt).  Any thread; nothing here holds state.
 * Must not: change what LMDB sees of a write (its bytes, its file offset
 * afterwards, its failure and errno).
 */
#define _DEFAULT_SOURCE /* madvise(MADV_DONTNEED) */
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "queue/queue_int.h"

bool
queue_map_has(const struct queue *q, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, lo = (uintptr_t)q->map_addr;

	return q->map_addr != NULL && a >= lo && len <= q->map_len &&
	       a - lo <= q->map_len - len;
}

/*
 * The pages of the map under [P, P+LEN) leave our page tables:
 * MADV_DONTNEED on a shared file mapping drops only our entries, the pages
 * stay in the page cache and fault back in if anyone reads them again.
 * Without it every chunk read through the map, or freed by LMDB (which
 * reads its first page), would count in the daemon's RSS until the
 * writer's trim (writer_trim): at a few hundred MB/s of bodies, hundreds of
 * MB that are not ours.  The range is widened to 2 MiB boundaries: one
 * fault maps a whole fault-around window (64 KiB) or a large folio, past
 * the record.  Only a range inside Q's map is dropped: a write
 * transaction's own pages are heap memory, which MADV_DONTNEED would zero.
 */
#define QUEUE_MAP_UNMAP_ALIGN ((uintptr_t)2 << 20)

void
queue_map_unmap(const struct queue *q, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, e = a + len, lo = (uintptr_t)q->map_addr,
		  hi = lo + q->map_len;

	if (!queue_map_has(q, p, len))
		return;
	a &= ~((uintptr_t)QUEUE_MAP_UNMAP_ALIGN - 1);
	e = (e + QUEUE_MAP_UNMAP_ALIGN - 1) &
	    ~((uintptr_t)QUEUE_MAP_UNMAP_ALIGN - 1);
	if (a < lo)
		a = lo;
	if (e > hi)
		e = hi;
	if (e > a)
		(void)madvise((void *)a, e - a, MADV_DONTNEED);
}

int
queue_map_locate(const void *at, void **addr, size_t *len)
{
	unsigned long lo, hi, a = (unsigned long)(uintptr_t)at;
	char line[512];
	bool bol = true;
	int rc = -1;
	FILE *f;

	if ((f = fopen("/proc/self/maps", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		/* Only at the start of a line (a long path is read in
		 * pieces). */
		if (bol && sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= a &&
		    a < hi) {
			*addr = (void *)(uintptr_t)lo;
			*len = hi - lo;
			rc = 0;
			break;
		}
		bol = strchr(line, '\n') != NULL;
	}
	fclose(f);
	return rc;
}

void
queue_map_release(void *addr, size_t len)
{
	(void)madvise(addr, len, MADV_DONTNEED);
}

void
queue_map_trim(const struct queue *q)
{
	if (q->map_addr != NULL)
		queue_map_release(q->map_addr, q->map_len);
}

/*
 * Why LMDB's writes are cut: since Linux 6.x ext4 keeps a file's page
 * cache in folios as large as the write that made them (up to 2 MiB), and
 * a fault on a shared map maps the whole folio.  LMDB writes a commit's
 * pages with one writev per contiguous run, megabytes at a time, and
 * touches committed pages through its map: the first page of each deleted
 * body chunk (mdb_cursor_del reads its length there), the B-tree pages on
 * the way to each chunk (mdb_get).  Each touch then put up to 2 MiB of the
 * file into the daemon's RSS until the next trim: 8-13 MiB of a 43 MiB
 * peak at 100 KB, 1,013 KiB per touched page of a file written in 1 MB
 * writes.  Written in pieces of QUEUE_WRITE_PIECE_BYTES, the file's folios
 * are no larger than that, the kernel's fault-around window (64 KiB), so a
 * touch maps what it would on a kernel without large folios.  LMDB's calls
 * (and the queue's own, headroom.c) come here and go to the C library by
 * __real_pwrite and __real_writev; calls of less than a piece pass as they
 * are, and so does a writev on anything that cannot seek.
 *
 * The pieces end on multiples of their size (a folio is aligned to its
 * size: an unaligned piece would straddle two).
 */
#define QUEUE_WRITE_PIECE_BYTES ((off_t)64 * 1024)

ssize_t __real_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t __real_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt);

/*
 * LEN octets of BUF at OFF, in pieces ending on multiples of
 * QUEUE_WRITE_PIECE_BYTES; *DONE counts those written.  0 when all of them
 * were (or a piece wrote nothing without an error, as write(2) would end
 * short), or -1 with the errno of the piece that failed (an interrupted
 * piece is tried again): a short count would reach LMDB as EIO where the
 * disk said ENOSPC.
 */
static int
map_write_pieces(int fd, const char *buf, size_t len, off_t off, size_t *done)
{
	*done = 0;
	while (*done < len) {
		off_t at = off + (off_t)*done;
		size_t n = (size_t)(QUEUE_WRITE_PIECE_BYTES -
				    at % QUEUE_WRITE_PIECE_BYTES);
		ssize_t w;

		if (n > len - *done)
			n = len - *done;
		if ((w = __real_pwrite(fd, buf + *done, n, at)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0)
			break;
		*done += (size_t)w;
	}
	return 0;
}

ssize_t
__wrap_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done;

	if (len <= (size_t)QUEUE_WRITE_PIECE_BYTES || off < 0)
		return __real_pwrite(fd, buf, len, off);
	if (map_write_pieces(fd, buf, len, off, &done) != 0)
		return -1;
	return (ssize_t)done;
}

/* As writev(2) at the file offset, which it moves past what was written,
 * failed or not (LMDB seeks, then writes a run of pages). */
ssize_t
__wrap_writev(int fd, const struct iovec *iov, int iovcnt)
{
	size_t total = 0, done = 0, n;
	off_t off;
	int i, rc = 0, e;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total <= (size_t)QUEUE_WRITE_PIECE_BYTES ||
	    (off = lseek(fd, 0, SEEK_CUR)) < 0)
		return __real_writev(fd, iov, iovcnt);
	for (i = 0; i < iovcnt && rc == 0; i++) {
		rc = map_write_pieces(fd, iov[i].iov_base, iov[i].iov_len,
				      off + (off_t)done, &n);
		done += n;
		if (n < iov[i].iov_len)
			break;
	}
	e = errno;
	if (lseek(fd, off + (off_t)done, SEEK_SET) < 0)
		return -1;
	errno = e;
	return rc != 0 ? -1 : (ssize_t)done;
}
