/*
 * smtp_server.c — SMTP submission sessions: the life of one session.
 *
 * Owns: the session (bufferevent, state, timers, its configuration
 * generation: s->conf, the one it was accepted under) and the state table
 * with smtp_server_enter(), the one transition (only a hang-up drops to
 * CLOSING); commands, AUTH and data are in smtp_server_{cmd,auth,data}.c.
 * Loop thread only; other threads' work comes back through loop_post().
 * Invariants: nothing read before STARTTLS survives it; no address logged
 * in clear; nothing held without a bound (deadlines, rate, lifetime, budget).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <sodium.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/evlog.h"
#include "mta/observe/stats.h"
#include "mta/receive/smtp_server_int.h"

#define SMTP_CMD_LINE_MAX  512          /* RFC 5321 4.5.3.1.4, with CRLF */
#define SMTP_AUTH_LINE_MAX 12288        /* RFC 4954 4 */
#define SMTP_OUTPUT_MAX    (256 * 1024) /* stop reading past this */
#define SMTP_INPUT_MAX     (64 * 1024)  /* stop reading past this */

/* RFC 3461 4 (DSN): MAIL and RCPT lines may be longer by ENVID and RET,
 * or by ORCPT and NOTIFY (500 characters, with room for the keywords). */
#define SMTP_DSN_LINE_EXTRA 600

#define CMD_ALWAYS                                                             \
	(CMD_RSET | CMD_NOOP | CMD_QUIT | CMD_VRFY | CMD_HELP | CMD_EXPN |     \
	 CMD_EHLO | CMD_HELO)

enum smtp_timeout { TO_NONE, TO_COMMAND, TO_DATA, TO_TLS };

static const struct ss_info {
	const char *name;
	enum smtp_timeout timeout;
	uint32_t cmds_ok;
} ss_info[SS__COUNT] = {
	[SS_TLS] = { "tls", TO_TLS, 0 },
	[SS_GREETING] = { "greeting", TO_COMMAND, CMD_ALWAYS | CMD_STARTTLS },
	[SS_READY] = { "ready", TO_COMMAND,
		       CMD_ALWAYS | CMD_MAIL | CMD_STARTTLS | CMD_AUTH |
			   CMD_BDAT },
	[SS_MAIL] = { "mail", TO_COMMAND, CMD_ALWAYS | CMD_RCPT | CMD_BDAT },
	[SS_RCPT] = { "rcpt", TO_COMMAND,
		      CMD_ALWAYS | CMD_RCPT | CMD_DATA | CMD_BDAT },
	[SS_DATA] = { "data", TO_DATA, 0 },
	[SS_BDAT] = { "bdat", TO_DATA, 0 },
	[SS_AUTH] = { "auth", TO_COMMAND, 0 },
	[SS_BUSY] = { "busy", TO_NONE, 0 },
	[SS_CLOSING] = { "closing", TO_NONE, 0 },
};

struct queue *smtp_server_queue;
smtp_server_queued_fn *smtp_server_on_queued; /* main: the scheduler */
static _Atomic uint64_t smtp_session_seq;
static _Atomic unsigned smtp_sessions_open; /* all loops: for stress mode */
/* smtp_server_shutdown's DRAINED (the same for every loop). */
static smtp_server_drained_fn *_Atomic smtp_server_drained_cb;

static void smtp_server_tls_begin(struct smtp_server_session *s);

void
smtp_server_init(const struct conf *conf, struct queue *queue,
		 smtp_server_queued_fn *on_queued)
{
	uint64_t msgs, chunks;

	smtp_server_queue = queue;
	smtp_server_on_queued = on_queued;
	smtp_mem_init(conf->limits.max_body_memory);
	/* Said before the first session: what a stop (kill -9, power loss)
	 * left of messages still arriving, never acknowledged. */
	queue_spool_swept(queue, &msgs, &chunks);
	if (msgs > 0)
		log_info("queue: %" PRIu64 " message(s) still arriving at the "
			 "last stop were dropped (%" PRIu64 " spooled body "
			 "chunk(s) deleted; none was acknowledged)",
			 msgs, chunks);
}

/* Where S's next reply goes: the scratch buffer while it holds some, or
 * while the output is empty in clear text (its write then queued for the
 * end of the turn); else the bufferevent's output (TLS, bytes already
 * waiting for the socket, or no loop to push it at a turn's end). */
static struct evbuffer *
smtp_server_out(struct smtp_server_session *s)
{
	struct evbuffer *out;

	if (s->scratch == NULL)
		return bufferevent_get_output(s->bev);
	out = sock_out(s->scratch, s->bev);
	if (out == s->scratch && !s->push_turn.queued) {
		if (loop_current() != s->loop || !loop_turn_end(&s->push_turn))
			return bufferevent_get_output(s->bev);
		s->pending++; /* until smtp_server_push_cb */
	}
	return out;
}

/* Reply bytes S made and the socket has not taken yet. */
static size_t
smtp_server_out_len(struct smtp_server_session *s)
{
	if (s->scratch == NULL)
		return evbuffer_get_length(bufferevent_get_output(s->bev));
	return sock_pending(s->scratch, s->bev);
}

