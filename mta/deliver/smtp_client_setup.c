/*
 * smtp_client_setup.c — a client's way to a usable session: the walk
 * through the target's hosts and their addresses (resolve, connect, the
 * attempt's bounds), then EHLO (or HELO) and STARTTLS as the TLS policy
 * says, with each host's TLS session kept for resumption.
 *
 * Owns: the host walk's fields of struct smtp_client.  Must not: connect
 * off loopback when loopback_only says so.  Delivery loop thread only.
 */
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/x509v3.h>

#include "dns/dns.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/scrub.h"
#include "mta/core/util.h"
#include "mta/deliver/smtp_client_int.h"
#include "mta/observe/stats.h"

/* No new address with less than this left of the attempt (a timer cut to
 * the deadline may fire a little before it). */
#define SC_ATTEMPT_SLACK_MS 100

static void sc_connect_addr(struct smtp_client *c);
static void sc_addr_result(struct smtp_client *c,
			   const struct dns_addr_reply *reply);
static bool sc_attempt_over(struct smtp_client *c);

/* Connecting ---------------------------------------------------------- */

/* This host cannot be used: remember why, try the next one. */
void
sc_host_failed(struct smtp_client *c, enum outcome_stage stage, int code,
	       const char *text)
{
	char esc[300];
	const struct scrub_ctx *prev;

	if (c->tls_failure != NULL &&
	    (stage == OS_TLS || stage == OS_STARTTLS || stage == OS_HELO))
		sc_session_report(c); /* TLS made this host fail */
	prev = sc_log_enter(c);
	if (code != 0)
		log_info("smtp-out %s: %s failed: %d %s", c->remote,
			 outcome_stage_name(stage), code,
			 log_escape(esc, sizeof(esc), text, strlen(text)));
	else
		log_info("smtp-out %s: %s failed: %s", c->remote,
			 outcome_stage_name(stage),
			 log_escape(esc, sizeof(esc), text, strlen(text)));
	scrub_ctx_leave(prev);
	c->fail_stage = stage;
	c->fail_code = code;
	snprintf(c->fail_text, sizeof(c->fail_text), "%s", text);
	sc_close_socket(c);
	c->addr_idx++;
	c->usable = false;
	sc_connect_next(c);
}

static void
sc_connect_addr(struct smtp_client *c)
{
	struct sockaddr_storage sa = c->addrs[c->addr_idx];
	socklen_t len;
	evutil_socket_t fd;
	char err[200];

	if (!c->in_clear)
		c->tls_failure = NULL; /* a new session */
	if (sa.ss_family == AF_INET) {
		((struct sockaddr_in *)&sa)->sin_port = htons(c->t.port);
		len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&sa)->sin6_port = htons(c->t.port);
		len = sizeof(struct sockaddr_in6);
	}
	inet_ntop(sa.ss_family,
		  sa.ss_family == AF_INET
		      ? (void *)&((struct sockaddr_in *)&sa)->sin_addr
		      : (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr,
		  c->ip, sizeof(c->ip));
	snprintf(c->remote, sizeof(c->remote), "%s[%s]:%u", sc_host(c), c->ip,
		 c->t.port);
	if (c->env->loopback_only &&
	    !dns_addr_is_loopback((struct sockaddr *)&sa)) {
		/* Test safety: this build is pointed at loopback only. */
		sc_host_failed(
		    c, OS_CONNECT, 0,
		    "non-loopback destination refused (loopback_only)");
		return;
	}
	fd =
	    socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, sizeof(err), "socket: %s", strerror(errno));
		sc_host_failed(c, OS_CONNECT, 0, err);
		return;
	}
	if (c->t.has_source && c->t.source.ss_family == sa.ss_family &&
	    bind(fd, (struct sockaddr *)&c->t.source,
		 c->t.source.ss_family == AF_INET
		     ? sizeof(struct sockaddr_in)
		     : sizeof(struct sockaddr_in6)) != 0) {
		snprintf(err, sizeof(err), "bind to the pool source: %s",
			 strerror(errno));
		evutil_closesocket(fd);
		sc_host_failed(c, OS_CONNECT, 0, err);
		return;
	}
	/* Replies and pipelined commands are small writes; without this,
	 * Nagle and the peer's delayed ACK stall every TLS transaction. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 },
			 sizeof(int));
	c->fd = fd;
	c->bev = bufferevent_socket_new(c->env->base, fd, 0);
	/* Clear text is read by our event, not the bufferevent (rd). */
	c->rd = event_new(c->env->base, fd, EV_READ | EV_PERSIST, sc_rd_cb, c);
	if (c->bev == NULL || c->rd == NULL) {
		sc_host_failed(c, OS_CONNECT, 0, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, sc_read_cb, sc_write_cb, sc_event_cb, c);
	sc_enter(c, SC_CONNECT);
	sc_pend_push(c, OS_GREETING, 0); /* the banner is the first reply */
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa,
				       (int)len) != 0) {
		snprintf(err, sizeof(err), "connect: %s", strerror(errno));
		sc_host_failed(c, OS_CONNECT, 0, err);
		return;
	}
	bufferevent_enable(c->bev, EV_WRITE);
	/* Ours to fill from now on (mta/core/sockio.h). */
	(void)evbuffer_unfreeze(bufferevent_get_input(c->bev), 0);
	if (event_add(c->rd, NULL) != 0)
		sc_host_failed(c, OS_CONNECT, 0, "event_add failed");
}

