/*
 * watchdog.c — the watchdog (watchdog.h): the profiles by identity, what
 * each message, result and complaint adds to them, stop and release, the
 * trap list, persistence (QS_WATCHDOG records), the history store.
 * Owns: the profiles (at most watchdog.identities_max), the trap hashes,
 * a reference to the configuration in force.  Must not: block (seen
 * lookups are read transactions, writes queue ops), hold a lock over more
 * than memory, or keep an address (keyed hashes, domain hashes only).
 * Threads: any; wd.mu over everything but the recipients waiting for the
 * writer (wd.seen_mu).  The math is watchdog_sig.c's.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/observe/evlog.h"
#include "mta/observe/history.h"
#include "mta/observe/metrics_top.h"
#include "mta/observe/watchdog_int.h"

#define WD_NAME_MAX          255 /* bytes of an identity we keep */
#define WD_RECORD_HEADER     2   /* version(1) namelen(1) */
#define WD_STOP_KEEP_MS      (3650LL * WD_DAY_MS) /* a stop lasts until released */
#define WD_SEEN_FLUSH        8192 /* keys: then the pending ones go */
#define WD_SEEN_FLUSH_MS     1000 /* the oldest pending key waits no more */
#define WD_OUTCOME_DELIVERED 0    /* enum outcome_action (mta/deliver) */
#define WD_OUTCOME_BOUNCE    2

struct wd_ident {
	char name[WD_NAME_MAX + 1];
	struct wd_profile p;
};

static struct {
	pthread_mutex_t mu;
	bool open;
	atomic_bool enabled;
	const struct conf *conf; /* referenced */
	struct queue *q;
	struct htab idents;                  /* name -> struct wd_ident */
	char (*traps)[QUEUE_HASH_HEX_BYTES]; /* sorted */
	size_t ntraps;
	/* Recipients seen, not yet handed to the writer: one op a second
	 * (or WD_SEEN_FLUSH keys), sorted, instead of one per message, so
	 * that message commits do not carry scattered B-tree inserts.  Under
	 * seen_mu, not mu: its sort never holds up a MAIL check. */
	pthread_mutex_t seen_mu;
	uint8_t (*pend)[QUEUE_SEEN_KEY_BYTES];
	size_t npend, cappend;
	uint32_t pend_day;
	int64_t pend_since_ms;
	watchdog_stop_fn *stop_fn;
	watchdog_share_fn *share_fn; /* cluster: set before the loops */
	watchdog_release_fn *release_fn;
	void *stop_arg;
	atomic_uint_fast64_t stops_total;
	int64_t full_warned_ms;
} wd = { .mu = PTHREAD_MUTEX_INITIALIZER,
	 .seen_mu = PTHREAD_MUTEX_INITIALIZER };

/* A stop or release to act on once the lock is given back. */
struct wd_after {
	bool persist, stopped;
	bool remote; /* another node's stop: not shared again, no alert */
	char name[WD_NAME_MAX + 1];
	struct wd_profile p;
	int64_t keep_ms;  /* retention.history */
	uint64_t late_id; /* a message queued after its identity's stop */
	char *signals;    /* JSON, malloc'd */
	const struct conf *conf; /* referenced while acting on a stop */
};

/* Traps -------------------------------------------------------------------- */

static int
wd_trap_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool
wd_is_hex32(const char *s, size_t n)
{
	size_t i;

	if (n != QUEUE_HASH_HEX_BYTES - 1)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/*
 * Read the trap list PATH: one address, or its hash as `outpost hash`
 * prints it (32 hex digits, "hash:" allowed before them), a line; "#"
 * comments.  Addresses are hashed at once and never kept.  0 with *OUT
 * (sorted) and *N, or -1 with ERR.
 */
static int
wd_traps_load(const char *path, char (**out)[QUEUE_HASH_HEX_BYTES], size_t *n,
	      char *err, size_t errlen)
{
	char(*v)[QUEUE_HASH_HEX_BYTES] = NULL, (*nv)[QUEUE_HASH_HEX_BYTES];
	char *line = NULL, *s, *e;
	size_t cap = 0, len = 0, lcap = 0, i, j;
	FILE *f;

	*out = NULL;
	*n = 0;
	if (path == NULL)
		return 0;
	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "traps %s: %m", path);
		return -1;
	}
	while (getline(&line, &lcap, f) > 0) {
		if ((s = strchr(line, '#')) != NULL)
			*s = '\0';
		for (s = line; *s == ' ' || *s == '\t'; s++)
			;
		for (e = s + strlen(s);
		     e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
			       e[-1] == '\r');
		     e--)
			;
		*e = '\0';
		if (*s == '\0')
			continue;
		if (strncmp(s, "hash:", 5) == 0)
			s += 5;
		if (len == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				snprintf(err, errlen, "traps %s: out of memory",
					 path);
				goto fail;
			}
			v = nv;
		}
		if (wd_is_hex32(s, strlen(s))) {
			for (i = 0; s[i] != '\0'; i++)
				v[len][i] = (char)(s[i] >= 'A' && s[i] <= 'F'
						       ? s[i] - 'A' + 'a'
						       : s[i]);
			v[len][i] = '\0';
		} else
			evlog_hash(s, v[len]);
		len++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "traps %s: read error", path);
		goto fail;
	}
	fclose(f);
	free(line);
	qsort(v, len, sizeof(*v), wd_trap_cmp);
	for (i = j = 0; i < len; i++)
		if (j == 0 || strcmp(v[j - 1], v[i]) != 0)
			memmove(v[j++], v[i], sizeof(*v));
	*out = v;
	*n = j;
	return 0;
