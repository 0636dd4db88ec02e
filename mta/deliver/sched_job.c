/*
 * sched_job.c — jobs: one transaction's worth of a message's recipients,
 * made for the SMTP client (struct smtp_client_job) and, once back,
 * applied: outcome_classify() for each recipient, the delivery log, and
 * the path's back-off or suspension the results call for.
 *
 * Owns: struct sched_job (freed when its results are applied).  Must not:
 * decide what a reply means (outcome.c does).  Delivery loop thread.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/core/scrub.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"
#include "mta/observe/metrics.h"
#include "mta/observe/suppress.h"
#include "mta/observe/watchdog.h"

void
sched_job_free(struct sched_job *job)
{
	unsigned i;

	if (job->cj.res != NULL)
		for (i = 0; i < job->cj.nrcpt; i++)
			free(job->cj.res[i].text);
	free(job->cj.peer);
	queue_body_close(job->body);
	free(job); /* with its arrays (sched_job_new) */
}

/* The job's addresses for the scrubber (mta/core/scrub.h): its recipients,
 * then the sender.  Valid while the job and its round are. */
static const char *
sched_job_scrub_addr(const void *arg, size_t i)
{
	const struct smtp_client_job *cj = arg;

	return i < cj->nrcpt ? cj->rcpts[i] : cj->sender;
}

/* The client's pull of the body (smtp_client_body_fn): the next chunk
 * from the queue, read and decrypted here on the delivery loop (one short
 * read transaction and one chunk's AEAD; queue/queue.h).  A damaged chunk
 * says so in ERR, which the client hands back as the job's result. */
static int
sched_job_body_next(void *arg, const uint8_t **p, size_t *len, char *err,
		    size_t errlen)
{
	struct sched_job *job = arg;
	int rc = queue_body_next(job->body, p, len, err, errlen);

	if (rc == 0 || rc == 1)
		return rc;
	job->body_rc = rc;
	snprintf(job->body_err, sizeof(job->body_err), "%s", err);
	return -1;
}

/* The same from the round's kept body (sched_round.body): the whole of it
 * at once, then the end.  Runs on the connection's loop: it reads only
 * what the job copied, and the body is read-only while the round lives. */
static int
sched_job_body_kept(void *arg, const uint8_t **p, size_t *len, char *err,
		    size_t errlen)
{
	struct sched_job *job = arg;

	(void)err;
	(void)errlen;
	if (job->kept_sent || job->kept_len == 0) {
		job->kept_sent = true;
		return 1;
	}
	job->kept_sent = true;
	*p = job->kept;
	*len = job->kept_len;
	return 0;
}

struct sched_job *
sched_job_new(struct sched_msg *m, struct sched_dest *d, unsigned n)
{
	/* One allocation: the job, then its three arrays of N, widest
	 * alignment first (a job is started per message: three fewer). */
	size_t head = (sizeof(struct sched_job) + _Alignof(max_align_t) - 1) &
		      ~(_Alignof(max_align_t) - 1);
	struct sched_job *job =
	    calloc(1, head + n * (sizeof(struct smtp_client_result) +
				  sizeof(const char *) + sizeof(uint32_t)));

	if (job == NULL)
		return NULL;
	job->msg = m;
	job->dest = d;
	job->cj.res = (struct smtp_client_result *)((char *)job + head);
	job->addrs = (const char **)(job->cj.res + n);
	job->rcpt = (uint32_t *)(job->addrs + n);
	if (m->r->body == NULL &&
	    queue_body_open(sched->queue, &m->r->env, &job->body) != 0) {
		sched_job_free(job);
		return NULL;
	}
	job->cj.rcpts = job->addrs;
	job->cj.sender = m->r->env.sender;
	if (m->r->body != NULL) {
		job->kept = m->r->body;
		job->kept_len = m->r->body_len;
		job->cj.body_next = sched_job_body_kept;
		sched->bodies_kept++;
	} else {
		job->cj.body_next = sched_job_body_next;
		sched->bodies_read++;
	}
	job->cj.body_arg = job;
	job->cj.body_len = (size_t)m->r->env.size;
	job->cj.smtputf8 = (m->r->env.flags & QUEUE_F_SMTPUTF8) != 0;
	job->cj.eightbit = (m->r->env.flags & QUEUE_F_8BITMIME) != 0;
	job->cj.scrub.addr = sched_job_scrub_addr;
	job->cj.scrub.arg = &job->cj;
	job->cj.tls_verified = -1;
	return job;
}

/* Recipient RI of JOB's message goes in JOB (room made by sched_job_new). */
void
sched_job_add(struct sched_job *job, uint32_t ri)
{
	job->rcpt[job->cj.nrcpt] = ri;
	job->addrs[job->cj.nrcpt] = job->msg->r->env.rcpts[ri].addr;
	job->cj.nrcpt++;
	job->cj.scrub.n = (size_t)job->cj.nrcpt + 1;
}

/* Fail every recipient of JOB the same way (DNS failure, dead host). */
void
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

