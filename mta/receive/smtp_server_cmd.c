/*
 * smtp_server_cmd.c — the SMTP commands of a session: the command table,
 * its dispatch against the state table (smtp_server.c), and the commands
 * of the dialogue: EHLO/HELO, MAIL, RCPT, RSET, STARTTLS and the ones that
 * answer a fixed line.  DATA/BDAT are in smtp_server_data.c, AUTH in
 * smtp_server_auth.c.
 *
 * Owns nothing beyond the session it is handed.  Loop thread only.  Must
 * not: tell an outsider anything about an address (the relay check comes
 * first), accept UTF-8 in a path without SMTPUTF8.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/observe/metrics_top.h"
#include "mta/observe/quota.h"
#include "mta/observe/watchdog.h"
#include "mta/observe/stats.h"
#include "mta/observe/suppress.h"
#include "mta/receive/dsn_param.h"
#include "mta/receive/smtp_server_int.h"

bool
smtp_server_cmd_starttls_offered(const struct smtp_server_session *s)
{
	return !(s->flags & SF_TLS) && s->listener->ssl_ctx != NULL &&
	       s->listener->conf->tls == CONF_TLS_STARTTLS;
}

static bool
smtp_server_cmd_helo_ok(const char *arg)
{
	size_t n = strlen(arg), i;

	if (n == 0 || n > SMTP_HELO_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (arg[i] == ' ' || (unsigned char)arg[i] < 0x21)
			return false;
	return true;
}

static void
smtp_server_cmd_hello(struct smtp_server_session *s, char *arg, bool ehlo)
{
	if (!smtp_server_cmd_helo_ok(arg)) {
		smtp_server_refuse(s, "501 5.5.4 Syntax: %s hostname",
				   ehlo ? "EHLO" : "HELO");
		return;
	}
	smtp_server_txn_reset(s);
	memcpy(s->helo, arg, strlen(arg) + 1); /* checked: <= SMTP_HELO_MAX */
	if (ehlo)
		s->flags |= SF_EHLO;
	else
		s->flags &= ~SF_EHLO;
	if (!ehlo) {
		smtp_server_reply(s, "250 %s", s->conf->hostname);
		smtp_server_enter(s, SS_READY);
		return;
	}
	smtp_server_reply(s, "250-%s Hello [%s]", s->conf->hostname,
			  s->client_str);
	smtp_server_reply(s, "250-PIPELINING");
	smtp_server_reply(s, "250-SIZE %" PRIu64,
			  s->conf->limits.max_message_size);
	if (smtp_server_cmd_starttls_offered(s))
		smtp_server_reply(s, "250-STARTTLS");
	if (smtp_server_auth_offered(s))
		smtp_server_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_server_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_server_reply(s, "250-8BITMIME");
	smtp_server_reply(s, "250-SMTPUTF8");
	smtp_server_reply(s, "250-DSN");
	smtp_server_reply(s, "250 CHUNKING");
	smtp_server_enter(s, SS_READY);
}

static void
smtp_server_cmd_ehlo(struct smtp_server_session *s, char *arg)
{
	smtp_server_cmd_hello(s, arg, true);
}

static void
smtp_server_cmd_helo(struct smtp_server_session *s, char *arg)
{
	smtp_server_cmd_hello(s, arg, false);
}

/* Next "KEY[=VALUE]" parameter from *P (space separated). */
static bool
smtp_server_cmd_param(char **p, char **key, char **val)
{
	char *q = *p, *eq;

	while (*q == ' ')
		q++;
	if (*q == '\0')
		return false;
	*key = q;
	while (*q != '\0' && *q != ' ')
		q++;
	if (*q != '\0')
		*q++ = '\0';
	*p = q;
	if ((eq = strchr(*key, '=')) != NULL) {
		*eq = '\0';
		*val = eq + 1;
	} else {
		*val = NULL;
	}
	return true;
}

