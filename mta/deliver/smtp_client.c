/*
 * smtp_client.c — outbound SMTP sessions (RFC 5321, 2920, 3030, 3207, 6152,
 * 6531), one per connection to a remote host.
 *
 * Owns: the connection (socket, bufferevent, TLS), the walk through a
 * site's hosts and addresses, and the pipelined transaction: commands go out
 * ahead of replies (send cursor ahead of reply cursor, Postfix smtp_proto.c)
 * and each reply is matched to its command in order: every command sent
 * waits in a FIFO with its stage, so a reply, a timeout or a lost connection
 * belongs to the command it answers or was awaited for.  A reply with
 * nothing outstanding is unsolicited: a protocol error, as is any code
 * outcome_reply() says that command cannot get; both close the connection
 * and defer what was in flight.  Never decides what a reply means for a
 * recipient: it records stage, code and text, and its owner asks
 * outcome.c.  Knows nothing of its owner (the scheduler): what it needs
 * comes in smtp_client.h's structs, and it answers through the owner's
 * callbacks.  Delivery loop thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/core/scrub.h"
#include "mta/deliver/smtp_client.h"
#include "mta/observe/stats.h"

#define SC_REPLY_LINE_MAX  4096  /* longer reply lines are a protocol error */
#define SC_REPLY_TEXT_MAX  1024  /* text kept from a (multi-line) reply */
#define SC_REPLY_MAX_BYTES 65536 /* a longer reply (EHLO…) is an error */
#define SC_NOTLS_MS        (3600 * 1000) /* tls=may fallback memory */

enum sc_state {
	SC_RESOLVE,  /* looking up the current host's addresses */
	SC_CONNECT,  /* TCP connect in progress */
	SC_GREETING, /* waiting for the banner */
	SC_EHLO,
	SC_HELO,
	SC_STARTTLS,
	SC_TLS,  /* handshake in progress */
	SC_IDLE, /* usable, no transaction */
	SC_TXN,  /* a transaction in flight */
	SC_RSET,
	SC_QUIT,
	SC_DEAD,
	SC__COUNT
};

static const char *const sc_names[SC__COUNT] = {
	[SC_RESOLVE] = "resolve",   [SC_CONNECT] = "connect",
	[SC_GREETING] = "greeting", [SC_EHLO] = "ehlo",
	[SC_HELO] = "helo",         [SC_STARTTLS] = "starttls",
	[SC_TLS] = "tls",           [SC_IDLE] = "idle",
	[SC_TXN] = "txn",           [SC_RSET] = "rset",
	[SC_QUIT] = "quit",         [SC_DEAD] = "dead",
};

/* Capabilities from EHLO. */
#define CAP_PIPELINING 0x01u
#define CAP_8BITMIME   0x02u
#define CAP_SMTPUTF8   0x04u
#define CAP_STARTTLS   0x08u
#define CAP_CHUNKING   0x10u
#define CAP_SIZE       0x20u

/* A command sent and not yet answered: the reply cursor's queue. */
struct sc_cmd {
	enum outcome_stage stage;
	unsigned rcpt; /* OS_RCPT: index into the job's recipients */
};

struct smtp_client {
	const struct smtp_client_env *env;
	struct smtp_client_target t; /* its hosts are the owner's */
	const struct smtp_client_cb *cb;
	void *cbarg;
	enum sc_state state;
	unsigned host_idx;
	struct sockaddr_storage *addrs;
	size_t naddrs, addr_idx;
	/* the attempt's bounds (the path's max_mx_addresses, max_mx_sessions
	 * and attempt_timeout): addresses tried, sessions opened, and when
	 * the walk must end if no session is usable by then */
	unsigned ntried, nsessions;
	int64_t deadline_ms;
	struct dns_query *dq;
	evutil_socket_t fd;
	struct bufferevent *bev;
	struct event *timer;
	char ip[48];
	char remote[300]; /* "host [ip]" */
	bool tls, tls_verified, in_clear;
	bool usable; /* reached IDLE at least once */
	bool need_rset;
	unsigned caps;
	uint64_t size_max;
	unsigned msgs;
	/* the reply being read */
	int rcode;
	char rtext[SC_REPLY_TEXT_MAX];
	size_t rlen;
	unsigned rlines;
	size_t rbytes;  /* the whole reply so far (SC_REPLY_MAX_BYTES) */
	unsigned rcaps; /* EHLO keywords seen in this reply */
	uint64_t rsize; /* its SIZE */
	/* commands sent, not yet answered (a FIFO: pend[head .. head+len)) */
	struct sc_cmd *pend;
	unsigned pend_head, pend_len, pend_cap;
	/* the transaction */
	struct smtp_client_job *job;
	bool bdat;
	unsigned sent;  /* transaction commands sent (send cursor) */
	unsigned ncmds; /* MAIL + RCPTs + DATA/BDAT (the body comes after) */
	bool mail_ok;
	unsigned rcpt_ok;
	bool *accepted;
	/* why the last host failed, for the closed callback */
	enum outcome_stage fail_stage;
	int fail_code;
	char fail_text[SC_REPLY_TEXT_MAX];
	struct event *kick; /* "ready" on the next loop turn */
	unsigned depth;     /* entry points on the stack; free at 0 */
	struct smtp_client *prev, *next; /* every client alive */
};

static struct smtp_client *sc_all;

static void sc_connect_next(struct smtp_client *c);
static void sc_kick(struct smtp_client *c);
static void sc_connect_addr(struct smtp_client *c);
static void sc_host_failed(struct smtp_client *c, enum outcome_stage stage,
			   int code, const char *text);
static void sc_send_next(struct smtp_client *c);
static bool sc_attempt_over(struct smtp_client *c);
static void sc_finish(struct smtp_client *c, bool failed);

unsigned
smtp_client_msgs(const struct smtp_client *c)
{
	return c->msgs;
}

static int64_t
sc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
sc_host(const struct smtp_client *c)
{
	return c->t.hosts[c->host_idx].name;
}

