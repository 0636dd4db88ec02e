/*
 * dkim.h — DKIM signing (RFC 6376; RSA-SHA256 and Ed25519-SHA256, RFC 8463)
 * and DMARC alignment (RFC 7489) for Outpost.
 *
 * Signing: a message is parsed once (dkim_msg_parse); the body hash is
 * computed once per body canonicalization and shared by every signature of
 * the message; keys are parsed once at start-up and kept in locked memory
 * (libsodium secure memory for Ed25519, OpenSSL's secure heap for RSA).
 * RSA signatures are made with OpenSSL on the parsed-once key and are byte-
 * identical to libopendkim's (the oracle in the tests).
 *
 * Threads: keys and the signer are built on the main thread and then read-
 * only; dkim_sign() and friends are pure and may run on any thread (the
 * worker pool).  The DMARC policy lookup runs on the caller's loop through
 * the dns/ resolver and calls back on that loop.
 */
#ifndef OUTPOST_DKIM_H
#define OUTPOST_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dns_resolver;
struct sockaddr_storage;

enum dkim_alg { DKIM_ALG_RSA_SHA256, DKIM_ALG_ED25519_SHA256 };
enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };

/* Keys ------------------------------------------------------------------ */

struct dkim_key; /* opaque; one private key */

/*
 * dkim_keys_init — set up locked memory for private keys: OpenSSL's secure
 * heap of SECURE_HEAP_BYTES (rounded up to a power of two; 0 = 2 MiB, room
 * for about 1,200 RSA-2048 keys at ~1.7 KB each) for RSA, libsodium's for
 * Ed25519.  Call once on the main thread, before dkim_key_load() (which
 * refuses to run without it) and before threads start.  Returns 0; 1 when
 * it works but the memory could not be locked (RLIMIT_MEMLOCK): err says
 * so, log it as a warning; -1 with err on failure.  (Not "dkim_init":
 * libopendkim exports that name.)
 */
int dkim_keys_init(size_t secure_heap_bytes, char *err, size_t errlen);

/*
 * dkim_key_load — read a PEM private key (PKCS#8 or traditional RSA;
 * Ed25519 as PKCS#8 "BEGIN PRIVATE KEY").  Refuses a file readable or
 * writable by group or others ("PATH: mode 0644, must not be accessible by
 * group or others"), RSA keys under 1024 or over 8192 bits, encrypted
 * keys (it never prompts), and anything else.  Returns 0 and *out (free
 * with dkim_key_free), or -1 with err set.  Main thread, after
 * dkim_keys_init().
 */
int dkim_key_load(const char *path, struct dkim_key **out, char *err,
		  size_t errlen);
void dkim_key_free(struct dkim_key *k);
enum dkim_alg dkim_key_alg(const struct dkim_key *k);
unsigned dkim_key_bits(const struct dkim_key *k); /* 256 for Ed25519 */

/*
 * dkim_key_generate — a new key written to PATH (0600, O_EXCL; parent
 * directories 0700), RSA of BITS (1024..8192) or Ed25519 (BITS ignored).
 * TXT receives the DNS record to publish: "v=DKIM1; k=rsa; p=…" or
 * "v=DKIM1; k=ed25519; p=…" (malloc'd, caller frees).  0 or -1 with err.
 */
int dkim_key_generate(const char *path, enum dkim_alg alg, unsigned bits,
		      char **txt, char *err, size_t errlen);

/* dkim_key_txt — the DNS TXT record of an existing key (malloc'd). */
char *dkim_key_txt(const struct dkim_key *k);

/* Messages -------------------------------------------------------------- */

struct dkim_header {
	const char *field; /* the whole field as it is in the message: name,
			      colon, value, folding CRLFs kept; no final CRLF */
	size_t len;
	size_t name_len; /* length of the name (before the colon, trailing
			    WSP excluded) */
};

struct dkim_msg {
	const uint8_t *data; /* the message (CRLF lines), not owned */
	size_t len;
	struct dkim_header *hdrs; /* in order, owned */
	size_t nhdrs;
	size_t body_off; /* offset of the body (after the empty line), or
			    len when there is no body */
};

