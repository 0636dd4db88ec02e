/*
 * resolver.c — dns.h on c-ares 1.18 and libevent: channel, servers and the
 * loopback_only guard, lookups, replies, cancellation.
 * Owns: the c-ares channel, one event per c-ares socket, the c-ares timer,
 * struct dns_query, the delivery timer, the FIFO of questions waiting for a
 * slot under max_inflight.  Must not: call a user callback from a lookup
 * call or from inside c-ares (only on_deliver does), read /etc/hosts, send
 * before loopback_only approved every server.  Thread: the loop of the
 * event_base given at creation.  Invariants: a query is on the ready list
 * iff it waits for nothing; the c-ares timer is re-armed after every c-ares
 * call; at most max_inflight questions are in flight, and one waits only
 * while max_inflight are.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <ares.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dns/cache_int.h"
#include "dns/resolver_int.h"

#define DNS_TIMEOUT_MS_DEFAULT   2000
#define DNS_TRIES_DEFAULT        2
#define DNS_CACHE_MAX_DEFAULT    100000
#define DNS_MAX_TTL_DEFAULT      86400
#define DNS_NEGATIVE_TTL_DEFAULT 3600
#define DNS_TEMPFAIL_TTL_DEFAULT 5
#define DNS_EDNS_PAYLOAD_BYTES   1232
#define DNS_SERVERS_MAX_BYTES    1024
#define DNS_C_IN                 1

enum dns_query_kind { DQ_MX, DQ_ADDR, DQ_TXT, DQ_TLSA };

struct dns_query {
	struct dns_resolver *r;
	enum dns_query_kind kind;
	union {
		void (*mx)(const struct dns_mx_reply *, void *);
		void (*addr)(const struct dns_addr_reply *, void *);
		void (*txt)(const struct dns_txt_reply *, void *);
		void (*tlsa)(const struct dns_tlsa_reply *, void *);
	} cb;
	void *arg;
	int family;
	/* Set when the query fails before any entry (BADNAME, ENOMEM). */
	bool early;
	enum dns_result early_result;
	char early_err[DNS_ERR_MAX];
	/* ADDR: [0] AAAA then [1] A, so that IPv6 comes first. */
	struct dns_entry *part[2];
	struct dns_waiter wait[2];
	unsigned nparts;
	unsigned nwaiting; /* pending parts, +1 while still attaching */
	bool in_callback;
	bool on_ready;
	uint64_t gen; /* delivery round it was queued in */
	struct dns_query *all_prev, *all_next; /* every live query */
	struct dns_query *rdy_prev, *rdy_next; /* the ready list */
};

struct dns_sock {
	ares_socket_t fd;
	struct event *ev;
	struct dns_sock *next;
};

struct dns_resolver {
	struct event_base *base;
	ares_channel ch;
	bool ch_live;
	struct event *ev_timer;   /* ares_timeout() */
	struct event *ev_deliver; /* zero-timeout: run ready callbacks */
	struct event *ev_wait;    /* the oldest waiting question's deadline */
	struct dns_sock *socks;
	struct dns_cache cache;
	struct dns_stats stats;
	bool loopback_only;
	bool dnssec; /* ask for and trust the AD bit (dns_config.dnssec) */
	struct dns_query *all;
	struct dns_query *rdy_head, *rdy_tail;
	/* Questions beyond max_inflight, oldest first (dns_entry.fifo_next);
	 * each holds the reference its question will hold in flight.  A
	 * burst of thousands at once overflows the servers' and our own
	 * socket buffers, and every datagram dropped costs a whole timeout. */
	struct dns_entry *fifo_head, *fifo_tail;
	unsigned max_inflight;
	uint64_t waiting_max; /* = the cache's size: waiting ones are entries */
	uint64_t wait_max_ms; /* timeout x tries: what a lookup may take */
	bool pumping;         /* resolver_pump() is running */
	uint64_t gen;
	bool delivering;
	bool free_requested;
	bool destroying;
	uint64_t rng;
	uint64_t (*now_ms)(void *);
	void *now_arg;
	void (*answer_hook)(uint16_t, int, const unsigned char *, int, void *);
	void *answer_hook_arg;
};

static pthread_once_t dns_lib_once = PTHREAD_ONCE_INIT;
static int dns_lib_status = ARES_SUCCESS;

static void
dns_lib_init(void)
{
	dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

const char *
dns_result_str(enum dns_result r)
{
	switch (r) {
	case DNS_OK:
		return "ok";
	case DNS_TEMPFAIL:
		return "tempfail";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_NODATA:
		return "nodata";
	case DNS_NULLMX:
		return "nullmx";
	case DNS_BADNAME:
		return "badname";
	}
	return "unknown";
}

static void resolver_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
resolver_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	/* A reason cut short is still a reason; nothing parses it. */
	if (errlen == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

uint64_t
dns_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The cache's clock unless dns_resolver_clock_set() gave another. */
static uint64_t
resolver_clock_real(void *arg)
{
	(void)arg;
	return dns_clock_ms();
}

static uint64_t
resolver_now(struct dns_resolver *r)
{
	return r->now_ms(r->now_arg);
}

/* splitmix64: shuffling equal MX preferences needs spread, not secrecy. */
static uint64_t
resolver_random(struct dns_resolver *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Server list ------------------------------------------------------- */

/* The address FAMILY ADDR (4 or 16 bytes) in SS, port 0: what
 * dns_addr_is_loopback() reads. */
static const struct sockaddr *
resolver_sa(struct sockaddr_storage *ss, int family, const void *addr)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)(void *)ss)->sin_addr, addr,
		       sizeof(struct in_addr));
	else if (family == AF_INET6)
		memcpy(&((struct sockaddr_in6 *)(void *)ss)->sin6_addr, addr,
		       sizeof(struct in6_addr));
	return (const struct sockaddr *)ss;
}

