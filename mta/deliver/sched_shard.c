/*
 * sched_shard.c — the scheduler's shards: which one owns a message, and a
 * change spread over several of them gathered back into one answer; what
 * a loop of theirs does as it starts and ends (sched_bind, sched_unbind).
 *
 * Owns: the shard table (sched_shards), each sched_fan.  A message belongs
 * to the shard its queue id hashes to, for its whole life; an operator's
 * change reaches every shard that owns one of its messages, and its caller
 * hears the sum once, on its own loop.  Threads: sched_shard_of any
 * thread; a fan is made on its caller's loop, its parts answer on any
 * shard's, its callback runs on the caller's.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"
#include "mta/observe/watchdog.h"

struct sched *sched_shards[SCHED_SHARDS_MAX];
unsigned sched_nshards;

struct sched *
sched_shard_of(uint64_t id)
{
	/* Ids are time-ordered: mix them, so that a burst of them spreads
	 * (Fibonacci hashing, the high half). */
	uint64_t h = (id * UINT64_C(0x9E3779B97F4A7C15)) >> 32;

	return sched_shards[sched_nshards > 1 ? h % sched_nshards : 0];
}

/* A loop of the scheduler's starts: its thread reaches ARG's state, and
 * the events it logs for every message go in batches, at the end of each
 * turn (without the memory, one by one). */
void
sched_bind(void *arg)
{
	struct loop *l = loop_current();

	sched = arg;
	if (l != NULL)
		(void)evlog_batch_begin(l->base);
}

/* It ends: what it gathered over its last turn goes. */
void
sched_unbind(void *arg)
{
	(void)arg;
	sched_metrics_stage_end();
	watchdog_stage_end(); /* before the log: it may log a stop */
	evlog_batch_end();
}

struct sched *
sched_shard_of_loop(const struct loop *l)
{
	unsigned i;

	for (i = 0; i < sched_nshards; i++)
		if (sched_shards[i]->loop == l)
			return sched_shards[i];
	return &sched_main;
}

/* A change spread over shards: parts still to answer, their sum, the
 * first error, and whom to tell on which loop. */
struct sched_fan {
	struct loop *home;
	sched_admin_fn *cb;
	void *cbarg;
	unsigned left;
	unsigned count;
	char err[200];
	bool failed;
};

/* One part's answer, on its way to the fan's loop. */
struct sched_fan_ans {
	struct sched_fan *f;
	unsigned count;
	bool failed;
	char err[200];
};

struct sched_fan *
sched_fan_new(unsigned parts, sched_admin_fn *cb, void *cbarg)
{
	struct sched_fan *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		cb(0, "out of memory", cbarg);
		return NULL;
	}
	f->home = sched->loop;
	f->cb = cb;
	f->cbarg = cbarg;
	f->left = parts;
	return f;
}

/* On the fan's loop: one more part in; the last one answers. */
static void
sched_fan_collect(void *arg)
{
	struct sched_fan_ans *a = arg;
	struct sched_fan *f = a->f;

	f->count += a->count;
	if (a->failed && !f->failed) {
		f->failed = true;
		memcpy(f->err, a->err, sizeof(f->err));
	}
	free(a);
	if (--f->left > 0)
		return;
	f->cb(f->count, f->failed ? f->err : NULL, f->cbarg);
	free(f);
}

void
sched_fan_part(unsigned count, const char *err, void *arg)
{
	struct sched_fan_ans *a = calloc(1, sizeof(*a));

	/* An answer lost would leave an operator's command hanging. */
	if (a == NULL)
		panic("out of memory");
	a->f = arg;
	a->count = count;
	if (err != NULL) {
		a->failed = true;
		snprintf(a->err, sizeof(a->err), "%s", err);
	}
	loop_post(a->f->home, sched_fan_collect, a);
}

/* MTA-STS from another shard ------------------------------------------ */

/*
 * One ask of a shard's, from its loop to loop 0 and back: the answer is
 * copied here on loop 0 and handed to the asker on its own.  Every ask
 * is on a list until it is freed, so that one whose answer never came
 * (mtasts_stop at shutdown) is freed at the end.
 */
