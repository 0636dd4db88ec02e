/*
 * control.c — the control socket (protocol: control.h).
 * Owns: the listening socket, its sessions (one command each), the limits
 * by uid, and the command table: the one place that says which right a
 * command needs (control_command checks it before anything runs).  The
 * commands are control_admin.c's and control_query.c's; the audit record is
 * control_audit.c's.  Must not: change the queue itself (every change goes
 * through the scheduler), trust anything the client says about who it is
 * (SO_PEERCRED only), or write an address in clear.
 * Threads: the delivery loop.  Invariants: a session answers exactly once;
 * one waiting for the scheduler or the audit log is freed by that completion.
 */
#define _GNU_SOURCE /* struct ucred (SO_PEERCRED) */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "conf/conf.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"

#define CONTROL_BACKLOG          16
#define CONTROL_ACCEPT_PAUSE_MS  1000 /* after accept() failed (EMFILE) */
#define CONTROL_UID_SESSIONS_MAX 8    /* sessions of one uid at once */
#define CONTROL_RESERVE_SESSIONS 16   /* kept for uids with write/delete */
#define CONTROL_REFUSALS_MAX                                                   \
	10 /* refused commands recorded per uid per                            \
	      window; more are answered, not kept */
#define CONTROL_WINDOW_MS 60000
#define CONTROL_UIDS_MAX                                                       \
	256 /* uids followed for refusals; past that, the one least recently   \
	       seen is forgotten (it is counted again from zero) */

static const struct cs_info {
	const char *name;
	int read_timeout_ms;  /* 0: not reading */
	int write_timeout_ms; /* 0: not writing */
} cs_info[CS__COUNT] = {
	[CS_READ] = { "read", CONTROL_TIMEOUT_MS, CONTROL_TIMEOUT_MS },
	[CS_RUN] = { "run", 0, 0 },
	[CS_AUDIT] = { "audit", 0, 0 },
	[CS_VIEW] = { "view", 0, 0 },
	[CS_WRITE] = { "write", 0, CONTROL_TIMEOUT_MS },
};

struct control_server control_server;

/* The socket, and what only this file reads. */
static struct {
	bool started;
	struct evconnlistener *listener;
	struct event *resume_ev; /* re-enable accepting after EMFILE */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* of the socket file we made, to remove only ours */
	ino_t ino;
	void (*drain_fn)(void); /* control_drain_hook */
	/* Refusals by uid, for rate limits and coalesced audit records. */
	struct control_uid {
		uid_t uid;
		int64_t window_ms; /* start of its current window; 0 unused */
		int64_t seen_ms;
		unsigned refused;    /* in the window: recorded one by one */
		unsigned suppressed; /* in the window: answered, not recorded */
	} uids[CONTROL_UIDS_MAX];
} C;

static int control_parse_none(struct control_session *s, char *args);

