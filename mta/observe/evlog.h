/*
 * evlog.h — the delivery log: one JSON object per line per event
 * (reception, delivery, transient failure, bounce, expiration, rejection,
 * admin action), for operators to tail and ship.
 *
 * No address is ever written in clear: every address field is replaced by
 * its keyed BLAKE2b hash (queue_addr_hash, the key in hash_key_file) plus
 * its domain in clear; reply texts from receivers are scrubbed of anything
 * address-shaped.  Lines are formatted on the calling thread and handed to a
 * writer thread, which writes them out at least once a second (and on
 * shutdown): no caller ever waits for the disk.  SIGUSR1 reopens the file
 * (logrotate); the daemon rotates it itself at UTC midnight (logkeep.h,
 * evlog_reopen_wait).  Thread-safe.
 */
#ifndef OUTPOST_MTA_EVLOG_H
#define OUTPOST_MTA_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum evlog_type {
	EV_RECEPTION,  /* a message queued (after commit) */
	EV_DELIVERY,   /* a recipient delivered */
	EV_TRANSIENT,  /* a recipient deferred (4xx, connection failure …) */
	EV_BOUNCE,     /* a recipient failed permanently (DSN follows) */
	EV_EXPIRATION, /* a recipient given up after max_age */
	EV_REJECTION,  /* refused at submission: relay, sender, DMARC, … */
	EV_ADMIN,      /* an operator's change (hold, delete, suspend …) */
	EV_PAUSE,  /* a destination paused (back-off …): once, not per msg */
	EV_RESUME, /* a paused destination goes again */
	EV_EXPORT, /* a message left the queue in an archive (export) */
	EV_IMPORT, /* a message came in from an archive (import) */
	EV_SUPPRESSED, /* a RCPT refused or dropped: its recipient is on the
			  suppression list (mta/observe/suppress.h) */
	EV_COMPLAINT,  /* a mailbox provider's complaint report (ARF) */
	EV_WATCHDOG,   /* the watchdog stopped or released a sending identity */
	EV__COUNT
};

/* Every field is optional: NULL strings, 0 ids/sizes and -1 numbers are
 * left out of the line. */
struct evlog_event {
	enum evlog_type type;
	int64_t time_ms;         /* 0 = now */
	uint64_t id;             /* queue id, 0 = none */
	const char *session;     /* SMTP session id (hex), reception side */
	const char *user;        /* authenticated user */
	const char *client;      /* submitting client's IP */
	const char *pool;        /* source pool name */
	const char *source_addr; /* local address of the outbound connection */
	const char *destination; /* recipient domain (delivery side) */
	const char *mx_host;     /* the host that answered */
	const char *mx_ip;
	const char *rcpt;      /* ADDRESS: written as rcpt_hash + rcpt_domain */
	const char *sender;    /* ADDRESS: sender_hash + sender_domain ("" =
				  the null sender: sender_domain "") */
	uint64_t size;         /* message bytes */
	int nrcpts;            /* recipients (reception), -1 none */
	int attempt;           /* attempt number, -1 none */
	int64_t queue_time_ms; /* time in the queue, -1 none */
	int code;              /* SMTP reply code, 0 none */
	const char *enhanced;  /* "5.1.1" */
	const char *reply;     /* reply text: scrubbed and escaped here */
	const char *stage;     /* where: "rcpt", "eom", "connect" … */
	const char *tls_version; /* "TLSv1.3" */
	const char *tls_cipher;
	int tls_verified; /* 1, 0, or -1 unknown */
	/* delivery side: the TLS policy that applied ("mta-sts", "none"), its
	 * mode ("enforce", "testing") and what came of it ("success", or RFC
	 * 8460's failure type); NULL: not written */
	const char *tls_policy;
	const char *tls_policy_mode;
	const char *tls_result;
	const char *dkim;    /* signatures: "d=ex.com s=s1 rsa-sha256, …" */
	const char *dmarc;   /* DMARC result summary */
	const char *reason;  /* rejection/admin: short reason */
	const char *admin;   /* admin: who ("root (uid 0)") */
	const char *command; /* admin: what ("hold --domain example.com") */
	int count;           /* admin: messages affected, -1 none */
	/* The message's Message-ID as sent ("<left@right>"): always written
	 * as msgid_hash (queue_addr_hash: without white space and angle
	 * brackets, lower-cased, as `outpost log --id` computes it), and as
	 * msgid in clear only with MSGID_CLEAR (the intake found it
	 * machine-made and free of the message's addresses:
	 * QUEUE_F_MSGID_CLEAR).  Scrubbed like any text all the same. */
	const char *msgid;
	bool msgid_clear;
	const char *campaign; /* campaign/tenant id (log.campaign_header) */
	/* bounce, transient failure, expiration: what the failure means
	 * ("bad-mailbox", conf_bounce_category_name) */
	const char *category;
	const char *feedback_type; /* complaint: "abuse", "fraud", … */
	const char *agent; /* complaint: the reporter's User-Agent (peer text:
			      scrubbed and escaped) */
	/* watchdog: the signals and their values, a JSON object made by the
	 * watchdog (numbers and names only), written raw */
	const char *signals;
};

