/*
 * suppress.c — the suppression list in the daemon (suppress.h): the rule
 * that feeds it from results, the RCPT check, retention, the metrics.
 * Owns: the settings (atomics) and the verdict counters; the entries are
 * the queue's.  Must not: keep, log or hand out an address or identity in
 * clear (hashes only), block (writes are queue ops), or refuse mail
 * because the list cannot be read.
 * Threads: init/configure on main; the rest on any thread.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/observe/evlog.h"
#include "mta/observe/history.h"
#include "mta/observe/suppress.h"

static struct {
	struct queue *q;
	uint8_t *key; /* the delivery log's hash key (sodium_malloc) */
	_Atomic bool enabled, global, drop;
	_Atomic int64_t history_ms; /* 0: entries never end */
	_Atomic uint64_t refused, dropped;
} S;

static uint64_t suppress_purge_user(const char *user, void *arg);
static uint64_t suppress_expire(int64_t older_than_ms, void *arg);

int
suppress_init(struct queue *q, const struct conf *c,
	      const uint8_t hash_key[QUEUE_KEY_BYTES])
{
	static const struct history_store store = { "suppress",
						    suppress_purge_user,
						    suppress_expire, NULL };

	sodium_free(S.key); /* a second init: the tests' */
	if ((S.key = sodium_malloc(QUEUE_KEY_BYTES)) == NULL)
		return -1;
	memcpy(S.key, hash_key, QUEUE_KEY_BYTES);
	sodium_mprotect_readonly(S.key);
	S.q = q;
	suppress_configure(c);
	return history_register(&store);
}

void
suppress_configure(const struct conf *c)
{
	atomic_store(&S.enabled, c->suppress.enabled);
	atomic_store(&S.global, c->suppress.scope == CONF_SUPPRESS_GLOBAL);
	atomic_store(&S.drop, c->suppress.action == CONF_SUPPRESS_DROP);
	atomic_store(&S.history_ms, (int64_t)c->retention.history_ms);
}

bool
suppress_scope_global(void)
{
	return atomic_load(&S.global);
}

/* The delivery log's hash of WORD (what evlog_hash writes: the same key
 * and function, kept here so that the list works without a delivery log)
 * as bytes; -1 before suppress_init. */
static int
suppress_hash(const char *word, uint8_t out[QUEUE_SUPPRESS_HASH_BYTES])
{
	char hex[QUEUE_HASH_HEX_BYTES];
	size_t n;

	if (S.key == NULL)
		return -1;
	queue_addr_hash(S.key, word, hex);
	if (sodium_hex2bin(out, QUEUE_SUPPRESS_HASH_BYTES, hex, strlen(hex),
			   NULL, &n, NULL) != 0 ||
	    n != QUEUE_SUPPRESS_HASH_BYTES)
		return -1;
	return 0;
}

int
suppress_addr_hash(const char *addr, uint8_t out[QUEUE_SUPPRESS_HASH_BYTES])
{
	return suppress_hash(addr, out);
}

void
suppress_scope_hash(const char *identity,
		    uint8_t out[QUEUE_SUPPRESS_HASH_BYTES])
{
	if (identity == NULL || atomic_load(&S.global) ||
	    suppress_hash(identity, out) != 0)
		memset(out, 0, QUEUE_SUPPRESS_HASH_BYTES);
}

/* Is E still in force (younger than retention.history)? */
static bool
suppress_in_force(const struct queue_suppress_entry *e)
{
	int64_t h = atomic_load(&S.history_ms);

	return h == 0 || e->time_ms >= util_wall_ms() - h;
}

int
suppress_get(const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
	     const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
	     struct queue_suppress_entry *out, char *err, size_t errlen)
{
	struct queue_suppress_entry e;
	int rc;

	if (S.q == NULL) {
		(void)snprintf(err, errlen, "no suppression list");
		return -1;
	}
	rc = queue_suppress_get(S.q, scope, rcpt, &e, err, errlen);
	if (rc == 1 && !suppress_in_force(&e))
		rc = 0;
	if (rc == 1 && out != NULL)
		*out = e;
	return rc;
}

