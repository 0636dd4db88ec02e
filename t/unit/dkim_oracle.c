/*
 * dkim_oracle.c — libopendkim 2.11, the reference for dkim_sign_test.c, in
 * a process of its own (libopendkim exports dkim_sign and dkim_init, which
 * dkim/dkim.h's names would interpose on); it splits messages itself.
 *   sign KEY SEL DOMAIN HC/BC TIME[+TTL] SIGN OVER MSG...  → MSG.lsig:
 *       "DKIM-Signature: " dkim_getsighdr_d() CRLF (RSA-SHA256, no l=;
 *       SIGN, OVER colon-separated, "-" = unset)
 *   verify KEYS MSG...  → "pass MSG" | "fail MSG: why" (DKIM_QUERY_FILE)
 *   bench KEY N MSG     → "libopendkim N signatures T cpu-s R/s"
 */
#define _DEFAULT_SOURCE /* u_char and friends in <opendkim/dkim.h> */
#include <sys/types.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <opendkim/dkim.h>

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define ORACLE_LIST_MAX 64

static int
oracle_read(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f;
	long n;

	*buf = NULL;
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 ||
	    (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    (*buf = malloc((size_t)n + 1)) == NULL ||
	    fread(*buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		if (f != NULL)
			fclose(f);
		free(*buf);
		*buf = NULL;
		return -1;
	}
	(*buf)[n] = '\0';
	*len = (size_t)n;
	fclose(f);
	return 0;
}

/* "A:B:C" → a NULL-terminated vector pointing into S (modified). */
static int
oracle_list(char *s, const char **v)
{
	int n = 0;
	char *tok, *save = NULL;

	for (tok = strtok_r(s, ":", &save); tok != NULL && n < ORACLE_LIST_MAX;
	     tok = strtok_r(NULL, ":", &save))
		v[n++] = tok;
	v[n] = NULL;
	return n;
}

static int
oracle_canon(const char *s, dkim_canon_t *hc, dkim_canon_t *bc)
{
	char h[16], b[16];

	if (sscanf(s, "%15[a-z]/%15[a-z]", h, b) != 2)
		return -1;
	*hc =
	    strcmp(h, "relaxed") == 0 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	*bc =
	    strcmp(b, "relaxed") == 0 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	return 0;
}

/*
 * Feed MSG the way an MTA (or a milter) does: each header field, folding
 * kept, without its CRLF, to dkim_header(); dkim_eoh(); the body to
 * dkim_body() (research 1.2).  Not dkim_chunk(): given a message with no
 * empty line after the header block, it hashes the last field with its
 * CRLF under simple header canonicalization, where no other verifier does.
 * A field ends at a CRLF not followed by SP or TAB.
 */
static DKIM_STAT
oracle_feed(DKIM *d, unsigned char *msg, size_t len)
{
	size_t i = 0, start;
	DKIM_STAT st;

	while (i < len) {
		if (len - i >= 2 && msg[i] == '\r' && msg[i + 1] == '\n') {
			i += 2;
			break;
		}
		start = i;
		for (;;) {
			while (i < len && !(msg[i] == '\r' && i + 1 < len &&
					    msg[i + 1] == '\n'))
				i++;
			if (i < len && i + 2 < len &&
			    (msg[i + 2] == ' ' || msg[i + 2] == '\t')) {
				i += 2;
				continue;
			}
			break;
		}
		if ((st = dkim_header(d, msg + start, i - start)) !=
		    DKIM_STAT_OK)
			return st;
		i = i < len ? i + 2 : len;
	}
	if ((st = dkim_eoh(d)) != DKIM_STAT_OK)
		return st;
	if (i < len)
		return dkim_body(d, msg + i, len - i);
	return DKIM_STAT_OK;
}

static int
oracle_sign_one(DKIM_LIB *lib, unsigned char *key, const char *sel,
		const char *dom, dkim_canon_t hc, dkim_canon_t bc,
		const char *path)
{
	unsigned char *msg = NULL, *hdr = NULL;
	size_t len = 0, hlen = 0;
	char out[4096];
	DKIM_STAT st;
	DKIM *d = NULL;
	FILE *f = NULL;
	int rc = -1;

	if (oracle_read(path, &msg, &len) != 0)
		return -1;
	d = dkim_sign(lib, (const unsigned char *)"oracle", NULL, key,
		      (const unsigned char *)sel, (const unsigned char *)dom,
		      hc, bc, DKIM_SIGN_RSASHA256, -1, &st);
	if (d == NULL) {
		fprintf(stderr, "%s: dkim_sign: %s\n", path,
			dkim_getresultstr(st));
		goto done;
	}
	if ((st = oracle_feed(d, msg, len)) != DKIM_STAT_OK ||
	    (st = dkim_eom(d, NULL)) != DKIM_STAT_OK ||
	    (st = dkim_getsighdr_d(d, strlen(DKIM_SIGNHEADER) + 2, &hdr,
				   &hlen)) != DKIM_STAT_OK) {
		fprintf(stderr, "%s: %s: %s\n", path, dkim_getresultstr(st),
			dkim_geterror(d) != NULL ? dkim_geterror(d) : "");
		goto done;
	}
	if ((size_t)snprintf(out, sizeof(out), "%s.lsig", path) >=
		sizeof(out) ||
	    (f = fopen(out, "wb")) == NULL) {
		perror(out);
		goto done;
	}
	fprintf(f, "%s: ", DKIM_SIGNHEADER);
	fwrite(hdr, 1, hlen, f);
	fputs("\r\n", f);
	rc = fclose(f) == 0 ? 0 : -1;
done:
	if (d != NULL)
		dkim_free(d);
	free(msg);
	return rc;
}

static int
oracle_sign(int argc, char **argv)
{
	const char *sign[ORACLE_LIST_MAX + 1], *over[ORACLE_LIST_MAX + 1];
	unsigned char *key = NULL;
	dkim_canon_t hc, bc;
	uint64_t t, ttl = 0;
	size_t klen;
	DKIM_LIB *lib;
	char *plus;
	int i, rc = 0;

	if (argc < 9 || oracle_canon(argv[4], &hc, &bc) != 0 ||
	    oracle_read(argv[1], &key, &klen) != 0)
		return 2;
	t = strtoull(argv[5], &plus, 10);
	if (*plus == '+')
		ttl = strtoull(plus + 1, NULL, 10);
	if ((lib = dkim_init(NULL, NULL)) == NULL)
		return 2;
	/* List options want len = sizeof(char **) (research 1.3.5). */
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t,
			 sizeof(t)) != DKIM_STAT_OK ||
	    (ttl != 0 &&
	     dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl,
			  sizeof(ttl)) != DKIM_STAT_OK) ||
	    (strcmp(argv[6], "-") != 0 && oracle_list(argv[6], sign) > 0 &&
	     dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign,
			  sizeof(char **)) != DKIM_STAT_OK) ||
	    (strcmp(argv[7], "-") != 0 && oracle_list(argv[7], over) > 0 &&
	     dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, over,
			  sizeof(char **)) != DKIM_STAT_OK)) {
		fprintf(stderr, "dkim_options failed\n");
		rc = 2;
		goto done;
	}
	for (i = 8; i < argc; i++)
		if (oracle_sign_one(lib, key, argv[2], argv[3], hc, bc,
				    argv[i]) != 0)
			rc = 1;
