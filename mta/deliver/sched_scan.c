/*
 * sched_scan.c — the queue's depth and age by destination (recipient
 * domain), pool and user: every metrics.queue_scan_interval a worker reads
 * every envelope; the completion keeps the top N of each and "_other";
 * sched_metrics_cb prints them, ages at that moment.
 * Owns: the snapshot (SS), the running job.  Threads: the walk on a
 * worker, all else on the delivery loop.  Must not: read sched or its
 * configuration on the worker (a reload replaces it); keep an address.
 * Invariant: at most one scan at a time (SS.running).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mta/core/log.h"
#include "mta/core/worker.h"
#include "mta/deliver/sched_int.h"
#include "mta/observe/metrics_top.h"

/* Envelopes a read transaction reads: a long one would keep the writer
 * from reusing pages for the whole scan. */
#define SCAN_SLICE 4096

enum { SCAN_DEST, SCAN_POOL, SCAN_USER, SCAN__DIMS };

static const char *const sched_scan_dims[SCAN__DIMS] = { "destination", "pool",
							 "user" };

/* What is queued for one label value (or, in the walk, one user). */
struct sched_scan_row {
	char *label;
	uint64_t msgs, rcpts, held;
	uint64_t last_msg; /* the walk: the last message counted in msgs */
	int64_t oldest_ms; /* created_ms of the oldest; INT64_MAX none */
};

struct sched_scan_job {
	struct queue *queue;
	struct htab dom, user; /* key -> struct sched_scan_row */
	uint64_t *held;        /* ids held (the schedule index), sorted */
	size_t nheld, heldcap, hpos;
	uint64_t msgs, rcpts, nheldmsgs, corrupt;
	uint64_t next_id;  /* where the next slice starts */
	unsigned in_slice; /* envelopes read in this one */
	int rc;            /* 0 done, 1 stopped, -1 failed (err) */
	bool oom;
	char err[256];
	int64_t start_ms; /* Unix */
	double took_s;    /* wall time */
	double cpu_s;     /* the worker thread's CPU time */
};

/* The last scan, and the one running (the delivery loop's). */
static struct {
	struct sched_scan_job *running;
	int64_t last_start_ms;
	bool have; /* a scan has ended */
	struct sched_scan_row *rows[SCAN__DIMS];
	size_t nrows[SCAN__DIMS];
	uint64_t msgs, rcpts, held, corrupt;
	int64_t at_ms;
	double took_s, cpu_s;
	int stop; /* atomic: the worker reads it */
} SS;

/* Worker ------------------------------------------------------------- */

/* The row of KEY in H, made if need be; NULL: out of memory. */
static struct sched_scan_row *
sched_scan_row_get(struct htab *h, const char *key)
{
	struct sched_scan_row *r = htab_get(h, key);

	if (r != NULL)
		return r;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if (htab_put(h, key, r) != 0) {
		free(r);
		return NULL;
	}
	r->oldest_ms = INT64_MAX;
	return r;
}

/* One message counted in R (once per message: LAST_MSG). */
static void
sched_scan_row_count(struct sched_scan_row *r, const struct queue_envelope *env,
		     bool held, uint64_t rcpts)
{
	if (r->msgs == 0 || r->last_msg != env->id) {
		r->msgs++;
		r->held += held;
		r->last_msg = env->id;
		if (env->created_ms < r->oldest_ms)
			r->oldest_ms = env->created_ms;
	}
	r->rcpts += rcpts;
}

static int
sched_scan_held_cb(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct sched_scan_job *j = arg;
	uint64_t *v;

	(void)due_ms;
	if (!(flags & QUEUE_F_HELD))
		return 0;
	if (j->nheld == j->heldcap) {
		j->heldcap = j->heldcap ? 2 * j->heldcap : 64;
		if ((v = realloc(j->held, j->heldcap * sizeof(*v))) == NULL)
			return 2;
		j->held = v;
	}
	j->held[j->nheld++] = id;
	return 0;
}

