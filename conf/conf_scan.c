/*
 * conf_scan.c — the section scan: the clamd that every submitted message is
 * streamed to before its 250 (a Unix socket path, or a loopback
 * ADDR:PORT), what a failure of clamd costs (tempfail or accept), the
 * per-scan timeout, the connections kept to it, how much of a message is
 * streamed and what happens past it, and the verdict cache's size and age.
 * Uses conf_ctx.c, conf_parse.c and conf_num.c only.  Thread: main, under
 * conf_mutex.  Invariants: clamd NULL means no scanning; otherwise addr
 * holds an AF_UNIX path that fits sun_path or a loopback address with a
 * port (a message goes to clamd in clear: never off the host).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include <confuse.h>

#include "conf/conf_int.h"

static const char *const conf_scan_errors[] = { "tempfail", "accept", NULL };
static const char *const conf_scan_oversizes[] = { "truncate", "refuse", NULL };

static int
conf_scan_error_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_scan_errors,
			      "tempfail, accept");
}

static int
conf_scan_oversize_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
		      void *result)
{
	return conf_choice_cb(cfg, opt, value, result, conf_scan_oversizes,
			      "truncate, refuse");
}

/* scan.clamd: "" (the default, as `outpost config --all` prints it) is no
 * scanning; anything else is text, checked as an address at build. */
static int
conf_scan_clamd_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value != NULL && value[0] == '\0') {
		conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
		*(const char **)result = value;
		return 0;
	}
	return conf_text_cb(cfg, opt, value, result);
}

cfg_opt_t conf_scan_opts[] = {
	/* "" (no scanning), "/run/clamav/clamd.ctl" or "127.0.0.1:3310" */
	CFG_STR_CB("clamd", "", CFGF_NONE, conf_scan_clamd_cb),
	CFG_STR_CB("on_error", "tempfail", CFGF_NONE, conf_scan_error_cb),
	CFG_STR_CB("timeout", "30s", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("connections", "4", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("max_size", "25M", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("on_oversize", "truncate", CFGF_NONE, conf_scan_oversize_cb),
	CFG_STR_CB("cache_entries", "100000", CFGF_NONE, conf_num_cb),
	CFG_STR_CB("cache_ttl", "1h", CFGF_NONE, conf_num_cb),
	CFG_END(),
};

/* Is SS (an address conf_hostport_scan made) a loopback address? */
static bool
conf_scan_loopback(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	return ss->ss_family == AF_INET6 &&
	       IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

/* S into SC's address: a Unix socket path, or a loopback ADDR:PORT.  0, or
 * -1 with *WHY a phrase that follows the quoted value. */
static int
conf_scan_addr(const char *s, struct conf_scan *sc, const char **why)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&sc->addr;
	char host[INET6_ADDRSTRLEN + 1];
	unsigned port;

	memset(&sc->addr, 0, sizeof(sc->addr));
	if (s[0] == '/') {
		if (strlen(s) >= sizeof(un->sun_path)) {
			*why = "is too long for a Unix socket path";
			return -1;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s, strlen(s) + 1);
		sc->addrlen = (socklen_t)sizeof(*un);
		sc->unix_socket = true;
		return 0;
	}
	if (conf_hostport_scan(s, false, host, sizeof(host), &port, &sc->addr,
			       why) != 0) {
		*why = "is neither an absolute Unix socket path nor a loopback "
		       "ADDR:PORT (use e.g. \"/run/clamav/clamd.ctl\" or "
		       "\"127.0.0.1:3310\")";
		return -1;
	}
	if (port == 0) {
		*why = "needs a port (use e.g. \"127.0.0.1:3310\")";
		return -1;
	}
	if (!conf_scan_loopback(&sc->addr)) {
		/* zINSTREAM carries the message in clear. */
		*why = "must be a Unix socket path or a loopback address "
		       "(messages go to clamd unencrypted)";
		return -1;
	}
	sc->addrlen = sc->addr.ss_family == AF_INET
			  ? (socklen_t)sizeof(struct sockaddr_in)
			  : (socklen_t)sizeof(struct sockaddr_in6);
	return 0;
}

int
conf_scan_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c)
{
	cfg_t *sec = cfg_getsec(cfg, "scan");
	struct conf_scan *sc = &c->scan;
	const char *s = cfg_getstr(sec, "clamd"), *why;

	sc->on_error = strcasecmp(cfg_getstr(sec, "on_error"), "accept") == 0
			   ? CONF_SCAN_ACCEPT
			   : CONF_SCAN_TEMPFAIL;
	sc->on_oversize =
	    strcasecmp(cfg_getstr(sec, "on_oversize"), "refuse") == 0
		? CONF_SCAN_REFUSE
		: CONF_SCAN_TRUNCATE;
	sc->timeout_ms = conf_num_get(x, sec, "timeout");
	sc->connections = (unsigned)conf_num_get(x, sec, "connections");
	sc->max_size = conf_num_get(x, sec, "max_size");
	sc->cache_entries = conf_num_get(x, sec, "cache_entries");
	sc->cache_ttl_ms = conf_num_get(x, sec, "cache_ttl");
	if (s == NULL || s[0] == '\0')
		return x->failed ? -1 : 0;
	if (conf_scan_addr(s, sc, &why) != 0) {
		conf_fail(x, conf_where(x, sec, "clamd"),
			  "scan.clamd: \"%s\" %s", s, why);
		return -1;
	}
	if ((sc->clamd = conf_strdup(x, s)) == NULL)
		return -1;
	return x->failed ? -1 : 0;
}

void
conf_scan_free(struct conf *c)
{
	free(c->scan.clamd);
	c->scan.clamd = NULL;
}
