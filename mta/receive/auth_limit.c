/*
 * auth_limit.c — the AUTH limiter's table (interface and policy:
 * auth_limit.h).
 *
 * Owns: the entries (one per client network, one per (network, user
 * name)), an idmap from a keyed SipHash of each entry's key to the entry,
 * and an LRU list.  Threads: any, everything under al_mu; a block's record
 * in the queue's "state" database is a queue op (submitted under al_mu, so
 * in the order of the changes; never a write on the caller's thread).
 * Invariants: an entry with an attempt in flight is never dropped; the
 * table never holds more than lim->max_entries entries; a user name is
 * kept in clear only when it is a configured user's; nothing here logs a
 * user name; a block in force is in "state" (stored) from its start to
 * its lift or its entry's drop.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/receive/auth_limit.h"
#include "mta/core/htab.h"
#include "mta/core/log.h"

#define AL_EVICT_SCAN   64    /* entries weighed from the LRU tail */
#define AL_SWEEP_SCAN   8     /* entries looked at for expiry per call */
#define AL_WARN_MS      60000 /* at most one "table full" warning a minute */
#define AL_SHIFT_MAX    16    /* the failure delay doubles at most this often */
#define AL_NAME_CONTEXT "outpost auth_limit names"

enum al_kind { AL_NET = 1, AL_USER = 2 };

/* Hashed as bytes: no padding holes, zeros where unused. */
struct al_key {
	uint8_t kind, family, prefix, pad;
	uint8_t net[16];
	uint8_t name[AUTH_LIMIT_NAME_BYTES]; /* AL_USER only */
};

struct al_entry {
	struct al_key key;
	uint64_t id; /* its key in AL.map */
	char *user;  /* a configured user's name, or NULL */
	unsigned failures, in_flight;
	int64_t window_start_ms; /* first failure of the current window */
	int64_t blocked_until_ms;
	int64_t good_until_ms; /* AL_USER: exempt from the network's block */
	bool stored;           /* its block is kept in the queue's "state" */
	struct al_entry *prev, *next; /* LRU: head = most recently used */
};

/* What an entry is worth keeping, when room must be made. */
enum al_worth { AW_IDLE, AW_COUNTING, AW_GOOD, AW_BLOCKED };

static pthread_mutex_t al_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	bool ready;
	unsigned char id_key[crypto_shorthash_KEYBYTES];
	unsigned char name_key[crypto_generichash_KEYBYTES];
	struct idmap map;
	struct al_entry *head, *tail;
	size_t n;
	int64_t warned_ms;
	struct queue *queue; /* where blocks are kept; NULL: nowhere */
} AL;

/* The keys and the map, on first use.  al_mu held. */
static int
al_ready(void)
{
	if (AL.ready)
		return 0;
	if (idmap_init(&AL.map) != 0)
		return -1;
	randombytes_buf(AL.id_key, sizeof(AL.id_key));
	randombytes_buf(AL.name_key, sizeof(AL.name_key));
	AL.ready = true;
	return 0;
}

static unsigned
al_addr_bytes(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

/* Keep the first PREFIX bits of NET (BYTES long), zero the rest. */
static void
al_mask(uint8_t *net, unsigned bytes, unsigned prefix)
{
	unsigned i;

	for (i = 0; i < bytes; i++) {
		if (prefix >= 8) {
			prefix -= 8;
			continue;
		}
		net[i] &= (uint8_t)(0xff00u >> prefix);
		prefix = 0;
	}
}

/* Do A and B agree on their first PREFIX bits? */
static bool
al_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	uint8_t m = (uint8_t)(0xff00u >> rest);

	if (memcmp(a, b, whole) != 0)
		return false;
	return rest == 0 || ((a[whole] ^ b[whole]) & m) == 0;
}

