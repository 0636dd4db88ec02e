/*
 * sockio.h — a clear-text socket read and written beside a libevent
 * socket bufferevent, as the SMTP server and client do it: the
 * bufferevent stays for connecting, for bytes the socket did not take,
 * and for reporting write errors; the rest the caller does itself.
 *
 * Reading.  libevent 2.1's evbuffer_read() (which the socket bufferevent
 * calls at every readable event) asks the kernel how much is waiting (an
 * ioctl(FIONREAD)) before each read, and reads 4 KiB at most: a 100 KB
 * message cost 25 reads and 25 ioctls, a 4 KB one with its envelope two of
 * each.  sock_read() reads with one readv(2), as much as the caller's
 * budget allows, into room it reserves in the evbuffer: the room grows
 * while reads fill it (a body streaming in) and shrinks back when they do
 * not (replies and commands), so that a slow or idle connection keeps no
 * large buffer.
 *
 * Writing.  A bufferevent adds its write event when bytes reach its empty
 * output and deletes it once they are sent: two epoll_ctl(2) calls and a
 * loop turn for every reply or command group.  A caller that gathers what
 * it writes in a scratch buffer (sock_out) and hands it to the socket at
 * the end of its entry point or turn (sock_flush) makes neither; only
 * what the socket does not take goes through the bufferevent.
 *
 * Any thread; each call at most one system call, never blocking (the
 * socket is non-blocking).
 */
#ifndef OUTPOST_MTA_CORE_SOCKIO_H
#define OUTPOST_MTA_CORE_SOCKIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <stdbool.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>

/* The room reserved for one read: a power of two from SOCK_READ_MIN,
 * doubled after each read that filled it, up to SOCK_READ_MAX, less
 * SOCK_READ_SLACK, so that a new buffer chain with its header still fits
 * the power of two libevent allocates (a read of exactly 32 KiB would make
 * it allocate 64). */
#define SOCK_READ_MIN   ((size_t)4096)
#define SOCK_READ_MAX   ((size_t)32768)
#define SOCK_READ_SLACK ((size_t)128)

/* A connection's reading state: its next read's power of two (0:
 * SOCK_READ_MIN). */
struct sock_reader {
	uint32_t want;
};

/*
 * sock_read — one readv(2) of FD into IN, at most MAX bytes (MAX > 0;
 * further capped by R's room).  IN's end must not be frozen: a socket
 * bufferevent keeps its input's end frozen but while its own read runs,
 * so a caller that reads its socket for it unfreezes it once
 * (evbuffer_unfreeze(input, 0)) when it turns the bufferevent's reading
 * off for good.  Returns the bytes read (> 0), 0 at the
 * end of the stream, or -1 with errno set (EAGAIN / EWOULDBLOCK / EINTR:
 * nothing to read now; ENOMEM: no room could be reserved).
 */
ssize_t sock_read(struct sock_reader *r, struct evbuffer *in,
		  evutil_socket_t fd, size_t max);

/* sock_read_again — whether errno, after sock_read() returned -1, only
 * means "nothing now". */
int sock_read_again(int err);

/*
 * sock_out — where the next bytes for BEV's socket go: SCRATCH while it
 * holds some, or while BEV's output is empty; else the output (bytes are
 * already waiting there, and order must hold).
 */
struct evbuffer *sock_out(struct evbuffer *scratch, struct bufferevent *bev);

/* sock_pending — bytes written for BEV's socket and not yet taken: its
 * output's and SCRATCH's. */
size_t sock_pending(struct evbuffer *scratch, struct bufferevent *bev);

/*
 * sock_flush — SCRATCH to FD (BEV's socket) now, with one write.  What
 * the socket does not take, or all of it after an error (which the
 * bufferevent then meets and reports), goes to BEV's output, whose write
 * event sends it.  True when all of SCRATCH went (an empty SCRATCH too).
 */
bool sock_flush(struct evbuffer *scratch, struct bufferevent *bev,
		evutil_socket_t fd);

#endif
