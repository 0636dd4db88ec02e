/*
 * smtp_data_test.c — the DATA/BDAT scanner (mta/receive/smtp_data.c),
 * table-driven: each row's input is fed in one piece, split in two at every
 * octet, one octet at a time, and with a one-octet output buffer; every way
 * must give the row's result, octets consumed, body kept and flags.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/receive/smtp_data.h"

#define BIG    (1u << 20)
#define ALL    SIZE_MAX /* want.used: the whole input */
#define S(str) str, sizeof(str) - 1

struct row {
	const char *name;
	bool dot;    /* DATA (else BDAT) */
	size_t fill; /* input: FILL octets 'a' first, then IN */
	const char *in;
	size_t in_len;
	uint64_t max; /* max_size (0: BIG) */
	bool finish;  /* BDAT: smtp_data_finish() after the input */
	/* want */
	enum smtp_data_result res;
	size_t used;     /* ALL: every octet */
	size_t out_fill; /* body: OUT_FILL octets 'a' first, then OUT */
	const char *out;
	size_t out_len;
	unsigned bad;
	bool saw8bit;
};

static const struct row rows[] = {
	{ "empty message", true, 0, S(".\r\n"), 0, false, SMTP_DATA_END, ALL, 0,
	  S(""), 0, false },
	{ "one line", true, 0, S("hello\r\n.\r\n"), 0, false, SMTP_DATA_END,
	  ALL, 0, S("hello\r\n"), 0, false },
	{ "octets after the end are not consumed", true, 0,
	  S("a\r\n.\r\nQUIT\r\n"), 0, false, SMTP_DATA_END, 6, 0, S("a\r\n"), 0,
	  false },
	{ "no end yet", true, 0, S("a\r\nb"), 0, false, SMTP_DATA_MORE, ALL, 0,
	  S("a\r\nb"), 0, false },
	{ "dot unstuffed", true, 0, S("..x\r\n..\r\n.\r\n"), 0, false,
	  SMTP_DATA_END, ALL, 0, S(".x\r\n.\r\n"), 0, false },
	{ "dot inside a line kept", true, 0, S("a.\r\n.b\r\n.\r\n"), 0, false,
	  SMTP_DATA_END, ALL, 0, S("a.\r\nb\r\n"), 0, false },
	{ "CRLF.CRLF after lines", true, 0, S("x\r\ny\r\n.\r\n"), 0, false,
	  SMTP_DATA_END, ALL, 0, S("x\r\ny\r\n"), 0, false },
	{ "bare LF stops DATA", true, 0, S("ab\ncd\r\n.\r\n"), 0, false,
	  SMTP_DATA_STOP, 2, 0, S("ab"), SMTP_DATA_BAD_BARE, false },
	{ "bare CR stops DATA", true, 0, S("ab\rcd\r\n.\r\n"), 0, false,
	  SMTP_DATA_STOP, 3, 0, S("ab"), SMTP_DATA_BAD_BARE, false },
	{ "LF.LF is no end", true, 0, S("a\n.\n"), 0, false, SMTP_DATA_STOP, 1,
	  0, S("a"), SMTP_DATA_BAD_BARE, false },
	{ ".CR then not LF", true, 0, S("a\r\n.\rx"), 0, false, SMTP_DATA_STOP,
	  5, 0, S("a\r\n"), SMTP_DATA_BAD_BARE, false },
	{ "CR at the end waits for LF", true, 0, S("ab\r"), 0, false,
	  SMTP_DATA_MORE, ALL, 0, S("ab"), 0, false },
	{ "NUL flagged, dropped", true, 0, S("a\0b\r\n.\r\n"), 0, false,
	  SMTP_DATA_END, ALL, 0, S("ab\r\n"), SMTP_DATA_BAD_NUL, false },
	{ "8-bit seen", true, 0, S("caf\xc3\xa9\r\n.\r\n"), 0, false,
	  SMTP_DATA_END, ALL, 0, S("caf\xc3\xa9\r\n"), 0, true },
	{ "998-octet line", true, 998, S("\r\n.\r\n"), 0, false, SMTP_DATA_END,
	  ALL, 998, S("\r\n"), 0, false },
	{ "999-octet line", true, 999, S("\r\n.\r\n"), 0, false, SMTP_DATA_END,
	  ALL, 999, S("\r\n"), SMTP_DATA_BAD_LONG, false },
	{ "size exactly at the limit", true, 0, S("abcd\r\n.\r\n"), 6, false,
	  SMTP_DATA_END, ALL, 0, S("abcd\r\n"), 0, false },
	{ "size one past the limit", true, 0, S("abcd\r\n.\r\n"), 5, false,
	  SMTP_DATA_END, ALL, 0, S("abcd\r"), SMTP_DATA_BAD_SIZE, false },
	{ "size: a line cut", true, 0, S("abcd\r\nef\r\n.\r\n"), 3, false,
	  SMTP_DATA_END, ALL, 0, S("abc"), SMTP_DATA_BAD_SIZE, false },
	{ "BDAT: octets as they are", false, 0, S("a\r\n.\r\n..b\r\n"), 0,
	  false, SMTP_DATA_MORE, ALL, 0, S("a\r\n.\r\n..b\r\n"), 0, false },
	{ "BDAT: bare LF flagged, read on", false, 0, S("a\nb\r\n"), 0, false,
	  SMTP_DATA_MORE, ALL, 0, S("ab\r\n"), SMTP_DATA_BAD_BARE, false },
	{ "BDAT: bare CR flagged, read on", false, 0, S("a\rb\r\n"), 0, false,
	  SMTP_DATA_MORE, ALL, 0, S("ab\r\n"), SMTP_DATA_BAD_BARE, false },
	{ "BDAT LAST: last line completed", false, 0, S("a\r\nb"), 0, true,
	  SMTP_DATA_MORE, ALL, 0, S("a\r\nb\r\n"), 0, false },
	{ "BDAT LAST: final CR", false, 0, S("a\r"), 0, true, SMTP_DATA_MORE,
	  ALL, 0, S("a"), SMTP_DATA_BAD_BARE, false },
	{ "BDAT LAST: CRLF then nothing", false, 0, S("a\r\n"), 0, true,
	  SMTP_DATA_MORE, ALL, 0, S("a\r\n"), 0, false },
	{ "BDAT LAST: completion over the limit", false, 0, S("abc"), 4, true,
	  SMTP_DATA_MORE, ALL, 0, S("abc"), SMTP_DATA_BAD_SIZE, false },
	{ "BDAT LAST: completion at the limit", false, 0, S("abc"), 5, true,
	  SMTP_DATA_MORE, ALL, 0, S("abc\r\n"), 0, false },
	{ "BDAT: 999-octet line", false, 999, S("\r\n"), 0, false,
	  SMTP_DATA_MORE, ALL, 999, S("\r\n"), SMTP_DATA_BAD_LONG, false },
};