fail:
	fclose(f);
	free(line);
	free(v);
	return -1;
}

/* Trap hits among RCPTS.  wd.mu held (the list may be replaced). */
static uint32_t
wd_trap_hits(const struct queue_rcpt *rcpts, uint32_t n)
{
	char hex[QUEUE_HASH_HEX_BYTES];
	uint32_t i, hits = 0;

	for (i = 0; wd.ntraps > 0 && i < n; i++) {
		evlog_hash(rcpts[i].addr, hex);
		if (bsearch(hex, wd.traps, wd.ntraps, sizeof(*wd.traps),
			    wd_trap_cmp) != NULL)
			hits++;
	}
	return hits;
}

/* Profiles ----------------------------------------------------------------- */

/* IDENTITY's profile, made when absent (NULL past identities_max, or out
 * of memory).  wd.mu held. */
static struct wd_ident *
wd_ident_get(const char *identity, int64_t now, bool create)
{
	struct wd_ident *id;

	if ((id = htab_get(&wd.idents, identity)) != NULL || !create)
		return id;
	if (strlen(identity) > WD_NAME_MAX)
		return NULL;
	if (wd.idents.n >= wd.conf->watchdog.identities_max) {
		if (now - wd.full_warned_ms >= WD_HOUR_MS) {
			wd.full_warned_ms = now;
			log_warnx("watchdog: %zu identities watched, "
				  "watchdog.identities_max: new ones are not",
				  wd.idents.n);
		}
		return NULL;
	}
	if ((id = calloc(1, sizeof(*id))) == NULL)
		return NULL;
	snprintf(id->name, sizeof(id->name), "%s", identity);
	wd_profile_init(&id->p, now);
	if (htab_put(&wd.idents, identity, id) != 0) {
		free(id);
		return NULL;
	}
	return id;
}

/* Keep ID's profile: a sealed state record, through the writer. */
static void
wd_persist(struct queue *q, const char *name, const struct wd_profile *p,
	   int64_t keep_ms)
{
	uint8_t rec[WD_RECORD_HEADER + WD_NAME_MAX + WD_PROFILE_BYTES];
	size_t nl = strlen(name);
	int64_t now = util_wall_ms();

	rec[0] = WD_PROFILE_VERSION;
	rec[1] = (uint8_t)nl;
	memcpy(rec + WD_RECORD_HEADER, name, nl);
	memcpy(rec + WD_RECORD_HEADER + nl, p, WD_PROFILE_BYTES);
	if (queue_state_put(q, QS_WATCHDOG, name, nl,
			    p->stopped ? now + WD_STOP_KEEP_MS : now + keep_ms,
			    rec, WD_RECORD_HEADER + nl + WD_PROFILE_BYTES) != 0)
		log_warnx("watchdog: %s: profile not kept (out of memory)",
			  name);
}

static int
wd_load_cb(int64_t until_ms, const uint8_t *data, size_t len, void *arg)
{
	struct wd_ident *id;
	size_t nl;

	(void)until_ms;
	(void)arg;
	if (len < WD_RECORD_HEADER || len < WD_RECORD_HEADER + (size_t)data[1])
		return 0;
	nl = data[1];
	if ((id = calloc(1, sizeof(*id))) == NULL)
		return -1;
	memcpy(id->name, data + WD_RECORD_HEADER, nl);
	id->name[nl] = '\0';
	if (data[0] == WD_PROFILE_VERSION &&
	    len == WD_RECORD_HEADER + nl + WD_PROFILE_BYTES)
		memcpy(&id->p, data + WD_RECORD_HEADER + nl, WD_PROFILE_BYTES);
	else if (wd_profile_upgrade(data[0], data + WD_RECORD_HEADER + nl,
				    len - WD_RECORD_HEADER - nl, &id->p) != 0) {
		free(id); /* another version's: learnt again */
		return 0;
	}
	if (id->p.version != WD_PROFILE_VERSION ||
	    htab_get(&wd.idents, id->name) != NULL ||
	    htab_put(&wd.idents, id->name, id) != 0)
		free(id);
	return 0;
}

