/*
 * https.c — https.h on libcurl's multi interface and libevent: one event
 * per curl socket, one timer for curl's timeouts; each request resolves its
 * host with the scheduler's resolver first.
 *
 * Owns: the multi handle, the requests under way (struct https_xfer).
 * Must not: let curl resolve a name or open a socket to an address the
 * resolver did not give; call a callback from within https_start.
 * Thread: the scheduler's loop (https_init, https_free: main, outside it).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/deliver/https.h"

#define HTTPS_ADDRS_MAX 8  /* addresses of a host given to curl */
#define HTTPS_MAX_XFERS 64 /* transfers at once (more wait in curl) */

struct https_xfer {
	https_cb *cb;
	void *arg;
	char *url, *host, *ctype_req;
	unsigned port;
	void *body;
	size_t body_len, max;
	char what[200];
	struct dns_query *q;
	CURL *easy;
	struct curl_slist *resolve, *headers;
	char errbuf[CURL_ERROR_SIZE];
	char *resp;
	size_t resp_len;
	bool too_big;
	struct sockaddr_storage addrs[HTTPS_ADDRS_MAX];
	size_t naddrs;
	struct event *fail_ev; /* a failure answered on the next turn */
	char fail_err[300];
	struct https_xfer *prev, *next;
};

static struct {
	struct event_base *base;
	struct dns_resolver *dns;
	char *ca_file, *ca_path;
	bool loopback_only;
	CURLM *multi;
	struct event *timer;
	struct https_xfer *all;
	bool curl_init;
} hs;

static void
https_xfer_free(struct https_xfer *x)
{
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		hs.all = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	if (x->q != NULL)
		dns_cancel(x->q);
	if (x->easy != NULL) {
		curl_multi_remove_handle(hs.multi, x->easy);
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->resolve);
	curl_slist_free_all(x->headers);
	if (x->fail_ev != NULL)
		event_free(x->fail_ev);
	free(x->url);
	free(x->host);
	free(x->ctype_req);
	free(x->body);
	free(x->resp);
	free(x);
}

/* X ends with R: its callback, then it is gone. */
static void
https_finish(struct https_xfer *x, const struct https_response *r)
{
	https_cb *cb = x->cb;
	void *arg = x->arg;

	https_xfer_free(x);
	cb(r, arg);
}

static void
https_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct https_xfer *x = arg;
	struct https_response r;

	(void)fd;
	(void)what;
	memset(&r, 0, sizeof(r));
	r.fail = HTTPS_FETCH;
	r.err = x->fail_err;
	https_finish(x, &r);
}

/* X failed (WHY): answered on the next loop turn. */
static void
https_fail_later(struct https_xfer *x, const char *why)
{
	snprintf(x->fail_err, sizeof(x->fail_err), "%s", why);
	if (x->fail_ev == NULL &&
	    (x->fail_ev = event_new(hs.base, -1, 0, https_fail_cb, x)) == NULL)
		return; /* no memory: it ends with https_free */
	event_active(x->fail_ev, EV_TIMEOUT, 0);
}

/* curl on libevent ---------------------------------------------------- */

static void https_check_done(void);

static void
https_sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	int running, flags = 0;

	(void)arg;
	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(hs.multi, fd, flags, &running);
	https_check_done();
}

static int
https_sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct event *ev = socketp;
	short kind;

	(void)easy;
	(void)userp;
	if (ev != NULL)
		event_free(ev);
	if (what == CURL_POLL_REMOVE) {
		curl_multi_assign(hs.multi, s, NULL);
		return 0;
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	       ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	ev = event_new(hs.base, s, kind, https_sock_event_cb, NULL);
	if (ev == NULL || event_add(ev, NULL) != 0) {
		if (ev != NULL)
			event_free(ev);
		curl_multi_assign(hs.multi, s, NULL);
		return -1;
	}
	curl_multi_assign(hs.multi, s, ev);
	return 0;
}

static void
https_timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	int running;

	(void)fd;
	(void)what;
	(void)arg;
	curl_multi_socket_action(hs.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	https_check_done();
}

static int
https_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct timeval tv;

	(void)multi;
	(void)userp;
	if (timeout_ms < 0) {
		evtimer_del(hs.timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(hs.timer, &tv);
}

static bool
https_addr_same(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr,
			      sizeof(struct in_addr)) == 0;
	if (a->sa_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr,
			      sizeof(struct in6_addr)) == 0;
	return false;
}

