/*
 * dmarc_test.c — unit tests for dkim/dmarc.c: the record parser, org
 * domains and alignment (libpsl), the From parser, and the policy lookup
 * against a dnsmasq this program starts on 127.0.0.1 (--no-resolv
 * --no-hosts, skipped when dnsmasq is missing) and a bound UDP socket that
 * never answers (timeouts).  Never the system resolver: every resolver has
 * loopback_only and an explicit loopback server.  Messages are built by
 * hand (struct dkim_msg), plus one through dkim_msg_parse().
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "dkim/dkim.h"
#include "dkim/dmarc_int.h"
#include "dns/dns.h"
#include "t/unit/dns_fixture.h"
#include "t/unit/test_row.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf
#pragma GCC poison sprintf
#endif

#define RUN_TIMEOUT_MS 5000
#define FIELDS_MAX     4

/* Records -------------------------------------------------------------- */

struct rec_case {
	const char *name;
	const char *txt;
	size_t len; /* 0: strlen(txt) */
	int rc;
	enum dmarc_policy p, sp;
	bool sp_set, adkim_s, aspf_s;
	unsigned pct;
};

/* A record refused: nothing else to compare. */
#define REC_BAD(name, txt, len)                                                \
	{                                                                      \
		name, txt, len, -1, DMARC_P_NONE, DMARC_P_NONE, false, false,  \
		    false, 0                                                   \
	}

static const struct rec_case rec_cases[] = {
	{ "minimal", "v=DMARC1; p=reject", 0, 0, DMARC_P_REJECT, DMARC_P_REJECT,
	  false, false, false, 100 },
	{ "all tags", "v=DMARC1; p=none; sp=reject; adkim=s; aspf=s; pct=25", 0,
	  0, DMARC_P_NONE, DMARC_P_REJECT, true, true, true, 25 },
	{ "no spaces", "v=DMARC1;p=quarantine;sp=none", 0, 0,
	  DMARC_P_QUARANTINE, DMARC_P_NONE, true, false, false, 100 },
	{ "whitespace around everything",
	  "  v = DMARC1 ;\tp = reject ; adkim =\ts ; ", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, true, false, 100 },
	{ "folded (CRLF WSP) between tags", "v=DMARC1;\r\n p=reject", 0, 0,
	  DMARC_P_REJECT, DMARC_P_REJECT, false, false, false, 100 },
	{ "case folded", "V=dmarc1; P=Reject; SP=NONE; ADKIM=S; Aspf=s", 0, 0,
	  DMARC_P_REJECT, DMARC_P_NONE, true, true, true, 100 },
	{ "unknown tags ignored",
	  "v=DMARC1; rua=mailto:a@example.com; p=reject; fo=1; foo=bar; "
	  "np=quarantine; t=y",
	  0, 0, DMARC_P_REJECT, DMARC_P_REJECT, false, false, false, 100 },
	{ "empty and malformed specs skipped",
	  "v=DMARC1;; p=reject; =x; 9a=b; junk;;", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 100 },
	REC_BAD("missing p", "v=DMARC1", 0),
	REC_BAD("missing p, sp present", "v=DMARC1; sp=reject; adkim=s", 0),
	REC_BAD("bad p", "v=DMARC1; p=bogus", 0),
	REC_BAD("empty p", "v=DMARC1; p=", 0),
	REC_BAD("p with inner space", "v=DMARC1; p=re ject", 0),
	REC_BAD("p with NUL", "v=DMARC1; p=reject\0x", 20),
	REC_BAD("p twice", "v=DMARC1; p=none; p=reject", 0),
	REC_BAD("v twice", "v=DMARC1; v=DMARC1; p=reject", 0),
	REC_BAD("v not first", "p=reject; v=DMARC1", 0),
	REC_BAD("leading ';'", ";v=DMARC1; p=reject", 0),
	REC_BAD("v=DMARC2", "v=DMARC2; p=reject", 0),
	REC_BAD("v=DMARC1x", "v=DMARC1x; p=reject", 0),
	REC_BAD("SPF record", "v=spf1 -all", 0),
	REC_BAD("empty", "", 0),
	{ "pct 101", "v=DMARC1; p=reject; pct=101", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 100 },
	{ "pct 1000", "v=DMARC1; p=reject; pct=1000", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 100 },
	{ "pct -1", "v=DMARC1; p=reject; pct=-1", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 100 },
	{ "pct abc", "v=DMARC1; p=reject; pct=abc", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 100 },
	{ "pct 0", "v=DMARC1; p=reject; pct=0", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 0 },
	{ "pct 007", "v=DMARC1; p=reject; pct=007", 0, 0, DMARC_P_REJECT,
	  DMARC_P_REJECT, false, false, false, 7 },
	{ "bad sp = p", "v=DMARC1; p=quarantine; sp=bogus", 0, 0,
	  DMARC_P_QUARANTINE, DMARC_P_QUARANTINE, false, false, false, 100 },
	{ "bad adkim/aspf = relaxed", "v=DMARC1; p=reject; adkim=x; aspf=", 0,
	  0, DMARC_P_REJECT, DMARC_P_REJECT, false, false, false, 100 },
	{ "relaxed explicit", "v=DMARC1; p=reject; adkim=r; aspf=r", 0, 0,
	  DMARC_P_REJECT, DMARC_P_REJECT, false, false, false, 100 },
};

