/*
 * client.c — the per-client-address table.
 *
 * Owns: session counts per address.  An entry lives while it has sessions,
 * so the table never holds more than the connected clients.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "mta/receive/peer.h"
#include "mta/core/log.h"

#define CLIENT_BUCKETS 4096

struct peer_entry {
	struct peer_key key;
	unsigned sessions;
	struct peer_entry *next;
};

static pthread_mutex_t peer_mu = PTHREAD_MUTEX_INITIALIZER;
static struct peer_entry *peer_buckets[CLIENT_BUCKETS];
static unsigned peer_total;

int
peer_key_from(struct peer_key *k, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };

	memset(k, 0, sizeof(*k));
	if (sa->sa_family == AF_INET) {
		k->family = AF_INET;
		memcpy(k->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a =
		    ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			k->family = AF_INET;
			memcpy(k->addr, a + 12, 4);
		} else {
			k->family = AF_INET6;
			memcpy(k->addr, a, 16);
		}
		return 0;
	}
	return -1;
}

const char *
peer_key_format(const struct peer_key *k, char *buf, size_t len)
{
	if (inet_ntop(k->family, k->addr, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
	return buf;
}

static unsigned
peer_hash(const struct peer_key *k)
{
	uint32_t h = 2166136261u;
	size_t i, n = k->family == AF_INET ? 4 : 16;

	for (i = 0; i < n; i++)
		h = (h ^ k->addr[i]) * 16777619u;
	return h % CLIENT_BUCKETS;
}

/* Find K (creating it if CREATE).  Called with peer_mu held. */
static struct peer_entry *
peer_lookup(const struct peer_key *k, bool create)
{
	struct peer_entry *e;
	unsigned b = peer_hash(k);

	for (e = peer_buckets[b]; e != NULL; e = e->next)
		if (e->key.family == k->family &&
		    memcmp(e->key.addr, k->addr, 16) == 0)
			return e;
	if (!create || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->key = *k;
	e->next = peer_buckets[b];
	peer_buckets[b] = e;
	return e;
}

/* Unlink E once it has no session left.  peer_mu held. */
static void
peer_maybe_drop(struct peer_entry *e)
{
	struct peer_entry **pp;

	if (e->sessions > 0)
		return;
	for (pp = &peer_buckets[peer_hash(&e->key)]; *pp != NULL;
	     pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
	}
}

enum peer_admit
peer_session_acquire(const struct peer_key *k, unsigned max_total,
		     unsigned max_per_client)
{
	struct peer_entry *e;
	enum peer_admit r = PEER_ADMIT_OK;

	pthread_mutex_lock(&peer_mu);
	if (peer_total >= max_total) {
		r = PEER_ADMIT_TOTAL;
	} else if ((e = peer_lookup(k, true)) == NULL) {
		r = PEER_ADMIT_TOTAL; /* out of memory: refuse, don't crash */
	} else if (e->sessions >= max_per_client) {
		r = PEER_ADMIT_PER_CLIENT;
	} else {
		e->sessions++;
		peer_total++;
	}
	pthread_mutex_unlock(&peer_mu);
	return r;
}

void
peer_session_release(const struct peer_key *k)
{
	struct peer_entry *e;

	pthread_mutex_lock(&peer_mu);
	e = peer_lookup(k, false);
	if (e == NULL || e->sessions == 0)
		panic("session release without acquire");
	e->sessions--;
	peer_total--;
	peer_maybe_drop(e);
	pthread_mutex_unlock(&peer_mu);
}

unsigned
peer_sessions_total(void)
{
	unsigned n;

	pthread_mutex_lock(&peer_mu);
	n = peer_total;
	pthread_mutex_unlock(&peer_mu);
	return n;
}
