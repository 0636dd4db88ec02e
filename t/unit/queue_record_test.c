/*
 * queue_record_test.c — the envelope record (queue/record.c): round trips,
 * every truncation, hostile inputs, forward compatibility, the reader.
 *
 * `queue_record_test --corpus DIR` writes the seed corpus of the record fuzz
 * harness (t/fuzz/corpus/record) instead of running the tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "queue/record_int.h"

/* Builders ------------------------------------------------------------ */

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	assert_non_null(p);
	return p;
}

/* An envelope with every field set and N recipients (all heap). */
static void
env_full(struct queue_envelope *env, uint32_t n)
{
	char buf[64];
	uint32_t i;

	memset(env, 0, sizeof(*env));
	env->id = 0x0123456789abcdefULL;
	env->created_ms = 1700000000123LL;
	env->next_attempt_ms = -5; /* signed values survive */
	env->flags = QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8 | QUEUE_F_HELD;
	env->size = 300000;
	env->nchunks = 2;
	env->sender = xstrdup("news@example.com");
	env->user = xstrdup("campaign");
	env->client = xstrdup("192.0.2.7");
	env->helo = xstrdup("client.example");
	env->msgid = xstrdup("<20261205.0001.a1b2@mailer.example>");
	env->campaign = xstrdup("spring-sale 2026");
	env->envid = xstrdup("QQ314159 tenant=7");
	env->nrcpts = n;
	if (n > 0)
		env->rcpts = calloc(n, sizeof(*env->rcpts));
	for (i = 0; i < n; i++) {
		assert_true(snprintf(buf, sizeof(buf), "r%u@example.org", i) <
			    (int)sizeof(buf));
		env->rcpts[i].addr = xstrdup(buf);
		env->rcpts[i].state = (uint8_t)(i % 4);
		env->rcpts[i].attempts = (uint16_t)(i * 7);
		env->rcpts[i].last_code = i % 3 == 0 ? 0 : 451;
		env->rcpts[i].last_reply =
		    i % 2 == 0 ? NULL : xstrdup("4.7.1 try later");
		env->rcpts[i].notify =
		    i % 3 == 0   ? 0
		    : i % 3 == 1 ? QUEUE_NOTIFY_NEVER
				 : QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE;
		if (i % 2 == 1)
			env->rcpts[i].orcpt =
			    xstrdup("rfc822;orig@example.org");
	}
}

static void
env_minimal(struct queue_envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->id = 1;
	env->sender = xstrdup("");
}

static void
env_unicode(struct queue_envelope *env)
{
	env_full(env, 2);
	free(env->sender);
	free(env->helo);
	free(env->rcpts[0].addr);
	free(env->rcpts[1].last_reply);
	env->sender = xstrdup("j\xc3\xb6rg@b\xc3\xbc"
			      "cher.example");
	env->helo = xstrdup("\xe6\x97\xa5\xe6\x9c\xac.example");
	env->rcpts[0].addr = xstrdup("\xf0\x9f\x93\xa7@\xff\x80\x01.test");
	env->rcpts[1].last_reply = xstrdup("550 \"quoted\"\r\n\tbytes \x7f");
}

static void
str_eq(const char *what, const char *a, const char *b)
{
	if (a == NULL || b == NULL) {
		if (a != b)
			fail_msg("%s: %s vs %s", what, a ? a : "(null)",
				 b ? b : "(null)");
		return;
	}
	if (strcmp(a, b) != 0)
		fail_msg("%s: \"%s\" != \"%s\"", what, a, b);
}

