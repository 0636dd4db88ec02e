/*
 * conf.h — Outpost configuration: parse (libconfuse), validate, defaults.
 *
 * The whole configuration is one immutable tree (struct conf) built by
 * conf_load() and freed by conf_free().  Nothing in it changes after load:
 * a reload builds a new tree and swaps it in.  Relative paths are resolved
 * against data_dir at load time, so every path in the tree is usable as is.
 *
 * Thread: conf_load()/conf_free() from the main thread; the tree is then
 * read-only and may be read from any thread.
 */
#ifndef OUTPOST_CONF_H
#define OUTPOST_CONF_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

enum conf_tls_mode {
	CONF_TLS_NONE,     /* plain text, STARTTLS not offered */
	CONF_TLS_STARTTLS, /* plain text, STARTTLS offered (default) */
	CONF_TLS_IMPLICIT, /* TLS from the first byte (RFC 8314, port 465) */
};

/* A listening address: `listener "ADDR:PORT" { … }`, "[::1]:2525" for v6. */
struct conf_listener {
	char *name; /* the title as written, e.g. "127.0.0.1:2525" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum conf_tls_mode tls;
	bool auth;             /* offer AUTH at all */
	bool auth_without_tls; /* allow AUTH in clear; only honoured when
				  the listener address is loopback */
	bool require_auth;     /* refuse MAIL before AUTH, even from a
				  relay network */
	char *cert_file;       /* NULL: the global tls {} certificate */
	char *key_file;
};

/* A client network from `relay { networks = { "10.0.0.0/8", … } }`. */
struct conf_network {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix; /* bits */
};

struct conf_pool;
struct conf_dkim;

/* `user "NAME" { password = "$argon2id$…"; sender_domains = { … } }` */
struct conf_user {
	char *name;
	char
	    *password_hash; /* an Argon2id encoded string (crypto_pwhash_str) */
	char **sender_domains; /* lower-case; "*" = any; NULL-terminated */
	size_t nsender_domains;
	const struct conf_pool *pool; /* `pool = "NAME"`; NULL: the default
					 pool (struct conf.default_pool) */
	/*
	 * `dkim_domain = "DOMAIN"`: the signing domain of mail From a domain
	 * without a dkim section of its own; NULL: none.  Used only where it
	 * aligns with the From domain, unless allow_unaligned (`allow_unaligned
	 * = true`; default false).
	 */
	const struct conf_dkim *dkim_fallback;
	bool allow_unaligned;
	/* messages it may submit per UTC hour and per UTC day (0: no
	 * limit); with cluster { }, across every node */
	unsigned max_messages_per_hour;
	unsigned max_messages_per_day;
};

/* `limits { long_lines = … }`: message text lines over 998 octets. */
enum conf_long_lines {
	CONF_LONG_LINES_REENCODE, /* re-encode the parts holding them as
				     quoted-printable before signing, fold
				     long header lines (default) */
	CONF_LONG_LINES_REJECT,   /* refuse the message: 550 5.6.0 */
};

struct conf_limits {
	uint64_t max_message_size; /* bytes, advertised in SIZE; also
				      bounds a re-encoded message */
	enum conf_long_lines long_lines;
	unsigned max_recipients;          /* per transaction */
	unsigned max_errors;              /* per session, then 421 */
	unsigned max_sessions;            /* all listeners together */
	unsigned max_sessions_per_client; /* per client address */
	unsigned command_timeout_ms;      /* RFC 5321 4.5.3.2: 5 min */
	unsigned data_timeout_ms;         /* between data chunks: 3 min */
	unsigned tls_handshake_timeout_ms;
	unsigned session_lifetime_ms;   /* connect to 421, whatever is sent */
	uint64_t data_min_rate;         /* bytes/s in DATA/BDAT (0 = none) */
	unsigned data_rate_interval_ms; /* the rate's averaging window */
	unsigned stress_threshold;  /* % of max_sessions: stress mode (0 off) */
	unsigned stress_timeout_ms; /* every deadline's cap under stress */
	uint64_t max_body_memory;   /* message data in memory, all sessions */
};

struct conf_auth_limit {
	unsigned max_failures; /* per (client network, user name) within
				  window, attempts in flight included */
	unsigned max_failures_per_address; /* per client network, all names;
					      >= max_failures */
	unsigned window_ms;
	unsigned block_ms;      /* refusal (454 / 421) once a limit is hit */
	unsigned delay_base_ms; /* first failure delay; doubles each time */
	unsigned delay_max_ms;
	unsigned cache_ttl_ms; /* remember a verified password this long (0 =
				  always run Argon2id) */
	unsigned success_exempt_ms; /* a user who authenticated from a network
				       is exempt from its per-address block
				       this long (0 = never) */
	unsigned ipv4_prefix;       /* client network: IPv4 /N (8..32) */
	unsigned ipv6_prefix;       /* client network: IPv6 /N (16..128) */
	unsigned max_entries;       /* limiter table size (bounded memory) */
};

struct conf_tls {
	char *cert_file; /* PEM chain; never NULL: resolved against data_dir
			    (default keys/tls.crt) */
	char *key_file;  /* never NULL (default keys/tls.key) */
	bool generate;   /* create a self-signed pair at cert/key paths if
			    absent (embedded defaults do) */
	char *ciphers;   /* OpenSSL cipher list for TLS 1.2; NULL = default */
	int min_version; /* TLS1_2_VERSION or TLS1_3_VERSION */
};