/* Who may run what: nothing runs before control_command checked RIGHT. */
static const struct control_cmd control_cmds[] = {
	{ "ping", CONF_RIGHT_READ, 0, 0, control_parse_none,
	  control_query_run_ping },
	{ "suspensions", CONF_RIGHT_READ, 0, 0, control_parse_none,
	  control_query_run_suspensions },
	{ "status", CONF_RIGHT_READ, 0, 0, control_query_parse_status,
	  control_query_run_status },
	{ "summary", CONF_RIGHT_READ, CCF_VIEW, 0, control_query_parse_view,
	  control_query_run_view },
	{ "list", CONF_RIGHT_READ, CCF_VIEW, 0, control_query_parse_view,
	  control_query_run_view },
	{ "show", CONF_RIGHT_READ, CCF_VIEW, 0, control_query_parse_view,
	  control_query_run_view },
	{ "hold", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_HOLD,
	  control_admin_parse_sel, control_admin_run },
	{ "release", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_RELEASE,
	  control_admin_parse_sel, control_admin_run },
	{ "retry", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_RETRY,
	  control_admin_parse_retry, control_admin_run },
	{ "delete", CONF_RIGHT_DELETE, CCF_AUDIT | CCF_SEL, SA_DELETE,
	  control_admin_parse_sel, control_admin_run },
	{ "bounce", CONF_RIGHT_DELETE, CCF_AUDIT | CCF_SEL, SA_BOUNCE,
	  control_admin_parse_sel, control_admin_run },
	/* A cancelled account: its messages and its history, no bounce. */
	{ "purge", CONF_RIGHT_DELETE, CCF_AUDIT | CCF_SEL, SA_PURGE,
	  control_purge_parse, control_purge_run },
	{ "suspend", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_DEST, 0,
	  control_admin_parse_suspend, control_admin_run_suspend },
	{ "resume", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_DEST, 0,
	  control_admin_parse_resume, control_admin_run_suspend },
	{ "auth-blocks", CONF_RIGHT_READ, 0, 0, control_parse_none,
	  control_admin_run_auth_blocks },
	{ "auth-unblock", CONF_RIGHT_WRITE, CCF_AUDIT, 0,
	  control_admin_parse_auth_unblock, control_admin_run_auth_unblock },
	/* write, not delete: a drain destroys nothing (the queue stays, and
	 * the next start delivers it) and a stop is what an operator with
	 * write rights already causes by suspending every destination. */
	{ "drain", CONF_RIGHT_WRITE, CCF_AUDIT, 0, control_admin_parse_drain,
	  control_admin_run_drain },
	{ "resume-intake", CONF_RIGHT_WRITE, CCF_AUDIT, 0, control_parse_none,
	  control_admin_run_resume_intake },
	/* write: a reload changes nothing the file does not already say,
	 * and the file is root's to write. */
	{ "reload", CONF_RIGHT_WRITE, CCF_AUDIT, 0, control_parse_none,
	  control_reload_run },
	/* export: message contents leave; with remove, delete too (checked
	 * in control_command). */
	{ "export", CONF_RIGHT_EXPORT, CCF_AUDIT | CCF_SEL, 0,
	  control_xfer_parse, control_xfer_run },
	{ "import", CONF_RIGHT_IMPORT, CCF_AUDIT, 0, control_xfer_parse,
	  control_xfer_run },
	{ "watchdog-status", CONF_RIGHT_READ, 0, 0,
	  control_watchdog_parse_status, control_watchdog_run_status },
	{ "watchdog-history", CONF_RIGHT_READ, 0, 0,
	  control_watchdog_parse_history, control_watchdog_run_history },
	/* write: the held mail goes, nothing is removed. */
	{ "watchdog-release", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_RELEASE,
	  control_watchdog_parse_release, control_watchdog_run_release },
	/* write: a point only adds a file (retention removes old ones). */
	{ "restore-point", CONF_RIGHT_WRITE, CCF_AUDIT, 0, control_parse_none,
	  control_point_run },
	/* Each look at the list is recorded too: it tells of recipients. */
	{ "suppress-list", CONF_RIGHT_READ, CCF_AUDIT, 0,
	  control_suppress_parse, control_suppress_run_list },
	{ "suppress-check", CONF_RIGHT_READ, CCF_AUDIT, 0,
	  control_suppress_parse, control_suppress_run_check },
	{ "suppress-add", CONF_RIGHT_WRITE, CCF_AUDIT, 0,
	  control_suppress_parse, control_suppress_run_change },
	{ "suppress-remove", CONF_RIGHT_WRITE, CCF_AUDIT, 0,
	  control_suppress_parse, control_suppress_run_change },
	{ "scan-status", CONF_RIGHT_READ, 0, 0, control_scan_parse_status,
	  control_scan_run_status },
	/* write: verdicts are only forgotten (the next scans ask clamd). */
	{ "scan-flush", CONF_RIGHT_WRITE, CCF_AUDIT, 0, control_parse_none,
	  control_scan_run_flush },
};

#define CONTROL_NCMDS (sizeof(control_cmds) / sizeof(control_cmds[0]))

static const struct control_cmd *
control_cmd_find(const char *verb)
{
	size_t i;

	for (i = 0; i < CONTROL_NCMDS; i++)
		if (strcmp(verb, control_cmds[i].verb) == 0)
			return &control_cmds[i];
	return NULL;
}

/* The final answer line ("ok …" / "err …"), without its LF. */
void
control_result(struct control_session *s, bool ok, const char *fmt, ...)
{
	va_list ap;
	int n;

	s->ok = ok;
	va_start(ap, fmt);
	n = vsnprintf(s->result, sizeof(s->result), fmt, ap);
	va_end(ap);
	if (n < 0)
		snprintf(s->result, sizeof(s->result), "err internal error");
	/* A truncated "err …" is still an answer. */
}

/* Sessions ------------------------------------------------------------- */

struct control_session *
control_session_new(uid_t uid)
{
	struct control_session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->uid = uid;
	s->count = -1;
	s->next = control_server.sessions;
	if (control_server.sessions != NULL)
		control_server.sessions->prev = s;
	control_server.sessions = s;
	control_server.nsessions++;
	return s;
}

