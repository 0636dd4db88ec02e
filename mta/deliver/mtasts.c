/*
 * mtasts.c — MTA-STS policies (RFC 8461): TXT lookup, the policy fetched
 * over HTTPS (https.c), the cache (memory, and the queue's state database
 * for restarts), its refresh, and the pure parse and match.
 *
 * Owns: the cache entries, their fetches and the waiting queries.
 * Must not: answer a query from within mtasts_get.
 * Thread: the scheduler's loop, but for the pure functions,
 * mtasts_note_result and mtasts_metrics_text.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/deliver/https.h"
#include "mta/deliver/mtasts.h"
#include "queue/queue.h"

/* a failed fetch is not tried again sooner (the TXT still says so) */
#define MTASTS_FAIL_HOLD_MS  300000
#define MTASTS_SWEEP_MIN_MS  1000
#define MTASTS_SWEEP_MAX_MS  3600000
#define MTASTS_STATE_VERSION 1

/* The TLS results counted per mode (RFC 8460's session failure types). */
static const char *const mtasts_results[] = {
	"success",
	"starttls-not-supported",
	"certificate-host-mismatch",
	"certificate-expired",
	"certificate-not-trusted",
	"validation-failure",
	"dnssec-invalid",
	"tlsa-invalid",
	"dane-required",
};
#define MTASTS_RESULTS (sizeof(mtasts_results) / sizeof(mtasts_results[0]))

/* Pure: names, parse, match ------------------------------------------- */

const char *
mtasts_fail_name(enum mtasts_fail f)
{
	switch (f) {
	case MTASTS_FETCH_ERROR:
		return "sts-policy-fetch-error";
	case MTASTS_INVALID:
		return "sts-policy-invalid";
	case MTASTS_WEBPKI:
		return "sts-webpki-invalid";
	case MTASTS_OK:
		break;
	}
	return NULL;
}

const char *
mtasts_mode_name(enum mtasts_mode m)
{
	return m == MTASTS_ENFORCE   ? "enforce"
	       : m == MTASTS_TESTING ? "testing"
				     : "none";
}

void
mtasts_policy_clear(struct mtasts_policy *p)
{
	size_t i;

	for (i = 0; i < p->nmx; i++)
		free(p->mx[i]);
	free(p->mx);
	memset(p, 0, sizeof(*p));
}

int
mtasts_policy_copy(struct mtasts_policy *dst, const struct mtasts_policy *src)
{
	size_t i;

	*dst = *src;
	dst->mx = NULL;
	dst->nmx = 0;
	if (src->nmx == 0)
		return 0;
	if ((dst->mx = calloc(src->nmx, sizeof(*dst->mx))) == NULL)
		goto fail;
	for (i = 0; i < src->nmx; i++) {
		if ((dst->mx[i] = strdup(src->mx[i])) == NULL)
			goto fail;
		dst->nmx++;
	}
	return 0;
fail:
	mtasts_policy_clear(dst);
	return -1;
}

/* Is S (N bytes) a host name pattern: LDH labels of 1..63, optionally led
 * by "*." (one wildcard label, leftmost)?  Lower-cases it in place. */
static bool
mtasts_pattern_ok(char *s, size_t n)
{
	size_t i = 0, label = 0;

	if (n >= 2 && s[0] == '*' && s[1] == '.')
		i = 2;
	if (i == n || n > 253)
		return false;
	for (; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(ch) && ch != '-')
			return false;
		if (++label > 63)
			return false;
		s[i] = (char)tolower(ch);
	}
	return label > 0;
}

