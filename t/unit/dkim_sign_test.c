/*
 * dkim_sign_test.c — dkim/ signing core against references: libopendkim
 * 2.11 (t/unit/dkim_oracle, its own process: the RSA field must be byte-
 * identical; it verifies Ed25519), python3-dkim (t/unit/dkim_verify.py)
 * verifying both algorithms, tampered copies failing with each; the
 * corpus t/unit/dkim_corpus/ plus a 10 MB body made here, every
 * canonicalization pair, default and custom header lists.  Also the
 * parser, canonicalization vectors (RFC 6376 3.4.5 and a reference model),
 * key loading and generation.  What signing costs is measured by
 * t/bench/dkim_speed.c (outpost-dkim-speed), not here.
 * DKIM_TEST_KEEP=1 keeps the scratch directory.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#ifndef DKIM_TEST_ORACLE
#error "DKIM_TEST_ORACLE (path of dkim_oracle) must be defined"
#endif

#define TEST_TIME      ((int64_t)1764388800) /* 2025-11-29 04:00 UTC */
#define TEST_DOMAIN    "example.com"
#define TEST_TTL       (7 * 86400)
#define TEST_BIG_BYTES (10 * 1024 * 1024)
#define TEST_PATH_MAX  1024
#define TEST_MAX_MSGS  32

#define CHECK(c, ...)                                                          \
	do {                                                                   \
		if (!(c))                                                      \
			fail_msg(__VA_ARGS__);                                 \
	} while (0)

struct test_env {
	char dir[TEST_PATH_MAX];
	char rsa_pem[TEST_PATH_MAX];
	char ed_pem[TEST_PATH_MAX];
	char keys[TEST_PATH_MAX]; /* selector map for both verifiers */
	struct dkim_key *rsa;
	struct dkim_key *ed;
	char *rsa_txt;
	char *ed_txt;
	char load_before_init_err[256];
	int load_before_init_rc;
	char names[TEST_MAX_MSGS][64];
	uint8_t *msgs[TEST_MAX_MSGS];
	size_t lens[TEST_MAX_MSGS];
	size_t nmsgs;
};

static struct test_env env;

static const char *const test_custom_sign[] = { "from",     "Subject",
						"Received", "X-Mailer",
						"To",       NULL };
static const char *const test_custom_over[] = { "from", "x-mailer", NULL };

/* ---------------------------------------------------------------------- */
/* Files and processes                                                     */

static void test_path(char *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
test_path(char *out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, TEST_PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= TEST_PATH_MAX)
		fail_msg("path too long: %s", fmt);
}

static int
test_read(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd;

	*buf = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) != 0 ||
	    (*buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	(*buf)[got] = '\0';
	*len = got;
	return got == (size_t)st.st_size ? 0 : -1;
}

static void
test_write(const char *path, const void *p, size_t n, mode_t mode)
{
	int fd;

	(void)unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	CHECK(fd != -1, "%s: %s", path, strerror(errno));
	CHECK(fchmod(fd, mode) == 0, "%s: chmod", path);
	CHECK(n == 0 || write(fd, p, n) == (ssize_t)n, "%s: write", path);
	close(fd);
}

/* test_run — ARGV[0] with stdout to OUT; returns the exit status. */
static int
test_run(char *const argv[], const char *out)
{
	pid_t pid;
	int st, fd;

	fflush(NULL);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd == -1 || dup2(fd, 1) == -1)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* "pass PATH" → 1, "fail PATH…" → 0, absent → -1 (OUT from a verifier). */
static int
test_verdict(const char *out, const char *path)
{
	const char *p = out;
	size_t n = strlen(path);

	while (p != NULL && *p != '\0') {
		if (strncmp(p, "pass ", 5) == 0 &&
		    strncmp(p + 5, path, n) == 0 &&
		    (p[5 + n] == '\n' || p[5 + n] == '\0'))
			return 1;
		if (strncmp(p, "fail ", 5) == 0 &&
		    strncmp(p + 5, path, n) == 0 &&
		    (p[5 + n] == ':' || p[5 + n] == '\n'))
			return 0;
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return -1;
}

static const char *
test_verdict_line(const char *out, const char *path)
{
	static char line[512];
	const char *p = strstr(out, path), *e;

	if (p == NULL)
		return "(no line)";
	while (p > out && p[-1] != '\n')
		p--;
	e = strchr(p, '\n');
	(void)snprintf(line, sizeof(line), "%.*s",
		       (int)(e != NULL ? e - p : (ptrdiff_t)strlen(p)), p);
	return line;
}

static const uint8_t *
test_memmem(const uint8_t *h, size_t hn, const char *n)
{
	size_t i, nn = strlen(n);

	for (i = 0; nn <= hn && i <= hn - nn; i++)
		if (memcmp(h + i, n, nn) == 0)
			return h + i;
	return NULL;
}

/* test_rmtree — remove PATH and, for a directory, all below it. */
static void
test_rmtree(const char *path)
{
	char sub[TEST_PATH_MAX];
	struct dirent *e;
	struct stat st;
	DIR *d;

	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			if (snprintf(sub, sizeof(sub), "%s/%s", path,
				     e->d_name) < (int)sizeof(sub))
				test_rmtree(sub);
		}
		closedir(d);
	}
	(void)remove(path);
}

/* The value of tag TAG in the (folded) field SIG, unfolded, in OUT. */
static void
test_tag(const char *sig, const char *tag, char *out, size_t outlen)
{
	char *u = malloc(strlen(sig) + 1), *p, *q;
	size_t n = 0, tl = strlen(tag);

	assert_non_null(u);
	for (p = (char *)sig; *p != '\0'; p++)
		if (*p != '\r' && *p != '\n' && *p != '\t' && *p != ' ')
			u[n++] = *p;
	u[n] = '\0';
	out[0] = '\0';
	for (p = strchr(u, ':'); p != NULL; p = strchr(p, ';')) {
		p++;
		if (strncmp(p, tag, tl) == 0 && p[tl] == '=') {
			q = strchr(p + tl + 1, ';');
			(void)snprintf(
			    out, outlen, "%.*s",
			    (int)(q != NULL ? q - (p + tl + 1)
					    : (ptrdiff_t)strlen(p + tl + 1)),
			    p + tl + 1);
			break;
		}
	}
	free(u);
}

/* ---------------------------------------------------------------------- */
/* Set-up: keys, corpus                                                    */

static void
test_add_msg(const char *name, uint8_t *data, size_t len)
{
	if (env.nmsgs == TEST_MAX_MSGS)
		fail_msg("corpus too large");
	(void)snprintf(env.names[env.nmsgs], sizeof(env.names[0]), "%s", name);
	env.msgs[env.nmsgs] = data;
	env.lens[env.nmsgs] = len;
	env.nmsgs++;
}

