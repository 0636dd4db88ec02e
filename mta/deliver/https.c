/*
 * https.c — https.h on libevent's HTTP client over OpenSSL bufferevents:
 * each request resolves its host with the scheduler's resolver, then
 * connects to one of the addresses it gave (the next one when a
 * connection fails), with SNI, the host name checked, and one request
 * per connection ("Connection: close").
 *
 * Owns: the client TLS context, the requests under way (struct https_xfer).
 * Must not: connect to an address the resolver did not give or the policy
 * refuses; follow a redirect; call a callback from within https_start.
 * Thread: the scheduler's loop (https_init, https_free: main, outside it).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/deliver/https.h"

#define HTTPS_ADDRS_MAX    8     /* addresses of a host tried in turn */
#define HTTPS_MAX_XFERS    64    /* connections at once (more wait) */
#define HTTPS_HEADERS_MAX  16384 /* bytes of an answer's header block */
#define HTTPS_IO_TIMEOUT_S 10    /* one read or write */

enum https_step {
	HX_RESOLVE, /* asking the resolver */
	HX_WAIT,    /* HTTPS_MAX_XFERS connections are busy */
	HX_HTTP,    /* connected or connecting, request sent or to send */
	HX_NEXT,    /* that address failed: the next one on the next turn */
	HX_DONE,    /* answered: the callback runs on the next turn */
};

struct https_xfer {
	enum https_step step;
	https_cb *cb;
	void *arg;
	char *host, *path, *ctype_req;
	unsigned port;
	bool host_is_ip;
	void *body;
	size_t body_len, max;
	char what[200];
	struct dns_query *q;
	struct sockaddr_storage addrs[HTTPS_ADDRS_MAX];
	size_t naddrs, ai;
	struct evhttp_connection *evcon;
	bool counted;          /* one of hs.nconn */
	struct event *timer;   /* the whole request's deadline */
	struct event *done_ev; /* the answer, given on the next turn */
	char tls_err[200];     /* why the certificate did not verify */
	char http_err[320];    /* why it failed (evhttp, DNS, timeout) */
	struct https_response r;
	char *resp, *resp_ctype;
	struct https_xfer *prev, *next;
};

static struct {
	struct event_base *base;
	struct dns_resolver *dns;
	SSL_CTX *ctx;
	int ex_idx; /* the SSL's https_xfer */
	bool loopback_only;
	struct https_xfer *all;
	size_t nconn; /* transfers holding a connection */
	bool stopping;
} hs;

static void https_connect(struct https_xfer *x);

static void
https_conn_close(struct https_xfer *x)
{
	if (x->evcon != NULL) {
		/* frees the bufferevent and its SSL, and the request
		 * without calling it back */
		evhttp_connection_free(x->evcon);
		x->evcon = NULL;
	}
	if (x->counted) {
		x->counted = false;
		hs.nconn--;
	}
}

/* A connection is free: the oldest waiting transfer takes it. */
static void
https_wake_waiting(void)
{
	struct https_xfer *x, *oldest = NULL;

	if (hs.stopping || hs.nconn >= HTTPS_MAX_XFERS)
		return;
	for (x = hs.all; x != NULL; x = x->next)
		if (x->step == HX_WAIT)
			oldest = x; /* the list is newest first */
	if (oldest != NULL)
		https_connect(oldest);
}

static void
https_xfer_free(struct https_xfer *x)
{
	bool had_conn = x->counted;

	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		hs.all = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	if (x->q != NULL)
		dns_cancel(x->q);
	https_conn_close(x);
	if (x->timer != NULL)
		event_free(x->timer);
	if (x->done_ev != NULL)
		event_free(x->done_ev);
	free(x->host);
	free(x->path);
	free(x->ctype_req);
	free(x->body);
	free(x->resp);
	free(x->resp_ctype);
	free(x);
	if (had_conn)
		https_wake_waiting();
}

/* The turn after X ended (or its address failed): its connection goes
 * (never inside evhttp's own callbacks), then the next address is tried
 * or the answer given. */
