/*
 * dns_test.c — unit tests for dns/: name syntax, the raw-answer walker, and
 * the resolver against DNS servers this program starts on 127.0.0.1 only:
 * t/unit/dns_fake_server.py (per-record TTLs, SOA, SERVFAIL, silence,
 * garbage) and dnsmasq when installed (t/unit/dns_fixture.c; tests skip
 * without it).  Never the system resolver: every resolver here has
 * loopback_only or an explicit loopback server.  The cache clock is driven
 * through dns/resolver_int.h.
 *
 * `dns_test --corpus DIR` writes the seed corpus of t/fuzz/dns_fuzz.c: the
 * raw answers of both servers plus the hand-made packets below.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "dns/dns.h"
#include "dns/cache_int.h"
#include "dns/resolver_int.h"
#include "t/unit/dns_fixture.h"

#ifndef DNS_TEST_PYTHON
#define DNS_TEST_PYTHON "/usr/bin/python3"
#endif
#ifndef DNS_FAKE_SERVER
#define DNS_FAKE_SERVER "t/unit/dns_fake_server.py"
#endif

#define GOT_MAX        8
#define RUN_TIMEOUT_MS 5000
#define CLOCK_START_MS 1000000000ull

/* Servers ----------------------------------------------------------- */

static struct {
	pid_t fake_pid;
	int fake_stdin; /* closing it stops the fake server */
	char fake_servers[64];
	char closed_servers[64]; /* nothing bound: ICMP refused */
} srv = { -1, -1, "", "" };

/* dnsmasq (its tests skip without it) and the silent server. */
static struct dns_fixture dnsfx = DNS_FIXTURE_INIT;

static int
fake_start(void)
{
	int in[2], out[2];
	char line[64];
	struct pollfd pfd;
	ssize_t n;
	size_t got = 0;
	int port;

	if (pipe(in) != 0 || pipe(out) != 0)
		return -1;
	if ((srv.fake_pid = fork()) < 0)
		return -1;
	if (srv.fake_pid == 0) {
		dns_fixture_child_quiet();
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		close(in[1]);
		close(out[0]);
		execl(DNS_TEST_PYTHON, DNS_TEST_PYTHON, DNS_FAKE_SERVER,
		      (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	srv.fake_stdin = in[1];
	pfd.fd = out[0];
	pfd.events = POLLIN;
	while (got < sizeof(line) - 1 && memchr(line, '\n', got) == NULL) {
		if (poll(&pfd, 1, 10000) != 1 ||
		    (n = read(out[0], line + got, sizeof(line) - 1 - got)) <= 0)
			break;
		got += (size_t)n;
	}
	close(out[0]);
	line[got] = '\0';
	if (sscanf(line, "PORT %d", &port) != 1) {
		fprintf(stderr, "dns_fake_server.py did not start: %s\n", line);
		return -1;
	}
	snprintf(srv.fake_servers, sizeof(srv.fake_servers), "127.0.0.1:%d",
		 port);
	return 0;
}

/* One TXT record of two character-strings: 300 octets (dnsmasq splits it
 * at 255) and "bb"; set by servers_start(). */
static char dns_txtarg[400];

static const char *const dns_args[] = {
	"--mx-host=mx.test,mx1.mx.test,10",
	"--mx-host=mx.test,mx2.mx.test,10",
	"--mx-host=mx.test,mx3.mx.test,20",
	"--mx-host=null.test,.,0",
	"--mx-host=lit.test,127.1.2.4,10",
	"--mx-host=lit.test,mx.lit.test,20",
	"--host-record=implicit.test,127.0.0.5,::1",
	dns_txtarg,
	NULL,
};

static int
servers_start(void **state)
{
	int port, fd;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (fake_start() != 0)
		return -1;
	memcpy(dns_txtarg, "--txt-record=txt.test,", 22);
	memset(dns_txtarg + 22, 'a', 300);
	memcpy(dns_txtarg + 322, ",bb", 4);
	if (dns_fixture_dnsmasq_start(&dnsfx, "test", dns_args) != 0)
		fprintf(stderr, "# dnsmasq not available: its tests skip\n");
	if (dns_fixture_silent_start(&dnsfx) != 0)
		return -1;
	if ((fd = dns_fixture_udp_bind(&port)) < 0)
		return -1;
	close(fd);
	snprintf(srv.closed_servers, sizeof(srv.closed_servers), "127.0.0.1:%d",
		 port);
	return 0;
}

static int
servers_stop(void **state)
{
	(void)state;
	if (srv.fake_stdin >= 0)
		close(srv.fake_stdin);
	if (srv.fake_pid > 0) {
		kill(srv.fake_pid, SIGTERM);
		waitpid(srv.fake_pid, NULL, 0);
	}
	dns_fixture_stop(&dnsfx);
	return 0;
}

/* Fixture: a loop, a resolver, a fake clock ------------------------- */

struct fx {
	struct event_base *base;
	struct dns_resolver *r;
	uint64_t now_ms;
	int pending;
	bool expired;
};

static uint64_t
fx_clock(void *arg)
{
	return ((struct fx *)arg)->now_ms;
}

static struct dns_config
cfg_fake(void)
{
	struct dns_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.servers = srv.fake_servers;
	cfg.timeout_ms = 1000; /* generous: ctest runs suites in parallel */
	cfg.tries = 1;
	cfg.loopback_only = true;
	return cfg;
}

static void
fx_init(struct fx *fx, const struct dns_config *cfg)
{
	char err[256] = "";

	memset(fx, 0, sizeof(*fx));
	fx->now_ms = CLOCK_START_MS;
	assert_non_null(fx->base = event_base_new());
	fx->r = dns_resolver_new(fx->base, cfg, err, sizeof(err));
	if (fx->r == NULL)
		fail_msg("dns_resolver_new: %s", err);
	dns_resolver_clock_set(fx->r, fx_clock, fx);
}

static void
fx_fini(struct fx *fx)
{
	dns_resolver_free(fx->r);
	event_base_free(fx->base);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct fx *)arg)->expired = true;
}

/* fx_run — run the loop until every callback came (or MS passed, when
 * UNTIL_DONE is false: then the loop simply runs that long). */
static void
fx_run_ms(struct fx *fx, int ms, bool until_done)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *deadline;

	fx->expired = false;
	assert_non_null(deadline = evtimer_new(fx->base, on_deadline, fx));
	evtimer_add(deadline, &tv);
	while (!fx->expired && (!until_done || fx->pending > 0))
		if (event_base_loop(fx->base, EVLOOP_ONCE) != 0)
			break;
	event_free(deadline);
	if (until_done && fx->pending > 0)
		fail_msg("%d callbacks still missing after %d ms", fx->pending,
			 ms);
}

static void
fx_run(struct fx *fx)
{
	fx_run_ms(fx, RUN_TIMEOUT_MS, true);
}

static struct dns_stats
fx_stats(struct fx *fx)
{
	struct dns_stats st;

	dns_stats_get(fx->r, &st);
	return st;
}

/* What a callback saw, copied out of the reply. */
struct got {
	struct fx *fx;
	int calls;
	enum dns_result result;
	char err[128];
	uint32_t ttl;
	bool implicit;
	size_t n;
	char list[2048]; /* MX hosts or addresses, space separated */
	uint16_t prefs[GOT_MAX];
	char txts[GOT_MAX][400];
	size_t lens[GOT_MAX];
	bool free_resolver;       /* the callback frees the resolver */
	struct dns_query *cancel; /* the callback cancels this query */
};

static void
got_append(struct got *g, const char *s)
{
	size_t len = strlen(g->list);

	snprintf(g->list + len, sizeof(g->list) - len, "%s%s",
		 len > 0 ? " " : "", s);
}

