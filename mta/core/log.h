/*
 * log.h — diagnostics for operators (stderr, one line per message).
 *
 * The delivery/event log is a different stream (JSON lines) and never mixes
 * with this one.  Neither ever carries an e-mail address in clear: peer text
 * goes through log_escape(), which also scrubs anything address-shaped.
 * Every function here is safe to call from any thread.
 */
#ifndef OUTPOST_MTA_LOG_H
#define OUTPOST_MTA_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Every mta/ file includes this header: the unbounded string calls are
 * banned here (STYLE.md). */
#ifndef OUTPOST_MTA_POISON
#define OUTPOST_MTA_POISON
#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif
#endif

enum log_level { LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

#define TRACE_SMTP  0x01u
#define TRACE_QUEUE 0x02u
#define TRACE_DNS   0x04u
#define TRACE_TLS   0x08u
#define TRACE_AUTH  0x10u

/* log_init — level and trace mask; before any thread starts. */
void log_init(enum log_level level, unsigned trace_mask);
/* log_trace_enabled — is any bit of MASK on?  Cheap; use before formatting. */
int log_trace_enabled(unsigned mask);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_trace(unsigned mask, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* fatal/fatalx: start-up failures only; print and exit(1). */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* panic: a broken invariant; print with the function name and abort(). */
#define panic(...) log_panic(__func__, __VA_ARGS__)
void log_panic(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/*
 * log_escape — copy peer text SRC (LEN bytes, may hold any byte) into DST as
 * printable ASCII: control and 8-bit bytes become \xNN, and everything
 * scrub_text() (mta/core/scrub.h) finds — address-shaped runs, and the local
 * parts of the calling thread's transaction (scrub_ctx_enter) — becomes
 * "<address>".  Scrubbing comes first, so a cut never leaves part of an
 * address.  DST is always NUL-terminated; output is cut with "…" when it
 * does not fit.  Returns DST.
 */
char *log_escape(char *dst, size_t dstlen, const char *src, size_t len);

#endif