static int
sched_scan_id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The user key of ENV: "d" our DSNs, "r" a relay client, "u" + name. */
static void
sched_scan_user_key(const struct queue_envelope *env, char *buf, size_t len)
{
	if (env->flags & QUEUE_F_DSN)
		snprintf(buf, len, "d");
	else if (env->user == NULL)
		snprintf(buf, len, "r");
	else
		snprintf(buf, len, "u%s", env->user);
}

static int
sched_scan_env_cb(const struct queue_envelope *env, void *arg)
{
	struct sched_scan_job *j = arg;
	struct sched_scan_row *r;
	char key[METRICS_LABEL_MAX + 1];
	uint64_t n = 0;
	uint32_t i;
	bool held;

	if (__atomic_load_n(&SS.stop, __ATOMIC_RELAXED))
		return 2;
	if (j->in_slice == SCAN_SLICE)
		return 1; /* ENV starts the next slice */
	j->in_slice++;
	j->next_id = env->id + 1;
	while (j->hpos < j->nheld && j->held[j->hpos] < env->id)
		j->hpos++;
	held = j->hpos < j->nheld && j->held[j->hpos] == env->id;
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		sched_rcpt_domain(env->rcpts[i].addr, key, sizeof(key));
		if ((r = sched_scan_row_get(&j->dom, key)) == NULL)
			return -2;
		sched_scan_row_count(r, env, held, 1);
		n++;
	}
	if (n == 0)
		return 0; /* every recipient done: being removed */
	sched_scan_user_key(env, key, sizeof(key));
	if ((r = sched_scan_row_get(&j->user, key)) == NULL)
		return -2;
	sched_scan_row_count(r, env, held, n);
	j->msgs++;
	j->rcpts += n;
	j->nheldmsgs += held;
	return 0;
}

static int
sched_scan_bad_cb(uint64_t id, const char *why, void *arg)
{
	struct sched_scan_job *j = arg;

	(void)why;
	if (j->in_slice == SCAN_SLICE)
		return 1;
	j->in_slice++;
	j->next_id = id + 1;
	j->corrupt++;
	return 0;
}

/* CLOCK's time in seconds (0 when it cannot be read). */
static double
sched_scan_clock(clockid_t clock)
{
	struct timespec ts;

	if (clock_gettime(clock, &ts) != 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The walk, on a worker: the held ids from the schedule index (no
 * decryption), then every envelope, a slice per read transaction. */
static void
sched_scan_run(void *arg)
{
	struct sched_scan_job *j = arg;
	double t0 = sched_scan_clock(CLOCK_MONOTONIC);
	double cpu0 = sched_scan_clock(CLOCK_THREAD_CPUTIME_ID);
	int rc;

	rc = queue_sched_walk(j->queue, sched_scan_held_cb, j, j->err,
			      sizeof(j->err));
	if (rc == 2)
		j->oom = true;
	if (rc == 0) {
		if (j->nheld > 1) /* none: j->held is NULL */
			qsort(j->held, j->nheld, sizeof(*j->held),
			      sched_scan_id_cmp);
		do {
			j->in_slice = 0;
			rc = queue_walk_checked(
			    j->queue, j->next_id, UINT64_MAX, sched_scan_env_cb,
			    sched_scan_bad_cb, j, j->err, sizeof(j->err));
		} while (rc == 1);
		if (rc == -2)
			j->oom = true;
	}
	if (j->oom)
		snprintf(j->err, sizeof(j->err), "out of memory");
	j->rc = rc == 0 ? 0 : rc == 2 && !j->oom ? 1 : -1;
	j->took_s = sched_scan_clock(CLOCK_MONOTONIC) - t0;
	j->cpu_s = sched_scan_clock(CLOCK_THREAD_CPUTIME_ID) - cpu0;
}

/* Delivery loop ------------------------------------------------------ */

static void
sched_scan_tab_free(struct htab *h)
{
	struct htab_entry *e;
	size_t it;

	for (e = htab_first(h, &it); e != NULL; e = htab_next(h, e, &it))
		free(e->value);
	htab_free(h);
}

static void
sched_scan_job_free(struct sched_scan_job *j)
{
	sched_scan_tab_free(&j->dom);
	sched_scan_tab_free(&j->user);
	free(j->held);
	free(j);
}

static void
sched_scan_rows_free(struct sched_scan_row *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].label);
	free(v);
}