static void
got_actions(struct got *g)
{
	g->calls++;
	g->fx->pending--;
	if (g->cancel != NULL)
		dns_cancel(g->cancel);
	if (g->free_resolver) {
		dns_resolver_free(g->fx->r);
		g->fx->r = NULL;
	}
}

static void
mx_cb(const struct dns_mx_reply *rep, void *arg)
{
	struct got *g = arg;
	size_t i;

	g->result = rep->result;
	g->ttl = rep->ttl;
	g->implicit = rep->implicit;
	g->n = rep->nhosts;
	snprintf(g->err, sizeof(g->err), "%s", rep->err);
	g->list[0] = '\0';
	for (i = 0; i < rep->nhosts; i++) {
		got_append(g, rep->hosts[i].name);
		if (i < GOT_MAX)
			g->prefs[i] = rep->hosts[i].pref;
	}
	got_actions(g);
}

static void
addr_cb(const struct dns_addr_reply *rep, void *arg)
{
	struct got *g = arg;
	char buf[INET6_ADDRSTRLEN];
	size_t i;

	g->result = rep->result;
	g->ttl = rep->ttl;
	g->n = rep->naddrs;
	snprintf(g->err, sizeof(g->err), "%s", rep->err);
	g->list[0] = '\0';
	for (i = 0; i < rep->naddrs; i++) {
		const struct sockaddr_storage *ss = &rep->addrs[i];

		if (ss->ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const void *)ss;

			assert_int_equal(sin->sin_port, 0);
			inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
		} else {
			const struct sockaddr_in6 *sin6 = (const void *)ss;

			assert_int_equal(ss->ss_family, AF_INET6);
			assert_int_equal(sin6->sin6_port, 0);
			inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
		}
		got_append(g, buf);
	}
	got_actions(g);
}

static void
txt_cb(const struct dns_txt_reply *rep, void *arg)
{
	struct got *g = arg;
	size_t i;

	g->result = rep->result;
	g->ttl = rep->ttl;
	g->n = rep->ntxts;
	snprintf(g->err, sizeof(g->err), "%s", rep->err);
	for (i = 0; i < rep->ntxts && i < GOT_MAX; i++) {
		assert_true(rep->lens[i] < sizeof(g->txts[i]));
		assert_int_equal(rep->txts[i][rep->lens[i]], '\0');
		memcpy(g->txts[i], rep->txts[i], rep->lens[i]);
		g->lens[i] = rep->lens[i];
	}
	got_actions(g);
}

/* Start lookups; callbacks must never run inside the call. */
static struct dns_query *
start_mx(struct fx *fx, const char *name, struct got *g)
{
	struct dns_query *q;

	memset(g, 0, sizeof(*g));
	g->fx = fx;
	fx->pending++;
	q = dns_mx_lookup(fx->r, name, mx_cb, g);
	assert_non_null(q);
	assert_int_equal(g->calls, 0);
	return q;
}

static struct dns_query *
start_addr(struct fx *fx, const char *name, int family, struct got *g)
{
	struct dns_query *q;

	memset(g, 0, sizeof(*g));
	g->fx = fx;
	fx->pending++;
	q = dns_addr_lookup(fx->r, name, family, addr_cb, g);
	assert_non_null(q);
	assert_int_equal(g->calls, 0);
	return q;
}

static struct dns_query *
start_txt(struct fx *fx, const char *name, struct got *g)
{
	struct dns_query *q;

	memset(g, 0, sizeof(*g));
	g->fx = fx;
	fx->pending++;
	q = dns_txt_lookup(fx->r, name, txt_cb, g);
	assert_non_null(q);
	assert_int_equal(g->calls, 0);
	return q;
}

static void
get_mx(struct fx *fx, const char *name, struct got *g)
{
	start_mx(fx, name, g);
	fx_run(fx);
	assert_int_equal(g->calls, 1);
}

static void
get_addr(struct fx *fx, const char *name, int family, struct got *g)
{
	start_addr(fx, name, family, g);
	fx_run(fx);
	assert_int_equal(g->calls, 1);
}

static void
get_txt(struct fx *fx, const char *name, struct got *g)
{
	start_txt(fx, name, g);
	fx_run(fx);
	assert_int_equal(g->calls, 1);
}

static void
check_err_has(const char *err, const char *want)
{
	if (want != NULL && strstr(err, want) == NULL)
		fail_msg("err \"%s\" lacks \"%s\"", err, want);
}

/* Name syntax -------------------------------------------------------- */

static const struct name_case {
	const char *in, *want; /* want NULL: refused */
} name_cases[] = {
	{ "example.org", "example.org" },
	{ "Example.ORG.", "example.org" },
	{ "_dmarc.example.org", "_dmarc.example.org" },
	{ "s1._domainkey.Example.org", "s1._domainkey.example.org" },
	{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
	{ "a-b.c", "a-b.c" },
	{ "localhost", "localhost" },
	{ "1.2.3.4", "1.2.3.4" },
	{ "", NULL },
	{ ".", NULL },
	{ "a..b", NULL },
	{ ".a.b", NULL },
	{ "a.b..", NULL },
	{ "-a.b", NULL },
	{ "a-.b", NULL },
	{ "a.b-", NULL },
	{ "a b.c", NULL },
	{ "a\tb.c", NULL },
	{ "exa\xc3\xa9.org", NULL },
	{ "[1.2.3.4]", NULL },
	{ "a:b", NULL },
	{ "a/b.c", NULL },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.c",
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.c" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.c",
	  NULL },
};

static void
test_name_normalize(void **state)
{
	char out[DNS_NAME_MAX + 1], err[128], in[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		const struct name_case *c = &name_cases[i];
		int rc = dns_name_normalize(c->in, out, sizeof(out), err,
					    sizeof(err));

		if (c->want == NULL && rc == 0)
			fail_msg("\"%s\": accepted as \"%s\"", c->in, out);
		if (c->want != NULL && rc != 0)
			fail_msg("\"%s\": refused: %s", c->in, err);
		if (c->want != NULL)
			assert_string_equal(out, c->want);
	}
	/* 253 octets pass, 254 do not; one trailing dot is not counted. */
	memset(in, 'a', sizeof(in));
	for (i = 63; i < 253; i += 64)
		in[i] = '.';
	in[253] = '\0';
	assert_int_equal(
	    dns_name_normalize(in, out, sizeof(out), err, sizeof(err)), 0);
	in[253] = '.';
	in[254] = '\0';
	assert_int_equal(
	    dns_name_normalize(in, out, sizeof(out), err, sizeof(err)), 0);
	in[253] = 'a';
	assert_int_equal(
	    dns_name_normalize(in, out, sizeof(out), err, sizeof(err)), -1);
	assert_int_equal(
	    dns_name_normalize(NULL, out, sizeof(out), err, sizeof(err)), -1);
	assert_true(dns_name_is_ip_literal("192.0.2.1"));
	assert_true(dns_name_is_ip_literal("[192.0.2.1]"));
	assert_true(dns_name_is_ip_literal("2001:db8::1"));
	assert_false(dns_name_is_ip_literal("1.2.3.4.5"));
	assert_false(dns_name_is_ip_literal("mx.example.org"));
}

static void
test_result_str(void **state)
{
	(void)state;
	assert_string_equal(dns_result_str(DNS_OK), "ok");
	assert_string_equal(dns_result_str(DNS_TEMPFAIL), "tempfail");
	assert_string_equal(dns_result_str(DNS_NXDOMAIN), "nxdomain");
	assert_string_equal(dns_result_str(DNS_NODATA), "nodata");
	assert_string_equal(dns_result_str(DNS_NULLMX), "nullmx");
	assert_string_equal(dns_result_str(DNS_BADNAME), "badname");
	assert_string_equal(dns_result_str((enum dns_result)99), "unknown");
}

