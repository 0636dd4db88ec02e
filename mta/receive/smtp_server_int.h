/*
 * smtp_server_int.h — what the four files of an SMTP server session share,
 * and nothing outside them may include:
 *   smtp_server.c       the session's life: accept, the state table and
 *                       smtp_server_enter(), input, timers, close, shutdown
 *   smtp_server_cmd.c   the command table and the commands of the dialogue
 *   smtp_server_auth.c  the AUTH dialogue (auth.c verifies the password)
 *   smtp_server_data.c  DATA/BDAT around the scanner (smtp_data.c), the
 *                       body memory, the hand-off to the intake, the 250
 *   smtp_server_feedback.c  mail to feedback.address (ARF reports)
 * Every function here runs on the session's loop thread only.
 */
#ifndef OUTPOST_MTA_RECEIVE_SMTP_SERVER_INT_H
#define OUTPOST_MTA_RECEIVE_SMTP_SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/util.h>

#include "mta/core/loop.h"
#include "mta/core/sockio.h"
#include "mta/receive/addr.h"
#include "mta/receive/confgen.h"
#include "mta/receive/intake.h"
#include "mta/receive/peer.h"
#include "mta/receive/smtp_data.h"
#include "mta/receive/smtp_mem.h"
#include "mta/receive/smtp_server.h"

struct dkim_bodyhash;
struct smtp_spool;

struct auth_request;
struct conf_user;
struct evbuffer;

#define SMTP_HELO_MAX 255

enum smtp_server_state {
	SS_TLS,      /* implicit TLS or STARTTLS handshake in progress */
	SS_GREETING, /* greeting sent; EHLO/HELO expected */
	SS_READY,    /* after EHLO: MAIL expected */
	SS_MAIL,     /* MAIL accepted: RCPT expected */
	SS_RCPT,     /* a recipient accepted: more RCPT, DATA or BDAT */
	SS_DATA,     /* reading DATA text up to CRLF.CRLF */
	SS_BDAT,     /* reading a BDAT chunk's octets */
	SS_AUTH,     /* a SASL exchange waiting for the client's line */
	SS_BUSY,     /* waiting for a worker, the queue, or a delay */
	SS_CLOSING,  /* flushing the last reply, then closing */
	SS__COUNT
};

/* Command bits, for the states' allowed-command masks. */
enum {
	CMD_EHLO = 1u << 0,
	CMD_HELO = 1u << 1,
	CMD_MAIL = 1u << 2,
	CMD_RCPT = 1u << 3,
	CMD_DATA = 1u << 4,
	CMD_BDAT = 1u << 5,
	CMD_RSET = 1u << 6,
	CMD_NOOP = 1u << 7,
	CMD_QUIT = 1u << 8,
	CMD_VRFY = 1u << 9,
	CMD_HELP = 1u << 10,
	CMD_STARTTLS = 1u << 11,
	CMD_AUTH = 1u << 12,
	CMD_EXPN = 1u << 13,
};

/* Session flags. */
#define SF_TLS       0x0001u /* TLS established */
#define SF_EHLO      0x0002u /* EHLO (not HELO) was used */
#define SF_LONGLINE  0x0004u /* discarding the rest of a long line */
#define SF_STARTTLS  0x0008u /* switch to TLS once 220 is flushed */
#define SF_CLOSE     0x0010u /* free at the end of this callback */
#define SF_ZOMBIE    0x0020u /* connection gone, async work pending */
#define SF_SHUTDOWN  0x0040u /* daemon stopping: close after this txn */
#define SF_READ_OFF  0x0080u /* reading disabled for back-pressure */
#define SF_BDAT_USED 0x0100u /* this transaction uses BDAT */
#define SF_MEM_WAIT  0x0200u /* reading paused: waiting for body memory */
#define SF_EXPIRED   0x0400u /* session lifetime over: close when idle */
#define SF_UNCOUNTED 0x0800u /* left smtp_sessions_open (closing) */
#define SF_SPOOL_WAIT                                                          \
	0x1000u /* reading paused: spooled chunks to commit (smtp_spool.c) */
#define SF_READ_WAITS (SF_MEM_WAIT | SF_SPOOL_WAIT)

enum smtp_server_auth_mech { AM_NONE, AM_PLAIN, AM_LOGIN_USER, AM_LOGIN_PASS };

