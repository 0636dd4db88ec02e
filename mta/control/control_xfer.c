/*
 * control_xfer.c — `export` and `import` (protocol: control_proto.h): the
 * archive's descriptor and key handed over by the CLI (SCM_RIGHTS), the
 * archive written or read (queue/archive.h) on a thread of its own, the
 * scheduler asked to claim, release or remove (export) or add (import).
 * Owns: the one transfer running at a time, its thread, the
 * descriptor and key it was given.  Must not: remove a message before
 * the archive is fsynced, add anything from an archive that did not
 * verify whole, or keep the key past the session (wiped).
 * Threads: parse/run and the stage ends on the delivery loop; the handoff
 * and the archive on the transfer's thread (never a loop).
 */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#include <sys/socket.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>

#include "conf/conf.h"
#include "queue/archive.h"
#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"

#define CONTROL_XFER_IDS_MAX 256 /* ids named in one export */
#define CONTROL_XFER_KEEP_MIN_MS                                               \
	(24 * 3600 * 1000LL) /* an import remembered at least a day */

static bool control_xfer_running; /* one transfer at a time */

static void control_xfer_claim(void *arg);
static void control_xfer_written(void *arg);
static void control_xfer_imported(void *arg);

static int
control_xfer_id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ID onto x->ids; 0, or -1 out of memory. */
static int
control_xfer_id_add(struct control_xfer *x, uint64_t id)
{
	uint64_t *n;

	if (x->nids == x->capids) {
		size_t cap = x->capids ? x->capids * 2 : 256;

		if ((n = realloc(x->ids, cap * sizeof(*n))) == NULL)
			return -1;
		x->ids = n;
		x->capids = cap;
	}
	x->ids[x->nids++] = id;
	return 0;
}

/* The first error is the answer ("err …"). */
static void
control_xfer_fail(struct control_xfer *x, const char *fmt, ...)
{
	va_list ap;

	if (x->failed)
		return;
	x->failed = true;
	va_start(ap, fmt);
	vsnprintf(x->err, sizeof(x->err), fmt, ap);
	va_end(ap);
}

void
control_xfer_free(struct control_xfer *x)
{
	if (x == NULL)
		return;
	if (x->fd >= 0)
		close(x->fd);
	sodium_memzero(x->key, sizeof(x->key));
	free(x->ids);
	free(x->items);
	free(x);
}

/*
 * export (all | domain DOMAIN | user USER | id HEX16 [HEX16…]) [remove]
 * import
 */
int
control_xfer_parse(struct control_session *s, char *args)
{
	struct control_xfer *x;
	uint64_t id;
	char *w;

	if ((x = calloc(1, sizeof(*x))) == NULL) {
		control_result(s, false, "err out of memory");
		return -1;
	}
	s->xfer = x;
	x->fd = -1;
	atomic_init(&x->cancel, false);
	x->import = strcmp(s->cmd->verb, "import") == 0;
	if (x->import) {
		if (*args == '\0')
			return 0;
		control_result(s, false, "err usage: import");
		return -1;
	}
	w = control_word(&args);
	if (w != NULL && strcmp(w, "all") == 0)
		s->sel = SAS_ALL;
	else if (w != NULL && strcmp(w, "domain") == 0 &&
		 (w = control_word(&args)) != NULL &&
		 control_domain_ok(w, s->arg, sizeof(s->arg)))
		s->sel = SAS_DOMAIN;
	else if (w != NULL && strcmp(w, "user") == 0 &&
		 (w = control_word(&args)) != NULL &&
		 strlen(w) < sizeof(s->arg)) {
		s->sel = SAS_USER;
		memcpy(s->arg, w, strlen(w) + 1);
	} else if (w != NULL && strcmp(w, "id") == 0) {
		s->sel = SAS_ID;
		while (*args != '\0' && strncmp(args, "remove", 6) != 0) {
			w = control_word(&args);
			if (x->nids == CONTROL_XFER_IDS_MAX ||
			    strlen(w) != QUEUE_ID_HEX_BYTES - 1 ||
			    queue_id_parse(w, &id) != 0)
				goto usage;
			if (control_xfer_id_add(x, id) != 0) {
				control_result(s, false, "err out of memory");
				return -1;
			}
		}
		if (x->nids == 0)
			goto usage;
		queue_id_format(x->ids[0], s->arg);
		s->id = x->ids[0];
	} else
		goto usage;
	if ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "remove") != 0 || *args != '\0')
			goto usage;
		x->remove = true;
	}
	return 0;
usage:
	control_result(s, false,
		       "err usage: export all | domain DOMAIN | user USER | "
		       "id HEX16 [HEX16…] [remove]");
	return -1;
}