/* The signals of E as JSON text (malloc'd), or NULL. */
static char *
wd_json(const struct wd_eval *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if ((f = open_memstream(&buf, &len)) == NULL)
		return NULL;
	wd_signals_json(f, e);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* A: ID's profile to keep (its state record), once the lock is given
 * back.  wd.mu held. */
static void
wd_after_persist(struct wd_after *a, const struct wd_ident *id)
{
	a->persist = true;
	a->keep_ms = (int64_t)wd.conf->retention.history_ms;
	snprintf(a->name, sizeof(a->name), "%s", id->name);
	a->p = id->p;
}

/*
 * After a change of ID's profile (HOUR_BEFORE: its hour before it): stop
 * it when a signal trips (TRAPS: trap hits just noted), and say in A what
 * to do once the lock is given back.  wd.mu held.
 */
static void
wd_check(struct wd_ident *id, int64_t now, int64_t hour_before, uint32_t traps,
	 struct wd_after *a)
{
	const struct conf_watchdog_limits *l =
	    conf_watchdog_limits_of(wd.conf, id->name);
	struct wd_eval e;

	memset(a, 0, sizeof(*a));
	if (!id->p.stopped) {
		wd_evaluate(&id->p, now, l,
			    (int64_t)wd.conf->watchdog.learning_ms, traps, &e);
		wd_day_note(&id->p, now, &e);
		if (e.tripped != 0) {
			id->p.stopped = 1;
			id->p.stopped_ms = now;
			id->p.tripped = e.tripped;
			wd_event_add(&id->p, now, WDE_STOP, &e);
			a->stopped = true;
			a->signals = wd_json(&e);
			a->conf = conf_ref(wd.conf);
		}
	}
	if (a->stopped || id->p.hour != hour_before)
		wd_after_persist(a, id);
}

static void
wd_event_log(const char *name, const char *reason, const char *signals)
{
	struct evlog_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = EV_WATCHDOG;
	ev.user = name;
	ev.nrcpts = ev.attempt = ev.tls_verified = ev.count = -1;
	ev.queue_time_ms = -1;
	ev.reason = reason;
	ev.signals = signals;
	evlog_write(&ev);
}

/* Act on A, without the lock. */
static void
wd_after_run(struct wd_after *a)
{
	char reason[160];
	unsigned i;
	size_t off = 0;

	if (a->persist && wd.q != NULL)
		wd_persist(wd.q, a->name, &a->p, a->keep_ms);
	if (a->stopped) {
		if (!a->remote)
			atomic_fetch_add(&wd.stops_total, 1);
		off = (size_t)snprintf(reason, sizeof(reason), "stopped:");
		for (i = 0; i < WS__COUNT && off < sizeof(reason); i++)
			if (a->p.tripped & (1u << i))
				off += (size_t)snprintf(
				    reason + off, sizeof(reason) - off, " %s",
				    wd_signal_name((enum watchdog_signal)i));
		log_warnx("watchdog: %s %s: its new mail is refused (451), "
			  "its queued mail held",
			  a->name,
			  a->remote ? "stopped by another node of the cluster"
				    : reason);
		wd_event_log(a->name, reason,
			     a->signals != NULL ? a->signals : "{}");
		if (!a->remote && wd.share_fn != NULL)
			wd.share_fn(a->name, true,
				    a->signals != NULL ? a->signals : "{}");
		if (!a->remote && a->conf->watchdog.alert_command != NULL)
			wd_alert_run(
			    a->conf->watchdog.alert_command,
			    (int64_t)a->conf->watchdog.alert_timeout_ms,
			    a->name, a->signals != NULL ? a->signals : "{}");
		if (wd.stop_fn != NULL)
			wd.stop_fn(a->name,
				   a->signals != NULL ? a->signals : "{}", 0,
				   wd.stop_arg);
	}
	if (a->late_id != 0 && wd.stop_fn != NULL)
		wd.stop_fn(a->name, NULL, a->late_id, wd.stop_arg);
	free(a->signals);
	if (a->conf != NULL)
		conf_unref(a->conf);
}

static int
wd_key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_SEEN_KEY_BYTES);
}

