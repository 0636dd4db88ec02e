/*
 * sched_conn.c — delivery on N loops (delivery.threads): the loops, and a
 * scheduler's connections, each on a home loop.  Sharded (no cluster),
 * every loop is a shard's and its connections are its own: driven
 * directly, no hand-off.  With a cluster, loop 0's scheduler spreads its
 * connections over every loop, with a batched hand-off between them.
 * Owns: the loops but loop 0, their clients' settings and resolvers, every
 * struct sched_conn.  Must not: decide anything (limits, slots, which job:
 * scheduler.c, and sched_share.c between shards).  Threads: sched_conn_*
 * and conn_*_on_sched on the scheduler's loop; conn_*_on_home and the
 * client's callbacks on the home loop, the only thread that touches its
 * client.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/deliver/sched_int.h"
#include "mta/deliver/tlsrpt.h"

/* The loops made here (conn_all[i].loop for i >= 1), and every delivery
 * loop's record, loop 0's first: one brain's cloops, or one to a shard. */
static struct loop *conn_loops;
static struct sched_cloop *conn_all;
static unsigned conn_nall;

static bool
conn_is_remote(const struct sched_conn *cn)
{
	return cn->home->loop != sched->loop;
}

/* The hand-off -------------------------------------------------------- */

/*
 * What one loop hands another during one turn of its own, posted at the
 * end of that turn as one batch: one mailbox lock and at most one wake-up
 * for all a turn made (a turn of loop 0 may start jobs on many
 * connections, a connection loop's turn may finish many), never one per
 * job or per recipient.  In order, as loop_post.
 */
struct conn_msg {
	loop_fn *fn;
	void *arg;
};

struct conn_batch {
	size_t n, cap;
	struct conn_msg v[];
};

struct sched_outbox {
	struct loop *to;
	struct conn_batch *b;   /* gathering; NULL when empty */
	struct event *flush;    /* on the sender's base: the turn's end */
	uint64_t nmsgs, nposts; /* handed over, and in how many posts */
};

static void
conn_batch_run(void *arg)
{
	struct conn_batch *b = arg;
	size_t i;

	for (i = 0; i < b->n; i++)
		b->v[i].fn(b->v[i].arg);
	free(b);
}

static void
conn_outbox_flush(struct sched_outbox *ob)
{
	struct conn_batch *b = ob->b;

	if (b == NULL)
		return;
	ob->b = NULL;
	ob->nposts++;
	loop_post(ob->to, conn_batch_run, b);
}

/* Made active by the first message of a turn: libevent runs it after the
 * callbacks already active, in the same turn. */
static void
conn_outbox_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_outbox_flush(arg);
}

/* FN(ARG) on OB's loop, after this turn.  The sender's thread only. */
static void
conn_outbox_put(struct sched_outbox *ob, loop_fn *fn, void *arg)
{
	struct conn_batch *b = ob->b, *nb;
	size_t cap;

	ob->nmsgs++;
	if (b == NULL || b->n == b->cap) {
		cap = b == NULL ? 16 : b->cap * 2;
		nb = realloc(b, sizeof(*nb) + cap * sizeof(nb->v[0]));
		if (nb == NULL) {
			/* No room: what is gathered goes now, this after it
			 * (loop_post never fails), so the order holds. */
			conn_outbox_flush(ob);
			ob->nposts++;
			loop_post(ob->to, fn, arg);
			return;
		}
		if (b == NULL) {
			nb->n = 0;
			event_active(ob->flush, EV_TIMEOUT, 0);
		}
		nb->cap = cap;
		ob->b = b = nb;
	}
	b->v[b->n].fn = fn;
	b->v[b->n].arg = arg;
	b->n++;
}

static struct sched_outbox *
conn_outbox_new(struct loop *from, struct loop *to)
{
	struct sched_outbox *ob = calloc(1, sizeof(*ob));

	if (ob == NULL)
		return NULL;
	ob->to = to;
	ob->flush = event_new(from->base, -1, 0, conn_outbox_flush_cb, ob);
	if (ob->flush == NULL) {
		free(ob);
		return NULL;
	}
	return ob;
}

