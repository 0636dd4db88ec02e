/*
 * cluster.c — connection leases shared with the other nodes through Redis
 * (hiredis' async context on the scheduler's loop; see cluster.h).
 * Owns: the Redis link, the leases this node holds, the asks in flight.
 * Must not: block (hiredis is given an IP address, never a name; every
 * command is asynchronous), nor let an ask wait on a Redis that stopped
 * answering (cluster.timeout ends the link, the asks get CLUSTER_AWAY).
 * Called from: the scheduler's loop; cluster_metrics_text from any thread.
 * Invariant: a lease is in `leases` from its grant (or local making) to its
 * drop; in Redis it is a member "NODE:BOOT:ID" of KEY, scored by its expiry.
 */
#include <sys/queue.h>
#include <sys/stat.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "conf/conf.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/deliver/cluster.h"
#include "mta/observe/quota.h"
#include "mta/observe/suppress.h"
#include "mta/observe/watchdog.h"

/* The shared lists: the suppression list, the watchdog's stops (enum
 * cl_stream_id). */
#define CS_COUNT 2

/* While away, a new link is tried this often. */
#define CLUSTER_RETRY_MS     1000
#define CLUSTER_PASSWORD_MAX 512
/* A node turned away asks again every 200 ms (SCHED_LEASE_RETRY_MS) while
 * it has work: one silent this long has left the line. */
#define CLUSTER_WAIT_STALE_MS 2000

/*
 * Take a lease (ARGV[1], for ARGV[3] ms) under KEYS[1] if fewer than
 * ARGV[2] are live, on Redis' clock (one clock for every node), and if no
 * node waits ahead of this one (ARGV[4]): a node turned away waits in line
 * in KEYS[2] (by the time it was first turned away; KEYS[3]: when it last
 * asked), so a place given back goes to the node that waited longest, not
 * to the one that gave it back; a node that stopped asking for ARGV[5] ms
 * leaves the line.  1 granted, 0 not now.
 */
static const char cluster_lua_take[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl, stale = tonumber(ARGV[3]), tonumber(ARGV[5])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf',\n"
    "                              now - stale)) do\n"
    "  redis.call('ZREM', KEYS[2], w)\n"
    "  redis.call('ZREM', KEYS[3], w)\n"
    "end\n"
    "local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])\n"
    "local rank = redis.call('ZRANK', KEYS[2], ARGV[4])\n"
    "local ahead = rank or redis.call('ZCARD', KEYS[2])\n"
    "if free > ahead then\n"
    "  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])\n"
    "  redis.call('PEXPIRE', KEYS[1], 2 * ttl)\n"
    "  if rank then\n"
    "    redis.call('ZREM', KEYS[2], ARGV[4])\n"
    "    redis.call('ZREM', KEYS[3], ARGV[4])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "redis.call('ZADD', KEYS[2], 'NX', now, ARGV[4])\n"
    "redis.call('ZADD', KEYS[3], now, ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[2], 2 * stale)\n"
    "redis.call('PEXPIRE', KEYS[3], 2 * stale)\n"
    "return 0\n";

/* Renew (or register) lease ARGV[1] under KEYS[1] for ARGV[2] ms. */
static const char cluster_lua_renew[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))\n"
    "return 1\n";

/* ARGV[#KEYS + 1] messages under the limits of KEYS[i] (one every ARGV[i]
 * ms; 0: off): their number when they may go now (each limit's next time
 * moved on by as many intervals), else minus the ms until they may. */