done:
	dkim_close(lib);
	free(key);
	return rc;
}

static int
oracle_verify(int argc, char **argv)
{
	dkim_query_t qm = DKIM_QUERY_FILE;
	unsigned char *msg;
	size_t len;
	DKIM_LIB *lib;
	DKIM_STAT st;
	DKIM *d;
	int i;

	if (argc < 2 || (lib = dkim_init(NULL, NULL)) == NULL)
		return 2;
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &qm,
			 sizeof(qm)) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, argv[1],
			 strlen(argv[1])) != DKIM_STAT_OK) {
		dkim_close(lib);
		return 2;
	}
	for (i = 2; i < argc; i++) {
		if (oracle_read(argv[i], &msg, &len) != 0) {
			printf("fail %s: unreadable\n", argv[i]);
			continue;
		}
		d = dkim_verify(lib, (const unsigned char *)"oracle", NULL,
				&st);
		if (d == NULL) {
			printf("fail %s: dkim_verify: %s\n", argv[i],
			       dkim_getresultstr(st));
			free(msg);
			continue;
		}
		if ((st = oracle_feed(d, msg, len)) == DKIM_STAT_OK)
			st = dkim_eom(d, NULL);
		if (st == DKIM_STAT_OK)
			printf("pass %s\n", argv[i]);
		else
			printf(
			    "fail %s: %s: %s\n", argv[i], dkim_getresultstr(st),
			    dkim_geterror(d) != NULL ? dkim_geterror(d) : "");
		dkim_free(d);
		free(msg);
	}
	dkim_close(lib);
	return 0;
}

static double
oracle_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
oracle_bench(int argc, char **argv)
{
	const char *sign[] = { "From",         "To",         "Subject",
			       "Date",         "Message-ID", "MIME-Version",
			       "Content-Type", NULL };
	unsigned char *key, *msg, *hdr;
	size_t klen, len, hlen;
	DKIM_LIB *lib;
	DKIM_STAT st;
	DKIM *d;
	double t0, t1;
	long i, n;

	if (argc < 4 || (n = strtol(argv[2], NULL, 10)) <= 0 ||
	    oracle_read(argv[1], &key, &klen) != 0)
		return 2;
	if (oracle_read(argv[3], &msg, &len) != 0 ||
	    (lib = dkim_init(NULL, NULL)) == NULL)
		return 2;
	(void)dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign,
			   sizeof(char **));
	t0 = oracle_cpu();
	for (i = 0; i < n; i++) {
		d = dkim_sign(lib, (const unsigned char *)"bench", NULL, key,
			      (const unsigned char *)"sel",
			      (const unsigned char *)"example.com",
			      DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
			      DKIM_SIGN_RSASHA256, -1, &st);
		if (d == NULL || oracle_feed(d, msg, len) != DKIM_STAT_OK ||
		    dkim_eom(d, NULL) != DKIM_STAT_OK ||
		    dkim_getsighdr_d(d, 16, &hdr, &hlen) != DKIM_STAT_OK) {
			fprintf(stderr, "bench: signing failed\n");
			return 1;
		}
		dkim_free(d);
	}
	t1 = oracle_cpu();
	printf("libopendkim %ld signatures %.3f cpu-s %.0f/s\n", n, t1 - t0,
	       (double)n / (t1 - t0));
	dkim_close(lib);
	free(key);
	free(msg);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "sign") == 0)
		return oracle_sign(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return oracle_verify(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "bench") == 0)
		return oracle_bench(argc - 1, argv + 1);
	fprintf(stderr,
		"usage: dkim_oracle sign KEY SEL DOMAIN HC/BC TIME SIGN OVER "
		"MSG...\n"
		"       dkim_oracle verify KEYS MSG...\n"
		"       dkim_oracle bench KEY N MSG\n");
	return 2;
}
