/*
 * smtp_client.h — the outbound SMTP client's interface: one connection to
 * one of a target's hosts, running transactions (jobs) its owner hands it,
 * and reporting through three callbacks.  The client knows nothing of who
 * owns it (the scheduler, or a test): what it needs comes in these plain
 * structs, what it learned goes back in the job.
 *
 * Every function and callback of a client runs on the thread of the event
 * base given in its struct smtp_client_env (one of the delivery loops).
 * Clients on several loops may share a target's hosts: their TLS fields
 * are the one thing here under a lock.
 */
#ifndef OUTPOST_MTA_SMTP_CLIENT_H
#define OUTPOST_MTA_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "mta/core/scrub.h"
#include "mta/deliver/outcome.h"

struct event_base;
struct dns_resolver;
struct smtp_client;

/* What every client of one loop shares; must outlive them. */
struct smtp_client_env {
	struct event_base *base;
	struct dns_resolver *dns;     /* NULL: only IP-literal hosts work */
	SSL_CTX *ssl_ctx;             /* set up by smtp_client_tls_init() */
	bool loopback_only;           /* refuse any other destination address */
	unsigned connect_timeout_ms;  /* TCP connect, and the TLS handshake */
	unsigned greeting_timeout_ms; /* for the 220 */
	unsigned command_timeout_ms;  /* EHLO, MAIL, RCPT, DATA, QUIT, … */
	unsigned data_timeout_ms;     /* for the reply to the final "." */
	unsigned idle_timeout_ms;     /* a parked connection (_park) */
};

/*
 * One host of a target.  The owner keeps it (and NAME) alive while any
 * client of the target is; the clients write the two TLS fields (under the
 * client's lock: they may run on several loops), which carry what one
 * learned to the next connection to this host.
 */
struct smtp_client_host {
	char *name; /* MX host name, or an IP literal ("127.0.0.1", "[::1]") */
	/* tls=may: STARTTLS failed, go in clear until (util_mono_ms) */
	int64_t notls_until_ms;
	SSL_SESSION *session; /* for resumption; the owner frees it */
};

/* Where a connection goes and how: copied by smtp_client_new(), but for
 * HOSTS (see struct smtp_client_host). */
struct smtp_client_target {
	struct smtp_client_host *hosts; /* in preference order */
	unsigned nhosts;
	unsigned port;
	const char *ehlo; /* the name we greet with (kept by the owner) */
	struct sockaddr_storage source; /* the address to bind, if has_source */
	bool has_source;
	enum conf_tls_policy tls;
	/* DANE (RFC 7672): the hosts came from a validated MX answer; each
	 * host's TLSA records are looked up (_PORT._tcp.HOST), and a host
	 * whose validated records are usable is reached over TLS that
	 * matches them, whatever TLS says for the others */
	bool dane;
	/* the attempt's bounds (Postfix smtp_mx_address_limit,
	 * smtp_mx_session_limit): addresses tried, sessions opened, and the
	 * time by which a session must be usable */
	unsigned max_mx_addresses, max_mx_sessions, attempt_timeout_ms;
};

/* One recipient's result, filled by the client. */
struct smtp_client_result {
	enum outcome_stage stage; /* the command the reply answered */
	int code; /* 0 = no reply (connection failure, timeout) */
	char *
	    text; /* the reply text (malloc'd, the owner frees) or our reason */
};

/*
 * The body of a job, read piece by piece as the connection drains (the
 * client never holds it whole): NEXT(ARG, &p, &len, err, errlen) returns 0
 * with the next piece (P valid until the next call), 1 at the end, -1 when
 * the body cannot be read (ERR says why: the transaction is given up, the
 * connection closed, so that no partial message is ever delivered).  The
 * pieces are the message as queued: CRLF lines, not dot-stuffed, cut
 * anywhere.  The client calls it only while the job is its own, from the
 * first byte to the end, once (queue_body_next fits it: queue/queue.h).
 */
typedef int smtp_client_body_fn(void *arg, const uint8_t **p, size_t *len,
				char *err, size_t errlen);

/* Who answered a job and how: made by the client when the job's
 * transaction ends (NULL before, and when there was no memory for it),
 * freed with the job by its owner.  Apart from the job so that the jobs
 * waiting for a connection (a backlog of thousands) do not each carry it. */
struct smtp_client_peer {
	char remote[300]; /* "host[ip]:port" that answered */
	char tls[100];    /* "TLSv1.3 TLS_AES_256_GCM_SHA384 verified" or "" */
	char mx_host[256], mx_ip[48], source[48];
	char tls_version[16], tls_cipher[64];
};

/*
 * One transaction: the owner fills the first part and keeps every pointer
 * alive until the done callback; the client fills RES (NRCPT entries, zeroed
 * by the owner) and the second part before it calls done.
 */
