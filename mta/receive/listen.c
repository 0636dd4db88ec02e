/*
 * listen.c — listening sockets and accept.
 *
 * Owns: the evconnlisteners, one per (listener, loop), each touched only by
 * its loop's thread once the loops run; a reload's sockets are bound on the
 * main thread (a plan), then each loop takes them in a posted job.  Accept
 * errors (EMFILE) pause a listener a moment.  Also the intake state (open,
 * stopped, draining), an atomic any thread sets or reads: while it is not
 * open, a new connection gets one 421 line and is closed.
 */
#define _DEFAULT_SOURCE /* SO_REUSEPORT */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "conf/conf.h"
#include "mta/receive/confgen.h"
#include "mta/receive/listen.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/receive/smtp_server.h"

#define LISTEN_BACKLOG  1024
#define LISTEN_PAUSE_MS 100

/* One listening socket of one loop; only that loop's thread touches it
 * once the loops run.  It holds a reference to LI's generation, which new
 * sessions take theirs from. */
struct listen_entry {
	struct loop *loop;
	struct smtp_server_listener *li;
	struct evconnlistener *lev;
	struct event *pause;
	struct listen_entry *next;
};

/* A reload's change to the sockets: NEW's listeners, ADDED[k] those that
 * are not bound yet, with one socket per loop in FDS[k * nloops + i]. */
struct listen_plan {
	struct confgen *gen; /* a reference until every loop applied it */
	bool *added;
	int *fds;
	unsigned nloops;
	unsigned pending; /* loops yet to apply it (atomic) */
};

static struct listen_entry **listen_heads; /* per loop, by index */
static unsigned listen_nloops;
static atomic_int listen_intake = LISTEN_INTAKE_OPEN;

void
listen_intake_set(enum listen_intake st)
{
	atomic_store(&listen_intake, (int)st);
}

enum listen_intake
listen_intake_get(void)
{
	return (enum listen_intake)atomic_load(&listen_intake);
}

static void
listen_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		 struct sockaddr *sa, int salen, void *arg)
{
	static const char msg[] = "421 4.3.2 Service shutting down\r\n";
	struct listen_entry *e = arg;
	ssize_t w;

	(void)lev;
	if (listen_intake_get() == LISTEN_INTAKE_OPEN) {
		smtp_server_accept(e->loop, e->li, fd, sa, salen);
		return;
	}
	/* Refused before it is a session: one line, best effort and never
	 * blocking (a fresh socket's buffer takes it); an implicit-TLS
	 * client would not understand it in clear. */
	if (e->li->conf->tls != CONF_TLS_IMPLICIT) {
		w = write(fd, msg, sizeof(msg) - 1);
		(void)w;
	}
	evutil_closesocket(fd);
}

static void
listen_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listen_entry *e = arg;

	(void)fd;
	(void)what;
	if (e->lev != NULL)
		evconnlistener_enable(e->lev);
}

static void
listen_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listen_entry *e = arg;
	struct timeval tv = { 0, LISTEN_PAUSE_MS * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	log_warnx("listener %s: accept: %s; pausing %d ms", e->li->conf->name,
		  strerror(err), LISTEN_PAUSE_MS);
	evconnlistener_disable(lev);
	evtimer_add(e->pause, &tv);
}