/*
 * resolver_server_check — one "ADDR", "ADDR:PORT", "[ADDR]" or
 * "[ADDR]:PORT" item (modified in place).  Sets *LOOP.  0 or -1 with ERR.
 */
static int
resolver_server_check(char *item, bool *loop, char *err, size_t errlen)
{
	unsigned char a[sizeof(struct in6_addr)];
	struct sockaddr_storage ss;
	char *host = item, *port = NULL, *close, *end;
	unsigned long p;

	if (*item == '[') {
		host = item + 1;
		if ((close = strchr(host, ']')) == NULL)
			goto bad;
		*close = '\0';
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			goto bad;
	} else if ((port = strchr(item, ':')) != NULL &&
		   strchr(port + 1, ':') == NULL) {
		*port++ = '\0'; /* IPv4:port */
	} else {
		port = NULL; /* bare IPv6 or IPv4 */
	}
	if (inet_pton(AF_INET, host, a) == 1)
		*loop = dns_addr_is_loopback(resolver_sa(&ss, AF_INET, a));
	else if (inet_pton(AF_INET6, host, a) == 1)
		*loop = dns_addr_is_loopback(resolver_sa(&ss, AF_INET6, a));
	else
		goto bad;
	if (port != NULL) {
		errno = 0;
		p = strtoul(port, &end, 10);
		if (*port < '0' || *port > '9' || *end != '\0' || errno != 0 ||
		    p == 0 || p > 65535)
			goto bad;
	}
	return 0;
bad:
	resolver_err(err, errlen, "dns: bad server address \"%s\"", item);
	return -1;
}

/* resolver_servers_check — parse the list; with LOOPBACK_ONLY refuse any
 * server that is not loopback (dns_addr_is_loopback). */
static int
resolver_servers_check(const char *csv, bool loopback_only, char *err,
		       size_t errlen)
{
	char buf[DNS_SERVERS_MAX_BYTES], *item, *save = NULL, *end;
	unsigned n = 0;
	bool loop;

	if (snprintf(buf, sizeof(buf), "%s", csv) >= (int)sizeof(buf)) {
		resolver_err(err, errlen, "dns: %s", "server list too long");
		return -1;
	}
	for (item = strtok_r(buf, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*item == '\0')
			continue;
		if (resolver_server_check(item, &loop, err, errlen) != 0)
			return -1;
		if (loopback_only && !loop) {
			resolver_err(
			    err, errlen,
			    "dns: loopback_only: server %s is not a loopback "
			    "address; refused",
			    item);
			return -1;
		}
		n++;
	}
	if (n == 0) {
		resolver_err(err, errlen, "dns: %s", "empty server list");
		return -1;
	}
	return 0;
}

/* resolver_servers_verify — what c-ares will really use: every server must
 * be loopback (belt and braces after our own parse). */
static int
resolver_servers_verify(struct dns_resolver *r, char *err, size_t errlen)
{
	struct ares_addr_port_node *list = NULL, *s;
	struct sockaddr_storage ss;
	int rc = 0;

	if (ares_get_servers_ports(r->ch, &list) != ARES_SUCCESS) {
		resolver_err(err, errlen, "dns: %s", "cannot read servers");
		return -1;
	}
	for (s = list; s != NULL; s = s->next)
		if (!dns_addr_is_loopback(
			resolver_sa(&ss, s->family, &s->addr))) {
			resolver_err(err, errlen, "dns: %s",
				     "loopback_only: c-ares holds a "
				     "non-loopback server");
			rc = -1;
			break;
		}
	if (list == NULL) {
		resolver_err(err, errlen, "dns: %s", "no server");
		rc = -1;
	}
	ares_free_data(list);
	return rc;
}

/* libevent glue ----------------------------------------------------- */

static void
resolver_timer_update(struct dns_resolver *r)
{
	struct timeval tv, *tvp;

	if (r->destroying)
		return;
	if ((tvp = ares_timeout(r->ch, NULL, &tv)) == NULL)
		evtimer_del(r->ev_timer);
	else
		evtimer_add(r->ev_timer, tvp);
}

static void
on_ares_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;

	(void)fd;
	(void)what;
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	resolver_timer_update(r);
}

