/*
 * spf_cache.c — results of spf_check() by (domain, EHLO name, address set)
 * until the smallest TTL of the answers they came from runs out, so that a
 * campaign is evaluated once, not once per message (dkim.h).
 * Owns: struct spf_cache and its entries.  Must not: keep a temperror or a
 * sender-dependent result, grow past its bound.  Thread: any (one mutex;
 * a lookup is a hash and a memcmp under it).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"
#include "dkim/spf_int.h"
#include "dns/dns.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf
#pragma GCC poison sprintf
#endif

#define SPF_CACHE_KEY_MAX 1024

struct spf_cache_ent {
	struct spf_cache_ent *hnext;       /* hash chain */
	struct spf_cache_ent *prev, *next; /* newest first; the oldest goes
					      when the cache is full */
	uint64_t hash;
	uint64_t expires_ms; /* dns_clock_ms() */
	enum spf_result result;
	size_t keylen;
	unsigned char key[]; /* domain NUL helo NUL addresses */
};

struct spf_cache {
	pthread_mutex_t mu;
	struct spf_cache_ent **buckets;
	size_t nbuckets, n, max;
	struct spf_cache_ent *head, *tail;
	uint64_t hits, misses;
};

/* The key of (DOMAIN, HELO, ADDRS) into BUF; its length or 0. */
static size_t
spf_cache_key(const struct spf_check_params *p, unsigned char *buf, size_t len)
{
	size_t o = 0, n, i;
	const char *s[2] = { p->domain, p->helo != NULL ? p->helo : "" };

	for (i = 0; i < 2; i++) {
		n = strlen(s[i]) + 1;
		if (o + n > len)
			return 0;
		for (size_t k = 0; k < n; k++)
			buf[o + k] = (unsigned char)dkim_ascii_lower(
			    (unsigned char)s[i][k]);
		o += n;
	}
	for (i = 0; i < p->naddrs; i++) {
		n = p->addrs[i].ss_family == AF_INET ? 4 : 16;
		if (o + 1 + n > len)
			return 0;
		buf[o++] = (unsigned char)n;
		memcpy(buf + o, spf_sa_bytes(&p->addrs[i]), n);
		o += n;
	}
	return o;
}

static uint64_t
spf_hash(const unsigned char *k, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ k[i]) * 1099511628211ull;
	return h;
}

struct spf_cache *
spf_cache_new(size_t max_entries)
{
	struct spf_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->max = max_entries > 0 ? max_entries : 1;
	for (c->nbuckets = 64; c->nbuckets < c->max; c->nbuckets *= 2)
		;
	if ((c->buckets = calloc(c->nbuckets, sizeof(*c->buckets))) == NULL ||
	    pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->buckets);
		free(c);
		return NULL;
	}
	return c;
}

static void
spf_cache_unlink(struct spf_cache *c, struct spf_cache_ent *e)
{
	struct spf_cache_ent **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	c->n--;
}

void
spf_cache_free(struct spf_cache *c)
{
	struct spf_cache_ent *e, *next;

	if (c == NULL)
		return;
	for (e = c->head; e != NULL; e = next) {
		next = e->next;
		free(e);
	}
	pthread_mutex_destroy(&c->mu);
	free(c->buckets);
	free(c);
}

static struct spf_cache_ent *
spf_cache_find(struct spf_cache *c, const unsigned char *key, size_t n,
	       uint64_t h)
{
	struct spf_cache_ent *e;

	for (e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->keylen == n &&
		    memcmp(e->key, key, n) == 0)
			return e;
	return NULL;
}

int
spf_cache_get(struct spf_cache *c, const struct spf_check_params *p,
	      enum spf_result *out)
{
	unsigned char key[SPF_CACHE_KEY_MAX];
	struct spf_cache_ent *e;
	size_t n;
	uint64_t h;
	int rc = -1;

	if (c == NULL || (n = spf_cache_key(p, key, sizeof(key))) == 0)
		return -1;
	h = spf_hash(key, n);
	pthread_mutex_lock(&c->mu);
	if ((e = spf_cache_find(c, key, n, h)) != NULL) {
		if (e->expires_ms <= dns_clock_ms()) {
			spf_cache_unlink(c, e);
			free(e);
		} else {
			*out = e->result;
			rc = 0;
		}
	}
	if (rc == 0)
		c->hits++;
	else
		c->misses++;
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void
spf_cache_put(struct spf_cache *c, const struct spf_check_params *p,
	      const struct spf_check_reply *reply)
{
	unsigned char key[SPF_CACHE_KEY_MAX];
	struct spf_cache_ent *e, *old;
	size_t n;
	uint64_t h;

	if (c == NULL || reply->result == SPF_TEMPERROR ||
	    reply->sender_dependent || reply->ttl == 0 ||
	    (n = spf_cache_key(p, key, sizeof(key))) == 0)
		return;
	if ((e = malloc(sizeof(*e) + n)) == NULL)
		return; /* the next message evaluates again */
	h = spf_hash(key, n);
	memset(e, 0, sizeof(*e));
	e->hash = h;
	e->keylen = n;
	memcpy(e->key, key, n);
	e->result = reply->result;
	e->expires_ms = dns_clock_ms() + (uint64_t)reply->ttl * 1000;
	pthread_mutex_lock(&c->mu);
	if ((old = spf_cache_find(c, key, n, h)) != NULL) {
		spf_cache_unlink(c, old);
		free(old);
	}
	while (c->n >= c->max && c->tail != NULL) {
		old = c->tail;
		spf_cache_unlink(c, old);
		free(old);
	}
	e->hnext = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	e->next = c->head;
	if (c->head != NULL)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
	c->n++;
	pthread_mutex_unlock(&c->mu);
}
