/*
 * conf_test_deliver.c — unit tests of the delivery sections of conf/ (dns,
 * delivery, destination, pool, route): defaults, limits, lookups, the
 * shipped example, and the exact "file:line: message" of each error.
 * Helpers in conf_test_util.[ch].  Single-threaded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "t/unit/conf_test_util.h"

#ifndef OUTPOST_CONF_EXAMPLE
#error "OUTPOST_CONF_EXAMPLE (path of conf/outpost.conf) must be defined"
#endif

/* ---- delivery: dns, delivery, destination, pool, route ---- */

#define DURATION_MS(d, h, m, s)                                                \
	((((uint64_t)(d)*24 + (h)) * 60 + (m)) * 60000 + (uint64_t)(s)*1000)

static const uint64_t default_retry_ms[] = {
	5 * 60000, 10 * 60000, 20 * 60000, 40 * 60000,
	3600000,   7200000,    14400000,
};

/* The delivery half of every tree whose file leaves it out. */
static void
check_deliver_defaults(const struct conf *c)
{
	const struct conf_destination *d = &c->dest_default;
	size_t i;

	assert_null(c->dns.servers);
	assert_int_equal(c->dns.timeout_ms, 2000);
	assert_int_equal(c->dns.tries, 2);
	assert_int_equal(c->dns.cache_size, 100000);
	assert_int_equal(c->dns.min_ttl_s, 0);
	assert_int_equal(c->dns.max_ttl_s, 86400);
	assert_int_equal(c->dns.negative_ttl_max_s, 3600);
	assert_int_equal(c->dns.max_inflight, 256);

	assert_int_equal(c->delivery.port, 25);
	assert_int_equal(c->delivery.connect_timeout_ms, 30000);
	assert_int_equal(c->delivery.greeting_timeout_ms, 300000);
	assert_int_equal(c->delivery.command_timeout_ms, 300000);
	assert_int_equal(c->delivery.data_timeout_ms, 600000);
	assert_int_equal(c->delivery.idle_timeout_ms, 10000);
	assert_true(c->delivery.max_age_ms == DURATION_MS(2, 0, 0, 0));
	assert_int_equal(c->delivery.nretry_intervals, 7);
	for (i = 0; i < 7; i++)
		CHECK_INT("retry_intervals", c->delivery.retry_intervals_ms[i],
			  default_retry_ms[i]);
	assert_int_equal(c->delivery.retry_jitter_pct, 10);
	assert_null(c->delivery.relay_host);
	assert_int_equal(c->delivery.relay_port, 0);
	assert_string_equal(c->delivery.ehlo, c->hostname);
	assert_int_equal(c->delivery.max_connections, 1000);
	assert_int_equal(c->delivery.max_rounds, 20000);
	/* threads = 0: one delivery loop per online CPU */
	assert_int_equal(c->delivery.threads,
			 (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	assert_int_equal(c->delivery.max_mx_addresses, 5);
	assert_int_equal(c->delivery.max_mx_sessions, 2);
	assert_int_equal(c->delivery.attempt_timeout_ms, 300000);
	assert_null(c->delivery.tls_ca_file);
	assert_null(c->delivery.tls_ca_path);

	assert_null(d->domain);
	assert_int_equal(d->max_connections, 20);
	assert_int_equal(d->max_messages_per_connection, 100);
	assert_int_equal(d->max_recipients_per_transaction, 50);
	assert_int_equal(d->max_messages_per_minute, 0);
	assert_int_equal(d->max_messages_per_hour, 0);
	assert_int_equal(d->tls, CONF_TLSP_MAY);
	assert_true(d->mta_sts);
	assert_int_equal(d->nsuspend_on, 0);
	assert_null(d->suspend_on);
	assert_null(d->suspend_re);
	assert_true(d->suspend_for_ms == 600000);
	assert_true(d->backoff_pause_ms == 60000);
	assert_true(d->backoff_max_ms == 1800000);
	assert_int_equal(d->throttle_on, 0);
	assert_int_equal(d->throttle_factor, 50);
	assert_true(d->throttle_for_ms == 600000);
	assert_int_equal(d->throttle_max_steps, 4);
	assert_int_equal(d->max_mx_addresses, 5);
	assert_int_equal(d->max_mx_sessions, 2);
	assert_int_equal(d->attempt_timeout_ms, 300000);
	assert_int_equal(c->ndestinations, 0);
	assert_ptr_equal(conf_destination_find(c, "example.com"), d);

	assert_int_equal(c->npools, 0);
	assert_null(c->default_pool);
	assert_null(c->relay_pool);
	assert_int_equal(c->nroutes, 0);
	assert_null(conf_route_find(c, "example.com"));
}

static void
test_deliver_defaults(void **state)
{
	char err[512], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	check_deliver_defaults(c);
	conf_free(c);
	assert_int_equal(load_text(LISTENER "hostname = a.example\n", &c, err,
				   sizeof(err), path, sizeof(path)),
			 0);
	check_deliver_defaults(c);
	assert_string_equal(c->delivery.ehlo, "a.example");
	conf_free(c);
	/* empty sections change nothing */
	assert_int_equal(load_text(LISTENER "dns { }\ndelivery { }\n"
					    "destination \"*\" { }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	check_deliver_defaults(c);
	conf_free(c);
}

#define L LISTENER
static const struct conf_error_row deliver_error_rows[] = {
	/* dns */
	{ "dns: unknown key", L "dns {\n\tserver = \"127.0.0.1\"\n}\n",
	  "3: dns: no such option 'server'" },
	{ "dns.servers: a name", L "dns { servers = \"localhost\" }\n",
	  "2: dns.servers: \"localhost\" is not an IP address (names are not "
	  "resolved here)" },
	{ "dns.servers: a name among addresses",
	  L "dns {\n\tservers = \"127.0.0.1:5300, ns1.example:53\"\n}\n",
	  "3: dns.servers: \"ns1.example:53\" is not an IP address (names are "
	  "not resolved here)" },
	{ "dns.servers: port 0", L "dns { servers = \"127.0.0.1:0\" }\n",
	  "2: dns.servers: \"127.0.0.1:0\" has a bad port (use 1..65535)" },
	{ "dns.servers: port 65536", L "dns { servers = \"[::1]:65536\" }\n",
	  "2: dns.servers: \"[::1]:65536\" has a bad port (use 1..65535)" },
	{ "dns.servers: empty port", L "dns { servers = \"127.0.0.1:\" }\n",
	  "2: dns.servers: \"127.0.0.1:\" has a bad port (use 1..65535)" },
	{ "dns.servers: v6 without brackets", L "dns { servers = \"::1\" }\n",
	  "2: dns.servers: \"::1\" is an IPv6 address without brackets "
	  "(write e.g. \"[2001:db8::1]\")" },
	{ "dns.servers: unclosed bracket", L "dns { servers = \"[::1\" }\n",
	  "2: dns.servers: \"[::1\" has a [ without its ]" },
	{ "dns.servers: v4 in brackets",
	  L "dns { servers = \"[127.0.0.1]:53\" }\n",
	  "2: dns.servers: \"[127.0.0.1]:53\" has [ ] around something that "
	  "is not an IPv6 address" },
	{ "dns.servers: junk after brackets",
	  L "dns { servers = \"[::1]53\" }\n",
	  "2: dns.servers: \"[::1]53\" is not ADDR[:PORT] (use e.g. "
	  "\"127.0.0.1:53\" or \"[::1]:53\")" },
	{ "dns.servers: empty", L "dns { servers = \"\" }\n",
	  "2: dns.servers: \"\" is empty (leave servers out to use the system "
	  "resolver)" },
	{ "dns.servers: empty item",
	  L "dns { servers = \"127.0.0.1,,[::1]\" }\n",
	  "2: dns.servers: \"127.0.0.1,,[::1]\" has an empty item" },
	{ "dns.servers: trailing comma", L "dns { servers = \"127.0.0.1,\" }\n",
	  "2: dns.servers: \"127.0.0.1,\" has an empty item" },
	{ "dns.servers: spaces, no comma",
	  L "dns { servers = \"127.0.0.1 127.0.0.2\" }\n",
	  "2: dns.servers: \"127.0.0.1 127.0.0.2\" is not a comma-separated "
	  "list" },
	{ "dns.timeout: below minimum", L "dns { timeout = 50ms }\n",
	  "2: dns.timeout: \"50ms\" is less than the minimum, 100ms" },
	{ "dns.timeout: above maximum", L "dns { timeout = 2m }\n",
	  "2: dns.timeout: \"2m\" is more than the maximum, 1m" },
	{ "dns.timeout: not a duration", L "dns { timeout = fast }\n",
	  "2: dns.timeout: \"fast\" is not a duration (use e.g. 30s, 5m, "
	  "250ms)" },
	{ "dns.tries: zero", L "dns { tries = 0 }\n",
	  "2: dns.tries: \"0\" is less than the minimum, 1" },
	{ "dns.tries: 11", L "dns { tries = 11 }\n",
	  "2: dns.tries: \"11\" is more than the maximum, 10" },
	{ "dns.cache_size: too big", L "dns { cache_size = 10000001 }\n",
	  "2: dns.cache_size: \"10000001\" is more than the maximum, "
	  "10000000" },
	{ "dns.cache_size: a size", L "dns { cache_size = 1M }\n",
	  "2: dns.cache_size: \"1M\" is not a whole number" },
	{ "dns.min_ttl: above maximum", L "dns { min_ttl = 2d }\n",
	  "2: dns.min_ttl: \"2d\" is more than the maximum, 1d" },
	{ "dns.min_ttl: not whole seconds", L "dns { min_ttl = 1500ms }\n",
	  "2: dns.min_ttl: \"1500ms\" is not a whole number of seconds" },
	{ "dns.max_ttl: zero", L "dns { max_ttl = 0 }\n",
	  "2: dns.max_ttl: \"0\" is less than the minimum, 1s" },
	{ "dns.max_ttl: above maximum", L "dns { max_ttl = 8d }\n",
	  "2: dns.max_ttl: \"8d\" is more than the maximum, 7d" },
	{ "dns.negative_ttl_max: above maximum",
	  L "dns { negative_ttl_max = 25h }\n",
	  "2: dns.negative_ttl_max: \"25h\" is more than the maximum, 1d" },
	{ "dns.negative_ttl_max: ms", L "dns { negative_ttl_max = 10ms }\n",
	  "2: dns.negative_ttl_max: \"10ms\" is not a whole number of "
	  "seconds" },
	{ "dns.max_inflight: zero", L "dns { max_inflight = 0 }\n",
	  "2: dns.max_inflight: \"0\" is less than the minimum, 1" },
	{ "dns: min_ttl above max_ttl",
	  L "dns {\n\tmin_ttl = 2h\n\tmax_ttl = 1h\n}\n",
	  "4: dns.min_ttl (2h) is more than dns.max_ttl (1h)" },
	{ "dns: min_ttl above the default max_ttl",
	  L "dns { max_ttl = 1m }\ndns {\n\tmin_ttl = 90s\n}\n",
	  "4: dns.min_ttl (90s) is more than dns.max_ttl (1m)" },

	/* delivery */
	{ "delivery: unknown key", L "delivery {\n\tmx_port = 25\n}\n",
	  "3: delivery: no such option 'mx_port'" },
	{ "delivery.port: zero", L "delivery { port = 0 }\n",
	  "2: delivery.port: \"0\" is less than the minimum, 1" },
	{ "delivery.port: 65536", L "delivery { port = 65536 }\n",
	  "2: delivery.port: \"65536\" is more than the maximum, 65535" },
	{ "delivery.port: a name", L "delivery { port = smtp }\n",
	  "2: delivery.port: \"smtp\" is not a whole number" },
	{ "delivery.connect_timeout: zero",
	  L "delivery { connect_timeout = 0 }\n",
	  "2: delivery.connect_timeout: \"0\" is less than the minimum, 1s" },
	{ "delivery.connect_timeout: above maximum",
	  L "delivery { connect_timeout = 11m }\n",
	  "2: delivery.connect_timeout: \"11m\" is more than the maximum, "
	  "10m" },
	{ "delivery.greeting_timeout: above maximum",
	  L "delivery { greeting_timeout = 61m }\n",
	  "2: delivery.greeting_timeout: \"61m\" is more than the maximum, "
	  "1h" },
	{ "delivery.command_timeout: below minimum",
	  L "delivery { command_timeout = 999ms }\n",
	  "2: delivery.command_timeout: \"999ms\" is less than the minimum, "
	  "1s" },
	{ "delivery.data_timeout: above maximum",
	  L "delivery { data_timeout = 2h }\n",
	  "2: delivery.data_timeout: \"2h\" is more than the maximum, 1h" },
	{ "delivery.idle_timeout: above maximum",
	  L "delivery { idle_timeout = 601s }\n",
	  "2: delivery.idle_timeout: \"601s\" is more than the maximum, 10m" },
	{ "delivery.idle_timeout: us", L "delivery { idle_timeout = 5us }\n",
	  "2: delivery.idle_timeout: \"5us\" is not a duration (use e.g. 30s, "
	  "5m, 250ms)" },
	{ "delivery.max_age: zero", L "delivery { max_age = 0 }\n",
	  "2: delivery.max_age: \"0\" is less than the minimum, 1s" },
	{ "delivery.max_age: above maximum", L "delivery { max_age = 31d }\n",
	  "2: delivery.max_age: \"31d\" is more than the maximum, 30d" },
	{ "delivery.retry_intervals: empty",
	  L "delivery {\n\tretry_intervals = { }\n\n}\n",
	  "5: delivery.retry_intervals: the list is empty (give at least one "
	  "interval, e.g. { \"10m\" })" },
	{ "delivery.retry_intervals: decreasing",
	  L "delivery {\n\tretry_intervals = { \"5m\",\n\t\t\"10m\",\n"
	    "\t\t\"1m\" }\n}\n",
	  "5: delivery.retry_intervals: \"1m\" is less than the interval "
	  "before it, \"10m\" (intervals must not decrease)" },
	{ "delivery.retry_intervals: += below the defaults",
	  L "delivery { retry_intervals += { 1h } }\n",
	  "2: delivery.retry_intervals: \"1h\" is less than the interval "
	  "before it, \"4h\" (intervals must not decrease)" },
	{ "delivery.retry_intervals: not a duration",
	  L "delivery { retry_intervals = { 5m, soon } }\n",
	  "2: delivery.retry_intervals: \"soon\" is not a duration (use e.g. "
	  "30s, 5m, 250ms)" },
	{ "delivery.retry_intervals: below minimum",
	  L "delivery { retry_intervals = { 500ms } }\n",
	  "2: delivery.retry_intervals: \"500ms\" is less than the minimum, "
	  "1s" },
	{ "delivery.retry_intervals: above maximum",
	  L "delivery { retry_intervals = { 1h, 8d } }\n",
	  "2: delivery.retry_intervals: \"8d\" is more than the maximum, 7d" },
	{ "delivery.retry_intervals: a comment inside the list",
	  L "delivery {\n\tretry_intervals = {\n\t\t5m, # first\n"
	    "\t\t0s // oops\n\t}\n}\n",
	  "5: delivery.retry_intervals: \"0s\" is less than the minimum, 1s" },
	{ "delivery.retry_jitter: 51", L "delivery { retry_jitter = 51 }\n",
	  "2: delivery.retry_jitter: \"51\" is more than the maximum, 50" },
	{ "delivery.retry_jitter: percent sign",
	  L "delivery { retry_jitter = 10% }\n",
	  "2: delivery.retry_jitter: \"10%\" is not a whole number" },
	{ "delivery.relay_host: underscore",
	  L "delivery { relay_host = \"smart_host.example\" }\n",
	  "2: delivery.relay_host: \"smart_host.example\" may hold only "
	  "letters, digits, '-' and '.' (use the xn-- form for international "
	  "names)" },
	{ "delivery.relay_host: bad IPv4",
	  L "delivery { relay_host = \"192.0.2.300:25\" }\n",
	  "2: delivery.relay_host: \"192.0.2.300:25\" is neither an IPv4 "
	  "address nor a host name" },
	{ "delivery.relay_host: port 0",
	  L "delivery { relay_host = \"smart.example:0\" }\n",
	  "2: delivery.relay_host: \"smart.example:0\" has a bad port (use "
	  "1..65535)" },
	{ "delivery.relay_host: v6 without brackets",
	  L "delivery { relay_host = \"2001:db8::1\" }\n",
	  "2: delivery.relay_host: \"2001:db8::1\" is an IPv6 address without "
	  "brackets (write e.g. \"[2001:db8::1]\")" },
	{ "delivery.relay_host: empty", L "delivery { relay_host = \"\" }\n",
	  "2: delivery.relay_host: \"\" is empty" },
	{ "delivery.relay_host: trailing dot",
	  L "delivery { relay_host = \"smart.example.:25\" }\n",
	  "2: delivery.relay_host: \"smart.example.:25\" ends with a dot" },
	{ "delivery.ehlo: empty label",
	  L "delivery { ehlo = \"a..example\" }\n",
	  "2: delivery.ehlo: \"a..example\" has an empty label" },
	{ "delivery.max_messages_in_memory: below minimum",
	  L "delivery { max_messages_in_memory = 99 }\n",
	  "2: delivery.max_messages_in_memory: \"99\" is less than the "
	  "minimum, 100" },
	{ "delivery.max_connections: zero",
	  L "delivery { max_connections = 0 }\n",
	  "2: delivery.max_connections: \"0\" is less than the minimum, 1" },
	{ "delivery.max_connections: above maximum",
	  L "delivery { max_connections = 1000001 }\n",
	  "2: delivery.max_connections: \"1000001\" is more than the maximum, "
	  "1000000" },
	{ "delivery.threads: above maximum", L "delivery { threads = 65 }\n",
	  "2: delivery.threads: \"65\" is more than the maximum, 64" },
	{ "tls_report.from: not an address",
	  L
	  "tls_report {\n enabled = true\n from = \"Reports <r@x.test>\"\n}\n",
	  "4: tls_report.from: \"Reports <r@x.test>\" must be one address "
	  "local@domain" },
	{ "tls_report.delay: above maximum", L "tls_report { delay = 2d }\n",
	  "2: tls_report.delay: \"2d\" is more than the maximum, 1d" },
	{ "dns.dnssec: no servers", L "dns { dnssec = true }\n",
	  "2: dns.dnssec: needs dns.servers: validating resolvers on loopback "
	  "(the AD bit is trusted only from them)" },
	{ "dns.dnssec: a server off loopback",
	  L "dns {\n servers = \"127.0.0.1,192.0.2.53:5300\"\n"
	    " dnssec = true\n}\n",
	  "4: dns.dnssec: server 192.0.2.53:5300 is not on loopback: the AD "
	  "bit is trusted only from a validating resolver on this host "
	  "(127.0.0.1, ::1)" },
	{ "destination.tls: unknown",
	  L "destination \"*\" { tls = \"dane-maybe\" }\n",
	  "2: destination \"*\".tls: \"dane-maybe\" is not one of none, may, "
	  "encrypt, verify, dane, dane-only" },
	{ "delivery.tls_ca_file: control character",
	  L "delivery { tls_ca_file = \"a\\tb\" }\n",
	  "2: delivery.tls_ca_file: contains a control character" },
	{ "delivery.tls_ca_path: control character",
	  L "delivery {\n\ttls_ca_path = \"a\\nb\"\n}\n",
	  "3: delivery.tls_ca_path: contains a control character" },

	/* warmup */
	{ "pool.warmup: no warmup_start",
	  L "pool \"p\" {\n source = \"127.0.0.12\"\n"
	    " warmup \"*\" { daily = { 10 } }\n}\n",
	  "2: pool \"p\": warmup needs warmup_start = \"YYYY-MM-DD\" (the UTC "
	  "day that is day 1)" },
	{ "pool.warmup_start: bad date",
	  L "pool \"p\" {\n source = \"127.0.0.12\"\n"
	    " warmup_start = \"2026-1-01\"\n"
	    " warmup \"*\" { daily = { 10 } }\n}\n",
	  "4: pool \"p\": warmup needs warmup_start = \"YYYY-MM-DD\" (the UTC "
	  "day that is day 1), not \"2026-1-01\"" },
	{ "pool.warmup: daily zero",
	  L "pool \"p\" {\n source = \"127.0.0.12\"\n"
	    " warmup_start = \"2026-12-01\"\n"
	    " warmup \"*\" {\n daily = { 10, 0 }\n }\n}\n",
	  "6: pool \"p\": warmup \"*\".daily: \"0\" is not a whole number of "
	  "1..100000000" },
	{ "pool.warmup: no daily",
	  L "pool \"p\" {\n source = \"127.0.0.12\"\n"
	    " warmup_start = \"2026-12-01\"\n"
	    " warmup \"gmail.com\" { }\n}\n",
	  "5: pool \"p\": warmup \"gmail.com\": daily is missing or empty "
	  "(messages per address on day 1, 2, ...)" },
	{ "pool.warmup: bad class",
	  L "pool \"p\" {\n source = \"127.0.0.12\"\n"
	    " warmup_start = \"2026-12-01\"\n"
	    " warmup \"gm ail.com\" { daily = 1 }\n}\n",
	  "5: pool \"p\": warmup \"gm ail.com\": may hold only letters, "
	  "digits, '-' and '.' (use the xn-- form for international names)" },
	{ "pool.warmup_start without warmup",
	  L "pool \"p\" {\n source = \"127.0.0.12\"\n"
	    " warmup_start = \"2026-12-01\"\n}\n",
	  "4: pool \"p\": warmup_start without a warmup section" },

	/* cluster */
	{ "cluster.redis: a name",
	  L "cluster { redis = \"redis.example:6379\" }\n",
	  "2: cluster.redis: \"redis.example:6379\" is not an IP address "
	  "(names are not resolved here)" },
	{ "cluster.redis: bad port", L "cluster { redis = \"127.0.0.1:0\" }\n",
	  "2: cluster.redis: \"127.0.0.1:0\" has a bad port (use 1..65535)" },
	{ "cluster.nodes: zero",
	  L "cluster { redis = \"127.0.0.1\" nodes = 0 }\n",
	  "2: cluster.nodes: \"0\" is less than the minimum, 1" },
	{ "cluster.lease: below minimum",
	  L "cluster { redis = \"127.0.0.1\" lease = 500ms }\n",
	  "2: cluster.lease: \"500ms\" is less than the minimum, 1s" },
	{ "cluster.timeout: a third of the lease",
	  L "cluster {\n redis = \"127.0.0.1\"\n lease = 3s\n"
	    " timeout = 1s\n}\n",
	  "5: cluster.timeout (1000 ms) must be under a third of cluster.lease "
	  "(3000 ms): a lease is renewed every third of its life" },
	{ "cluster.password_file without redis",
	  L "cluster { password_file = \"/etc/outpost/redis.pass\" }\n",
	  "2: cluster.password_file without cluster.redis" },
	{ "cluster.prefix: a space", L "cluster { prefix = \"a b\" }\n",
	  "2: cluster.prefix: \"a b\" holds a space or a character that is "
	  "not printable ASCII" },
	{ "cluster.node: too long",
	  L "cluster { node = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxx\" }\n",
	  "2: cluster.node: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxx\" is longer than 64 characters" },
	{ "cluster: unknown key", L "cluster { redis_host = \"127.0.0.1\" }\n",
	  "2: cluster: no such option 'redis_host'" },

	/* destination */
	{ "destination: no title", L "destination { }\n",
	  "2: missing title for section 'destination'" },
	{ "destination: unknown key",
	  L "destination \"example.com\" {\n\tmax_conns = 1\n}\n",
	  "3: destination \"example.com\": no such option 'max_conns'" },
	{ "destination: bad domain", L "\ndestination \"exa mple.com\" { }\n",
	  "3: destination \"exa mple.com\": the domain may hold only letters, "
	  "digits, '-' and '.' (use the xn-- form for international names)" },
	{ "destination: empty title", L "destination \"\" { }\n",
	  "2: destination \"\": the domain is empty" },
	{ "destination: empty label", L "destination \"example..com\" {\n}\n",
	  "2: destination \"example..com\": the domain has an empty label" },
	{ "destination: a dot", L "destination \".\" { }\n",
	  "2: destination \".\": the domain is not a domain name" },
	{ "destination: wildcard label",
	  L "destination \"*.example.com\" { }\n",
	  "2: destination \"*.example.com\": write \".example.com\" for the "
	  "subdomains of example.com" },
	{ "destination: star dot", L "destination \"*.\" { }\n",
	  "2: destination \"*.\": the defaults are destination \"*\"" },
	{ "destination: duplicate",
	  L "destination \"a.example\" { }\n"
	    "destination \"a.example\" { }\n",
	  "3: found duplicate title 'a.example'" },
	{ "destination: duplicate star",
	  L "destination \"*\" { }\ndestination \"*\" { }\n",
	  "3: found duplicate title '*'" },
	{ "destination: duplicate in another case",
	  L "destination \"a.example\" { }\n\n"
	    "destination \"A.Example\" { tls = none }\n",
	  "4: destination \"A.Example\": the same domain as destination "
	  "\"a.example\"" },
	{ "destination: duplicate with a trailing dot",
	  L "destination \"a.example\" { }\ndestination \"a.example.\" { }\n",
	  "3: destination \"a.example.\": the same domain as destination "
	  "\"a.example\"" },
	{ "destination.max_connections: zero",
	  L "destination \"a.example\" { max_connections = 0 }\n",
	  "2: destination \"a.example\".max_connections: \"0\" is less than "
	  "the minimum, 1" },
	{ "destination.max_connections: above maximum",
	  L "destination \"*\" { max_connections = 100001 }\n",
	  "2: destination \"*\".max_connections: \"100001\" is more than the "
	  "maximum, 100000" },
	{ "destination.max_messages_per_connection: zero",
	  L "destination \"*\" { max_messages_per_connection = 0 }\n",
	  "2: destination \"*\".max_messages_per_connection: \"0\" is less "
	  "than the minimum, 1" },
	{ "destination.max_messages_per_connection: above maximum",
	  L "destination \"*\" { max_messages_per_connection = 1000001 }\n",
	  "2: destination \"*\".max_messages_per_connection: \"1000001\" is "
	  "more than the maximum, 1000000" },
	{ "destination.max_recipients_per_transaction: zero",
	  L "destination \"a.example\" {\n"
	    "\tmax_recipients_per_transaction = 0\n}\n",
	  "3: destination \"a.example\".max_recipients_per_transaction: \"0\" "
	  "is less than the minimum, 1" },
	{ "destination.max_recipients_per_transaction: above maximum",
	  L "destination \"*\" { max_recipients_per_transaction = 100001 }\n",
	  "2: destination \"*\".max_recipients_per_transaction: \"100001\" is "
	  "more than the maximum, 100000" },
	{ "destination.max_messages_per_minute: above maximum",
	  L "destination \"*\" { max_messages_per_minute = 1000001 }\n",
	  "2: destination \"*\".max_messages_per_minute: \"1000001\" is more "
	  "than the maximum, 1000000" },
	{ "destination.max_messages_per_minute: negative",
	  L "destination \"*\" { max_messages_per_minute = -1 }\n",
	  "2: destination \"*\".max_messages_per_minute: \"-1\" is not a whole "
	  "number" },
	{ "destination.max_messages_per_hour: above maximum",
	  L "destination \"*\" { max_messages_per_hour = 100000001 }\n",
	  "2: destination \"*\".max_messages_per_hour: \"100000001\" is more "
	  "than the maximum, 100000000" },
	{ "destination.tls: bad policy",
	  L "destination \"a.example\" { tls = required }\n",
	  "2: destination \"a.example\".tls: \"required\" is not one of none, "
	  "may, encrypt, verify, dane, dane-only" },
	{ "destination.tls: the listener's word",
	  L "destination \"*\" { tls = starttls }\n",
	  "2: destination \"*\".tls: \"starttls\" is not one of none, may, "
	  "encrypt, verify, dane, dane-only" },
	{ "destination.suspend_on: bad regex",
	  L "destination \"a.example\" {\n\tsuspend_on = { \"ok\",\n"
	    "\t\t\"(unclosed\" }\n}\n",
	  "4: destination \"a.example\".suspend_on: \"(unclosed\" is not an "
	  "extended regular expression: Unmatched ( or \\(" },
	{ "destination.suspend_on: bad bracket",
	  L "destination \"*\" { suspend_on = \"[a\" }\n",
	  "2: destination \"*\".suspend_on: \"[a\" is not an extended regular "
	  "expression: Unmatched [, [^, [:, [., or [=" },
	{ "destination.suspend_on: empty pattern",
	  L "destination \"*\" { suspend_on = { \"\" } }\n",
	  "2: destination \"*\".suspend_on: an empty pattern would match "
	  "every reply" },
	{ "destination.suspend_for: zero",
	  L "destination \"*\" { suspend_for = 0 }\n",
	  "2: destination \"*\".suspend_for: \"0\" is less than the minimum, "
	  "1s" },
	{ "destination.suspend_for: above maximum",
	  L "destination \"a.example\" { suspend_for = 8d }\n",
	  "2: destination \"a.example\".suspend_for: \"8d\" is more than the "
	  "maximum, 7d" },
	{ "destination.throttle_on: not a category",
	  L "destination \"*\" { throttle_on = { \"rate-limited\", "
	    "\"slow\" } }\n",
	  "2: destination \"*\".throttle_on: \"slow\" is not a bounce category "
	  "(rate-limited, spam-related, policy-related, connection, "
	  "transient-other, ...)" },
	{ "destination.throttle_factor: 100",
	  L "destination \"*\" { throttle_factor = 100 }\n",
	  "2: destination \"*\".throttle_factor: \"100\" is more than the "
	  "maximum, 99" },
	{ "destination.throttle_max_steps: zero",
	  L "destination \"x.example\" { throttle_max_steps = 0 }\n",
	  "2: destination \"x.example\".throttle_max_steps: \"0\" is less "
	  "than the minimum, 1" },
	{ "destination.backoff_pause: above maximum",
	  L "destination \"*\" { backoff_pause = 25h }\n",
	  "2: destination \"*\".backoff_pause: \"25h\" is more than the "
	  "maximum, 1d" },
	{ "destination.backoff_pause: zero",
	  L "destination \"*\" { backoff_pause = 0s }\n",
	  "2: destination \"*\".backoff_pause: \"0s\" is less than the "
	  "minimum, 1s" },
	{ "destination.backoff_max: above maximum",
	  L "destination \"*\" { backoff_max = 8d }\n",
	  "2: destination \"*\".backoff_max: \"8d\" is more than the maximum, "
	  "7d" },
	{ "destination: backoff_pause above the default backoff_max",
	  L "destination \"*\" {\n\n\tbackoff_pause = 1h\n}\n",
	  "4: destination \"*\": backoff_pause (1h) is more than backoff_max "
	  "(30m)" },
	{ "destination: backoff_pause above the inherited backoff_max",
	  L "destination \"*\" {\n\tbackoff_max = 5m\n}\n"
	    "destination \"a.example\" {\n\tsuspend_for = 1h\n"
	    "\tbackoff_pause = 10m\n}\n",
	  "7: destination \"a.example\": backoff_pause (10m) is more than "
	  "backoff_max (5m)" },
	{ "delivery.max_mx_addresses: zero",
	  L "delivery { max_mx_addresses = 0 }\n",
	  "2: delivery.max_mx_addresses: \"0\" is less than the minimum, 1" },
	{ "delivery.max_mx_sessions: above maximum",
	  L "delivery { max_mx_sessions = 101 }\n",
	  "2: delivery.max_mx_sessions: \"101\" is more than the maximum, "
	  "100" },
	{ "delivery.attempt_timeout: above maximum",
	  L "delivery { attempt_timeout = 61m }\n",
	  "2: delivery.attempt_timeout: \"61m\" is more than the maximum, "
	  "1h" },
	{ "destination.max_mx_addresses: above maximum",
	  L "destination \"a.example\" { max_mx_addresses = 1001 }\n",
	  "2: destination \"a.example\".max_mx_addresses: \"1001\" is more "
	  "than the maximum, 1000" },
	{ "destination.max_mx_sessions: zero",
	  L "destination \"*\" { max_mx_sessions = 0 }\n",
	  "2: destination \"*\".max_mx_sessions: \"0\" is less than the "
	  "minimum, 1" },
	{ "destination.attempt_timeout: zero",
	  L "destination \"*\" { attempt_timeout = 0s }\n",
	  "2: destination \"*\".attempt_timeout: \"0s\" is less than the "
	  "minimum, 1s" },
	{ "destination: backoff_max below the inherited backoff_pause",
	  L "destination \"a.example\" {\n\tbackoff_max = 2m\n}\n"
	    "destination \"*\" {\n\tbackoff_pause = 3m\n}\n",
	  "3: destination \"a.example\": backoff_pause (3m) is more than "
	  "backoff_max (2m)" },

	/* pool, and pool references */
	{ "pool: no title", L "pool { source = \"192.0.2.1\" }\n",
	  "2: missing title for section 'pool'" },
	{ "pool: unknown key",
	  L "pool \"a\" {\n\tsources = { \"192.0.2.1\" }\n}\n",
	  "3: pool \"a\": no such option 'sources'" },
	{ "pool: bad name", L "pool \"a b\" { source = \"192.0.2.1\" }\n",
	  "2: pool \"a b\": a pool name is 1..64 letters, digits, '.', '_' or "
	  "'-'" },
	{ "pool: empty name", L "pool \"\" { source = \"192.0.2.1\" }\n",
	  "2: pool \"\": a pool name is 1..64 letters, digits, '.', '_' or "
	  "'-'" },
	{ "pool: name of 65",
	  L
	  "pool \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaa\" { source = \"192.0.2.1\" }\n",
	  "2: pool "
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaa\": a pool name is 1..64 letters, digits, '.', '_' or '-'" },
	{ "pool: duplicate",
	  L "pool \"a\" { source = \"192.0.2.1\" }\n"
	    "pool \"a\" { source = \"192.0.2.2\" }\n",
	  "3: found duplicate title 'a'" },
	{ "pool: duplicate in another case",
	  L "pool \"bulk\" { source = \"192.0.2.1\" }\n\n"
	    "pool \"Bulk\" { source = \"192.0.2.2\" }\n",
	  "4: pool \"Bulk\": the same name as pool \"bulk\" (names are not "
	  "case-sensitive)" },
	{ "pool: no source", L "pool \"a\" {\n\tehlo = a.example\n}\n",
	  "2: pool \"a\": source is missing or empty (list the addresses to "
	  "send from, e.g. source = { \"192.0.2.1\" })" },
	{ "pool: empty source", L "\npool \"a\" {\n\tsource = { }\n}\n",
	  "3: pool \"a\": source is missing or empty (list the addresses to "
	  "send from, e.g. source = { \"192.0.2.1\" })" },
	{ "pool.source: with a port",
	  L "pool \"a\" {\n\tsource = { \"192.0.2.1\",\n"
	    "\t\t\"192.0.2.2:25\" }\n}\n",
	  "4: pool \"a\".source: \"192.0.2.2:25\" is not an IP address (use "
	  "e.g. \"192.0.2.1\" or \"2001:db8::1\", without a port)" },
	{ "pool.source: a name", L "pool \"a\" { source = \"localhost\" }\n",
	  "2: pool \"a\".source: \"localhost\" is not an IP address (use e.g. "
	  "\"192.0.2.1\" or \"2001:db8::1\", without a port)" },
	{ "pool.source: v6 in brackets",
	  L "pool \"a\" { source = \"[2001:db8::1]\" }\n",
	  "2: pool \"a\".source: \"[2001:db8::1]\" is not an IP address (use "
	  "e.g. \"192.0.2.1\" or \"2001:db8::1\", without a port)" },
	{ "pool.source: a network",
	  L "pool \"a\" { source = \"192.0.2.0/24\" }\n",
	  "2: pool \"a\".source: \"192.0.2.0/24\" is not an IP address (use "
	  "e.g. \"192.0.2.1\" or \"2001:db8::1\", without a port)" },
	{ "pool.source: listed twice",
	  L "pool \"a\" {\n\tsource = { \"2001:db8::1\", \"192.0.2.1\",\n"
	    "\t\t\"2001:DB8:0::1\" }\n}\n",
	  "4: pool \"a\".source: \"2001:DB8:0::1\" is listed twice (as "
	  "\"2001:db8::1\")" },
	{ "pool.ehlo: bad name",
	  L "pool \"a\" {\n\tsource = \"192.0.2.1\"\n\tehlo = \"-a.example\"\n"
	    "}\n",
	  "4: pool \"a\".ehlo: \"-a.example\" has a label starting with '-'" },
	{ "user.pool: undefined",
	  L "pool \"bulk\" { source = \"192.0.2.1\" }\n"
	    "user \"u\" {\n\tpassword = \"" HASH "\"\n"
	    "\tsender_domains = \"*\"\n\tpool = \"blk\"\n}\n",
	  "6: user \"u\".pool: no pool \"blk\" is defined (add pool \"blk\" { "
	  "source = { ... } })" },
	{ "user.pool: empty",
	  L "user \"u\" { password = \"" HASH "\" pool = \"\" }\n",
	  "2: user \"u\".pool: must not be empty" },
	{ "relay.pool: undefined", L "relay {\n\tpool = \"bulk\"\n}\n",
	  "3: relay.pool: no pool \"bulk\" is defined (add pool \"bulk\" { "
	  "source = { ... } })" },

	/* route */
	{ "route: no title", L "route { host = \"mx.example\" }\n",
	  "2: missing title for section 'route'" },
	{ "route: unknown key",
	  L "route \"a.example\" {\n\thost = mx.example\n\tport = 25\n}\n",
	  "4: route \"a.example\": no such option 'port'" },
	{ "route: star", L "route \"*\" { host = \"smart.example\" }\n",
	  "2: route \"*\": a route is for a domain; to send every domain to "
	  "one host use delivery.relay_host" },
	{ "route: bad domain",
	  L "route \"a_b.example\" { host = mx.example }\n",
	  "2: route \"a_b.example\": the domain may hold only letters, digits, "
	  "'-' and '.' (use the xn-- form for international names)" },
	{ "route: wildcard label",
	  L "route \"*.a.example\" { host = mx.example }\n",
	  "2: route \"*.a.example\": write \".a.example\" for the subdomains "
	  "of a.example" },
	{ "route: no host", L "\nroute \"a.example\" {\n}\n",
	  "3: route \"a.example\": host is missing (e.g. host = "
	  "\"mx.example.net:25\")" },
	{ "route.host: bad port",
	  L "route \"a.example\" {\n\thost = \"mx.example:99999\"\n}\n",
	  "3: route \"a.example\".host: \"mx.example:99999\" has a bad port "
	  "(use 1..65535)" },
	{ "route.host: all-numeric name",
	  L "route \"a.example\" { host = \"10.0.0\" }\n",
	  "2: route \"a.example\".host: \"10.0.0\" is neither an IPv4 address "
	  "nor a host name" },
	{ "route.host: two ports",
	  L "route \"a.example\" { host = \"mx.example:25:25\" }\n",
	  "2: route \"a.example\".host: \"mx.example:25:25\" is an IPv6 "
	  "address without brackets (write e.g. \"[2001:db8::1]\")" },
	{ "route: duplicate in another case",
	  L "route \"a.example\" { host = mx.example }\n"
	    "route \"A.EXAMPLE.\" { host = mx.example }\n",
	  "3: route \"A.EXAMPLE.\": the same domain as route \"a.example\"" },
};
#undef L

static void
test_deliver_errors(void **state)
{
	(void)state;
	CONF_TEST_ERROR_ROWS(deliver_error_rows);
}

/* Lists one item longer than allowed: the error is on that item's line. */
static void
test_deliver_limits(void **state)
{
	static const struct {
		const char *name;
		const char *head, *item, *tail;
		unsigned max; /* items allowed */
		const char *want;
	} rows[] = {
		{ "dns.servers", "dns { servers = \"", "127.0.0.1,", "\" }\n",
		  16, "dns.servers: \"127.0.0.1,127.0.0.1,127.0.0.1," },
		{ "delivery.retry_intervals",
		  "delivery { retry_intervals = {\n", "1s,\n", "}\n}\n", 32,
		  "delivery.retry_intervals: more than 32 intervals" },
		{ "destination.suspend_on",
		  "destination \"*\" { suspend_on = {\n", "x,\n", "}\n}\n", 64,
		  "destination \"*\".suspend_on: more than 64 patterns" },
		{ "pool.source", "pool \"a\" { source = {\n", NULL, "}\n}\n",
		  256, "pool \"a\".source: more than 256 addresses" },
	};
	char err[1024], path[PATH_MAX], want[PATH_MAX + 600];
	char *text, *p;
	size_t i, len;
	unsigned k, n;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		for (n = rows[i].max; n <= rows[i].max + 1; n++) {
			struct conf *c = NULL;
			int rc;

			len = strlen(LISTENER) + strlen(rows[i].head) +
			      (size_t)n * 32 + strlen(rows[i].tail) + 1;
			text = malloc(len);
			assert_non_null(text);
			p = text +
			    snprintf(text, len, "%s%s", LISTENER, rows[i].head);
			for (k = 0; k < n; k++) {
				if (rows[i].item != NULL)
					p +=
					    snprintf(p, 32, "%s", rows[i].item);
				else /* distinct addresses */
					p +=
					    snprintf(p, 32, "\"10.0.%u.%u\",\n",
						     k / 250, k % 250 + 1);
			}
			if (strcmp(rows[i].name, "dns.servers") == 0)
				p--; /* the tail replaces the last comma */
			snprintf(p, len - (size_t)(p - text), "%s",
				 rows[i].tail);
			rc = load_text(text, &c, err, sizeof(err), path,
				       sizeof(path));
			free(text);
			if (n == rows[i].max) {
				if (rc != 0)
					fail_msg("%s: %u items: %s",
						 rows[i].name, n, err);
				conf_free(c);
				continue;
			}
			CHECK_INT(rows[i].name, rc, -1);
			if (strcmp(rows[i].name, "dns.servers") == 0) {
				/* one line; the whole value is quoted */
				snprintf(want, sizeof(want), "%s:2: %s", path,
					 rows[i].want);
				if (strncmp(err, want, strlen(want)) != 0 ||
				    strstr(err, "lists more than 16 servers") ==
					NULL)
					CHECK_STR(rows[i].name, err, want);
				continue;
			}
			/* item N+1 is on line 2 + N + 1 */
			snprintf(want, sizeof(want), "%s:%u: %s", path, n + 2,
				 rows[i].want);
			CHECK_STR(rows[i].name, err, want);
		}
	}
}

static void
test_deliver_good(void **state)
{
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_delivery *d;
	const struct conf_destination *s;
	static const uint64_t retry[] = { 1000, 1000, 120000,
					  DURATION_MS(7, 0, 0, 0) };
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER
		      "hostname = mta.example.com\n"
		      "data_dir = /srv/outpost\n"
		      "dns {\n"
		      "  servers = \" 127.0.0.1:5300 , [::1]:5300,"
		      "10.1.2.3,[2001:DB8:0::53]\"\n"
		      "  timeout = 100ms  tries = 10  cache_size = 0\n"
		      "  min_ttl = 30  max_ttl = 7d  negative_ttl_max = 0\n"
		      "}\n"
		      "delivery {\n"
		      "  port = 2525  connect_timeout = 1s\n"
		      "  greeting_timeout = 1h  command_timeout = 90s\n"
		      "  data_timeout = 1h  idle_timeout = 0  max_age = 30d\n"
		      "  retry_intervals = { 1s, \"1s\", 2m, 7d }\n"
		      "  retry_jitter = 50\n"
		      "  relay_host = \"[2001:DB8:0::25]\"\n"
		      "  ehlo = \"Out.Example.NET\"\n"
		      "  max_connections = 1000000  threads = 64\n"
		      "  tls_ca_file = \"/etc/ssl/ca.pem\"\n"
		      "  tls_ca_path = \"./ca.d/\"\n"
		      "}\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_string_equal(err, "");
	assert_string_equal(c->dns.servers, "127.0.0.1:5300,[::1]:5300,"
					    "10.1.2.3:53,[2001:db8::53]:53");
	assert_int_equal(c->dns.timeout_ms, 100);
	assert_int_equal(c->dns.tries, 10);
	assert_int_equal(c->dns.cache_size, 0);
	assert_int_equal(c->dns.min_ttl_s, 30);
	assert_int_equal(c->dns.max_ttl_s, 7 * 86400);
	assert_int_equal(c->dns.negative_ttl_max_s, 0);
	d = &c->delivery;
	assert_int_equal(d->port, 2525);
	assert_int_equal(d->connect_timeout_ms, 1000);
	assert_int_equal(d->greeting_timeout_ms, 3600000);
	assert_int_equal(d->command_timeout_ms, 90000);
	assert_int_equal(d->data_timeout_ms, 3600000);
	assert_int_equal(d->idle_timeout_ms, 0);
	assert_true(d->max_age_ms == DURATION_MS(30, 0, 0, 0));
	assert_int_equal(d->nretry_intervals, 4);
	for (i = 0; i < 4; i++)
		CHECK_INT("retry_intervals", d->retry_intervals_ms[i],
			  retry[i]);
	assert_int_equal(d->retry_jitter_pct, 50);
	assert_string_equal(d->relay_host, "2001:db8::25");
	assert_int_equal(d->relay_port, 2525); /* delivery.port */
	assert_string_equal(d->ehlo, "Out.Example.NET");
	assert_int_equal(d->max_connections, 1000000);
	assert_int_equal(d->threads, 64);
	assert_string_equal(d->tls_ca_file, "/etc/ssl/ca.pem");
	assert_string_equal(d->tls_ca_path, "/srv/outpost/ca.d");
	conf_free(c);

	/* the other ends of the ranges; "+=" extends the default list */
	assert_int_equal(
	    load_text(LISTENER "dns { timeout = 1m tries = 1 "
			       "cache_size = 10000000\n"
			       "  min_ttl = 1d max_ttl = 1d "
			       "negative_ttl_max = 1d max_inflight = 65536 }\n"
			       "delivery { port = 65535 connect_timeout = 10m\n"
			       "  greeting_timeout = 1s command_timeout = 1h "
			       "data_timeout = 1s\n"
			       "  idle_timeout = 10m max_age = 1s "
			       "retry_jitter = 0\n"
			       "  retry_intervals += { 4h, 1d }\n"
			       "  relay_host = \"Smart.Example.NET:587\"\n"
			       "  max_connections = 1 "
			       "max_messages_in_memory = 10000000\n"
			       "  tls_ca_file = \"\" tls_ca_path = \"\" }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->dns.timeout_ms, 60000);
	assert_int_equal(c->dns.tries, 1);
	assert_int_equal(c->dns.cache_size, 10000000);
	assert_int_equal(c->dns.min_ttl_s, 86400);
	assert_int_equal(c->dns.max_ttl_s, 86400);
	assert_int_equal(c->dns.negative_ttl_max_s, 86400);
	assert_int_equal(c->dns.max_inflight, 65536);
	d = &c->delivery;
	assert_int_equal(d->port, 65535);
	assert_int_equal(d->connect_timeout_ms, 600000);
	assert_int_equal(d->greeting_timeout_ms, 1000);
	assert_int_equal(d->command_timeout_ms, 3600000);
	assert_int_equal(d->data_timeout_ms, 1000);
	assert_int_equal(d->idle_timeout_ms, 600000);
	assert_true(d->max_age_ms == 1000);
	assert_int_equal(d->max_rounds, 10000000);
	assert_int_equal(d->retry_jitter_pct, 0);
	assert_int_equal(d->nretry_intervals, 9);
	for (i = 0; i < 7; i++)
		CHECK_INT("retry_intervals", d->retry_intervals_ms[i],
			  default_retry_ms[i]);
	assert_true(d->retry_intervals_ms[7] == 14400000);
	assert_true(d->retry_intervals_ms[8] == 86400000);
	assert_string_equal(d->relay_host, "smart.example.net");
	assert_int_equal(d->relay_port, 587);
	assert_int_equal(d->max_connections, 1);
	assert_null(d->tls_ca_file); /* "": the system store */
	assert_null(d->tls_ca_path);
	s = &c->dest_default;
	assert_int_equal(s->max_connections, 20);
	conf_free(c);
}

/* HOST[:PORT] of relay_host and route hosts, as stored. */
static void
test_deliver_hostport(void **state)
{
	static const struct {
		const char *in;
		const char *host;
		unsigned port;
	} rows[] = {
		{ "smart.example", "smart.example", 25 },
		{ "SMART.Example:2525", "smart.example", 2525 },
		{ "192.0.2.1", "192.0.2.1", 25 },
		{ "192.0.2.1:1", "192.0.2.1", 1 },
		{ "[::1]", "::1", 25 },
		{ "[::1]:65535", "::1", 65535 },
		{ "[::FFFF:127.0.0.1]:26", "::ffff:127.0.0.1", 26 },
		{ "[2001:db8:0:0::1]:587", "2001:db8::1", 587 },
		{ "localhost", "localhost", 25 },
		{ "xn--bcher-kva.example", "xn--bcher-kva.example", 25 },
		{ "a1.example.com2", "a1.example.com2", 25 },
		{ "1.example", "1.example", 25 },
	};
	char err[1024], path[PATH_MAX], text[512];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text),
			 LISTENER "delivery { relay_host = \"%s\" }\n"
				  "route \"r.example\" { host = \"%s\" }\n",
			 rows[i].in, rows[i].in);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].in, err);
		CHECK_STR(rows[i].in, c->delivery.relay_host, rows[i].host);
		CHECK_INT(rows[i].in, c->delivery.relay_port, rows[i].port);
		CHECK_STR(rows[i].in, c->routes[0].host, rows[i].host);
		CHECK_INT(rows[i].in, c->routes[0].port, rows[i].port);
		conf_free(c);
	}
}

