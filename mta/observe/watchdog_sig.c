/*
 * watchdog_sig.c — the signal math of one profile (watchdog_int.h): the
 * hourly and daily windows, the seasonal volume baseline, the share of new
 * recipients, the bounce ring, complaints, the domain mix, and the
 * verdict against thresholds.
 * Owns: nothing (the caller's profile).  Must not: read a clock, lock, or
 * allocate: the caller passes the time and holds the profile.
 * Threads: any, on a profile its caller holds.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "mta/observe/watchdog_int.h"

static const char *const wd_signal_names[WS__COUNT] = {
	[WS_VOLUME] = "volume",       [WS_NEW_SHARE] = "new_recipient_share",
	[WS_BOUNCE] = "bounce_rate",  [WS_COMPLAINT] = "complaint_rate",
	[WS_DOMAIN] = "domain_shift", [WS_TRAP] = "trap_hits",
	[WS_INFECTED] = "infected",
};

const char *
wd_signal_name(enum watchdog_signal s)
{
	return (unsigned)s < WS__COUNT ? wd_signal_names[s] : "unknown";
}

static int64_t
wd_floor_div(int64_t a, int64_t b)
{
	return a >= 0 ? a / b : -((-a + b - 1) / b);
}

void
wd_profile_init(struct wd_profile *p, int64_t now_ms)
{
	memset(p, 0, sizeof(*p));
	p->version = WD_PROFILE_VERSION;
	p->first_ms = p->last_ms = now_ms;
	p->hour = wd_floor_div(now_ms, WD_HOUR_MS);
	p->day = wd_floor_div(now_ms, WD_DAY_MS);
}

/* The hour H is over with N messages: into the week's ring and its slot
 * of the seasonal baseline. */
static void
wd_hour_fold(struct wd_profile *p, int64_t h, uint32_t n)
{
	unsigned slot =
	    (unsigned)(((h % WD_WEEK_HOURS) + WD_WEEK_HOURS) % WD_WEEK_HOURS);

	p->ring[slot] = n;
	if (p->ewma_n[slot] == 0)
		p->ewma[slot] = (float)n;
	else
		p->ewma[slot] +=
		    (float)(WD_EWMA_ALPHA * ((double)n - p->ewma[slot]));
	if (p->ewma_n[slot] < 255)
		p->ewma_n[slot]++;
}

/* The mix of the hour that ended becomes part of the usual mix. */
static void
wd_mix_fold(struct wd_profile *p)
{
	double a = p->mix_hours == 0 ? 1.0 : WD_MIX_ALPHA, tot = p->mix_now;
	unsigned i;

	if (p->mix_now == 0)
		return;
	for (i = 0; i < WD_DOMAINS; i++)
		if (p->dom[i].hash != 0) {
			p->dom[i].base +=
			    (float)(a * (p->dom[i].now / tot - p->dom[i].base));
			p->dom[i].now = 0;
		}
	p->other_base += (float)(a * (p->other_now / tot - p->other_base));
	p->other_now = p->mix_now = 0;
	p->mix_hours++;
}

/* The hour's share of new recipients becomes part of the usual share. */
static void
wd_share_fold(struct wd_profile *p)
{
	double s;

	/* A new identity's first day is all first contacts: its usual
	 * share is learnt from the day after on. */
	if (p->hour_rcpts == 0 ||
	    (p->hour + 1) * WD_HOUR_MS - p->first_ms <= WD_SHARE_SETTLE_MS)
		return;
	s = (double)p->hour_new / p->hour_rcpts;
	p->share_base =
	    p->share_n == 0
		? (float)s
		: p->share_base + (float)(WD_MIX_ALPHA * (s - p->share_base));
	p->share_n++;
}

void
wd_profile_roll(struct wd_profile *p, int64_t now_ms)
{
	int64_t h = wd_floor_div(now_ms, WD_HOUR_MS), d, x;
	unsigned i;

	if (h > p->hour) {
		wd_hour_fold(p, p->hour, p->hour_msgs);
		wd_share_fold(p);
		wd_mix_fold(p);
		/* The hours with nothing sent count as such (a week at
		 * most: older ones are wholly replaced anyway). */
		x = h - p->hour - 1 > WD_WEEK_HOURS ? h - WD_WEEK_HOURS
						    : p->hour + 1;
		for (; x < h; x++)
			wd_hour_fold(p, x, 0);
		if (h - p->hour == 1) {
			p->prev_rcpts = p->hour_rcpts;
			p->prev_new = p->hour_new;
			p->prev_infected = p->hour_infected;
		} else
			p->prev_rcpts = p->prev_new = p->prev_infected = 0;
		p->hour = h;
		p->hour_msgs = p->hour_rcpts = p->hour_new = 0;
		p->hour_infected = 0;
	}
	d = wd_floor_div(now_ms, WD_DAY_MS);
	if (d > p->day) {
		for (x = p->day + 1; x <= d && x <= p->day + WD_DAYS; x++) {
			i = (unsigned)(x % WD_DAYS);
			p->day_delivered[i] = p->day_complaints[i] = 0;
		}
		p->day = d;
	}
	if (now_ms > p->last_ms)
		p->last_ms = now_ms;
}