/* Deepest first (messages, then recipients), then by label. */
static int
sched_scan_row_cmp(const void *a, const void *b)
{
	const struct sched_scan_row *x = a, *y = b;

	if (x->msgs != y->msgs)
		return x->msgs > y->msgs ? -1 : 1;
	if (x->rcpts != y->rcpts)
		return x->rcpts > y->rcpts ? -1 : 1;
	return strcmp(x->label, y->label);
}

/* H's rows (keys as labels) cut to the TOP deepest and "_other" (the
 * rest summed, its oldest the oldest of theirs) into *OUT.  0, or -1 out
 * of memory. */
static int
sched_scan_rows_top(struct htab *h, unsigned top, struct sched_scan_row **out,
		    size_t *nout)
{
	struct sched_scan_row *v = calloc(h->n + 1, sizeof(*v)), *o;
	struct htab_entry *e;
	size_t it, n = 0, i;

	if (v == NULL)
		return -1;
	for (e = htab_first(h, &it); e != NULL; e = htab_next(h, e, &it)) {
		v[n] = *(struct sched_scan_row *)e->value;
		v[n++].label = e->key; /* the table's, until strdup below */
	}
	qsort(v, n, sizeof(*v), sched_scan_row_cmp);
	if (n > top) {
		o = &v[top];
		for (i = top + 1; i < n; i++) {
			o->msgs += v[i].msgs;
			o->rcpts += v[i].rcpts;
			o->held += v[i].held;
			if (v[i].oldest_ms < o->oldest_ms)
				o->oldest_ms = v[i].oldest_ms;
		}
		o->label = METRICS_OTHER;
		n = top + 1;
	}
	for (i = 0; i < n; i++)
		if ((v[i].label = strdup(v[i].label)) == NULL) {
			sched_scan_rows_free(v, i);
			return -1;
		}
	*out = v;
	*nout = n;
	return 0;
}

/* ROW added to LABEL's row of H (users merged into their label, or into
 * their pool).  0, or -1 out of memory. */
static int
sched_scan_merge(struct htab *h, const char *label,
		 const struct sched_scan_row *row)
{
	struct sched_scan_row *r = sched_scan_row_get(h, label);

	if (r == NULL)
		return -1;
	r->msgs += row->msgs;
	r->rcpts += row->rcpts;
	r->held += row->held;
	if (row->oldest_ms < r->oldest_ms)
		r->oldest_ms = row->oldest_ms;
	return 0;
}

/* J's walk, as the snapshot's rows: users by label, pools from users by
 * the configuration now.  0, or -1 out of memory. */
