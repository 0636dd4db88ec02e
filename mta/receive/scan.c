/*
 * scan.c — the malware scan of a submitted message (scan.h): the verdict
 * cache consulted on the worker pool (the whole body, then each MIME leaf
 * part), what is still unknown streamed to clamd (scan_clamd.c), the
 * verdicts put back in the cache, the counts, the rejection of an
 * infected message (events, watchdog, audit), `scan status` and metrics.
 * Owns: the verdict cache, the configuration in force (a reference),
 * clamd's last VERSION text, the audit rate limit.
 * Must not: keep an address or a message byte (hashes, signature names,
 * counts only); pass over a body on a loop (hashes on the worker pool).
 * Threads: scan_message and its completions on the request's loop; the
 * rest any thread (S.mu over the text and the table, atomics for counts).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/observe/evlog.h"
#include "mta/observe/watchdog.h"
#include "mta/receive/scan_int.h"

#define SCAN_AUDIT_SLOTS 1024  /* users remembered for the rate limit */
#define SCAN_AUDIT_MS    60000 /* one audit record per user this often */

struct scan_counts scan_counts = { .reachable = -1 };

static struct {
	pthread_mutex_t mu;
	struct scan_cache *cache;
	const struct conf *conf; /* in force (referenced) */
	char version[200];       /* clamd's VERSION reply, "" before one */
	int64_t version_ms;
	scan_audit_fn *audit_fn;
	void *audit_arg;
	struct {
		uint64_t user; /* FNV-1a of the user name ("" relay) */
		int64_t minute;
	} audited[SCAN_AUDIT_SLOTS];
} S = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Said at start-up, and by a reload that turns scanning off: an operator
 * who forgot scan.clamd learns it from the log, not from an incident. */
static void
scan_off_warn(const struct conf *old, const struct conf *c)
{
	if (c->scan.clamd == NULL && (old == NULL || old->scan.clamd != NULL))
		log_warnx("scan: no clamd configured (scan.clamd): submitted "
			  "messages are not scanned for malware");
}

int
scan_init(const struct conf *c)
{
	if ((S.cache = scan_cache_new(c->scan.cache_entries,
				      (int64_t)c->scan.cache_ttl_ms)) == NULL)
		return -1;
	S.conf = conf_ref(c);
	scan_off_warn(NULL, c);
	return 0;
}

void
scan_reconf(const struct conf *c)
{
	const struct conf *old;

	pthread_mutex_lock(&S.mu);
	old = S.conf;
	S.conf = conf_ref(c);
	pthread_mutex_unlock(&S.mu);
	scan_off_warn(old, c);
	if (old != NULL && (old->scan.cache_entries != c->scan.cache_entries ||
			    old->scan.cache_ttl_ms != c->scan.cache_ttl_ms))
		log_warnx("reload: scan.cache_entries and scan.cache_ttl take "
			  "effect at the next restart");
	if (old != NULL)
		conf_unref(old);
}

void
scan_free(void)
{
	scan_clamd_free_all();
	scan_cache_free(S.cache);
	S.cache = NULL;
	if (S.conf != NULL)
		conf_unref(S.conf);
	S.conf = NULL;
}

const struct conf *
scan_conf_get(void)
{
	const struct conf *c;

	pthread_mutex_lock(&S.mu);
	c = S.conf != NULL ? conf_ref(S.conf) : NULL;
	pthread_mutex_unlock(&S.mu);
	return c;
}

void
scan_version_set(const char *text)
{
	bool flush;
	char old[sizeof(S.version)];

	pthread_mutex_lock(&S.mu);
	flush = S.version[0] != '\0' && strcmp(S.version, text) != 0;
	snprintf(old, sizeof(old), "%s", S.version);
	snprintf(S.version, sizeof(S.version), "%s", text);
	S.version_ms = util_wall_ms();
	pthread_mutex_unlock(&S.mu);
	if (flush) {
		/* New signatures may find what the old ones passed. */
		scan_cache_flush(S.cache);
		log_info("scan: clamd's signatures changed (%s, was %s): "
			 "verdict cache flushed",
			 text, old);
	}
}