static void
test_record_parse(void **state)
{
	struct dmarc_record r;
	size_t i, len;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(rec_cases); i++) {
		const struct rec_case *c = &rec_cases[i];

		len = c->len != 0 ? c->len : strlen(c->txt);
		memset(&r, 0xa5, sizeof(r));
		rc = dmarc_record_parse(c->txt, len, &r);
		ROW_CHECK(rc == c->rc, c->name, "rc %d, want %d", rc, c->rc);
		if (rc != 0)
			continue;
		ROW_CHECK(r.p == c->p, c->name, "p=%s, want %s",
			  dmarc_policy_str(r.p), dmarc_policy_str(c->p));
		ROW_CHECK(r.sp == c->sp, c->name, "sp=%s, want %s",
			  dmarc_policy_str(r.sp), dmarc_policy_str(c->sp));
		ROW_CHECK(r.sp_set == c->sp_set, c->name, "sp_set %d",
			  r.sp_set);
		ROW_CHECK(r.adkim_strict == c->adkim_s, c->name,
			  "adkim_strict %d", r.adkim_strict);
		ROW_CHECK(r.aspf_strict == c->aspf_s, c->name, "aspf_strict %d",
			  r.aspf_strict);
		ROW_CHECK(r.pct == c->pct, c->name, "pct %u, want %u", r.pct,
			  c->pct);
	}
	/* A bad record still leaves R in its defaults. */
	assert_int_equal(dmarc_record_parse("v=spf1", 6, &r), -1);
	assert_int_equal(r.p, DMARC_P_NONE);
	assert_int_equal(r.pct, 100);
	assert_int_equal(dmarc_record_parse(NULL, 0, &r), -1);
}

static void
test_policy_str(void **state)
{
	(void)state;
	assert_string_equal(dmarc_policy_str(DMARC_P_NONE), "none");
	assert_string_equal(dmarc_policy_str(DMARC_P_QUARANTINE), "quarantine");
	assert_string_equal(dmarc_policy_str(DMARC_P_REJECT), "reject");
}

/* Org domains and alignment -------------------------------------------- */

struct org_case {
	const char *domain, *want;
};

static const struct org_case org_cases[] = {
	{ "example.com", "example.com" },
	{ "news.example.com", "example.com" },
	{ "a.b.c.example.com", "example.com" },
	{ "News.Example.COM", "example.com" },
	/* Private-section suffixes: each user is its own org. */
	{ "a.github.io", "a.github.io" },
	{ "x.a.github.io", "a.github.io" },
	{ "github.io", "github.io" },
	{ "a.blogspot.com", "a.blogspot.com" },
	/* "*.ck" with the exception "!www.ck". */
	{ "xx.yy.ck", "xx.yy.ck" },
	{ "zz.xx.yy.ck", "xx.yy.ck" },
	{ "yy.ck", "yy.ck" },
	{ "www.ck", "www.ck" },
	{ "a.www.ck", "www.ck" },
	/* One-letter labels right under a suffix. */
	{ "a.co.uk", "a.co.uk" },
	{ "b.a.co.uk", "a.co.uk" },
	{ "x.y.z.a.co.uk", "a.co.uk" },
	{ "co.uk", "co.uk" },
	{ "com", "com" },
	/* Unknown TLDs: the implicit "*" rule. */
	{ "example.test", "example.test" },
	{ "news.example.test", "example.test" },
	{ "test", "test" },
	{ "a.b", "a.b" },
	{ "x.a.b", "a.b" },
	/* IDN: U-labels as written (libpsl matches them as UTF-8). */
	{ "x.b\xc3\xbc"
	  "cher.de",
	  "b\xc3\xbc"
	  "cher.de" },
	/* A trailing dot is the caller's to strip: it is a different name. */
	{ "example.com.", "example.com." },
	{ "", "" },
};

static void
test_org_domain(void **state)
{
	char out[256], longname[300];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(org_cases); i++) {
		dmarc_org_domain(org_cases[i].domain, out, sizeof(out));
		ROW_CHECK(strcmp(out, org_cases[i].want) == 0,
			  org_cases[i].domain, "got \"%s\", want \"%s\"", out,
			  org_cases[i].want);
	}
	/* Too long for OUT or for any name: "". */
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memcpy(out, "junk", 5);
	dmarc_org_domain(longname, out, sizeof(out));
	assert_string_equal(out, "");
	memcpy(out, "junk", 5);
	dmarc_org_domain("news.example.com", out, 8);
	assert_string_equal(out, "");
}

struct align_case {
	const char *a, *b;
	bool strict, want;
};

static const struct align_case align_cases[] = {
	{ "example.com", "news.example.com", false, true },
	{ "example.com", "news.example.com", true, false },
	{ "news.example.com", "news.example.com", true, true },
	{ "a.news.example.com", "b.example.com", false, true },
	{ "example.com", "example.org", false, false },
	{ "a.github.io", "b.github.io", false, false },
	{ "github.io", "a.github.io", false, false },
	{ "x.a.github.io", "a.github.io", false, true },
	{ "xx.yy.ck", "zz.yy.ck", false, false },
	{ "a.xx.yy.ck", "xx.yy.ck", false, true },
	{ "a.co.uk", "b.a.co.uk", false, true },
	{ "a.co.uk", "b.a.co.uk", true, false },
	{ "a.co.uk", "b.co.uk", false, false },
	{ "Example.COM", "example.com", true, true },
	{ "NEWS.example.com", "example.COM", false, true },
	{ "example.com.", "example.com", true, false },
	{ "example.com.", "news.example.com", false, false },
	{ "", "", true, false },
	{ "", "", false, false },
	{ "news.example.test", "example.test", false, true },
};