static void
sc_timer(struct smtp_client *c, unsigned ms)
{
	struct timeval tv;
	int64_t left;

	/* Until a session is usable, no wait outlasts the attempt. */
	if (!c->usable) {
		left = c->deadline_ms - sc_now_ms();
		if (left < 0)
			left = 0;
		if ((int64_t)ms > left)
			ms = (unsigned)left;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
}

static void
sc_enter(struct smtp_client *c, enum sc_state st)
{
	const struct smtp_client_env *e = c->env;

	log_trace(TRACE_SMTP, "smtp-out %s %s -> %s", c->remote,
		  sc_names[c->state], sc_names[st]);
	c->state = st;
	switch (st) {
	case SC_GREETING:
		c->nsessions++; /* the server accepted: a session */
		sc_timer(c, e->greeting_timeout_ms);
		break;
	case SC_CONNECT:
	case SC_TLS:
		sc_timer(c, e->connect_timeout_ms);
		break;
	case SC_IDLE:
		evtimer_del(c->timer);
		break;
	case SC_RESOLVE:
	case SC_DEAD:
		evtimer_del(c->timer);
		break;
	default:
		sc_timer(c, e->command_timeout_ms);
		break;
	}
}

/* Diagnostics about C leave out its transaction's addresses
 * (mta/core/scrub.h): enter that context; scrub_ctx_leave(returned) after
 * the line. */
static const struct scrub_ctx *
sc_log_enter(const struct smtp_client *c)
{
	return scrub_ctx_enter(c->job != NULL ? &c->job->scrub : NULL);
}

static void sc_vwrite(struct smtp_client *c, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
sc_vwrite(struct smtp_client *c, const char *fmt, va_list ap)
{
	va_list ap2;

	va_copy(ap2, ap);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	if (log_trace_enabled(TRACE_SMTP)) {
		char buf[512], esc[600];
		const struct scrub_ctx *prev;

		vsnprintf(buf, sizeof(buf), fmt, ap2);
		prev = sc_log_enter(c);
		log_trace(TRACE_SMTP, "smtp-out %s >>> %s", c->remote,
			  log_escape(esc, sizeof(esc), buf, strlen(buf)));
		scrub_ctx_leave(prev);
	}
	va_end(ap2);
}

static void sc_write(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Write bytes no reply answers (QUIT as we hang up, the body). */
static void
sc_write(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sc_vwrite(c, fmt, ap);
	va_end(ap);
}

/* Room for N more commands awaiting replies.  0, or -1 (out of memory). */
static int
sc_pend_reserve(struct smtp_client *c, unsigned n)
{
	struct sc_cmd *p;
	unsigned cap;

	if (c->pend_len == 0)
		c->pend_head = 0;
	if (c->pend_head + c->pend_len + n <= c->pend_cap)
		return 0;
	if (c->pend_head > 0) {
		memmove(c->pend, c->pend + c->pend_head,
			c->pend_len * sizeof(*c->pend));
		c->pend_head = 0;
		if (c->pend_len + n <= c->pend_cap)
			return 0;
	}
	cap = c->pend_len + n + 4;
	if ((p = realloc(c->pend, cap * sizeof(*p))) == NULL)
		return -1;
	c->pend = p;
	c->pend_cap = cap;
	return 0;
}

/* The command of STAGE was just written: its reply is now awaited.  Room
 * was reserved (sc_pend_reserve) before the transaction or is the spare
 * kept for the one command of a session step. */
static void
sc_pend_push(struct smtp_client *c, enum outcome_stage stage, unsigned rcpt)
{
	if (sc_pend_reserve(c, 1) != 0)
		panic("no room for a command reserved in advance");
	c->pend[c->pend_head + c->pend_len].stage = stage;
	c->pend[c->pend_head + c->pend_len].rcpt = rcpt;
	c->pend_len++;
}

/* The command the reply being read answers (the queue is not empty). */
static struct sc_cmd
sc_pend_pop(struct smtp_client *c)
{
	struct sc_cmd cmd = c->pend[c->pend_head];

	c->pend_head++;
	if (--c->pend_len == 0)
		c->pend_head = 0;
	return cmd;
}

static void sc_send(struct smtp_client *c, enum outcome_stage stage,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Write a command whose reply will be awaited (one line, CRLF in FMT). */
static void
sc_send(struct smtp_client *c, enum outcome_stage stage, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sc_vwrite(c, fmt, ap);
	va_end(ap);
	sc_pend_push(c, stage, 0);
}

static void
sc_close_socket(struct smtp_client *c)
{
	SSL *ssl;

	if (c->bev != NULL) {
		/* A close_notify (once, never waited for): OpenSSL marks the
		 * session of a TLS connection freed without one as not
		 * resumable, and that session is the one kept for the next
		 * connection to this host (sc_tls_session_cb). */
		if (c->tls &&
		    (ssl = bufferevent_openssl_get_ssl(c->bev)) != NULL)
			(void)SSL_shutdown(ssl);
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->fd >= 0) {
		evutil_closesocket(c->fd);
		c->fd = -1;
	}
	c->tls = false;
	c->tls_verified = false;
	/* Nothing is awaited from a connection that is gone. */
	c->pend_len = c->pend_head = 0;
	c->rlines = 0;
}

static void
sc_free(struct smtp_client *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		sc_all = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	sc_close_socket(c);
	if (c->dq != NULL)
		dns_cancel(c->dq);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->kick != NULL)
		event_free(c->kick);
	free(c->addrs);
	free(c->accepted);
	free(c->pend);
	free(c);
}

/*
 * Every entry point (libevent callback, DNS callback, owner's call) is
 * bracketed by sc_hold()/sc_release(): a client that dies inside one is
 * only freed when the outermost returns, so no frame touches freed memory.
 */
static void
sc_hold(struct smtp_client *c)
{
	c->depth++;
}

static void
sc_release(struct smtp_client *c)
{
	if (--c->depth == 0 && c->state == SC_DEAD)
		sc_free(c);
}

/* The end: close, tell the owner.  FAILED: never became usable. */
static void
sc_finish(struct smtp_client *c, bool failed)
{
	if (c->state == SC_DEAD)
		return;
	c->state = SC_DEAD;
	evtimer_del(c->timer);
	evtimer_del(c->kick);
	sc_close_socket(c);
	if (c->dq != NULL) {
		dns_cancel(c->dq);
		c->dq = NULL;
	}
	c->cb->closed(c, failed, c->fail_stage, c->fail_code,
		      c->fail_text[0] ? c->fail_text : NULL, c->cbarg);
}

/* The outcome stage a failure now belongs to: the command whose reply is
 * awaited, else what the state is doing. */
static enum outcome_stage
sc_stage(const struct smtp_client *c)
{
	if (c->pend_len > 0)
		return c->pend[c->pend_head].stage;
	switch (c->state) {
	case SC_RESOLVE:
	case SC_CONNECT:
		return OS_CONNECT;
	case SC_GREETING:
		return OS_GREETING;
	case SC_STARTTLS:
		return OS_STARTTLS;
	case SC_TLS:
		return OS_TLS;
	case SC_HELO:
		return OS_HELO;
	case SC_TXN:
		return OS_EOM;
	case SC_RSET:
		return OS_RSET;
	case SC_QUIT:
	case SC_IDLE:
	case SC_DEAD:
		return OS_QUIT;
	default:
		return OS_EHLO;
	}
}

/* Results ------------------------------------------------------------- */

static void
sc_result(struct smtp_client_job *job, unsigned i, enum outcome_stage stage,
	  int code, const char *text)
{
	struct smtp_client_result *r = &job->res[i];

	if (r->code != 0 || r->text != NULL)
		return; /* the first answer for a recipient stands */
	r->stage = stage;
	r->code = code;
	r->text = strdup(text != NULL ? text : "");
}

/* Give every recipient still without a result this one. */
static void
sc_result_rest(struct smtp_client_job *job, enum outcome_stage stage, int code,
	       const char *text)
{
	unsigned i;

	for (i = 0; i < job->nrcpt; i++)
		sc_result(job, i, stage, code, text);
}

/* Forget every result of JOB's transaction: once the dialogue is out of
 * step, no reply of it can be trusted to answer the command it seemed to. */
static void
sc_result_reset(struct smtp_client_job *job)
{
	unsigned i;

	for (i = 0; i < job->nrcpt; i++) {
		free(job->res[i].text);
		job->res[i].text = NULL;
		job->res[i].code = 0;
	}
}

/* The local address of C's socket, as text ("" if unknown). */
static void
sc_local_addr(struct smtp_client *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	evutil_socket_t fd = c->bev != NULL ? bufferevent_getfd(c->bev) : -1;

	buf[0] = '\0';
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf,
			  (socklen_t)len);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
			  buf, (socklen_t)len);
}

/* The transaction is over: hand the job back. */
static void
sc_job_finish(struct smtp_client *c)
{
	struct smtp_client_job *job = c->job;

	c->job = NULL;
	snprintf(job->remote, sizeof(job->remote), "%s", c->remote);
	snprintf(job->mx_host, sizeof(job->mx_host), "%s", sc_host(c));
	snprintf(job->mx_ip, sizeof(job->mx_ip), "%s", c->ip);
	sc_local_addr(c, job->source, sizeof(job->source));
	job->tls_verified = -1;
	job->tls_version[0] = job->tls_cipher[0] = '\0';
	if (c->tls && c->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		snprintf(job->tls_version, sizeof(job->tls_version), "%s",
			 SSL_get_version(ssl));
		snprintf(job->tls_cipher, sizeof(job->tls_cipher), "%s",
			 SSL_get_cipher_name(ssl));
		job->tls_verified = c->tls_verified;
		snprintf(job->tls, sizeof(job->tls), "%s %s%s",
			 job->tls_version, job->tls_cipher,
			 c->tls_verified ? " verified" : "");
	} else {
		job->tls[0] = '\0';
	}
	free(c->accepted);
	c->accepted = NULL;
	c->cb->done(c, job, c->cbarg);
}

/* A failure that ends the connection.  A job in flight gets the failure
 * as its result; a connection not yet usable moves on to the next target. */
static void
sc_fail(struct smtp_client *c, enum outcome_stage stage, int code,
	const char *text)
{
	if (c->job != NULL) {
		sc_result_rest(c->job, stage, code, text);
		sc_job_finish(c);
	}
	if (!c->usable || c->state == SC_STARTTLS || c->state == SC_TLS) {
		sc_host_failed(c, stage, code, text);
		return;
	}
	c->fail_stage = stage;
	c->fail_code = code;
	snprintf(c->fail_text, sizeof(c->fail_text), "%s", text);
	sc_finish(c, false);
}

/*
 * The dialogue is out of step (a reply the command cannot get, a reply
 * with nothing outstanding, a malformed or oversized reply): close the
 * connection; what was in flight is deferred (outcome_classify says 4.5.0
 * for STAGE/CODE, or for code 0 the "4.5.0" that starts our text).
 */
static void
sc_protocol_error(struct smtp_client *c, enum outcome_stage stage, int code,
		  const char *why)
{
	char text[SC_REPLY_TEXT_MAX + 64], esc[600];

	log_warnx("smtp-out %s: protocol error at %s: %s%s%s", c->remote,
		  outcome_stage_name(stage), why, code != 0 ? ": " : "",
		  code != 0
		      ? log_escape(esc, sizeof(esc), c->rtext, strlen(c->rtext))
		      : "");
	if (code != 0)
		snprintf(text, sizeof(text), "%s", c->rtext);
	else
		snprintf(text, sizeof(text),
			 OUTCOME_PROTOCOL_STATUS " protocol error: %s", why);
	if (c->job != NULL)
		sc_result_reset(c->job);
	sc_fail(c, stage, code, text);
}

/* Connecting ---------------------------------------------------------- */

static bool
sc_addr_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)
				  ->sin_addr.s_addr) >>
			24) == 127;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