static void sc_host_resolve(struct smtp_client *c);
static void sc_host_skip(struct smtp_client *c, const char *why,
			 const char *detail);

/*
 * The current host's TLSA records (RFC 7672 2.2): validated and usable ->
 * DANE; validated, none usable -> TLS without authentication; a denial or
 * an answer not validated -> no DANE (the target's policy); a failed
 * lookup (SERVFAIL: bogus, say) -> the host is not used, since the MX
 * answer was validated and a downgrade must not be possible.
 */
static void
sc_tlsa_cb(const struct dns_tlsa_reply *reply, void *arg)
{
	struct smtp_client *c = arg;
	size_t i;

	sc_hold(c);
	c->dq = NULL;
	if (reply->result == DNS_TEMPFAIL) {
		c->dane = SC_DANE_VERIFY; /* a DANE host that failed */
		c->tls_failure = "dnssec-invalid";
		sc_host_skip(c, "DANE: TLSA lookup failed", reply->err);
		goto out;
	}
	if (reply->secure && reply->result == DNS_OK) {
		c->dane = SC_DANE_ENCRYPT;
		c->tlsa = calloc(reply->nrecs, sizeof(*c->tlsa));
		for (i = 0; c->tlsa != NULL && i < reply->nrecs; i++) {
			const struct dns_tlsa *t = &reply->recs[i];
			uint8_t *d;

			/* RFC 7672 3.1: DANE-TA(2) and DANE-EE(3) only */
			if ((t->usage != 2 && t->usage != 3) ||
			    t->selector > 1 || t->mtype > 2 ||
			    (d = malloc(t->len)) == NULL)
				continue;
			memcpy(d, t->data, t->len);
			c->tlsa[c->ntlsa] = *t;
			c->tlsa[c->ntlsa++].data = d;
		}
		if (c->ntlsa > 0)
			c->dane = SC_DANE_VERIFY;
	}
	if (c->dane == SC_DANE_NONE && c->t.tls == CONF_TLSP_DANE_ONLY) {
		c->tls_failure = "dane-required";
		sc_host_skip(c,
			     "DANE required (tls = dane-only), but the host "
			     "has no validated TLSA record",
			     NULL);
		goto out;
	}
	sc_host_resolve(c);
out:
	sc_release(c);
}

