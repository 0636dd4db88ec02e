/*
 * metrics_top.h — labelled counters with bounded cardinality: per
 * destination, pool or user, the top N label values by volume get series
 * of their own and everything else is summed under the value "_other".
 *
 * Counters stay counters: a label value's series shows its whole count
 * since it was first tracked; "_other" grows by what label values counted
 * while they had no series of their own (folded in at each selection), so
 * no series ever goes down, even when the top N changes.  A label value
 * that enters the top N late shows its whole count while "_other" keeps
 * what it had from it: only then do the series add up to more than the
 * total.  A new label value needs a clear lead (an eighth, and at least
 * 2) over the smallest of the top N to take its place, so two close ones
 * do not flap.  At most max(256, 8 N) label values are tracked; past that, new
 * ones count straight into "_other", and the least busy untracked ones are
 * forgotten at the next selection.
 *
 * Threads: a struct metrics_top belongs to one thread.  The user-accept
 * counters (metrics_user_accepted) are lock-free, any thread.
 */
#ifndef OUTPOST_MTA_METRICS_TOP_H
#define OUTPOST_MTA_METRICS_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of a label value, NUL included (a domain name fits). */
#define METRICS_LABEL_MAX 256
/* The label value of everything outside the top N. */
#define METRICS_OTHER "_other"

struct metrics_top;

/*
 * metrics_top_new — a table of NCOLS counters per label value, TOP_N of
 * them shown (1 … 1000).  TRACK 0: the default tracking bound, the least
 * busy forgotten near it; else at most TRACK label values, never
 * forgotten (a table that mirrors counts with metrics_top_set).  NULL when
 * out of memory.
 */
struct metrics_top *metrics_top_new(unsigned ncols, unsigned top_n,
				    size_t track);

/* metrics_top_limit — show TOP_N label values from the next selection on
 * (a reloaded configuration); the tracking bound stays as made. */
void metrics_top_limit(struct metrics_top *t, unsigned top_n);

/* metrics_top_free — the table and its labels.  NULL is a no-op. */
void metrics_top_free(struct metrics_top *t);

/*
 * metrics_top_add — add N to column COL of LABEL (cut to
 * METRICS_LABEL_MAX - 1 bytes).  Out of memory or past the tracking
 * bound, N counts in "_other".  One hash lookup; the table's thread.
 */
void metrics_top_add(struct metrics_top *t, const char *label, unsigned col,
		     uint64_t n);

/*
 * metrics_top_set — column COL of LABEL is now V (a count kept elsewhere
 * that only grows: the table mirrors it).  As metrics_top_add otherwise.
 */
void metrics_top_set(struct metrics_top *t, const char *label, unsigned col,
		     uint64_t v);

/* metrics_top_forget — drop LABEL's series (a purged user): what it
 * counted unseen goes to "_other" first.  1 when it was tracked, else 0.
 * The table's thread. */
int metrics_top_forget(struct metrics_top *t, const char *label);

/* metrics_top_select — choose the top N anew and fold what the others
 * counted since the last selection into "_other".  Before writing. */
void metrics_top_select(struct metrics_top *t);

/* One family written from a table: columns FIRST … FIRST + NCOLS - 1,
 * the label LABEL=<value> then COLS[i] (e.g. "result=\"delivered\"", or
 * NULL for no second label). */
struct metrics_top_family {
	const char *name;
	const char *help;
	const char *type; /* "counter" or "gauge" */
	const char *label;
	unsigned first, ncols;
	const char *const *cols;
};

/*
 * Exposition text being made: BUF (LEN bytes, malloc'd, NUL-terminated
 * when not NULL) grows as needed; OOM once a piece did not fit in memory
 * (the text is then incomplete).  Start from all zeroes; free(BUF).
 */
struct metrics_text {
	char *buf;
	size_t len, off;
	bool oom;
};

/* metrics_text_printf — append, growing T->buf. */
void metrics_text_printf(struct metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * metrics_top_write — F's exposition text (HELP, TYPE, one sample per
 * shown label value and column, then "_other"'s when it counted anything)
 * appended to OUT.
 */
void metrics_top_write(const struct metrics_top *t, struct metrics_text *out,
		       const struct metrics_top_family *f);

/* A gauge's value for one label value, for metrics_top_gauges. */
struct metrics_gauge {
	const char *label;
	uint64_t value;
};

/*
 * metrics_top_gauges — a gauge family NAME with label LABEL: the TOP_N
 * largest of the N values V (reordered), and the rest under "_other": their
 * sum, or with MAX their largest (an age).  Appended to OUT.
 */
void metrics_top_gauges(struct metrics_text *out, const char *name,
			const char *help, const char *label,
			struct metrics_gauge *v, size_t n, unsigned top_n,
			bool max);

/*
 * metrics_user_label — the label value of user USER (an AUTH name): the
 * name itself when it is a plain name (letters, digits, ".", "_", "-",
 * "+", at most 64 bytes, not starting with "_"), else "hash:" and its keyed
 * hash as the delivery log writes it (evlog_hash, `outpost hash`): a user
 * name that is an address never shows.  NULL (a relay-network client, no
 * AUTH): "_relay".  Into OUT.  Any thread.
 */
void metrics_user_label(const char *user, char out[METRICS_LABEL_MAX]);

/*
 * metrics_user_accepted — one message accepted from AUTH user USER (NULL:
 * a relay-network client), counted under metrics_user_label(USER).  Any
 * thread, lock-free: a fixed table of atomics, one add (a label past its
 * room counts under "_other").
 */
void metrics_user_accepted(const char *user);

/*
 * metrics_user_accepts_text — outpost_user_messages_received_total, top
 * TOP_N users and "_other", as a metrics text hook (metrics_text_fn).  The
 * metrics thread.  metrics_user_top sets TOP_N (default 20).
 */
size_t metrics_user_accepts_text(char *buf, size_t len);
void metrics_user_top(unsigned top_n);

/*
 * metrics_user_forget — the per-user accept counter of USER starts again
 * from zero and its series is dropped at the next scrape: the metrics'
 * history store (mta/observe/history.h; ARG unused).  Returns 1 when USER
 * had counted something since its last purge, else 0.  Any thread,
 * lock-free.
 */
uint64_t metrics_user_forget(const char *user, void *arg);

#endif
