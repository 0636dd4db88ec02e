/*
 * control.c — the control socket (protocol: control.h).
 * Owns: the listening socket, its sessions (one command each) and the audit
 * log.  Must not: change the queue itself (every change goes through the
 * scheduler: sched_admin, sched_suspend), trust anything the client says
 * about who it is (SO_PEERCRED only), or write an address in clear.
 * Threads: the delivery loop; audit records are written on the worker pool
 * (worker_submit) and the answer is sent from the completion.
 * Invariants: a session answers exactly once; a session waiting for the
 * scheduler or the audit log is freed by that completion, never before.
 */
#define _GNU_SOURCE /* struct ucred (SO_PEERCRED) */
#include <sys/socket.h>
#include <grp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/receive/auth.h"
#include "mta/receive/auth_limit.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/deliver/delivery.h"
#include "mta/observe/evlog.h"
#include "mta/core/log.h"
#include "mta/core/logspace.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"

#define CONTROL_ARG_MAX          256 /* id, domain or user, NUL included */
#define CONTROL_DOMAIN_MAX       253
#define CONTROL_REASON_MAX       200 /* bytes of a suspension reason */
#define CONTROL_RESULT_MAX       320 /* the final answer line */
#define CONTROL_COMMAND_MAX      (2 * CONTROL_LINE_MAX) /* scrubbed command */
#define CONTROL_AUDIT_MAX        (CONTROL_COMMAND_MAX + 1024)
#define CONTROL_BACKLOG          16
#define CONTROL_ACCEPT_PAUSE_MS  1000 /* after accept() failed (EMFILE) */
#define CONTROL_UID_SESSIONS_MAX 8    /* sessions of one uid at once */
#define CONTROL_UID_VIEWS_MAX    2    /* views of one uid at once */
#define CONTROL_RESERVE_SESSIONS 16   /* kept for uids with write/delete */
#define CONTROL_REFUSALS_MAX                                                   \
	10 /* refused commands recorded per uid per                            \
	      window; more are answered, not kept */
#define CONTROL_WINDOW_MS 60000
#define CONTROL_UIDS_MAX                                                       \
	256 /* uids followed for refusals; past that, the one least recently   \
	       seen is forgotten (it is counted again from zero) */

enum control_state {
	CS_READ,  /* waiting for the command line */
	CS_RUN,   /* handed to the scheduler */
	CS_AUDIT, /* the audit record is being written (worker pool) */
	CS_VIEW,  /* a view thread writes to the socket (control_view.c) */
	CS_WRITE, /* the answer is being flushed; then the session ends */
	CS__COUNT
};

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

struct control_session;

#define CCF_AUDIT 0x1u /* recorded in the audit log, also when it works */
#define CCF_SEL   0x2u /* takes a selector (sched_admin) */
#define CCF_DEST  0x4u /* its argument is a destination domain */
#define CCF_VIEW  0x8u /* a view of the queue (control_view.c) */

struct control_cmd {
	const char *verb;
	unsigned right;         /* CONF_RIGHT_* needed */
	unsigned flags;         /* CCF_* */
	enum sched_admin_op op; /* control_run_admin */
	int (*parse)(struct control_session *s, char *args);
	void (*run)(struct control_session *s);
};

struct control_session {
	struct bufferevent
	    *bev; /* NULL once dropped while a completion is due */
	enum control_state state;
	uid_t uid;
	pid_t pid;
	const struct control_cmd *cmd;
	bool refused; /* lacked the right: recorded, answered with err */
	/* the request */
	enum sched_admin_sel sel;
	char arg[CONTROL_ARG_MAX]; /* queue id (hex), domain or user */
	uint64_t id;               /* SAS_ID */
	uint64_t seconds;          /* suspend */
	char reason[CONTROL_REASON_MAX * 2];
	char command[CONTROL_COMMAND_MAX]; /* as received, scrubbed */
	/* the result */
	bool ok;
	int count; /* -1: none */
	char result[CONTROL_RESULT_MAX];
	bool audit; /* this request is recorded (show … headers) */
	struct control_view *view; /* CCF_VIEW: the request, then result */
	pthread_t thread;          /* the view's */
	bool joined;               /* its thread is joined already */
	int view_rc;               /* control_view_run()'s */
	int view_fd;               /* the socket, written by the view */
	int audit_status;          /* 0 written (or no audit log), -1 failed */
	char audit_err[160];
	struct control_session *prev, *next;
};

