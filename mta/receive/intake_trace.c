/*
 * intake_trace.c — the Message-ID and campaign of a message, taken once from
 * the header block the intake parsed (intake_trace.h).
 * Owns nothing: pure functions over the caller's message and envelope.
 * Thread: any (the intake calls it on the session's loop; it is linear in
 * the header block and the recipients, no I/O).
 * Invariants: peer bytes are bounded and a value with a control character
 * is dropped, never stored; a Message-ID is allowed in clear in the log
 * only when it holds no address of its own message.
 */
#include <stdlib.h>
#include <string.h>

#include "dkim/dkim.h"
#include "queue/queue.h"
#include "mta/core/scrub.h"
#include "mta/receive/intake_trace.h"

#define INTAKE_TRACE_LEFT_MIN_BYTES  12
#define INTAKE_TRACE_LEFT_MIN_DIGITS 4

/*
 * The value of field H, unfolded (CRLF dropped), each run of white space
 * as one space, trimmed, into OUT (CAP bytes, NUL-terminated), cut at CAP
 * - 1 bytes (*CUT set).  -1 when it holds another control character.
 */
static int
intake_trace_value(const struct dkim_header *h, char *out, size_t cap,
		   bool *cut)
{
	const char *p = memchr(h->field, ':', h->len), *end = h->field + h->len;
	size_t n = 0;
	bool space = false;
	unsigned char c;

	*cut = false;
	if (p == NULL)
		return -1;
	for (p++; p < end; p++) {
		c = (unsigned char)*p;
		if (c == '\r' || c == '\n' || c == ' ' || c == '\t') {
			/* folding: dkim_msg_parse let only CRLF WSP through */
			space = n > 0;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			return -1;
		if (n + (space ? 2 : 1) >= cap) {
			*cut = true;
			break;
		}
		if (space)
			out[n++] = ' ';
		space = false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* Back N off to the start of a UTF-8 sequence the cut went through. */
static size_t
intake_trace_utf8_cut(const char *s, size_t n)
{
	size_t i = n, want;
	unsigned char lead;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80 && n - i < 3)
		i--;
	if (i == 0)
		return n;
	lead = (unsigned char)s[i - 1];
	if (lead < 0xc0)
		return n; /* ASCII (or stray continuation bytes): as is */
	want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	return n - (i - 1) < want ? i - 1 : n;
}

static int
intake_trace_campaign(const struct dkim_msg *m, const char *name, char **out)
{
	const struct dkim_header *h;
	char buf[INTAKE_CAMPAIGN_MAX_BYTES + 1];
	size_t n;
	bool cut;

	*out = NULL;
	if (name == NULL || (h = dkim_header_find(m, name, 0)) == NULL ||
	    intake_trace_value(h, buf, sizeof(buf), &cut) != 0)
		return 0;
	n = strlen(buf);
	if (cut)
		n = intake_trace_utf8_cut(buf, n);
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	if (n == 0)
		return 0;
	buf[n] = '\0';
	return (*out = strdup(buf)) != NULL ? 0 : -1;
}

static int
intake_trace_msgid(const struct dkim_msg *m, char **out)
{
	const struct dkim_header *h;
	char buf[INTAKE_MSGID_MAX_BYTES + 1];
	const char *s, *e;
	bool cut;

	*out = NULL;
	if ((h = dkim_header_find(m, "Message-ID", 0)) == NULL ||
	    intake_trace_value(h, buf, sizeof(buf), &cut) != 0 || cut)
		return 0;
	/* "<id-left@id-right>" (RFC 5322 3.6.4), comments around it
	 * dropped; a value without brackets is kept whole. */
	s = buf;
	e = buf + strlen(buf);
	if ((s = strchr(buf, '<')) != NULL && (e = strchr(s, '>')) != NULL)
		e++;
	else {
		s = buf;
		e = buf + strlen(buf);
	}
	if (e == s || (e - s == 2 && *s == '<'))
		return 0;
	return (*out = strndup(s, (size_t)(e - s))) != NULL ? 0 : -1;
}

/* Recipient I (then the sender) of the envelope, for the scrubber. */
static const char *
intake_trace_addr(const void *arg, size_t i)
{
	const struct queue_envelope *env = arg;

	return i < env->nrcpts ? env->rcpts[i].addr : env->sender;
}

/* Does [S, S+N) pass the scrubber whole, with the context entered? */
static bool
intake_trace_plain(const char *s, size_t n)
{
	char out[SCRUB_OUT_BYTES];
	size_t outlen;

	return scrub_text(s, n, NULL, 0, SCRUB_KNOWN, out, sizeof(out),
			  &outlen) == s &&
	       outlen == n;
}

bool
intake_trace_msgid_clear(const char *msgid, const struct queue_envelope *env)
{
	struct scrub_ctx ctx = { intake_trace_addr, env, env->nrcpts + 1 };
	const struct scrub_ctx *prev;
	const char *s = msgid, *e = msgid + strlen(msgid), *at;
	size_t i, digits = 0;
	bool ok;

	if (s < e && *s == '<' && e[-1] == '>') {
		s++;
		e--;
	}
	if ((at = memchr(s, '@', (size_t)(e - s))) == NULL ||
	    memchr(at + 1, '@', (size_t)(e - at - 1)) != NULL || at + 1 == e)
		return false;
	if ((size_t)(at - s) < INTAKE_TRACE_LEFT_MIN_BYTES)
		return false;
	for (i = 0; s + i < at; i++)
		digits += s[i] >= '0' && s[i] <= '9';
	if (digits < INTAKE_TRACE_LEFT_MIN_DIGITS)
		return false;
	prev = scrub_ctx_enter(&ctx);
	ok = intake_trace_plain(s, (size_t)(at - s)) &&
	     intake_trace_plain(at + 1, (size_t)(e - at - 1));
	scrub_ctx_leave(prev);
	return ok;
}

int
intake_trace_extract(const struct dkim_msg *m, const char *campaign_header,
		     struct queue_envelope *env)
{
	free(env->msgid);
	free(env->campaign);
	env->msgid = env->campaign = NULL;
	env->flags &= ~QUEUE_F_MSGID_CLEAR;
	if (intake_trace_msgid(m, &env->msgid) != 0 ||
	    intake_trace_campaign(m, campaign_header, &env->campaign) != 0) {
		free(env->msgid);
		env->msgid = NULL;
		return -1;
	}
	/* Without the header, the DSN envelope id names the campaign (an
	 * ESP's platform sets one or the other). */
	if (env->campaign == NULL && env->envid != NULL &&
	    (env->campaign = strdup(env->envid)) == NULL) {
		free(env->msgid);
		env->msgid = NULL;
		return -1;
	}
	if (env->msgid != NULL && intake_trace_msgid_clear(env->msgid, env))
		env->flags |= QUEUE_F_MSGID_CLEAR;
	return 0;
}
