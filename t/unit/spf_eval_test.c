/*
 * spf_eval_test.c — unit tests for check_host() in dkim/spf.c (spf_check)
 * against a dnsmasq this program starts on 127.0.0.1 (--no-resolv
 * --no-hosts; the lookups skip when dnsmasq is missing) and a bound UDP
 * socket that never answers (temperror).  Table-driven: each row is a
 * domain, a set of source addresses (loopback only) and the result.
 * Covers a, mx (with CIDR lengths, no implicit MX), exists with macros,
 * include and redirect (and their loops), ptr (never matches), the 10
 * lookup and 2 void lookup limits, several records, every qualifier, and
 * the cache.  Never the system resolver.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "dkim/dkim.h"
#include "dns/dns.h"
#include "t/unit/dns_fixture.h"
#include "t/unit/test_row.h"

#define RUN_TIMEOUT_MS 5000

/* What dnsmasq publishes: "--txt-record=", "--host-record=", "--mx-host=" */
static const char *const dns_args[] = {
	"--txt-record=pass.t,v=spf1 ip4:127.0.0.0/24 -all",
	"--txt-record=a.t,v=spf1 a/24 -all",
	"--host-record=a.t,127.0.0.1",
	"--txt-record=mx.t,v=spf1 mx -all",
	"--mx-host=mx.t,m1.mx.t,10",
	"--host-record=m1.mx.t,127.0.0.5",
	"--txt-record=mxcidr.t,v=spf1 mx:mx.t/30 -all",
	"--txt-record=noimplicit.t,v=spf1 mx -all",
	"--host-record=noimplicit.t,127.0.0.7",
	"--txt-record=exists.t,v=spf1 exists:%{ir}.x.exists.t -all",
	"--host-record=2.0.0.127.x.exists.t,127.0.0.1",
	"--txt-record=limit.t,v=spf1 include:n.t include:n.t include:n.t "
	"include:n.t include:n.t include:n.t include:n.t include:n.t "
	"include:n.t include:n.t include:n.t -all",
	"--txt-record=limit10.t,v=spf1 include:n.t include:n.t include:n.t "
	"include:n.t include:n.t include:n.t include:n.t include:n.t "
	"include:n.t include:n.t -all",
	"--txt-record=n.t,v=spf1 ?all",
	"--txt-record=void.t,v=spf1 a:n1.t a:n2.t a:n3.t -all",
	"--txt-record=void2.t,v=spf1 a:n1.t a:n2.t -all",
	"--txt-record=redir.t,v=spf1 redirect=pass.t",
	"--txt-record=redirall.t,v=spf1 -all redirect=pass.t",
	"--txt-record=redirnone.t,v=spf1 redirect=nothing.t",
	"--txt-record=incnone.t,v=spf1 include:nothing.t -all",
	"--txt-record=loop.t,v=spf1 redirect=loop2.t",
	"--txt-record=loop2.t,v=spf1 redirect=loop.t",
	"--txt-record=incloop.t,v=spf1 include:incloop.t -all",
	"--txt-record=two.t,v=spf1 +all",
	"--txt-record=two.t,v=spf1 -all",
	"--txt-record=none.t,hello",
	"--txt-record=syntax.t,v=spf1 foo -all",
	"--txt-record=soft.t,v=spf1 ~all",
	"--txt-record=neutral.t,v=spf1 ?all",
	"--txt-record=default.t,v=spf1 ip4:127.9.9.9",
	"--txt-record=incq.t,v=spf1 ~include:pass.t -all",
	"--txt-record=ptr.t,v=spf1 ptr -all",
	"--txt-record=v6.t,v=spf1 ip6:::1 -all",
	"--txt-record=local.t,v=spf1 exists:%{l}.u.local.t -all",
	"--host-record=news.u.local.t,127.0.0.1",
	"--txt-record=helo.t,v=spf1 exists:%{h} -all",
	"--host-record=out.helo.t,127.0.0.1",
	NULL,
};

static struct dns_fixture srv = DNS_FIXTURE_INIT;

static int
group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (dns_fixture_dnsmasq_start(&srv, "t", dns_args) != 0)
		fprintf(stderr, "# dnsmasq not available: lookups skip\n");
	return dns_fixture_silent_start(&srv);
}

static int
group_teardown(void **state)
{
	(void)state;
	dns_fixture_stop(&srv);
	return 0;
}

struct fx {
	struct event_base *base;
	struct dns_resolver *r;
	struct spf_check_reply got;
	int ncalls;
};

static void
on_reply(const struct spf_check_reply *rep, void *arg)
{
	struct fx *f = arg;

	f->got = *rep;
	f->ncalls++;
}

static void
fx_open(struct fx *f, const char *servers)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	if (dns_fixture_loop_open(&f->base, &f->r, servers, 500, err,
				  sizeof(err)) != 0)
		fail_msg("resolver: %s", err);
}

static void
sa_set(struct sockaddr_storage *ss, const char *ip)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		ss->ss_family = AF_INET6;
		assert_int_equal(
		    inet_pton(AF_INET6, ip,
			      &((struct sockaddr_in6 *)ss)->sin6_addr),
		    1);
	} else {
		ss->ss_family = AF_INET;
		assert_int_equal(
		    inet_pton(AF_INET, ip,
			      &((struct sockaddr_in *)ss)->sin_addr),
		    1);
	}
}

