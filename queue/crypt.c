/*
 * crypt.c — encryption at rest for the queue: key files, the queue key in
 * locked memory, seal/open of records, and the keyed address hash.
 * Owns: the sealed-record header (crypt_int.h) and key file format.  Must
 * not: know about LMDB or envelopes.  Thread: all functions may run on any
 * thread; a struct crypt_key is read-only after crypt_key_new().
 * Invariants: no nonce is ever reused under one key (AES-256-GCM derives a
 * fresh key from a random salt per record; XChaCha20 uses the 24-byte salt as
 * nonce); key bytes live only in sodium_malloc'd memory or wiped stack
 * (and, for a record's AES key, in OpenSSL's cipher context while it runs:
 * freed with a cleanse).
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "queue/crypt_int.h"
#include "queue/record_int.h"

#define CRYPT_KEYFILE_MAX_BYTES                                                \
	256 /* 64 hex digits and a newline, with room                          \
	       to say "too long" */
#define CRYPT_AES_NONCE_BYTES 12

struct crypt_key {
	uint8_t *raw; /* QUEUE_KEY_BYTES, sodium_malloc'd, read-only */
	uint32_t id;
	enum crypt_alg alg;
};

static pthread_once_t crypt_once = PTHREAD_ONCE_INIT;
static int crypt_init_rc = -1;
static _Atomic int crypt_alg_forced = CRYPT_ALG_AUTO;

/*
 * Records of CRYPT_OSSL_MIN_BYTES and more (bodies) are sealed and opened
 * with OpenSSL's AES-256-GCM, which uses VAES and AVX-512 where the CPU
 * has them: 5.2 GB/s on the benchmark machine against libsodium's 2.4,
 * 24 us less per 100 KB message each way.  The cipher, key, nonce, AD and
 * tag are the same, so are the bytes (queue_crypt_test seals with one and
 * opens with the other).  Smaller records stay with libsodium, whose call
 * costs less than a cipher context's set-up.
 */
#define CRYPT_OSSL_MIN_BYTES 4096
static EVP_CIPHER *crypt_gcm; /* NULL: libsodium for everything */
static _Atomic bool crypt_ossl_off;

static void
crypt_init_once(void)
{
	crypt_init_rc = sodium_init() < 0 ? -1 : 0;
	crypt_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

bool
crypt_ossl_available(void)
{
	return crypt_gcm != NULL;
}

void
crypt_ossl_disable(bool off)
{
	atomic_store(&crypt_ossl_off, off);
}

static _Atomic int crypt_fail_db = -1;

void
crypt_seal_fail_next(int db)
{
	atomic_store(&crypt_fail_db, db);
}

/* AES-256-GCM under KEY with the zero nonce (a key per record), through
 * OpenSSL: IN (INLEN) to OUT with the tag in TAG (ENC), or checked against
 * TAG (!ENC; OUT is wiped when it does not match).  0, or -1. */
static int
crypt_gcm_ossl(bool enc, const uint8_t *key, const uint8_t *ad, size_t adlen,
	       const uint8_t *in, size_t inlen, uint8_t *out,
	       uint8_t tag[CRYPT_TAG_BYTES])
{
	static const uint8_t zero_nonce[CRYPT_AES_NONCE_BYTES];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n, ok;

	ok = ctx != NULL &&
	     EVP_CipherInit_ex2(ctx, crypt_gcm, key, zero_nonce, enc ? 1 : 0,
				NULL) == 1 &&
	     EVP_CipherUpdate(ctx, NULL, &n, ad, (int)adlen) == 1 &&
	     EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) == 1 &&
	     (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
					 CRYPT_TAG_BYTES, tag) == 1) &&
	     EVP_CipherFinal_ex(ctx, out + n, &n) == 1 &&
	     (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
					  CRYPT_TAG_BYTES, tag) == 1);
	EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
	if (!ok && !enc)
		sodium_memzero(out, inlen);
	return ok ? 0 : -1;
}

/* Is a record of N octets (plaintext or ciphertext) for OpenSSL? */
static bool
crypt_use_ossl(size_t n)
{
	return crypt_gcm != NULL && n >= CRYPT_OSSL_MIN_BYTES &&
	       n <= (size_t)INT_MAX / 2 && !atomic_load(&crypt_ossl_off);
}

int
crypt_init(void)
{
	if (pthread_once(&crypt_once, crypt_init_once) != 0)
		return -1;
	return crypt_init_rc;
}

