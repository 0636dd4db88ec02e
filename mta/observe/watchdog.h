/*
 * watchdog.h — the watchdog: per sending identity (conf_identity: the AUTH
 * user, else relay.identity) a profile of what it submits and what
 * receivers answer, and a stop when that departs from its pattern.
 *
 * Signals: messages per hour against a seasonal baseline (per hour of the
 * week, and the busiest hour of the last week), the share of recipients
 * the identity never sent to (queue "seen" database), hard bounces over
 * the last deliveries, complaints per delivery over a week, a spam-trap
 * hit (one is enough), infected submissions the malware scan refused
 * (watchdog.infected of them in two hours), and the distance of the recipient
 * domain mix from the usual one.  A new identity is only learnt for
 * watchdog.learning (traps and infected submissions excepted).
 *
 * A stop: new transactions of the identity get 451 4.7.1 at MAIL, its
 * queued mail is held (the action hook: mta/control/control_watchdog.c),
 * a "watchdog" event is logged with the signals, the metrics
 * outpost_watchdog_stopped{identity} and outpost_watchdog_stops_total
 * move, the alert command runs.  Nothing is deleted.  Profiles and stops
 * outlive a restart (QS_WATCHDOG state records).
 *
 * Threads: every function is thread-safe (one mutex over the profiles,
 * held for in-memory math only); none blocks on disk: the seen lookups
 * are read transactions, every write a queue op.  Memory: at most
 * watchdog.identities_max profiles of about 3 KB each.
 */
#ifndef OUTPOST_MTA_WATCHDOG_H
#define OUTPOST_MTA_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

struct queue;
struct queue_rcpt;

enum watchdog_signal {
	WS_VOLUME,    /* messages this hour / the baseline */
	WS_NEW_SHARE, /* never-seen recipients / recipients (2 hours) */
	WS_BOUNCE,    /* hard bounces / deliveries (last bounce_window) */
	WS_COMPLAINT, /* complaints / deliveries (7 days) */
	WS_DOMAIN,    /* distance of the domain mix (total variation) */
	WS_TRAP,      /* spam-trap hits */
	WS_INFECTED,  /* submissions the malware scan refused (2 hours) */
	WS__COUNT
};

/*
 * watchdog_open — load the trap list of C and the profiles kept in Q,
 * register the "watchdog" history store (retention.history ages the seen
 * database; a purge forgets a user's profile and history).  Idle (every
 * check passes) while watchdog.enabled is off.  0, or -1 with ERR (an
 * unreadable trap list).  Main thread, after queue_open, before the
 * loops run.
 */
int watchdog_open(const struct conf *c, struct queue *q, char *err,
		  size_t errlen);

/*
 * watchdog_reconf — C (a reload, now in force): thresholds, trap list,
 * alert command.  A trap list that does not read keeps the old one
 * (logged).  C must stay valid until the next reconf or close.  Main
 * thread.
 */
void watchdog_reconf(const struct conf *c);

/* watchdog_close — keep every profile (queue ops), kill alert commands
 * still running.  Main thread, after the loops stopped, before
 * queue_close. */
void watchdog_close(void);

/*
 * watchdog_stopped — is IDENTITY stopped?  Then MAIL gets 451 4.7.1.
 * Any thread (an I/O loop); a lock and a hash lookup.
 */
bool watchdog_stopped(const char *identity);

/*
 * A queued message of an identity, in two steps around its hand-off to
 * the scheduler, so that a stop it causes holds it too (the hold's walk
 * must find the scheduler knowing it):
 *   watchdog_msg_prepare(m, identity, id, rcpts, n)  after the commit of
 *       message ID, while
 *       RCPTS[0..N) are the caller's: new recipients (the seen history:
 *       a read transaction, no disk write), domains, traps.  IDENTITY must
 *       outlive the note.
 *   watchdog_msg_note(m)  after the hand-off: the profile (volume, new
 *       share, domain mix, traps); may stop the identity.  Frees M's
 *       contents; call it after every prepare.
 * Any thread (an I/O loop); M is the caller's, its members private.
 */
