/*
 * logspace.h — logs never take the queue's last free space.
 *
 * Every file the daemon writes logs to (the delivery log, the audit log,
 * the diagnostics when stderr is a regular file) asks logspace_admit()
 * before it writes.  When the free space of that file's filesystem would
 * fall below the reserve — the larger of log.disk_reserve bytes and
 * log.disk_reserve_percent of the filesystem — the line is dropped and
 * counted instead: the queue keeps the reserve to accept and settle mail.
 * Dropping starting and ending is said once on the diagnostics (at most
 * once a minute per log); the counts are in /metrics
 * (outpost_log_reserve_dropped_lines_total{log="…"}).  The free space is read
 * with fstatvfs at most once a second per log, and estimated in between from
 * what was written.  Thread-safe; no call blocks but that fstatvfs.
 */
#ifndef OUTPOST_MTA_LOGSPACE_H
#define OUTPOST_MTA_LOGSPACE_H

#include <stddef.h>
#include <stdint.h>

enum logspace_log {
	LOGSPACE_DELIVERY, /* mta/observe/evlog.c */
	LOGSPACE_AUDIT,    /* mta/control/control_audit.c */
	LOGSPACE_DIAG,     /* mta/core/log.c, when stderr is a regular file */
	LOGSPACE__COUNT
};

/* Defaults of log.disk_reserve and log.disk_reserve_percent. */
#define LOGSPACE_RESERVE_DEFAULT_BYTES   (256ull * 1024 * 1024)
#define LOGSPACE_RESERVE_DEFAULT_PERCENT 1

/*
 * logspace_init — the reserve: RESERVE_BYTES, or RESERVE_PERCENT of the
 * filesystem when that is more.  Main thread, before the logs are opened;
 * until then the defaults hold.
 */
void logspace_init(uint64_t reserve_bytes, unsigned reserve_percent);

/*
 * logspace_admit — may LOG write LEN more bytes (LINES lines) to FD, the
 * open log file?  0: yes, write them.  -1: no (errno = ENOSPC): the free
 * space is below the reserve; the lines are counted as dropped.  A file that is
 * not a regular file (a pipe, a terminal) is always admitted.  Any thread.
 */
int logspace_admit(enum logspace_log log, int fd, size_t len, unsigned lines);

/* logspace_dropped — lines LOG dropped since start.  Any thread. */
uint64_t logspace_dropped(enum logspace_log log);

/* logspace_metrics_text — the counters as Prometheus exposition text into
 * BUF; returns the length (a metrics_text_fn).  Any thread. */
size_t logspace_metrics_text(char *buf, size_t len);

#endif