static struct {
	bool started, stopped;
	const struct conf *conf;
	struct queue *queue;
	struct loop *loop;
	struct evconnlistener *listener;
	struct event *resume_ev; /* re-enable accepting after EMFILE */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* of the socket file we made, to remove only ours */
	ino_t ino;
	char audit_path[PATH_MAX]; /* "" = no audit log */
	struct control_session *sessions;
	unsigned nsessions;
	unsigned nviews; /* view threads running */
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
static int control_parse_view(struct control_session *s, char *args);
static int control_parse_sel(struct control_session *s, char *args);
static int control_parse_suspend(struct control_session *s, char *args);
static int control_parse_resume(struct control_session *s, char *args);
static void control_run_ping(struct control_session *s);
static void control_run_suspensions(struct control_session *s);
static void control_run_view(struct control_session *s);
static void control_view_start(struct control_session *s);
static void control_view_done(void *arg);
static char *control_suspensions_text(void);
static void control_run_admin(struct control_session *s);
static void control_run_suspend(struct control_session *s);
static int control_parse_auth_unblock(struct control_session *s, char *args);
static void control_run_auth_blocks(struct control_session *s);
static void control_run_auth_unblock(struct control_session *s);

static const struct control_cmd control_cmds[] = {
	{ "ping", CONF_RIGHT_READ, 0, 0, control_parse_none, control_run_ping },
	{ "suspensions", CONF_RIGHT_READ, 0, 0, control_parse_none,
	  control_run_suspensions },
	{ "summary", CONF_RIGHT_READ, CCF_VIEW, 0, control_parse_view,
	  control_run_view },
	{ "list", CONF_RIGHT_READ, CCF_VIEW, 0, control_parse_view,
	  control_run_view },
	{ "show", CONF_RIGHT_READ, CCF_VIEW, 0, control_parse_view,
	  control_run_view },
	{ "hold", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_HOLD,
	  control_parse_sel, control_run_admin },
	{ "release", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_RELEASE,
	  control_parse_sel, control_run_admin },
	{ "retry", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_SEL, SA_RETRY,
	  control_parse_sel, control_run_admin },
	{ "delete", CONF_RIGHT_DELETE, CCF_AUDIT | CCF_SEL, SA_DELETE,
	  control_parse_sel, control_run_admin },
	{ "bounce", CONF_RIGHT_DELETE, CCF_AUDIT | CCF_SEL, SA_BOUNCE,
	  control_parse_sel, control_run_admin },
	{ "suspend", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_DEST, 0,
	  control_parse_suspend, control_run_suspend },
	{ "resume", CONF_RIGHT_WRITE, CCF_AUDIT | CCF_DEST, 0,
	  control_parse_resume, control_run_suspend },
	{ "auth-blocks", CONF_RIGHT_READ, 0, 0, control_parse_none,
	  control_run_auth_blocks },
	{ "auth-unblock", CONF_RIGHT_WRITE, CCF_AUDIT, 0,
	  control_parse_auth_unblock, control_run_auth_unblock },
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

static void control_result(struct control_session *s, bool ok, const char *fmt,
			   ...) __attribute__((format(printf, 3, 4)));

/* The final answer line ("ok …" / "err …"), without its LF. */
static void
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

static void
control_session_free(struct control_session *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->view != NULL) {
		free(s->view->suspensions);
		free(s->view);
	}
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		C.sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	C.nsessions--;
	free(s);
}

static void
control_timeouts(struct bufferevent *bev, int read_ms, int write_ms)
{
	struct timeval r = { read_ms / 1000, (read_ms % 1000) * 1000 };
	struct timeval w = { write_ms / 1000, (write_ms % 1000) * 1000 };

	bufferevent_set_timeouts(bev, read_ms > 0 ? &r : NULL,
				 write_ms > 0 ? &w : NULL);
}

/* The only writer of s->state. */
static void
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
static void
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

/* Audit ---------------------------------------------------------------- */

static void control_cat(char *buf, size_t size, size_t *off, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));