void
control_session_free(struct control_session *s)
{
	/* `drain` answered (or its client left): the stop begins only now,
	 * so that the answer is not cut by control_stop(). */
	if (s->then_drain && C.drain_fn != NULL)
		C.drain_fn();
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->view != NULL) {
		free(s->view->suspensions);
		free(s->view);
	}
	control_xfer_free(s->xfer);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		control_server.sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	control_server.nsessions--;
	free(s);
}

static void
control_timeouts(struct bufferevent *bev, int read_ms, int write_ms)
{
	struct timeval r = util_ms_timeval(read_ms);
	struct timeval w = util_ms_timeval(write_ms);

	bufferevent_set_timeouts(bev, read_ms > 0 ? &r : NULL,
				 write_ms > 0 ? &w : NULL);
}

/* The only writer of s->state. */
void
control_enter(struct control_session *s, enum control_state st)
{
	if (s->state != st)
		log_debug("control uid %u: %s -> %s", (unsigned)s->uid,
			  cs_info[s->state].name, cs_info[st].name);
	s->state = st;
	if (s->bev == NULL)
		return;
	if (cs_info[st].read_timeout_ms > 0)
		bufferevent_enable(s->bev, EV_READ);
	else
		bufferevent_disable(s->bev, EV_READ);
	control_timeouts(s->bev, cs_info[st].read_timeout_ms,
			 cs_info[st].write_timeout_ms);
}

/* Send s->result and end the session once it is flushed. */
void
control_answer(struct control_session *s)
{
	if (s->bev == NULL) { /* the client (or the daemon) left meanwhile */
		control_session_free(s);
		return;
	}
	control_enter(s, CS_WRITE);
	if (evbuffer_add_printf(bufferevent_get_output(s->bev), "%s\n",
				s->result) < 0) {
		control_session_free(s);
		return;
	}
	/* control_write_cb frees the session once the output drained. */
}

/* The result is known: record it if it must be, then answer. */
void
control_finish(struct control_session *s)
{
	if (s->refused || s->audit ||
	    (s->cmd != NULL && (s->cmd->flags & CCF_AUDIT))) {
		control_enter(s, CS_AUDIT);
		if (control_server.stopped) {
			/* Shutting down: the pool may be gone already. */
			control_audit_run(s);
			control_audit_done(s);
			return;
		}
		worker_submit(control_server.loop, control_audit_run,
			      control_audit_done, s);
		return;
	}
	control_answer(s);
}

/* Limits by uid ----------------------------------------------------------- */

/* UID's entry (made, or taken from the uid seen least recently). */
static struct control_uid *
control_uid_get(uid_t uid, int64_t now)
{
	struct control_uid *u, *old = &C.uids[0];
	size_t i;

	for (i = 0; i < CONTROL_UIDS_MAX; i++) {
		u = &C.uids[i];
		if (u->window_ms != 0 && u->uid == uid) {
			u->seen_ms = now;
			return u;
		}
		if (u->window_ms == 0 || u->seen_ms < old->seen_ms)
			old = u;
	}
	memset(old, 0, sizeof(*old));
	old->uid = uid;
	old->seen_ms = now;
	return old;
}

/* Start UID's next window if its last one is over; the refusals left out
 * of the record in the last one are recorded now, as one line. */
static void
control_uid_roll(struct control_uid *u, int64_t now, const char *what)
{
	if (u->window_ms != 0 && now - u->window_ms < CONTROL_WINDOW_MS)
		return;
	if (u->suppressed > 0)
		control_audit_coalesced(u->uid, what,
					"err %u more refused in %d s, not "
					"recorded one by one",
					u->suppressed,
					CONTROL_WINDOW_MS / 1000);
	u->window_ms = now;
	u->refused = u->suppressed = 0;
}

/* Parsing ---------------------------------------------------------------- */

/* The next space-separated word of *P (NUL-terminated in place), or NULL. */
char *
control_word(char **p)
{
	char *w = *p, *sp;

	if (w == NULL || *w == '\0')
		return NULL;
	if ((sp = strchr(w, ' ')) != NULL) {
		*sp = '\0';
		*p = sp + 1;
	} else
		*p = w + strlen(w);
	return w;
}

/* Is S a host name (letters, digits, '-', '_', dots between labels)?  Copy
 * it lower-case, without a trailing dot, into OUT. */