static void
conn_outbox_free(struct sched_outbox *ob)
{
	if (ob == NULL)
		return;
	/* Flushed at stop, so empty; if not, run here as loop_flush runs a
	 * mailbox's last messages (main thread, every loop stopped). */
	if (ob->b != NULL)
		conn_batch_run(ob->b);
	event_free(ob->flush);
	free(ob);
}

/* Scheduler side: the home loop's reports -------------------------------- */

static void
conn_ready_on_sched(void *arg)
{
	sched_path_on_ready(arg);
}

static void
conn_free_on_home(void *arg)
{
	struct sched_conn *cn = arg;

	free(cn->text);
	free(cn);
}

/* CN is closed and every job it was given came back: free it on its home
 * loop, after what was posted there before (a quit, a park): FIFO, so
 * nothing is left to touch it. */
static void
conn_release(struct sched_conn *cn)
{
	if (!cn->closed || cn->out > 0)
		return;
	if (conn_is_remote(cn))
		conn_outbox_put(cn->home->down, conn_free_on_home, cn);
	else
		conn_free_on_home(cn);
}

static void
conn_done_on_sched(void *arg)
{
	struct sched_job *job = arg;
	struct sched_conn *cn = job->conn;

	cn->out--;
	sched_path_on_done(cn, job);
	conn_release(cn);
}

static void
conn_closed_on_sched(void *arg)
{
	struct sched_conn *cn = arg;

	cn->home->nconn--;
	sched_path_on_closed(cn);
	/* A job sent as it closed comes back (unsent) after this report:
	 * CN lives until then. */
	cn->closed = true;
	conn_release(cn);
}

/* Home side: the client's callbacks (struct smtp_client_cb) -------------- */

static void
conn_client_ready(struct smtp_client *c, void *arg)
{
	struct sched_conn *cn = arg;

	(void)c;
	if (conn_is_remote(cn))
		conn_outbox_put(cn->home->up, conn_ready_on_sched, cn);
	else
		sched_path_on_ready(cn);
}

static void
conn_client_done(struct smtp_client *c, struct smtp_client_job *cj, void *arg)
{
	struct sched_job *job = SCHED_JOB_OF(cj);

	(void)c;
	(void)arg;
	if (conn_is_remote(job->conn))
		conn_outbox_put(job->conn->home->up, conn_done_on_sched, job);
	else
		conn_done_on_sched(job);
}

static void
conn_client_closed(struct smtp_client *c, bool failed, enum outcome_stage stage,
		   int code, const char *text, void *arg)
{
	struct sched_conn *cn = arg;

	cn->c = NULL; /* freed when this returns */
	cn->tls_failure = c != NULL ? smtp_client_tls_failure(c) : NULL;
	cn->dane = c != NULL && smtp_client_dane(c);
	cn->failed = failed;
	cn->stage = stage;
	cn->code = code;
	/* No memory for the text: the scheduler says "connection failed". */
	cn->text = text != NULL ? strdup(text) : NULL;
	if (conn_is_remote(cn))
		conn_outbox_put(cn->home->up, conn_closed_on_sched, cn);
	else
		conn_closed_on_sched(cn);
}

/*
 * A session's TLS outcome: counted for the TLS report of its site's policy
 * domain (tlsrpt_note locks; the site's policy fields never change once it
 * is made, so reading them here, on the home loop, is safe).  A session of
 * a DANE site whose host had no TLSA record falls to the site's MTA-STS
 * policy, if any.
 */
