/*
 * metrics_top_test.c — bounded-cardinality counters (mta/observe/
 * metrics_top.c): at most N series and "_other", no series going down when
 * the top N changes, the lead a newcomer needs, the tracking bound, gauges,
 * escaping, user labels (never an address), and the lock-free user accept
 * counters under threads.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/observe/metrics_top.h"

static const char *const cols[] = { "result=\"a\"", "result=\"b\"" };
static const struct metrics_top_family fam = {
	"t_total", "Test.", "counter", "dest", 0, 2, cols,
};

/* The value of the sample that starts with PREFIX (name and labels), or
 * -1 when there is none. */
static long long
sample(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while ((p = strstr(p, prefix)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
		p += n;
	}
	return -1;
}

/* Distinct values of the dest label in TEXT. */
static int
series(const char *text)
{
	char seen[64][64];
	int n = 0, i;
	const char *p = text;

	while ((p = strstr(p, "t_total{dest=\"")) != NULL) {
		const char *v = p + 14, *e = strchr(v, '"');

		for (i = 0; i < n; i++)
			if (strncmp(seen[i], v, (size_t)(e - v)) == 0 &&
			    seen[i][e - v] == '\0')
				break;
		if (i == n && n < 64)
			snprintf(seen[n++], sizeof(seen[0]), "%.*s",
				 (int)(e - v), v);
		p = e;
	}
	return n;
}

static char *
render(struct metrics_top *t)
{
	struct metrics_text out = { NULL, 0, 0, false };

	metrics_top_select(t);
	metrics_top_write(t, &out, &fam);
	assert_false(out.oom);
	return out.buf;
}

static void
test_bounded(void **state)
{
	struct metrics_top *t = metrics_top_new(2, 2, 0);
	const char *names[] = { "v.test", "w.test", "x.test", "y.test",
				"z.test" };
	const unsigned vol[] = { 10, 8, 3, 2, 1 };
	char *text;
	unsigned i;

	(void)state;
	for (i = 0; i < 5; i++)
		metrics_top_add(t, names[i], 0, vol[i]);
	metrics_top_add(t, "z.test", 1, 4); /* z: 5 in all */
	text = render(t);
	assert_int_equal(series(text), 3);
	assert_int_equal(sample(text, "t_total{dest=\"v.test\",result=\"a\"}"),
			 10);
	assert_int_equal(sample(text, "t_total{dest=\"w.test\",result=\"a\"}"),
			 8);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 6);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"b\"}"),
			 4);
	assert_int_equal(sample(text, "t_total{dest=\"z.test\",result=\"a\"}"),
			 -1);
	free(text);
	metrics_top_free(t);
}

/* A purged label's series ends; what it counted unseen stays in "_other"
 * (which never goes down); counting again starts it from zero. */
static void
test_forget(void **state)
{
	struct metrics_top *t = metrics_top_new(2, 1, 0);
	char *text;

	(void)state;
	metrics_top_add(t, "v.test", 0, 10);
	metrics_top_add(t, "w.test", 0, 3);
	free(render(t));
	metrics_top_add(t, "w.test", 0, 2); /* unseen since the selection */
	assert_int_equal(metrics_top_forget(t, "v.test"), 1);
	assert_int_equal(metrics_top_forget(t, "w.test"), 1);
	assert_int_equal(metrics_top_forget(t, "w.test"), 0);
	assert_int_equal(metrics_top_forget(t, "x.test"), 0);
	text = render(t);
	assert_int_equal(series(text), 1);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 5);
	free(text);
	metrics_top_add(t, "v.test", 0, 1);
	text = render(t);
	assert_int_equal(sample(text, "t_total{dest=\"v.test\",result=\"a\"}"),
			 1);
	free(text);
	metrics_top_free(t);
}

/* The top changes: the newcomer shows its whole count, "_other" keeps
 * what it had, and nothing goes down. */
static void
test_change_monotonic(void **state)
{
	struct metrics_top *t = metrics_top_new(2, 1, 0);
	char *text;

	(void)state;
	metrics_top_add(t, "a", 0, 5);
	free(render(t));
	metrics_top_add(t, "b", 0, 3);
	text = render(t);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 3);
	free(text);
	/* b: 6, not an eighth more than a's 5: no change. */
	metrics_top_add(t, "b", 0, 3);
	text = render(t);
	assert_int_equal(sample(text, "t_total{dest=\"a\",result=\"a\"}"), 5);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 6);
	free(text);
	/* b: 13: it takes a's place with its whole count. */
	metrics_top_add(t, "b", 0, 7);
	text = render(t);
	assert_int_equal(sample(text, "t_total{dest=\"b\",result=\"a\"}"), 13);
	assert_int_equal(sample(text, "t_total{dest=\"a\",result=\"a\"}"), -1);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 6);
	free(text);
	/* a counts on, now under "_other". */
	metrics_top_add(t, "a", 0, 2);
	text = render(t);
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 8);
	assert_int_equal(series(text), 2);
	free(text);
	metrics_top_free(t);
}

