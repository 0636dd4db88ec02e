/*
 * sched_limit.c — how much a path may do: connections, message rate,
 * back-off after failures and suspension by a reply pattern.
 *
 * Owns: the limit fields of struct sched_path.  Must not: keep jobs on a
 * paused path (their messages are parked, so rounds settle), nor write or
 * log anything per message for a pause.  Delivery loop thread.
 */
#include <inttypes.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "mta/core/log.h"
#include "mta/core/util.h"

#include "mta/deliver/cluster.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/evlog.h"
#include "mta/observe/stats.h"

#define SCHED_BACKOFF_LEVELS 8

/* The destination's compiled suspend_on regexes, into PATS (room for
 * CONF_SUSPEND_ON_MAX: the config refuses more).  Returns how many. */
unsigned
sched_limit_patterns(const struct conf_destination *cfg,
		     struct outcome_pattern pats[CONF_SUSPEND_ON_MAX])
{
	const regex_t *re = cfg->suspend_re;
	size_t i;

	for (i = 0; i < cfg->nsuspend_on && i < CONF_SUSPEND_ON_MAX; i++) {
		pats[i].re = (void *)&re[i];
		pats[i].suspend_ms = cfg->suspend_for_ms;
	}
	return (unsigned)i;
}

/* The delivery log's one line for P's pause (PAUSED) or its end: the
 * site, why (and for how long), and how many were held (COUNT, -1). */
static void
sched_limit_event(const struct sched_path *p, bool paused, const char *why,
		  int count)
{
	struct evlog_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = paused ? EV_PAUSE : EV_RESUME;
	ev.destination = p->site->key;
	ev.pool = p->pool != NULL ? p->pool->name : NULL;
	ev.reason = why;
	ev.nrcpts = ev.attempt = -1;
	ev.queue_time_ms = -1;
	ev.tls_verified = -1;
	ev.count = count;
	evlog_write(&ev);
}

/* P may not send for a while: what waits on it is parked (untried, its
 * round settled without a write; sched_park.c), so nothing is said or
 * written per message, and its park's timer still expires it on time. */
static void
sched_limit_defer_queue(struct sched_path *p)
{
	struct sched_job *job;

	while ((job = sched_path_pop(p)) != NULL)
		sched_job_park(job, &p->park);
}

/* P's pause is over: SAY so (with HELD, the messages held for it), and
 * let ALL of them go, or a few to PROBE with (as many as its connections)
 * or none (another shard probes: these wait for its outcome). */
static void
sched_limit_resume(struct sched_path *p, bool all, bool probe, bool say,
		   uint32_t held, const char *why)
{
	uint32_t few = probe ? sched_limit_conns(p) : 0;

	if (say) {
		sched_state_path_forget(p);
		log_info("destination %s resumed (%s); %u message(s) held for "
			 "it go again%s",
			 p->site->key, why, held, all ? "" : ", a few first");
		sched_limit_event(p, false, why, (int)held);
	}
	p->paused = false;
	p->pause_quiet = false;
	/* The few may never reach the path (expired, deleted, their MX
	 * lookup failed): the rest go anyway after another pause's time,
	 * unless a new pause comes first. */
	p->park.until_ms =
	    all || p->park.n <= few
		? 0
		: util_wall_ms() + (int64_t)p->cfg->backoff_pause_ms;
	sched_park_release(&p->park, all ? UINT32_MAX : few);
}

void
sched_limit_unpause(struct sched_path *p, bool all, const char *why)
{
	sched_limit_resume(p, all, true, p->paused && !p->pause_quiet,
			   p->park.n, why);
}

/* P's pause came to its end.  Over the shards, its end is said once and
 * probed once: the others hold their messages for the probe's outcome
 * (a new pause, or sched_limit_answered), or another pause's time. */
static void
sched_limit_pause_over(struct sched_path *p)
{
	bool say = p->paused && !p->pause_quiet, probe = true;
	uint32_t held = p->park.n;

	if (p->paused && p->share != NULL) {
		/* A later pause another shard took, its post not here yet:
		 * that one (it says and probes its own end). */
		sched_share_pause_adopt(p);
		if (p->paused_until_ms > util_wall_ms())
			return;
		probe = sched_share_pause_over(p->share, p->paused_until_ms,
					       p->park.n > 0, &say, &held);
	}
	sched_limit_resume(p, p->backoff_level == 0, probe, say, held,
			   "its pause is over");
}