/*
 * dkim_msg_parse — split DATA (LEN octets, CRLF line ends as queued by
 * Outpost) into header fields and body.  Fails (-1, err set) on a malformed
 * header block: a line that is not a field nor a continuation, a field
 * without a colon, an empty field name.  0 ok (clear with dkim_msg_clear).
 */
int dkim_msg_parse(const uint8_t *data, size_t len, struct dkim_msg *m,
		   char *err, size_t errlen);
void dkim_msg_clear(struct dkim_msg *m);

/*
 * dkim_header_find — the Nth (0-based) field called NAME (case-insensitive),
 * or NULL.  dkim_header_count — how many fields are called NAME.
 */
const struct dkim_header *dkim_header_find(const struct dkim_msg *m,
					   const char *name, size_t nth);
size_t dkim_header_count(const struct dkim_msg *m, const char *name);

/* Signing --------------------------------------------------------------- */

/* The headers signed when present, and those over-signed (listed once more
 * than they occur, so that another cannot be added without breaking the
 * signature). */
extern const char *const dkim_default_sign_headers[];
extern const char *const dkim_default_oversign_headers[];

struct dkim_sign_params {
	const char *domain;   /* d= */
	const char *selector; /* s= */
	const struct dkim_key *key;
	enum dkim_canon hcanon, bcanon;
	int64_t timestamp;                   /* t= (Unix seconds); -1: no t= */
	uint64_t expire_s;                   /* x= = t + expire_s; 0: no x= */
	const char *const *sign_headers;     /* NULL: the defaults */
	const char *const *oversign_headers; /* NULL: the defaults */
};

/*
 * dkim_body_hash — SHA-256 of the canonicalized body (RFC 6376 3.4.3/3.4.4,
 * no l= ever), base64, into OUT (at least 45 bytes).  Compute it once per
 * canonicalization and pass it to every dkim_sign() of the message.
 * OUT is "" when OpenSSL runs out of memory (dkim_sign() then fails).
 * Any thread.
 */
void dkim_body_hash(const struct dkim_msg *m, enum dkim_canon bcanon,
		    char out[45]);

/*
 * A body hash computed piece by piece as the body arrives, equal to
 * dkim_body_hash() of the whole body however it is split (a CRLF, a WSP
 * run or the empty lines at the end may straddle pieces).
 *   dkim_bodyhash_new(c)  a hash for body canonicalization C; NULL when out
 *       of memory.  Holds about 64 KB (the canonical output is hashed in
 *       blocks).
 *   dkim_bodyhash_update(b, p, n)  the next N octets of the body (N may be
 *       0); nothing is kept of P after the call.
 *   dkim_bodyhash_final(b, out)  base64 of the SHA-256 into OUT (45 bytes,
 *       NUL-terminated); frees B.  0, or -1 with OUT "" (OpenSSL out of
 *       memory).
 *   dkim_bodyhash_free(b)  drop B without a result (NULL is allowed).
 * One thread at a time per hash; any thread.
 */
struct dkim_bodyhash;
struct dkim_bodyhash *dkim_bodyhash_new(enum dkim_canon c);
void dkim_bodyhash_update(struct dkim_bodyhash *b, const uint8_t *p, size_t n);
int dkim_bodyhash_final(struct dkim_bodyhash *b, char out[45]);
void dkim_bodyhash_free(struct dkim_bodyhash *b);

/*
 * dkim_sign — one DKIM-Signature header field for M, with BH the body hash
 * from dkim_body_hash() (same bcanon).  Produces the whole field, folded as
 * libopendkim folds it, ending in CRLF, ready to be prepended to the
 * message; *out is malloc'd (caller frees).  The tag order and folding are
 * those of libopendkim 2.11 (v a c d s t x bh h b), so that an RSA signature
 * is byte-identical to the reference.  0 ok, -1 with err.  Any thread.
 */
int dkim_sign(const struct dkim_msg *m, const char *bh,
	      const struct dkim_sign_params *p, char **out, size_t *outlen,
	      char *err, size_t errlen);

/* Long lines ------------------------------------------------------------ */

