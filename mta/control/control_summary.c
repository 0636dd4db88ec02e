/*
 * control_summary.c — the `queue summary` view (control_int.h): one line
 * per recipient domain with pending recipients (and per suspended
 * destination), the totals, and the corrupt records met, by id.
 * Threads: the view's thread, and up to CV_SUMMARY_THREADS walking slices
 * of the queue at once, each in its own read transaction.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/control/control_int.h"
#include "mta/core/htab.h"
#include "mta/core/json.h"
#include "mta/deliver/delivery.h"
#include "mta/deliver/outcome.h"
#include "mta/core/util.h"

#define CV_SUMMARY_THREADS    8     /* at most */
#define CV_SUMMARY_PER_THREAD 20000 /* messages, before a second thread */
#define CV_CORRUPT_SHOWN_MAX  1000  /* ids of corrupt records in a summary */

/* queue summary --------------------------------------------------------- */

/* One recipient domain's line. */
struct cv_sum {
	char *domain;
	uint64_t msgs, rcpts, deferred, held;
	uint64_t untried;    /* pending, not held, never attempted */
	uint64_t last_msg;   /* the last message counted in msgs */
	int64_t oldest_ms;   /* created_ms of the oldest; INT64_MAX none */
	int64_t err_at_ms;   /* when the last error came (estimated) */
	unsigned err_code;   /* its reply code, 0 = none */
	char err_status[12]; /* its enhanced status, "" = none */
	char err_text[64];   /* no reply (code 0): our own text of why */
	bool has_err;
	int64_t susp_until_ms; /* 0: not suspended */
	char *susp_reason;
};

/* Domain -> struct cv_sum (owned by the table's user: cv_sum_tab_free). */
struct cv_sum_tab {
	struct htab h;
	bool ready; /* h initialised */
};

/* One thread's share of the walk: envelopes with ids [first, last]. */
struct cv_sum_part {
	const struct cv *c;
	const struct cv_sched_index *idx;
	size_t pos; /* cursor into idx */
	uint64_t first, last;
	struct cv_sum_tab tab;
	uint64_t msgs, rcpts, deferred, held;
	int rc;
	char err[512];
	uint64_t nbad; /* corrupt records met */
	uint64_t *bad; /* the first CV_CORRUPT_SHOWN_MAX of their ids */
	pthread_t thread;
};

/* The entry of DOMAIN, made if need be; NULL: out of memory. */
static struct cv_sum *
cv_sum_get(struct cv_sum_tab *t, const char *domain)
{
	struct cv_sum *e;

	if (!t->ready) {
		if (htab_init(&t->h) != 0)
			return NULL;
		t->ready = true;
	}
	if ((e = htab_get(&t->h, domain)) != NULL)
		return e;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if ((e->domain = strdup(domain)) == NULL ||
	    htab_put(&t->h, domain, e) != 0) {
		free(e->domain);
		free(e);
		return NULL;
	}
	e->oldest_ms = INT64_MAX;
	return e;
}

static void
cv_sum_tab_free(struct cv_sum_tab *t)
{
	struct htab_entry *e;
	size_t it;

	if (!t->ready)
		return;
	for (e = htab_first(&t->h, &it); e != NULL;
	     e = htab_next(&t->h, e, &it)) {
		struct cv_sum *v = e->value;

		free(v->domain);
		free(v->susp_reason);
		free(v);
	}
	htab_free(&t->h);
	t->ready = false;
}

/* A failure without a reply ("connect: Connection refused"): the text is
 * ours, not the remote's, so it can be shown; printable ASCII only. */
static void
cv_sum_err_text(struct cv_sum *s, const struct queue_rcpt *r)
{
	const char *t = r->last_reply != NULL ? r->last_reply : "";
	size_t i;

	s->err_text[0] = '\0';
	if (r->last_code != 0)
		return;
	for (i = 0; t[i] != '\0' && i + 1 < sizeof(s->err_text); i++)
		s->err_text[i] =
		    (unsigned char)t[i] < 0x20 || (unsigned char)t[i] > 0x7e
			? '?'
			: t[i];
	s->err_text[i] = '\0';
}

