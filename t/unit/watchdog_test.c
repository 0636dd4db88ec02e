/*
 * watchdog_test.c — the watchdog's signal math (mta/observe/watchdog_sig.c)
 * on profiles driven through simulated hours and days: a normal Monday
 * after a quiet weekend is within the seasonal baseline and four times the
 * busiest hour is not; the share of new recipients trips past the
 * threshold but not for a sender whose usual share is high; the bounce
 * window wraps; one complaint never stops, a rate does; a new domain mix
 * trips; learning stops nothing but a trap or malware; infected
 * submissions trip at watchdog.infected within two hours; release resets
 * the windows and --learn adopts the pattern; a version 1 profile (before
 * the infected signal) converts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mta/observe/watchdog_int.h"

#define H WD_HOUR_MS
#define D WD_DAY_MS
/* A Tuesday, 00:00 UTC (2024-01-02). */
#define TUESDAY 1704153600000LL

static const struct conf_watchdog_limits limits = {
	.new_recipient_share = 0.5,
	.bounce_rate = 0.1,
	.complaint_rate = 0.003,
	.volume_factor = 4,
	.domain_shift = 0.5,
	.min_messages = 20,
};

/* N messages of one recipient each at T, to recipients seen before
 * unless NEW of them, all in domain DOM. */
static void
send_n(struct wd_profile *p, int64_t t, unsigned n, unsigned nnew, uint64_t dom)
{
	unsigned i;

	for (i = 0; i < n; i++)
		wd_note_message(p, t, 1, i < nnew ? 1 : 0, &dom);
}

static uint32_t
tripped(const struct wd_profile *p, int64_t t, int64_t learning)
{
	struct wd_eval e;

	wd_evaluate(p, t, &limits, learning, 0, &e);
	return e.tripped;
}

static void
test_monday_after_weekend(void **state)
{
	struct wd_profile p;
	uint64_t dom = wd_domain_hash("dest.test", 9);
	int64_t t;
	unsigned day;

	(void)state;
	wd_profile_init(&p, TUESDAY + 10 * H);
	for (day = 0; day < 4; day++) /* Tuesday .. Friday, 10:00 */
		send_n(&p, TUESDAY + day * D + 10 * H + 60000, 30, 0, dom);
	t = TUESDAY + 6 * D + 10 * H + 60000; /* Monday 10:00 */
	send_n(&p, t, 30, 0, dom);
	assert_int_equal(tripped(&p, t, D), 0);
	assert_true(wd_volume_baseline(&p) >= 30);
	/* Four times the busiest hour, in that hour. */
	send_n(&p, t, 91, 0, dom);
	assert_int_equal(tripped(&p, t, D), 1u << WS_VOLUME);
	/* --learn: this hour is the baseline now, the window starts again. */
	wd_learn(&p);
	send_n(&p, t, 121, 0, dom);
	assert_int_equal(tripped(&p, t, D), 0);
}

static void
test_new_share(void **state)
{
	struct wd_profile p, q;
	uint64_t dom = wd_domain_hash("dest.test", 9);
	int64_t t0 = TUESDAY + 9 * H, t;
	unsigned h;

	(void)state;
	wd_profile_init(&p, t0);
	send_n(&p, t0, 30, 30, dom); /* the first hour: all new */
	/* Learning: nothing stops. */
	assert_int_equal(tripped(&p, t0, H), 0);
	/* Two days of the same list, every hour. */
	for (h = 24; h < 72; h++)
		send_n(&p, t0 + h * H, 30, 0, dom);
	t = t0 + 72 * H;
	send_n(&p, t, 30, 0, dom);
	assert_int_equal(tripped(&p, t, H), 0);
	/* 61 new of 91, and none of 30 the hour before: 61/121 */
	send_n(&p, t, 61, 61, dom);
	assert_int_equal(tripped(&p, t, H), 1u << WS_NEW_SHARE);

	/* A sender of sign-ups: 80% new every hour is its pattern. */
	wd_profile_init(&q, t0);
	for (h = 24; h < 72; h++)
		send_n(&q, t0 + h * H, 30, 24, dom);
	t = t0 + 72 * H;
	send_n(&q, t, 30, 25, dom);
	assert_int_equal(tripped(&q, t, H), 0);
	/* 85 of 90, and 24 of 30 the hour before: 0.91, past 0.8 and half
	 * the way to 1. */
	send_n(&q, t, 60, 60, dom);
	assert_int_equal(tripped(&q, t, H), 1u << WS_NEW_SHARE);
}

