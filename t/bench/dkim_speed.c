/*
 * dkim_speed.c — outpost-dkim-speed: what one DKIM signature costs the
 * signer (dkim/), on one core, in CPU time.  A benchmark, not a test: it
 * asserts nothing (t/unit/dkim_sign_test.c checks the signatures).
 *
 *   outpost-dkim-speed [--seconds S] [--rounds N] [--oracle PATH] [--json]
 *                      [MESSAGE]
 *
 * For MESSAGE (a file, bare LFs made CRLF; default: a 750-byte newsletter
 * like t/unit/dkim_corpus/basic.eml), best of N rounds (default 5) of S
 * CPU-seconds (default 1) each, the loops interleaved since the machine
 * may be shared:
 *   rsa_sign_per_s      parse + relaxed body hash + dkim_sign, RSA-2048
 *   ed25519_sign_per_s  the same with an Ed25519 key
 *   bare_rsa_per_s      a bare RSA-2048 PKCS#1 v1.5 signature (as
 *                       `openssl speed rsa2048` measures it)
 *   rsa_vs_bare         bare_rsa_per_s / rsa_sign_per_s: CPU per signed
 *                       message in bare RSA signatures (goal: <= 1.3)
 *   body_hash_mb_per_s  simple and relaxed body hash of a 10 MB body
 *   opendkim_per_s      with --oracle PATH (the unit tests' dkim_oracle,
 *                       build/tests/dkim_oracle): libopendkim 2.11 signing
 *                       the same message, its key re-parsed per message
 * Keys are made fresh in a temporary directory, removed on exit.  Prints a
 * short report, or with --json one JSON object.  An ASan build runs but its
 * figures mean nothing: use build/tools, not build/tools-asan.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "dkim/dkim.h"

#define BIG_BYTES (10u * 1024 * 1024)

static const char default_msg[] =
    "Received: from client.example (client.example [192.0.2.1])\r\n"
    "\tby mta.example.com with ESMTPSA id 4f2a\r\n"
    "\tfor <alice@example.net>; Sat, 29 Nov 2026 04:00:00 +0000\r\n"
    "From: \"Example News\" <news@example.com>\r\n"
    "To: alice@example.net\r\n"
    "Subject: Your weekly digest\r\n"
    "Date: Sat, 29 Nov 2026 04:00:00 +0000\r\n"
    "Message-ID: <20261129040000.1@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "List-Unsubscribe: <https://example.com/u/abc123>, "
    "<mailto:unsub@example.com?subject=abc123>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "List-Id: Weekly digest <digest.example.com>\r\n"
    "Feedback-ID: 42:campaign7:news:example\r\n"
    "X-Mailer: Outpost bench\r\n"
    "\r\n"
    "Hello Alice,\r\n"
    "\r\n"
    "This is your weekly digest.\r\n"
    "\r\n"
    "-- \r\n"
    "Example News\r\n";

static struct {
	double seconds;
	int rounds;
	const char *oracle;
	bool json;
	char dir[64];
	char rsa_pem[128], ed_pem[128], msg_path[128];
	struct dkim_key *rsa, *ed;
	uint8_t *msg;
	size_t msg_len;
} B = { 1.0, 5, NULL, false, "", "", "", "", NULL, NULL, NULL, 0 };

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "outpost-dkim-speed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* FILE's bytes with every bare LF made CRLF (malloc'd). */
static uint8_t *
read_crlf(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *out = NULL;
	size_t n = 0, cap = 0;
	int c, prev = 0;

	if (f == NULL)
		die("%s: cannot open", path);
	while ((c = getc(f)) != EOF) {
		if (n + 2 >= cap) {
			uint8_t *nb;

			cap = cap ? cap * 2 : 4096;
			if ((nb = realloc(out, cap)) == NULL)
				die("%s: out of memory", path);
			out = nb;
		}
		if (c == '\n' && prev != '\r')
			out[n++] = '\r';
		out[n++] = (uint8_t)c;
		prev = c;
	}
	fclose(f);
	if (n == 0)
		die("%s: empty", path);
	*len = n;
	return out;
}

/* Signatures per CPU-second of the whole per-message path with KEY. */
static double
sign_rate(const struct dkim_key *key, const char *selector)
{
	struct dkim_sign_params p;
	struct dkim_msg m;
	char bh[45], err[256], *out;
	double t0 = cpu_now(), t;
	long n = 0;

	memset(&p, 0, sizeof(p));
	p.domain = "example.com";
	p.selector = selector;
	p.key = key;
	p.hcanon = p.bcanon = DKIM_CANON_RELAXED;
	p.timestamp = (int64_t)time(NULL);
	do {
		if (dkim_msg_parse(B.msg, B.msg_len, &m, err, sizeof(err)) != 0)
			die("the message does not parse: %s", err);
		dkim_body_hash(&m, DKIM_CANON_RELAXED, bh);
		if (dkim_sign(&m, bh, &p, &out, NULL, err, sizeof(err)) != 0)
			die("dkim_sign: %s", err);
		free(out);
		dkim_msg_clear(&m);
		n++;
	} while ((t = cpu_now() - t0) < B.seconds);
	return (double)n / t;
}

