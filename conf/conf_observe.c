/*
 * conf_observe.c — the sections log (delivery and audit log files, the
 * delivery log's group and mode), metrics (the GET /metrics listener) and
 * control (the CLI's socket, and access: who may do what through it):
 * schema, parse callbacks, build (and the tree's load time), release; and
 * the lookups conf_rights_for_uid() and conf_right_name().
 * Thread: build and free inside conf_load()/conf_free() (conf.c's mutex);
 * the lookups read a finished tree from any thread.  Invariants: each value
 * is checked as it is read, with its line; nothing is opened or created
 * here; group and access titles become ids once, at load; each uid once.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf_int.h"

#define CONF_METRICS_DEFAULT "127.0.0.1:9025"
/* The longest socket path bind() takes: sun_path less its NUL. */
#define CONF_SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define CONF_UID_MAX         ((uint64_t)(uid_t)-1 - 1) /* -1: "no uid" */
#define CONF_PW_BUF_BYTES    16384      /* getpwnam_r(), to start with */
#define CONF_PW_BUF_MAX      (1u << 20) /* … growing up to this */

static const struct conf_right {
	const char *name;
	unsigned bit;
} conf_rights[] = {
	{ "read", CONF_RIGHT_READ },     { "write", CONF_RIGHT_WRITE },
	{ "delete", CONF_RIGHT_DELETE }, { "export", CONF_RIGHT_EXPORT },
	{ "import", CONF_RIGHT_IMPORT },
};

#define CONF_RIGHTS_LIST "read, write, delete, export, import"
#define CONF_DISTINCT_WHY                                                      \
	" (each log, and the control socket, needs a file of its own)"

/* ---- parse callbacks ---- */

/* The last component of a path names a file: not "", "." or "..". */
static bool
conf_names_file(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base != NULL ? base + 1 : path;
	return *base != '\0' && strcmp(base, ".") != 0 &&
	       strcmp(base, "..") != 0;
}

/* A file path (conf_text_cb) that does not name a directory. */
static int
conf_file_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];

	if (conf_text_cb(cfg, opt, value, result) != 0)
		return -1;
	if (!conf_names_file(value)) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" names a directory, not a file", key,
			  value);
		return -1;
	}
	return 0;
}

/* delivery_file, audit_file: a file, or "" for none. */
static int
conf_log_file_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value != NULL && *value == '\0') {
		conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
		*(const char **)result = value;
		return 0;
	}
	return conf_file_cb(cfg, opt, value, result);
}

/*
 * delivery_file_mode: octal, 3 or 4 digits ("0640"), read and write for
 * the owner (the daemon appends), at most read and write for the group, at
 * most read for others: a log is never executable, and no one else may
 * change what it says.
 */
static int
conf_file_mode_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	size_t i, n = value != NULL ? strlen(value) : 0;
	unsigned long v = 0;

	for (i = 0; i < n && value[i] >= '0' && value[i] <= '7'; i++)
		v = v * 8 + (unsigned long)(value[i] - '0');
	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (n < 3 || n > 4 || i != n) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is not an octal mode such as \"0640\"",
			  key, value != NULL ? value : "");
		return -1;
	}
	if ((v & 0600) != 0600 || (v & ~0664ul) != 0) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\": the owner must read and write, no one "
			  "execute, and only the owner and group write (0600, "
			  "0640, 0660 or 0644)",
			  key, value);
		return -1;
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* log.campaign_header: a header field name (RFC 5322 2.2: printable
 * ASCII but ':'), at most 76 bytes so that "NAME: x" fits a line;
 * "" = none. */
static int
conf_header_name_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	size_t i, n = value != NULL ? strlen(value) : 0;

	for (i = 0; i < n; i++)
		if (value[i] <= ' ' || value[i] >= 0x7f || value[i] == ':')
			break;
	if (i != n || n > 76)
		return conf_value_fail(cfg, opt, value,
				       "a header field name: printable ASCII "
				       "without ':' or white space, at most 76 "
				       "bytes (\"\" = none)");
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* control.socket: a file; "" would leave the CLI without a way in. */
static int
conf_socket_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];

	if (value != NULL && *value == '\0') {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: must not be empty (outpost, the CLI, reaches "
			  "the daemon through it)",
			  key);
		return -1;
	}
	return conf_file_cb(cfg, opt, value, result);
}