struct got {
	enum smtp_data_result res;
	size_t used;
	uint8_t *out;
	size_t out_len, out_cap;
	struct smtp_data_scan sc;
};

/* Feed IN in pieces: cut[] are the piece boundaries (ncut of them); the
 * output buffer offers at most ROOM octets a call.  Stops at END/STOP as
 * the server does. */
static void
feed(const struct row *r, const uint8_t *in, size_t n, const size_t *cut,
     size_t ncut, size_t room, struct got *g)
{
	size_t from = 0, k, u, o, c;
	bool stuck = false;

	memset(&g->sc, 0, sizeof(g->sc));
	smtp_data_start(&g->sc, r->dot, 0, r->max ? r->max : BIG);
	g->used = g->out_len = 0;
	g->res = SMTP_DATA_MORE;
	for (k = 0; k <= ncut && g->res == SMTP_DATA_MORE; k++) {
		size_t to = k < ncut ? cut[k] : n;

		while (from < to) {
			c = stuck && room < 2 ? 2 : room; /* "\r\n" needs 2 */
			if (c > g->out_cap - g->out_len)
				c = g->out_cap - g->out_len;
			g->res = smtp_data_scan(&g->sc, in + from, to - from,
						&u, g->out + g->out_len, c, &o);
			assert_true(u <= to - from);
			assert_true(o <= c);
			from += u;
			g->used += u;
			g->out_len += o;
			if (g->res != SMTP_DATA_FULL)
				break;
			/* FULL without progress only for want of 2 octets */
			stuck = u == 0 && o == 0;
			assert_true(!stuck || c < 2);
		}
		if (g->res == SMTP_DATA_FULL)
			g->res = SMTP_DATA_MORE;
		if (g->res == SMTP_DATA_MORE)
			assert_int_equal(from, to);
	}
	if (r->finish && (k = smtp_data_finish(&g->sc)) > 0) {
		memcpy(g->out + g->out_len, "\r\n", k);
		g->out_len += k;
	}
}

static void
check(const struct row *r, const struct got *g, size_t n, const char *how)
{
	size_t want_len = r->out_fill + r->out_len;

	if (g->res != r->res || g->used != (r->used == ALL ? n : r->used) ||
	    g->out_len != want_len || g->sc.bad != r->bad ||
	    g->sc.saw8bit != r->saw8bit ||
	    memcmp(g->out + r->out_fill, r->out, r->out_len) != 0) {
		print_error("%s (%s): res %d used %zu out %zu bad 0x%x 8bit %d "
			    "(want %d %zu %zu 0x%x %d)\n",
			    r->name, how, g->res, g->used, g->out_len,
			    g->sc.bad, g->sc.saw8bit, r->res,
			    r->used == ALL ? n : r->used, want_len, r->bad,
			    r->saw8bit);
		fail();
	}
	for (size_t i = 0; i < r->out_fill; i++)
		assert_int_equal(g->out[i], 'a');
}

