/*
 * queue.h — Outpost's durable queue: an LMDB environment whose records are
 * sealed with an AEAD (libsodium), written by one writer thread in group
 * commits.
 *
 * Databases (all keys big-endian, so key order is time order):
 *   "env"    id(8)            -> sealed envelope (sender, recipients, state)
 *   "body"   id(8) chunk(4)   -> sealed body chunk (<= QUEUE_CHUNK_MAX_BYTES)
 *   "sched"  due_ms(8) id(8)  -> empty: the schedule index (no secrets)
 *   "meta"   name             -> format version, key ids
 *   "state"  kind(1) hash(16) -> sealed state record (queue_state_put)
 *   "suppress" scope(16) rcpt(16) -> suppression entry (queue_suppress_put)
 *   "seen"   identity(8) rcpt(8) -> last day (4): recipients sent to
 *            (queue_seen_*; keyed hashes, nothing sealed: no secret)
 *   "spool"  id(8)            -> started_ms(8) chunks(4): a message whose
 *            body chunks 1..chunks are written while it still arrives
 *            (QOP_SPOOL_PUT); gone when its envelope is written or it is
 *            given up; those left at queue_open() are deleted with their
 *            chunks (no envelope names them).  Also (chunks 0) a deleted
 *            message whose chunks go in steps (QOP_DELETE of many chunks)
 * A sealed record is: version(1) alg(1) key_id(4) salt(24) ciphertext tag(16);
 * its additional data binds it to its database and key, so records cannot be
 * swapped.  AES-256-GCM (with a per-record key derived from the salt) where
 * the CPU has AES-NI, XChaCha20-Poly1305 (salt = nonce) otherwise.
 *
 * Threads: queue_open()/queue_close() from the main thread.  Every write goes
 * through queue_submit() to the writer thread (one write transaction per
 * batch); `done` callbacks run on the writer thread after mdb_txn_commit()
 * returned, and must only hand the result over to the caller's own thread.
 * Readers (queue_walk, queue_envelope_get, queue_body_read, queue_body_next)
 * may run on any thread; each uses its own read transaction (MDB_NOTLS).
 *
 * Errors: a call that takes (char *err, size_t errlen) writes why it failed
 * there, cut to fit; ERR must hold ERRLEN bytes (NULL only with ERRLEN 0).
 */
#ifndef OUTPOST_QUEUE_H
#define OUTPOST_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define QUEUE_FORMAT_VERSION 1
/* Bodies are cut into chunks of QUEUE_CHUNK_BYTES: what a reader, a sender
 * or a spooling session holds of a body at once.  A record may hold up to
 * QUEUE_CHUNK_MAX_BYTES: chunk 0 of a spooled body (the header block and the
 * fields added to it), and every chunk of a queue written before chunks were
 * cut smaller. */
#define QUEUE_CHUNK_BYTES     (64 * 1024)
#define QUEUE_CHUNK_MAX_BYTES (256 * 1024)
#define QUEUE_KEY_BYTES       32
#define QUEUE_HASH_HEX_BYTES  33 /* 16-byte keyed hash as hex, plus NUL */
#define QUEUE_ID_HEX_BYTES    17 /* 16 hex digits, plus NUL */
#define QUEUE_STATE_KEY_BYTES 17 /* "state" key: kind(1), keyed hash(16) */

/* A suppression entry's scope or recipient hash (queue_suppress_put). */
#define QUEUE_SUPPRESS_HASH_BYTES 16

struct queue; /* opaque: environment, databases, keys, writer thread */

struct queue_config {
	const char *path;     /* environment directory; created 0700 */
	const char *key_file; /* hex key, 0600; created if absent */
	uint64_t map_size;
	unsigned
	    commit_interval_us;    /* linger for more ops before a commit;
				      0 = commit whatever is pending at once */
	unsigned commit_max_batch; /* ops per write transaction */
	unsigned prepare_wait_us;  /* longest wait for expected ops (see
				      queue_expect); 0 = none */
	unsigned lazy_wait_us;     /* longest wait of a lazy op for company;
				      0 = 10 ms */
};

enum queue_rcpt_state {
	QR_PENDING = 0, /* still to be delivered (or retried) */
	QR_DELIVERED,
	QR_BOUNCED, /* permanent failure; a DSN was (or will be) made */
	QR_EXPIRED, /* gave up after the maximum age */
};

struct queue_rcpt {
	char *addr;    /* as given in RCPT TO, without the angle brackets */
	uint8_t state; /* enum queue_rcpt_state */
	uint16_t attempts;
	uint16_t last_code; /* last SMTP reply code, 0 = none yet */
	char *last_reply;   /* last reply text (sealed at rest), or NULL */
	uint8_t notify;     /* DSN NOTIFY (RFC 3461): QUEUE_NOTIFY_* bits,
			       0 = not given (a failure DSN, no other) */
	char *orcpt;        /* DSN ORCPT decoded ("rfc822;a@b"), or NULL */
};

#define QUEUE_NOTIFY_SUCCESS 0x01u
#define QUEUE_NOTIFY_FAILURE 0x02u
#define QUEUE_NOTIFY_DELAY   0x04u
#define QUEUE_NOTIFY_NEVER   0x08u /* alone */

#define QUEUE_F_8BITMIME 0x0001u /* BODY=8BITMIME */
#define QUEUE_F_SMTPUTF8 0x0002u /* SMTPUTF8 on MAIL FROM */
#define QUEUE_F_HELD     0x0004u /* held by an operator or policy */
#define QUEUE_F_DSN      0x0008u /* this message is a DSN: never bounce it */
/* The Message-ID may be written in clear in the delivery log (intake found
 * it machine-made, holding no address of the message); without it only
 * its keyed hash is. */
