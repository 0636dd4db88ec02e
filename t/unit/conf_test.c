/*
 * conf_test.c — unit tests of conf/: every default, the value scanners,
 * listeners, relay networks, users, includes, the delivery sections (dns,
 * delivery, destination, pool, route), the signing sections (dkim,
 * dkim_sign, dmarc, dkim_domain), the observe sections (log, metrics,
 * control and its access blocks) and their lookups, and the exact
 * "file:line: message" of each error.  Configuration snippets go to files in a
 * temporary directory, removed at the end.  Single-threaded except
 * test_concurrent_loads.
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

#ifndef OUTPOST_CONF_EXAMPLE
#error "OUTPOST_CONF_EXAMPLE (path of conf/outpost.conf) must be defined"
#endif

#define HASH                                                                   \
	"$argon2id$v=19$m=65536,t=2,p=1$OuGYReqC87YKYieWV2EQnQ$SkS390hcLiEOIh" \
	"oSJZb8V7Mji4KkcS+2wTyLMzQ1PIs"
#define LISTENER "listener \"127.0.0.1:2525\" { }\n"

static char tmpdir[PATH_MAX];
static char *made[64]; /* files and directories to remove, in order */
static size_t nmade;

/* A failed row names itself, then cmocka reports file:line. */
#define CHECK_STR(row, got, want)                                              \
	do {                                                                   \
		const char *g_ = (got), *w_ = (want);                          \
		if (g_ == NULL || strcmp(g_, w_) != 0) {                       \
			print_error("%s:\n  got  \"%s\"\n  want \"%s\"\n",     \
				    (row), g_ != NULL ? g_ : "(null)", w_);    \
			fail();                                                \
		}                                                              \
	} while (0)

#define CHECK_INT(row, got, want)                                              \
	do {                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);       \
		if (g_ != w_) {                                                \
			print_error("%s: got %lld, want %lld\n", (row), g_,    \
				    w_);                                       \
			fail();                                                \
		}                                                              \
	} while (0)

static void
remember(const char *path)
{
	size_t i;

	for (i = 0; i < nmade; i++) {
		if (strcmp(made[i], path) == 0)
			return;
	}
	assert_true(nmade < sizeof(made) / sizeof(made[0]));
	made[nmade] = strdup(path);
	assert_non_null(made[nmade]);
	nmade++;
}

/* tmpdir/NAME; directories on the way are made. */
static void
tmp_path(const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", tmpdir, name);

	assert_true(n > 0 && (size_t)n < len);
}

static void
mkdir_tmp(const char *name)
{
	char p[PATH_MAX];

	tmp_path(name, p, sizeof(p));
	if (mkdir(p, 0700) != 0)
		assert_int_equal(errno, EEXIST);
	remember(p);
}

static void
write_bytes(const char *name, const char *text, size_t len, char *path,
	    size_t pathlen)
{
	FILE *fp;

	tmp_path(name, path, pathlen);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	remember(path);
}

static void
write_file(const char *name, const char *text, char *path, size_t pathlen)
{
	write_bytes(name, text, strlen(text), path, pathlen);
}

/* Write TEXT to tmpdir/test.conf and load it. */
static int
load_text(const char *text, struct conf **c, char *err, size_t errlen,
	  char *path, size_t pathlen)
{
	write_file("test.conf", text, path, pathlen);
	return conf_load(c, path, err, errlen);
}

static int
group_setup(void **state)
{
	const char *base = getenv("TMPDIR");
	int n;

	(void)state;
	n = snprintf(tmpdir, sizeof(tmpdir), "%s/conf_test.XXXXXX",
		     base != NULL && *base != '\0' ? base : "/tmp");
	if (n < 0 || (size_t)n >= sizeof(tmpdir) || mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = nmade; i > 0; i--) {
		if (unlink(made[i - 1]) != 0)
			rmdir(made[i - 1]);
		free(made[i - 1]);
	}
	nmade = 0;
	return rmdir(tmpdir);
}

static void
cwd_join(const char *rel, char *buf, size_t len)
{
	char cwd[PATH_MAX];
	int n;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	n = snprintf(buf, len, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, rel);
	assert_true(n > 0 && (size_t)n < len);
}

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

