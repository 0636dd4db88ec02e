/*
 * cache_int.h — private to dns/: the raw-answer walker, name syntax, and the
 * TTL cache shared by resolver.c (which drives c-ares) and cache.c (which
 * owns entries).  Also used by t/unit/dns_test.c and t/fuzz/dns_fuzz.c.
 *
 * Thread: everything here belongs to the thread of the owning resolver's
 * loop; nothing locks.
 */
#ifndef OUTPOST_DNS_CACHE_INT_H
#define OUTPOST_DNS_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns/dns.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define DNS_NAME_MAX      253 /* text, no trailing dot (RFC 1035 2.3.4) */
#define DNS_LABEL_MAX     63
#define DNS_WIRE_NAME_MAX 255 /* octets of an encoded name */
#define DNS_ERR_MAX       128 /* = sizeof(((struct dns_mx_reply *)0)->err) */
#define DNS_ADDRS_MAX     64  /* addresses kept per A or AAAA answer */

/* Record types the cache knows (RFC 1035, RFC 3596). */
enum dns_rrtype {
	DNS_RR_A = 1,
	DNS_RR_CNAME = 5,
	DNS_RR_SOA = 6,
	DNS_RR_MX = 15,
	DNS_RR_TXT = 16,
	DNS_RR_AAAA = 28,
	DNS_RR_TLSA = 52,
};

/*
 * dns_name_normalize — check IN as a host or domain name and write its
 * canonical form (lower case, no trailing dot) to OUT (OUTLEN >= 254).
 * Accepted: labels of 1..63 octets of letters, digits, '-' and '_' ('-' not
 * first or last; '_' for _dmarc, _domainkey), total <= 253, one optional
 * trailing dot.  Returns 0, or -1 with ERR set to the reason.
 */
int dns_name_normalize(const char *in, char *out, size_t outlen, char *err,
		       size_t errlen);

/* dns_name_is_ip_literal — "1.2.3.4", "[…]" or anything with ':' (RFC 5321
 * 5.1 refuses such MX hosts). */
bool dns_name_is_ip_literal(const char *name);

/* What dns_answer_walk() learned from one DNS message. */
struct dns_answer_info {
	uint16_t id;
	uint8_t rcode;
	bool tc;
	uint16_t qdcount, ancount, nscount, arcount;
	uint16_t qtype;   /* of the first question; 0 when none */
	bool has_ttl;     /* at least one answer RR */
	uint32_t ttl_min; /* minimum TTL over the answer section */
	unsigned nmatch;  /* answer RRs of type qtype */
	bool has_soa;     /* an SOA in the authority section */
	uint32_t soa_ttl; /* its TTL */
	uint32_t soa_min; /* its MINIMUM field (RFC 2308 5) */
	bool ad;          /* the AD bit: the server validated it */
};

/*
 * dns_answer_walk — walk header, question, answer and authority sections of
 * the message BUF/LEN with a bounds-checked reader (every name, compression
 * pointer, RDLENGTH and SOA RDATA checked) and fill INFO.  TTLs with the top
 * bit set read as 0 (RFC 2181 8).  Returns 0, or -1 on a malformed message
 * (INFO then undefined).  Pure: no allocation, any thread.
 */
int dns_answer_walk(const unsigned char *buf, size_t len,
		    struct dns_answer_info *info);

/* A pending lookup waiting for an entry (embedded in struct dns_query). */
struct dns_waiter {
	struct dns_waiter *prev, *next;
	void *owner;
	bool linked;
};

enum dns_entry_state { DNS_ENTRY_PENDING, DNS_ENTRY_READY };

/*
 * One cached answer for (type, name).  Reference counted: the cache index
 * holds one reference while the entry is findable, the c-ares query one
 * while it is in flight, and each waiting or answered lookup one, so an
 * entry evicted or expired while a reply is being built stays valid.
 */
struct dns_entry {
	uint16_t type;
	enum dns_entry_state state;
	bool indexed;
	unsigned refs;
	uint32_t hash;
	uint64_t expires_ms; /* READY: fresh while now < expires_ms */
	uint32_t ttl;        /* READY: the TTL it was stored with */
	enum dns_result result;
	char err[DNS_ERR_MAX];
	void *owner; /* the resolver, for its c-ares callback */

