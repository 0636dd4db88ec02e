/*
 * queue.c — the LMDB environment, ids, sealing of ops, and the readers (the
 * writer thread is in writer.c).
 * Owns: the environment, its five databases, the queue key and the id
 * counter.  Threads: open/close on the main thread; readers on any thread,
 * each with its own read transaction (MDB_NOTLS); queue_op_seal on any
 * thread that owns the op.  Invariants: ids only grow; nothing is stored
 * in "env" or "body" unsealed.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "queue/crypt_int.h"
#include "queue/queue_int.h"

#define QUEUE_MAXDBS        9     /* 8 in use; room for one more */
#define QUEUE_BATCH_DEFAULT 4096  /* commit_max_batch = 0 */
#define QUEUE_LAZY_US       10000 /* lazy_wait_us = 0 */
/* Reader slots: each thread that reads keeps one (txn_read.c), and LMDB's
 * 126 would cap a 32-core daemon's loops and workers. */
#define QUEUE_MAXREADERS 1024

/*
 * The test clock: OUTPOST_TEST_CLOCK_OFFSET (signed seconds, at most ten
 * years either way) moves every time of day the daemon and the CLI read,
 * so that retention can be tested on data that looks months old.  Read
 * once; anything else in the variable is ignored (queue_clock_offset_s
 * says 0) and outpostd warns at start-up when it is in force.
 */
#define QUEUE_CLOCK_OFFSET_MAX_S (10LL * 366 * 86400)

static pthread_once_t queue_clock_once = PTHREAD_ONCE_INIT;
static int64_t queue_clock_offset;

static void
queue_clock_init(void)
{
	const char *s = getenv("OUTPOST_TEST_CLOCK_OFFSET");
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > QUEUE_CLOCK_OFFSET_MAX_S ||
	    v < -QUEUE_CLOCK_OFFSET_MAX_S)
		return;
	queue_clock_offset = (int64_t)v;
}

int64_t
queue_clock_offset_s(void)
{
	pthread_once(&queue_clock_once, queue_clock_init);
	return queue_clock_offset;
}

uint64_t
queue_clock_us(clockid_t clk)
{
	struct timespec ts;
	int64_t off = clk == CLOCK_REALTIME ? queue_clock_offset_s() : 0;

	clock_gettime(clk, &ts);
	return (uint64_t)((int64_t)ts.tv_sec + off) * 1000000 +
	       (uint64_t)ts.tv_nsec / 1000;
}

int64_t
queue_wall_ms(void)
{
	return (int64_t)(queue_clock_us(CLOCK_REALTIME) / 1000);
}

static uint32_t
queue_nchunks(size_t body_len)
{
	return (uint32_t)((body_len + QUEUE_CHUNK_BYTES - 1) /
			  QUEUE_CHUNK_BYTES);
}

/* Ids ----------------------------------------------------------------- */

uint64_t
queue_id_next(struct queue *q)
{
	uint64_t now = queue_clock_us(CLOCK_REALTIME) / 1000 << 20;
	uint64_t last = atomic_load(&q->last_id), next;

	/* Never below the last id, even when the clock steps back. */
	do {
		next = now > last ? now : last + 1;
	} while (!atomic_compare_exchange_weak(&q->last_id, &last, next));
	return next;
}

void
queue_id_format(uint64_t id, char out[QUEUE_ID_HEX_BYTES])
{
	if (snprintf(out, QUEUE_ID_HEX_BYTES, "%016" PRIx64, id) >=
	    QUEUE_ID_HEX_BYTES)
		out[0] = '\0'; /* cannot happen: 16 digits always fit */
}

