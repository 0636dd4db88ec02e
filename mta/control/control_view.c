/*
 * control_view.c — `outpost queue summary|list|show` computed in outpostd
 * (protocol: control.h; the interface: control_int.h).
 * Owns: the walks of the queue for the views and the text and JSON they
 * print (the formats the CLI printed when it read the queue itself).  Must
 * not: write to the queue, print an address in clear (addresses are shown
 * as their keyed hash, evlog_hash, and domain; header text is scrubbed), or
 * stop at a corrupt record (it is listed as corrupt, with its id).
 * Threads: a view thread per command (control_query.c starts it); summary walks
 * in up to CV_SUMMARY_THREADS slices at once, each in its own read
 * transaction.  Output goes straight to the client's socket (fopencookie),
 * with a deadline per write, so nothing big is held in memory.
 */
#define _GNU_SOURCE /* fopencookie */
#include <sys/socket.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "mta/control/control.h"
#include "mta/control/control_int.h"
#include "mta/core/json.h"
#include "mta/core/util.h"
#include "mta/observe/evlog.h"

#define CV_HEADERS_MAX (1u << 20) /* bytes of a header block shown */

/* The first error becomes the final line ("err …"). */
void
cv_errx(struct cv *c, const char *fmt, ...)
{
	va_list ap;
	char text[CONTROL_VIEW_RESULT_MAX - 4];

	if (c->failed)
		return;
	c->failed = true;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(c->v->result, sizeof(c->v->result), "err %s", text);
}

/* Stop a walk: the client went away, or the daemon is stopping. */
bool
cv_stopped(const struct cv *c)
{
	return ferror(c->f) || atomic_load(&c->v->cancel);
}

/* The client's socket and the view's deadline (CLOCK_MONOTONIC ms). */
struct cv_sock {
	int fd;
	int64_t deadline_ms;
};

/* fopencookie: every write reaches the socket, waiting at most
 * CONTROL_TIMEOUT_MS each time it is full, and all of them together
 * CONTROL_VIEW_TIME_MAX_MS (a reader too slow holds a read transaction
 * open, and LMDB cannot reuse pages meanwhile). */