struct conf_queue {
	char *path;     /* LMDB environment directory */
	char *key_file; /* 32-byte queue key, hex; generated if absent */
	uint64_t map_size;
	unsigned commit_interval_us; /* group commit: wait at most this long
					for more messages before committing */
	unsigned prepare_wait_us;    /* wait at most this long for messages
					being signed before a commit */
	unsigned commit_max_batch;   /* messages per write transaction */
};

/*
 * ---- Delivery ----
 * Every duration below is kept in the unit its name says; every name is
 * lower-case ASCII without a trailing dot.
 */

/* `dns { … }`: the c-ares resolver and its cache. */
struct conf_dns {
	char *servers; /* "ADDR:PORT,[ADDR6]:PORT,…", each port written out
			  (53 when the file left it out), ready for
			  ares_set_servers_ports_csv(); NULL = the system
			  resolver (/etc/resolv.conf) */
	unsigned timeout_ms; /* per try */
	unsigned tries;
	unsigned cache_size;         /* answers kept; 0 = no cache */
	uint32_t min_ttl_s;          /* TTLs are raised to at least this */
	uint32_t max_ttl_s;          /* … and cut to at most this */
	uint32_t negative_ttl_max_s; /* NXDOMAIN / NODATA: at most this
					(0 = not cached) */
	unsigned max_inflight;       /* questions asked at once, per resolver */
	bool dnssec; /* the servers validate DNSSEC (all on loopback): their
			AD bit is trusted, and DANE (RFC 7672) applies */
};

/*
 * `tls_report { … }`: TLS-RPT (RFC 8460).  With ENABLED, the sessions to
 * domains under a TLS policy (MTA-STS, DANE) are counted per UTC day, and
 * after the day each such domain that publishes _smtp._tls gets the day's
 * report (gzipped JSON) at its rua addresses: mailto: through our own
 * queue, https: by POST.
 */
struct conf_tls_report {
	bool enabled;
	char *organization; /* organization-name (default: hostname) */
	char *contact;      /* contact-info (default: postmaster@hostname) */
	char *from;         /* From: of mailed reports (default:
			       tlsrpt-noreply@hostname) */
	uint64_t delay_ms;  /* reports go out at a random moment this long
			       at most after UTC midnight */
};

/*
 * `cluster { … }`: limits shared with the other nodes through Redis.  With
 * REDIS set, each destination's max_connections holds across every node
 * (connection leases in Redis that expire when a node dies); while Redis is
 * away, each node keeps to its share (the limit / NODES, at least 1).
 */
struct conf_cluster {
	char *redis_host;    /* an IP address (never a name: no blocking
				lookup on the loop); NULL = no cluster */
	unsigned redis_port; /* 6379 when the file left it out */
	char *password_file; /* Redis AUTH password (first line); NULL = none */
	char *node;     /* this node's name in leases (default: hostname) */
	unsigned nodes; /* nodes sharing the limits */
	unsigned timeout_ms; /* a command unanswered this long: Redis away */
	unsigned lease_ms;   /* a lease's lifetime; renewed every third */
	char *prefix;        /* of every key */
};

/* `delivery { … }`: the SMTP client, retries and expiry. */
struct conf_delivery {
	unsigned port; /* of MX hosts, and of relay_host / routes without one */
	unsigned connect_timeout_ms;
	unsigned greeting_timeout_ms; /* for the 220 */
	unsigned command_timeout_ms;  /* EHLO, MAIL, RCPT, DATA, QUIT, … */
	unsigned data_timeout_ms;     /* for the reply to the final "." */
	unsigned idle_timeout_ms;     /* keep an idle connection for reuse
					 this long (0 = QUIT at once) */
	uint64_t max_age_ms;          /* then a deferred recipient bounces */
	uint64_t *retry_intervals_ms; /* wait after the Nth failed attempt;
					 the last repeats; never decreasing */
	size_t nretry_intervals;      /* >= 1 */
	unsigned retry_jitter_pct;    /* +/- this % on each wait, 0..50 */
	char *relay_host;    /* smarthost for every domain without a route:
				a host name or an IP literal (v6 without
				brackets); NULL = deliver by MX */
	unsigned relay_port; /* 0 when relay_host is NULL */
	char *ehlo;          /* never NULL (default: struct conf.hostname) */
	unsigned max_connections; /* outbound, all destinations together */
	/* messages in a round of attempts at once (their envelopes in
	 * memory); the others wait as 40-byte stubs */
	unsigned max_rounds;
	unsigned threads; /* delivery loops; resolved (never 0) */
	/* Defaults of the destination keys of the same names (destination
	 * "*" inherits them; see struct conf_destination). */
	unsigned max_mx_addresses;
	unsigned max_mx_sessions;
	unsigned attempt_timeout_ms;
	char *tls_ca_file; /* PEM bundle; NULL = the system store */
	char *tls_ca_path; /* hashed directory; NULL = the system store */
};