/* Replies ------------------------------------------------------------- */

static void smtp_server_vreply(struct smtp_server_session *s, const char *fmt,
			       va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
smtp_server_vreply(struct smtp_server_session *s, const char *fmt, va_list ap)
{
	struct evbuffer *out;
	va_list copy;

	if (s->bev == NULL)
		return;
	out = smtp_server_out(s);
	va_copy(copy, ap);
	evbuffer_add_vprintf(out, fmt, copy);
	va_end(copy);
	evbuffer_add(out, "\r\n", 2);
	if (log_trace_enabled(TRACE_SMTP)) {
		char buf[256], esc[512];

		vsnprintf(buf, sizeof(buf), fmt, ap);
		log_trace(TRACE_SMTP, "%016" PRIx64 " smtp >>> %s", s->id,
			  log_escape(esc, sizeof(esc), buf, strlen(buf)));
	}
}

void
smtp_server_reply(struct smtp_server_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_server_vreply(s, fmt, ap);
	va_end(ap);
}

void
smtp_server_refuse(struct smtp_server_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_server_vreply(s, fmt, ap);
	va_end(ap);
	smtp_server_error(s);
}

/* S is on its way out: it no longer counts towards stress mode, so that
 * sessions dropped together (their 421s still flushing, their async work
 * still running) do not keep the daemon stressed and drop the rest. */
static void
smtp_server_uncount(struct smtp_server_session *s)
{
	if (s->flags & SF_UNCOUNTED)
		return;
	s->flags |= SF_UNCOUNTED;
	atomic_fetch_sub(&smtp_sessions_open, 1);
}

/* Reading ------------------------------------------------------------- */

/* Whether S may read now: reading on and the input under its limit (what
 * the bufferevent's read watermark did). */
static bool
smtp_server_read_may(struct smtp_server_session *s)
{
	return s->rd_on && s->bev != NULL &&
	       evbuffer_get_length(bufferevent_get_input(s->bev)) <
		   SMTP_INPUT_MAX;
}

/* Our read event pending while S may read.  Turning it off waits for the
 * event to fire (smtp_server_rd_cb then deletes it and reads nothing): a
 * session that stops reading while its message commits, and starts again
 * at the 250, has had no new input meanwhile, and then costs no
 * epoll_ctl() either way. */
static void
smtp_server_read_fit(struct smtp_server_session *s)
{
	if (s->rd == NULL || s->rd_added || !smtp_server_read_may(s))
		return;
	(void)event_add(s->rd, NULL);
	s->rd_added = true;
}

void
smtp_server_read_set(struct smtp_server_session *s, bool on)
{
	if (s->bev == NULL)
		return;
	if (s->rd == NULL) {
		if (on)
			bufferevent_enable(s->bev, EV_READ);
		else
			bufferevent_disable(s->bev, EV_READ);
		return;
	}
	s->rd_on = on;
	smtp_server_read_fit(s);
}

/* Our reading ends: the socket closes, or TLS takes it. */
static void
smtp_server_rd_free(struct smtp_server_session *s)
{
	if (s->rd != NULL) {
		event_free(s->rd);
		s->rd = NULL;
	}
	s->rd_on = s->rd_added = false;
	s->rdr.want = 0;
}

/* Close after the reply is flushed. */
void
smtp_server_close_after(struct smtp_server_session *s)
{
	smtp_server_uncount(s);
	s->state = SS_CLOSING;
	if (s->timer != NULL)
		evtimer_del(s->timer);
	smtp_server_data_mem_cancel(
	    s); /* let those behind it have the memory */
	if (s->bev != NULL) {
		smtp_server_read_set(s, false);
		if (smtp_server_out_len(s) == 0)
			s->flags |= SF_CLOSE;
	} else {
		s->flags |= SF_CLOSE;
	}
}

/* A refused command: count it; past max_errors, hang up (421). */
void
smtp_server_error(struct smtp_server_session *s)
{
	STATS_INC(protocol_errors);
	if (++s->errors > s->conf->limits.max_errors) {
		log_info("%016" PRIx64 " smtp too many errors from %s", s->id,
			 s->client_str);
		smtp_server_reply(s, "421 4.7.0 %s Error: too many errors",
				  s->conf->hostname);
		smtp_server_close_after(s);
	}
}

/* State --------------------------------------------------------------- */

/* Stress mode (Postfix's): sessions above stress_threshold % of
 * max_sessions; every deadline is then capped at stress_timeout. */
static bool
smtp_server_stressed(const struct smtp_server_session *s)
{
	const struct conf_limits *lim = &s->conf->limits;

	return lim->stress_threshold > 0 &&
	       (uint64_t)atomic_load(&smtp_sessions_open) * 100 >
		   (uint64_t)lim->max_sessions * lim->stress_threshold;
}

/* Receiving message data: the minimum rate applies (BDAT counts between
 * its chunks too, or small chunks would dodge it). */
static bool
smtp_server_in_body(const struct smtp_server_session *s)
{
	return s->state == SS_DATA || s->state == SS_BDAT ||
	       (s->state == SS_RCPT && (s->flags & SF_BDAT_USED));
}

/* The state's deadline as it stands now (shrunk under stress), 0 = none. */
static int64_t
smtp_server_deadline(const struct smtp_server_session *s, bool stress)
{
	int64_t d = s->deadline_ms;
	int64_t st = s->armed_ms + s->conf->limits.stress_timeout_ms;

	if (d != 0 && stress && st < d)
		d = st;
	return d;
}

/*
 * Wake at the earliest of: the state's deadline, the session lifetime, the
 * end of the data rate window, and, while the deadline is long, one
 * stress_timeout from now to see whether stress began (so sessions that
 * were idle before it are shortened too).
 */
static void
smtp_server_timer_schedule(struct smtp_server_session *s)
{
	const struct conf_limits *lim = &s->conf->limits;
	int64_t now = util_mono_ms(), wake = INT64_MAX, d, w;
	bool stress = smtp_server_stressed(s);
	struct timeval tv;

	if (s->timer == NULL || s->state == SS_CLOSING)
		return;
	if ((d = smtp_server_deadline(s, stress)) != 0) {
		wake = d;
		if (lim->stress_threshold > 0 && !stress &&
		    now + lim->stress_timeout_ms < wake)
			wake = now + lim->stress_timeout_ms;
	}
	if (!(s->flags & SF_EXPIRED) &&
	    (w = s->born_ms + lim->session_lifetime_ms) < wake)
		wake = w;
	else if ((s->flags & SF_EXPIRED) && !smtp_server_in_body(s) &&
		 s->state != SS_BUSY)
		wake = now; /* expired while busy (AUTH): say 421 now */
	if (lim->data_min_rate > 0 && smtp_server_in_body(s) &&
	    (w = s->rate_start_ms + lim->data_rate_interval_ms) < wake)
		wake = w;
	if (wake == INT64_MAX) {
		evtimer_del(s->timer);
		return;
	}
	tv = util_ms_timeval(wake - now); /* a past wake is now */
	evtimer_add(s->timer, &tv);
}

/* The state's deadline starts now: a whole command line, a gap in message
 * data, a TLS handshake; bytes that do not complete a unit never call this. */
void
smtp_server_timer_arm(struct smtp_server_session *s)
{
	unsigned ms;

	switch (ss_info[s->state].timeout) {
	case TO_COMMAND:
		ms = s->conf->limits.command_timeout_ms;
		break;
	case TO_DATA:
		ms = s->conf->limits.data_timeout_ms;
		break;
	case TO_TLS:
		ms = s->conf->limits.tls_handshake_timeout_ms;
		break;
	default:
		ms = 0;
		break;
	}
	s->armed_ms = util_mono_ms();
	s->deadline_ms = ms != 0 ? s->armed_ms + ms : 0;
	smtp_server_timer_schedule(s);
}

/* A new window for the minimum data rate. */
void
smtp_server_rate_start(struct smtp_server_session *s)
{
	s->rate_start_ms = util_mono_ms();
	s->rate_bytes = 0;
}

void
smtp_server_enter(struct smtp_server_session *s, enum smtp_server_state st)
{
	if (s->state == SS_CLOSING)
		return; /* nothing leaves CLOSING */
	if (s->state != st)
		log_trace(TRACE_SMTP, "%016" PRIx64 " smtp %s -> %s", s->id,
			  ss_info[s->state].name, ss_info[st].name);
	s->state = st;
	smtp_server_timer_arm(s);
}

bool
smtp_server_allows(const struct smtp_server_session *s, uint32_t cmd)
{
	return (ss_info[s->state].cmds_ok & cmd) != 0;
}

void
smtp_server_txn_reset(struct smtp_server_session *s)
{
	unsigned i;

	for (i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i]);
		free(s->rcpt_dsn[i].orcpt);
	}
	s->nrcpts = 0;
	s->rcpts_dropped = 0;
	free(s->envid);
	s->envid = NULL;
	s->dsn_ret = 0;
	smtp_server_data_mem_cancel(s);
	smtp_spool_release(s, false);
	s->spool_ok = s->spool_end_wait = false;
	s->hdr_end = s->hdr_scan = 0;
	free(s->body);
	s->body = NULL;
	smtp_mem_give(s->body_cap);
	s->body_len = s->body_cap = 0;
	s->msg_id = 0;
	memset(&s->sender, 0, sizeof(s->sender));
	s->smtputf8 = s->body8bit = false;
	s->feedback = s->mail_unauth = false;
	s->declared_size = 0;
	memset(&s->scan, 0, sizeof(s->scan));
	s->flags &= ~(SF_BDAT_USED | SF_READ_WAITS);
}