static void
on_ares_sock(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;

	ares_process_fd(r->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	resolver_timer_update(r);
}

/*
 * resolver_sock_state_cb — c-ares opened, re-aimed or closed a socket.  The
 * event may be freed from inside its own callback (ares_process_fd closing
 * the socket); libevent allows that.
 */
static void
resolver_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock **pp, *s;
	short what = EV_PERSIST;

	for (pp = &r->socks; (s = *pp) != NULL; pp = &s->next)
		if (s->fd == fd)
			break;
	if (s != NULL) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (!readable && !writable) {
		if (s != NULL) {
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return; /* c-ares times the query out */
		s->fd = fd;
		s->next = r->socks;
		r->socks = s;
	}
	if (readable)
		what |= EV_READ;
	if (writable)
		what |= EV_WRITE;
	if ((s->ev = event_new(r->base, fd, what, on_ares_sock, r)) != NULL)
		event_add(s->ev, NULL);
}

/* Queries ----------------------------------------------------------- */

static void
resolver_ready_push(struct dns_resolver *r, struct dns_query *q)
{
	static const struct timeval now = { 0, 0 };

	if (q->on_ready)
		return;
	q->on_ready = true;
	q->gen = r->gen;
	q->rdy_next = NULL;
	q->rdy_prev = r->rdy_tail;
	if (r->rdy_tail != NULL)
		r->rdy_tail->rdy_next = q;
	else
		r->rdy_head = q;
	r->rdy_tail = q;
	/* A timer, not event_active: the loop polls I/O before it runs. */
	if (!r->delivering && !evtimer_pending(r->ev_deliver, NULL))
		evtimer_add(r->ev_deliver, &now);
}

static void
resolver_ready_unlink(struct dns_resolver *r, struct dns_query *q)
{
	if (!q->on_ready)
		return;
	if (q->rdy_prev != NULL)
		q->rdy_prev->rdy_next = q->rdy_next;
	else
		r->rdy_head = q->rdy_next;
	if (q->rdy_next != NULL)
		q->rdy_next->rdy_prev = q->rdy_prev;
	else
		r->rdy_tail = q->rdy_prev;
	q->rdy_prev = q->rdy_next = NULL;
	q->on_ready = false;
}

static void
resolver_query_free(struct dns_query *q)
{
	struct dns_resolver *r = q->r;
	unsigned i;

	for (i = 0; i < q->nparts; i++) {
		dns_entry_unwait(q->part[i], &q->wait[i]);
		dns_entry_unref(q->part[i]);
	}
	resolver_ready_unlink(r, q);
	if (q->all_prev != NULL)
		q->all_prev->all_next = q->all_next;
	else
		r->all = q->all_next;
	if (q->all_next != NULL)
		q->all_next->all_prev = q->all_prev;
	free(q);
}

static struct dns_query *
resolver_query_new(struct dns_resolver *r, enum dns_query_kind kind, void *arg)
{
	struct dns_query *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->r = r;
	q->kind = kind;
	q->arg = arg;
	q->nwaiting = 1; /* released by resolver_query_start() */
	q->all_next = r->all;
	if (r->all != NULL)
		r->all->all_prev = q;
	r->all = q;
	return q;
}

static void
resolver_query_fail(struct dns_query *q, enum dns_result res, const char *why)
{
	q->early = true;
	q->early_result = res;
	resolver_err(q->early_err, sizeof(q->early_err), "%s", why);
}

/* resolver_query_start — attaching is over: queue Q if nothing is pending. */
static void
resolver_query_start(struct dns_query *q)
{
	if (--q->nwaiting == 0)
		resolver_ready_push(q->r, q);
}

/*
 * resolver_entry_finish — E's question is over (STATUS, the raw answer
 * ABUF/ALEN): fill the entry (its err replaced by WHY unless NULL), queue
 * the lookups that waited, drop the question's reference.
 */
static void
resolver_entry_finish(struct dns_resolver *r, struct dns_entry *e, int status,
		      const unsigned char *abuf, int alen, const char *why)
{
	struct dns_waiter *w;
	struct dns_query *q;

	dns_cache_complete(&r->cache, e, status, abuf, alen, resolver_now(r));
	if (why != NULL)
		resolver_err(e->err, sizeof(e->err), "%s", why);
	while ((w = e->waiters) != NULL) {
		dns_entry_unwait(e, w);
		q = w->owner;
		if (--q->nwaiting == 0)
			resolver_ready_push(r, q);
	}
	dns_entry_unref(e);
}

/* Questions in flight and waiting ----------------------------------- */

static void on_ares_answer(void *arg, int status, int timeouts,
			   unsigned char *abuf, int alen);

/*
 * resolver_ask_ad — E's question with the AD bit set (RFC 6840 5.7: a
 * validating server then says in its answer whether it validated it), and
 * EDNS as every question has; c-ares gives it its own id.
 */
static void
resolver_ask_ad(struct dns_resolver *r, struct dns_entry *e)
{
	unsigned char *buf = NULL;
	int len = 0, rc;

	rc = ares_create_query(e->name, DNS_C_IN, e->type, 0, 1, &buf, &len,
			       DNS_EDNS_PAYLOAD_BYTES);
	if (rc != ARES_SUCCESS || buf == NULL || len < 12) {
		if (buf != NULL)
			ares_free_string(buf);
		on_ares_answer(e, rc != ARES_SUCCESS ? rc : ARES_EBADQUERY, 0,
			       NULL, 0);
		return;
	}
	buf[3] |= 0x20; /* AD */
	ares_send(r->ch, buf, len, on_ares_answer, e);
	ares_free_string(buf);
}

/* resolver_ask — send E's question; the caller's reference to E becomes
 * the one of the question in flight. */
static void
resolver_ask(struct dns_resolver *r, struct dns_entry *e)
{
	r->stats.queries++;
	if (++r->stats.inflight > r->stats.inflight_peak)
		r->stats.inflight_peak = r->stats.inflight;
	/* c-ares may call on_ares_answer before returning. */
	if (r->dnssec)
		resolver_ask_ad(r, e);
	else
		ares_query(r->ch, e->name, DNS_C_IN, e->type, on_ares_answer,
			   e);
	resolver_timer_update(r);
}

static struct dns_entry *
resolver_wait_pop(struct dns_resolver *r)
{
	struct dns_entry *e = r->fifo_head;

	if ((r->fifo_head = e->fifo_next) == NULL)
		r->fifo_tail = NULL;
	e->fifo_next = NULL;
	r->stats.waiting--;
	return e;
}

/* resolver_wait_arm — the timer at the oldest waiting question's deadline
 * (the FIFO is in time order: only its head can be due). */
static void
resolver_wait_arm(struct dns_resolver *r)
{
	struct timeval tv;
	uint64_t now, due;

	if (r->destroying)
		return;
	if (r->fifo_head == NULL) {
		evtimer_del(r->ev_wait);
		return;
	}
	now = dns_clock_ms();
	due = r->fifo_head->queued_ms + r->wait_max_ms;
	due = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(due / 1000);
	tv.tv_usec = (suseconds_t)(due % 1000) * 1000;
	evtimer_add(r->ev_wait, &tv);
}

/* resolver_wait_push — E waits for a slot, its reference with it. */
static void
resolver_wait_push(struct dns_resolver *r, struct dns_entry *e)
{
	e->queued_ms = dns_clock_ms();
	e->fifo_next = NULL;
	if (r->fifo_tail != NULL)
		r->fifo_tail->fifo_next = e;
	else
		r->fifo_head = e;
	r->fifo_tail = e;
	r->stats.waiting++;
	if (r->fifo_head == e)
		resolver_wait_arm(r);
}

/* resolver_wait_expire — answer the questions that waited a whole lookup's
 * time as a timeout would have (DNS_TEMPFAIL, cached tempfail_ttl), so
 * that a lookup never takes more than twice timeout x tries. */
static void
resolver_wait_expire(struct dns_resolver *r, uint64_t now)
{
	while (r->fifo_head != NULL &&
	       r->fifo_head->queued_ms + r->wait_max_ms <= now) {
		r->stats.wait_timeouts++;
		resolver_entry_finish(r, resolver_wait_pop(r), ARES_ETIMEOUT,
				      NULL, 0,
				      "timeout waiting for a free query slot "
				      "(dns max_inflight)");
	}
}

/*
 * resolver_pump — ask the waiting questions, oldest first, while slots are
 * free.  Re-entered from on_ares_answer when c-ares answers inline (a
 * socket error): the outer call goes on, so the stack stays flat.
 */
static void
resolver_pump(struct dns_resolver *r)
{
	if (r->pumping || r->destroying)
		return;
	r->pumping = true;
	resolver_wait_expire(r, dns_clock_ms());
	while (r->fifo_head != NULL && r->stats.inflight < r->max_inflight)
		resolver_ask(r, resolver_wait_pop(r));
	r->pumping = false;
	resolver_wait_arm(r);
}

static void
on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;

	(void)fd;
	(void)what;
	resolver_wait_expire(r, dns_clock_ms());
	resolver_wait_arm(r);
}