#define QUEUE_F_MSGID_CLEAR 0x0010u
#define QUEUE_F_RET_FULL    0x0020u /* DSN RET=FULL */
#define QUEUE_F_RET_HDRS    0x0040u /* DSN RET=HDRS */

struct queue_envelope {
	uint64_t id;
	int64_t created_ms;      /* Unix time, ms */
	int64_t next_attempt_ms; /* also the "sched" key */
	uint32_t flags;          /* QUEUE_F_* */
	uint64_t size;           /* body bytes (the message as queued) */
	uint32_t nchunks;        /* body chunks in "body" */
	char *sender;            /* envelope sender; "" = null sender <> */
	char *user;              /* authenticated user, or NULL */
	char *client;            /* client IP address as text */
	char *helo;              /* the client's EHLO/HELO name */
	char *msgid;    /* the Message-ID header as sent ("<l@r>"), or NULL */
	char *campaign; /* campaign/tenant id (log.campaign_header), or NULL */
	char *envid;    /* DSN ENVID decoded (RFC 3461), or NULL */
	struct queue_rcpt *rcpts;
	uint32_t nrcpts;
};

/* queue_envelope_clear — free what the members point to; zero the struct. */
void queue_envelope_clear(struct queue_envelope *env);

/*
 * queue_open — open (creating if needed) the environment at cfg->path and load
 * (or create) the queue key.  A key file readable by group or others is
 * refused.  Starts the writer thread.  Only outpostd opens the queue (the
 * CLI asks it: mta/control/control.h).
 * Returns 0 with *qp set, or -1 with a message in err.
 */
int queue_open(struct queue **qp, const struct queue_config *cfg, char *err,
	       size_t errlen);

/* queue_close — stop the writer after it has committed every submitted op,
 * then close the environment.  Main thread. */
void queue_close(struct queue *q);

/*
 * queue_wall_ms — the time of day in ms since the epoch, as every part of
 * Outpost reads it: CLOCK_REALTIME moved by the test clock (the
 * environment variable OUTPOST_TEST_CLOCK_OFFSET, signed seconds, for
 * retention tests only; queue_clock_offset_s returns it, 0 when unset or
 * malformed).  Any thread.
 */
int64_t queue_wall_ms(void);
int64_t queue_clock_offset_s(void);

/* queue_id_next — a new, unique, time-ordered message id.  Any thread. */
uint64_t queue_id_next(struct queue *q);

/* queue_id_format — 16 lower-case hex digits. */
void queue_id_format(uint64_t id, char out[QUEUE_ID_HEX_BYTES]);
/* queue_id_parse — the reverse; 0 ok, -1 malformed. */
int queue_id_parse(const char *s, uint64_t *id);

/*
 * A write operation for the writer thread.  Allocate with queue_op_new(), fill
 * the fields its kind needs, hand it to queue_submit(); ownership passes to
 * the queue until `done` is called, then back to the caller, who frees it
 * with queue_op_free() (also freeing env members and body).
 */
enum queue_op_kind {
	QOP_INSERT, /* a new message: env (id set) and body */
	QOP_UPDATE, /* replace the envelope of env.id; move its sched entry from
		       old_due_ms to env.next_attempt_ms */
	QOP_DELETE, /* remove env.id: envelope, body chunks and sched entry
		       (env.next_attempt_ms must be its current due time) */
	QOP_RESCHED,   /* move only the sched entry of env.id from old_due_ms to
			  env.next_attempt_ms, with env.flags' QUEUE_F_HELD as
			  its held bit; the envelope is not rewritten (it must
			  exist) */
	QOP_STATE_PUT, /* queue_state_put(): state_key, body = the record */
	QOP_STATE_DEL, /* queue_state_del(): state_key */
	QOP_SUPPRESS_PUT, /* queue_suppress_put(): suppress_key, body */
	QOP_SUPPRESS_DEL, /* queue_suppress_del(): suppress_key */
	QOP_SEEN_PUT,     /* queue_seen_put(): body = keys, old_due_ms = day */
	QOP_SEEN_SWEEP,   /* queue_seen_expire/purge: one batch of the sweep */
	QOP_SPOOL_PUT,    /* chunk spool_chunk (1, 2, ... in order) of env.id,
			     a message still arriving: body = its octets (1 to
			     QUEUE_CHUNK_MAX_BYTES); the spool record is written
			     (env.created_ms, the chunk count) with it */
	QOP_SPOOL_DEL,    /* give up env.id before its envelope was written:
			     its spool record and every chunk under it go */
};

struct queue_op;
typedef void queue_done_fn(struct queue_op *op, int status, void *arg);

