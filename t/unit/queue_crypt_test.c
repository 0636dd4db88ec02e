/*
 * queue_crypt_test.c — sealing (queue/crypt.c) under both algorithms,
 * tampering, wrong key, moved records; key files and their modes; the keyed
 * address hash against values computed independently (Python hashlib).
 */
#include <sys/stat.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "queue/crypt_int.h"

static const uint8_t key_a[QUEUE_KEY_BYTES] = {
	0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
};
static const uint8_t lkey_a[8] = { 0, 0, 1, 2, 3, 4, 5, 6 };
static const uint8_t lkey_b[8] = { 0, 0, 1, 2, 3, 4, 5, 7 };

static const char *
alg_name(enum crypt_alg alg)
{
	return alg == CRYPT_ALG_AES256GCM ? "AES-256-GCM"
					  : "XChaCha20-Poly1305";
}

/* A key sealing with ALG, or NULL (and a note) when the CPU lacks it. */
static struct crypt_key *
key_make(const uint8_t raw[QUEUE_KEY_BYTES], enum crypt_alg alg)
{
	struct crypt_key *k = NULL;
	char err[160];

	if (alg == CRYPT_ALG_AES256GCM &&
	    !crypto_aead_aes256gcm_is_available()) {
		print_message("AES-256-GCM unavailable on this CPU: skipped\n");
		return NULL;
	}
	crypt_alg_force(alg);
	if (crypt_key_new(&k, raw, err, sizeof(err)) != 0)
		fail_msg("crypt_key_new: %s", err);
	crypt_alg_force(CRYPT_ALG_AUTO);
	assert_int_equal(crypt_key_alg(k), alg);
	return k;
}

/* Seal PLAIN under K for (DB, LKEY); returns a malloc'd sealed record. */
static uint8_t *
seal(const struct crypt_key *k, uint8_t db, const uint8_t *lkey,
     const uint8_t *plain, size_t n)
{
	uint8_t *out = malloc(crypt_sealed_len(n));
	char err[160];

	assert_non_null(out);
	if (crypt_seal(k, db, lkey, 8, plain, n, out, err, sizeof(err)) != 0)
		fail_msg("crypt_seal: %s", err);
	return out;
}

/* Open; 0 or -1 with err. */
static int
open_rec(const struct crypt_key *k, uint8_t db, const uint8_t *lkey,
	 const uint8_t *sealed, size_t slen, uint8_t **plain, size_t *plen,
	 char *err, size_t errlen)
{
	*plain = malloc(slen > CRYPT_OVERHEAD_BYTES ? slen : 1);
	assert_non_null(*plain);
	err[0] = '\0';
	return crypt_open(k, db, lkey, 8, sealed, slen, *plain, plen, err,
			  errlen);
}

static void
test_key_id(void **state)
{
	struct crypt_key *k = NULL;
	char err[160];

	(void)state;
	assert_int_equal(crypt_key_new(&k, key_a, err, sizeof(err)), 0);
	/* BLAKE2b-256(key)[0..4], from Python hashlib. */
	assert_int_equal(crypt_key_id(k), 0xcb2f5160u);
	crypt_key_free(k);
}

static void
test_roundtrip(void **state)
{
	static const enum crypt_alg algs[] = { CRYPT_ALG_AES256GCM,
					       CRYPT_ALG_XCHACHA20POLY1305 };
	static const size_t sizes[] = { 0, 1, 1000, QUEUE_CHUNK_BYTES };
	struct crypt_key *k;
	uint8_t *plain, *sealed, *sealed2, *out;
	size_t a, s, n, olen;
	char err[160];

	(void)state;
	for (a = 0; a < 2; a++) {
		if ((k = key_make(key_a, algs[a])) == NULL)
			continue;
		for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			n = sizes[s];
			print_message("%s, %zu bytes\n", alg_name(algs[a]), n);
			plain = malloc(n + 1);
			assert_non_null(plain);
			randombytes_buf(plain, n);
			sealed = seal(k, CRYPT_DB_BODY, lkey_a, plain, n);
			assert_int_equal(sealed[0], CRYPT_VERSION);
			assert_int_equal(sealed[1], algs[a]);
			if (open_rec(k, CRYPT_DB_BODY, lkey_a, sealed,
				     crypt_sealed_len(n), &out, &olen, err,
				     sizeof(err)) != 0)
				fail_msg("open: %s", err);
			assert_int_equal(olen, n);
			assert_memory_equal(out, plain, n);
			/* A fresh salt every time: never the same bytes. */
			sealed2 = seal(k, CRYPT_DB_BODY, lkey_a, plain, n);
			assert_memory_not_equal(sealed, sealed2,
						crypt_sealed_len(n));
			free(sealed2);
			free(out);
			free(sealed);
			free(plain);
		}
		crypt_key_free(k);
	}
}

