/*
 * notify.c — the service manager's notification protocol (sd_notify(3)):
 * one datagram per message to the AF_UNIX socket named by NOTIFY_SOCKET (a
 * path, or an abstract name after '@').  Spoken natively, as systemd's
 * documentation invites (the protocol is stable): libsystemd would bring
 * six more libraries (libgcrypt, lz4, zstd, lzma, libcap...), ~0.9 MiB of
 * the daemon's RSS, for one sendto().
 *
 * Owns: nothing but the table of state messages.  Must not: change the
 * environment (every thread keeps reading the same NOTIFY_SOCKET and
 * WATCHDOG_*), or block (a non-blocking datagram to a local socket).  Any
 * thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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

/* MSG as one datagram to NOTIFY_SOCKET; dropped on any failure. */
static void
notify_send(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	size_t n;
	int fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (n = strlen(path)) >= sizeof(sun.sun_path) || n < 2)
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* an abstract name: not NUL-ended */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			  (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	while (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
		      (struct sockaddr *)&sun, len) < 0 &&
	       errno == EINTR)
		;
	close(fd);
}

void
notify_state(enum notify_state state)
{
	struct timespec ts;

	if ((unsigned)state >= NOTIFY__COUNT || !notify_enabled())
		return;
	if (state == NOTIFY_RELOADING &&
	    clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
		char msg[64];

		/* systemd 253+ (Type=notify-reload) wants to know when. */
		snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
			 (unsigned long long)ts.tv_sec * 1000000ull +
			     (unsigned long long)ts.tv_nsec / 1000);
		notify_send(msg);
		return;
	}
	notify_send(notify_msg[state]);
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
	notify_send(msg);
}

uint64_t
notify_watchdog_usec(void)
{
	const char *v = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long usec, p;
	char *end;

	/* Only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this
	 * process (a child that inherited the variables is not asked). */
	if (v == NULL || *v < '0' || *v > '9')
		return 0;
	errno = 0;
	usec = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || usec == 0)
		return 0;
	if (pid != NULL) {
		if (*pid < '0' || *pid > '9')
			return 0;
		p = strtoull(pid, &end, 10);
		if (*end != '\0' || p != (unsigned long long)getpid())
			return 0;
	}
	return (uint64_t)usec;
}

void
notify_watchdog(void)
{
	notify_send("WATCHDOG=1");
}
