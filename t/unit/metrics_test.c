/*
 * metrics_test.c — the Prometheus endpoint (mta/observe/metrics.c): histogram
 * buckets, counters from stats.h and the queue, text hooks, HTTP status
 * codes, and the exposition checked by `promtool check metrics` when
 * promtool is installed.  The endpoint listens on a free 127.0.0.1 port on
 * the test's own event base, run by a second thread; the test scrapes it
 * with a plain blocking socket.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "queue/queue.h"
#include "mta/observe/metrics.h"
#include "mta/observe/stats.h"

/* The daemon defines this in main.c, which the library leaves out. */
struct stats stats;

#define RESPONSE_MAX (1u << 20)

static struct {
	char dir[64];
	struct queue *queue;
	struct event_base *base;
	pthread_t thread;
	bool running;
	struct sockaddr_in addr;
} T;

/* Helpers ------------------------------------------------------------- */

static void *
loop_main(void *arg)
{
	(void)arg;
	event_base_loop(T.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* Run the base (and so the endpoint) on a thread of its own, so that the
 * test can talk to it with blocking calls. */
static void
loop_stop(void)
{
	if (!T.running)
		return;
	event_base_loopbreak(T.base);
	assert_int_equal(pthread_join(T.thread, NULL), 0);
	T.running = false;
}

static void
loop_run(void)
{
	loop_stop(); /* left running by a test that failed */
	assert_int_equal(pthread_create(&T.thread, NULL, loop_main, NULL), 0);
	T.running = true;
}

/* Send REQUEST (raw HTTP) and read the whole answer (the server closes:
 * HTTP/1.0 or "Connection: close").  Returns a malloc'd NUL-terminated
 * response, *STATUS set from the status line. */
static char *
http_raw(const char *request, int *status)
{
	struct timeval tv = { 5, 0 };
	size_t got = 0;
	char *resp;
	ssize_t n;
	int fd;

	assert_int_not_equal(fd = socket(AF_INET, SOCK_STREAM, 0), -1);
	assert_int_equal(
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(
	    connect(fd, (struct sockaddr *)&T.addr, sizeof(T.addr)), 0);
	assert_int_equal(write(fd, request, strlen(request)),
			 (ssize_t)strlen(request));
	assert_non_null(resp = malloc(RESPONSE_MAX + 1));
	while ((n = read(fd, resp + got, RESPONSE_MAX - got)) > 0)
		got += (size_t)n;
	if (n < 0)
		fail_msg("read: %s", strerror(errno));
	close(fd);
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.%*d %d", status) != 1)
		fail_msg("no status line in \"%.80s\"", resp);
	return resp;
}

static char *
http_get(const char *method, const char *path, int *status)
{
	char req[256];

	snprintf(req, sizeof(req),
		 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Connection: close\r\n\r\n",
		 method, path);
	return http_raw(req, status);
}

/* The body of an HTTP response (after the blank line). */
static const char *
http_body(const char *resp)
{
	const char *p = strstr(resp, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

/* A header's value (case-insensitive name), copied into BUF; NULL when
 * absent. */
static const char *
http_header(const char *resp, const char *name, char *buf, size_t len)
{
	const char *line = strstr(resp, "\r\n"),
		   *end = strstr(resp, "\r\n\r\n");
	size_t nl = strlen(name);

	while (line != NULL && line < end) {
		line += 2;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1, *e = strstr(v, "\r\n");

			while (*v == ' ')
				v++;
			snprintf(buf, len, "%.*s", (int)(e - v), v);
			return buf;
		}
		line = strstr(line, "\r\n");
	}
	return NULL;
}

/* The value of the sample written exactly as SERIES ("name" or
 * "name{labels}") in TEXT; fails the test when absent. */
static double
sample(const char *text, const char *series)
{
	size_t sl = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[sl] == ' ')
			return strtod(p + sl + 1, NULL);
		p += sl;
	}
	fail_msg("no sample %s", series);
	return 0;
}

static int
family_has(const char *text, const char *name, const char *type)
{
	char help[128], typ[128];

	snprintf(help, sizeof(help), "# HELP %s ", name);
	snprintf(typ, sizeof(typ), "# TYPE %s %s\n", name, type);
	return strstr(text, help) != NULL && strstr(text, typ) != NULL;
}

static char *
render(void)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	assert_non_null(b);
	assert_int_equal(metrics_render(b), 0);
	n = evbuffer_get_length(b);
	assert_non_null(s = malloc(n + 1));
	assert_int_equal(evbuffer_remove(b, s, n), (int)n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

/* Text hooks ---------------------------------------------------------- */

static size_t
hook_small(char *buf, size_t len)
{
	return (size_t)snprintf(
	    buf, len,
	    "# HELP outpost_test_queue_messages Messages by state.\n"
	    "# TYPE outpost_test_queue_messages gauge\n"
	    "outpost_test_queue_messages{state=\"ready\"} 7\n"
	    "outpost_test_queue_messages{state=\"held\"} 2\n");
}

static unsigned hook_big_calls;

/* Needs more than the first buffer offered: exercises the second call. */
static size_t
hook_big(char *buf, size_t len)
{
	size_t need = 0, i;
	char line[96];
	int n;

	hook_big_calls++;
	n = snprintf(line, sizeof(line),
		     "# HELP outpost_test_big Big.\n"
		     "# TYPE outpost_test_big gauge\n");
	if ((size_t)n < len)
		memcpy(buf, line, (size_t)n);
	need += (size_t)n;
	for (i = 0; i < 1000; i++) {
		n = snprintf(line, sizeof(line),
			     "outpost_test_big{dest=\"d%04zu\"} %zu\n", i, i);
		if (need + (size_t)n < len)
			memcpy(buf + need, line, (size_t)n);
		need += (size_t)n;
	}
	return need;
}

/* No final newline: the renderer adds one. */
static size_t
hook_no_newline(char *buf, size_t len)
{
	return (size_t)snprintf(buf, len,
				"# HELP outpost_test_nonl No newline.\n"
				"# TYPE outpost_test_nonl gauge\n"
				"outpost_test_nonl 1");
}

/* Setup --------------------------------------------------------------- */

static int
setup(void **state)
{
	struct queue_config qc;
	struct sockaddr_storage ss;
	struct sockaddr_in sin;
	char path[128], key[128], err[512];
	socklen_t len;

	(void)state;
	snprintf(T.dir, sizeof(T.dir), "/tmp/outpost-metrics-XXXXXX");
	if (mkdtemp(T.dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/queue", T.dir);
	snprintf(key, sizeof(key), "%s/queue.key", T.dir);
	memset(&qc, 0, sizeof(qc));
	qc.path = path;
	qc.key_file = key;
	qc.map_size = 16u << 20;
	qc.commit_max_batch = 64;
	if (queue_open(&T.queue, &qc, err, sizeof(err)) != 0) {
		fprintf(stderr, "queue_open: %s\n", err);
		return -1;
	}
	if ((T.base = event_base_new()) == NULL)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = 0; /* a free port */
	if (metrics_start(T.base, (struct sockaddr *)&sin, sizeof(sin), T.queue,
			  err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (metrics_local_addr(&ss, &len) != 0 || ss.ss_family != AF_INET)
		return -1;
	memcpy(&T.addr, &ss, sizeof(T.addr));
	/* Only loopback, ever. */
	if (ntohl(T.addr.sin_addr.s_addr) != INADDR_LOOPBACK ||
	    T.addr.sin_port == 0)
		return -1;
	metrics_add_text(hook_small);
	metrics_add_text(hook_big);
	metrics_add_text(hook_no_newline);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	loop_stop();
	metrics_stop();
	metrics_stop(); /* twice is harmless */
	event_base_free(T.base);
	queue_close(T.queue);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", T.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Tests --------------------------------------------------------------- */

/* Bounds ascend and are finite: a typo in a table would mis-bucket. */
static void
test_hist_tables(void **state)
{
	struct metrics_hist *h[] = { &metrics_accept_latency,
				     &metrics_delivery_latency,
				     &metrics_commit_batch,
				     &metrics_sign_seconds };
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
		assert_true(h[i]->nbounds > 0);
		assert_true(h[i]->nbounds <= METRICS_HIST_BOUNDS_MAX);
		for (j = 1; j < h[i]->nbounds; j++)
			if (!(h[i]->bounds[j - 1] < h[i]->bounds[j]))
				fail_msg("%s: bound %zu (%g) <= bound %zu (%g)",
					 h[i]->name, j, h[i]->bounds[j], j - 1,
					 h[i]->bounds[j - 1]);
	}
	assert_true(metrics_accept_latency.bounds[0] == 0.0005);
	assert_true(
	    metrics_accept_latency.bounds[metrics_accept_latency.nbounds - 1] ==
	    10);
	assert_true(metrics_delivery_latency
			.bounds[metrics_delivery_latency.nbounds - 1] == 86400);
	assert_true(
	    metrics_commit_batch.bounds[metrics_commit_batch.nbounds - 1] ==
	    4096);
	assert_true(metrics_sign_seconds.bounds[0] == 0.00005);
	assert_true(
	    metrics_sign_seconds.bounds[metrics_sign_seconds.nbounds - 1] == 1);
}

static const struct hist_case {
	const char *name;
	double value;
	const char *bucket; /* the smallest le= that counts it */
} hist_cases[] = {
	{ "zero", 0, "0.0005" },
	{ "negative counts as 0", -1, "0.0005" },
	{ "on a bound", 0.001, "0.001" },
	{ "just above", 0.0010001, "0.0025" },
	{ "middle", 0.3, "0.5" },
	{ "last bound", 10, "10" },
	{ "overflow", 11, "+Inf" },
};

/* Each value lands in the right bucket, buckets are cumulative, +Inf ==
 * _count, _sum adds up; NaN and infinity are ignored. */
static void
test_hist_observe(void **state)
{
	const char *n = "outpost_accept_latency_seconds";
	char series[128];
	double sum = 0;
	size_t i, j;
	char *text;

	(void)state;
	for (i = 0; i < sizeof(hist_cases) / sizeof(hist_cases[0]); i++) {
		const struct hist_case *c = &hist_cases[i];

		metrics_observe(&metrics_accept_latency, c->value);
		sum += c->value > 0 ? c->value : 0;
		text = render();
		for (j = 0; j <= metrics_accept_latency.nbounds; j++) {
			char le[32];
			double got;
			size_t k, want = 0;

			if (j < metrics_accept_latency.nbounds)
				snprintf(le, sizeof(le), "%.15g",
					 metrics_accept_latency.bounds[j]);
			else
				snprintf(le, sizeof(le), "+Inf");
			/* Cases up to i whose bucket is at or below le. */
			for (k = 0; k <= i; k++) {
				const char *b = hist_cases[k].bucket;
				double bv = strcmp(b, "+Inf") == 0
						? 1e300
						: strtod(b, NULL);
				double lv =
				    j < metrics_accept_latency.nbounds
					? metrics_accept_latency.bounds[j]
					: 1e300;

				want += bv <= lv;
			}
			snprintf(series, sizeof(series), "%s_bucket{le=\"%s\"}",
				 n, le);
			got = sample(text, series);
			if (got != (double)want)
				fail_msg("after case \"%s\": %s = %g, want %zu",
					 c->name, series, got, want);
		}
		snprintf(series, sizeof(series), "%s_count", n);
		assert_true(sample(text, series) == (double)(i + 1));
		snprintf(series, sizeof(series), "%s_sum", n);
		if (sample(text, series) - sum > 1e-9 ||
		    sum - sample(text, series) > 1e-9)
			fail_msg("%s = %.17g, want %.17g", series,
				 sample(text, series), sum);
		free(text);
	}
	metrics_observe(&metrics_accept_latency, NAN);
	metrics_observe(&metrics_accept_latency, INFINITY);
	text = render();
	snprintf(series, sizeof(series), "%s_count", n);
	assert_true(sample(text, series) == (double)i);
	free(text);
}

struct observer {
	struct metrics_hist *h;
	unsigned n;
};

static void *
observer_main(void *arg)
{
	struct observer *o = arg;
	unsigned i;

	for (i = 0; i < o->n; i++)
		metrics_observe(o->h, (double)(i % 8) + 1);
	return NULL;
}

/* Lock-free from several threads: nothing lost, the sum exact (small
 * integers add exactly in a double). */
static void
test_hist_threads(void **state)
{
	struct observer o = { &metrics_commit_batch, 100000 };
	pthread_t th[4];
	char *text;
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, observer_main, &o), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	text = render();
	assert_true(sample(text, "outpost_queue_commit_batch_ops_count") ==
		    400000);
	/* Each thread: values 1..8, 12500 times each: sum 4.5 * 100000. */
	assert_true(sample(text, "outpost_queue_commit_batch_ops_sum") ==
		    4 * 450000.0);
	assert_true(
	    sample(text, "outpost_queue_commit_batch_ops_bucket{le=\"1\"}") ==
	    50000);
	assert_true(
	    sample(text, "outpost_queue_commit_batch_ops_bucket{le=\"4\"}") ==
	    200000);
	assert_true(
	    sample(text, "outpost_queue_commit_batch_ops_bucket{le=\"8\"}") ==
	    400000);
	free(text);
}

/* Threads that count in their own blocks: STATS_GET and the scrape add
 * up live blocks, and a thread's counts stay counted after it ends. */
struct counter_thread {
	pthread_t th;
	struct stats *mine;
	unsigned n;
	pthread_barrier_t *counted, *go;
};

static void *
counter_main(void *arg)
{
	struct counter_thread *t = arg;
	unsigned i;

	for (i = 0; i < t->n; i++) {
		STATS_INC(delivered);
		metrics_observe(&metrics_sign_seconds, 0.001);
	}
	STATS_ADD(deferred, 3);
	t->mine = STATS_MINE();
	pthread_barrier_wait(t->counted);
	pthread_barrier_wait(t->go); /* the main thread reads meanwhile */
	return NULL;
}

static void
test_stats_blocks(void **state)
{
	struct counter_thread t[4];
	pthread_barrier_t counted, go;
	uint64_t d0 = STATS_GET(delivered), f0 = STATS_GET(deferred);
	char *text, series[128];
	double c0;
	size_t i, j;

	(void)state;
	text = render();
	c0 = sample(text, "outpost_dkim_sign_duration_seconds_count");
	free(text);
	pthread_barrier_init(&counted, NULL, 5);
	pthread_barrier_init(&go, NULL, 5);
	for (i = 0; i < 4; i++) {
		t[i] = (struct counter_thread){ .n = 50000,
						.counted = &counted,
						.go = &go };
		assert_int_equal(
		    pthread_create(&t[i].th, NULL, counter_main, &t[i]), 0);
	}
	pthread_barrier_wait(&counted);
	/* Each thread counted in a block of its own, on cache lines no
	 * other thread's block shares, and not in the process-wide one. */
	for (i = 0; i < 4; i++) {
		assert_true(t[i].mine != &stats);
		assert_int_equal((uintptr_t)t[i].mine % 64, 0);
		for (j = 0; j < i; j++)
			assert_true((char *)t[i].mine - (char *)t[j].mine >=
					(ptrdiff_t)sizeof(struct stats) + 64 ||
				    (char *)t[j].mine - (char *)t[i].mine >=
					(ptrdiff_t)sizeof(struct stats) + 64);
	}
	assert_int_equal(STATS_GET(delivered), d0 + 200000);
	assert_int_equal(STATS_GET(deferred), f0 + 12);
	text = render();
	snprintf(series, sizeof(series),
		 "outpost_deliveries_total{result=\"delivered\"}");
	assert_true(sample(text, series) == (double)(d0 + 200000));
	assert_true(sample(text, "outpost_dkim_sign_duration_seconds_count") ==
		    c0 + 200000);
	free(text);
	pthread_barrier_wait(&go);
	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_join(t[i].th, NULL), 0);
	/* Ended: folded into the process-wide counters, once. */
	assert_int_equal(STATS_GET(delivered), d0 + 200000);
	assert_true(atomic_load(&stats.delivered) >= 200000);
	text = render();
	assert_true(sample(text, "outpost_dkim_sign_duration_seconds_count") ==
		    c0 + 200000);
	assert_true(
	    sample(text,
		   "outpost_dkim_sign_duration_seconds_bucket{le=\"0.001\"}") >=
	    200000);
	free(text);
	pthread_barrier_destroy(&counted);
	pthread_barrier_destroy(&go);
}

static const struct family_case {
	const char *name, *type;
} family_cases[] = {
	{ "outpost_messages_received_total", "counter" },
	{ "outpost_messages_rejected_total", "counter" },
	{ "outpost_deliveries_total", "counter" },
	{ "outpost_auth_failures_total", "counter" },
	{ "outpost_auth_success_total", "counter" },
	{ "outpost_tls_handshakes_total", "counter" },
	{ "outpost_sessions_total", "counter" },
	{ "outpost_smtp_sessions", "gauge" },
	{ "outpost_queue_commits_total", "counter" },
	{ "outpost_queue_ops_total", "counter" },
	{ "outpost_queue_commit_seconds_total", "counter" },
	{ "outpost_log_lines_total", "counter" },
	{ "outpost_log_dropped_total", "counter" },
	{ "outpost_build_info", "gauge" },
	{ "outpost_start_time_seconds", "gauge" },
	{ "outpost_accept_latency_seconds", "histogram" },
	{ "outpost_delivery_latency_seconds", "histogram" },
	{ "outpost_queue_commit_batch_ops", "histogram" },
	{ "outpost_dkim_sign_duration_seconds", "histogram" },
	{ "process_resident_memory_bytes", "gauge" },
	{ "outpost_test_queue_messages", "gauge" },
};

static const struct counter_case {
	const char *series;
	_Atomic uint64_t *field;
	uint64_t add;
} counter_cases[] = {
	{ "outpost_sessions_total", &stats.sessions, 3 },
	{ "outpost_messages_received_total", &stats.messages_accepted, 5 },
	{ "outpost_recipients_received_total", &stats.recipients_accepted, 9 },
	{ "outpost_messages_rejected_total{reason=\"relay\"}",
	  &stats.rejected_relay, 2 },
	{ "outpost_messages_rejected_total{reason=\"dmarc\"}",
	  &stats.rejected_dmarc, 4 },
	{ "outpost_messages_rejected_total{reason=\"size\"}",
	  &stats.rejected_size, 6 },
	{ "outpost_messages_rejected_total{reason=\"content\"}",
	  &stats.rejected_content, 7 },
	{ "outpost_deliveries_total{result=\"delivered\"}", &stats.delivered,
	  11 },
	{ "outpost_deliveries_total{result=\"deferred\"}", &stats.deferred,
	  12 },
	{ "outpost_deliveries_total{result=\"bounced\"}", &stats.bounced, 13 },
	{ "outpost_deliveries_total{result=\"expired\"}", &stats.expired, 14 },
	{ "outpost_auth_failures_total", &stats.auth_failures, 15 },
	{ "outpost_auth_success_total", &stats.auth_success, 16 },
	{ "outpost_tls_handshakes_total", &stats.tls_handshakes, 17 },
};

/* Commit one message through the real queue writer and wait for it: one
 * op in one write transaction. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, status;
} C = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };

static void
commit_done(struct queue_op *op, int status, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&C.mu);
	C.status = status;
	C.done = 1;
	pthread_cond_signal(&C.cv);
	pthread_mutex_unlock(&C.mu);
	queue_op_free(op);
}

static void
queue_one(void)
{
	struct queue_op *op = queue_op_new(QOP_INSERT);
	static const char body[] = "Subject: m\r\n\r\nbody\r\n";

	assert_non_null(op);
	op->env.id = queue_id_next(T.queue);
	op->env.created_ms = op->env.next_attempt_ms =
	    (int64_t)time(NULL) * 1000;
	assert_non_null(op->env.sender = strdup("s@sender.test"));
	assert_non_null(op->env.client = strdup("127.0.0.1"));
	assert_non_null(op->env.helo = strdup("client.test"));
	assert_non_null(op->env.rcpts = calloc(1, sizeof(*op->env.rcpts)));
	op->env.nrcpts = 1;
	assert_non_null(op->env.rcpts[0].addr = strdup("r@sink.test"));
	assert_non_null(op->body = malloc(sizeof(body) - 1));
	memcpy(op->body, body, sizeof(body) - 1);
	op->body_len = sizeof(body) - 1;
	C.done = 0;
	queue_submit(T.queue, op, commit_done, NULL);
	pthread_mutex_lock(&C.mu);
	while (!C.done)
		pthread_cond_wait(&C.cv, &C.mu);
	pthread_mutex_unlock(&C.mu);
	assert_int_equal(C.status, 0);
}

/* Families present with HELP and TYPE; counters show what was added. */
static void
test_scrape_values(void **state)
{
	double before[sizeof(counter_cases) / sizeof(counter_cases[0])];
	double commits0, ops0, failed0;
	time_t t0 = time(NULL);
	const char *body;
	char *resp, ct[128];
	int status;
	size_t i;

	(void)state;
	loop_run();
	resp = http_get("GET", "/metrics", &status);
	assert_int_equal(status, 200);
	body = http_body(resp);
	for (i = 0; i < sizeof(counter_cases) / sizeof(counter_cases[0]); i++)
		before[i] = sample(body, counter_cases[i].series);
	commits0 = sample(body, "outpost_queue_commits_total");
	ops0 = sample(body, "outpost_queue_ops_total");
	failed0 = sample(body, "outpost_queue_failed_ops_total");
	free(resp);
	/* Two messages, each alone in its write transaction. */
	queue_one();
	queue_one();

	for (i = 0; i < sizeof(counter_cases) / sizeof(counter_cases[0]); i++)
		atomic_fetch_add(counter_cases[i].field, counter_cases[i].add);
	resp = http_get("GET", "/metrics?x=1", &status);
	loop_stop();
	assert_int_equal(status, 200);
	assert_non_null(http_header(resp, "Content-Type", ct, sizeof(ct)));
	assert_string_equal(ct, METRICS_CONTENT_TYPE);
	body = http_body(resp);
	for (i = 0; i < sizeof(family_cases) / sizeof(family_cases[0]); i++)
		if (!family_has(body, family_cases[i].name,
				family_cases[i].type))
			fail_msg("family %s (%s) missing", family_cases[i].name,
				 family_cases[i].type);
	for (i = 0; i < sizeof(counter_cases) / sizeof(counter_cases[0]); i++) {
		double got = sample(body, counter_cases[i].series);

		if (got != before[i] + (double)counter_cases[i].add)
			fail_msg("%s = %g, want %g", counter_cases[i].series,
				 got, before[i] + (double)counter_cases[i].add);
	}
	assert_true(sample(body, "outpost_smtp_sessions") == 0);
	assert_true(sample(body, "outpost_build_info{version=\"" OUTPOST_VERSION
				 "\"}") == 1);
	/* metrics_start() ran in setup, just before this test. */
	assert_true(sample(body, "outpost_start_time_seconds") >=
		    (double)t0 - 60);
	assert_true(sample(body, "outpost_start_time_seconds") <=
		    (double)time(NULL) + 1);
	assert_true(sample(body, "outpost_queue_commits_total") ==
		    commits0 + 2);
	assert_true(sample(body, "outpost_queue_ops_total") == ops0 + 2);
	assert_true(sample(body, "outpost_queue_failed_ops_total") == failed0);
	assert_true(
	    sample(body, "outpost_test_queue_messages{state=\"ready\"}") == 7);
	assert_true(sample(body, "outpost_test_big{dest=\"d0999\"}") == 999);
	assert_true(sample(body, "outpost_test_nonl") == 1);
	/* The big hook was asked twice per scrape: once too small. */
	assert_true(hook_big_calls >= 4);
	/* No label ever names an address. */
	assert_null(strchr(body, '@'));
	free(resp);
}

static const struct status_case {
	const char *method, *path;
	int status;
	const char *allow; /* expected Allow header, or NULL */
} status_cases[] = {
	{ "GET", "/metrics", 200, NULL },
	{ "GET", "/", 404, NULL },
	{ "GET", "/metrics/", 404, NULL },
	{ "GET", "/metricsx", 404, NULL },
	{ "GET", "/favicon.ico", 404, NULL },
	{ "POST", "/metrics", 405, "GET, HEAD" },
	{ "PUT", "/metrics", 405, "GET, HEAD" },
	{ "DELETE", "/metrics", 405, "GET, HEAD" },
	{ "OPTIONS", "/metrics", 405, "GET, HEAD" },
};

static void
test_http_status(void **state)
{
	char *resp, buf[64];
	const char *ct;
	int status;
	size_t i;

	(void)state;
	loop_run();
	for (i = 0; i < sizeof(status_cases) / sizeof(status_cases[0]); i++) {
		const struct status_case *c = &status_cases[i];

		resp = http_get(c->method, c->path, &status);
		if (status != c->status)
			fail_msg("%s %s: %d, want %d", c->method, c->path,
				 status, c->status);
		if (c->allow != NULL) {
			assert_non_null(
			    http_header(resp, "Allow", buf, sizeof(buf)));
			assert_string_equal(buf, c->allow);
		}
		free(resp);
	}
	/* HEAD: the headers of a GET, no body. */
	resp = http_get("HEAD", "/metrics", &status);
	assert_int_equal(status, 200);
	assert_non_null(
	    ct = http_header(resp, "Content-Type", buf, sizeof(buf)));
	assert_string_equal(ct, METRICS_CONTENT_TYPE);
	assert_string_equal(http_body(resp), "");
	assert_non_null(http_header(resp, "Content-Length", buf, sizeof(buf)));
	assert_true(strtoul(buf, NULL, 10) > 1000);
	free(resp);
	/* HTTP/1.0 without a Host. */
	resp = http_raw("GET /metrics HTTP/1.0\r\n\r\n", &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(http_body(resp), "outpost_sessions_total "));
	free(resp);
	/* Garbage gets an error, and the server lives on. */
	resp = http_raw("\x01\x02 nonsense\r\n\r\n", &status);
	assert_true(status >= 400 && status < 500);
	free(resp);
	resp = http_get("GET", "/metrics", &status);
	assert_int_equal(status, 200);
	free(resp);
	loop_stop();
}

/* promtool's parser and linter on a real scrape (skipped without it). */
static void
test_promtool(void **state)
{
	const char *bins[] = { "/usr/bin/promtool", "/usr/local/bin/promtool" };
	const char *bin = NULL;
	char file[128], out[128], cmd[512], msg[4096];
	size_t i, n;
	char *text;
	FILE *f;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(bins) / sizeof(bins[0]); i++)
		if (access(bins[i], X_OK) == 0)
			bin = bins[i];
	if (bin == NULL) {
		fprintf(stderr, "# promtool not installed: check skipped\n");
		skip();
	}
	/* Non-zero histograms too. */
	metrics_observe(&metrics_delivery_latency, 42);
	metrics_observe(&metrics_sign_seconds, 0.0003);
	text = render();
	snprintf(file, sizeof(file), "%s/scrape.txt", T.dir);
	snprintf(out, sizeof(out), "%s/promtool.out", T.dir);
	assert_non_null(f = fopen(file, "w"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	free(text);
	snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' > '%s' 2>&1", bin,
		 file, out);
	rc = system(cmd);
	assert_non_null(f = fopen(out, "r"));
	n = fread(msg, 1, sizeof(msg) - 1, f);
	msg[n] = '\0';
	fclose(f);
	/* Exit status 0 and not one lint remark. */
	if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0 || n != 0)
		fail_msg("promtool check metrics (see %s): status %d: %s", file,
			 rc, msg);
}

/* Scrapes in a row: every render and every GET works, and the server
 * keeps nothing per scrape (ASan's leak check sees it; the connections
 * are closed, or the fds would run out).  What a scrape costs is for
 * t/bench (observe.sh scrapes a loaded daemon), not a unit test. */
static void
test_scrape_repeated(void **state)
{
	const unsigned nrender = 2000, nhttp = 200;
	struct evbuffer *b;
	unsigned i;
	char *resp;
	int status;

	(void)state;
	assert_non_null(b = evbuffer_new());
	for (i = 0; i < nrender; i++) {
		assert_int_equal(metrics_render(b), 0);
		assert_true(evbuffer_get_length(b) > 1000);
		evbuffer_drain(b, evbuffer_get_length(b));
	}
	evbuffer_free(b);

	loop_run();
	for (i = 0; i < nhttp; i++) {
		resp = http_get("GET", "/metrics", &status);
		assert_int_equal(status, 200);
		assert_non_null(strstr(http_body(resp),
				       "\noutpost_test_big{dest=\"d0999\"} "
				       "999\n"));
		free(resp);
	}
	loop_stop();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_tables),
		cmocka_unit_test(test_hist_observe),
		cmocka_unit_test(test_hist_threads),
		cmocka_unit_test(test_stats_blocks),
		cmocka_unit_test(test_scrape_values),
		cmocka_unit_test(test_http_status),
		cmocka_unit_test(test_promtool),
		cmocka_unit_test(test_scrape_repeated),
	};

	if (evthread_use_pthreads() != 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
