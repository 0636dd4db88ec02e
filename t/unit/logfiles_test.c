/*
 * logfiles_test.c — cli_log_each (mta/cli/cli_logfiles.c) on a directory
 * laid out as the daemon's rotation leaves it: compressed and plain rotated
 * days, a day caught between compression and removal of its plain file, a
 * .tmp being written, names that only look like ours, and the log itself
 * with a line far longer than one read; --since picks days; the walk stops
 * when asked; damage and absence are errors.  Also logkeep_name_day, and
 * logkeep_start's rotation at start: done before it returns, so that no
 * line of the new run lands in the day that ended (the keeper thread did
 * it, and a message accepted before it ran went into yesterday's file).
 */
#include <sys/stat.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "mta/core/logkeep.h"
#include "mta/core/util.h"
#include "mta/cli/cli_int.h"

#define LONG_LINE_BYTES (700 * 1024)

static char dir[64];
static char walk_err[256]; /* the last walk's error */

struct seen {
	char text[4096]; /* the lines, each followed by '|' */
	size_t longest;
	int lines, stop_after;
};

static void
put_plain(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void
put_gz(const char *name, const char *text)
{
	char path[256];
	gzFile z;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(z = gzopen(path, "wb"));
	assert_int_equal(gzputs(z, text), (int)strlen(text));
	assert_int_equal(gzclose(z), Z_OK);
}

static int
on_line(const char *line, size_t len, void *arg)
{
	struct seen *s = arg;
	size_t n = strlen(s->text);

	if (len > s->longest)
		s->longest = len;
	if (len > 64) {
		line = "LONG";
		len = 4;
	}
	snprintf(s->text + n, sizeof(s->text) - n, "%.*s|", (int)len, line);
	if (++s->lines == s->stop_after)
		return 7;
	return 0;
}

static int
setup(void **state)
{
	char *big;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/logfiles_test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	put_gz("log-2026-01-01.gz", "a1\na2"); /* no final LF */
	put_plain("log-2026-01-02", "b1\n");
	/* Compressed, the plain one not yet removed: read once. */
	put_gz("log-2026-01-03.gz", "c1\nc2\n");
	put_plain("log-2026-01-03", "c1\n");
	put_gz("log-2026-01-04.gz.tmp", "tmp\n");
	put_plain("log-2026-02-30", "bad date\n");
	put_plain("log-2026-1-05", "bad name\n");
	put_plain("other-2026-01-02", "other\n");
	put_plain("logx-2026-01-02", "other\n");
	assert_non_null(big = malloc(LONG_LINE_BYTES + 16));
	memset(big, 'x', LONG_LINE_BYTES);
	snprintf(big + LONG_LINE_BYTES, 16, "\nd2\n");
	put_plain("log", "d1\n");
	{
		char path[256];
		FILE *f;

		snprintf(path, sizeof(path), "%s/log", dir);
		assert_non_null(f = fopen(path, "a"));
		fputs(big, f);
		assert_int_equal(fclose(f), 0);
	}
	free(big);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* cli_log_each over NAME in the directory; its error in walk_err. */
static int
walk_file(const char *name, int64_t since_ms, int stop_after, struct seen *s)
{
	char file[128];

	memset(s, 0, sizeof(*s));
	walk_err[0] = '\0';
	s->stop_after = stop_after;
	snprintf(file, sizeof(file), "%s/%s", dir, name);
	return cli_log_each(file, since_ms, on_line, s, walk_err,
			    sizeof(walk_err));
}

static int
walk(int64_t since_ms, int stop_after, struct seen *s)
{
	return walk_file("log", since_ms, stop_after, s);
}

static void
test_all_oldest_first(void **state)
{
	struct seen s;

	(void)state;
	assert_int_equal(walk(0, 0, &s), 0);
	assert_string_equal(s.text, "a1|a2|b1|c1|c2|d1|LONG|d2|");
	assert_int_equal(s.longest, LONG_LINE_BYTES);
}

static void
test_since_picks_days(void **state)
{
	struct seen s;

	(void)state;
	/* 2026-01-03T12:00:00Z: the file of the day before on (it holds
	 * the lines written between midnight and the rotation). */
	assert_int_equal(walk(1767355200000LL + LOGKEEP_DAY_MS, 0, &s), 0);
	assert_string_equal(s.text, "b1|c1|c2|d1|LONG|d2|");
	/* Two days after every rotated one: the log alone. */
	assert_int_equal(walk(1767355200000LL + 10 * LOGKEEP_DAY_MS, 0, &s), 0);
	assert_string_equal(s.text, "d1|LONG|d2|");
}

static void
test_stop(void **state)
{
	struct seen s;

	(void)state;
	assert_int_equal(walk(0, 3, &s), 7);
	assert_string_equal(s.text, "a1|a2|b1|");
}

static void
test_damaged_gz(void **state)
{
	char path[256];
	struct seen s;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/log-2025-12-31.gz", dir);
	put_gz("log-2025-12-31.gz", "z1\nz2\nz3\n");
	assert_int_equal(truncate(path, 20), 0);
	assert_int_equal(walk(0, 0, &s), -1);
	assert_non_null(strstr(walk_err, "log-2025-12-31.gz"));
	assert_int_equal(unlink(path), 0);
	/* Not gzip at all (plain text under a .gz name) reads as text. */
	assert_non_null(f = fopen(path, "w"));
	fputs("plain\n", f);
	fclose(f);
	assert_int_equal(walk(0, 1, &s), 7);
	assert_string_equal(s.text, "plain|");
	assert_int_equal(unlink(path), 0);
}

static void
test_missing(void **state)
{
	struct seen s;

	(void)state;
	assert_int_equal(walk_file("nothing", 0, 0, &s), -1);
	assert_non_null(strstr(walk_err, "No such file"));
	/* Rotated files but no FILE (between the daemon's rename and its
	 * reopen): the rotated ones, no error. */
	put_plain("gone-2026-01-02", "g1\n");
	assert_int_equal(walk_file("gone", 0, 0, &s), 0);
	assert_string_equal(s.text, "g1|");
}

static void
test_name_day(void **state)
{
	static const struct {
		const char *name;
		bool ok, gz;
		const char *day;
	} rows[] = {
		{ "log-2026-12-05", true, false, "2026-12-05" },
		{ "log-2026-12-05.gz", true, true, "2026-12-05" },
		{ "log-2024-02-29", true, false, "2024-02-29" },
		{ "log-2026-02-29", false, false, NULL },
		{ "log-2026-13-01", false, false, NULL },
		{ "log-2026-12-05.gz.tmp", false, false, NULL },
		{ "log-2026-12-05.1", false, false, NULL },
		{ "log", false, false, NULL },
		{ "log-", false, false, NULL },
		{ "logs-2026-12-05", false, false, NULL },
		{ "log-2026-12-5", false, false, NULL },
	};
	char back[LOGKEEP_DAY_BYTES];
	int64_t day;
	bool gz;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bool ok = logkeep_name_day("log", rows[i].name, &day, &gz);

		if (ok != rows[i].ok)
			fail_msg("%s: want %d", rows[i].name, rows[i].ok);
		if (!ok)
			continue;
		assert_int_equal(gz, rows[i].gz);
		logkeep_day_format(day, back);
		assert_string_equal(back, rows[i].day);
		logkeep_day_format(day + LOGKEEP_DAY_MS - 1, back);
		assert_string_equal(back, rows[i].day);
		assert_int_equal(logkeep_day_start(day + 5), day);
	}
}

static int reopened;

static void
reopen_hook(void *arg)
{
	(void)arg;
	reopened++;
}

static void
test_start_rotates_before_return(void **state)
{
	char d[64], path[256], dated[300], line[128], err[256];
	char day[LOGKEEP_DAY_BYTES];
	int64_t yesterday = logkeep_day_start(util_wall_ms()) - LOGKEEP_DAY_MS;
	struct stat st;
	FILE *f;

	(void)state;
	snprintf(d, sizeof(d), "/tmp/logkeep_test.XXXXXX");
	assert_non_null(mkdtemp(d));
	snprintf(path, sizeof(path), "%s/delivery.log", d);
	logkeep_day_format(yesterday, day);
	snprintf(line, sizeof(line),
		 "{\"time\":\"%sT23:59:59.000Z\",\"event\":\"x\"}\n", day);
	assert_non_null(f = fopen(path, "w"));
	fputs(line, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(logkeep_add("delivery log", path, 90 * LOGKEEP_DAY_MS,
				     reopen_hook, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(logkeep_start(err, sizeof(err)), 0);
	/* Yesterday's file was renamed, and its writer told, before
	 * logkeep_start returned: what the daemon writes next is today's. */
	assert_int_equal(reopened, 1);
	assert_int_equal(stat(path, &st), -1);
	logkeep_stop();
	/* The keeper compressed it. */
	snprintf(dated, sizeof(dated), "%s/delivery.log-%s.gz", d, day);
	assert_int_equal(stat(dated, &st), 0);
	assert_int_equal(reopened, 1);
	assert_int_equal(unlink(dated), 0);
	assert_int_equal(rmdir(d), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_oldest_first),
		cmocka_unit_test(test_since_picks_days),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_damaged_gz),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_name_day),
		cmocka_unit_test(test_start_rotates_before_return),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
