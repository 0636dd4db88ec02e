/*
 * json.h — the one JSON string escaper, and how the same bytes are shown on
 * a terminal.  Every writer of JSON (the delivery log, mta/observe/evlog.c;
 * the control socket's views and audit log, mta/control/; the `outpost`
 * command, mta/cli/) escapes strings here, so that one rule holds for all:
 *     '"' and '\'             \" and \\
 *     controls and DEL        \u00XX (lower-case hex)
 *     valid UTF-8             as is (RFC 3629: no overlong forms, no
 *                             surrogates, nothing past U+10FFFF)
 *     any other byte          \ufffd, one per byte that starts no valid
 *                             sequence
 * so every string written is valid UTF-8 JSON whatever the bytes were.
 *
 * Every function is pure or writes only where it is told: any thread.
 */
#ifndef OUTPOST_MTA_CORE_JSON_H
#define OUTPOST_MTA_CORE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bytes of the longest form of one character ("\ufffd", "\u00XX"). */
#define JSON_CHAR_MAX 6

/*
 * json_escape — S (LEN bytes, any bytes, NUL included) as the inside of a
 * JSON string, without the quotes, into OUT (OUTLEN bytes; not
 * NUL-terminated).  When OUT is full the text is cut between characters,
 * never inside an escape or a UTF-8 sequence.  Returns the bytes written;
 * *USED is the bytes of S they stand for (LEN when it all fit), so that a
 * caller can mark a cut.
 */
size_t json_escape(const char *s, size_t len, char *out, size_t outlen,
		   size_t *used);

/*
 * json_cat — S (NUL-terminated) as a JSON string, quoted, appended to BUF
 * (SIZE bytes) at *OFF, which moves past it; BUF stays NUL-terminated.
 * When BUF is full the string is cut between characters and still closed
 * if there is room for the quote.
 */
void json_cat(char *buf, size_t size, size_t *off, const char *s);

/*
 * json_put — S as a JSON string, quoted, onto F; NULL as null.  A write
 * error shows in ferror(F).
 */
void json_put(FILE *f, const char *s);

/*
 * json_term_put — S as it may reach a terminal: valid UTF-8 as is; controls,
 * DEL, C1 controls (U+0080..U+009F) and bytes of no valid sequence as \xNN,
 * so that nothing peer-supplied acts as an escape sequence.  Not quoted,
 * '"' and '\' kept.  A write error shows in ferror(F).
 */
void json_term_put(FILE *f, const char *s);

/*
 * json_time_fmt — MS (ms since the epoch, UTC) as the JSON views carry it,
 * "2024-01-02T03:04:05.678Z" (PRECISE), or as their tables show it,
 * "2024-01-02 03:04:05", into BUF (SIZE bytes; "" when too small).
 */
void json_time_fmt(int64_t ms, bool precise, char *buf, size_t size);

/*
 * json_audit_record — one line of the audit log, the one format the daemon
 * (control_audit.c) and the offline `outpost restore` write:
 *   {"time":…,"time_ms":…,"uid":…,"pid":…,"user":…,"command":…,
 *    "result":…}\n
 * into BUF (SIZE >= 64 bytes; a long COMMAND or RESULT is cut, the line
 * always ends "}\n").  Returns its length.  Any thread.
 */
size_t json_audit_record(char *buf, size_t size, int64_t time_ms, unsigned uid,
			 long pid, const char *user, const char *command,
			 const char *result);

#endif