static bool
mtasts_wsp(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* One "key: value" line (LEN bytes, no line end) into P; SEEN marks the
 * single keys already taken (the first one counts). */
static int
mtasts_parse_line(const char *line, size_t len, struct mtasts_policy *p,
		  unsigned *seen, char *err, size_t errlen)
{
	const char *colon = memchr(line, ':', len);
	const char *v;
	size_t klen, vlen;
	char **mx;

	if (colon == NULL) {
		snprintf(err, errlen, "a line without \"key:\"");
		return -1;
	}
	klen = (size_t)(colon - line);
	v = colon + 1;
	vlen = len - klen - 1;
	while (vlen > 0 && mtasts_wsp(*v))
		v++, vlen--;
	while (vlen > 0 && mtasts_wsp(v[vlen - 1]))
		vlen--;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(line, k, klen) == 0)
	if (KEY("version")) {
		if (*seen & 1)
			return 0;
		*seen |= 1;
		if (vlen != 5 || memcmp(v, "STSv1", 5) != 0) {
			snprintf(err, errlen, "version is not STSv1");
			return -1;
		}
	} else if (KEY("mode")) {
		if (*seen & 2)
			return 0;
		*seen |= 2;
		if (vlen == 7 && memcmp(v, "enforce", 7) == 0)
			p->mode = MTASTS_ENFORCE;
		else if (vlen == 7 && memcmp(v, "testing", 7) == 0)
			p->mode = MTASTS_TESTING;
		else if (vlen == 4 && memcmp(v, "none", 4) == 0)
			p->mode = MTASTS_NONE;
		else {
			snprintf(err, errlen,
				 "mode is not enforce, testing "
				 "or none");
			return -1;
		}
	} else if (KEY("max_age")) {
		uint64_t n = 0;
		size_t i;

		if (*seen & 4)
			return 0;
		*seen |= 4;
		for (i = 0; i < vlen && i < 11; i++) {
			if (v[i] < '0' || v[i] > '9')
				break;
			n = n * 10 + (uint64_t)(v[i] - '0');
		}
		if (vlen == 0 || i != vlen || n > MTASTS_MAX_AGE_MAX_S) {
			snprintf(err, errlen,
				 "max_age is not a number of seconds up to "
				 "%u",
				 MTASTS_MAX_AGE_MAX_S);
			return -1;
		}
		p->max_age_s = (uint32_t)n;
	} else if (KEY("mx")) {
		char *pat;

		if (p->nmx >= MTASTS_MX_MAX) {
			snprintf(err, errlen, "more than %d mx patterns",
				 MTASTS_MX_MAX);
			return -1;
		}
		/* not strndup: the policy as fetched has no NUL to stop a
		 * string read, and V + VLEN may be its very end */
		if ((pat = malloc(vlen + 1)) != NULL) {
			memcpy(pat, v, vlen);
			pat[vlen] = '\0';
		}
		if (pat == NULL || !mtasts_pattern_ok(pat, vlen)) {
			free(pat);
			snprintf(err, errlen,
				 "an mx pattern is not a host "
				 "name");
			return -1;
		}
		if ((mx = realloc(p->mx, (p->nmx + 1) * sizeof(*mx))) == NULL) {
			free(pat);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		p->mx = mx;
		p->mx[p->nmx++] = pat;
	}
#undef KEY
	return 0;
}

int
mtasts_policy_parse(const char *text, size_t len, struct mtasts_policy *out,
		    char *err, size_t errlen)
{
	size_t off = 0;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		size_t n = end - off;

		if (n > 0 && text[off + n - 1] == '\r')
			n--;
		if (memchr(text + off, '\0', n) != NULL) {
			snprintf(err, errlen, "a NUL byte");
			goto fail;
		}
		if (n > 0 && mtasts_parse_line(text + off, n, out, &seen, err,
					       errlen) != 0)
			goto fail;
		off = end + 1;
	}
	if (!(seen & 1) || !(seen & 2) || !(seen & 4)) {
		snprintf(err, errlen, "%s missing",
			 !(seen & 1)   ? "version"
			 : !(seen & 2) ? "mode"
				       : "max_age");
		goto fail;
	}
	if (out->mode != MTASTS_NONE && out->nmx == 0) {
		snprintf(err, errlen, "no mx pattern");
		goto fail;
	}
	return 0;
fail:
	mtasts_policy_clear(out);
	return -1;
}

int
mtasts_txt_id(const char *txt, size_t len, char id[MTASTS_ID_MAX + 1])
{
	size_t off = 0, field = 0;
	bool have_id = false;

	while (off < len) {
		const char *semi = memchr(txt + off, ';', len - off);
		size_t end = semi != NULL ? (size_t)(semi - txt) : len;
		const char *f = txt + off;
		size_t n = end - off;

		while (n > 0 && mtasts_wsp(*f))
			f++, n--;
		while (n > 0 && mtasts_wsp(f[n - 1]))
			n--;
		off = end + 1;
		if (n == 0 && semi == NULL)
			break; /* a final ";" and blanks */
		if (field++ == 0) {
			if (n != 7 || memcmp(f, "v=STSv1", 7) != 0)
				return 0;
			continue;
		}
		if (n > 3 && memcmp(f, "id=", 3) == 0 && !have_id) {
			size_t i;

			if (n - 3 > MTASTS_ID_MAX)
				return -1;
			for (i = 3; i < n; i++)
				if (!isalnum((unsigned char)f[i]))
					return -1;
			memcpy(id, f + 3, n - 3);
			id[n - 3] = '\0';
			have_id = true;
		}
	}
	if (field == 0)
		return 0;
	return have_id ? 1 : -1;
}

