/*
 * bounce.h — delivery status notifications (RFC 3464 multipart/report,
 * RFC 3462) for recipients that failed permanently or expired.
 */
#ifndef OUTPOST_MTA_BOUNCE_H
#define OUTPOST_MTA_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "queue/queue.h"

/* Why a recipient failed: what the report tells its sender. */
enum bounce_cause {
	BOUNCE_REFUSED, /* the receiving server refused it (or we could not
			   reach it) for good: its reply in diag */
	BOUNCE_EXPIRED, /* given up after the maximum time in the queue */
	BOUNCE_ADMIN,   /* returned by the mail system administrator (`outpost
			   queue bounce`): diag is not shown */
};

struct bounce_rcpt {
	const char *addr;       /* the recipient, as queued */
	const char *status;     /* enhanced status, "5.1.1" */
	const char *remote_mta; /* the host that answered, or NULL */
	int code;               /* its reply code, 0 if none */
	const char *diag;       /* its reply text (or our reason), or NULL */
	enum bounce_cause cause;
	/* What the failure means for the sender (bounce-categories rules):
	 * written as X-Outpost-Bounce-Category; CONF_BC_NONE: left out. */
	enum conf_bounce_category category;
};

struct bounce_input {
	const char *hostname; /* the reporting MTA (us) */
	const char *qid;      /* the original message's queue id */
	const char *sender;   /* the original envelope sender: the DSN's
				 recipient */
	int64_t arrival_ms;
	const struct bounce_rcpt *rcpts;
	size_t nrcpts;
	const uint8_t *headers; /* the original header block, or NULL */
	size_t headers_len;
	const char *reason; /* one line for the human-readable part, or
			       NULL: said from the recipients' causes */
	const char *envid;  /* DSN ENVID (decoded), or NULL */
	/* DSN ORCPTs ("rfc822;a@b", decoded), parallel to rcpts (entries
	 * NULL: none given); NULL: none at all */
	const char *const *orcpts;
	/* RET=FULL: the whole message, returned instead of the headers
	 * (NULL: the headers only) */
	const uint8_t *full;
	size_t full_len;
	bool relayed; /* a success report (NOTIFY=SUCCESS): "relayed" */
};

/*
 * bounce_dsn_build — the whole DSN message (headers and body, CRLF lines,
 * every line <= 998 octets, 7-bit except for UTF-8 addresses; the original
 * header block up to 64 KiB, cut at a field boundary).  Returns 0
 * and a malloc'd buffer in *OUT (caller frees), or -1 (out of memory).
 */
int bounce_dsn_build(const struct bounce_input *in, uint8_t **out,
		     size_t *outlen);

/* bounce_headers_len — length of the header block at the start of a
 * message (up to and including the empty line), or LEN if none. */
size_t bounce_headers_len(const uint8_t *msg, size_t len);

/*
 * bounce_collect — recipient IDX (RCPT) failed for good this round (STATE:
 * QR_BOUNCED or QR_EXPIRED): append IDX to the round's DSN list *LIST (*N
 * entries) and set RCPT's state.  If the list cannot grow, RCPT stays
 * QR_PENDING (the scheduler tries it again, and fails it again with its
 * DSN) and -1 is returned: a recipient is never failed without being in the
 * DSN.  Returns 0 when it was added.
 */
int bounce_collect(struct queue_rcpt *rcpt, uint32_t idx, uint8_t state,
		   uint32_t **list, unsigned *n);

#endif
