/*
 * sink_session.c — outpost-sink's SMTP sessions: one state machine per
 * accepted connection, all on the one loop.
 * Owns: the session (bufferevent, state, transaction, message text, timer
 * for delayed replies).  Replies leave in command order (RFC 2920): input
 * is taken one command at a time and nothing past a command whose reply is
 * delayed is looked at until that reply is out.  session_enter() is the only
 * writer of s->state.  Peer bytes never crash it: lines are length-checked
 * before use; a session is freed only from a libevent callback.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
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

#include "t/tools/sink_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define SESSION_CMD_MAX    4096 /* a command line, CRLF included */
#define SESSION_PATH_MAX   1024 /* an address between < and > */
#define SESSION_HELO_MAX   256
#define SESSION_INPUT_MAX  (1024 * 1024) /* stop reading past this */
#define SESSION_OUTPUT_MAX (256 * 1024)  /* stop parsing past this */
#define SESSION_IOV        16

enum ss_state {
	SS_HELO,    /* greeting sent (or due): EHLO/HELO expected */
	SS_READY,   /* MAIL expected */
	SS_MAIL,    /* MAIL accepted: RCPT expected */
	SS_RCPT,    /* a recipient accepted: RCPT, DATA or BDAT */
	SS_DATA,    /* reading DATA text up to CRLF.CRLF */
	SS_BDAT,    /* reading the octets of a BDAT chunk */
	SS_TLS,     /* 220 to STARTTLS queued, then the handshake */
	SS_REFUSED, /* the greeting was 554: only QUIT is served */
	SS_CLOSING, /* flushing the last reply */
	SS__COUNT
};

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
};
#define CMD_ALWAYS                                                             \
	(CMD_EHLO | CMD_HELO | CMD_RSET | CMD_NOOP | CMD_QUIT | CMD_VRFY |     \
	 CMD_HELP | CMD_BDAT)

static const struct ss_info {
	const char *name;
	uint32_t cmds_ok;
} ss_info[SS__COUNT] = {
	[SS_HELO] = { "helo", CMD_ALWAYS | CMD_STARTTLS },
	[SS_READY] = { "ready", CMD_ALWAYS | CMD_MAIL | CMD_STARTTLS },
	[SS_MAIL] = { "mail", CMD_ALWAYS | CMD_RCPT | CMD_DATA },
	[SS_RCPT] = { "rcpt", CMD_ALWAYS | CMD_RCPT | CMD_DATA },
	[SS_DATA] = { "data", 0 },
	[SS_BDAT] = { "bdat", 0 },
	[SS_TLS] = { "tls", 0 },
	[SS_REFUSED] = { "refused", CMD_QUIT },
	[SS_CLOSING] = { "closing", 0 },
};

/* Session flags. */
#define SF_WAIT        0x0001u /* a delayed reply is pending: parse nothing */
#define SF_CLOSE_AFTER 0x0002u /* close once the pending reply is out */
#define SF_LONGLINE    0x0004u /* discarding the rest of a long line */
#define SF_READ_OFF    0x0008u /* reading off: the client reads no replies */
#define SF_STARTTLS    0x0010u /* switch to TLS once 220 is flushed */
#define SF_REFUSED     0x0020u /* --max-connections: not a live session */
#define SF_TLS_UP      0x0040u /* handshake done */

/* Message flags (per transaction). */
#define MF_TOOBIG 0x01u /* over --max-size */
#define MF_8BIT   0x02u /* 8-bit octets while --no-8bitmime */
#define MF_BARELF 0x04u /* an LF not preceded by CR */
#define MF_BDAT   0x08u /* the text came by BDAT */

/* Where the DATA scanner stands relative to line starts. */
enum { DS_BOL, DS_DOT, DS_DOTCR, DS_MID };

struct sink_session {
	uint64_t id;
	struct bufferevent *bev;
	int fd;
	int tls;         /* bev is an OpenSSL bufferevent */
	size_t listener; /* index into sink.listeners */
	size_t client;   /* index into sink.stats.clients, SIZE_MAX: none */
	char src[64];
	enum ss_state state;
	unsigned flags;
	unsigned msgs; /* transactions that reached the end of data */
	char helo[SESSION_HELO_MAX];
	const char *tls_version;
	struct event *timer; /* delayed reply */
	struct evbuffer *pending;

	/* The transaction. */
	char from[SESSION_PATH_MAX];
	char body[16]; /* the BODY= value, "" without */
	int smtputf8;
	unsigned nrcpt;
	struct evbuffer *to;             /* "<a>,<b>" */
	char data_reply[SINK_REPLY_MAX]; /* from a data or delay rule */
	int data_delay_ms;
	struct evbuffer *msg; /* message text (only with --maildir) */
	uint64_t msg_bytes;
	unsigned mflags;
	int dstate;
	unsigned char prev; /* last octet the DATA scanner passed */
	uint64_t bdat_left;
	int bdat_last;
	enum ss_state bdat_back;       /* where a failed BDAT chunk returns */
	char bdat_err[SINK_REPLY_MAX]; /* reply after a chunk we discard */

	struct sink_session *prev_s, *next_s;
};

static void session_read_cb(struct bufferevent *, void *);
static void session_write_cb(struct bufferevent *, void *);
static void session_event_cb(struct bufferevent *, short, void *);
static void session_process(struct sink_session *);

static void
session_enter(struct sink_session *s, enum ss_state state)
{
	if (sink.conf.verbose > 1 && s->state != state)
		sink_log("%" PRIu64 " %s -> %s", s->id, ss_info[s->state].name,
			 ss_info[state].name);
	s->state = state;
}