/*
 * on_ares_answer — c-ares finished the query of entry ARG.  Never calls a
 * user callback: it fills the entry and queues the lookups that waited,
 * then gives the freed slot to the oldest waiting question.
 */
static void
on_ares_answer(void *arg, int status, int timeouts, unsigned char *abuf,
	       int alen)
{
	struct dns_entry *e = arg;
	struct dns_resolver *r = e->owner;

	(void)timeouts;
	r->stats.inflight--;
	if (status == ARES_EDESTRUCTION || r->destroying) {
		dns_entry_unref(e);
		return;
	}
	if (status == ARES_ETIMEOUT)
		r->stats.timeouts++;
	if (r->answer_hook != NULL)
		r->answer_hook(e->type, status, abuf, alen, r->answer_hook_arg);
	resolver_entry_finish(r, e, status, abuf, alen, NULL);
	resolver_pump(r);
}

/*
 * resolver_query_attach — make Q depend on (TYPE, NAME): a fresh cache entry,
 * one already in flight or waiting, or a new question (asked now, or queued
 * when max_inflight are in flight).  On failure Q fails early.
 */
static void
resolver_query_attach(struct dns_query *q, uint16_t type, const char *name)
{
	struct dns_resolver *r = q->r;
	struct dns_entry *e;
	unsigned i = q->nparts;
	bool send = false;

	if ((e = dns_cache_get(&r->cache, type, name, resolver_now(r))) !=
	    NULL) {
		r->stats.cache_hits++;
	} else {
		r->stats.cache_misses++;
		if (r->stats.inflight >= r->max_inflight &&
		    r->stats.waiting >= r->waiting_max) {
			r->stats.wait_refused++;
			resolver_query_fail(q, DNS_TEMPFAIL,
					    "too many DNS questions waiting "
					    "(dns max_inflight)");
			return;
		}
		if ((e = dns_cache_add(&r->cache, type, name)) == NULL) {
			resolver_query_fail(q, DNS_TEMPFAIL, "out of memory");
			return;
		}
		e->owner = r;
		send = true;
	}
	dns_entry_ref(e);
	q->part[i] = e;
	q->nparts++;
	if (e->state == DNS_ENTRY_PENDING) {
		dns_entry_wait(e, &q->wait[i], q);
		q->nwaiting++;
	}
	if (!send)
		return;
	dns_entry_ref(e); /* the question's, waiting or in flight */
	if (r->stats.inflight < r->max_inflight && r->fifo_head == NULL)
		resolver_ask(r, e);
	else
		resolver_wait_push(r, e);
}