static void
conn_client_session(struct smtp_client *c, const struct smtp_client_session *s,
		    void *arg)
{
	const struct sched_site *site = ((struct sched_conn *)arg)->path->site;
	struct tlsrpt_session ts;

	(void)c;
	if (site->policy_domain == NULL ||
	    (!s->dane && site->sts_mode == MTASTS_NONE))
		return;
	memset(&ts, 0, sizeof(ts));
	ts.domain = site->policy_domain;
	ts.dane = s->dane;
	ts.failure = s->tls_failure;
	if (ts.failure == NULL && !s->tls_verified)
		ts.failure = "validation-failure"; /* no TLS at all */
	ts.mx_host = s->mx_host;
	ts.mx_ip = s->mx_ip;
	ts.source_ip = s->source_ip;
	tlsrpt_note(&ts);
}

static const struct smtp_client_cb conn_client_cb = {
	.ready = conn_client_ready,
	.done = conn_client_done,
	.closed = conn_client_closed,
	.session = conn_client_session,
};

/* Home side: what the scheduler asks -------------------------------------- */

static void
conn_open_on_home(void *arg)
{
	struct sched_conn *cn = arg;

	cn->c = smtp_client_new(&cn->home->env, &cn->t, &conn_client_cb, cn);
	if (cn->c == NULL)
		conn_client_closed(NULL, true, OS_CONNECT, 0, "out of memory",
				   cn);
}

/* A connection that began to leave (its idle timeout ran out as the job
 * was on its way): the job goes back unsent; its closed report follows. */
static void
conn_send_on_home(void *arg)
{
	struct sched_job *job = arg;
	struct sched_conn *cn = job->conn;

	if (cn->c != NULL && smtp_client_idle(cn->c)) {
		smtp_client_send(cn->c, &job->cj);
		return;
	}
	job->unsent = true;
	if (conn_is_remote(cn))
		conn_outbox_put(cn->home->up, conn_done_on_sched, job);
	else /* loop 0: its scheduler is in the middle of a kick */
		loop_post(sched->loop, conn_done_on_sched, job);
}

static void
conn_quit_on_home(void *arg)
{
	struct sched_conn *cn = arg;

	if (cn->c != NULL)
		smtp_client_quit(cn->c);
}

static void
conn_park_on_home(void *arg)
{
	struct sched_conn *cn = arg;

	if (cn->c != NULL && smtp_client_idle(cn->c))
		smtp_client_park(cn->c);
}

static void
conn_abort_on_home(void *arg)
{
	(void)arg;
	smtp_client_abort_all();
}

/* Run FN(ARG) on CN's home loop: now when that is loop 0, else posted. */
static void
conn_do(struct sched_conn *cn, loop_fn *fn, void *arg)
{
	if (conn_is_remote(cn))
		conn_outbox_put(cn->home->down, fn, arg);
	else
		fn(arg);
}

/* Scheduler side: the interface ------------------------------------------ */

/*
 * The loop for a new connection: the one with the fewest.  A destination's
 * connections may sit on several loops (its limits are the scheduler's,
 * not a loop's), so that one busy destination, or one MX site behind many
 * domains, still spreads over every core.
 */
static struct sched_cloop *
conn_home_pick(void)
{
	struct sched_cloop *best = &sched->cloops[0];
	unsigned i;

	for (i = 1; i < sched->ncloops; i++)
		if (sched->cloops[i].nconn < best->nconn)
			best = &sched->cloops[i];
	return best;
}

struct sched_conn *
sched_conn_open(struct sched_path *p, const struct smtp_client_target *t)
{
	struct sched_conn *cn;

	if ((cn = calloc(1, sizeof(*cn))) == NULL)
		return NULL;
	cn->path = p;
	cn->home = conn_home_pick();
	cn->t = *t;
	if (!conn_is_remote(cn)) {
		cn->c = smtp_client_new(&cn->home->env, &cn->t, &conn_client_cb,
					cn);
		if (cn->c == NULL) {
			free(cn);
			return NULL;
		}
	} else {
		conn_outbox_put(cn->home->down, conn_open_on_home, cn);
	}
	cn->home->nconn++;
	return cn;
}

void
sched_conn_send(struct sched_conn *cn, struct sched_job *job)
{
	cn->msgs++;
	cn->out++;
	job->conn = cn;
	job->unsent = false;
	conn_do(cn, conn_send_on_home, job);
}

