/*
 * watchdog_int.h — between the watchdog's files: the profile of one
 * sending identity and its signal math (watchdog_sig.c: pure, no clock,
 * no lock, unit-tested), the registry, hooks and persistence
 * (watchdog.c), the reports (watchdog_report.c) and the alert command
 * (watchdog_alert.c).
 *
 * A profile is plain data of a fixed size (WD_PROFILE_BYTES), kept as it
 * is in a QS_WATCHDOG state record (sealed by the queue): about 3 KB per
 * identity, whatever it sends.
 */
#ifndef OUTPOST_MTA_WATCHDOG_INT_H
#define OUTPOST_MTA_WATCHDOG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conf/conf.h"
#include "mta/observe/watchdog.h"

#define WD_PROFILE_VERSION 2 /* 1: before WS_INFECTED (converted) */
#define WD_HOUR_MS         3600000LL
#define WD_DAY_MS          86400000LL
#define WD_WEEK_HOURS      168  /* the seasonal cycle: hours of a week */
#define WD_BOUNCE_MAX      1024 /* longest bounce window (deliveries) */
#define WD_DAYS            7    /* complaint rate: deliveries of a week */
#define WD_DOMAINS         16   /* domains of the mix tracked by name */
#define WD_EVENTS          16   /* stops and releases remembered */
#define WD_HISTORY_DAYS    14   /* daily signal values remembered */
#define WD_EWMA_ALPHA      0.3  /* weight of the newest week of an hour */
#define WD_MIX_ALPHA       0.2  /* weight of the newest hour of the mix */
/* A new-share trip also needs to be this far past the identity's own
 * share (half the way from it to 1): a sender whose mail always goes to
 * new addresses (sign-ups) is not stopped for doing so. */
#define WD_SHARE_MARGIN   0.5
#define WD_COMPLAINTS_MIN 2 /* one complaint alone never stops */
/* The usual share of new recipients is learnt from hours this long after
 * the identity was first seen (before, every recipient is new). */
#define WD_SHARE_SETTLE_MS WD_DAY_MS

enum wd_event_kind { WDE_STOP = 1, WDE_RELEASE, WDE_LEARN };

/* One stop or release, for `watchdog history`. */
struct wd_event {
	int64_t ms;
	uint32_t kind;    /* enum wd_event_kind */
	uint32_t tripped; /* bits of enum watchdog_signal */
	float v[WS__COUNT];
};

/* A day's highest signal values, for `watchdog history`. */
struct wd_day {
	int64_t day; /* Unix day; 0 unused */
	float v[WS__COUNT];
};

/* One recipient domain of the mix. */
struct wd_domain {
	uint64_t hash; /* FNV-1a of the lower-cased domain; 0 free */
	float base;    /* its share of the usual mix */
	uint32_t now;  /* recipients in the current hour */
};

struct wd_profile {
	uint32_t version;
	uint32_t stopped; /* 1: stopped; its mail held */
	int64_t first_ms; /* first seen: the learning period's start */
	int64_t last_ms;
	int64_t stopped_ms;
	uint32_t tripped; /* the signals that stopped it */
	uint32_t trap_hits;
	/* Volume: messages per hour. */
	int64_t hour;                  /* Unix hour of hour_msgs */
	uint32_t hour_msgs;            /* in that hour */
	uint32_t ring[WD_WEEK_HOURS];  /* the last week, by hour % 168 */
	float ewma[WD_WEEK_HOURS];     /* per hour of the week */
	uint8_t ewma_n[WD_WEEK_HOURS]; /* weeks in each (capped 255) */
	/* New recipients: this hour's and the last one's. */
	uint32_t hour_rcpts, hour_new, prev_rcpts, prev_new;
	float share_base; /* usual share of new recipients */
	uint32_t share_n; /* hours in share_base */
	/* Hard bounces over the last deliveries. */
	uint8_t bits[WD_BOUNCE_MAX / 8];
	uint32_t bits_pos, bits_n, bits_bounces;
	/* Complaints per delivery over the last WD_DAYS days. */
	int64_t day;
	uint32_t day_delivered[WD_DAYS], day_complaints[WD_DAYS];
	/* The domain mix. */
	struct wd_domain dom[WD_DOMAINS];
	float other_base;
	uint32_t other_now, mix_now, mix_hours;
	/* What happened. */
	uint32_t nevents;
	struct wd_event events[WD_EVENTS];   /* by nevents % WD_EVENTS */
	struct wd_day days[WD_HISTORY_DAYS]; /* by day % WD_HISTORY_DAYS */
	/* Infected submissions: this hour's and the last one's (version 2;
	 * last, so that a version 1 profile converts by its tail). */
	uint32_t hour_infected, prev_infected;
};

