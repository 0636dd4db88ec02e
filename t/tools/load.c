/*
 * load.c — outpost-load, the project's SMTP load generator (make demo, the
 * integration and crash tests, make bench).  Owns N client sessions on one
 * libevent loop; each is a pipelined SMTP client whose send cursor runs ahead
 * of its reply cursor (a ring of expected replies, as Postfix smtp_proto.c).
 * Invariants: every message gets exactly one outcome and is sent again only
 * if the server answered none of its commands and saw none of its content;
 * it counts as accepted (and its id reaches --ids) only once its 250 after
 * end of data has been read.  Must not: connect anywhere but --host.
 * Single-threaded; only main() blocks (set-up).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "t/tools/load_mime.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define LOAD_EXIT_OK          0
#define LOAD_EXIT_REFUSED     1
#define LOAD_EXIT_FAIL        2
#define LOAD_REPLY_LINE_MAX   4096 /* longest reply line we accept, bytes */
#define LOAD_REPLY_TEXT_MAX   256  /* first reply line kept for the report */
#define LOAD_CMD_LINE_MAX     2048
#define LOAD_ADDR_MAX         256
#define LOAD_HDR_MAX          2048 /* generated header block, bytes */
#define LOAD_BDAT_CHUNK_BYTES (1024 * 1024)
#define LOAD_RECONNECT_MAX    8 /* consecutive failures, then give up */
#define LOAD_BACKOFF_BASE_MS  25
#define LOAD_BACKOFF_MAX_MS   2000
#define LOAD_PROGRESS_MS      100 /* ≤ 10 redraws per second */
#define LOAD_IDS_FLUSH_MS     100
#define LOAD_DRAIN_MS         2000 /* wait for 221s after the last outcome */
#define LOAD_NOSLOT           0xff
#define LOAD_SLOTS            2 /* messages in flight per session */

enum load_stage { STG_MAIL, STG_RCPT, STG_DATA, STG_EOD, STG__COUNT };
static const char *const load_stage_names[STG__COUNT] = { "mail", "rcpt",
							  "data", "eod" };

/* What the next reply answers (one ring entry per command written). */
enum load_exp {
	EXP_GREETING,
	EXP_EHLO,
	EXP_STARTTLS,
	EXP_AUTH,
	EXP_MAIL,
	EXP_RCPT,
	EXP_DATA,
	EXP_BDAT,      /* a BDAT chunk that is not the last */
	EXP_BDAT_LAST, /* end of data, BDAT flavour */
	EXP_DOT,       /* end of data, DATA flavour */
	EXP_RSET,
	EXP_QUIT,
};

enum load_state {
	LS_IDLE,       /* no connection: waiting to (re)connect */
	LS_CONNECTING, /* TCP (and implicit TLS) handshake */
	LS_GREETING,
	LS_EHLO,
	LS_STARTTLS,
	LS_HANDSHAKE, /* TLS handshake after STARTTLS */
	LS_AUTH,
	LS_MAIL, /* mail transactions */
	LS_QUIT,
	LS_DONE, /* finished for good */
	LS__COUNT
};

static const struct load_state_info {
	const char *name;
	bool connected; /* a bufferevent exists in this state */
} load_state_info[LS__COUNT] = {
	[LS_IDLE] = { "idle", false },
	[LS_CONNECTING] = { "connecting", true },
	[LS_GREETING] = { "greeting", true },
	[LS_EHLO] = { "ehlo", true },
	[LS_STARTTLS] = { "starttls", true },
	[LS_HANDSHAKE] = { "handshake", true },
	[LS_AUTH] = { "auth", true },
	[LS_MAIL] = { "mail", true },
	[LS_QUIT] = { "quit", true },
	[LS_DONE] = { "done", false },
};

struct load_opts {
	const char *host;
	const char *port;
	unsigned sessions;
	uint64_t count;
	size_t size;
	unsigned rcpts;
	const char *from;
	const char *to;
	unsigned domains;
	const char *ehlo;
	uint64_t msgs_per_session;
	bool pipelining, bdat, starttls, tls, json, verbose;
	const char *auth;
	int progress; /* 0 never, 1 if stderr is a tty, 2 always */
	unsigned timeout_s;
	double max_time_s;
	const char *ids;
	const char *body_file;
	enum load_mime_mode attach; /* --attachment */
	size_t attach_bytes;
};

struct load_exp_entry {
	uint8_t kind; /* enum load_exp */
	uint8_t slot; /* message slot, or LOAD_NOSLOT */
};

struct load_msg {
	uint64_t seq;
	uint64_t rcpt_base; /* recipient counter of its first RCPT */
	unsigned pending;   /* ring entries that refer to this slot */
	bool done;          /* outcome recorded */
	bool replied;       /* the server answered one of its commands */
	bool mail_ok;
	bool rcpt_4xx; /* some RCPT got a 4xx */
	unsigned rcpt_sent, rcpt_replies, rcpt_ok;
	int rcpt_code; /* last refusal, for the all-refused outcome */
	bool eod_written;
	uint64_t t_eod_us; /* end of data written (then: flushed to kernel) */
	size_t total;      /* header + body octets (BDAT) */
	size_t bdat_off;   /* octets already sent in BDAT chunks */
	size_t hdr_len;
	char hdr[LOAD_HDR_MAX];
};

struct load_run;

struct load_session {
	struct load_run *run;
	unsigned id;
	enum load_state state; /* written only by load_session_enter() */
	struct bufferevent *bev;
	struct event *retry_ev;
	unsigned consec_fail;
	uint64_t msgs_this_conn;
	bool tls_on, authed, pipelining_on, bdat_on;
	bool cap_pipelining, cap_chunking, cap_starttls, cap_auth_plain;
	bool cap_size;
	bool in_reply; /* inside a multi-line reply */
	int reply_code;
	char reply_text[LOAD_REPLY_TEXT_MAX];
	struct load_exp_entry *exp; /* ring of expected replies */
	unsigned exp_head, exp_len, exp_cap;
	unsigned eod_unflushed; /* bit per slot: end of data not yet flushed */
	struct load_msg msg[LOAD_SLOTS];
};

/* Log-bucket latency histogram (HDR style): exact below 256 µs, then 128
 * sub-buckets per power of two, i.e. within 0.8 %. */
#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  (2 * HIST_SUB + (32 - HIST_SUB_BITS - 1) * HIST_SUB)

struct load_hist {
	uint64_t n, sum_us, max_us;
	uint64_t b[HIST_BUCKETS];
};

struct load_run {
	struct load_opts o;
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool host_is_name; /* send SNI */
	struct load_session *sessions;
	unsigned nsessions, live;

	/* the message: generated header block per message + a static body */
	char *body_raw; /* CRLF lines; for BDAT */
	size_t body_raw_len;
	char *body_dot; /* dot-stuffed, ending with ".\r\n"; for DATA */
	size_t body_dot_len;
	bool generated;   /* false with --body-file: no per-message headers */
	size_t msg_bytes; /* typical message size on the wire, unstuffed */
	const char *from_domain;
	struct load_mime mime; /* --attachment: the campaign-like message */
	char msgid_tag[64];
	char date[64];
	time_t date_sec;
	char size_param[32]; /* scratch for " SIZE=n" */
	char auth_line[LOAD_CMD_LINE_MAX];

	/* counters; attempted = accepted + rejected + failed + unfinished */
	uint64_t next_seq, started, requeued, rcpt_counter, outcomes;
	uint64_t sent, accepted, failed;
	uint64_t unfinished, rej[STG__COUNT][2], rcpts_ok, rcpts_rej[2];
	uint64_t connections, conn_errors, closed_421, gave_up;
	bool used_pipelining, used_bdat, warned_pipe, warned_bdat;
	struct load_hist hist;

	uint64_t t_start_us, t_last_us;
	struct event *progress_ev, *maxtime_ev, *ids_ev, *drain_ev;
	struct event *sigint_ev, *sigterm_ev;
	bool progress_on, progress_tty;
	int ids_fd;
	struct evbuffer *ids_buf;
	bool stopping, fatal, timed_out;
	int interrupted; /* the signal that stopped the run, or 0 */
	char error[400];
};

static void load_session_connect(struct load_session *s);
static void load_session_next(struct load_session *s, bool rset);
static void load_run_abort(struct load_run *r);
static void load_read_cb(struct bufferevent *bev, void *arg);
static void load_write_cb(struct bufferevent *bev, void *arg);
static void load_event_cb(struct bufferevent *bev, short what, void *arg);

/* Time, histogram, small helpers ---------------------------------------- */

static uint64_t
load_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned
load_hist_index(uint64_t v)
{
	unsigned k;

	if (v > UINT32_MAX)
		v = UINT32_MAX;
	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	k = 63 - (unsigned)__builtin_clzll(v); /* 2^k <= v < 2^(k+1), k > 7 */
	return 2 * HIST_SUB + (k - HIST_SUB_BITS - 1) * HIST_SUB +
	       (unsigned)((v >> (k - HIST_SUB_BITS)) - HIST_SUB);
}

/* The highest value that falls in bucket i (HDR "highest equivalent"). */
static uint64_t
load_hist_high(unsigned i)
{
	unsigned j, k;
	uint64_t sub;

	if (i < 2 * HIST_SUB)
		return i;
	j = i - 2 * HIST_SUB;
	k = j / HIST_SUB + HIST_SUB_BITS + 1;
	sub = j % HIST_SUB + HIST_SUB;
	return (sub << (k - HIST_SUB_BITS)) +
	       ((uint64_t)1 << (k - HIST_SUB_BITS)) - 1;
}

