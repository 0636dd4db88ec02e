/*
 * evlog.c — the delivery log: JSON Lines, one object per event (evlog.h).
 *
 * Owns: the log file, its writer thread, the pending buffer and the address
 * hash key (sodium_malloc'd, read-only once loaded, wiped at close).  Callers
 * (any thread) format a line on their own stack, then append it to the
 * pending buffer under one mutex; a loop's thread that asked for it
 * (evlog_batch_begin) formats its lines into a buffer of its own instead and
 * appends them all at the end of its turn; the writer thread swaps that buffer
 * out and write(2)s it at least once a second, sooner past EVLOG_FLUSH_BYTES,
 * unless the filesystem is down to the queue's reserve (mta/core/logspace.h:
 * dropped). Must not: write an address, a local part or a VERP form in clear
 * (every text field goes through scrub_text() then scrub_escape(),
 * mta/core/scrub.h; the one '@' allowed is inside a machine-made Message-ID,
 * jw_msgid); make a caller wait for the disk; emit a line that is not one valid
 * JSON object in valid UTF-8.
 */
/* For PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP (glibc): see evl.mu. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "mta/observe/evlog.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/logspace.h"
#include "mta/core/scrub.h"
#include "mta/core/util.h"
#include "queue/queue.h"

_Static_assert(QUEUE_KEY_BYTES == 32, "evlog.h takes a 32-byte hash key");

#define EVLOG_LINE_BYTES        (16 * 1024) /* one formatted line, at most */
#define EVLOG_TEXT_BYTES        4096        /* one field, scrubbed or escaped */
#define EVLOG_DOMAIN_BYTES      512
#define EVLOG_FLUSH_BYTES       (64 * 1024)        /* wake the writer early */
#define EVLOG_PENDING_MAX_BYTES (16 * 1024 * 1024) /* past this, drop */
#define EVLOG_BUF_INIT_BYTES    (128 * 1024)
#define EVLOG_BUF_KEEP_BYTES    (1024 * 1024) /* a bigger spare is shrunk */
#define EVLOG_FLUSH_MS          1000
/* A batching thread's own buffer: handed over when a line might not fit. */
#define EVLOG_BATCH_BYTES (64 * 1024)
_Static_assert(EVLOG_BATCH_BYTES >= 2 * EVLOG_LINE_BYTES,
	       "a batch holds a few lines at least");
/* Room always kept at the end of a line: '…', closing '"', "}\n". */
#define JW_TAIL 8

enum evlog_state { EVL_CLOSED, EVL_NULL, EVL_OPEN };

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* CLOCK_MONOTONIC; initialised once, kept */
	/* Under mu: the pending buffer, requests, counters. */
	char *buf;
	size_t len, cap;
	size_t reopen_mark; /* lines before it go to the old file */
	bool reopen, stop;
	/* Reopen requests the writer took, and of those the ones done:
	 * evlog_reopen_wait waits for its own. */
	uint64_t reopens_taken, reopens_done;
	pthread_cond_t reopened;
	uint64_t lines, dropped, bytes;
	/* The writer thread's own (and the opener's, before it starts). */
	char *spare;
	size_t spare_cap;
	int fd;
	bool failing; /* last write failed: warned once */
	/* Set by evlog_open, read-only until evlog_close. */
	char *path;
	/* evlog_file_perms: given to every file opened ((gid_t)-1, 0: as
	 * made).  Main thread sets them while no reopen runs. */
	gid_t gid;
	mode_t mode;
	uint8_t *key;
	pthread_t thread;
} evl = {
	/* Held for a memcpy of one line: three loops append at every event,
	 * and spinning a moment is cheaper than sleeping in the kernel. */
	.mu = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP,
	.reopened = PTHREAD_COND_INITIALIZER,
	.fd = -1,
	.gid = (gid_t)-1,
};

static _Atomic int evl_state = EVL_CLOSED;
/* Callers between their state check and the end of their call: evlog_close
 * waits for none before it tears down. */
static _Atomic int evl_inflight;
static _Atomic unsigned evl_key_gen; /* one more at every evlog_open() */

/* One batching thread's lines (evlog_batch_begin).  BUF, LEN and LINES are
 * its owner's while the log is open; evlog_close takes them, with BUSY
 * (set by the owner around every use, checked against evl_state in the
 * order both sides write then read) telling it when the owner is out. */
struct evlog_batch {
	struct event *flush; /* active from the first line to the turn's end */
	char *buf;
	size_t len;
	uint64_t lines;
	_Atomic bool busy;
	struct evlog_batch *next; /* evl_batches, under evl_batches_mu */
};
static _Thread_local struct evlog_batch *evl_batch;
static pthread_mutex_t evl_batches_mu = PTHREAD_MUTEX_INITIALIZER;
static struct evlog_batch *evl_batches;
static pthread_once_t evl_once = PTHREAD_ONCE_INIT;