struct queue_op {
	enum queue_op_kind kind;
	struct queue_envelope env;
	uint8_t *body; /* QOP_INSERT: owned, freed by queue_op_free() */
	size_t body_len;
	size_t body_cap; /* bytes allocated at body (0: body_len) */
	/* QOP_INSERT of a message that was spooled (it has a spool record):
	 * with spooled > 0, chunks 1..spooled (spooled_bytes octets) are in
	 * the queue already, body (1 to QUEUE_CHUNK_MAX_BYTES octets) becomes
	 * chunk 0 and tail (owned) the chunks after them; the spool record
	 * must say spooled chunks (else the op fails alone) and goes.  With
	 * spooled 0 the body is whole in body: the spooled chunks are deleted
	 * first.  QOP_SPOOL_PUT: spool_chunk is the chunk's index. */
	bool spool;
	uint32_t spooled, spool_chunk;
	uint64_t spooled_bytes;
	uint8_t *tail;
	size_t tail_len;
	int64_t old_due_ms;                       /* QOP_UPDATE */
	uint8_t state_key[QUEUE_STATE_KEY_BYTES]; /* QOP_STATE_* */
	uint8_t
	    suppress_key[2 * QUEUE_SUPPRESS_HASH_BYTES]; /* QOP_SUPPRESS_* */
	/* Set by the caller: the op gates no reply (a delivered message's
	 * removal, a deferral): it may wait up to lazy_wait_us to share a
	 * commit. */
	bool lazy;
	/* result, set before done(): 0 committed, -1 failed (err says why;
	 * map_full set when the failure was MDB_MAP_FULL) */
	int status;
	bool map_full;
	char err[160];
	uint64_t seen_removed; /* QOP_SEEN_SWEEP: entries removed */
	/* private to the queue */
	queue_done_fn *done;
	void *arg;
	void *sealed; /* records sealed ahead of the write transaction */
	struct queue_op *next;
	/* A delete with more chunks than one transaction frees: its chunks
	 * go QUEUE_DEL_CHUNKS_MAX at a time, in commits of their own (see
	 * writer.c).  deleting: the envelope is gone and a spool record
	 * names the rest; again: submit once more after this commit. */
	bool deleting, again;
};

struct queue_op *queue_op_new(enum queue_op_kind kind);
void queue_op_free(struct queue_op *op);

/*
 * queue_op_seal — encrypt the op's records now, on the calling thread (e.g. a
 * worker pool), so the writer only copies them.  Optional: queue_submit()
 * seals what is not sealed yet.  0 ok, -1 with op->err set.
 */
int queue_op_seal(struct queue *q, struct queue_op *op);

/*
 * queue_spool_read — chunks 1..N of ID spooled by QOP_SPOOL_PUT, in order,
 * opened, to FN (whose nonzero return stops the read: 0 then).  For a
 * message that must be read whole after all (re-encoding).  0, -1 on an
 * LMDB error or out of memory, QUEUE_CORRUPT for a chunk missing or
 * damaged (err says which).  Any thread; one short read transaction.
 */
typedef int queue_chunk_fn(const uint8_t *data, size_t len, void *arg);
int queue_spool_read(struct queue *q, uint64_t id, uint32_t n,
		     queue_chunk_fn *fn, void *arg, char *err, size_t errlen);

/*
 * queue_spool_swept — what queue_open() found of messages that were still
 * arriving when the last process stopped (kill -9, power loss): spool
 * records (*MSGS) and their chunks (*CHUNKS), deleted before anything was
 * served.  Any thread.
 */
void queue_spool_swept(struct queue *q, uint64_t *msgs, uint64_t *chunks);

/*
 * queue_submit — queue OP for the writer thread.  DONE(op, status, arg) is
 * called on the writer thread once the write transaction holding OP has been
 * committed to disk (status 0) or has failed (-1; every op of that batch
 * fails, the daemon goes on).  Never blocks on disk.  Any thread.
 */
void queue_submit(struct queue *q, struct queue_op *op, queue_done_fn *done,
		  void *arg);

/*
 * A batch: ops gathered by one thread and handed to the writer together,
 * under one lock instead of one per op (a delivery loop's settled messages
 * of one turn).  Zeroed to start.  queue_batch_add — OP (taken) joins B,
 * in order, with DONE and ARG as queue_submit takes them.
 * queue_batch_submit — queue_submit for every op of B, in order; B is
 * empty after.  The thread that owns B.
 */
struct queue_batch {
	struct queue_op *head, **tailp;
	size_t n;
};
void queue_batch_add(struct queue_batch *b, struct queue_op *op,
		     queue_done_fn *done, void *arg);
void queue_batch_submit(struct queue *q, struct queue_batch *b);

/*
 * queue_expect — DELTA = +1: a message is on its way to queue_submit() (a
 * worker is signing or sealing it); -1: it has been submitted (call this
 * just before queue_submit) or given up.  Every +1 needs its -1.  Before a
 * commit the writer waits, at most prepare_wait_us, for the messages
 * expected when the batch began, so that they share one commit.  Any
 * thread; lock-free.
 */
void queue_expect(struct queue *q, int delta);

/*
 * Readers.  Each call uses its own read transaction.  Envelopes handed to a
 * walk callback are only valid during the call.
 */
typedef int queue_walk_fn(const struct queue_envelope *env, void *arg);
/* queue_walk — every envelope in id (time) order; fn returns non-zero to
 * stop (that value is returned).  -1 on error (err set). */
int queue_walk(struct queue *q, queue_walk_fn *fn, void *arg, char *err,
	       size_t errlen);
/* queue_walk_range — as queue_walk(), over the envelopes whose id is in
 * [FIRST, LAST] only, in its own read transaction: threads may each walk a
 * slice of the queue at once (`outpost queue summary`). */
int queue_walk_range(struct queue *q, uint64_t first, uint64_t last,
		     queue_walk_fn *fn, void *arg, char *err, size_t errlen);
/* queue_walk_checked — as queue_walk_range(), but an envelope that cannot
 * be opened (unsealing or decoding fails: a corrupt record) is handed to
 * BAD(id, why, arg) and the walk goes on; BAD returns non-zero to stop.
 * Failures of LMDB itself still end the walk with -1. */
typedef int queue_bad_fn(uint64_t id, const char *why, void *arg);
int queue_walk_checked(struct queue *q, uint64_t first, uint64_t last,
		       queue_walk_fn *fn, queue_bad_fn *bad, void *arg,
		       char *err, size_t errlen);
/* queue_walk_skip — queue_walk_checked() over the whole queue with the
 * damaged records counted in *NSKIPPED and passed over.  FN returning
 * non-zero stops the walk with that value. */
