/*
 * metrics_bounce.c — outpost_bounce_category_total{category, kind}: failed
 * and deferred recipients by bounce category (conf/conf_bounce.c), counted
 * by the scheduler as it settles each result, shown at every scrape.
 * Owns: the counters (atomics: a fixed table, categories x kinds, bounded
 * by the enum).  Counting from any thread, never blocking; the text on
 * the scrape's thread.  Invariant: counters only grow.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "mta/observe/metrics.h"

/* [category][0: bounce (expiries too), 1: deferral] */
static _Atomic uint64_t metrics_bounce_counts[CONF_BC__COUNT][2];

void
metrics_bounce_category(enum conf_bounce_category cat, bool bounce)
{
	if (cat <= CONF_BC_NONE || cat >= CONF_BC__COUNT)
		return;
	atomic_fetch_add_explicit(&metrics_bounce_counts[cat][bounce ? 0 : 1],
				  1, memory_order_relaxed);
}

size_t
metrics_bounce_text(char *buf, size_t len)
{
	static const char *const kinds[2] = { "bounce", "defer" };
	size_t off = 0;
	unsigned c, k;
	int n;

	n = snprintf(buf, len,
		     "# HELP outpost_bounce_category_total Failed recipients "
		     "(kind=\"bounce\": bounced or expired) and deferred "
		     "attempts (kind=\"defer\"), by bounce category.\n"
		     "# TYPE outpost_bounce_category_total counter\n");
	off = n > 0 ? (size_t)n : 0;
	for (c = CONF_BC_NONE + 1; c < CONF_BC__COUNT; c++)
		for (k = 0; k < 2; k++) {
			n = snprintf(
			    off < len ? buf + off : NULL,
			    off < len ? len - off : 0,
			    "outpost_bounce_category_total{category=\"%s\","
			    "kind=\"%s\"} %" PRIu64 "\n",
			    conf_bounce_category_name(
				(enum conf_bounce_category)c),
			    kinds[k],
			    atomic_load_explicit(&metrics_bounce_counts[c][k],
						 memory_order_relaxed));
			off += n > 0 ? (size_t)n : 0;
		}
	return off;
}