int
queue_id_parse(const char *s, uint64_t *id)
{
	uint64_t v = 0;
	int i, d;

	for (i = 0; i < QUEUE_ID_HEX_BYTES - 1; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else if (s[i] >= 'A' && s[i] <= 'F')
			d = s[i] - 'A' + 10;
		else
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	if (s[i] != '\0')
		return -1;
	*id = v;
	return 0;
}

/* Ops ----------------------------------------------------------------- */

struct queue_op *
queue_op_new(enum queue_op_kind kind)
{
	struct queue_op *op;

	if ((op = calloc(1, sizeof(*op))) == NULL)
		return NULL;
	op->kind = kind;
	return op;
}

void
queue_sealed_free(struct queue_op *op)
{
	struct queue_sealed *s = op->sealed;

	if (s == NULL)
		return;
	free(s->buf);
	free(s);
	op->sealed = NULL;
}

void
queue_op_free(struct queue_op *op)
{
	if (op == NULL)
		return;
	queue_envelope_clear(&op->env);
	free(op->body);
	free(op->tail);
	queue_sealed_free(op);
	free(op);
}

uint32_t
queue_op_pieces(const struct queue_op *op)
{
	if (op->kind == QOP_SPOOL_PUT)
		return 1;
	if (op->kind != QOP_INSERT)
		return 0;
	if (op->spooled > 0)
		return 1 + queue_nchunks(op->tail_len);
	return queue_nchunks(op->body_len);
}

void
queue_op_piece(const struct queue_op *op, uint32_t j, uint32_t *idx,
	       const uint8_t **p, size_t *n)
{
	const uint8_t *src = op->body;
	size_t len = op->body_len, off;

	if (op->kind == QOP_SPOOL_PUT) {
		*idx = op->spool_chunk;
		*p = op->body;
		*n = op->body_len;
		return;
	}
	*idx = j;
	if (op->spooled > 0) {
		if (j == 0) {
			*p = op->body;
			*n = op->body_len;
			return;
		}
		/* After chunk 0 and the spooled ones: the tail. */
		*idx = op->spooled + j;
		j--;
		src = op->tail;
		len = op->tail_len;
	}
	off = (size_t)j * QUEUE_CHUNK_BYTES;
	*p = src + off;
	*n = len - off < QUEUE_CHUNK_BYTES ? len - off : QUEUE_CHUNK_BYTES;
}

/* An insert's size and chunk count, which are the queue's to set (they
 * describe the body it is given), or a spooled chunk's checks.  0, or -1
 * with op->err. */
static int
queue_op_sizes(struct queue_op *op)
{
	uint64_t size = op->body_len;

	if (op->kind == QOP_SPOOL_PUT) {
		if (op->body_len == 0 || op->body_len > QUEUE_CHUNK_MAX_BYTES ||
		    op->spool_chunk == 0) {
			(void)snprintf(op->err, sizeof(op->err),
				       "spooled chunk of %zu bytes",
				       op->body_len);
			return -1;
		}
		return 0;
	}
	if (op->spooled > 0) {
		if (op->body_len == 0 || op->body_len > QUEUE_CHUNK_MAX_BYTES) {
			(void)snprintf(op->err, sizeof(op->err),
				       "first chunk of %zu bytes",
				       op->body_len);
			return -1;
		}
		size += op->spooled_bytes + op->tail_len;
	}
	if (op->body_len > (size_t)UINT32_MAX * QUEUE_CHUNK_BYTES ||
	    op->tail_len > (size_t)UINT32_MAX / 2 * QUEUE_CHUNK_BYTES ||
	    op->spooled > UINT32_MAX / 2) {
		(void)snprintf(op->err, sizeof(op->err), "body too large");
		return -1;
	}
	op->env.nchunks = queue_op_pieces(op) + op->spooled;
	op->env.size = size;
	return 0;
}

/*
 * Seal the envelope (and, for an insert, every body chunk it writes) into
 * one buffer; a QOP_SPOOL_PUT seals its one chunk (no envelope).
 */
int
queue_op_seal(struct queue *q, struct queue_op *op)
{
	struct queue_sealed *s = NULL;
	uint8_t *plain = NULL, k[QUEUE_BODY_KEY_BYTES], *p;
	const uint8_t *src;
	size_t plen = 0, total, n;
	uint32_t i, idx;
	char why[128];

	/* A suppression entry holds no clear data: not sealed (queue.h). */
	if (op->sealed != NULL || op->kind == QOP_DELETE ||
	    op->kind == QOP_RESCHED || op->kind == QOP_SUPPRESS_PUT ||
	    op->kind == QOP_SUPPRESS_DEL || op->kind == QOP_SPOOL_DEL)
		return 0;
	if (op->kind == QOP_STATE_PUT || op->kind == QOP_STATE_DEL)
		return state_op_seal(q, op);
	if (op->kind == QOP_SEEN_PUT || op->kind == QOP_SEEN_SWEEP)
		return 0; /* keyed hashes and days: nothing to seal */
	if ((op->kind == QOP_INSERT || op->kind == QOP_SPOOL_PUT) &&
	    queue_op_sizes(op) != 0)
		goto fail;
	if (op->kind != QOP_SPOOL_PUT &&
	    record_envelope_encode(&op->env, &plain, &plen, why, sizeof(why)) !=
		0) {
		(void)snprintf(op->err, sizeof(op->err), "envelope: %s", why);
		goto fail;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		(void)snprintf(op->err, sizeof(op->err),
			       "out of memory sealing");
		goto fail;
	}
	s->env_len = op->kind == QOP_SPOOL_PUT ? 0 : crypt_sealed_len(plen);
	total = s->env_len;
	s->nchunks = queue_op_pieces(op);
	/* A spool chunk is sealed here so that its plaintext can go at once
	 * (smtp_spool.c); an insert's body stays with its op until it is
	 * queued, so the writer seals it where it will lie. */
	s->at_put = op->kind == QOP_INSERT;
	for (i = 0; i < s->nchunks; i++) {
		queue_op_piece(op, i, &idx, &src, &n);
		if (!s->at_put)
			total += crypt_sealed_len(n);
		s->body_len += n;
	}
	if ((s->buf = malloc(total)) == NULL) {
		(void)snprintf(op->err, sizeof(op->err),
			       "out of memory sealing");
		goto fail;
	}
	queue_env_key(k, op->env.id);
	if (op->kind != QOP_SPOOL_PUT &&
	    crypt_seal(q->key, CRYPT_DB_ENV, k, QUEUE_ENV_KEY_BYTES, plain,
		       plen, s->buf, why, sizeof(why)) != 0) {
		(void)snprintf(op->err, sizeof(op->err), "seal: %s", why);
		goto fail;
	}
	p = s->buf + s->env_len;
	for (i = 0; i < s->nchunks && !s->at_put; i++) {
		queue_op_piece(op, i, &idx, &src, &n);
		queue_body_key(k, op->env.id, idx);
		if (crypt_seal(q->key, CRYPT_DB_BODY, k, QUEUE_BODY_KEY_BYTES,
			       src, n, p, why, sizeof(why)) != 0) {
			(void)snprintf(op->err, sizeof(op->err), "seal: %s",
				       why);
			goto fail;
		}
		p += crypt_sealed_len(n);
	}
	if (plain != NULL) {
		sodium_memzero(plain, plen);
		free(plain);
	}
	op->sealed = s;
	return 0;
fail:
	if (plain != NULL) {
		sodium_memzero(plain, plen);
		free(plain);
	}
	if (s != NULL) {
		free(s->buf);
		free(s);
	}
	return -1;
}

void
queue_commit_hook(struct queue *q, queue_commit_fn *fn)
{
	q->commit_hook = fn;
}

void
queue_done_hook(struct queue *q, queue_dones_fn *fn)
{
	q->done_hook = fn;
}

void
queue_stats_get(struct queue *q, struct queue_stats *st)
{
	pthread_mutex_lock(&q->stats_mu);
	*st = q->stats;
	pthread_mutex_unlock(&q->stats_mu);
}

/* Open and close ------------------------------------------------------ */

static int
queue_meta_u32_get(MDB_txn *txn, MDB_dbi db, const char *name, uint32_t *v,
		   bool *found)
{
	MDB_val key = { strlen(name), (void *)name }, val;
	int rc;

	*found = false;
	if ((rc = mdb_get(txn, db, &key, &val)) == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (val.mv_size != 4)
		return MDB_CORRUPTED;
	*v = record_be32_get(val.mv_data);
	*found = true;
	return 0;
}

static int
queue_meta_u32_put(MDB_txn *txn, MDB_dbi db, const char *name, uint32_t v)
{
	uint8_t buf[4];
	MDB_val key = { strlen(name), (void *)name }, val = { 4, buf };

	record_be32_put(buf, v);
	return mdb_put(txn, db, &key, &val, 0);
}

/*
 * The format version and key id in "meta": a newer format or another key is
 * refused; a new environment gets both.  0 ok, -1 with err set.
 */
static int
queue_meta_check(struct queue *q, MDB_txn *txn, char *err, size_t errlen)
{
	uint32_t version = 0, key_id = 0, ours = crypt_key_id(q->key);
	bool found_version, found_key;
	int rc;

	if ((rc = queue_meta_u32_get(txn, q->db_meta, QUEUE_META_VERSION,
				     &version, &found_version)) != 0 ||
	    (rc = queue_meta_u32_get(txn, q->db_meta, QUEUE_META_KEY_ID,
				     &key_id, &found_key)) != 0) {
		(void)snprintf(err, errlen, "%s: reading meta: %s", q->path,
			       mdb_strerror(rc));
		return -1;
	}
	if (found_version && version > QUEUE_FORMAT_VERSION) {
		(void)snprintf(
		    err, errlen,
		    "%s: queue format version %" PRIu32
		    " is newer than this Outpost supports (%d); refusing to "
		    "open it",
		    q->path, version, QUEUE_FORMAT_VERSION);
		return -1;
	}
	if (found_key && key_id != ours) {
		(void)snprintf(err, errlen,
			       "%s: queue sealed with key id %08" PRIx32
			       ", but the key file holds key id %08" PRIx32
			       " (wrong key file?)",
			       q->path, key_id, ours);
		return -1;
	}
	if (found_version && found_key)
		return 0;
	if ((!found_version &&
	     (rc = queue_meta_u32_put(txn, q->db_meta, QUEUE_META_VERSION,
				      QUEUE_FORMAT_VERSION)) != 0) ||
	    (!found_key &&
	     (rc = queue_meta_u32_put(txn, q->db_meta, QUEUE_META_KEY_ID,
				      ours)) != 0)) {
		(void)snprintf(err, errlen, "%s: writing meta: %s", q->path,
			       mdb_strerror(rc));
		return -1;
	}
	return 0;
}

/*
 * Open (or, read-write, create) the databases, check "meta", and find the
 * highest id so that new ids are above it.  0 ok, -1 with err set.
 */
static int
queue_dbs_open(struct queue *q, char *err, size_t errlen)
{
	unsigned dbflags = MDB_CREATE;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	const char *what = "mdb_txn_begin";
	int rc;

	if ((rc = mdb_txn_begin(q->env, NULL, 0, &txn)) != 0)
		goto fail;
	what = "opening the databases";
	if ((rc = mdb_dbi_open(txn, "meta", dbflags, &q->db_meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "env", dbflags, &q->db_env)) != 0 ||
	    (rc = mdb_dbi_open(txn, "body", dbflags, &q->db_body)) != 0 ||
	    (rc = mdb_dbi_open(txn, "sched", dbflags, &q->db_sched)) != 0 ||
	    (rc = mdb_dbi_open(txn, "state", dbflags, &q->db_state)) != 0 ||
	    (rc = mdb_dbi_open(txn, "suppress", dbflags, &q->db_suppress)) !=
		0 ||
	    (rc = mdb_dbi_open(txn, "seen", dbflags, &q->db_seen)) != 0 ||
	    (rc = mdb_dbi_open(txn, "spool", dbflags, &q->db_spool)) != 0)
		goto fail;
	if (queue_meta_check(q, txn, err, errlen) != 0) {
		rc = 0; /* err is set */
		goto fail;
	}
	what = "reading env";
	if ((rc = mdb_cursor_open(txn, q->db_env, &cur)) != 0)
		goto fail;
	rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
	if (rc == 0 && key.mv_size == QUEUE_ENV_KEY_BYTES)
		atomic_store(&q->last_id, record_be64_get(key.mv_data));
	else if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	mdb_cursor_close(cur);
	cur = NULL;
	/* Commit (read-only too) so the handles outlive this transaction. */
	what = "mdb_txn_commit";
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		goto fail;
	/* Bodies that were arriving when the last process stopped: no 250
	 * was given for them, no envelope names their chunks. */
	what = "sweeping spooled bodies";
	if ((rc = spool_sweep(q)) != 0)
		goto fail;
	return 0;
fail:
	if (rc == MDB_NOTFOUND)
		(void)snprintf(err, errlen,
			       "%s: not an Outpost queue (has outpostd run?)",
			       q->path);
	else if (rc != 0)
		(void)snprintf(err, errlen, "%s: %s: %s", q->path, what,
			       mdb_strerror(rc));
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	return -1;
}

static void
queue_free(struct queue *q)
{
	if (q->env != NULL) {
		queue_txn_read_drop(q);
		mdb_env_close(q->env);
	}
	crypt_key_free(q->key);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->stats_mu);
	pthread_mutex_destroy(&q->txn_mu);
	pthread_mutex_destroy(&q->headroom_mu);
	pthread_cond_destroy(&q->headroom_cv);
	free(q->path);
	free(q);
}

/* A closed queue: settings and locks, nothing opened yet.  NULL: no memory. */
static struct queue *
queue_new(const struct queue_config *cfg)
{
	struct queue *q;
	pthread_condattr_t ca;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->path = strdup(cfg->path)) == NULL) {
		free(q);
		return NULL;
	}
	q->map_fd = -1;
	q->commit_interval_us = cfg->commit_interval_us;
	q->prepare_wait_us = cfg->prepare_wait_us;
	q->lazy_wait_us =
	    cfg->lazy_wait_us != 0 ? cfg->lazy_wait_us : QUEUE_LAZY_US;
	q->commit_max_batch = cfg->commit_max_batch != 0 ? cfg->commit_max_batch
							 : QUEUE_BATCH_DEFAULT;
	q->tailp = &q->head;
	pthread_mutex_init(&q->mu, NULL);
	pthread_mutex_init(&q->stats_mu, NULL);
	pthread_mutex_init(&q->txn_mu, NULL);
	pthread_mutex_init(&q->headroom_mu, NULL);
	pthread_cond_init(&q->headroom_cv, NULL);
	/* The linger is timed on the monotonic clock: immune to clock steps. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);
	return q;
}

/* fsync the directory PATH SUFFIX ("" or "/.."). */
int
queue_dir_sync(const char *path, const char *suffix)
{
	char buf[PATH_MAX];
	int fd, rc;

	if (snprintf(buf, sizeof(buf), "%s%s", path, suffix) >=
	    (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* The LMDB environment and its databases.  0 ok, -1 with err set. */
static int
queue_env_open(struct queue *q, uint64_t map_size, char *err, size_t errlen)
{
	int rc;

	if ((rc = mdb_env_create(&q->env)) != 0) {
		q->env = NULL;
		goto fail;
	}
	if ((rc = mdb_env_set_maxdbs(q->env, QUEUE_MAXDBS)) != 0 ||
	    (rc = mdb_env_set_maxreaders(q->env, QUEUE_MAXREADERS)) != 0)
		goto fail;
	if (map_size != 0 &&
	    (rc = mdb_env_set_mapsize(q->env, (size_t)map_size)) != 0)
		goto fail;
	/* MDB_NORDAHEAD: no read-ahead nor fault-around in the map, so that
	 * only pages really touched are mapped (see writer_trim). */
	if ((rc = mdb_env_open(q->env, q->path, MDB_NOTLS | MDB_NORDAHEAD,
			       0600)) != 0)
		goto fail;
	/* LMDB syncs its files, not the directories naming them. */
	if (queue_dir_sync(q->path, "") != 0 ||
	    queue_dir_sync(q->path, "/..") != 0) {
		rc = errno;
		goto fail;
	}
	return queue_dbs_open(q, err, errlen);
fail:
	(void)snprintf(err, errlen, "%s: %s", q->path, mdb_strerror(rc));
	return -1;
}

int
queue_open(struct queue **qp, const struct queue_config *cfg, char *err,
	   size_t errlen)
{
	struct queue *q = NULL;
	uint8_t raw[QUEUE_KEY_BYTES];
	mode_t old = umask(077); /* every file and directory made: 0600/0700 */
	int rc;

	*qp = NULL;
	if (cfg->path == NULL || *cfg->path == '\0') {
		(void)snprintf(err, errlen, "no queue path configured");
		goto fail;
	}
	if ((q = queue_new(cfg)) == NULL) {
		(void)snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (crypt_dir_make(q->path, err, errlen) != 0)
		goto fail;
	rc = queue_keyfile_load(cfg->key_file, true, raw, err, errlen);
	if (rc == 0)
		rc = crypt_key_new(&q->key, raw, err, errlen);
	sodium_memzero(raw, sizeof(raw));
	if (rc != 0 || queue_env_open(q, cfg->map_size, err, errlen) != 0)
		goto fail;
	if (writer_start(q, err, errlen) != 0)
		goto fail;
	umask(old);
	*qp = q;
	return 0;
fail:
	if (q != NULL)
		queue_free(q);
	umask(old);
	return -1;
}

void
queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	writer_stop(q);
	queue_free(q);
}

/* Readers ------------------------------------------------------------- */

/*
 * Before a read transaction: what earlier reads mapped leaves our page
 * tables, at most every QUEUE_READ_TRIM_US for the whole process.  On a
 * kernel that maps a whole page-cache folio per fault (6.18: up to 2 MiB),
 * each B-tree page a reader touches right after a commit wrote it maps
 * the megabytes written around it; left to the writer's trim (every
 * 100 ms), a 100 KB relay's readers kept 10-40 MB of the file mapped.
 * One trim unmaps the file for every thread (and interrupts each CPU that
 * runs one of them to flush its TLB), so the readers take turns: with a
 * clock per thread, N delivery loops trimmed N times as often, and each
 * trim made the others fault their pages in again.
 */
#define QUEUE_READ_TRIM_US 2000
void
queue_read_trim(const struct queue *q)
{
	/* The clock is the queue's, shared by its readers: not its state. */
	_Atomic uint64_t *clock = &((struct queue *)q)->read_trim_us;
	struct timespec ts;
	uint64_t now, last;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	last = atomic_load_explicit(clock, memory_order_relaxed);
	if (now - last < QUEUE_READ_TRIM_US ||
	    !atomic_compare_exchange_strong_explicit(
		clock, &last, now, memory_order_relaxed, memory_order_relaxed))
		return;
	queue_map_trim(q);
}

int
queue_plain_reserve(struct queue_plain *b, size_t n)
{
	uint8_t *np;

	if (n <= b->cap)
		return 0;
	if ((np = malloc(n)) == NULL)
		return -1;
	if (b->p != NULL) {
		sodium_memzero(b->p, b->cap);
		free(b->p);
	}
	b->p = np;
	b->cap = n;
	return 0;
}

void
queue_plain_free(struct queue_plain *b)
{
	if (b->p != NULL) {
		sodium_memzero(b->p, b->cap);
		free(b->p);
	}
	b->p = NULL;
	b->cap = 0;
}

/* Open and decode one "env" value; errors read "record ID: why".  0, -1
 * (out of memory), or QUEUE_CORRUPT. */
static int
queue_env_decode(struct queue *q, const MDB_val *key, const MDB_val *val,
		 struct queue_plain *buf, struct queue_envelope *env, char *err,
		 size_t errlen)
{
	char qid[QUEUE_ID_HEX_BYTES], why[128];
	uint64_t id;
	size_t plen;

	memset(env, 0, sizeof(*env));
	if (key->mv_size != QUEUE_ENV_KEY_BYTES) {
		(void)snprintf(err, errlen, "%s: env key of %zu bytes", q->path,
			       key->mv_size);
		return QUEUE_CORRUPT;
	}
	id = record_be64_get(key->mv_data);
	/* The hex id is formatted for error messages only: doing it for
	 * every record cost 7% of a walk over a big queue. */
	if (val->mv_size < CRYPT_OVERHEAD_BYTES) {
		queue_id_format(id, qid);
		(void)snprintf(err, errlen, "record %s: truncated (%zu bytes)",
			       qid, val->mv_size);
		return QUEUE_CORRUPT;
	}
	if (queue_plain_reserve(buf, val->mv_size - CRYPT_OVERHEAD_BYTES) !=
	    0) {
		queue_id_format(id, qid);
		(void)snprintf(err, errlen, "record %s: out of memory", qid);
		return -1;
	}
	if (crypt_open(q->key, CRYPT_DB_ENV, key->mv_data, key->mv_size,
		       val->mv_data, val->mv_size, buf->p, &plen, why,
		       sizeof(why)) != 0 ||
	    record_envelope_decode(buf->p, plen, env, why, sizeof(why)) != 0) {
		queue_id_format(id, qid);
		(void)snprintf(err, errlen, "record %s: %s", qid, why);
		return QUEUE_CORRUPT;
	}
	if (env->id != id) {
		queue_id_format(id, qid);
		(void)snprintf(err, errlen, "record %s: holds id %016" PRIx64,
			       qid, env->id);
		queue_envelope_clear(env);
		return QUEUE_CORRUPT;
	}
	return 0;
}

int
queue_walk(struct queue *q, queue_walk_fn *fn, void *arg, char *err,
	   size_t errlen)
{
	return queue_walk_range(q, 0, UINT64_MAX, fn, arg, err, errlen);
}

/* One read transaction from the first key >= FIRST while the id is <= LAST:
 * several threads can each walk a slice of "env" (queue summary). */
int
queue_walk_range(struct queue *q, uint64_t first, uint64_t last,
		 queue_walk_fn *fn, void *arg, char *err, size_t errlen)
{
	return queue_walk_checked(q, first, last, fn, NULL, arg, err, errlen);
}

int
queue_walk_checked(struct queue *q, uint64_t first, uint64_t last,
		   queue_walk_fn *fn, queue_bad_fn *bad, void *arg, char *err,
		   size_t errlen)
{
	struct queue_plain buf = { 0 };
	struct queue_envelope env;
	uint8_t k[QUEUE_ENV_KEY_BYTES];
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	MDB_cursor_op how = MDB_SET_RANGE;
	size_t n = 0;
	int rc, ret = -1;

	if (first > last)
		return 0;
	if (queue_txn_read(q, &txn, err, errlen) != 0)
		return -1;
	if ((rc = mdb_cursor_open(txn, q->db_env, &cur)) != 0) {
		(void)snprintf(err, errlen, "%s: cursor: %s", q->path,
			       mdb_strerror(rc));
		goto done;
	}
	queue_env_key(k, first);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	for (;; how = MDB_NEXT) {
		if (++n % QUEUE_WALK_TRIM_EVERY == 0)
			queue_map_trim(q);
		if ((rc = mdb_cursor_get(cur, &key, &val, how)) ==
		    MDB_NOTFOUND) {
			ret = 0;
			break;
		}
		if (rc != 0) {
			(void)snprintf(err, errlen, "%s: reading env: %s",
				       q->path, mdb_strerror(rc));
			break;
		}
		if (key.mv_size == QUEUE_ENV_KEY_BYTES &&
		    record_be64_get(key.mv_data) > last) {
			ret = 0;
			break;
		}
		if (queue_env_decode(q, &key, &val, &buf, &env, err, errlen) !=
		    0) {
			if (bad == NULL || key.mv_size != QUEUE_ENV_KEY_BYTES)
				break;
			if ((rc = bad(record_be64_get(key.mv_data), err,
				      arg)) != 0) {
				ret = rc;
				break;
			}
			continue;
		}
		rc = fn(&env, arg);
		queue_envelope_clear(&env);
		if (rc != 0) {
			ret = rc;
			break;
		}
	}
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	queue_txn_read_end(q, txn);
	queue_plain_free(&buf);
	if (n >= QUEUE_WALK_TRIM_EVERY)
		queue_map_trim(q);
	return ret;
}

/* queue_walk_skip()'s hold on the caller's callback and its count. */
struct queue_skip {
	queue_walk_fn *fn;
	void *arg;
	uint64_t *nskipped;
};

static int
queue_skip_fn(const struct queue_envelope *env, void *arg)
{
	struct queue_skip *w = arg;

	return w->fn(env, w->arg);
}

static int
queue_skip_bad(uint64_t id, const char *why, void *arg)
{
	struct queue_skip *w = arg;

	(void)id;
	(void)why;
	(*w->nskipped)++;
	return 0;
}

/* queue_walk_checked() with damaged records counted and passed over. */
int
queue_walk_skip(struct queue *q, queue_walk_fn *fn, void *arg,
		uint64_t *nskipped, char *err, size_t errlen)
{
	struct queue_skip w = { fn, arg, nskipped };

	*nskipped = 0;
	return queue_walk_checked(q, 0, UINT64_MAX, queue_skip_fn,
				  queue_skip_bad, &w, err, errlen);
}

/* The first entry of the walk at POS: the first of the index, or the one
 * after POS (which may be gone by now: the next one then). */
static int
queue_sched_seek(MDB_cursor *cur, const struct queue_sched_pos *pos,
		 MDB_val *key, MDB_val *val)
{
	uint8_t k[QUEUE_SCHED_KEY_BYTES];
	int rc;

	if (!pos->started)
		return mdb_cursor_get(cur, key, val, MDB_FIRST);
	record_be64_put(k, (uint64_t)pos->due_ms);
	record_be64_put(k + 8, pos->id);
	key->mv_size = sizeof(k);
	key->mv_data = k;
	if ((rc = mdb_cursor_get(cur, key, val, MDB_SET_RANGE)) != 0)
		return rc;
	if (key->mv_size == sizeof(k) &&
	    memcmp(key->mv_data, k, sizeof(k)) == 0)
		return mdb_cursor_get(cur, key, val, MDB_NEXT);
	return 0;
}

int
queue_sched_walk_batch(struct queue *q, struct queue_sched_pos *pos, size_t max,
		       queue_sched_fn *fn, void *arg, char *err, size_t errlen)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	const uint8_t *k;
	size_t n = 0;
	int rc, ret = -1;

	if (pos->done)
		return 0;
	if (queue_txn_read(q, &txn, err, errlen) != 0)
		return -1;
	if ((rc = mdb_cursor_open(txn, q->db_sched, &cur)) != 0) {
		(void)snprintf(err, errlen, "%s: cursor: %s", q->path,
			       mdb_strerror(rc));
		goto done;
	}
	for (rc = queue_sched_seek(cur, pos, &key, &val); n < max;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (rc == MDB_NOTFOUND) {
			pos->done = true;
			break;
		}
		if (rc != 0) {
			(void)snprintf(err, errlen, "%s: reading sched: %s",
				       q->path, mdb_strerror(rc));
			goto done;
		}
		if (key.mv_size != QUEUE_SCHED_KEY_BYTES) {
			(void)snprintf(err, errlen,
				       "%s: sched key of %zu bytes", q->path,
				       key.mv_size);
			goto done;
		}
		k = key.mv_data;
		pos->due_ms = (int64_t)record_be64_get(k);
		pos->id = record_be64_get(k + 8);
		pos->started = true;
		if (++n % QUEUE_WALK_TRIM_EVERY == 0)
			queue_map_trim(q);
		rc = fn(pos->due_ms, pos->id,
			val.mv_size >= 1 && ((const uint8_t *)val.mv_data)[0]
			    ? QUEUE_F_HELD
			    : 0,
			arg);
		if (rc != 0) {
			ret = rc;
			goto done;
		}
	}
	ret = 0;
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	queue_txn_read_end(q, txn);
	if (n >= QUEUE_WALK_TRIM_EVERY)
		queue_map_trim(q);
	return ret;
}

int
queue_sched_walk(struct queue *q, queue_sched_fn *fn, void *arg, char *err,
		 size_t errlen)
{
	struct queue_sched_pos pos = { 0, 0, false, false };

	return queue_sched_walk_batch(q, &pos, SIZE_MAX, fn, arg, err, errlen);
}

/* Look up and decode the envelope of ID in TXN: 0, 1 not found, -1, or
 * QUEUE_CORRUPT. */
static int
queue_env_get(struct queue *q, MDB_txn *txn, uint64_t id,
	      struct queue_plain *buf, struct queue_envelope *env, char *err,
	      size_t errlen)
{
	uint8_t k[QUEUE_ENV_KEY_BYTES];
	MDB_val key = { sizeof(k), k }, val;
	int rc;

	memset(env, 0, sizeof(*env));
	queue_env_key(k, id);
	if ((rc = mdb_get(txn, q->db_env, &key, &val)) == MDB_NOTFOUND)
		return 1;
	if (rc != 0) {
		(void)snprintf(err, errlen, "%s: reading env: %s", q->path,
			       mdb_strerror(rc));
		return -1;
	}
	return queue_env_decode(q, &key, &val, buf, env, err, errlen);
}

int
queue_envelope_get(struct queue *q, uint64_t id, struct queue_envelope *env,
		   char *err, size_t errlen)
{
	struct queue_plain buf = { 0 };
	MDB_txn *txn;
	int rc;

	memset(env, 0, sizeof(*env));
	if (queue_txn_read(q, &txn, err, errlen) != 0)
		return -1;
	rc = queue_env_get(q, txn, id, &buf, env, err, errlen);
	queue_txn_read_end(q, txn);
	queue_plain_free(&buf);
	return rc;
}

/* Check that KEY is chunk I and decrypt it into BUF.  0, or -1 (out of
 * memory) or QUEUE_CORRUPT with err. */
int
queue_chunk_open(struct queue *q, const MDB_val *key, const MDB_val *val,
		 uint32_t i, struct queue_plain *buf, size_t *plen, char *err,
		 size_t errlen)
{
	char qid[QUEUE_ID_HEX_BYTES], why[128];

	queue_id_format(record_be64_get(key->mv_data), qid);
	if (record_be32_get((const uint8_t *)key->mv_data + 8) != i) {
		(void)snprintf(err, errlen,
			       "record %s: body chunk %" PRIu32 " missing", qid,
			       i);
		return QUEUE_CORRUPT;
	}
	if (val->mv_size < CRYPT_OVERHEAD_BYTES) {
		(void)snprintf(err, errlen,
			       "record %s: body chunk %" PRIu32 ": truncated",
			       qid, i);
		return QUEUE_CORRUPT;
	}
	if (queue_plain_reserve(buf, val->mv_size - CRYPT_OVERHEAD_BYTES) !=
	    0) {
		(void)snprintf(
		    err, errlen,
		    "record %s: body chunk %" PRIu32 ": out of memory", qid, i);
		return -1;
	}
	if (crypt_open(q->key, CRYPT_DB_BODY, key->mv_data, key->mv_size,
		       val->mv_data, val->mv_size, buf->p, plen, why,
		       sizeof(why)) != 0) {
		(void)snprintf(err, errlen,
			       "record %s: body chunk %" PRIu32 ": %s", qid, i,
			       why);
		return QUEUE_CORRUPT;
	}
	return 0;
}

/*
 * The body chunk by chunk.  The envelope is read first (in the same
 * transaction) so that a missing message is "not found" even when its body
 * is empty, and a body with missing or extra chunks is an error.
 */
int
queue_body_read(struct queue *q, uint64_t id, queue_chunk_fn *fn, void *arg,
		char *err, size_t errlen)
{
	struct queue_plain buf = { 0 };
	struct queue_envelope env;
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	char qid[QUEUE_ID_HEX_BYTES];
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	uint64_t total = 0;
	uint32_t i = 0;
	size_t plen;
	int rc, ret = -1;

	queue_id_format(id, qid);
	if (queue_txn_read(q, &txn, err, errlen) != 0)
		return -1;
	if ((ret = queue_env_get(q, txn, id, &buf, &env, err, errlen)) != 0)
		goto done;
	ret = -1;
	if ((rc = mdb_cursor_open(txn, q->db_body, &cur)) != 0) {
		(void)snprintf(err, errlen, "%s: cursor: %s", q->path,
			       mdb_strerror(rc));
		goto done;
	}
	queue_body_key(k, id, 0);
	key.mv_data = k;
	key.mv_size = sizeof(k);
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), i++) {
		if (key.mv_size != sizeof(k) || memcmp(key.mv_data, k, 8) != 0)
			break;
		if ((ret = queue_chunk_open(q, &key, &val, i, &buf, &plen, err,
					    errlen)) != 0)
			goto done;
		ret = -1;
		total += plen;
		if (fn(buf.p, plen, arg) != 0) {
			ret = 0; /* stopped by the caller */
			goto done;
		}
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		(void)snprintf(err, errlen, "%s: reading body: %s", q->path,
			       mdb_strerror(rc));
		goto done;
	}
	if (i != env.nchunks || total != env.size) {
		(void)snprintf(
		    err, errlen,
		    "record %s: body has %" PRIu32 " chunks, %" PRIu64
		    " bytes; the envelope says %" PRIu32 ", %" PRIu64,
		    qid, i, total, env.nchunks, env.size);
		ret = QUEUE_CORRUPT;
		goto done;
	}
	ret = 0;
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	queue_txn_read_end(q, txn);
	queue_envelope_clear(&env);
	queue_plain_free(&buf);
	return ret;
}