static void
al_key_net(struct al_key *k, const struct peer_key *c, unsigned prefix)
{
	memset(k, 0, sizeof(*k));
	k->kind = AL_NET;
	k->family = c->family;
	k->prefix = (uint8_t)prefix;
	memcpy(k->net, c->addr, sizeof(k->net));
	al_mask(k->net, al_addr_bytes(c->family), prefix);
}

/* al_mu held (the key). */
static void
al_name_hash(const char *user, uint8_t out[AUTH_LIMIT_NAME_BYTES])
{
	crypto_generichash(out, AUTH_LIMIT_NAME_BYTES,
			   (const unsigned char *)user, strlen(user),
			   AL.name_key, sizeof(AL.name_key));
}

static uint64_t
al_id(const struct al_key *k)
{
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t id;

	crypto_shorthash(h, (const unsigned char *)k, sizeof(*k), AL.id_key);
	memcpy(&id, h, sizeof(id));
	/* idmap reserves 0 and UINT64_MAX; a clash is handled like any. */
	return id == 0 || id == UINT64_MAX ? 1 : id;
}

static struct al_entry *
al_find(const struct al_key *k, uint64_t id)
{
	struct al_entry *e = idmap_get(&AL.map, id);

	return e != NULL && memcmp(&e->key, k, sizeof(*k)) == 0 ? e : NULL;
}

static void
al_unlink(struct al_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		AL.head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		AL.tail = e->prev;
	e->prev = e->next = NULL;
}

static void
al_push_head(struct al_entry *e)
{
	e->prev = NULL;
	e->next = AL.head;
	if (AL.head != NULL)
		AL.head->prev = e;
	AL.head = e;
	if (AL.tail == NULL)
		AL.tail = e;
}

static void
al_touch(struct al_entry *e)
{
	if (AL.head == e)
		return;
	al_unlink(e);
	al_push_head(e);
}

/* E's block kept across restarts (its record replaced), or forgotten. */
static void
al_store(struct al_entry *e, bool keep)
{
	uint8_t data[sizeof(e->key) + 256];
	size_t n = sizeof(e->key), ulen;

	if (AL.queue == NULL || (!keep && !e->stored))
		return;
	e->stored = keep;
	if (!keep) {
		(void)queue_state_del(AL.queue, QS_AUTH_BLOCK, &e->key,
				      sizeof(e->key));
		return;
	}
	/* The key, then the configured name (listed by `auth blocks`). */
	memcpy(data, &e->key, sizeof(e->key));
	if (e->user != NULL && (ulen = strlen(e->user)) < sizeof(data) - n) {
		memcpy(data + n, e->user, ulen);
		n += ulen;
	}
	if (queue_state_put(AL.queue, QS_AUTH_BLOCK, &e->key, sizeof(e->key),
			    e->blocked_until_ms, data, n) != 0)
		e->stored = false; /* out of memory: in memory only */
}

static void
al_drop(struct al_entry *e)
{
	al_store(e, false);
	(void)idmap_del(&AL.map, e->id);
	al_unlink(e);
	free(e->user);
	free(e);
	AL.n--;
}

/* A window that ended takes its failures with it. */
static void
al_refresh(struct al_entry *e, const struct conf_auth_limit *lim, int64_t now)
{
	if (e->failures > 0 &&
	    now - e->window_start_ms >= (int64_t)lim->window_ms)
		e->failures = 0;
}

static enum al_worth
al_worth(struct al_entry *e, const struct conf_auth_limit *lim, int64_t now)
{
	al_refresh(e, lim, now);
	if (e->blocked_until_ms > now)
		return AW_BLOCKED;
	if (e->good_until_ms > now)
		return AW_GOOD;
	if (e->failures > 0)
		return AW_COUNTING;
	return AW_IDLE;
}

/* Drop expired entries found at the LRU tail (a few per call). */
static void
al_sweep(const struct conf_auth_limit *lim, int64_t now)
{
	struct al_entry *e = AL.tail, *prev;
	unsigned i;

	for (i = 0; e != NULL && i < AL_SWEEP_SCAN; i++, e = prev) {
		prev = e->prev;
		if (e->in_flight == 0 && al_worth(e, lim, now) == AW_IDLE)
			al_drop(e);
	}
}