static void
session_trace(const struct sink_session *s, const char *dir, const char *p,
	      size_t n)
{
	char buf[256];
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < sizeof(buf); i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r' && i + 1 < n && p[i + 1] == '\n')
			continue;
		buf[o++] = c == '\n' ? '|' : (c >= 32 && c < 127 ? c : '?');
	}
	buf[o] = '\0';
	sink_log("%" PRIu64 " %s %s", s->id, dir, buf);
}

static struct sink_peer_stats *
session_client(const struct sink_session *s)
{
	if (s->client >= sink.stats.nclients)
		return NULL;
	return &sink.stats.clients[s->client];
}

static void
session_free(struct sink_session *s)
{
	struct sink_peer_stats *c = session_client(s);

	if (!(s->flags & SF_REFUSED)) {
		sink.stats.connections_now--;
		sink.listeners[s->listener].st.connections_now--;
		if (c != NULL)
			c->connections_now--;
	}
	if (s->prev_s != NULL)
		s->prev_s->next_s = s->next_s;
	else
		sink.live = s->next_s;
	if (s->next_s != NULL)
		s->next_s->prev_s = s->prev_s;
	if (s->bev != NULL)
		bufferevent_free(s->bev); /* closes the socket (and SSL) */
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->pending != NULL)
		evbuffer_free(s->pending);
	if (s->to != NULL)
		evbuffer_free(s->to);
	if (s->msg != NULL)
		evbuffer_free(s->msg);
	free(s);
}

/*
 * Close once the output is flushed: the write callback frees the session.
 * With nothing to flush, a deferred write callback does it.
 */
