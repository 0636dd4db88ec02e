/*
 * tlsrpt.h — TLS reporting (RFC 8460): the sessions to each domain under
 * a TLS policy (MTA-STS or DANE), counted per UTC day with their failures,
 * and after the day one aggregate report per domain to the rua addresses
 * its _smtp._tls TXT record names: gzipped JSON, by mail (through our own
 * queue) or by HTTPS POST.
 *
 * The counts are kept in the queue's state database (a restart keeps the
 * day's), written at most once a minute.  tlsrpt_note may be called from
 * any delivery loop; everything else runs on the scheduler's loop.
 */
#ifndef OUTPOST_MTA_TLSRPT_H
#define OUTPOST_MTA_TLSRPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct dns_resolver;
struct event_base;
struct queue;

/* One session under a policy. */
struct tlsrpt_session {
	const char *domain;    /* the policy domain (the recipient domain) */
	bool dane;             /* policy-type "tlsa", else "sts" */
	const char *failure;   /* RFC 8460 result type; NULL: successful */
	const char *mx_host;   /* receiving-mx-hostname */
	const char *mx_ip;     /* receiving-ip ("" unknown) */
	const char *source_ip; /* sending-mta-ip ("" unknown) */
};

/*
 * Queue a report message: MSG (LEN bytes, CRLF lines, malloc'd: the
 * callee owns it) from the null sender to RCPT.  0, or -1 (MSG freed).
 */
typedef int tlsrpt_queue_fn(uint8_t *msg, size_t len, const char *rcpt);

/*
 * tlsrpt_init — on BASE (the scheduler's loop) with its resolver DNS, the
 * queue Q (counts kept across restarts) and QUEUE (how a mailed report is
 * queued); configured by C (tls_report, hostname).  0, or -1 with ERR.
 * Main thread, before the loop runs (https_init first).
 */
int tlsrpt_init(struct event_base *base, struct dns_resolver *dns,
		struct queue *q, tlsrpt_queue_fn *queue, const struct conf *c,
		char *err, size_t errlen);
/* tlsrpt_reconf — C (kept by the caller until the next) replaces the
 * configuration.  On the loop. */
void tlsrpt_reconf(const struct conf *c);
/* tlsrpt_load — the kept counts back, the timer armed.  On the loop, at
 * start-up. */
void tlsrpt_load(void);
/* tlsrpt_stop — write what is not written yet; no report starts after.
 * On the loop, at shutdown. */
void tlsrpt_stop(void);
/* tlsrpt_free — everything.  Main thread, after the loop has ended. */
void tlsrpt_free(void);

/* tlsrpt_note — count session S on today's report of its domain (when
 * tls_report is enabled).  Any thread. */
void tlsrpt_note(const struct tlsrpt_session *s);

/*
 * tlsrpt_txt_rua — the rua URIs of a TLSRPT TXT record TXT (LEN bytes):
 * "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/x".  Up to
 * MAX of them into URIS (pointers into BUF, BUFLEN bytes, where the record
 * is copied and cut); returns how many, 0 when it is no TLSRPT record, -1
 * when it is one but malformed.  Pure.
 */
int tlsrpt_txt_rua(const char *txt, size_t len, char *buf, size_t buflen,
		   const char **uris, int max);

/* tlsrpt_metrics_text — the reports' counters (a metrics_text_fn).  Any
 * thread. */
size_t tlsrpt_metrics_text(char *buf, size_t len);

#endif