static ssize_t
cv_sock_write(void *cookie, const char *buf, size_t len)
{
	const struct cv_sock *sk = cookie;
	int fd = sk->fd;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	size_t off = 0;
	ssize_t w;

	while (off < len) {
		if (util_mono_ms() > sk->deadline_ms) {
			errno = ETIMEDOUT;
			return -1;
		}
		w = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (poll(&p, 1, CONTROL_TIMEOUT_MS) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return (ssize_t)len;
}

static int
cv_sock_close(void *cookie)
{
	(void)cookie; /* the fd stays the session's */
	return 0;
}

/* Output helpers ------------------------------------------------------ */

/*
 * Print S from the queue (peer-supplied bytes): as a JSON string (quoted,
 * escaped, invalid UTF-8 as U+FFFD), or for a terminal (controls, C1
 * controls and invalid bytes as \xNN, so nothing reaches the terminal as an
 * escape sequence).  Both forms are mta/core/json.h's.
 */
void
cv_text_put(FILE *f, const char *s, bool json)
{
	if (json)
		json_put(f, s);
	else
		json_term_put(f, s);
}

void
cv_json_begin(struct cv_json *j, FILE *f)
{
	j->f = f;
	j->first = true;
	fputc('{', f);
}

void
cv_json_key(struct cv_json *j, const char *key)
{
	if (!j->first)
		fputc(',', j->f);
	j->first = false;
	json_put(j->f, key);
	fputc(':', j->f);
}

void
cv_json_str(struct cv_json *j, const char *key, const char *v)
{
	cv_json_key(j, key);
	json_put(j->f, v);
}

void
cv_json_u64(struct cv_json *j, const char *key, uint64_t v)
{
	cv_json_key(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

void
cv_json_i64(struct cv_json *j, const char *key, int64_t v)
{
	cv_json_key(j, key);
	fprintf(j->f, "%" PRId64, v);
}

void
cv_json_end(struct cv_json *j)
{
	fputc('}', j->f);
}

/* An address shown without the address: keyed hash, lower-case domain. */
struct cv_addr {
	char hash[QUEUE_HASH_HEX_BYTES];
	char *domain; /* malloc'd; "" when the address has no '@' */
};

static int
cv_addr_make(const struct cv *c, const char *addr, struct cv_addr *a)
{
	const char *at = strrchr(addr, '@');
	char *p;

	(void)c; /* the key is the delivery log's (evlog_hash) */
	evlog_hash(addr, a->hash);
	if ((a->domain = strdup(at != NULL ? at + 1 : "")) == NULL)
		return -1;
	for (p = a->domain; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	/* "<jane@example.org>" as given: drop the closing bracket. */
	if ((p = strrchr(a->domain, '>')) != NULL && p[1] == '\0')
		*p = '\0';
	return 0;
}

/* "key": {"hash": "…", "domain": "…"}, or null for the null sender. */
static int
cv_json_addr(const struct cv *c, struct cv_json *j, const char *key,
	     const char *addr)
{
	struct cv_addr a;
	struct cv_json o;

	cv_json_key(j, key);
	if (addr == NULL || *addr == '\0') {
		fputs("null", j->f);
		return 0;
	}
	if (cv_addr_make(c, addr, &a) != 0)
		return -1;
	cv_json_begin(&o, j->f);
	cv_json_str(&o, "hash", a.hash);
	cv_json_str(&o, "domain", a.domain);
	cv_json_end(&o);
	free(a.domain);
	return 0;
}

/* Table form: "HASH  DOMAIN", or "<>" for the null sender. */
static int
cv_text_addr(const struct cv *c, FILE *f, const char *addr)
{
	struct cv_addr a;

	if (addr == NULL || *addr == '\0') {
		fputs("<>", f);
		return 0;
	}
	if (cv_addr_make(c, addr, &a) != 0)
		return -1;
	fprintf(f, "%s  ", a.hash);
	cv_text_put(f, a.domain, false);
	free(a.domain);
	return 0;
}

static const char *
cv_state_name(bool held)
{
	return held ? "held" : "pending";
}

static const char *
cv_rcpt_state_name(uint8_t state)
{
	static const char *names[] = { [QR_PENDING] = "pending",
				       [QR_DELIVERED] = "delivered",
				       [QR_BOUNCED] = "bounced",
				       [QR_EXPIRED] = "expired" };

	return state < sizeof(names) / sizeof(names[0]) ? names[state]
							: "unknown";
}

/* The authenticated user, unless it is address-shaped (then hashed). */
static int
cv_json_user(const struct cv *c, struct cv_json *j, const char *user)
{
	if (user != NULL && strchr(user, '@') != NULL)
		return cv_json_addr(c, j, "user", user);
	cv_json_str(j, "user", user);
	return 0;
}

static int
cv_text_user(const struct cv *c, FILE *f, const char *user)
{
	if (user == NULL) {
		fputs("-", f);
		return 0;
	}
	if (strchr(user, '@') != NULL)
		return cv_text_addr(c, f, user);
	cv_text_put(f, user, false);
	return 0;
}

/* The schedule index ---------------------------------------------------- */

/* The schedule index's entries (struct cv_sched_index: control_int.h). */
static int
cv_sched_cb(int64_t due_ms, uint64_t id, unsigned flags, void *arg)
{
	struct cv_sched_index *x = arg;
	struct cv_sched *nv;

	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 4096;

		if ((nv = realloc(x->v, cap * sizeof(*nv))) == NULL)
			return -2;
		x->v = nv;
		x->cap = cap;
	}
	x->v[x->n].id = id;
	x->v[x->n].due_ms = due_ms;
	x->v[x->n].held = (flags & QUEUE_F_HELD) != 0;
	x->n++;
	return 0;
}

static int
cv_sched_cmp(const void *a, const void *b)
{
	const struct cv_sched *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Sort the index by id: LSD radix sort, 16 bits a pass, passes in which
 * every id has the same digit skipped (ids are time-ordered: their high
 * bits rarely differ).  A million entries take a few tens of ms, a third
 * of what qsort() takes.  -1: out of memory.
 */
static int
cv_sched_sort(struct cv_sched_index *x)
{
	struct cv_sched *tmp, *src = x->v, *dst, *t;
	size_t *count, i, pos, sum;
	unsigned shift, d;

	if ((tmp = malloc(x->n * sizeof(*tmp))) == NULL)
		return -1;
	if ((count = malloc(65536 * sizeof(*count))) == NULL) {
		free(tmp);
		return -1;
	}
	dst = tmp;
	for (shift = 0; shift < 64; shift += 16) {
		memset(count, 0, 65536 * sizeof(*count));
		for (i = 0; i < x->n; i++)
			count[(src[i].id >> shift) & 0xffff]++;
		if (count[(src[0].id >> shift) & 0xffff] == x->n)
			continue; /* one digit for all: nothing to do */
		for (sum = 0, d = 0; d < 65536; d++) {
			pos = count[d];
			count[d] = sum;
			sum += pos;
		}
		for (i = 0; i < x->n; i++)
			dst[count[(src[i].id >> shift) & 0xffff]++] = src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != x->v)
		memcpy(x->v, src, x->n * sizeof(*src));
	free(count);
	free(tmp);
	return 0;
}

/* Read the schedule index (no decryption: fast), sorted by id. */
int
cv_sched_load(struct cv *c, struct cv_sched_index *x, const char *what)
{
	char err[512] = "";
	size_t i;
	int rc;

	memset(x, 0, sizeof(*x));
	if ((rc = queue_sched_walk(c->queue, cv_sched_cb, x, err,
				   sizeof(err))) != 0) {
		cv_errx(c, "%s: %s", what,
			rc == -2 || err[0] == '\0' ? "out of memory" : err);
		free(x->v);
		x->v = NULL;
		return -1;
	}
	for (i = 1; i < x->n; i++)
		if (x->v[i - 1].id > x->v[i].id)
			break;
	if (i < x->n && cv_sched_sort(x) != 0) {
		cv_errx(c, "%s: out of memory", what);
		free(x->v);
		x->v = NULL;
		return -1;
	}
	return 0;
}

/* The entry of ID, or NULL (a message the index does not know yet). */
static const struct cv_sched *
cv_sched_find(const struct cv_sched_index *x, uint64_t id)
{
	struct cv_sched key = { .id = id };

	if (x->n == 0)
		return NULL;
	return bsearch(&key, x->v, x->n, sizeof(*x->v), cv_sched_cmp);
}

/* Held and due time of ENV: the index's, else the envelope's own. */
void
cv_env_state(const struct queue_envelope *env, const struct cv_sched *e,
	     bool *held, int64_t *due_ms)
{
	*held = e != NULL ? e->held : (env->flags & QUEUE_F_HELD) != 0;
	*due_ms = e != NULL ? e->due_ms : env->next_attempt_ms;
}

/* The recipient domain of ADDR, lower-case, without '>' or a final dot. */
void
cv_domain_of(const char *addr, char *out, size_t outlen)
{
	const char *at = strrchr(addr, '@');
	size_t n = 0;

	if (at != NULL)
		for (at++; *at != '\0' && *at != '>' && n + 1 < outlen; at++)
			out[n++] = *at >= 'A' && *at <= 'Z'
				       ? (char)(*at - 'A' + 'a')
				       : *at;
	if (n > 0 && out[n - 1] == '.')
		n--;
	out[n] = '\0';
}

/* "45s", "12m", "3h05m", "2d04h" */
void
cv_age_fmt(int64_t ms, char *buf, size_t size)
{
	int64_t s = ms > 0 ? ms / 1000 : 0;

	if (s < 60)
		snprintf(buf, size, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, size, "%" PRId64 "m", s / 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600,
			 s / 60 % 60);
	else
		snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", s / 86400,
			 s / 3600 % 24);
}

/* queue list ---------------------------------------------------------- */

struct cv_list {
	struct cv *c;
	struct cv_sched_index idx;
	size_t pos; /* cursor into idx: the walk goes in id order too */
	char domain[CV_DOMAIN_MAX + 1]; /* --domain, lower-case */
};

/* Does ENV pass --domain and --deferred? */
static bool
cv_list_match(const struct cv_list *l, const struct queue_envelope *env)
{
	char dom[CV_DOMAIN_MAX + 1];
	bool dom_ok = l->c->domain == NULL, deferred = false;
	uint32_t i;

	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		if (env->rcpts[i].attempts > 0)
			deferred = true;
		if (!dom_ok) {
			cv_domain_of(env->rcpts[i].addr, dom, sizeof(dom));
			dom_ok = strcmp(dom, l->domain) == 0;
		}
	}
	return dom_ok && (deferred || !l->c->deferred);
}

static int
cv_list_cb(const struct queue_envelope *env, void *arg)
{
	struct cv_list *l = arg;
	struct cv *c = l->c;
	const struct cv_sched *e = NULL;
	struct cv_json j;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40];
	int64_t due;
	bool held;

	while (l->pos < l->idx.n && l->idx.v[l->pos].id < env->id)
		l->pos++;
	if (l->pos < l->idx.n && l->idx.v[l->pos].id == env->id)
		e = &l->idx.v[l->pos];
	if (cv_stopped(c))
		return 1;
	cv_env_state(env, e, &held, &due);
	if ((c->held && !held) || !cv_list_match(l, env))
		return 0;
	c->count++;
	queue_id_format(env->id, id);
	json_time_fmt(env->created_ms, c->json, created, sizeof(created));
	json_time_fmt(due, c->json, next, sizeof(next));
	if (c->json) {
		cv_json_begin(&j, c->f);
		cv_json_str(&j, "id", id);
		cv_json_str(&j, "created", created);
		cv_json_i64(&j, "created_ms", env->created_ms);
		cv_json_u64(&j, "size", env->size);
		cv_json_u64(&j, "nrcpts", env->nrcpts);
		cv_json_str(&j, "state", cv_state_name(held));
		cv_json_str(&j, "next_attempt", next);
		cv_json_i64(&j, "next_attempt_ms", due);
		if (cv_json_addr(c, &j, "sender", env->sender) != 0)
			return -1;
		cv_json_end(&j);
		fputc('\n', c->f);
		return 0;
	}
	fprintf(c->f,
		"%-16s  %-19s  %10" PRIu64 "  %5" PRIu32 "  %-7s  %-19s  ", id,
		created, env->size, env->nrcpts, cv_state_name(held), next);
	if (cv_text_addr(c, c->f, env->sender) != 0)
		return -1;
	fputc('\n', c->f);
	return 0;
}

/* A record that cannot be opened: its row says so, and the walk goes on
 * (`outpost queue delete ID` removes it). */
static int
cv_list_bad(uint64_t id, const char *why, void *arg)
{
	struct cv_list *l = arg;
	struct cv *c = l->c;
	struct cv_json j;
	char hex[QUEUE_ID_HEX_BYTES];

	if (cv_stopped(c))
		return 1;
	if (c->domain != NULL || c->held || c->deferred)
		return 0; /* nothing known to match on */
	queue_id_format(id, hex);
	c->count++;
	if (c->json) {
		cv_json_begin(&j, c->f);
		cv_json_str(&j, "id", hex);
		cv_json_str(&j, "state", "corrupt");
		cv_json_str(&j, "error", why);
		cv_json_end(&j);
		fputc('\n', c->f);
		return 0;
	}
	fprintf(c->f, "%-16s  %-19s  %10s  %5s  %-7s  %-19s  ", hex, "-", "-",
		"-", "corrupt", "-");
	cv_text_put(c->f, why, false);
	fputc('\n', c->f);
	return 0;
}

static int
cv_queue_list(struct cv *c)
{
	struct cv_list l;
	char err[512] = "";
	int rc;

	memset(&l, 0, sizeof(l));
	l.c = c;
	if (c->domain != NULL)
		util_domain_lower(c->domain, l.domain, sizeof(l.domain));
	if (cv_sched_load(c, &l.idx, "queue list") != 0)
		return CV_ERR;
	if (!c->json)
		fprintf(c->f, "%-16s  %-19s  %10s  %5s  %-7s  %-19s  %s\n",
			"ID", "CREATED (UTC)", "SIZE", "RCPTS", "STATE",
			"NEXT ATTEMPT", "SENDER (HASH  DOMAIN)");
	rc = queue_walk_checked(c->queue, 0, UINT64_MAX, cv_list_cb,
				cv_list_bad, &l, err, sizeof(err));
	free(l.idx.v);
	if (rc < 0 || (rc != 0 && !cv_stopped(c))) {
		cv_errx(c, "queue list: %s",
			err[0] != '\0' ? err : "out of memory");
		return CV_ERR;
	}
	return 0;
}

/* queue show ---------------------------------------------------------- */

/* The header block of a message, read from its body. */
struct cv_hdrs {
	char *buf;
	size_t len, cap;
	bool truncated; /* longer than CV_HEADERS_MAX */
};

/* Body chunks until the empty line that ends the header block. */
static int
cv_hdrs_chunk(const uint8_t *data, size_t len, void *arg)
{
	struct cv_hdrs *h = arg;
	size_t from = h->len > 3 ? h->len - 3 : 0, i;
	char *nb;

	if (len > CV_HEADERS_MAX - h->len) {
		len = CV_HEADERS_MAX - h->len;
		h->truncated = true;
	}
	if (h->len + len + 1 > h->cap) {
		size_t cap = h->len + len + 1 + 4096;

		if ((nb = realloc(h->buf, cap)) == NULL)
			return -1;
		h->buf = nb;
		h->cap = cap;
	}
	memcpy(h->buf + h->len, data, len);
	h->len += len;
	h->buf[h->len] = '\0';
	/* An empty first line: no header at all. */
	if (h->len >= 1 &&
	    (h->buf[0] == '\n' ||
	     (h->buf[0] == '\r' && h->len >= 2 && h->buf[1] == '\n'))) {
		h->len = 0;
		h->buf[0] = '\0';
		return 1;
	}
	for (i = from; i + 1 < h->len; i++) {
		if (h->buf[i] != '\n')
			continue;
		if (h->buf[i + 1] == '\n' ||
		    (h->buf[i + 1] == '\r' && i + 2 < h->len &&
		     h->buf[i + 2] == '\n')) {
			h->len = i + 1; /* keep the last field's line end */
			h->buf[h->len] = '\0';
			return 1;
		}
	}
	return h->truncated ? 1 : 0;
}

/* May C appear in the local part of an address (dot-atom, UTF-8)? */
static bool
cv_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch >= 0x80 ||
	       strchr("!#$%&'*+-/=?^_`{|}~.", ch) != NULL;
}

static bool
cv_dtext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch >= 0x80 || ch == '-' ||
	       ch == '.' || ch == '_';
}