/* Outbound TLS per destination (RFC 3207 STARTTLS). */
enum conf_tls_policy {
	CONF_TLSP_NONE,    /* never STARTTLS */
	CONF_TLSP_MAY,     /* STARTTLS when offered, unverified; fall back to
			      clear text if it fails (default) */
	CONF_TLSP_ENCRYPT, /* STARTTLS required, certificate not checked */
	CONF_TLSP_VERIFY,  /* STARTTLS required, certificate verified against
			      the MX host name */
	/* DANE (RFC 7672; needs dns.dnssec): an MX host with TLSA records in
	 * a validated answer is reached over TLS that matches them.  With
	 * dns.dnssec every policy but none does so; these two say what a
	 * host without them gets: */
	CONF_TLSP_DANE,      /* … what tls = may gives */
	CONF_TLSP_DANE_ONLY, /* … nothing: mail waits (dane-required) */
};

/* suspend_on patterns per destination: more is refused at load, and the
 * scheduler classifies replies against all of them. */
#define CONF_SUSPEND_ON_MAX 64

/*
 * `destination "DOMAIN" { … }`: limits and manners per recipient domain.
 * "*" sets the defaults (dest_default); a listed destination takes every
 * key it leaves out from "*", and "*" from the built-in defaults.
 */
struct conf_destination {
	char *domain; /* "example.com", ".example.com" (its subdomains), or
			 NULL for dest_default */
	unsigned max_connections; /* at once, to this destination */
	unsigned max_messages_per_connection;
	unsigned max_recipients_per_transaction;
	unsigned max_messages_per_minute; /* 0 = unlimited */
	unsigned max_messages_per_hour;   /* 0 = unlimited */
	enum conf_tls_policy tls;
	/* honour the domain's MTA-STS policy (RFC 8461): enforce raises tls
	 * "may" or "encrypt" to "verify" and keeps to the policy's MX hosts;
	 * tls = "none" is never raised */
	bool mta_sts;
	char **suspend_on;  /* extended regexes, case-insensitive, matched
			       against a reply's whole text ("421 4.7.0 …") */
	size_t nsuspend_on; /* at most CONF_SUSPEND_ON_MAX (more: refused) */
	void *suspend_re;   /* regex_t[nsuspend_on], compiled from suspend_on
			       with REG_EXTENDED | REG_ICASE | REG_NOSUB;
			       owned by the tree (freed by conf_free) */
	uint64_t suspend_for_ms;   /* a matching reply pauses this long */
	uint64_t backoff_pause_ms; /* pause after repeated connection
				      failures or 421s; doubles each time */
	uint64_t backoff_max_ms;   /* … up to this; >= backoff_pause_ms */
	/* Adaptive back-off: a reply of a category in THROTTLE_ON (bit 1 <<
	 * enum conf_bounce_category) takes the destination one step down,
	 * at most one a minute and THROTTLE_MAX_STEPS deep: each step keeps
	 * THROTTLE_FACTOR % of its connections and of its rate; each
	 * THROTTLE_FOR without such a reply gives one step back. */
	uint32_t throttle_on;
	unsigned throttle_factor; /* percent kept per step, 1..99 */
	uint64_t throttle_for_ms;
	unsigned throttle_max_steps;
	/* One delivery attempt (one connection's walk through the MX hosts
	 * and their addresses until a session is usable), like Postfix's
	 * smtp_mx_address_limit / smtp_mx_session_limit: */
	unsigned max_mx_addresses;   /* addresses tried, 1..1000 (default 5) */
	unsigned max_mx_sessions;    /* connections accepted by a server (a
					session, whether or not it greets),
					1..100 (default 2) */
	unsigned attempt_timeout_ms; /* the whole walk, 1s..1h (default 5m):
					each connect/greeting/EHLO/TLS wait
					is cut to what is left of it */
};

/* `pool "NAME" { source = { "192.0.2.1", … }; ehlo = "…" }` */
/*
 * `warmup "CLASS" { daily = { N1, N2, … } }` in a pool: each of the pool's
 * source addresses sends at most N1 messages on day 1 of the pool's
 * warm-up, N2 on day 2, and so on, to the destinations of CLASS (the name of
 * a destination block, or "*" for every destination without a warmup of its
 * own); past the last day, no limit.  Spread evenly over the day.
 */
struct conf_warmup {
	char *dest;      /* lower case: "gmail.com", ".example.com" or "*" */
	unsigned *daily; /* per source address, day 1 first */
	size_t ndays;    /* >= 1 */
};

struct conf_pool {
	char *name;
	struct sockaddr_storage *sources; /* port 0; bind() in turn */
	size_t nsources;                  /* >= 1 */
	char *ehlo;                       /* NULL: delivery.ehlo */
	char *source_at;         /* "file:line" of source, for messages */
	int64_t warmup_start_ms; /* UTC midnight of day 1 (warmup_start) */
	struct conf_warmup *warmups;
	size_t nwarmups;
};

/*
 * conf_pool_warmup — the messages P may send per day at NOW_MS to the
 * destinations of destination block DEST (its name, "*" for the default),
 * all its addresses together; 0: no warm-up limit (none for DEST, or past
 * its last day).
 */
uint64_t conf_pool_warmup(const struct conf_pool *p, const char *dest,
			  int64_t now_ms);

/* `route "DOMAIN" { host = "HOST[:PORT]" }`: deliver there, not by MX. */
struct conf_route {
	char *domain;  /* "example.com" or ".example.com" (its subdomains) */
	char *host;    /* a host name (A/AAAA, no MX) or an IP literal (v6
			  without brackets) */
	unsigned port; /* default: delivery.port */
};