/* Transfer thread: the data line CONTROL_XFER_PROMPT, then the CLI's
 * CONTROL_XFER_BYTES with the archive's descriptor. */
static int
control_xfer_handoff(struct control_session *s, struct control_xfer *x)
{
	static const char prompt[] = CONTROL_XFER_PROMPT "\n";
	uint8_t buf[CONTROL_XFER_BYTES];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct pollfd p = { .fd = s->view_fd, .events = POLLIN };
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *c;
	size_t got = 0;
	ssize_t n;

	if (send(s->view_fd, prompt, sizeof(prompt) - 1, MSG_NOSIGNAL) !=
	    (ssize_t)sizeof(prompt) - 1) {
		control_xfer_fail(x, "client gone");
		return -1;
	}
	while (got < sizeof(buf)) {
		if (poll(&p, 1, CONTROL_TIMEOUT_MS) <= 0 ||
		    atomic_load(&x->cancel)) {
			control_xfer_fail(x, "no archive handed over in time");
			return -1;
		}
		memset(&msg, 0, sizeof(msg));
		iov.iov_base = buf + got;
		iov.iov_len = sizeof(buf) - got;
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cm.b;
		msg.msg_controllen = sizeof(cm.b);
		n = recvmsg(s->view_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			control_xfer_fail(x, "client gone");
			return -1;
		}
		for (c = CMSG_FIRSTHDR(&msg); c != NULL;
		     c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int))) {
				if (x->fd >= 0)
					close(x->fd);
				memcpy(&x->fd, CMSG_DATA(c), sizeof(int));
			}
		got += (size_t)n;
	}
	x->params.kdf = (enum archive_kdf)buf[0];
	x->params.opslimit = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 |
			     (uint32_t)buf[3] << 8 | buf[4];
	x->params.memlimit = 0;
	for (got = 5; got < 13; got++)
		x->params.memlimit = x->params.memlimit << 8 | buf[got];
	memcpy(x->params.salt, buf + 13, ARCHIVE_SALT_BYTES);
	memcpy(x->key, buf + 13 + ARCHIVE_SALT_BYTES, QUEUE_KEY_BYTES);
	sodium_memzero(buf, sizeof(buf));
	if (x->fd < 0) {
		control_xfer_fail(x, "no archive descriptor handed over");
		return -1;
	}
	return 0;
}

/* Is the descriptor what the command needs: a regular file, empty and
 * writable (export) or readable (import)? */
static int
control_xfer_fd_check(struct control_xfer *x)
{
	struct stat st;
	int fl = fcntl(x->fd, F_GETFL);

	if (fstat(x->fd, &st) != 0 || !S_ISREG(st.st_mode) || fl < 0) {
		control_xfer_fail(x, "the archive is not a regular file");
		return -1;
	}
	if (!x->import && ((fl & O_ACCMODE) == O_RDONLY || st.st_size != 0)) {
		control_xfer_fail(x, "the archive must be a new, empty file "
				     "open for writing");
		return -1;
	}
	if (x->import && (fl & O_ACCMODE) == O_WRONLY) {
		control_xfer_fail(x, "the archive is not open for reading");
		return -1;
	}
	return 0;
}

/* Does ENV match a domain or user selector? */
static int
control_xfer_select_cb(const struct queue_envelope *env, void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;
	char dom[CV_DOMAIN_MAX + 1];
	bool match = false;
	uint32_t i;

	if (atomic_load(&x->cancel))
		return 1;
	if (s->sel == SAS_USER)
		match = env->user != NULL && strcmp(env->user, s->arg) == 0;
	for (i = 0; s->sel == SAS_DOMAIN && !match && i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		cv_domain_of(env->rcpts[i].addr, dom, sizeof(dom));
		match = strcmp(dom, s->arg) == 0;
	}
	if (!match)
		return 0;
	return control_xfer_id_add(x, env->id) == 0 ? 0 : -2;
}

/* Transfer thread, export: the handoff, then the messages a domain or
 * user selects (a walk of the envelopes: never on the loop). */
static void *
control_xfer_export_thread(void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;
	uint64_t skipped = 0;
	char err[160];
	int rc;

	if (control_xfer_handoff(s, x) == 0 && control_xfer_fd_check(x) == 0 &&
	    (s->sel == SAS_DOMAIN || s->sel == SAS_USER)) {
		rc = queue_walk_skip(control_server.queue,
				     control_xfer_select_cb, s, &skipped, err,
				     sizeof(err));
		if (rc == -1)
			control_xfer_fail(x, "queue walk: %s", err);
		else if (rc != 0)
			control_xfer_fail(
			    x, "%s", rc == -2 ? "out of memory" : "stopping");
	}
	loop_post(control_server.loop, control_xfer_claim, s);
	return NULL;
}

