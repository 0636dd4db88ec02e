/*
 * scheduler.c — the delivery scheduler's core (Postfix qmgr / KumoMTA ready
 * queues in spirit): its state, paths and their connections (the SMTP
 * client's owner, through its callbacks), start-up, shutdown.
 *
 * Owns: struct sched (a shard's: loop 0's is sched_main), every path.
 * Must not: read a client's insides, or touch a client at all (its
 * connection, struct sched_conn, lives on its home loop: sched_conn.c).
 * Each shard's own delivery loop thread, but for sched_init and sched_free
 * (main thread, loops not running) and sched_message_add (any).
 * Invariants: a path's nconn counts every connection of its shard not yet
 * reported closed, nbusy those with a job; its share (other shards too)
 * never passes its limit.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/deliver/cluster.h"
#include "mta/deliver/https.h"
#include "mta/deliver/tlsrpt.h"
#include "mta/deliver/sched_int.h"

struct sched sched_main;
_Thread_local struct sched *sched;

void
sched_timer_ms(struct event *ev, int64_t delay_ms)
{
	struct timeval tv = util_ms_timeval(delay_ms);

	evtimer_add(ev, &tv);
}

const char *
sched_rcpt_domain(const char *addr, char *buf, size_t len)
{
	const char *at = strrchr(addr, '@');

	util_domain_lower(at != NULL ? at + 1 : addr, buf, len);
	return buf;
}

/* Paths and their connections ----------------------------------------- */

struct sched_path *
sched_path_get(struct sched_site *site, const struct conf_pool *pool,
	       const struct conf_destination *cfg)
{
	struct sched_path *p, **np;
	unsigned i;

	for (i = 0; i < site->npaths; i++)
		if (site->paths[i]->pool == pool)
			return site->paths[i];
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	np = realloc(site->paths, (site->npaths + 1) * sizeof(*np));
	p->timer = evtimer_new(sched->loop->base, sched_limit_timer_cb, p);
	if (np == NULL || p->timer == NULL) {
		if (p->timer != NULL)
			event_free(p->timer);
		free(p);
		if (np != NULL)
			site->paths = np;
		return NULL;
	}
	site->paths = np;
	p->site = site;
	p->pool = pool;
	p->cfg = cfg;
	p->rate = -1;
	p->rate_ms = util_wall_ms();
	p->rate_dry = true;
	site->paths[site->npaths++] = p;
	if (sched_nshards > 1 && (p->share = sched_share_get(p)) != NULL) {
		/* A step down another shard took before this one had P. */
		unsigned level;
		int64_t until;

		p->park.total = sched_share_nparked(p->share);

		if (sched_share_throttle_get(p->share, &level, &until))
			sched_limit_throttle_adopt(
			    p, level, until - util_wall_ms(), false);
		/* And a pause (sched_state_path_restore follows, for the one
		 * kept across a restart). */
		sched_share_pause_adopt(p);
	}
	if (cluster_on()) {
		/* A step down the cluster took before this node had P. */
		char key[512];
		unsigned level;
		int64_t remain;

		sched_path_key(p, key, sizeof(key));
		if (cluster_throttle_lookup(key, &level, &remain))
			sched_limit_throttle_adopt(p, level, remain, true);
	}
	return p;
}

struct sched_path *
sched_path_find(const char *key)
{
	const char *colon = strchr(key, ':');
	struct sched_site *s;
	unsigned i;

	if (colon == NULL || (s = htab_get(&sched->sites, colon + 1)) == NULL)
		return NULL;
	for (i = 0; i < s->npaths; i++) {
		const struct conf_pool *pool = s->paths[i]->pool;
		const char *name = pool != NULL ? pool->name : "-";

		if (strlen(name) == (size_t)(colon - key) &&
		    strncmp(name, key, (size_t)(colon - key)) == 0)
			return s->paths[i];
	}
	return NULL;
}

/* Cluster leases --------------------------------------------------------- */

void
sched_path_key(const struct sched_path *p, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%s", p->pool != NULL ? p->pool->name : "-",
		 p->site->key);
}

static void
sched_path_lease_cb(enum cluster_answer a, uint64_t lease, void *arg)
{
	struct sched_path *p = arg;
	int64_t now = util_wall_ms();

	p->lease_asking = false;
	if (a == CLUSTER_GRANTED) {
		if (p->lease_spare != 0 || sched->stopping) {
			cluster_lease_drop(lease);
			return;
		}
		p->lease_spare = lease;
	} else if (a == CLUSTER_DENIED) {
		/* The cluster is at P's limit: ask again in a while (a
		 * connection of ours that ends asks at once). */
		p->lease_retry_ms = now + SCHED_LEASE_RETRY_MS;
		if (p->njobs > 0)
			sched_timer_ms(p->timer, SCHED_LEASE_RETRY_MS);
		return;
	}
	/* Granted, or Redis went away (the share applies): go on. */
	if (p->njobs > 0)
		sched_path_kick(p);
	/* A place P did not take (its jobs went on the connections it had,
	 * or it must wait for another reason) goes back at once: kept, it
	 * would be renewed for as long as this node runs, a place of the
	 * cluster's limit that no connection uses. */
	if (p->lease_spare != 0) {
		cluster_lease_drop(p->lease_spare);
		p->lease_spare = 0;
	}
}

/*
 * May P open one more connection as far as the cluster goes?  True with
 * *LEASE set (0 without a cluster); false when it waits for an answer or
 * for room, or is at its share of the limit while Redis is away.
 */
