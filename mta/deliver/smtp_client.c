/*
 * smtp_client.c — outbound SMTP sessions (RFC 5321, 2920, 3030, 3207, 6152,
 * 6531): the state machine, the pipelined transaction (send cursor ahead of
 * reply cursor, Postfix smtp_proto.c: each command waits in a FIFO with its
 * stage, so a reply, timeout or loss belongs to the command it answers),
 * reply reading, the owner's calls; set-up is smtp_client_setup.c.  Must
 * not: decide what a reply means for a recipient (the owner asks outcome.c)
 * or know its owner (smtp_client.h only).  A client is freed only with no
 * entry point on the stack (sc_hold).  Delivery loop thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/core/scrub.h"
#include "mta/core/util.h"
#include "mta/deliver/smtp_client_int.h"
#include "mta/observe/stats.h"

#define SC_REPLY_LINE_MAX  4096  /* longer reply lines are a protocol error */
#define SC_REPLY_MAX_BYTES 65536 /* a longer reply (EHLO…) is an error */

static const char *const sc_names[SC__COUNT] = {
	[SC_RESOLVE] = "resolve",   [SC_CONNECT] = "connect",
	[SC_GREETING] = "greeting", [SC_EHLO] = "ehlo",
	[SC_HELO] = "helo",         [SC_STARTTLS] = "starttls",
	[SC_TLS] = "tls",           [SC_IDLE] = "idle",
	[SC_TXN] = "txn",           [SC_RSET] = "rset",
	[SC_QUIT] = "quit",         [SC_DEAD] = "dead",
};

/* Every client alive on this thread (its loop's): smtp_client_abort_all. */
static _Thread_local struct smtp_client *sc_all;

static void sc_kick(struct smtp_client *c);
static void sc_send_next(struct smtp_client *c);

unsigned
smtp_client_msgs(const struct smtp_client *c)
{
	return c->msgs;
}

bool
smtp_client_idle(const struct smtp_client *c)
{
	return c->state == SC_IDLE;
}

const char *
sc_host(const struct smtp_client *c)
{
	return c->t.hosts[c->host_idx].name;
}

static void
sc_timer(struct smtp_client *c, unsigned ms)
{
	int64_t wait = ms, left = c->deadline_ms - util_mono_ms();
	struct timeval tv;

	/* Until a session is usable, no wait outlasts the attempt (what is
	 * left may be less than nothing: util_ms_timeval makes it 0). */
	if (!c->usable && wait > left)
		wait = left;
	tv = util_ms_timeval(wait);
	evtimer_add(c->timer, &tv);
}

void
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
const struct scrub_ctx *
sc_log_enter(const struct smtp_client *c)
{
	return scrub_ctx_enter(c->job != NULL ? &c->job->scrub : NULL);
}

/* Where C's next bytes go: the scratch buffer while it holds some, or
 * while the output is empty and the session is in clear text; else the
 * bufferevent's output (TLS, or bytes already waiting for the socket). */
static struct evbuffer *
sc_out(struct smtp_client *c)
{
	if (c->tls || c->scratch == NULL)
		return bufferevent_get_output(c->bev);
	return sock_out(c->scratch, c->bev);
}

/* Bytes written and not yet taken by the socket. */
static size_t
sc_pending(struct smtp_client *c)
{
	if (c->scratch == NULL)
		return evbuffer_get_length(bufferevent_get_output(c->bev));
	return sock_pending(c->scratch, c->bev);
}

static void sc_body_pump(struct smtp_client *c);

/* The end of an entry point: the scratch buffer to the socket now.  What
 * the socket does not take (or an error, which the bufferevent then meets
 * and reports) goes to the output, whose write event sends it; a body
 * whose pieces all went is pulled on meanwhile. */
static void
sc_push(struct smtp_client *c)
{
	if (c->scratch == NULL || c->bev == NULL || c->state == SC_DEAD)
		return;
	while (evbuffer_get_length(c->scratch) > 0) {
		if (!sock_flush(c->scratch, c->bev, bufferevent_getfd(c->bev)))
			return;
		if (!(c->body_on && c->state == SC_TXN))
			return;
		sc_body_pump(c); /* may end the connection */
		if (c->bev == NULL || c->state == SC_DEAD)
			return;
	}
}

