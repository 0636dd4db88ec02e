/*
 * smtp_server_auth.c — the AUTH command of a session (RFC 4954): PLAIN and
 * LOGIN, the exchange of 334 challenges, the limits' verdict, and the
 * answer once the worker pool has checked the password (auth.c verifies,
 * auth_limit.c counts).
 *
 * Owns: s->auth while the exchange runs; it is wiped when it ends.  Loop
 * thread only; the verification comes back through auth_verify()'s done
 * callback.  Must not: log a password, or a user name that is not
 * configured; answer a failure before its delay has passed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <sodium.h>

#include "conf/conf.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/stats.h"
#include "mta/receive/auth.h"
#include "mta/receive/auth_limit.h"
#include "mta/receive/smtp_server_int.h"

bool
smtp_server_auth_offered(const struct smtp_server_session *s)
{
	const struct conf_listener *li = s->listener->conf;

	if (!li->auth || s->conf->nusers == 0)
		return false;
	return (s->flags & SF_TLS) || s->listener->auth_plain_ok;
}

static void smtp_server_auth_done(struct auth_request *req);

void
smtp_server_auth_reset(struct smtp_server_session *s)
{
	if (s->auth != NULL) {
		sodium_memzero(s->auth, sizeof(*s->auth));
		free(s->auth);
		s->auth = NULL;
	}
	s->auth_mech = AM_NONE;
}

static void
smtp_server_auth_fail(struct smtp_server_session *s, const char *reply)
{
	smtp_server_auth_reset(s);
	smtp_server_refuse(s, "%s", reply);
	smtp_server_enter(s, SS_READY);
}

/* The user name as the log may show it: a configured one, scrubbed (a
 * name can look like an address); a typed one could be anything. */
static const char *
smtp_server_auth_name(const struct conf_user *u, char *buf, size_t len)
{
	if (u == NULL)
		return "(unknown)";
	return log_escape(buf, len, u->name, strlen(u->name));
}

/* The limits refused the attempt before its password was checked.  The
 * reply is the same whether the name is a user or not. */
static void
smtp_server_auth_refused(struct smtp_server_session *s,
			 enum auth_limit_verdict v, uint64_t left_ms)
{
	static const char *const why[] = {
		[AUTH_LIMIT_USER_BLOCKED] = "user blocked from this address",
		[AUTH_LIMIT_ADDR_BLOCKED] = "address blocked",
		[AUTH_LIMIT_BUSY] = "limit reached by attempts in flight",
		[AUTH_LIMIT_FULL] = "limiter table full",
	};
	char name[320];

	STATS_INC(auth_blocked);
	log_info("%016" PRIx64 " smtp AUTH refused user=%s from %s: %s", s->id,
		 smtp_server_auth_name(conf_user_find(s->conf, s->auth->user),
				       name, sizeof(name)),
		 s->client_str, why[v]);
	smtp_server_auth_reset(s);
	if (v == AUTH_LIMIT_USER_BLOCKED || v == AUTH_LIMIT_ADDR_BLOCKED)
		smtp_server_reply(s,
				  "454 4.7.0 Too many failed "
				  "authentication attempts; try again in "
				  "%" PRIu64 " seconds",
				  (left_ms + 999) / 1000);
	else if (v == AUTH_LIMIT_BUSY)
		smtp_server_reply(s, "454 4.7.0 Too many authentication "
				     "attempts; try again later");
	else
		smtp_server_reply(s, "454 4.7.0 Temporary authentication "
				     "failure");
	smtp_server_error(s);
	smtp_server_enter(s, SS_READY);
}

/* Credentials complete: reserve a place in the limits, then verify them
 * on the worker pool. */
static void
smtp_server_auth_verify(struct smtp_server_session *s)
{
	enum auth_limit_verdict v;
	uint64_t left = 0;

	s->auth->conf = s->conf;
	s->auth->client = s->client;
	s->auth->done = smtp_server_auth_done;
	s->auth->arg = s;
	if ((v = auth_verify(s->loop, s->auth, &left)) != AUTH_LIMIT_OK) {
		smtp_server_auth_refused(s, v, left);
		return;
	}
	s->pending++;
	smtp_server_busy(s);
}

void
smtp_server_auth_step(struct smtp_server_session *s, const char *resp)
{
	char dec[AUTH_USER_MAX + AUTH_PASS_MAX + 4];
	size_t n;

	if (strcmp(resp, "*") == 0) {
		smtp_server_auth_fail(s, "501 5.7.0 Authentication cancelled");
		return;
	}
	if (auth_b64_decode(resp, dec, sizeof(dec), &n) != 0) {
		smtp_server_auth_fail(s, "501 5.5.2 Invalid base64 data");
		return;
	}
	switch (s->auth_mech) {
	case AM_PLAIN:
		if (auth_plain_split(dec, n, s->auth->user,
				     sizeof(s->auth->user), s->auth->pass,
				     sizeof(s->auth->pass)) != 0) {
			sodium_memzero(dec, sizeof(dec));
			smtp_server_auth_fail(s, "501 5.5.2 Malformed PLAIN "
						 "response");
			return;
		}
		break;
	case AM_LOGIN_USER:
		if (n == 0 || n >= sizeof(s->auth->user) ||
		    memchr(dec, '\0', n) != NULL) {
			smtp_server_auth_fail(s, "501 5.5.2 Malformed user "
						 "name");
			return;
		}
		memcpy(s->auth->user, dec, n + 1);
		s->auth_mech = AM_LOGIN_PASS;
		smtp_server_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
		smtp_server_enter(s, SS_AUTH);
		return;
	case AM_LOGIN_PASS:
		if (n >= sizeof(s->auth->pass) ||
		    memchr(dec, '\0', n) != NULL) {
			sodium_memzero(dec, sizeof(dec));
			smtp_server_auth_fail(s, "501 5.5.2 Malformed "
						 "password");
			return;
		}
		memcpy(s->auth->pass, dec, n + 1);
		break;
	case AM_NONE:
		panic("AUTH step without a mechanism");
	}
	sodium_memzero(dec, sizeof(dec));
	smtp_server_auth_verify(s);
}