static void
load_hist_add(struct load_hist *h, uint64_t us)
{
	h->b[load_hist_index(us)]++;
	h->n++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}

static double
load_hist_pct_ms(const struct load_hist *h, double pct)
{
	uint64_t rank, seen = 0;
	unsigned i;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)((pct / 100.0) * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t v = load_hist_high(i);
			return (double)(v < h->max_us ? v : h->max_us) / 1000.0;
		}
	}
	return (double)h->max_us / 1000.0;
}

/* An address, host name or EHLO name from the command line: printable, no
 * space, no angle brackets, bounded. */
static bool
load_arg_plain(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++)
		if (*s <= ' ' || *s >= 0x7f || *s == '<' || *s == '>')
			return false;
	return n > 0 && n < max;
}

/* Expand --to: %u = recipient counter, %d = counter % --domains, %% = %.
 * Returns the length, or -1 if the pattern is bad or the result too long. */
static int
load_rcpt_format(const struct load_opts *o, uint64_t n, char *buf, size_t size)
{
	size_t len = 0;
	const char *p;
	int w;

	for (p = o->to; *p != '\0'; p++) {
		if (*p != '%') {
			if (len + 1 >= size)
				return -1;
			buf[len++] = *p;
			continue;
		}
		p++;
		if (*p == 'u')
			w = snprintf(buf + len, size - len, "%" PRIu64, n);
		else if (*p == 'd')
			w = snprintf(buf + len, size - len, "%" PRIu64,
				     n % o->domains);
		else if (*p == '%')
			w = snprintf(buf + len, size - len, "%%");
		else
			return -1;
		if (w < 0 || (size_t)w >= size - len)
			return -1;
		len += (size_t)w;
	}
	buf[len] = '\0';
	return (int)len;
}

static void
load_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* The message ------------------------------------------------------------ */

static const char *const load_words[] = {
	"Lorem",       "ipsum",        "dolor",      "sit",     "amet",
	"consectetur", "adipiscing",   "elit",       "sed",     "do",
	"eiusmod",     "tempor",       "incididunt", "ut",      "labore",
	"et",          "dolore",       "magna",      "aliqua",  "Ut",
	"enim",        "ad",           "minim",      "veniam",  "quis",
	"nostrud",     "exercitation", "ullamco",    "laboris", "nisi",
	"aliquip",     "ex",           "ea",         "commodo", "consequat"
};
#define LOAD_NWORDS     (sizeof(load_words) / sizeof(load_words[0]))
#define LOAD_LINE_CHARS 72

/* A body of exactly `len` octets (at least 2): printable lines of at most
 * LOAD_LINE_CHARS, CRLF-terminated, none starting with '.'. */
static char *
load_body_generate(size_t len)
{
	char *b, line[LOAD_LINE_CHARS + 1];
	size_t off = 0, n, w, lineno = 0;

	if (len < 2)
		len = 2;
	if ((b = malloc(len + 1)) == NULL)
		return NULL;
	while (len - off >= 2) {
		size_t room = len - off - 2;
		n = 0;
		for (w = lineno * 7; n < LOAD_LINE_CHARS; w++) {
			const char *word = load_words[w % LOAD_NWORDS];
			size_t wl = strlen(word);
			if (n + (n > 0) + wl > LOAD_LINE_CHARS)
				break;
			if (n > 0)
				line[n++] = ' ';
			memcpy(line + n, word, wl);
			n += wl;
		}
		if (n > room)
			n = room;
		while (n > 0 && line[n - 1] == ' ')
			line[n - 1] = 'x'; /* no trailing space */
		memcpy(b + off, line, n);
		off += n;
		b[off++] = '\r';
		b[off++] = '\n';
		lineno++;
	}
	if (off < len) { /* one octet left: widen the last line */
		memcpy(b + off - 2, "x\r\n", 3);
		off++;
	}
	b[off] = '\0';
	return b;
}

