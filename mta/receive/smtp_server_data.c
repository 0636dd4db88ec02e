/*
 * smtp_server_data.c — a session's message: DATA and BDAT around the pure
 * scanner (smtp_data.c), the body and its share of the memory budget
 * (smtp_mem.c), the hand-off to the intake and the answer to it.
 *
 * Owns: s->body (the header block and what is not spooled yet: past a
 * chunk, smtp_spool.c writes the body to the queue as it arrives), the
 * budget waits, the scanner state.  Loop thread; the budget's answer, the
 * spool's commits and the intake's completion come back by loop_post().
 * Invariants: "250 … queued" only from the commit completion (the insert
 * waits for every spooled chunk's commit); no bare CR or LF is ever accepted
 * in message data; a message leaves receiving only through
 * smtp_server_on_queued.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/quota.h"
#include "mta/observe/watchdog.h"
#include "mta/observe/evlog.h"
#include "mta/observe/metrics.h"
#include "mta/observe/metrics_top.h"
#include "mta/observe/stats.h"
#include "mta/receive/smtp_server_int.h"

#define SMTP_BODY_INITIAL 8192
/* What a body holds beyond its SIZE=: the trace header, the last CRLF. */
#define SMTP_BODY_SIZE_SLACK 1024
/* SIZE= reserves at most what a session holds of a body that streams into
 * the queue (a header block, SMTP_SPOOL_START_BYTES and one step's feed):
 * a larger claim would be memory the spool never fills. */
#define SMTP_BODY_FIRST_MAX                                                    \
	(SMTP_SPOOL_START_BYTES + SMTP_SPOOL_FEED_BYTES + 16 * 1024)
/* The first piece for a body that SIZE= says will stream: a header block
 * of a few KiB and two chunks (smtp_server_data_stream_cap). */
#define SMTP_BODY_STREAM_FIRST (2 * QUEUE_CHUNK_BYTES + 8 * 1024)

/* Body memory budget (smtp_mem.h) ------------------------------------ */

static void smtp_server_data_on_mem(void *arg);

/* The budget answered, on whatever thread: over to the session's loop. */
static void
smtp_server_data_mem_cb(struct smtp_mem_waiter *w)
{
	struct smtp_server_session *s =
	    (struct smtp_server_session *)((char *)w -
					   offsetof(struct smtp_server_session,
						    mem));

	loop_post(s->loop, smtp_server_data_on_mem, s);
}

/* S waits for its body to grow to CAP: reading stops until the answer. */
static void
smtp_server_data_mem_wait(struct smtp_server_session *s, size_t cap)
{
	s->mem_cap = cap;
	s->mem.want = cap - s->body_cap;
	s->mem.held = s->body_cap;
	s->mem.answer = smtp_server_data_mem_cb;
	s->mem_asked = true;
	s->pending++; /* the answer, or a cancel while queued, ends it */
	s->flags |= SF_MEM_WAIT;
	smtp_server_read_set(s, false);
	log_debug("%016" PRIx64 " smtp waits for body memory (%" PRIu64
		  " bytes)",
		  s->id, s->mem.want);
	smtp_mem_wait(&s->mem);
}

/* S no longer waits (transaction over, connection gone). */
void
smtp_server_data_mem_cancel(struct smtp_server_session *s)
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

/* Message body -------------------------------------------------------- */

/*
 * True when S's body streams into the queue chunk by chunk: a chunk of it
 * went already, or SIZE= announced more than a body held whole.  It then
 * keeps just over a chunk back for the insert (the end of data never
 * spools), not SMTP_SPOOL_START_BYTES.
 */
static bool
smtp_server_data_streams(const struct smtp_server_session *s)
{
	return s->spool_ok &&
	       (smtp_spool_bytes(s) > 0 ||
		s->declared_size > (uint64_t)SMTP_SPOOL_START_BYTES);
}

/* What a streaming body's buffer needs once its header block is known:
 * the header block, the chunk held back, and one step's feed. */
static size_t
smtp_server_data_stream_cap(const struct smtp_server_session *s)
{
	return s->hdr_end + QUEUE_CHUNK_BYTES + SMTP_SPOOL_FEED_BYTES + 2;
}

