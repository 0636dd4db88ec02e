/*
 * sched_state.c — the scheduler's state that outlives a restart: operators'
 * suspensions of destinations and sites' back-offs, kept in the queue's
 * "state" database (queue_state_*), and put back at start-up.
 *
 * Owns: the back-offs read at start-up whose site is not known yet (a site
 * exists once a destination's MX are; its path takes its back-off back
 * then).  Must not: write per message (one write when a suspension or a
 * pause begins or ends), nor write on this loop (queue ops only).
 * Delivery loop thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"

/* A back-off read at start-up, until its path exists. */
struct sched_state_pause {
	int64_t until_ms;
	unsigned level;
	bool suspended;
	char last_error[sizeof(((struct sched_path *)0)->last_error)];
};

/* A path's name in "state" and in the pending table: its site's key and
 * its pool's name, apart by a newline (in neither). */
static int
sched_state_path_name(const struct sched_path *p, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s\n%s", p->site->key,
			 p->pool != NULL ? p->pool->name : "");

	return n < 0 || (size_t)n >= len ? -1 : n;
}

void
sched_state_suspend_save(const char *domain, int64_t until_ms,
			 const char *reason)
{
	char data[QUEUE_STATE_DATA_MAX];
	int n;

	/* DOMAIN, NUL, the reason. */
	n = snprintf(data, sizeof(data), "%s%c%s", domain, '\0',
		     reason != NULL ? reason : "");
	if (n < 0 || (size_t)n >= sizeof(data) ||
	    queue_state_put(sched->queue, QS_SUSPEND, domain, strlen(domain),
			    until_ms, data, (size_t)n) != 0)
		log_warnx("destination %s: its suspension cannot be kept "
			  "across a restart (out of memory)",
			  domain);
}

void
sched_state_suspend_forget(const char *domain)
{
	if (queue_state_del(sched->queue, QS_SUSPEND, domain, strlen(domain)) !=
	    0)
		log_warnx("destination %s: its resume cannot be kept across "
			  "a restart (out of memory)",
			  domain);
}

void
sched_state_path_save(const struct sched_path *p)
{
	char name[2300], data[QUEUE_STATE_DATA_MAX];
	int n;

	/* level(1) suspended(1) site NUL pool NUL last error */
	if (sched_state_path_name(p, name, sizeof(name)) < 0)
		return; /* a site key too long to be kept */
	n = snprintf(data, sizeof(data), "%c%c%s%c%s%c%s",
		     (char)(p->backoff_level + 1), p->suspended ? 'y' : 'n',
		     p->site->key, '\0', p->pool != NULL ? p->pool->name : "",
		     '\0', p->last_error);
	if (n < 0 || (size_t)n >= sizeof(data) ||
	    queue_state_put(sched->queue, QS_BACKOFF, name, strlen(name),
			    p->paused_until_ms, data, (size_t)n) != 0)
		log_warnx("destination %s: its pause cannot be kept across a "
			  "restart",
			  p->site->key);
}

void
sched_state_path_forget(const struct sched_path *p)
{
	char name[2300];

	if (sched_state_path_name(p, name, sizeof(name)) >= 0 &&
	    queue_state_del(sched->queue, QS_BACKOFF, name, strlen(name)) != 0)
		log_warnx("destination %s: the end of its pause cannot be "
			  "kept across a restart (out of memory)",
			  p->site->key);
}

void
sched_state_path_restore(struct sched_path *p)
{
	struct sched_state_pause *sp;
	char name[2300];
	int64_t now = util_wall_ms();

	if (!sched->state_ready || sched->state_pending.n == 0 ||
	    sched_state_path_name(p, name, sizeof(name)) < 0 ||
	    (sp = htab_del(&sched->state_pending, name)) == NULL)
		return;
	if (sp->until_ms > now && p->paused_until_ms < sp->until_ms) {
		p->paused_until_ms = sp->until_ms;
		p->backoff_level = sp->level;
		p->suspended = sp->suspended;
		p->paused = true;
		p->park.until_ms = 0; /* held until this pause is over */
		memcpy(p->last_error, sp->last_error, sizeof(p->last_error));
		log_info("destination %s: paused until %" PRId64 " (%" PRId64
			 " s left, level %u), as before the "
			 "restart",
			 p->site->key, sp->until_ms,
			 (sp->until_ms - now) / 1000, sp->level);
		sched_timer_ms(p->timer, sp->until_ms - now);
		if (p->share != NULL)
			sched_share_pause_note(p);
	}
	free(sp);
}