void
wd_note_message(struct wd_profile *p, int64_t now_ms, uint32_t nrcpts,
		uint32_t nnew, const uint64_t *doms)
{
	uint32_t i;
	unsigned j, free_slot;

	wd_profile_roll(p, now_ms);
	p->hour_msgs++;
	p->hour_rcpts += nrcpts;
	p->hour_new += nnew;
	for (i = 0; doms != NULL && i < nrcpts; i++) {
		free_slot = WD_DOMAINS;
		for (j = 0; j < WD_DOMAINS; j++) {
			if (p->dom[j].hash == doms[i])
				break;
			if (p->dom[j].hash == 0 && free_slot == WD_DOMAINS)
				free_slot = j;
		}
		if (j == WD_DOMAINS && free_slot < WD_DOMAINS) {
			j = free_slot;
			p->dom[j].hash = doms[i];
			p->dom[j].base = 0;
			p->dom[j].now = 0;
		}
		if (j < WD_DOMAINS)
			p->dom[j].now++;
		else
			p->other_now++;
		p->mix_now++;
	}
}

void
wd_note_result(struct wd_profile *p, int64_t now_ms, bool bounce,
	       uint32_t window)
{
	uint32_t pos;
	uint8_t bit;

	wd_profile_roll(p, now_ms);
	if (window == 0 || window > WD_BOUNCE_MAX)
		window = WD_BOUNCE_MAX;
	if (p->bits_n > window) {
		/* A reload shortened the window: it starts again. */
		memset(p->bits, 0, sizeof(p->bits));
		p->bits_pos = p->bits_n = p->bits_bounces = 0;
	}
	pos = p->bits_pos % window;
	bit = (uint8_t)(1u << (pos % 8));
	if (p->bits_n == window && (p->bits[pos / 8] & bit))
		p->bits_bounces--;
	if (bounce) {
		p->bits[pos / 8] |= bit;
		p->bits_bounces++;
	} else
		p->bits[pos / 8] &= (uint8_t)~bit;
	p->bits_pos = (pos + 1) % window;
	if (p->bits_n < window)
		p->bits_n++;
	p->day_delivered[(unsigned)(p->day % WD_DAYS)]++;
}

void
wd_note_complaint(struct wd_profile *p, int64_t now_ms)
{
	wd_profile_roll(p, now_ms);
	p->day_complaints[(unsigned)(p->day % WD_DAYS)]++;
}

void
wd_note_infected(struct wd_profile *p, int64_t now_ms)
{
	wd_profile_roll(p, now_ms);
	p->hour_infected++;
}

/* Version 1's records: the same profile with one signal fewer in the
 * values of its events and days, and without the infected counts. */
struct wd_event_v1 {
	int64_t ms;
	uint32_t kind, tripped;
	float v[WS_TRAP + 1];
};
struct wd_day_v1 {
	int64_t day;
	float v[WS_TRAP + 1];
};
#define WD_V1_HEAD offsetof(struct wd_profile, events)
#define WD_V1_BYTES                                                            \
	(WD_V1_HEAD + WD_EVENTS * sizeof(struct wd_event_v1) +                 \
	 WD_HISTORY_DAYS * sizeof(struct wd_day_v1))

int
wd_profile_upgrade(uint32_t version, const uint8_t *data, size_t len,
		   struct wd_profile *p)
{
	struct wd_event_v1 ev;
	struct wd_day_v1 d;
	const uint8_t *at = data + WD_V1_HEAD;
	unsigned i;