static void
control_cat(char *buf, size_t size, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, size - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off = (size_t)n < size - *off ? *off + (size_t)n : size - 1;
}

/* The caller's name: from the password database, else the uid. */
static void
control_user_name(uid_t uid, char *out, size_t outlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL &&
	    pw.pw_name != NULL && pw.pw_name[0] != '\0')
		log_escape(out, outlen, pw.pw_name, strlen(pw.pw_name));
	else
		snprintf(out, outlen, "%u", (unsigned)uid);
}

/* Write one record: O_APPEND, then fsync.  0, or -1 with s->audit_err. */
static int
control_audit_append(struct control_session *s, const char *line, size_t len)
{
	int fd;
	ssize_t w;

	fd = open(C.audit_path,
		  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto fail;
	if (logspace_admit(LOGSPACE_AUDIT, fd, len, 1) != 0)
		goto fail_fd; /* the queue's reserve (ENOSPC) */
	/* One write(2) of a whole line: records of concurrent writers never
	 * interleave (O_APPEND on a local file). */
	while ((w = write(fd, line, len)) < 0 && errno == EINTR)
		;
	if (w < 0 || (size_t)w != len) {
		if (w >= 0)
			errno = EIO;
		goto fail_fd;
	}
	if (fsync(fd) != 0)
		goto fail_fd;
	if (close(fd) != 0)
		goto fail;
	return 0;
fail_fd:
	w = errno;
	close(fd);
	errno = (int)w;
fail:
	snprintf(s->audit_err, sizeof(s->audit_err), "%s", strerror(errno));
	return -1;
}

/*
 * Worker pool (or the loop, after control_stop): the audit record and the
 * EV_ADMIN event.  Reads only the request and result fields of S, which the
 * loop leaves alone while the session is in CS_AUDIT.
 */
static void
control_audit_run(void *arg)
{
	struct control_session *s = arg;
	struct evlog_event ev;
	struct timespec ts;
	struct tm tm;
	char user[128], admin[160], when[40], line[CONTROL_AUDIT_MAX];
	int64_t now_ms;
	size_t off = 0;
	time_t t;

	control_user_name(s->uid, user, sizeof(user));
	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	t = ts.tv_sec;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		when[0] = '\0';
	control_cat(line, sizeof(line), &off, "{\"time\":\"%s.%03dZ\"", when,
		    (int)(now_ms % 1000));
	control_cat(line, sizeof(line), &off,
		    ",\"time_ms\":%" PRId64 ",\"uid\":%u,\"pid\":%ld,\"user\":",
		    now_ms, (unsigned)s->uid, (long)s->pid);
	cv_json_cat(line, sizeof(line), &off, user);
	control_cat(line, sizeof(line), &off, ",\"command\":");
	cv_json_cat(line, sizeof(line), &off, s->command);
	control_cat(line, sizeof(line), &off, ",\"result\":");
	cv_json_cat(line, sizeof(line), &off, s->result);
	/* Leave room for the closing brace and LF even when truncated. */
	if (off > sizeof(line) - 3)
		off = sizeof(line) - 3;
	line[off++] = '}';
	line[off++] = '\n';
	line[off] = '\0';
	s->audit_status = 0;
	if (C.audit_path[0] != '\0')
		s->audit_status = control_audit_append(s, line, off);

	snprintf(admin, sizeof(admin), "%s (uid %u)", user, (unsigned)s->uid);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_ADMIN;
	ev.time_ms = now_ms;
	ev.nrcpts = ev.attempt = ev.tls_verified = -1;
	ev.queue_time_ms = -1;
	ev.admin = admin;
	ev.command = s->command;
	ev.count = s->ok ? s->count : -1;
	if (!s->ok)
		ev.reason = strncmp(s->result, "err ", 4) == 0 ? s->result + 4
							       : s->result;
	else if (s->reason[0] != '\0')
		ev.reason = s->reason;
	if (s->cmd != NULL && (s->cmd->flags & CCF_SEL) && s->sel == SAS_ID)
		ev.id = s->id;
	if (s->arg[0] != '\0' && s->cmd != NULL &&
	    (((s->cmd->flags & CCF_SEL) && s->sel == SAS_DOMAIN) ||
	     (s->cmd->flags & CCF_DEST)))
		ev.destination = s->arg;
	evlog_write(&ev);
	log_info("control: %s (uid %u): %s: %s", user, (unsigned)s->uid,
		 s->command, s->result);
}

/* Delivery loop: the record is written (or not); answer. */
static void
control_audit_done(void *arg)
{
	struct control_session *s = arg;

	if (s->audit_status != 0) {
		log_warnx("control: audit log %s: %s; not recorded there: "
			  "uid %u: %s: %s",
			  C.audit_path, s->audit_err, (unsigned)s->uid,
			  s->command, s->result);
		/* Contents are only shown when the look is on record. */
		if (s->view != NULL && s->ok && !s->refused)
			control_result(s, false, "err audit log unavailable");
	}
	if (s->view != NULL && s->ok && !s->refused && s->audit_status == 0) {
		control_view_start(s);
		return;
	}
	control_answer(s);
}

/* The result is known: record it if it must be, then answer. */
static void
control_finish(struct control_session *s)
{
	if (s->refused || s->audit ||
	    (s->cmd != NULL && (s->cmd->flags & CCF_AUDIT))) {
		control_enter(s, CS_AUDIT);
		if (C.stopped) {
			/* Shutting down: the pool may be gone already. */
			control_audit_run(s);
			control_audit_done(s);
			return;
		}
		worker_submit(C.loop, control_audit_run, control_audit_done, s);
		return;
	}
	control_answer(s);
}

/* Limits by uid ----------------------------------------------------------- */

static int64_t
control_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/*
 * One audit record (and EV_ADMIN event) that stands for many refusals of
 * UID: COMMAND and RESULT say what and how many.  No session is behind it
 * (bev NULL): control_audit_done frees it.
 */
static void control_audit_coalesced(uid_t uid, const char *command,
				    const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
control_audit_coalesced(uid_t uid, const char *command, const char *fmt, ...)
{
	struct control_session *s;
	va_list ap;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return;
	s->uid = uid;
	s->count = -1;
	s->refused = true;
	snprintf(s->command, sizeof(s->command), "%s", command);
	va_start(ap, fmt);
	vsnprintf(s->result, sizeof(s->result), fmt, ap);
	va_end(ap);
	s->next = C.sessions;
	if (C.sessions != NULL)
		C.sessions->prev = s;
	C.sessions = s;
	C.nsessions++;
	control_finish(s);
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
static char *
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
static bool
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
 * summary [json]
 * list [json] [held] [deferred] [domain DOMAIN]
 * show HEX16 [json] [headers]
 * Words after the verb in any order; each once.
 */
static int
control_parse_view(struct control_session *s, char *args)
{
	struct control_view *v;
	const char *verb = s->cmd->verb;
	char *w;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		control_result(s, false, "err out of memory");
		return -1;
	}
	s->view = v;
	atomic_init(&v->cancel, false);
	v->kind = verb[0] == 's' && verb[1] == 'u' ? CVK_SUMMARY
		  : verb[0] == 'l'                 ? CVK_LIST
						   : CVK_SHOW;
	if (v->kind == CVK_SHOW) {
		w = control_word(&args);
		if (w == NULL || strlen(w) != QUEUE_ID_HEX_BYTES - 1 ||
		    queue_id_parse(w, &v->id) != 0) {
			control_result(
			    s, false, "err usage: show HEX16 [json] [headers]");
			return -1;
		}
		queue_id_format(v->id, s->arg);
	}
	while ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "json") == 0 && !v->json)
			v->json = true;
		else if (v->kind == CVK_LIST && strcmp(w, "held") == 0 &&
			 !v->held)
			v->held = true;
		else if (v->kind == CVK_LIST && strcmp(w, "deferred") == 0 &&
			 !v->deferred)
			v->deferred = true;
		else if (v->kind == CVK_LIST && strcmp(w, "domain") == 0 &&
			 v->domain[0] == '\0') {
			if ((w = control_word(&args)) == NULL ||
			    !control_domain_ok(w, v->domain,
					       sizeof(v->domain))) {
				control_result(s, false, "err bad domain");
				return -1;
			}
		} else if (v->kind == CVK_SHOW && strcmp(w, "headers") == 0 &&
			   !v->headers)
			v->headers = s->audit = true;
		else {
			control_result(
			    s, false,
			    "err usage: summary [json] | list [json] "
			    "[held] [deferred] [domain DOMAIN] | "
			    "show HEX16 [json] [headers]");
			return -1;
		}
	}
	return 0;
}

