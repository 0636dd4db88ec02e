/*
 * intake.c — from end of data to the queue: header checks, DMARC alignment,
 * re-encoding of lines over 998 octets, DKIM signing, sealing, submission.
 *
 * Owns: the loaded DKIM keys (read-only after intake_init) and each
 * request's progress.  The checks and the DMARC lookup run on the session's
 * loop (the lookup is asynchronous); re-encoding, signing, sealing and the
 * hand-over to the queue writer run on the worker pool, so no RSA
 * operation, no pass over megabytes and no disk wait ever happens on an I/O
 * loop.  The request's done() always runs on its
 * loop, never inline.  No address is logged: domains only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/conf.h"
#include "dkim/dkim.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "mta/intake.h"
#include "mta/log.h"
#include "mta/loop.h"
#include "mta/stats.h"
#include "mta/worker.h"

struct intake_keys {
	const struct conf_dkim *cfg;
	struct dkim_key *rsa, *ed;
};

static struct {
	const struct conf *conf;
	struct queue *queue;
	struct intake_keys *keys; /* parallel to conf->dkims */
	size_t nkeys;
	bool psl;
} I;

static int
intake_key_load(const char *domain, const char *path, struct dkim_key **out,
		char *err, size_t errlen)
{
	char e[400];

	if (path == NULL)
		return 0;
	if (dkim_key_load(path, out, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "dkim \"%s\": %s", domain, e);
		return -1;
	}
	return 0;
}