static void
env_eq(const struct queue_envelope *a, const struct queue_envelope *b)
{
	uint32_t i;

	assert_int_equal(a->id, b->id);
	assert_int_equal(a->created_ms, b->created_ms);
	assert_int_equal(a->next_attempt_ms, b->next_attempt_ms);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->nchunks, b->nchunks);
	str_eq("sender", a->sender, b->sender);
	str_eq("user", a->user, b->user);
	str_eq("client", a->client, b->client);
	str_eq("helo", a->helo, b->helo);
	str_eq("msgid", a->msgid, b->msgid);
	str_eq("campaign", a->campaign, b->campaign);
	str_eq("envid", a->envid, b->envid);
	assert_int_equal(a->nrcpts, b->nrcpts);
	for (i = 0; i < a->nrcpts; i++) {
		str_eq("rcpt addr", a->rcpts[i].addr, b->rcpts[i].addr);
		assert_int_equal(a->rcpts[i].state, b->rcpts[i].state);
		assert_int_equal(a->rcpts[i].attempts, b->rcpts[i].attempts);
		assert_int_equal(a->rcpts[i].last_code, b->rcpts[i].last_code);
		str_eq("rcpt reply", a->rcpts[i].last_reply,
		       b->rcpts[i].last_reply);
		assert_int_equal(a->rcpts[i].notify, b->rcpts[i].notify);
		str_eq("rcpt orcpt", a->rcpts[i].orcpt, b->rcpts[i].orcpt);
	}
}

/* Encode ENV, decode into an exact-size copy, compare. */
static void
roundtrip(const struct queue_envelope *env)
{
	struct queue_envelope out;
	uint8_t *p, *copy;
	size_t n;
	char err[160] = "";

	if (record_envelope_encode(env, &p, &n, err, sizeof(err)) != 0)
		fail_msg("encode: %s", err);
	copy = malloc(n);
	assert_non_null(copy);
	memcpy(copy, p, n);
	if (record_envelope_decode(copy, n, &out, err, sizeof(err)) != 0)
		fail_msg("decode: %s", err);
	env_eq(env, &out);
	queue_envelope_clear(&out);
	free(copy);
	free(p);
}

/* Round trips, table-driven ------------------------------------------ */

static void
test_roundtrip(void **state)
{
	static const struct {
		const char *name;
		int kind; /* 0 minimal, 1 full, 2 unicode */
		uint32_t nrcpts;
	} cases[] = {
		{ "minimal, no recipients", 0, 0 },
		{ "all fields, no recipients", 1, 0 },
		{ "all fields, one recipient", 1, 1 },
		{ "all fields, 1000 recipients", 1, 1000 },
		{ "all fields, 100000 recipients", 1, 100000 },
		{ "unicode bytes", 2, 2 },
	};
	struct queue_envelope env;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case: %s\n", cases[i].name);
		if (cases[i].kind == 0)
			env_minimal(&env);
		else if (cases[i].kind == 1)
			env_full(&env, cases[i].nrcpts);
		else
			env_unicode(&env);
		roundtrip(&env);
		queue_envelope_clear(&env);
	}
}

static void
test_string_limits(void **state)
{
	struct queue_envelope env;
	uint8_t *p = NULL;
	size_t n;
	char err[160] = "";

	(void)state;
	env_full(&env, 1);
	free(env.helo);
	env.helo = malloc(RECORD_STRING_MAX_BYTES + 2);
	assert_non_null(env.helo);
	memset(env.helo, 'h', RECORD_STRING_MAX_BYTES);
	env.helo[RECORD_STRING_MAX_BYTES] = '\0';
	roundtrip(&env); /* exactly at the limit */
	env.helo[RECORD_STRING_MAX_BYTES] = 'h';
	env.helo[RECORD_STRING_MAX_BYTES + 1] = '\0';
	assert_int_equal(record_envelope_encode(&env, &p, &n, err, sizeof(err)),
			 -1);
	assert_null(p);
	assert_non_null(strstr(err, "helo"));
	queue_envelope_clear(&env);

	/* No sender, recipient without address, unknown state. */
	env_full(&env, 1);
	free(env.sender);
	env.sender = NULL;
	assert_int_equal(record_envelope_encode(&env, &p, &n, err, sizeof(err)),
			 -1);
	env.sender = xstrdup("a@b");
	env.rcpts[0].state = 9;
	assert_int_equal(record_envelope_encode(&env, &p, &n, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "state"));
	queue_envelope_clear(&env);
}

