/*
 * conf_test_util.c — the helpers of conf_test_util.h: the temporary
 * directory and its files, load_text(), and the error-row runner.
 * Single-threaded (cmocka runs one test at a time).
 */
#include <errno.h>
#include <limits.h>
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

char tmpdir[PATH_MAX];
static char *made[64]; /* files and directories to remove, in order */
static size_t nmade;

void
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
void
tmp_path(const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", tmpdir, name);

	assert_true(n > 0 && (size_t)n < len);
}

void
mkdir_tmp(const char *name)
{
	char p[PATH_MAX];

	tmp_path(name, p, sizeof(p));
	if (mkdir(p, 0700) != 0)
		assert_int_equal(errno, EEXIST);
	remember(p);
}

void
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

void
write_file(const char *name, const char *text, char *path, size_t pathlen)
{
	write_bytes(name, text, strlen(text), path, pathlen);
}

/* Write TEXT to tmpdir/test.conf and load it. */
int
load_text(const char *text, struct conf **c, char *err, size_t errlen,
	  char *path, size_t pathlen)
{
	write_file("test.conf", text, path, pathlen);
	return conf_load(c, path, err, errlen);
}

int
conf_test_setup(void **state)
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

int
conf_test_teardown(void **state)
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

void
cwd_join(const char *rel, char *buf, size_t len)
{
	char cwd[PATH_MAX];
	int n;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	n = snprintf(buf, len, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, rel);
	assert_true(n > 0 && (size_t)n < len);
}

void
conf_test_error_rows(const struct conf_error_row *rows, size_t n)
{
	char err[1024], path[PATH_MAX], want[PATH_MAX + 600];
	size_t i;

	for (i = 0; i < n; i++) {
		struct conf *c = (struct conf *)&c; /* must become NULL */

		CHECK_INT(rows[i].name,
			  load_text(rows[i].text, &c, err, sizeof(err), path,
				    sizeof(path)),
			  -1);
		assert_null(c);
		snprintf(want, sizeof(want), "%s:%s", path, rows[i].want);
		CHECK_STR(rows[i].name, err, want);
	}
}
