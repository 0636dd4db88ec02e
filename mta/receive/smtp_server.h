/*
 * smtp_server.h — SMTP submission sessions (RFC 5321, 2920, 3030, 3207,
 * 4954, 6152, 6531, 8314).
 */
#ifndef OUTPOST_MTA_SMTP_SERVER_H
#define OUTPOST_MTA_SMTP_SERVER_H

#include <stdbool.h>

#include <event2/util.h>
#include <openssl/ssl.h>

struct confgen;
struct conf;
struct conf_listener;
struct loop;
struct queue;
struct queue_op;

/* One per configured listener of a configuration generation; shared
 * read-only by every loop. */
struct smtp_server_listener {
	const struct conf_listener *conf;
	struct confgen *gen; /* the generation it belongs to */
	SSL_CTX *ssl_ctx;    /* NULL when the listener has no TLS at all */
	bool loopback;       /* bound to a loopback address */
	bool auth_plain_ok;  /* AUTH may be offered without TLS */
};

/*
 * What becomes of a message once its queue transaction is on disk and the
 * client has its 250 (or has left): the callee owns OP (envelope and body)
 * from then on.  outpostd hands the scheduler's sched_message_add here, so
 * receiving knows nothing of delivery.  Loop thread; must not block.
 */
typedef void smtp_server_queued_fn(struct queue_op *op);

/*
 * smtp_server_init — process-wide context: QUEUE is borrowed for the
 * daemon's life; ON_QUEUED receives every committed message; CONF gives
 * the body memory budget (limits { max_body_memory }: fixed until a
 * restart).  Each session reads the configuration of its listener's
 * generation instead.  Main thread, before loops.
 */
void smtp_server_init(const struct conf *conf, struct queue *queue,
		      smtp_server_queued_fn *on_queued);

/*
 * smtp_server_accept — a new connection FD (non-blocking) from SA on
 * listener LI, owned by loop L from now on.  The session takes a reference
 * to LI's generation and lives under it to its end.  Applies the session
 * limits.  Loop thread.
 */
void smtp_server_accept(struct loop *l, struct smtp_server_listener *li,
			evutil_socket_t fd, const struct sockaddr *sa,
			int salen);

/* Called on L's thread when L has no session left after a shutdown. */
typedef void smtp_server_drained_fn(struct loop *l);

/*
 * smtp_server_shutdown — on L's thread: close idle sessions with 421;
 * sessions in the middle of a transaction get until the end of it (or
 * DEADLINE_MS).  When L has no session left, DRAINED(L) is called, possibly
 * more than once (the deadline may find it empty again); the loop keeps
 * running.  New connections must be kept away first (listen_intake_set).
 */
void smtp_server_shutdown(struct loop *l, unsigned deadline_ms,
			  smtp_server_drained_fn *drained);

#endif