/*
 * ---- Signing and alignment (issue "Sign and align") ----
 */

/*
 * `dkim "DOMAIN" { selector = …; rsa_key = …; ed25519_selector = …;
 * ed25519_key = … }`: the keys that sign as d=DOMAIN.  At least one key;
 * each key has its own selector (one TXT record per selector).  The key
 * files are not opened at load: the daemon loads and mode-checks them.
 */
struct conf_dkim {
	char *domain;           /* lower-case, no trailing dot */
	char *selector;         /* s= of the RSA key; NULL iff rsa_key is */
	char *rsa_key;          /* PEM, resolved against data_dir; or NULL */
	char *ed25519_selector; /* s= of the Ed25519 key; NULL iff
				   ed25519_key is */
	char *ed25519_key;      /* PEM (PKCS#8), resolved; or NULL */
	char *rsa_key_at;       /* "file:line" of rsa_key, for messages;
				   NULL when rsa_key is */
	char *ed25519_key_at;   /* the same for ed25519_key */
};

/* DKIM canonicalization (RFC 6376 3.4); the values of enum dkim_canon. */
enum conf_canon {
	CONF_CANON_SIMPLE,
	CONF_CANON_RELAXED,
};

/* `dkim_sign { … }`: how every signature is made. */
struct conf_dkim_sign {
	enum conf_canon hcanon; /* header; default relaxed */
	enum conf_canon bcanon; /* body; default relaxed */
	/*
	 * Header field names signed when present, as written, "From" always
	 * among them; NULL-terminated.  NULL: the signer's built-in list
	 * (dkim_default_sign_headers).
	 */
	char **headers;
	size_t nheaders; /* 0 when headers is NULL */
	/*
	 * Names signed once more than they occur (so that none can be added),
	 * NULL-terminated.  NULL: the built-in list
	 * (dkim_default_oversign_headers); a list of only the NULL (the file
	 * said "oversign = { }"): over-sign nothing.
	 */
	char **oversign;
	size_t noversign;
	uint64_t expire_ms; /* x= = signing time + this, whole seconds
			       (1m..365d); 0 = no x= (default) */
	bool timestamp;     /* add t= (default true) */
};

/* What to do with a message that would fail DMARC at the receiver. */
enum conf_dmarc_action {
	CONF_DMARC_REJECT, /* refuse it at submission (default) */
	CONF_DMARC_HOLD,   /* accept it and queue it on hold, for an
			      operator to release or delete */
	CONF_DMARC_ACCEPT, /* accept and deliver it as it is */
};

/* `dmarc { … }`: the alignment check at submission. */
struct conf_dmarc {
	bool check; /* false: no check at all, messages are still signed
		       (default true) */
	/*
	 * For a message that would not align when the From domain publishes
	 * p=quarantine or p=reject (sp= for a subdomain); default reject.
	 */
	enum conf_dmarc_action action;
	/*
	 * The public suffix list (.dat or .dafsa), resolved against data_dir;
	 * NULL: libpsl's built-in or Debian's list.
	 */
	char *psl_file;
};

/*
 * ---- Observe (issue "Observe"): logs, metrics, the control socket ----
 */

/*
 * `log { … }`: the delivery and audit logs.  Paths are absolute (resolved
 * against data_dir); NULL: that log is not written ("" in the file).  The
 * two are different files, and neither is control.socket.
 */
struct conf_log {
	char *delivery_file; /* one JSON object per line per message event
				(default data_dir/log/delivery.log) */
	char *audit_file;    /* what operators did through the control
				socket (default data_dir/log/audit.log) */
	/* The delivery log's group and mode, given to the file whenever the
	 * daemon opens it (start, SIGUSR1), so that a log shipper in that
	 * group reads it.  The audit log and the diagnostics stay 0600. */
	bool delivery_group_set; /* delivery_file_group given: gid is it */
	gid_t delivery_gid;
	unsigned delivery_file_mode; /* default 0640 with a group, else 0600 */
	/* The logs stop writing (and count what they drop) when the free
	 * space of their filesystem falls below the larger of these: it is
	 * the queue's, to accept and settle mail. */
	uint64_t disk_reserve;         /* bytes (default 256M) */
	unsigned disk_reserve_percent; /* of the filesystem (default 1) */
	/* The header whose value the delivery log writes as "campaign"
	 * (default "X-Campaign-ID"); NULL ("" in the file): none. */
	char *campaign_header;
};

/*
 * ---- Restore and retain (issue "Restore and retain") ----
 * `restore { }`: restore points of the queue (queue/), a compacting copy
 * of the LMDB environment every interval, into dir, with off-site copies.
 */
struct conf_restore {
	uint64_t interval_ms; /* between points (default 5m); 0: none */
	char *dir;            /* absolute (default data_dir/restore) */
	char *copy_to;        /* absolute, or NULL: no copy */
	char **command;       /* argv, NULL-terminated, the point's path to be
				 appended; NULL: none */
	uint64_t command_timeout_ms; /* then the command is killed (10m) */
	/* Which points stay: every one younger than keep_all (1h), the first
	 * of each hour younger than keep_hourly (1d), the first of each day
	 * younger than keep_daily (7d); none older, and none older than
	 * retention.restore_points. */
	uint64_t keep_all_ms, keep_hourly_ms, keep_daily_ms;
};