static int
sched_scan_keep(struct sched_scan_job *j)
{
	const struct conf_metrics *c = &sched->conf->metrics;
	struct sched_scan_row *rows[SCAN__DIMS] = { NULL };
	size_t nrows[SCAN__DIMS] = { 0 };
	struct htab pools, users;
	struct htab_entry *e;
	size_t it;
	int rc = -1, d;

	if (htab_init(&pools) != 0)
		return -1;
	if (htab_init(&users) != 0) {
		htab_free(&pools);
		return -1;
	}
	for (e = htab_first(&j->user, &it); e != NULL;
	     e = htab_next(&j->user, e, &it)) {
		struct queue_envelope env = { .user = NULL };
		const struct conf_pool *pool;
		char label[METRICS_LABEL_MAX];

		if (e->key[0] == 'u')
			env.user = e->key + 1;
		sched_metrics_user_label(env.user, e->key[0] == 'd', label);
		pool = sched_pool_for(&env);
		if (sched_scan_merge(&users, label, e->value) != 0 ||
		    sched_scan_merge(&pools,
				     pool != NULL ? pool->name : "default",
				     e->value) != 0)
			goto done;
	}
	if (sched_scan_rows_top(&j->dom, c->top_destinations, &rows[SCAN_DEST],
				&nrows[SCAN_DEST]) != 0 ||
	    sched_scan_rows_top(&pools, c->top_destinations, &rows[SCAN_POOL],
				&nrows[SCAN_POOL]) != 0 ||
	    sched_scan_rows_top(&users, c->top_users, &rows[SCAN_USER],
				&nrows[SCAN_USER]) != 0)
		goto done;
	for (d = 0; d < SCAN__DIMS; d++) {
		sched_scan_rows_free(SS.rows[d], SS.nrows[d]);
		SS.rows[d] = rows[d];
		SS.nrows[d] = nrows[d];
		rows[d] = NULL;
		nrows[d] = 0;
	}
	rc = 0;
done:
	for (d = 0; d < SCAN__DIMS; d++)
		sched_scan_rows_free(rows[d], nrows[d]);
	sched_scan_tab_free(&pools);
	sched_scan_tab_free(&users);
	return rc;
}

static void
sched_scan_done(void *arg)
{
	struct sched_scan_job *j = arg;

	SS.running = NULL;
	if (j->rc == 1 || __atomic_load_n(&SS.stop, __ATOMIC_RELAXED))
		goto done;
	if (j->rc != 0 || sched_scan_keep(j) != 0) {
		log_warnx("metrics: queue scan: %s",
			  j->rc != 0 ? j->err : "out of memory");
		goto done;
	}
	SS.have = true;
	SS.msgs = j->msgs;
	SS.rcpts = j->rcpts;
	SS.held = j->nheldmsgs;
	SS.corrupt = j->corrupt;
	SS.at_ms = j->start_ms;
	SS.took_s = j->took_s;
	SS.cpu_s = j->cpu_s;
done:
	sched_scan_job_free(j);
}

/* Measured (t/bench/queue_scale.sh, 1M messages of 10 recipients): a scan
 * of the whole queue at start-up (every envelope read, ~2 s of a worker)
 * held the first delivery after a restart back to 6.0 s; postponed, 1.1 s. */
void
sched_scan_postpone(int64_t now_ms)
{
	if (SS.last_start_ms == 0)
		SS.last_start_ms = now_ms;
}

void
sched_scan_tick(int64_t now_ms)
{
	const struct conf_metrics *c = &sched->conf->metrics;
	struct sched_scan_job *j;

	if ((c->listen == NULL || c->queue_scan_interval_ms == 0) &&
	    SS.running == NULL && SS.have) {
		/* Turned off by a reload: no stale figures. */
		sched_scan_free();
		return;
	}

	/* The timer ticks once a second, give or take: a scan due within
	 * 100 ms of the tick starts now rather than a second late. */
	if (c->listen == NULL || c->queue_scan_interval_ms == 0 ||
	    SS.running != NULL ||
	    (SS.last_start_ms != 0 && now_ms - SS.last_start_ms + 100 <
					  (int64_t)c->queue_scan_interval_ms))
		return;
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return;
	if (htab_init(&j->dom) != 0 || htab_init(&j->user) != 0) {
		sched_scan_job_free(j);
		return;
	}
	j->queue = sched->queue;
	j->start_ms = now_ms;
	SS.last_start_ms = now_ms;
	SS.running = j;
	worker_submit(sched->loop, sched_scan_run, sched_scan_done, j);
}

/* One family of dimension D: column COL of its rows (0 messages, 1
 * recipients, 2 held, 3 the oldest's age at NOW_MS). */