/* Curl opens only a socket to an address the resolver gave. */
static curl_socket_t
https_open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct https_xfer *x = clientp;
	size_t i;

	(void)purpose;
	for (i = 0; i < x->naddrs; i++)
		if (https_addr_same((const struct sockaddr *)&x->addrs[i],
				    &a->addr))
			return socket(a->family, a->socktype | SOCK_CLOEXEC,
				      a->protocol);
	log_warnx("%s: curl wanted an address the resolver did not give; "
		  "refused",
		  x->what);
	return CURL_SOCKET_BAD;
}

static size_t
https_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct https_xfer *x = userdata;
	size_t n = size * nmemb;
	char *b;

	if (x->resp_len + n > x->max) {
		x->too_big = true;
		return 0; /* curl stops: CURLE_WRITE_ERROR */
	}
	if ((b = realloc(x->resp, x->resp_len + n + 1)) == NULL)
		return 0;
	memcpy(b + x->resp_len, ptr, n);
	x->resp = b;
	x->resp_len += n;
	x->resp[x->resp_len] = '\0';
	return n;
}

static void
https_done(struct https_xfer *x, CURLcode rc)
{
	struct https_response r;
	char *ctype = NULL;

	memset(&r, 0, sizeof(r));
	if (rc == CURLE_PEER_FAILED_VERIFICATION ||
	    rc == CURLE_SSL_CACERT_BADFILE) {
		r.fail = HTTPS_TLS;
		r.err = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	} else if (rc != CURLE_OK) {
		r.fail = HTTPS_FETCH;
		r.err = x->too_big     ? "the answer is too large"
			: x->errbuf[0] ? x->errbuf
				       : curl_easy_strerror(rc);
	} else {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
		curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ctype);
		r.ctype = ctype;
		r.body = x->resp != NULL ? x->resp : "";
		r.len = x->resp_len;
	}
	/* R points into X (and its handle): answer before X goes. */
	x->cb(&r, x->arg);
	x->cb = NULL;
	https_xfer_free(x);
}

static void
https_check_done(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(hs.multi, &left)) != NULL) {
		struct https_xfer *x = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
				  (char **)&x);
		if (x != NULL)
			https_done(x, m->data.result);
	}
}

/* The host's addresses are known: hand the request to curl. */
static void
https_transfer(struct https_xfer *x)
{
	char line[1024];
	size_t i, off;

	off = (size_t)snprintf(line, sizeof(line), "%s:%u:", x->host, x->port);
	for (i = 0; i < x->naddrs && off < sizeof(line); i++) {
		const struct sockaddr *sa =
		    (const struct sockaddr *)&x->addrs[i];
		char a[INET6_ADDRSTRLEN];

		inet_ntop(sa->sa_family,
			  sa->sa_family == AF_INET
			      ? (const void *)&((const struct sockaddr_in *)sa)
				    ->sin_addr
			      : (const void *)&((const struct sockaddr_in6 *)sa)
				    ->sin6_addr,
			  a, sizeof(a));
		off += (size_t)snprintf(line + off, sizeof(line) - off,
					sa->sa_family == AF_INET6 ? "%s[%s]"
								  : "%s%s",
					i ? "," : "", a);
	}
	if (off >= sizeof(line) || (x->easy = curl_easy_init()) == NULL ||
	    (x->resolve = curl_slist_append(NULL, line)) == NULL) {
		https_fail_later(x, "out of memory");
		return;
	}
	curl_easy_setopt(x->easy, CURLOPT_URL, x->url);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_RESOLVE, x->resolve);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, https_open_cb);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(x->easy, CURLOPT_PROXY, "");
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)HTTPS_TIMEOUT_MS);
	curl_easy_setopt(x->easy, CURLOPT_MAXFILESIZE_LARGE,
			 (curl_off_t)x->max);
	curl_easy_setopt(x->easy, CURLOPT_SSLVERSION,
			 (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT,
			 "Outpost/" OUTPOST_VERSION);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, https_write_cb);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	if (hs.ca_file != NULL)
		curl_easy_setopt(x->easy, CURLOPT_CAINFO, hs.ca_file);
	if (hs.ca_path != NULL)
		curl_easy_setopt(x->easy, CURLOPT_CAPATH, hs.ca_path);
	if (x->ctype_req != NULL) {
		char h[300];

		snprintf(h, sizeof(h), "Content-Type: %s", x->ctype_req);
		if ((x->headers = curl_slist_append(NULL, h)) == NULL) {
			https_fail_later(x, "out of memory");
			return;
		}
		curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)x->body_len);
	}
	if (curl_multi_add_handle(hs.multi, x->easy) != CURLM_OK)
		https_fail_later(x, "curl_multi_add_handle failed");
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
		https_fail_later(x, why);
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
		https_fail_later(x, hs.loopback_only
					? "the host is not on loopback "
					  "(loopback_only)"
					: "the host has no public address (a "
					  "private, loopback or link-local one "
					  "is never fetched from)");
		return;
	}
	https_transfer(x);
}