/*
 * `watchdog { }` (conf_watchdog.c): thresholds of the watchdog's signals
 * (mta/observe/watchdog.h), per sending identity; `watchdog_override
 * "IDENTITY" { }` replaces some of them for one identity.
 */
struct conf_watchdog_limits {
	double new_recipient_share; /* share of never-seen recipients (0.5) */
	double bounce_rate;         /* hard bounces over the window (0.1) */
	double complaint_rate;      /* complaints per delivery (0.003) */
	double volume_factor;       /* messages/hour over the baseline (4) */
	double domain_shift;        /* distance of the domain mix (0.5) */
	uint64_t min_messages;      /* a signal needs this many samples (50) */
	uint64_t infected; /* infected submissions (malware scan) in the
			      last two hours that stop it (1); 0: counted */
};

struct conf_watchdog_override {
	char *identity;
	struct conf_watchdog_limits limits; /* unset keys: watchdog's */
};

struct conf_watchdog {
	bool enabled;
	uint64_t learning_ms; /* a new identity is only learnt (7d) */
	char *traps;          /* absolute path, or NULL: no trap list */
	char **alert_command; /* argv, NULL-terminated; NULL: none */
	uint64_t alert_timeout_ms;
	uint64_t bounce_window;  /* last N deliveries (200) */
	uint64_t identities_max; /* profiles kept in memory (10000) */
	struct conf_watchdog_limits limits;
	struct conf_watchdog_override *overrides;
	size_t noverrides;
};

/*
 * `retention { }`: how long each store keeps what it holds; every key
 * defaults to lifetime (90d).  Nothing is kept longer.
 */
struct conf_retention {
	uint64_t lifetime_ms;
	uint64_t delivery_log_ms;   /* rotated delivery-log files, by day */
	uint64_t audit_log_ms;      /* rotated audit-log files, by day */
	uint64_t restore_points_ms; /* restore points */
	uint64_t history_ms; /* per-recipient and per-user history (suppression
				lists, watchdog history) */
	uint64_t user_data_ms; /* a user removed from the configuration: its
				  data is purged this long after */
};

/*
 * `suppress { }`: the suppression list (hard bounces of the bad-mailbox and
 * bad-domain kind, complaints, operators' entries).
 */
enum conf_suppress_scope {
	CONF_SUPPRESS_USER,   /* one list per sending identity (and the
				 global entries an operator adds) */
	CONF_SUPPRESS_GLOBAL, /* one list for every sender */
};
enum conf_suppress_action {
	CONF_SUPPRESS_REFUSE, /* RCPT gets 550 5.1.1 */
	CONF_SUPPRESS_DROP,   /* RCPT gets 250; the recipient is not queued */
};
struct conf_suppress {
	bool enabled; /* consulted at RCPT and fed by results */
	enum conf_suppress_scope scope;
	enum conf_suppress_action action;
};

/*
 * `feedback { }`: feedback-loop complaint reports (ARF, RFC 5965) sent by
 * mailbox providers to ADDRESS on any listener (mta/receive/arf.h).
 */
struct conf_feedback {
	char *address; /* "fbl@mta.example" (domain lower-cased); NULL: no
			  report is taken */
	uint64_t max_report_size;    /* bytes of one report (1M) */
	unsigned reports_per_minute; /* per client address (60) */
	bool identifier; /* add the sealed X-Outpost-FB header (yes) */
};

/*
 * `scan { }` (conf_scan.c): the malware scan of every submitted message by
 * clamd, before its 250 (mta/receive/scan.h).
 */
enum conf_scan_on_error {
	CONF_SCAN_TEMPFAIL, /* 451 4.7.0, nothing queued */
	CONF_SCAN_ACCEPT,   /* queued unscanned, logged and counted */
};
enum conf_scan_on_oversize {
	CONF_SCAN_TRUNCATE, /* the first max_size bytes are scanned */
	CONF_SCAN_REFUSE,   /* 552 5.3.4 */
};
struct conf_scan {
	char *clamd;      /* as written; NULL: no scanning */
	bool unix_socket; /* addr is a sockaddr_un, else a loopback address */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum conf_scan_on_error on_error;
	enum conf_scan_on_oversize on_oversize;
	uint64_t timeout_ms;    /* per scan: connect, stream, verdict (30s) */
	unsigned connections;   /* kept to clamd per I/O loop (4) */
	uint64_t max_size;      /* bytes streamed (25M, clamd's
				   StreamMaxLength) */
	uint64_t cache_entries; /* verdicts kept (100000); 0: no cache */
	uint64_t cache_ttl_ms;  /* a verdict's age limit (1h) */
};

/* `metrics { listen = "ADDR:PORT" }`: the HTTP listener of GET /metrics. */
struct conf_metrics {
	char *listen; /* as written, e.g. "127.0.0.1:9025" (the default);
			 NULL: no metrics listener ("" in the file), and then
			 addr is zeroed and addrlen 0 */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/* Label values with series of their own, by volume; the rest are
	 * summed under "_other" (bounded cardinality).  Default 20 each. */
	unsigned top_destinations; /* destination= (and pool=) */
	unsigned top_users;        /* user= */
	/* The queue scan behind the depth and age gauges; 0: off. */
	uint64_t queue_scan_interval_ms;
};