static int
sched_state_suspend_cb(int64_t until_ms, const uint8_t *data, size_t len,
		       void *arg)
{
	const char *dom = (const char *)data, *reason;
	size_t dlen = strnlen(dom, len);
	struct sched_dest *d;
	char *r;
	unsigned *n = arg;

	if (dlen == 0 || dlen >= len)
		return 0; /* not ours: a record without its NUL */
	reason = dom + dlen + 1;
	if ((r = strndup(reason, len - dlen - 1)) == NULL ||
	    (d = sched_dest_get(dom)) == NULL) {
		free(r);
		return 1; /* out of memory */
	}
	free(d->suspend_reason);
	d->suspend_reason = r;
	d->suspended_until_ms = until_ms;
	d->park.until_ms = until_ms;
	(*n)++;
	return 0;
}

static int
sched_state_backoff_cb(int64_t until_ms, const uint8_t *data, size_t len,
		       void *arg)
{
	struct sched_state_pause *sp;
	const char *site, *pool, *err;
	char name[2300];
	size_t slen, plen;
	unsigned *n = arg;

	if (len < 4 || data[0] == 0)
		return 0;
	site = (const char *)data + 2;
	slen = strnlen(site, len - 2);
	if (slen == 0 || 2 + slen + 1 >= len)
		return 0;
	pool = site + slen + 1;
	plen = strnlen(pool, len - 2 - slen - 1);
	if (2 + slen + 1 + plen >= len)
		return 0;
	err = pool + plen + 1;
	if ((size_t)snprintf(name, sizeof(name), "%s\n%s", site, pool) >=
	    sizeof(name))
		return 0;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return 1; /* out of memory */
	sp->until_ms = until_ms;
	sp->level = (unsigned)data[0] - 1;
	sp->suspended = data[1] == 'y';
	snprintf(sp->last_error, sizeof(sp->last_error), "%.*s",
		 (int)(len - (size_t)(err - (const char *)data)), err);
	free(htab_del(&sched->state_pending, name));
	if (htab_put(&sched->state_pending, name, sp) != 0) {
		free(sp);
		return 1;
	}
	(*n)++;
	return 0;
}

void
sched_state_load(void)
{
	unsigned nsus = 0, nbo = 0;
	uint64_t dropped = 0, more = 0;
	int64_t now = util_wall_ms();
	char err[256] = "out of memory";
	int rc;

	if (!sched->state_ready) {
		if (htab_init(&sched->state_pending) != 0) {
			log_warnx("scheduler: out of memory: suspensions and "
				  "back-offs of before the restart are lost");
			return;
		}
		sched->state_ready = true;
	}
	/* Read here, on the delivery loop before it serves anything: the
	 * messages loaded next meet their destinations' state. */
	if ((rc = queue_state_load(sched->queue, QS_SUSPEND, now,
				   sched_state_suspend_cb, &nsus, &dropped, err,
				   sizeof(err))) == 0)
		rc = queue_state_load(sched->queue, QS_BACKOFF, now,
				      sched_state_backoff_cb, &nbo, &more, err,
				      sizeof(err));
	if (rc != 0)
		log_warnx("scheduler: reading the suspensions and back-offs "
			  "kept: %s",
			  err);
	if (nsus + nbo + dropped + more > 0)
		log_info("scheduler: %u suspension(s) and %u back-off(s) kept "
			 "across the restart, %" PRIu64 " ended meanwhile",
			 nsus, nbo, dropped + more);
}

void
sched_state_free(void)
{
	struct htab_entry *e;
	size_t it;

	if (!sched->state_ready)
		return;
	for (e = htab_first(&sched->state_pending, &it); e != NULL;
	     e = htab_next(&sched->state_pending, e, &it))
		free(e->value);
	htab_free(&sched->state_pending);
	sched->state_ready = false;
}
