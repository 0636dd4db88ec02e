/*
 * sched_metrics.c — the scheduler's metrics: results and deferral reasons
 * per destination, pool and user (top N, the rest "_other": metrics_top.h)
 * and gauges (queue, connections; the queue scan's depth and ages by
 * destination, pool and user: sched_scan.c), rendered as text
 * once a second for scrapes on the main thread; sched_totals_get.
 *
 * Owns: the counter tables (SM, every shard's counts, under SM.mu), each
 * delivery loop's counts of its turn (sm_stage, added to SM at the turn's
 * end), the snapshot (sched->gauges, gauge_mu).  Delivery loops' threads,
 * but for sched_metrics_text (any).  Must not: put an address in a label
 * (metrics_user_label); hold SM.mu longer than a turn's counts (at most
 * SM_STAGE_MAX times six adds).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/metrics.h"
#include "mta/observe/metrics_top.h"

/* Columns of the counter tables: results, then deferral reasons. */
enum {
	COL_DELIVERED,
	COL_DEFERRED,
	COL_BOUNCED,
	COL_EXPIRED,
	COL_R_CONNECT, /* connect() refused, unreachable */
	COL_R_TIMEOUT,
	COL_R_TLS,
	COL_R_DNS,
	COL_R_4XX,
	COL_R_5XX, /* a 5xx banner or EHLO: the host skipped, deferred */
	COL_R_PROTOCOL,
	COL_R_CONNECTION, /* lost or closed without a reply */
	COL_R_LOCAL,      /* decided here: out of memory, 8-bit … */
	COL__COUNT
};
#define COL_REASONS (COL_R_CONNECT)
#define NRESULTS    (COL_REASONS)
#define NREASONS    (COL__COUNT - COL_REASONS)

static const char *const sched_metrics_results[NRESULTS] = {
	"result=\"delivered\"",
	"result=\"deferred\"",
	"result=\"bounced\"",
	"result=\"expired\"",
};
static const char *const sched_metrics_reasons[NREASONS] = {
	"reason=\"connect\"",  "reason=\"timeout\"",    "reason=\"tls\"",
	"reason=\"dns\"",      "reason=\"reply_4xx\"",  "reason=\"reply_5xx\"",
	"reason=\"protocol\"", "reason=\"connection\"", "reason=\"local\"",
};

/* The tables, made on first use with the configuration's N. */
static struct {
	pthread_mutex_t mu;
	struct metrics_top *dest, *pool, *user;
} SM = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* The last user name seen and its label. */
struct sm_user_memo {
	char of[METRICS_LABEL_MAX];
	char label[METRICS_LABEL_MAX];
	bool set, null;
};

/* The reason class of a deferral, from what outcome_classify() saw. */
static unsigned
sched_metrics_reason(const struct smtp_client_result *r,
		     const struct outcome *o)
{
	if (strcmp(o->status, OUTCOME_PROTOCOL_STATUS) == 0)
		return COL_R_PROTOCOL;
	if (r->stage == OS_LOCAL)
		/* 4.4.3: the MX lookup failed, or there is no resolver. */
		return strcmp(o->status, "4.4.3") == 0 ? COL_R_DNS
						       : COL_R_LOCAL;
	if (r->code >= 400 && r->code < 500)
		return COL_R_4XX;
	if (r->code >= 500)
		return COL_R_5XX;
	if (r->text != NULL && strstr(r->text, "timeout") != NULL)
		return COL_R_TIMEOUT;
	if (r->stage == OS_CONNECT)
		return COL_R_CONNECT;
	if (r->stage == OS_TLS || r->stage == OS_STARTTLS)
		return COL_R_TLS;
	return COL_R_CONNECTION;
}

void
sched_metrics_user_label(const char *user, bool dsn,
			 char out[METRICS_LABEL_MAX])
{
	if (dsn)
		snprintf(out, METRICS_LABEL_MAX, "%s", SCHED_METRICS_USER_DSN);
	else
		metrics_user_label(user, out);
}

