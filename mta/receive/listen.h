/*
 * listen.h — listening sockets: one per configured listener per loop
 * (SO_REUSEPORT), so that every loop accepts its own connections.
 */
#ifndef OUTPOST_MTA_LISTEN_H
#define OUTPOST_MTA_LISTEN_H

#include <stddef.h>

struct loop;
struct smtp_server_listener;

/* listen_open — bind every listener on every loop.  0 ok, -1 with err set
 * ("127.0.0.1:25: Address already in use").  Main thread, before the loops
 * run. */
int listen_open(struct loop *loops, unsigned nloops,
		struct smtp_server_listener *li, size_t nli, char *err,
		size_t errlen);

/* listen_close — on loop L's thread: stop accepting on L. */
void listen_close(struct loop *l);

/* Whether new connections are taken.  Not open: each gets
 * "421 4.3.2 Service shutting down" and is closed (an implicit-TLS
 * listener's just closed). */
enum listen_intake {
	LISTEN_INTAKE_OPEN,     /* running */
	LISTEN_INTAKE_STOPPED,  /* outpost drain --intake-only */
	LISTEN_INTAKE_DRAINING, /* outpost drain or SIGTERM: the daemon stops */
};

/* listen_intake_set — set the intake state.  Any thread. */
void listen_intake_set(enum listen_intake st);

/* listen_intake_get — the intake state.  Any thread. */
enum listen_intake listen_intake_get(void);

#endif
