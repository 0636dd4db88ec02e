/*
 * mta_test.c — unit tests for mta/ pieces that need no socket: SMTP path
 * parsing (addr.c), log escaping and address scrubbing (log.c), SASL
 * decoding (auth.c), the per-client table (client.c), posts to a loop's
 * mailbox held back until a flush (loop.c).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "mta/receive/addr.h"
#include "mta/receive/auth.h"
#include "mta/receive/peer.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/observe/stats.h"

/* auth.c counts Argon2id runs; outpostd's main.c owns the counters. */
struct stats stats;

static const struct addr_case {
	const char *name;
	const char *input;
	bool null_ok, utf8_ok;
	enum addr_result want;
	const char *mailbox, *domain, *rest;
} addr_cases[] = {
	{ "simple", "<a@example.org>", false, false, ADDR_OK, "a@example.org",
	  "example.org", "" },
	{ "params kept", "<a@Example.ORG> SIZE=10", false, false, ADDR_OK,
	  "a@Example.ORG", "example.org", " SIZE=10" },
	{ "leading space", " <a@b.c>", false, false, ADDR_OK, "a@b.c", "b.c",
	  "" },
	{ "null", "<>", true, false, ADDR_OK, "", "", "" },
	{ "null refused", "<>", false, false, ADDR_SYNTAX, NULL, NULL, NULL },
	{ "no brackets", "a@b.c", false, false, ADDR_SYNTAX, NULL, NULL, NULL },
	{ "unclosed", "<a@b.c", false, false, ADDR_SYNTAX, NULL, NULL, NULL },
	{ "quoted", "<\"john doe\"@example.org>", false, false, ADDR_OK,
	  "\"john doe\"@example.org", "example.org", "" },
	{ "quoted with >", "<\"a>b\"@example.org>", false, false, ADDR_OK,
	  "\"a>b\"@example.org", "example.org", "" },
	{ "quoted no domain", "<\"a@b.c\">", false, false, ADDR_NO_DOMAIN, NULL,
	  NULL, NULL },
	{ "source route", "<@x.y:a@b.c>", false, false, ADDR_SOURCE_ROUTE, NULL,
	  NULL, NULL },
	{ "literal", "<a@[127.0.0.1]>", false, false, ADDR_LITERAL, NULL, NULL,
	  NULL },
	{ "bang", "<b.c!a>", false, false, ADDR_NO_DOMAIN, NULL, NULL, NULL },
	{ "percent", "<a%b.c@d.e>", false, false, ADDR_OK, "a%b.c@d.e", "d.e",
	  "" },
	{ "double dot", "<a..b@c.d>", false, false, ADDR_SYNTAX, NULL, NULL,
	  NULL },
	{ "trailing dot", "<a@c.d.>", false, false, ADDR_SYNTAX, NULL, NULL,
	  NULL },
	{ "hyphen label", "<a@-c.d>", false, false, ADDR_SYNTAX, NULL, NULL,
	  NULL },
	{ "two @", "<a@b@c.d>", false, false, ADDR_SYNTAX, NULL, NULL, NULL },
	{ "utf8 refused", "<j\xc3\xb6rg@b.c>", false, false, ADDR_UTF8, NULL,
	  NULL, NULL },
	{ "utf8 ok", "<j\xc3\xb6rg@b.c>", false, true, ADDR_OK,
	  "j\xc3\xb6rg@b.c", "b.c", "" },
	{ "bad utf8", "<j\xc3(rg@b.c>", false, true, ADDR_UTF8, NULL, NULL,
	  NULL },
	{ "overlong utf8", "<j\xc0\xafrg@b.c>", false, true, ADDR_UTF8, NULL,
	  NULL, NULL },
	{ "local 65",
	  "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "@b.c>",
	  false, false, ADDR_TOO_LONG, NULL, NULL, NULL },
};

static void
test_addr_path_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];
		struct addr_path p;
		const char *rest = NULL;
		enum addr_result r;

		r = addr_path_parse(c->input, c->null_ok, c->utf8_ok, &p,
				    &rest);
		if (r != c->want)
			fail_msg("%s: %s: got %s, want %s", c->name, c->input,
				 addr_result_str(r), addr_result_str(c->want));
		if (r != ADDR_OK)
			continue;
		if (strcmp(p.mailbox, c->mailbox) != 0 ||
		    strcmp(p.domain, c->domain) != 0 ||
		    strcmp(rest, c->rest) != 0)
			fail_msg("%s: got mailbox=%s domain=%s rest=%s",
				 c->name, p.mailbox, p.domain, rest);
	}
}