static void
test_bounces(void **state)
{
	struct wd_profile p;
	int64_t t = TUESDAY;
	unsigned i;

	(void)state;
	wd_profile_init(&p, t);
	for (i = 0; i < 200; i++) /* one in 20 */
		wd_note_result(&p, t, i % 20 == 0, 100);
	assert_int_equal(p.bits_n, 100);
	assert_int_equal(p.bits_bounces, 5);
	assert_int_equal(tripped(&p, t, 0), 0);
	/* 6 more push one out: 10 in 100 is not past 0.1; 11 is. */
	for (i = 0; i < 6; i++)
		wd_note_result(&p, t, true, 100);
	assert_int_equal(p.bits_bounces, 10);
	assert_int_equal(tripped(&p, t, 0), 0);
	wd_note_result(&p, t, true, 100);
	assert_int_equal(tripped(&p, t, 0), 1u << WS_BOUNCE);
	/* The window moves on: good deliveries push the bounces out. */
	for (i = 0; i < 100; i++)
		wd_note_result(&p, t, false, 100);
	assert_int_equal(p.bits_bounces, 0);
	assert_int_equal(tripped(&p, t, 0), 0);
	/* A shorter window (a reload): the ring starts again. */
	wd_note_result(&p, t, true, 50);
	assert_int_equal(p.bits_n, 1);
	assert_int_equal(p.bits_bounces, 1);
}

static void
test_complaints(void **state)
{
	struct wd_profile p;
	int64_t t = TUESDAY;
	unsigned i;

	(void)state;
	wd_profile_init(&p, t);
	for (i = 0; i < 100; i++)
		wd_note_result(&p, t, false, 200);
	wd_note_complaint(&p, t);
	assert_int_equal(tripped(&p, t, 0), 0); /* one alone never */
	wd_note_complaint(&p, t);
	assert_int_equal(tripped(&p, t, 0), 1u << WS_COMPLAINT);
	/* A week on, they are out of the window. */
	wd_profile_roll(&p, t + 8 * D);
	assert_int_equal(tripped(&p, t + 8 * D, 0), 0);
}

static void
test_domain_mix(void **state)
{
	struct wd_profile p;
	uint64_t a = wd_domain_hash("Gmail.example", 13),
		 b = wd_domain_hash("gmail.example", 13),
		 c = wd_domain_hash("other.example", 13);
	int64_t t = TUESDAY;

	(void)state;
	assert_true(a == b);
	wd_profile_init(&p, t);
	send_n(&p, t, 40, 0, a);
	send_n(&p, t + H, 40, 0, a);
	assert_int_equal(tripped(&p, t + H, 0), 0);
	send_n(&p, t + 2 * H, 10, 0, a);
	send_n(&p, t + 2 * H, 30, 0, c);
	assert_int_equal(tripped(&p, t + 2 * H, 0), 1u << WS_DOMAIN);
}

static void
test_learning_and_trap(void **state)
{
	struct wd_profile p;
	struct wd_eval e;
	uint64_t dom = wd_domain_hash("dest.test", 9);
	int64_t t = TUESDAY;

	(void)state;
	wd_profile_init(&p, t);
	send_n(&p, t, 500, 500, dom);
	wd_evaluate(&p, t, &limits, 7 * D, 0, &e);
	assert_true(e.learning);
	assert_int_equal(e.tripped, 0);
	wd_evaluate(&p, t, &limits, 7 * D, 1, &e);
	assert_int_equal(e.tripped, 1u << WS_TRAP);
	/* Release: the windows start again, the baselines stay. */
	wd_reset_windows(&p);
	assert_int_equal(p.hour_msgs, 0);
	wd_evaluate(&p, t, &limits, 0, 0, &e);
	assert_int_equal(e.tripped, 0);
}

/* No history at all (learning = 0, or an identity quiet all through its
 * learning): there is no volume baseline to depart from, so volume does
 * not judge; the other signals still do. */
static void
test_no_volume_baseline(void **state)
{
	struct wd_profile p;
	uint64_t dom = wd_domain_hash("dest.test", 9);
	int64_t t = TUESDAY;

	(void)state;
	wd_profile_init(&p, t);
	send_n(&p, t, 100, 0, dom);
	assert_int_equal(tripped(&p, t, 0) & (1u << WS_VOLUME), 0);
}

