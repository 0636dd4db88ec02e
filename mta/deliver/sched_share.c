/*
 * sched_share.c — what the scheduler's shards share of a destination's
 * limits: the connections open to each path (pool and MX site) from every
 * shard, and its rate's spacing; and delivery.max_connections over them
 * all.  A shard asks before it opens a connection or sends a message; the
 * answer is a check under a lock, never a wait.
 *
 * Owns: the records (one per path name, kept until sched_free), the
 * shards' wishes (a bit each).  Threads: any shard's; a shard turned away
 * hears of room on its own loop (sched_share_kick_run, sched_slots_run).
 * Invariant: a record's nconn counts every connection a shard counted in
 * its path's nconn under that name, and never passes the limit its taker
 * asked under.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"

struct sched_share {
	char *key;      /* the path's name (sched_path_key) */
	unsigned nconn; /* every shard's connections under it */
	uint64_t want;  /* shards turned away at the limit, a bit each */
	/* the rate's next message: minute, hour, day; under rate_mu, its
	 * own, since every message to a rate-limited destination takes it
	 * (twice) and share_mu is every destination's */
	pthread_mutex_t rate_mu;
	int64_t times[3];
	unsigned throttle_level; /* the last step down a shard took */
	int64_t throttle_until_ms;
	/* the last pause a shard took: its end, back-off level, whether a
	 * reply pattern's, and why */
	int64_t pause_until_ms;
	unsigned pause_level;
	bool pause_suspended;
	char pause_why[200];
	/* the pause whose end a shard said, and whose probe a shard took */
	int64_t said_until_ms;
	int64_t probe_until_ms;
	_Atomic uint32_t nparked; /* held on its paths, every shard */
	_Atomic bool wanted;
	_Atomic unsigned nquitting; /* of nconn, told to go (all shards) */
};

static pthread_mutex_t share_mu = PTHREAD_MUTEX_INITIALIZER;
static struct htab share_tab;
static bool share_ready;
/* delivery.max_connections over every shard, and the shards waiting for
 * a slot of it (a bit each) */
static _Atomic unsigned share_slots;
static _Atomic uint64_t share_slot_want;

struct sched_share *
sched_share_get(const struct sched_path *p)
{
	struct sched_share *s;
	char key[512];

	sched_path_key(p, key, sizeof(key));
	pthread_mutex_lock(&share_mu);
	if (!share_ready && htab_init(&share_tab) == 0)
		share_ready = true;
	s = share_ready ? htab_get(&share_tab, key) : NULL;
	if (s == NULL && share_ready && (s = calloc(1, sizeof(*s))) != NULL) {
		if (pthread_mutex_init(&s->rate_mu, NULL) != 0) {
			free(s);
			s = NULL;
		} else if ((s->key = strdup(key)) == NULL ||
			   htab_put(&share_tab, s->key, s) != 0) {
			pthread_mutex_destroy(&s->rate_mu);
			free(s->key);
			free(s);
			s = NULL;
		}
	}
	pthread_mutex_unlock(&share_mu);
	return s;
}

/* On another shard: a connection of the path KEY (NULL: any) idle
 * there is worth more closed (sched_path_yield). */
static void
sched_share_yield_run(void *arg)
{
	sched_path_yield(arg);
	free(arg);
}

/* Every shard but this one is asked to close an idle connection of KEY
 * (NULL: of any path), once per wish. */
static void
sched_share_yield(const char *key)
{
	unsigned i;
	char *k;

	for (i = 0; i < sched_nshards; i++) {
		if (sched_shards[i] == sched)
			continue;
		k = NULL;
		if (key != NULL && (k = strdup(key)) == NULL)
			continue; /* it closes at its idle timeout */
		loop_post(sched_shards[i]->loop, sched_share_yield_run, k);
	}
}

bool
sched_share_conn_waiting(const struct sched_share *s, unsigned limit)
{
	uint64_t me = UINT64_C(1) << sched->index;

	/* Read without the lock: a count that has just fallen, or this
	 * shard's bit just cleared, comes with the kick that follows. */
	return __atomic_load_n(&s->nconn, __ATOMIC_RELAXED) >= limit &&
	       (__atomic_load_n(&s->want, __ATOMIC_RELAXED) & me) != 0;
}