struct sched_sts {
	struct sched *from;     /* NULL: loop 0's own (q) */
	struct mtasts_query *q; /* loop 0: the question, while it waits */
	char domain[256];
	mtasts_cb *cb;
	void *arg;
	_Atomic bool cancelled; /* by the asker */
	bool has_pol;
	struct mtasts_policy pol;
	enum mtasts_fail fail;
	struct sched_sts *prev, *next; /* sts_all */
};

static pthread_mutex_t sts_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sched_sts *sts_all;
static bool sts_stopped; /* loop 0 answers no more */

static void
sched_sts_unlink_free(struct sched_sts *a)
{
	pthread_mutex_lock(&sts_mu);
	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		sts_all = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	pthread_mutex_unlock(&sts_mu);
	mtasts_policy_clear(&a->pol);
	free(a);
}

/* On the asker's loop: the answer, unless it was cancelled meanwhile. */
static void
sched_sts_answer_run(void *arg)
{
	struct sched_sts *a = arg;

	if (!atomic_load(&a->cancelled))
		a->cb(a->has_pol ? &a->pol : NULL, a->fail, a->arg);
	sched_sts_unlink_free(a);
}

/* On loop 0: mtasts' answer, copied for the asker's loop. */
static void
sched_sts_answer_cb(const struct mtasts_policy *pol, enum mtasts_fail fail,
		    void *arg)
{
	struct sched_sts *a = arg;

	a->q = NULL;
	a->fail = fail;
	if (pol != NULL && mtasts_policy_copy(&a->pol, pol) == 0)
		a->has_pol = true;
	else if (pol != NULL)
		/* No memory for the copy: as a fetch that failed (the
		 * destination goes on without a policy, and asks again). */
		a->fail = MTASTS_FETCH_ERROR;
	loop_post(a->from->loop, sched_sts_answer_run, a);
}

/* On loop 0: the ask. */
static void
sched_sts_ask_run(void *arg)
{
	struct sched_sts *a = arg;

	if (sts_stopped || atomic_load(&a->cancelled) ||
	    (a->q = mtasts_get(a->domain, sched_sts_answer_cb, a)) == NULL) {
		/* Stopping, cancelled, or no memory: no policy known. */
		a->fail = MTASTS_FETCH_ERROR;
		loop_post(a->from->loop, sched_sts_answer_run, a);
	}
}

/* Loop 0's own ask: the answer straight to its asker, the ask freed. */
static void
sched_sts_local_cb(const struct mtasts_policy *pol, enum mtasts_fail fail,
		   void *arg)
{
	struct sched_sts *a = arg;
	mtasts_cb *cb = a->cb;
	void *cbarg = a->arg;

	free(a);
	cb(pol, fail, cbarg);
}

struct sched_sts *
sched_sts_get(const char *domain, mtasts_cb *cb, void *arg)
{
	struct sched_sts *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	snprintf(a->domain, sizeof(a->domain), "%s", domain);
	a->cb = cb;
	a->arg = arg;
	if (sched == &sched_main) {
		/* Loop 0: straight to mtasts. */
		if ((a->q = mtasts_get(domain, sched_sts_local_cb, a)) ==
		    NULL) {
			free(a);
			return NULL;
		}
		return a;
	}
	a->from = sched;
	pthread_mutex_lock(&sts_mu);
	a->next = sts_all;
	if (sts_all != NULL)
		sts_all->prev = a;
	sts_all = a;
	pthread_mutex_unlock(&sts_mu);
	loop_post(sched_main.loop, sched_sts_ask_run, a);
	return a;
}

void
sched_sts_cancel(struct sched_sts *a)
{
	if (a->from == NULL) {
		mtasts_cancel(a->q);
		free(a);
		return;
	}
	/* Its answer is on its way (or will be): dropped there. */
	atomic_store(&a->cancelled, true);
}

void
sched_sts_stop(void)
{
	/* Asks mtasts holds now get no answer (mtasts_stop): freed by
	 * sched_sts_free; later ones are answered "no policy" at once. */
	sts_stopped = true;
}

void
sched_sts_free(void)
{
	while (sts_all != NULL)
		sched_sts_unlink_free(sts_all);
	sts_stopped = false;
}
