/*
 * scan_cache_test.c — the verdict cache of mta/receive/scan_cache.c: get,
 * put and replace, TTL on an explicit clock, LRU order at the bound,
 * flush, counters, a cache of 0 entries, four threads at once, the keyed
 * hash of a leaf (same attachment in two messages, two caches' keys), and
 * the memory an entry costs (mallinfo2, printed).
 */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/receive/scan_cache.h"
#include "t/unit/test_row.h"

/* A hash made of a number, as the cache sees only its 32 bytes. */
static void
hash_of(uint64_t v, uint8_t h[SCAN_HASH_BYTES])
{
	size_t i;

	for (i = 0; i < SCAN_HASH_BYTES; i++)
		h[i] = (uint8_t)((v * 0x9e3779b97f4a7c15ull) >> (i % 8 * 8)) ^
		       (uint8_t)i;
}

static void
test_cache_get_put_replace(void **state)
{
	struct scan_cache *c = scan_cache_new(10, 60000);
	struct scan_cache_stats st;
	uint8_t h[SCAN_HASH_BYTES], other[SCAN_HASH_BYTES];
	char name[SCAN_NAME_MAX], longname[300];

	(void)state;
	assert_non_null(c);
	hash_of(1, h);
	hash_of(2, other);
	assert_int_equal(scan_cache_get(c, h, 0, name, sizeof(name)),
			 SCAN_UNKNOWN);
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 0);
	assert_int_equal(scan_cache_get(c, h, 1, name, sizeof(name)),
			 SCAN_CLEAN);
	assert_string_equal(name, "");
	assert_int_equal(scan_cache_get(c, other, 1, NULL, 0), SCAN_UNKNOWN);
	/* Same hash again: replaced, not added. */
	scan_cache_put(c, h, SCAN_INFECTED, "Eicar-Test-Signature", 2);
	assert_int_equal(scan_cache_get(c, h, 3, name, sizeof(name)),
			 SCAN_INFECTED);
	assert_string_equal(name, "Eicar-Test-Signature");
	/* A name is kept to SCAN_NAME_MAX - 1 bytes, and cut to NAMELEN. */
	memset(longname, 'N', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	scan_cache_put(c, other, SCAN_INFECTED, longname, 4);
	assert_int_equal(scan_cache_get(c, other, 5, name, sizeof(name)),
			 SCAN_INFECTED);
	assert_int_equal(strlen(name), SCAN_NAME_MAX - 1);
	assert_int_equal(scan_cache_get(c, other, 5, name, 4), SCAN_INFECTED);
	assert_string_equal(name, "NNN");
	/* UNKNOWN is not a verdict to keep. */
	hash_of(3, other);
	scan_cache_put(c, other, SCAN_UNKNOWN, NULL, 6);
	scan_cache_stats(c, &st);
	assert_int_equal(st.entries, 2);
	assert_int_equal(st.max_entries, 10);
	assert_int_equal(st.inserts, 2);
	assert_int_equal(st.hits, 4);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.evictions + st.expired + st.flushes, 0);
	scan_cache_free(c);
	scan_cache_free(NULL);
}

static void
test_cache_ttl(void **state)
{
	struct scan_cache *c = scan_cache_new(10, 1000);
	struct scan_cache_stats st;
	uint8_t h[SCAN_HASH_BYTES];

	(void)state;
	assert_non_null(c);
	hash_of(7, h);
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 5000);
	assert_int_equal(scan_cache_get(c, h, 5999, NULL, 0), SCAN_CLEAN);
	assert_int_equal(scan_cache_get(c, h, 6000, NULL, 0), SCAN_UNKNOWN);
	/* Gone, not merely hidden: a later clock still misses. */
	assert_int_equal(scan_cache_get(c, h, 5500, NULL, 0), SCAN_UNKNOWN);
	/* A put renews the time. */
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 7000);
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 7900);
	assert_int_equal(scan_cache_get(c, h, 8500, NULL, 0), SCAN_CLEAN);
	scan_cache_stats(c, &st);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.inserts, 2);
	scan_cache_free(c);
	/* TTL 0: only eviction and flush remove. */
	c = scan_cache_new(10, 0);
	assert_non_null(c);
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 0);
	assert_int_equal(scan_cache_get(c, h, INT64_MAX / 2, NULL, 0),
			 SCAN_CLEAN);
	scan_cache_free(c);
}

