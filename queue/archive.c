/*
 * archive.c — the portable archive of queued messages (format: archive.h).
 * Owns: the archive's header, its records and their encryption
 * (crypto_secretstream_xchacha20poly1305); the envelope inside is
 * record.c's encoding.  Must not: trust a byte it reads (lengths, limits
 * and counts are checked before use; nothing is handed out before its
 * record authenticated), or leave a key or plaintext in freed memory.
 * Threads: any; a writer or reader belongs to one thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "queue/archive.h"
#include "queue/record_int.h"

#define ARCHIVE_MAGIC       "OUTPOSTA"
#define ARCHIVE_AD_BYTES    72 /* header bytes before the stream header */
#define ARCHIVE_CHECK_BYTES 16
#define ARCHIVE_CHECK_CTX   "outpost archive key check"
#define ARCHIVE_RECORD_MAX  (16u << 20)  /* plaintext of one record */
#define ARCHIVE_BODY_MAX    (1ull << 30) /* bytes of one message */
#define ARCHIVE_OPS_MAX     16
#define ARCHIVE_MEM_MAX     (1ull << 30)
#define ARCHIVE_ABYTES      crypto_secretstream_xchacha20poly1305_ABYTES

enum archive_rec {
	AR_MANIFEST = 'M',
	AR_ENVELOPE = 'E',
	AR_BODY = 'B',
	AR_FINAL = 'F',
};

struct archive_writer {
	int fd;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t *buf; /* ciphertext of one record, with its length */
	size_t cap;
	uint64_t messages, bytes;
	uint64_t body_left; /* of the message being written */
	bool failed;
};

struct archive_reader {
	int fd;
	off_t off;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t *pt; /* plaintext of the last record (wiped on reuse) */
	size_t ptcap, ptlen;
	uint8_t *ct;
	size_t ctcap;
	uint64_t messages, bytes;
	bool ended;
};

void
archive_params_new(struct archive_params *p, enum archive_kdf kdf)
{
	memset(p, 0, sizeof(*p));
	p->kdf = kdf;
	if (kdf == ARCHIVE_KDF_ARGON2ID) {
		p->opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
		p->memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
	}
	randombytes_buf(p->salt, sizeof(p->salt));
}

int
archive_key_derive(const struct archive_params *p, const char *pw, size_t pwlen,
		   uint8_t key[QUEUE_KEY_BYTES], char *err, size_t errlen)
{
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium initialisation failed");
		return -1;
	}
	if (p->kdf != ARCHIVE_KDF_ARGON2ID) {
		snprintf(err, errlen,
			 "the archive was made with a key file, not a "
			 "passphrase");
		return -1;
	}
	if (crypto_pwhash(key, QUEUE_KEY_BYTES, pw, pwlen, p->salt, p->opslimit,
			  (size_t)p->memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		snprintf(err, errlen, "Argon2id: out of memory");
		return -1;
	}
	return 0;
}

/* The key check: a keyed hash of the archive id, so a wrong key is told
 * apart from a damaged archive. */
static void
archive_check_make(const uint8_t key[QUEUE_KEY_BYTES],
		   const uint8_t id[ARCHIVE_ID_BYTES],
		   uint8_t out[ARCHIVE_CHECK_BYTES])
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, key, QUEUE_KEY_BYTES, ARCHIVE_CHECK_BYTES);
	crypto_generichash_update(&h, (const uint8_t *)ARCHIVE_CHECK_CTX,
				  sizeof(ARCHIVE_CHECK_CTX) - 1);
	crypto_generichash_update(&h, id, ARCHIVE_ID_BYTES);
	crypto_generichash_final(&h, out, ARCHIVE_CHECK_BYTES);
}

/* All LEN bytes at OFF of FD; 0, 1 at a short read (truncated), -1. */
static int
archive_pread_all(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = pread(fd, (uint8_t *)buf + got, len - got,
			  off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 1;
		got += (size_t)n;
	}
	return 0;
}

