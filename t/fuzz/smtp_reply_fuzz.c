/*
 * smtp_reply_fuzz.c — libFuzzer harness for what any MX host may answer:
 * the delivery client (mta/deliver/smtp_client.c) runs one job (two
 * recipients, a body with a dot line) against a server on 127.0.0.1 whose
 * every byte is the input.  The input is the server's turns, separated by
 * FUZZ_TURN (0x1e): the first is written on connect, each next one when the
 * client has written something since (so that a pipelined group gets its
 * replies at once, and bytes that come early are unsolicited), and end of
 * file follows the last.  Properties: the client ends, once, within 2 s
 * (timeouts of 300 ms); a job reported done has a result per recipient, a
 * code of three digits (or 0) and a text, deferred when no command can get
 * that code (000, 108, 999); a result that outcome_classify() calls
 * delivered is a 2xx to end of data (stage EOM), which takes at least five
 * 2xx/3xx final reply lines in the input (banner, EHLO or HELO, MAIL, RCPT,
 * then 354 and the end, or BDAT's).  The server may offer STARTTLS: the
 * handshake then reads the input's bytes, fails, and the client may connect
 * again (each connection is served the input from its start, FUZZ_CONNS at
 * most).  Loopback only.  Seeds: t/fuzz/corpus/smtp_reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

#include "mta/deliver/outcome.h"
#include "mta/deliver/smtp_client.h"
#include "mta/observe/stats.h"
#include "t/fuzz/fuzz_check.h"

/* The client counts its runs here (outpostd defines it in main.c). */
struct stats stats;

#define FUZZ_RCPTS 2
#define FUZZ_CONNS 3 /* connections served the input; later ones refused */
#define FUZZ_TURN  0x1e

static const char body[] = "From: <sender@example.test>\r\n"
			   "Subject: fuzz\r\n"
			   "\r\n"
			   ".a line that starts with a dot\r\n"
			   "the end\r\n";
static const char *const rcpts[FUZZ_RCPTS] = { "a@example.test",
					       "b@example.test" };

static int listen_fd = -1;
static unsigned listen_port;
static SSL_CTX *ssl_ctx;

/* One connection of the server: where it is in the input. */
struct conn {
	struct run *r;
	int fd;
	size_t off; /* the start of the next turn, or past the end */
	bool eof;   /* end of file written */
	struct event *ev;
};

struct run {
	struct event_base *base;
	const uint8_t *data;
	size_t size;
	struct smtp_client_job job;
	struct smtp_client_result res[FUZZ_RCPTS];
	size_t body_off;
	unsigned nready, ndone, nclosed, nconns;
	struct conn conns[FUZZ_CONNS];
	bool sent;
};

