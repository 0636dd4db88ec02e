/*
 * queue_int.h — private to queue/: struct queue, which queue.c (the
 * environment, ids, sealing, the readers) and writer.c (the writer thread
 * and its group commit) share; the key layout of the databases; the one
 * clock of queue/.  Nothing outside queue/ includes this file.
 */
#ifndef OUTPOST_QUEUE_QUEUE_INT_H
#define OUTPOST_QUEUE_QUEUE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <lmdb.h>

#include "queue/queue.h"
#include "queue/record_int.h"

#define QUEUE_ENV_KEY_BYTES   8  /* id */
#define QUEUE_BODY_KEY_BYTES  12 /* id, chunk */
#define QUEUE_SCHED_KEY_BYTES 16 /* due_ms, id */
#define QUEUE_META_VERSION    "version"
#define QUEUE_META_KEY_ID     "key_id"

struct queue {
	MDB_env *env;
	MDB_dbi db_env, db_body, db_sched, db_meta, db_state, db_suppress;
	MDB_dbi db_seen;                               /* seen.c */
	MDB_dbi db_spool;                              /* spool.c */
	uint64_t spool_swept_msgs, spool_swept_chunks; /* at open (spool.c) */
	queue_commit_fn *commit_hook; /* set before ops flow; read-only then */
	queue_dones_fn *done_hook;    /* the same */
	struct crypt_key *key;
	char *path;
	unsigned commit_interval_us;
	unsigned prepare_wait_us;
	unsigned lazy_wait_us;
	void *map_addr; /* the LMDB map, for the trim (writer_map_find) */
	size_t map_len;
	_Atomic uint64_t read_trim_us; /* the readers' last trim (any thread) */
	int map_fd; /* the data file LMDB maps (pread of chunks), or -1 */
	uintptr_t del_lo, del_hi; /* writer: map span of chunks deleted */
	unsigned del_n;           /* writer: chunks in it */
	unsigned commit_max_batch;
	_Atomic uint64_t last_id;
	/* The daemon stops: a point's copy in progress gives up
	 * (queue_point_thread_stop sets it; point_copy.c reads it). */
	_Atomic bool points_cancel;
	/* Messages on their way to queue_submit() (queue_expect): announced
	 * ever, and arrived or given up ever. */
	_Atomic uint64_t expect_total, expect_done;

	/* Pending ops, guarded by mu; the writer waits on cv. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct queue_op *head, **tailp;
	size_t npending;
	size_t nurgent;         /* pending ops that are not lazy */
	uint64_t lazy_since_us; /* when the oldest pending op came */
	bool lazy_waiting;      /* the writer waits with lazy ops only */
	bool lingering;         /* the writer waits for expected ops ... */
	uint64_t linger_target; /* ... until expect_done reaches this */
	bool stopping;          /* queue_close() called */
	bool writer_exited;     /* no op will be taken any more */
	bool writer_started;
	pthread_t writer;

	pthread_mutex_t stats_mu;
	struct queue_stats stats;

	/* Held by the writer across each write transaction (begin to commit),
	 * so that headroom.c appends to the file only between them. */
	pthread_mutex_t txn_mu;
	uint64_t headroom_want; /* bytes kept ahead during a point (point.c) */
	/* The headroom thread (headroom.c); goal and stop under
	 * headroom_mu, signalled both ways on headroom_cv. */
	pthread_t headroom_th;
	bool headroom_started;
	pthread_mutex_t headroom_mu;
	pthread_cond_t headroom_cv;
	uint64_t headroom_goal; /* 0: nothing asked */
	bool headroom_stop;
};

/* Records sealed ahead of the write transaction: the envelope, then (a
 * spool chunk) the body chunk, back to back in one buffer. */
struct queue_sealed {
	uint8_t *buf; /* the sealed envelope, then (!at_put) the chunks */
	size_t env_len;
	uint32_t nchunks;
	size_t body_len;
	/* An insert's chunks are sealed by the writer straight into the
	 * space LMDB reserves for them (writer_body_put), not into BUF: no
	 * second copy of the body waits for its transaction. */
	bool at_put;
};

/* The "env" key of ID. */
static inline void
queue_env_key(uint8_t k[QUEUE_ENV_KEY_BYTES], uint64_t id)
{
	record_be64_put(k, id);
}

/* The "body" key of chunk CHUNK of ID. */
static inline void
queue_body_key(uint8_t k[QUEUE_BODY_KEY_BYTES], uint64_t id, uint32_t chunk)
{
	record_be64_put(k, id);
	record_be32_put(k + 8, chunk);
}