bool
mtasts_mx_match(const struct mtasts_policy *p, const char *host)
{
	char h[256];
	size_t n, i;

	n = strlen(host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(h))
		return false;
	for (i = 0; i < n; i++)
		h[i] = (char)tolower((unsigned char)host[i]);
	h[n] = '\0';
	for (i = 0; i < p->nmx; i++) {
		const char *pat = p->mx[i], *dot;

		if (pat[0] == '*' && pat[1] == '.') {
			/* exactly one label before the pattern's rest */
			dot = strchr(h, '.');
			if (dot != NULL && dot != h &&
			    strcmp(dot + 1, pat + 2) == 0)
				return true;
		} else if (strcmp(h, pat) == 0)
			return true;
	}
	return false;
}

/* The cache and its fetches ------------------------------------------- */

struct mtasts_query {
	struct mtasts_entry *e;
	mtasts_cb *cb;
	void *arg;
	struct mtasts_query *next;
};

enum mtasts_step { MS_IDLE, MS_TXT, MS_FETCH };

struct mtasts_entry {
	char *domain;
	struct mtasts_policy pol; /* in force when have */
	bool have;
	enum mtasts_step step;
	bool waiting_fetch; /* the queries wait for this fetch (no policy to
			       answer with meanwhile) */
	char txt_id[MTASTS_ID_MAX + 1]; /* the id being fetched */
	struct dns_query *q;            /* MS_TXT */
	struct https_xfer *x;           /* MS_FETCH */
	int64_t failed_ms;            /* the last fetch failed then (0: none) */
	enum mtasts_fail fail;        /* … and how */
	struct mtasts_query *queries; /* waiting for an answer */
};

static struct {
	struct event_base *base;
	struct dns_resolver *dns;
	struct queue *queue;
	bool stopping;
	uint64_t generation;        /* mtasts_generation */
	struct htab entries;        /* domain -> struct mtasts_entry */
	struct mtasts_query *ready; /* answered on the next turn */
	struct event *ready_ev;
	struct event *sweep; /* refreshes and forgets: mtasts_sweep_cb */
	/* counters (mtasts_metrics_text reads them from any thread) */
	_Atomic uint64_t n_fetch_ok, n_fetch_error, n_invalid, n_webpki;
	_Atomic uint64_t n_cached;
	/* mta-sts testing, mta-sts enforce, dane */
	_Atomic uint64_t n_result[3][MTASTS_RESULTS];
} ms;

/* Every waiting query of E gets POL (or none) and FAIL; E forgets them. */
static void
mtasts_answer(struct mtasts_entry *e, const struct mtasts_policy *pol,
	      enum mtasts_fail fail)
{
	struct mtasts_query *q, *next;

	q = e->queries;
	e->queries = NULL;
	for (; q != NULL; q = next) {
		next = q->next;
		q->cb(pol, fail, q->arg);
		free(q);
	}
}

/* E's policy in force now (NULL: none). */
static const struct mtasts_policy *
mtasts_in_force(const struct mtasts_entry *e)
{
	if (!e->have || e->pol.expires_ms <= util_wall_ms())
		return NULL;
	return &e->pol;
}

/* Keep E's policy across a restart: "state" record domain NUL id NUL
 * mode(1) max_age(4) fetched_ms(8) then each pattern NUL-ended. */
