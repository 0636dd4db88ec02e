/*
 * confgen.c — configuration generations (confgen.h).
 *
 * Owns: struct confgen and what it derives from its conf: the listener
 * descriptions with their TLS contexts and the DKIM keyset.  Built on the
 * main thread only (files, key parsing: never on an I/O loop); read-only
 * afterwards, shared by the loops.  The reference count is atomic; a
 * generation a reload replaced stays held by the main thread (the retired
 * list, main thread only) until nobody else holds it, then is freed there:
 * never on an I/O loop.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/core/tls.h"
#include "mta/core/util.h"
#include "mta/receive/confgen.h"
#include "mta/receive/intake.h"
#include "mta/receive/smtp_server.h"

/* The TLS context and description of listener I of G. */
static int
confgen_listener(struct confgen *g, size_t i, char *err, size_t errlen)
{
	const struct conf *c = g->conf;
	const struct conf_listener *cl = &c->listeners[i];
	struct smtp_server_listener *li = &g->listeners[i];
	const char *cert = cl->cert_file ? cl->cert_file : c->tls.cert_file;
	const char *key = cl->key_file ? cl->key_file : c->tls.key_file;
	char e[400];

	li->conf = cl;
	li->gen = g;
	li->loopback = dns_addr_is_loopback((const struct sockaddr *)&cl->addr);
	li->auth_plain_ok = cl->auth_without_tls && li->loopback;
	if (cl->tls == CONF_TLS_NONE)
		return 0;
	if (c->tls.generate && cl->cert_file == NULL) {
		if (util_mkdir_parent(cert) != 0 ||
		    util_mkdir_parent(key) != 0) {
			snprintf(err, errlen,
				 "listener %s: cannot create the directory "
				 "of %s",
				 cl->name, cert);
			return -1;
		}
		if (tls_selfsigned_ensure(cert, key, c->hostname, e,
					  sizeof(e)) != 0) {
			snprintf(err, errlen, "listener %s: %s", cl->name, e);
			return -1;
		}
	}
	li->ssl_ctx = tls_server_ctx_new(cert, key, c->tls.min_version,
					 c->tls.ciphers, e, sizeof(e));
	if (li->ssl_ctx == NULL) {
		snprintf(err, errlen, "listener %s: %s", cl->name, e);
		return -1;
	}
	return 0;
}

int
confgen_new(const struct conf *c, uint64_t number, bool quiet,
	    struct confgen **out, char *err, size_t errlen)
{
	struct confgen *g;
	size_t i;

	*out = NULL;
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (c->nlisteners > 0 &&
	     (g->listeners = calloc(c->nlisteners, sizeof(*g->listeners))) ==
		 NULL)) {
		free(g);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	g->refs = 1;
	g->number = number;
	g->conf = conf_ref(c);
	for (i = 0; i < c->nlisteners; i++)
		if (confgen_listener(g, i, err, errlen) != 0)
			goto fail;
	if (intake_keyset_load(c, quiet, &g->keyset, err, errlen) != 0)
		goto fail;
	*out = g;
	return 0;
fail:
	confgen_unref(g);
	return -1;
}

struct confgen *
confgen_ref(struct confgen *g)
{
	__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	return g;
}

void
confgen_unref(struct confgen *g)
{
	size_t i;

	if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (i = 0; g->listeners != NULL && i < g->conf->nlisteners; i++)
		SSL_CTX_free(g->listeners[i].ssl_ctx);
	free(g->listeners);
	intake_keyset_free(g->keyset);
	conf_unref(g->conf);
	free(g);
}

/* Retired generations, each with its conf, both held by the main thread:
 * the generation goes first, then its conf once the scheduler (the other
 * holder) has let go of it too. */
static struct confgen_retired {
	struct confgen *g; /* NULL once freed */
	const struct conf *c;
	uint64_t number;
} * retired;
static size_t nretired, retired_cap;

void
confgen_retire(struct confgen *g, const struct conf *kept)
{
	struct confgen_retired *r;

	if (nretired == retired_cap) {
		size_t cap = retired_cap ? 2 * retired_cap : 8;

		if ((r = realloc(retired, cap * sizeof(*r))) == NULL) {
			/* No room to keep it: the last holder frees it,
			 * wherever that is. */
			log_warnx("generation %llu: out of memory retiring it",
				  (unsigned long long)g->number);
			confgen_unref(g);
			return;
		}
		retired = r;
		retired_cap = cap;
	}
	r = &retired[nretired++];
	r->g = g;
	r->c = g->conf == kept ? NULL : conf_ref(g->conf);
	r->number = g->number;
}

size_t
confgen_reap(bool all)
{
	size_t i, kept = 0;

	for (i = 0; i < nretired; i++) {
		struct confgen_retired *r = &retired[i];

		/* A count of 1 is ours alone: no listener entry or session
		 * points at it, so nobody can take it again. */
		if (r->g != NULL &&
		    (all ||
		     __atomic_load_n(&r->g->refs, __ATOMIC_ACQUIRE) == 1)) {
			confgen_unref(r->g); /* its keys and TLS contexts */
			r->g = NULL;
			if (!all)
				log_info("generation %llu released: no session "
					 "uses it any more",
					 (unsigned long long)r->number);
		}
		/* Its tree, once the scheduler has let go too. */
		if (r->g == NULL &&
		    (r->c == NULL || all || conf_holders(r->c) == 1)) {
			conf_unref(r->c);
			continue;
		}
		retired[kept++] = *r;
	}
	nretired = kept;
	if (nretired == 0) {
		free(retired);
		retired = NULL;
		retired_cap = 0;
	}
	return nretired;
}
