/*
 * scan_cache.c — the verdict cache of scan_cache.h: keyed BLAKE2b-256
 * hashes of message bodies and leaf parts → the verdict clamd gave, at most
 * max_entries of them, least recently used evicted first, each valid ttl_ms.
 * Owns its entries, their signature names and a random hash key (never
 * written anywhere).  Thread: any; one mutex guards the table, the list and
 * the counters (hashing runs outside it).  Must not: keep message bytes or
 * addresses; grow past max_entries.  Invariants: every entry is in the map
 * and in the list, or in neither; st.entries counts them.
 */
#include <sys/queue.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mta/core/htab.h"
#include "mta/receive/mime_int.h"
#include "mta/receive/scan_cache.h"

/* The message's own header block, read for its typing fields. */
#define SCAN_TYPING_FIELDS_MAX 1000
#define SCAN_TYPING_VALUE_MAX  8192

/*
 * One verdict.  72 bytes on x86-64, 80 with malloc's header, plus the
 * map's 16-byte slot kept at most 70% full (23 to 46 bytes an entry as the
 * map doubles): 122 bytes an entry measured at 100,000 entries (12 MB, the
 * default; t/unit/scan_cache_test.c, mallinfo2).  An INFECTED entry also
 * holds its name (at most SCAN_NAME_MAX bytes).
 */
struct scan_cache_entry {
	uint8_t hash[SCAN_HASH_BYTES];
	int64_t put_ms;
	TAILQ_ENTRY(scan_cache_entry) lru; /* head = most recently used */
	char *name;                        /* INFECTED only, else NULL */
	enum scan_verdict verdict;
};

struct scan_cache {
	pthread_mutex_t mu;
	uint8_t key[crypto_generichash_KEYBYTES];
	size_t max;
	int64_t ttl_ms;
	struct idmap map; /* first 8 hash bytes → entry */
	TAILQ_HEAD(scan_cache_lru, scan_cache_entry) lru;
	struct scan_cache_stats st;
};

/* The map's key: the first 8 bytes of a keyed hash, steered clear of the
 * two values idmap reserves.  Two hashes sharing them (2^-64) share a slot:
 * the newer replaces the older, and a get compares all 32 bytes. */
static uint64_t
scan_cache_slot_key(const uint8_t hash[SCAN_HASH_BYTES])
{
	uint64_t k;

	memcpy(&k, hash, sizeof(k));
	if (k == 0)
		k = 1;
	if (k == UINT64_MAX)
		k = UINT64_MAX - 1;
	return k;
}

/* Take E out of the map and the list; the caller frees or reuses it. */
static void
scan_cache_remove(struct scan_cache *c, struct scan_cache_entry *e)
{
	(void)idmap_del(&c->map, scan_cache_slot_key(e->hash));
	TAILQ_REMOVE(&c->lru, e, lru);
	free(e->name);
	e->name = NULL;
	c->st.entries--;
}