/* Raw-answer walker -------------------------------------------------- */

/* Header of an answer: id 0x1234, QR RD RA + RCODE, counts. */
#define HDR(rcode, qd, an, ns)                                                 \
	"\x12\x34\x81" rcode "\x00" qd "\x00" an "\x00" ns "\x00\x00"
/* Question "a.test" (name at offset 12, "test" at 14) MX IN. */
#define Q_MX                                                                   \
	"\x01"                                                                 \
	"a\x04test\x00\x00\x0f\x00\x01"
/* MX 10 mx.a.test, owner = question name, TTL given as 4 octets. */
#define RR_MX(ttl)                                                             \
	"\xc0\x0c\x00\x0f\x00\x01" ttl "\x00\x07\x00\x0a\x02mx\xc0\x0c"
/* SOA of "test": ns.test hostmaster.test, serial 1, ..., minimum. */
#define RR_SOA(ttl, min)                                                       \
	"\xc0\x0e\x00\x06\x00\x01" ttl                                         \
	"\x00\x20\x02ns\xc0\x0e\x04host\xc0\x0e"                               \
	"\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x02\x58\x00\x01\x51\x80" min

static const struct walk_case {
	const char *name;
	const char *pkt;
	size_t len;
	int rc;
	uint8_t rcode;
	bool has_ttl;
	uint32_t ttl;
	bool has_soa;
	uint32_t soa_ttl, soa_min;
} walk_cases[] = {
#define P(s) s, sizeof(s) - 1
	{ "one MX",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX RR_MX("\x00\x00\x01\x2c")),
	  0, 0, true, 300, false, 0, 0 },
	{ "min of two TTLs",
	  P(HDR("\x80", "\x01", "\x02", "\x00") Q_MX RR_MX("\x00\x00\x01\x2c")
		RR_MX("\x00\x00\x00\x3c")),
	  0, 0, true, 60, false, 0, 0 },
	{ "top-bit TTL is 0",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX RR_MX("\x80\x00\x00\x01")),
	  0, 0, true, 0, false, 0, 0 },
	{ "NXDOMAIN with SOA",
	  P(HDR("\x83", "\x01", "\x00", "\x01")
		Q_MX RR_SOA("\x00\x00\x03\x84", "\x00\x00\x00\x78")),
	  0, 3, false, 0, true, 900, 120 },
	{ "NODATA with SOA",
	  P(HDR("\x80", "\x01", "\x00", "\x01")
		Q_MX RR_SOA("\x00\x00\x00\x32", "\x00\x00\x01\x2c")),
	  0, 0, false, 0, true, 50, 300 },
	{ "root question",
	  P(HDR("\x80", "\x01", "\x00", "\x00") "\x00\x00\x0f\x00\x01"), 0, 0,
	  false, 0, false, 0, 0 },
	{ "empty", "", 0, -1, 0, false, 0, false, 0, 0 },
	{ "short header", P("\x12\x34\x81\x80\x00\x01\x00\x00"), -1, 0, false,
	  0, false, 0, 0 },
	{ "a query, not an answer",
	  P("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" Q_MX), -1, 0,
	  false, 0, false, 0, 0 },
	{ "answer count beyond the data",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX), -1, 0, false, 0, false,
	  0, 0 },
	{ "record cut in its header",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX "\xc0\x0c\x00\x0f\x00"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "RDLENGTH past the end",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX
	    "\xc0\x0c\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\xc8\x00\x0a"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "forward compression pointer",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX
	    "\xc0\x30\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x00"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "pointer to itself",
	  P(HDR("\x80", "\x01", "\x01", "\x00") Q_MX
	    "\xc0\x18\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x00"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "pointer cut in half", P(HDR("\x80", "\x01", "\x00", "\x00") "\xc0"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "label type 0x40",
	  P(HDR("\x80", "\x01", "\x00", "\x00") "\x41"
						"a\x00\x00\x0f\x00\x01"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "label past the end",
	  P(HDR("\x80", "\x01", "\x00", "\x00") "\x05"
						"ab"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "SOA RDATA too short",
	  P(HDR("\x83", "\x01", "\x00", "\x01") Q_MX
	    "\xc0\x0e\x00\x06\x00\x01\x00\x00\x00\x3c\x00\x0a"
	    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
	  -1, 0, false, 0, false, 0, 0 },
	{ "SOA RDATA with a trailing octet",
	  P(HDR("\x83", "\x01", "\x00", "\x01") Q_MX
	    "\xc0\x0e\x00\x06\x00\x01\x00\x00\x00\x3c\x00\x17"
	    "\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"
	    "\x00\x00\x00\x04\x00\x00\x00\x05\xff"),
	  -1, 0, false, 0, false, 0, 0 },
#undef P
};

static void
test_answer_walk(void **state)
{
	struct dns_answer_info ai;
	unsigned char big[600];
	size_t i, off;

	(void)state;
	for (i = 0; i < sizeof(walk_cases) / sizeof(walk_cases[0]); i++) {
		const struct walk_case *c = &walk_cases[i];
		int rc =
		    dns_answer_walk((const unsigned char *)c->pkt, c->len, &ai);

		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d", c->name, rc, c->rc);
		if (rc != 0)
			continue;
		if (ai.rcode != c->rcode || ai.has_ttl != c->has_ttl ||
		    ai.ttl_min != c->ttl || ai.has_soa != c->has_soa ||
		    ai.soa_ttl != c->soa_ttl || ai.soa_min != c->soa_min)
			fail_msg("%s: rcode %u ttl %d/%u soa %d/%u/%u", c->name,
				 ai.rcode, ai.has_ttl, ai.ttl_min, ai.has_soa,
				 ai.soa_ttl, ai.soa_min);
	}
	/* A question name of 4 x 63-octet labels is 257 octets: refused. */
	memcpy(big, HDR("\x80", "\x01", "\x00", "\x00"), 12);
	for (off = 12, i = 0; i < 4; i++) {
		big[off++] = 63;
		memset(big + off, 'a', 63);
		off += 63;
	}
	big[off++] = 0;
	memcpy(big + off, "\x00\x0f\x00\x01", 4);
	off += 4;
	assert_int_equal(dns_answer_walk(big, off, &ai), -1);
	assert_int_equal(dns_answer_walk(NULL, 0, &ai), -1);
}

/* Loopback ----------------------------------------------------------- */

static const struct loop_case {
	const char *addr;
	bool loopback;
} loop_cases[] = {
	{ "127.0.0.1", true },
	{ "127.255.0.9", true },
	{ "128.0.0.1", false },
	{ "192.0.2.1", false },
	{ "0.0.0.0", false },
	{ "::1", true },
	{ "::", false },
	{ "::2", false },
	{ "2001:db8::1", false },
	{ "::ffff:127.0.0.1", true },
	{ "::ffff:127.1.2.3", true },
	{ "::ffff:192.0.2.1", false },
	{ "::127.0.0.1", false }, /* IPv4-compatible, deprecated: not mapped */
	{ "64:ff9b::7f00:1", false }, /* NAT64 of 127.0.0.1: another host */
};

/* dns_addr_is_loopback, the one loopback test of the tree (resolver
 * guard, conf's AUTH-in-clear check): v4 /8, ::1 and ::ffff:127.0.0.0/104;
 * another family is never loopback. */
static void
test_addr_is_loopback(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	size_t i;
	bool got;

	(void)state;
	for (i = 0; i < sizeof(loop_cases) / sizeof(loop_cases[0]); i++) {
		const struct loop_case *c = &loop_cases[i];

		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, c->addr, &sin->sin_addr) == 1)
			ss.ss_family = AF_INET;
		else if (inet_pton(AF_INET6, c->addr, &sin6->sin6_addr) == 1)
			ss.ss_family = AF_INET6;
		else
			fail_msg("%s: not an address", c->addr);
		got = dns_addr_is_loopback((const struct sockaddr *)&ss);
		if (got != c->loopback)
			fail_msg("%s: loopback %d, want %d", c->addr, got,
				 c->loopback);
	}
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_false(dns_addr_is_loopback((const struct sockaddr *)&ss));
}

/* Configuration ------------------------------------------------------ */

static const struct cfg_case {
	const char *name;
	const char *servers;
	bool loopback_only;
	bool ok;
	const char *err_has;
} cfg_cases[] = {
	{ "loopback v4", "127.0.0.1:5300", true, true, NULL },
	{ "loopback v4 /8", "127.1.2.3:5300", true, true, NULL },
	{ "loopback v6", "[::1]:5300", true, true, NULL },
	{ "bare v6 loopback", "::1", true, true, NULL },
	{ "list", "127.0.0.1:5300, [::1]:5301", true, true, NULL },
	{ "documentation net refused", "192.0.2.1:53", true, false,
	  "loopback" },
	{ "one bad in list", "127.0.0.1:5300,192.0.2.1:53", true, false,
	  "192.0.2.1" },
	{ "v6 non-loopback", "[2001:db8::1]:53", true, false, "loopback" },
	/* The same host as 127.0.0.1 (dns_addr_is_loopback). */
	{ "v4-mapped loopback", "[::ffff:127.0.0.1]:5300", true, true, NULL },
	{ "v4-mapped non-loopback", "[::ffff:192.0.2.1]:53", true, false,
	  "loopback" },
	{ "system resolver refused", NULL, true, false, "loopback_only" },
	{ "hostname", "localhost:53", true, false, "bad server" },
	{ "bad port", "127.0.0.1:99999", true, false, "bad server" },
	{ "port not a number", "127.0.0.1:x", true, false, "bad server" },
	{ "empty", "", true, false, "empty" },
	{ "unclosed bracket", "[::1:53", true, false, "bad server" },
	{ "non-loopback allowed without the guard", "192.0.2.1:53", false, true,
	  NULL },
};

static void
test_config(void **state)
{
	struct event_base *base;
	struct dns_resolver *r;
	struct dns_config cfg;
	char err[256];
	size_t i;

	(void)state;
	assert_non_null(base = event_base_new());
	for (i = 0; i < sizeof(cfg_cases) / sizeof(cfg_cases[0]); i++) {
		const struct cfg_case *c = &cfg_cases[i];

		memset(&cfg, 0, sizeof(cfg));
		cfg.servers = c->servers;
		cfg.loopback_only = c->loopback_only;
		err[0] = '\0';
		r = dns_resolver_new(base, &cfg, err, sizeof(err));
		if (c->ok && r == NULL)
			fail_msg("%s: refused: %s", c->name, err);
		if (!c->ok && r != NULL)
			fail_msg("%s: accepted", c->name);
		if (!c->ok)
			check_err_has(err, c->err_has);
		/* Nothing was looked up: nothing was sent anywhere. */
		dns_resolver_free(r);
	}
	assert_null(dns_resolver_new(base, NULL, err, sizeof(err)));
	event_base_free(base);
}

/* Lookups against the fake server ------------------------------------ */

static const struct mx_case {
	const char *name, *domain;
	enum dns_result want;
	bool implicit;
	const char *hosts; /* in order */
	uint32_t ttl;
	const char *err_has;
} fake_mx_cases[] = {
	{ "TTL is the answer's minimum", "ttl.fake.test", DNS_OK, false,
	  "a.ttl.fake.test b.ttl.fake.test", 60, NULL },
	{ "case and trailing dot", "TTL.Fake.Test.", DNS_OK, false,
	  "a.ttl.fake.test b.ttl.fake.test", 60, NULL },
	{ "CNAME chain followed", "alias.fake.test", DNS_OK, false,
	  "mx.real.fake.test", 30, NULL },
	{ "CNAME to a name without MX: implicit", "dangling.fake.test", DNS_OK,
	  true, "dangling.fake.test", 50, NULL },
	{ "NODATA: implicit MX", "nomx.fake.test", DNS_OK, true,
	  "nomx.fake.test", 50, NULL },
	{ "NXDOMAIN: SOA minimum", "nx.fake.test", DNS_NXDOMAIN, false, "", 120,
	  NULL },
	{ "NXDOMAIN without SOA: TTL 0", "nosoa.fake.test", DNS_NXDOMAIN, false,
	  "", 0, NULL },
	{ "null MX", "null.fake.test", DNS_NULLMX, false, "", 100, "null MX" },
	{ "null MX among others is ignored", "nullmix.fake.test", DNS_OK, false,
	  "mx.nullmix.fake.test", 100, NULL },
	{ "IP literals dropped", "literal.fake.test", DNS_OK, false,
	  "mx.literal.fake.test", 100, NULL },
	{ "only IP literals: NODATA", "literalonly.fake.test", DNS_NODATA,
	  false, "", 100, "no usable MX" },
	{ "top-bit TTL reads 0", "hugettl.fake.test", DNS_OK, false,
	  "mx.hugettl.fake.test", 0, NULL },
	{ "SERVFAIL", "servfail.fake.test", DNS_TEMPFAIL, false, "", 5,
	  "SERVFAIL" },
	{ "REFUSED", "refused.fake.test", DNS_TEMPFAIL, false, "", 5,
	  "REFUSED" },
	{ "truncated record", "garbage.fake.test", DNS_TEMPFAIL, false, "", 5,
	  "malformed" },
	{ "RDLENGTH past the end", "badrdata.fake.test", DNS_TEMPFAIL, false,
	  "", 5, "malformed" },
	{ "broken SOA", "badsoa.fake.test", DNS_TEMPFAIL, false, "", 5,
	  "malformed" },
	{ "silence: timeout", "silent.fake.test", DNS_TEMPFAIL, false, "", 5,
	  "timeout" },
	{ "bad name", "bad..name", DNS_BADNAME, false, "", 0, "empty label" },
	{ "IP literal as a domain is a name", "[127.0.0.1]", DNS_BADNAME, false,
	  "", 0, NULL },
};

static void
test_fake_mx(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(fake_mx_cases) / sizeof(fake_mx_cases[0]); i++) {
		const struct mx_case *c = &fake_mx_cases[i];

		fx_init(&fx, &cfg);
		get_mx(&fx, c->domain, &g);
		if (g.result != c->want || g.implicit != c->implicit ||
		    strcmp(g.list, c->hosts) != 0 || g.ttl != c->ttl)
			fail_msg("%s: %s implicit=%d hosts \"%s\" ttl %u (%s); "
				 "want %s implicit=%d \"%s\" ttl %u",
				 c->name, dns_result_str(g.result), g.implicit,
				 g.list, g.ttl, g.err, dns_result_str(c->want),
				 c->implicit, c->hosts, c->ttl);
		if (c->want != DNS_OK)
			assert_int_equal(g.n, 0);
		if (c->want != DNS_OK && g.err[0] == '\0')
			fail_msg("%s: no err text", c->name);
		check_err_has(g.err, c->err_has);
		if (c->want == DNS_BADNAME)
			assert_int_equal(fx_stats(&fx).queries, 0);
		fx_fini(&fx);
	}
}

static const struct addr_case {
	const char *name, *host;
	int family;
	bool loopback_only;
	enum dns_result want;
	const char *addrs;
	uint32_t ttl;
	const char *err_has;
} fake_addr_cases[] = {
	{ "AAAA then A", "addr.fake.test", AF_UNSPEC, true, DNS_OK,
	  "::1 127.0.0.1 127.0.0.2", 100, NULL },
	{ "A only", "addr.fake.test", AF_INET, true, DNS_OK,
	  "127.0.0.1 127.0.0.2", 200, NULL },
	{ "AAAA only", "addr.fake.test", AF_INET6, true, DNS_OK, "::1", 100,
	  NULL },
	{ "CNAME followed", "addralias.fake.test", AF_INET, true, DNS_OK,
	  "127.0.0.4", 50, NULL },
	{ "no AAAA: NODATA, SOA minimum", "v4.fake.test", AF_INET6, true,
	  DNS_NODATA, "", 120, NULL },
	{ "unspec with A only", "v4.fake.test", AF_UNSPEC, true, DNS_OK,
	  "127.0.0.4", 120, NULL },
	{ "NXDOMAIN", "nx.fake.test", AF_UNSPEC, true, DNS_NXDOMAIN, "", 120,
	  NULL },
	{ "SERVFAIL", "servfail.fake.test", AF_UNSPEC, true, DNS_TEMPFAIL, "",
	  5, "SERVFAIL" },
	{ "non-loopback refused", "nonloop.fake.test", AF_INET, true,
	  DNS_TEMPFAIL, "", 100,
	  "non-loopback address refused (loopback_only)" },
	{ "non-loopback filtered", "mixed.fake.test", AF_UNSPEC, true, DNS_OK,
	  "127.0.0.3", 100, NULL },
	{ "without the guard", "mixed.fake.test", AF_INET, false, DNS_OK,
	  "192.0.2.11 127.0.0.3", 100, NULL },
	{ "bad family", "addr.fake.test", 12345, true, DNS_BADNAME, "", 0,
	  "family" },
	{ "bad name", "-bad.test", AF_UNSPEC, true, DNS_BADNAME, "", 0,
	  "hyphen" },
};

static void
test_fake_addr(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(fake_addr_cases) / sizeof(fake_addr_cases[0]);
	     i++) {
		const struct addr_case *c = &fake_addr_cases[i];

		cfg.loopback_only = c->loopback_only;
		fx_init(&fx, &cfg);
		get_addr(&fx, c->host, c->family, &g);
		if (g.result != c->want || strcmp(g.list, c->addrs) != 0 ||
		    g.ttl != c->ttl)
			fail_msg("%s: %s \"%s\" ttl %u (%s); want %s \"%s\" "
				 "ttl %u",
				 c->name, dns_result_str(g.result), g.list,
				 g.ttl, g.err, dns_result_str(c->want),
				 c->addrs, c->ttl);
		check_err_has(g.err, c->err_has);
		fx_fini(&fx);
	}
}

