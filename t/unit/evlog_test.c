/*
 * evlog_test.c — the delivery log (mta/observe/evlog.c): golden lines for every
 * field, JSON and UTF-8 validity on adversarial input (checked by Python's
 * json module), no address / local part / VERP form in the file, hashes equal
 * to queue_addr_hash (and to Python's hashlib), reopen after rename, flush
 * within a second, close flushes, many threads without torn lines, drops
 * while the writer is stalled on a full FIFO, write errors, no path; and the
 * cost of a line (printed: lines/s, µs/line).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
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

#include "mta/observe/evlog.h"
#include "mta/core/log.h"
#include "mta/core/logspace.h"
#include "mta/core/scrub.h"
#include "queue/queue.h"

#ifndef EVLOG_TEST_PYTHON
#define EVLOG_TEST_PYTHON "/usr/bin/python3"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define EVLOG_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVLOG_TEST_SANITIZED 1
#endif
#endif
#ifndef EVLOG_TEST_SANITIZED
#define EVLOG_TEST_SANITIZED 0
#endif

static const uint8_t key_a[32] = { 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
				   11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
				   22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };

/* BLAKE2b-128 keyed with key_a, from Python's hashlib (independent of
 * libsodium and of queue_addr_hash). */
#define HASH_JANE       "f6ca6f993082192af36bbcf92e94faf8"
#define HASH_BOUNCES    "4c3fa56dee113347130dae1a11ff0eec"
#define HASH_POSTMASTER "a00b6e42c6b5a650a0200549f13919cd"

static char tmpdir[64];

/* Helpers ------------------------------------------------------------- */

static struct evlog_event
ev_none(enum evlog_type type)
{
	struct evlog_event ev = { .type = type,
				  .nrcpts = -1,
				  .attempt = -1,
				  .queue_time_ms = -1,
				  .tls_verified = -1,
				  .count = -1 };

	return ev;
}

static void
tpath(char *out, size_t len, const char *name)
{
	int n = snprintf(out, len, "%s/%s", tmpdir, name);

	assert_true(n > 0 && (size_t)n < len);
}

static void
log_open_at(const char *path, const uint8_t *key)
{
	char err[256] = "";

	if (evlog_open(path, key, err, sizeof(err)) != 0)
		fail_msg("evlog_open %s: %s", path ? path : "(null)", err);
}

/* The whole of PATH, NUL-terminated (its length in *LEN); NULL if absent. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		return NULL;
	do {
		if (cap - n < 65536) {
			cap = cap * 2 + 65536;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

static size_t
count_char(const char *s, size_t len, char c)
{
	size_t n = 0, i;

	for (i = 0; i < len; i++)
		n += s[i] == c;
	return n;
}

/* The single line EV produces, as evlog writes it (opens, writes, closes). */
static char *
one_line(const struct evlog_event *ev, const char *name)
{
	char path[128];
	char *s;

	tpath(path, sizeof(path), name);
	unlink(path);
	log_open_at(path, key_a);
	evlog_write(ev);
	evlog_close();
	s = slurp(path, NULL);
	assert_non_null(s);
	unlink(path);
	return s;
}

/* The decimal number at P (atoi would strlen the whole file under ASan). */
static int
digits(const char *p)
{
	int v = 0;

	while (*p >= '0' && *p <= '9' && v < 100000000)
		v = v * 10 + (*p++ - '0');
	return v;
}

/* NEEDLE within [P, E) (strstr on a whole file is quadratic under ASan's
 * strict_string_checks). */
static const char *
find_in(const char *p, const char *e, const char *needle)
{
	size_t n = strlen(needle);

	for (; p + n <= e; p++)
		if (*p == *needle && memcmp(p, needle, n) == 0)
			return p;
	return NULL;
}

/* The value of string field NAME in LINE (raw, still JSON-escaped). */
static bool
field(const char *line, const char *name, char *out, size_t outlen)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", name);
	if ((p = strstr(line, pat)) == NULL)
		return false;
	p += strlen(pat);
	for (e = p; *e != '\0' && *e != '"'; e++)
		if (*e == '\\' && e[1] != '\0')
			e++;
	assert_true((size_t)(e - p) < outlen);
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return true;
}

/* Python checks PATH: strict UTF-8, every line a JSON object ending in \n,
 * no duplicate keys, keys in the documented order, no torn line. */
static const char json_check_py[] =
    "import json,sys\n"
    "order=['time','event','id','session','user','client','pool',"
    "'source_addr','destination','mx_host','mx_ip','rcpt_hash','rcpt_domain',"
    "'sender_hash','sender_domain','msgid','msgid_hash','campaign','size',"
    "'nrcpts','attempt','queue_time_s',"
    "'code','enhanced_status','reply','stage','category','tls_version',"
    "'tls_cipher',"
    "'tls_verified','dkim','dmarc','reason','admin','command','count']\n"
    "data=open(sys.argv[1],'rb').read().decode('utf-8')\n"
    "assert data=='' or data.endswith('\\n'), 'last line not terminated'\n"
    "n=0\n"
    "for l in data.split('\\n')[:-1]:\n"
    "  pairs=json.loads(l,object_pairs_hook=lambda p:p)\n"
    "  keys=[k for k,v in pairs]\n"
    "  assert len(set(keys))==len(keys),'duplicate key: '+l\n"
    "  assert keys[:2]==['time','event'],l\n"
    "  idx=[order.index(k) for k in keys]\n"
    "  assert idx==sorted(idx),'order: '+l\n"
    "  n+=1\n"
    "print(n)\n";

static long
json_check(const char *path)
{
	char cmd[512], out[64] = "";
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "%s -c \"$EVLOG_CHECK_PY\" '%s'",
		 EVLOG_TEST_PYTHON, path);
	setenv("EVLOG_CHECK_PY", json_check_py, 1);
	p = popen(cmd, "r");
	assert_non_null(p);
	if (fgets(out, sizeof(out), p) == NULL)
		out[0] = '\0';
	st = pclose(p);
	if (st != 0)
		fail_msg("python json check of %s failed (status %d)", path,
			 st);
	return strtol(out, NULL, 10);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Lower-case copy (ASCII) for case-insensitive searches. */
static char *
lower_dup(const char *s, size_t len)
{
	char *d = malloc(len + 1);
	size_t i;

	assert_non_null(d);
	for (i = 0; i < len; i++)
		d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
	d[len] = '\0';
	return d;
}

/* Type names ----------------------------------------------------------- */

static void
test_type_names(void **state)
{
	(void)state;
	assert_string_equal(evlog_type_name(EV_RECEPTION), "reception");
	assert_string_equal(evlog_type_name(EV_DELIVERY), "delivery");
	assert_string_equal(evlog_type_name(EV_TRANSIENT), "transient_failure");
	assert_string_equal(evlog_type_name(EV_BOUNCE), "bounce");
	assert_string_equal(evlog_type_name(EV_EXPIRATION), "expiration");
	assert_string_equal(evlog_type_name(EV_REJECTION), "rejection");
	assert_string_equal(evlog_type_name(EV_ADMIN), "admin");
	assert_string_equal(evlog_type_name(EV_EXPORT), "exported");
	assert_string_equal(evlog_type_name(EV_IMPORT), "imported");
	assert_string_equal(evlog_type_name((enum evlog_type)99), "unknown");
	assert_string_equal(evlog_type_name(EV__COUNT), "unknown");
}

/* Golden lines --------------------------------------------------------- */

static struct evlog_event
ev_full(void)
{
	struct evlog_event ev = ev_none(EV_DELIVERY);

	ev.time_ms = INT64_C(1795929153123);
	ev.id = UINT64_C(0x0123456789abcdef);
	ev.session = "a1b2c3d4";
	ev.user = "campaigns";
	ev.client = "127.0.0.10";
	ev.pool = "pool-a";
	ev.source_addr = "127.0.0.7";
	ev.destination = "example.org";
	ev.mx_host = "mx1.example.org";
	ev.mx_ip = "127.0.0.25";
	ev.rcpt = "<Jane@Example.ORG>";
	ev.sender = "bounces@esp.test";
	ev.size = 12345;
	ev.nrcpts = 3;
	ev.attempt = 2;
	ev.queue_time_ms = 61234;
	ev.code = 250;
	ev.enhanced = "2.0.0";
	ev.reply = "Ok: queued as 4XyZ";
	ev.stage = "eom";
	ev.category = "quota";
	ev.tls_version = "TLSv1.3";
	ev.tls_cipher = "TLS_AES_256_GCM_SHA384";
	ev.tls_verified = 1;
	ev.dkim = "d=esp.test s=s1 rsa-sha256";
	ev.dmarc = "pass header.from=esp.test";
	ev.reason = "policy";
	ev.admin = "root (uid 0)";
	ev.command = "hold --domain=example.org";
	ev.count = 7;
	return ev;
}

