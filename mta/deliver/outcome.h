/*
 * outcome.h — the one place that maps a delivery attempt's result (a reply,
 * a timeout, a refused connection, a TLS failure) to what happens next:
 * settle, defer or bounce; try the next MX host; back the destination off;
 * suspend it (Postfix's smtp_trouble.c in spirit).
 */
#ifndef OUTPOST_MTA_OUTCOME_H
#define OUTPOST_MTA_OUTCOME_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"

/* Where in the dialogue the result arrived. */
enum outcome_stage {
	OS_CONNECT,  /* connect() failed or timed out */
	OS_GREETING, /* the banner */
	OS_EHLO,
	OS_STARTTLS,
	OS_TLS, /* the handshake itself */
	OS_MAIL,
	OS_RCPT,
	OS_DATA,  /* the reply to DATA (354 expected) */
	OS_EOM,   /* end of data, or BDAT LAST */
	OS_LOCAL, /* decided here: 8-bit body to a 7-bit host, expiry … */
	OS_HELO,  /* the fallback when EHLO is refused */
	OS_RSET,
	OS_QUIT,
	OS__COUNT
};

/*
 * What one reply means for the command it answers (STAGE): the success that
 * command expects (220 to the banner and STARTTLS, 250 to EHLO/HELO, 354 to
 * DATA, any 2xx to MAIL, RCPT, RSET, QUIT, end of data and BDAT), a
 * temporary or permanent refusal, or none of these: a reply that command
 * cannot get (a 250 to DATA, a 334 to MAIL, a 1xx, a code out of range).
 * That last is a protocol error: the dialogue is out of step, so the
 * connection is closed and what was in flight deferred (4.5.0).
 */
enum outcome_reply {
	OR_OK,
	OR_TEMP,     /* 4xx */
	OR_PERM,     /* 5xx */
	OR_PROTOCOL, /* not a reply this command can get */
};

/* The enhanced status of every protocol error (RFC 3463: 4.5.0). */
#define OUTCOME_PROTOCOL_STATUS "4.5.0"

enum outcome_action {
	OA_DELIVERED,
	OA_DEFER,  /* temporary: retry later */
	OA_BOUNCE, /* permanent: a DSN to the sender */
};

struct outcome {
	enum outcome_action action;
	bool next_host;    /* the failure belongs to the host: try the next
			      MX host now for the same recipients */
	bool site_backoff; /* the destination should slow down */
	bool retry_now;    /* RCPT refused for quantity (452/552 at RCPT,
			      RFC 5321 4.5.3.1.10): send in a new
			      transaction at once, not on the back-off clock */
	bool suspend;      /* a configured reply pattern matched */
	uint64_t suspend_ms;
	char status[12]; /* enhanced status code, e.g. "5.1.1" */
	/* What the failure means for the sender (bounce-categories rules);
	 * CONF_BC_NONE when delivered. */
	enum conf_bounce_category category;
};

/* A configured reply pattern: `destination … { suspend_on = { … } }`. */
struct outcome_pattern {
	void *re; /* compiled regex_t, owned by the caller */
	uint64_t suspend_ms;
};

/*
 * outcome_reply — what CODE means as the reply to the command of STAGE (see
 * enum outcome_reply).  The SMTP client asks this for every reply, and
 * outcome_classify() uses the same rules: nowhere else decides which codes
 * a command may get.  Pure; any thread.
 */
enum outcome_reply outcome_reply(enum outcome_stage stage, int code);

/*
 * outcome_classify — decide what a result means for a recipient.
 *   stage: the command the reply answered (or where the attempt failed);
 *   code: the SMTP reply code (0 when there was no usable reply: connection
 *   failure, timeout, TLS failure, a protocol error without a code); text:
 *   the reply text, or for code 0 our reason, which may start with the
 *   enhanced status to report ("4.5.0 …"; only class 4 is taken); may be
 *   NULL; patterns (npatterns): suspend rules checked against "CODE TEXT".
 * Only a 2xx to the end of data (OS_EOM) delivers.  Any other success (a
 * 250 to RCPT, a 354 to DATA) means the transaction never ended: deferred,
 * as is a reply outcome_reply() calls a protocol error (4.5.0).
 * Pure; any thread.
 */
void outcome_classify(enum outcome_stage stage, int code, const char *text,
		      const struct outcome_pattern *patterns,
		      unsigned npatterns, struct outcome *out);

/*
 * outcome_enhanced — the enhanced status code (RFC 3463, "X.Y.Z") TEXT
 * starts with, when its class is CODE's (5.x.x for a 5xx): into OUT
 * (NUL-terminated), true.  False, OUT untouched: none, or malformed, or of
 * another class.  The one parser of enhanced codes.  Pure; any thread.
 */
bool outcome_enhanced(int code, const char *text, char out[12]);

/*
 * outcome_categorize — O's bounce category, right after outcome_classify()
 * of the same result (CODE, TEXT): none for a delivery; protocol for a
 * reply out of step (OUTCOME_PROTOCOL_STATUS without a refusal code); else
 * the first rule of C's bounce categories (conf_bounce_classify) matching
 * CODE, O's enhanced status and TEXT, deferrals as well as bounces.  C may
 * be NULL (the fall-backs only).  Pure; any thread.
 */
void outcome_categorize(const struct conf *c, int code, const char *text,
			struct outcome *o);

/*
 * outcome_category_last — the category of a recipient's last failure as
 * the queue keeps it (CODE, 0 when there was no reply; TEXT, which may open
 * with the enhanced status): what an expiry reports.  Pure; any thread.
 */
enum conf_bounce_category outcome_category_last(const struct conf *c, int code,
						const char *text);

/* outcome_stage_name — "rcpt", "eom" … for logs and DSN diagnostics. */
const char *outcome_stage_name(enum outcome_stage stage);

#endif