/* Preparation (worker pool) --------------------------------------------- */

/*
 * The cache's word on J's body: the whole body, then each leaf part.
 * Sets J->r's verdict (cached) when it is known, else the ranges to stream:
 * the body without the content of the leaves known clean.
 */
static void
scan_prep_run(void *arg)
{
	struct scan_job *j = arg;
	struct scan_req *r = j->r;
	size_t slen = r->truncated ? r->conf->scan.max_size : r->len, pos = 0,
	       i;
	bool clean[SCAN_PARTS_MAX];
	int64_t now = util_wall_ms();
	enum scan_verdict v;

	r->result = SCAN_R_ERROR;
	if (!r->truncated) {
		/* A cut scan says nothing of the whole: no cache then. */
		j->use_cache = true;
		/* Without the Received: field we prepended, which holds the
		 * queue id: with it no two bodies would ever share a key. */
		scan_cache_hash(S.cache, r->body + r->trace_len,
				r->len - r->trace_len, j->whole);
		v = scan_cache_get(S.cache, j->whole, now, r->name,
				   sizeof(r->name));
		if (v != SCAN_UNKNOWN) {
			r->cached = true;
			r->result =
			    v == SCAN_CLEAN ? SCAN_R_CLEAN : SCAN_R_INFECTED;
			return;
		}
		j->nparts =
		    scan_mime_leaves(r->body, r->len, j->parts, SCAN_PARTS_MAX);
		for (i = 0; i < j->nparts; i++) {
			clean[i] = false;
			if (j->parts[i].off > r->len ||
			    j->parts[i].len > r->len - j->parts[i].off) {
				j->nparts = i; /* a walker's slip: not used */
				break;
			}
			scan_cache_hash_part(S.cache, r->body, &j->parts[i]);
			v = scan_cache_get(S.cache, j->parts[i].hash, now,
					   r->name, sizeof(r->name));
			if (v == SCAN_INFECTED) {
				r->cached = true;
				r->result = SCAN_R_INFECTED;
				return;
			}
			if (v == SCAN_CLEAN)
				clean[i] = true;
			else
				j->lone = i, j->unknown++;
		}
		if (j->nparts > 0 && j->unknown == 0) {
			r->cached = true;
			r->result = SCAN_R_CLEAN;
			return;
		}
		r->name[0] = '\0';
		/* The leaves known clean are left out; headers, framing and
		 * the unknown leaves stay, so clamd still reads the MIME. */
		for (i = 0; i < j->nparts; i++) {
			if (!clean[i] || j->parts[i].off < pos)
				continue;
			if (j->parts[i].off > pos)
				j->segs[j->nsegs++] =
				    (struct scan_seg){ pos,
						       j->parts[i].off - pos };
			pos = j->parts[i].off + j->parts[i].len;
		}
	}
	if (slen > pos)
		j->segs[j->nsegs++] = (struct scan_seg){ pos, slen - pos };
	j->nparts = r->truncated ? 0 : j->nparts;
}

static void
scan_prep_done(void *arg)
{
	struct scan_job *j = arg;

	if (j->r->cached) {
		scan_job_finish(j);
		return;
	}
	scan_clamd_submit(j);
}

/* R's done() from its loop's mailbox (never inline). */
static void
scan_done_post(void *arg)
{
	struct scan_req *r = arg;

	r->done(r);
}

void
scan_message(struct scan_req *r)
{
	struct scan_job *j;

	r->result = SCAN_R_ERROR;
	r->name[0] = r->why[0] = '\0';
	r->cached = r->truncated = false;
	r->job = NULL;
	if (r->len > r->conf->scan.max_size) {
		if (r->conf->scan.on_oversize == CONF_SCAN_REFUSE) {
			atomic_fetch_add(&scan_counts.oversize, 1);
			r->result = SCAN_R_OVERSIZE;
			loop_post(r->loop, scan_done_post, r);
			return;
		}
		r->truncated = true;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		snprintf(r->why, sizeof(r->why), "out of memory");
		atomic_fetch_add(&scan_counts.errors, 1);
		loop_post(r->loop, scan_done_post, r);
		return;
	}
	j->r = r;
	r->job = j;
	worker_submit(r->loop, scan_prep_run, scan_prep_done, j);
}