/* Byte classes, filled once by evlog_once_init(). */
#define C_SAFE 0x40 /* copied as is by scrub_escape() */
static uint8_t evl_cls[256];
#define CLS(c, m) ((evl_cls[(unsigned char)(c)] & (m)) != 0)

static const char *const evlog_type_names[EV__COUNT] = {
	[EV_RECEPTION] = "reception",
	[EV_DELIVERY] = "delivery",
	[EV_TRANSIENT] = "transient_failure",
	[EV_BOUNCE] = "bounce",
	[EV_EXPIRATION] = "expiration",
	[EV_REJECTION] = "rejection",
	[EV_ADMIN] = "admin",
	[EV_PAUSE] = "destination_paused",
	[EV_RESUME] = "destination_resumed",
	[EV_EXPORT] = "exported",
	[EV_IMPORT] = "imported",
	[EV_SUPPRESSED] = "suppressed",
	[EV_COMPLAINT] = "complaint",
	[EV_WATCHDOG] = "watchdog",
};

const char *
evlog_type_name(enum evlog_type t)
{
	if ((unsigned)t >= EV__COUNT)
		return "unknown";
	return evlog_type_names[t];
}

static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* JSON writer -------------------------------------------------------- */

/* A line under construction.  Every field is written whole or not at all,
 * and strings are cut short before the last JW_TAIL bytes, so the line is
 * always one complete object. */
struct jw {
	char *p;
	size_t n, cap;
};

static bool
jw_room(const struct jw *w, size_t need)
{
	return w->n + need + JW_TAIL <= w->cap;
}

static void
jw_put(struct jw *w, const char *s, size_t len)
{
	memcpy(w->p + w->n, s, len);
	w->n += len;
}

/* ,"NAME": — false (nothing written) when NEED more bytes would not fit. */
static bool
jw_key(struct jw *w, const char *name, size_t need)
{
	size_t len = strlen(name);

	if (!jw_room(w, len + 4 + need))
		return false;
	w->p[w->n++] = ',';
	w->p[w->n++] = '"';
	jw_put(w, name, len);
	w->p[w->n++] = '"';
	w->p[w->n++] = ':';
	return true;
}

/* S (LEN bytes, any bytes) as the body of a JSON string (json_escape:
 * quotes, backslashes and controls escaped, invalid UTF-8 as \ufffd), cut
 * with "…" when the line is full. */
static void
jw_escape(struct jw *w, const char *s, size_t len)
{
	size_t lim = w->cap - JW_TAIL, used;

	w->n += json_escape(s, len, w->p + w->n, lim > w->n ? lim - w->n : 0,
			    &used);
	if (used < len)
		jw_put(w, "\xe2\x80\xa6", 3);
}

static void
jw_str(struct jw *w, const char *name, const char *s, size_t len)
{
	if (!jw_key(w, name, 2))
		return;
	w->p[w->n++] = '"';
	jw_escape(w, s, len);
	w->p[w->n++] = '"';
}

/* Decimal digits of V into the end of BUF[24]; returns the first. */
static char *
fmt_u64(char buf[24], uint64_t v)
{
	char *p = buf + 24;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return p;
}

static void
jw_u64(struct jw *w, const char *name, uint64_t v)
{
	char buf[24], *p = fmt_u64(buf, v);

	if (jw_key(w, name, 24))
		jw_put(w, p, (size_t)(buf + 24 - p));
}

