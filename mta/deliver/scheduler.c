/*
 * scheduler.c — the delivery scheduler: which recipient goes where, when,
 * over which connection (Postfix qmgr / KumoMTA ready queues in spirit).
 *
 * Owns: every queued message in memory (envelopes; bodies only while a
 * round of attempts needs them), destinations and their DNS state, sites
 * (MX roll-up), paths (pool × site: connections, limits, rate, back-off),
 * the retry heap, and every state change written back to the queue.
 * Delivery loop thread only.  Invariants: a round of attempts for a message
 * settles once (one queue write); a finished message leaves LMDB; nothing
 * about a recipient is logged but its domain and position.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <idn2.h>
#include <openssl/err.h>
#include <sodium.h>

#include "dns/dns.h"
#include "mta/deliver/bounce.h"
#include "mta/deliver/delivery.h"
#include "mta/observe/evlog.h"
#include "mta/observe/metrics.h"
#include "mta/deliver/sched_heap.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/scrub.h"
#include "mta/observe/stats.h"
#include "mta/core/worker.h"

#define SCHED_ROUND_BATCH    2000 /* rounds started per loop turn */
#define SCHED_DEST_MIN_TTL   5    /* seconds an MX answer is kept at least */
#define SCHED_DEST_FAIL_TTL  30   /* seconds a failed lookup is kept */
#define SCHED_BACKOFF_LEVELS 8
/* Rounds in flight at once (envelopes and bodies in memory): a restart with
 * a million due messages must not read them all at once. */
#define SCHED_MAX_ACTIVE 20000

enum dest_state { DEST_NEW, DEST_RESOLVING, DEST_READY, DEST_FAILED };

struct sched_dest {
	char *domain;
	const struct conf_destination *cfg;
	enum dest_state state;
	int64_t expires_ms;
	struct sched_site *site;
	int fail_code; /* DEST_FAILED: 451 (retry) or 550 (bounce) */
	char fail_text[200];
	struct sched_job *waiting;
	struct dns_query *q;
	int64_t suspended_until_ms; /* by an operator */
	char *suspend_reason;
	char *ace; /* the A-label form of an internationalized domain, for
		      DNS (the U-label form is what the recipient carries) */
};

/* A queue write in flight, and what to do when it is committed. */
struct sched_write {
	struct queue_op *op;
	struct sched_msg *msg; /* NULL for a DSN insert */
};

static struct {
	struct loop *loop;
	const struct conf *conf;
	struct queue *queue;
	struct dns_resolver *dns;
	SSL_CTX *ssl;
	struct smtp_client_env cenv;
	struct htab dests, sites;
	struct idmap ids; /* every message in memory, by queue id */
	uint64_t nheld;
	uint64_t ncorrupt;         /* held because their record is damaged */
	uint64_t corrupt_total;    /* damaged records found since start */
	struct event *gauge_timer; /* refreshes the metrics snapshot */
	pthread_mutex_t gauge_mu;
	char *gauges;           /* exposition text of the scheduler's gauges */
	struct sched_heap heap; /* messages waiting for their due time */
	struct event *retry_timer;
	unsigned nconn;
	unsigned writes;
	uint64_t nmsgs;
	bool stopping;
	struct event *stop_timer;
	struct sched_msg *active; /* messages in a round (with r) */
	unsigned nactive, nloading;
} S;

static const struct smtp_client_cb sched_conn_cb;

static void sched_round_start(struct sched_msg *m);
static void sched_settle(struct sched_msg *m);
static void sched_path_kick(struct sched_path *p);
static void sched_job_results(struct sched_job *job);
static void sched_maybe_stop(void);
static void sched_bounce_pending(struct sched_msg *m);
static void sched_gauge_cb(evutil_socket_t fd, short what, void *arg);
static struct sched_job *sched_path_pop(struct sched_path *p);
static void sched_write_resched(struct sched_msg *m, int64_t old_due,
				bool held);
static void sched_delete_stub(struct sched_msg *m);
static void sched_due_push(struct sched_msg *m);