/* This host cannot be used: remember why, try the next one. */
static void
sc_host_failed(struct smtp_client *c, enum outcome_stage stage, int code,
	       const char *text)
{
	char esc[300];
	const struct scrub_ctx *prev;

	prev = sc_log_enter(c);
	if (code != 0)
		log_info("smtp-out %s: %s failed: %d %s", c->remote,
			 outcome_stage_name(stage), code,
			 log_escape(esc, sizeof(esc), text, strlen(text)));
	else
		log_info("smtp-out %s: %s failed: %s", c->remote,
			 outcome_stage_name(stage),
			 log_escape(esc, sizeof(esc), text, strlen(text)));
	scrub_ctx_leave(prev);
	c->fail_stage = stage;
	c->fail_code = code;
	snprintf(c->fail_text, sizeof(c->fail_text), "%s", text);
	sc_close_socket(c);
	c->addr_idx++;
	c->usable = false;
	sc_connect_next(c);
}

static void sc_event_cb(struct bufferevent *bev, short what, void *arg);
static void sc_read_cb(struct bufferevent *bev, void *arg);

static void
sc_connect_addr(struct smtp_client *c)
{
	struct sockaddr_storage sa = c->addrs[c->addr_idx];
	socklen_t len;
	evutil_socket_t fd;
	char err[200];

	if (sa.ss_family == AF_INET) {
		((struct sockaddr_in *)&sa)->sin_port = htons(c->t.port);
		len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&sa)->sin6_port = htons(c->t.port);
		len = sizeof(struct sockaddr_in6);
	}
	inet_ntop(sa.ss_family,
		  sa.ss_family == AF_INET
		      ? (void *)&((struct sockaddr_in *)&sa)->sin_addr
		      : (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr,
		  c->ip, sizeof(c->ip));
	snprintf(c->remote, sizeof(c->remote), "%s[%s]:%u", sc_host(c), c->ip,
		 c->t.port);
	if (c->env->loopback_only && !sc_addr_loopback(&sa)) {
		/* Test safety: this build is pointed at loopback only. */
		sc_host_failed(
		    c, OS_CONNECT, 0,
		    "non-loopback destination refused (loopback_only)");
		return;
	}
	fd =
	    socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, sizeof(err), "socket: %s", strerror(errno));
		sc_host_failed(c, OS_CONNECT, 0, err);
		return;
	}
	if (c->t.has_source && c->t.source.ss_family == sa.ss_family &&
	    bind(fd, (struct sockaddr *)&c->t.source,
		 c->t.source.ss_family == AF_INET
		     ? sizeof(struct sockaddr_in)
		     : sizeof(struct sockaddr_in6)) != 0) {
		snprintf(err, sizeof(err), "bind to the pool source: %s",
			 strerror(errno));
		evutil_closesocket(fd);
		sc_host_failed(c, OS_CONNECT, 0, err);
		return;
	}
	/* Replies and pipelined commands are small writes; without this,
	 * Nagle and the peer's delayed ACK stall every TLS transaction. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 },
			 sizeof(int));
	c->fd = fd;
	c->bev = bufferevent_socket_new(c->env->base, fd, 0);
	if (c->bev == NULL) {
		sc_host_failed(c, OS_CONNECT, 0, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, sc_read_cb, NULL, sc_event_cb, c);
	sc_enter(c, SC_CONNECT);
	sc_pend_push(c, OS_GREETING, 0); /* the banner is the first reply */
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa,
				       (int)len) != 0) {
		snprintf(err, sizeof(err), "connect: %s", strerror(errno));
		sc_host_failed(c, OS_CONNECT, 0, err);
		return;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void sc_addr_result(struct smtp_client *c,
			   const struct dns_addr_reply *reply);

static void
sc_addr_cb(const struct dns_addr_reply *reply, void *arg)
{
	struct smtp_client *c = arg;

	sc_hold(c);
	sc_addr_result(c, reply);
	sc_release(c);
}

static void
sc_addr_result(struct smtp_client *c, const struct dns_addr_reply *reply)
{
	char err[200];

	c->dq = NULL;
	free(c->addrs);
	c->addrs = NULL;
	c->naddrs = 0;
	c->addr_idx = 0;
	if (reply->result != DNS_OK || reply->naddrs == 0) {
		snprintf(c->remote, sizeof(c->remote), "%s", sc_host(c));
		snprintf(err, sizeof(err), "address lookup: %s%s%s",
			 dns_result_str(reply->result),
			 reply->err[0] ? ": " : "", reply->err);
		c->fail_stage = OS_CONNECT;
		c->fail_code = 0;
		snprintf(c->fail_text, sizeof(c->fail_text), "%s", err);
		c->host_idx++;
		sc_connect_next(c);
		return;
	}
	c->addrs = malloc(reply->naddrs * sizeof(*c->addrs));
	if (c->addrs == NULL) {
		c->host_idx++;
		sc_connect_next(c);
		return;
	}
	memcpy(c->addrs, reply->addrs, reply->naddrs * sizeof(*c->addrs));
	c->naddrs = reply->naddrs;
	/* The lookup took time: the deadline may have passed meanwhile. */
	if (sc_attempt_over(c)) {
		sc_finish(c, true);
		return;
	}
	c->ntried++;
	sc_connect_addr(c);
}

/* A route's host given as an IP address: no lookup.  True if handled. */
static bool
sc_literal(struct smtp_client *c, const char *host)
{
	struct sockaddr_storage ss;
	char buf[64];
	size_t n = strlen(host);

	memset(&ss, 0, sizeof(ss));
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' &&
	    n - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) ==
	    1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, host,
			   &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return false;
	free(c->addrs);
	if ((c->addrs = malloc(sizeof(*c->addrs))) == NULL) {
		c->naddrs = 0;
		c->host_idx++;
		sc_connect_next(c);
		return true;
	}
	c->addrs[0] = ss;
	c->naddrs = 1;
	c->addr_idx = 0;
	c->ntried++;
	sc_connect_addr(c);
	return true;
}