static void
mtasts_persist(const struct mtasts_entry *e)
{
	uint8_t buf[QUEUE_STATE_DATA_MAX];
	size_t off = 0, i, n;
	uint64_t f = (uint64_t)e->pol.fetched_ms;
	uint32_t age = e->pol.max_age_s;

#define PUT(p, l)                                                              \
	do {                                                                   \
		if (off + (l) > sizeof(buf))                                   \
			goto big;                                              \
		memcpy(buf + off, (p), (l));                                   \
		off += (l);                                                    \
	} while (0)
	buf[off++] = MTASTS_STATE_VERSION;
	PUT(e->domain, strlen(e->domain) + 1);
	PUT(e->pol.id, strlen(e->pol.id) + 1);
	if (off + 13 > sizeof(buf))
		goto big;
	buf[off++] = (uint8_t)e->pol.mode;
	for (i = 0; i < 4; i++)
		buf[off++] = (uint8_t)(age >> (24 - 8 * i));
	for (i = 0; i < 8; i++)
		buf[off++] = (uint8_t)(f >> (56 - 8 * i));
	for (i = 0; i < e->pol.nmx; i++) {
		n = strlen(e->pol.mx[i]) + 1;
		PUT(e->pol.mx[i], n);
	}
#undef PUT
	if (queue_state_put(ms.queue, QS_MTASTS, e->domain, strlen(e->domain),
			    e->pol.expires_ms, buf, off) != 0)
		log_warnx("mta-sts %s: the policy cannot be kept across a "
			  "restart (out of memory)",
			  e->domain);
	return;
big:
	log_warnx("mta-sts %s: the policy is too large to keep across a "
		  "restart (%zu mx patterns)",
		  e->domain, e->pol.nmx);
}

static struct mtasts_entry *
mtasts_entry_get(const char *domain)
{
	struct mtasts_entry *e = htab_get(&ms.entries, domain);

	if (e != NULL)
		return e;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if ((e->domain = strdup(domain)) == NULL ||
	    htab_put(&ms.entries, e->domain, e) != 0) {
		free(e->domain);
		free(e);
		return NULL;
	}
	return e;
}

static void mtasts_sweep_arm(void);
static bool mtasts_ready_holds(const struct mtasts_entry *e);
static void mtasts_entry_free(struct mtasts_entry *e);

/* One record of the state database back into the cache. */
static int
mtasts_load_one(int64_t until_ms, const uint8_t *d, size_t len, void *arg)
{
	struct mtasts_policy pol;
	struct mtasts_entry *e;
	const char *domain, *id;
	size_t off = 1, n, i;
	uint64_t f = 0;
	uint32_t age = 0;
	char **mx;

	(void)arg;
	memset(&pol, 0, sizeof(pol));
	if (len < 1 || d[0] != MTASTS_STATE_VERSION)
		return 0;
#define STR(s)                                                                 \
	do {                                                                   \
		const uint8_t *z = memchr(d + off, '\0', len - off);           \
		if (z == NULL)                                                 \
			goto bad;                                              \
		(s) = (const char *)d + off;                                   \
		off = (size_t)(z - d) + 1;                                     \
	} while (0)
	STR(domain);
	STR(id);
	if (len - off < 13 || strlen(id) > MTASTS_ID_MAX || d[off] > 2)
		goto bad;
	pol.mode = (enum mtasts_mode)d[off++];
	for (i = 0; i < 4; i++)
		age = age << 8 | d[off++];
	for (i = 0; i < 8; i++)
		f = f << 8 | d[off++];
	while (off < len) {
		const char *pat;

		STR(pat);
		n = strlen(pat);
		if ((mx = realloc(pol.mx, (pol.nmx + 1) * sizeof(*mx))) == NULL)
			goto bad;
		pol.mx = mx;
		if ((pol.mx[pol.nmx] = strndup(pat, n)) == NULL)
			goto bad;
		pol.nmx++;
	}
#undef STR
	memcpy(pol.id, id, strlen(id) + 1);
	pol.max_age_s = age;
	pol.fetched_ms = (int64_t)f;
	pol.expires_ms = until_ms;
	if ((e = mtasts_entry_get(domain)) == NULL)
		goto bad;
	mtasts_policy_clear(&e->pol);
	e->pol = pol;
	e->have = true;
	atomic_fetch_add(&ms.n_cached, 1);
	return 0;
bad:
	mtasts_policy_clear(&pol);
	return 0;
}

void
mtasts_load(void)
{
	uint64_t dropped = 0;
	char err[256];

	if (ms.queue == NULL)
		return;
	if (queue_state_load(ms.queue, QS_MTASTS, util_wall_ms(),
			     mtasts_load_one, NULL, &dropped, err,
			     sizeof(err)) != 0)
		log_warnx("mta-sts: the kept policies cannot be read: %s", err);
	mtasts_sweep_arm();
	if (atomic_load(&ms.n_cached) > 0)
		log_info("mta-sts: %" PRIu64 " kept polic%s loaded",
			 atomic_load(&ms.n_cached),
			 atomic_load(&ms.n_cached) == 1 ? "y" : "ies");
}

/* Fetching --------------------------------------------------------- */

/* E's fetch failed (FAIL, WHY): the cached policy, if still in force,
 * stays the answer (RFC 8461 section 5.1); else there is none. */
