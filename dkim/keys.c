/*
 * keys.c — DKIM private keys: locked memory set-up, PEM loading (mode
 * check, RSA parsed once into an EVP_PKEY on OpenSSL's secure heap, Ed25519
 * into libsodium secure memory), key generation and the DNS TXT record.
 * Owns: struct dkim_key and the key material.  Must not: keep key octets
 * in ordinary memory longer than a parse, prompt for a pass phrase, follow
 * a request for a key that group or others may read.
 * Thread: init, load, generate and free on the main thread; signing
 * (dkim_key_sign_digest) on any thread, reading the key only.
 * Invariants: a loaded key is either RSA (pkey set, 1024..8192 bits) or
 * Ed25519 (ed_sk set, read-only); never both.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "dkim/canon_int.h"
#include "dkim/keys_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define KEYS_SECURE_HEAP_DEFAULT_BYTES ((size_t)2 << 20)
#define KEYS_SECURE_HEAP_MAX_BYTES     ((size_t)1 << 30)
#define KEYS_SECURE_MIN_BYTES          16
#define KEYS_PEM_MAX_BYTES             (64 * 1024)
#define KEYS_ED25519_SEED_BYTES        32

struct dkim_key {
	enum dkim_alg alg;
	unsigned bits;
	EVP_PKEY *pkey;       /* RSA: private parts on the secure heap */
	unsigned char *ed_sk; /* Ed25519: sodium_malloc, read-only */
	unsigned char ed_pk[crypto_sign_PUBLICKEYBYTES];
};

static int keys_ready; /* dkim_keys_init() succeeded */

/* keys_ssl_err — append OpenSSL's first queued error to ERR, then clear. */
static void
keys_ssl_err(char *err, size_t errlen)
{
	char buf[160];
	unsigned long e;
	size_t used;

	e = ERR_peek_error();
	ERR_clear_error();
	if (e == 0 || err == NULL || errlen == 0)
		return;
	ERR_error_string_n(e, buf, sizeof(buf));
	used = strlen(err);
	if (used < errlen)
		(void)snprintf(err + used, errlen - used, " (%s)", buf);
}

static void
keys_err(char *err, size_t errlen, const char *path, const char *what)
{
	dkim_err(err, errlen, "%s: %s", path, what);
}

int
dkim_keys_init(size_t secure_heap_bytes, char *err, size_t errlen)
{
	size_t size = KEYS_SECURE_HEAP_DEFAULT_BYTES;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (sodium_init() < 0) {
		keys_err(err, errlen, "dkim_keys_init", "sodium_init failed");
		return -1;
	}
	if (secure_heap_bytes > KEYS_SECURE_HEAP_MAX_BYTES) {
		keys_err(err, errlen, "dkim_keys_init",
			 "secure heap larger than 1 GiB");
		return -1;
	}
	if (secure_heap_bytes != 0) {
		/* OpenSSL wants a power of two. */
		size = KEYS_SECURE_MIN_BYTES;
		while (size < secure_heap_bytes)
			size <<= 1;
	}
	if (CRYPTO_secure_malloc_initialized()) {
		keys_ready = 1;
		return 0;
	}
	rc = CRYPTO_secure_malloc_init(size, KEYS_SECURE_MIN_BYTES);
	if (rc == 0) {
		keys_err(err, errlen, "dkim_keys_init",
			 "cannot set up OpenSSL's secure heap");
		keys_ssl_err(err, errlen);
		return -1;
	}
	keys_ready = 1;
	if (rc == 2) {
		if (err != NULL && errlen > 0)
			(void)snprintf(
			    err, errlen,
			    "dkim_keys_init: the %zu-byte secure heap for "
			    "private keys is not locked in memory "
			    "(RLIMIT_MEMLOCK too low?): keys may be swapped "
			    "out",
			    size);
		return 1;
	}
	return 0;
}

void
dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey); /* OpenSSL cleanses secure allocations */
	if (k->ed_sk != NULL)
		sodium_free(k->ed_sk); /* zeroes, unlocks */
	free(k);
}

enum dkim_alg
dkim_key_alg(const struct dkim_key *k)
{
	return k->alg;
}

unsigned
dkim_key_bits(const struct dkim_key *k)
{
	return k->bits;
}