static int
cv_sum_cb(const struct queue_envelope *env, void *arg)
{
	struct cv_sum_part *p = arg;
	const struct cv_sched *e = NULL;
	struct cv_sum *s;
	char dom[CV_DOMAIN_MAX + 1];
	int64_t due, at;
	bool held, any = false;
	uint32_t i;
	int code;

	while (p->pos < p->idx->n && p->idx->v[p->pos].id < env->id)
		p->pos++;
	if (p->pos < p->idx->n && p->idx->v[p->pos].id == env->id)
		e = &p->idx->v[p->pos];
	if (cv_stopped(p->c))
		return 1;
	cv_env_state(env, e, &held, &due);
	for (i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];

		if (r->state != QR_PENDING)
			continue;
		cv_domain_of(r->addr, dom, sizeof(dom));
		if ((s = cv_sum_get(&p->tab, dom)) == NULL)
			return -2;
		any = true;
		if (s->last_msg != env->id || s->msgs == 0) {
			s->msgs++;
			s->last_msg = env->id;
		}
		s->rcpts++;
		p->rcpts++;
		if (held) {
			s->held++;
			p->held++;
		}
		if (r->attempts > 0) {
			s->deferred++;
			p->deferred++;
		} else if (!held)
			s->untried++;
		if (env->created_ms < s->oldest_ms)
			s->oldest_ms = env->created_ms;
		if (r->last_code == 0 && r->last_reply == NULL)
			continue; /* never tried yet */
		at = r->attempts == 0
			 ? due
			 : due - (int64_t)sched_retry_interval_ms(
				     &p->c->conf->delivery, r->attempts);
		if (!s->has_err || at > s->err_at_ms) {
			s->has_err = true;
			s->err_at_ms = at;
			s->err_code = r->last_code;
			/* Code 0 is no reply: the text is ours, its status of
			 * class 4 (as outcome_classify reads it). */
			code = r->last_code != 0 ? r->last_code : 400;
			if (!outcome_enhanced(code, r->last_reply,
					      s->err_status))
				s->err_status[0] = '\0';
			cv_sum_err_text(s, r);
		}
	}
	if (any)
		p->msgs++;
	return 0;
}

/* A corrupt record: counted and named, not summed; the walk goes on. */
static int
cv_sum_bad(uint64_t id, const char *why, void *arg)
{
	struct cv_sum_part *p = arg;

	(void)why;
	if (cv_stopped(p->c))
		return 1;
	if (p->bad == NULL &&
	    (p->bad = calloc(CV_CORRUPT_SHOWN_MAX, sizeof(*p->bad))) == NULL)
		return -2;
	if (p->nbad < CV_CORRUPT_SHOWN_MAX)
		p->bad[p->nbad] = id;
	p->nbad++;
	return 0;
}

static void *
cv_sum_thread(void *arg)
{
	struct cv_sum_part *p = arg;

	p->rc = queue_walk_checked(p->c->queue, p->first, p->last, cv_sum_cb,
				   cv_sum_bad, p, p->err, sizeof(p->err));
	if (p->rc == -2)
		snprintf(p->err, sizeof(p->err), "out of memory");
	return NULL;
}

/* Fold FROM into TO. */
static int
cv_sum_merge(struct cv_sum_tab *to, const struct cv_sum_tab *from)
{
	struct htab_entry *e;
	struct cv_sum *d;
	size_t it;

	if (!from->ready)
		return 0;
	for (e = htab_first(&from->h, &it); e != NULL;
	     e = htab_next(&from->h, e, &it)) {
		const struct cv_sum *s = e->value;

		if ((d = cv_sum_get(to, s->domain)) == NULL)
			return -1;
		/* A message split between two parts is counted in both
		 * only if it were in both ranges: ranges do not overlap. */
		d->msgs += s->msgs;
		d->rcpts += s->rcpts;
		d->deferred += s->deferred;
		d->untried += s->untried;
		d->held += s->held;
		if (s->oldest_ms < d->oldest_ms)
			d->oldest_ms = s->oldest_ms;
		if (s->has_err &&
		    (!d->has_err || s->err_at_ms > d->err_at_ms)) {
			d->has_err = true;
			d->err_at_ms = s->err_at_ms;
			d->err_code = s->err_code;
			memcpy(d->err_status, s->err_status,
			       sizeof(d->err_status));
			memcpy(d->err_text, s->err_text, sizeof(d->err_text));
		}
	}
	return 0;
}