enum suppress_verdict
suppress_check(const char *identity, const char *rcpt, struct suppress_hit *hit)
{
	static const uint8_t global[QUEUE_SUPPRESS_HASH_BYTES];
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES], h[QUEUE_SUPPRESS_HASH_BYTES];
	struct queue_suppress_entry e;
	char err[200];
	int rc;

	if (S.q == NULL || !atomic_load(&S.enabled) ||
	    suppress_hash(rcpt, h) != 0)
		return SUPPRESS_PASS;
	rc = suppress_get(global, h, &e, err, sizeof(err));
	if (rc == 0 && !atomic_load(&S.global) && identity != NULL) {
		suppress_scope_hash(identity, scope);
		rc = suppress_get(scope, h, &e, err, sizeof(err));
	}
	if (rc < 0) {
		log_warnx("suppression list: %s (RCPT let through)", err);
		return SUPPRESS_PASS;
	}
	if (rc == 0)
		return SUPPRESS_PASS;
	if (hit != NULL) {
		hit->reason = e.reason;
		hit->time_ms = e.time_ms;
		hit->global = sodium_is_zero(e.scope, sizeof(e.scope));
	}
	if (atomic_load(&S.drop)) {
		atomic_fetch_add(&S.dropped, 1);
		return SUPPRESS_DROP;
	}
	atomic_fetch_add(&S.refused, 1);
	return SUPPRESS_REFUSE;
}

/* Set once at start-up (before any thread could change the list). */
static suppress_share_fn *suppress_share;

void
suppress_share_hook(suppress_share_fn *fn)
{
	suppress_share = fn;
}

int
suppress_apply(const struct queue_suppress_entry *e, bool removed)
{
	if (S.q == NULL)
		return -1;
	return removed ? queue_suppress_del(S.q, e->scope, e->rcpt, NULL, NULL)
		       : queue_suppress_put(S.q, e, NULL, NULL);
}

int
suppress_add(const struct queue_suppress_entry *e, queue_suppress_done_fn *done,
	     void *arg)
{
	if (S.q == NULL)
		return -1;
	if (queue_suppress_put(S.q, e, done, arg) != 0)
		return -1;
	if (suppress_share != NULL)
		suppress_share(e, false);
	return 0;
}

int
suppress_remove(const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		queue_suppress_done_fn *done, void *arg)
{
	struct queue_suppress_entry e = { .reason = QSR_OPERATOR };

	if (S.q == NULL)
		return -1;
	if (queue_suppress_del(S.q, scope, rcpt, done, arg) != 0)
		return -1;
	if (suppress_share != NULL) {
		memcpy(e.scope, scope, sizeof(e.scope));
		memcpy(e.rcpt, rcpt, sizeof(e.rcpt));
		e.time_ms = util_wall_ms();
		suppress_share(&e, true);
	}
	return 0;
}

int
suppress_walk(const uint8_t *scope, queue_suppress_fn *fn, void *arg, char *err,
	      size_t errlen)
{
	if (S.q == NULL) {
		(void)snprintf(err, errlen, "no suppression list");
		return -1;
	}
	return queue_suppress_walk(S.q, scope, fn, arg, err, errlen);
}

/* RCPT of IDENTITY goes on the list for REASON, and the delivery log says
 * so (an "admin" event of the daemon's own, hashed, with the id of the
 * message that caused it). */
static int
suppress_auto_add(const char *identity, const char *rcpt, uint64_t id,
		  enum queue_suppress_reason reason)
{
	struct queue_suppress_entry e = { .reason = reason };
	struct evlog_event ev = { .type = EV_ADMIN };