bool
control_domain_ok(const char *s, char *out, size_t outlen)
{
	size_t n = strlen(s), i;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > CONTROL_DOMAIN_MAX || n >= outlen || s[0] == '.')
		return false;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '.' && s[i + 1] == '.')
			return false;
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		else if (!((ch >= 'a' && ch <= 'z') ||
			   (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
			   ch == '_'))
			return false;
		out[i] = ch;
	}
	out[n] = '\0';
	return true;
}

static int
control_parse_none(struct control_session *s, char *args)
{
	if (*args != '\0') {
		control_result(s, false, "err \"%s\" takes no argument",
			       s->cmd->verb);
		return -1;
	}
	return 0;
}
/*
 * S lacks the right NEED: answer so, recorded.  Past CONTROL_REFUSALS_MAX
 * refusals of its uid in a window, the answer says to slow down and the
 * rest of the window's refusals become one record when it ends: a loop
 * of refused commands costs a bounded number of lines and fsyncs.
 */
static void
control_refuse(struct control_session *s, const char *need)
{
	int64_t now = util_mono_ms();
	struct control_uid *u = control_uid_get(s->uid, now);

	control_uid_roll(u, now, "(refused commands)");
	s->refused = true;
	if (u->refused >= CONTROL_REFUSALS_MAX) {
		u->suppressed++;
		control_result(s, false,
			       "err too many refused commands (uid %u); "
			       "permission denied: \"%s\" right needed",
			       (unsigned)s->uid, need != NULL ? need : "?");
		control_answer(s);
		return;
	}
	u->refused++;
	control_result(s, false,
		       "err permission denied: \"%s\" right needed (uid %u)",
		       need != NULL ? need : "?", (unsigned)s->uid);
	control_finish(s);
}

/* One command line (LEN bytes, NUL-terminated, without its LF). */
static void
control_command(struct control_session *s, char *line, size_t len)
{
	const struct control_cmd *cmd;
	const char *need;
	unsigned rights;
	char *p = line, *verb;
	bool parsed;
	size_t i;

	snprintf(s->command, sizeof(s->command), "(malformed)");
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 ||
		    (unsigned char)line[i] > 0x7e ||
		    (line[i] == ' ' &&
		     (i == 0 || i + 1 == len || line[i + 1] == ' ')))
			break;
	if (len == 0 || i < len) {
		control_result(s, false,
			       "err malformed command (printable ASCII words "
			       "separated by single spaces)");
		control_answer(s);
		return;
	}
	verb = control_word(&p);
	if (verb == NULL || (cmd = control_cmd_find(verb)) == NULL) {
		/* Not echoed: it may be anything, an address too. */
		control_result(s, false, "err unknown command");
		control_answer(s);
		return;
	}
	s->cmd = cmd;
	rights = conf_rights_for_uid(control_server.conf, s->uid);
	parsed = cmd->parse(s, p) == 0;
	control_audit_command_make(s, parsed);
	if ((rights & cmd->right) == 0) {
		need = conf_right_name(cmd->right);
		control_refuse(s, need);
		return;
	}
	if (!parsed) {
		control_answer(s);
		return;
	}
	/* A header block is message contents. */
	if (s->view != NULL && s->view->headers &&
	    (rights & CONF_RIGHT_EXPORT) == 0) {
		control_refuse(s, "export");
		return;
	}
	if (s->xfer != NULL && s->xfer->remove &&
	    (rights & CONF_RIGHT_DELETE) == 0) {
		control_refuse(s, "delete");
		return;
	}
	cmd->run(s);
}

/* libevent callbacks ------------------------------------------------------ */

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr lf;
	size_t len = evbuffer_get_length(in);
	char line[CONTROL_LINE_MAX];

	if (s->state != CS_READ)
		return;
	lf = evbuffer_search(in, "\n", 1, NULL);
	if (lf.pos < 0) {
		if (len >= CONTROL_LINE_MAX) {
			control_result(s, false,
				       "err command longer than %d bytes",
				       CONTROL_LINE_MAX - 1);
			control_answer(s);
		}
		return;
	}
	if ((size_t)lf.pos >= CONTROL_LINE_MAX) {
		control_result(s, false, "err command longer than %d bytes",
			       CONTROL_LINE_MAX - 1);
		control_answer(s);
		return;
	}
	if (len > (size_t)lf.pos + 1) {
		control_result(s, false, "err one command per connection");
		control_answer(s);
		return;
	}
	if (evbuffer_remove(in, line, (size_t)lf.pos + 1) != (int)lf.pos + 1) {
		control_session_free(s);
		return;
	}
	line[lf.pos] = '\0';
	control_command(s, line, (size_t)lf.pos);
}