/* No new address with less than this left of the attempt (a timer cut to
 * the deadline may fire a little before it). */
#define SC_ATTEMPT_SLACK_MS 100

/*
 * Has this attempt used what it may (Postfix smtp_mx_address_limit,
 * smtp_mx_session_limit, and a deadline)?  A site of many hosts with many
 * addresses, all dead or tarpits, must not keep one attempt going for
 * ever.  Says so once, and adds it to the reason the jobs get.
 */
static bool
sc_attempt_over(struct smtp_client *c)
{
	const char *limit;
	size_t n;

	if (c->ntried >= c->t.max_mx_addresses)
		limit = "max_mx_addresses";
	else if (c->nsessions >= c->t.max_mx_sessions)
		limit = "max_mx_sessions";
	else if (sc_now_ms() + SC_ATTEMPT_SLACK_MS >= c->deadline_ms)
		limit = "attempt_timeout";
	else
		return false;
	/* Nothing left to try anyway: no need to say more. */
	if (!(c->addrs != NULL && c->addr_idx < c->naddrs) &&
	    (c->addrs != NULL ? c->host_idx + 1 : c->host_idx) >= c->t.nhosts)
		return false;
	log_info("smtp-out %s: attempt ended after %u address(es) and %u "
		 "session(s): %s reached",
		 c->t.hosts[0].name, c->ntried, c->nsessions, limit);
	n = strlen(c->fail_text);
	snprintf(c->fail_text + n, sizeof(c->fail_text) - n,
		 " (attempt ended: %s reached)", limit);
	return true;
}

/* The next address of this host, or the next host, or give up. */
static void
sc_connect_next(struct smtp_client *c)
{
	if (sc_attempt_over(c)) {
		sc_finish(c, true);
		return;
	}
	if (c->addrs != NULL && c->addr_idx < c->naddrs) {
		c->ntried++;
		sc_connect_addr(c);
		return;
	}
	if (c->addrs != NULL) {
		free(c->addrs);
		c->addrs = NULL;
		c->naddrs = 0;
		c->host_idx++;
	}
	if (c->host_idx >= c->t.nhosts) {
		sc_finish(c, true);
		return;
	}
	c->in_clear = false;
	if (sc_literal(c, sc_host(c)))
		return;
	if (c->env->dns == NULL) {
		c->fail_stage = OS_CONNECT;
		c->fail_code = 0;
		snprintf(c->fail_text, sizeof(c->fail_text),
			 "no DNS resolver to look up %s", sc_host(c));
		c->host_idx++;
		sc_connect_next(c);
		return;
	}
	sc_enter(c, SC_RESOLVE);
	c->dq =
	    dns_addr_lookup(c->env->dns, sc_host(c), AF_UNSPEC, sc_addr_cb, c);
}

/* Session set-up ------------------------------------------------------ */

/* The name we greet with. */
static const char *
sc_helo_name(const struct smtp_client *c)
{
	return c->t.ehlo;
}

static void
sc_ehlo(struct smtp_client *c)
{
	c->caps = 0;
	c->size_max = 0;
	sc_send(c, OS_EHLO, "EHLO %s\r\n", sc_helo_name(c));
	sc_enter(c, SC_EHLO);
}

static const struct sc_keyword {
	const char *name;
	unsigned cap;
} sc_keywords[] = {
	{ "PIPELINING", CAP_PIPELINING }, { "8BITMIME", CAP_8BITMIME },
	{ "SMTPUTF8", CAP_SMTPUTF8 },     { "STARTTLS", CAP_STARTTLS },
	{ "CHUNKING", CAP_CHUNKING },     { "SIZE", CAP_SIZE },
};