static void
test_golden(void **state)
{
	static const struct {
		const char *name;
		struct evlog_event ev;
		const char *want;
	} cases[] = {
		{ "minimal",
		  { .type = EV_REJECTION,
		    .time_ms = 1,
		    .nrcpts = -1,
		    .attempt = -1,
		    .queue_time_ms = -1,
		    .tls_verified = -1,
		    .count = -1 },
		  "{\"time\":\"1970-01-01T00:00:00.001Z\","
		  "\"event\":\"rejection\"}\n" },
		{ "null sender, rcpt without @",
		  { .type = EV_BOUNCE,
		    .time_ms = INT64_C(1709251199999),
		    .id = 1,
		    .rcpt = "Postmaster",
		    .sender = "",
		    .nrcpts = -1,
		    .attempt = -1,
		    .queue_time_ms = -1,
		    .tls_verified = -1,
		    .count = -1 },
		  "{\"time\":\"2024-02-29T23:59:59.999Z\",\"event\":\"bounce\","
		  "\"id\":\"0000000000000001\",\"rcpt_hash\":\"" HASH_POSTMASTER
		  "\",\"rcpt_domain\":\"\",\"sender_domain\":\"\"}\n" },
		{ "null sender as <>",
		  { .type = EV_RECEPTION,
		    .time_ms = INT64_C(951868800000),
		    .sender = "<>",
		    .nrcpts = 0,
		    .attempt = -1,
		    .queue_time_ms = -1,
		    .tls_verified = -1,
		    .count = -1 },
		  "{\"time\":\"2000-03-01T00:00:00.000Z\",\"event\":"
		  "\"reception\",\"sender_domain\":\"\",\"nrcpts\":0}\n" },
		{ "zeros that are values",
		  { .type = EV_ADMIN,
		    .time_ms = INT64_C(4133937600007),
		    .nrcpts = 0,
		    .attempt = 0,
		    .queue_time_ms = 0,
		    .tls_verified = 0,
		    .count = 0,
		    .size = 0,
		    .code = 0 },
		  "{\"time\":\"2100-12-31T12:00:00.007Z\",\"event\":\"admin\","
		  "\"nrcpts\":0,\"attempt\":0,\"queue_time_s\":0.000,"
		  "\"tls_verified\":false,\"count\":0}\n" },
		{ "big numbers",
		  { .type = EV_EXPIRATION,
		    .time_ms = INT64_C(1795929153123),
		    .id = UINT64_MAX,
		    .size = UINT64_MAX,
		    .nrcpts = 2147483647,
		    .attempt = -1,
		    .queue_time_ms = INT64_C(432000001),
		    .code = 421,
		    .tls_verified = 5,
		    .count = -1 },
		  "{\"time\":\"2026-11-29T05:12:33.123Z\","
		  "\"event\":\"expiration\",\"id\":\"ffffffffffffffff\","
		  "\"size\":18446744073709551615,\"nrcpts\":2147483647,"
		  "\"queue_time_s\":432000.001,\"code\":421,"
		  "\"tls_verified\":true}\n" },
	};
	struct evlog_event full = ev_full();
	const char *want_full =
	    "{\"time\":\"2026-11-29T05:12:33.123Z\",\"event\":\"delivery\","
	    "\"id\":\"0123456789abcdef\",\"session\":\"a1b2c3d4\","
	    "\"user\":\"campaigns\",\"client\":\"127.0.0.10\","
	    "\"pool\":\"pool-a\",\"source_addr\":\"127.0.0.7\","
	    "\"destination\":\"example.org\",\"mx_host\":\"mx1.example.org\","
	    "\"mx_ip\":\"127.0.0.25\",\"rcpt_hash\":\"" HASH_JANE "\","
	    "\"rcpt_domain\":\"example.org\",\"sender_hash\":\"" HASH_BOUNCES
	    "\",\"sender_domain\":\"esp.test\",\"size\":12345,\"nrcpts\":3,"
	    "\"attempt\":2,\"queue_time_s\":61.234,\"code\":250,"
	    "\"enhanced_status\":\"2.0.0\",\"reply\":\"Ok: queued as 4XyZ\","
	    "\"stage\":\"eom\",\"category\":\"quota\","
	    "\"tls_version\":\"TLSv1.3\","
	    "\"tls_cipher\":\"TLS_AES_256_GCM_SHA384\",\"tls_verified\":true,"
	    "\"dkim\":\"d=esp.test s=s1 rsa-sha256\","
	    "\"dmarc\":\"pass header.from=esp.test\",\"reason\":\"policy\","
	    "\"admin\":\"root (uid 0)\","
	    "\"command\":\"hold --domain=example.org\",\"count\":7}\n";
	char *line;
	size_t i;

	(void)state;
	line = one_line(&full, "golden-full");
	assert_string_equal(line, want_full);
	free(line);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		line = one_line(&cases[i].ev, "golden");
		if (strcmp(line, cases[i].want) != 0)
			fail_msg("%s:\n got  %s want %s", cases[i].name, line,
				 cases[i].want);
		free(line);
	}
}

/* "time" defaults to now: RFC 3339 UTC with milliseconds, close to now. */
static void
test_time_now(void **state)
{
	struct evlog_event ev = ev_none(EV_DELIVERY);
	char *line, val[64], want[32];
	struct tm tm;
	time_t t0 = time(NULL), t1;

	(void)state;
	line = one_line(&ev, "now");
	t1 = time(NULL);
	assert_true(field(line, "time", val, sizeof(val)));
	assert_int_equal(strlen(val), 24);
	assert_int_equal(val[23], 'Z');
	assert_int_equal(val[19], '.');
	gmtime_r(&t0, &tm);
	strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
	if (strncmp(val, want, 19) != 0) {
		gmtime_r(&t1, &tm);
		strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
		assert_memory_equal(val, want, 19);
	}
	free(line);
}

/* Hashes ---------------------------------------------------------------- */

static void
test_hash_normalised(void **state)
{
	static const char *const variants[] = {
		"jane@example.org",       "<jane@example.org>",
		" <Jane@Example.Org> ",   "JANE@EXAMPLE.ORG",
		"\tjane@example.org\r\n", "< jane@EXAMPLE.org >"
	};
	static const uint8_t key_b[32] = { 42 };
	char want[QUEUE_HASH_HEX_BYTES], got[64], dom[64];
	struct evlog_event ev = ev_none(EV_DELIVERY);
	char *line;
	size_t i;

	(void)state;
	queue_addr_hash(key_a, "jane@example.org", want);
	assert_string_equal(want, HASH_JANE);
	for (i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		ev.rcpt = variants[i];
		ev.sender = variants[i];
		line = one_line(&ev, "hash");
		assert_true(field(line, "rcpt_hash", got, sizeof(got)));
		assert_string_equal(got, want);
		assert_true(field(line, "sender_hash", got, sizeof(got)));
		assert_string_equal(got, want);
		assert_true(field(line, "rcpt_domain", dom, sizeof(dom)));
		assert_string_equal(dom, "example.org");
		assert_true(field(line, "sender_domain", dom, sizeof(dom)));
		assert_string_equal(dom, "example.org");
		free(line);
	}
	/* Another key, another hash (the key is really used).  The sender
	 * is the last variant, hashed (and memoized) with key_a above. */
	ev.rcpt = "jane@example.org";
	{
		char path[128], *s;

		tpath(path, sizeof(path), "hash-b");
		unlink(path);
		log_open_at(path, key_b);
		evlog_write(&ev);
		evlog_close();
		s = slurp(path, NULL);
		assert_non_null(s);
		assert_true(field(s, "rcpt_hash", got, sizeof(got)));
		queue_addr_hash(key_b, "jane@example.org", want);
		assert_string_equal(got, want);
		assert_string_not_equal(got, HASH_JANE);
		/* The sender's hash is memoized per thread: a new key (a new
		 * evlog_open) must not reuse the old one's. */
		assert_true(field(s, "sender_hash", got, sizeof(got)));
		queue_addr_hash(key_b, ev.sender, want);
		assert_string_equal(got, want);
		free(s);
		unlink(path);
	}
	/* The last '@' splits; the domain is lower-cased. */
	ev.rcpt = "\"a@b\"@Sub.Example.ORG";
	line = one_line(&ev, "hash");
	assert_true(field(line, "rcpt_domain", dom, sizeof(dom)));
	assert_string_equal(dom, "sub.example.org");
	queue_addr_hash(key_a, ev.rcpt, want);
	assert_true(field(line, "rcpt_hash", got, sizeof(got)));
	assert_string_equal(got, want);
	free(line);
}

