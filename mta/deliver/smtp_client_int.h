/*
 * smtp_client_int.h — the SMTP client's private header: the client itself
 * and the calls its two files (smtp_client.c: session and transaction;
 * smtp_client_setup.c: hosts, connect, EHLO, TLS) make of each other.
 * Only those two include it; everyone else sees smtp_client.h.
 * The thread of the client's loop only (a client never moves).
 */
#ifndef OUTPOST_MTA_SMTP_CLIENT_INT_H
#define OUTPOST_MTA_SMTP_CLIENT_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "mta/core/scrub.h"
#include "mta/core/sockio.h"
#include "mta/deliver/outcome.h"
#include "mta/deliver/smtp_client.h"

#define SC_REPLY_TEXT_MAX 1024 /* text kept from a (multi-line) reply */
#define SC_NOTLS_MS       (3600 * 1000) /* tls=may fallback memory */
/* The body is pulled from its owner while the connection's output holds
 * less than this: with a queue chunk pulled at a time, a connection holds
 * this, one chunk in the output (two at worst, dot-stuffed) and the chunk
 * in the owner's reader. */
#define SC_BODY_LOW_BYTES (64 * 1024)
/* The most of a body added to the output at once (libevent's largest
 * chain of its own sizing). */
#define SC_OUT_PIECE_BYTES 4096

struct bufferevent;
struct dns_query;
struct event;

enum sc_state {
	SC_RESOLVE,  /* looking up the current host's addresses */
	SC_CONNECT,  /* TCP connect in progress */
	SC_GREETING, /* waiting for the banner */
	SC_EHLO,
	SC_HELO,
	SC_STARTTLS,
	SC_TLS,  /* handshake in progress */
	SC_IDLE, /* usable, no transaction */
	SC_TXN,  /* a transaction in flight */
	SC_RSET,
	SC_QUIT,
	SC_DEAD,
	SC__COUNT
};

/* Capabilities from EHLO. */
#define CAP_PIPELINING 0x01u
#define CAP_8BITMIME   0x02u
#define CAP_SMTPUTF8   0x04u
#define CAP_STARTTLS   0x08u
#define CAP_CHUNKING   0x10u
#define CAP_SIZE       0x20u

/* A command sent and not yet answered: the reply cursor's queue. */
struct sc_cmd {
	enum outcome_stage stage;
	unsigned rcpt; /* OS_RCPT: index into the job's recipients */
};

struct smtp_client {
	const struct smtp_client_env *env;
	struct smtp_client_target t; /* its hosts are the owner's */
	const struct smtp_client_cb *cb;
	void *cbarg;
	enum sc_state state;
	unsigned host_idx;
	struct sockaddr_storage *addrs;
	size_t naddrs, addr_idx;
	/* the attempt's bounds (the path's max_mx_addresses, max_mx_sessions
	 * and attempt_timeout): addresses tried, sessions opened, and when
	 * the walk must end if no session is usable by then */
	unsigned ntried, nsessions;
	int64_t deadline_ms;
	struct dns_query *dq;
	evutil_socket_t fd;
	struct bufferevent *bev;
	/* In clear text, what an entry point writes while the bufferevent's
	 * output is empty: written to the socket at the entry's end
	 * (sc_push), in the turn that made it, and only what the socket did
	 * not take goes to the output.  No write event is added and removed
	 * for a command group or a small body. */
	struct evbuffer *scratch;
	/* In clear text, the socket is read by this event of ours (sc_rd_cb,
	 * mta/core/sockio.h), not by the bufferevent, whose reading stays
	 * off: no ioctl(FIONREAD) before every read.  NULL under TLS. */
	struct event *rd;
	struct sock_reader rdr;
	struct event *timer;
	char ip[48];
	char remote[300]; /* "host [ip]" */
	/* the socket's local address as text, read once per socket (every
	 * job's log names it); "" until then */
	char source[48];
	bool tls, tls_verified, in_clear;
	/* what went wrong with TLS on this session (RFC 8460's result type:
	 * "starttls-not-supported", "certificate-host-mismatch", …), NULL
	 * when nothing did or it was not tried; kept over a tls=may retry in
	 * clear text */
	const char *tls_failure;
	/* the current host's DANE state (t.dane): its usable TLSA records
	 * (copied), or a validated TLSA set with none usable (TLS without
	 * authentication, RFC 7672 2.2) */
	enum { SC_DANE_NONE, SC_DANE_VERIFY, SC_DANE_ENCRYPT } dane;
	struct dns_tlsa *tlsa;
	size_t ntlsa;
	bool usable; /* reached IDLE at least once */
	bool need_rset;
	unsigned caps;
	uint64_t size_max;
	unsigned msgs;
	/* the reply being read */
	int rcode;
	char rtext[SC_REPLY_TEXT_MAX];
	size_t rlen;
	unsigned rlines;
	size_t rbytes;  /* the whole reply so far (SC_REPLY_MAX_BYTES) */
	unsigned rcaps; /* EHLO keywords seen in this reply */
	uint64_t rsize; /* its SIZE */
	/* commands sent, not yet answered (a FIFO: pend[head .. head+len)) */
	struct sc_cmd *pend;
	unsigned pend_head, pend_len, pend_cap;
	/* the transaction */
	struct smtp_client_job *job;
	bool bdat;
	unsigned sent;  /* transaction commands sent (send cursor) */
	unsigned ncmds; /* MAIL + RCPTs + DATA/BDAT (the body comes after) */
	bool mail_ok;
	unsigned rcpt_ok;
	bool *accepted;
	/* the body going out (DATA after its 354, BDAT after its command):
	 * pieces are pulled while the output holds under SC_BODY_LOW_BYTES */
	bool body_on;         /* pieces still to come */
	bool body_bol;        /* DATA: the next byte starts a line */
	uint8_t body_tail[2]; /* DATA: its last two bytes so far */
	size_t body_sent;     /* bytes of the body pulled so far */
	/* why the last host failed, for the closed callback */
	enum outcome_stage fail_stage;
	int fail_code;
	char fail_text[SC_REPLY_TEXT_MAX];
	struct event *kick; /* "ready" on the next loop turn */
	unsigned depth;     /* entry points on the stack; free at 0 */
	struct smtp_client *prev, *next; /* every client alive */
};

