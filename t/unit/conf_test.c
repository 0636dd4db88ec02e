/*
 * conf_test.c — unit tests of conf/'s core: every common default, the value
 * scanners, the top-level keys, tls, queue, limits, auth_limit, listeners,
 * relay networks, users, includes, conf_check_host(), unreadable and
 * garbage files, the shipped example, concurrent loads, and the exact
 * "file:line: message" of each error.  The delivery, signing and observe
 * sections have their own programs (conf_test_deliver.c, conf_test_dkim.c,
 * conf_test_observe.c); all share conf_test_util.[ch].  Configuration
 * snippets go to files in a temporary directory, removed at the end.
 * Single-threaded except test_concurrent_loads.
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

static unsigned
cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

static bool
match4(const struct conf *c, const char *a)
{
	uint8_t b[4];

	assert_int_equal(inet_pton(AF_INET, a, b), 1);
	return conf_network_match(c, AF_INET, b);
}

static bool
match6(const struct conf *c, const char *a)
{
	uint8_t b[16];

	assert_int_equal(inet_pton(AF_INET6, a, b), 1);
	return conf_network_match(c, AF_INET6, b);
}

/* ---- defaults ---- */

/* Values every loaded tree shares unless the file changes them. */
static void
check_common_defaults(const struct conf *c)
{
	char want[PATH_MAX + 64], host[256];

	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(c->hostname, host);
	cwd_join("var", want, sizeof(want));
	assert_string_equal(c->data_dir, want);
	cwd_join("var/keys/loghash.key", want, sizeof(want));
	assert_string_equal(c->hash_key_file, want);
	assert_int_equal(c->smtp_threads, cpus());
	assert_int_equal(c->worker_threads, cpus());
	assert_string_equal(c->user, "outpost");
	assert_false(c->allow_root);

	cwd_join("var/keys/tls.crt", want, sizeof(want));
	assert_string_equal(c->tls.cert_file, want);
	cwd_join("var/keys/tls.key", want, sizeof(want));
	assert_string_equal(c->tls.key_file, want);
	assert_null(c->tls.ciphers);
	assert_int_equal(c->tls.min_version, 0x0303);

	cwd_join("var/queue", want, sizeof(want));
	assert_string_equal(c->queue.path, want);
	cwd_join("var/keys/queue.key", want, sizeof(want));
	assert_string_equal(c->queue.key_file, want);
	assert_true(c->queue.map_size == (uint64_t)16 << 30);
	assert_int_equal(c->queue.commit_interval_us, 0);
	assert_int_equal(c->queue.commit_max_batch, 1024);

	assert_true(c->limits.max_message_size == 25u << 20);
	assert_int_equal(c->limits.max_recipients, 1000);
	assert_int_equal(c->limits.max_errors, 10);
	assert_int_equal(c->limits.max_sessions, 2000);
	assert_int_equal(c->limits.max_sessions_per_client, 100);
	assert_int_equal(c->limits.command_timeout_ms, 300000);
	assert_int_equal(c->limits.data_timeout_ms, 180000);
	assert_int_equal(c->limits.tls_handshake_timeout_ms, 30000);
	assert_int_equal(c->limits.long_lines, CONF_LONG_LINES_REENCODE);
	assert_int_equal(c->limits.session_lifetime_ms, 3600000);
	assert_true(c->limits.data_min_rate == 1024);
	assert_int_equal(c->limits.data_rate_interval_ms, 30000);
	assert_int_equal(c->limits.stress_threshold, 75);
	assert_int_equal(c->limits.stress_timeout_ms, 10000);
	assert_true(c->limits.max_body_memory == 512u << 20);

	assert_int_equal(c->auth_limit.max_failures, 5);
	assert_int_equal(c->auth_limit.window_ms, 600000);
	assert_int_equal(c->auth_limit.block_ms, 900000);
	assert_int_equal(c->auth_limit.delay_base_ms, 250);
	assert_int_equal(c->auth_limit.delay_max_ms, 4000);
	assert_int_equal(c->auth_limit.cache_ttl_ms, 600000);
	assert_int_equal(c->auth_limit.max_failures_per_address, 30);
	assert_int_equal(c->auth_limit.success_exempt_ms, 86400000);
	assert_int_equal(c->auth_limit.ipv4_prefix, 32);
	assert_int_equal(c->auth_limit.ipv6_prefix, 64);
	assert_int_equal(c->auth_limit.max_entries, 100000);

	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].name, "127.0.0.1:2525");
	assert_int_equal(c->listeners[0].addr.ss_family, AF_INET);
	assert_int_equal(c->listeners[0].addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(
	    ntohs(((struct sockaddr_in *)&c->listeners[0].addr)->sin_port),
	    2525);
	assert_int_equal(c->listeners[0].tls, CONF_TLS_STARTTLS);
	assert_true(c->listeners[0].auth);
	assert_false(c->listeners[0].auth_without_tls);
	assert_false(c->listeners[0].require_auth);
	assert_null(c->listeners[0].cert_file);
	assert_null(c->listeners[0].key_file);
	assert_int_equal(c->nusers, 0);
}

static void
test_defaults_embedded(void **state)
{
	struct conf *c = NULL;
	char err[512];

	(void)state;
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(c->file, "(embedded defaults)");
	check_common_defaults(c);
	assert_true(c->tls.generate);
	assert_int_equal(c->nnetworks, 2);
	assert_int_equal(c->networks[0].family, AF_INET);
	assert_int_equal(c->networks[0].prefix, 8);
	assert_int_equal(c->networks[1].family, AF_INET6);
	assert_int_equal(c->networks[1].prefix, 128);
	assert_true(match4(c, "127.0.0.1"));
	assert_true(match4(c, "127.255.0.9"));
	assert_true(match6(c, "::1"));
	assert_true(match6(c, "::ffff:127.0.0.1"));
	assert_false(match4(c, "10.0.0.1"));
	assert_false(match6(c, "::2"));
	assert_false(match6(c, "::ffff:10.0.0.1"));
	conf_free(c);
}

static void
test_defaults_file(void **state)
{
	char err[512], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER, &c, err, sizeof(err), path, sizeof(path)), 0);
	assert_string_equal(c->file, path);
	check_common_defaults(c);
	assert_false(c->tls.generate); /* only the embedded defaults */
	assert_int_equal(c->nnetworks, 0);
	assert_false(match4(c, "127.0.0.1"));
	conf_free(c);
	conf_free(NULL);
}

/* ---- value scanners ---- */