/* A 10 MB body with everything relaxed canonicalization acts on. */
static void
test_make_big(void)
{
	static const char *const lines[] = {
		"plain line of text",
		"trailing spaces   ",
		"trailing tab\t",
		"  leading  and   inner  runs",
		"",
		"\t \t",
		"UTF-8 Grüße 日本語 🎉",
		".",
		"a much longer line that goes on with words and words and "
		"words "
		"until it is nearly a hundred characters long ok"
	};
	const char *hdr = "From: \"Big\" <big@example.com>\r\n"
			  "To: alice@example.net\r\n"
			  "Subject: ten megabytes\r\n"
			  "Date: Sat, 29 Nov 2026 04:00:00 +0000\r\n"
			  "Message-ID: <big.1@example.com>\r\n"
			  "MIME-Version: 1.0\r\n"
			  "Content-Type: text/plain; charset=utf-8\r\n\r\n";
	struct dkim_buf b = { NULL, 0, 0 };
	size_t i = 0;

	assert_int_equal(dkim_buf_adds(&b, hdr), 0);
	while (b.len < TEST_BIG_BYTES) {
		assert_int_equal(
		    dkim_buf_adds(
			&b, lines[i++ % (sizeof(lines) / sizeof(lines[0]))]),
		    0);
		assert_int_equal(dkim_buf_add(&b, "\r\n", 2), 0);
	}
	assert_int_equal(dkim_buf_adds(&b, "last line\r\n  \r\n\r\n\r\n"), 0);
	test_add_msg("big10mb.eml", b.data, b.len);
}

static int
test_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_load_corpus(void)
{
	static const char *const files[] = { "basic.eml",
					     "blank_lines_body.eml",
					     "crlf_lines.eml",
					     "dot_line.eml",
					     "empty_body.eml",
					     "empty_values.eml",
					     "folded.eml",
					     "headers_only.eml",
					     "leading_blank_body.eml",
					     "long_line.eml",
					     "multipart.eml",
					     "odd_case.eml",
					     "repeated.eml",
					     "tabs_spaces.eml",
					     "trailing_ws.eml",
					     "utf8_body.eml",
					     "utf8_headers.eml",
					     "wsp_before_colon.eml" };
	char path[TEST_PATH_MAX];
	const char *sorted[sizeof(files) / sizeof(files[0])];
	uint8_t *data;
	size_t i, len;

	memcpy(sorted, files, sizeof(files));
	qsort(sorted, sizeof(files) / sizeof(files[0]), sizeof(char *),
	      test_name_cmp);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		test_path(path, "%s/%s", DKIM_TEST_CORPUS, sorted[i]);
		CHECK(test_read(path, &data, &len) == 0, "%s: unreadable",
		      path);
		test_add_msg(sorted[i], data, len);
	}
	test_make_big();
}

static void
test_write_keys_file(void)
{
	char line[2048];
	struct dkim_buf b = { NULL, 0, 0 };

	(void)snprintf(line, sizeof(line), "rsa._domainkey.%s\t%s\n",
		       TEST_DOMAIN, env.rsa_txt);
	assert_int_equal(dkim_buf_adds(&b, line), 0);
	(void)snprintf(line, sizeof(line), "ed._domainkey.%s\t%s\n",
		       TEST_DOMAIN, env.ed_txt);
	assert_int_equal(dkim_buf_adds(&b, line), 0);
	test_path(env.keys, "%s/keys.txt", env.dir);
	test_write(env.keys, b.data, b.len, 0600);
	dkim_buf_free(&b);
}

static int
group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char err[256];
	int rc;

	(void)state;
	test_path(env.dir, "%s/dkim_sign_test.XXXXXX",
		  tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(env.dir) == NULL)
		return -1;
	/* Keys must not load before the secure heap exists. */
	env.load_before_init_rc =
	    dkim_key_load("/nonexistent", &env.rsa, env.load_before_init_err,
			  sizeof(env.load_before_init_err));
	rc = dkim_keys_init(0, err, sizeof(err));
	if (rc == 1)
		print_message("note: %s\n", err);
	if (rc < 0) {
		print_message("dkim_keys_init: %s\n", err);
		return -1;
	}
	test_path(env.rsa_pem, "%s/keys/example.com/rsa.pem", env.dir);
	test_path(env.ed_pem, "%s/keys/example.com/ed.pem", env.dir);
	if (dkim_key_generate(env.rsa_pem, DKIM_ALG_RSA_SHA256, 2048,
			      &env.rsa_txt, err, sizeof(err)) != 0 ||
	    dkim_key_generate(env.ed_pem, DKIM_ALG_ED25519_SHA256, 0,
			      &env.ed_txt, err, sizeof(err)) != 0 ||
	    dkim_key_load(env.rsa_pem, &env.rsa, err, sizeof(err)) != 0 ||
	    dkim_key_load(env.ed_pem, &env.ed, err, sizeof(err)) != 0) {
		print_message("keys: %s\n", err);
		return -1;
	}
	test_write_keys_file();
	test_load_corpus();
	return 0;
}