/* Tracing: Message-ID and campaign -------------------------------------- */

/*
 * The Message-ID: msgid_hash always (queue_addr_hash of it: brackets and
 * case do not count), msgid only with msgid_clear and only when neither
 * half holds an encoded address or the event's local parts; the campaign
 * scrubbed and escaped like any text.
 */
static void
test_msgid_campaign(void **state)
{
	static const struct {
		const char *msgid;
		bool clear;
		const char *want; /* the msgid field, NULL: none */
	} cases[] = {
		{ "<20261205.1234.abc@mailer.example>", true,
		  "<20261205.1234.abc@mailer.example>" },
		{ "20261205.1234.abc@mailer.example", true,
		  "<20261205.1234.abc@mailer.example>" },
		{ "<20261205.1234.abc@mailer.example>", false, NULL },
		/* the recipient's local part, the sender's, a VERP form */
		{ "<zqsecret.rcpt.12345678@mailer.example>", true, NULL },
		{ "<x.12345678@zqsender.local.example>", true, NULL },
		{ "<b.1234+zq=victim.example@mailer.example>", true, NULL },
		{ "<no-at-sign-1234>", true, NULL },
		{ "<a\"b.12345678@mailer.example>", true, NULL },
		{ "<a.12345678@mailer.example\x01>", true, NULL },
	};
	struct evlog_event ev = ev_none(EV_DELIVERY);
	char path[128], want[QUEUE_HASH_HEX_BYTES], got[256], *s, *line, *nl;
	size_t i;

	(void)state;
	ev.rcpt = "zqsecret.rcpt@dest.test";
	ev.sender = "zqsender.local@sender.test";
	tpath(path, sizeof(path), "msgid");
	unlink(path);
	log_open_at(path, key_a);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ev.msgid = cases[i].msgid;
		ev.msgid_clear = cases[i].clear;
		ev.campaign = i == 0 ? "spring \"26\" \x01 zqsecret.rcpt "
				       "team@corp.example"
				     : "c1";
		evlog_write(&ev);
	}
	ev.msgid = NULL;
	ev.campaign = NULL;
	evlog_write(&ev); /* neither: no field */
	evlog_close();
	assert_int_equal(json_check(path),
			 (long)(sizeof(cases) / sizeof(cases[0])) + 1);
	s = slurp(path, NULL);
	assert_non_null(s);
	line = s;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (cases[i].want == NULL) {
			if (field(line, "msgid", got, sizeof(got)))
				fail_msg("case %zu: msgid in clear: %s", i,
					 line);
		} else {
			assert_true(field(line, "msgid", got, sizeof(got)));
			assert_string_equal(got, cases[i].want);
		}
		queue_addr_hash(key_a, cases[i].msgid, want);
		assert_true(field(line, "msgid_hash", got, sizeof(got)));
		assert_string_equal(got, want);
		assert_null(strstr(line, "zqsecret"));
		assert_null(strstr(line, "zqsender"));
		assert_null(strstr(line, "victim"));
		line = nl + 1;
	}
	/* The hash ignores brackets and case: `outpost log --id` relies on
	 * it. */
	queue_addr_hash(key_a, "20261205.1234.ABC@Mailer.Example", got);
	queue_addr_hash(key_a, cases[0].msgid, want);
	assert_string_equal(got, want);
	assert_null(strstr(line, "msgid"));
	assert_null(strstr(line, "campaign"));
	/* The first campaign: quotes escaped, the control byte as \x01, the
	 * known local part and the address gone. */
	assert_true(field(s, "campaign", got, sizeof(got)));
	assert_string_equal(got, "spring \\\"26\\\" \\\\x01 <address> "
				 "<address>");
	free(s);
	unlink(path);
}

/* Adversarial bytes: always valid JSON and UTF-8 ------------------------- */

static void
test_json_adversarial(void **state)
{
	static const char *const nasty[] = {
		"",
		"\x01\x02\x1f\x7f ctl",
		"tab\there\r\nCRLF\nLF",
		"quote\" back\\slash \\\" \\u0000",
		"\xff\xfe\xfd invalid",
		"\xc0\xaf overlong \xe0\x80\xaf \xf0\x80\x80\xaf",
		"\xed\xa0\x80 surrogate \xed\xbf\xbf",
		"\xf4\x90\x80\x80 past U+10FFFF \xf8\x88\x80\x80\x80",
		"\xe2\x80\xa8 line sep \xe2\x80\xa9, ok \xc3\xa9\xe6\x97\xa5",
		"cut \xe2\x82",
		"cut at end \xf0\x9f\x98",
		"\xc3",
		"}{\"],[:",
		"\\x41 fake escapes \\u00e9",
		"550 5.1.1 \"x\\\"y\"@\xff\x01.example",
	};
	char path[128], *big, *s;
	struct evlog_event ev;
	struct evlog_stats st;
	size_t i, bl = 100000, n, len, lines = 0;

	(void)state;
	tpath(path, sizeof(path), "adversarial");
	unlink(path);
	log_open_at(path, key_a);
	big = malloc(bl + 1);
	assert_non_null(big);
	for (i = 0; i < bl; i++)
		big[i] = "\"\\\x01\xc3\xa9\xffx@ =%"[i % 11];
	big[bl] = '\0';
	for (i = 0; i <= sizeof(nasty) / sizeof(nasty[0]); i++) {
		const char *t =
		    i < sizeof(nasty) / sizeof(nasty[0]) ? nasty[i] : big;

		ev = ev_none((enum evlog_type)(i % (EV__COUNT + 1)));
		ev.session = ev.user = ev.client = ev.pool = t;
		ev.source_addr = ev.destination = ev.mx_host = ev.mx_ip = t;
		ev.enhanced = ev.reply = ev.stage = ev.tls_version = t;
		ev.tls_cipher = ev.dkim = ev.dmarc = ev.reason = t;
		ev.admin = ev.command = t;
		ev.rcpt = t;
		ev.sender = t;
		evlog_write(&ev);
		lines++;
		/* The same text as the domain part of the addresses. */
		ev.rcpt = ev.sender = NULL;
		n = strlen(t) < 300 ? strlen(t) : 300;
		{
			char addr[400];

			memcpy(addr, "a@", 2);
			memcpy(addr + 2, t, n);
			addr[n + 2] = '\0';
			ev.rcpt = addr;
			ev.sender = addr;
			evlog_write(&ev);
			lines++;
		}
	}
	evlog_close();
	evlog_stats_get(&st);
	assert_int_equal(st.lines, lines);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(json_check(path), (long)lines);
	s = slurp(path, &len);
	assert_non_null(s);
	assert_int_equal(st.bytes, len);
	assert_int_equal(count_char(s, len, '\n'), lines);
	/* No line longer than the line buffer; no '@' anywhere. */
	{
		const char *p = s, *e;

		while ((e = memchr(p, '\n', len - (size_t)(p - s))) != NULL) {
			assert_true(e - p < 16 * 1024);
			p = e + 1;
		}
	}
	assert_null(memchr(s, '@', len));
	free(s);
	free(big);
	unlink(path);
}

/* Privacy: nothing of an address reaches the file ------------------------ */

struct privacy_case {
	const char *rcpt, *sender; /* of the event (may be NULL) */
	const char *text;          /* peer text */
	bool bare;                 /* only the event's own local part tells */
	const char *forbidden[4];  /* lower case */
};