/*
 * queue_clock_us — CLK (CLOCK_REALTIME for ids, CLOCK_MONOTONIC for the
 * writer's waits) in microseconds.  Any thread.
 */
uint64_t queue_clock_us(clockid_t clk);

/* A reusable plaintext buffer, wiped when replaced or freed. */
struct queue_plain {
	uint8_t *p;
	size_t cap;
};
/* queue_plain_reserve — room for N bytes in B (its content is lost when it
 * grows).  0, or -1 out of memory.  queue_plain_free — wipe and free. */
int queue_plain_reserve(struct queue_plain *b, size_t n);
void queue_plain_free(struct queue_plain *b);

/* queue_txn_read — a read transaction on Q (MDB_RDONLY; the environment
 * is opened MDB_NOTLS), adopting a map grown by the writer: the thread's
 * kept one renewed, or a new one.  0, or -1 with err.  Any thread; end it
 * soon with queue_txn_read_end (it pins a snapshot), never with
 * mdb_txn_abort, on the same thread (txn_read.c). */
int queue_txn_read(struct queue *q, MDB_txn **txn, char *err, size_t errlen);
/* queue_txn_read_end — end TXN from queue_txn_read (reset and kept, or
 * aborted).  Its cursors must be closed first. */
void queue_txn_read_end(struct queue *q, MDB_txn *txn);
/* queue_txn_read_drop — abort every thread's kept transaction of Q, before
 * the environment closes (no thread reads Q any more).  Main thread. */
void queue_txn_read_drop(struct queue *q);

/* queue_chunk_open — check that KEY (a "body" key) is chunk I and decrypt
 * VAL into BUF (*PLEN bytes).  0, -1 out of memory, or QUEUE_CORRUPT;
 * err says which.  Any thread. */
int queue_chunk_open(struct queue *q, const MDB_val *key, const MDB_val *val,
		     uint32_t i, struct queue_plain *buf, size_t *plen,
		     char *err, size_t errlen);

/* queue_dir_sync — fsync the directory PATH SUFFIX ("" or "/..") so the
 * names made in it are durable.  0, or -1 with errno.  Any thread. */
int queue_dir_sync(const char *path, const char *suffix);

/* queue_sealed_free — drop OP's sealed records (NULL-safe).  Any thread
 * that owns OP. */
void queue_sealed_free(struct queue_op *op);

/* spool.c ------------------------------------------------------------- */

/* queue_op_piece — piece J of the chunks OP writes (an insert's, or a
 * QOP_SPOOL_PUT's one): its chunk index, octets and length.  J below
 * queue_op_pieces(OP). */
uint32_t queue_op_pieces(const struct queue_op *op);
void queue_op_piece(const struct queue_op *op, uint32_t j, uint32_t *idx,
		    const uint8_t **p, size_t *n);

/* spool_op_apply — a QOP_SPOOL_* op inside TXN: 0, or the LMDB error with
 * *WHAT naming the call.  Writer thread. */
int spool_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		   const char **what);

/* spool_insert_apply — an insert's spool record inside TXN (see op->spool
 * in queue.h): 0; 1 when the op fails alone (op->err set, nothing
 * changed); or the LMDB error with *WHAT.  Writer thread. */
int spool_insert_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		       const char **what);

/* spool_sweep — delete every spool record and its chunks, counted into
 * q->spool_swept_*, in transactions of its own of QUEUE_DEL_CHUNKS_MAX
 * chunks at most (a full map can be emptied so).  0, or the LMDB error.
 * queue_open() only, before the writer starts. */
int spool_sweep(struct queue *q);

/* queue_map_locate — the mapping of this process that holds AT (from
 * /proc/self/maps): its start and length.  0, or -1 (not found, no /proc).
 * LMDB does not say where its map is; a value it handed out does. */
int queue_map_locate(const void *at, void **addr, size_t *len);

/* queue_map_release — drop this process's page table entries for the
 * shared file mapping [ADDR, ADDR+LEN) (MADV_DONTNEED: the pages stay in
 * the page cache and fault back in if read again).  Only for an LMDB map:
 * on private or heap memory it would zero the pages. */
void queue_map_release(void *addr, size_t len);

/* queue_map_has — whether [P, P+LEN) lies inside Q's map (a value LMDB
 * handed out from a committed page, not from a write transaction's own
 * heap pages); false while the map is unknown. */
bool queue_map_has(const struct queue *q, const void *p, size_t len);

/* queue_map_unmap — drop our page table entries for [P, P+LEN) if it lies
 * inside Q's map (see map.c); anything else is left alone.  Any thread. */
