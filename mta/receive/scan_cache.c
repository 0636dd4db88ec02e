/*
 * scan_cache.c — groundwork only: the interface of scan_cache.h with a
 * cache that keeps nothing and a message that is one leaf, so that the
 * scanner links while the real cache and MIME walker are written on their
 * own branch (which replaces this file).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mta/receive/scan_cache.h"

struct scan_cache {
	uint8_t key[crypto_generichash_KEYBYTES];
	struct scan_cache_stats st;
};

size_t
scan_mime_leaves(const uint8_t *msg, size_t len, struct scan_part *parts,
		 size_t max)
{
	(void)msg;
	if (len == 0 || max == 0)
		return 0;
	parts[0].off = 0;
	parts[0].len = len;
	return 1;
}

struct scan_cache *
scan_cache_new(size_t max_entries, int64_t ttl_ms)
{
	struct scan_cache *c = calloc(1, sizeof(*c));

	(void)ttl_ms;
	if (c == NULL)
		return NULL;
	randombytes_buf(c->key, sizeof(c->key));
	c->st.max_entries = 0;
	(void)max_entries;
	return c;
}

void
scan_cache_free(struct scan_cache *c)
{
	free(c);
}

void
scan_cache_hash(const struct scan_cache *c, const uint8_t *p, size_t len,
		uint8_t out[SCAN_HASH_BYTES])
{
	crypto_generichash(out, SCAN_HASH_BYTES, p, len, c->key,
			   sizeof(c->key));
}

enum scan_verdict
scan_cache_get(struct scan_cache *c, const uint8_t hash[SCAN_HASH_BYTES],
	       int64_t now_ms, char *name, size_t namelen)
{
	(void)hash;
	(void)now_ms;
	if (name != NULL && namelen > 0)
		name[0] = '\0';
	c->st.misses++;
	return SCAN_UNKNOWN;
}

void
scan_cache_put(struct scan_cache *c, const uint8_t hash[SCAN_HASH_BYTES],
	       enum scan_verdict verdict, const char *name, int64_t now_ms)
{
	(void)c;
	(void)hash;
	(void)verdict;
	(void)name;
	(void)now_ms;
}

void
scan_cache_flush(struct scan_cache *c)
{
	c->st.flushes++;
}

void
scan_cache_stats(struct scan_cache *c, struct scan_cache_stats *out)
{
	*out = c->st;
}