/* SEL = id HEX16 | domain DOMAIN | user USER | all */
static int
control_parse_sel(struct control_session *s, char *args)
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

/* suspend DOMAIN SECONDS [REASON…] */
static int
control_parse_suspend(struct control_session *s, char *args)
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

/* resume DOMAIN */
static int
control_parse_resume(struct control_session *s, char *args)
{
	char *dom = control_word(&args);

	if (dom == NULL || *args != '\0') {
		control_result(s, false, "err usage: resume DOMAIN");
		return -1;
	}
	if (!control_domain_ok(dom, s->arg, sizeof(s->arg))) {
		control_result(s, false, "err bad domain");
		return -1;
	}
	s->seconds = 0;
	return 0;
}

/* Commands --------------------------------------------------------------- */

static void
control_run_ping(struct control_session *s)
{
	control_result(s, true, "ok");
	control_finish(s);
}

/* A view thread: the walk, then the completion back on the loop. */
static void *
control_view_thread(void *arg)
{
	struct control_session *s = arg;

	s->view_rc = control_view_run(C.queue, C.conf, s->view_fd, s->view);
	loop_post(C.loop, control_view_done, s);
	return NULL;
}

/* Delivery loop: the view is written; send its final line. */
static void
control_view_done(void *arg)
{
	struct control_session *s = arg;

	if (!s->joined)
		pthread_join(s->thread, NULL);
	s->joined = true;
	C.nviews--;
	/* The client stopped reading or left, or the daemon is stopping
	 * (the loop may not run again to flush an answer). */
	if (s->view_rc != 0 || C.stopped) {
		control_session_free(s);
		return;
	}
	control_result(s, strncmp(s->view->result, "ok", 2) == 0, "%s",
		       s->view->result);
	control_answer(s);
}