static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_session *s = arg;

	if (s->state == CS_WRITE &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_session_free(s);
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_session *s = arg;

	(void)bev;
	if (s->state == CS_VIEW)
		return; /* the view's thread owns the socket until it is done */
	if (s->state == CS_READ && (what & BEV_EVENT_EOF) &&
	    !(what & BEV_EVENT_ERROR) &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		/* Half-closed after a line without its LF: say so. */
		control_result(s, false, "err command not ended by a newline");
		control_answer(s);
		return;
	}
	if (s->state == CS_RUN || s->state == CS_AUDIT) {
		/* The completion still owns S: let it free it. */
		bufferevent_free(s->bev);
		s->bev = NULL;
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && s->state == CS_READ)
		log_debug("control uid %u: no command within %d s, dropped",
			  (unsigned)s->uid, CONTROL_TIMEOUT_MS / 1000);
	control_session_free(s);
}

/*
 * A uid with no right at all: answered and closed at once, never a
 * session.  Recorded once per uid per CONTROL_WINDOW_MS (the first, then
 * how many more when the window is over), so a loop of connections costs
 * neither sessions nor disk.
 */
static void
control_refuse_uid(int fd, uid_t uid)
{
	int64_t now = util_mono_ms();
	struct control_uid *u = control_uid_get(uid, now);
	char msg[128];
	int n;

	n = snprintf(msg, sizeof(msg),
		     "err permission denied: uid %u has no right on this "
		     "socket\n",
		     (unsigned)uid);
	(void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL);
	/* What it sent already is read, so that the close is not a reset
	 * that could overtake the answer (best effort). */
	(void)!recv(fd, msg, sizeof(msg), MSG_DONTWAIT);
	close(fd);
	control_uid_roll(u, now, "(connect)");
	if (u->refused++ == 0)
		control_audit_coalesced(uid, "(connect)",
					"err permission denied: no right");
	else
		u->suppressed++;
}

static void
control_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		  struct sockaddr *sa, int salen, void *arg)
{
	static const char busy[] = "err busy\n";
	struct control_session *s;
	unsigned rights, mine;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 ||
	    crlen != sizeof(cr)) {
		log_warn("control: SO_PEERCRED");
		close(fd);
		return;
	}
	rights = conf_rights_for_uid(control_server.conf, cr.uid);
	if (rights == 0) {
		control_refuse_uid(fd, cr.uid);
		return;
	}
	for (mine = 0, s = control_server.sessions; s != NULL; s = s->next)
		mine += s->uid == cr.uid && s->bev != NULL;
	/* The last sessions are kept for those who can stop a disaster. */
	if (control_server.nsessions >= CONTROL_SESSIONS_MAX ||
	    mine >= CONTROL_UID_SESSIONS_MAX ||
	    ((rights & (CONF_RIGHT_WRITE | CONF_RIGHT_DELETE)) == 0 &&
	     control_server.nsessions >=
		 CONTROL_SESSIONS_MAX - CONTROL_RESERVE_SESSIONS) ||
	    (s = control_session_new(cr.uid)) == NULL) {
		/* Non-blocking, best effort: the answer fits any buffer. */
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
		close(fd);
		return;
	}
	s->pid = cr.pid;
	s->bev = bufferevent_socket_new(evconnlistener_get_base(C.listener), fd,
					BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		control_session_free(s);
		return;
	}
	/* Never hold more than one line (and a byte to tell it is longer). */
	bufferevent_setwatermark(s->bev, EV_READ, 0, CONTROL_LINE_MAX);
	bufferevent_setcb(s->bev, control_read_cb, control_write_cb,
			  control_event_cb, s);
	s->state = CS_READ;
	control_enter(s, CS_READ);
}

static void
control_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (C.listener != NULL)
		evconnlistener_enable(C.listener);
}

/* accept() failed (out of descriptors): pause rather than spin. */
static void
control_error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval tv = util_ms_timeval(CONTROL_ACCEPT_PAUSE_MS);

	(void)arg;
	log_warn("control: accept");
	evconnlistener_disable(l);
	if (C.resume_ev != NULL)
		evtimer_add(C.resume_ev, &tv);
}

/* Start and stop ----------------------------------------------------------- */

