/*
 * metrics_top.c — bounded-cardinality labelled counters (top N by volume,
 * the rest under "_other") and the per-user accept counters.
 *
 * Owns: each struct metrics_top (one thread's), and the one lock-free
 * table of user accept counts (any thread adds; the metrics thread reads).
 * Must not: show a label value outside the top N but as "_other"; let a
 * counter series go down; take a lock on a counting path.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/htab.h"
#include "mta/observe/evlog.h"
#include "mta/observe/metrics_top.h"

#define TOP_TRACK_MIN 256u /* label values tracked, at least */
#define TOP_LEAD_DIV  8u   /* a challenger needs a lead of 1/8, and 2 */
#define TOP_MAX       1000u

struct top_ent {
	char *label;        /* its own copy */
	uint64_t *count;    /* ncols, since tracked */
	uint64_t *reported; /* ncols, at the last selection */
	uint64_t volume;    /* sum of count */
	bool shown;         /* has a series of its own */
};

struct metrics_top {
	struct htab by_label;
	struct top_ent **v; /* every tracked entry */
	size_t n, cap;      /* cap: the tracking bound */
	unsigned ncols, top_n;
	bool evict;      /* forget the least busy near the bound */
	uint64_t *other; /* ncols: "_other" */
};

struct metrics_top *
metrics_top_new(unsigned ncols, unsigned top_n, size_t track)
{
	struct metrics_top *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->ncols = ncols;
	t->top_n = top_n < 1 ? 1 : top_n > TOP_MAX ? TOP_MAX : top_n;
	t->cap = 8u * t->top_n < TOP_TRACK_MIN ? TOP_TRACK_MIN : 8u * t->top_n;
	t->evict = track == 0;
	if (track != 0)
		t->cap = track;
	if (htab_init(&t->by_label) != 0 ||
	    (t->v = calloc(t->cap, sizeof(*t->v))) == NULL ||
	    (t->other = calloc(ncols, sizeof(*t->other))) == NULL) {
		metrics_top_free(t);
		return NULL;
	}
	return t;
}

void
metrics_top_limit(struct metrics_top *t, unsigned top_n)
{
	if (t != NULL)
		t->top_n = top_n < 1 ? 1 : top_n > TOP_MAX ? TOP_MAX : top_n;
}

static void
top_ent_free(struct top_ent *e)
{
	free(e->label);
	free(e->count);
	free(e->reported);
	free(e);
}

void
metrics_top_free(struct metrics_top *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		top_ent_free(t->v[i]);
	htab_free(&t->by_label);
	free(t->v);
	free(t->other);
	free(t);
}