/* At the bound, the entry least recently used (put or hit) goes first. */
static void
test_cache_lru(void **state)
{
	static const struct lru_row {
		const char *name;
		unsigned touch; /* hit before the 4th put, 0: none */
		unsigned gone;  /* the one evicted */
	} rows[] = {
		{ "no touch: the oldest goes", 0, 1 },
		{ "oldest touched: the second goes", 1, 2 },
		{ "middle touched: the oldest goes", 2, 1 },
	};
	struct scan_cache_stats st;
	uint8_t h[5][SCAN_HASH_BYTES];
	size_t r;
	unsigned i;

	(void)state;
	for (i = 1; i <= 4; i++)
		hash_of(i, h[i]);
	for (r = 0; r < NELEM(rows); r++) {
		struct scan_cache *c = scan_cache_new(3, 0);

		assert_non_null(c);
		for (i = 1; i <= 3; i++)
			scan_cache_put(c, h[i], SCAN_CLEAN, NULL, i);
		if (rows[r].touch)
			scan_cache_get(c, h[rows[r].touch], 10, NULL, 0);
		scan_cache_put(c, h[4], SCAN_CLEAN, NULL, 11);
		for (i = 1; i <= 4; i++)
			ROW_CHECK(
			    scan_cache_get(c, h[i], 12, NULL, 0) ==
				(i == rows[r].gone ? SCAN_UNKNOWN : SCAN_CLEAN),
			    rows[r].name, "entry %u", i);
		scan_cache_stats(c, &st);
		ROW_CHECK(st.entries == 3 && st.evictions == 1, rows[r].name,
			  "entries %llu evictions %llu",
			  (unsigned long long)st.entries,
			  (unsigned long long)st.evictions);
		scan_cache_free(c);
	}
}

static void
test_cache_flush(void **state)
{
	struct scan_cache *c = scan_cache_new(100, 0);
	struct scan_cache_stats st;
	uint8_t h[SCAN_HASH_BYTES];
	unsigned i;

	(void)state;
	assert_non_null(c);
	for (i = 0; i < 50; i++) {
		hash_of(i, h);
		scan_cache_put(c, h, i % 2 ? SCAN_CLEAN : SCAN_INFECTED, "X",
			       0);
	}
	scan_cache_flush(c);
	scan_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.flushes, 1);
	for (i = 0; i < 50; i++) {
		hash_of(i, h);
		assert_int_equal(scan_cache_get(c, h, 0, NULL, 0),
				 SCAN_UNKNOWN);
	}
	/* Usable after a flush. */
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 0);
	assert_int_equal(scan_cache_get(c, h, 0, NULL, 0), SCAN_CLEAN);
	scan_cache_free(c);
}

static void
test_cache_zero_entries(void **state)
{
	struct scan_cache *c = scan_cache_new(0, 1000);
	struct scan_cache_stats st;
	uint8_t h[SCAN_HASH_BYTES];

	(void)state;
	assert_non_null(c);
	hash_of(1, h);
	scan_cache_put(c, h, SCAN_CLEAN, NULL, 0);
	assert_int_equal(scan_cache_get(c, h, 0, NULL, 0), SCAN_UNKNOWN);
	scan_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.max_entries, 0);
	assert_int_equal(st.inserts, 0);
	assert_int_equal(st.misses, 1);
	scan_cache_free(c);
}

#define THREAD_OPS 20000

struct thread_arg {
	struct scan_cache *c;
	unsigned seed;
	uint64_t gets;
};

static void *
thread_run(void *p)
{
	struct thread_arg *a = p;
	uint8_t h[SCAN_HASH_BYTES];
	char name[SCAN_NAME_MAX];
	unsigned i, x = a->seed;

	for (i = 0; i < THREAD_OPS; i++) {
		x = x * 1103515245u + 12345u;
		hash_of((x >> 8) % 3000, h);
		if (x % 3 == 0) {
			scan_cache_put(a->c, h,
				       x % 2 ? SCAN_CLEAN : SCAN_INFECTED,
				       "Sig", (int64_t)i);
		} else {
			scan_cache_get(a->c, h, (int64_t)i, name, sizeof(name));
			a->gets++;
		}
		if (i % 5000 == 4999 && a->seed == 1)
			scan_cache_flush(a->c);
	}
	return NULL;
}

static void
test_cache_threads(void **state)
{
	struct scan_cache *c = scan_cache_new(1000, 3000);
	struct scan_cache_stats st;
	struct thread_arg a[4];
	pthread_t t[4];
	uint64_t gets = 0;
	int i;

	(void)state;
	assert_non_null(c);
	for (i = 0; i < 4; i++) {
		a[i] = (struct thread_arg){ c, (unsigned)i + 1, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, thread_run, &a[i]),
				 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		gets += a[i].gets;
	}
	scan_cache_stats(c, &st);
	print_message("4 threads: %llu gets, %llu hits, %llu entries, "
		      "%llu evictions, %llu expired\n",
		      (unsigned long long)gets, (unsigned long long)st.hits,
		      (unsigned long long)st.entries,
		      (unsigned long long)st.evictions,
		      (unsigned long long)st.expired);
	assert_int_equal(st.hits + st.misses, gets);
	assert_true(st.entries <= 1000);
	assert_true(st.hits > 0 && st.evictions > 0);
	assert_int_equal(st.flushes, 4);
	scan_cache_free(c);
}

/* The campaign case: one attachment in two messages that differ in their
 * text part hashes the same; the text parts do not; another cache (another
 * key) hashes it differently. */