	/* DNS_RR_MX, result DNS_OK: sorted by preference. */
	struct dns_mx_host *mx;
	size_t nmx;
	bool implicit;
	/* DNS_RR_TXT, result DNS_OK. */
	char **txts;
	size_t *lens;
	size_t ntxts;
	/* DNS_RR_A / DNS_RR_AAAA, result DNS_OK. */
	struct sockaddr_storage *addrs;
	size_t naddrs;
	/* DNS_RR_TLSA, result DNS_OK (each data its own block). */
	struct dns_tlsa *tlsa;
	size_t ntlsa;
	bool ad; /* the answer carried the AD bit (trusted by the resolver
		    only with dns_config.dnssec) */

	struct dns_waiter *waiters; /* PENDING: lookups sharing this query */
	/* PENDING and not yet asked: the resolver's FIFO of questions that
	 * wait for a free slot under max_inflight (resolver.c owns these). */
	struct dns_entry *fifo_next;
	uint64_t queued_ms;      /* dns_clock_ms() when it began to wait */
	struct dns_entry *hnext; /* hash chain */
	struct dns_entry *lru_prev, *lru_next; /* READY and indexed only */
	char name[DNS_NAME_MAX + 1];
};

/* TTL policy (seconds), already defaulted by the resolver. */
struct dns_cache_policy {
	uint32_t min_ttl, max_ttl, negative_ttl_max, tempfail_ttl;
	bool keep_none; /* an answer is stale once its waiters have it */
};

struct dns_cache {
	struct dns_entry **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;    /* indexed entries, pending ones included */
	size_t max;
	struct dns_entry *lru_head, *lru_tail; /* most recently used first */
	struct dns_cache_policy pol;
};

/* dns_cache_init — an empty cache of at most MAX entries.  0 or -1. */
int dns_cache_init(struct dns_cache *c, size_t max,
		   const struct dns_cache_policy *pol);
/* dns_cache_fini — drop the index's references; entries still referenced
 * elsewhere live on until their last dns_entry_unref(). */
void dns_cache_fini(struct dns_cache *c);

/*
 * dns_cache_get — the entry for (TYPE, NAME) if one is in flight or fresh
 * at NOW_MS (a fresh one becomes most recently used); an expired one is
 * dropped from the index.  NAME is canonical.  No reference is added.
 */
struct dns_entry *dns_cache_get(struct dns_cache *c, uint16_t type,
				const char *name, uint64_t now_ms);

/* dns_cache_add — a new PENDING entry for (TYPE, NAME), indexed (evicting
 * the least recently used ready entries beyond max).  NULL on ENOMEM. */
struct dns_entry *dns_cache_add(struct dns_cache *c, uint16_t type,
				const char *name);

/*
 * dns_cache_complete — turn PENDING entry E READY from a c-ares result:
 * STATUS (ARES_*) and the raw answer ABUF/ALEN (may be NULL).  Decides the
 * dns_result, the data, the err text and the TTL (positive: min answer TTL
 * clamped to [min_ttl, max_ttl]; NXDOMAIN/NODATA: min(SOA TTL, SOA MINIMUM)
 * capped at negative_ttl_max, 0 without an SOA (RFC 2308 5); tempfail:
 * tempfail_ttl).  Waiters are left for the caller.
 */
void dns_cache_complete(struct dns_cache *c, struct dns_entry *e, int status,
			const unsigned char *abuf, int alen, uint64_t now_ms);

/* dns_entry_ttl_left — whole seconds E stays fresh after NOW_MS (rounded
 * up; 0 once expired). */
uint32_t dns_entry_ttl_left(const struct dns_entry *e, uint64_t now_ms);

void dns_entry_ref(struct dns_entry *e);
void dns_entry_unref(struct dns_entry *e);

/* Waiter list of a PENDING entry. */
void dns_entry_wait(struct dns_entry *e, struct dns_waiter *w, void *owner);
void dns_entry_unwait(struct dns_entry *e, struct dns_waiter *w);

#endif