/* LF, CRLF and bare CR all become CRLF; the result ends with CRLF. */
static char *
load_crlf_normalise(const char *in, size_t len, size_t *outlen)
{
	char *out;
	size_t i, o = 0;

	if ((out = malloc(2 * len + 3)) == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (in[i] == '\r') {
			if (i + 1 < len && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
		} else if (in[i] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
		} else
			out[o++] = in[i];
	}
	if (o < 2 || out[o - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	*outlen = o;
	return out;
}

/* Dot-stuff a CRLF text (RFC 5321 4.5.2) and append the ".\r\n" end. */
static char *
load_dot_stuff(const char *in, size_t len, size_t *outlen)
{
	char *out;
	size_t i, o = 0;
	bool bol = true;

	if ((out = malloc(2 * len + 4)) == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	*outlen = o + 3;
	return out;
}

static void
load_date_refresh(struct load_run *r)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now == r->date_sec)
		return;
	r->date_sec = now;
	localtime_r(&now, &tm);
	if (strftime(r->date, sizeof(r->date), "%a, %d %b %Y %H:%M:%S %z",
		     &tm) == 0)
		r->date[0] = '\0';
}

/* The header block of message SEQ, first recipient RCPT0.  Returns the
 * length, or 0 if it does not fit. */
static size_t
load_headers_build(struct load_run *r, uint64_t seq, const char *rcpt0,
		   char *buf, size_t size)
{
	bool mime = r->o.attach != LOAD_MIME_NONE;
	size_t m;
	int n;

	load_date_refresh(r);
	n = snprintf(buf, size,
		     "From: <%s>\r\n"
		     "To: <%s>\r\n"
		     "Subject: outpost-load message %" PRIu64 "\r\n"
		     "Date: %s\r\n"
		     "Message-ID: <%" PRIu64 ".%s@%s>\r\n"
		     "MIME-Version: 1.0\r\n"
		     "%s",
		     r->o.from, rcpt0, seq, r->date, seq, r->msgid_tag,
		     r->from_domain,
		     mime ? ""
			  : "Content-Type: text/plain; charset=us-ascii\r\n"
			    "Content-Transfer-Encoding: 7bit\r\n"
			    "\r\n");
	if (n < 0 || (size_t)n >= size)
		return 0;
	if (!mime)
		return (size_t)n;
	/* The multipart's fields, text part and attachment head follow. */
	m = load_mime_head(&r->mime, seq, buf + n, size - (size_t)n);
	return m == 0 ? 0 : (size_t)n + m;
}

static int
load_body_file_read(struct load_run *r)
{
	FILE *f;
	char *raw = NULL, *p;
	size_t len = 0, cap = 0, n;

	if ((f = fopen(r->o.body_file, "rb")) == NULL) {
		fprintf(stderr, "outpost-load: %s: %s\n", r->o.body_file,
			strerror(errno));
		return -1;
	}
	for (;;) {
		if (len + 65536 > cap) {
			cap = cap ? 2 * cap : 131072;
			if ((p = realloc(raw, cap)) == NULL) {
				free(raw);
				fclose(f);
				return -1;
			}
			raw = p;
		}
		if ((n = fread(raw + len, 1, cap - len, f)) == 0)
			break;
		len += n;
	}
	fclose(f);
	r->body_raw =
	    load_crlf_normalise(raw ? raw : "", len, &r->body_raw_len);
	free(raw);
	return r->body_raw ? 0 : -1;
}

/* Build the static part of the message: body (generated to pad the message
 * to --size, or --body-file) in its BDAT and its dot-stuffed DATA forms. */
static int
load_message_prepare(struct load_run *r)
{
	char hdr[LOAD_HDR_MAX], rcpt[LOAD_ADDR_MAX];
	size_t hlen, target;
	const char *at = strrchr(r->o.from, '@');

	r->from_domain = at && at[1] ? at + 1 : "load.invalid";
	snprintf(r->msgid_tag, sizeof(r->msgid_tag), "%lld.%ld.load",
		 (long long)time(NULL), (long)getpid());
	if (r->o.body_file != NULL) {
		if (load_body_file_read(r) == -1)
			return -1;
	} else {
		r->generated = true;
		/* Size the body for a message number of typical width. */
		if (load_rcpt_format(&r->o, r->o.count, rcpt, sizeof(rcpt)) < 0)
			return -1;
		r->mime.mode = r->o.attach;
		if (r->o.attach != LOAD_MIME_NONE &&
		    load_mime_prepare(&r->mime, r->o.attach_bytes, r->msgid_tag,
				      &r->body_raw, &r->body_raw_len) == -1)
			return -1;
		hlen = load_headers_build(r, r->o.count / 2, rcpt, hdr,
					  sizeof(hdr));
		if (hlen == 0)
			return -1;
		r->msg_bytes = hlen;
		/* --size pads the plain message only. */
		if (r->o.attach == LOAD_MIME_NONE) {
			target = r->o.size > hlen + 2 ? r->o.size - hlen : 2;
			if ((r->body_raw = load_body_generate(target)) == NULL)
				return -1;
			r->body_raw_len = strlen(r->body_raw);
		}
	}
	r->msg_bytes += r->body_raw_len;
	r->body_dot =
	    load_dot_stuff(r->body_raw, r->body_raw_len, &r->body_dot_len);
	return r->body_dot ? 0 : -1;
}

/* Session plumbing ------------------------------------------------------- */

static void
load_session_enter(struct load_session *s, enum load_state st)
{
	if (s->run->o.verbose)
		fprintf(stderr, "[%u] %s -> %s\n", s->id,
			load_state_info[s->state].name,
			load_state_info[st].name);
	if (st == LS_DONE && s->state != LS_DONE)
		s->run->live--;
	s->state = st;
}

static void load_cmd(struct load_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append one command line (CRLF added) to the session's output. */
static void
load_cmd(struct load_session *s, const char *fmt, ...)
{
	char line[LOAD_CMD_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		fprintf(stderr, "outpost-load: command too long\n");
		abort();
	}
	if (s->run->o.verbose)
		fprintf(stderr, "[%u] > %s\n", s->id, line);
	line[n++] = '\r';
	line[n++] = '\n';
	evbuffer_add(bufferevent_get_output(s->bev), line, (size_t)n);
}

static void
load_exp_push(struct load_session *s, enum load_exp kind, unsigned slot)
{
	struct load_exp_entry *e;

	if (s->exp_len == s->exp_cap) {
		fprintf(stderr, "outpost-load: %s: reply ring full\n",
			__func__);
		abort();
	}
	e = &s->exp[(s->exp_head + s->exp_len) % s->exp_cap];
	e->kind = (uint8_t)kind;
	e->slot = (uint8_t)slot;
	s->exp_len++;
	if (slot != LOAD_NOSLOT)
		s->msg[slot].pending++;
}

static int
load_exp_pop(struct load_session *s, struct load_exp_entry *out)
{
	if (s->exp_len == 0)
		return -1;
	*out = s->exp[s->exp_head];
	s->exp_head = (s->exp_head + 1) % s->exp_cap;
	s->exp_len--;
	if (out->slot != LOAD_NOSLOT)
		s->msg[out->slot].pending--;
	return 0;
}

static void
load_timer_ms(struct event *ev, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_add(ev, &tv);
}

/* Every message has its outcome: give QUIT replies a moment, no more. */
static void
load_run_outcome_check(struct load_run *r)
{
	if (r->outcomes == r->o.count && r->drain_ev != NULL)
		load_timer_ms(r->drain_ev, LOAD_DRAIN_MS);
}

static bool
load_run_has_work(const struct load_run *r)
{
	return !r->stopping && r->started < r->o.count;
}

static void
load_run_check_done(struct load_run *r)
{
	if (r->live == 0)
		event_base_loopexit(r->base, NULL);
}

/* Record the one outcome of the message in SLOT (no-op if it has one). */
static void
load_msg_settle(struct load_session *s, unsigned slot, enum load_stage stg,
		int code, const char *text)
{
	struct load_run *r = s->run;
	struct load_msg *m = &s->msg[slot];
	uint64_t now = load_now_us();

	if (m->done)
		return;
	m->done = true;
	r->outcomes++;
	r->t_last_us = now;
	s->consec_fail = 0;
	if (stg == STG_EOD && code / 100 == 2) {
		r->accepted++;
		load_hist_add(&r->hist, now - m->t_eod_us);
		if (r->ids_buf != NULL) {
			char id[128];
			const char *p = text, *q;
			size_t n = 0;
			bool via_as = false;
			/* skip the enhanced status code */
			if (isdigit((unsigned char)p[0]) && p[1] == '.')
				p += strcspn(p, " ");
			p += strspn(p, " ");
			for (q = p; *q != '\0'; q++)
				if (strncasecmp(q, "queued as ", 10) == 0) {
					p = q + 10 + (q[10] == '<');
					via_as = true;
					break;
				}
			while (n < sizeof(id) - 1 &&
			       isalnum((unsigned char)p[n]))
				n++;
			memcpy(id, p, n);
			/* "250 2.0.0 ID queued" or "... queued as ID": an id
			 * has a digit; "Ok" is not one. */
			if (!via_as &&
			    (n < 4 || strpbrk(id, "0123456789") == NULL ||
			     (p[n] != '\0' && p[n] != ' ')))
				n = 0;
			id[n] = '\0';
			evbuffer_add_printf(r->ids_buf, "%s\n", n ? id : "-");
		}
	} else
		r->rej[stg][code / 100 == 4 ? 0 : 1]++;
	load_run_outcome_check(r);
}

static void
load_session_free_bev(struct load_session *s)
{
	unsigned i;

	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	s->exp_head = s->exp_len = 0;
	s->eod_unflushed = 0;
	s->in_reply = false;
	for (i = 0; i < LOAD_SLOTS; i++)
		s->msg[i].pending = 0;
}

/* After a connection ended: reconnect (with back-off after failures) while
 * messages remain, else finish. */
static void
load_session_reschedule(struct load_session *s)
{
	struct load_run *r = s->run;
	long ms;

	if (!load_run_has_work(r)) {
		load_session_enter(s, LS_DONE);
		load_run_check_done(r);
		return;
	}
	if (s->consec_fail > LOAD_RECONNECT_MAX) {
		r->gave_up++;
		load_session_enter(s, LS_DONE);
		load_run_check_done(r);
		return;
	}
	ms = 0;
	if (s->consec_fail > 1) {
		ms = (long)LOAD_BACKOFF_BASE_MS << (s->consec_fail - 2);
		if (ms > LOAD_BACKOFF_MAX_MS)
			ms = LOAD_BACKOFF_MAX_MS;
	}
	load_session_enter(s, LS_IDLE);
	load_timer_ms(s->retry_ev, ms);
}

/* The connection failed or the server closed it: every message in flight
 * that has no outcome yet failed and is not retried -- except one that got
 * no reply at all and whose content was not sent (a pipelined MAIL riding
 * with the previous ".", say): the server cannot hold it, so it goes back
 * to the pool under a new number.  A message lost counts as progress (the
 * back-off is for connections that get nowhere). */
static void
load_session_drop(struct load_session *s, bool error, const char *why)
{
	struct load_run *r = s->run;
	struct load_msg *m;
	unsigned i, lost = 0;

	for (i = 0; i < LOAD_SLOTS; i++) {
		m = &s->msg[i];
		if (m->done)
			continue;
		m->done = true;
		if (!m->replied && !m->eod_written) {
			r->started--;
			r->requeued++;
			continue;
		}
		r->failed++;
		r->outcomes++;
		r->t_last_us = load_now_us();
		lost++;
	}
	if (error) {
		r->conn_errors++;
		snprintf(r->error, sizeof(r->error), "session %u (%s): %s",
			 s->id, load_state_info[s->state].name, why);
	}
	if (r->o.verbose)
		fprintf(stderr, "[%u] dropped in %s: %s\n", s->id,
			load_state_info[s->state].name, why);
	load_session_free_bev(s);
	if (lost > 0)
		s->consec_fail = 0;
	s->consec_fail++;
	load_run_outcome_check(r);
	load_session_reschedule(s);
}

/* A failure that reconnecting cannot fix (STARTTLS or AUTH refused). */
static void
load_run_fatal(struct load_session *s, const char *what, const char *detail)
{
	struct load_run *r = s->run;

	snprintf(r->error, sizeof(r->error), "%.60s%s%.255s", what,
		 detail[0] ? ": " : "", detail);
	r->fatal = true;
	load_run_abort(r);
}

static void
load_session_close(struct load_session *s)
{
	load_session_free_bev(s);
	load_session_reschedule(s);
}

/* Writing messages ------------------------------------------------------- */

static unsigned
load_slot_free(const struct load_session *s)
{
	unsigned i;

	for (i = 0; i < LOAD_SLOTS; i++)
		if (s->msg[i].done && s->msg[i].pending == 0)
			return i;
	return LOAD_NOSLOT;
}

static void
load_rcpt_send(struct load_session *s, unsigned slot)
{
	struct load_msg *m = &s->msg[slot];
	char rcpt[LOAD_ADDR_MAX];

	/* the pattern was checked at start-up: it cannot fail here */
	if (load_rcpt_format(&s->run->o, m->rcpt_base + m->rcpt_sent, rcpt,
			     sizeof(rcpt)) < 0)
		abort();
	m->rcpt_sent++;
	load_cmd(s, "RCPT TO:<%s>", rcpt);
	load_exp_push(s, EXP_RCPT, slot);
}

static void
load_eod_mark(struct load_session *s, unsigned slot)
{
	struct load_msg *m = &s->msg[slot];

	m->eod_written = true;
	m->t_eod_us = load_now_us(); /* refined when the output drains */
	s->eod_unflushed |= 1u << slot;
}

/* After 354: the header block, the stuffed body and the ".\r\n". */
static void
load_data_write(struct load_session *s, unsigned slot)
{
	struct load_run *r = s->run;
	struct load_msg *m = &s->msg[slot];
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (m->done) {
		/* 354 although nothing was accepted: end an empty message */
		evbuffer_add(out, ".\r\n", 3);
	} else {
		evbuffer_add(out, m->hdr, m->hdr_len);
		evbuffer_add_reference(out, r->body_dot, r->body_dot_len, NULL,
				       NULL);
		r->sent++;
		if (r->o.verbose)
			fprintf(stderr, "[%u] > (%zu octets of message)\n",
				s->id, m->hdr_len + r->body_dot_len);
	}
	load_eod_mark(s, slot);
	load_exp_push(s, EXP_DOT, slot);
}

/* BDAT chunks of header block + raw body: all of them, or the next one. */
static void
load_bdat_write(struct load_session *s, unsigned slot, bool all)
{
	struct load_run *r = s->run;
	struct load_msg *m = &s->msg[slot];
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t n, left, off, h;
	bool last;

	do {
		left = m->total - m->bdat_off;
		n = left > LOAD_BDAT_CHUNK_BYTES ? LOAD_BDAT_CHUNK_BYTES : left;
		last = n == left;
		load_cmd(s, "BDAT %zu%s", n, last ? " LAST" : "");
		off = m->bdat_off;
		if (off < m->hdr_len) {
			h = m->hdr_len - off < n ? m->hdr_len - off : n;
			evbuffer_add(out, m->hdr + off, h);
			off += h;
		}
		if (off < m->bdat_off + n)
			evbuffer_add_reference(
			    out, r->body_raw + (off - m->hdr_len),
			    m->bdat_off + n - off, NULL, NULL);
		m->bdat_off += n;
		load_exp_push(s, last ? EXP_BDAT_LAST : EXP_BDAT, slot);
		if (last) {
			r->sent++;
			load_eod_mark(s, slot);
		}
	} while (all && !last);
}

/* Start the next transaction: MAIL, and with PIPELINING every RCPT and
 * DATA (or every BDAT chunk) in the same write (RFC 2920 3.1). */
static void
load_txn_start(struct load_session *s)
{
	struct load_run *r = s->run;
	struct load_msg *m;
	unsigned slot, i;
	char rcpt0[LOAD_ADDR_MAX];

	if ((slot = load_slot_free(s)) == LOAD_NOSLOT) {
		load_session_drop(s, true, "replies out of order");
		return;
	}
	m = &s->msg[slot];
	memset(m, 0, offsetof(struct load_msg, hdr));
	m->seq = r->next_seq++;
	r->started++;
	m->rcpt_base = r->rcpt_counter;
	r->rcpt_counter += r->o.rcpts;
	s->msgs_this_conn++;
	if (r->generated) {
		if (load_rcpt_format(&r->o, m->rcpt_base, rcpt0,
				     sizeof(rcpt0)) < 0)
			abort();
		m->hdr_len = load_headers_build(r, m->seq, rcpt0, m->hdr,
						sizeof(m->hdr));
	}
	m->total = m->hdr_len + r->body_raw_len;
	r->size_param[0] = '\0';
	if (s->cap_size)
		snprintf(r->size_param, sizeof(r->size_param), " SIZE=%zu",
			 m->total);
	load_cmd(s, "MAIL FROM:<%s>%s", r->o.from, r->size_param);
	load_exp_push(s, EXP_MAIL, slot);
	if (!s->pipelining_on)
		return;
	for (i = 0; i < r->o.rcpts; i++)
		load_rcpt_send(s, slot);
	if (s->bdat_on)
		load_bdat_write(s, slot, true);
	else {
		load_cmd(s, "DATA");
		load_exp_push(s, EXP_DATA, slot);
	}
}

/* Between transactions: RSET if one was left open, then the next
 * transaction, or QUIT when no message is left for this connection. */
static void
load_session_next(struct load_session *s, bool rset)
{
	struct load_run *r = s->run;

	if (rset) {
		load_cmd(s, "RSET");
		load_exp_push(s, EXP_RSET, LOAD_NOSLOT);
		if (!s->pipelining_on)
			return; /* continue at its reply */
	}
	if (!load_run_has_work(r) ||
	    (r->o.msgs_per_session &&
	     s->msgs_this_conn >= r->o.msgs_per_session)) {
		load_cmd(s, "QUIT");
		load_exp_push(s, EXP_QUIT, LOAD_NOSLOT);
		load_session_enter(s, LS_QUIT);
		return;
	}
	load_txn_start(s);
}

/* Connection set-up: EHLO, STARTTLS, AUTH --------------------------------- */

static void
load_ehlo_send(struct load_session *s)
{
	load_cmd(s, "EHLO %s", s->run->o.ehlo);
	load_exp_push(s, EXP_EHLO, LOAD_NOSLOT);
	load_session_enter(s, LS_EHLO);
}

static void
load_ehlo_cap(struct load_session *s, const char *kw)
{
	const char *p;

	if (strcasecmp(kw, "PIPELINING") == 0)
		s->cap_pipelining = true;
	else if (strcasecmp(kw, "CHUNKING") == 0)
		s->cap_chunking = true;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		s->cap_starttls = true;
	else if (strncasecmp(kw, "SIZE", 4) == 0 &&
		 (kw[4] == '\0' || kw[4] == ' '))
		s->cap_size = true;
	else if (strncasecmp(kw, "AUTH", 4) == 0 &&
		 (kw[4] == ' ' || kw[4] == '=')) {
		for (p = kw + 5; *p != '\0';
		     p += strcspn(p, " "), p += strspn(p, " "))
			if (strncasecmp(p, "PLAIN", 5) == 0 &&
			    (p[5] == '\0' || p[5] == ' '))
				s->cap_auth_plain = true;
	}
}

static void
load_tls_start(struct load_session *s)
{
	struct load_run *r = s->run;
	struct bufferevent *tb;
	SSL *ssl;
	struct timeval tv = { (time_t)r->o.timeout_s, 0 };

	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		load_session_drop(s, true, "data after the STARTTLS reply");
		return;
	}
	if ((ssl = SSL_new(r->ssl_ctx)) == NULL) {
		load_session_drop(s, true, "SSL_new failed");
		return;
	}
	if (r->host_is_name)
		SSL_set_tlsext_host_name(ssl, r->o.host);
	tb = bufferevent_openssl_filter_new(r->base, s->bev, ssl,
					    BUFFEREVENT_SSL_CONNECTING,
					    BEV_OPT_CLOSE_ON_FREE);
	if (tb == NULL) {
		SSL_free(ssl);
		load_session_drop(s, true, "TLS filter failed");
		return;
	}
	s->bev = tb; /* freeing it frees the plain bufferevent too */
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	bufferevent_setcb(tb, load_read_cb, load_write_cb, load_event_cb, s);
	bufferevent_set_timeouts(tb, &tv, &tv);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	load_session_enter(s, LS_HANDSHAKE);
}

/* EHLO done (or AUTH done): STARTTLS, AUTH, or start sending mail. */
static void
load_session_ready(struct load_session *s)
{
	struct load_run *r = s->run;

	if (r->o.starttls && !s->tls_on) {
		if (!s->cap_starttls) {
			load_run_fatal(s, "server does not offer STARTTLS", "");
			return;
		}
		load_cmd(s, "STARTTLS");
		load_exp_push(s, EXP_STARTTLS, LOAD_NOSLOT);
		load_session_enter(s, LS_STARTTLS);
		return;
	}
	if (r->o.auth != NULL && !s->authed) {
		if (!s->cap_auth_plain) {
			load_run_fatal(s, "server does not offer AUTH PLAIN",
				       "");
			return;
		}
		if (r->o.verbose)
			fprintf(stderr, "[%u] > AUTH PLAIN (credentials)\n",
				s->id);
		evbuffer_add_printf(bufferevent_get_output(s->bev), "%s\r\n",
				    r->auth_line);
		load_exp_push(s, EXP_AUTH, LOAD_NOSLOT);
		load_session_enter(s, LS_AUTH);
		return;
	}
	s->pipelining_on = r->o.pipelining && s->cap_pipelining;
	s->bdat_on = r->o.bdat && s->cap_chunking;
	if (r->o.pipelining && !s->cap_pipelining && !r->warned_pipe) {
		r->warned_pipe = true;
		fprintf(stderr, "outpost-load: server does not offer "
				"PIPELINING: lock-step\n");
	}
	if (r->o.bdat && !s->cap_chunking && !r->warned_bdat) {
		r->warned_bdat = true;
		fprintf(stderr, "outpost-load: server does not offer "
				"CHUNKING: using DATA\n");
	}
	r->used_pipelining |= s->pipelining_on;
	r->used_bdat |= s->bdat_on;
	load_session_enter(s, LS_MAIL);
	load_session_next(s, false);
}

/* Replies ----------------------------------------------------------------- */

static enum load_stage
load_exp_stage(enum load_exp kind)
{
	switch (kind) {
	case EXP_MAIL:
		return STG_MAIL;
	case EXP_RCPT:
		return STG_RCPT;
	case EXP_DATA:
	case EXP_BDAT:
		return STG_DATA;
	default:
		return STG_EOD;
	}
}

static void
load_reply_rcpt(struct load_session *s, unsigned slot, int code,
		const char *text)
{
	struct load_run *r = s->run;
	struct load_msg *m = &s->msg[slot];

	m->rcpt_replies++;
	if (m->mail_ok) { /* else these are "503 need MAIL": not counted */
		if (code / 100 == 2) {
			m->rcpt_ok++;
			r->rcpts_ok++;
		} else {
			r->rcpts_rej[code / 100 == 4 ? 0 : 1]++;
			if (code / 100 == 4)
				m->rcpt_4xx = true;
			if (!m->rcpt_4xx || code / 100 == 4)
				m->rcpt_code = code;
		}
	}
	if (m->rcpt_replies == r->o.rcpts && m->mail_ok && m->rcpt_ok == 0)
		load_msg_settle(s, slot, STG_RCPT, m->rcpt_code, text);
	if (s->pipelining_on)
		return;
	if (m->rcpt_sent < r->o.rcpts)
		load_rcpt_send(s, slot);
	else if (m->rcpt_ok == 0)
		load_session_next(s, true);
	else if (s->bdat_on)
		load_bdat_write(s, slot, false);
	else {
		load_cmd(s, "DATA");
		load_exp_push(s, EXP_DATA, slot);
	}
}

/* One complete reply: settle what it answers and write what comes next.
 * Long on purpose: one case per expected reply keeps every transition of
 * the client in one place (Postfix smtp_loop). */
static void
load_reply(struct load_session *s, int code, const char *text)
{
	struct load_run *r = s->run;
	struct load_exp_entry e;
	struct load_msg *m;
	bool pipe = s->pipelining_on;

	if (load_exp_pop(s, &e) == -1) {
		load_session_drop(s, true, "reply to no command");
		return;
	}
	m = e.slot != LOAD_NOSLOT ? &s->msg[e.slot] : NULL;
	if (m != NULL)
		m->replied = true;
	if (code == 421 && e.kind != EXP_QUIT) {
		if (m != NULL)
			load_msg_settle(s, e.slot, load_exp_stage(e.kind), code,
					text);
		r->closed_421++;
		load_session_drop(s, m == NULL, "421 from the server");
		return;
	}
	switch ((enum load_exp)e.kind) {
	case EXP_GREETING:
		if (code != 220)
			load_session_drop(s, true, "greeting refused");
		else
			load_ehlo_send(s);
		break;
	case EXP_EHLO:
		if (code != 250)
			load_session_drop(s, true, "EHLO refused");
		else
			load_session_ready(s);
		break;
	case EXP_STARTTLS:
		if (code != 220)
			load_run_fatal(s, "STARTTLS refused", text);
		else
			load_tls_start(s);
		break;
	case EXP_AUTH:
		if (code != 235)
			load_run_fatal(s, "AUTH refused", text);
		else {
			s->authed = true;
			load_session_ready(s);
		}
		break;
	case EXP_MAIL:
		if (code / 100 == 2) {
			m->mail_ok = true;
			if (!pipe)
				load_rcpt_send(s, e.slot);
		} else {
			load_msg_settle(s, e.slot, STG_MAIL, code, text);
			if (!pipe)
				load_session_next(s, false);
		}
		break;
	case EXP_RCPT:
		load_reply_rcpt(s, e.slot, code, text);
		break;
	case EXP_DATA:
		if (code == 354) {
			load_data_write(s, e.slot);
			if (pipe) /* the next MAIL rides with the "." */
				load_session_next(s, false);
		} else {
			load_msg_settle(s, e.slot, STG_DATA, code, text);
			load_session_next(s, m->mail_ok);
		}
		break;
	case EXP_BDAT:
		if (code / 100 != 2) {
			load_msg_settle(s, e.slot, STG_DATA, code, text);
			if (!pipe)
				load_session_next(s, m->mail_ok);
		} else if (!pipe)
			load_bdat_write(s, e.slot, false);
		break;
	case EXP_BDAT_LAST:
		load_msg_settle(s, e.slot, STG_EOD, code, text);
		load_session_next(s, m->mail_ok && code / 100 != 2);
		break;
	case EXP_DOT:
		load_msg_settle(s, e.slot, STG_EOD, code, text);
		if (!pipe)
			load_session_next(s, false);
		break;
	case EXP_RSET:
		if (!pipe)
			load_session_next(s, false);
		break;
	case EXP_QUIT:
		load_session_close(s);
		break;
	}
}

/* One reply line (CR LF stripped).  Returns -1 if the session is gone. */
static int
load_reply_line(struct load_session *s, const char *line, size_t len)
{
	const char *text = len > 4 ? line + 4 : "";
	bool more, ehlo;
	int code;

	if (s->run->o.verbose)
		fprintf(stderr, "[%u] < %s\n", s->id, line);
	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) ||
	    (len > 3 && line[3] != ' ' && line[3] != '-')) {
		load_session_drop(s, true, "malformed reply");
		return -1;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	more = len > 3 && line[3] == '-';
	ehlo = s->exp_len > 0 && s->exp[s->exp_head].kind == EXP_EHLO;
	if (!s->in_reply) {
		s->in_reply = true;
		s->reply_code = code;
		snprintf(s->reply_text, sizeof(s->reply_text), "%.*s",
			 (int)sizeof(s->reply_text) - 1, text);
		if (ehlo)
			s->cap_pipelining = s->cap_chunking = s->cap_starttls =
			    s->cap_auth_plain = s->cap_size = false;
	} else if (ehlo)
		load_ehlo_cap(s, text);
	if (more)
		return 0;
	s->in_reply = false;
	load_reply(s, s->reply_code, s->reply_text);
	return s->bev != NULL ? 0 : -1;
}

/* libevent callbacks ------------------------------------------------------ */

static void
load_read_cb(struct bufferevent *bev, void *arg)
{
	struct load_session *s = arg;
	char line[LOAD_REPLY_LINE_MAX + 2];
	struct evbuffer *in;
	struct evbuffer_ptr p;
	size_t n;

	(void)bev;
	while (s->bev != NULL && s->state != LS_HANDSHAKE) {
		in = bufferevent_get_input(s->bev);
		p = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > LOAD_REPLY_LINE_MAX)
				load_session_drop(s, true, "reply too long");
			return;
		}
		n = (size_t)p.pos;
		if (n > LOAD_REPLY_LINE_MAX) {
			load_session_drop(s, true, "reply too long");
			return;
		}
		evbuffer_remove(in, line, n + 1);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		if (load_reply_line(s, line, n) == -1)
			return;
	}
}

