/*
 * outcome_test.c — reply classification (mta/deliver/outcome.c), table-driven:
 * which codes each command may get (outcome_reply) and what a result means
 * for a recipient (outcome_classify): stage × code → action and status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mta/deliver/outcome.h"

static const struct reply_case {
	enum outcome_stage stage;
	int code;
	enum outcome_reply want;
} reply_cases[] = {
	{ OS_GREETING, 220, OR_OK },
	{ OS_GREETING, 250, OR_PROTOCOL },
	{ OS_GREETING, 221, OR_PROTOCOL },
	{ OS_GREETING, 354, OR_PROTOCOL },
	{ OS_GREETING, 421, OR_TEMP },
	{ OS_GREETING, 554, OR_PERM },
	{ OS_EHLO, 250, OR_OK },
	{ OS_EHLO, 220, OR_PROTOCOL },
	{ OS_EHLO, 354, OR_PROTOCOL },
	{ OS_EHLO, 502, OR_PERM },
	{ OS_HELO, 250, OR_OK },
	{ OS_HELO, 251, OR_PROTOCOL },
	{ OS_STARTTLS, 220, OR_OK },
	{ OS_STARTTLS, 250, OR_PROTOCOL },
	{ OS_STARTTLS, 454, OR_TEMP },
	{ OS_MAIL, 250, OR_OK },
	{ OS_MAIL, 334, OR_PROTOCOL },
	{ OS_MAIL, 354, OR_PROTOCOL },
	{ OS_MAIL, 550, OR_PERM },
	{ OS_RCPT, 250, OR_OK },
	{ OS_RCPT, 251, OR_OK },
	{ OS_RCPT, 252, OR_OK },
	{ OS_RCPT, 354, OR_PROTOCOL },
	{ OS_RCPT, 452, OR_TEMP },
	{ OS_DATA, 354, OR_OK },
	{ OS_DATA, 250, OR_PROTOCOL },
	{ OS_DATA, 220, OR_PROTOCOL },
	{ OS_DATA, 554, OR_PERM },
	{ OS_EOM, 250, OR_OK },
	{ OS_EOM, 354, OR_PROTOCOL },
	{ OS_EOM, 451, OR_TEMP },
	{ OS_RSET, 250, OR_OK },
	{ OS_RSET, 354, OR_PROTOCOL },
	{ OS_QUIT, 221, OR_OK },
	{ OS_EOM, 150, OR_PROTOCOL },
	{ OS_DATA, 199, OR_PROTOCOL },
	{ OS_EOM, 600, OR_PROTOCOL },
	{ OS_EOM, 999, OR_PROTOCOL },
	{ OS_MAIL, 0, OR_PROTOCOL },
	{ OS_EOM, -250, OR_PROTOCOL },
	{ OS_CONNECT, 250, OR_PROTOCOL },
	{ OS_TLS, 220, OR_PROTOCOL },
	{ OS_LOCAL, 250, OR_PROTOCOL },
	{ OS_LOCAL, 554, OR_PERM },
};

static void
test_outcome_reply(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *rc = &reply_cases[i];
		enum outcome_reply got = outcome_reply(rc->stage, rc->code);

		if (got != rc->want)
			fail_msg("%s:%d: outcome_reply(%s, %d) = %d, want %d",
				 __FILE__, __LINE__,
				 outcome_stage_name(rc->stage), rc->code,
				 (int)got, (int)rc->want);
	}
}

#define D OA_DELIVERED
#define F OA_DEFER
#define B OA_BOUNCE

static const struct classify_case {
	const char *name;
	enum outcome_stage stage;
	int code;
	const char *text;
	enum outcome_action want;
	const char *status;
	bool next_host, backoff, retry_now;
} classify_cases[] = {
	/* The one reply that delivers. */
	{ "eom 250", OS_EOM, 250, "ok", D, "2.0.0", false, false, false },
	{ "eom 250 enhanced", OS_EOM, 250, "2.6.0 queued", D, "2.6.0", false,
	  false, false },
	{ "eom 250 wrong class", OS_EOM, 250, "5.0.0 x", D, "2.0.0", false,
	  false, false },
	/* Stage-blind success: never delivered. */
	{ "mail 334", OS_MAIL, 334, "huh?", F, "4.5.0", false, false, false },
	{ "mail 250 as a result", OS_MAIL, 250, "ok", F, "4.5.0", false, false,
	  false },
	{ "rcpt 250 as a result", OS_RCPT, 250, "ok", F, "4.5.0", false, false,
	  false },
	{ "rcpt 354", OS_RCPT, 354, "go", F, "4.5.0", false, false, false },
	{ "data 250", OS_DATA, 250, "2.0.0 thanks", F, "4.5.0", false, false,
	  false },
	{ "data 354 as a result", OS_DATA, 354, "go", F, "4.5.0", false, false,
	  false },
	{ "data 150", OS_DATA, 150, "wait", F, "4.5.0", false, false, false },
	{ "eom 354", OS_EOM, 354, "more", F, "4.5.0", false, false, false },
	{ "eom 600", OS_EOM, 600, "x", F, "4.5.0", false, false, false },
	{ "greeting 250", OS_GREETING, 250, "hi", F, "4.5.0", true, false,
	  false },
	{ "greeting 220 as a result", OS_GREETING, 220, "hi", F, "4.5.0", true,
	  false, false },
	{ "ehlo 354", OS_EHLO, 354, "x", F, "4.5.0", true, false, false },
	{ "helo 221", OS_HELO, 221, "x", F, "4.5.0", true, false, false },
	{ "starttls 250", OS_STARTTLS, 250, "sure", F, "4.5.0", true, false,
	  false },
	{ "local 250", OS_LOCAL, 250, "x", F, "4.5.0", false, false, false },
	/* Refusals. */
	{ "greeting 554", OS_GREETING, 554, "go away", F, "5.0.0", true, false,
	  false },
	{ "greeting 421", OS_GREETING, 421, "4.7.0 busy", F, "4.7.0", true,
	  true, false },
	{ "starttls 454", OS_STARTTLS, 454, "4.7.0 no", F, "4.7.0", true, false,
	  false },
	{ "mail 550", OS_MAIL, 550, "5.7.1 no", B, "5.7.1", false, false,
	  false },
	{ "rcpt 550", OS_RCPT, 550, "5.1.1 unknown", B, "5.1.1", false, false,
	  false },
	{ "rcpt 451", OS_RCPT, 451, "4.2.1 busy", F, "4.2.1", false, false,
	  false },
	{ "rcpt 452 4.5.3", OS_RCPT, 452, "4.5.3 too many", F, "4.5.3", false,
	  false, true },
	{ "data 554", OS_DATA, 554, "5.7.1 no", B, "5.7.1", false, false,
	  false },
	{ "eom 421", OS_EOM, 421, "bye", F, "4.0.0", false, true, false },
	{ "eom 550 wrong class", OS_EOM, 550, "2.0.0 x", B, "5.0.0", false,
	  false, false },
	{ "local 554", OS_LOCAL, 554, "5.6.7 no SMTPUTF8", B, "5.6.7", false,
	  false, false },
	{ "local 451", OS_LOCAL, 451, "4.3.0 out of memory", F, "4.3.0", false,
	  false, false },
	/* No reply (code 0): our text may carry a class-4 status. */
	{ "connect refused", OS_CONNECT, 0, "connect: refused", F, "4.4.1",
	  true, true, false },
	{ "greeting timeout", OS_GREETING, 0, "timeout", F, "4.4.2", true, true,
	  false },
	{ "greeting protocol error", OS_GREETING, 0, "4.5.0 protocol error: x",
	  F, "4.5.0", true, false, false },
	{ "data timeout", OS_DATA, 0, "timeout", F, "4.4.2", false, false,
	  false },
	{ "eom protocol error", OS_EOM, 0, "4.5.0 protocol error: x", F,
	  "4.5.0", false, false, false },
	{ "code 0 class 5 ignored", OS_EOM, 0, "5.1.1 x", F, "4.4.2", false,
	  false, false },
	{ "code 0 class 2 ignored", OS_EOM, 0, "2.0.0 x", F, "4.4.2", false,
	  false, false },
	{ "local backed off", OS_LOCAL, 0, "4.4.2 destination backed off", F,
	  "4.4.2", false, false, false },
	{ "null text", OS_EOM, 0, NULL, F, "4.4.2", false, false, false },
};