static void sc_vwrite(struct smtp_client *c, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
sc_vwrite(struct smtp_client *c, const char *fmt, va_list ap)
{
	va_list ap2;

	va_copy(ap2, ap);
	evbuffer_add_vprintf(sc_out(c), fmt, ap);
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

/* Write bytes no reply answers (QUIT as we hang up, the body). */
void
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
void
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

/* Our reading of a clear-text socket ends: the socket closes, or TLS
 * takes it (the TLS bufferevent reads from then on). */
void
sc_rd_stop(struct smtp_client *c)
{
	if (c->rd != NULL) {
		event_free(c->rd);
		c->rd = NULL;
	}
	c->rdr.want = 0;
}

/* Write a command whose reply will be awaited (one line, CRLF in FMT). */
void
sc_send(struct smtp_client *c, enum outcome_stage stage, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sc_vwrite(c, fmt, ap);
	va_end(ap);
	sc_pend_push(c, stage, 0);
}

void
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
		/* Before the plain phase's descriptor (ours, not the
		 * bufferevent's) is closed below, take it from the
		 * bufferevent: freed inside its own callback, a bufferevent
		 * is finalized after the callback returns, and its epoll
		 * change would then hit a closed descriptor — or the next
		 * connection's, which may already have the same number. */
		if (c->fd >= 0)
			(void)bufferevent_setfd(c->bev, -1);
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	sc_rd_stop(c);
	if (c->fd >= 0) {
		evutil_closesocket(c->fd);
		c->fd = -1;
	}
	if (c->scratch != NULL)
		evbuffer_drain(c->scratch, evbuffer_get_length(c->scratch));
	c->tls = false;
	c->tls_verified = false;
	c->source[0] = '\0';
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
	if (c->scratch != NULL)
		evbuffer_free(c->scratch);
	free(c->addrs);
	free(c->accepted);
	free(c->pend);
	sc_tlsa_free(c);
	free(c);
}

/*
 * Every entry point (libevent callback, DNS callback, owner's call) is
 * bracketed by sc_hold()/sc_release(): a client that dies inside one is
 * only freed when the outermost returns, so no frame touches freed memory.
 */
void
sc_hold(struct smtp_client *c)
{
	c->depth++;
}

void
sc_release(struct smtp_client *c)
{
	if (c->depth == 1)
		sc_push(c);
	if (--c->depth == 0 && c->state == SC_DEAD)
		sc_free(c);
}

/* The end: close, tell the owner.  FAILED: never became usable. */
void
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

/* The local address of C's socket, as text ("" if unknown): asked of the
 * socket once, then kept until it closes (sc_close_socket). */
static const char *
sc_local_addr(struct smtp_client *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	evutil_socket_t fd = c->bev != NULL ? bufferevent_getfd(c->bev) : -1;
	char *buf = c->source;
	socklen_t len = (socklen_t)sizeof(c->source);

	if (buf[0] != '\0' || fd < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return buf;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf,
			  len);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
			  buf, len);
	return buf;
}

/* The owner's session callback: what became of TLS on this session. */
void
sc_session_report(struct smtp_client *c)
{
	struct smtp_client_session s;

	if (c->cb->session == NULL)
		return;
	memset(&s, 0, sizeof(s));
	s.mx_host = sc_host(c);
	s.mx_ip = c->ip;
	s.source_ip = sc_local_addr(c);
	s.tls_failure = c->tls_failure;
	s.tls = c->tls;
	s.tls_verified = c->tls && c->tls_verified;
	s.dane = c->dane != SC_DANE_NONE;
	c->cb->session(c, &s, c->cbarg);
}

/* The transaction is over: hand the job back. */
static void
sc_job_finish(struct smtp_client *c)
{
	struct smtp_client_job *job = c->job;
	struct smtp_client_peer *pe;

	c->job = NULL;
	c->body_on = false; /* nothing more is pulled from a job handed back */
	job->tls_verified = -1;
	job->tls_failure = c->tls_failure;
	job->dane = c->dane != SC_DANE_NONE;
	if (c->tls && c->bev != NULL)
		job->tls_verified = c->tls_verified;
	if (job->peer == NULL)
		job->peer = calloc(1, sizeof(*job->peer));
	if ((pe = job->peer) != NULL) {
		/* without it (no memory) the logs lack the peer's names */
		snprintf(pe->remote, sizeof(pe->remote), "%s", c->remote);
		snprintf(pe->mx_host, sizeof(pe->mx_host), "%s", sc_host(c));
		snprintf(pe->mx_ip, sizeof(pe->mx_ip), "%s", c->ip);
		snprintf(pe->source, sizeof(pe->source), "%s",
			 sc_local_addr(c));
		pe->tls_version[0] = pe->tls_cipher[0] = pe->tls[0] = '\0';
	}
	if (pe != NULL && c->tls && c->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		snprintf(pe->tls_version, sizeof(pe->tls_version), "%s",
			 SSL_get_version(ssl));
		snprintf(pe->tls_cipher, sizeof(pe->tls_cipher), "%s",
			 SSL_get_cipher_name(ssl));
		snprintf(pe->tls, sizeof(pe->tls), "%s %s%s", pe->tls_version,
			 pe->tls_cipher, c->tls_verified ? " verified" : "");
	}
	free(c->accepted);
	c->accepted = NULL;
	c->cb->done(c, job, c->cbarg);
}

