/*
 * client.c — the per-client-address table.
 *
 * Owns: session counts and AUTH failure history per address.  An entry lives
 * while it has sessions or unexpired AUTH state; expired entries are dropped
 * on the next touch of their bucket, so the table cannot grow without bound
 * beyond the connected clients plus recently failing ones.
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
	unsigned failures;       /* within the current window */
	int64_t window_start_ms; /* first failure of the window */
	int64_t blocked_until_ms;
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

static bool
client_idle(const struct client_entry *e, int64_t now_ms,
	    const struct conf_auth_limit *lim)
{
	if (e->sessions > 0 || e->blocked_until_ms > now_ms)
		return false;
	if (e->failures > 0 && lim != NULL &&
	    now_ms - e->window_start_ms < (int64_t)lim->window_ms)
		return false;
	return e->failures == 0 || lim != NULL;
}

/* Find K (creating it if CREATE); drops idle entries met on the way.
 * Called with client_mu held. */
static struct client_entry *
client_lookup(const struct client_key *k, bool create, int64_t now_ms,
	      const struct conf_auth_limit *lim)
{
	struct client_entry **pp, *e, *found = NULL;
	unsigned b = client_hash(k);

	for (pp = &client_buckets[b]; (e = *pp) != NULL;) {
		if (e->key.family == k->family &&
		    memcmp(e->key.addr, k->addr, 16) == 0) {
			found = e;
			pp = &e->next;
			continue;
		}
		if (client_idle(e, now_ms, lim)) {
			*pp = e->next;
			free(e);
			continue;
		}
		pp = &e->next;
	}
	if (found != NULL || !create)
		return found;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->key = *k;
	e->next = client_buckets[b];
	client_buckets[b] = e;
	return e;
}

/* Unlink E if it holds nothing any more.  client_mu held. */
static void
client_maybe_drop(struct client_entry *e)
{
	struct client_entry **pp;

	if (e->sessions > 0 || e->failures > 0 || e->blocked_until_ms != 0)
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
	} else if ((e = client_lookup(k, true, 0, NULL)) == NULL) {
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
	e = client_lookup(k, false, 0, NULL);
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

uint64_t
client_auth_blocked(const struct client_key *k, int64_t now_ms,
		    const struct conf_auth_limit *lim)
{
	struct client_entry *e;
	uint64_t left = 0;

	pthread_mutex_lock(&client_mu);
	e = client_lookup(k, false, now_ms, lim);
	if (e != NULL && e->blocked_until_ms > now_ms)
		left = (uint64_t)(e->blocked_until_ms - now_ms);
	pthread_mutex_unlock(&client_mu);
	return left;
}

uint64_t
client_auth_failed(const struct client_key *k, int64_t now_ms,
		   const struct conf_auth_limit *lim, bool *blocked)
{
	struct client_entry *e;
	uint64_t delay;
	unsigned shift;

	*blocked = false;
	pthread_mutex_lock(&client_mu);
	if ((e = client_lookup(k, true, now_ms, lim)) == NULL) {
		pthread_mutex_unlock(&client_mu);
		*blocked = true;
		return lim->delay_max_ms;
	}
	if (e->failures == 0 ||
	    now_ms - e->window_start_ms >= (int64_t)lim->window_ms) {
		e->failures = 0;
		e->window_start_ms = now_ms;
	}
	e->failures++;
	/* Growing delay: base, 2×base, 4×base … capped. */
	shift = e->failures - 1 > 16 ? 16 : e->failures - 1;
	delay = (uint64_t)lim->delay_base_ms << shift;
	if (delay > lim->delay_max_ms)
		delay = lim->delay_max_ms;
	if (lim->max_failures > 0 && e->failures >= lim->max_failures) {
		e->blocked_until_ms = now_ms + (int64_t)lim->block_ms;
		e->failures = 0;
		*blocked = true;
	}
	pthread_mutex_unlock(&client_mu);
	return delay;
}

void
client_auth_succeeded(const struct client_key *k)
{
	struct client_entry *e;

	pthread_mutex_lock(&client_mu);
	if ((e = client_lookup(k, false, 0, NULL)) != NULL) {
		e->failures = 0;
		e->window_start_ms = 0;
		client_maybe_drop(e);
	}
	pthread_mutex_unlock(&client_mu);
}