int queue_walk_skip(struct queue *q, queue_walk_fn *fn, void *arg,
		    uint64_t *nskipped, char *err, size_t errlen);
/* queue_sched_walk — every entry of the schedule index in due order:
 * FN(due_ms, id, flags (QUEUE_F_HELD or 0), arg).  No decryption: this is
 * what start-up reads.  Returns as queue_walk(). */
typedef int queue_sched_fn(int64_t due_ms, uint64_t id, unsigned flags,
			   void *arg);
int queue_sched_walk(struct queue *q, queue_sched_fn *fn, void *arg, char *err,
		     size_t errlen);
/* Where a walk of the schedule index in steps stands: zero it to begin. */
struct queue_sched_pos {
	int64_t due_ms; /* the last entry given to fn */
	uint64_t id;
	bool started; /* false: begin with the first entry */
	bool done;    /* no entry is left after (due_ms, id) */
};
/*
 * queue_sched_walk_batch — as queue_sched_walk(), but at most MAX entries,
 * from the one after POS (the first when !started), in one short read
 * transaction; POS moves to the last entry given to FN and done is set
 * when the index holds nothing after it.  Entries added or moved behind
 * POS since the last step are not seen; entries moved ahead of it are
 * seen (again): a caller that keeps what it read tells them apart.  For a
 * loop that loads a large index in steps and serves events between them.
 * Any thread (a read transaction of its own).  Returns as queue_walk().
 */
int queue_sched_walk_batch(struct queue *q, struct queue_sched_pos *pos,
			   size_t max, queue_sched_fn *fn, void *arg, char *err,
			   size_t errlen);
/*
 * QUEUE_CORRUPT: what queue_envelope_get() and queue_body_read() return when
 * the record is there but damaged (it does not authenticate or decode, a
 * body chunk is missing or truncated, the sizes disagree, or it was sealed
 * with a key this queue does not hold): reading it again will not help.
 * -1 is kept for what might (out of memory, an LMDB error).
 */
#define QUEUE_CORRUPT (-2)
/* queue_envelope_get — 0 found (env filled, clear it after), 1 not found,
 * -1 error, QUEUE_CORRUPT. */
int queue_envelope_get(struct queue *q, uint64_t id, struct queue_envelope *env,
		       char *err, size_t errlen);
/* queue_body_read — the body in order, chunk by chunk, decrypted; fn
 * returns non-zero to stop.  0 ok, 1 not found, -1 error, QUEUE_CORRUPT. */
int queue_body_read(struct queue *q, uint64_t id, queue_chunk_fn *fn, void *arg,
		    char *err, size_t errlen);

/*
 * A body read one chunk at a time (body.c), for a sender that must not hold
 * the message whole: each queue_body_next() opens one short read
 * transaction, decrypts one chunk into a buffer the reader owns (wiped when
 * reused and at close) and aborts the transaction before it returns, so no
 * read transaction (no pinned snapshot) outlives a call, and a reader kept
 * across event-loop waits holds one chunk of memory and nothing of LMDB;
 * the map pages a chunk was read from are unmapped again (they stay in the
 * page cache), so reading bodies does not grow the process's RSS.
 * Each chunk is checked as queue_body_read() checks the whole: its key
 * (id, index) and order, its seal, and its size against what the envelope
 * says (SIZE bytes in NCHUNKS chunks, none past them).
 *   queue_body_open(q, env, &r)  a reader of ENV's body (ENV->id, ->size,
 *       ->nchunks are copied; nothing is read yet).  0, or -1 out of
 *       memory.  Q must outlive the reader.
 *   queue_body_next(r, &p, &len, err, errlen)  the next chunk: 0 with P,
 *       LEN (valid until the next call or the close), 1 at the end (the
 *       count and total agreed), 1 also for an empty body, -1 on an LMDB
 *       error or out of memory, QUEUE_CORRUPT for a chunk missing, extra,
 *       altered or of the wrong size; after a failure every call fails.
 *   queue_body_close(r)  wipe and free (NULL is allowed); the chunk's
 *       buffer is wiped and freed already when queue_body_next() says 1.
 * One reader belongs to one thread at a time; any thread (MDB_NOTLS).
 */
struct queue_body_reader;
int queue_body_open(struct queue *q, const struct queue_envelope *env,
		    struct queue_body_reader **rp);
int queue_body_next(struct queue_body_reader *r, const uint8_t **p, size_t *len,
		    char *err, size_t errlen);
void queue_body_close(struct queue_body_reader *r);

struct queue_stats {
	uint64_t commits; /* write transactions committed */
	uint64_t ops;     /* ops committed */
	uint64_t failed_ops;
	uint64_t last_batch; /* ops in the last transaction */
	uint64_t max_batch;
	uint64_t commit_us_total;   /* time spent in mdb_txn_commit */
	uint64_t headroom_bytes;    /* zeros written ahead of LMDB during
				       restore points (headroom.c) */
	uint64_t txn_wait_us_total; /* the writer waiting for headroom.c
				       between transactions */
};
void queue_stats_get(struct queue *q, struct queue_stats *st);

/*
 * queue_commit_hook — FN(ops, commit_us) is called on the writer thread
 * after every committed write transaction (for the metrics' batch-size and
 * commit-time histograms).  It must be quick and thread-safe.  Set it before
 * submitting ops; NULL removes it.
 */
typedef void queue_commit_fn(unsigned ops, uint64_t commit_us);
void queue_commit_hook(struct queue *q, queue_commit_fn *fn);

