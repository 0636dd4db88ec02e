/*
 * auth_limit.h — how many password guesses a client may make (SMTP AUTH).
 *
 * Two kinds of counters, kept per client NETWORK (the address cut to conf
 * auth_limit.ipv4_prefix / ipv6_prefix bits, as production MTAs count IPv6
 * clients per /64):
 *   - per (network, user name): max_failures within window, then that name
 *     is blocked from that network for block;
 *   - per network, every name together: max_failures_per_address, then the
 *     network is blocked for every name except those that authenticated
 *     from it within success_exempt (so a spraying neighbour cannot lock
 *     out the platform's established users).
 * An attempt reserves its place in both counters BEFORE its password is
 * verified (auth_limit_reserve) and settles it after (auth_limit_settle):
 * attempts in flight count as failures until they are known, so parallel
 * sessions cannot run more verifications than the limits allow.
 *
 * Names are counted alike whether or not they are configured users (a
 * keyed hash of the name, process-random key), so no reply tells which
 * names exist.  Only configured names are kept in clear (for `outpost auth
 * blocks`).  The table holds at most auth_limit.max_entries entries; past
 * that the least recently used idle entry goes first, blocks last, and an
 * entry with an attempt in flight never.
 *
 * Threads: any; one mutex guards the table (SMTP loops reserve and settle,
 * the delivery loop lists and unblocks for the control socket).  Nothing
 * here blocks or logs an unconfigured name.
 *
 * Blocks outlive a restart (auth_limit_restore): each is kept in the
 * queue's "state" database when it starts and forgotten when it is lifted
 * or its entry dropped (one queue op each, never a write on the caller's
 * thread); names are then hashed with a key derived from the queue key,
 * the same after a restart.

 * Every NOW_MS is util_wall_ms() (mta/core/util.h), for every caller alike:
 * a block's end is a time of day the operator is shown.
 */
#ifndef OUTPOST_MTA_AUTH_LIMIT_H
#define OUTPOST_MTA_AUTH_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/receive/peer.h"

struct conf_auth_limit;
struct queue;

#define AUTH_LIMIT_NAME_BYTES 16 /* keyed BLAKE2b of a user name */

/* A reservation, held by the attempt between reserve and settle. */
struct auth_limit_ticket {
	struct peer_key net; /* the client address, cut to its prefix */
	uint8_t prefix;
	uint8_t name[AUTH_LIMIT_NAME_BYTES];
	bool held; /* reserved, not yet settled */
};

enum auth_limit_verdict {
	AUTH_LIMIT_OK,           /* reserved: verify, then settle */
	AUTH_LIMIT_USER_BLOCKED, /* this name from this network */
	AUTH_LIMIT_ADDR_BLOCKED, /* every name (not exempt) from it */
	AUTH_LIMIT_BUSY,         /* attempts in flight use up the rest */
	AUTH_LIMIT_FULL,         /* no room: every entry has one in flight */
};

/*
 * auth_limit_reserve — may CLIENT try the password of USER now?  On
 * AUTH_LIMIT_OK, T holds a place in the counters that auth_limit_settle()
 * must give back (exactly once).  Otherwise nothing is held, and for a
 * block *LEFT_MS says how long it lasts (0 for BUSY/FULL).  KNOWN_NAME is
 * USER when it is a configured user (kept for listing), else NULL.  Any
 * thread.
 */
enum auth_limit_verdict
auth_limit_reserve(const struct conf_auth_limit *lim,
		   const struct peer_key *client, const char *user,
		   const char *known_name, int64_t now_ms,
		   struct auth_limit_ticket *t, uint64_t *left_ms);

/*
 * auth_limit_settle — the verification of T ended (OK: the password was
 * right).  Gives back T's place and counts the outcome.  A failure returns
 * the delay (ms) to wait before answering, and sets *BLOCKED when it hit a
 * limit (close the session); a success returns 0.  Any thread.
 */
uint64_t auth_limit_settle(const struct conf_auth_limit *lim,
			   struct auth_limit_ticket *t, bool ok, int64_t now_ms,
			   bool *blocked);

/* One block, as auth_limit_blocks() shows it. */
struct auth_limit_block {
	bool user_scope;     /* a (network, name) block; else the network */
	const char *network; /* "192.0.2.7/32", "2001:db8::/64" */
	const char *user;    /* configured name, or NULL */
	const uint8_t *name; /* AUTH_LIMIT_NAME_BYTES (user_scope) */
	int64_t until_ms;
};

/*
 * auth_limit_blocks — call FN for every block in force at NOW_MS; returns
 * how many.  FN runs with the table locked: it must not call auth_limit_*.
 * Any thread.
 */
unsigned auth_limit_blocks(int64_t now_ms,
			   void (*fn)(const struct auth_limit_block *b,
				      void *arg),
			   void *arg);

/*
 * auth_limit_unblock_net — lift the blocks (and forget the failures) of
 * every network that overlaps ADDR/PREFIX (PREFIX < 0: the configured
 * prefix of ADDR's family).  Returns the number of blocks lifted.
 */
unsigned auth_limit_unblock_net(const struct conf_auth_limit *lim,
				const struct peer_key *addr, int prefix,
				int64_t now_ms);
/* auth_limit_unblock_user — the same for one user name, from anywhere. */
unsigned auth_limit_unblock_user(const char *user, int64_t now_ms);

/*
 * The limiter's history store (mta/observe/history.h), registered by the
 * daemon: auth_limit_purge_user forgets every entry of USER's name, from
 * every network (its blocks lifted, kept records deleted); returns how
 * many.  auth_limit_expire forgets the entries whose block, failure
 * window and exemption all ended before OLDER_THAN_MS.  ARG unused.  Any
 * thread (the pool's, for the registry).
 */
uint64_t auth_limit_purge_user(const char *user, void *arg);
uint64_t auth_limit_expire(int64_t older_than_ms, void *arg);

/*
 * auth_limit_restore — the blocks kept in Q that are still in force at
 * NOW_MS are blocks again (logged: how many), and from now on every block
 * and lift is kept in Q.  Main thread, at start-up before any SMTP loop
 * serves, after queue_open(); Q must outlive every auth_limit_* call but
 * auth_limit_clear().  0, or -1 with err (blocks are then not kept).
 */
int auth_limit_restore(struct queue *q, const struct conf_auth_limit *lim,
		       int64_t now_ms, char *err, size_t errlen);

/* auth_limit_entries — entries in the table now (tests, metrics). */
size_t auth_limit_entries(void);
/* auth_limit_clear — forget everything (tests; shutdown); what is kept in
 * the queue stays there, and no longer changes. */
void auth_limit_clear(void);

#endif