/* The current host is not used (WHY, DETAIL): the next one. */
static void
sc_host_skip(struct smtp_client *c, const char *why, const char *detail)
{
	snprintf(c->remote, sizeof(c->remote), "%s", sc_host(c));
	log_info("smtp-out %s: %s%s%s", sc_host(c), why,
		 detail != NULL && detail[0] ? ": " : "",
		 detail != NULL ? detail : "");
	c->fail_stage = OS_TLS;
	c->fail_code = 0;
	snprintf(c->fail_text, sizeof(c->fail_text), "%s%s%s", why,
		 detail != NULL && detail[0] ? ": " : "",
		 detail != NULL ? detail : "");
	c->ip[0] = '\0';
	sc_session_report(c); /* a DANE host refused before any session */
	c->host_idx++;
	sc_connect_next(c);
}

static void
sc_addr_cb(const struct dns_addr_reply *reply, void *arg)
{
	struct smtp_client *c = arg;

	sc_hold(c);
	sc_addr_result(c, reply);
	sc_release(c);
}

static void
sc_addr_result(struct smtp_client *c, const struct dns_addr_reply *reply)
{
	char err[200];

	c->dq = NULL;
	free(c->addrs);
	c->addrs = NULL;
	c->naddrs = 0;
	c->addr_idx = 0;
	if (reply->result != DNS_OK || reply->naddrs == 0) {
		snprintf(c->remote, sizeof(c->remote), "%s", sc_host(c));
		snprintf(err, sizeof(err), "address lookup: %s%s%s",
			 dns_result_str(reply->result),
			 reply->err[0] ? ": " : "", reply->err);
		c->fail_stage = OS_CONNECT;
		c->fail_code = 0;
		snprintf(c->fail_text, sizeof(c->fail_text), "%s", err);
		c->host_idx++;
		sc_connect_next(c);
		return;
	}
	c->addrs = malloc(reply->naddrs * sizeof(*c->addrs));
	if (c->addrs == NULL) {
		c->host_idx++;
		sc_connect_next(c);
		return;
	}
	memcpy(c->addrs, reply->addrs, reply->naddrs * sizeof(*c->addrs));
	c->naddrs = reply->naddrs;
	/* The lookup took time: the deadline may have passed meanwhile. */
	if (sc_attempt_over(c)) {
		sc_finish(c, true);
		return;
	}
	c->ntried++;
	sc_connect_addr(c);
}

/* A route's host given as an IP address: no lookup.  True if handled. */
static bool
sc_literal(struct smtp_client *c, const char *host)
{
	struct sockaddr_storage ss;
	char buf[64];
	size_t n = strlen(host);

	memset(&ss, 0, sizeof(ss));
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' &&
	    n - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) ==
	    1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, host,
			   &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return false;
	free(c->addrs);
	if ((c->addrs = malloc(sizeof(*c->addrs))) == NULL) {
		c->naddrs = 0;
		c->host_idx++;
		sc_connect_next(c);
		return true;
	}
	c->addrs[0] = ss;
	c->naddrs = 1;
	c->addr_idx = 0;
	c->ntried++;
	sc_connect_addr(c);
	return true;
}

/*
 * Has this attempt used what it may (Postfix smtp_mx_address_limit,
 * smtp_mx_session_limit, and a deadline)?  A site of many hosts with many
 * addresses, all dead or tarpits, must not keep one attempt going for
 * ever.  Says so once, and adds it to the reason the jobs get.
 */
static bool
sc_attempt_over(struct smtp_client *c)
{
	const char *limit;
	size_t n;

	if (c->ntried >= c->t.max_mx_addresses)
		limit = "max_mx_addresses";
	else if (c->nsessions >= c->t.max_mx_sessions)
		limit = "max_mx_sessions";
	else if (util_mono_ms() + SC_ATTEMPT_SLACK_MS >= c->deadline_ms)
		limit = "attempt_timeout";
	else
		return false;
	/* Nothing left to try anyway: no need to say more. */
	if (!(c->addrs != NULL && c->addr_idx < c->naddrs) &&
	    (c->addrs != NULL ? c->host_idx + 1 : c->host_idx) >= c->t.nhosts)
		return false;
	log_info("smtp-out %s: attempt ended after %u address(es) and %u "
		 "session(s): %s reached",
		 c->t.hosts[0].name, c->ntried, c->nsessions, limit);
	n = strlen(c->fail_text);
	snprintf(c->fail_text + n, sizeof(c->fail_text) - n,
		 " (attempt ended: %s reached)", limit);
	return true;
}