static void
jw_bool(struct jw *w, const char *name, bool v)
{
	if (jw_key(w, name, 5))
		jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

/* MS milliseconds as seconds with three decimals ("12.045"). */
static void
jw_seconds(struct jw *w, const char *name, uint64_t ms)
{
	char buf[24], *p = fmt_u64(buf, ms / 1000), frac[4];

	if (!jw_key(w, name, 28))
		return;
	jw_put(w, p, (size_t)(buf + 24 - p));
	frac[0] = '.';
	frac[1] = (char)('0' + ms / 100 % 10);
	frac[2] = (char)('0' + ms / 10 % 10);
	frac[3] = (char)('0' + ms % 10);
	jw_put(w, frac, 4);
}

/* Time --------------------------------------------------------------- */

static void
put_digits(char *p, unsigned v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* MS (Unix ms) as "YYYY-MM-DDTHH:MM:SS.mmmZ" into OUT[24].  Civil date from
 * the day number without gmtime_r(), which takes glibc's tz lock. */
static void
evlog_time(char out[24], int64_t ms)
{
	int64_t days, z, era, doe, yoe, doy, mp, y, sod;
	unsigned m, d;

	if (ms < 0)
		ms = 0;
	if (ms > INT64_C(253402300799999)) /* 9999-12-31T23:59:59.999Z */
		ms = INT64_C(253402300799999);
	days = ms / 86400000;
	sod = ms % 86400000;
	z = days + 719468;
	era = z / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (m <= 2);
	put_digits(out, (unsigned)y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, (unsigned)(sod / 3600000), 2);
	out[13] = ':';
	put_digits(out + 14, (unsigned)(sod / 60000 % 60), 2);
	out[16] = ':';
	put_digits(out + 17, (unsigned)(sod / 1000 % 60), 2);
	out[19] = '.';
	put_digits(out + 20, (unsigned)(sod % 1000), 3);
	out[23] = 'Z';
}

/* Text fields ------------------------------------------------------ */

static void
evlog_cls_init(void)
{
	unsigned c;
	uint8_t m;

	for (c = 0; c < 256; c++) {
		m = 0;
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '@')
			m |= C_SAFE;
		evl_cls[c] = m;
	}
}

/* Would scrub_escape() copy T (N bytes) unchanged?  Then it need not run. */
static bool
escape_identity(const char *t, size_t n)
{
	size_t i;

	if (n + 8 >= EVLOG_TEXT_BYTES)
		return false;
	for (i = 0; i < n; i++)
		if (!CLS(t[i], C_SAFE))
			return false;
	return true;
}

/* A text field: scrubbed (with SCRUB_KNOWN, also of the event's own
 * addresses ADDRS[2] and the thread's transaction), escaped as log_escape()
 * does, then JSON-escaped. */
static void
jw_text(struct jw *w, const char *name, const char *s, const char *const *addrs,
	unsigned flags)
{
	char scrubbed[SCRUB_OUT_BYTES], esc[EVLOG_TEXT_BYTES];
	const char *t;
	size_t n;

	if (s == NULL)
		return;
	n = strnlen(s, SCRUB_SCAN_BYTES + SCRUB_LOOKAHEAD_BYTES + 1);
	t = scrub_text(s, n, addrs, addrs != NULL ? 2 : 0, flags, scrubbed,
		       sizeof(scrubbed), &n);
	if (escape_identity(t, n)) {
		jw_str(w, name, t, n);
		return;
	}
	scrub_escape(esc, sizeof(esc), t, n);
	jw_str(w, name, esc, strlen(esc));
}

/* Addresses ---------------------------------------------------------- */

/*
 * queue_addr_hash(KEY, ADDR) into HEX.  With MEMO (the sender), the last
 * answer of this thread is kept: campaign mail comes from a few senders,
 * and a keyed BLAKE2b is two compressions, worth saving on every line.
 */
static void
evlog_addr_hash(const uint8_t *key, const char *addr, bool memo,
		char hex[QUEUE_HASH_HEX_BYTES])
{
	static _Thread_local char m_addr[256], m_hex[QUEUE_HASH_HEX_BYTES];
	static _Thread_local unsigned m_gen; /* 0: empty */
	unsigned gen = atomic_load(&evl_key_gen);
	size_t n;

	if (memo && m_gen == gen && strcmp(m_addr, addr) == 0) {
		memcpy(hex, m_hex, sizeof(m_hex));
		return;
	}
	queue_addr_hash(key, addr, hex);
	if (memo && (n = strlen(addr)) < sizeof(m_addr)) {
		memcpy(m_addr, addr, n + 1);
		memcpy(m_hex, hex, sizeof(m_hex));
		m_gen = gen;
	}
}

void
evlog_hash(const char *addr, char hex[QUEUE_HASH_HEX_BYTES])
{
	if (evl.key == NULL) {
		hex[0] = '\0';
		return;
	}
	evlog_addr_hash(evl.key, addr, false, hex);
}

/* ADDR without surrounding white space and <> (as queue_addr_hash sees it),
 * as [*s, *e). */
static void
addr_trim(const char *addr, const char **s, const char **e)
{
	const char *p = addr, *q = addr + strlen(addr);
	int pass;

	for (pass = 0; pass < 2; pass++) {
		while (p < q &&
		       (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
			p++;
		while (q > p && (q[-1] == ' ' || q[-1] == '\t' ||
				 q[-1] == '\r' || q[-1] == '\n'))
			q--;
		if (pass == 0 && p < q && *p == '<')
			p++;
		if (pass == 0 && q > p && q[-1] == '>')
			q--;
	}
	*s = p;
	*e = q;
}

/* HNAME (keyed hash, left out for the null sender) and DNAME (domain, lower
 * case, "" without '@') for ADDR.  MEMO: ADDR is the sender (a few per
 * campaign): its hash is memoized. */
static void
jw_addr(struct jw *w, const char *hname, const char *dname, const char *addr,
	const uint8_t *key, bool memo)
{
	char hex[QUEUE_HASH_HEX_BYTES], dom[EVLOG_DOMAIN_BYTES];
	const char *s, *e, *at;
	size_t i, n = 0;

	addr_trim(addr, &s, &e);
	if (s < e) {
		evlog_addr_hash(key, addr, memo, hex);
		jw_str(w, hname, hex, strlen(hex));
	}
	for (at = e; at > s && at[-1] != '@'; at--)
		;
	if (at > s) { /* AT is past the last '@' */
		for (i = 0; at + i < e && i < sizeof(dom); i++)
			dom[i] = ascii_lower(at[i]);
		n = i;
	}
	jw_str(w, dname, dom, n);
}

/* Formatting --------------------------------------------------------- */

/* Is [S, S+N) dot-atom text (RFC 5322 3.6.4: what a Message-ID's halves
 * are made of; no quote, space or '@') left whole by the scrubber (with
 * the event's ADDRS known)? */
static bool
evlog_msgid_part_plain(const char *s, size_t n, const char *const *addrs)
{
	static const char atext[] = "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				    "!#$%&'*+-/=?^_`{|}~.";
	char out[SCRUB_OUT_BYTES];
	size_t i, outlen;

	if (n == 0 || n >= SCRUB_SCAN_BYTES)
		return false;
	for (i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(atext, s[i]) == NULL)
			return false;
	return scrub_text(s, n, addrs, 2, SCRUB_KNOWN, out, sizeof(out),
			  &outlen) == s &&
	       outlen == n && escape_identity(s, n);
}

/*
 * msgid in clear: the one '@' a line may hold, between the two halves of
 * a Message-ID the intake judged machine-made.  Each half must still pass
 * the scrubber whole on its own (no encoded address, no known local
 * part); otherwise only msgid_hash is written.
 */
static void
jw_msgid(struct jw *w, const char *msgid, const char *const *addrs)
{
	const char *s, *e, *at;
	char buf[EVLOG_TEXT_BYTES];
	size_t n;

	addr_trim(msgid, &s, &e);
	for (at = e; at > s && at[-1] != '@'; at--)
		;
	if (at == s || at - 1 == s || at == e)
		return; /* no '@', or nothing on one side */
	if (!evlog_msgid_part_plain(s, (size_t)(at - 1 - s), addrs) ||
	    !evlog_msgid_part_plain(at, (size_t)(e - at), addrs))
		return;
	n = (size_t)(e - s);
	if (n + 2 >= sizeof(buf))
		return;
	buf[0] = '<';
	memcpy(buf + 1, s, n);
	buf[n + 1] = '>';
	jw_str(w, "msgid", buf, n + 2);
}

/*
 * The message's tracing fields: msgid (in clear only when the intake
 * allowed it, and scrubbed even then: a known local part still goes),
 * msgid_hash (always: what `outpost log --id` looks for), campaign (peer
 * text: scrubbed and escaped).
 */
static void
evlog_trace_fields(struct jw *w, const struct evlog_event *ev,
		   const uint8_t *key, const char *const *addrs)
{
	char hex[QUEUE_HASH_HEX_BYTES];

	if (ev->msgid != NULL && ev->msgid[0] != '\0') {
		if (ev->msgid_clear)
			jw_msgid(w, ev->msgid, addrs);
		queue_addr_hash(key, ev->msgid, hex);
		jw_str(w, "msgid_hash", hex, strlen(hex));
	}
	jw_text(w, "campaign", ev->campaign, addrs, SCRUB_KNOWN);
}

/*
 * evlog_format — EV as one line (with its '\n') into LINE; returns its
 * length.  Fields in the order of the documentation, each only when set.
 * Long (~80 lines) because it is the list of fields, in order, and nothing
 * else.
 */
static size_t
evlog_format(const struct evlog_event *ev, const uint8_t *key, char *line,
	     size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	struct jw w = { line, 0, cap };
	/* Their local parts, for the free text. */
	const char *const addrs[2] = { ev->rcpt, ev->sender };
	const char *name = evlog_type_name(ev->type);
	char id[16];
	int i;

	jw_put(&w, "{\"time\":\"", 9);
	evlog_time(w.p + w.n, ev->time_ms != 0 ? ev->time_ms : util_wall_ms());
	w.n += 24;
	jw_put(&w, "\",\"event\":\"", 11);
	jw_put(&w, name, strlen(name));
	w.p[w.n++] = '"';
	if (ev->id != 0) {
		for (i = 0; i < 16; i++)
			id[i] = hex[(ev->id >> (60 - 4 * i)) & 15];
		jw_str(&w, "id", id, 16);
	}
	jw_text(&w, "session", ev->session, NULL, 0);
	jw_text(&w, "user", ev->user, NULL, 0);
	jw_text(&w, "client", ev->client, NULL, 0);
	jw_text(&w, "pool", ev->pool, NULL, 0);
	jw_text(&w, "source_addr", ev->source_addr, NULL, 0);
	jw_text(&w, "destination", ev->destination, NULL, 0);
	jw_text(&w, "mx_host", ev->mx_host, NULL, 0);
	jw_text(&w, "mx_ip", ev->mx_ip, NULL, 0);
	if (ev->rcpt != NULL)
		jw_addr(&w, "rcpt_hash", "rcpt_domain", ev->rcpt, key, false);
	if (ev->sender != NULL)
		jw_addr(&w, "sender_hash", "sender_domain", ev->sender, key,
			true);
	evlog_trace_fields(&w, ev, key, addrs);
	if (ev->size != 0)
		jw_u64(&w, "size", ev->size);
	if (ev->nrcpts >= 0)
		jw_u64(&w, "nrcpts", (uint64_t)ev->nrcpts);
	if (ev->attempt >= 0)
		jw_u64(&w, "attempt", (uint64_t)ev->attempt);
	if (ev->queue_time_ms >= 0)
		jw_seconds(&w, "queue_time_s", (uint64_t)ev->queue_time_ms);
	if (ev->code > 0)
		jw_u64(&w, "code", (uint64_t)ev->code);
	jw_text(&w, "enhanced_status", ev->enhanced, NULL, 0);
	jw_text(&w, "reply", ev->reply, addrs, SCRUB_KNOWN);
	jw_text(&w, "stage", ev->stage, NULL, 0);
	jw_text(&w, "category", ev->category, NULL, 0);
	jw_text(&w, "tls_version", ev->tls_version, NULL, 0);
	jw_text(&w, "tls_cipher", ev->tls_cipher, NULL, 0);
	if (ev->tls_verified >= 0)
		jw_bool(&w, "tls_verified", ev->tls_verified != 0);
	jw_text(&w, "tls_policy", ev->tls_policy, NULL, 0);
	jw_text(&w, "tls_policy_mode", ev->tls_policy_mode, NULL, 0);
	jw_text(&w, "tls_result", ev->tls_result, NULL, 0);
	jw_text(&w, "dkim", ev->dkim, NULL, 0);
	jw_text(&w, "dmarc", ev->dmarc, addrs, SCRUB_KNOWN);
	jw_text(&w, "reason", ev->reason, addrs, SCRUB_KNOWN);
	jw_text(&w, "admin", ev->admin, NULL, 0);
	jw_text(&w, "command", ev->command, addrs, SCRUB_KNOWN);
	if (ev->count >= 0)
		jw_u64(&w, "count", (uint64_t)ev->count);
	jw_text(&w, "feedback_type", ev->feedback_type, NULL, 0);
	jw_text(&w, "agent", ev->agent, addrs, SCRUB_KNOWN);
	if (ev->signals != NULL && jw_key(&w, "signals", strlen(ev->signals)))
		jw_put(&w, ev->signals, strlen(ev->signals));
	w.p[w.n++] = '}';
	w.p[w.n++] = '\n';
	return w.n;
}

/* The writer ---------------------------------------------------------- */

static void
evlog_once_init(void)
{
	pthread_condattr_t ca;

	evlog_cls_init();
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&evl.wake, &ca);
	pthread_condattr_destroy(&ca);
}

static uint64_t
count_lines(const char *p, size_t len)
{
	const char *e = p + len, *q;
	uint64_t n = 0;

	while (p < e && (q = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		n++;
		p = q + 1;
	}
	return n;
}

/* Write P (LEN bytes of whole lines) to the file and count them: written,
 * or dropped when write(2) fails.  Writer thread. */
static void
evlog_flush(const char *p, size_t len)
{
	size_t off = 0;
	ssize_t r;
	uint64_t done, lost;

	if (len == 0)
		return;
	if (logspace_admit(LOGSPACE_DELIVERY, evl.fd, len,
			   (unsigned)count_lines(p, len)) != 0)
		goto count; /* the queue's reserve: dropped, counted there */
	while (off < len) {
		r = write(evl.fd, p + off, len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (!evl.failing)
				log_warn("evlog: write %s", evl.path);
			evl.failing = true;
			break;
		}
		off += (size_t)r;
	}
	if (off == len && evl.failing) {
		log_info("evlog: writing %s again", evl.path);
		evl.failing = false;
	}
count:
	done = count_lines(p, off);
	lost = count_lines(p + off, len - off);
	pthread_mutex_lock(&evl.mu);
	evl.lines += done;
	evl.bytes += off;
	evl.dropped += lost;
	pthread_mutex_unlock(&evl.mu);
}

/* Give FD the configured group and mode; -1 with errno.  The group is
 * given first: a file never gets a wider mode with the wrong group. */
static int
evlog_perms_apply(int fd)
{
	if (evl.gid != (gid_t)-1 && fchown(fd, (uid_t)-1, evl.gid) != 0)
		return -1;
	if (evl.mode != 0 && fchmod(fd, evl.mode) != 0)
		return -1;
	return 0;
}

/* Reopen the path (logrotate moved the file); on failure keep writing to
 * the old one.  The new file gets the group and mode the old one had: a
 * log shipper must not lose access at each rotation.  Writer thread. */
static void
evlog_reopen_file(void)
{
	int fd =
	    open(evl.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		log_warn("evlog: reopen %s (still writing the old file)",
			 evl.path);
		return;
	}
	if (evlog_perms_apply(fd) != 0)
		log_warn("evlog: %s: setting group %ld and mode %04o", evl.path,
			 evl.gid == (gid_t)-1 ? -1L : (long)evl.gid,
			 (unsigned)evl.mode);
	close(evl.fd);
	evl.fd = fd;
}

/* Swap the pending buffer out and write it, at least every EVLOG_FLUSH_MS;
 * a reopen request cuts it where it was made.  Ends after the flush that
 * follows a stop request. */
static void *
evlog_writer_main(void *arg)
{
	struct timespec dl;
	char *buf;
	size_t len, cap, mark;
	bool reopen, stop;

	(void)arg;
	(void)prctl(PR_SET_NAME, (unsigned long)"evlog-writer", 0, 0, 0);
	pthread_mutex_lock(&evl.mu);
	for (;;) {
		if (!evl.stop && !evl.reopen && evl.len < EVLOG_FLUSH_BYTES) {
			clock_gettime(CLOCK_MONOTONIC, &dl);
			dl.tv_sec += EVLOG_FLUSH_MS / 1000;
			(void)pthread_cond_timedwait(&evl.wake, &evl.mu, &dl);
		}
		buf = evl.buf;
		len = evl.len;
		cap = evl.cap;
		reopen = evl.reopen;
		mark = evl.reopen_mark;
		stop = evl.stop;
		evl.buf = evl.spare;
		evl.cap = evl.spare_cap;
		evl.len = 0;
		evl.reopen = false;
		if (reopen)
			evl.reopens_taken++;
		pthread_mutex_unlock(&evl.mu);

		if (reopen) {
			evlog_flush(buf, mark);
			evlog_reopen_file();
			evlog_flush(buf + mark, len - mark);
		} else {
			evlog_flush(buf, len);
		}
		if (cap > EVLOG_BUF_KEEP_BYTES) { /* after a burst */
			char *small = malloc(EVLOG_BUF_INIT_BYTES);

			if (small != NULL) {
				free(buf);
				buf = small;
				cap = EVLOG_BUF_INIT_BYTES;
			}
		}

		pthread_mutex_lock(&evl.mu);
		evl.spare = buf;
		evl.spare_cap = cap;
		if (reopen) {
			evl.reopens_done = evl.reopens_taken;
			pthread_cond_broadcast(&evl.reopened);
		}
		if (stop)
			break;
	}
	pthread_cond_broadcast(&evl.reopened);
	pthread_mutex_unlock(&evl.mu);
	return NULL;
}

/* Append LINES formatted lines (N bytes), or count them as dropped. */
static void
evlog_append(const char *line, size_t n, uint64_t lines)
{
	bool wake = false;
	size_t cap;
	char *p;

	pthread_mutex_lock(&evl.mu);
	if (evl.len + n > EVLOG_PENDING_MAX_BYTES) {
		evl.dropped += lines;
		goto out;
	}
	if (evl.len + n > evl.cap) {
		for (cap = evl.cap * 2; cap < evl.len + n; cap *= 2)
			;
		if (cap > EVLOG_PENDING_MAX_BYTES)
			cap = EVLOG_PENDING_MAX_BYTES;
		if ((p = realloc(evl.buf, cap)) == NULL) {
			evl.dropped += lines;
			goto out;
		}
		evl.buf = p;
		evl.cap = cap;
	}
	memcpy(evl.buf + evl.len, line, n);
	evl.len += n;
	wake = evl.len >= EVLOG_FLUSH_BYTES && evl.len - n < EVLOG_FLUSH_BYTES;
out:
	pthread_mutex_unlock(&evl.mu);
	if (wake)
		pthread_cond_signal(&evl.wake);
}

/* Public ------------------------------------------------------------- */

static void
evlog_err(char *err, size_t errlen, const char *what, const char *path)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s%s%s", path != NULL ? path : "",
			 path != NULL ? ": " : "", what);
}

/* Free what evlog_open set up (the thread is not running). */
static void
evlog_teardown(void)
{
	if (evl.fd >= 0)
		close(evl.fd);
	evl.fd = -1;
	free(evl.buf);
	free(evl.spare);
	evl.buf = evl.spare = NULL;
	evl.len = evl.cap = evl.spare_cap = 0;
	free(evl.path);
	evl.path = NULL;
	if (evl.key != NULL) {
		sodium_mprotect_readwrite(evl.key);
		sodium_memzero(evl.key, QUEUE_KEY_BYTES);
		sodium_free(evl.key);
		evl.key = NULL;
	}
}

int
evlog_open(const char *path, const uint8_t hash_key[32], char *err,
	   size_t errlen)
{
	sigset_t all, old;
	int rc;

	pthread_once(&evl_once, evlog_once_init);
	if (atomic_load(&evl_state) != EVL_CLOSED) {
		evlog_err(err, errlen, "delivery log already open", NULL);
		return -1;
	}
	pthread_mutex_lock(&evl.mu);
	evl.lines = evl.dropped = evl.bytes = 0;
	evl.reopen = evl.stop = evl.failing = false;
	pthread_mutex_unlock(&evl.mu);
	if (path == NULL) {
		atomic_store(&evl_state, EVL_NULL);
		return 0;
	}
	if (hash_key == NULL) {
		evlog_err(err, errlen, "no address hash key", path);
		return -1;
	}
	if (sodium_init() < 0) {
		evlog_err(err, errlen, "libsodium initialisation failed", path);
		return -1;
	}
	if ((evl.key = sodium_malloc(QUEUE_KEY_BYTES)) == NULL ||
	    (evl.path = strdup(path)) == NULL ||
	    (evl.buf = malloc(EVLOG_BUF_INIT_BYTES)) == NULL ||
	    (evl.spare = malloc(EVLOG_BUF_INIT_BYTES)) == NULL) {
		evlog_err(err, errlen, strerror(ENOMEM), path);
		goto fail;
	}
	memcpy(evl.key, hash_key, QUEUE_KEY_BYTES);
	sodium_mprotect_readonly(evl.key);
	atomic_fetch_add(&evl_key_gen, 1); /* forget every thread's memo */
	evl.cap = evl.spare_cap = EVLOG_BUF_INIT_BYTES;
	evl.len = 0;
	evl.fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (evl.fd < 0) {
		evlog_err(err, errlen, strerror(errno), path);
		goto fail;
	}
	/* Signals belong to the main loop, not to the writer (faults stay
	 * deliverable, for the sanitizers' reports). */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&evl.thread, NULL, evlog_writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		evlog_err(err, errlen, strerror(rc), path);
		goto fail;
	}
	atomic_store(&evl_state, EVL_OPEN);
	return 0;
fail:
	evlog_teardown();
	return -1;
}