static int
group_teardown(void **state)
{
	size_t i;
	const char *keep = getenv("DKIM_TEST_KEEP");

	(void)state;
	dkim_key_free(env.rsa);
	dkim_key_free(env.ed);
	free(env.rsa_txt);
	free(env.ed_txt);
	for (i = 0; i < env.nmsgs; i++)
		free(env.msgs[i]);
	if (keep != NULL && *keep == '1')
		print_message("kept %s\n", env.dir);
	else if (env.dir[0] != '\0')
		test_rmtree(env.dir);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Signing helper                                                          */

static const char *const test_canon_names[2] = { "simple", "relaxed" };

/*
 * test_sign_plain — our field for message I, or NULL with ERR: no cmocka
 * calls, so that threads may use it.
 */
static char *
test_sign_plain(size_t i, const struct dkim_key *k, const char *sel,
		enum dkim_canon hc, enum dkim_canon bc, int custom, char *err,
		size_t errlen)
{
	struct dkim_sign_params p;
	struct dkim_msg m;
	char bh[45], *out = NULL;
	size_t outlen = 0;

	if (dkim_msg_parse(env.msgs[i], env.lens[i], &m, err, errlen) != 0)
		return NULL;
	dkim_body_hash(&m, bc, bh);
	memset(&p, 0, sizeof(p));
	p.domain = TEST_DOMAIN;
	p.selector = sel;
	p.key = k;
	p.hcanon = hc;
	p.bcanon = bc;
	p.timestamp = TEST_TIME;
	p.sign_headers = custom ? test_custom_sign : NULL;
	p.oversign_headers = custom ? test_custom_over : NULL;
	p.expire_s = custom ? TEST_TTL : 0;
	if (dkim_sign(&m, bh, &p, &out, &outlen, err, errlen) == 0 &&
	    outlen != strlen(out)) {
		(void)snprintf(err, errlen, "outlen %zu", outlen);
		free(out);
		out = NULL;
	}
	dkim_msg_clear(&m);
	return out;
}

/* Our field for message I (the test fails when there is none). */
static char *
test_sign(size_t i, const struct dkim_key *k, const char *sel,
	  enum dkim_canon hc, enum dkim_canon bc, int custom)
{
	char err[256], *out;

	out = test_sign_plain(i, k, sel, hc, bc, custom, err, sizeof(err));
	CHECK(out != NULL, "%s: %s", env.names[i], err);
	return out;
}

static void
test_join(struct dkim_buf *b, const char *const *v)
{
	size_t i;

	for (i = 0; v[i] != NULL; i++) {
		if (i > 0)
			assert_int_equal(dkim_buf_addc(b, ':'), 0);
		assert_int_equal(dkim_buf_adds(b, v[i]), 0);
	}
}

/* ---------------------------------------------------------------------- */
/* RSA: byte-identical to libopendkim                                      */

static void
test_identical_config(int custom)
{
	char *argv[TEST_MAX_MSGS + 16], canon[32], t[32], path[TEST_PATH_MAX];
	char paths[TEST_MAX_MSGS][TEST_PATH_MAX], out[TEST_PATH_MAX];
	struct dkim_buf sign = { NULL, 0, 0 }, over = { NULL, 0, 0 };
	char *ours, bh_ours[64], bh_ed[64];
	uint8_t *theirs;
	size_t i, n, tlen;
	int hc, bc, argc, rc, mismatches = 0;

	test_join(&sign, custom ? test_custom_sign : dkim_default_sign_headers);
	test_join(&over,
		  custom ? test_custom_over : dkim_default_oversign_headers);
	/* The custom configuration also has x= (libopendkim's SIGNATURETTL). */
	(void)snprintf(t, sizeof(t), custom ? "%lld+%d" : "%lld",
		       (long long)TEST_TIME, TEST_TTL);
	for (hc = 0; hc < 2; hc++)
		for (bc = 0; bc < 2; bc++) {
			(void)snprintf(canon, sizeof(canon), "%s/%s",
				       test_canon_names[hc],
				       test_canon_names[bc]);
			argc = 0;
			argv[argc++] = (char *)DKIM_TEST_ORACLE;
			argv[argc++] = (char *)"sign";
			argv[argc++] = env.rsa_pem;
			argv[argc++] = (char *)"rsa";
			argv[argc++] = (char *)TEST_DOMAIN;
			argv[argc++] = canon;
			argv[argc++] = t;
			argv[argc++] = (char *)sign.data;
			argv[argc++] = (char *)over.data;
			for (i = 0; i < env.nmsgs; i++) {
				test_path(paths[i], "%s/id%d%d%d_%s", env.dir,
					  custom, hc, bc, env.names[i]);
				test_write(paths[i], env.msgs[i], env.lens[i],
					   0600);
				argv[argc++] = paths[i];
			}
			argv[argc] = NULL;
			test_path(out, "%s/oracle_sign.out", env.dir);
			rc = test_run(argv, out);
			CHECK(rc == 0, "dkim_oracle sign %s exited %d", canon,
			      rc);
			for (i = 0; i < env.nmsgs; i++) {
				ours = test_sign(i, env.rsa, "rsa",
						 (enum dkim_canon)hc,
						 (enum dkim_canon)bc, custom);
				test_path(path, "%s.lsig", paths[i]);
				CHECK(test_read(path, &theirs, &tlen) == 0,
				      "%s: no libopendkim signature", path);
				if (tlen != strlen(ours) ||
				    memcmp(theirs, ours, tlen) != 0) {
					/* Separately: print_message()
					 * truncates long output. */
					print_message(
					    "MISMATCH %s %s%s\nours:\n",
					    env.names[i], canon,
					    custom ? " custom lists" : "");
					print_message("%s", ours);
					print_message("libopendkim:\n");
					print_message("%s", (char *)theirs);
					mismatches++;
				}
				/* Ed25519's bh= is libopendkim's bh=. */
				free(ours);
				ours = test_sign(i, env.ed, "ed",
						 (enum dkim_canon)hc,
						 (enum dkim_canon)bc, custom);
				test_tag((char *)theirs, "bh", bh_ours,
					 sizeof(bh_ours));
				test_tag(ours, "bh", bh_ed, sizeof(bh_ed));
				CHECK(strlen(bh_ours) == 44 &&
					  strcmp(bh_ours, bh_ed) == 0,
				      "%s %s: bh= %s (Ed25519) vs %s "
				      "(libopendkim)",
				      env.names[i], canon, bh_ed, bh_ours);
				free(ours);
				free(theirs);
			}
		}
	n = env.nmsgs * 4;
	print_message("RSA-2048 %s lists: %zu signatures compared with "
		      "libopendkim, %d different\n",
		      custom ? "custom" : "default", n, mismatches);
	assert_int_equal(mismatches, 0);
	dkim_buf_free(&sign);
	dkim_buf_free(&over);
}

static void
test_rsa_identical_default(void **state)
{
	(void)state;
	test_identical_config(0);
}

static void
test_rsa_identical_custom(void **state)
{
	(void)state;
	test_identical_config(1);
}

/* ---------------------------------------------------------------------- */
/* Both algorithms verify with libopendkim and python3-dkim; tampered
 * copies fail with both.                                                  */

enum { TV_SIGNED, TV_BODY, TV_FROM, TV_HDR, TV__COUNT };
static const char *const test_variant[TV__COUNT] = { "signed", "tampered-body",
						     "added-from",
						     "changed-header" };

/* Offset of the value of the first field NAME at or after FROM in B. */
static size_t
test_field_value(const struct dkim_buf *b, size_t from, const char *name)
{
	size_t at, n = strlen(name);

	for (at = from; at + n < b->len; at++) {
		if ((at != from && b->data[at - 1] != '\n') ||
		    strncasecmp((const char *)b->data + at, name, n) != 0)
			continue;
		at += n;
		while (at < b->len &&
		       (b->data[at] == ' ' || b->data[at] == '\t'))
			at++;
		if (at >= b->len || b->data[at] != ':')
			continue;
		at++;
		while (at < b->len &&
		       (b->data[at] == ' ' || b->data[at] == '\t' ||
			b->data[at] == '\r' || b->data[at] == '\n'))
			at++;
		return at;
	}
	return b->len;
}

/*
 * test_tamper — the signed message with one change a verifier must catch:
 * a line added to the body, a second From on top (over-signing), or one
 * octet of the first signed field's value changed.
 */
static void
test_tamper(int v, const char *sig, size_t i, struct dkim_buf *b)
{
	const uint8_t *m = env.msgs[i];
	size_t len = env.lens[i], at;

	b->len = 0;
	if (v == TV_FROM)
		assert_int_equal(
		    dkim_buf_adds(b,
				  "From: \"Evil\" <evil@attacker.example>\r\n"),
		    0);
	assert_int_equal(dkim_buf_adds(b, sig), 0);
	assert_int_equal(dkim_buf_add(b, m, len), 0);
	if (v == TV_BODY) {
		if (test_memmem(m, len, "\r\n\r\n") == NULL &&
		    (len < 2 || memcmp(m, "\r\n", 2) != 0))
			assert_int_equal(dkim_buf_add(b, "\r\n", 2), 0);
		assert_int_equal(dkim_buf_adds(b, "tampered\r\n"), 0);
	}
	if (v == TV_HDR) {
		/* From's value (From is always signed): one octet changed. */
		at = test_field_value(b, strlen(sig), "from");
		assert_true(at < b->len);
		b->data[at] = b->data[at] == 'X' ? 'Y' : 'X';
	}
}

static int
test_is_big(size_t i)
{
	return env.lens[i] >= TEST_BIG_BYTES;
}

/*
 * Which files python3-dkim does not judge: its parser refuses obs-syntax
 * WSP before the colon (RFC 5322 4.5.3: libopendkim alone judges those),
 * and it takes 0.6 s per 10 MB (signed and tampered-body only).
 */
static int
test_py_skip(const char *path)
{
	if (strstr(path, "wsp_before_colon") != NULL)
		return 1;
	return strstr(path, "big10mb") != NULL &&
	       strstr(path, "_signed_") == NULL &&
	       strstr(path, "_tampered-body_") == NULL;
}

static void
test_verify_all(void **state)
{
	static char paths[TEST_MAX_MSGS * 4 * 2 * TV__COUNT][TEST_PATH_MAX];
	char **argv, out[TEST_PATH_MAX], *sig, *py_out, *lo_out;
	struct dkim_buf b = { NULL, 0, 0 };
	size_t i, np = 0, olen, k, n;
	int alg, hc, bc, v, want, got_py, got_lo, bad = 0;
	uint8_t *o;

	(void)state;
	for (alg = 0; alg < 2; alg++)
		for (hc = 0; hc < 2; hc++)
			for (bc = 0; bc < 2; bc++)
				for (i = 0; i < env.nmsgs; i++) {
					/* 10 MB × 24 costs python3-dkim
					 * 15 s: the big body gets the two
					 * symmetric pairs only. */
					if (hc != bc && test_is_big(i))
						continue;
					sig = test_sign(
					    i, alg == 0 ? env.rsa : env.ed,
					    alg == 0 ? "rsa" : "ed",
					    (enum dkim_canon)hc,
					    (enum dkim_canon)bc, 0);
					for (v = 0; v < TV__COUNT; v++) {
						test_tamper(v, sig, i, &b);
						test_path(paths[np],
							  "%s/v_%s_%s_%s_%s_%s",
							  env.dir,
							  alg == 0 ? "rsa"
								   : "ed25519",
							  test_canon_names[hc],
							  test_canon_names[bc],
							  test_variant[v],
							  env.names[i]);
						test_write(paths[np], b.data,
							   b.len, 0600);
						np++;
					}
					free(sig);
				}
	dkim_buf_free(&b);
	argv = calloc(np + 4, sizeof(*argv));
	assert_non_null(argv);

	argv[0] = (char *)DKIM_TEST_PYTHON;
	argv[1] = (char *)DKIM_TEST_VERIFY_PY;
	argv[2] = env.keys;
	for (k = 0, n = 3; k < np; k++)
		if (!test_py_skip(paths[k]))
			argv[n++] = paths[k];
	argv[n] = NULL;
	test_path(out, "%s/python.out", env.dir);
	CHECK(test_run(argv, out) == 0, "dkim_verify.py failed to run");
	CHECK(test_read(out, &o, &olen) == 0, "no python output");
	py_out = (char *)o;

	argv[0] = (char *)DKIM_TEST_ORACLE;
	argv[1] = (char *)"verify";
	for (k = 0; k < np; k++)
		argv[3 + k] = paths[k];
	argv[3 + np] = NULL;
	test_path(out, "%s/oracle_verify.out", env.dir);
	CHECK(test_run(argv, out) == 0, "dkim_oracle verify failed to run");
	CHECK(test_read(out, &o, &olen) == 0, "no oracle output");
	lo_out = (char *)o;

	for (k = 0; k < np; k++) {
		want = strstr(paths[k], "_signed_") != NULL;
		got_py = test_py_skip(paths[k])
			     ? want
			     : test_verdict(py_out, paths[k]);
		got_lo = test_verdict(lo_out, paths[k]);
		if (got_py != want) {
			print_message("python3-dkim: want %s: %s\n",
				      want ? "pass" : "fail",
				      test_verdict_line(py_out, paths[k]));
			bad++;
		}
		if (got_lo != want) {
			print_message("libopendkim: want %s: %s\n",
				      want ? "pass" : "fail",
				      test_verdict_line(lo_out, paths[k]));
			bad++;
		}
	}
	print_message("verified %zu messages (RSA-2048 and Ed25519, 4 "
		      "canonicalizations, signed and 3 tamperings) with "
		      "python3-dkim and libopendkim: %d wrong verdicts\n",
		      np, bad);
	assert_int_equal(bad, 0);
	free(py_out);
	free(lo_out);
	free(argv);
}

/* ---------------------------------------------------------------------- */
/* Keys                                                                    */

static void
test_key_init_first(void **state)
{
	(void)state;
	assert_int_equal(env.load_before_init_rc, -1);
	assert_true(CRYPTO_secure_malloc_initialized());
	assert_non_null(strstr(env.load_before_init_err,
			       "dkim_keys_init() must be called"));
}

static void
test_write_pkey(const char *path, EVP_PKEY *pk, int traditional,
		const char *pass, mode_t mode)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	long n;

	assert_non_null(bio);
	if (pass != NULL)
		assert_int_equal(
		    PEM_write_bio_PKCS8PrivateKey(bio, pk, EVP_aes_256_cbc(),
						  NULL, 0, NULL, (void *)pass),
		    1);
	else if (traditional)
		assert_int_equal(PEM_write_bio_PrivateKey_traditional(
				     bio, pk, NULL, NULL, 0, NULL, NULL),
				 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL,
							  0, NULL, NULL),
				 1);
	n = BIO_get_mem_data(bio, &p);
	test_write(path, p, (size_t)n, mode);
	BIO_free(bio);
}