/* The next address of this host, or the next host, or give up. */
void
sc_connect_next(struct smtp_client *c)
{
	if (sc_attempt_over(c)) {
		sc_finish(c, true);
		return;
	}
	if (c->addrs != NULL && c->addr_idx < c->naddrs) {
		c->ntried++;
		sc_connect_addr(c);
		return;
	}
	if (c->addrs != NULL) {
		free(c->addrs);
		c->addrs = NULL;
		c->naddrs = 0;
		c->host_idx++;
	}
	if (c->host_idx >= c->t.nhosts) {
		sc_finish(c, true);
		return;
	}
	c->in_clear = false;
	sc_tlsa_free(c);
	if (sc_literal(c, sc_host(c)))
		return;
	if (c->t.dane && c->env->dns != NULL) {
		char name[300];

		snprintf(name, sizeof(name), "_%u._tcp.%s", c->t.port,
			 sc_host(c));
		sc_enter(c, SC_RESOLVE);
		c->dq = dns_tlsa_lookup(c->env->dns, name, sc_tlsa_cb, c);
		if (c->dq != NULL)
			return;
	}
	sc_host_resolve(c);
}

/* The current host's addresses (its TLSA records known, if wanted). */
static void
sc_host_resolve(struct smtp_client *c)
{
	if (c->env->dns == NULL) {
		c->fail_stage = OS_CONNECT;
		c->fail_code = 0;
		snprintf(c->fail_text, sizeof(c->fail_text),
			 "no DNS resolver to look up %s", sc_host(c));
		c->host_idx++;
		sc_connect_next(c);
		return;
	}
	sc_enter(c, SC_RESOLVE);
	c->dq =
	    dns_addr_lookup(c->env->dns, sc_host(c), AF_UNSPEC, sc_addr_cb, c);
}

/* Session set-up ------------------------------------------------------ */

/* The name we greet with. */
const char *
sc_helo_name(const struct smtp_client *c)
{
	return c->t.ehlo;
}

void
sc_ehlo(struct smtp_client *c)
{
	c->caps = 0;
	c->size_max = 0;
	sc_send(c, OS_EHLO, "EHLO %s\r\n", sc_helo_name(c));
	sc_enter(c, SC_EHLO);
}

static const struct sc_keyword {
	const char *name;
	unsigned cap;
} sc_keywords[] = {
	{ "PIPELINING", CAP_PIPELINING }, { "8BITMIME", CAP_8BITMIME },
	{ "SMTPUTF8", CAP_SMTPUTF8 },     { "STARTTLS", CAP_STARTTLS },
	{ "CHUNKING", CAP_CHUNKING },     { "SIZE", CAP_SIZE },
};

/* "SIZE 12345": the limit, 0 if none is given or it is not a number. */
static uint64_t
sc_size_param(const char *p)
{
	uint64_t v = 0;

	if (*p++ != ' ')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return *p == '\0' || *p == ' ' ? v : 0;
}

/* One keyword line of an EHLO reply (every line after the first, however
 * long the reply: SC_REPLY_MAX_BYTES bounds it). */
void
sc_ehlo_keyword(struct smtp_client *c, const char *kw)
{
	size_t n = strcspn(kw, " "), i;

	for (i = 0; i < sizeof(sc_keywords) / sizeof(sc_keywords[0]); i++) {
		if (strlen(sc_keywords[i].name) != n ||
		    strncasecmp(kw, sc_keywords[i].name, n) != 0)
			continue;
		c->rcaps |= sc_keywords[i].cap;
		if (sc_keywords[i].cap == CAP_SIZE)
			c->rsize = sc_size_param(kw + n);
		return;
	}
}