/* May S start a view?  At most CONTROL_VIEWS_MAX at once, 2 per uid, and
 * the last one kept for uids with write or delete (a slow reader of a big
 * listing holds a thread until it is done). */
static bool
control_view_room(const struct control_session *s)
{
	const struct control_session *o;
	unsigned mine = 0;

	if (C.nviews >= CONTROL_VIEWS_MAX)
		return false;
	for (o = C.sessions; o != NULL; o = o->next)
		mine += o->state == CS_VIEW && o->uid == s->uid;
	if (mine >= CONTROL_UID_VIEWS_MAX)
		return false;
	return C.nviews + 1 < CONTROL_VIEWS_MAX ||
	       (conf_rights_for_uid(C.conf, s->uid) &
		(CONF_RIGHT_WRITE | CONF_RIGHT_DELETE)) != 0;
}

/* Start the view's thread (its right is checked, its look on record). */
static void
control_view_start(struct control_session *s)
{
	if (s->bev == NULL || C.stopped) {
		control_result(s, false, "err outpostd stopping");
		control_answer(s);
		return;
	}
	if (!control_view_room(s)) {
		control_result(s, false,
			       "err busy: listings running, try again");
		control_answer(s);
		return;
	}
	/* The summary's suspensions are the scheduler's: read them here. */
	if (s->view->kind == CVK_SUMMARY &&
	    (s->view->suspensions = control_suspensions_text()) == NULL) {
		control_result(s, false, "err out of memory");
		control_answer(s);
		return;
	}
	control_enter(s, CS_VIEW);
	s->view_fd = bufferevent_getfd(s->bev);
	s->joined = false;
	if (pthread_create(&s->thread, NULL, control_view_thread, s) != 0) {
		s->joined = true;
		control_result(s, false, "err cannot start a thread");
		control_answer(s);
		return;
	}
	C.nviews++;
}