/*
 * queue_done_hook — FN() runs after each group of done() calls: every op's
 * of a committed (or failed) batch, on the writer thread, and those of a
 * refused submission, on the submitting thread.  For done() callbacks that
 * gather what they hand on and send it once per group.  Set it before
 * submitting ops; NULL removes it.
 */
typedef void queue_dones_fn(void);
void queue_done_hook(struct queue *q, queue_dones_fn *fn);

/*
 * Log replay after a restore (replay.c), offline: outpostd must not have
 * the queue open.  The recipients that the delivery log settled after a
 * restore point are marked done in the restored queue, so that a restore
 * does not send them again.  One thread (it waits for the writer).
 *   queue_replay_open(&r, cfg, …)   opens the queue of CFG (as queue_open)
 *       and reads the ids of its messages (the schedule index; nothing is
 *       decrypted).  0, or -1 with ERR.
 *   queue_replay_note(r, id, hash, state)   the log settled recipient HASH
 *       (32 hex digits, queue_addr_hash with the log-hash key) of message
 *       ID as STATE (QR_DELIVERED, QR_BOUNCED or QR_EXPIRED): kept when ID
 *       is in the queue (1), else passed over (0); -1 out of memory.
 *   queue_replay_apply(r, hash_key, &res, …)   each message with notes:
 *       its pending recipients whose hash (with HASH_KEY) was noted take
 *       the noted state; a message with none pending left is removed,
 *       others are rewritten with their due time kept.  Returns after
 *       every change is committed: 0, or -1 with ERR (a change that failed
 *       is said; those committed stay).
 *   queue_replay_close(r)   closes the queue; R may be NULL.
 */
struct queue_replay;
struct queue_replay_result {
	uint64_t messages; /* in the queue when opened */
	uint64_t notes;    /* recipients noted for its messages */
	uint64_t marked;   /* pending recipients marked done */
	uint64_t removed;  /* messages removed: nothing pending left */
	uint64_t skipped;  /* messages that do not open (damaged) */
};
int queue_replay_open(struct queue_replay **rp, const struct queue_config *cfg,
		      char *err, size_t errlen);
uint64_t queue_replay_messages(const struct queue_replay *r);
int queue_replay_note(struct queue_replay *r, uint64_t id,
		      const char *rcpt_hash, enum queue_rcpt_state state);
int queue_replay_apply(struct queue_replay *r,
		       const uint8_t hash_key[QUEUE_KEY_BYTES],
		       struct queue_replay_result *res, char *err,
		       size_t errlen);
void queue_replay_close(struct queue_replay *r);

/*
 * Operators' and limiters' state that outlives a restart: a destination's
 * suspension, a site's back-off, an AUTH block, when a configured user
 * was removed (its data's retention clock).  One record per (kind, name),
 * in the "state" database of the same environment (restore points and the
 * queue key cover it).  Its LMDB key is the kind and a keyed
 * BLAKE2b-128 of the name (names can hold an address: never in clear); the
 * record, sealed like an envelope, is version(1) until_ms(8, big-endian)
 * and the caller's DATA.  A record whose until_ms has passed is dropped
 * (and deleted) by queue_state_load().
 *
 * Writes are queue ops: they ride the writer's group commit, in the order
 * submitted, and never block (no disk I/O on the calling thread).  Whoever
 * changes a state writes it once per change, never per message.
 */
#define QUEUE_STATE_VERSION  1
#define QUEUE_STATE_DATA_MAX 4096 /* the caller's bytes in one record */

enum queue_state_kind {
	QS_SUSPEND = 's',    /* an operator's suspension of a destination */
	QS_BACKOFF = 'b',    /* a site's back-off (per pool) */
	QS_AUTH_BLOCK = 'a', /* an AUTH limiter's block */
	QS_USER = 'u',       /* a configured user: removed_at (0 while it is
				configured), for its data's retention clock */
	QS_IMPORTED = 'i',   /* an archive imported: its id, until its
				messages' latest expiry (no second import) */
	QS_MTASTS = 'm',     /* a domain's MTA-STS policy, until it expires
				(mta/deliver/mtasts.c) */
	QS_TLSRPT = 'r',     /* a day's TLS report counts for a policy
				domain (mta/deliver/tlsrpt.c) */
	QS_WATCHDOG = 'w',   /* a sending identity's watchdog profile and
				stop (mta/observe/watchdog.c) */
};

/*
 * queue_state_put — keep DATA (LEN <= QUEUE_STATE_DATA_MAX bytes, copied)
 * as the state of NAME (NAMELEN bytes) of KIND until UNTIL_MS (Unix ms),
 * replacing what was kept.  Sealed and written by the writer thread.
 * Returns 0 when submitted, -1 when out of memory or LEN is too large.
 * Any thread; never blocks on disk.
 */
int queue_state_put(struct queue *q, enum queue_state_kind kind,
		    const void *name, size_t namelen, int64_t until_ms,
		    const void *data, size_t len);

/* queue_state_del — forget the state of NAME of KIND (nothing kept is not
 * an error).  0 submitted, -1 out of memory.  Any thread; never blocks. */
int queue_state_del(struct queue *q, enum queue_state_kind kind,
		    const void *name, size_t namelen);

/*
 * queue_state_load — FN(until_ms, data, len, arg) for every record of KIND
 * in force at NOW_MS (DATA valid during the call only; FN returns non-zero
 * to stop, that value is returned).  Records that have expired, do not
 * open (another key, damaged) or have an unknown version are passed over,
 * counted in *NDROPPED (may be NULL) and deleted through the writer.  Its
 * own read transaction: start-up, before the loops serve.  -1 with err on
 * an LMDB error.
 */
typedef int queue_state_fn(int64_t until_ms, const uint8_t *data, size_t len,
			   void *arg);
