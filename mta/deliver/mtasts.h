/*
 * mtasts.h — MTA-STS (RFC 8461): a recipient domain's published policy on
 * whether its MX hosts must be reached over TLS with a certificate valid
 * for a name its policy lists.
 *
 * The policy's TXT record (_mta-sts.DOMAIN) is asked of the scheduler's
 * resolver, its file fetched over HTTPS (https.h: the policy host's
 * addresses come from the same resolver), kept in memory and in the
 * queue's state database for its max_age, and fetched again before it
 * expires.
 *
 * Everything here runs on the scheduler's loop (loop 0), but for the pure
 * functions (parse, match, names) and mtasts_metrics_text (any thread).
 */
#ifndef OUTPOST_MTA_MTASTS_H
#define OUTPOST_MTA_MTASTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct dns_resolver;
struct queue;

enum mtasts_mode { MTASTS_NONE, MTASTS_TESTING, MTASTS_ENFORCE };

/* RFC 8461 limits: an id is 1..32 alphanumerics; max_age at most a year;
 * a policy file of more than 64 KiB is refused. */
#define MTASTS_ID_MAX        32
#define MTASTS_MAX_AGE_MAX_S 31557600u
#define MTASTS_BODY_MAX      65536
#define MTASTS_MX_MAX        64 /* mx: lines kept (more: refused) */

/* A policy as published (the patterns lower case). */
struct mtasts_policy {
	enum mtasts_mode mode;
	char id[MTASTS_ID_MAX + 1]; /* of the TXT record it came with */
	uint32_t max_age_s;
	int64_t fetched_ms, expires_ms; /* Unix ms */
	char **mx;                      /* "mx.example.net", "*.example.net" */
	size_t nmx;
};

/* Why a domain has no policy in force, or what went wrong getting it (RFC
 * 8460's policy failure types). */
enum mtasts_fail {
	MTASTS_OK,          /* a policy, or no TXT record: nothing wrong */
	MTASTS_FETCH_ERROR, /* sts-policy-fetch-error */
	MTASTS_INVALID,     /* sts-policy-invalid */
	MTASTS_WEBPKI,      /* sts-webpki-invalid (the HTTPS certificate) */
};

/* mtasts_fail_name — RFC 8460's name of F ("sts-policy-fetch-error"), or
 * NULL for MTASTS_OK.  Pure. */
const char *mtasts_fail_name(enum mtasts_fail f);
/* mtasts_mode_name — "enforce", "testing", "none".  Pure. */
const char *mtasts_mode_name(enum mtasts_mode m);

/*
 * mtasts_policy_parse — a policy file TEXT (LEN bytes, not NUL-ended) into
 * OUT (cleared first; owns its patterns: mtasts_policy_clear).  Lines end
 * in LF or CRLF; "version: STSv1", "mode", "max_age" and (but for mode
 * none) at least one "mx" are required; other keys are ignored.  0, or -1
 * with ERR (OUT then holds nothing).  Pure.
 */
int mtasts_policy_parse(const char *text, size_t len, struct mtasts_policy *out,
			char *err, size_t errlen);
/* mtasts_policy_clear — free P's patterns (P itself is the caller's). */
void mtasts_policy_clear(struct mtasts_policy *p);
/* mtasts_policy_copy — DST (cleared first) a deep copy of SRC.  0, -1
 * when out of memory (DST then holds nothing). */
int mtasts_policy_copy(struct mtasts_policy *dst,
		       const struct mtasts_policy *src);

/*
 * mtasts_txt_id — the id of an MTA-STS TXT record TXT (LEN bytes):
 * "v=STSv1; id=ID;" (white space around fields allowed, other fields
 * ignored).  1 with ID set when TXT is one, 0 when it is not an MTA-STS
 * record at all (no v=STSv1 first), -1 when it is one but malformed.  Pure.
 */
int mtasts_txt_id(const char *txt, size_t len, char id[MTASTS_ID_MAX + 1]);

/*
 * mtasts_mx_match — does HOST (an MX host name, any case, with or without
 * the final dot) match one of P's mx patterns?  A "*." pattern stands for
 * exactly one leftmost label.  Pure.
 */
bool mtasts_mx_match(const struct mtasts_policy *p, const char *host);

/*
 * mtasts_init — set up on BASE (the scheduler's loop) with its resolver
 * DNS (NULL: every domain has no policy) and queue Q (the cache kept
 * across restarts); policies are fetched with https.h (set up first: its
 * store checks the policy host's certificate).  0, or -1 with ERR.  Main
 * thread, before the loop runs.
 */
int mtasts_init(struct event_base *base, struct dns_resolver *dns,
		struct queue *q, char *err, size_t errlen);
/* mtasts_load — the policies kept in the queue into the cache.  On the
 * loop, at start-up, before the first mtasts_get. */
void mtasts_load(void);
/* mtasts_stop — cancel every lookup and fetch (no callback follows).  On
 * the loop, at shutdown. */
void mtasts_stop(void);
/* mtasts_free — everything.  Main thread, after the loop has ended. */
void mtasts_free(void);

/*
 * The answer for a domain: POL the policy in force (NULL: none; valid
 * during the call only: copy what is kept), FAIL what went wrong on the way
 * (a policy may be in force and a refresh have failed).
 */
typedef void mtasts_cb(const struct mtasts_policy *pol, enum mtasts_fail fail,
		       void *arg);
struct mtasts_query;

/*
 * mtasts_get — the policy of DOMAIN (lower case, A-labels): its TXT record
 * is asked again (the resolver's cache answers within its TTL); a policy
 * cached under the same id is the answer, and is fetched again in the
 * background once half its max_age has passed; a new id, or none cached,
 * waits for the fetch.  CB is never called from within mtasts_get.
 * Returns a handle for mtasts_cancel, or NULL when out of memory (no
 * callback then).
 */
struct mtasts_query *mtasts_get(const char *domain, mtasts_cb *cb, void *arg);
/* mtasts_cancel — Q's callback will not be called.  Q must be pending. */
void mtasts_cancel(struct mtasts_query *q);

/* mtasts_peek — the policy of DOMAIN in the cache, in force or not (NULL:
 * none); valid until the loop turns.  For TLS reports.  On the loop. */
const struct mtasts_policy *mtasts_peek(const char *domain);

/* mtasts_generation — a number (never 0) that changes whenever a fetch
 * brought a policy other than the one cached (a new id): whoever keeps an
 * answer asks again when it has changed.  Any thread. */
uint64_t mtasts_generation(void);

/* mtasts_note_result — one transaction under TLS policy POLICY ("mta-sts"
 * with MODE "testing" or "enforce", or "dane") ended with RESULT
 * ("success" or an RFC 8460 failure type): counted for the metrics
 * (outpost_tls_policy_results_total).  Other policies, or a NULL RESULT,
 * are not counted.  Any thread. */
void mtasts_note_result(const char *policy, const char *mode,
			const char *result);

/* mtasts_metrics_text — the fetches' counters, Prometheus text (a
 * metrics_text_fn).  Any thread. */
size_t mtasts_metrics_text(char *buf, size_t len);

#endif
