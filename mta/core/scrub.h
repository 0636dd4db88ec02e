/*
 * scrub.h — the one address scrubber: every output the daemon writes
 * (diagnostics, the -T trace, the delivery log, the audit log) passes peer
 * and operator text through scrub_text() before it is escaped.
 *
 * Without context it removes anything address-shaped: tokens with '@'
 * (quoted local parts and comments included), encoded forms without '@'
 * ("%40", "=domain" VERP, "%domain", "&#64;"), and "local at domain".  With
 * context — the addresses of the transaction being logged — it also removes
 * their local parts wherever they appear (any case, bare, inside other
 * tokens, cut short at the end of the text).
 *
 * Context comes two ways: the addresses a caller passes (the delivery log
 * passes its event's rcpt and sender), and a per-thread context that code
 * handling a transaction sets around the work that may log (scrub_ctx_enter
 * / scrub_ctx_leave), so that log_*() diagnostics deep inside know it.
 * Every function is safe on any thread.
 */
#ifndef OUTPOST_MTA_SCRUB_H
#define OUTPOST_MTA_SCRUB_H

#include <stddef.h>

#define SCRUB_MARK "<address>"
/* Of one text, at most this many bytes are kept (the rest is cut with
 * "...", never inside a token); up to SCRUB_LOOKAHEAD_BYTES more are read
 * to find the '@' of a local part that starts before the cut. */
#define SCRUB_SCAN_BYTES      2048
#define SCRUB_LOOKAHEAD_BYTES 1024
/* Room scrub_text() may need in OUT: the kept bytes plus marks. */
#define SCRUB_OUT_BYTES 4096

/*
 * The addresses of a transaction, as a function so that setting a context
 * costs nothing until a line is actually scrubbed: ADDR(ARG, I) for I < N is
 * the I-th address (NULL or "" to skip).  The caller keeps ARG and what it
 * points to alive while the context is entered.
 */
struct scrub_ctx {
	const char *(*addr)(const void *arg, size_t i);
	const void *arg;
	size_t n;
};

/*
 * scrub_ctx_enter — make CTX (NULL: none) the calling thread's context;
 * returns the previous one, to give back to scrub_ctx_leave().  Nests.
 */
const struct scrub_ctx *scrub_ctx_enter(const struct scrub_ctx *ctx);
void scrub_ctx_leave(const struct scrub_ctx *prev);

/* Flags of scrub_text(). */
#define SCRUB_KNOWN                                                            \
	0x1 /* also the known local parts: ADDRS and the thread's              \
	       context (free text; not for fields that are names               \
	       the daemon chose, such as hosts) */

/*
 * scrub_text — IN (LEN bytes, any bytes) with every address-shaped run, and
 * with SCRUB_KNOWN every known local part, replaced by SCRUB_MARK; other
 * bytes are left as they were (escaping is the caller's: scrub_escape).
 * ADDRS (NADDRS, entries may be NULL) are addresses known besides the
 * thread's context.  Returns IN itself when nothing changes (and LEN fits),
 * else OUT (OUTCAP bytes, NUL-terminated); the result's length in *OUTLEN.
 */
const char *scrub_text(const char *in, size_t len, const char *const *addrs,
		       size_t naddrs, unsigned flags, char *out, size_t outcap,
		       size_t *outlen);

/*
 * scrub_cut — S (LEN bytes, NUL-terminated) was cut short by its producer
 * (a fixed buffer): drop the token the cut went through — it may be the
 * start of an address whose '@' was lost — and end S with "...".  Returns
 * the new length (<= LEN).  For producers that cut before the scrubber
 * runs (a reply buffer).
 */
size_t scrub_cut(char *s, size_t len);

/*
 * scrub_escape — SRC (LEN bytes) as printable ASCII into DST: control and
 * 8-bit bytes and '\' become \xNN.  No scrubbing: SRC went through
 * scrub_text().  Cut with "…" when it does not fit; always NUL-terminated.
 * Returns DST.
 */
char *scrub_escape(char *dst, size_t dstlen, const char *src, size_t len);

#endif