static void
test_key_load_refusals(void **state)
{
	char path[TEST_PATH_MAX], want[TEST_PATH_MAX + 128], err[512];
	struct dkim_key *k = NULL;
	uint8_t *pem;
	size_t len, used;
	EVP_PKEY *pk;

	(void)state;
	assert_int_equal(test_read(env.ed_pem, &pem, &len), 0);

	/* Mode: group or others may not even read it. */
	test_path(path, "%s/mode.pem", env.dir);
	test_write(path, pem, len, 0644);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	(void)snprintf(
	    want, sizeof(want),
	    "%s: mode 0644, must not be accessible by group or others", path);
	assert_string_equal(err, want);
	assert_null(k);
	test_write(path, pem, len, 0640);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "mode 0640"));
	test_write(path, pem, len, 0400);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), 0);
	assert_int_equal(dkim_key_alg(k), DKIM_ALG_ED25519_SHA256);
	assert_int_equal(dkim_key_bits(k), 256);
	dkim_key_free(k);
	k = NULL;

	/* Not a key: garbage, empty, truncated PEM, a directory, nothing. */
	test_path(path, "%s/bad.pem", env.dir);
	test_write(path, "this is not a key\n", 18, 0600);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an unencrypted PEM private key"));
	test_write(path, "", 0, 0600);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	test_write(path, pem, len / 2, 0600);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_int_equal(dkim_key_load(env.dir, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	test_path(path, "%s/missing.pem", env.dir);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	free(pem);

	/* RSA under 1024 bits refused; 1024 accepted; traditional PEM. */
	test_path(path, "%s/rsa768.pem", env.dir);
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)768);
	assert_non_null(pk);
	test_write_pkey(path, pk, 0, NULL, 0600);
	EVP_PKEY_free(pk);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "RSA key of 768 bits"));
	test_path(path, "%s/rsa1024.pem", env.dir);
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(pk);
	test_write_pkey(path, pk, 1, NULL, 0600);
	used = CRYPTO_secure_used();
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), 0);
	/* The private parts went to OpenSSL's secure heap. */
	CHECK(CRYPTO_secure_used() >= used + 5 * 64,
	      "secure heap grew by %zu bytes only",
	      CRYPTO_secure_used() - used);
	assert_int_equal(dkim_key_alg(k), DKIM_ALG_RSA_SHA256);
	assert_int_equal(dkim_key_bits(k), 1024);
	dkim_key_free(k);
	k = NULL;

	/* Encrypted: refused, never prompting. */
	test_path(path, "%s/enc.pem", env.dir);
	test_write_pkey(path, pk, 0, "secret", 0600);
	EVP_PKEY_free(pk);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an unencrypted PEM private key"));

	/* Other key types. */
	test_path(path, "%s/ec.pem", env.dir);
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(pk);
	test_write_pkey(path, pk, 0, NULL, 0600);
	EVP_PKEY_free(pk);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unsupported key type"));
	ERR_clear_error();
}