	if (version != 1 || len != WD_V1_BYTES)
		return -1;
	memset(p, 0, sizeof(*p));
	memcpy(p, data, WD_V1_HEAD);
	for (i = 0; i < WD_EVENTS; i++, at += sizeof(ev)) {
		memcpy(&ev, at, sizeof(ev));
		p->events[i].ms = ev.ms;
		p->events[i].kind = ev.kind;
		p->events[i].tripped = ev.tripped;
		memcpy(p->events[i].v, ev.v, sizeof(ev.v));
	}
	for (i = 0; i < WD_HISTORY_DAYS; i++, at += sizeof(d)) {
		memcpy(&d, at, sizeof(d));
		p->days[i].day = d.day;
		memcpy(p->days[i].v, d.v, sizeof(d.v));
	}
	p->version = WD_PROFILE_VERSION;
	return 0;
}

float
wd_volume_baseline(const struct wd_profile *p)
{
	unsigned slot = (unsigned)(((p->hour % WD_WEEK_HOURS) + WD_WEEK_HOURS) %
				   WD_WEEK_HOURS),
		 i;
	float b = p->ewma_n[slot] > 0 ? p->ewma[slot] : 0;

	/* The busiest hour of the last week and the busiest hour of the
	 * week as learnt: a campaign on Monday morning after a quiet
	 * weekend is measured against the busy hours, not the weekend's. */
	for (i = 0; i < WD_WEEK_HOURS; i++) {
		if (i != slot && (float)p->ring[i] > b)
			b = (float)p->ring[i];
		if (p->ewma_n[i] > 0 && p->ewma[i] > b)
			b = p->ewma[i];
	}
	return b;
}

/* The total variation distance between this hour's mix and the usual. */
static float
wd_mix_distance(const struct wd_profile *p)
{
	double d = 0, tot = p->mix_now;
	unsigned i;

	if (tot == 0)
		return 0;
	for (i = 0; i < WD_DOMAINS; i++)
		if (p->dom[i].hash != 0)
			d += fabs(p->dom[i].now / tot - p->dom[i].base);
	d += fabs(p->other_now / tot - p->other_base);
	return (float)(d / 2);
}

void
wd_evaluate(const struct wd_profile *p, int64_t now_ms,
	    const struct conf_watchdog_limits *l, int64_t learning_ms,
	    uint32_t trap_hits_new, struct wd_eval *e)
{
	uint32_t rc = p->hour_rcpts + p->prev_rcpts,
		 nw = p->hour_new + p->prev_new;
	uint64_t deliv = 0, compl = 0;
	double min = (double)l->min_messages;
	unsigned i;

	memset(e, 0, sizeof(*e));
	e->learning = now_ms - p->first_ms < learning_ms;
	for (i = 0; i < WD_DAYS; i++) {
		deliv += p->day_delivered[i];
		compl += p->day_complaints[i];
	}
	e->baseline[WS_VOLUME] = wd_volume_baseline(p);
	e->v[WS_VOLUME] = (float)p->hour_msgs;
	e->limit[WS_VOLUME] =
	    (float)(l->volume_factor * e->baseline[WS_VOLUME]);
	/* No baseline (no history yet): nothing to depart from. */
	e->enough[WS_VOLUME] =
	    p->hour_msgs >= min && e->baseline[WS_VOLUME] > 0;

	e->baseline[WS_NEW_SHARE] = p->share_base;
	e->v[WS_NEW_SHARE] = rc > 0 ? (float)nw / (float)rc : 0;
	e->limit[WS_NEW_SHARE] = (float)fmax(
	    l->new_recipient_share,
	    p->share_base + WD_SHARE_MARGIN * (1.0 - p->share_base));
	e->enough[WS_NEW_SHARE] = rc >= min;

	e->v[WS_BOUNCE] =
	    p->bits_n > 0 ? (float)p->bits_bounces / (float)p->bits_n : 0;
	e->limit[WS_BOUNCE] = (float)l->bounce_rate;
	e->enough[WS_BOUNCE] = p->bits_n >= min;

	e->v[WS_COMPLAINT] = deliv > 0 ? (float)compl / (float)deliv : 0;
	e->limit[WS_COMPLAINT] = (float)l->complaint_rate;
	e->enough[WS_COMPLAINT] = deliv >= min && compl >= WD_COMPLAINTS_MIN;

	e->baseline[WS_DOMAIN] = 0;
	e->v[WS_DOMAIN] = wd_mix_distance(p);
	e->limit[WS_DOMAIN] = (float)l->domain_shift;
	e->enough[WS_DOMAIN] = p->mix_now >= min && p->mix_hours > 0;

	e->v[WS_TRAP] = (float)trap_hits_new;
	e->limit[WS_TRAP] = 0;
	e->enough[WS_TRAP] = true;

	/* infected = N: the Nth in two hours trips (0: only counted). */
	e->v[WS_INFECTED] = (float)(p->hour_infected + p->prev_infected);
	e->limit[WS_INFECTED] = l->infected > 0 ? (float)(l->infected - 1) : 0;
	e->enough[WS_INFECTED] = l->infected > 0;

	for (i = 0; i < WS__COUNT; i++) {
		if (!e->enough[i] || e->v[i] <= e->limit[i])
			continue;
		/* Learning: only a trap or malware stops. */
		if (e->learning && i != WS_TRAP && i != WS_INFECTED)
			continue;
		e->tripped |= 1u << i;
	}
}