void
sched_limit_answered(struct sched_path *p)
{
	if (p->paused && p->paused_until_ms > util_wall_ms())
		return; /* a pause of its own since */
	p->backoff_level = 0;
	p->conn_failures = 0;
	p->connect_after_ms = 0;
	if (p->paused || p->park.n > 0)
		sched_limit_resume(p, true, true, false, p->park.n,
				   "it answers");
	sched_path_kick(p);
}

void
sched_limit_backoff(struct sched_path *p, const char *why)
{
	const struct conf_destination *cfg = p->cfg;
	uint64_t pause;
	char esc[200], text[300];

	/* Already paused (another connection failed meanwhile, here or on
	 * another shard): one pause, one announcement. */
	if (p->share != NULL)
		sched_share_pause_adopt(p);
	if (p->paused_until_ms > util_wall_ms())
		return;
	if (p->backoff_level < SCHED_BACKOFF_LEVELS)
		p->backoff_level++;
	pause = cfg->backoff_pause_ms << (p->backoff_level - 1);
	if (pause > cfg->backoff_max_ms)
		pause = cfg->backoff_max_ms;
	p->paused_until_ms = util_wall_ms() + (int64_t)pause;
	p->paused = true;
	p->pause_quiet = false;
	p->park.until_ms = 0; /* held until this pause is over */
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	log_info("destination %s backed off for %" PRIu64 " s (level %u): %s",
		 p->site->key, pause / 1000, p->backoff_level,
		 log_escape(esc, sizeof(esc), why, strlen(why)));
	snprintf(text, sizeof(text),
		 "backed off for %" PRIu64 " s (level %u): %s", pause / 1000,
		 p->backoff_level, why);
	sched_limit_event(p, true, text, -1);
	sched_state_path_save(p);
	sched_limit_defer_queue(p);
	/* Its end is armed here, not left to a later kick: a failure
	 * reported with no kick after it would otherwise hold P (and all
	 * that is parked on it) until something else happened to it. */
	sched_timer_ms(p->timer, (int64_t)pause);
	if (p->share != NULL)
		sched_share_pause(p);
}

void
sched_limit_suspend(struct sched_path *p, uint64_t ms, const char *why)
{
	char esc[200], text[300];

	/* Another shard's suspension of it, still in force: that one. */
	if (p->share != NULL)
		sched_share_pause_adopt(p);
	if (p->suspended && p->paused_until_ms > util_wall_ms())
		return;
	p->suspended = true;
	p->paused_until_ms = util_wall_ms() + (int64_t)ms;
	p->paused = true;
	p->pause_quiet = false;
	p->park.until_ms = 0;
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	log_info("destination %s suspended for %" PRIu64 " s: reply matched a "
		 "suspend_on pattern: %s",
		 p->site->key, ms / 1000,
		 log_escape(esc, sizeof(esc), why, strlen(why)));
	snprintf(text, sizeof(text),
		 "suspended for %" PRIu64 " s: reply matched a suspend_on "
		 "pattern: %s",
		 ms / 1000, why);
	sched_limit_event(p, true, text, -1);
	sched_state_path_save(p);
	sched_limit_defer_queue(p);
	sched_timer_ms(p->timer, (int64_t)ms);
	if (p->share != NULL)
		sched_share_pause(p);
}

void
sched_limit_pause_follow(struct sched_path *p, int64_t until_ms, unsigned level,
			 bool suspended, const char *why)
{
	int64_t now = util_wall_ms();

	if (until_ms <= now || p->paused_until_ms >= until_ms)
		return;
	p->paused_until_ms = until_ms;
	if (level > p->backoff_level)
		p->backoff_level = level;
	p->suspended = suspended;
	/* The other shard said it, and says its end (or a third). */
	p->paused = true;
	p->pause_quiet = true;
	p->park.until_ms = 0;
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	sched_limit_defer_queue(p);
	sched_timer_ms(p->timer, until_ms - now);
}

void
sched_limit_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_path *p = arg;

	(void)fd;
	(void)what;
	if (p->paused_until_ms <= util_wall_ms()) {
		p->suspended = false;
		if (p->paused ||
		    (p->park.n > 0 && p->njobs == 0 && p->nconn == 0))
			sched_limit_pause_over(p);
	}
	sched_path_kick(p);
}

/* A pause this far past its end with no timer to end it is a broken
 * invariant: said, and ended. */
#define SCHED_PAUSE_OVERDUE_MS 1000

