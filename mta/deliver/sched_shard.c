/*
 * sched_shard.c — the scheduler's shards: which one owns a message, and a
 * change spread over several of them gathered back into one answer.
 *
 * Owns: the shard table (sched_shards), each sched_fan.  A message belongs
 * to the shard its queue id hashes to, for its whole life; an operator's
 * change reaches every shard that owns one of its messages, and its caller
 * hears the sum once, on its own loop.  Threads: sched_shard_of any
 * thread; a fan is made on its caller's loop, its parts answer on any
 * shard's, its callback runs on the caller's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/deliver/sched_int.h"

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
