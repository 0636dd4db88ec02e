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
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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

/* `user "NAME" { password = "$argon2id$…"; sender_domains = { … } }` */
struct conf_user {
	char *name;
	char *password_hash; /* an Argon2id encoded string (crypto_pwhash_str) */
	char **sender_domains; /* lower-case; "*" = any; NULL-terminated */
	size_t nsender_domains;
};

struct conf_limits {
	uint64_t max_message_size;       /* bytes, advertised in SIZE */
	unsigned max_recipients;         /* per transaction */
	unsigned max_errors;             /* per session, then 421 */
	unsigned max_sessions;           /* all listeners together */
	unsigned max_sessions_per_client; /* per client address */
	unsigned command_timeout_ms;     /* RFC 5321 4.5.3.2: 5 min */
	unsigned data_timeout_ms;        /* between data chunks: 3 min */
	unsigned tls_handshake_timeout_ms;
};

struct conf_auth_limit {
	unsigned max_failures; /* per client address within window */
	unsigned window_ms;
	unsigned block_ms;      /* refusal (454 / 421) once max_failures hit */
	unsigned delay_base_ms; /* first failure delay; doubles each time */
	unsigned delay_max_ms;
	unsigned cache_ttl_ms; /* remember a verified password this long (0 =
				  always run Argon2id) */
};

struct conf_tls {
	char *cert_file; /* PEM chain; NULL with generate = self-signed */
	char *key_file;
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
	unsigned commit_max_batch;   /* messages per write transaction */
};

struct conf {
	char *file; /* the file loaded, or "(embedded defaults)" */
	char *hostname; /* banner and EHLO name */
	char *data_dir; /* absolute */
	char *hash_key_file; /* key of the keyed address hash for logs */
	unsigned smtp_threads; /* I/O loops; resolved (never 0) */
	unsigned worker_threads; /* CPU pool (Argon2id, signing); resolved */

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

/* conf_free — release a tree from conf_load(); NULL is allowed. */
void conf_free(struct conf *c);

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

/* conf_addr_parse — "1.2.3.4:25", "[::1]:25".  0 ok, -1 malformed. */
int conf_addr_parse(const char *s, struct sockaddr_storage *ss,
    socklen_t *len);

#endif
