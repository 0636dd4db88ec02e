/*
 * sched_import.c — messages from an archive added to the queue (`outpost
 * queue import`): each written as a new message (QOP_INSERT, group
 * commit) keeping its id, creation time, flags and recipients' state,
 * then handed to the scheduler (sched_message_add) as a new one; and the
 * archive ids imported (QS_IMPORTED), so an archive is taken in once.
 * Owns: an import's count of messages in flight.  Must not: hold more
 * than SCHED_IMPORT_INFLIGHT bodies at once, or overwrite a queued
 * message (QOP_INSERT refuses an id that is there: skipped).
 * Threads: the importing thread (it waits on the writer); done callbacks
 * on the writer thread (they only count, log and hand over).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"

#define SCHED_IMPORT_INFLIGHT 64 /* messages written, not committed yet */
#define SCHED_IMPORT_RECORD   24 /* QS_IMPORTED data: id(16) time_ms(8) */

struct sched_import {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned inflight;
	uint64_t added, skipped, failed;
};

struct sched_import *
sched_import_new(void)
{
	struct sched_import *im = calloc(1, sizeof(*im));

	if (im == NULL)
		return NULL;
	pthread_mutex_init(&im->mu, NULL);
	pthread_cond_init(&im->cv, NULL);
	return im;
}

/* Its "imported" event: what the reception event says of a new one. */
static void
sched_import_log(const struct queue_envelope *env)
{
	struct evlog_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = EV_IMPORT;
	ev.id = env->id;
	ev.user = env->user;
	ev.client = env->client;
	ev.sender = env->sender;
	ev.size = env->size;
	ev.nrcpts = (int)env->nrcpts;
	ev.attempt = -1;
	ev.queue_time_ms = util_wall_ms() - env->created_ms;
	ev.tls_verified = -1;
	ev.count = -1;
	ev.msgid = env->msgid;
	ev.msgid_clear = (env->flags & QUEUE_F_MSGID_CLEAR) != 0;
	ev.campaign = env->campaign;
	evlog_write(&ev);
}

/* Writer thread: committed (the scheduler takes it), or not. */
static void
sched_import_done(struct queue_op *op, int status, void *arg)
{
	struct sched_import *im = arg;
	char qid[QUEUE_ID_HEX_BYTES];
	bool queued = false;

	if (status == 0) {
		sched_import_log(&op->env);
		sched_message_add(op); /* the scheduler frees OP */
	} else {
		queue_id_format(op->env.id, qid);
		/* The writer's own word for an id that is there. */
		queued = strstr(op->err, "already queued") != NULL;
		if (!queued)
			log_warnx("%s import: queue write failed: %s", qid,
				  op->err);
		queue_op_free(op);
	}
	pthread_mutex_lock(&im->mu);
	if (status == 0)
		im->added++;
	else if (queued)
		im->skipped++;
	else
		im->failed++;
	im->inflight--;
	pthread_cond_broadcast(&im->cv);
	pthread_mutex_unlock(&im->mu);
}

int
sched_import_add(struct sched_import *im, struct queue_envelope *env,
		 uint8_t *body, size_t len)
{
	struct queue_envelope have;
	struct queue_op *op;
	char err[160];
	int rc;

	rc = queue_envelope_get(sched_main.queue, env->id, &have, err,
				sizeof(err));
	if (rc == 0)
		queue_envelope_clear(&have);
	if (rc == 0 || rc == QUEUE_CORRUPT) {
		queue_envelope_clear(env);
		free(body);
		pthread_mutex_lock(&im->mu);
		im->skipped++;
		pthread_mutex_unlock(&im->mu);
		return 1;
	}
	if ((op = queue_op_new(QOP_INSERT)) == NULL) {
		queue_envelope_clear(env);
		free(body);
		return -1;
	}
	op->env = *env;
	memset(env, 0, sizeof(*env));
	/* A new node owes no destination a back-off: due now (held stays
	 * held, due when released). */
	op->env.next_attempt_ms = util_wall_ms();
	op->body = body;
	op->body_len = len;
	pthread_mutex_lock(&im->mu);
	while (im->inflight >= SCHED_IMPORT_INFLIGHT)
		pthread_cond_wait(&im->cv, &im->mu);
	im->inflight++;
	pthread_mutex_unlock(&im->mu);
	queue_submit(sched_main.queue, op, sched_import_done, im);
	return 0;
}

void
sched_import_end(struct sched_import *im, uint64_t *added, uint64_t *skipped,
		 uint64_t *failed)
{
	pthread_mutex_lock(&im->mu);
	while (im->inflight > 0)
		pthread_cond_wait(&im->cv, &im->mu);
	*added = im->added;
	*skipped = im->skipped;
	*failed = im->failed;
	pthread_mutex_unlock(&im->mu);
	pthread_cond_destroy(&im->cv);
	pthread_mutex_destroy(&im->mu);
	free(im);
}

struct sched_import_find {
	const uint8_t *id;
	int64_t when_ms;
};

static int
sched_import_seen_cb(int64_t until_ms, const uint8_t *data, size_t len,
		     void *arg)
{
	struct sched_import_find *f = arg;
	uint64_t t = 0;
	size_t i;

	(void)until_ms;
	if (len != SCHED_IMPORT_RECORD || sodium_memcmp(data, f->id, 16) != 0)
		return 0;
	for (i = 16; i < SCHED_IMPORT_RECORD; i++)
		t = t << 8 | data[i];
	f->when_ms = (int64_t)t;
	return 1;
}

int
sched_import_seen(const uint8_t id[16], int64_t *when_ms, char *err,
		  size_t errlen)
{
	struct sched_import_find f = { id, 0 };
	int rc;

	rc = queue_state_load(sched_main.queue, QS_IMPORTED, util_wall_ms(),
			      sched_import_seen_cb, &f, NULL, err, errlen);
	if (rc < 0)
		return -1;
	*when_ms = f.when_ms;
	return rc == 1;
}

int
sched_import_remember(const uint8_t id[16], int64_t until_ms)
{
	uint8_t rec[SCHED_IMPORT_RECORD];
	uint64_t now = (uint64_t)util_wall_ms();
	size_t i;

	memcpy(rec, id, 16);
	for (i = 0; i < 8; i++)
		rec[16 + i] = (uint8_t)(now >> (56 - 8 * i));
	return queue_state_put(sched_main.queue, QS_IMPORTED, id, 16, until_ms,
			       rec, sizeof(rec));
}