static void
test_persisted_size(void **state)
{
	(void)state;
	/* A profile and its name fit one state record (queue.h). */
	assert_true(2 + 255 + WD_PROFILE_BYTES <= 4096);
	assert_string_equal(wd_signal_name(WS_NEW_SHARE),
			    "new_recipient_share");
}

static void
test_infected(void **state)
{
	struct conf_watchdog_limits l = limits;
	struct wd_profile p;
	struct wd_eval e;
	int64_t t = TUESDAY + 30 * 60 * 1000LL;

	(void)state;
	wd_profile_init(&p, t);
	l.infected = 2;
	wd_note_infected(&p, t);
	wd_evaluate(&p, t, &l, 7 * D, 0, &e);
	assert_true(e.learning);
	assert_int_equal(e.tripped, 0);
	/* The next hour still counts the last one's; learning or not. */
	wd_note_infected(&p, t + H);
	wd_evaluate(&p, t + H, &l, 7 * D, 0, &e);
	assert_int_equal(e.tripped, 1u << WS_INFECTED);
	assert_string_equal(wd_signal_name(WS_INFECTED), "infected");
	/* Two hours on, they are gone. */
	wd_profile_roll(&p, t + 3 * H);
	wd_evaluate(&p, t + 3 * H, &l, 7 * D, 0, &e);
	assert_int_equal(e.tripped, 0);
	/* infected = 0: counted, never a stop. */
	l.infected = 0;
	wd_note_infected(&p, t + 3 * H);
	wd_note_infected(&p, t + 3 * H);
	wd_evaluate(&p, t + 3 * H, &l, 0, 0, &e);
	assert_int_equal(e.tripped, 0);
	assert_true(e.v[WS_INFECTED] == 2);
	/* A release forgets them. */
	wd_reset_windows(&p);
	assert_int_equal(p.hour_infected + p.prev_infected, 0);
}

/* Version 1's layout, written out here independently of the converter. */
struct v1_event {
	int64_t ms;
	uint32_t kind, tripped;
	float v[6];
};
struct v1_day {
	int64_t day;
	float v[6];
};

static void
test_upgrade_v1(void **state)
{
	size_t head = offsetof(struct wd_profile, events);
	uint8_t buf[sizeof(struct wd_profile)];
	struct wd_profile p, q;
	struct v1_event ev;
	struct v1_day d;
	size_t len;

	(void)state;
	wd_profile_init(&p, TUESDAY);
	p.version = 1;
	p.stopped = 1;
	p.trap_hits = 3;
	memcpy(buf, &p, head);
	len = head;
	memset(&ev, 0, sizeof(ev));
	ev.ms = TUESDAY;
	ev.kind = WDE_STOP;
	ev.tripped = 1u << WS_TRAP;
	ev.v[WS_TRAP] = 1;
	memcpy(buf + len, &ev, sizeof(ev));
	len += WD_EVENTS * sizeof(ev);
	memset(&d, 0, sizeof(d));
	d.day = 19724;
	d.v[WS_BOUNCE] = 0.25f;
	memcpy(buf + len + 2 * sizeof(d), &d, sizeof(d));
	len += WD_HISTORY_DAYS * sizeof(d);
	assert_int_equal(wd_profile_upgrade(1, buf, len, &q), 0);
	assert_int_equal(q.version, WD_PROFILE_VERSION);
	assert_int_equal(q.stopped, 1);
	assert_int_equal(q.trap_hits, 3);
	assert_int_equal(q.events[0].tripped, 1u << WS_TRAP);
	assert_true(q.events[0].v[WS_TRAP] == 1);
	assert_true(q.events[0].v[WS_INFECTED] == 0);
	assert_int_equal(q.days[2].day, 19724);
	assert_true(q.days[2].v[WS_BOUNCE] == 0.25f);
	assert_int_equal(q.hour_infected, 0);
	/* Any other size or version is not taken. */
	assert_int_equal(wd_profile_upgrade(1, buf, len - 1, &q), -1);
	assert_int_equal(wd_profile_upgrade(3, buf, len, &q), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_monday_after_weekend),
		cmocka_unit_test(test_new_share),
		cmocka_unit_test(test_bounces),
		cmocka_unit_test(test_complaints),
		cmocka_unit_test(test_domain_mix),
		cmocka_unit_test(test_learning_and_trap),
		cmocka_unit_test(test_no_volume_baseline),
		cmocka_unit_test(test_persisted_size),
		cmocka_unit_test(test_infected),
		cmocka_unit_test(test_upgrade_v1),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