/* Rights on the control socket: bits of struct conf_access.rights. */
#define CONF_RIGHT_READ   0x1u  /* look at the queue */
#define CONF_RIGHT_WRITE  0x2u  /* change it: hold, release, retry, … */
#define CONF_RIGHT_DELETE 0x4u  /* destroy messages: delete, bounce */
#define CONF_RIGHT_EXPORT 0x8u  /* read message contents */
#define CONF_RIGHT_IMPORT 0x10u /* add messages: queue import */
#define CONF_RIGHTS_ALL                                                        \
	(CONF_RIGHT_READ | CONF_RIGHT_WRITE | CONF_RIGHT_DELETE |              \
	 CONF_RIGHT_EXPORT | CONF_RIGHT_IMPORT)

/* `access "NAME" { rights = { "read", … } }` inside control { }. */
struct conf_access {
	char *name;      /* the title as written: a user name or a uid */
	uid_t uid;       /* resolved at load (getpwnam_r) */
	unsigned rights; /* CONF_RIGHT_* bits; 0: none */
};

/* `control { socket = …; access … }`: the CLI's way into the daemon. */
struct conf_control {
	char *socket;   /* Unix socket path, absolute, shorter than sun_path;
			   never NULL (default data_dir/control.sock) */
	bool group_set; /* control.group given: the socket's group is gid */
	gid_t gid;
	/*
	 * In file order, each uid once.  Without any access section: one
	 * entry, "root" (uid 0) with CONF_RIGHTS_ALL.  With access sections:
	 * exactly those (uid 0 has no right it is not given).
	 */
	struct conf_access *access;
	size_t naccess; /* >= 1 */
};

/*
 * `bounce { categories = { "FILE", … } }`: the rules files that give each
 * failed or deferred recipient its bounce category (conf_bounce_classify),
 * read in order, the first matching rule winning.  Relative names are
 * resolved against the configuration file's directory.  Not set: the file
 * bounce-categories there when it exists, else the built-in rules (the
 * same text, compiled in).
 */
struct conf_bounce_rules;
struct conf_bounce {
	char **categories;               /* absolute paths; NULL-terminated */
	size_t ncategories;              /* 0: the built-in rules */
	struct conf_bounce_rules *rules; /* compiled; never NULL once built */
};

/* conf.file when no file was given: the embedded defaults were built. */
#define CONF_EMBEDDED_LABEL "(embedded defaults)"

struct conf {
	unsigned refs;       /* conf_ref / conf_unref (atomic); 1 at load */
	char *file;          /* the file loaded, or CONF_EMBEDDED_LABEL */
	int64_t loaded_ms;   /* when conf_load built this tree (Unix ms) */
	char *hostname;      /* banner and EHLO name */
	char *data_dir;      /* absolute */
	char *hash_key_file; /* key of the keyed address hash for logs */
	/*
	 * The account outpostd runs as once its sockets, keys, queue and logs
	 * are open, when started as root (never NULL; default "outpost").
	 * allow_root: stay root instead (tests and special set-ups only;
	 * `user = "root"` needs it too).
	 */
	char *user;
	bool allow_root;
	unsigned smtp_threads;   /* I/O loops; resolved (never 0) */
	unsigned worker_threads; /* CPU pool (Argon2id, signing); resolved */
	unsigned shutdown_timeout_ms; /* a stop: for submission, then for
					 delivery */

	struct conf_tls tls;
	struct conf_queue queue;
	struct conf_limits limits;
	struct conf_auth_limit auth_limit;

	struct conf_listener *listeners;
	size_t nlisteners;
	struct conf_network *networks;
	size_t nnetworks;
	struct conf_user *users;
	size_t nusers;

	struct conf_dns dns;
	struct conf_cluster cluster;
	struct conf_tls_report tls_report;
	struct conf_delivery delivery;
	struct conf_destination dest_default;  /* "*", or built-in defaults */
	struct conf_destination *destinations; /* listed, in file order */
	size_t ndestinations;
	struct conf_pool *pools; /* in file order */
	size_t npools;
	const struct conf_pool *default_pool; /* pool "default", or NULL (no
						 source binding) */
	const struct conf_pool *relay_pool;   /* relay { pool = … }, for
						 clients without AUTH; NULL:
						 default_pool */
	struct conf_route *routes;            /* in file order */
	size_t nroutes;

	struct conf_dkim *dkims; /* in file order; one per domain */
	size_t ndkims;
	/* The same, sorted by domain: the index of conf_dkim_find(). */
	const struct conf_dkim **dkims_by_domain;
	struct conf_dkim_sign dkim_sign;
	struct conf_dmarc dmarc;
	/* relay { dkim_domain; allow_unaligned }: as in struct conf_user,
	   for relay clients (networks, no AUTH) */
	const struct conf_dkim *relay_dkim_fallback;
	bool relay_allow_unaligned; /* relay { allow_unaligned = … } */
	char *relay_identity;       /* relay { identity }: the sending
				       identity of relay clients ("relay") */

	struct conf_log log;
	struct conf_metrics metrics;
	struct conf_control control;
	struct conf_restore restore;
	struct conf_retention retention;
	struct conf_suppress suppress;
	struct conf_bounce bounce;
	struct conf_feedback feedback;
	struct conf_watchdog watchdog;
	struct conf_scan scan;
};