void
smtp_server_auth_cmd(struct smtp_server_session *s, char *arg)
{
	char *mech = arg, *resp;

	if (!smtp_server_auth_offered(s)) {
		if (s->listener->conf->auth && s->conf->nusers > 0 &&
		    smtp_server_cmd_starttls_offered(s))
			smtp_server_reply(s, "530 5.7.0 Must issue a STARTTLS "
					     "command first");
		else
			smtp_server_reply(s, "503 5.5.1 Error: "
					     "authentication not enabled");
		smtp_server_error(s);
		return;
	}
	if (s->user != NULL) {
		smtp_server_refuse(s, "503 5.5.1 Error: already "
				      "authenticated");
		return;
	}
	/* The limits are judged once the name is known (auth_verify). */
	if ((resp = strchr(mech, ' ')) != NULL)
		*resp++ = '\0';
	if ((s->auth = calloc(1, sizeof(*s->auth))) == NULL) {
		smtp_server_reply(s, "454 4.3.0 Temporary failure");
		return;
	}
	if (strcasecmp(mech, "PLAIN") == 0) {
		s->auth_mech = AM_PLAIN;
		if (resp != NULL) {
			smtp_server_auth_step(s, resp);
			return;
		}
		smtp_server_reply(s, "334 ");
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_mech = AM_LOGIN_USER;
		if (resp != NULL) {
			smtp_server_auth_step(s, resp);
			return;
		}
		smtp_server_reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
	} else {
		smtp_server_auth_reset(s);
		smtp_server_refuse(s, "504 5.5.4 Unrecognized authentication "
				      "type");
		return;
	}
	smtp_server_enter(s, SS_AUTH);
}

static void
smtp_server_auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server_session *s = arg;

	(void)fd;
	(void)what;
	s->pending--;
	if (!(s->flags & SF_ZOMBIE)) {
		smtp_server_refuse(s, "535 5.7.8 Authentication credentials "
				      "invalid");
		smtp_server_enter(s, SS_READY);
		smtp_server_resume(s);
	}
	smtp_server_settle(s);
}

static void
smtp_server_auth_done(struct auth_request *req)
{
	struct smtp_server_session *s = req->arg;
	bool ok = req->ok, blocked = req->blocked;
	const struct conf_user *u = req->u;
	struct timeval tv = util_ms_timeval((int64_t)req->delay_ms);
	char name[320];

	/* The limiter has counted the outcome already (auth_verify), also
	 * for a client that left meanwhile. */
	s->pending--;
	smtp_server_auth_reset(s);
	if (s->flags & SF_ZOMBIE) {
		if (!ok) {
			STATS_INC(auth_failures);
			log_info(
			    "%016" PRIx64 " smtp AUTH failure user=%s from "
			    "%s; client gone%s",
			    s->id, smtp_server_auth_name(u, name, sizeof(name)),
			    s->client_str, blocked ? "; client blocked" : "");
		}
		smtp_server_settle(s);
		return;
	}
	if (ok) {
		STATS_INC(auth_success);
		s->user = u;
		log_info("%016" PRIx64 " smtp AUTH success user=%s from %s",
			 s->id, smtp_server_auth_name(u, name, sizeof(name)),
			 s->client_str);
		smtp_server_reply(s, "235 2.7.0 Authentication successful");
		smtp_server_enter(s, SS_READY);
		smtp_server_resume(s);
		smtp_server_settle(s);
		return;
	}
	STATS_INC(auth_failures);
	log_info("%016" PRIx64 " smtp AUTH failure user=%s from %s%s", s->id,
		 smtp_server_auth_name(u, name, sizeof(name)), s->client_str,
		 blocked ? "; client blocked" : "");
	if (blocked) {
		STATS_INC(auth_blocked);
		smtp_server_reply(s,
				  "421 4.7.0 %s Too many failed "
				  "authentication attempts; closing",
				  s->conf->hostname);
		smtp_server_close_after(s);
		smtp_server_settle(s);
		return;
	}
	/* Answer only after a growing delay (brute-force throttling); the
	 * session stays busy meanwhile. */
	if (s->delay == NULL &&
	    (s->delay = evtimer_new(s->loop->base, smtp_server_auth_delay_cb,
				    s)) == NULL) {
		smtp_server_close_after(s);
		smtp_server_settle(s);
		return;
	}
	s->pending++;
	evtimer_add(s->delay, &tv);
}