void
crypt_alg_force(enum crypt_alg alg)
{
	atomic_store(&crypt_alg_forced, (int)alg);
}

/* Keys ---------------------------------------------------------------- */

int
crypt_key_new(struct crypt_key **kp, const uint8_t raw[QUEUE_KEY_BYTES],
	      char *err, size_t errlen)
{
	struct crypt_key *k = NULL;
	uint8_t h[crypto_generichash_BYTES];
	int forced = atomic_load(&crypt_alg_forced);

	*kp = NULL;
	if (crypt_init() != 0) {
		(void)snprintf(err, errlen, "libsodium initialisation failed");
		goto fail;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->raw = sodium_malloc(QUEUE_KEY_BYTES)) == NULL) {
		(void)snprintf(err, errlen, "out of memory for the queue key");
		goto fail;
	}
	memcpy(k->raw, raw, QUEUE_KEY_BYTES);
	if (sodium_mprotect_readonly(k->raw) != 0) {
		(void)snprintf(err, errlen, "cannot protect the queue key: %s",
			       strerror(errno));
		goto fail;
	}
	crypto_generichash(h, sizeof(h), raw, QUEUE_KEY_BYTES, NULL, 0);
	k->id = record_be32_get(h);
	if (forced == CRYPT_ALG_AES256GCM &&
	    !crypto_aead_aes256gcm_is_available()) {
		(void)snprintf(err, errlen,
			       "AES-256-GCM forced, but this CPU "
			       "lacks it");
		goto fail;
	}
	if (forced != CRYPT_ALG_AUTO)
		k->alg = (enum crypt_alg)forced;
	else if (crypto_aead_aes256gcm_is_available())
		k->alg = CRYPT_ALG_AES256GCM;
	else
		k->alg = CRYPT_ALG_XCHACHA20POLY1305;
	*kp = k;
	return 0;
fail:
	crypt_key_free(k);
	return -1;
}

void
crypt_key_free(struct crypt_key *k)
{
	if (k == NULL)
		return;
	/* sodium_free() wipes, but only writable memory. */
	if (k->raw != NULL) {
		(void)sodium_mprotect_readwrite(k->raw);
		sodium_free(k->raw);
	}
	free(k);
}

uint32_t
crypt_key_id(const struct crypt_key *k)
{
	return k->id;
}

enum crypt_alg
crypt_key_alg(const struct crypt_key *k)
{
	return k->alg;
}

void
crypt_key_hash(const struct crypt_key *k, const char *context,
	       const uint8_t *in, size_t len, uint8_t *out, size_t outlen)
{
	crypto_generichash_state st;

	/* The context and its NUL first: hashes made for one use never
	 * equal those made for another. */
	crypto_generichash_init(&st, k->raw, QUEUE_KEY_BYTES, outlen);
	crypto_generichash_update(&st, (const unsigned char *)context,
				  strlen(context) + 1);
	if (len > 0)
		crypto_generichash_update(&st, in, len);
	crypto_generichash_final(&st, out, outlen);
	sodium_memzero(&st, sizeof(st));
}

/* Seal and open ------------------------------------------------------- */

size_t
crypt_sealed_len(size_t plain_len)
{
	return plain_len + CRYPT_OVERHEAD_BYTES;
}

/* AD = db tag, LMDB key, header.  Returns its length, 0 if LKEY is too long. */
static size_t
crypt_ad_make(uint8_t *ad, uint8_t db, const uint8_t *lkey, size_t lkeylen,
	      const uint8_t *header)
{
	if (lkeylen > CRYPT_LKEY_MAX_BYTES)
		return 0;
	ad[0] = db;
	memcpy(ad + 1, lkey, lkeylen);
	memcpy(ad + 1 + lkeylen, header, CRYPT_HEADER_BYTES);
	return 1 + lkeylen + CRYPT_HEADER_BYTES;
}