static int
archive_write_all(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Parse the header H; 0, or -1 with err. */
static int
archive_header_parse(const uint8_t *h, struct archive_params *p, char *err,
		     size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (memcmp(h, ARCHIVE_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not an Outpost archive");
		return -1;
	}
	if (h[8] != ARCHIVE_VERSION) {
		snprintf(err, errlen, "archive version %u not supported",
			 (unsigned)h[8]);
		return -1;
	}
	p->kdf = (enum archive_kdf)h[9];
	p->opslimit = record_be32_get(h + 12);
	p->memlimit = record_be64_get(h + 16);
	memcpy(p->salt, h + 24, ARCHIVE_SALT_BYTES);
	if (p->kdf == ARCHIVE_KDF_KEY && p->opslimit == 0 && p->memlimit == 0)
		return 0;
	if (p->kdf == ARCHIVE_KDF_ARGON2ID &&
	    p->opslimit >= crypto_pwhash_OPSLIMIT_MIN &&
	    p->opslimit <= ARCHIVE_OPS_MAX &&
	    p->memlimit >= crypto_pwhash_MEMLIMIT_MIN &&
	    p->memlimit <= ARCHIVE_MEM_MAX)
		return 0;
	snprintf(err, errlen, "archive header damaged (key derivation)");
	return -1;
}

int
archive_header_read(int fd, struct archive_params *p, char *err, size_t errlen)
{
	uint8_t h[ARCHIVE_HEADER_BYTES] = { 0 };
	int rc = archive_pread_all(fd, h, sizeof(h), 0);

	if (rc < 0) {
		snprintf(err, errlen, "read: %s", strerror(errno));
		return -1;
	}
	if (rc > 0) {
		snprintf(err, errlen,
			 memcmp(h, ARCHIVE_MAGIC, 8) == 0
			     ? "archive truncated (in its header)"
			     : "not an Outpost archive");
		return -1;
	}
	return archive_header_parse(h, p, err, errlen);
}

/* Writer ------------------------------------------------------------- */

/* One record: TYPE and LEN bytes of DATA, with TAG, AD (ADLEN). */
static int
archive_writer_put(struct archive_writer *w, uint8_t type, const uint8_t *data,
		   size_t len, uint8_t tag, const uint8_t *ad, size_t adlen,
		   char *err, size_t errlen)
{
	size_t ptlen = 1 + len, need = 4 + ptlen + ARCHIVE_ABYTES;
	uint8_t *pt = NULL, *nb;
	int rc = -1;

	if (w->failed) {
		snprintf(err, errlen, "archive: an earlier write failed");
		return -1;
	}
	if (ptlen > ARCHIVE_RECORD_MAX) {
		snprintf(err, errlen, "archive: record over %u bytes",
			 ARCHIVE_RECORD_MAX);
		goto fail;
	}
	if (need > w->cap) {
		if ((nb = realloc(w->buf, need)) == NULL)
			goto oom;
		w->buf = nb;
		w->cap = need;
	}
	if ((pt = malloc(ptlen)) == NULL)
		goto oom;
	pt[0] = type;
	if (len > 0)
		memcpy(pt + 1, data, len);
	record_be32_put(w->buf, (uint32_t)(ptlen + ARCHIVE_ABYTES));
	crypto_secretstream_xchacha20poly1305_push(&w->st, w->buf + 4, NULL, pt,
						   ptlen, ad, adlen, tag);
	if (archive_write_all(w->fd, w->buf, need) != 0) {
		snprintf(err, errlen, "archive: write: %s", strerror(errno));
		goto fail;
	}
	rc = 0;
	goto done;
oom:
	snprintf(err, errlen, "archive: out of memory");
fail:
	w->failed = true;
done:
	if (pt != NULL) {
		sodium_memzero(pt, ptlen);
		free(pt);
	}
	return rc;
}

int
archive_writer_open(struct archive_writer **wp, int fd,
		    const uint8_t key[QUEUE_KEY_BYTES],
		    const struct archive_params *p, struct archive_manifest *m,
		    char *err, size_t errlen)
{
	uint8_t h[ARCHIVE_HEADER_BYTES], man[16 + ARCHIVE_SOURCE_MAX];
	struct archive_writer *w;
	size_t slen = strnlen(m->source, ARCHIVE_SOURCE_MAX);

	*wp = NULL;
	if (sodium_init() < 0 || (w = calloc(1, sizeof(*w))) == NULL) {
		snprintf(err, errlen, "archive: out of memory");
		return -1;
	}
	w->fd = fd;
	memset(h, 0, sizeof(h));
	memcpy(h, ARCHIVE_MAGIC, 8);
	h[8] = ARCHIVE_VERSION;
	h[9] = (uint8_t)p->kdf;
	record_be32_put(h + 12, p->opslimit);
	record_be64_put(h + 16, p->memlimit);
	memcpy(h + 24, p->salt, ARCHIVE_SALT_BYTES);
	randombytes_buf(m->id, ARCHIVE_ID_BYTES);
	memcpy(h + 40, m->id, ARCHIVE_ID_BYTES);
	archive_check_make(key, m->id, h + 56);
	crypto_secretstream_xchacha20poly1305_init_push(
	    &w->st, h + ARCHIVE_AD_BYTES, key);
	if (archive_write_all(fd, h, sizeof(h)) != 0) {
		snprintf(err, errlen, "archive: write: %s", strerror(errno));
		goto fail;
	}
	record_be64_put(man, m->messages);
	record_be64_put(man + 8, (uint64_t)m->time_ms);
	memcpy(man + 16, m->source, slen);
	if (archive_writer_put(w, AR_MANIFEST, man, 16 + slen, 0, h,
			       ARCHIVE_AD_BYTES, err, errlen) != 0)
		goto fail;
	*wp = w;
	return 0;
fail:
	archive_writer_free(w);
	return -1;
}

int
archive_writer_message(struct archive_writer *w,
		       const struct queue_envelope *env, char *err,
		       size_t errlen)
{
	uint8_t *enc = NULL;
	size_t len = 0;
	int rc;

	if (w->body_left != 0) {
		snprintf(err, errlen, "archive: the last body is incomplete");
		w->failed = true;
		return -1;
	}
	if (env->size > ARCHIVE_BODY_MAX) {
		snprintf(err, errlen, "archive: message over %llu bytes",
			 (unsigned long long)ARCHIVE_BODY_MAX);
		return -1;
	}
	if (record_envelope_encode(env, &enc, &len, err, errlen) != 0)
		return -1;
	rc = archive_writer_put(w, AR_ENVELOPE, enc, len, 0, NULL, 0, err,
				errlen);
	sodium_memzero(enc, len);
	free(enc);
	if (rc == 0) {
		w->messages++;
		w->body_left = env->size;
	}
	return rc;
}

int
archive_writer_body(struct archive_writer *w, const uint8_t *data, size_t len,
		    char *err, size_t errlen)
{
	size_t n;

	if (len > w->body_left) {
		snprintf(err, errlen, "archive: body longer than its size");
		w->failed = true;
		return -1;
	}
	while (len > 0) {
		n = len < ARCHIVE_CHUNK_BYTES ? len : ARCHIVE_CHUNK_BYTES;
		if (archive_writer_put(w, AR_BODY, data, n, 0, NULL, 0, err,
				       errlen) != 0)
			return -1;
		data += n;
		len -= n;
		w->body_left -= n;
		w->bytes += n;
	}
	return 0;
}

int
archive_writer_end(struct archive_writer *w, char *err, size_t errlen)
{
	uint8_t fin[16];

	if (w->body_left != 0) {
		snprintf(err, errlen, "archive: the last body is incomplete");
		return -1;
	}
	record_be64_put(fin, w->messages);
	record_be64_put(fin + 8, w->bytes);
	if (archive_writer_put(w, AR_FINAL, fin, sizeof(fin),
			       crypto_secretstream_xchacha20poly1305_TAG_FINAL,
			       NULL, 0, err, errlen) != 0)
		return -1;
	if (fsync(w->fd) != 0) {
		snprintf(err, errlen, "archive: fsync: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void
archive_writer_free(struct archive_writer *w)
{
	if (w == NULL)
		return;
	sodium_memzero(&w->st, sizeof(w->st));
	free(w->buf);
	free(w);
}

/* Reader ------------------------------------------------------------- */

/* The next record into r->pt (type first); its stream tag into *TAG.
 * 0, or -1 with err. */
static int
archive_reader_get(struct archive_reader *r, const uint8_t *ad, size_t adlen,
		   unsigned char *tag, char *err, size_t errlen)
{
	uint8_t lenb[4];
	uint32_t clen;
	unsigned long long ptlen;
	uint8_t *nb;
	int rc;

	if ((rc = archive_pread_all(r->fd, lenb, 4, r->off)) != 0)
		goto short_read;
	clen = record_be32_get(lenb);
	if (clen <= ARCHIVE_ABYTES ||
	    clen - ARCHIVE_ABYTES > ARCHIVE_RECORD_MAX) {
		snprintf(err, errlen,
			 "archive damaged or altered (a record "
			 "length out of range)");
		return -1;
	}
	if (clen > r->ctcap) {
		if ((nb = realloc(r->ct, clen)) == NULL)
			goto oom;
		r->ct = nb;
		r->ctcap = clen;
	}
	if (clen - ARCHIVE_ABYTES > r->ptcap) {
		sodium_memzero(r->pt, r->ptcap);
		free(r->pt);
		r->ptcap = 0;
		if ((r->pt = malloc(clen - ARCHIVE_ABYTES)) == NULL)
			goto oom;
		r->ptcap = clen - ARCHIVE_ABYTES;
	}
	if ((rc = archive_pread_all(r->fd, r->ct, clen, r->off + 4)) != 0)
		goto short_read;
	if (crypto_secretstream_xchacha20poly1305_pull(
		&r->st, r->pt, &ptlen, tag, r->ct, clen, ad, adlen) != 0 ||
	    ptlen == 0) {
		snprintf(err, errlen,
			 "archive damaged or altered (a record does not "
			 "authenticate)");
		return -1;
	}
	r->ptlen = (size_t)ptlen;
	r->off += 4 + (off_t)clen;
	return 0;
short_read:
	snprintf(err, errlen,
		 rc > 0 ? "archive truncated (no end record)"
			: "archive: read failed");
	return -1;
oom:
	snprintf(err, errlen, "archive: out of memory");
	return -1;
}

int
archive_reader_open(struct archive_reader **rp, int fd,
		    const uint8_t key[QUEUE_KEY_BYTES],
		    struct archive_manifest *m, char *err, size_t errlen)
{
	uint8_t h[ARCHIVE_HEADER_BYTES], check[ARCHIVE_CHECK_BYTES];
	struct archive_params p;
	struct archive_reader *r;
	unsigned char tag;
	size_t slen;
	int rc;

	*rp = NULL;
	memset(m, 0, sizeof(*m));
	if (sodium_init() < 0 || (r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "archive: out of memory");
		return -1;
	}
	r->fd = fd;
	if ((rc = archive_pread_all(fd, h, sizeof(h), 0)) != 0) {
		snprintf(err, errlen,
			 rc > 0 ? "archive truncated (in its header)"
				: "archive: read failed");
		goto fail;
	}
	if (archive_header_parse(h, &p, err, errlen) != 0)
		goto fail;
	memcpy(m->id, h + 40, ARCHIVE_ID_BYTES);
	archive_check_make(key, m->id, check);
	if (sodium_memcmp(check, h + 56, ARCHIVE_CHECK_BYTES) != 0) {
		snprintf(err, errlen,
			 "wrong key or passphrase for this archive");
		goto fail;
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(
		&r->st, h + ARCHIVE_AD_BYTES, key) != 0) {
		snprintf(err, errlen, "archive damaged (stream header)");
		goto fail;
	}
	r->off = ARCHIVE_HEADER_BYTES;
	if (archive_reader_get(r, h, ARCHIVE_AD_BYTES, &tag, err, errlen) != 0)
		goto fail;
	if (r->pt[0] != AR_MANIFEST || r->ptlen < 17 ||
	    r->ptlen > 17 + ARCHIVE_SOURCE_MAX || tag != 0) {
		snprintf(err, errlen, "archive damaged (no manifest)");
		goto fail;
	}
	m->messages = record_be64_get(r->pt + 1);
	m->time_ms = (int64_t)record_be64_get(r->pt + 9);
	slen = r->ptlen - 17;
	memcpy(m->source, r->pt + 17, slen);
	m->source[slen] = '\0';
	*rp = r;
	return 0;
fail:
	archive_reader_free(r);
	return -1;
}

/* The rest of a message: its body pieces, up to ENV->size bytes. */
static int
archive_reader_body(struct archive_reader *r, const struct queue_envelope *env,
		    uint8_t **body, char *err, size_t errlen)
{
	size_t have = 0, n;
	unsigned char tag;
	uint8_t *b;

	/* Grown as pieces authenticate: a size that lies costs nothing. */
	if ((b = malloc(env->size > 0 ? ARCHIVE_CHUNK_BYTES : 1)) == NULL)
		goto oom;
	while (have < env->size) {
		if (archive_reader_get(r, NULL, 0, &tag, err, errlen) != 0)
			goto fail;
		n = r->ptlen - 1;
		if (r->pt[0] != AR_BODY || tag != 0 || n > env->size - have) {
			snprintf(err, errlen,
				 "archive damaged (a body does not match its "
				 "envelope)");
			goto fail;
		}
		if (have + n > ARCHIVE_CHUNK_BYTES) {
			uint8_t *nb = realloc(b, have + n);

			if (nb == NULL)
				goto oom;
			b = nb;
		}
		memcpy(b + have, r->pt + 1, n);
		have += n;
	}
	*body = b;
	r->bytes += have;
	return 0;
oom:
	snprintf(err, errlen, "archive: out of memory");
fail:
	free(b);
	return -1;
}

int
archive_reader_next(struct archive_reader *r, struct queue_envelope *env,
		    uint8_t **body, size_t *body_len, char *err, size_t errlen)
{
	unsigned char tag;
	uint8_t extra;

	memset(env, 0, sizeof(*env));
	*body = NULL;
	*body_len = 0;
	if (r->ended)
		return 0;
	if (archive_reader_get(r, NULL, 0, &tag, err, errlen) != 0)
		return -1;
	if (r->pt[0] == AR_FINAL) {
		if (tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL ||
		    r->ptlen != 17 ||
		    record_be64_get(r->pt + 1) != r->messages ||
		    record_be64_get(r->pt + 9) != r->bytes) {
			snprintf(err, errlen,
				 "archive damaged (the end record disagrees "
				 "with what came before)");
			return -1;
		}
		if (archive_pread_all(r->fd, &extra, 1, r->off) != 1) {
			snprintf(err, errlen,
				 "archive altered (bytes after its end)");
			return -1;
		}
		r->ended = true;
		return 0;
	}
	if (r->pt[0] != AR_ENVELOPE || tag != 0) {
		snprintf(err, errlen, "archive damaged (an envelope expected)");
		return -1;
	}
	if (record_envelope_decode(r->pt + 1, r->ptlen - 1, env, err, errlen) !=
	    0)
		return -1;
	if (env->size > ARCHIVE_BODY_MAX ||
	    archive_reader_body(r, env, body, err, errlen) != 0) {
		if (env->size > ARCHIVE_BODY_MAX)
			snprintf(err, errlen,
				 "archive damaged (a size out of "
				 "range)");
		queue_envelope_clear(env);
		return -1;
	}
	*body_len = env->size;
	r->messages++;
	return 1;
}

void
archive_reader_free(struct archive_reader *r)
{
	if (r == NULL)
		return;
	sodium_memzero(&r->st, sizeof(r->st));
	if (r->pt != NULL)
		sodium_memzero(r->pt, r->ptcap);
	free(r->pt);
	free(r->ct);
	free(r);
}