static void
test_fake_txt(void **state)
{
	struct dns_config cfg = cfg_fake();
	char long_txt[301];
	struct fx fx;
	struct got g;

	(void)state;
	fx_init(&fx, &cfg);
	get_txt(&fx, "txt.fake.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.ttl, 100);
	assert_int_equal(g.lens[0], 11);
	assert_memory_equal(g.txts[0], "v=spf1 -all", 11);
	memset(long_txt, 'a', 255);
	memset(long_txt + 255, 'b', 45);
	assert_int_equal(g.lens[1], 300);
	assert_memory_equal(g.txts[1], long_txt, 300);
	assert_int_equal(g.lens[2], 8);
	assert_memory_equal(g.txts[2], "nul\0byte", 8);
	get_txt(&fx, "nx.fake.test", &g);
	assert_int_equal(g.result, DNS_NXDOMAIN);
	get_txt(&fx, "ttl.fake.test", &g);
	assert_int_equal(g.result, DNS_NODATA);
	assert_int_equal(g.n, 0);
	get_txt(&fx, "a..b", &g);
	assert_int_equal(g.result, DNS_BADNAME);
	fx_fini(&fx);
}

/* Equal preferences come in a new order in every reply, cache or not. */
static void
test_fake_mx_shuffle(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;
	int i, ab = 0, ba = 0;

	(void)state;
	fx_init(&fx, &cfg);
	for (i = 0; i < 64; i++) {
		get_mx(&fx, "equal.fake.test", &g);
		assert_int_equal(g.result, DNS_OK);
		assert_int_equal(g.n, 4);
		assert_int_equal(g.prefs[0], 5);
		assert_int_equal(g.prefs[1], 10);
		assert_int_equal(g.prefs[2], 10);
		assert_int_equal(g.prefs[3], 20);
		if (strcmp(g.list,
			   "first.equal.fake.test a.equal.fake.test "
			   "b.equal.fake.test last.equal.fake.test") == 0)
			ab++;
		else if (strcmp(g.list,
				"first.equal.fake.test b.equal.fake.test "
				"a.equal.fake.test last.equal.fake.test") == 0)
			ba++;
		else
			fail_msg("bad order: %s", g.list);
	}
	assert_int_equal(fx_stats(&fx).queries, 1);
	if (ab == 0 || ba == 0)
		fail_msg("no shuffle: a,b %d times, b,a %d times", ab, ba);
	fx_fini(&fx);
}

/* Cache -------------------------------------------------------------- */

static void
test_cache_positive_ttl(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct dns_stats st;
	struct fx fx;
	struct got g;

	(void)state;
	fx_init(&fx, &cfg);
	get_mx(&fx, "ttl.fake.test", &g);
	assert_int_equal(g.ttl, 60);
	st = fx_stats(&fx);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_misses, 1);
	assert_int_equal(st.cache_entries, 1);

	fx.now_ms += 30000; /* within TTL: a hit, the TTL counts down */
	get_mx(&fx, "ttl.fake.test.", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_int_equal(g.ttl, 30);
	st = fx_stats(&fx);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.cache_hits, 1);

	fx.now_ms += 30000; /* TTL over: asked again */
	get_mx(&fx, "ttl.fake.test", &g);
	assert_int_equal(g.ttl, 60);
	st = fx_stats(&fx);
	assert_int_equal(st.queries, 2);
	assert_int_equal(st.cache_misses, 2);

	/* Types are separate keys. */
	get_txt(&fx, "ttl.fake.test", &g);
	assert_int_equal(fx_stats(&fx).queries, 3);
	fx_fini(&fx);
}

