/*
 * counters.h — each thread's own counters (counters.c), for metrics.c: a
 * histogram's share in the calling thread's block, and a histogram read
 * over every block.  The stats.h fields go through STATS_INC and
 * STATS_GET.  Private to mta/observe.
 */
#ifndef OUTPOST_MTA_COUNTERS_H
#define OUTPOST_MTA_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "mta/observe/metrics.h"

/* The histograms, by their idx (metrics.c). */
extern struct metrics_hist *const metrics_hists[METRICS_NHISTS];

/* counters_hist_mine — H's counts in the calling thread's block; NULL
 * when it has none and none could be made (count in H->c then). */
struct metrics_hist_counts *counters_hist_mine(const struct metrics_hist *h);

/* counters_hist_read — H's buckets (COUNTS[0..nbounds], not cumulative)
 * and sum, over H->c and every block. */
void counters_hist_read(struct metrics_hist *h,
			uint64_t counts[METRICS_HIST_BOUNDS_MAX + 1],
			double *sum);

/* counters_sum_add — add V to the double whose bits *BITS holds. */
void counters_sum_add(_Atomic uint64_t *bits, double v);

#endif
