/*
 * auth.h — SMTP AUTH (RFC 4954): SASL PLAIN (RFC 4616) and LOGIN decoding,
 * and password verification against Argon2id hashes on the worker pool.
 *
 * A successful verification is remembered for conf auth_limit.cache_ttl as a
 * keyed BLAKE2b digest (process-random key, never written anywhere), so a
 * platform that reconnects often does not pay Argon2id on every session.
 */
#ifndef OUTPOST_MTA_AUTH_H
#define OUTPOST_MTA_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct conf;
struct conf_user;
struct loop;

#define AUTH_USER_MAX 255
#define AUTH_PASS_MAX 1023

/* auth_init — create the cache key.  0 ok, -1 fail.  Main, at start. */
int auth_init(void);

/*
 * auth_b64_decode — decode base64 SRC into DST (at most DSTLEN-1 bytes, then
 * NUL-terminated; the decoded data may itself hold NULs, *OUTLEN says how
 * many).  0 ok, -1 malformed or too long.
 */
int auth_b64_decode(const char *src, char *dst, size_t dstlen, size_t *outlen);

/*
 * auth_plain_split — split a decoded PLAIN response "authzid\0authcid\0passwd"
 * into USER and PASS.  An authzid must be empty or equal authcid.  0 ok, -1
 * malformed.
 */
int auth_plain_split(const char *resp, size_t len, char *user, size_t userlen,
		     char *pass, size_t passlen);

struct auth_request {
	/* in */
	const struct conf *conf;
	char user[AUTH_USER_MAX + 1];
	char pass[AUTH_PASS_MAX + 1]; /* wiped once verified */
	/* out */
	bool ok;
	const struct conf_user *u; /* the user, when known */
	/* owner */
	void (*done)(struct auth_request *req);
	void *arg;
};

/*
 * auth_verify — verify REQ on the worker pool, then call REQ->done(REQ) on
 * loop L.  REQ is owned by the caller and must live until done runs.  A
 * password for an unknown user costs the same as a known one.
 */
void auth_verify(struct loop *l, struct auth_request *req);

#endif