static const char cluster_lua_rate[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local wait, tat = 0, {}\n"
    "for i = 1, #KEYS do\n"
    "  local iv = tonumber(ARGV[i])\n"
    "  if iv > 0 then\n"
    "    local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0\n"
    "    if v < now then v = now end\n"
    "    if v - now > wait then wait = v - now end\n"
    "    tat[i] = v\n"
    "  end\n"
    "end\n"
    "if wait > 0 then return -wait end\n"
    "local n = tonumber(ARGV[#KEYS + 1]) or 1\n"
    "for i = 1, #KEYS do\n"
    "  local iv = tonumber(ARGV[i])\n"
    "  if iv > 0 then\n"
    "    redis.call('SET', KEYS[i], tat[i] + n * iv, 'PX', n * iv + 60000)\n"
    "  end\n"
    "end\n"
    "return n\n";

/* Add ARGV[1] to a user's quota window KEYS[1] (kept ARGV[2] ms): its
 * total, all nodes together. */
static const char cluster_lua_quota[] =
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return v\n";

/* A step down of KEYS[1]'s field ARGV[1]: LEVEL ARGV[2] for ARGV[3] ms,
 * unless a deeper one is in force. */
static const char cluster_lua_throttle_push[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if cur then\n"
    "  local l, u = string.match(cur, '^(%d+):(%d+)$')\n"
    "  if l and tonumber(u) > now and tonumber(l) >= tonumber(ARGV[2]) then\n"
    "    return 0\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1],\n"
    "           ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))\n"
    "return 1\n";

/* The steps in force in KEYS[1], as field, level, ms left; the ones over
 * go. */
static const char cluster_lua_throttle_read[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local all, out = redis.call('HGETALL', KEYS[1]), {}\n"
    "for i = 1, #all, 2 do\n"
    "  local l, u = string.match(all[i + 1], '^(%d+):(%d+)$')\n"
    "  if l == nil or tonumber(u) <= now then\n"
    "    redis.call('HDEL', KEYS[1], all[i])\n"
    "  else\n"
    "    out[#out + 1] = all[i]\n"
    "    out[#out + 1] = tonumber(l)\n"
    "    out[#out + 1] = tonumber(u) - now\n"
    "  end\n"
    "end\n"
    "return out\n";

/* The scripts, loaded at each connection (SCRIPT LOAD, before the link
 * counts as up) and run by their SHA-1 (EVALSHA): a message's rate costs
 * its arguments, not the script's text. */
enum cl_lua {
	LUA_TAKE,
	LUA_RENEW,
	LUA_RATE,
	LUA_QUOTA,
	LUA_THROTTLE_PUSH,
	LUA_THROTTLE_READ,
	LUA__COUNT
};
static const char *const cluster_lua[LUA__COUNT] = {
	[LUA_TAKE] = cluster_lua_take,
	[LUA_RENEW] = cluster_lua_renew,
	[LUA_RATE] = cluster_lua_rate,
	[LUA_QUOTA] = cluster_lua_quota,
	[LUA_THROTTLE_PUSH] = cluster_lua_throttle_push,
	[LUA_THROTTLE_READ] = cluster_lua_throttle_read,
};
static char cluster_lua_sha[LUA__COUNT][41];

/* The shared lists' streams: at most this many changes kept (a node away
 * for longer than that many changes misses the oldest), read by pages of
 * CLUSTER_STREAM_READ; changes kept here while Redis is away. */
#define CLUSTER_STREAM_MAXLEN "1000000"
#define CLUSTER_STREAM_READ   "1000"
#define CLUSTER_OUTBOX_MAX    100000

/* Quotas are given to Redis and read back this often. */
#define CLUSTER_QUOTA_SYNC_MS 1000

enum cl_kind {
	CL_AUTH,
	CL_TAKE,
	CL_RENEW,
	CL_DROP,
	CL_RATE,
	CL_QUOTA,
	CL_THROTTLE_PUSH,
	CL_THROTTLE_READ,
	CL_LOAD,
	CL_STREAM_ADD,
	CL_STREAM_READ
};

struct cl_req {
	enum cl_kind kind;
	int64_t sent_ms;
	cluster_lease_fn *fn;     /* CL_TAKE */
	cluster_rate_fn *rate_fn; /* CL_RATE */
	void *arg;
	/* CL_QUOTA: whose window, and what was added */
	char *user;
	enum quota_period period;
	int64_t window;
	uint64_t delta;
	struct cl_lease *lease; /* CL_TAKE: granted as this */
	int lua;                /* CL_LOAD: which script */
	TAILQ_ENTRY(cl_req) link;
};

struct cl_step {
	unsigned level;
	int64_t until_ms; /* util_mono_ms */
};

struct cl_lease {
	uint64_t id;
	char *key;
	char member[96];
	bool registered; /* in Redis (else a local one, waiting) */
};

static struct {
	bool on;
	struct event_base *base;
	char *host, *node, *prefix;
	unsigned port, nodes, timeout_ms, lease_ms;
	char password[CLUSTER_PASSWORD_MAX];
	bool has_password;
	uint32_t boot;
	cluster_changed_fn *changed;
	cluster_throttle_fn *throttle_fn;
	struct htab throttles; /* key -> struct cl_step, as last read */
	/* the shared lists' changes made here, on their way to Redis (any
	 * thread adds, under out_mu), and per list the last change read */
	pthread_mutex_t out_mu;
	struct cl_change *out;
	size_t nout, capout;
	struct cl_stream {
		char last[64]; /* a stream id; "" for the start */
		bool reading;
	} streams[CS_COUNT];
	redisAsyncContext *ac;
	bool up;     /* connected and authenticated */
	bool was_up; /* up once since start (for "back") */
	bool away_said;
	bool stopping;
	bool freeing;               /* callbacks run for nothing */
	redisAsyncContext *closing; /* cluster_stop's, until it is gone */
	bool refusal_said;          /* a refused command, logged once */
	struct event *tick;
	int64_t next_connect_ms, next_renew_ms, next_quota_ms;
	TAILQ_HEAD(, cl_req) reqs; /* sent, in order (Redis answers so) */
	struct idmap leases;
	uint64_t next_id;
	/* counters and gauges (metrics, any thread) */
	_Atomic uint64_t n_granted, n_denied, n_away, n_aways;
	_Atomic uint64_t n_rate_now, n_rate_wait, n_rate_away;
	_Atomic uint64_t n_held;
	atomic_bool g_up;
} cl;

static void cluster_connect(void);
static void cluster_stream_read_done(int id, const redisReply *rep);

bool
cluster_on(void)
{
	return cl.on;
}

bool
cluster_shared(void)
{
	return cl.on && cl.up;
}

unsigned
cluster_share(unsigned limit)
{
	unsigned n = cl.nodes > 0 ? cl.nodes : 1;

	return limit / n > 0 ? limit / n : 1;
}

/* Link state ------------------------------------------------------------ */

static void
cluster_set_up(bool up, const char *why)
{
	bool was = cl.up;

	cl.up = up;
	atomic_store(&cl.g_up, up);
	quota_shared(up);
	if (up && !was) {
		cl.away_said = false;
		log_info("cluster: Redis %s:%u %s: connection limits shared by "
			 "the cluster",
			 cl.host, cl.port, cl.was_up ? "back" : "ready");
		cl.was_up = true;
		cl.next_renew_ms = 0; /* register the local leases now */
	} else if (!up && !cl.away_said) {
		cl.away_said = true;
		atomic_fetch_add(&cl.n_aways, 1);
		log_warnx("cluster: Redis %s:%u away (%s): this node keeps to "
			  "1/%u of each connection limit until it is back",
			  cl.host, cl.port, why, cl.nodes);
	}
	if (up != was && cl.changed != NULL && !cl.stopping)
		cl.changed();
}

/* The link is gone (or being dropped): every ask still waiting learns
 * it (hiredis calls each callback with no reply as it frees). */
static void
cluster_drop_link(const char *why)
{
	redisAsyncContext *ac = cl.ac;

	cl.ac = NULL;
	cl.next_connect_ms = util_mono_ms() + CLUSTER_RETRY_MS;
	if (cl.up || !cl.away_said)
		cluster_set_up(false, why);
	if (ac != NULL)
		redisAsyncFree(ac);
}

static void
cluster_connect_cb(const redisAsyncContext *ac, int status)
{
	if (ac != cl.ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees AC after this callback. */
		cl.ac = NULL;
		cl.next_connect_ms = util_mono_ms() + CLUSTER_RETRY_MS;
		cluster_set_up(false,
			       ac->errstr[0] ? ac->errstr : "cannot connect");
		return;
	}
	/* Up when the first command (AUTH, or PING) answers: a Redis that
	 * accepts connections but runs no command (paused, loading) is
	 * still away. */
}

static void
cluster_disconnect_cb(const redisAsyncContext *ac, int status)
{
	(void)status;
	if (ac == cl.closing) {
		cl.closing = NULL; /* hiredis frees it after this */
		return;
	}
	if (ac != cl.ac)
		return; /* dropped by us: said already */
	cl.ac = NULL;
	cl.next_connect_ms = util_mono_ms() + CLUSTER_RETRY_MS;
	cluster_set_up(false, ac->errstr[0] ? ac->errstr : "connection closed");
}

/* Requests -------------------------------------------------------------- */

static struct cl_req *
cluster_req_new(enum cl_kind kind)
{
	struct cl_req *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->kind = kind;
	r->sent_ms = util_mono_ms();
	TAILQ_INSERT_TAIL(&cl.reqs, r, link);
	return r;
}

static void
cluster_lease_free(struct cl_lease *l)
{
	if (l == NULL)
		return;
	free(l->key);
	free(l);
}

/* The steps last read, forgotten. */
static void
cluster_steps_clear(void)
{
	struct htab_entry *e;
	size_t it;

	while ((e = htab_first(&cl.throttles, &it)) != NULL)
		free(htab_del(&cl.throttles, e->key));
}

static void
cluster_step_keep(const char *key, unsigned level, int64_t remain_ms)
{
	struct cl_step *st = malloc(sizeof(*st));

	if (st == NULL)
		return;
	st->level = level;
	st->until_ms = util_mono_ms() + remain_ms;
	if (htab_get(&cl.throttles, key) != NULL ||
	    htab_put(&cl.throttles, key, st) != 0)
		free(st);
}

bool
cluster_throttle_lookup(const char *key, unsigned *level, int64_t *remain_ms)
{
	struct cl_step *st;
	int64_t now = util_mono_ms();

	if (!cl.on || (st = htab_get(&cl.throttles, key)) == NULL ||
	    st->until_ms <= now)
		return false;
	*level = st->level;
	*remain_ms = st->until_ms - now;
	return true;
}

static void
cluster_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct cl_req *r = priv;
	redisReply *rep = reply;
	bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;

	(void)ac;
	TAILQ_REMOVE(&cl.reqs, r, link);
	if (cl.freeing) {
		/* The scheduler's objects may be gone. */
		if (r->kind == CL_TAKE)
			cluster_lease_free(r->lease);
		free(r->user);
		free(r);
		return;
	}
	if (ok && (r->kind == CL_TAKE || r->kind == CL_RATE))
		cl.refusal_said = false;
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && rep->str != NULL &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0 && ac == cl.ac) {
		/* The scripts were flushed: a new link loads them again. */
		cluster_drop_link("its scripts were flushed (NOSCRIPT)");
	}
	switch (r->kind) {
	case CL_AUTH:
		if (!ok) {
			cluster_set_up(false, rep == NULL ? "link lost"
					      : cl.has_password
						  ? "AUTH refused"
						  : "PING refused");
			if (rep != NULL && cl.ac != NULL)
				redisAsyncDisconnect(cl.ac);
		}
		/* else: up once the scripts are loaded (CL_LOAD) */
		break;
	case CL_LOAD:
		if (ok && rep->type == REDIS_REPLY_STRING &&
		    strcmp(rep->str, cluster_lua_sha[r->lua]) == 0) {
			if (r->lua == LUA__COUNT - 1)
				cluster_set_up(true, NULL);
			break;
		}
		if (rep != NULL) {
			log_warnx(
			    "cluster: Redis did not load a script: %.200s",
			    rep->type == REDIS_REPLY_STRING ||
				    rep->type == REDIS_REPLY_ERROR
				? rep->str
				: "?");
			cluster_set_up(false, "SCRIPT LOAD refused");
			if (cl.ac != NULL)
				redisAsyncDisconnect(cl.ac);
		}
		break;
	case CL_TAKE:
		if (ok && rep->type == REDIS_REPLY_INTEGER &&
		    rep->integer == 1) {
			r->lease->registered = true;
			if (idmap_put(&cl.leases, r->lease->id, r->lease) !=
			    0) {
				/* Not kept: not renewed, it expires. */
				cluster_lease_free(r->lease);
				r->lease = NULL;
				r->fn(CLUSTER_DENIED, 0, r->arg);
				break;
			}
			atomic_fetch_add(&cl.n_granted, 1);
			atomic_fetch_add(&cl.n_held, 1);
			r->fn(CLUSTER_GRANTED, r->lease->id, r->arg);
			break;
		}
		cluster_lease_free(r->lease);
		if (ok) {
			atomic_fetch_add(&cl.n_denied, 1);
			r->fn(CLUSTER_DENIED, 0, r->arg);
		} else {
			if (rep != NULL && !cl.refusal_said) {
				cl.refusal_said = true;
				log_warnx(
				    "cluster: Redis refused a lease: %.200s",
				    rep->str != NULL ? rep->str : "?");
			}
			atomic_fetch_add(&cl.n_away, 1);
			r->fn(CLUSTER_AWAY, 0, r->arg);
		}
		break;
	case CL_RATE:
		if (ok && rep->type == REDIS_REPLY_INTEGER &&
		    rep->integer != 0 && rep->integer < 1000000 &&
		    rep->integer > -86400000) {
			atomic_fetch_add(rep->integer > 0 ? &cl.n_rate_now
							  : &cl.n_rate_wait,
					 1);
			if (rep->integer > 0)
				r->rate_fn((unsigned)rep->integer, 0, r->arg);
			else
				r->rate_fn(0, -(int64_t)rep->integer, r->arg);
			break;
		}
		if (rep != NULL && !cl.refusal_said) {
			cl.refusal_said = true;
			log_warnx("cluster: Redis refused a rate: %.200s",
				  rep->str != NULL ? rep->str : "?");
		}
		atomic_fetch_add(&cl.n_rate_away, 1);
		r->rate_fn(0, -1, r->arg);
		break;
	case CL_QUOTA:
		if (ok && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0)
			quota_sync_done(r->user, r->period, r->window, r->delta,
					(uint64_t)rep->integer);
		else
			quota_sync_failed(r->user, r->period, r->window,
					  r->delta);
		break;
	case CL_THROTTLE_READ:
		if (ok && rep->type == REDIS_REPLY_ARRAY && cl.throttle_fn) {
			size_t i;

			cluster_steps_clear();
			for (i = 0; i + 3 <= rep->elements; i += 3) {
				redisReply *k = rep->element[i],
					   *l = rep->element[i + 1],
					   *m = rep->element[i + 2];

				if (k->type == REDIS_REPLY_STRING &&
				    l->type == REDIS_REPLY_INTEGER &&
				    m->type == REDIS_REPLY_INTEGER &&
				    l->integer > 0 && l->integer < 1000 &&
				    m->integer > 0) {
					cluster_step_keep(k->str,
							  (unsigned)l->integer,
							  (int64_t)m->integer);
					cl.throttle_fn(k->str,
						       (unsigned)l->integer,
						       (int64_t)m->integer);
				}
			}
		}
		break;
	case CL_STREAM_READ:
		cluster_stream_read_done(r->lua, ok ? rep : NULL);
		break;
	case CL_STREAM_ADD:
	case CL_THROTTLE_PUSH:
	case CL_RENEW:
	case CL_DROP:
		if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
		    !cl.refusal_said) {
			cl.refusal_said = true;
			log_warnx("cluster: Redis: %.200s",
				  rep->str != NULL ? rep->str : "?");
		}
		break;
	}
	free(r->user);
	free(r);
}