static void
https_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct https_xfer *x = arg;
	struct https_response r;

	(void)fd;
	(void)what;
	https_conn_close(x);
	if (x->step == HX_NEXT) {
		x->ai++;
		https_connect(x);
		https_wake_waiting();
		return;
	}
	r = x->r; /* R points into X: answer before X goes */
	x->cb(&r, x->arg);
	https_xfer_free(x);
	https_wake_waiting();
}

/* X moves to STEP (HX_DONE: its answer is in x->r; HX_NEXT: the next
 * address), on the next loop turn. */
static void
https_later(struct https_xfer *x, enum https_step step)
{
	x->step = step;
	if (step == HX_DONE && x->timer != NULL)
		evtimer_del(x->timer);
	if (x->done_ev == NULL &&
	    (x->done_ev = event_new(hs.base, -1, 0, https_done_cb, x)) == NULL)
		return; /* no memory: it ends with https_free */
	event_active(x->done_ev, EV_TIMEOUT, 0);
}

/* X failed (FAIL, WHY). */
static void
https_fail(struct https_xfer *x, enum https_fail fail, const char *why)
{
	memset(&x->r, 0, sizeof(x->r));
	x->r.fail = fail;
	if (why != x->http_err)
		snprintf(x->http_err, sizeof(x->http_err), "%s", why);
	x->r.err = x->http_err;
	https_later(x, HX_DONE);
}

static void
https_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct https_xfer *x = arg;

	(void)fd;
	(void)what;
	if (x->step != HX_DONE)
		https_fail(x, HTTPS_FETCH, "no answer in time");
}

/* OpenSSL's verdict on each certificate of the chain: the first reason
 * it fails is kept for the answer. */
static int
https_verify_cb(int ok, X509_STORE_CTX *sc)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
	    sc, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct https_xfer *x =
	    ssl != NULL ? SSL_get_ex_data(ssl, hs.ex_idx) : NULL;

	if (!ok && x != NULL && x->tls_err[0] == '\0')
		snprintf(x->tls_err, sizeof(x->tls_err), "certificate: %s",
			 X509_verify_cert_error_string(
			     X509_STORE_CTX_get_error(sc)));
	return ok;
}

static const char *
https_req_error_str(enum evhttp_request_error e)
{
	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		return "timed out";
	case EVREQ_HTTP_EOF:
		return "connection closed before the answer";
	case EVREQ_HTTP_INVALID_HEADER:
		return "malformed answer";
	case EVREQ_HTTP_BUFFER_ERROR:
		return "read or write error";
	case EVREQ_HTTP_REQUEST_CANCEL:
		return "cancelled";
	case EVREQ_HTTP_DATA_TOO_LONG:
		return "the answer is too large";
	}
	return "failed";
}

static void
https_req_error_cb(enum evhttp_request_error e, void *arg)
{
	struct https_xfer *x = arg;

	snprintf(x->http_err, sizeof(x->http_err), "%s",
		 https_req_error_str(e));
}

/* The answer, or (REQ NULL, or status 0) none from this address. */
static void
https_req_cb(struct evhttp_request *req, void *arg)
{
	struct https_xfer *x = arg;
	struct evbuffer *in;
	const char *ct;
	size_t n;

	if (x->step != HX_HTTP)
		return;
	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		if (x->tls_err[0] != '\0') {
			https_fail(x, HTTPS_TLS, x->tls_err);
			return;
		}
		/* no answer from this address: the next one, as long as
		 * nothing but the connection failed */
		if (x->http_err[0] == '\0' && x->ai + 1 < x->naddrs) {
			https_later(x, HX_NEXT);
			return;
		}
		https_fail(x, HTTPS_FETCH,
			   x->http_err[0] ? x->http_err
					  : "no connection, or it closed");
		return;
	}
	in = evhttp_request_get_input_buffer(req);
	n = evbuffer_get_length(in);
	if (n > x->max) {
		https_fail(x, HTTPS_FETCH, "the answer is too large");
		return;
	}
	ct = evhttp_find_header(evhttp_request_get_input_headers(req),
				"Content-Type");
	if ((x->resp = malloc(n + 1)) == NULL ||
	    (ct != NULL && (x->resp_ctype = strdup(ct)) == NULL)) {
		https_fail(x, HTTPS_FETCH, "out of memory");
		return;
	}
	evbuffer_remove(in, x->resp, n);
	x->resp[n] = '\0';
	memset(&x->r, 0, sizeof(x->r));
	x->r.fail = HTTPS_OK;
	x->r.status = evhttp_request_get_response_code(req);
	x->r.ctype = x->resp_ctype;
	x->r.body = x->resp;
	x->r.len = n;
	https_later(x, HX_DONE);
}