/* M's user label (cached: a campaign comes from few users). */
static const char *
sched_metrics_user(const struct sched_msg *m, struct sm_user_memo *memo)
{
	const char *user = m->r->env.user;

	if (m->r->env.flags & QUEUE_F_DSN)
		return SCHED_METRICS_USER_DSN; /* our own bounces */
	if (!memo->set || memo->null != (user == NULL) ||
	    (user != NULL && strncmp(memo->of, user, sizeof(memo->of)))) {
		sched_metrics_user_label(user, false, memo->label);
		snprintf(memo->of, sizeof(memo->of), "%s",
			 user != NULL ? user : "");
		memo->null = user == NULL;
		memo->set = true;
	}
	return memo->label;
}

/* N more in column COL (and REASON, unless COL__COUNT) of each label.
 * SM.mu held. */
static void
sched_metrics_add(const char *domain, const char *pool, const char *user,
		  unsigned col, unsigned reason, uint64_t n)
{
	if (SM.dest == NULL) {
		const struct conf_metrics *c = &sched->conf->metrics;

		SM.dest = metrics_top_new(COL__COUNT, c->top_destinations, 0);
		SM.pool = metrics_top_new(COL__COUNT, c->top_destinations, 0);
		SM.user = metrics_top_new(COL__COUNT, c->top_users, 0);
	}
	metrics_top_add(SM.dest, domain, col, n);
	metrics_top_add(SM.pool, pool, col, n);
	metrics_top_add(SM.user, user, col, n);
	if (reason != COL__COUNT) {
		metrics_top_add(SM.dest, domain, reason, n);
		metrics_top_add(SM.pool, pool, reason, n);
		metrics_top_add(SM.user, user, reason, n);
	}
}

/* What a delivery loop counted this turn, added to the tables at its end
 * under one lock of SM.mu (a result per recipient would take it each, on
 * every loop).  The loop's thread's own. */
#define SM_STAGE_MAX 16
struct sm_stage {
	struct loop_turn turn;
	struct sm_user_memo memo;
	unsigned n;
	struct sm_staged {
		char domain[256], pool[256], user[METRICS_LABEL_MAX];
		unsigned col, reason;
		uint64_t n;
	} e[SM_STAGE_MAX];
};
static _Thread_local struct sm_stage *sm_stage;

static void
sched_metrics_stage_flush(void *arg)
{
	struct sm_stage *st = arg;
	unsigned i;

	if (st->n == 0)
		return;
	pthread_mutex_lock(&SM.mu);
	for (i = 0; i < st->n; i++)
		sched_metrics_add(st->e[i].domain, st->e[i].pool, st->e[i].user,
				  st->e[i].col, st->e[i].reason, st->e[i].n);
	pthread_mutex_unlock(&SM.mu);
	st->n = 0;
}

void
sched_metrics_stage_end(void)
{
	if (sm_stage == NULL)
		return;
	loop_turn_cancel(&sm_stage->turn);
	sched_metrics_stage_flush(sm_stage);
	free(sm_stage);
	sm_stage = NULL;
}