static const struct privacy_case privacy_cases[] = {
	{ "jane@example.org",
	  NULL,
	  "550 5.1.1 <jane@example.org>: Recipient address rejected: User "
	  "unknown in virtual mailbox table",
	  false,
	  { "jane" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 jane@example.org... User unknown",
	  false,
	  { "jane" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 <JANE@EXAMPLE.ORG> unknown",
	  false,
	  { "jane" } },
	{ "jane@example.org",
	  "bounces+jane=example.org@esp.test",
	  "550 5.7.1 <bounces+jane=example.org@esp.test>: Sender address "
	  "rejected",
	  false,
	  { "jane", "bounces+" } },
	{ NULL,
	  NULL,
	  "550 5.7.1 sender bounces+jane=example.org rejected",
	  false,
	  { "jane", "bounces+" } },
	{ NULL,
	  NULL,
	  "550 bounce-jane=example.org-12345 refused",
	  false,
	  { "jane" } },
	{ NULL, NULL, "550 jane=example.org; try again", false, { "jane" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 <\"jane doe\"@example.org>... unknown",
	  false,
	  { "jane", "doe" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 \"zork\\\" quux frob\"@example.org unknown",
	  false,
	  { "zork", "quux", "frob" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 zork frob\"@example.org (unbalanced)",
	  false,
	  { "zork", "frob" } },
	{ NULL,
	  NULL,
	  "550 <marjorie(work)@example.org> unknown",
	  false,
	  { "marjorie", "work" } },
	{ NULL,
	  NULL,
	  "550 marjorie%example.org@relay.test unknown",
	  false,
	  { "marjorie" } },
	{ NULL,
	  NULL,
	  "550 marjorie%40example.org unknown",
	  false,
	  { "marjorie" } },
	{ NULL,
	  NULL,
	  "550 marjorie&#64;example.org unknown",
	  false,
	  { "marjorie" } },
	{ NULL,
	  NULL,
	  "550 =?utf-8?q?marjorie=40example.org?= unknown",
	  false,
	  { "marjorie" } },
	{ NULL, NULL, "550 'o'brien@example.org' unknown", false, { "brien" } },
	{ NULL, NULL, "550 `o`brien@example.org` unknown", false, { "brien" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 <j\xc3\xa4ne@ex\xc3\xa4mple.org> unknown",
	  false,
	  { "j\xc3\xa4ne", "xa4ne" } },
	{ NULL,
	  NULL,
	  "550 5.1.1 marjorie@[127.0.0.2] unknown",
	  false,
	  { "marjorie" } },
	{ NULL,
	  NULL,
	  "550-5.1.1 <marjorie@example.org>\r\n550 5.1.1 try "
	  "bounces+marjorie=example.org",
	  false,
	  { "marjorie" } },
	{ NULL,
	  "bounces+marjorie=example.org@esp.test",
	  "550 bounces+marjorie=example.org rejected",
	  false,
	  { "marjorie" } },
	/* Bare local parts: only the event's own addresses tell. */
	{ "marjorie@example.org",
	  NULL,
	  "550 5.1.1 marjorie... User unknown",
	  true,
	  { "marjorie" } },
	{ "Marjorie@example.org",
	  NULL,
	  "550 mailbox 'MARJORIE' unavailable",
	  true,
	  { "marjorie" } },
	{ "\"jane doe\"@example.org",
	  NULL,
	  "550 no such user: jane doe",
	  true,
	  { "jane doe" } },
	{ "j\xc3\xa4ne@ex\xc3\xa4mple.org",
	  NULL,
	  "550 user j\xc3\xa4ne unknown",
	  true,
	  { "j\xc3\xa4ne", "xa4ne" } },
	{ "jane@example.org",
	  "news@esp.test",
	  "550 policy: jane is suppressed (list news)",
	  true,
	  { "jane", "news" } },
	{ "o'brien@example.org",
	  NULL,
	  "550 o'brien unknown",
	  true,
	  { "brien" } },
	/* The recipient inside a VERP sender, with no rcpt in the event. */
	{ NULL,
	  "bounces+marjorie=example.org@esp.test",
	  "550 policy: marjorie is suppressed",
	  true,
	  { "marjorie" } },
	{ NULL,
	  "<bounce-jane-doe=example.org@esp.test>",
	  "550 jane-doe unknown",
	  true,
	  { "jane-doe" } },
};

static void
privacy_write(const struct privacy_case *c, const char *text)
{
	struct evlog_event ev = ev_none(EV_BOUNCE);

	ev.rcpt = c->rcpt;
	ev.sender = c->sender;
	ev.code = 550;
	ev.reply = text;
	ev.reason = text;
	ev.command = text;
	ev.dmarc = text;
	if (!c->bare) {
		/* Address-shaped text is caught in every field. */
		ev.session = ev.user = ev.client = ev.pool = text;
		ev.source_addr = ev.mx_host = ev.mx_ip = ev.enhanced = text;
		ev.stage = ev.tls_version = ev.tls_cipher = text;
		ev.dkim = ev.admin = text;
	}
	evlog_write(&ev);
}

static void
test_privacy(void **state)
{
	char path[128], *s, *low, *longtext;
	size_t i, k, len, n = sizeof(privacy_cases) / sizeof(privacy_cases[0]);
	static const struct privacy_case cut_case = {
		NULL, NULL, NULL, false, { "verylong", "localpart", "jane" }
	};

	(void)state;
	tpath(path, sizeof(path), "privacy");
	for (i = 0; i <= n + 1; i++) {
		unlink(path);
		log_open_at(path, key_a);
		if (i < n) {
			privacy_write(&privacy_cases[i], privacy_cases[i].text);
		} else {
			/* An address straddling the field's cut (2048
			 * bytes): a quoted local part whose '@' lies past
			 * it, and a plain one. */
			const char *a =
			    i == n ? "\"verylong localpart\"@example.org"
				   : "jane@example.org";

			longtext = malloc(5000);
			assert_non_null(longtext);
			memset(longtext, 'x', 5000);
			k = i == n ? 2029 : 2040;
			longtext[k] = ' ';
			memcpy(longtext + k + 1, a, strlen(a));
			longtext[k + 1 + strlen(a)] = ' ';
			longtext[4999] = '\0';
			privacy_write(&cut_case, longtext);
			free(longtext);
		}
		evlog_close();
		assert_int_equal(json_check(path), 1);
		s = slurp(path, &len);
		assert_non_null(s);
		low = lower_dup(s, len);
		if (memchr(s, '@', len) != NULL)
			fail_msg("case %zu: '@' in %s", i, s);
		for (k = 0; k < 4; k++) {
			const char *f = i < n ? privacy_cases[i].forbidden[k]
					      : cut_case.forbidden[k];

			if (f != NULL && strstr(low, f) != NULL)
				fail_msg("case %zu: \"%s\" in %s", i, f, s);
		}
		free(low);
		free(s);
	}
	unlink(path);
}

/* What the scrubber must keep, and what it makes of addresses. */
static void
test_scrub_exact(void **state)
{
	static const struct {
		const char *field, *rcpt, *in, *want;
	} cases[] = {
		{ "dkim", NULL,
		  "d=example.com s=sel1 rsa-sha256, d=esp.test s=ed1 "
		  "ed25519-sha256",
		  "d=example.com s=sel1 rsa-sha256, d=esp.test s=ed1 "
		  "ed25519-sha256" },
		{ "dmarc", "jane@example.org",
		  "fail header.from=example.com smtp.mailfrom=esp.test "
		  "p=reject",
		  "fail header.from=example.com smtp.mailfrom=esp.test "
		  "p=reject" },
		{ "command", NULL, "suspend --domain=example.com",
		  "suspend --domain=example.com" },
		{ "reply", "jane@example.org",
		  "452 4.2.2 over quota, version=3.5",
		  "452 4.2.2 over quota, version=3.5" },
		{ "reply", "jane@example.org",
		  "421 4.7.0 [TSS04] Messages from 127.0.0.2 temporarily "
		  "deferred; see https://postmaster.example/errors?code=421",
		  "421 4.7.0 [TSS04] Messages from 127.0.0.2 temporarily "
		  "deferred; see https://postmaster.example/errors?code=421" },
		{ "reply", "jane@example.org",
		  "550 5.1.1 <jane@example.org>: unknown",
		  "550 5.1.1 <<address>>: unknown" },
		{ "reply", NULL, "550 bounces+jane=example.org rejected",
		  "550 <address> rejected" },
		{ "reply", NULL, "550 \"jane doe\"@example.org x",
		  "550 <address> x" },
		{ "reply", "janet@example.org", "550 janet unknown, jane ok",
		  "550 <address> unknown, jane ok" },
		{ "reply", "jane@example.org", "550 janet unknown, jane.",
		  "550 <address> unknown, <address>." },
		{ "reply", NULL,
		  "550 caf\xc3\xa9 \x01 \\", /* log_escape's form */
		  "550 caf\\\\xc3\\\\xa9 \\\\x01 \\\\x5c" },
		{ "reply", "ab@example.org", "5.1.1 a b ab",
		  "5.1.1 a b <address>" },
		{ "reply", "1@example.org", "550 5.1.1 no", "550 5.1.1 no" },
		{ "mx_host", "example@example.org", "mx.example.org",
		  "mx.example.org" },
	};
	struct evlog_event ev;
	char got[512], *line;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ev = ev_none(EV_TRANSIENT);
		ev.rcpt = cases[i].rcpt;
		if (strcmp(cases[i].field, "dkim") == 0)
			ev.dkim = cases[i].in;
		else if (strcmp(cases[i].field, "dmarc") == 0)
			ev.dmarc = cases[i].in;
		else if (strcmp(cases[i].field, "command") == 0)
			ev.command = cases[i].in;
		else if (strcmp(cases[i].field, "mx_host") == 0)
			ev.mx_host = cases[i].in;
		else
			ev.reply = cases[i].in;
		line = one_line(&ev, "scrub");
		assert_true(field(line, cases[i].field, got, sizeof(got)));
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu (%s): got \"%s\" want \"%s\"", i,
				 cases[i].in, got, cases[i].want);
		free(line);
	}
}

/* Echo forms: the diagnostics (log_escape, with the thread's context) and
 * the delivery log (the event's addresses) both leave no trace of them. */
static const char *const echo_rcpts[] = { "zqalpha.secret@evil.test",
					  "\"zqdelta zqepsilon\"@evil.test",
					  "ZqMixedCase@evil.test",
					  "zqcutsecretlocal@evil.test" };

static const char *
echo_ctx_addr(const void *arg, size_t i)
{
	(void)arg;
	return echo_rcpts[i];
}

static const struct {
	const char *text;
	bool needs_ctx; /* only the transaction's addresses tell */
	const char *forbidden[2];
} echo_cases[] = {
	{ "550 5.1.1 <zqalpha.secret@evil.test> unknown",
	  false,
	  { "zqalpha", "secret" } },
	{ "550 zqalpha.secret%40evil.test rejected", false, { "zqalpha" } },
	{ "550 zqalpha.secret%2540evil.test rejected", false, { "zqalpha" } },
	{ "550 see bounce+zqalpha.secret=evil.test@mx.evil.test",
	  false,
	  { "zqalpha" } },
	{ "550 bounce+zqalpha.secret=evil.test rejected",
	  false,
	  { "zqalpha" } },
	{ "550 user zqalpha.secret at evil.test unknown",
	  false,
	  { "zqalpha" } },
	{ "550 user zqalpha.secret (AT) evil.test unknown",
	  false,
	  { "zqalpha" } },
	{ "550 \"zqdelta zqepsilon\"@evil.test unknown",
	  false,
	  { "zqdelta", "zqepsilon" } },
	{ "550 \"zqdelta x\"@evil.test quoted", false, { "zqdelta" } },
	{ "550 zqalpha.secret&#64;evil.test html", false, { "zqalpha" } },
	{ "550 &lt;zqalpha.secret&#x40;evil.test&gt;", false, { "zqalpha" } },
	{ "550 ZQALPHA.SECRET@EVIL.TEST upper", false, { "zqalpha" } },
	{ "550 zqalpha.secret\xef\xbc\xa0"
	  "evil.test full-width",
	  false,
	  { "zqalpha" } },
	{ "550 zqalpha.secret @ evil.test spaced", false, { "zqalpha" } },
	{ "550 zqalpha.secret&#064;evil.test", false, { "zqalpha" } },
	{ "550 zqalpha.secret=40evil.test (quoted-printable)",
	  false,
	  { "zqalpha" } },
	{ "550 qw.echo_bare_local.zqalpha.secret", true, { "zqalpha" } },
	{ "550 zqalpha.secret... User unknown", true, { "zqalpha" } },
	{ "550 mailbox 'ZQALPHA.SECRET' unavailable", true, { "zqalpha" } },
	{ "550 no such user: zqdelta zqepsilon",
	  true,
	  { "zqdelta", "zqepsilon" } },
	{ "550 no such user zqepsilon", true, { "zqepsilon" } },
	{ "550 zqmixedcase unknown", true, { "zqmixedcase" } },
	{ "550 xxzqmixedcase99 unknown", true, { "zqmixedcase" } },
	/* A reply cut by a buffer, the address straddling the cut. */
	{ "550 5.1.1 user unknown: zqcutsec", true, { "zqcutsec" } },
};

static char *
lower_str(const char *s)
{
	return lower_dup(s, strlen(s));
}

static void
test_echo_forms_log_escape(void **state)
{
	const struct scrub_ctx ctx = { echo_ctx_addr, NULL, 4 }, *prev;
	char out[1024], *low;
	size_t i, k;
	int with;

	(void)state;
	for (i = 0; i < sizeof(echo_cases) / sizeof(echo_cases[0]); i++) {
		for (with = 0; with < 2; with++) {
			if (!with && echo_cases[i].needs_ctx)
				continue;
			prev = scrub_ctx_enter(with ? &ctx : NULL);
			log_escape(out, sizeof(out), echo_cases[i].text,
				   strlen(echo_cases[i].text));
			scrub_ctx_leave(prev);
			low = lower_str(out);
			if (strchr(out, '@') != NULL)
				fail_msg("case %zu: '@' in %s", i, out);
			for (k = 0; k < 2; k++)
				if (echo_cases[i].forbidden[k] != NULL &&
				    strstr(low, echo_cases[i].forbidden[k]))
					fail_msg("case %zu (ctx %d): \"%s\" "
						 "in %s",
						 i, with,
						 echo_cases[i].forbidden[k],
						 out);
			free(low);
		}
	}
	/* The context is the thread's: left, it no longer applies. */
	log_escape(out, sizeof(out), "550 zqmixedcase", 15);
	assert_string_equal(out, "550 zqmixedcase");
	/* A quoted local part, whole (it used to keep its first word). */
	log_escape(out, sizeof(out), "550 \"jane doe\"@example.org", 26);
	assert_string_equal(out, "550 <address>");
}

/* Is F part of recipient R's own address? */
static bool
own_form(size_t r, const char *f)
{
	char *low = lower_str(echo_rcpts[r]);
	bool own = strstr(low, f) != NULL;

	free(low);
	return own;
}

static void
test_echo_forms_evlog(void **state)
{
	struct evlog_event ev;
	char *line, *low;
	size_t i, k, r;

	(void)state;
	for (i = 0; i < sizeof(echo_cases) / sizeof(echo_cases[0]); i++) {
		for (r = 0; r < 4; r++) {
			ev = ev_none(EV_BOUNCE);
			ev.rcpt = echo_rcpts[r];
			ev.sender = "bounces+x=evil.test@esp.test";
			ev.code = 550;
			ev.reply = echo_cases[i].text;
			line = one_line(&ev, "echo");
			low = lower_str(line);
			/* The forms of another recipient's local part stay
			 * unless address-shaped. */
			for (k = 0; k < 2; k++) {
				const char *f = echo_cases[i].forbidden[k];

				if (f == NULL || strstr(low, f) == NULL)
					continue;
				if (!echo_cases[i].needs_ctx || own_form(r, f))
					fail_msg("case %zu rcpt %zu: \"%s\" in "
						 "%s",
						 i, r, f, line);
			}
			free(low);
			free(line);
		}
	}
}

/* A text cut by its producer loses the token the cut went through. */
static void
test_scrub_cut(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "550 unknown user zqcutsec", "550 unknown user ..." },
		{ "550 unknown <\"zq x", "550 unknown <..." },
		{ "550 done ", "550 ..." }, /* no room for the mark */
		{ "550 ab", "..." },
		{ "zqcutsec", "..." },
		{ "ab", "" },
	};
	char buf[64];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		n = scrub_cut(buf, strlen(buf));
		assert_int_equal(n, strlen(buf));
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\" want \"%s\"", i, buf,
				 cases[i].want);
	}
}