int
intake_init(const struct conf *c, struct queue *q, char *err, size_t errlen)
{
	size_t i;
	int rc;

	memset(&I, 0, sizeof(I));
	I.conf = c;
	I.queue = q;
	if (c->ndkims > 0) {
		rc = dkim_keys_init(0, err, errlen);
		if (rc < 0)
			return -1;
		if (rc > 0)
			log_warnx("dkim: %s", err);
		if ((I.keys = calloc(c->ndkims, sizeof(*I.keys))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		I.nkeys = c->ndkims;
	}
	for (i = 0; i < c->ndkims; i++) {
		const struct conf_dkim *d = &c->dkims[i];

		I.keys[i].cfg = d;
		if (intake_key_load(d->domain, d->rsa_key, &I.keys[i].rsa, err,
				    errlen) != 0 ||
		    intake_key_load(d->domain, d->ed25519_key, &I.keys[i].ed,
				    err, errlen) != 0)
			return -1;
		if (I.keys[i].rsa != NULL &&
		    dkim_key_alg(I.keys[i].rsa) != DKIM_ALG_RSA_SHA256) {
			snprintf(err, errlen,
				 "dkim \"%s\": %s is not an RSA key", d->domain,
				 d->rsa_key);
			return -1;
		}
		if (I.keys[i].ed != NULL &&
		    dkim_key_alg(I.keys[i].ed) != DKIM_ALG_ED25519_SHA256) {
			snprintf(err, errlen,
				 "dkim \"%s\": %s is not an Ed25519 key",
				 d->domain, d->ed25519_key);
			return -1;
		}
		log_info("dkim: %s signs with%s%s%s%s", d->domain,
			 I.keys[i].rsa ? " rsa-sha256 s=" : "",
			 I.keys[i].rsa ? d->selector : "",
			 I.keys[i].ed ? " ed25519-sha256 s=" : "",
			 I.keys[i].ed ? d->ed25519_selector : "");
	}
	if (c->dmarc.check) {
		if (dmarc_init(c->dmarc.psl_file, err, errlen) != 0)
			return -1;
		I.psl = true;
	}
	return 0;
}

void
intake_free(void)
{
	size_t i;

	for (i = 0; i < I.nkeys; i++) {
		if (I.keys[i].rsa != NULL)
			dkim_key_free(I.keys[i].rsa);
		if (I.keys[i].ed != NULL)
			dkim_key_free(I.keys[i].ed);
	}
	free(I.keys);
	if (I.psl)
		dmarc_done();
	memset(&I, 0, sizeof(I));
}

/* Completion ------------------------------------------------------------ */

static void
intake_finish(void *arg)
{
	struct intake_req *req = arg;

	if (req->msg != NULL) {
		dkim_msg_clear(req->msg);
		free(req->msg);
		req->msg = NULL;
	}
	req->done(req);
}

/* Refuse: REPLY goes back to the client; done() on the next loop turn. */
static void intake_refuse(struct intake_req *req, int code, const char *fmt,
			  ...) __attribute__((format(printf, 3, 4)));

static void
intake_refuse(struct intake_req *req, int code, const char *fmt, ...)
{
	va_list ap;

	req->code = code;
	va_start(ap, fmt);
	vsnprintf(req->reply, sizeof(req->reply), fmt, ap);
	va_end(ap);
	loop_post(req->loop, intake_finish, req);
}

/* Writer thread. */
static void
intake_queued_cb(struct queue_op *op, int status, void *arg)
{
	struct intake_req *req = arg;

	(void)op;
	(void)status;
	loop_post(req->loop, intake_finish, req);
}

/* Signing and submission (worker thread) -------------------------------- */

static enum dkim_canon
intake_canon(enum conf_canon c)
{
	return c == CONF_CANON_SIMPLE ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
}

/* Prepend the signatures to the body. */
static int
intake_prepend(struct queue_op *op, char *const *sigs, const size_t *lens,
	       unsigned n)
{
	size_t total = op->body_len, off = 0;
	uint8_t *nb;
	unsigned i;

	for (i = 0; i < n; i++)
		total += lens[i];
	if ((nb = malloc(total)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		memcpy(nb + off, sigs[i], lens[i]);
		off += lens[i];
	}
	memcpy(nb + off, op->body, op->body_len);
	free(op->body);
	op->body = nb;
	op->body_len = total;
	op->env.size = total;
	return 0;
}

/*
 * intake_reencode — lines over 998 octets: the message re-encoded (MIME
 * parts as quoted-printable, headers folded; dkim/reencode.c) and parsed
 * again for signing.  Worker thread: CPU work on up to max_message_size.
 * 0, or -1 after refusing REQ (552 grown past the size limit, 550 what
 * cannot be made to fit, 451 out of memory).
 */
static int
intake_reencode(struct intake_req *req)
{
	struct queue_op *op = req->op;
	uint64_t max = I.conf->limits.max_message_size;
	uint8_t *nb;
	size_t nlen, olen = op->body_len;
	char why[200], err[200];

	switch (reencode_message(op->body, op->body_len,
				 max > SIZE_MAX ? SIZE_MAX : (size_t)max, &nb,
				 &nlen, why, sizeof(why))) {
	case REENCODE_UNCHANGED:
		return 0;
	case REENCODE_OK:
		break;
	case REENCODE_TOO_BIG:
		STATS_INC(rejected_size);
		intake_refuse(req, 552,
			      "5.3.4 Message size exceeds fixed maximum "
			      "message size once its lines over 998 octets "
			      "are re-encoded");
		return -1;
	case REENCODE_REFUSED:
		STATS_INC(rejected_content);
		intake_refuse(req, 550, "5.6.0 Message refused: %s", why);
		return -1;
	case REENCODE_NOMEM:
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again later");
		return -1;
	}
	dkim_msg_clear(req->msg);
	free(op->body);
	op->body = nb;
	op->body_len = op->env.size = nlen;
	if (dkim_msg_parse(op->body, op->body_len, req->msg, err,
			   sizeof(err)) != 0) {
		/* Cannot happen: the header block was valid and only gained
		 * folds and fields.  Refuse rather than sign garbage. */
		log_warnx("intake: re-encoded message does not parse: %s", err);
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again later");
		return -1;
	}
	log_debug("intake: lines over 998 octets re-encoded (%zu -> %zu "
		  "octets)",
		  olen, nlen);
	return 0;
}

static void
intake_work(void *arg)
{
	struct intake_req *req = arg;
	const struct intake_keys *k = req->keys;
	const struct conf_dkim_sign *ds = &I.conf->dkim_sign;
	struct dkim_sign_params p;
	struct dkim_key *use[2];
	const char *sel[2];
	char *sigs[2] = { NULL, NULL }, bh[45], err[200];
	size_t lens[2];
	unsigned n = 0, i;
	int failed = 0;

	if (req->long_lines && intake_reencode(req) != 0) {
		queue_expect(I.queue, -1);
		return;
	}
	if (k != NULL) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
		dkim_body_hash(req->msg, intake_canon(ds->bcanon), bh);
		if (k->rsa != NULL) {
			use[n] = k->rsa;
			sel[n++] = k->cfg->selector;
		}
		if (k->ed != NULL) {
			use[n] = k->ed;
			sel[n++] = k->cfg->ed25519_selector;
		}
		for (i = 0; i < n && !failed; i++) {
			memset(&p, 0, sizeof(p));
			p.domain = k->cfg->domain;
			p.selector = sel[i];
			p.key = use[i];
			p.hcanon = intake_canon(ds->hcanon);
			p.bcanon = intake_canon(ds->bcanon);
			p.timestamp = ds->timestamp ? (int64_t)time(NULL) : -1;
			p.expire_s = ds->expire_ms / 1000;
			p.sign_headers = (const char *const *)ds->headers;
			p.oversign_headers = (const char *const *)ds->oversign;
			if (dkim_sign(req->msg, bh, &p, &sigs[i], &lens[i], err,
				      sizeof(err)) != 0) {
				log_warnx("dkim: signing for %s failed: %s",
					  k->cfg->domain, err);
				failed = 1;
			}
		}
		dkim_msg_clear(req->msg);
		free(req->msg);
		req->msg = NULL;
		if (!failed && intake_prepend(req->op, sigs, lens, n) != 0)
			failed = 1;
		for (i = 0; i < n; i++)
			free(sigs[i]);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
		req->sign_s = (double)(t1.tv_sec - t0.tv_sec) +
			      (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		snprintf(req->dkim, sizeof(req->dkim), "d=%s%s%s%s%s%s%s",
			 k->cfg->domain, k->rsa ? " s=" : "",
			 k->rsa ? k->cfg->selector : "",
			 k->rsa ? " rsa-sha256" : "", k->ed ? " s=" : "",
			 k->ed ? k->cfg->ed25519_selector : "",
			 k->ed ? " ed25519-sha256" : "");
		if (failed) {
			queue_expect(I.queue, -1);
			req->code = 451;
			snprintf(req->reply, sizeof(req->reply),
				 "4.3.0 Signing failed, try again later");
			loop_post(req->loop, intake_finish, req);
			return;
		}
		STATS_ADD(dkim_signatures, n);
	}
	/* Seal here, in parallel, rather than on the single writer. */
	(void)queue_op_seal(I.queue, req->op);
	queue_expect(I.queue, -1);
	queue_submit(I.queue, req->op, intake_queued_cb, req);
}

static void
intake_sign_and_queue(struct intake_req *req)
{
	/* The writer may hold its next commit for this one (queue_expect). */
	queue_expect(I.queue, +1);
	worker_submit(req->loop, intake_work, NULL, req);
}

/* DMARC ----------------------------------------------------------------- */

/* The envelope sender's domain (for SPF alignment), or "" for <>. */
static const char *
intake_mail_domain(const struct intake_req *req, char *buf, size_t len)
{
	const char *s = req->op->env.sender, *at;
	size_t i;

	buf[0] = '\0';
	if (s == NULL || (at = strrchr(s, '@')) == NULL)
		return buf;
	for (i = 0; at[1 + i] != '\0' && i + 1 < len; i++) {
		char c = at[1 + i];

		buf[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
	}
	buf[i] = '\0';
	return buf;
}

static void
intake_dmarc_decide(struct intake_req *req,
		    const struct dmarc_policy_reply *reply)
{
	char mdom[256];
	bool adkim_s = false, aspf_s = false, dkim_ok, spf_ok;
	enum dmarc_policy pol = DMARC_P_NONE;
	const char *why;

	intake_mail_domain(req, mdom, sizeof(mdom));
	if (reply != NULL && reply->result == DMARC_FOUND) {
		adkim_s = reply->record.adkim_strict;
		aspf_s = reply->record.aspf_strict;
		pol = dmarc_effective(reply);
	}
	dkim_ok = req->sign_domain[0] != '\0' &&
		  dmarc_aligned(req->sign_domain, req->from_domain, adkim_s);
	spf_ok =
	    mdom[0] != '\0' && dmarc_aligned(mdom, req->from_domain, aspf_s);
	if (dkim_ok || spf_ok) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=pass (%s aligned) p=%s",
			 dkim_ok ? "dkim" : "spf",
			 reply && reply->result == DMARC_FOUND
			     ? dmarc_policy_str(pol)
			     : "-");
		intake_sign_and_queue(req);
		return;
	}
	if (reply == NULL || reply->result == DMARC_NONE) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=none (not aligned, no policy)");
		intake_sign_and_queue(req);
		return;
	}
	if (reply->result == DMARC_TEMPFAIL) {
		STATS_INC(rejected_dmarc);
		intake_refuse(
		    req, 451,
		    "4.4.3 DMARC policy of %s could not be looked up; try "
		    "again later",
		    req->from_domain);
		return;
	}
	if (pol == DMARC_P_NONE) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail p=none action=none");
		intake_sign_and_queue(req);
		return;
	}
	why = req->sign_domain[0] == '\0' ? "no DKIM key aligned with it"
	      : adkim_s                   ? "DKIM domain not equal (adkim=s)"
					  : "DKIM domain not aligned";
	switch (I.conf->dmarc.action) {
	case CONF_DMARC_REJECT:
		STATS_INC(rejected_dmarc);
		log_info("dmarc: refused mail From %s: p=%s, %s%s%s",
			 req->from_domain, dmarc_policy_str(pol), why,
			 req->sign_domain[0] ? ", d=" : "", req->sign_domain);
		intake_refuse(
		    req, 550,
		    "5.7.1 Message would fail DMARC at the receiver: From "
		    "domain %s publishes p=%s; %s%s%s; envelope domain %s not "
		    "aligned%s",
		    req->from_domain, dmarc_policy_str(pol), why,
		    req->sign_domain[0] ? " (d=" : "",
		    req->sign_domain[0] ? req->sign_domain : "",
		    mdom[0] ? mdom : "<>", req->sign_domain[0] ? ")" : "");
		return;
	case CONF_DMARC_HOLD:
		req->op->env.flags |= QUEUE_F_HELD;
		req->held = true;
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail p=%s action=hold", dmarc_policy_str(pol));
		intake_sign_and_queue(req);
		return;
	case CONF_DMARC_ACCEPT:
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail p=%s action=accept",
			 dmarc_policy_str(pol));
		intake_sign_and_queue(req);
		return;
	}
}