void
scan_job_finish(struct scan_job *j)
{
	struct scan_req *r = j->r;
	int64_t now = util_wall_ms();
	size_t i;

	if (r->cached)
		atomic_fetch_add(r->result == SCAN_R_CLEAN
				     ? &scan_counts.cached_clean
				     : &scan_counts.cached_infected,
				 1);
	else if (r->result == SCAN_R_CLEAN || r->result == SCAN_R_INFECTED) {
		atomic_fetch_add(r->result == SCAN_R_CLEAN
				     ? &scan_counts.clean
				     : &scan_counts.infected,
				 1);
		atomic_fetch_add(&scan_counts.bytes, j->streamed);
		if (r->truncated)
			atomic_fetch_add(&scan_counts.truncated, 1);
	}
	if (!r->cached && j->use_cache && r->result == SCAN_R_CLEAN) {
		scan_cache_put(S.cache, j->whole, SCAN_CLEAN, NULL, now);
		for (i = 0; i < j->nparts; i++)
			scan_cache_put(S.cache, j->parts[i].hash, SCAN_CLEAN,
				       NULL, now);
	} else if (!r->cached && j->use_cache && r->result == SCAN_R_INFECTED) {
		scan_cache_put(S.cache, j->whole, SCAN_INFECTED, r->name, now);
		/* Only a lone unknown leaf can be blamed. */
		if (j->unknown == 1)
			scan_cache_put(S.cache, j->parts[j->lone].hash,
				       SCAN_INFECTED, r->name, now);
	}
	r->job = NULL;
	free(j);
	r->done(r);
}

/* Detections ------------------------------------------------------------ */