static void
sched_limit_sweep_path(struct sched_path *p, void *arg)
{
	int64_t now = *(const int64_t *)arg;

	if (!p->paused || p->paused_until_ms + SCHED_PAUSE_OVERDUE_MS > now ||
	    evtimer_pending(p->timer, NULL))
		return;
	log_warnx("destination %s: its pause ended %" PRId64
		  " ms ago and nothing was set to end it (jobs %u, "
		  "connections %u, parked %u): ended now",
		  p->site->key, now - p->paused_until_ms, p->njobs, p->nconn,
		  p->park.n);
	STATS_INC(pauses_overdue);
	sched_limit_timer_cb(-1, EV_TIMEOUT, p);
}

void
sched_limit_sweep(int64_t now)
{
	sched_path_each(sched_limit_sweep_path, &now);
}

/* A step down is taken at most this often: a burst of replies to one
 * campaign counts once. */
#define SCHED_THROTTLE_STEP_MS 60000

unsigned
sched_limit_throttle_level(const struct sched_path *p, int64_t now)
{
	uint64_t back;

	if (p->throttle_level == 0 || now < p->throttle_until_ms)
		return p->throttle_level;
	back =
	    1 + (uint64_t)(now - p->throttle_until_ms) /
		    (p->cfg->throttle_for_ms > 0 ? p->cfg->throttle_for_ms : 1);
	return back >= p->throttle_level ? 0
					 : p->throttle_level - (unsigned)back;
}

/* N scaled down by P's throttle at NOW (at least 1 when N is). */
static uint64_t
sched_limit_throttled(const struct sched_path *p, int64_t now, uint64_t n)
{
	unsigned level = sched_limit_throttle_level(p, now), i;
	uint64_t v = n;

	for (i = 0; i < level && v > 1; i++)
		v = v * p->cfg->throttle_factor / 100;
	return n > 0 && v == 0 ? 1 : v;
}

void
sched_limit_throttle(struct sched_path *p, const char *why)
{
	const struct conf_destination *cfg = p->cfg;
	int64_t now = util_wall_ms();
	unsigned level = sched_limit_throttle_level(p, now);
	char esc[256];

	if (level > 0 && now - p->throttle_step_ms < SCHED_THROTTLE_STEP_MS) {
		/* Still at it: this step lasts from now. */
		p->throttle_level = level;
		p->throttle_until_ms = now + (int64_t)cfg->throttle_for_ms;
		return;
	}
	if (level == 0)
		p->throttle_base_rate = p->rate;
	if (level < cfg->throttle_max_steps)
		level++;
	p->throttle_level = level;
	p->throttle_step_ms = now;
	p->throttle_until_ms = now + (int64_t)cfg->throttle_for_ms;
	STATS_INC(throttle_steps);
	sched_path_trim(p);
	if (cluster_shared()) {
		char key[512];

		sched_path_key(p, key, sizeof(key));
		cluster_throttle_push(key, level,
				      (int64_t)cfg->throttle_for_ms);
	}
	if (p->share != NULL)
		sched_share_throttle(p->share, level, p->throttle_until_ms);
	log_warnx(
	    "destination %s: throttled, step %u of %u: %u "
	    "connection(s)%s for %llu s, then a step back every %llu s: "
	    "%s",
	    p->site->key, level, cfg->throttle_max_steps, sched_limit_conns(p),
	    cfg->max_messages_per_minute > 0 ||
		    cfg->max_messages_per_hour > 0 || p->throttle_base_rate > 0
		? " and a lower rate"
		: "",
	    (unsigned long long)(cfg->throttle_for_ms / 1000),
	    (unsigned long long)(cfg->throttle_for_ms / 1000),
	    log_escape(esc, sizeof(esc), why, strlen(why)));
}

void
sched_limit_throttle_adopt(struct sched_path *p, unsigned level,
			   int64_t remain_ms, bool from_cluster)
{
	const struct conf_destination *cfg = p->cfg;
	int64_t now = util_wall_ms();
	unsigned cur = sched_limit_throttle_level(p, now);

	if (cfg->throttle_on == 0)
		return; /* not a destination that throttles here */
	if (level > cfg->throttle_max_steps)
		level = cfg->throttle_max_steps;
	if (level < cur ||
	    (level == cur && now + remain_ms <= p->throttle_until_ms))
		return;
	if (cur == 0)
		p->throttle_base_rate = p->rate;
	p->throttle_step_ms = now;
	p->throttle_until_ms = now + remain_ms;
	if (level == cur) {
		p->throttle_level = level;
		return; /* the same step, lasting longer */
	}
	p->throttle_level = level;
	if (from_cluster)
		log_warnx("destination %s: throttled by another node of the "
			  "cluster, step %u of %u: %u connection(s) for %lld s",
			  p->site->key, level, cfg->throttle_max_steps,
			  sched_limit_conns(p), (long long)(remain_ms / 1000));
	sched_path_trim(p);
}