struct cv_str {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
cv_str_add(struct cv_str *s, const char *p, size_t n)
{
	char *np;

	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;

		if ((np = realloc(s->p, cap)) == NULL) {
			s->oom = true;
			return;
		}
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
}

/*
 * S (LEN bytes of header text) with every address-shaped run — a local part
 * (dot-atom or quoted string) '@' a domain (or [literal]) — replaced by
 * "hash:HASH@domain", HASH as `outpost hash` and the logs make it.  Errs on
 * the side of hiding (a Message-ID is hidden too).  Returns a malloc'd
 * string, or NULL (out of memory).
 */
static char *
cv_scrub(const struct cv *c, const char *s, size_t len)
{
	struct cv_str out = { 0 };
	char hash[QUEUE_HASH_HEX_BYTES], dom[CV_DOMAIN_MAX + 1], *addr;
	const char *at;
	size_t i = 0, a, ls, de, k;

	(void)c;
	cv_str_add(&out, "", 0);
	while (i < len && (at = memchr(s + i, '@', len - i)) != NULL) {
		a = (size_t)(at - s);
		ls = a;
		if (ls > i && s[ls - 1] == '"') {
			for (k = ls - 1; k > i && s[k - 1] != '"'; k--)
				;
			ls = k > i ? k - 1 : ls;
		} else
			while (ls > i && cv_atext((unsigned char)s[ls - 1]))
				ls--;
		de = a + 1;
		if (de < len && s[de] == '[') {
			while (de < len && s[de] != ']' && s[de] != '\n')
				de++;
			de += de < len && s[de] == ']';
		} else
			while (de < len && cv_dtext((unsigned char)s[de]))
				de++;
		while (de > a + 1 && s[de - 1] == '.')
			de--;
		if (ls == a || de == a + 1) {
			cv_str_add(&out, s + i, a + 1 - i);
			i = a + 1;
			continue;
		}
		cv_str_add(&out, s + i, ls - i);
		if ((addr = strndup(s + ls, de - ls)) == NULL) {
			out.oom = true;
			break;
		}
		evlog_hash(addr, hash);
		cv_domain_of(addr, dom, sizeof(dom));
		free(addr);
		cv_str_add(&out, "hash:", 5);
		cv_str_add(&out, hash, strlen(hash));
		cv_str_add(&out, "@", 1);
		cv_str_add(&out, dom, strlen(dom));
		i = de;
	}
	if (i < len)
		cv_str_add(&out, s + i, len - i);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}

/* The header block, scrubbed: physical lines (text) or unfolded fields
 * (a JSON array).  0, or -1 out of memory. */
static int
cv_hdrs_print(const struct cv *c, const struct cv_hdrs *h, bool json)
{
	struct cv_str field = { 0 };
	const char *p = h->buf, *end = h->buf + h->len, *nl;
	size_t n;
	bool first = true;
	char *line, *q;

	if (json)
		fputc('[', c->f);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (json) {
			/* A line starting with white space continues the
			 * field (RFC 5322 unfolding). */
			if (field.len > 0 && n > 0 && p[0] != ' ' &&
			    p[0] != '\t') {
				if ((line = cv_scrub(c, field.p, field.len)) ==
				    NULL)
					goto oom;
				fputs(first ? "" : ",", c->f);
				cv_text_put(c->f, line, true);
				free(line);
				first = false;
				field.len = 0;
			}
			cv_str_add(&field, p, n);
		} else {
			if ((line = cv_scrub(c, p, n)) == NULL)
				goto oom;
			for (q = line; *q != '\0'; q++)
				if (*q == '\t')
					*q = ' ';
			fputs("  ", c->f);
			cv_text_put(c->f, line, false);
			fputc('\n', c->f);
			free(line);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (json && field.len > 0) {
		if ((line = cv_scrub(c, field.p, field.len)) == NULL)
			goto oom;
		fputs(first ? "" : ",", c->f);
		cv_text_put(c->f, line, true);
		free(line);
	}
	if (json)
		fputc(']', c->f);
	if (field.oom)
		goto oom;
	free(field.p);
	return 0;
oom:
	free(field.p);
	return -1;
}

static void
cv_json_flags(struct cv_json *j, uint32_t flags)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = { { QUEUE_F_8BITMIME, "8bitmime" },
		      { QUEUE_F_SMTPUTF8, "smtputf8" },
		      { QUEUE_F_HELD, "held" },
		      { QUEUE_F_DSN, "dsn" } };
	size_t i;
	bool first = true;

	cv_json_key(j, "flags");
	fputc('[', j->f);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].bit))
			continue;
		fprintf(j->f, "%s\"%s\"", first ? "" : ",", names[i].name);
		first = false;
	}
	fputc(']', j->f);
}

