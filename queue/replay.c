/*
 * replay.c — log replay after a restore (queue.h, queue_replay_*): the
 * recipients the delivery log settled after a restore point are marked
 * done in the restored queue, so that they are not sent twice.
 * Owns: the queue it opens (offline: outpostd must not have it open), the
 * ids of its messages and the notes taken from the log.  Must not: run in
 * outpostd, or keep an address (only keyed hashes are compared).
 * Threads: the caller's one thread, which waits for the writer's commits.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "queue/queue.h"

#define REPLAY_HASH_BYTES 16   /* queue_addr_hash: BLAKE2b-128 */
#define REPLAY_WINDOW     4096 /* ops submitted and not yet committed */

struct replay_note {
	uint64_t id;
	uint8_t hash[REPLAY_HASH_BYTES];
	uint8_t state; /* enum queue_rcpt_state */
};

struct queue_replay {
	struct queue *q;
	uint64_t *ids; /* the queue's messages, sorted */
	size_t nids, capids;
	struct replay_note *notes;
	size_t nnotes, capnotes;
	/* The writer's completions. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t inflight;
	uint64_t failed;
	char err[160]; /* the first failure */
};

static int
replay_id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
replay_note_cmp(const void *a, const void *b)
{
	const struct replay_note *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return memcmp(x->hash, y->hash, REPLAY_HASH_BYTES);
}

/* ARR (*CAP elements of SIZE bytes) with room for element N: ARR itself
 * or a larger copy (*CAP updated); NULL when out of memory (ARR kept). */
static void *
replay_grow(void *arr, size_t *cap, size_t n, size_t size)
{
	size_t want = *cap ? *cap * 2 : 1024;
	void *p;

	if (n < *cap)
		return arr;
	if ((p = realloc(arr, want * size)) != NULL)
		*cap = want;
	return p;
}

/* queue_sched_walk: one entry per message (its due time and id). */
static int
replay_id_add(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct queue_replay *r = arg;
	uint64_t *ids;

	(void)due_ms;
	(void)flags;
	if ((ids = replay_grow(r->ids, &r->capids, r->nids, sizeof(*ids))) ==
	    NULL)
		return -1;
	r->ids = ids;
	r->ids[r->nids++] = id;
	return 0;
}

int
queue_replay_open(struct queue_replay **rp, const struct queue_config *cfg,
		  char *err, size_t errlen)
{
	struct queue_replay *r;
	size_t i, n;

	*rp = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (queue_open(&r->q, cfg, err, errlen) != 0)
		goto fail;
	if (queue_sched_walk(r->q, replay_id_add, r, err, errlen) != 0) {
		if (err[0] == '\0')
			(void)snprintf(err, errlen, "out of memory");
		goto fail;
	}
	qsort(r->ids, r->nids, sizeof(*r->ids), replay_id_cmp);
	for (i = n = 0; i < r->nids; i++)
		if (n == 0 || r->ids[n - 1] != r->ids[i])
			r->ids[n++] = r->ids[i];
	r->nids = n;
	*rp = r;
	return 0;
fail:
	queue_replay_close(r);
	return -1;
}

uint64_t
queue_replay_messages(const struct queue_replay *r)
{
	return r->nids;
}

int
queue_replay_note(struct queue_replay *r, uint64_t id, const char *rcpt_hash,
		  enum queue_rcpt_state state)
{
	struct replay_note note, *notes;
	size_t len;

	if (state == QR_PENDING ||
	    bsearch(&id, r->ids, r->nids, sizeof(*r->ids), replay_id_cmp) ==
		NULL)
		return 0;
	memset(&note, 0, sizeof(note));
	note.id = id;
	note.state = (uint8_t)state;
	if (sodium_hex2bin(note.hash, sizeof(note.hash), rcpt_hash,
			   strlen(rcpt_hash), NULL, &len, NULL) != 0 ||
	    len != sizeof(note.hash))
		return 0;
	if ((notes = replay_grow(r->notes, &r->capnotes, r->nnotes,
				 sizeof(*notes))) == NULL)
		return -1;
	r->notes = notes;
	r->notes[r->nnotes++] = note;
	return 1;
}