/* Records sealed with either algorithm open under a key of the other. */
static void
test_cross_algorithm(void **state)
{
	struct crypt_key *aes, *xc;
	uint8_t *sealed, *out;
	size_t olen;
	char err[160];

	(void)state;
	if ((aes = key_make(key_a, CRYPT_ALG_AES256GCM)) == NULL)
		return;
	xc = key_make(key_a, CRYPT_ALG_XCHACHA20POLY1305);
	sealed = seal(aes, CRYPT_DB_ENV, lkey_a, (const uint8_t *)"abc", 3);
	if (open_rec(xc, CRYPT_DB_ENV, lkey_a, sealed, crypt_sealed_len(3),
		     &out, &olen, err, sizeof(err)) != 0)
		fail_msg("open: %s", err);
	assert_memory_equal(out, "abc", 3);
	free(out);
	free(sealed);
	crypt_key_free(aes);
	crypt_key_free(xc);
}

/* Records of 4 KiB and more go through OpenSSL's AES-256-GCM, smaller ones
 * through libsodium's: the same bytes, so each opens what the other sealed,
 * and a changed byte anywhere (header, salt, text, tag) is refused by
 * both. */
static void
test_openssl_and_libsodium_agree(void **state)
{
	static const size_t sizes[] = { 4095, 4096, 5000, QUEUE_CHUNK_BYTES };
	struct crypt_key *k;
	uint8_t *plain, *sealed, *out;
	size_t s, n, slen, olen, i, at[6];
	int by, with;
	char err[160];

	(void)state;
	if ((k = key_make(key_a, CRYPT_ALG_AES256GCM)) == NULL)
		return;
	assert_true(crypt_ossl_available());
	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		n = sizes[s];
		slen = crypt_sealed_len(n);
		plain = malloc(n);
		assert_non_null(plain);
		randombytes_buf(plain, n);
		for (by = 0; by < 2; by++) {
			crypt_ossl_disable(by == 1);
			sealed = seal(k, CRYPT_DB_BODY, lkey_a, plain, n);
			for (with = 0; with < 2; with++) {
				print_message("%zu bytes, sealed by %s, opened "
					      "by %s\n",
					      n, by ? "libsodium" : "default",
					      with ? "libsodium" : "default");
				crypt_ossl_disable(with == 1);
				if (open_rec(k, CRYPT_DB_BODY, lkey_a, sealed,
					     slen, &out, &olen, err,
					     sizeof(err)) != 0)
					fail_msg("open: %s", err);
				assert_int_equal(olen, n);
				assert_memory_equal(out, plain, n);
				free(out);
				at[0] = 0;
				at[1] = 7;
				at[2] = CRYPT_HEADER_BYTES + CRYPT_SALT_BYTES;
				at[3] = slen / 2;
				at[4] = slen - CRYPT_TAG_BYTES;
				at[5] = slen - 1;
				for (i = 0; i < 6; i++) {
					sealed[at[i]] ^= 0x01;
					if (open_rec(k, CRYPT_DB_BODY, lkey_a,
						     sealed, slen, &out, &olen,
						     err, sizeof(err)) == 0)
						fail_msg("byte %zu flipped, "
							 "still opens",
							 at[i]);
					free(out);
					sealed[at[i]] ^= 0x01;
				}
			}
			free(sealed);
		}
		crypt_ossl_disable(false);
		free(plain);
	}
	crypt_key_free(k);
}

