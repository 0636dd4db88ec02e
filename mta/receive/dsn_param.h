/*
 * dsn_param.h — the DSN parameters of MAIL FROM and RCPT TO (RFC 3461):
 * RET, ENVID, NOTIFY, ORCPT, each parsed strictly from peer bytes.
 */
#ifndef OUTPOST_MTA_DSN_PARAM_H
#define OUTPOST_MTA_DSN_PARAM_H

#include <stddef.h>
#include <stdint.h>

/* RFC 3461 4.4 and 4.2: the values as sent (xtext), at most. */
#define DSN_ENVID_MAX_BYTES 100
#define DSN_ORCPT_MAX_BYTES 500

/*
 * dsn_param_xtext — decode IN (xtext: ASCII '!'..'~' but '+' and '=', or
 * "+XX" with upper-case hex digits) into OUT (CAP bytes, NUL-terminated).
 * Every decoded byte must be printable ASCII (' '..'~').  0, or -1 when
 * IN is malformed or does not fit.  Any thread.
 */
int dsn_param_xtext(const char *in, char *out, size_t cap);

/* dsn_param_envid — ENVID=IN: not empty, at most DSN_ENVID_MAX_BYTES,
 * xtext; *OUT the decoded value (malloc'd).  0, or -1 (*OUT NULL). */
int dsn_param_envid(const char *in, char **out);

/* dsn_param_orcpt — ORCPT=IN, "addr-type;xtext" (the type an atom, the
 * address not empty), at most DSN_ORCPT_MAX_BYTES; *OUT "type;decoded"
 * (malloc'd).  0, or -1 (*OUT NULL). */
int dsn_param_orcpt(const char *in, char **out);

/* dsn_param_notify — NOTIFY=IN: "NEVER" alone, or a list of distinct
 * SUCCESS, FAILURE, DELAY (any case, comma-separated, no spaces); *OUT
 * the QUEUE_NOTIFY_* bits.  0, or -1. */
int dsn_param_notify(const char *in, uint8_t *out);

/* dsn_param_ret — RET=FULL or RET=HDRS (any case); *OUT QUEUE_F_RET_FULL
 * or QUEUE_F_RET_HDRS.  0, or -1. */
int dsn_param_ret(const char *in, uint32_t *out);

#endif