/* Hand the pending keys to the writer (sorted: neighbouring inserts).
 * wd.seen_mu held; never blocks (a queue op). */
static void
wd_seen_flush(void)
{
	if (wd.npend == 0)
		return;
	qsort(wd.pend, wd.npend, sizeof(*wd.pend), wd_key_cmp);
	if (queue_seen_put(wd.q,
			   (const uint8_t(*)[QUEUE_SEEN_KEY_BYTES])wd.pend,
			   wd.npend, wd.pend_day) != 0)
		log_warnx("watchdog: %zu recipients not noted (out of memory)",
			  wd.npend);
	wd.npend = 0;
}

/* Note KEYS[0..N) seen on DAY. */
static void
wd_seen_add(const uint8_t (*keys)[QUEUE_SEEN_KEY_BYTES], size_t n, uint32_t day,
	    int64_t now)
{
	uint8_t(*v)[QUEUE_SEEN_KEY_BYTES];
	size_t cap;

	pthread_mutex_lock(&wd.seen_mu);
	if (wd.npend > 0 &&
	    (day != wd.pend_day || now - wd.pend_since_ms >= WD_SEEN_FLUSH_MS ||
	     wd.npend + n > WD_SEEN_FLUSH))
		wd_seen_flush();
	if (n == 0) {
		pthread_mutex_unlock(&wd.seen_mu);
		return;
	}
	if (wd.npend + n > wd.cappend) {
		cap =
		    wd.npend + n > WD_SEEN_FLUSH ? wd.npend + n : WD_SEEN_FLUSH;
		if ((v = realloc(wd.pend, cap * sizeof(*v))) == NULL) {
			pthread_mutex_unlock(&wd.seen_mu);
			log_warnx("watchdog: recipients not noted (out of "
				  "memory)");
			return;
		}
		wd.pend = v;
		wd.cappend = cap;
	}
	if (wd.npend == 0) {
		wd.pend_day = day;
		wd.pend_since_ms = now;
	}
	memcpy(wd.pend[wd.npend], keys, n * sizeof(*keys));
	wd.npend += n;
	pthread_mutex_unlock(&wd.seen_mu);
}

/* The API ------------------------------------------------------------------ */

bool
watchdog_stopped(const char *identity)
{
	struct wd_ident *id;
	bool stopped;

	if (!atomic_load(&wd.enabled) || identity == NULL)
		return false;
	pthread_mutex_lock(&wd.mu);
	id = htab_get(&wd.idents, identity);
	stopped = id != NULL && id->p.stopped;
	pthread_mutex_unlock(&wd.mu);
	return stopped;
}

/* The domain of ADDR (after its last "@"), or "". */
static const char *
wd_domain_of(const char *addr, size_t *len)
{
	const char *at = strrchr(addr, '@');
	const char *d = at != NULL ? at + 1 : "";

	*len = strlen(d);
	if (*len > 0 && d[*len - 1] == '>')
		(*len)--;
	return d;
}

void
watchdog_msg_prepare(struct watchdog_msg *m, const char *identity, uint64_t id,
		     const struct queue_rcpt *rcpts, uint32_t n)
{
	uint8_t(*keys)[QUEUE_SEEN_KEY_BYTES] = NULL, id8[QUEUE_SEEN_HALF_BYTES];
	uint32_t *days = NULL, i, k = 0;
	int64_t now = util_wall_ms();
	uint32_t today = (uint32_t)(now / WD_DAY_MS);
	const char *d;
	char err[200];
	size_t dl;

	memset(m, 0, sizeof(*m));
	if (!atomic_load(&wd.enabled) || identity == NULL || n == 0)
		return;
	if ((keys = malloc(n * sizeof(*keys))) == NULL ||
	    (days = malloc(n * sizeof(*days))) == NULL ||
	    (m->doms = malloc(n * sizeof(*m->doms))) == NULL)
		goto fail;
	queue_seen_identity(wd.q, identity, id8);
	for (i = 0; i < n; i++) {
		queue_seen_key(wd.q, id8, rcpts[i].addr, keys[i]);
		d = wd_domain_of(rcpts[i].addr, &dl);
		m->doms[i] = wd_domain_hash(d, dl);
	}
	if (queue_seen_get(wd.q, (const uint8_t(*)[QUEUE_SEEN_KEY_BYTES])keys,
			   n, days, err, sizeof(err)) != 0) {
		log_warnx("watchdog: %s", err);
		goto fail; /* no verdict without the history */
	}
	for (i = 0; i < n; i++) {
		if (days[i] == 0)
			m->nnew++;
		/* Only what changes is written: once a day a recipient. */
		if (days[i] != today)
			memmove(keys[k++], keys[i], sizeof(*keys));
	}
	wd_seen_add((const uint8_t(*)[QUEUE_SEEN_KEY_BYTES])keys, k, today,
		    now);
	pthread_mutex_lock(&wd.mu);
	m->traps = wd_trap_hits(rcpts, n);
	pthread_mutex_unlock(&wd.mu);
	m->identity = identity;
	m->id = id;
	m->n = n;
	m->now_ms = now;
	free(keys);
	free(days);
	return;
fail:
	free(keys);
	free(days);
	free(m->doms);
	m->doms = NULL;
}