/* Every truncation of a valid record fails cleanly. */
static void
test_truncations(void **state)
{
	struct queue_envelope env, out;
	uint8_t *p, *copy;
	size_t n, len;
	char err[160];

	(void)state;
	env_unicode(&env);
	assert_int_equal(record_envelope_encode(&env, &p, &n, err, sizeof(err)),
			 0);
	for (len = 0; len < n; len++) {
		copy = malloc(len > 0 ? len : 1);
		assert_non_null(copy);
		memcpy(copy, p, len);
		err[0] = '\0';
		if (record_envelope_decode(copy, len, &out, err, sizeof(err)) ==
		    0)
			fail_msg("truncation to %zu of %zu bytes decoded", len,
				 n);
		assert_true(err[0] != '\0');
		assert_null(out.sender);
		assert_null(out.rcpts);
		free(copy);
	}
	free(p);
	queue_envelope_clear(&env);
}

/* Hostile records, table-driven --------------------------------------- */

#define B(...)                                                                 \
	((const uint8_t[]){ __VA_ARGS__ }), sizeof((uint8_t[]){ __VA_ARGS__ })

/* id = 1, sender "", nrcpts 0: the smallest valid record. */
#define MIN_ID     1, 8, 0, 0, 0, 0, 0, 0, 0, 1
#define MIN_SENDER 7, 0
#define MIN_N0     11, 1, 0

static void
test_hostile(void **state)
{
	const struct {
		const char *name;
		const uint8_t *in;
		size_t len;
		const char *want; /* NULL: must decode */
	} cases[] = {
		{ "smallest valid", B(1, MIN_ID, MIN_SENDER, MIN_N0), NULL },
		{ "empty", (const uint8_t *)"", 0, "empty" },
		{ "newer version", B(2, MIN_ID, MIN_SENDER, MIN_N0),
		  "not supported" },
		{ "no id", B(1, MIN_SENDER, MIN_N0), "lacks" },
		{ "no count", B(1, MIN_ID, MIN_SENDER), "lacks" },
		{ "id twice", B(1, MIN_ID, MIN_ID, MIN_SENDER, MIN_N0),
		  "repeated" },
		{ "id of 7 bytes",
		  B(1, 1, 7, 0, 0, 0, 0, 0, 0, 1, MIN_SENDER, MIN_N0),
		  "want 8" },
		{ "NUL in sender", B(1, MIN_ID, 7, 3, 'a', 0, 'b', MIN_N0),
		  "NUL" },
		{ "length past the end", B(1, MIN_ID, 7, 5, 'a', 'b'),
		  "past the end" },
		{ "length varint overlong", B(1, MIN_ID, 7, 0x80, 0x00, MIN_N0),
		  "bad tag or length" },
		{ "length varint 11 bytes",
		  B(1, MIN_ID, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0xff, 0xff, 0x01),
		  "bad tag or length" },
		{ "huge length", B(1, MIN_ID, 7, 0xff, 0xff, 0xff, 0xff, 0x0f),
		  "past the end" },
		{ "count over the record",
		  B(1, MIN_ID, MIN_SENDER, 11, 3, 0xc0, 0x84, 0x3d),
		  "recipient count" },
		{ "count over the limit but room enough",
		  B(1, MIN_ID, MIN_SENDER, 11, 4, 0x80, 0x80, 0x80, 0x01),
		  "recipient count" },
		{ "count bigger than recipients",
		  B(1, MIN_ID, MIN_SENDER, 11, 1, 1, 0, 0, 0, 0), "announces" },
		{ "recipient not announced",
		  B(1, MIN_ID, MIN_SENDER, MIN_N0, 12, 3, 1, 1, 'a'),
		  "not announced" },
		{ "recipient before count",
		  B(1, MIN_ID, MIN_SENDER, 12, 3, 1, 1, 'a', MIN_N0),
		  "not announced" },
		{ "recipient without address",
		  B(1, MIN_ID, MIN_SENDER, 11, 1, 1, 12, 3, 2, 1, 0),
		  "no address" },
		{ "recipient with unknown state",
		  B(1, MIN_ID, MIN_SENDER, 11, 1, 1, 12, 6, 1, 1, 'a', 2, 1, 4),
		  "unknown state" },
		{ "recipient TLV past its value",
		  B(1, MIN_ID, MIN_SENDER, 11, 1, 1, 12, 3, 1, 5, 'a'),
		  "past the end" },
		{ "one recipient",
		  B(1, MIN_ID, MIN_SENDER, 11, 1, 1, 12, 3, 1, 1, 'a'), NULL },
		{ "unknown tags skipped",
		  B(1, 200, 2, 'x', 'y', MIN_ID, 0, 0, MIN_SENDER, 11, 1, 1, 12,
		    8, 99, 1, 0, 1, 1, 'a', 0, 0),
		  NULL },
		{ "trailing tag without length",
		  B(1, MIN_ID, MIN_SENDER, MIN_N0, 50), "bad tag or length" },
	};
	struct queue_envelope env;
	uint8_t *copy;
	size_t i;
	char err[160];
	int rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		copy = malloc(cases[i].len > 0 ? cases[i].len : 1);
		assert_non_null(copy);
		memcpy(copy, cases[i].in, cases[i].len);
		err[0] = '\0';
		rc = record_envelope_decode(copy, cases[i].len, &env, err,
					    sizeof(err));
		if (cases[i].want == NULL && rc != 0)
			fail_msg("%s: refused: %s", cases[i].name, err);
		if (cases[i].want != NULL &&
		    (rc == 0 || strstr(err, cases[i].want) == NULL))
			fail_msg("%s: rc %d, err \"%s\", want \"%s\"",
				 cases[i].name, rc, err, cases[i].want);
		queue_envelope_clear(&env);
		free(copy);
	}
}