static int64_t
sched_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sched_timer_ms(struct event *ev, int64_t delay_ms)
{
	struct timeval tv;

	if (delay_ms < 0)
		delay_ms = 0;
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

/* The domain of an address, lower-cased, into BUF. */
static const char *
sched_rcpt_domain(const char *addr, char *buf, size_t len)
{
	const char *at = strrchr(addr, '@');
	size_t i;

	if (at == NULL)
		at = addr - 1;
	for (i = 0; at[1 + i] != '\0' && i + 1 < len; i++) {
		char ch = at[1 + i];

		buf[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
	}
	buf[i] = '\0';
	return buf;
}

/* Messages and envelopes ------------------------------------------------ */

static char *
sched_strdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

/* Deep copy of SRC into DST.  0 or -1 (DST then cleared). */
static int
sched_env_copy(struct queue_envelope *dst, const struct queue_envelope *src)
{
	uint32_t i;

	*dst = *src;
	dst->sender = sched_strdup(src->sender);
	dst->user = sched_strdup(src->user);
	dst->client = sched_strdup(src->client);
	dst->helo = sched_strdup(src->helo);
	dst->rcpts = calloc(src->nrcpts ? src->nrcpts : 1, sizeof(*dst->rcpts));
	if (dst->rcpts == NULL || (src->sender && !dst->sender)) {
		dst->nrcpts = 0;
		queue_envelope_clear(dst);
		return -1;
	}
	for (i = 0; i < src->nrcpts; i++) {
		dst->rcpts[i] = src->rcpts[i];
		dst->rcpts[i].addr = sched_strdup(src->rcpts[i].addr);
		dst->rcpts[i].last_reply =
		    sched_strdup(src->rcpts[i].last_reply);
		if (dst->rcpts[i].addr == NULL) {
			queue_envelope_clear(dst);
			return -1;
		}
	}
	return 0;
}

static const struct conf_pool *
sched_pool_for(const struct queue_envelope *env)
{
	const struct conf_user *u;

	if (env->user != NULL && (u = conf_user_find(S.conf, env->user)) &&
	    u->pool != NULL)
		return u->pool;
	if (env->user == NULL && S.conf->relay_pool != NULL)
		return S.conf->relay_pool;
	return S.conf->default_pool;
}

static struct sched_msg *
sched_msg_new(uint64_t id, int64_t due)
{
	struct sched_msg *m = calloc(1, sizeof(*m));

	if (m != NULL) {
		m->id = id;
		m->due_ms = due;
		m->heap_idx = UINT32_MAX;
		if (idmap_put(&S.ids, id, m) != 0) {
			free(m);
			return NULL;
		}
		S.nmsgs++;
	}
	return m;
}

static void
sched_msg_free(struct sched_msg *m)
{
	idmap_del(&S.ids, m->id);
	if (m->flags & SM_HELD)
		S.nheld--;
	if (m->flags & SM_CORRUPT)
		S.ncorrupt--;
	free(m);
	S.nmsgs--;
}

/* Give M a round: ENV (moved in, zeroed at the source) and BODY (owned). */
static int
sched_round_new(struct sched_msg *m, struct queue_envelope *env, uint8_t *body,
		size_t body_len)
{
	struct sched_round *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	r->env = *env;
	memset(env, 0, sizeof(*env));
	r->body = body;
	r->body_len = body_len;
	r->pool = sched_pool_for(&r->env);
	m->r = r;
	r->next = S.active;
	if (S.active != NULL)
		S.active->r->prev = m;
	S.active = m;
	S.nactive++;
	return 0;
}

/* The round is over: drop everything but the stub. */
static void
sched_round_free(struct sched_msg *m)
{
	struct sched_round *r = m->r;
	uint32_t i;

	if (r == NULL)
		return;
	if (r->remote != NULL)
		for (i = 0; i < r->env.nrcpts; i++)
			free(r->remote[i]);
	free(r->remote);
	free(r->bounced);
	free(r->body);
	queue_envelope_clear(&r->env);
	if (r->prev != NULL)
		r->prev->r->next = r->next;
	else
		S.active = r->next;
	if (r->next != NULL)
		r->next->r->prev = r->prev;
	free(r);
	m->r = NULL;
	S.nactive--;
}

/* A held message waits here, outside the heap, until released. */
static void
sched_hold(struct sched_msg *m)
{
	if (!(m->flags & SM_HELD)) {
		m->flags |= SM_HELD;
		S.nheld++;
	}
}

/* Undo sched_hold() (and a hold for a damaged record). */
static void
sched_unhold(struct sched_msg *m)
{
	if (m->flags & SM_HELD) {
		m->flags &= ~SM_HELD;
		S.nheld--;
	}
	if (m->flags & SM_CORRUPT) {
		m->flags &= ~SM_CORRUPT;
		S.ncorrupt--;
	}
}

/* Attempt M again in MS, the schedule index on disk moved along (the due
 * time in memory is the key of M's entry there, so they must not part). */
static void
sched_retry_later(struct sched_msg *m, int64_t ms)
{
	int64_t old = m->due_ms;

	m->due_ms = sched_now_ms() + ms;
	sched_write_resched(m, old, false);
	sched_due_push(m);
}

/* Retry heap (min-heap on next_attempt_ms, mta/deliver/sched_heap.c)
 * ----------- */

static void
sched_retry_arm(void)
{
	if (S.heap.n == 0 || S.stopping) {
		evtimer_del(S.retry_timer);
		return;
	}
	sched_timer_ms(S.retry_timer, S.heap.v[0]->due_ms - sched_now_ms());
}

/* M is due at M->due_ms: into the heap, the timer moved if it comes first. */
static void
sched_due_push(struct sched_msg *m)
{
	if (m->heap_idx != UINT32_MAX)
		return;
	if (sched_heap_push(&S.heap, m) != 0)
		panic("out of memory growing the retry heap");
	if (m->heap_idx == 0)
		sched_retry_arm();
}

/* Start the rounds that are due, as far as SCHED_MAX_ACTIVE allows. */
static void
sched_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = sched_now_ms();
	unsigned n = 0;

	(void)fd;
	(void)what;
	(void)arg;
	while (S.heap.n > 0 && S.heap.v[0]->due_ms <= now &&
	       n++ < SCHED_ROUND_BATCH && !S.stopping &&
	       S.nactive + S.nloading < SCHED_MAX_ACTIVE)
		sched_round_start(sched_heap_pop(&S.heap));
	if (S.heap.n > 0 && S.heap.v[0]->due_ms <= now &&
	    S.nactive + S.nloading < SCHED_MAX_ACTIVE)
		sched_timer_ms(S.retry_timer, 0); /* yield, then go on */
	else if (S.heap.n > 0 && S.heap.v[0]->due_ms <= now)
		; /* a settling round re-arms (sched_round_done) */
	else
		sched_retry_arm();
}

/* A round ended (or a load failed): room for a due one. */
static void
sched_round_done(void)
{
	if (!S.stopping && S.heap.n > 0 &&
	    S.heap.v[0]->due_ms <= sched_now_ms() &&
	    S.nactive + S.nloading < SCHED_MAX_ACTIVE)
		sched_timer_ms(S.retry_timer, 0);
}

/* Queue writes ---------------------------------------------------------- */

static void sched_on_written(void *arg);

/* Writer thread. */
static void
sched_write_done_cb(struct queue_op *op, int status, void *arg)
{
	(void)op;
	(void)status;
	loop_post(S.loop, sched_on_written, arg);
}

static void
sched_on_written(void *arg)
{
	struct sched_write *w = arg;
	struct sched_msg *m = w->msg;
	char qid[QUEUE_ID_HEX_BYTES];

	S.writes--;
	queue_id_format(w->op->env.id, qid);
	if (w->op->status != 0)
		log_warnx("%s queue write failed: %s (the message stays as "
			  "it was on disk and is retried)",
			  qid, w->op->err);
	if (m != NULL) {
		m->writes--;
		if ((m->flags & SM_DELETED) && m->writes == 0 &&
		    !(m->flags & SM_LOADING) && m->r == NULL)
			sched_msg_free(m);
	}
	queue_op_free(w->op);
	free(w);
	sched_maybe_stop();
}

/* Write M's envelope (QOP_UPDATE) or remove M (QOP_DELETE). */
static void
sched_write(struct sched_msg *m, enum queue_op_kind kind, int64_t old_due)
{
	struct sched_write *w = calloc(1, sizeof(*w));
	struct queue_op *op = queue_op_new(kind);

	if (w == NULL || op == NULL ||
	    sched_env_copy(&op->env, &m->r->env) != 0) {
		/* The state stays as it is on disk: the message is retried
		 * from there after a restart.  Better than crashing. */
		log_warnx("out of memory writing a queue update");
		free(w);
		if (op != NULL)
			queue_op_free(op);
		return;
	}
	op->old_due_ms = old_due;
	/* A settle gates no reply: it may share the next commit.  A crash
	 * before then delivers the message again (at least once). */
	op->lazy = true;
	w->op = op;
	w->msg = m;
	m->writes++;
	S.writes++;
	queue_submit(S.queue, op, sched_write_done_cb, w);
}

/* DSNs ------------------------------------------------------------------ */

static void sched_on_dsn_written(void *arg);

static void
sched_dsn_done_cb(struct queue_op *op, int status, void *arg)
{
	(void)op;
	(void)status;
	loop_post(S.loop, sched_on_dsn_written, arg);
}

static void
sched_on_dsn_written(void *arg)
{
	struct sched_write *w = arg;
	struct queue_op *op = w->op;
	char qid[QUEUE_ID_HEX_BYTES];

	S.writes--;
	free(w);
	queue_id_format(op->env.id, qid);
	if (op->status != 0) {
		log_warnx("DSN %s could not be queued: %s", qid, op->err);
		queue_op_free(op);
	} else {
		log_info("%s DSN queued", qid);
		sched_message_add(op);
	}
	sched_maybe_stop();
}

/* Queue a DSN for the recipients of M that failed this round. */
static void
sched_dsn(struct sched_msg *m)
{
	struct bounce_rcpt *br;
	char(*st)[12] = NULL;
	struct bounce_input in;
	struct queue_op *op;
	struct sched_write *w;
	char qid[QUEUE_ID_HEX_BYTES];
	int64_t now = sched_now_ms();
	unsigned i;

	if (m->r->env.sender == NULL || m->r->env.sender[0] == '\0' ||
	    (m->r->env.flags & QUEUE_F_DSN) || m->r->nbounced == 0)
		return;
	br = calloc(m->r->nbounced, sizeof(*br));
	st = calloc(m->r->nbounced, sizeof(*st));
	if (br == NULL || st == NULL) {
		free(br);
		free(st);
		return;
	}
	queue_id_format(m->id, qid);
	for (i = 0; i < m->r->nbounced; i++) {
		const struct queue_rcpt *r = &m->r->env.rcpts[m->r->bounced[i]];
		const char *text = r->last_reply ? r->last_reply : "";

		br[i].addr = r->addr;
		br[i].code = r->last_code >= 200 ? r->last_code : 0;
		br[i].diag = text;
		br[i].remote_mta =
		    m->r->remote ? m->r->remote[m->r->bounced[i]] : NULL;
		/* The status: the reply's enhanced code, else by state. */
		br[i].status = r->state == QR_EXPIRED ? "4.4.7" : "5.0.0";
		if ((text[0] == '5' || text[0] == '4') && text[1] == '.') {
			size_t k = strcspn(text, " ");

			if (k < sizeof(st[0])) {
				memcpy(st[i], text, k);
				st[i][k] = '\0';
				br[i].status = st[i];
			}
		}
	}
	memset(&in, 0, sizeof(in));
	in.hostname = S.conf->hostname;
	in.qid = qid;
	in.sender = m->r->env.sender;
	in.arrival_ms = m->r->env.created_ms;
	in.rcpts = br;
	in.nrcpts = m->r->nbounced;
	if (m->r->body != NULL) {
		in.headers = m->r->body;
		in.headers_len = bounce_headers_len(m->r->body, m->r->body_len);
	}
	in.reason =
	    m->r->env.rcpts[m->r->bounced[0]].state == QR_EXPIRED
		? "delivery was given up after the maximum time in the queue"
		: "the receiving server refused it permanently";
	op = queue_op_new(QOP_INSERT);
	w = calloc(1, sizeof(*w));
	if (op == NULL || w == NULL ||
	    bounce_dsn_build(&in, &op->body, &op->body_len) != 0)
		goto oom;
	free(br);
	br = NULL;
	free(st);
	st = NULL;
	op->env.id = queue_id_next(S.queue);
	op->env.created_ms = op->env.next_attempt_ms = now;
	op->env.flags = QUEUE_F_DSN;
	for (i = 0; m->r->env.sender[i] != '\0'; i++)
		if ((unsigned char)m->r->env.sender[i] >= 0x80)
			op->env.flags |= QUEUE_F_SMTPUTF8 | QUEUE_F_8BITMIME;
	for (i = 0; i < op->body_len; i++)
		if (op->body[i] >= 0x80) {
			/* The original headers may be 8-bit. */
			op->env.flags |= QUEUE_F_8BITMIME;
			break;
		}
	op->env.size = op->body_len;
	op->env.sender = strdup("");
	op->env.client = strdup("127.0.0.1");
	op->env.helo = strdup(S.conf->hostname);
	op->env.rcpts = calloc(1, sizeof(*op->env.rcpts));
	if (op->env.sender == NULL || op->env.client == NULL ||
	    op->env.helo == NULL || op->env.rcpts == NULL)
		goto oom;
	op->env.nrcpts = 1;
	if ((op->env.rcpts[0].addr = strdup(m->r->env.sender)) == NULL)
		goto oom;
	w->op = op;
	S.writes++;
	queue_submit(S.queue, op, sched_dsn_done_cb, w);
	return;
oom:
	log_warnx("%s out of memory building a DSN", qid);
	free(br);
	free(st);
	free(w);
	if (op != NULL)
		queue_op_free(op);
}

/* Settling a round ------------------------------------------------------ */

static uint64_t
sched_retry_delay_ms(unsigned attempts)
{
	const struct conf_delivery *d = &S.conf->delivery;
	uint64_t base, jit;
	size_t k;

	if (d->nretry_intervals == 0)
		return 300000;
	k = attempts == 0 ? 0 : attempts - 1;
	if (k >= d->nretry_intervals)
		k = d->nretry_intervals - 1;
	base = d->retry_intervals_ms[k];
	if (d->retry_jitter_pct == 0 || base < 10)
		return base;
	/* ± jitter%, so retries of a burst do not come back as a burst. */
	jit = base * d->retry_jitter_pct / 100;
	return base - jit +
	       randombytes_uniform((uint32_t)(jit * 2 + 1 > UINT32_MAX
						  ? UINT32_MAX
						  : jit * 2 + 1));
}

/* Recipient RI of M failed for good (STATE: QR_BOUNCED or QR_EXPIRED): it
 * goes into this round's DSN.  Out of memory for that, it stays pending and
 * M comes back after a retry interval (never failed without its DSN):
 * returns -1. */
static int
sched_rcpt_fail(struct sched_msg *m, uint32_t ri, uint8_t state)
{
	char qid[QUEUE_ID_HEX_BYTES];

	if (bounce_collect(&m->r->env.rcpts[ri], ri, state, &m->r->bounced,
			   &m->r->nbounced) == 0)
		return 0;
	m->r->kept = true;
	queue_id_format(m->id, qid);
	log_warnx("%s out of memory adding recipient #%" PRIu32 " to the DSN: "
		  "kept for a retry",
		  qid, ri + 1);
	return -1;
}

/* An operator bounced M: every pending recipient fails now. */
static void
sched_bounce_pending(struct sched_msg *m)
{
	struct queue_envelope *env = &m->r->env;
	uint32_t i;

	m->flags &= ~SM_BOUNCE_REQ;
	for (i = 0; i < env->nrcpts; i++) {
		struct queue_rcpt *r = &env->rcpts[i];

		if (r->state != QR_PENDING)
			continue;
		if (sched_rcpt_fail(m, i, QR_BOUNCED) != 0) {
			/* Kept pending: bounced at the next settle. */
			m->flags |= SM_BOUNCE_REQ;
			continue;
		}
		r->last_code = 0;
		free(r->last_reply);
		r->last_reply = strdup("5.0.0 bounced by an administrator");
		STATS_INC(bounced);
	}
}

/* Every job of M's round is back: write down what happened, once, and
 * drop the round (envelope, body) from memory. */
static void
sched_settle(struct sched_msg *m)
{
	struct queue_envelope *env = &m->r->env;
	int64_t now = sched_now_ms(), old_due = m->due_ms;
	int64_t expiry = env->created_ms + (int64_t)S.conf->delivery.max_age_ms;
	unsigned pending = 0, attempts = 0;
	char qid[QUEUE_ID_HEX_BYTES];
	uint32_t i;

	if (m->flags & SM_BOUNCE_REQ)
		sched_bounce_pending(m);
	if (!(m->flags & SM_DELETE_REQ))
		sched_dsn(m);
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		if (m->flags & SM_DELETE_REQ)
			continue; /* deleted by an operator: no DSN, gone */
		pending++;
		if (env->rcpts[i].attempts > attempts)
			attempts = env->rcpts[i].attempts;
	}
	queue_id_format(m->id, qid);
	if (pending == 0) {
		log_debug("%s done: removed from the queue", qid);
		env->next_attempt_ms = old_due;
		m->flags |= SM_DELETED;
		sched_write(m, QOP_DELETE, old_due);
		sched_round_free(m);
		if (m->writes == 0)
			sched_msg_free(m);
		sched_round_done();
		return;
	}
	m->due_ms = now + (int64_t)sched_retry_delay_ms(attempts);
	/* Not past expiry; but a recipient kept after running out of memory
	 * for its DSN waits a retry interval, not "now" again. */
	if (m->due_ms > expiry && !m->r->kept)
		m->due_ms = expiry > now ? expiry : now;
	env->next_attempt_ms = m->due_ms;
	if (m->flags & SM_HOLD_REQ) {
		/* Held by an operator while it was being attempted. */
		m->flags &= ~SM_HOLD_REQ;
		env->flags |= QUEUE_F_HELD;
		sched_write(m, QOP_UPDATE, old_due);
		sched_round_free(m);
		sched_hold(m);
		sched_round_done();
		return;
	}
	log_debug("%s %u recipient(s) deferred; next attempt in %" PRId64 " s",
		  qid, pending, (m->due_ms - now + 999) / 1000);
	sched_write(m, QOP_UPDATE, old_due);
	sched_round_free(m);
	sched_due_push(m);
	sched_round_done();
}