static void
session_closing(struct sink_session *s)
{
	session_enter(s, SS_CLOSING);
	s->flags &= ~(SF_STARTTLS | SF_WAIT);
	evtimer_del(s->timer);
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_enable(s->bev, EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		bufferevent_trigger(s->bev, EV_WRITE,
				    BEV_TRIG_IGNORE_WATERMARKS |
					BEV_TRIG_DEFER_CALLBACKS);
}

static void
session_close_after(struct sink_session *s)
{
	if (s->flags & SF_WAIT)
		s->flags |= SF_CLOSE_AFTER;
	else
		session_closing(s);
}

/* Queue reply text (CRLF added) now or, with a delay, from the timer. */
static void
session_send(struct sink_session *s, int delay_ms, const char *text, size_t len)
{
	if (sink.conf.verbose)
		session_trace(s, ">", text, len);
	delay_ms += sink.conf.reply_delay_ms;
	if (delay_ms > 0 || (s->flags & SF_WAIT)) {
		struct timeval tv = { delay_ms / 1000,
				      (delay_ms % 1000) * 1000 };

		evbuffer_add(s->pending, text, len);
		evbuffer_add(s->pending, "\r\n", 2);
		if (!(s->flags & SF_WAIT)) {
			s->flags |= SF_WAIT;
			evtimer_add(s->timer, &tv);
		}
		return;
	}
	bufferevent_write(s->bev, text, len);
	bufferevent_write(s->bev, "\r\n", 2);
}

static void session_reply(struct sink_session *, int, const char *, ...)
    SINK_PRINTF(3, 4);

static void
session_reply(struct sink_session *s, int delay_ms, const char *fmt, ...)
{
	char buf[SINK_REPLY_MAX * 2];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = (int)sizeof(buf) - 1;
	session_send(s, delay_ms, buf, (size_t)n);
}

static int
reply_code(const char *reply)
{
	if (!isdigit((unsigned char)reply[0]) ||
	    !isdigit((unsigned char)reply[1]) ||
	    !isdigit((unsigned char)reply[2]))
		return 0;
	return (reply[0] - '0') * 100 + (reply[1] - '0') * 10 +
	       (reply[2] - '0');
}

/* Count a refusal at RCPT by its code. */
static void
session_rcpt_refused(int code)
{
	if (code / 100 == 5)
		sink.stats.rejected_rcpt++;
	else
		sink.stats.deferred_rcpt++;
}

static void
session_txn_reset(struct sink_session *s)
{
	s->from[0] = '\0';
	s->body[0] = '\0';
	s->smtputf8 = 0;
	s->nrcpt = 0;
	evbuffer_drain(s->to, evbuffer_get_length(s->to));
	s->data_reply[0] = '\0';
	s->data_delay_ms = 0;
	if (s->msg != NULL)
		evbuffer_drain(s->msg, evbuffer_get_length(s->msg));
	s->msg_bytes = 0;
	s->mflags = 0;
	s->bdat_left = 0;
	s->bdat_last = 0;
	s->bdat_err[0] = '\0';
}

static int
has_8bit(const char *p)
{
	for (; *p != '\0'; p++)
		if ((unsigned char)*p & 0x80)
			return 1;
	return 0;
}

/*
 * Split "FROM:<path> params" (after the verb): `addr` gets the path between
 * the brackets, `params` the rest.  Returns 0, or -1 on a syntax error.
 */
static int
session_path(char *arg, const char *keyword, char **addr, char **params)
{
	size_t klen = strlen(keyword);
	char *p, *end;

	if (strncasecmp(arg, keyword, klen) != 0)
		return -1;
	p = arg + klen;
	while (*p == ' ')
		p++;
	if (*p != '<' || (end = strchr(p, '>')) == NULL)
		return -1;
	if ((size_t)(end - p - 1) >= SESSION_PATH_MAX)
		return -1;
	*end = '\0';
	*addr = p + 1;
	p = end + 1;
	if (*p != '\0' && *p != ' ')
		return -1;
	while (*p == ' ')
		p++;
	*params = p;
	return 0;
}

static char *
param_next(char **pp)
{
	char *p = *pp, *start;

	while (*p == ' ')
		p++;
	if (*p == '\0')
		return NULL;
	start = p;
	while (*p != '\0' && *p != ' ')
		p++;
	if (*p != '\0')
		*p++ = '\0';
	*pp = p;
	return start;
}

static void
session_greet(struct sink_session *s)
{
	const char *r = sink.conf.greeting_reply;
	int code = r != NULL ? reply_code(r) : 220;

	if (r == NULL || code / 100 == 2) {
		if (r != NULL)
			session_reply(s, sink.conf.greeting_delay_ms, "%s", r);
		else
			session_reply(s, sink.conf.greeting_delay_ms,
				      "220 %s ESMTP outpost-sink",
				      sink.conf.hostname);
		return;
	}
	session_reply(s, sink.conf.greeting_delay_ms, "%s", r);
	if (code == 554)
		session_enter(s, SS_REFUSED);
	else
		session_close_after(s);
}

static void
cmd_ehlo(struct sink_session *s, char *arg)
{
	char buf[SINK_REPLY_MAX];
	struct evbuffer *b;
	const char *ext[8];
	size_t n = 0, i;

	if (*arg == '\0') {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: EHLO hostname");
		return;
	}
	if (snprintf(s->helo, sizeof(s->helo), "%s", arg) >=
	    (int)sizeof(s->helo))
		s->helo[sizeof(s->helo) - 1] = '\0';
	s->helo[strcspn(s->helo, " ")] = '\0';
	session_txn_reset(s);
	if (sink.conf.pipelining)
		ext[n++] = "PIPELINING";
	if (snprintf(buf, sizeof(buf), "SIZE %" PRIu64, sink.conf.max_size) >=
	    (int)sizeof(buf))
		buf[0] = '\0';
	ext[n++] = buf;
	if (sink.conf.eightbitmime)
		ext[n++] = "8BITMIME";
	if (sink.conf.smtputf8)
		ext[n++] = "SMTPUTF8";
	ext[n++] = "ENHANCEDSTATUSCODES";
	if (sink.conf.chunking)
		ext[n++] = "CHUNKING";
	if ((sink.conf.starttls || sink.conf.tls_broken) && !s->tls)
		ext[n++] = "STARTTLS";
	if ((b = evbuffer_new()) == NULL)
		return;
	evbuffer_add_printf(b, "250-%s Hello %s", sink.conf.hostname, s->helo);
	for (i = 0; i < n; i++)
		evbuffer_add_printf(b, "\r\n250%c%s", i + 1 < n ? '-' : ' ',
				    ext[i]);
	session_send(s, 0, (const char *)evbuffer_pullup(b, -1),
		     evbuffer_get_length(b));
	evbuffer_free(b);
	session_enter(s, SS_READY);
}

static void
cmd_helo(struct sink_session *s, char *arg)
{
	if (*arg == '\0') {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	if (snprintf(s->helo, sizeof(s->helo), "%s", arg) >=
	    (int)sizeof(s->helo))
		s->helo[sizeof(s->helo) - 1] = '\0';
	s->helo[strcspn(s->helo, " ")] = '\0';
	session_txn_reset(s);
	session_reply(s, 0, "250 %s", sink.conf.hostname);
	session_enter(s, SS_READY);
}

/* MAIL parameters; returns 0 or -1 after replying. */
static int
mail_params(struct sink_session *s, char *params)
{
	char *p;

	while ((p = param_next(&params)) != NULL) {
		if (strncasecmp(p, "SIZE=", 5) == 0) {
			char *end;
			unsigned long long v;

			errno = 0;
			v = strtoull(p + 5, &end, 10);
			if (errno != 0 || *end != '\0' || end == p + 5 ||
			    !isdigit((unsigned char)p[5])) {
				session_reply(s, 0, "501 5.5.4 bad SIZE");
				return -1;
			}
			if (v > sink.conf.max_size) {
				sink.stats.mail_rejected++;
				session_reply(
				    s, 0,
				    "552 5.3.4 message size exceeds fixed "
				    "maximum message size");
				return -1;
			}
		} else if (strncasecmp(p, "BODY=", 5) == 0 &&
			   (strcasecmp(p + 5, "7BIT") == 0 ||
			    (sink.conf.eightbitmime &&
			     strcasecmp(p + 5, "8BITMIME") == 0))) {
			if (snprintf(s->body, sizeof(s->body), "%s", p + 5) >=
			    (int)sizeof(s->body))
				s->body[0] = '\0';
		} else if (sink.conf.smtputf8 &&
			   strcasecmp(p, "SMTPUTF8") == 0) {
			s->smtputf8 = 1;
		} else {
			session_reply(
			    s, 0, "555 5.5.4 unsupported parameter %.64s", p);
			return -1;
		}
	}
	return 0;
}

static void
cmd_mail(struct sink_session *s, char *arg)
{
	char *addr, *params, buf[SINK_REPLY_MAX];
	const char *r = sink.conf.mail_reply;
	int code;

	if (sink.conf.max_msgs_per_conn &&
	    s->msgs >= sink.conf.max_msgs_per_conn) {
		session_reply(
		    s, 0, "421 4.7.0 %s too many messages in this connection",
		    sink.conf.hostname);
		session_close_after(s);
		return;
	}
	if (session_path(arg, "FROM:", &addr, &params) != 0) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	session_txn_reset(s);
	if (mail_params(s, params) != 0) {
		session_txn_reset(s);
		return;
	}
	if (has_8bit(addr) && !s->smtputf8) {
		sink.stats.mail_rejected++;
		session_reply(s, 0,
			      "553 5.6.7 non-ASCII address without SMTPUTF8");
		session_txn_reset(s);
		return;
	}
	if (r != NULL) {
		code = reply_code(r);
		sink_rules_format(r, addr, buf, sizeof(buf));
		session_reply(s, 0, "%s", buf);
		if (code / 100 != 2) {
			sink.stats.mail_rejected++;
			session_txn_reset(s);
			if (code == 421)
				session_close_after(s);
			return;
		}
	} else
		session_reply(s, 0, "250 2.1.0 Ok");
	/* session_path() bounded the length by SESSION_PATH_MAX. */
	memcpy(s->from, addr, strlen(addr) + 1);
	session_enter(s, SS_MAIL);
}

static void
rcpt_accept(struct sink_session *s, const char *addr, const char *reply)
{
	evbuffer_add_printf(s->to, "%s<%s>", s->nrcpt ? "," : "", addr);
	s->nrcpt++;
	sink.stats.rcpt_accepted++;
	if (reply != NULL)
		session_reply(s, 0, "%s", reply);
	else
		session_reply(s, 0, "250 2.1.5 Ok");
	session_enter(s, SS_RCPT);
}

/* Apply the behaviour rule `r` to recipient `addr` at RCPT. */
static void
rcpt_rule(struct sink_session *s, const struct sink_rule *r, const char *addr)
{
	char buf[SINK_REPLY_MAX] = "";

	if (r->reply != NULL)
		sink_rules_format(r->reply, addr, buf, sizeof(buf));
	if (r->stage == STAGE_DATA || r->stage == STAGE_DELAY) {
		/* Accepted now; the rule acts at the end of data. */
		if (r->stage == STAGE_DELAY && r->delay_ms > s->data_delay_ms)
			s->data_delay_ms = r->delay_ms;
		if (r->reply != NULL && s->data_reply[0] == '\0')
			memcpy(s->data_reply, buf, strlen(buf) + 1);
		rcpt_accept(s, addr, NULL);
		return;
	}
	if (r->stage == STAGE_ONCE && sink_once_seen(addr)) {
		rcpt_accept(s, addr, NULL);
		return;
	}
	if (r->code / 100 == 2) {
		rcpt_accept(s, addr, buf);
		return;
	}
	session_rcpt_refused(r->code);
	session_reply(s, 0, "%s", buf);
	if (r->stage == STAGE_CLOSE || r->code == 421)
		session_close_after(s);
}

static void
cmd_rcpt(struct sink_session *s, char *arg)
{
	char *addr, *params, *p;
	const struct sink_rule *r;

	if (session_path(arg, "TO:", &addr, &params) != 0) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if ((p = param_next(&params)) != NULL) {
		session_reply(s, 0, "555 5.5.4 unsupported parameter %.64s", p);
		return;
	}
	if (*addr == '\0') {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.1.3 empty recipient address");
		return;
	}
	if (s->nrcpt >= sink.conf.max_rcpt) {
		sink.stats.deferred_rcpt++;
		session_reply(s, 0, "452 4.5.3 too many recipients");
		return;
	}
	if (has_8bit(addr) && !s->smtputf8) {
		sink.stats.rejected_rcpt++;
		session_reply(s, 0,
			      "553 5.6.7 non-ASCII address without SMTPUTF8");
		return;
	}
	if ((r = sink_rules_match(addr)) != NULL)
		rcpt_rule(s, r, addr);
	else
		rcpt_accept(s, addr, NULL);
}

static void
cmd_data(struct sink_session *s, char *arg)
{
	if (*arg != '\0') {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->mflags & MF_BDAT) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "503 5.5.1 DATA after BDAT");
		return;
	}
	if (s->nrcpt == 0) {
		session_reply(s, 0, "554 5.5.1 no valid recipients");
		return;
	}
	session_reply(s, 0, "354 End data with <CR><LF>.<CR><LF>");
	s->dstate = DS_BOL;
	s->prev = '\n';
	session_enter(s, SS_DATA);
}