/* Back to where a new transaction may start. */
void
smtp_server_idle(struct smtp_server_session *s)
{
	smtp_server_txn_reset(s);
	if (s->flags & SF_SHUTDOWN) {
		smtp_server_reply(s, "421 4.3.2 %s Service shutting down",
				  s->conf->hostname);
		smtp_server_close_after(s);
		return;
	}
	if (s->flags & SF_EXPIRED) {
		smtp_server_reply(s,
				  "421 4.4.2 %s Error: session time limit "
				  "exceeded",
				  s->conf->hostname);
		smtp_server_close_after(s);
		return;
	}
	smtp_server_enter(s, s->helo[0] != '\0' ? SS_READY : SS_GREETING);
}

/* Pause reading while async work is in flight (back-pressure). */
void
smtp_server_busy(struct smtp_server_session *s)
{
	smtp_server_enter(s, SS_BUSY);
	if (s->bev != NULL && !(s->flags & SF_READ_OFF)) {
		smtp_server_read_set(s, false);
		s->flags |= SF_READ_OFF;
	}
}

/* Leave BUSY: enable reading and handle what was pipelined meanwhile. */
void
smtp_server_resume(struct smtp_server_session *s)
{
	if (s->bev == NULL || s->state == SS_CLOSING)
		return;
	if ((s->flags & SF_READ_OFF) && !(s->flags & SF_READ_WAITS)) {
		s->flags &= ~SF_READ_OFF;
		smtp_server_read_set(s, true);
	}
	smtp_server_input(s);
}

