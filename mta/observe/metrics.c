/*
 * metrics.c — GET /metrics (Prometheus text format 0.0.4) on evhttp.
 *
 * Owns: the evhttp listener, the text hooks, the histograms.  Renders on the
 * thread of the event base given to metrics_start() (outpostd's main
 * thread); reads everything else through atomics or the owners' own
 * locked getters (queue_stats_get, evlog_stats_get, the sessions gauge of
 * metrics_set_sessions), so a scrape never stops a loop.  Must not: label by
 * address, message id or anything else unbounded; block the thread (no DNS, no
 * disk but /proc). Invariant: counters only grow; a histogram's +Inf bucket
 * equals _count.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "queue/queue.h"
#include "mta/observe/evlog.h"
#include "mta/core/log.h"
#include "mta/observe/metrics.h"
#include "mta/observe/metrics_top.h"
#include "mta/observe/counters.h"
#include "mta/observe/stats.h"

#ifndef OUTPOST_VERSION
#define OUTPOST_VERSION "unknown"
#endif

#define METRICS_HTTP_TIMEOUT_S    10
#define METRICS_HTTP_HEADERS_MAX  8192 /* bytes */
#define METRICS_HTTP_BODY_MAX     1024 /* bytes; scrapes have none */
#define METRICS_TEXT_INITIAL_SIZE 8192 /* bytes offered to a hook first */
#define METRICS_TEXT_MAX_SIZE     (16u << 20) /* bytes a hook may ask for */

/* Histograms --------------------------------------------------------- */

/* HIST(name, help, bound, …): an initialiser that counts its bounds. */
#define HIST(i, n, h, ...)                                                     \
	{                                                                      \
		.name = (n), .help = (h), .idx = (i),                          \
		.nbounds = sizeof((double[]){ __VA_ARGS__ }) / sizeof(double), \
		.bounds = { __VA_ARGS__ },                                     \
	}

struct metrics_hist metrics_accept_latency =
    HIST(0, "outpost_accept_latency_seconds",
	 "Time from the end of message data to the 250 reply (DMARC, DKIM "
	 "signing, queue commit).",
	 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	 2.5, 5, 10);
struct metrics_hist metrics_delivery_latency =
    HIST(1, "outpost_delivery_latency_seconds",
	 "Time a recipient spent in the queue until it was delivered.", 0.01,
	 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400,
	 43200, 86400);
struct metrics_hist metrics_commit_batch =
    HIST(2, "outpost_queue_commit_batch_ops",
	 "Queue operations per LMDB write transaction.", 1, 2, 4, 8, 16, 32, 64,
	 128, 256, 512, 1024, 2048, 4096);
struct metrics_hist metrics_sign_seconds =
    HIST(3, "outpost_dkim_sign_duration_seconds",
	 "DKIM signing time per message, all its signatures.", 0.00005, 0.0001,
	 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	 0.5, 1);

/* In the order of their idx. */
struct metrics_hist *const metrics_hists[METRICS_NHISTS] = {
	&metrics_accept_latency,
	&metrics_delivery_latency,
	&metrics_commit_batch,
	&metrics_sign_seconds,
};

void
metrics_observe(struct metrics_hist *h, double value)
{
	struct metrics_hist_counts *c;
	size_t i;

	/* An infinity would stick in _sum for good. */
	if (!isfinite(value))
		return;
	if (value < 0)
		value = 0;
	/* At most 24 bounds: a linear scan beats a binary search here. */
	for (i = 0; i < h->nbounds && value > h->bounds[i]; i++)
		;
	if ((c = counters_hist_mine(h)) == NULL)
		c = &h->c;
	atomic_fetch_add_explicit(&c->counts[i], 1, memory_order_relaxed);
	counters_sum_add(&c->sum_bits, value);
}

/* Counters of stats.h ------------------------------------------------ */

/* One line per stats field; consecutive lines with the same name form one
 * family (HELP/TYPE printed once). */