static void
test_parse_size(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t want;
	} rows[] = {
		{ "0", 0, 0 },
		{ "1024", 0, 1024 },
		{ "1024B", 0, 1024 },
		{ "512k", 0, 512u << 10 },
		{ "512K", 0, 512u << 10 },
		{ "512kb", 0, 512u << 10 },
		{ "25M", 0, 25u << 20 },
		{ "25MB", 0, 25u << 20 },
		{ "25mB", 0, 25u << 20 },
		{ "1G", 0, 1u << 30 },
		{ "16g", 0, (uint64_t)16 << 30 },
		{ "1T", 0, (uint64_t)1 << 40 },
		{ "16777215T", 0, (uint64_t)16777215 << 40 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "16777216T", -1, 0 },            /* 2^64 */
		{ "18446744073709551616", -1, 0 }, /* 2^64 */
		{ "99999999999999999999999M", -1, 0 },
		{ "", -1, 0 },
		{ "M", -1, 0 },
		{ "B", -1, 0 },
		{ "-1", -1, 0 },
		{ "+1", -1, 0 },
		{ "1.5M", -1, 0 },
		{ "1 M", -1, 0 },
		{ " 1M", -1, 0 },
		{ "1M ", -1, 0 },
		{ "1MM", -1, 0 },
		{ "1KBB", -1, 0 },
		{ "1P", -1, 0 },
		{ "25Q", -1, 0 },
		{ "0x10", -1, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t v = 12345;

		CHECK_INT(rows[i].in, conf_parse_size(rows[i].in, &v),
			  rows[i].rc);
		if (rows[i].rc == 0)
			CHECK_INT(rows[i].in, v, rows[i].want);
	}
	assert_int_equal(conf_parse_size(NULL, &(uint64_t){ 0 }), -1);
	assert_int_equal(conf_parse_size("1", NULL), -1);
}

static void
test_parse_duration(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t want_ms;
	} rows[] = {
		{ "0", 0, 0 },
		{ "0ms", 0, 0 },
		{ "30", 0, 30000 },
		{ "250ms", 0, 250 },
		{ "250MS", 0, 250 },
		{ "30s", 0, 30000 },
		{ "5m", 0, 300000 },
		{ "5M", 0, 300000 },
		{ "2h", 0, 7200000 },
		{ "2d", 0, 172800000 },
		{ "213503d", 0, (uint64_t)213503 * 86400000 },
		{ "1000000000d", -1, 0 }, /* overflows (µs inside) */
		{ "99999999999999999999999s", -1, 0 },
		{ "", -1, 0 },
		{ "ms", -1, 0 },
		{ "s", -1, 0 },
		{ "5x", -1, 0 },
		{ "5 s", -1, 0 },
		{ "-5s", -1, 0 },
		{ "1.5s", -1, 0 },
		{ "5us", -1, 0 }, /* only commit_interval takes µs */
		{ "5sec", -1, 0 },
		{ "5mss", -1, 0 },
		{ "1h30m", -1, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t v = 12345;

		CHECK_INT(rows[i].in, conf_parse_duration(rows[i].in, &v),
			  rows[i].rc);
		if (rows[i].rc == 0)
			CHECK_INT(rows[i].in, v, rows[i].want_ms);
	}
	assert_int_equal(conf_parse_duration(NULL, &(uint64_t){ 0 }), -1);
}