static void
load_write_cb(struct bufferevent *bev, void *arg)
{
	struct load_session *s = arg;
	uint64_t now;
	unsigned i;

	(void)bev;
	if (s->eod_unflushed == 0)
		return;
	/* The end of data just left for the kernel: latency starts now. */
	now = load_now_us();
	for (i = 0; i < LOAD_SLOTS; i++)
		if (s->eod_unflushed & (1u << i))
			s->msg[i].t_eod_us = now;
	s->eod_unflushed = 0;
}

static void
load_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct load_session *s = arg;
	char why[160];
	unsigned long err;
	int one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == LS_HANDSHAKE) {
			s->tls_on = true;
			load_ehlo_send(s);
		} else {
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
				   TCP_NODELAY, &one, sizeof(one));
			s->tls_on = s->run->o.tls;
			load_session_enter(s, LS_GREETING);
		}
		/* bytes already read during the handshake */
		load_read_cb(bev, s);
		return;
	}
	/* bufferevent_openssl reports a close_notify before it runs the read
	 * callback for the records decrypted with it: read those replies
	 * first (they may settle messages, or be the 221). */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		load_read_cb(bev, s);
		if (s->bev != bev)
			return;
	}
	/* EOF, reset or timeout after QUIT, once no message awaits its reply */
	if (s->state == LS_QUIT && s->msg[0].done && s->msg[1].done) {
		load_session_close(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof(why), "no reply within %u s",
			 s->run->o.timeout_s);
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by the server");
	else if ((err = bufferevent_get_openssl_error(bev)) != 0) {
		snprintf(why, sizeof(why), "TLS: ");
		ERR_error_string_n(err, why + 5, sizeof(why) - 5);
	} else
		snprintf(why, sizeof(why), "%s",
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	load_session_drop(s, true, why);
}

static void
load_session_connect(struct load_session *s)
{
	struct load_run *r = s->run;
	struct timeval tv = { (time_t)r->o.timeout_s, 0 };
	SSL *ssl;

	s->tls_on = s->authed = s->pipelining_on = s->bdat_on = false;
	s->msgs_this_conn = 0;
	if (r->o.tls) {
		if ((ssl = SSL_new(r->ssl_ctx)) == NULL) {
			load_session_drop(s, true, "SSL_new failed");
			return;
		}
		if (r->host_is_name)
			SSL_set_tlsext_host_name(ssl, r->o.host);
		s->bev = bufferevent_openssl_socket_new(
		    r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE);
		if (s->bev == NULL)
			SSL_free(ssl);
		else
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	} else
		s->bev =
		    bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		load_session_drop(s, true, "cannot create a bufferevent");
		return;
	}
	bufferevent_setcb(s->bev, load_read_cb, load_write_cb, load_event_cb,
			  s);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	r->connections++;
	load_exp_push(s, EXP_GREETING, LOAD_NOSLOT);
	load_session_enter(s, LS_CONNECTING);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&r->addr,
				       (int)r->addrlen) == -1)
		load_session_drop(s, true, "connect failed");
}