/*
 * Make room for one entry: drop the least worth keeping of the
 * AL_EVICT_SCAN oldest entries without an attempt in flight (further, when
 * every one of those has one).  0, or -1 when every entry is in flight.
 */
static int
al_evict(const struct conf_auth_limit *lim, int64_t now)
{
	struct al_entry *e, *victim = NULL;
	enum al_worth w, best = AW_BLOCKED;
	unsigned seen = 0;

	for (e = AL.tail; e != NULL; e = e->prev) {
		if (e->in_flight > 0)
			continue;
		w = al_worth(e, lim, now);
		if (victim == NULL || w < best) {
			victim = e;
			best = w;
		}
		if (best == AW_IDLE || ++seen >= AL_EVICT_SCAN)
			break;
	}
	if (victim == NULL)
		return -1;
	if (best == AW_BLOCKED && now - AL.warned_ms >= AL_WARN_MS) {
		AL.warned_ms = now;
		log_warnx("auth limit: table full (%zu entries): a block was "
			  "dropped to make room; raise auth_limit.max_entries",
			  AL.n);
	}
	al_drop(victim);
	return 0;
}

static struct al_entry *
al_create(const struct al_key *k, uint64_t id,
	  const struct conf_auth_limit *lim, int64_t now)
{
	struct al_entry *e;

	if ((e = idmap_get(&AL.map, id)) != NULL) {
		/* Another key with the same SipHash (keyed: not chosen by a
		 * client).  The newcomer wins unless the other is busy. */
		if (e->in_flight > 0)
			return NULL;
		al_drop(e);
	}
	if (AL.n >= lim->max_entries && al_evict(lim, now) != 0)
		return NULL;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->key = *k;
	e->id = id;
	if (idmap_put(&AL.map, id, e) != 0) {
		free(e);
		return NULL;
	}
	al_push_head(e);
	AL.n++;
	return e;
}

/* Both keys of an attempt.  al_mu held. */
static void
al_keys(const struct auth_limit_ticket *t, struct al_key *kn, struct al_key *ku)
{
	al_key_net(kn, &t->net, t->prefix);
	*ku = *kn;
	ku->kind = AL_USER;
	memcpy(ku->name, t->name, sizeof(ku->name));
}

/* Pin E (an attempt in flight), creating it if absent.  NULL: no room. */
static struct al_entry *
al_pin(struct al_entry *e, const struct al_key *k, uint64_t id,
       const struct conf_auth_limit *lim, int64_t now)
{
	if (e == NULL && (e = al_create(k, id, lim, now)) == NULL)
		return NULL;
	e->in_flight++;
	al_touch(e);
	return e;
}

/* Why may the attempt not go ahead?  OK if it may.  al_mu held. */
static enum auth_limit_verdict
al_judge(struct al_entry *en, struct al_entry *eu,
	 const struct conf_auth_limit *lim, int64_t now, uint64_t *left_ms)
{
	bool exempt;

	if (en != NULL)
		al_refresh(en, lim, now);
	if (eu != NULL)
		al_refresh(eu, lim, now);
	exempt = eu != NULL && eu->good_until_ms > now;
	if (eu != NULL && eu->blocked_until_ms > now) {
		*left_ms = (uint64_t)(eu->blocked_until_ms - now);
		return AUTH_LIMIT_USER_BLOCKED;
	}
	if (!exempt && en != NULL && en->blocked_until_ms > now) {
		*left_ms = (uint64_t)(en->blocked_until_ms - now);
		return AUTH_LIMIT_ADDR_BLOCKED;
	}
	if (eu != NULL && eu->failures + eu->in_flight >= lim->max_failures)
		return AUTH_LIMIT_BUSY;
	if (!exempt && en != NULL &&
	    en->failures + en->in_flight >= lim->max_failures_per_address)
		return AUTH_LIMIT_BUSY;
	return AUTH_LIMIT_OK;
}