static int
cluster_send(struct cl_req *r, int argc, const char **argv)
{
	if (cl.ac == NULL ||
	    redisAsyncCommandArgv(cl.ac, cluster_reply_cb, r, argc, argv,
				  NULL) != REDIS_OK) {
		TAILQ_REMOVE(&cl.reqs, r, link);
		free(r);
		return -1;
	}
	return 0;
}

static void
cluster_renew(struct cl_lease *l)
{
	char ttl[24];
	const char *argv[] = { "EVALSHA", cluster_lua_sha[LUA_RENEW],
			       "1",       l->key,
			       l->member, ttl };
	struct cl_req *r;

	snprintf(ttl, sizeof(ttl), "%u", cl.lease_ms);
	if ((r = cluster_req_new(CL_RENEW)) != NULL &&
	    cluster_send(r, 6, argv) == 0)
		l->registered = true;
}

/* Every held lease renewed (and the local ones registered). */
static void
cluster_renew_all(void)
{
	size_t k;

	for (k = 0; k < cl.leases.cap && cl.ac != NULL; k++) {
		struct cl_lease *l = cl.leases.vals[k];

		if (l != NULL)
			cluster_renew(l);
	}
}

/* Leases ---------------------------------------------------------------- */

static struct cl_lease *
cluster_lease_new(const char *key)
{
	struct cl_lease *l = calloc(1, sizeof(*l));

	size_t n = strlen(cl.prefix) + sizeof("conn:") + strlen(key);

	if (l == NULL || (l->key = malloc(n)) == NULL) {
		free(l);
		return NULL;
	}
	snprintf(l->key, n, "%sconn:%s", cl.prefix, key);
	l->id = ++cl.next_id;
	snprintf(l->member, sizeof(l->member), "%s:%08" PRIx32 ":%" PRIu64,
		 cl.node, cl.boot, l->id);
	return l;
}