/* The capacity for NEED bytes: doubling, but never past the largest
 * message (plus room for the last CRLF) when NEED fits in it, nor past a
 * streaming body's needs.  Within what MAIL's SIZE= declared (and the
 * trace header's room), exactly NEED, the first piece too: a 100 KB
 * message would otherwise hold 128 KiB, and a 4 KB one 8 KiB, in the
 * session and then while its body is kept for delivery. */
static size_t
smtp_server_data_cap(const struct smtp_server_session *s, size_t need)
{
	size_t cap = s->body_cap ? s->body_cap : SMTP_BODY_INITIAL;
	size_t top = (size_t)s->conf->limits.max_message_size + 2;

	if ((cap < need || s->body_cap == 0) && s->declared_size > 0 &&
	    need <= s->declared_size + SMTP_BODY_SIZE_SLACK)
		cap = need;

	/* Never more than the budget, or the wait could not end. */
	if (top > s->conf->limits.max_body_memory)
		top = (size_t)s->conf->limits.max_body_memory;
	if (s->hdr_end > 0 && smtp_server_data_streams(s) &&
	    smtp_server_data_stream_cap(s) < top)
		top = smtp_server_data_stream_cap(s);

	while (cap < need)
		cap *= 2;
	if (cap > top && need <= top)
		cap = top;
	return cap;
}

/* Resize the body to CAP, its growth already charged.  0 ok, -1 no
 * memory (the charge is given back). */
static int
smtp_server_data_resize(struct smtp_server_session *s, size_t cap)
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
smtp_server_data_reserve(struct smtp_server_session *s, size_t more, bool force,
			 size_t *capp)
{
	size_t cap;

	if (s->body_len + more <= s->body_cap)
		return 0;
	cap = smtp_server_data_cap(s, s->body_len + more);
	if (!smtp_mem_take(cap - s->body_cap, force)) {
		if (capp != NULL)
			*capp = cap;
		return 1;
	}
	return smtp_server_data_resize(s, cap);
}

/* Octets the scanner does not copy itself: the trace header, a BDAT
 * message's final CRLF (smtp_data_finish). */
