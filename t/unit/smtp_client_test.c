/*
 * smtp_client_test.c — the outbound SMTP client (mta/deliver/smtp_client.c)
 * on its own, through its interface only (smtp_client.h): a libevent loop
 * drives one client against the project's sink (build/tools/outpost-sink,
 * a subprocess on a free loopback port), and the callbacks record what the
 * client reports.  Table-driven: sink options × job → the stage and code
 * each recipient's result carries, what outcome_classify() makes of them,
 * and how the connection ended.  Loopback only: the sink refuses anything
 * else, and the client runs with loopback_only and no resolver.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "mta/deliver/outcome.h"
#include "mta/deliver/smtp_client.h"
#include "mta/observe/stats.h"

struct stats stats;

#define RCPT_MAX    4
#define ARG_MAX     8
#define RUN_SECONDS 20 /* a case that runs longer has hung: fail */

/* What one recipient must end with. */
struct want_rcpt {
	enum outcome_stage stage;
	int code;
	enum outcome_action action;
};

static const struct client_case {
	const char *name;
	const char *args[ARG_MAX]; /* extra sink options */
	const char *rcpts[RCPT_MAX];
	struct want_rcpt want[RCPT_MAX];
	bool refused;    /* connect to a port nobody listens on */
	bool stored;     /* the sink must have stored the message */
	const char *tls; /* non-NULL: must have gone over TLS */
	bool failed;     /* closed without ever being usable */
	enum outcome_stage fail_stage;
	int fail_code;
	unsigned greeting_timeout_ms; /* 0: 5 s */
	size_t piece;        /* the body handed out in pieces of this size
				(0: whole) */
	unsigned fail_after; /* the body fails after this many pieces (0:
				never) */
} cases[] = {
	{ .name = "delivered",
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true },
	{ .name = "delivered, two recipients, no pipelining",
	  .args = { "--no-pipelining" },
	  .rcpts = { "alice@example.test", "bob@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED },
		    { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true },
	{ .name = "delivered over STARTTLS",
	  .args = { "--starttls" },
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true,
	  .tls = "TLSv1." },
	{ .name = "5xx to RCPT for one recipient of two (pipelined)",
	  .rcpts = { "reject-x@example.test", "bob@example.test" },
	  .want = { { OS_RCPT, 550, OA_BOUNCE },
		    { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true },
	{ .name = "5xx to RCPT for one recipient of two (one at a time)",
	  .args = { "--no-pipelining" },
	  .rcpts = { "alice@example.test", "reject-y@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED },
		    { OS_RCPT, 550, OA_BOUNCE } },
	  .stored = true },
	{ .name = "4xx to RCPT, 5xx to RCPT, none accepted",
	  .rcpts = { "defer-a@example.test", "reject-b@example.test" },
	  .want = { { OS_RCPT, 451, OA_DEFER }, { OS_RCPT, 550, OA_BOUNCE } } },
	{ .name = "4xx at end of data",
	  .rcpts = { "datadefer-a@example.test", "bob@example.test" },
	  .want = { { OS_EOM, 451, OA_DEFER }, { OS_EOM, 451, OA_DEFER } } },
	{ .name = "5xx at end of data",
	  .args = { "--data-reply", "554 5.7.1 rejected by test" },
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_EOM, 554, OA_BOUNCE } } },
	{ .name = "5xx to MAIL: every recipient has MAIL's answer",
	  .args = { "--mail-reply", "550 5.7.1 sender refused" },
	  .rcpts = { "alice@example.test", "bob@example.test" },
	  .want = { { OS_MAIL, 550, OA_BOUNCE },
		    { OS_MAIL, 550, OA_BOUNCE } } },
	{ .name = "5xx greeting: the host is skipped, nothing is sent",
	  .args = { "--greeting-reply", "554 5.3.2 go away" },
	  .rcpts = { "alice@example.test" },
	  .failed = true,
	  .fail_stage = OS_GREETING,
	  .fail_code = 554 },
	{ .name = "greeting timeout",
	  .args = { "--greeting-delay-ms", "3000" },
	  .rcpts = { "alice@example.test" },
	  .failed = true,
	  .fail_stage = OS_GREETING,
	  .fail_code = 0,
	  .greeting_timeout_ms = 300 },
	{ .name = "delivered, the body in 1-byte pieces (DATA)",
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true,
	  .piece = 1 },
	{ .name = "delivered, the body in 3-byte pieces (DATA, no pipelining)",
	  .args = { "--no-pipelining" },
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true,
	  .piece = 3 },
	{ .name = "delivered, the body in 5-byte pieces (BDAT)",
	  .args = { "--chunking" },
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_EOM, 250, OA_DELIVERED } },
	  .stored = true,
	  .piece = 5 },
	{ .name = "the body cannot be read (DATA): deferred, nothing stored",
	  .rcpts = { "alice@example.test", "bob@example.test" },
	  .want = { { OS_LOCAL, 451, OA_DEFER }, { OS_LOCAL, 451, OA_DEFER } },
	  .piece = 16,
	  .fail_after = 2 },
	{ .name = "the body cannot be read (BDAT): deferred, nothing stored",
	  .args = { "--chunking" },
	  .rcpts = { "alice@example.test" },
	  .want = { { OS_LOCAL, 451, OA_DEFER } },
	  .piece = 16,
	  .fail_after = 2 },
	{ .name = "connection refused",
	  .rcpts = { "alice@example.test" },
	  .refused = true,
	  .failed = true,
	  .fail_stage = OS_CONNECT,
	  .fail_code = 0 },
};