static bool
smtp_server_cmd_may_null(const struct conf_user *u)
{
	size_t i;

	for (i = 0; i < u->nsender_domains; i++)
		if (strcmp(u->sender_domains[i], "*") == 0)
			return true;
	return false;
}

/*
 * MAIL FROM's DSN parameters (RFC 3461 4.3, 4.4): KEY=VAL is RET or ENVID
 * (1), given once each; into S.  0 not a DSN parameter, 1 taken, -1 once
 * refused (replied).
 */
static int
smtp_server_cmd_mail_dsn(struct smtp_server_session *s, const char *key,
			 const char *val)
{
	if (strcasecmp(key, "RET") == 0) {
		if (val == NULL || s->dsn_ret != 0 ||
		    dsn_param_ret(val, &s->dsn_ret) != 0) {
			s->dsn_ret = 0;
			smtp_server_refuse(s, "501 5.5.4 Bad RET parameter");
			return -1;
		}
		return 1;
	}
	if (strcasecmp(key, "ENVID") == 0) {
		if (val == NULL || s->envid != NULL ||
		    dsn_param_envid(val, &s->envid) != 0) {
			smtp_server_refuse(s,
					   "501 5.5.4 Bad ENVID parameter "
					   "(xtext, at most 100 characters)");
			return -1;
		}
		return 1;
	}
	return 0;
}

/* MAIL FROM's parameters in REST: SIZE into *SIZE (*SIZE_SEEN), BODY,
 * SMTPUTF8, AUTH, RET and ENVID into S.  Returns 0, or -1 once refused
 * (replied). */
static int
smtp_server_cmd_mail_params(struct smtp_server_session *s, char *rest,
			    uint64_t *size, bool *size_seen)
{
	char *key, *val, *end;
	bool body_seen = false;
	int dsn;

	free(s->envid); /* a refused MAIL may have left them */
	s->envid = NULL;
	s->dsn_ret = 0;
	while (smtp_server_cmd_param(&rest, &key, &val)) {
		if ((dsn = smtp_server_cmd_mail_dsn(s, key, val)) < 0) {
			memset(&s->sender, 0, sizeof(s->sender));
			return -1;
		}
		if (dsn > 0)
			continue;
		if (strcasecmp(key, "SIZE") == 0 && val != NULL &&
		    !*size_seen) {
			errno = 0;
			*size = strtoull(val, &end, 10);
			if (*val < '0' || *val > '9' || *end != '\0' ||
			    errno != 0) {
				smtp_server_refuse(s, "501 5.5.4 Bad SIZE "
						      "parameter");
				return -1;
			}
			*size_seen = true;
		} else if (strcasecmp(key, "BODY") == 0 && val != NULL &&
			   !body_seen) {
			if (strcasecmp(val, "8BITMIME") == 0)
				s->body8bit = true;
			else if (strcasecmp(val, "7BIT") != 0) {
				smtp_server_refuse(s, "501 5.5.4 Bad BODY "
						      "parameter");
				return -1;
			}
			body_seen = true;
		} else if (strcasecmp(key, "SMTPUTF8") == 0 && val == NULL) {
			s->smtputf8 = true;
		} else if (strcasecmp(key, "AUTH") == 0 && val != NULL) {
			/* RFC 4954 5: accepted, not trusted. */
		} else {
			smtp_server_refuse(s, "555 5.5.4 Unsupported MAIL FROM "
					      "parameter");
			memset(&s->sender, 0, sizeof(s->sender));
			return -1;
		}
	}
	return 0;
}

/* S's user may submit one more message (its quota, quota.h)?  Else the
 * 452 is sent here, logged and counted. */