/* The TLS session of X to its current address, checked for its host. */
static SSL *
https_ssl_new(struct https_xfer *x)
{
	SSL *ssl;

	if ((ssl = SSL_new(hs.ctx)) == NULL)
		return NULL;
	SSL_set_ex_data(ssl, hs.ex_idx, x);
	SSL_set_verify(ssl, SSL_VERIFY_PEER, https_verify_cb);
	if (x->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
							  x->host) != 1
			  : (SSL_set_tlsext_host_name(ssl, x->host) != 1 ||
			     SSL_set1_host(ssl, x->host) != 1)) {
		SSL_free(ssl);
		return NULL;
	}
	X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(ssl),
					X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return ssl;
}

/* Connect X to addrs[ai] and send its request (or wait for a place). */
static void
https_connect(struct https_xfer *x)
{
	const struct sockaddr *sa = (const struct sockaddr *)&x->addrs[x->ai];
	struct evhttp_request *req = NULL;
	struct bufferevent *bev;
	struct evkeyvalq *h;
	char addr[INET6_ADDRSTRLEN], hosthdr[300];
	SSL *ssl;

	if (hs.nconn >= HTTPS_MAX_XFERS) {
		x->step = HX_WAIT;
		return;
	}
	x->step = HX_HTTP;
	x->counted = true;
	hs.nconn++;
	x->tls_err[0] = x->http_err[0] = '\0';
	inet_ntop(
	    sa->sa_family,
	    sa->sa_family == AF_INET
		? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
		: (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr,
	    addr, sizeof(addr));
	if ((ssl = https_ssl_new(x)) == NULL)
		goto fail;
	bev = bufferevent_openssl_socket_new(
	    hs.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		goto fail;
	}
	/* many servers close without close_notify after the answer */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	/* a numeric address: libevent connects without a lookup */
	x->evcon = evhttp_connection_base_bufferevent_new(
	    hs.base, NULL, bev, addr, (ev_uint16_t)x->port);
	if (x->evcon == NULL) {
		bufferevent_free(bev);
		goto fail;
	}
	evhttp_connection_set_timeout(x->evcon, HTTPS_IO_TIMEOUT_S);
	evhttp_connection_set_retries(x->evcon, 0);
	evhttp_connection_set_max_headers_size(x->evcon, HTTPS_HEADERS_MAX);
	evhttp_connection_set_max_body_size(x->evcon, (ev_ssize_t)x->max);
	if ((req = evhttp_request_new(https_req_cb, x)) == NULL)
		goto fail;
	evhttp_request_set_error_cb(req, https_req_error_cb);
	h = evhttp_request_get_output_headers(req);
	if (x->port == 443)
		snprintf(hosthdr, sizeof(hosthdr),
			 strchr(x->host, ':') ? "[%s]" : "%s", x->host);
	else
		snprintf(hosthdr, sizeof(hosthdr),
			 strchr(x->host, ':') ? "[%s]:%u" : "%s:%u", x->host,
			 x->port);
	if (evhttp_add_header(h, "Host", hosthdr) != 0 ||
	    evhttp_add_header(h, "User-Agent", "Outpost/" OUTPOST_VERSION) !=
		0 ||
	    evhttp_add_header(h, "Connection", "close") != 0 ||
	    (x->ctype_req != NULL &&
	     (evhttp_add_header(h, "Content-Type", x->ctype_req) != 0 ||
	      evbuffer_add(evhttp_request_get_output_buffer(req), x->body,
			   x->body_len) != 0)))
		goto fail;
	if (evhttp_make_request(x->evcon, req,
				x->ctype_req != NULL ? EVHTTP_REQ_POST
						     : EVHTTP_REQ_GET,
				x->path) != 0) {
		req = NULL; /* freed by evhttp_make_request */
		goto fail;
	}
	return;
fail:
	if (req != NULL)
		evhttp_request_free(req);
	https_fail(x, HTTPS_FETCH, "cannot start the request");
}

/*
 * Is SA an address of the public Internet?  The hosts named by other
 * people's DNS (a policy host, a report URI) must never make the daemon
 * reach into its own network (SSRF): loopback, private (RFC 1918, RFC
 * 4193), shared (RFC 6598), link-local, unspecified and multicast
 * addresses are refused, and IPv4 mapped into IPv6 is judged as IPv4.
 */
bool
https_addr_public(const struct sockaddr *sa)
{
	const uint8_t *a;
	uint32_t v4;

	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)sa)->sin6_addr;

		a = in6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			a += 12;
			goto v4;
		}
		if ((a[0] & 0xfe) == 0xfc || a[0] == 0xff ||
		    (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
			return false; /* ULA, multicast, link-local */
		return !IN6_IS_ADDR_UNSPECIFIED(in6) &&
		       !IN6_IS_ADDR_LOOPBACK(in6);
	}
	if (sa->sa_family != AF_INET)
		return false;
	a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
v4:
	v4 = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 |
	     a[3];
	return !((v4 >> 24) == 0 || (v4 >> 24) == 10 || (v4 >> 24) == 127 ||
		 (v4 & 0xffc00000u) == 0x64400000u || /* 100.64/10 */
		 (v4 & 0xffff0000u) == 0xa9fe0000u || /* 169.254/16 */
		 (v4 & 0xfff00000u) == 0xac100000u || /* 172.16/12 */
		 (v4 & 0xffff0000u) == 0xc0a80000u || /* 192.168/16 */
		 (v4 >> 28) >= 0xe);                  /* multicast, 240/4 */
}