static void
test_addr_parse(void **state)
{
	static const struct {
		const char *in;
		int rc;
		int family;
		const char *addr;
		unsigned port;
	} rows[] = {
		{ "127.0.0.1:2525", 0, AF_INET, "127.0.0.1", 2525 },
		{ "0.0.0.0:25", 0, AF_INET, "0.0.0.0", 25 },
		{ "1.2.3.4:1", 0, AF_INET, "1.2.3.4", 1 },
		{ "1.2.3.4:65535", 0, AF_INET, "1.2.3.4", 65535 },
		{ "[::1]:2525", 0, AF_INET6, "::1", 2525 },
		{ "[::]:587", 0, AF_INET6, "::", 587 },
		{ "[2001:db8::25]:465", 0, AF_INET6, "2001:db8::25", 465 },
		{ "[::ffff:127.0.0.1]:25", 0, AF_INET6, "::ffff:127.0.0.1",
		  25 },
		{ "", -1, 0, NULL, 0 },
		{ "127.0.0.1", -1, 0, NULL, 0 },
		{ "127.0.0.1:", -1, 0, NULL, 0 },
		{ "127.0.0.1:0", -1, 0, NULL, 0 },
		{ "127.0.0.1:65536", -1, 0, NULL, 0 },
		{ "127.0.0.1:99999999999999999999", -1, 0, NULL, 0 },
		{ "127.0.0.1:-1", -1, 0, NULL, 0 },
		{ "127.0.0.1:+25", -1, 0, NULL, 0 },
		{ "127.0.0.1:25x", -1, 0, NULL, 0 },
		{ "127.0.0.1: 25", -1, 0, NULL, 0 },
		{ ":25", -1, 0, NULL, 0 },
		{ "::1:25", -1, 0, NULL, 0 },
		{ "[::1]", -1, 0, NULL, 0 },
		{ "[::1]25", -1, 0, NULL, 0 },
		{ "[::1:25", -1, 0, NULL, 0 },
		{ "[]:25", -1, 0, NULL, 0 },
		{ "[127.0.0.1]:25", -1, 0, NULL, 0 },
		{ "localhost:25", -1, 0, NULL, 0 },
		{ "127.1:25", -1, 0, NULL, 0 },
		{ "1.2.3.4.5:25", -1, 0, NULL, 0 },
		{ "[fe80::1%eth0]:25", -1, 0, NULL, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sockaddr_storage ss;
		char got[INET6_ADDRSTRLEN];
		socklen_t len = 0;

		CHECK_INT(rows[i].in, conf_addr_parse(rows[i].in, &ss, &len),
			  rows[i].rc);
		if (rows[i].rc != 0)
			continue;
		CHECK_INT(rows[i].in, ss.ss_family, rows[i].family);
		if (rows[i].family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

			CHECK_INT(rows[i].in, len, sizeof(*sin));
			CHECK_INT(rows[i].in, ntohs(sin->sin_port),
				  rows[i].port);
			inet_ntop(AF_INET, &sin->sin_addr, got, sizeof(got));
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

			CHECK_INT(rows[i].in, len, sizeof(*sin6));
			CHECK_INT(rows[i].in, ntohs(sin6->sin6_port),
				  rows[i].port);
			inet_ntop(AF_INET6, &sin6->sin6_addr, got, sizeof(got));
		}
		CHECK_STR(rows[i].in, got, rows[i].addr);
	}
}

/* ---- errors: exact "file:line: message" ---- */

static const struct conf_error_row error_rows[] = {
	{ "unknown key", "bogus = 1\n", "1: no such option 'bogus'" },
	{ "unknown key in a section", "limits {\n\tbogus = 1\n}\n",
	  "2: limits: no such option 'bogus'" },
	{ "unknown key after comments",
	  "# one\n# two\n// three\n/* four\n   five */\nhostname = x # six\n"
	  "bogus = 1\n",
	  "7: no such option 'bogus'" },
	{ "unknown key in a listener",
	  "\nlistener \"127.0.0.1:25\" {\n\tauth = yes\n\tbogus = 1\n}\n",
	  "4: listener \"127.0.0.1:25\": no such option 'bogus'" },
	{ "include is not a key", "include = \"x\"\n",
	  "1: no such option 'include'" },
	{ "hidden line option", LISTENER "user \"a\" {\n\"|line\" = 3 }\n",
	  "3: user \"a\": no such option '|line'" },
	{ "empty option name", "\"\" = 1\n", "1: syntax error" },
	{ "stray brace", LISTENER "}\n", "2: } without a matching {" },
	{ "unclosed block",
	  "listener \"127.0.0.1:25\" {\n\ttls = none\nlimits {\n}\n",
	  "1: { without a matching } (the block opened here is not "
	  "closed)" },
	{ "included file closes its includer's block",
	  "limits { include(\"/dev/null\") }\n}\n",
	  "2: } without a matching {" },
	{ "unterminated string", "hostname = \"mta.example.com\n\n",
	  "1: unterminated string (a \" without its closing \")" },
	{ "unterminated comment", LISTENER "/* a\n b\n",
	  "2: unterminated /* comment" },

	{ "size: not a size", "limits {\n\tmax_message_size = 25Q\n}\n",
	  "2: limits.max_message_size: \"25Q\" is not a size (use e.g. "
	  "25M)" },
	{ "size: below minimum", "limits { max_message_size = 1K }\n",
	  "1: limits.max_message_size: \"1K\" is less than the minimum, 64K" },
	{ "size: above maximum", "limits { max_message_size = 2G }\n",
	  "1: limits.max_message_size: \"2G\" is more than the maximum, 1G" },
	{ "body budget under one message",
	  "limits {\n\tmax_message_size = 64M\n\tmax_body_memory = 32M\n}\n",
	  "3: limits.max_message_size (64M) is more than "
	  "limits.max_body_memory (32M)" },
	{ "stress threshold over 100", "limits { stress_threshold = 101 }\n",
	  "1: limits.stress_threshold: \"101\" is more than the maximum, 100" },
	{ "data rate not a size", "limits { data_min_rate = fast }\n",
	  "1: limits.data_min_rate: \"fast\" is not a size (use e.g. 25M)" },
	{ "size: overflow",
	  "limits { max_message_size = 99999999999999999999999 }\n",
	  "1: limits.max_message_size: \"99999999999999999999999\" is more "
	  "than the maximum, 1G" },
	{ "size: empty", "queue { map_size = \"\" }\n",
	  "1: queue.map_size: \"\" is not a size (use e.g. 25M)" },
	{ "size: map_size minimum", "queue { map_size = 64K }\n",
	  "1: queue.map_size: \"64K\" is less than the minimum, 1M" },
	{ "duration: not one", "limits { command_timeout = 5x }\n",
	  "1: limits.command_timeout: \"5x\" is not a duration (use e.g. "
	  "30s, 5m, 250ms)" },
	{ "duration: below minimum", "limits { command_timeout = 500ms }\n",
	  "1: limits.command_timeout: \"500ms\" is less than the minimum, "
	  "1s" },
	{ "duration: above maximum", "limits { data_timeout = 2h }\n",
	  "1: limits.data_timeout: \"2h\" is more than the maximum, 1h" },
	{ "duration: overflow", "auth_limit { window = 99999999999999999d }\n",
	  "1: auth_limit.window: \"99999999999999999d\" is more than the "
	  "maximum, 1d" },
	{ "duration: us only for commit_interval",
	  "limits { tls_handshake_timeout = 5000000us }\n",
	  "1: limits.tls_handshake_timeout: \"5000000us\" is not a duration "
	  "(use e.g. 30s, 5m, 250ms)" },
	{ "limits.long_lines: unknown mode",
	  "limits {\n\tlong_lines = fold\n}\n",
	  "2: limits.long_lines: \"fold\" is not one of reencode, reject" },
	{ "duration: commit_interval maximum",
	  "queue { commit_interval = 2s }\n",
	  "1: queue.commit_interval: \"2s\" is more than the maximum, 1s" },
	{ "count: negative", "limits { max_recipients = -1 }\n",
	  "1: limits.max_recipients: \"-1\" is not a whole number" },
	{ "count: zero", "limits { max_recipients = 0 }\n",
	  "1: limits.max_recipients: \"0\" is less than the minimum, 1" },
	{ "count: hex", "queue { commit_max_batch = 0x10 }\n",
	  "1: queue.commit_max_batch: \"0x10\" is not a whole number" },
	{ "threads: above 64", "smtp_threads = 65\n",
	  "1: smtp_threads: \"65\" is more than the maximum, 64" },
	{ "threads: huge", "worker_threads = 99999999999999999999999999\n",
	  "1: worker_threads: \"99999999999999999999999999\" is more than "
	  "the maximum, 64" },
	{ "per client above total",
	  "limits {\n\tmax_sessions = 10\n\tmax_sessions_per_client = 20\n}\n",
	  "3: limits.max_sessions_per_client (20) is more than "
	  "limits.max_sessions (10)" },
	{ "per client above total, other order",
	  "limits {\n\tmax_sessions_per_client = 20\n\n\tmax_sessions = 10\n"
	  "}\n",
	  "4: limits.max_sessions_per_client (20) is more than "
	  "limits.max_sessions (10)" },
	{ "delay base above max", "auth_limit {\n\tdelay_max = 100ms\n}\n",
	  "2: auth_limit.delay_base (250ms) is more than auth_limit.delay_max "
	  "(100ms)" },
	{ "per-user failures above per-address",
	  "auth_limit {\n\tmax_failures = 20\n\tmax_failures_per_address = "
	  "10\n}\n",
	  "3: auth_limit.max_failures (20) is more than "
	  "auth_limit.max_failures_per_address (10)" },
	{ "ipv6 prefix too short", "auth_limit { ipv6_prefix = 8 }\n",
	  "1: auth_limit.ipv6_prefix: \"8\" is less than the minimum, 16" },
	{ "ipv4 prefix too long", "auth_limit { ipv4_prefix = 33 }\n",
	  "1: auth_limit.ipv4_prefix: \"33\" is more than the maximum, 32" },

	{ "run_as root without allow_root", "\nrun_as = root\n",
	  "2: run_as = \"root\" needs allow_root = true: outpostd parses "
	  "untrusted input and should not keep root" },

	{ "hostname: underscore", "hostname = mta_1.example.com\n",
	  "1: hostname: \"mta_1.example.com\" may hold only letters, digits, "
	  "'-' and '.' (use the xn-- form for international names)" },
	{ "hostname: empty label", "hostname = \"mta..example.com\"\n",
	  "1: hostname: \"mta..example.com\" has an empty label" },
	{ "data_dir: empty", "data_dir = \"\"\n",
	  "1: data_dir: must not be empty" },
	{ "tls: bad version", "tls {\n\tmin_version = TLSv1.1\n}\n",
	  "2: tls.min_version: \"TLSv1.1\" is not one of TLSv1.2, TLSv1.3" },
	{ "tls: bad bool", "tls { generate = sometimes }\n",
	  "1: tls.generate: \"sometimes\" is not true or false" },
	{ "tls: empty cert path", "tls { cert_file = '' }\n",
	  "1: tls.cert_file: must not be empty" },

	{ "no listener", "hostname = mta.example.com\n",
	  " no listener: add one, e.g. listener \"127.0.0.1:2525\" { }" },
	{ "listener: port 0", "listener \"127.0.0.1:0\" { }\n",
	  "1: listener \"127.0.0.1:0\": port must be 1..65535" },
	{ "listener: port 65536", "listener \"[::1]:65536\" { }\n",
	  "1: listener \"[::1]:65536\": port must be 1..65535" },
	{ "listener: missing port", "listener \"127.0.0.1\" { }\n",
	  "1: listener \"127.0.0.1\": missing port (use e.g. "
	  "\"127.0.0.1:2525\")" },
	{ "listener: v6 without brackets", "listener \"::1:25\" { }\n",
	  "1: listener \"::1:25\": an IPv6 address needs brackets: "
	  "\"[::1]:2525\"" },
	{ "listener: a name", "listener \"localhost:25\" { }\n",
	  "1: listener \"localhost:25\": not an IPv4 address (names are not "
	  "resolved)" },
	{ "listener: error on the line of its brace",
	  "\n\nlistener \"x\" {\n\ttls = none\n}\n",
	  "3: listener \"x\": missing port (use e.g. \"127.0.0.1:2525\")" },
	{ "listener: empty title", "listener \"\" { }\n",
	  "1: listener \"\": not ADDR:PORT (use e.g. \"127.0.0.1:2525\" or "
	  "\"[::1]:2525\")" },
	{ "listener: no title", "listener { }\n",
	  "1: missing title for section 'listener'" },
	{ "listener: duplicate title",
	  "listener \"127.0.0.1:25\" { }\nlistener \"127.0.0.1:25\" { }\n",
	  "2: found duplicate title '127.0.0.1:25'" },
	{ "listener: same address spelt twice",
	  "listener \"[::1]:25\" { }\n\nlistener \"[0:0::1]:25\" { }\n",
	  "3: listener \"[0:0::1]:25\": same address as listener "
	  "\"[::1]:25\"" },
	{ "listener: auth_without_tls off loopback",
	  "listener \"0.0.0.0:587\" {\n\ttls = none\n\tauth_without_tls = "
	  "true\n}\n",
	  "3: listener \"0.0.0.0:587\": auth_without_tls = true is allowed "
	  "only on a loopback address (passwords would cross the network in "
	  "clear)" },
	{ "listener: auth_without_tls on a public v6",
	  "listener \"[2001:db8::1]:25\" { auth_without_tls = yes }\n",
	  "1: listener \"[2001:db8::1]:25\": auth_without_tls = true is "
	  "allowed only on a loopback address (passwords would cross the "
	  "network in clear)" },
	{ "listener: bad tls mode", "listener \"127.0.0.1:25\" { tls = ssl }\n",
	  "1: listener \"127.0.0.1:25\".tls: \"ssl\" is not one of starttls, "
	  "implicit, none" },
	{ "listener: bad bool", "listener \"127.0.0.1:25\" { auth = maybe }\n",
	  "1: listener \"127.0.0.1:25\".auth: \"maybe\" is not true or "
	  "false" },
	{ "listener: require_auth without auth",
	  "listener \"127.0.0.1:25\" {\n\tauth = false\n\trequire_auth = "
	  "true\n}\n",
	  "3: listener \"127.0.0.1:25\": require_auth = true needs auth = "
	  "true" },
	{ "listener: require_auth, AUTH never offered",
	  "listener \"0.0.0.0:25\" {\n\ttls = none\n\trequire_auth = true\n}\n",
	  "3: listener \"0.0.0.0:25\": require_auth = true, but with tls = "
	  "none and auth_without_tls = false AUTH is never offered" },
	{ "listener: cert without key",
	  "listener \"127.0.0.1:25\" {\n\tcert_file = a.crt\n}\n",
	  "2: listener \"127.0.0.1:25\": cert_file and key_file go together "
	  "(set both, or neither to use those of tls { })" },

	{ "relay: host bits", "relay {\n\tnetworks = { \"10.0.0.1/8\" }\n}\n",
	  "2: relay.networks: \"10.0.0.1/8\" has host bits set (did you mean "
	  "\"10.0.0.0/8\"?)" },
	{ "relay: v6 host bits",
	  "relay { networks = { \"::1/128\",\n\"2001:db8::1/32\" } }\n",
	  "2: relay.networks: \"2001:db8::1/32\" has host bits set (did you "
	  "mean \"2001:db8::/32\"?)" },
	{ "relay: prefix too long",
	  "relay { networks = { \"10.0.0.0/33\" } }\n",
	  "1: relay.networks: \"10.0.0.0/33\" prefix length must be 0..32" },
	{ "relay: v6 prefix too long", "relay { networks = { \"::/129\" } }\n",
	  "1: relay.networks: \"::/129\" prefix length must be 0..128" },
	{ "relay: prefix not a number",
	  "relay { networks = { \"10.0.0.0/x\" } }\n",
	  "1: relay.networks: \"10.0.0.0/x\" prefix length must be 0..32" },
	{ "relay: not a network", "relay { networks = { \"localhost\" } }\n",
	  "1: relay.networks: \"localhost\" not a network (use e.g. "
	  "\"10.0.0.0/8\" or \"2001:db8::/32\")" },
	{ "relay: empty item", "relay { networks = { \"\" } }\n",
	  "1: relay.networks: \"\" not a network (use e.g. \"10.0.0.0/8\" or "
	  "\"2001:db8::/32\")" },
	{ "relay: comment inside the list",
	  "relay {\n\tnetworks = {\n\t\t\"10.0.0.0/8\", # office\n"
	  "\t\t\"10.0.0.1/8\" // oops\n\t}\n}\n",
	  "4: relay.networks: \"10.0.0.1/8\" has host bits set (did you mean "
	  "\"10.0.0.0/8\"?)" },

	{ "user: bad hash",
	  LISTENER "user \"alice\" {\n\tpassword = \"secret\"\n"
		   "\tsender_domains = { \"example.com\" }\n}\n",
	  "3: user \"alice\".password: not an Argon2id hash "
	  "(\"$argon2id$...\"); make one with: outpost passwd alice" },
	{ "user: argon2i is not argon2id",
	  LISTENER
	  "user \"bob\" { password = \"$argon2i$v=19$m=1,t=1,p=1$x$y\" "
	  "}\n",
	  "2: user \"bob\".password: not an Argon2id hash "
	  "(\"$argon2id$...\"); make one with: outpost passwd bob" },
	{ "user: no password",
	  LISTENER "\nuser \"alice\" {\n\tsender_domains = { \"*\" }\n}\n",
	  "3: user \"alice\": password is missing; make one with: outpost "
	  "passwd alice" },
	{ "user: no sender_domains",
	  LISTENER "user \"alice\" {\n\tpassword = \"" HASH "\"\n}\n",
	  "2: user \"alice\": sender_domains is missing or empty (list the "
	  "domains this user may send from, or \"*\")" },
	{ "user: empty sender_domains",
	  LISTENER "user \"alice\" {\n\tpassword = \"" HASH "\"\n"
		   "\tsender_domains = { }\n}\n",
	  "2: user \"alice\": sender_domains is missing or empty (list the "
	  "domains this user may send from, or \"*\")" },
	{ "user: bad domain",
	  LISTENER "user \"alice\" {\n\tpassword = \"" HASH "\"\n"
		   "\tsender_domains = { \"example.com\",\n\"exa mple.com\" "
		   "}\n}\n",
	  "5: user \"alice\".sender_domains: \"exa mple.com\" may hold only "
	  "letters, digits, '-' and '.' (use the xn-- form for international "
	  "names)" },
	{ "user: hour quota too large",
	  LISTENER "user \"alice\" {\n\tpassword = \"" HASH "\"\n"
		   "\tsender_domains = { \"*\" }\n"
		   "\tmax_messages_per_hour = 100000001\n}\n",
	  "5: user \"alice\".max_messages_per_hour: \"100000001\" is more "
	  "than the maximum, 100000000" },
	{ "user: day quota not a number",
	  LISTENER "user \"alice\" {\n\tpassword = \"" HASH "\"\n"
		   "\tsender_domains = { \"*\" }\n"
		   "\tmax_messages_per_day = lots\n}\n",
	  "5: user \"alice\".max_messages_per_day: \"lots\" is not a whole "
	  "number" },
	{ "user: domain label starts with -",
	  LISTENER "user \"a\" { sender_domains = { \"-x.example\" } }\n",
	  "2: user \"a\".sender_domains: \"-x.example\" has a label starting "
	  "with '-'" },
	{ "user: domain with two dots",
	  LISTENER "user \"a\" { sender_domains = { \"..example.com\" } }\n",
	  "2: user \"a\".sender_domains: \"..example.com\" has an empty "
	  "label" },
	{ "user: domain is a dot",
	  LISTENER "user \"a\" { sender_domains = { \".\" } }\n",
	  "2: user \"a\".sender_domains: \".\" is not a domain name" },
	{ "user: wildcard label",
	  LISTENER "user \"a\" { sender_domains = { \"*.example.com\" } }\n",
	  "2: user \"a\".sender_domains: \"*.example.com\" may hold only "
	  "letters, digits, '-' and '.' (use the xn-- form for international "
	  "names)" },
	{ "user: empty name",
	  LISTENER "user \"\" {\n\tpassword = \"" HASH "\"\n"
		   "\tsender_domains = { \"*\" }\n}\n",
	  "2: user \"\": a user name is 1..255 printable characters, without "
	  "leading or trailing spaces" },
	{ "user: duplicate",
	  LISTENER "user \"a\" { password = \"" HASH "\" sender_domains = "
		   "\"*\" }\nuser \"a\" { }\n",
	  "3: found duplicate title 'a'" },

	{ "include: empty", "include()\n",
	  "1: include: expected include(\"FILE\")" },
	{ "include: two files", LISTENER "include(\"a\", \"b\")\n",
	  "2: include: expected include(\"FILE\")" },
	{ "include: unclosed", LISTENER "include(\"a\"\n",
	  "2: include: expected include(\"FILE\")" },
};

static void
test_errors(void **state)
{
	(void)state;
	CONF_TEST_ERROR_ROWS(error_rows);
}

/*
 * ---- configurations that must load ----
 * test_good is long on purpose: one file setting every key to a non-default
 * value, then one assertion per field.
 */

static void
test_good(void **state)
{
	char err[1024], path[PATH_MAX], want[PATH_MAX + 64];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(
	    load_text(
		"hostname = \"MTA-1.Example.com\"\n"
		"data_dir = \"/srv//outpost/./x/\"\n"
		"hash_key_file = \"/etc/outpost/loghash.key\"\n"
		"run_as = root  allow_root = true\n"
		"smtp_threads = 3  worker_threads = \"64\"\n"
		"tls {\n"
		"  cert_file = certs/a.pem  key_file = ../k.pem\n"
		"  ciphers = \"ECDHE+AESGCM\"  min_version = tlsv1.3\n"
		"  generate = yes\n"
		"}\n"
		"queue { map_size = 1M commit_interval = 500us "
		"commit_max_batch = 1 }\n"
		"limits {\n"
		"  max_message_size = 64KB  max_recipients = 100000\n"
		"  max_errors = 1  max_sessions = 5\n"
		"  max_sessions_per_client = 5  command_timeout = 1s\n"
		"  data_timeout = 60  tls_handshake_timeout = 10m\n"
		"  long_lines = Reject\n"
		"  max_errors = 3 # the last one wins\n"
		"}\n"
		"auth_limit {\n"
		"  max_failures = 1000  window = 1d  block = 7d\n"
		"  delay_max = 0  delay_base = 0ms  cache_ttl = 0\n"
		"  ipv6_prefix = 56  success_exempt = 0\n"
		"}\n"
		"listener \"[::ffff:127.0.0.1]:25\" {\n"
		"  tls = NONE  auth_without_tls = true  require_auth = on\n"
		"}\n"
		"listener \"[::1]:465\" {\n"
		"  tls = implicit  auth = false\n"
		"  cert_file = /etc/a.crt  key_file = b.key\n"
		"}\n"
		"listener \"0.0.0.0:2525\" { tls = none  auth = true }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_string_equal(err, "");
	assert_string_equal(c->hostname, "MTA-1.Example.com");
	assert_string_equal(c->data_dir, "/srv/outpost/x");
	assert_string_equal(c->hash_key_file, "/etc/outpost/loghash.key");
	assert_string_equal(c->user, "root");
	assert_true(c->allow_root);
	assert_int_equal(c->smtp_threads, 3);
	assert_int_equal(c->worker_threads, 64);
	assert_string_equal(c->tls.cert_file, "/srv/outpost/x/certs/a.pem");
	assert_string_equal(c->tls.key_file, "/srv/outpost/x/../k.pem");
	assert_string_equal(c->tls.ciphers, "ECDHE+AESGCM");
	assert_int_equal(c->tls.min_version, 0x0304);
	assert_true(c->tls.generate);
	assert_true(c->queue.map_size == 1u << 20);
	assert_int_equal(c->queue.commit_interval_us, 500);
	assert_int_equal(c->queue.commit_max_batch, 1);
	assert_true(c->limits.max_message_size == 64u << 10);
	assert_int_equal(c->limits.max_recipients, 100000);
	assert_int_equal(c->limits.max_errors, 3);
	assert_int_equal(c->limits.max_sessions, 5);
	assert_int_equal(c->limits.max_sessions_per_client, 5);
	assert_int_equal(c->limits.command_timeout_ms, 1000);
	assert_int_equal(c->limits.data_timeout_ms, 60000);
	assert_int_equal(c->limits.tls_handshake_timeout_ms, 600000);
	assert_int_equal(c->limits.long_lines, CONF_LONG_LINES_REJECT);
	assert_int_equal(c->auth_limit.max_failures, 1000);
	assert_int_equal(c->auth_limit.window_ms, 86400000);
	assert_int_equal(c->auth_limit.block_ms, 7 * 86400000);
	assert_int_equal(c->auth_limit.delay_base_ms, 0);
	assert_int_equal(c->auth_limit.delay_max_ms, 0);
	assert_int_equal(c->auth_limit.cache_ttl_ms, 0);
	/* Unset: follows a larger max_failures. */
	assert_int_equal(c->auth_limit.max_failures_per_address, 1000);
	assert_int_equal(c->auth_limit.ipv6_prefix, 56);
	assert_int_equal(c->auth_limit.success_exempt_ms, 0);

	assert_int_equal(c->nlisteners, 3);
	assert_int_equal(c->listeners[0].addr.ss_family, AF_INET6);
	assert_int_equal(c->listeners[0].tls, CONF_TLS_NONE);
	assert_true(c->listeners[0].auth_without_tls);
	assert_true(c->listeners[0].require_auth);
	assert_string_equal(c->listeners[1].name, "[::1]:465");
	assert_int_equal(c->listeners[1].tls, CONF_TLS_IMPLICIT);
	assert_false(c->listeners[1].auth);
	assert_string_equal(c->listeners[1].cert_file, "/etc/a.crt");
	assert_string_equal(c->listeners[1].key_file, "/srv/outpost/x/b.key");
	/* tls = none with AUTH only after TLS: AUTH is never offered, fine */
	assert_int_equal(c->listeners[2].tls, CONF_TLS_NONE);
	assert_true(c->listeners[2].auth);
	assert_false(c->listeners[2].auth_without_tls);
	assert_int_equal(c->nnetworks, 0);
	conf_free(c);

	/* CRLF line ends and a byte order mark */
	assert_int_equal(load_text("\xef\xbb\xbfhostname = a.example\r\n"
				   "listener \"127.0.0.1:25\" {\r\n"
				   "\ttls = none # x\r\n}\r\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_string_equal(c->hostname, "a.example");
	assert_int_equal(c->listeners[0].tls, CONF_TLS_NONE);
	conf_free(c);
	assert_int_equal(load_text(LISTENER "\r\n\r\nbogus = 1\r\n", &c, err,
				   sizeof(err), path, sizeof(path)),
			 -1);
	snprintf(want, sizeof(want), "%s:4: no such option 'bogus'", path);
	assert_string_equal(err, want);

	/* relative data_dir: from the working directory, cleaned */
	assert_int_equal(load_text(LISTENER "data_dir = \"./a/./b\"\n", &c, err,
				   sizeof(err), path, sizeof(path)),
			 0);
	cwd_join("a/b", path, sizeof(path));
	assert_string_equal(c->data_dir, path);
	conf_free(c);
}

static void
test_networks(void **state)
{
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(load_text(LISTENER
				   "relay {\n"
				   "  networks = {\n"
				   "    \"10.0.0.0/8\",      # office\n"
				   "    \"192.168.1.0/24\",  // lab\n"
				   "    \"2001:db8::/32\",   /* v6 */\n"
				   "    \"::ffff:172.16.0.0/108\",\n"
				   "    \"203.0.113.7\",\n"
				   "    \"2001:db8:ffff::1\",\n"
				   "  }\n"
				   "  networks += { \"100.64.0.0/10\" }\n"
				   "}\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_int_equal(c->nnetworks, 7);
	/* the v4-mapped network became 172.16.0.0/12 */
	assert_int_equal(c->networks[3].family, AF_INET);
	assert_int_equal(c->networks[3].prefix, 12);
	assert_int_equal(c->networks[4].prefix, 32);
	assert_int_equal(c->networks[5].prefix, 128);

	assert_true(match4(c, "10.0.0.0"));
	assert_true(match4(c, "10.255.255.255"));
	assert_false(match4(c, "11.0.0.0"));
	assert_false(match4(c, "9.255.255.255"));
	assert_true(match4(c, "192.168.1.200"));
	assert_false(match4(c, "192.168.2.1"));
	assert_true(match6(c, "2001:db8::1"));
	assert_true(match6(c, "2001:db8:ffff:ffff::1"));
	assert_false(match6(c, "2001:db9::1"));
	assert_true(match4(c, "172.16.5.5"));
	assert_true(match4(c, "172.31.255.255"));
	assert_false(match4(c, "172.32.0.0"));
	assert_true(match6(c, "::ffff:10.1.2.3")); /* v4-mapped: as v4 */
	assert_true(match6(c, "::ffff:172.20.0.1"));
	assert_false(match6(c, "::ffff:11.1.2.3"));
	assert_false(match6(c, "::10.1.2.3")); /* v4-compatible is not */
	assert_true(match4(c, "203.0.113.7"));
	assert_false(match4(c, "203.0.113.8"));
	assert_true(match4(c, "100.127.0.1"));
	assert_false(match4(c, "127.0.0.1"));
	assert_false(conf_network_match(c, AF_UNIX, "\0\0\0\0"));
	assert_false(conf_network_match(c, AF_INET, NULL));
	assert_false(conf_network_match(NULL, AF_INET, "\x0a\0\0\1"));
	conf_free(c);

	/* /0 matches one family only; an empty list matches nothing */
	assert_int_equal(load_text(LISTENER
				   "relay { networks = { \"0.0.0.0/0\" "
				   "} }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_true(match4(c, "198.51.100.1"));
	assert_true(match6(c, "::ffff:198.51.100.1"));
	assert_false(match6(c, "2001:db8::1"));
	conf_free(c);
	assert_int_equal(load_text(LISTENER "relay { networks = { } }\n", &c,
				   err, sizeof(err), path, sizeof(path)),
			 0);
	assert_int_equal(c->nnetworks, 0);
	assert_false(match4(c, "127.0.0.1"));
	conf_free(c);
}

static void
test_users(void **state)
{
	static const struct {
		const char *user;
		const char *domain;
		bool want;
	} rows[] = {
		{ "exact", "example.com", true },
		{ "exact", "EXAMPLE.com", true },
		{ "exact", "example.com.", true },
		{ "exact", "a.example.com", false },
		{ "exact", "badexample.com", false },
		{ "exact", "example.co", false },
		{ "exact", "other.org", true }, /* written "Other.ORG." */
		{ "exact", "", false },
		{ "sub", "a.example.com", true },
		{ "sub", "a.b.example.com", true },
		{ "sub", "example.com", false },
		{ "sub", "badexample.com", false },
		{ "sub", "xample.com", false },
		{ "both", "example.com", true },
		{ "both", "mail.example.com", true },
		{ "both", "example.net", false },
		{ "any", "example.com", true },
		{ "any", "x.y.z", true },
		{ "any", "", false },
	};
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_user *u;
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(
		LISTENER
		"user \"exact\" { password = \"" HASH "\"\n"
		"  sender_domains = { \"example.com\", \"Other.ORG.\" } }\n"
		"user \"sub\" { password = \"" HASH "\"\n"
		"  sender_domains = { \".example.com\" } }\n"
		"user \"both\" { password = \"" HASH "\"\n"
		"  sender_domains = { \".example.com\", \"example.com\" } }\n"
		"user \"any\" { password = \"" HASH
		"\" sender_domains = \"*\"\n"
		"  max_messages_per_hour = 100 max_messages_per_day = "
		"1000000000 }\n"
		"user \"Any\" { password = \"" HASH "\" sender_domains = "
		"\"example.org\" }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->nusers, 5);
	u = conf_user_find(c, "any");
	assert_int_equal(u->max_messages_per_hour, 100);
	assert_int_equal(u->max_messages_per_day, 1000000000);
	u = conf_user_find(c, "exact");
	assert_non_null(u);
	assert_int_equal(u->max_messages_per_hour, 0); /* none */
	assert_int_equal(u->max_messages_per_day, 0);
	assert_string_equal(u->password_hash, HASH);
	assert_int_equal(u->nsender_domains, 2);
	assert_string_equal(u->sender_domains[0], "example.com");
	assert_string_equal(u->sender_domains[1], "other.org");
	assert_null(u->sender_domains[2]);
	assert_ptr_not_equal(conf_user_find(c, "any"),
			     conf_user_find(c, "Any")); /* case-sensitive */
	assert_null(conf_user_find(c, "nobody"));
	assert_null(conf_user_find(c, "ANY"));
	assert_null(conf_user_find(c, NULL));
	assert_null(conf_user_find(NULL, "any"));
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char row[128];

		snprintf(row, sizeof(row), "%s may send %s", rows[i].user,
			 rows[i].domain);
		u = conf_user_find(c, rows[i].user);
		assert_non_null(u);
		CHECK_INT(row, conf_user_may_send(u, rows[i].domain),
			  rows[i].want);
	}
	assert_false(conf_user_may_send(NULL, "example.com"));
	assert_false(conf_user_may_send(conf_user_find(c, "any"), NULL));
	conf_free(c);
}

/* ---- include() ---- */

static void
test_include(void **state)
{
	char err[1024], main_path[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
	char want[3 * PATH_MAX];
	struct conf *c = NULL;
	int i;

	(void)state;
	mkdir_tmp("inc");
	mkdir_tmp("inc/d");
	/* relative to the including file's directory, nested, in sections */
	write_file("inc/d/b.conf", "# b\nmax_errors = 7\n", b, sizeof(b));
	write_file("inc/d/a.conf",
		   "# a: listeners\nlistener \"127.0.0.1:26\" { }\n"
		   "limits { include(\"b.conf\") }\n",
		   a, sizeof(a));
	write_file("inc/main.conf",
		   "# main\n" LISTENER "include(\"d/a.conf\")\nhostname = "
		   "\"x.example\"\n",
		   main_path, sizeof(main_path));
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), 0);
	assert_int_equal(c->nlisteners, 2);
	assert_string_equal(c->listeners[1].name, "127.0.0.1:26");
	assert_int_equal(c->limits.max_errors, 7);
	assert_string_equal(c->hostname, "x.example");
	conf_free(c);

	/* an error in an included file names that file and its line */
	write_file("inc/d/b.conf", "# b\n\n/* x\n*/ max_errors = 0\n", b,
		   sizeof(b));
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		 "%s:4: limits.max_errors: \"0\" is less than the minimum, 1",
		 b);
	assert_string_equal(err, want);

	/* ... and after the include, lines are the includer's again */
	write_file("inc/d/b.conf", "max_errors = 2\n", b, sizeof(b));
	write_file("inc/main.conf",
		   LISTENER
		   "include ( 'd/a.conf' ) hostname = x\n\nbogus = 1\n",
		   main_path, sizeof(main_path));
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:4: no such option 'bogus'", main_path);
	assert_string_equal(err, want);

	/* a missing file */
	write_file("inc/main.conf", LISTENER "\ninclude(\"nope.conf\")\n",
		   main_path, sizeof(main_path));
	for (i = 0; i < 12; i++) { /* and no state left behind by failures */
		assert_int_equal(conf_load(&c, main_path, err, sizeof(err)),
				 -1);
		snprintf(
		    want, sizeof(want),
		    "%s:3: include(\"nope.conf\"): %s/inc/nope.conf: No such "
		    "file or directory",
		    main_path, tmpdir);
		assert_string_equal(err, want);
	}

	/* a file including itself */
	write_file("inc/main.conf", LISTENER "include(\"main.conf\")\n",
		   main_path, sizeof(main_path));
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), -1);
	snprintf(
	    want, sizeof(want),
	    "%s/inc/main.conf:2: include(\"main.conf\"): nested more than 8 "
	    "deep (does a file include itself?)",
	    tmpdir);
	assert_string_equal(err, want);

	/* a directory */
	write_file("inc/main.conf", LISTENER "include(\"d\")\n", main_path,
		   sizeof(main_path));
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		 "%s:2: include(\"d\"): %s/inc/d: Is a directory", main_path,
		 tmpdir);
	assert_string_equal(err, want);

	/* absolute path; "include" as a value is just a word */
	snprintf(want, sizeof(want), "include(\"%s\")\nhostname = include\n",
		 a);
	write_file("inc/main.conf", want, main_path, sizeof(main_path));
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), 0);
	assert_string_equal(c->hostname, "include");
	assert_int_equal(c->limits.max_errors, 2);
	conf_free(c);

	/* still fine after all those failures */
	assert_int_equal(conf_load(&c, main_path, err, sizeof(err)), 0);
	conf_free(c);
}

/* ---- robustness ---- */

/* conf_check_host: key files and pool addresses, with file:line. */
static void
test_check_host(void **state)
{
	static const struct {
		const char *name;
		const char *key;  /* the key file's name under tmpdir */
		mode_t mode;      /* 0: not created */
		const char *addr; /* the pool's second source */
		const char *want; /* NULL: passes; else a piece of err */
		unsigned line;    /* of the error */
	} rows[] = {
		{ "good", "good.key", 0600, "127.0.0.2", NULL, 0 },
		{ "key 0644", "open.key", 0644, "127.0.0.2", "mode 0644", 4 },
		{ "key 0640", "group.key", 0640, "127.0.0.2", "mode 0640", 4 },
		{ "key missing", "missing.key", 0, "127.0.0.2", "No such file",
		  4 },
		/* RFC 3849 documentation address: never on this host; bind()
		 * fails, nothing is sent. */
		{ "address not here", "good.key", 0600, "2001:db8::1",
		  "not an address of this host", 8 },
	};
	char text[PATH_MAX + 1024], err[1024], path[PATH_MAX],
	    key[PATH_MAX + 64], want[64];
	struct conf *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (snprintf(key, sizeof(key), "%s/%s", tmpdir, rows[i].key) >=
		    (int)sizeof(key))
			fail_msg("path too long");
		if (rows[i].mode != 0) {
			write_file(rows[i].key, "not checked here\n", key,
				   sizeof(key));
			assert_int_equal(chmod(key, rows[i].mode), 0);
		}
		if (snprintf(text, sizeof(text),
			     LISTENER "dkim \"example.com\" {\n"
				      "\tselector = \"s1\"\n"
				      "\trsa_key = \"%s\"\n"
				      "}\n"
				      "pool \"default\" {\n"
				      "\tehlo = \"out.example.com\"\n"
				      "\tsource = { \"127.0.0.1\", \"%s\" }\n"
				      "}\n",
			     key, rows[i].addr) >= (int)sizeof(text))
			fail_msg("config too long");
		c = NULL;
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("row %s: %s", rows[i].name, err);
		snprintf(want, sizeof(want), ":%u", 4u);
		assert_non_null(c->dkims[0].rsa_key_at);
		assert_non_null(strstr(c->dkims[0].rsa_key_at, want));
		err[0] = '\0';
		if (rows[i].want == NULL) {
			if (conf_check_host(c, err, sizeof(err)) != 0)
				fail_msg("row %s: %s", rows[i].name, err);
		} else {
			assert_int_equal(conf_check_host(c, err, sizeof(err)),
					 -1);
			snprintf(want, sizeof(want),
				 "test.conf:%u: ", rows[i].line);
			if (strstr(err, want) == NULL ||
			    strstr(err, rows[i].want) == NULL)
				fail_msg("row %s: \"%s\" lacks %s or %s",
					 rows[i].name, err, want, rows[i].want);
		}
		conf_free(c);
	}
}

static void
test_missing_file(void **state)
{
	char err[1024], want[PATH_MAX + 64], path[PATH_MAX];
	struct conf *c = (struct conf *)&c;

	(void)state;
	tmp_path("does-not-exist.conf", path, sizeof(path));
	assert_int_equal(conf_load(&c, path, err, sizeof(err)), -1);
	assert_null(c);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);
	assert_int_equal(conf_load(NULL, path, err, sizeof(err)), -1);
}