/* The envelope as shown: the held bit and due time from the index. */
struct cv_show {
	const struct queue_envelope *env;
	bool held;
	int64_t due_ms;
	const struct cv_hdrs *hdrs; /* --headers, else NULL */
};

/*
 * When recipient RI of SH's message is next attempted, or -1 (not pending,
 * or held by an operator): the message's due time, or later, when its
 * destination is paused (the scheduler's suspensions, read on the loop by
 * control_query.c: "DOMAIN UNTIL_MS REASON" lines) and holds it till then.
 */
static int64_t
cv_show_next(const struct cv *c, const struct cv_show *sh, uint32_t ri)
{
	const struct queue_rcpt *r = &sh->env->rcpts[ri];
	const char *l = c->v->suspensions;
	char dom[CV_DOMAIN_MAX + 1];
	size_t n;
	int64_t until;

	if (r->state != QR_PENDING || sh->held)
		return -1;
	cv_domain_of(r->addr, dom, sizeof(dom));
	n = strlen(dom);
	for (; l != NULL && *l != '\0';
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "") {
		if (strncmp(l, dom, n) != 0 || l[n] != ' ')
			continue;
		until = strtoll(l + n + 1, NULL, 10);
		return until > sh->due_ms ? until : sh->due_ms;
	}
	return sh->due_ms;
}