int
cluster_lease_ask(const char *key, unsigned limit, cluster_lease_fn *fn,
		  void *arg)
{
	char lim[24], ttl[24], who[96], stale[24], kw[600], ks[600];
	struct cl_lease *l;
	struct cl_req *r;
	const char *argv[11];

	if (!cl.up || cl.ac == NULL || cl.stopping)
		return -1;
	if ((l = cluster_lease_new(key)) == NULL)
		return -1;
	if ((r = cluster_req_new(CL_TAKE)) == NULL) {
		cluster_lease_free(l);
		return -1;
	}
	r->fn = fn;
	r->arg = arg;
	r->lease = l;
	snprintf(lim, sizeof(lim), "%u", limit);
	snprintf(ttl, sizeof(ttl), "%u", cl.lease_ms);
	snprintf(who, sizeof(who), "%s:%08" PRIx32, cl.node, cl.boot);
	snprintf(stale, sizeof(stale), "%u", CLUSTER_WAIT_STALE_MS);
	snprintf(kw, sizeof(kw), "%swait:%s", cl.prefix, key);
	snprintf(ks, sizeof(ks), "%sseen:%s", cl.prefix, key);
	argv[0] = "EVALSHA";
	argv[1] = cluster_lua_sha[LUA_TAKE];
	argv[2] = "3";
	argv[3] = l->key;
	argv[4] = kw;
	argv[5] = ks;
	argv[6] = l->member;
	argv[7] = lim;
	argv[8] = ttl;
	argv[9] = who;
	argv[10] = stale;
	if (cluster_send(r, 11, argv) != 0) {
		cluster_lease_free(l);
		return -1;
	}
	return 0;
}

int
cluster_rate_ask(const char *key, const unsigned iv[CLUSTER_RATES],
		 unsigned want, cluster_rate_fn *fn, void *arg)
{
	static const char tag[CLUSTER_RATES] = { 'm', 'h', 'd' };
	char k[CLUSTER_RATES][600], v[CLUSTER_RATES][24], n[8], w[24];
	const char *argv[4 + 2 * CLUSTER_RATES] = { "EVALSHA",
						    cluster_lua_sha[LUA_RATE],
						    n };
	struct cl_req *r;
	int i;

	if (!cl.up || cl.ac == NULL || cl.stopping)
		return -1;
	snprintf(n, sizeof(n), "%d", CLUSTER_RATES);
	for (i = 0; i < CLUSTER_RATES; i++) {
		snprintf(k[i], sizeof(k[i]), "%srate:%s:%c", cl.prefix, key,
			 tag[i]);
		snprintf(v[i], sizeof(v[i]), "%u", iv[i]);
		argv[3 + i] = k[i];
		argv[3 + CLUSTER_RATES + i] = v[i];
	}
	snprintf(w, sizeof(w), "%u", want > 0 ? want : 1);
	argv[3 + 2 * CLUSTER_RATES] = w;
	if ((r = cluster_req_new(CL_RATE)) == NULL)
		return -1;
	r->rate_fn = fn;
	r->arg = arg;
	return cluster_send(r, 4 + 2 * CLUSTER_RATES, argv);
}

