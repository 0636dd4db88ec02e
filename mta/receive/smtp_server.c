/*
 * smtp_server.c — SMTP submission sessions: one state machine per session.
 *
 * Owns: the session (bufferevent, state, transaction, body buffer).  Runs on
 * the session's loop thread only; work for other threads (password checks,
 * the queue commit) leaves through auth_verify()/queue_submit() and comes
 * back through loop_post().  smtp_server_enter() is the only writer of
 * s->state.  Invariants: "250 … queued" only from the commit completion;
 * no bare CR or LF is ever accepted in message data; nothing read before a
 * STARTTLS handshake survives it; no address is ever logged in clear.
 * Shared across loops: the session count (stress mode) and the body memory
 * budget (smtp_mem.c).  No session holds anything without a bound: a
 * deadline per state, a minimum data rate, a lifetime, the budget.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <sodium.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/receive/addr.h"
#include "mta/receive/auth.h"
#include "mta/receive/peer.h"
#include "mta/observe/evlog.h"
#include "mta/receive/intake.h"
#include "mta/observe/metrics.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/receive/smtp_data.h"
#include "mta/receive/smtp_mem.h"
#include "mta/receive/smtp_server.h"
#include "mta/observe/stats.h"

#define SMTP_CMD_LINE_MAX   512          /* RFC 5321 4.5.3.1.4, with CRLF */
#define SMTP_AUTH_LINE_MAX  12288        /* RFC 4954 4 */
#define SMTP_OUTPUT_MAX     (256 * 1024) /* stop reading past this */
#define SMTP_INPUT_MAX      (64 * 1024)  /* stop reading past this */
#define SMTP_HELO_MAX       255
#define SMTP_BODY_INITIAL   8192
#define SMTP_BODY_FIRST_MAX (1024 * 1024) /* SIZE= reserves at most this */

enum smtp_server_state {
	SS_TLS,      /* implicit TLS or STARTTLS handshake in progress */
	SS_GREETING, /* greeting sent; EHLO/HELO expected */
	SS_READY,    /* after EHLO: MAIL expected */
	SS_MAIL,     /* MAIL accepted: RCPT expected */
	SS_RCPT,     /* a recipient accepted: more RCPT, DATA or BDAT */
	SS_DATA,     /* reading DATA text up to CRLF.CRLF */
	SS_BDAT,     /* reading a BDAT chunk's octets */
	SS_AUTH,     /* a SASL exchange waiting for the client's line */
	SS_BUSY,     /* waiting for a worker, the queue, or a delay */
	SS_CLOSING,  /* flushing the last reply, then closing */
	SS__COUNT
};

/* Command bits, for the states' allowed-command masks. */
enum {
	CMD_EHLO = 1u << 0,
	CMD_HELO = 1u << 1,
	CMD_MAIL = 1u << 2,
	CMD_RCPT = 1u << 3,
	CMD_DATA = 1u << 4,
	CMD_BDAT = 1u << 5,
	CMD_RSET = 1u << 6,
	CMD_NOOP = 1u << 7,
	CMD_QUIT = 1u << 8,
	CMD_VRFY = 1u << 9,
	CMD_HELP = 1u << 10,
	CMD_STARTTLS = 1u << 11,
	CMD_AUTH = 1u << 12,
	CMD_EXPN = 1u << 13,
};
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

/* Session flags. */
#define SF_TLS       0x0001u /* TLS established */
#define SF_EHLO      0x0002u /* EHLO (not HELO) was used */
#define SF_LONGLINE  0x0004u /* discarding the rest of a long line */
#define SF_STARTTLS  0x0008u /* switch to TLS once 220 is flushed */
#define SF_CLOSE     0x0010u /* free at the end of this callback */
#define SF_ZOMBIE    0x0020u /* connection gone, async work pending */
#define SF_SHUTDOWN  0x0040u /* daemon stopping: close after this txn */
#define SF_READ_OFF  0x0080u /* reading disabled for back-pressure */
#define SF_BDAT_USED 0x0100u /* this transaction uses BDAT */
#define SF_MEM_WAIT  0x0200u /* reading paused: waiting for body memory */
#define SF_EXPIRED   0x0400u /* session lifetime over: close when idle */
#define SF_UNCOUNTED 0x0800u /* left smtp_sessions_open (closing) */

enum auth_mech { AM_NONE, AM_PLAIN, AM_LOGIN_USER, AM_LOGIN_PASS };

struct smtp_server_session {
	uint64_t id;
	struct loop *loop;
	struct smtp_server_listener *listener;
	evutil_socket_t fd;
	/* deadlines, monotonic ms (smtp_server_timer_arm) */
	int64_t born_ms;     /* connect: the session lifetime counts from it */
	int64_t armed_ms;    /* when the state's deadline was set */
	int64_t deadline_ms; /* the state's deadline, 0 = none */
	int64_t rate_start_ms; /* message data: this rate window's start */
	uint64_t rate_bytes;   /* octets read in the window */
	struct bufferevent *bev;
	struct event *timer; /* the next deadline or check (timer_schedule) */
	struct event *delay; /* an answer held back (AUTH failure) */
	enum smtp_server_state state;
	unsigned flags;
	unsigned pending; /* async operations holding the session */
	unsigned errors;
	struct peer_key client;
	char client_str[48];
	bool client_trusted; /* inside a relay network */
	char helo[SMTP_HELO_MAX + 1];
	const struct conf_user *user;
	struct auth_request *auth;
	enum auth_mech auth_mech;
	/* transaction */
	uint64_t msg_id;
	struct addr_path sender;
	bool smtputf8, body8bit;
	uint64_t declared_size;
	char **rcpts;
	unsigned nrcpts, rcpts_cap;
	uint8_t *body;
	size_t body_len, body_cap;  /* body_cap is charged to the budget */
	size_t inflight_charge;     /* charged for a body with the intake */
	struct smtp_mem_waiter mem; /* in the budget's queue (smtp_mem.h) */
	size_t mem_cap;             /* the capacity waited for */
	bool mem_asked;             /* waiting, or the answer on its way */
	struct smtp_data_scan scan; /* the message data scanner's state */
	uint64_t bdat_left;
	bool bdat_last;
	struct intake_req intake; /* the message on its way to the queue */
	struct timespec eod;      /* when its end of data was read */
	/* per session totals, for the summary line */
	unsigned msgs, rcpts_total;
	struct smtp_server_session *prev, *next;
};

static const struct conf *smtp_conf;
static struct queue *smtp_queue;
static smtp_server_queued_fn *smtp_on_queued; /* main: the scheduler */
static _Atomic uint64_t smtp_session_seq;
static _Atomic unsigned smtp_sessions_open; /* all loops: for stress mode */

static void smtp_server_input(struct smtp_server_session *);
static void smtp_server_settle(struct smtp_server_session *);
static void smtp_server_close(struct smtp_server_session *, const char *);
static void smtp_server_bev_setup(struct smtp_server_session *);
static void smtp_server_mem_cancel(struct smtp_server_session *);

void
smtp_server_init(const struct conf *conf, struct queue *queue,
		 smtp_server_queued_fn *on_queued)
{
	smtp_conf = conf;
	smtp_queue = queue;
	smtp_on_queued = on_queued;
	smtp_mem_init(conf->limits.max_body_memory);
}

static int64_t
smtp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replies ------------------------------------------------------------- */

static void smtp_server_reply(struct smtp_server_session *s, const char *fmt,
			      ...) __attribute__((format(printf, 2, 3)));

static void
smtp_server_reply(struct smtp_server_session *s, const char *fmt, ...)
{
	struct evbuffer *out;
	va_list ap;

	if (s->bev == NULL)
		return;
	out = bufferevent_get_output(s->bev);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	if (log_trace_enabled(TRACE_SMTP)) {
		char buf[256], esc[512];

		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		log_trace(TRACE_SMTP, "%016" PRIx64 " smtp >>> %s", s->id,
			  log_escape(esc, sizeof(esc), buf, strlen(buf)));
	}
}

/* Close after the reply is flushed. */
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