/* Random byte flips of a valid record never crash or leak. */
static void
test_mutations(void **state)
{
	struct queue_envelope env, out;
	uint8_t *p, *copy;
	size_t n, k;
	unsigned seed = 12345, i, decoded = 0;
	char err[160];

	(void)state;
	env_full(&env, 5);
	assert_int_equal(record_envelope_encode(&env, &p, &n, err, sizeof(err)),
			 0);
	copy = malloc(n);
	assert_non_null(copy);
	for (i = 0; i < 20000; i++) {
		memcpy(copy, p, n);
		for (k = 0; k < 1 + i % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			copy[(seed >> 8) % n] ^= (uint8_t)(seed >> 20 | 1);
		}
		if (record_envelope_decode(copy, n, &out, err, sizeof(err)) ==
		    0) {
			decoded++;
			queue_envelope_clear(&out);
		}
	}
	print_message("%u of 20000 mutants still decode\n", decoded);
	free(copy);
	free(p);
	queue_envelope_clear(&env);
}

/* The reader ---------------------------------------------------------- */

static void
test_varint(void **state)
{
	const struct {
		const char *name;
		const uint8_t *in;
		size_t len;
		int rc;
		uint64_t want;
	} cases[] = {
		{ "zero", B(0x00), 0, 0 },
		{ "127", B(0x7f), 0, 127 },
		{ "128", B(0x80, 0x01), 0, 128 },
		{ "300", B(0xac, 0x02), 0, 300 },
		{ "max",
		  B(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		  0, UINT64_MAX },
		{ "overflow",
		  B(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
		  -1, 0 },
		{ "overlong zero", B(0x80, 0x00), -1, 0 },
		{ "overlong one", B(0x81, 0x00), -1, 0 },
		{ "truncated", B(0x80), -1, 0 },
		{ "empty", (const uint8_t *)"", 0, -1, 0 },
	};
	struct record_rd b;
	uint64_t v;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		record_rd_init(&b, cases[i].in, cases[i].len);
		v = 0;
		rc = record_rd_varint(&b, &v);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].name, rc,
				 cases[i].rc);
		if (rc == 0 && v != cases[i].want)
			fail_msg("%s: %llu, want %llu", cases[i].name,
				 (unsigned long long)v,
				 (unsigned long long)cases[i].want);
		/* A failed fetch consumes nothing. */
		if (rc != 0)
			assert_int_equal(record_rd_left(&b), cases[i].len);
	}
}

