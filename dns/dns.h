/*
 * dns.h — asynchronous DNS for Outpost: c-ares 1.18 driven by a libevent
 * loop, with a TTL-honouring cache (positive and negative).
 *
 * One resolver per event loop; a resolver and everything it hands out belong
 * to that loop's thread (no locking).  Callbacks are always called from the
 * loop, never from inside the lookup call that started them (a cache hit is
 * delivered on the next loop iteration), and never after dns_cancel() or
 * dns_resolver_free().
 *
 * Safety: when dns_config.servers is NULL, c-ares reads /etc/resolv.conf
 * (production).  With dns_config.loopback_only set, a resolver refuses to
 * start unless every configured server is a loopback address, and refuses
 * (DNS_TEMPFAIL) any answer address outside 127.0.0.0/8 and ::1, so that a
 * test suite cannot reach the network through it.
 */
#ifndef OUTPOST_DNS_H
#define OUTPOST_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct dns_resolver;
struct dns_query; /* a pending lookup, for dns_cancel() */

/* Questions in flight per resolver when dns_config.max_inflight is 0. */
#define DNS_MAX_INFLIGHT_DEFAULT 256

struct dns_config {
	const char *servers; /* "127.0.0.1:5300,[::1]:5300"; NULL = system */
	unsigned timeout_ms; /* per try (default 2000) */
	unsigned tries;      /* default 2 */
	unsigned cache_max;  /* entries; 0 = default 100000 */
	bool no_cache;       /* keep no answer: every lookup asks (identical
				questions at once are still asked once) */
	uint32_t min_ttl;    /* clamp positive TTLs up to this (s), default 0 */
	uint32_t max_ttl;    /* and down to this, default 86400 */
	uint32_t negative_ttl_max; /* cap for NXDOMAIN/NODATA caching, default
				      3600; the SOA minimum is used below it */
	uint32_t
	    tempfail_ttl;   /* cache SERVFAIL/timeouts this long, default 5 */
	bool loopback_only; /* see above */
	/* Questions asked of the servers at once, default 256.  Beyond it a
	 * question waits its turn in FIFO order (at most cache_max of them
	 * wait; past that a lookup is answered DNS_TEMPFAIL at once), and one
	 * that waited timeout_ms x tries is answered DNS_TEMPFAIL without
	 * being asked.  Identical questions are asked once, whether waiting
	 * or in flight, and answered to every lookup that wants them. */
	unsigned max_inflight;
	/* The servers validate DNSSEC (a validating resolver on loopback,
	 * unbound say): every question asks for the AD bit (RFC 6840 5.7)
	 * and an answer that carries it is reported secure.  Without it no
	 * answer is ever secure. */
	bool dnssec;
};

enum dns_result {
	DNS_OK,
	DNS_TEMPFAIL, /* timeout, SERVFAIL, REFUSED, no server: try later */
	DNS_NXDOMAIN, /* the name does not exist */
	DNS_NODATA,   /* the name exists, no record of that type */
	DNS_NULLMX,   /* RFC 7505: the domain accepts no mail */
	DNS_BADNAME,  /* not a valid domain name (syntax) */
};

const char *dns_result_str(enum dns_result r);

/*
 * dns_resolver_new — a resolver on BASE.  Returns NULL with err set (bad
 * server list, loopback_only violated, c-ares failure).  Loop thread.
 */
struct dns_resolver *dns_resolver_new(struct event_base *base,
				      const struct dns_config *cfg, char *err,
				      size_t errlen);
/* dns_resolver_free — cancel everything pending (no callbacks), free. */
void dns_resolver_free(struct dns_resolver *r);

/* MX ------------------------------------------------------------------ */

struct dns_mx_host {
	char *name; /* lower-case, no trailing dot */
	uint16_t pref;
};

struct dns_mx_reply {
	enum dns_result result;
	/* DNS_OK: hosts in preference order, equal preferences shuffled anew
	 * for every reply.  When the domain has no MX but exists (NODATA),
	 * result is DNS_OK with implicit = true and one host: the domain
	 * itself (RFC 5321 5.1).  MX hosts that are IP literals ("1.2.3.4",
	 * "[1.2.3.4]") are dropped (refused by RFC 5321 5.1); if nothing is
	 * left the result is DNS_NODATA with err saying so. */
	struct dns_mx_host *hosts;
	size_t nhosts;
	bool implicit;
	bool secure;   /* dns_config.dnssec and the answer was validated */
	uint32_t ttl;  /* seconds the answer stays valid (from the cache) */
	char err[128]; /* a short reason when result != DNS_OK */
};