/* Record one recipient's result. */
static void
sched_rcpt_result(struct sched_msg *m, uint32_t ri,
		  const struct smtp_client_result *r, const struct outcome *o,
		  const char *remote)
{
	struct queue_rcpt *rc = &m->r->env.rcpts[ri];

	if (r->stage != OS_LOCAL || r->code != 0)
		rc->attempts++;
	rc->last_code = (uint16_t)r->code;
	free(rc->last_reply);
	rc->last_reply = r->text != NULL ? strdup(r->text) : NULL;
	if (remote != NULL && remote[0] != '\0') {
		if (m->r->remote == NULL)
			m->r->remote =
			    calloc(m->r->env.nrcpts, sizeof(*m->r->remote));
		if (m->r->remote != NULL) {
			free(m->r->remote[ri]);
			m->r->remote[ri] = strdup(remote);
		}
	}
	switch (o->action) {
	case OA_DELIVERED:
		rc->state = QR_DELIVERED;
		STATS_INC(delivered);
		break;
	case OA_BOUNCE:
		if (sched_rcpt_fail(m, ri, QR_BOUNCED) == 0)
			STATS_INC(bounced);
		else
			STATS_INC(deferred);
		break;
	case OA_DEFER:
		STATS_INC(deferred);
		break;
	}
}

/* Jobs ------------------------------------------------------------------ */

static void
sched_job_free(struct sched_job *job)
{
	unsigned i;

	if (job->cj.res != NULL)
		for (i = 0; i < job->cj.nrcpt; i++)
			free(job->cj.res[i].text);
	free(job->cj.res);
	free(job->rcpt);
	free(job->addrs);
	free(job);
}

/* The job's addresses for the scrubber (mta/core/scrub.h): its recipients,
 * then the sender.  Valid while the job and its round are. */
static const char *
sched_job_scrub_addr(const void *arg, size_t i)
{
	const struct smtp_client_job *cj = arg;

	return i < cj->nrcpt ? cj->rcpts[i] : cj->sender;
}

static struct sched_job *
sched_job_new(struct sched_msg *m, struct sched_dest *d, unsigned n)
{
	struct sched_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->msg = m;
	job->dest = d;
	job->rcpt = calloc(n, sizeof(*job->rcpt));
	job->addrs = calloc(n, sizeof(*job->addrs));
	job->cj.res = calloc(n, sizeof(*job->cj.res));
	if (job->rcpt == NULL || job->addrs == NULL || job->cj.res == NULL) {
		sched_job_free(job);
		return NULL;
	}
	job->cj.rcpts = job->addrs;
	job->cj.sender = m->r->env.sender;
	job->cj.body = m->r->body;
	job->cj.body_len = m->r->body_len;
	job->cj.smtputf8 = (m->r->env.flags & QUEUE_F_SMTPUTF8) != 0;
	job->cj.eightbit = (m->r->env.flags & QUEUE_F_8BITMIME) != 0;
	job->cj.scrub.addr = sched_job_scrub_addr;
	job->cj.scrub.arg = &job->cj;
	job->cj.tls_verified = -1;
	return job;
}

/* Recipient RI of JOB's message goes in JOB (room made by sched_job_new). */
static void
sched_job_add(struct sched_job *job, uint32_t ri)
{
	job->rcpt[job->cj.nrcpt] = ri;
	job->addrs[job->cj.nrcpt] = job->msg->r->env.rcpts[ri].addr;
	job->cj.nrcpt++;
	job->cj.scrub.n = (size_t)job->cj.nrcpt + 1;
}

/* Fail every recipient of JOB the same way (DNS failure, dead host). */
static void
sched_job_fail(struct sched_job *job, enum outcome_stage stage, int code,
	       const char *text)
{
	unsigned i;

	for (i = 0; i < job->cj.nrcpt; i++) {
		struct smtp_client_result *r = &job->cj.res[i];

		if (r->text != NULL || r->code != 0)
			continue;
		r->stage = stage;
		r->code = code;
		r->text = strdup(text != NULL ? text : "");
	}
	sched_job_results(job);
}

/* The destination's compiled suspend_on regexes, into PATS (room for
 * CONF_SUSPEND_ON_MAX: the config refuses more).  Returns how many. */
static unsigned
sched_patterns(const struct conf_destination *cfg,
	       struct outcome_pattern pats[CONF_SUSPEND_ON_MAX])
{
	const regex_t *re = cfg->suspend_re;
	size_t i;

	for (i = 0; i < cfg->nsuspend_on && i < CONF_SUSPEND_ON_MAX; i++) {
		pats[i].re = (void *)&re[i];
		pats[i].suspend_ms = cfg->suspend_for_ms;
	}
	return (unsigned)i;
}

/* P may not send until UNTIL: what waits on it is deferred now (without
 * counting an attempt) rather than held, so rounds settle and expiry is
 * not delayed by a pause. */
static void
sched_path_defer_queue(struct sched_path *p, const char *why)
{
	struct sched_job *job;

	while ((job = sched_path_pop(p)) != NULL)
		sched_job_fail(job, OS_LOCAL, 0, why);
}

static void
sched_path_backoff(struct sched_path *p, const char *why)
{
	const struct conf_destination *cfg = p->cfg;
	uint64_t pause;
	char esc[200];

	if (p->backoff_level < SCHED_BACKOFF_LEVELS)
		p->backoff_level++;
	pause = cfg->backoff_pause_ms << (p->backoff_level - 1);
	if (pause > cfg->backoff_max_ms)
		pause = cfg->backoff_max_ms;
	p->paused_until_ms = sched_now_ms() + (int64_t)pause;
	log_info("destination %s backed off for %" PRIu64 " s (level %u): %s",
		 p->site->key, pause / 1000, p->backoff_level,
		 log_escape(esc, sizeof(esc), why, strlen(why)));
	sched_path_defer_queue(p, "4.4.2 destination backed off after "
				  "failures");
}

static void
sched_path_suspend(struct sched_path *p, uint64_t ms, const char *why)
{
	char esc[200];

	p->suspended = true;
	p->paused_until_ms = sched_now_ms() + (int64_t)ms;
	log_info("destination %s suspended for %" PRIu64 " s: reply matched a "
		 "suspend_on pattern: %s",
		 p->site->key, ms / 1000,
		 log_escape(esc, sizeof(esc), why, strlen(why)));
	sched_path_defer_queue(p, "4.4.2 destination suspended");
}

/* The delivery-log event of one recipient's result. */
static void
sched_log_result(struct sched_msg *m, const struct sched_job *job, uint32_t ri,
		 const struct smtp_client_result *r, const struct outcome *o)
{
	const struct smtp_client_job *cj = &job->cj;
	const struct queue_envelope *env = &m->r->env;
	struct evlog_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = o->action == OA_DELIVERED ? EV_DELIVERY
		  : o->action == OA_BOUNCE  ? EV_BOUNCE
					    : EV_TRANSIENT;
	ev.id = m->id;
	ev.user = env->user;
	ev.pool = m->r->pool != NULL ? m->r->pool->name : NULL;
	ev.source_addr = cj->source[0] ? cj->source : NULL;
	ev.destination = job->dest->domain;
	ev.mx_host = cj->mx_host[0] ? cj->mx_host : NULL;
	ev.mx_ip = cj->mx_ip[0] ? cj->mx_ip : NULL;
	ev.rcpt = env->rcpts[ri].addr;
	ev.sender = env->sender;
	ev.size = env->size;
	ev.nrcpts = -1;
	ev.attempt = env->rcpts[ri].attempts;
	ev.queue_time_ms = sched_now_ms() - env->created_ms;
	ev.code = r->code;
	ev.enhanced = o->status;
	ev.reply = r->text;
	ev.stage = outcome_stage_name(r->stage);
	ev.tls_version = cj->tls_version[0] ? cj->tls_version : NULL;
	ev.tls_cipher = cj->tls_cipher[0] ? cj->tls_cipher : NULL;
	ev.tls_verified = cj->tls_version[0] ? cj->tls_verified : -1;
	ev.count = -1;
	evlog_write(&ev);
	if (o->action == OA_DELIVERED && ev.queue_time_ms >= 0)
		metrics_observe(&metrics_delivery_latency,
				(double)ev.queue_time_ms / 1000.0);
}

/* "CODE TEXT" into WHY for a log line written after the job is gone:
 * scrubbed now, while the transaction's addresses are known. */
static void
sched_why(char *why, size_t len, int code, const char *text)
{
	char out[SCRUB_OUT_BYTES];
	const char *t;
	size_t n;

	t = scrub_text(text, strlen(text), NULL, 0, SCRUB_KNOWN, out,
		       sizeof(out), &n);
	snprintf(why, len, "%d %.*s", code, (int)n, t);
}

/* A job is back with results: apply them; settle the round when the
 * message has no job left.  Its diagnostics and delivery-log lines are
 * scrubbed of every address of the transaction (scrub_ctx). */