#define REENCODE_LINE_MAX  998 /* RFC 5322 2.1.1, without the CRLF */
#define REENCODE_DEPTH_MAX 32  /* nested multiparts / message/rfc822 */

enum reencode_result {
	REENCODE_OK,        /* *out holds the re-encoded message */
	REENCODE_UNCHANGED, /* no line over 998 octets: nothing to do */
	REENCODE_TOO_BIG,   /* the result would pass max_bytes */
	REENCODE_REFUSED,   /* cannot be made to fit; why says what */
	REENCODE_NOMEM,
};

/*
 * reencode_message — DATA (LEN octets, CRLF lines, a whole message) made
 * to obey RFC 5322's line limit, to be signed afterwards.  Only the MIME
 * entities holding a line over 998 octets change; everything else is
 * copied byte for byte.  A leaf part with a 7bit/8bit/binary body (or no
 * Content-Transfer-Encoding) becomes quoted-printable (its CTE replaced or
 * added; a message without MIME-Version gets "MIME-Version: 1.0"); a
 * quoted-printable body gets soft line breaks (not encoded twice); a base64
 * body is re-wrapped at 76 columns (still base64).  Multiparts (RFC 2046:
 * preamble, epilogue, padded or missing close delimiters) and
 * message/rfc822 parts are walked, never re-encoded as a whole.  Header
 * lines over 998 octets are folded before whitespace after the colon.
 * Every part decodes to the same octets as before.
 *
 * Returns REENCODE_OK with *OUT (malloc'd, caller frees) and *OUTLEN;
 * REENCODE_UNCHANGED (*OUT NULL); REENCODE_TOO_BIG when the output would
 * pass MAX_BYTES (never more than MAX_BYTES is allocated);
 * REENCODE_REFUSED with WHY ("header field Subject has a line over 998
 * octets that cannot be folded", nesting past REENCODE_DEPTH_MAX, an
 * unknown Content-Transfer-Encoding or a multipart without boundary holding
 * a long line); REENCODE_NOMEM.  Linear in LEN per nesting level.  Pure:
 * any thread (outpostd runs it on the worker pool, before signing).
 */
enum reencode_result reencode_message(const uint8_t *data, size_t len,
				      size_t max_bytes, uint8_t **out,
				      size_t *outlen, char *why, size_t whylen);

/* DMARC ----------------------------------------------------------------- */

enum dmarc_policy { DMARC_P_NONE, DMARC_P_QUARANTINE, DMARC_P_REJECT };

struct dmarc_record {
	enum dmarc_policy p;
	enum dmarc_policy sp; /* = p when absent */
	bool sp_set;
	bool adkim_strict, aspf_strict; /* default relaxed */
	unsigned pct;                   /* 0..100, default 100 */
};

/*
 * dmarc_record_parse — a "v=DMARC1; p=…" TXT record.  0 ok; -1 when it is
 * not a DMARC record or p= is missing or invalid (RFC 7489 6.6.3: then there
 * is no policy).  Unknown tags are ignored; bad optional tags get their
 * defaults.
 */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r);

/*
 * dmarc_from_domain — the domain of the single address in From:.  Refuses
 * (-1, err says why) no From field, several From fields, a From holding no
 * or several addresses (RFC 7489 6.6.1), an address without a domain.  The
 * domain is lower-cased into DOMAIN (at least 256 bytes).
 */
int dmarc_from_domain(const struct dkim_msg *m, char *domain, size_t len,
		      char *err, size_t errlen);

/* dmarc_init — load the public suffix list: PSL_FILE (a .dat or .dafsa;
 * NULL = the newest of libpsl's built-in and Debian's list).  Main thread,
 * once.  0 or -1 with err. */
int dmarc_init(const char *psl_file, char *err, size_t errlen);
void dmarc_done(void);

/* dmarc_org_domain — the organizational domain (registrable domain) of
 * DOMAIN, into OUT; DOMAIN itself when it is a public suffix or unknown. */
void dmarc_org_domain(const char *domain, char *out, size_t len);

/* dmarc_aligned — do A and B align (strict: equal; relaxed: same
 * organizational domain)?  Both lower-case. */
