/*
 * control_suppress.c — `suppress-list|add|remove|check` (outpost suppress).
 * ADDRESS and USER come hex-encoded (any byte passes the protocol's
 * printable-words rule) and are hashed here with the delivery log's key:
 * nothing is kept, answered or recorded in clear.  Session: s->arg the
 * address, s->reason the user (s->sel SAS_USER; SAS_DOMAIN: `list
 * global`), s->seconds an add's reason.  Answer: "entry SCOPE RCPT_HASH
 * REASON TIME_MS" lines, "ok N".  Threads: the delivery loop; a list walks
 * on the worker pool, an add or remove answers once committed (loop_post).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>

#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"
#include "mta/observe/evlog.h"
#include "mta/observe/suppress.h"

/* Entries one `list` answers with; past that it says "truncated". */
#define CONTROL_SUPPRESS_LIST_MAX 100000

/* HEX decoded into OUT (OUTLEN bytes with its NUL): 0, or -1. */
static int
control_suppress_unhex(const char *hex, char *out, size_t outlen)
{
	size_t n = strlen(hex), got;

	if (n == 0 || n % 2 != 0 || n / 2 >= outlen ||
	    sodium_hex2bin((unsigned char *)out, outlen - 1, hex, n, NULL, &got,
			   NULL) != 0 ||
	    got != n / 2 || memchr(out, '\0', got) != NULL)
		return -1;
	out[got] = '\0';
	return 0;
}

/*
 * suppress-list [user HEX | global]
 * suppress-add HEX [user HEX] [reason NAME]
 * suppress-remove HEX [user HEX]
 * suppress-check HEX [user HEX]
 */
int
control_suppress_parse(struct control_session *s, char *args)
{
	const char *verb = s->cmd->verb + strlen("suppress-");
	bool list = strcmp(verb, "list") == 0, add = strcmp(verb, "add") == 0;
	enum queue_suppress_reason r = QSR_OPERATOR;
	char *w;

	s->sel = SAS_ALL;
	if (!list && ((w = control_word(&args)) == NULL ||
		      control_suppress_unhex(w, s->arg, sizeof(s->arg)) != 0))
		goto usage;
	while ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "user") == 0 && s->sel == SAS_ALL &&
		    (w = control_word(&args)) != NULL &&
		    control_suppress_unhex(w, s->reason, sizeof(s->reason)) ==
			0)
			s->sel = SAS_USER;
		else if (list && strcmp(w, "global") == 0 && s->sel == SAS_ALL)
			s->sel = SAS_DOMAIN;
		else if (add && w != NULL && strcmp(w, "reason") == 0 &&
			 (w = control_word(&args)) != NULL &&
			 queue_suppress_reason_parse(w, &r) == 0)
			continue;
		else
			goto usage;
	}
	s->seconds = (uint64_t)r;
	if (s->sel == SAS_USER && suppress_scope_global()) {
		control_result(s, false,
			       "err suppress.scope is global: no per-user "
			       "entries (leave out --user)");
		return -1;
	}
	return 0;
usage:
	control_result(s, false, "err usage: suppress-%s%s [user HEX]%s%s",
		       verb, list ? "" : " ADDRESS-HEX",
		       list ? " | global" : "",
		       add ? " [reason bounce-bad-mailbox|bounce-bad-domain|"
			     "complaint|operator]"
			   : "");
	return -1;
}

void
control_suppress_audit_text(const struct control_session *s, char *out,
			    size_t len)
{
	char hex[QUEUE_HASH_HEX_BYTES], uhex[QUEUE_HASH_HEX_BYTES];
	bool list = strcmp(s->cmd->verb, "suppress-list") == 0;
	int n = 0;

	out[0] = '\0';
	if (!list) {
		evlog_hash(s->arg, hex);
		n = snprintf(out, len, " hash:%s", hex);
	}
	if (n >= 0 && (size_t)n < len && s->sel == SAS_USER) {
		evlog_hash(s->reason, uhex);
		n += snprintf(out + n, len - (size_t)n, " user hash:%s", uhex);
	} else if (n >= 0 && (size_t)n < len && s->sel == SAS_DOMAIN)
		n += snprintf(out + n, len - (size_t)n, " global");
	if (n >= 0 && (size_t)n < len &&
	    strcmp(s->cmd->verb, "suppress-add") == 0)
		(void)snprintf(out + n, len - (size_t)n, " reason %s",
			       queue_suppress_reason_name(
				   (enum queue_suppress_reason)s->seconds));
}

/* One "entry" line of E onto OUT. */
static void
control_suppress_line(struct evbuffer *out,
		      const struct queue_suppress_entry *e)
{
	char scope[2 * QUEUE_SUPPRESS_HASH_BYTES + 1],
	    rcpt[2 * QUEUE_SUPPRESS_HASH_BYTES + 1];

	sodium_bin2hex(rcpt, sizeof(rcpt), e->rcpt, sizeof(e->rcpt));
	if (sodium_is_zero(e->scope, sizeof(e->scope)))
		evbuffer_add_printf(out, "entry global %s %s %" PRId64 "\n",
				    rcpt, queue_suppress_reason_name(e->reason),
				    e->time_ms);
	else
		evbuffer_add_printf(out, "entry hash:%s %s %s %" PRId64 "\n",
				    sodium_bin2hex(scope, sizeof(scope),
						   e->scope, sizeof(e->scope)),
				    rcpt, queue_suppress_reason_name(e->reason),
				    e->time_ms);
}

/* The scope S names: the user's, or the global list. */
static void
control_suppress_scope(const struct control_session *s,
		       uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES])
{
	if (s->sel == SAS_USER)
		suppress_scope_hash(s->reason, scope);
	else
		memset(scope, 0, QUEUE_SUPPRESS_HASH_BYTES);
}