static void
control_run_view(struct control_session *s)
{
	if (s->audit) { /* headers: on record first (control_audit_done) */
		control_result(s, true, "ok");
		control_finish(s);
		return;
	}
	control_view_start(s);
}

/* sched_suspensions()'s lines, printable ASCII only; malloc'd, or NULL. */
static char *
control_suspensions_text(void)
{
	size_t len = 4096, need, i;
	char *buf, *nb;

	if ((buf = malloc(len)) == NULL)
		return NULL;
	need = sched_suspensions(buf, len);
	if (need >= len) {
		len = need + 1;
		if ((nb = realloc(buf, len)) == NULL) {
			free(buf);
			return NULL;
		}
		buf = nb;
		need = sched_suspensions(buf, len);
		if (need >= len)
			need = len - 1;
	}
	buf[need] = '\0';
	for (i = 0; i < need; i++)
		if (buf[i] != '\n' && ((unsigned char)buf[i] < 0x20 ||
				       (unsigned char)buf[i] > 0x7e))
			buf[i] = '?';
	return buf;
}

static void
control_run_suspensions(struct control_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char *buf, *line, *save = NULL;
	unsigned n = 0;

	if ((buf = control_suspensions_text()) == NULL) {
		control_result(s, false, "err out of memory");
		control_finish(s);
		return;
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		evbuffer_add_printf(out, "suspended %s\n", line);
		n++;
	}
	free(buf);
	control_result(s, true, "ok %u", n);
	control_finish(s);
}

/* Delivery loop, from the scheduler (possibly from within sched_admin). */
static void
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

static void
control_run_admin(struct control_session *s)
{
	control_enter(s, CS_RUN);
	/* S may be gone when this returns: CB can run at once. */
	sched_admin(s->cmd->op, s->sel, s->sel == SAS_ALL ? "" : s->arg,
		    control_admin_cb, s);
}

/* suspend and resume */
static void
control_run_suspend(struct control_session *s)
{
	char err[200];

	if (sched_suspend(s->arg, s->seconds * 1000,
			  s->reason[0] != '\0' ? s->reason : NULL, err,
			  sizeof(err)) != 0)
		control_result(s, false, "err %s", err);
	else {
		s->count = 1;
		control_result(s, true, "ok 1");
	}
	control_finish(s);
}

/* AUTH limits -------------------------------------------------------- */

/* Parse "ADDR" or "ADDR/LEN" into K and *PREFIX (-1 without /LEN). */
static int
control_net_parse(const char *text, struct peer_key *k, int *prefix)
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

/*
 * auth-unblock address ADDR[/LEN] | user NAME… | user-hex HEX | all
 * S->sel says which: SAS_DOMAIN (ARG: a network), SAS_USER (ARG: the name,
 * which may hold spaces, or any byte but NUL with user-hex), SAS_ALL.
 */
