/*
 * control_admin.c — the commands that change something (control_int.h):
 * hold, release, retry, delete and bounce (sched_admin), suspend and
 * resume (sched_suspend, sched_resume), each answered once its change is
 * visible, the AUTH limiter's blocks (auth-blocks,
 * auth-unblock), and intake (drain, resume-intake: listen_intake_*).  Owns:
 * their argument syntax.  Must not: check rights (control.c's command table
 * did, before any of these runs), or change the queue or a schedule itself (the
 * scheduler does, on its loop). Threads: the delivery loop; the AUTH limiter is
 * shared with the SMTP loops and locks itself (auth_limit_*).
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/receive/auth_limit.h"
#include "mta/receive/listen.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/deliver/delivery.h"
#include "mta/core/log.h"
#include "mta/core/util.h"

/* SEL = id HEX16 | domain DOMAIN | user USER | all */
int
control_admin_parse_sel(struct control_session *s, char *args)
{
	char *kw = control_word(&args), *v = NULL;

	if (kw != NULL && strcmp(kw, "all") == 0 && *args == '\0') {
		s->sel = SAS_ALL;
		return 0;
	}
	if (kw != NULL)
		v = control_word(&args);
	if (kw == NULL || v == NULL || *args != '\0')
		goto usage;
	if (strcmp(kw, "id") == 0) {
		if (strlen(v) != QUEUE_ID_HEX_BYTES - 1 ||
		    queue_id_parse(v, &s->id) != 0) {
			control_result(s, false,
				       "err bad queue id (16 hex digits)");
			return -1;
		}
		s->sel = SAS_ID;
		queue_id_format(s->id, s->arg);
		return 0;
	}
	if (strcmp(kw, "domain") == 0) {
		if (!control_domain_ok(v, s->arg, sizeof(s->arg))) {
			control_result(s, false, "err bad domain");
			return -1;
		}
		s->sel = SAS_DOMAIN;
		return 0;
	}
	if (strcmp(kw, "user") == 0) {
		if (strlen(v) >= sizeof(s->arg)) {
			control_result(s, false, "err user name too long");
			return -1;
		}
		snprintf(s->arg, sizeof(s->arg), "%s", v);
		s->sel = SAS_USER;
		return 0;
	}
usage:
	control_result(s, false,
		       "err usage: %s id HEX16 | domain DOMAIN | user USER | "
		       "all",
		       s->cmd->verb);
	return -1;
}

/* retry [respect-backoff] SEL: the option first, where no selector word
 * can be. */
int
control_admin_parse_retry(struct control_session *s, char *args)
{
	static const char opt[] = "respect-backoff ";

	if (strncmp(args, opt, sizeof(opt) - 1) == 0) {
		s->respect_backoff = true;
		args += sizeof(opt) - 1;
	}
	return control_admin_parse_sel(s, args);
}

/* suspend DOMAIN SECONDS [REASON…] */
int
control_admin_parse_suspend(struct control_session *s, char *args)
{
	char *dom = control_word(&args), *secs = control_word(&args), *end;
	unsigned long long v;

	if (dom == NULL || secs == NULL) {
		control_result(s, false,
			       "err usage: suspend DOMAIN SECONDS [REASON]");
		return -1;
	}
	if (!control_domain_ok(dom, s->arg, sizeof(s->arg))) {
		control_result(s, false, "err bad domain");
		return -1;
	}
	errno = 0;
	v = strtoull(secs, &end, 10);
	if (secs[0] < '0' || secs[0] > '9' || *end != '\0' || errno != 0 ||
	    v == 0 || v > CONTROL_SUSPEND_MAX_S) {
		control_result(s, false, "err SECONDS: 1 to %d",
			       CONTROL_SUSPEND_MAX_S);
		return -1;
	}
	s->seconds = v;
	if (strlen(args) > CONTROL_REASON_MAX) {
		control_result(s, false, "err reason longer than %d bytes",
			       CONTROL_REASON_MAX);
		return -1;
	}
	/* Shown by `queue summary` and logged: no address in clear. */
	log_escape(s->reason, sizeof(s->reason), args, strlen(args));
	return 0;
}

/* resume DOMAIN [respect-backoff] */
int
control_admin_parse_resume(struct control_session *s, char *args)
{
	char *dom = control_word(&args), *opt = control_word(&args);

	if (opt != NULL && strcmp(opt, "respect-backoff") == 0)
		s->respect_backoff = true;
	if (dom == NULL || (opt != NULL && !s->respect_backoff) ||
	    *args != '\0') {
		control_result(s, false,
			       "err usage: resume DOMAIN [respect-backoff]");
		return -1;
	}
	if (!control_domain_ok(dom, s->arg, sizeof(s->arg))) {
		control_result(s, false, "err bad domain");
		return -1;
	}
	s->seconds = 0;
	return 0;
}