void
sched_job_park(struct sched_job *job, struct sched_park *pk)
{
	struct sched_msg *m = job->msg;

	if (m->r->park == NULL)
		m->r->park = pk;
	m->r->inflight--;
	sched_job_free(job);
	if (m->r->inflight == 0)
		sched_round_settle(m);
}

/* A failure without a reply (connect, TLS, a timeout) says where: its
 * text gets the stage's name in front ("connect: Connection refused"),
 * for the queue, the DSN and the summary, which keep no stage.  A text
 * that opens with an enhanced status keeps it first (DSNs read it). */
static void
sched_job_name_stage(struct smtp_client_result *r)
{
	const char *name = outcome_stage_name(r->stage);
	size_t n = strlen(name), len;
	char *t;

	if (r->code != 0 || r->stage == OS_LOCAL || r->text == NULL ||
	    (r->text[0] >= '0' && r->text[0] <= '9') ||
	    (strncmp(r->text, name, n) == 0 && r->text[n] == ':'))
		return;
	len = n + 2 + strlen(r->text) + 1;
	if ((t = malloc(len)) == NULL)
		return;
	snprintf(t, len, "%s: %s", name, r->text);
	free(r->text);
	r->text = t;
}

/*
 * The TLS policy JOB went under and what came of it (RFC 8460's terms):
 * "success" when the session's certificate verified for an MX host the
 * policy names; else the session's failure, or "validation-failure" for a
 * host outside the policy (testing mode lets it be used).  RESULT NULL:
 * no session was tried (a connection refused, say).
 */
static void
sched_job_tls_policy(const struct sched_job *job, const char **policy,
		     const char **mode, const char **result)
{
	const struct smtp_client_job *cj = &job->cj;
	const struct sched_dest *d = job->dest;

	*policy = "none";
	*mode = *result = NULL;
	if (cj->dane) {
		/* DANE took precedence (RFC 7672 over RFC 8461) */
		*policy = "dane";
		if (cj->tls_failure != NULL)
			*result = cj->tls_failure;
		else if (cj->tls_verified == 1)
			*result = "success";
		return;
	}
	if (d->sts.mode == MTASTS_NONE)
		return;
	*policy = "mta-sts";
	*mode = mtasts_mode_name(d->sts.mode);
	if (cj->tls_failure != NULL)
		*result = cj->tls_failure;
	else if (cj->peer != NULL && cj->peer->mx_host[0] != '\0' &&
		 !mtasts_mx_match(&d->sts, cj->peer->mx_host))
		*result = "validation-failure";
	else if (cj->tls_verified == 1)
		*result = "success";
}

/* The delivery-log event of one recipient's result. */
static void
sched_job_log(struct sched_msg *m, const struct sched_job *job, uint32_t ri,
	      const struct smtp_client_result *r, const struct outcome *o)
{
	const struct smtp_client_job *cj = &job->cj;
	const struct smtp_client_peer *pe = cj->peer;
	const struct queue_envelope *env = &m->r->env;
	struct evlog_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = o->action == OA_DELIVERED ? EV_DELIVERY
		  : o->action == OA_BOUNCE  ? EV_BOUNCE
					    : EV_TRANSIENT;
	ev.id = m->id;
	ev.user = env->user;
	ev.pool = m->r->pool != NULL ? m->r->pool->name : NULL;
	ev.source_addr = pe != NULL && pe->source[0] ? pe->source : NULL;
	ev.destination = job->dest->domain;
	ev.mx_host = pe != NULL && pe->mx_host[0] ? pe->mx_host : NULL;
	ev.mx_ip = pe != NULL && pe->mx_ip[0] ? pe->mx_ip : NULL;
	ev.rcpt = env->rcpts[ri].addr;
	ev.sender = env->sender;
	ev.size = env->size;
	ev.nrcpts = -1;
	ev.attempt = env->rcpts[ri].attempts;
	ev.queue_time_ms = util_wall_ms() - env->created_ms;
	ev.code = r->code;
	ev.enhanced = o->status;
	ev.reply = r->text;
	ev.stage = outcome_stage_name(r->stage);
	ev.tls_version =
	    pe != NULL && pe->tls_version[0] ? pe->tls_version : NULL;
	ev.tls_cipher = pe != NULL && pe->tls_cipher[0] ? pe->tls_cipher : NULL;
	ev.tls_verified = ev.tls_version != NULL ? cj->tls_verified : -1;
	sched_job_tls_policy(job, &ev.tls_policy, &ev.tls_policy_mode,
			     &ev.tls_result);
	if (ri == job->rcpt[0]) /* once per transaction */
		mtasts_note_result(ev.tls_policy, ev.tls_policy_mode,
				   ev.tls_result);
	ev.count = -1;
	ev.msgid = env->msgid;
	ev.msgid_clear = (env->flags & QUEUE_F_MSGID_CLEAR) != 0;
	ev.campaign = env->campaign;
	ev.category = conf_bounce_category_name(o->category);
	evlog_write(&ev);
	if (o->action == OA_DELIVERED && ev.queue_time_ms >= 0)
		metrics_observe(&metrics_delivery_latency,
				(double)ev.queue_time_ms / 1000.0);
}

