/*
 * arf.h — feedback-loop complaint reports (ARF, RFC 5965) from mailbox
 * providers: the parser of a report (arf.c), the sealed identifier that
 * Outpost adds to every message it signs so that a returned copy can be
 * traced to its sending identity, campaign and queue id (arf_id.c), the
 * processing of one report received on the feedback address
 * (arf_feedback.c: delivery-log "complaint" event, counters, hand-off),
 * and the hand-off of a complaint to suppression and the watchdog.
 */
#ifndef OUTPOST_MTA_RECEIVE_ARF_H
#define OUTPOST_MTA_RECEIVE_ARF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue;

/* Parser ---------------------------------------------------------------- */

#define ARF_REPORT_MAX_BYTES (64u << 20) /* refused above, whatever else */
#define ARF_FIELD_MAX_BYTES  8192        /* one unfolded header field */
#define ARF_FIELDS_MAX       1000        /* fields in one header block */
#define ARF_PARTS_MAX        16          /* MIME parts in a report */
#define ARF_BOUNDARY_MAX     200         /* RFC 2046 says 70; some exceed */
#define ARF_VALUE_MAX        256         /* each field kept below */
#define ARF_ID_VALUE_MAX     1024        /* an X-Outpost-FB value, unfolded */

/* The shape a report came in. */
enum arf_shape {
	ARF_SHAPE_RFC5965,  /* multipart/report; report-type=feedback-report
			       with a message/feedback-report part */
	ARF_SHAPE_RETURNED, /* no feedback-report part, but a returned
			       message (Microsoft JMRP: multipart/mixed or
			       another report-type, or a message/rfc822
			       message): taken as Feedback-Type abuse */
};

/*
 * What a report says.  Strings are NUL-terminated, cut to ARF_VALUE_MAX - 1
 * bytes, control characters replaced by '?'; "" when absent.  Every one is
 * peer text: never log it unscrubbed, never trust it for identity.
 */
struct arf_report {
	enum arf_shape shape;
	/* the machine-readable part (RFC 5965 3.1, 3.2) */
	char feedback_type[32]; /* lower-cased: "abuse", "fraud", … */
	char user_agent[ARF_VALUE_MAX];
	char version[16];
	char original_rcpt_to[ARF_VALUE_MAX];   /* first; angle brackets
						   removed */
	char original_mail_from[ARF_VALUE_MAX]; /* angle brackets removed */
	char arrival_date[ARF_VALUE_MAX];       /* or Received-Date */
	char source_ip[64];
	char reported_domain[ARF_VALUE_MAX];
	/* the returned message's header block (message/rfc822 or
	 * text/rfc822-headers, decoded from base64 or quoted-printable) */
	char fb_id[ARF_ID_VALUE_MAX];     /* the topmost X-Outpost-FB value,
					     unfolded, or "" */
	char feedback_id[ARF_VALUE_MAX];  /* Feedback-ID value, or "" */
	char returned_to[ARF_VALUE_MAX];  /* To:, when it is one bare
					     address, else "" */
	char hotmail_rcpt[ARF_VALUE_MAX]; /* X-HmXmrOriginalRecipient (JMRP) */
	bool truncated; /* the closing boundary was missing (a provider cut
			   the report to its size limit) */
};

/*
 * arf_parse — parse the report DATA (LEN octets: a whole message as
 * received, CRLF or LF line ends) into *R.  Strict where a wrong answer
 * would matter (MIME structure, the encodings of the returned message, a
 * declared feedback-report part that lacks Feedback-Type, size limits
 * above), lenient where providers differ harmlessly (Version 0.1, LF line
 * ends, a missing closing boundary, the JMRP shape).  Returns 0, or -1 with
 * a short reason in ERR (no peer bytes in it).  Allocates only while it
 * runs.  Any thread; pure.
 */
int arf_parse(const uint8_t *data, size_t len, struct arf_report *r, char *err,
	      size_t errlen);

/* Sealed identifier ----------------------------------------------------- */

#define ARF_ID_HEADER "X-Outpost-FB"

/* What the identifier carries; strings NUL-terminated. */
struct arf_id {
	uint64_t queue_id;
	int64_t time_ms;    /* when it was sealed (intake) */
	char identity[256]; /* conf_identity() of the message */
	char campaign[256]; /* "" when none */
	char rcpt[256];     /* the recipient when the message had only one,
			       else "" */
};

/*
 * arf_id_key — the identifier key of Q (queue_state_subkey "feedback"):
 * the same after a restart, so reports on mail sent before it verify.
 * Any thread.
 */
void arf_id_key(struct queue *q, uint8_t key[32]);

/*
 * arf_id_seal — the header field "X-Outpost-FB: v=1; id=…" with its final
 * CRLF, folded at 78 columns, into OUT (OUTLEN bytes): ID encrypted and
 * authenticated with XChaCha20-Poly1305 under KEY (a random nonce; the
 * tag is the MAC), base64url.  No identity or address appears in clear.
 * Returns the field's length, or -1 when OUT is too small or a string of
 * ID is over 255 bytes.  Any thread.
 */
int arf_id_seal(const uint8_t key[32], const struct arf_id *id, char *out,
		size_t outlen);

/*
 * arf_id_open — the reverse: VALUE (a field value as arf_parse keeps it,
 * folding white space allowed) into *ID.  0, or -1 when it is not a v=1
 * identifier or does not verify under KEY (forged, altered, another
 * installation's).  Any thread.
 */
int arf_id_open(const uint8_t key[32], const char *value, struct arf_id *id);

/* Processing and hand-off ----------------------------------------------- */

/* The result of one report, as counted in
 * outpost_feedback_reports_total{result}. */
enum arf_result {
	ARF_RESULT_OK,         /* verified: a complaint event and hand-off */
	ARF_RESULT_MALFORMED,  /* not a report arf_parse accepts */
	ARF_RESULT_UNVERIFIED, /* an X-Outpost-FB that does not verify */
	ARF_RESULT_UNKNOWN,    /* none of ours: no X-Outpost-FB at all */
};

/* "ok", "malformed", "unverified", "unknown-message" */
const char *arf_result_name(enum arf_result r);

/* One complaint, for suppression and the watchdog. */
struct arf_complaint {
	const char *identity; /* conf_identity of the message (authenticated) */
	const char *rcpt;     /* the complaining recipient, clear, never logged;
				 NULL when the report hides it (redacted) and the
				 message had several recipients */
	const char *campaign; /* NULL when none */
	uint64_t queue_id;
	const char *feedback_type; /* "abuse" … */
	int64_t time_ms;           /* when the report was processed */
};

typedef void arf_complaint_fn(const struct arf_complaint *c, void *arg);

/*
 * arf_complaint_hook — FN(c, ARG) is called once per verified complaint,
 * on a worker thread, after its delivery-log event; it must not block.
 * Main thread, before the loops run (NULL: none).
 */
void arf_complaint_hook(arf_complaint_fn *fn, void *arg);

/*
 * arf_feedback_process — one report received on feedback.address: parse
 * it, open its identifier with Q's key, decide the recipient (the
 * identifier's, else Original-Rcpt-To, else JMRP's original recipient,
 * else the returned To:), write the "complaint" event, count it, call the
 * hook.  CLIENT (the reporter's IP) and SESSION (hex) go into the
 * diagnostics.  Worker thread (parsing is CPU work on up to
 * feedback.max_report_size).  Returns the result.
 */
enum arf_result arf_feedback_process(struct queue *q, const uint8_t *data,
				     size_t len, const char *client,
				     const char *session);

#endif