void
watchdog_msg_note(struct watchdog_msg *m)
{
	struct wd_after a;
	struct wd_ident *id;
	int64_t hour_before;
	bool late;

	if (m->identity == NULL)
		goto done;
	pthread_mutex_lock(&wd.mu);
	if ((id = wd_ident_get(m->identity, m->now_ms, true)) == NULL) {
		pthread_mutex_unlock(&wd.mu);
		goto done;
	}
	hour_before = id->p.hour;
	late = id->p.stopped != 0;
	wd_note_message(&id->p, m->now_ms, m->n, m->nnew, m->doms);
	id->p.trap_hits += m->traps;
	wd_check(id, m->now_ms, hour_before, m->traps, &a);
	if (late) {
		a.late_id = m->id;
		snprintf(a.name, sizeof(a.name), "%s", id->name);
	}
	pthread_mutex_unlock(&wd.mu);
	wd_after_run(&a);
done:
	free(m->doms);
	memset(m, 0, sizeof(*m));
}

/* N results of IDENTITY, all hard bounces (HARD) or none, noted at once. */
static void
wd_note_results(const char *identity, bool hard, uint32_t n)
{
	int64_t now = util_wall_ms(), hour_before;
	struct wd_ident *id;
	struct wd_after a;

	pthread_mutex_lock(&wd.mu);
	if ((id = wd_ident_get(identity, now, true)) == NULL) {
		pthread_mutex_unlock(&wd.mu);
		return;
	}
	hour_before = id->p.hour;
	while (n-- > 0)
		wd_note_result(&id->p, now, hard,
			       (uint32_t)wd.conf->watchdog.bounce_window);
	wd_check(id, now, hour_before, 0, &a);
	pthread_mutex_unlock(&wd.mu);
	wd_after_run(&a);
}

/* A delivery loop's results of its turn, in order, noted at its end: a
 * run of one identity's under one lock of wd.mu, which acceptance takes
 * for every message, rather than one lock each.  The loop thread's own. */
#define WD_STAGE_MAX 16
struct wd_stage {
	struct loop_turn turn;
	unsigned n;
	struct wd_staged {
		char identity[WD_NAME_MAX + 1];
		bool hard;
		uint32_t n;
	} e[WD_STAGE_MAX];
};
static _Thread_local struct wd_stage *wd_stage;

static void
wd_stage_flush(void *arg)
{
	struct wd_stage *st = arg;
	unsigned i, n = st->n;

	st->n = 0;
	for (i = 0; i < n; i++)
		wd_note_results(st->e[i].identity, st->e[i].hard, st->e[i].n);
}

void
watchdog_stage_end(void)
{
	if (wd_stage == NULL)
		return;
	loop_turn_cancel(&wd_stage->turn);
	wd_stage_flush(wd_stage);
	free(wd_stage);
	wd_stage = NULL;
}

void
watchdog_note_result(const char *identity, const char *rcpt, int action,
		     enum conf_bounce_category category)
{
	struct wd_stage *st = wd_stage;
	struct wd_staged *e;
	bool hard;

	(void)rcpt;
	if (!atomic_load(&wd.enabled) || identity == NULL ||
	    (action != WD_OUTCOME_DELIVERED && action != WD_OUTCOME_BOUNCE))
		return;
	hard = action == WD_OUTCOME_BOUNCE &&
	       (category == CONF_BC_BAD_MAILBOX ||
		category == CONF_BC_BAD_DOMAIN ||
		category == CONF_BC_INACTIVE_MAILBOX);
	if (st == NULL && loop_current() != NULL &&
	    (st = calloc(1, sizeof(*st))) != NULL) {
		st->turn.fn = wd_stage_flush;
		st->turn.arg = st;
		wd_stage = st;
	}
	if (st == NULL || strlen(identity) > WD_NAME_MAX) {
		wd_note_results(identity, hard, 1); /* not on a loop */
		return;
	}
	if (st->n > 0) {
		e = &st->e[st->n - 1];
		if (e->hard == hard && e->n < UINT32_MAX &&
		    strcmp(e->identity, identity) == 0) {
			e->n++;
			return;
		}
	}
	if (st->n == WD_STAGE_MAX)
		wd_stage_flush(st);
	e = &st->e[st->n++];
	snprintf(e->identity, sizeof(e->identity), "%s", identity);
	e->hard = hard;
	e->n = 1;
	if (!loop_turn_end(&st->turn))
		wd_stage_flush(st); /* its loop has ended */
}