static int
session_store(struct sink_session *s, uint64_t seq)
{
	char tmp[4096], path[4096];
	struct evbuffer *hdr;
	const char *to;
	int fd, failed, rc = -1;

	if (snprintf(tmp, sizeof(tmp), "%s/.%08" PRIu64 ".tmp",
		     sink.conf.maildir, seq) >= (int)sizeof(tmp) ||
	    snprintf(path, sizeof(path), "%s/%08" PRIu64 ".eml",
		     sink.conf.maildir, seq) >= (int)sizeof(path))
		return -1;
	if ((hdr = evbuffer_new()) == NULL)
		return -1;
	evbuffer_add(s->to, "", 1);
	to = (const char *)evbuffer_pullup(s->to, -1);
	evbuffer_add_printf(
	    hdr,
	    "X-Sink-Envelope: from=<%s> to=%s tls=%s src=%s listen=%s "
	    "helo=%s body=%s smtputf8=%s\r\n",
	    s->from, to != NULL ? to : "",
	    s->tls_version ? s->tls_version : "none", s->src,
	    sink.listeners[s->listener].st.name, s->helo,
	    s->body[0] ? s->body : "-", s->smtputf8 ? "yes" : "no");
	evbuffer_prepend_buffer(s->msg, hdr);
	evbuffer_free(hdr);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto done;
	while (evbuffer_get_length(s->msg) > 0)
		if (evbuffer_write(s->msg, fd) < 0 && errno != EINTR)
			break;
	failed = evbuffer_get_length(s->msg) > 0;
	if (close(fd) != 0)
		failed = 1;
	if (failed || rename(tmp, path) != 0) {
		unlink(tmp);
		goto done;
	}
	rc = 0;
done:
	if (rc != 0)
		sink_log("maildir: %s: %s", path, strerror(errno));
	return rc;
}