static bool
sched_path_lease(struct sched_path *p, int64_t now, uint64_t *lease)
{
	char key[512];

	*lease = 0;
	if (!cluster_on())
		return true;
	if (p->lease_spare != 0) {
		*lease = p->lease_spare;
		p->lease_spare = 0;
		return true;
	}
	if (p->lease_asking)
		return false;
	sched_path_key(p, key, sizeof(key));
	if (!cluster_shared()) {
		/* Away: sched_limit_conns is the share already. */
		*lease = cluster_lease_local(key);
		return true;
	}
	if (p->lease_retry_ms > now) {
		sched_timer_ms(p->timer, p->lease_retry_ms - now);
		return false;
	}
	if (cluster_lease_ask(key, sched_limit_conns(p), sched_path_lease_cb,
			      p) != 0) {
		/* Away since the check: the share, now. */
		if (p->nconn >= sched_limit_conns(p))
			return false;
		*lease = cluster_lease_local(key);
		return true;
	}
	p->lease_asking = true;
	return false;
}

/* A step down another node took (cluster_throttle_hook): KEY is
 * "POOL:SITE" (sched_path_key); a path this node does not have is left. */
static void
sched_cluster_throttle(const char *key, unsigned level, int64_t remain_ms)
{
	struct sched_path *p = sched_path_find(key);

	if (p != NULL)
		sched_limit_throttle_adopt(p, level, remain_ms, true);
}

void
sched_path_each(void (*fn)(struct sched_path *p, void *arg), void *arg)
{
	struct htab_entry *e;
	size_t it;
	unsigned i;

	for (e = htab_first(&sched->sites, &it); e != NULL;
	     e = htab_next(&sched->sites, e, &it)) {
		struct sched_site *s = e->value;

		for (i = 0; i < s->npaths; i++)
			fn(s->paths[i], arg);
	}
}

static void
sched_cluster_changed_path(struct sched_path *p, void *arg)
{
	(void)arg;
	p->lease_retry_ms = 0;
	/* Away: idle connections past the share go now. */
	sched_path_trim(p);
	if (p->njobs > 0)
		sched_path_kick(p);
}

/* Redis came back or went away: every path with work tries again. */
static void
sched_cluster_changed(void)
{
	sched_path_each(sched_cluster_changed_path, NULL);
}

/* P's connections open or opening, from every shard (its limit's
 * count); one shard's own quitting ones are the only ones it can take
 * off, so a trim may close a few more than the others would have. */
static unsigned
sched_path_open(const struct sched_path *p)
{
	unsigned n = p->nconn, q;

	/* Every shard's quitting ones are off the count too, so that each
	 * trims only what is past the limit: its own are added back, as
	 * the callers take them off. */
	if (p->share != NULL) {
		n = sched_share_nconn(p->share);
		q = sched_share_nquitting(p->share);
		n -= q < n ? q : n;
		n += p->nquitting;
	}
	return n > p->nquitting ? n : p->nquitting;
}

/* Connections that are opening (not yet asked for a job). */
static unsigned
sched_path_opening(struct sched_path *p)
{
	return p->nconn - p->nbusy - p->nidle;
}

struct sched_job *
sched_path_pop(struct sched_path *p)
{
	struct sched_job *job = p->head;

	if (job == NULL)
		return NULL;
	p->head = job->next;
	if (p->head == NULL)
		p->tail = NULL;
	if (--p->njobs == 0)
		p->rate_dry = true;
	job->next = NULL;
	return job;
}

/* A window over: its rate counts only if the line never ran dry (else it
 * measured the demand, not the destination). */
static void
sched_path_rate_update(struct sched_path *p, int64_t now)
{
	if (now - p->rate_ms < SCHED_RATE_WINDOW_MS)
		return;
	if (!p->rate_dry)
		p->rate =
		    (double)p->rate_done * 1000.0 / (double)(now - p->rate_ms);
	p->rate_done = 0;
	p->rate_ms = now;
	p->rate_dry = p->njobs == 0;
}

/* The waiting jobs P may hold: SCHED_LINE_SECONDS of its rate; UINT_MAX
 * while that is not measured. */
static unsigned
sched_path_line_max(struct sched_path *p, int64_t now)
{
	double n;

	sched_path_rate_update(p, now);
	if (p->rate < 0)
		return UINT_MAX;
	n = p->rate * SCHED_LINE_SECONDS;
	if (n < sched_line_min())
		return sched_line_min();
	return n > (double)(UINT_MAX / 2) ? UINT_MAX / 2 : (unsigned)n;
}

/* P's line over its length: the jobs past it wait parked (their rounds
 * end, nothing tried, nothing written). */
static void
sched_path_shed(struct sched_path *p, unsigned max)
{
	struct sched_job *job, *cut;
	unsigned i;

	if (p->njobs <= max || max == 0)
		return;
	for (job = p->head, i = 1; i < max; i++)
		job = job->next;
	cut = job->next;
	job->next = NULL;
	p->tail = job;
	p->njobs = max;
	while ((job = cut) != NULL) {
		cut = job->next;
		job->next = NULL;
		sched_job_park(job, &p->park);
	}
}

/* Room in P's line again: parked messages back to the retry heap (at
 * their due time, long past: first in), unless a pause holds them. */
static void
sched_path_refill(struct sched_path *p, unsigned max)
{
	if (p->park.n == 0 || p->paused || p->park.until_ms != 0 ||
	    max == UINT_MAX || p->njobs >= max / 2)
		return;
	sched_park_release(&p->park, max - p->njobs);
}

/* Keep idle C on P's list (the last parked is the first reused).  0, or -1
 * when the list cannot grow. */
static int
sched_path_idle_add(struct sched_path *p, struct sched_conn *c)
{
	struct sched_conn **v;
	unsigned cap;

	if (p->nidle == p->idle_cap) {
		cap = p->idle_cap ? p->idle_cap * 2 : 4;
		if ((v = realloc(p->idle, cap * sizeof(*v))) == NULL)
			return -1;
		p->idle = v;
		p->idle_cap = cap;
	}
	p->idle[p->nidle++] = c;
	if (!p->idling) {
		TAILQ_INSERT_TAIL(&sched->idlers, p, idle_link);
		p->idling = true;
	}
	return 0;
}