static void
sched_scan_family(struct metrics_text *t, int d, int col, int64_t now_ms)
{
	static const char *const what[] = { "queued_messages",
					    "queued_recipients",
					    "held_messages",
					    "oldest_message_age_seconds" };
	static const char *const help[] = {
		"Messages with a recipient pending (held included)",
		"Recipients pending (held included)",
		"Messages held by an operator or a policy",
		"Age of the oldest of those messages",
	};
	struct metrics_gauge *v = calloc(SS.nrows[d] + 1, sizeof(*v));
	const struct sched_scan_row *r;
	char name[80], h[200];
	size_t i;

	if (v == NULL) {
		t->oom = true;
		return;
	}
	for (i = 0; i < SS.nrows[d]; i++) {
		r = &SS.rows[d][i];
		v[i].label = r->label;
		v[i].value = col == 0   ? r->msgs
			     : col == 1 ? r->rcpts
			     : col == 2 ? r->held
			     : now_ms > r->oldest_ms
				 ? (uint64_t)(now_ms - r->oldest_ms) / 1000
				 : 0;
	}
	snprintf(name, sizeof(name), "outpost_%s_%s", sched_scan_dims[d],
		 what[col]);
	snprintf(h, sizeof(h),
		 "%s, by %s, at the last queue scan; the top N by depth, "
		 "the rest under \"_other\".",
		 help[col], sched_scan_dims[d]);
	/* The rows are cut to the top N and "_other" already. */
	metrics_top_gauges(t, name, h, sched_scan_dims[d], v, SS.nrows[d],
			   (unsigned)SS.nrows[d], false);
	free(v);
}

void
sched_scan_text(struct metrics_text *t, int64_t now_ms)
{
	int d, col;

	if (!SS.have)
		return;
	for (d = 0; d < SCAN__DIMS; d++)
		for (col = 0; col < 4; col++)
			sched_scan_family(t, d, col, now_ms);
	metrics_text_printf(
	    t,
	    "# HELP outpost_queue_scan_timestamp_seconds When the last queue "
	    "scan began (Unix time).\n"
	    "# TYPE outpost_queue_scan_timestamp_seconds gauge\n"
	    "outpost_queue_scan_timestamp_seconds %" PRId64 ".%03d\n"
	    "# HELP outpost_queue_scan_duration_seconds How long it took.\n"
	    "# TYPE outpost_queue_scan_duration_seconds gauge\n"
	    "outpost_queue_scan_duration_seconds %.6f\n"
	    "# HELP outpost_queue_scan_cpu_seconds The CPU time it took.\n"
	    "# TYPE outpost_queue_scan_cpu_seconds gauge\n"
	    "outpost_queue_scan_cpu_seconds %.6f\n",
	    SS.at_ms / 1000, (int)(SS.at_ms % 1000), SS.took_s, SS.cpu_s);
	metrics_text_printf(
	    t,
	    "# HELP outpost_queue_scan_messages Messages with recipients "
	    "pending, at the last queue scan.\n"
	    "# TYPE outpost_queue_scan_messages gauge\n"
	    "outpost_queue_scan_messages %" PRIu64 "\n"
	    "# HELP outpost_queue_scan_recipients Recipients pending, at the "
	    "last queue scan.\n"
	    "# TYPE outpost_queue_scan_recipients gauge\n"
	    "outpost_queue_scan_recipients %" PRIu64 "\n"
	    "# HELP outpost_queue_scan_held_messages Of those messages, the "
	    "held ones.\n"
	    "# TYPE outpost_queue_scan_held_messages gauge\n"
	    "outpost_queue_scan_held_messages %" PRIu64 "\n"
	    "# HELP outpost_queue_scan_corrupt_records Damaged records the "
	    "last queue scan passed over.\n"
	    "# TYPE outpost_queue_scan_corrupt_records gauge\n"
	    "outpost_queue_scan_corrupt_records %" PRIu64 "\n",
	    SS.msgs, SS.rcpts, SS.held, SS.corrupt);
}

void
sched_scan_stop(void)
{
	__atomic_store_n(&SS.stop, 1, __ATOMIC_RELAXED);
}

void
sched_scan_free(void)
{
	int d;

	for (d = 0; d < SCAN__DIMS; d++)
		sched_scan_rows_free(SS.rows[d], SS.nrows[d]);
	memset(&SS, 0, sizeof(SS));
}