static void
test_aligned(void **state)
{
	char name[128];
	size_t i;
	bool got;

	(void)state;
	for (i = 0; i < NELEM(align_cases); i++) {
		const struct align_case *c = &align_cases[i];

		(void)snprintf(name, sizeof(name), "%s ~ %s (%s)", c->a, c->b,
			       c->strict ? "strict" : "relaxed");
		got = dmarc_aligned(c->a, c->b, c->strict);
		ROW_CHECK(got == c->want, name, "got %d", got);
		got = dmarc_aligned(c->b, c->a, c->strict);
		ROW_CHECK(got == c->want, name, "swapped: got %d", got);
	}
	assert_false(dmarc_aligned(NULL, "example.com", false));
}

/* dmarc_init with a list of our own, a bad path, a list without rules;
 * then the default list again. */
static void
test_init_file(void **state)
{
	char path[] = "/tmp/dmarc_test_pslXXXXXX", out[256], err[256];
	static const char list[] = "// test list\n"
				   "test\n"
				   "sub.test\n"
				   "*.wild.test\n";
	int fd;

	(void)state;
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write(fd, list, sizeof(list) - 1),
			 (ssize_t)(sizeof(list) - 1));
	close(fd);
	assert_int_equal(dmarc_init(path, err, sizeof(err)), 0);
	dmarc_org_domain("a.b.sub.test", out, sizeof(out));
	assert_string_equal(out, "b.sub.test");
	dmarc_org_domain("a.b.c.wild.test", out, sizeof(out));
	assert_string_equal(out, "b.c.wild.test");
	/* This list does not know github.io. */
	dmarc_org_domain("a.github.io", out, sizeof(out));
	assert_string_equal(out, "github.io");

	err[0] = '\0';
	assert_int_equal(dmarc_init("/nonexistent/psl.dat", err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "/nonexistent/psl.dat"));
	dmarc_org_domain("a.b.sub.test", out, sizeof(out));
	assert_string_equal(out, "b.sub.test"); /* the old list stays */

	/* Comments only: a list without a rule is refused too. */
	assert_true((fd = open(path, O_WRONLY | O_TRUNC)) >= 0);
	assert_int_equal(write(fd, "// none\n", 8), 8);
	close(fd);
	err[0] = '\0';
	assert_int_equal(dmarc_init(path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no rules"));
	unlink(path);

	/* Back to the default; dmarc_done() falls back to the built-in. */
	dmarc_done();
	dmarc_org_domain("a.github.io", out, sizeof(out));
	assert_string_equal(out, "a.github.io");
	assert_int_equal(dmarc_init(NULL, err, sizeof(err)), 0);
	dmarc_org_domain("a.github.io", out, sizeof(out));
	assert_string_equal(out, "a.github.io");
}

/* The reader ----------------------------------------------------------- */

struct rd_case {
	const char *name;
	size_t len, off; /* a reader over LEN bytes, cursor at OFF */
	size_t n;        /* dmarc_rd_skip(n) */
	int rc;
	size_t want_off;
};

/* Every fetch fails without moving the cursor (c-ares ares_buf, LMDB). */
static const struct rd_case rd_cases[] = {
	{ "within", 5, 1, 3, 0, 4 },
	{ "to the end", 5, 1, 4, 0, 5 },
	{ "nothing", 5, 5, 0, 0, 5 },
	{ "one past the end", 5, 1, 5, -1, 1 },
	{ "at the end", 5, 5, 1, -1, 5 },
	{ "empty", 0, 0, 1, -1, 0 },
	{ "SIZE_MAX", 5, 2, SIZE_MAX, -1, 2 },
};

static void
test_rd_skip(void **state)
{
	static const uint8_t bytes[] = "abcde";
	const struct rd_case *c;
	struct dmarc_rd r;
	uint8_t b;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(rd_cases); i++) {
		c = &rd_cases[i];
		dmarc_rd_init(&r, bytes, c->len);
		r.off = c->off;
		rc = dmarc_rd_skip(&r, c->n);
		ROW_CHECK(rc == c->rc, c->name, "rc %d, want %d", rc, c->rc);
		ROW_CHECK(r.off == c->want_off, c->name,
			  "cursor at %zu, want %zu", r.off, c->want_off);
	}
	/* A peek past the end fails too, and never moves. */
	dmarc_rd_init(&r, bytes, 2);
	assert_int_equal(dmarc_rd_peek(&r, 1, &b), 0);
	assert_int_equal(b, 'b');
	assert_int_equal(dmarc_rd_peek(&r, 2, &b), -1);
	assert_true(dmarc_rd_is(&r, 0, 'a'));
	assert_false(dmarc_rd_is(&r, 2, '\0'));
	assert_int_equal(r.off, 0);
}

