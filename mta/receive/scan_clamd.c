/*
 * scan_clamd.c — each I/O loop's connections to clamd and the protocol:
 * zIDSESSION on connect, zVERSION then and every SCAN_VERSION_MS,
 * zINSTREAM with 4-byte big-endian chunk lengths (<= SCAN_CHUNK_BYTES)
 * ended by a zero length, replies "N: ..." NUL-terminated, matched by
 * their command number (clamd may answer a session's commands out of
 * order).  A connection that clamd closed while idle (its IdleTimeout) is
 * opened again by the next scan; a scan that finds a reused connection
 * closed before any answer goes once more on a fresh one.
 * Owns: the pool of the loop it runs on (thread-local), at most
 * scan.connections connections, the scans waiting for one.
 * Must not: block (bufferevents only), keep more than SCAN_OUT_MAX_BYTES
 * of a scan's output queued, or trust a byte of a reply before it is
 * length-checked and matched.  Thread: the pool's loop; scan_clamd_free_all
 * on main once the loops stopped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "conf/conf.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/util.h"
#include "mta/receive/scan_int.h"

#define SCAN_CONNS_MAX 64 /* scan.connections' upper bound */

enum scan_conn_state {
	SC_FREE, /* no socket */
	SC_IDLE, /* a session open, no scan on it */
	SC_BUSY, /* a scan's stream or verdict in flight */
};

struct scan_pool;

struct scan_conn {
	struct scan_pool *pool;
	struct bufferevent *bev;
	enum scan_conn_state state;
	char target[128];     /* the scan.clamd it is connected to */
	uint32_t seq;         /* commands sent in its session */
	uint32_t version_seq; /* the VERSION awaiting its reply, or 0 */
	uint32_t scan_seq;    /* the zINSTREAM awaiting its verdict */
	bool connected, used; /* used: a verdict came over it */
	bool ended;           /* the zero-length chunk is queued */
	struct scan_job *job;
};

struct scan_pool {
	struct loop *loop;
	struct scan_conn conns[SCAN_CONNS_MAX];
	struct scan_job *wait_head, *wait_tail;
	struct event *version_timer;
	struct scan_pool *next;
};

static __thread struct scan_pool *scan_pool_mine;
static pthread_mutex_t scan_pools_mu = PTHREAD_MUTEX_INITIALIZER;
static struct scan_pool *scan_pools;

static void scan_pool_pump(struct scan_pool *p);
static void scan_conn_read_cb(struct bufferevent *bev, void *arg);
static void scan_conn_write_cb(struct bufferevent *bev, void *arg);
static void scan_conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* clamd answered (UP) or could not be reached: said once per change. */
static void
scan_reach(bool up, const char *target, const char *why)
{
	int was = atomic_exchange(&scan_counts.reachable, up ? 1 : 0);

	if (up && was == 0)
		log_info("scan: clamd at %s answers again", target);
	else if (!up && was != 0)
		log_warnx("scan: %s", why);
}

static void
scan_conn_close(struct scan_conn *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	c->state = SC_FREE;
	c->seq = c->version_seq = c->scan_seq = 0;
	c->connected = c->used = c->ended = false;
	c->job = NULL;
}

/* The job is over (J->r holds the verdict): its timer goes, the cache and
 * the caller hear of it.  The caller pumps the waiting scans (never from
 * here: a failed placement must not recurse through the queue). */
static void
scan_job_end(struct scan_job *j)
{
	if (j->timer != NULL)
		event_free(j->timer);
	j->timer = NULL;
	j->conn = NULL;
	scan_job_finish(j);
}

static void
scan_job_error(struct scan_job *j, const char *why)
{
	j->r->result = SCAN_R_ERROR;
	snprintf(j->r->why, sizeof(j->r->why), "%s", why);
	atomic_fetch_add(&scan_counts.errors, 1);
	scan_job_end(j);
}