static void
test_garbage(void **state)
{
	static const char *const rows[] = {
		"",
		"{",
		"}",
		"=",
		"= = =",
		"+=",
		"*",
		"listener",
		"listener \"",
		"listener \"a\"",
		"listener \"127.0.0.1:25\" {",
		"listener \"127.0.0.1:25\" { { } }",
		"listener \"127.0.0.1:25\" } {",
		"limits { limits { } }",
		"limits = 5",
		"hostname { }",
		"hostname = { \"a\", \"b\" }",
		"hostname += \"a\"",
		"include(",
		"include(\"\")",
		"include('')",
		"include(\"a\" \"b\")",
		"include",
		"${",
		"${OUTPOST_CONF_TEST_UNSET}",
		"hostname = ${OUTPOST_CONF_TEST_UNSET}",
		"\"\"",
		"''",
		"'",
		"hostname = ''",
		"smtp_threads = ''",
		"smtp_threads = { }",
		"relay { networks = }",
		"relay { networks = { , } }",
		"relay { networks = { \"10.0.0.0/8\" \"10.0.0.0/8\" } }",
		"relay \"x\" { }",
		"user \"x\" { sender_domains = { \"\" } }",
		"user \"x\" { password = }",
		"tls { generate = \"\" }",
		"/* */ /* /* */ */",
		"// x\n//",
		"#",
		"\\",
		"\"\\",
		"listener \"127.0.0.1:25\" { tls = \"\\x00\" }",
		"listener \"\\n\" { }",
	};
	char err[1024], path[PATH_MAX];
	char big[20000];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct conf *c = NULL;

		CHECK_INT(rows[i],
			  load_text(rows[i], &c, err, sizeof(err), path,
				    sizeof(path)),
			  -1);
		assert_null(c);
		if (strncmp(err, path, strlen(path)) != 0 ||
		    strchr(err, '\n') != NULL)
			CHECK_STR(rows[i], err, "PATH: one line");
	}

	/* a NUL byte */
	{
		struct conf *c = NULL;
		char want[PATH_MAX + 64];

		write_bytes("nul.conf", LISTENER "x\0y", sizeof(LISTENER) + 3,
			    path, sizeof(path));
		assert_int_equal(conf_load(&c, path, err, sizeof(err)), -1);
		snprintf(want, sizeof(want),
			 "%s:2: NUL byte (is this a text file?)", path);
		assert_string_equal(err, want);
	}

	/* a long title: the message is cut short, not overrun */
	{
		struct conf *c = NULL;
		char small[24];
		int n;

		n = snprintf(big, sizeof(big), "listener \"");
		memset(big + n, '9', sizeof(big) - (size_t)n - 8);
		snprintf(big + sizeof(big) - 8, 8, "\" { }\n");
		assert_int_equal(
		    load_text(big, &c, err, sizeof(err), path, sizeof(path)),
		    -1);
		assert_true(strlen(err) < sizeof(err));
		assert_int_equal(strncmp(err, path, strlen(path)), 0);
		assert_int_equal(conf_load(&c, path, small, sizeof(small)), -1);
		assert_true(strlen(small) == sizeof(small) - 1);
		assert_int_equal(conf_load(&c, path, NULL, 0), -1);
		assert_null(c);
	}
}