static int
listen_socket(const struct conf_listener *cl, char *err, size_t errlen)
{
	int fd, one = 1;

	fd = socket(cl->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (cl->addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&cl->addr, cl->addrlen) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "listener %s: %s", cl->name, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/*
 * Whether CL's address is free, asked with a socket that does not set
 * SO_REUSEPORT.  The loops' sockets set it, each loop accepting on its own;
 * but then a process of the same user that bound the port with it too
 * (a second outpostd, anything run as root at start-up) would silently
 * share our connections, and theirs ours.  A plain bind fails on such a
 * port, so it is refused here, with the reason.  0, or -1 with err.
 */
static int
listen_probe(const struct conf_listener *cl, char *err, size_t errlen)
{
	int fd, one = 1, rc = -1;

	fd = socket(cl->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
	    (cl->addr.ss_family != AF_INET6 ||
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) ==
		 0) &&
	    bind(fd, (const struct sockaddr *)&cl->addr, cl->addrlen) == 0)
		rc = 0;
	if (rc != 0) {
		int e = errno;

		snprintf(
		    err, errlen, "listener %s: %s%s", cl->name, strerror(e),
		    e == EADDRINUSE ? " (another process listens there)" : "");
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Whether a listener of OC (bound: ours) has CL's family and port, so that
 * CL's probe could meet our own socket (a wildcard and a specific address
 * on one port): a reload then binds without the probe. */
static bool
listen_port_ours(const struct conf *oc, const struct conf_listener *cl)
{
	const struct sockaddr_in *a = (const void *)&cl->addr;
	size_t i;

	for (i = 0; i < oc->nlisteners; i++) {
		const struct sockaddr_in *b =
		    (const void *)&oc->listeners[i].addr;

		/* sin_port and sin6_port lie at the same offset */
		if (oc->listeners[i].addr.ss_family == cl->addr.ss_family &&
		    b->sin_port == a->sin_port)
			return true;
	}
	return false;
}

/* A new entry of loop L for LI on socket FD (which it owns from now on,
 * also on failure).  NULL, with err set, when it cannot be made. */
static struct listen_entry *
listen_entry_new(struct loop *l, struct smtp_server_listener *li, int fd,
		 char *err, size_t errlen)
{
	struct listen_entry *e;

	if ((e = calloc(1, sizeof(*e))) == NULL) {
		close(fd);
		snprintf(err, errlen, "listener %s: out of memory",
			 li->conf->name);
		return NULL;
	}
	e->loop = l;
	e->li = li;
	e->lev = evconnlistener_new(l->base, listen_accept_cb, e,
				    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	e->pause = evtimer_new(l->base, listen_resume_cb, e);
	if (e->lev == NULL || e->pause == NULL) {
		snprintf(err, errlen, "listener %s: set-up failed",
			 li->conf->name);
		if (e->lev != NULL)
			evconnlistener_free(e->lev);
		else
			close(fd);
		if (e->pause != NULL)
			event_free(e->pause);
		free(e);
		return NULL;
	}
	evconnlistener_set_error_cb(e->lev, listen_error_cb);
	confgen_ref(li->gen);
	e->next = listen_heads[l->index];
	listen_heads[l->index] = e;
	return e;
}

static void
listen_entry_free(struct listen_entry *e)
{
	if (e->lev != NULL)
		evconnlistener_free(e->lev);
	if (e->pause != NULL)
		event_free(e->pause);
	confgen_unref(e->li->gen);
	free(e);
}

int
listen_open(struct loop *loops, unsigned nloops, struct confgen *gen, char *err,
	    size_t errlen)
{
	size_t i;
	unsigned j;
	int fd;

	listen_nloops = nloops;
	if ((listen_heads = calloc(nloops, sizeof(*listen_heads))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* All probes before any bind: a wildcard and a specific address on
	 * one port are both ours, and would refuse each other's probe. */
	for (i = 0; i < gen->conf->nlisteners; i++)
		if (listen_probe(gen->listeners[i].conf, err, errlen) != 0)
			return -1;
	for (i = 0; i < gen->conf->nlisteners; i++) {
		for (j = 0; j < nloops; j++) {
			if ((fd = listen_socket(gen->listeners[i].conf, err,
						errlen)) < 0 ||
			    listen_entry_new(&loops[j], &gen->listeners[i], fd,
					     err, errlen) == NULL)
				return -1;
		}
	}
	return 0;
}

/* Whether two listeners are one socket (the same address and port). */
static bool
listen_same(const struct conf_listener *a, const struct conf_listener *b)
{
	return a->addrlen == b->addrlen &&
	       memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* NEW's listener at the address of A, or NULL. */
static struct smtp_server_listener *
listen_find(struct confgen *gen, const struct conf_listener *a)
{
	size_t k;

	for (k = 0; k < gen->conf->nlisteners; k++)
		if (listen_same(&gen->conf->listeners[k], a))
			return &gen->listeners[k];
	return NULL;
}

static void
listen_plan_free(struct listen_plan *p)
{
	size_t k, n;

	if (p == NULL)
		return;
	n = p->gen->conf->nlisteners * (size_t)p->nloops;
	for (k = 0; p->fds != NULL && k < n; k++)
		if (p->fds[k] >= 0)
			close(p->fds[k]);
	free(p->fds);
	free(p->added);
	confgen_unref(p->gen);
	free(p);
}

int
listen_plan_make(const struct confgen *old, struct confgen *gen,
		 struct listen_plan **out, unsigned *added, unsigned *removed,
		 char *err, size_t errlen)
{
	const struct conf *oc = old->conf, *nc = gen->conf;
	struct listen_plan *p;
	size_t k, i, n = nc->nlisteners * (size_t)listen_nloops;
	unsigned j;
	int fd;

	*out = NULL;
	*added = *removed = 0;
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->added = calloc(nc->nlisteners + 1, sizeof(*p->added))) ==
		NULL ||
	    (p->fds = malloc((n + 1) * sizeof(*p->fds))) == NULL) {
		if (p != NULL)
			free(p->added);
		free(p);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->gen = confgen_ref(gen);
	p->nloops = listen_nloops;
	p->pending = listen_nloops;
	for (k = 0; k < n; k++)
		p->fds[k] = -1;
	for (i = 0; i < oc->nlisteners; i++)
		*removed += listen_find(gen, &oc->listeners[i]) == NULL;
	for (k = 0; k < nc->nlisteners; k++) {
		const struct conf_listener *cl = &nc->listeners[k];
		const struct sockaddr_in *sin = (const void *)&cl->addr;
		unsigned port = ntohs(sin->sin_port); /* v4 and v6 alike */

		if (listen_find((struct confgen *)old, cl) != NULL)
			continue;
		if (port < 1024 && geteuid() != 0) {
			snprintf(err, errlen,
				 "listener %s: a port below 1024 can only be "
				 "bound at start-up (outpostd no longer runs "
				 "as root): restart to add it",
				 cl->name);
			listen_plan_free(p);
			return -1;
		}
		if (!listen_port_ours(oc, cl) &&
		    listen_probe(cl, err, errlen) != 0) {
			listen_plan_free(p);
			return -1;
		}
		p->added[k] = true;
		(*added)++;
		for (j = 0; j < listen_nloops; j++) {
			if ((fd = listen_socket(cl, err, errlen)) < 0) {
				listen_plan_free(p);
				return -1;
			}
			p->fds[k * listen_nloops + j] = fd;
		}
	}
	*out = p;
	return 0;
}

/* On loop L: the entries of L follow the plan ARG. */
static void
listen_plan_on_loop(struct loop *l, struct listen_plan *p)
{
	struct listen_entry **ep = &listen_heads[l->index], *e;
	struct smtp_server_listener *li;
	char err[256];
	size_t k;
	int *fd;

	while ((e = *ep) != NULL) {
		if ((li = listen_find(p->gen, e->li->conf)) == NULL) {
			*ep = e->next; /* removed: its socket closes */
			listen_entry_free(e);
			continue;
		}
		confgen_ref(li->gen);
		confgen_unref(e->li->gen);
		e->li = li;
		ep = &e->next;
	}
	for (k = 0; k < p->gen->conf->nlisteners; k++) {
		if (!p->added[k])
			continue;
		fd = &p->fds[k * p->nloops + l->index];
		if (listen_entry_new(l, &p->gen->listeners[k], *fd, err,
				     sizeof(err)) == NULL)
			log_warnx("%s", err);
		*fd = -1; /* the entry's (or closed) */
	}
}

struct listen_plan_job {
	struct loop *loop;
	struct listen_plan *plan;
};

static void
listen_plan_job(void *arg)
{
	struct listen_plan_job *j = arg;
	struct listen_plan *p = j->plan;

	listen_plan_on_loop(j->loop, p);
	free(j);
	if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL) == 0)
		listen_plan_free(p);
}

void
listen_plan_apply(struct loop *loops, struct listen_plan *p)
{
	struct listen_plan_job *j;
	unsigned i, n = p->nloops;

	for (i = 0; i < n; i++) {
		if ((j = malloc(sizeof(*j))) == NULL)
			fatal("malloc");
		j->loop = &loops[i];
		j->plan = p;
		loop_post(&loops[i], listen_plan_job, j);
	}
}

void
listen_plan_discard(struct listen_plan *p)
{
	listen_plan_free(p);
}

/* On L's thread: stop accepting on L (the intake state aside, the sockets
 * close: new connections are then refused by the kernel). */
void
listen_close(struct loop *l)
{
	struct listen_entry *e;

	while ((e = listen_heads[l->index]) != NULL) {
		listen_heads[l->index] = e->next;
		listen_entry_free(e);
	}
}
