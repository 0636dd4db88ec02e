/*
 * cli_restore.c — `outpost restore list | verify POINT | POINT`: the
 * restore points in restore.dir (queue/point.c writes them), and putting
 * one back as the queue while outpostd is stopped.
 * Owns: the restore itself: the check that no process has the queue open,
 * the staging copy, the log replay's reading of the delivery log (the
 * queue change is queue_replay_*), the swap and the audit record.
 * Must not: run while outpostd has the queue open; delete or change the
 * queue it replaces (it is moved aside whole); print an address.  These
 * are the only commands that read the queue key: they run offline, as
 * root or the daemon's user.  One thread.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "queue/queue.h"
#include "mta/core/json.h"
#include "mta/core/priv.h"
#include "mta/core/util.h"
#include "mta/cli/cli_int.h"

#define CLI_RESTORE_COPY_BYTES (1u << 20)
/*
 * Log replay reads from this long before the point's time: a delivery
 * logged just before the copy began may have been committed after its
 * snapshot.  Any settled line is true whenever it was written, so reading
 * earlier costs only time.
 */
#define CLI_RESTORE_REPLAY_MARGIN_MS (15 * 60 * 1000)
#define CLI_RESTORE_ASIDE_MAX        100 /* .before-restore-NAME[.N] */
#define CLI_RESTORE_AUDIT_MAX        2048
/* Room for a reason naming a path, one naming two, and a result. */
#define CLI_RESTORE_WHY_BYTES    (PATH_MAX + 512)
#define CLI_RESTORE_ERR_BYTES    (2 * PATH_MAX + 1024)
#define CLI_RESTORE_RESULT_BYTES (3 * PATH_MAX)

/* A point named on the command line: NAME, point-NAME or point-NAME.mdb
 * (or .json), never a path.  0, or -1 (said). */
static int
cli_restore_name(const char *arg, char name[32])
{
	const char *s = arg, *end;
	size_t n;

	if (strncmp(s, "point-", 6) == 0)
		s += 6;
	n = strlen(s);
	end = s + n;
	if (n > 4 && (strcmp(end - 4, ".mdb") == 0))
		n -= 4;
	else if (n > 5 && strcmp(end - 5, ".json") == 0)
		n -= 5;
	if (n == 0 || n >= 32 ||
	    strspn(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "abcdefghijklmnopqrstuvwxyz_-") < n) {
		cli_errx("restore: \"%s\" is not a point's name (see `outpost "
			 "restore list`)",
			 arg);
		return -1;
	}
	memcpy(name, s, n);
	name[n] = '\0';
	return 0;
}

/* The queue key (offline commands only).  0, or -1 (said). */
static int
cli_restore_key(const struct cli *c, uint8_t key[QUEUE_KEY_BYTES])
{
	char err[CLI_RESTORE_ERR_BYTES];

	if (queue_keyfile_load(c->conf->queue.key_file, false, key, err,
			       sizeof(err)) != 0) {
		cli_errx("restore: queue key: %s", err);
		return -1;
	}
	return 0;
}

/* list ---------------------------------------------------------------- */

static void
cli_restore_json(const struct queue_point_info *p)
{
	char when[40];

	json_time_fmt(p->time_ms, true, when, sizeof(when));
	fputs("{\"name\":", stdout);
	json_put(stdout, p->name);
	printf(",\"time\":\"%s\",\"time_ms\":%" PRId64 ",\"size\":%" PRIu64
	       ",\"messages\":%" PRIu64 ",\"recipients\":%" PRIu64
	       ",\"key_id\":\"%08" PRIx32 "\",\"checksum\":",
	       when, p->time_ms, p->size, p->messages, p->recipients,
	       p->key_id);
	json_put(stdout, p->checksum);
	printf(",\"verified\":%s,\"duration_ms\":%" PRId64 "}\n",
	       p->verified ? "true" : "false", p->duration_ms);
}