/* Recipient RI's last reply, scrubbed of addresses (cv_scrub): malloc'd,
 * or NULL (none, or out of memory). */
static char *
cv_show_reply(const struct cv *c, const struct queue_rcpt *r)
{
	if (r->last_reply == NULL || r->last_reply[0] == '\0')
		return NULL;
	return cv_scrub(c, r->last_reply, strlen(r->last_reply));
}

static int
cv_show_json(struct cv *c, const struct cv_show *sh)
{
	const struct queue_envelope *env = sh->env;
	struct cv_json j, r;
	struct cv_addr a;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40], rnext[40];
	char *reply;
	int64_t at;
	uint32_t i, flags;

	queue_id_format(env->id, id);
	json_time_fmt(env->created_ms, true, created, sizeof(created));
	json_time_fmt(sh->due_ms, true, next, sizeof(next));
	flags = (env->flags & ~QUEUE_F_HELD) | (sh->held ? QUEUE_F_HELD : 0);
	cv_json_begin(&j, c->f);
	cv_json_str(&j, "id", id);
	cv_json_str(&j, "created", created);
	cv_json_i64(&j, "created_ms", env->created_ms);
	cv_json_u64(&j, "size", env->size);
	cv_json_u64(&j, "chunks", env->nchunks);
	cv_json_str(&j, "state", cv_state_name(sh->held));
	cv_json_flags(&j, flags);
	cv_json_str(&j, "next_attempt", next);
	cv_json_i64(&j, "next_attempt_ms", sh->due_ms);
	if (cv_json_addr(c, &j, "sender", env->sender) != 0 ||
	    cv_json_user(c, &j, env->user) != 0)
		return -1;
	cv_json_str(&j, "client", env->client);
	cv_json_str(&j, "helo", env->helo);
	cv_json_u64(&j, "nrcpts", env->nrcpts);
	cv_json_key(&j, "recipients");
	fputc('[', c->f);
	for (i = 0; i < env->nrcpts; i++) {
		if (i > 0)
			fputc(',', c->f);
		cv_json_begin(&r, c->f);
		if (cv_addr_make(c, env->rcpts[i].addr, &a) != 0)
			return -1;
		cv_json_str(&r, "hash", a.hash);
		cv_json_str(&r, "domain", a.domain);
		free(a.domain);
		cv_json_str(&r, "state",
			    cv_rcpt_state_name(env->rcpts[i].state));
		cv_json_u64(&r, "attempts", env->rcpts[i].attempts);
		cv_json_u64(&r, "last_code", env->rcpts[i].last_code);
		reply = cv_show_reply(c, &env->rcpts[i]);
		cv_json_str(&r, "last_reply", reply);
		free(reply);
		at = cv_show_next(c, sh, i);
		if (at >= 0) {
			json_time_fmt(at, true, rnext, sizeof(rnext));
			cv_json_str(&r, "next_attempt", rnext);
			cv_json_i64(&r, "next_attempt_ms", at);
		}
		cv_json_end(&r);
	}
	fputc(']', c->f);
	if (sh->hdrs != NULL) {
		cv_json_key(&j, "headers");
		if (cv_hdrs_print(c, sh->hdrs, true) != 0)
			return -1;
		if (sh->hdrs->truncated) {
			cv_json_key(&j, "headers_truncated");
			fputs("true", c->f);
		}
	}
	cv_json_end(&j);
	fputc('\n', c->f);
	return 0;
}