static void
sched_job_results(struct sched_job *job)
{
	struct sched_msg *m = job->msg;
	struct sched_path *p = job->path;
	const struct conf_destination *cfg = p ? p->cfg : job->dest->cfg;
	struct outcome_pattern pats[CONF_SUSPEND_ON_MAX];
	struct sched_job *again = NULL;
	struct outcome o;
	char qid[QUEUE_ID_HEX_BYTES], esc[300], why[300] = "";
	bool delivered = false, backoff = false, suspend = false;
	uint64_t suspend_ms = 0;
	const char *remote = job->cj.remote;
	unsigned i, npats;
	const struct scrub_ctx *prev_ctx;

	queue_id_format(m->id, qid);
	npats = sched_patterns(cfg, pats);
	prev_ctx = scrub_ctx_enter(&job->cj.scrub);
	for (i = 0; i < job->cj.nrcpt; i++) {
		struct smtp_client_result *r = &job->cj.res[i];

		outcome_classify(r->stage, r->code, r->text, pats, npats, &o);
		if (o.retry_now && p != NULL) {
			/* Too many recipients for that server in one go:
			 * these go again in a new transaction, now. */
			if (again == NULL &&
			    (again = sched_job_new(m, job->dest,
						   job->cj.nrcpt)) == NULL)
				o.retry_now = false;
			if (again != NULL) {
				sched_job_add(again, job->rcpt[i]);
				continue;
			}
		}
		sched_rcpt_result(m, job->rcpt[i], r, &o, remote);
		sched_log_result(m, job, job->rcpt[i], r, &o);
		if (o.action == OA_DELIVERED) {
			delivered = true;
			log_debug(
			    "%s rcpt %u to %s via %s: delivered%s%s: %d %s",
			    qid, job->rcpt[i], job->dest->domain, remote,
			    job->cj.tls[0] ? " over " : "", job->cj.tls,
			    r->code,
			    log_escape(esc, sizeof(esc), r->text,
				       strlen(r->text)));
		} else if (o.action == OA_DEFER) {
			log_debug("%s rcpt %u to %s%s%s: %s at %s: %d %s", qid,
				  job->rcpt[i], job->dest->domain,
				  remote[0] ? " via " : "", remote, "deferred",
				  outcome_stage_name(r->stage), r->code,
				  log_escape(esc, sizeof(esc), r->text,
					     strlen(r->text)));
		} else {
			log_info("%s rcpt %u to %s%s%s: %s at %s: %d %s", qid,
				 job->rcpt[i], job->dest->domain,
				 remote[0] ? " via " : "", remote,
				 o.action == OA_BOUNCE ? "bounced" : "deferred",
				 outcome_stage_name(r->stage), r->code,
				 log_escape(esc, sizeof(esc), r->text,
					    strlen(r->text)));
		}
		if (o.site_backoff && !backoff) {
			backoff = true;
			sched_why(why, sizeof(why), r->code, r->text);
		}
		if (o.suspend && !suspend) {
			suspend = true;
			suspend_ms = o.suspend_ms;
			sched_why(why, sizeof(why), r->code, r->text);
		}
	}
	scrub_ctx_leave(prev_ctx);
	if (p != NULL && delivered) {
		p->backoff_level = 0;
		p->conn_failures = 0;
	}
	if (again != NULL) {
		/* Same round: the message does not settle yet. */
		again->path = p;
		m->r->inflight++;
		if (p != NULL) {
			again->next = p->head;
			p->head = again;
			if (p->tail == NULL)
				p->tail = again;
			p->njobs++;
		}
	}
	m->r->inflight--;
	sched_job_free(job);
	if (m->r->inflight == 0)
		sched_settle(m);
	/* Last: pausing defers what is queued on P, other messages too. */
	if (p != NULL && suspend)
		sched_path_suspend(p, suspend_ms, why);
	else if (p != NULL && backoff)
		sched_path_backoff(p, why);
}

/* Paths and connections ------------------------------------------------- */

static void
sched_path_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_path *p = arg;

	(void)fd;
	(void)what;
	if (p->paused_until_ms <= sched_now_ms())
		p->suspended = false;
	sched_path_kick(p);
}

static struct sched_path *
sched_path_get(struct sched_site *site, const struct conf_pool *pool,
	       const struct conf_destination *cfg)
{
	struct sched_path *p, **np;
	unsigned i;

	for (i = 0; i < site->npaths; i++)
		if (site->paths[i]->pool == pool)
			return site->paths[i];
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	np = realloc(site->paths, (site->npaths + 1) * sizeof(*np));
	p->timer = evtimer_new(S.loop->base, sched_path_timer_cb, p);
	if (np == NULL || p->timer == NULL) {
		if (p->timer != NULL)
			event_free(p->timer);
		free(p);
		if (np != NULL)
			site->paths = np;
		return NULL;
	}
	site->paths = np;
	p->site = site;
	p->pool = pool;
	p->cfg = cfg;
	site->paths[site->npaths++] = p;
	return p;
}

/* Connections that are opening (not yet asked for a job). */
static unsigned
sched_path_opening(struct sched_path *p)
{
	return p->nconn - p->nbusy - p->nidle;
}

static unsigned
sched_path_conn_limit(const struct sched_path *p)
{
	unsigned lim = p->cfg->max_connections;

	/* Backed off: fewer connections (halved per level, at least 1). */
	if (p->backoff_level > 0)
		lim >>= p->backoff_level;
	return lim == 0 ? 1 : lim;
}

/* May P send one more message now (rate limits)?  If not, when. */
static bool
sched_path_rate_ok(struct sched_path *p, int64_t now, int64_t *when)
{
	if (p->next_send_ms > now) {
		*when = p->next_send_ms;
		return false;
	}
	if (p->next_send_hour_ms > now) {
		*when = p->next_send_hour_ms;
		return false;
	}
	return true;
}

static void
sched_path_rate_take(struct sched_path *p, int64_t now)
{
	const struct conf_destination *cfg = p->cfg;

	/* Smooth spacing: N per minute is one every 60/N s. */
	if (cfg->max_messages_per_minute > 0)
		p->next_send_ms =
		    (p->next_send_ms > now ? p->next_send_ms : now) +
		    60000 / cfg->max_messages_per_minute;
	if (cfg->max_messages_per_hour > 0)
		p->next_send_hour_ms =
		    (p->next_send_hour_ms > now ? p->next_send_hour_ms : now) +
		    3600000 / cfg->max_messages_per_hour;
}

static struct sched_job *
sched_path_pop(struct sched_path *p)
{
	struct sched_job *job = p->head;

	if (job == NULL)
		return NULL;
	p->head = job->next;
	if (p->head == NULL)
		p->tail = NULL;
	p->njobs--;
	job->next = NULL;
	return job;
}

/* Keep idle C on P's list (the last parked is the first reused).  0, or -1
 * when the list cannot grow. */
static int
sched_idle_add(struct sched_path *p, struct smtp_client *c)
{
	struct smtp_client **v;
	unsigned cap;

	if (p->nidle == p->idle_cap) {
		cap = p->idle_cap ? p->idle_cap * 2 : 4;
		if ((v = realloc(p->idle, cap * sizeof(*v))) == NULL)
			return -1;
		p->idle = v;
		p->idle_cap = cap;
	}
	p->idle[p->nidle++] = c;
	return 0;
}

/* Take C off P's idle list (if it is there). */
static void
sched_idle_remove(struct sched_path *p, struct smtp_client *c)
{
	unsigned i;

	for (i = p->nidle; i-- > 0;) {
		if (p->idle[i] != c)
			continue;
		memmove(&p->idle[i], &p->idle[i + 1],
			(p->nidle - i - 1) * sizeof(*p->idle));
		p->nidle--;
		return;
	}
}

static void
sched_dispatch(struct sched_path *p, struct smtp_client *c,
	       struct sched_job *job)
{
	sched_path_rate_take(p, sched_now_ms());
	p->nbusy++;
	smtp_client_send(c, &job->cj);
}

/*
 * Where and how a new connection of P goes: its site's hosts, the pool's
 * EHLO name (else the delivery default) and its next source address (round
 * robin), the destination's TLS policy and attempt bounds.
 */
static void
sched_path_target(struct sched_path *p, struct smtp_client_target *t)
{
	const struct conf_pool *pool = p->pool;

	memset(t, 0, sizeof(*t));
	t->hosts = p->site->hosts;
	t->nhosts = p->site->nhosts;
	t->port = p->site->port;
	t->ehlo = pool != NULL && pool->ehlo != NULL ? pool->ehlo
						     : S.conf->delivery.ehlo;
	if (pool != NULL && pool->nsources > 0) {
		t->source = pool->sources[p->source_next++ % pool->nsources];
		t->has_source = true;
	}
	t->tls = p->cfg->tls;
	t->max_mx_addresses = p->cfg->max_mx_addresses;
	t->max_mx_sessions = p->cfg->max_mx_sessions;
	t->attempt_timeout_ms = p->cfg->attempt_timeout_ms;
}

/* Start as much work on P as its limits allow. */
static void
sched_path_kick(struct sched_path *p)
{
	int64_t now = sched_now_ms(), when;
	struct smtp_client_target t;
	struct smtp_client *c;

	if (S.stopping)
		return;
	if (p->paused_until_ms > now) {
		sched_timer_ms(p->timer, p->paused_until_ms - now);
		return;
	}
	while (p->njobs > 0) {
		if (!sched_path_rate_ok(p, now, &when)) {
			sched_timer_ms(p->timer, when - now);
			return;
		}
		if (p->nidle > 0) {
			c = p->idle[--p->nidle];
			sched_dispatch(p, c, sched_path_pop(p));
			continue;
		}
		if (p->njobs <= sched_path_opening(p) ||
		    p->nconn >= sched_path_conn_limit(p) ||
		    S.nconn >= S.conf->delivery.max_connections)
			return;
		if (p->connect_after_ms > now) {
			sched_timer_ms(p->timer, p->connect_after_ms - now);
			return;
		}
		sched_path_target(p, &t);
		c = smtp_client_new(&S.cenv, &t, &sched_conn_cb, p);
		if (c == NULL)
			return;
		p->nconn++;
		S.nconn++;
	}
}

/* The client callbacks (struct smtp_client_cb); ARG is the path. */
static void
sched_conn_ready(struct smtp_client *c, void *arg)
{
	struct sched_path *p = arg;
	int64_t now = sched_now_ms(), when;

	if (S.stopping || p->paused_until_ms > now ||
	    smtp_client_msgs(c) >= p->cfg->max_messages_per_connection) {
		smtp_client_quit(c);
		return;
	}
	if (p->njobs > 0 && sched_path_rate_ok(p, now, &when)) {
		sched_dispatch(p, c, sched_path_pop(p));
		return;
	}
	/* Nothing to do now: keep it for a while. */
	if (sched_idle_add(p, c) != 0) {
		smtp_client_quit(c);
		return;
	}
	smtp_client_park(c);
	if (p->njobs > 0)
		sched_path_kick(p); /* arms the rate timer */
}

static void
sched_conn_done(struct smtp_client *c, struct smtp_client_job *cj, void *arg)
{
	struct sched_path *p = arg;

	(void)c;
	p->nbusy--;
	sched_job_results(SCHED_JOB_OF(cj));
}

static void
sched_conn_closed(struct smtp_client *c, bool failed, enum outcome_stage stage,
		  int code, const char *text, void *arg)
{
	struct sched_path *p = arg;
	struct sched_job *job;

	sched_idle_remove(p, c);
	p->nconn--;
	S.nconn--;
	if (failed) {
		/* No host of the site could be used.  If no other connection
		 * is working for this path, its queued jobs are deferred
		 * (they would wait on a dead site) and the path backs off. */
		p->conn_failures++;
		if (p->nbusy == 0 && p->nidle == 0 && p->njobs > 0) {
			/* The first job carries the failure (its outcome backs
			 * the path off, which defers the rest). */
			job = sched_path_pop(p);
			sched_job_fail(job, stage, code,
				       text ? text : "connection failed");
			while ((job = sched_path_pop(p)) != NULL)
				sched_job_fail(job, stage, code,
					       text ? text
						    : "connection failed");
		} else if (p->nbusy == 0 && p->nidle == 0) {
			sched_path_backoff(p,
					   text ? text : "connection failed");
		} else {
			/* Other connections work: the host is only partly
			 * unwell.  Open no new one for a while (never a
			 * reconnect loop). */
			int64_t wait = 1000 * (int64_t)(p->conn_failures < 30
							    ? p->conn_failures
							    : 30);

			p->connect_after_ms = sched_now_ms() + wait;
		}
	}
	sched_path_kick(p);
	sched_maybe_stop();
}