/* From ----------------------------------------------------------------- */

struct from_case {
	const char *name;
	const char *fields[FIELDS_MAX]; /* NULL-terminated */
	size_t len0;                    /* length of fields[0]; 0: strlen */
	int rc;
	const char *want; /* the domain, or a piece of err */
};

static const struct from_case from_cases[] = {
	{ "bare addr-spec", { "From: a@example.com" }, 0, 0, "example.com" },
	{ "no space after colon",
	  { "From:a@example.com" },
	  0,
	  0,
	  "example.com" },
	{ "WSP before colon, name case",
	  { "FROM : a@example.com" },
	  0,
	  0,
	  "example.com" },
	{ "angle-addr only", { "From: <a@example.com>" }, 0, 0, "example.com" },
	{ "display name, upper-case domain",
	  { "From: Alice <a@Mail.Example.COM>" },
	  0,
	  0,
	  "mail.example.com" },
	{ "quoted name with comma",
	  { "From: \"Smith, John\" <j@x.example>" },
	  0,
	  0,
	  "x.example" },
	{ "quoted name with an address",
	  { "From: \"a@evil.example\" <j@good.example>" },
	  0,
	  0,
	  "good.example" },
	{ "quoted name with escaped quote",
	  { "From: \"a \\\" <b@evil.example>\" <c@good.example>" },
	  0,
	  0,
	  "good.example" },
	{ "comment after",
	  { "From: a@example.com (Alice, a@evil.example)" },
	  0,
	  0,
	  "example.com" },
	{ "nested comments everywhere",
	  { "From: (x (y) \\) z) a(c)@(d)example(e).(f)com (g)" },
	  0,
	  0,
	  "example.com" },
	{ "folded",
	  { "From: Alice\r\n <a@example.com>\r\n\t(home)" },
	  0,
	  0,
	  "example.com" },
	{ "encoded word is text",
	  { "From: =?utf-8?q?J=C3=B6rg?= <j@example.com>" },
	  0,
	  0,
	  "example.com" },
	{ "obs-phrase with dots",
	  { "From: John Q. Public <jqp@example.com>" },
	  0,
	  0,
	  "example.com" },
	{ "obs-route",
	  { "From: <@relay.example,@b.example:a@example.com>" },
	  0,
	  0,
	  "example.com" },
	{ "CFWS inside addr-spec (obs)",
	  { "From: a . b @ example . com" },
	  0,
	  0,
	  "example.com" },
	{ "quoted local-part",
	  { "From: \"john doe\"@example.com" },
	  0,
	  0,
	  "example.com" },
	{ "trailing comma (obs-mbox-list)",
	  { "From: a@example.com, ," },
	  0,
	  0,
	  "example.com" },
	{ "group with one address",
	  { "From: list: a@example.com;" },
	  0,
	  0,
	  "example.com" },
	{ "group and empty group",
	  { "From: none:;, list: <a@example.com>;" },
	  0,
	  0,
	  "example.com" },
	{ "UTF-8 display name",
	  { "From: \xc3\x9cn\xc3\xaf <a@example.com>" },
	  0,
	  0,
	  "example.com" },
	{ "IDN U-label: ASCII lower-cased, UTF-8 octets kept",
	  { "From: j\xc3\xb6rg@B\xc3\x9c"
	    "CHER.Example" },
	  0,
	  0,
	  "b\xc3\x9c"
	  "cher.example" },
	{ "hyphen, digits, underscore",
	  { "From: a+tag@mail-1.sub_x.example.co.uk" },
	  0,
	  0,
	  "mail-1.sub_x.example.co.uk" },
	{ "other fields around",
	  { "To: b@other.example", "From: a@example.com", "Subject: hi" },
	  0,
	  0,
	  "example.com" },

	{ "no From",
	  { "To: a@example.com", "Subject: x" },
	  0,
	  -1,
	  "no From field" },
	{ "no fields", { NULL }, 0, -1, "no From field" },
	{ "two From fields",
	  { "From: a@example.com", "from: a@example.com" },
	  0,
	  -1,
	  "2 From fields" },
	{ "two addresses",
	  { "From: a@example.com, b@example.com" },
	  0,
	  -1,
	  "2 addresses" },
	{ "two addresses, other domains",
	  { "From: A <a@example.com>, \"B\" <b@example.org>" },
	  0,
	  -1,
	  "2 addresses" },
	{ "two groups",
	  { "From: g1: a@example.com;, g2: b@example.com;" },
	  0,
	  -1,
	  "2 addresses" },
	{ "group with no address",
	  { "From: undisclosed-recipients:;" },
	  0,
	  -1,
	  "no address" },
	{ "empty", { "From: " }, 0, -1, "no address" },
	{ "only comments", { "From: (nobody)" }, 0, -1, "no address" },
	{ "nested group",
	  { "From: g: h: a@example.com;;" },
	  0,
	  -1,
	  "group inside a group" },
	{ "group without ';'",
	  { "From: g: a@example.com" },
	  0,
	  -1,
	  "without ';'" },
	{ "no domain", { "From: alice" }, 0, -1, "without a domain" },
	{ "empty domain", { "From: alice@" }, 0, -1, "without a domain" },
	{ "angle without domain",
	  { "From: Alice <alice>" },
	  0,
	  -1,
	  "without a domain" },
	{ "null address", { "From: <>" }, 0, -1, "null address" },
	{ "no local-part", { "From: @example.com" }, 0, -1, "local-part" },
	{ "trailing dot", { "From: a@example.com." }, 0, -1, "empty label" },
	{ "empty label", { "From: a@example..com" }, 0, -1, "empty label" },
	{ "address literal",
	  { "From: a@[192.0.2.1]" },
	  0,
	  -1,
	  "address literal" },
	{ "bad domain character",
	  { "From: a@exa!mple.com" },
	  0,
	  -1,
	  "invalid character" },
	{ "unquoted @ in display name",
	  { "From: a@evil.example <c@good.example>" },
	  0,
	  -1,
	  "unexpected text" },
	{ "unquoted comma in display name",
	  { "From: Smith, John <j@x.example>" },
	  0,
	  -1,
	  "without a domain" },
	{ "words without dot before @",
	  { "From: John Smith@example.com" },
	  0,
	  -1,
	  "without a dot" },
	{ "unterminated quoted string",
	  { "From: \"Alice <a@example.com>" },
	  0,
	  -1,
	  "unterminated quoted string" },
	{ "unterminated comment",
	  { "From: (Alice a@example.com" },
	  0,
	  -1,
	  "unterminated comment" },
	{ "unbalanced ')'",
	  { "From: Alice) <a@example.com>" },
	  0,
	  -1,
	  "unbalanced" },
	{ "missing '>'", { "From: <a@example.com" }, 0, -1, "missing '>'" },
	{ "bare LF", { "From: a@example.com\nX: y" }, 0, -1, "bare CR" },
	{ "CRLF without WSP",
	  { "From: a@example.com\r\nX: y" },
	  0,
	  -1,
	  "bare CR" },
	{ "NUL in the domain",
	  { "From: a@exa\0mple.com" },
	  20,
	  -1,
	  "control character" },
	{ "control character",
	  { "From: a@example.com\x01" },
	  0,
	  -1,
	  "control character" },
	{ "label of 64 octets",
	  { "From: a@"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    ".com" },
	  0,
	  -1,
	  "longer than 63" },
	{ "domain of 254 octets",
	  { "From: a@"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "co" },
	  0,
	  -1,
	  "longer than 253" },
};

