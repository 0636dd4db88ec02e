/*
 * smtp_server_feedback.c — mail to feedback.address (complaint reports):
 * taken from anyone on any listener (mail for us, not relay), alone in its
 * transaction, limited per client and in size, never queued: parsed and
 * acted on by the worker pool (arf_feedback_process), then answered.
 * Owns the per-client report counters (one mutex-guarded table, touched
 * once per RCPT).  Loop thread, but for the job's run on a worker.
 * Must not: let the feedback address open relay to any other recipient,
 * parse on the loop, hold more than the session's body budget.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/receive/arf.h"
#include "mta/receive/smtp_server_int.h"

/*
 * Reports per client address in the current minute.  Direct-mapped and
 * bounded: a client whose slot another takes starts a new minute, which
 * lets through at most one more minute's worth — a flood needs many
 * addresses to profit, and each is limited all the same.
 */
#define FB_RATE_SLOTS     4096
#define FB_RATE_WINDOW_MS 60000

static struct {
	pthread_mutex_t lock;
	struct fb_rate {
		struct peer_key key;
		int64_t start_ms;
		unsigned count;
	} slots[FB_RATE_SLOTS];
} fb_rate = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* One more report from K: false when over MAX this minute. */
static bool
smtp_server_feedback_rate(const struct peer_key *k, unsigned max)
{
	uint32_t h = 2166136261u;
	struct fb_rate *r;
	int64_t now = util_mono_ms();
	size_t i;
	bool ok;

	h = (h ^ k->family) * 16777619u;
	for (i = 0; i < sizeof(k->addr); i++)
		h = (h ^ k->addr[i]) * 16777619u;
	pthread_mutex_lock(&fb_rate.lock);
	r = &fb_rate.slots[h % FB_RATE_SLOTS];
	if (memcmp(&r->key, k, sizeof(*k)) != 0 ||
	    now - r->start_ms >= FB_RATE_WINDOW_MS) {
		r->key = *k;
		r->start_ms = now;
		r->count = 0;
	}
	ok = r->count < max;
	if (ok)
		r->count++;
	pthread_mutex_unlock(&fb_rate.lock);
	return ok;
}

bool
smtp_server_feedback_mail_open(struct smtp_server_session *s)
{
	if (s->conf->feedback.address == NULL)
		return false;
	s->mail_unauth = true;
	return true;
}

int
smtp_server_feedback_rcpt(struct smtp_server_session *s, const char *arg)
{
	const char *fb = s->conf->feedback.address, *rest;
	struct addr_path rcpt;
	bool ours;

	ours = fb != NULL &&
	       addr_path_parse(arg + 3, false, s->smtputf8, &rcpt, &rest) ==
		   ADDR_OK &&
	       strcasecmp(rcpt.mailbox, fb) == 0;
	if (!ours) {
		if (s->feedback) {
			smtp_server_reply(s, "452 4.5.3 A feedback report "
					     "travels alone: one recipient");
			return 1;
		}
		if (s->mail_unauth) {
			smtp_server_refuse(s, "530 5.7.0 Authentication "
					      "required");
			return 1;
		}
		return 0;
	}
	if (*rest != '\0') {
		smtp_server_refuse(s, "555 5.5.4 No RCPT TO parameters for "
				      "the feedback address");
		return 1;
	}
	if (s->nrcpts > 0) {
		smtp_server_reply(s, "452 4.5.3 A feedback report travels "
				     "alone: send it in its own transaction");
		return 1;
	}
	if (!s->feedback &&
	    !smtp_server_feedback_rate(&s->client,
				       s->conf->feedback.reports_per_minute)) {
		log_info("%016" PRIx64 " feedback: %s over %u reports a "
			 "minute",
			 s->id, s->client_str,
			 s->conf->feedback.reports_per_minute);
		smtp_server_reply(s, "450 4.7.1 Too many feedback reports from "
				     "your address, try again later");
		return 1;
	}
	s->feedback = true;
	smtp_server_reply(s, "250 2.1.5 Ok");
	smtp_server_enter(s, SS_RCPT);
	return 1;
}

/* One report on its way through the worker pool. */
struct fb_job {
	struct smtp_server_session *s;
	uint8_t *body;
	size_t len;
	char client[sizeof(((struct smtp_server_session *)0)->client_str)];
	char sid[QUEUE_ID_HEX_BYTES];
	enum arf_result result;
};

static void
smtp_server_feedback_run(void *arg)
{
	struct fb_job *j = arg;

	j->result = arf_feedback_process(smtp_server_queue, j->body, j->len,
					 j->client, j->sid);
}

/*
 * The report was acted on: answer.  The 250 here promises no queued
 * message (nothing of it is queued), so "no 250 before the queue commit"
 * is not at stake; its effects went out before it: the complaint event
 * to the delivery log's writer, the complaint to the hook, whose
 * suppression write is asynchronous — a crash in between loses that one
 * suppression, not mail, and the provider reports the next complaint.
 */
static void
smtp_server_feedback_done(void *arg)
{
	struct fb_job *j = arg;
	struct smtp_server_session *s = j->s;

	s->pending--;
	smtp_mem_give(s->inflight_charge);
	s->inflight_charge = 0;
	free(j->body);
	if (!(s->flags & SF_ZOMBIE)) {
		smtp_server_reply(s, "250 2.0.0 Feedback report received (%s)",
				  arf_result_name(j->result));
		smtp_server_idle(s);
	}
	free(j);
	smtp_server_resume(s);
	smtp_server_settle(s);
}

void
smtp_server_feedback_end(struct smtp_server_session *s)
{
	struct fb_job *j;

	if (s->body_len > s->conf->feedback.max_report_size) {
		log_info("%016" PRIx64 " feedback: report from %s over "
			 "feedback.max_report_size (%zu octets)",
			 s->id, s->client_str, s->body_len);
		smtp_server_reply(s, "552 5.3.4 Feedback report exceeds the "
				     "maximum report size");
		smtp_server_idle(s);
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		smtp_server_reply(s, "451 4.3.0 Temporary failure, try again "
				     "later");
		smtp_server_idle(s);
		return;
	}
	j->s = s;
	j->body = s->body;
	j->len = s->body_len;
	memcpy(j->client, s->client_str, sizeof(j->client));
	queue_id_format(s->id, j->sid);
	/* The body's memory stays charged until the job is done. */
	s->inflight_charge = s->body_cap;
	s->body = NULL;
	s->body_len = s->body_cap = 0;
	s->pending++;
	smtp_server_busy(s);
	worker_submit(s->loop, smtp_server_feedback_run,
		      smtp_server_feedback_done, j);
}
