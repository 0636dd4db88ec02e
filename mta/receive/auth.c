/*
 * auth.c — SASL decoding and password verification.
 *
 * Owns: the verified-credential cache.  Verification (Argon2id, ~tens of ms
 * and 64 MiB) runs only on worker threads, never on an I/O loop.  Passwords
 * are wiped as soon as they have been checked; nothing here logs a password
 * or a user name that is not configured.
 */
#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "conf/conf.h"
#include "mta/receive/auth.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/observe/stats.h"
#include "mta/core/worker.h"

#define AUTH_CACHE_SLOTS 1024

struct auth_cache_slot {
	unsigned char digest[crypto_generichash_BYTES];
	int64_t expires_ms;
};

static pthread_mutex_t auth_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *auth_cache_key; /* sodium_malloc'd */
static struct auth_cache_slot auth_cache[AUTH_CACHE_SLOTS];
/* A valid hash to verify against for unknown users (equal cost), with the
 * same parameters as `outpost passwd` makes; its password was random and is
 * forgotten.  A constant, so that start-up does not spend 64 MiB and tens of
 * milliseconds making one. */
static const char auth_dummy_hash[crypto_pwhash_STRBYTES] =
    "$argon2id$v=19$m=65536,t=2,p=1$PUs+UF70X+SDVt5K8rSnnw$"
    "QCYnsYD3vl6pdOTZG4RzfIl/VekQJzhhU+VpU3uPGjM";

int
auth_init(void)
{
	if (sodium_init() < 0)
		return -1;
	if ((auth_cache_key = sodium_malloc(crypto_generichash_KEYBYTES)) ==
	    NULL)
		return -1;
	randombytes_buf(auth_cache_key, crypto_generichash_KEYBYTES);
	return 0;
}

int
auth_b64_decode(const char *src, char *dst, size_t dstlen, size_t *outlen)
{
	const char *end;
	size_t n = 0, slen = strlen(src);

	if (dstlen == 0)
		return -1;
	if (slen == 1 && src[0] == '=') {
		/* RFC 4954: "=" is an empty initial response. */
		*outlen = 0;
		dst[0] = '\0';
		return 0;
	}
	if (sodium_base642bin((unsigned char *)dst, dstlen - 1, src, slen, NULL,
			      &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != src + slen)
		return -1;
	dst[n] = '\0';
	*outlen = n;
	return 0;
}

int
auth_plain_split(const char *resp, size_t len, char *user, size_t userlen,
		 char *pass, size_t passlen)
{
	const char *authz = resp, *authc, *pw, *nul;
	size_t zlen, clen, plen;

	if ((nul = memchr(resp, '\0', len)) == NULL)
		return -1;
	zlen = (size_t)(nul - authz);
	authc = nul + 1;
	if ((nul = memchr(authc, '\0', len - zlen - 1)) == NULL)
		return -1;
	clen = (size_t)(nul - authc);
	pw = nul + 1;
	plen = len - zlen - clen - 2;
	if (memchr(pw, '\0', plen) != NULL || clen == 0 || plen == 0)
		return -1;
	if (zlen != 0 && (zlen != clen || memcmp(authz, authc, clen) != 0))
		return -1;
	if (clen >= userlen || plen >= passlen)
		return -1;
	memcpy(user, authc, clen);
	user[clen] = '\0';
	memcpy(pass, pw, plen);
	pass[plen] = '\0';
	return 0;
}

static void
auth_digest(const struct auth_request *req, const char *hash,
	    unsigned char out[crypto_generichash_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, auth_cache_key,
				crypto_generichash_KEYBYTES,
				crypto_generichash_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)req->user,
				  strlen(req->user) + 1);
	crypto_generichash_update(&st, (const unsigned char *)req->pass,
				  strlen(req->pass) + 1);
	/* The stored hash too: a changed password invalidates the entry. */
	crypto_generichash_update(&st, (const unsigned char *)hash,
				  strlen(hash));
	crypto_generichash_final(&st, out, crypto_generichash_BYTES);
}

static bool
auth_cache_hit(const unsigned char *digest, int64_t now)
{
	unsigned i;
	bool hit = false;

	pthread_mutex_lock(&auth_mu);
	for (i = 0; i < AUTH_CACHE_SLOTS && !hit; i++)
		hit = auth_cache[i].expires_ms > now &&
		      sodium_memcmp(auth_cache[i].digest, digest,
				    crypto_generichash_BYTES) == 0;
	pthread_mutex_unlock(&auth_mu);
	return hit;
}

static void
auth_cache_put(const unsigned char *digest, int64_t now, int64_t ttl)
{
	unsigned i, victim = 0;

	pthread_mutex_lock(&auth_mu);
	for (i = 0; i < AUTH_CACHE_SLOTS; i++) {
		if (auth_cache[i].expires_ms < auth_cache[victim].expires_ms)
			victim = i;
		if (auth_cache[i].expires_ms <= now) {
			victim = i;
			break;
		}
	}
	memcpy(auth_cache[victim].digest, digest, crypto_generichash_BYTES);
	auth_cache[victim].expires_ms = now + ttl;
	pthread_mutex_unlock(&auth_mu);
}

/* Worker thread. */
static void
auth_verify_run(void *arg)
{
	struct auth_request *req = arg;
	const struct conf_user *u = conf_user_find(req->conf, req->user);
	const char *hash = u != NULL ? u->password_hash : auth_dummy_hash;
	unsigned char digest[crypto_generichash_BYTES];
	int64_t ttl = req->conf->auth_limit.cache_ttl_ms, now = util_mono_ms();

	req->ok = false;
	req->u = u;
	if (u != NULL && ttl > 0) {
		auth_digest(req, hash, digest);
		if (auth_cache_hit(digest, now)) {
			req->ok = true;
			goto out;
		}
	}
	/* The one place Argon2id runs: counted, so that tests and operators
	 * can see that the limits hold (outpost_auth_verifications_total). */
	STATS_INC(auth_verifications);
	if (crypto_pwhash_str_verify(hash, req->pass, strlen(req->pass)) == 0 &&
	    u != NULL) {
		req->ok = true;
		if (ttl > 0)
			auth_cache_put(digest, now, ttl);
	}
out:
	sodium_memzero(req->pass, sizeof(req->pass));
	sodium_memzero(digest, sizeof(digest));
}

/* Loop thread: count the outcome, then hand it over. */
static void
auth_verify_done(void *arg)
{
	struct auth_request *req = arg;

	req->blocked = false;
	req->delay_ms =
	    auth_limit_settle(&req->conf->auth_limit, &req->ticket, req->ok,
			      util_wall_ms(), &req->blocked);
	req->done(req);
}

enum auth_limit_verdict
auth_verify(struct loop *l, struct auth_request *req, uint64_t *left_ms)
{
	const struct conf_user *u = conf_user_find(req->conf, req->user);
	enum auth_limit_verdict v;

	v = auth_limit_reserve(&req->conf->auth_limit, &req->client, req->user,
			       u != NULL ? u->name : NULL, util_wall_ms(),
			       &req->ticket, left_ms);
	if (v != AUTH_LIMIT_OK) {
		sodium_memzero(req->pass, sizeof(req->pass));
		return v;
	}
	worker_submit(l, auth_verify_run, auth_verify_done, req);
	return AUTH_LIMIT_OK;
}