static void
load_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_session *s = arg;

	(void)fd;
	(void)what;
	if (!load_run_has_work(s->run)) {
		load_session_enter(s, LS_DONE);
		load_run_check_done(s->run);
		return;
	}
	load_session_connect(s);
}

/* Stop now: close every session; messages in flight stay unfinished. */
static void
load_run_abort(struct load_run *r)
{
	struct load_session *s;
	unsigned i, j;

	r->stopping = true;
	for (i = 0; i < r->nsessions; i++) {
		s = &r->sessions[i];
		for (j = 0; j < LOAD_SLOTS; j++)
			if (!s->msg[j].done) {
				s->msg[j].done = true;
				r->unfinished++;
			}
		load_session_free_bev(s);
		evtimer_del(s->retry_ev);
		if (s->state != LS_DONE)
			load_session_enter(s, LS_DONE);
	}
	event_base_loopexit(r->base, NULL);
}

static void
load_maxtime_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_run *r = arg;

	(void)fd;
	(void)what;
	r->timed_out = true;
	load_run_abort(r);
}

static void
load_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	load_run_abort(arg); /* QUIT replies are late: nothing is lost */
}

static void
load_signal_cb(evutil_socket_t fd, short what, void *arg)
{
	struct load_run *r = arg;

	(void)what;
	r->interrupted = (int)fd; /* evsignal: fd is the signal number */
	load_run_abort(r);
}