/* metrics.listen: "ADDR:PORT" as a listener's title, or "" for none. */
static int
conf_listen_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why;

	if (value != NULL && *value != '\0' &&
	    conf_addr_scan(value, &ss, &len, &why) != 0) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\": %s", key,
			  value, why);
		return -1;
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

static const struct conf_right *
conf_right_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(conf_rights) / sizeof(conf_rights[0]); i++) {
		if (strcasecmp(name, conf_rights[i].name) == 0)
			return &conf_rights[i];
	}
	return NULL;
}

/*
 * rights: known names (any case, kept lower-case), each once.  libconfuse
 * has added this value's slot already.
 */
static int
conf_right_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	const struct conf_right *r =
	    value != NULL ? conf_right_find(value) : NULL;
	unsigned i, n = cfg_opt_size(opt);
	const char *prev;

	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (r == NULL) {
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is not one of " CONF_RIGHTS_LIST, key,
			  value != NULL ? value : "");
		return -1;
	}
	for (i = 0; i + 1 < n; i++) {
		prev = cfg_opt_getnstr(opt, i);
		if (prev != NULL && strcmp(prev, r->name) == 0) {
			conf_fail(conf_cur, conf_cfg_line(cfg),
				  "%s: \"%s\" is listed twice", key, value);
			return -1;
		}
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = r->name;
	return 0;
}

/* ---- schema ---- */

