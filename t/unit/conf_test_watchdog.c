/*
 * conf_test_watchdog.c — the sections watchdog and watchdog_override
 * (conf/conf_watchdog.c): the defaults, values written, an override's
 * unset keys taking watchdog's, the lookup by identity, the paths, and
 * the errors (ratios out of range, a relative alert command, an untitled
 * override).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "t/unit/conf_test_util.h"

static void
test_defaults_and_overrides(void **state)
{
	const struct conf_watchdog_limits *l;
	struct conf *c = NULL;
	char err[512], path[512];

	(void)state;
	if (load_text(LISTENER, &c, err, sizeof(err), path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_true(c->watchdog.enabled);
	assert_int_equal(c->watchdog.learning_ms, 7 * 86400000ULL);
	assert_null(c->watchdog.traps);
	assert_null(c->watchdog.alert_command);
	assert_int_equal(c->watchdog.bounce_window, 200);
	assert_true(c->watchdog.limits.new_recipient_share == 0.5);
	assert_true(c->watchdog.limits.complaint_rate == 0.003);
	assert_int_equal(c->watchdog.limits.min_messages, 50);
	conf_free(c);
	if (load_text(LISTENER
		      "data_dir = \"/srv/op\"\n"
		      "watchdog {\n  enabled = yes\n  learning = 2d\n"
		      "  traps = \"traps.txt\"\n"
		      "  alert_command = { \"/usr/bin/page\", \"-x\" }\n"
		      "  volume_factor = 8\n  bounce_rate = 0.05\n}\n"
		      "watchdog_override \"news\" {\n"
		      "  new_recipient_share = 0.9\n  min_messages = 500\n}\n",
		      &c, err, sizeof(err), path, sizeof(path)) != 0)
		fail_msg("%s", err);
	assert_true(c->watchdog.enabled);
	assert_int_equal(c->watchdog.learning_ms, 2 * 86400000ULL);
	assert_string_equal(c->watchdog.traps, "/srv/op/traps.txt");
	assert_string_equal(c->watchdog.alert_command[1], "-x");
	assert_null(c->watchdog.alert_command[2]);
	l = conf_watchdog_limits_of(c, "news");
	assert_true(l->new_recipient_share == 0.9);
	assert_int_equal(l->min_messages, 500);
	/* Unset in the override: watchdog's, as written there. */
	assert_true(l->volume_factor == 8);
	assert_true(l->bounce_rate == 0.05);
	l = conf_watchdog_limits_of(c, "other");
	assert_true(l == &c->watchdog.limits);
	assert_true(l->new_recipient_share == 0.5);
	conf_free(c);
}

static const struct conf_error_row watchdog_error_rows[] = {
	{ "share over 1", LISTENER "watchdog { new_recipient_share = 1.5 }\n",
	  "2: watchdog.new_recipient_share: \"1.5\" must be a number from 0 "
	  "to 1" },
	{ "factor under 1", LISTENER "watchdog { volume_factor = 0.5 }\n",
	  "2: watchdog.volume_factor: \"0.5\" must be a number from 1 to "
	  "1000" },
	{ "not a number", LISTENER "watchdog { bounce_rate = high }\n",
	  "2: watchdog.bounce_rate: \"high\" must be a number from 0 to 1" },
	{ "relative alert",
	  LISTENER "watchdog { alert_command = { \"page\" } }\n",
	  "2: watchdog.alert_command: \"page\": the program must be an "
	  "absolute path (no shell, no PATH search)" },
};

static void
test_errors(void **state)
{
	(void)state;
	CONF_TEST_ERROR_ROWS(watchdog_error_rows);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_overrides),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, conf_test_setup,
				      conf_test_teardown);
}