/* Replies ----------------------------------------------------------- */

static uint32_t
resolver_ttl_min(struct dns_resolver *r, const struct dns_query *q)
{
	uint64_t now = resolver_now(r);
	uint32_t ttl = UINT32_MAX, t;
	unsigned i;

	for (i = 0; i < q->nparts; i++)
		if ((t = dns_entry_ttl_left(q->part[i], now)) < ttl)
			ttl = t;
	return q->nparts > 0 ? ttl : 0;
}

static void
resolver_deliver_mx(struct dns_resolver *r, struct dns_query *q)
{
	struct dns_mx_reply rep;
	struct dns_mx_host tmp;
	const struct dns_entry *e = q->part[0];
	size_t i, j, k, bytes, len;
	char *p;

	memset(&rep, 0, sizeof(rep));
	if (q->early) {
		rep.result = q->early_result;
		resolver_err(rep.err, sizeof(rep.err), "%s", q->early_err);
		goto done;
	}
	rep.result = e->result;
	rep.ttl = resolver_ttl_min(r, q);
	resolver_err(rep.err, sizeof(rep.err), "%s", e->err);
	if (e->result != DNS_OK)
		goto done;
	/* One block: the array, then the names (the entry keeps its own). */
	bytes = e->nmx * sizeof(*rep.hosts);
	for (i = 0; i < e->nmx; i++)
		bytes += strlen(e->mx[i].name) + 1;
	if ((rep.hosts = malloc(bytes)) == NULL) {
		rep.result = DNS_TEMPFAIL;
		resolver_err(rep.err, sizeof(rep.err), "%s", "out of memory");
		goto done;
	}
	p = (char *)(rep.hosts + e->nmx);
	for (i = 0; i < e->nmx; i++) {
		len = strlen(e->mx[i].name) + 1;
		memcpy(p, e->mx[i].name, len);
		rep.hosts[i].name = p;
		rep.hosts[i].pref = e->mx[i].pref;
		p += len;
	}
	rep.nhosts = e->nmx;
	rep.implicit = e->implicit;
	rep.secure = r->dnssec && e->ad;
	/* Fisher-Yates within each run of equal preference. */
	for (i = 0; i < rep.nhosts; i = j) {
		for (j = i + 1;
		     j < rep.nhosts && rep.hosts[j].pref == rep.hosts[i].pref;
		     j++)
			;
		for (k = j - 1; k > i; k--) {
			size_t pick = i + resolver_random(r) % (k - i + 1);

			tmp = rep.hosts[k];
			rep.hosts[k] = rep.hosts[pick];
			rep.hosts[pick] = tmp;
		}
	}
done:
	q->cb.mx(&rep, q->arg);
	free(rep.hosts);
}

/*
 * resolver_addr_result — one answer from the AAAA and A parts: OK when any
 * part has addresses; else TEMPFAIL if any part failed (the other family
 * may exist), else NXDOMAIN if any said so, else NODATA.  *WHY: its err.
 */
static enum dns_result
resolver_addr_result(const struct dns_query *q, const char **why)
{
	static const enum dns_result order[] = { DNS_OK, DNS_TEMPFAIL,
						 DNS_NXDOMAIN, DNS_NODATA };
	size_t o;
	unsigned i;

	for (o = 0; o < sizeof(order) / sizeof(order[0]); o++)
		for (i = 0; i < q->nparts; i++)
			if (q->part[i]->result == order[o]) {
				*why = q->part[i]->err;
				return order[o];
			}
	*why = "no answer";
	return DNS_TEMPFAIL;
}

static void
resolver_deliver_addr(struct dns_resolver *r, struct dns_query *q)
{
	struct dns_addr_reply rep;
	const struct dns_entry *e;
	const char *why = "";
	size_t n = 0, j;
	unsigned i;

	memset(&rep, 0, sizeof(rep));
	if (q->early) {
		rep.result = q->early_result;
		resolver_err(rep.err, sizeof(rep.err), "%s", q->early_err);
		goto done;
	}
	rep.result = resolver_addr_result(q, &why);
	rep.ttl = resolver_ttl_min(r, q);
	if (rep.result != DNS_OK) {
		resolver_err(rep.err, sizeof(rep.err), "%s", why);
		goto done;
	}
	for (i = 0; i < q->nparts; i++)
		if (q->part[i]->result == DNS_OK)
			n += q->part[i]->naddrs;
	if ((rep.addrs = calloc(n, sizeof(*rep.addrs))) == NULL) {
		rep.result = DNS_TEMPFAIL;
		resolver_err(rep.err, sizeof(rep.err), "%s", "out of memory");
		goto done;
	}
	for (i = 0; i < q->nparts; i++) {
		e = q->part[i];
		if (e->result != DNS_OK)
			continue;
		for (j = 0; j < e->naddrs; j++) {
			if (r->loopback_only &&
			    !dns_addr_is_loopback(
				(const struct sockaddr *)&e->addrs[j]))
				continue;
			rep.addrs[rep.naddrs++] = e->addrs[j];
		}
	}
	if (rep.naddrs == 0) {
		rep.result = DNS_TEMPFAIL;
		resolver_err(rep.err, sizeof(rep.err), "%s",
			     "non-loopback address refused (loopback_only)");
	}
done:
	q->cb.addr(&rep, q->arg);
	free(rep.addrs);
}

