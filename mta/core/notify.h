/*
 * notify.h — telling the service manager (systemd, Type=notify) how the
 * daemon is: ready, stopping, a one-line status, and that it is alive
 * (the watchdog).
 *
 * Everything here is a no-op when NOTIFY_SOCKET is not in the environment
 * (started by hand, by a test, by another supervisor), so callers need not
 * ask first.  A failed send is not an error the daemon can act on: it is
 * dropped (the manager sees a missed message; the watchdog, a restart).
 * Every function is safe to call from any thread (each send is one datagram
 * on its own socket); the environment is read, never changed.
 */
#ifndef OUTPOST_MTA_NOTIFY_H
#define OUTPOST_MTA_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* The daemon's states as systemd names them: one message each. */
enum notify_state {
	NOTIFY_READY,     /* READY=1: accepting and scheduling */
	NOTIFY_STOPPING,  /* STOPPING=1: an orderly stop has begun */
	NOTIFY_RELOADING, /* RELOADING=1 (and MONOTONIC_USEC=): a reload
			     began; READY=1 says it ended */
	NOTIFY__COUNT,
};

/*
 * notify_enabled — is there a service manager to tell (NOTIFY_SOCKET set)?
 * Lets a caller skip building a status nobody reads.  Any thread.
 */
bool notify_enabled(void);

/* notify_state — send STATE's message (READY=1, STOPPING=1, RELOADING=1).
 * Any thread. */
void notify_state(enum notify_state state);

/*
 * notify_status — send STATUS=<text>, the line `systemctl status` shows:
 * FMT is printf's, cut at 256 bytes, newlines replaced by spaces (one
 * line, one message).  Any thread.
 */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * notify_watchdog_usec — the watchdog period the manager asked of this
 * process (WATCHDOG_USEC, when WATCHDOG_PID is unset or ours), or 0 when
 * there is no watchdog.  Send notify_watchdog() at least every half of it.
 * Any thread.
 */
uint64_t notify_watchdog_usec(void);

/* notify_watchdog — send WATCHDOG=1: this process is alive.  Any thread. */
void notify_watchdog(void);

#endif