static const struct {
	const char *name;
	const char *in;
	const char *want; /* after "PATH:" */
} error_rows[] = {
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
	char err[1024], path[PATH_MAX], want[PATH_MAX + 600];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++) {
		struct conf *c = (struct conf *)&c; /* must become NULL */

		CHECK_INT(error_rows[i].name,
			  load_text(error_rows[i].in, &c, err, sizeof(err),
				    path, sizeof(path)),
			  -1);
		assert_null(c);
		snprintf(want, sizeof(want), "%s:%s", path, error_rows[i].want);
		CHECK_STR(error_rows[i].name, err, want);
	}
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
		"\" sender_domains = \"*\" }\n"
		"user \"Any\" { password = \"" HASH "\" sender_domains = "
		"\"example.org\" }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->nusers, 5);
	u = conf_user_find(c, "exact");
	assert_non_null(u);
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
	assert_int_equal(d->nsuspend_on, 0);
	assert_null(d->suspend_on);
	assert_null(d->suspend_re);
	assert_true(d->suspend_for_ms == 600000);
	assert_true(d->backoff_pause_ms == 60000);
	assert_true(d->backoff_max_ms == 1800000);
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
static const struct {
	const char *name;
	const char *in;
	const char *want; /* after "PATH:" */
} deliver_error_rows[] = {
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
	{ "delivery.max_connections: zero",
	  L "delivery { max_connections = 0 }\n",
	  "2: delivery.max_connections: \"0\" is less than the minimum, 1" },
	{ "delivery.max_connections: above maximum",
	  L "delivery { max_connections = 1000001 }\n",
	  "2: delivery.max_connections: \"1000001\" is more than the maximum, "
	  "1000000" },
	{ "delivery.tls_ca_file: control character",
	  L "delivery { tls_ca_file = \"a\\tb\" }\n",
	  "2: delivery.tls_ca_file: contains a control character" },
	{ "delivery.tls_ca_path: control character",
	  L "delivery {\n\ttls_ca_path = \"a\\nb\"\n}\n",
	  "3: delivery.tls_ca_path: contains a control character" },

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
	  "may, encrypt, verify" },
	{ "destination.tls: the listener's word",
	  L "destination \"*\" { tls = starttls }\n",
	  "2: destination \"*\".tls: \"starttls\" is not one of none, may, "
	  "encrypt, verify" },
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
	char err[1024], path[PATH_MAX], want[PATH_MAX + 600];
	size_t i;

	(void)state;
	for (i = 0;
	     i < sizeof(deliver_error_rows) / sizeof(deliver_error_rows[0]);
	     i++) {
		struct conf *c = (struct conf *)&c; /* must become NULL */

		CHECK_INT(deliver_error_rows[i].name,
			  load_text(deliver_error_rows[i].in, &c, err,
				    sizeof(err), path, sizeof(path)),
			  -1);
		assert_null(c);
		snprintf(want, sizeof(want), "%s:%s", path,
			 deliver_error_rows[i].want);
		CHECK_STR(deliver_error_rows[i].name, err, want);
	}
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
		      "  max_connections = 1000000\n"
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
	assert_string_equal(d->tls_ca_file, "/etc/ssl/ca.pem");
	assert_string_equal(d->tls_ca_path, "/srv/outpost/ca.d");
	conf_free(c);

	/* the other ends of the ranges; "+=" extends the default list */
	assert_int_equal(
	    load_text(LISTENER "dns { timeout = 1m tries = 1 "
			       "cache_size = 10000000\n"
			       "  min_ttl = 1d max_ttl = 1d "
			       "negative_ttl_max = 1d }\n"
			       "delivery { port = 65535 connect_timeout = 10m\n"
			       "  greeting_timeout = 1s command_timeout = 1h "
			       "data_timeout = 1s\n"
			       "  idle_timeout = 10m max_age = 1s "
			       "retry_jitter = 0\n"
			       "  retry_intervals += { 4h, 1d }\n"
			       "  relay_host = \"Smart.Example.NET:587\"\n"
			       "  max_connections = 1\n"
			       "  tls_ca_file = \"\" tls_ca_path = \"\" }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->dns.timeout_ms, 60000);
	assert_int_equal(c->dns.tries, 1);
	assert_int_equal(c->dns.cache_size, 10000000);
	assert_int_equal(c->dns.min_ttl_s, 86400);
	assert_int_equal(c->dns.max_ttl_s, 86400);
	assert_int_equal(c->dns.negative_ttl_max_s, 86400);
	d = &c->delivery;
	assert_int_equal(d->port, 65535);
	assert_int_equal(d->connect_timeout_ms, 600000);
	assert_int_equal(d->greeting_timeout_ms, 1000);
	assert_int_equal(d->command_timeout_ms, 3600000);
	assert_int_equal(d->data_timeout_ms, 1000);
	assert_int_equal(d->idle_timeout_ms, 600000);
	assert_true(d->max_age_ms == 1000);
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
		{ "10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.1:53,10.0.0.2:53,"
						"10.0.0.3:53" },
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
		conf_free(c);
	}
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
		"}\n"
		"destination \".example.com\" {\n"
		"  suspend_on = { }  tls = NONE  backoff_max = 1d\n"
		"}\n"
		"destination \"Example.COM.\" { max_messages_per_hour = 0 }\n"
		"destination \".sub.example.com\" { backoff_pause = 4h }\n"
		"destination \"only.example.com\" { suspend_on += \"x\" }\n"
		"destination \".example.org\" { }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_int_equal(c->ndestinations, 6);

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
		"relay { networks = { \"10.0.0.0/8\" } pool = transact }\n"
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
				   "relay { networks = \"10.0.0.0/8\" }\n",
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

/* ---- signing and alignment: dkim, dkim_sign, dmarc, dkim_domain ---- */

/* The signing half of every tree whose file leaves it out. */
static void
check_dkim_defaults(const struct conf *c)
{
	size_t i;

	assert_int_equal(c->ndkims, 0);
	assert_null(c->dkims);
	assert_null(c->dkims_by_domain);
	assert_null(conf_dkim_find(c, "example.com"));
	assert_int_equal(c->dkim_sign.hcanon, CONF_CANON_RELAXED);
	assert_int_equal(c->dkim_sign.bcanon, CONF_CANON_RELAXED);
	assert_null(c->dkim_sign.headers);
	assert_int_equal(c->dkim_sign.nheaders, 0);
	assert_null(c->dkim_sign.oversign);
	assert_int_equal(c->dkim_sign.noversign, 0);
	assert_true(c->dkim_sign.expire_ms == 0);
	assert_true(c->dkim_sign.timestamp);
	assert_true(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_REJECT);
	assert_null(c->dmarc.psl_file);
	assert_null(c->relay_dkim_fallback);
	assert_false(c->relay_allow_unaligned);
	for (i = 0; i < c->nusers; i++) {
		assert_null(c->users[i].dkim_fallback);
		assert_false(c->users[i].allow_unaligned);
	}
}

static void
test_dkim_defaults(void **state)
{
	char err[512], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	check_dkim_defaults(c);
	conf_free(c);
	assert_int_equal(load_text(LISTENER "user \"u\" { password = \"" HASH
					    "\"\n"
					    "  sender_domains = \"*\" }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_int_equal(c->nusers, 1);
	check_dkim_defaults(c);
	conf_free(c);
	/* empty sections change nothing */
	assert_int_equal(load_text(LISTENER "dkim_sign { }\ndmarc { }\n"
					    "relay { }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	check_dkim_defaults(c);
	conf_free(c);
}

#define L  LISTENER
#define U  "user \"u\" {\n\tpassword = \"" HASH "\"\n\tsender_domains = \"*\"\n"
#define DK "dkim \"esp.example\" { selector = s1  rsa_key = k.pem }\n"
static const struct {
	const char *name;
	const char *in;
	const char *want; /* after "PATH:" */
} dkim_error_rows[] = {
	/* dkim "DOMAIN" */
	{ "dkim: no title", L "dkim { selector = s1 rsa_key = k }\n",
	  "2: missing title for section 'dkim'" },
	{ "dkim: unknown key", L "dkim \"a.example\" {\n\tkey = k.pem\n}\n",
	  "3: dkim \"a.example\": no such option 'key'" },
	{ "dkim: star", L "dkim \"*\" { selector = s1 rsa_key = k }\n",
	  "2: dkim \"*\": a dkim section is for one signing domain (d=); for "
	  "a fallback signing domain set dkim_domain in user or relay" },
	{ "dkim: star with a dot", L "dkim \"*.\" { }\n",
	  "2: dkim \"*.\": a dkim section is for one signing domain (d=); for "
	  "a fallback signing domain set dkim_domain in user or relay" },
	{ "dkim: subdomains", L "\ndkim \".A.example\" {\n}\n",
	  "3: dkim \".A.example\": a dkim section is for one signing domain "
	  "(d=): write \"a.example\" (under relaxed DMARC alignment it covers "
	  "mail from its subdomains)" },
	{ "dkim: wildcard label", L "dkim \"*.a.example\" { }\n",
	  "2: dkim \"*.a.example\": a dkim section is for one signing domain "
	  "(d=): write \"a.example\" (under relaxed DMARC alignment it covers "
	  "mail from its subdomains)" },
	{ "dkim: bad domain", L "dkim \"a_b.example\" { }\n",
	  "2: dkim \"a_b.example\": the domain may hold only letters, digits, "
	  "'-' and '.' (use the xn-- form for international names)" },
	{ "dkim: empty title", L "dkim \"\" { }\n",
	  "2: dkim \"\": the domain is empty" },
	{ "dkim: empty label", L "dkim \"a..example\" { }\n",
	  "2: dkim \"a..example\": the domain has an empty label" },
	{ "dkim: a dot", L "dkim \".\" { }\n",
	  "2: dkim \".\": the domain has an empty label" },
	{ "dkim: label ends in -", L "dkim \"a-.example\" { }\n",
	  "2: dkim \"a-.example\": the domain has a label ending in '-'" },
	{ "dkim: duplicate title",
	  L "dkim \"a.example\" { selector = s1 rsa_key = k }\n"
	    "dkim \"a.example\" { selector = s1 rsa_key = k }\n",
	  "3: found duplicate title 'a.example'" },
	{ "dkim: duplicate in another case",
	  L "dkim \"a.example\" { selector = s1 rsa_key = k }\n\n"
	    "dkim \"A.Example\" { selector = s2 rsa_key = k2 }\n",
	  "4: dkim \"A.Example\": the same domain as dkim \"a.example\"" },
	{ "dkim: duplicate with a trailing dot",
	  L "dkim \"a.example.\" { selector = s1 rsa_key = k }\n"
	    "dkim \"a.example\" {\n\tselector = s1 rsa_key = k\n}\n",
	  "3: dkim \"a.example\": the same domain as dkim \"a.example.\"" },
	{ "dkim: the first repeat in file order, not in sorted order",
	  L "dkim \"z.example\" { selector = s rsa_key = k }\n"
	    "dkim \"a.example\" { selector = s rsa_key = k }\n"
	    "dkim \"Z.example\" { selector = s rsa_key = k }\n"
	    "dkim \"A.example\" { selector = s rsa_key = k }\n"
	    "dkim \"z.EXAMPLE\" { selector = s rsa_key = k }\n",
	  "4: dkim \"Z.example\": the same domain as dkim \"z.example\"" },
	{ "dkim: no key", L "\ndkim \"a.example\" {\n}\n",
	  "3: dkim \"a.example\": no key (set selector and rsa_key, and/or "
	  "ed25519_selector and ed25519_key)" },
	{ "dkim: selectors only",
	  L "dkim \"a.example\" {\n\tselector = s1\n"
	    "\ted25519_selector = s2\n}\n",
	  "2: dkim \"a.example\": no key (set selector and rsa_key, and/or "
	  "ed25519_selector and ed25519_key)" },
	{ "dkim: rsa_key without selector",
	  L "dkim \"a.example\" {\n\trsa_key = \"k.pem\"\n}\n",
	  "3: dkim \"a.example\": rsa_key needs selector (its public key is "
	  "published at SELECTOR._domainkey.a.example)" },
	{ "dkim: ed25519_key without ed25519_selector",
	  L "dkim \"A.Example\" {\n\tselector = s1 rsa_key = r.pem\n"
	    "\ted25519_key = \"e.pem\"\n}\n",
	  "4: dkim \"A.Example\": ed25519_key needs ed25519_selector (its "
	  "public key is published at SELECTOR._domainkey.a.example)" },
	{ "dkim: selector for an Ed25519 key",
	  L "dkim \"a.example\" {\n\tselector = s1\n\ted25519_key = e.pem\n"
	    "}\n",
	  "3: dkim \"a.example\": selector is set but rsa_key is not "
	  "(selector names the record of the RSA key; the Ed25519 key's is "
	  "ed25519_selector)" },
	{ "dkim: ed25519_selector without ed25519_key",
	  L "dkim \"a.example\" {\n\tselector = s1 rsa_key = r.pem\n\n"
	    "\ted25519_selector = s2\n}\n",
	  "5: dkim \"a.example\": ed25519_selector is set but ed25519_key is "
	  "not (ed25519_selector names the record of the Ed25519 key)" },
	{ "dkim: one selector for both keys",
	  L "dkim \"a.example\" {\n\tselector = s1\n\trsa_key = r.pem\n"
	    "\ted25519_key = e.pem\n\ted25519_selector = s1\n}\n",
	  "6: dkim \"a.example\": RSA and Ed25519 keys need different "
	  "selectors (one TXT record per selector)" },
	{ "dkim: one selector for both keys, in another case",
	  L "dkim \"a.example\" {\n\ted25519_selector = Sel.2024\n"
	    "\tselector = sel.2024\n\trsa_key = r.pem\n\ted25519_key = e.pem\n"
	    "}\n",
	  "4: dkim \"a.example\": RSA and Ed25519 keys need different "
	  "selectors (one TXT record per selector)" },
	{ "dkim: one file for both keys",
	  L "dkim \"a.example\" {\n\tselector = s1 ed25519_selector = s2\n"
	    "\ted25519_key = \"/k/./k.pem\"\n\trsa_key = \"/k/k.pem\"\n}\n",
	  "5: dkim \"a.example\": rsa_key and ed25519_key are the same file "
	  "(each key has a file of its own)" },
	{ "dkim.selector: underscore",
	  L "dkim \"a.example\" {\n\tselector = \"s_1\"\n}\n",
	  "3: dkim \"a.example\".selector: \"s_1\" may hold only letters, "
	  "digits, '-' and '.' (use the xn-- form for international names)" },
	{ "dkim.selector: empty", L "dkim \"a.example\" { selector = \"\" }\n",
	  "2: dkim \"a.example\".selector: \"\" is empty" },
	{ "dkim.selector: trailing dot",
	  L "dkim \"a.example\" { selector = \"s1.\" }\n",
	  "2: dkim \"a.example\".selector: \"s1.\" ends with a dot" },
	{ "dkim.selector: empty label",
	  L "dkim \"a.example\" { selector = \"s1..x\" }\n",
	  "2: dkim \"a.example\".selector: \"s1..x\" has an empty label" },
	{ "dkim.selector: leading -",
	  L "dkim \"a.example\" { selector = \"-s1\" }\n",
	  "2: dkim \"a.example\".selector: \"-s1\" has a label starting with "
	  "'-'" },
	{ "dkim.selector: space",
	  L "dkim \"a.example\" { selector = \"s 1\" }\n",
	  "2: dkim \"a.example\".selector: \"s 1\" may hold only letters, "
	  "digits, '-' and '.' (use the xn-- form for international names)" },
	{ "dkim.ed25519_selector: label of 64",
	  L "dkim \"a.example\" { ed25519_selector = \"x.aaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" }\n",
	  "2: dkim \"a.example\".ed25519_selector: \"x.aaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" has a label longer "
	  "than 63 characters" },
	{ "dkim.ed25519_selector: trailing -",
	  L "dkim \"a.example\" { ed25519_selector = \"ed-\" }\n",
	  "2: dkim \"a.example\".ed25519_selector: \"ed-\" has a label ending "
	  "in '-'" },
	{ "dkim.rsa_key: empty", L "dkim \"a.example\" { rsa_key = \"\" }\n",
	  "2: dkim \"a.example\".rsa_key: must not be empty" },
	{ "dkim.ed25519_key: control character",
	  L "dkim \"a.example\" {\n\ted25519_key = \"a\\tb\"\n}\n",
	  "3: dkim \"a.example\".ed25519_key: contains a control character" },

	/* dkim_sign */
	{ "dkim_sign: unknown key", L "dkim_sign {\n\tcanon = relaxed\n}\n",
	  "3: dkim_sign: no such option 'canon'" },
	{ "dkim_sign: titled", L "dkim_sign \"x\" { }\n",
	  "2: missing opening brace for section 'dkim_sign'" },
	{ "dkim_sign.canonicalization: half",
	  L "dkim_sign { canonicalization = \"relaxed/\" }\n",
	  "2: dkim_sign.canonicalization: \"relaxed/\" is not one of "
	  "relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple, "
	  "relaxed, simple" },
	{ "dkim_sign.canonicalization: nowsp",
	  L "dkim_sign {\n\tcanonicalization = nowsp\n}\n",
	  "3: dkim_sign.canonicalization: \"nowsp\" is not one of "
	  "relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple, "
	  "relaxed, simple" },
	{ "dkim_sign.canonicalization: spaces",
	  L "dkim_sign { canonicalization = \"relaxed / relaxed\" }\n",
	  "2: dkim_sign.canonicalization: \"relaxed / relaxed\" is not one of "
	  "relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple, "
	  "relaxed, simple" },
	{ "dkim_sign.headers: empty name",
	  L "dkim_sign { headers = { \"From\", \"\" } }\n",
	  "2: dkim_sign.headers: an empty name" },
	{ "dkim_sign.headers: with its colon",
	  L "dkim_sign {\n\theaders = { \"From\",\n\t\t\"Subject:\" }\n}\n",
	  "4: dkim_sign.headers: \"Subject:\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: a space",
	  L "dkim_sign { headers = { \"From\", \"Reply To\" } }\n",
	  "2: dkim_sign.headers: \"Reply To\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: not ASCII",
	  L "dkim_sign { headers = { \"From\", \"S\xc3\xbc"
	    "bject\" } }\n",
	  "2: dkim_sign.headers: \"S\xc3\xbc"
	  "bject\" is not a header field "
	  "name (printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: a tab",
	  L "dkim_sign { headers = { \"From\", \"X\\tY\" } }\n",
	  "2: dkim_sign.headers: \"X?Y\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: listed twice",
	  L "dkim_sign {\n\theaders = { \"From\", \"to\",\n\t\t\"To\" }\n}\n",
	  "4: dkim_sign.headers: \"To\" is listed twice (as \"to\"; names are "
	  "not case-sensitive)" },
	{ "dkim_sign.headers: listed twice across +=",
	  L "dkim_sign {\n\theaders = { \"From\" }\n"
	    "\theaders += { \"FROM\" }\n}\n",
	  "4: dkim_sign.headers: \"FROM\" is listed twice (as \"From\"; names "
	  "are not case-sensitive)" },
	{ "dkim_sign.headers: no From",
	  L "dkim_sign {\n\theaders = { \"To\",\n\t\t\"Subject\" }\n}\n",
	  "4: dkim_sign.headers: \"From\" is missing (RFC 6376 5.4: the From "
	  "field is always signed)" },
	{ "dkim_sign.headers: empty", L "dkim_sign {\n\theaders = { }\n\n}\n",
	  "5: dkim_sign.headers: \"From\" is missing (RFC 6376 5.4: the From "
	  "field is always signed)" },
	{ "dkim_sign.headers: += without From",
	  L "dkim_sign {\n\theaders += { \"To\" }\n}\n",
	  "3: dkim_sign.headers: \"From\" is missing (RFC 6376 5.4: the From "
	  "field is always signed)" },
	{ "dkim_sign.oversign: bad name",
	  L "dkim_sign { oversign = { \"From\", \"a:b\" } }\n",
	  "2: dkim_sign.oversign: \"a:b\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.oversign: listed twice",
	  L "dkim_sign { oversign = { \"subject\", \"Subject\" } }\n",
	  "2: dkim_sign.oversign: \"Subject\" is listed twice (as \"subject\"; "
	  "names are not case-sensitive)" },
	{ "dkim_sign.expire: below one minute",
	  L "dkim_sign {\n\texpire = 30s\n}\n",
	  "3: dkim_sign.expire: \"30s\" is less than the minimum, 1m (or 0 for "
	  "no x= tag)" },
	{ "dkim_sign.expire: 59", L "dkim_sign { expire = 59 }\n",
	  "2: dkim_sign.expire: \"59\" is less than the minimum, 1m (or 0 for "
	  "no x= tag)" },
	{ "dkim_sign.expire: above maximum", L "dkim_sign { expire = 366d }\n",
	  "2: dkim_sign.expire: \"366d\" is more than the maximum, 365d" },
	{ "dkim_sign.expire: overflow",
	  L "dkim_sign { expire = 99999999999999999999d }\n",
	  "2: dkim_sign.expire: \"99999999999999999999d\" is more than the "
	  "maximum, 365d" },
	{ "dkim_sign.expire: not whole seconds",
	  L "dkim_sign { expire = 90500ms }\n",
	  "2: dkim_sign.expire: \"90500ms\" is not a whole number of seconds" },
	{ "dkim_sign.expire: not a duration",
	  L "dkim_sign { expire = never }\n",
	  "2: dkim_sign.expire: \"never\" is not a duration (use e.g. 30s, 5m, "
	  "1h)" },
	{ "dkim_sign.expire: negative", L "dkim_sign { expire = -1 }\n",
	  "2: dkim_sign.expire: \"-1\" is not a duration (use e.g. 30s, 5m, "
	  "1h)" },
	{ "dkim_sign.timestamp: bad bool",
	  L "dkim_sign { timestamp = sometimes }\n",
	  "2: dkim_sign.timestamp: \"sometimes\" is not true or false" },

	/* dmarc */
	{ "dmarc: unknown key", L "dmarc {\n\tpolicy = reject\n}\n",
	  "3: dmarc: no such option 'policy'" },
	{ "dmarc.action: quarantine", L "dmarc { action = quarantine }\n",
	  "2: dmarc.action: \"quarantine\" is not one of reject, hold, "
	  "accept" },
	{ "dmarc.action: empty", L "dmarc {\n\taction = \"\"\n}\n",
	  "3: dmarc.action: \"\" is not one of reject, hold, accept" },
	{ "dmarc.check: bad bool", L "dmarc { check = perhaps }\n",
	  "2: dmarc.check: \"perhaps\" is not true or false" },
	{ "dmarc.psl_file: control character",
	  L "dmarc { psl_file = \"psl\\n.dat\" }\n",
	  "2: dmarc.psl_file: contains a control character" },

	/* dkim_domain and allow_unaligned of user and relay */
	{ "user.dkim_domain: undefined",
	  L U "\tdkim_domain = \"esp.example\"\n}\n",
	  "5: user \"u\".dkim_domain: no dkim \"esp.example\" is defined (add "
	  "dkim \"esp.example\" { selector = ...  rsa_key = ... })" },
	{ "user.dkim_domain: a subdomain of a dkim section",
	  L DK U "\tdkim_domain = \"News.ESP.example\"\n}\n",
	  "6: user \"u\".dkim_domain: no dkim \"news.esp.example\" is defined "
	  "(add dkim \"news.esp.example\" { selector = ...  rsa_key = ... })" },
	{ "user.dkim_domain: star", L DK U "\tdkim_domain = \"*\"\n}\n",
	  "6: user \"u\".dkim_domain: \"*\" may hold only letters, digits, '-' "
	  "and '.' (use the xn-- form for international names)" },
	{ "user.dkim_domain: subdomains",
	  L DK U "\tdkim_domain = \".esp.example\"\n}\n",
	  "6: user \"u\".dkim_domain: \".esp.example\" has an empty label" },
	{ "user.dkim_domain: empty", L U "\tdkim_domain = \"\"\n}\n",
	  "5: user \"u\".dkim_domain: \"\" is empty" },
	{ "user.dkim_domain: too long",
	  L U
	  "\tdkim_domain = \""
	  "a.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "\"\n}\n",
	  "5: user \"u\".dkim_domain: \"a.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaa\" is longer than 253 characters" },
	{ "user.allow_unaligned: without dkim_domain",
	  L U "\n\tallow_unaligned = true\n}\n",
	  "6: user \"u\": allow_unaligned = true needs dkim_domain (the "
	  "fallback signing domain it lets sign unaligned mail)" },
	{ "user.allow_unaligned: bad bool",
	  L DK U "\tdkim_domain = esp.example\n\tallow_unaligned = often\n}\n",
	  "7: user \"u\".allow_unaligned: \"often\" is not true or false" },
	{ "relay.dkim_domain: undefined",
	  L DK "relay {\n\tdkim_domain = \"esp.example.net\"\n}\n",
	  "4: relay.dkim_domain: no dkim \"esp.example.net\" is defined (add "
	  "dkim \"esp.example.net\" { selector = ...  rsa_key = ... })" },
	{ "relay.dkim_domain: bad domain",
	  L "relay { dkim_domain = \"esp..example\" }\n",
	  "2: relay.dkim_domain: \"esp..example\" has an empty label" },
	{ "relay.allow_unaligned: without dkim_domain",
	  L DK "relay {\n\tnetworks = \"10.0.0.0/8\"\n\tallow_unaligned = yes\n"
	       "}\n",
	  "5: relay: allow_unaligned = true needs dkim_domain (the fallback "
	  "signing domain it lets sign unaligned mail)" },
	{ "relay.allow_unaligned: bad bool",
	  L "relay { allow_unaligned = 2 }\n",
	  "2: relay.allow_unaligned: \"2\" is not true or false" },
};
#undef DK
#undef U
#undef L

static void
test_dkim_errors(void **state)
{
	char err[1024], path[PATH_MAX], want[PATH_MAX + 600];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(dkim_error_rows) / sizeof(dkim_error_rows[0]);
	     i++) {
		struct conf *c = (struct conf *)&c; /* must become NULL */

		CHECK_INT(dkim_error_rows[i].name,
			  load_text(dkim_error_rows[i].in, &c, err, sizeof(err),
				    path, sizeof(path)),
			  -1);
		assert_null(c);
		snprintf(want, sizeof(want), "%s:%s", path,
			 dkim_error_rows[i].want);
		CHECK_STR(dkim_error_rows[i].name, err, want);
	}
}

static void
test_dkim_good(void **state)
{
	static const struct {
		const char *domain;
		const char *want; /* the section's domain; NULL: none */
	} rows[] = {
		{ "shop.example", "shop.example" },
		{ "SHOP.Example", "shop.example" },
		{ "shop.example.", "shop.example" },
		{ "esp.example", "esp.example" },
		{ "both.example", "both.example" },
		{ "a.shop.example", NULL }, /* exact only */
		{ "xshop.example", NULL },
		{ "shop.exampl", NULL },
		{ "example", NULL },
		{ "", NULL },
		{ ".", NULL },
		{ ".shop.example", NULL },
	};
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_dkim *d;
	const struct conf_dkim_sign *s;
	const struct conf_user *u;
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(
		LISTENER
		"data_dir = /srv/outpost\n"
		/* references before the sections they name */
		"user \"a\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  dkim_domain = \"ESP.Example.\"  allow_unaligned = yes }\n"
		"user \"b\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  dkim_domain = shop.example }\n"
		"user \"c\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  allow_unaligned = false }\n"
		"relay { networks = \"10.0.0.0/8\"  dkim_domain = esp.example\n"
		"  allow_unaligned = on }\n"
		"dkim \"Shop.Example\" {\n"
		"  selector = \"S1\"  rsa_key = \"keys/shop.pem\"\n"
		"}\n"
		"dkim \"esp.example.\" {\n"
		"  ed25519_selector = \"ed.2024-1\"\n"
		"  ed25519_key = \"/etc/dkim//esp.ed\"\n"
		"}\n"
		"dkim \"both.example\" {\n"
		"  selector = a  rsa_key = r.pem\n"
		"  ed25519_selector = b  ed25519_key = e.pem\n"
		"}\n"
		"dkim_sign {\n"
		"  canonicalization = SIMPLE/relaxed\n"
		"  headers = { \"From\", \"subject\", \"X-Campaign-ID\" }\n"
		"  headers += { \"List-Unsubscribe\" }\n"
		"  oversign = { }\n"
		"  expire = 7d  timestamp = false\n"
		"}\n"
		"dmarc { check = no  action = HOLD\n"
		"  psl_file = \"psl/public_suffix_list.dafsa\" }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_string_equal(err, "");
	/* no key file exists: they are named, not opened */
	assert_int_equal(c->ndkims, 3);
	d = &c->dkims[0];
	assert_string_equal(d->domain, "shop.example");
	assert_string_equal(d->selector, "S1");
	assert_string_equal(d->rsa_key, "/srv/outpost/keys/shop.pem");
	assert_null(d->ed25519_selector);
	assert_null(d->ed25519_key);
	d = &c->dkims[1];
	assert_string_equal(d->domain, "esp.example");
	assert_null(d->selector);
	assert_null(d->rsa_key);
	assert_string_equal(d->ed25519_selector, "ed.2024-1");
	assert_string_equal(d->ed25519_key, "/etc/dkim/esp.ed");
	d = &c->dkims[2];
	assert_string_equal(d->selector, "a");
	assert_string_equal(d->rsa_key, "/srv/outpost/r.pem");
	assert_string_equal(d->ed25519_selector, "b");
	assert_string_equal(d->ed25519_key, "/srv/outpost/e.pem");
	for (i = 0; i < 3; i++)
		assert_non_null(c->dkims_by_domain[i]);

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		d = conf_dkim_find(c, rows[i].domain);
		if (rows[i].want == NULL) {
			CHECK_INT(rows[i].domain, d == NULL, 1);
			continue;
		}
		CHECK_INT(rows[i].domain, d != NULL, 1);
		CHECK_STR(rows[i].domain, d->domain, rows[i].want);
		CHECK_INT(rows[i].domain,
			  d >= c->dkims && d < c->dkims + c->ndkims, 1);
	}
	assert_null(conf_dkim_find(c, NULL));
	assert_null(conf_dkim_find(NULL, "shop.example"));

	u = conf_user_find(c, "a");
	assert_ptr_equal(u->dkim_fallback, &c->dkims[1]);
	assert_true(u->allow_unaligned);
	u = conf_user_find(c, "b");
	assert_ptr_equal(u->dkim_fallback, &c->dkims[0]);
	assert_false(u->allow_unaligned);
	u = conf_user_find(c, "c");
	assert_null(u->dkim_fallback);
	assert_false(u->allow_unaligned);
	assert_ptr_equal(c->relay_dkim_fallback, &c->dkims[1]);
	assert_true(c->relay_allow_unaligned);

	s = &c->dkim_sign;
	assert_int_equal(s->hcanon, CONF_CANON_SIMPLE);
	assert_int_equal(s->bcanon, CONF_CANON_RELAXED);
	assert_int_equal(s->nheaders, 4);
	assert_string_equal(s->headers[0], "From");
	assert_string_equal(s->headers[1], "subject");
	assert_string_equal(s->headers[2], "X-Campaign-ID");
	assert_string_equal(s->headers[3], "List-Unsubscribe");
	assert_null(s->headers[4]);
	/* set to nothing: not NULL (the built-in list), an empty one */
	assert_non_null(s->oversign);
	assert_int_equal(s->noversign, 0);
	assert_null(s->oversign[0]);
	assert_true(s->expire_ms == (uint64_t)7 * 86400000);
	assert_false(s->timestamp);

	assert_false(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_HOLD);
	assert_string_equal(c->dmarc.psl_file,
			    "/srv/outpost/psl/public_suffix_list.dafsa");
	conf_free(c);

	/* the other ends: expire 1m and 365d, accept, "" for the PSL */
	assert_int_equal(
	    load_text(
		LISTENER
		"dkim_sign { expire = 1m  oversign = { \"From\" }\n"
		"  headers = { \"from\" } }\n"
		"dmarc { action = accept  psl_file = \"\"  check = true }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_true(c->dkim_sign.expire_ms == 60000);
	assert_int_equal(c->dkim_sign.nheaders, 1);
	assert_int_equal(c->dkim_sign.noversign, 1);
	assert_string_equal(c->dkim_sign.oversign[0], "From");
	assert_null(c->dkim_sign.oversign[1]);
	assert_true(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_ACCEPT);
	assert_null(c->dmarc.psl_file);
	conf_free(c);
	assert_int_equal(
	    load_text(LISTENER "dkim_sign { expire = 365d }\n"
			       "dmarc { action = reject psl_file = /a.dat }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_true(c->dkim_sign.expire_ms == (uint64_t)365 * 86400000);
	assert_int_equal(c->dmarc.action, CONF_DMARC_REJECT);
	assert_string_equal(c->dmarc.psl_file, "/a.dat");
	conf_free(c);
}

static void
test_dkim_canon(void **state)
{
	static const struct {
		const char *in;
		enum conf_canon h, b;
	} rows[] = {
		{ "relaxed/relaxed", CONF_CANON_RELAXED, CONF_CANON_RELAXED },
		{ "relaxed/simple", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
		{ "simple/relaxed", CONF_CANON_SIMPLE, CONF_CANON_RELAXED },
		{ "simple/simple", CONF_CANON_SIMPLE, CONF_CANON_SIMPLE },
		/* RFC 6376 3.5: one word is the header's; the body's simple */
		{ "relaxed", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
		{ "simple", CONF_CANON_SIMPLE, CONF_CANON_SIMPLE },
		{ "Relaxed/Relaxed", CONF_CANON_RELAXED, CONF_CANON_RELAXED },
		{ "RELAXED", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
	};
	char err[1024], path[PATH_MAX], text[512];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text),
			 LISTENER "dkim_sign { canonicalization = \"%s\" }\n",
			 rows[i].in);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].in, err);
		CHECK_INT(rows[i].in, c->dkim_sign.hcanon, rows[i].h);
		CHECK_INT(rows[i].in, c->dkim_sign.bcanon, rows[i].b);
		conf_free(c);
	}
}

/* One past each limit: the list's size, a selector's DNS name. */
static void
test_dkim_limits(void **state)
{
	static const char *const keys[] = { "headers", "oversign" };
	char err[1024], path[PATH_MAX], want[PATH_MAX + 800];
	char text[4096], dom[256], sel[64];
	struct conf *c = NULL;
	size_t i, len;
	unsigned k, n;
	int rc;

	(void)state;
	for (i = 0; i < 2; i++) {
		for (n = 64; n <= 65; n++) {
			len = (size_t)snprintf(
			    text, sizeof(text),
			    "%sdkim_sign { %s = {\n\"From\",\n", LISTENER,
			    keys[i]);
			for (k = 1; k < n; k++)
				len += (size_t)snprintf(text + len,
							sizeof(text) - len,
							"\"X-H%u\",\n", k);
			snprintf(text + len, sizeof(text) - len, "} }\n");
			rc = load_text(text, &c, err, sizeof(err), path,
				       sizeof(path));
			if (n == 64) {
				if (rc != 0)
					fail_msg("%s: %u names: %s", keys[i], n,
						 err);
				conf_free(c);
				continue;
			}
			CHECK_INT(keys[i], rc, -1);
			/* name N+1 is on line 2 + N + 1 */
			snprintf(want, sizeof(want),
				 "%s:%u: dkim_sign.%s: more than 64 names",
				 path, n + 2, keys[i]);
			CHECK_STR(keys[i], err, want);
		}
	}

	/* a name of 128, of 129 */
	memset(sel, 0, sizeof(sel));
	for (n = 128; n <= 129; n++) {
		len = (size_t)snprintf(text, sizeof(text),
				       "%sdkim_sign { headers = { From, \"",
				       LISTENER);
		memset(text + len, 'X', n);
		snprintf(text + len + n, sizeof(text) - len - n, "\" } }\n");
		rc = load_text(text, &c, err, sizeof(err), path, sizeof(path));
		if (n == 128) {
			if (rc != 0)
				fail_msg("a name of 128: %s", err);
			assert_int_equal(strlen(c->dkim_sign.headers[1]), 128);
			conf_free(c);
			continue;
		}
		snprintf(want, sizeof(want),
			 "%s:2: dkim_sign.headers: a name longer than 128 "
			 "characters",
			 path);
		CHECK_STR("a name of 129", err, want);
	}

	/* SELECTOR._domainkey.DOMAIN: 253 is fine, 254 is not */
	snprintf(
	    dom, sizeof(dom), "%.63s.%.63s.%.63s.example",
	    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	    "ccc",
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbb",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaa");
	assert_int_equal(strlen(dom), 199);
	for (n = 42; n <= 43; n++) { /* 42 + 12 + 199 = 253 */
		memset(sel, 's', n);
		sel[n] = '\0';
		snprintf(text, sizeof(text),
			 "%sdkim \"%s\" {\n\ted25519_selector = \"%s\"\n"
			 "\ted25519_key = k\n}\n",
			 LISTENER, dom, sel);
		rc = load_text(text, &c, err, sizeof(err), path, sizeof(path));
		if (n == 42) {
			if (rc != 0)
				fail_msg("selector of 42: %s", err);
			conf_free(c);
			continue;
		}
		snprintf(want, sizeof(want),
			 "%s:3: dkim \"%s\".ed25519_selector: "
			 "\"%s._domainkey.%s\" would be longer than 253 "
			 "characters",
			 path, dom, sel, dom);
		CHECK_STR("selector of 43", err, want);
	}
}

/* An ESP's worth of dkim sections: found by the index, repeats caught. */
static void
test_dkim_many(void **state)
{
	enum { N = 3000 };
	char err[1024], path[PATH_MAX], want[PATH_MAX + 200], name[64];
	struct conf *c = NULL;
	const struct conf_dkim *d;
	size_t len, cap = (size_t)N * 80 + 1024;
	char *text = malloc(cap);
	unsigned i, k;

	(void)state;
	assert_non_null(text);
	len = (size_t)snprintf(text, cap, "%s", LISTENER);
	/* not in sorted order: d<k>.example with k a permutation of 0..N-1 */
	for (i = 0; i < N; i++) {
		k = (i * 1009u) % N;
		len += (size_t)snprintf(text + len, cap - len,
					"dkim \"D%u.example\" { selector = s%u "
					"rsa_key = k%u }\n",
					k, k, k);
	}
	assert_true(len < cap - 200);
	assert_int_equal(
	    load_text(text, &c, err, sizeof(err), path, sizeof(path)), 0);
	assert_int_equal(c->ndkims, N);
	for (i = 0; i < N; i++) {
		k = (i * 1009u) % N;
		snprintf(name, sizeof(name), "d%u.example", k);
		d = conf_dkim_find(c, name);
		CHECK_INT(name, d == &c->dkims[i], 1);
		CHECK_STR(name, c->dkims[i].domain, name);
		CHECK_INT(name,
			  i == 0 || strcmp(c->dkims_by_domain[i - 1]->domain,
					   c->dkims_by_domain[i]->domain) < 0,
			  1);
	}
	assert_null(conf_dkim_find(c, "d3000.example"));
	conf_free(c);

	/* the same domain again, last: an error on its line */
	snprintf(text + len, cap - len,
		 "dkim \"d1009.example.\" { selector = s rsa_key = k }\n");
	assert_int_equal(
	    load_text(text, &c, err, sizeof(err), path, sizeof(path)), -1);
	snprintf(want, sizeof(want),
		 "%s:%u: dkim \"d1009.example.\": the same domain as dkim "
		 "\"D1009.example\"",
		 path, N + 2);
	assert_string_equal(err, want);
	free(text);
}

static void
test_example_dkim(void **state)
{
	char err[1024];
	struct conf *c = NULL;
	const struct conf_dkim *d, *esp;
	const struct conf_user *u;

	(void)state;
	if (conf_load(&c, OUTPOST_CONF_EXAMPLE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c->ndkims, 2);
	d = conf_dkim_find(c, "example.com");
	assert_non_null(d);
	assert_string_equal(d->selector, "s2024");
	assert_string_equal(d->rsa_key,
			    "/var/lib/outpost/keys/dkim/example.com.s2024.key");
	assert_string_equal(d->ed25519_selector, "s2024e");
	assert_string_equal(
	    d->ed25519_key,
	    "/var/lib/outpost/keys/dkim/example.com.s2024e.key");
	esp = conf_dkim_find(c, "esp.example");
	assert_non_null(esp);
	assert_null(esp->ed25519_key);
	u = conf_user_find(c, "campaigns");
	assert_ptr_equal(u->dkim_fallback, esp);
	assert_false(u->allow_unaligned);
	assert_ptr_equal(c->relay_dkim_fallback, esp);
	assert_false(c->relay_allow_unaligned);
	/* the example shows the defaults, but for the header lists */
	assert_int_equal(c->dkim_sign.hcanon, CONF_CANON_RELAXED);
	assert_int_equal(c->dkim_sign.bcanon, CONF_CANON_RELAXED);
	assert_int_equal(c->dkim_sign.nheaders, 17);
	assert_string_equal(c->dkim_sign.headers[0], "From");
	assert_int_equal(c->dkim_sign.noversign, 4);
	assert_string_equal(c->dkim_sign.oversign[3], "List-Unsubscribe-Post");
	assert_true(c->dkim_sign.expire_ms == 0);
	assert_true(c->dkim_sign.timestamp);
	assert_true(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_REJECT);
	assert_null(c->dmarc.psl_file);
	conf_free(c);
}

/* ---- observe: log, metrics, control ---- */

/* The observe half of every tree whose file leaves it out. */
static void
check_observe_defaults(const struct conf *c)
{
	char want[PATH_MAX + 64];
	const struct sockaddr_in *sin;

	cwd_join("var/log/delivery.log", want, sizeof(want));
	assert_string_equal(c->log.delivery_file, want);
	cwd_join("var/log/audit.log", want, sizeof(want));
	assert_string_equal(c->log.audit_file, want);
	assert_true(c->log.disk_reserve == 256u << 20);
	assert_int_equal(c->log.disk_reserve_percent, 1);

	assert_string_equal(c->metrics.listen, "127.0.0.1:9025");
	assert_int_equal(c->metrics.addr.ss_family, AF_INET);
	assert_int_equal(c->metrics.addrlen, sizeof(struct sockaddr_in));
	sin = (const struct sockaddr_in *)&c->metrics.addr;
	assert_int_equal(ntohs(sin->sin_port), 9025);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);

	cwd_join("var/control.sock", want, sizeof(want));
	assert_string_equal(c->control.socket, want);
	/* no access section: root, and only root, may do everything */
	assert_int_equal(c->control.naccess, 1);
	assert_string_equal(c->control.access[0].name, "root");
	assert_int_equal(c->control.access[0].uid, 0);
	assert_int_equal(c->control.access[0].rights, CONF_RIGHTS_ALL);
	assert_int_equal(conf_rights_for_uid(c, 0), 0xf);
	assert_int_equal(conf_rights_for_uid(c, 1), 0);
	assert_int_equal(conf_rights_for_uid(c, 65534), 0);
	assert_int_equal(conf_rights_for_uid(c, (uid_t)-1), 0);
}

static void
test_observe_defaults(void **state)
{
	static const char *const files[] = {
		LISTENER,
		/* empty sections change nothing */
		LISTENER "log { }\nmetrics { }\ncontrol { }\n",
	};
	char err[512], path[PATH_MAX];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	check_observe_defaults(c);
	conf_free(c);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (load_text(files[i], &c, err, sizeof(err), path,
			      sizeof(path)) != 0)
			fail_msg("%s: %s", files[i], err);
		check_observe_defaults(c);
		conf_free(c);
	}
	assert_int_equal(conf_rights_for_uid(NULL, 0), 0);
}

#define L        LISTENER
#define DISTINCT " (each log, and the control socket, needs a file of its own)"
#define WHO      " (a local user name, or a uid such as \"1001\")"
static const struct {
	const char *name;
	const char *in;
	const char *want; /* after "PATH:" */
} observe_error_rows[] = {
	/* log */
	{ "log: unknown key", L "log {\n\tfile = x\n}\n",
	  "3: log: no such option 'file'" },
	{ "log.disk_reserve: not a size", L "log {\n\tdisk_reserve = lots\n}\n",
	  "3: log.disk_reserve: \"lots\" is not a size (use e.g. 25M)" },
	{ "log.disk_reserve_percent: above maximum",
	  L "log { disk_reserve_percent = 60 }\n",
	  "2: log.disk_reserve_percent: \"60\" is more than the maximum, 50" },
	{ "log: titled", L "log \"x\" { }\n",
	  "2: missing opening brace for section 'log'" },
	{ "log.delivery_file: a directory",
	  L "log { delivery_file = \"log/\" }\n",
	  "2: log.delivery_file: \"log/\" names a directory, not a file" },
	{ "log.audit_file: a dot", L "log {\n\taudit_file = \".\"\n}\n",
	  "3: log.audit_file: \".\" names a directory, not a file" },
	{ "log.audit_file: two dots",
	  L "log { audit_file = \"/var/log/..\" }\n",
	  "2: log.audit_file: \"/var/log/..\" names a directory, not a file" },
	{ "log.delivery_file: control character",
	  L "log { delivery_file = \"a\\tb\" }\n",
	  "2: log.delivery_file: contains a control character" },
	{ "log: one file for both logs",
	  L "log {\n\taudit_file = \"log/delivery.log\"\n}\n",
	  "3: log.audit_file: the same file as log.delivery_file" DISTINCT },
	{ "log: one file spelt twice, on the later line",
	  L "data_dir = /srv\nlog {\n\taudit_file = \"/srv//a.log\"\n\n"
	    "\tdelivery_file = \"./a.log\"\n}\n",
	  "6: log.delivery_file: the same file as log.audit_file" DISTINCT },
	{ "control.socket: a log file",
	  L "log { audit_file = \"run/x\" }\ncontrol {\n"
	    "\tsocket = \"run//x\"\n}\n",
	  "4: control.socket: the same file as log.audit_file" DISTINCT },
	{ "control.socket: a log file written later",
	  L "control {\n\tsocket = \"s\"\n}\nlog { delivery_file = s }\n",
	  "5: log.delivery_file: the same file as control.socket" DISTINCT },
	{ "control.socket: the default of a log file",
	  L "control { socket = \"log/audit.log\" }\n",
	  "2: control.socket: the same file as log.audit_file" DISTINCT },

	/* metrics */
	{ "metrics: unknown key", L "metrics {\n\tport = 9025\n}\n",
	  "3: metrics: no such option 'port'" },
	{ "metrics.listen: missing port",
	  L "metrics { listen = \"127.0.0.1\" }\n",
	  "2: metrics.listen: \"127.0.0.1\": missing port (use e.g. "
	  "\"127.0.0.1:2525\")" },
	{ "metrics.listen: v6 missing port",
	  L "metrics { listen = \"[::1]\" }\n",
	  "2: metrics.listen: \"[::1]\": missing port (use e.g. "
	  "\"[::1]:2525\")" },
	{ "metrics.listen: a name",
	  L "metrics {\n\tlisten = \"localhost:9025\"\n}\n",
	  "3: metrics.listen: \"localhost:9025\": not an IPv4 address (names "
	  "are not resolved)" },
	{ "metrics.listen: v6 without brackets",
	  L "metrics { listen = \"::1:9025\" }\n",
	  "2: metrics.listen: \"::1:9025\": an IPv6 address needs brackets: "
	  "\"[::1]:2525\"" },
	{ "metrics.listen: port 0", L "metrics { listen = \"127.0.0.1:0\" }\n",
	  "2: metrics.listen: \"127.0.0.1:0\": port must be 1..65535" },
	{ "metrics.listen: port 65536",
	  L "metrics { listen = \"[::1]:65536\" }\n",
	  "2: metrics.listen: \"[::1]:65536\": port must be 1..65535" },
	{ "metrics.listen: a listener's address",
	  L "\nmetrics {\n\tlisten = \"127.0.0.1:2525\"\n}\n",
	  "4: metrics.listen: \"127.0.0.1:2525\": the same address as listener "
	  "\"127.0.0.1:2525\"" },
	{ "metrics.listen: a listener's address spelt otherwise",
	  "listener \"[::1]:25\" { }\nmetrics { listen = \"[0::1]:25\" }\n",
	  "2: metrics.listen: \"[0::1]:25\": the same address as listener "
	  "\"[::1]:25\"" },
	{ "metrics.listen: the default is a listener's address",
	  L "\nlistener \"127.0.0.1:9025\" {\n}\n",
	  "3: listener \"127.0.0.1:9025\": the same address as metrics.listen "
	  "(\"127.0.0.1:9025\" by default; set metrics { listen = ... } to "
	  "another address, or to \"\" for none)" },

	/* control */
	{ "control: unknown key", L "control {\n\tpath = x\n}\n",
	  "3: control: no such option 'path'" },
	{ "control.socket: empty", L "control {\n\tsocket = \"\"\n}\n",
	  "3: control.socket: must not be empty (outpost, the CLI, reaches the "
	  "daemon through it)" },
	{ "control.socket: a directory", L "control { socket = \"run/\" }\n",
	  "2: control.socket: \"run/\" names a directory, not a file" },
	{ "control.socket: control character",
	  L "control { socket = \"a\\nb\" }\n",
	  "2: control.socket: contains a control character" },
	{ "access: outside control", L "access \"root\" { rights = read }\n",
	  "2: no such option 'access'" },
	{ "access: no title", L "control {\n\taccess { rights = read }\n}\n",
	  "3: control: missing title for section 'access'" },
	{ "access: unknown key",
	  L "control {\n\taccess \"root\" {\n"
	    "\t\tright = read\n\t}\n}\n",
	  "4: control.access \"root\": no such option 'right'" },
	{ "access: empty title",
	  L "control {\n\taccess \"\" { rights = read }\n}\n",
	  "3: control.access \"\": the title is empty" WHO },
	{ "access: unknown user",
	  L "control {\n\taccess \"no-such-user.outpost\" {\n"
	    "\t\trights = read\n\t}\n}\n",
	  "3: control.access \"no-such-user.outpost\": no such user" WHO },
	{ "control.group: unknown group",
	  L "control {\n\tgroup = \"no-such-group.outpost\"\n}\n",
	  "3: control.group \"no-such-group.outpost\": no such group (a local "
	  "group name, or a gid such as \"1001\")" },
	{ "control.group: gid (gid_t)-1",
	  L "control { group = \"4294967295\" }\n",
	  "2: control.group: a gid is at most 4294967294" },
	{ "control.group: empty", L "control { group = \"\" }\n",
	  "2: control.group: must not be empty" },
	{ "access: a negative uid", L "control { access \"-1\" { } }\n",
	  "2: control.access \"-1\": no such user" WHO },
	{ "access: uid (uid_t)-1",
	  L "control { access \"4294967295\" { rights = { } } }\n",
	  "2: control.access \"4294967295\": a uid is at most 4294967294" },
	{ "access: uid overflow",
	  L "control { access \"99999999999999999999999\" { } }\n",
	  "2: control.access \"99999999999999999999999\": a uid is at most "
	  "4294967294" },
	{ "access: the same title twice",
	  L "control {\n\taccess \"root\" { rights = read }\n"
	    "\taccess \"root\" { rights = write }\n}\n",
	  "4: control: found duplicate title 'root'" },
	{ "access: the same uid by name and number",
	  L "control {\n\taccess \"root\" { rights = read }\n\n"
	    "\taccess \"0\" {\n\t\trights = write\n\t}\n}\n",
	  "5: control.access \"0\": the same uid (0) as control.access "
	  "\"root\"" },
	{ "access: the same uid spelt twice",
	  L "control {\n\taccess \"1001\" { rights = read }\n"
	    "\taccess \"7\" { rights = read }\n"
	    "\taccess \"01001\" { rights = { } }\n}\n",
	  "5: control.access \"01001\": the same uid (1001) as control.access "
	  "\"1001\"" },
	{ "access: rights missing",
	  L "control {\n\taccess \"root\" { rights = read }\n"
	    "\taccess \"1001\" {\n\t}\n}\n",
	  "4: control.access \"1001\": rights is missing (list some of read, "
	  "write, delete, export, or write rights = { } for none)" },
	{ "access.rights: unknown",
	  L "control {\n\taccess \"root\" {\n\t\trights = { read,\n"
	    "\t\t\tadmin }\n\t}\n}\n",
	  "5: control.access \"root\".rights: \"admin\" is not one of read, "
	  "write, delete, export" },
	{ "access.rights: empty string",
	  L "control { access \"root\" { rights = \"\" } }\n",
	  "2: control.access \"root\".rights: \"\" is not one of read, write, "
	  "delete, export" },
	{ "access.rights: all",
	  L "control { access \"root\" { rights = all } }\n",
	  "2: control.access \"root\".rights: \"all\" is not one of read, "
	  "write, delete, export" },
	{ "access.rights: listed twice",
	  L "control { access \"root\" { rights = { read, Read } } }\n",
	  "2: control.access \"root\".rights: \"Read\" is listed twice" },
	{ "access.rights: listed twice across +=",
	  L "control { access \"root\" {\n\trights = { export }\n"
	    "\trights += { EXPORT }\n} }\n",
	  "4: control.access \"root\".rights: \"EXPORT\" is listed twice" },
};
#undef WHO
#undef DISTINCT
#undef L

static void
test_observe_errors(void **state)
{
	char err[1024], path[PATH_MAX], want[PATH_MAX + 600];
	size_t i;

	(void)state;
	for (i = 0;
	     i < sizeof(observe_error_rows) / sizeof(observe_error_rows[0]);
	     i++) {
		struct conf *c = (struct conf *)&c; /* must become NULL */

		CHECK_INT(observe_error_rows[i].name,
			  load_text(observe_error_rows[i].in, &c, err,
				    sizeof(err), path, sizeof(path)),
			  -1);
		assert_null(c);
		snprintf(want, sizeof(want), "%s:%s", path,
			 observe_error_rows[i].want);
		CHECK_STR(observe_error_rows[i].name, err, want);
	}
}

static void
test_observe_good(void **state)
{
	static const struct {
		uid_t uid;
		unsigned want;
	} rows[] = {
		{ 0, CONF_RIGHT_READ | CONF_RIGHT_WRITE },
		{ 1001, 0 },
		{ 4294967294u,
		  CONF_RIGHT_EXPORT | CONF_RIGHT_DELETE | CONF_RIGHT_READ },
		{ 7, CONF_RIGHT_WRITE },
		{ 1, 0 },
		{ 1000, 0 },
		{ 65534, 0 },
		{ (uid_t)-1, 0 },
	};
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct sockaddr_in6 *sin6;
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER
		      "data_dir = /srv/outpost\n"
		      "log {\n"
		      "  delivery_file = \"/var/log/outpost//delivery.json\"\n"
		      "  audit_file = \"audit/./ops.log\"\n"
		      "  disk_reserve = 8M\n"
		      "  disk_reserve_percent = 0\n"
		      "}\n"
		      "metrics { listen = \"[::1]:9100\" }\n"
		      "control {\n"
		      "  socket = \"/run/outpost/ctl\"\n"
		      /* root gets only what it is given */
		      "  access \"root\" { rights = { WRITE, read } }\n"
		      "  access \"1001\" { rights = { } }\n"
		      "  access \"4294967294\" {\n"
		      "    rights = { export, Delete }  rights += { read }\n"
		      "  }\n"
		      "  access \"0007\" { rights = \"write\" }\n"
		      "}\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_string_equal(err, "");
	assert_string_equal(c->log.delivery_file,
			    "/var/log/outpost/delivery.json");
	assert_string_equal(c->log.audit_file, "/srv/outpost/audit/ops.log");
	assert_true(c->log.disk_reserve == 8u << 20);
	assert_int_equal(c->log.disk_reserve_percent, 0);
	assert_string_equal(c->metrics.listen, "[::1]:9100");
	assert_int_equal(c->metrics.addr.ss_family, AF_INET6);
	assert_int_equal(c->metrics.addrlen, sizeof(struct sockaddr_in6));
	sin6 = (const struct sockaddr_in6 *)&c->metrics.addr;
	assert_int_equal(ntohs(sin6->sin6_port), 9100);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_string_equal(c->control.socket, "/run/outpost/ctl");
	assert_int_equal(c->control.naccess, 4);
	assert_string_equal(c->control.access[0].name, "root");
	assert_string_equal(c->control.access[1].name, "1001");
	assert_string_equal(c->control.access[2].name, "4294967294");
	assert_string_equal(c->control.access[3].name, "0007");
	assert_int_equal(c->control.access[3].uid, 7);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char row[32];

		snprintf(row, sizeof(row), "uid %lu",
			 (unsigned long)rows[i].uid);
		CHECK_INT(row, conf_rights_for_uid(c, rows[i].uid),
			  rows[i].want);
	}
	conf_free(c);

	/* "" turns each log and metrics off; the socket stays */
	assert_int_equal(
	    load_text(LISTENER
		      "log { delivery_file = \"\"  audit_file = \"\" }\n"
		      "metrics { listen = \"\" }\n"
		      "control { access \"1001\" { rights = { read } } }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_null(c->log.delivery_file);
	assert_null(c->log.audit_file);
	assert_null(c->metrics.listen);
	assert_int_equal(c->metrics.addr.ss_family, 0);
	assert_int_equal(c->metrics.addrlen, 0);
	assert_non_null(c->control.socket);
	/* an access section, and root is no longer implied */
	assert_int_equal(c->control.naccess, 1);
	assert_int_equal(conf_rights_for_uid(c, 0), 0);
	assert_int_equal(conf_rights_for_uid(c, 1001), CONF_RIGHT_READ);
	conf_free(c);
}

/* metrics.listen: any ADDR:PORT a listener takes, loopback or not. */
static void
test_observe_metrics(void **state)
{
	static const struct {
		const char *in;
		int family;
		unsigned port;
	} rows[] = {
		{ "127.0.0.1:9025", AF_INET, 9025 },
		{ "127.0.0.2:1", AF_INET, 1 },
		{ "0.0.0.0:9100", AF_INET, 9100 },
		{ "192.0.2.7:65535", AF_INET, 65535 },
		{ "[::1]:9025", AF_INET6, 9025 },
		{ "[::]:9100", AF_INET6, 9100 },
		{ "[2001:db8::1]:443", AF_INET6, 443 },
		/* a listener's port on another address */
		{ "127.0.0.2:2525", AF_INET, 2525 },
	};
	char err[1024], path[PATH_MAX], text[256];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text),
			 LISTENER "metrics { listen = \"%s\" }\n", rows[i].in);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].in, err);
		CHECK_STR(rows[i].in, c->metrics.listen, rows[i].in);
		CHECK_INT(rows[i].in, c->metrics.addr.ss_family,
			  rows[i].family);
		CHECK_INT(rows[i].in, c->metrics.addrlen,
			  rows[i].family == AF_INET
			      ? sizeof(struct sockaddr_in)
			      : sizeof(struct sockaddr_in6));
		CHECK_INT(
		    rows[i].in,
		    ntohs(((struct sockaddr_in *)&c->metrics.addr)->sin_port),
		    rows[i].port);
		conf_free(c);
	}
}