static void
sched_metrics_count(const struct sched_msg *m, const char *domain, unsigned col,
		    unsigned reason)
{
	const char *pool = m->r->pool != NULL ? m->r->pool->name : "default";
	struct sm_stage *st = sm_stage;
	struct sm_staged *e;
	const char *user;
	unsigned i;

	if (st == NULL && loop_current() != NULL &&
	    (st = calloc(1, sizeof(*st))) != NULL) {
		st->turn.fn = sched_metrics_stage_flush;
		st->turn.arg = st;
		sm_stage = st;
	}
	if (st == NULL) { /* not a loop's thread, or no memory */
		struct sm_user_memo memo = { 0 };

		pthread_mutex_lock(&SM.mu);
		sched_metrics_add(domain, pool, sched_metrics_user(m, &memo),
				  col, reason, 1);
		pthread_mutex_unlock(&SM.mu);
		return;
	}
	user = sched_metrics_user(m, &st->memo);
	for (i = 0; i < st->n; i++) {
		e = &st->e[i];
		if (e->col == col && e->reason == reason &&
		    strcmp(e->domain, domain) == 0 &&
		    strcmp(e->pool, pool) == 0 && strcmp(e->user, user) == 0) {
			e->n++;
			return;
		}
	}
	if (st->n == SM_STAGE_MAX)
		sched_metrics_stage_flush(st);
	e = &st->e[st->n++];
	snprintf(e->domain, sizeof(e->domain), "%s", domain);
	snprintf(e->pool, sizeof(e->pool), "%s", pool);
	snprintf(e->user, sizeof(e->user), "%s", user);
	e->col = col;
	e->reason = reason;
	e->n = 1;
	if (!loop_turn_end(&st->turn))
		sched_metrics_stage_flush(st); /* its loop has ended */
}

void
sched_metrics_result(const struct sched_msg *m, const char *domain,
		     const struct smtp_client_result *r,
		     const struct outcome *o)
{
	switch (o->action) {
	case OA_DELIVERED:
		sched_metrics_count(m, domain, COL_DELIVERED, COL__COUNT);
		break;
	case OA_BOUNCE:
		sched_metrics_count(m, domain, COL_BOUNCED, COL__COUNT);
		metrics_bounce_category(o->category, true);
		break;
	case OA_DEFER:
		metrics_bounce_category(o->category, false);
		sched_metrics_count(m, domain, COL_DEFERRED,
				    sched_metrics_reason(r, o));
		break;
	}
}

void
sched_metrics_final(const struct sched_msg *m, const char *addr, bool expired)
{
	char dom[256];

	sched_metrics_count(m, sched_rcpt_domain(addr, dom, sizeof(dom)),
			    expired ? COL_EXPIRED : COL_BOUNCED, COL__COUNT);
}

unsigned
sched_metrics_user_forget(const char *user)
{
	char label[METRICS_LABEL_MAX];
	unsigned n;

	sched_metrics_user_label(user, false, label);
	pthread_mutex_lock(&SM.mu);
	n = (unsigned)metrics_top_forget(SM.user, label);
	pthread_mutex_unlock(&SM.mu);
	return n;
}

void
sched_metrics_free(void)
{
	metrics_top_free(SM.dest);
	metrics_top_free(SM.pool);
	metrics_top_free(SM.user);
	memset(&SM, 0, sizeof(SM));
	sched_scan_free();
}

/* The oldest message in memory: ids are creation times (ms << 20), and a
 * newer one is never older, so the whole map is scanned only when the
 * oldest is gone. */
static uint64_t
sched_metrics_oldest(void)
{
	size_t i;

	if (sched->oldest_id != 0 &&
	    idmap_get(&sched->ids, sched->oldest_id) != NULL)
		return sched->oldest_id;
	sched->oldest_id = 0;
	for (i = 0; i < sched->ids.cap; i++) {
		uint64_t k = sched->ids.keys[i];

		if (k != 0 && k != UINT64_MAX &&
		    (sched->oldest_id == 0 || k < sched->oldest_id))
			sched->oldest_id = k;
	}
	return sched->oldest_id;
}

/* The counter families of one table (LABEL: its label name). */
static void
sched_metrics_counters(struct metrics_text *t, struct metrics_top *top,
		       const char *what, const char *label)
{
	char name[64], name2[64];
	struct metrics_top_family f = {
		name, NULL, "counter", label, 0, NRESULTS, sched_metrics_results
	};

	metrics_top_select(top);
	snprintf(name, sizeof(name), "outpost_%s_deliveries_total", what);
	f.help = "Recipient delivery outcomes (deferred: per attempt), by "
		 "the top N label values; the rest under \"_other\".";
	metrics_top_write(top, t, &f);
	snprintf(name2, sizeof(name2), "outpost_%s_deferrals_total", what);
	f.name = name2;
	f.help = "Deferred delivery attempts by reason class, by the top N "
		 "label values; the rest under \"_other\".";
	f.first = COL_REASONS;
	f.ncols = NREASONS;
	f.cols = sched_metrics_reasons;
	metrics_top_write(top, t, &f);
}