static const struct stats_metric {
	const char *name;
	const char *labels; /* "" or e.g. "reason=\"relay\"" */
	const char *help;
	size_t off; /* of the _Atomic uint64_t in struct stats */
} stats_metrics[] = {
#define SM(n, l, h, f)                                                         \
	{                                                                      \
		n, l, h, offsetof(struct stats, f)                             \
	}
	SM("outpost_sessions_total", "", "SMTP connections accepted.",
	   sessions),
	SM("outpost_sessions_refused_total", "",
	   "SMTP connections refused over a session limit.", sessions_refused),
	SM("outpost_tls_handshakes_total", "",
	   "TLS handshakes completed, inbound and outbound.", tls_handshakes),
	SM("outpost_tls_handshake_failures_total", "",
	   "TLS handshakes that failed, inbound and outbound.", tls_failures),
	SM("outpost_messages_received_total", "",
	   "Messages accepted (250 after the queue commit).",
	   messages_accepted),
	SM("outpost_recipients_received_total", "",
	   "Recipients of accepted messages.", recipients_accepted),
	SM("outpost_messages_rejected_total", "reason=\"relay\"",
	   "Submissions refused, by reason (relay: per RCPT refused; sender: "
	   "at MAIL or for the From: domain; size: at MAIL or end of data; "
	   "others: at end of data).",
	   rejected_relay),
	SM("outpost_messages_rejected_total", "reason=\"sender\"", NULL,
	   rejected_sender),
	SM("outpost_messages_rejected_total", "reason=\"dmarc\"", NULL,
	   rejected_dmarc),
	SM("outpost_messages_rejected_total", "reason=\"smuggling\"", NULL,
	   rejected_smuggling),
	SM("outpost_messages_rejected_total", "reason=\"size\"", NULL,
	   rejected_size),
	SM("outpost_messages_rejected_total", "reason=\"content\"", NULL,
	   rejected_content),
	SM("outpost_data_rejected_total", "",
	   "Messages refused at the end of data, any reason.",
	   messages_rejected),
	SM("outpost_messages_queue_failed_total", "",
	   "Messages refused with 4xx because the queue commit failed.",
	   queue_failures),
	SM("outpost_dkim_signatures_total", "", "DKIM signatures added.",
	   dkim_signatures),
	SM("outpost_auth_success_total", "",
	   "SMTP AUTH exchanges that succeeded.", auth_success),
	SM("outpost_auth_failures_total", "",
	   "SMTP AUTH exchanges that failed.", auth_failures),
	SM("outpost_auth_blocked_total", "",
	   "SMTP AUTH refused or sessions closed because the client failed "
	   "too often.",
	   auth_blocked),
	SM("outpost_auth_verifications_total", "",
	   "SMTP AUTH passwords checked with Argon2id (a remembered "
	   "password, or an attempt refused by the limits, is not).",
	   auth_verifications),
	SM("outpost_smtp_timeouts_total", "",
	   "SMTP sessions ended by a timeout, inbound and outbound.", timeouts),
	SM("outpost_smtp_protocol_errors_total", "",
	   "SMTP commands from clients refused as errors.", protocol_errors),
	SM("outpost_deliveries_total", "result=\"delivered\"",
	   "Recipient delivery outcomes (deferred: per attempt; the others "
	   "final).",
	   delivered),
	SM("outpost_deliveries_total", "result=\"deferred\"", NULL, deferred),
	SM("outpost_deliveries_total", "result=\"bounced\"", NULL, bounced),
	SM("outpost_deliveries_total", "result=\"expired\"", NULL, expired),
	SM("outpost_destination_throttle_steps_total", "",
	   "Steps down a destination took on a reply of one of its "
	   "throttle_on categories (adaptive back-off).",
	   throttle_steps),
	SM("outpost_destination_pauses_overdue_total", "",
	   "Destination pauses found a second past their end with no timer "
	   "set to end them, and ended then (a fault: should stay 0).",
	   pauses_overdue),
	SM("outpost_complaints_total", "",
	   "Verified complaints from feedback-loop reports.", complaints),
	SM("outpost_feedback_reports_total", "result=\"ok\"",
	   "Feedback-loop reports received, by result (unverified: an "
	   "X-Outpost-FB that does not verify; unknown-message: none).",
	   fb_ok),
	SM("outpost_feedback_reports_total", "result=\"malformed\"", NULL,
	   fb_malformed),
	SM("outpost_feedback_reports_total", "result=\"unverified\"", NULL,
	   fb_unverified),
	SM("outpost_feedback_reports_total", "result=\"unknown-message\"", NULL,
	   fb_unknown),
#undef SM
};
_Static_assert(sizeof(stats_metrics) / sizeof(stats_metrics[0]) ==
		   sizeof(struct stats) / sizeof(_Atomic uint64_t),
	       "a field of struct stats has no line in stats_metrics[]");