static const char body[] = "From: <sender@example.test>\r\n"
			   "To: <alice@example.test>\r\n"
			   "Subject: test\r\n"
			   "\r\n"
			   "Hello.\r\n"
			   ".a line that starts with a dot\r\n"
			   ".\r\n"
			   "Bye.\r\n";

/* The body as the client pulls it (smtp_client_body_fn): PIECE bytes at
 * a time, cutting lines and CRLFs anywhere, failing after FAIL_AFTER. */
struct body_src {
	size_t off, piece;
	unsigned n, fail_after;
};

static int
body_next(void *arg, const uint8_t **p, size_t *len, char *err, size_t errlen)
{
	struct body_src *b = arg;
	size_t left = strlen(body) - b->off;

	if (b->fail_after != 0 && b->n == b->fail_after) {
		snprintf(err, errlen, "test: the body fails here");
		return -1;
	}
	if (left == 0)
		return 1;
	*p = (const uint8_t *)body + b->off;
	*len = b->piece != 0 && b->piece < left ? b->piece : left;
	b->off += *len;
	b->n++;
	return 0;
}

/* The sink of one case. */
struct sink {
	pid_t pid;
	char dir[PATH_MAX];
	unsigned port;
};

/* The running case's sink: stopped by the teardown, even after a failed
 * assertion. */
static struct sink sink_now = { .pid = -1 };

/* One case's run: what the callbacks saw. */
struct run {
	struct event_base *base;
	struct smtp_client_job job;
	struct smtp_client_result res[RCPT_MAX];
	unsigned nready, ndone, nclosed;
	bool sent, failed;
	enum outcome_stage fail_stage;
	int fail_code;
	char fail_text[256];
};

static const char *
sink_path(char *buf, size_t len)
{
	const char *tools = getenv("OUTPOST_TOOLS");

	if (tools != NULL && tools[0] != '\0')
		snprintf(buf, len, "%s/outpost-sink", tools);
	else
		snprintf(buf, len, "%s", OUTPOST_SINK);
	return buf;
}

static bool
file_exists(const char *dir, const char *name)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

/* The port the sink bound (it listens on port 0): from its stats file,
 * "listeners":{"127.0.0.1:PORT":…. */