/* Hand B's lines to the shared buffer.  Its owner, with B->busy set and
 * the log open. */
static void
evlog_batch_hand(struct evlog_batch *b)
{
	if (b->len > 0)
		evlog_append(b->buf, b->len, b->lines);
	b->len = 0;
	b->lines = 0;
}

/* The end of the loop's turn: what it logged goes now. */
static void
evlog_batch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evlog_batch *b = arg;

	(void)fd;
	(void)what;
	atomic_store(&b->busy, true);
	if (atomic_load(&evl_state) == EVL_OPEN)
		evlog_batch_hand(b);
	atomic_store(&b->busy, false);
}

/* EV formatted into the calling thread's batch B. */
static void
evlog_batch_write(struct evlog_batch *b, const struct evlog_event *ev)
{
	atomic_store(&b->busy, true);
	if (atomic_load(&evl_state) == EVL_OPEN) {
		if (EVLOG_BATCH_BYTES - b->len < EVLOG_LINE_BYTES)
			evlog_batch_hand(b);
		if (b->len == 0)
			event_active(b->flush, EV_TIMEOUT, 1);
		b->len += evlog_format(ev, evl.key, b->buf + b->len,
				       EVLOG_LINE_BYTES);
		b->lines++;
	}
	atomic_store(&b->busy, false);
}