static void
test_b64_decode(const char *b64, uint8_t *out, size_t *n)
{
	int w =
	    EVP_DecodeBlock(out, (const unsigned char *)b64, (int)strlen(b64));
	size_t len = strlen(b64);

	assert_true(w >= 0);
	*n = (size_t)w;
	while (len > 0 && b64[len - 1] == '=') {
		(*n)--;
		len--;
	}
}

static void
test_keygen(void **state)
{
	char path[TEST_PATH_MAX], err[512], *txt = NULL, *again;
	struct dkim_key *k = NULL;
	const unsigned char *q;
	uint8_t raw[1024];
	struct stat st;
	EVP_PKEY *pk;
	uint8_t *pem;
	size_t n, len;

	(void)state;
	/* The keys the other tests use were made by dkim_key_generate():
	 * parents 0700, files 0600, PKCS#8 PEM. */
	test_path(path, "%s/keys", env.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(env.rsa_pem, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(env.ed_pem, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(test_read(env.ed_pem, &pem, &len), 0);
	assert_memory_equal(pem, "-----BEGIN PRIVATE KEY-----\n", 28);
	free(pem);
	assert_int_equal(dkim_key_bits(env.rsa), 2048);

	/* TXT: RSA p= is the SubjectPublicKeyInfo DER. */
	assert_int_equal(strncmp(env.rsa_txt, "v=DKIM1; k=rsa; p=", 18), 0);
	test_b64_decode(env.rsa_txt + 18, raw, &n);
	q = raw;
	pk = d2i_PUBKEY(NULL, &q, (long)n);
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_get_bits(pk), 2048);
	EVP_PKEY_free(pk);
	again = dkim_key_txt(env.rsa);
	assert_string_equal(again, env.rsa_txt);
	free(again);

	/* Ed25519 p= is the raw 32-octet key (RFC 8463). */
	assert_int_equal(strncmp(env.ed_txt, "v=DKIM1; k=ed25519; p=", 22), 0);
	assert_int_equal(strlen(env.ed_txt + 22), 44);
	test_b64_decode(env.ed_txt + 22, raw, &n);
	assert_int_equal(n, 32);
	again = dkim_key_txt(env.ed);
	assert_string_equal(again, env.ed_txt);
	free(again);

	/* O_EXCL: an existing key is never overwritten. */
	assert_int_equal(test_read(env.rsa_pem, &pem, &len), 0);
	assert_int_equal(dkim_key_generate(env.rsa_pem, DKIM_ALG_RSA_SHA256,
					   1024, &txt, err, sizeof(err)),
			 -1);
	assert_null(txt);
	assert_non_null(strstr(err, "File exists"));
	{
		uint8_t *now;
		size_t nlen;

		assert_int_equal(test_read(env.rsa_pem, &now, &nlen), 0);
		assert_int_equal(nlen, len);
		assert_memory_equal(now, pem, len);
		free(now);
	}
	free(pem);

	/* Sizes. */
	test_path(path, "%s/small.pem", env.dir);
	assert_int_equal(dkim_key_generate(path, DKIM_ALG_RSA_SHA256, 512, &txt,
					   err, sizeof(err)),
			 -1);
	assert_int_equal(access(path, F_OK), -1);

	/* A fresh Ed25519 key round trip: generate, load, same TXT. */
	test_path(path, "%s/deep/er/ed2.pem", env.dir);
	assert_int_equal(dkim_key_generate(path, DKIM_ALG_ED25519_SHA256, 0,
					   &txt, err, sizeof(err)),
			 0);
	assert_int_equal(dkim_key_load(path, &k, err, sizeof(err)), 0);
	again = dkim_key_txt(k);
	assert_string_equal(again, txt);
	free(again);
	free(txt);
	dkim_key_free(k);
}

/* ---------------------------------------------------------------------- */
/* Parser                                                                  */

static const struct msg_case {
	const char *name;
	const char *in;
	size_t len; /* 0: strlen(in) */
	int ok;
	size_t nhdrs;
	long body_off; /* -1: at the end */
} msg_cases[] = {
	{ "simple", "A: 1\r\nB: 2\r\n\r\nbody\r\n", 0, 1, 2, 14 },
	{ "folded", "A: 1\r\n 2\r\n\t3\r\nB: x\r\n\r\n", 0, 1, 2, 22 },
	{ "no blank line", "A: 1\r\nB: 2\r\n", 0, 1, 2, -1 },
	{ "unterminated field", "A: 1", 0, 1, 1, -1 },
	{ "empty message", "", 0, 1, 0, -1 },
	{ "no headers", "\r\nbody\r\n", 0, 1, 0, 2 },
	{ "wsp before colon", "Subject \t: x\r\n\r\n", 0, 1, 1, 16 },
	{ "empty value", "Cc:\r\n\r\n", 0, 1, 1, 7 },
	{ "8-bit value", "Subject: \xc3\x9c\r\n\r\n", 0, 1, 1, 15 },
	{ "bare LF in body", "A: 1\r\n\r\nx\ny\rz\r\n", 0, 1, 1, 8 },
	{ "whitespace line folds", "A: 1\r\n \r\n\r\n", 0, 1, 1, 11 },
	{ "continuation first", " A: 1\r\n\r\n", 0, 0, 0, 0 },
	{ "no colon", "A 1\r\n\r\n", 0, 0, 0, 0 },
	{ "empty name", ": x\r\n\r\n", 0, 0, 0, 0 },
	{ "space in name", "A B: x\r\n\r\n", 0, 0, 0, 0 },
	{ "8-bit name", "\xc3\x84: x\r\n\r\n", 0, 0, 0, 0 },
	{ "bare LF", "A: 1\nB: 2\r\n\r\n", 0, 0, 0, 0 },
	{ "bare CR", "A: 1\rB: 2\r\n\r\n", 0, 0, 0, 0 },
	{ "CR at the end", "A: 1\r", 0, 0, 0, 0 },
	{ "NUL in header", "A: 1\0x\r\n\r\n", 10, 0, 0, 0 },
	{ "colon on the next line", "Subject\r\n : x\r\n\r\n", 0, 0, 0, 0 },
};

static void
test_msg_parse(void **state)
{
	const struct msg_case *c;
	struct dkim_msg m;
	char err[256];
	size_t i, j, len;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(msg_cases) / sizeof(msg_cases[0]); i++) {
		c = &msg_cases[i];
		len = c->len != 0 ? c->len : strlen(c->in);
		err[0] = '\0';
		rc = dkim_msg_parse((const uint8_t *)c->in, len, &m, err,
				    sizeof(err));
		CHECK((rc == 0) == c->ok, "%s: rc %d (%s)", c->name, rc, err);
		if (!c->ok) {
			CHECK(err[0] != '\0' && m.hdrs == NULL && m.nhdrs == 0,
			      "%s: error state", c->name);
			continue;
		}
		CHECK(m.nhdrs == c->nhdrs, "%s: %zu fields, want %zu", c->name,
		      m.nhdrs, c->nhdrs);
		CHECK(m.body_off ==
			  (c->body_off < 0 ? len : (size_t)c->body_off),
		      "%s: body at %zu, want %ld", c->name, m.body_off,
		      c->body_off);
		for (j = 0; j < m.nhdrs; j++) {
			const struct dkim_header *h = &m.hdrs[j];
			const char *f = h->field;

			CHECK(f >= c->in && f + h->len <= c->in + len &&
				  h->name_len > 0 && h->name_len < h->len &&
				  memchr(f + h->name_len, ':',
					 h->len - h->name_len) != NULL &&
				  (h->len < 2 || f[h->len - 1] != '\n'),
			      "%s: field %zu", c->name, j);
		}
		dkim_msg_clear(&m);
	}
}

static void
test_msg_find(void **state)
{
	static const char msg[] = "Received: a\r\nsubject: one\r\n"
				  "From: x@example.com\r\nSUBJECT : two\r\n"
				  "Received: b\r\n folded\r\n\r\nbody\r\n";
	struct dkim_msg m;
	const struct dkim_header *h;
	char err[128];

	(void)state;
	assert_int_equal(dkim_msg_parse((const uint8_t *)msg, sizeof(msg) - 1,
					&m, err, sizeof(err)),
			 0);
	assert_int_equal(m.nhdrs, 5);
	assert_int_equal(dkim_header_count(&m, "Subject"), 2);
	assert_int_equal(dkim_header_count(&m, "received"), 2);
	assert_int_equal(dkim_header_count(&m, "To"), 0);
	h = dkim_header_find(&m, "subject", 1);
	assert_non_null(h);
	assert_int_equal(h->len, strlen("SUBJECT : two"));
	assert_int_equal(h->name_len, 7);
	h = dkim_header_find(&m, "RECEIVED", 1);
	assert_non_null(h);
	assert_int_equal(h->len, strlen("Received: b\r\n folded"));
	assert_null(dkim_header_find(&m, "Subject", 2));
	assert_null(dkim_header_find(&m, "Subj", 0));
	dkim_msg_clear(&m);
	dkim_msg_clear(&m); /* idempotent */
}

/* ---------------------------------------------------------------------- */
/* Canonicalization                                                        */

static const struct body_case {
	const char *in, *simple, *relaxed;
} body_cases[] = {
	{ "", "\r\n", "" },
	{ "\r\n", "\r\n", "" },
	{ "\r\n\r\n\r\n", "\r\n", "" },
	/* RFC 6376 3.4.5 */
	{ " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n", " C\r\nD E\r\n" },
	{ "abc", "abc\r\n", "abc\r\n" },
	{ "abc  ", "abc  \r\n", "abc\r\n" },
	{ "a  \r\n  \r\n", "a  \r\n  \r\n", "a\r\n" },
	{ ".\r\n", ".\r\n", ".\r\n" },
	{ "\r\n\r\nx\r\n", "\r\n\r\nx\r\n", "\r\n\r\nx\r\n" },
	{ "x\r\n \t \r\ny\r\n", "x\r\n \t \r\ny\r\n", "x\r\n\r\ny\r\n" },
	{ "x\ny\r\n", "x\ny\r\n", "x\ny\r\n" },
	{ "x\r\r\n", "x\r\r\n", "x\r\r\n" },
	{ "\t\tlead\r\n", "\t\tlead\r\n", " lead\r\n" },
	{ "\xc3\xa9  \xc3\xa9 \r\n", "\xc3\xa9  \xc3\xa9 \r\n",
	  "\xc3\xa9 \xc3\xa9\r\n" },
};

static void
test_canon_body_cases(void **state)
{
	struct dkim_buf b = { NULL, 0, 0 };
	size_t i;
	int c;

	(void)state;
	for (i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++)
		for (c = 0; c < 2; c++) {
			const char *want = c == 0 ? body_cases[i].simple
						  : body_cases[i].relaxed;

			b.len = 0;
			assert_int_equal(
			    dkim_canon_body_write(
				&b, (const uint8_t *)body_cases[i].in,
				strlen(body_cases[i].in), (enum dkim_canon)c),
			    0);
			CHECK(
			    b.len == strlen(want) &&
				memcmp(b.data != NULL ? b.data : (uint8_t *)"",
				       want, b.len) == 0,
			    "body case %zu %s: got \"%.*s\"", i,
			    test_canon_names[c], (int)b.len,
			    b.data != NULL ? (char *)b.data : "");
		}
	dkim_buf_free(&b);
}

/* The relaxed body rules written plainly, line by line: the model. */
static void
test_relaxed_model(const uint8_t *in, size_t len, struct dkim_buf *out)
{
	size_t i = 0, s, e, blanks = 0, k;
	int space;

	while (i < len) {
		s = i;
		while (i < len &&
		       !(in[i] == '\r' && i + 1 < len && in[i + 1] == '\n'))
			i++;
		e = i;
		i = i < len ? i + 2 : len;
		while (e > s && (in[e - 1] == ' ' || in[e - 1] == '\t'))
			e--;
		if (e == s) {
			blanks++;
			continue;
		}
		for (; blanks > 0; blanks--)
			assert_int_equal(dkim_buf_add(out, "\r\n", 2), 0);
		space = 0;
		for (k = s; k < e; k++) {
			if (in[k] == ' ' || in[k] == '\t') {
				space = 1;
				continue;
			}
			if (space)
				assert_int_equal(dkim_buf_addc(out, ' '), 0);
			space = 0;
			assert_int_equal(dkim_buf_addc(out, in[k]), 0);
		}
		assert_int_equal(dkim_buf_add(out, "\r\n", 2), 0);
	}
}

static void
test_canon_body_model(void **state)
{
	/* Short lines, many WSP runs; and text: long lines, mostly single
	 * spaces (the 8-octet fast path), now and then a run or a TAB. */
	static const char *const alphabets[2] = {
		"ab \t\r\n\r\n  \xc3.",
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ        \t\xc3\x9c."
	};
	const char *alphabet;
	size_t alen;
	struct dkim_buf got = { NULL, 0, 0 }, want = { NULL, 0, 0 };
	uint8_t *in;
	uint32_t x = 12345;
	size_t round, len, i;

	(void)state;
	in = malloc(200000);
	assert_non_null(in);
	for (round = 0; round < 400; round++) {
		/* Some inputs cross the 64 KB output chunk. */
		len = round % 50 == 0 ? 150000 + round : (round * 7) % 600;
		alphabet = alphabets[round % 2];
		alen = strlen(alphabet);
		for (i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = (uint8_t)alphabet[(x >> 16) % alen];
			if (round % 2 == 1 && (x >> 8) % 97 == 0 &&
			    i + 1 < len) {
				in[i++] = '\r';
				in[i] = '\n';
			}
			/* Two WSP in a row now and then, not always. */
			if (round % 2 == 1 && in[i] == ' ' && (x >> 9) % 3 != 0)
				in[i] = (uint8_t)('a' + (x >> 20) % 26);
		}
		got.len = want.len = 0;
		assert_int_equal(
		    dkim_canon_body_write(&got, in, len, DKIM_CANON_RELAXED),
		    0);
		test_relaxed_model(in, len, &want);
		CHECK(got.len == want.len &&
			  (got.len == 0 ||
			   memcmp(got.data, want.data, got.len) == 0),
		      "relaxed body differs from the model, round %zu", round);
		{
			uint8_t d1[32], d2[32];

			assert_int_equal(dkim_canon_body_sha256(
					     in, len, DKIM_CANON_RELAXED, d1),
					 0);
			assert_int_equal(dkim_sha256(want.data != NULL
							 ? want.data
							 : (uint8_t *)"",
						     want.len, d2),
					 0);
			assert_memory_equal(d1, d2, 32);
		}
	}
	free(in);
	dkim_buf_free(&got);
	dkim_buf_free(&want);
}

static const struct hdr_case {
	const char *field;
	size_t name_len;
	const char *relaxed;
} hdr_cases[] = {
	/* RFC 6376 3.4.5 */
	{ "A: X", 1, "a:X" },
	{ "B : Y\t\r\n\tZ  ", 1, "b:Y Z" },
	{ "Subject:    lots   of\t\tspace   ", 7, "subject:lots of space" },
	{ "Cc:", 2, "cc:" },
	{ "Subject:    ", 7, "subject:" },
	{ "To:\r\n\talice", 2, "to:alice" },
	{ "X: a: b", 1, "x:a: b" },
	{ "Subject: \xc3\x9c  x", 7, "subject:\xc3\x9c x" },
	{ "MiXeD-Case:V a L", 10, "mixed-case:V a L" },
};

static void
test_canon_header_cases(void **state)
{
	struct dkim_buf b = { NULL, 0, 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(hdr_cases) / sizeof(hdr_cases[0]); i++) {
		const struct hdr_case *c = &hdr_cases[i];

		b.len = 0;
		assert_int_equal(dkim_canon_header(&b, DKIM_CANON_RELAXED,
						   c->field, strlen(c->field),
						   c->name_len),
				 0);
		CHECK(strcmp((char *)b.data, c->relaxed) == 0,
		      "header %zu: \"%s\", want \"%s\"", i, (char *)b.data,
		      c->relaxed);
		b.len = 0;
		assert_int_equal(dkim_canon_header(&b, DKIM_CANON_SIMPLE,
						   c->field, strlen(c->field),
						   c->name_len),
				 0);
		assert_string_equal((char *)b.data, c->field);
	}
	/* No colon after the name: refused. */
	assert_int_equal(dkim_canon_header(&b, DKIM_CANON_RELAXED, "A x", 3, 1),
			 -1);
	dkim_buf_free(&b);
}

static void
test_body_hash_vectors(void **state)
{
	static const uint8_t empty_msg[] = "From: a@example.com\r\n\r\n";
	struct dkim_msg m;
	char bh[45], err[64];

	(void)state;
	assert_int_equal(dkim_msg_parse(empty_msg, sizeof(empty_msg) - 1, &m,
					err, sizeof(err)),
			 0);
	dkim_body_hash(&m, DKIM_CANON_SIMPLE, bh);
	assert_string_equal(bh, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
	dkim_body_hash(&m, DKIM_CANON_RELAXED, bh);
	assert_string_equal(bh, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	dkim_msg_clear(&m);
}

/* ---------------------------------------------------------------------- */
/* dkim_sign() details                                                     */

static size_t
test_find_msg(const char *name)
{
	size_t i;

	for (i = 0; i < env.nmsgs; i++)
		if (strcmp(env.names[i], name) == 0)
			return i;
	fail_msg("no corpus message %s", name);
	return 0;
}

static void
test_sign_fields(void **state)
{
	char h[1024], *sig;
	const char *p, *line;
	size_t i, col;

	(void)state;
	/* h=: message order, names as written, then one more of each over-
	 * signed name as listed. */
	sig = test_sign(test_find_msg("repeated.eml"), env.rsa, "rsa",
			DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, 0);
	test_tag(sig, "h", h, sizeof(h));
	assert_string_equal(h, "Subject:From:To:Subject:To:Date:"
			       "List-Unsubscribe:Message-ID:List-Unsubscribe:"
			       "From:Subject:List-Unsubscribe:"
			       "List-Unsubscribe-Post");
	assert_int_equal(
	    strncmp(sig,
		    "DKIM-Signature: v=1; a=rsa-sha256; "
		    "c=relaxed/relaxed; d=example.com; s=rsa;\r\n"
		    "\tt=1764388800; bh=",
		    strlen("DKIM-Signature: v=1; a=rsa-sha256; "
			   "c=relaxed/relaxed; d=example.com; s=rsa;\r\n"
			   "\tt=1764388800; bh=")),
	    0);
	free(sig);
	sig = test_sign(test_find_msg("odd_case.eml"), env.ed, "ed",
			DKIM_CANON_SIMPLE, DKIM_CANON_SIMPLE, 1);
	test_tag(sig, "h", h, sizeof(h));
	assert_string_equal(h, "fROM:SUBJECT:tO:x-MAILER:from:x-mailer");
	assert_non_null(strstr(sig, "a=ed25519-sha256;"));

	/* Lines: CRLF TAB continuation, within 80 columns (TAB = 8). */
	assert_int_equal(sig[strlen(sig) - 1], '\n');
	for (line = sig; *line != '\0'; line = p + 2) {
		p = strstr(line, "\r\n");
		assert_non_null(p);
		col = 0;
		for (i = 0; line + i < p; i++)
			col += line[i] == '\t' ? 8 : 1;
		CHECK(col <= 80, "line of %zu columns", col);
		if (line != sig)
			assert_int_equal(line[0], '\t');
	}
	free(sig);
}

static void
test_sign_errors(void **state)
{
	static const uint8_t nofrom[] = "To: a@example.net\r\n\r\nhi\r\n";
	static const char *const badlist[] = { "From", "Bad Name", NULL };
	struct dkim_sign_params p;
	struct dkim_msg m;
	char bh[45], err[256], *out = (char *)"x", h[1024];
	size_t len;

	(void)state;
	assert_int_equal(
	    dkim_msg_parse(nofrom, sizeof(nofrom) - 1, &m, err, sizeof(err)),
	    0);
	dkim_body_hash(&m, DKIM_CANON_RELAXED, bh);
	memset(&p, 0, sizeof(p));
	p.domain = TEST_DOMAIN;
	p.selector = "rsa";
	p.key = env.rsa;
	p.hcanon = p.bcanon = DKIM_CANON_RELAXED;
	p.timestamp = TEST_TIME;
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 -1);
	assert_null(out);
	assert_non_null(strstr(err, "no From field"));
	dkim_msg_clear(&m);

	assert_int_equal(
	    dkim_msg_parse(env.msgs[0], env.lens[0], &m, err, sizeof(err)), 0);
	dkim_body_hash(&m, DKIM_CANON_RELAXED, bh);
	p.domain = "exa mple.com";
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 -1);
	p.domain = TEST_DOMAIN;
	p.selector = "s;x=1";
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 -1);
	p.selector = "rsa";
	p.key = NULL;
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 -1);
	p.key = env.rsa;
	assert_int_equal(
	    dkim_sign(&m, "short", &p, &out, &len, err, sizeof(err)), -1);
	p.sign_headers = badlist;
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 -1);
	p.sign_headers = NULL;
	p.timestamp = -1;
	p.expire_s = 3600;
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "x= needs t="));

	/* No t=; and x= = t + expire. */
	p.expire_s = 0;
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 0);
	test_tag(out, "t", h, sizeof(h));
	assert_string_equal(h, "");
	free(out);
	p.timestamp = TEST_TIME;
	p.expire_s = 86400;
	assert_int_equal(dkim_sign(&m, bh, &p, &out, &len, err, sizeof(err)),
			 0);
	test_tag(out, "x", h, sizeof(h));
	assert_string_equal(h, "1764475200");
	free(out);
	dkim_msg_clear(&m);
}

