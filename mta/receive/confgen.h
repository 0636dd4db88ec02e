/*
 * confgen.h — a configuration generation: the immutable tree (struct conf)
 * and what the SMTP server derives from it (listener TLS contexts, the DKIM
 * keys), built whole on the main thread and shared, read-only, by every
 * session that started under it.  A reload makes a new one; the old one is
 * freed when its last session ends.
 */
#ifndef OUTPOST_MTA_RECEIVE_CONFGEN_H
#define OUTPOST_MTA_RECEIVE_CONFGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct intake_keyset;
struct smtp_server_listener;

struct confgen {
	unsigned refs;           /* confgen_ref / confgen_unref (atomic) */
	uint64_t number;         /* 1 at start-up, then one per reload */
	const struct conf *conf; /* a reference (conf_ref) */
	struct intake_keyset *keyset;
	struct smtp_server_listener *listeners; /* parallel to
						   conf->listeners */
};

/*
 * confgen_new — generation NUMBER of C (which it references): every
 * listener's TLS context (a self-signed certificate made first where
 * tls { generate } asks for one) and every DKIM key, as the daemon would
 * use them; QUIET: do not log each key.  Main thread (files, key parsing).
 * 0 and *OUT (one reference, the caller's), or -1 with err ("listener
 * 127.0.0.1:465: /path: …", "file:line: dkim …").
 */
int confgen_new(const struct conf *c, uint64_t number, bool quiet,
		struct confgen **out, char *err, size_t errlen);

/* confgen_ref — one more holder of G; returns G.  Any thread. */
struct confgen *confgen_ref(struct confgen *g);

/* confgen_unref — a holder is done with G; the last one frees it (TLS
 * contexts, keys, its conf reference).  Any thread; NULL is allowed. */
void confgen_unref(struct confgen *g);

/*
 * confgen_retire — a reload replaced G: the caller's reference moves to the
 * list of retired generations, still held by the main thread, so that the
 * last session of G (on an SMTP loop) or the scheduler letting go of G's
 * conf (on the delivery loop) never frees a whole configuration and its
 * keys on an I/O loop.  KEPT: a conf the caller holds to its end (the
 * start-up one, the control socket's), whose tree is not waited for.
 * Main thread.
 */
void confgen_retire(struct confgen *g, const struct conf *kept);

/*
 * confgen_reap — free, here, each retired generation (then its conf) that
 * nobody else holds any more, logging "generation N released"; ALL: every
 * one regardless (at exit, once the loops have stopped).  Returns how many
 * are still held.  Main thread.
 */
size_t confgen_reap(bool all);

#endif