struct control_xfer_body {
	struct archive_writer *w;
	char *err;
	size_t errlen;
};

static int
control_xfer_body_cb(const uint8_t *data, size_t len, void *arg)
{
	struct control_xfer_body *b = arg;

	return archive_writer_body(b->w, data, len, b->err, b->errlen) != 0;
}

/* One claimed message into the archive: 1 written, 0 passed over (gone,
 * damaged), -1 the archive failed. */
static int
control_xfer_write_one(struct control_xfer *x, struct archive_writer *w,
		       const struct sched_export_item *it)
{
	struct control_xfer_body b = { w, x->err, sizeof(x->err) };
	struct queue_envelope env;
	char err[160];
	int rc;

	rc = queue_envelope_get(control_server.queue, it->id, &env, err,
				sizeof(err));
	if (rc == 1 || rc == QUEUE_CORRUPT)
		return 0;
	if (rc != 0) {
		control_xfer_fail(x, "queue: %s", err);
		return -1;
	}
	/* Where it stands is the schedule's (struct sched_export_item). */
	env.flags =
	    it->held ? env.flags | QUEUE_F_HELD : env.flags & ~QUEUE_F_HELD;
	env.next_attempt_ms = it->due_ms;
	rc = archive_writer_message(w, &env, x->err, sizeof(x->err));
	queue_envelope_clear(&env);
	if (rc != 0) {
		x->failed = true;
		return -1;
	}
	rc = queue_body_read(control_server.queue, it->id, control_xfer_body_cb,
			     &b, err, sizeof(err));
	if (rc != 0) {
		/* An envelope without its body: the archive is unusable. */
		if (!x->failed)
			control_xfer_fail(x, "queue body: %s",
					  rc == 1 ? "gone" : err);
		x->failed = true;
		return -1;
	}
	return 1;
}

/* Transfer thread, export: the archive, fsynced.  Items written move to
 * the front of x->items (x->nwritten). */
static void *
control_xfer_write_thread(void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;
	struct archive_manifest m;
	struct archive_writer *w = NULL;
	struct sched_export_item t;
	size_t k;
	int rc;

	memset(&m, 0, sizeof(m));
	m.messages = x->nitems;
	m.time_ms = util_wall_ms();
	snprintf(m.source, sizeof(m.source), "%s",
		 control_server.conf->hostname);
	if (archive_writer_open(&w, x->fd, x->key, &x->params, &m, x->err,
				sizeof(x->err)) != 0) {
		x->failed = true;
		goto done;
	}
	sodium_bin2hex(x->archive_hex, sizeof(x->archive_hex), m.id,
		       ARCHIVE_ID_BYTES);
	for (k = 0; k < x->nitems; k++) {
		if (atomic_load(&x->cancel)) {
			control_xfer_fail(x, "outpostd stopping");
			goto done;
		}
		if ((rc = control_xfer_write_one(x, w, &x->items[k])) < 0)
			goto done;
		if (rc == 0) {
			x->unreadable++;
			continue;
		}
		t = x->items[x->nwritten];
		x->items[x->nwritten++] = x->items[k];
		x->items[k] = t;
	}
	if (archive_writer_end(w, x->err, sizeof(x->err)) != 0)
		x->failed = true;
done:
	archive_writer_free(w);
	loop_post(control_server.loop, control_xfer_written, s);
	return NULL;
}

/* Import's thread, pass one: the whole archive authenticates, to its end
 * record, and names each id once.  0, or -1 (x->err). */
static int
control_xfer_verify(struct control_xfer *x, int64_t *until_ms)
{
	struct archive_manifest m;
	struct archive_reader *r = NULL;
	struct queue_envelope env;
	uint8_t *body;
	size_t len, k;
	int rc;

	if (archive_reader_open(&r, x->fd, x->key, &m, x->err,
				sizeof(x->err)) != 0)
		goto fail;
	sodium_bin2hex(x->archive_hex, sizeof(x->archive_hex), m.id,
		       ARCHIVE_ID_BYTES);
	memcpy(x->archive_id, m.id, ARCHIVE_ID_BYTES);
	*until_ms = util_wall_ms() + CONTROL_XFER_KEEP_MIN_MS;
	while ((rc = archive_reader_next(r, &env, &body, &len, x->err,
					 sizeof(x->err))) == 1) {
		if (control_xfer_id_add(x, env.id) != 0) {
			rc = -1;
			snprintf(x->err, sizeof(x->err), "out of memory");
		}
		if (env.created_ms + x->max_age_ms > *until_ms)
			*until_ms = env.created_ms + x->max_age_ms;
		queue_envelope_clear(&env);
		free(body);
		if (rc != 1 || atomic_load(&x->cancel))
			break;
	}
	if (rc != 0)
		goto fail;
	qsort(x->ids, x->nids, sizeof(*x->ids), control_xfer_id_cmp);
	for (k = 1; k < x->nids; k++)
		if (x->ids[k] == x->ids[k - 1]) {
			snprintf(x->err, sizeof(x->err),
				 "archive damaged (a message twice)");
			goto fail;
		}
	archive_reader_free(r);
	return 0;
fail:
	x->failed = true;
	if (x->err[0] == '\0')
		snprintf(x->err, sizeof(x->err), "outpostd stopping");
	archive_reader_free(r);
	return -1;
}