/* Write "zCMD\0" as the session's next command; its number. */
static uint32_t
scan_conn_cmd(struct scan_conn *c, const char *cmd)
{
	bufferevent_write(c->bev, cmd, strlen(cmd) + 1);
	return ++c->seq;
}

/* Open C to CF's clamd: a session, and its VERSION asked at once.  0, or
 * -1 with WHY (then C stays free). */
static int
scan_conn_open(struct scan_pool *p, struct scan_conn *c,
	       const struct conf_scan *cf, char *why, size_t whylen)
{
	c->pool = p;
	c->bev =
	    bufferevent_socket_new(p->loop->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	bufferevent_setcb(c->bev, scan_conn_read_cb, scan_conn_write_cb,
			  scan_conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, SCAN_CHUNK_BYTES, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&cf->addr,
				       (int)cf->addrlen) != 0) {
		snprintf(why, whylen, "cannot connect to clamd at %s: %s",
			 cf->clamd,
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		scan_conn_close(c);
		scan_reach(false, cf->clamd, why);
		return -1;
	}
	snprintf(c->target, sizeof(c->target), "%s", cf->clamd);
	/* IDSESSION has no reply: numbering starts with the next command. */
	bufferevent_write(c->bev, "zIDSESSION", sizeof("zIDSESSION"));
	c->version_seq = scan_conn_cmd(c, "zVERSION");
	c->state = SC_IDLE;
	return 0;
}

/* Queue J's next chunks on C, up to SCAN_OUT_MAX_BYTES of output; then
 * the zero length that ends the stream. */
static void
scan_conn_feed(struct scan_conn *c)
{
	struct scan_job *j = c->job;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const struct scan_seg *s;
	uint32_t hdr;
	size_t n;

	while (!c->ended && evbuffer_get_length(out) < SCAN_OUT_MAX_BYTES) {
		if (j->seg == j->nsegs) {
			hdr = 0;
			evbuffer_add(out, &hdr, 4);
			c->ended = true;
			break;
		}
		s = &j->segs[j->seg];
		n = s->len - j->seg_off;
		if (n > SCAN_CHUNK_BYTES)
			n = SCAN_CHUNK_BYTES;
		if (n == 0) {
			j->seg++;
			j->seg_off = 0;
			continue;
		}
		hdr = htonl((uint32_t)n);
		evbuffer_add(out, &hdr, 4);
		evbuffer_add(out, j->r->body + s->off + j->seg_off, n);
		j->seg_off += n;
		j->streamed += n;
	}
}

static void
scan_conn_start(struct scan_conn *c, struct scan_job *j)
{
	c->state = SC_BUSY;
	c->job = j;
	c->ended = false;
	j->conn = c;
	j->seg = j->seg_off = 0;
	j->streamed = 0;
	c->scan_seq = scan_conn_cmd(c, "zINSTREAM");
	atomic_fetch_add(&scan_counts.scans, 1);
	scan_conn_feed(c);
}

/*
 * Put J on a connection of its clamd: an idle one, else a new one while
 * fewer than scan.connections are open.  1 started (or failed: J ended),
 * 0 no room (J waits).
 */
static int
scan_pool_place(struct scan_pool *p, struct scan_job *j)
{
	const struct conf_scan *cf = &j->r->conf->scan;
	struct scan_conn *c, *free_c = NULL;
	unsigned i, open = 0;
	char why[200];

	for (i = 0; i < SCAN_CONNS_MAX; i++) {
		c = &p->conns[i];
		if (c->state == SC_FREE) {
			if (free_c == NULL)
				free_c = c;
			continue;
		}
		if (strcmp(c->target, cf->clamd) != 0) {
			/* A reload moved clamd: the old sessions go. */
			if (c->state == SC_IDLE) {
				scan_conn_close(c);
				if (free_c == NULL)
					free_c = c;
			}
			continue;
		}
		if (c->state == SC_IDLE) {
			scan_conn_start(c, j);
			return 1;
		}
		open++;
	}
	if (open >= cf->connections || free_c == NULL)
		return 0;
	if (scan_conn_open(p, free_c, cf, why, sizeof(why)) != 0) {
		scan_job_error(j, why);
		return 1;
	}
	scan_conn_start(free_c, j);
	return 1;
}

static void
scan_pool_pump(struct scan_pool *p)
{
	struct scan_job *j;

	while ((j = p->wait_head) != NULL) {
		p->wait_head = j->next;
		if (p->wait_head == NULL)
			p->wait_tail = NULL;
		j->next = NULL;
		if (scan_pool_place(p, j) == 0) {
			j->next = p->wait_head;
			p->wait_head = j;
			if (p->wait_tail == NULL)
				p->wait_tail = j;
			return;
		}
	}
}

static void
scan_pool_wait(struct scan_pool *p, struct scan_job *j)
{
	j->next = NULL;
	if (p->wait_tail != NULL)
		p->wait_tail->next = j;
	else
		p->wait_head = j;
	p->wait_tail = j;
}

static void
scan_pool_unwait(struct scan_pool *p, struct scan_job *j)
{
	struct scan_job **pp, *prev = NULL;

	for (pp = &p->wait_head; *pp != NULL; prev = *pp, pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			if (p->wait_tail == j)
				p->wait_tail = prev;
			j->next = NULL;
			return;
		}
}

/*
 * C failed (WHY).  Its scan, when it was on a connection already used and
 * nothing of its verdict came (clamd ended an idle session as we wrote),
 * goes once more on a fresh connection; otherwise it fails.
 */
static void
scan_conn_fail(struct scan_conn *c, const char *why, bool retry)
{
	struct scan_job *j = c->job;
	struct scan_pool *p = c->pool;
	bool reused = c->used;

	scan_conn_close(c);
	if (j == NULL) {
		scan_pool_pump(p);
		return;
	}
	j->conn = NULL;
	if (retry && reused && !j->retried) {
		j->retried = true;
		atomic_fetch_sub(&scan_counts.scans, 1);
		if (scan_pool_place(p, j) == 0)
			scan_pool_wait(p, j);
		return;
	}
	scan_job_error(j, why);
	scan_pool_pump(p);
}

/* NAME (clamd's, N bytes) into OUT: printable ASCII, others as '?', cut
 * to fit. */
static void
scan_name_clean(const char *name, size_t n, char *out, size_t outlen)
{
	size_t i;

	if (n >= outlen)
		n = outlen - 1;
	for (i = 0; i < n; i++)
		out[i] = name[i] > ' ' && name[i] < 0x7f ? name[i] : '?';
	out[n] = '\0';
}

/* The verdict TEXT (after "N: ") for C's scan.  0, or -1 garbage. */
static int
scan_conn_verdict(struct scan_conn *c, const char *text, size_t n)
{
	struct scan_job *j = c->job;
	struct scan_pool *p = c->pool;
	static const char pre[] = "stream: ", found[] = " FOUND",
			  err[] = " ERROR";
	const size_t lp = sizeof(pre) - 1, lf = sizeof(found) - 1,
		     le = sizeof(err) - 1;
	char why[sizeof(j->r->why)];

	if (n > le && memcmp(text + n - le, err, le) == 0) {
		snprintf(why, sizeof(why), "clamd: %.*s", (int)n, text);
		c->job = NULL;
		scan_conn_close(c);
		j->conn = NULL;
		scan_job_error(j, why);
		scan_pool_pump(p);
		return 0;
	}
	/* A verdict before the end of the stream is no verdict. */
	if (!c->ended || n < lp || memcmp(text, pre, lp) != 0)
		return -1;
	if (n == lp + 2 && memcmp(text + lp, "OK", 2) == 0) {
		j->r->result = SCAN_R_CLEAN;
	} else if (n > lp + lf && memcmp(text + n - lf, found, lf) == 0) {
		j->r->result = SCAN_R_INFECTED;
		scan_name_clean(text + lp, n - lp - lf, j->r->name,
				sizeof(j->r->name));
	} else
		return -1;
	c->state = SC_IDLE;
	c->used = true;
	c->job = NULL;
	scan_job_end(j);
	scan_pool_pump(p);
	return 0;
}

/* One reply TEXT (N bytes, NUL stripped) on C.  0, or -1 when C was
 * closed. */
static int
scan_conn_reply(struct scan_conn *c, const char *text, size_t n)
{
	uint32_t seq = 0;
	size_t i = 0;

	for (i = 0; i < n; i++)
		if (text[i] < ' ' || text[i] >= 0x7f)
			goto garbage;
	for (i = 0; i < n && i < 9 && text[i] >= '0' && text[i] <= '9'; i++)
		seq = seq * 10 + (uint32_t)(text[i] - '0');
	if (i == 0 || i + 2 > n || text[i] != ':' || text[i + 1] != ' ')
		goto garbage;
	text += i + 2;
	n -= i + 2;
	scan_reach(true, c->target, NULL);
	if (seq != 0 && seq == c->version_seq) {
		char v[200];

		c->version_seq = 0;
		if (n < 7 || memcmp(text, "ClamAV ", 7) != 0 || n >= sizeof(v))
			goto garbage;
		memcpy(v, text, n);
		v[n] = '\0';
		scan_version_set(v);
		return 0;
	}
	if (c->state == SC_BUSY && seq == c->scan_seq) {
		if (scan_conn_verdict(c, text, n) != 0)
			goto garbage;
		return 0;
	}
garbage:
	atomic_fetch_add(&scan_counts.garbage, 1);
	scan_conn_fail(c, "clamd answered garbage", false);
	return -1;
}

static void
scan_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct scan_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr nul;
	char buf[SCAN_REPLY_MAX + 1];
	size_t n;

	for (;;) {
		nul = evbuffer_search(in, "", 1, NULL);
		if (nul.pos < 0) {
			if (evbuffer_get_length(in) > SCAN_REPLY_MAX) {
				atomic_fetch_add(&scan_counts.garbage, 1);
				scan_conn_fail(c, "clamd answered garbage",
					       false);
			}
			return;
		}
		n = (size_t)nul.pos;
		if (n > SCAN_REPLY_MAX) {
			atomic_fetch_add(&scan_counts.garbage, 1);
			scan_conn_fail(c, "clamd answered garbage", false);
			return;
		}
		evbuffer_remove(in, buf, n + 1);
		if (scan_conn_reply(c, buf, n) != 0 || c->bev != bev)
			return;
	}
}