static uint64_t
scan_fnv(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

void
scan_audit_hook(scan_audit_fn *fn, void *arg)
{
	S.audit_fn = fn;
	S.audit_arg = arg;
}

void
scan_note_infected(const struct queue_envelope *env, const char *identity,
		   const char *name, int code, const char *reply)
{
	struct evlog_event ev;
	char reason[SCAN_NAME_MAX + 32];
	uint64_t u = scan_fnv(env->user != NULL ? env->user : "");
	int64_t minute = util_wall_ms() / SCAN_AUDIT_MS;
	size_t slot = (size_t)(u % SCAN_AUDIT_SLOTS);
	bool audit;
	uint32_t i;

	snprintf(reason, sizeof(reason), "malware found (%s)", name);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_REJECTION;
	ev.id = env->id;
	ev.user = env->user;
	ev.client = env->client;
	ev.sender = env->sender;
	ev.nrcpts = ev.attempt = ev.tls_verified = ev.count = -1;
	ev.queue_time_ms = -1;
	ev.size = env->size;
	ev.code = code;
	ev.reply = reply;
	ev.stage = "scan";
	ev.reason = reason;
	ev.campaign = env->campaign;
	/* One event a recipient: each is hashed as the log writes them. */
	for (i = 0; i < env->nrcpts; i++) {
		ev.rcpt = env->rcpts[i].addr;
		evlog_write(&ev);
	}
	watchdog_note_infected(identity);
	pthread_mutex_lock(&S.mu);
	audit = S.audited[slot].user != u || S.audited[slot].minute != minute;
	S.audited[slot].user = u;
	S.audited[slot].minute = minute;
	pthread_mutex_unlock(&S.mu);
	if (audit && S.audit_fn != NULL)
		S.audit_fn(env->user, name, S.audit_arg);
}

void
scan_error_accepted(void)
{
	atomic_fetch_add(&scan_counts.accepted_on_error, 1);
}

uint64_t
scan_flush(void)
{
	struct scan_cache_stats st;

	scan_cache_stats(S.cache, &st);
	scan_cache_flush(S.cache);
	return st.entries;
}

/* Reports --------------------------------------------------------------- */

#define SC(x) ((unsigned long long)atomic_load(&scan_counts.x))

/* clamd's VERSION text cut in its version ("ClamAV 1.4.6/27000") and its
 * signature date (after the second '/', or ""). */
static void
scan_version_split(char *v, const char **date)
{
	char *a = strchr(v, '/'), *b = a != NULL ? strchr(a + 1, '/') : NULL;

	*date = "";
	if (b != NULL) {
		*b = '\0';
		*date = b + 1;
	}
}

char *
scan_status(const struct conf *c, bool json, size_t *len)
{
	struct scan_cache_stats st;
	char v[sizeof(S.version)], *buf = NULL;
	const char *date;
	int reach = atomic_load(&scan_counts.reachable);
	double rate;
	FILE *f;

	pthread_mutex_lock(&S.mu);
	snprintf(v, sizeof(v), "%s", S.version);
	pthread_mutex_unlock(&S.mu);
	scan_version_split(v, &date);
	scan_cache_stats(S.cache, &st);
	rate = st.hits + st.misses > 0
		   ? (double)st.hits / (double)(st.hits + st.misses)
		   : 0.0;
	if ((f = open_memstream(&buf, len)) == NULL)
		return NULL;
	if (json) {
		fputs("{\"clamd\":", f);
		json_put(f, c->scan.clamd);
		fprintf(f, ",\"reachable\":%s,\"version\":",
			reach < 0 ? "null"
			: reach   ? "true"
				  : "false");
		json_put(f, v[0] ? v : NULL);
		fputs(",\"signature_date\":", f);
		json_put(f, date[0] ? date : NULL);
		fprintf(f,
			",\"cache_entries\":%" PRIu64
			",\"cache_max_entries\":%" PRIu64
			",\"cache_hits\":%" PRIu64 ",\"cache_misses\":%" PRIu64
			",\"cache_hit_rate\":%.4f,\"scans\":%llu,\"clean\":%"
			"llu,\"infected\":%llu,\"cached_clean\":%llu,"
			"\"cached_infected\":%llu,\"detections\":%llu,"
			"\"errors\":%llu,\"timeouts\":%llu,\"garbage\":%llu,"
			"\"truncated\":%llu,\"oversize\":%llu,"
			"\"accepted_on_error\":%llu,\"bytes\":%llu}\n",
			st.entries, st.max_entries, st.hits, st.misses, rate,
			SC(scans), SC(clean), SC(infected), SC(cached_clean),
			SC(cached_infected), SC(infected) + SC(cached_infected),
			SC(errors), SC(timeouts), SC(garbage), SC(truncated),
			SC(oversize), SC(accepted_on_error), SC(bytes));
	} else {
		fprintf(f, "%-12s %s\n", "clamd",
			c->scan.clamd != NULL ? c->scan.clamd
					      : "(off: scan.clamd is empty)");
		fprintf(f, "%-12s %s\n", "reachable",
			reach < 0 ? "unknown"
			: reach   ? "yes"
				  : "no");
		fprintf(f, "%-12s %s\n", "version", v[0] ? v : "-");
		fprintf(f, "%-12s %s\n", "signatures", date[0] ? date : "-");
		fprintf(f,
			"%-12s %" PRIu64 " of %" PRIu64
			" entries, hit rate %.1f%% (%" PRIu64 " hits, %" PRIu64
			" misses)\n",
			"cache", st.entries, st.max_entries, rate * 100,
			st.hits, st.misses);
		fprintf(
		    f,
		    "%-12s %llu streamed to clamd (%llu bytes): %llu clean, "
		    "%llu infected; from the cache: %llu clean, %llu "
		    "infected\n",
		    "scans", SC(scans), SC(bytes), SC(clean), SC(infected),
		    SC(cached_clean), SC(cached_infected));
		fprintf(f, "%-12s %llu\n", "detections",
			SC(infected) + SC(cached_infected));
		fprintf(f,
			"%-12s %llu (%llu timeouts, %llu garbage replies); "
			"%llu accepted unscanned\n",
			"errors", SC(errors), SC(timeouts), SC(garbage),
			SC(accepted_on_error));
		fprintf(f, "%-12s %llu truncated, %llu refused\n", "oversize",
			SC(truncated), SC(oversize));
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

size_t
scan_metrics_text(char *buf, size_t len)
{
	struct scan_cache_stats st;
	int reach = atomic_load(&scan_counts.reachable);
	int n;

	scan_cache_stats(S.cache, &st);
	n = snprintf(
	    buf, len,
	    "# HELP outpost_scan_total Messages scanned, by result.\n"
	    "# TYPE outpost_scan_total counter\n"
	    "outpost_scan_total{result=\"clean\"} %llu\n"
	    "outpost_scan_total{result=\"infected\"} %llu\n"
	    "outpost_scan_total{result=\"cached_clean\"} %llu\n"
	    "outpost_scan_total{result=\"cached_infected\"} %llu\n"
	    "outpost_scan_total{result=\"error\"} %llu\n"
	    "outpost_scan_total{result=\"oversize\"} %llu\n"
	    "# HELP outpost_scan_detections_total Messages refused as "
	    "infected.\n"
	    "# TYPE outpost_scan_detections_total counter\n"
	    "outpost_scan_detections_total %llu\n"
	    "# HELP outpost_scan_errors_total Scan failures, by kind.\n"
	    "# TYPE outpost_scan_errors_total counter\n"
	    "outpost_scan_errors_total{kind=\"timeout\"} %llu\n"
	    "outpost_scan_errors_total{kind=\"garbage\"} %llu\n"
	    "outpost_scan_errors_total{kind=\"all\"} %llu\n"
	    "# HELP outpost_scan_accepted_unscanned_total Messages queued "
	    "without a verdict (scan.on_error = accept).\n"
	    "# TYPE outpost_scan_accepted_unscanned_total counter\n"
	    "outpost_scan_accepted_unscanned_total %llu\n"
	    "# HELP outpost_scan_truncated_total Messages scanned up to "
	    "scan.max_size only.\n"
	    "# TYPE outpost_scan_truncated_total counter\n"
	    "outpost_scan_truncated_total %llu\n"
	    "# HELP outpost_scan_bytes_total Bytes streamed to clamd.\n"
	    "# TYPE outpost_scan_bytes_total counter\n"
	    "outpost_scan_bytes_total %llu\n"
	    "# HELP outpost_scan_clamd_up Did clamd's last answer come (1), "
	    "or its connection fail (0).\n"
	    "# TYPE outpost_scan_clamd_up gauge\n"
	    "outpost_scan_clamd_up %d\n"
	    "# HELP outpost_scan_cache_entries Verdicts in the cache.\n"
	    "# TYPE outpost_scan_cache_entries gauge\n"
	    "outpost_scan_cache_entries %" PRIu64 "\n"
	    "# HELP outpost_scan_cache_lookups_total Cache lookups, by "
	    "result.\n"
	    "# TYPE outpost_scan_cache_lookups_total counter\n"
	    "outpost_scan_cache_lookups_total{result=\"hit\"} %" PRIu64 "\n"
	    "outpost_scan_cache_lookups_total{result=\"miss\"} %" PRIu64 "\n",
	    SC(clean), SC(infected), SC(cached_clean), SC(cached_infected),
	    SC(errors), SC(oversize), SC(infected) + SC(cached_infected),
	    SC(timeouts), SC(garbage), SC(errors), SC(accepted_on_error),
	    SC(truncated), SC(bytes), reach > 0, st.entries, st.hits,
	    st.misses);
	return n < 0 ? 0 : (size_t)n;
}