uint64_t
cluster_lease_local(const char *key)
{
	struct cl_lease *l;

	if (!cl.on || (l = cluster_lease_new(key)) == NULL)
		return 0;
	if (idmap_put(&cl.leases, l->id, l) != 0) {
		cluster_lease_free(l);
		return 0;
	}
	atomic_fetch_add(&cl.n_held, 1);
	return l->id;
}

void
cluster_lease_drop(uint64_t lease)
{
	struct cl_lease *l;
	struct cl_req *r;

	if (lease == 0 || (l = idmap_del(&cl.leases, lease)) == NULL)
		return;
	atomic_fetch_sub(&cl.n_held, 1);
	if (l->registered && cl.ac != NULL &&
	    (r = cluster_req_new(CL_DROP)) != NULL) {
		const char *argv[] = { "ZREM", l->key, l->member };

		(void)cluster_send(r, 3, argv);
	}
	/* Else Redis forgets it when it expires. */
	cluster_lease_free(l);
}

/* Quotas whose counts could not be sent (quota_sync_take holds the quota
 * mutex while it calls back: given back after it returns). */
struct cl_quota_unsent {
	struct cl_req **v;
	size_t n, cap;
};

static void
cluster_quota_cb(const char *user, enum quota_period period, int64_t window,
		 uint64_t delta, void *arg)
{
	struct cl_quota_unsent *u = arg;
	char key[700], add[24], keep[24];
	const char *argv[6] = { "EVALSHA", cluster_lua_sha[LUA_QUOTA],
				"1",       key,
				add,       keep };
	struct cl_req *r = calloc(1, sizeof(*r)), **nv;

	if (r == NULL || (r->user = strdup(user)) == NULL) {
		free(r);
		return; /* DELTA stays in flight: lost to the count */
	}
	r->kind = CL_QUOTA;
	r->period = period;
	r->window = window;
	r->delta = delta;
	r->sent_ms = util_mono_ms();
	snprintf(key, sizeof(key), "%squota:%s:%c:%" PRId64, cl.prefix, user,
		 period == QUOTA_HOUR ? 'h' : 'd', window);
	snprintf(add, sizeof(add), "%" PRIu64, delta);
	snprintf(keep, sizeof(keep), "%d",
		 period == QUOTA_HOUR ? 2 * 3600000 : 2 * 86400000);
	if (cl.ac != NULL && redisAsyncCommandArgv(cl.ac, cluster_reply_cb, r,
						   6, argv, NULL) == REDIS_OK) {
		TAILQ_INSERT_TAIL(&cl.reqs, r, link);
		return;
	}
	/* Given back once quota_sync_take has let go of its mutex. */
	if (u->n == u->cap) {
		size_t cap = u->cap ? 2 * u->cap : 16;

		if ((nv = realloc(u->v, cap * sizeof(*nv))) == NULL) {
			free(r->user);
			free(r);
			return;
		}
		u->v = nv;
		u->cap = cap;
	}
	u->v[u->n++] = r;
}

void
cluster_throttle_hook(cluster_throttle_fn *fn)
{
	cl.throttle_fn = fn;
}

void
cluster_throttle_push(const char *key, unsigned level, int64_t remain_ms)
{
	char hk[128], lv[24], ms[24];
	const char *argv[] = { "EVALSHA", cluster_lua_sha[LUA_THROTTLE_PUSH],
			       "1",       hk,
			       key,       lv,
			       ms };
	struct cl_req *r;

	if (!cl.up || cl.ac == NULL || cl.stopping)
		return;
	snprintf(hk, sizeof(hk), "%sthrottle", cl.prefix);
	snprintf(lv, sizeof(lv), "%u", level);
	snprintf(ms, sizeof(ms), "%" PRId64, remain_ms);
	if ((r = cluster_req_new(CL_THROTTLE_PUSH)) != NULL)
		(void)cluster_send(r, 7, argv);
}

/* The steps in force, read back (cluster_throttle_hook hears them). */
static void
cluster_throttle_read(void)
{
	char hk[128];
	const char *argv[] = { "EVALSHA", cluster_lua_sha[LUA_THROTTLE_READ],
			       "1", hk };
	struct cl_req *r;

	if (cl.throttle_fn == NULL)
		return;
	snprintf(hk, sizeof(hk), "%sthrottle", cl.prefix);
	if ((r = cluster_req_new(CL_THROTTLE_READ)) != NULL)
		(void)cluster_send(r, 4, argv);
}

/* Shared lists: the suppression list, the watchdog's stops -------------- */

/*
 * Each is a Redis stream of changes (XADD, MAXLEN ~ CLUSTER_STREAM_MAXLEN):
 * a change made here goes out at the next tick (any thread queues it,
 * formatted, under out_mu); every tick each node reads what was added since
 * the last change it saw (XRANGE from there; from the start at start-up,
 * so that a node started later learns the list) and applies what other
 * nodes made.
 */
enum cl_stream_id { CS_SUPPRESS, CS_WATCHDOG, CS__COUNT };
_Static_assert(CS__COUNT == CS_COUNT, "CS_COUNT: the shared lists");

#define CL_CHANGE_FIELDS 12

struct cl_change {
	enum cl_stream_id stream;
	unsigned nf;
	char *f[CL_CHANGE_FIELDS]; /* field, value, …; malloc'd */
};

static void cluster_suppress_apply(const redisReply *fields);
static void cluster_watchdog_apply(const redisReply *fields);

static const struct cl_stream_def {
	const char *name;
	void (*apply)(const redisReply *fields);
} cluster_streams[CS__COUNT] = {
	[CS_SUPPRESS] = { "suppress", cluster_suppress_apply },
	[CS_WATCHDOG] = { "watchdog", cluster_watchdog_apply },
};

static void
cluster_change_free(struct cl_change *c)
{
	unsigned i;

	for (i = 0; i < c->nf; i++)
		free(c->f[i]);
	c->nf = 0;
}