static void
resolver_deliver_txt(struct dns_resolver *r, struct dns_query *q)
{
	struct dns_txt_reply rep;
	const struct dns_entry *e = q->part[0];
	size_t i, bytes;
	char *p;

	memset(&rep, 0, sizeof(rep));
	if (q->early) {
		rep.result = q->early_result;
		resolver_err(rep.err, sizeof(rep.err), "%s", q->early_err);
		goto done;
	}
	rep.result = e->result;
	rep.ttl = resolver_ttl_min(r, q);
	resolver_err(rep.err, sizeof(rep.err), "%s", e->err);
	if (e->result != DNS_OK)
		goto done;
	/* One block: pointers, lengths, then the strings, NUL-terminated. */
	bytes = e->ntxts * (sizeof(*rep.txts) + sizeof(*rep.lens));
	for (i = 0; i < e->ntxts; i++)
		bytes += e->lens[i] + 1;
	if ((rep.txts = malloc(bytes)) == NULL) {
		rep.result = DNS_TEMPFAIL;
		resolver_err(rep.err, sizeof(rep.err), "%s", "out of memory");
		goto done;
	}
	rep.lens = (size_t *)(void *)(rep.txts + e->ntxts);
	p = (char *)(rep.lens + e->ntxts);
	for (i = 0; i < e->ntxts; i++) {
		memcpy(p, e->txts[i], e->lens[i] + 1);
		rep.txts[i] = p;
		rep.lens[i] = e->lens[i];
		p += e->lens[i] + 1;
	}
	rep.ntxts = e->ntxts;
done:
	q->cb.txt(&rep, q->arg);
	free(rep.txts);
}

static void
resolver_deliver_tlsa(struct dns_resolver *r, struct dns_query *q)
{
	struct dns_tlsa_reply rep;
	const struct dns_entry *e = q->part[0];

	memset(&rep, 0, sizeof(rep));
	if (q->early) {
		rep.result = q->early_result;
		resolver_err(rep.err, sizeof(rep.err), "%s", q->early_err);
		goto done;
	}
	rep.result = e->result;
	rep.ttl = resolver_ttl_min(r, q);
	rep.secure = r->dnssec && e->ad && e->result != DNS_TEMPFAIL;
	resolver_err(rep.err, sizeof(rep.err), "%s", e->err);
	if (e->result == DNS_OK) {
		/* The entry outlives the callback: its records are lent. */
		rep.recs = e->tlsa;
		rep.nrecs = e->ntlsa;
	}
done:
	q->cb.tlsa(&rep, q->arg);
}

static void resolver_destroy(struct dns_resolver *r);

/*
 * on_deliver — run the callbacks of the queries that were ready when this
 * round began (later ones wait for the next round, after I/O).  A callback
 * may start lookups, cancel others, or free the resolver (deferred here).
 */
static void
on_deliver(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval now = { 0, 0 };
	struct dns_resolver *r = arg;
	struct dns_query *q;
	uint64_t round = r->gen++;

	(void)fd;
	(void)what;
	r->delivering = true;
	while ((q = r->rdy_head) != NULL && q->gen <= round &&
	       !r->free_requested) {
		resolver_ready_unlink(r, q);
		q->in_callback = true;
		switch (q->kind) {
		case DQ_MX:
			resolver_deliver_mx(r, q);
			break;
		case DQ_ADDR:
			resolver_deliver_addr(r, q);
			break;
		case DQ_TXT:
			resolver_deliver_txt(r, q);
			break;
		case DQ_TLSA:
			resolver_deliver_tlsa(r, q);
			break;
		}
		resolver_query_free(q);
	}
	r->delivering = false;
	if (r->free_requested) {
		resolver_destroy(r);
		return;
	}
	if (r->rdy_head != NULL)
		evtimer_add(r->ev_deliver, &now);
}

/* Public API -------------------------------------------------------- */

/* resolver_channel_init — the c-ares channel: DNS only, no search list,
 * EDNS, our timeouts, sockets reported to resolver_sock_state_cb. */
