/*
 * htab.c — string-keyed hash table (FNV-1a, chaining).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/htab.h"

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