/* Delivery log ---------------------------------------------------------- */

/* A refusal at submission: REASON (the reply we gave), CODE; RCPT is the
 * refused recipient when there is one. */
void
smtp_server_log_reject(struct smtp_server_session *s, int code,
		       const char *reason, const char *rcpt, const char *dmarc)
{
	struct evlog_event ev;
	char sid[QUEUE_ID_HEX_BYTES];

	memset(&ev, 0, sizeof(ev));
	queue_id_format(s->id, sid);
	ev.type = EV_REJECTION;
	ev.id = s->msg_id;
	ev.session = sid;
	ev.user = s->user != NULL ? s->user->name : NULL;
	ev.client = s->client_str;
	ev.rcpt = rcpt;
	ev.sender = s->sender.null || s->sender.mailbox[0]
			? (s->sender.null ? "" : s->sender.mailbox)
			: NULL;
	ev.nrcpts = rcpt != NULL ? -1 : (int)s->nrcpts;
	ev.attempt = -1;
	ev.queue_time_ms = -1;
	ev.code = code;
	ev.reason = reason;
	ev.dmarc = dmarc;
	ev.tls_verified = -1;
	ev.count = -1;
	evlog_write(&ev);
}

/* Input --------------------------------------------------------------- */

/*
 * One CRLF-terminated line from the input.  Returns 1 when a line was
 * handled, 0 when more input is needed.
 */
static int
smtp_server_input_line(struct smtp_server_session *s, struct evbuffer *in)
{
	char line[SMTP_AUTH_LINE_MAX + 1], esc[256];
	struct evbuffer_ptr eol;
	size_t avail = evbuffer_get_length(in), limit = SMTP_CMD_LINE_MAX, n;
	unsigned char head[5];

	if (avail == 0)
		return 0;
	if (s->state == SS_AUTH || (evbuffer_copyout(in, head, 5) == 5 &&
				    strncasecmp((char *)head, "AUTH ", 5) == 0))
		limit = SMTP_AUTH_LINE_MAX;
	else if (avail >= 5 && (strncasecmp((char *)head, "MAIL ", 5) == 0 ||
				strncasecmp((char *)head, "RCPT ", 5) == 0))
		limit = SMTP_CMD_LINE_MAX + SMTP_DSN_LINE_EXTRA;
	eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (avail > limit) {
			if (!(s->flags & SF_LONGLINE)) {
				smtp_server_refuse(s, "500 5.5.2 Error: line "
						      "too long");
			}
			s->flags |= SF_LONGLINE;
			evbuffer_drain(in, avail);
		}
		return 0;
	}
	n = (size_t)eol.pos + 1;
	if ((s->flags & SF_LONGLINE) || n > limit) {
		/* The tail of an over-long line, or a whole one. */
		evbuffer_drain(in, n);
		if (!(s->flags & SF_LONGLINE)) {
			smtp_server_refuse(s, "500 5.5.2 Error: line too long");
		}
		s->flags &= ~SF_LONGLINE;
		return 1;
	}
	evbuffer_remove(in, line, n);
	smtp_server_timer_arm(s);
	if (n < 2 || line[n - 2] != '\r') {
		smtp_server_refuse(s, "500 5.5.2 Error: bare LF received; "
				      "lines must end with CRLF");
		return 1;
	}
	n -= 2;
	line[n] = '\0';
	if (memchr(line, '\0', n) != NULL || memchr(line, '\r', n) != NULL) {
		smtp_server_refuse(s, "500 5.5.2 Error: NUL or bare CR in "
				      "command");
		return 1;
	}
	if (log_trace_enabled(TRACE_SMTP))
		log_trace(TRACE_SMTP, "%016" PRIx64 " smtp <<< %s", s->id,
			  s->state == SS_AUTH
			      ? "(sasl response)"
			      : log_escape(esc, sizeof(esc), line, n));
	if (s->state == SS_AUTH) {
		smtp_server_auth_step(s, line);
		sodium_memzero(line, n);
		return 1;
	}
	smtp_server_cmd_dispatch(s, line);
	if (strncasecmp(line, "AUTH ", 5) == 0)
		sodium_memzero(line, n);
	return 1;
}