/*
 * Walk the queue in NPARTS slices at once, each with its own read
 * transaction (decrypting every envelope is what costs).  Slices split
 * the schedule index's ids evenly; the first and last reach to the ends of
 * the id space, so a message the index does not know yet is still seen.
 */
static int
cv_sum_walk(struct cv *c, const struct cv_sched_index *idx,
	    struct cv_sum_part *parts, unsigned nparts)
{
	unsigned k, started = 0;
	int rc = 0;

	for (k = 0; k < nparts; k++) {
		size_t lo = idx->n * k / nparts, hi = idx->n * (k + 1) / nparts;

		parts[k].c = c;
		parts[k].idx = idx;
		parts[k].pos = lo;
		parts[k].first = k == 0 ? 0 : idx->v[lo].id;
		parts[k].last =
		    k + 1 == nparts ? UINT64_MAX : idx->v[hi].id - 1;
	}
	for (k = 1; k < nparts; k++) {
		if (pthread_create(&parts[k].thread, NULL, cv_sum_thread,
				   &parts[k]) != 0)
			break;
		started++;
	}
	cv_sum_thread(&parts[0]);
	/* Threads that could not start: their slices run here. */
	for (k = started + 1; k < nparts; k++)
		cv_sum_thread(&parts[k]);
	for (k = 1; k <= started; k++)
		pthread_join(parts[k].thread, NULL);
	for (k = 0; k < nparts; k++)
		if (parts[k].rc != 0) {
			cv_errx(c, "queue summary: %s",
				parts[k].err[0] != '\0' ? parts[k].err
							: "walk failed");
			rc = -1;
		}
	return rc;
}

/* The scheduler's suspensions (read on the loop by control_query.c), each
 * onto its domain's line.  -1: out of memory. */