/* Every single-byte change, a wrong key, a moved record: all refused. */
static void
test_tamper(void **state)
{
	static const enum crypt_alg algs[] = { CRYPT_ALG_AES256GCM,
					       CRYPT_ALG_XCHACHA20POLY1305 };
	static const char plain[] = "MAIL FROM:<secret@example.org>";
	const size_t n = sizeof(plain) - 1, slen = crypt_sealed_len(n);
	uint8_t raw_b[QUEUE_KEY_BYTES], *sealed, *out;
	struct crypt_key *k, *kb;
	size_t a, i, olen;
	char err[160];

	(void)state;
	memcpy(raw_b, key_a, sizeof(raw_b));
	raw_b[31] ^= 1;
	for (a = 0; a < 2; a++) {
		if ((k = key_make(key_a, algs[a])) == NULL)
			continue;
		kb = key_make(raw_b, algs[a]);
		sealed =
		    seal(k, CRYPT_DB_ENV, lkey_a, (const uint8_t *)plain, n);
		for (i = 0; i < slen; i++) {
			sealed[i] ^= 0x20;
			if (open_rec(k, CRYPT_DB_ENV, lkey_a, sealed, slen,
				     &out, &olen, err, sizeof(err)) == 0)
				fail_msg("%s: byte %zu flipped, still opens",
					 alg_name(algs[a]), i);
			assert_true(err[0] != '\0');
			free(out);
			sealed[i] ^= 0x20;
		}
		/* Truncated: every shorter length. */
		for (i = 0; i < slen; i++) {
			assert_int_equal(open_rec(k, CRYPT_DB_ENV, lkey_a,
						  sealed, i, &out, &olen, err,
						  sizeof(err)),
					 -1);
			free(out);
		}
		/* Wrong key. */
		assert_int_equal(open_rec(kb, CRYPT_DB_ENV, lkey_a, sealed,
					  slen, &out, &olen, err, sizeof(err)),
				 -1);
		assert_non_null(
		    strstr(err, "authentication failed (wrong key?"));
		free(out);
		/* Wrong key with the header's key id forged to match. */
		sealed[2] = (uint8_t)(crypt_key_id(kb) >> 24);
		sealed[3] = (uint8_t)(crypt_key_id(kb) >> 16);
		sealed[4] = (uint8_t)(crypt_key_id(kb) >> 8);
		sealed[5] = (uint8_t)crypt_key_id(kb);
		assert_int_equal(open_rec(kb, CRYPT_DB_ENV, lkey_a, sealed,
					  slen, &out, &olen, err, sizeof(err)),
				 -1);
		assert_string_equal(err, "authentication failed (wrong key?)");
		free(out);
		free(sealed);
		/* Moved to another LMDB key, or another database. */
		sealed =
		    seal(k, CRYPT_DB_ENV, lkey_a, (const uint8_t *)plain, n);
		assert_int_equal(open_rec(k, CRYPT_DB_ENV, lkey_b, sealed, slen,
					  &out, &olen, err, sizeof(err)),
				 -1);
		assert_string_equal(err, "authentication failed (wrong key?)");
		free(out);
		assert_int_equal(open_rec(k, CRYPT_DB_BODY, lkey_a, sealed,
					  slen, &out, &olen, err, sizeof(err)),
				 -1);
		free(out);
		free(sealed);
		crypt_key_free(kb);
		crypt_key_free(k);
	}
}

/* Key files ----------------------------------------------------------- */

static char tmpdir[256];

static int
setup_tmp(void **state)
{
	(void)state;
	assert_true(snprintf(tmpdir, sizeof(tmpdir), "%s/qcrypt.XXXXXX",
			     getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp") <
		    (int)sizeof(tmpdir));
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int
teardown_tmp(void **state)
{
	char cmd[512];

	(void)state;
	if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir) <
	    (int)sizeof(cmd))
		assert_int_equal(system(cmd), 0);
	return 0;
}

static void
path_in(char *buf, size_t size, const char *name)
{
	assert_true(snprintf(buf, size, "%s/%s", tmpdir, name) < (int)size);
}