static void
test_deliver_dns_servers(void **state)
{
	static const struct {
		const char *in;
		const char *want;
	} rows[] = {
		{ "127.0.0.1", "127.0.0.1:53" },
		{ "127.0.0.1:5300", "127.0.0.1:5300" },
		{ "[::1]", "[::1]:53" },
		{ "[::1]:5300", "[::1]:5300" },
		{ "127.0.0.1:5300,[::1]:5300", "127.0.0.1:5300,[::1]:5300" },
		{ " 127.0.0.1 ,\t[0:0::1]:1 ", "127.0.0.1:53,[::1]:1" },
		{ "127.0.0.11,127.0.0.12,127.0.0.13",
		  "127.0.0.11:53,127.0.0.12:53,"
		  "127.0.0.13:53" },
		{ "[::ffff:127.0.0.1]:65535", "[::ffff:127.0.0.1]:65535" },
	};
	char err[1024], path[PATH_MAX], text[512];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text),
			 LISTENER "dns { servers = \"%s\" }\n", rows[i].in);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].in, err);
		CHECK_STR(rows[i].in, c->dns.servers, rows[i].want);
		assert_false(c->dns.dnssec);
		conf_free(c);
	}
	/* dnssec with validating resolvers on loopback; tls dane-only */
	assert_int_equal(
	    load_text(LISTENER "dns { servers = \"127.0.0.1:5300,[::1]\" "
			       "dnssec = true }\n"
			       "destination \"a.test\" { tls = dane-only }\n"
			       "destination \"b.test\" { tls = \"dane\" }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_true(c->dns.dnssec);
	/* tls_report: off, its defaults from the hostname */
	assert_false(c->tls_report.enabled);
	assert_true(c->tls_report.delay_ms == 3600000);
	snprintf(text, sizeof(text), "tlsrpt-noreply@%s", c->hostname);
	assert_string_equal(c->tls_report.from, text);
	assert_string_equal(c->tls_report.organization, c->hostname);
	assert_int_equal(conf_destination_find(c, "a.test")->tls,
			 CONF_TLSP_DANE_ONLY);
	assert_int_equal(conf_destination_find(c, "b.test")->tls,
			 CONF_TLSP_DANE);
	conf_free(c);
}

static bool
suspends(const struct conf_destination *d, const char *reply)
{
	const regex_t *re = d->suspend_re;
	size_t i;

	for (i = 0; i < d->nsuspend_on; i++) {
		if (regexec(&re[i], reply, 0, NULL, 0) == 0)
			return true;
	}
	return false;
}

/* max_mx_addresses, max_mx_sessions, attempt_timeout: delivery { } gives
 * "*" what it leaves out; a listed destination takes what it leaves out
 * from "*". */
static void
test_mx_limits_inherit(void **state)
{
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_destination *d;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER
		      "delivery { max_mx_addresses = 9  max_mx_sessions = 4\n"
		      "  attempt_timeout = 2m }\n"
		      "destination \"*\" { max_mx_sessions = 3 }\n"
		      "destination \"a.example\" { max_mx_addresses = 2 }\n"
		      "destination \"b.example\" { attempt_timeout = 30s }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	d = &c->dest_default;
	assert_int_equal(d->max_mx_addresses, 9); /* from delivery */
	assert_int_equal(d->max_mx_sessions, 3);  /* its own */
	assert_int_equal(d->attempt_timeout_ms, 120000);
	d = conf_destination_find(c, "a.example");
	assert_int_equal(d->max_mx_addresses, 2);
	assert_int_equal(d->max_mx_sessions, 3);
	assert_int_equal(d->attempt_timeout_ms, 120000);
	d = conf_destination_find(c, "b.example");
	assert_int_equal(d->max_mx_addresses, 9);
	assert_int_equal(d->max_mx_sessions, 3);
	assert_int_equal(d->attempt_timeout_ms, 30000);
	conf_free(c);
}

static void
test_destinations(void **state)
{
	static const struct {
		const char *domain;
		const char *want; /* the destination's title; NULL: default */
	} rows[] = {
		{ "gmail.com", "gmail.com" },
		{ "GMail.COM", "gmail.com" },
		{ "gmail.com.", "gmail.com" },
		{ "mx.gmail.com", NULL }, /* gmail.com is not ".gmail.com" */
		{ "xgmail.com", NULL },
		{ "gmail.co", NULL },
		{ "example.com", "example.com" },
		{ "a.example.com", ".example.com" },
		{ "a.b.example.com", ".example.com" },
		{ "b.sub.example.com", ".sub.example.com" },
		{ "sub.example.com", ".example.com" }, /* not ".sub." itself */
		{ "x.y.sub.example.com", ".sub.example.com" },
		{ "only.example.com", "only.example.com" },
		{ "x.only.example.com", ".example.com" },
		{ "badexample.com", NULL },
		{ "example.net", NULL },
		{ "deep.a.example.org", ".example.org" },
		{ "example.org", NULL },
		{ "com", NULL },
		{ "", NULL },
		{ ".", NULL },
		{ ".example.com", NULL }, /* not a recipient domain */
	};
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_destination *d, *g, *e;
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(
		LISTENER
		"destination \"gmail.com\" {\n"
		"  max_connections = 10  tls = verify\n"
		"  suspend_on = { \"4\\\\.7\\\\.28\", \"RATE limit\" }\n"
		"}\n"
		/* "*" after a listed one: still what it inherits from */
		"destination \"*\" {\n"
		"  max_connections = 5  max_messages_per_connection = 7\n"
		"  max_recipients_per_transaction = 9\n"
		"  max_messages_per_minute = 60  max_messages_per_hour = 600\n"
		"  tls = encrypt  suspend_on = { \"^421.*try again\" }\n"
		"  suspend_for = 1h  backoff_pause = 2m  backoff_max = 4h\n"
		"  mta_sts = false\n"
		"}\n"
		"destination \".example.com\" {\n"
		"  suspend_on = { }  tls = NONE  backoff_max = 1d\n"
		"}\n"
		"destination \"sts.example.org\" { mta_sts = true }\n"
		"destination \"Example.COM.\" { max_messages_per_hour = 0 }\n"
		"destination \".sub.example.com\" { backoff_pause = 4h }\n"
		"destination \"only.example.com\" { suspend_on += \"x\" }\n"
		"destination \".example.org\" { }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->ndestinations, 7);
	/* mta_sts: set in "*", inherited, set again in a listed one */
	assert_false(c->dest_default.mta_sts);
	assert_false(conf_destination_find(c, "gmail.com")->mta_sts);
	assert_true(conf_destination_find(c, "sts.example.org")->mta_sts);

	/* "*" */
	d = &c->dest_default;
	assert_null(d->domain);
	assert_int_equal(d->max_connections, 5);
	assert_int_equal(d->max_messages_per_connection, 7);
	assert_int_equal(d->max_recipients_per_transaction, 9);
	assert_int_equal(d->max_messages_per_minute, 60);
	assert_int_equal(d->max_messages_per_hour, 600);
	assert_int_equal(d->tls, CONF_TLSP_ENCRYPT);
	assert_int_equal(d->nsuspend_on, 1);
	assert_string_equal(d->suspend_on[0], "^421.*try again");
	assert_null(d->suspend_on[1]);
	assert_true(d->suspend_for_ms == 3600000);
	assert_true(d->backoff_pause_ms == 120000);
	assert_true(d->backoff_max_ms == 14400000);
	assert_true(suspends(d, "421 4.7.0 Please TRY AGAIN later"));
	assert_false(suspends(d, "450 4.7.0 try again"));

	/* set keys are its own; the rest come from "*" */
	g = conf_destination_find(c, "gmail.com");
	assert_string_equal(g->domain, "gmail.com");
	assert_int_equal(g->max_connections, 10);
	assert_int_equal(g->max_messages_per_connection, 7);
	assert_int_equal(g->max_recipients_per_transaction, 9);
	assert_int_equal(g->max_messages_per_minute, 60);
	assert_int_equal(g->max_messages_per_hour, 600);
	assert_int_equal(g->tls, CONF_TLSP_VERIFY);
	assert_int_equal(g->nsuspend_on, 2);
	assert_string_equal(g->suspend_on[0], "4\\.7\\.28");
	assert_string_equal(g->suspend_on[1], "RATE limit");
	assert_true(g->suspend_for_ms == 3600000);
	assert_true(g->backoff_pause_ms == 120000);
	assert_true(g->backoff_max_ms == 14400000);
	assert_true(suspends(g, "421-4.7.28 unusual rate of unsolicited mail"));
	assert_true(suspends(g, "450 Rate Limit exceeded"));
	assert_false(suspends(g, "421 4.7.0 try again")); /* not inherited */
	assert_false(suspends(g, "421-4x7x28"));

	/* an empty list is set too: it replaces "*"'s */
	e = conf_destination_find(c, "a.example.com");
	assert_string_equal(e->domain, ".example.com");
	assert_int_equal(e->nsuspend_on, 0);
	assert_null(e->suspend_re);
	assert_int_equal(e->tls, CONF_TLSP_NONE);
	assert_true(e->backoff_max_ms == 86400000);
	assert_int_equal(e->max_connections, 5);

	/* "+=" appends to the section's own (empty) list, not to "*"'s */
	d = conf_destination_find(c, "only.example.com");
	assert_int_equal(d->nsuspend_on, 1);
	assert_string_equal(d->suspend_on[0], "x");

	/* inherited, yet owned: its own copies */
	d = conf_destination_find(c, "example.com");
	assert_string_equal(d->domain, "example.com");
	assert_int_equal(d->max_messages_per_hour, 0);
	assert_int_equal(d->nsuspend_on, 1);
	assert_ptr_not_equal(d->suspend_on, c->dest_default.suspend_on);
	assert_ptr_not_equal(d->suspend_on[0], c->dest_default.suspend_on[0]);
	assert_ptr_not_equal(d->suspend_re, c->dest_default.suspend_re);
	assert_true(suspends(d, "421 try again"));

	d = conf_destination_find(c, "a.sub.example.com");
	assert_true(d->backoff_pause_ms == 14400000);
	assert_true(d->backoff_max_ms == 14400000);

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		d = conf_destination_find(c, rows[i].domain);
		assert_non_null(d);
		if (rows[i].want == NULL) {
			CHECK_INT(rows[i].domain, d == &c->dest_default, 1);
			continue;
		}
		CHECK_STR(rows[i].domain, d->domain, rows[i].want);
	}
	assert_ptr_equal(conf_destination_find(c, NULL), &c->dest_default);
	assert_null(conf_destination_find(NULL, "gmail.com"));
	conf_free(c);
}

static void
test_routes(void **state)
{
	static const struct {
		const char *domain;
		const char *host; /* NULL: no route */
		unsigned port;
	} rows[] = {
		{ "demo.test", "127.0.0.1", 2526 },
		{ "DEMO.test.", "127.0.0.1", 2526 },
		{ "a.demo.test", "::1", 2527 },
		{ "a.b.demo.test", "::1", 2527 },
		{ "x.demo.test", "mx.x.test", 25 },
		{ "y.x.demo.test", "::1", 2527 },
		{ "other.test", NULL, 0 },
		{ "xdemo.test", NULL, 0 },
		{ "test", NULL, 0 },
		{ "", NULL, 0 },
	};
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_route *r;
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER
		      "route \"Demo.Test\" { host = "
		      "\"127.0.0.1:2526\" }\n"
		      "route \".demo.test\" { host = \"[::1]:2527\" }\n"
		      "route \"x.demo.test\" { host = \"MX.x.test\" }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->nroutes, 3);
	assert_string_equal(c->routes[0].domain, "demo.test");
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		r = conf_route_find(c, rows[i].domain);
		if (rows[i].host == NULL) {
			CHECK_INT(rows[i].domain, r == NULL, 1);
			continue;
		}
		CHECK_INT(rows[i].domain, r != NULL, 1);
		CHECK_STR(rows[i].domain, r->host, rows[i].host);
		CHECK_INT(rows[i].domain, r->port, rows[i].port);
	}
	assert_null(conf_route_find(c, NULL));
	assert_null(conf_route_find(NULL, "demo.test"));
	conf_free(c);
}