static void
load_ids_flush(struct load_run *r)
{
	while (r->ids_buf != NULL && evbuffer_get_length(r->ids_buf) > 0)
		if (evbuffer_write(r->ids_buf, r->ids_fd) < 0 &&
		    errno != EINTR) {
			fprintf(stderr, "outpost-load: --ids: %s\n",
				strerror(errno));
			evbuffer_drain(r->ids_buf,
				       evbuffer_get_length(r->ids_buf));
		}
}

static void
load_ids_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	load_ids_flush(arg);
}

static void
load_progress_draw(struct load_run *r, bool final)
{
	char bar[31];
	double el = (double)(load_now_us() - r->t_start_us) / 1e6;
	uint64_t rej = 0;
	size_t fill;
	unsigned i;

	for (i = 0; i < STG__COUNT; i++)
		rej += r->rej[i][0] + r->rej[i][1];
	fill = (size_t)((double)(sizeof(bar) - 1) * (double)r->outcomes /
			(double)r->o.count);
	memset(bar, '#', fill);
	memset(bar + fill, '.', sizeof(bar) - 1 - fill);
	bar[sizeof(bar) - 1] = '\0';
	fprintf(stderr,
		"\r[%s] %3u%% %" PRIu64 "/%" PRIu64 " accepted %" PRIu64
		" refused %" PRIu64 " failed %" PRIu64 " %.0f msg/s%s%s",
		bar, (unsigned)(100 * r->outcomes / r->o.count), r->outcomes,
		r->o.count, r->accepted, rej, r->failed,
		el > 0 ? (double)r->accepted / el : 0.0,
		r->progress_tty ? "\033[K" : "", final ? "\n" : "");
	fflush(stderr);
}

static void
load_progress_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	load_progress_draw(arg, false);
}

/* Report ------------------------------------------------------------------ */

/* From the first connect to the last outcome (to the end if none). */
static double
load_elapsed_s(const struct load_run *r)
{
	uint64_t end = r->outcomes > 0 ? r->t_last_us : load_now_us();

	return (double)(end - r->t_start_us) / 1e6;
}

static int
load_exit_code(const struct load_run *r)
{
	if (r->fatal)
		return LOAD_EXIT_FAIL;
	if (r->accepted == r->o.count)
		return LOAD_EXIT_OK;
	if (r->failed > 0 ||
	    (r->started < r->o.count && !r->timed_out && !r->interrupted))
		return LOAD_EXIT_FAIL;
	return LOAD_EXIT_REFUSED;
}

static void
load_report_json(const struct load_run *r, double el, double cpu, int rc)
{
	const struct load_hist *h = &r->hist;
	uint64_t rej[2] = { 0, 0 };
	unsigned i;

	for (i = 0; i < STG__COUNT; i++) {
		rej[0] += r->rej[i][0];
		rej[1] += r->rej[i][1];
	}
	printf("{\"tool\":\"outpost-load\",\"host\":");
	load_json_str(stdout, r->o.host);
	printf(",\"port\":%s,\"sessions\":%u,\"count\":%" PRIu64
	       ",\"size\":%zu,\"message_bytes\":%zu,\"rcpts\":%u,"
	       "\"pipelining\":%s,\"bdat\":%s,\"tls\":\"%s\",",
	       r->o.port, r->o.sessions, r->o.count, r->o.size, r->msg_bytes,
	       r->o.rcpts, r->used_pipelining ? "true" : "false",
	       r->used_bdat ? "true" : "false",
	       r->o.tls        ? "implicit"
	       : r->o.starttls ? "starttls"
			       : "none");
	printf("\"attempted\":%" PRIu64 ",\"sent\":%" PRIu64
	       ",\"accepted\":%" PRIu64 ",\"rejected_4xx\":%" PRIu64
	       ",\"rejected_5xx\":%" PRIu64 ",\"rejected\":{",
	       r->started, r->sent, r->accepted, rej[0], rej[1]);
	for (i = 0; i < STG__COUNT; i++)
		printf("%s\"%s_4xx\":%" PRIu64 ",\"%s_5xx\":%" PRIu64,
		       i ? "," : "", load_stage_names[i], r->rej[i][0],
		       load_stage_names[i], r->rej[i][1]);
	printf("},\"rcpts_accepted\":%" PRIu64
	       ",\"rcpts_rejected_4xx\":%" PRIu64
	       ",\"rcpts_rejected_5xx\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"unfinished\":%" PRIu64 ",\"unsent\":%" PRIu64
	       ",\"connections\":%" PRIu64 ",\"conn_errors\":%" PRIu64
	       ",\"closed_421\":%" PRIu64 ",\"sessions_gave_up\":%" PRIu64
	       ",\"requeued\":%" PRIu64 ",",
	       r->rcpts_ok, r->rcpts_rej[0], r->rcpts_rej[1], r->failed,
	       r->unfinished, r->o.count - r->started, r->connections,
	       r->conn_errors, r->closed_421, r->gave_up, r->requeued);
	printf("\"elapsed_s\":%.3f,\"accepted_per_s\":%.1f,\"latency_ms\":{"
	       "\"samples\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,"
	       "\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f},\"cpu_s\":%.2f,",
	       el, el > 0 ? (double)r->accepted / el : 0.0, h->n,
	       load_hist_pct_ms(h, 50), load_hist_pct_ms(h, 90),
	       load_hist_pct_ms(h, 99), (double)h->max_us / 1000.0,
	       h->n ? (double)h->sum_us / (double)h->n / 1000.0 : 0.0, cpu);
	printf("\"timed_out\":%s,\"interrupted\":%s,\"error\":",
	       r->timed_out ? "true" : "false",
	       r->interrupted ? "true" : "false");
	if (r->error[0] != '\0')
		load_json_str(stdout, r->error);
	else
		printf("null");
	printf(",\"exit\":%d}\n", rc);
}

static void
load_report_text(const struct load_run *r, double el, double cpu, int rc)
{
	const struct load_hist *h = &r->hist;
	uint64_t rej[2] = { 0, 0 };
	unsigned i;

	for (i = 0; i < STG__COUNT; i++) {
		rej[0] += r->rej[i][0];
		rej[1] += r->rej[i][1];
	}
	printf("outpost-load: %s port %s, %u sessions, %" PRIu64
	       " messages of ~%zu octets, %u rcpt(s), %s%s%s\n",
	       r->o.host, r->o.port, r->o.sessions, r->o.count, r->msg_bytes,
	       r->o.rcpts, r->used_pipelining ? "pipelining" : "lock-step",
	       r->used_bdat ? ", BDAT" : "",
	       r->o.tls        ? ", TLS"
	       : r->o.starttls ? ", STARTTLS"
			       : "");
	printf("  attempted   %" PRIu64 " (content sent %" PRIu64
	       ", never started %" PRIu64 ")\n",
	       r->started, r->sent, r->o.count - r->started);
	printf("  accepted    %" PRIu64 "\n", r->accepted);
	for (i = 0; i < 2; i++)
		printf("  refused %cxx %" PRIu64 " (mail %" PRIu64
		       ", rcpt %" PRIu64 ", data %" PRIu64
		       ", end of data %" PRIu64 ")\n",
		       i ? '5' : '4', rej[i], r->rej[STG_MAIL][i],
		       r->rej[STG_RCPT][i], r->rej[STG_DATA][i],
		       r->rej[STG_EOD][i]);
	printf("  failed      %" PRIu64 " (connection lost mid-transaction)"
	       ", unfinished %" PRIu64 "\n",
	       r->failed, r->unfinished);
	printf("  connections %" PRIu64 " (errors %" PRIu64 ", 421 %" PRIu64
	       ", sessions given up %" PRIu64 ", messages requeued %" PRIu64
	       ")\n",
	       r->connections, r->conn_errors, r->closed_421, r->gave_up,
	       r->requeued);
	printf("  elapsed     %.3f s, %.1f accepted msg/s, load tool cpu "
	       "%.2f s\n",
	       el, el > 0 ? (double)r->accepted / el : 0.0, cpu);
	printf("  latency ms  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f "
	       "(%" PRIu64 " samples, end of data to reply)\n",
	       load_hist_pct_ms(h, 50), load_hist_pct_ms(h, 90),
	       load_hist_pct_ms(h, 99), (double)h->max_us / 1000.0, h->n);
	if (r->timed_out)
		printf("  stopped by --max-time\n");
	if (r->interrupted)
		printf("  interrupted\n");
	if (r->error[0] != '\0')
		printf("  %s error: %s\n", r->fatal ? "fatal" : "last",
		       r->error);
	printf("  exit        %d\n", rc);
}