/*
 * dns_mx_lookup — MX of DOMAIN.  CB(reply, arg) gets a reply that is only
 * valid during the call.  Returns a handle for dns_cancel().  Loop thread.
 */
struct dns_query *dns_mx_lookup(struct dns_resolver *r, const char *domain,
				void (*cb)(const struct dns_mx_reply *reply,
					   void *arg),
				void *arg);

/* Addresses (A and AAAA) ---------------------------------------------- */

struct dns_addr_reply {
	enum dns_result result;         /* DNS_OK when at least one address */
	struct sockaddr_storage *addrs; /* port 0; IPv6 first if any (as
					   received), then IPv4 */
	size_t naddrs;
	uint32_t ttl;
	char err[128];
};

/* dns_addr_lookup — A and AAAA of HOST (CNAMEs followed; /etc/hosts never
 * read).  FAMILY: AF_UNSPEC, AF_INET or AF_INET6. */
struct dns_query *
dns_addr_lookup(struct dns_resolver *r, const char *host, int family,
		void (*cb)(const struct dns_addr_reply *reply, void *arg),
		void *arg);

/* TXT ----------------------------------------------------------------- */

struct dns_txt_reply {
	enum dns_result result;
	char **txts;  /* one per TXT record, its character-strings joined */
	size_t *lens; /* byte lengths (a TXT may hold NUL bytes) */
	size_t ntxts;
	uint32_t ttl;
	char err[128];
};

struct dns_query *dns_txt_lookup(struct dns_resolver *r, const char *name,
				 void (*cb)(const struct dns_txt_reply *reply,
					    void *arg),
				 void *arg);

/* TLSA (RFC 6698) --------------------------------------------------- */

struct dns_tlsa {
	uint8_t usage, selector, mtype;
	const uint8_t *data; /* the certificate association data */
	size_t len;
};

/*
 * DNS_OK with at least one record; SECURE whether the answer was validated
 * (dns_config.dnssec and the AD bit) — a denial (NXDOMAIN, NODATA) carries
 * it too, which is what tells "no TLSA, for sure" from "no TLSA, unsigned".
 */
struct dns_tlsa_reply {
	enum dns_result result;
	bool secure;
	struct dns_tlsa *recs; /* valid during the callback only */
	size_t nrecs;
	uint32_t ttl;
	char err[128];
};

/* dns_tlsa_lookup — the TLSA records of NAME ("_25._tcp.mx.example.com"). */
struct dns_query *dns_tlsa_lookup(struct dns_resolver *r, const char *name,
				  void (*cb)(const struct dns_tlsa_reply *reply,
					     void *arg),
				  void *arg);

/* dns_cancel — the callback of Q will not be called.  Q must be pending
 * (not yet called back). */
void dns_cancel(struct dns_query *q);

struct dns_stats {
	uint64_t queries; /* sent to servers */
	uint64_t cache_hits;
	uint64_t cache_misses;
	uint64_t timeouts;
	uint64_t cache_entries;
	uint64_t inflight;      /* questions asked, not yet answered (now) */
	uint64_t inflight_peak; /* the most ever in flight at once */
	uint64_t waiting;       /* questions waiting for a slot (now) */
	uint64_t
	    wait_timeouts; /* answered DNS_TEMPFAIL after waiting too long */
	uint64_t wait_refused; /* lookups refused: too many waiting */
};
void dns_stats_get(struct dns_resolver *r, struct dns_stats *st);

/*
 * dns_addr_is_loopback — whether SA is a loopback address: 127.0.0.0/8,
 * ::1, or 127.0.0.0/8 mapped into IPv6 (::ffff:127.0.0.1), which reaches
 * the same host.  Any other family is not.  The one loopback test of the
 * tree (conf/, dns/ and mta/ all use it).  Pure; any thread.
 */
bool dns_addr_is_loopback(const struct sockaddr *sa);

/*
 * dns_clock_ms — milliseconds on CLOCK_MONOTONIC: the clock the resolver's
 * cache measures TTLs on (unless a test set its own), and the one for any
 * cache of DNS-derived results (dkim/'s SPF and DMARC memos).  Immune to
 * wall-clock steps; its zero is arbitrary.  Any thread.
 */
uint64_t dns_clock_ms(void);

#endif