/* The free-space reserve (mta/core/logspace.h): a reserve of the whole
 * filesystem drops every line of a regular file (counted), never those to
 * a pipe; the delivery log then writes nothing; no reserve, all written. */
static void
test_logspace_reserve(void **state)
{
	struct timespec fresh = { 1, 100000000 }; /* past the 1 s cache */
	struct evlog_event ev = ev_none(EV_DELIVERY);
	char path[128], metrics[1024], want[128], *s;
	uint64_t before;
	size_t len;
	int fd, p[2];

	(void)state;
	tpath(path, sizeof(path), "space");
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	assert_true(fd >= 0);
	assert_int_equal(pipe(p), 0);

	logspace_init(0, 100); /* nothing is ever free enough */
	nanosleep(&fresh, NULL);
	before = logspace_dropped(LOGSPACE_AUDIT);
	errno = 0;
	assert_int_equal(logspace_admit(LOGSPACE_AUDIT, fd, 10, 1), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(logspace_admit(LOGSPACE_AUDIT, fd, 10, 3), -1);
	assert_true(logspace_dropped(LOGSPACE_AUDIT) == before + 4);
	assert_int_equal(logspace_admit(LOGSPACE_DIAG, p[1], 10, 1), 0);

	before = logspace_dropped(LOGSPACE_DELIVERY);
	log_open_at(path, key_a);
	ev.rcpt = "jane@example.org";
	evlog_write(&ev);
	evlog_write(&ev);
	evlog_close();
	s = slurp(path, &len);
	assert_non_null(s);
	assert_int_equal(len, 0);
	free(s);
	assert_true(logspace_dropped(LOGSPACE_DELIVERY) == before + 2);
	len = logspace_metrics_text(metrics, sizeof(metrics));
	assert_true(len < sizeof(metrics));
	metrics[len] = '\0';
	snprintf(want, sizeof(want),
		 "outpost_log_reserve_dropped_lines_total{log=\"delivery\"} "
		 "%llu\n",
		 (unsigned long long)logspace_dropped(LOGSPACE_DELIVERY));
	assert_non_null(strstr(metrics, want));

	logspace_init(0, 0); /* no reserve */
	nanosleep(&fresh, NULL);
	assert_int_equal(logspace_admit(LOGSPACE_AUDIT, fd, 10, 1), 0);
	log_open_at(path, key_a);
	evlog_write(&ev);
	evlog_close();
	s = slurp(path, &len);
	assert_non_null(s);
	assert_true(len > 0);
	free(s);
	/* Back to the defaults for the tests that follow. */
	logspace_init(LOGSPACE_RESERVE_DEFAULT_BYTES,
		      LOGSPACE_RESERVE_DEFAULT_PERCENT);
	nanosleep(&fresh, NULL);
	close(fd);
	close(p[0]);
	close(p[1]);
	unlink(path);
}

/* Files ---------------------------------------------------------------- */

static void
write_n(int n, int tag)
{
	struct evlog_event ev = ev_none(EV_DELIVERY);
	int i;

	ev.rcpt = "jane@example.org";
	ev.attempt = tag;
	for (i = 0; i < n; i++) {
		ev.count = i;
		evlog_write(&ev);
	}
}

/* Every line of S has "attempt":TAG, and there are N of them. */
static void
assert_lines_tagged(const char *path, int n, int tag)
{
	char want[32], *s;
	const char *p, *e;
	size_t len;
	int lines = 0;

	s = slurp(path, &len);
	assert_non_null(s);
	snprintf(want, sizeof(want), "\"attempt\":%d,", tag);
	for (p = s; (e = memchr(p, '\n', len - (size_t)(p - s))) != NULL;
	     p = e + 1) {
		assert_non_null(find_in(p, e, want));
		lines++;
	}
	assert_int_equal(*p, '\0');
	assert_int_equal(lines, n);
	free(s);
}

/* PATH = NAME and OLD = NAME.1 under the test directory, neither there:
 * a log and the name logrotate moves it to. */
static void
rot_paths(const char *name, char path[128], char old[128])
{
	char moved[128];

	tpath(path, 128, name);
	snprintf(moved, sizeof(moved), "%s.1", name);
	tpath(old, 128, moved);
	unlink(path);
	unlink(old);
}

static void
test_reopen_after_rename(void **state)
{
	char path[128], old[128];
	struct evlog_stats st;
	struct stat sb;
	mode_t um;

	(void)state;
	rot_paths("rot.log", path, old);
	um = umask(0);
	umask(um);
	log_open_at(path, key_a);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640 & ~um);
	/* Queued, not yet written, at the rename: still the old file's. */
	write_n(100, 1);
	assert_int_equal(rename(path, old), 0);
	evlog_reopen();
	write_n(50, 2);
	evlog_close();
	assert_lines_tagged(old, 100, 1);
	assert_lines_tagged(path, 50, 2);
	evlog_stats_get(&st);
	assert_int_equal(st.lines, 150);

	/* Written before the rename, then reopened twice in a row. */
	unlink(path);
	unlink(old);
	log_open_at(path, key_a);
	write_n(10, 3);
	sleep_ms(1300);
	assert_int_equal(rename(path, old), 0);
	write_n(5, 3);
	evlog_reopen();
	evlog_reopen();
	write_n(20, 4);
	sleep_ms(1300); /* the writer reopens without being closed */
	assert_lines_tagged(old, 15, 3);
	assert_lines_tagged(path, 20, 4);
	evlog_close();
	assert_lines_tagged(path, 20, 4);
	unlink(path);
	unlink(old);
}