/* Delivery loop, from the scheduler (possibly from within sched_admin). */
void
control_admin_cb(unsigned count, const char *err, void *arg)
{
	struct control_session *s = arg;

	if (err != NULL) {
		char esc[200];

		log_escape(esc, sizeof(esc), err, strlen(err));
		control_result(s, false, "err %s", esc);
	} else {
		s->count = count > INT_MAX ? INT_MAX : (int)count;
		control_result(s, true, "ok %u", count);
	}
	control_finish(s);
}

/* Answered from the scheduler's completion: the change is visible to the
 * next command by then (sched_admin). */
void
control_admin_run(struct control_session *s)
{
	enum sched_admin_op op = s->cmd->op;

	if (op == SA_RETRY && s->respect_backoff)
		op = SA_DUE;
	control_enter(s, CS_RUN);
	/* S may be gone when this returns: CB can run at once. */
	sched_admin(op, s->sel, s->sel == SAS_ALL ? "" : s->arg,
		    control_admin_cb, s);
}

/* resume's completion: its destination's messages are due (visible). */
static void
control_admin_resume_cb(unsigned count, const char *err, void *arg)
{
	struct control_session *s = arg;
	char esc[200];

	(void)count;
	if (err != NULL) {
		log_escape(esc, sizeof(esc), err, strlen(err));
		control_result(s, false,
			       "err resumed, but its messages are not all "
			       "due: %s",
			       esc);
	} else {
		s->count = 1;
		control_result(s, true, "ok 1");
	}
	control_finish(s);
}

/* suspend and resume */
void
control_admin_run_suspend(struct control_session *s)
{
	char err[200];

	if (s->seconds == 0) {
		control_enter(s, CS_RUN);
		if (sched_resume(s->arg, s->respect_backoff,
				 control_admin_resume_cb, s, err,
				 sizeof(err)) == 0)
			return; /* S may be gone: answered by the callback */
	} else if (sched_suspend(s->arg, s->seconds * 1000,
				 s->reason[0] != '\0' ? s->reason : NULL, err,
				 sizeof(err)) == 0) {
		s->count = 1;
		control_result(s, true, "ok 1");
		control_finish(s);
		return;
	}
	control_result(s, false, "err %s", err);
	control_finish(s);
}

/* AUTH limits -------------------------------------------------------- */

/* Parse "ADDR" or "ADDR/LEN" into K and *PREFIX (-1 without /LEN). */
static int
control_admin_net_parse(const char *text, struct peer_key *k, int *prefix)
{
	char addr[INET6_ADDRSTRLEN + 1], *end;
	const char *slash = strchr(text, '/');
	size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
	struct sockaddr_storage ss;
	unsigned long v;
	int max;

	if (n == 0 || n >= sizeof(addr))
		return -1;
	memcpy(addr, text, n);
	addr[n] = '\0';
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) ==
	    1) {
		ss.ss_family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr,
			     &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		max = 128;
	} else
		return -1;
	if (peer_key_from(k, (struct sockaddr *)&ss) != 0)
		return -1;
	*prefix = -1;
	if (slash == NULL)
		return 0;
	errno = 0;
	v = strtoul(slash + 1, &end, 10);
	if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno != 0 ||
	    v > (unsigned long)max)
		return -1;
	/* ::ffff:a.b.c.d/LEN counts LEN over 128 bits; the key is IPv4. */
	if (ss.ss_family == AF_INET6 && k->family == AF_INET)
		v = v > 96 ? v - 96 : 0;
	*prefix = (int)v;
	return 0;
}

int
control_admin_user_arg(struct control_session *s, const char *kw,
		       const char *args)
{
	size_t n = strlen(args), i;

	if (strcmp(kw, "user-hex") == 0) {
		if (n % 2 != 0 || n / 2 >= sizeof(s->arg) ||
		    sodium_hex2bin((unsigned char *)s->arg, sizeof(s->arg) - 1,
				   args, n, NULL, &i, NULL) != 0 ||
		    i != n / 2 || memchr(s->arg, '\0', i) != NULL) {
			control_result(s, false,
				       "err bad user-hex (hex digits of a user "
				       "name)");
			return -1;
		}
		s->arg[i] = '\0';
	} else if (n >= sizeof(s->arg)) {
		control_result(s, false, "err user name too long");
		return -1;
	} else
		memcpy(s->arg, args, n + 1);
	s->sel = SAS_USER;
	return 0;
}

/*
 * auth-unblock address ADDR[/LEN] | user NAME… | user-hex HEX | all
 * S->sel says which: SAS_DOMAIN (ARG: a network), SAS_USER (ARG: the name,
 * which may hold spaces, or any byte but NUL with user-hex), SAS_ALL.
 */