static void
session_accepted(struct sink_session *s)
{
	struct sink_stats *st = &sink.stats;
	struct sink_peer_stats *c = session_client(s);
	struct sink_peer_stats *l = &sink.listeners[s->listener].st;
	double now = sink_now();

	st->messages++;
	st->recipients += s->nrcpt;
	st->bytes += s->msg_bytes;
	if (s->mflags & MF_BDAT)
		st->bdat_messages++;
	if (st->first_message_time == 0)
		st->first_message_time = now;
	st->last_message_time = now;
	sink_stats_hist_add(&st->hist_messages, (int64_t)now);
	l->messages++;
	l->recipients += s->nrcpt;
	if (c != NULL) {
		c->messages++;
		c->recipients += s->nrcpt;
	}
}

/*
 * The end of the message text (DATA's dot or BDAT LAST): the one place
 * that decides the message's fate and says so.
 */
static void
session_eom(struct sink_session *s)
{
	const char *r = NULL;
	int code = 250;
	uint64_t seq;

	s->msgs++;
	if (s->mflags & MF_BARELF)
		sink.stats.bare_lf_messages++;
	if (s->mflags & MF_TOOBIG) {
		r = "552 5.3.4 message size exceeds fixed maximum message size";
	} else if (s->mflags & MF_8BIT) {
		r = "554 5.6.0 8-bit data to a 7-bit receiver";
	} else if (s->data_reply[0] != '\0') {
		r = s->data_reply;
	} else if (sink.conf.data_reply != NULL)
		r = sink.conf.data_reply;
	if (r != NULL)
		code = reply_code(r);
	if (code / 100 == 2) {
		seq = ++sink.seq;
		if (s->msg != NULL && session_store(s, seq) != 0) {
			r = "451 4.3.0 cannot store the message";
			code = 451;
		} else {
			session_accepted(s);
			if (r == NULL)
				session_reply(
				    s, s->data_delay_ms,
				    "250 2.0.0 Ok: queued as %08" PRIu64, seq);
		}
	}
	if (code / 100 == 4)
		sink.stats.data_deferred++;
	else if (code / 100 == 5)
		sink.stats.data_rejected++;
	if (r != NULL)
		session_reply(s, s->data_delay_ms, "%s", r);
	session_txn_reset(s);
	session_enter(s, SS_READY);
	if (code == 421)
		session_close_after(s);
}

static void
session_emit(struct sink_session *s, const unsigned char *p, size_t n)
{
	size_t i;

	if (n == 0)
		return;
	s->msg_bytes += n;
	if (!sink.conf.eightbitmime && !(s->mflags & MF_8BIT))
		for (i = 0; i < n; i++)
			if (p[i] & 0x80) {
				s->mflags |= MF_8BIT;
				break;
			}
	if (s->msg_bytes > sink.conf.max_size && !(s->mflags & MF_TOOBIG)) {
		s->mflags |= MF_TOOBIG;
		if (s->msg != NULL)
			evbuffer_drain(s->msg, evbuffer_get_length(s->msg));
	}
	if (s->msg != NULL && !(s->mflags & MF_TOOBIG))
		evbuffer_add(s->msg, p, n);
}

/*
 * Scan DATA text for CRLF.CRLF, undoing dot-stuffing, chunk by chunk
 * without copying the input (memchr runs over the line bodies).  Only an
 * LF after CR ends a line.  Returns 1 if it consumed input, 0 if none.
 */
static int
session_data_read(struct sink_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[SESSION_IOV];
	size_t used = 0;
	int n, i, done = 0;

	n = evbuffer_peek(in, -1, NULL, v, SESSION_IOV);
	if (n > SESSION_IOV)
		n = SESSION_IOV;
	for (i = 0; i < n && !done; i++) {
		const unsigned char *base = v[i].iov_base, *p = base;
		const unsigned char *end = p + v[i].iov_len, *run = p, *lf;

		while (p < end && !done) {
			switch (s->dstate) {
			case DS_MID:
				lf = memchr(p, '\n', (size_t)(end - p));
				if (lf == NULL) {
					s->prev = end[-1];
					p = end;
					break;
				}
				if ((lf > p ? lf[-1] : s->prev) == '\r')
					s->dstate = DS_BOL;
				else
					s->mflags |= MF_BARELF;
				s->prev = '\n';
				p = lf + 1;
				break;
			case DS_BOL:
				if (*p != '.') {
					s->dstate = DS_MID;
					break;
				}
				session_emit(s, run, (size_t)(p - run));
				run = ++p; /* drop the dot */
				s->dstate = DS_DOT;
				break;
			case DS_DOT:
				if (*p != '\r') {
					s->prev = '.';
					s->dstate = DS_MID;
					break;
				}
				run = ++p; /* hold the CR back */
				s->dstate = DS_DOTCR;
				break;
			case DS_DOTCR:
				if (*p == '\n') {
					run = ++p;
					done = 1;
					break;
				}
				session_emit(s, (const unsigned char *)"\r", 1);
				s->prev = '\r';
				s->dstate = DS_MID;
				break;
			}
		}
		session_emit(s, run, (size_t)(p - run));
		used += (size_t)(p - base);
	}
	if (used > 0)
		evbuffer_drain(in, used);
	if (done)
		session_eom(s);
	return used > 0;
}

static void
cmd_bdat(struct sink_session *s, char *arg)
{
	char *end;
	unsigned long long size;

	if (!sink.conf.chunking) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "502 5.5.1 BDAT not offered");
		return;
	}
	errno = 0;
	size = strtoull(arg, &end, 10);
	if (!isdigit((unsigned char)*arg) || errno != 0 ||
	    (*end != '\0' && strcasecmp(end, " LAST") != 0)) {
		/* Where the chunk ends is unknown: give up the session. */
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: BDAT size [LAST]");
		session_close_after(s);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = *end != '\0';
	s->bdat_back = s->state;
	s->bdat_err[0] = '\0';
	if (s->state == SS_HELO || s->state == SS_READY)
		snprintf(s->bdat_err, sizeof(s->bdat_err),
			 "503 5.5.1 BDAT without MAIL");
	else if (s->nrcpt == 0)
		snprintf(s->bdat_err, sizeof(s->bdat_err),
			 "554 5.5.1 no valid recipients");
	else
		s->mflags |= MF_BDAT;
	session_enter(s, SS_BDAT);
}

