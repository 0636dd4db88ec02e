/*
 * conf_test_util.h — what the conf/ unit tests share: a temporary directory
 * for configuration snippets (removed by the group teardown), load_text(),
 * the row checks, and one runner for tables of "file:line: message" error
 * rows.  Each conf_test*.c program links conf_test_util.c.  Single-threaded.
 */
#ifndef OUTPOST_CONF_TEST_UTIL_H
#define OUTPOST_CONF_TEST_UTIL_H

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"

#define HASH                                                                   \
	"$argon2id$v=19$m=65536,t=2,p=1$OuGYReqC87YKYieWV2EQnQ$SkS390hcLiEOIh" \
	"oSJZb8V7Mji4KkcS+2wTyLMzQ1PIs"
#define LISTENER "listener \"127.0.0.1:2525\" { }\n"

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

/*
 * One configuration that must fail: NAME shows in a failure, TEXT is the
 * file, WANT the error after "PATH:" ("3: limits.max_errors: ...").
 */
struct conf_error_row {
	const char *name;
	const char *text;
	const char *want;
};

/*
 * conf_test_error_rows — load each of the N rows' TEXT from a file and
 * check that conf_load() fails, leaves no tree and says exactly
 * "PATH:" WANT.  The first row that differs fails the test.
 */
void conf_test_error_rows(const struct conf_error_row *rows, size_t n);
#define CONF_TEST_ERROR_ROWS(rows)                                             \
	conf_test_error_rows((rows), sizeof(rows) / sizeof((rows)[0]))

/* The temporary directory of this program (made by conf_test_setup()). */
extern char tmpdir[PATH_MAX];

/* Remove PATH at teardown (files, then the directories they are in). */
void remember(const char *path);
/* tmpdir/NAME in BUF. */
void tmp_path(const char *name, char *buf, size_t len);
/* Make tmpdir/NAME (it may exist). */
void mkdir_tmp(const char *name);
/* Write LEN bytes of TEXT to tmpdir/NAME; its full path in PATH. */
void write_bytes(const char *name, const char *text, size_t len, char *path,
		 size_t pathlen);
void write_file(const char *name, const char *text, char *path, size_t pathlen);
/* Write TEXT to tmpdir/test.conf and load it; conf_load()'s result. */
int load_text(const char *text, struct conf **c, char *err, size_t errlen,
	      char *path, size_t pathlen);
/* The working directory joined with REL, as conf/ resolves data_dir. */
void cwd_join(const char *rel, char *buf, size_t len);

/* cmocka group setup and teardown: make and remove tmpdir. */
int conf_test_setup(void **state);
int conf_test_teardown(void **state);

#endif