/* A message of FIELDS, built by hand as dkim_msg_parse() would. */
static void
from_msg_build(const struct from_case *c, struct dkim_msg *m,
	       struct dkim_header *hdrs)
{
	const char *colon;
	size_t i, len, n;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < FIELDS_MAX && c->fields[i] != NULL; i++) {
		len = i == 0 && c->len0 != 0 ? c->len0 : strlen(c->fields[i]);
		colon = memchr(c->fields[i], ':', len);
		assert_non_null(colon);
		n = (size_t)(colon - c->fields[i]);
		while (n > 0 && (c->fields[i][n - 1] == ' ' ||
				 c->fields[i][n - 1] == '\t'))
			n--;
		hdrs[i].field = c->fields[i];
		hdrs[i].len = len;
		hdrs[i].name_len = n;
	}
	m->hdrs = hdrs;
	m->nhdrs = i;
}

static void
test_from_domain(void **state)
{
	struct dkim_header hdrs[FIELDS_MAX];
	struct dkim_msg m;
	char dom[256], err[256];
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(from_cases); i++) {
		const struct from_case *c = &from_cases[i];

		from_msg_build(c, &m, hdrs);
		memcpy(dom, "junk", 5);
		err[0] = '\0';
		rc = dmarc_from_domain(&m, dom, sizeof(dom), err, sizeof(err));
		ROW_CHECK(rc == c->rc, c->name, "rc %d (domain \"%s\", err %s)",
			  rc, dom, err);
		if (rc == 0)
			ROW_CHECK(strcmp(dom, c->want) == 0, c->name,
				  "domain \"%s\", want \"%s\"", dom, c->want);
		else {
			ROW_CHECK(dom[0] == '\0', c->name, "domain \"%s\"",
				  dom);
			ROW_CHECK(strstr(err, c->want) != NULL, c->name,
				  "err \"%s\", want \"%s\" in it", err,
				  c->want);
		}
	}
}

/* The same through dkim_msg_parse(), and a DOMAIN buffer too small. */
static void
test_from_parsed(void **state)
{
	static const char msg[] = "Received: x\r\n"
				  "From: \"Ann\"\r\n"
				  " <ann@News.Example.com>\r\n"
				  "Subject: s\r\n"
				  "\r\n"
				  "body\r\n";
	struct dkim_msg m;
	char dom[256], err[128];

	(void)state;
	assert_int_equal(dkim_msg_parse((const uint8_t *)msg, sizeof(msg) - 1,
					&m, err, sizeof(err)),
			 0);
	assert_int_equal(
	    dmarc_from_domain(&m, dom, sizeof(dom), err, sizeof(err)), 0);
	assert_string_equal(dom, "news.example.com");
	assert_int_equal(dmarc_from_domain(&m, dom, 8, err, sizeof(err)), -1);
	assert_string_equal(dom, "");
	assert_non_null(strstr(err, "too small"));
	dkim_msg_clear(&m);
	assert_int_equal(
	    dmarc_from_domain(NULL, dom, sizeof(dom), err, sizeof(err)), -1);
}