static void
https_addr_cb(const struct dns_addr_reply *r, void *arg)
{
	struct https_xfer *x = arg;
	char why[300];
	size_t i;

	x->q = NULL;
	if (r->result != DNS_OK) {
		snprintf(why, sizeof(why), "%s: %s", x->host,
			 r->err[0] ? r->err : dns_result_str(r->result));
		https_fail(x, HTTPS_FETCH, why);
		return;
	}
	for (i = 0; i < r->naddrs && x->naddrs < HTTPS_ADDRS_MAX; i++) {
		const struct sockaddr *sa =
		    (const struct sockaddr *)&r->addrs[i];

		if (hs.loopback_only ? !dns_addr_is_loopback(sa)
				     : !https_addr_public(sa))
			continue;
		x->addrs[x->naddrs++] = r->addrs[i];
	}
	if (x->naddrs == 0) {
		https_fail(x, HTTPS_FETCH,
			   hs.loopback_only
			       ? "the host is not on loopback (loopback_only)"
			       : "the host has no public address (a private, "
				 "loopback or link-local one is never fetched "
				 "from)");
		return;
	}
	https_connect(x);
}

/* URL's host, port and path (with its query) into X: https only, no user
 * part.  0, or -1. */
static int
https_url(struct https_xfer *x, const char *url)
{
	struct evhttp_uri *u;
	const char *scheme, *host, *path, *query;
	size_t n;
	int port, rc = -1;

	if ((u = evhttp_uri_parse_with_flags(url, 0)) == NULL)
		return -1;
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	port = evhttp_uri_get_port(u);
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	if (scheme == NULL || strcasecmp(scheme, "https") != 0 ||
	    host == NULL || host[0] == '\0' ||
	    evhttp_uri_get_userinfo(u) != NULL || port == 0 || port > 65535)
		goto out;
	x->port = port < 0 ? 443 : (unsigned)port;
	/* an IPv6 literal comes in brackets: the resolver wants it bare */
	n = strlen(host);
	if (host[0] == '[') {
		if (n < 3 || host[n - 1] != ']')
			goto out;
		x->host = strndup(host + 1, n - 2);
	} else {
		x->host = strdup(host);
	}
	if (x->host == NULL)
		goto out;
	{
		struct in6_addr a6;

		x->host_is_ip = inet_pton(AF_INET6, x->host, &a6) == 1 ||
				inet_pton(AF_INET, x->host, &a6) == 1;
	}
	if (path == NULL || path[0] == '\0')
		path = "/";
	n = strlen(path) + (query != NULL ? strlen(query) + 1 : 0) + 1;
	if ((x->path = malloc(n)) == NULL)
		goto out;
	snprintf(x->path, n, "%s%s%s", path, query != NULL ? "?" : "",
		 query != NULL ? query : "");
	rc = 0;
out:
	evhttp_uri_free(u);
	return rc;
}