/* Many more label values than the tracking bound: memory stays bounded,
 * every count lands somewhere, the busy one keeps its series. */
static void
test_tracking_bound(void **state)
{
	struct metrics_top *t = metrics_top_new(2, 2, 0);
	char name[32], *text;
	long long shown;
	unsigned i;

	(void)state;
	metrics_top_add(t, "busy.test", 0, 1000);
	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "d%u.test", i);
		metrics_top_add(t, name, 0, 1);
		if (i % 100 == 99)
			free(render(t));
	}
	text = render(t);
	assert_true(series(text) <= 3);
	assert_int_equal(
	    sample(text, "t_total{dest=\"busy.test\",result=\"a\"}"), 1000);
	shown = sample(text, "t_total{dest=\"_other\",result=\"a\"}");
	/* The other shown one (a d*.test) counted 1 on its own series. */
	assert_int_equal(shown + 1, 5000);
	free(text);
	metrics_top_free(t);
}

/* A reload lowers N: the least busy lose their series at once. */
static void
test_limit(void **state)
{
	struct metrics_top *t = metrics_top_new(2, 3, 0);
	char *text;

	(void)state;
	metrics_top_add(t, "a", 0, 9);
	metrics_top_add(t, "b", 0, 5);
	metrics_top_add(t, "c", 0, 2);
	text = render(t);
	assert_int_equal(series(text), 3);
	free(text);
	metrics_top_limit(t, 1);
	metrics_top_add(t, "c", 0, 1);
	text = render(t);
	assert_int_equal(series(text), 2);
	assert_int_equal(sample(text, "t_total{dest=\"a\",result=\"a\"}"), 9);
	/* c's new count, since it was shown before. */
	assert_int_equal(sample(text, "t_total{dest=\"_other\",result=\"a\"}"),
			 1);
	free(text);
	metrics_top_free(t);
}

static void
test_gauges_and_escape(void **state)
{
	struct metrics_gauge v[] = {
		{ "a", 5 },
		{ "b\"q\\", 9 },
		{ "c", 1 },
		{ "d", 7 },
	};
	struct metrics_text out = { NULL, 0, 0, false };

	(void)state;
	metrics_top_gauges(&out, "g", "Help.", "destination", v, 4, 2, false);
	assert_int_equal(sample(out.buf, "g{destination=\"b\\\"q\\\\\"}"), 9);
	assert_int_equal(sample(out.buf, "g{destination=\"d\"}"), 7);
	assert_int_equal(sample(out.buf, "g{destination=\"_other\"}"), 6);
	out.off = 0;
	metrics_top_gauges(&out, "g", "Help.", "destination", v, 4, 2, true);
	assert_int_equal(sample(out.buf, "g{destination=\"_other\"}"), 5);
	free(out.buf);
}

static void
test_user_label(void **state)
{
	char l[METRICS_LABEL_MAX];

	(void)state;
	metrics_user_label("bob", l);
	assert_string_equal(l, "bob");
	metrics_user_label("tenant-7.eu+x", l);
	assert_string_equal(l, "tenant-7.eu+x");
	metrics_user_label(NULL, l);
	assert_string_equal(l, "_relay");
	metrics_user_label("dave@tenant.test", l);
	assert_int_equal(strncmp(l, "hash:", 5), 0);
	assert_null(strchr(l, '@'));
	assert_null(strstr(l, "dave"));
	metrics_user_label("_other", l); /* never a reserved value */
	assert_int_equal(strncmp(l, "hash:", 5), 0);
	metrics_user_label("white space", l);
	assert_int_equal(strncmp(l, "hash:", 5), 0);
}

#define THREADS 4
#define PER     20000

static void *
accept_main(void *arg)
{
	unsigned i;

	for (i = 0; i < PER; i++)
		metrics_user_accepted((i % 3 == 0) ? (const char *)arg : NULL);
	return NULL;
}

static void
test_user_accepts_threads(void **state)
{
	pthread_t th[THREADS];
	const char *users[THREADS] = { "u1", "u2", "u1", "u3" };
	char *buf = malloc(1 << 16);
	size_t n;
	unsigned i;
	long long u1, relay;

	(void)state;
	metrics_user_top(20);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, accept_main, (void *)users[i]),
		    0);
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	n = metrics_user_accepts_text(buf, 1 << 16);
	assert_true(n < (1 << 16));
	buf[n] = '\0';
	u1 = sample(buf, "outpost_user_messages_received_total{user=\"u1\"}");
	relay = sample(buf,
		       "outpost_user_messages_received_total{user=\"_relay\"}");
	/* i % 3 == 0 for 6667 of 20000. */
	assert_int_equal(u1, 2 * 6667);
	assert_int_equal(relay, THREADS * (PER - 6667));
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_change_monotonic),
		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_tracking_bound),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_gauges_and_escape),
		cmocka_unit_test(test_user_label),
		cmocka_unit_test(test_user_accepts_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