static void
test_cache_hash_parts(void **state)
{
	static const char fmt[] =
	    "Subject: %s\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
	    "--c\r\nContent-Type: text/plain\r\n\r\nHello %s\r\n"
	    "--c\r\nContent-Type: application/pdf\r\n"
	    "Content-Transfer-Encoding: "
	    "base64\r\n\r\nJVBERi0xLjQK\r\n--c--\r\n";
	struct scan_cache *c = scan_cache_new(10, 0),
			  *d = scan_cache_new(10, 0);
	struct scan_part a[4], b[4], e[4];
	char ma[512], mb[512], mc[512];
	int la, lb, lc;

	(void)state;
	assert_non_null(c);
	assert_non_null(d);
	la = snprintf(ma, sizeof(ma), fmt, "one", "Alice");
	lb = snprintf(mb, sizeof(mb), fmt, "two, longer", "Bob");
	assert_int_equal(scan_mime_leaves((uint8_t *)ma, (size_t)la, a, 4), 2);
	assert_int_equal(scan_mime_leaves((uint8_t *)mb, (size_t)lb, b, 4), 2);
	scan_cache_hash_part(c, (uint8_t *)ma, &a[1]);
	scan_cache_hash_part(c, (uint8_t *)mb, &b[1]);
	assert_memory_equal(a[1].hash, b[1].hash, SCAN_HASH_BYTES);
	scan_cache_hash_part(c, (uint8_t *)ma, &a[0]);
	scan_cache_hash_part(c, (uint8_t *)mb, &b[0]);
	assert_memory_not_equal(a[0].hash, b[0].hash, SCAN_HASH_BYTES);
	memcpy(&e[1], &a[1], offsetof(struct scan_part, hash));
	scan_cache_hash_part(d, (uint8_t *)ma, &e[1]);
	assert_memory_not_equal(a[1].hash, e[1].hash, SCAN_HASH_BYTES);
	/* Same bytes declared another way are another leaf. */
	lc = snprintf(mc, sizeof(mc), "%s", ma);
	memcpy(strstr(mc, "base64"), "7bit  ", 6);
	assert_int_equal(scan_mime_leaves((uint8_t *)mc, (size_t)lc, e, 4), 2);
	assert_int_equal(e[1].len, a[1].len);
	scan_cache_hash_part(c, (uint8_t *)mc, &e[1]);
	assert_memory_not_equal(a[1].hash, e[1].hash, SCAN_HASH_BYTES);
	scan_cache_free(c);
	scan_cache_free(d);
}

/* The body of a message that is not split: the same text under other
 * Received:/Message-ID: fields is the same leaf; under another
 * Content-Transfer-Encoding it is another. */
static void
test_hash_top_typing(void **state)
{
	static const char *const msgs[] = {
		"Received: from a by b; Sat, 5 Dec 2026 10:00:00 +0000\r\n"
		"Message-ID: <1@example.com>\r\nContent-Type: text/plain\r\n"
		"\r\nSame text.\r\n",
		"Received: from c by d; Sat, 5 Dec 2026 10:00:09 +0000\r\n"
		"Message-ID: <2@example.com>\r\nContent-Type: text/plain\r\n"
		"\r\nSame text.\r\n",
		"Received: from c by d; Sat, 5 Dec 2026 10:00:09 +0000\r\n"
		"Message-ID: <2@example.com>\r\nContent-Type: text/plain\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nSame text.\r\n",
	};
	struct scan_part p[3][2];
	struct scan_cache *c = scan_cache_new(8, 0);
	size_t i;

	(void)state;
	assert_non_null(c);
	for (i = 0; i < 3; i++) {
		assert_int_equal(scan_mime_leaves((const uint8_t *)msgs[i],
						  strlen(msgs[i]), p[i], 2),
				 1);
		assert_int_equal(p[i][0].hoff, 0);
		scan_cache_hash_part(c, (const uint8_t *)msgs[i], &p[i][0]);
	}
	assert_memory_equal(p[0][0].hash, p[1][0].hash, SCAN_HASH_BYTES);
	assert_memory_not_equal(p[1][0].hash, p[2][0].hash, SCAN_HASH_BYTES);
	scan_cache_free(c);
}

/* What an entry costs, measured: 100,000 CLEAN verdicts. */
static void
test_cache_memory(void **state)
{
	struct mallinfo2 before, after;
	struct scan_cache *c;
	uint8_t h[SCAN_HASH_BYTES];
	size_t i, n = 100000, per;

	(void)state;
	before = mallinfo2();
	c = scan_cache_new(n, 0);
	assert_non_null(c);
	for (i = 0; i < n; i++) {
		hash_of(i + 1, h);
		scan_cache_put(c, h, SCAN_CLEAN, NULL, 0);
	}
	after = mallinfo2();
	per =
	    (after.uordblks + after.hblkhd - before.uordblks - before.hblkhd) /
	    n;
	print_message("scan cache: %zu bytes an entry (%zu entries)\n", per, n);
	assert_true(per <= 160);
	scan_cache_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_get_put_replace),
		cmocka_unit_test(test_cache_ttl),
		cmocka_unit_test(test_cache_lru),
		cmocka_unit_test(test_cache_flush),
		cmocka_unit_test(test_cache_zero_entries),
		cmocka_unit_test(test_cache_threads),
		cmocka_unit_test(test_cache_hash_parts),
		cmocka_unit_test(test_hash_top_typing),
		cmocka_unit_test(test_cache_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
