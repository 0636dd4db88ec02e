/*
 * conf_test_observe.c — unit tests of the observe sections of conf/ (log,
 * metrics, control and its access blocks): defaults, rights, socket path
 * lengths, the shipped example, and the exact "file:line: message" of each
 * error.  Helpers in conf_test_util.[ch].  Single-threaded.
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
	assert_false(c->log.delivery_group_set);
	assert_int_equal(c->log.delivery_file_mode, 0600);
	assert_true(c->loaded_ms > 1600000000000);

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
	assert_int_equal(conf_rights_for_uid(c, 0), 0x1f);
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
static const struct conf_error_row observe_error_rows[] = {
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
	{ "log.delivery_file_group: unknown group",
	  L "log {\n\tdelivery_file_group = \"no-such-group.outpost\"\n}\n",
	  "3: log.delivery_file_group \"no-such-group.outpost\": no such "
	  "group (a local group name, or a gid such as \"1001\")" },
	{ "log.delivery_file_group: gid (gid_t)-1",
	  L "log { delivery_file_group = \"4294967295\" }\n",
	  "2: log.delivery_file_group: a gid is at most 4294967294" },
	{ "log.delivery_file_group: empty",
	  L "log { delivery_file_group = \"\" }\n",
	  "2: log.delivery_file_group: must not be empty" },
	{ "log.delivery_file_mode: not octal",
	  L "log {\n\tdelivery_file_mode = 0648\n}\n",
	  "3: log.delivery_file_mode: \"0648\" is not an octal mode such as "
	  "\"0640\"" },
	{ "log.delivery_file_mode: too short",
	  L "log { delivery_file_mode = \"64\" }\n",
	  "2: log.delivery_file_mode: \"64\" is not an octal mode such as "
	  "\"0640\"" },
	{ "log.delivery_file_mode: executable",
	  L "log { delivery_file_mode = 0750 }\n",
	  "2: log.delivery_file_mode: \"0750\": the owner must read and "
	  "write, no one execute, and only the owner and group write (0600, "
	  "0640, 0660 or 0644)" },
	{ "log.delivery_file_mode: others write",
	  L "log { delivery_file_mode = \"0666\" }\n",
	  "2: log.delivery_file_mode: \"0666\": the owner must read and "
	  "write, no one execute, and only the owner and group write (0600, "
	  "0640, 0660 or 0644)" },
	{ "log.delivery_file_mode: owner cannot write",
	  L "log { delivery_file_mode = \"0440\" }\n",
	  "2: log.delivery_file_mode: \"0440\": the owner must read and "
	  "write, no one execute, and only the owner and group write (0600, "
	  "0640, 0660 or 0644)" },
	{ "log.delivery_file_mode: setgid",
	  L "log { delivery_file_mode = \"2640\" }\n",
	  "2: log.delivery_file_mode: \"2640\": the owner must read and "
	  "write, no one execute, and only the owner and group write (0600, "
	  "0640, 0660 or 0644)" },
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
	  "write, delete, export, import, or write rights = { } for none)" },
	{ "access.rights: unknown",
	  L "control {\n\taccess \"root\" {\n\t\trights = { read,\n"
	    "\t\t\tadmin }\n\t}\n}\n",
	  "5: control.access \"root\".rights: \"admin\" is not one of read, "
	  "write, delete, export, import" },
	{ "access.rights: empty string",
	  L "control { access \"root\" { rights = \"\" } }\n",
	  "2: control.access \"root\".rights: \"\" is not one of read, write, "
	  "delete, export, import" },
	{ "access.rights: all",
	  L "control { access \"root\" { rights = all } }\n",
	  "2: control.access \"root\".rights: \"all\" is not one of read, "
	  "write, delete, export, import" },
	{ "access.rights: listed twice",
	  L "control { access \"root\" { rights = { read, Read } } }\n",
	  "2: control.access \"root\".rights: \"Read\" is listed twice" },
	{ "access.rights: listed twice across +=",
	  L "control { access \"root\" {\n\trights = { export }\n"
	    "\trights += { EXPORT }\n} }\n",
	  "4: control.access \"root\".rights: \"EXPORT\" is listed twice" },
	/* feedback */
	{ "feedback.address: no local part",
	  L "feedback {\n\taddress = \"@mta.example\"\n}\n",
	  "3: feedback.address: \"@mta.example\" must be one address "
	  "local@domain" },
	{ "feedback.address: angle brackets",
	  L "feedback { address = \"<fbl@mta.example>\" }\n",
	  "2: feedback.address: \"<fbl@mta.example>\" must be one address "
	  "local@domain" },
	{ "feedback.address: two at signs",
	  L "feedback { address = \"a@b@mta.example\" }\n",
	  "2: feedback.address: \"a@b@mta.example\" must be one address "
	  "local@domain" },
	{ "feedback.max_report_size: below minimum",
	  L "feedback { max_report_size = 1K }\n",
	  "2: feedback.max_report_size: \"1K\" is less than the minimum, "
	  "16K" },
	{ "feedback.reports_per_minute: zero",
	  L "feedback { reports_per_minute = 0 }\n",
	  "2: feedback.reports_per_minute: \"0\" is less than the minimum, "
	  "1" },
};
#undef WHO
#undef DISTINCT
#undef L