/* Remove a stale socket at PATH; refuse a live one or any other file. */
static int
control_path_clear(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "control socket %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "control socket %s: exists and is not a socket", path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen,
			 "control socket %s: in use (another outpostd?)", path);
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "control socket %s: unlink: %s", path,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* Create, bind and listen; the socket file is 0660 from the start, in
 * group GID if GROUP_SET (control.group, set at every start). */
static int
control_socket_open(const char *path, bool group_set, gid_t gid, char *err,
		    size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	/* Linux gives the file the mode of the socket inode (less the
	 * umask): never wider than 0600 between bind() and chmod(). */
	(void)fchmod(fd, 0600);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		snprintf(err, errlen, "control socket %s: bind: %s", path,
			 strerror(errno));
		close(fd);
		return -1;
	}
	if ((group_set && lchown(path, (uid_t)-1, gid) != 0) ||
	    chmod(path, 0660) != 0 || lstat(path, &st) != 0 ||
	    listen(fd, CONTROL_BACKLOG) != 0) {
		snprintf(err, errlen, "control socket %s: %s", path,
			 strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	C.dev = st.st_dev;
	C.ino = st.st_ino;
	return fd;
}

int
control_start(struct loop *dloop, const struct conf *c, struct queue *q,
	      char *err, size_t errlen)
{
	const char *path = c->control.socket;
	const char *audit = c->log.audit_file != NULL ? c->log.audit_file : "";
	int fd;

	if (C.started) {
		snprintf(err, errlen, "control socket: started twice");
		return -1;
	}
	if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(C.path)) {
		snprintf(err, errlen, "control socket %s: path too long",
			 path != NULL ? path : "(none)");
		return -1;
	}
	if (control_audit_init(audit, err, errlen) != 0)
		return -1;
	if (control_path_clear(path, err, errlen) != 0 ||
	    (fd = control_socket_open(path, c->control.group_set,
				      c->control.gid, err, errlen)) < 0)
		return -1;
	memcpy(C.path, path, strlen(path) + 1);
	C.resume_ev = evtimer_new(dloop->base, control_resume_cb, NULL);
	C.listener = evconnlistener_new(
	    dloop->base, control_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (C.listener == NULL || C.resume_ev == NULL) {
		snprintf(err, errlen, "control socket %s: libevent failed",
			 path);
		if (C.listener != NULL)
			evconnlistener_free(C.listener);
		else
			close(fd);
		if (C.resume_ev != NULL)
			event_free(C.resume_ev);
		C.listener = NULL;
		C.resume_ev = NULL;
		unlink(path);
		return -1;
	}
	evconnlistener_set_error_cb(C.listener, control_error_cb);
	control_server.conf = c;
	control_server.queue = q;
	control_server.loop = dloop;
	C.started = true;
	control_server.stopped = false;
	control_query_rates_start(dloop->base);
	control_watchdog_start();
	control_scan_start();
	log_info("control socket %s (mode 0660)%s%s", path,
		 audit[0] != '\0' ? ", audit log " : ", no audit log", audit);
	return 0;
}

void
control_drain_hook(void (*fn)(void))
{
	C.drain_fn = fn;
}

void
control_stop(void)
{
	struct control_session *s, *next;
	struct stat st;

	if (!C.started || control_server.stopped)
		return;
	control_server.stopped = true;
	control_query_rates_stop();
	control_purge_stop();
	evconnlistener_free(C.listener);
	C.listener = NULL;
	event_free(C.resume_ev);
	C.resume_ev = NULL;
	/* Only our own socket file: a newer daemon may have replaced it. */
	if (lstat(C.path, &st) == 0 && st.st_dev == C.dev && st.st_ino == C.ino)
		unlink(C.path);
	for (s = control_server.sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state == CS_VIEW) {
			/* The queue closes after us: wait for the walk, which
			 * stops at its next record.  Its completion (posted)
			 * frees the session. */
			if (s->view != NULL)
				atomic_store(&s->view->cancel, true);
			if (s->xfer != NULL)
				atomic_store(&s->xfer->cancel, true);
			/* A write waiting for a slow reader ends now. */
			if (s->bev != NULL)
				shutdown(bufferevent_getfd(s->bev), SHUT_RDWR);
			pthread_join(s->thread, NULL);
			s->joined = true;
			continue;
		}
		if (s->state == CS_RUN || s->state == CS_AUDIT) {
			if (s->bev != NULL)
				bufferevent_free(s->bev);
			s->bev = NULL; /* freed by its completion */
		} else
			control_session_free(s);
	}
}