/* The connection gauges by destination (a site, named by its first MX
 * host as its connections are) and by pool, of this shard, into SN (the
 * labels copied: another thread reads them).  What is queued for each
 * is the queue scan's (sched_scan.c). */
static void
sched_metrics_dest_snap(struct sched_snap *sn)
{
	size_t n = sched->sites.n, it, j;
	struct htab_entry *e;
	unsigned i;

	sn->conns = calloc(n + 1, sizeof(*sn->conns));
	sn->pools = calloc(n + 1, sizeof(*sn->pools));
	if (sn->conns == NULL || sn->pools == NULL)
		return;
	for (e = htab_first(&sched->sites, &it); e != NULL;
	     e = htab_next(&sched->sites, e, &it)) {
		struct sched_site *st = e->value;
		uint64_t c = 0;

		if (st->nhosts == 0)
			continue;
		for (i = 0; i < st->npaths; i++) {
			const struct sched_path *p = st->paths[i];
			const char *pn = p->pool ? p->pool->name : "default";

			c += p->nconn;
			for (j = 0;
			     j < sn->npools && strcmp(sn->pools[j].label, pn);
			     j++)
				;
			if (j == sn->npools && sn->npools < n &&
			    (sn->pools[j].label = strdup(pn)) != NULL)
				sn->npools++;
			if (j < sn->npools)
				sn->pools[j].value += p->nconn;
		}
		if (c > 0 && (sn->conns[sn->nconns].label =
				  strdup(st->hosts[0].name)) != NULL)
			sn->conns[sn->nconns++].value = c;
	}
}

static void
sched_snap_clear(struct sched_snap *sn)
{
	size_t i;

	for (i = 0; sn->conns != NULL && i < sn->nconns; i++)
		free((char *)sn->conns[i].label);
	for (i = 0; sn->pools != NULL && i < sn->npools; i++)
		free((char *)sn->pools[i].label);
	free(sn->conns);
	free(sn->pools);
	memset(sn, 0, sizeof(*sn));
}

/* FROM's gauges added into TO (its labels its own copies; a series
 * there is no memory for is left out). */
static void
sched_snap_add_gauges(struct metrics_gauge **to, size_t *nto,
		      const struct metrics_gauge *from, size_t nfrom)
{
	struct metrics_gauge *v;
	size_t i, j;

	for (i = 0; i < nfrom; i++) {
		for (j = 0; j < *nto && strcmp((*to)[j].label, from[i].label);
		     j++)
			;
		if (j < *nto) {
			(*to)[j].value += from[i].value;
			continue;
		}
		if ((v = realloc(*to, (*nto + 1) * sizeof(*v))) == NULL)
			return;
		*to = v;
		if ((v[*nto].label = strdup(from[i].label)) == NULL)
			return;
		v[(*nto)++].value = from[i].value;
	}
}

/* This shard's gauges now, into SN. */
static void
sched_metrics_snap(struct sched_snap *sn)
{
	memset(sn, 0, sizeof(*sn));
	sn->waiting = (uint64_t)sched->heap.n + sched->nparked;
	sn->active = sched->nactive + sched->nloading;
	sn->held = sched->nheld - sched->ncorrupt;
	sn->corrupt = sched->ncorrupt;
	sn->corrupt_total = sched->corrupt_total;
	sn->bodies_kept = sched->bodies_kept;
	sn->bodies_read = sched->bodies_read;
	sn->oldest_id = sched_metrics_oldest();
	if (sched->dns != NULL)
		dns_stats_get(sched->dns, &sn->dns);
	sched_metrics_dest_snap(sn);
}

