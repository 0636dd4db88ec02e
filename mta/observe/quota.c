/*
 * quota.c — per user quotas (see quota.h): a table of the users that have
 * one, each with, per period, its window (the UTC hour or day since the
 * epoch), the total Redis last gave (or this node's own count alone), what
 * was taken for Redis and not yet answered, and what was counted since.
 * Owns: that table (under qt.mu) and the refusal counters.  Must not: hold
 * the mutex across anything but arithmetic.  Called from: SMTP loops
 * (check, note), the cluster's loop (sync), main (open, reconf, close).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "mta/core/htab.h"
#include "mta/core/util.h"
#include "mta/observe/metrics_top.h"
#include "mta/observe/quota.h"

static const int64_t quota_period_ms[QUOTA__COUNT] = {
	[QUOTA_HOUR] = 3600000,
	[QUOTA_DAY] = 86400000,
};

struct quota_win {
	unsigned limit;   /* 0: none for this period */
	int64_t window;   /* now / period */
	uint64_t known;   /* the cluster's total (alone: our own count) */
	uint64_t flying;  /* taken for Redis, not answered yet */
	uint64_t pending; /* counted since the last take */
	/* refusals (metrics; read without the mutex) */
	_Atomic uint64_t refused;
};

struct quota_ent {
	char *user;
	char label[METRICS_LABEL_MAX];
	struct quota_win w[QUOTA__COUNT];
	bool live; /* in the configuration now */
};

static struct {
	pthread_mutex_t mu;
	struct htab users; /* name -> struct quota_ent */
	bool open;
	bool cluster; /* a cluster is configured: totals come from Redis */
	bool shared;  /* … and Redis answers */
	unsigned nodes;
} qt = { .mu = PTHREAD_MUTEX_INITIALIZER };

const char *
quota_period_name(enum quota_period p)
{
	return p == QUOTA_HOUR ? "hour" : "day";
}

/* W's counts for the window of NOW_MS (a new window starts at 0). */
static void
quota_win_roll(struct quota_win *w, enum quota_period p, int64_t now_ms)
{
	int64_t win = now_ms / quota_period_ms[p];

	if (win == w->window)
		return;
	w->window = win;
	w->known = w->flying = w->pending = 0;
}

/* Under qt.mu: the users of C with a quota in the table (kept counts). */
static int
quota_load(const struct conf *c)
{
	struct htab_entry *e;
	struct quota_ent *q;
	size_t i, it;

	for (e = htab_first(&qt.users, &it); e != NULL;
	     e = htab_next(&qt.users, e, &it))
		((struct quota_ent *)e->value)->live = false;
	for (i = 0; i < c->nusers; i++) {
		const struct conf_user *u = &c->users[i];

		if (u->max_messages_per_hour == 0 &&
		    u->max_messages_per_day == 0)
			continue;
		if ((q = htab_get(&qt.users, u->name)) == NULL) {
			if ((q = calloc(1, sizeof(*q))) == NULL ||
			    (q->user = strdup(u->name)) == NULL ||
			    htab_put(&qt.users, u->name, q) != 0) {
				if (q != NULL)
					free(q->user);
				free(q);
				return -1;
			}
			metrics_user_label(u->name, q->label);
		}
		q->w[QUOTA_HOUR].limit = u->max_messages_per_hour;
		q->w[QUOTA_DAY].limit = u->max_messages_per_day;
		q->live = true;
	}
	return 0;
}

int
quota_open(const struct conf *c, unsigned nodes)
{
	int rc;

	pthread_mutex_lock(&qt.mu);
	if (htab_init(&qt.users) != 0) {
		pthread_mutex_unlock(&qt.mu);
		return -1;
	}
	qt.open = true;
	qt.cluster = c->cluster.redis_host != NULL;
	qt.shared = false;
	qt.nodes = nodes > 0 ? nodes : 1;
	rc = quota_load(c);
	pthread_mutex_unlock(&qt.mu);
	return rc;
}