/* no_cache (dns { cache_size = 0 }): every lookup asks, even within the
 * record's TTL, and the TTL handed out is 0, so that nothing downstream
 * keeps the answer either. */
static void
test_cache_none(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct dns_stats st;
	struct fx fx;
	struct got g;

	(void)state;
	cfg.no_cache = true;
	fx_init(&fx, &cfg);
	get_mx(&fx, "ttl.fake.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_int_equal(g.ttl, 0);
	fx.now_ms += 1000;
	get_mx(&fx, "ttl.fake.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_int_equal(g.ttl, 0);
	st = fx_stats(&fx);
	assert_int_equal(st.queries, 2);
	assert_int_equal(st.cache_hits, 0);
	fx_fini(&fx);
}

static void
test_cache_negative_ttl(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;

	(void)state;
	fx_init(&fx, &cfg);
	get_mx(&fx, "nx.fake.test", &g);
	assert_int_equal(g.result, DNS_NXDOMAIN);
	assert_int_equal(g.ttl, 120); /* min(SOA TTL 900, MINIMUM 120) */
	fx.now_ms += 119000;
	get_mx(&fx, "nx.fake.test", &g);
	assert_int_equal(g.result, DNS_NXDOMAIN);
	assert_int_equal(g.ttl, 1);
	assert_int_equal(fx_stats(&fx).queries, 1);
	fx.now_ms += 1000;
	get_mx(&fx, "nx.fake.test", &g);
	assert_int_equal(fx_stats(&fx).queries, 2);

	/* NODATA (implicit MX) is cached with the SOA TTL (50 < 300). */
	get_mx(&fx, "nomx.fake.test", &g);
	fx.now_ms += 49000;
	get_mx(&fx, "nomx.fake.test", &g);
	assert_true(g.implicit);
	assert_int_equal(fx_stats(&fx).queries, 3);
	fx.now_ms += 1000;
	get_mx(&fx, "nomx.fake.test", &g);
	assert_int_equal(fx_stats(&fx).queries, 4);

	/* No SOA: not cached at all. */
	get_mx(&fx, "nosoa.fake.test", &g);
	get_mx(&fx, "nosoa.fake.test", &g);
	assert_int_equal(g.result, DNS_NXDOMAIN);
	assert_int_equal(fx_stats(&fx).queries, 6);
	fx_fini(&fx);

	cfg.negative_ttl_max = 60;
	fx_init(&fx, &cfg);
	get_mx(&fx, "nx.fake.test", &g);
	assert_int_equal(g.ttl, 60);
	fx_fini(&fx);
}

static void
test_cache_tempfail(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;

	(void)state;
	fx_init(&fx, &cfg);
	get_mx(&fx, "servfail.fake.test", &g);
	assert_int_equal(g.result, DNS_TEMPFAIL);
	fx.now_ms += 4000;
	get_mx(&fx, "servfail.fake.test", &g);
	assert_int_equal(g.result, DNS_TEMPFAIL);
	assert_int_equal(fx_stats(&fx).queries, 1);
	fx.now_ms += 1000;
	get_mx(&fx, "servfail.fake.test", &g);
	assert_int_equal(fx_stats(&fx).queries, 2);
	fx_fini(&fx);

	cfg.tempfail_ttl = 30;
	fx_init(&fx, &cfg);
	get_mx(&fx, "silent.fake.test", &g);
	assert_int_equal(g.result, DNS_TEMPFAIL);
	assert_int_equal(g.ttl, 30);
	assert_int_equal(fx_stats(&fx).timeouts, 1);
	fx_fini(&fx);
}

static void
test_cache_clamp(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;

	(void)state;
	cfg.min_ttl = 10;
	cfg.max_ttl = 100;
	fx_init(&fx, &cfg);
	get_mx(&fx, "hugettl.fake.test", &g);
	assert_int_equal(g.ttl, 10);
	get_mx(&fx, "real.fake.test", &g);
	assert_int_equal(g.ttl, 100); /* 600 capped */
	/* min_ttl is for positive answers only. */
	get_mx(&fx, "nosoa.fake.test", &g);
	assert_int_equal(g.ttl, 0);
	fx_fini(&fx);
}

static void
test_cache_eviction(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;

	(void)state;
	cfg.cache_max = 2;
	fx_init(&fx, &cfg);
	get_mx(&fx, "ttl.fake.test", &g);
	get_mx(&fx, "real.fake.test", &g);
	get_mx(&fx, "ttl.fake.test", &g); /* hit: ttl is most recent */
	assert_int_equal(fx_stats(&fx).queries, 2);
	get_mx(&fx, "null.fake.test", &g); /* evicts real */
	assert_int_equal(fx_stats(&fx).cache_entries, 2);
	get_mx(&fx, "ttl.fake.test", &g);
	assert_int_equal(fx_stats(&fx).queries, 3);
	get_mx(&fx, "real.fake.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_int_equal(fx_stats(&fx).queries, 4);
	assert_int_equal(fx_stats(&fx).cache_entries, 2);
	fx_fini(&fx);
}

/* Concurrent identical lookups share one query. */
static void
test_inflight_dedup(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g[5], a[2];
	int i;

	(void)state;
	fx_init(&fx, &cfg);
	for (i = 0; i < 5; i++)
		start_mx(&fx, i % 2 ? "SLOW.fake.test." : "slow.fake.test",
			 &g[i]);
	start_addr(&fx, "addr.fake.test", AF_UNSPEC, &a[0]);
	start_addr(&fx, "addr.fake.test", AF_INET, &a[1]);
	fx_run(&fx);
	for (i = 0; i < 5; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].result, DNS_OK);
		assert_string_equal(g[i].list, "mx.slow.fake.test");
	}
	assert_string_equal(a[0].list, "::1 127.0.0.1 127.0.0.2");
	assert_string_equal(a[1].list, "127.0.0.1 127.0.0.2");
	assert_int_equal(fx_stats(&fx).queries, 3); /* MX, AAAA, A */
	fx_fini(&fx);
}

/* Questions in flight are capped ----------------------------------- */

/* Callbacks in the order they came: got.calls of each, in a shared list. */
struct order {
	int n;
	int seq[16];
};

static struct order order_seen;

static void
mx_order_cb(const struct dns_mx_reply *rep, void *arg)
{
	struct got *g = arg;

	if (order_seen.n < 16)
		order_seen.seq[order_seen.n++] = (int)g->prefs[GOT_MAX - 1];
	mx_cb(rep, arg);
}

/*
 * 12 distinct questions, each answered after 50 ms (burst names), with
 * max_inflight 3, plus copies of one of them: never more than 3 in
 * flight, so it takes at least 4 rounds of 50 ms; each question is asked
 * once and every lookup answered.  Then FIFO: with max_inflight 1, six
 * lookups are answered in the order they were made.
 */
static void
test_inflight_cap(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct dns_stats st;
	struct fx fx;
	struct got g[15];
	char name[64], want[80];
	uint64_t t0, took;
	int i;

	(void)state;
	cfg.max_inflight = 3;
	fx_init(&fx, &cfg);
	t0 = dns_clock_ms();
	for (i = 0; i < 15; i++) {
		snprintf(name, sizeof(name), "q%d.burst.fake.test",
			 i < 12 ? i : 5);
		start_mx(&fx, name, &g[i]);
	}
	fx_run(&fx);
	took = dns_clock_ms() - t0;
	for (i = 0; i < 15; i++) {
		snprintf(want, sizeof(want), "mx.q%d.burst.fake.test",
			 i < 12 ? i : 5);
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].result, DNS_OK);
		assert_string_equal(g[i].list, want);
	}
	st = fx_stats(&fx);
	assert_int_equal(st.queries, 12);
	assert_int_equal(st.inflight_peak, 3);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.waiting, 0);
	assert_int_equal(st.wait_timeouts, 0);
	if (took < 4 * 50)
		fail_msg("12 questions of 50 ms, 3 at a time, took %llu ms",
			 (unsigned long long)took);
	fx_fini(&fx);

	cfg.max_inflight = 1;
	fx_init(&fx, &cfg);
	memset(&order_seen, 0, sizeof(order_seen));
	for (i = 0; i < 6; i++) {
		/* Counted backwards: no name order to fall back on. */
		snprintf(name, sizeof(name), "o%d.burst.fake.test", 9 - i);
		memset(&g[i], 0, sizeof(g[i]));
		g[i].fx = &fx;
		g[i].prefs[GOT_MAX - 1] = (uint16_t)i; /* its rank */
		fx.pending++;
		assert_non_null(dns_mx_lookup(fx.r, name, mx_order_cb, &g[i]));
	}
	fx_run(&fx);
	assert_int_equal(order_seen.n, 6);
	for (i = 0; i < 6; i++)
		assert_int_equal(order_seen.seq[i], i);
	assert_int_equal(fx_stats(&fx).inflight_peak, 1);
	fx_fini(&fx);
}