/* A delivery loop's resolver's counters, copied on that loop (dns.h locks
 * nothing: only the resolver's own thread may read them). */
static void
sched_metrics_dns_snap(void *arg)
{
	struct sched_cloop *cl = arg;
	struct dns_stats ds;

	dns_stats_get(cl->env.dns, &ds);
	pthread_mutex_lock(&sched->gauge_mu);
	cl->dns_snap = ds;
	pthread_mutex_unlock(&sched->gauge_mu);
}

/* Delivery's resolvers: loop 0's and each delivery loop's (whose
 * counters only their own thread reads: with one scheduler each copies
 * them for the next refresh, a shard has them in its snapshot, so theirs
 * are a second old).  TOTAL: the shards' snapshots' counters, summed. */
static void
sched_metrics_dns(struct metrics_text *t, const struct dns_stats *total)
{
	struct dns_stats ds = *total, o;
	unsigned i;

	if (sched->dns == NULL)
		return;
	for (i = 1; sched_nshards == 1 && i < sched->ncloops; i++) {
		struct sched_cloop *cl = &sched->cloops[i];

		if (cl->env.dns == NULL)
			continue;
		pthread_mutex_lock(&sched->gauge_mu);
		o = cl->dns_snap;
		pthread_mutex_unlock(&sched->gauge_mu);
		ds.queries += o.queries;
		ds.inflight += o.inflight;
		ds.waiting += o.waiting;
		ds.wait_timeouts += o.wait_timeouts;
		loop_post(cl->loop, sched_metrics_dns_snap, cl);
	}
	metrics_text_printf(
	    t,
	    "# HELP outpost_dns_queries_total DNS questions asked by "
	    "delivery.\n# TYPE outpost_dns_queries_total counter\n"
	    "outpost_dns_queries_total %" PRIu64 "\n"
	    "# HELP outpost_dns_queries_inflight DNS questions asked, not yet "
	    "answered.\n# TYPE outpost_dns_queries_inflight gauge\n"
	    "outpost_dns_queries_inflight %" PRIu64 "\n"
	    "# HELP outpost_dns_queries_waiting DNS questions waiting for a "
	    "slot (dns.max_inflight).\n# TYPE outpost_dns_queries_waiting "
	    "gauge\noutpost_dns_queries_waiting %" PRIu64 "\n"
	    "# HELP outpost_dns_wait_timeouts_total DNS questions that waited "
	    "a lookup's time for a slot and failed unasked.\n"
	    "# TYPE outpost_dns_wait_timeouts_total counter\n"
	    "outpost_dns_wait_timeouts_total %" PRIu64 "\n",
	    ds.queries, ds.inflight, ds.waiting, ds.wait_timeouts);
}

/* Connections by delivery loop (delivery.threads): how evenly they are
 * spread.  NCONN[i]: shard i's (with shards, a loop each), else read from
 * loop 0's record of each loop. */
static void
sched_metrics_loops(struct metrics_text *t, const uint64_t *nconn)
{
	unsigned i, n = sched_nshards > 1 ? sched_nshards : sched->ncloops;

	metrics_text_printf(
	    t, "# HELP outpost_delivery_loop_connections Outbound SMTP "
	       "connections open, by delivery loop.\n# TYPE "
	       "outpost_delivery_loop_connections gauge\n");
	for (i = 0; i < n; i++)
		metrics_text_printf(
		    t,
		    "outpost_delivery_loop_connections{loop=\"%u\"} %" PRIu64
		    "\n",
		    i, sched_nshards > 1 ? nconn[i] : sched->cloops[i].nconn);
}

/* Every shard's snapshot summed into TOTAL (its gauges' labels copied
 * into TOTAL's own; NCONN[i]: shard i's connections).  Loop 0. */