/* feedback { }: defaults, and the domain of the address lower-cased. */
static void
test_feedback_good(void **state)
{
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(
	    load_text(LISTENER, &c, err, sizeof(err), path, sizeof(path)), 0);
	assert_null(c->feedback.address);
	CHECK_INT("max_report_size", c->feedback.max_report_size, 1 << 20);
	CHECK_INT("reports_per_minute", c->feedback.reports_per_minute, 60);
	assert_true(c->feedback.identifier);
	conf_free(c);
	assert_int_equal(load_text(LISTENER "feedback {\n"
					    "\taddress = \"FBL@MTA.Example\"\n"
					    "\tidentifier = no\n}\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	CHECK_STR("address", c->feedback.address, "FBL@mta.example");
	assert_false(c->feedback.identifier);
	conf_free(c);
}

static void
test_observe_errors(void **state)
{
	(void)state;
	CONF_TEST_ERROR_ROWS(observe_error_rows);
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
		{ CONF_RIGHT_IMPORT, "import" },
		{ 0, NULL },
		{ CONF_RIGHT_READ | CONF_RIGHT_WRITE, NULL },
		{ CONF_RIGHTS_ALL, NULL },
		{ 0x20, NULL },
		{ 0x80000000u, NULL },
		{ ~0u, NULL },
	};
	size_t i;

	(void)state;
	assert_int_equal(CONF_RIGHTS_ALL, 0x1f);
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

/* The delivery log's group (by name or gid) and mode, and their defaults. */
static void
test_observe_log_perms(void **state)
{
	static const struct {
		const char *text;
		bool group_set;
		gid_t gid;
		unsigned mode;
	} rows[] = {
		/* Debian's "daemon" group is gid 1, "root" gid 0 */
		{ "log { delivery_file_group = \"daemon\" }\n", true, 1, 0640 },
		{ "log { delivery_file_group = \"4\" }\n", true, 4, 0640 },
		{ "log {\n delivery_file_group = \"daemon\"\n"
		  " delivery_file_mode = 0660\n}\n",
		  true, 1, 0660 },
		{ "log { delivery_file_mode = \"644\" }\n", false, 0, 0644 },
		{ "log { delivery_file_mode = 0600 }\n", false, 0, 0600 },
		{ "log { }\n", false, 0, 0600 },
	};
	char err[1024], path[PATH_MAX], text[512];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", LISTENER, rows[i].text);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].text, err);
		assert_int_equal(c->log.delivery_group_set, rows[i].group_set);
		if (rows[i].group_set)
			assert_int_equal(c->log.delivery_gid, rows[i].gid);
		assert_int_equal(c->log.delivery_file_mode, rows[i].mode);
		conf_free(c);
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
		cmocka_unit_test(test_observe_defaults),
		cmocka_unit_test(test_observe_errors),
		cmocka_unit_test(test_feedback_good),
		cmocka_unit_test(test_observe_good),
		cmocka_unit_test(test_observe_metrics),
		cmocka_unit_test(test_observe_access),
		cmocka_unit_test(test_observe_right_name),
		cmocka_unit_test(test_observe_socket_len),
		cmocka_unit_test(test_observe_log_perms),
		cmocka_unit_test(test_example_observe),
	};

	return cmocka_run_group_tests(tests, conf_test_setup,
				      conf_test_teardown);
}
