/*
 * listen.c — listening sockets and accept.
 *
 * Owns: the evconnlisteners, one per (listener, loop); each is touched only
 * by its loop's thread once the loops run.  Accept errors (EMFILE) pause
 * that listener for a moment instead of spinning.  Also the intake state
 * (open, stopped, draining): any thread sets or reads it (an atomic); while
 * it is not open, a new connection gets one 421 line and is closed.
 */
#define _DEFAULT_SOURCE /* SO_REUSEPORT */
#include <errno.h>
#include <fcntl.h>
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
#include "mta/receive/listen.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/receive/smtp_server.h"

#define LISTEN_BACKLOG  1024
#define LISTEN_PAUSE_MS 100

struct listen_entry {
	struct loop *loop;
	struct smtp_server_listener *li;
	struct evconnlistener *lev;
	struct event *pause;
};

static struct listen_entry *listen_entries;
static size_t listen_n;
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

int
listen_open(struct loop *loops, unsigned nloops,
	    struct smtp_server_listener *li, size_t nli, char *err,
	    size_t errlen)
{
	size_t i, k = 0;
	unsigned j;
	int fd;

	listen_n = nli * nloops;
	if ((listen_entries = calloc(listen_n, sizeof(*listen_entries))) ==
	    NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < nli; i++) {
		for (j = 0; j < nloops; j++, k++) {
			struct listen_entry *e = &listen_entries[k];

			if ((fd = listen_socket(li[i].conf, err, errlen)) < 0)
				return -1;
			e->loop = &loops[j];
			e->li = &li[i];
			e->lev = evconnlistener_new(
			    loops[j].base, listen_accept_cb, e,
			    LEV_OPT_CLOSE_ON_FREE, -1, fd);
			e->pause =
			    evtimer_new(loops[j].base, listen_resume_cb, e);
			if (e->lev == NULL || e->pause == NULL) {
				snprintf(err, errlen,
					 "listener %s: set-up "
					 "failed",
					 li[i].conf->name);
				if (e->lev == NULL)
					close(fd);
				return -1;
			}
			evconnlistener_set_error_cb(e->lev, listen_error_cb);
		}
	}
	return 0;
}

/* On L's thread: stop accepting on L (the intake state aside, the sockets
 * close: new connections are then refused by the kernel). */
void
listen_close(struct loop *l)
{
	size_t i;

	for (i = 0; i < listen_n; i++) {
		struct listen_entry *e = &listen_entries[i];

		if (e->loop != l)
			continue;
		if (e->lev != NULL)
			evconnlistener_free(e->lev);
		if (e->pause != NULL)
			event_free(e->pause);
		e->lev = NULL;
		e->pause = NULL;
	}
}
