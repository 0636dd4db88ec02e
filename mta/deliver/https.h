/*
 * https.h — HTTPS requests on the scheduler's loop (libevent's HTTP
 * client over OpenSSL), for MTA-STS policies (GET) and TLS-RPT reports
 * (POST).
 *
 * The host's addresses come from the scheduler's resolver, and only those
 * the rules below allow are connected to.  No redirect is followed, no
 * proxy of the environment is used, only https is spoken, the certificate
 * (its chain and the host name) is checked
 * against the configured store (else the system's).  With loopback_only,
 * a host off loopback is refused; without it, a host that has only
 * private, loopback or link-local addresses is (no request made on
 * behalf of other people's DNS reaches into the daemon's own network).
 *
 * Thread: the scheduler's loop, but for https_init/https_free (main).
 * Callbacks are never called from within https_start.
 */
#ifndef OUTPOST_MTA_HTTPS_H
#define OUTPOST_MTA_HTTPS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct dns_resolver;
struct https_xfer;
struct x509_store_st;

#define HTTPS_TIMEOUT_MS 15000 /* a request, from its DNS question on */

struct https_request {
	const char *url;   /* "https://host[:port]/path" */
	const char *ctype; /* NULL: GET; else POST of BODY with this type */
	const void *body;  /* copied by https_start */
	size_t body_len;
	size_t max_response; /* bytes of the answer kept; more: failure */
	const char *what;    /* for diagnostics ("mta-sts example.com") */
};

/* How a request ended. */
enum https_fail {
	HTTPS_OK,    /* an HTTP answer (any status) */
	HTTPS_FETCH, /* no answer: DNS, connection, timeout, too large */
	HTTPS_TLS,   /* the server's certificate did not verify */
};

struct https_response {
	enum https_fail fail;
	const char *err;   /* why, when FAIL */
	long status;       /* the HTTP status (HTTPS_OK) */
	const char *ctype; /* its Content-Type, or NULL */
	const char *body;  /* NUL-ended (LEN bytes before it) */
	size_t len;
};

/* The answer to a request; R is valid during the call only. */
typedef void https_cb(const struct https_response *r, void *arg);

/*
 * https_init — requests on BASE, hosts resolved by DNS (NULL: every
 * request fails), certificates checked against STORE (the delivery
 * client's trust store, shared: a reference is taken), only loopback
 * hosts with LOOPBACK_ONLY.  0, or -1 with ERR.  Main thread, before the
 * loop runs; once.
 */
int https_init(struct event_base *base, struct dns_resolver *dns,
	       struct x509_store_st *store, bool loopback_only, char *err,
	       size_t errlen);
/* https_free — cancel what is under way (no callback) and free all.  Main
 * thread, after the loop has ended. */
void https_free(void);

/*
 * https_start — REQ (copied), answered through CB(ARG) later.  A handle
 * for https_cancel, or NULL when out of memory or the URL is not https
 * (nothing is called back then).
 */
struct https_xfer *https_start(const struct https_request *req, https_cb *cb,
			       void *arg);
/* https_cancel — X's callback will not be called.  X must be pending. */
void https_cancel(struct https_xfer *x);

/* https_addr_public — may a request (without loopback_only) go to SA?
 * Not to loopback, private (RFC 1918, RFC 4193), shared (RFC 6598),
 * link-local, unspecified, multicast or reserved addresses (IPv4 mapped
 * into IPv6 judged as IPv4).  Pure. */
struct sockaddr;
bool https_addr_public(const struct sockaddr *sa);

#endif