static bool
smtp_server_cmd_mail_quota(struct smtp_server_session *s)
{
	char label[METRICS_LABEL_MAX], when[32];
	enum quota_period period;
	unsigned limit;
	int64_t until;
	time_t t;
	struct tm tm;

	if (quota_check(s->user->name, util_wall_ms(), &period, &limit, &until))
		return true;
	t = (time_t)(until / 1000);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when),
		 period == QUOTA_HOUR ? "%H:%M UTC" : "%Y-%m-%d 00:00 UTC",
		 &tm);
	metrics_user_label(s->user->name, label);
	smtp_server_log_reject(s, 452, "over its quota", NULL, NULL);
	log_info("%016" PRIx64 " smtp user %s over its quota of %u messages "
		 "per %s (until %s)",
		 s->id, label, limit, quota_period_name(period), when);
	smtp_server_reply(s,
			  "452 4.7.0 Quota exceeded: this account may submit "
			  "%u messages per %s; try again after %s",
			  limit, quota_period_name(period), when);
	return false;
}

static void
smtp_server_cmd_mail(struct smtp_server_session *s, char *arg)
{
	char *rest;
	enum addr_result ar;
	bool size_seen = false;
	uint64_t size = 0;

	if (strncasecmp(arg, "FROM:", 5) != 0) {
		smtp_server_refuse(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (s->listener->conf->require_auth && s->user == NULL &&
	    !smtp_server_feedback_mail_open(s)) {
		smtp_server_refuse(s, "530 5.7.0 Authentication required");
		return;
	}
	/* UTF-8 is allowed in the path only with SMTPUTF8, which comes
	 * after it: parse leniently, check once the parameters are known. */
	ar = addr_path_parse(arg + 5, true, true, &s->sender,
			     (const char **)&rest);
	if (ar != ADDR_OK) {
		smtp_server_refuse(s, "%s 5.1.7 Bad sender address: %s",
				   ar == ADDR_SYNTAX ? "501" : "553",
				   addr_result_str(ar));
		return;
	}
	if (*rest != '\0' && *rest != ' ') {
		smtp_server_refuse(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (smtp_server_cmd_mail_params(s, rest, &size, &size_seen) != 0)
		return;
	if (s->sender.utf8 && !s->smtputf8) {
		smtp_server_refuse(s, "553 5.6.7 Bad sender address: %s",
				   addr_result_str(ADDR_UTF8));
		smtp_server_txn_reset(s);
		return;
	}
	if (size_seen && size > s->conf->limits.max_message_size) {
		STATS_INC(rejected_size);
		smtp_server_refuse(s, "552 5.3.4 Message size exceeds fixed "
				      "maximum message size");
		smtp_server_txn_reset(s);
		return;
	}
	if (s->user != NULL &&
	    (s->sender.null ? !smtp_server_cmd_may_null(s->user)
			    : !conf_user_may_send(s->user, s->sender.domain))) {
		STATS_INC(rejected_sender);
		smtp_server_log_reject(s, 550,
				       "sender domain not allowed for "
				       "this user",
				       NULL, NULL);
		log_info("%016" PRIx64 " smtp sender domain %s refused for "
			 "user %s",
			 s->id, s->sender.null ? "<>" : s->sender.domain,
			 s->user->name);
		smtp_server_refuse(s, "550 5.7.1 Sender address not allowed "
				      "for this user");
		smtp_server_txn_reset(s);
		return;
	}
	/* Only a client that sends as an identity (AUTH, or a relay
	 * network) is stopped: a mailbox provider's report to
	 * feedback.address comes from neither. */
	if ((s->user != NULL || s->client_trusted) &&
	    watchdog_stopped(conf_identity(
		s->conf, s->user != NULL ? s->user->name : NULL))) {
		smtp_server_log_reject(s, 451, "stopped by the watchdog", NULL,
				       NULL);
		smtp_server_reply(s, "451 4.7.1 Sending from this account is "
				     "stopped: its mail departs from its usual "
				     "pattern (watchdog); ask the operator");
		smtp_server_txn_reset(s);
		return;
	}
	if (s->user != NULL && !smtp_server_cmd_mail_quota(s)) {
		smtp_server_txn_reset(s);
		return;
	}
	s->declared_size = size;
	s->msg_id = queue_id_next(smtp_server_queue);
	smtp_server_reply(s, "250 2.1.0 Ok");
	smtp_server_enter(s, SS_MAIL);
}

/* RCPT TO's parameters in REST: NOTIFY and ORCPT (RFC 3461 4.1, 4.2),
 * once each, into *DSN (its orcpt malloc'd).  0, or -1 once refused
 * (replied; nothing left allocated). */
static int
smtp_server_cmd_rcpt_params(struct smtp_server_session *s, char *rest,
			    struct smtp_server_rcpt_dsn *dsn)
{
	char *key, *val;

	memset(dsn, 0, sizeof(*dsn));
	while (smtp_server_cmd_param(&rest, &key, &val)) {
		if (strcasecmp(key, "NOTIFY") == 0 && val != NULL &&
		    dsn->notify == 0) {
			if (dsn_param_notify(val, &dsn->notify) != 0) {
				smtp_server_refuse(s, "501 5.5.4 Bad NOTIFY "
						      "parameter");
				goto fail;
			}
		} else if (strcasecmp(key, "ORCPT") == 0 && val != NULL &&
			   dsn->orcpt == NULL) {
			if (dsn_param_orcpt(val, &dsn->orcpt) != 0) {
				smtp_server_refuse(s, "501 5.5.4 Bad ORCPT "
						      "parameter (type;xtext, "
						      "at most 500 "
						      "characters)");
				goto fail;
			}
		} else {
			smtp_server_refuse(s, "555 5.5.4 Unsupported RCPT TO "
					      "parameter");
			goto fail;
		}
	}
	return 0;
fail:
	free(dsn->orcpt);
	memset(dsn, 0, sizeof(*dsn));
	return -1;
}

/*
 * Is MAILBOX suppressed for S's sending identity?  Then answered here: 550
 * 5.1.1 (never naming the address: the client sent it, the logs must not
 * have it), or 250 without queueing it (s->rcpts_dropped), and a
 * "suppressed" event.  One read transaction (no write): the loop may.
 */
static bool
smtp_server_cmd_rcpt_suppressed(struct smtp_server_session *s,
				const char *mailbox)
{
	const char *identity =
	    conf_identity(s->conf, s->user != NULL ? s->user->name : NULL);
	struct suppress_hit hit;
	enum suppress_verdict v;
	char sid[QUEUE_ID_HEX_BYTES];

	if ((v = suppress_check(identity, mailbox, &hit)) == SUPPRESS_PASS)
		return false;
	queue_id_format(s->id, sid);
	suppress_event(identity, mailbox, sid, s->client_str,
		       v == SUPPRESS_DROP ? "dropped" : "refused", &hit);
	if (v == SUPPRESS_DROP) {
		s->rcpts_dropped++;
		smtp_server_reply(s, "250 2.1.5 Ok");
		smtp_server_enter(s, SS_RCPT);
		return true;
	}
	/* A reply, not an error: a list with many suppressed recipients
	 * must not count towards limits.max_errors. */
	smtp_server_reply(s,
			  "550 5.1.1 Recipient suppressed (%s); see outpost "
			  "suppress",
			  queue_suppress_reason_name(hit.reason));
	return true;
}

static void
smtp_server_cmd_rcpt(struct smtp_server_session *s, char *arg)
{
	struct addr_path rcpt;
	struct smtp_server_rcpt_dsn dsn = { 0, NULL }, *nd;
	const char *rest;
	enum addr_result ar;
	char *copy, **nr;

	if (strncasecmp(arg, "TO:", 3) != 0) {
		smtp_server_refuse(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	/* Reports for us (feedback.address) come from anyone. */
	if (smtp_server_feedback_rcpt(s, arg) != 0)
		return;
	/* Relay decision before anything else: an outsider learns nothing
	 * from us about addresses, whatever trick they are written with. */
	if (s->user == NULL && !s->client_trusted) {
		STATS_INC(rejected_relay);
		log_info("%016" PRIx64 " smtp relay denied for %s", s->id,
			 s->client_str);
		smtp_server_log_reject(s, 554, "relay access denied", NULL,
				       NULL);
		smtp_server_refuse(s, "554 5.7.1 Relay access denied");
		return;
	}
	ar = addr_path_parse(arg + 3, false, s->smtputf8, &rcpt, &rest);
	if (ar != ADDR_OK) {
		smtp_server_refuse(s, "%s 5.1.3 Bad recipient address: %s",
				   ar == ADDR_SYNTAX ? "501" : "553",
				   addr_result_str(ar));
		return;
	}
	if (*rest != '\0' && *rest != ' ') {
		smtp_server_refuse(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	/* REST lies in ARG, the command line's own (writable) copy. */
	if (smtp_server_cmd_rcpt_params(s, arg + (rest - arg), &dsn) != 0)
		return;
	if (smtp_server_cmd_rcpt_suppressed(s, rcpt.mailbox)) {
		free(dsn.orcpt);
		return;
	}
	if (s->nrcpts >= s->conf->limits.max_recipients) {
		free(dsn.orcpt);
		/* Flow control, not an error (RFC 5321 4.5.3.1.10). */
		smtp_server_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (s->nrcpts == s->rcpts_cap) {
		unsigned cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;

		if ((nr = realloc(s->rcpts, cap * sizeof(*nr))) == NULL)
			goto oom;
		s->rcpts = nr;
		if ((nd = realloc(s->rcpt_dsn, cap * sizeof(*nd))) == NULL)
			goto oom;
		s->rcpt_dsn = nd;
		s->rcpts_cap = cap;
	}
	if ((copy = strdup(rcpt.mailbox)) == NULL)
		goto oom;
	s->rcpt_dsn[s->nrcpts] = dsn;
	s->rcpts[s->nrcpts++] = copy;
	smtp_server_reply(s, "250 2.1.5 Ok");
	smtp_server_enter(s, SS_RCPT);
	return;
oom:
	free(dsn.orcpt);
	smtp_server_reply(s, "452 4.3.1 Insufficient system resources");
}

static void
smtp_server_cmd_rset(struct smtp_server_session *s, char *arg)
{
	(void)arg;
	smtp_server_txn_reset(s);
	smtp_server_reply(s, "250 2.0.0 Ok");
	smtp_server_enter(s, s->helo[0] != '\0' ? SS_READY : SS_GREETING);
}

static void
smtp_server_cmd_starttls(struct smtp_server_session *s, char *arg)
{
	if (!smtp_server_cmd_starttls_offered(s)) {
		smtp_server_refuse(s, "503 5.5.1 Error: STARTTLS not "
				      "available");
		return;
	}
	if (*arg != '\0') {
		smtp_server_refuse(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	smtp_server_reply(s, "220 2.0.0 Ready to start TLS");
	/* Whatever the client pipelined after STARTTLS is dropped now
	 * (CVE-2011-0411); we read nothing more until the handshake. */
	evbuffer_drain(bufferevent_get_input(s->bev),
		       evbuffer_get_length(bufferevent_get_input(s->bev)));
	smtp_server_read_set(s, false);
	s->flags |= SF_STARTTLS;
	smtp_server_enter(s, SS_TLS);
}

/* Command dispatch ---------------------------------------------------- */

#define CMDF_CLOSE 0x1u /* hang up once the reply is flushed */

/* A command runs FN, or, without one, answers REPLY whatever its argument
 * says. */
static const struct smtp_server_cmd {
	const char *verb;
	uint32_t bit;
	void (*fn)(struct smtp_server_session *, char *);
	const char *reply;
	unsigned flags;
} smtp_server_cmds[] = {
	{ "MAIL", CMD_MAIL, smtp_server_cmd_mail, NULL, 0 },
	{ "RCPT", CMD_RCPT, smtp_server_cmd_rcpt, NULL, 0 },
	{ "DATA", CMD_DATA, smtp_server_data_cmd, NULL, 0 },
	{ "BDAT", CMD_BDAT, smtp_server_data_cmd_bdat, NULL, 0 },
	{ "RSET", CMD_RSET, smtp_server_cmd_rset, NULL, 0 },
	{ "NOOP", CMD_NOOP, NULL, "250 2.0.0 Ok", 0 },
	{ "QUIT", CMD_QUIT, NULL, "221 2.0.0 Bye", CMDF_CLOSE },
	{ "VRFY", CMD_VRFY, NULL, "252 2.5.0 Cannot VRFY user", 0 },
	{ "EXPN", CMD_EXPN, NULL, "502 5.5.1 EXPN not available", 0 },
	{ "HELP", CMD_HELP, NULL, "214 2.0.0 Outpost: see RFC 5321", 0 },
	{ "STARTTLS", CMD_STARTTLS, smtp_server_cmd_starttls, NULL, 0 },
	{ "AUTH", CMD_AUTH, smtp_server_auth_cmd, NULL, 0 },
	{ "EHLO", CMD_EHLO, smtp_server_cmd_ehlo, NULL, 0 },
	{ "HELO", CMD_HELO, smtp_server_cmd_helo, NULL, 0 },
};

void
smtp_server_cmd_dispatch(struct smtp_server_session *s, char *line)
{
	const struct smtp_server_cmd *c = NULL;
	char *arg;
	size_t i, vlen;

	for (vlen = 0; line[vlen] != '\0' && line[vlen] != ' '; vlen++)
		;
	arg = line + vlen;
	while (*arg == ' ')
		arg++;
	for (i = 0; i < sizeof(smtp_server_cmds) / sizeof(smtp_server_cmds[0]);
	     i++) {
		if (strlen(smtp_server_cmds[i].verb) == vlen &&
		    strncasecmp(line, smtp_server_cmds[i].verb, vlen) == 0) {
			c = &smtp_server_cmds[i];
			break;
		}
	}
	if (c == NULL) {
		/* A web client talking to the SMTP port: not one more byte. */
		if (strncmp(line, "GET ", 4) == 0 ||
		    strncmp(line, "POST ", 5) == 0 ||
		    strncmp(line, "CONNECT ", 8) == 0 ||
		    strncmp(line, "HEAD ", 5) == 0 ||
		    strncmp(line, "PUT ", 4) == 0) {
			log_info("%016" PRIx64 " smtp HTTP request from %s; "
				 "closing",
				 s->id, s->client_str);
			smtp_server_reply(s,
					  "521 5.7.0 %s Error: this is an "
					  "SMTP service",
					  s->conf->hostname);
			smtp_server_close_after(s);
			return;
		}
		smtp_server_refuse(s, "500 5.5.2 Error: command not "
				      "recognized");
		return;
	}
	if (!smtp_server_allows(s, c->bit)) {
		if (c->bit & (CMD_MAIL | CMD_AUTH))
			smtp_server_reply(
			    s, s->state == SS_GREETING
				   ? "503 5.5.1 Error: send EHLO/HELO first"
				   : "503 5.5.1 Error: nested MAIL command");
		else if (c->bit == CMD_RCPT)
			smtp_server_reply(s, "503 5.5.1 Error: need MAIL "
					     "command");
		else if (c->bit == CMD_DATA)
			smtp_server_reply(
			    s, s->state == SS_MAIL
				   ? "554 5.5.1 Error: no valid recipients"
				   : "503 5.5.1 Error: need RCPT command");
		else
			smtp_server_reply(s, "503 5.5.1 Error: bad sequence "
					     "of commands");
		smtp_server_error(s);
		return;
	}
	if (c->fn != NULL) {
		c->fn(s, arg);
		return;
	}
	smtp_server_reply(s, "%s", c->reply);
	if (c->flags & CMDF_CLOSE)
		smtp_server_close_after(s);
}