int
evlog_batch_begin(struct event_base *base)
{
	struct evlog_batch *b;

	if (evl_batch != NULL)
		return 0;
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->buf = malloc(EVLOG_BATCH_BYTES)) == NULL ||
	    (b->flush = event_new(base, -1, 0, evlog_batch_cb, b)) == NULL) {
		if (b != NULL)
			free(b->buf);
		free(b);
		return -1;
	}
	pthread_mutex_lock(&evl_batches_mu);
	b->next = evl_batches;
	evl_batches = b;
	pthread_mutex_unlock(&evl_batches_mu);
	evl_batch = b;
	return 0;
}

void
evlog_batch_flush(void)
{
	if (evl_batch != NULL)
		evlog_batch_cb(-1, 0, evl_batch);
}

void
evlog_batch_end(void)
{
	struct evlog_batch *b = evl_batch, **pp;

	if (b == NULL)
		return;
	evl_batch = NULL;
	evlog_batch_cb(-1, 0, b);
	pthread_mutex_lock(&evl_batches_mu);
	for (pp = &evl_batches; *pp != b; pp = &(*pp)->next)
		;
	*pp = b->next;
	pthread_mutex_unlock(&evl_batches_mu);
	event_free(b->flush);
	free(b->buf);
	free(b);
}