static void
scan_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct scan_conn *c = arg;

	(void)bev;
	if (c->state == SC_BUSY && c->job != NULL && !c->ended)
		scan_conn_feed(c);
}

static void
scan_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct scan_conn *c = arg;
	char why[200];
	int e = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		c->connected = true;
		return;
	}
	if (!c->connected) {
		snprintf(why, sizeof(why), "cannot connect to clamd at %s: %s",
			 c->target, evutil_socket_error_to_string(e));
		scan_reach(false, c->target, why);
		scan_conn_fail(c, why, false);
		return;
	}
	if (c->state == SC_IDLE && c->version_seq == 0) {
		scan_conn_close(c); /* clamd's IdleTimeout */
		scan_pool_pump(c->pool);
		return;
	}
	snprintf(why, sizeof(why), "clamd at %s closed the connection%s%s",
		 c->target, (what & BEV_EVENT_ERROR) ? ": " : "",
		 (what & BEV_EVENT_ERROR) ? evutil_socket_error_to_string(e)
					  : "");
	if (!c->used)
		scan_reach(false, c->target, why);
	scan_conn_fail(c, why, true);
}

static void
scan_job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scan_job *j = arg;
	char why[200];

	(void)fd;
	(void)what;
	atomic_fetch_add(&scan_counts.timeouts, 1);
	snprintf(why, sizeof(why), "clamd did not answer within %llu ms",
		 (unsigned long long)j->r->conf->scan.timeout_ms);
	if (j->conn != NULL) {
		j->conn->job = NULL;
		scan_conn_close(j->conn); /* a stream half sent: unusable */
		j->conn = NULL;
	} else if (scan_pool_mine != NULL)
		scan_pool_unwait(scan_pool_mine, j);
	scan_job_error(j, why);
	if (scan_pool_mine != NULL)
		scan_pool_pump(scan_pool_mine);
}