cfg_opt_t conf_log_opts[] = {
	CFG_STR_CB("delivery_file", "log/delivery.log", CFGF_NONE,
		   conf_log_file_cb),
	CFG_STR_CB("audit_file", "log/audit.log", CFGF_NONE, conf_log_file_cb),
	/* The delivery log's group and mode (a log shipper reads it). */
	CFG_STR_CB("delivery_file_group", NULL, CFGF_NONE, conf_text_cb),
	CFG_STR_CB("delivery_file_mode", NULL, CFGF_NONE, conf_file_mode_cb),
	/* Free space the logs leave to the queue (mta/core/logspace.h). */
	CFG_STR_CB("disk_reserve", "256M", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("disk_reserve_percent", "1", CFGF_NONE, conf_num_cb),
	/* The header read as the message's campaign (tracing). */
	CFG_STR_CB("campaign_header", "X-Campaign-ID", CFGF_NONE,
		   conf_header_name_cb),
	CFG_END(),
};

cfg_opt_t conf_metrics_opts[] = {
	CFG_STR_CB("listen", CONF_METRICS_DEFAULT, CFGF_NONE, conf_listen_cb),
	/* Series of their own per family; the rest sum under "_other". */
	CFG_STR_CB("top_destinations", "20", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("top_users", "20", CFGF_NONE, conf_num_cb),
	/* The queue's depth and age by destination, pool and user. */
	CFG_STR_CB("queue_scan_interval", "60s", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

static cfg_opt_t conf_access_opts[] = {
	CONF_OPT_LINE,
	CFG_STR_LIST_CB("rights", NULL, CFGF_NONE, conf_right_cb),
	CFG_END(),
};

cfg_opt_t conf_control_opts[] = {
	CFG_STR_CB("socket", "control.sock", CFGF_NONE, conf_socket_cb),
	CFG_STR_CB("group", NULL, CFGF_NONE, conf_text_cb),
	CFG_SEC("access", conf_access_opts,
		CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_END(),
};

/* ---- build ---- */

/*
 * A group as KEY (control.group, log.delivery_file_group) gives it: a
 * decimal gid as it is, else a local group's name, looked up once, at load.
 * *GID set, 0; or -1 with the error on LINE.
 */
static int
conf_group_scan(struct conf_ctx *x, unsigned line, const char *key,
		const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[CONF_PW_BUF_BYTES];
	uint64_t v;
	int rc;

	rc = conf_count_scan(name, &v);
	if (rc != -1) {
		if (rc != 0 || v > CONF_UID_MAX) {
			conf_fail(x, line, "%s: a gid is at most %llu", key,
				  (unsigned long long)CONF_UID_MAX);
			return -1;
		}
		*gid = (gid_t)v;
		return 0;
	}
	rc = getgrnam_r(name, &gr, buf, sizeof(buf), &res);
	if (res == NULL) {
		conf_fail(x, line,
			  "%s \"%s\": %s (a local group name, or a gid such "
			  "as \"1001\")",
			  key, name,
			  rc == 0 || rc == ENOENT || rc == ESRCH
			      ? "no such group"
			      : strerror(rc));
		return -1;
	}
	*gid = gr.gr_gid;
	return 0;
}

static int
conf_build_log(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "log");
	const char *keys[] = { "delivery_file", "audit_file" };
	char **out[] = { &c->log.delivery_file, &c->log.audit_file };
	const char *s;
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		s = cfg_getstr(sec, keys[i]);
		if (s == NULL || *s == '\0')
			continue; /* "": no such log */
		if (conf_path_get(x, c, sec, keys[i], out[i]) != 0)
			return -1;
	}
	if ((s = cfg_getstr(sec, "delivery_file_group")) != NULL) {
		if (conf_group_scan(x,
				    conf_line_of(x, sec, "delivery_file_group"),
				    "log.delivery_file_group", s,
				    &c->log.delivery_gid) != 0)
			return -1;
		c->log.delivery_group_set = true;
	}
	/* checked by conf_file_mode_cb as it was read */
	s = cfg_getstr(sec, "delivery_file_mode");
	c->log.delivery_file_mode = s != NULL ? (unsigned)strtoul(s, NULL, 8)
				    : c->log.delivery_group_set ? 0640
								: 0600;
	c->log.disk_reserve = conf_num_get(x, sec, "disk_reserve");
	c->log.disk_reserve_percent =
	    (unsigned)conf_num_get(x, sec, "disk_reserve_percent");
	s = cfg_getstr(sec, "campaign_header");
	if (s != NULL && *s != '\0' &&
	    (c->log.campaign_header = conf_strdup(x, s)) == NULL)
		return -1;
	return 0;
}

/*
 * metrics.listen, and not on the address of a listener (one of the two
 * would fail to bind).  The error goes where the file wrote the clash.
 */
static int
conf_build_metrics(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "metrics");
	struct conf_metrics *m = &c->metrics;
	const char *s = cfg_getstr(sec, "listen"), *why;
	unsigned line = conf_line_of(x, sec, "listen");
	size_t i;

	m->top_destinations =
	    (unsigned)conf_num_get(x, sec, "top_destinations");
	m->top_users = (unsigned)conf_num_get(x, sec, "top_users");
	m->queue_scan_interval_ms = conf_num_get(x, sec, "queue_scan_interval");
	if (m->queue_scan_interval_ms != 0 &&
	    m->queue_scan_interval_ms < 1000) {
		conf_fail(x, conf_line_of(x, sec, "queue_scan_interval"),
			  "metrics.queue_scan_interval: 0 (off) or 1s..1h");
		return -1;
	}
	if (s == NULL || *s == '\0')
		return 0; /* off: listen NULL, addr zeroed, addrlen 0 */
	if (conf_addr_scan(s, &m->addr, &m->addrlen, &why) != 0) {
		/* the default, or checked by conf_listen_cb as it was read */
		conf_fail(x, line, "metrics.listen: \"%s\": %s", s, why);
		return -1;
	}
	if ((m->listen = conf_strdup(x, s)) == NULL)
		return -1;
	for (i = 0; i < c->nlisteners; i++) {
		const struct conf_listener *l = &c->listeners[i];

		if (l->addrlen != m->addrlen ||
		    memcmp(&l->addr, &m->addr, m->addrlen) != 0)
			continue;
		if (line != 0) {
			conf_fail(x, line,
				  "metrics.listen: \"%s\": the same address "
				  "as listener \"%s\"",
				  s, l->name);
			return -1;
		}
		conf_fail(
		    x, conf_sec_line(cfg_getnsec(cfg, "listener", (unsigned)i)),
		    "listener \"%s\": the same address as metrics.listen "
		    "(\"%s\" by default; set metrics { listen = ... } to "
		    "another address, or to \"\" for none)",
		    l->name, s);
		return -1;
	}
	return 0;
}

/*
 * The uid of an access title: a decimal uid as it is (never looked up, so
 * that a uid without a passwd entry works), else a local user's name.
 */
static int
conf_access_uid(struct conf_ctx *x, cfg_t *sec, const char *title, uid_t *uid)
{
	unsigned line = conf_sec_line(sec);
	struct passwd pw, *res = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 && hint <= (long)CONF_PW_BUF_MAX
			  ? (size_t)hint
			  : CONF_PW_BUF_BYTES;
	uint64_t v;
	char *buf;
	int rc;

	if (*title == '\0') {
		conf_fail(x, line,
			  "control.access \"\": the title is empty (a local "
			  "user name, or a uid such as \"1001\")");
		return -1;
	}
	rc = conf_count_scan(title, &v);
	if (rc != -1) {
		if (rc != 0 || v > CONF_UID_MAX) {
			conf_fail(x, line,
				  "control.access \"%s\": a uid is at most "
				  "%llu",
				  title, (unsigned long long)CONF_UID_MAX);
			return -1;
		}
		*uid = (uid_t)v;
		return 0;
	}
	for (;;) {
		if ((buf = malloc(size)) == NULL) {
			conf_fail(x, 0, "out of memory");
			return -1;
		}
		rc = getpwnam_r(title, &pw, buf, size, &res);
		if (rc != ERANGE || size >= CONF_PW_BUF_MAX)
			break;
		free(buf);
		size *= 2;
	}
	if (res != NULL)
		*uid = pw.pw_uid;
	free(buf);
	if (res != NULL)
		return 0;
	/* getpwnam_r(3): these too mean "no such name" */
	if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF ||
	    rc == EPERM) {
		conf_fail(x, line,
			  "control.access \"%s\": no such user (a local user "
			  "name, or a uid such as \"1001\")",
			  title);
		return -1;
	}
	conf_fail(x, line, "control.access \"%s\": cannot look the user up: %s",
		  title, strerror(rc));
	return -1;
}

static int
conf_build_access(struct conf_ctx *x, cfg_t *sec, struct conf_control *ctl,
		  struct conf_access *a)
{
	const char *title = cfg_title(sec);
	const struct conf_right *r;
	size_t i, n;

	if (title == NULL)
		title = "";
	if ((a->name = conf_strdup(x, title)) == NULL ||
	    conf_access_uid(x, sec, title, &a->uid) != 0)
		return -1;
	for (i = 0; &ctl->access[i] != a; i++) {
		if (ctl->access[i].uid == a->uid) {
			conf_fail(x, conf_sec_line(sec),
				  "control.access \"%s\": the same uid (%llu) "
				  "as control.access \"%s\"",
				  title, (unsigned long long)a->uid,
				  ctl->access[i].name);
			return -1;
		}
	}
	if (!conf_is_set(sec, "rights")) {
		conf_fail(x, conf_sec_line(sec),
			  "control.access \"%s\": rights is missing (list some "
			  "of " CONF_RIGHTS_LIST ", or write rights = { } "
			  "for none)",
			  title);
		return -1;
	}
	n = cfg_size(sec, "rights");
	for (i = 0; i < n; i++) {
		/* checked by conf_right_cb as it was read */
		r = conf_right_find(cfg_getnstr(sec, "rights", (unsigned)i));
		if (r != NULL)
			a->rights |= r->bit;
	}
	return 0;
}

/* control.group: the socket's group (its mode is 0660). */
static int
conf_control_group(struct conf_ctx *x, cfg_t *sec, struct conf_control *ctl)
{
	const char *name = cfg_getstr(sec, "group");

	if (name == NULL)
		return 0;
	if (conf_group_scan(x, conf_line_of(x, sec, "group"), "control.group",
			    name, &ctl->gid) != 0)
		return -1;
	ctl->group_set = true;
	return 0;
}

/*
 * control.socket must fit in sun_path once resolved: the error goes on the
 * socket's line, or on data_dir's when the socket is the default.
 */
static int
conf_build_control(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "control");
	struct conf_control *ctl = &c->control;
	size_t i, n = cfg_size(sec, "access"), len;
	unsigned line;

	if (conf_path_get(x, c, sec, "socket", &ctl->socket) != 0)
		return -1;
	if (ctl->socket == NULL) {
		conf_fail(x, 0, "control.socket: no value");
		return -1;
	}
	if ((len = strlen(ctl->socket)) > CONF_SOCKET_PATH_MAX) {
		line = conf_line_of(x, sec, "socket");
		if (line == 0)
			line = conf_line_of(x, cfg, "data_dir");
		conf_fail(x, line,
			  "control.socket: \"%s\" is %zu bytes long once "
			  "resolved against data_dir; a Unix socket path "
			  "holds at most %zu (set socket to a shorter "
			  "absolute path)",
			  cfg_getstr(sec, "socket"), len, CONF_SOCKET_PATH_MAX);
		return -1;
	}
	if (conf_control_group(x, sec, ctl) != 0)
		return -1;
	if ((ctl->access = calloc(n > 0 ? n : 1, sizeof(*ctl->access))) ==
	    NULL) {
		conf_fail(x, 0, "out of memory");
		return -1;
	}
	if (n == 0) {
		ctl->naccess = 1;
		ctl->access[0].uid = 0;
		ctl->access[0].rights = CONF_RIGHTS_ALL;
		return (ctl->access[0].name = conf_strdup(x, "root")) != NULL
			   ? 0
			   : -1;
	}
	for (i = 0; i < n; i++) {
		ctl->naccess = i + 1; /* conf_free() sees what is built */
		if (conf_build_access(x,
				      cfg_getnsec(sec, "access", (unsigned)i),
				      ctl, &ctl->access[i]) != 0)
			return -1;
	}
	return 0;
}