/* At close, the log already marked closed: the lines of every batch whose
 * owner has not handed them over (its loop still running, or ended without
 * evlog_batch_end) join the last write.  An owner inside a call finishes it
 * first; any later call of its sees the log closed and leaves them. */
static void
evlog_batches_take(void)
{
	struct timespec pause = { 0, 100000 };
	struct evlog_batch *b;

	pthread_mutex_lock(&evl_batches_mu);
	for (b = evl_batches; b != NULL; b = b->next) {
		while (atomic_load(&b->busy))
			nanosleep(&pause, NULL);
		if (b->len > 0)
			evlog_append(b->buf, b->len, b->lines);
		b->len = 0;
		b->lines = 0;
	}
	pthread_mutex_unlock(&evl_batches_mu);
}

void
evlog_write(const struct evlog_event *ev)
{
	char line[EVLOG_LINE_BYTES];
	size_t n;

	if (ev == NULL ||
	    atomic_load_explicit(&evl_state, memory_order_relaxed) != EVL_OPEN)
		return;
	if (evl_batch != NULL) {
		evlog_batch_write(evl_batch, ev);
		return;
	}
	atomic_fetch_add(&evl_inflight, 1);
	if (atomic_load(&evl_state) == EVL_OPEN) {
		n = evlog_format(ev, evl.key, line, sizeof(line));
		evlog_append(line, n, 1);
	}
	atomic_fetch_sub(&evl_inflight, 1);
}