int queue_state_load(struct queue *q, enum queue_state_kind kind,
		     int64_t now_ms, queue_state_fn *fn, void *arg,
		     uint64_t *ndropped, char *err, size_t errlen);

/*
 * queue_state_subkey — a 32-byte key for CONTEXT derived from the queue key
 * (keyed BLAKE2b): a hash made with it today is the same after a restart
 * (the AUTH limiter's hashes of user names).  Any thread.
 */
void queue_state_subkey(struct queue *q, const char *context,
			uint8_t out[QUEUE_KEY_BYTES]);

/*
 * The suppression list (suppress.c): recipients not to send to again,
 * per sending identity or for all, in the "suppress" database.  Its LMDB
 * key is scope(16) rcpt(16): two keyed BLAKE2b-128 hashes the caller makes
 * (the daemon uses the delivery log's hash key, so that the rcpt hash of
 * an entry is the rcpt_hash of the delivery log's lines and what
 * `outpost hash ADDRESS` prints); an all-zero scope is the global list.
 * The record is version(1) reason(1) time_ms(8, big-endian), not sealed:
 * it holds no clear data (no address, no name, no text), a read on an SMTP
 * loop then costs one mdb_get and no cipher, and restore points and
 * exports carry it as they carry the rest of the environment.
 *
 * Writes are queue ops riding the writer's group commit (never blocking
 * the caller); reads use their own read transaction (MDB_RDONLY: no write,
 * no fsync), allowed on an I/O loop.
 */
#define QUEUE_SUPPRESS_VERSION 1

enum queue_suppress_reason {
	QSR_BAD_MAILBOX = 1, /* a hard bounce: no such mailbox */
	QSR_BAD_DOMAIN,      /* a hard bounce: no such domain */
	QSR_COMPLAINT,       /* the recipient complained (feedback loop) */
	QSR_OPERATOR,        /* `outpost suppress add` */
};

struct queue_suppress_entry {
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES]; /* all zero: global */
	uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES];
	enum queue_suppress_reason reason;
	int64_t time_ms; /* when it was added (Unix ms) */
};

/* queue_suppress_reason_name — "bounce-bad-mailbox", "bounce-bad-domain",
 * "complaint", "operator"; "unknown" for anything else.  Pure. */
const char *queue_suppress_reason_name(enum queue_suppress_reason r);
/* queue_suppress_reason_parse — the reverse; 0 ok, -1 unknown.  Pure. */
int queue_suppress_reason_parse(const char *name,
				enum queue_suppress_reason *r);

/*
 * queue_suppress_put — add (or replace: the newer reason and time win) the
 * entry E.  DONE(status, ARG), if not NULL, is called on the writer thread
 * once it is committed (0) or failed (-1); it must only hand the result
 * over.  Returns 0 submitted, -1 out of memory (DONE is not called).  Any
 * thread; never blocks on disk.
 */
typedef void queue_suppress_done_fn(int status, void *arg);
int queue_suppress_put(struct queue *q, const struct queue_suppress_entry *e,
		       queue_suppress_done_fn *done, void *arg);

/* queue_suppress_del — remove the entry (SCOPE, RCPT) (none is not an
 * error); DONE as for queue_suppress_put. */
int queue_suppress_del(struct queue *q,
		       const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		       const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		       queue_suppress_done_fn *done, void *arg);

/*
 * queue_suppress_get — the entry (SCOPE, RCPT) into *OUT (may be NULL).
 * Returns 1 found, 0 none (a record of another version counts as none),
 * -1 with err on an LMDB error.  Its own read transaction: any thread, an
 * I/O loop too (no write, no fsync, no lock but LMDB's reader slot).
 */
int queue_suppress_get(struct queue *q,
		       const uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
		       const uint8_t rcpt[QUEUE_SUPPRESS_HASH_BYTES],
		       struct queue_suppress_entry *out, char *err,
		       size_t errlen);

/*
 * queue_suppress_walk — FN(entry, ARG) for every entry of SCOPE (NULL:
 * every scope), in key order; FN returns non-zero to stop (that value is
 * returned).  Malformed records are passed over.  Its own read
 * transaction; -1 with err on an LMDB error.  Any thread but an I/O loop
 * (the list may be long).
 */
typedef int queue_suppress_fn(const struct queue_suppress_entry *e, void *arg);
int queue_suppress_walk(struct queue *q,
			const uint8_t *scope /* QUEUE_SUPPRESS_HASH_BYTES */,
			queue_suppress_fn *fn, void *arg, char *err,
			size_t errlen);

/*
 * queue_suppress_drop — delete (through the writer) every entry of SCOPE
 * (NULL: every scope) added before OLDER_THAN_MS (INT64_MAX: all of
 * them).  Returns how many were submitted for deletion, or -1 with err
 * (nothing submitted).  Blocking on the walk: a worker thread, never an
 * I/O loop.
 */
int64_t
queue_suppress_drop(struct queue *q,
		    const uint8_t *scope /* QUEUE_SUPPRESS_HASH_BYTES */,
		    int64_t older_than_ms, char *err, size_t errlen);

/* queue_suppress_count — the entries of every scope (mdb_stat: no walk).
 * 0 on an LMDB error.  Any thread. */
uint64_t queue_suppress_count(struct queue *q);