struct scan_cache *
scan_cache_new(size_t max_entries, int64_t ttl_ms)
{
	struct scan_cache *c;

	if (sodium_init() < 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if (idmap_init(&c->map) != 0) {
		idmap_free(&c->map);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	TAILQ_INIT(&c->lru);
	randombytes_buf(c->key, sizeof(c->key));
	c->max = max_entries;
	c->ttl_ms = ttl_ms;
	c->st.max_entries = max_entries;
	return c;
}

void
scan_cache_free(struct scan_cache *c)
{
	struct scan_cache_entry *e;

	if (c == NULL)
		return;
	while ((e = TAILQ_FIRST(&c->lru)) != NULL) {
		TAILQ_REMOVE(&c->lru, e, lru);
		free(e->name);
		free(e);
	}
	idmap_free(&c->map);
	pthread_mutex_destroy(&c->mu);
	sodium_memzero(c->key, sizeof(c->key));
	free(c);
}

void
scan_cache_hash(const struct scan_cache *c, const uint8_t *p, size_t len,
		uint8_t out[SCAN_HASH_BYTES])
{
	crypto_generichash(out, SCAN_HASH_BYTES, p, len, c->key,
			   sizeof(c->key));
}

/*
 * The typing fields of the message's own header block [MSG, MSG + LEN)
 * into ST: Content-Type and Content-Transfer-Encoding, lower-cased names
 * and values as written.  Not the whole block: it holds Received:,
 * Message-ID: and Date:, different in every message, and a body that is
 * not split would then never find its verdict.  0, or -1 when the block
 * cannot be read (then the caller hashes all of it).
 */
static int
scan_cache_hash_typing(crypto_generichash_state *st, const uint8_t *msg,
		       size_t len)
{
	struct mime_hdrs h = { msg, msg + len, 0 };
	char name[64], value[SCAN_TYPING_VALUE_MAX];
	const char *why;
	int rc;

	while (
	    (rc = mime_hdrs_next(&h, name, sizeof(name), value, sizeof(value),
				 SCAN_TYPING_FIELDS_MAX, &why)) == 1) {
		if (strcmp(name, "content-type") != 0 &&
		    strcmp(name, "content-transfer-encoding") != 0)
			continue;
		crypto_generichash_update(st, (const uint8_t *)name,
					  strlen(name) + 1);
		crypto_generichash_update(st, (const uint8_t *)value,
					  strlen(value) + 1);
	}
	return rc == 0 ? 0 : -1;
}

void
scan_cache_hash_part(const struct scan_cache *c, const uint8_t *msg,
		     struct scan_part *part)
{
	crypto_generichash_state st;

	if (part->hoff == 0) {
		/* The body of a message that is not split: typed by the
		 * message's header block, of which only the typing fields
		 * count, with a mark that they are only those. */
		crypto_generichash_init(&st, c->key, sizeof(c->key),
					SCAN_HASH_BYTES);
		crypto_generichash_update(&st, (const uint8_t *)"top", 4);
		if (scan_cache_hash_typing(&st, msg, part->off) == 0) {
			crypto_generichash_update(&st, msg + part->off,
						  part->len);
			crypto_generichash_final(&st, part->hash,
						 SCAN_HASH_BYTES);
			return;
		}
	}
	scan_cache_hash(c, msg + part->hoff, part->off + part->len - part->hoff,
			part->hash);
}

enum scan_verdict
scan_cache_get(struct scan_cache *c, const uint8_t hash[SCAN_HASH_BYTES],
	       int64_t now_ms, char *name, size_t namelen)
{
	struct scan_cache_entry *e;
	enum scan_verdict v = SCAN_UNKNOWN;

	if (name != NULL && namelen > 0)
		name[0] = '\0';
	pthread_mutex_lock(&c->mu);
	e = c->max > 0 ? idmap_get(&c->map, scan_cache_slot_key(hash)) : NULL;
	if (e != NULL && sodium_memcmp(e->hash, hash, SCAN_HASH_BYTES) != 0)
		e = NULL;
	if (e != NULL && c->ttl_ms > 0 && now_ms - e->put_ms >= c->ttl_ms) {
		scan_cache_remove(c, e);
		free(e);
		c->st.expired++;
		e = NULL;
	}
	if (e == NULL) {
		c->st.misses++;
		goto done;
	}
	c->st.hits++;
	v = e->verdict;
	if (v == SCAN_INFECTED && name != NULL && namelen > 0)
		snprintf(name, namelen, "%s", e->name ? e->name : "");
	TAILQ_REMOVE(&c->lru, e, lru);
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
done:
	pthread_mutex_unlock(&c->mu);
	return v;
}

void
scan_cache_put(struct scan_cache *c, const uint8_t hash[SCAN_HASH_BYTES],
	       enum scan_verdict verdict, const char *name, int64_t now_ms)
{
	struct scan_cache_entry *e;
	uint64_t k = scan_cache_slot_key(hash);
	char *copy = NULL;

	if (c->max == 0 || (verdict != SCAN_CLEAN && verdict != SCAN_INFECTED))
		return;
	/* The name is copied before the lock, cut to SCAN_NAME_MAX. */
	if (verdict == SCAN_INFECTED &&
	    (copy = strndup(name ? name : "", SCAN_NAME_MAX - 1)) == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	if ((e = idmap_get(&c->map, k)) != NULL) {
		TAILQ_REMOVE(&c->lru, e, lru); /* a replacement: same slot */
		free(e->name);
	} else {
		if (c->st.entries >= c->max) {
			e = TAILQ_LAST(&c->lru, scan_cache_lru); /* reused */
			scan_cache_remove(c, e);
			c->st.evictions++;
		} else if ((e = malloc(sizeof(*e))) == NULL) {
			goto fail;
		}
		if (idmap_put(&c->map, k, e) != 0) {
			free(e);
			goto fail;
		}
		c->st.entries++;
		c->st.inserts++;
	}
	memcpy(e->hash, hash, SCAN_HASH_BYTES);
	e->put_ms = now_ms;
	e->verdict = verdict;
	e->name = copy;
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	pthread_mutex_unlock(&c->mu);
	return;
fail:
	pthread_mutex_unlock(&c->mu);
	free(copy);
}

void
scan_cache_flush(struct scan_cache *c)
{
	struct scan_cache_entry *e;

	pthread_mutex_lock(&c->mu);
	while ((e = TAILQ_FIRST(&c->lru)) != NULL) {
		scan_cache_remove(c, e);
		free(e);
	}
	c->st.flushes++;
	pthread_mutex_unlock(&c->mu);
}

void
scan_cache_stats(struct scan_cache *c, struct scan_cache_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	pthread_mutex_unlock(&c->mu);
}
