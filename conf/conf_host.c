/*
 * conf_host.c — the checks of a configuration against the host it runs on:
 * every DKIM key file exists, is a regular file and is not readable or
 * writable by group or others; every pool source address is assigned to
 * this host.  `outpostd -t` and the daemon's start-up both run them, with
 * the "file:line" of the value at fault (recorded at load, conf_host_build).
 * Must not: send a packet (an address is tested by bind() on port 0 only),
 * create or change a file.  Thread: main.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "conf/conf_int.h"

/* "file:line" of KEY in SEC (the section's line when KEY has none). */
static char *
conf_host_at(struct conf_ctx *x, cfg_t *sec, const char *key)
{
	char buf[4096 + 32];
	const char *file;
	unsigned line;

	conf_src_where(&x->src, conf_where(x, sec, key), &file, &line);
	if (line != 0)
		(void)snprintf(buf, sizeof(buf), "%s:%u", file, line);
	else
		(void)snprintf(buf, sizeof(buf), "%s", file);
	return conf_strdup(x, buf);
}

/*
 * conf_host_build — note where each key file and pool source list was
 * written.  After conf_deliver_build() and conf_dkim_build(): the dkim and
 * pool sections are in file order, as cfg_getnsec() returns them.
 */
int
conf_host_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	size_t i;
	cfg_t *sec;

	for (i = 0; i < c->ndkims; i++) {
		sec = cfg_getnsec(cfg, "dkim", (unsigned)i);
		if (c->dkims[i].rsa_key != NULL &&
		    (c->dkims[i].rsa_key_at =
			 conf_host_at(x, sec, "rsa_key")) == NULL)
			return -1;
		if (c->dkims[i].ed25519_key != NULL &&
		    (c->dkims[i].ed25519_key_at =
			 conf_host_at(x, sec, "ed25519_key")) == NULL)
			return -1;
	}
	for (i = 0; i < c->npools; i++) {
		sec = cfg_getnsec(cfg, "pool", (unsigned)i);
		if ((c->pools[i].source_at = conf_host_at(x, sec, "source")) ==
		    NULL)
			return -1;
	}
	return 0;
}

void
conf_host_free(struct conf *c)
{
	size_t i;

	for (i = 0; i < c->ndkims; i++) {
		free(c->dkims[i].rsa_key_at);
		free(c->dkims[i].ed25519_key_at);
	}
	for (i = 0; i < c->npools; i++)
		free(c->pools[i].source_at);
}

/* A key file: there, regular, mode without group/other bits. */
static int
conf_host_key(const char *at, const char *domain, const char *key,
	      const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: dkim \"%s\".%s: %s: %s", at, domain,
			 key, path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: dkim \"%s\".%s: %s: not a file", at,
			 domain, key, path);
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen,
			 "%s: dkim \"%s\".%s: %s: mode 0%03o, must not be "
			 "accessible by group or others (chmod 600)",
			 at, domain, key, path, (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

/* A source address: bind() on port 0 succeeds only for a local address.
 * Nothing is sent: the socket is closed unconnected. */
static int
conf_host_source(const char *at, const char *pool,
		 const struct sockaddr_storage *ss, char *err, size_t errlen)
{
	char text[INET6_ADDRSTRLEN];
	socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						 : sizeof(struct sockaddr_in6);
	int fd, e;

	if (inet_ntop(
		ss->ss_family,
		ss->ss_family == AF_INET
		    ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
		    : (const void *)&((const struct sockaddr_in6 *)ss)
			  ->sin6_addr,
		text, sizeof(text)) == NULL)
		snprintf(text, sizeof(text), "?");
	if ((fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "%s: pool \"%s\".source: %s: socket: %s",
			 at, pool, text, strerror(errno));
		return -1;
	}
	e = bind(fd, (const struct sockaddr *)ss, len) != 0 ? errno : 0;
	close(fd);
	if (e == 0)
		return 0;
	if (e == EADDRNOTAVAIL)
		snprintf(err, errlen,
			 "%s: pool \"%s\".source: %s is not an address of "
			 "this host",
			 at, pool, text);
	else
		snprintf(err, errlen, "%s: pool \"%s\".source: %s: bind: %s",
			 at, pool, text, strerror(e));
	return -1;
}

/*
 * conf_check_host — see conf.h.
 */
int
conf_check_host(const struct conf *c, char *err, size_t errlen)
{
	size_t i, j;

	for (i = 0; i < c->ndkims; i++) {
		const struct conf_dkim *d = &c->dkims[i];

		if (d->rsa_key != NULL &&
		    conf_host_key(d->rsa_key_at ? d->rsa_key_at : c->file,
				  d->domain, "rsa_key", d->rsa_key, err,
				  errlen) != 0)
			return -1;
		if (d->ed25519_key != NULL &&
		    conf_host_key(d->ed25519_key_at ? d->ed25519_key_at
						    : c->file,
				  d->domain, "ed25519_key", d->ed25519_key, err,
				  errlen) != 0)
			return -1;
	}
	for (i = 0; i < c->npools; i++) {
		const struct conf_pool *p = &c->pools[i];

		for (j = 0; j < p->nsources; j++)
			if (conf_host_source(
				p->source_at ? p->source_at : c->file, p->name,
				&p->sources[j], err, errlen) != 0)
				return -1;
	}
	return 0;
}
