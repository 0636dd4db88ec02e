/*
 * confgen.c — configuration generations (confgen.h).
 *
 * Owns: struct confgen and what it derives from its conf: the listener
 * descriptions with their TLS contexts and the DKIM keyset.  Built on the
 * main thread only (files, key parsing: never on an I/O loop); read-only
 * afterwards, shared by the loops.  The reference count is atomic: the
 * last session of a generation frees it on its own loop.
 */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "dns/dns.h"
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