static void
sched_metrics_sum(struct sched_snap *total, uint64_t *nconn)
{
	unsigned i;

	memset(total, 0, sizeof(*total));
	for (i = 0; i < sched_nshards; i++) {
		struct sched *s = sched_shards[i];
		struct sched_snap *sn = &s->snap;

		pthread_mutex_lock(&s->gauge_mu);
		total->waiting += sn->waiting;
		total->active += sn->active;
		total->held += sn->held;
		total->corrupt += sn->corrupt;
		total->corrupt_total += sn->corrupt_total;
		total->bodies_kept += sn->bodies_kept;
		total->bodies_read += sn->bodies_read;
		if (sn->oldest_id != 0 &&
		    (total->oldest_id == 0 || sn->oldest_id < total->oldest_id))
			total->oldest_id = sn->oldest_id;
		total->dns.queries += sn->dns.queries;
		total->dns.inflight += sn->dns.inflight;
		total->dns.waiting += sn->dns.waiting;
		total->dns.wait_timeouts += sn->dns.wait_timeouts;
		/* Connections as of now, not of its last second: a short burst
		 * on a shard shows, as it did on one scheduler's loops. */
		nconn[i] = __atomic_load_n(&s->nconn, __ATOMIC_RELAXED);
		total->nconn += nconn[i];
		sched_snap_add_gauges(&total->conns, &total->nconns, sn->conns,
				      sn->nconns);
		sched_snap_add_gauges(&total->pools, &total->npools, sn->pools,
				      sn->npools);
		pthread_mutex_unlock(&s->gauge_mu);
	}
}

