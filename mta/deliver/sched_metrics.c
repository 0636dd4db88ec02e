/*
 * sched_metrics.c — the scheduler's gauges as exposition text, made once a
 * second on the delivery loop and copied out for scrapes on the main
 * thread; and the same counts as numbers (sched_totals_get).
 *
 * Owns: the snapshot (sched.gauges, under sched.gauge_mu).  Delivery loop
 * thread, but for sched_metrics_text (any thread).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mta/deliver/sched_int.h"

struct sched_metrics_top {
	const char *name;
	unsigned conns;
};

/* Once a second on the loop: the gauges, as exposition text, for scrapes
 * on the main thread (sched_metrics_text). */
void
sched_metrics_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_metrics_top top[10];
	struct htab_entry *e;
	struct timeval tv = { 1, 0 };
	char *buf;
	size_t it, len = 4096, off = 0, ntop = 0, j;
	unsigned i;
	int n;

	(void)fd;
	(void)what;
	(void)arg;
	memset(top, 0, sizeof(top));
	for (e = htab_first(&sched.sites, &it); e != NULL;
	     e = htab_next(&sched.sites, e, &it)) {
		struct sched_site *st = e->value;
		unsigned c = 0;

		for (i = 0; i < st->npaths; i++)
			c += st->paths[i]->nconn;
		if (c == 0 || st->nhosts == 0)
			continue;
		/* Keep the ten busiest, sorted, by insertion. */
		if (ntop == 10 && top[9].conns >= c)
			continue;
		j = ntop < 10 ? ntop++ : 9;
		while (j > 0 && top[j - 1].conns < c) {
			top[j] = top[j - 1];
			j--;
		}
		top[j].name = st->hosts[0].name;
		top[j].conns = c;
	}
	if ((buf = malloc(len)) == NULL)
		goto rearm;
#define GAUGE(...)                                                             \
	do {                                                                   \
		n = snprintf(buf + off, len - off, __VA_ARGS__);               \
		if (n > 0 && (size_t)n < len - off)                            \
			off += (size_t)n;                                      \
	} while (0)
	GAUGE("# HELP outpost_queue_messages Messages in the queue, by "
	      "state.\n# TYPE outpost_queue_messages gauge\n");
	GAUGE("outpost_queue_messages{state=\"waiting\"} %" PRIu64 "\n",
	      (uint64_t)sched.heap.n + sched.nparked);
	GAUGE("outpost_queue_messages{state=\"active\"} %u\n",
	      sched.nactive + sched.nloading);
	GAUGE("outpost_queue_messages{state=\"held\"} %" PRIu64 "\n",
	      sched.nheld - sched.ncorrupt);
	GAUGE("outpost_queue_messages{state=\"corrupt\"} %" PRIu64 "\n",
	      sched.ncorrupt);
	GAUGE(
	    "# HELP outpost_queue_corrupt_total Damaged queue records found "
	    "(each is held until deleted).\n# TYPE outpost_queue_corrupt_total "
	    "counter\noutpost_queue_corrupt_total %" PRIu64 "\n",
	    sched.corrupt_total);
	GAUGE("# HELP outpost_delivery_connections Outbound SMTP connections "
	      "open.\n# TYPE outpost_delivery_connections gauge\n"
	      "outpost_delivery_connections %u\n",
	      sched.nconn);
	GAUGE("# HELP outpost_destination_connections Outbound connections "
	      "of the ten busiest destinations (first MX host).\n"
	      "# TYPE outpost_destination_connections gauge\n");
	for (j = 0; j < ntop; j++)
		GAUGE("outpost_destination_connections{destination=\"%s\"} "
		      "%u\n",
		      top[j].name, top[j].conns);
#undef GAUGE
	pthread_mutex_lock(&sched.gauge_mu);
	free(sched.gauges);
	sched.gauges = buf;
	pthread_mutex_unlock(&sched.gauge_mu);
rearm:
	if (!sched.stopping)
		evtimer_add(sched.gauge_timer, &tv);
}

size_t
sched_metrics_text(char *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&sched.gauge_mu);
	if (sched.gauges != NULL) {
		n = strlen(sched.gauges);
		if (n < len)
			memcpy(buf, sched.gauges, n + 1);
	}
	pthread_mutex_unlock(&sched.gauge_mu);
	return n;
}

void
sched_totals_get(struct sched_totals *t)
{
	t->messages = sched.nmsgs;
	t->waiting = sched.heap.n;
	t->active = sched.nactive + sched.nloading;
	t->held = sched.nheld;
	t->corrupt = sched.ncorrupt;
}

uint64_t
sched_queued(void)
{
	return sched.nmsgs;
}