enum auth_limit_verdict
auth_limit_reserve(const struct conf_auth_limit *lim,
		   const struct peer_key *client, const char *user,
		   const char *known_name, int64_t now_ms,
		   struct auth_limit_ticket *t, uint64_t *left_ms)
{
	struct al_key kn, ku;
	struct al_entry *en, *eu;
	uint64_t idn, idu;
	enum auth_limit_verdict v;

	*left_ms = 0;
	memset(t, 0, sizeof(*t));
	t->net = *client;
	t->prefix = (uint8_t)(client->family == AF_INET ? lim->ipv4_prefix
							: lim->ipv6_prefix);
	al_mask(t->net.addr, al_addr_bytes(client->family), t->prefix);
	pthread_mutex_lock(&al_mu);
	if (al_ready() != 0) {
		v = AUTH_LIMIT_FULL;
		goto out;
	}
	al_sweep(lim, now_ms);
	al_name_hash(user, t->name);
	al_keys(t, &kn, &ku);
	idn = al_id(&kn);
	idu = al_id(&ku);
	en = al_find(&kn, idn);
	eu = al_find(&ku, idu);
	if ((v = al_judge(en, eu, lim, now_ms, left_ms)) != AUTH_LIMIT_OK)
		goto out;
	/* Pin what exists before creating what does not: making room must
	 * not drop either. */
	if (en != NULL)
		al_pin(en, &kn, idn, lim, now_ms);
	if (eu != NULL)
		al_pin(eu, &ku, idu, lim, now_ms);
	if ((en == NULL &&
	     (en = al_pin(NULL, &kn, idn, lim, now_ms)) == NULL) ||
	    (eu == NULL &&
	     (eu = al_pin(NULL, &ku, idu, lim, now_ms)) == NULL)) {
		if (en != NULL)
			en->in_flight--;
		if (eu != NULL)
			eu->in_flight--;
		v = AUTH_LIMIT_FULL;
		goto out;
	}
	/* Out of memory here only costs the name in `auth blocks`. */
	if (eu->user == NULL && known_name != NULL)
		eu->user = strdup(known_name);
	t->held = true;
out:
	pthread_mutex_unlock(&al_mu);
	return v;
}

/* One more failure of E; true when it reached MAX (E is then blocked). */
static bool
al_fail(struct al_entry *e, unsigned max, const struct conf_auth_limit *lim,
	int64_t now)
{
	al_refresh(e, lim, now);
	if (e->failures == 0)
		e->window_start_ms = now;
	e->failures++;
	if (e->failures < max)
		return false;
	e->blocked_until_ms = now + (int64_t)lim->block_ms;
	e->failures = 0;
	al_store(e, true);
	return true;
}

uint64_t
auth_limit_settle(const struct conf_auth_limit *lim,
		  struct auth_limit_ticket *t, bool ok, int64_t now_ms,
		  bool *blocked)
{
	struct al_key kn, ku;
	struct al_entry *en, *eu;
	unsigned shift = 0;
	uint64_t delay;

	*blocked = false;
	if (!t->held)
		panic("settle without a reservation");
	t->held = false;
	pthread_mutex_lock(&al_mu);
	al_keys(t, &kn, &ku);
	/* Both are pinned; only auth_limit_clear() can have dropped them. */
	en = AL.ready ? al_find(&kn, al_id(&kn)) : NULL;
	eu = AL.ready ? al_find(&ku, al_id(&ku)) : NULL;
	if (en != NULL && en->in_flight > 0)
		en->in_flight--;
	if (eu != NULL && eu->in_flight > 0)
		eu->in_flight--;
	if (ok) {
		/* The network's count stays: one good account must not
		 * reset a spray. */
		if (eu != NULL) {
			eu->failures = 0;
			if (lim->success_exempt_ms > 0)
				eu->good_until_ms =
				    now_ms + (int64_t)lim->success_exempt_ms;
		}
		pthread_mutex_unlock(&al_mu);
		return 0;
	}
	if (eu != NULL) {
		shift = eu->failures; /* before this one */
		*blocked |= al_fail(eu, lim->max_failures, lim, now_ms);
	}
	if (en != NULL)
		*blocked |=
		    al_fail(en, lim->max_failures_per_address, lim, now_ms);
	pthread_mutex_unlock(&al_mu);
	/* Growing delay: base, 2×base, 4×base … capped. */
	if (shift > AL_SHIFT_MAX)
		shift = AL_SHIFT_MAX;
	delay = (uint64_t)lim->delay_base_ms << shift;
	return delay > lim->delay_max_ms ? lim->delay_max_ms : delay;
}

