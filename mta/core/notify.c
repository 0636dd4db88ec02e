/*
 * notify.c — the service manager's notification protocol, over libsystemd's
 * sd_notify().
 *
 * Owns: nothing but the table of state messages.  Must not: change the
 * environment (sd_notify is called with unset_environment = 0, so every
 * thread keeps reading the same NOTIFY_SOCKET and WATCHDOG_*), or block
 * (a datagram to a local socket).  Any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "mta/core/log.h"
#include "mta/core/notify.h"

/* STATUS= takes one line; systemctl shows about this much of it. */
#define NOTIFY_STATUS_BYTES 256

static const char *const notify_msg[NOTIFY__COUNT] = {
	[NOTIFY_READY] = "READY=1",
	[NOTIFY_STOPPING] = "STOPPING=1",
	[NOTIFY_RELOADING] = "RELOADING=1",
};

bool
notify_enabled(void)
{
	return getenv("NOTIFY_SOCKET") != NULL;
}

void
notify_state(enum notify_state state)
{
	struct timespec ts;

	if ((unsigned)state >= NOTIFY__COUNT || !notify_enabled())
		return;
	if (state == NOTIFY_RELOADING &&
	    clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
		/* systemd 253+ (Type=notify-reload) wants to know when. */
		(void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
				 (unsigned long long)ts.tv_sec * 1000000ull +
				     (unsigned long long)ts.tv_nsec / 1000);
		return;
	}
	(void)sd_notify(0, notify_msg[state]);
}

void
notify_status(const char *fmt, ...)
{
	char msg[sizeof("STATUS=") + NOTIFY_STATUS_BYTES];
	va_list ap;
	size_t i;
	int n;

	if (!notify_enabled())
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg + 7, sizeof(msg) - 7, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	memcpy(msg, "STATUS=", 7);
	/* A newline would start another assignment in the datagram. */
	for (i = 7; msg[i] != '\0'; i++)
		if (msg[i] == '\n' || msg[i] == '\r')
			msg[i] = ' ';
	(void)sd_notify(0, msg);
}

uint64_t
notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is
	 * this process (a child that inherited the variables is not asked). */
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
}

void
notify_watchdog(void)
{
	if (notify_enabled())
		(void)sd_notify(0, "WATCHDOG=1");
}
