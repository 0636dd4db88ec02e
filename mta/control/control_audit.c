/*
 * control_audit.c — the audit log (control.h, "Audit"): one JSON line per
 * change command, `show … headers` and refusal, O_APPEND and fsync'd, and
 * an EV_ADMIN event in the delivery log for each.
 * Owns: the audit file's path (the file is opened for each record, so
 * logrotate needs no signal; the daemon's own rotation waits for records
 * under way: control_audit_rotated).  Must not: write an address in clear (the
 * command is recorded as parsed: control_audit_command_make).
 * Threads: control_audit_run on the worker pool (getpwuid_r, write, fsync:
 * the loop never waits for the disk); the rest on the delivery loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/observe/evlog.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/logspace.h"
#include "mta/core/util.h"

#define CONTROL_AUDIT_MAX (CONTROL_COMMAND_MAX + 1024) /* one record */

static char control_audit_path[PATH_MAX]; /* "" = no audit log */
/* Records hold it shared from open to close; a rotation takes it alone to
 * know that no record still writes to the renamed file. */
static pthread_rwlock_t control_audit_rotation = PTHREAD_RWLOCK_INITIALIZER;

void
control_audit_rotated(void *arg)
{
	(void)arg;
	pthread_rwlock_wrlock(&control_audit_rotation);
	pthread_rwlock_unlock(&control_audit_rotation);
}

int
control_audit_init(const char *path, char *err, size_t errlen)
{
	int fd;

	control_audit_path[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return 0;
	if ((size_t)snprintf(control_audit_path, sizeof(control_audit_path),
			     "%s", path) >= sizeof(control_audit_path)) {
		control_audit_path[0] = '\0';
		snprintf(err, errlen, "audit log %s: path too long", path);
		return -1;
	}
	if (util_mkdir_parent(control_audit_path) != 0) {
		snprintf(err, errlen, "audit log %s: directory: %s",
			 control_audit_path, strerror(errno));
		return -1;
	}
	fd = open(control_audit_path,
		  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "audit log %s: %s", control_audit_path,
			 strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static void control_audit_cat(char *buf, size_t size, size_t *off,
			      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
control_audit_cat(char *buf, size_t size, size_t *off, const char *fmt, ...)
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
control_audit_user(uid_t uid, char *out, size_t outlen)
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
control_audit_write(struct control_session *s, const char *line, size_t len)
{
	int fd;
	ssize_t w;

	fd = open(control_audit_path,
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

/* control_audit_write between a rotation's rename and its compression. */
static int
control_audit_append(struct control_session *s, const char *line, size_t len)
{
	int rc;

	pthread_rwlock_rdlock(&control_audit_rotation);
	rc = control_audit_write(s, line, len);
	pthread_rwlock_unlock(&control_audit_rotation);
	return rc;
}

/*
 * Worker pool (or the loop, after control_stop): the audit record and the
 * EV_ADMIN event.  Reads only the request and result fields of S, which the
 * loop leaves alone while the session is in CS_AUDIT.
 */
void
control_audit_run(void *arg)
{
	struct control_session *s = arg;
	struct evlog_event ev;
	char user[128], admin[160], line[CONTROL_AUDIT_MAX];
	int64_t now_ms = util_wall_ms();
	size_t off;

	control_audit_user(s->uid, user, sizeof(user));
	off = json_audit_record(line, sizeof(line), now_ms, (unsigned)s->uid,
				(long)s->pid, user, s->command, s->result);
	s->audit_status = 0;
	if (control_audit_path[0] != '\0')
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
void
control_audit_done(void *arg)
{
	struct control_session *s = arg;

	if (s->audit_status != 0) {
		log_warnx("control: audit log %s: %s; not recorded there: "
			  "uid %u: %s: %s",
			  control_audit_path, s->audit_err, (unsigned)s->uid,
			  s->command, s->result);
		/* Contents are only shown when the look is on record. */
		if (s->view != NULL && s->ok && !s->refused)
			control_result(s, false, "err audit log unavailable");
	}
	if (s->view != NULL && s->ok && !s->refused && s->audit_status == 0) {
		control_query_view_start(s);
		return;
	}
	control_answer(s);
}

/*
 * One audit record (and EV_ADMIN event) that stands for many refusals of
 * UID: COMMAND and RESULT say what and how many.  No session is behind it
 * (bev NULL): control_audit_done frees it.
 */
void
control_audit_coalesced(uid_t uid, const char *command, const char *fmt, ...)
{
	struct control_session *s;
	va_list ap;

	if ((s = control_session_new(uid)) == NULL)
		return;
	s->refused = true;
	snprintf(s->command, sizeof(s->command), "%s", command);
	va_start(ap, fmt);
	vsnprintf(s->result, sizeof(s->result), fmt, ap);
	va_end(ap);
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
void
control_audit_command_make(struct control_session *s, bool parsed)
{
	const struct control_cmd *cmd = s->cmd;
	char hex[QUEUE_HASH_HEX_BYTES];
	size_t off = 0;

	control_audit_cat(s->command, sizeof(s->command), &off, "%s",
			  cmd->verb);
	if (!parsed) {
		control_audit_cat(s->command, sizeof(s->command), &off,
				  " (bad "
				  "arguments)");
		return;
	}
	if (s->respect_backoff && (cmd->flags & CCF_SEL))
		control_audit_cat(s->command, sizeof(s->command), &off,
				  " respect-backoff");
	if (cmd->flags & CCF_SEL) {
		switch (s->sel) {
		case SAS_ALL:
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " all");
			break;
		case SAS_ID:
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " id %s", s->arg);
			break;
		case SAS_DOMAIN:
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " domain %s", s->arg);
			break;
		case SAS_USER:
			evlog_hash(s->arg, hex);
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " user hash:%s", hex);
			break;
		}
		if (s->xfer != NULL && s->xfer->remove)
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " remove");
	} else if (cmd->flags & CCF_DEST) {
		control_audit_cat(s->command, sizeof(s->command), &off, " %s",
				  s->arg);
		if (s->respect_backoff)
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " respect-backoff");
		if (s->seconds > 0)
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " %" PRIu64, s->seconds);
		if (s->reason[0] != '\0')
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " %s", s->reason);
	} else if (cmd->parse == control_admin_parse_auth_unblock) {
		/* A user name may be an address: hashed like any user. */
		if (s->sel == SAS_USER) {
			evlog_hash(s->arg, hex);
			control_audit_cat(s->command, sizeof(s->command), &off,
					  " user hash:%s", hex);
		} else
			control_audit_cat(
			    s->command, sizeof(s->command), &off,
			    s->sel == SAS_ALL ? " all" : " address %s", s->arg);
	} else if (cmd->parse == control_suppress_parse) {
		char t[200];

		control_suppress_audit_text(s, t, sizeof(t));
		control_audit_cat(s->command, sizeof(s->command), &off, "%s",
				  t);
	} else if (s->view != NULL && s->view->kind == CVK_SHOW) {
		control_audit_cat(s->command, sizeof(s->command), &off,
				  " %s%s%s", s->arg,
				  s->view->json ? " json" : "",
				  s->view->headers ? " headers" : "");
	}
}