/* "SIZE 12345": the limit, 0 if none is given or it is not a number. */
static uint64_t
sc_size_param(const char *p)
{
	uint64_t v = 0;

	if (*p++ != ' ')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return *p == '\0' || *p == ' ' ? v : 0;
}

/* One keyword line of an EHLO reply (every line after the first, however
 * long the reply: SC_REPLY_MAX_BYTES bounds it). */
static void
sc_ehlo_keyword(struct smtp_client *c, const char *kw)
{
	size_t n = strcspn(kw, " "), i;

	for (i = 0; i < sizeof(sc_keywords) / sizeof(sc_keywords[0]); i++) {
		if (strlen(sc_keywords[i].name) != n ||
		    strncasecmp(kw, sc_keywords[i].name, n) != 0)
			continue;
		c->rcaps |= sc_keywords[i].cap;
		if (sc_keywords[i].cap == CAP_SIZE)
			c->rsize = sc_size_param(kw + n);
		return;
	}
}

static enum conf_tls_policy
sc_policy(const struct smtp_client *c)
{
	return c->t.tls;
}

static void
sc_ready(struct smtp_client *c)
{
	c->usable = true;
	sc_enter(c, SC_IDLE);
	c->cb->ready(c, c->cbarg);
}

/* EHLO answered 250: STARTTLS if we should, else ready. */
static void
sc_after_ehlo(struct smtp_client *c)
{
	enum conf_tls_policy pol = sc_policy(c);
	struct smtp_client_host *h = &c->t.hosts[c->host_idx];

	if (c->tls || pol == CONF_TLSP_NONE || c->in_clear) {
		sc_ready(c);
		return;
	}
	if (!(c->caps & CAP_STARTTLS)) {
		if (pol == CONF_TLSP_MAY) {
			sc_ready(c);
			return;
		}
		sc_write(c, "QUIT\r\n");
		sc_host_failed(
		    c, OS_STARTTLS, 0,
		    "TLS required by policy but STARTTLS not offered");
		return;
	}
	if (pol == CONF_TLSP_MAY && h->notls_until_ms > sc_now_ms()) {
		sc_ready(c);
		return;
	}
	sc_send(c, OS_STARTTLS, "STARTTLS\r\n");
	sc_enter(c, SC_STARTTLS);
}

static void
sc_tls_begin(struct smtp_client *c)
{
	struct smtp_client_host *h = &c->t.hosts[c->host_idx];
	SSL *ssl;

	if ((ssl = SSL_new(c->env->ssl_ctx)) == NULL) {
		sc_fail(c, OS_TLS, 0, "SSL_new failed");
		return;
	}
	/* SNI and the name to verify: the MX host name (RFC 7672 style
	 * would want DANE; here verification is recorded, per policy). */
	SSL_set_tlsext_host_name(ssl, h->name);
	SSL_set1_host(ssl, h->name);
	if (h->session != NULL)
		SSL_set_session(ssl, h->session);
	SSL_set_app_data(ssl, c); /* for sc_tls_session_cb */
	/* Anything the server sent after 220 and before the handshake is
	 * dropped with the plain bufferevent (mirror of CVE-2011-0411). */
	bufferevent_free(c->bev);
	c->bev = bufferevent_openssl_socket_new(c->env->base, c->fd, ssl,
						BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		SSL_free(ssl);
		sc_fail(c, OS_TLS, 0, "TLS set-up failed");
		return;
	}
	c->fd = -1;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, sc_read_cb, NULL, sc_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	sc_enter(c, SC_TLS);
}

/*
 * A session the server lets us resume: kept per MX host for the next
 * connection.  TLS 1.3 sends its tickets after the handshake (read with the
 * EHLO reply), so they are taken here, not at the handshake's end.  Returns
 * 1: the session is ours (OpenSSL's reference passes to the host).
 */
static int
sc_tls_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct smtp_client *c = SSL_get_app_data(ssl);
	struct smtp_client_host *h;

	if (c == NULL || c->host_idx >= c->t.nhosts)
		return 0;
	h = &c->t.hosts[c->host_idx];
	if (h->session != NULL)
		SSL_SESSION_free(h->session);
	h->session = sess;
	return 1;
}

void
smtp_client_tls_init(SSL_CTX *ctx)
{
	SSL_CTX_sess_set_new_cb(ctx, sc_tls_session_cb);
}