/* A failure that ends the connection.  A job in flight gets the failure
 * as its result; a connection not yet usable moves on to the next target. */
void
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

/* The transaction ----------------------------------------------------- */

/* BODY (LEN octets) into OUT in pieces of at most one of libevent's own
 * chains (4 KiB): a whole body in one add would get a chain its size,
 * mapped and unmapped for each message. */
static void
sc_out_add(struct evbuffer *out, const uint8_t *p, size_t len)
{
	size_t n;

	while (len > 0) {
		n = len < SC_OUT_PIECE_BYTES ? len : SC_OUT_PIECE_BYTES;
		evbuffer_add(out, p, n);
		p += n;
		len -= n;
	}
}

/* One piece of a DATA body, dot-stuffed: a line that starts with '.' gets
 * another, also when the piece before ended the line before (body_bol
 * carries that over, as body_tail carries the last CRLF for the end).  The
 * runs between such lines go out in large adds: one evbuffer_add per line
 * cost a lock of the loop's base each (the output's callback). */
static void
sc_body_stuff(struct smtp_client *c, const uint8_t *p, size_t len)
{
	struct evbuffer *out = sc_out(c);
	const uint8_t *end = p + len, *run = p, *cur = p, *nl;

	if (len == 0)
		return;
	if (c->body_bol && *p == '.')
		evbuffer_add(out, ".", 1);
	while ((nl = memchr(cur, '\n', (size_t)(end - cur))) != NULL) {
		cur = nl + 1;
		if (cur < end && *cur == '.') {
			sc_out_add(out, run, (size_t)(cur - run));
			evbuffer_add(out, ".", 1);
			run = cur; /* the line's own '.' starts the next run */
		}
	}
	sc_out_add(out, run, (size_t)(end - run));
	c->body_bol = end[-1] == '\n';
	/* The last two bytes so far, for the end (sc_body_end). */
	if (len >= 2) {
		c->body_tail[0] = p[len - 2];
		c->body_tail[1] = p[len - 1];
	} else {
		c->body_tail[0] = c->body_tail[1];
		c->body_tail[1] = p[0];
	}
}

/* The body is all out: a DATA body ends its last line if it did not, then
 * the final dot; BDAT sent what it announced (else the dialogue is lost).
 * The reply to the end of data is awaited from here. */
static void
sc_body_end(struct smtp_client *c)
{
	struct evbuffer *out = sc_out(c);

	c->body_on = false;
	if (c->bdat) {
		if (c->body_sent != c->job->body_len)
			sc_fail(c, OS_EOM, 0,
				OUTCOME_PROTOCOL_STATUS " the body's size "
							"changed while it was "
							"sent");
		return;
	}
	if (c->body_sent < 2 || c->body_tail[0] != '\r' ||
	    c->body_tail[1] != '\n')
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
}

/* Pull pieces of the body into the output while it holds less than
 * SC_BODY_LOW_BYTES; sc_write_cb calls again when it drains.  A body that
 * cannot be read ends the connection (never a message cut short). */
static void
sc_body_pump(struct smtp_client *c)
{
	struct smtp_client_job *job = c->job;
	char err[256], text[320];
	const uint8_t *p;
	size_t len;
	int rc;

	while (c->body_on && sc_pending(c) < SC_BODY_LOW_BYTES) {
		rc = job->body_next(job->body_arg, &p, &len, err, sizeof(err));
		if (rc < 0) {
			c->body_on = false;
			snprintf(text, sizeof(text),
				 "4.3.0 the message could not be read from "
				 "the queue: %s",
				 err);
			/* The owner says why (it knows the message). */
			sc_fail(c, OS_LOCAL, 451, text);
			return;
		}
		if (rc == 1) {
			sc_body_end(c);
			break;
		}
		c->body_sent += len;
		if (c->bdat)
			sc_out_add(sc_out(c), p, len);
		else
			sc_body_stuff(c, p, len);
	}
	/* Progress restarts the wait: it bounds a stalled peer, not the
	 * time a large body takes. */
	if (c->state == SC_TXN)
		sc_timer(c, c->env->data_timeout_ms);
}

