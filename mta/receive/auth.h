/*
 * auth.h — SMTP AUTH (RFC 4954): SASL PLAIN (RFC 4616) and LOGIN decoding,
 * and password verification against Argon2id hashes on the worker pool.
 *
 * A successful verification is remembered for conf auth_limit.cache_ttl as a
 * keyed BLAKE2b digest (process-random key, never written anywhere), so a
 * platform that reconnects often does not pay Argon2id on every session.
 * Every attempt goes through the limiter (auth_limit.h) first: a place is
 * reserved before the password is checked and settled after, so the
 * limits hold however many sessions guess at once.
 */
#ifndef OUTPOST_MTA_AUTH_H
#define OUTPOST_MTA_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/receive/auth_limit.h"
#include "mta/receive/peer.h"

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
	struct peer_key client; /* who asks (the limiter's key) */
	char user[AUTH_USER_MAX + 1];
	char pass[AUTH_PASS_MAX + 1]; /* wiped once verified */
	/* out */
	bool ok;
	const struct conf_user *u; /* the user, when known */
	uint64_t delay_ms;         /* a failure: answer after this long */
	bool blocked; /* a failure that hit a limit: close the session */
	/* owner */
	void (*done)(struct auth_request *req);
	void *arg;
	/* private */
	struct auth_limit_ticket ticket;
};

/*
 * auth_verify — reserve REQ's place in the limiter, verify it on the worker
 * pool, settle it, then call REQ->done(REQ) on loop L.  Returns
 * AUTH_LIMIT_OK when the verification was queued (REQ is owned by the
 * caller and must live until done runs; done always runs, also for a
 * session that ended meanwhile, so the outcome is always counted).  Any
 * other verdict: refused without a verification, the password is wiped,
 * done is not called, and for a block *LEFT_MS says how long it lasts.
 * A password for an unknown user costs the same as a known one.  Loop L's
 * thread.
 */
enum auth_limit_verdict auth_verify(struct loop *l, struct auth_request *req,
				    uint64_t *left_ms);

#endif