int
crypt_seal(const struct crypt_key *k, uint8_t db, const uint8_t *lkey,
	   size_t lkeylen, const uint8_t *plain, size_t plen, uint8_t *out,
	   char *err, size_t errlen)
{
	uint8_t ad[1 + CRYPT_LKEY_MAX_BYTES + CRYPT_HEADER_BYTES];
	uint8_t subkey[crypto_aead_aes256gcm_KEYBYTES];
	static const uint8_t zero_nonce[CRYPT_AES_NONCE_BYTES];
	uint8_t *salt = out + CRYPT_HEADER_BYTES;
	uint8_t *ct = salt + CRYPT_SALT_BYTES;
	unsigned long long clen;
	size_t adlen;
	int rc = -1;

	if (atomic_load_explicit(&crypt_fail_db, memory_order_relaxed) == db) {
		int armed = db;

		if (atomic_compare_exchange_strong(&crypt_fail_db, &armed,
						   -1)) {
			(void)snprintf(err, errlen, "failure injected (test)");
			return -1;
		}
	}
	out[0] = CRYPT_VERSION;
	out[1] = (uint8_t)k->alg;
	record_be32_put(out + 2, k->id);
	randombytes_buf(salt, CRYPT_SALT_BYTES);
	if ((adlen = crypt_ad_make(ad, db, lkey, lkeylen, out)) == 0) {
		(void)snprintf(err, errlen, "LMDB key of %zu bytes", lkeylen);
		goto done;
	}
	if (k->alg == CRYPT_ALG_AES256GCM) {
		/* A key per record: the zero nonce is never reused. */
		crypto_generichash(subkey, sizeof(subkey), salt,
				   CRYPT_SALT_BYTES, k->raw, QUEUE_KEY_BYTES);
		if (crypt_use_ossl(plen))
			rc = crypt_gcm_ossl(true, subkey, ad, adlen, plain,
					    plen, ct, ct + plen);
		else
			rc = crypto_aead_aes256gcm_encrypt(
			    ct, &clen, plain, plen, ad, adlen, NULL, zero_nonce,
			    subkey);
	} else {
		rc = crypto_aead_xchacha20poly1305_ietf_encrypt(
		    ct, &clen, plain, plen, ad, adlen, NULL, salt, k->raw);
	}
	if (rc != 0)
		(void)snprintf(err, errlen, "encryption failed");
done:
	sodium_memzero(subkey, sizeof(subkey));
	return rc == 0 ? 0 : -1;
}

/*
 * The header is untrusted: it is parsed with the length-checked reader and
 * every field is checked before the AEAD runs (which checks it again, as
 * part of the additional data).
 */
int
crypt_open(const struct crypt_key *k, uint8_t db, const uint8_t *lkey,
	   size_t lkeylen, const uint8_t *sealed, size_t slen, uint8_t *out,
	   size_t *outlen, char *err, size_t errlen)
{
	uint8_t ad[1 + CRYPT_LKEY_MAX_BYTES + CRYPT_HEADER_BYTES];
	uint8_t subkey[crypto_aead_aes256gcm_KEYBYTES];
	static const uint8_t zero_nonce[CRYPT_AES_NONCE_BYTES];
	struct record_rd b;
	const uint8_t *header, *salt, *ct;
	unsigned long long plen;
	uint32_t key_id;
	uint8_t version, alg;
	size_t adlen, ctlen;
	int rc = -1;

	*outlen = 0;
	record_rd_init(&b, sealed, slen);
	if (record_rd_left(&b) < CRYPT_OVERHEAD_BYTES) {
		(void)snprintf(err, errlen,
			       "sealed record of %zu bytes, truncated", slen);
		goto done;
	}
	header = sealed;
	if (record_rd_u8(&b, &version) != 0 || record_rd_u8(&b, &alg) != 0 ||
	    record_rd_be32(&b, &key_id) != 0 ||
	    record_rd_bytes(&b, CRYPT_SALT_BYTES, &salt) != 0)
		goto done;
	ctlen = record_rd_left(&b);
	if (record_rd_bytes(&b, ctlen, &ct) != 0)
		goto done;
	if (version != CRYPT_VERSION) {
		(void)snprintf(err, errlen,
			       "sealed record version %u not supported",
			       version);
		goto done;
	}
	if (key_id != k->id) {
		(void)snprintf(
		    err, errlen,
		    "authentication failed (wrong key? sealed with key id "
		    "%08x, the loaded key is %08x)",
		    key_id, k->id);
		goto done;
	}
	if ((adlen = crypt_ad_make(ad, db, lkey, lkeylen, header)) == 0) {
		(void)snprintf(err, errlen, "LMDB key of %zu bytes", lkeylen);
		goto done;
	}
	switch (alg) {
	case CRYPT_ALG_AES256GCM:
		if (!crypto_aead_aes256gcm_is_available()) {
			(void)snprintf(err, errlen,
				       "sealed with AES-256-GCM, which "
				       "this CPU lacks");
			goto done;
		}
		crypto_generichash(subkey, sizeof(subkey), salt,
				   CRYPT_SALT_BYTES, k->raw, QUEUE_KEY_BYTES);
		if (ctlen >= CRYPT_TAG_BYTES &&
		    crypt_use_ossl(ctlen - CRYPT_TAG_BYTES)) {
			uint8_t tag[CRYPT_TAG_BYTES];

			plen = ctlen - CRYPT_TAG_BYTES;
			memcpy(tag, ct + plen, sizeof(tag));
			rc = crypt_gcm_ossl(false, subkey, ad, adlen, ct,
					    (size_t)plen, out, tag);
		} else {
			rc = crypto_aead_aes256gcm_decrypt(out, &plen, NULL, ct,
							   ctlen, ad, adlen,
							   zero_nonce, subkey);
		}
		break;
	case CRYPT_ALG_XCHACHA20POLY1305:
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
		    out, &plen, NULL, ct, ctlen, ad, adlen, salt, k->raw);
		break;
	default:
		(void)snprintf(err, errlen, "unknown cipher %u", alg);
		goto done;
	}
	if (rc != 0) {
		(void)snprintf(err, errlen,
			       "authentication failed (wrong key?)");
		goto done;
	}
	*outlen = (size_t)plen;