/* Queue a change to STREAM: N field/value strings (any thread). */
static void
cluster_change_add(enum cl_stream_id stream, unsigned n, const char **fv)
{
	struct cl_change c = { .stream = stream }, *nv;
	unsigned i;

	for (i = 0; i < n && i < CL_CHANGE_FIELDS; i++) {
		if ((c.f[i] = strdup(fv[i])) == NULL) {
			cluster_change_free(&c);
			return;
		}
		c.nf = i + 1;
	}
	pthread_mutex_lock(&cl.out_mu);
	if (cl.nout == cl.capout && cl.capout < CLUSTER_OUTBOX_MAX) {
		size_t cap = cl.capout ? 2 * cl.capout : 64;

		if ((nv = realloc(cl.out, cap * sizeof(*nv))) != NULL) {
			cl.out = nv;
			cl.capout = cap;
		}
	}
	if (cl.nout < cl.capout) {
		cl.out[cl.nout++] = c;
		c.nf = 0;
	}
	/* Else: more than the outbox holds while Redis is away: this node
	 * keeps the change, the others do not hear of it. */
	pthread_mutex_unlock(&cl.out_mu);
	cluster_change_free(&c);
}

/* The changes made here since the last tick, to their streams. */
static void
cluster_changes_send(void)
{
	struct cl_change *v;
	size_t n, i;
	char who[96];

	pthread_mutex_lock(&cl.out_mu);
	v = cl.out;
	n = cl.nout;
	cl.out = NULL;
	cl.nout = cl.capout = 0;
	pthread_mutex_unlock(&cl.out_mu);
	snprintf(who, sizeof(who), "%s:%08" PRIx32, cl.node, cl.boot);
	for (i = 0; i < n; i++) {
		const char *argv[8 + CL_CHANGE_FIELDS];
		char key[128];
		struct cl_req *r;
		unsigned k, argc = 0;

		snprintf(key, sizeof(key), "%s%s", cl.prefix,
			 cluster_streams[v[i].stream].name);
		argv[argc++] = "XADD";
		argv[argc++] = key;
		argv[argc++] = "MAXLEN";
		argv[argc++] = "~";
		argv[argc++] = CLUSTER_STREAM_MAXLEN;
		argv[argc++] = "*";
		argv[argc++] = "n";
		argv[argc++] = who;
		for (k = 0; k < v[i].nf; k++)
			argv[argc++] = v[i].f[k];
		if ((r = cluster_req_new(CL_STREAM_ADD)) == NULL ||
		    cluster_send(r, (int)argc, argv) != 0)
			/* Again at the next tick. */
			cluster_change_add(v[i].stream, v[i].nf,
					   (const char **)v[i].f);
		cluster_change_free(&v[i]);
	}
	free(v);
}

/* FIELDS' value of NAME (an XRANGE entry's field list), or NULL. */
static const char *
cluster_field(const redisReply *fields, const char *name)
{
	size_t i;

	for (i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i],
				 *v = fields->element[i + 1];

		if (k->type == REDIS_REPLY_STRING &&
		    v->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
			return v->str;
	}
	return NULL;
}

/* Is FIELDS a change another node made? */
static bool
cluster_field_other(const redisReply *fields)
{
	const char *who = cluster_field(fields, "n");
	char me[96];

	snprintf(me, sizeof(me), "%s:%08" PRIx32, cl.node, cl.boot);
	return who != NULL && strcmp(who, me) != 0;
}

static void
cluster_stream_read(enum cl_stream_id id)
{
	struct cl_stream *st = &cl.streams[id];
	char key[128], from[80];
	const char *argv[] = { "XRANGE", key,     from,
			       "+",      "COUNT", CLUSTER_STREAM_READ };
	struct cl_req *r;

	if (st->reading)
		return;
	snprintf(key, sizeof(key), "%s%s", cl.prefix, cluster_streams[id].name);
	if (st->last[0] == '\0')
		snprintf(from, sizeof(from), "-");
	else
		snprintf(from, sizeof(from), "(%s", st->last);
	if ((r = cluster_req_new(CL_STREAM_READ)) == NULL)
		return;
	r->lua = (int)id;
	if (cluster_send(r, 6, argv) == 0)
		st->reading = true;
}

static void
cluster_stream_read_done(int id, const redisReply *rep)
{
	struct cl_stream *st = &cl.streams[id];
	size_t i;

	st->reading = false;
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY)
		return;
	for (i = 0; i < rep->elements; i++) {
		const redisReply *it = rep->element[i];

		if (it->type != REDIS_REPLY_ARRAY || it->elements != 2 ||
		    it->element[0]->type != REDIS_REPLY_STRING ||
		    it->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		if (cluster_field_other(it->element[1]))
			cluster_streams[id].apply(it->element[1]);
		snprintf(st->last, sizeof(st->last), "%s", it->element[0]->str);
	}
	/* A full page: more to read at once. */
	if (rep->elements == (size_t)atoi(CLUSTER_STREAM_READ) && cl.up &&
	    cl.ac != NULL)
		cluster_stream_read(id);
}