unsigned
auth_limit_blocks(int64_t now_ms,
		  void (*fn)(const struct auth_limit_block *b, void *arg),
		  void *arg)
{
	struct auth_limit_block b;
	struct al_entry *e;
	char addr[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN + 8];
	unsigned n = 0;

	pthread_mutex_lock(&al_mu);
	for (e = AL.head; e != NULL; e = e->next) {
		if (e->blocked_until_ms <= now_ms)
			continue;
		if (inet_ntop(e->key.family, e->key.net, addr, sizeof(addr)) ==
		    NULL)
			snprintf(addr, sizeof(addr), "?");
		snprintf(net, sizeof(net), "%s/%u", addr, e->key.prefix);
		memset(&b, 0, sizeof(b));
		b.user_scope = e->key.kind == AL_USER;
		b.network = net;
		b.user = e->user;
		b.name = e->key.name;
		b.until_ms = e->blocked_until_ms;
		fn(&b, arg);
		n++;
	}
	pthread_mutex_unlock(&al_mu);
	return n;
}

/* Lift E's block and forget its failures; true if it was blocked. */
static bool
al_lift(struct al_entry *e, int64_t now)
{
	bool was = e->blocked_until_ms > now;

	e->blocked_until_ms = 0;
	e->failures = 0;
	al_store(e, false);
	return was;
}

unsigned
auth_limit_unblock_net(const struct conf_auth_limit *lim,
		       const struct peer_key *addr, int prefix, int64_t now_ms)
{
	struct al_entry *e;
	unsigned n = 0, p, max = addr->family == AF_INET ? 32 : 128;

	if (prefix < 0)
		p = addr->family == AF_INET ? lim->ipv4_prefix
					    : lim->ipv6_prefix;
	else
		p = (unsigned)prefix > max ? max : (unsigned)prefix;
	pthread_mutex_lock(&al_mu);
	for (e = AL.head; e != NULL; e = e->next)
		if (e->key.family == addr->family &&
		    al_prefix_eq(e->key.net, addr->addr,
				 p < e->key.prefix ? p : e->key.prefix) &&
		    al_lift(e, now_ms))
			n++;
	pthread_mutex_unlock(&al_mu);
	return n;
}

unsigned
auth_limit_unblock_user(const char *user, int64_t now_ms)
{
	struct al_entry *e;
	uint8_t name[AUTH_LIMIT_NAME_BYTES];
	unsigned n = 0;

	pthread_mutex_lock(&al_mu);
	if (AL.ready) {
		al_name_hash(user, name);
		for (e = AL.head; e != NULL; e = e->next)
			if (e->key.kind == AL_USER &&
			    memcmp(e->key.name, name, sizeof(name)) == 0 &&
			    al_lift(e, now_ms))
				n++;
	}
	pthread_mutex_unlock(&al_mu);
	return n;
}

/* Everything kept of USER, from every network: dropped, or for an entry
 * with an attempt in flight (never dropped), lifted and cleared. */