done:
	sodium_memzero(subkey, sizeof(subkey));
	return rc == 0 ? 0 : -1;
}

/* Directories and key files ------------------------------------------ */

int
crypt_dir_make(const char *path, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t i, n;

	if ((n = strlen(path)) == 0 || n >= sizeof(buf)) {
		(void)snprintf(err, errlen, "%s: bad directory name", path);
		return -1;
	}
	memcpy(buf, path, n + 1);
	/* Each prefix ending before a '/', then the whole path. */
	for (i = 1; i <= n; i++) {
		if (i < n && buf[i] != '/')
			continue;
		if (i < n && buf[i - 1] == '/')
			continue; /* "//" */
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0) {
			if (errno != EEXIST || stat(buf, &st) != 0 ||
			    !S_ISDIR(st.st_mode)) {
				(void)snprintf(err, errlen, "%s: %s", buf,
					       errno == EEXIST
						   ? "not a directory"
						   : strerror(errno));
				return -1;
			}
		}
		if (i < n)
			buf[i] = '/';
	}
	return 0;
}

/* The directory part of PATH ("." if none) into BUF. */
static int
crypt_path_dir(const char *path, char *buf, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (slash == NULL)
		return snprintf(buf, size, ".") >= (int)size ? -1 : 0;
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= size)
		return -1;
	memcpy(buf, path, n);
	buf[n] = '\0';
	return 0;
}

int
crypt_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *c = p;
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, c, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Make a new key file at PATH.  0 made, 1 someone else made it meanwhile
 * (read theirs), -1 error.  The file is complete and on disk (file and
 * directory fsync'd) before 0 is returned.
 */
static int
crypt_keyfile_create(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	uint8_t raw[QUEUE_KEY_BYTES];
	char hex[QUEUE_KEY_BYTES * 2 + 2];
	mode_t old = umask(077);
	int fd = -1, dfd = -1, rc = -1;
	bool made = false;

	if (crypt_path_dir(path, dir, sizeof(dir)) != 0) {
		(void)snprintf(err, errlen, "%s: path too long", path);
		goto done;
	}
	if (crypt_dir_make(dir, err, errlen) != 0)
		goto done;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		if (errno == EEXIST)
			rc = 1;
		else
			(void)snprintf(err, errlen, "%s: %s", path,
				       strerror(errno));
		goto done;
	}
	made = true;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hex, sizeof(hex) - 1, raw, sizeof(raw));
	hex[QUEUE_KEY_BYTES * 2] = '\n';
	if (crypt_write_all(fd, hex, sizeof(hex) - 1) != 0 || fsync(fd) != 0) {
		(void)snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (close(fd) != 0) {
		fd = -1;
		(void)snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	fd = -1;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fsync(dfd) != 0) {
		(void)snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto done;
	}
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	/* Never leave a half-written key to be found next time. */
	if (rc != 0 && made)
		(void)unlink(path);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(hex, sizeof(hex));
	umask(old);
	return rc;
}