static void
file_put(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_keyfile_create(void **state)
{
	uint8_t k1[QUEUE_KEY_BYTES], k2[QUEUE_KEY_BYTES];
	char path[512], dir[512], err[256], text[128];
	struct stat st;
	FILE *f;
	size_t n;

	(void)state;
	path_in(dir, sizeof(dir), "a/b");
	path_in(path, sizeof(path), "a/b/queue.key");
	/* Absent and not to be created: an error naming the file. */
	assert_int_equal(queue_keyfile_load(path, false, k1, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, path));
	/* Created: 0600 in new 0700 directories, 64 hex digits. */
	umask(022);
	if (queue_keyfile_load(path, true, k1, err, sizeof(err)) != 0)
		fail_msg("create: %s", err);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	assert_int_equal(n, 65);
	assert_int_equal(text[64], '\n');
	assert_int_equal(strspn(text, "0123456789abcdef"), 64);
	/* Loaded again: the same key; create does not replace it. */
	assert_int_equal(queue_keyfile_load(path, true, k2, err, sizeof(err)),
			 0);
	assert_memory_equal(k1, k2, sizeof(k1));
	/* A 0400 file is fine. */
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(queue_keyfile_load(path, false, k2, err, sizeof(err)),
			 0);
	assert_memory_equal(k1, k2, sizeof(k1));
}

static void
test_keyfile_refused(void **state)
{
	static const struct {
		const char *name;
		const char *text;
		mode_t mode;
		const char *want; /* substring of the error; NULL = loads */
	} cases[] = {
		{ "good",
		  "000102030405060708090a0b0c0d0e0f"
		  "101112131415161718191a1b1c1d1e1f\n",
		  0600, NULL },
		{ "upper case, no newline",
		  "000102030405060708090A0B0C0D0E0F"
		  "101112131415161718191A1B1C1D1E1F",
		  0600, NULL },
		{ "mode 0644",
		  "000102030405060708090a0b0c0d0e0f"
		  "101112131415161718191a1b1c1d1e1f\n",
		  0644, "mode 0644, must not be readable by group or others" },
		{ "mode 0640",
		  "000102030405060708090a0b0c0d0e0f"
		  "101112131415161718191a1b1c1d1e1f\n",
		  0640, "mode 0640" },
		{ "mode 0602",
		  "000102030405060708090a0b0c0d0e0f"
		  "101112131415161718191a1b1c1d1e1f\n",
		  0602, "mode 0602" },
		{ "short", "0001020304\n", 0600, "not a key file" },
		{ "long",
		  "000102030405060708090a0b0c0d0e0f"
		  "101112131415161718191a1b1c1d1e1f00\n",
		  0600, "not a key file" },
		{ "junk after",
		  "000102030405060708090a0b0c0d0e0f"
		  "101112131415161718191a1b1c1d1e1f x\n",
		  0600, "not a key file" },
		{ "empty", "", 0600, "not a key file" },
	};
	uint8_t key[QUEUE_KEY_BYTES];
	char path[512], err[256];
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		path_in(path, sizeof(path), "k");
		(void)unlink(path);
		file_put(path, cases[i].text, cases[i].mode);
		err[0] = '\0';
		rc = queue_keyfile_load(path, true, key, err, sizeof(err));
		if (cases[i].want == NULL) {
			if (rc != 0)
				fail_msg("%s: %s", cases[i].name, err);
			assert_memory_equal(key, key_a, sizeof(key));
		} else if (rc == 0 || strstr(err, cases[i].want) == NULL ||
			   strstr(err, path) == NULL)
			fail_msg("%s: rc %d, err \"%s\", want \"%s\"",
				 cases[i].name, rc, err, cases[i].want);
	}
	/* A symbolic link is not followed. */
	path_in(err, sizeof(err), "link");
	assert_int_equal(symlink(path, err), 0);
	assert_int_equal(queue_keyfile_load(err, true, key, path, sizeof(path)),
			 -1);
	assert_non_null(strstr(path, "symbolic link"));
}

/* The keyed address hash ---------------------------------------------- */

static void
test_addr_hash(void **state)
{
	static const struct {
		const char *addr;
		const char *want;
	} cases[] = {
		/* From Python: blake2b(addr, key=bytes(range(32)),
		 * digest_size=16). */
		{ "jane@example.org", "f6ca6f993082192af36bbcf92e94faf8" },
		{ "Jane@Example.ORG", "f6ca6f993082192af36bbcf92e94faf8" },
		{ "<jane@example.org>", "f6ca6f993082192af36bbcf92e94faf8" },
		{ "  <JANE@EXAMPLE.ORG> \r\n",
		  "f6ca6f993082192af36bbcf92e94faf8" },
		{ " < jane@example.org > ",
		  "f6ca6f993082192af36bbcf92e94faf8" },
	};
	char out[QUEUE_HASH_HEX_BYTES], other[QUEUE_HASH_HEX_BYTES];
	uint8_t key_b[QUEUE_KEY_BYTES];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		queue_addr_hash(key_a, cases[i].addr, out);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("\"%s\": %s, want %s", cases[i].addr, out,
				 cases[i].want);
	}
	queue_addr_hash(key_a, "john@example.org", other);
	assert_string_not_equal(out, other);
	memcpy(key_b, key_a, sizeof(key_b));
	key_b[0] ^= 1;
	queue_addr_hash(key_b, "jane@example.org", other);
	assert_string_not_equal(out, other);
	/* Non-ASCII bytes are hashed as they are, not folded. */
	queue_addr_hash(key_a, "J\xc3\x96RG@example.org", out);
	queue_addr_hash(key_a, "j\xc3\xb6rg@example.org", other);
	assert_string_not_equal(out, other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_id),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_cross_algorithm),
		cmocka_unit_test(test_openssl_and_libsodium_agree),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test_setup_teardown(test_keyfile_create, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_keyfile_refused, setup_tmp,
						teardown_tmp),
		cmocka_unit_test(test_addr_hash),
	};

	if (crypt_init() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