/* Take C off P's idle list (if it is there). */
static void
sched_path_idle_remove(struct sched_path *p, struct sched_conn *c)
{
	unsigned i;

	for (i = p->nidle; i-- > 0;) {
		if (p->idle[i] != c)
			continue;
		memmove(&p->idle[i], &p->idle[i + 1],
			(p->nidle - i - 1) * sizeof(*p->idle));
		if (--p->nidle == 0 && p->idling) {
			TAILQ_REMOVE(&sched->idlers, p, idle_link);
			p->idling = false;
		}
		return;
	}
}

void
sched_path_trim(struct sched_path *p)
{
	while (p->nidle > 0 &&
	       sched_path_open(p) - p->nquitting > sched_limit_conns(p)) {
		struct sched_conn *c = p->idle[p->nidle - 1];

		sched_path_idle_remove(p, c);
		sched_conn_quit(c);
	}
}

/*
 * P needs a connection and delivery.max_connections is reached: it waits
 * its turn for the next slot that ends, and an idle connection of another
 * path is asked to go (its slot is only worth keeping while nobody waits;
 * the slot frees when it has closed, in sched_conn_closed).
 */
static void
sched_path_wait_slot(struct sched_path *p)
{
	struct sched_path *o;

	if (!p->waiting) {
		TAILQ_INSERT_TAIL(&sched->waiting, p, wait_link);
		p->waiting = true;
	}
	TAILQ_FOREACH(o, &sched->idlers, idle_link)
	{
		if (o != p && o->nidle > 0) {
			struct sched_conn *c = o->idle[0]; /* longest idle */

			sched_path_idle_remove(o, c);
			sched_conn_quit(c);
			return;
		}
	}
}

/*
 * With shards, may P open one more connection as far as the others go
 * (delivery.max_connections over all, P's limit over all)?  False: P
 * waits for a slot (its turn in sched->waiting) or is kicked when another
 * shard's connection to it ends.  sched_path_share_give undoes it.
 */
static bool
sched_path_share_take(struct sched_path *p)
{
	if (sched_nshards == 1)
		return true;
	/* P's own limit first: at it, with this shard waiting already, it
	 * is a look at two words, not the global slot count's two atomic
	 * writes and a lock. */
	if (p->share != NULL &&
	    sched_share_conn_waiting(p->share, sched_limit_conns(p)))
		return false;
	if (!sched_share_slot_take(sched->conf->delivery.max_connections)) {
		sched_path_wait_slot(p);
		return false;
	}
	if (p->share != NULL &&
	    !sched_share_conn_take(p->share, sched_limit_conns(p))) {
		sched_share_slot_give();
		return false;
	}
	return true;
}

static void
sched_path_share_give(struct sched_path *p)
{
	if (sched_nshards == 1)
		return;
	if (p->share != NULL)
		sched_share_conn_give(p->share);
	sched_share_slot_give();
}

/* Does this shard hold more than its part (an even split over the
 * shards) of P's connections (SLOTS: of delivery.max_connections)?  BUSY:
 * it has work for them, and keeps one whatever the split. */
static bool
sched_path_over_part(const struct sched_path *p, bool slots, bool busy)
{
	unsigned part =
	    slots ? sched->conf->delivery.max_connections / sched_nshards
		  : sched_limit_conns(p) / sched_nshards;

	if (busy && part == 0)
		part = 1;
	return (slots ? sched->nconn : p->nconn) > part;
}

/* Another shard waits for a connection P holds, or for any slot, and this
 * one holds more than its part: one of P's is worth more closed.  (At or
 * under its part a shard keeps its connections, so that two busy shards
 * do not hand one back and forth.) */
static bool
sched_path_share_wanted(const struct sched_path *p, bool busy)
{
	return sched_nshards > 1 &&
	       ((p->share != NULL && sched_share_wanted(p->share) &&
		 sched_path_over_part(p, false, busy)) ||
		(sched_share_slot_wanted() &&
		 sched_path_over_part(p, true, busy)));
}

void
sched_path_yield(const char *key)
{
	struct sched_path *p = key != NULL ? sched_path_find(key) : NULL;
	struct sched_conn *c;

	if (key == NULL) {
		/* Any path's: the longest idle. */
		TAILQ_FOREACH(p, &sched->idlers, idle_link)
		if (p->nidle > 0)
			break;
	}
	if (p == NULL || p->nidle == 0 ||
	    !sched_path_over_part(p, key == NULL, false))
		return;
	c = p->idle[0]; /* longest idle */
	sched_path_idle_remove(p, c);
	sched_conn_quit(c);
}

/* A slot ended: the paths that waited for one, in turn, while slots last. */
void
sched_slots_kick(void)
{
	struct sched_path *p;

	while (sched->nconn < sched->conf->delivery.max_connections &&
	       (p = TAILQ_FIRST(&sched->waiting)) != NULL) {
		TAILQ_REMOVE(&sched->waiting, p, wait_link);
		p->waiting = false;
		sched_path_kick(p); /* may wait again */
		if (p->waiting)
			return; /* it took none: later waiters would not */
	}
}

static void
sched_path_dispatch(struct sched_path *p, struct sched_conn *c,
		    struct sched_job *job)
{
	sched_limit_rate_take(p, util_wall_ms());
	p->nbusy++;
	sched_conn_send(c, job);
}

/* JOB came back unsent: first in line again. */
static void
sched_path_push_front(struct sched_path *p, struct sched_job *job)
{
	job->next = p->head;
	p->head = job;
	if (p->tail == NULL)
		p->tail = job;
	p->njobs++;
}

/*
 * NAME, kept until sched_free: a connection holds its EHLO name for its
 * whole life, and a reload may free the configuration it came from.  The
 * names are few (one per pool), so a list will do; every shard's, under
 * sched_names_mu (a connection's start).
 */