/* State --------------------------------------------------------------- */

static struct {
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct queue *queue;
	double start_time; /* seconds since the epoch */
	metrics_text_fn *hooks[METRICS_TEXT_HOOKS_MAX];
	size_t nhooks;
	metrics_sessions_fn *sessions; /* NULL: the gauge reads 0 */
} M;

/* Rendering ----------------------------------------------------------- */

struct render {
	struct evbuffer *out;
	int err;
};

static void render_printf(struct render *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
render_printf(struct render *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(r->out, fmt, ap) < 0)
		r->err = -1;
	va_end(ap);
}

static void
render_family(struct render *r, const char *name, const char *type,
	      const char *help)
{
	render_printf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
		      type);
}

/*
 * A float as Prometheus (Go's ParseFloat) reads it: integers plainly, others
 * in the shortest of %.15g / %.17g that reads back the same.
 */
static const char *
fmt_double(char buf[32], double v)
{
	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	if (fabs(v) < 9007199254740992.0 && v == (double)(int64_t)v)
		snprintf(buf, 32, "%.0f", v);
	else {
		snprintf(buf, 32, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, 32, "%.17g", v);
	}
	return buf;
}

static void
render_u64(struct render *r, const char *name, const char *labels, uint64_t v)
{
	if (labels[0] != '\0')
		render_printf(r, "%s{%s} %" PRIu64 "\n", name, labels, v);
	else
		render_printf(r, "%s %" PRIu64 "\n", name, v);
}

static void
render_one(struct render *r, const char *name, const char *type,
	   const char *help, uint64_t v)
{
	render_family(r, name, type, help);
	render_u64(r, name, "", v);
}

static void
render_double(struct render *r, const char *name, const char *type,
	      const char *help, double v)
{
	char b[32];

	render_family(r, name, type, help);
	render_printf(r, "%s %s\n", name, fmt_double(b, v));
}

static void
render_stats(struct render *r)
{
	const struct stats_metric *m, *prev = NULL;
	size_t i;

	for (i = 0; i < sizeof(stats_metrics) / sizeof(stats_metrics[0]); i++) {
		m = &stats_metrics[i];
		if (prev == NULL || strcmp(prev->name, m->name) != 0)
			render_family(r, m->name, "counter", m->help);
		render_u64(r, m->name, m->labels, stats_sum(m->off));
		prev = m;
	}
}

static void
render_hist(struct render *r, struct metrics_hist *h)
{
	uint64_t cum = 0, counts[METRICS_HIST_BOUNDS_MAX + 1];
	char b[32];
	double sum;
	size_t i;

	render_family(r, h->name, "histogram", h->help);
	/* Buckets are read one by one while other threads add: each is a
	 * consistent counter, and +Inf and _count are the same total. */
	counters_hist_read(h, counts, &sum);
	for (i = 0; i <= h->nbounds; i++) {
		cum += counts[i];
		render_printf(
		    r, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", h->name,
		    i < h->nbounds ? fmt_double(b, h->bounds[i]) : "+Inf", cum);
	}
	render_printf(r, "%s_sum %s\n%s_count %" PRIu64 "\n", h->name,
		      fmt_double(b, sum), h->name, cum);
}

static void
render_queue(struct render *r)
{
	struct queue_stats qs;

	if (M.queue == NULL)
		return;
	queue_stats_get(M.queue, &qs);
	render_one(r, "outpost_queue_commits_total", "counter",
		   "LMDB write transactions committed by the queue writer.",
		   qs.commits);
	render_one(r, "outpost_queue_ops_total", "counter",
		   "Queue operations committed.", qs.ops);
	render_one(r, "outpost_queue_failed_ops_total", "counter",
		   "Queue operations that failed (their batch was refused).",
		   qs.failed_ops);
	render_double(r, "outpost_queue_commit_seconds_total", "counter",
		      "Time spent in mdb_txn_commit.",
		      (double)qs.commit_us_total / 1e6);
	render_one(r, "outpost_queue_headroom_bytes_total", "counter",
		   "Zeros written ahead of the queue's data while restore "
		   "points were taken (so that commits overwrite, not grow, "
		   "the file).",
		   qs.headroom_bytes);
	render_double(r, "outpost_queue_txn_wait_seconds_total", "counter",
		      "Time the queue writer waited for the headroom writer "
		      "before a transaction.",
		      (double)qs.txn_wait_us_total / 1e6);
	render_one(r, "outpost_queue_commit_max_ops", "gauge",
		   "Largest number of operations in one write transaction "
		   "since start.",
		   qs.max_batch);
}