void
wd_reset_windows(struct wd_profile *p)
{
	unsigned i;

	p->hour_msgs = p->hour_rcpts = p->hour_new = 0;
	p->prev_rcpts = p->prev_new = 0;
	p->hour_infected = p->prev_infected = 0;
	memset(p->bits, 0, sizeof(p->bits));
	p->bits_pos = p->bits_n = p->bits_bounces = 0;
	memset(p->day_complaints, 0, sizeof(p->day_complaints));
	for (i = 0; i < WD_DOMAINS; i++)
		p->dom[i].now = 0;
	p->other_now = p->mix_now = 0;
}

void
wd_learn(struct wd_profile *p)
{
	unsigned slot = (unsigned)(((p->hour % WD_WEEK_HOURS) + WD_WEEK_HOURS) %
				   WD_WEEK_HOURS);
	uint32_t rc = p->hour_rcpts + p->prev_rcpts;

	if ((float)p->hour_msgs > p->ewma[slot] || p->ewma_n[slot] == 0) {
		p->ewma[slot] = (float)p->hour_msgs;
		if (p->ewma_n[slot] == 0)
			p->ewma_n[slot] = 1;
	}
	if (rc > 0) {
		p->share_base = (float)(p->hour_new + p->prev_new) / (float)rc;
		if (p->share_n == 0)
			p->share_n = 1;
	}
	if (p->mix_now > 0) {
		/* The whole weight on this hour's mix. */
		p->mix_hours = 0;
		wd_mix_fold(p);
	}
	wd_reset_windows(p);
}

void
wd_event_add(struct wd_profile *p, int64_t now_ms, enum wd_event_kind k,
	     const struct wd_eval *e)
{
	struct wd_event *ev = &p->events[p->nevents % WD_EVENTS];

	memset(ev, 0, sizeof(*ev));
	ev->ms = now_ms;
	ev->kind = (uint32_t)k;
	if (e != NULL) {
		ev->tripped = e->tripped;
		memcpy(ev->v, e->v, sizeof(ev->v));
	}
	p->nevents++;
	if (e != NULL)
		wd_day_note(p, now_ms, e);
}

void
wd_day_note(struct wd_profile *p, int64_t now_ms, const struct wd_eval *e)
{
	int64_t day = wd_floor_div(now_ms, WD_DAY_MS);
	struct wd_day *d;
	unsigned i;

	d = &p->days[(unsigned)(day % WD_HISTORY_DAYS)];
	if (d->day != day) {
		memset(d, 0, sizeof(*d));
		d->day = day;
	}
	for (i = 0; i < WS__COUNT; i++)
		if (e->enough[i] && e->v[i] > d->v[i])
			d->v[i] = e->v[i];
}

uint64_t
wd_domain_hash(const char *domain, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)domain[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h ^= c;
		h *= 1099511628211ULL;
	}
	return h != 0 ? h : 1;
}

void
wd_signals_json(FILE *f, const struct wd_eval *e)
{
	unsigned i;
	bool first = true;

	fputc('{', f);
	for (i = 0; i < WS__COUNT; i++)
		fprintf(f,
			"\"%s\":{\"value\":%.4g,\"limit\":%.4g,"
			"\"baseline\":%.4g,\"enough\":%s},",
			wd_signal_names[i], (double)e->v[i],
			(double)e->limit[i], (double)e->baseline[i],
			e->enough[i] ? "true" : "false");
	fprintf(f, "\"learning\":%s,\"tripped\":[",
		e->learning ? "true" : "false");
	for (i = 0; i < WS__COUNT; i++)
		if (e->tripped & (1u << i)) {
			fprintf(f, "%s\"%s\"", first ? "" : ",",
				wd_signal_names[i]);
			first = false;
		}
	fputs("]}", f);
}
