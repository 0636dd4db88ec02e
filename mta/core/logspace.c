/*
 * logspace.c — the free-space reserve of the log files (logspace.h).
 *
 * Owns: one state per log (last fstatvfs, bytes admitted since, dropping or
 * not, counters), all atomics: callers on any thread, no lock.  Must not:
 * run fstatvfs more than once a second per log (the delivery log asks at
 * every flush, the diagnostics at every line); write a diagnostics line
 * about LOGSPACE_DIAG while it drops (it would be dropped too, or worse,
 * recurse: the message about the diagnostics goes only to /metrics).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "mta/core/log.h"
#include "mta/core/logspace.h"
#include "mta/core/util.h"

#define LOGSPACE_CHECK_MS 1000  /* fstatvfs at most this often per log */
#define LOGSPACE_SAY_MS   60000 /* start/end said at most this often */

struct logspace_state {
	_Atomic int64_t checked_ms; /* last fstatvfs (monotonic), 0 never */
	_Atomic uint64_t avail;     /* free bytes it found, minus the reserve */
	_Atomic uint64_t since;     /* bytes admitted since, by any log on
				       the same filesystem */
	_Atomic unsigned long fsid; /* of that filesystem */
	_Atomic bool regular;       /* a regular file: guarded */
	_Atomic bool dropping;
	_Atomic uint64_t dropped;     /* lines, since start */
	_Atomic uint64_t run_dropped; /* lines, since dropping started */
	_Atomic int64_t said_ms;      /* last start/end message */
};

static struct logspace_state ls[LOGSPACE__COUNT];
static const char *const logspace_names[LOGSPACE__COUNT] = {
	[LOGSPACE_DELIVERY] = "delivery",
	[LOGSPACE_AUDIT] = "audit",
	[LOGSPACE_DIAG] = "diagnostics",
};
static _Atomic uint64_t ls_reserve_bytes = LOGSPACE_RESERVE_DEFAULT_BYTES;
static _Atomic unsigned ls_reserve_percent = LOGSPACE_RESERVE_DEFAULT_PERCENT;

void
logspace_init(uint64_t reserve_bytes, unsigned reserve_percent)
{
	atomic_store(&ls_reserve_bytes, reserve_bytes);
	atomic_store(&ls_reserve_percent,
		     reserve_percent > 100 ? 100 : reserve_percent);
}

/* Read FD's filesystem: free bytes above the reserve into S. */
static void
logspace_check(struct logspace_state *s, int fd)
{
	struct statvfs vfs;
	struct stat st;
	uint64_t size, avail, reserve, pct;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		atomic_store(&s->regular, false);
		return;
	}
	if (fstatvfs(fd, &vfs) != 0) {
		atomic_store(&s->regular, false); /* cannot tell: write */
		return;
	}
	/* f_bavail: what an unprivileged writer has; the reserve of root
	 * (ext4's 5%) is not ours to spend. */
	size = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	reserve = atomic_load(&ls_reserve_bytes);
	pct = size / 100 * atomic_load(&ls_reserve_percent);
	if (pct > reserve)
		reserve = pct;
	atomic_store(&s->avail, avail > reserve ? avail - reserve : 0);
	atomic_store(&s->since, 0);
	atomic_store(&s->fsid, vfs.f_fsid);
	atomic_store(&s->regular, true);
}

/* Dropping starts or ends: say so on the diagnostics, at most once a
 * LOGSPACE_SAY_MS per log (never about the diagnostics themselves). */
static void
logspace_say(enum logspace_log log, bool start, uint64_t n, int64_t now)
{
	struct logspace_state *s = &ls[log];
	int64_t said = atomic_load(&s->said_ms);

	if (log == LOGSPACE_DIAG || (said != 0 && now - said < LOGSPACE_SAY_MS))
		return;
	if (!atomic_compare_exchange_strong(&s->said_ms, &said, now))
		return;
	if (start)
		log_warnx("%s log: free space below the reserve the queue "
			  "needs; dropping its lines (counted in /metrics)",
			  logspace_names[log]);
	else
		log_warnx("%s log: free space above the reserve again; "
			  "writing, %" PRIu64 " line(s) were dropped",
			  logspace_names[log], n);
}

/* LEN bytes are written to S's filesystem: every log there has that much
 * less than at its last reading (three logs on one filesystem must not each
 * spend the same room). */
static void
logspace_spent(const struct logspace_state *s, size_t len)
{
	unsigned long fsid = atomic_load(&s->fsid);
	int i;

	for (i = 0; i < LOGSPACE__COUNT; i++)
		if (atomic_load(&ls[i].regular) &&
		    atomic_load(&ls[i].fsid) == fsid)
			atomic_fetch_add(&ls[i].since, len);
}

int
logspace_admit(enum logspace_log log, int fd, size_t len, unsigned lines)
{
	struct logspace_state *s;
	int64_t now, last;
	uint64_t n;
	bool below, was;

	if ((unsigned)log >= LOGSPACE__COUNT || fd < 0)
		return 0;
	s = &ls[log];
	now = util_mono_ms();
	last = atomic_load(&s->checked_ms);
	if ((last == 0 || now - last >= LOGSPACE_CHECK_MS) &&
	    atomic_compare_exchange_strong(&s->checked_ms, &last,
					   now != 0 ? now : 1))
		logspace_check(s, fd);
	if (!atomic_load(&s->regular))
		return 0;
	below = atomic_load(&s->since) + len > atomic_load(&s->avail);
	if (below) {
		atomic_fetch_add(&s->dropped, lines);
		atomic_fetch_add(&s->run_dropped, lines);
		was = atomic_exchange(&s->dropping, true);
		if (!was)
			logspace_say(log, true, 0, now);
		errno = ENOSPC;
		return -1;
	}
	logspace_spent(s, len);
	if (atomic_load(&s->dropping) && atomic_exchange(&s->dropping, false)) {
		n = atomic_exchange(&s->run_dropped, 0);
		logspace_say(log, false, n, now);
	}
	return 0;
}

uint64_t
logspace_dropped(enum logspace_log log)
{
	if ((unsigned)log >= LOGSPACE__COUNT)
		return 0;
	return atomic_load(&ls[log].dropped);
}

size_t
logspace_metrics_text(char *buf, size_t len)
{
	size_t o = 0;
	int w, i;

	w = snprintf(
	    buf, len,
	    "# HELP outpost_log_reserve_dropped_lines_total Log lines "
	    "not written: the free space of the log's filesystem was "
	    "below the reserve kept for the queue.\n"
	    "# TYPE outpost_log_reserve_dropped_lines_total counter\n");
	if (w < 0)
		return 0;
	o = (size_t)w;
	for (i = 0; i < LOGSPACE__COUNT; i++) {
		w = snprintf(
		    o < len ? buf + o : NULL, o < len ? len - o : 0,
		    "outpost_log_reserve_dropped_lines_total{log=\"%s\"}"
		    " %" PRIu64 "\n",
		    logspace_names[i], atomic_load(&ls[i].dropped));
		if (w < 0)
			return 0;
		o += (size_t)w;
	}
	return o;
}
