/*
 * dkim_bodyhash_test.c — the streaming body hash (dkim_bodyhash_*) fed in
 * pieces equals the whole-body hash (dkim_canon_body_sha256, itself checked
 * against the RFC 6376 vectors and a line-by-line model in dkim_sign_test)
 * for both body canonicalizations: every split point of bodies made to put
 * a CRLF, a WSP run or the empty lines at the end across the split, every
 * pair of split points of short ones, and random splits of random bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"

static const char *const bh_cases[] = {
	"",
	"\r\n",
	"\r\n\r\n\r\n",
	" C \r\nD \t E\r\n\r\n\r\n",
	"abc",
	"abc  ",
	"a  \r\n  \r\n",
	"\r\n\r\nx\r\n",
	"x\r\n \t \r\ny\r\n",
	"x\ny\r\n",
	"x\r\r\n",
	"x\r",
	"x\r\n\r",
	"\r",
	"\t\tlead\r\n",
	"a \t b\t\t\r\n\r\n \r\n\t\r\nc  d  \r\n\r\n",
	"line\r\n\r\n\r\nmore\r\n\r\n",
	"\r\r\n\r\n\n\r\n",
};

/* The whole-body hash of IN, base64, into WANT. */
static void
bh_whole(const uint8_t *in, size_t len, enum dkim_canon c, char want[45])
{
	uint8_t d[DKIM_SHA256_BYTES];

	assert_int_equal(dkim_canon_body_sha256(in, len, c, d), 0);
	assert_int_equal(dkim_base64(d, sizeof(d), want, 45),
			 DKIM_BH_B64_BYTES);
}

/* IN fed at the NCUTS offsets CUTS (ascending), base64 into GOT. */
static void
bh_split(const uint8_t *in, size_t len, enum dkim_canon c, const size_t *cuts,
	 size_t ncuts, char got[45])
{
	struct dkim_bodyhash *b = dkim_bodyhash_new(c);
	size_t i, at = 0;

	assert_non_null(b);
	for (i = 0; i < ncuts; i++) {
		dkim_bodyhash_update(b, in + at, cuts[i] - at);
		at = cuts[i];
	}
	dkim_bodyhash_update(b, in + at, len - at);
	assert_int_equal(dkim_bodyhash_final(b, got), 0);
}

static void
bh_check(const uint8_t *in, size_t len, enum dkim_canon c, const size_t *cuts,
	 size_t ncuts, const char *what)
{
	char want[45], got[45];

	bh_whole(in, len, c, want);
	bh_split(in, len, c, cuts, ncuts, got);
	if (strcmp(want, got) != 0)
		fail_msg("%s: %s body of %zu octets split at %zu cut(s) "
			 "(first %zu): %s, whole %s",
			 what, c == DKIM_CANON_SIMPLE ? "simple" : "relaxed",
			 len, ncuts, ncuts > 0 ? cuts[0] : 0, got, want);
}

/* Every cut of every case, and every pair of cuts. */
static void
test_bodyhash_every_split(void **state)
{
	const uint8_t *in;
	size_t i, a, b, len, cuts[2];
	int c;

	(void)state;
	for (i = 0; i < sizeof(bh_cases) / sizeof(bh_cases[0]); i++) {
		in = (const uint8_t *)bh_cases[i];
		len = strlen(bh_cases[i]);
		for (c = 0; c < 2; c++) {
			bh_check(in, len, (enum dkim_canon)c, NULL, 0, "whole");
			for (a = 0; a <= len; a++) {
				cuts[0] = a;
				bh_check(in, len, (enum dkim_canon)c, cuts, 1,
					 bh_cases[i]);
				for (b = a; b <= len; b++) {
					cuts[1] = b;
					bh_check(in, len, (enum dkim_canon)c,
						 cuts, 2, bh_cases[i]);
				}
			}
		}
	}
}

/* Random bodies over an alphabet dense in CR, LF, WSP and empty lines,
 * some past the 64 KB output block, cut at random (pieces of 0 octets
 * too), and one cut at every offset for the shorter ones. */
static void
test_bodyhash_random(void **state)
{
	static const char alphabet[] = "ab \t\r\n\r\n\r\n  x\r";
	uint8_t *in = malloc(300000);
	size_t cuts[64], round, len, i, n, alen = strlen(alphabet);
	uint32_t x = 4242;
	int c;

	(void)state;
	assert_non_null(in);
	for (round = 0; round < 300; round++) {
		len = round % 30 == 0 ? 200000 + round : (round * 13) % 700;
		for (i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = (uint8_t)alphabet[(x >> 16) % alen];
		}
		for (c = 0; c < 2; c++) {
			n = 1 + round % 63;
			for (i = 0; i < n; i++) {
				x = x * 1103515245u + 12345u;
				cuts[i] = len > 0 ? (x >> 8) % (len + 1) : 0;
			}
			for (i = 1; i < n; i++) { /* insertion sort */
				size_t v = cuts[i], j = i;

				for (; j > 0 && cuts[j - 1] > v; j--)
					cuts[j] = cuts[j - 1];
				cuts[j] = v;
			}
			bh_check(in, len, (enum dkim_canon)c, cuts, n,
				 "random");
			if (len < 700)
				for (i = 0; i <= len; i++) {
					cuts[0] = i;
					bh_check(in, len, (enum dkim_canon)c,
						 cuts, 1, "random, one cut");
				}
		}
	}
	free(in);
}

/* dkim_body_hash (what signing uses) is the same hash. */
static void
test_bodyhash_is_body_hash(void **state)
{
	static const char msg[] = "From: a@example.com\r\nSubject: x\r\n\r\n"
				  "body  line \r\n\r\n";
	struct dkim_msg m;
	char err[200], want[45], got[45];
	int c;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(dkim_msg_parse((const uint8_t *)msg, strlen(msg), &m,
					err, sizeof(err)),
			 0);
	for (c = 0; c < 2; c++) {
		dkim_body_hash(&m, (enum dkim_canon)c, got);
		bh_whole((const uint8_t *)msg + m.body_off,
			 strlen(msg) - m.body_off, (enum dkim_canon)c, want);
		assert_string_equal(got, want);
	}
	dkim_msg_clear(&m);
	dkim_bodyhash_free(dkim_bodyhash_new(DKIM_CANON_RELAXED));
	dkim_bodyhash_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bodyhash_every_split),
		cmocka_unit_test(test_bodyhash_random),
		cmocka_unit_test(test_bodyhash_is_body_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