/*
 * conf_load — parse and validate FILE, or build the embedded defaults when
 * FILE is NULL (submission on 127.0.0.1:2525 with STARTTLS, relay for
 * loopback clients, data under ./var, keys generated on first start).
 *
 * Returns 0 and sets *out (owned by the caller: conf_free()), or -1 with
 * "file:line: message" in err.  Does not create files or directories.
 */
int conf_load(struct conf **out, const char *file, char *err, size_t errlen);

/*
 * conf_print — load FILE as conf_load() does (NULL: the embedded defaults)
 * and, when it is valid, print its effective configuration on FP in
 * outpost.conf syntax, includes flattened: with ALL every key, defaults
 * too; without, only the keys whose value differs from the default (as
 * `postconf -n`), in the sections that hold them.  Secrets are never
 * printed: a user's password shows as a comment.  Returns 0, or -1 with
 * "file:line: message" in err (nothing printed when the file is invalid).
 */
int conf_print(FILE *fp, const char *file, bool all, char *err, size_t errlen);

/* conf_free — release a tree from conf_load(); NULL is allowed. */
void conf_free(struct conf *c);

/*
 * conf_ref — one more holder of C (a reload keeps the tree a session or a
 * connection started with alive until it ends); returns C.  conf_unref —
 * that holder is done; the last one frees the tree (conf_free).  conf_load
 * gives the caller the first reference.  Any thread; NULL is allowed.
 */
const struct conf *conf_ref(const struct conf *c);
void conf_unref(const struct conf *c);
/* conf_holders — how many hold C now (a snapshot: only the sole holder may
 * act on a 1, since no one else can take C again).  Any thread. */
unsigned conf_holders(const struct conf *c);

/*
 * conf_check_host — the checks that depend on the host, not the text: every
 * DKIM key file exists, is a regular file and has no group or other mode
 * bits; every pool source address is assigned to this host (bind() on port
 * 0; nothing is sent).  outpostd runs it for -t and at start-up.  0, or -1
 * with "file:line: message" in err.  Main thread.
 */
int conf_check_host(const struct conf *c, char *err, size_t errlen);

/*
 * Bounce categories: what a failed or deferred recipient's reply means for
 * the sender (reply code, enhanced status and text, matched by the ordered
 * rules of the bounce-categories file).  A fixed set, so that metrics and
 * stores can count them; the rules that map replies to them are the
 * operator's to extend.  CONF_BC_NONE: delivered, or not classified yet.
 */
enum conf_bounce_category {
	CONF_BC_NONE = 0,
	CONF_BC_BAD_MAILBOX,      /* no such user (5.1.1) */
	CONF_BC_BAD_DOMAIN,       /* no such domain, null MX (5.1.2, 5.1.10) */
	CONF_BC_INACTIVE_MAILBOX, /* disabled, expired, dormant account */
	CONF_BC_QUOTA,            /* mailbox full, over quota */
	CONF_BC_SPAM_RELATED,     /* refused as spam, blocklisted, reputation */
	CONF_BC_POLICY_RELATED,   /* DMARC/SPF/DKIM, local policy */
	CONF_BC_RATE_LIMITED,     /* throttled: too many messages/connections */
	CONF_BC_ROUTING,          /* no route, MX trouble, relay refused */
	CONF_BC_MESSAGE_CONTENT,  /* size, virus, content refused */
	CONF_BC_PROTOCOL,         /* syntax, protocol error, out of step */
	CONF_BC_CONNECTION,       /* no reply: refused, timeout, TLS failure */
	CONF_BC_TRANSIENT_OTHER,  /* a 4xx no rule matched */
	CONF_BC_OTHER,            /* a 5xx no rule matched */
	CONF_BC__COUNT
};

/*
 * conf_bounce_category_name — "bad-mailbox", "quota" … (the name logs,
 * metrics, DSNs and rules files use); NULL for CONF_BC_NONE or a value out
 * of range.  A static string.  Any thread.
 * conf_bounce_category_lookup — the reverse, any case; CONF_BC_NONE for a
 * name that is not a category.
 */
const char *conf_bounce_category_name(enum conf_bounce_category cat);
enum conf_bounce_category conf_bounce_category_lookup(const char *name);

/*
 * conf_bounce_rules_load — compile the rules files FILES (NFILES, in order;
 * NFILES 0: the built-in rules, the text of the shipped bounce-categories
 * file) into *OUT (caller frees with conf_bounce_rules_free).  A line is
 * "CATEGORY CODE STATUS [REGEX]": CODE 550, 5xx, 45x, * (any code) or
 * 000 (no reply at all); STATUS 5.1.1, 5.7.*, *.2.2 or *; REGEX a
 * POSIX extended, case-insensitive expression matched anywhere in the
 * reply text (the rest of the line; none: any text).  Blank lines and
 * lines whose first word starts with '#' are skipped.  Returns 0, or -1
 * with "file:line: message" (a wrong line) or "file: message" (cannot
 * read) in ERR.  Reads files: never on an I/O loop.
 */
int conf_bounce_rules_load(struct conf_bounce_rules **out,
			   const char *const *files, size_t nfiles, char *err,
			   size_t errlen);
/* conf_bounce_rules_free — release a rule set; NULL is allowed. */
void conf_bounce_rules_free(struct conf_bounce_rules *rules);
/* conf_bounce_rules_count — rules in the set (0 for NULL). */
size_t conf_bounce_rules_count(const struct conf_bounce_rules *rules);

