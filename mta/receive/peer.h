/*
 * client.h — per-client-address state shared by every loop: concurrent
 * session counts (anti-DoS limits).  One mutex-guarded table; called at
 * connect and disconnect only, never per byte.  AUTH failures are counted
 * by the limiter (auth_limit.h), per client network and user name.
 */
#ifndef OUTPOST_MTA_PEER_H
#define OUTPOST_MTA_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct peer_key {
	uint8_t family; /* AF_INET or AF_INET6 (v4-mapped folded to v4) */
	uint8_t addr[16];
};

/* peer_key_from — fill K from a socket address.  0 ok, -1 unsupported. */
int peer_key_from(struct peer_key *k, const struct sockaddr *sa);

enum peer_admit {
	PEER_ADMIT_OK,
	PEER_ADMIT_TOTAL,      /* max_sessions reached */
	PEER_ADMIT_PER_CLIENT, /* max_sessions_per_client reached */
};

/* peer_session_acquire — count a new session of K unless a limit is hit.
 * Any thread. */
enum peer_admit peer_session_acquire(const struct peer_key *k,
				     unsigned max_total,
				     unsigned max_per_client);
/* peer_session_release — the session of K ended.  Any thread. */
void peer_session_release(const struct peer_key *k);
/* peer_sessions_total — sessions open now. */
unsigned peer_sessions_total(void);

/* peer_key_format — the address as text (INET6_ADDRSTRLEN). */
const char *peer_key_format(const struct peer_key *k, char *buf, size_t len);

#endif
