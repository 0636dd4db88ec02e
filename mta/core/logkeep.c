/*
 * logkeep.c — rotation and retention of the daemon's log files (logkeep.h).
 * Owns: the keeper thread and its table of logs (path, lifetime, counters).
 * Must not: run on an I/O loop or a log writer (a day's file takes seconds
 * to compress); remove anything but FILE-YYYY-MM-DD[.gz] of a kept log;
 * leave a partial .gz under its final name (written as .tmp, renamed).
 * Threads: logkeep_add/start/stop on the main thread; the keeper does the
 * rest; logkeep_lifetime_set and logkeep_stats_get from any thread.
 */
#define _GNU_SOURCE /* timegm */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mta/core/logkeep.h"

int64_t
logkeep_day_start(int64_t ms)
{
	int64_t r = ms % LOGKEEP_DAY_MS;

	return ms - (r < 0 ? r + LOGKEEP_DAY_MS : r);
}

void
logkeep_day_format(int64_t ms, char out[LOGKEEP_DAY_BYTES])
{
	time_t t = (time_t)(logkeep_day_start(ms) / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, LOGKEEP_DAY_BYTES, "%Y-%m-%d", &tm) == 0)
		snprintf(out, LOGKEEP_DAY_BYTES, "0000-00-00");
}

bool
logkeep_name_day(const char *base, const char *name, int64_t *day_ms, bool *gz)
{
	size_t blen = strlen(base);
	const char *d;
	char back[LOGKEEP_DAY_BYTES];
	struct tm tm;
	time_t t;
	int i;

	if (strncmp(name, base, blen) != 0 || name[blen] != '-')
		return false;
	d = name + blen + 1;
	for (i = 0; i < LOGKEEP_DAY_BYTES - 1; i++)
		if (i == 4 || i == 7 ? d[i] != '-' : d[i] < '0' || d[i] > '9')
			return false;
	if (strcmp(d + 10, "") != 0 && strcmp(d + 10, ".gz") != 0)
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (d[0] - '0') * 1000 + (d[1] - '0') * 100 +
		     (d[2] - '0') * 10 + (d[3] - '0') - 1900;
	tm.tm_mon = (d[5] - '0') * 10 + (d[6] - '0') - 1;
	tm.tm_mday = (d[8] - '0') * 10 + (d[9] - '0');
	if ((t = timegm(&tm)) == (time_t)-1)
		return false;
	/* 2026-02-30 would normalise to March: not one of our names. */
	logkeep_day_format((int64_t)t * 1000, back);
	if (strncmp(back, d, 10) != 0)
		return false;
	*day_ms = (int64_t)t * 1000;
	*gz = d[10] != '\0';
	return true;
}