static unsigned
sink_port(const struct sink *s)
{
	char p[PATH_MAX + 64], buf[8192];
	const char *at;
	size_t n;
	FILE *f;

	snprintf(p, sizeof(p), "%s/stats.json", s->dir);
	f = fopen(p, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	at = strstr(buf, "\"listeners\":{\"127.0.0.1:");
	assert_non_null(at);
	return (unsigned)strtoul(at + strlen("\"listeners\":{\"127.0.0.1:"),
				 NULL, 10);
}

static void
sink_start(struct sink *s, const char *const *extra)
{
	char exe[PATH_MAX], stats_f[PATH_MAX + 32], ready[PATH_MAX + 32],
	    maildir[PATH_MAX + 32], log_f[PATH_MAX + 32];
	const char *argv[32];
	unsigned argc = 0, i;
	int fd, tries;

	snprintf(s->dir, sizeof(s->dir), "%s/smtp-client-test-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(s->dir));
	snprintf(stats_f, sizeof(stats_f), "%s/stats.json", s->dir);
	snprintf(ready, sizeof(ready), "%s/ready", s->dir);
	snprintf(maildir, sizeof(maildir), "%s/maildir", s->dir);
	snprintf(log_f, sizeof(log_f), "%s/sink.log", s->dir);
	argv[argc++] = sink_path(exe, sizeof(exe));
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--stats";
	argv[argc++] = stats_f;
	argv[argc++] = "--ready-file";
	argv[argc++] = ready;
	argv[argc++] = "--maildir";
	argv[argc++] = maildir;
	for (i = 0; i < ARG_MAX && extra[i] != NULL; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		fd = open(log_f, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (tries = 0; !file_exists(s->dir, "ready"); tries++) {
		int st;

		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = -1;
			fail_msg("%s exited at start (see %s)", exe, log_f);
		}
		if (tries > 1000)
			fail_msg("%s not ready after 10 s", exe);
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	s->port = sink_port(s);
	assert_true(s->port > 0 && s->port < 65536);
}

static void
rm_tree(const char *path)
{
	char p[PATH_MAX + 300];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
			rm_tree(p);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static void
sink_stop(struct sink *s)
{
	int st;

	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, &st, 0);
		s->pid = -1;
	}
	if (s->dir[0] != '\0')
		rm_tree(s->dir);
}

/* A loopback port nobody listens on (bound, then closed; the kernel
 * hands out ports at random, so nobody takes it back at once). */
static unsigned
port_refused(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port;

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* The message the sink stored (the only one), or NULL. */
static char *
sink_message(const struct sink *s)
{
	char dir[PATH_MAX + 32], p[PATH_MAX + 300], *buf = NULL;
	struct dirent *de;
	struct stat st;
	DIR *d;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/maildir", s->dir);
	if ((d = opendir(dir)) == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL && buf == NULL) {
		size_t n = strlen(de->d_name);

		if (n < 4 || strcmp(de->d_name + n - 4, ".eml") != 0 ||
		    de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (stat(p, &st) != 0 || (f = fopen(p, "r")) == NULL)
			continue;
		buf = calloc(1, (size_t)st.st_size + 1);
		assert_non_null(buf);
		assert_int_equal(fread(buf, 1, (size_t)st.st_size, f),
				 (size_t)st.st_size);
		fclose(f);
	}
	closedir(d);
	return buf;
}

/* The callbacks ------------------------------------------------------ */

static void
on_ready(struct smtp_client *c, void *arg)
{
	struct run *r = arg;

	r->nready++;
	if (!r->sent) {
		r->sent = true;
		smtp_client_send(c, &r->job);
		return;
	}
	smtp_client_quit(c);
}

static void
on_done(struct smtp_client *c, struct smtp_client_job *job, void *arg)
{
	struct run *r = arg;

	(void)c;
	assert_ptr_equal(job, &r->job);
	r->ndone++;
}

static void
on_closed(struct smtp_client *c, bool failed, enum outcome_stage stage,
	  int code, const char *text, void *arg)
{
	struct run *r = arg;

	(void)c;
	r->nclosed++;
	r->failed = failed;
	r->fail_stage = stage;
	r->fail_code = code;
	snprintf(r->fail_text, sizeof(r->fail_text), "%s",
		 text != NULL ? text : "");
	event_base_loopbreak(r->base);
}

static const struct smtp_client_cb cb = {
	.ready = on_ready,
	.done = on_done,
	.closed = on_closed,
};

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fail_msg("the client ran for more than %d s", RUN_SECONDS);
}

/* The case ------------------------------------------------------------ */

static void
check_case(const struct client_case *k, const struct run *r,
	   const struct sink *s)
{
	struct outcome o;
	unsigned i;
	char *msg;

	print_message("case: %s\n", k->name);
	assert_int_equal(r->nclosed, 1);
	if (k->failed) {
		assert_true(r->failed);
		assert_int_equal(r->nready, 0);
		assert_int_equal(r->ndone, 0);
		assert_string_equal(outcome_stage_name(r->fail_stage),
				    outcome_stage_name(k->fail_stage));
		assert_int_equal(r->fail_code, k->fail_code);
		assert_true(r->fail_text[0] != '\0');
		return;
	}
	assert_false(r->failed);
	assert_int_equal(r->ndone, 1);
	for (i = 0; i < r->job.nrcpt; i++) {
		const struct smtp_client_result *res = &r->res[i];

		print_message("  rcpt %u: %s %d %s\n", i,
			      outcome_stage_name(res->stage), res->code,
			      res->text ? res->text : "(null)");
		assert_non_null(res->text);
		assert_string_equal(outcome_stage_name(res->stage),
				    outcome_stage_name(k->want[i].stage));
		assert_int_equal(res->code, k->want[i].code);
		outcome_classify(res->stage, res->code, res->text, NULL, 0, &o);
		assert_int_equal(o.action, k->want[i].action);
	}
	assert_non_null(r->job.peer);
	assert_non_null(strstr(r->job.peer->remote, "127.0.0.1"));
	assert_string_equal(r->job.peer->mx_ip, "127.0.0.1");
	assert_string_equal(r->job.peer->mx_host, "127.0.0.1");
	if (k->tls != NULL) {
		assert_non_null(strstr(r->job.peer->tls_version, k->tls));
		assert_true(r->job.tls_verified == 0 ||
			    r->job.tls_verified == 1);
	} else {
		assert_int_equal(r->job.tls_verified, -1);
		assert_string_equal(r->job.peer->tls, "");
	}
	msg = sink_message(s);
	if (!k->stored) {
		assert_null(msg);
		return;
	}
	/* What arrived is the body as given (the dots unstuffed again),
	 * after the sink's envelope line. */
	assert_non_null(msg);
	assert_non_null(strstr(msg, "from=<sender@example.test>"));
	assert_non_null(strstr(msg, "helo=client.example.test"));
	assert_true(strlen(msg) >= strlen(body));
	assert_string_equal(msg + strlen(msg) - strlen(body), body);
	free(msg);
}

/* libevent's own complaints (an epoll change on a closed descriptor, …)
 * during the running case: each one is a defect of the client. */
static unsigned libevent_warnings;

static void
on_libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN) {
		fprintf(stderr, "libevent: %s\n", msg);
		libevent_warnings++;
	}
}

/* One host, 127.0.0.1:PORT, under TLS policy TLS. */
static void
target_init(struct smtp_client_target *t, struct smtp_client_host *host,
	    unsigned port, enum conf_tls_policy tls)
{
	memset(t, 0, sizeof(*t));
	t->hosts = host;
	t->nhosts = 1;
	t->port = port;
	t->ehlo = "client.example.test";
	t->tls = tls;
	t->max_mx_addresses = t->max_mx_sessions = 5;
	t->attempt_timeout_ms = 10000;
}

/* R's job: RCPTS (NULL-terminated), the test body pulled from SRC. */
static void
job_init(struct run *r, const char *const *rcpts, struct body_src *src)
{
	r->job.sender = "sender@example.test";
	r->job.rcpts = rcpts;
	for (r->job.nrcpt = 0;
	     r->job.nrcpt < RCPT_MAX && rcpts[r->job.nrcpt] != NULL;
	     r->job.nrcpt++)
		;
	r->job.body_next = body_next;
	r->job.body_arg = src;
	r->job.body_len = strlen(body);
	r->job.res = r->res;
	r->job.tls_verified = -1;
}

static void
test_case(void **state)
{
	const struct client_case *k = *state;
	struct smtp_client_host host = { .name = "127.0.0.1" };
	struct smtp_client_env env;
	struct smtp_client_target t;
	struct sink *s = &sink_now;
	struct run r;
	struct event *deadline;
	struct timeval tv = { RUN_SECONDS, 0 };
	struct smtp_client *c;
	struct body_src src = { 0 };
	unsigned i;

	memset(&r, 0, sizeof(r));
	libevent_warnings = 0;
	if (!k->refused)
		sink_start(s, k->args);
	assert_non_null(r.base = event_base_new());
	memset(&env, 0, sizeof(env));
	env.base = r.base;
	env.dns = NULL; /* the host is an address: no lookup */
	env.loopback_only = true;
	assert_non_null(env.ssl_ctx = SSL_CTX_new(TLS_client_method()));
	SSL_CTX_set_verify(env.ssl_ctx, SSL_VERIFY_NONE, NULL);
	smtp_client_tls_init(env.ssl_ctx);
	env.connect_timeout_ms = 5000;
	env.greeting_timeout_ms =
	    k->greeting_timeout_ms ? k->greeting_timeout_ms : 5000;
	env.command_timeout_ms = env.data_timeout_ms = 5000;
	env.idle_timeout_ms = 1000;
	target_init(&t, &host, k->refused ? port_refused() : s->port,
		    CONF_TLSP_MAY);
	src.piece = k->piece;
	src.fail_after = k->fail_after;
	job_init(&r, k->rcpts, &src);
	assert_non_null(c = smtp_client_new(&env, &t, &cb, &r));
	assert_int_equal(r.nready + r.nclosed, 0); /* never inline */
	deadline = evtimer_new(r.base, on_deadline, NULL);
	evtimer_add(deadline, &tv);
	event_base_dispatch(r.base);
	event_free(deadline);
	/* the client is freed once its callback returned: let it go */
	event_base_loop(r.base, EVLOOP_NONBLOCK);
	check_case(k, &r, s);
	assert_int_equal(libevent_warnings, 0);
	for (i = 0; i < RCPT_MAX; i++)
		free(r.res[i].text);
	free(r.job.peer);
	if (host.session != NULL)
		SSL_SESSION_free(host.session);
	SSL_CTX_free(env.ssl_ctx);
	event_base_free(r.base);
}

/* A scripted server, in this process: what the client sent so far. */
static size_t
peer_read(int fd, char *buf, size_t cap, size_t have)
{
	ssize_t n;

	while (have < cap - 1 &&
	       (n = recv(fd, buf + have, cap - 1 - have, MSG_DONTWAIT)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	return have;
}

/* Turns of the client's loop until the server has read WANT (at most
 * 2,000 turns of 1 ms). */
static size_t
peer_wait(struct event_base *base, int fd, char *buf, size_t cap, size_t have,
	  const char *want)
{
	int i;

	for (i = 0; i < 2000; i++) {
		have = peer_read(fd, buf, cap, have);
		if (strstr(buf, want) != NULL)
			return have;
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	fail_msg("the client did not send \"%s\" (it sent: %s)", want, buf);
	return have;
}

/* In clear text, what a reply makes the client send is on the socket when
 * the loop's turn that read the reply ends: the body after its 354 (and
 * the command group after the EHLO reply), not a turn later through a
 * writable event. */
static void
test_same_turn(void **state)
{
	static const char *rcpts[] = { "alice@example.test", NULL };
	struct smtp_client_host host = { .name = "127.0.0.1" };
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct smtp_client_env env;
	struct smtp_client_target t;
	struct body_src src = { 0 };
	struct smtp_client *c;
	struct run r;
	char buf[8192];
	size_t have = 0, mark;
	int lfd, sfd = -1, i;

	(void)state;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(lfd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	memset(&r, 0, sizeof(r));
	assert_non_null(r.base = event_base_new());
	memset(&env, 0, sizeof(env));
	env.base = r.base;
	env.loopback_only = true;
	assert_non_null(env.ssl_ctx = SSL_CTX_new(TLS_client_method()));
	env.connect_timeout_ms = env.greeting_timeout_ms = 5000;
	env.command_timeout_ms = env.data_timeout_ms = 5000;
	env.idle_timeout_ms = 5000;
	target_init(&t, &host, ntohs(sin.sin_port), CONF_TLSP_NONE);
	job_init(&r, rcpts, &src);
	assert_non_null(c = smtp_client_new(&env, &t, &cb, &r));
	for (i = 0; i < 2000 && sfd < 0; i++) {
		event_base_loop(r.base, EVLOOP_NONBLOCK);
		if ((sfd = accept(lfd, NULL, NULL)) < 0)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	assert_true(sfd >= 0);
	assert_int_equal(send(sfd, "220 test\r\n", 10, 0), 10);
	have = peer_wait(r.base, sfd, buf, sizeof(buf), have, "EHLO");
	mark = have;
	assert_int_equal(send(sfd, "250-test\r\n250 PIPELINING\r\n", 26, 0),
			 26);
	have = peer_wait(r.base, sfd, buf, sizeof(buf), have, "DATA\r\n");
	assert_non_null(strstr(buf + mark, "MAIL FROM:<sender@example.test>"));
	assert_non_null(strstr(buf + mark, "RCPT TO:<alice@example.test>"));
	mark = have;
	assert_int_equal(send(sfd, "250 a\r\n250 b\r\n354 c\r\n", 21, 0), 21);
	/* One turn: the replies are readable now (loopback). */
	assert_int_equal(event_base_loop(r.base, EVLOOP_ONCE), 0);
	have = peer_read(sfd, buf, sizeof(buf), have);
	assert_true(have - mark >= strlen(body));
	assert_string_equal(buf + have - 5, "\r\n.\r\n");
	assert_int_equal(send(sfd, "250 queued\r\n", 12, 0), 12);
	have = peer_wait(r.base, sfd, buf, sizeof(buf), have, "QUIT");
	assert_int_equal(r.ndone, 1);
	assert_int_equal(r.res[0].code, 250);
	close(sfd);
	for (i = 0; i < 2000 && r.nclosed == 0; i++) {
		event_base_loop(r.base, EVLOOP_NONBLOCK);
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	assert_int_equal(r.nclosed, 1);
	event_base_loop(r.base, EVLOOP_NONBLOCK);
	free(r.res[0].text);
	free(r.job.peer);
	SSL_CTX_free(env.ssl_ctx);
	event_base_free(r.base);
	close(lfd);
	assert_int_equal(libevent_warnings, 0);
}

static int
teardown(void **state)
{
	(void)state;
	sink_stop(&sink_now);
	memset(&sink_now, 0, sizeof(sink_now));
	sink_now.pid = -1;
	return 0;
}

int
main(void)
{
	struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0]) + 1];
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(on_libevent_log);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&tests[i], 0, sizeof(tests[i]));
		tests[i].name = cases[i].name;
		tests[i].test_func = test_case;
		tests[i].teardown_func = teardown;
		tests[i].initial_state = (void *)&cases[i];
	}
	memset(&tests[i], 0, sizeof(tests[i]));
	tests[i].name = "same turn";
	tests[i].test_func = test_same_turn;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
