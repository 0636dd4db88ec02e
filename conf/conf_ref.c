/*
 * conf_ref.c — the holders of a configuration tree.
 *
 * Owns: struct conf's reference count.  A reload builds a new tree while
 * sessions and deliveries still read the old one; each holder keeps it
 * alive and the last to let go frees it.  Any thread (an atomic count);
 * the tree itself is never written after conf_load.
 */
#include "conf/conf.h"

const struct conf *
conf_ref(const struct conf *c)
{
	if (c != NULL)
		__atomic_add_fetch(&((struct conf *)c)->refs, 1,
				   __ATOMIC_RELAXED);
	return c;
}

void
conf_unref(const struct conf *c)
{
	struct conf *w = (struct conf *)c;

	if (w != NULL && __atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) == 0)
		conf_free(w);
}

unsigned
conf_holders(const struct conf *c)
{
	return __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE);
}