static void
cluster_hex(const uint8_t *b, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static bool
cluster_unhex(const char *s, uint8_t *b, size_t n)
{
	size_t i;
	unsigned v;

	if (s == NULL || strlen(s) != 2 * n)
		return false;
	for (i = 0; i < n; i++) {
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return false;
		b[i] = (uint8_t)v;
	}
	return true;
}

/* The suppression list's hook: a change made here (any thread). */
static void
cluster_suppress_note(const struct queue_suppress_entry *e, bool removed)
{
	char sc[2 * QUEUE_SUPPRESS_HASH_BYTES + 1],
	    rc[2 * QUEUE_SUPPRESS_HASH_BYTES + 1], why[8], t[24];
	const char *fv[] = {
		"op", removed ? "-" : "+", "s", sc, "r", rc, "why", why, "t", t
	};

	cluster_hex(e->scope, sizeof(e->scope), sc);
	cluster_hex(e->rcpt, sizeof(e->rcpt), rc);
	snprintf(why, sizeof(why), "%d", (int)e->reason);
	snprintf(t, sizeof(t), "%" PRId64, e->time_ms);
	cluster_change_add(CS_SUPPRESS, 10, fv);
}

static void
cluster_suppress_apply(const redisReply *fields)
{
	struct queue_suppress_entry e;
	const char *op = cluster_field(fields, "op"),
		   *why = cluster_field(fields, "why"),
		   *t = cluster_field(fields, "t");

	memset(&e, 0, sizeof(e));
	if (op == NULL || why == NULL || t == NULL ||
	    !cluster_unhex(cluster_field(fields, "s"), e.scope,
			   sizeof(e.scope)) ||
	    !cluster_unhex(cluster_field(fields, "r"), e.rcpt, sizeof(e.rcpt)))
		return;
	e.reason = (enum queue_suppress_reason)atoi(why);
	e.time_ms = strtoll(t, NULL, 10);
	if (e.reason < QSR_BAD_MAILBOX || e.reason > QSR_OPERATOR)
		e.reason = QSR_OPERATOR;
	(void)suppress_apply(&e, strcmp(op, "-") == 0);
}

/* The watchdog's hook: a stop, or an operator's release, made here. */
static void
cluster_watchdog_note(const char *identity, bool stopped, const char *signals)
{
	const char *fv[] = { "op",  stopped ? "stop" : "release",
			     "id",  identity,
			     "sig", signals != NULL ? signals : "{}" };

	cluster_change_add(CS_WATCHDOG, 6, fv);
}

static void
cluster_watchdog_apply(const redisReply *fields)
{
	const char *op = cluster_field(fields, "op"),
		   *id = cluster_field(fields, "id");

	if (op == NULL || id == NULL)
		return;
	watchdog_remote(id, strcmp(op, "stop") == 0,
			cluster_field(fields, "sig"));
}

/* Every user's counts to Redis, and its totals back. */
static void
cluster_quota_sync(void)
{
	struct cl_quota_unsent u = { NULL, 0, 0 };
	size_t i;

	quota_sync_take(util_wall_ms(), cluster_quota_cb, &u);
	for (i = 0; i < u.n; i++) {
		quota_sync_failed(u.v[i]->user, u.v[i]->period, u.v[i]->window,
				  u.v[i]->delta);
		free(u.v[i]->user);
		free(u.v[i]);
	}
	free(u.v);
}

/* The tick: a new link while away, the oldest ask's deadline, renewals. */
static void
cluster_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = util_mono_ms();
	struct cl_req *r;

	(void)fd;
	(void)what;
	(void)arg;
	if (cl.stopping)
		return;
	if (cl.ac == NULL && now >= cl.next_connect_ms)
		cluster_connect();
	if ((r = TAILQ_FIRST(&cl.reqs)) != NULL &&
	    now - r->sent_ms > (int64_t)cl.timeout_ms) {
		char why[64];

		snprintf(why, sizeof(why), "no answer in %u ms", cl.timeout_ms);
		cluster_drop_link(why);
	}
	if (cl.up && cl.ac != NULL && now >= cl.next_renew_ms) {
		cl.next_renew_ms = now + cl.lease_ms / 3;
		cluster_renew_all();
	}
	if (cl.up && cl.ac != NULL && now >= cl.next_quota_ms) {
		cl.next_quota_ms = now + CLUSTER_QUOTA_SYNC_MS;
		cluster_quota_sync();
		cluster_throttle_read();
	}
	if (cl.up && cl.ac != NULL) {
		cluster_changes_send();
		cluster_stream_read(CS_SUPPRESS);
		cluster_stream_read(CS_WATCHDOG);
	}
}

static void
cluster_connect(void)
{
	redisAsyncContext *ac;
	int i;

	cl.next_connect_ms = util_mono_ms() + CLUSTER_RETRY_MS;
	if ((ac = redisAsyncConnect(cl.host, (int)cl.port)) == NULL) {
		cluster_set_up(false, "out of memory");
		return;
	}
	if (ac->err != 0) {
		cluster_set_up(false, ac->errstr);
		redisAsyncFree(ac);
		return;
	}
	if (redisLibeventAttach(ac, cl.base) != REDIS_OK) {
		cluster_set_up(false, "cannot attach to the loop");
		redisAsyncFree(ac);
		return;
	}
	redisAsyncSetConnectCallback(ac, cluster_connect_cb);
	redisAsyncSetDisconnectCallback(ac, cluster_disconnect_cb);
	cl.ac = ac;
	{
		struct cl_req *r = cluster_req_new(CL_AUTH);
		const char *argv[] = { cl.has_password ? "AUTH" : "PING",
				       cl.password };

		if (r == NULL ||
		    cluster_send(r, cl.has_password ? 2 : 1, argv) != 0) {
			cluster_drop_link("cannot send its first command");
			return;
		}
	}
	for (i = 0; i < LUA__COUNT; i++) {
		struct cl_req *r = cluster_req_new(CL_LOAD);
		const char *argv[] = { "SCRIPT", "LOAD", cluster_lua[i] };

		if (r == NULL) {
			cluster_drop_link("out of memory");
			return;
		}
		r->lua = i;
		if (cluster_send(r, 3, argv) != 0) {
			cluster_drop_link("cannot send SCRIPT LOAD");
			return;
		}
	}
}

/* Set-up and end -------------------------------------------------------- */

/* The first line of PATH into cl.password.  0, or -1 with err. */
static int
cluster_password_read(const char *path, char *err, size_t errlen)
{
	char buf[CLUSTER_PASSWORD_MAX + 2];
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, errlen, "cluster.password_file %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 0007) != 0)
		log_warnx("cluster.password_file %s is readable by everyone",
			  path);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cluster.password_file %s: %s", path,
			 strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0' || strlen(buf) >= sizeof(cl.password)) {
		snprintf(err, errlen, "cluster.password_file %s: %s", path,
			 buf[0] == '\0' ? "empty first line"
					: "password longer than 511 bytes");
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	memcpy(cl.password, buf, strlen(buf) + 1);
	sodium_memzero(buf, sizeof(buf));
	cl.has_password = true;
	return 0;
}

