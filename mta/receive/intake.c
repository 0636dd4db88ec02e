/*
 * intake.c — from end of data to the queue: header checks, DMARC alignment,
 * re-encoding of lines over 998 octets, DKIM signing, sealing, submission.
 *
 * Owns: the DKIM keys of each configuration (an intake_keyset, loaded on
 * the main thread, read-only after) and each request's progress.  The checks
 * and the DMARC lookup run on the session's loop (the lookup is asynchronous);
 * re-encoding, signing, sealing and the hand-over to the queue writer run on
 * the worker pool, so no RSA operation, no pass over megabytes and no disk wait
 * ever happens on an I/O loop.  The request's done() always runs on its loop,
 * never inline.  No address is logged: domains only.  A spooled message
 * (op->spool) arrives as its header block: its body hash was streamed,
 * only re-encoding reads its body back whole.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "conf/conf.h"
#include "dkim/dkim.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "mta/receive/arf.h"
#include "mta/receive/intake.h"
#include "mta/receive/intake_trace.h"
#include "mta/receive/scan.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/stats.h"
#include "mta/core/worker.h"

/* Locked memory to reserve per private key (RSA-2048 takes ~1.7 KB). */
#define INTAKE_KEY_BYTES 2048

/* A body up to this size that needs no signing nor rewriting is sealed on
 * its loop rather than on the worker pool (intake_queue). */
#define INTAKE_INLINE_BYTES (64 * 1024)

/* SPF results kept (domain, helo, pool addresses); the oldest goes. */
#define INTAKE_SPF_CACHE_MAX 65536

struct intake_keys {
	const struct conf_dkim *cfg;
	struct dkim_key *rsa, *ed;
};

/* One configuration's keys: the DKIM sections of CONF, loaded. */
struct intake_keyset {
	const struct conf *conf;  /* a reference (conf_ref) */
	struct intake_keys *keys; /* parallel to conf->dkims */
	size_t nkeys;
	/* dkim_sign.oversign (or the defaults) and X-Outpost-FB, when the
	 * configuration adds it: the signature then covers the identifier
	 * and forbids a second one above it.  NULL: the configured list. */
	const char **oversign;
};

static struct {
	struct queue *queue;
	bool keys_ready; /* dkim_keys_init ran */
	bool psl;
	struct spf_cache *spf_cache;
	bool spf_warned;   /* "not evaluated" said once at info level */
	bool nodns_warned; /* "no DNS resolver" said once */
} I;

/* AT: "file:line" of the key in the configuration, for the message. */
static int
intake_key_load(const char *at, const char *domain, const char *path,
		struct dkim_key **out, char *err, size_t errlen)
{
	char e[400];

	if (path == NULL)
		return 0;
	if (dkim_key_load(path, out, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "%s%sdkim \"%s\": %s",
			 at != NULL ? at : "", at != NULL ? ": " : "", domain,
			 e);
		return -1;
	}
	return 0;
}

/* What C needs of the process (locked memory for keys, the public suffix
 * list, the SPF cache), set up once, on the main thread, before anyone
 * reads it: a reload that turns DMARC on has it ready before the first
 * session of its configuration starts. */