/* access titles: a name is looked up, a number is a uid as it stands. */
static void
test_observe_access(void **state)
{
	struct row {
		const char *title;
		uid_t uid;
	} rows[8] = {
		{ "root", 0 },      { "0", 0 },
		{ "000", 0 },       { "1001", 1001 },
		{ "65534", 65534 }, { "4294967294", 4294967294u },
	};
	size_t i, n = 6;
	char err[1024], path[PATH_MAX], text[512];
	struct conf *c = NULL;
	struct passwd *pw;

	(void)state;
	/* the user running the test, and nobody where it exists */
	pw = getpwuid(getuid());
	assert_non_null(pw);
	rows[n].title = strdup(pw->pw_name);
	assert_non_null(rows[n].title);
	rows[n++].uid = pw->pw_uid;
	if ((pw = getpwnam("nobody")) != NULL) {
		rows[n].uid = pw->pw_uid;
		rows[n++].title = "nobody";
	}
	for (i = 0; i < n; i++) {
		snprintf(text, sizeof(text),
			 LISTENER "control {\n\taccess \"%s\" {\n"
				  "\t\trights = { delete }\n\t}\n}\n",
			 rows[i].title);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].title, err);
		CHECK_INT(rows[i].title, c->control.naccess, 1);
		CHECK_STR(rows[i].title, c->control.access[0].name,
			  rows[i].title);
		CHECK_INT(rows[i].title, c->control.access[0].uid, rows[i].uid);
		CHECK_INT(rows[i].title, c->control.access[0].rights,
			  CONF_RIGHT_DELETE);
		CHECK_INT(rows[i].title, conf_rights_for_uid(c, rows[i].uid),
			  CONF_RIGHT_DELETE);
		conf_free(c);
	}
	free((char *)rows[6].title);
}

