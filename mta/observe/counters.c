/*
 * counters.c — each thread's own block of counters: the fields of struct
 * stats (stats.h) and a share of every histogram (metrics.h).
 *
 * Owns: the blocks, on one list, and the key whose destructor folds a
 * thread's block into the process-wide ones (stats, each histogram's c)
 * when the thread ends.
 * Why: the loops count every message they accept or deliver.  In one
 * process-wide counter each count moved the same cache line between the
 * cores; in a block per thread it stays in the core that counts.
 * Invariants: a block is written only by its thread (relaxed atomics, so
 * that a reader's loads are whole); readers hold blocks_mu while they add
 * the blocks up, and a block leaves the list (folded) under it, so that no
 * count is seen twice or missed.
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/observe/counters.h"
#include "mta/observe/metrics.h"
#include "mta/observe/stats.h"

#define STATS_NFIELDS (sizeof(struct stats) / sizeof(_Atomic uint64_t))
_Static_assert(sizeof(struct stats) % sizeof(_Atomic uint64_t) == 0,
	       "struct stats holds counters only");

struct counters {
	struct stats s; /* first: stats_self points here */
	struct metrics_hist_counts h[METRICS_NHISTS];
	struct counters *next;
};

_Thread_local struct stats *stats_self;
static pthread_mutex_t blocks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct counters *blocks;
static pthread_key_t blocks_key;
static pthread_once_t blocks_once = PTHREAD_ONCE_INIT;

/* The sum kept as a double's bits: add V. */
static void
sum_add(_Atomic uint64_t *bits, double v)
{
	uint64_t old = atomic_load_explicit(bits, memory_order_relaxed), new;
	double sum;

	do {
		memcpy(&sum, &old, sizeof(sum));
		sum += v;
		memcpy(&new, &sum, sizeof(new));
	} while (!atomic_compare_exchange_weak_explicit(
	    bits, &old, new, memory_order_relaxed, memory_order_relaxed));
}

static double
sum_get(_Atomic uint64_t *bits)
{
	uint64_t b = atomic_load_explicit(bits, memory_order_relaxed);
	double sum;

	memcpy(&sum, &b, sizeof(sum));
	return sum;
}

/* A thread ends: its counts go to the process-wide ones. */
static void
blocks_fold(void *arg)
{
	struct counters *c = arg, **pp;
	_Atomic uint64_t *from = (_Atomic uint64_t *)&c->s;
	_Atomic uint64_t *to = (_Atomic uint64_t *)&stats;
	size_t i, k;

	pthread_mutex_lock(&blocks_mu);
	for (i = 0; i < STATS_NFIELDS; i++)
		atomic_fetch_add_explicit(
		    &to[i],
		    atomic_load_explicit(&from[i], memory_order_relaxed),
		    memory_order_relaxed);
	for (k = 0; k < METRICS_NHISTS; k++) {
		struct metrics_hist_counts *b = &metrics_hists[k]->c;

		for (i = 0; i <= METRICS_HIST_BOUNDS_MAX; i++)
			atomic_fetch_add_explicit(
			    &b->counts[i],
			    atomic_load_explicit(&c->h[k].counts[i],
						 memory_order_relaxed),
			    memory_order_relaxed);
		sum_add(&b->sum_bits, sum_get(&c->h[k].sum_bits));
	}
	for (pp = &blocks; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	pthread_mutex_unlock(&blocks_mu);
	/* A later key's destructor that counts makes a block anew (and the
	 * destructors run again), never writes this one. */
	stats_self = NULL;
	free(c);
}

static void
blocks_init(void)
{
	if (pthread_key_create(&blocks_key, blocks_fold) != 0)
		abort(); /* at start-up, before any thread counts */
}

/* The calling thread's block, made now if it has none; NULL when out of
 * memory. */
static struct counters *
counters_mine(void)
{
	struct counters *c;

	if (stats_self != NULL)
		return (struct counters *)stats_self;
	pthread_once(&blocks_once, blocks_init);
	/* A cache line of its own at both ends. */
	c = aligned_alloc(64, (sizeof(*c) + 63) / 64 * 64);
	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	if (pthread_setspecific(blocks_key, c) != 0) {
		free(c);
		return NULL;
	}
	pthread_mutex_lock(&blocks_mu);
	c->next = blocks;
	blocks = c;
	pthread_mutex_unlock(&blocks_mu);
	stats_self = &c->s;
	return c;
}

struct stats *
stats_self_make(void)
{
	struct counters *c = counters_mine();

	return c != NULL ? &c->s : &stats;
}

uint64_t
stats_sum(size_t off)
{
	const struct counters *c;
	uint64_t n;

	pthread_mutex_lock(&blocks_mu);
	n = atomic_load_explicit((_Atomic uint64_t *)((char *)&stats + off),
				 memory_order_relaxed);
	for (c = blocks; c != NULL; c = c->next)
		n += atomic_load_explicit(
		    (_Atomic uint64_t *)((const char *)&c->s + off),
		    memory_order_relaxed);
	pthread_mutex_unlock(&blocks_mu);
	return n;
}

struct metrics_hist_counts *
counters_hist_mine(const struct metrics_hist *h)
{
	struct counters *c = counters_mine();

	return c != NULL ? &c->h[h->idx] : NULL;
}

void
counters_hist_read(struct metrics_hist *h,
		   uint64_t counts[METRICS_HIST_BOUNDS_MAX + 1], double *sum)
{
	struct counters *c;
	size_t i;

	pthread_mutex_lock(&blocks_mu);
	for (i = 0; i <= h->nbounds; i++)
		counts[i] =
		    atomic_load_explicit(&h->c.counts[i], memory_order_relaxed);
	*sum = sum_get(&h->c.sum_bits);
	for (c = blocks; c != NULL; c = c->next) {
		for (i = 0; i <= h->nbounds; i++)
			counts[i] += atomic_load_explicit(
			    &c->h[h->idx].counts[i], memory_order_relaxed);
		*sum += sum_get(&c->h[h->idx].sum_bits);
	}
	pthread_mutex_unlock(&blocks_mu);
}

void
counters_sum_add(_Atomic uint64_t *bits, double v)
{
	sum_add(bits, v);
}
