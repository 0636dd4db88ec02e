/*
 * htab.h — a string-keyed hash table (chained, grows by doubling).  Not
 * thread-safe: each table belongs to one thread.
 */
#ifndef OUTPOST_MTA_HTAB_H
#define OUTPOST_MTA_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct htab_entry {
	char *key; /* owned by the table */
	void *value;
	struct htab_entry *next;
};

struct htab {
	struct htab_entry **b;
	size_t nb, n;
};

/* htab_init — 0 ok, -1 out of memory. */
int htab_init(struct htab *h);
/* htab_get — the value for KEY, or NULL. */
void *htab_get(const struct htab *h, const char *key);
/* htab_put — insert KEY (copied) → VALUE; KEY must not be present.  0 / -1. */
int htab_put(struct htab *h, const char *key, void *value);
/* htab_del — remove KEY; returns its value, or NULL. */
void *htab_del(struct htab *h, const char *key);
/* htab_free — free the table (not the values). */
void htab_free(struct htab *h);
/* Iteration: for (e = htab_first(h, &i); e; e = htab_next(h, e, &i)). */
struct htab_entry *htab_first(const struct htab *h, size_t *i);
struct htab_entry *htab_next(const struct htab *h, struct htab_entry *e,
			     size_t *i);

/*
 * idmap — uint64 key → pointer, open addressing (linear probing, tombstones);
 * 16 bytes a slot, kept at most 70% full.  Key 0 is reserved.  One thread.
 */
struct idmap {
	uint64_t *keys; /* 0 = empty, UINT64_MAX = deleted */
	void **vals;
	size_t cap, n, tomb;
};

int idmap_init(struct idmap *m);
void *idmap_get(const struct idmap *m, uint64_t key);
/* idmap_put — insert or replace.  0, or -1 (out of memory: not inserted). */
int idmap_put(struct idmap *m, uint64_t key, void *val);
void *idmap_del(struct idmap *m, uint64_t key);
void idmap_free(struct idmap *m);

#endif