/* Options ----------------------------------------------------------------- */

static void
load_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: outpost-load [options]\n"
	    "  --host ADDR          server (127.0.0.1)\n"
	    "  --port N             port (2525)\n"
	    "  --sessions N         concurrent connections (20)\n"
	    "  --count N            messages in total (1000)\n"
	    "  --size BYTES         approximate message size, headers "
	    "included (4096)\n"
	    "  --rcpts N            recipients per message (1)\n"
	    "  --from ADDR          envelope and header sender "
	    "(load@sender.test)\n"
	    "  --to PATTERN         recipients: %%u = a running counter "
	    "(every recipient\n"
	    "                       distinct), %%d = counter %% --domains, "
	    "%%%% = %%\n"
	    "                       (rcpt%%u@sink.test; with --domains: "
	    "rcpt%%u@d%%d.sink.test)\n"
	    "  --domains N          spread recipients over N domains via "
	    "%%d (1)\n"
	    "  --ehlo NAME          EHLO name (load.outpost.test)\n"
	    "  --msgs-per-session N reconnect after N messages (0: reuse "
	    "the connection)\n"
	    "  --pipelining         MAIL, RCPTs and DATA in one write, and "
	    "the next MAIL\n"
	    "                       with the end of data, if the server offers "
	    "PIPELINING\n"
	    "  --bdat               BDAT ... LAST instead of DATA if the "
	    "server offers CHUNKING\n"
	    "  --starttls           upgrade with STARTTLS (fail if not "
	    "offered)\n"
	    "  --tls                implicit TLS (port 465 style)\n"
	    "  --auth USER:PASS     AUTH PLAIN (after TLS when TLS is "
	    "used)\n"
	    "  --body-file FILE     send this RFC 5322 message (LF or CRLF) "
	    "instead\n"
	    "  --attachment MODE    campaign-like messages: a personalized "
	    "text part and a\n"
	    "                       base64 PDF-like attachment, the same in "
	    "every message\n"
	    "                       (shared) or different in each (unique); "
	    "--size ignored\n"
	    "  --attachment-size BYTES  the attachment, decoded (22800: "
	    "about 30 KB sent)\n"
	    "  --ids FILE           write the queue id of each accepted "
	    "message, one a line\n"
	    "                       (\"-\" when the 250 carries no id)\n"
	    "  --timeout SEC        per reply (60)\n"
	    "  --max-time SEC       stop the whole run after SEC (0: no "
	    "limit)\n"
	    "  --progress[=always|never]  progress line on stderr (a tty "
	    "only, unless always)\n"
	    "  --json               the report as one JSON object on stdout\n"
	    "  --verbose            trace the dialogue on stderr\n"
	    "Exit: 0 all accepted, 1 some refused (or --max-time), 2 usage "
	    "error or\n"
	    "connection failure (a message lost mid-transaction, a server "
	    "unreachable).\n");
}