bool
sched_share_conn_take(struct sched_share *s, unsigned limit)
{
	uint64_t me = UINT64_C(1) << sched->index;
	bool ok, first = false;

	pthread_mutex_lock(&share_mu);
	ok = s->nconn < limit;
	if (ok)
		s->nconn++;
	else {
		first = !(s->want & me);
		s->want |= me;
		atomic_store(&s->wanted, true);
	}
	pthread_mutex_unlock(&share_mu);
	if (first)
		sched_share_yield(s->key);
	return ok;
}

/* On a shard turned away: its path of that name may try again. */
static void
sched_share_kick_run(void *arg)
{
	char *key = arg;
	struct sched_path *p = sched_path_find(key);

	if (p != NULL && p->njobs > 0)
		sched_path_kick(p);
	free(key);
}

void
sched_share_conn_give(struct sched_share *s)
{
	uint64_t want;
	unsigned i;
	char *key;

	pthread_mutex_lock(&share_mu);
	if (s->nconn > 0)
		s->nconn--;
	want = s->want & ~(UINT64_C(1) << sched->index);
	s->want &= UINT64_C(1) << sched->index;
	atomic_store(&s->wanted, s->want != 0);
	pthread_mutex_unlock(&share_mu);
	for (i = 0; want != 0 && i < sched_nshards; i++) {
		if (!(want & (UINT64_C(1) << i)))
			continue;
		/* Lost, the kick would leave that shard's path waiting for
		 * its next own event: a connection's end or a retry. */
		if ((key = strdup(s->key)) != NULL)
			loop_post(sched_shards[i]->loop, sched_share_kick_run,
				  key);
	}
}

unsigned
sched_share_nconn(const struct sched_share *s)
{
	return __atomic_load_n(&s->nconn, __ATOMIC_RELAXED);
}

void
sched_share_quitting(struct sched_share *s, int d)
{
	if (d > 0)
		atomic_fetch_add(&s->nquitting, 1);
	else
		atomic_fetch_sub(&s->nquitting, 1);
}

unsigned
sched_share_nquitting(const struct sched_share *s)
{
	return atomic_load(&s->nquitting);
}

bool
sched_share_wanted(const struct sched_share *s)
{
	return atomic_load(&s->wanted);
}

bool
sched_share_slot_take(unsigned max)
{
	unsigned cur = atomic_load(&share_slots);

	uint64_t me = UINT64_C(1) << sched->index;

	while (cur < max)
		if (atomic_compare_exchange_weak(&share_slots, &cur, cur + 1))
			return true;
	if (!(atomic_fetch_or(&share_slot_want, me) & me))
		sched_share_yield(NULL);
	return false;
}

bool
sched_share_slot_wanted(void)
{
	return (atomic_load(&share_slot_want) &
		~(UINT64_C(1) << sched->index)) != 0;
}

/* On a shard that waited for a slot: its waiters try again. */
static void
sched_share_slots_run(void *arg)
{
	(void)arg;
	sched_slots_kick();
}

void
sched_share_slot_give(void)
{
	uint64_t want;
	unsigned i;

	atomic_fetch_sub(&share_slots, 1);
	want = atomic_exchange(&share_slot_want, 0);
	for (i = 0; want != 0 && i < sched_nshards; i++)
		if ((want & (UINT64_C(1) << i)) && sched_shards[i] != sched)
			loop_post(sched_shards[i]->loop, sched_share_slots_run,
				  NULL);
}

void
sched_share_rate(struct sched_share *s, void (*fn)(int64_t times[3], void *arg),
		 void *arg)
{
	pthread_mutex_lock(&s->rate_mu);
	fn(s->times, arg);
	pthread_mutex_unlock(&s->rate_mu);
}

/* Every other shard runs FN(S) on its loop: it reads what changed from S
 * itself (a record lives until sched_free), so nothing is copied. */
static void
sched_share_tell(struct sched_share *s, loop_fn *fn)
{
	unsigned i;

	for (i = 0; i < sched_nshards; i++)
		if (sched_shards[i] != sched)
			loop_post(sched_shards[i]->loop, fn, s);
}

/* On the shard told: its path of S's name, or NULL. */
static struct sched_path *
sched_share_here(struct sched_share *s)
{
	struct sched_path *p = sched_path_find(s->key);

	return p != NULL && p->share == s ? p : NULL;
}

/* On another shard: its path of that name takes the step in force. */
static void
sched_share_throttle_run(void *arg)
{
	struct sched_share *s = arg;
	struct sched_path *p = sched_share_here(s);
	unsigned level;
	int64_t until;

	if (p != NULL && sched_share_throttle_get(s, &level, &until))
		sched_limit_throttle_adopt(p, level, until - util_wall_ms(),
					   false);
}