static void
test_pools(void **state)
{
	char err[1024], path[PATH_MAX], a[INET6_ADDRSTRLEN];
	struct conf *c = NULL;
	const struct conf_pool *p;

	(void)state;
	assert_int_equal(
	    load_text(
		LISTENER
		"user \"a\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  pool = \"BULK\" }\n" /* before the pool; any case */
		"user \"b\" { password = \"" HASH
		"\" sender_domains = \"*\" }\n"
		"relay { networks = { \"127.64.0.0/10\" } pool = transact }\n"
		"pool \"bulk\" {\n"
		"  source = { \"192.0.2.10\", \"2001:DB8::10\" }\n"
		"  ehlo = \"bulk.example.com\"\n"
		"}\n"
		"pool \"transact\" { source = \"::ffff:192.0.2.20\" }\n"
		"pool \"Default\" { source = \"127.0.0.2\" }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->npools, 3);
	p = &c->pools[0];
	assert_string_equal(p->name, "bulk");
	assert_int_equal(p->nsources, 2);
	assert_int_equal(p->sources[0].ss_family, AF_INET);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&p->sources[0])->sin_addr, a,
		  sizeof(a));
	assert_string_equal(a, "192.0.2.10");
	assert_int_equal(((struct sockaddr_in *)&p->sources[0])->sin_port, 0);
	assert_int_equal(p->sources[1].ss_family, AF_INET6);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&p->sources[1])->sin6_addr,
		  a, sizeof(a));
	assert_string_equal(a, "2001:db8::10");
	assert_string_equal(p->ehlo, "bulk.example.com");
	assert_null(c->pools[1].ehlo); /* delivery.ehlo */
	assert_int_equal(c->pools[1].sources[0].ss_family, AF_INET6);

	assert_ptr_equal(conf_user_find(c, "a")->pool, &c->pools[0]);
	assert_null(conf_user_find(c, "b")->pool);
	assert_ptr_equal(c->relay_pool, &c->pools[1]);
	assert_ptr_equal(c->default_pool, &c->pools[2]);
	conf_free(c);

	/* no "default": NULL; relay without pool: NULL */
	assert_int_equal(load_text(LISTENER
				   "pool \"x\" { source = \"192.0.2.1\" }\n"
				   "relay { networks = \"127.64.0.0/10\" }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_null(c->default_pool);
	assert_null(c->relay_pool);
	conf_free(c);
}

static void
test_example_deliver(void **state)
{
	char err[1024];
	struct conf *c = NULL;
	const struct conf_destination *d;
	const struct conf_route *r;

	(void)state;
	if (conf_load(&c, OUTPOST_CONF_EXAMPLE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_null(c->dns.servers);
	assert_int_equal(c->dns.timeout_ms, 2000);
	assert_int_equal(c->delivery.nretry_intervals, 7);
	assert_string_equal(c->delivery.ehlo, "mta.example.com");
	assert_null(c->delivery.relay_host);
	assert_null(c->delivery.tls_ca_file);
	assert_int_equal(c->dest_default.max_connections, 20);
	d = conf_destination_find(c, "gmail.com");
	assert_string_equal(d->domain, "gmail.com");
	assert_int_equal(d->tls, CONF_TLSP_VERIFY);
	assert_int_equal(d->nsuspend_on, 2);
	assert_string_equal(d->suspend_on[0], "4\\.7\\.28");
	assert_true(suspends(d, "421-4.7.28 Our system has detected an "
				"unusual rate of unsolicited mail"));
	assert_true(d->suspend_for_ms == 1800000);
	d = conf_destination_find(c, "news.example.com");
	assert_int_equal(d->max_messages_per_minute, 600);
	assert_int_equal(c->npools, 1);
	assert_int_equal(c->pools[0].nsources, 3);
	assert_null(c->default_pool);
	assert_null(conf_user_find(c, "campaigns")->pool);
	r = conf_route_find(c, "demo.test");
	assert_non_null(r);
	assert_string_equal(r->host, "127.0.0.1");
	assert_int_equal(r->port, 2526);
	conf_free(c);
}

static void
test_throttle(void **state)
{
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_destination *d;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER
		      "destination \"*\" {\n"
		      "  throttle_on = { \"rate-limited\", "
		      "\"Spam-Related\" }\n"
		      "  throttle_factor = 25 throttle_for = 90s\n}\n"
		      "destination \"gmail.com\" { throttle_max_steps = "
		      "16 }\n"
		      "destination \"other.example\" { throttle_on = "
		      "{ \"connection\" } }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	d = conf_destination_find(c, "gmail.com");
	/* Inherited from "*", one key of its own. */
	assert_int_equal(d->throttle_on,
			 (UINT32_C(1) << CONF_BC_RATE_LIMITED) |
			     (UINT32_C(1) << CONF_BC_SPAM_RELATED));
	assert_int_equal(d->throttle_factor, 25);
	assert_true(d->throttle_for_ms == 90000);
	assert_int_equal(d->throttle_max_steps, 16);
	d = conf_destination_find(c, "other.example");
	assert_int_equal(d->throttle_on, UINT32_C(1) << CONF_BC_CONNECTION);
	conf_free(c);
}

static void
test_warmup(void **state)
{
	/* 2026-12-01T00:00:00Z */
	const int64_t day1 = INT64_C(1796083200) * 1000, d = 86400000;
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_pool *p;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER
		      "pool \"new\" {\n"
		      "  source = { \"127.0.0.10\", \"127.0.0.11\" }\n"
		      "  warmup_start = \"2026-12-01\"\n"
		      "  warmup \"Gmail.com\" { daily = { 50, 100, 200 } }\n"
		      "  warmup \"*\" { daily = { 500 } }\n}\n"
		      "pool \"old\" { source = \"127.0.0.12\" }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	p = &c->pools[0];
	assert_true(p->warmup_start_ms == day1);
	assert_int_equal(p->nwarmups, 2);
	assert_string_equal(p->warmups[0].dest, "gmail.com");
	/* Per address: two addresses, twice the day's number. */
	assert_true(conf_pool_warmup(p, "gmail.com", day1 - 1) == 100);
	assert_true(conf_pool_warmup(p, "gmail.com", day1) == 100);
	assert_true(conf_pool_warmup(p, "GMAIL.com", day1 + d - 1) == 100);
	assert_true(conf_pool_warmup(p, "gmail.com", day1 + d) == 200);
	assert_true(conf_pool_warmup(p, "gmail.com", day1 + 2 * d) == 400);
	assert_true(conf_pool_warmup(p, "gmail.com", day1 + 3 * d) == 0);
	assert_true(conf_pool_warmup(p, "*", day1) == 1000);
	assert_true(conf_pool_warmup(p, "example.org", day1) == 1000);
	assert_true(conf_pool_warmup(p, "*", day1 + d) == 0);
	assert_true(conf_pool_warmup(&c->pools[1], "*", day1) == 0);
	conf_free(c);
}

static void
test_cluster(void **state)
{
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	/* Off by default. */
	assert_int_equal(
	    load_text(LISTENER, &c, err, sizeof(err), path, sizeof(path)), 0);
	assert_null(c->cluster.redis_host);
	conf_free(c);
	c = NULL;
	assert_int_equal(
	    load_text(LISTENER "cluster {\n  redis = \"[::1]:6380\"\n"
			       "  password_file = \"/etc/outpost/r.pass\"\n"
			       "  node = \"mta-1\" nodes = 3 timeout = 10ms "
			       "lease = 1h prefix = \"eu:\"\n}\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_string_equal(c->cluster.redis_host, "::1");
	assert_int_equal(c->cluster.redis_port, 6380);
	assert_string_equal(c->cluster.password_file, "/etc/outpost/r.pass");
	assert_string_equal(c->cluster.node, "mta-1");
	assert_int_equal(c->cluster.nodes, 3);
	assert_int_equal(c->cluster.timeout_ms, 10);
	assert_int_equal(c->cluster.lease_ms, 3600000);
	assert_string_equal(c->cluster.prefix, "eu:");
	conf_free(c);
	c = NULL;
	/* Defaults: port 6379, the host name, 1 node, 500ms, 30s. */
	assert_int_equal(load_text(LISTENER
				   "cluster { redis = \"127.0.0.1\" }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_int_equal(c->cluster.redis_port, 6379);
	assert_non_null(c->cluster.node);
	assert_true(c->cluster.node[0] != '\0');
	assert_int_equal(c->cluster.nodes, 1);
	assert_int_equal(c->cluster.timeout_ms, 500);
	assert_int_equal(c->cluster.lease_ms, 30000);
	assert_string_equal(c->cluster.prefix, "outpost:");
	conf_free(c);
}

/* ---- signing and alignment: dkim, dkim_sign, dmarc, dkim_domain ---- */

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deliver_defaults),
		cmocka_unit_test(test_deliver_errors),
		cmocka_unit_test(test_deliver_limits),
		cmocka_unit_test(test_deliver_good),
		cmocka_unit_test(test_cluster),
		cmocka_unit_test(test_warmup),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_deliver_hostport),
		cmocka_unit_test(test_deliver_dns_servers),
		cmocka_unit_test(test_destinations),
		cmocka_unit_test(test_mx_limits_inherit),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_pools),
		cmocka_unit_test(test_example_deliver),
	};

	return cmocka_run_group_tests(tests, conf_test_setup,
				      conf_test_teardown);
}