/* VERSION on an idle session, or a new session when none is open. */
static void
scan_pool_version_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scan_pool *p = arg;
	const struct conf *cf = scan_conf_get();
	struct scan_conn *c;
	unsigned i;
	char why[200];
	bool open = false;

	(void)fd;
	(void)what;
	if (cf == NULL)
		return;
	for (i = 0; cf->scan.clamd != NULL && i < SCAN_CONNS_MAX; i++) {
		c = &p->conns[i];
		if (c->state == SC_FREE || strcmp(c->target, cf->scan.clamd))
			continue;
		open = true;
		if (c->state == SC_IDLE && c->version_seq == 0) {
			c->version_seq = scan_conn_cmd(c, "zVERSION");
			break;
		}
	}
	if (cf->scan.clamd != NULL && !open) {
		for (i = 0; i < SCAN_CONNS_MAX && p->conns[i].state != SC_FREE;
		     i++)
			;
		/* A failure is said by scan_reach, once. */
		if (i < SCAN_CONNS_MAX)
			(void)scan_conn_open(p, &p->conns[i], &cf->scan, why,
					     sizeof(why));
	}
	conf_unref(cf);
}

/* The pool of loop L (this thread's), made on first use. */
static struct scan_pool *
scan_pool_get(struct loop *l)
{
	struct scan_pool *p = scan_pool_mine;
	struct timeval tv = util_ms_timeval(SCAN_VERSION_MS);

	if (p != NULL)
		return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->loop = l;
	p->version_timer =
	    event_new(l->base, -1, EV_PERSIST, scan_pool_version_cb, p);
	if (p->version_timer == NULL) {
		free(p);
		return NULL;
	}
	evtimer_add(p->version_timer, &tv);
	pthread_mutex_lock(&scan_pools_mu);
	p->next = scan_pools;
	scan_pools = p;
	pthread_mutex_unlock(&scan_pools_mu);
	scan_pool_mine = p;
	return p;
}