/* The policy for the current host: DANE's when its TLSA records apply,
 * else the target's (dane: as may; dane-only never gets here without). */
enum conf_tls_policy
sc_policy(const struct smtp_client *c)
{
	if (c->dane == SC_DANE_VERIFY)
		return CONF_TLSP_VERIFY;
	if (c->dane == SC_DANE_ENCRYPT)
		return CONF_TLSP_ENCRYPT;
	if (c->t.tls == CONF_TLSP_DANE)
		return CONF_TLSP_MAY;
	if (c->t.tls == CONF_TLSP_DANE_ONLY)
		return CONF_TLSP_VERIFY;
	return c->t.tls;
}

bool
smtp_client_dane(const struct smtp_client *c)
{
	return c->dane != SC_DANE_NONE;
}

void
sc_tlsa_free(struct smtp_client *c)
{
	size_t i;

	for (i = 0; i < c->ntlsa; i++)
		free((void *)c->tlsa[i].data);
	free(c->tlsa);
	c->tlsa = NULL;
	c->ntlsa = 0;
	c->dane = SC_DANE_NONE;
}

void
sc_ready(struct smtp_client *c)
{
	if (!c->usable)
		sc_session_report(c);
	c->usable = true;
	sc_enter(c, SC_IDLE);
	c->cb->ready(c, c->cbarg);
}

/* EHLO answered 250: STARTTLS if we should, else ready. */
void
sc_after_ehlo(struct smtp_client *c)
{
	enum conf_tls_policy pol = sc_policy(c);
	struct smtp_client_host *h = &c->t.hosts[c->host_idx];

	if (c->tls || pol == CONF_TLSP_NONE || c->in_clear) {
		sc_ready(c);
		return;
	}
	if (!(c->caps & CAP_STARTTLS)) {
		c->tls_failure = "starttls-not-supported";
		if (pol == CONF_TLSP_MAY) {
			sc_ready(c);
			return;
		}
		sc_write(c, "QUIT\r\n");
		sc_host_failed(
		    c, OS_STARTTLS, 0,
		    "TLS required by policy but STARTTLS not offered");
		return;
	}
	if (pol == CONF_TLSP_MAY && sc_host_notls(h)) {
		/* TLS failed with this host a moment ago */
		c->tls_failure = "validation-failure";
		sc_ready(c);
		return;
	}
	sc_send(c, OS_STARTTLS, "STARTTLS\r\n");
	sc_enter(c, SC_STARTTLS);
}

/*
 * A site's hosts are shared by its connections, which live on several
 * delivery loops: what one learns of a host (its TLS session, a STARTTLS
 * that failed) is read and written under this lock, a few times per
 * connection, never per message.
 */
static pthread_mutex_t sc_host_mu = PTHREAD_MUTEX_INITIALIZER;
/* The last session of each host by "name:port", for a connection whose
 * site has none yet: the scheduler's shards each have sites of their own
 * (one reference each, under sc_host_mu). */
static struct htab sc_sessions;
static bool sc_sessions_ready;

/* HOST's last session from any site (a reference of the caller's), or
 * NULL.  Under sc_host_mu. */
static SSL_SESSION *
sc_session_shared(const struct smtp_client *c, const char *host)
{
	char key[300];
	SSL_SESSION *s;

	if (!sc_sessions_ready)
		return NULL;
	snprintf(key, sizeof(key), "%s:%u", host, c->t.port);
	if ((s = htab_get(&sc_sessions, key)) != NULL)
		SSL_SESSION_up_ref(s);
	return s;
}

/* SESS (a reference taken here) is HOST's last session.  Under
 * sc_host_mu. */
static void
sc_session_share(const struct smtp_client *c, const char *host,
		 SSL_SESSION *sess)
{
	char key[300];
	SSL_SESSION *old;

	if (!sc_sessions_ready && htab_init(&sc_sessions) == 0)
		sc_sessions_ready = true;
	if (!sc_sessions_ready)
		return;
	snprintf(key, sizeof(key), "%s:%u", host, c->t.port);
	old = htab_del(&sc_sessions, key);
	SSL_SESSION_up_ref(sess);
	if (htab_put(&sc_sessions, key, sess) != 0)
		SSL_SESSION_free(sess);
	if (old != NULL)
		SSL_SESSION_free(old);
}

