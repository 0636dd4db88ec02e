/*
 * point.c — restore points: the compacted copy of the environment, the walk
 * that opens every record of a copy, the manifest, listing and verifying.
 * Owns: the files point-NAME.{mdb,json} of a restore directory while it
 * writes them (a .tmp name until whole and synced; the manifest last).
 * Must not: write the queue key or anything unsealed; lock or change the
 * copy it walks (read-only, MDB_NOLOCK).
 * Threads: take on the restore thread (or a tool), never an I/O loop; list
 * and verify on any thread.
 */
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "queue/crypt_int.h"
#include "queue/point_int.h"
#include "queue/queue_int.h"

#define POINT_READ_BYTES (1u << 20) /* checksum reads */
#define POINT_NAME_TRIES 3          /* seconds to wait for a free name */

void
point_name_format(int64_t ms, char name[POINT_NAME_BYTES])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(name, POINT_NAME_BYTES, "%Y%m%dT%H%M%SZ", &tm) !=
		POINT_NAME_BYTES - 1)
		(void)snprintf(name, POINT_NAME_BYTES, "00000000T000000Z");
}

int
point_name_parse(const char *s, char out[POINT_NAME_BYTES])
{
	const char *slash = strrchr(s, '/'), *p;
	size_t i, plen = strlen(POINT_PREFIX);

	if (slash != NULL)
		s = slash + 1;
	if (strncmp(s, POINT_PREFIX, plen) == 0)
		s += plen;
	else if (slash != NULL)
		return -1;
	for (i = 0, p = s; i < POINT_NAME_BYTES - 1; i++, p++) {
		if (i == 8    ? *p != 'T'
		    : i == 15 ? *p != 'Z'
			      : (*p < '0' || *p > '9'))
			return -1;
	}
	if (*p != '\0' && strcmp(p, ".mdb") != 0 && strcmp(p, ".json") != 0)
		return -1;
	memcpy(out, s, POINT_NAME_BYTES - 1);
	out[POINT_NAME_BYTES - 1] = '\0';
	return 0;
}