static void
sc_tls_done(struct smtp_client *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

	c->tls = true;
	c->tls_verified = SSL_get_verify_result(ssl) == X509_V_OK;
	STATS_INC(tls_handshakes);
	log_debug("smtp-out %s: %s %s%s%s", c->remote, SSL_get_version(ssl),
		  SSL_get_cipher_name(ssl),
		  c->tls_verified ? ", certificate verified" : ", not verified",
		  SSL_session_reused(ssl) ? ", resumed" : "");
	if (sc_policy(c) == CONF_TLSP_VERIFY && !c->tls_verified) {
		char why[200];

		snprintf(
		    why, sizeof(why),
		    "certificate verification failed: "
		    "%s",
		    X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
		sc_write(c, "QUIT\r\n");
		sc_host_failed(c, OS_TLS, 0, why);
		return;
	}
	sc_ehlo(c);
}

/* tls=may and the handshake failed: this host goes in clear for a while;
 * reconnect to the same address without STARTTLS. */
static void
sc_tls_failed(struct smtp_client *c, const char *why)
{
	struct smtp_client_host *h = &c->t.hosts[c->host_idx];

	STATS_INC(tls_failures);
	if (sc_policy(c) != CONF_TLSP_MAY) {
		sc_host_failed(c, OS_TLS, 0, why);
		return;
	}
	log_info("smtp-out %s: TLS handshake failed (%s); retrying in clear "
		 "text (tls=may)",
		 c->remote, why);
	h->notls_until_ms = sc_now_ms() + SC_NOTLS_MS;
	sc_close_socket(c);
	c->in_clear = true;
	sc_connect_addr(c);
}

/* The transaction ----------------------------------------------------- */

/* The body, dot-stuffed, then the final dot (DATA). */
static void
sc_write_body_data(struct smtp_client *c, const uint8_t *p, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const uint8_t *end = p + len, *line = p, *nl;

	while (line < end) {
		nl = memchr(line, '\n', (size_t)(end - line));
		nl = nl == NULL ? end : nl + 1;
		if (*line == '.')
			evbuffer_add(out, ".", 1);
		evbuffer_add(out, line, (size_t)(nl - line));
		line = nl;
	}
	if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n')
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
}

/* Send the command at the send cursor (and, pipelining, the ones after, up
 * to DATA or BDAT LAST: RFC 2920 3.1).  The body of DATA goes only after
 * its 354 (sc_send_body). */
static void
sc_send_next(struct smtp_client *c)
{
	struct smtp_client_job *job = c->job;
	bool pipelining = (c->caps & CAP_PIPELINING) != 0;
	unsigned n = job->nrcpt;

	while (c->sent < c->ncmds) {
		unsigned i = c->sent;

		if (!pipelining && c->pend_len > 0)
			return; /* one command at a time */
		if (!pipelining && i > 0 &&
		    (!c->mail_ok || (i == n + 1 && c->rcpt_ok == 0))) {
			/* Nothing left worth sending in this transaction. */
			c->sent = c->ncmds;
			c->need_rset = true;
			return;
		}
		if (i == 0) {
			char size[40] = "";

			if (c->caps & CAP_SIZE)
				snprintf(size, sizeof(size), " SIZE=%zu",
					 job->body_len);
			sc_send(c, OS_MAIL, "MAIL FROM:<%s>%s%s%s\r\n",
				job->sender, size,
				job->eightbit && (c->caps & CAP_8BITMIME)
				    ? " BODY=8BITMIME"
				    : "",
				job->smtputf8 ? " SMTPUTF8" : "");
		} else if (i <= n) {
			sc_send(c, OS_RCPT, "RCPT TO:<%s>\r\n",
				job->rcpts[i - 1]);
			/* its reply is this recipient's */
			c->pend[c->pend_head + c->pend_len - 1].rcpt = i - 1;
		} else if (c->bdat) {
			sc_send(c, OS_EOM, "BDAT %zu LAST\r\n", job->body_len);
			evbuffer_add(bufferevent_get_output(c->bev), job->body,
				     job->body_len);
		} else {
			sc_send(c, OS_DATA, "DATA\r\n");
		}
		c->sent++;
	}
}

/* DATA got its 354: the body, then the end of data, whose reply is the one
 * that delivers. */
static void
sc_send_body(struct smtp_client *c)
{
	sc_write_body_data(c, c->job->body, c->job->body_len);
	sc_pend_push(c, OS_EOM, 0);
	sc_timer(c, c->env->data_timeout_ms);
}

static void smtp_client_start(struct smtp_client *c,
			      struct smtp_client_job *job);

void
smtp_client_send(struct smtp_client *c, struct smtp_client_job *job)
{
	sc_hold(c);
	smtp_client_start(c, job);
	sc_release(c);
}

static void
smtp_client_start(struct smtp_client *c, struct smtp_client_job *job)
{
	char why[200];

	c->job = job;
	c->msgs++;
	/* What this host cannot take is decided here, before sending. */
	if (job->smtputf8 && !(c->caps & CAP_SMTPUTF8)) {
		sc_result_rest(
		    job, OS_LOCAL, 554,
		    "5.6.7 the receiving host does not support SMTPUTF8, "
		    "which this message needs");
		sc_job_finish(c);
		sc_kick(c);
		return;
	}
	if (job->eightbit && !(c->caps & CAP_8BITMIME)) {
		sc_result_rest(
		    job, OS_LOCAL, 554,
		    "5.6.3 the receiving host does not support 8BITMIME and "
		    "the message has 8-bit content");
		sc_job_finish(c);
		sc_kick(c);
		return;
	}
	if ((c->caps & CAP_SIZE) && c->size_max > 0 &&
	    job->body_len > c->size_max) {
		snprintf(why, sizeof(why),
			 "5.3.4 message size %zu exceeds the "
			 "receiving host's limit of %" PRIu64,
			 job->body_len, c->size_max);
		sc_result_rest(job, OS_LOCAL, 554, why);
		sc_job_finish(c);
		sc_kick(c);
		return;
	}
	c->accepted = calloc(job->nrcpt, sizeof(*c->accepted));
	if (c->accepted == NULL || sc_pend_reserve(c, job->nrcpt + 3) != 0) {
		sc_result_rest(job, OS_LOCAL, 451, "4.3.0 out of memory");
		sc_job_finish(c);
		sc_kick(c);
		return;
	}
	c->bdat = (c->caps & CAP_CHUNKING) != 0;
	c->ncmds = 1 + job->nrcpt + 1;
	c->sent = 0;
	c->mail_ok = false;
	c->rcpt_ok = 0;
	sc_enter(c, SC_TXN);
	sc_send_next(c);
}

/* One reply of the transaction: CMD is the command it answers, KIND what
 * outcome_reply() made of it (never OR_PROTOCOL: handled before). */
static void
sc_txn_reply(struct smtp_client *c, const struct sc_cmd *cmd,
	     enum outcome_reply kind)
{
	struct smtp_client_job *job = c->job;
	bool ok = kind == OR_OK;
	unsigned k;

	switch (cmd->stage) {
	case OS_MAIL:
		c->mail_ok = ok;
		if (!ok)
			sc_result_rest(job, OS_MAIL, c->rcode, c->rtext);
		break;
	case OS_RCPT:
		if (!c->mail_ok)
			break; /* every recipient has MAIL's answer */
		if (ok) {
			c->accepted[cmd->rcpt] = true;
			c->rcpt_ok++;
		} else {
			sc_result(job, cmd->rcpt, OS_RCPT, c->rcode, c->rtext);
		}
		break;
	case OS_DATA:
		if (ok && c->rcpt_ok > 0) {
			sc_send_body(c);
			return;
		}
		if (ok) {
			/* Nobody to deliver to, yet the server wants data:
			 * an empty message end, its result ignored. */
			evbuffer_add(bufferevent_get_output(c->bev), ".\r\n",
				     3);
			sc_pend_push(c, OS_EOM, 0);
			c->need_rset = true;
			return;
		}
		if (c->rcpt_ok > 0)
			sc_result_rest(job, OS_DATA, c->rcode, c->rtext);
		c->need_rset = true;
		break;
	case OS_EOM:
		if (c->rcpt_ok == 0) {
			c->need_rset = true;
			break;
		}
		for (k = 0; k < job->nrcpt; k++)
			if (c->accepted[k])
				sc_result(job, k, OS_EOM, c->rcode, c->rtext);
		break;
	default:
		panic("stage %s in a transaction",
		      outcome_stage_name(cmd->stage));
	}
	sc_send_next(c);
	if (c->pend_len > 0) {
		sc_timer(c, c->env->command_timeout_ms);
		return;
	}
	/* Every recipient has its answer; one without would be a bug of
	 * ours, and it is deferred, never taken as delivered. */
	sc_result_rest(job, OS_EOM, 0,
		       OUTCOME_PROTOCOL_STATUS " no reply for this recipient");
	sc_job_finish(c);
	if (c->state == SC_DEAD)
		return;
	if (c->need_rset) {
		c->need_rset = false;
		sc_send(c, OS_RSET, "RSET\r\n");
		sc_enter(c, SC_RSET);
		return;
	}
	sc_enter(c, SC_IDLE);
	c->cb->ready(c, c->cbarg);
}

/* Replies ------------------------------------------------------------- */

/* A complete reply to CMD, not a protocol error (KIND).  One switch over
 * every command outside a transaction, kept whole so that what each reply
 * leads to reads in one place (80 lines). */
static void
sc_reply(struct smtp_client *c, const struct sc_cmd *cmd,
	 enum outcome_reply kind)
{
	switch (cmd->stage) {
	case OS_GREETING:
		if (kind != OR_OK) {
			sc_write(c, "QUIT\r\n");
			sc_host_failed(c, OS_GREETING, c->rcode, c->rtext);
			return;
		}
		sc_ehlo(c);
		return;
	case OS_EHLO:
		if (kind == OR_OK) {
			c->caps = c->rcaps;
			c->size_max = c->rsize;
			sc_after_ehlo(c);
			return;
		}
		if (c->rcode == 421) {
			sc_host_failed(c, OS_EHLO, c->rcode, c->rtext);
			return;
		}
		/* An old server: HELO, and no extension at all. */
		sc_send(c, OS_HELO, "HELO %s\r\n", sc_helo_name(c));
		sc_enter(c, SC_HELO);
		return;
	case OS_HELO:
		if (kind != OR_OK) {
			sc_write(c, "QUIT\r\n");
			sc_host_failed(c, OS_HELO, c->rcode, c->rtext);
			return;
		}
		c->caps = 0;
		if (sc_policy(c) == CONF_TLSP_ENCRYPT ||
		    sc_policy(c) == CONF_TLSP_VERIFY) {
			sc_write(c, "QUIT\r\n");
			sc_host_failed(
			    c, OS_STARTTLS, 0,
			    "TLS required by policy but the server has no "
			    "ESMTP");
			return;
		}
		sc_ready(c);
		return;
	case OS_STARTTLS:
		if (kind == OR_OK) {
			sc_tls_begin(c);
			return;
		}
		if (sc_policy(c) == CONF_TLSP_MAY) {
			/* Refused: carry on in clear on this connection. */
			c->t.hosts[c->host_idx].notls_until_ms =
			    sc_now_ms() + SC_NOTLS_MS;
			sc_ready(c);
			return;
		}
		sc_write(c, "QUIT\r\n");
		sc_host_failed(c, OS_STARTTLS, c->rcode, c->rtext);
		return;
	case OS_MAIL:
	case OS_RCPT:
	case OS_DATA:
	case OS_EOM:
		sc_txn_reply(c, cmd, kind);
		return;
	case OS_RSET:
		if (kind != OR_OK) {
			sc_fail(c, OS_RSET, c->rcode, c->rtext);
			return;
		}
		sc_enter(c, SC_IDLE);
		c->cb->ready(c, c->cbarg);
		return;
	case OS_QUIT:
		sc_finish(c, false);
		return;
	default:
		panic("reply to stage %s", outcome_stage_name(cmd->stage));
	}
}

/* The last line of a reply is in: match it to the command it answers. */
static void
sc_reply_done(struct smtp_client *c, struct evbuffer *in)
{
	struct sc_cmd cmd = sc_pend_pop(c);
	enum outcome_reply kind = outcome_reply(cmd.stage, c->rcode);
	char why[100];

	if (c->pend_len == 0 && evbuffer_get_length(in) > 0) {
		/* Nothing else was asked: what follows answers nothing, and
		 * would pair with the next command (or, after STARTTLS, be
		 * taken for the encrypted server's words). */
		snprintf(why, sizeof(why),
			 "unsolicited data after the reply "
			 "to %s",
			 outcome_stage_name(cmd.stage));
		sc_protocol_error(c, cmd.stage, 0, why);
		return;
	}
	if (kind == OR_PROTOCOL) {
		snprintf(why, sizeof(why), "reply %03d cannot answer %s",
			 c->rcode, outcome_stage_name(cmd.stage));
		sc_protocol_error(c, cmd.stage, c->rcode, why);
		return;
	}
	if (cmd.stage == OS_EOM && kind == OR_OK && c->bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		/* Accepted before the end of the message left us. */
		sc_protocol_error(c, cmd.stage, 0,
				  "end of data accepted before it was sent");
		return;
	}
	sc_reply(c, &cmd, kind);
}

/*
 * One line of a reply (LINE, N bytes with its CRLF).  Strict: CRLF only,
 * three digits then ' ', '-' or the end, one code for every line of a
 * reply, the reply within SC_REPLY_MAX_BYTES, and a command awaiting it.
 * Returns false once the connection is given up.
 */
static bool
sc_reply_line(struct smtp_client *c, char *line, size_t n, struct evbuffer *in)
{
	int code;

	if (n < 2 || line[n - 2] != '\r') {
		sc_protocol_error(c, sc_stage(c), 0, "bare LF in a reply");
		return false;
	}
	n -= 2;
	line[n] = '\0';
	if (log_trace_enabled(TRACE_SMTP)) {
		char esc[600];
		const struct scrub_ctx *prev;

		prev = sc_log_enter(c);
		log_trace(TRACE_SMTP, "smtp-out %s <<< %s", c->remote,
			  log_escape(esc, sizeof(esc), line, n));
		scrub_ctx_leave(prev);
	}
	if (memchr(line, '\r', n) != NULL || memchr(line, '\0', n) != NULL) {
		sc_protocol_error(c, sc_stage(c), 0,
				  "bare CR or NUL in a reply");
		return false;
	}
	if (c->pend_len == 0) {
		if (c->state == SC_IDLE || c->state == SC_QUIT) {
			/* Typically a 421 before the server closes an idle
			 * connection: nothing is in flight. */
			sc_finish(c, false);
			return false;
		}
		sc_protocol_error(c, sc_stage(c), 0,
				  "unsolicited reply (no command awaits one)");
		return false;
	}
	if (n < 3 || line[0] < '0' || line[0] > '9' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (n > 3 && line[3] != ' ' && line[3] != '-')) {
		sc_protocol_error(c, sc_stage(c), 0, "malformed reply line");
		return false;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (c->rlines == 0) {
		c->rcode = code;
		c->rlen = 0;
		c->rtext[0] = '\0';
		c->rbytes = 0;
		c->rcaps = 0;
		c->rsize = 0;
	} else if (code != c->rcode) {
		sc_protocol_error(c, sc_stage(c), 0,
				  "multi-line reply with different codes");
		return false;
	}
	c->rbytes += n + 2;
	if (c->rbytes > SC_REPLY_MAX_BYTES) {
		sc_protocol_error(c, sc_stage(c), 0, "reply too long");
		return false;
	}
	/* Keywords: every line of an EHLO reply after the first. */
	if (c->rlines > 0 && n > 4 && c->pend[c->pend_head].stage == OS_EHLO)
		sc_ehlo_keyword(c, line + 4);
	c->rlines++;
	/* Keep the text, lines joined with \n, as far as it fits. */
	if (n > 4 && c->rlen + 1 < sizeof(c->rtext)) {
		int w = snprintf(c->rtext + c->rlen, sizeof(c->rtext) - c->rlen,
				 "%s%s", c->rlen ? "\n" : "", line + 4);

		/* Cut here: never keep the start of an address. */
		if (w > 0 && c->rlen + (size_t)w >= sizeof(c->rtext))
			(void)scrub_cut(c->rtext, sizeof(c->rtext) - 1);
		if (w > 0)
			c->rlen = c->rlen + (size_t)w >= sizeof(c->rtext)
				      ? sizeof(c->rtext) - 1
				      : c->rlen + (size_t)w;
	}
	if (n > 3 && line[3] == '-')
		return true;
	c->rlines = 0;
	sc_reply_done(c, in);
	return true;
}

/* Read complete reply lines; returns when more input is needed. */
static void
sc_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[SC_REPLY_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t n;

	sc_hold(c);
	/* The banner can be read before the "connected" event is seen. */
	if (c->state == SC_CONNECT)
		sc_enter(c, SC_GREETING);
	while (c->state != SC_DEAD && c->bev == bev) {
		eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
		if (eol.pos < 0) {
			/* The limit holds before waiting for more. */
			if (evbuffer_get_length(in) > SC_REPLY_LINE_MAX)
				sc_protocol_error(c, sc_stage(c), 0,
						  "reply line too long");
			break;
		}
		n = (size_t)eol.pos + 1;
		if (n > SC_REPLY_LINE_MAX) {
			sc_protocol_error(c, sc_stage(c), 0,
					  "reply line too long");
			break;
		}
		evbuffer_remove(in, line, n);
		if (!sc_reply_line(c, line, n, in))
			break;
	}
	sc_release(c);
}

static void sc_event(struct smtp_client *c, struct bufferevent *bev,
		     short what);

static void
sc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;

	sc_hold(c);
	sc_event(c, bev, what);
	sc_release(c);
}

static void
sc_event(struct smtp_client *c, struct bufferevent *bev, short what)
{
	unsigned long e;
	char why[256];

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == SC_TLS) {
			sc_tls_done(c);
			return;
		}
		if (c->state == SC_CONNECT)
			sc_enter(c, SC_GREETING);
		return;
	}
	e = bufferevent_get_openssl_error(bev);
	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by the server");
	else
		snprintf(why, sizeof(why), "%s",
			 strerror(errno ? errno : ECONNRESET));
	switch (c->state) {
	case SC_CONNECT:
		sc_host_failed(c, OS_CONNECT, 0, why);
		return;
	case SC_TLS:
		sc_tls_failed(c, why);
		return;
	case SC_IDLE:
	case SC_QUIT:
		sc_finish(c, false);
		return;
	default:
		break;
	}
	sc_fail(c, sc_stage(c), 0, why);
}