/* ---------------------------------------------------------------------- */
/* Threads: one key, several signing threads, the same bytes               */

#define TEST_THREADS       4
#define TEST_THREAD_ROUNDS 40

struct test_thread {
	pthread_t tid;
	size_t msg;
	const struct dkim_key *key;
	const char *sel;
	const char *want;
	int bad;
};

static void *
test_thread_main(void *arg)
{
	struct test_thread *t = arg;
	char err[256], *out;
	int r;

	for (r = 0; r < TEST_THREAD_ROUNDS; r++) {
		out =
		    test_sign_plain(t->msg, t->key, t->sel, DKIM_CANON_RELAXED,
				    DKIM_CANON_SIMPLE, r % 2, err, sizeof(err));
		/* Deterministic signatures: any difference is a race. */
		if (out == NULL || (r % 2 == 0 && strcmp(out, t->want) != 0))
			t->bad++;
		free(out);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	struct test_thread th[TEST_THREADS];
	char *want[2];
	size_t msg = test_find_msg("multipart.eml");
	int i, bad = 0;

	(void)state;
	want[0] = test_sign(msg, env.rsa, "rsa", DKIM_CANON_RELAXED,
			    DKIM_CANON_SIMPLE, 0);
	want[1] = test_sign(msg, env.ed, "ed", DKIM_CANON_RELAXED,
			    DKIM_CANON_SIMPLE, 0);
	for (i = 0; i < TEST_THREADS; i++) {
		th[i].msg = msg;
		th[i].key = i % 2 ? env.ed : env.rsa;
		th[i].sel = i % 2 ? "ed" : "rsa";
		th[i].want = want[i % 2];
		th[i].bad = 0;
		assert_int_equal(
		    pthread_create(&th[i].tid, NULL, test_thread_main, &th[i]),
		    0);
	}
	for (i = 0; i < TEST_THREADS; i++) {
		assert_int_equal(pthread_join(th[i].tid, NULL), 0);
		bad += th[i].bad;
	}
	print_message("%d threads x %d signatures on shared keys: %d wrong\n",
		      TEST_THREADS, TEST_THREAD_ROUNDS, bad);
	assert_int_equal(bad, 0);
	free(want[0]);
	free(want[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_init_first),
		cmocka_unit_test(test_msg_parse),
		cmocka_unit_test(test_msg_find),
		cmocka_unit_test(test_canon_body_cases),
		cmocka_unit_test(test_canon_body_model),
		cmocka_unit_test(test_canon_header_cases),
		cmocka_unit_test(test_body_hash_vectors),
		cmocka_unit_test(test_key_load_refusals),
		cmocka_unit_test(test_keygen),
		cmocka_unit_test(test_sign_fields),
		cmocka_unit_test(test_sign_errors),
		cmocka_unit_test(test_rsa_identical_default),
		cmocka_unit_test(test_rsa_identical_custom),
		cmocka_unit_test(test_verify_all),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