	if (S.q == NULL || !atomic_load(&S.enabled) ||
	    suppress_hash(rcpt, e.rcpt) != 0)
		return 0;
	suppress_scope_hash(identity, e.scope);
	e.time_ms = util_wall_ms();
	if (queue_suppress_put(S.q, &e, NULL, NULL) != 0)
		return -1;
	if (suppress_share != NULL)
		suppress_share(&e, false);
	ev.nrcpts = ev.attempt = ev.count = -1;
	ev.queue_time_ms = -1;
	ev.tls_verified = -1;
	ev.id = id;
	ev.rcpt = rcpt;
	ev.user = identity;
	ev.admin = "outpostd";
	ev.command = "suppress-add";
	ev.reason = queue_suppress_reason_name(reason);
	evlog_write(&ev);
	return 0;
}

int
suppress_note_result(const char *identity, const char *rcpt, uint64_t id,
		     bool bounced, enum conf_bounce_category category)
{
	if (!bounced)
		return 0;
	if (category == CONF_BC_BAD_MAILBOX)
		return suppress_auto_add(identity, rcpt, id, QSR_BAD_MAILBOX);
	if (category == CONF_BC_BAD_DOMAIN)
		return suppress_auto_add(identity, rcpt, id, QSR_BAD_DOMAIN);
	return 0;
}

int
suppress_complaint(const char *identity, const char *rcpt, uint64_t id)
{
	return suppress_auto_add(identity, rcpt, id, QSR_COMPLAINT);
}

void
suppress_event(const char *identity, const char *rcpt, const char *session,
	       const char *client, const char *action,
	       const struct suppress_hit *hit)
{
	struct evlog_event ev = { .type = EV_SUPPRESSED };

	ev.nrcpts = ev.attempt = ev.count = -1;
	ev.queue_time_ms = -1;
	ev.tls_verified = -1;
	ev.rcpt = rcpt;
	ev.user = identity;
	ev.session = session;
	ev.client = client;
	ev.stage = "rcpt";
	ev.command = action;
	ev.code = strcmp(action, "refused") == 0 ? 550 : 250;
	ev.reason = queue_suppress_reason_name(hit->reason);
	evlog_write(&ev);
}

/* history_store: everything on USER's list (its scope). */
static uint64_t
suppress_purge_user(const char *user, void *arg)
{
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES];
	char err[200];
	int64_t n;

	(void)arg;
	if (S.q == NULL || suppress_hash(user, scope) != 0)
		return 0;
	if ((n = queue_suppress_drop(S.q, scope, INT64_MAX, err, sizeof(err))) <
	    0) {
		log_warnx("suppression list: purge: %s", err);
		return 0;
	}
	return (uint64_t)n;
}

/* history_store: entries added before OLDER_THAN_MS, every scope. */
static uint64_t
suppress_expire(int64_t older_than_ms, void *arg)
{
	char err[200];
	int64_t n;

	(void)arg;
	if (S.q == NULL)
		return 0;
	if ((n = queue_suppress_drop(S.q, NULL, older_than_ms, err,
				     sizeof(err))) < 0) {
		log_warnx("suppression list: expiry: %s", err);
		return 0;
	}
	return (uint64_t)n;
}

size_t
suppress_metrics_text(char *buf, size_t len)
{
	int n;

	n = snprintf(
	    buf, len,
	    "# HELP outpost_suppressed_total Recipients refused or dropped "
	    "at RCPT because suppressed.\n"
	    "# TYPE outpost_suppressed_total counter\n"
	    "outpost_suppressed_total{action=\"refuse\"} %" PRIu64 "\n"
	    "outpost_suppressed_total{action=\"drop\"} %" PRIu64 "\n"
	    "# HELP outpost_suppression_entries Entries on the suppression "
	    "list (every scope).\n"
	    "# TYPE outpost_suppression_entries gauge\n"
	    "outpost_suppression_entries %" PRIu64 "\n",
	    atomic_load(&S.refused), atomic_load(&S.dropped),
	    S.q != NULL ? queue_suppress_count(S.q) : 0);
	return n < 0 ? 0 : (size_t)n;
}