/* LABEL's entry, made if need be; NULL: out of memory or room. */
static struct top_ent *
top_ent_get(struct metrics_top *t, const char *label)
{
	char cut[METRICS_LABEL_MAX];
	struct top_ent *e;

	if (strlen(label) >= sizeof(cut)) {
		memcpy(cut, label, sizeof(cut) - 1);
		cut[sizeof(cut) - 1] = '\0';
		label = cut;
	}
	if ((e = htab_get(&t->by_label, label)) != NULL)
		return e;
	if (t->n == t->cap || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->label = strdup(label);
	e->count = calloc(t->ncols, sizeof(*e->count));
	e->reported = calloc(t->ncols, sizeof(*e->reported));
	if (e->label == NULL || e->count == NULL || e->reported == NULL ||
	    htab_put(&t->by_label, label, e) != 0) {
		top_ent_free(e);
		return NULL;
	}
	t->v[t->n++] = e;
	return e;
}

void
metrics_top_add(struct metrics_top *t, const char *label, unsigned col,
		uint64_t n)
{
	struct top_ent *e;

	if (t == NULL || col >= t->ncols)
		return;
	if ((e = top_ent_get(t, label)) == NULL) {
		t->other[col] += n;
		return;
	}
	e->count[col] += n;
	e->volume += n;
}

void
metrics_top_set(struct metrics_top *t, const char *label, unsigned col,
		uint64_t v)
{
	struct top_ent *e;

	if (t == NULL || col >= t->ncols || (e = top_ent_get(t, label)) == NULL)
		return; /* its count is in "_other" by the caller's fold */
	if (v > e->count[col]) {
		e->volume += v - e->count[col];
		e->count[col] = v;
	}
}

/* Busiest first; at equal volume, the one already shown first. */
static int
top_ent_cmp(const void *a, const void *b)
{
	const struct top_ent *x = *(const struct top_ent *const *)a;
	const struct top_ent *y = *(const struct top_ent *const *)b;

	if (x->volume != y->volume)
		return x->volume > y->volume ? -1 : 1;
	return (int)y->shown - (int)x->shown;
}

void
metrics_top_select(struct metrics_top *t)
{
	size_t i, nshown = 0, lo, hi;
	unsigned c;

	if (t == NULL)
		return;
	qsort(t->v, t->n, sizeof(*t->v), top_ent_cmp);
	for (i = 0; i < t->n; i++)
		nshown += t->v[i]->shown;
	/* Fewer places (metrics_top_limit): the least busy lose theirs. */
	for (i = t->n; i > 0 && nshown > t->top_n; i--)
		if (t->v[i - 1]->shown) {
			t->v[i - 1]->shown = false;
			nshown--;
		}
	/* Free places go to the busiest not shown. */
	for (i = 0; i < t->n && nshown < t->top_n; i++)
		if (!t->v[i]->shown && t->v[i]->volume > 0) {
			t->v[i]->shown = true;
			nshown++;
		}
	/* Then the busiest not shown against the least busy shown. */
	for (;;) {
		for (hi = 0; hi < t->n && t->v[hi]->shown; hi++)
			;
		for (lo = t->n; lo > 0 && !t->v[lo - 1]->shown; lo--)
			;
		if (hi == t->n || lo == 0 || hi > lo - 1)
			break;
		if (t->v[hi]->volume <=
		    t->v[lo - 1]->volume + t->v[lo - 1]->volume / TOP_LEAD_DIV +
			1)
			break;
		t->v[hi]->shown = true;
		t->v[lo - 1]->shown = false;
		qsort(t->v, t->n, sizeof(*t->v), top_ent_cmp);
	}
	/* What the others counted since the last time: into "_other". */
	for (i = 0; i < t->n; i++) {
		struct top_ent *e = t->v[i];

		for (c = 0; c < t->ncols; c++) {
			if (!e->shown)
				t->other[c] += e->count[c] - e->reported[c];
			e->reported[c] = e->count[c];
		}
	}
	/* Near the bound: forget the least busy of those not shown (their
	 * counts are in "_other" already). */
	if (t->evict && t->n > t->cap - t->cap / 4) {
		size_t keep = 0;

		for (i = 0; i < t->n; i++) {
			struct top_ent *e = t->v[i];

			if (e->shown || keep < t->cap / 2) {
				t->v[keep++] = e;
				continue;
			}
			htab_del(&t->by_label, e->label);
			top_ent_free(e);
		}
		t->n = keep;
	}
}

int
metrics_top_forget(struct metrics_top *t, const char *label)
{
	struct top_ent *e;
	size_t i;
	unsigned c;

	if (t == NULL || (e = htab_del(&t->by_label, label)) == NULL)
		return 0;
	/* What it counted unseen still adds to "_other", which never goes
	 * down; a shown series simply ends. */
	for (c = 0; c < t->ncols && !e->shown; c++)
		t->other[c] += e->count[c] - e->reported[c];
	for (i = 0; i < t->n && t->v[i] != e; i++)
		;
	if (i < t->n)
		t->v[i] = t->v[--t->n];
	top_ent_free(e);
	return 1;
}

void
metrics_text_printf(struct metrics_text *t, const char *fmt, ...)
{
	va_list ap;
	char *nb;
	int n;

	if (t->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf != NULL ? t->buf + t->off : NULL,
		      t->buf != NULL ? t->len - t->off : 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (t->buf == NULL || (size_t)n >= t->len - t->off) {
		/* Grown by at least 8 KiB: a scrape is many small pieces. */
		if ((nb = realloc(t->buf, t->off + (size_t)n + 8192)) == NULL) {
			t->oom = true;
			return;
		}
		t->buf = nb;
		t->len = t->off + (size_t)n + 8192;
		va_start(ap, fmt);
		vsnprintf(t->buf + t->off, t->len - t->off, fmt, ap);
		va_end(ap);
	}
	t->off += (size_t)n;
}

/* LABEL escaped for a label value (\\, \", \n) into OUT. */
static const char *
top_escape(const char *label, char out[2 * METRICS_LABEL_MAX])
{
	size_t i, j = 0;

	for (i = 0; label[i] != '\0' && j + 2 < 2 * METRICS_LABEL_MAX; i++) {
		char ch = label[i];

		if (ch == '\\' || ch == '"' || ch == '\n') {
			out[j++] = '\\';
			ch = ch == '\n' ? 'n' : ch;
		}
		out[j++] = ch;
	}
	out[j] = '\0';
	return out;
}

static void
top_sample(struct metrics_text *o, const struct metrics_top_family *f,
	   const char *label, unsigned c, uint64_t v)
{
	char esc[2 * METRICS_LABEL_MAX];
	const char *col = f->cols != NULL ? f->cols[c - f->first] : NULL;

	metrics_text_printf(o, "%s{%s=\"%s\"%s%s} %" PRIu64 "\n", f->name,
			    f->label, top_escape(label, esc), col ? "," : "",
			    col ? col : "", v);
}

void
metrics_top_write(const struct metrics_top *t, struct metrics_text *o,
		  const struct metrics_top_family *f)
{
	uint64_t sum = 0;
	size_t i;
	unsigned c;

	metrics_text_printf(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
			    f->name, f->type);
	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++) {
		if (!t->v[i]->shown)
			continue;
		for (c = f->first; c < f->first + f->ncols; c++)
			top_sample(o, f, t->v[i]->label, c, t->v[i]->count[c]);
	}
	for (c = f->first; c < f->first + f->ncols; c++)
		sum += t->other[c];
	if (sum > 0)
		for (c = f->first; c < f->first + f->ncols; c++)
			top_sample(o, f, METRICS_OTHER, c, t->other[c]);
}

static int
top_gauge_cmp(const void *a, const void *b)
{
	const struct metrics_gauge *x = a, *y = b;

	if (x->value != y->value)
		return x->value > y->value ? -1 : 1;
	return strcmp(x->label, y->label);
}

void
metrics_top_gauges(struct metrics_text *o, const char *name, const char *help,
		   const char *label, struct metrics_gauge *v, size_t n,
		   unsigned top_n, bool max)
{
	char esc[2 * METRICS_LABEL_MAX];
	uint64_t rest = 0;
	size_t i;

	metrics_text_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", name, help,
			    name);
	if (n > 0) /* V may be NULL then */
		qsort(v, n, sizeof(*v), top_gauge_cmp);
	for (i = 0; i < n; i++) {
		if (i < top_n) {
			metrics_text_printf(
			    o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label,
			    top_escape(v[i].label, esc), v[i].value);
			continue;
		}
		if (max)
			rest = v[i].value > rest ? v[i].value : rest;
		else
			rest += v[i].value;
	}
	if (n > top_n)
		metrics_text_printf(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name,
				    label, METRICS_OTHER, rest);
}