/* The output drained under its low watermark: more of the body. */
void
sc_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	sc_hold(c);
	if (c->body_on && c->bev == bev && c->state == SC_TXN)
		sc_body_pump(c);
	sc_release(c);
}

/* Start sending the body (DATA after its 354: dot-stuffed; BDAT after its
 * command: as it is), pulled as the output drains. */
static void
sc_body_start(struct smtp_client *c)
{
	c->body_on = true;
	c->body_bol = true;
	c->body_tail[0] = c->body_tail[1] = 0;
	c->body_sent = 0;
	bufferevent_setwatermark(c->bev, EV_WRITE, SC_BODY_LOW_BYTES, 0);
	sc_body_pump(c);
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
			/* One BDAT for the whole body: its size is known,
			 * its bytes follow as the connection drains. */
			sc_send(c, OS_EOM, "BDAT %zu LAST\r\n", job->body_len);
			c->sent++;
			sc_body_start(c);
			return;
		} else {
			sc_send(c, OS_DATA, "DATA\r\n");
		}
		c->sent++;
	}
}

/* DATA got its 354: the body, then the end of data, whose reply is the one
 * that delivers (awaited from now: a reply before the end is an error,
 * sc_reply_done). */
static void
sc_send_body(struct smtp_client *c)
{
	sc_pend_push(c, OS_EOM, 0);
	sc_body_start(c);
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
			evbuffer_add(sc_out(c), ".\r\n", 3);
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
	if (c->job == NULL)
		return; /* the body could not be read: the connection ended */
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
		if (sc_policy(c) != CONF_TLSP_NONE)
			c->tls_failure = "starttls-not-supported";
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
		c->tls_failure = "starttls-not-supported";
		if (sc_policy(c) == CONF_TLSP_MAY) {
			/* Refused: carry on in clear on this connection. */
			sc_host_notls_set(&c->t.hosts[c->host_idx]);
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
	    (c->body_on || sc_pending(c) > 0)) {
		/* Accepted before the end of the message left us. */
		sc_protocol_error(c, cmd.stage, 0,
				  "end of data accepted before it was sent");
		return;
	}
	if (cmd.stage == OS_EOM && c->body_on) {
		/* Refused before the end of the message left us: the refusal
		 * stands, but what we would still send has no place in the
		 * dialogue any more; the connection ends. */
		sc_fail(c, OS_EOM, c->rcode, c->rtext);
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
sc_read_lines(struct smtp_client *c, struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[SC_REPLY_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t n;

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
}

/* The bufferevent's reading (TLS). */
void
sc_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	sc_hold(c);
	sc_read_lines(c, bev);
	sc_release(c);
}

static void sc_event(struct smtp_client *c, struct bufferevent *bev,
		     short what);

/* Clear text: the socket is readable (smtp_client_int.h, rd).  One read of
 * what is there; the end of the stream and an error go where the
 * bufferevent would report them, reading off first, as it does. */
void
sc_rd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	struct bufferevent *bev = c->bev;
	ssize_t n;
	int e;

	(void)what;
	if (bev == NULL || c->state == SC_DEAD)
		return;
	sc_hold(c);
	n = sock_read(&c->rdr, bufferevent_get_input(bev), fd, SOCK_READ_MAX);
	if (n > 0) {
		sc_read_lines(c, bev);
	} else if (n == 0 || !sock_read_again(errno)) {
		e = n == 0 ? 0 : errno;
		(void)event_del(c->rd);
		errno = e;
		sc_event(c, bev,
			 BEV_EVENT_READING |
			     (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
	}
	sc_release(c);
}

void
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
	c->deadline_ms = util_mono_ms() + (int64_t)target->attempt_timeout_ms;
	if ((c->timer = evtimer_new(env->base, sc_timer_cb, c)) == NULL) {
		free(c);
		return NULL;
	}
	if ((c->kick = evtimer_new(env->base, sc_kick_cb, c)) == NULL ||
	    (c->scratch = evbuffer_new()) == NULL ||
	    sc_pend_reserve(c, 4) != 0) {
		if (c->scratch != NULL)
			evbuffer_free(c->scratch);
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