static void
test_reader_rollback(void **state)
{
	static const uint8_t in[] = { 1, 2, 3, 4, 5, 6, 7 };
	struct record_rd b, sub;
	const uint8_t *p;
	uint64_t v64;
	uint32_t v32;
	uint16_t v16;
	uint8_t v8;

	(void)state;
	record_rd_init(&b, in, sizeof(in));
	assert_int_equal(record_rd_u8(&b, &v8), 0);
	assert_int_equal(v8, 1);
	record_rd_tag(&b);
	assert_int_equal(record_rd_be16(&b, &v16), 0);
	assert_int_equal(v16, 0x0203);
	assert_int_equal(record_rd_be64(&b, &v64), -1);
	assert_int_equal(record_rd_left(&b), 4);
	record_rd_rollback(&b);
	assert_int_equal(record_rd_left(&b), 6);
	assert_int_equal(record_rd_be32(&b, &v32), 0);
	assert_int_equal(v32, 0x02030405);
	assert_int_equal(record_rd_bytes(&b, 3, &p), -1);
	assert_int_equal(record_rd_sub(&b, 2, &sub), 0);
	assert_int_equal(record_rd_left(&b), 0);
	assert_int_equal(record_rd_left(&sub), 2);
	assert_int_equal(record_rd_be16(&sub, &v16), 0);
	assert_int_equal(v16, 0x0607);
	assert_int_equal(record_rd_u8(&sub, &v8), -1);
	/* A NULL buffer is empty, not a crash. */
	record_rd_init(&b, NULL, 10);
	assert_int_equal(record_rd_left(&b), 0);
	assert_int_equal(record_rd_u8(&b, &v8), -1);
}

/*
 * The tracing fields (Message-ID, campaign): they round-trip when set, are
 * absent (NULL) in a record written before they existed, and obey the
 * rules of every string field (once only, no NUL).
 */
static void
test_trace_fields(void **state)
{
	/* A record as the daemon wrote it before ET_MSGID/ET_CAMPAIGN. */
	static const uint8_t old[] = { 1, MIN_ID, MIN_SENDER, MIN_N0 };
	static const uint8_t with[] = { 1,   MIN_ID, MIN_SENDER, 13, 3,
					'<', 'a',    '>',        14, 2,
					'c', '1',    MIN_N0 };
	static const uint8_t twice[] = { 1,   MIN_ID, MIN_SENDER, 13,  1,
					 'a', 13,     1,          'b', MIN_N0 };
	static const uint8_t nul[] = { 1, MIN_ID, MIN_SENDER, 14,
				       2, 'a',    0,          MIN_N0 };
	/* One recipient "a": as written before RT_NOTIFY/RT_ORCPT, with
	 * them, and with NEVER|FAILURE (a contradiction). */
	static const uint8_t rcpt_old[] = { 1,  MIN_ID, MIN_SENDER, 11, 1,  1,
					    12, 3,      1,          1,  'a' };
	static const uint8_t rcpt_dsn[] = { 1,   MIN_ID, MIN_SENDER, 11, 1,
					    1,   12,     11,         1,  1,
					    'a', 6,      1,          8,  7,
					    3,   'x',    ';',        'y' };
	static const uint8_t rcpt_bad[] = { 1,   MIN_ID, MIN_SENDER, 11, 1,
					    1,   12,     6,          1,  1,
					    'a', 6,      1,          10 };
	struct queue_envelope env, out;
	char err[160];

	(void)state;
	env_minimal(&env);
	roundtrip(&env); /* without: stays without */
	env.msgid = xstrdup("<x.1@host.example>");
	roundtrip(&env); /* Message-ID only */
	free(env.msgid);
	env.msgid = NULL;
	env.campaign = xstrdup("tenant-7");
	roundtrip(&env); /* campaign only */
	queue_envelope_clear(&env);
	assert_null(env.campaign);

	assert_int_equal(
	    record_envelope_decode(old, sizeof(old), &out, err, sizeof(err)),
	    0);
	assert_null(out.msgid);
	assert_null(out.campaign);
	assert_null(out.envid);
	queue_envelope_clear(&out);
	/* A recipient without NOTIFY/ORCPT (an old record): 0 and NULL. */
	assert_int_equal(record_envelope_decode(rcpt_old, sizeof(rcpt_old),
						&out, err, sizeof(err)),
			 0);
	assert_int_equal(out.rcpts[0].notify, 0);
	assert_null(out.rcpts[0].orcpt);
	queue_envelope_clear(&out);
	assert_int_equal(record_envelope_decode(rcpt_dsn, sizeof(rcpt_dsn),
						&out, err, sizeof(err)),
			 0);
	assert_int_equal(out.rcpts[0].notify, QUEUE_NOTIFY_NEVER);
	str_eq("orcpt", out.rcpts[0].orcpt, "x;y");
	queue_envelope_clear(&out);
	/* NEVER with another, or an unknown bit: refused. */
	assert_int_equal(record_envelope_decode(rcpt_bad, sizeof(rcpt_bad),
						&out, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "notify"));
	assert_int_equal(
	    record_envelope_decode(with, sizeof(with), &out, err, sizeof(err)),
	    0);
	str_eq("msgid", out.msgid, "<a>");
	str_eq("campaign", out.campaign, "c1");
	queue_envelope_clear(&out);
	assert_int_equal(record_envelope_decode(twice, sizeof(twice), &out, err,
						sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "repeated"));
	assert_int_equal(
	    record_envelope_decode(nul, sizeof(nul), &out, err, sizeof(err)),
	    -1);
	assert_null(out.campaign);
}

