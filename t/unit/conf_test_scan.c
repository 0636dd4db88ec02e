/*
 * conf_test_scan.c — the section scan (conf/conf_scan.c): the defaults
 * (no scanning), a Unix socket and loopback addresses with their
 * sockaddr, the choices and sizes, and the errors (a relative path, an
 * address off the host, no port, a path too long, a bad choice, values
 * out of range), each at its file:line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "t/unit/conf_test_util.h"

static void
test_defaults_and_values(void **state)
{
	struct conf *c = NULL;
	char err[512], path[512];

	(void)state;
	if (load_text(LISTENER, &c, err, sizeof(err), path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_null(c->scan.clamd);
	assert_int_equal(c->scan.on_error, CONF_SCAN_TEMPFAIL);
	assert_int_equal(c->scan.on_oversize, CONF_SCAN_TRUNCATE);
	assert_int_equal(c->scan.timeout_ms, 30000);
	assert_int_equal(c->scan.connections, 4);
	assert_int_equal(c->scan.max_size, 25 << 20);
	assert_int_equal(c->scan.cache_entries, 100000);
	assert_int_equal(c->scan.cache_ttl_ms, 3600000);
	assert_int_equal(c->watchdog.limits.infected, 1);
	conf_free(c);
	if (load_text(LISTENER "scan {\n  clamd = \"/run/clamav/clamd.ctl\"\n"
			       "  on_error = accept\n  timeout = 2s\n"
			       "  connections = 8\n  max_size = 10M\n"
			       "  on_oversize = refuse\n  cache_entries = 0\n"
			       "  cache_ttl = 10m\n}\n"
			       "watchdog { infected = 3 }\n"
			       "watchdog_override \"news\" { infected = 0 }\n",
		      &c, err, sizeof(err), path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c->scan.clamd, "/run/clamav/clamd.ctl");
	assert_true(c->scan.unix_socket);
	assert_int_equal(c->scan.addr.ss_family, AF_UNIX);
	assert_string_equal(((struct sockaddr_un *)&c->scan.addr)->sun_path,
			    "/run/clamav/clamd.ctl");
	assert_int_equal(c->scan.on_error, CONF_SCAN_ACCEPT);
	assert_int_equal(c->scan.on_oversize, CONF_SCAN_REFUSE);
	assert_int_equal(c->scan.timeout_ms, 2000);
	assert_int_equal(c->scan.connections, 8);
	assert_int_equal(c->scan.max_size, 10 << 20);
	assert_int_equal(c->scan.cache_entries, 0);
	assert_int_equal(c->scan.cache_ttl_ms, 600000);
	assert_int_equal(c->watchdog.limits.infected, 3);
	assert_int_equal(conf_watchdog_limits_of(c, "news")->infected, 0);
	conf_free(c);
	if (load_text(LISTENER "scan { clamd = \"127.0.0.1:3310\" }\n", &c, err,
		      sizeof(err), path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_false(c->scan.unix_socket);
	assert_int_equal(c->scan.addr.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&c->scan.addr)->sin_port),
			 3310);
	conf_free(c);
	if (load_text(LISTENER "scan { clamd = \"[::1]:3310\" }\n", &c, err,
		      sizeof(err), path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c->scan.addr.ss_family, AF_INET6);
	conf_free(c);
	/* "" written out (as `outpost config --all` prints it): no scan. */
	if (load_text(LISTENER "scan { clamd = \"\" }\n", &c, err, sizeof(err),
		      path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_null(c->scan.clamd);
	conf_free(c);
}

/* 113 bytes: past sun_path (108). */
#define LONG_PATH                                                              \
	"/run/"                                                                \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"   \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

static const struct conf_error_row scan_error_rows[] = {
	{ "relative path", LISTENER "scan { clamd = \"clamd.ctl\" }\n",
	  "2: scan.clamd: \"clamd.ctl\" is neither an absolute Unix socket "
	  "path nor a loopback ADDR:PORT (use e.g. \"/run/clamav/clamd.ctl\" "
	  "or \"127.0.0.1:3310\")" },
	{ "off the host", LISTENER "scan { clamd = \"0.0.0.0:3310\" }\n",
	  "2: scan.clamd: \"0.0.0.0:3310\" must be a Unix socket path or a "
	  "loopback address (messages go to clamd unencrypted)" },
	{ "no port", LISTENER "scan { clamd = \"127.0.0.1\" }\n",
	  "2: scan.clamd: \"127.0.0.1\" needs a port (use e.g. "
	  "\"127.0.0.1:3310\")" },
	{ "path too long", LISTENER "scan {\n clamd = \"" LONG_PATH "\"\n}\n",
	  "3: scan.clamd: \"" LONG_PATH "\" is too long for a Unix socket "
	  "path" },
	{ "bad on_error", LISTENER "scan { on_error = ignore }\n",
	  "2: scan.on_error: \"ignore\" is not one of tempfail, accept" },
	{ "bad on_oversize", LISTENER "scan { on_oversize = skip }\n",
	  "2: scan.on_oversize: \"skip\" is not one of truncate, refuse" },
	{ "no connections", LISTENER "scan { connections = 0 }\n",
	  "2: scan.connections: \"0\" is less than the minimum, 1" },
	{ "tiny max_size", LISTENER "scan { max_size = 1K }\n",
	  "2: scan.max_size: \"1K\" is less than the minimum, 64K" },
	{ "infected too high", LISTENER "watchdog { infected = 2000000 }\n",
	  "2: watchdog.infected: \"2000000\" is more than the maximum, "
	  "1000000" },
};

static void
test_errors(void **state)
{
	(void)state;
	CONF_TEST_ERROR_ROWS(scan_error_rows);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_values),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, conf_test_setup,
				      conf_test_teardown);
}