/* Import's thread, pass two: every message to the scheduler's import. */
static void
control_xfer_add(struct control_xfer *x)
{
	struct archive_manifest m;
	struct archive_reader *r = NULL;
	struct sched_import *im;
	struct queue_envelope env;
	uint8_t *body;
	size_t len;
	int rc = 0;

	if ((im = sched_import_new()) == NULL) {
		control_xfer_fail(x, "out of memory");
		return;
	}
	if (archive_reader_open(&r, x->fd, x->key, &m, x->err,
				sizeof(x->err)) != 0)
		x->failed = true;
	while (!x->failed &&
	       (rc = archive_reader_next(r, &env, &body, &len, x->err,
					 sizeof(x->err))) == 1) {
		if (sched_import_add(im, &env, body, len) < 0)
			x->nfailed++;
		/* Not remembered: a second import adds the rest. */
		if (atomic_load(&x->cancel))
			control_xfer_fail(x,
					  "outpostd stopping during the "
					  "import: import the archive again");
	}
	if (!x->failed && rc < 0)
		x->failed = true; /* changed since pass one */
	archive_reader_free(r);
	sched_import_end(im, &x->nadded, &x->nskipped, &x->nwritefail);
	x->nfailed += x->nwritefail;
}

/* Transfer thread, import: handoff, both passes, and the archive's id
 * remembered once every message is in. */
static void *
control_xfer_import_thread(void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;
	int64_t until_ms = 0, when_ms = 0;
	char err[160];
	int rc;

	if (control_xfer_handoff(s, x) != 0 || control_xfer_fd_check(x) != 0 ||
	    control_xfer_verify(x, &until_ms) != 0)
		goto done;
	if ((rc = sched_import_seen(x->archive_id, &when_ms, err,
				    sizeof(err))) != 0) {
		if (rc < 0)
			control_xfer_fail(x, "queue state: %s", err);
		else
			control_xfer_fail(x,
					  "archive %s was imported here "
					  "already (at %" PRId64
					  " ms): nothing added",
					  x->archive_hex, when_ms);
		goto done;
	}
	control_xfer_add(x);
	/* Remembered only when whole: a failed write can be imported again
	 * (what is queued already is skipped). */
	if (!x->failed && x->nfailed == 0 &&
	    sched_import_remember(x->archive_id, until_ms) != 0)
		log_warnx("import of archive %s: out of memory remembering "
			  "it",
			  x->archive_hex);
done:
	loop_post(control_server.loop, control_xfer_imported, s);
	return NULL;
}

/* Delivery loop: the stage's thread ended. */
static void
control_xfer_join(struct control_session *s)
{
	if (!s->joined)
		pthread_join(s->thread, NULL);
	s->joined = true;
}

static int
control_xfer_start(struct control_session *s, void *(*fn)(void *))
{
	s->joined = false;
	if (pthread_create(&s->thread, NULL, fn, s) != 0) {
		s->joined = true;
		return -1;
	}
	return 0;
}

/* The end of a transfer: answer (recorded) or, stopping, just free. */
static void
control_xfer_end(struct control_session *s, bool ok)
{
	struct control_xfer *x = s->xfer;

	control_xfer_running = false;
	if (control_server.stopped) {
		control_session_free(s);
		return;
	}
	control_enter(s, CS_RUN);
	if (!ok)
		control_result(s, false, "err %s", x->err);
	control_finish(s);
}

