/*
 * keys_int.h — dkim/ internals of keys.c used by sign.c and the fuzz
 * harness: signing a digest with a loaded key, and an Ed25519 key made
 * from its 32-octet seed.  Not part of the public interface.
 */
#ifndef OUTPOST_DKIM_KEYS_INT_H
#define OUTPOST_DKIM_KEYS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "dkim/dkim.h"

#define DKIM_RSA_MIN_BITS  1024
#define DKIM_RSA_MAX_BITS  8192
#define DKIM_SIG_MAX_BYTES (DKIM_RSA_MAX_BITS / 8)

/*
 * dkim_key_sign_digest — sign the SHA-256 DIGEST of the canonical header
 * data: RSA = PKCS#1 v1.5 over DigestInfo(SHA-256) (RFC 6376 3.3.1; what
 * RSA_sign(NID_sha256) makes), Ed25519 = PureEdDSA over the 32 digest
 * octets (RFC 8463 3).  Both are deterministic.  SIG receives *SIGLEN
 * octets (at most DKIM_SIG_MAX_BYTES).  0 or -1 with err.  Any thread:
 * the key is only read.
 */
int dkim_key_sign_digest(const struct dkim_key *k, const uint8_t digest[32],
			 uint8_t sig[DKIM_SIG_MAX_BYTES], size_t *siglen,
			 char *err, size_t errlen);

/*
 * dkim_key_ed25519_from_seed — an Ed25519 key from its RFC 8032 seed (the
 * 32 octets a PKCS#8 file holds), the secret key kept in libsodium secure
 * memory (mlock'd, read-only).  Needs dkim_keys_init().  0 or -1 with err.
 */
int dkim_key_ed25519_from_seed(const uint8_t seed[32], struct dkim_key **out,
			       char *err, size_t errlen);

#endif