struct watchdog_msg {
	const char *identity; /* NULL: nothing to note */
	uint64_t id;          /* the message's queue id */
	uint64_t *doms;       /* domain hashes, malloc'd */
	uint32_t n, nnew, traps;
	int64_t now_ms;
};
void watchdog_msg_prepare(struct watchdog_msg *m, const char *identity,
			  uint64_t id, const struct queue_rcpt *rcpts,
			  uint32_t n);
void watchdog_msg_note(struct watchdog_msg *m);

/*
 * watchdog_note_result — a delivery of IDENTITY to RCPT ended: ACTION an
 * enum outcome_action value (0 delivered, 2 bounced; deferrals are not
 * counted), CATEGORY its bounce category.  A hard bounce is a bounce of
 * category bad-mailbox, bad-domain or inactive-mailbox (the
 * bounce-categories rules).  May stop IDENTITY (on a loop, at the end of
 * its turn).  Any thread (the delivery loop).
 */
void watchdog_note_result(const char *identity, const char *rcpt, int action,
			  enum conf_bounce_category category);
/* On a loop's thread, watchdog_note_result's results wait for the end of
 * the loop's turn and are noted together (one lock for a run of one
 * identity's).  watchdog_stage_end — note what waits and free the
 * thread's stage: the loop's thread, at its end. */
void watchdog_stage_end(void);

/* watchdog_note_complaint — a complaint (feedback loop) about IDENTITY's
 * mail to RCPT.  May stop IDENTITY.  Any thread; never blocks. */
void watchdog_note_complaint(const char *identity, const char *rcpt);

/*
 * watchdog_note_infected — the malware scan refused a message of IDENTITY
 * (mta/receive/scan.c).  May stop IDENTITY (watchdog.infected; during
 * learning too).  Any thread (an I/O loop); never blocks.
 */
void watchdog_note_infected(const char *identity);

/*
 * The action of a stop: FN(IDENTITY, SIGNALS, 0, ARG) holds the identity's
 * queued mail and records the stop in the audit log; FN(IDENTITY, NULL,
 * ID, ARG) holds message ID alone (a message whose MAIL came before the
 * stop, queued after it).  Called without the watchdog's lock, on the
 * thread that noted the message or result; FN must only hand the work
 * over (loop_post).  Main thread, before the loops run.
 */
typedef void watchdog_stop_fn(const char *identity, const char *signals,
			      uint64_t id, void *arg);
void watchdog_stop_hook(watchdog_stop_fn *fn, void *arg);

/*
 * Sharing with a cluster (mta/deliver/cluster.c): SHARE hears each stop
 * and each operator's release made on this node (IDENTITY, STOPPED, the
 * stop's SIGNALS or NULL), from the thread that made it;
 * watchdog_remote applies one another node made (a stop holds this
 * node's queued mail through the stop hook; a release then calls RELEASE,
 * which lets the identity's held mail go).  Hooks set before the loops
 * run.
 */
typedef void watchdog_share_fn(const char *identity, bool stopped,
			       const char *signals);
typedef void watchdog_release_fn(const char *identity);
void watchdog_share_hook(watchdog_share_fn *share);
void watchdog_release_hook(watchdog_release_fn *release);
void watchdog_remote(const char *identity, bool stopped, const char *signals);

/*
 * watchdog_release — IDENTITY goes again (its held mail is the caller's to
 * release); its windows start again, with LEARN its current pattern
 * becomes its baseline.  Logged as a "watchdog" event.  0; 1 when it was
 * not stopped (LEARN still applies); -1 when it has no profile.  Any
 * thread.
 */
int watchdog_release(const char *identity, bool learn);

/*
 * watchdog_report — `watchdog status` (HISTORY false: IDENTITY's, or every
 * profile's with IDENTITY NULL) or `watchdog history` of IDENTITY, as a
 * table or (JSON) one object per line: malloc'd text, *LEN its length;
 * NULL when out of memory, or *LEN 0 with an empty text when IDENTITY has
 * no profile.  Any thread.
 */
char *watchdog_report(const char *identity, bool history, bool json,
		      size_t *len, size_t *count);

/* watchdog_metrics_text — outpost_watchdog_stopped{identity} (at most
 * WATCHDOG_METRICS_TOP series, then identity="_other") and
 * outpost_watchdog_stops_total, as a metrics_text_fn.  Any thread. */
#define WATCHDOG_METRICS_TOP 100
size_t watchdog_metrics_text(char *buf, size_t len);

#endif