/*
 * A question that waits as long as a whole lookup may take (timeout x
 * tries = 600 ms) is answered TEMPFAIL without being asked; the one that
 * held the slot (silent: 300 + 600 ms of c-ares tries) times out on its
 * own.  Past cache_max questions waiting, a lookup is refused at once.
 */
static void
test_inflight_wait_limits(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct dns_stats st;
	struct fx fx;
	struct got g[4];
	char name[64];
	int i;

	(void)state;
	cfg.max_inflight = 1;
	cfg.timeout_ms = 300;
	cfg.tries = 2;
	fx_init(&fx, &cfg);
	start_mx(&fx, "silent.fake.test", &g[0]);
	start_mx(&fx, "late.burst.fake.test", &g[1]);
	fx_run(&fx);
	assert_int_equal(g[1].result, DNS_TEMPFAIL);
	check_err_has(g[1].err, "free query slot");
	assert_int_equal(g[0].result, DNS_TEMPFAIL);
	check_err_has(g[0].err, "timeout");
	st = fx_stats(&fx);
	assert_int_equal(st.wait_timeouts, 1);
	assert_int_equal(st.queries, 1);
	assert_int_equal(st.timeouts, 1);
	fx_fini(&fx);

	cfg = cfg_fake();
	cfg.max_inflight = 1;
	cfg.cache_max = 2;
	fx_init(&fx, &cfg);
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "w%d.burst.fake.test", i);
		start_mx(&fx, name, &g[i]);
	}
	st = fx_stats(&fx);
	assert_int_equal(st.inflight, 1);
	assert_int_equal(st.waiting, 2);
	fx_run(&fx);
	for (i = 0; i < 3; i++)
		assert_int_equal(g[i].result, DNS_OK);
	assert_int_equal(g[3].result, DNS_TEMPFAIL);
	check_err_has(g[3].err, "too many");
	assert_int_equal(fx_stats(&fx).wait_refused, 1);
	fx_fini(&fx);

	/* Freed with questions waiting: no callback, nothing leaks (ASan). */
	cfg = cfg_fake();
	cfg.max_inflight = 1;
	fx_init(&fx, &cfg);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "f%d.burst.fake.test", i);
		start_mx(&fx, name, &g[i]);
	}
	dns_cancel(start_mx(&fx, "f1.burst.fake.test", &g[3]));
	dns_resolver_free(fx.r);
	fx.r = NULL;
	fx.pending = 0;
	fx_run_ms(&fx, 200, false);
	for (i = 0; i < 4; i++)
		assert_int_equal(g[i].calls, 0);
	fx_fini(&fx);
}