uint64_t
auth_limit_purge_user(const char *user, void *arg)
{
	struct al_entry *e, *next;
	uint8_t name[AUTH_LIMIT_NAME_BYTES];
	uint64_t n = 0;

	(void)arg;
	pthread_mutex_lock(&al_mu);
	if (AL.ready) {
		al_name_hash(user, name);
		for (e = AL.head; e != NULL; e = next) {
			next = e->next;
			if (e->key.kind != AL_USER ||
			    memcmp(e->key.name, name, sizeof(name)) != 0)
				continue;
			n++;
			if (e->in_flight > 0) {
				(void)al_lift(e, 0);
				e->good_until_ms = 0;
			} else
				al_drop(e);
		}
	}
	pthread_mutex_unlock(&al_mu);
	return n;
}

/* Entries whose every time (block, window, exemption) ended before
 * OLDER_THAN_MS and with no attempt in flight. */
uint64_t
auth_limit_expire(int64_t older_than_ms, void *arg)
{
	struct al_entry *e, *next;
	uint64_t n = 0;

	(void)arg;
	pthread_mutex_lock(&al_mu);
	for (e = AL.head; e != NULL; e = next) {
		next = e->next;
		if (e->in_flight == 0 && e->blocked_until_ms < older_than_ms &&
		    e->good_until_ms < older_than_ms &&
		    e->window_start_ms < older_than_ms) {
			al_drop(e);
			n++;
		}
	}
	pthread_mutex_unlock(&al_mu);
	return n;
}

size_t
auth_limit_entries(void)
{
	size_t n;

	pthread_mutex_lock(&al_mu);
	n = AL.n;
	pthread_mutex_unlock(&al_mu);
	return n;
}

void
auth_limit_clear(void)
{
	pthread_mutex_lock(&al_mu);
	/* Forgotten here, kept in "state": a restart finds them again. */
	AL.queue = NULL;
	while (AL.head != NULL)
		al_drop(AL.head);
	if (AL.ready)
		idmap_free(&AL.map);
	AL.ready = false;
	pthread_mutex_unlock(&al_mu);
}

struct al_restore {
	const struct conf_auth_limit *lim;
	int64_t now;
};

/* One block kept (DATA: its key, then a configured name).  al_mu held. */
static int
al_restore_cb(int64_t until_ms, const uint8_t *data, size_t len, void *arg)
{
	const struct al_restore *r = arg;
	struct al_entry *e;
	struct al_key k;
	uint64_t id;

	if (len < sizeof(k))
		return 0;
	memcpy(&k, data, sizeof(k));
	if ((k.kind != AL_NET && k.kind != AL_USER) ||
	    (k.family != AF_INET && k.family != AF_INET6) ||
	    k.prefix > al_addr_bytes(k.family) * 8)
		return 0;
	id = al_id(&k);
	if ((e = al_find(&k, id)) == NULL &&
	    (e = al_create(&k, id, r->lim, r->now)) == NULL)
		return 0; /* no room: the rest may still fit */
	if (len > sizeof(k) && e->user == NULL)
		e->user =
		    strndup((const char *)data + sizeof(k), len - sizeof(k));
	e->blocked_until_ms = until_ms;
	e->stored = true;
	return 0;
}

int
auth_limit_restore(struct queue *q, const struct conf_auth_limit *lim,
		   int64_t now_ms, char *err, size_t errlen)
{
	struct al_restore r = { lim, now_ms };
	int rc = -1;

	pthread_mutex_lock(&al_mu);
	if (al_ready() != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* Names hashed alike before and after a restart: a kept block of a
	 * (network, name) matches the same name again. */
	queue_state_subkey(q, AL_NAME_CONTEXT, AL.name_key);
	if (queue_state_load(q, QS_AUTH_BLOCK, now_ms, al_restore_cb, &r, NULL,
			     err, errlen) != 0)
		goto out;
	if (AL.n > 0)
		log_info("auth limit: %zu block(s) kept across the restart",
			 AL.n);
	AL.queue = q;
	rc = 0;
out:
	pthread_mutex_unlock(&al_mu);
	return rc;
}
