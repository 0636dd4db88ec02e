/*
 * sockio_test.c — mta/core/sockio.[ch].  Reading: one readv of a socket
 * into an evbuffer, its room growing while reads fill it and shrinking
 * when they do not, capped by the caller; the end of the stream, "nothing
 * now", and the frozen input of a socket bufferevent (which must be
 * unfrozen before sock_read can fill it: the SMTP server and client do so
 * when they take its reading over).  Writing: the scratch buffer while the
 * bufferevent's output is empty, flushed whole to the socket, or what the
 * socket does not take (all of it after an error) to the output, in
 * order.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "mta/core/sockio.h"

/* A connected pair, our end (sv[0]) non-blocking. */
static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
}

/* N bytes of a pattern that tells one offset from another. */
static void
fill(uint8_t *p, size_t n, size_t from)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)((from + i) * 7 + (from + i) / 251);
}

static void
test_grows_to_the_cap(void **state)
{
	static uint8_t out[200000], got[200000];
	struct sock_reader r = { 0 };
	struct evbuffer *in = evbuffer_new();
	size_t sent = 0, total = 0, want;
	ssize_t n, w;
	int sv[2];
	/* Each read's room, while the data is there to fill it: 4, 8, 16,
	 * 32 KiB, then 32 KiB on (each less the chain header's slack). */
	const size_t expect[] = { 4096, 8192, 16384, 32768, 32768, 32768 };
	size_t i;

	(void)state;
	pair(sv);
	fill(out, sizeof(out), 0);
	for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		want = expect[i] - SOCK_READ_SLACK;
		/* Enough waiting for the whole room, and more. */
		while (sent < total + want + 1000) {
			w = write(sv[1], out + sent, 4096);
			assert_true(w > 0);
			sent += (size_t)w;
		}
		n = sock_read(&r, in, sv[0], 1 << 20);
		assert_int_equal(n, (ssize_t)want);
		total += (size_t)n;
	}
	/* Nothing read is lost or reordered. */
	while ((n = sock_read(&r, in, sv[0], 1 << 20)) > 0)
		total += (size_t)n;
	assert_int_equal(n, -1);
	assert_true(sock_read_again(errno));
	assert_int_equal(total, sent);
	assert_int_equal(evbuffer_get_length(in), sent);
	assert_int_equal(evbuffer_remove(in, got, sent), (int)sent);
	assert_memory_equal(got, out, sent);
	evbuffer_free(in);
	close(sv[0]);
	close(sv[1]);
}

static void
test_shrinks_and_caps(void **state)
{
	static uint8_t out[100000];
	struct sock_reader r = { 0 };
	struct evbuffer *in = evbuffer_new();
	ssize_t n;
	int sv[2];
	int i;

	(void)state;
	pair(sv);
	fill(out, sizeof(out), 0);
	assert_int_equal(write(sv[1], out, sizeof(out)), (ssize_t)sizeof(out));
	for (i = 0; i < 4; i++)
		assert_true(sock_read(&r, in, sv[0], 1 << 20) > 0);
	assert_int_equal(r.want, SOCK_READ_MAX);
	/* The caller's cap holds whatever the room. */
	assert_int_equal(sock_read(&r, in, sv[0], 100), 100);
	/* Small reads (a reply, a command) take the room down again, a
	 * halving each, to the smallest. */
	evbuffer_drain(in, evbuffer_get_length(in));
	while (sock_read(&r, in, sv[0], 1 << 20) > 0)
		;
	for (i = 0; i < 5; i++) {
		assert_int_equal(write(sv[1], "250 OK\r\n", 8), 8);
		assert_int_equal(sock_read(&r, in, sv[0], 1 << 20), 8);
	}
	assert_int_equal(r.want, SOCK_READ_MIN);
	/* A cap of 0: nothing is read. */
	assert_int_equal(write(sv[1], "x", 1), 1);
	n = sock_read(&r, in, sv[0], 0);
	assert_int_equal(n, -1);
	assert_true(sock_read_again(errno));
	evbuffer_free(in);
	close(sv[0]);
	close(sv[1]);
}

static void
test_end_of_stream(void **state)
{
	struct sock_reader r = { 0 };
	struct evbuffer *in = evbuffer_new();
	int sv[2];

	(void)state;
	pair(sv);
	assert_int_equal(sock_read(&r, in, sv[0], 4096), -1);
	assert_true(sock_read_again(errno));
	assert_int_equal(write(sv[1], "221 bye\r\n", 9), 9);
	close(sv[1]);
	assert_int_equal(sock_read(&r, in, sv[0], 4096), 9);
	assert_int_equal(sock_read(&r, in, sv[0], 4096), 0);
	assert_int_equal(evbuffer_get_length(in), 9);
	/* A closed descriptor is an error, not "nothing now". */
	close(sv[0]);
	assert_int_equal(sock_read(&r, in, sv[0], 4096), -1);
	assert_false(sock_read_again(errno));
	evbuffer_free(in);
}