static struct sched_name {
	struct sched_name *next;
	char s[];
} * sched_names;
static pthread_mutex_t sched_names_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *
sched_name_keep(const char *name)
{
	struct sched_name *n;
	size_t len;

	if (name == NULL)
		return NULL;
	pthread_mutex_lock(&sched_names_mu);
	for (n = sched_names; n != NULL; n = n->next)
		if (strcmp(n->s, name) == 0)
			goto done;
	len = strlen(name) + 1;
	/* NULL: the client greets with its default name */
	if ((n = malloc(sizeof(*n) + len)) != NULL) {
		memcpy(n->s, name, len);
		n->next = sched_names;
		sched_names = n;
	}
done:
	pthread_mutex_unlock(&sched_names_mu);
	return n != NULL ? n->s : NULL;
}

/*
 * Where and how a new connection of P goes: its site's hosts, the pool's
 * EHLO name (else the delivery default) and its next source address (round
 * robin), the destination's TLS policy and attempt bounds.
 */
static void
sched_path_target(struct sched_path *p, struct smtp_client_target *t)
{
	const struct conf_pool *pool = p->pool;

	memset(t, 0, sizeof(*t));
	t->hosts = p->site->hosts;
	t->nhosts = p->site->nhosts;
	t->port = p->site->port;
	t->ehlo = sched_name_keep(pool != NULL && pool->ehlo != NULL
				      ? pool->ehlo
				      : sched->conf->delivery.ehlo);
	if (pool != NULL && pool->nsources > 0) {
		t->source = pool->sources[p->source_next++ % pool->nsources];
		t->has_source = true;
	}
	t->tls = p->cfg->tls;
	/* MTA-STS enforce: STARTTLS, and a certificate valid for the MX
	 * host name (its site holds only hosts the policy names). */
	if (p->site->sts_mode == MTASTS_ENFORCE &&
	    (t->tls == CONF_TLSP_MAY || t->tls == CONF_TLSP_ENCRYPT ||
	     t->tls == CONF_TLSP_DANE))
		t->tls = CONF_TLSP_VERIFY;
	t->dane = p->site->dane;
	t->max_mx_addresses = p->cfg->max_mx_addresses;
	t->max_mx_sessions = p->cfg->max_mx_sessions;
	t->attempt_timeout_ms = p->cfg->attempt_timeout_ms;
}

/* Start as much work on P as its limits allow. */
void
sched_path_kick(struct sched_path *p)
{
	int64_t now = util_wall_ms(), when;
	struct smtp_client_target t;
	struct sched_conn *c;
	uint64_t lease;
	unsigned max;

	if (sched->stopping)
		return;
	if (p->paused_until_ms > now) {
		sched_timer_ms(p->timer, p->paused_until_ms - now);
		return;
	}
	max = sched_path_line_max(p, now);
	sched_path_shed(p, max);
	sched_path_refill(p, max);
	while (p->njobs > 0) {
		if (!sched_limit_rate_ok(p, now, &when)) {
			sched_timer_ms(p->timer, when - now);
			return;
		}
		if (p->nidle > 0) {
			c = p->idle[--p->nidle];
			/* Parked under the limits of its time: a reload, a
			 * back-off or a throttle may have lowered them. */
			if (c->msgs >= p->cfg->max_messages_per_connection ||
			    sched_path_open(p) - p->nquitting >
				sched_limit_conns(p)) {
				sched_conn_quit(c);
				continue;
			}
			sched_path_dispatch(p, c, sched_path_pop(p));
			continue;
		}
		if (p->njobs <= sched_path_opening(p) ||
		    p->nconn >= sched_limit_conns(p))
			return; /* every shard's count: sched_path_share_take */
		if (sched->nconn >= sched->conf->delivery.max_connections) {
			sched_path_wait_slot(p);
			return;
		}
		if (p->connect_after_ms > now) {
			sched_timer_ms(p->timer, p->connect_after_ms - now);
			return;
		}
		if (!sched_path_lease(p, now, &lease))
			return;
		if (!sched_path_share_take(p)) {
			cluster_lease_drop(lease);
			return;
		}
		sched_path_target(p, &t);
		if ((c = sched_conn_open(p, &t)) == NULL) {
			sched_path_share_give(p);
			cluster_lease_drop(lease);
			return;
		}
		c->lease = lease;
		p->nconn++;
		sched->nconn++;
	}
}

/* A connection's events (sched_conn.c brings them to this loop). */
void
sched_path_on_ready(struct sched_conn *c)
{
	struct sched_path *p = c->path;
	int64_t now = util_wall_ms(), when;

	if (c->quitting)
		return; /* told to go before it said it was ready */
	if (sched->stopping || p->paused_until_ms > now ||
	    c->msgs >= p->cfg->max_messages_per_connection ||
	    sched_path_open(p) - p->nquitting > sched_limit_conns(p)) {
		sched_conn_quit(c);
		return;
	}
	if (p->njobs > 0 && sched_limit_rate_ok(p, now, &when)) {
		sched_path_dispatch(p, c, sched_path_pop(p));
		return;
	}
	/* Nothing to do now: keep it for a while, unless another path waits
	 * for a slot under delivery.max_connections (or another shard for
	 * one of P's, or for a slot). */
	if (!TAILQ_EMPTY(&sched->waiting) ||
	    sched_path_share_wanted(p, false) ||
	    sched_path_idle_add(p, c) != 0) {
		sched_conn_quit(c);
		return;
	}
	sched_conn_park(c);
	if (p->njobs > 0)
		sched_path_kick(p); /* arms the rate timer */
}

void
sched_path_on_done(struct sched_conn *c, struct sched_job *job)
{
	struct sched_path *p = c->path;

	p->nbusy--;
	job->conn = NULL;
	if (job->unsent) {
		/* Its connection was leaving: another takes it (the closed
		 * report that follows kicks the path too). */
		job->unsent = false;
		sched_path_push_front(p, job);
		sched_path_kick(p);
		return;
	}
	p->rate_done++;
	sched_job_results(job);
}

