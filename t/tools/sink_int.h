/*
 * sink_int.h — what the files of outpost-sink (t/tools/sink*.c), the SMTP
 * receiver that plays remote MX hosts in tests and benchmarks, share.
 *
 * Owns nothing by itself: it declares the one global `sink` (configuration,
 * event base, TLS context, counters) that sink.c creates and frees.  The
 * program is single-threaded: everything here is touched from the one
 * libevent loop only.
 */
#ifndef OUTPOST_SINK_INT_H
#define OUTPOST_SINK_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#define SINK_LISTEN_MAX      4096 /* the receivers bench: 1,000 MX hosts */
#define SINK_NAME_MAX        64   /* "[::1]:65535", "127.255.255.255" */
#define SINK_HIST_SECONDS    600  /* per-second histograms keep 10 min */
#define SINK_REPLY_MAX       1024
#define SINK_DEFAULT_SIZE    52428800 /* SIZE advertised, in bytes */
#define SINK_DEFAULT_RCPT    1000
#define SINK_DEFAULT_SLOW_MS 2000

#if defined(__GNUC__)
#define SINK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SINK_PRINTF(f, a)
#endif

/* What --tls-broken does once "220 Ready to start TLS" is flushed. */
enum sink_tls_broken {
	TLS_BROKEN_NONE,
	TLS_BROKEN_CLOSE,   /* close the socket */
	TLS_BROKEN_GARBAGE, /* write bytes that are not TLS, then close */
	TLS_BROKEN_HANG,    /* never answer the ClientHello */
};

/* Where a behaviour rule acts (rules file STAGE column). */
enum sink_stage {
	STAGE_RCPT,  /* reply at RCPT */
	STAGE_ONCE,  /* reply at RCPT the first time the address is seen */
	STAGE_CLOSE, /* reply at RCPT, then close the connection */
	STAGE_DATA,  /* accept at RCPT, reply at end of data */
	STAGE_DELAY, /* accept at RCPT, delay the end-of-data reply */
};

struct sink_rule {
	char *prefix; /* matched against the local part, ASCII case-folded */
	size_t prefix_len;
	enum sink_stage stage;
	int delay_ms; /* STAGE_DELAY */
	char *reply;  /* "CODE TEXT", %a = the address; NULL: normal reply */
	int code;     /* the reply's code, 0 without reply */
	int builtin;  /* a default, loses ties against the rules file */
	struct sink_rule *next;
};

/* Counters kept per listening address and per client source address. */
struct sink_peer_stats {
	char name[SINK_NAME_MAX];
	uint64_t connections;
	uint64_t connections_now;
	uint64_t connections_max;
	uint64_t messages;
	uint64_t recipients;
};

struct sink_hist {
	int64_t sec[SINK_HIST_SECONDS];
	uint64_t count[SINK_HIST_SECONDS];
};

struct sink_stats {
	uint64_t connections_total;   /* every accepted TCP connection */
	uint64_t connections_now;     /* live sessions (not refused ones) */
	uint64_t connections_max;     /* peak of connections_now */
	uint64_t connections_refused; /* --max-connections */
	uint64_t tls_connections;     /* completed TLS handshakes */
	uint64_t tls_resumed;         /* ... of which resumed a session */
	uint64_t tls_failures;
	uint64_t tls_broken; /* sessions --tls-broken misbehaved on */
	uint64_t messages;   /* accepted messages */
	uint64_t recipients; /* recipients of accepted messages */
	uint64_t rcpt_accepted;
	uint64_t rejected_rcpt; /* 5xx at RCPT */
	uint64_t deferred_rcpt; /* 4xx at RCPT (421 included) */
	uint64_t mail_rejected; /* 4xx/5xx at MAIL (--mail-reply, SIZE) */
	uint64_t data_rejected; /* 5xx at end of data */
	uint64_t data_deferred; /* 4xx at end of data */
	uint64_t bytes;         /* octets of accepted messages */
	uint64_t bdat_messages; /* accepted messages sent with BDAT */
	uint64_t pipelined_commands;
	uint64_t bare_lf_messages; /* data with LF not preceded by CR */
	uint64_t timeouts;
	uint64_t protocol_errors; /* 5xx replies to commands */
	double first_message_time, last_message_time; /* 0: none yet */
	struct sink_peer_stats *clients;
	size_t nclients, clients_cap;
	struct sink_hist hist_messages, hist_connections;
};

struct sink_conf {
	const char *hostname;
	const char *ready_file;
	const char *stats_file;
	const char *maildir;
	const char *rules_file;
	const char *cert_file;
	const char *key_file;
	const char *mail_reply;
	const char *data_reply;
	const char *greeting_reply;
	int pipelining, eightbitmime, smtputf8, chunking, starttls;
	int default_rules;
	enum sink_tls_broken tls_broken;
	int tls_min, tls_max; /* TLS1_2_VERSION…, 0 = OpenSSL's default */
	int greeting_delay_ms, reply_delay_ms, slow_ms;
	unsigned max_connections, max_msgs_per_conn, max_rcpt;
	uint64_t max_size;
	int timeout_s;
	int verbose;
};

struct sink_listener {
	struct evconnlistener *lev;
	struct sink_peer_stats st;
};

struct sink_session;

struct sink {
	struct sink_conf conf;
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	struct sink_rule *rules;
	struct sink_listener listeners[SINK_LISTEN_MAX];
	size_t nlisteners;
	struct sink_stats stats;
	uint64_t seq;              /* last message number handed out */
	uint64_t sessions;         /* session ids for the trace */
	struct sink_session *live; /* every session, for the exit */
	char **once; /* addresses a STAGE_ONCE rule saw: hash set */
	size_t once_cap, once_len;
};

extern struct sink sink;

/* sink_session.c: one SMTP session per accepted connection. */
void sink_session_accept(struct sink_listener *, int fd,
			 const struct sockaddr *, int socklen);
void sink_session_free_all(void);

/* sink_rules.c: behaviour rules and the --deferonce memory. */
int sink_rules_load(const char *path, char *err, size_t errlen);
int sink_rules_add(const char *line, int builtin, char *err, size_t errlen);
const struct sink_rule *sink_rules_match(const char *addr);
int sink_rules_format(const char *reply, const char *addr, char *buf,
		      size_t size);
int sink_once_seen(const char *addr);
void sink_rules_free(void);

/* sink_stats.c: counters, histograms, the JSON stats file. */
struct sink_peer_stats *sink_stats_client(const char *ip);
void sink_stats_hist_add(struct sink_hist *, int64_t sec);
int sink_stats_write(int force);
int sink_file_replace(const char *path, const void *data, size_t len);
void sink_stats_free(void);
double sink_now(void);

void sink_log(const char *fmt, ...) SINK_PRINTF(1, 2);

#endif /* OUTPOST_SINK_INT_H */