static void
fuzz_init(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	(void)signal(SIGPIPE, SIG_IGN);
	FUZZ_CHECK((listen_fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	FUZZ_CHECK(bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	FUZZ_CHECK(listen(listen_fd, 16) == 0);
	FUZZ_CHECK(fcntl(listen_fd, F_SETFL, O_NONBLOCK) == 0);
	FUZZ_CHECK(getsockname(listen_fd, (struct sockaddr *)&sin, &len) == 0);
	listen_port = ntohs(sin.sin_port);
	FUZZ_CHECK((ssl_ctx = SSL_CTX_new(TLS_client_method())) != NULL);
	SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
	smtp_client_tls_init(ssl_ctx);
}

static int
body_next(void *arg, const uint8_t **p, size_t *len, char *err, size_t errlen)
{
	struct run *r = arg;
	size_t left = sizeof(body) - 1 - r->body_off;

	(void)err;
	(void)errlen;
	if (left == 0)
		return 1;
	/* In two pieces, so that dot-stuffing spans a boundary. */
	*p = (const uint8_t *)body + r->body_off;
	*len = r->body_off == 0 ? 20 : left;
	r->body_off += *len;
	return 0;
}

/* C's next turn, or end of file after the last. */
static void
conn_turn(struct conn *c)
{
	const struct run *r = c->r;
	const uint8_t *end;
	size_t n;
	ssize_t w;

	if (c->eof)
		return;
	if (c->off > r->size) {
		(void)shutdown(c->fd, SHUT_WR);
		c->eof = true;
		return;
	}
	end = memchr(r->data + c->off, FUZZ_TURN, r->size - c->off);
	n = end != NULL ? (size_t)(end - (r->data + c->off)) : r->size - c->off;
	while (n > 0) {
		w = write(c->fd, r->data + c->off, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		c->off += (size_t)w;
		n -= (size_t)w;
	}
	c->off += n + 1; /* past the separator (or the end) */
	if (c->off > r->size) {
		(void)shutdown(c->fd, SHUT_WR);
		c->eof = true;
	}
}

/* The client wrote: read it, then the next turn. */
static void
on_conn_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char buf[4096];
	ssize_t n, got = 0;

	(void)what;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		got += n;
	if (got > 0)
		conn_turn(c);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		event_del(c->ev);
}

/* A connection from the client: the first turn. */
static void
on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;
	struct conn *c;
	int s;

	(void)what;
	if ((s = accept(fd, NULL, NULL)) < 0)
		return;
	if (r->nconns == FUZZ_CONNS || fcntl(s, F_SETFL, O_NONBLOCK) != 0) {
		close(s);
		return;
	}
	c = &r->conns[r->nconns++];
	c->r = r;
	c->fd = s;
	c->ev = event_new(r->base, s, EV_READ | EV_PERSIST, on_conn_read, c);
	FUZZ_CHECK(c->ev != NULL && event_add(c->ev, NULL) == 0);
	conn_turn(c);
}

static void
on_ready(struct smtp_client *c, void *arg)
{
	struct run *r = arg;

	r->nready++;
	if (!r->sent) {
		r->sent = true;
		smtp_client_send(c, &r->job);
		return;
	}
	smtp_client_quit(c);
}

static void
on_done(struct smtp_client *c, struct smtp_client_job *job, void *arg)
{
	struct run *r = arg;

	(void)c;
	FUZZ_CHECK(job == &r->job);
	r->ndone++;
}

static void
on_closed(struct smtp_client *c, bool failed, enum outcome_stage stage,
	  int code, const char *text, void *arg)
{
	struct run *r = arg;

	(void)c;
	(void)text;
	r->nclosed++;
	FUZZ_CHECK((unsigned)stage < OS__COUNT);
	FUZZ_CHECK(!failed || r->ndone == 0);
	FUZZ_CHECK(code >= 0 && code <= 999);
	event_base_loopbreak(r->base);
}

static const struct smtp_client_cb cb = {
	.ready = on_ready,
	.done = on_done,
	.closed = on_closed,
};

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	FUZZ_CHECK(!"the client ran for more than 2 s");
}

/* Final reply lines (a code and a space, or the code alone) of class 2
 * or 3 in the input (a line starts after LF or a turn's separator). */
static unsigned
positive_finals(const uint8_t *d, size_t n)
{
	unsigned count = 0;
	size_t i = 0, e;

	while (i < n) {
		for (e = i; e < n && d[e] != '\n' && d[e] != FUZZ_TURN; e++)
			;
		if (e - i >= 3 && (d[i] == '2' || d[i] == '3') &&
		    d[i + 1] >= '0' && d[i + 1] <= '9' && d[i + 2] >= '0' &&
		    d[i + 2] <= '9' &&
		    (e - i == 3 || d[i + 3] == ' ' || d[i + 3] == '\r'))
			count++;
		i = e + 1;
	}
	return count;
}

static void
check_results(const struct run *r)
{
	struct outcome o;
	unsigned i;

	FUZZ_CHECK(r->nclosed == 1);
	FUZZ_CHECK(r->ndone <= 1);
	if (r->ndone == 0)
		return;
	for (i = 0; i < FUZZ_RCPTS; i++) {
		const struct smtp_client_result *res = &r->res[i];

		FUZZ_CHECK(res->text != NULL);
		FUZZ_CHECK((unsigned)res->stage < OS__COUNT);
		FUZZ_CHECK(res->code >= 0 && res->code <= 999);
		outcome_classify(res->stage, res->code, res->text, NULL, 0, &o);
		if (getenv("FUZZ_VERBOSE") != NULL)
			fprintf(stderr, "rcpt %u: %s %d %s: %s\n", i,
				outcome_stage_name(res->stage), res->code,
				o.action == OA_DELIVERED ? "delivered"
				: o.action == OA_DEFER   ? "deferred"
							 : "bounced",
				res->text);
		/* A code no command can get (000, 108, 999) decides
		 * nothing: deferred. */
		FUZZ_CHECK((res->code >= 200 && res->code <= 599) ||
			   o.action == OA_DEFER);
		if (o.action != OA_DELIVERED)
			continue;
		FUZZ_CHECK(res->stage == OS_EOM);
		FUZZ_CHECK(res->code >= 200 && res->code < 300);
		FUZZ_CHECK(positive_finals(r->data, r->size) >= 5);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_client_host host = { .name = "127.0.0.1" };
	struct timeval tv = { 2, 0 };
	struct smtp_client_env env;
	struct smtp_client_target t;
	struct event *acc, *deadline;
	struct smtp_client *c;
	struct run r;
	unsigned i;
	int fd;

	if (listen_fd < 0)
		fuzz_init();
	/* Connections left over from the input before (their client gone). */
	while ((fd = accept(listen_fd, NULL, NULL)) >= 0)
		close(fd);
	memset(&r, 0, sizeof(r));
	r.data = data;
	r.size = size;
	FUZZ_CHECK((r.base = event_base_new()) != NULL);
	memset(&env, 0, sizeof(env));
	env.base = r.base;
	env.dns = NULL; /* the host is an address: no lookup */
	env.loopback_only = true;
	env.ssl_ctx = ssl_ctx;
	env.connect_timeout_ms = env.greeting_timeout_ms = 300;
	env.command_timeout_ms = env.data_timeout_ms = 300;
	env.idle_timeout_ms = 300;
	memset(&t, 0, sizeof(t));
	t.hosts = &host;
	t.nhosts = 1;
	t.port = listen_port;
	t.ehlo = "client.example.test";
	t.tls = CONF_TLSP_MAY;
	t.max_mx_addresses = t.max_mx_sessions = 2;
	t.attempt_timeout_ms = 1000;
	r.job.sender = "sender@example.test";
	r.job.rcpts = rcpts;
	r.job.nrcpt = FUZZ_RCPTS;
	r.job.body_next = body_next;
	r.job.body_arg = &r;
	r.job.body_len = sizeof(body) - 1;
	r.job.res = r.res;
	r.job.tls_verified = -1;
	acc = event_new(r.base, listen_fd, EV_READ | EV_PERSIST, on_accept, &r);
	FUZZ_CHECK(acc != NULL && event_add(acc, NULL) == 0);
	FUZZ_CHECK((c = smtp_client_new(&env, &t, &cb, &r)) != NULL);
	deadline = evtimer_new(r.base, on_deadline, NULL);
	FUZZ_CHECK(deadline != NULL && evtimer_add(deadline, &tv) == 0);
	event_base_dispatch(r.base);
	/* The client is freed once its callback returned: let it go. */
	event_base_loop(r.base, EVLOOP_NONBLOCK);
	check_results(&r);
	event_free(deadline);
	event_free(acc);
	for (i = 0; i < r.nconns; i++) {
		event_free(r.conns[i].ev);
		close(r.conns[i].fd);
	}
	for (i = 0; i < FUZZ_RCPTS; i++)
		free(r.res[i].text);
	free(r.job.peer);
	if (host.session != NULL)
		SSL_SESSION_free(host.session);
	event_base_free(r.base);
	return 0;
}
