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
#include "mta/client.h"
#include "mta/log.h"

#define CLIENT_BUCKETS 4096

struct client_entry {
	struct client_key key;
	unsigned sessions;
	struct client_entry *next;
};

static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static struct client_entry *client_buckets[CLIENT_BUCKETS];
static unsigned client_total;

int
client_key_from(struct client_key *k, const struct sockaddr *sa)
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
client_key_format(const struct client_key *k, char *buf, size_t len)
{
	if (inet_ntop(k->family, k->addr, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
	return buf;
}

static unsigned
client_hash(const struct client_key *k)
{
	uint32_t h = 2166136261u;
	size_t i, n = k->family == AF_INET ? 4 : 16;

	for (i = 0; i < n; i++)
		h = (h ^ k->addr[i]) * 16777619u;
	return h % CLIENT_BUCKETS;
}

/* Find K (creating it if CREATE).  Called with client_mu held. */
static struct client_entry *
client_lookup(const struct client_key *k, bool create)
{
	struct client_entry *e;
	unsigned b = client_hash(k);

	for (e = client_buckets[b]; e != NULL; e = e->next)
		if (e->key.family == k->family &&
		    memcmp(e->key.addr, k->addr, 16) == 0)
			return e;
	if (!create || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->key = *k;
	e->next = client_buckets[b];
	client_buckets[b] = e;
	return e;
}

/* Unlink E once it has no session left.  client_mu held. */
static void
client_maybe_drop(struct client_entry *e)
{
	struct client_entry **pp;

	if (e->sessions > 0)
		return;
	for (pp = &client_buckets[client_hash(&e->key)]; *pp != NULL;
	     pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
	}
}

enum client_admit
client_session_acquire(const struct client_key *k, unsigned max_total,
		       unsigned max_per_client)
{
	struct client_entry *e;
	enum client_admit r = CLIENT_ADMIT_OK;

	pthread_mutex_lock(&client_mu);
	if (client_total >= max_total) {
		r = CLIENT_ADMIT_TOTAL;
	} else if ((e = client_lookup(k, true)) == NULL) {
		r = CLIENT_ADMIT_TOTAL; /* out of memory: refuse, don't crash */
	} else if (e->sessions >= max_per_client) {
		r = CLIENT_ADMIT_PER_CLIENT;
	} else {
		e->sessions++;
		client_total++;
	}
	pthread_mutex_unlock(&client_mu);
	return r;
}

void
client_session_release(const struct client_key *k)
{
	struct client_entry *e;

	pthread_mutex_lock(&client_mu);
	e = client_lookup(k, false);
	if (e == NULL || e->sessions == 0)
		panic("session release without acquire");
	e->sessions--;
	client_total--;
	client_maybe_drop(e);
	pthread_mutex_unlock(&client_mu);
}

unsigned
client_sessions_total(void)
{
	unsigned n;

	pthread_mutex_lock(&client_mu);
	n = client_total;
	pthread_mutex_unlock(&client_mu);
	return n;
}