/* Users ---------------------------------------------------------------- */

void
metrics_user_label(const char *user, char out[METRICS_LABEL_MAX])
{
	char hex[33];
	size_t i, n;

	if (user == NULL) {
		snprintf(out, METRICS_LABEL_MAX, "_relay");
		return;
	}
	n = strlen(user);
	for (i = 0; i < n && n <= 64 && user[0] != '_'; i++) {
		char ch = user[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-' || ch == '+'))
			break;
	}
	if (n > 0 && i == n) {
		memcpy(out, user, n + 1);
		return;
	}
	evlog_hash(user, hex);
	snprintf(out, METRICS_LABEL_MAX, "hash:%s", hex);
}

/* The accept table: open addressing, claimed once, never freed.  4096
 * label values (configured users and "_relay") is room enough. */
#define USER_SLOTS 4096u

static struct {
	struct {
		_Atomic unsigned state; /* 0 free, 1 being claimed, 2 ready */
		char label[METRICS_LABEL_MAX];
		_Atomic uint64_t count;
		_Atomic bool forget; /* purged: the view drops its series */
	} slot[USER_SLOTS];
	_Atomic uint64_t overflow; /* counted under "_other" */
	_Atomic unsigned top_n;
	struct metrics_top *view; /* the metrics thread's */
} U;

/* LABEL's first slot to probe (FNV-1a). */
static uint64_t
metrics_user_hash(const char *label)
{
	uint64_t h = 1469598103934665603u;
	const unsigned char *p;

	for (p = (const unsigned char *)label; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211u;
	return h;
}

void
metrics_user_accepted(const char *user)
{
	char label[METRICS_LABEL_MAX];
	unsigned i, k, st;
	uint64_t h;

	metrics_user_label(user, label);
	h = metrics_user_hash(label);
	for (k = 0; k < USER_SLOTS; k++) {
		i = (unsigned)(h + k) & (USER_SLOTS - 1);
		st = atomic_load_explicit(&U.slot[i].state,
					  memory_order_acquire);
		if (st == 0) {
			unsigned zero = 0;

			if (atomic_compare_exchange_strong_explicit(
				&U.slot[i].state, &zero, 1,
				memory_order_acquire, memory_order_acquire)) {
				snprintf(U.slot[i].label,
					 sizeof(U.slot[i].label), "%s", label);
				atomic_store_explicit(&U.slot[i].state, 2,
						      memory_order_release);
			}
			st = atomic_load_explicit(&U.slot[i].state,
						  memory_order_acquire);
		}
		/* Another thread is writing this label: it takes a moment. */
		while (st == 1)
			st = atomic_load_explicit(&U.slot[i].state,
						  memory_order_acquire);
		if (strncmp(U.slot[i].label, label, METRICS_LABEL_MAX - 1) ==
		    0) {
			atomic_fetch_add_explicit(&U.slot[i].count, 1,
						  memory_order_relaxed);
			return;
		}
	}
	atomic_fetch_add_explicit(&U.overflow, 1, memory_order_relaxed);
}

/*
 * The slot keeps its label (claimed once, never freed: the counting path
 * takes no lock); its count starts again from zero and the metrics
 * thread drops the series at its next text (metrics_user_accepts_text).
 */
uint64_t
metrics_user_forget(const char *user, void *arg)
{
	char label[METRICS_LABEL_MAX];
	unsigned i, k;
	uint64_t h;

	(void)arg;
	metrics_user_label(user, label);
	h = metrics_user_hash(label);
	for (k = 0; k < USER_SLOTS; k++) {
		i = (unsigned)(h + k) & (USER_SLOTS - 1);
		if (atomic_load_explicit(&U.slot[i].state,
					 memory_order_acquire) != 2)
			return 0; /* never counted (or being claimed now) */
		if (strncmp(U.slot[i].label, label, METRICS_LABEL_MAX - 1) != 0)
			continue;
		if (atomic_exchange_explicit(&U.slot[i].count, 0,
					     memory_order_relaxed) == 0)
			return 0; /* purged before, nothing counted since */
		atomic_store_explicit(&U.slot[i].forget, true,
				      memory_order_release);
		return 1;
	}
	return 0;
}

void
metrics_user_top(unsigned top_n)
{
	atomic_store_explicit(&U.top_n, top_n, memory_order_relaxed);
}

size_t
metrics_user_accepts_text(char *buf, size_t len)
{
	static const struct metrics_top_family f = {
		"outpost_user_messages_received_total",
		"Messages accepted, by AUTH user (\"_relay\": relay-network "
		"clients); the top N users, the rest under \"_other\".",
		"counter",
		"user",
		0,
		1,
		NULL,
	};
	unsigned top_n = atomic_load_explicit(&U.top_n, memory_order_relaxed);
	struct metrics_text t = { NULL, 0, 0, false };
	uint64_t v;
	size_t n;
	unsigned i;

	if (top_n == 0)
		top_n = 20;
	if (U.view == NULL &&
	    (U.view = metrics_top_new(1, top_n, USER_SLOTS)) == NULL)
		return 0;
	metrics_top_limit(U.view, top_n);
	for (i = 0; i < USER_SLOTS; i++) {
		if (atomic_load_explicit(&U.slot[i].state,
					 memory_order_acquire) != 2)
			continue;
		if (atomic_exchange_explicit(&U.slot[i].forget, false,
					     memory_order_acquire))
			(void)metrics_top_forget(U.view, U.slot[i].label);
		/* A purged user's series stays away until it counts again. */
		if ((v = atomic_load_explicit(&U.slot[i].count,
					      memory_order_relaxed)) > 0)
			metrics_top_set(U.view, U.slot[i].label, 0, v);
	}
	metrics_top_select(U.view);
	/* Past the table, or past the view's bound: "_other" only. */
	U.view->other[0] +=
	    atomic_exchange_explicit(&U.overflow, 0, memory_order_relaxed);
	metrics_top_write(U.view, &t, &f);
	n = t.oom ? 0 : t.off;
	if (n < len)
		memcpy(buf, t.buf, n);
	free(t.buf);
	return n;
}