/*
 * evlog_open — open PATH for appending (created 0640 less the umask; see
 * evlog_file_perms) and start the writer.
 * HASH_KEY (32 bytes) is copied into locked memory.  PATH NULL: events are
 * dropped (no delivery log configured).  0 ok, -1 with err.  Main thread,
 * before other threads log.
 */
int evlog_open(const char *path, const uint8_t hash_key[32], char *err,
	       size_t errlen);

/* evlog_write — format EV and queue the line.  Any thread; never blocks on
 * disk (if the writer falls far behind, or the filesystem is down to the
 * queue's reserve (mta/core/logspace.h), lines are dropped and counted).  Text
 * fields are scrubbed (mta/core/scrub.h) of EV's own addresses and of those of
 * the calling thread's transaction (scrub_ctx_enter). */
void evlog_write(const struct evlog_event *ev);

/*
 * evlog_batch_begin — from now on, the calling thread's lines wait in a
 * buffer of its own and join the shared one together, under one lock, at
 * the end of BASE's current turn (an event made active by the first line),
 * or sooner when EVLOG_BATCH_BYTES of them wait.  So a loop that logs an
 * event per message (a delivery, a reception) does not take the lock that
 * every other loop takes for each one.  Lines keep their order within the
 * thread.  0, or -1 (no memory: the thread's lines go one by one, as
 * before).  The thread that runs BASE, before its first event; once.
 */
struct event_base;
int evlog_batch_begin(struct event_base *base);
/* evlog_batch_flush — hand over the lines the calling thread's batch holds
 * now, under the one lock: for a line that must come before what another
 * thread logs next (a reception, before its message goes to delivery).
 * Nothing if the thread does not batch. */
void evlog_batch_flush(void);
/* evlog_batch_end — hand over the lines that wait, and log one by one from
 * now on.  The same thread, after its loop has ended, before BASE is
 * freed.  Nothing if evlog_batch_begin was not called (or failed). */
void evlog_batch_end(void);

/* evlog_hash — the keyed hash of ADDR (or of any word that must not be
 * written in clear: a user name), as the delivery log writes it (32 hex
 * digits and a NUL into HEX).  "" before evlog_open().  Any thread. */
void evlog_hash(const char *addr, char hex[33]);

/*
 * evlog_file_perms — give the delivery log file GID ((gid_t)-1: the group
 * it was made with) and MODE (0: as made, 0640 less the umask): now if it
 * is open, and at every reopen.  0, or -1 with err (errno's text: e.g. the
 * process may not give that group).  Main thread, while no reopen can run
 * (before the main loop handles SIGUSR1).
 */
int evlog_file_perms(gid_t gid, mode_t mode, char *err, size_t errlen);

/* evlog_reopen — reopen the file (after logrotate moved it).  Any thread
 * (async-signal-unsafe: call from the main loop's signal event). */
void evlog_reopen(void);

/*
 * evlog_reopen_wait — as evlog_reopen, and return once the writer has
 * reopened the path: every line queued before the call went to the old
 * file, none will go there after (the daemon's own rotation renames the
 * file, then calls this before it compresses the renamed one).  Blocks for
 * one write of the pending lines: never on a loop; the log keeper's thread
 * (mta/core/logkeep.h).  Returns at once when the log is not open.
 */
void evlog_reopen_wait(void);

/* evlog_close — write everything queued, stop the writer, close.  Main. */
void evlog_close(void);

/* evlog_type_name — "reception", "delivery", … */
const char *evlog_type_name(enum evlog_type t);

struct evlog_stats {
	uint64_t lines;   /* written */
	uint64_t dropped; /* lost because the writer was too far behind */
	uint64_t bytes;
};
void evlog_stats_get(struct evlog_stats *st);

#endif