static void
smtp_server_data_add(struct smtp_server_session *s, const void *p, size_t n)
{
	if (s->scan.bad &
	    (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM | SMTP_DATA_BAD_HEADER))
		return;
	if (s->body_len + smtp_spool_bytes(s) + n >
	    s->conf->limits.max_message_size) {
		s->scan.bad |= SMTP_DATA_BAD_SIZE;
		return;
	}
	if (smtp_server_data_reserve(s, n, true, NULL) != 0) {
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
smtp_server_data_begin(struct smtp_server_session *s, bool dot)
{
	char hdr[768], date[64], helo[SMTP_HELO_MAX + 1],
	    qid[QUEUE_ID_HEX_BYTES];
	const char *proto;
	struct tm tm;
	time_t now = (time_t)(util_wall_ms() / 1000);
	size_t i, first = SMTP_BODY_INITIAL;
	int n;

	/* The mode first: a BDAT chunk refused here is still read. */
	smtp_data_start(&s->scan, dot, 0, s->conf->limits.max_message_size);
	if (s->mem_asked)
		return -1; /* the last wait's answer is still on its way */
	/* A declared SIZE sizes the first piece, up to a bound: it is only
	 * a claim, and the budget is charged for it now. */
	if (s->declared_size > 0 &&
	    s->declared_size <= s->conf->limits.max_message_size)
		first = s->declared_size + SMTP_BODY_SIZE_SLACK <
				SMTP_BODY_FIRST_MAX
			    ? (size_t)s->declared_size + SMTP_BODY_SIZE_SLACK
			    : SMTP_BODY_FIRST_MAX;
	/* The body may go to the queue as it arrives, unless it must be
	 * whole: a malware scan walks it whole, a report is parsed whole. */
	s->spool_ok = s->conf->scan.clamd == NULL && !s->feedback;
	s->hdr_end = 0;
	if (smtp_server_data_streams(s) && first > SMTP_BODY_STREAM_FIRST)
		first = SMTP_BODY_STREAM_FIRST;
	if (smtp_server_data_reserve(s, first, false, NULL) != 0)
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
	    helo[0] ? helo : "unknown", s->client_str, s->conf->hostname, proto,
	    qid, date);
	s->trace_len = 0;
	if (n > 0 && (size_t)n < sizeof(hdr)) {
		smtp_server_data_add(s, hdr, (size_t)n);
		s->trace_len = (size_t)n;
	}
	s->scan.size = s->body_len; /* the header counts against the size */
	s->hdr_scan = s->trace_len >= 2 ? s->trace_len - 2 : 0;
	return 0;
}

/* The message is queued: one reception line per recipient (so that
 * `outpost log --rcpt` finds it), and the acceptance latency. */
static void
smtp_server_data_log_reception(struct smtp_server_session *s,
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
	ev.msgid = op->env.msgid;
	ev.msgid_clear = (op->env.flags & QUEUE_F_MSGID_CLEAR) != 0;
	ev.campaign = op->env.campaign;
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

/* The queued message goes to the scheduler and, after it (a stop it
 * causes holds it too), to the watchdog's profile of the sender. */
static void
smtp_server_data_hand_off(struct smtp_server_session *s, struct queue_op *op)
{
	struct watchdog_msg wm;

	watchdog_msg_prepare(
	    &wm, conf_identity(s->conf, s->user != NULL ? s->user->name : NULL),
	    op->env.id, op->env.rcpts, op->env.nrcpts);
	quota_note(s->user != NULL ? s->user->name : NULL, util_wall_ms());
	smtp_server_on_queued(op);
	watchdog_msg_note(&wm);
}

/* The intake is over (refused, queued or failed): answer the client. */
static void
smtp_server_data_on_intake(struct intake_req *req)
{
	struct smtp_server_session *s = req->arg;
	struct queue_op *op = req->op;
	char qid[QUEUE_ID_HEX_BYTES];

	req->op = NULL;
	s->pending--;
	smtp_mem_give(s->inflight_charge);
	s->inflight_charge = 0;
	/* Queued: the insert took the spooled chunks; else they go. */
	smtp_spool_release(s, req->code == 0 && op->status == 0);
	queue_id_format(op->env.id, qid);
	if (s->flags & SF_ZOMBIE) {
		/* The client left before the reply: the message is queued
		 * (or not) all the same; it simply never heard. */
		log_info("%016" PRIx64 " smtp %s %s but the client is gone",
			 s->id, qid,
			 req->code == 0 && op->status == 0 ? "queued"
							   : "refused");
		if (req->code == 0 && op->status == 0) {
			smtp_server_data_hand_off(s, op);
			op = NULL;
		}
	} else if (req->code != 0) {
		STATS_INC(messages_rejected);
		if (!req->logged)
			smtp_server_log_reject(s, req->code, req->reply, NULL,
					       req->result[0] ? req->result
							      : NULL);
		smtp_server_reply(s, "%d %s", req->code, req->reply);
		if (req->code >= 500)
			smtp_server_error(s);
		smtp_server_idle(s);
	} else if (op->status == 0) {
		STATS_INC(messages_accepted);
		metrics_user_accepted(s->user != NULL ? s->user->name : NULL);
		STATS_ADD(recipients_accepted, op->env.nrcpts);
		s->msgs++;
		s->rcpts_total += op->env.nrcpts;
		log_debug("%016" PRIx64 " smtp queued %s size=%" PRIu64
			  " rcpts=%" PRIu32 " %s%s",
			  s->id, qid, op->env.size, op->env.nrcpts, req->result,
			  req->held ? " (held)" : "");
		smtp_server_data_log_reception(s, req, op);
		/* Its reception lines before any line delivery writes of it:
		 * the batch goes now, not at the turn's end (evlog.h). */
		evlog_batch_flush();
		smtp_server_reply(s, "250 2.0.0 %s queued%s", qid,
				  req->held ? " (held by policy)" : "");
		smtp_server_idle(s);
		/* The delivery side takes the op (envelope and body) from here.
		 */
		smtp_server_data_hand_off(s, op);
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

/* The scanner found the message bad: say why, in the reply and the
 * delivery log. */
static void
smtp_server_data_bad(struct smtp_server_session *s)
{
	STATS_INC(messages_rejected);
	if (s->scan.bad & SMTP_DATA_BAD_SIZE) {
		STATS_INC(rejected_size);
		smtp_server_reply(s, "552 5.3.4 Message size exceeds "
				     "fixed maximum message size");
	} else if (s->scan.bad & SMTP_DATA_BAD_HEADER) {
		STATS_INC(rejected_content);
		smtp_server_reply(s,
				  "554 5.6.0 Message refused: header block "
				  "longer than %u octets",
				  SMTP_HEADER_MAX_BYTES);
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
	    s,
	    s->scan.bad & SMTP_DATA_BAD_SIZE     ? 552
	    : s->scan.bad & SMTP_DATA_BAD_HEADER ? 554
						 : 550,
	    s->scan.bad & SMTP_DATA_BAD_SIZE     ? "message too large"
	    : s->scan.bad & SMTP_DATA_BAD_HEADER ? "header block too long"
	    : s->scan.bad & SMTP_DATA_BAD_BARE ? "bare CR or LF in message data"
	    : s->scan.bad & SMTP_DATA_BAD_NUL
		? "NUL in message data"
		: "line longer than 998 characters",
	    NULL, NULL);
	smtp_server_error(s);
	smtp_server_idle(s);
}

/*
 * The queue operation for S's message: the envelope from the transaction;
 * the recipients and the body move into it (the body's memory stays
 * charged, as s->inflight_charge, until the intake is done with it).
 * NULL when out of memory: S keeps everything then.
 */
static struct queue_op *
smtp_server_data_op(struct smtp_server_session *s)
{
	struct queue_op *op;
	unsigned i;

	if ((op = queue_op_new(QOP_INSERT)) == NULL)
		return NULL;
	op->env.id = s->msg_id;
	op->env.created_ms = util_wall_ms();
	op->env.next_attempt_ms = op->env.created_ms;
	if (s->body8bit || s->scan.saw8bit)
		op->env.flags |= QUEUE_F_8BITMIME;
	if (s->smtputf8)
		op->env.flags |= QUEUE_F_SMTPUTF8;
	if (s->spool != NULL && s->body_len > s->hdr_end) {
		/* Spooled: the header block is chunk 0, the rest the last
		 * chunks (queue.h, op->spool). */
		op->tail_len = s->body_len - s->hdr_end;
		if ((op->tail = malloc(op->tail_len)) == NULL) {
			queue_op_free(op);
			return NULL;
		}
	}
	op->env.size = s->body_len + smtp_spool_bytes(s);
	op->env.sender = strdup(s->sender.null ? "" : s->sender.mailbox);
	op->env.user = s->user != NULL ? strdup(s->user->name) : NULL;
	op->env.client = strdup(s->client_str);
	op->env.helo = strdup(s->helo);
	op->env.rcpts = calloc(s->nrcpts, sizeof(*op->env.rcpts));
	if (op->env.sender == NULL || op->env.client == NULL ||
	    op->env.helo == NULL || op->env.rcpts == NULL ||
	    (s->user != NULL && op->env.user == NULL)) {
		queue_op_free(op);
		return NULL;
	}
	for (i = 0; i < s->nrcpts; i++) {
		op->env.rcpts[i].addr = s->rcpts[i];
		op->env.rcpts[i].notify = s->rcpt_dsn[i].notify;
		op->env.rcpts[i].orcpt = s->rcpt_dsn[i].orcpt;
	}
	op->env.nrcpts = s->nrcpts;
	op->env.flags |= s->dsn_ret;
	op->env.envid = s->envid;
	s->envid = NULL;
	s->nrcpts = 0;
	if (op->tail != NULL) {
		memcpy(op->tail, s->body + s->hdr_end, op->tail_len);
		s->body_len = s->hdr_end;
	}
	op->body = s->body;
	op->body_len = s->body_len;
	op->body_cap = s->body_cap;
	s->inflight_charge += s->body_cap;
	s->body = NULL;
	s->body_len = s->body_cap = 0;
	return op;
}

/* End of message data: check, then hand the message to the intake. */
static void
smtp_server_data_end(struct smtp_server_session *s)
{
	struct queue_op *op;
	struct dkim_bodyhash *bh = NULL;
	bool long_lines = false;
	char why[160];
	int rc = 0;

	if (smtp_spool_busy(s)) {
		/* The last spooled chunks commit first: the insert names
		 * them (smtp_server_data_spooled comes back here). */
		s->spool_end_wait = true;
		smtp_server_busy(s);
		return;
	}
	s->spool_end_wait = false;
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
	    s->conf->limits.long_lines == CONF_LONG_LINES_REENCODE) {
		s->scan.bad &= ~SMTP_DATA_BAD_LONG;
		long_lines = true;
	}
	if (s->scan.bad != 0) {
		smtp_server_data_bad(s);
		return;
	}
	if (s->feedback) {
		smtp_server_feedback_end(s);
		return;
	}
	if (s->nrcpts == 0) {
		/* Every recipient was suppressed (dropped, each with its
		 * event): nothing to queue, nothing to commit. */
		log_info("%016" PRIx64 " smtp message from %s not queued: "
			 "its %u recipient(s) suppressed",
			 s->id, s->client_str, s->rcpts_dropped);
		smtp_server_reply(s, "250 2.0.0 Ok: not queued, every "
				     "recipient is suppressed");
		smtp_server_idle(s);
		return;
	}
	if (long_lines && s->spool != NULL) {
		/* Re-encoding needs the message whole: it is read back
		 * (intake_unspool), within the body budget. */
		uint64_t whole = s->body_len + smtp_spool_bytes(s);

		if (!smtp_mem_take(whole, false)) {
			log_info("%016" PRIx64 " smtp message from %s "
				 "deferred: no body memory to re-encode it",
				 s->id, s->client_str);
			smtp_server_log_reject(s, 452,
					       "insufficient system resources",
					       NULL, NULL);
			smtp_server_reply(s, "452 4.3.1 Insufficient system "
					     "resources, try again later");
			smtp_server_idle(s);
			return;
		}
		s->inflight_charge = whole;
	}
	if ((op = smtp_server_data_op(s)) == NULL ||
	    (rc = smtp_spool_adopt(s, op, &bh, why, sizeof(why))) != 0) {
		log_warnx("%016" PRIx64 " smtp cannot queue a message: %s",
			  s->id, op == NULL ? "out of memory" : why);
		queue_op_free(op);
		smtp_mem_give(s->inflight_charge);
		s->inflight_charge = 0;
		if (rc == -2)
			smtp_server_reply(
			    s, "452 4.3.1 Insufficient system storage");
		else
			smtp_server_reply(s, "451 4.3.0 Temporary failure, "
					     "try again later");
		smtp_server_idle(s);
		return;
	}
	s->pending++;
	smtp_server_busy(s);
	clock_gettime(CLOCK_MONOTONIC, &s->eod);
	memset(&s->intake, 0, sizeof(s->intake));
	s->intake.loop = s->loop;
	s->intake.conf = s->conf;
	s->intake.keyset = s->gen->keyset;
	s->intake.dns = s->loop->dns;
	s->intake.user = s->user;
	s->intake.op = op;
	s->intake.long_lines = long_lines;
	s->intake.trace_len = s->trace_len;
	s->intake.bodyhash = bh;
	s->intake.done = smtp_server_data_on_intake;
	s->intake.arg = s;
	intake_submit(&s->intake);
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
	size_t max = s->conf->limits.max_message_size, want = *limit, cap;

	uint64_t total = s->body_len + smtp_spool_bytes(s);

	if (s->scan.bad &
	    (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM | SMTP_DATA_BAD_HEADER))
		return 0; /* nothing more is kept */
	if (total >= max)
		return 0; /* the next octet sets SMTP_DATA_BAD_SIZE */
	if (want > max - total)
		want = (size_t)(max - total);
	want += 2;
	if (want > s->conf->limits.max_body_memory - s->body_len)
		want = s->conf->limits.max_body_memory - s->body_len;
	switch (smtp_server_data_reserve(s, want, false, &cap)) {
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
	smtp_server_data_mem_wait(s, cap);
	return -1;
}

/* The budget's answer to S's wait (its loop, from the mailbox). */
static void
smtp_server_data_on_mem(void *arg)
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
		} else if (smtp_server_data_resize(s, s->mem_cap) != 0) {
			s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		}
		s->flags &= ~SF_MEM_WAIT;
		/* The pause was ours, not the client's: a new rate window. */
		smtp_server_rate_start(s);
		if (s->bev != NULL && !(s->flags & SF_READ_OFF) &&
		    s->state != SS_CLOSING)
			smtp_server_read_set(s, true);
		smtp_server_input(s);
	}
	smtp_server_settle(s);
}

/* Where the header block ends (after its empty line) in what S keeps.  A
 * header block (its lines, the empty one aside) over SMTP_HEADER_MAX_BYTES
 * refuses the message, whether its end came in the same read as the octets
 * over the limit or has not come yet.  After every step of the scanner,
 * the one that ends the message included. */
static void
smtp_server_data_hdr_find(struct smtp_server_session *s)
{
	const uint8_t *p;

	if (s->hdr_end != 0 || s->body == NULL)
		return;
	if (s->body_len >= s->hdr_scan + 4) {
		p = memmem(s->body + s->hdr_scan, s->body_len - s->hdr_scan,
			   "\r\n\r\n", 4);
		if (p != NULL) {
			s->hdr_end = (size_t)(p - s->body) + 4;
			if (s->hdr_end - 2 - s->trace_len >
			    SMTP_HEADER_MAX_BYTES)
				s->scan.bad |= SMTP_DATA_BAD_HEADER;
			return;
		}
		s->hdr_scan = s->body_len - 3;
	}
	if (s->body_len - s->trace_len > SMTP_HEADER_MAX_BYTES)
		s->scan.bad |= SMTP_DATA_BAD_HEADER;
}

/*
 * After a step of the scanner: past the header block, each full chunk of
 * the body goes to the queue (smtp_spool.c), and with too many of them in
 * flight the session stops reading.  The last octets stay here for the
 * insert, so the end of data never spools.
 */
static void
smtp_server_data_spool(struct smtp_server_session *s)
{
	size_t at = smtp_server_data_streams(s) ? QUEUE_CHUNK_BYTES + 1
						: SMTP_SPOOL_START_BYTES;
	size_t cap;
	uint8_t *nb;

	if (s->hdr_end == 0 ||
	    (s->scan.bad &
	     (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM | SMTP_DATA_BAD_HEADER)))
		return;
	while (s->body_len - s->hdr_end >= at && !smtp_spool_full(s)) {
		if (smtp_spool_spill(s, QUEUE_CHUNK_BYTES) != 0) {
			s->scan.bad |= SMTP_DATA_BAD_NOMEM;
			return;
		}
		at = QUEUE_CHUNK_BYTES + 1;
	}
	/* A body that grew whole before it began to stream gives back what
	 * streaming does not need (a shrink: no copy). */
	cap = smtp_server_data_stream_cap(s);
	if (smtp_spool_bytes(s) > 0 && s->body_cap > cap &&
	    s->body_len <= cap && (nb = realloc(s->body, cap)) != NULL) {
		smtp_mem_give(s->body_cap - cap);
		s->body = nb;
		s->body_cap = cap;
	}
	if (smtp_spool_full(s) && !(s->flags & SF_SPOOL_WAIT)) {
		s->flags |= SF_SPOOL_WAIT;
		smtp_server_read_set(s, false);
	}
}

void
smtp_server_data_spooled(struct smtp_server_session *s)
{
	if (s->flags & SF_ZOMBIE) {
		/* Nothing will be read: the chunks go (a session gone
		 * mid-message gives no 250). */
		smtp_spool_release(s, false);
	} else if (s->spool_end_wait) {
		if (!smtp_spool_busy(s)) {
			smtp_server_data_end(s);
			/* An answer already: read what was pipelined. */
			if (s->state != SS_BUSY)
				smtp_server_resume(s);
		}
	} else if ((s->flags & SF_SPOOL_WAIT) && !smtp_spool_full(s)) {
		s->flags &= ~SF_SPOOL_WAIT;
		smtp_server_data_spool(s); /* a full chunk held: it goes */
		if (!(s->flags & SF_SPOOL_WAIT)) {
			/* The pause was ours, not the client's: a new rate
			 * window. */
			smtp_server_rate_start(s);
			if (s->bev != NULL && !(s->flags & SF_READ_WAITS) &&
			    !(s->flags & SF_READ_OFF) && s->state != SS_CLOSING)
				smtp_server_read_set(s, true);
			smtp_server_input(s);
		}
	}
	smtp_server_settle(s);
}

/* Feed input to the scanner without pulling it into one contiguous block.
 * Returns 1 at the end of data, 0 otherwise, -1 when waiting for memory. */
static int
smtp_server_data_feed(struct smtp_server_session *s, struct evbuffer *in,
		      size_t limit, size_t *used)
{
	struct evbuffer_iovec v[16];
	enum smtp_data_result r = SMTP_DATA_MORE;
	size_t total = 0, got, out;
	int i, n;

	*used = 0;
	/* A body that may spool is taken in steps, spooled between them. */
	if (s->spool_ok && limit > SMTP_SPOOL_FEED_BYTES)
		limit = SMTP_SPOOL_FEED_BYTES;
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
			if (smtp_server_data_reserve(s, len - off + 2, true,
						     NULL) != 0)
				s->scan.bad |= SMTP_DATA_BAD_NOMEM;
		}
		total += off;
	}
	evbuffer_drain(in, total);
	*used = total;
	smtp_server_data_hdr_find(s);
	if (r != SMTP_DATA_END && s->spool_ok)
		smtp_server_data_spool(s);
	return r == SMTP_DATA_END;
}