static int
cv_sum_suspensions(struct cv *c, struct cv_sum_tab *t)
{
	struct cv_sum *s;
	char *line, *save = NULL, *dom, *until, *reason, *end, *q;

	if (c->v->suspensions == NULL)
		return 0;
	for (line = strtok_r(c->v->suspensions, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		for (q = line; *q != '\0'; q++)
			if ((unsigned char)*q < 0x20 ||
			    (unsigned char)*q > 0x7e)
				*q = '?';
		dom = line;
		if ((until = strchr(dom, ' ')) == NULL)
			continue;
		*until++ = '\0';
		reason = strchr(until, ' ');
		if (reason != NULL)
			*reason++ = '\0';
		if ((s = cv_sum_get(t, dom)) == NULL)
			return -1;
		s->susp_until_ms = strtoll(until, &end, 10);
		free(s->susp_reason);
		if ((s->susp_reason = strdup(reason != NULL ? reason : "")) ==
		    NULL)
			return -1;
	}
	return 0;
}

/* The corrupt records' ids (a JSON line, or a note under the table). */
static void
cv_sum_print_bad(struct cv *c, const struct cv_sum_part *parts, unsigned nparts)
{
	char hex[QUEUE_ID_HEX_BYTES];
	uint64_t total = 0, j, shown = 0;
	unsigned k;

	for (k = 0; k < nparts; k++)
		total += parts[k].nbad;
	if (total == 0)
		return;
	fputs(c->json ? "{\"corrupt\":["
		      : "corrupt records (not counted "
			"above; outpost queue delete ID "
			"removes one):",
	      c->f);
	for (k = 0; k < nparts; k++)
		for (j = 0; j < parts[k].nbad && j < CV_CORRUPT_SHOWN_MAX &&
			    shown < CV_CORRUPT_SHOWN_MAX;
		     j++, shown++) {
			queue_id_format(parts[k].bad[j], hex);
			fprintf(c->f, c->json ? "%s\"%s\"" : "%s%s",
				c->json ? (shown > 0 ? "," : "") : " ", hex);
		}
	if (c->json)
		fprintf(c->f, "],\"corrupt_count\":%" PRIu64 "}\n", total);
	else if (total > shown)
		fprintf(c->f, " … (%" PRIu64 " in all)\n", total);
	else
		fputc('\n', c->f);
}

static int
cv_sum_cmp(const void *a, const void *b)
{
	const struct cv_sum *x = *(const struct cv_sum *const *)a;
	const struct cv_sum *y = *(const struct cv_sum *const *)b;

	if (x->rcpts != y->rcpts)
		return x->rcpts > y->rcpts ? -1 : 1;
	return strcmp(x->domain, y->domain);
}

static void
cv_sum_print_json(FILE *f, const struct cv_sum *s, int64_t now)
{
	struct cv_json j, o;

	cv_json_begin(&j, f);
	cv_json_str(&j, "domain", s->domain);
	cv_json_u64(&j, "messages", s->msgs);
	cv_json_u64(&j, "recipients", s->rcpts);
	cv_json_u64(&j, "deferred", s->deferred);
	cv_json_u64(&j, "held", s->held);
	if (s->oldest_ms != INT64_MAX) {
		cv_json_i64(&j, "oldest_ms", s->oldest_ms);
		cv_json_i64(&j, "oldest_age_s",
			    now > s->oldest_ms ? (now - s->oldest_ms) / 1000
					       : 0);
	}
	if (s->has_err) {
		cv_json_key(&j, "last_error");
		cv_json_begin(&o, f);
		cv_json_u64(&o, "code", s->err_code);
		cv_json_str(&o, "status",
			    s->err_status[0] != '\0' ? s->err_status : NULL);
		if (s->err_code == 0 && s->err_text[0] != '\0')
			cv_json_str(&o, "text", s->err_text);
		cv_json_end(&o);
	}
	cv_json_key(&j, "suspended");
	if (s->susp_until_ms == 0)
		fputs("false", f);
	else {
		cv_json_begin(&o, f);
		cv_json_i64(&o, "until_ms", s->susp_until_ms);
		cv_json_str(&o, "reason", s->susp_reason);
		cv_json_end(&o);
	}
	cv_json_end(&j);
	fputc('\n', f);
}

static void
cv_sum_print_text(FILE *f, const struct cv_sum *s, int w, int64_t now)
{
	char age[32], errs[80], until[40];

	if (s->oldest_ms != INT64_MAX)
		cv_age_fmt(now - s->oldest_ms, age, sizeof(age));
	else
		snprintf(age, sizeof(age), "-");
	if (!s->has_err)
		snprintf(errs, sizeof(errs), "-");
	else if (s->err_code != 0)
		snprintf(errs, sizeof(errs), "%u %s", s->err_code,
			 s->err_status);
	else if (s->err_text[0] != '\0')
		snprintf(errs, sizeof(errs), "%s", s->err_text);
	else
		snprintf(errs, sizeof(errs), "no reply %s", s->err_status);
	fprintf(f,
		"%-*s  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64
		"  %7s  %-15s  ",
		w, s->domain[0] != '\0' ? s->domain : "(none)", s->msgs,
		s->rcpts, s->deferred, s->held, age, errs);
	if (s->susp_until_ms == 0)
		fputs("-", f);
	else {
		json_time_fmt(s->susp_until_ms, false, until, sizeof(until));
		fprintf(f, "until %s UTC", until);
		if (s->susp_reason != NULL && s->susp_reason[0] != '\0') {
			fputs(" (", f);
			cv_text_put(f, s->susp_reason, false);
			fputc(')', f);
		}
	}
	fputc('\n', f);
}

/*
 * queue summary — one line per recipient domain with pending recipients
 * (and per suspended destination).  The schedule index first (held bits,
 * due times, the ids to split the walk by), then every envelope, on up to
 * CV_SUMMARY_THREADS threads.  This function is long because it is the
 * command's whole sequence: load, walk, merge, add suspensions, print.
 */
int
cv_queue_summary(struct cv *c)
{
	struct cv_sched_index idx;
	struct cv_sum_part *parts = NULL;
	struct cv_sum **rows = NULL;
	struct cv_sum_tab *all;
	struct htab_entry *e;
	uint64_t msgs = 0, rcpts = 0, deferred = 0, held = 0;
	int64_t now = util_wall_ms();
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nparts, k;
	size_t i, n = 0;
	int w = 6, rc = CV_ERR;

	if (cv_sched_load(c, &idx, "queue summary") != 0)
		return CV_ERR;
	nparts = (unsigned)(idx.n / CV_SUMMARY_PER_THREAD + 1);
	if (nparts > CV_SUMMARY_THREADS)
		nparts = CV_SUMMARY_THREADS;
	if (ncpu > 0 && nparts > (unsigned)ncpu)
		nparts = (unsigned)ncpu;
	if (nparts == 0 || idx.n < nparts)
		nparts = 1;
	if ((parts = calloc(nparts, sizeof(*parts))) == NULL) {
		cv_errx(c, "queue summary: out of memory");
		goto done;
	}
	if (cv_sum_walk(c, &idx, parts, nparts) != 0)
		goto done;
	all = &parts[0].tab;
	for (k = 0; k < nparts; k++) {
		msgs += parts[k].msgs;
		rcpts += parts[k].rcpts;
		deferred += parts[k].deferred;
		held += parts[k].held;
		if (k > 0 && cv_sum_merge(all, &parts[k].tab) != 0) {
			cv_errx(c, "queue summary: out of memory");
			goto done;
		}
	}
	if (cv_sum_suspensions(c, all) != 0 ||
	    (rows = calloc((all->ready ? all->h.n : 0) + 1, sizeof(*rows))) ==
		NULL) {
		cv_errx(c, "queue summary: out of memory");
		goto done;
	}
	for (e = all->ready ? htab_first(&all->h, &i) : NULL; e != NULL;
	     e = htab_next(&all->h, e, &i)) {
		rows[n] = e->value;
		/* A paused destination (back-off, suspension) has had its
		 * attempt for all that waits on it: they are deferred, held
		 * in place without one of their own. */
		if (rows[n]->susp_until_ms > now) {
			rows[n]->deferred += rows[n]->untried;
			deferred += rows[n]->untried;
		}
		if ((int)strlen(rows[n]->domain) > w)
			w = (int)strlen(rows[n]->domain);
		n++;
	}
	qsort(rows, n, sizeof(*rows), cv_sum_cmp);
	if (w > 40)
		w = 40;
	if (!c->json)
		fprintf(c->f, "%-*s  %8s  %8s  %8s  %8s  %7s  %-15s  %s\n", w,
			"DOMAIN", "MSGS", "RCPTS", "DEFERRED", "HELD", "OLDEST",
			"LAST ERROR", "SUSPENDED");
	for (i = 0; i < n; i++) {
		if (c->json)
			cv_sum_print_json(c->f, rows[i], now);
		else
			cv_sum_print_text(c->f, rows[i], w, now);
	}
	if (!c->json)
		fprintf(c->f,
			"%-*s  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64
			"  %8" PRIu64 "\n",
			w, "TOTAL", msgs, rcpts, deferred, held);
	cv_sum_print_bad(c, parts, nparts);
	c->count = n;
	rc = CV_OK;
done:
	for (k = 0; parts != NULL && k < nparts; k++) {
		cv_sum_tab_free(&parts[k].tab);
		free(parts[k].bad);
	}
	free(parts);
	free(rows);
	free(idx.v);
	return rc;
}
