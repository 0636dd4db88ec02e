/*
 * main.c — outpostd: start-up, threads, signals, reload, orderly shutdown.
 *
 * Owns: the process: configuration generations, the queue, the I/O loops,
 * the worker pool.  The main thread only handles signals, and builds a
 * reload's generation (SIGHUP, `outpost reload`); every session lives on a
 * loop thread.  Stop (SIGTERM, SIGINT, `outpost drain`): new connections
 * get 421, SMTP transactions end, then deliveries (shutdown_timeout each),
 * then loops, pool and queue writer stop; exit 0.  systemd (Type=notify):
 * READY=1, RELOADING=1, STOPPING=1, STATUS= lines, WATCHDOG=1.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "conf/conf.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "mta/receive/arf.h"
#include "mta/receive/auth.h"
#include "mta/receive/auth_limit.h"
#include "mta/receive/confgen.h"
#include "mta/control/control.h"
#include "mta/deliver/cluster.h"
#include "mta/deliver/delivery.h"
#include "mta/deliver/mtasts.h"
#include "mta/deliver/tlsrpt.h"
#include "mta/observe/evlog.h"
#include "mta/observe/history.h"
#include "mta/observe/metrics_top.h"
#include "mta/receive/intake.h"
#include "mta/receive/listen.h"
#include "mta/receive/peer.h"
#include "mta/receive/scan.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/logkeep.h"
#include "mta/core/logspace.h"
#include "mta/core/loop.h"
#include "mta/observe/metrics.h"
#include "mta/observe/quota.h"
#include "mta/observe/watchdog.h"
#include "mta/core/notify.h"
#include "mta/core/priv.h"
#include "mta/receive/smtp_mem.h"
#include "mta/receive/smtp_server.h"
#include "mta/observe/stats.h"
#include "mta/observe/suppress.h"
#include "mta/core/tls.h"
#include "mta/core/util.h"
#include "mta/core/worker.h"

/* How often systemd's STATUS= line is refreshed (`systemctl status`). */
#define NOTIFY_STATUS_MS 5000

struct stats stats;

/* The configuration of the start: what only a restart changes (data_dir,
 * queue, user, threads, logs, control socket, …) is read from it alone. */
static struct conf *conf;
/* The generation new sessions start under (main thread's reference). */
static struct confgen *gen;
static const char *conf_file; /* -c, or NULL: the embedded defaults */
static struct queue *queue;
static struct queue_point_thread *points; /* the restore thread */
static struct loop *loops;
static unsigned nloops;
static struct loop dloop; /* the delivery loop */
static struct event_base *main_base;
static int shutting_down;
static unsigned stop_timeout_ms; /* shutdown_timeout of the stop begun */
/* `outpost reload` requests waiting for the main thread (their control
 * sessions), handed over by the delivery loop. */
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;
static void **reload_tokens;
static size_t reload_ntokens;
static struct event *ev_reload;
/* Every second while a replaced generation is still in use: free those
 * nobody uses any more, here rather than on a loop (confgen_reap). */
#define REAP_INTERVAL_MS 1000
static struct event *ev_reap;
/* SMTP loops whose sessions have not all ended since the stop began; the
 * last one starts the delivery loop's stop.  smtp_drained[i]: loop i has
 * counted itself (its own thread's flag). */
static atomic_uint smtp_busy;
static bool *smtp_drained;
static struct event *ev_drain; /* `outpost drain`, on the main thread */
/* Ready: the loops that have not yet run their first posted job (the
 * delivery loop's comes after the queue load); the last one makes ev_ready
 * active, on the main thread. */
static atomic_uint ready_pending;
static struct event *ev_ready, *ev_status, *ev_watchdog;

/* Long options; --version has no short form (-v is verbose). */
#define MAIN_OPT_VERSION 256
static const struct option main_long_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, MAIN_OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* The usage text on F; exit with STATUS (0: asked for, 2: a bad command
 * line). */
static void
usage(FILE *f, int status)
{
	fprintf(f, "usage: outpostd [-t] [-v] [-T trace] [-c file]\n"
		   "       outpostd --help | --version\n"
		   "  -c file    configuration (default: embedded defaults)\n"
		   "  -t         check the configuration and exit\n"
		   "  -v         verbose (debug) diagnostics\n"
		   "  -T list    trace: smtp,queue,dns,tls,auth,all (comma "
		   "separated)\n"
		   "  -h, --help print this and exit\n"
		   "  --version  print the version and exit\n");
	exit(status);
}

static unsigned
parse_trace(const char *s)
{
	static const struct {
		const char *name;
		unsigned bit;
	} t[] = { { "smtp", TRACE_SMTP }, { "queue", TRACE_QUEUE },
		  { "dns", TRACE_DNS },   { "tls", TRACE_TLS },
		  { "auth", TRACE_AUTH }, { "all", ~0u } };
	char *copy, *tok, *save = NULL;
	unsigned mask = 0;
	size_t i;

	if ((copy = strdup(s)) == NULL)
		fatal("strdup");
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
			if (strcmp(tok, t[i].name) == 0)
				break;
		if (i == sizeof(t) / sizeof(t[0]))
			fatalx("unknown trace flag \"%s\"", tok);
		mask |= t[i].bit;
	}
	free(copy);
	return mask;
}

/*
 * The resolver settings from the configuration, into DC (every loop's
 * resolver is made with them).  LOOPBACK_ONLY (the tests' switch): no byte
 * may leave loopback, and without servers of their own there is no DNS at
 * all: false then, no resolver may be made.
 */