int
smtp_server_data_input(struct smtp_server_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in), used;
	int end;

	if (avail == 0 || (s->flags & SF_READ_WAITS))
		return 0;
	end = smtp_server_data_feed(s, in, avail, &used);
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
				  s->conf->hostname);
		smtp_server_close_after(s);
		return 0;
	}
	smtp_server_timer_arm(s);
	if (end)
		smtp_server_data_end(s);
	return 1;
}

int
smtp_server_data_input_bdat(struct smtp_server_session *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in), used;
	bool in_txn = s->nrcpts > 0 || s->rcpts_dropped > 0;

	if (s->bdat_left > 0) {
		if (avail == 0 || (s->flags & SF_READ_WAITS))
			return 0;
		if (in_txn) {
			if (smtp_server_data_feed(
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
		smtp_server_refuse(s, "503 5.5.1 Error: no valid transaction "
				      "for this BDAT chunk");
		smtp_server_idle(s);
		return 1;
	}
	if (s->scan.bad & (SMTP_DATA_BAD_BARE | SMTP_DATA_BAD_NOMEM)) {
		/* Refused with the reason now, not after more chunks
		 * (RFC 3030 2: no BDAT follows a failed one). */
		smtp_server_data_end(s);
		return 1;
	}
	if (!s->bdat_last) {
		smtp_server_reply(s, "250 2.0.0 Ok: %" PRIu64 " octets",
				  (uint64_t)s->body_len + smtp_spool_bytes(s));
		smtp_server_enter(s, SS_RCPT);
		return 1;
	}
	/* A message must end with CRLF: complete a last unterminated line,
	 * but a final bare CR stays an error. */
	if (smtp_data_finish(&s->scan) > 0)
		smtp_server_data_add(s, "\r\n", 2);
	smtp_server_data_end(s);
	return 1;
}

/* DATA and BDAT commands ---------------------------------------------- */

void
smtp_server_data_cmd(struct smtp_server_session *s, char *arg)
{
	if (*arg != '\0') {
		smtp_server_refuse(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->flags & SF_BDAT_USED) {
		smtp_server_refuse(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	if (smtp_server_data_begin(s, true) != 0) {
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

void
smtp_server_data_cmd_bdat(struct smtp_server_session *s, char *arg)
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
	if ((s->nrcpts > 0 || s->rcpts_dropped > 0) &&
	    !(s->flags & SF_BDAT_USED)) {
		s->flags |= SF_BDAT_USED;
		if (smtp_server_data_begin(s, false) != 0) {
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