void
sched_share_throttle(struct sched_share *s, unsigned level, int64_t until_ms)
{
	pthread_mutex_lock(&share_mu);
	s->throttle_level = level;
	s->throttle_until_ms = until_ms;
	pthread_mutex_unlock(&share_mu);
	sched_share_tell(s, sched_share_throttle_run);
}

bool
sched_share_throttle_get(struct sched_share *s, unsigned *level,
			 int64_t *until_ms)
{
	bool on;

	pthread_mutex_lock(&share_mu);
	*level = s->throttle_level;
	*until_ms = s->throttle_until_ms;
	pthread_mutex_unlock(&share_mu);
	on = *level > 0 && *until_ms > util_wall_ms();
	return on;
}

/* On another shard: its path of that name holds its messages too. */
static void
sched_share_pause_run(void *arg)
{
	struct sched_path *p = sched_share_here(arg);

	if (p != NULL)
		sched_share_pause_adopt(p);
}

/* P's pause is its share's, unless the share holds a later one (LATER:
 * only then). */
static void
sched_share_pause_set(const struct sched_path *p, bool later)
{
	struct sched_share *s = p->share;

	pthread_mutex_lock(&share_mu);
	if (!later || s->pause_until_ms < p->paused_until_ms) {
		s->pause_until_ms = p->paused_until_ms;
		s->pause_level = p->backoff_level;
		s->pause_suspended = p->suspended;
		snprintf(s->pause_why, sizeof(s->pause_why), "%s",
			 p->last_error);
	}
	pthread_mutex_unlock(&share_mu);
}

void
sched_share_pause(const struct sched_path *p)
{
	sched_share_pause_set(p, false);
	sched_share_tell(p->share, sched_share_pause_run);
}

void
sched_share_pause_note(const struct sched_path *p)
{
	sched_share_pause_set(p, true);
}

void
sched_share_pause_adopt(struct sched_path *p)
{
	struct sched_share *s = p->share;
	int64_t until;
	unsigned level;
	bool suspended;
	char why[200];

	pthread_mutex_lock(&share_mu);
	until = s->pause_until_ms;
	level = s->pause_level;
	suspended = s->pause_suspended;
	memcpy(why, s->pause_why, sizeof(why));
	pthread_mutex_unlock(&share_mu);
	if (until > util_wall_ms())
		sched_limit_pause_follow(p, until, level, suspended, why);
}

bool
sched_share_pause_over(struct sched_share *s, int64_t until_ms, bool held,
		       bool *say, uint32_t *nheld)
{
	bool probe = true;

	pthread_mutex_lock(&share_mu);
	if (s->pause_until_ms == until_ms) {
		*say = s->said_until_ms != until_ms;
		s->said_until_ms = until_ms;
		probe = held && s->probe_until_ms != until_ms;
		if (probe)
			s->probe_until_ms = until_ms;
		*nheld =
		    atomic_load_explicit(&s->nparked, memory_order_relaxed);
	}
	pthread_mutex_unlock(&share_mu);
	return probe;
}

/* On another shard: its path of that name answers too. */
static void
sched_share_answers_run(void *arg)
{
	struct sched_path *p = sched_share_here(arg);

	if (p != NULL)
		sched_limit_answered(p);
}

void
sched_share_answers(struct sched_share *s)
{
	bool later;

	pthread_mutex_lock(&share_mu);
	later = s->pause_until_ms > util_wall_ms();
	if (!later)
		s->pause_level = 0;
	pthread_mutex_unlock(&share_mu);
	if (!later)
		sched_share_tell(s, sched_share_answers_run);
}

void
sched_share_unpause(struct sched_share *s)
{
	pthread_mutex_lock(&share_mu);
	s->pause_until_ms = 0;
	s->pause_level = 0;
	s->pause_suspended = false;
	pthread_mutex_unlock(&share_mu);
}

_Atomic uint32_t *
sched_share_nparked(struct sched_share *s)
{
	return &s->nparked;
}

void
sched_share_free(void)
{
	struct htab_entry *e;
	size_t it;

	if (!share_ready)
		return;
	for (e = htab_first(&share_tab, &it); e != NULL;
	     e = htab_next(&share_tab, e, &it)) {
		struct sched_share *s = e->value;

		pthread_mutex_destroy(&s->rate_mu);
		free(s->key);
		free(s);
	}
	htab_free(&share_tab);
	share_ready = false;
	atomic_store(&share_slots, 0);
	atomic_store(&share_slot_want, 0);
}