/* A list on the worker pool: its lines, then the loop sends them. */
struct control_suppress_list {
	struct control_session *s;
	struct evbuffer *out;
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES];
	bool all;
	unsigned n;
	bool truncated;
	int rc;
	int64_t older_than_ms; /* past retention: not shown */
	char err[200];
};

static int
control_suppress_list_cb(const struct queue_suppress_entry *e, void *arg)
{
	struct control_suppress_list *l = arg;

	if (e->time_ms < l->older_than_ms)
		return 0;
	if (l->n == CONTROL_SUPPRESS_LIST_MAX) {
		l->truncated = true;
		return 1;
	}
	control_suppress_line(l->out, e);
	l->n++;
	return 0;
}

/* Pool. */
static void
control_suppress_list_run(void *arg)
{
	struct control_suppress_list *l = arg;

	l->rc =
	    suppress_walk(l->all ? NULL : l->scope, control_suppress_list_cb, l,
			  l->err, sizeof(l->err));
}

/* Delivery loop. */
static void
control_suppress_list_done(void *arg)
{
	struct control_suppress_list *l = arg;
	struct control_session *s = l->s;

	if (l->rc < 0)
		control_result(s, false, "err %s", l->err);
	else {
		if (l->truncated)
			evbuffer_add_printf(l->out, "truncated\n");
		if (s->bev != NULL)
			evbuffer_add_buffer(bufferevent_get_output(s->bev),
					    l->out);
		s->count = (int)l->n;
		control_result(s, true, "ok %u", l->n);
	}
	evbuffer_free(l->out);
	free(l);
	control_finish(s);
}

void
control_suppress_run_list(struct control_session *s)
{
	const struct conf *c = control_server.conf;
	struct control_suppress_list *l;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->out = evbuffer_new()) == NULL) {
		free(l);
		control_result(s, false, "err out of memory");
		control_finish(s);
		return;
	}
	l->s = s;
	l->all = s->sel == SAS_ALL;
	control_suppress_scope(s, l->scope);
	l->older_than_ms =
	    c->retention.history_ms > 0
		? util_wall_ms() - (int64_t)c->retention.history_ms
		: INT64_MIN;
	control_enter(s, CS_RUN);
	worker_submit(control_server.loop, control_suppress_list_run,
		      control_suppress_list_done, l);
}

/* suppress-check: as the RCPT check would see it for that user (the
 * global entry first), read on the loop (one read transaction). */
void
control_suppress_run_check(struct control_session *s)
{
	static const uint8_t global[QUEUE_SUPPRESS_HASH_BYTES];
	uint8_t scope[QUEUE_SUPPRESS_HASH_BYTES],
	    rcpt[QUEUE_SUPPRESS_HASH_BYTES];
	struct queue_suppress_entry e;
	char err[200];
	int rc;

	if (suppress_addr_hash(s->arg, rcpt) != 0) {
		control_result(s, false, "err no suppression list");
		control_finish(s);
		return;
	}
	control_suppress_scope(s, scope);
	rc = suppress_get(global, rcpt, &e, err, sizeof(err));
	if (rc == 0 && s->sel == SAS_USER)
		rc = suppress_get(scope, rcpt, &e, err, sizeof(err));
	if (rc < 0)
		control_result(s, false, "err %s", err);
	else {
		if (rc == 1 && s->bev != NULL)
			control_suppress_line(bufferevent_get_output(s->bev),
					      &e);
		s->count = rc;
		control_result(s, true, "ok %d", rc);
	}
	control_finish(s);
}

/* What the writer hands back to the loop. */
struct control_suppress_answer {
	struct control_session *s;
	int status;
	int found; /* remove: there was an entry */
};

/* Delivery loop: committed (or not): answer. */
static void
control_suppress_answer_cb(void *arg)
{
	struct control_suppress_answer *a = arg;
	struct control_session *s = a->s;

	if (a->status != 0)
		control_result(s, false,
			       "err the queue did not take it (see "
			       "the daemon's log)");
	else {
		s->count = a->found;
		control_result(s, true, "ok %d", a->found);
	}
	free(a);
	control_finish(s);
}

/* Writer thread. */
static void
control_suppress_committed(int status, void *arg)
{
	struct control_suppress_answer *a = arg;

	a->status = status;
	loop_post(control_server.loop, control_suppress_answer_cb, a);
}

/* suppress-add and suppress-remove: answered once committed. */
void
control_suppress_run_change(struct control_session *s)
{
	bool add = strcmp(s->cmd->verb, "suppress-add") == 0;
	struct queue_suppress_entry e = { .reason = QSR_OPERATOR };
	struct control_suppress_answer *a;
	char err[200];
	int rc;

	if (suppress_addr_hash(s->arg, e.rcpt) != 0 ||
	    (a = calloc(1, sizeof(*a))) == NULL) {
		control_result(s, false, "err no suppression list");
		control_finish(s);
		return;
	}
	a->s = s;
	control_enter(s, CS_RUN);
	control_suppress_scope(s, e.scope);
	if (add) {
		e.reason = (enum queue_suppress_reason)s->seconds;
		e.time_ms = util_wall_ms();
		a->found = 1;
		rc = suppress_add(&e, control_suppress_committed, a);
	} else {
		if ((a->found = suppress_get(e.scope, e.rcpt, NULL, err,
					     sizeof(err))) < 0)
			a->found = 0;
		rc = suppress_remove(e.scope, e.rcpt,
				     control_suppress_committed, a);
	}
	if (rc != 0) {
		free(a);
		control_result(s, false, "err out of memory");
		control_finish(s);
		return;
	}
	log_info("control uid %u: %s", (unsigned)s->uid, s->cmd->verb);
}