struct https_xfer *
https_start(const struct https_request *req, https_cb *cb, void *arg)
{
	struct https_xfer *x;
	struct timeval tv;

	if ((x = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	x->cb = cb;
	x->arg = arg;
	x->max = req->max_response;
	x->step = HX_RESOLVE;
	snprintf(x->what, sizeof(x->what), "%s",
		 req->what != NULL ? req->what : "https");
	if (https_url(x, req->url) != 0 ||
	    (x->timer = evtimer_new(hs.base, https_timeout_cb, x)) == NULL ||
	    (req->ctype != NULL &&
	     ((x->ctype_req = strdup(req->ctype)) == NULL ||
	      (x->body = malloc(req->body_len + 1)) == NULL))) {
		if (x->timer != NULL)
			event_free(x->timer);
		free(x->host);
		free(x->path);
		free(x->ctype_req);
		free(x);
		return NULL;
	}
	if (req->ctype != NULL) {
		if (req->body_len > 0)
			memcpy(x->body, req->body, req->body_len);
		x->body_len = req->body_len;
	}
	x->next = hs.all;
	if (hs.all != NULL)
		hs.all->prev = x;
	hs.all = x;
	tv.tv_sec = HTTPS_TIMEOUT_MS / 1000;
	tv.tv_usec = (HTTPS_TIMEOUT_MS % 1000) * 1000;
	evtimer_add(x->timer, &tv);
	if (hs.dns == NULL) {
		https_fail(x, HTTPS_FETCH, "no DNS resolver");
		return x;
	}
	x->q = dns_addr_lookup(hs.dns, x->host, AF_UNSPEC, https_addr_cb, x);
	if (x->q == NULL)
		https_fail(x, HTTPS_FETCH, "out of memory");
	return x;
}

void
https_cancel(struct https_xfer *x)
{
	https_xfer_free(x);
}

int
https_init(struct event_base *base, struct dns_resolver *dns, X509_STORE *store,
	   bool loopback_only, char *err, size_t errlen)
{
	memset(&hs, 0, sizeof(hs));
	hs.base = base;
	hs.dns = dns;
	hs.loopback_only = loopback_only;
	if ((hs.ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "https: SSL_CTX_new failed");
		return -1;
	}
	SSL_CTX_set_min_proto_version(hs.ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(hs.ctx,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(hs.ctx, SSL_SESS_CACHE_OFF);
	/* one copy of the trust store in memory (the system's is ~0.5 MB) */
	if (store != NULL)
		SSL_CTX_set1_cert_store(hs.ctx, store);
	hs.ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (hs.ex_idx < 0) {
		snprintf(err, errlen, "https: SSL_get_ex_new_index failed");
		return -1;
	}
	return 0;
}

void
https_free(void)
{
	hs.stopping = true;
	while (hs.all != NULL)
		https_xfer_free(hs.all);
	if (hs.ctx != NULL)
		SSL_CTX_free(hs.ctx);
	memset(&hs, 0, sizeof(hs));
}