static int
control_parse_auth_unblock(struct control_session *s, char *args)
{
	char *kw = control_word(&args);
	struct peer_key k;
	size_t n, i;
	int prefix;

	if (kw != NULL && strcmp(kw, "all") == 0 && *args == '\0') {
		s->sel = SAS_ALL;
		return 0;
	}
	if (kw == NULL || *args == '\0')
		goto usage;
	if (strcmp(kw, "address") == 0) {
		if (strchr(args, ' ') != NULL ||
		    control_net_parse(args, &k, &prefix) != 0) {
			control_result(s, false,
				       "err bad address (ADDRESS or "
				       "ADDRESS/LEN)");
			return -1;
		}
		s->sel = SAS_DOMAIN;
		snprintf(s->arg, sizeof(s->arg), "%s", args);
		return 0;
	}
	if (strcmp(kw, "user") == 0 || strcmp(kw, "user-hex") == 0) {
		n = strlen(args);
		if (kw[4] == '-') {
			if (n % 2 != 0 || n / 2 >= sizeof(s->arg) ||
			    sodium_hex2bin((unsigned char *)s->arg,
					   sizeof(s->arg) - 1, args, n, NULL,
					   &i, NULL) != 0 ||
			    i != n / 2 || memchr(s->arg, '\0', i) != NULL) {
				control_result(s, false,
					       "err bad user-hex (hex digits "
					       "of a user name)");
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
control_auth_block_cb(const struct auth_limit_block *b, void *arg)
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
static void
control_run_auth_blocks(struct control_session *s)
{
	unsigned n;

	n = auth_limit_blocks(util_wall_ms(), control_auth_block_cb,
			      bufferevent_get_output(s->bev));
	control_result(s, true, "ok %u", n);
	control_finish(s);
}

static void
control_run_auth_unblock(struct control_session *s)
{
	const struct conf_auth_limit *lim = &C.conf->auth_limit;
	int64_t now = util_wall_ms();
	struct peer_key k;
	unsigned n = 0;
	int prefix;

	if (s->sel == SAS_USER)
		n = auth_limit_unblock_user(s->arg, now);
	else if (s->sel == SAS_DOMAIN) {
		(void)control_net_parse(s->arg, &k, &prefix);
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

/*
 * What the audit log and the delivery log record of S's command: rebuilt
 * from what was parsed (PARSED), never the line as received, so that no
 * address is written in clear: a user (often an address, or a VERP
 * sender) as "hash:" and its keyed hash (evlog_hash, as the delivery log
 * writes addresses); ids, domains and numbers as they are.  A line that
 * did not parse is recorded by its verb alone.
 */
static void
control_record_make(struct control_session *s, bool parsed)
{
	const struct control_cmd *cmd = s->cmd;
	char hex[QUEUE_HASH_HEX_BYTES];
	size_t off = 0;

	control_cat(s->command, sizeof(s->command), &off, "%s", cmd->verb);
	if (!parsed) {
		control_cat(s->command, sizeof(s->command), &off,
			    " (bad "
			    "arguments)");
		return;
	}
	if (cmd->flags & CCF_SEL) {
		switch (s->sel) {
		case SAS_ALL:
			control_cat(s->command, sizeof(s->command), &off,
				    " all");
			break;
		case SAS_ID:
			control_cat(s->command, sizeof(s->command), &off,
				    " id %s", s->arg);
			break;
		case SAS_DOMAIN:
			control_cat(s->command, sizeof(s->command), &off,
				    " domain %s", s->arg);
			break;
		case SAS_USER:
			evlog_hash(s->arg, hex);
			control_cat(s->command, sizeof(s->command), &off,
				    " user hash:%s", hex);
			break;
		}
	} else if (cmd->flags & CCF_DEST) {
		control_cat(s->command, sizeof(s->command), &off, " %s",
			    s->arg);
		if (s->seconds > 0)
			control_cat(s->command, sizeof(s->command), &off,
				    " %" PRIu64, s->seconds);
		if (s->reason[0] != '\0')
			control_cat(s->command, sizeof(s->command), &off, " %s",
				    s->reason);
	} else if (cmd->parse == control_parse_auth_unblock) {
		/* A user name may be an address: hashed like any user. */
		if (s->sel == SAS_USER) {
			evlog_hash(s->arg, hex);
			control_cat(s->command, sizeof(s->command), &off,
				    " user hash:%s", hex);
		} else
			control_cat(s->command, sizeof(s->command), &off,
				    s->sel == SAS_ALL ? " all" : " address %s",
				    s->arg);
	} else if (s->view != NULL && s->view->kind == CVK_SHOW) {
		control_cat(s->command, sizeof(s->command), &off, " %s%s%s",
			    s->arg, s->view->json ? " json" : "",
			    s->view->headers ? " headers" : "");
	}
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
	int64_t now = control_now_ms();
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
	rights = conf_rights_for_uid(C.conf, s->uid);
	parsed = cmd->parse(s, p) == 0;
	control_record_make(s, parsed);
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
	int64_t now = control_now_ms();
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
	rights = conf_rights_for_uid(C.conf, cr.uid);
	if (rights == 0) {
		control_refuse_uid(fd, cr.uid);
		return;
	}
	for (mine = 0, s = C.sessions; s != NULL; s = s->next)
		mine += s->uid == cr.uid && s->bev != NULL;
	/* The last sessions are kept for those who can stop a disaster. */
	if (C.nsessions >= CONTROL_SESSIONS_MAX ||
	    mine >= CONTROL_UID_SESSIONS_MAX ||
	    ((rights & (CONF_RIGHT_WRITE | CONF_RIGHT_DELETE)) == 0 &&
	     C.nsessions >= CONTROL_SESSIONS_MAX - CONTROL_RESERVE_SESSIONS) ||
	    (s = calloc(1, sizeof(*s))) == NULL) {
		/* Non-blocking, best effort: the answer fits any buffer. */
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
		close(fd);
		return;
	}
	s->uid = cr.uid;
	s->pid = cr.pid;
	s->count = -1;
	s->bev = bufferevent_socket_new(evconnlistener_get_base(C.listener), fd,
					BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		free(s);
		return;
	}
	s->next = C.sessions;
	if (C.sessions != NULL)
		C.sessions->prev = s;
	C.sessions = s;
	C.nsessions++;
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
	struct timeval tv = { CONTROL_ACCEPT_PAUSE_MS / 1000,
			      (CONTROL_ACCEPT_PAUSE_MS % 1000) * 1000 };

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

/* mkdir -p of the directory that holds FILE (0700 for what it creates). */
static int
control_parent_make(const char *file, char *err, size_t errlen)
{
	char buf[PATH_MAX], *p;
	bool last;

	if ((size_t)snprintf(buf, sizeof(buf), "%s", file) >= sizeof(buf)) {
		snprintf(err, errlen, "%s: path too long", file);
		return -1;
	}
	if ((p = strrchr(buf, '/')) == NULL || p == buf)
		return 0;
	*p = '\0';
	for (p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		last = *p == '\0';
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: %s", buf, strerror(errno));
			return -1;
		}
		if (last)
			return 0;
		*p = '/';
	}
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
	C.audit_path[0] = '\0';
	if (c->log.audit_file != NULL && c->log.audit_file[0] != '\0') {
		int afd;

		if ((size_t)snprintf(C.audit_path, sizeof(C.audit_path), "%s",
				     c->log.audit_file) >=
		    sizeof(C.audit_path)) {
			snprintf(err, errlen, "audit log %s: path too long",
				 c->log.audit_file);
			return -1;
		}
		if (control_parent_make(C.audit_path, err, errlen) != 0)
			return -1;
		afd =
		    open(C.audit_path,
			 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			 0600);
		if (afd < 0) {
			snprintf(err, errlen, "audit log %s: %s", C.audit_path,
				 strerror(errno));
			return -1;
		}
		close(afd);
	}
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
	C.conf = c;
	C.queue = q;
	C.loop = dloop;
	C.started = true;
	C.stopped = false;
	log_info("control socket %s (mode 0660)%s%s", path,
		 C.audit_path[0] != '\0' ? ", audit log " : ", no audit log",
		 C.audit_path);
	return 0;
}

void
control_stop(void)
{
	struct control_session *s, *next;
	struct stat st;

	if (!C.started || C.stopped)
		return;
	C.stopped = true;
	evconnlistener_free(C.listener);
	C.listener = NULL;
	event_free(C.resume_ev);
	C.resume_ev = NULL;
	/* Only our own socket file: a newer daemon may have replaced it. */
	if (lstat(C.path, &st) == 0 && st.st_dev == C.dev && st.st_ino == C.ino)
		unlink(C.path);
	for (s = C.sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state == CS_VIEW) {
			/* The queue closes after us: wait for the walk, which
			 * stops at its next record.  Its completion (posted)
			 * frees the session. */
			atomic_store(&s->view->cancel, true);
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