/*
 * The log files and the socket are three different files: two streams in
 * one file would interleave, and the daemon would unlink a log file to
 * bind its socket.  The error goes on the later of the two lines.
 */
static int
conf_paths_distinct(struct conf_ctx *x, cfg_t *cfg, const struct conf *c)
{
	const struct {
		cfg_t *sec;
		const char *key;
		const char *path;
	} p[] = {
		{ cfg_getsec(cfg, "log"), "delivery_file",
		  c->log.delivery_file },
		{ cfg_getsec(cfg, "log"), "audit_file", c->log.audit_file },
		{ cfg_getsec(cfg, "control"), "socket", c->control.socket },
	};
	char k1[CONF_KEY_MAX], k2[CONF_KEY_MAX];
	size_t i, j, n = sizeof(p) / sizeof(p[0]);
	unsigned l1, l2;

	for (j = 1; j < n; j++) {
		for (i = 0; i < j; i++) {
			if (p[i].path == NULL || p[j].path == NULL ||
			    strcmp(p[i].path, p[j].path) != 0)
				continue;
			l1 = conf_line_of(x, p[i].sec, p[i].key);
			l2 = conf_line_of(x, p[j].sec, p[j].key);
			conf_key_name(p[i].sec, p[i].key, k1, sizeof(k1));
			conf_key_name(p[j].sec, p[j].key, k2, sizeof(k2));
			if (l1 > l2)
				conf_fail(x, l1, "%s: the same file as %s%s",
					  k1, k2, CONF_DISTINCT_WHY);
			else
				conf_fail(x, l2, "%s: the same file as %s%s",
					  k2, k1, CONF_DISTINCT_WHY);
			return -1;
		}
	}
	return 0;
}