static int
cv_show_text(struct cv *c, const struct cv_show *sh)
{
	const struct queue_envelope *env = sh->env;
	char id[QUEUE_ID_HEX_BYTES], created[40], next[40], *reply;
	int64_t at;
	uint32_t i;

	queue_id_format(env->id, id);
	json_time_fmt(env->created_ms, true, created, sizeof(created));
	json_time_fmt(sh->due_ms, true, next, sizeof(next));
	fprintf(c->f,
		"id:            %s\n"
		"created:       %s\n"
		"size:          %" PRIu64 " bytes in %" PRIu32 " chunk%s\n"
		"state:         %s\n"
		"flags:        %s%s%s%s%s\n"
		"next attempt:  %s\n"
		"sender:        ",
		id, created, env->size, env->nchunks,
		env->nchunks == 1 ? "" : "s", cv_state_name(sh->held),
		env->flags & QUEUE_F_8BITMIME ? " 8bitmime" : "",
		env->flags & QUEUE_F_SMTPUTF8 ? " smtputf8" : "",
		sh->held ? " held" : "", env->flags & QUEUE_F_DSN ? " dsn" : "",
		(env->flags & ~QUEUE_F_HELD) == 0 && !sh->held ? " -" : "",
		next);
	if (cv_text_addr(c, c->f, env->sender) != 0)
		return -1;
	fputs("\nuser:          ", c->f);
	if (cv_text_user(c, c->f, env->user) != 0)
		return -1;
	fputs("\nclient:        ", c->f);
	cv_text_put(c->f, env->client != NULL ? env->client : "-", false);
	fputs("\nhelo:          ", c->f);
	cv_text_put(c->f, env->helo != NULL ? env->helo : "-", false);
	fprintf(c->f, "\nrecipients:    %" PRIu32 "\n", env->nrcpts);
	if (env->nrcpts > 0)
		fprintf(c->f, "  %-9s  %8s  %4s  %-32s  %s\n", "STATE",
			"ATTEMPTS", "LAST", "HASH", "DOMAIN");
	for (i = 0; i < env->nrcpts; i++) {
		fprintf(c->f, "  %-9s  %8u  ",
			cv_rcpt_state_name(env->rcpts[i].state),
			env->rcpts[i].attempts);
		if (env->rcpts[i].last_code != 0)
			fprintf(c->f, "%4u  ", env->rcpts[i].last_code);
		else
			fprintf(c->f, "%4s  ", "-");
		if (cv_text_addr(c, c->f, env->rcpts[i].addr) != 0)
			return -1;
		fputc('\n', c->f);
		if ((at = cv_show_next(c, sh, i)) >= 0) {
			json_time_fmt(at, true, next, sizeof(next));
			fprintf(c->f, "    next attempt: %s\n", next);
		}
		if ((reply = cv_show_reply(c, &env->rcpts[i])) != NULL) {
			fputs("    last reply:   ", c->f);
			cv_text_put(c->f, reply, false);
			fputc('\n', c->f);
			free(reply);
		}
	}
	if (sh->hdrs != NULL) {
		fprintf(c->f, "headers%s:\n",
			sh->hdrs->truncated ? " (truncated)" : "");
		if (cv_hdrs_print(c, sh->hdrs, false) != 0)
			return -1;
	}
	return 0;
}