static bool
dns_config_from(const struct conf *c, bool loopback_only, struct dns_config *dc)
{
	memset(dc, 0, sizeof(*dc));
	dc->servers = c->dns.servers;
	dc->timeout_ms = c->dns.timeout_ms;
	dc->tries = c->dns.tries;
	dc->cache_max = c->dns.cache_size;
	dc->no_cache = c->dns.cache_size == 0; /* "0 = no cache" */
	dc->min_ttl = c->dns.min_ttl_s;
	dc->max_ttl = c->dns.max_ttl_s;
	dc->negative_ttl_max = c->dns.negative_ttl_max_s;
	dc->max_inflight = c->dns.max_inflight;
	dc->dnssec = c->dns.dnssec;
	dc->loopback_only = loopback_only;
	return !(loopback_only && dc->servers == NULL);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("setrlimit(RLIMIT_NOFILE)");
	}
}

static void
sched_shutdown_on_loop(void *arg)
{
	(void)arg;
	control_stop();
	sched_shutdown(stop_timeout_ms);
}

/* On SMTP loop L: its sessions have ended (smtp_server_shutdown may say so
 * more than once); the last loop to say it lets delivery stop. */
static void
smtp_drained_on_loop(struct loop *l)
{
	size_t i = (size_t)(l - loops);

	if (smtp_drained[i])
		return;
	smtp_drained[i] = true;
	if (atomic_fetch_sub(&smtp_busy, 1) == 1)
		loop_post(&dloop, sched_shutdown_on_loop, NULL);
}

/* On each SMTP loop: wind the sessions down; the listeners stay, answering
 * 421, until delivery has stopped too. */
static void
shutdown_on_loop(void *arg)
{
	smtp_server_shutdown(arg, stop_timeout_ms, smtp_drained_on_loop);
}

/* On each SMTP loop, once delivery has stopped: close and leave. */
static void
close_on_loop(void *arg)
{
	listen_close(arg);
	loop_stop(arg);
}

/*
 * Started as root: the account to become once everything that needs root is
 * open, looked up before anything is created so that a missing account
 * stops the daemon before it leaves files behind.  False: no change of
 * credentials (not root, or allow_root).
 */