static int
intake_global_ready(const struct conf *c, char *err, size_t errlen)
{
	int rc;

	if (!I.keys_ready) {
		/* At the first load, keys or not: OpenSSL's secure heap must
		 * be made before other threads run, and a reload may bring
		 * the first keys.  A reload holds two keysets at once, and
		 * may add keys: room for twice as many as now and a margin (a
		 * 2 MiB floor); a reload that needs more is refused (its key
		 * fails to load) and the old keys stay. */
		rc = dkim_keys_init(2 * (c->ndkims + 256) * INTAKE_KEY_BYTES,
				    err, errlen);
		if (rc < 0)
			return -1;
		if (rc > 0 && c->ndkims > 0)
			log_warnx("dkim: %s", err);
		I.keys_ready = true;
	}
	if (c->dmarc.check && !I.psl) {
		if (dmarc_init(c->dmarc.psl_file, err, errlen) != 0)
			return -1;
		I.psl = true;
	}
	if (c->dmarc.check && I.spf_cache == NULL &&
	    (I.spf_cache = spf_cache_new(INTAKE_SPF_CACHE_MAX)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int
intake_init(const struct conf *c, struct queue *q, char *err, size_t errlen)
{
	memset(&I, 0, sizeof(I));
	I.queue = q;
	return intake_global_ready(c, err, errlen);
}

void
intake_free(void)
{
	if (I.psl)
		dmarc_done();
	spf_cache_free(I.spf_cache);
	memset(&I, 0, sizeof(I));
}

/* The checks of key K of D: its files are keys of the right kind. */
static int
intake_keys_load_one(const struct conf_dkim *d, struct intake_keys *k,
		     bool quiet, char *err, size_t errlen)
{
	k->cfg = d;
	if (intake_key_load(d->rsa_key_at, d->domain, d->rsa_key, &k->rsa, err,
			    errlen) != 0 ||
	    intake_key_load(d->ed25519_key_at, d->domain, d->ed25519_key,
			    &k->ed, err, errlen) != 0)
		return -1;
	if (k->rsa != NULL && dkim_key_alg(k->rsa) != DKIM_ALG_RSA_SHA256) {
		snprintf(err, errlen, "%s: dkim \"%s\": %s is not an RSA key",
			 d->rsa_key_at, d->domain, d->rsa_key);
		return -1;
	}
	if (k->ed != NULL && dkim_key_alg(k->ed) != DKIM_ALG_ED25519_SHA256) {
		snprintf(err, errlen,
			 "%s: dkim \"%s\": %s is not an Ed25519 key",
			 d->ed25519_key_at, d->domain, d->ed25519_key);
		return -1;
	}
	if (!quiet)
		log_info("dkim: %s signs with%s%s%s%s", d->domain,
			 k->rsa ? " rsa-sha256 s=" : "",
			 k->rsa ? d->selector : "",
			 k->ed ? " ed25519-sha256 s=" : "",
			 k->ed ? d->ed25519_selector : "");
	return 0;
}

/* Does C put the sealed identifier X-Outpost-FB into every message? */
static bool
intake_fb_wanted(const struct conf *c)
{
	return c->feedback.address != NULL && c->feedback.identifier;
}

/* KS's over-signed list: C's (or the defaults) and X-Outpost-FB.  The
 * strings are C's or static: only the array is owned.  0, -1 no memory. */
static int
intake_fb_oversign(const struct conf *c, struct intake_keyset *ks)
{
	const char *const *src =
	    c->dkim_sign.oversign != NULL
		? (const char *const *)c->dkim_sign.oversign
		: dkim_default_oversign_headers;
	size_t n, i;

	if (!intake_fb_wanted(c))
		return 0;
	for (n = 0; src[n] != NULL; n++)
		if (strcasecmp(src[n], ARF_ID_HEADER) == 0)
			return 0;
	if ((ks->oversign = calloc(n + 2, sizeof(*ks->oversign))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		ks->oversign[i] = src[i];
	ks->oversign[n] = ARF_ID_HEADER;
	return 0;
}

int
intake_keyset_load(const struct conf *c, bool quiet, struct intake_keyset **out,
		   char *err, size_t errlen)
{
	struct intake_keyset *ks;
	size_t i;

	*out = NULL;
	if (intake_global_ready(c, err, errlen) != 0)
		return -1;
	if ((ks = calloc(1, sizeof(*ks))) == NULL ||
	    (c->ndkims > 0 &&
	     (ks->keys = calloc(c->ndkims, sizeof(*ks->keys))) == NULL)) {
		free(ks);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ks->conf = conf_ref(c);
	ks->nkeys = c->ndkims;
	if (intake_fb_oversign(c, ks) != 0) {
		intake_keyset_free(ks);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < c->ndkims; i++) {
		if (intake_keys_load_one(&c->dkims[i], &ks->keys[i], quiet, err,
					 errlen) != 0) {
			intake_keyset_free(ks);
			return -1;
		}
	}
	*out = ks;
	return 0;
}

void
intake_keyset_free(struct intake_keyset *ks)
{
	size_t i;

	if (ks == NULL)
		return;
	for (i = 0; i < ks->nkeys; i++) {
		if (ks->keys[i].rsa != NULL)
			dkim_key_free(ks->keys[i].rsa);
		if (ks->keys[i].ed != NULL)
			dkim_key_free(ks->keys[i].ed);
	}
	free(ks->keys);
	free(ks->oversign);
	conf_unref(ks->conf);
	free(ks);
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
	dkim_bodyhash_free(req->bodyhash);
	req->bodyhash = NULL;
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
	req->post.fn = intake_finish;
	req->post.arg = req;
	req->post.ours = false;
	/* With the rest of the commit's, after its last (queue_done_hook). */
	loop_post_defer(req->loop, &req->post);
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
	op->body_len = op->body_cap = total;
	op->env.size = total;
	return 0;
}

/* Appends each spooled chunk to the whole body being rebuilt. */
static int
intake_unspool_cb(const uint8_t *data, size_t len, void *arg)
{
	struct queue_op *op = arg;

	memcpy(op->body + op->body_len, data, len);
	op->body_len += len;
	return 0;
}

/*
 * intake_unspool — a spooled message that must be read whole after all
 * (lines to re-encode): its chunks read back from the queue, the message
 * made whole in op->body (the insert then replaces the spooled chunks:
 * op->spooled 0), its header block parsed again, and the streamed hash
 * dropped.  Worker thread; the session charged the whole size to the body
 * budget.  0, or -1 after refusing REQ (451).
 */
static int
intake_unspool(struct intake_req *req)
{
	struct queue_op *op = req->op;
	size_t head = op->body_len, whole;
	uint8_t *nb;
	char err[200];

	whole = head + (size_t)op->spooled_bytes + op->tail_len;
	if ((nb = malloc(whole)) == NULL)
		goto fail;
	memcpy(nb, op->body, head);
	free(op->body);
	op->body = nb;
	op->body_cap = whole;
	if (queue_spool_read(I.queue, op->env.id, op->spooled,
			     intake_unspool_cb, op, err, sizeof(err)) != 0 ||
	    op->body_len != head + op->spooled_bytes) {
		log_warnx("intake: reading a spooled body back: %s", err);
		goto fail;
	}
	memcpy(op->body + op->body_len, op->tail, op->tail_len);
	op->body_len = whole;
	free(op->tail);
	op->tail = NULL;
	op->tail_len = 0;
	op->spooled = 0;
	op->spooled_bytes = 0;
	dkim_bodyhash_free(req->bodyhash);
	req->bodyhash = NULL;
	dkim_msg_clear(req->msg);
	if (dkim_msg_parse(op->body, op->body_len, req->msg, err,
			   sizeof(err)) == 0)
		return 0;
	log_warnx("intake: spooled message read back does not parse: %s", err);
fail:
	intake_refuse(req, 451, "4.3.0 Temporary failure, try again later");
	return -1;
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
	uint64_t max = req->conf->limits.max_message_size;
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
	op->body_len = op->body_cap = op->env.size = nlen;
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

/*
 * The message M (parsed from BODY, LEN octets) into OUT without its
 * X-Outpost-FB fields: one a sender wrote, perhaps copied from mail of
 * another identity it received, must not stand beside ours.  Returns
 * the octets written (at most LEN).
 */
static size_t
intake_fb_strip(const struct dkim_msg *m, const uint8_t *body, size_t len,
		uint8_t *out)
{
	size_t i, from = 0, n = 0, at, end;
	const struct dkim_header *h;

	for (i = 0; i < m->nhdrs; i++) {
		h = &m->hdrs[i];
		if (h->name_len != strlen(ARF_ID_HEADER) ||
		    strncasecmp(h->field, ARF_ID_HEADER, h->name_len) != 0)
			continue;
		at = (size_t)((const uint8_t *)h->field - body);
		end = at + h->len;
		if (end + 2 <= len && body[end] == '\r' &&
		    body[end + 1] == '\n')
			end += 2;
		memcpy(out + n, body + from, at - from);
		n += at - from;
		from = end;
	}
	memcpy(out + n, body + from, len - from);
	return n + len - from;
}

/*
 * intake_fb_add — the sealed identifier (arf_id_seal: queue id, identity,
 * campaign, and the recipient when there is only one: a message with
 * several has one body, so a report names its recipient itself) put on
 * top of the message in place of any the sender wrote, before signing
 * covers it, and the header block parsed again for the signer.  Worker
 * thread.  0, or -1 after refusing REQ (451: out of memory, or the
 * identifier cannot be made).
 */
static int
intake_fb_add(struct intake_req *req)
{
	struct queue_op *op = req->op;
	struct arf_id id;
	uint8_t key[32], *nb;
	char field[2048], err[200];
	const char *identity = conf_identity(req->conf, op->env.user);
	int n;

	memset(&id, 0, sizeof(id));
	id.queue_id = op->env.id;
	id.time_ms = util_wall_ms();
	snprintf(id.identity, sizeof(id.identity), "%s", identity);
	snprintf(id.campaign, sizeof(id.campaign), "%s",
		 op->env.campaign != NULL ? op->env.campaign : "");
	if (op->env.nrcpts == 1 && strlen(op->env.rcpts[0].addr) < 256)
		snprintf(id.rcpt, sizeof(id.rcpt), "%s", op->env.rcpts[0].addr);
	arf_id_key(I.queue, key);
	n = arf_id_seal(key, &id, field, sizeof(field));
	sodium_memzero(key, sizeof(key));
	sodium_memzero(&id, sizeof(id));
	if (n < 0 || (nb = malloc(op->body_len + (size_t)n)) == NULL) {
		log_warnx("intake: no room for the " ARF_ID_HEADER " header");
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again later");
		return -1;
	}
	memcpy(nb, field, (size_t)n);
	op->body_len = op->env.size =
	    (size_t)n +
	    intake_fb_strip(req->msg, op->body, op->body_len, nb + n);
	free(op->body);
	op->body = nb;
	op->body_cap = op->body_len;
	dkim_msg_clear(req->msg);
	if (dkim_msg_parse(op->body, op->body_len, req->msg, err,
			   sizeof(err)) != 0) {
		/* Cannot happen: one well-formed field was added on top,
		 * whole fields taken out. */
		log_warnx("intake: message with " ARF_ID_HEADER
			  " does not parse: %s",
			  err);
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again later");
		return -1;
	}
	return 0;
}

static void
intake_work(void *arg)
{
	struct intake_req *req = arg;
	const struct intake_keys *k = req->keys;
	const struct conf_dkim_sign *ds = &req->conf->dkim_sign;
	struct dkim_sign_params p;
	struct dkim_key *use[2];
	const char *sel[2];
	char *sigs[2] = { NULL, NULL }, bh[45], err[200];
	size_t lens[2];
	unsigned n = 0, i;
	int failed = 0;

	if (req->long_lines &&
	    ((req->op->spooled > 0 && intake_unspool(req) != 0) ||
	     intake_reencode(req) != 0)) {
		queue_expect(I.queue, -1);
		return;
	}
	if (intake_fb_wanted(req->conf) && intake_fb_add(req) != 0) {
		queue_expect(I.queue, -1);
		return;
	}
	if (k != NULL) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
		if (req->op->spooled > 0) {
			/* The spooled chunks are hashed: the last ones. */
			bh[0] = '\0';
			if (req->bodyhash != NULL) {
				dkim_bodyhash_update(req->bodyhash,
						     req->op->tail,
						     req->op->tail_len);
				(void)dkim_bodyhash_final(req->bodyhash, bh);
				req->bodyhash = NULL;
			}
		} else {
			dkim_body_hash(req->msg, intake_canon(ds->bcanon), bh);
		}
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
			p.timestamp =
			    ds->timestamp ? util_wall_ms() / 1000 : -1;
			p.expire_s = ds->expire_ms / 1000;
			p.sign_headers = (const char *const *)ds->headers;
			p.oversign_headers =
			    req->keyset->oversign != NULL
				? req->keyset->oversign
				: (const char *const *)ds->oversign;
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
	/* The envelope is sealed here, in parallel, rather than on the single
	 * writer (which seals the body where it will lie). */
	(void)queue_op_seal(I.queue, req->op);
	queue_expect(I.queue, -1);
	queue_submit(I.queue, req->op, intake_queued_cb, req);
}

static void
intake_queue(struct intake_req *req)
{
	/* Small (never spooled), unsigned and unchanged: sealed here, on
	 * the loop.  The AEAD over at most INTAKE_INLINE_BYTES costs a few
	 * microseconds, less than the hand-off to a worker and its wake-up;
	 * signing, re-encoding and the feedback header stay on the pool. */
	if (req->keys == NULL && !req->long_lines &&
	    !intake_fb_wanted(req->conf) && req->op->spooled == 0 &&
	    req->op->body_len <= INTAKE_INLINE_BYTES) {
		(void)queue_op_seal(I.queue, req->op);
		queue_submit(I.queue, req->op, intake_queued_cb, req);
		return;
	}
	/* The writer may hold its next commit for this one (queue_expect). */
	queue_expect(I.queue, +1);
	worker_submit(req->loop, intake_work, NULL, req);
}

/* Malware scan ---------------------------------------------------------- */

/* The scan's verdict (REQ's loop): queue, refuse, or (clamd failing) what
 * scan.on_error says. */
static void
intake_scanned(struct scan_req *sr)
{
	struct intake_req *req = sr->arg;
	struct queue_op *op = req->op;
	const struct conf_scan *cf = &req->conf->scan;
	char qid[QUEUE_ID_HEX_BYTES], reply[sizeof(req->reply)];

	req->scan = NULL;
	queue_id_format(op->env.id, qid);
	switch (sr->result) {
	case SCAN_R_CLEAN:
		if (sr->truncated)
			log_info("scan: %s: only the first %llu of %zu bytes "
				 "scanned (scan.max_size)",
				 qid, (unsigned long long)cf->max_size,
				 sr->len);
		free(sr);
		intake_queue(req);
		return;
	case SCAN_R_INFECTED:
		STATS_INC(rejected_content);
		log_info("scan: %s refused: malware found (%s)%s", qid,
			 sr->name, sr->cached ? " (cached verdict)" : "");
		snprintf(reply, sizeof(reply),
			 "5.7.1 message refused: malware found (%s)", sr->name);
		scan_note_infected(&op->env,
				   conf_identity(req->conf, op->env.user),
				   sr->name, 554, reply);
		req->logged = true;
		free(sr);
		intake_refuse(req, 554, "%s", reply);
		return;
	case SCAN_R_OVERSIZE:
		free(sr);
		STATS_INC(rejected_size);
		intake_refuse(req, 552,
			      "5.3.4 Message too big for the malware scan");
		return;
	case SCAN_R_ERROR:
		break;
	}
	if (cf->on_error == CONF_SCAN_ACCEPT) {
		log_warnx("scan: %s: %s; queued unscanned (scan.on_error = "
			  "accept)",
			  qid, sr->why);
		scan_error_accepted();
		free(sr);
		intake_queue(req);
		return;
	}
	log_warnx("scan: %s: %s; refused for now (451)", qid, sr->why);
	free(sr);
	intake_refuse(req, 451,
		      "4.7.0 Temporary failure: malware scan unavailable, "
		      "try again later");
}

/*
 * intake_sign_and_queue — every check passed: scan the message when
 * scan.clamd is set (the body as received: nothing is signed or queued
 * before the verdict), then sign and queue it.
 */
static void
intake_sign_and_queue(struct intake_req *req)
{
	struct scan_req *sr;

	if (req->conf->scan.clamd == NULL) {
		intake_queue(req);
		return;
	}
	if ((sr = calloc(1, sizeof(*sr))) == NULL) {
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again later");
		return;
	}
	sr->loop = req->loop;
	sr->conf = req->conf;
	sr->body = req->op->body;
	sr->len = req->op->body_len;
	sr->trace_len = req->trace_len <= sr->len ? req->trace_len : 0;
	sr->done = intake_scanned;
	sr->arg = req;
	req->scan = sr;
	scan_message(sr);
}

/* DMARC ----------------------------------------------------------------- */

/* The envelope sender's domain (for SPF alignment), or "" for <>. */
static const char *
intake_mail_domain(const struct intake_req *req, char *buf, size_t len)
{
	const char *s = req->op->env.sender, *at;

	buf[0] = '\0';
	if (s == NULL || (at = strrchr(s, '@')) == NULL)
		return buf;
	/* A path's domain has no final dot (addr.c): nothing else differs. */
	util_domain_lower(at + 1, buf, len);
	return buf;
}

/* "p=reject", or "p=-" without a record. */
static const char *
intake_pol_str(const struct dmarc_policy_reply *reply, enum dmarc_policy pol)
{
	return reply != NULL && reply->result == DMARC_FOUND
		   ? dmarc_policy_str(pol)
		   : "-";
}

/*
 * intake_dmarc_decide — the outcome once SPF and the policy are known.
 * Longer than most: it is one decision table (aligned, no policy, policy
 * unknown, p=none, SPF unknown, then the configured action), each row
 * with its dmarc= field for the delivery log, kept in one place so that
 * the order of the rows can be read.
 */
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
	/* SPF counts only when it passed for every source address (see
	 * intake_spf_start); the envelope domain alone proves nothing. */
	spf_ok = req->spf == SPF_PASS && mdom[0] != '\0' &&
		 dmarc_aligned(mdom, req->from_domain, aspf_s);
	if (dkim_ok || spf_ok) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=pass align=%s p=%s spf=%s",
			 dkim_ok ? "dkim" : "spf", intake_pol_str(reply, pol),
			 req->spf_note);
		intake_sign_and_queue(req);
		return;
	}
	if (reply == NULL || reply->result == DMARC_NONE) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=none align=none p=- spf=%s (not aligned, no "
			 "policy)",
			 req->spf_note);
		intake_sign_and_queue(req);
		return;
	}
	if (reply->result == DMARC_TEMPFAIL) {
		STATS_INC(rejected_dmarc);
		snprintf(req->result, sizeof(req->result),
			 "dmarc=temperror align=none spf=%s", req->spf_note);
		intake_refuse(
		    req, 451,
		    "4.4.3 DMARC policy of %s could not be looked up; try "
		    "again later",
		    req->from_domain);
		return;
	}
	if (pol == DMARC_P_NONE) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail align=none p=none spf=%s action=none",
			 req->spf_note);
		intake_sign_and_queue(req);
		return;
	}
	if (req->spf == SPF_TEMPERROR &&
	    req->conf->dmarc.action != CONF_DMARC_ACCEPT) {
		/* SPF might have aligned it: DNS trouble is no reason to
		 * refuse for good (nor to hold for an operator). */
		STATS_INC(rejected_dmarc);
		snprintf(req->result, sizeof(req->result),
			 "dmarc=temperror align=none p=%s spf=temperror",
			 dmarc_policy_str(pol));
		intake_refuse(req, 451,
			      "4.4.3 SPF of %s could not be evaluated; try "
			      "again later",
			      mdom);
		return;
	}
	why = req->sign_domain[0] == '\0' ? "no DKIM key aligned with it"
	      : adkim_s                   ? "DKIM domain not equal (adkim=s)"
					  : "DKIM domain not aligned";
	switch (req->conf->dmarc.action) {
	case CONF_DMARC_REJECT:
		STATS_INC(rejected_dmarc);
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail align=none p=%s spf=%s action=reject",
			 dmarc_policy_str(pol), req->spf_note);
		log_info("dmarc: refused mail From %s: p=%s, %s%s%s; spf=%s",
			 req->from_domain, dmarc_policy_str(pol), why,
			 req->sign_domain[0] ? ", d=" : "", req->sign_domain,
			 req->spf_note);
		intake_refuse(
		    req, 550,
		    "5.7.1 Message would fail DMARC at the receiver: From "
		    "domain %s publishes p=%s; %s%s%s%s; envelope domain %s "
		    "not "
		    "aligned by SPF (spf=%s)",
		    req->from_domain, dmarc_policy_str(pol), why,
		    req->sign_domain[0] ? " (d=" : "",
		    req->sign_domain[0] ? req->sign_domain : "",
		    req->sign_domain[0] ? ")" : "", mdom[0] ? mdom : "<>",
		    req->spf_note);
		return;
	case CONF_DMARC_HOLD:
		req->op->env.flags |= QUEUE_F_HELD;
		req->held = true;
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail align=none p=%s spf=%s action=hold",
			 dmarc_policy_str(pol), req->spf_note);
		intake_sign_and_queue(req);
		return;
	case CONF_DMARC_ACCEPT:
		snprintf(req->result, sizeof(req->result),
			 "dmarc=fail align=none p=%s spf=%s action=accept",
			 dmarc_policy_str(pol), req->spf_note);
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

/*
 * intake_policy — the second half of the pre-check, once SPF is known:
 * an envelope domain equal to the From domain whose SPF passed needs no
 * policy (it passes whatever the record says); otherwise the policy is
 * looked up and decides.
 */
static void
intake_policy(struct intake_req *req)
{
	struct dmarc_policy_reply cached;
	char mdom[256];

	intake_mail_domain(req, mdom, sizeof(mdom));
	if (req->spf == SPF_PASS && strcmp(mdom, req->from_domain) == 0) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=pass align=spf p=- spf=%s (identical domain)",
			 req->spf_note);
		intake_sign_and_queue(req);
		return;
	}
	if (req->dns == NULL) {
		intake_dmarc_decide(req, &(struct dmarc_policy_reply){
					     .result = DMARC_TEMPFAIL });
		return;
	}
	if (dmarc_policy_cached(req->dns, req->from_domain, &cached)) {
		intake_dmarc_decide(req, &cached);
		return;
	}
	req->query = dmarc_policy_lookup(req->dns, req->from_domain,
					 intake_dmarc_cb, req);
	if (req->query == NULL)
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again "
			      "later");
}