/* Scan `len` octets at the head of `in` for 8-bit ones. */
static void
bdat_8bit(struct sink_session *s, struct evbuffer *in, size_t len)
{
	struct evbuffer_iovec v[SESSION_IOV];
	int n, i;
	size_t j;

	n = evbuffer_peek(in, (ev_ssize_t)len, NULL, v, SESSION_IOV);
	if (n > SESSION_IOV)
		n = SESSION_IOV;
	for (i = 0; i < n && len > 0; i++) {
		const unsigned char *p = v[i].iov_base;
		size_t m = v[i].iov_len < len ? v[i].iov_len : len;

		for (j = 0; j < m; j++)
			if (p[j] & 0x80) {
				s->mflags |= MF_8BIT;
				return;
			}
		len -= m;
	}
}

/* Take the octets of a BDAT chunk; returns 1 if it progressed, else 0. */
static int
session_bdat_read(struct sink_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t avail = evbuffer_get_length(in), k;

	k = s->bdat_left < avail ? (size_t)s->bdat_left : avail;
	if (k == 0 && s->bdat_left > 0)
		return 0;
	if (s->bdat_err[0] == '\0') {
		/* Chunks are small enough to scan whole (bounded by input). */
		if (!sink.conf.eightbitmime && !(s->mflags & MF_8BIT))
			bdat_8bit(s, in, k);
		s->msg_bytes += k;
		if (s->msg_bytes > sink.conf.max_size &&
		    !(s->mflags & MF_TOOBIG)) {
			s->mflags |= MF_TOOBIG;
			if (s->msg != NULL)
				evbuffer_drain(s->msg,
					       evbuffer_get_length(s->msg));
		}
	}
	if (s->bdat_err[0] == '\0' && s->msg != NULL &&
	    !(s->mflags & MF_TOOBIG))
		evbuffer_remove_buffer(in, s->msg, k);
	else
		evbuffer_drain(in, k);
	s->bdat_left -= k;
	if (s->bdat_left > 0)
		return 1;
	if (s->bdat_err[0] != '\0') {
		session_reply(s, 0, "%s", s->bdat_err);
		if (s->bdat_back == SS_HELO) {
			session_enter(s, SS_HELO);
		} else {
			session_txn_reset(s);
			session_enter(s, SS_READY);
		}
	} else if (s->bdat_last) {
		session_eom(s);
	} else {
		session_reply(s, 0, "250 2.0.0 %" PRIu64 " octets received",
			      s->msg_bytes);
		session_enter(s, SS_RCPT);
	}
	return 1;
}

static void
cmd_rset(struct sink_session *s, char *arg)
{
	(void)arg;
	session_txn_reset(s);
	if (s->state != SS_HELO)
		session_enter(s, SS_READY);
	session_reply(s, 0, "250 2.0.0 Ok");
}

static void
cmd_noop(struct sink_session *s, char *arg)
{
	(void)arg;
	session_reply(s, 0, "250 2.0.0 Ok");
}

static void
cmd_quit(struct sink_session *s, char *arg)
{
	(void)arg;
	session_reply(s, 0, "221 2.0.0 Bye");
	session_close_after(s);
}

static void
cmd_vrfy(struct sink_session *s, char *arg)
{
	(void)arg;
	session_reply(s, 0, "252 2.0.0 Cannot VRFY user");
}

static void
cmd_help(struct sink_session *s, char *arg)
{
	(void)arg;
	session_reply(s, 0, "214 2.0.0 outpost-sink");
}

static void
cmd_starttls(struct sink_session *s, char *arg)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	if (!sink.conf.starttls && !sink.conf.tls_broken) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "502 5.5.1 STARTTLS not offered");
		return;
	}
	if (s->tls) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "503 5.5.1 TLS already active");
		return;
	}
	if (*arg != '\0') {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	/* RFC 3207 5: nothing sent before the handshake may survive it. */
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_disable(s->bev, EV_READ);
	session_txn_reset(s);
	s->helo[0] = '\0';
	session_reply(s, 0, "220 2.0.0 Ready to start TLS");
	s->flags |= SF_STARTTLS;
	session_enter(s, SS_TLS);
}

static const struct session_cmd {
	const char *verb;
	uint32_t bit;
	void (*proceed)(struct sink_session *, char *);
} session_cmds[] = {
	{ "EHLO", CMD_EHLO, cmd_ehlo },
	{ "HELO", CMD_HELO, cmd_helo },
	{ "MAIL", CMD_MAIL, cmd_mail },
	{ "RCPT", CMD_RCPT, cmd_rcpt },
	{ "DATA", CMD_DATA, cmd_data },
	{ "BDAT", CMD_BDAT, cmd_bdat },
	{ "RSET", CMD_RSET, cmd_rset },
	{ "NOOP", CMD_NOOP, cmd_noop },
	{ "QUIT", CMD_QUIT, cmd_quit },
	{ "VRFY", CMD_VRFY, cmd_vrfy },
	{ "HELP", CMD_HELP, cmd_help },
	{ "STARTTLS", CMD_STARTTLS, cmd_starttls },
};

