/*
 * txn_read.c — the readers' transactions: one kept per thread and queue,
 * reset between reads and renewed for the next.
 * Owns: each thread's kept transaction (struct txn_keep).  Threads: any;
 * a keep is used only by its thread, linked and unlinked under one
 * process-wide mutex (at its first use, at the thread's exit, at
 * queue_close).  Invariants: a kept transaction is reset whenever its
 * thread is not reading (it pins no snapshot); queue_txn_read_drop leaves
 * no transaction of the queue open.
 *
 * Why: with MDB_NOTLS, each mdb_txn_begin allocates a transaction and
 * takes LMDB's reader-table mutex (shared by every thread of the process)
 * to claim a slot, and each abort gives the slot back.  A delivered
 * message reads its body in two transactions, so every delivery loop and
 * worker took that one lock twice per message.  A renewed transaction
 * keeps its slot: no allocation, no lock.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <lmdb.h>

#include "queue/queue_int.h"

/* One thread's kept transaction, for the queue it read last. */
struct txn_keep {
	struct queue *q; /* NULL once that queue is closed */
	MDB_txn *txn;    /* reset while !busy; NULL: none kept */
	bool busy;       /* handed out (a nested read gets its own) */
	struct txn_keep *next, **prevp; /* every keep (txn_keep_mu) */
};

static pthread_mutex_t txn_keep_mu = PTHREAD_MUTEX_INITIALIZER;
static struct txn_keep *txn_keeps; /* every live thread's keep */
static pthread_once_t txn_keep_once = PTHREAD_ONCE_INIT;
static pthread_key_t txn_keep_key;
static bool txn_keep_key_ok;

/* At a thread's exit: its transaction ends, its slot goes back. */
static void
txn_keep_release(void *arg)
{
	struct txn_keep *k = arg;

	pthread_mutex_lock(&txn_keep_mu);
	if (k->txn != NULL)
		mdb_txn_abort(k->txn);
	if ((*k->prevp = k->next) != NULL)
		k->next->prevp = k->prevp;
	pthread_mutex_unlock(&txn_keep_mu);
	free(k);
}

static void
txn_keep_init(void)
{
	txn_keep_key_ok =
	    pthread_key_create(&txn_keep_key, txn_keep_release) == 0;
}

/* This thread's keep for Q, or NULL: none can be had (out of memory),
 * it keeps another open queue's, or it is handed out already. */
static struct txn_keep *
txn_keep_mine(struct queue *q)
{
	struct txn_keep *k;

	(void)pthread_once(&txn_keep_once, txn_keep_init);
	if (!txn_keep_key_ok)
		return NULL;
	if ((k = pthread_getspecific(txn_keep_key)) == NULL) {
		if ((k = calloc(1, sizeof(*k))) == NULL)
			return NULL;
		if (pthread_setspecific(txn_keep_key, k) != 0) {
			free(k);
			return NULL;
		}
		pthread_mutex_lock(&txn_keep_mu);
		if ((k->next = txn_keeps) != NULL)
			txn_keeps->prevp = &k->next;
		txn_keeps = k;
		k->prevp = &txn_keeps;
		pthread_mutex_unlock(&txn_keep_mu);
	}
	if (k->busy)
		return NULL;
	if (k->q != q) {
		/* queue_txn_read_drop set q to NULL with the transaction
		 * gone; a keep of a queue still open stays that queue's. */
		if (k->q != NULL)
			return NULL;
		k->q = q;
	}
	return k;
}

int
queue_txn_read(struct queue *q, MDB_txn **txn, char *err, size_t errlen)
{
	struct txn_keep *k = txn_keep_mine(q);
	int rc;

	queue_read_trim(q);
	if (k != NULL && k->txn != NULL) {
		if ((rc = mdb_txn_renew(k->txn)) == 0) {
			k->busy = true;
			*txn = k->txn;
			return 0;
		}
		/* MDB_MAP_RESIZED, above all: a new one adopts the map. */
		mdb_txn_abort(k->txn);
		k->txn = NULL;
	}
	rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, txn);
	if (rc == MDB_MAP_RESIZED) {
		if ((rc = mdb_env_set_mapsize(q->env, 0)) == 0)
			rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, txn);
	}
	if (rc != 0) {
		(void)snprintf(err, errlen, "%s: read transaction: %s", q->path,
			       mdb_strerror(rc));
		return -1;
	}
	if (k != NULL) {
		k->txn = *txn;
		k->busy = true;
	}
	return 0;
}

void
queue_txn_read_end(struct queue *q, MDB_txn *txn)
{
	struct txn_keep *k = NULL;

	if (txn_keep_key_ok)
		k = pthread_getspecific(txn_keep_key);
	if (k != NULL && k->q == q && k->txn == txn && k->busy) {
		mdb_txn_reset(txn);
		k->busy = false;
		return;
	}
	mdb_txn_abort(txn);
}

void
queue_txn_read_drop(struct queue *q)
{
	struct txn_keep *k;

	pthread_mutex_lock(&txn_keep_mu);
	for (k = txn_keeps; k != NULL; k = k->next) {
		if (k->q != q)
			continue;
		/* Every thread is done with Q (queue_close's contract), so
		 * each kept transaction is reset, whoever's it is. */
		if (k->txn != NULL)
			mdb_txn_abort(k->txn);
		k->txn = NULL;
		k->busy = false;
		k->q = NULL;
	}
	pthread_mutex_unlock(&txn_keep_mu);
}