/* Servers -------------------------------------------------------------- */

static struct dns_fixture srv = DNS_FIXTURE_INIT;

/* What dnsmasq publishes (all under .test, answered locally). */
static const char *const dns_args[] = {
	"--txt-record=_dmarc.example.test,"
	"v=DMARC1; p=reject; sp=quarantine;adkim=s;pct=50",
	"--txt-record=_dmarc.own.example.test,v=DMARC1; p=none",
	"--txt-record=_dmarc.two.example.test,v=DMARC1; p=none",
	"--txt-record=_dmarc.two.example.test,v=DMARC1; p=reject",
	"--txt-record=_dmarc.spf.example.test,v=spf1 -all",
	"--txt-record=_dmarc.mixed.example.test,v=spf1 -all",
	"--txt-record=_dmarc.mixed.example.test,v=DMARC1; p=quarantine",
	"--txt-record=_dmarc.badp.example.test,v=DMARC1; p=bogus",
	"--txt-record=_dmarc.nosp.test,v=DMARC1; p=reject",
	"--txt-record=_dmarc.nodmarc.test,hello",
	NULL,
};

static int
group_setup(void **state)
{
	char err[256];

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (dmarc_init(NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "dmarc_init: %s\n", err);
		return -1;
	}
	if (dns_fixture_dnsmasq_start(&srv, "test", dns_args) != 0)
		fprintf(stderr, "# dnsmasq not available: lookups skip\n");
	return dns_fixture_silent_start(&srv);
}

static int
group_teardown(void **state)
{
	(void)state;
	dns_fixture_stop(&srv);
	dmarc_done();
	return 0;
}

/* Lookups -------------------------------------------------------------- */

struct fx {
	struct event_base *base;
	struct dns_resolver *r;
	struct dmarc_policy_reply got;
	int ncalls;
};

static void
on_reply(const struct dmarc_policy_reply *rep, void *arg)
{
	struct fx *f = arg;

	f->got = *rep;
	f->ncalls++;
}

/* Run the loop until F has WANT callbacks or MS milliseconds passed. */
static void
fx_run(struct fx *f, int want, int ms)
{
	(void)dns_fixture_run(f->base, &f->ncalls, want, ms);
}

static void
fx_open(struct fx *f, const char *servers, unsigned timeout_ms)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	if (dns_fixture_loop_open(&f->base, &f->r, servers, timeout_ms, err,
				  sizeof(err)) != 0)
		fail_msg("resolver: %s", err);
}

/* One lookup to its end; the callback must not come from the call. */
static void
fx_lookup(struct fx *f, const char *from)
{
	f->ncalls = 0;
	memset(&f->got, 0, sizeof(f->got));
	assert_non_null(dmarc_policy_lookup(f->r, from, on_reply, f));
	assert_int_equal(f->ncalls, 0);
	fx_run(f, 1, RUN_TIMEOUT_MS);
	assert_int_equal(f->ncalls, 1);
}

/* 3 * 63 + 42 + 3 dots + ".example.test" = 247 octets: a valid name, but
 * "_dmarc." before it makes 254, one too many for DNS. */
#define LONG63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LONG42 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct lookup_case {
	const char *name, *from;
	enum dmarc_lookup result;
	bool from_org;
	enum dmarc_policy effective;
	const char *where; /* NULL: not checked */
	const char *err;   /* a piece of it; NULL: not checked */
};

static const struct lookup_case lookup_cases[] = {
	{ "at the domain", "example.test", DMARC_FOUND, false, DMARC_P_REJECT,
	  "_dmarc.example.test", NULL },
	{ "org domain: sp applies", "news.example.test", DMARC_FOUND, true,
	  DMARC_P_QUARANTINE, "_dmarc.example.test", NULL },
	{ "org domain, deep subdomain", "a.b.news.example.test", DMARC_FOUND,
	  true, DMARC_P_QUARANTINE, "_dmarc.example.test", NULL },
	{ "upper-case From domain", "NEWS.Example.TEST", DMARC_FOUND, true,
	  DMARC_P_QUARANTINE, "_dmarc.example.test", NULL },
	{ "own record beats the org's", "own.example.test", DMARC_FOUND, false,
	  DMARC_P_NONE, "_dmarc.own.example.test", NULL },
	{ "org without sp: p applies", "x.nosp.test", DMARC_FOUND, true,
	  DMARC_P_REJECT, "_dmarc.nosp.test", NULL },
	{ "non-DMARC TXT only: org next", "spf.example.test", DMARC_FOUND, true,
	  DMARC_P_QUARANTINE, "_dmarc.example.test", NULL },
	{ "DMARC among other TXT", "mixed.example.test", DMARC_FOUND, false,
	  DMARC_P_QUARANTINE, "_dmarc.mixed.example.test", NULL },
	{ "two DMARC records: none, no fallback", "two.example.test",
	  DMARC_NONE, false, DMARC_P_NONE, "_dmarc.two.example.test",
	  "2 DMARC records" },
	{ "bad p: none, no fallback", "badp.example.test", DMARC_NONE, false,
	  DMARC_P_NONE, "_dmarc.badp.example.test", "no valid p=" },
	{ "none (org domain itself)", "nothing.test", DMARC_NONE, false,
	  DMARC_P_NONE, "_dmarc.nothing.test", NULL },
	{ "none at the domain nor the org", "a.nothing.test", DMARC_NONE, false,
	  DMARC_P_NONE, "_dmarc.nothing.test", NULL },
	{ "org holds only non-DMARC TXT", "x.nodmarc.test", DMARC_NONE, false,
	  DMARC_P_NONE, "_dmarc.nodmarc.test", "no DMARC record" },
	{ "_dmarc.FROM too long: org still asked",
	  LONG63 "." LONG63 "." LONG63 "." LONG42 ".example.test", DMARC_FOUND,
	  true, DMARC_P_QUARANTINE, "_dmarc.example.test", NULL },
	{ "empty From domain", "", DMARC_NONE, false, DMARC_P_NONE, NULL,
	  "no valid From domain" },
	{ "U-label (not a DNS name)",
	  "b\xc3\xbc"
	  "cher.test",
	  DMARC_NONE, false, DMARC_P_NONE, NULL, "invalid character" },
};