int
conf_observe_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	struct timespec now;

	/* What `outpost status` shows as the time of the last (re)load. */
	clock_gettime(CLOCK_REALTIME, &now);
	c->loaded_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if (conf_build_log(x, cfg, c) != 0 ||
	    conf_build_metrics(x, cfg, c) != 0 ||
	    conf_build_control(x, cfg, c) != 0 ||
	    conf_paths_distinct(x, cfg, c) != 0)
		return -1;
	return x->failed ? -1 : 0;
}

void
conf_observe_free(struct conf *c)
{
	size_t i;

	free(c->log.delivery_file);
	free(c->log.audit_file);
	free(c->log.campaign_header);
	free(c->metrics.listen);
	free(c->control.socket);
	for (i = 0; i < c->control.naccess; i++)
		free(c->control.access[i].name);
	free(c->control.access);
}

/* ---- lookups ---- */

unsigned
conf_rights_for_uid(const struct conf *c, uid_t uid)
{
	size_t i;

	if (c == NULL)
		return 0;
	for (i = 0; i < c->control.naccess; i++) {
		if (c->control.access[i].uid == uid)
			return c->control.access[i].rights;
	}
	return 0;
}

const char *
conf_right_name(unsigned right)
{
	size_t i;

	for (i = 0; i < sizeof(conf_rights) / sizeof(conf_rights[0]); i++) {
		if (conf_rights[i].bit == right)
			return conf_rights[i].name;
	}
	return NULL;
}