static void
mtasts_fetch_failed(struct mtasts_entry *e, enum mtasts_fail fail,
		    const char *why)
{
	char esc[300];

	log_info("mta-sts %s: policy fetch failed (%s): %s", e->domain,
		 mtasts_fail_name(fail),
		 log_escape(esc, sizeof(esc), why, strlen(why)));
	atomic_fetch_add(fail == MTASTS_INVALID  ? &ms.n_invalid
			 : fail == MTASTS_WEBPKI ? &ms.n_webpki
						 : &ms.n_fetch_error,
			 1);
	e->failed_ms = util_wall_ms();
	e->fail = fail;
	e->x = NULL;
	e->step = MS_IDLE;
	mtasts_sweep_arm();
	mtasts_answer(e, mtasts_in_force(e), fail);
}

/* The policy host answered: judge the answer and keep the policy. */
static void
mtasts_fetched(const struct https_response *r, void *arg)
{
	struct mtasts_entry *e = arg;
	struct mtasts_policy pol;
	char why[300];
	int64_t now = util_wall_ms();

	if (r->fail != HTTPS_OK) {
		mtasts_fetch_failed(e,
				    r->fail == HTTPS_TLS ? MTASTS_WEBPKI
							 : MTASTS_FETCH_ERROR,
				    r->err);
		return;
	}
	if (r->status != 200) {
		snprintf(why, sizeof(why), "HTTP status %ld", r->status);
		mtasts_fetch_failed(e, MTASTS_FETCH_ERROR, why);
		return;
	}
	/* RFC 8461 section 3.3: the media type is text/plain. */
	if (r->ctype == NULL || strncasecmp(r->ctype, "text/plain", 10) != 0 ||
	    (r->ctype[10] != '\0' && r->ctype[10] != ';' &&
	     r->ctype[10] != ' ')) {
		snprintf(why, sizeof(why), "media type %s, not text/plain",
			 r->ctype != NULL ? r->ctype : "(none)");
		mtasts_fetch_failed(e, MTASTS_INVALID, why);
		return;
	}
	if (mtasts_policy_parse(r->body, r->len, &pol, why, sizeof(why)) != 0) {
		mtasts_fetch_failed(e, MTASTS_INVALID, why);
		return;
	}
	memcpy(pol.id, e->txt_id, sizeof(pol.id));
	if (!e->have || strcmp(e->pol.id, pol.id) != 0)
		/* answers given before are out of date (shards read it) */
		__atomic_add_fetch(&ms.generation, 1, __ATOMIC_RELAXED);
	pol.fetched_ms = now;
	pol.expires_ms = now + (int64_t)pol.max_age_s * 1000;
	mtasts_policy_clear(&e->pol);
	e->pol = pol;
	e->have = true;
	e->failed_ms = 0;
	e->fail = MTASTS_OK;
	e->x = NULL;
	e->step = MS_IDLE;
	atomic_fetch_add(&ms.n_fetch_ok, 1);
	log_info("mta-sts %s: policy id %s, mode %s, max_age %" PRIu32
		 " s, %zu mx pattern%s",
		 e->domain, pol.id, mtasts_mode_name(pol.mode), pol.max_age_s,
		 pol.nmx, pol.nmx == 1 ? "" : "s");
	mtasts_persist(e);
	mtasts_sweep_arm();
	mtasts_answer(e, mtasts_in_force(e), MTASTS_OK);
}

/* Fetch E's policy (for the TXT id ID).  WAIT: its queries wait for it. */
static void
mtasts_fetch(struct mtasts_entry *e, const char *id, bool wait)
{
	struct https_request req;
	char url[400], what[300];

	memcpy(e->txt_id, id, sizeof(e->txt_id));
	e->waiting_fetch = wait;
	snprintf(url, sizeof(url), "https://mta-sts.%s/.well-known/mta-sts.txt",
		 e->domain);
	snprintf(what, sizeof(what), "mta-sts %s", e->domain);
	memset(&req, 0, sizeof(req));
	req.url = url;
	req.max_response = MTASTS_BODY_MAX;
	req.what = what;
	e->step = MS_FETCH;
	if ((e->x = https_start(&req, mtasts_fetched, e)) == NULL)
		mtasts_fetch_failed(e, MTASTS_FETCH_ERROR,
				    "cannot start the request (out of memory)");
}