unsigned
sched_limit_conns(const struct sched_path *p)
{
	unsigned lim = p->cfg->max_connections;

	/* Backed off: fewer connections (halved per level, at least 1). */
	if (p->backoff_level > 0)
		lim >>= p->backoff_level;
	if (p->throttle_level > 0)
		lim = (unsigned)sched_limit_throttled(p, util_wall_ms(), lim);
	/* The cluster's Redis away: this node's share of the limit. */
	if (cluster_on() && !cluster_shared())
		lim = cluster_share(lim);
	return lim == 0 ? 1 : lim;
}

/* Redis' answer for P's next message (cluster_rate_ask). */
static void
sched_limit_rate_cb(unsigned granted, int64_t wait_ms, void *arg)
{
	struct sched_path *p = arg;

	p->rate_asking = false;
	if (granted > 0)
		p->rate_tokens += granted;
	else if (wait_ms > 0)
		p->rate_wait_ms = util_wall_ms() + wait_ms;
	/* < 0: Redis went away, the share applies (sched_limit_rate_ok) */
	if (p->njobs > 0)
		sched_path_kick(p);
}

/* The interval of RATE per PERIOD_MS for this node: the whole rate, or
 * its share while the cluster's Redis is away. */
static unsigned
sched_limit_interval(unsigned rate, unsigned period_ms)
{
	if (rate == 0)
		return 0;
	if (cluster_on())
		rate = cluster_share(rate);
	return period_ms / rate;
}

/* The spacing of P's messages in ms on its minute and hour limits and on
 * its pool's warm-up budget of the day at NOW (0: that limit is off), for
 * the whole cluster (SHARE false) or for this node alone while the
 * cluster's Redis is away (SHARE true: its share of each). */
static void
sched_limit_intervals(const struct sched_path *p, int64_t now, bool share,
		      unsigned iv[CLUSTER_RATES])
{
	const struct conf_destination *cfg = p->cfg;
	uint64_t day =
	    p->pool != NULL
		? conf_pool_warmup(p->pool,
				   cfg->domain != NULL ? cfg->domain : "*", now)
		: 0;

	if (share && cluster_on())
		day = day > 0 ? cluster_share(day > UINT_MAX ? UINT_MAX
							     : (unsigned)day)
			      : 0;
	unsigned per_min = cfg->max_messages_per_minute,
		 per_hour = cfg->max_messages_per_hour;

	if (p->throttle_level > 0) {
		/* Throttled: its rate, or the rate it had, scaled down. */
		if (per_min == 0 && per_hour == 0 && p->throttle_base_rate > 0)
			per_min = (unsigned)(p->throttle_base_rate * 60 + 1);
		per_min = (unsigned)sched_limit_throttled(p, now, per_min);
		per_hour = (unsigned)sched_limit_throttled(p, now, per_hour);
	}
	iv[0] = share ? sched_limit_interval(per_min, 60000)
		      : (per_min > 0 ? 60000 / per_min : 0);
	iv[1] = share ? sched_limit_interval(per_hour, 3600000)
		      : (per_hour > 0 ? 3600000 / per_hour : 0);
	/* A budget past 86.4M a day is one a millisecond: no spacing. */
	iv[2] = day > 0 ? (unsigned)(86400000 / day) : 0;
}

/* Messages asked of Redis at once: what the tightest of IV lets go in
 * SCHED_RATE_BATCH_MS, so that a fast rate costs a round trip per batch,
 * not per message (a batch goes at once: within the batch's time, the
 * rate may hold in bursts), never more than P has waiting. */
#define SCHED_RATE_BATCH_MS  50
#define SCHED_RATE_BATCH_MAX 64
static unsigned
sched_limit_rate_want(const struct sched_path *p,
		      const unsigned iv[CLUSTER_RATES])
{
	unsigned widest = 0, n, i;

	for (i = 0; i < CLUSTER_RATES; i++)
		if (iv[i] > widest)
			widest = iv[i];
	n = widest > 0 ? SCHED_RATE_BATCH_MS / widest : SCHED_RATE_BATCH_MAX;
	if (n > SCHED_RATE_BATCH_MAX)
		n = SCHED_RATE_BATCH_MAX;
	if (n > p->njobs)
		n = p->njobs;
	return n > 0 ? n : 1;
}