static const struct smtp_client_cb sched_conn_cb = {
	.ready = sched_conn_ready,
	.done = sched_conn_done,
	.closed = sched_conn_closed,
};

/* Destinations and sites ------------------------------------------------ */

static struct sched_site *
sched_site_get(const char *key, const struct dns_mx_host *hosts, size_t n,
	       unsigned port, bool implicit)
{
	struct sched_site *s = htab_get(&S.sites, key);
	size_t i;

	if (s != NULL)
		return s;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->key = strdup(key);
	s->hosts = calloc(n, sizeof(*s->hosts));
	if (s->key == NULL || s->hosts == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		if ((s->hosts[i].name = strdup(hosts[i].name)) == NULL)
			goto fail;
		s->nhosts++;
	}
	s->port = port;
	s->implicit = implicit;
	if (htab_put(&S.sites, key, s) != 0)
		goto fail;
	return s;
fail:
	for (i = 0; i < s->nhosts; i++)
		free(s->hosts[i].name);
	free(s->hosts);
	free(s->key);
	free(s);
	return NULL;
}

/* Hand JOB to the path of its destination's site. */
static void
sched_dest_route_job(struct sched_dest *d, struct sched_job *job)
{
	struct sched_path *p;

	p = sched_path_get(d->site, job->msg->r->pool, d->cfg);
	if (p == NULL) {
		sched_job_fail(job, OS_LOCAL, 451, "4.3.0 out of memory");
		return;
	}
	job->path = p;
	job->next = NULL;
	if (p->paused_until_ms > sched_now_ms()) {
		sched_job_fail(
		    job, OS_LOCAL, 0,
		    p->suspended
			? "4.4.2 destination suspended"
			: "4.4.2 destination backed off after failures");
		return;
	}
	if (p->tail != NULL)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->njobs++;
	sched_path_kick(p);
}

static void
sched_dest_flush(struct sched_dest *d)
{
	struct sched_job *job, *next;

	job = d->waiting;
	d->waiting = NULL;
	for (; job != NULL; job = next) {
		next = job->next;
		job->next = NULL;
		if (d->state == DEST_READY)
			sched_dest_route_job(d, job);
		else
			sched_job_fail(job, OS_LOCAL, d->fail_code,
				       d->fail_text);
	}
}

static int
sched_host_cmp(const void *a, const void *b)
{
	const struct dns_mx_host *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static void
sched_mx_cb(const struct dns_mx_reply *reply, void *arg)
{
	struct sched_dest *d = arg;
	struct dns_mx_host *sorted;
	char key[2048];
	size_t i, off = 0;
	int64_t now = sched_now_ms();
	uint32_t ttl;

	d->q = NULL;
	switch (reply->result) {
	case DNS_OK:
		/* The site key is the set of hosts (order-free) and port. */
		if ((sorted = malloc(reply->nhosts * sizeof(*sorted))) == NULL)
			goto tempfail;
		memcpy(sorted, reply->hosts, reply->nhosts * sizeof(*sorted));
		qsort(sorted, reply->nhosts, sizeof(*sorted), sched_host_cmp);
		for (i = 0; i < reply->nhosts && off < sizeof(key); i++)
			off += (size_t)snprintf(key + off, sizeof(key) - off,
						"%s%s", i ? "," : "",
						sorted[i].name);
		free(sorted);
		if (off < sizeof(key))
			snprintf(key + off, sizeof(key) - off, ":%u",
				 S.conf->delivery.port);
		d->site =
		    sched_site_get(key, reply->hosts, reply->nhosts,
				   S.conf->delivery.port, reply->implicit);
		if (d->site == NULL)
			goto tempfail;
		d->state = DEST_READY;
		ttl = reply->ttl < SCHED_DEST_MIN_TTL ? SCHED_DEST_MIN_TTL
						      : reply->ttl;
		d->expires_ms = now + (int64_t)ttl * 1000;
		break;
	case DNS_NULLMX:
		d->state = DEST_FAILED;
		d->fail_code = 550;
		snprintf(
		    d->fail_text, sizeof(d->fail_text),
		    "5.1.10 the recipient domain accepts no mail (null MX, "
		    "RFC 7505)");
		d->expires_ms =
		    now + (int64_t)(reply->ttl ? reply->ttl : 300) * 1000;
		break;
	case DNS_NXDOMAIN:
	case DNS_BADNAME:
		d->state = DEST_FAILED;
		d->fail_code = 550;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "5.1.2 the recipient domain does not exist (%s)",
			 dns_result_str(reply->result));
		d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
		break;
	case DNS_NODATA:
		d->state = DEST_FAILED;
		d->fail_code = 550;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "5.4.4 no usable mail exchanger: %s",
			 reply->err[0] ? reply->err : "no MX");
		d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
		break;
	default:
	tempfail:
		d->state = DEST_FAILED;
		d->fail_code = 451;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "4.4.3 DNS lookup of the mail exchanger failed: %s",
			 reply->err[0] ? reply->err
				       : dns_result_str(reply->result));
		d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
		break;
	}
	if (d->state == DEST_FAILED) {
		char esc[300];

		log_info("destination %s: %s", d->domain,
			 log_escape(esc, sizeof(esc), d->fail_text,
				    strlen(d->fail_text)));
	}
	sched_dest_flush(d);
}

static struct sched_dest *
sched_dest_get(const char *domain)
{
	struct sched_dest *d = htab_get(&S.dests, domain);
	const struct conf_route *route;
	struct dns_mx_host h;
	char key[600], *ace = NULL;
	size_t k;

	if (d != NULL)
		return d;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	if ((d->domain = strdup(domain)) == NULL ||
	    htab_put(&S.dests, domain, d) != 0) {
		free(d->domain);
		free(d);
		return NULL;
	}
	d->cfg = conf_destination_find(S.conf, domain);
	/* An internationalized domain (SMTPUTF8) is looked up by its
	 * A-labels (IDNA2008, RFC 5891). */
	for (k = 0; domain[k] != '\0'; k++) {
		if ((unsigned char)domain[k] < 0x80)
			continue;
		if (idn2_to_ascii_8z(domain, &ace,
				     IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) ==
		    IDN2_OK)
			d->ace = ace;
		break;
	}
	/* A route, or the relay host: a fixed site, no MX lookup. */
	route = conf_route_find(S.conf, domain);
	if (route != NULL || S.conf->delivery.relay_host != NULL) {
		h.name = route ? route->host : S.conf->delivery.relay_host;
		snprintf(key, sizeof(key), "route:%s:%u", h.name,
			 route ? route->port : S.conf->delivery.relay_port);
		d->site = sched_site_get(
		    key, &h, 1,
		    route ? route->port : S.conf->delivery.relay_port, false);
		if (d->site != NULL) {
			d->state = DEST_READY;
			d->expires_ms = INT64_MAX;
		}
	}
	return d;
}

static void
sched_dest_submit(struct sched_dest *d, struct sched_job *job)
{
	int64_t now = sched_now_ms();

	if (d->suspended_until_ms > now) {
		sched_job_fail(job, OS_LOCAL, 0,
			       "4.4.2 destination suspended by an operator");
		return;
	}
	if ((d->state == DEST_READY || d->state == DEST_FAILED) &&
	    d->expires_ms <= now)
		d->state = DEST_NEW; /* the answer expired: ask again */
	switch (d->state) {
	case DEST_READY:
		sched_dest_route_job(d, job);
		return;
	case DEST_FAILED:
		sched_job_fail(job, OS_LOCAL, d->fail_code, d->fail_text);
		return;
	case DEST_NEW:
		if (S.dns == NULL) {
			sched_job_fail(
			    job, OS_LOCAL, 451,
			    "4.4.3 no DNS resolver (loopback_only without dns "
			    "servers)");
			return;
		}
		d->state = DEST_RESOLVING;
		job->next = d->waiting;
		d->waiting = job;
		d->q = dns_mx_lookup(S.dns, d->ace ? d->ace : d->domain,
				     sched_mx_cb, d);
		return;
	case DEST_RESOLVING:
		job->next = d->waiting;
		d->waiting = job;
		return;
	}
}

/* Rounds ---------------------------------------------------------------- */

struct sched_load {
	struct sched_msg *msg;
	int status; /* as queue_body_read() */
	char err[200];
	struct queue_envelope env;
	uint8_t *buf;
	size_t len, cap;
	bool oom; /* the body did not fit in memory */
};

static int
sched_load_chunk(const uint8_t *data, size_t len, void *arg)
{
	struct sched_load *l = arg;
	uint8_t *nb;

	if (l->len + len > l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;

		while (cap < l->len + len)
			cap *= 2;
		if ((nb = realloc(l->buf, cap)) == NULL) {
			l->oom = true;
			return -1;
		}
		l->buf = nb;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, data, len);
	l->len += len;
	return 0;
}

/* Worker thread: read and decrypt the envelope and body from the queue. */
static void
sched_load_run(void *arg)
{
	struct sched_load *l = arg;

	l->status = queue_envelope_get(S.queue, l->msg->id, &l->env, l->err,
				       sizeof(l->err));
	if (l->status == 0)
		l->status =
		    queue_body_read(S.queue, l->msg->id, sched_load_chunk, l,
				    l->err, sizeof(l->err));
	if (l->status == 0 && l->oom) {
		l->status = -1;
		snprintf(l->err, sizeof(l->err), "out of memory for the body");
	}
}

/*
 * M could not be read for a round (STATUS, ERR: from sched_load_run).  A
 * damaged record is held and said once (its id and what is wrong: nothing
 * of the envelope); anything else is tried again in a minute.  An operator's
 * delete or hold asked for meanwhile is applied now (neither needs the
 * record); a bounce cannot be.
 */
static void
sched_load_failed(struct sched_msg *m, int status, const char *err)
{
	char qid[QUEUE_ID_HEX_BYTES];
	bool hold = (m->flags & SM_HOLD_REQ) != 0;

	m->flags &= ~(SM_HOLD_REQ | SM_BOUNCE_REQ);
	queue_id_format(m->id, qid);
	if (m->flags & SM_DELETE_REQ) {
		m->flags &= ~SM_DELETE_REQ;
		sched_unhold(m);
		sched_delete_stub(m);
		return;
	}
	if (status == QUEUE_CORRUPT) {
		log_warnx("%s queue record corrupt: %s; held (not attempted "
			  "again; `outpost queue delete %s` removes it)",
			  qid, err, qid);
		sched_hold(m);
		m->flags |= SM_CORRUPT;
		S.ncorrupt++;
		S.corrupt_total++;
		return;
	}
	log_warnx("%s could not be read from the queue: %s", qid,
		  err[0] ? err : "error");
	if (hold) {
		sched_write_resched(m, m->due_ms, true);
		sched_hold(m);
		return;
	}
	sched_retry_later(m, 60000);
}

