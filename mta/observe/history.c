/*
 * history.c — the registry of per-user and per-recipient history stores
 * (history.h).
 * Owns: the list of stores (a fixed table: registration is at start-up,
 * and a store past HISTORY_STORES_MAX is refused, never dropped quietly).
 * Must not: keep anything of a user itself, or log a user name (stores may
 * hold addresses; the caller logs what it must).
 * Threads: registration on the main thread before the pool runs; purges
 * and sweeps on workers, one at a time under history_mu.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "mta/core/log.h"
#include "mta/observe/history.h"

static pthread_mutex_t history_mu = PTHREAD_MUTEX_INITIALIZER;
static struct history_store history_stores[HISTORY_STORES_MAX];
static size_t history_nstores;

int
history_register(const struct history_store *s)
{
	int rc = -1;

	pthread_mutex_lock(&history_mu);
	if (history_nstores < HISTORY_STORES_MAX) {
		history_stores[history_nstores++] = *s;
		rc = 0;
	}
	pthread_mutex_unlock(&history_mu);
	return rc;
}

uint64_t
history_purge_user(const char *user)
{
	uint64_t n, total = 0;
	size_t i;

	pthread_mutex_lock(&history_mu);
	for (i = 0; i < history_nstores; i++) {
		if (history_stores[i].purge_user == NULL)
			continue;
		n = history_stores[i].purge_user(user, history_stores[i].arg);
		log_debug("history %s: %" PRIu64 " record(s) of a user purged",
			  history_stores[i].name, n);
		total += n;
	}
	pthread_mutex_unlock(&history_mu);
	return total;
}

uint64_t
history_expire(int64_t older_than_ms)
{
	uint64_t n, total = 0;
	size_t i;

	pthread_mutex_lock(&history_mu);
	for (i = 0; i < history_nstores; i++) {
		if (history_stores[i].expire == NULL)
			continue;
		n = history_stores[i].expire(older_than_ms,
					     history_stores[i].arg);
		if (n > 0)
			log_info("history %s: %" PRIu64 " record(s) past "
				 "their retention removed",
				 history_stores[i].name, n);
		total += n;
	}
	pthread_mutex_unlock(&history_mu);
	return total;
}

void
history_clear(void)
{
	pthread_mutex_lock(&history_mu);
	memset(history_stores, 0, sizeof(history_stores));
	history_nstores = 0;
	pthread_mutex_unlock(&history_mu);
}