/*
 * With a cluster whose Redis answers, P's messages are counted in Redis:
 * true when one was granted (or P has no rate); false while asking (the
 * answer kicks P) or told to wait (*WHEN).  -1: not shared now.
 */
static int
sched_limit_rate_shared(struct sched_path *p, int64_t now, int64_t *when)
{
	unsigned iv[CLUSTER_RATES];
	char key[512];

	if (!cluster_shared())
		return -1;
	if (p->rate_tokens > 0)
		return 1;
	if (p->rate_asking) {
		*when = now + SCHED_LEASE_RETRY_MS;
		return 0;
	}
	if (p->rate_wait_ms > now) {
		*when = p->rate_wait_ms;
		return 0;
	}
	sched_path_key(p, key, sizeof(key));
	sched_limit_intervals(p, now, false, iv);
	if (cluster_rate_ask(key, iv, sched_limit_rate_want(p, iv),
			     sched_limit_rate_cb, p) != 0)
		return -1;
	p->rate_asking = true;
	*when = now + SCHED_LEASE_RETRY_MS;
	return 0;
}

/* A rate check or step on a path's shared spacing (sched_share_rate):
 * at NOW, the latest time not come yet (WHEN), or IV moved on. */
struct sched_limit_rate_q {
	int64_t now;
	int64_t when;
	const unsigned *iv;
};

static void sched_limit_space(int64_t *next, int64_t now, unsigned iv);

static void
sched_limit_rate_check(int64_t times[3], void *arg)
{
	struct sched_limit_rate_q *q = arg;
	unsigned i;

	for (i = 0; i < 3; i++)
		if (times[i] > q->now && q->when == 0)
			q->when = times[i];
}

static void
sched_limit_rate_step(int64_t times[3], void *arg)
{
	struct sched_limit_rate_q *q = arg;
	unsigned i;

	for (i = 0; i < 3; i++)
		sched_limit_space(&times[i], q->now, q->iv[i]);
}

/* May P send one more message now (rate limits)?  If not, when. */
bool
sched_limit_rate_ok(struct sched_path *p, int64_t now, int64_t *when)
{
	int rc;

	if (p->cfg->max_messages_per_minute == 0 &&
	    p->cfg->max_messages_per_hour == 0 &&
	    (p->pool == NULL || p->pool->nwarmups == 0) &&
	    (p->throttle_level == 0 || p->throttle_base_rate <= 0))
		return true;
	if (cluster_on() && (rc = sched_limit_rate_shared(p, now, when)) >= 0)
		return rc == 1;
	if (p->share != NULL) {
		/* Every shard's messages to it, spaced as one. */
		struct sched_limit_rate_q q = { now, 0, NULL };

		sched_share_rate(p->share, sched_limit_rate_check, &q);
		if (q.when > now) {
			*when = q.when;
			return false;
		}
		return true;
	}
	if (p->next_send_ms > now) {
		*when = p->next_send_ms;
		return false;
	}
	if (p->next_send_hour_ms > now) {
		*when = p->next_send_hour_ms;
		return false;
	}
	if (p->next_send_day_ms > now) {
		*when = p->next_send_day_ms;
		return false;
	}
	return true;
}

/* NEXT moved on by IV from NOW or from where it was, whichever is later
 * (IV 0: that limit is off). */
static void
sched_limit_space(int64_t *next, int64_t now, unsigned iv)
{
	if (iv > 0)
		*next = (*next > now ? *next : now) + iv;
}

void
sched_limit_rate_take(struct sched_path *p, int64_t now)
{
	unsigned iv[CLUSTER_RATES];

	if (p->rate_tokens > 0) {
		p->rate_tokens--; /* counted in Redis */
		return;
	}
	/* Smooth spacing: N per minute is one every 60/N s; a warm-up's
	 * budget spreads over the day the same way. */
	sched_limit_intervals(p, now, true, iv);
	if (iv[0] == 0 && iv[1] == 0 && iv[2] == 0)
		return; /* no limit: nothing to space (nor a lock to take) */
	if (p->share != NULL) {
		struct sched_limit_rate_q q = { now, 0, iv };

		sched_share_rate(p->share, sched_limit_rate_step, &q);
		return;
	}
	sched_limit_space(&p->next_send_ms, now, iv[0]);
	sched_limit_space(&p->next_send_hour_ms, now, iv[1]);
	sched_limit_space(&p->next_send_day_ms, now, iv[2]);
}
