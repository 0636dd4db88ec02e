/*
 * crypt_int.h — private to queue/: the queue key in locked memory, sealing
 * and opening of records (AEAD), and the private-directory helper shared by
 * key files and the LMDB environment.  Nothing outside queue/ (but its
 * tests) includes this file.
 *
 * Sealed record: version(1)=CRYPT_VERSION alg(1) key_id(4, big-endian)
 * salt(24) ciphertext tag(16).  Additional data: db tag byte, the LMDB key
 * bytes, the 6 header bytes, so a record cannot be moved to another key or
 * database, nor have its header edited.
 */
#ifndef OUTPOST_QUEUE_CRYPT_INT_H
#define OUTPOST_QUEUE_CRYPT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/queue.h"
#include "queue/record_int.h" /* also poisons the unsafe string calls */

#define CRYPT_VERSION      1
#define CRYPT_HEADER_BYTES 6
#define CRYPT_SALT_BYTES   24
#define CRYPT_TAG_BYTES    16
#define CRYPT_OVERHEAD_BYTES                                                   \
	(CRYPT_HEADER_BYTES + CRYPT_SALT_BYTES + CRYPT_TAG_BYTES)
#define CRYPT_LKEY_MAX_BYTES 64 /* longest LMDB key bound into the AD */

enum crypt_alg {
	CRYPT_ALG_AUTO = 0, /* only for crypt_alg_force(): choose by CPU */
	CRYPT_ALG_AES256GCM = 1,
	CRYPT_ALG_XCHACHA20POLY1305 = 2,
};

/* Database tags bound into the additional data. */
enum crypt_db {
	CRYPT_DB_ENV = 'e',
	CRYPT_DB_BODY = 'b',
	CRYPT_DB_STATE = 's',
};

struct crypt_key; /* opaque: key bytes in sodium_malloc'd read-only memory */

/* crypt_init — sodium_init() exactly once per process.  0 ok, -1 failed.
 * Any thread. */
int crypt_init(void);

/*
 * crypt_alg_force — the internal switch for tests: keys made after this call
 * seal with ALG (CRYPT_ALG_AUTO restores the choice by CPU).  Forcing
 * AES-256-GCM on a CPU without it makes crypt_key_new() fail.  Opening is not
 * affected: either algorithm is always accepted.  Any thread.
 */
void crypt_alg_force(enum crypt_alg alg);
/* crypt_ossl_disable — the internal switch for tests: OFF makes every
 * AES-256-GCM record go through libsodium (records of 4 KiB and more go
 * through OpenSSL otherwise; the bytes are the same).  Any thread. */
void crypt_ossl_disable(bool off);
/* crypt_seal_fail_next — the internal switch for tests: the next
 * crypt_seal() of a record of DB (CRYPT_DB_*) fails, as it would out of
 * memory; -1 disarms it.  Any thread. */
void crypt_seal_fail_next(int db);
/* crypt_ossl_available — does OpenSSL seal large records (its AES-256-GCM
 * was found at crypt_init)?  Any thread, after crypt_init. */
bool crypt_ossl_available(void);

/*
 * crypt_key_new — copy RAW into locked, read-only memory and compute its key
 * id.  *kp is owned by the caller (crypt_key_free()).  0 ok, -1 with err set.
 */
int crypt_key_new(struct crypt_key **kp, const uint8_t raw[QUEUE_KEY_BYTES],
		  char *err, size_t errlen);
/* crypt_key_free — wipe and free; NULL is allowed. */
void crypt_key_free(struct crypt_key *k);
/* crypt_key_id — first 4 bytes of BLAKE2b-256(key), big-endian. */
uint32_t crypt_key_id(const struct crypt_key *k);
/* crypt_key_alg — the algorithm this key seals with. */
enum crypt_alg crypt_key_alg(const struct crypt_key *k);

/*
 * crypt_key_hash — keyed BLAKE2b of CONTEXT (a NUL-terminated label of the
 * use) then IN (LEN bytes) under K, OUTLEN bytes (16 to 64) into OUT.
 * Any thread; K is only read.
 */
void crypt_key_hash(const struct crypt_key *k, const char *context,
		    const uint8_t *in, size_t len, uint8_t *out, size_t outlen);

/* crypt_sealed_len — size of the sealed form of PLAIN_LEN bytes. */
size_t crypt_sealed_len(size_t plain_len);

/*
 * crypt_seal — seal PLAIN (PLEN bytes) for database DB (enum crypt_db) under
 * the LMDB key LKEY (LKEYLEN <= CRYPT_LKEY_MAX_BYTES) into OUT, which has room
 * for crypt_sealed_len(PLEN) bytes.  A fresh random salt every time.  0 ok,
 * -1 with err set.  Any thread; K is only read.
 */
int crypt_seal(const struct crypt_key *k, uint8_t db, const uint8_t *lkey,
	       size_t lkeylen, const uint8_t *plain, size_t plen, uint8_t *out,
	       char *err, size_t errlen);

/*
 * crypt_open — check and decrypt a sealed record (SEALED, SLEN untrusted
 * bytes) read from database DB under LMDB key LKEY.  OUT has room for
 * SLEN - CRYPT_OVERHEAD_BYTES bytes; *outlen is set to the plaintext length.
 * 0 ok; -1 with err set ("authentication failed (wrong key?)", a truncated
 * or unknown header, an algorithm this CPU lacks).  Any thread.
 */
int crypt_open(const struct crypt_key *k, uint8_t db, const uint8_t *lkey,
	       size_t lkeylen, const uint8_t *sealed, size_t slen, uint8_t *out,
	       size_t *outlen, char *err, size_t errlen);

/* crypt_write_all — write N bytes of P to FD, across short writes and
 * EINTR.  0, or -1 with errno.  Any thread. */
int crypt_write_all(int fd, const void *p, size_t n);

/*
 * crypt_dir_make — create PATH and its missing parents with mode 0700
 * ("mkdir -p"); existing directories are left alone.  0 ok, -1 with
 * "PATH: reason" in err.
 */
int crypt_dir_make(const char *path, char *err, size_t errlen);

#endif