struct smtp_client_job {
	const char *sender;
	const char *const *rcpts; /* NRCPT addresses */
	unsigned nrcpt;
	smtp_client_body_fn *body_next; /* the body's pieces (BODY_ARG) */
	void *body_arg;
	size_t body_len;         /* the body's size in bytes (SIZE=, BDAT) */
	bool smtputf8, eightbit; /* what the message needs of the server */
	/* names SENDER and RCPTS to the address scrubber (mta/core/scrub.h)
	 * for diagnostics about the transaction; n = 0: none */
	struct scrub_ctx scrub;
	struct smtp_client_result *res;
	/* filled by the client */
	struct smtp_client_peer *peer; /* see above; the owner frees it */
	int tls_verified;              /* -1: no TLS */
	/* what went wrong with TLS on the session, as RFC 8460 names it
	 * ("starttls-not-supported", "certificate-host-mismatch",
	 * "certificate-expired", "certificate-not-trusted",
	 * "validation-failure"), NULL when nothing did or TLS was not tried
	 * (tls = none); a static string.  The owner may set it for a job that
	 * never reached a session. */
	const char *tls_failure;
	bool dane; /* the session's host had TLSA records (DANE applied) */
};

/* What became of TLS on one session (one connection to one host). */
struct smtp_client_session {
	const char *mx_host; /* valid during the callback only */
	const char *mx_ip, *source_ip;
	const char *tls_failure; /* NULL: none (see smtp_client_job) */
	bool tls, tls_verified;  /* TLS used; its certificate verified */
	bool dane;               /* the host's TLSA records applied */
};

/*
 * The owner's callbacks (ARG as given to smtp_client_new), never called
 * from within smtp_client_new():
 *   ready   C is connected and idle: give it a job (smtp_client_send), or
 *           tell it to go (smtp_client_quit) or wait (smtp_client_park);
 *   done    C finished JOB: every recipient has its result in JOB->res;
 *   closed  C is gone (free after this returns: forget it).  FAILED: it
 *           never became usable (every host failed), and STAGE, CODE and
 *           TEXT (NULL if none) say why the last host failed.
 */
struct smtp_client_cb {
	void (*ready)(struct smtp_client *c, void *arg);
	void (*done)(struct smtp_client *c, struct smtp_client_job *job,
		     void *arg);
	void (*closed)(struct smtp_client *c, bool failed,
		       enum outcome_stage stage, int code, const char *text,
		       void *arg);
	/* (may be NULL) once per session whose TLS was decided: the
	 * session is usable (S->tls_failure says what went wrong on the
	 * way, under tls = may), or TLS made the host fail; for TLS
	 * reporting (RFC 8460) */
	void (*session)(struct smtp_client *c,
			const struct smtp_client_session *s, void *arg);
};

/*
 * smtp_client_new — open a connection to TARGET's hosts in order (the
 * first that gives a usable session wins), starting on the next loop turn.
 * ENV and CB must outlive the client.  Returns NULL when out of memory
 * (nothing is called back then).
 */
struct smtp_client *smtp_client_new(const struct smtp_client_env *env,
				    const struct smtp_client_target *target,
				    const struct smtp_client_cb *cb, void *arg);

/* smtp_client_tls_init — set CTX (a client context) up to keep each host's
 * TLS session for resumption (struct smtp_client_host.session).  Once, at
 * start, before any client uses CTX. */
void smtp_client_tls_init(SSL_CTX *ctx);
/* smtp_client_tls_free — the sessions kept for hosts by name (main
 * thread, after every client is gone). */
void smtp_client_tls_free(void);

/* smtp_client_send — run JOB on C (after ready); done follows. */
void smtp_client_send(struct smtp_client *c, struct smtp_client_job *job);

/* smtp_client_quit — QUIT and close C (after ready, or idle while parked);
 * closed follows. */
void smtp_client_quit(struct smtp_client *c);

/* smtp_client_park — keep idle C for reuse: nothing happens until the owner
 * sends or quits, or idle_timeout passes (then it quits itself). */
void smtp_client_park(struct smtp_client *c);

/* smtp_client_tls_failure — what went wrong with TLS on C's last session
 * (as struct smtp_client_job.tls_failure); in the closed callback, of the
 * last host tried. */
const char *smtp_client_tls_failure(const struct smtp_client *c);
/* smtp_client_dane — did DANE apply to C's last host (as
 * struct smtp_client_job.dane)? */
bool smtp_client_dane(const struct smtp_client *c);

/* smtp_client_msgs — transactions started on C so far. */
unsigned smtp_client_msgs(const struct smtp_client *c);

/* smtp_client_idle — is C usable and without a job (ready, or parked)?
 * False once it has begun to leave (an idle timeout's QUIT, a close). */
bool smtp_client_idle(const struct smtp_client *c);

/* smtp_client_abort — close C at once (shutdown deadline); the job in
 * flight, if any, is reported done with code 0 (deferred), then closed. */
void smtp_client_abort(struct smtp_client *c);

/* smtp_client_abort_all — smtp_client_abort() every client alive on the
 * calling thread (its loop's; each loop is asked on its own). */
void smtp_client_abort_all(void);

#endif