static void
mtasts_txt_cb(const struct dns_txt_reply *r, void *arg)
{
	struct mtasts_entry *e = arg;
	const struct mtasts_policy *pol;
	char id[MTASTS_ID_MAX + 1], one[MTASTS_ID_MAX + 1];
	int64_t now = util_wall_ms();
	size_t i;
	int found = 0;

	e->q = NULL;
	e->step = MS_IDLE;
	pol = mtasts_in_force(e);
	/* Exactly one MTA-STS record, or none at all (RFC 8461 3.1: more
	 * than one, or a malformed one, is as none). */
	for (i = 0; r->result == DNS_OK && i < r->ntxts; i++) {
		int k = mtasts_txt_id(r->txts[i], r->lens[i], one);

		if (k == 0)
			continue;
		if (k < 0 || found++ > 0) {
			found = -1;
			break;
		}
		memcpy(id, one, sizeof(id));
	}
	if (found != 1) {
		/* No (usable) record: a policy still in force is kept, else
		 * there is none (section 5.1). */
		mtasts_answer(e, pol, MTASTS_OK);
		/* Nothing to remember of a domain without a policy (a
		 * campaign to a million domains must not keep a million
		 * entries): forgotten now, unless its answer is still on the
		 * way to a query or a new lookup began. */
		if (!e->have && e->failed_ms == 0 && e->step == MS_IDLE &&
		    e->queries == NULL && !mtasts_ready_holds(e))
			mtasts_entry_free(e);
		return;
	}
	if (pol != NULL && strcmp(pol->id, id) == 0) {
		mtasts_answer(e, pol, MTASTS_OK);
		/* Refreshed before it expires: once half its life is gone. */
		if (now - pol->fetched_ms >= (int64_t)pol->max_age_s * 500 &&
		    now - e->failed_ms >= MTASTS_FAIL_HOLD_MS)
			mtasts_fetch(e, id, false);
		return;
	}
	if (e->failed_ms != 0 && now - e->failed_ms < MTASTS_FAIL_HOLD_MS) {
		/* It failed a moment ago: not again for every message. */
		mtasts_answer(e, pol, e->fail);
		return;
	}
	if (pol != NULL) {
		/* A new id: the old policy serves until the new one is in. */
		mtasts_answer(e, pol, MTASTS_OK);
		mtasts_fetch(e, id, false);
		return;
	}
	mtasts_fetch(e, id, true);
}

/* When E needs the sweep next: its policy's half-life (then it is fetched
 * again), but not before a failed fetch's hold is over; INT64_MAX when it
 * has nothing to refresh. */
static int64_t
mtasts_refresh_at(const struct mtasts_entry *e)
{
	int64_t at;

	if (!e->have)
		return INT64_MAX;
	at = e->pol.fetched_ms + (int64_t)e->pol.max_age_s * 500;
	if (e->failed_ms != 0 && at < e->failed_ms + MTASTS_FAIL_HOLD_MS)
		at = e->failed_ms + MTASTS_FAIL_HOLD_MS;
	return at;
}

static void
mtasts_sweep_arm(void)
{
	struct htab_entry *he;
	int64_t now = util_wall_ms(), next = now + MTASTS_SWEEP_MAX_MS;
	struct timeval tv;
	size_t it;

	for (he = htab_first(&ms.entries, &it); he != NULL;
	     he = htab_next(&ms.entries, he, &it)) {
		int64_t at = mtasts_refresh_at(he->value);

		if (at < next)
			next = at;
	}
	if (next < now + MTASTS_SWEEP_MIN_MS)
		next = now + MTASTS_SWEEP_MIN_MS;
	event_del(ms.sweep);
	if (ms.stopping)
		return;
	tv = util_ms_timeval(next - now);
	evtimer_add(ms.sweep, &tv);
}

/* Is a query answered on the next turn about E (so E must stay)? */
static bool
mtasts_ready_holds(const struct mtasts_entry *e)
{
	const struct mtasts_query *q;

	for (q = ms.ready; q != NULL; q = q->next)
		if (q->e == e)
			return true;
	return false;
}

static void
mtasts_entry_free(struct mtasts_entry *e)
{
	htab_del(&ms.entries, e->domain);
	mtasts_policy_clear(&e->pol);
	free(e->domain);
	free(e);
}

/*
 * The sweep: a policy past its half-life is refreshed (RFC 8461 section
 * 5.1: before it expires, whether or not mail goes to the domain), by its
 * TXT record first (a new id, or none, decides as for a delivery); an
 * entry with nothing in force and nothing under way is forgotten, so that
 * the cache holds the domains that have a policy.
 */