int
cluster_init(struct event_base *base, const struct conf_cluster *cc,
	     cluster_changed_fn *changed, char *err, size_t errlen)
{
	static const struct timeval first = { 0, 0 };
	struct timeval tv;
	unsigned step;
	int i;

	memset(&cl, 0, sizeof(cl));
	TAILQ_INIT(&cl.reqs);
	if (cc->redis_host == NULL)
		return 0;
	cl.base = base;
	cl.changed = changed;
	cl.port = cc->redis_port;
	cl.nodes = cc->nodes;
	cl.timeout_ms = cc->timeout_ms;
	cl.lease_ms = cc->lease_ms;
	cl.boot = randombytes_random();
	pthread_mutex_init(&cl.out_mu, NULL);
	for (i = 0; i < LUA__COUNT; i++) {
		unsigned char md[SHA_DIGEST_LENGTH];
		int k;

		SHA1((const unsigned char *)cluster_lua[i],
		     strlen(cluster_lua[i]), md);
		for (k = 0; k < SHA_DIGEST_LENGTH; k++)
			snprintf(cluster_lua_sha[i] + 2 * k, 3, "%02x", md[k]);
	}
	if ((cl.host = strdup(cc->redis_host)) == NULL ||
	    (cl.node = strdup(cc->node)) == NULL ||
	    (cl.prefix = strdup(cc->prefix)) == NULL ||
	    idmap_init(&cl.leases) != 0 || htab_init(&cl.throttles) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cc->password_file != NULL &&
	    cluster_password_read(cc->password_file, err, errlen) != 0)
		return -1;
	/* The tick runs often enough to see an ask late by a timeout. */
	step = cl.timeout_ms / 4 > 10 ? cl.timeout_ms / 4 : 10;
	if (step > 250)
		step = 250;
	tv.tv_sec = step / 1000;
	tv.tv_usec = (step % 1000) * 1000;
	if ((cl.tick = event_new(base, -1, EV_PERSIST, cluster_tick_cb,
				 NULL)) == NULL ||
	    event_add(cl.tick, &tv) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* The first link as soon as the loop runs. */
	event_base_once(base, -1, EV_TIMEOUT, cluster_tick_cb, NULL, &first);
	suppress_share_hook(cluster_suppress_note);
	watchdog_share_hook(cluster_watchdog_note);
	cl.on = true;
	return 0;
}

void
cluster_stop(void)
{
	size_t k;

	if (!cl.on || cl.stopping)
		return;
	/* idmap_del leaves a tombstone: the walk may go on. */
	for (k = 0; k < cl.leases.cap; k++) {
		struct cl_lease *l = cl.leases.vals[k];

		if (l != NULL)
			cluster_lease_drop(l->id);
	}
	cl.stopping = true;
	if (cl.tick != NULL)
		event_del(cl.tick);
	/* The ZREMs go out before the link closes (redisAsyncDisconnect
	 * waits for the replies). */
	if (cl.ac != NULL) {
		cl.closing = cl.ac;
		cl.ac = NULL;
		redisAsyncDisconnect(cl.closing);
	}
}

void
cluster_free(void)
{
	size_t k;

	if (!cl.on)
		return;
	cl.stopping = true;
	cl.freeing = true;
	if (cl.ac != NULL) {
		redisAsyncContext *ac = cl.ac;

		cl.ac = NULL;
		redisAsyncFree(ac);
	}
	if (cl.closing != NULL) {
		/* Its last replies never came: the loop has ended. */
		redisAsyncContext *ac = cl.closing;

		cl.closing = NULL;
		redisAsyncFree(ac);
	}
	for (k = 0; k < cl.leases.cap; k++)
		cluster_lease_free(cl.leases.vals[k]);
	idmap_free(&cl.leases);
	cluster_steps_clear();
	htab_free(&cl.throttles);
	suppress_share_hook(NULL);
	watchdog_share_hook(NULL);
	for (k = 0; k < cl.nout; k++)
		cluster_change_free(&cl.out[k]);
	free(cl.out);
	cl.out = NULL;
	cl.nout = cl.capout = 0;
	if (cl.tick != NULL)
		event_free(cl.tick);
	sodium_memzero(cl.password, sizeof(cl.password));
	free(cl.host);
	free(cl.node);
	free(cl.prefix);
	cl.on = false;
}

size_t
cluster_metrics_text(char *buf, size_t len)
{
	int n;

	if (!cl.on)
		return 0;
	n = snprintf(
	    buf, len,
	    "# HELP outpost_cluster_redis_up 1 while the cluster's Redis "
	    "answers (limits shared), 0 while each node keeps to its share.\n"
	    "# TYPE outpost_cluster_redis_up gauge\n"
	    "outpost_cluster_redis_up %d\n"
	    "# HELP outpost_cluster_redis_away_total Times Redis went away "
	    "(this node then kept to its share of each limit).\n"
	    "# TYPE outpost_cluster_redis_away_total counter\n"
	    "outpost_cluster_redis_away_total %" PRIu64 "\n"
	    "# HELP outpost_cluster_leases Connection leases this node holds.\n"
	    "# TYPE outpost_cluster_leases gauge\n"
	    "outpost_cluster_leases %" PRIu64 "\n"
	    "# HELP outpost_cluster_lease_requests_total Connection leases "
	    "asked of Redis, by answer.\n"
	    "# TYPE outpost_cluster_lease_requests_total counter\n"
	    "outpost_cluster_lease_requests_total{result=\"granted\"} %" PRIu64
	    "\n"
	    "outpost_cluster_lease_requests_total{result=\"denied\"} %" PRIu64
	    "\n"
	    "outpost_cluster_lease_requests_total{result=\"away\"} %" PRIu64
	    "\n"
	    "# HELP outpost_cluster_rate_requests_total Messages asked of "
	    "Redis under a destination's shared rate, by answer.\n"
	    "# TYPE outpost_cluster_rate_requests_total counter\n"
	    "outpost_cluster_rate_requests_total{result=\"now\"} %" PRIu64 "\n"
	    "outpost_cluster_rate_requests_total{result=\"wait\"} %" PRIu64 "\n"
	    "outpost_cluster_rate_requests_total{result=\"away\"} %" PRIu64
	    "\n",
	    atomic_load(&cl.g_up) ? 1 : 0, atomic_load(&cl.n_aways),
	    atomic_load(&cl.n_held), atomic_load(&cl.n_granted),
	    atomic_load(&cl.n_denied), atomic_load(&cl.n_away),
	    atomic_load(&cl.n_rate_now), atomic_load(&cl.n_rate_wait),
	    atomic_load(&cl.n_rate_away));
	return n < 0 ? 0 : (size_t)n;
}