void
quota_reconf(const struct conf *c)
{
	pthread_mutex_lock(&qt.mu);
	if (qt.open)
		(void)quota_load(c); /* out of memory: the old quotas stay */
	pthread_mutex_unlock(&qt.mu);
}

void
quota_close(void)
{
	struct htab_entry *e;
	size_t it;

	pthread_mutex_lock(&qt.mu);
	if (qt.open) {
		for (e = htab_first(&qt.users, &it); e != NULL;
		     e = htab_next(&qt.users, e, &it)) {
			struct quota_ent *q = e->value;

			free(q->user);
			free(q);
		}
		htab_free(&qt.users);
		qt.open = false;
	}
	pthread_mutex_unlock(&qt.mu);
}

/* Under qt.mu: may W take one more?  Alone or with Redis answering, the
 * total and what is on its way to it stay under the limit; with Redis
 * away, what was counted since stays under this node's share of what was
 * left. */
static bool
quota_win_ok(const struct quota_win *w)
{
	uint64_t used = w->known + w->flying, left, share;

	if (w->limit == 0)
		return true;
	if (!qt.cluster || qt.shared)
		return used + w->pending < w->limit;
	left = used < w->limit ? w->limit - used : 0;
	share = left / qt.nodes > 0 ? left / qt.nodes : 1;
	return used < w->limit && w->pending < share;
}

bool
quota_check(const char *user, int64_t now_ms, enum quota_period *period,
	    unsigned *limit, int64_t *until_ms)
{
	struct quota_ent *q;
	bool ok = true;
	int p;

	if (user == NULL)
		return true;
	pthread_mutex_lock(&qt.mu);
	if (qt.open && (q = htab_get(&qt.users, user)) != NULL && q->live) {
		for (p = 0; p < QUOTA__COUNT && ok; p++) {
			struct quota_win *w = &q->w[p];

			quota_win_roll(w, p, now_ms);
			if (quota_win_ok(w))
				continue;
			ok = false;
			atomic_fetch_add(&w->refused, 1);
			*period = p;
			*limit = w->limit;
			*until_ms = (w->window + 1) * quota_period_ms[p];
		}
	}
	pthread_mutex_unlock(&qt.mu);
	return ok;
}

void
quota_note(const char *user, int64_t now_ms)
{
	struct quota_ent *q;
	int p;

	if (user == NULL)
		return;
	pthread_mutex_lock(&qt.mu);
	if (qt.open && (q = htab_get(&qt.users, user)) != NULL) {
		for (p = 0; p < QUOTA__COUNT; p++) {
			quota_win_roll(&q->w[p], p, now_ms);
			if (qt.cluster)
				q->w[p].pending++;
			else
				q->w[p].known++;
		}
	}
	pthread_mutex_unlock(&qt.mu);
}

void
quota_shared(bool shared)
{
	pthread_mutex_lock(&qt.mu);
	qt.shared = shared;
	pthread_mutex_unlock(&qt.mu);
}

void
quota_sync_take(int64_t now_ms, quota_sync_fn *fn, void *arg)
{
	struct htab_entry *e;
	size_t it;
	int p;

	pthread_mutex_lock(&qt.mu);
	for (e = qt.open ? htab_first(&qt.users, &it) : NULL; e != NULL;
	     e = htab_next(&qt.users, e, &it)) {
		struct quota_ent *q = e->value;

		for (p = 0; p < QUOTA__COUNT; p++) {
			struct quota_win *w = &q->w[p];
			uint64_t delta;

			if (w->limit == 0)
				continue;
			quota_win_roll(w, p, now_ms);
			delta = w->pending;
			w->pending = 0;
			w->flying += delta;
			/* FN only formats a command: no lock taken there. */
			fn(q->user, p, w->window, delta, arg);
		}
	}
	pthread_mutex_unlock(&qt.mu);
}