/* evlog_file_perms: the mode (and group) of the open file, and of the file
 * a reopen makes, whatever the umask. */
static void
test_file_perms_reopen(void **state)
{
	char path[128], old[128], err[256] = "";
	struct stat sb;
	mode_t um;

	(void)state;
	rot_paths("perm.log", path, old);
	um = umask(077); /* outpostd's */
	log_open_at(path, key_a);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(evlog_file_perms(getgid(), 0640, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0640);
	assert_int_equal(sb.st_gid, getgid());
	assert_int_equal(rename(path, old), 0);
	evlog_reopen();
	write_n(3, 1);
	evlog_close();
	assert_lines_tagged(path, 3, 1);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0640);
	assert_int_equal(sb.st_gid, getgid());
	/* Back to "as made" for the tests that follow. */
	assert_int_equal(evlog_file_perms((gid_t)-1, 0, err, sizeof(err)), 0);
	umask(um);
	unlink(path);
	unlink(old);
}

/* A reopen that fails keeps writing to the old file. */
static void
test_reopen_fails(void **state)
{
	char dir[128], path[160], moved[128];

	(void)state;
	tpath(dir, sizeof(dir), "rodir");
	tpath(moved, sizeof(moved), "rodir.log");
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/x.log", dir);
	unlink(path);
	log_open_at(path, key_a);
	write_n(3, 5);
	assert_int_equal(rename(path, moved), 0);
	assert_int_equal(rmdir(dir), 0); /* the path cannot be recreated */
	evlog_reopen();
	write_n(4, 5);
	evlog_close();
	assert_lines_tagged(moved, 7, 5);
	unlink(moved);
}

static void
test_flush_without_close(void **state)
{
	char path[128];
	struct evlog_event ev = ev_none(EV_DELIVERY);
	struct evlog_stats st;
	struct stat sb;
	double t0, waited;

	(void)state;
	tpath(path, sizeof(path), "flush.log");
	unlink(path);
	log_open_at(path, key_a);
	sleep_ms(300); /* anywhere in the writer's second */
	t0 = now_s();
	evlog_write(&ev);
	do {
		sleep_ms(10);
		assert_int_equal(stat(path, &sb), 0);
		waited = now_s() - t0;
	} while (sb.st_size == 0 && waited < 6.0);
	print_message("line on disk after %.3f s\n", waited);
	assert_true(sb.st_size > 0);
	/* The writer wakes every second; the rest is scheduling slack on a
	 * busy (or sanitized) machine, where 1.5 s was seen to flake.  Without
	 * the periodic flush the line would wait for close: never, here. */
	assert_true(waited < 4.0);
	evlog_stats_get(&st);
	assert_int_equal(st.lines, 1);
	assert_int_equal(st.bytes, (uint64_t)sb.st_size);
	evlog_close();
	unlink(path);
}

static void
test_close_flushes(void **state)
{
	char path[128];
	struct evlog_stats st;

	(void)state;
	tpath(path, sizeof(path), "close.log");
	unlink(path);
	log_open_at(path, key_a);
	write_n(20000, 6);
	evlog_close();
	assert_lines_tagged(path, 20000, 6);
	evlog_stats_get(&st);
	assert_int_equal(st.lines, 20000);
	assert_int_equal(st.dropped, 0);
	/* Closed: further calls are no-ops. */
	write_n(10, 6);
	evlog_reopen();
	evlog_close();
	assert_lines_tagged(path, 20000, 6);
	unlink(path);
}

/* Threads --------------------------------------------------------------- */

#define CONC_THREADS 4
#define CONC_LINES   25000

static void *
conc_main(void *arg)
{
	int t = (int)(intptr_t)arg, i;
	struct evlog_event ev = ev_none(EV_DELIVERY);
	char reply[600];

	ev.rcpt = "jane@example.org";
	ev.sender = "bounces+jane=example.org@esp.test";
	ev.attempt = t;
	for (i = 0; i < CONC_LINES; i++) {
		/* Lines of varied length, so that a tear would show. */
		size_t n = (size_t)(i * 7 + t * 13) % (sizeof(reply) - 1);

		memset(reply, 'a' + t, n);
		reply[n] = '\0';
		ev.reply = reply;
		ev.count = i;
		evlog_write(&ev);
	}
	return NULL;
}