static void
test_rows(void **state)
{
	(void)state;
	for (size_t ri = 0; ri < sizeof(rows) / sizeof(rows[0]); ri++) {
		const struct row *r = &rows[ri];
		size_t n = r->fill + r->in_len, k, *cuts;
		uint8_t *in = malloc(n + 1);
		struct got g = { .out_cap = n + 2 };
		char how[64];

		assert_non_null(in);
		memset(in, 'a', r->fill);
		memcpy(in + r->fill, r->in, r->in_len);
		g.out = malloc(g.out_cap);
		assert_non_null(g.out);
		cuts = malloc((n + 1) * sizeof(*cuts));
		assert_non_null(cuts);

		feed(r, in, n, NULL, 0, SIZE_MAX, &g);
		check(r, &g, n, "one piece");
		for (k = 0; k <= n; k++) {
			cuts[0] = k;
			feed(r, in, n, cuts, 1, SIZE_MAX, &g);
			snprintf(how, sizeof(how), "split at %zu", k);
			check(r, &g, n, how);
		}
		for (k = 0; k < n; k++)
			cuts[k] = k + 1;
		feed(r, in, n, cuts, n, SIZE_MAX, &g);
		check(r, &g, n, "octet by octet");
		feed(r, in, n, NULL, 0, 1, &g);
		check(r, &g, n, "one-octet output");
		feed(r, in, n, cuts, n, 2, &g);
		check(r, &g, n, "octet by octet, two-octet output");
		free(cuts);
		free(g.out);
		free(in);
	}
}

/* "\r\n.\r\n" split across two calls at each point, after a body line. */
static void
test_end_split(void **state)
{
	static const char msg[] = "x\r\n.\r\n";
	uint8_t out[16];
	size_t k, u1, o1, u2, o2;

	(void)state;
	for (k = 1; k < sizeof(msg) - 1; k++) {
		struct smtp_data_scan sc;

		memset(&sc, 0, sizeof(sc));
		smtp_data_start(&sc, true, 0, BIG);
		assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)msg, k,
						&u1, out, sizeof(out), &o1),
				 SMTP_DATA_MORE);
		assert_int_equal(u1, k);
		assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)msg + k,
						sizeof(msg) - 1 - k, &u2,
						out + o1, sizeof(out) - o1,
						&o2),
				 SMTP_DATA_END);
		assert_int_equal(u1 + u2, sizeof(msg) - 1);
		assert_int_equal(o1 + o2, 3);
		assert_memory_equal(out, "x\r\n", 3);
		assert_int_equal(sc.bad, 0);
	}
}

/* A CR ending one piece and an LF starting the next is a line end; a CR
 * then anything else is bare. */
static void
test_cr_at_piece_end(void **state)
{
	uint8_t out[16];
	size_t u, o, total = 0;
	struct smtp_data_scan sc;

	(void)state;
	memset(&sc, 0, sizeof(sc));
	smtp_data_start(&sc, true, 0, BIG);
	assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)"ab\r", 3, &u,
					out, sizeof(out), &o),
			 SMTP_DATA_MORE);
	total = o;
	assert_int_equal(sc.pos, SMTP_DATA_CR);
	assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)"\n.\r\n", 4, &u,
					out + total, sizeof(out) - total, &o),
			 SMTP_DATA_END);
	total += o;
	assert_int_equal(total, 4);
	assert_memory_equal(out, "ab\r\n", 4);
	assert_int_equal(sc.bad, 0);

	memset(&sc, 0, sizeof(sc));
	smtp_data_start(&sc, true, 0, BIG);
	smtp_data_scan(&sc, (const uint8_t *)"ab\r", 3, &u, out, sizeof(out),
		       &o);
	assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)"x", 1, &u, out,
					sizeof(out), &o),
			 SMTP_DATA_STOP);
	assert_int_equal(u, 0);
	assert_int_equal(sc.bad, SMTP_DATA_BAD_BARE);
}

/* A stuffed dot counts in its line's length (999 octets on the wire). */
static void
test_stuffed_long(void **state)
{
	uint8_t in[1200], out[1200];
	size_t u, o, len;
	struct smtp_data_scan sc;

	(void)state;
	for (len = 997; len <= 998; len++) {
		in[0] = '.';
		memset(in + 1, 'a', len);
		memcpy(in + 1 + len, "\r\n.\r\n", 5);
		memset(&sc, 0, sizeof(sc));
		smtp_data_start(&sc, true, 0, BIG);
		assert_int_equal(
		    smtp_data_scan(&sc, in, len + 6, &u, out, sizeof(out), &o),
		    SMTP_DATA_END);
		assert_int_equal(u, len + 6);
		assert_int_equal(o, len + 2);
		assert_int_equal(sc.bad, len == 998 ? SMTP_DATA_BAD_LONG : 0);
	}
}

