/*
 * dns_fixture.c — DNS servers on 127.0.0.1 for the unit tests (see
 * dns_fixture.h).  Owns: the dnsmasq child and the silent socket of each
 * struct dns_fixture.  Must not: listen or send anywhere but 127.0.0.1.
 * Thread: the test program's one thread.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "t/unit/dns_fixture.h"

#define DNS_FIXTURE_ARGS_MAX   128
#define DNS_FIXTURE_ATTEMPTS   10
#define DNS_FIXTURE_WAIT_TRIES 250 /* of 20 ms: 5 s */

static void
dns_fixture_sin(struct sockaddr_in *sin, int port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons((uint16_t)port);
}

int
dns_fixture_udp_bind(int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	if ((fd = socket(AF_INET, SOCK_DGRAM, 0)) < 0)
		return -1;
	dns_fixture_sin(&sin, 0);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A port free for both UDP and TCP on 127.0.0.1 right now. */
static int
dns_fixture_free_port(void)
{
	struct sockaddr_in sin;
	int u, t, port = -1, on = 1;

	if ((u = dns_fixture_udp_bind(&port)) < 0)
		return -1;
	if ((t = socket(AF_INET, SOCK_STREAM, 0)) >= 0) {
		/* As dnsmasq does: a TIME_WAIT left by an old client
		 * connection on that port does not make it busy. */
		(void)setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		dns_fixture_sin(&sin, port);
		if (bind(t, (struct sockaddr *)&sin, sizeof(sin)) != 0)
			port = -1;
		close(t);
	}
	close(u);
	return port;
}

void
dns_fixture_child_quiet(void)
{
	int fd;

	/* Die with the test program, even if it crashes. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getenv("DNS_TEST_VERBOSE") == NULL &&
	    (fd = open("/dev/null", O_WRONLY)) >= 0) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
}

static const char *
dns_fixture_dnsmasq_path(void)
{
	static const char *const paths[] = { "/usr/sbin/dnsmasq",
					     "/usr/bin/dnsmasq",
					     "/sbin/dnsmasq" };
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* Up when its TCP listener on PORT accepts a connection. */
static int
dns_fixture_dnsmasq_wait(struct dns_fixture *f, int port)
{
	static const struct timespec pause = { 0, 20000000 };
	struct sockaddr_in sin;
	int i, fd, rc, status;

	dns_fixture_sin(&sin, port);
	for (i = 0; i < DNS_FIXTURE_WAIT_TRIES; i++) {
		if (waitpid(f->dnsmasq_pid, &status, WNOHANG) ==
		    f->dnsmasq_pid) {
			fprintf(stderr, "# dnsmasq on port %d exited (%d)\n",
				port,
				WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			f->dnsmasq_pid = -1;
			return -1;
		}
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
			return -1;
		rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
		close(fd);
		if (rc == 0)
			return 0;
		nanosleep(&pause, NULL);
	}
	return -1;
}

static void
dns_fixture_dnsmasq_exec(const char *path, int port, const char *zone,
			 const char *const *args)
{
	char portarg[32], localarg[300];
	const char *argv[DNS_FIXTURE_ARGS_MAX + 16];
	size_t i, n = 0;

	dns_fixture_child_quiet();
	if (snprintf(portarg, sizeof(portarg), "--port=%d", port) >=
		(int)sizeof(portarg) ||
	    snprintf(localarg, sizeof(localarg), "--local=/%s/", zone) >=
		(int)sizeof(localarg))
		_exit(126);
	argv[n++] = "dnsmasq";
	argv[n++] = portarg;
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--keep-in-foreground";
	argv[n++] = "--pid-file=";
	argv[n++] = "--log-facility=-";
	argv[n++] = localarg;
	argv[n++] = "--local-ttl=60";
	for (i = 0; args[i] != NULL; i++) {
		if (i == DNS_FIXTURE_ARGS_MAX)
			_exit(126);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	execv(path, (char *const *)(uintptr_t)argv);
	_exit(127);
}

int
dns_fixture_dnsmasq_start(struct dns_fixture *f, const char *zone,
			  const char *const *args)
{
	const char *path = dns_fixture_dnsmasq_path();
	int attempt, port;

	if (path == NULL)
		return -1;
	/* The port was free a moment ago; a parallel test may take it. */
	for (attempt = 0; attempt < DNS_FIXTURE_ATTEMPTS; attempt++) {
		if ((port = dns_fixture_free_port()) < 0)
			continue;
		if ((f->dnsmasq_pid = fork()) < 0)
			return -1;
		if (f->dnsmasq_pid == 0)
			dns_fixture_dnsmasq_exec(path, port, zone, args);
		if (dns_fixture_dnsmasq_wait(f, port) == 0) {
			(void)snprintf(f->dnsmasq_servers,
				       sizeof(f->dnsmasq_servers),
				       "127.0.0.1:%d", port);
			return 0;
		}
		if (f->dnsmasq_pid > 0) {
			kill(f->dnsmasq_pid, SIGTERM);
			waitpid(f->dnsmasq_pid, NULL, 0);
			f->dnsmasq_pid = -1;
		}
	}
	return -1;
}

int
dns_fixture_silent_start(struct dns_fixture *f)
{
	int port;

	if ((f->silent_fd = dns_fixture_udp_bind(&port)) < 0)
		return -1;
	(void)snprintf(f->silent_servers, sizeof(f->silent_servers),
		       "127.0.0.1:%d", port);
	return 0;
}

void
dns_fixture_stop(struct dns_fixture *f)
{
	if (f->dnsmasq_pid > 0) {
		kill(f->dnsmasq_pid, SIGTERM);
		waitpid(f->dnsmasq_pid, NULL, 0);
		f->dnsmasq_pid = -1;
	}
	f->dnsmasq_servers[0] = '\0';
	if (f->silent_fd >= 0) {
		close(f->silent_fd);
		f->silent_fd = -1;
	}
}

int
dns_fixture_loop_open(struct event_base **base, struct dns_resolver **r,
		      const char *servers, unsigned timeout_ms, char *err,
		      size_t errlen)
{
	struct dns_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.servers = servers;
	cfg.loopback_only = true;
	cfg.timeout_ms = timeout_ms;
	cfg.tries = 1;
	*r = NULL;
	if ((*base = event_base_new()) == NULL) {
		(void)snprintf(err, errlen, "event_base_new failed");
		return -1;
	}
	if ((*r = dns_resolver_new(*base, &cfg, err, errlen)) == NULL) {
		event_base_free(*base);
		*base = NULL;
		return -1;
	}
	return 0;
}

void
dns_fixture_loop_close(struct event_base *base, struct dns_resolver *r)
{
	dns_resolver_free(r);
	if (base != NULL)
		event_base_free(base);
}

static void
dns_fixture_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

bool
dns_fixture_run(struct event_base *base, const int *ncalls, int want, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *ev;
	bool expired = false;

	if ((ev = evtimer_new(base, dns_fixture_on_deadline, &expired)) ==
		NULL ||
	    evtimer_add(ev, &tv) != 0) {
		event_free(ev);
		return false;
	}
	while (*ncalls < want && !expired)
		if (event_base_loop(base, EVLOOP_ONCE) == -1)
			break;
	event_free(ev);
	return *ncalls >= want;
}