void
sched_path_on_closed(struct sched_conn *c)
{
	struct sched_path *p = c->path;
	struct sched_job *job, *all = NULL, **tail = &all;
	bool failed = c->failed;
	enum outcome_stage stage = c->stage;
	int code = c->code;
	const char *text = c->text;

	sched_path_idle_remove(p, c);
	if (c->quitting) {
		p->nquitting--;
		if (p->share != NULL)
			sched_share_quitting(p->share, -1);
	}
	cluster_lease_drop(c->lease);
	c->lease = 0;
	p->lease_retry_ms = 0; /* a place the cluster may give again */
	p->nconn--;
	sched->nconn--;
	sched_path_share_give(p);
	sched_slots_kick();
	if (failed) {
		/* No host of the site could be used.  If no other connection
		 * is working for this path, its queued jobs are deferred
		 * (they would wait on a dead site) and the path backs off. */
		p->conn_failures++;
		if (p->nbusy == 0 && p->nidle == 0 && p->njobs > 0) {
			/* Every job that waited for this connection carries
			 * its failure (an attempt each); the first outcome
			 * backs the path off, so what comes later is held in
			 * place until the pause is over. */
			while ((job = sched_path_pop(p)) != NULL) {
				*tail = job;
				tail = &job->next;
			}
			while ((job = all) != NULL) {
				all = job->next;
				job->next = NULL;
				job->cj.tls_failure = c->tls_failure;
				job->cj.dane = c->dane;
				sched_job_fail(job, stage, code,
					       text ? text
						    : "connection failed");
			}
		} else if (p->nbusy == 0 && p->nidle == 0) {
			/* No job to carry it: said as a job's would be. */
			char why[300];

			snprintf(why, sizeof(why), "%s: %s",
				 outcome_stage_name(stage),
				 text ? text : "connection failed");
			sched_limit_backoff(p, why);
		} else {
			/* Other connections work: the host is only partly
			 * unwell.  Open no new one for a while (never a
			 * reconnect loop). */
			int64_t wait = 1000 * (int64_t)(p->conn_failures < 30
							    ? p->conn_failures
							    : 30);

			p->connect_after_ms = util_wall_ms() + wait;
		}
	}
	sched_path_kick(p);
	sched_maybe_stop();
}

/* Reload ------------------------------------------------------------- */

/* The pool of C named as OLD is (or C's default pool when it is gone). */
static const struct conf_pool *
sched_reconf_pool(const struct conf *c, const struct conf_pool *old)
{
	size_t i;

	if (old == NULL)
		return NULL;
	for (i = 0; i < c->npools; i++)
		if (strcmp(c->pools[i].name, old->name) == 0)
			return &c->pools[i];
	return c->default_pool;
}

/* The destination section of C written as OLD was (or C's default). */
static const struct conf_destination *
sched_reconf_cfg(const struct conf *c, const struct conf_destination *old)
{
	size_t i;

	for (i = 0; old->domain != NULL && i < c->ndestinations; i++)
		if (strcmp(c->destinations[i].domain, old->domain) == 0)
			return &c->destinations[i];
	return &c->dest_default;
}

/* P's pool and limits, by name, in the new configuration ARG. */
static void
sched_reconf_path(struct sched_path *p, void *arg)
{
	const struct conf *c = arg;

	p->pool = sched_reconf_pool(c, p->pool);
	p->cfg = sched_reconf_cfg(c, p->cfg);
}

/*
 * On the delivery loop, between two callbacks (a safe point: nothing of
 * the scheduler is half done): every pointer into the old configuration
 * moves to the new one, so that the old one can go at once.  Rounds keep
 * their pool by name, paths their pool and limits by name, destinations
 * re-read their limits and route; connections hold only their site's
 * hosts (the scheduler's) and their EHLO name (sched_name_keep).
 */
static void
sched_reconf_on_loop(void *arg)
{
	const struct conf *c = arg, *old = sched->conf;
	struct sched_msg *m;

	sched->conf = c; /* its reference was taken by sched_reconf */
	sched_conn_reconf(c);
	for (m = sched->active; m != NULL; m = m->r->next)
		m->r->pool = sched_reconf_pool(c, m->r->pool);
	sched_path_each(sched_reconf_path, (void *)c);
	sched_dest_reconf();
	if (sched == &sched_main)
		tlsrpt_reconf(c);
	conf_unref(old);
}

void
sched_reconf(const struct conf *c)
{
	unsigned i;

	for (i = 0; i < sched_nshards; i++)
		loop_post(sched_shards[i]->loop, sched_reconf_on_loop,
			  (void *)conf_ref(c));
}

/* Entry points -------------------------------------------------------- */

/* OP, not scheduled: its body's count goes back (sched_message_add). */
static void
sched_op_free(struct queue_op *op)
{
	if (op->body != NULL)
		atomic_fetch_sub(&sched_main.body_kept, op->body_cap);
	queue_op_free(op);
}

static void
sched_on_new(void *arg)
{
	struct queue_op *op = arg;
	struct sched_msg *m;

	/* Committed just before the start-up scan read the queue, announced
	 * after it: the scan has it already (ids are never reused), and a
	 * second copy would be delivered twice. */
	if (idmap_get(&sched->ids, op->env.id) != NULL) {
		sched_op_free(op);
		return;
	}
	m = sched_msg_new(op->env.id, op->env.next_attempt_ms);
	if (m == NULL || sched_round_new(m, &op->env) != 0) {
		/* It is safe on disk: the next start picks it up. */
		log_warnx("out of memory scheduling a new message");
		if (m != NULL)
			sched_msg_free(m);
		sched_op_free(op);
		return;
	}
	/* A body left in OP (sched_message_add) is kept for the first round,
	 * already counted; any other is read from the queue a chunk at a
	 * time.  (The envelope is the round's now.) */
	if (op->body != NULL) {
		m->r->body = op->body;
		m->r->body_len = op->body_len;
		m->r->body_charge = op->body_cap;
		op->body = NULL;
		op->body_len = 0;
	}
	queue_op_free(op);
	if (m->r->env.flags & QUEUE_F_HELD) {
		/* Held (by policy or an operator): known, not scheduled. */
		sched_round_free(m);
		sched_msg_hold(m);
		return;
	}
	if (sched->stopping ||
	    sched->nactive + sched->nloading > SCHED_MAX_ACTIVE) {
		/* Over the limit: wait in the heap, due now, without the
		 * round (it is read back from the queue when its turn
		 * comes). */
		sched_round_free(m);
		sched_msg_due(m);
		return;
	}
	sched_round_start(m);
}