static void
intake_dmarc_cb(const struct dmarc_policy_reply *reply, void *arg)
{
	struct intake_req *req = arg;

	req->query = NULL;
	intake_dmarc_decide(req, reply);
}

/* Entry ----------------------------------------------------------------- */

/* The signing keys for FROM: the From domain's, else its nearest configured
 * parent within the organizational domain.  Sets req->sign_domain. */
static const struct intake_keys *
intake_keys_for(struct intake_req *req)
{
	const struct conf_dkim *d = NULL, *fb;
	char org[256];
	const char *dom = req->from_domain;
	bool unaligned_ok;

	if (I.nkeys > 0) {
		dmarc_org_domain(dom, org, sizeof(org));
		for (;;) {
			if ((d = conf_dkim_find(I.conf, dom)) != NULL)
				break;
			if (strcmp(dom, org) == 0 ||
			    (dom = strchr(dom, '.')) == NULL)
				break;
			dom++;
		}
		if (d == NULL) {
			/* The user's fallback domain, only where the
			 * configuration allows unaligned signing. */
			fb = req->user != NULL ? req->user->dkim_fallback
					       : I.conf->relay_dkim_fallback;
			unaligned_ok = req->user != NULL
					   ? req->user->allow_unaligned
					   : I.conf->relay_allow_unaligned;
			if (fb != NULL &&
			    (unaligned_ok ||
			     dmarc_aligned(fb->domain, req->from_domain,
					   false)))
				d = fb;
		}
	}
	if (d == NULL) {
		req->sign_domain[0] = '\0';
		return NULL;
	}
	snprintf(req->sign_domain, sizeof(req->sign_domain), "%s", d->domain);
	return &I.keys[d - I.conf->dkims];
}