static int
load_num(const char *name, const char *arg, uint64_t min, uint64_t max,
	 uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' ||
	    v < min || v > max) {
		fprintf(stderr,
			"outpost-load: --%s: want a number in %" PRIu64
			"..%" PRIu64 "\n",
			name, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
load_opts_check(struct load_opts *o)
{
	char buf[LOAD_ADDR_MAX];
	uint64_t port;

	if (load_num("port", o->port, 1, 65535, &port) == -1)
		return -1;
	if (!load_arg_plain(o->host, 256) || !load_arg_plain(o->ehlo, 256)) {
		fprintf(stderr, "outpost-load: bad --host or --ehlo\n");
		return -1;
	}
	if (!load_arg_plain(o->from, LOAD_ADDR_MAX) ||
	    strchr(o->from, '@') == NULL) {
		fprintf(stderr, "outpost-load: bad --from address\n");
		return -1;
	}
	if (o->to == NULL)
		o->to = o->domains > 1 ? "rcpt%u@d%d.sink.test"
				       : "rcpt%u@sink.test";
	if (!load_arg_plain(o->to, LOAD_ADDR_MAX) ||
	    load_rcpt_format(o, UINT64_MAX, buf, sizeof(buf)) < 0 ||
	    strchr(buf, '@') == NULL) {
		fprintf(stderr, "outpost-load: bad --to pattern (%%u, %%d, "
				"%%%% only; an address)\n");
		return -1;
	}
	if (o->tls && o->starttls) {
		fprintf(stderr, "outpost-load: --tls or --starttls, not "
				"both\n");
		return -1;
	}
	if (o->attach != LOAD_MIME_NONE && o->body_file != NULL) {
		fprintf(stderr, "outpost-load: --attachment or --body-file, "
				"not both\n");
		return -1;
	}
	if (o->auth != NULL &&
	    (strchr(o->auth, ':') == NULL || strlen(o->auth) > 512)) {
		fprintf(stderr, "outpost-load: --auth USER:PASS\n");
		return -1;
	}
	return 0;
}

enum {
	OPT_HOST = 256,
	OPT_PORT,
	OPT_SESSIONS,
	OPT_COUNT,
	OPT_SIZE,
	OPT_RCPTS,
	OPT_FROM,
	OPT_TO,
	OPT_DOMAINS,
	OPT_EHLO,
	OPT_MPS,
	OPT_PIPELINING,
	OPT_BDAT,
	OPT_STARTTLS,
	OPT_TLS,
	OPT_AUTH,
	OPT_PROGRESS,
	OPT_JSON,
	OPT_TIMEOUT,
	OPT_MAXTIME,
	OPT_IDS,
	OPT_BODY,
	OPT_VERBOSE,
	OPT_ATTACH,
	OPT_ATTACH_SIZE,
};

static const struct option load_longopts[] = {
	{ "host", required_argument, NULL, OPT_HOST },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "sessions", required_argument, NULL, OPT_SESSIONS },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "rcpts", required_argument, NULL, OPT_RCPTS },
	{ "from", required_argument, NULL, OPT_FROM },
	{ "to", required_argument, NULL, OPT_TO },
	{ "domains", required_argument, NULL, OPT_DOMAINS },
	{ "ehlo", required_argument, NULL, OPT_EHLO },
	{ "msgs-per-session", required_argument, NULL, OPT_MPS },
	{ "pipelining", no_argument, NULL, OPT_PIPELINING },
	{ "bdat", no_argument, NULL, OPT_BDAT },
	{ "starttls", no_argument, NULL, OPT_STARTTLS },
	{ "tls", no_argument, NULL, OPT_TLS },
	{ "auth", required_argument, NULL, OPT_AUTH },
	{ "progress", optional_argument, NULL, OPT_PROGRESS },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "max-time", required_argument, NULL, OPT_MAXTIME },
	{ "ids", required_argument, NULL, OPT_IDS },
	{ "body-file", required_argument, NULL, OPT_BODY },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "attachment", required_argument, NULL, OPT_ATTACH },
	{ "attachment-size", required_argument, NULL, OPT_ATTACH_SIZE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Parse argv into O.  Returns 0, 1 (help printed) or -1 (usage error).
 * Long only because getopt_long wants one case per option. */
static int
load_opts_parse(struct load_opts *o, int argc, char **argv)
{
	uint64_t v;
	char *end;
	int c, rc = 0;

	*o = (struct load_opts){ .host = "127.0.0.1",
				 .port = "2525",
				 .sessions = 20,
				 .count = 1000,
				 .size = 4096,
				 .rcpts = 1,
				 .from = "load@sender.test",
				 .domains = 1,
				 .ehlo = "load.outpost.test",
				 .progress = 0,
				 .timeout_s = 60,
				 .attach_bytes = LOAD_MIME_ATTACH_BYTES };
	while (rc == 0 &&
	       (c = getopt_long(argc, argv, "hv", load_longopts, NULL)) != -1) {
		switch (c) {
		case OPT_HOST:
			o->host = optarg;
			break;
		case OPT_PORT:
			o->port = optarg;
			break;
		case OPT_SESSIONS:
			rc = load_num("sessions", optarg, 1, 100000, &v);
			o->sessions = (unsigned)v;
			break;
		case OPT_COUNT:
			rc = load_num("count", optarg, 1, UINT64_MAX / 2,
				      &o->count);
			break;
		case OPT_SIZE:
			rc = load_num("size", optarg, 0, (uint64_t)1 << 30, &v);
			o->size = (size_t)v;
			break;
		case OPT_RCPTS:
			rc = load_num("rcpts", optarg, 1, 10000, &v);
			o->rcpts = (unsigned)v;
			break;
		case OPT_FROM:
			o->from = optarg;
			break;
		case OPT_TO:
			o->to = optarg;
			break;
		case OPT_DOMAINS:
			rc = load_num("domains", optarg, 1, 1000000, &v);
			o->domains = (unsigned)v;
			break;
		case OPT_EHLO:
			o->ehlo = optarg;
			break;
		case OPT_MPS:
			rc = load_num("msgs-per-session", optarg, 0,
				      UINT64_MAX / 2, &o->msgs_per_session);
			break;
		case OPT_PIPELINING:
			o->pipelining = true;
			break;
		case OPT_BDAT:
			o->bdat = true;
			break;
		case OPT_STARTTLS:
			o->starttls = true;
			break;
		case OPT_TLS:
			o->tls = true;
			break;
		case OPT_AUTH:
			o->auth = optarg;
			break;
		case OPT_PROGRESS:
			if (optarg == NULL || strcmp(optarg, "auto") == 0)
				o->progress = 1;
			else if (strcmp(optarg, "always") == 0)
				o->progress = 2;
			else if (strcmp(optarg, "never") == 0)
				o->progress = 0;
			else
				rc = -1;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_TIMEOUT:
			rc = load_num("timeout", optarg, 1, 86400, &v);
			o->timeout_s = (unsigned)v;
			break;
		case OPT_MAXTIME:
			errno = 0;
			o->max_time_s = strtod(optarg, &end);
			if (errno || end == optarg || *end != '\0' ||
			    !(o->max_time_s >= 0) || o->max_time_s > 1e7)
				rc = -1;
			break;
		case OPT_IDS:
			o->ids = optarg;
			break;
		case OPT_BODY:
			o->body_file = optarg;
			break;
		case OPT_ATTACH:
			if (strcmp(optarg, "shared") == 0)
				o->attach = LOAD_MIME_SHARED;
			else if (strcmp(optarg, "unique") == 0)
				o->attach = LOAD_MIME_UNIQUE;
			else
				rc = -1;
			break;
		case OPT_ATTACH_SIZE:
			rc = load_num("attachment-size", optarg, 57,
				      (uint64_t)1 << 26, &v);
			o->attach_bytes = (size_t)v;
			break;
		case 'v':
		case OPT_VERBOSE:
			o->verbose = true;
			break;
		case 'h':
			load_usage(stdout);
			return 1;
		default:
			rc = -1;
		}
	}
	if (rc == 0 && optind < argc) {
		fprintf(stderr, "outpost-load: unexpected argument %s\n",
			argv[optind]);
		rc = -1;
	}
	if (rc == 0)
		rc = load_opts_check(o);
	if (rc == -1)
		fprintf(stderr, "outpost-load: see --help\n");
	return rc;
}

/* Set-up ------------------------------------------------------------------ */

static int
load_resolve(struct load_run *r)
{
	struct addrinfo hints, *res = NULL;
	struct in6_addr a6;
	int e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((e = getaddrinfo(r->o.host, r->o.port, &hints, &res)) != 0) {
		fprintf(stderr, "outpost-load: %s: %s\n", r->o.host,
			gai_strerror(e));
		return -1;
	}
	memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
	r->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	r->host_is_name = inet_pton(AF_INET6, r->o.host, &a6) != 1 &&
			  inet_pton(AF_INET, r->o.host, &a6) != 1;
	return 0;
}

static int
load_tls_setup(struct load_run *r)
{
	unsigned char raw[1100], b64[1500];
	const char *colon;
	size_t ul, pl;
	int n;

	if (r->o.tls || r->o.starttls) {
		if ((r->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
			return -1;
		/* a load tool: the server is ours, its certificate is not
		 * checked */
		SSL_CTX_set_verify(r->ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_min_proto_version(r->ssl_ctx, TLS1_2_VERSION);
	}
	if (r->o.auth == NULL)
		return 0;
	colon = strchr(r->o.auth, ':');
	ul = (size_t)(colon - r->o.auth);
	pl = strlen(colon + 1);
	raw[0] = '\0'; /* RFC 4616: authzid NUL authcid NUL passwd */
	memcpy(raw + 1, r->o.auth, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, colon + 1, pl);
	n = EVP_EncodeBlock(b64, raw, (int)(2 + ul + pl));
	snprintf(r->auth_line, sizeof(r->auth_line), "AUTH PLAIN %.*s", n,
		 (const char *)b64);
	return 0;
}

static int
load_run_setup(struct load_run *r)
{
	unsigned i;
	size_t chunks;

	if (load_message_prepare(r) == -1) {
		fprintf(stderr, "outpost-load: cannot build the message\n");
		return -1;
	}
	if (load_resolve(r) == -1 || load_tls_setup(r) == -1)
		return -1;
	if ((r->base = event_base_new()) == NULL)
		return -1;
	r->ids_fd = -1;
	if (r->o.ids != NULL) {
		r->ids_fd = open(
		    r->o.ids,
		    O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (r->ids_fd == -1) {
			fprintf(stderr, "outpost-load: %s: %s\n", r->o.ids,
				strerror(errno));
			return -1;
		}
		r->ids_buf = evbuffer_new();
		r->ids_ev = event_new(r->base, -1, EV_PERSIST, load_ids_cb, r);
		load_timer_ms(r->ids_ev, LOAD_IDS_FLUSH_MS);
	}
	r->nsessions =
	    r->o.count < r->o.sessions ? (unsigned)r->o.count : r->o.sessions;
	r->sessions = calloc(r->nsessions, sizeof(*r->sessions));
	if (r->sessions == NULL)
		return -1;
	/* ring: RSET + MAIL + RCPTs + DATA/chunks + the previous "." + QUIT */
	chunks = (LOAD_HDR_MAX + r->body_raw_len) / LOAD_BDAT_CHUNK_BYTES + 1;
	for (i = 0; i < r->nsessions; i++) {
		struct load_session *s = &r->sessions[i];
		s->run = r;
		s->id = i;
		s->exp_cap = r->o.rcpts + (unsigned)chunks + 8;
		s->exp = calloc(s->exp_cap, sizeof(*s->exp));
		s->retry_ev = evtimer_new(r->base, load_retry_cb, s);
		if (s->exp == NULL || s->retry_ev == NULL)
			return -1;
		s->msg[0].done = s->msg[1].done = true;
	}
	r->live = r->nsessions;
	r->drain_ev = evtimer_new(r->base, load_drain_cb, r);
	r->sigint_ev = evsignal_new(r->base, SIGINT, load_signal_cb, r);
	r->sigterm_ev = evsignal_new(r->base, SIGTERM, load_signal_cb, r);
	event_add(r->sigint_ev, NULL);
	event_add(r->sigterm_ev, NULL);
	if (r->o.max_time_s > 0) {
		struct timeval tv = {
			(time_t)r->o.max_time_s,
			(suseconds_t)((r->o.max_time_s -
				       (double)(time_t)r->o.max_time_s) *
				      1e6)
		};
		r->maxtime_ev = evtimer_new(r->base, load_maxtime_cb, r);
		evtimer_add(r->maxtime_ev, &tv);
	}
	r->progress_tty = isatty(STDERR_FILENO);
	r->progress_on =
	    r->o.progress == 2 || (r->o.progress == 1 && r->progress_tty);
	if (r->progress_on) {
		r->progress_ev =
		    event_new(r->base, -1, EV_PERSIST, load_progress_cb, r);
		load_timer_ms(r->progress_ev, LOAD_PROGRESS_MS);
	}
	return 0;
}

static void
load_run_free(struct load_run *r)
{
	unsigned i;

	for (i = 0; r->sessions != NULL && i < r->nsessions; i++) {
		load_session_free_bev(&r->sessions[i]);
		if (r->sessions[i].retry_ev != NULL)
			event_free(r->sessions[i].retry_ev);
		free(r->sessions[i].exp);
	}
	free(r->sessions);
	if (r->progress_ev != NULL)
		event_free(r->progress_ev);
	if (r->maxtime_ev != NULL)
		event_free(r->maxtime_ev);
	if (r->ids_ev != NULL)
		event_free(r->ids_ev);
	if (r->drain_ev != NULL)
		event_free(r->drain_ev);
	if (r->sigint_ev != NULL)
		event_free(r->sigint_ev);
	if (r->sigterm_ev != NULL)
		event_free(r->sigterm_ev);
	if (r->ids_buf != NULL)
		evbuffer_free(r->ids_buf);
	if (r->ids_fd != -1)
		close(r->ids_fd);
	if (r->base != NULL)
		event_base_free(r->base);
	if (r->ssl_ctx != NULL)
		SSL_CTX_free(r->ssl_ctx);
	free(r->body_raw);
	free(r->body_dot);
}

int
main(int argc, char **argv)
{
	static struct load_run run; /* large: the histogram */
	struct load_run *r = &run;
	struct rusage ru;
	double el, cpu;
	unsigned i;
	int rc;

	if ((rc = load_opts_parse(&r->o, argc, argv)) != 0)
		return rc == 1 ? LOAD_EXIT_OK : LOAD_EXIT_FAIL;
	signal(SIGPIPE, SIG_IGN);
	r->ids_fd = -1;
	if (load_run_setup(r) == -1) {
		load_run_free(r);
		return LOAD_EXIT_FAIL;
	}
	r->t_start_us = load_now_us();
	for (i = 0; i < r->nsessions; i++)
		load_session_connect(&r->sessions[i]);
	if (r->live > 0)
		event_base_dispatch(r->base);
	load_ids_flush(r);
	if (r->progress_on)
		load_progress_draw(r, true);
	el = load_elapsed_s(r);
	getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	rc = load_exit_code(r);
	if (r->o.json)
		load_report_json(r, el, cpu, rc);
	else
		load_report_text(r, el, cpu, rc);
	fflush(stdout);
	load_run_free(r);
	if (r->interrupted == SIGINT) {
		/* die of it, so that a calling shell stops too (after the
		 * report: the figures so far are still worth having) */
		signal(SIGINT, SIG_DFL);
		raise(SIGINT);
	}
	return rc;
}