/* Parse "64 hex digits" plus trailing white space. */
static int
crypt_keyfile_parse(const char *path, const char *buf, size_t n,
		    uint8_t key[QUEUE_KEY_BYTES], char *err, size_t errlen)
{
	const char *end = NULL;
	size_t binlen = 0, i;

	if (sodium_hex2bin(key, QUEUE_KEY_BYTES, buf, n, NULL, &binlen, &end) !=
		0 ||
	    binlen != QUEUE_KEY_BYTES || end == NULL)
		goto bad;
	for (i = (size_t)(end - buf); i < n; i++)
		if (buf[i] != '\n' && buf[i] != '\r' && buf[i] != ' ' &&
		    buf[i] != '\t')
			goto bad;
	return 0;
bad:
	sodium_memzero(key, QUEUE_KEY_BYTES);
	(void)snprintf(err, errlen, "%s: not a key file (want %d hex digits)",
		       path, QUEUE_KEY_BYTES * 2);
	return -1;
}

int
queue_keyfile_load(const char *path, bool create, uint8_t key[QUEUE_KEY_BYTES],
		   char *err, size_t errlen)
{
	char buf[CRYPT_KEYFILE_MAX_BYTES];
	struct stat st;
	size_t n = 0;
	ssize_t r;
	int fd = -1, rc = -1, tries, made;

	if (crypt_init() != 0) {
		(void)snprintf(err, errlen, "libsodium initialisation failed");
		return -1;
	}
	if (path == NULL || *path == '\0') {
		(void)snprintf(err, errlen, "no key file configured");
		return -1;
	}
	for (tries = 0; tries < 2 && fd < 0; tries++) {
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0)
			break;
		if (errno == ELOOP) {
			(void)snprintf(err, errlen,
				       "%s: a symbolic link, refused", path);
			goto done;
		}
		if (errno != ENOENT || !create) {
			(void)snprintf(err, errlen, "%s: %s", path,
				       strerror(errno));
			goto done;
		}
		if ((made = crypt_keyfile_create(path, err, errlen)) < 0)
			goto done;
	}
	if (fd < 0) {
		(void)snprintf(err, errlen, "%s: cannot create or open", path);
		goto done;
	}
	if (fstat(fd, &st) != 0) {
		(void)snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		(void)snprintf(err, errlen, "%s: not a regular file", path);
		goto done;
	}
	if (st.st_mode & 077) {
		(void)snprintf(
		    err, errlen,
		    "%s: mode %04o, must not be readable by group or others",
		    path, (unsigned)(st.st_mode & 07777));
		goto done;
	}
	while (n < sizeof(buf)) {
		if ((r = read(fd, buf + n, sizeof(buf) - n)) < 0) {
			if (errno == EINTR)
				continue;
			(void)snprintf(err, errlen, "%s: %s", path,
				       strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n == sizeof(buf)) {
		(void)snprintf(err, errlen, "%s: not a key file (too long)",
			       path);
		goto done;
	}
	rc = crypt_keyfile_parse(path, buf, n, key, err, errlen);
done:
	if (fd >= 0)
		close(fd);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

/* The keyed address hash --------------------------------------------- */

static int
crypt_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void
queue_addr_hash(const uint8_t key[QUEUE_KEY_BYTES], const char *addr,
		char out[QUEUE_HASH_HEX_BYTES])
{
	crypto_generichash_state st;
	uint8_t h[16], tmp[256];
	const char *s = addr != NULL ? addr : "", *e;
	size_t i, n;

	(void)crypt_init();
	e = s + strlen(s);
	while (s < e && crypt_is_space(*s))
		s++;
	while (e > s && crypt_is_space(e[-1]))
		e--;
	if (s < e && *s == '<')
		s++;
	if (e > s && e[-1] == '>')
		e--;
	while (s < e && crypt_is_space(*s))
		s++;
	while (e > s && crypt_is_space(e[-1]))
		e--;
	crypto_generichash_init(&st, key, QUEUE_KEY_BYTES, sizeof(h));
	while (s < e) {
		n = (size_t)(e - s) < sizeof(tmp) ? (size_t)(e - s)
						  : sizeof(tmp);
		for (i = 0; i < n; i++)
			tmp[i] = (s[i] >= 'A' && s[i] <= 'Z')
				     ? (uint8_t)(s[i] - 'A' + 'a')
				     : (uint8_t)s[i];
		crypto_generichash_update(&st, tmp, n);
		s += n;
	}
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, QUEUE_HASH_HEX_BYTES, h, sizeof(h));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(tmp, sizeof(tmp));
}