#define WD_PROFILE_BYTES sizeof(struct wd_profile)

/* The signals of a profile now, against thresholds. */
struct wd_eval {
	float v[WS__COUNT];        /* values */
	float limit[WS__COUNT];    /* what a value must exceed to trip */
	float baseline[WS__COUNT]; /* the identity's usual value */
	bool enough[WS__COUNT];    /* enough samples to judge */
	uint32_t tripped;          /* bits: past the limit with enough */
	bool learning;
};

/*
 * watchdog_sig.c — the math of one profile (P), given the time NOW_MS:
 * wd_profile_init    a new profile first seen at NOW_MS
 * wd_profile_roll    bring the hour and day windows to NOW_MS (hours
 *                    gone fold into the seasonal baseline)
 * wd_note_message    one accepted message of NRCPTS recipients, NNEW of
 *                    them never seen; DOMS[i] the domain hash of each
 * wd_note_result     one delivery: BOUNCE true for a hard bounce
 * wd_note_complaint  one complaint
 * wd_note_infected   one submission refused by the malware scan
 * wd_evaluate        the signals against L and the learning period
 * wd_reset_windows   a release: the windows start again (baselines kept)
 * wd_learn           a release with --learn: today's pattern becomes the
 *                    baseline, then the windows start again
 * wd_event_add       remember a stop or release (and E's values)
 * wd_day_note        the day's highest judged values, with E's
 * wd_volume_baseline the messages per hour expected now
 * wd_domain_hash     FNV-1a of a lower-cased domain (never 0)
 */
void wd_profile_init(struct wd_profile *p, int64_t now_ms);
void wd_profile_roll(struct wd_profile *p, int64_t now_ms);
void wd_note_message(struct wd_profile *p, int64_t now_ms, uint32_t nrcpts,
		     uint32_t nnew, const uint64_t *doms);
void wd_note_result(struct wd_profile *p, int64_t now_ms, bool bounce,
		    uint32_t window);
void wd_note_complaint(struct wd_profile *p, int64_t now_ms);
void wd_note_infected(struct wd_profile *p, int64_t now_ms);
/*
 * wd_profile_upgrade — a profile kept by an older version (DATA, LEN
 * bytes, its VERSION) into P.  0, or -1 when it is of no version known
 * (then learnt again).
 */
int wd_profile_upgrade(uint32_t version, const uint8_t *data, size_t len,
		       struct wd_profile *p);
void wd_evaluate(const struct wd_profile *p, int64_t now_ms,
		 const struct conf_watchdog_limits *l, int64_t learning_ms,
		 uint32_t trap_hits_new, struct wd_eval *e);
void wd_reset_windows(struct wd_profile *p);
void wd_learn(struct wd_profile *p);
void wd_event_add(struct wd_profile *p, int64_t now_ms, enum wd_event_kind k,
		  const struct wd_eval *e);
void wd_day_note(struct wd_profile *p, int64_t now_ms, const struct wd_eval *e);
float wd_volume_baseline(const struct wd_profile *p);
uint64_t wd_domain_hash(const char *domain, size_t len);

/* wd_signal_name — "volume", "new_recipient_share", … */
const char *wd_signal_name(enum watchdog_signal s);

/*
 * wd_signals_json — E as a JSON object onto F: each signal's value,
 * limit and baseline, and "tripped": [names].  Numbers and names only.
 */
void wd_signals_json(FILE *f, const struct wd_eval *e);

/*
 * watchdog_report.c — `watchdog status` (HEADER: the first identity of a
 * table) and `watchdog history` of identity NAME, profile P, signals now
 * E, onto F, as table lines or one JSON object a line.
 */
void wd_report_status(FILE *f, const char *name, const struct wd_profile *p,
		      const struct wd_eval *e, bool json, bool header);
void wd_report_history(FILE *f, const char *name, const struct wd_profile *p,
		       bool json);

/*
 * watchdog_alert.c — run ARGV with IDENTITY and SIGNALS appended, off
 * every loop (a thread of its own waits for it), killed with its process
 * group after TIMEOUT_MS; at most WD_ALERTS_MAX at once (more are skipped,
 * logged).  wd_alert_stop kills those still running (shutdown).
 */
#define WD_ALERTS_MAX 4
void wd_alert_run(char *const *argv, int64_t timeout_ms, const char *identity,
		  const char *signals);
void wd_alert_stop(void);

#endif