/* ---- the shipped example ---- */

static void
test_example(void **state)
{
	char err[1024];
	struct conf *c = NULL;
	const struct conf_user *u;

	(void)state;
	if (conf_load(&c, OUTPOST_CONF_EXAMPLE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c->hostname, "mta.example.com");
	assert_string_equal(c->data_dir, "/var/lib/outpost");
	assert_string_equal(c->hash_key_file,
			    "/var/lib/outpost/keys/loghash.key");
	assert_int_equal(c->smtp_threads, cpus());
	assert_true(c->tls.generate);
	assert_string_equal(c->tls.ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20");
	assert_string_equal(c->queue.path, "/var/lib/outpost/queue");
	assert_true(c->limits.max_message_size == 25u << 20);
	assert_int_equal(c->auth_limit.delay_max_ms, 4000);
	assert_int_equal(c->nnetworks, 2);
	assert_int_equal(c->nlisteners, 3);
	assert_true(c->listeners[0].auth_without_tls);
	assert_int_equal(c->listeners[1].addr.ss_family, AF_INET6);
	assert_int_equal(c->listeners[2].tls, CONF_TLS_IMPLICIT);
	assert_true(c->listeners[2].require_auth);
	assert_string_equal(c->listeners[2].cert_file,
			    "/var/lib/outpost/keys/submission.crt");
	assert_int_equal(c->nusers, 1);
	u = conf_user_find(c, "campaigns");
	assert_non_null(u);
	assert_true(conf_user_may_send(u, "news.example.com"));
	assert_false(conf_user_may_send(u, "example.org"));
	conf_free(c);
}

/* ---- conf_load() from several threads at once ---- */

static void *
load_loop(void *arg)
{
	const char *path = arg;
	char err[512];
	int i;

	for (i = 0; i < 25; i++) {
		struct conf *c = NULL;

		if (conf_load(&c, path, err, sizeof(err)) != 0 ||
		    c->nlisteners != 3)
			return (void *)1;
		conf_free(c);
		if (conf_load(&c, NULL, err, sizeof(err)) != 0)
			return (void *)1;
		conf_free(c);
	}
	return NULL;
}

static void
test_concurrent_loads(void **state)
{
	pthread_t t[4];
	void *rv;
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_create(&t[i], NULL, load_loop,
						(void *)OUTPOST_CONF_EXAMPLE),
				 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_null(rv);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_embedded),
		cmocka_unit_test(test_defaults_file),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_networks),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_check_host),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_example),
		cmocka_unit_test(test_concurrent_loads),
	};

	return cmocka_run_group_tests(tests, conf_test_setup,
				      conf_test_teardown);
}