static void
test_log_escape(void **state)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{ "550 5.1.1 <jane@example.org>: user unknown",
		  "550 5.1.1 <<address>>: user unknown" },
		{ "user jane.doe+x@example.org unknown",
		  "user <address> unknown" },
		{ "quoted \"jane\"@example.org gone", "quoted <address> gone" },
		{ "ctl\r\n\x01", "ctl\\x0d\\x0a\\x01" },
		{ "8bit \xc3\xa9", "8bit \\xc3\\xa9" },
		{ "plain text, no address", "plain text, no address" },
		{ "back\\slash", "back\\x5cslash" },
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		log_escape(out, sizeof(out), cases[i].in, strlen(cases[i].in));
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("log_escape(%s): got \"%s\", want \"%s\"",
				 cases[i].in, out, cases[i].want);
	}
	/* Truncation never splits the output past the buffer. */
	log_escape(out, 12, "0123456789abcdefghij", 20);
	assert_true(strlen(out) < 12);
	/* A token holding '@' is scrubbed even when truncated around it. */
	log_escape(out, sizeof(out), "x@y", 3);
	assert_string_equal(out, "<address>");
}

static void
test_auth_decoding(void **state)
{
	char dec[64], user[32], pass[32];
	size_t n;

	(void)state;
	/* "\0campaign\0secret" */
	assert_int_equal(
	    auth_b64_decode("AGNhbXBhaWduAHNlY3JldA==", dec, sizeof(dec), &n),
	    0);
	assert_int_equal(n, 16);
	assert_int_equal(
	    auth_plain_split(dec, n, user, sizeof(user), pass, sizeof(pass)),
	    0);
	assert_string_equal(user, "campaign");
	assert_string_equal(pass, "secret");
	assert_int_equal(auth_b64_decode("=", dec, sizeof(dec), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(auth_b64_decode("!!", dec, sizeof(dec), &n), -1);
	/* authzid differs from authcid */
	assert_int_equal(auth_plain_split("x\0campaign\0secret", 17, user,
					  sizeof(user), pass, sizeof(pass)),
			 -1);
	/* authzid equal is fine */
	assert_int_equal(auth_plain_split("campaign\0campaign\0s", 19, user,
					  sizeof(user), pass, sizeof(pass)),
			 0);
	/* missing parts, empty password */
	assert_int_equal(auth_plain_split("\0campaign", 9, user, sizeof(user),
					  pass, sizeof(pass)),
			 -1);
	assert_int_equal(auth_plain_split("\0campaign\0", 10, user,
					  sizeof(user), pass, sizeof(pass)),
			 -1);
	/* too long for the buffer */
	assert_int_equal(
	    auth_b64_decode("AGNhbXBhaWduAHNlY3JldA==", dec, 8, &n), -1);
}

static void
test_client_limits(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sockaddr_in6 m = { .sin6_family = AF_INET6 };
	struct peer_key k, km;

	(void)state;
	a.sin_addr.s_addr = htonl(0x7f000005);
	assert_int_equal(peer_key_from(&k, (struct sockaddr *)&a), 0);
	/* ::ffff:127.0.0.5 is the same client. */
	m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
	m.sin6_addr.s6_addr[12] = 127;
	m.sin6_addr.s6_addr[15] = 5;
	assert_int_equal(peer_key_from(&km, (struct sockaddr *)&m), 0);
	assert_memory_equal(&k, &km, sizeof(k));

	assert_int_equal(peer_session_acquire(&k, 10, 2), PEER_ADMIT_OK);
	assert_int_equal(peer_session_acquire(&km, 10, 2), PEER_ADMIT_OK);
	assert_int_equal(peer_session_acquire(&k, 10, 2),
			 PEER_ADMIT_PER_CLIENT);
	assert_int_equal(peer_sessions_total(), 2);
	assert_int_equal(peer_session_acquire(&k, 2, 5), PEER_ADMIT_TOTAL);
	peer_session_release(&k);
	peer_session_release(&k);
	assert_int_equal(peer_sessions_total(), 0);
}

/* What posted jobs ran, in order: (loop index * 100 + job). */
static int ran[32];
static unsigned nran;

static void
ran_fn(void *arg)
{
	assert_true(nran < sizeof(ran) / sizeof(ran[0]));
	ran[nran++] = (int)(intptr_t)arg;
}

static void
test_loop_post_defer(void **state)
{
	struct loop a, b;
	struct loop_msg ma[3], mb[2], now;
	int i;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	assert_int_equal(loop_init(&a, 1), 0);
	assert_int_equal(loop_init(&b, 2), 0);
	nran = 0;
	for (i = 0; i < 3; i++) {
		ma[i] = (struct loop_msg){ ran_fn, (void *)(intptr_t)(100 + i),
					   NULL, false };
		loop_post_defer(&a, &ma[i]);
		if (i < 2) {
			mb[i] = (struct loop_msg){ ran_fn,
						   (void *)(intptr_t)(200 + i),
						   NULL, false };
			loop_post_defer(&b, &mb[i]);
		}
	}
	/* Held: neither mailbox has them. */
	assert_int_equal(loop_flush(&a), 0);
	assert_int_equal(loop_flush(&b), 0);
	/* A direct post is not held. */
	now = (struct loop_msg){ ran_fn, (void *)(intptr_t)199, NULL, false };
	loop_post_msg(&a, &now);
	assert_int_equal(loop_flush(&a), 1);
	assert_int_equal(ran[0], 199);
	loop_post_flush();
	assert_int_equal(loop_flush(&b), 2);
	assert_int_equal(loop_flush(&a), 3);
	assert_int_equal(nran, 6);
	assert_int_equal(ran[1], 200);
	assert_int_equal(ran[2], 201);
	for (i = 0; i < 3; i++)
		assert_int_equal(ran[3 + i], 100 + i);
	/* Flushed: nothing is held any more. */
	loop_post_flush();
	assert_int_equal(loop_flush(&a), 0);
	/* More loops than a thread keeps chains for: the first ones go. */
	{
		struct loop many[17];
		struct loop_msg m[17];

		nran = 0;
		for (i = 0; i < 17; i++) {
			memset(&many[i], 0, sizeof(many[i]));
			assert_int_equal(loop_init(&many[i], (unsigned)i), 0);
			m[i] = (struct loop_msg){ ran_fn, (void *)(intptr_t)i,
						  NULL, false };
			loop_post_defer(&many[i], &m[i]);
		}
		assert_int_equal(loop_flush(&many[0]), 1);
		assert_int_equal(loop_flush(&many[16]), 0);
		loop_post_flush();
		for (i = 1; i < 17; i++)
			assert_int_equal(loop_flush(&many[i]), 1);
		for (i = 0; i < 17; i++)
			loop_free(&many[i]);
		assert_int_equal(nran, 17);
	}
	loop_free(&a);
	loop_free(&b);
}

/* loop_turn_end: a step asked for three times in one job runs once, after
 * the job; a cancelled one does not run; off a loop, nothing is queued. */
static pthread_mutex_t turn_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cv = PTHREAD_COND_INITIALIZER;
static int turn_log[16], turn_n;
static bool turn_done;

static void
turn_note(int v)
{
	pthread_mutex_lock(&turn_mu);
	if (turn_n < 16)
		turn_log[turn_n++] = v;
	pthread_mutex_unlock(&turn_mu);
}

static void
turn_step(void *arg)
{
	turn_note((int)(intptr_t)arg);
}

static struct loop_turn turn_a = { turn_step, (void *)(intptr_t)1, false,
				   NULL };
static struct loop_turn turn_b = { turn_step, (void *)(intptr_t)2, false,
				   NULL };

static void
turn_job(void *arg)
{
	(void)arg;
	assert_true(loop_turn_end(&turn_a));
	assert_true(loop_turn_end(&turn_b));
	assert_true(loop_turn_end(&turn_a)); /* already queued */
	loop_turn_cancel(&turn_b);
	turn_note(0); /* the job's own end */
}

static void
turn_last(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&turn_mu);
	turn_done = true;
	pthread_cond_signal(&turn_cv);
	pthread_mutex_unlock(&turn_mu);
}

static void
test_loop_turn_end(void **state)
{
	struct loop l;

	(void)state;
	/* As outpostd does: another thread's post wakes the loop. */
	assert_int_equal(evthread_use_pthreads(), 0);
	memset(&l, 0, sizeof(l));
	assert_false(loop_turn_end(&turn_a)); /* not a loop's thread */
	assert_false(turn_a.queued);
	assert_int_equal(loop_init(&l, 7), 0);
	assert_int_equal(loop_start(&l), 0);
	loop_post(&l, turn_job, NULL);
	loop_post(&l, turn_last, NULL);
	pthread_mutex_lock(&turn_mu);
	while (!turn_done)
		pthread_cond_wait(&turn_cv, &turn_mu);
	pthread_mutex_unlock(&turn_mu);
	loop_stop(&l);
	loop_join(&l);
	loop_free(&l);
	assert_int_equal(turn_n, 2);
	assert_int_equal(turn_log[0], 0);
	assert_int_equal(turn_log[1], 1);
	assert_false(turn_a.queued);
	assert_false(turn_b.queued);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_path_parse),
		cmocka_unit_test(test_log_escape),
		cmocka_unit_test(test_auth_decoding),
		cmocka_unit_test(test_client_limits),
		cmocka_unit_test(test_loop_post_defer),
		cmocka_unit_test(test_loop_turn_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