int
cli_restore_list(struct cli *c)
{
	struct queue_point_info *pts = NULL;
	char err[CLI_RESTORE_ERR_BYTES], when[40];
	size_t i, n = 0;

	if (queue_point_list(c->conf->restore.dir, &pts, &n, err,
			     sizeof(err)) != 0) {
		cli_errx("restore list: %s", err);
		return CLI_ERR;
	}
	if (!c->json)
		printf("%-18s %-19s %12s %9s %10s %s\n", "POINT", "TIME (UTC)",
		       "SIZE", "MESSAGES", "RECIPIENTS", "VERIFIED");
	for (i = 0; i < n; i++) {
		if (c->json) {
			cli_restore_json(&pts[i]);
			continue;
		}
		json_time_fmt(pts[i].time_ms, false, when, sizeof(when));
		printf("%-18s %-19s %12" PRIu64 " %9" PRIu64 " %10" PRIu64
		       " %s\n",
		       pts[i].name, when, pts[i].size, pts[i].messages,
		       pts[i].recipients, pts[i].verified ? "yes" : "no");
	}
	free(pts);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* verify -------------------------------------------------------------- */

/* Verify point NAME into *INFO.  0; 1 without the queue key (said on
 * stderr); -1 the point does not verify (why in ERR). */
static int
cli_restore_check(const struct cli *c, const char *name,
		  struct queue_point_info *info, char *err, size_t errlen)
{
	uint8_t key[QUEUE_KEY_BYTES];
	int rc;

	if (cli_restore_key(c, key) != 0) {
		snprintf(err, errlen, "no queue key");
		return 1;
	}
	rc = queue_point_verify(c->conf->restore.dir, name, key, info, err,
				errlen);
	sodium_memzero(key, sizeof(key));
	return rc;
}

int
cli_restore_verify(struct cli *c)
{
	struct queue_point_info info;
	char name[32], err[CLI_RESTORE_ERR_BYTES], when[40];
	int rc;

	if (cli_restore_name(c->argv[0], name) != 0)
		return CLI_USAGE;
	if ((rc = cli_restore_check(c, name, &info, err, sizeof(err))) != 0) {
		if (rc < 0)
			cli_errx("restore verify: point %s does not verify: "
				 "%s",
				 name, err);
		return CLI_ERR;
	}
	json_time_fmt(info.time_ms, false, when, sizeof(when));
	printf("point %s (%s UTC) verified: %" PRIu64 " bytes, %" PRIu64
	       " messages, %" PRIu64 " pending recipients, key %08" PRIx32
	       ", %s\n",
	       info.name, when, info.size, info.messages, info.recipients,
	       info.key_id, info.checksum);
	return fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
}

/* restore POINT ------------------------------------------------------- */

/*
 * Is the queue at QPATH open in a process?  LMDB holds a shared fcntl
 * lock on the first byte of lock.mdb in every process that has the
 * environment open (mdb_env_excl_lock), and the kernel drops it when the
 * process ends, even by kill -9: unlike a pid file or the reader table
 * (our readers leave no slot behind: MDB_NOTLS), it cannot be stale, and
 * unlike the control socket it needs no configured socket.  The exclusive
 * lock taken here is held (*FD) until the swap is done, so an outpostd
 * started meanwhile waits in mdb_env_open.  0 (*FD -1 when there is no
 * lock file: no process ever opened it), or -1 with ERR.
 */
static int
cli_restore_lock(const char *qpath, int *fd, char *err, size_t errlen)
{
	struct flock fl;
	char path[PATH_MAX];

	*fd = -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/lock.mdb", qpath) >=
	    sizeof(path)) {
		snprintf(err, errlen, "%s: path too long", qpath);
		return -1;
	}
	if ((*fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_len = 1;
	if (fcntl(*fd, F_SETLK, &fl) == 0)
		return 0;
	if (errno == EACCES || errno == EAGAIN) {
		fl.l_type = F_WRLCK;
		if (fcntl(*fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			snprintf(err, errlen,
				 "refused: the queue %s is open in process "
				 "%ld (outpostd?): stop it first",
				 qpath, (long)fl.l_pid);
		else
			snprintf(err, errlen,
				 "refused: the queue %s is open in another "
				 "process: stop outpostd first",
				 qpath);
	} else
		snprintf(err, errlen, "%s: lock: %s", path, strerror(errno));
	close(*fd);
	*fd = -1;
	return -1;
}

/* PATH's directory to disk (a rename or a new name in it). */
static int
cli_restore_dir_sync(const char *path)
{
	char dir[PATH_MAX], *slash;
	int fd, rc;

	if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir))
		return -1;
	if ((slash = strrchr(dir, '/')) == NULL)
		return 0;
	*(slash == dir ? slash + 1 : slash) = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/*
 * Copy FROM to TO (a new file, 0600), to disk, checking its BLAKE2b-256
 * against CHECKSUM ("blake2b-256:HEX", the manifest's): the copy is what
 * was verified, even if the point changed since.  0, or -1 with ERR.
 */
static int
cli_restore_copy(const char *from, const char *to, const char *checksum,
		 char *err, size_t errlen)
{
	crypto_generichash_state st;
	uint8_t sum[32];
	char hex[sizeof(sum) * 2 + 1], want[80];
	uint8_t *buf = NULL;
	ssize_t r, w, off;
	int in, out = -1;

	if ((in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, errlen, "%s: %s", from, strerror(errno));
		return -1;
	}
	if ((buf = malloc(CLI_RESTORE_COPY_BYTES)) == NULL)
		goto fail_errno;
	if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) <
	    0) {
		from = to;
		goto fail_errno;
	}
	crypto_generichash_init(&st, NULL, 0, sizeof(sum));
	for (;;) {
		if ((r = read(in, buf, CLI_RESTORE_COPY_BYTES)) < 0 &&
		    errno == EINTR)
			continue;
		if (r < 0)
			goto fail_errno;
		if (r == 0)
			break;
		crypto_generichash_update(&st, buf, (size_t)r);
		for (off = 0; off < r; off += w)
			if ((w = write(out, buf + off, (size_t)(r - off))) <
			    0) {
				from = to;
				goto fail_errno;
			}
	}
	if (fsync(out) != 0 || close(out) != 0) {
		out = -1;
		from = to;
		goto fail_errno;
	}
	out = -1;
	crypto_generichash_final(&st, sum, sizeof(sum));
	sodium_bin2hex(hex, sizeof(hex), sum, sizeof(sum));
	snprintf(want, sizeof(want), "blake2b-256:%s", hex);
	if (strcmp(want, checksum) != 0) {
		snprintf(err, errlen,
			 "%s changed after it was verified (its checksum is "
			 "not the manifest's)",
			 from);
		goto fail;
	}
	free(buf);
	close(in);
	return 0;
fail_errno:
	snprintf(err, errlen, "%s: %s", from, strerror(errno));
fail:
	if (out >= 0)
		close(out);
	free(buf);
	close(in);
	return -1;
}

/* Remove the staging directory DIR and what a restore puts in it (a copy
 * of a point and LMDB's lock file; nothing else is touched). */
static void
cli_restore_unstage(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	(void)unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	(void)unlink(path);
	(void)rmdir(dir);
}

/* The log replay: the delivery log's lines that settle a recipient. */
struct cli_restore_replay {
	struct queue_replay *r;
	int64_t since_ms;
	uint64_t lines, settled;
	int status; /* -1: out of memory */
};

static int
cli_restore_line(const char *line, size_t len, void *arg)
{
	static const struct {
		const char *name;
		enum queue_rcpt_state state;
	} events[] = { { "delivery", QR_DELIVERED },
		       { "bounce", QR_BOUNCED },
		       { "expiration", QR_EXPIRED } };
	struct cli_restore_replay *rp = arg;
	const char *end = line + len;
	char event[32], when[40], id[QUEUE_ID_HEX_BYTES],
	    hash[QUEUE_HASH_HEX_BYTES];
	int64_t ms;
	uint64_t qid;
	size_t i;
	int rc;

	rp->lines++;
	if (cli_log_js_get(line, end, "event", event, sizeof(event)) != 1)
		return 0;
	for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		if (strcmp(event, events[i].name) == 0)
			break;
	if (i == sizeof(events) / sizeof(events[0]) ||
	    cli_log_js_get(line, end, "time", when, sizeof(when)) != 1 ||
	    cli_log_time_parse(when, &ms) != 0 || ms < rp->since_ms ||
	    cli_log_js_get(line, end, "id", id, sizeof(id)) != 1 ||
	    queue_id_parse(id, &qid) != 0 ||
	    cli_log_js_get(line, end, "rcpt_hash", hash, sizeof(hash)) != 1)
		return 0;
	rp->settled++;
	if ((rc = queue_replay_note(rp->r, qid, hash, events[i].state)) < 0) {
		rp->status = -1;
		return -1;
	}
	return 0;
}

/*
 * Mark done, in the queue staged at DIR, the recipients the delivery log
 * settled from SINCE_MS on.  *RES: what was done; *LINES: log lines read,
 * *SETTLED: those settling a recipient.  0, or -1 with ERR.
 */
static int
cli_restore_replay(struct cli *c, const char *dir, int64_t since_ms,
		   struct queue_replay_result *res, uint64_t *lines,
		   uint64_t *settled, char *err, size_t errlen)
{
	struct cli_restore_replay rp;
	struct queue_config qc;
	char why[CLI_RESTORE_WHY_BYTES];
	int rc = -1;

	memset(&rp, 0, sizeof(rp));
	memset(res, 0, sizeof(*res));
	*lines = *settled = 0;
	if (cli_hash_key_load(c) != 0) {
		snprintf(err, errlen,
			 "no log-hash key (--no-log-replay "
			 "restores without the replay)");
		return -1;
	}
	memset(&qc, 0, sizeof(qc));
	qc.path = dir;
	qc.key_file = c->conf->queue.key_file;
	qc.map_size = c->conf->queue.map_size;
	if (queue_replay_open(&rp.r, &qc, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "the restored queue: %s", why);
		return -1;
	}
	rp.since_ms = since_ms;
	if (cli_log_each(c->conf->log.delivery_file, since_ms, cli_restore_line,
			 &rp, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "log replay: %s",
			 rp.status < 0 ? "out of memory" : why);
		goto done;
	}
	if (queue_replay_apply(rp.r, c->hash_key, res, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "log replay: %s", why);
		goto done;
	}
	*lines = rp.lines;
	*settled = rp.settled;
	rc = 0;
done:
	queue_replay_close(rp.r);
	return rc;
}

/* Where the queue goes aside: <queue.path>.before-restore-NAME, with .N
 * after it when that is taken (a second restore of the same point). */
static int
cli_restore_aside(const char *qpath, const char *name, char *out, size_t outlen)
{
	struct stat st;
	int i, n;

	for (i = 0; i < CLI_RESTORE_ASIDE_MAX; i++) {
		n = i == 0 ? snprintf(out, outlen, "%s.before-restore-%s",
				      qpath, name)
			   : snprintf(out, outlen, "%s.before-restore-%s.%d",
				      qpath, name, i);
		if (n < 0 || (size_t)n >= outlen)
			return -1;
		if (lstat(out, &st) != 0 && errno == ENOENT)
			return 0;
	}
	errno = EEXIST;
	return -1;
}

/*
 * One record in the audit log (log.audit_file), in the format of the
 * daemon's (control_audit.c): time, time_ms, uid, pid, user, command,
 * result; O_APPEND, one write, fsync.  A file made here by root is handed
 * to the daemon's account, which appends to it after us.
 */
static void
cli_restore_audit(const struct cli *c, const char *command, const char *result)
{
	const char *file = c->conf->log.audit_file;
	struct passwd pw, *res = NULL;
	struct priv p;
	struct stat st;
	char pwbuf[4096], line[CLI_RESTORE_AUDIT_MAX], err[256];
	size_t off;
	int fd;

	if (file == NULL || file[0] == '\0')
		return;
	off = json_audit_record(
	    line, sizeof(line), queue_wall_ms(), (unsigned)getuid(),
	    (long)getpid(),
	    getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 &&
		    res != NULL
		? pw.pw_name
		: "",
	    command, result);
	if (util_mkdir_parent(file) != 0 ||
	    (fd = open(file,
		       O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		       0600)) < 0) {
		cli_errx("audit log %s: %s", file, strerror(errno));
		return;
	}
	if (geteuid() == 0 && !c->conf->allow_root && fstat(fd, &st) == 0 &&
	    st.st_uid == 0 &&
	    priv_lookup(c->conf->user, &p, err, sizeof(err)) == 0 &&
	    fchown(fd, p.uid, p.gid) != 0)
		cli_errx("audit log %s: chown: %s", file, strerror(errno));
	if (write(fd, line, off) != (ssize_t)off || fsync(fd) != 0)
		cli_errx("audit log %s: %s", file, strerror(errno));
	close(fd);
}

/* What a restore did, for its summary and audit record. */
struct cli_restore_done {
	struct queue_replay_result res;
	uint64_t lines;       /* of the delivery log read */
	uint64_t settled;     /* of them settling a recipient */
	char aside[PATH_MAX]; /* where the queue went; "" none */
};

/* The summary on stdout; the audit record's result into OUT. */
static void
cli_restore_summary(const struct cli *c, const struct queue_point_info *info,
		    const struct cli_restore_done *d, char *out, size_t outlen)
{
	printf("restored point %s: %" PRIu64 " messages, %" PRIu64
	       " pending recipients\n",
	       info->name, info->messages, info->recipients);
	if (c->no_log_replay)
		printf("log replay: skipped (--no-log-replay): recipients "
		       "delivered after the point will be sent again\n");
	else if (c->conf->log.delivery_file == NULL)
		printf("log replay: no delivery log configured: nothing to "
		       "replay\n");
	else
		printf("log replay: %" PRIu64 " log lines read (%" PRIu64
		       " settling a recipient), %" PRIu64
		       " recipients marked done, %" PRIu64
		       " messages removed (nothing left to send)\n",
		       d->lines, d->settled, d->res.marked, d->res.removed);
	if (d->res.skipped > 0)
		printf("log replay: %" PRIu64 " damaged messages passed over\n",
		       d->res.skipped);
	if (d->aside[0] != '\0')
		printf("the queue before the restore is kept in %s\n",
		       d->aside);
	snprintf(out, outlen,
		 "ok %" PRIu64 " messages, %" PRIu64 " marked done, %" PRIu64
		 " removed%s%s",
		 info->messages, d->res.marked, d->res.removed,
		 d->aside[0] != '\0' ? ", queue before kept in " : "",
		 d->aside);
}

/*
 * The restore proper, once point NAME verified as *INFO and the queue is
 * locked: stage a checked copy at STAGE, replay the log into it, hand it
 * to the daemon's account, then move the queue aside and the copy in:
 * nothing changes before those two renames.  0, or -1 with ERR (the
 * staging copy removed).
 */
static int
cli_restore_install(struct cli *c, const struct queue_point_info *info,
		    const char *stage, struct cli_restore_done *d, char *err,
		    size_t errlen)
{
	const char *qpath = c->conf->queue.path;
	char from[PATH_MAX], to[PATH_MAX], why[CLI_RESTORE_WHY_BYTES];
	struct stat st;
	struct priv p;

	cli_restore_unstage(stage); /* a copy left by a restore cut short */
	if (util_mkdir_parent(stage) != 0 || mkdir(stage, 0700) != 0) {
		snprintf(err, errlen, "%s: %s", stage, strerror(errno));
		return -1;
	}
	snprintf(from, sizeof(from), "%s/point-%s.mdb", c->conf->restore.dir,
		 info->name);
	if ((size_t)snprintf(to, sizeof(to), "%s/data.mdb", stage) >=
	    sizeof(to)) {
		snprintf(err, errlen, "%s: path too long", stage);
		goto fail;
	}
	if (cli_restore_copy(from, to, info->checksum, err, errlen) != 0)
		goto fail;
	if (!c->no_log_replay && c->conf->log.delivery_file != NULL &&
	    cli_restore_replay(
		c, stage, info->time_ms - CLI_RESTORE_REPLAY_MARGIN_MS, &d->res,
		&d->lines, &d->settled, err, errlen) != 0)
		goto fail;
	if (geteuid() == 0 && !c->conf->allow_root &&
	    (priv_lookup(c->conf->user, &p, why, sizeof(why)) != 0 ||
	     priv_chown_tree(stage, &p, why, sizeof(why)) != 0)) {
		snprintf(err, errlen, "%s", why);
		goto fail;
	}
	if (lstat(qpath, &st) == 0 &&
	    (cli_restore_aside(qpath, info->name, d->aside, sizeof(d->aside)) !=
		 0 ||
	     rename(qpath, d->aside) != 0)) {
		snprintf(err, errlen, "moving %s aside: %s", qpath,
			 strerror(errno));
		d->aside[0] = '\0';
		goto fail;
	}
	if (rename(stage, qpath) != 0 || cli_restore_dir_sync(qpath) != 0) {
		snprintf(err, errlen, "installing %s: %s", qpath,
			 strerror(errno));
		if (d->aside[0] != '\0' && rename(d->aside, qpath) != 0)
			snprintf(err, errlen,
				 "installing %s failed; the queue is at %s: "
				 "move it back",
				 qpath, d->aside);
		goto fail;
	}
	return 0;
fail:
	cli_restore_unstage(stage);
	return -1;
}

int
cli_restore(struct cli *c)
{
	struct queue_point_info info;
	struct cli_restore_done d;
	char name[32], stage[PATH_MAX], cmd[96], err[CLI_RESTORE_ERR_BYTES],
	    why[CLI_RESTORE_WHY_BYTES], result[CLI_RESTORE_RESULT_BYTES];
	const char *qpath = c->conf->queue.path;
	int lockfd = -1, check, rc = CLI_ERR;

	if (cli_restore_name(c->argv[0], name) != 0)
		return CLI_USAGE;
	snprintf(cmd, sizeof(cmd), "restore %s%s", name,
		 c->no_log_replay ? " --no-log-replay" : "");
	memset(&d, 0, sizeof(d));
	/* Each step says why it stops in ERR; the first that fails ends it. */
	if ((size_t)snprintf(stage, sizeof(stage), "%s.restoring-%s", qpath,
			     name) >= sizeof(stage))
		snprintf(err, sizeof(err), "%s: path too long", qpath);
	else if (cli_restore_lock(qpath, &lockfd, err, sizeof(err)) == 0) {
		check = cli_restore_check(c, name, &info, why, sizeof(why));
		if (check > 0)
			snprintf(err, sizeof(err),
				 "refused: no queue key; nothing changed");
		else if (check < 0)
			snprintf(err, sizeof(err),
				 "refused: point %s does not verify: %s; "
				 "nothing changed",
				 name, why);
		else if (cli_restore_install(c, &info, stage, &d, err,
					     sizeof(err)) == 0)
			rc = CLI_OK;
	}
	if (rc == CLI_OK)
		cli_restore_summary(c, &info, &d, result, sizeof(result));
	else {
		cli_errx("restore: %s", err);
		snprintf(result, sizeof(result), "err %s", err);
	}
	cli_restore_audit(c, cmd, result);
	if (lockfd >= 0)
		close(lockfd); /* after the swap: a waiting outpostd goes on */
	return rc == CLI_OK && fflush(stdout) != 0 ? CLI_ERR : rc;
}