static void
lookup_check(const struct lookup_case *c, const struct fx *f)
{
	const struct dmarc_policy_reply *g = &f->got;

	ROW_CHECK(g->result == c->result, c->name, "result %d, want %d (%s)",
		  g->result, c->result, g->err);
	ROW_CHECK(g->from_org == c->from_org, c->name, "from_org %d",
		  g->from_org);
	ROW_CHECK(dmarc_effective(g) == c->effective, c->name,
		  "effective %s, want %s", dmarc_policy_str(dmarc_effective(g)),
		  dmarc_policy_str(c->effective));
	if (c->where != NULL)
		ROW_CHECK(strcmp(g->where, c->where) == 0, c->name,
			  "where \"%s\", want \"%s\"", g->where, c->where);
	if (c->err != NULL)
		ROW_CHECK(strstr(g->err, c->err) != NULL, c->name,
			  "err \"%s\", want \"%s\" in it", g->err, c->err);
	if (g->result == DMARC_FOUND)
		ROW_CHECK(g->err[0] == '\0', c->name, "err \"%s\"", g->err);
}

static void
test_lookup(void **state)
{
	struct fx f;
	size_t i;
	int pass;

	(void)state;
	if (srv.dnsmasq_pid <= 0)
		skip();
	/* Pass 0: fresh answers, one resolver per row.  Pass 1: one resolver
	 * for every row, so later rows hit the dns/ cache (still never
	 * inline). */
	fx_open(&f, srv.dnsmasq_servers, 2000);
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < NELEM(lookup_cases); i++) {
			struct fx one;

			if (pass == 0) {
				fx_open(&one, srv.dnsmasq_servers, 2000);
				fx_lookup(&one, lookup_cases[i].from);
				lookup_check(&lookup_cases[i], &one);
				dns_fixture_loop_close(one.base, one.r);
			} else {
				fx_lookup(&f, lookup_cases[i].from);
				lookup_check(&lookup_cases[i], &f);
			}
		}
	/* The record itself comes back. */
	fx_lookup(&f, "example.test");
	assert_int_equal(f.got.record.p, DMARC_P_REJECT);
	{
		/* ...and is remembered for this resolver on this thread, by
		 * From domain in any case, not for another resolver. */
		struct dmarc_policy_reply memo;
		struct fx other;

		memset(&memo, 0, sizeof(memo));
		assert_true(dmarc_policy_cached(f.r, "Example.TEST", &memo));
		assert_int_equal(memo.result, DMARC_FOUND);
		assert_int_equal(memo.record.p, DMARC_P_REJECT);
		assert_int_equal(memo.record.pct, 50);
		assert_false(dmarc_policy_cached(f.r, "other.test", &memo));
		fx_open(&other, srv.dnsmasq_servers, 2000);
		assert_false(
		    dmarc_policy_cached(other.r, "example.test", &memo));
		dns_fixture_loop_close(other.base, other.r);
		dmarc_memo_free();
		assert_false(dmarc_policy_cached(f.r, "example.test", &memo));
	}
	assert_int_equal(f.got.record.sp, DMARC_P_QUARANTINE);
	assert_true(f.got.record.sp_set);
	assert_true(f.got.record.adkim_strict);
	assert_false(f.got.record.aspf_strict);
	assert_int_equal(f.got.record.pct, 50);
	dns_fixture_loop_close(f.base, f.r);
}

/* A server that never answers: TEMPFAIL after the timeout. */
static void
test_lookup_tempfail(void **state)
{
	struct fx f;

	(void)state;
	fx_open(&f, srv.silent_servers, 100);
	fx_lookup(&f, "news.example.test");
	assert_int_equal(f.got.result, DMARC_TEMPFAIL);
	{
		struct dmarc_policy_reply memo;

		/* A failure is asked again next time, never remembered. */
		assert_false(
		    dmarc_policy_cached(f.r, "news.example.test", &memo));
	}
	assert_int_equal(dmarc_effective(&f.got), DMARC_P_NONE);
	assert_string_equal(f.got.where, "_dmarc.news.example.test");
	assert_non_null(strstr(f.got.err, "_dmarc.news.example.test"));
	dns_fixture_loop_close(f.base, f.r);
}

