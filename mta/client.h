/*
 * client.h — per-client-address state shared by every loop: concurrent
 * session counts (anti-DoS limits).  One mutex-guarded table; called at
 * connect and disconnect only, never per byte.  AUTH failures are counted
 * by the limiter (auth_limit.h), per client network and user name.
 */
#ifndef OUTPOST_MTA_CLIENT_H
#define OUTPOST_MTA_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

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

/* client_key_format — the address as text (INET6_ADDRSTRLEN). */
const char *client_key_format(const struct client_key *k, char *buf,
			      size_t len);

#endif