void
smtp_client_tls_free(void)
{
	struct htab_entry *e;
	size_t it;

	if (!sc_sessions_ready)
		return;
	for (e = htab_first(&sc_sessions, &it); e != NULL;
	     e = htab_next(&sc_sessions, e, &it))
		SSL_SESSION_free(e->value);
	htab_free(&sc_sessions);
	sc_sessions_ready = false;
}

bool
sc_host_notls(const struct smtp_client_host *h)
{
	int64_t until;

	pthread_mutex_lock(&sc_host_mu);
	until = h->notls_until_ms;
	pthread_mutex_unlock(&sc_host_mu);
	return until > util_mono_ms();
}

void
sc_host_notls_set(struct smtp_client_host *h)
{
	int64_t until = util_mono_ms() + SC_NOTLS_MS;

	pthread_mutex_lock(&sc_host_mu);
	h->notls_until_ms = until;
	pthread_mutex_unlock(&sc_host_mu);
}

/* Enable DANE on SSL for HOST with the host's TLSA records: 0, or -1 when
 * OpenSSL takes none of them. */
static int
sc_tls_dane(struct smtp_client *c, SSL *ssl, const char *host)
{
	size_t i;
	int added = 0;

	if (SSL_dane_enable(ssl, host) <= 0)
		return -1;
	for (i = 0; i < c->ntlsa; i++) {
		const struct dns_tlsa *t = &c->tlsa[i];

		if (SSL_dane_tlsa_add(ssl, t->usage, t->selector, t->mtype,
				      t->data, t->len) > 0)
			added++;
	}
	return added > 0 ? 0 : -1;
}

void
sc_tls_begin(struct smtp_client *c)
{
	struct smtp_client_host *h = &c->t.hosts[c->host_idx];
	SSL *ssl;

	if ((ssl = SSL_new(c->env->ssl_ctx)) == NULL) {
		sc_fail(c, OS_TLS, 0, "SSL_new failed");
		return;
	}
	/* SNI and the name to verify: the MX host name (RFC 7672 style
	 * would want DANE; here verification is recorded, per policy). */
	SSL_set_tlsext_host_name(ssl, h->name);
	if (c->dane == SC_DANE_VERIFY) {
		/* DANE: the TLSA records decide (RFC 7672 3); the MX host name
		 * is the reference for a DANE-TA(2) chain's name check.  No
		 * resumption: a session does not carry its TLSA match. */
		if (sc_tls_dane(c, ssl, h->name) != 0) {
			SSL_free(ssl);
			c->tls_failure = "tlsa-invalid";
			sc_host_failed(c, OS_TLS, 0,
				       "DANE: no TLSA record OpenSSL can use");
			return;
		}
	} else {
		SSL_set1_host(ssl, h->name);
		SSL_SESSION *shared = NULL;

		pthread_mutex_lock(&sc_host_mu);
		if (h->session != NULL)
			SSL_set_session(ssl, h->session); /* its own ref. */
		else if ((shared = sc_session_shared(c, h->name)) != NULL)
			SSL_set_session(ssl, shared);
		pthread_mutex_unlock(&sc_host_mu);
		if (shared != NULL)
			SSL_SESSION_free(shared);
	}
	SSL_set_app_data(ssl, c); /* for sc_tls_session_cb */
	/* Anything the server sent after 220 and before the handshake is
	 * dropped with the plain bufferevent (mirror of CVE-2011-0411).  The
	 * descriptor is taken from it first, so that its finalization (after
	 * this callback) leaves the TLS bufferevent's registration alone. */
	sc_rd_stop(c);
	(void)bufferevent_setfd(c->bev, -1);
	bufferevent_free(c->bev);
	c->bev = bufferevent_openssl_socket_new(c->env->base, c->fd, ssl,
						BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		SSL_free(ssl);
		sc_fail(c, OS_TLS, 0, "TLS set-up failed");
		return;
	}
	c->fd = -1;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, sc_read_cb, sc_write_cb, sc_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	sc_enter(c, SC_TLS);
}