static void
test_concurrency(void **state)
{
	pthread_t th[CONC_THREADS];
	char path[128], *s;
	const char *p, *e, *a, *c;
	struct evlog_stats st;
	uint8_t *seen;
	size_t len, lines = 0;
	int t, i;

	(void)state;
	tpath(path, sizeof(path), "conc.log");
	unlink(path);
	log_open_at(path, key_a);
	for (t = 0; t < CONC_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, conc_main,
						(void *)(intptr_t)t),
				 0);
	for (t = 0; t < CONC_THREADS; t++)
		pthread_join(th[t], NULL);
	evlog_close();
	evlog_stats_get(&st);
	assert_int_equal(st.lines, CONC_THREADS * CONC_LINES);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(json_check(path), CONC_THREADS * CONC_LINES);
	seen = calloc(CONC_THREADS * CONC_LINES, 1);
	assert_non_null(seen);
	s = slurp(path, &len);
	assert_non_null(s);
	assert_int_equal(st.bytes, len);
	for (p = s; (e = memchr(p, '\n', len - (size_t)(p - s))) != NULL;
	     p = e + 1) {
		assert_memory_equal(p, "{\"time\":\"", 9);
		assert_memory_equal(e - 1, "}", 1);
		a = find_in(p, e, "\"attempt\":");
		c = find_in(p, e, "\"count\":");
		assert_true(a != NULL && c != NULL);
		t = digits(a + 10);
		i = digits(c + 8);
		assert_true(t >= 0 && t < CONC_THREADS && i >= 0 &&
			    i < CONC_LINES);
		assert_int_equal(seen[t * CONC_LINES + i], 0);
		seen[t * CONC_LINES + i] = 1;
		lines++;
	}
	assert_int_equal(lines, CONC_THREADS * CONC_LINES);
	free(seen);
	free(s);
	unlink(path);
}

/* Batches: a loop's lines, handed over at the end of its turn ------------ */

/* Lines in PATH now (the writer having written what was handed to it). */
static int
lines_now(const char *path)
{
	size_t len;
	char *s;
	int n;

	evlog_reopen_wait();
	s = slurp(path, &len);
	assert_non_null(s);
	n = (int)count_char(s, len, '\n');
	free(s);
	return n;
}

/* The "count" of each line of PATH, in order, into OUT (at most MAX). */
static int
counts_of(const char *path, int *out, int max)
{
	const char *p, *e, *c;
	size_t len;
	char *s = slurp(path, &len);
	int n = 0;

	assert_non_null(s);
	for (p = s; (e = memchr(p, '\n', len - (size_t)(p - s))) != NULL;
	     p = e + 1) {
		c = find_in(p, e, "\"count\":");
		assert_non_null(c);
		assert_true(n < max);
		out[n++] = digits(c + 8);
	}
	free(s);
	return n;
}

static void
test_batch_turn(void **state)
{
	struct event_base *base = event_base_new();
	char path[128];
	int counts[600], n, i, k;

	(void)state;
	assert_non_null(base);
	tpath(path, sizeof(path), "batch.log");
	unlink(path);
	log_open_at(path, key_a);
	assert_int_equal(evlog_batch_begin(base), 0);
	assert_int_equal(evlog_batch_begin(base), 0); /* once: kept */
	/* Held until the loop's turn ends ... */
	write_n(10, 7);
	assert_int_equal(lines_now(path), 0);
	(void)event_base_loop(base, EVLOOP_NONBLOCK); /* 1: none left */
	assert_int_equal(lines_now(path), 10);
	/* ... or until the next line might not fit (64 KiB). */
	write_n(500, 7);
	n = lines_now(path);
	assert_true(n > 10 + 100 && n < 510);
	(void)event_base_loop(base, EVLOOP_NONBLOCK); /* 1: none left */
	assert_int_equal(lines_now(path), 510);
	/* A flush hands over what waits at once (a reception line, before
	 * its message goes to delivery, whose line must follow it). */
	write_n(4, 7);
	assert_int_equal(lines_now(path), 510);
	evlog_batch_flush();
	assert_int_equal(lines_now(path), 514);
	(void)event_base_loop(base, EVLOOP_NONBLOCK); /* its event: nothing */
	assert_int_equal(lines_now(path), 514);
	/* The end hands over what waits; later lines go one by one. */
	write_n(3, 7);
	assert_int_equal(lines_now(path), 514);
	evlog_batch_end();
	assert_int_equal(lines_now(path), 517);
	write_n(1, 7);
	assert_int_equal(lines_now(path), 518);
	evlog_batch_end(); /* none left: nothing */
	event_base_free(base);
	evlog_close();
	assert_lines_tagged(path, 518, 7);
	/* In the order written. */
	n = counts_of(path, counts, 600);
	assert_int_equal(n, 518);
	k = 0;
	for (i = 0; i < 10; i++)
		assert_int_equal(counts[k++], i);
	for (i = 0; i < 500; i++)
		assert_int_equal(counts[k++], i);
	for (i = 0; i < 4; i++)
		assert_int_equal(counts[k++], i);
	for (i = 0; i < 3; i++)
		assert_int_equal(counts[k++], i);
	assert_int_equal(counts[k], 0);
	unlink(path);
}

/* A batching thread: CONC_LINES lines, a loop turn every STEP of them;
 * the last ones left waiting, for evlog_close to take.  It ends its batch
 * once the main thread has closed the log (GATE). */
struct batcher {
	pthread_t th;
	int tag, step;
	pthread_mutex_t *mu;
	pthread_cond_t *cv;
	int *ready;
	bool *closed;
};

static void *
batcher_main(void *arg)
{
	struct batcher *b = arg;
	struct event_base *base = event_base_new();
	struct evlog_event ev = ev_none(EV_DELIVERY);
	int i;

	assert_non_null(base);
	assert_int_equal(evlog_batch_begin(base), 0);
	ev.rcpt = "jane@example.org";
	ev.attempt = b->tag;
	for (i = 0; i < CONC_LINES; i++) {
		ev.count = i;
		evlog_write(&ev);
		if (i % b->step == b->step - 1 && i < CONC_LINES - 100)
			(void)event_base_loop(base, EVLOOP_NONBLOCK);
	}
	pthread_mutex_lock(b->mu);
	(*b->ready)++;
	pthread_cond_broadcast(b->cv);
	while (!*b->closed)
		pthread_cond_wait(b->cv, b->mu);
	pthread_mutex_unlock(b->mu);
	/* Closed: the lines were taken; none is written twice. */
	evlog_write(&ev);
	evlog_batch_end();
	event_base_free(base);
	return NULL;
}

static void
test_batch_threads(void **state)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	struct batcher b[CONC_THREADS];
	struct evlog_stats st;
	int ready = 0, t, i, n, *counts, *next;
	bool closed = false;
	char path[128];

	(void)state;
	tpath(path, sizeof(path), "batch-threads.log");
	unlink(path);
	log_open_at(path, key_a);
	for (t = 0; t < CONC_THREADS; t++) {
		b[t] = (struct batcher){ .tag = t,
					 .step = 1 + t * 37,
					 .mu = &mu,
					 .cv = &cv,
					 .ready = &ready,
					 .closed = &closed };
		assert_int_equal(
		    pthread_create(&b[t].th, NULL, batcher_main, &b[t]), 0);
	}
	pthread_mutex_lock(&mu);
	while (ready < CONC_THREADS)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	/* Every thread holds lines it never handed over. */
	evlog_close();
	pthread_mutex_lock(&mu);
	closed = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (t = 0; t < CONC_THREADS; t++)
		pthread_join(b[t].th, NULL);
	evlog_stats_get(&st);
	assert_int_equal(st.lines, CONC_THREADS * CONC_LINES);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(json_check(path), CONC_THREADS * CONC_LINES);
	/* Each thread's lines once each, in its order. */
	counts = calloc(CONC_THREADS * CONC_LINES, sizeof(*counts));
	next = calloc(CONC_THREADS, sizeof(*next));
	assert_true(counts != NULL && next != NULL);
	{
		size_t len;
		char *s = slurp(path, &len);
		const char *p, *e, *a, *c;

		assert_non_null(s);
		n = 0;
		for (p = s;
		     (e = memchr(p, '\n', len - (size_t)(p - s))) != NULL;
		     p = e + 1) {
			a = find_in(p, e, "\"attempt\":");
			c = find_in(p, e, "\"count\":");
			assert_true(a != NULL && c != NULL);
			t = digits(a + 10);
			i = digits(c + 8);
			assert_true(t >= 0 && t < CONC_THREADS);
			assert_int_equal(i, next[t]);
			next[t]++;
			n++;
		}
		free(s);
	}
	assert_int_equal(n, CONC_THREADS * CONC_LINES);
	free(counts);
	free(next);
	unlink(path);
}

/* Drops: the writer stalls on a FIFO nobody reads ------------------------ */

struct drain {
	int fd;
	size_t lines, bytes;
	bool torn;
	char last;
};