bool dmarc_aligned(const char *a, const char *b, bool strict);

enum dmarc_lookup {
	DMARC_FOUND,    /* record holds the policy */
	DMARC_NONE,     /* no record at the domain nor its org domain */
	DMARC_TEMPFAIL, /* DNS trouble: try later (451 4.4.3) */
};

struct dmarc_policy_reply {
	enum dmarc_lookup result;
	struct dmarc_record record;
	bool from_org;   /* found at the organizational domain: sp= applies
			    when the From domain is a subdomain */
	char where[256]; /* the _dmarc name that held it */
	char err[128];
};

/*
 * dmarc_policy_lookup — _dmarc.FROM_DOMAIN TXT, then _dmarc.<org domain>
 * (RFC 7489 6.6.3), through resolver R on its loop; CB(reply, arg) later,
 * never inline.  Several TXT records of which more than one is DMARC count
 * as none.  Returns a handle for dmarc_policy_cancel(), or NULL (out of
 * memory; no callback).
 */
struct dmarc_query;
struct dmarc_query *dmarc_policy_lookup(
    struct dns_resolver *r, const char *from_domain,
    void (*cb)(const struct dmarc_policy_reply *reply, void *arg), void *arg);
void dmarc_policy_cancel(struct dmarc_query *q);

/*
 * dmarc_policy_cached — the answer dmarc_policy_lookup() gave on this
 * thread through resolver R for FROM_DOMAIN, while every DNS answer it used
 * is still alive (at most 5 minutes; TEMPFAIL and uncacheable answers are
 * not kept).  True with *OUT set, or false: look it up.  Synchronous; the
 * calling thread's own memo (no lock).  dmarc_memo_free() releases this
 * thread's memo (at thread exit; optional).
 */
bool dmarc_policy_cached(const struct dns_resolver *r, const char *from_domain,
			 struct dmarc_policy_reply *out);
void dmarc_memo_free(void);

/*
 * dmarc_effective — the policy that applies to mail From FROM_DOMAIN under
 * REPLY (sp= for a subdomain when the record came from the org domain).
 */
enum dmarc_policy dmarc_effective(const struct dmarc_policy_reply *reply);

const char *dmarc_policy_str(enum dmarc_policy p);

/* SPF (RFC 7208) --------------------------------------------------------- */