static void
smtp_server_close_after(struct smtp_server_session *s)
{
	smtp_server_uncount(s);
	s->state = SS_CLOSING;
	if (s->timer != NULL)
		evtimer_del(s->timer);
	smtp_server_mem_cancel(s); /* let those behind it have the memory */
	if (s->bev != NULL) {
		bufferevent_disable(s->bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			s->flags |= SF_CLOSE;
	} else {
		s->flags |= SF_CLOSE;
	}
}

/* A refused command: count it; past max_errors, hang up (421). */
static void
smtp_server_error(struct smtp_server_session *s)
{
	STATS_INC(protocol_errors);
	if (++s->errors > smtp_conf->limits.max_errors) {
		log_info("%016" PRIx64 " smtp too many errors from %s", s->id,
			 s->client_str);
		smtp_server_reply(s, "421 4.7.0 %s Error: too many errors",
				  smtp_conf->hostname);
		smtp_server_close_after(s);
	}
}

/* State --------------------------------------------------------------- */

static int64_t
smtp_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Stress mode (Postfix's): sessions above stress_threshold % of
 * max_sessions; every deadline is then capped at stress_timeout. */
static bool
smtp_server_stressed(void)
{
	const struct conf_limits *lim = &smtp_conf->limits;

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
	int64_t st = s->armed_ms + smtp_conf->limits.stress_timeout_ms;

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
	const struct conf_limits *lim = &smtp_conf->limits;
	int64_t now = smtp_mono_ms(), wake = INT64_MAX, d, w;
	bool stress = smtp_server_stressed();
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
	w = wake > now ? wake - now : 0;
	tv.tv_sec = (time_t)(w / 1000);
	tv.tv_usec = (suseconds_t)(w % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/* The state's deadline starts now: a whole command line, a gap in message
 * data, a TLS handshake; bytes that do not complete a unit never call this. */
static void
smtp_server_timer_arm(struct smtp_server_session *s)
{
	unsigned ms;

	switch (ss_info[s->state].timeout) {
	case TO_COMMAND:
		ms = smtp_conf->limits.command_timeout_ms;
		break;
	case TO_DATA:
		ms = smtp_conf->limits.data_timeout_ms;
		break;
	case TO_TLS:
		ms = smtp_conf->limits.tls_handshake_timeout_ms;
		break;
	default:
		ms = 0;
		break;
	}
	s->armed_ms = smtp_mono_ms();
	s->deadline_ms = ms != 0 ? s->armed_ms + ms : 0;
	smtp_server_timer_schedule(s);
}

/* A new window for the minimum data rate. */
static void
smtp_server_rate_start(struct smtp_server_session *s)
{
	s->rate_start_ms = smtp_mono_ms();
	s->rate_bytes = 0;
}

static void
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

/* Body memory budget (smtp_mem.h) ------------------------------------ */

static void smtp_server_on_mem_answer(void *arg);

/* The budget answered, on whatever thread: over to the session's loop. */
static void
smtp_server_mem_answer_cb(struct smtp_mem_waiter *w)
{
	struct smtp_server_session *s =
	    (struct smtp_server_session *)((char *)w -
					   offsetof(struct smtp_server_session,
						    mem));

	loop_post(s->loop, smtp_server_on_mem_answer, s);
}

/* S waits for its body to grow to CAP: reading stops until the answer. */
static void
smtp_server_mem_wait(struct smtp_server_session *s, size_t cap)
{
	s->mem_cap = cap;
	s->mem.want = cap - s->body_cap;
	s->mem.held = s->body_cap;
	s->mem.answer = smtp_server_mem_answer_cb;
	s->mem_asked = true;
	s->pending++; /* the answer, or a cancel while queued, ends it */
	s->flags |= SF_MEM_WAIT;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	log_debug("%016" PRIx64 " smtp waits for body memory (%" PRIu64
		  " bytes)",
		  s->id, s->mem.want);
	smtp_mem_wait(&s->mem);
}

/* S no longer waits (transaction over, connection gone). */
static void
smtp_server_mem_cancel(struct smtp_server_session *s)
{
	s->flags &= ~SF_MEM_WAIT;
	if (!s->mem_asked)
		return;
	if (smtp_mem_cancel(&s->mem)) {
		s->mem_asked = false;
		s->pending--;
	}
	/* else the answer is in the mailbox: a grant is given back there */
}

static void
smtp_server_txn_reset(struct smtp_server_session *s)
{
	unsigned i;

	for (i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
	smtp_server_mem_cancel(s);
	free(s->body);
	s->body = NULL;
	smtp_mem_give(s->body_cap);
	s->body_len = s->body_cap = 0;
	s->msg_id = 0;
	memset(&s->sender, 0, sizeof(s->sender));
	s->smtputf8 = s->body8bit = false;
	s->declared_size = 0;
	memset(&s->scan, 0, sizeof(s->scan));
	s->flags &= ~(SF_BDAT_USED | SF_MEM_WAIT);
}

/* Back to where a new transaction may start. */
static void
smtp_server_idle(struct smtp_server_session *s)
{
	smtp_server_txn_reset(s);
	if (s->flags & SF_SHUTDOWN) {
		smtp_server_reply(s, "421 4.3.2 %s Service shutting down",
				  smtp_conf->hostname);
		smtp_server_close_after(s);
		return;
	}
	if (s->flags & SF_EXPIRED) {
		smtp_server_reply(s,
				  "421 4.4.2 %s Error: session time limit "
				  "exceeded",
				  smtp_conf->hostname);
		smtp_server_close_after(s);
		return;
	}
	smtp_server_enter(s, s->helo[0] != '\0' ? SS_READY : SS_GREETING);
}

/* Pause reading while async work is in flight (back-pressure). */
static void
smtp_server_busy(struct smtp_server_session *s)
{
	smtp_server_enter(s, SS_BUSY);
	if (s->bev != NULL && !(s->flags & SF_READ_OFF)) {
		bufferevent_disable(s->bev, EV_READ);
		s->flags |= SF_READ_OFF;
	}
}

/* Leave BUSY: enable reading and handle what was pipelined meanwhile. */
static void
smtp_server_resume(struct smtp_server_session *s)
{
	if (s->bev == NULL || s->state == SS_CLOSING)
		return;
	if ((s->flags & SF_READ_OFF) && !(s->flags & SF_MEM_WAIT)) {
		s->flags &= ~SF_READ_OFF;
		bufferevent_enable(s->bev, EV_READ);
	}
	smtp_server_input(s);
}

/* Message body -------------------------------------------------------- */

/* The capacity for NEED bytes: doubling, but never past the largest
 * message (plus room for the last CRLF) when NEED fits in it. */
static size_t
smtp_server_body_cap(const struct smtp_server_session *s, size_t need)
{
	size_t cap = s->body_cap ? s->body_cap : SMTP_BODY_INITIAL;
	size_t top = (size_t)smtp_conf->limits.max_message_size + 2;

	/* Never more than the budget, or the wait could not end. */
	if (top > smtp_conf->limits.max_body_memory)
		top = (size_t)smtp_conf->limits.max_body_memory;

	while (cap < need)
		cap *= 2;
	if (cap > top && need <= top)
		cap = top;
	return cap;
}

/* Resize the body to CAP, its growth already charged.  0 ok, -1 no
 * memory (the charge is given back). */
static int
smtp_server_body_resize(struct smtp_server_session *s, size_t cap)
{
	uint8_t *nb;

	if ((nb = realloc(s->body, cap)) == NULL) {
		smtp_mem_give(cap - s->body_cap);
		return -1;
	}
	s->body = nb;
	s->body_cap = cap;
	return 0;
}

/*
 * Room for MORE bytes.  Returns 0 done, -1 out of memory, 1 over the body
 * budget (*CAP is then the capacity to wait for).  FORCE: a few bytes that
 * may overshoot the budget (a trace header, a final CRLF).
 */
static int
smtp_server_body_reserve(struct smtp_server_session *s, size_t more, bool force,
			 size_t *capp)
{
	size_t cap;

	if (s->body_len + more <= s->body_cap)
		return 0;
	cap = smtp_server_body_cap(s, s->body_len + more);
	if (!smtp_mem_take(cap - s->body_cap, force)) {
		if (capp != NULL)
			*capp = cap;
		return 1;
	}
	return smtp_server_body_resize(s, cap);
}

/* Octets the scanner does not copy itself: the trace header, a BDAT
 * message's final CRLF (smtp_data_finish). */
static void
smtp_server_body_add(struct smtp_server_session *s, const void *p, size_t n)
{
	if (s->scan.bad & (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM))
		return;
	if (s->body_len + n > smtp_conf->limits.max_message_size) {
		s->scan.bad |= SMTP_DATA_BAD_SIZE;
		return;
	}
	if (smtp_server_body_reserve(s, n, true, NULL) != 0) {
		/* Refuse for now (452), don't crash. */
		s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		return;
	}
	memcpy(s->body + s->body_len, p, n);
	s->body_len += n;
}

/*
 * The trace header (RFC 5321 4.4), first line of the queued message, and a
 * first piece of the body budget.  Returns -1 when the budget (or memory)
 * has no room for a new message now: the caller answers 452 4.3.1.
 */
static int
smtp_server_body_begin(struct smtp_server_session *s, bool dot)
{
	char hdr[768], date[64], helo[SMTP_HELO_MAX + 1],
	    qid[QUEUE_ID_HEX_BYTES];
	const char *proto;
	struct tm tm;
	time_t now = time(NULL);
	size_t i, first = SMTP_BODY_INITIAL;
	int n;

	/* The mode first: a BDAT chunk refused here is still read. */
	smtp_data_start(&s->scan, dot, 0, smtp_conf->limits.max_message_size);
	if (s->mem_asked)
		return -1; /* the last wait's answer is still on its way */
	/* A declared SIZE sizes the first piece, up to a bound: it is only
	 * a claim, and the budget is charged for it now. */
	if (s->declared_size > 0 &&
	    s->declared_size <= smtp_conf->limits.max_message_size)
		first = s->declared_size + 1024 < SMTP_BODY_FIRST_MAX
			    ? (size_t)s->declared_size + 1024
			    : SMTP_BODY_FIRST_MAX;
	if (smtp_server_body_reserve(s, first, false, NULL) != 0)
		return -1;
	smtp_server_rate_start(s);
	/* The HELO name went through command-line checks (no CR, LF, NUL);
	 * keep only printable ASCII in a header. */
	for (i = 0; s->helo[i] != '\0'; i++)
		helo[i] =
		    s->helo[i] > ' ' && s->helo[i] < 0x7f ? s->helo[i] : '?';
	helo[i] = '\0';
	if (s->user != NULL)
		proto = s->flags & SF_TLS ? "ESMTPSA" : "ESMTPA";
	else if (s->flags & SF_EHLO)
		proto = s->flags & SF_TLS ? "ESMTPS" : "ESMTP";
	else
		proto = "SMTP";
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	queue_id_format(s->msg_id, qid);
	n = snprintf(
	    hdr, sizeof(hdr),
	    "Received: from %s ([%s])\r\n\tby %s (Outpost) with %s id %s;\r\n"
	    "\t%s\r\n",
	    helo[0] ? helo : "unknown", s->client_str, smtp_conf->hostname,
	    proto, qid, date);
	if (n > 0 && (size_t)n < sizeof(hdr))
		smtp_server_body_add(s, hdr, (size_t)n);
	s->scan.size = s->body_len; /* the header counts against the size */
	return 0;
}

/* Delivery log ---------------------------------------------------------- */

/* A refusal at submission: REASON (the reply we gave), CODE; RCPT is the
 * refused recipient when there is one. */
static void
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

/* The message is queued: one reception line per recipient (so that
 * `outpost log --rcpt` finds it), and the acceptance latency. */
static void
smtp_server_log_reception(struct smtp_server_session *s,
			  const struct intake_req *req,
			  const struct queue_op *op)
{
	struct evlog_event ev;
	struct timespec now;
	char sid[QUEUE_ID_HEX_BYTES];
	uint32_t i;

	memset(&ev, 0, sizeof(ev));
	queue_id_format(s->id, sid);
	ev.type = EV_RECEPTION;
	ev.id = op->env.id;
	ev.session = sid;
	ev.user = s->user != NULL ? s->user->name : NULL;
	ev.client = s->client_str;
	ev.sender = op->env.sender;
	ev.size = op->env.size;
	ev.nrcpts = (int)op->env.nrcpts;
	ev.attempt = -1;
	ev.queue_time_ms = -1;
	ev.tls_version = NULL;
	ev.tls_verified = -1;
	ev.dkim = req->dkim[0] ? req->dkim : NULL;
	ev.dmarc = req->result[0] ? req->result : NULL;
	ev.reason = req->held ? "held by the DMARC policy action" : NULL;
	ev.count = -1;
	for (i = 0; i < op->env.nrcpts; i++) {
		ev.rcpt = op->env.rcpts[i].addr;
		evlog_write(&ev);
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	metrics_observe(&metrics_accept_latency,
			(double)(now.tv_sec - s->eod.tv_sec) +
			    (double)(now.tv_nsec - s->eod.tv_nsec) / 1e9);
	if (req->dkim[0])
		metrics_observe(&metrics_sign_seconds, req->sign_s);
}

/* Queueing ------------------------------------------------------------ */

/* The intake is over (refused, queued or failed): answer the client. */
static void
smtp_server_on_intake(struct intake_req *req)
{
	struct smtp_server_session *s = req->arg;
	struct queue_op *op = req->op;
	char qid[QUEUE_ID_HEX_BYTES];

	req->op = NULL;
	s->pending--;
	smtp_mem_give(s->inflight_charge);
	s->inflight_charge = 0;
	queue_id_format(op->env.id, qid);
	if (s->flags & SF_ZOMBIE) {
		/* The client left before the reply: the message is queued
		 * (or not) all the same; it simply never heard. */
		log_info("%016" PRIx64 " smtp %s %s but the client is gone",
			 s->id, qid,
			 req->code == 0 && op->status == 0 ? "queued"
							   : "refused");
		if (req->code == 0 && op->status == 0) {
			smtp_on_queued(op);
			op = NULL;
		}
	} else if (req->code != 0) {
		STATS_INC(messages_rejected);
		smtp_server_log_reject(s, req->code, req->reply, NULL,
				       req->result[0] ? req->result : NULL);
		smtp_server_reply(s, "%d %s", req->code, req->reply);
		if (req->code >= 500)
			smtp_server_error(s);
		smtp_server_idle(s);
	} else if (op->status == 0) {
		STATS_INC(messages_accepted);
		STATS_ADD(recipients_accepted, op->env.nrcpts);
		s->msgs++;
		s->rcpts_total += op->env.nrcpts;
		log_debug("%016" PRIx64 " smtp queued %s size=%" PRIu64
			  " rcpts=%" PRIu32 " %s%s",
			  s->id, qid, op->env.size, op->env.nrcpts, req->result,
			  req->held ? " (held)" : "");
		smtp_server_log_reception(s, req, op);
		smtp_server_reply(s, "250 2.0.0 %s queued%s", qid,
				  req->held ? " (held by policy)" : "");
		smtp_server_idle(s);
		/* The delivery side takes the op (envelope and body) from here.
		 */
		smtp_on_queued(op);
		op = NULL;
	} else {
		STATS_INC(queue_failures);
		log_warnx("%016" PRIx64 " smtp queue write failed for %s: %s",
			  s->id, qid, op->err);
		if (op->map_full)
			smtp_server_reply(
			    s, "452 4.3.1 Insufficient system storage");
		else
			smtp_server_reply(s, "451 4.3.0 Queue write failed, "
					     "try again later");
		smtp_server_idle(s);
	}
	if (op != NULL)
		queue_op_free(op);
	smtp_server_resume(s);
	smtp_server_settle(s);
}

/* End of message data: check, then hand the message to the queue. */
static void
smtp_server_message_end(struct smtp_server_session *s)
{
	struct queue_op *op;
	unsigned i;
	bool long_lines = false;

	if (s->scan.bad & SMTP_DATA_BAD_NOMEM) {
		/* Transient: the same message may fit a moment later. */
		log_warnx("%016" PRIx64 " smtp out of memory receiving a "
			  "message from %s",
			  s->id, s->client_str);
		smtp_server_log_reject(s, 452, "insufficient system resources",
				       NULL, NULL);
		smtp_server_reply(s, "452 4.3.1 Insufficient system resources, "
				     "try again later");
		smtp_server_idle(s);
		return;
	}
	/* A line over 998 octets: re-encoded before signing (on the worker
	 * pool, by the intake), unless the configuration refuses it. */
	if ((s->scan.bad & SMTP_DATA_BAD_LONG) &&
	    smtp_conf->limits.long_lines == CONF_LONG_LINES_REENCODE) {
		s->scan.bad &= ~SMTP_DATA_BAD_LONG;
		long_lines = true;
	}
	if (s->scan.bad != 0) {
		STATS_INC(messages_rejected);
		if (s->scan.bad & SMTP_DATA_BAD_SIZE) {
			STATS_INC(rejected_size);
			smtp_server_reply(s, "552 5.3.4 Message size exceeds "
					     "fixed maximum message size");
		} else if (s->scan.bad & SMTP_DATA_BAD_BARE) {
			STATS_INC(rejected_smuggling);
			smtp_server_reply(s, "550 5.6.0 Message refused: bare "
					     "CR or LF in message data");
		} else if (s->scan.bad & SMTP_DATA_BAD_NUL) {
			STATS_INC(rejected_content);
			smtp_server_reply(s, "550 5.6.0 Message refused: NUL "
					     "character in message data");
		} else {
			STATS_INC(rejected_content);
			smtp_server_reply(s, "550 5.6.0 Message refused: line "
					     "longer than 998 characters");
		}
		log_info("%016" PRIx64 " smtp message refused from %s "
			 "(bad=0x%x)",
			 s->id, s->client_str, s->scan.bad);
		smtp_server_log_reject(
		    s, s->scan.bad & SMTP_DATA_BAD_SIZE ? 552 : 550,
		    s->scan.bad & SMTP_DATA_BAD_SIZE ? "message too large"
		    : s->scan.bad & SMTP_DATA_BAD_BARE
			? "bare CR or LF in message data"
		    : s->scan.bad & SMTP_DATA_BAD_NUL
			? "NUL in message data"
			: "line longer than 998 characters",
		    NULL, NULL);
		smtp_server_error(s);
		smtp_server_idle(s);
		return;
	}
	if ((op = queue_op_new(QOP_INSERT)) == NULL)
		goto oom;
	op->env.id = s->msg_id;
	op->env.created_ms = smtp_now_ms();
	op->env.next_attempt_ms = op->env.created_ms;
	if (s->body8bit || s->scan.saw8bit)
		op->env.flags |= QUEUE_F_8BITMIME;
	if (s->smtputf8)
		op->env.flags |= QUEUE_F_SMTPUTF8;
	op->env.size = s->body_len;
	op->env.sender = strdup(s->sender.null ? "" : s->sender.mailbox);
	op->env.user = s->user != NULL ? strdup(s->user->name) : NULL;
	op->env.client = strdup(s->client_str);
	op->env.helo = strdup(s->helo);
	op->env.rcpts = calloc(s->nrcpts, sizeof(*op->env.rcpts));
	if (op->env.sender == NULL || op->env.client == NULL ||
	    op->env.helo == NULL || op->env.rcpts == NULL ||
	    (s->user != NULL && op->env.user == NULL)) {
		queue_op_free(op);
		goto oom;
	}
	/* Ownership of the recipients and the body moves to the op. */
	for (i = 0; i < s->nrcpts; i++)
		op->env.rcpts[i].addr = s->rcpts[i];
	op->env.nrcpts = s->nrcpts;
	s->nrcpts = 0;
	op->body = s->body;
	op->body_len = s->body_len;
	/* The memory stays charged until the queue is done with it. */
	s->inflight_charge = s->body_cap;
	s->body = NULL;
	s->body_len = s->body_cap = 0;
	s->pending++;
	smtp_server_busy(s);
	clock_gettime(CLOCK_MONOTONIC, &s->eod);
	memset(&s->intake, 0, sizeof(s->intake));
	s->intake.loop = s->loop;
	s->intake.dns = s->loop->dns;
	s->intake.user = s->user;
	s->intake.op = op;
	s->intake.long_lines = long_lines;
	s->intake.done = smtp_server_on_intake;
	s->intake.arg = s;
	intake_submit(&s->intake);
	return;
oom:
	log_warnx("%016" PRIx64 " smtp out of memory queueing a message",
		  s->id);
	smtp_server_reply(s, "451 4.3.0 Temporary failure, try again later");
	smtp_server_idle(s);
}

/* DATA and BDAT input ------------------------------------------------- */

/*
 * Make room in the body for up to *LIMIT more octets of input before they
 * are scanned (a CR held from the last piece may add one).  Over the budget,
 * *LIMIT shrinks to the room there is; with none, the session waits (its
 * reading paused) and this returns -1.
 */
static int
smtp_server_data_room(struct smtp_server_session *s, size_t *limit)
{
	size_t max = smtp_conf->limits.max_message_size, want = *limit, cap;

	if (s->scan.bad & (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM))
		return 0; /* nothing more is kept */
	if (s->body_len >= max)
		return 0; /* the next octet sets SMTP_DATA_BAD_SIZE */
	if (want > max - s->body_len)
		want = max - s->body_len;
	want += 2;
	if (want > smtp_conf->limits.max_body_memory - s->body_len)
		want = smtp_conf->limits.max_body_memory - s->body_len;
	switch (smtp_server_body_reserve(s, want, false, &cap)) {
	case 0:
		return 0;
	case -1:
		s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		return 0;
	default:
		break;
	}
	if (s->body_cap - s->body_len > 2 + 64) {
		*limit = s->body_cap - s->body_len - 2;
		return 0;
	}
	smtp_server_mem_wait(s, cap);
	return -1;
}

/* The budget's answer to S's wait (its loop, from the mailbox). */
static void
smtp_server_on_mem_answer(void *arg)
{
	struct smtp_server_session *s = arg;
	enum smtp_mem_state st;
	bool cancelled;

	st = smtp_mem_collect(&s->mem, &cancelled);
	s->mem_asked = false;
	s->pending--;
	if (cancelled || (s->flags & SF_ZOMBIE) || !(s->flags & SF_MEM_WAIT)) {
		if (st == SMTP_MEM_GRANTED)
			smtp_mem_give(s->mem.want);
	} else {
		if (st == SMTP_MEM_REFUSED) {
			/* Read the rest and drop it; 452 at its end. */
			log_info("%016" PRIx64 " smtp message from %s dropped "
				 "to free body memory",
				 s->id, s->client_str);
			s->scan.bad |= SMTP_DATA_BAD_NOMEM;
			free(s->body);
			s->body = NULL;
			smtp_mem_give(s->body_cap);
			s->body_len = s->body_cap = 0;
		} else if (smtp_server_body_resize(s, s->mem_cap) != 0) {
			s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		}
		s->flags &= ~SF_MEM_WAIT;
		/* The pause was ours, not the client's: a new rate window. */
		smtp_server_rate_start(s);
		if (s->bev != NULL && !(s->flags & SF_READ_OFF) &&
		    s->state != SS_CLOSING)
			bufferevent_enable(s->bev, EV_READ);
		smtp_server_input(s);
	}
	smtp_server_settle(s);
}

/* Feed input to the scanner without pulling it into one contiguous block.
 * Returns 1 at the end of data, 0 otherwise, -1 when waiting for memory. */
static int
smtp_server_data(struct smtp_server_session *s, struct evbuffer *in,
		 size_t limit, size_t *used)
{
	struct evbuffer_iovec v[16];
	enum smtp_data_result r = SMTP_DATA_MORE;
	size_t total = 0, got, out;
	int i, n;

	*used = 0;
	if (smtp_server_data_room(s, &limit) != 0)
		return -1;

	n = evbuffer_peek(in, (ev_ssize_t)limit, NULL, v, 16);
	if (n > 16)
		n = 16;
	for (i = 0; i < n && r == SMTP_DATA_MORE; i++) {
		const uint8_t *p = v[i].iov_base;
		size_t len = v[i].iov_len, off = 0;

		if (total + len > limit)
			len = limit - total;
		for (;;) {
			r = smtp_data_scan(
			    &s->scan, p + off, len - off, &got,
			    s->body != NULL ? s->body + s->body_len : NULL,
			    s->body_cap - s->body_len, &out);
			s->body_len += out;
			off += got;
			if (r != SMTP_DATA_FULL)
				break;
			/* smtp_server_data_room() made room beforehand, but
			 * the budget may have clipped it: a few more bytes. */
			if (smtp_server_body_reserve(s, len - off + 2, true,
						     NULL) != 0)
				s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		}
		total += off;
	}
	evbuffer_drain(in, total);
	*used = total;
	return r == SMTP_DATA_END;
}

/* Returns 1 if progress was made, 0 when more input is needed. */
static int
smtp_server_input_data(struct smtp_server_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in), used;
	int end;

	if (avail == 0 || (s->flags & SF_MEM_WAIT))
		return 0;
	end = smtp_server_data(s, in, avail, &used);
	if (end < 0)
		return 0; /* paused until memory is granted */
	s->rate_bytes += used;
	if (s->scan.bad & SMTP_DATA_BAD_BARE) {
		/* Hang up: the client and we disagree on where the message
		 * ends, so nothing after this may be read as commands. */
		STATS_INC(messages_rejected);
		STATS_INC(rejected_smuggling);
		log_info("%016" PRIx64 " smtp bare CR or LF in DATA from %s; "
			 "closing",
			 s->id, s->client_str);
		smtp_server_log_reject(s, 521,
				       "bare CR or LF in message data "
				       "(SMTP smuggling)",
				       NULL, NULL);
		smtp_server_reply(s,
				  "521 5.5.2 %s Error: bare CR or LF in "
				  "message data (RFC 5321 2.3.8)",
				  smtp_conf->hostname);
		smtp_server_close_after(s);
		return 0;
	}
	smtp_server_timer_arm(s);
	if (end)
		smtp_server_message_end(s);
	return 1;
}

static int
smtp_server_input_bdat(struct smtp_server_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in), used;
	bool in_txn = s->nrcpts > 0;

	if (s->bdat_left > 0) {
		if (avail == 0 || (s->flags & SF_MEM_WAIT))
			return 0;
		if (in_txn) {
			if (smtp_server_data(
				s, in,
				avail < s->bdat_left ? avail : s->bdat_left,
				&used) < 0)
				return 0; /* paused until memory is granted */
		} else {
			used = avail < s->bdat_left ? avail : s->bdat_left;
			evbuffer_drain(in, used);
		}
		s->rate_bytes += used;
		s->bdat_left -= used;
		smtp_server_timer_arm(s);
		if (s->bdat_left > 0)
			return 1;
	}
	/* The whole chunk is in. */
	if (!in_txn) {
		smtp_server_reply(s, "503 5.5.1 Error: no valid transaction "
				     "for this BDAT chunk");
		smtp_server_error(s);
		smtp_server_idle(s);
		return 1;
	}
	if (s->scan.bad & (SMTP_DATA_BAD_BARE | SMTP_DATA_BAD_NOMEM)) {
		/* Refused with the reason now, not after more chunks
		 * (RFC 3030 2: no BDAT follows a failed one). */
		smtp_server_message_end(s);
		return 1;
	}
	if (!s->bdat_last) {
		smtp_server_reply(s, "250 2.0.0 Ok: %zu octets", s->body_len);
		smtp_server_enter(s, SS_RCPT);
		return 1;
	}
	/* A message must end with CRLF: complete a last unterminated line,
	 * but a final bare CR stays an error. */
	if (smtp_data_finish(&s->scan) > 0)
		smtp_server_body_add(s, "\r\n", 2);
	smtp_server_message_end(s);
	return 1;
}

/* Commands ------------------------------------------------------------ */

static bool
smtp_server_auth_offered(const struct smtp_server_session *s)
{
	const struct conf_listener *li = s->listener->conf;

	if (!li->auth || smtp_conf->nusers == 0)
		return false;
	return (s->flags & SF_TLS) || s->listener->auth_plain_ok;
}

static bool
smtp_server_starttls_offered(const struct smtp_server_session *s)
{
	return !(s->flags & SF_TLS) && s->listener->ssl_ctx != NULL &&
	       s->listener->conf->tls == CONF_TLS_STARTTLS;
}

static bool
smtp_server_check_helo(const char *arg)
{
	size_t n = strlen(arg), i;

	if (n == 0 || n > SMTP_HELO_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (arg[i] == ' ' || (unsigned char)arg[i] < 0x21)
			return false;
	return true;
}

static void
cmd_ehlo(struct smtp_server_session *s, char *arg, bool ehlo)
{
	if (!smtp_server_check_helo(arg)) {
		smtp_server_reply(s, "501 5.5.4 Syntax: %s hostname",
				  ehlo ? "EHLO" : "HELO");
		smtp_server_error(s);
		return;
	}
	smtp_server_txn_reset(s);
	memcpy(s->helo, arg, strlen(arg) + 1); /* checked: <= SMTP_HELO_MAX */
	if (ehlo)
		s->flags |= SF_EHLO;
	else
		s->flags &= ~SF_EHLO;
	if (!ehlo) {
		smtp_server_reply(s, "250 %s", smtp_conf->hostname);
		smtp_server_enter(s, SS_READY);
		return;
	}
	smtp_server_reply(s, "250-%s Hello [%s]", smtp_conf->hostname,
			  s->client_str);
	smtp_server_reply(s, "250-PIPELINING");
	smtp_server_reply(s, "250-SIZE %" PRIu64,
			  smtp_conf->limits.max_message_size);
	if (smtp_server_starttls_offered(s))
		smtp_server_reply(s, "250-STARTTLS");
	if (smtp_server_auth_offered(s))
		smtp_server_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_server_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_server_reply(s, "250-8BITMIME");
	smtp_server_reply(s, "250-SMTPUTF8");
	smtp_server_reply(s, "250 CHUNKING");
	smtp_server_enter(s, SS_READY);
}

/* Next "KEY[=VALUE]" parameter from *P (space separated). */
static bool
smtp_server_param(char **p, char **key, char **val)
{
	char *q = *p, *eq;

	while (*q == ' ')
		q++;
	if (*q == '\0')
		return false;
	*key = q;
	while (*q != '\0' && *q != ' ')
		q++;
	if (*q != '\0')
		*q++ = '\0';
	*p = q;
	if ((eq = strchr(*key, '=')) != NULL) {
		*eq = '\0';
		*val = eq + 1;
	} else {
		*val = NULL;
	}
	return true;
}

static bool
smtp_server_user_may_null(const struct conf_user *u)
{
	size_t i;

	for (i = 0; i < u->nsender_domains; i++)
		if (strcmp(u->sender_domains[i], "*") == 0)
			return true;
	return false;
}

static void
cmd_mail(struct smtp_server_session *s, char *arg)
{
	char *rest, *key, *val, *end;
	enum addr_result ar;
	bool body_seen = false, size_seen = false;
	uint64_t size = 0;

	if (strncasecmp(arg, "FROM:", 5) != 0) {
		smtp_server_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		smtp_server_error(s);
		return;
	}
	if (s->listener->conf->require_auth && s->user == NULL) {
		smtp_server_reply(s, "530 5.7.0 Authentication required");
		smtp_server_error(s);
		return;
	}
	/* UTF-8 is allowed in the path only with SMTPUTF8, which comes
	 * after it: parse leniently, check once the parameters are known. */
	ar = addr_path_parse(arg + 5, true, true, &s->sender,
			     (const char **)&rest);
	if (ar != ADDR_OK) {
		smtp_server_reply(s, "%s 5.1.7 Bad sender address: %s",
				  ar == ADDR_SYNTAX ? "501" : "553",
				  addr_result_str(ar));
		smtp_server_error(s);
		return;
	}
	if (*rest != '\0' && *rest != ' ') {
		smtp_server_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		smtp_server_error(s);
		return;
	}
	while (smtp_server_param(&rest, &key, &val)) {
		if (strcasecmp(key, "SIZE") == 0 && val != NULL && !size_seen) {
			errno = 0;
			size = strtoull(val, &end, 10);
			if (*val < '0' || *val > '9' || *end != '\0' ||
			    errno != 0) {
				smtp_server_reply(s, "501 5.5.4 Bad SIZE "
						     "parameter");
				smtp_server_error(s);
				return;
			}
			size_seen = true;
		} else if (strcasecmp(key, "BODY") == 0 && val != NULL &&
			   !body_seen) {
			if (strcasecmp(val, "8BITMIME") == 0)
				s->body8bit = true;
			else if (strcasecmp(val, "7BIT") != 0) {
				smtp_server_reply(s, "501 5.5.4 Bad BODY "
						     "parameter");
				smtp_server_error(s);
				return;
			}
			body_seen = true;
		} else if (strcasecmp(key, "SMTPUTF8") == 0 && val == NULL) {
			s->smtputf8 = true;
		} else if (strcasecmp(key, "AUTH") == 0 && val != NULL) {
			/* RFC 4954 5: accepted, not trusted. */
		} else {
			smtp_server_reply(s, "555 5.5.4 Unsupported MAIL FROM "
					     "parameter");
			smtp_server_error(s);
			memset(&s->sender, 0, sizeof(s->sender));
			return;
		}
	}
	if (s->sender.utf8 && !s->smtputf8) {
		smtp_server_reply(s, "553 5.6.7 Bad sender address: %s",
				  addr_result_str(ADDR_UTF8));
		smtp_server_error(s);
		smtp_server_txn_reset(s);
		return;
	}
	if (size_seen && size > smtp_conf->limits.max_message_size) {
		STATS_INC(rejected_size);
		smtp_server_reply(s, "552 5.3.4 Message size exceeds fixed "
				     "maximum message size");
		smtp_server_error(s);
		smtp_server_txn_reset(s);
		return;
	}
	if (s->user != NULL &&
	    (s->sender.null ? !smtp_server_user_may_null(s->user)
			    : !conf_user_may_send(s->user, s->sender.domain))) {
		STATS_INC(rejected_sender);
		smtp_server_log_reject(s, 550,
				       "sender domain not allowed for "
				       "this user",
				       NULL, NULL);
		log_info("%016" PRIx64 " smtp sender domain %s refused for "
			 "user %s",
			 s->id, s->sender.null ? "<>" : s->sender.domain,
			 s->user->name);
		smtp_server_reply(s, "550 5.7.1 Sender address not allowed "
				     "for this user");
		smtp_server_error(s);
		smtp_server_txn_reset(s);
		return;
	}
	s->declared_size = size;
	s->msg_id = queue_id_next(smtp_queue);
	smtp_server_reply(s, "250 2.1.0 Ok");
	smtp_server_enter(s, SS_MAIL);
}

static void
cmd_rcpt(struct smtp_server_session *s, char *arg)
{
	struct addr_path rcpt;
	const char *rest;
	enum addr_result ar;
	char *copy, **nr;

	if (strncasecmp(arg, "TO:", 3) != 0) {
		smtp_server_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		smtp_server_error(s);
		return;
	}
	/* Relay decision before anything else: an outsider learns nothing
	 * from us about addresses, whatever trick they are written with. */
	if (s->user == NULL && !s->client_trusted) {
		STATS_INC(rejected_relay);
		log_info("%016" PRIx64 " smtp relay denied for %s", s->id,
			 s->client_str);
		smtp_server_log_reject(s, 554, "relay access denied", NULL,
				       NULL);
		smtp_server_reply(s, "554 5.7.1 Relay access denied");
		smtp_server_error(s);
		return;
	}
	ar = addr_path_parse(arg + 3, false, s->smtputf8, &rcpt, &rest);
	if (ar != ADDR_OK) {
		smtp_server_reply(s, "%s 5.1.3 Bad recipient address: %s",
				  ar == ADDR_SYNTAX ? "501" : "553",
				  addr_result_str(ar));
		smtp_server_error(s);
		return;
	}
	while (*rest == ' ')
		rest++;
	if (*rest != '\0') {
		/* DSN (NOTIFY/ORCPT) is not offered, so no parameter is. */
		smtp_server_reply(s, "555 5.5.4 Unsupported RCPT TO "
				     "parameter");
		smtp_server_error(s);
		return;
	}
	if (s->nrcpts >= smtp_conf->limits.max_recipients) {
		/* Flow control, not an error (RFC 5321 4.5.3.1.10). */
		smtp_server_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (s->nrcpts == s->rcpts_cap) {
		unsigned cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;

		if ((nr = realloc(s->rcpts, cap * sizeof(*nr))) == NULL)
			goto oom;
		s->rcpts = nr;
		s->rcpts_cap = cap;
	}
	if ((copy = strdup(rcpt.mailbox)) == NULL)
		goto oom;
	s->rcpts[s->nrcpts++] = copy;
	smtp_server_reply(s, "250 2.1.5 Ok");
	smtp_server_enter(s, SS_RCPT);
	return;
oom:
	smtp_server_reply(s, "452 4.3.1 Insufficient system resources");
}

static void
cmd_data(struct smtp_server_session *s, char *arg)
{
	if (*arg != '\0') {
		smtp_server_reply(s, "501 5.5.4 Syntax: DATA");
		smtp_server_error(s);
		return;
	}
	if (s->flags & SF_BDAT_USED) {
		smtp_server_reply(s, "503 5.5.1 Error: DATA after BDAT");
		smtp_server_error(s);
		return;
	}
	if (smtp_server_body_begin(s, true) != 0) {
		STATS_INC(messages_rejected);
		log_info("%016" PRIx64 " smtp DATA from %s deferred: body "
			 "memory budget in use",
			 s->id, s->client_str);
		smtp_server_reply(s, "452 4.3.1 Insufficient system resources, "
				     "try again later");
		return;
	}
	smtp_server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	smtp_server_enter(s, SS_DATA);
}

static void
cmd_bdat(struct smtp_server_session *s, char *arg)
{
	char *end;
	uint64_t size;

	errno = 0;
	size = strtoull(arg, &end, 10);
	if (*arg < '0' || *arg > '9' || errno != 0 ||
	    (*end != '\0' && *end != ' ') ||
	    (*end == ' ' && strcasecmp(end + 1, "LAST") != 0)) {
		/* Without a size we cannot find the end of the chunk: any
		 * byte of it could be taken for a command.  Hang up. */
		smtp_server_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]; "
				     "closing");
		smtp_server_close_after(s);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = *end == ' ';
	if (s->nrcpts > 0 && !(s->flags & SF_BDAT_USED)) {
		s->flags |= SF_BDAT_USED;
		if (smtp_server_body_begin(s, false) != 0) {
			/* The chunk is read and dropped, then 452 4.3.1. */
			log_info("%016" PRIx64 " smtp BDAT from %s deferred: "
				 "body memory budget in use",
				 s->id, s->client_str);
			s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		}
	} else if (!(s->flags & SF_BDAT_USED)) {
		smtp_server_rate_start(s);
	}
	smtp_server_enter(s, SS_BDAT);
}

static void
cmd_rset(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_txn_reset(s);
	smtp_server_reply(s, "250 2.0.0 Ok");
	smtp_server_enter(s, s->helo[0] != '\0' ? SS_READY : SS_GREETING);
}

static void
cmd_noop(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_reply(s, "221 2.0.0 Bye");
	smtp_server_close_after(s);
}

static void
cmd_vrfy(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_reply(s, "252 2.5.0 Cannot VRFY user");
}

static void
cmd_expn(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_reply(s, "502 5.5.1 EXPN not available");
}

static void
cmd_help(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_reply(s, "214 2.0.0 Outpost: see RFC 5321");
}

static void
cmd_starttls(struct smtp_server_session *s, char *arg)
{
	if (!smtp_server_starttls_offered(s)) {
		smtp_server_reply(s, "503 5.5.1 Error: STARTTLS not "
				     "available");
		smtp_server_error(s);
		return;
	}
	if (*arg != '\0') {
		smtp_server_reply(s, "501 5.5.4 Syntax: STARTTLS");
		smtp_server_error(s);
		return;
	}
	smtp_server_reply(s, "220 2.0.0 Ready to start TLS");
	/* Whatever the client pipelined after STARTTLS is dropped now
	 * (CVE-2011-0411); we read nothing more until the handshake. */
	evbuffer_drain(bufferevent_get_input(s->bev),
		       evbuffer_get_length(bufferevent_get_input(s->bev)));
	bufferevent_disable(s->bev, EV_READ);
	s->flags |= SF_STARTTLS;
	smtp_server_enter(s, SS_TLS);
}

/* AUTH ---------------------------------------------------------------- */

static void smtp_server_auth_done(struct auth_request *req);

static void
smtp_server_auth_reset(struct smtp_server_session *s)
{
	if (s->auth != NULL) {
		sodium_memzero(s->auth, sizeof(*s->auth));
		free(s->auth);
		s->auth = NULL;
	}
	s->auth_mech = AM_NONE;
}

static void
smtp_server_auth_fail(struct smtp_server_session *s, const char *reply)
{
	smtp_server_auth_reset(s);
	smtp_server_reply(s, "%s", reply);
	smtp_server_error(s);
	smtp_server_enter(s, SS_READY);
}

/* The user name as the log may show it: a configured one, scrubbed (a
 * name can look like an address); a typed one could be anything. */
static const char *
smtp_server_auth_name(const struct conf_user *u, char *buf, size_t len)
{
	if (u == NULL)
		return "(unknown)";
	return log_escape(buf, len, u->name, strlen(u->name));
}

/* The limits refused the attempt before its password was checked.  The
 * reply is the same whether the name is a user or not. */
static void
smtp_server_auth_refused(struct smtp_server_session *s,
			 enum auth_limit_verdict v, uint64_t left_ms)
{
	static const char *const why[] = {
		[AUTH_LIMIT_USER_BLOCKED] = "user blocked from this address",
		[AUTH_LIMIT_ADDR_BLOCKED] = "address blocked",
		[AUTH_LIMIT_BUSY] = "limit reached by attempts in flight",
		[AUTH_LIMIT_FULL] = "limiter table full",
	};
	char name[320];

	STATS_INC(auth_blocked);
	log_info("%016" PRIx64 " smtp AUTH refused user=%s from %s: %s", s->id,
		 smtp_server_auth_name(conf_user_find(smtp_conf, s->auth->user),
				       name, sizeof(name)),
		 s->client_str, why[v]);
	smtp_server_auth_reset(s);
	if (v == AUTH_LIMIT_USER_BLOCKED || v == AUTH_LIMIT_ADDR_BLOCKED)
		smtp_server_reply(s,
				  "454 4.7.0 Too many failed "
				  "authentication attempts; try again in "
				  "%" PRIu64 " seconds",
				  (left_ms + 999) / 1000);
	else if (v == AUTH_LIMIT_BUSY)
		smtp_server_reply(s, "454 4.7.0 Too many authentication "
				     "attempts; try again later");
	else
		smtp_server_reply(s, "454 4.7.0 Temporary authentication "
				     "failure");
	smtp_server_error(s);
	smtp_server_enter(s, SS_READY);
}

/* Credentials complete: reserve a place in the limits, then verify them
 * on the worker pool. */
static void
smtp_server_auth_verify(struct smtp_server_session *s)
{
	enum auth_limit_verdict v;
	uint64_t left = 0;

	s->auth->conf = smtp_conf;
	s->auth->client = s->client;
	s->auth->done = smtp_server_auth_done;
	s->auth->arg = s;
	if ((v = auth_verify(s->loop, s->auth, &left)) != AUTH_LIMIT_OK) {
		smtp_server_auth_refused(s, v, left);
		return;
	}
	s->pending++;
	smtp_server_busy(s);
}

static void
smtp_server_auth_step(struct smtp_server_session *s, const char *resp)
{
	char dec[AUTH_USER_MAX + AUTH_PASS_MAX + 4];
	size_t n;

	if (strcmp(resp, "*") == 0) {
		smtp_server_auth_fail(s, "501 5.7.0 Authentication cancelled");
		return;
	}
	if (auth_b64_decode(resp, dec, sizeof(dec), &n) != 0) {
		smtp_server_auth_fail(s, "501 5.5.2 Invalid base64 data");
		return;
	}
	switch (s->auth_mech) {
	case AM_PLAIN:
		if (auth_plain_split(dec, n, s->auth->user,
				     sizeof(s->auth->user), s->auth->pass,
				     sizeof(s->auth->pass)) != 0) {
			sodium_memzero(dec, sizeof(dec));
			smtp_server_auth_fail(s, "501 5.5.2 Malformed PLAIN "
						 "response");
			return;
		}
		break;
	case AM_LOGIN_USER:
		if (n == 0 || n >= sizeof(s->auth->user) ||
		    memchr(dec, '\0', n) != NULL) {
			smtp_server_auth_fail(s, "501 5.5.2 Malformed user "
						 "name");
			return;
		}
		memcpy(s->auth->user, dec, n + 1);
		s->auth_mech = AM_LOGIN_PASS;
		smtp_server_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
		smtp_server_enter(s, SS_AUTH);
		return;
	case AM_LOGIN_PASS:
		if (n >= sizeof(s->auth->pass) ||
		    memchr(dec, '\0', n) != NULL) {
			sodium_memzero(dec, sizeof(dec));
			smtp_server_auth_fail(s, "501 5.5.2 Malformed "
						 "password");
			return;
		}
		memcpy(s->auth->pass, dec, n + 1);
		break;
	case AM_NONE:
		panic("AUTH step without a mechanism");
	}
	sodium_memzero(dec, sizeof(dec));
	smtp_server_auth_verify(s);
}

static void
cmd_auth(struct smtp_server_session *s, char *arg)
{
	char *mech = arg, *resp;

	if (!smtp_server_auth_offered(s)) {
		if (s->listener->conf->auth && smtp_conf->nusers > 0 &&
		    smtp_server_starttls_offered(s))
			smtp_server_reply(s, "530 5.7.0 Must issue a STARTTLS "
					     "command first");
		else
			smtp_server_reply(s, "503 5.5.1 Error: "
					     "authentication not enabled");
		smtp_server_error(s);
		return;
	}
	if (s->user != NULL) {
		smtp_server_reply(s, "503 5.5.1 Error: already "
				     "authenticated");
		smtp_server_error(s);
		return;
	}
	/* The limits are judged once the name is known (auth_verify). */
	if ((resp = strchr(mech, ' ')) != NULL)
		*resp++ = '\0';
	if ((s->auth = calloc(1, sizeof(*s->auth))) == NULL) {
		smtp_server_reply(s, "454 4.3.0 Temporary failure");
		return;
	}
	if (strcasecmp(mech, "PLAIN") == 0) {
		s->auth_mech = AM_PLAIN;
		if (resp != NULL) {
			smtp_server_auth_step(s, resp);
			return;
		}
		smtp_server_reply(s, "334 ");
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_mech = AM_LOGIN_USER;
		if (resp != NULL) {
			smtp_server_auth_step(s, resp);
			return;
		}
		smtp_server_reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
	} else {
		smtp_server_auth_reset(s);
		smtp_server_reply(s, "504 5.5.4 Unrecognized authentication "
				     "type");
		smtp_server_error(s);
		return;
	}
	smtp_server_enter(s, SS_AUTH);
}

static void
smtp_server_auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server_session *s = arg;

	(void)fd;
	(void)what;
	s->pending--;
	if (!(s->flags & SF_ZOMBIE)) {
		smtp_server_reply(s, "535 5.7.8 Authentication credentials "
				     "invalid");
		smtp_server_error(s);
		smtp_server_enter(s, SS_READY);
		smtp_server_resume(s);
	}
	smtp_server_settle(s);
}

static void
smtp_server_auth_done(struct auth_request *req)
{
	struct smtp_server_session *s = req->arg;
	bool ok = req->ok, blocked = req->blocked;
	const struct conf_user *u = req->u;
	uint64_t delay = req->delay_ms;
	struct timeval tv;
	char name[320];

	/* The limiter has counted the outcome already (auth_verify), also
	 * for a client that left meanwhile. */
	s->pending--;
	smtp_server_auth_reset(s);
	if (s->flags & SF_ZOMBIE) {
		if (!ok) {
			STATS_INC(auth_failures);
			log_info(
			    "%016" PRIx64 " smtp AUTH failure user=%s from "
			    "%s; client gone%s",
			    s->id, smtp_server_auth_name(u, name, sizeof(name)),
			    s->client_str, blocked ? "; client blocked" : "");
		}
		smtp_server_settle(s);
		return;
	}
	if (ok) {
		STATS_INC(auth_success);
		s->user = u;
		log_info("%016" PRIx64 " smtp AUTH success user=%s from %s",
			 s->id, smtp_server_auth_name(u, name, sizeof(name)),
			 s->client_str);
		smtp_server_reply(s, "235 2.7.0 Authentication successful");
		smtp_server_enter(s, SS_READY);
		smtp_server_resume(s);
		smtp_server_settle(s);
		return;
	}
	STATS_INC(auth_failures);
	log_info("%016" PRIx64 " smtp AUTH failure user=%s from %s%s", s->id,
		 smtp_server_auth_name(u, name, sizeof(name)), s->client_str,
		 blocked ? "; client blocked" : "");
	if (blocked) {
		STATS_INC(auth_blocked);
		smtp_server_reply(s,
				  "421 4.7.0 %s Too many failed "
				  "authentication attempts; closing",
				  smtp_conf->hostname);
		smtp_server_close_after(s);
		smtp_server_settle(s);
		return;
	}
	/* Answer only after a growing delay (brute-force throttling); the
	 * session stays busy meanwhile. */
	if (s->delay == NULL &&
	    (s->delay = evtimer_new(s->loop->base, smtp_server_auth_delay_cb,
				    s)) == NULL) {
		smtp_server_close_after(s);
		smtp_server_settle(s);
		return;
	}
	s->pending++;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(s->delay, &tv);
}

/* Command dispatch ---------------------------------------------------- */

static const struct smtp_cmd {
	const char *verb;
	uint32_t bit;
	void (*fn)(struct smtp_server_session *, char *);
} smtp_cmds[] = {
	{ "MAIL", CMD_MAIL, cmd_mail },
	{ "RCPT", CMD_RCPT, cmd_rcpt },
	{ "DATA", CMD_DATA, cmd_data },
	{ "BDAT", CMD_BDAT, cmd_bdat },
	{ "RSET", CMD_RSET, cmd_rset },
	{ "NOOP", CMD_NOOP, cmd_noop },
	{ "QUIT", CMD_QUIT, cmd_quit },
	{ "VRFY", CMD_VRFY, cmd_vrfy },
	{ "EXPN", CMD_EXPN, cmd_expn },
	{ "HELP", CMD_HELP, cmd_help },
	{ "STARTTLS", CMD_STARTTLS, cmd_starttls },
	{ "AUTH", CMD_AUTH, cmd_auth },
	{ "EHLO", CMD_EHLO, NULL },
	{ "HELO", CMD_HELO, NULL },
};

static void smtp_server_timer_cb(evutil_socket_t, short, void *);

static void
smtp_server_command(struct smtp_server_session *s, char *line)
{
	const struct smtp_cmd *c = NULL;
	char *arg;
	size_t i, vlen;

	for (vlen = 0; line[vlen] != '\0' && line[vlen] != ' '; vlen++)
		;
	arg = line + vlen;
	while (*arg == ' ')
		arg++;
	for (i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		if (strlen(smtp_cmds[i].verb) == vlen &&
		    strncasecmp(line, smtp_cmds[i].verb, vlen) == 0) {
			c = &smtp_cmds[i];
			break;
		}
	}
	if (c == NULL) {
		/* A web client talking to the SMTP port: not one more byte. */
		if (strncmp(line, "GET ", 4) == 0 ||
		    strncmp(line, "POST ", 5) == 0 ||
		    strncmp(line, "CONNECT ", 8) == 0 ||
		    strncmp(line, "HEAD ", 5) == 0 ||
		    strncmp(line, "PUT ", 4) == 0) {
			log_info("%016" PRIx64 " smtp HTTP request from %s; "
				 "closing",
				 s->id, s->client_str);
			smtp_server_reply(s,
					  "521 5.7.0 %s Error: this is an "
					  "SMTP service",
					  smtp_conf->hostname);
			smtp_server_close_after(s);
			return;
		}
		smtp_server_reply(s, "500 5.5.2 Error: command not "
				     "recognized");
		smtp_server_error(s);
		return;
	}
	if (!(ss_info[s->state].cmds_ok & c->bit)) {
		if (c->bit & (CMD_MAIL | CMD_AUTH))
			smtp_server_reply(
			    s, s->state == SS_GREETING
				   ? "503 5.5.1 Error: send EHLO/HELO first"
				   : "503 5.5.1 Error: nested MAIL command");
		else if (c->bit == CMD_RCPT)
			smtp_server_reply(s, "503 5.5.1 Error: need MAIL "
					     "command");
		else if (c->bit == CMD_DATA)
			smtp_server_reply(
			    s, s->state == SS_MAIL
				   ? "554 5.5.1 Error: no valid recipients"
				   : "503 5.5.1 Error: need RCPT command");
		else
			smtp_server_reply(s, "503 5.5.1 Error: bad sequence "
					     "of commands");
		smtp_server_error(s);
		return;
	}
	if (c->bit == CMD_EHLO || c->bit == CMD_HELO)
		cmd_ehlo(s, arg, c->bit == CMD_EHLO);
	else
		c->fn(s, arg);
}

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
	eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (avail > limit) {
			if (!(s->flags & SF_LONGLINE)) {
				smtp_server_reply(s, "500 5.5.2 Error: line "
						     "too long");
				smtp_server_error(s);
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
			smtp_server_reply(s, "500 5.5.2 Error: line too long");
			smtp_server_error(s);
		}
		s->flags &= ~SF_LONGLINE;
		return 1;
	}
	evbuffer_remove(in, line, n);
	smtp_server_timer_arm(s);
	if (n < 2 || line[n - 2] != '\r') {
		smtp_server_reply(s, "500 5.5.2 Error: bare LF received; "
				     "lines must end with CRLF");
		smtp_server_error(s);
		return 1;
	}
	n -= 2;
	line[n] = '\0';
	if (memchr(line, '\0', n) != NULL || memchr(line, '\r', n) != NULL) {
		smtp_server_reply(s, "500 5.5.2 Error: NUL or bare CR in "
				     "command");
		smtp_server_error(s);
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
	smtp_server_command(s, line);
	if (strncasecmp(line, "AUTH ", 5) == 0)
		sodium_memzero(line, n);
	return 1;
}

/* Process buffered input for as long as the state allows. */
static void
smtp_server_input(struct smtp_server_session *s)
{
	struct evbuffer *in;
	int progress = 1;

	while (progress && s->bev != NULL && !(s->flags & SF_CLOSE)) {
		in = bufferevent_get_input(s->bev);
		switch (s->state) {
		case SS_DATA:
			progress = smtp_server_input_data(s, in);
			break;
		case SS_BDAT:
			progress = smtp_server_input_bdat(s, in);
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
		    evbuffer_get_length(bufferevent_get_output(s->bev)) >
			SMTP_OUTPUT_MAX &&
		    !(s->flags & SF_READ_OFF)) {
			bufferevent_disable(s->bev, EV_READ);
			s->flags |= SF_READ_OFF;
			break;
		}
	}
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

static void
smtp_server_free(struct smtp_server_session *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->fd >= 0) {
		evutil_closesocket(s->fd);
		s->fd = -1;
	}
	smtp_server_txn_reset(s);
	smtp_server_auth_reset(s);
	free(s->rcpts);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->delay != NULL)
		event_free(s->delay);
	smtp_server_list_del(s);
	peer_session_release(&s->client);
	smtp_server_uncount(s);
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
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->fd >= 0) {
		evutil_closesocket(s->fd);
		s->fd = -1;
	}
	if (s->timer != NULL)
		evtimer_del(s->timer);
	smtp_server_mem_cancel(s);
	s->state = SS_CLOSING;
	s->flags |= SF_ZOMBIE | SF_CLOSE;
}

/* Called at the end of every entry point: free what is finished. */
static void
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
		loop_stop(l);
}

static void
smtp_server_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_server_session *s = arg;

	(void)bev;
	smtp_server_input(s);
	smtp_server_settle(s);
}