static void
mtasts_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct htab_entry *he, *next;
	int64_t now = util_wall_ms();
	char name[300];
	size_t it;

	(void)fd;
	(void)what;
	(void)arg;
	for (he = htab_first(&ms.entries, &it); he != NULL; he = next) {
		struct mtasts_entry *e = he->value;

		next = htab_next(&ms.entries, he, &it);
		if (e->step != MS_IDLE || e->queries != NULL ||
		    mtasts_ready_holds(e))
			continue;
		if (mtasts_in_force(e) == NULL) {
			if (e->failed_ms == 0 ||
			    now - e->failed_ms >= MTASTS_FAIL_HOLD_MS)
				mtasts_entry_free(e);
			continue;
		}
		if (mtasts_refresh_at(e) > now || ms.dns == NULL)
			continue;
		snprintf(name, sizeof(name), "_mta-sts.%s", e->domain);
		e->step = MS_TXT;
		e->q = dns_txt_lookup(ms.dns, name, mtasts_txt_cb, e);
	}
	mtasts_sweep_arm();
}

/* Queries answered from what is known, on the next loop turn (never
 * inline): each gets its entry's policy in force. */
static void
mtasts_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mtasts_query *q;

	(void)fd;
	(void)what;
	(void)arg;
	while ((q = ms.ready) != NULL) {
		ms.ready = q->next;
		q->cb(mtasts_in_force(q->e), q->e->fail, q->arg);
		free(q);
	}
}

struct mtasts_query *
mtasts_get(const char *domain, mtasts_cb *cb, void *arg)
{
	struct mtasts_entry *e;
	struct mtasts_query *q;
	char name[300];

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((e = mtasts_entry_get(domain)) == NULL) {
		free(q);
		return NULL;
	}
	q->e = e;
	q->cb = cb;
	q->arg = arg;
	if (e->step == MS_TXT || (e->step != MS_IDLE && e->waiting_fetch)) {
		/* a lookup or a fetch that answers is under way */
		q->next = e->queries;
		e->queries = q;
		return q;
	}
	if (e->step != MS_IDLE || ms.dns == NULL || ms.stopping) {
		/* A background refresh (the policy in force answers), or no
		 * resolver (none does). */
		q->next = ms.ready;
		ms.ready = q;
		event_active(ms.ready_ev, EV_TIMEOUT, 0);
		return q;
	}
	q->next = e->queries;
	e->queries = q;
	snprintf(name, sizeof(name), "_mta-sts.%s", domain);
	e->step = MS_TXT;
	e->q = dns_txt_lookup(ms.dns, name, mtasts_txt_cb, e);
	return q;
}

const struct mtasts_policy *
mtasts_peek(const char *domain)
{
	const struct mtasts_entry *e;

	if (ms.base == NULL || (e = htab_get(&ms.entries, domain)) == NULL ||
	    !e->have)
		return NULL;
	return &e->pol;
}

uint64_t
mtasts_generation(void)
{
	return __atomic_load_n(&ms.generation, __ATOMIC_RELAXED);
}

static bool
mtasts_unlink(struct mtasts_query **head, struct mtasts_query *q)
{
	for (; *head != NULL; head = &(*head)->next)
		if (*head == q) {
			*head = q->next;
			return true;
		}
	return false;
}

void
mtasts_cancel(struct mtasts_query *q)
{
	if (!mtasts_unlink(&q->e->queries, q))
		mtasts_unlink(&ms.ready, q);
	free(q);
}

/* Set-up and teardown ---------------------------------------------------- */

int
mtasts_init(struct event_base *base, struct dns_resolver *dns, struct queue *q,
	    char *err, size_t errlen)
{
	memset(&ms, 0, sizeof(ms));
	ms.base = base;
	ms.dns = dns;
	ms.queue = q;
	ms.generation = 1;
	if (htab_init(&ms.entries) != 0 ||
	    (ms.ready_ev = event_new(base, -1, 0, mtasts_ready_cb, NULL)) ==
		NULL ||
	    (ms.sweep = evtimer_new(base, mtasts_sweep_cb, NULL)) == NULL) {
		snprintf(err, errlen, "mta-sts: out of memory");
		return -1;
	}
	return 0;
}