void
intake_submit(struct intake_req *req)
{
	struct queue_op *op = req->op;
	char err[200];

	req->code = 0;
	req->reply[0] = req->result[0] = req->dkim[0] = '\0';
	req->sign_s = 0;
	req->held = false;
	req->keys = NULL;
	req->query = NULL;
	req->from_domain[0] = req->sign_domain[0] = '\0';
	if ((req->msg = calloc(1, sizeof(*req->msg))) == NULL) {
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again "
			      "later");
		return;
	}
	if (dkim_msg_parse(op->body, op->body_len, req->msg, err,
			   sizeof(err)) != 0) {
		free(req->msg);
		req->msg = NULL;
		STATS_INC(rejected_content);
		intake_refuse(req, 554, "5.6.0 Malformed header: %s", err);
		return;
	}
	if (I.conf->dmarc.check || I.nkeys > 0 || req->user != NULL) {
		/* RFC 7489 6.6.1: exactly one author address. */
		if (dmarc_from_domain(req->msg, req->from_domain,
				      sizeof(req->from_domain), err,
				      sizeof(err)) != 0) {
			STATS_INC(rejected_content);
			intake_refuse(req, 550,
				      "5.7.1 %s (RFC 5322 3.6.2, RFC "
				      "7489 6.6.1)",
				      err);
			return;
		}
		if (req->user != NULL &&
		    !conf_user_may_send(req->user, req->from_domain)) {
			STATS_INC(rejected_sender);
			log_info("smtp From: domain %s refused for user %s",
				 req->from_domain, req->user->name);
			intake_refuse(req, 550,
				      "5.7.1 From: domain %s is not "
				      "allowed for this user",
				      req->from_domain);
			return;
		}
	}
	if (req->from_domain[0] != '\0')
		req->keys = intake_keys_for(req);
	if (!I.conf->dmarc.check) {
		snprintf(req->result, sizeof(req->result), "dmarc=unchecked");
		intake_sign_and_queue(req);
		return;
	}
	/* Strict alignment by the signing domain or the envelope needs no
	 * policy: it passes whatever the record says. */
	{
		char mdom[256];

		intake_mail_domain(req, mdom, sizeof(mdom));
		if ((req->sign_domain[0] != '\0' &&
		     strcmp(req->sign_domain, req->from_domain) == 0) ||
		    (mdom[0] != '\0' && strcmp(mdom, req->from_domain) == 0)) {
			snprintf(req->result, sizeof(req->result),
				 "dmarc=pass (%s, identical domain)",
				 strcmp(req->sign_domain, req->from_domain) == 0
				     ? "dkim"
				     : "spf");
			intake_sign_and_queue(req);
			return;
		}
	}
	if (req->dns == NULL) {
		intake_dmarc_decide(req, &(struct dmarc_policy_reply){
					     .result = DMARC_TEMPFAIL });
		return;
	}
	req->query = dmarc_policy_lookup(req->dns, req->from_domain,
					 intake_dmarc_cb, req);
	if (req->query == NULL)
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again "
			      "later");
}