/* Under qt.mu: USER's window of PERIOD, or NULL if it moved on. */
static struct quota_win *
quota_win_of(const char *user, enum quota_period period, int64_t window)
{
	struct quota_ent *q;

	if (!qt.open || (q = htab_get(&qt.users, user)) == NULL ||
	    q->w[period].window != window)
		return NULL;
	return &q->w[period];
}

void
quota_sync_done(const char *user, enum quota_period period, int64_t window,
		uint64_t delta, uint64_t total)
{
	struct quota_win *w;

	pthread_mutex_lock(&qt.mu);
	if ((w = quota_win_of(user, period, window)) != NULL) {
		w->flying = w->flying > delta ? w->flying - delta : 0;
		/* Answers come in order: TOTAL holds every delta answered so
		 * far, none of those still flying. */
		w->known = total;
	}
	pthread_mutex_unlock(&qt.mu);
}

void
quota_sync_failed(const char *user, enum quota_period period, int64_t window,
		  uint64_t delta)
{
	struct quota_win *w;

	pthread_mutex_lock(&qt.mu);
	if ((w = quota_win_of(user, period, window)) != NULL) {
		w->flying = w->flying > delta ? w->flying - delta : 0;
		w->pending += delta;
	}
	pthread_mutex_unlock(&qt.mu);
}

/* One metric family of every user with a quota: NAME's HELP and TYPE,
 * then a line per user and period with VALUE(w).  Under qt.mu. */
static size_t
quota_metrics_family(char *buf, size_t len, size_t off, const char *name,
		     const char *type, const char *help,
		     uint64_t (*value)(struct quota_win *w, int p))
{
	struct htab_entry *e;
	size_t it;
	int n, p;

	n = snprintf(off < len ? buf + off : NULL, off < len ? len - off : 0,
		     "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	off += n > 0 ? (size_t)n : 0;
	for (e = htab_first(&qt.users, &it); e != NULL;
	     e = htab_next(&qt.users, e, &it)) {
		struct quota_ent *q = e->value;

		for (p = 0; p < QUOTA__COUNT; p++) {
			if (q->w[p].limit == 0)
				continue;
			n = snprintf(off < len ? buf + off : NULL,
				     off < len ? len - off : 0,
				     "%s{user=\"%s\",period=\"%s\"} %llu\n",
				     name, q->label, quota_period_name(p),
				     (unsigned long long)value(&q->w[p], p));
			off += n > 0 ? (size_t)n : 0;
		}
	}
	return off;
}

static uint64_t
quota_metric_refused(struct quota_win *w, int p)
{
	(void)p;
	return atomic_load(&w->refused);
}

/* What this node counts as used in the window now: the cluster's total
 * as Redis last gave it (alone: its own count), plus what is on its way
 * there. */
static uint64_t
quota_metric_used(struct quota_win *w, int p)
{
	quota_win_roll(w, (enum quota_period)p, util_wall_ms());
	return w->known + w->flying + w->pending;
}

static uint64_t
quota_metric_limit(struct quota_win *w, int p)
{
	(void)p;
	return w->limit;
}

size_t
quota_metrics_text(char *buf, size_t len)
{
	size_t off = 0;

	pthread_mutex_lock(&qt.mu);
	if (!qt.open || qt.users.n == 0) {
		pthread_mutex_unlock(&qt.mu);
		return 0;
	}
	off = quota_metrics_family(
	    buf, len, off, "outpost_quota_refusals_total", "counter",
	    "MAIL commands refused (452 4.7.0) because the user was over its "
	    "quota, by user and period.",
	    quota_metric_refused);
	off = quota_metrics_family(
	    buf, len, off, "outpost_quota_used", "gauge",
	    "Messages counted against the user's quota in the current window "
	    "(in a cluster: the total Redis last gave, plus this node's count "
	    "not yet added there).",
	    quota_metric_used);
	off = quota_metrics_family(buf, len, off, "outpost_quota_limit",
				   "gauge", "The user's quota for the period.",
				   quota_metric_limit);
	pthread_mutex_unlock(&qt.mu);
	return off;
}