/*
 * A small body (whole in OP: not spooled) may be kept for the first round.
 * It is counted against SCHED_BODY_KEEP_TOTAL here, on the committing
 * thread, so that bodies on their way to a busy brain count too; past the
 * total it is dropped before the post (delivery reads the queue).  It
 * counts as the memory it holds (its buffer, often larger than the
 * message), so that the total is memory, not message octets.
 */
void
sched_message_add(struct queue_op *op)
{
	size_t cur, n = op->body_len;
	bool keep =
	    op->body != NULL && n == op->env.size && n <= SCHED_BODY_KEEP_BYTES;

	if (op->body_cap < n)
		op->body_cap = n;
	cur = atomic_load(&sched_main.body_kept);
	while (keep) {
		if (cur + op->body_cap > SCHED_BODY_KEEP_TOTAL)
			keep = false;
		else if (atomic_compare_exchange_weak(&sched_main.body_kept,
						      &cur, cur + op->body_cap))
			break;
	}
	if (!keep && op->body != NULL) {
		free(op->body);
		op->body = NULL;
		op->body_len = 0;
		op->body_cap = 0;
	}
	loop_post(sched_shard_of(op->env.id)->loop, sched_on_new, op);
}

/*
 * A second schedule entry for a message already known (left by a version
 * that moved a due time in memory only): fold it into the first, the
 * earlier due time, held if either is, and remove it from disk.
 */
static void
sched_walk_dup(struct sched_msg *m, int64_t due_ms, unsigned flags)
{
	char qid[QUEUE_ID_HEX_BYTES];

	queue_id_format(m->id, qid);
	log_warnx("%s has a second schedule entry; merged", qid);
	if ((flags & QUEUE_F_HELD) && !(m->flags & SM_HELD)) {
		sched_heap_remove(&sched->heap, m);
		sched_msg_hold(m);
	}
	/* Moves the entry at DUE_MS onto M's own (rewritten, same key). */
	sched_write_resched(m, due_ms, (m->flags & SM_HELD) != 0);
}

static int
sched_walk_cb(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct sched_msg *m;
	uint64_t *n = arg;

	if (sched_shard_of(id) != sched)
		return 0; /* another shard's (each walks the whole index) */
	if ((m = idmap_get(&sched->ids, id)) != NULL) {
		/* Known since an earlier step of the load: its own entry, moved
		 * ahead of the walk (a retry, a new message), or one its writes
		 * in flight replace, is not a second entry. */
		if (m->due_ms != due_ms && m->writes == 0)
			sched_walk_dup(m, due_ms, flags);
		return 0;
	}
	if ((m = sched_msg_new(id, due_ms)) == NULL)
		return -1;
	if (flags & QUEUE_F_HELD)
		sched_msg_hold(m); /* known, not scheduled */
	else
		sched_msg_due(m);
	(*n)++;
	return 0;
}

/* Entries of the schedule index read per step of the start-up load:
 * about 1.5 ms of a delivery loop (0.6 us each): deliveries take turns
 * with them on the same loop. */
#define SCHED_LOAD_STEP 2048

/* Shards whose load is over, and what they found: the last says it. */
static _Atomic unsigned sched_loads_done;
static _Atomic uint64_t sched_loads_n;

static void
sched_load_done(void)
{
	uint64_t n =
	    atomic_fetch_add(&sched_loads_n, sched->load_n) + sched->load_n;

	if (sched_nshards > 1)
		log_debug("scheduler: shard %u has its %" PRIu64
			  " queued message(s)",
			  sched->index, sched->load_n);
	if (atomic_fetch_add(&sched_loads_done, 1) + 1 == sched_nshards)
		log_info("scheduler: %" PRIu64 " queued message(s) loaded", n);
}

/*
 * One step of the start-up load: SCHED_LOAD_STEP entries of the schedule
 * index (due time and id: no decryption, no envelope), then the loop runs
 * before the next.  The index is in due order, so what is due comes first,
 * and deliveries start after the first step while the rest loads: 10M
 * messages take seconds to walk.  The next step is a timer of 1 us, not an
 * immediate activation: libevent runs the active events it is given while
 * it runs them, so a step that activated the next kept the loop from
 * polling (no DNS answer, no connection, no timer) until the whole queue
 * was loaded (11.8 s at 10M messages before the first delivery).
 */
static void
sched_load_step(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval now = { 0, 1 };
	char err[256];
	int rc;

	(void)fd;
	(void)what;
	(void)arg;
	if (sched->stopping) {
		log_info("scheduler: stopping: %" PRIu64
			 " queued message(s) loaded, the rest not",
			 sched->load_n);
		return;
	}
	rc = queue_sched_walk_batch(sched->queue, &sched->load_pos,
				    SCHED_LOAD_STEP, sched_walk_cb,
				    &sched->load_n, err, sizeof(err));
	if (rc != 0) {
		log_warnx("queue scan stopped after %" PRIu64 " messages: %s",
			  sched->load_n, rc == -1 ? err : "out of memory");
		sched->load_pos.done = true;
	}
	if (!sched->load_pos.done &&
	    event_base_once(sched->loop->base, -1, EV_TIMEOUT, sched_load_step,
			    NULL, &now) == 0)
		return;
	if (!sched->load_pos.done)
		log_warnx("queue scan stopped after %" PRIu64
			  " messages: cannot schedule its next step",
			  sched->load_n);
	sched_load_done();
	sched_retry_arm();
}