static void *
drain_main(void *arg)
{
	struct drain *d = arg;
	char buf[65536];
	struct pollfd pfd = { d->fd, POLLIN, 0 };
	ssize_t r;

	for (;;) {
		r = read(d->fd, buf, sizeof(buf));
		if (r > 0) {
			d->lines += count_char(buf, (size_t)r, '\n');
			d->bytes += (size_t)r;
			d->last = buf[r - 1];
			continue;
		}
		if (r == 0)
			break; /* the writer closed */
		if (errno == EAGAIN || errno == EINTR) {
			(void)poll(&pfd, 1, 1000);
			continue;
		}
		break;
	}
	d->torn = d->bytes > 0 && d->last != '\n';
	return NULL;
}

static void
test_drops_when_stalled(void **state)
{
	char path[128], reply[1100];
	struct evlog_event ev = ev_none(EV_DELIVERY);
	struct evlog_stats st;
	struct drain d = { 0 };
	pthread_t th;
	int i, n = 40000;

	(void)state;
	tpath(path, sizeof(path), "fifo");
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	d.fd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(d.fd >= 0);
	log_open_at(path, key_a);
	memset(reply, 'r', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	ev.reply = reply;
	ev.rcpt = "jane@example.org";
	for (i = 0; i < n; i++) {
		ev.count = i;
		evlog_write(&ev);
	}
	evlog_stats_get(&st);
	print_message("stalled: %llu written, %llu dropped so far\n",
		      (unsigned long long)st.lines,
		      (unsigned long long)st.dropped);
	assert_true(st.dropped > 0);
	assert_int_equal(pthread_create(&th, NULL, drain_main, &d), 0);
	evlog_close(); /* the drain lets the writer finish */
	pthread_join(th, NULL);
	close(d.fd);
	evlog_stats_get(&st);
	print_message("FIFO: %llu lines written, %llu dropped of %d\n",
		      (unsigned long long)st.lines,
		      (unsigned long long)st.dropped, n);
	assert_int_equal(st.lines + st.dropped, (uint64_t)n);
	assert_int_equal(st.lines, d.lines);
	assert_int_equal(st.bytes, d.bytes);
	assert_false(d.torn);
	/* What was kept was bounded: 16 MiB pending + one chunk in flight. */
	assert_true(st.bytes < 40u * 1024 * 1024);
	unlink(path);
}

/* write(2) fails (ENOSPC): lines counted as dropped, the daemon goes on. */
static void
test_write_error(void **state)
{
	struct evlog_stats st;

	(void)state;
	if (access("/dev/full", W_OK) != 0)
		skip();
	log_open_at("/dev/full", key_a);
	write_n(10, 7);
	evlog_close();
	evlog_stats_get(&st);
	assert_int_equal(st.lines, 0);
	assert_int_equal(st.dropped, 10);
	assert_int_equal(st.bytes, 0);
}

/* No path, errors ------------------------------------------------------- */

static void
test_null_path_and_errors(void **state)
{
	struct evlog_stats st;
	char err[256], path[128];
	struct evlog_event ev = ev_full();

	(void)state;
	/* Before any open, and with no path: silently nothing. */
	evlog_write(&ev);
	evlog_reopen();
	evlog_close();
	assert_int_equal(evlog_open(NULL, NULL, err, sizeof(err)), 0);
	evlog_write(&ev);
	evlog_reopen();
	evlog_stats_get(&st);
	assert_int_equal(st.lines + st.dropped + st.bytes, 0);
	err[0] = '\0';
	assert_int_equal(evlog_open(NULL, key_a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "already open"));
	evlog_close();

	assert_int_equal(
	    evlog_open("/nonexistent-dir/x.log", key_a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
	tpath(path, sizeof(path), "nokey.log");
	assert_int_equal(evlog_open(path, NULL, err, sizeof(err)), -1);
	unlink(path);
	/* After failures, a normal open still works. */
	log_open_at(path, key_a);
	evlog_write(&ev);
	evlog_close();
	assert_int_equal(json_check(path), 1);
	unlink(path);
}

/* Cost of a line --------------------------------------------------------- */

struct bench {
	int n;
	double secs, cpu; /* wall and CPU time of the thread's calls */
};

static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
bench_main(void *arg)
{
	struct bench *b = arg;
	struct evlog_event ev = ev_none(EV_DELIVERY);
	double t0, c0;
	int i;

	ev.id = UINT64_C(0x00000188f0c2a7b1);
	ev.pool = "pool-a";
	ev.source_addr = "127.0.0.7";
	ev.destination = "example.org";
	ev.mx_host = "mx1.example.org";
	ev.mx_ip = "127.0.0.25";
	ev.rcpt = "jane.doe@example.org";
	ev.sender = "bounces+c123=esp.test@mail.esp.test";
	ev.size = 48213;
	ev.attempt = 1;
	ev.queue_time_ms = 1834;
	ev.code = 250;
	ev.enhanced = "2.0.0";
	ev.reply =
	    "2.0.0 OK  1732350000 a640c23a62f3a-aa50b2e9e3fsi123456766b.51 "
	    "- gsmtp";
	ev.stage = "eom";
	ev.tls_version = "TLSv1.3";
	ev.tls_cipher = "TLS_AES_256_GCM_SHA384";
	ev.tls_verified = 1;
	ev.dkim = "d=esp.test s=s1 rsa-sha256";
	t0 = now_s();
	c0 = cpu_s();
	for (i = 0; i < b->n; i++) {
		ev.count = i;
		evlog_write(&ev);
	}
	b->cpu = cpu_s() - c0;
	b->secs = now_s() - t0;
	return NULL;
}

static void
test_cost_per_line(void **state)
{
	struct bench b[2];
	pthread_t th[2];
	char path[128];
	struct evlog_stats st;
	const char *env = getenv("EVLOG_BENCH_EVENTS");
	int total =
	    env != NULL ? atoi(env) : (EVLOG_TEST_SANITIZED ? 200000 : 1000000);
	double t0, wall, us, wus;
	int t;

	(void)state;
	tpath(path, sizeof(path), "bench.log");
	unlink(path);
	log_open_at(path, key_a);
	t0 = now_s();
	for (t = 0; t < 2; t++) {
		b[t].n = total / 2;
		assert_int_equal(
		    pthread_create(&th[t], NULL, bench_main, &b[t]), 0);
	}
	for (t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
	evlog_close();
	wall = now_s() - t0;
	evlog_stats_get(&st);
	/* CPU time is what a line costs its caller; wall time also counts
	 * other processes on a busy machine. */
	us = (b[0].cpu + b[1].cpu) * 1e6 / (2 * (double)(total / 2));
	wus = (b[0].secs + b[1].secs) * 1e6 / (2 * (double)(total / 2));
	print_message("cost: %d events from 2 threads: %.2f us CPU/line in the "
		      "caller (%.2f us wall), %.0f lines/s/thread by CPU; "
		      "%.0f lines/s overall incl. write-out (%.3f s wall), "
		      "%llu bytes, %llu dropped%s\n",
		      total, us, wus, 1e6 / us, (double)st.lines / wall, wall,
		      (unsigned long long)st.bytes,
		      (unsigned long long)st.dropped,
		      EVLOG_TEST_SANITIZED ? " [sanitized build]" : "");
	assert_int_equal(st.lines + st.dropped, (uint64_t)(total / 2) * 2);
	if (!EVLOG_TEST_SANITIZED)
		assert_true(us < 10.0);
	unlink(path);
}

static int
group_setup(void **state)
{
	const char *base = getenv("TMPDIR");

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/evlog_test.XXXXXX",
		 base != NULL && strlen(base) < 40 ? base : "/tmp");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_time_now),
		cmocka_unit_test(test_hash_normalised),
		cmocka_unit_test(test_json_adversarial),
		cmocka_unit_test(test_msgid_campaign),
		cmocka_unit_test(test_privacy),
		cmocka_unit_test(test_scrub_exact),
		cmocka_unit_test(test_echo_forms_log_escape),
		cmocka_unit_test(test_echo_forms_evlog),
		cmocka_unit_test(test_scrub_cut),
		cmocka_unit_test(test_logspace_reserve),
		cmocka_unit_test(test_reopen_after_rename),
		cmocka_unit_test(test_file_perms_reopen),
		cmocka_unit_test(test_reopen_fails),
		cmocka_unit_test(test_flush_without_close),
		cmocka_unit_test(test_close_flushes),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_batch_turn),
		cmocka_unit_test(test_batch_threads),
		cmocka_unit_test(test_drops_when_stalled),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_null_path_and_errors),
		cmocka_unit_test(test_cost_per_line),
	};
	const char *only = getenv("EVLOG_TEST_FILTER"); /* e.g. "*cost*" */

	if (only != NULL)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