void
control_xfer_run(struct control_session *s)
{
	struct control_xfer *x = s->xfer;

	if (s->bev == NULL || control_server.stopped) {
		control_result(s, false, "err outpostd stopping");
		control_finish(s);
		return;
	}
	if (control_xfer_running) {
		control_result(s, false,
			       "err busy: an export or import is running");
		control_finish(s);
		return;
	}
	/* Read here: the configuration in force is the loop's to read. */
	x->max_age_ms = (int64_t)control_reload_conf()->delivery.max_age_ms;
	control_enter(s, CS_VIEW);
	s->view_fd = bufferevent_getfd(s->bev);
	if (control_xfer_start(s, x->import
				      ? control_xfer_import_thread
				      : control_xfer_export_thread) != 0) {
		control_enter(s, CS_RUN);
		control_result(s, false, "err cannot start a thread");
		control_finish(s);
		return;
	}
	control_xfer_running = true;
}

static sched_export_claim_fn control_xfer_claimed;

/* Delivery loop: the selection is known; claim it, then write. */
static void
control_xfer_claim(void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;

	control_xfer_join(s);
	if (control_server.stopped || x->failed) {
		control_xfer_end(s, false);
		return;
	}
	sched_export_claim(x->ids, x->nids, s->sel == SAS_ALL, x->remove,
			   control_xfer_claimed, s);
}

/* Delivery loop: the scheduler's shards have claimed (or copied) what
 * they own of the selection. */
static void
control_xfer_claimed(int rc, struct sched_export_item *items, size_t n,
		     unsigned skipped, void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;

	if (rc != 0) {
		control_xfer_fail(x, "out of memory");
		control_xfer_end(s, false);
		return;
	}
	x->items = items;
	x->nitems = n;
	x->nbusy = skipped;
	if (x->nitems == 0) {
		control_xfer_fail(x,
				  "no message to export (%u selected but "
				  "skipped: in a delivery attempt, damaged or "
				  "gone)",
				  x->nbusy);
		control_xfer_end(s, false);
		return;
	}
	if (control_xfer_start(s, control_xfer_write_thread) != 0) {
		if (x->remove)
			sched_export_release(x->items, x->nitems);
		control_xfer_fail(x, "cannot start a thread");
		control_xfer_end(s, false);
	}
}

/* Delivery loop: the removal of the exported messages is committed. */
static void
control_xfer_removed(unsigned count, const char *err, void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;

	if (err != NULL)
		log_warnx("export %s: removing the exported messages: %s",
			  x->archive_hex, err);
	if (s->bev != NULL)
		evbuffer_add_printf(bufferevent_get_output(s->bev),
				    "removed %u\n", count);
	control_xfer_end(s, true);
}

static void
control_xfer_written(void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;

	control_xfer_join(s);
	/* A whole archive is acted on even when outpostd is stopping (the
	 * removal is committed before it stops): the archive on disk and
	 * the queue never both hold a message. */
	if (x->failed) {
		if (x->remove)
			sched_export_release(x->items, x->nitems);
		control_xfer_end(s, false);
		return;
	}
	if (x->remove) /* those not written stay here */
		sched_export_release(x->items + x->nwritten,
				     x->nitems - x->nwritten);
	control_result(s, true, "ok %zu", x->nwritten);
	if (s->bev != NULL)
		evbuffer_add_printf(bufferevent_get_output(s->bev),
				    "archive %s\nexported %zu\nskipped %" PRIu64
				    "\n",
				    x->archive_hex, x->nwritten,
				    (uint64_t)x->nbusy + x->unreadable);
	log_info("export: archive %s: %zu message(s)%s", x->archive_hex,
		 x->nwritten, x->remove ? ", removed from this queue" : "");
	if (!x->remove) {
		control_xfer_end(s, true);
		return;
	}
	control_enter(s, CS_RUN);
	sched_export_remove(x->items, x->nwritten, control_xfer_removed, s);
}

static void
control_xfer_imported(void *arg)
{
	struct control_session *s = arg;
	struct control_xfer *x = s->xfer;

	control_xfer_join(s);
	if (!x->failed && x->nfailed > 0)
		control_xfer_fail(x,
				  "%" PRIu64 " message(s) of archive %s not "
				  "written (see outpostd's log), %" PRIu64
				  " added: import it again to add the rest",
				  x->nfailed, x->archive_hex, x->nadded);
	if (x->failed || control_server.stopped) {
		control_xfer_end(s, false);
		return;
	}
	control_result(s, true, "ok %" PRIu64, x->nadded);
	if (s->bev != NULL)
		evbuffer_add_printf(bufferevent_get_output(s->bev),
				    "archive %s\nimported %" PRIu64
				    "\nskipped %" PRIu64 "\n",
				    x->archive_hex, x->nadded, x->nskipped);
	log_info("import: archive %s: %" PRIu64 " message(s) added, %" PRIu64
		 " already queued",
		 x->archive_hex, x->nadded, x->nskipped);
	control_xfer_end(s, true);
}