struct smtp_server_session {
	uint64_t id;
	struct loop *loop;
	/* The configuration the session started with, for its whole life
	 * (a reference: a reload does not change it under the session). */
	struct confgen *gen;
	const struct conf *conf;               /* gen->conf */
	struct smtp_server_listener *listener; /* one of gen's */
	evutil_socket_t fd;
	/* deadlines, monotonic ms (smtp_server_timer_arm) */
	int64_t born_ms;     /* connect: the session lifetime counts from it */
	int64_t armed_ms;    /* when the state's deadline was set */
	int64_t deadline_ms; /* the state's deadline, 0 = none */
	int64_t rate_start_ms; /* message data: this rate window's start */
	uint64_t rate_bytes;   /* octets read in the window */
	struct bufferevent *bev;
	/* In clear text, the socket is read by this event of ours
	 * (smtp_server_rd_cb, mta/core/sockio.h), not by the bufferevent:
	 * no ioctl(FIONREAD) and no 4 KiB cap per read.  Added (rd_added)
	 * while reading is on (rd_on) and the input under SMTP_INPUT_MAX;
	 * once reading is off, deleted when it fires.  NULL under TLS. */
	struct event *rd;
	struct sock_reader rdr;
	bool rd_on, rd_added;
	/* In clear text, replies made while the bufferevent's output is
	 * empty: written to the socket at the end of the loop's turn
	 * (smtp_server_push, queued by push_turn, which holds the session
	 * as one of its pending), and only what the socket does not take
	 * goes to the output.  No write event is added and removed for a
	 * reply.  NULL under TLS. */
	struct evbuffer *scratch;
	struct loop_turn push_turn;
	struct event *timer; /* the next deadline or check (timer_schedule) */
	struct event *delay; /* an answer held back (AUTH failure) */
	enum smtp_server_state state;
	unsigned flags;
	unsigned pending; /* async operations holding the session */
	unsigned errors;
	struct peer_key client;
	char client_str[48];
	bool client_trusted; /* inside a relay network */
	char helo[SMTP_HELO_MAX + 1];
	const struct conf_user *user;
	struct auth_request *auth;
	enum smtp_server_auth_mech auth_mech;
	/* transaction */
	uint64_t msg_id;
	struct addr_path sender;
	bool smtputf8, body8bit;
	bool feedback;    /* the recipient is feedback.address (alone) */
	bool mail_unauth; /* MAIL taken without the listener's AUTH: only a
			     feedback report may follow */
	uint64_t declared_size;
	char **rcpts;
	unsigned nrcpts, rcpts_cap;
	unsigned rcpts_dropped; /* suppressed, answered 250, not queued */
	/* DSN (RFC 3461): MAIL's ENVID (decoded) and RET (QUEUE_F_RET_*),
	 * and each recipient's NOTIFY and ORCPT, parallel to rcpts. */
	char *envid;
	uint32_t dsn_ret;
	struct smtp_server_rcpt_dsn {
		uint8_t notify; /* QUEUE_NOTIFY_*, 0 = not given */
		char *orcpt;    /* decoded, or NULL */
	} * rcpt_dsn;
	uint8_t *body;
	size_t body_len, body_cap;  /* body_cap is charged to the budget */
	size_t inflight_charge;     /* charged for a body with the intake */
	struct smtp_mem_waiter mem; /* in the budget's queue (smtp_mem.h) */
	size_t mem_cap;             /* the capacity waited for */
	bool mem_asked;             /* waiting, or the answer on its way */
	struct smtp_data_scan scan; /* the message data scanner's state */
	size_t trace_len; /* the body's first bytes: our Received: field */
	/* Spooling (smtp_spool.c): past the header block and a chunk, the
	 * body goes to the queue as it arrives; s->body keeps the header
	 * block and what is not spooled yet. */
	bool spool_ok;            /* this message may spool */
	bool spool_end_wait;      /* its data ended: waiting for commits */
	size_t hdr_end;           /* the body's start in s->body, 0 unknown */
	size_t hdr_scan;          /* where the search for it goes on */
	struct smtp_spool *spool; /* NULL: nothing spooled */
	uint64_t bdat_left;
	bool bdat_last;
	struct intake_req intake; /* the message on its way to the queue */
	struct timespec eod;      /* when its end of data was read */
	/* per session totals, for the summary line */
	unsigned msgs, rcpts_total;
	struct smtp_server_session *prev, *next;
};