void
sched_conn_quit(struct sched_conn *cn)
{
	if (cn->quitting)
		return;
	cn->quitting = true;
	cn->path->nquitting++;
	if (cn->path->share != NULL)
		sched_share_quitting(cn->path->share, 1);
	conn_do(cn, conn_quit_on_home, cn);
}

void
sched_conn_park(struct sched_conn *cn)
{
	conn_do(cn, conn_park_on_home, cn);
}

void
sched_conn_abort_all(void)
{
	unsigned i;

	for (i = 1; i < sched->ncloops; i++)
		conn_outbox_put(sched->cloops[i].down, conn_abort_on_home,
				NULL);
	smtp_client_abort_all();
}

/* The delivery timeouts of C into E (a loop's clients' settings). */
static void
conn_env_set(struct smtp_client_env *e, const struct conf *c)
{
	const struct conf_delivery *dl = &c->delivery;

	e->connect_timeout_ms = dl->connect_timeout_ms;
	e->greeting_timeout_ms = dl->greeting_timeout_ms;
	e->command_timeout_ms = dl->command_timeout_ms;
	e->data_timeout_ms = dl->data_timeout_ms;
	e->idle_timeout_ms = dl->idle_timeout_ms;
}

struct conn_reconf {
	struct sched_cloop *cl;
	const struct conf *c;
};

static void
conn_reconf_on_home(void *arg)
{
	struct conn_reconf *rc = arg;

	conn_env_set(&rc->cl->env, rc->c);
	conf_unref(rc->c);
	free(rc);
}

void
sched_conn_reconf(const struct conf *c)
{
	struct conn_reconf *rc;
	unsigned i;

	conn_env_set(&sched->cloops[0].env, c);
	for (i = 1; i < sched->ncloops; i++) {
		/* Without memory that loop keeps its timeouts until the next
		 * reload: its clients still work. */
		if ((rc = malloc(sizeof(*rc))) == NULL) {
			log_warnx("reload: out of memory: delivery loop %u "
				  "keeps its timeouts",
				  i);
			continue;
		}
		rc->cl = &sched->cloops[i];
		rc->c = conf_ref(c);
		conn_outbox_put(rc->cl->down, conn_reconf_on_home, rc);
	}
}

void
sched_dns_share(const struct dns_config *all, unsigned n,
		struct dns_config *out)
{
	unsigned cap = all->max_inflight != 0 ? all->max_inflight
					      : DNS_MAX_INFLIGHT_DEFAULT;

	*out = *all;
	if (n == 0)
		n = 1;
	out->max_inflight = cap / n > 0 ? cap / n : 1;
}