static void
sched_load_done(void *arg)
{
	struct sched_load *l = arg;
	struct sched_msg *m = l->msg;
	int status = l->status;
	char err[sizeof(l->err)];

	m->flags &= ~SM_LOADING;
	S.nloading--;
	snprintf(err, sizeof(err), "%s", l->err);
	if (status == 0 && !(m->flags & SM_DELETED) &&
	    sched_round_new(m, &l->env, l->buf, l->len) == 0)
		l->buf = NULL;
	else if (status == 0) {
		status = -1;
		snprintf(err, sizeof(err), "out of memory");
	}
	queue_envelope_clear(&l->env);
	free(l->buf);
	free(l);
	if (m->flags & SM_DELETED) {
		if (m->writes == 0 && m->r == NULL)
			sched_msg_free(m);
		sched_round_done();
		return;
	}
	if (status == 1) {
		/* Gone from the queue (deleted behind our back): forget it. */
		sched_msg_free(m);
		sched_round_done();
		return;
	}
	if (status != 0) {
		sched_load_failed(m, status, err);
		sched_round_done();
		return;
	}
	sched_round_start(m);
}

/* Recipients whose time in the queue is over. */
static bool
sched_expire(struct sched_msg *m, int64_t now)
{
	uint32_t i;
	bool any = false;

	if (now < m->r->env.created_ms + (int64_t)S.conf->delivery.max_age_ms)
		return false;
	for (i = 0; i < m->r->env.nrcpts; i++) {
		struct queue_rcpt *r = &m->r->env.rcpts[i];
		char text[400];

		if (r->state != QR_PENDING)
			continue;
		any = true; /* the round settles, no attempt */
		if (sched_rcpt_fail(m, i, QR_EXPIRED) != 0)
			continue; /* kept pending: expired next round */
		snprintf(text, sizeof(text),
			 "4.4.7 delivery time expired; "
			 "last attempt: %d %s",
			 r->last_code,
			 r->last_reply ? r->last_reply : "no answer");
		free(r->last_reply);
		r->last_reply = strdup(text);
		STATS_INC(expired);
		{
			struct evlog_event ev;

			memset(&ev, 0, sizeof(ev));
			ev.type = EV_EXPIRATION;
			ev.id = m->id;
			ev.user = m->r->env.user;
			ev.rcpt = r->addr;
			ev.sender = m->r->env.sender;
			ev.size = m->r->env.size;
			ev.nrcpts = -1;
			ev.attempt = r->attempts;
			ev.queue_time_ms = now - m->r->env.created_ms;
			ev.enhanced = "4.4.7";
			ev.reply = r->last_reply;
			ev.tls_verified = -1;
			ev.count = -1;
			evlog_write(&ev);
		}
	}
	if (any) {
		char qid[QUEUE_ID_HEX_BYTES];

		queue_id_format(m->id, qid);
		log_info("%s expired after %" PRIu64 " s in the queue", qid,
			 (uint64_t)(now - m->r->env.created_ms) / 1000);
	}
	return any;
}

struct sched_pending {
	char domain[256];
	uint32_t idx;
};