int
dkim_key_ed25519_from_seed(const uint8_t seed[32], struct dkim_key **out,
			   char *err, size_t errlen)
{
	struct dkim_key *k;

	*out = NULL;
	if (!keys_ready) {
		keys_err(err, errlen, "dkim_key",
			 "dkim_keys_init() must be called first");
		return -1;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->ed_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES)) == NULL) {
		keys_err(err, errlen, "dkim_key", "out of memory");
		free(k);
		return -1;
	}
	k->alg = DKIM_ALG_ED25519_SHA256;
	k->bits = 256;
	if (crypto_sign_seed_keypair(k->ed_pk, k->ed_sk, seed) != 0 ||
	    sodium_mprotect_readonly(k->ed_sk) != 0) {
		keys_err(err, errlen, "dkim_key", "Ed25519 key set-up failed");
		dkim_key_free(k);
		return -1;
	}
	*out = k;
	return 0;
}

/* The PEM reader must never prompt: an encrypted key is an error. */
static int
keys_pem_nopass_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/*
 * keys_read_pem — open PATH, refuse a mode open to group or others (checked
 * on the open file), read at most KEYS_PEM_MAX_BYTES into secure memory.
 * *BUF is freed by the caller with OPENSSL_secure_clear_free(*BUF, *LEN).
 */
static int
keys_read_pem(const char *path, char **buf, size_t *len, char *err,
	      size_t errlen)
{
	struct stat st;
	char what[96];
	ssize_t n;
	size_t got = 0;
	int fd;

	*buf = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		keys_err(err, errlen, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		keys_err(err, errlen, path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		keys_err(err, errlen, path, "not a regular file");
		goto fail;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		(void)snprintf(
		    what, sizeof(what),
		    "mode %04o, must not be accessible by group or others",
		    (unsigned)(st.st_mode & 07777));
		keys_err(err, errlen, path, what);
		goto fail;
	}
	if (st.st_size > KEYS_PEM_MAX_BYTES) {
		keys_err(err, errlen, path, "too large for a PEM key");
		goto fail;
	}
	*len = (size_t)st.st_size;
	if ((*buf = OPENSSL_secure_malloc(*len + 1)) == NULL) {
		keys_err(err, errlen, path, "secure heap exhausted");
		goto fail;
	}
	while (got < *len) {
		n = read(fd, *buf + got, *len - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			keys_err(err, errlen, path,
				 n == 0 ? "short read" : strerror(errno));
			goto fail;
		}
		got += (size_t)n;
	}
	(*buf)[*len] = '\0';
	(void)close(fd);
	return 0;
fail:
	if (*buf != NULL)
		OPENSSL_secure_clear_free(*buf, *len + 1);
	*buf = NULL;
	*len = 0;
	(void)close(fd);
	return -1;
}

static int
keys_load_rsa(const char *path, EVP_PKEY **pkey, struct dkim_key *k, char *err,
	      size_t errlen)
{
	EVP_PKEY_CTX *ctx = NULL;
	char what[96];
	int bits, ok;

	bits = EVP_PKEY_get_bits(*pkey);
	if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS) {
		(void)snprintf(what, sizeof(what),
			       "RSA key of %d bits, outside %d..%d", bits,
			       DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS);
		keys_err(err, errlen, path, what);
		return -1;
	}
	/* Once, at load: p * q = n, d * e = 1 (a damaged key file would
	 * otherwise make bad signatures on every message). */
	ok = (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, *pkey, NULL)) != NULL &&
	     EVP_PKEY_pairwise_check(ctx) == 1;
	EVP_PKEY_CTX_free(ctx);
	if (!ok) {
		keys_err(err, errlen, path, "inconsistent RSA key");
		keys_ssl_err(err, errlen);
		return -1;
	}
	k->alg = DKIM_ALG_RSA_SHA256;
	k->bits = (unsigned)bits;
	k->pkey = *pkey;
	*pkey = NULL;
	return 0;
}