static void
test_cancel(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct dns_query *q1, *q2, *q3, *q4;
	struct fx fx;
	struct got g1, g2, g3, g4, g5;

	(void)state;
	fx_init(&fx, &cfg);
	q1 = start_mx(&fx, "slow.fake.test", &g1);
	start_mx(&fx, "slow.fake.test", &g2);
	q3 = start_mx(&fx, "bad..name", &g3);
	dns_cancel(q1);
	dns_cancel(q3);
	fx.pending -= 2;
	fx_run(&fx);
	fx_run_ms(&fx, 100, false);
	assert_int_equal(g1.calls, 0);
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g3.calls, 0);

	/* A cache hit cancelled before its delivery; a query cancelled by
	 * the callback of another one that is ready in the same round. */
	q4 = start_mx(&fx, "slow.fake.test", &g4);
	dns_cancel(q4);
	start_mx(&fx, "slow.fake.test", &g5);
	q2 = start_mx(&fx, "slow.fake.test", &g2);
	g5.cancel = q2;
	fx.pending -= 2;
	fx_run(&fx);
	fx_run_ms(&fx, 100, false);
	assert_int_equal(g4.calls, 0);
	assert_int_equal(g5.calls, 1);
	assert_int_equal(g2.calls, 0);
	/* Cancelled mid-flight, the answer still lands in the cache. */
	assert_int_equal(fx_stats(&fx).queries, 1);
	fx_fini(&fx);
}

static void
test_free_pending(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g[6];

	(void)state;
	fx_init(&fx, &cfg);
	get_mx(&fx, "ttl.fake.test", &g[0]);
	start_mx(&fx, "ttl.fake.test", &g[0]);    /* ready, undelivered */
	start_mx(&fx, "slow.fake.test", &g[1]);   /* in flight */
	start_mx(&fx, "silent.fake.test", &g[2]); /* never answered */
	start_addr(&fx, "addr.fake.test", AF_UNSPEC, &g[3]);
	start_txt(&fx, "txt.fake.test", &g[4]);
	start_mx(&fx, "bad..name", &g[5]);
	dns_resolver_free(fx.r);
	fx.r = NULL;
	fx.pending = 0;
	fx_run_ms(&fx, 500, false); /* the slow answer arrives: ignored */
	assert_int_equal(g[0].calls + g[1].calls + g[2].calls + g[3].calls +
			     g[4].calls + g[5].calls,
			 0);
	fx_fini(&fx);
}

/* The resolver freed from inside a callback: nothing more is called. */
static void
test_free_in_callback(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g1, g2, g3;

	(void)state;
	fx_init(&fx, &cfg);
	get_mx(&fx, "ttl.fake.test", &g1);
	start_mx(&fx, "ttl.fake.test", &g1);
	start_mx(&fx, "ttl.fake.test", &g2);
	start_mx(&fx, "slow.fake.test", &g3);
	g1.free_resolver = true;
	fx_run_ms(&fx, 500, false);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 0);
	assert_int_equal(g3.calls, 0);
	assert_null(fx.r);
	fx_fini(&fx);
}

/* A callback may start lookups; a cache hit still waits for the loop. */
static void
on_mx_again(const struct dns_mx_reply *rep, void *arg)
{
	struct got *g = arg;
	struct fx *fx = g->fx;

	mx_cb(rep, arg);
	if (g->calls == 1) {
		fx->pending++;
		assert_non_null(
		    dns_mx_lookup(fx->r, "ttl.fake.test", on_mx_again, g));
		assert_int_equal(g->calls, 1);
	}
}

static void
test_lookup_from_callback(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;

	(void)state;
	fx_init(&fx, &cfg);
	memset(&g, 0, sizeof(g));
	g.fx = &fx;
	fx.pending++;
	assert_non_null(dns_mx_lookup(fx.r, "ttl.fake.test", on_mx_again, &g));
	fx_run(&fx);
	assert_int_equal(g.calls, 2);
	assert_int_equal(fx_stats(&fx).queries, 1);
	fx_fini(&fx);
}

/* Servers that fail ------------------------------------------------- */