void
sched_metrics_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 1, 0 };
	struct metrics_text t = { NULL, 0, 0, false };
	const struct conf_metrics *c = &sched->conf->metrics;
	int64_t now = util_wall_ms();
	uint64_t nconn[SCHED_SHARDS_MAX];
	struct sched_snap sn, total;

	(void)fd;
	(void)what;
	(void)arg;
	sched_metrics_snap(&sn);
	pthread_mutex_lock(&sched->gauge_mu);
	sched_snap_clear(&sched->snap);
	sched->snap = sn;
	pthread_mutex_unlock(&sched->gauge_mu);
	sched_limit_sweep(now);
	if (sched != &sched_main)
		goto rearm; /* loop 0's writes every shard's */
	sched_metrics_sum(&total, nconn);
	metrics_user_top(c->top_users);
	metrics_text_printf(
	    &t, "# HELP outpost_queue_messages Messages in the queue, "
		"by state.\n# TYPE outpost_queue_messages gauge\n");
	metrics_text_printf(
	    &t, "outpost_queue_messages{state=\"waiting\"} %" PRIu64 "\n",
	    total.waiting);
	metrics_text_printf(
	    &t, "outpost_queue_messages{state=\"active\"} %" PRIu64 "\n",
	    total.active);
	metrics_text_printf(
	    &t, "outpost_queue_messages{state=\"held\"} %" PRIu64 "\n",
	    total.held);
	metrics_text_printf(
	    &t, "outpost_queue_messages{state=\"corrupt\"} %" PRIu64 "\n",
	    total.corrupt);
	metrics_text_printf(
	    &t,
	    "# HELP outpost_queue_corrupt_total Damaged queue records found "
	    "(each is held until deleted).\n# TYPE outpost_queue_corrupt_total "
	    "counter\noutpost_queue_corrupt_total %" PRIu64 "\n",
	    total.corrupt_total);
	metrics_text_printf(
	    &t,
	    "# HELP outpost_queue_oldest_message_age_seconds Age of the "
	    "oldest message in the queue (0: empty).\n"
	    "# TYPE outpost_queue_oldest_message_age_seconds gauge\n"
	    "outpost_queue_oldest_message_age_seconds %" PRIu64 "\n",
	    total.oldest_id != 0 && now > (int64_t)(total.oldest_id >> 20)
		? (uint64_t)(now - (int64_t)(total.oldest_id >> 20)) / 1000
		: 0);
	metrics_text_printf(
	    &t,
	    "# HELP outpost_delivery_connections Outbound SMTP "
	    "connections open.\n# TYPE outpost_delivery_connections "
	    "gauge\noutpost_delivery_connections %" PRIu64 "\n",
	    total.nconn);
	sched_metrics_loops(&t, nconn);
	metrics_text_printf(
	    &t,
	    "# HELP outpost_delivery_bodies_total Bodies handed to delivery "
	    "attempts: kept in memory from acceptance (a new small message's "
	    "first attempt) or read from the queue.\n# TYPE "
	    "outpost_delivery_bodies_total counter\n"
	    "outpost_delivery_bodies_total{from=\"memory\"} %" PRIu64 "\n"
	    "outpost_delivery_bodies_total{from=\"queue\"} %" PRIu64 "\n",
	    total.bodies_kept, total.bodies_read);
	metrics_top_gauges(
	    &t, "outpost_destination_connections",
	    "Outbound connections open, by destination (the first MX "
	    "host of a site); the top N, the rest under \"_other\".",
	    "destination", total.conns, total.nconns, c->top_destinations,
	    false);
	metrics_top_gauges(&t, "outpost_pool_connections",
			   "Outbound connections open, by source pool.", "pool",
			   total.pools, total.npools, c->top_destinations,
			   false);
	sched_metrics_dns(&t, &total.dns);
	sched_snap_clear(&total);
	sched_scan_tick(now);
	sched_scan_text(&t, now);
	pthread_mutex_lock(&SM.mu);
	if (SM.dest != NULL) {
		/* A reload may have changed N. */
		metrics_top_limit(SM.dest, c->top_destinations);
		metrics_top_limit(SM.pool, c->top_destinations);
		metrics_top_limit(SM.user, c->top_users);
		sched_metrics_counters(&t, SM.dest, "destination",
				       "destination");
		sched_metrics_counters(&t, SM.pool, "pool", "pool");
		sched_metrics_counters(&t, SM.user, "user", "user");
	}
	pthread_mutex_unlock(&SM.mu);
	if (t.oom) {
		free(t.buf);
		goto rearm;
	}
	pthread_mutex_lock(&sched->gauge_mu);
	free(sched->gauges);
	sched->gauges = t.buf;
	pthread_mutex_unlock(&sched->gauge_mu);
rearm:
	if (!sched->stopping)
		evtimer_add(sched->gauge_timer, &tv);
}

size_t
sched_metrics_text(char *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&sched_main.gauge_mu);
	if (sched_main.gauges != NULL) {
		n = strlen(sched_main.gauges);
		if (n < len)
			memcpy(buf, sched_main.gauges, n + 1);
	}
	pthread_mutex_unlock(&sched_main.gauge_mu);
	return n;
}

/* A count of shard S's, read from another shard's thread: each is written
 * by its own thread only, and an operator's change that moved it was
 * answered through a post (which orders it before this read). */
#define SCHED_COUNT(s, f) __atomic_load_n(&(s)->f, __ATOMIC_RELAXED)

void
sched_totals_get(struct sched_totals *t)
{
	unsigned i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < sched_nshards; i++) {
		struct sched *s = sched_shards[i];

		t->messages += SCHED_COUNT(s, nmsgs);
		t->waiting += SCHED_COUNT(s, heap.n);
		t->active += SCHED_COUNT(s, nactive) + SCHED_COUNT(s, nloading);
		t->held += SCHED_COUNT(s, nheld);
		t->corrupt += SCHED_COUNT(s, ncorrupt);
	}
}

uint64_t
sched_queued(void)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < sched_nshards; i++)
		n += SCHED_COUNT(sched_shards[i], nmsgs);
	return n;
}

void
sched_metrics_shard_free(void)
{
	sched_snap_clear(&sched->snap);
}
