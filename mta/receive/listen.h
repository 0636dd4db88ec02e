/*
 * listen.h — listening sockets: one per configured listener per loop
 * (SO_REUSEPORT), so that every loop accepts its own connections.
 */
#ifndef OUTPOST_MTA_LISTEN_H
#define OUTPOST_MTA_LISTEN_H

#include <stddef.h>

struct confgen;
struct listen_plan;
struct loop;

/* listen_open — bind every listener of GEN on each of the NLOOPS LOOPS.
 * 0 ok, -1 with err set ("listener 127.0.0.1:25: Address already in
 * use").  Main thread, before the loops run. */
int listen_open(struct loop *loops, unsigned nloops, struct confgen *gen,
		char *err, size_t errlen);

/*
 * listen_plan_make — a reload from OLD to GEN: bind a socket per loop for
 * each listener of GEN whose address OLD does not have (*ADDED of them;
 * *REMOVED: OLD's addresses GEN lacks).  Nothing changes yet.  A port
 * below 1024 is refused when not root (it could not be bound).  0 and
 * *OUT, or -1 with err ("listener 127.0.0.1:2600: Address already in
 * use"), nothing left open.  Main thread.
 */
int listen_plan_make(const struct confgen *old, struct confgen *gen,
		     struct listen_plan **out, unsigned *added,
		     unsigned *removed, char *err, size_t errlen);

/* listen_plan_apply — each loop of LOOPS (those of listen_open), in a
 * posted job: its sockets now make sessions of P's generation, removed
 * ones close, added ones accept.  P is freed by the last loop.  Main. */
void listen_plan_apply(struct loop *loops, struct listen_plan *p);

/* listen_plan_discard — drop P unapplied (its sockets close).  Main. */
void listen_plan_discard(struct listen_plan *p);

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