/*
 * Recipients sent to, per sending identity (seen.c), for the watchdog's
 * share of new recipients: key = keyed hash(8) of the identity, keyed
 * hash(8) of the normalised address (as queue_addr_hash: no <>, ASCII
 * lower-case); value = the day (Unix days) it was last sent to.  About 40
 * bytes on disk per entry (LMDB node and page fill).
 *   queue_seen_identity(q, identity, id)  the identity's half of its keys.
 *   queue_seen_key(q, id, rcpt, key)      the key of RCPT for ID.  Any
 *       thread; pure (the queue key).
 *   queue_seen_get(q, keys, n, days, …)   days[i] = the last day of
 *       keys[i], 0 never seen; one read transaction (an I/O loop may call
 *       it: no disk write, no lock held long).  0, or -1 with err.
 *   queue_seen_put(q, keys, n, day)       note keys[0..n) seen on DAY: a
 *       lazy queue op (group commit); 0 submitted, -1 out of memory.
 *   queue_seen_expire(q, before_day, &removed, …)  delete what was last
 *       seen before BEFORE_DAY; queue_seen_purge(q, id, &removed, …)
 *       every entry of identity ID.  In batches through the writer; they
 *       block until committed: a worker thread only.  0, or -1 with err.
 *   queue_seen_stat(q, &entries, &bytes)  the database's size; 0 or -1.
 */
#define QUEUE_SEEN_HALF_BYTES 8
#define QUEUE_SEEN_KEY_BYTES  16
void queue_seen_identity(struct queue *q, const char *identity,
			 uint8_t out[QUEUE_SEEN_HALF_BYTES]);
void queue_seen_key(struct queue *q, const uint8_t id[QUEUE_SEEN_HALF_BYTES],
		    const char *rcpt, uint8_t key[QUEUE_SEEN_KEY_BYTES]);
int queue_seen_get(struct queue *q, const uint8_t (*keys)[QUEUE_SEEN_KEY_BYTES],
		   size_t n, uint32_t *days, char *err, size_t errlen);
int queue_seen_put(struct queue *q, const uint8_t (*keys)[QUEUE_SEEN_KEY_BYTES],
		   size_t n, uint32_t day);
int queue_seen_expire(struct queue *q, uint32_t before_day, uint64_t *removed,
		      char *err, size_t errlen);
int queue_seen_purge(struct queue *q, const uint8_t id[QUEUE_SEEN_HALF_BYTES],
		     uint64_t *removed, char *err, size_t errlen);
int queue_seen_stat(struct queue *q, uint64_t *entries, uint64_t *bytes);

/*
 * Key files (queue key, log-hash key): 32 bytes as 64 hex digits and a newline.
 * queue_keyfile_load — read PATH; if it is absent and CREATE is set, make it
 * (0600, parent directories 0700) from random bytes.  A file readable or
 * writable by group/other is refused ("PATH: mode 0644, must not be readable
 * by group or others").  0 ok, -1 with err set.
 */
int queue_keyfile_load(const char *path, bool create,
		       uint8_t key[QUEUE_KEY_BYTES], char *err, size_t errlen);

/*
 * queue_addr_hash — keyed BLAKE2b-128 of the normalised address (surrounding
 * <> and white space removed, ASCII lower-cased throughout, as receivers treat
 * local parts case-insensitively in practice), as 32 hex digits.  The same
 * function backs the delivery log and `outpost hash`.
 */
void queue_addr_hash(const uint8_t key[QUEUE_KEY_BYTES], const char *addr,
		     char out[QUEUE_HASH_HEX_BYTES]);

/*
 * Restore points (point.c): a compacted copy of the environment in DIR as
 * point-NAME.mdb (0600; its records stay sealed) with its manifest
 * point-NAME.json written last (a point without manifest is incomplete and
 * ignored).  NAME is the UTC second it was taken, YYYYMMDDTHHMMSSZ (test
 * clock: queue_wall_ms); a second point in the same second waits for the
 * next one, so names never collide.  The queue key is never written there.
 */
struct queue_point_info {
	char name[32];       /* YYYYMMDDTHHMMSSZ */
	int64_t time_ms;     /* when it was taken (Unix ms) */
	uint64_t size;       /* bytes of point-NAME.mdb */
	uint64_t messages;   /* envelopes in it */
	uint64_t recipients; /* recipients still pending in it */
	uint32_t key_id;     /* id of the key that sealed it (crypt_key_id) */
	char checksum[80];   /* "blake2b-256:" and 64 hex digits */
	bool verified;       /* every record opened when it was taken */
	int64_t duration_ms; /* copy, walk and manifest */
};

/*
 * queue_point_take — copy Q (mdb_env_copyfd2, MDB_CP_COMPACT, from a read
 * transaction: the writer goes on) into DIR (created 0700), fsync, then
 * walk the copy opening every record, checksum it and write the manifest.
 * OUT (may be NULL) gets the manifest.  Blocking (disk, the whole queue):
 * the restore thread or a tool, never an I/O loop; one call at a time per
 * DIR.  0 ok (a point whose walk failed is kept with verified false and
 * the reason in err); -1 with err set and nothing left behind.
 */
int queue_point_take(struct queue *q, const char *dir,
		     struct queue_point_info *out, char *err, size_t errlen);

/*
 * queue_point_list — the manifests of DIR, oldest first (*out malloc'd,
 * owned by the caller, free()).  Temporary files, points without manifest
 * and unreadable manifests are passed over.  A missing DIR is no points.
 * 0 ok; -1 with err set.  Any thread.
 */
int queue_point_list(const char *dir, struct queue_point_info **out, size_t *n,
		     char *err, size_t errlen);

/*
 * queue_point_verify — check the point NAME (the bare name, "point-NAME" or
 * its file name) of DIR against its manifest: size, checksum, then (KEY
 * must be the key whose id the manifest names) open it read-only and walk
 * every record opening every seal; the counts must agree.  OUT (may be
 * NULL) gets the manifest, verified set to the result.  0 the point is
 * whole; -1 with the reason in err ("size 4096 bytes, the manifest says
 * 81920 (truncated?)", "checksum differs from the manifest (altered?)",
 * "record ID: authentication failed ...").  Any thread; read-only.
 */