static bool
privilege_plan(struct priv *p)
{
	char err[512];

	/* Nothing outpostd runs (restore.command) may gain privileges
	 * through exec: set for every thread, so before the first. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fatal("prctl(PR_SET_NO_NEW_PRIVS)");
	if (geteuid() != 0 || conf->allow_root)
		return false;
	if (priv_lookup(conf->user, p, err, sizeof(err)) != 0)
		fatalx("%s: %s", conf->file, err);
	if (conf->log.delivery_group_set)
		p->keep_gid = conf->log.delivery_gid;
	return true;
}

/* The delivery log's group and mode (log { delivery_file_group }). */
static void
delivery_log_perms(void)
{
	char err[512];

	if (evlog_file_perms(
		conf->log.delivery_group_set ? conf->log.delivery_gid
					     : (gid_t)-1,
		conf->log.delivery_file_mode, err, sizeof(err)) != 0)
		fatalx("delivery log: %s", err);
}

/*
 * Hand the daemon's own files to its account, then become it.  Everything
 * under data_dir is the daemon's; files configured elsewhere (logs, the
 * queue, the control socket) are handed over themselves, not their
 * directories.  Main thread, before the loops serve anyone.
 */
static void
privilege_drop(const struct priv *p)
{
	const char *own[] = { conf->data_dir,          conf->queue.path,
			      conf->queue.key_file,    conf->hash_key_file,
			      conf->log.delivery_file, conf->log.audit_file,
			      conf->control.socket,    conf->restore.dir };
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (own[i] != NULL && own[i][0] != '\0' &&
		    priv_chown_tree(own[i], p, err, sizeof(err)) != 0)
			fatalx("%s", err);
	delivery_log_perms(); /* the group the tree's owner just replaced */
	if (priv_drop(p, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (priv_dir_usable(conf->data_dir, err, sizeof(err)) != 0)
		fatalx("data_dir %s", err);
	log_info("running as user %s (uid %u, gid %u)", p->name,
		 (unsigned)p->uid, (unsigned)p->gid);
}

/* The restore thread's settings from C (strings copied by the thread). */
static void
points_settings(const struct conf *c, struct queue_point_settings *ps)
{
	memset(ps, 0, sizeof(*ps));
	ps->interval_ms = (int64_t)c->restore.interval_ms;
	ps->dir = c->restore.dir;
	ps->copy_to = c->restore.copy_to;
	ps->command = c->restore.command;
	ps->command_timeout_ms = (int64_t)c->restore.command_timeout_ms;
	ps->keep.all_ms = (int64_t)c->restore.keep_all_ms;
	ps->keep.hourly_ms = (int64_t)c->restore.keep_hourly_ms;
	ps->keep.daily_ms = (int64_t)c->restore.keep_daily_ms;
	ps->keep.max_age_ms = (int64_t)c->retention.restore_points_ms;
}

/* Restore thread: its lines into the diagnostics (never an address). */
static void
points_log(enum queue_point_level level, const char *msg, void *arg)
{
	(void)arg;
	if (level == QPL_WARN)
		log_warnx("%s", msg);
	else
		log_info("%s", msg);
}

/* SIGUSR1: logrotate moved the delivery log; open a new one. */
static void
reopen_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_info("SIGUSR1: reopening the delivery log");
	evlog_reopen();
}

/* Queue writer thread: every committed batch, for the histograms. */
static void
commit_observed(unsigned ops, uint64_t commit_us)
{
	metrics_observe(&metrics_commit_batch, (double)ops);
	(void)commit_us;
}

/* A verified complaint (worker thread): the recipient goes on the sending
 * identity's suppression list (a redacted report names none: nothing to
 * suppress) and the complaint counts in the identity's watchdog profile. */
static void
complaint_observed(const struct arf_complaint *c, void *arg)
{
	(void)arg;
	if (c->rcpt != NULL)
		(void)suppress_complaint(c->identity, c->rcpt, c->queue_id);
	watchdog_note_complaint(c->identity, c->rcpt);
}

/* What the daemon keeps per user, for `purge` and the retention sweep
 * (mta/observe/history.h). */
static void
history_stores_register(void)
{
	static const struct history_store stores[] = {
		{ "auth-limit", auth_limit_purge_user, auth_limit_expire,
		  NULL },
		{ "metrics", metrics_user_forget, NULL, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(stores) / sizeof(stores[0]); i++)
		if (history_register(&stores[i]) != 0)
			fatalx("history store %s: too many stores",
			       stores[i].name);
}

/*
 * The STATUS= line, on the delivery loop (sched_queued is its thread's):
 * the queue and the rates since the previous line, from counters that cost
 * a load each.
 */
static void
status_on_loop(void *arg)
{
	static uint64_t last_ms, last_acc, last_del, last_def, last_bnc;
	uint64_t now = (uint64_t)util_mono_ms(),
		 acc = STATS_GET(messages_accepted), del = STATS_GET(delivered),
		 def = STATS_GET(deferred), bnc = STATS_GET(bounced);
	double s;

	(void)arg;
	if (last_ms == 0 || now <= last_ms) {
		notify_status("%llu queued",
			      (unsigned long long)sched_queued());
	} else {
		s = (double)(now - last_ms) / 1000;
		notify_status(
		    "%llu queued; per second: %.1f accepted, %.1f "
		    "delivered, %.1f deferred, %.1f bounced",
		    (unsigned long long)sched_queued(),
		    (double)(acc - last_acc) / s, (double)(del - last_del) / s,
		    (double)(def - last_def) / s, (double)(bnc - last_bnc) / s);
	}
	last_ms = now;
	last_acc = acc;
	last_del = del;
	last_def = def;
	last_bnc = bnc;
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	loop_post(&dloop, status_on_loop, NULL);
}

static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_watchdog();
}

/* Main thread: every loop answered; a stop that began meanwhile wins. */
static void
ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv;

	(void)fd;
	(void)what;
	(void)arg;
	if (shutting_down)
		return;
	notify_state(NOTIFY_READY);
	loop_post(&dloop, status_on_loop, NULL);
	tv = util_ms_timeval(NOTIFY_STATUS_MS);
	if (ev_status != NULL)
		evtimer_add(ev_status, &tv);
}

/* An SMTP loop's first and last steps on its thread: its delivery log
 * lines (a reception per message) go in batches, one lock a turn. */
static void
evlog_batch_on_loop(void *arg)
{
	struct loop *l = arg;

	(void)evlog_batch_begin(l->base);
}

static void
evlog_batch_off_loop(void *arg)
{
	(void)arg;
	evlog_batch_end();
}

/* On each loop: it runs; on the delivery loop, after the queue load. */
static void
ready_on_loop(void *arg)
{
	(void)arg;
	if (atomic_fetch_sub(&ready_pending, 1) == 1)
		event_active(ev_ready, EV_TIMEOUT, 0);
}

/* Main thread: the one way a stop begins (WHY: what asked for it). */
static void
stop_begin(const char *why)
{
	unsigned i;

	shutting_down = 1;
	stop_timeout_ms = gen->conf->shutdown_timeout_ms;
	listen_intake_set(LISTEN_INTAKE_DRAINING);
	notify_state(NOTIFY_STOPPING);
	log_info("%s: shutting down (transactions, then deliveries, in flight "
		 "get %u ms each)",
		 why, stop_timeout_ms);
	atomic_store(&smtp_busy, nloops);
	for (i = 0; i < nloops; i++)
		loop_post(&loops[i], shutdown_on_loop, &loops[i]);
	event_base_loopexit(main_base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	char why[32];

	(void)what;
	(void)arg;
	if (shutting_down) {
		log_warnx("signal %d again: exiting at once", (int)sig);
		_exit(1);
	}
	(void)snprintf(why, sizeof(why), "signal %d", (int)sig);
	stop_begin(why);
}

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!shutting_down) /* a signal came first: that stop goes on */
		stop_begin("outpost drain");
}

/* Delivery loop (control): `outpost drain` was answered; stop as SIGTERM
 * does, from the main thread. */
static void
drain_hook(void)
{
	event_active(ev_drain, EV_TIMEOUT, 0);
}

/* Reload ----------------------------------------------------------------- */

/* logkeep's hook for the delivery log: the writer has reopened it. */
static void
delivery_log_rotated(void *arg)
{
	(void)arg;
	evlog_reopen_wait();
}

/* The daemon rotates its two logs itself (mta/core/logkeep.h), on the
 * keeper's thread, which starts here: after the drop of root (the .gz files
 * are the account's), before the loops (it inherits their signal mask). */