static void
test_observe_right_name(void **state)
{
	static const struct {
		unsigned right;
		const char *want; /* NULL: none */
	} rows[] = {
		{ CONF_RIGHT_READ, "read" },
		{ CONF_RIGHT_WRITE, "write" },
		{ CONF_RIGHT_DELETE, "delete" },
		{ CONF_RIGHT_EXPORT, "export" },
		{ 0, NULL },
		{ CONF_RIGHT_READ | CONF_RIGHT_WRITE, NULL },
		{ CONF_RIGHTS_ALL, NULL },
		{ 0x10, NULL },
		{ 0x80000000u, NULL },
		{ ~0u, NULL },
	};
	size_t i;

	(void)state;
	assert_int_equal(CONF_RIGHTS_ALL, 0xf);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *got = conf_right_name(rows[i].right);
		char row[32];

		snprintf(row, sizeof(row), "right 0x%x", rows[i].right);
		if (rows[i].want == NULL)
			CHECK_INT(row, got == NULL, 1);
		else
			CHECK_STR(row, got, rows[i].want);
	}
}

/*
 * control.socket must fit in sun_path (107 bytes and the NUL): 107 loads,
 * 108 does not; the error is on data_dir's line when the socket is the
 * default, on the socket's own when it is written.
 */
static void
test_observe_socket_len(void **state)
{
	static const struct {
		const char *name;
		unsigned dirlen;  /* data_dir = "/" + this many 'a' */
		unsigned socklen; /* socket = "/" + this many 's', or 0 */
		unsigned line;    /* of the error, 0: loads */
	} rows[] = {
		/* "/" + 93 + "/control.sock" = 107 */
		{ "default socket, 107 bytes", 93, 0, 0 },
		{ "default socket, 108 bytes", 94, 0, 2 },
		{ "absolute socket, 107 bytes", 200, 106, 0 },
		{ "absolute socket, 108 bytes", 1, 107, 4 },
	};
	char err[1024], path[PATH_MAX], text[1024], want[PATH_MAX + 600];
	char dir[256], sock[256], resolved[512];
	struct conf *c = NULL;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		dir[0] = '/';
		memset(dir + 1, 'a', rows[i].dirlen);
		dir[rows[i].dirlen + 1] = '\0';
		sock[0] = '/';
		memset(sock + 1, 's', rows[i].socklen);
		sock[rows[i].socklen + 1] = '\0';
		snprintf(text, sizeof(text),
			 LISTENER "data_dir = \"%s\"\ncontrol {\n%s%s%s}\n",
			 dir, rows[i].socklen != 0 ? "\tsocket = \"" : "",
			 rows[i].socklen != 0 ? sock : "",
			 rows[i].socklen != 0 ? "\"\n" : "");
		snprintf(resolved, sizeof(resolved), "%s",
			 rows[i].socklen != 0 ? sock : dir);
		if (rows[i].socklen == 0)
			snprintf(resolved + strlen(resolved),
				 sizeof(resolved) - strlen(resolved),
				 "/control.sock");
		rc = load_text(text, &c, err, sizeof(err), path, sizeof(path));
		if (rows[i].line == 0) {
			if (rc != 0)
				fail_msg("%s: %s", rows[i].name, err);
			CHECK_STR(rows[i].name, c->control.socket, resolved);
			conf_free(c);
			continue;
		}
		CHECK_INT(rows[i].name, rc, -1);
		snprintf(want, sizeof(want),
			 "%s:%u: control.socket: \"%s\" is %zu bytes long once "
			 "resolved against data_dir; a Unix socket path holds "
			 "at most 107 (set socket to a shorter absolute path)",
			 path, rows[i].line,
			 rows[i].socklen != 0 ? sock : "control.sock",
			 strlen(resolved));
		CHECK_STR(rows[i].name, err, want);
	}
}

