/*
 * util.c — clocks, timevals, lower-cased domains, mkdir -p (util.h).
 *
 * Owns nothing; every function is reentrant and runs on any thread.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "queue/queue.h"
#include "mta/core/util.h"

static int64_t
util_clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_wall_ms(void)
{
	return queue_wall_ms();
}

int64_t
util_mono_ms(void)
{
	return util_clock_ms(CLOCK_MONOTONIC);
}

struct timeval
util_ms_timeval(int64_t ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
	return tv;
}

size_t
util_domain_lower(const char *domain, char *out, size_t outlen)
{
	size_t n;

	for (n = 0; domain[n] != '\0' && n + 1 < outlen; n++)
		out[n] = domain[n] >= 'A' && domain[n] <= 'Z'
			     ? (char)(domain[n] - 'A' + 'a')
			     : domain[n];
	if (n > 0 && out[n - 1] == '.')
		n--;
	out[n] = '\0';
	return n;
}

int
util_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	char *p;

	if ((size_t)snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

int
util_mkdir_parent(const char *file)
{
	char buf[PATH_MAX];
	char *slash;

	if ((size_t)snprintf(buf, sizeof(buf), "%s", file) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((slash = strrchr(buf, '/')) == NULL || slash == buf)
		return 0;
	*slash = '\0';
	return util_mkdir_p(buf, 0700);
}
