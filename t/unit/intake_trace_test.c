/*
 * intake_trace_test.c — what the intake takes for tracing from a message's
 * header block (mta/receive/intake_trace.c): the Message-ID (unfolded,
 * bounded, control characters refused), the campaign (unfolded, white
 * space collapsed, cut on a UTF-8 boundary, ENVID without the header) and
 * whether the Message-ID may be logged in clear.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dkim/dkim.h"
#include "queue/queue.h"
#include "mta/receive/intake_trace.h"

static char rcpt0[] = "jane.q8k@dest.test";
static char sender[] = "news.q8k@sender.test";

/* ENV with one recipient and a sender, stack-owned (no clear). */
static void
env_init(struct queue_envelope *env, struct queue_rcpt *r)
{
	memset(env, 0, sizeof(*env));
	memset(r, 0, sizeof(*r));
	r->addr = rcpt0;
	env->sender = sender;
	env->rcpts = r;
	env->nrcpts = 1;
}

/* Extract from HDRS (the header block, CRLF lines, without the empty
 * line) into ENV; the caller frees msgid and campaign. */
static void
extract(const char *hdrs, const char *campaign_header,
	struct queue_envelope *env)
{
	struct dkim_msg m;
	char err[128], *msg;
	size_t n = strlen(hdrs);

	msg = malloc(n + 8);
	assert_non_null(msg);
	memcpy(msg, hdrs, n);
	memcpy(msg + n, "\r\nb\r\n", 6);
	if (dkim_msg_parse((const uint8_t *)msg, n + 5, &m, err, sizeof(err)) !=
	    0)
		fail_msg("parse: %s", err);
	assert_int_equal(intake_trace_extract(&m, campaign_header, env), 0);
	dkim_msg_clear(&m);
	free(msg);
}

static void
env_fields_free(struct queue_envelope *env)
{
	free(env->msgid);
	free(env->campaign);
	env->msgid = env->campaign = NULL;
}

static void
test_extract(void **state)
{
	struct queue_envelope env;
	struct queue_rcpt r;
	char big[600], *p;
	size_t i;

	(void)state;
	env_init(&env, &r);
	extract("Received: from x\r\nMessage-Id:\r\n <20261205.1234.xyz@host."
		"example> (a comment)\r\nX-Campaign-ID:  spring\r\n\t sale "
		" \r\nX-Campaign-ID: second\r\n",
		"X-Campaign-ID", &env);
	assert_string_equal(env.msgid, "<20261205.1234.xyz@host.example>");
	assert_string_equal(env.campaign, "spring sale");
	assert_true(env.flags & QUEUE_F_MSGID_CLEAR);
	env_fields_free(&env);

	/* No header configured, no field: nothing; ENVID stands in. */
	extract("Subject: s\r\nX-Campaign-ID: c\r\n", NULL, &env);
	assert_null(env.msgid);
	assert_null(env.campaign);
	assert_false(env.flags & QUEUE_F_MSGID_CLEAR);
	env.envid = "QQ314159";
	extract("Subject: s\r\n", "X-Campaign-ID", &env);
	assert_string_equal(env.campaign, "QQ314159");
	env_fields_free(&env);
	extract("X-Campaign-ID: hdr\r\n", "x-campaign-id", &env);
	assert_string_equal(env.campaign, "hdr"); /* the header first */
	env_fields_free(&env);
	env.envid = NULL;

	/* Control characters: refused, not stored. */
	extract("Message-ID: <a\x01.12345678@h.example>\r\n"
		"X-Campaign-ID: a\x1b[31m\r\n",
		"X-Campaign-ID", &env);
	assert_null(env.msgid);
	assert_null(env.campaign);

	/* Over-long: a Message-ID is dropped, a campaign cut. */
	memcpy(big, "Message-ID: <", 13);
	memset(big + 13, 'm', 300);
	memcpy(big + 313, "@h>\r\n", 6);
	extract(big, "X-Campaign-ID", &env);
	assert_null(env.msgid);
	/* 100 two-byte characters: cut to 128 bytes, 64 whole ones. */
	p = big;
	p += sprintf(p, "X-Campaign-ID: ");
	for (i = 0; i < 100; i++)
		p += sprintf(p, "\xc3\xa9");
	sprintf(p, "\r\n");
	extract(big, "X-Campaign-ID", &env);
	assert_int_equal(strlen(env.campaign), 128);
	/* a three-byte character across the cut goes whole */
	env_fields_free(&env);
	p = big;
	p += sprintf(p, "X-Campaign-ID: a");
	for (i = 0; i < 50; i++)
		p += sprintf(p, "\xe2\x82\xac");
	sprintf(p, "\r\n");
	extract(big, "X-Campaign-ID", &env);
	assert_int_equal(strlen(env.campaign), 127); /* 1 + 42 * 3 */
	env_fields_free(&env);

	/* A Message-ID without brackets is kept whole; "<>" is none. */
	extract("Message-ID: bare.12345678@h.example\r\n", NULL, &env);
	assert_string_equal(env.msgid, "bare.12345678@h.example");
	env_fields_free(&env);
	extract("Message-ID: <>\r\n", NULL, &env);
	assert_null(env.msgid);
}

static void
test_msgid_clear(void **state)
{
	static const struct {
		const char *msgid;
		bool clear;
	} cases[] = {
		{ "<20261205023100.4711.k3j@mailer.example>", true },
		{ "<0100018c4b5e2d3f-5a6b-000000@email.example>", true },
		{ "20261205023100.4711.k3j@mailer.example", true },
		{ "<john.smith@example.com>", false },           /* no digits */
		{ "<john1980@example.com>", false },             /* short */
		{ "<jane.q8k.20261205@mailer.example>", false }, /* rcpt */
		{ "<x.20261205.1234@news.q8k.example>", false }, /* sender */
		{ "<b.20261205+jo=victim.example@m.example>",
		  false },                            /* VERP */
		{ "<20261205.1234.abc@a@b>", false }, /* two '@' */
		{ "<20261205.1234.abc@>", false },    /* no right */
		{ "<20261205.1234.abc>", false },     /* no '@' */
	};
	struct queue_envelope env;
	struct queue_rcpt r;
	size_t i;

	(void)state;
	env_init(&env, &r);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (intake_trace_msgid_clear(cases[i].msgid, &env) !=
		    cases[i].clear)
			fail_msg("case %zu (%s): want %s", i, cases[i].msgid,
				 cases[i].clear ? "clear" : "hashed");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extract),
		cmocka_unit_test(test_msgid_clear),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