static int
cv_queue_show(struct cv *c)
{
	struct cv_sched_index idx;
	struct queue_envelope env;
	struct cv_hdrs hdrs = { 0 };
	struct cv_show sh;
	char err[512], id_hex[QUEUE_ID_HEX_BYTES];
	uint64_t id;
	int rc;

	id = c->v->id;
	queue_id_format(id, id_hex);
	if (cv_sched_load(c, &idx, "queue show") != 0)
		return CV_ERR;
	if ((rc = queue_envelope_get(c->queue, id, &env, err, sizeof(err))) ==
	    1) {
		cv_errx(c, "queue show: %s: no such message", id_hex);
		free(idx.v);
		return CV_ERR;
	}
	if (rc != 0) {
		/* queue delete ID still removes it. */
		cv_errx(c, "queue show: %s: corrupt record (%s)", id_hex, err);
		free(idx.v);
		return CV_ERR;
	}
	memset(&sh, 0, sizeof(sh));
	sh.env = &env;
	cv_env_state(&env, cv_sched_find(&idx, id), &sh.held, &sh.due_ms);
	free(idx.v);
	if (c->headers) {
		rc = queue_body_read(c->queue, id, cv_hdrs_chunk, &hdrs, err,
				     sizeof(err));
		if (rc != 0 || hdrs.buf == NULL) {
			cv_errx(c, "queue show: %s",
				rc == 1   ? "no such message"
				: rc != 0 ? err
					  : "empty message");
			queue_envelope_clear(&env);
			free(hdrs.buf);
			return CV_ERR;
		}
		sh.hdrs = &hdrs;
	}
	rc = c->json ? cv_show_json(c, &sh) : cv_show_text(c, &sh);
	queue_envelope_clear(&env);
	if (hdrs.buf != NULL) {
		sodium_memzero(hdrs.buf, hdrs.cap);
		free(hdrs.buf);
	}
	if (rc != 0) {
		cv_errx(c, "queue show: out of memory");
		return CV_ERR;
	}
	c->count = 1;
	return CV_OK;
}