/* The caller's header counts against the size; BAD_NOMEM keeps nothing
 * more but still finds the end. */
static void
test_size_and_nomem(void **state)
{
	uint8_t out[16];
	size_t u, o;
	struct smtp_data_scan sc;

	(void)state;
	memset(&sc, 0, sizeof(sc));
	smtp_data_start(&sc, true, 10, 12);
	assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)"ab\r\n.\r\n", 7,
					&u, out, sizeof(out), &o),
			 SMTP_DATA_END);
	assert_int_equal(o, 2);
	assert_int_equal(sc.bad, SMTP_DATA_BAD_SIZE);

	memset(&sc, 0, sizeof(sc));
	smtp_data_start(&sc, true, 0, BIG);
	sc.bad |= SMTP_DATA_BAD_NOMEM;
	assert_int_equal(smtp_data_scan(&sc, (const uint8_t *)"ab\r\n.\r\n", 7,
					&u, NULL, 0, &o),
			 SMTP_DATA_END);
	assert_int_equal(u, 7);
	assert_int_equal(o, 0);
	assert_int_equal(sc.bad, SMTP_DATA_BAD_NOMEM);
}

/*
 * Random inputs rich in CR, LF, NUL, dots and high octets, long lines and
 * runs of every length around the scanner's 16-octet steps, in both modes:
 * fed whole (the 16-octet path) and one octet at a time (only the octet
 * loop runs), the scanner must agree with itself on everything.
 */
static void
test_whole_equals_octet_by_octet(void **state)
{
	static const uint8_t alphabet[] = { 'a',  'a',  'a',  'a',  'z',
					    ' ',  '.',  '\r', '\n', '\0',
					    0x80, 0xff, 0x7f };
	static uint8_t in[4096];
	size_t *cuts = malloc(sizeof(size_t) * sizeof(in));
	struct row r;
	struct got whole, single;
	unsigned seed = 1, round;
	size_t n, i, run;

	(void)state;
	assert_non_null(cuts);
	memset(&r, 0, sizeof(r));
	whole.out_cap = single.out_cap = 2 * sizeof(in);
	whole.out = malloc(whole.out_cap);
	single.out = malloc(single.out_cap);
	assert_true(whole.out != NULL && single.out != NULL);
	for (round = 0; round < 4000; round++) {
		n = (size_t)rand_r(&seed) % sizeof(in);
		for (i = 0; i < n;) {
			/* mostly plain runs of any length, then a CRLF */
			run = (size_t)rand_r(&seed) %
			      (round % 7 == 0 ? 1200 : 40);
			while (run-- > 0 && i < n)
				in[i++] =
				    (rand_r(&seed) % 64 == 0)
					? alphabet[rand_r(&seed) %
						   sizeof(alphabet)]
					: (uint8_t)('A' + rand_r(&seed) % 26);
			if (i < n && rand_r(&seed) % 8 != 0)
				in[i++] = '\r';
			if (i < n && rand_r(&seed) % 8 != 0)
				in[i++] = '\n';
			if (i < n && rand_r(&seed) % 5 == 0)
				in[i++] = '.';
		}
		r.dot = round % 2 == 0;
		for (i = 0; i < n; i++)
			cuts[i] = i + 1;
		feed(&r, in, n, NULL, 0, sizeof(in) * 2, &whole);
		feed(&r, in, n, cuts, n, sizeof(in) * 2, &single);
		if (whole.res != single.res || whole.used != single.used ||
		    whole.out_len != single.out_len ||
		    whole.sc.bad != single.sc.bad ||
		    whole.sc.saw8bit != single.sc.saw8bit ||
		    whole.sc.size != single.sc.size ||
		    whole.sc.line_len != single.sc.line_len ||
		    memcmp(whole.out, single.out, whole.out_len) != 0)
			fail_msg("round %u (%zu octets, %s): whole res %d used "
				 "%zu out %zu bad 0x%x 8bit %d; one by one "
				 "res %d used %zu out %zu bad 0x%x 8bit %d",
				 round, n, r.dot ? "DATA" : "BDAT", whole.res,
				 whole.used, whole.out_len, whole.sc.bad,
				 whole.sc.saw8bit, single.res, single.used,
				 single.out_len, single.sc.bad,
				 single.sc.saw8bit);
	}
	free(whole.out);
	free(single.out);
	free(cuts);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_end_split),
		cmocka_unit_test(test_cr_at_piece_end),
		cmocka_unit_test(test_stuffed_long),
		cmocka_unit_test(test_size_and_nomem),
		cmocka_unit_test(test_whole_equals_octet_by_octet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