/* smtp_client.c: the session --------------------------------------- */

/* sc_host — the name of the host C is at. */
const char *sc_host(const struct smtp_client *c);
/* sc_enter — the one writer of C->state: traces the move, sets the timer
 * the new state waits with. */
void sc_enter(struct smtp_client *c, enum sc_state st);
/* sc_log_enter — diagnostics about C leave its transaction's addresses
 * out: enter that context; scrub_ctx_leave(returned) after the line. */
const struct scrub_ctx *sc_log_enter(const struct smtp_client *c);
/* sc_write — bytes no reply answers (QUIT as we hang up). */
void sc_write(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* sc_send — a command whose reply (to STAGE) will be awaited. */
void sc_send(struct smtp_client *c, enum outcome_stage stage, const char *fmt,
	     ...) __attribute__((format(printf, 3, 4)));
/* sc_pend_push — the command of STAGE was written: its reply is awaited. */
void sc_pend_push(struct smtp_client *c, enum outcome_stage stage,
		  unsigned rcpt);
/* sc_close_socket — the connection closed; nothing is awaited from it. */
void sc_close_socket(struct smtp_client *c);
/* sc_hold, sc_release — bracket every entry point: C is freed only when
 * the outermost returns. */
void sc_hold(struct smtp_client *c);
void sc_release(struct smtp_client *c);
/* sc_finish — the end: close, tell the owner.  FAILED: never usable. */
void sc_finish(struct smtp_client *c, bool failed);
/* sc_fail — a failure that ends the connection (the job in flight gets it;
 * a connection not yet usable moves on to the next host). */
void sc_fail(struct smtp_client *c, enum outcome_stage stage, int code,
	     const char *text);
/* The bufferevent callbacks of C's connection (ARG: C). */
void sc_read_cb(struct bufferevent *bev, void *arg);
void sc_rd_cb(evutil_socket_t fd, short what, void *arg);
/* sc_rd_stop — our reading of the clear-text socket ends (rd). */
void sc_rd_stop(struct smtp_client *c);
void sc_write_cb(struct bufferevent *bev, void *arg);
void sc_event_cb(struct bufferevent *bev, short what, void *arg);

/* smtp_client_setup.c: hosts, connect, EHLO, TLS ----------------------- */

/* sc_connect_next — the next address of this host, or the next host, or
 * give up (closed, failed). */
void sc_connect_next(struct smtp_client *c);
/* sc_host_failed — this host cannot be used: remember why, try the next. */
void sc_host_failed(struct smtp_client *c, enum outcome_stage stage, int code,
		    const char *text);
/* sc_host_notls — tls=may: is H to be used in clear now (STARTTLS failed
 * there lately)?  sc_host_notls_set — it failed: in clear for a while.
 * Any delivery loop (H is shared; a lock guards its TLS fields). */
bool sc_host_notls(const struct smtp_client_host *h);
void sc_host_notls_set(struct smtp_client_host *h);
/* sc_helo_name — the name we greet with. */
const char *sc_helo_name(const struct smtp_client *c);
/* sc_policy — the target's TLS policy. */
enum conf_tls_policy sc_policy(const struct smtp_client *c);
/* sc_session_report — the owner's session callback for this session. */
void sc_session_report(struct smtp_client *c);
/* sc_tlsa_free — forget the current host's TLSA records (DANE state). */
void sc_tlsa_free(struct smtp_client *c);
/* sc_ehlo — send EHLO (capabilities forgotten until its reply). */
void sc_ehlo(struct smtp_client *c);
/* sc_ehlo_keyword — one keyword line KW of an EHLO reply. */
void sc_ehlo_keyword(struct smtp_client *c, const char *kw);
/* sc_after_ehlo — EHLO answered 250: STARTTLS if we should, else ready. */
void sc_after_ehlo(struct smtp_client *c);
/* sc_ready — the session is usable: the owner's ready callback. */
void sc_ready(struct smtp_client *c);
/* sc_tls_begin — STARTTLS answered 220: the handshake. */
void sc_tls_begin(struct smtp_client *c);
/* sc_tls_done — the handshake is over: check it, EHLO again. */
void sc_tls_done(struct smtp_client *c);
/* sc_tls_failed — the handshake failed (WHY). */
void sc_tls_failed(struct smtp_client *c, const char *why);

#endif