int
sched_conn_init(const struct sched_config *sc, unsigned n, bool sharded,
		char *err, size_t errlen)
{
	struct dns_config dc;
	unsigned i;

	if (n == 0)
		n = 1;
	conn_all = calloc(n, sizeof(*conn_all));
	conn_loops = n > 1 ? calloc(n - 1, sizeof(*conn_loops)) : NULL;
	if (conn_all == NULL || (n > 1 && conn_loops == NULL)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct sched_cloop *cl = &conn_all[i];

		if (i == 0) {
			cl->loop = sc->loop;
			cl->env.dns = sched->dns;
		} else {
			cl->loop = &conn_loops[i - 1];
			if (loop_init(cl->loop, sc->loop->index + i) != 0) {
				snprintf(err, errlen,
					 "cannot create delivery loop %u", i);
				return -1;
			}
			conn_nall = i + 1; /* made: freed by _free */
			cl->down = conn_outbox_new(sc->loop, cl->loop);
			cl->up = conn_outbox_new(cl->loop, sc->loop);
			if (cl->down == NULL || cl->up == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			(void)snprintf(cl->loop->name, sizeof(cl->loop->name),
				       "deliver%u", i % 100u); /* i < 64 */
			/* Its clients resolve MX hosts' addresses here (and,
			 * a shard, its destinations' MX). */
			if (sc->dns != NULL)
				sched_dns_share(sc->dns, n, &dc);
			if (sc->dns != NULL &&
			    (cl->env.dns = dns_resolver_new(
				 cl->loop->base, &dc, err, errlen)) == NULL)
				return -1;
			/* A shard of its own, or loop 0's connections: its
			 * callbacks post back through sched. */
			if (!sharded) {
				cl->loop->on_start = sched_bind;
				cl->loop->on_start_arg = sched;
				cl->loop->on_stop = sched_unbind;
			} else if (sched_shard_new(cl, sc, err, errlen) != 0)
				return -1;
		}
		cl->env.base = cl->loop->base;
		cl->env.ssl_ctx = sc->ssl_ctx;
		cl->env.loopback_only = sc->loopback_only;
		conn_env_set(&cl->env, sc->conf);
	}
	conn_nall = n;
	sched->cloops = conn_all;
	sched->ncloops = sharded ? 1 : n;
	if (sharded)
		log_info("delivery: the scheduler in %u shards, one a loop", n);
	return 0;
}

int
sched_loops_start(void)
{
	unsigned i;

	for (i = 1; i < conn_nall; i++)
		if (loop_start(conn_all[i].loop) != 0)
			return -1;
	return 0;
}

void
sched_loops_stop(void)
{
	unsigned i;

	/* What loop 0 gathered in its last turn (connections to free). */
	for (i = 1; i < conn_nall; i++)
		conn_outbox_flush(conn_all[i].down);
	for (i = 1; i < conn_nall; i++)
		loop_stop(conn_all[i].loop);
	for (i = 1; i < conn_nall; i++) {
		loop_join(conn_all[i].loop);
		/* Its last jobs run here as its own thread would run them:
		 * with its shard's state (a shard of its own, or loop 0's). */
		sched = sched_shard_of_loop(conn_all[i].loop);
		loop_flush(conn_all[i].loop);
		sched = &sched_main;
		/* Nothing is left for loop 0 (it ended after every closed
		 * report); whatever is goes to its mailbox, run by main's
		 * loop_flush before sched_free. */
		conn_outbox_flush(conn_all[i].up);
	}
}

void
sched_loops_flush(void)
{
	size_t ran;
	unsigned i;

	/* Until a whole pass runs nothing: a job may post to another loop. */
	do {
		ran = 0;
		for (i = 0; i < conn_nall; i++) {
			sched = sched_shard_of_loop(conn_all[i].loop);
			ran += loop_flush(conn_all[i].loop);
			/* What those jobs wrote goes to the writer now: the
			 * loop will not end another turn. */
			sched_write_flush();
		}
	} while (ran > 0);
	sched = &sched_main;
}

void
sched_conn_free(void)
{
	uint64_t dm = 0, dp = 0, um = 0, up = 0;
	unsigned i;

	for (i = 1; i < conn_nall; i++) {
		dm += conn_all[i].down ? conn_all[i].down->nmsgs : 0;
		dp += conn_all[i].down ? conn_all[i].down->nposts : 0;
		um += conn_all[i].up ? conn_all[i].up->nmsgs : 0;
		up += conn_all[i].up ? conn_all[i].up->nposts : 0;
	}
	/* How well the hand-off batched (a benchmark's figure). */
	if (conn_nall > 1 && sched_nshards == 1)
		log_info("delivery: %u loops; hand-offs to the connection "
			 "loops: %" PRIu64 " in %" PRIu64
			 " posts; back: %" PRIu64 " in %" PRIu64 " posts",
			 conn_nall, dm, dp, um, up);
	for (i = 1; i < conn_nall; i++) {
		conn_outbox_free(conn_all[i].down);
		conn_outbox_free(conn_all[i].up);
		if (conn_all[i].env.dns != NULL)
			dns_resolver_free(conn_all[i].env.dns);
		loop_free(conn_all[i].loop);
	}
	free(conn_all);
	free(conn_loops);
	conn_all = NULL;
	conn_nall = 0;
	conn_loops = NULL;
}