static void
render_evlog(struct render *r)
{
	struct evlog_stats es;

	evlog_stats_get(&es);
	render_one(r, "outpost_log_lines_total", "counter",
		   "Delivery log lines written.", es.lines);
	render_one(r, "outpost_log_dropped_total", "counter",
		   "Delivery log lines lost because the writer fell behind.",
		   es.dropped);
	render_one(r, "outpost_log_bytes_total", "counter",
		   "Delivery log bytes written.", es.bytes);
}

/* The usual process_* gauges (Prometheus client libraries' names), from
 * getrusage, getrlimit and /proc/self. */
static void
render_process(struct render *r)
{
	struct rusage ru;
	struct rlimit rl;
	unsigned long long vsz, rss;
	uint64_t nfds = 0;
	struct dirent *de;
	FILE *f;
	DIR *d;

	if (getrusage(RUSAGE_SELF, &ru) == 0)
		render_double(
		    r, "process_cpu_seconds_total", "counter",
		    "User and system CPU time spent.",
		    (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
			(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	if ((f = fopen("/proc/self/statm", "r")) != NULL) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) == 2) {
			long page = sysconf(_SC_PAGESIZE);

			render_one(r, "process_virtual_memory_bytes", "gauge",
				   "Virtual memory size.",
				   (uint64_t)vsz * (uint64_t)page);
			render_one(r, "process_resident_memory_bytes", "gauge",
				   "Resident memory size.",
				   (uint64_t)rss * (uint64_t)page);
		}
		fclose(f);
	}
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				nfds++;
		closedir(d);
		render_one(r, "process_open_fds", "gauge",
			   "Open file descriptors.", nfds - 1 /* the DIR's */);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		render_one(r, "process_max_fds", "gauge",
			   "Limit on open file descriptors.",
			   rl.rlim_cur == RLIM_INFINITY
			       ? UINT64_MAX
			       : (uint64_t)rl.rlim_cur);
}

/* Append what HOOK produces; the hook says how much room it needs. */
static void
render_hook(struct render *r, metrics_text_fn *hook)
{
	struct evbuffer_iovec vec;
	size_t want = METRICS_TEXT_INITIAL_SIZE, n = 0;
	int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		if (evbuffer_reserve_space(r->out, (ev_ssize_t)want, &vec, 1) <
		    1) {
			r->err = -1;
			return;
		}
		n = hook(vec.iov_base, vec.iov_len);
		if (n < vec.iov_len) {
			vec.iov_len = n;
			if (evbuffer_commit_space(r->out, &vec, 1) != 0)
				r->err = -1;
			else if (n > 0 && ((char *)vec.iov_base)[n - 1] != '\n')
				render_printf(r, "\n");
			return;
		}
		/* Nothing committed: the reservation is simply dropped. */
		if (n >= METRICS_TEXT_MAX_SIZE)
			break;
		want = n + 1;
	}
	log_warnx("metrics: a text hook wants %zu bytes; left out", n);
}

int
metrics_render(struct evbuffer *out)
{
	struct render r = { out, 0 };
	char b[32];
	size_t i;

	render_stats(&r);
	render_one(&r, "outpost_smtp_sessions", "gauge",
		   "SMTP server sessions open now.",
		   M.sessions != NULL ? M.sessions() : 0);
	render_queue(&r);
	render_evlog(&r);
	for (i = 0; i < METRICS_NHISTS; i++)
		render_hist(&r, metrics_hists[i]);
	render_family(&r, "outpost_build_info", "gauge",
		      "Build information; the value is always 1.");
	render_printf(&r, "outpost_build_info{version=\"%s\"} 1\n",
		      OUTPOST_VERSION);
	render_family(&r, "outpost_start_time_seconds", "gauge",
		      "When outpostd started, in seconds since the epoch.");
	render_printf(&r, "outpost_start_time_seconds %s\n",
		      fmt_double(b, M.start_time));
	render_process(&r);
	render_hook(&r, metrics_user_accepts_text);
	render_hook(&r, metrics_bounce_text);
	for (i = 0; i < M.nhooks; i++)
		render_hook(&r, M.hooks[i]);
	return r.err;
}