/* Set once by smtp_server_init() before any loop runs; read-only after. */
extern struct queue *smtp_server_queue;
extern smtp_server_queued_fn *smtp_server_on_queued;

/* smtp_server.c ------------------------------------------------------- */

/* smtp_server_reply — one reply line (CRLF added) to S's output; nothing
 * once the connection is gone. */
void smtp_server_reply(struct smtp_server_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* smtp_server_error — a refused command: counted; past max_errors, 421
 * and the session closes. */
void smtp_server_error(struct smtp_server_session *s);

/* smtp_server_refuse — smtp_server_reply(), then smtp_server_error(): the
 * answer to a refused command. */
void smtp_server_refuse(struct smtp_server_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* smtp_server_close_after — close once the replies queued so far are
 * flushed; nothing more is read. */
void smtp_server_close_after(struct smtp_server_session *s);

/* smtp_server_enter — the one writer of a live session's state: traces the
 * transition and arms the new state's deadline.  Nothing leaves CLOSING. */
void smtp_server_enter(struct smtp_server_session *s,
		       enum smtp_server_state st);

/* smtp_server_allows — whether S's state accepts the command CMD_*. */
bool smtp_server_allows(const struct smtp_server_session *s, uint32_t cmd);

/* smtp_server_timer_arm — the state's deadline starts again now (a whole
 * command line, a piece of message data). */
void smtp_server_timer_arm(struct smtp_server_session *s);

/* smtp_server_rate_start — a new window for the minimum data rate. */
void smtp_server_rate_start(struct smtp_server_session *s);

/* smtp_server_txn_reset — forget the transaction: recipients, body (its
 * memory given back to the budget), sender, parameters. */
void smtp_server_txn_reset(struct smtp_server_session *s);

/* smtp_server_idle — the transaction is over: back to READY (or GREETING),
 * or 421 and close when the daemon stops or the lifetime is over. */
void smtp_server_idle(struct smtp_server_session *s);

/* smtp_server_busy — enter BUSY and stop reading until
 * smtp_server_resume(): an answer from another thread is awaited. */
void smtp_server_busy(struct smtp_server_session *s);

/* smtp_server_resume — read again and handle what was pipelined. */
void smtp_server_resume(struct smtp_server_session *s);

/* smtp_server_read_set — reading of S's input on or off: our event in
 * clear text, the bufferevent's reading under TLS. */
void smtp_server_read_set(struct smtp_server_session *s, bool on);

/* smtp_server_input — handle buffered input while the state allows. */
void smtp_server_input(struct smtp_server_session *s);

/* smtp_server_settle — the end of every entry point (callbacks,
 * completions): frees S when it is closed and nothing holds it.  S may be
 * gone on return. */
void smtp_server_settle(struct smtp_server_session *s);

/* smtp_server_log_reject — a refusal at submission in the delivery log:
 * CODE, REASON (the reply given); RCPT the refused recipient or NULL;
 * DMARC the DMARC result or NULL. */
void smtp_server_log_reject(struct smtp_server_session *s, int code,
			    const char *reason, const char *rcpt,
			    const char *dmarc);

/* smtp_server_cmd.c --------------------------------------------------- */

/* smtp_server_cmd_dispatch — one command LINE (CRLF removed, checked for
 * NUL and bare CR): look it up, check the state allows it, run it. */
void smtp_server_cmd_dispatch(struct smtp_server_session *s, char *line);

/* smtp_server_cmd_starttls_offered — STARTTLS may be used now. */
bool smtp_server_cmd_starttls_offered(const struct smtp_server_session *s);

/* smtp_server_auth.c -------------------------------------------------- */

/* smtp_server_auth_offered — AUTH may be used now (EHLO says so). */
bool smtp_server_auth_offered(const struct smtp_server_session *s);

/* smtp_server_auth_cmd — the AUTH command: ARG is "MECH [initial]". */
void smtp_server_auth_cmd(struct smtp_server_session *s, char *arg);

/* smtp_server_auth_step — the client's line RESP in the SASL exchange;
 * the caller wipes it afterwards. */
void smtp_server_auth_step(struct smtp_server_session *s, const char *resp);

/* smtp_server_auth_reset — drop (and wipe) the exchange in progress. */
void smtp_server_auth_reset(struct smtp_server_session *s);

/* smtp_server_data.c -------------------------------------------------- */

/* smtp_server_data_cmd — the DATA command. */
void smtp_server_data_cmd(struct smtp_server_session *s, char *arg);

/* smtp_server_data_cmd_bdat — the BDAT command ("size [LAST]"). */
void smtp_server_data_cmd_bdat(struct smtp_server_session *s, char *arg);

/* smtp_server_data_input — DATA text from IN.  Returns 1 when progress was
 * made, 0 when more input (or body memory) is needed. */
int smtp_server_data_input(struct smtp_server_session *s, struct evbuffer *in);

/* smtp_server_data_input_bdat — a BDAT chunk's octets from IN.  Returns as
 * smtp_server_data_input(). */
int smtp_server_data_input_bdat(struct smtp_server_session *s,
				struct evbuffer *in);

/* smtp_server_data_mem_cancel — S no longer waits for body memory
 * (transaction over, connection gone). */
void smtp_server_data_mem_cancel(struct smtp_server_session *s);

/* smtp_server_data_spooled — a spooled chunk of S's message committed (or
 * failed), or the pool took the next: reading or the end of data goes on.
 * Loop thread, from smtp_spool.c. */
void smtp_server_data_spooled(struct smtp_server_session *s);

/* smtp_spool.c ---------------------------------------------------------- */

/* Chunks spilled and not yet committed that stop a session's reading. */
#define SMTP_SPOOL_INFLIGHT_MAX 1
/* A body is held whole up to SMTP_SPOOL_START_BYTES past its header block
 * (a campaign's HTML fits: one insert, sent from memory the first time);
 * past it, the session spools QUEUE_CHUNK_BYTES at a time. */
#define SMTP_SPOOL_START_BYTES (128 * 1024)
/* A message's body octets scanned per step while it may spool, so that
 * s->body stays under the header block and two chunks. */
#define SMTP_SPOOL_FEED_BYTES QUEUE_CHUNK_BYTES
/* The header block's limit (a message whose header block is longer is
 * refused): what is prepended to it still leaves chunk 0 in one chunk. */
#define SMTP_HEADER_MAX_BYTES (192 * 1024)

/* smtp_spool_spill — N octets of S's body from s->hdr_end (the rest moves
 * down) to the queue as its next chunk, through the pool.  0, or -1 out of
 * memory (nothing changed). */
int smtp_spool_spill(struct smtp_server_session *s, size_t n);

/* smtp_spool_full — S has SMTP_SPOOL_INFLIGHT_MAX chunks in flight. */
bool smtp_spool_full(const struct smtp_server_session *s);

/* smtp_spool_busy — S has a chunk in flight (pool or writer). */
bool smtp_spool_busy(const struct smtp_server_session *s);

/* smtp_spool_bytes — the body octets S has spooled. */
uint64_t smtp_spool_bytes(const struct smtp_server_session *s);

/* smtp_spool_adopt — OP (S's insert) takes the spooled chunks (op->spool,
 * spooled, spooled_bytes) and *BH the body hash so far (NULL: nothing
 * signs; the caller owns it).  Only when nothing is in flight.  0 (also
 * with nothing spooled), or -1 with WHY when a chunk was not written (-2:
 * the queue's map was full). */
int smtp_spool_adopt(struct smtp_server_session *s, struct queue_op *op,
		     struct dkim_bodyhash **bh, char *why, size_t whylen);

/* smtp_spool_release — S lets go of its spool: ADOPTED, its insert
 * committed; else its chunks are deleted once nothing is in flight. */
void smtp_spool_release(struct smtp_server_session *s, bool adopted);

/* smtp_spool_deleted_cb — the give-up's completion (writer thread). */
void smtp_spool_deleted_cb(struct queue_op *op, int status, void *arg);

/* smtp_server_feedback.c ---------------------------------------------- */

/* smtp_server_feedback_mail_open — MAIL without AUTH on a listener that
 * requires it: true (and remembered) when a feedback address exists, for
 * then RCPT decides (only that address is taken). */
bool smtp_server_feedback_mail_open(struct smtp_server_session *s);

/* smtp_server_feedback_rcpt — RCPT's ARG ("TO:<…> …") before any other
 * check: 1 when it was answered here (the feedback address, or a refusal
 * that mixing or missing AUTH calls for), 0 for the usual checks. */
int smtp_server_feedback_rcpt(struct smtp_server_session *s, const char *arg);

/* smtp_server_feedback_end — end of a report's data: size check, then the
 * worker pool parses and acts on it; the reply follows from there. */
void smtp_server_feedback_end(struct smtp_server_session *s);

#endif