struct cancel_ctx {
	struct fx *f;
	struct dmarc_query *q;
	bool called, too_late;
};

static void
on_helper_cancel(const struct dns_txt_reply *rep, void *arg)
{
	struct cancel_ctx *cc = arg;

	(void)rep;
	cc->called = true;
	if (cc->f->ncalls != 0) {
		cc->too_late = true; /* Q is gone: do not touch it */
		return;
	}
	dmarc_policy_cancel(cc->q);
}

static void
test_lookup_cancel(void **state)
{
	struct cancel_ctx cc;
	struct dmarc_query *q;
	struct fx f;

	(void)state;
	/* In flight at a silent server: no callback, not even the timeout. */
	fx_open(&f, srv.silent_servers, 100);
	assert_non_null(
	    q = dmarc_policy_lookup(f.r, "example.test", on_reply, &f));
	fx_run(&f, 1, 30);
	assert_int_equal(f.ncalls, 0);
	dmarc_policy_cancel(q);
	fx_run(&f, 1, 300);
	assert_int_equal(f.ncalls, 0);
	dmarc_policy_cancel(NULL);
	dns_fixture_loop_close(f.base, f.r);

	if (srv.dnsmasq_pid <= 0)
		skip();
	/* At once, before any answer. */
	fx_open(&f, srv.dnsmasq_servers, 2000);
	assert_non_null(
	    q = dmarc_policy_lookup(f.r, "news.example.test", on_reply, &f));
	dmarc_policy_cancel(q);
	fx_run(&f, 1, 200);
	assert_int_equal(f.ncalls, 0);

	/* During the org-domain step.  Both names cached (positive answers:
	 * _dmarc.spf.example.test holds only SPF), a helper TXT lookup queued
	 * right after ours: dns/ delivers our first answer, which starts the
	 * org lookup (queued for the next round), then the helper's, whose
	 * callback cancels us while the org step waits. */
	fx_lookup(&f, "spf.example.test");
	assert_int_equal(f.got.result, DMARC_FOUND);
	assert_true(f.got.from_org);
	memset(&cc, 0, sizeof(cc));
	cc.f = &f;
	f.ncalls = 0;
	assert_non_null(
	    cc.q = dmarc_policy_lookup(f.r, "spf.example.test", on_reply, &f));
	assert_non_null(
	    dns_txt_lookup(f.r, "_dmarc.example.test", on_helper_cancel, &cc));
	fx_run(&f, 1, 200);
	assert_true(cc.called);
	assert_false(cc.too_late);
	assert_int_equal(f.ncalls, 0);
	dns_fixture_loop_close(f.base, f.r);
}

struct self_cancel {
	struct dmarc_query *q;
	int ncalls;
};

static void
on_reply_cancel(const struct dmarc_policy_reply *rep, void *arg)
{
	struct self_cancel *s = arg;

	(void)rep;
	s->ncalls++;
	dmarc_policy_cancel(s->q);
}

static void
test_lookup_cancel_in_callback(void **state)
{
	struct self_cancel s = { NULL, 0 };
	struct fx f;

	(void)state;
	fx_open(&f, srv.silent_servers, 50);
	assert_non_null(s.q = dmarc_policy_lookup(f.r, "example.test",
						  on_reply_cancel, &s));
	while (s.ncalls == 0)
		assert_int_not_equal(event_base_loop(f.base, EVLOOP_ONCE), -1);
	assert_int_equal(s.ncalls, 1);
	dns_fixture_loop_close(f.base, f.r);
}

static void
test_lookup_args(void **state)
{
	struct fx f;

	(void)state;
	fx_open(&f, srv.silent_servers, 50);
	assert_null(dmarc_policy_lookup(NULL, "example.test", on_reply, &f));
	assert_null(dmarc_policy_lookup(f.r, NULL, on_reply, &f));
	assert_null(dmarc_policy_lookup(f.r, "example.test", NULL, &f));
	dns_fixture_loop_close(f.base, f.r);
}

static void
test_effective(void **state)
{
	struct dmarc_policy_reply rep;

	(void)state;
	memset(&rep, 0, sizeof(rep));
	rep.result = DMARC_FOUND;
	rep.record.p = DMARC_P_REJECT;
	rep.record.sp = DMARC_P_NONE;
	assert_int_equal(dmarc_effective(&rep), DMARC_P_REJECT);
	rep.from_org = true;
	assert_int_equal(dmarc_effective(&rep), DMARC_P_NONE);
	rep.result = DMARC_NONE;
	assert_int_equal(dmarc_effective(&rep), DMARC_P_NONE);
	rep.result = DMARC_TEMPFAIL;
	assert_int_equal(dmarc_effective(&rep), DMARC_P_NONE);
	assert_int_equal(dmarc_effective(NULL), DMARC_P_NONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_parse),
		cmocka_unit_test(test_rd_skip),
		cmocka_unit_test(test_policy_str),
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_from_domain),
		cmocka_unit_test(test_from_parsed),
		cmocka_unit_test(test_effective),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_lookup_tempfail),
		cmocka_unit_test(test_lookup_cancel),
		cmocka_unit_test(test_lookup_cancel_in_callback),
		cmocka_unit_test(test_lookup_args),
		/* Last: it swaps the list and restores the default. */
		cmocka_unit_test(test_init_file),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