static void
test_outcome_classify(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(classify_cases) / sizeof(classify_cases[0]);
	     i++) {
		const struct classify_case *cc = &classify_cases[i];
		struct outcome o;

		outcome_classify(cc->stage, cc->code, cc->text, NULL, 0, &o);
		if (o.action != cc->want || strcmp(o.status, cc->status) != 0 ||
		    o.next_host != cc->next_host ||
		    o.site_backoff != cc->backoff ||
		    o.retry_now != cc->retry_now)
			fail_msg("%s:%d: case \"%s\": action %d status %s "
				 "next_host %d backoff %d retry_now %d; want "
				 "%d %s %d %d %d",
				 __FILE__, __LINE__, cc->name, (int)o.action,
				 o.status, o.next_host, o.site_backoff,
				 o.retry_now, (int)cc->want, cc->status,
				 cc->next_host, cc->backoff, cc->retry_now);
	}
}

/* Every stage × every code: delivered only for a 2xx to the end of data,
 * and every protocol error is a deferral with 4.5.0. */
static void
test_outcome_delivered_only_at_eom(void **state)
{
	int stage, code;

	(void)state;
	for (stage = 0; stage < OS__COUNT; stage++) {
		for (code = -1; code <= 1000; code++) {
			struct outcome o;
			bool want =
			    stage == OS_EOM && code >= 200 && code < 300;

			outcome_classify((enum outcome_stage)stage, code,
					 "2.0.0 ok", NULL, 0, &o);
			if ((o.action == OA_DELIVERED) != want)
				fail_msg("%s:%d: %s %d: action %d", __FILE__,
					 __LINE__,
					 outcome_stage_name(
					     (enum outcome_stage)stage),
					 code, (int)o.action);
			if (code != 0 &&
			    outcome_reply((enum outcome_stage)stage, code) ==
				OR_PROTOCOL &&
			    (o.action != OA_DEFER ||
			     strcmp(o.status, OUTCOME_PROTOCOL_STATUS) != 0))
				fail_msg("%s:%d: %s %d: protocol error gave "
					 "action %d status %s",
					 __FILE__, __LINE__,
					 outcome_stage_name(
					     (enum outcome_stage)stage),
					 code, (int)o.action, o.status);
		}
	}
}

static void
test_outcome_stage_names(void **state)
{
	int stage;

	(void)state;
	for (stage = 0; stage < OS__COUNT; stage++)
		assert_non_null(outcome_stage_name((enum outcome_stage)stage));
	assert_string_equal(outcome_stage_name(OS_DATA), "data");
	assert_string_equal(outcome_stage_name(OS_EOM), "eom");
	assert_string_equal(outcome_stage_name(OS__COUNT), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcome_reply),
		cmocka_unit_test(test_outcome_classify),
		cmocka_unit_test(test_outcome_delivered_only_at_eom),
		cmocka_unit_test(test_outcome_stage_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