/*
 * A session the server lets us resume: kept per MX host for the next
 * connection.  TLS 1.3 sends its tickets after the handshake (read with the
 * EHLO reply), so they are taken here, not at the handshake's end.  Returns
 * 1: the session is ours (OpenSSL's reference passes to the host).
 */
static int
sc_tls_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct smtp_client *c = SSL_get_app_data(ssl);
	struct smtp_client_host *h;
	SSL_SESSION *old;

	if (c == NULL || c->host_idx >= c->t.nhosts)
		return 0;
	h = &c->t.hosts[c->host_idx];
	pthread_mutex_lock(&sc_host_mu);
	old = h->session;
	h->session = sess;
	sc_session_share(c, h->name, sess);
	pthread_mutex_unlock(&sc_host_mu);
	if (old != NULL)
		SSL_SESSION_free(old);
	return 1;
}

void
smtp_client_tls_init(SSL_CTX *ctx)
{
	SSL_CTX_sess_set_new_cb(ctx, sc_tls_session_cb);
	/* DANE per connection (sc_tls_dane) needs it enabled here once. */
	if (SSL_CTX_dane_enable(ctx) <= 0)
		log_warnx("smtp-out: OpenSSL refused DANE: TLSA records "
			  "will not be matched");
}

/* RFC 8460's result type for a certificate that did not verify (RC from
 * SSL_get_verify_result), NULL when it did. */
static const char *
sc_tls_verify_failure(long rc)
{
	switch (rc) {
	case X509_V_OK:
		return NULL;
	case X509_V_ERR_HOSTNAME_MISMATCH:
		return "certificate-host-mismatch";
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "certificate-expired";
	case X509_V_ERR_DANE_NO_MATCH:
		return "validation-failure"; /* no TLSA record matched */
	default:
		return "certificate-not-trusted";
	}
}

const char *
smtp_client_tls_failure(const struct smtp_client *c)
{
	return c->tls_failure;
}

void
sc_tls_done(struct smtp_client *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

	c->tls = true;
	c->tls_verified = SSL_get_verify_result(ssl) == X509_V_OK;
	c->tls_failure = sc_tls_verify_failure(SSL_get_verify_result(ssl));
	STATS_INC(tls_handshakes);
	log_debug("smtp-out %s: %s %s%s%s", c->remote, SSL_get_version(ssl),
		  SSL_get_cipher_name(ssl),
		  c->tls_verified ? ", certificate verified" : ", not verified",
		  SSL_session_reused(ssl) ? ", resumed" : "");
	if (sc_policy(c) == CONF_TLSP_VERIFY && !c->tls_verified) {
		char why[200];

		snprintf(
		    why, sizeof(why),
		    "certificate verification failed: "
		    "%s",
		    X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
		sc_write(c, "QUIT\r\n");
		sc_host_failed(c, OS_TLS, 0, why);
		return;
	}
	sc_ehlo(c);
}

/* tls=may and the handshake failed: this host goes in clear for a while;
 * reconnect to the same address without STARTTLS. */
void
sc_tls_failed(struct smtp_client *c, const char *why)
{
	struct smtp_client_host *h = &c->t.hosts[c->host_idx];

	STATS_INC(tls_failures);
	c->tls_failure = "validation-failure";
	if (sc_policy(c) != CONF_TLSP_MAY) {
		sc_host_failed(c, OS_TLS, 0, why);
		return;
	}
	log_info("smtp-out %s: TLS handshake failed (%s); retrying in clear "
		 "text (tls=may)",
		 c->remote, why);
	sc_host_notls_set(h);
	sc_close_socket(c);
	c->in_clear = true;
	sc_connect_addr(c);
}