void
scan_loop_start(void *arg)
{
	struct scan_pool *p = scan_pool_get(arg);

	if (p == NULL)
		log_warnx("scan: out of memory starting the scanner");
	else
		scan_pool_version_cb(-1, 0, p);
}

void
scan_clamd_submit(struct scan_job *j)
{
	struct scan_pool *p = scan_pool_get(j->r->loop);
	struct timeval tv =
	    util_ms_timeval((int64_t)j->r->conf->scan.timeout_ms);

	if (p == NULL || (j->timer = evtimer_new(
			      p->loop->base, scan_job_timeout_cb, j)) == NULL) {
		scan_job_error(j, "out of memory");
		return;
	}
	evtimer_add(j->timer, &tv);
	if (scan_pool_place(p, j) == 0)
		scan_pool_wait(p, j);
}

void
scan_clamd_free_all(void)
{
	struct scan_pool *p, *next;
	struct scan_job *j;
	unsigned i;

	pthread_mutex_lock(&scan_pools_mu);
	for (p = scan_pools; p != NULL; p = next) {
		next = p->next;
		/* Scans still in flight (a shutdown that did not wait for
		 * them): their requests are never answered; the process ends.
		 */
		for (i = 0; i < SCAN_CONNS_MAX; i++) {
			if (p->conns[i].job != NULL)
				scan_pool_wait(p, p->conns[i].job);
			scan_conn_close(&p->conns[i]);
		}
		while ((j = p->wait_head) != NULL) {
			p->wait_head = j->next;
			if (j->timer != NULL)
				event_free(j->timer);
			free(j);
		}
		event_free(p->version_timer);
		free(p);
	}
	scan_pools = NULL;
	pthread_mutex_unlock(&scan_pools_mu);
}