static void
session_command(struct sink_session *s, char *line, size_t len)
{
	const struct session_cmd *c = NULL;
	size_t i, vlen = strcspn(line, " ");
	char *arg = line + vlen;

	if (sink.conf.verbose)
		session_trace(s, "<", line, len);
	while (*arg == ' ')
		arg++;
	for (i = 0; i < sizeof(session_cmds) / sizeof(session_cmds[0]); i++)
		if (strlen(session_cmds[i].verb) == vlen &&
		    strncasecmp(line, session_cmds[i].verb, vlen) == 0) {
			c = &session_cmds[i];
			break;
		}
	if (c == NULL) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "502 5.5.2 command not recognized");
		return;
	}
	if (!(ss_info[s->state].cmds_ok & c->bit)) {
		sink.stats.protocol_errors++;
		if (s->state == SS_REFUSED)
			session_reply(s, 0, "503 5.5.1 service refused, QUIT");
		else if (s->state == SS_HELO)
			session_reply(s, 0, "503 5.5.1 send EHLO/HELO first");
		else
			session_reply(s, 0, "503 5.5.1 bad command sequence");
		return;
	}
	c->proceed(s, arg);
}

/* Take one command line; returns 1 if it consumed input, else 0. */
static int
session_line(struct sink_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char line[SESSION_CMD_MAX + 1];
	struct evbuffer_ptr eol;
	size_t len = evbuffer_get_length(in), n;

	if (len == 0)
		return 0;
	eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (len < SESSION_CMD_MAX)
			return 0;
		if (!(s->flags & SF_LONGLINE)) {
			sink.stats.protocol_errors++;
			session_reply(s, 0, "500 5.5.2 line too long");
		}
		s->flags |= SF_LONGLINE;
		evbuffer_drain(in, len);
		return 1;
	}
	n = (size_t)eol.pos + 1;
	if ((s->flags & SF_LONGLINE) || n > SESSION_CMD_MAX) {
		if (!(s->flags & SF_LONGLINE)) {
			sink.stats.protocol_errors++;
			session_reply(s, 0, "500 5.5.2 line too long");
		}
		s->flags &= ~SF_LONGLINE;
		evbuffer_drain(in, n);
		return 1;
	}
	evbuffer_remove(in, line, n);
	if (evbuffer_get_length(in) > 0)
		sink.stats.pipelined_commands++;
	if (n < 2 || line[n - 2] != '\r') {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "500 5.5.2 bare LF in command");
		return 1;
	}
	line[n - 2] = '\0';
	if (memchr(line, '\0', n - 2) != NULL) {
		sink.stats.protocol_errors++;
		session_reply(s, 0, "500 5.5.2 NUL in command");
		return 1;
	}
	session_command(s, line, n - 2);
	return 1;
}

/*
 * Parse what the input holds, one command (or one stretch of message
 * text) at a time, until it runs dry or a reply must go out first.
 */