/* Process buffered input for as long as the state allows. */
void
smtp_server_input(struct smtp_server_session *s)
{
	struct evbuffer *in;
	int progress = 1;

	while (progress && s->bev != NULL && !(s->flags & SF_CLOSE)) {
		in = bufferevent_get_input(s->bev);
		switch (s->state) {
		case SS_DATA:
			progress = smtp_server_data_input(s, in);
			break;
		case SS_BDAT:
			progress = smtp_server_data_input_bdat(s, in);
			break;
		case SS_GREETING:
		case SS_READY:
		case SS_MAIL:
		case SS_RCPT:
		case SS_AUTH:
			progress = smtp_server_input_line(s, in);
			break;
		default:
			progress = 0;
			break;
		}
		/* Back-pressure: a client that does not read its replies
		 * gets no more of its input read. */
		if (s->bev != NULL &&
		    smtp_server_out_len(s) > SMTP_OUTPUT_MAX &&
		    !(s->flags & SF_READ_OFF)) {
			smtp_server_read_set(s, false);
			s->flags |= SF_READ_OFF;
			break;
		}
	}
	smtp_server_read_fit(s);
}

/* Session lifetime ---------------------------------------------------- */

static void
smtp_server_list_add(struct smtp_server_session *s)
{
	struct smtp_server_session *head = s->loop->sessions;

	s->prev = NULL;
	s->next = head;
	if (head != NULL)
		head->prev = s;
	s->loop->sessions = s;
}

static void
smtp_server_list_del(struct smtp_server_session *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		s->loop->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
}

/* The connection goes (the bufferevent owns the socket once it exists). */
static void
smtp_server_hangup(struct smtp_server_session *s)
{
	/* Replies not yet pushed (a 421 at shutdown): one try, never
	 * blocking, as the bufferevent's output would have had. */
	if (s->scratch != NULL && evbuffer_get_length(s->scratch) > 0) {
		if (s->fd >= 0)
			(void)evbuffer_write(s->scratch, s->fd);
		evbuffer_drain(s->scratch, evbuffer_get_length(s->scratch));
	}
	smtp_server_rd_free(s);
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->fd >= 0) {
		evutil_closesocket(s->fd);
		s->fd = -1;
	}
}

static void
smtp_server_free(struct smtp_server_session *s)
{
	smtp_server_hangup(s);
	loop_turn_cancel(&s->push_turn); /* not queued: it holds S */
	if (s->scratch != NULL)
		evbuffer_free(s->scratch);
	smtp_server_txn_reset(s);
	smtp_server_auth_reset(s);
	free(s->rcpts);
	free(s->rcpt_dsn);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->delay != NULL)
		event_free(s->delay);
	smtp_server_list_del(s);
	peer_session_release(&s->client);
	smtp_server_uncount(s);
	confgen_unref(s->gen); /* a retired one: the main thread frees it */
	free(s);
}

/* Drop the connection now.  If async work holds the session, it lingers as
 * a zombie until the last completion. */
static void
smtp_server_close(struct smtp_server_session *s, const char *why)
{
	smtp_server_uncount(s);
	if (!(s->flags & SF_ZOMBIE))
		log_info("%016" PRIx64 " smtp disconnect from %s: %s "
			 "(messages=%u recipients=%u errors=%u)",
			 s->id, s->client_str, why, s->msgs, s->rcpts_total,
			 s->errors);
	smtp_server_hangup(s);
	if (s->timer != NULL)
		evtimer_del(s->timer);
	smtp_server_data_mem_cancel(s);
	s->state = SS_CLOSING;
	s->flags |= SF_ZOMBIE | SF_CLOSE;
}

/* L's last session has ended after smtp_server_shutdown(). */
static void
smtp_server_drained(struct loop *l)
{
	smtp_server_drained_fn *fn = atomic_load(&smtp_server_drained_cb);

	if (fn != NULL)
		fn(l);
}

/* Called at the end of every entry point: free what is finished. */
void
smtp_server_settle(struct smtp_server_session *s)
{
	struct loop *l = s->loop;
	bool shutdown = s->flags & SF_SHUTDOWN;

	if (!(s->flags & SF_CLOSE))
		return;
	if (!(s->flags & SF_ZOMBIE))
		smtp_server_close(s, "closed");
	if (s->pending > 0)
		return;
	smtp_server_free(s);
	if (shutdown && l->sessions == NULL)
		smtp_server_drained(l);
}

static void
smtp_server_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_server_session *s = arg;

	(void)bev;
	smtp_server_input(s);
	smtp_server_settle(s);
}

/* S's output went down to LEFT bytes (from the bufferevent's write, or
 * all of it from smtp_server_push). */
static void
smtp_server_out_drained(struct smtp_server_session *s, size_t left)
{
	if (left == 0 && (s->flags & SF_STARTTLS)) {
		s->flags &= ~SF_STARTTLS;
		smtp_server_tls_begin(s);
	} else if (left == 0 && s->state == SS_CLOSING) {
		s->flags |= SF_CLOSE;
	} else if ((s->flags & SF_READ_OFF) && s->state != SS_BUSY &&
		   s->state != SS_TLS && s->state != SS_CLOSING &&
		   !(s->flags & SF_READ_WAITS)) {
		/* The client read its replies: read its input again. */
		s->flags &= ~SF_READ_OFF;
		smtp_server_read_set(s, true);
		smtp_server_input(s);
	}
}