int
evlog_file_perms(gid_t gid, mode_t mode, char *err, size_t errlen)
{
	evl.gid = gid;
	evl.mode = mode & 07777;
	if (atomic_load(&evl_state) != EVL_OPEN)
		return 0;
	if (evlog_perms_apply(evl.fd) != 0) {
		evlog_err(err, errlen, strerror(errno), evl.path);
		return -1;
	}
	return 0;
}

void
evlog_reopen(void)
{
	if (atomic_load(&evl_state) != EVL_OPEN)
		return;
	atomic_fetch_add(&evl_inflight, 1);
	if (atomic_load(&evl_state) == EVL_OPEN) {
		pthread_mutex_lock(&evl.mu);
		evl.reopen = true;
		evl.reopen_mark = evl.len;
		pthread_mutex_unlock(&evl.mu);
		pthread_cond_signal(&evl.wake);
	}
	atomic_fetch_sub(&evl_inflight, 1);
}

void
evlog_reopen_wait(void)
{
	uint64_t want;

	if (atomic_load(&evl_state) != EVL_OPEN)
		return;
	atomic_fetch_add(&evl_inflight, 1);
	if (atomic_load(&evl_state) == EVL_OPEN) {
		pthread_mutex_lock(&evl.mu);
		/* A request the writer took before this one may have opened
		 * the file before its rename: wait for a later one. */
		want = evl.reopens_taken + 1;
		evl.reopen = true;
		evl.reopen_mark = evl.len;
		pthread_cond_signal(&evl.wake);
		while (!evl.stop && evl.reopens_done < want)
			pthread_cond_wait(&evl.reopened, &evl.mu);
		pthread_mutex_unlock(&evl.mu);
	}
	atomic_fetch_sub(&evl_inflight, 1);
}

void
evlog_close(void)
{
	struct timespec pause = { 0, 100000 };
	int state = atomic_exchange(&evl_state, EVL_CLOSED);

	if (state == EVL_CLOSED)
		return;
	/* A caller that saw the log open finishes its line first. */
	while (atomic_load(&evl_inflight) != 0)
		nanosleep(&pause, NULL);
	if (state == EVL_OPEN) {
		evlog_batches_take();
		pthread_mutex_lock(&evl.mu);
		evl.stop = true;
		pthread_mutex_unlock(&evl.mu);
		pthread_cond_signal(&evl.wake);
		pthread_join(evl.thread, NULL);
	}
	evlog_teardown();
}

void
evlog_stats_get(struct evlog_stats *st)
{
	pthread_mutex_lock(&evl.mu);
	st->lines = evl.lines;
	st->dropped = evl.dropped;
	st->bytes = evl.bytes;
	pthread_mutex_unlock(&evl.mu);
}