static int
resolver_channel_init(struct dns_resolver *r, const struct dns_config *cfg,
		      char *err, size_t errlen)
{
	struct ares_options o;
	char lookups[] = "b"; /* DNS only: never /etc/hosts */
	int mask, rc;

	memset(&o, 0, sizeof(o));
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	o.timeout = (int)(cfg->timeout_ms != 0 ? cfg->timeout_ms
					       : DNS_TIMEOUT_MS_DEFAULT);
	o.tries = (int)(cfg->tries != 0 ? cfg->tries : DNS_TRIES_DEFAULT);
	o.sock_state_cb = resolver_sock_state_cb;
	o.sock_state_cb_data = r;
	o.lookups = lookups;
	o.ednspsz = DNS_EDNS_PAYLOAD_BYTES;
	mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	       ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS | ARES_OPT_EDNSPSZ;
	if ((rc = ares_init_options(&r->ch, &o, mask)) != ARES_SUCCESS) {
		resolver_err(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
		return -1;
	}
	r->ch_live = true;
	if (cfg->servers != NULL &&
	    (rc = ares_set_servers_ports_csv(r->ch, cfg->servers)) !=
		ARES_SUCCESS) {
		resolver_err(err, errlen, "dns: servers: %s",
			     ares_strerror(rc));
		return -1;
	}
	if (cfg->loopback_only && resolver_servers_verify(r, err, errlen) != 0)
		return -1;
	return 0;
}

/*
 * dns_resolver_new — see dns.h.  Zero fields of CFG take their defaults
 * (timeout_ms 2000, tries 2, cache_max 100000, max_ttl 86400,
 * negative_ttl_max 3600, tempfail_ttl 5, max_inflight 256; min_ttl 0).
 */
struct dns_resolver *
dns_resolver_new(struct event_base *base, const struct dns_config *cfg,
		 char *err, size_t errlen)
{
	struct dns_resolver *r = NULL;
	struct dns_cache_policy pol;

	if (base == NULL || cfg == NULL) {
		resolver_err(err, errlen, "dns: %s", "no event base or config");
		return NULL;
	}
	if (cfg->servers == NULL && cfg->loopback_only) {
		resolver_err(err, errlen, "dns: %s",
			     "loopback_only needs an explicit server list "
			     "(refusing /etc/resolv.conf)");
		return NULL;
	}
	if (cfg->servers != NULL &&
	    resolver_servers_check(cfg->servers, cfg->loopback_only, err,
				   errlen) != 0)
		return NULL;
	if (pthread_once(&dns_lib_once, dns_lib_init) != 0 ||
	    dns_lib_status != ARES_SUCCESS) {
		resolver_err(err, errlen, "dns: %s", "c-ares library init");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		resolver_err(err, errlen, "dns: %s", "out of memory");
		return NULL;
	}
	r->base = base;
	r->loopback_only = cfg->loopback_only;
	r->dnssec = cfg->dnssec;
	r->now_ms = resolver_clock_real;
	r->rng = resolver_clock_real(NULL) ^ (uint64_t)getpid() << 32 ^
		 (uint64_t)(uintptr_t)r;
	r->max_inflight = cfg->max_inflight != 0 ? cfg->max_inflight
						 : DNS_MAX_INFLIGHT_DEFAULT;
	r->waiting_max =
	    cfg->cache_max != 0 ? cfg->cache_max : DNS_CACHE_MAX_DEFAULT;
	r->wait_max_ms =
	    (uint64_t)(cfg->timeout_ms != 0 ? cfg->timeout_ms
					    : DNS_TIMEOUT_MS_DEFAULT) *
	    (cfg->tries != 0 ? cfg->tries : DNS_TRIES_DEFAULT);
	pol.keep_none = cfg->no_cache;
	pol.min_ttl = cfg->min_ttl;
	pol.max_ttl = cfg->max_ttl != 0 ? cfg->max_ttl : DNS_MAX_TTL_DEFAULT;
	pol.negative_ttl_max = cfg->negative_ttl_max != 0
				   ? cfg->negative_ttl_max
				   : DNS_NEGATIVE_TTL_DEFAULT;
	pol.tempfail_ttl = cfg->tempfail_ttl != 0 ? cfg->tempfail_ttl
						  : DNS_TEMPFAIL_TTL_DEFAULT;
	if (dns_cache_init(&r->cache,
			   cfg->cache_max != 0 ? cfg->cache_max
					       : DNS_CACHE_MAX_DEFAULT,
			   &pol) != 0) {
		resolver_err(err, errlen, "dns: %s", "out of memory");
		goto fail;
	}
	if ((r->ev_timer = evtimer_new(base, on_ares_timer, r)) == NULL ||
	    (r->ev_deliver = evtimer_new(base, on_deliver, r)) == NULL ||
	    (r->ev_wait = evtimer_new(base, on_wait_timer, r)) == NULL) {
		resolver_err(err, errlen, "dns: %s", "cannot create events");
		goto fail;
	}
	if (resolver_channel_init(r, cfg, err, errlen) != 0)
		goto fail;
	return r;
fail:
	resolver_destroy(r);
	return NULL;
}

/* resolver_destroy — free R now: no callback runs, nothing leaks. */
static void
resolver_destroy(struct dns_resolver *r)
{
	struct dns_sock *s;

	while (r->all != NULL)
		resolver_query_free(r->all);
	r->destroying = true;
	if (r->ch_live)
		ares_destroy(
		    r->ch); /* ARES_EDESTRUCTION for what is in flight */
	while (r->fifo_head != NULL)
		dns_entry_unref(resolver_wait_pop(r));
	while ((s = r->socks) != NULL) {
		r->socks = s->next;
		if (s->ev != NULL)
			event_free(s->ev);
		free(s);
	}
	dns_cache_fini(&r->cache);
	if (r->ev_timer != NULL)
		event_free(r->ev_timer);
	if (r->ev_deliver != NULL)
		event_free(r->ev_deliver);
	if (r->ev_wait != NULL)
		event_free(r->ev_wait);
	free(r);
}

void
dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	if (r->delivering) {
		r->free_requested = true; /* on_deliver finishes the job */
		return;
	}
	resolver_destroy(r);
}