static void
smtp_server_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_server_session *s = arg;

	smtp_server_out_drained(
	    s, evbuffer_get_length(bufferevent_get_output(bev)));
	smtp_server_settle(s);
}

/* The end of the turn: S's replies in the scratch buffer to the socket.
 * What the socket does not take (or an error, which the bufferevent then
 * meets and reports) goes to the output, whose write event sends it. */
static void
smtp_server_push(struct smtp_server_session *s)
{
	if (s->scratch == NULL || evbuffer_get_length(s->scratch) == 0)
		return;
	if (s->bev == NULL || (s->flags & SF_ZOMBIE)) {
		evbuffer_drain(s->scratch, evbuffer_get_length(s->scratch));
		return;
	}
	if (sock_flush(s->scratch, s->bev, s->fd))
		smtp_server_out_drained(s, 0);
}

static void
smtp_server_push_cb(void *arg)
{
	struct smtp_server_session *s = arg;

	s->pending--;
	smtp_server_push(s);
	smtp_server_settle(s);
}

static void
smtp_server_event(struct smtp_server_session *s, struct bufferevent *bev,
		  short what)
{
	char e[256];

	if (what & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);

		STATS_INC(tls_handshakes);
		s->flags |= SF_TLS;
		log_debug("%016" PRIx64 " smtp TLS %s %s with %s", s->id,
			  SSL_get_version(ssl), SSL_get_cipher_name(ssl),
			  s->client_str);
		/* RFC 3207 4.2: forget everything learnt before TLS. */
		s->helo[0] = '\0';
		s->flags &= ~SF_EHLO;
		smtp_server_txn_reset(s);
		smtp_server_enter(s, SS_GREETING);
		if (s->listener->conf->tls == CONF_TLS_IMPLICIT)
			smtp_server_reply(s, "220 %s ESMTP Outpost",
					  s->conf->hostname);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long err = bufferevent_get_openssl_error(bev);

		if (err != 0) {
			STATS_INC(tls_failures);
			ERR_error_string_n(err, e, sizeof(e));
			log_info("%016" PRIx64 " smtp TLS failure with %s: %s",
				 s->id, s->client_str, e);
			smtp_server_close(s, "TLS failure");
		} else {
			smtp_server_close(s, errno ? strerror(errno)
						   : "connection error");
		}
	} else if (what & BEV_EVENT_EOF) {
		smtp_server_close(
		    s, s->state == SS_CLOSING ? "closed" : "connection lost");
	} else if (what & BEV_EVENT_TIMEOUT) {
		STATS_INC(timeouts);
		smtp_server_close(s, "write timeout");
	}
	smtp_server_settle(s);
}

static void
smtp_server_event_cb(struct bufferevent *bev, short what, void *arg)
{
	smtp_server_event(arg, bev, what);
}

/* Clear text: the socket is readable (smtp_server_int.h, rd).  One read,
 * up to the input's limit; the end of the stream and an error go where
 * the bufferevent would report them, reading off first, as it does. */