/* A bare RSA-2048 PKCS#1 v1.5 SHA-256 signature per CPU-second. */
static double
bare_rsa_rate(void)
{
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *pk;
	uint8_t dg[32] = { 1 }, sig[512];
	size_t sl;
	FILE *f;
	double t0, t;
	long n = 0;

	if ((f = fopen(B.rsa_pem, "r")) == NULL)
		die("%s: cannot open", B.rsa_pem);
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL)) == NULL ||
	    EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1)
		die("%s: OpenSSL refused the key", B.rsa_pem);
	t0 = cpu_now();
	do {
		sl = sizeof(sig);
		if (EVP_PKEY_sign(ctx, sig, &sl, dg, sizeof(dg)) != 1)
			die("EVP_PKEY_sign failed");
		n++;
	} while ((t = cpu_now() - t0) < B.seconds);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return (double)n / t;
}

/* A 10 MB body with what relaxed canonicalization acts on: MB/s. */
static void
body_rates(double *simple, double *relaxed)
{
	static const char *const lines[] = {
		"plain line of text\r\n",
		"trailing spaces   \r\n",
		"trailing tab\t\r\n",
		"  leading  and   inner  runs\r\n",
		"\r\n",
		"UTF-8 Gr\xc3\xbc\xc3\x9f"
		"e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n",
		"a much longer line that goes on with words and words and "
		"words until it is nearly a hundred characters long ok\r\n",
	};
	static const char hdr[] = "From: <big@example.com>\r\n"
				  "Subject: big\r\n\r\n";
	struct dkim_msg m;
	char bh[45], err[128];
	uint8_t *b;
	size_t n, k, i = 0;
	double t0, t1, t2;

	if ((b = malloc(BIG_BYTES + 256)) == NULL)
		die("out of memory");
	memcpy(b, hdr, sizeof(hdr) - 1);
	n = sizeof(hdr) - 1;
	while (n < BIG_BYTES) {
		k = strlen(lines[i % (sizeof(lines) / sizeof(lines[0]))]);
		memcpy(b + n, lines[i++ % (sizeof(lines) / sizeof(lines[0]))],
		       k);
		n += k;
	}
	if (dkim_msg_parse(b, n, &m, err, sizeof(err)) != 0)
		die("big message: %s", err);
	t0 = cpu_now();
	dkim_body_hash(&m, DKIM_CANON_SIMPLE, bh);
	t1 = cpu_now();
	dkim_body_hash(&m, DKIM_CANON_RELAXED, bh);
	t2 = cpu_now();
	*simple = (double)n / 1e6 / (t1 - t0);
	*relaxed = (double)n / 1e6 / (t2 - t1);
	dkim_msg_clear(&m);
	free(b);
}

/* libopendkim through the oracle: "libopendkim N signatures T cpu-s R/s". */
static double
opendkim_rate(void)
{
	char out[160], line[256], count[32];
	const char *p;
	pid_t pid;
	int fd, st;
	ssize_t r;
	FILE *f;

	snprintf(out, sizeof(out), "%s/oracle.out", B.dir);
	snprintf(count, sizeof(count), "%ld", (long)(300 * B.seconds));
	if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		die("%s: cannot create", out);
	if ((pid = fork()) == 0) {
		dup2(fd, 1);
		execl(B.oracle, B.oracle, "bench", B.rsa_pem, count, B.msg_path,
		      (char *)NULL);
		_exit(127);
	}
	close(fd);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return 0;
	if ((f = fopen(out, "r")) == NULL)
		return 0;
	r = (ssize_t)fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[r > 0 ? r : 0] = '\0';
	p = strstr(line, "cpu-s ");
	return p != NULL ? strtod(p + 6, NULL) : 0;
}