/* Writer thread: one op committed (or not); the caller may go on. */
static void
replay_done(struct queue_op *op, int status, void *arg)
{
	struct queue_replay *r = arg;

	pthread_mutex_lock(&r->mu);
	if (status != 0 && r->failed++ == 0)
		(void)snprintf(r->err, sizeof(r->err), "%s", op->err);
	r->inflight--;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	queue_op_free(op);
}

/* Wait until at most MAX ops are in flight. */
static void
replay_wait(struct queue_replay *r, size_t max)
{
	pthread_mutex_lock(&r->mu);
	while (r->inflight > max)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
}

/*
 * The notes of one message (NOTES[0..N), sorted by hash) applied to its
 * envelope: each pending recipient whose hash is among them takes the
 * state the log gave it.  An update, a removal when nothing is pending
 * any more, or nothing.  0, or -1 with ERR.
 */
static int
replay_message(struct queue_replay *r, const uint8_t *hash_key,
	       const struct replay_note *notes, size_t n,
	       struct queue_replay_result *res, char *err, size_t errlen)
{
	struct queue_envelope env;
	struct replay_note key, *hit;
	char hex[QUEUE_HASH_HEX_BYTES];
	struct queue_op *op;
	uint32_t i, marked = 0, pending = 0;
	size_t len;
	int rc;

	rc = queue_envelope_get(r->q, notes[0].id, &env, err, errlen);
	if (rc == 1)
		return 0; /* settled and removed in the point already */
	if (rc == QUEUE_CORRUPT) {
		res->skipped++;
		return 0;
	}
	if (rc != 0)
		return -1;
	memset(&key, 0, sizeof(key));
	key.id = env.id;
	for (i = 0; i < env.nrcpts; i++) {
		if (env.rcpts[i].state != QR_PENDING)
			continue;
		queue_addr_hash(hash_key, env.rcpts[i].addr, hex);
		if (sodium_hex2bin(key.hash, sizeof(key.hash), hex, strlen(hex),
				   NULL, &len, NULL) == 0 &&
		    (hit = bsearch(&key, notes, n, sizeof(*notes),
				   replay_note_cmp)) != NULL) {
			env.rcpts[i].state = hit->state;
			marked++;
		} else
			pending++;
	}
	sodium_memzero(hex, sizeof(hex));
	if (marked == 0) {
		queue_envelope_clear(&env);
		return 0;
	}
	if ((op = queue_op_new(pending > 0 ? QOP_UPDATE : QOP_DELETE)) ==
	    NULL) {
		queue_envelope_clear(&env);
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* The due time stays: the daemon schedules what is left. */
	op->env = env;
	op->old_due_ms = env.next_attempt_ms;
	res->marked += marked;
	if (pending == 0)
		res->removed++;
	replay_wait(r, REPLAY_WINDOW);
	pthread_mutex_lock(&r->mu);
	r->inflight++;
	pthread_mutex_unlock(&r->mu);
	queue_submit(r->q, op, replay_done, r);
	return 0;
}

int
queue_replay_apply(struct queue_replay *r,
		   const uint8_t hash_key[QUEUE_KEY_BYTES],
		   struct queue_replay_result *res, char *err, size_t errlen)
{
	size_t i, j;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	res->messages = r->nids;
	res->notes = r->nnotes;
	qsort(r->notes, r->nnotes, sizeof(*r->notes), replay_note_cmp);
	for (i = 0; i < r->nnotes && rc == 0; i = j) {
		for (j = i + 1;
		     j < r->nnotes && r->notes[j].id == r->notes[i].id; j++)
			;
		rc = replay_message(r, hash_key, r->notes + i, j - i, res, err,
				    errlen);
	}
	replay_wait(r, 0);
	if (rc == 0 && r->failed > 0) {
		(void)snprintf(err, errlen, "%" PRIu64 " changes failed: %s",
			       r->failed, r->err);
		rc = -1;
	}
	return rc;
}

void
queue_replay_close(struct queue_replay *r)
{
	if (r == NULL)
		return;
	if (r->q != NULL) {
		replay_wait(r, 0);
		queue_close(r->q);
	}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->ids);
	free(r->notes);
	free(r);
}