enum spf_result {
	SPF_NONE,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

/* spf_result_str — "pass", "fail", … (static). */
const char *spf_result_str(enum spf_result r);

enum spf_kind {
	SPF_T_ALL,
	SPF_T_INCLUDE,
	SPF_T_A,
	SPF_T_MX,
	SPF_T_PTR,
	SPF_T_IP4,
	SPF_T_IP6,
	SPF_T_EXISTS,
};

/* One directive of a record. */
struct spf_term {
	enum spf_kind kind;
	enum spf_result
	    qual;         /* PASS (+), FAIL (-), SOFTFAIL (~), NEUTRAL (?) */
	const char *spec; /* the domain-spec as written (macros not
			     expanded), or NULL: the current domain */
	unsigned cidr4;   /* a, mx, ip4: prefix length (32 when absent) */
	unsigned cidr6;   /* a, mx, ip6: prefix length (128 when absent) */
	uint8_t ip[16];   /* ip4 (first 4 bytes) or ip6: the network */
};

struct spf_record {
	struct spf_term *terms; /* in order; owned */
	size_t nterms;
	const char *redirect; /* redirect= domain-spec, or NULL */
	char *buf;            /* owns the strings */
};

/*
 * spf_record_is — does TXT (LEN octets) start an SPF record ("v=spf1",
 * any case, then a space or the end)?  Any thread.
 */
bool spf_record_is(const char *txt, size_t len);

/*
 * spf_record_parse — an SPF record (RFC 7208 4.6, 12) into R: mechanisms
 * all, include, a, mx, ptr, ip4, ip6, exists with qualifiers and CIDR
 * lengths ("a/24", "mx//64", "a:%{d}/24//64"); modifiers redirect= (kept)
 * and exp= (checked, not kept); unknown modifiers ignored.  0 ok (clear R
 * with spf_record_clear); -1 with err: not an SPF record, or a syntax
 * error (which makes check_host() a permerror).  Pure; any thread.
 */
int spf_record_parse(const char *txt, size_t len, struct spf_record *r,
		     char *err, size_t errlen);
void spf_record_clear(struct spf_record *r);

/* What macros expand to (RFC 7208 7.3). */
struct spf_macro_env {
	const char *local;                 /* %{l}; "" or NULL: "postmaster" */
	const char *sender_domain;         /* %{o} */
	const char *domain;                /* %{d}: the domain being checked */
	const struct sockaddr_storage *ip; /* %{i}, %{v} */
	const char *helo;                  /* %{h} */
};

/*
 * spf_macro_expand — SPEC (a domain-spec) with its macros expanded into
 * OUT (LEN bytes): %{s l o d i h v p} with digit and "r" transformers and
 * delimiters, upper-case letters URL-escaped, "%%", "%_", "%-".  %{p} is
 * "unknown" (no PTR validation is done); %{c}, %{r}, %{t} (exp= only) and
 * any syntax error give -1 (permerror).  A result over 253 octets loses
 * labels on the left (4.8).  *USES_SENDER (may be NULL) is set when %{s}
 * or %{l} was used.  0 or -1.  Pure; any thread.
 */
int spf_macro_expand(const char *spec, const struct spf_macro_env *e, char *out,
		     size_t len, bool *uses_sender);

struct spf_check_params {
	const char *domain; /* the MAIL FROM domain */
	const char *local;  /* its local-part (%{l}, %{s}), may be NULL */
	const char *helo;   /* the EHLO name mail leaves with (%{h}) */
	const struct sockaddr_storage *addrs; /* every address it may leave
						 from (port ignored) */
	size_t naddrs;                        /* >= 1 */
};

struct spf_check_reply {
	/* PASS when check_host() passes for every address; otherwise the
	 * result for the first address that did not pass. */
	enum spf_result result;
	size_t addr_index;     /* the address that decided */
	uint32_t ttl;          /* the smallest TTL of the answers used */
	bool sender_dependent; /* %{s} or %{l} was expanded: the result holds
				  for this sender only (not cached) */
	char err[160];         /* why, for temperror and permerror */
};

/*
 * spf_check — check_host() (RFC 7208 4) for DOMAIN and each address in
 * turn, through resolver R on its loop (dns/: never the system resolver,
 * never blocking), stopping at the first address that does not pass.
 * Limits: 10 terms that query DNS (include, a, mx, ptr, exists,
 * redirect), 2 void lookups, 10 MX hosts per mx; include and redirect
 * loops are permerrors.  ptr is counted and never matches (RFC 7208 5.5:
 * "SHOULD NOT be used"; no reverse lookups).  mx uses no implicit MX.
 * CB(reply, arg) later on R's loop, never inline.  Returns a handle for
 * spf_cancel(), or NULL (out of memory; no callback).  Loop thread of R.
 */
struct spf_query;
struct spf_query *
spf_check(struct dns_resolver *r, const struct spf_check_params *p,
	  void (*cb)(const struct spf_check_reply *reply, void *arg),
	  void *arg);
/* spf_cancel — no callback after it; a no-op from inside the callback. */
void spf_cancel(struct spf_query *q);

/*
 * The results of spf_check() by (domain, helo, address set) until the
 * smallest TTL of the answers they came from runs out, so that a campaign
 * is evaluated once, not once per message.  Temperrors and sender-
 * dependent results are not kept.  At most MAX_ENTRIES; the oldest goes
 * first.  Any thread (a mutex inside).
 */
struct spf_cache;
struct spf_cache *spf_cache_new(size_t max_entries);
void spf_cache_free(struct spf_cache *c);
/* 0 and *OUT on a live entry for P (helo, domain, addrs), -1 otherwise. */
int spf_cache_get(struct spf_cache *c, const struct spf_check_params *p,
		  enum spf_result *out);
void spf_cache_put(struct spf_cache *c, const struct spf_check_params *p,
		   const struct spf_check_reply *reply);

#endif