static int
keys_load_ed25519(const char *path, EVP_PKEY *pkey, struct dkim_key **out,
		  char *err, size_t errlen)
{
	unsigned char *seed, pub[crypto_sign_PUBLICKEYBYTES];
	size_t n = KEYS_ED25519_SEED_BYTES, pn = sizeof(pub);
	int rc = -1;

	if ((seed = sodium_malloc(KEYS_ED25519_SEED_BYTES)) == NULL) {
		keys_err(err, errlen, path, "out of memory");
		return -1;
	}
	if (EVP_PKEY_get_raw_private_key(pkey, seed, &n) != 1 ||
	    n != KEYS_ED25519_SEED_BYTES ||
	    EVP_PKEY_get_raw_public_key(pkey, pub, &pn) != 1 ||
	    pn != sizeof(pub)) {
		keys_err(err, errlen, path, "cannot extract the Ed25519 key");
		keys_ssl_err(err, errlen);
		goto done;
	}
	if (dkim_key_ed25519_from_seed(seed, out, err, errlen) != 0)
		goto done;
	if (sodium_memcmp((*out)->ed_pk, pub, sizeof(pub)) != 0) {
		keys_err(err, errlen, path, "inconsistent Ed25519 key");
		dkim_key_free(*out);
		*out = NULL;
		goto done;
	}
	rc = 0;
done:
	sodium_free(seed);
	return rc;
}

int
dkim_key_load(const char *path, struct dkim_key **out, char *err, size_t errlen)
{
	struct dkim_key *k = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *pem = NULL, what[96];
	size_t len = 0;
	int type, rc = -1;

	*out = NULL;
	if (!keys_ready) {
		keys_err(err, errlen, path,
			 "dkim_keys_init() must be called before loading keys");
		return -1;
	}
	if (keys_read_pem(path, &pem, &len, err, errlen) != 0)
		return -1;
	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		keys_err(err, errlen, path, "out of memory");
		goto done;
	}
	if (strstr(pem, "-----BEGIN ") == NULL ||
	    (pkey = PEM_read_bio_PrivateKey(bio, NULL, keys_pem_nopass_cb,
					    NULL)) == NULL) {
		keys_err(err, errlen, path,
			 "not an unencrypted PEM private key");
		keys_ssl_err(err, errlen);
		goto done;
	}
	type = EVP_PKEY_get_base_id(pkey);
	if (type == EVP_PKEY_RSA) {
		if ((k = calloc(1, sizeof(*k))) == NULL) {
			keys_err(err, errlen, path, "out of memory");
			goto done;
		}
		if (keys_load_rsa(path, &pkey, k, err, errlen) != 0)
			goto done;
	} else if (type == EVP_PKEY_ED25519) {
		if (keys_load_ed25519(path, pkey, &k, err, errlen) != 0)
			goto done;
	} else {
		(void)snprintf(what, sizeof(what),
			       "unsupported key type %s (want RSA or Ed25519)",
			       OBJ_nid2sn(type) != NULL ? OBJ_nid2sn(type)
							: "?");
		keys_err(err, errlen, path, what);
		goto done;
	}
	*out = k;
	k = NULL;
	rc = 0;
done:
	dkim_key_free(k);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	OPENSSL_secure_clear_free(pem, len + 1);
	ERR_clear_error();
	return rc;
}

int
dkim_key_sign_digest(const struct dkim_key *k, const uint8_t digest[32],
		     uint8_t sig[DKIM_SIG_MAX_BYTES], size_t *siglen, char *err,
		     size_t errlen)
{
	EVP_PKEY_CTX *ctx = NULL;
	unsigned long long slen = 0;
	int rc = -1;

	if (k->alg == DKIM_ALG_ED25519_SHA256) {
		if (crypto_sign_detached(sig, &slen, digest, 32, k->ed_sk) !=
			0 ||
		    slen != crypto_sign_BYTES) {
			keys_err(err, errlen, "dkim_sign", "Ed25519 failed");
			return -1;
		}
		*siglen = (size_t)slen;
		return 0;
	}
	/* A context per signature: creating one costs ~2% of an RSA-2048
	 * signature, and the shared EVP_PKEY stays read-only. */
	*siglen = DKIM_SIG_MAX_BYTES;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL)) == NULL ||
	    EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_sign(ctx, sig, siglen, digest, 32) != 1) {
		keys_err(err, errlen, "dkim_sign", "RSA signature failed");
		keys_ssl_err(err, errlen);
		goto done;
	}
	rc = 0;