/* Shards past the first step of their load, and who hears when all are
 * (sched_ready). */
static _Atomic unsigned sched_first_steps;
static loop_fn *sched_ready_fn;
static void *sched_ready_arg;

/* Start-up: the destinations' state, then the queue in steps. */
static void
sched_load_queue(void *arg)
{
	(void)arg;
	sched_state_load();
	if (sched == &sched_main) {
		mtasts_load();
		tlsrpt_load();
		sched_scan_postpone(util_wall_ms());
	}
	memset(&sched->load_pos, 0, sizeof(sched->load_pos));
	sched->load_n = 0;
	sched_load_step(-1, 0, NULL);
	/* Its first step is done: the last shard's says so (sched_ready). */
	if (atomic_fetch_add(&sched_first_steps, 1) + 1 == sched_nshards &&
	    sched_ready_fn != NULL)
		loop_post(sched_main.loop, sched_ready_fn, sched_ready_arg);
}

void
sched_ready(loop_fn *fn, void *arg)
{
	sched_ready_fn = fn;
	sched_ready_arg = arg;
}

void
sched_start(void)
{
	unsigned i;

	for (i = 0; i < sched_nshards; i++)
		loop_post(sched_shards[i]->loop, sched_load_queue, NULL);
}

int
sched_init(const struct sched_config *sc, char *err, size_t errlen)
{
	const struct conf *c = sc->conf;
	struct loop *l = sc->loop;

	sched_nshards = 0;
	if (sched_shard_init(&sched_main, l, sc, err, errlen) != 0)
		return -1;
	sched = &sched_main;
	if (sc->dns == NULL) {
		/* Test mode without a DNS server of its own: never fall back
		 * to the system resolver; every lookup fails (deferred). */
		log_info("delivery: loopback_only and no dns servers: DNS "
			 "lookups disabled");
	} else {
		struct dns_config dc;

		sched_dns_share(sc->dns, c->delivery.threads, &dc);
		if ((sched->dns =
			 dns_resolver_new(l->base, &dc, err, errlen)) == NULL)
			return -1;
	}
	if (cluster_init(l->base, &c->cluster, sched_cluster_changed, err,
			 errlen) != 0)
		return -1;
	cluster_throttle_hook(sched_cluster_throttle);
	if (https_init(l->base, sched->dns, SSL_CTX_get_cert_store(sc->ssl_ctx),
		       sc->loopback_only, err, errlen) != 0 ||
	    mtasts_init(l->base, sched->dns, sched->queue, err, errlen) != 0 ||
	    tlsrpt_init(l->base, sched->dns, sched->queue, sched_report_queue,
			c, err, errlen) != 0)
		return -1;
	smtp_client_tls_init(sc->ssl_ctx);
	/* A cluster's leases and rates are asked from loop 0 only: with
	 * one, the scheduler stays there and the other loops hold
	 * connections (sched_conn.c). */
	return sched_conn_init(sc, c->delivery.threads,
			       c->delivery.threads > 1 && !cluster_on(), err,
			       errlen);
}

int
sched_shard_new(struct sched_cloop *cl, const struct sched_config *sc,
		char *err, size_t errlen)
{
	struct sched *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (sched_shard_init(s, cl->loop, sc, err, errlen) != 0) {
		if (sched_nshards == 0 ||
		    sched_shards[sched_nshards - 1] != s) /* not in the table */
			free(s);
		return -1;
	}
	s->dns = cl->env.dns;
	s->cloops = cl;
	s->ncloops = 1;
	return 0;
}

int
sched_shard_init(struct sched *s, struct loop *l, const struct sched_config *sc,
		 char *err, size_t errlen)
{
	struct timeval now = { 0, 0 };

	memset(s, 0, sizeof(*s));
	if (sched_nshards == SCHED_SHARDS_MAX) {
		snprintf(err, errlen, "more than %d delivery loops",
			 SCHED_SHARDS_MAX);
		return -1;
	}
	s->index = sched_nshards;
	sched_shards[sched_nshards++] = s;
	l->on_start = sched_bind;
	l->on_start_arg = s;
	l->on_stop = sched_unbind;
	TAILQ_INIT(&s->waiting);
	TAILQ_INIT(&s->idlers);
	s->loop = l;
	s->conf = conf_ref(sc->conf);
	s->queue = sc->queue;
	pthread_mutex_init(&s->gauge_mu, NULL);
	s->retry_timer = evtimer_new(l->base, sched_retry_cb, NULL);
	s->gauge_timer = evtimer_new(l->base, sched_metrics_cb, NULL);
	s->wq_flush = event_new(l->base, -1, 0, sched_write_flush_cb, NULL);
	s->loads_tail = &s->loads;
	s->loads_flush =
	    event_new(l->base, -1, 0, sched_round_loads_flush_cb, NULL);
	if (htab_init(&s->dests) != 0 || htab_init(&s->sites) != 0 ||
	    idmap_init(&s->ids) != 0 || s->retry_timer == NULL ||
	    s->gauge_timer == NULL || s->wq_flush == NULL ||
	    s->loads_flush == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	evtimer_add(s->gauge_timer, &now);
	return 0;
}

/* Shutdown ------------------------------------------------------------ */

/* Shards that have stopped (all in flight settled): loop 0's ends with
 * the last, so that main joins it only when every shard is done. */
static _Atomic unsigned sched_shards_stopped;

/* On loop 0: one more shard is done; the last one ends loop 0. */
static void
sched_shard_stopped(void *arg)
{
	(void)arg;
	if (atomic_fetch_add(&sched_shards_stopped, 1) + 1 == sched_nshards)
		loop_stop(sched_main.loop);
}

void
sched_maybe_stop(void)
{
	if (!sched->stopping || sched->stopped || sched->nconn != 0 ||
	    sched->writes != 0)
		return;
	sched->stopped = true;
	if (sched == &sched_main)
		sched_shard_stopped(NULL);
	else
		loop_post(sched_main.loop, sched_shard_stopped, NULL);
}

static void
sched_stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Cut what is still running; its recipients are deferred. */
	sched_conn_abort_all();
	sched_maybe_stop();
}