/* One event of IDENTITY that NOTE adds to its profile; may stop it. */
static void
wd_note_event(const char *identity,
	      void (*note)(struct wd_profile *p, int64_t now_ms))
{
	int64_t now = util_wall_ms(), hour_before;
	struct wd_ident *id;
	struct wd_after a;

	if (!atomic_load(&wd.enabled) || identity == NULL)
		return;
	pthread_mutex_lock(&wd.mu);
	if ((id = wd_ident_get(identity, now, true)) == NULL) {
		pthread_mutex_unlock(&wd.mu);
		return;
	}
	hour_before = id->p.hour;
	note(&id->p, now);
	wd_check(id, now, hour_before, 0, &a);
	pthread_mutex_unlock(&wd.mu);
	wd_after_run(&a);
}

void
watchdog_note_complaint(const char *identity, const char *rcpt)
{
	(void)rcpt;
	wd_note_event(identity, wd_note_complaint);
}

void
watchdog_note_infected(const char *identity)
{
	wd_note_event(identity, wd_note_infected);
}

void
watchdog_stop_hook(watchdog_stop_fn *fn, void *arg)
{
	wd.stop_fn = fn;
	wd.stop_arg = arg;
}

int
watchdog_release(const char *identity, bool learn)
{
	int64_t now = util_wall_ms();
	struct wd_ident *id;
	struct wd_after a;
	struct wd_eval e;
	int rc;

	memset(&a, 0, sizeof(a));
	pthread_mutex_lock(&wd.mu);
	if ((id = htab_get(&wd.idents, identity)) == NULL) {
		pthread_mutex_unlock(&wd.mu);
		return -1;
	}
	rc = id->p.stopped ? 0 : 1;
	wd_profile_roll(&id->p, now);
	wd_evaluate(&id->p, now, conf_watchdog_limits_of(wd.conf, id->name),
		    (int64_t)wd.conf->watchdog.learning_ms, 0, &e);
	id->p.stopped = 0;
	id->p.tripped = 0;
	if (learn)
		wd_learn(&id->p);
	else
		wd_reset_windows(&id->p);
	wd_event_add(&id->p, now, learn ? WDE_LEARN : WDE_RELEASE, &e);
	wd_after_persist(&a, id);
	a.signals = wd_json(&e);
	pthread_mutex_unlock(&wd.mu);
	wd_event_log(a.name, learn ? "released, pattern learnt" : "released",
		     a.signals);
	log_info("watchdog: %s released%s", a.name,
		 learn ? "; its current pattern is its baseline now" : "");
	wd_after_run(&a);
	if (rc == 0 && wd.share_fn != NULL)
		wd.share_fn(a.name, false, NULL);
	return rc;
}

void
watchdog_share_hook(watchdog_share_fn *share)
{
	wd.share_fn = share;
}

void
watchdog_release_hook(watchdog_release_fn *release)
{
	wd.release_fn = release;
}

void
watchdog_remote(const char *identity, bool stopped, const char *signals)
{
	int64_t now = util_wall_ms();
	struct wd_ident *id;
	struct wd_after a;
	struct wd_eval e;
	bool was;

	memset(&a, 0, sizeof(a));
	pthread_mutex_lock(&wd.mu);
	if (!wd.open || (id = wd_ident_get(identity, now, stopped)) == NULL) {
		pthread_mutex_unlock(&wd.mu);
		return; /* released: nothing stopped here to release */
	}
	was = id->p.stopped != 0;
	if (stopped == was) {
		pthread_mutex_unlock(&wd.mu);
		return;
	}
	memset(&e, 0, sizeof(e));
	if (stopped) {
		id->p.stopped = 1;
		id->p.stopped_ms = now;
		wd_event_add(&id->p, now, WDE_STOP, &e);
		a.stopped = true;
		a.remote = true;
		a.signals = strdup(signals != NULL ? signals : "{}");
		a.conf = conf_ref(wd.conf);
	} else {
		id->p.stopped = 0;
		id->p.tripped = 0;
		wd_reset_windows(&id->p);
		wd_event_add(&id->p, now, WDE_RELEASE, &e);
	}
	wd_after_persist(&a, id);
	pthread_mutex_unlock(&wd.mu);
	if (!stopped) {
		wd_event_log(a.name, "released by another node of the cluster",
			     "{}");
		log_info("watchdog: %s released by another node of the cluster",
			 a.name);
	}
	wd_after_run(&a);
	if (!stopped && wd.release_fn != NULL)
		wd.release_fn(a.name);
}