/* SPF ------------------------------------------------------------------- */

/*
 * The pool this sender's mail leaves from, chosen as the scheduler
 * chooses it (sched_pool_for): the user's pool, else for clients of relay
 * networks relay { pool }, else pool "default"; NULL: no source binding
 * (the OS picks the address).
 */
static const struct conf_pool *
intake_pool_for(const struct intake_req *req)
{
	if (req->user != NULL && req->user->pool != NULL)
		return req->user->pool;
	if (req->user == NULL && req->conf->relay_pool != NULL)
		return req->conf->relay_pool;
	return req->conf->default_pool;
}

/* P for the sender of REQ and POOL; LOCAL receives the local-part. */
static void
intake_spf_params(const struct intake_req *req, const struct conf_pool *pool,
		  const char *mdom, char *local, size_t len,
		  struct spf_check_params *p)
{
	const char *s = req->op->env.sender, *at;
	size_t n;

	local[0] = '\0';
	if (s != NULL && (at = strrchr(s, '@')) != NULL &&
	    (n = (size_t)(at - s)) < len) {
		memcpy(local, s, n);
		local[n] = '\0';
	}
	memset(p, 0, sizeof(*p));
	p->domain = mdom;
	p->local = local;
	p->helo = pool->ehlo != NULL ? pool->ehlo : req->conf->delivery.ehlo;
	p->addrs = pool->sources;
	p->naddrs = pool->nsources;
}

