/*
 * dns_fixture.h — the DNS servers the unit tests of dns/ and dkim/ start,
 * on 127.0.0.1 only: a dnsmasq answering one local zone from its command
 * line (--no-resolv --no-hosts: never the system resolver, never another
 * host), and a bound UDP socket that never answers (timeouts).  Shared by
 * dns_test.c, dmarc_test.c and spf_eval_test.c.  Single-threaded; the
 * children die with the test program (PR_SET_PDEATHSIG).  Their stderr is
 * dropped unless DNS_TEST_VERBOSE is set.
 */
#ifndef OUTPOST_T_UNIT_DNS_FIXTURE_H
#define OUTPOST_T_UNIT_DNS_FIXTURE_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>

struct dns_resolver;
struct event_base;

#define DNS_FIXTURE_SERVERS_BYTES 64

struct dns_fixture {
	pid_t dnsmasq_pid;                               /* -1: none running */
	char dnsmasq_servers[DNS_FIXTURE_SERVERS_BYTES]; /* "127.0.0.1:PORT" */
	int silent_fd; /* bound, never read: queries time out */
	char silent_servers[DNS_FIXTURE_SERVERS_BYTES];
};

#define DNS_FIXTURE_INIT                                                       \
	{                                                                      \
		-1, "", -1, ""                                                 \
	}

/*
 * dns_fixture_udp_bind — a UDP socket on 127.0.0.1, on a port the kernel
 * picks (into *PORT).  The descriptor, or -1.
 */
int dns_fixture_udp_bind(int *port);

/* dns_fixture_child_quiet — in a forked child: die with the parent, and
 * drop stderr unless DNS_TEST_VERBOSE is set. */
void dns_fixture_child_quiet(void);

/*
 * dns_fixture_dnsmasq_start — start dnsmasq on 127.0.0.1 at a port free
 * for UDP and TCP, authoritative for ZONE ("test": --local=/test/,
 * --local-ttl=60) with the records of ARGS (NULL-terminated, each a whole
 * option: "--txt-record=…", "--mx-host=…", "--host-record=…").  Waits
 * until it accepts a TCP connection.  0 with F's dnsmasq fields set, or
 * -1 (dnsmasq missing or not starting: the caller's lookups skip).
 */
int dns_fixture_dnsmasq_start(struct dns_fixture *f, const char *zone,
			      const char *const *args);

/* dns_fixture_silent_start — F's silent server.  0, or -1. */
int dns_fixture_silent_start(struct dns_fixture *f);

/*
 * dns_fixture_loop_open — a new event base (*BASE) and on it a resolver
 * (*R) with loopback_only, SERVERS (one of the strings above), TIMEOUT_MS
 * per try and one try.  0, or -1 with ERR set and nothing left open.
 */
int dns_fixture_loop_open(struct event_base **base, struct dns_resolver **r,
			  const char *servers, unsigned timeout_ms, char *err,
			  size_t errlen);

/* dns_fixture_loop_close — free what dns_fixture_loop_open() made. */
void dns_fixture_loop_close(struct event_base *base, struct dns_resolver *r);

/*
 * dns_fixture_run — run BASE until *NCALLS reaches WANT or MS milliseconds
 * passed; whether *NCALLS reached WANT.  The callbacks count *NCALLS.
 */
bool dns_fixture_run(struct event_base *base, const int *ncalls, int want,
		     int ms);

/* dns_fixture_stop — stop dnsmasq and close the silent socket (what was
 * started of them). */
void dns_fixture_stop(struct dns_fixture *f);

#endif