/* "CODE TEXT" into WHY for a log line written after the job is gone:
 * scrubbed now, while the transaction's addresses are known. */
static void
sched_job_why(char *why, size_t len, int code, const char *text)
{
	char out[SCRUB_OUT_BYTES];
	const char *t;
	size_t n;

	t = scrub_text(text, strlen(text), NULL, 0, SCRUB_KNOWN, out,
		       sizeof(out), &n);
	if (code == 0)
		snprintf(why, len, "%.*s", (int)n, t);
	else
		snprintf(why, len, "%d %.*s", code, (int)n, t);
}

/* A job is back with results: apply them; settle the round when the
 * message has no job left.  Its diagnostics and delivery-log lines are
 * scrubbed of every address of the transaction (scrub_ctx). */
void
sched_job_results(struct sched_job *job)
{
	struct sched_msg *m = job->msg;
	struct sched_path *p = job->path;
	const struct conf_destination *cfg = p ? p->cfg : job->dest->cfg;
	struct outcome_pattern pats[CONF_SUSPEND_ON_MAX];
	struct sched_job *again = NULL;
	struct outcome o;
	char qid[QUEUE_ID_HEX_BYTES], esc[300], why[300] = "";
	bool delivered = false, backoff = false, suspend = false,
	     throttle = false;
	uint64_t suspend_ms = 0;
	const char *remote = job->cj.peer != NULL ? job->cj.peer->remote : "";
	const char *tls = job->cj.peer != NULL ? job->cj.peer->tls : "";
	unsigned i, npats;
	const struct scrub_ctx *prev_ctx;

	queue_id_format(m->id, qid);
	if (job->body_rc == QUEUE_CORRUPT) {
		/* The record is damaged, not the receiver: no result counts;
		 * the round holds the message when it settles. */
		if (m->r->corrupt == NULL)
			m->r->corrupt = strdup(job->body_err);
		if (m->r->corrupt == NULL)
			m->r->kept = true; /* no memory: retried later */
		m->r->inflight--;
		sched_job_free(job);
		if (m->r->inflight == 0)
			sched_round_settle(m);
		return;
	}
	if (job->body_rc != 0)
		log_warnx("%s the body could not be read from the queue: %s",
			  qid, job->body_err);
	npats = sched_limit_patterns(cfg, pats);
	prev_ctx = scrub_ctx_enter(&job->cj.scrub);
	for (i = 0; i < job->cj.nrcpt; i++) {
		struct smtp_client_result *r = &job->cj.res[i];

		outcome_classify(r->stage, r->code, r->text, pats, npats, &o);
		outcome_categorize(sched->conf, r->code, r->text, &o);
		/* The daemon's own DSNs have no sender to keep a list for. */
		suppress_note_result(conf_identity(sched->conf, m->r->env.user),
				     job->addrs[i], m->id,
				     o.action == OA_BOUNCE &&
					 !(m->r->env.flags & QUEUE_F_DSN),
				     o.category);
		sched_job_name_stage(r);
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
		sched_round_rcpt_result(m, job->rcpt[i], r, &o, remote);
		sched_metrics_result(m, job->dest->domain, r, &o);
		sched_job_log(m, job, job->rcpt[i], r, &o);
		if (!(m->r->env.flags & QUEUE_F_DSN))
			watchdog_note_result(
			    conf_identity(sched->conf, m->r->env.user),
			    m->r->env.rcpts[job->rcpt[i]].addr, o.action,
			    o.category);
		if (o.action == OA_DELIVERED) {
			delivered = true;
			log_debug(
			    "%s rcpt %u to %s via %s: delivered%s%s: %d %s",
			    qid, job->rcpt[i], job->dest->domain, remote,
			    tls[0] ? " over " : "", tls, r->code,
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
			sched_job_why(why, sizeof(why), r->code, r->text);
		}
		if (o.suspend && !suspend) {
			suspend = true;
			suspend_ms = o.suspend_ms;
			sched_job_why(why, sizeof(why), r->code, r->text);
		}
		if (!throttle && o.category != CONF_BC_NONE &&
		    (cfg->throttle_on & (UINT32_C(1) << o.category))) {
			throttle = true;
			if (!suspend && !backoff)
				sched_job_why(why, sizeof(why), r->code,
					      r->text);
		}
	}
	scrub_ctx_leave(prev_ctx);
	if (p != NULL && delivered) {
		/* Its probe answered: every shard's messages for it go. */
		if (p->backoff_level > 0 && p->share != NULL)
			sched_share_answers(p->share);
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
		sched_round_settle(m);
	if (p != NULL && throttle)
		sched_limit_throttle(p, why);
	/* Last: pausing defers what is queued on P, other messages too. */
	if (p != NULL && suspend)
		sched_limit_suspend(p, suspend_ms, why);
	else if (p != NULL && backoff)
		sched_limit_backoff(p, why);
	else if (p != NULL && p->park.n > 0 &&
		 p->paused_until_ms <= util_wall_ms())
		/* The destination answers again: a delivery lets all that
		 * waits go, anything else a few more to probe with. */
		sched_limit_unpause(p, p->backoff_level == 0, "it answers");
}