char *
watchdog_report(const char *identity, bool history, bool json, size_t *len,
		size_t *count)
{
	int64_t now = util_wall_ms();
	struct wd_ident *id;
	struct htab_entry *he;
	struct wd_profile p;
	struct wd_eval e;
	char *buf = NULL;
	size_t i;
	FILE *f;

	*len = 0;
	*count = 0;
	if ((f = open_memstream(&buf, len)) == NULL)
		return NULL;
	pthread_mutex_lock(&wd.mu);
	for (he = htab_first(&wd.idents, &i); he != NULL;
	     he = htab_next(&wd.idents, he, &i)) {
		id = he->value;
		if (identity != NULL && strcmp(identity, id->name) != 0)
			continue;
		/* A copy rolled to now: a report changes nothing. */
		p = id->p;
		wd_profile_roll(&p, now);
		wd_evaluate(&p, now, conf_watchdog_limits_of(wd.conf, id->name),
			    (int64_t)wd.conf->watchdog.learning_ms, 0, &e);
		if (history)
			wd_report_history(f, id->name, &p, json);
		else
			wd_report_status(f, id->name, &p, &e, json,
					 *count == 0);
		(*count)++;
	}
	pthread_mutex_unlock(&wd.mu);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Prometheus label value: backslash, quote and newline escaped. */
static size_t
wd_label_put(char *out, size_t size, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 3 < size; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			out[n++] = '\\';
			out[n++] = *s == '\n' ? 'n' : *s;
		} else
			out[n++] = *s;
	}
	out[n] = '\0';
	return n;
}

size_t
watchdog_metrics_text(char *buf, size_t len)
{
	struct htab_entry *he;
	struct wd_ident *id;
	char label[2 * WD_NAME_MAX + 1];
	size_t off = 0, i, shown = 0, other = 0;
	int n;

#define WD_CAT(...)                                                            \
	do {                                                                   \
		n = snprintf(buf + (off < len ? off : len),                    \
			     off < len ? len - off : 0, __VA_ARGS__);          \
		if (n > 0)                                                     \
			off += (size_t)n;                                      \
	} while (0)
	WD_CAT("# HELP outpost_watchdog_stops_total Sending identities "
	       "stopped by the watchdog.\n"
	       "# TYPE outpost_watchdog_stops_total counter\n"
	       "outpost_watchdog_stops_total %llu\n",
	       (unsigned long long)atomic_load(&wd.stops_total));
	WD_CAT("# HELP outpost_watchdog_stopped Whether the watchdog holds "
	       "this identity stopped (1).\n"
	       "# TYPE outpost_watchdog_stopped gauge\n");
	pthread_mutex_lock(&wd.mu);
	for (he = htab_first(&wd.idents, &i); he != NULL;
	     he = htab_next(&wd.idents, he, &i)) {
		id = he->value;
		if (!id->p.stopped)
			continue;
		if (shown == WATCHDOG_METRICS_TOP) {
			other++;
			continue;
		}
		wd_label_put(label, sizeof(label), id->name);
		WD_CAT("outpost_watchdog_stopped{identity=\"%s\"} 1\n", label);
		shown++;
	}
	pthread_mutex_unlock(&wd.mu);
	if (other > 0)
		WD_CAT("outpost_watchdog_stopped{identity=\"" METRICS_OTHER
		       "\"} %zu\n",
		       other);
#undef WD_CAT
	return off;
}

/* History store ------------------------------------------------------------ */

static uint64_t
wd_purge_user(const char *user, void *arg)
{
	uint8_t id8[QUEUE_SEEN_HALF_BYTES];
	struct wd_ident *id;
	uint64_t removed = 0;
	char err[200];

	(void)arg;
	pthread_mutex_lock(&wd.seen_mu);
	wd_seen_flush(); /* before the purge's ops: none comes after */
	pthread_mutex_unlock(&wd.seen_mu);
	pthread_mutex_lock(&wd.mu);
	if ((id = htab_del(&wd.idents, user)) != NULL) {
		free(id);
		removed++;
		/* Every profile kept is in memory (loaded at start). */
		(void)queue_state_del(wd.q, QS_WATCHDOG, user, strlen(user));
	}
	pthread_mutex_unlock(&wd.mu);
	queue_seen_identity(wd.q, user, id8);
	if (queue_seen_purge(wd.q, id8, &removed, err, sizeof(err)) != 0)
		log_warnx("watchdog: purge of %s: %s", user, err);
	return removed;
}

