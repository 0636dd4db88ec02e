/*
 * intake.h — what happens to a message between its end of data and its
 * "250 … queued": the header block is checked (exactly one From address,
 * a From domain the user may use), DMARC alignment is decided against the
 * From domain's published policy, the message is scanned for malware
 * (scan.h: before anything is signed or queued), lines over 998 octets are
 * re-encoded, the message is DKIM-signed (worker pool), sealed and handed to
 * the queue writer.
 */
#ifndef OUTPOST_MTA_INTAKE_H
#define OUTPOST_MTA_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mta/core/loop.h"

struct conf;
struct conf_user;
struct dkim_bodyhash;
struct dns_resolver;
struct loop;
struct queue;
struct queue_op;

struct intake_keyset;

/*
 * intake_init — what every configuration shares: the queue Q, locked memory
 * for keys and the public suffix list when C needs them.  Main thread,
 * before the loops run.  0, or -1 with err.  intake_free — release it,
 * after the loops.
 */
int intake_init(const struct conf *c, struct queue *q, char *err,
		size_t errlen);
void intake_free(void);

/*
 * intake_keyset_load — load every DKIM key of C (mode-checked, into locked
 * memory) into *OUT, which holds a reference to C; QUIET: do not log each
 * key (a reload says how many).  Main thread (file reads, RSA parsing: never
 * on a loop).  0, or -1 with err ("file:line: dkim \"example.com\": /path:
 * mode 0644, …").  intake_keyset_free — release it (any thread; NULL ok).
 */
int intake_keyset_load(const struct conf *c, bool quiet,
		       struct intake_keyset **out, char *err, size_t errlen);
void intake_keyset_free(struct intake_keyset *ks);

/*
 * intake_bodyhash_new — *OUT: a streaming body hash (the configuration's
 * body canonicalization) for a message of USER (NULL: a relay client) whose
 * header block is HEAD (LEN octets, up to and with its empty line), or NULL
 * when no key of KS will sign it (its From domain, as intake_submit()
 * chooses).  0, or -1 out of memory.  Any thread.
 */
int intake_bodyhash_new(const struct intake_keyset *ks,
			const struct conf_user *user, const uint8_t *head,
			size_t len, struct dkim_bodyhash **out);

struct intake_req {
	/* in */
	struct loop *loop;
	const struct conf *conf;            /* the session's configuration */
	const struct intake_keyset *keyset; /* its keys (the same one's) */
	struct dns_resolver *dns;           /* the loop's resolver, or NULL */
	const struct conf_user *user;       /* NULL: a relay-network client */
	struct queue_op *op; /* QOP_INSERT, envelope and body set */
	bool long_lines;     /* the body has a line over 998 octets: re-encode
				it (worker pool) before signing */
	size_t trace_len;    /* the body's first bytes are the server's own
				Received: field (unique to this message) */
	/* A spooled message (op->spool, smtp_spool.c): op->body is its
	 * header block, the body is in the queue and op->tail.  BODYHASH
	 * (owned; NULL when no key signs) has hashed the spooled chunks. */
	struct dkim_bodyhash *bodyhash;
	void (*done)(struct intake_req *req); /* on LOOP, once */
	void *arg;
	/* out, when done runs */
	int code; /* 0: handed to the queue (see op->status); else the
		     SMTP reply code of a refusal, reply its text */
	char reply[300];
	char result[200]; /* "dmarc=pass (dkim d=example.com) p=reject
			     action=none; dkim=rsa-sha256,ed25519-sha256" */
	bool held;        /* queued, but held by the DMARC policy action */
	char dkim[200];   /* the signatures made: "d=ex.com s=s1 rsa-sha256,
			     s=e1 ed25519-sha256", or "" */
	double sign_s;    /* CPU time spent signing (seconds) */
	bool logged;      /* the refusal's rejection events are written (the
			     malware scan writes one per recipient) */
	/* private */
	char from_domain[256];
	char sign_domain[256];
	const void *keys; /* the signing keys chosen */
	void *query;      /* a DMARC lookup in flight */
	void *spf_query;  /* an SPF evaluation in flight */
	int spf;          /* enum spf_result of the envelope domain */
	char spf_note[16]; /* "pass", "fail", …, "unevaluated", "not-aligned" */
	struct dkim_msg *msg;
	struct scan_req *scan; /* the malware scan in flight */
	struct loop_msg post;  /* the commit's way back to LOOP */
};

/*
 * intake_submit — run REQ; REQ->done(REQ) follows on REQ->loop (never
 * inline).  The op belongs to the intake until then; after done, the caller
 * owns it again (queued or not).  Loop thread.
 */
void intake_submit(struct intake_req *req);

#endif