int queue_point_verify(const char *dir, const char *name,
		       const uint8_t key[QUEUE_KEY_BYTES],
		       struct queue_point_info *out, char *err, size_t errlen);

/*
 * Which points stay (point_keep.c): every point younger than ALL_MS, the
 * first of each UTC hour younger than HOURLY_MS, the first of each UTC day
 * younger than DAILY_MS; none older, none older than MAX_AGE_MS (0: no
 * limit).  The newest point stays unless past MAX_AGE_MS.
 */
struct queue_point_keep {
	int64_t all_ms, hourly_ms, daily_ms, max_age_ms;
};

enum queue_point_keep_verdict {
	QPK_KEEP,
	QPK_LIFETIME, /* older than max_age_ms */
	QPK_THINNED,  /* not the first of its hour or day */
	QPK_EXPIRED,  /* older than every tier */
};

/* queue_point_keep_plan — the verdict on each of the N points V (oldest
 * first, as queue_point_list gives them) at NOW_MS into OUT[N].  Pure. */
void queue_point_keep_plan(const struct queue_point_info *v, size_t n,
			   int64_t now_ms, const struct queue_point_keep *k,
			   enum queue_point_keep_verdict *out);
/* queue_point_keep_why — the words for a verdict ("older than …"). */
const char *queue_point_keep_why(enum queue_point_keep_verdict v);

/*
 * queue_point_prune — remove the points of DIR that K does not keep at
 * NOW_MS (manifest first, then file), and what interrupted points left
 * (.tmp files, a point file without manifest); FN(NAME, WHY, ARG) for each
 * (may be NULL).  Returns how many were removed, or -1 with err set.
 * Blocking: the restore thread (or a tool with the daemon stopped).
 */
typedef void queue_point_removed_fn(const char *name, const char *why,
				    void *arg);
int queue_point_prune(const char *dir, int64_t now_ms,
		      const struct queue_point_keep *k,
		      queue_point_removed_fn *fn, void *arg, char *err,
		      size_t errlen);

/*
 * The restore thread (point_run.c): a point every INTERVAL_MS (0: only on
 * request), then its copy to COPY_TO and COMMAND (with the point's path
 * appended; stdin /dev/null, output to our stderr; killed with its process
 * group after COMMAND_TIMEOUT_MS; one at a time: a point whose previous
 * command still runs skips its own), then the pruning of DIR and COPY_TO.
 * Acceptance and delivery never wait for it: the copy reads from its own
 * read transaction.  Strings are copied.
 */
/*
 * queue_command_spawn — start ARGV (argv[0] an absolute path; no shell)
 * with EXTRA (NULL-terminated; may be NULL) appended, stdin /dev/null,
 * stdout to our stderr, in a process group of its own (a timeout kills
 * the group), signals as a fresh process has them; *PID set.  0, or an
 * errno value.  Any thread; the caller reaps it.  (The restore command;
 * the watchdog's alert command.)
 */
int queue_command_spawn(char *const *argv, char *const *extra, pid_t *pid);

struct queue_point_settings {
	int64_t interval_ms;
	const char *dir;
	const char *copy_to;  /* NULL: none */
	char *const *command; /* argv, NULL-terminated; NULL: none */
	int64_t command_timeout_ms;
	struct queue_point_keep keep;
};

struct queue_point_stats {
	uint64_t taken, failed, unverified, copies_failed, removed;
	uint64_t commands_ok, commands_failed, commands_killed,
	    commands_skipped;
	bool have_last;
	struct queue_point_info last; /* the last point taken */
};

enum queue_point_level { QPL_INFO, QPL_WARN };
/* What the thread has to say (no address is ever in it); called on the
 * restore thread. */
typedef void queue_point_log_fn(enum queue_point_level level, const char *msg,
				void *arg);
/* A requested point: STATUS 0 with PI, or -1 with ERR; restore thread. */
typedef void queue_point_done_fn(int status, const struct queue_point_info *pi,
				 const char *err, void *arg);

struct queue_point_thread;

/* queue_point_thread_start — prune DIR, then serve S.  0, or -1 with err
 * set.  Main thread; Q must outlive queue_point_thread_stop(). */
int queue_point_thread_start(struct queue_point_thread **tp, struct queue *q,
			     const struct queue_point_settings *s,
			     queue_point_log_fn *log, void *log_arg, char *err,
			     size_t errlen);
/* queue_point_thread_set — S (copied) from the next point on (a reload).
 * 0, or -1 out of memory (the old settings stay).  Any thread. */
int queue_point_thread_set(struct queue_point_thread *t,
			   const struct queue_point_settings *s);
/* queue_point_thread_request — take a point now; DONE(…, ARG) once it is
 * on disk (or failed, or the thread stops first).  0, or -1 (out of
 * memory).  Any thread; never blocks on disk. */
int queue_point_thread_request(struct queue_point_thread *t,
			       queue_point_done_fn *done, void *arg);
/* queue_point_thread_stats — a snapshot.  Any thread. */
void queue_point_thread_stats(struct queue_point_thread *t,
			      struct queue_point_stats *st);
/* queue_point_thread_stop — give up a point in progress (its copy stops at
 * its next read, nothing of it is kept), answer the requests left with an
 * error, kill a command still running, join.  NULL is allowed.  Main
 * thread, before queue_close(); no point can be taken of Q after it. */
void queue_point_thread_stop(struct queue_point_thread *t);

#endif