static void
test_server_silent(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;
	struct timespec t0, t1;
	long ms;

	(void)state;
	cfg.servers = dnsfx.silent_servers;
	cfg.timeout_ms = 200;
	fx_init(&fx, &cfg);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	get_mx(&fx, "example.test", &g);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	     (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_int_equal(g.result, DNS_TEMPFAIL);
	check_err_has(g.err, "timeout");
	assert_int_equal(fx_stats(&fx).timeouts, 1);
	if (ms < 150 || ms > 3000)
		fail_msg("timeout after %ld ms, want about 200", ms);
	get_addr(&fx, "example.test", AF_UNSPEC, &g);
	assert_int_equal(g.result, DNS_TEMPFAIL);
	fx_fini(&fx);
}

static void
test_server_closed(void **state)
{
	struct dns_config cfg = cfg_fake();
	struct fx fx;
	struct got g;

	(void)state;
	cfg.servers = srv.closed_servers;
	fx_init(&fx, &cfg);
	get_mx(&fx, "example.test", &g);
	assert_int_equal(g.result, DNS_TEMPFAIL);
	assert_true(g.err[0] != '\0');
	get_txt(&fx, "example.test", &g);
	assert_int_equal(g.result, DNS_TEMPFAIL);
	fx_fini(&fx);
}

/* dnsmasq ------------------------------------------------------------ */

static void
test_dnsmasq(void **state)
{
	struct dns_config cfg = cfg_fake();
	char long_txt[303];
	struct fx fx;
	struct got g;
	int i, one = 0, two = 0;

	(void)state;
	if (dnsfx.dnsmasq_pid <= 0)
		skip();
	cfg.servers = dnsfx.dnsmasq_servers;
	fx_init(&fx, &cfg);

	for (i = 0; i < 40; i++) {
		get_mx(&fx, "mx.test", &g);
		assert_int_equal(g.result, DNS_OK);
		assert_int_equal(g.ttl, 60);
		if (strcmp(g.list, "mx1.mx.test mx2.mx.test mx3.mx.test") == 0)
			one++;
		else if (strcmp(g.list,
				"mx2.mx.test mx1.mx.test mx3.mx.test") == 0)
			two++;
		else
			fail_msg("bad MX order: %s", g.list);
	}
	if (one == 0 || two == 0)
		fail_msg("no shuffle: %d / %d", one, two);

	get_mx(&fx, "null.test", &g);
	assert_int_equal(g.result, DNS_NULLMX);
	get_mx(&fx, "implicit.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_true(g.implicit);
	assert_string_equal(g.list, "implicit.test");
	get_mx(&fx, "nx.test", &g);
	assert_int_equal(g.result, DNS_NXDOMAIN);
	get_mx(&fx, "lit.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_string_equal(g.list, "mx.lit.test");

	get_addr(&fx, "implicit.test", AF_UNSPEC, &g);
	assert_int_equal(g.result, DNS_OK);
	assert_string_equal(g.list, "::1 127.0.0.5");
	assert_int_equal(g.ttl, 60);
	get_addr(&fx, "implicit.test", AF_INET, &g);
	assert_string_equal(g.list, "127.0.0.5");
	get_addr(&fx, "mx.test", AF_UNSPEC, &g);
	assert_int_equal(g.result, DNS_NODATA);
	get_addr(&fx, "nx.test", AF_UNSPEC, &g);
	assert_int_equal(g.result, DNS_NXDOMAIN);

	get_txt(&fx, "txt.test", &g);
	assert_int_equal(g.result, DNS_OK);
	assert_int_equal(g.n, 1);
	memset(long_txt, 'a', 300);
	memcpy(long_txt + 300, "bb", 2);
	assert_int_equal(g.lens[0], 302);
	assert_memory_equal(g.txts[0], long_txt, 302);
	fx_fini(&fx);
}

/* Seed corpus for t/fuzz/dns_fuzz.c ---------------------------------- */

struct corpus {
	const char *dir;
	const char *prefix;
	const char *name;
	unsigned n;
};

static void
corpus_write(const char *dir, const char *file, const void *data, size_t len)
{
	char path[1024];
	FILE *f;

	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >=
	    (int)sizeof(path))
		return;
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		return;
	}
	if (len > 0)
		fwrite(data, 1, len, f);
	fclose(f);
}

static void
corpus_hook(uint16_t type, int status, const unsigned char *abuf, int alen,
	    void *arg)
{
	struct corpus *c = arg;
	char file[300];

	(void)status;
	if (abuf == NULL || alen <= 0)
		return;
	snprintf(file, sizeof(file), "%s-%s-%u", c->prefix, c->name,
		 (unsigned)type);
	c->n++;
	corpus_write(c->dir, file, abuf, (size_t)alen);
}

static int
corpus_main(const char *dir)
{
	static const char *const fake_names[] = {
		"ttl.fake.test",      "alias.fake.test",
		"dangling.fake.test", "nomx.fake.test",
		"nx.fake.test",       "nosoa.fake.test",
		"null.fake.test",     "nullmix.fake.test",
		"literal.fake.test",  "equal.fake.test",
		"addr.fake.test",     "addralias.fake.test",
		"txt.fake.test",      "hugettl.fake.test",
		"servfail.fake.test", "garbage.fake.test",
		"badrdata.fake.test", "badsoa.fake.test"
	};
	static const char *const dnsmasq_names[] = {
		"mx.test", "null.test", "implicit.test",
		"nx.test", "lit.test",  "txt.test"
	};
	struct dns_config cfg;
	struct corpus c = { dir, "", "", 0 };
	struct fx fx;
	struct got g;
	size_t i, k;
	char file[64];

	if (servers_start(NULL) != 0)
		return 1;
	for (k = 0; k < 2; k++) {
		const char *const *names = k == 0 ? fake_names : dnsmasq_names;
		size_t n =
		    k == 0 ? sizeof(fake_names) / sizeof(fake_names[0])
			   : sizeof(dnsmasq_names) / sizeof(dnsmasq_names[0]);

		cfg = cfg_fake();
		if (k == 1 && dnsfx.dnsmasq_pid <= 0)
			break;
		if (k == 1)
			cfg.servers = dnsfx.dnsmasq_servers;
		c.prefix = k == 0 ? "fake" : "dnsmasq";
		fx_init(&fx, &cfg);
		dns_resolver_answer_hook_set(fx.r, corpus_hook, &c);
		for (i = 0; i < n; i++) {
			c.name = names[i];
			get_mx(&fx, names[i], &g);
			get_txt(&fx, names[i], &g);
			get_addr(&fx, names[i], AF_UNSPEC, &g);
		}
		fx_fini(&fx);
	}
	for (i = 0; i < sizeof(walk_cases) / sizeof(walk_cases[0]); i++) {
		snprintf(file, sizeof(file), "walk-%02zu", i);
		corpus_write(dir, file, walk_cases[i].pkt, walk_cases[i].len);
	}
	servers_stop(NULL);
	printf("corpus written to %s (%u answers captured)\n", dir, c.n);
	return 0;
}

int
main(int argc, char *argv[])
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_normalize),
		cmocka_unit_test(test_result_str),
		cmocka_unit_test(test_answer_walk),
		cmocka_unit_test(test_addr_is_loopback),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_fake_mx),
		cmocka_unit_test(test_fake_addr),
		cmocka_unit_test(test_fake_txt),
		cmocka_unit_test(test_fake_mx_shuffle),
		cmocka_unit_test(test_cache_positive_ttl),
		cmocka_unit_test(test_cache_none),
		cmocka_unit_test(test_cache_negative_ttl),
		cmocka_unit_test(test_cache_tempfail),
		cmocka_unit_test(test_cache_clamp),
		cmocka_unit_test(test_cache_eviction),
		cmocka_unit_test(test_inflight_dedup),
		cmocka_unit_test(test_inflight_cap),
		cmocka_unit_test(test_inflight_wait_limits),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_free_in_callback),
		cmocka_unit_test(test_lookup_from_callback),
		cmocka_unit_test(test_server_silent),
		cmocka_unit_test(test_server_closed),
		cmocka_unit_test(test_dnsmasq),
	};

	if (argc == 3 && strcmp(argv[1], "--corpus") == 0)
		return corpus_main(argv[2]);
	return cmocka_run_group_tests(tests, servers_start, servers_stop);
}