done:
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* keys_txt — "v=DKIM1; k=…; p=…" for a public key given as DER or raw. */
static char *
keys_txt(const char *k, const unsigned char *pub, size_t n)
{
	size_t b64len = 4 * ((n + 2) / 3) + 1, len;
	char *txt;
	int w;

	len = sizeof("v=DKIM1; k=; p=") + strlen(k) + b64len;
	if ((txt = malloc(len)) == NULL)
		return NULL;
	w = snprintf(txt, len, "v=DKIM1; k=%s; p=", k);
	if (w < 0 || (size_t)w >= len ||
	    dkim_base64(pub, n, txt + w, len - (size_t)w) < 0) {
		free(txt);
		return NULL;
	}
	return txt;
}

/* RSA: p= is the SubjectPublicKeyInfo DER (RFC 6376 3.6.1); Ed25519: p=
 * is the raw 32-octet public key (RFC 8463 4). */
static char *
keys_txt_pkey(EVP_PKEY *pkey)
{
	unsigned char raw[crypto_sign_PUBLICKEYBYTES], *der = NULL;
	size_t rn = sizeof(raw);
	char *txt = NULL;
	int n;

	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) {
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &rn) == 1 &&
		    rn == sizeof(raw))
			txt = keys_txt("ed25519", raw, rn);
		ERR_clear_error();
		return txt;
	}
	if ((n = i2d_PUBKEY(pkey, &der)) > 0)
		txt = keys_txt("rsa", der, (size_t)n);
	OPENSSL_free(der);
	ERR_clear_error();
	return txt;
}

char *
dkim_key_txt(const struct dkim_key *k)
{
	if (k->alg == DKIM_ALG_ED25519_SHA256)
		return keys_txt("ed25519", k->ed_pk, sizeof(k->ed_pk));
	return keys_txt_pkey(k->pkey);
}

/* keys_mkdir_parents — create the missing directories above PATH, 0700. */
static int
keys_mkdir_parents(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	size_t i, len = strlen(path);

	if (len == 0 || len >= sizeof(dir)) {
		keys_err(err, errlen, path, "bad path");
		return -1;
	}
	memcpy(dir, path, len + 1);
	for (i = 1; i < len; i++) {
		if (dir[i] != '/')
			continue;
		dir[i] = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			keys_err(err, errlen, dir, strerror(errno));
			return -1;
		}
		dir[i] = '/';
	}
	return 0;
}

static int
keys_write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
dkim_key_generate(const char *path, enum dkim_alg alg, unsigned bits,
		  char **txt, char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *pem = NULL;
	long pemlen;
	int fd = -1, created = 0, rc = -1;

	*txt = NULL;
	if (alg == DKIM_ALG_RSA_SHA256 &&
	    (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS)) {
		keys_err(err, errlen, path, "RSA size outside 1024..8192 bits");
		return -1;
	}
	if (keys_mkdir_parents(path, err, errlen) != 0)
		return -1;
	ERR_clear_error();
	pkey = alg == DKIM_ALG_RSA_SHA256
		   ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
		   : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pkey == NULL) {
		keys_err(err, errlen, path, "key generation failed");
		keys_ssl_err(err, errlen);
		goto done;
	}
	/* PKCS#8 "BEGIN PRIVATE KEY", through secure memory. */
	if ((bio = BIO_new(BIO_s_secmem())) == NULL ||
	    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) !=
		1 ||
	    (pemlen = BIO_get_mem_data(bio, &pem)) <= 0) {
		keys_err(err, errlen, path, "cannot encode the key");
		keys_ssl_err(err, errlen);
		goto done;
	}
	if ((*txt = keys_txt_pkey(pkey)) == NULL) {
		keys_err(err, errlen, path, "cannot encode the public key");
		goto done;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd == -1) {
		keys_err(err, errlen, path, strerror(errno));
		goto done;
	}
	created = 1;
	/* 0600 whatever the umask (it can only have removed bits). */
	if (fchmod(fd, 0600) != 0 ||
	    keys_write_all(fd, pem, (size_t)pemlen) != 0 || fsync(fd) != 0) {
		keys_err(err, errlen, path, strerror(errno));
		goto done;
	}
	if (close(fd) != 0) {
		fd = -1;
		keys_err(err, errlen, path, strerror(errno));
		goto done;
	}
	fd = -1;
	rc = 0;
done:
	if (fd != -1)
		(void)close(fd);
	if (rc != 0) {
		if (created)
			(void)unlink(path);
		free(*txt);
		*txt = NULL;
	}
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}