static void smtp_server_tls_begin(struct smtp_server_session *s);

static void
smtp_server_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_server_session *s = arg;
	size_t left = evbuffer_get_length(bufferevent_get_output(bev));

	if (left == 0 && (s->flags & SF_STARTTLS)) {
		s->flags &= ~SF_STARTTLS;
		smtp_server_tls_begin(s);
	} else if (left == 0 && s->state == SS_CLOSING) {
		s->flags |= SF_CLOSE;
	} else if ((s->flags & SF_READ_OFF) && s->state != SS_BUSY &&
		   s->state != SS_TLS && s->state != SS_CLOSING &&
		   !(s->flags & SF_MEM_WAIT)) {
		/* The client read its replies: read its input again. */
		s->flags &= ~SF_READ_OFF;
		bufferevent_enable(bev, EV_READ);
		smtp_server_input(s);
	}
	smtp_server_settle(s);
}

static void
smtp_server_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_server_session *s = arg;
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
					  smtp_conf->hostname);
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

/* Message data slower than data_min_rate over the last window? */
static bool
smtp_server_rate_check(struct smtp_server_session *s, int64_t now)
{
	const struct conf_limits *lim = &smtp_conf->limits;

	if (lim->data_min_rate == 0 || !smtp_server_in_body(s) ||
	    now < s->rate_start_ms + lim->data_rate_interval_ms)
		return true;
	if (!(s->flags & SF_MEM_WAIT) &&
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
				  smtp_conf->hostname, lim->data_min_rate);
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
		if (now < s->born_ms + smtp_conf->limits.session_lifetime_ms)
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
			  smtp_conf->hostname);
	smtp_server_close_after(s);
	return false;
}