/* The seed corpus ---------------------------------------------------- */

static int
corpus_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;
	int rc;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		return -1;
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		return -1;
	}
	rc = fwrite(p, 1, n, f) == n ? 0 : -1;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

static int
corpus_env(const char *dir, const char *name, struct queue_envelope *env)
{
	uint8_t *p;
	size_t n;
	char err[160];
	int rc;

	if (record_envelope_encode(env, &p, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", name, err);
		return -1;
	}
	rc = corpus_file(dir, name, p, n);
	/* A truncated copy too: the decoder's most common failure. */
	if (rc == 0 && n > 8) {
		char tname[128];

		if (snprintf(tname, sizeof(tname), "garbage-truncated-%s",
			     name) >= (int)sizeof(tname))
			rc = -1;
		else
			rc = corpus_file(dir, tname, p, n * 2 / 3);
	}
	free(p);
	queue_envelope_clear(env);
	return rc;
}

static int
corpus_write(const char *dir)
{
	static const uint8_t unknown[] = {
		1, 200, 2, 'x', 'y', MIN_ID, 0, 0, MIN_SENDER, 11, 1,
		1, 12,  8, 99,  1,   0,      1, 1, 'a',        0,  0
	};
	static const uint8_t bigcount[] = { 1,    MIN_ID, MIN_SENDER, 11,  4,
					    0x80, 0x80,   0x80,       0x01 };
	static const uint8_t version2[] = { 2, MIN_ID, MIN_SENDER, MIN_N0 };
	uint8_t noise[512];
	struct queue_envelope env;
	unsigned seed = 4242, i;
	int rc = 0;

	env_minimal(&env);
	rc |= corpus_env(dir, "valid-minimal", &env);
	env_full(&env, 3);
	rc |= corpus_env(dir, "valid-full", &env);
	env_unicode(&env);
	rc |= corpus_env(dir, "valid-unicode", &env);
	env_full(&env, 100);
	rc |= corpus_env(dir, "valid-100-rcpts", &env);
	rc |= corpus_file(dir, "valid-unknown-tags", unknown, sizeof(unknown));
	rc |= corpus_file(dir, "garbage-big-count", bigcount, sizeof(bigcount));
	rc |= corpus_file(dir, "garbage-version2", version2, sizeof(version2));
	for (i = 0; i < sizeof(noise); i++) {
		seed = seed * 1103515245u + 12345u;
		noise[i] = (uint8_t)(seed >> 16);
	}
	noise[0] = 1; /* past the version byte, into the TLVs */
	rc |= corpus_file(dir, "garbage-noise", noise, sizeof(noise));
	rc |= corpus_file(dir, "garbage-empty", "", 0);
	return rc == 0 ? 0 : 1;
}

int
main(int argc, char *argv[])
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_string_limits),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_varint),
		cmocka_unit_test(test_reader_rollback),
		cmocka_unit_test(test_trace_fields),
	};

	if (argc == 3 && strcmp(argv[1], "--corpus") == 0)
		return corpus_write(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