/* One check to its end; the callback must not come from the call. */
static void
fx_check(struct fx *f, const struct spf_check_params *p)
{
	f->ncalls = 0;
	memset(&f->got, 0, sizeof(f->got));
	assert_non_null(spf_check(f->r, p, on_reply, f));
	assert_int_equal(f->ncalls, 0);
	(void)dns_fixture_run(f->base, &f->ncalls, 1, RUN_TIMEOUT_MS);
	assert_int_equal(f->ncalls, 1);
}

struct eval_case {
	const char *name;
	const char *domain;
	const char *addrs[3]; /* NULL-terminated */
	enum spf_result want;
	size_t index;    /* the deciding address, when not pass */
	const char *err; /* a piece of it, or NULL */
};

static const struct eval_case eval_cases[] = {
	{ "ip4 cidr pass", "pass.t", { "127.0.0.2" }, SPF_PASS, 0, NULL },
	{ "ip4 cidr fail", "pass.t", { "127.0.1.1" }, SPF_FAIL, 0, NULL },
	{ "every address passes",
	  "pass.t",
	  { "127.0.0.2", "127.0.0.3" },
	  SPF_PASS,
	  1,
	  NULL },
	{ "one address fails",
	  "pass.t",
	  { "127.0.0.2", "127.0.1.1" },
	  SPF_FAIL,
	  1,
	  NULL },
	{ "case of the domain", "PASS.T", { "127.0.0.2" }, SPF_PASS, 0, NULL },
	{ "a/24", "a.t", { "127.0.0.9" }, SPF_PASS, 0, NULL },
	{ "a/24 outside", "a.t", { "127.0.1.9" }, SPF_FAIL, 0, NULL },
	{ "mx", "mx.t", { "127.0.0.5" }, SPF_PASS, 0, NULL },
	{ "mx other", "mx.t", { "127.0.0.6" }, SPF_FAIL, 0, NULL },
	{ "mx:domain/30", "mxcidr.t", { "127.0.0.6" }, SPF_PASS, 0, NULL },
	{ "no implicit mx",
	  "noimplicit.t",
	  { "127.0.0.7" },
	  SPF_FAIL,
	  0,
	  NULL },
	{ "exists %{ir}", "exists.t", { "127.0.0.2" }, SPF_PASS, 0, NULL },
	{ "exists %{ir} missing",
	  "exists.t",
	  { "127.0.0.3" },
	  SPF_FAIL,
	  0,
	  NULL },
	{ "11 lookups",
	  "limit.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  "lookups" },
	{ "10 lookups", "limit10.t", { "127.0.0.2" }, SPF_FAIL, 0, NULL },
	{ "3 void lookups",
	  "void.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  "void" },
	{ "2 void lookups", "void2.t", { "127.0.0.2" }, SPF_FAIL, 0, NULL },
	{ "redirect", "redir.t", { "127.0.0.2" }, SPF_PASS, 0, NULL },
	{ "redirect after all: ignored",
	  "redirall.t",
	  { "127.0.0.2" },
	  SPF_FAIL,
	  0,
	  NULL },
	{ "redirect to no record",
	  "redirnone.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  NULL },
	{ "include of no record",
	  "incnone.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  NULL },
	{ "redirect loop",
	  "loop.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  "loop" },
	{ "include loop",
	  "incloop.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  "loop" },
	{ "two records",
	  "two.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  "2 SPF records" },
	{ "no SPF record", "none.t", { "127.0.0.2" }, SPF_NONE, 0, NULL },
	{ "no such domain", "nothing.t", { "127.0.0.2" }, SPF_NONE, 0, NULL },
	{ "syntax error",
	  "syntax.t",
	  { "127.0.0.2" },
	  SPF_PERMERROR,
	  0,
	  "unknown mechanism" },
	{ "softfail", "soft.t", { "127.0.0.2" }, SPF_SOFTFAIL, 0, NULL },
	{ "neutral", "neutral.t", { "127.0.0.2" }, SPF_NEUTRAL, 0, NULL },
	{ "no match, no all",
	  "default.t",
	  { "127.0.0.2" },
	  SPF_NEUTRAL,
	  0,
	  NULL },
	{ "~include that passes",
	  "incq.t",
	  { "127.0.0.2" },
	  SPF_SOFTFAIL,
	  0,
	  NULL },
	{ "ptr never matches", "ptr.t", { "127.0.0.1" }, SPF_FAIL, 0, NULL },
	{ "ip6", "v6.t", { "::1" }, SPF_PASS, 0, NULL },
	{ "ip6 rule, ip4 address", "v6.t", { "127.0.0.1" }, SPF_FAIL, 0, NULL },
	{ "%{h}", "helo.t", { "127.0.0.2" }, SPF_PASS, 0, NULL },
};

static void
test_eval(void **state)
{
	struct sockaddr_storage addrs[3];
	struct spf_check_params p;
	struct fx f;
	size_t i, n;

	(void)state;
	if (srv.dnsmasq_servers[0] == '\0')
		skip();
	fx_open(&f, srv.dnsmasq_servers);
	for (i = 0; i < NELEM(eval_cases); i++) {
		const struct eval_case *c = &eval_cases[i];

		for (n = 0; n < 3 && c->addrs[n] != NULL; n++)
			sa_set(&addrs[n], c->addrs[n]);
		memset(&p, 0, sizeof(p));
		p.domain = c->domain;
		p.local = "news";
		p.helo = "out.helo.t";
		p.addrs = addrs;
		p.naddrs = n;
		fx_check(&f, &p);
		ROW_CHECK(f.got.result == c->want, c->name,
			  "got %s, want %s (%s)", spf_result_str(f.got.result),
			  spf_result_str(c->want), f.got.err);
		if (c->want != SPF_PASS)
			ROW_CHECK(f.got.addr_index == c->index, c->name,
				  "decided by address %zu", f.got.addr_index);
		if (c->err != NULL)
			ROW_CHECK(strstr(f.got.err, c->err) != NULL, c->name,
				  "err \"%s\"", f.got.err);
		ROW_CHECK(!f.got.sender_dependent, c->name, "sender-dependent");
		if (c->want != SPF_TEMPERROR)
			ROW_CHECK(f.got.ttl > 0 && f.got.ttl <= 60, c->name,
				  "ttl %u", f.got.ttl);
	}
	dns_fixture_loop_close(f.base, f.r);
}

/* %{l}: the result holds for that sender only, and is not cached. */
static void
test_eval_sender_macro(void **state)
{
	struct sockaddr_storage a;
	struct spf_check_params p = { .domain = "local.t",
				      .local = "news",
				      .helo = "h.t",
				      .addrs = &a,
				      .naddrs = 1 };
	struct spf_cache *c;
	enum spf_result r;
	struct fx f;

	(void)state;
	if (srv.dnsmasq_servers[0] == '\0')
		skip();
	sa_set(&a, "127.0.0.2");
	fx_open(&f, srv.dnsmasq_servers);
	fx_check(&f, &p);
	assert_int_equal(f.got.result, SPF_PASS);
	assert_true(f.got.sender_dependent);
	assert_non_null(c = spf_cache_new(4));
	spf_cache_put(c, &p, &f.got);
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	p.local = "other";
	fx_check(&f, &p);
	assert_int_equal(f.got.result, SPF_FAIL);
	spf_cache_free(c);
	dns_fixture_loop_close(f.base, f.r);
}

/* A server that never answers: temperror, in time, not cached. */
static void
test_eval_temperror(void **state)
{
	struct sockaddr_storage a;
	struct spf_check_params p = {
		.domain = "pass.t", .helo = "h.t", .addrs = &a, .naddrs = 1
	};
	struct spf_cache *c;
	enum spf_result r;
	struct fx f;

	(void)state;
	sa_set(&a, "127.0.0.2");
	fx_open(&f, srv.silent_servers);
	fx_check(&f, &p);
	assert_int_equal(f.got.result, SPF_TEMPERROR);
	assert_non_null(c = spf_cache_new(4));
	spf_cache_put(c, &p, &f.got);
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	spf_cache_free(c);
	dns_fixture_loop_close(f.base, f.r);
}

/* The cache: keyed by domain, helo and the address set; bounded. */
static void
test_cache(void **state)
{
	struct sockaddr_storage a[2];
	struct spf_check_params p = {
		.domain = "x.t", .helo = "h.t", .addrs = a, .naddrs = 2
	};
	struct spf_check_reply rep = { .result = SPF_PASS, .ttl = 60 };
	struct spf_cache *c;
	enum spf_result r;
	char dom[16];
	int i;

	(void)state;
	sa_set(&a[0], "127.0.0.2");
	sa_set(&a[1], "::1");
	assert_non_null(c = spf_cache_new(3));
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	spf_cache_put(c, &p, &rep);
	assert_int_equal(spf_cache_get(c, &p, &r), 0);
	assert_int_equal(r, SPF_PASS);
	p.domain = "X.T"; /* names are not case-sensitive */
	assert_int_equal(spf_cache_get(c, &p, &r), 0);
	p.naddrs = 1; /* another address set */
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	p.naddrs = 2;
	p.helo = "other.t";
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	p.helo = "h.t";
	rep.ttl = 0; /* not kept */
	p.domain = "y.t";
	spf_cache_put(c, &p, &rep);
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	/* Bounded: the oldest goes. */
	rep.ttl = 60;
	for (i = 0; i < 5; i++) {
		snprintf(dom, sizeof(dom), "d%d.t", i);
		p.domain = dom;
		spf_cache_put(c, &p, &rep);
	}
	p.domain = "x.t";
	assert_int_equal(spf_cache_get(c, &p, &r), -1);
	p.domain = "d4.t";
	assert_int_equal(spf_cache_get(c, &p, &r), 0);
	spf_cache_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eval),
		cmocka_unit_test(test_eval_sender_macro),
		cmocka_unit_test(test_eval_temperror),
		cmocka_unit_test(test_cache),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