static void
smtp_server_rd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server_session *s = arg;
	struct evbuffer *in;
	size_t len;
	ssize_t n;
	int e;

	(void)what;
	if (s->bev == NULL)
		return;
	if (!smtp_server_read_may(s)) {
		/* Reading went off after the event was added. */
		(void)event_del(s->rd);
		s->rd_added = false;
		return;
	}
	in = bufferevent_get_input(s->bev);
	len = evbuffer_get_length(in);
	n = sock_read(&s->rdr, in, fd, SMTP_INPUT_MAX - len);
	if (n > 0) {
		smtp_server_input(s);
		smtp_server_settle(s);
		return;
	}
	if (n < 0 && sock_read_again(errno))
		return;
	e = n == 0 ? 0 : errno;
	s->rd_on = s->rd_added = false;
	(void)event_del(s->rd);
	errno = e;
	smtp_server_event(s, s->bev,
			  BEV_EVENT_READING |
			      (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
}

/* Message data slower than data_min_rate over the last window? */
static bool
smtp_server_rate_check(struct smtp_server_session *s, int64_t now)
{
	const struct conf_limits *lim = &s->conf->limits;

	if (lim->data_min_rate == 0 || !smtp_server_in_body(s) ||
	    now < s->rate_start_ms + lim->data_rate_interval_ms)
		return true;
	if (!(s->flags & SF_READ_WAITS) &&
	    s->rate_bytes * 1000 <
		lim->data_min_rate * (uint64_t)(now - s->rate_start_ms)) {
		STATS_INC(timeouts);
		log_info("%016" PRIx64 " smtp data from %s slower than "
			 "%" PRIu64 " bytes/s (%" PRIu64 " bytes in %" PRId64
			 " ms); closing",
			 s->id, s->client_str, lim->data_min_rate,
			 s->rate_bytes, now - s->rate_start_ms);
		smtp_server_log_reject(s, 421, "message data too slow", NULL,
				       NULL);
		smtp_server_reply(s,
				  "421 4.4.2 %s Error: message data too slow "
				  "(under %" PRIu64 " bytes/s)",
				  s->conf->hostname, lim->data_min_rate);
		smtp_server_close_after(s);
		return false;
	}
	smtp_server_rate_start(s);
	return true;
}

/* The session lifetime is over: 421 now, or after the message it is
 * receiving (whose pace data_min_rate bounds). */
static bool
smtp_server_lifetime_check(struct smtp_server_session *s, int64_t now)
{
	if (!(s->flags & SF_EXPIRED)) {
		if (now < s->born_ms + s->conf->limits.session_lifetime_ms)
			return true;
		s->flags |= SF_EXPIRED;
		log_info("%016" PRIx64 " smtp session lifetime over for %s in "
			 "state %s",
			 s->id, s->client_str, ss_info[s->state].name);
	}
	if (smtp_server_in_body(s) || s->state == SS_BUSY)
		return true; /* smtp_server_idle() or the next state says 421 */
	if (s->state == SS_TLS) {
		smtp_server_close(s, "session lifetime over");
		return false;
	}
	smtp_server_reply(s, "421 4.4.2 %s Error: session time limit exceeded",
			  s->conf->hostname);
	smtp_server_close_after(s);
	return false;
}

static void
smtp_server_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server_session *s = arg;
	bool tls = s->state == SS_TLS, stress = smtp_server_stressed(s);
	int64_t now = util_mono_ms(), d;

	(void)fd;
	(void)what;
	if (!smtp_server_rate_check(s, now) ||
	    !smtp_server_lifetime_check(s, now)) {
		smtp_server_settle(s);
		return;
	}
	d = smtp_server_deadline(s, stress);
	if (d == 0 || now < d) {
		smtp_server_timer_schedule(s); /* a check, not the deadline */
		return;
	}
	STATS_INC(timeouts);
	log_info("%016" PRIx64 " smtp timeout in state %s from %s%s", s->id,
		 ss_info[s->state].name, s->client_str,
		 stress && d < s->deadline_ms ? " (stress mode)" : "");
	if (tls) {
		/* Nothing can be said in the middle of a handshake. */
		smtp_server_close(s, "TLS handshake timeout");
	} else {
		smtp_server_reply(s, "421 4.4.2 %s Error: timeout exceeded",
				  s->conf->hostname);
		smtp_server_close_after(s);
	}
	smtp_server_settle(s);
}

static int
smtp_server_bev_setup(struct smtp_server_session *s)
{
	struct timeval wt = util_ms_timeval(s->conf->limits.command_timeout_ms);

	bufferevent_setcb(s->bev, smtp_server_read_cb, smtp_server_write_cb,
			  smtp_server_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_INPUT_MAX);
	bufferevent_setwatermark(s->bev, EV_WRITE, SMTP_OUTPUT_MAX / 4, 0);
	bufferevent_set_timeouts(s->bev, NULL, &wt);
	if (s->fd < 0) {
		/* TLS: the bufferevent owns the socket and reads it. */
		bufferevent_enable(s->bev, EV_READ | EV_WRITE);
		return 0;
	}
	bufferevent_enable(s->bev, EV_WRITE);
	/* Ours to fill from now on (mta/core/sockio.h). */
	(void)evbuffer_unfreeze(bufferevent_get_input(s->bev), 0);
	s->rd = event_new(s->loop->base, s->fd, EV_READ | EV_PERSIST,
			  smtp_server_rd_cb, s);
	s->scratch = evbuffer_new();
	if (s->rd == NULL || s->scratch == NULL)
		return -1;
	s->push_turn.fn = smtp_server_push_cb;
	s->push_turn.arg = s;
	smtp_server_read_set(s, true);
	return 0;
}

/* A TLS bufferevent accepting on S's socket, which it owns from now on.
 * Returns NULL, or why there is none (s->bev is then NULL). */
static const char *
smtp_server_tls_socket(struct smtp_server_session *s)
{
	SSL *ssl;

	if ((ssl = SSL_new(s->listener->ssl_ctx)) == NULL)
		return "SSL_new failed";
	s->bev = bufferevent_openssl_socket_new(s->loop->base, s->fd, ssl,
						BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		SSL_free(ssl);
		return "TLS set-up failed";
	}
	s->fd = -1; /* owned by the bufferevent now */
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	return NULL;
}

/* The 220 was flushed: hand the socket to OpenSSL. */
static void
smtp_server_tls_begin(struct smtp_server_session *s)
{
	const char *why;

	/* The plain bufferevent does not own the socket; the TLS one will.
	 * Bytes it had read are discarded with it. */
	smtp_server_rd_free(s);
	/* Empty: the 220 that led here was written whole. */
	evbuffer_free(s->scratch);
	s->scratch = NULL;
	bufferevent_free(s->bev);
	s->bev = NULL;
	if ((why = smtp_server_tls_socket(s)) != NULL) {
		smtp_server_close(s, why);
		return;
	}
	s->flags &= ~SF_READ_OFF;
	(void)smtp_server_bev_setup(s); /* TLS: cannot fail */
	smtp_server_enter(s, SS_TLS);
}

