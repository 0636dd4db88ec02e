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
	OS__COUNT
};

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
};

/* A configured reply pattern: `destination … { suspend_on = { … } }`. */
struct outcome_pattern {
	void *re; /* compiled regex_t, owned by the caller */
	uint64_t suspend_ms;
};

/*
 * outcome_classify — decide what a result means.
 *   stage: where it arrived; code: the SMTP reply code (0 when there was no
 *   reply: connection failure, timeout, TLS failure); text: the reply text
 *   (may be NULL); patterns (npatterns): suspend rules checked against
 *   "CODE TEXT".
 * Pure; any thread.
 */
void outcome_classify(enum outcome_stage stage, int code, const char *text,
		      const struct outcome_pattern *patterns,
		      unsigned npatterns, struct outcome *out);

/* outcome_stage_name — "rcpt", "eom" … for logs and DSN diagnostics. */
const char *outcome_stage_name(enum outcome_stage stage);

#endif