int
control_admin_parse_auth_unblock(struct control_session *s, char *args)
{
	char *kw = control_word(&args);
	struct peer_key k;
	int prefix;

	if (kw != NULL && strcmp(kw, "all") == 0 && *args == '\0') {
		s->sel = SAS_ALL;
		return 0;
	}
	if (kw == NULL || *args == '\0')
		goto usage;
	if (strcmp(kw, "address") == 0) {
		if (strchr(args, ' ') != NULL ||
		    control_admin_net_parse(args, &k, &prefix) != 0) {
			control_result(s, false,
				       "err bad address (ADDRESS or "
				       "ADDRESS/LEN)");
			return -1;
		}
		s->sel = SAS_DOMAIN;
		snprintf(s->arg, sizeof(s->arg), "%s", args);
		return 0;
	}
	if (strcmp(kw, "user") == 0 || strcmp(kw, "user-hex") == 0)
		return control_admin_user_arg(s, kw, args);
usage:
	control_result(s, false,
		       "err usage: auth-unblock address ADDRESS[/LEN] | user "
		       "NAME | user-hex HEX | all");
	return -1;
}

/* One block as a data line: "block SCOPE NETWORK UNTIL_MS WHO", WHO being
 * "-" (the network), "name:HEX" (a configured user's name, hex: any byte
 * goes through) or "hash:HEX" (a name that is no user's, as hashed). */
static void
control_admin_block_cb(const struct auth_limit_block *b, void *arg)
{
	struct evbuffer *out = arg;
	char hex[2 * 255 + 1];

	evbuffer_add_printf(out, "block %s %s %" PRId64 " ",
			    b->user_scope ? "user" : "address", b->network,
			    b->until_ms);
	if (!b->user_scope)
		evbuffer_add_printf(out, "-\n");
	else if (b->user != NULL && strlen(b->user) <= 255)
		evbuffer_add_printf(
		    out, "name:%s\n",
		    sodium_bin2hex(hex, sizeof(hex),
				   (const unsigned char *)b->user,
				   strlen(b->user)));
	else
		evbuffer_add_printf(out, "hash:%s\n",
				    sodium_bin2hex(hex, sizeof(hex), b->name,
						   AUTH_LIMIT_NAME_BYTES));
}

/* The limiter is shared with the SMTP loops: auth_limit_* lock it. */
void
control_admin_run_auth_blocks(struct control_session *s)
{
	unsigned n;

	n = auth_limit_blocks(util_wall_ms(), control_admin_block_cb,
			      bufferevent_get_output(s->bev));
	control_result(s, true, "ok %u", n);
	control_finish(s);
}

void
control_admin_run_auth_unblock(struct control_session *s)
{
	const struct conf_auth_limit *lim = &control_server.conf->auth_limit;
	int64_t now = util_wall_ms();
	struct peer_key k;
	unsigned n = 0;
	int prefix;

	if (s->sel == SAS_USER)
		n = auth_limit_unblock_user(s->arg, now);
	else if (s->sel == SAS_DOMAIN) {
		(void)control_admin_net_parse(s->arg, &k, &prefix);
		n = auth_limit_unblock_net(lim, &k, prefix, now);
	} else {
		memset(&k, 0, sizeof(k));
		k.family = AF_INET;
		n = auth_limit_unblock_net(lim, &k, 0, now);
		k.family = AF_INET6;
		n += auth_limit_unblock_net(lim, &k, 0, now);
	}
	s->count = (int)(n > INT_MAX ? INT_MAX : n);
	control_result(s, true, "ok %u", n);
	control_finish(s);
}

/* Intake ------------------------------------------------------------ */

/* drain [intake-only] */
int
control_admin_parse_drain(struct control_session *s, char *args)
{
	if (strcmp(args, "intake-only") == 0)
		s->intake_only = true;
	else if (*args != '\0') {
		control_result(s, false, "err usage: drain [intake-only]");
		return -1;
	}
	return 0;
}

/* intake-only: new connections get 421, delivery goes on.  Otherwise the
 * same, and the daemon stops as on SIGTERM once the answer is written. */
void
control_admin_run_drain(struct control_session *s)
{
	if (listen_intake_get() == LISTEN_INTAKE_DRAINING)
		control_result(s, false, "err already draining");
	else if (s->intake_only) {
		listen_intake_set(LISTEN_INTAKE_STOPPED);
		log_info("control uid %u: intake stopped", (unsigned)s->uid);
		control_result(s, true, "ok");
	} else {
		listen_intake_set(LISTEN_INTAKE_DRAINING);
		log_info("control uid %u: drain", (unsigned)s->uid);
		s->then_drain = true;
		control_result(s, true, "ok");
	}
	control_finish(s);
}

void
control_admin_run_resume_intake(struct control_session *s)
{
	if (listen_intake_get() == LISTEN_INTAKE_DRAINING)
		control_result(s, false,
			       "err draining: the daemon is stopping");
	else {
		listen_intake_set(LISTEN_INTAKE_OPEN);
		log_info("control uid %u: intake resumed", (unsigned)s->uid);
		control_result(s, true, "ok");
	}
	control_finish(s);
}