/* HTTP ---------------------------------------------------------------- */

/* A short text/plain answer.  (evhttp_send_error() would drop the Allow
 * header: it clears the output headers.) */
static void
metrics_reply_error(struct evhttp_request *req, int code, const char *reason)
{
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(hdr, "Content-Type", "text/plain; charset=utf-8");
	if (body != NULL)
		evbuffer_add_printf(body, "%d %s\n", code, reason);
	evhttp_send_reply(req, code, reason, body);
	if (body != NULL)
		evbuffer_free(body);
}

static void
metrics_request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *body;

	(void)arg;
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		metrics_reply_error(req, HTTP_NOTFOUND, "Not Found");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(hdr, "Allow", "GET, HEAD");
		metrics_reply_error(req, HTTP_BADMETHOD, "Method Not Allowed");
		return;
	}
	if ((body = evbuffer_new()) == NULL || metrics_render(body) != 0) {
		log_warnx("metrics: out of memory rendering a scrape");
		metrics_reply_error(req, HTTP_INTERNAL,
				    "Internal Server Error");
		if (body != NULL)
			evbuffer_free(body);
		return;
	}
	evhttp_add_header(hdr, "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_add_header(hdr, "Cache-Control", "no-store");
	if (cmd == EVHTTP_REQ_HEAD) {
		/* evhttp 2.1 would send a body even for HEAD: give it none,
		 * but the length a GET would have. */
		char cl[24];

		snprintf(cl, sizeof(cl), "%zu", evbuffer_get_length(body));
		evhttp_add_header(hdr, "Content-Length", cl);
		evhttp_send_reply(req, HTTP_OK, "OK", NULL);
	} else
		evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

int
metrics_start(struct event_base *base, const struct sockaddr *addr,
	      socklen_t len, struct queue *q, char *err, size_t errlen)
{
	struct evconnlistener *lis;
	struct timespec ts;

	if (M.http != NULL) {
		snprintf(err, errlen, "metrics: already started");
		return -1;
	}
	if ((M.http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "metrics: evhttp_new failed");
		return -1;
	}
	/* Every method reaches the callback, so that it can answer 405
	 * rather than evhttp's 501. */
	evhttp_set_allowed_methods(
	    M.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
			EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
			EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
			EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(M.http, METRICS_HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(M.http, METRICS_HTTP_HEADERS_MAX);
	evhttp_set_max_body_size(M.http, METRICS_HTTP_BODY_MAX);
	evhttp_set_gencb(M.http, metrics_request_cb, NULL);
	lis = evconnlistener_new_bind(
	    base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    -1, addr, (int)len);
	if (lis == NULL) {
		snprintf(err, errlen, "metrics: cannot listen: %s",
			 strerror(errno));
		goto fail;
	}
	if ((M.bound = evhttp_bind_listener(M.http, lis)) == NULL) {
		evconnlistener_free(lis);
		snprintf(err, errlen, "metrics: evhttp_bind_listener failed");
		goto fail;
	}
	M.queue = q;
	clock_gettime(CLOCK_REALTIME, &ts);
	M.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	return 0;
fail:
	evhttp_free(M.http);
	M.http = NULL;
	return -1;
}

int
metrics_local_addr(struct sockaddr_storage *ss, socklen_t *len)
{
	if (M.bound == NULL)
		return -1;
	*len = sizeof(*ss);
	return getsockname(evhttp_bound_socket_get_fd(M.bound),
			   (struct sockaddr *)ss, len);
}

void
metrics_stop(void)
{
	if (M.http != NULL)
		evhttp_free(M.http); /* frees the listener and connections */
	M.http = NULL;
	M.bound = NULL;
	M.queue = NULL;
	M.nhooks = 0;
}

void
metrics_add_text(metrics_text_fn *fn)
{
	if (M.nhooks == METRICS_TEXT_HOOKS_MAX)
		panic("more than %d metrics text hooks",
		      METRICS_TEXT_HOOKS_MAX);
	M.hooks[M.nhooks++] = fn;
}

void
metrics_set_sessions(metrics_sessions_fn *fn)
{
	M.sessions = fn;
}