static void
cleanup(void)
{
	char cmd[128];

	dkim_key_free(B.rsa);
	dkim_key_free(B.ed);
	if (B.dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", B.dir);
		if (system(cmd) != 0)
			fprintf(stderr, "outpost-dkim-speed: %s left behind\n",
				B.dir);
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: outpost-dkim-speed [--seconds S] [--rounds N] "
			"[--oracle PATH] [--json] [MESSAGE]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	double rsa = 0, ed = 0, raw = 0, od = 0, r, mb_s, mb_r;
	const char *tmp = getenv("TMPDIR"), *msg_file = NULL;
	char err[256], *txt;
	int i, k, fd;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			B.seconds = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			B.rounds = atoi(argv[++i]);
		else if (strcmp(argv[i], "--oracle") == 0 && i + 1 < argc)
			B.oracle = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			B.json = true;
		else if (argv[i][0] == '-' || msg_file != NULL)
			usage();
		else
			msg_file = argv[i];
	}
	if (!(B.seconds > 0 && B.seconds <= 60) || B.rounds < 1 ||
	    B.rounds > 100)
		usage();
	if (msg_file != NULL)
		B.msg = read_crlf(msg_file, &B.msg_len);
	else {
		B.msg_len = sizeof(default_msg) - 1;
		if ((B.msg = malloc(B.msg_len)) == NULL)
			die("out of memory");
		memcpy(B.msg, default_msg, B.msg_len);
	}

	snprintf(B.dir, sizeof(B.dir), "%s/outpost-dkim-speed.XXXXXX",
		 tmp != NULL && *tmp != '\0' && strlen(tmp) < 24 ? tmp
								 : "/tmp");
	if (mkdtemp(B.dir) == NULL) {
		B.dir[0] = '\0';
		die("mkdtemp failed");
	}
	atexit(cleanup);
	if (dkim_keys_init(0, err, sizeof(err)) < 0)
		die("dkim_keys_init: %s", err);
	snprintf(B.rsa_pem, sizeof(B.rsa_pem), "%s/rsa.pem", B.dir);
	snprintf(B.ed_pem, sizeof(B.ed_pem), "%s/ed.pem", B.dir);
	if (dkim_key_generate(B.rsa_pem, DKIM_ALG_RSA_SHA256, 2048, &txt, err,
			      sizeof(err)) != 0)
		die("RSA key: %s", err);
	free(txt);
	if (dkim_key_generate(B.ed_pem, DKIM_ALG_ED25519_SHA256, 0, &txt, err,
			      sizeof(err)) != 0)
		die("Ed25519 key: %s", err);
	free(txt);
	if (dkim_key_load(B.rsa_pem, &B.rsa, err, sizeof(err)) != 0 ||
	    dkim_key_load(B.ed_pem, &B.ed, err, sizeof(err)) != 0)
		die("keys: %s", err);
	/* The oracle reads the message from a file, as given here. */
	snprintf(B.msg_path, sizeof(B.msg_path), "%s/msg.eml", B.dir);
	if ((fd = open(B.msg_path, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0 ||
	    write(fd, B.msg, B.msg_len) != (ssize_t)B.msg_len || close(fd) != 0)
		die("%s: cannot write", B.msg_path);

	for (k = 0; k < B.rounds; k++) {
		if ((r = sign_rate(B.rsa, "rsa")) > rsa)
			rsa = r;
		if ((r = bare_rsa_rate()) > raw)
			raw = r;
		if ((r = sign_rate(B.ed, "ed")) > ed)
			ed = r;
	}
	if (B.oracle != NULL)
		od = opendkim_rate();
	body_rates(&mb_s, &mb_r);

	if (B.json) {
		printf("{\"benchmark\":\"dkim_speed\",\"message_bytes\":%zu,"
		       "\"rounds\":%d,\"seconds\":%.2f,"
		       "\"rsa_sign_per_s\":%.0f,\"ed25519_sign_per_s\":%.0f,"
		       "\"bare_rsa_per_s\":%.0f,\"rsa_vs_bare\":%.3f,",
		       B.msg_len, B.rounds, B.seconds, rsa, ed, raw,
		       rsa > 0 ? raw / rsa : 0.0);
		if (B.oracle != NULL && od > 0)
			printf("\"opendkim_per_s\":%.0f,", od);
		else
			printf("\"opendkim_per_s\":null,");
		printf("\"body_hash_mb_per_s\":{\"simple\":%.0f,"
		       "\"relaxed\":%.0f}}\n",
		       mb_s, mb_r);
	} else {
		printf("DKIM signing, one core, per CPU-second (best of %d x "
		       "%.1f s), %zu-byte message:\n",
		       B.rounds, B.seconds, B.msg_len);
		printf(
		    "  outpost RSA-2048 (parse + body hash + sign): %.0f/s\n",
		    rsa);
		printf(
		    "  outpost Ed25519 (parse + body hash + sign):  %.0f/s\n",
		    ed);
		printf(
		    "  bare RSA-2048 sign (openssl speed):          %.0f/s\n",
		    raw);
		printf("  CPU per RSA message: %.2f x a bare RSA signature "
		       "(goal <= 1.3)\n",
		       rsa > 0 ? raw / rsa : 0.0);
		if (B.oracle != NULL)
			printf(
			    "  libopendkim 2.11 (key re-parsed per message): "
			    "%.0f/s%s\n",
			    od, od > 0 ? "" : " (the oracle failed)");
		printf("  body hash, 10 MB: simple %.0f MB/s, relaxed %.0f "
		       "MB/s\n",
		       mb_s, mb_r);
	}
	free(B.msg);
	return 0;
}
