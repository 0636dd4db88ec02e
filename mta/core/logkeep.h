/*
 * logkeep.h — the daemon's own rotation and retention of a log file (the
 * delivery log, the audit log): at UTC midnight of the test clock
 * (util_wall_ms) FILE is renamed FILE-YYYY-MM-DD (the day its lines were
 * written), the writer reopens FILE, and the rotated file is compressed to
 * FILE-YYYY-MM-DD.gz; rotated files whose day is past the log's lifetime
 * are removed at start and hourly, each removal logged.  All of this runs on
 * one keeper thread of its own (but the rename of a log left from an
 * earlier day, done at start before anything writes): no I/O loop and no
 * log writer waits for a compression.  The names are shared with the CLI
 * (`outpost log` reads the rotated files: logkeep_name_day).
 */
#ifndef OUTPOST_MTA_CORE_LOGKEEP_H
#define OUTPOST_MTA_CORE_LOGKEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOGKEEP_DAY_MS    86400000LL
#define LOGKEEP_DAY_BYTES 11        /* "YYYY-MM-DD" and its NUL */
#define LOGKEEP_MAX       2         /* the delivery log and the audit log */
#define LOGKEEP_SWEEP_MS  3600000LL /* removal by age: hourly */

/* logkeep_day_start — 00:00 UTC of the day that holds MS. Pure. */
int64_t logkeep_day_start(int64_t ms);

/* logkeep_day_format — the UTC day of MS as "YYYY-MM-DD" into OUT.  Pure. */
void logkeep_day_format(int64_t ms, char out[LOGKEEP_DAY_BYTES]);

/*
 * logkeep_name_day — is NAME (a directory entry, no '/') one of the rotated
 * files of the log whose file name is BASE: "BASE-YYYY-MM-DD" or
 * "BASE-YYYY-MM-DD.gz" (a valid date)?  true: *DAY_MS is 00:00 UTC of that
 * day and *GZ says which; false: anything else (a ".tmp" being written, the
 * log itself).  Pure; any thread.
 */
bool logkeep_name_day(const char *base, const char *name, int64_t *day_ms,
		      bool *gz);

/*
 * The writer's hook, called on the keeper thread right after FILE was
 * renamed: it returns once nothing more is written to the renamed file (the
 * writer reopened FILE, or every write that opened the old name is done),
 * so that the keeper may compress it.  ARG is logkeep_add's.
 */
typedef void (*logkeep_reopen_fn)(void *arg);

/*
 * logkeep_add — keep the log at PATH (copied): rotated daily, rotated files
 * removed LIFETIME_MS (> 0) after their day; REOPEN (not NULL) as above.
 * NAME ("delivery log", "audit log") is for the diagnostics.  At most
 * LOGKEEP_MAX logs.  0, or -1 with ERR.  Main thread, before logkeep_start.
 */
int logkeep_add(const char *name, const char *path, int64_t lifetime_ms,
		logkeep_reopen_fn reopen, void *arg, char *err, size_t errlen);

/*
 * logkeep_start — rotate each log whose lines are from an earlier day (the
 * "time" of its last line, else its mtime): renamed before it returns, so
 * that the lines written after it go to a fresh file; then, on the keeper
 * thread, compress rotated files left uncompressed and remove expired
 * ones; the keeper then wakes at each UTC midnight and hourly.  0, or -1
 * with ERR (no thread).  Main thread, once the logs' writers run and
 * before anything that writes a line (the loops) starts.
 */
int logkeep_start(char *err, size_t errlen);

/*
 * logkeep_lifetime_set — a reload's new lifetime for the log at PATH (one
 * given to logkeep_add; others are ignored); the next hourly sweep, which
 * this one brings forward, uses it.  Any thread.
 */
void logkeep_lifetime_set(const char *path, int64_t lifetime_ms);

/* logkeep_stop — stop and join the keeper (a compression under way is
 * finished first; a partial .gz is never left: it is written as .tmp and
 * renamed).  Main thread, before the logs' writers stop. */
void logkeep_stop(void);

#endif