static void
sc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	char why[128];

	(void)fd;
	(void)what;
	sc_hold(c);
	STATS_INC(timeouts);
	snprintf(why, sizeof(why), "timeout in state %s", sc_names[c->state]);
	switch (c->state) {
	case SC_CONNECT:
		sc_host_failed(c, OS_CONNECT, 0, why);
		break;
	case SC_TLS:
		sc_tls_failed(c, why);
		break;
	case SC_GREETING:
		sc_host_failed(c, OS_GREETING, 0, why);
		break;
	case SC_IDLE:
		/* Parked long enough: leave politely. */
		sc_send(c, OS_QUIT, "QUIT\r\n");
		sc_enter(c, SC_QUIT);
		break;
	case SC_QUIT:
	case SC_RSET:
		sc_finish(c, false);
		break;
	default:
		sc_fail(c, sc_stage(c), 0, why);
		break;
	}
	sc_release(c);
}

/* The owner's side ---------------------------------------------------- */

static void
sc_kick(struct smtp_client *c)
{
	struct timeval tv = { 0, 0 };

	evtimer_add(c->kick, &tv);
}

static void
sc_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	(void)fd;
	(void)what;
	sc_hold(c);
	if (c->state == SC_RESOLVE && c->dq == NULL && c->addrs == NULL)
		sc_connect_next(c);
	else if (c->state == SC_IDLE)
		c->cb->ready(c, c->cbarg);
	sc_release(c);
}