static void
intake_spf_set(struct intake_req *req, enum spf_result r)
{
	req->spf = (int)r;
	snprintf(req->spf_note, sizeof(req->spf_note), "%s", spf_result_str(r));
}

static void
intake_spf_cb(const struct spf_check_reply *reply, void *arg)
{
	struct intake_req *req = arg;
	const struct conf_pool *pool = intake_pool_for(req);
	struct spf_check_params p;
	char mdom[256], local[65];

	req->spf_query = NULL;
	intake_mail_domain(req, mdom, sizeof(mdom));
	intake_spf_params(req, pool, mdom, local, sizeof(local), &p);
	spf_cache_put(I.spf_cache, &p, reply);
	intake_spf_set(req, reply->result);
	/* The reason may hold names built from the sender's local-part
	 * (%{l}): then only the result is logged. */
	if (reply->result != SPF_PASS)
		log_info("spf: %s for source %zu of %zu of pool %s: %s; DKIM "
			 "alone decides alignment",
			 mdom, reply->addr_index + 1, pool->nsources,
			 pool->name,
			 reply->err[0] != '\0' && !reply->sender_dependent
			     ? reply->err
			     : spf_result_str(reply->result));
	intake_policy(req);
}

/*
 * intake_spf_start — SPF for the envelope domain, when it aligns with the
 * From domain at all (relaxed; the policy's aspf= is applied later).  The
 * message passes only when check_host() passes for EVERY source address
 * of the pool it will leave from: any of them may carry it.  Without a
 * pool (the OS default route) or with a relay_host (the smarthost's
 * address is what receivers see) SPF cannot be evaluated and does not
 * count.  Results come from the cache when a campaign repeats itself.
 */