int
point_path(char *buf, size_t len, const char *dir, const char *name,
	   const char *ext)
{
	if (snprintf(buf, len, "%s/" POINT_PREFIX "%s.%s", dir, name, ext) >=
	    (int)len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* The walk ---------------------------------------------------------------- */

/* One walk's read transaction, handles and plaintext buffer. */
struct point_walker {
	const struct crypt_key *k;
	MDB_txn *txn;
	MDB_dbi db_env, db_body, db_state, db_meta;
	struct queue_plain plain;
	void *map; /* the point's map, once located (point_walk_trim) */
	size_t map_len;
	size_t n;
	bool map_tried;
	char why[160];
};

/* Every QUEUE_WALK_TRIM_EVERY records, what the walk of the point mapped
 * leaves our page tables (queue_map_trim, for the point's own map): a
 * point is the whole queue, which its check would otherwise take into the
 * daemon's RSS until the environment closes.  AT: a value of the point. */
static void
point_walk_trim(struct point_walker *w, const void *at)
{
	if (!w->map_tried) {
		w->map_tried = true;
		if (queue_map_locate(at, &w->map, &w->map_len) != 0)
			w->map_len = 0;
	}
	if (++w->n % QUEUE_WALK_TRIM_EVERY == 0 && w->map_len > 0)
		queue_map_release(w->map, w->map_len);
}

/* Open the sealed VAL of DB under KEY into w->plain.  0, or -1 with
 * w->why set. */
static int
point_seal_open(struct point_walker *w, uint8_t db, const MDB_val *key,
		const MDB_val *val, size_t *plen)
{
	if (val->mv_size < CRYPT_OVERHEAD_BYTES) {
		(void)snprintf(w->why, sizeof(w->why), "truncated (%zu bytes)",
			       val->mv_size);
		return -1;
	}
	if (queue_plain_reserve(&w->plain,
				val->mv_size - CRYPT_OVERHEAD_BYTES) != 0) {
		(void)snprintf(w->why, sizeof(w->why), "out of memory");
		return -1;
	}
	return crypt_open(w->k, db, key->mv_data, key->mv_size, val->mv_data,
			  val->mv_size, w->plain.p, plen, w->why,
			  sizeof(w->why));
}

/* The body chunks of ENV, from BODY's cursor: each opens, in order, and
 * they add up to the envelope's size.  0, or -1 with w->why set. */
static int
point_body_walk(struct point_walker *w, MDB_cursor *body,
		const struct queue_envelope *env)
{
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	MDB_val key = { sizeof(k), k }, val;
	uint64_t total = 0;
	uint32_t i;
	size_t plen;
	int rc;

	for (i = 0; i < env->nchunks; i++) {
		queue_body_key(k, env->id, i);
		key.mv_data = k;
		key.mv_size = sizeof(k);
		if ((rc = mdb_cursor_get(body, &key, &val, MDB_SET_KEY)) != 0) {
			(void)snprintf(w->why, sizeof(w->why),
				       "body chunk %" PRIu32 ": %s", i,
				       mdb_strerror(rc));
			return -1;
		}
		if (point_seal_open(w, CRYPT_DB_BODY, &key, &val, &plen) != 0)
			return -1;
		total += plen;
	}
	if (total != env->size) {
		(void)snprintf(w->why, sizeof(w->why),
			       "body of %" PRIu64 " bytes, the envelope says "
			       "%" PRIu64,
			       total, env->size);
		return -1;
	}
	return 0;
}

/* One "env" record: opens, decodes, holds its own id, has its body. */
static int
point_env_check(struct point_walker *w, MDB_cursor *body, const MDB_val *key,
		const MDB_val *val, struct queue_point_info *out,
		uint64_t *chunks)
{
	struct queue_envelope env;
	size_t plen;
	uint32_t i;
	int rc;

	memset(&env, 0, sizeof(env));
	if (key->mv_size != QUEUE_ENV_KEY_BYTES) {
		(void)snprintf(w->why, sizeof(w->why), "env key of %zu bytes",
			       key->mv_size);
		return -1;
	}
	if (point_seal_open(w, CRYPT_DB_ENV, key, val, &plen) != 0 ||
	    record_envelope_decode(w->plain.p, plen, &env, w->why,
				   sizeof(w->why)) != 0)
		return -1;
	rc = -1;
	if (env.id != record_be64_get(key->mv_data))
		(void)snprintf(w->why, sizeof(w->why), "holds id %016" PRIx64,
			       env.id);
	else if (point_body_walk(w, body, &env) == 0)
		rc = 0;
	if (rc == 0) {
		out->messages++;
		for (i = 0; i < env.nrcpts; i++)
			if (env.rcpts[i].state == QR_PENDING)
				out->recipients++;
		*chunks += env.nchunks;
	}
	queue_envelope_clear(&env);
	return rc;
}

/* The chunks under ID, whatever names them, added to *CHUNKS.  0, or the
 * LMDB error. */
static int
point_chunks_count(MDB_cursor *body, uint64_t id, uint64_t *chunks)
{
	uint8_t k[QUEUE_BODY_KEY_BYTES];
	MDB_val key = { sizeof(k), k }, val;
	MDB_cursor_op how = MDB_SET_RANGE;
	int rc;

	queue_body_key(k, id, 0);
	for (; (rc = mdb_cursor_get(body, &key, &val, how)) == 0;
	     how = MDB_NEXT) {
		if (key.mv_size != QUEUE_BODY_KEY_BYTES ||
		    record_be64_get(key.mv_data) != id)
			break;
		(*chunks)++;
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The chunks of bodies that were still arriving, or going (spool.c), added
 * to *CHUNKS: a point taken then holds them (the queue's next open sweeps
 * them).  They are counted, not read from the record: a delete in steps
 * leaves fewer than the record says.  0, or the LMDB error. */
static int
point_spooled(struct point_walker *w, MDB_cursor *body, uint64_t *chunks)
{
	MDB_dbi db;
	MDB_cursor *cur;
	MDB_val key, val;
	MDB_cursor_op how = MDB_FIRST;
	int rc;

	if ((rc = mdb_dbi_open(w->txn, "spool", 0, &db)) == MDB_NOTFOUND)
		return 0; /* made before spooling existed */
	if (rc != 0 || (rc = mdb_cursor_open(w->txn, db, &cur)) != 0)
		return rc;
	for (; (rc = mdb_cursor_get(cur, &key, &val, how)) == 0;
	     how = MDB_NEXT) {
		if (val.mv_size != 12 || key.mv_size != QUEUE_ENV_KEY_BYTES) {
			rc = MDB_CORRUPTED;
			break;
		}
		if ((rc = point_chunks_count(body, record_be64_get(key.mv_data),
					     chunks)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Every envelope and its body; then no body chunk may be left over. */
static int
point_envs_walk(struct point_walker *w, struct queue_point_info *out, char *err,
		size_t errlen)
{
	MDB_cursor *cur = NULL, *body = NULL;
	MDB_val key, val;
	MDB_stat st;
	MDB_cursor_op how = MDB_FIRST;
	uint64_t chunks = 0;
	char qid[QUEUE_ID_HEX_BYTES];
	int rc, ret = -1;

	if ((rc = mdb_cursor_open(w->txn, w->db_env, &cur)) != 0 ||
	    (rc = mdb_cursor_open(w->txn, w->db_body, &body)) != 0) {
		(void)snprintf(err, errlen, "cursor: %s", mdb_strerror(rc));
		goto done;
	}
	for (;; how = MDB_NEXT) {
		if ((rc = mdb_cursor_get(cur, &key, &val, how)) == MDB_NOTFOUND)
			break;
		if (rc != 0) {
			(void)snprintf(err, errlen, "reading env: %s",
				       mdb_strerror(rc));
			goto done;
		}
		point_walk_trim(w, val.mv_data);
		if (point_env_check(w, body, &key, &val, out, &chunks) != 0) {
			queue_id_format(key.mv_size == QUEUE_ENV_KEY_BYTES
					    ? record_be64_get(key.mv_data)
					    : 0,
					qid);
			(void)snprintf(err, errlen, "record %s: %s", qid,
				       w->why);
			goto done;
		}
	}
	if ((rc = point_spooled(w, body, &chunks)) != 0) {
		(void)snprintf(err, errlen, "spool: %s", mdb_strerror(rc));
		goto done;
	}
	if ((rc = mdb_stat(w->txn, w->db_body, &st)) != 0) {
		(void)snprintf(err, errlen, "body: %s", mdb_strerror(rc));
		goto done;
	}
	if (st.ms_entries != chunks) {
		(void)snprintf(err, errlen,
			       "%zu body chunks, the envelopes name %" PRIu64,
			       st.ms_entries, chunks);
		goto done;
	}
	ret = 0;
done:
	if (body != NULL)
		mdb_cursor_close(body);
	if (cur != NULL)
		mdb_cursor_close(cur);
	return ret;
}

/* Every "state" record opens. */
static int
point_states_walk(struct point_walker *w, char *err, size_t errlen)
{
	MDB_cursor *cur;
	MDB_val key, val;
	MDB_cursor_op how = MDB_FIRST;
	size_t plen;
	int rc, ret = -1;

	if ((rc = mdb_cursor_open(w->txn, w->db_state, &cur)) != 0) {
		(void)snprintf(err, errlen, "cursor: %s", mdb_strerror(rc));
		return -1;
	}
	for (;; how = MDB_NEXT) {
		if ((rc = mdb_cursor_get(cur, &key, &val, how)) ==
		    MDB_NOTFOUND) {
			ret = 0;
			break;
		}
		if (rc != 0) {
			(void)snprintf(err, errlen, "reading state: %s",
				       mdb_strerror(rc));
			break;
		}
		if (point_seal_open(w, CRYPT_DB_STATE, &key, &val, &plen) !=
		    0) {
			(void)snprintf(err, errlen, "state record: %s", w->why);
			break;
		}
	}
	mdb_cursor_close(cur);
	return ret;
}

/* "meta": a format this Outpost reads, sealed by W's key. */
static int
point_meta_check(struct point_walker *w, char *err, size_t errlen)
{
	static const char *const names[] = { QUEUE_META_VERSION,
					     QUEUE_META_KEY_ID };
	uint32_t v[2];
	MDB_val key, val;
	int i, rc;

	for (i = 0; i < 2; i++) {
		key.mv_size = strlen(names[i]);
		key.mv_data = (void *)names[i];
		if ((rc = mdb_get(w->txn, w->db_meta, &key, &val)) != 0 ||
		    val.mv_size != 4) {
			(void)snprintf(err, errlen, "meta %s: %s", names[i],
				       rc != 0 ? mdb_strerror(rc)
					       : "malformed");
			return -1;
		}
		v[i] = record_be32_get(val.mv_data);
	}
	if (v[0] > QUEUE_FORMAT_VERSION) {
		(void)snprintf(err, errlen,
			       "queue format version %" PRIu32
			       " is newer than this Outpost supports (%d)",
			       v[0], QUEUE_FORMAT_VERSION);
		return -1;
	}
	if (v[1] != crypt_key_id(w->k)) {
		(void)snprintf(err, errlen,
			       "sealed with key id %08" PRIx32
			       ", the key given has id %08" PRIx32,
			       v[1], crypt_key_id(w->k));
		return -1;
	}
	return 0;
}

/* The environment of the point file PATH, read-only and without a lock
 * file (nobody writes a point). */
static int
point_env_open(MDB_env **envp, const char *path, char *err, size_t errlen)
{
	int rc;

	if ((rc = mdb_env_create(envp)) != 0) {
		*envp = NULL;
		goto fail;
	}
	if ((rc = mdb_env_set_maxdbs(*envp, 8)) != 0 ||
	    (rc = mdb_env_open(
		 *envp, path,
		 MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600)) !=
		0)
		goto fail;
	return 0;
fail:
	(void)snprintf(err, errlen, "%s", mdb_strerror(rc));
	if (*envp != NULL)
		mdb_env_close(*envp);
	*envp = NULL;
	return -1;
}

/* The file must hold every page LMDB's meta names, or the map would fault
 * past its end. */
static int
point_env_whole(MDB_env *env, const char *path, char *err, size_t errlen)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat sb;

	if (stat(path, &sb) != 0 || mdb_env_info(env, &info) != 0 ||
	    mdb_env_stat(env, &st) != 0) {
		(void)snprintf(err, errlen, "cannot read its size");
		return -1;
	}
	if ((uint64_t)(info.me_last_pgno + 1) * st.ms_psize >
	    (uint64_t)sb.st_size) {
		(void)snprintf(err, errlen,
			       "%jd bytes, its pages need %" PRIu64
			       " (truncated?)",
			       (intmax_t)sb.st_size,
			       (uint64_t)(info.me_last_pgno + 1) * st.ms_psize);
		return -1;
	}
	return 0;
}

int
point_walk(const char *path, const struct crypt_key *k,
	   struct queue_point_info *out, char *err, size_t errlen)
{
	struct point_walker w = { .k = k };
	MDB_env *env = NULL;
	int rc, ret = -1;

	out->messages = out->recipients = 0;
	if (point_env_open(&env, path, err, errlen) != 0 ||
	    point_env_whole(env, path, err, errlen) != 0)
		goto done;
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &w.txn)) != 0) {
		(void)snprintf(err, errlen, "read transaction: %s",
			       mdb_strerror(rc));
		goto done;
	}
	if ((rc = mdb_dbi_open(w.txn, "meta", 0, &w.db_meta)) != 0 ||
	    (rc = mdb_dbi_open(w.txn, "env", 0, &w.db_env)) != 0 ||
	    (rc = mdb_dbi_open(w.txn, "body", 0, &w.db_body)) != 0 ||
	    (rc = mdb_dbi_open(w.txn, "state", 0, &w.db_state)) != 0) {
		(void)snprintf(err, errlen, "not an Outpost queue: %s",
			       mdb_strerror(rc));
		goto done;
	}
	if (point_meta_check(&w, err, errlen) == 0 &&
	    point_envs_walk(&w, out, err, errlen) == 0 &&
	    point_states_walk(&w, err, errlen) == 0 &&
	    suppress_db_check(w.txn, err, errlen) == 0)
		ret = 0;
done:
	if (w.txn != NULL)
		mdb_txn_abort(w.txn);
	if (env != NULL)
		mdb_env_close(env);
	queue_plain_free(&w.plain);
	return ret;
}

int
point_file_sum(const char *path, uint64_t *size, char sum[80], char *err,
	       size_t errlen)
{
	crypto_generichash_state st;
	uint8_t h[32], *buf = NULL;
	char hex[65];
	ssize_t n;
	int fd = -1, ret = -1;

	*size = 0;
	if ((buf = malloc(POINT_READ_BYTES)) == NULL) {
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		goto fail;
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	while ((n = read(fd, buf, POINT_READ_BYTES)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		crypto_generichash_update(&st, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	(void)snprintf(sum, 80, POINT_CHECKSUM_LABEL "%s", hex);
	ret = 0;
fail:
	if (ret != 0)
		(void)snprintf(err, errlen, "%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/* The manifest ------------------------------------------------------------ */

/* Write BUF (LEN bytes) to PATH.tmp, fsync, rename to PATH.  0, or -1
 * with errno. */
static int
point_file_put(const char *path, const char *buf, size_t len)
{
	char tmp[PATH_MAX];
	int fd, saved;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
	    0)
		return -1;
	if (crypt_write_all(fd, buf, len) != 0)
		goto fail;
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	errno = saved;
	return -1;
}

static int
point_manifest_write(const char *dir, const struct queue_point_info *pi,
		     char *err, size_t errlen)
{
	char path[PATH_MAX], buf[POINT_MANIFEST_MAX];
	int n;

	n = snprintf(buf, sizeof(buf),
		     "{\"version\":1,\"name\":\"%s\",\"time_ms\":%" PRId64
		     ",\"file\":\"" POINT_PREFIX "%s.mdb\",\"size\":%" PRIu64
		     ",\"messages\":%" PRIu64 ",\"recipients\":%" PRIu64
		     ",\"key_id\":\"%08" PRIx32 "\",\"checksum\":\"%s\","
		     "\"verified\":%s,\"duration_ms\":%" PRId64 "}\n",
		     pi->name, pi->time_ms, pi->name, pi->size, pi->messages,
		     pi->recipients, pi->key_id, pi->checksum,
		     pi->verified ? "true" : "false", pi->duration_ms);
	if (n < 0 || n >= (int)sizeof(buf) ||
	    point_path(path, sizeof(path), dir, pi->name, "json") != 0 ||
	    point_file_put(path, buf, (size_t)n) != 0) {
		(void)snprintf(err, errlen, "%s: manifest: %s", dir,
			       strerror(errno));
		return -1;
	}
	return 0;
}

/* A reader of the flat JSON object we write: string, integer and boolean
 * values, no escapes (none of ours needs one). */
struct point_json {
	const char *p, *end;
};

static void
point_json_ws(struct point_json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' ||
				 *j->p == '\t' || *j->p == '\r'))
		j->p++;
}

/* A string into OUT (< LEN bytes).  0, or -1. */
static int
point_json_str(struct point_json *j, char *out, size_t len)
{
	size_t n = 0;

	point_json_ws(j);
	if (j->p >= j->end || *j->p != '"')
		return -1;
	for (j->p++; j->p < j->end && *j->p != '"'; j->p++) {
		if (*j->p == '\\' || (unsigned char)*j->p < 0x20 ||
		    n + 1 >= len)
			return -1;
		out[n++] = *j->p;
	}
	if (j->p >= j->end)
		return -1;
	j->p++;
	out[n] = '\0';
	return 0;
}

/* A value: a string into S, or an integer or boolean into *V. */
static int
point_json_value(struct point_json *j, char *s, size_t slen, int64_t *v)
{
	const char *q;
	int neg = 0;

	point_json_ws(j);
	s[0] = '\0';
	*v = 0;
	if (j->p < j->end && *j->p == '"')
		return point_json_str(j, s, slen);
	if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
		j->p += 4;
		*v = 1;
		return 0;
	}
	if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
		j->p += 5;
		return 0;
	}
	if (j->p < j->end && *j->p == '-') {
		neg = 1;
		j->p++;
	}
	for (q = j->p; j->p < j->end && *j->p >= '0' && *j->p <= '9'; j->p++) {
		if (*v > (INT64_MAX - 9) / 10)
			return -1;
		*v = *v * 10 + (*j->p - '0');
	}
	if (j->p == q)
		return -1;
	if (neg)
		*v = -*v;
	return 0;
}

/* Which fields a manifest must have (a bit each). */
enum point_field {
	PF_VERSION = 1 << 0,
	PF_NAME = 1 << 1,
	PF_TIME = 1 << 2,
	PF_SIZE = 1 << 3,
	PF_MESSAGES = 1 << 4,
	PF_RCPTS = 1 << 5,
	PF_KEY = 1 << 6,
	PF_SUM = 1 << 7,
	PF_VERIFIED = 1 << 8,
	PF__ALL = (1 << 9) - 1,
};

/* The PF_* bit of the numeric member KEY (duration_ms is optional). */
static int
point_field_bit(const char *key)
{
	static const struct {
		const char *key;
		int bit;
	} bits[] = { { "time_ms", PF_TIME },
		     { "size", PF_SIZE },
		     { "messages", PF_MESSAGES },
		     { "recipients", PF_RCPTS },
		     { "verified", PF_VERIFIED } };
	size_t i;

	for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (strcmp(key, bits[i].key) == 0)
			return bits[i].bit;
	return 0;
}

/* Store one member KEY (S or V) into OUT; returns its PF_* bit, 0 for a
 * member we do not know, -1 for a value that does not fit. */
static int
point_manifest_member(const char *key, const char *s, int64_t v,
		      struct queue_point_info *out)
{
	char *end;
	unsigned long id;

	if (strcmp(key, "version") == 0)
		return v == 1 ? PF_VERSION : -1;
	if (strcmp(key, "name") == 0) {
		if (strlen(s) >= sizeof(out->name))
			return -1;
		memcpy(out->name, s, strlen(s) + 1);
		return PF_NAME;
	}
	if (strcmp(key, "key_id") == 0) {
		errno = 0;
		id = strtoul(s, &end, 16);
		if (strlen(s) != 8 || *end != '\0' || errno != 0)
			return -1;
		out->key_id = (uint32_t)id;
		return PF_KEY;
	}
	if (strcmp(key, "checksum") == 0) {
		if (strlen(s) >= sizeof(out->checksum))
			return -1;
		memcpy(out->checksum, s, strlen(s) + 1);
		return PF_SUM;
	}
	if (v < 0)
		return 0;
	if (strcmp(key, "time_ms") == 0)
		out->time_ms = v;
	else if (strcmp(key, "size") == 0)
		out->size = (uint64_t)v;
	else if (strcmp(key, "messages") == 0)
		out->messages = (uint64_t)v;
	else if (strcmp(key, "recipients") == 0)
		out->recipients = (uint64_t)v;
	else if (strcmp(key, "verified") == 0)
		out->verified = v != 0;
	else if (strcmp(key, "duration_ms") == 0)
		out->duration_ms = v;
	else
		return 0;
	return point_field_bit(key);
}

/* Parse the manifest text BUF (LEN bytes) into OUT.  0, or -1. */
static int
point_manifest_parse(const char *buf, size_t len, struct queue_point_info *out)
{
	struct point_json j = { buf, buf + len };
	char key[32], s[96];
	int64_t v;
	int seen = 0, bit;

	memset(out, 0, sizeof(*out));
	point_json_ws(&j);
	if (j.p >= j.end || *j.p++ != '{')
		return -1;
	for (;;) {
		if (point_json_str(&j, key, sizeof(key)) != 0)
			return -1;
		point_json_ws(&j);
		if (j.p >= j.end || *j.p++ != ':' ||
		    point_json_value(&j, s, sizeof(s), &v) != 0 ||
		    (bit = point_manifest_member(key, s, v, out)) < 0)
			return -1;
		seen |= bit;
		point_json_ws(&j);
		if (j.p < j.end && *j.p == ',') {
			j.p++;
			continue;
		}
		if (j.p < j.end && *j.p == '}')
			break;
		return -1;
	}
	return seen == PF__ALL ? 0 : -1;
}

int
point_manifest_read(const char *dir, const char *name,
		    struct queue_point_info *out, char *err, size_t errlen)
{
	char path[PATH_MAX], buf[POINT_MANIFEST_MAX];
	ssize_t n;
	int fd;

	if (point_path(path, sizeof(path), dir, name, "json") != 0 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		(void)snprintf(err, errlen, "point %s: no manifest: %s", name,
			       strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf) ||
	    point_manifest_parse(buf, (size_t)n, out) != 0 ||
	    strcmp(out->name, name) != 0) {
		(void)snprintf(err, errlen, "point %s: malformed manifest",
			       name);
		return -1;
	}
	return 0;
}

/* Taking ------------------------------------------------------------------ */

/* The point's pages leave the page cache: a point is cold once taken,
 * and the queue's own pages are worth more there. */
static void
point_cache_drop(const char *path)
{
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* Sleep until the next second of the clock NOW_MS belongs to. */
static void
point_next_second(int64_t now_ms)
{
	int64_t ms = 1000 - now_ms % 1000;
	struct timespec ts = { 0, (long)ms * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Name the point and create its .mdb.tmp: the name of this second, unless a
 * point (or one being written) has it already; then the next second's.
 * The fd, or -1 with err set.
 */
static int
point_file_create(const char *dir, struct queue_point_info *pi, char *tmp,
		  size_t tmplen, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int fd = -1, i;

	for (i = 0; i < POINT_NAME_TRIES; i++) {
		pi->time_ms = queue_wall_ms();
		point_name_format(pi->time_ms, pi->name);
		if (point_path(path, sizeof(path), dir, pi->name, "mdb") != 0 ||
		    point_path(tmp, tmplen, dir, pi->name, "mdb.tmp") != 0)
			break;
		if (access(path, F_OK) == 0)
			errno = EEXIST; /* taken this second already */
		else if ((fd =
			      open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				   0600)) >= 0)
			return fd;
		if (errno != EEXIST)
			break;
		point_next_second(pi->time_ms);
	}
	(void)snprintf(err, errlen, "%s: cannot create a point file: %s", dir,
		       strerror(errno));
	return -1;
}

/*
 * The headroom (headroom.c) of a point: before its read transaction pins a
 * snapshot, the data file gets written blocks for what the queue will grow
 * until the copy's first top-up (between its windows, point_copy.c), judged
 * by how fast it grew during the last point: POINT_HEADROOM_AHEAD_S of
 * that, within POINT_HEADROOM_MIN and POINT_HEADROOM_MAX.  Every zero is
 * overwritten by LMDB later: the file only grows earlier, not more.  A
 * failure to write it costs speed only (a full disk fails the queue's own
 * commits first), so it is not an error of the point.
 */
struct point_headroom {
	uint64_t start;    /* the end of LMDB's data when the point began */
	uint64_t start_us; /* monotonic */
};

static void
point_headroom_before(struct queue *q, struct point_headroom *h)
{
	if (q->headroom_want < POINT_HEADROOM_MIN)
		q->headroom_want = POINT_HEADROOM_MIN;
	h->start = headroom_used(q);
	h->start_us = queue_clock_us(CLOCK_MONOTONIC);
	headroom_ask(q, q->headroom_want, true);
}

static void
point_headroom_after(struct queue *q, const struct point_headroom *h)
{
	uint64_t end = headroom_used(q), grew, want,
		 us = queue_clock_us(CLOCK_MONOTONIC) - h->start_us;

	grew = end > h->start ? end - h->start : 0;
	want = us > 0 ? (uint64_t)((double)grew * POINT_HEADROOM_AHEAD_S * 1e6 /
				   (double)us)
		      : 0;
	if (want > POINT_HEADROOM_MAX)
		want = POINT_HEADROOM_MAX;
	if (want < POINT_HEADROOM_MIN)
		want = POINT_HEADROOM_MIN;
	q->headroom_want = want;
}

/* Copy the environment into a new file; its name, size and checksum in
 * PI, the file synced under its final name.  0, or -1 with err set (no
 * file left). */
static int
point_copy(struct queue *q, const char *dir, struct queue_point_info *pi,
	   char *err, size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX], why[256];
	struct point_headroom h;
	int fd;

	if ((fd = point_file_create(dir, pi, tmp, sizeof(tmp), err, errlen)) <
	    0)
		return -1;
	point_headroom_before(q, &h);
	if (point_copy_stream(q, fd, &pi->size, pi->checksum, why,
			      sizeof(why)) != 0) {
		(void)snprintf(err, errlen, "%s: %s", tmp, why);
		goto fail;
	}
	point_headroom_after(q, &h);
	if (fsync(fd) != 0) {
		(void)snprintf(err, errlen, "%s: fsync: %s", tmp,
			       strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	if (point_path(path, sizeof(path), dir, pi->name, "mdb") != 0 ||
	    rename(tmp, path) != 0) {
		(void)snprintf(err, errlen, "%s: rename: %s", tmp,
			       strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	return -1;
}

int
queue_point_take(struct queue *q, const char *dir, struct queue_point_info *out,
		 char *err, size_t errlen)
{
	struct queue_point_info pi;
	char path[PATH_MAX], why[256];
	uint64_t t0 = queue_clock_us(CLOCK_MONOTONIC);
	mode_t old = umask(077);
	int ret = -1;

	memset(&pi, 0, sizeof(pi));
	if (crypt_dir_make(dir, err, errlen) != 0 ||
	    point_copy(q, dir, &pi, err, errlen) != 0)
		goto done;
	/* point_copy() made this very path: it fits. */
	(void)point_path(path, sizeof(path), dir, pi.name, "mdb");
	pi.key_id = crypt_key_id(q->key);
	why[0] = '\0';
	pi.verified = point_walk(path, q->key, &pi, why, sizeof(why)) == 0;
	point_cache_drop(path);
	pi.duration_ms =
	    (int64_t)((queue_clock_us(CLOCK_MONOTONIC) - t0) / 1000);
	if (point_manifest_write(dir, &pi, err, errlen) != 0)
		goto fail;
	if (queue_dir_sync(dir, "") != 0) {
		(void)snprintf(err, errlen, "%s: fsync: %s", dir,
			       strerror(errno));
		goto done; /* the point is whole; its name may not be durable */
	}
	if (!pi.verified)
		(void)snprintf(err, errlen, "point %s: %s", pi.name, why);
	if (out != NULL)
		*out = pi;
	ret = 0;
	goto done;
fail:
	(void)unlink(path);
done:
	umask(old);
	return ret;
}

/* Listing and verifying --------------------------------------------------- */

static int
point_info_cmp(const void *a, const void *b)
{
	const struct queue_point_info *x = a, *y = b;

	if (x->time_ms != y->time_ms)
		return x->time_ms < y->time_ms ? -1 : 1;
	return strcmp(x->name, y->name);
}

int
queue_point_list(const char *dir, struct queue_point_info **out, size_t *n,
		 char *err, size_t errlen)
{
	struct queue_point_info *v = NULL, *nv, pi;
	size_t cap = 0, len;
	struct dirent *de;
	char name[POINT_NAME_BYTES], why[64];
	DIR *d;

	*out = NULL;
	*n = 0;
	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		(void)snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0 ||
		    point_name_parse(de->d_name, name) != 0 ||
		    point_manifest_read(dir, name, &pi, why, sizeof(why)) != 0)
			continue;
		if (*n == cap) {
			cap = cap != 0 ? cap * 2 : 16;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				closedir(d);
				free(v);
				*n = 0;
				(void)snprintf(err, errlen, "out of memory");
				return -1;
			}
			v = nv;
		}
		v[(*n)++] = pi;
	}
	closedir(d);
	if (*n > 0)
		qsort(v, *n, sizeof(*v), point_info_cmp);
	*out = v;
	return 0;
}

/* The point's file against the manifest M: size, then checksum. */
static int
point_file_check(const char *path, const struct queue_point_info *m, char *err,
		 size_t errlen)
{
	struct stat sb;
	uint64_t size;
	char sum[80];

	if (stat(path, &sb) != 0) {
		(void)snprintf(err, errlen, "point %s: %s", m->name,
			       strerror(errno));
		return -1;
	}
	if ((uint64_t)sb.st_size != m->size) {
		(void)snprintf(err, errlen,
			       "point %s: size %jd bytes, the manifest says "
			       "%" PRIu64 " (truncated?)",
			       m->name, (intmax_t)sb.st_size, m->size);
		return -1;
	}
	if (point_file_sum(path, &size, sum, err, errlen) != 0)
		return -1;
	if (size != m->size || strcmp(sum, m->checksum) != 0) {
		(void)snprintf(err, errlen,
			       "point %s: checksum differs from the manifest "
			       "(altered?)",
			       m->name);
		return -1;
	}
	return 0;
}

int
queue_point_verify(const char *dir, const char *name,
		   const uint8_t key[QUEUE_KEY_BYTES],
		   struct queue_point_info *out, char *err, size_t errlen)
{
	struct queue_point_info m, walked;
	struct crypt_key *k = NULL;
	char bare[POINT_NAME_BYTES], path[PATH_MAX], why[256];
	int ret = -1;

	memset(&m, 0, sizeof(m));
	if (point_name_parse(name, bare) != 0) {
		(void)snprintf(err, errlen, "%s: not a restore point's name",
			       name);
		goto done;
	}
	if (point_manifest_read(dir, bare, &m, err, errlen) != 0)
		goto done;
	m.verified = false;
	if (point_path(path, sizeof(path), dir, bare, "mdb") != 0 ||
	    point_file_check(path, &m, err, errlen) != 0)
		goto done;
	if (crypt_init() != 0 ||
	    crypt_key_new(&k, key, why, sizeof(why)) != 0) {
		(void)snprintf(err, errlen, "point %s: key: %s", bare, why);
		goto done;
	}
	if (crypt_key_id(k) != m.key_id) {
		(void)snprintf(err, errlen,
			       "point %s: sealed with key id %08" PRIx32
			       ", the key given has id %08" PRIx32,
			       bare, m.key_id, crypt_key_id(k));
		goto done;
	}
	if (point_walk(path, k, &walked, why, sizeof(why)) != 0) {
		(void)snprintf(err, errlen, "point %s: %s", bare, why);
		goto done;
	}
	if (walked.messages != m.messages ||
	    walked.recipients != m.recipients) {
		(void)snprintf(err, errlen,
			       "point %s: holds %" PRIu64 " messages, %" PRIu64
			       " recipients; the manifest says %" PRIu64
			       ", %" PRIu64,
			       bare, walked.messages, walked.recipients,
			       m.messages, m.recipients);
		goto done;
	}
	m.verified = true;
	ret = 0;
done:
	crypt_key_free(k);
	if (out != NULL)
		*out = m;
	return ret;
}