void
mtasts_stop(void)
{
	struct htab_entry *he;
	struct mtasts_query *q;
	size_t it;

	ms.stopping = true;
	for (he = htab_first(&ms.entries, &it); he != NULL;
	     he = htab_next(&ms.entries, he, &it)) {
		struct mtasts_entry *e = he->value;

		if (e->q != NULL)
			dns_cancel(e->q);
		if (e->x != NULL)
			https_cancel(e->x);
		e->q = NULL;
		e->x = NULL;
		e->step = MS_IDLE;
		while ((q = e->queries) != NULL) {
			e->queries = q->next;
			free(q);
		}
	}
	while ((q = ms.ready) != NULL) {
		ms.ready = q->next;
		free(q);
	}
	if (ms.sweep != NULL)
		evtimer_del(ms.sweep);
}

void
mtasts_free(void)
{
	struct htab_entry *he;
	size_t it;

	if (ms.base == NULL)
		return;
	mtasts_stop();
	for (he = htab_first(&ms.entries, &it); he != NULL;
	     he = htab_next(&ms.entries, he, &it)) {
		struct mtasts_entry *e = he->value;

		mtasts_policy_clear(&e->pol);
		free(e->domain);
		free(e);
	}
	htab_free(&ms.entries);
	if (ms.ready_ev != NULL)
		event_free(ms.ready_ev);
	if (ms.sweep != NULL)
		event_free(ms.sweep);
	memset(&ms, 0, sizeof(ms));
}

void
mtasts_note_result(const char *policy, const char *mode, const char *result)
{
	size_t i, row;

	if (policy == NULL || result == NULL)
		return;
	if (strcmp(policy, "dane") == 0)
		row = 2;
	else if (strcmp(policy, "mta-sts") == 0 && mode != NULL)
		row = strcmp(mode, "enforce") == 0;
	else
		return;
	for (i = 0; i < MTASTS_RESULTS; i++)
		if (strcmp(result, mtasts_results[i]) == 0) {
			atomic_fetch_add(&ms.n_result[row][i], 1);
			return;
		}
}

size_t
mtasts_metrics_text(char *buf, size_t len)
{
	size_t off, i, row;
	int n;

	n = snprintf(
	    buf, len,
	    "# HELP outpost_mta_sts_fetches_total MTA-STS policy fetches, by "
	    "result (RFC 8460's failure types).\n"
	    "# TYPE outpost_mta_sts_fetches_total counter\n"
	    "outpost_mta_sts_fetches_total{result=\"ok\"} %" PRIu64 "\n"
	    "outpost_mta_sts_fetches_total{result=\"sts-policy-fetch-error\"} "
	    "%" PRIu64 "\n"
	    "outpost_mta_sts_fetches_total{result=\"sts-policy-invalid\"} "
	    "%" PRIu64 "\n"
	    "outpost_mta_sts_fetches_total{result=\"sts-webpki-invalid\"} "
	    "%" PRIu64 "\n"
	    "# HELP outpost_mta_sts_policies_loaded Policies read back from "
	    "the queue at start-up.\n"
	    "# TYPE outpost_mta_sts_policies_loaded gauge\n"
	    "outpost_mta_sts_policies_loaded %" PRIu64 "\n",
	    atomic_load(&ms.n_fetch_ok), atomic_load(&ms.n_fetch_error),
	    atomic_load(&ms.n_invalid), atomic_load(&ms.n_webpki),
	    atomic_load(&ms.n_cached));
	if (n < 0 || (size_t)n >= len)
		return 0;
	off = (size_t)n;
	n = snprintf(buf + off, len - off,
		     "# HELP outpost_tls_policy_results_total Transactions "
		     "under a TLS policy, by policy, mode and result (RFC "
		     "8460's result types).\n"
		     "# TYPE outpost_tls_policy_results_total counter\n");
	if (n < 0 || (size_t)n >= len - off)
		return 0;
	off += (size_t)n;
	for (row = 0; row < 3; row++)
		for (i = 0; i < MTASTS_RESULTS; i++) {
			n = snprintf(buf + off, len - off,
				     "outpost_tls_policy_results_total{%s,"
				     "result=\"%s\"} %" PRIu64 "\n",
				     row == 2   ? "policy=\"dane\""
				     : row == 1 ? "policy=\"mta-sts\","
						  "mode=\"enforce\""
						: "policy=\"mta-sts\","
						  "mode=\"testing\"",
				     mtasts_results[i],
				     atomic_load(&ms.n_result[row][i]));
			if (n < 0 || (size_t)n >= len - off)
				return 0;
			off += (size_t)n;
		}
	return off;
}
