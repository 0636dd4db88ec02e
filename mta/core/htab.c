/*
 * htab.c — string-keyed hash table (FNV-1a, chaining).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/core/htab.h"

static uint64_t
htab_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int
htab_init(struct htab *h)
{
	h->nb = 64;
	h->n = 0;
	h->b = calloc(h->nb, sizeof(*h->b));
	return h->b == NULL ? -1 : 0;
}

void *
htab_get(const struct htab *h, const char *key)
{
	struct htab_entry *e;

	for (e = h->b[htab_hash(key) % h->nb]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->value;
	return NULL;
}

static void
htab_grow(struct htab *h)
{
	struct htab_entry **nb, *e, *next;
	size_t i, n = h->nb * 2, k;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return; /* keep working with longer chains */
	for (i = 0; i < h->nb; i++) {
		for (e = h->b[i]; e != NULL; e = next) {
			next = e->next;
			k = htab_hash(e->key) % n;
			e->next = nb[k];
			nb[k] = e;
		}
	}
	free(h->b);
	h->b = nb;
	h->nb = n;
}

int
htab_put(struct htab *h, const char *key, void *value)
{
	struct htab_entry *e;
	size_t k;

	if (h->n >= h->nb)
		htab_grow(h);
	if ((e = malloc(sizeof(*e))) == NULL)
		return -1;
	if ((e->key = strdup(key)) == NULL) {
		free(e);
		return -1;
	}
	e->value = value;
	k = htab_hash(key) % h->nb;
	e->next = h->b[k];
	h->b[k] = e;
	h->n++;
	return 0;
}

void *
htab_del(struct htab *h, const char *key)
{
	struct htab_entry **pp, *e;
	void *v;

	for (pp = &h->b[htab_hash(key) % h->nb]; (e = *pp) != NULL;
	     pp = &e->next) {
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			v = e->value;
			free(e->key);
			free(e);
			h->n--;
			return v;
		}
	}
	return NULL;
}

void
htab_free(struct htab *h)
{
	struct htab_entry *e, *next;
	size_t i;

	for (i = 0; i < h->nb; i++) {
		for (e = h->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e->key);
			free(e);
		}
	}
	free(h->b);
	h->b = NULL;
	h->nb = h->n = 0;
}

struct htab_entry *
htab_first(const struct htab *h, size_t *i)
{
	for (*i = 0; *i < h->nb; (*i)++)
		if (h->b[*i] != NULL)
			return h->b[*i];
	return NULL;
}

struct htab_entry *
htab_next(const struct htab *h, struct htab_entry *e, size_t *i)
{
	if (e->next != NULL)
		return e->next;
	for ((*i)++; *i < h->nb; (*i)++)
		if (h->b[*i] != NULL)
			return h->b[*i];
	return NULL;
}

/* idmap ----------------------------------------------------------------- */

#define IDMAP_DEL UINT64_MAX

static size_t
idmap_slot(uint64_t key, size_t cap)
{
	/* Ids are time-ordered: mix the bits before masking. */
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

int
idmap_init(struct idmap *m)
{
	m->cap = 1024;
	m->n = m->tomb = 0;
	m->keys = calloc(m->cap, sizeof(*m->keys));
	m->vals = calloc(m->cap, sizeof(*m->vals));
	return m->keys == NULL || m->vals == NULL ? -1 : 0;
}

void *
idmap_get(const struct idmap *m, uint64_t key)
{
	size_t i = idmap_slot(key, m->cap);

	while (m->keys[i] != 0) {
		if (m->keys[i] == key)
			return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

static int
idmap_grow(struct idmap *m)
{
	struct idmap g;
	size_t i, cap = m->n * 4 > m->cap ? m->cap * 2 : m->cap;

	g.cap = cap;
	g.n = g.tomb = 0;
	g.keys = calloc(cap, sizeof(*g.keys));
	g.vals = calloc(cap, sizeof(*g.vals));
	if (g.keys == NULL || g.vals == NULL) {
		free(g.keys);
		free(g.vals);
		return -1;
	}
	for (i = 0; i < m->cap; i++)
		if (m->keys[i] != 0 && m->keys[i] != IDMAP_DEL)
			(void)idmap_put(&g, m->keys[i], m->vals[i]);
	free(m->keys);
	free(m->vals);
	*m = g;
	return 0;
}

int
idmap_put(struct idmap *m, uint64_t key, void *val)
{
	size_t i, first = SIZE_MAX;

	if ((m->n + m->tomb + 1) * 10 > m->cap * 7 && idmap_grow(m) != 0)
		return -1;
	for (i = idmap_slot(key, m->cap); m->keys[i] != 0;
	     i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
		if (m->keys[i] == IDMAP_DEL && first == SIZE_MAX)
			first = i;
	}
	if (first != SIZE_MAX) {
		i = first;
		m->tomb--;
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return 0;
}

void *
idmap_del(struct idmap *m, uint64_t key)
{
	size_t i = idmap_slot(key, m->cap);
	void *v;

	while (m->keys[i] != 0) {
		if (m->keys[i] == key) {
			v = m->vals[i];
			m->keys[i] = IDMAP_DEL;
			m->vals[i] = NULL;
			m->n--;
			m->tomb++;
			return v;
		}
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

void
idmap_free(struct idmap *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->n = m->tomb = 0;
}
