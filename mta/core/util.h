/*
 * util.h — the small helpers every room of the daemon and the CLI share:
 * clocks in milliseconds, milliseconds to a struct timeval, a lower-cased
 * domain, mkdir -p.  One copy each: a room that needs one of these calls it
 * here instead of keeping its own.  (The loopback test lives in dns/dns.h,
 * dns_addr_is_loopback, because conf/ and dns/ need it too; the
 * enhanced-status parser is deliver/outcome.h's outcome_enhanced.)
 *
 * Every function is pure or a single system call: any thread, never blocks
 * but for util_mkdir_p's mkdir(2) calls (start-up and the CLI only).
 */
#ifndef OUTPOST_MTA_CORE_UTIL_H
#define OUTPOST_MTA_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>

/* util_wall_ms — the time of day in ms since the epoch, moved by the test
 * clock (queue_wall_ms): for timestamps that are stored or shown. */
int64_t util_wall_ms(void);

/* util_mono_ms — CLOCK_MONOTONIC in ms: for durations and deadlines, which
 * must not jump with the clock. */
int64_t util_mono_ms(void);

/* util_ms_timeval — MS (negative counts as 0) as a struct timeval for
 * event_add(). */
struct timeval util_ms_timeval(int64_t ms);

/*
 * util_domain_lower — DOMAIN in ASCII lower case, without one final dot,
 * into OUT (OUTLEN > 0 bytes, always NUL-terminated; a longer domain is cut
 * short).  Returns the length written.
 */
size_t util_domain_lower(const char *domain, char *out, size_t outlen);

/*
 * util_mkdir_p — mkdir -p PATH: every missing component is created with
 * MODE; components that exist are left as they are.  Returns 0, or -1 with
 * errno set (ENAMETOOLONG past PATH_MAX).
 */
int util_mkdir_p(const char *path, mode_t mode);

/*
 * util_mkdir_parent — util_mkdir_p(dirname(FILE), 0700); nothing to do for
 * a bare file name.  Returns 0 or -1 with errno set.
 */
int util_mkdir_parent(const char *file);

#endif