static void
test_example_observe(void **state)
{
	char err[1024];
	struct conf *c = NULL;

	(void)state;
	if (conf_load(&c, OUTPOST_CONF_EXAMPLE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	/* the example shows the defaults, and two access blocks */
	assert_string_equal(c->log.delivery_file,
			    "/var/lib/outpost/log/delivery.log");
	assert_string_equal(c->log.audit_file,
			    "/var/lib/outpost/log/audit.log");
	assert_string_equal(c->metrics.listen, "127.0.0.1:9025");
	assert_int_equal(c->metrics.addr.ss_family, AF_INET);
	assert_string_equal(c->control.socket, "/var/lib/outpost/control.sock");
	assert_int_equal(c->control.naccess, 2);
	assert_string_equal(c->control.access[0].name, "root");
	assert_int_equal(conf_rights_for_uid(c, 0), CONF_RIGHTS_ALL);
	assert_string_equal(c->control.access[1].name, "1001");
	assert_int_equal(conf_rights_for_uid(c, 1001), CONF_RIGHT_READ);
	assert_int_equal(conf_rights_for_uid(c, 1002), 0);
	conf_free(c);
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
		cmocka_unit_test(test_deliver_defaults),
		cmocka_unit_test(test_deliver_errors),
		cmocka_unit_test(test_deliver_limits),
		cmocka_unit_test(test_deliver_good),
		cmocka_unit_test(test_deliver_hostport),
		cmocka_unit_test(test_deliver_dns_servers),
		cmocka_unit_test(test_destinations),
		cmocka_unit_test(test_mx_limits_inherit),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_pools),
		cmocka_unit_test(test_example_deliver),
		cmocka_unit_test(test_dkim_defaults),
		cmocka_unit_test(test_dkim_errors),
		cmocka_unit_test(test_dkim_good),
		cmocka_unit_test(test_dkim_canon),
		cmocka_unit_test(test_dkim_limits),
		cmocka_unit_test(test_dkim_many),
		cmocka_unit_test(test_example_dkim),
		cmocka_unit_test(test_observe_defaults),
		cmocka_unit_test(test_observe_errors),
		cmocka_unit_test(test_observe_good),
		cmocka_unit_test(test_observe_metrics),
		cmocka_unit_test(test_observe_access),
		cmocka_unit_test(test_observe_right_name),
		cmocka_unit_test(test_observe_socket_len),
		cmocka_unit_test(test_example_observe),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