static uint64_t
wd_expire(int64_t older_than_ms, void *arg)
{
	struct htab_entry *he, *next;
	struct wd_ident *id;
	uint64_t removed = 0, n = 0;
	char err[200];
	size_t i;

	(void)arg;
	if (queue_seen_expire(wd.q, (uint32_t)(older_than_ms / WD_DAY_MS),
			      &removed, err, sizeof(err)) != 0)
		log_warnx("watchdog: expiring the recipient history: %s", err);
	/* Profiles idle since then go too (never a stopped one). */
	pthread_mutex_lock(&wd.mu);
	for (he = htab_first(&wd.idents, &i); he != NULL; he = next) {
		next = htab_next(&wd.idents, he, &i);
		id = he->value;
		if (id->p.stopped || id->p.last_ms >= older_than_ms)
			continue;
		(void)queue_state_del(wd.q, QS_WATCHDOG, id->name,
				      strlen(id->name));
		free(htab_del(&wd.idents, id->name));
		n++;
	}
	pthread_mutex_unlock(&wd.mu);
	return removed + n;
}

/* Start and stop ----------------------------------------------------------- */

int
watchdog_open(const struct conf *c, struct queue *q, char *err, size_t errlen)
{
	static const struct history_store store = { "watchdog", wd_purge_user,
						    wd_expire, NULL };
	char(*traps)[QUEUE_HASH_HEX_BYTES];
	uint64_t dropped = 0;
	size_t ntraps;

	if (wd_traps_load(c->watchdog.traps, &traps, &ntraps, err, errlen) != 0)
		return -1;
	if (htab_init(&wd.idents) != 0) {
		free(traps);
		snprintf(err, errlen, "watchdog: out of memory");
		return -1;
	}
	wd.q = q;
	wd.conf = conf_ref(c);
	wd.traps = traps;
	wd.ntraps = ntraps;
	wd.open = true;
	if (queue_state_load(q, QS_WATCHDOG, util_wall_ms(), wd_load_cb, NULL,
			     &dropped, err, errlen) != 0)
		log_warnx("watchdog: profiles kept before: %s", err);
	atomic_store(&wd.enabled, c->watchdog.enabled);
	if (history_register(&store) != 0) {
		snprintf(err, errlen, "watchdog: too many history stores");
		return -1;
	}
	if (c->watchdog.enabled)
		log_info("watchdog: %zu profile(s), %zu trap(s)", wd.idents.n,
			 ntraps);
	return 0;
}

void
watchdog_reconf(const struct conf *c)
{
	char(*traps)[QUEUE_HASH_HEX_BYTES], (*old)[QUEUE_HASH_HEX_BYTES];
	const struct conf *oldc;
	size_t ntraps;
	char err[300];
	bool keep = false;

	if (!wd.open)
		return;
	if (wd_traps_load(c->watchdog.traps, &traps, &ntraps, err,
			  sizeof(err)) != 0) {
		log_warnx("watchdog: %s; the trap list loaded before stays",
			  err);
		keep = true;
	}
	pthread_mutex_lock(&wd.mu);
	oldc = wd.conf;
	wd.conf = conf_ref(c);
	old = keep ? NULL : wd.traps;
	if (!keep) {
		wd.traps = traps;
		wd.ntraps = ntraps;
	}
	pthread_mutex_unlock(&wd.mu);
	atomic_store(&wd.enabled, c->watchdog.enabled);
	free(old);
	conf_unref(oldc);
}

void
watchdog_close(void)
{
	struct htab_entry *he;
	struct wd_ident *id;
	size_t i;

	if (!wd.open)
		return;
	wd_alert_stop();
	pthread_mutex_lock(&wd.seen_mu);
	wd_seen_flush();
	free(wd.pend);
	wd.pend = NULL;
	wd.cappend = 0;
	pthread_mutex_unlock(&wd.seen_mu);
	pthread_mutex_lock(&wd.mu);
	for (he = htab_first(&wd.idents, &i); he != NULL;
	     he = htab_next(&wd.idents, he, &i)) {
		id = he->value;
		wd_persist(wd.q, id->name, &id->p,
			   (int64_t)wd.conf->retention.history_ms);
		free(id);
	}
	htab_free(&wd.idents);
	free(wd.traps);
	wd.traps = NULL;
	wd.ntraps = 0;
	conf_unref(wd.conf);
	wd.conf = NULL;
	wd.open = false;
	atomic_store(&wd.enabled, false);
	pthread_mutex_unlock(&wd.mu);
}