static void
intake_spf_start(struct intake_req *req)
{
	const struct conf_pool *pool;
	struct spf_check_params p;
	enum spf_result cached;
	char mdom[256], local[65];

	intake_mail_domain(req, mdom, sizeof(mdom));
	req->spf = SPF_NONE;
	snprintf(req->spf_note, sizeof(req->spf_note), "not-aligned");
	if (mdom[0] == '\0' || !dmarc_aligned(mdom, req->from_domain, false)) {
		intake_policy(req);
		return;
	}
	pool = intake_pool_for(req);
	if (pool == NULL || pool->nsources == 0 ||
	    req->conf->delivery.relay_host != NULL) {
		snprintf(req->spf_note, sizeof(req->spf_note), "unevaluated");
		log_debug("spf: %s not evaluated (%s); DKIM alone decides "
			  "alignment",
			  mdom,
			  pool == NULL ? "no source address: the OS picks it"
				       : "delivery through relay_host");
		/* Several loops get here: one of them says it. */
		if (!__atomic_exchange_n(&I.spf_warned, true,
					 __ATOMIC_RELAXED)) {
			log_info("spf: not evaluated (%s): DKIM alone decides "
				 "DMARC alignment",
				 pool == NULL ? "no source address configured: "
						"the OS picks it"
					      : "delivery through relay_host");
		}
		intake_policy(req);
		return;
	}
	intake_spf_params(req, pool, mdom, local, sizeof(local), &p);
	if (spf_cache_get(I.spf_cache, &p, &cached) == 0) {
		intake_spf_set(req, cached);
		intake_policy(req);
		return;
	}
	if (req->dns == NULL) {
		intake_spf_set(req, SPF_TEMPERROR);
		intake_policy(req);
		return;
	}
	req->spf_query = spf_check(req->dns, &p, intake_spf_cb, req);
	if (req->spf_query == NULL)
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again "
			      "later");
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

	if (req->keyset->nkeys > 0) {
		dmarc_org_domain(dom, org, sizeof(org));
		for (;;) {
			if ((d = conf_dkim_find(req->conf, dom)) != NULL)
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
					       : req->conf->relay_dkim_fallback;
			unaligned_ok = req->user != NULL
					   ? req->user->allow_unaligned
					   : req->conf->relay_allow_unaligned;
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
	return &req->keyset->keys[d - req->conf->dkims];
}

int
intake_bodyhash_new(const struct intake_keyset *ks,
		    const struct conf_user *user, const uint8_t *head,
		    size_t len, struct dkim_bodyhash **out)
{
	struct intake_req *req;
	struct dkim_msg m;
	char err[200];
	int rc = 0;

	*out = NULL;
	if (ks->nkeys == 0)
		return 0;
	/* The choice intake_submit() makes, on the same header block: a
	 * header block it refuses, or a From domain no key signs, needs no
	 * hash. */
	if ((req = calloc(1, sizeof(*req))) == NULL)
		return -1;
	memset(&m, 0, sizeof(m));
	req->conf = ks->conf;
	req->keyset = ks;
	req->user = user;
	if (dkim_msg_parse(head, len, &m, err, sizeof(err)) == 0 &&
	    dmarc_from_domain(&m, req->from_domain, sizeof(req->from_domain),
			      err, sizeof(err)) == 0 &&
	    req->from_domain[0] != '\0' && intake_keys_for(req) != NULL) {
		*out =
		    dkim_bodyhash_new(intake_canon(ks->conf->dkim_sign.bcanon));
		rc = *out != NULL ? 0 : -1;
	}
	dkim_msg_clear(&m);
	free(req);
	return rc;
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
	req->logged = false;
	req->scan = NULL;
	req->keys = NULL;
	req->query = NULL;
	req->spf_query = NULL;
	req->spf = SPF_NONE;
	req->spf_note[0] = '\0';
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
	if (intake_trace_extract(req->msg, req->conf->log.campaign_header,
				 &op->env) != 0) {
		intake_refuse(req, 451,
			      "4.3.0 Temporary failure, try again "
			      "later");
		return;
	}
	if (req->conf->dmarc.check || req->keyset->nkeys > 0 ||
	    req->user != NULL) {
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
	if (!req->conf->dmarc.check) {
		snprintf(req->result, sizeof(req->result), "dmarc=unchecked");
		intake_sign_and_queue(req);
		return;
	}
	if (req->dns == NULL) {
		/* No resolver at all: only the test mode has none (loopback
		 * only, no dns servers of its own; production always has
		 * one).  Neither SPF nor a policy can be had: the check
		 * cannot run, and says so rather than pretend. */
		if (!__atomic_exchange_n(&I.nodns_warned, true,
					 __ATOMIC_RELAXED))
			log_info(
			    "dmarc: no DNS resolver (loopback_only without "
			    "dns servers): the DMARC check is skipped");
		snprintf(req->result, sizeof(req->result),
			 "dmarc=unchecked (no DNS)");
		intake_sign_and_queue(req);
		return;
	}
	/* Strict alignment by the signing domain needs no policy: it passes
	 * whatever the record says. */
	if (req->sign_domain[0] != '\0' &&
	    strcmp(req->sign_domain, req->from_domain) == 0) {
		snprintf(req->result, sizeof(req->result),
			 "dmarc=pass align=dkim p=- (identical domain)");
		intake_sign_and_queue(req);
		return;
	}
	intake_spf_start(req);
}
