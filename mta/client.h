/*
 * client.h — per-client-address state shared by every loop: concurrent
 * session counts (anti-DoS limits) and failed-AUTH history (brute-force
 * throttling).  One mutex-guarded table; called at connect, disconnect and
 * on AUTH results only, never per byte.
 */
#ifndef OUTPOST_MTA_CLIENT_H
#define OUTPOST_MTA_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct conf_auth_limit;

struct client_key {
	uint8_t family; /* AF_INET or AF_INET6 (v4-mapped folded to v4) */
	uint8_t addr[16];
};

/* client_key_from — fill K from a socket address.  0 ok, -1 unsupported. */
int client_key_from(struct client_key *k, const struct sockaddr *sa);

enum client_admit {
	CLIENT_ADMIT_OK,
	CLIENT_ADMIT_TOTAL,      /* max_sessions reached */
	CLIENT_ADMIT_PER_CLIENT, /* max_sessions_per_client reached */
};

/* client_session_acquire — count a new session of K unless a limit is hit.
 * Any thread. */
enum client_admit client_session_acquire(const struct client_key *k,
					 unsigned max_total,
					 unsigned max_per_client);
/* client_session_release — the session of K ended.  Any thread. */
void client_session_release(const struct client_key *k);
/* client_sessions_total — sessions open now. */
unsigned client_sessions_total(void);

/*
 * client_auth_blocked — is K refused AUTH until some time?  Returns the
 * milliseconds left, or 0.
 */
uint64_t client_auth_blocked(const struct client_key *k, int64_t now_ms,
			     const struct conf_auth_limit *lim);
/*
 * client_auth_failed — record a failure of K.  Returns the delay (ms) to
 * wait before answering; sets *blocked when this failure reached the limit
 * (the session should then be closed with 421).
 */
uint64_t client_auth_failed(const struct client_key *k, int64_t now_ms,
			    const struct conf_auth_limit *lim, bool *blocked);
/* client_auth_succeeded — forget K's failures. */
void client_auth_succeeded(const struct client_key *k);

/* client_key_format — the address as text (INET6_ADDRSTRLEN). */
const char *client_key_format(const struct client_key *k, char *buf,
			      size_t len);

#endif