void
smtp_server_accept(struct loop *l, struct smtp_server_listener *li,
		   evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
	struct smtp_server_session *s;
	struct peer_key key;
	enum peer_admit adm;
	char addr[48];
	const char *msg;
	ssize_t w = 0;

	(void)salen;
	if (peer_key_from(&key, sa) != 0) {
		evutil_closesocket(fd);
		return;
	}
	peer_key_format(&key, addr, sizeof(addr));
	adm =
	    peer_session_acquire(&key, li->gen->conf->limits.max_sessions,
				 li->gen->conf->limits.max_sessions_per_client);
	if (adm != PEER_ADMIT_OK) {
		STATS_INC(sessions_refused);
		log_info("smtp refused connection from %s: %s", addr,
			 adm == PEER_ADMIT_TOTAL ? "too many sessions"
						 : "too many sessions from "
						   "this client");
		/* A short courtesy reply, best effort, never blocking; a
		 * TLS listener's client would not understand it. */
		msg = "421 4.7.0 Too many connections, try again later\r\n";
		if (li->conf->tls != CONF_TLS_IMPLICIT)
			w = write(fd, msg, strlen(msg));
		(void)w;
		evutil_closesocket(fd);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		peer_session_release(&key);
		evutil_closesocket(fd);
		return;
	}
	STATS_INC(sessions);
	/* Small replies must not wait for the client's delayed ACK. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 },
			 sizeof(int));
	s->id =
	    ((uint64_t)l->index << 56) |
	    (atomic_fetch_add(&smtp_session_seq, 1) & 0x00ffffffffffffffull);
	s->loop = l;
	s->gen = confgen_ref(li->gen);
	s->conf = s->gen->conf;
	s->listener = li;
	s->fd = fd;
	s->client = key;
	memcpy(s->client_str, addr, sizeof(s->client_str));
	s->client_trusted = conf_network_match(s->conf, key.family, key.addr);
	s->state = SS_GREETING;
	s->born_ms = util_mono_ms();
	atomic_fetch_add(&smtp_sessions_open, 1);
	smtp_server_list_add(s);
	s->timer = evtimer_new(l->base, smtp_server_timer_cb, s);
	if (li->conf->tls == CONF_TLS_IMPLICIT)
		(void)smtp_server_tls_socket(s); /* s->bev says */
	else
		s->bev = bufferevent_socket_new(l->base, fd, 0);
	if (s->bev == NULL || s->timer == NULL ||
	    smtp_server_bev_setup(s) != 0) {
		log_warnx("smtp cannot set up a session for %s", addr);
		s->flags |= SF_CLOSE | SF_ZOMBIE;
		smtp_server_settle(s);
		return;
	}
	log_info("%016" PRIx64 " smtp connect from %s on %s%s", s->id, addr,
		 li->conf->name, s->client_trusted ? " (relay network)" : "");
	if (li->conf->tls == CONF_TLS_IMPLICIT) {
		smtp_server_enter(s, SS_TLS);
	} else {
		smtp_server_reply(s, "220 %s ESMTP Outpost", s->conf->hostname);
		smtp_server_enter(s, SS_GREETING);
	}
}

/* The shutdown deadline passed: whoever is left is cut off now. */
static void
smtp_server_shutdown_force_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	struct smtp_server_session *s, *next;

	(void)fd;
	(void)what;
	for (s = l->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->flags & SF_ZOMBIE)
			continue;
		if (s->state != SS_TLS && s->bev != NULL)
			smtp_server_reply(s,
					  "421 4.3.2 %s Service shutting "
					  "down",
					  s->conf->hostname);
		smtp_server_close(s, "shutdown");
		smtp_server_settle(s);
	}
	if (l->sessions == NULL)
		smtp_server_drained(l);
}

void
smtp_server_shutdown(struct loop *l, unsigned deadline_ms,
		     smtp_server_drained_fn *drained)
{
	struct smtp_server_session *s, *next;
	struct timeval tv;

	for (s = l->sessions; s != NULL; s = next) {
		next = s->next;
		s->flags |= SF_SHUTDOWN;
		switch (s->state) {
		case SS_GREETING:
		case SS_READY:
		case SS_AUTH:
			smtp_server_reply(s,
					  "421 4.3.2 %s Service shutting "
					  "down",
					  s->conf->hostname);
			smtp_server_close_after(s);
			smtp_server_settle(s);
			break;
		case SS_TLS:
			smtp_server_close(s, "shutdown");
			smtp_server_settle(s);
			break;
		default:
			/* In a transaction: it may finish (smtp_server_idle()
			 * then closes) until the deadline. */
			break;
		}
	}
	atomic_store(&smtp_server_drained_cb, drained);
	if (l->sessions == NULL) {
		smtp_server_drained(l);
		return;
	}
	tv = util_ms_timeval(deadline_ms);
	event_base_once(l->base, -1, EV_TIMEOUT, smtp_server_shutdown_force_cb,
			l, &tv);
}
