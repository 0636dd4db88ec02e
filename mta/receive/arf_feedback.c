/*
 * arf_feedback.c — one complaint report received on feedback.address:
 * parsed (arf.c), traced through its sealed identifier (arf_id.c), then
 * the "complaint" delivery-log event, the counters, and the hand-off to
 * whoever main.c registered (suppression, the watchdog).
 * Owns the hook (set once before the loops).  Worker thread.  Must not:
 * take an identity from anything but a verified identifier, log the
 * complaining address or any peer text unscrubbed, fail on any input.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "queue/queue.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/observe/evlog.h"
#include "mta/observe/stats.h"
#include "mta/receive/arf.h"

static arf_complaint_fn *arf_hook_fn;
static void *arf_hook_arg;

void
arf_complaint_hook(arf_complaint_fn *fn, void *arg)
{
	arf_hook_fn = fn;
	arf_hook_arg = arg;
}

const char *
arf_result_name(enum arf_result r)
{
	switch (r) {
	case ARF_RESULT_OK:
		return "ok";
	case ARF_RESULT_MALFORMED:
		return "malformed";
	case ARF_RESULT_UNVERIFIED:
		return "unverified";
	case ARF_RESULT_UNKNOWN:
		return "unknown-message";
	}
	return "malformed";
}

/* A usable recipient: "local@domain", one '@', no white space, and not
 * the placeholder of a provider that redacts ("redacted@…"). */
static bool
arf_feedback_addr_ok(const char *a)
{
	const char *at = strchr(a, '@');

	return at != NULL && at != a && at[1] != '\0' &&
	       strchr(at + 1, '@') == NULL && strpbrk(a, " \t<>") == NULL &&
	       strncasecmp(a, "redacted@", 9) != 0;
}

/*
 * The complaining recipient: the identifier's (authenticated; a message
 * with one recipient carries it), else what the report says — its
 * Original-Rcpt-To, JMRP's X-HmXmrOriginalRecipient, the returned To: —
 * since a message with several recipients has one body and so one
 * identifier for all of them.  NULL when the report hides it.
 */
static const char *
arf_feedback_rcpt(const struct arf_id *id, const struct arf_report *r)
{
	if (id->rcpt[0] != '\0')
		return id->rcpt;
	if (arf_feedback_addr_ok(r->original_rcpt_to))
		return r->original_rcpt_to;
	if (arf_feedback_addr_ok(r->hotmail_rcpt))
		return r->hotmail_rcpt;
	if (arf_feedback_addr_ok(r->returned_to))
		return r->returned_to;
	return NULL;
}

/* The campaign: the identifier's, else the first field of a Feedback-ID
 * ("campaign:customer:mailtype:senderid", Gmail's FBL), else none. */
static const char *
arf_feedback_campaign(const struct arf_id *id, const struct arf_report *r,
		      char *buf, size_t len)
{
	size_t n;

	if (id->campaign[0] != '\0')
		return id->campaign;
	n = strcspn(r->feedback_id, ":");
	if (n == 0 || n >= len)
		return NULL;
	memcpy(buf, r->feedback_id, n);
	buf[n] = '\0';
	return buf;
}

enum arf_result
arf_feedback_process(struct queue *q, const uint8_t *data, size_t len,
		     const char *client, const char *session)
{
	struct arf_report *r;
	struct arf_id id;
	struct evlog_event ev;
	struct arf_complaint cp;
	uint8_t key[32];
	char err[120], qid[QUEUE_ID_HEX_BYTES], cbuf[ARF_VALUE_MAX];
	enum arf_result res;

	if ((r = malloc(sizeof(*r))) == NULL ||
	    arf_parse(data, len, r, err, sizeof(err)) != 0) {
		STATS_INC(fb_malformed);
		log_info("%s feedback: malformed report from %s: %s", session,
			 client, r == NULL ? "out of memory" : err);
		free(r);
		return ARF_RESULT_MALFORMED;
	}
	if (r->fb_id[0] == '\0') {
		STATS_INC(fb_unknown);
		log_info("%s feedback: %s report from %s names no message "
			 "of ours (no " ARF_ID_HEADER "%s)",
			 session, r->feedback_type, client,
			 r->feedback_id[0] ? "; a Feedback-ID, which proves "
					     "nothing alone"
					   : "");
		res = ARF_RESULT_UNKNOWN;
		goto done;
	}
	arf_id_key(q, key);
	if (arf_id_open(key, r->fb_id, &id) != 0) {
		STATS_INC(fb_unverified);
		log_warnx("%s feedback: %s report from %s: its " ARF_ID_HEADER
			  " does not verify (forged, altered or another "
			  "installation's); no complaint recorded",
			  session, r->feedback_type, client);
		res = ARF_RESULT_UNVERIFIED;
		goto done;
	}
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_COMPLAINT;
	ev.id = id.queue_id;
	ev.session = session;
	ev.user = id.identity;
	ev.client = client;
	ev.rcpt = arf_feedback_rcpt(&id, r);
	ev.nrcpts = -1;
	ev.attempt = -1;
	ev.queue_time_ms = -1;
	ev.tls_verified = -1;
	ev.count = -1;
	ev.campaign = arf_feedback_campaign(&id, r, cbuf, sizeof(cbuf));
	ev.feedback_type = r->feedback_type;
	ev.agent = r->user_agent[0] ? r->user_agent : NULL;
	ev.reason =
	    ev.rcpt == NULL ? "recipient redacted by the reporter" : NULL;
	evlog_write(&ev);
	STATS_INC(fb_ok);
	STATS_INC(complaints);
	queue_id_format(id.queue_id, qid);
	log_info("%s feedback: %s complaint from %s on %s (identity %s)%s",
		 session, r->feedback_type, client, qid, id.identity,
		 ev.rcpt == NULL ? "; recipient redacted" : "");
	if (arf_hook_fn != NULL) {
		memset(&cp, 0, sizeof(cp));
		cp.identity = id.identity;
		cp.rcpt = ev.rcpt;
		cp.campaign = ev.campaign;
		cp.queue_id = id.queue_id;
		cp.feedback_type = r->feedback_type;
		cp.time_ms = util_wall_ms();
		arf_hook_fn(&cp, arf_hook_arg);
	}
	res = ARF_RESULT_OK;
	sodium_memzero(&id, sizeof(id));
done:
	sodium_memzero(key, sizeof(key));
	free(r);
	return res;
}