/*
 * conf_bounce_rules_classify — the category of a reply: CODE (0: no reply
 * at all), STATUS (its enhanced status "5.1.1", or NULL), TEXT (the reply
 * text, lines joined by '\n', or our own reason; NULL as ""; a
 * multi-line text is matched with its lines joined by a space, the
 * enhanced status repeated at each line's start dropped).  The first
 * rule of RULES (NULL: none) that matches all three decides; else the
 * fall-back: connection for no reply, transient-other for a 4xx, other for
 * a 5xx, protocol for any other code.  Never CONF_BC_NONE.  Any thread
 * (RULES is read only).
 * conf_bounce_classify — the same with C's rules (bounce.categories).
 */
enum conf_bounce_category
conf_bounce_rules_classify(const struct conf_bounce_rules *rules, int code,
			   const char *status, const char *text);
enum conf_bounce_category conf_bounce_classify(const struct conf *c, int code,
					       const char *status,
					       const char *text);

/*
 * conf_identity — the sending identity of a message: USER (its AUTH user)
 * when set and not empty, else relay { identity } (default "relay"), the
 * one identity of every relay client.  Per-sender stores (suppression
 * lists, the watchdog's profiles) are keyed by it.  The string belongs to
 * USER or to C.  Any thread.
 */
const char *conf_identity(const struct conf *c, const char *user);

/*
 * conf_watchdog_limits_of — the thresholds for IDENTITY: its override's,
 * else watchdog's.  Any thread.
 */
const struct conf_watchdog_limits *
conf_watchdog_limits_of(const struct conf *c, const char *identity);

/* conf_user_find — the user called NAME, or NULL.  Case-sensitive. */
const struct conf_user *conf_user_find(const struct conf *c, const char *name);

/*
 * conf_user_may_send — may USER use DOMAIN (lower-case, no trailing dot) as a
 * sender domain?  A listed domain also covers its subdomains only when it is
 * written ".example.com"; "*" covers every domain.
 */
bool conf_user_may_send(const struct conf_user *u, const char *domain);

/*
 * conf_network_match — is the address (AF_INET: 4 bytes, AF_INET6: 16 bytes;
 * a v4-mapped v6 address is matched as v4) inside one of the relay networks?
 */
bool conf_network_match(const struct conf *c, int family, const void *addr);

/*
 * conf_parse_size / conf_parse_duration — "25M", "512k", "1G", "1024";
 * "250ms", "30s", "5m", "2h", "2d" (a bare number is seconds).  Return 0 and
 * set *out (bytes / milliseconds) or -1.  Shared with the CLI.
 */
int conf_parse_size(const char *s, uint64_t *out);
int conf_parse_duration(const char *s, uint64_t *out_ms);

/*
 * conf_mailbox_check — is A one mailbox "local@domain": printable ASCII
 * without space, '<', '>', '"', '\\' or a second '@', 254 octets at most,
 * the local part 64, the domain LDH labels?  The one check of an address
 * the configuration names (feedback.address, tls_report.from) and of one
 * taken from DNS to send to (a TLS report's mailto: rua).  0, or -1 with
 * *WHY.  Pure.
 */
int conf_mailbox_check(const char *a, const char **why);

/*
 * conf_destination_find — the limits for recipient DOMAIN (any case; a
 * trailing dot is ignored): the destination listed with exactly that name,
 * else the one listed as ".PARENT" for the nearest parent domain
 * (".example.com" covers a.example.com and a.b.example.com, not
 * example.com), else &c->dest_default.  Never NULL when C is not NULL.
 * Linear in the number of destinations: call it once per domain and keep
 * the pointer (valid as long as the tree).  Any thread.
 */
const struct conf_destination *conf_destination_find(const struct conf *c,
						     const char *domain);

/*
 * conf_route_find — the route for recipient DOMAIN, matched as
 * conf_destination_find() does (exact, then ".PARENT"), or NULL: deliver
 * by MX (or to delivery.relay_host when set).  Any thread.
 */
const struct conf_route *conf_route_find(const struct conf *c,
					 const char *domain);

/* conf_addr_parse — "1.2.3.4:25", "[::1]:25".  0 ok, -1 malformed. */
int conf_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/*
 * conf_dkim_find — the dkim section of signing domain DOMAIN (any case; a
 * trailing dot is ignored), or NULL.  Exact: a section for example.com
 * does not cover a.example.com (DMARC's relaxed alignment is the caller's
 * business).  O(log n) in the number of dkim sections.  The pointer is
 * valid as long as the tree.  Any thread.
 */
const struct conf_dkim *conf_dkim_find(const struct conf *c,
				       const char *domain);

/*
 * conf_rights_for_uid — the CONF_RIGHT_* bits of UID on the control socket:
 * those of its access entry, or 0 when it has none (or C is NULL).  UID is
 * the peer's, as the kernel reports it (SO_PEERCRED), never one the client
 * claims.  Linear in the number of access entries.  Any thread.
 */
unsigned conf_rights_for_uid(const struct conf *c, uid_t uid);

/*
 * conf_right_name — "read", "write", "delete" or "export" for one
 * CONF_RIGHT_* bit; NULL for 0, for several bits at once, or for an unknown
 * bit.  A static string.  Any thread.
 */
const char *conf_right_name(unsigned right);

#endif
