/*
 * intake_trace.h — what the intake takes from a message's header block for
 * tracing: its Message-ID and its campaign (log.campaign_header), carried
 * in the queue record to every delivery-log event of the message.
 */
#ifndef OUTPOST_MTA_INTAKE_TRACE_H
#define OUTPOST_MTA_INTAKE_TRACE_H

#include <stdbool.h>
#include <stddef.h>

struct dkim_msg;
struct queue_envelope;

/* A Message-ID longer than this is not recorded (a cut one would never
 * match what the sender's platform holds); a campaign is cut to this. */
#define INTAKE_MSGID_MAX_BYTES    250
#define INTAKE_CAMPAIGN_MAX_BYTES 128

/*
 * intake_trace_extract — from the parsed header block M (peer bytes), set
 * ENV's msgid (the first Message-ID field's "<...>", unfolded; none when
 * over INTAKE_MSGID_MAX_BYTES or holding a control character), campaign
 * (the first CAMPAIGN_HEADER field, NULL: none; unfolded, white-space runs
 * as one space, trimmed, cut to INTAKE_CAMPAIGN_MAX_BYTES on a UTF-8
 * boundary; none when it holds a control character; without the field,
 * ENV's DSN ENVID) and the
 * QUEUE_F_MSGID_CLEAR flag (intake_trace_msgid_clear).  ENV's sender and
 * recipients must be set.  Fields already set are replaced (freed).
 * Returns 0, or -1 out of memory (the fields then NULL).  Any thread.
 */
int intake_trace_extract(const struct dkim_msg *m, const char *campaign_header,
			 struct queue_envelope *env);

/*
 * intake_trace_msgid_clear — may MSGID be written in clear in the delivery
 * log?  Only when it is machine-made: "<left@right>" whose left holds at
 * least 12 bytes of which at least 4 digits (a mailbox rarely does; a
 * generated id nearly always), and neither half contains an encoded
 * address or a local part of ENV's sender or recipients (the scrubber,
 * mta/core/scrub.h).  Otherwise only its keyed hash is.  Any thread.
 */
bool intake_trace_msgid_clear(const char *msgid,
			      const struct queue_envelope *env);

#endif
