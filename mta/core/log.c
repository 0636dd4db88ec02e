/*
 * log.c — diagnostics stream (stderr).
 *
 * Owns: the level/trace mask and the line formatter.  Each message is built in
 * a local buffer and written with one write(2), so lines from several threads
 * never interleave, after the whole message went through the scrubber
 * (mta/core/scrub.h).  When stderr is the journal (JOURNAL_STREAM names its
 * file), each line starts with its syslog priority ("<3>") instead of a time
 * stamp and name, which journald adds itself.  Must not: print peer text
 * that did not go through log_escape() (no address in clear, no control
 * bytes).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/core/logspace.h"
#include "mta/core/scrub.h"

#define LOG_LINE_BYTES 2048
/* The journal's priority prefixes (sd-daemon(3): "<N>" before a line on
 * stderr), written here rather than taken from libsystemd's header, which
 * the daemon no longer needs. */
#define LOG_PRIO_CRIT    "<2>"
#define LOG_PRIO_ERR     "<3>"
#define LOG_PRIO_WARNING "<4>"
#define LOG_PRIO_INFO    "<6>"
#define LOG_PRIO_DEBUG   "<7>"

static enum log_level log_level = LOG_LEVEL_INFO;
static unsigned log_trace_mask;
static bool log_journal; /* stderr is journald's stream: "<N>" prefixes */

/*
 * Is stderr the stream systemd connected to the journal?  JOURNAL_STREAM is
 * "DEV:INODE" of that stream; it is inherited, so a shell or a redirection
 * in between leaves a different stderr and the plain format.
 */
static bool
log_journal_detect(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int end = 0;

	if (js == NULL || sscanf(js, "%llu:%llu%n", &dev, &ino, &end) != 2 ||
	    js[end] != '\0' || fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void
log_init(enum log_level level, unsigned trace_mask)
{
	log_level = level;
	log_trace_mask = trace_mask;
	log_journal = log_journal_detect();
}

int
log_trace_enabled(unsigned mask)
{
	return (log_trace_mask & mask) != 0;
}

/* Append SRC to LINE (length *N, capacity CAP - 1 for the newline). */
static void
log_append(char *line, size_t cap, size_t *n, const char *src)
{
	size_t len = strlen(src);

	if (*n + len > cap - 2)
		len = cap - 2 - *n;
	memcpy(line + *n, src, len);
	*n += len;
}

static void log_vwrite(const char *prio, const char *tag, int errnum,
		       const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* TAG and the message as one line on stderr, after PRIO (LOG_PRIO_ERR…)
 * for the journal or a time stamp otherwise; unless it is a last
 * word (fatal, panic), only when stderr's file leaves the queue its reserve
 * (mta/core/logspace.h). */
static void
log_vwrite(const char *prio, const char *tag, int errnum, const char *fmt,
	   va_list ap)
{
	char line[LOG_LINE_BYTES], msg[LOG_LINE_BYTES], stamp[64];
	char out[SCRUB_OUT_BYTES];
	const char *t;
	size_t len;
	struct timespec ts;
	struct tm tm;
	size_t n = 0;

	if (log_journal) {
		log_append(line, sizeof(line), &n, prio);
	} else {
		int64_t ms = util_wall_ms();

		ts.tv_sec = (time_t)(ms / 1000);
		ts.tv_nsec = (long)(ms % 1000) * 1000000;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		log_append(line, sizeof(line), &n, stamp);
		snprintf(stamp, sizeof(stamp),
			 ".%03ldZ outpostd: ", ts.tv_nsec / 1000000);
		log_append(line, sizeof(line), &n, stamp);
	}
	log_append(line, sizeof(line), &n, tag);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	/* The whole message, not only the peer text log_escape() saw: a
	 * configured user name, a path or a From domain may be an address,
	 * and the thread's transaction says which local parts to drop. */
	t = scrub_text(msg, strlen(msg), NULL, 0, SCRUB_KNOWN, out, sizeof(out),
		       &len);
	if (t == msg)
		log_append(line, sizeof(line), &n, msg);
	else
		log_append(line, sizeof(line), &n, out);
	if (errnum != 0) {
		log_append(line, sizeof(line), &n, ": ");
		log_append(line, sizeof(line), &n, strerror(errnum));
	}
	line[n++] = '\n';
	if (strncmp(tag, "fatal", 5) != 0 && strncmp(tag, "panic", 5) != 0 &&
	    logspace_admit(LOGSPACE_DIAG, STDERR_FILENO, n, 1) != 0)
		return;
	(void)!write(STDERR_FILENO, line, n);
}

#define LOG_BODY(prio, tag, errnum)                                            \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_vwrite((prio), (tag), (errnum), fmt, ap);                  \
		va_end(ap);                                                    \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	int saved = errno;

	LOG_BODY(LOG_PRIO_WARNING, "warning: ", saved);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_PRIO_WARNING, "warning: ", 0);
}

void
log_info(const char *fmt, ...)
{
	if (log_level < LOG_LEVEL_INFO)
		return;
	LOG_BODY(LOG_PRIO_INFO, "", 0);
}

void
log_debug(const char *fmt, ...)
{
	if (log_level < LOG_LEVEL_DEBUG)
		return;
	LOG_BODY(LOG_PRIO_DEBUG, "debug: ", 0);
}

void
log_trace(unsigned mask, const char *fmt, ...)
{
	if ((log_trace_mask & mask) == 0)
		return;
	LOG_BODY(LOG_PRIO_DEBUG, "trace: ", 0);
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;

	LOG_BODY(LOG_PRIO_ERR, "fatal: ", saved);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_PRIO_ERR, "fatal: ", 0);
	exit(1);
}

void
log_panic(const char *func, const char *fmt, ...)
{
	char tag[128];

	snprintf(tag, sizeof(tag), "panic: %s: ", func);
	LOG_BODY(LOG_PRIO_CRIT, tag, 0);
	abort();
}

char *
log_escape(char *dst, size_t dstlen, const char *src, size_t len)
{
	char out[SCRUB_OUT_BYTES];
	const char *t;
	size_t n;

	t = scrub_text(src, len, NULL, 0, SCRUB_KNOWN, out, sizeof(out), &n);
	return scrub_escape(dst, dstlen, t, n);
}