/* A socket bufferevent's input is frozen at its end: sock_read cannot
 * reserve room in it until it is unfrozen, as smtp_server_bev_setup and
 * the client's connect do. */
static void
test_bufferevent_input_frozen(void **state)
{
	struct event_base *base = event_base_new();
	struct sock_reader r = { 0 };
	struct bufferevent *bev;
	struct evbuffer *in;
	int sv[2];

	(void)state;
	pair(sv);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	in = bufferevent_get_input(bev);
	assert_int_equal(write(sv[1], "220 hi\r\n", 8), 8);
	assert_int_equal(sock_read(&r, in, sv[0], 4096), -1);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(evbuffer_unfreeze(in, 0), 0);
	assert_int_equal(sock_read(&r, in, sv[0], 4096), 8);
	assert_int_equal(evbuffer_get_length(in), 8);
	bufferevent_free(bev);
	close(sv[1]);
	event_base_free(base);
}

static void
test_flush_whole(void **state)
{
	struct event_base *base = event_base_new();
	struct evbuffer *scratch = evbuffer_new();
	struct bufferevent *bev;
	char got[64];
	int sv[2];

	(void)state;
	pair(sv);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	/* Nothing in flight: the scratch buffer takes the bytes. */
	assert_ptr_equal(sock_out(scratch, bev), scratch);
	assert_int_equal(evbuffer_add(scratch, "MAIL FROM:<>\r\n", 14), 0);
	assert_ptr_equal(sock_out(scratch, bev), scratch);
	assert_int_equal(sock_pending(scratch, bev), 14);
	assert_true(sock_flush(scratch, bev, sv[0]));
	assert_int_equal(sock_pending(scratch, bev), 0);
	assert_int_equal(read(sv[1], got, sizeof(got)), 14);
	assert_memory_equal(got, "MAIL FROM:<>\r\n", 14);
	/* An empty scratch buffer: nothing to do, all of it went. */
	assert_true(sock_flush(scratch, bev, sv[0]));
	bufferevent_free(bev);
	evbuffer_free(scratch);
	close(sv[1]);
	event_base_free(base);
}

static void
test_flush_rest_to_output(void **state)
{
	static uint8_t out[1 << 20];
	struct event_base *base = event_base_new();
	struct evbuffer *scratch = evbuffer_new();
	struct bufferevent *bev;
	size_t left, got = 0;
	ssize_t n;
	uint8_t buf[65536];
	int sv[2];

	(void)state;
	pair(sv);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	fill(out, sizeof(out), 0);
	assert_int_equal(evbuffer_add(scratch, out, sizeof(out)), 0);
	/* More than the socket takes: the rest waits in the output. */
	assert_false(sock_flush(scratch, bev, sv[0]));
	assert_int_equal(evbuffer_get_length(scratch), 0);
	left = evbuffer_get_length(bufferevent_get_output(bev));
	assert_true(left > 0 && left < sizeof(out));
	/* Bytes in the output: what comes next goes behind them. */
	assert_ptr_equal(sock_out(scratch, bev), bufferevent_get_output(bev));
	assert_int_equal(sock_pending(scratch, bev), left);
	/* What the socket took is the start, in order. */
	while ((n = read(sv[1], buf, sizeof(buf))) > 0) {
		assert_memory_equal(buf, out + got, (size_t)n);
		got += (size_t)n;
		if (got == sizeof(out) - left)
			break;
	}
	assert_int_equal(got, sizeof(out) - left);
	bufferevent_free(bev);
	evbuffer_free(scratch);
	close(sv[1]);
	event_base_free(base);
}

static void
test_flush_error_to_output(void **state)
{
	struct event_base *base = event_base_new();
	struct evbuffer *scratch = evbuffer_new();
	struct bufferevent *bev;
	int sv[2];

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	pair(sv);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	close(sv[1]);
	assert_int_equal(evbuffer_add(scratch, "QUIT\r\n", 6), 0);
	/* The peer is gone: all of it goes to the output, whose write then
	 * meets the error and reports it. */
	assert_false(sock_flush(scratch, bev, sv[0]));
	assert_int_equal(evbuffer_get_length(scratch), 0);
	assert_int_equal(evbuffer_get_length(bufferevent_get_output(bev)), 6);
	bufferevent_free(bev);
	evbuffer_free(scratch);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_to_the_cap),
		cmocka_unit_test(test_shrinks_and_caps),
		cmocka_unit_test(test_end_of_stream),
		cmocka_unit_test(test_bufferevent_input_frozen),
		cmocka_unit_test(test_flush_whole),
		cmocka_unit_test(test_flush_rest_to_output),
		cmocka_unit_test(test_flush_error_to_output),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