void queue_map_unmap(const struct queue *q, const void *p, size_t len);

/* queue_map_trim — drop our page table entries for the whole map (any
 * thread; a read transaction's pointers stay good: they fault back in).
 * A walk over a table calls it every QUEUE_WALK_TRIM_EVERY records: on a
 * kernel that maps a whole large page-cache folio per fault (6.18: up to
 * 2 MiB), `queue summary` over 200,000 messages mapped 240 MB of the file
 * into the daemon's RSS before the writer's next trim. */
#define QUEUE_WALK_TRIM_EVERY 1024
void queue_map_trim(const struct queue *q);

/* queue_read_trim — queue_map_trim() at most every 2 ms per thread, before
 * a read transaction (queue_txn_read does it). */
void queue_read_trim(const struct queue *q);

/* queue_body_chunks_del — delete the "body" chunks under ID, whatever its
 * envelope says: all of them (MAX 0), or at most MAX, *MORE set when some
 * may remain.  0, or the LMDB error. */
#define QUEUE_DEL_CHUNKS_MAX 64
int queue_body_chunks_del(struct queue *q, MDB_txn *txn, uint64_t id,
			  unsigned max, bool *more);

/* spool_mark — write a spool record for ID (its envelope is gone, its
 * chunks are not all deleted yet: queue_open sweeps them if the process
 * stops first).  0, or the LMDB error. */
int spool_mark(struct queue *q, MDB_txn *txn, uint64_t id, int64_t started_ms);

/* headroom.c ---------------------------------------------------------- */

/*
 * headroom_keep — append written zeros to the data file until it holds
 * WANT bytes past LMDB's last page, writing at most MAX_WRITE bytes in
 * this call, each chunk synced.  *WRITTEN: the bytes appended.  0, or -1
 * with errno (what was appended stays: LMDB writes into it later).
 * Restore thread (blocks on the disk; takes q->txn_mu per chunk).
 */
int headroom_keep(struct queue *q, uint64_t want, uint64_t max_write,
		  uint64_t *written);

/*
 * headroom_start / headroom_stop — the headroom thread, started with the
 * writer from the thread that opens the queue (it runs at that thread's
 * priority) and stopped before the environment closes.  headroom_ask — ask
 * it for WANT bytes past LMDB's last page (headroom_keep); WAIT: until it
 * is done.  A queue without the thread asks in vain.
 */
int headroom_start(struct queue *q);
void headroom_stop(struct queue *q);
void headroom_ask(struct queue *q, uint64_t want, bool wait);

/* headroom_used — the end of LMDB's last page (0 on failure).  Any thread
 * but the writer (takes q->txn_mu). */
uint64_t headroom_used(struct queue *q);

/* state.c ------------------------------------------------------------- */

/* state_op_seal — seal a QOP_STATE_PUT's record (other kinds: nothing to
 * do).  0, or -1 with op->err set.  The thread that owns OP. */
int state_op_seal(struct queue *q, struct queue_op *op);

/* state_op_apply — a QOP_STATE_* op inside TXN: 0, or the LMDB error with
 * *what naming the call.  Writer thread. */
int state_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		   const char **what);

/* suppress.c ---------------------------------------------------------- */

/* suppress_op_apply — a QOP_SUPPRESS_* op inside TXN: 0, or the LMDB error
 * with *what naming the call.  Writer thread. */
int suppress_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		      const char **what);

/* suppress_db_check — every record of the "suppress" database of TXN (a
 * restore point's) is one of ours: 0, or -1 with err.  A point taken
 * before the database existed has none: 0.  Any thread; read-only. */
int suppress_db_check(MDB_txn *txn, char *err, size_t errlen);
/* seen.c -------------------------------------------------------------- */

/* seen_op_apply — a QOP_SEEN_* op inside TXN: 0, or the LMDB error with
 * *what naming the call.  Writer thread. */
int seen_op_apply(struct queue *q, MDB_txn *txn, struct queue_op *op,
		  const char **what);

/* writer.c ------------------------------------------------------------ */

/*
 * writer_start — find the LMDB map (for the periodic trim) and start the
 * writer thread on the open environment of Q.  0, or -1 with err set.
 * Main thread, from queue_open().
 */
int writer_start(struct queue *q, char *err, size_t errlen);

/*
 * writer_stop — have the writer commit every pending op, then join it.
 * Main thread, from queue_close(); only sets the flag when the writer
 * never started.
 */
void writer_stop(struct queue *q);

#endif