/* Stopping: P's timer off, its idle connections told to quit. */
static void
sched_stop_path(struct sched_path *p, void *arg)
{
	(void)arg;
	evtimer_del(p->timer);
	while (p->nidle > 0)
		sched_conn_quit(p->idle[--p->nidle]);
}

static void sched_shutdown_here(unsigned deadline_ms);

static void
sched_shutdown_run(void *arg)
{
	sched_shutdown_here((unsigned)(uintptr_t)arg);
}

void
sched_shutdown(unsigned deadline_ms)
{
	unsigned i;

	sched_scan_stop();
	tlsrpt_stop();
	cluster_stop();
	sched_sts_stop();
	for (i = 1; i < sched_nshards; i++)
		loop_post(sched_shards[i]->loop, sched_shutdown_run,
			  (void *)(uintptr_t)deadline_ms);
	sched_shutdown_here(deadline_ms);
}

/* This shard stops: no new attempt; what is in flight ends, or is cut at
 * the deadline. */
static void
sched_shutdown_here(unsigned deadline_ms)
{
	struct timeval tv;

	sched->stopping = true;
	evtimer_del(sched->retry_timer);
	evtimer_del(sched->gauge_timer);
	sched_path_each(sched_stop_path, NULL);
	tv.tv_sec = deadline_ms / 1000;
	tv.tv_usec = (deadline_ms % 1000) * 1000;
	event_base_once(sched->loop->base, -1, EV_TIMEOUT,
			sched_stop_deadline_cb, NULL, &tv);
	sched_maybe_stop();
}

/* Main thread, after the loops have ended: what SHARD holds (with
 * sched == SHARD, as its own code expects). */
static void
sched_shard_free(struct sched *shard)
{
	struct htab_entry *e;
	struct sched_job *job, *next;
	size_t it;
	unsigned i, k;

	sched = shard;
	sched_state_free();
	for (e = htab_first(&sched->dests, &it); e != NULL;
	     e = htab_next(&sched->dests, e, &it)) {
		struct sched_dest *d = e->value;

		for (job = d->waiting; job != NULL; job = next) {
			next = job->next;
			sched_job_free(job);
		}
		if (d->q != NULL)
			dns_cancel(d->q);
		if (d->sts_q != NULL)
			sched_sts_cancel(d->sts_q);
		mtasts_policy_clear(&d->sts);
		sched_park_free(&d->park);
		free(d->suspend_reason);
		free(d->ace);
		free(d->domain);
		free(d);
	}
	for (e = htab_first(&sched->sites, &it); e != NULL;
	     e = htab_next(&sched->sites, e, &it)) {
		struct sched_site *s = e->value;

		for (i = 0; i < s->npaths; i++) {
			struct sched_path *p = s->paths[i];

			for (job = p->head; job != NULL; job = next) {
				next = job->next;
				sched_job_free(job);
			}
			event_free(p->timer);
			sched_park_free(&p->park);
			free(p->idle);
			free(p);
		}
		for (k = 0; k < s->nhosts; k++) {
			free(s->hosts[k].name);
			if (s->hosts[k].session != NULL)
				SSL_SESSION_free(s->hosts[k].session);
		}
		free(s->hosts);
		free(s->paths);
		free(s->policy_domain);
		free(s->key);
		free(s);
	}

	htab_free(&sched->dests);
	htab_free(&sched->sites);
	/* Every message is in the id map, whatever its state. */
	for (k = 0; k < sched->ids.cap; k++) {
		struct sched_msg *m = sched->ids.vals[k];

		if (m == NULL)
			continue;
		if (m->r != NULL)
			sched_round_free(m);
		free(m);
	}
	idmap_free(&sched->ids);
	sched_heap_free(&sched->heap);
	if (sched->retry_timer != NULL)
		event_free(sched->retry_timer);
	if (sched->gauge_timer != NULL)
		event_free(sched->gauge_timer);
	sched_round_loads_free(); /* none: a stopping shard loads nothing */
	if (sched->loads_flush != NULL)
		event_free(sched->loads_flush);
	if (sched->wq_flush != NULL) {
		sched_write_flush(); /* sched_loops_flush left it empty */
		event_free(sched->wq_flush);
	}
	free(sched->gauges);
	sched_metrics_shard_free();
	pthread_mutex_destroy(&sched->gauge_mu);
	conf_unref(sched->conf);
	sched->conf = NULL;
}

/* Main thread, after the delivery loops have ended: free everything. */
void
sched_free(void)
{
	unsigned i;

	/* First: nothing of Redis' may call back into what goes below. */
	cluster_free();
	/* Then the last completions, each on its own shard (a worker's
	 * envelope load may have come after its loop ended), before any
	 * shard is freed. */
	sched_loops_flush();
	for (i = sched_nshards; i-- > 0;) {
		sched_shard_free(sched_shards[i]);
		if (i > 0)
			free(sched_shards[i]);
	}
	sched = &sched_main;
	sched_sts_free();
	sched_metrics_free();
	sched_conn_free();
	smtp_client_tls_free();
	tlsrpt_free(); /* its lookups first: they are the resolver's */
	mtasts_free();
	https_free();
	if (sched_main.dns != NULL)
		dns_resolver_free(sched_main.dns);
	while (sched_names != NULL) {
		struct sched_name *n = sched_names;

		sched_names = n->next;
		free(n);
	}
	sched_share_free();
}