/* The view ---------------------------------------------------------------- */

int
control_view_run(struct queue *q, const struct conf *conf, int fd,
		 struct control_view *v)
{
	static const cookie_io_functions_t io = { .write = cv_sock_write,
						  .close = cv_sock_close };
	struct cv_sock sock = { fd, util_mono_ms() + CONTROL_VIEW_TIME_MAX_MS };
	struct cv c;
	int rc;
	bool broken;

	memset(&c, 0, sizeof(c));
	c.queue = q;
	c.conf = conf;
	c.v = v;
	c.json = v->json;
	c.held = v->held;
	c.deferred = v->deferred;
	c.headers = v->headers;
	c.domain = v->domain[0] != '\0' ? v->domain : NULL;
	if ((c.f = fopencookie(&sock, "w", io)) == NULL) {
		snprintf(v->result, sizeof(v->result), "err out of memory");
		return 0;
	}
	/* Whole lines at a time, a buffer's worth per write. */
	setvbuf(c.f, NULL, _IOFBF, 65536);
	switch (v->kind) {
	case CVK_SUMMARY:
		rc = cv_queue_summary(&c);
		break;
	case CVK_LIST:
		rc = cv_queue_list(&c);
		break;
	default:
		rc = cv_queue_show(&c);
		break;
	}
	broken = fflush(c.f) != 0 || ferror(c.f);
	fclose(c.f);
	if (broken)
		return -1;
	if (atomic_load(&v->cancel)) {
		snprintf(v->result, sizeof(v->result), "err outpostd stopping");
		return 0;
	}
	if (rc == CV_OK && !c.failed)
		snprintf(v->result, sizeof(v->result), "ok %lu", c.count);
	else if (!c.failed)
		snprintf(v->result, sizeof(v->result), "err internal error");
	return 0;
}