static void
session_process(struct sink_session *s)
{
	struct evbuffer *out;
	int progressed;

	while (!(s->flags & SF_WAIT)) {
		out = bufferevent_get_output(s->bev);
		if (evbuffer_get_length(out) > SESSION_OUTPUT_MAX) {
			/* The client sends but reads no replies: wait. */
			s->flags |= SF_READ_OFF;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		switch (s->state) {
		case SS_DATA:
			progressed = session_data_read(s);
			break;
		case SS_BDAT:
			progressed = session_bdat_read(s);
			break;
		case SS_TLS:
		case SS_CLOSING:
			return;
		default:
			progressed = session_line(s);
			break;
		}
		if (!progressed)
			return;
	}
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct sink_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (s->state == SS_TLS || s->state == SS_CLOSING) {
		/* --tls-broken=hang, or a closing session: ignore. */
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	session_process(s);
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink_session *s = arg;

	(void)fd;
	(void)what;
	s->flags &= ~SF_WAIT;
	bufferevent_write_buffer(s->bev, s->pending);
	if (s->flags & SF_CLOSE_AFTER) {
		session_closing(s);
		return;
	}
	session_process(s);
}

static void
session_tls_garbage(struct sink_session *s)
{
	static const char junk[] = "\x15\x03\x01\x00\x02\x02\x46"
				   "this is not TLS\r\n";

	bufferevent_write(s->bev, junk, sizeof(junk) - 1);
	session_closing(s);
}

/*
 * The 220 to STARTTLS is flushed: hand the socket to OpenSSL (or
 * misbehave as --tls-broken says).  May free the session.
 */
static void
session_starttls(struct sink_session *s)
{
	struct timeval to = { sink.conf.timeout_s, 0 };
	struct bufferevent *tb;
	SSL *ssl;

	s->flags &= ~SF_STARTTLS;
	switch (sink.conf.tls_broken) {
	case TLS_BROKEN_CLOSE:
		sink.stats.tls_broken++;
		session_free(s);
		return;
	case TLS_BROKEN_GARBAGE:
		sink.stats.tls_broken++;
		session_tls_garbage(s);
		return;
	case TLS_BROKEN_HANG:
		sink.stats.tls_broken++;
		bufferevent_enable(s->bev, EV_READ);
		return;
	case TLS_BROKEN_NONE:
		break;
	}
	if ((ssl = SSL_new(sink.ssl_ctx)) == NULL) {
		session_free(s);
		return;
	}
	/* Detach the socket from the clear-text bufferevent, keep it open. */
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	bufferevent_setfd(s->bev, -1);
	bufferevent_free(s->bev);
	s->bev = NULL;
	tb = bufferevent_openssl_socket_new(sink.base, s->fd, ssl,
					    BUFFEREVENT_SSL_ACCEPTING,
					    BEV_OPT_CLOSE_ON_FREE);
	if (tb == NULL) {
		close(s->fd);
		session_free(s);
		return;
	}
	s->bev = tb;
	s->tls = 1;
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	bufferevent_setcb(tb, session_read_cb, session_write_cb,
			  session_event_cb, s);
	bufferevent_setwatermark(tb, EV_READ, 0, SESSION_INPUT_MAX);
	bufferevent_set_timeouts(tb, &to, &to);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct sink_session *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (s->state == SS_CLOSING) {
		session_free(s);
		return;
	}
	if ((s->flags & SF_STARTTLS) && !(s->flags & SF_WAIT)) {
		session_starttls(s);
		return;
	}
	if (s->flags & SF_READ_OFF) {
		s->flags &= ~SF_READ_OFF;
		bufferevent_enable(bev, EV_READ);
		session_process(s);
	}
}

static void
session_tls_up(struct sink_session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

	s->flags |= SF_TLS_UP;
	s->tls_version = ssl != NULL ? SSL_get_version(ssl) : "unknown";
	sink.stats.tls_connections++;
	if (ssl != NULL && SSL_session_reused(ssl))
		sink.stats.tls_resumed++;
	if (sink.conf.verbose)
		sink_log("%" PRIu64 " TLS %s %s", s->id, s->tls_version,
			 ssl != NULL ? SSL_get_cipher_name(ssl) : "");
	session_enter(s, SS_HELO);
	session_process(s);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sink_session *s = arg;
	unsigned long e;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		session_tls_up(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
	    s->state != SS_CLOSING) {
		sink.stats.timeouts++;
		bufferevent_write(s->bev, "421 4.4.2 timeout\r\n", 19);
		session_closing(s);
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    s->state != SS_TLS &&
	    ((s->flags & SF_WAIT) ||
	     evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)) {
		/* A half-close: the replies still owed go out first. */
		if (s->state != SS_CLOSING)
			session_close_after(s);
		return;
	}
	if (s->tls && !(s->flags & SF_TLS_UP)) {
		sink.stats.tls_failures++;
		while ((e = bufferevent_get_openssl_error(s->bev)) != 0)
			if (sink.conf.verbose)
				sink_log("%" PRIu64 " TLS handshake: %s", s->id,
					 ERR_reason_error_string(e));
	} else if (s->tls) {
		while (bufferevent_get_openssl_error(s->bev) != 0)
			continue;
	}
	if (sink.conf.verbose)
		sink_log("%" PRIu64 " closed (%s%s%s)", s->id,
			 what & BEV_EVENT_EOF ? "eof" : "",
			 what & BEV_EVENT_ERROR ? "error" : "",
			 what & BEV_EVENT_TIMEOUT ? "timeout" : "");
	session_free(s);
}

static void
session_count_connection(struct sink_session *s)
{
	struct sink_stats *st = &sink.stats;
	struct sink_peer_stats *l = &sink.listeners[s->listener].st;
	struct sink_peer_stats *c = session_client(s);

	st->connections_total++;
	l->connections++;
	if (c != NULL)
		c->connections++;
	sink_stats_hist_add(&st->hist_connections, (int64_t)sink_now());
	if (sink.conf.max_connections &&
	    st->connections_now >= sink.conf.max_connections) {
		s->flags |= SF_REFUSED;
		st->connections_refused++;
		return;
	}
	if (++st->connections_now > st->connections_max)
		st->connections_max = st->connections_now;
	if (++l->connections_now > l->connections_max)
		l->connections_max = l->connections_now;
	if (c != NULL && ++c->connections_now > c->connections_max)
		c->connections_max = c->connections_now;
}

/*
 * sink_session_accept: start a session on accepted socket `fd` from
 * listener `l` (takes ownership of fd).  Loop thread.
 */
void
sink_session_accept(struct sink_listener *l, int fd, const struct sockaddr *sa,
		    int socklen)
{
	struct timeval to = { sink.conf.timeout_s, 0 };
	struct sink_peer_stats *c;
	struct sink_session *s;
	int one = 1;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return;
	}
	s->id = ++sink.sessions;
	s->fd = fd;
	s->listener = (size_t)(l - sink.listeners);
	if (getnameinfo(sa, (socklen_t)socklen, s->src, sizeof(s->src), NULL, 0,
			NI_NUMERICHOST) != 0)
		snprintf(s->src, sizeof(s->src), "unknown");
	c = sink_stats_client(s->src);
	s->client = c != NULL ? (size_t)(c - sink.stats.clients) : SIZE_MAX;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->bev = bufferevent_socket_new(sink.base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->timer = evtimer_new(sink.base, session_timer_cb, s);
	s->pending = evbuffer_new();
	s->to = evbuffer_new();
	if (sink.conf.maildir != NULL)
		s->msg = evbuffer_new();
	s->flags |= SF_REFUSED; /* not counted live until counted */
	s->next_s = sink.live;
	if (sink.live != NULL)
		sink.live->prev_s = s;
	sink.live = s;
	if (s->bev == NULL || s->timer == NULL || s->pending == NULL ||
	    s->to == NULL || (sink.conf.maildir != NULL && s->msg == NULL)) {
		if (s->bev == NULL)
			close(fd);
		session_free(s);
		return;
	}
	s->flags &= ~SF_REFUSED;
	session_count_connection(s);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
			  session_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SESSION_INPUT_MAX);
	bufferevent_set_timeouts(s->bev, &to, &to);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (sink.conf.verbose)
		sink_log("%" PRIu64 " connect from %s to %s%s", s->id, s->src,
			 l->st.name, s->flags & SF_REFUSED ? " (refused)" : "");
	if (s->flags & SF_REFUSED) {
		session_reply(s, 0,
			      "421 4.7.0 too many connections, try later");
		session_close_after(s);
		return;
	}
	session_greet(s);
}

/*
 * sink_session_free_all: close every session (at exit).
 */
void
sink_session_free_all(void)
{
	while (sink.live != NULL)
		session_free(sink.live);
}