static void
smtp_server_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server_session *s = arg;
	bool tls = s->state == SS_TLS, stress = smtp_server_stressed();
	int64_t now = smtp_mono_ms(), d;

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
				  smtp_conf->hostname);
		smtp_server_close_after(s);
	}
	smtp_server_settle(s);
}

static void
smtp_server_bev_setup(struct smtp_server_session *s)
{
	struct timeval wt;
	unsigned ms = smtp_conf->limits.command_timeout_ms;

	bufferevent_setcb(s->bev, smtp_server_read_cb, smtp_server_write_cb,
			  smtp_server_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_INPUT_MAX);
	bufferevent_setwatermark(s->bev, EV_WRITE, SMTP_OUTPUT_MAX / 4, 0);
	wt.tv_sec = ms / 1000;
	wt.tv_usec = (ms % 1000) * 1000;
	bufferevent_set_timeouts(s->bev, NULL, &wt);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* The 220 was flushed: hand the socket to OpenSSL. */
static void
smtp_server_tls_begin(struct smtp_server_session *s)
{
	SSL *ssl;

	if ((ssl = SSL_new(s->listener->ssl_ctx)) == NULL) {
		smtp_server_close(s, "SSL_new failed");
		return;
	}
	/* The plain bufferevent does not own the socket; the TLS one will.
	 * Bytes it had read are discarded with it. */
	bufferevent_free(s->bev);
	s->bev = bufferevent_openssl_socket_new(s->loop->base, s->fd, ssl,
						BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		SSL_free(ssl);
		smtp_server_close(s, "TLS set-up failed");
		return;
	}
	s->fd = -1; /* owned by the bufferevent now */
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	s->flags &= ~SF_READ_OFF;
	smtp_server_bev_setup(s);
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
	adm = peer_session_acquire(&key, smtp_conf->limits.max_sessions,
				   smtp_conf->limits.max_sessions_per_client);
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
	s->listener = li;
	s->fd = fd;
	s->client = key;
	memcpy(s->client_str, addr, sizeof(s->client_str));
	s->client_trusted = conf_network_match(smtp_conf, key.family, key.addr);
	s->state = SS_GREETING;
	s->born_ms = smtp_mono_ms();
	atomic_fetch_add(&smtp_sessions_open, 1);
	smtp_server_list_add(s);
	s->timer = evtimer_new(l->base, smtp_server_timer_cb, s);
	if (li->conf->tls == CONF_TLS_IMPLICIT) {
		SSL *ssl = SSL_new(li->ssl_ctx);

		s->bev = ssl == NULL
			     ? NULL
			     : bufferevent_openssl_socket_new(
				   l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
				   BEV_OPT_CLOSE_ON_FREE);
		if (s->bev == NULL && ssl != NULL)
			SSL_free(ssl);
		if (s->bev != NULL) {
			s->fd = -1;
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		}
	} else {
		s->bev = bufferevent_socket_new(l->base, fd, 0);
	}
	if (s->bev == NULL || s->timer == NULL) {
		log_warnx("smtp cannot set up a session for %s", addr);
		s->flags |= SF_CLOSE | SF_ZOMBIE;
		smtp_server_settle(s);
		return;
	}
	log_info("%016" PRIx64 " smtp connect from %s on %s%s", s->id, addr,
		 li->conf->name, s->client_trusted ? " (relay network)" : "");
	smtp_server_bev_setup(s);
	if (li->conf->tls == CONF_TLS_IMPLICIT) {
		smtp_server_enter(s, SS_TLS);
	} else {
		smtp_server_reply(s, "220 %s ESMTP Outpost",
				  smtp_conf->hostname);
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
					  smtp_conf->hostname);
		smtp_server_close(s, "shutdown");
		smtp_server_settle(s);
	}
	if (l->sessions == NULL)
		loop_stop(l);
}

void
smtp_server_shutdown(struct loop *l, unsigned deadline_ms)
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
					  smtp_conf->hostname);
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
	if (l->sessions == NULL) {
		loop_stop(l);
		return;
	}
	tv.tv_sec = deadline_ms / 1000;
	tv.tv_usec = (deadline_ms % 1000) * 1000;
	event_base_once(l->base, -1, EV_TIMEOUT, smtp_server_shutdown_force_cb,
			l, &tv);
}
