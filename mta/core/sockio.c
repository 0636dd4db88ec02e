/*
 * sockio.c — a clear-text socket read and written beside a bufferevent
 * (sockio.h).
 */
#include "sockio.h"

#include <errno.h>
#include <sys/uio.h>

ssize_t
sock_read(struct sock_reader *r, struct evbuffer *in, evutil_socket_t fd,
	  size_t max)
{
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	size_t room = r->want != 0 ? r->want : SOCK_READ_MIN;
	size_t want = room - SOCK_READ_SLACK;
	size_t left;
	ssize_t n;
	int nvec, i;

	if (want > max)
		want = max;
	if (want == 0) {
		errno = EAGAIN;
		return -1;
	}
	nvec = evbuffer_reserve_space(in, (ev_ssize_t)want, vec, 2);
	if (nvec <= 0) {
		errno = ENOMEM;
		return -1;
	}
	/* The room may be larger than asked: read no more than WANT. */
	left = want;
	for (i = 0; i < nvec; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len < left ? vec[i].iov_len : left;
		left -= iov[i].iov_len;
	}
	do
		n = readv(fd, iov, nvec);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		/* Nothing committed: the room stays for the next read. */
		int e = errno;

		(void)evbuffer_commit_space(in, vec, 0);
		errno = e;
		return n;
	}
	/* Commit the vectors the read reached, the last one cut short. */
	left = (size_t)n;
	for (i = 0; i < nvec && left > 0; i++) {
		vec[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
		left -= vec[i].iov_len;
	}
	(void)evbuffer_commit_space(in, vec, i);
	/* A read that filled its room asks for twice as much next time; one
	 * that filled less than half of it, for half. */
	if ((size_t)n == want && room < SOCK_READ_MAX)
		r->want = (uint32_t)(room * 2);
	else if ((size_t)n < want / 2 && room > SOCK_READ_MIN)
		r->want = (uint32_t)(room / 2);
	return n;
}

int
sock_read_again(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

struct evbuffer *
sock_out(struct evbuffer *scratch, struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	if (evbuffer_get_length(scratch) > 0 || evbuffer_get_length(out) == 0)
		return scratch;
	return out;
}

size_t
sock_pending(struct evbuffer *scratch, struct bufferevent *bev)
{
	return evbuffer_get_length(bufferevent_get_output(bev)) +
	       evbuffer_get_length(scratch);
}

bool
sock_flush(struct evbuffer *scratch, struct bufferevent *bev,
	   evutil_socket_t fd)
{
	int n;

	if (evbuffer_get_length(scratch) == 0)
		return true;
	n = evbuffer_write(scratch, fd);
	if (evbuffer_get_length(scratch) == 0 && n > 0)
		return true;
	evbuffer_add_buffer(bufferevent_get_output(bev), scratch);
	return false;
}