struct smtp_client *
smtp_client_new(const struct smtp_client_env *env,
		const struct smtp_client_target *target,
		const struct smtp_client_cb *cb, void *arg)
{
	struct smtp_client *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->env = env;
	c->t = *target;
	c->cb = cb;
	c->cbarg = arg;
	c->fd = -1;
	c->deadline_ms = sc_now_ms() + (int64_t)target->attempt_timeout_ms;
	if ((c->timer = evtimer_new(env->base, sc_timer_cb, c)) == NULL) {
		free(c);
		return NULL;
	}
	if ((c->kick = evtimer_new(env->base, sc_kick_cb, c)) == NULL ||
	    sc_pend_reserve(c, 4) != 0) {
		if (c->kick != NULL)
			event_free(c->kick);
		event_free(c->timer);
		free(c->pend);
		free(c);
		return NULL;
	}
	c->next = sc_all;
	if (sc_all != NULL)
		sc_all->prev = c;
	sc_all = c;
	/* Hosts in preference order; DNS shuffled equal preferences. */
	c->host_idx = 0;
	c->state = SC_RESOLVE;
	snprintf(c->remote, sizeof(c->remote), "%s", sc_host(c));
	snprintf(c->fail_text, sizeof(c->fail_text),
		 "no host could be "
		 "reached");
	/* Start on the next loop turn: the owner hears of this client
	 * only through callbacks made after it has recorded it. */
	sc_kick(c);
	return c;
}

void
smtp_client_quit(struct smtp_client *c)
{
	sc_hold(c);
	if (c->state != SC_IDLE || c->bev == NULL) {
		sc_finish(c, false);
	} else {
		sc_send(c, OS_QUIT, "QUIT\r\n");
		sc_enter(c, SC_QUIT);
	}
	sc_release(c);
}

void
smtp_client_park(struct smtp_client *c)
{
	sc_enter(c, SC_IDLE);
	sc_timer(c, c->env->idle_timeout_ms);
}

void
smtp_client_abort(struct smtp_client *c)
{
	sc_hold(c);
	if (c->job != NULL) {
		sc_result_rest(c->job, sc_stage(c), 0, "shutting down");
		sc_job_finish(c);
	}
	sc_finish(c, false);
	sc_release(c);
}

void
smtp_client_abort_all(void)
{
	struct smtp_client *c, *next;

	for (c = sc_all; c != NULL; c = next) {
		next = c->next;
		if (c->state != SC_DEAD)
			smtp_client_abort(c);
	}
}