static void
logs_keep_start(void)
{
	char err[512];

	if (conf->log.delivery_file != NULL &&
	    logkeep_add("delivery log", conf->log.delivery_file,
			(int64_t)conf->retention.delivery_log_ms,
			delivery_log_rotated, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (conf->log.audit_file != NULL && conf->log.audit_file[0] != '\0' &&
	    logkeep_add("audit log", conf->log.audit_file,
			(int64_t)conf->retention.audit_log_ms,
			control_audit_rotated, NULL, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (logkeep_start(err, sizeof(err)) != 0)
		fatalx("%s", err);
}

/* A reload's retention of the logs (their paths take a restart). */
static void
logs_keep_reconf(const struct conf *nc)
{
	if (conf->log.delivery_file != NULL)
		logkeep_lifetime_set(conf->log.delivery_file,
				     (int64_t)nc->retention.delivery_log_ms);
	if (conf->log.audit_file != NULL)
		logkeep_lifetime_set(conf->log.audit_file,
				     (int64_t)nc->retention.audit_log_ms);
}

/* Append "KEY changed: takes effect at restart" to OUT for each key only a
 * restart applies whose value differs between the start's and NC. */
static void
reload_fixed(const struct conf *nc, char *out, size_t len, unsigned *n)
{
	const struct conf *oc = conf;
	size_t off = strlen(out), i;
	bool acc = oc->control.naccess != nc->control.naccess;
#define STR_NE(a, b)                                                           \
	(((a) == NULL) != ((b) == NULL) || ((a) != NULL && strcmp(a, b) != 0))
#define FIXED(key, changed)                                                    \
	do {                                                                   \
		if ((changed) && off < len) {                                  \
			off += (size_t)snprintf(                               \
			    out + off, len - off,                              \
			    "\nwarning: %s changed: takes effect at restart",  \
			    key);                                              \
			log_warnx("reload: %s changed: takes effect at "       \
				  "restart",                                   \
				  key);                                        \
			(*n)++;                                                \
		}                                                              \
	} while (0)

	for (i = 0; !acc && i < nc->control.naccess; i++)
		acc = oc->control.access[i].uid != nc->control.access[i].uid ||
		      oc->control.access[i].rights !=
			  nc->control.access[i].rights;
	FIXED("data_dir", STR_NE(oc->data_dir, nc->data_dir));
	FIXED("user",
	      STR_NE(oc->user, nc->user) || oc->allow_root != nc->allow_root);
	FIXED("smtp_threads", oc->smtp_threads != nc->smtp_threads);
	FIXED("worker_threads", oc->worker_threads != nc->worker_threads);
	FIXED("hash_key_file", STR_NE(oc->hash_key_file, nc->hash_key_file));
	FIXED("queue",
	      STR_NE(oc->queue.path, nc->queue.path) ||
		  STR_NE(oc->queue.key_file, nc->queue.key_file) ||
		  oc->queue.map_size != nc->queue.map_size ||
		  oc->queue.commit_interval_us !=
		      nc->queue.commit_interval_us ||
		  oc->queue.commit_max_batch != nc->queue.commit_max_batch ||
		  oc->queue.prepare_wait_us != nc->queue.prepare_wait_us);
	FIXED("limits.max_body_memory",
	      oc->limits.max_body_memory != nc->limits.max_body_memory);
	FIXED("log",
	      STR_NE(oc->log.delivery_file, nc->log.delivery_file) ||
		  STR_NE(oc->log.audit_file, nc->log.audit_file) ||
		  oc->log.delivery_file_mode != nc->log.delivery_file_mode ||
		  oc->log.delivery_group_set != nc->log.delivery_group_set ||
		  oc->log.delivery_gid != nc->log.delivery_gid ||
		  oc->log.disk_reserve != nc->log.disk_reserve ||
		  oc->log.disk_reserve_percent != nc->log.disk_reserve_percent);
	FIXED("control", STR_NE(oc->control.socket, nc->control.socket) ||
			     oc->control.group_set != nc->control.group_set ||
			     oc->control.gid != nc->control.gid || acc);
	FIXED("metrics.listen", STR_NE(oc->metrics.listen, nc->metrics.listen));
	FIXED("dns",
	      STR_NE(oc->dns.servers, nc->dns.servers) ||
		  oc->dns.timeout_ms != nc->dns.timeout_ms ||
		  oc->dns.tries != nc->dns.tries ||
		  oc->dns.cache_size != nc->dns.cache_size ||
		  oc->dns.min_ttl_s != nc->dns.min_ttl_s ||
		  oc->dns.max_ttl_s != nc->dns.max_ttl_s ||
		  oc->dns.negative_ttl_max_s != nc->dns.negative_ttl_max_s);
	FIXED("delivery.threads", oc->delivery.threads != nc->delivery.threads);
	FIXED(
	    "cluster",
	    STR_NE(oc->cluster.redis_host, nc->cluster.redis_host) ||
		oc->cluster.redis_port != nc->cluster.redis_port ||
		STR_NE(oc->cluster.password_file, nc->cluster.password_file) ||
		STR_NE(oc->cluster.node, nc->cluster.node) ||
		oc->cluster.nodes != nc->cluster.nodes ||
		oc->cluster.timeout_ms != nc->cluster.timeout_ms ||
		oc->cluster.lease_ms != nc->cluster.lease_ms ||
		STR_NE(oc->cluster.prefix, nc->cluster.prefix));
	FIXED("delivery.tls_ca_file/tls_ca_path",
	      STR_NE(oc->delivery.tls_ca_file, nc->delivery.tls_ca_file) ||
		  STR_NE(oc->delivery.tls_ca_path, nc->delivery.tls_ca_path));
	FIXED("dmarc.psl_file", STR_NE(oc->dmarc.psl_file, nc->dmarc.psl_file));
#undef FIXED
#undef STR_NE
}

/* How many names of NEW (NN of them, at STRIDE bytes apart from the first,
 * each a char *) OLD lacks (*ADDED), and the reverse (*REMOVED). */
static void
reload_count(const void *old, size_t no, const void *new, size_t nn,
	     size_t stride, unsigned *added, unsigned *removed)
{
	struct htab h;
	size_t i;
	unsigned found = 0;

	*added = *removed = 0;
	if (htab_init(&h) != 0)
		return;
	for (i = 0; i < no; i++)
		(void)htab_put(&h,
			       *(char *const *)((const char *)old + i * stride),
			       (void *)1);
	for (i = 0; i < nn; i++) {
		if (htab_get(&h, *(char *const *)((const char *)new +
						  i *stride)) != NULL)
			found++;
		else
			(*added)++;
	}
	*removed = (unsigned)no - found;
	htab_free(&h);
}

/* Main thread: replaced generations nobody uses any more are freed. */
static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (confgen_reap(false) == 0)
		evtimer_del(ev_reap);
}

/*
 * A reload, on the main thread (never on a loop): the file read again and
 * checked whole (text, host, keys, certificates, new sockets) into a new
 * generation; only then is it published, to every SMTP loop (new sessions
 * start under it; each session keeps the one it started with) and to the
 * delivery loop.  Invalid: the old generation stays.  OUT receives what
 * changed (lines) or why it was refused.  0 ok, -1 refused.
 */
static int
reload_run(char *out, size_t len)
{
	struct conf *nc = NULL;
	struct confgen *ng = NULL, *old = gen;
	struct listen_plan *plan = NULL;
	struct queue_point_settings ps;
	const struct conf *oc = gen->conf;
	int64_t t0 = util_mono_ms();
	unsigned la, lr, ua, ur, da, dr, nfixed = 0;
	struct timeval tv;
	char err[1024];

	notify_state(NOTIFY_RELOADING);
	out[0] = '\0';
	if (conf_load(&nc, conf_file, err, sizeof(err)) != 0 ||
	    conf_check_host(nc, err, sizeof(err)) != 0 ||
	    confgen_new(nc, old->number + 1, true, &ng, err, sizeof(err)) !=
		0 ||
	    listen_plan_make(old, ng, &plan, &la, &lr, err, sizeof(err)) != 0) {
		snprintf(out, len, "%s", err);
		log_warnx("reload refused, generation %llu stays: %s",
			  (unsigned long long)old->number, err);
		confgen_unref(ng);
		conf_unref(nc);
		notify_state(NOTIFY_READY);
		return -1;
	}
	listen_plan_apply(loops, plan);
	sched_reconf(nc);
	watchdog_reconf(nc);
	quota_reconf(nc);
	scan_reconf(nc);
	control_purge_reconf(nc);
	suppress_configure(nc);
	points_settings(nc, &ps);
	if (queue_point_thread_set(points, &ps) != 0)
		log_warnx("reload: restore points keep their settings: out "
			  "of memory");
	logs_keep_reconf(nc);
	gen = ng;
	conf_unref(nc); /* ng holds it */
	reload_count(oc->users, oc->nusers, nc->users, nc->nusers,
		     sizeof(*nc->users), &ua, &ur);
	reload_count(oc->dkims, oc->ndkims, nc->dkims, nc->ndkims,
		     sizeof(*nc->dkims), &da, &dr);
	snprintf(out, len,
		 "generation %llu in %lld ms: users %zu (+%u -%u), dkim %zu "
		 "(+%u -%u), listeners %zu (+%u -%u), routes %zu, "
		 "destinations %zu, pools %zu, relay networks %zu",
		 (unsigned long long)ng->number,
		 (long long)(util_mono_ms() - t0), nc->nusers, ua, ur,
		 nc->ndkims, da, dr, nc->nlisteners, la, lr, nc->nroutes,
		 nc->ndestinations, nc->npools, nc->nnetworks);
	log_info("reload: %s", out);
	reload_fixed(nc, out, len, &nfixed);
	/* Sessions of the old generation hold it until they end; the main
	 * thread frees it after them (reap_cb). */
	confgen_retire(old, conf); /* conf: the control socket's */
	tv = util_ms_timeval(REAP_INTERVAL_MS);
	if (!evtimer_pending(ev_reap, NULL))
		evtimer_add(ev_reap, &tv);
	notify_state(NOTIFY_READY);
	return 0;
}

/* Main thread: reload once for everyone who asked meanwhile (SIGHUP:
 * nobody to answer; `outpost reload`: its sessions). */
static void
reload_serve(void)
{
	char text[4096];
	void **tokens;
	size_t n, i;
	int rc;

	pthread_mutex_lock(&reload_mu);
	tokens = reload_tokens;
	n = reload_ntokens;
	reload_tokens = NULL;
	reload_ntokens = 0;
	pthread_mutex_unlock(&reload_mu);
	if (shutting_down) {
		snprintf(text, sizeof(text), "the daemon is stopping");
		rc = -1;
	} else {
		rc = reload_run(text, sizeof(text));
	}
	if (n == 0)
		control_reload_done(NULL, rc == 0, text,
				    rc == 0 ? gen->conf : NULL);
	for (i = 0; i < n; i++)
		control_reload_done(tokens[i], rc == 0, text,
				    rc == 0 ? gen->conf : NULL);
	free(tokens);
}

static void
hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_info("SIGHUP: reloading %s", conf->file);
	reload_serve();
}

static void
reload_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	reload_serve();
}

/* Delivery loop (control): `outpost reload` from session TOKEN; the main
 * thread does it and answers through control_reload_done. */
static void
reload_hook(void *token)
{
	void **v;

	pthread_mutex_lock(&reload_mu);
	v = realloc(reload_tokens, (reload_ntokens + 1) * sizeof(*v));
	if (v == NULL)
		fatal("realloc");
	reload_tokens = v;
	reload_tokens[reload_ntokens++] = token;
	pthread_mutex_unlock(&reload_mu);
	event_active(ev_reload, EV_TIMEOUT, 0);
}

/*
 * Started as root: every key and certificate file the configuration names
 * must stay readable by the account it becomes, or the first reload will
 * fail (outpostd never keeps root, nor a helper that has it): said now.
 */
static void
privilege_keys_warn(const struct priv *p)
{
	const char *files[4];
	struct stat st;
	size_t i, k, n;

	for (i = 0; i <= conf->nlisteners + conf->ndkims; i++) {
		n = 0;
		if (i == 0) {
			files[n++] = conf->tls.cert_file;
			files[n++] = conf->tls.key_file;
		} else if (i <= conf->nlisteners) {
			files[n++] = conf->listeners[i - 1].cert_file;
			files[n++] = conf->listeners[i - 1].key_file;
		} else {
			files[n++] =
			    conf->dkims[i - 1 - conf->nlisteners].rsa_key;
			files[n++] =
			    conf->dkims[i - 1 - conf->nlisteners].ed25519_key;
		}
		for (k = 0; k < n; k++) {
			if (files[k] == NULL || stat(files[k], &st) != 0)
				continue;
			if ((st.st_uid == p->uid && (st.st_mode & S_IRUSR)) ||
			    (st.st_gid == p->gid && (st.st_mode & S_IRGRP)) ||
			    (st.st_mode & S_IROTH))
				continue;
			log_warnx("%s is not readable by user %s: a reload "
				  "will fail to read it (make it owned by %s, "
				  "mode 0600)",
				  files[k], p->name, p->name);
		}
	}
}

int
main(int argc, char *argv[])
{
	const char *file = NULL;
	struct queue_config qc;
	struct queue_point_settings ps;
	struct queue_stats qs;
	struct sched_config sc;
	struct dns_config dc;
	SSL_CTX *client_ctx;
	const char *lo;
	struct event *ev_term, *ev_int, *ev_usr1;
	struct timeval tv;
	uint64_t watchdog_usec, left;
	struct intake_keyset *ks = NULL;
	struct event *ev_hup;
	sigset_t early;
	uint8_t hash_key[QUEUE_KEY_BYTES];
	char err[1024];
	struct priv pv;
	bool check = false, drop, loopback_only, have_dns;
	enum log_level level = LOG_LEVEL_INFO;
	unsigned trace = 0, i;
	size_t j;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:tvT:h", main_long_opts,
				 NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = conf_file = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'v':
			level = LOG_LEVEL_DEBUG;
			break;
		case 'T':
			trace = parse_trace(optarg);
			break;
		case 'h':
			usage(stdout, 0);
			break;
		case MAIN_OPT_VERSION:
			printf("outpostd %s\n", OUTPOST_VERSION);
			return 0;
		default:
			usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);
	log_init(level, trace);
	if (conf_load(&conf, file, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	/* What the text cannot tell: key files and source addresses. */
	if (conf_check_host(conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		conf_free(conf);
		return 1;
	}
	if (check) {
		if (geteuid() == 0 && !conf->allow_root &&
		    priv_lookup(conf->user, &pv, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s: %s\n", conf->file, err);
			conf_free(conf);
			return 1;
		}
		/* Load the keys as the daemon would (format, type, size). */
		if (intake_init(conf, NULL, err, sizeof(err)) != 0 ||
		    intake_keyset_load(conf, false, &ks, err, sizeof(err)) !=
			0) {
			fprintf(stderr, "%s\n", err);
			intake_free();
			conf_free(conf);
			return 1;
		}
		intake_keyset_free(ks);
		intake_free();
		printf("outpostd: configuration %s is valid\n", conf->file);
		conf_free(conf);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	/* Until the main loop handles them (below), SIGTERM, SIGINT and
	 * SIGUSR1 wait: a stop asked for during start-up (the listeners
	 * accept before the loops run) is then a clean stop, not a kill.
	 * Every thread started meanwhile inherits the mask, so they reach
	 * the main thread only. */
	sigemptyset(&early);
	sigaddset(&early, SIGTERM);
	sigaddset(&early, SIGINT);
	sigaddset(&early, SIGUSR1);
	sigaddset(&early, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &early, NULL);
	umask(077);
	drop = privilege_plan(&pv);
	if (!drop && geteuid() == 0)
		log_warnx("allow_root = true: outpostd keeps running as root");
	if (drop)
		privilege_keys_warn(&pv);
	raise_nofile();
	if (evthread_use_pthreads() != 0)
		fatalx("evthread_use_pthreads failed");
	if (sodium_init() < 0 || auth_init() != 0)
		fatalx("libsodium initialisation failed");
	if (util_mkdir_p(conf->data_dir, 0700) != 0)
		fatal("%s", conf->data_dir);
	if (util_mkdir_p(conf->restore.dir, 0700) != 0)
		fatal("restore.dir %s", conf->restore.dir);
	if (queue_keyfile_load(conf->hash_key_file, true, hash_key, err,
			       sizeof(err)) != 0)
		fatalx("%s", err);
	if (conf->log.delivery_file != NULL &&
	    util_mkdir_parent(conf->log.delivery_file) != 0)
		fatal("creating the directory of %s", conf->log.delivery_file);
	if (conf->log.audit_file != NULL &&
	    util_mkdir_parent(conf->log.audit_file) != 0)
		fatal("creating the directory of %s", conf->log.audit_file);
	logspace_init(conf->log.disk_reserve, conf->log.disk_reserve_percent);
	if (evlog_open(conf->log.delivery_file, hash_key, err, sizeof(err)) !=
	    0)
		fatalx("delivery log: %s", err);
	delivery_log_perms();

	memset(&qc, 0, sizeof(qc));
	qc.path = conf->queue.path;
	qc.key_file = conf->queue.key_file;
	qc.map_size = conf->queue.map_size;
	qc.commit_interval_us = conf->queue.commit_interval_us;
	qc.commit_max_batch = conf->queue.commit_max_batch;
	qc.prepare_wait_us = conf->queue.prepare_wait_us;
	if (queue_open(&queue, &qc, err, sizeof(err)) != 0)
		fatalx("queue: %s", err);
	/* A commit's completions go to each loop in one post (queue writes
	 * of the scheduler, acceptance's messages: loop_post_defer). */
	queue_done_hook(queue, loop_post_flush);
	if (auth_limit_restore(queue, &conf->auth_limit, util_wall_ms(), err,
			       sizeof(err)) != 0)
		log_warnx("auth limit: blocks kept before: %s", err);
	history_stores_register();
	if (suppress_init(queue, conf, hash_key) != 0)
		fatalx("suppression list: out of memory");
	sodium_memzero(hash_key, sizeof(hash_key));
	arf_complaint_hook(complaint_observed, NULL);
	if (quota_open(conf, conf->cluster.redis_host != NULL
				 ? conf->cluster.nodes
				 : 1) != 0)
		fatalx("quotas: out of memory");
	if (watchdog_open(conf, queue, err, sizeof(err)) != 0)
		fatalx("watchdog: %s", err);
	if (intake_init(conf, queue, err, sizeof(err)) != 0 ||
	    confgen_new(conf, 1, false, &gen, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (scan_init(conf) != 0)
		fatalx("scan: out of memory");
	smtp_server_init(conf, queue, sched_message_add);
	if (worker_start(conf->worker_threads) != 0)
		fatal("starting worker threads");

	/* The tests' switch (OUTPOST_LOOPBACK_ONLY=1), read here only. */
	lo = getenv("OUTPOST_LOOPBACK_ONLY");
	loopback_only = lo != NULL && strcmp(lo, "1") == 0;
	have_dns = dns_config_from(conf, loopback_only, &dc);
	nloops = conf->smtp_threads;
	if ((loops = calloc(nloops, sizeof(*loops))) == NULL ||
	    (smtp_drained = calloc(nloops, sizeof(*smtp_drained))) == NULL)
		fatal("calloc");
	for (i = 0; i < nloops; i++) {
		if (loop_init(&loops[i], i) != 0)
			fatalx("cannot create event loop %u", i);
		/* Each loop resolves on its own (DMARC policies). */
		if (have_dns &&
		    (loops[i].dns = dns_resolver_new(loops[i].base, &dc, err,
						     sizeof(err))) == NULL)
			fatalx("dns: %s", err);
	}
	if (loop_init(&dloop, nloops) != 0)
		fatalx("cannot create the delivery loop");
	client_ctx =
	    tls_client_ctx_new(conf->delivery.tls_ca_file,
			       conf->delivery.tls_ca_path, err, sizeof(err));
	if (client_ctx == NULL)
		fatalx("delivery: %s", err);
	memset(&sc, 0, sizeof(sc));
	sc.loop = &dloop;
	sc.conf = conf;
	sc.queue = queue;
	sc.ssl_ctx = client_ctx;
	sc.dns = have_dns ? &dc : NULL;
	sc.loopback_only = loopback_only;
	if (sched_init(&sc, err, sizeof(err)) != 0)
		fatalx("delivery: %s", err);
	if (listen_open(loops, nloops, gen, err, sizeof(err)) != 0)
		fatalx("%s", err);

	if ((main_base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	if (conf->metrics.listen != NULL &&
	    metrics_start(main_base, (struct sockaddr *)&conf->metrics.addr,
			  conf->metrics.addrlen, queue, err, sizeof(err)) != 0)
		fatalx("metrics %s: %s", conf->metrics.listen, err);
	metrics_set_sessions(peer_sessions_total);
	metrics_add_text(sched_metrics_text);
	metrics_add_text(logspace_metrics_text);
	metrics_add_text(suppress_metrics_text);
	metrics_add_text(watchdog_metrics_text);
	metrics_add_text(quota_metrics_text);
	metrics_add_text(scan_metrics_text);
	metrics_add_text(smtp_mem_metrics_text);
	metrics_add_text(cluster_metrics_text);
	metrics_add_text(mtasts_metrics_text);
	metrics_add_text(tlsrpt_metrics_text);
	queue_commit_hook(queue, commit_observed);
	ev_usr1 = evsignal_new(main_base, SIGUSR1, reopen_cb, NULL);
	if (ev_usr1 == NULL || evsignal_add(ev_usr1, NULL) != 0)
		fatalx("cannot install the SIGUSR1 handler");
	ev_term = evsignal_new(main_base, SIGTERM, signal_cb, NULL);
	ev_int = evsignal_new(main_base, SIGINT, signal_cb, NULL);
	if (ev_term == NULL || ev_int == NULL || evsignal_add(ev_term, NULL) ||
	    evsignal_add(ev_int, NULL))
		fatalx("cannot install signal handlers");
	ev_hup = evsignal_new(main_base, SIGHUP, hup_cb, NULL);
	if (ev_hup == NULL || evsignal_add(ev_hup, NULL) != 0)
		fatalx("cannot install the SIGHUP handler");
	ev_ready = event_new(main_base, -1, 0, ready_cb, NULL);
	ev_drain = event_new(main_base, -1, 0, drain_cb, NULL);
	ev_reload = event_new(main_base, -1, 0, reload_cb, NULL);
	ev_reap = event_new(main_base, -1, EV_PERSIST, reap_cb, NULL);
	if (ev_ready == NULL || ev_drain == NULL || ev_reload == NULL ||
	    ev_reap == NULL)
		fatalx("event_new failed");
	control_drain_hook(drain_hook);
	control_reload_hook(reload_hook);
	if (notify_enabled() &&
	    (ev_status =
		 event_new(main_base, -1, EV_PERSIST, status_cb, NULL)) == NULL)
		fatalx("event_new failed");
	/* The main loop is what answers signals: alive means it turns. */
	if ((watchdog_usec = notify_watchdog_usec()) > 0) {
		ev_watchdog =
		    event_new(main_base, -1, EV_PERSIST, watchdog_cb, NULL);
		tv.tv_sec = (time_t)(watchdog_usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(watchdog_usec / 2 % 1000000);
		if (ev_watchdog == NULL || evtimer_add(ev_watchdog, &tv) != 0)
			fatalx("cannot arm the watchdog timer");
	}
	/* The queue is loaded first (its job is the delivery loop's first),
	 * then the control socket opens; both before root is given up. */
	atomic_store(&ready_pending, nloops + 1);
	sched_ready(ready_on_loop, NULL);
	sched_start();
	if (control_start(&dloop, conf, queue, err, sizeof(err)) != 0)
		fatalx("control socket: %s", err);
	if (control_purge_start(conf, queue, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (drop)
		privilege_drop(&pv);
	/* As the daemon's user: its points are its files.  Off every loop:
	 * acceptance and delivery never wait for a point. */
	points_settings(conf, &ps);
	if (queue_point_thread_start(&points, queue, &ps, points_log, NULL, err,
				     sizeof(err)) != 0)
		fatalx("restore points: %s", err);
	control_point_hook(points);
	metrics_add_text(control_point_metrics_text);
	logs_keep_start();
	/* Loop threads start with the early mask, so signals come here. */
	for (i = 0; i < nloops; i++) {
		(void)snprintf(loops[i].name, sizeof(loops[i].name), "smtp%u",
			       i);
		loops[i].on_start = evlog_batch_on_loop;
		loops[i].on_start_arg = &loops[i];
		loops[i].on_stop = evlog_batch_off_loop;
		if (loop_start(&loops[i]) != 0)
			fatal("starting loop thread %u", i);
	}
	(void)snprintf(dloop.name, sizeof(dloop.name), "deliver");
	if (loop_start(&dloop) != 0)
		fatal("starting the delivery loop");
	if (sched_loops_start() != 0)
		fatal("starting the delivery loops");
	/* Ready once each loop has run a job: the delivery loop's comes after
	 * every shard's first step of the queue load (sched_ready, counted
	 * from before any loop starts), the others' show them serving their
	 * listeners. */
	for (i = 0; i < nloops; i++) {
		loop_post(&loops[i], scan_loop_start, &loops[i]);
		loop_post(&loops[i], ready_on_loop, NULL);
	}
	for (j = 0; j < conf->nlisteners; j++)
		log_info(
		    "listening on %s (%s%s)", conf->listeners[j].name,
		    conf->listeners[j].tls == CONF_TLS_IMPLICIT ? "implicit TLS"
		    : conf->listeners[j].tls == CONF_TLS_STARTTLS ? "STARTTLS"
								  : "no TLS",
		    gen->listeners[j].ssl_ctx != NULL || conf->listeners[j].auth
			? (conf->listeners[j].auth ? ", AUTH" : "")
			: "");
	if (queue_clock_offset_s() != 0)
		log_warnx("warning: test clock: the time of day is moved by "
			  "%lld s (OUTPOST_TEST_CLOCK_OFFSET; for tests only)",
			  (long long)queue_clock_offset_s());
	log_info("outpostd %s ready: %s, queue %s, %u loops, %u workers",
		 OUTPOST_VERSION, conf->file, conf->queue.path, nloops,
		 conf->worker_threads);

	pthread_sigmask(SIG_UNBLOCK, &early, NULL);
	event_base_dispatch(main_base);

	/* Orderly shutdown: submission first (every message it accepted is
	 * answered and handed over), then delivery (transactions end, results
	 * are committed: the last SMTP loop to drain starts it), meanwhile
	 * new connections get 421; then the listeners, the pool and the queue
	 * writer. */
	loop_join(&dloop);
	sched_loops_stop(); /* its connections' loops: all closed by now */
	for (i = 0; i < nloops; i++)
		loop_post(&loops[i], close_on_loop, &loops[i]);
	for (i = 0; i < nloops; i++)
		loop_join(&loops[i]);
	worker_stop();
	scan_free(); /* its connections: events of the loops' bases */
	for (i = 0; i < nloops; i++) {
		if (loops[i].dns != NULL)
			dns_resolver_free(loops[i].dns);
		loop_free(&loops[i]);
	}
	/* A point in progress finishes; a `restore-point` still waiting is
	 * answered, through the delivery loop's last jobs (below). */
	control_point_hook(NULL);
	queue_point_thread_stop(points);
	/* The scheduler's events live on the delivery loop's base: freed
	 * after its last completions ran, before the base is. */
	sched_loops_flush();
	left = sched_queued();
	sched_free();
	loop_free(&dloop);
	queue_stats_get(queue, &qs);
	watchdog_close(); /* its profiles: queue ops, before the close */
	quota_close();
	queue_close(queue);
	log_info(
	    "outpostd stopped: %llu messages accepted in %llu sessions; "
	    "queue: %llu ops in %llu commits (largest %llu), %.3f ms per "
	    "commit; delivery: %llu delivered, %llu deferred, %llu "
	    "bounced, %llu expired; queued=%llu",
	    (unsigned long long)STATS_GET(messages_accepted),
	    (unsigned long long)STATS_GET(sessions), (unsigned long long)qs.ops,
	    (unsigned long long)qs.commits, (unsigned long long)qs.max_batch,
	    qs.commits ? (double)qs.commit_us_total / qs.commits / 1000 : 0.0,
	    (unsigned long long)STATS_GET(delivered),
	    (unsigned long long)STATS_GET(deferred),
	    (unsigned long long)STATS_GET(bounced),
	    (unsigned long long)STATS_GET(expired), (unsigned long long)left);
	SSL_CTX_free(client_ctx);
	intake_free();
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_usr1);
	event_free(ev_hup);
	event_free(ev_reload);
	event_free(ev_reap);
	event_free(ev_ready);
	event_free(ev_drain);
	if (ev_status != NULL)
		event_free(ev_status);
	if (ev_watchdog != NULL)
		event_free(ev_watchdog);
	metrics_stop();
	event_base_free(main_base);
	logkeep_stop(); /* before the writers it calls */
	evlog_close();
	(void)confgen_reap(true); /* the loops are gone: nobody else holds */
	confgen_unref(gen);
	control_reload_free();
	free(reload_tokens);
	free(loops);
	free(smtp_drained);
	conf_unref(conf);
	return 0;
}