/*
 * resolver_lookup — common start of the three lookups: a query whose name
 * is checked and canonical in NAME, or failed early (BADNAME).  NULL (no
 * callback will come) when memory runs out, R is NULL or being freed, or
 * the callback is NULL.
 */
static struct dns_query *
resolver_lookup(struct dns_resolver *r, enum dns_query_kind kind,
		const char *in, bool has_cb, void *arg, char *name)
{
	struct dns_query *q;
	char why[DNS_ERR_MAX];

	if (r == NULL || r->free_requested || !has_cb) {
		errno = EINVAL;
		return NULL;
	}
	if ((q = resolver_query_new(r, kind, arg)) == NULL)
		return NULL;
	if (dns_name_normalize(in, name, DNS_NAME_MAX + 1, why, sizeof(why)) !=
	    0)
		resolver_query_fail(q, DNS_BADNAME, why);
	return q;
}

/*
 * A lookup of one record TYPE for NAME (kind KIND): checked, attached to
 * the cache or a question, started.  The caller sets its callback after:
 * no callback runs before the loop turns.  NULL as resolver_lookup.
 */
static struct dns_query *
resolver_lookup_one(struct dns_resolver *r, enum dns_query_kind kind,
		    uint16_t type, const char *name, bool has_cb, void *arg)
{
	struct dns_query *q;
	char canon[DNS_NAME_MAX + 1];

	if ((q = resolver_lookup(r, kind, name, has_cb, arg, canon)) == NULL)
		return NULL;
	if (!q->early)
		resolver_query_attach(q, type, canon);
	resolver_query_start(q);
	return q;
}

/*
 * dns_mx_lookup — see dns.h.  Returns NULL only when out of memory or
 * called without a callback (no callback then); a bad name is reported
 * through the callback, on the next loop iteration like any reply.
 */
struct dns_query *
dns_mx_lookup(struct dns_resolver *r, const char *domain,
	      void (*cb)(const struct dns_mx_reply *reply, void *arg),
	      void *arg)
{
	struct dns_query *q;

	q = resolver_lookup_one(r, DQ_MX, DNS_RR_MX, domain, cb != NULL, arg);
	if (q != NULL)
		q->cb.mx = cb;
	return q;
}

/*
 * dns_addr_lookup — see dns.h.  A FAMILY other than AF_UNSPEC, AF_INET or
 * AF_INET6 is answered DNS_BADNAME.  NULL only when out of memory.
 */
struct dns_query *
dns_addr_lookup(struct dns_resolver *r, const char *host, int family,
		void (*cb)(const struct dns_addr_reply *reply, void *arg),
		void *arg)
{
	struct dns_query *q;
	char name[DNS_NAME_MAX + 1];

	if ((q = resolver_lookup(r, DQ_ADDR, host, cb != NULL, arg, name)) ==
	    NULL)
		return NULL;
	q->cb.addr = cb;
	q->family = family;
	if (!q->early && family != AF_UNSPEC && family != AF_INET &&
	    family != AF_INET6)
		resolver_query_fail(q, DNS_BADNAME, "bad address family");
	if (!q->early && family != AF_INET)
		resolver_query_attach(q, DNS_RR_AAAA, name);
	if (!q->early && family != AF_INET6)
		resolver_query_attach(q, DNS_RR_A, name);
	resolver_query_start(q);
	return q;
}

/* dns_txt_lookup — see dns.h.  NULL only when out of memory. */
struct dns_query *
dns_txt_lookup(struct dns_resolver *r, const char *name,
	       void (*cb)(const struct dns_txt_reply *reply, void *arg),
	       void *arg)
{
	struct dns_query *q;

	q = resolver_lookup_one(r, DQ_TXT, DNS_RR_TXT, name, cb != NULL, arg);
	if (q != NULL)
		q->cb.txt = cb;
	return q;
}

/* dns_tlsa_lookup — see dns.h.  NULL only when out of memory. */
struct dns_query *
dns_tlsa_lookup(struct dns_resolver *r, const char *name,
		void (*cb)(const struct dns_tlsa_reply *reply, void *arg),
		void *arg)
{
	struct dns_query *q;

	q = resolver_lookup_one(r, DQ_TLSA, DNS_RR_TLSA, name, cb != NULL, arg);
	if (q != NULL)
		q->cb.tlsa = cb;
	return q;
}

/*
 * dns_cancel — see dns.h.  Harmless on a query whose callback is running
 * (it is freed when the callback returns).  The c-ares query, if any, goes
 * on and fills the cache for later lookups.
 */
void
dns_cancel(struct dns_query *q)
{
	if (q == NULL || q->in_callback)
		return;
	resolver_query_free(q);
}

void
dns_stats_get(struct dns_resolver *r, struct dns_stats *st)
{
	*st = r->stats;
	st->cache_entries = r->cache.count;
}

void
dns_resolver_clock_set(struct dns_resolver *r, uint64_t (*now_ms)(void *arg),
		       void *arg)
{
	r->now_ms = now_ms != NULL ? now_ms : resolver_clock_real;
	r->now_arg = now_ms != NULL ? arg : NULL;
}

void
dns_resolver_answer_hook_set(struct dns_resolver *r,
			     void (*fn)(uint16_t type, int status,
					const unsigned char *abuf, int alen,
					void *arg),
			     void *arg)
{
	r->answer_hook = fn;
	r->answer_hook_arg = arg;
}