static int
sched_pending_cmp(const void *a, const void *b)
{
	const struct sched_pending *x = a, *y = b;
	int c = strcmp(x->domain, y->domain);

	if (c != 0)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Start a round of attempts: one job per destination (and per
 * max_recipients_per_transaction recipients). */
static void
sched_round_start(struct sched_msg *m)
{
	int64_t now = sched_now_ms();
	struct sched_pending *pend;
	struct sched_dest *d;
	struct sched_job *job;
	uint32_t i, j, n;
	unsigned per, k;

	if (S.stopping) {
		if (m->r != NULL)
			sched_round_free(m);
		sched_due_push(m);
		return;
	}
	if (m->flags & SM_HELD) {
		if (m->r != NULL)
			sched_round_free(m);
		return;
	}
	if (m->r == NULL) {
		struct sched_load *l = calloc(1, sizeof(*l));

		if (l == NULL)
			goto later;
		l->msg = m;
		m->flags |= SM_LOADING;
		S.nloading++;
		worker_submit(S.loop, sched_load_run, sched_load_done, l);
		return;
	}
	/* A round only starts for a message that is not held (a hold set
	 * by the DMARC action is lifted by `queue release`). */
	m->r->env.flags &= ~QUEUE_F_HELD;
	if ((m->flags & (SM_BOUNCE_REQ | SM_DELETE_REQ)) ||
	    sched_expire(m, now)) {
		sched_settle(m);
		return;
	}
	/* Pending recipients, grouped by domain. */
	if ((pend = malloc((m->r->env.nrcpts + 1) * sizeof(*pend))) == NULL)
		goto later;
	for (i = n = 0; i < m->r->env.nrcpts; i++) {
		if (m->r->env.rcpts[i].state != QR_PENDING)
			continue;
		sched_rcpt_domain(m->r->env.rcpts[i].addr, pend[n].domain,
				  sizeof(pend[n].domain));
		pend[n++].idx = i;
	}
	qsort(pend, n, sizeof(*pend), sched_pending_cmp);
	m->r->inflight++; /* hold the round open while jobs are made */
	for (i = 0; i < n; i = j) {
		for (j = i;
		     j < n && strcmp(pend[j].domain, pend[i].domain) == 0; j++)
			;
		d = sched_dest_get(pend[i].domain);
		per = d != NULL ? d->cfg->max_recipients_per_transaction : 0;
		if (per == 0)
			per = 1;
		for (k = i; k < j;) {
			job = d != NULL ? sched_job_new(m, d, per) : NULL;
			if (job == NULL) {
				/* What is left of the round is retried. */
				log_warnx("out of memory making delivery jobs");
				j = n;
				break;
			}
			while (k < j && job->cj.nrcpt < per)
				sched_job_add(job, pend[k++].idx);
			m->r->inflight++;
			sched_dest_submit(d, job);
		}
	}
	free(pend);
	if (--m->r->inflight == 0)
		sched_settle(m);
	return;
later:
	log_warnx("out of memory starting a delivery round; retrying later");
	if (m->r != NULL)
		sched_round_free(m);
	sched_retry_later(m, 60000);
}

/* Entry points ---------------------------------------------------------- */

static void
sched_on_new(void *arg)
{
	struct queue_op *op = arg;
	struct sched_msg *m;

	/* Committed just before the start-up scan read the queue, announced
	 * after it: the scan has it already (ids are never reused), and a
	 * second copy would be delivered twice. */
	if (idmap_get(&S.ids, op->env.id) != NULL) {
		queue_op_free(op);
		return;
	}
	m = sched_msg_new(op->env.id, op->env.next_attempt_ms);
	if (m == NULL ||
	    sched_round_new(m, &op->env, op->body, op->body_len) != 0) {
		/* It is safe on disk: the next start picks it up. */
		log_warnx("out of memory scheduling a new message");
		if (m != NULL)
			sched_msg_free(m);
		queue_op_free(op);
		return;
	}
	op->body = NULL;
	queue_op_free(op);
	if (m->r->env.flags & QUEUE_F_HELD) {
		/* Held (by policy or an operator): known, not scheduled. */
		sched_round_free(m);
		sched_hold(m);
		return;
	}
	if (S.stopping || S.nactive + S.nloading > SCHED_MAX_ACTIVE) {
		/* Over the limit: wait in the heap, due now, without the
		 * round (it is read back from the queue when its turn
		 * comes). */
		sched_round_free(m);
		sched_due_push(m);
		return;
	}
	sched_round_start(m);
}

void
sched_message_add(struct queue_op *op)
{
	loop_post(S.loop, sched_on_new, op);
}

/*
 * A second schedule entry for a message already known (left by a version
 * that moved a due time in memory only): fold it into the first, the
 * earlier due time, held if either is, and remove it from disk.
 */
static void
sched_walk_dup(struct sched_msg *m, int64_t due_ms, unsigned flags)
{
	char qid[QUEUE_ID_HEX_BYTES];

	queue_id_format(m->id, qid);
	log_warnx("%s has a second schedule entry; merged", qid);
	if ((flags & QUEUE_F_HELD) && !(m->flags & SM_HELD)) {
		sched_heap_remove(&S.heap, m);
		sched_hold(m);
	}
	/* Moves the entry at DUE_MS onto M's own (rewritten, same key). */
	sched_write_resched(m, due_ms, (m->flags & SM_HELD) != 0);
}

static int
sched_walk_cb(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct sched_msg *m = idmap_get(&S.ids, id);
	uint64_t *n = arg;

	if (m != NULL) {
		sched_walk_dup(m, due_ms, flags);
		return 0;
	}
	if ((m = sched_msg_new(id, due_ms)) == NULL)
		return -1;
	if (flags & QUEUE_F_HELD)
		sched_hold(m); /* known, not scheduled */
	else
		sched_due_push(m);
	(*n)++;
	return 0;
}

/* Start-up: the schedule index only (due time and id: no decryption, no
 * envelope), so a large queue is ready in moments. */
static void
sched_load_queue(void *arg)
{
	char err[256];
	uint64_t n = 0;
	int rc;

	(void)arg;
	rc = queue_sched_walk(S.queue, sched_walk_cb, &n, err, sizeof(err));
	if (rc != 0)
		log_warnx("queue scan stopped after %" PRIu64 " messages: %s",
			  n, rc == -1 ? err : "out of memory");
	log_info("scheduler: %" PRIu64 " queued message(s) loaded", n);
	sched_retry_arm();
}

void
sched_start(void)
{
	loop_post(S.loop, sched_load_queue, NULL);
}

bool
sched_dns_config(const struct conf *c, struct dns_config *dc)
{
	const char *lo = getenv("OUTPOST_LOOPBACK_ONLY");

	memset(dc, 0, sizeof(*dc));
	dc->servers = c->dns.servers;
	dc->timeout_ms = c->dns.timeout_ms;
	dc->tries = c->dns.tries;
	dc->cache_max = c->dns.cache_size;
	dc->min_ttl = c->dns.min_ttl_s;
	dc->max_ttl = c->dns.max_ttl_s;
	dc->negative_ttl_max = c->dns.negative_ttl_max_s;
	/* Tests export OUTPOST_LOOPBACK_ONLY=1: no byte may leave loopback,
	 * and without servers of their own there is no DNS at all. */
	dc->loopback_only = lo != NULL && strcmp(lo, "1") == 0;
	return !(dc->loopback_only && dc->servers == NULL);
}

int
sched_init(struct loop *l, const struct conf *c, struct queue *q, char *err,
	   size_t errlen)
{
	struct dns_config dc;
	struct timeval gauge_now;
	char e[256];

	memset(&S, 0, sizeof(S));
	S.loop = l;
	S.conf = c;
	S.queue = q;
	if (htab_init(&S.dests) != 0 || htab_init(&S.sites) != 0 ||
	    idmap_init(&S.ids) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!sched_dns_config(c, &dc)) {
		/* Test mode without a DNS server of its own: never fall back
		 * to the system resolver; every lookup fails (deferred). */
		log_info("delivery: loopback_only and no dns servers: DNS "
			 "lookups disabled");
	} else if ((S.dns = dns_resolver_new(l->base, &dc, err, errlen)) ==
		   NULL) {
		return -1;
	}
	if ((S.ssl = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new failed");
		return -1;
	}
	SSL_CTX_set_min_proto_version(S.ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(S.ssl,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* Verification is recorded, and required only under tls=verify. */
	SSL_CTX_set_verify(S.ssl, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(S.ssl, SSL_SESS_CACHE_CLIENT);
	smtp_client_tls_init(S.ssl);
	if ((c->delivery.tls_ca_file != NULL || c->delivery.tls_ca_path != NULL)
		? SSL_CTX_load_verify_locations(S.ssl, c->delivery.tls_ca_file,
						c->delivery.tls_ca_path) != 1
		: SSL_CTX_set_default_verify_paths(S.ssl) != 1) {
		ERR_error_string_n(ERR_get_error(), e, sizeof(e));
		snprintf(err, errlen, "TLS trust store: %s", e);
		return -1;
	}
	S.cenv.base = l->base;
	S.cenv.dns = S.dns;
	S.cenv.ssl_ctx = S.ssl;
	S.cenv.loopback_only = dc.loopback_only;
	S.cenv.connect_timeout_ms = c->delivery.connect_timeout_ms;
	S.cenv.greeting_timeout_ms = c->delivery.greeting_timeout_ms;
	S.cenv.command_timeout_ms = c->delivery.command_timeout_ms;
	S.cenv.data_timeout_ms = c->delivery.data_timeout_ms;
	S.cenv.idle_timeout_ms = c->delivery.idle_timeout_ms;
	S.retry_timer = evtimer_new(l->base, sched_retry_cb, NULL);
	gauge_now.tv_sec = gauge_now.tv_usec = 0;
	S.gauge_timer = evtimer_new(l->base, sched_gauge_cb, NULL);
	pthread_mutex_init(&S.gauge_mu, NULL);
	if (S.gauge_timer != NULL)
		evtimer_add(S.gauge_timer, &gauge_now);
	S.stop_timer = NULL;
	if (S.retry_timer == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Shutdown -------------------------------------------------------------- */

static void
sched_maybe_stop(void)
{
	if (S.stopping && S.nconn == 0 && S.writes == 0)
		loop_stop(S.loop);
}

static void
sched_stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Cut what is still running; its recipients are deferred. */
	smtp_client_abort_all();
	sched_maybe_stop();
}

void
sched_shutdown(unsigned deadline_ms)
{
	struct htab_entry *e;
	struct timeval tv;
	size_t it;
	unsigned i;

	S.stopping = true;
	evtimer_del(S.retry_timer);
	evtimer_del(S.gauge_timer);
	for (e = htab_first(&S.sites, &it); e != NULL;
	     e = htab_next(&S.sites, e, &it)) {
		struct sched_site *s = e->value;

		for (i = 0; i < s->npaths; i++) {
			struct sched_path *p = s->paths[i];

			evtimer_del(p->timer);
			while (p->nidle > 0)
				smtp_client_quit(p->idle[--p->nidle]);
		}
	}
	tv.tv_sec = deadline_ms / 1000;
	tv.tv_usec = (deadline_ms % 1000) * 1000;
	event_base_once(S.loop->base, -1, EV_TIMEOUT, sched_stop_deadline_cb,
			NULL, &tv);
	sched_maybe_stop();
}

/* Operators' changes ---------------------------------------------------- */

/* Move M's schedule entry only (due time, held bit): no envelope rewrite. */
static void
sched_write_resched(struct sched_msg *m, int64_t old_due, bool held)
{
	struct sched_write *w = calloc(1, sizeof(*w));
	struct queue_op *op = queue_op_new(QOP_RESCHED);

	if (w == NULL || op == NULL) {
		log_warnx("out of memory writing a queue change");
		free(w);
		if (op != NULL)
			queue_op_free(op);
		return;
	}
	op->env.id = m->id;
	op->env.next_attempt_ms = m->due_ms;
	op->env.flags = held ? QUEUE_F_HELD : 0;
	op->old_due_ms = old_due;
	w->op = op;
	w->msg = m;
	m->writes++;
	S.writes++;
	queue_submit(S.queue, op, sched_write_done_cb, w);
}

/* Remove a waiting (or held) M from the queue: no round, no DSN. */
static void
sched_delete_stub(struct sched_msg *m)
{
	struct sched_write *w = calloc(1, sizeof(*w));
	struct queue_op *op = queue_op_new(QOP_DELETE);

	if (w == NULL || op == NULL) {
		log_warnx("out of memory writing a queue change");
		free(w);
		if (op != NULL)
			queue_op_free(op);
		return;
	}
	op->env.id = m->id;
	op->env.next_attempt_ms = m->due_ms;
	w->op = op;
	w->msg = m;
	m->writes++;
	S.writes++;
	m->flags |= SM_DELETED;
	queue_submit(S.queue, op, sched_write_done_cb, w);
}

/* In a round (or being read for one): changes wait for the settle. */
static bool
sched_msg_busy(const struct sched_msg *m)
{
	return m->r != NULL || (m->flags & SM_LOADING);
}

/* Apply OP to M; true when M changed. */
static bool
sched_admin_apply(enum sched_admin_op op, struct sched_msg *m)
{
	int64_t old = m->due_ms, now = sched_now_ms();
	bool held = (m->flags & SM_HELD) != 0;

	if (m->flags & SM_DELETED)
		return false;
	switch (op) {
	case SA_HOLD:
		if (held || (m->flags & SM_HOLD_REQ))
			return false;
		if (sched_msg_busy(m)) {
			m->flags |= SM_HOLD_REQ;
			return true;
		}
		sched_heap_remove(&S.heap, m);
		sched_write_resched(m, old, true);
		sched_hold(m);
		return true;
	case SA_RELEASE:
		if (m->flags & SM_HOLD_REQ) {
			m->flags &= ~SM_HOLD_REQ;
			return true;
		}
		if (!held)
			return false;
		sched_unhold(m);
		m->due_ms = now;
		sched_write_resched(m, old, false);
		sched_due_push(m);
		sched_retry_arm();
		return true;
	case SA_RETRY:
		if (held)
			return false;
		if (sched_msg_busy(m))
			return true; /* being attempted right now */
		sched_heap_remove(&S.heap, m);
		m->due_ms = now;
		sched_write_resched(m, old, false);
		sched_due_push(m);
		sched_retry_arm();
		return true;
	case SA_DELETE:
		if (sched_msg_busy(m)) {
			m->flags |= SM_DELETE_REQ;
			return true;
		}
		sched_heap_remove(&S.heap, m);
		sched_unhold(m);
		sched_delete_stub(m);
		return true;
	case SA_BOUNCE:
		if (m->flags & SM_CORRUPT)
			return false; /* no envelope: nobody to tell */
		m->flags |= SM_BOUNCE_REQ;
		if (sched_msg_busy(m))
			return true;
		/* Read it back and settle it at once: a DSN, then gone. */
		sched_heap_remove(&S.heap, m);
		sched_unhold(m);
		sched_round_start(m);
		return true;
	}
	return false;
}

struct sched_admin_job {
	enum sched_admin_op op;
	enum sched_admin_sel sel;
	char arg[256];
	sched_admin_fn *cb;
	void *cbarg;
	uint64_t *ids;
	size_t nids, capids;
	int status;
	char err[200];
};

static bool
sched_admin_match(const struct sched_admin_job *j,
		  const struct queue_envelope *env)
{
	char dom[256];
	uint32_t i;

	switch (j->sel) {
	case SAS_ALL:
		return true;
	case SAS_USER:
		return env->user != NULL && strcmp(env->user, j->arg) == 0;
	case SAS_DOMAIN:
		for (i = 0; i < env->nrcpts; i++) {
			if (env->rcpts[i].state != QR_PENDING)
				continue;
			sched_rcpt_domain(env->rcpts[i].addr, dom, sizeof(dom));
			if (strcmp(dom, j->arg) == 0)
				return true;
		}
		return false;
	case SAS_ID:
		break;
	}
	return false;
}

static int
sched_admin_walk_cb(const struct queue_envelope *env, void *arg)
{
	struct sched_admin_job *j = arg;
	uint64_t *n;

	if (!sched_admin_match(j, env))
		return 0;
	if (j->nids == j->capids) {
		size_t cap = j->capids ? j->capids * 2 : 256;

		if ((n = realloc(j->ids, cap * sizeof(*n))) == NULL)
			return -2;
		j->ids = n;
		j->capids = cap;
	}
	j->ids[j->nids++] = env->id;
	return 0;
}

/* Worker thread: which messages does the selector pick? */
static void
sched_admin_walk_run(void *arg)
{
	struct sched_admin_job *j = arg;
	uint64_t skipped;

	/* A damaged record matches no selector: skipped, not an error. */
	j->status = queue_walk_skip(S.queue, sched_admin_walk_cb, j, &skipped,
				    j->err, sizeof(j->err));
	if (j->status == -2)
		snprintf(j->err, sizeof(j->err), "out of memory");
}

static void
sched_admin_walk_done(void *arg)
{
	struct sched_admin_job *j = arg;
	struct sched_msg *m;
	unsigned count = 0;
	size_t i;

	if (j->status != 0) {
		j->cb(0, j->err[0] ? j->err : "queue walk failed", j->cbarg);
	} else {
		for (i = 0; i < j->nids; i++)
			if ((m = idmap_get(&S.ids, j->ids[i])) != NULL &&
			    sched_admin_apply(j->op, m))
				count++;
		j->cb(count, NULL, j->cbarg);
	}
	free(j->ids);
	free(j);
}

/* SAS_ALL: every message the scheduler knows is every message queued; no
 * envelope needs reading (nor decrypting: a damaged one is selected too). */
static void
sched_admin_all(void *arg)
{
	struct sched_admin_job *j = arg;
	size_t k;

	if ((j->ids = calloc(S.nmsgs ? S.nmsgs : 1, sizeof(*j->ids))) == NULL) {
		j->status = -1;
		snprintf(j->err, sizeof(j->err), "out of memory");
	}
	for (k = 0; j->ids != NULL && k < S.ids.cap && j->nids < S.nmsgs; k++)
		if (S.ids.vals[k] != NULL)
			j->ids[j->nids++] = S.ids.keys[k];
	sched_admin_walk_done(j);
}

static void
sched_admin_id_done(void *arg)
{
	struct sched_admin_job *j = arg;
	struct sched_msg *m;
	uint64_t id;

	if (queue_id_parse(j->arg, &id) != 0)
		j->cb(0, "malformed queue id", j->cbarg);
	else if ((m = idmap_get(&S.ids, id)) == NULL || (m->flags & SM_DELETED))
		j->cb(0, "no such message", j->cbarg);
	else
		j->cb(sched_admin_apply(j->op, m) ? 1 : 0, NULL, j->cbarg);
	free(j);
}

void
sched_admin(enum sched_admin_op op, enum sched_admin_sel sel, const char *arg,
	    sched_admin_fn *cb, void *cbarg)
{
	struct sched_admin_job *j = calloc(1, sizeof(*j));
	size_t i;

	if (j == NULL) {
		cb(0, "out of memory", cbarg);
		return;
	}
	j->op = op;
	j->sel = sel;
	j->cb = cb;
	j->cbarg = cbarg;
	/* Domains are compared lower-case. */
	for (i = 0; arg != NULL && arg[i] != '\0' && i + 1 < sizeof(j->arg);
	     i++)
		j->arg[i] = sel == SAS_DOMAIN && arg[i] >= 'A' && arg[i] <= 'Z'
				? (char)(arg[i] + 32)
				: arg[i];
	j->arg[i] = '\0';
	if (sel == SAS_ID)
		loop_post(S.loop, sched_admin_id_done, j);
	else if (sel == SAS_ALL)
		loop_post(S.loop, sched_admin_all, j);
	else
		worker_submit(S.loop, sched_admin_walk_run,
			      sched_admin_walk_done, j);
}

int
sched_suspend(const char *domain, uint64_t ms, const char *reason, char *err,
	      size_t errlen)
{
	struct sched_dest *d;
	struct sched_job *job, **pp;
	char dom[256];
	unsigned i;
	size_t k;

	for (k = 0; domain[k] != '\0' && k + 1 < sizeof(dom); k++)
		dom[k] = domain[k] >= 'A' && domain[k] <= 'Z'
			     ? (char)(domain[k] + 32)
			     : domain[k];
	dom[k] = '\0';
	if (k == 0 || domain[k] != '\0') {
		snprintf(err, errlen, "bad domain");
		return -1;
	}
	if ((d = sched_dest_get(dom)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(d->suspend_reason);
	d->suspend_reason = NULL;
	if (ms == 0) {
		/* Resume: the operator's suspension, and a reply-pattern
		 * suspension or back-off of its site as well. */
		d->suspended_until_ms = 0;
		for (i = 0; d->site != NULL && i < d->site->npaths; i++) {
			struct sched_path *p = d->site->paths[i];

			p->paused_until_ms = 0;
			p->suspended = false;
			p->backoff_level = 0;
			sched_path_kick(p);
		}
		log_info("destination %s resumed by an operator", dom);
		return 0;
	}
	d->suspended_until_ms = sched_now_ms() + (int64_t)ms;
	d->suspend_reason = strdup(reason != NULL ? reason : "");
	log_info("destination %s suspended by an operator for %" PRIu64 " s",
		 dom, ms / 1000);
	/* What waits on its site for this domain goes back now. */
	for (i = 0; d->site != NULL && i < d->site->npaths; i++) {
		struct sched_path *p = d->site->paths[i];
		struct sched_job *defer = NULL;

		for (pp = &p->head; (job = *pp) != NULL;) {
			if (job->dest != d) {
				pp = &job->next;
				continue;
			}
			*pp = job->next;
			p->njobs--;
			job->next = defer;
			defer = job;
		}
		p->tail = NULL;
		for (job = p->head; job != NULL; job = job->next)
			p->tail = job;
		while ((job = defer) != NULL) {
			defer = job->next;
			job->next = NULL;
			sched_job_fail(job, OS_LOCAL, 0,
				       "4.4.2 destination suspended by an "
				       "operator");
		}
	}
	return 0;
}

size_t
sched_suspensions(char *buf, size_t len)
{
	struct htab_entry *e;
	int64_t now = sched_now_ms();
	size_t it, off = 0;
	unsigned i;
	int n;

	if (len > 0)
		buf[0] = '\0';
	for (e = htab_first(&S.dests, &it); e != NULL;
	     e = htab_next(&S.dests, e, &it)) {
		struct sched_dest *d = e->value;

		if (d->suspended_until_ms <= now)
			continue;
		n = snprintf(buf + (off < len ? off : len),
			     off < len ? len - off : 0, "%s %" PRId64 " %s\n",
			     d->domain, d->suspended_until_ms,
			     d->suspend_reason && d->suspend_reason[0]
				 ? d->suspend_reason
				 : "suspended by an operator");
		off += n > 0 ? (size_t)n : 0;
	}
	for (e = htab_first(&S.sites, &it); e != NULL;
	     e = htab_next(&S.sites, e, &it)) {
		struct sched_site *st = e->value;

		for (i = 0; i < st->npaths; i++) {
			struct sched_path *p = st->paths[i];

			if (p->paused_until_ms <= now)
				continue;
			n = snprintf(buf + (off < len ? off : len),
				     off < len ? len - off : 0,
				     "%s %" PRId64 " %s\n", st->key,
				     p->paused_until_ms,
				     p->suspended ? "reply pattern"
						  : "back-off after failures");
			off += n > 0 ? (size_t)n : 0;
		}
	}
	return off;
}

/* Metrics -------------------------------------------------------------- */

struct sched_top {
	const char *name;
	unsigned conns;
};

/* Once a second on the loop: the gauges, as exposition text, for scrapes
 * on the main thread (sched_metrics_text). */
static void
sched_gauge_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_top top[10];
	struct htab_entry *e;
	struct timeval tv = { 1, 0 };
	char *buf;
	size_t it, len = 4096, off = 0, ntop = 0, j;
	unsigned i;
	int n;

	(void)fd;
	(void)what;
	(void)arg;
	memset(top, 0, sizeof(top));
	for (e = htab_first(&S.sites, &it); e != NULL;
	     e = htab_next(&S.sites, e, &it)) {
		struct sched_site *st = e->value;
		unsigned c = 0;

		for (i = 0; i < st->npaths; i++)
			c += st->paths[i]->nconn;
		if (c == 0 || st->nhosts == 0)
			continue;
		/* Keep the ten busiest, sorted, by insertion. */
		if (ntop == 10 && top[9].conns >= c)
			continue;
		j = ntop < 10 ? ntop++ : 9;
		while (j > 0 && top[j - 1].conns < c) {
			top[j] = top[j - 1];
			j--;
		}
		top[j].name = st->hosts[0].name;
		top[j].conns = c;
	}
	if ((buf = malloc(len)) == NULL)
		goto rearm;
#define GAUGE(...)                                                             \
	do {                                                                   \
		n = snprintf(buf + off, len - off, __VA_ARGS__);               \
		if (n > 0 && (size_t)n < len - off)                            \
			off += (size_t)n;                                      \
	} while (0)
	GAUGE("# HELP outpost_queue_messages Messages in the queue, by "
	      "state.\n# TYPE outpost_queue_messages gauge\n");
	GAUGE("outpost_queue_messages{state=\"waiting\"} %" PRIu64 "\n",
	      (uint64_t)S.heap.n);
	GAUGE("outpost_queue_messages{state=\"active\"} %u\n",
	      S.nactive + S.nloading);
	GAUGE("outpost_queue_messages{state=\"held\"} %" PRIu64 "\n",
	      S.nheld - S.ncorrupt);
	GAUGE("outpost_queue_messages{state=\"corrupt\"} %" PRIu64 "\n",
	      S.ncorrupt);
	GAUGE(
	    "# HELP outpost_queue_corrupt_total Damaged queue records found "
	    "(each is held until deleted).\n# TYPE outpost_queue_corrupt_total "
	    "counter\noutpost_queue_corrupt_total %" PRIu64 "\n",
	    S.corrupt_total);
	GAUGE("# HELP outpost_delivery_connections Outbound SMTP connections "
	      "open.\n# TYPE outpost_delivery_connections gauge\n"
	      "outpost_delivery_connections %u\n",
	      S.nconn);
	GAUGE("# HELP outpost_destination_connections Outbound connections "
	      "of the ten busiest destinations (first MX host).\n"
	      "# TYPE outpost_destination_connections gauge\n");
	for (j = 0; j < ntop; j++)
		GAUGE("outpost_destination_connections{destination=\"%s\"} "
		      "%u\n",
		      top[j].name, top[j].conns);
#undef GAUGE
	pthread_mutex_lock(&S.gauge_mu);
	free(S.gauges);
	S.gauges = buf;
	pthread_mutex_unlock(&S.gauge_mu);
rearm:
	if (!S.stopping)
		evtimer_add(S.gauge_timer, &tv);
}

size_t
sched_metrics_text(char *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&S.gauge_mu);
	if (S.gauges != NULL) {
		n = strlen(S.gauges);
		if (n < len)
			memcpy(buf, S.gauges, n + 1);
	}
	pthread_mutex_unlock(&S.gauge_mu);
	return n;
}

uint64_t
sched_queued(void)
{
	return S.nmsgs;
}

/* Main thread, after the delivery loop has ended: free everything. */
void
sched_free(void)
{
	struct htab_entry *e;
	struct sched_job *job, *next;
	size_t it;
	unsigned i, k;

	for (e = htab_first(&S.dests, &it); e != NULL;
	     e = htab_next(&S.dests, e, &it)) {
		struct sched_dest *d = e->value;

		for (job = d->waiting; job != NULL; job = next) {
			next = job->next;
			sched_job_free(job);
		}
		if (d->q != NULL)
			dns_cancel(d->q);
		free(d->suspend_reason);
		free(d->ace);
		free(d->domain);
		free(d);
	}
	for (e = htab_first(&S.sites, &it); e != NULL;
	     e = htab_next(&S.sites, e, &it)) {
		struct sched_site *s = e->value;

		for (i = 0; i < s->npaths; i++) {
			struct sched_path *p = s->paths[i];

			for (job = p->head; job != NULL; job = next) {
				next = job->next;
				sched_job_free(job);
			}
			event_free(p->timer);
			free(p->idle);
			free(p);
		}
		for (k = 0; k < s->nhosts; k++) {
			free(s->hosts[k].name);
			if (s->hosts[k].session != NULL)
				SSL_SESSION_free(s->hosts[k].session);
		}
		free(s->hosts);
		free(s->paths);
		free(s->key);
		free(s);
	}

	htab_free(&S.dests);
	htab_free(&S.sites);
	/* Every message is in the id map, whatever its state. */
	for (k = 0; k < S.ids.cap; k++) {
		struct sched_msg *m = S.ids.vals[k];

		if (m == NULL)
			continue;
		if (m->r != NULL)
			sched_round_free(m);
		free(m);
	}
	idmap_free(&S.ids);
	sched_heap_free(&S.heap);
	if (S.retry_timer != NULL)
		event_free(S.retry_timer);
	if (S.gauge_timer != NULL)
		event_free(S.gauge_timer);
	free(S.gauges);
	pthread_mutex_destroy(&S.gauge_mu);
	if (S.dns != NULL)
		dns_resolver_free(S.dns);
	SSL_CTX_free(S.ssl);
}
