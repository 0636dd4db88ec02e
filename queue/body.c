/*
 * body.c — a message body read one sealed chunk at a time
 * (queue_body_open/next/close), so that a sender holds one chunk, never the
 * message.  Owns: struct queue_body_reader and its plaintext buffer (wiped
 * when reused and at close).  Must not: keep a read transaction past a call
 * (a reader waits on event loops; a transaction held there would pin a
 * snapshot and keep the writer from reusing pages).  Any thread, one at a
 * time per reader (MDB_NOTLS).  Invariant: what it hands out is exactly the
 * envelope's SIZE bytes in its NCHUNKS chunks, or a failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "queue/crypt_int.h"
#include "queue/queue_int.h"

struct queue_body_reader {
	struct queue *q;
	uint64_t id;
	uint64_t size;    /* what the envelope says */
	uint32_t nchunks; /* idem */
	uint32_t next;    /* the index of the chunk to read next */
	uint64_t total;   /* bytes handed out so far */
	int failed;       /* 0, or the failure every later call returns */
	bool ended;       /* the end was checked */
	struct queue_plain buf;
	struct queue_plain raw; /* a chunk's sealed octets (queue_body_fetch) */
};

int
queue_body_open(struct queue *q, const struct queue_envelope *env,
		struct queue_body_reader **rp)
{
	struct queue_body_reader *r = calloc(1, sizeof(*r));

	*rp = NULL;
	if (r == NULL)
		return -1;
	r->q = q;
	r->id = env->id;
	r->size = env->size;
	r->nchunks = env->nchunks;
	*rp = r;
	return 0;
}

void
queue_body_close(struct queue_body_reader *r)
{
	if (r == NULL)
		return;
	queue_plain_free(&r->buf);
	queue_plain_free(&r->raw);
	free(r);
}

/* The end: the count and total agree with the envelope and no chunk lies
 * past the last.  1, or -1 / QUEUE_CORRUPT with err. */
static int
queue_body_end(struct queue_body_reader *r, MDB_txn *txn, char *err,
	       size_t errlen)
{
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	char qid[QUEUE_ID_HEX_BYTES];
	MDB_val key, val;
	int rc;

	queue_id_format(r->id, qid);
	if (r->total != r->size) {
		(void)snprintf(err, errlen,
			       "record %s: body has %" PRIu64
			       " bytes; the envelope says %" PRIu64,
			       qid, r->total, r->size);
		return QUEUE_CORRUPT;
	}
	queue_body_key(k, r->id, r->nchunks);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	if ((rc = mdb_get(txn, r->q->db_body, &key, &val)) == 0) {
		(void)snprintf(err, errlen,
			       "record %s: body chunk %" PRIu32
			       " past the %" PRIu32 " the envelope says",
			       qid, r->nchunks, r->nchunks);
		return QUEUE_CORRUPT;
	}
	if (rc != MDB_NOTFOUND) {
		(void)snprintf(err, errlen, "%s: reading body: %s", r->q->path,
			       mdb_strerror(rc));
		return -1;
	}
	r->ended = true;
	return 1;
}

/*
 * Read VAL's sealed octets with pread(2) from the data file into R->raw,
 * and point VAL there, rather than decrypting them through the map: a
 * chunk read through the map leaves its pages (and, with the page cache's
 * large folios, their neighbours) in our page tables, counted in the
 * daemon's RSS until they are unmapped, and each unmapping costs every
 * core a TLB flush.  The read transaction keeps the pages from being
 * reused meanwhile, and the file and the map are one page cache.  Where
 * the map or its file is unknown, or the read fails, VAL is left as it is
 * and the caller reads the map.
 */
static void
queue_body_fetch(struct queue_body_reader *r, MDB_val *val)
{
	const struct queue *q = r->q;
	uintptr_t a = (uintptr_t)val->mv_data, lo = (uintptr_t)q->map_addr;
	ssize_t n;

	if (q->map_fd < 0 || !queue_map_has(q, val->mv_data, val->mv_size) ||
	    queue_plain_reserve(&r->raw, val->mv_size) != 0)
		return;
	do
		n = pread(q->map_fd, r->raw.p, val->mv_size, (off_t)(a - lo));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)val->mv_size)
		return;
	val->mv_data = r->raw.p;
}

/* Chunk R->next, opened into R->buf (*PLEN bytes) and checked against the
 * envelope's sizes.  0, or -1 / QUEUE_CORRUPT with err. */
static int
queue_body_chunk(struct queue_body_reader *r, MDB_txn *txn, size_t *plen,
		 char *err, size_t errlen)
{
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	char qid[QUEUE_ID_HEX_BYTES];
	MDB_val key, val;
	int rc;

	queue_id_format(r->id, qid);
	queue_body_key(k, r->id, r->next);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	if ((rc = mdb_get(txn, r->q->db_body, &key, &val)) == MDB_NOTFOUND) {
		(void)snprintf(err, errlen,
			       "record %s: body chunk %" PRIu32 " missing", qid,
			       r->next);
		return QUEUE_CORRUPT;
	}
	if (rc != 0) {
		(void)snprintf(err, errlen, "%s: reading body: %s", r->q->path,
			       mdb_strerror(rc));
		return -1;
	}
	queue_body_fetch(r, &val);
	rc = queue_chunk_open(r->q, &key, &val, r->next, &r->buf, plen, err,
			      errlen);
	queue_map_unmap(r->q, val.mv_data, val.mv_size); /* if in the map */
	/* Sealed octets need no wipe; held only while opened, so that a
	 * connection waiting on its peer holds one chunk, not two. */
	free(r->raw.p);
	r->raw.p = NULL;
	r->raw.cap = 0;
	if (rc != 0)
		return rc;
	/* A chunk is never empty nor past the limit, and the chunks before
	 * the last leave the last something to hold. */
	if (*plen == 0 || *plen > QUEUE_CHUNK_MAX_BYTES ||
	    *plen > r->size - r->total ||
	    (r->next + 1 < r->nchunks && *plen == r->size - r->total)) {
		(void)snprintf(err, errlen,
			       "record %s: body chunk %" PRIu32 ": %zu bytes "
			       "do not fit the envelope's %" PRIu64
			       " in %" PRIu32 " chunks",
			       qid, r->next, *plen, r->size, r->nchunks);
		return QUEUE_CORRUPT;
	}
	return 0;
}

int
queue_body_next(struct queue_body_reader *r, const uint8_t **p, size_t *len,
		char *err, size_t errlen)
{
	MDB_txn *txn;
	size_t plen = 0;
	int rc;

	*p = NULL;
	*len = 0;
	if (r->failed != 0) {
		(void)snprintf(err, errlen, "the body reader failed before");
		return r->failed;
	}
	if (r->ended)
		return 1;
	/* One short read transaction per call: nothing of LMDB is held
	 * while the caller waits for the chunk to be sent. */
	if (queue_txn_read(r->q, &txn, err, errlen) != 0) {
		r->failed = -1;
		return -1;
	}
	if (r->next == r->nchunks)
		rc = queue_body_end(r, txn, err, errlen);
	else
		rc = queue_body_chunk(r, txn, &plen, err, errlen);
	queue_txn_read_end(r->q, txn);
	if (rc < 0) {
		r->failed = rc;
		return rc;
	}
	if (rc == 1) {
		/* Nothing more to hand out: the chunk's memory goes now, not
		 * when the caller is done waiting for its peer's reply. */
		queue_plain_free(&r->buf);
		return 1;
	}
	r->next++;
	r->total += plen;
	*p = r->buf.p;
	*len = plen;
	return 0;
}