/* URL's scheme (https only), host and port into X.  0, or -1. */
static int
https_url(struct https_xfer *x, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int rc = -1;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    strcmp(scheme, "https") != 0 ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
		CURLUE_OK)
		goto out;
	x->port = (unsigned)strtoul(port, NULL, 10);
	/* an IPv6 literal comes in brackets: the resolver wants it bare */
	if (host[0] == '[') {
		size_t n = strlen(host);

		memmove(host, host + 1, n);
		if (n >= 2 && host[n - 2] == ']')
			host[n - 2] = '\0';
	}
	if ((x->host = strdup(host)) != NULL && x->port > 0 && x->port < 65536)
		rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	if (u != NULL)
		curl_url_cleanup(u);
	return rc;
}

struct https_xfer *
https_start(const struct https_request *req, https_cb *cb, void *arg)
{
	struct https_xfer *x;

	if ((x = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	x->cb = cb;
	x->arg = arg;
	x->max = req->max_response;
	snprintf(x->what, sizeof(x->what), "%s",
		 req->what != NULL ? req->what : "https");
	if (https_url(x, req->url) != 0 ||
	    (x->url = strdup(req->url)) == NULL ||
	    (req->ctype != NULL &&
	     ((x->ctype_req = strdup(req->ctype)) == NULL ||
	      (x->body = malloc(req->body_len + 1)) == NULL))) {
		free(x->host);
		free(x->url);
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
	if (hs.dns == NULL) {
		https_fail_later(x, "no DNS resolver");
		return x;
	}
	x->q = dns_addr_lookup(hs.dns, x->host, AF_UNSPEC, https_addr_cb, x);
	if (x->q == NULL)
		https_fail_later(x, "out of memory");
	return x;
}

void
https_cancel(struct https_xfer *x)
{
	https_xfer_free(x);
}

int
https_init(struct event_base *base, struct dns_resolver *dns,
	   const char *ca_file, const char *ca_path, bool loopback_only,
	   char *err, size_t errlen)
{
	memset(&hs, 0, sizeof(hs));
	hs.base = base;
	hs.dns = dns;
	hs.loopback_only = loopback_only;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "https: curl_global_init failed");
		return -1;
	}
	hs.curl_init = true;
	if ((ca_file != NULL && (hs.ca_file = strdup(ca_file)) == NULL) ||
	    (ca_path != NULL && (hs.ca_path = strdup(ca_path)) == NULL) ||
	    (hs.timer = evtimer_new(base, https_timer_event_cb, NULL)) ==
		NULL ||
	    (hs.multi = curl_multi_init()) == NULL) {
		snprintf(err, errlen, "https: out of memory");
		return -1;
	}
	curl_multi_setopt(hs.multi, CURLMOPT_SOCKETFUNCTION, https_sock_cb);
	curl_multi_setopt(hs.multi, CURLMOPT_TIMERFUNCTION, https_timer_cb);
	curl_multi_setopt(hs.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
			  (long)HTTPS_MAX_XFERS);
	return 0;
}

void
https_free(void)
{
	while (hs.all != NULL)
		https_xfer_free(hs.all);
	if (hs.multi != NULL)
		curl_multi_cleanup(hs.multi);
	if (hs.timer != NULL)
		event_free(hs.timer);
	free(hs.ca_file);
	free(hs.ca_path);
	if (hs.curl_init)
		curl_global_cleanup();
	memset(&hs, 0, sizeof(hs));
}
