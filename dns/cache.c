/*
 * cache.c — the DNS answer cache: raw-answer walker, decoding of answers
 * into entries, TTL policy, index by (type, canonical name), LRU eviction.
 * Owns: struct dns_entry and all it points to.  Must not: touch c-ares
 * channels or libevent (resolver.c does), read one answer byte without a
 * bounds check.  Thread: the owning resolver's loop, no locks.
 * Invariants: a PENDING entry is always indexed and never evicted; the LRU
 * list holds exactly the indexed READY entries; an entry is freed with its
 * last reference (index, in-flight query, lookups).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/cache_int.h"

#define DNS_HEADER_BYTES   12
#define DNS_BUCKETS_START  64
#define DNS_TTL_MAX_SIGNED 0x7fffffffu /* RFC 2181 8 */

/*
 * A length-checked reader (c-ares ares_buf shape), named as every byte
 * reader of the tree (queue/record.c record_rd_*, dkim/dmarc.c dmarc_rd_*,
 * dkim/msg.c msg_rd_*): each fetch checks the bytes left and fails (-1)
 * without moving; a tag lets a caller roll back a partly read item.  LEN
 * ends this reader (an RDATA sub-reader ends sooner); DATA is the whole
 * message, since compression pointers may point anywhere before the name.
 */
struct dns_rd {
	const unsigned char *data;
	size_t len;
	size_t off;
	size_t tag;
};

static void
dns_rd_init(struct dns_rd *b, const unsigned char *data, size_t len)
{
	b->data = data;
	b->len = len;
	b->off = 0;
	b->tag = 0;
}

static void
dns_rd_tag(struct dns_rd *b)
{
	b->tag = b->off;
}

static void
dns_rd_rollback(struct dns_rd *b)
{
	b->off = b->tag;
}

static size_t
dns_rd_left(const struct dns_rd *b)
{
	return b->len - b->off;
}

static int
dns_rd_be16(struct dns_rd *b, uint16_t *v)
{
	if (dns_rd_left(b) < 2)
		return -1;
	*v = (uint16_t)(b->data[b->off] << 8 | b->data[b->off + 1]);
	b->off += 2;
	return 0;
}

static int
dns_rd_be32(struct dns_rd *b, uint32_t *v)
{
	if (dns_rd_left(b) < 4)
		return -1;
	*v = (uint32_t)b->data[b->off] << 24 |
	     (uint32_t)b->data[b->off + 1] << 16 |
	     (uint32_t)b->data[b->off + 2] << 8 | (uint32_t)b->data[b->off + 3];
	b->off += 4;
	return 0;
}

/* dns_rd_sub — a reader over the next N bytes of B; B moves past them. */
static int
dns_rd_sub(struct dns_rd *b, size_t n, struct dns_rd *sub)
{
	if (dns_rd_left(b) < n)
		return -1;
	sub->data = b->data;
	sub->off = b->off;
	sub->tag = b->off;
	sub->len = b->off + n;
	b->off += n;
	return 0;
}

/*
 * dns_rd_skip_name — step over an encoded name, validating all of it: label
 * lengths (the 0x40/0x80 forms are refused), compression pointers (each
 * must point strictly before the label that holds it, which also bounds the
 * walk), and the 255-octet total.  On failure B is rolled back.
 */
static int
dns_rd_skip_name(struct dns_rd *b)
{
	size_t start = b->off, pos = b->off, total = 0, end = 0;
	bool jumped = false;
	uint8_t n;

	for (;;) {
		/* After a jump, reads stay within the message before POS. */
		if (pos >= (jumped ? end : b->len))
			goto fail;
		n = b->data[pos];
		if ((n & 0xc0) == 0xc0) {
			size_t to;

			if (pos + 1 >= (jumped ? end : b->len))
				goto fail;
			to = (size_t)(n & 0x3f) << 8 | b->data[pos + 1];
			if (!jumped)
				b->off = pos + 2;
			if (to >= pos)
				goto fail;
			jumped = true;
			end = pos;
			pos = to;
			continue;
		}
		if ((n & 0xc0) != 0)
			goto fail;
		total += (size_t)n + 1;
		if (total > DNS_WIRE_NAME_MAX)
			goto fail;
		if (n == 0) {
			if (!jumped)
				b->off = pos + 1;
			return 0;
		}
		if (pos + 1 + n > (jumped ? end : b->len))
			goto fail;
		pos += 1 + (size_t)n;
	}
fail:
	b->off = start;
	return -1;
}

static uint32_t
dns_ttl_sane(uint32_t ttl)
{
	return ttl > DNS_TTL_MAX_SIGNED ? 0 : ttl;
}

/* One resource record: owner, fixed fields, and a reader over its RDATA. */
struct dns_rr {
	uint16_t type, class;
	uint32_t ttl;
	struct dns_rd rdata;
};

static int
dns_rd_rr(struct dns_rd *b, struct dns_rr *rr)
{
	uint16_t rdlen;

	dns_rd_tag(b);
	if (dns_rd_skip_name(b) != 0 || dns_rd_be16(b, &rr->type) != 0 ||
	    dns_rd_be16(b, &rr->class) != 0 || dns_rd_be32(b, &rr->ttl) != 0 ||
	    dns_rd_be16(b, &rdlen) != 0 ||
	    dns_rd_sub(b, rdlen, &rr->rdata) != 0)
		goto fail;
	rr->ttl = dns_ttl_sane(rr->ttl);
	return 0;
fail:
	dns_rd_rollback(b);
	return -1;
}

/* SOA RDATA: MNAME, RNAME, then exactly five 32-bit numbers. */
static int
dns_soa_minimum(struct dns_rd *rdata, uint32_t *minimum)
{
	uint32_t v[5];
	size_t i;

	if (dns_rd_skip_name(rdata) != 0 || dns_rd_skip_name(rdata) != 0)
		return -1;
	for (i = 0; i < 5; i++)
		if (dns_rd_be32(rdata, &v[i]) != 0)
			return -1;
	if (dns_rd_left(rdata) != 0)
		return -1;
	*minimum = dns_ttl_sane(v[4]);
	return 0;
}

int
dns_answer_walk(const unsigned char *buf, size_t len,
		struct dns_answer_info *info)
{
	struct dns_rd b;
	struct dns_rr rr;
	uint16_t flags, qtype, qclass;
	unsigned i;

	memset(info, 0, sizeof(*info));
	if (buf == NULL)
		return -1;
	dns_rd_init(&b, buf, len);
	if (dns_rd_be16(&b, &info->id) != 0 || dns_rd_be16(&b, &flags) != 0 ||
	    dns_rd_be16(&b, &info->qdcount) != 0 ||
	    dns_rd_be16(&b, &info->ancount) != 0 ||
	    dns_rd_be16(&b, &info->nscount) != 0 ||
	    dns_rd_be16(&b, &info->arcount) != 0)
		return -1;
	if ((flags & 0x8000) == 0) /* QR: a query, not an answer */
		return -1;
	info->rcode = flags & 0x0f;
	info->tc = (flags & 0x0200) != 0;
	info->ad = (flags & 0x0020) != 0;
	for (i = 0; i < info->qdcount; i++) {
		if (dns_rd_skip_name(&b) != 0 || dns_rd_be16(&b, &qtype) != 0 ||
		    dns_rd_be16(&b, &qclass) != 0)
			return -1;
		if (i == 0)
			info->qtype = qtype;
	}
	for (i = 0; i < info->ancount; i++) {
		if (dns_rd_rr(&b, &rr) != 0)
			return -1;
		if (!info->has_ttl || rr.ttl < info->ttl_min)
			info->ttl_min = rr.ttl;
		info->has_ttl = true;
		if (rr.type == info->qtype)
			info->nmatch++;
	}
	for (i = 0; i < info->nscount; i++) {
		uint32_t minimum;

		if (dns_rd_rr(&b, &rr) != 0)
			return -1;
		if (rr.type != DNS_RR_SOA || info->has_soa)
			continue;
		if (dns_soa_minimum(&rr.rdata, &minimum) != 0)
			return -1;
		info->has_soa = true;
		info->soa_ttl = rr.ttl;
		info->soa_min = minimum;
	}
	return 0;
}

/* Names -------------------------------------------------------------- */

static void
dns_err_set(char *err, size_t errlen, const char *msg)
{
	/* Truncation of a reason is harmless: it is only ever displayed. */
	if (errlen > 0)
		(void)snprintf(err, errlen, "%s", msg);
}

/* Letters, digits, '-', and '_' (underscored labels: _dmarc, _domainkey). */
static bool
dns_char_is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int
dns_name_normalize(const char *in, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	size_t len, i, label = 0;
	unsigned char c;

	if (in == NULL || outlen < DNS_NAME_MAX + 1) {
		dns_err_set(err, errlen, "no name");
		return -1;
	}
	len = strnlen(in, DNS_NAME_MAX + 2);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0) {
		dns_err_set(err, errlen, "empty name");
		return -1;
	}
	if (len > DNS_NAME_MAX) {
		dns_err_set(err, errlen, "name longer than 253 octets");
		return -1;
	}
	for (i = 0; i < len; i++) {
		c = (unsigned char)in[i];
		if (c == '.') {
			if (label == 0) {
				dns_err_set(err, errlen, "empty label");
				return -1;
			}
			if (in[i - 1] == '-') {
				dns_err_set(err, errlen,
					    "label ends with a hyphen");
				return -1;
			}
			label = 0;
			out[i] = '.';
			continue;
		}
		if (!dns_char_is_ldh(c)) {
			dns_err_set(err, errlen, "invalid character in name");
			return -1;
		}
		if (c == '-' && label == 0) {
			dns_err_set(err, errlen, "label starts with a hyphen");
			return -1;
		}
		if (++label > DNS_LABEL_MAX) {
			dns_err_set(err, errlen, "label longer than 63 octets");
			return -1;
		}
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	if (label == 0) {
		dns_err_set(err, errlen, "empty label");
		return -1;
	}
	if (in[len - 1] == '-') {
		dns_err_set(err, errlen, "label ends with a hyphen");
		return -1;
	}
	out[len] = '\0';
	return 0;
}

bool
dns_name_is_ip_literal(const char *name)
{
	struct in_addr a4;

	if (name[0] == '[' || strchr(name, ':') != NULL)
		return true;
	return inet_pton(AF_INET, name, &a4) == 1;
}

/* Entries ------------------------------------------------------------ */

static void
dns_entry_data_free(struct dns_entry *e)
{
	size_t i;

	for (i = 0; i < e->nmx; i++)
		free(e->mx[i].name);
	free(e->mx);
	e->mx = NULL;
	e->nmx = 0;
	for (i = 0; i < e->ntxts; i++)
		free(e->txts[i]);
	free(e->txts);
	free(e->lens);
	e->txts = NULL;
	e->lens = NULL;
	e->ntxts = 0;
	free(e->addrs);
	e->addrs = NULL;
	e->naddrs = 0;
	for (i = 0; i < e->ntlsa; i++)
		free((void *)e->tlsa[i].data);
	free(e->tlsa);
	e->tlsa = NULL;
	e->ntlsa = 0;
}

void
dns_entry_ref(struct dns_entry *e)
{
	e->refs++;
}

void
dns_entry_unref(struct dns_entry *e)
{
	if (--e->refs > 0)
		return;
	dns_entry_data_free(e);
	free(e);
}

void
dns_entry_wait(struct dns_entry *e, struct dns_waiter *w, void *owner)
{
	w->owner = owner;
	w->prev = NULL;
	w->next = e->waiters;
	if (e->waiters != NULL)
		e->waiters->prev = w;
	e->waiters = w;
	w->linked = true;
}

void
dns_entry_unwait(struct dns_entry *e, struct dns_waiter *w)
{
	if (!w->linked)
		return;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		e->waiters = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->linked = false;
}

uint32_t
dns_entry_ttl_left(const struct dns_entry *e, uint64_t now_ms)
{
	uint64_t left;

	if (e->state != DNS_ENTRY_READY || now_ms >= e->expires_ms)
		return 0;
	left = (e->expires_ms - now_ms + 999) / 1000;
	return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

/* Index and LRU ------------------------------------------------------ */

static uint32_t
dns_cache_hash(uint16_t type, const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	h = (h ^ (type & 0xff)) * 16777619u;
	h = (h ^ (type >> 8)) * 16777619u;
	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h;
}

static void
dns_lru_unlink(struct dns_cache *c, struct dns_entry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else if (c->lru_head == e)
		c->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else if (c->lru_tail == e)
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void
dns_lru_push(struct dns_cache *c, struct dns_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head != NULL)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (c->lru_tail == NULL)
		c->lru_tail = e;
}

/* dns_cache_drop — take E out of the index and the LRU; drop the index's
 * reference (E may be freed). */
static void
dns_cache_drop(struct dns_cache *c, struct dns_entry *e)
{
	struct dns_entry **pp;

	if (!e->indexed)
		return;
	for (pp = &c->buckets[e->hash & (c->nbuckets - 1)]; *pp != NULL;
	     pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	e->hnext = NULL;
	if (e->state == DNS_ENTRY_READY)
		dns_lru_unlink(c, e);
	e->indexed = false;
	c->count--;
	dns_entry_unref(e);
}

static void
dns_cache_grow(struct dns_cache *c)
{
	struct dns_entry **nb, *e, *next;
	size_t n = c->nbuckets * 2, i;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return; /* longer chains, still correct */
	for (i = 0; i < c->nbuckets; i++)
		for (e = c->buckets[i]; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	free(c->buckets);
	c->buckets = nb;
	c->nbuckets = n;
}

int
dns_cache_init(struct dns_cache *c, size_t max,
	       const struct dns_cache_policy *pol)
{
	memset(c, 0, sizeof(*c));
	c->nbuckets = DNS_BUCKETS_START;
	if ((c->buckets = calloc(c->nbuckets, sizeof(*c->buckets))) == NULL)
		return -1;
	c->max = max > 0 ? max : 1;
	c->pol = *pol;
	return 0;
}

void
dns_cache_fini(struct dns_cache *c)
{
	size_t i;

	if (c->buckets == NULL)
		return;
	for (i = 0; i < c->nbuckets; i++)
		while (c->buckets[i] != NULL)
			dns_cache_drop(c, c->buckets[i]);
	free(c->buckets);
	c->buckets = NULL;
}

struct dns_entry *
dns_cache_get(struct dns_cache *c, uint16_t type, const char *name,
	      uint64_t now_ms)
{
	struct dns_entry *e;
	uint32_t h = dns_cache_hash(type, name);

	for (e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->type == type &&
		    strcmp(e->name, name) == 0)
			break;
	if (e == NULL || e->state == DNS_ENTRY_PENDING)
		return e;
	if (now_ms >= e->expires_ms) {
		dns_cache_drop(c, e);
		return NULL;
	}
	dns_lru_unlink(c, e);
	dns_lru_push(c, e);
	return e;
}

struct dns_entry *
dns_cache_add(struct dns_cache *c, uint16_t type, const char *name)
{
	struct dns_entry *e;
	size_t slot;

	if (strlen(name) > DNS_NAME_MAX || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	while (c->count >= c->max && c->lru_tail != NULL)
		dns_cache_drop(c, c->lru_tail);
	if (c->count >= c->nbuckets * 2)
		dns_cache_grow(c);
	e->type = type;
	memcpy(e->name, name, strlen(name) + 1);
	e->hash = dns_cache_hash(type, name);
	e->state = DNS_ENTRY_PENDING;
	e->result = DNS_TEMPFAIL;
	e->refs = 1; /* the index's */
	e->indexed = true;
	slot = e->hash & (c->nbuckets - 1);
	e->hnext = c->buckets[slot];
	c->buckets[slot] = e;
	c->count++;
	return e;
}

/* Decoding answers into entries -------------------------------------- */

static int
dns_mx_cmp(const void *a, const void *b)
{
	const struct dns_mx_host *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return strcmp(x->name, y->name); /* deterministic; shuffled later */
}

/*
 * MX semantics (RFC 5321 5.1, RFC 7505): a lone "MX 0 ." is a null MX; a
 * null MX among others is ignored; IP literals and names that are not
 * host names are dropped, and nothing left is NODATA with a reason.
 */
static enum dns_result
dns_entry_fill_mx(struct dns_entry *e, const unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL, *m;
	char name[DNS_NAME_MAX + 1], why[DNS_ERR_MAX];
	size_t n = 0, len;
	int rc;

	if ((rc = ares_parse_mx_reply(abuf, alen, &mx)) != ARES_SUCCESS) {
		if (rc == ARES_ENODATA)
			return DNS_NODATA;
		dns_err_set(e->err, sizeof(e->err), "malformed MX answer");
		return DNS_TEMPFAIL;
	}
	for (m = mx; m != NULL; m = m->next)
		n++;
	if (n == 0) /* 1.18: success with no MX (a CNAME alone) */
		return DNS_NODATA;
	if (n == 1 && mx->priority == 0 && mx->host[0] == '\0') {
		ares_free_data(mx);
		dns_err_set(e->err, sizeof(e->err),
			    "null MX: the domain accepts no mail (RFC 7505)");
		return DNS_NULLMX;
	}
	if ((e->mx = calloc(n, sizeof(*e->mx))) == NULL) {
		ares_free_data(mx);
		dns_err_set(e->err, sizeof(e->err), "out of memory");
		return DNS_TEMPFAIL;
	}
	for (m = mx; m != NULL; m = m->next) {
		/* c-ares never ends a name with '.' unless a label held a
		 * NUL octet that cut its string short: refuse that too. */
		len = strlen(m->host);
		if (len == 0 || m->host[len - 1] == '.' ||
		    dns_name_normalize(m->host, name, sizeof(name), why,
				       sizeof(why)) != 0 ||
		    dns_name_is_ip_literal(name))
			continue;
		if ((e->mx[e->nmx].name = strdup(name)) == NULL) {
			ares_free_data(mx);
			dns_err_set(e->err, sizeof(e->err), "out of memory");
			return DNS_TEMPFAIL;
		}
		e->mx[e->nmx++].pref = m->priority;
	}
	ares_free_data(mx);
	if (e->nmx == 0) {
		dns_err_set(
		    e->err, sizeof(e->err),
		    "no usable MX host (IP literals and bad names dropped)");
		return DNS_NODATA;
	}
	qsort(e->mx, e->nmx, sizeof(*e->mx), dns_mx_cmp);
	return DNS_OK;
}

/* TXT: each record's character-strings joined into one byte string. */
static enum dns_result
dns_entry_fill_txt(struct dns_entry *e, const unsigned char *abuf, int alen)
{
	struct ares_txt_ext *txt = NULL, *t, *start;
	size_t n = 0, i, len;
	int rc;

	if ((rc = ares_parse_txt_reply_ext(abuf, alen, &txt)) != ARES_SUCCESS) {
		if (rc == ARES_ENODATA)
			return DNS_NODATA;
		dns_err_set(e->err, sizeof(e->err), "malformed TXT answer");
		return DNS_TEMPFAIL;
	}
	for (t = txt; t != NULL; t = t->next)
		if (t->record_start || t == txt)
			n++;
	if (n == 0) /* 1.18: success with no TXT (a CNAME alone) */
		return DNS_NODATA;
	if ((e->txts = calloc(n, sizeof(*e->txts))) == NULL ||
	    (e->lens = calloc(n, sizeof(*e->lens))) == NULL)
		goto nomem;
	for (t = txt, i = 0; t != NULL && i < n; i++) {
		start = t;
		len = t->length;
		for (t = t->next; t != NULL && !t->record_start; t = t->next)
			len += t->length;
		if ((e->txts[i] = malloc(len + 1)) == NULL)
			goto nomem;
		e->ntxts = i + 1;
		e->lens[i] = len;
		len = 0;
		for (; start != t; start = start->next) {
			if (start->length > 0)
				memcpy(e->txts[i] + len, start->txt,
				       start->length);
			len += start->length;
		}
		e->txts[i][len] = '\0';
	}
	ares_free_data(txt);
	return DNS_OK;
nomem:
	ares_free_data(txt);
	dns_err_set(e->err, sizeof(e->err), "out of memory");
	return DNS_TEMPFAIL;
}

/* TLSA (RFC 6698 2.1): usage, selector, matching type, then the data;
 * records of another type (a CNAME on the way) are passed over. */
static enum dns_result
dns_entry_fill_tlsa(struct dns_entry *e, const unsigned char *abuf, int alen)
{
	struct dns_answer_info ai;
	struct dns_rd b;
	struct dns_rr rr;
	uint16_t v;
	unsigned i;

	if (dns_answer_walk(abuf, (size_t)alen, &ai) != 0)
		goto bad;
	if (ai.ancount == 0)
		return DNS_NODATA;
	if ((e->tlsa = calloc(ai.ancount, sizeof(*e->tlsa))) == NULL) {
		dns_err_set(e->err, sizeof(e->err), "out of memory");
		return DNS_TEMPFAIL;
	}
	dns_rd_init(&b, abuf, (size_t)alen);
	for (i = 0; i < 6; i++)
		if (dns_rd_be16(&b, &v) != 0)
			goto bad;
	for (i = 0; i < ai.qdcount; i++)
		if (dns_rd_skip_name(&b) != 0 || dns_rd_be16(&b, &v) != 0 ||
		    dns_rd_be16(&b, &v) != 0)
			goto bad;
	for (i = 0; i < ai.ancount; i++) {
		struct dns_tlsa *t = &e->tlsa[e->ntlsa];
		size_t n;
		uint8_t *d;

		if (dns_rd_rr(&b, &rr) != 0)
			goto bad;
		if (rr.type != DNS_RR_TLSA || rr.class != 1)
			continue;
		n = dns_rd_left(&rr.rdata);
		if (n < 4) /* three octets and at least one of data */
			goto bad;
		if ((d = malloc(n - 3)) == NULL) {
			dns_err_set(e->err, sizeof(e->err), "out of memory");
			return DNS_TEMPFAIL;
		}
		t->usage = rr.rdata.data[rr.rdata.off];
		t->selector = rr.rdata.data[rr.rdata.off + 1];
		t->mtype = rr.rdata.data[rr.rdata.off + 2];
		memcpy(d, rr.rdata.data + rr.rdata.off + 3, n - 3);
		t->data = d;
		t->len = n - 3;
		e->ntlsa++;
	}
	return e->ntlsa > 0 ? DNS_OK : DNS_NODATA;
bad:
	dns_err_set(e->err, sizeof(e->err), "malformed TLSA answer");
	return DNS_TEMPFAIL;
}

static enum dns_result
dns_entry_fill_addr(struct dns_entry *e, const unsigned char *abuf, int alen)
{
	struct ares_addrttl a4[DNS_ADDRS_MAX];
	struct ares_addr6ttl a6[DNS_ADDRS_MAX];
	int n = DNS_ADDRS_MAX, rc, i;

	if (e->type == DNS_RR_A)
		rc = ares_parse_a_reply(abuf, alen, NULL, a4, &n);
	else
		rc = ares_parse_aaaa_reply(abuf, alen, NULL, a6, &n);
	if (rc == ARES_SUCCESS && n == 0)
		rc = ARES_ENODATA;
	if (rc != ARES_SUCCESS) {
		if (rc == ARES_ENODATA)
			return DNS_NODATA;
		dns_err_set(e->err, sizeof(e->err), "malformed address answer");
		return DNS_TEMPFAIL;
	}
	if ((e->addrs = calloc((size_t)n, sizeof(*e->addrs))) == NULL) {
		dns_err_set(e->err, sizeof(e->err), "out of memory");
		return DNS_TEMPFAIL;
	}
	for (i = 0; i < n; i++) {
		if (e->type == DNS_RR_A) {
			struct sockaddr_in *sin = (void *)&e->addrs[i];

			sin->sin_family = AF_INET;
			sin->sin_addr = a4[i].ipaddr;
		} else {
			struct sockaddr_in6 *sin6 = (void *)&e->addrs[i];

			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, &a6[i].ip6addr,
			       sizeof(sin6->sin6_addr));
		}
	}
	e->naddrs = (size_t)n;
	return DNS_OK;
}

static uint32_t
dns_ttl_positive(const struct dns_cache_policy *pol,
		 const struct dns_answer_info *ai)
{
	uint32_t ttl = ai->has_ttl ? ai->ttl_min : 0;

	if (ttl > pol->max_ttl)
		ttl = pol->max_ttl;
	if (ttl < pol->min_ttl)
		ttl = pol->min_ttl;
	return ttl;
}

static uint32_t
dns_ttl_negative(const struct dns_cache_policy *pol,
		 const struct dns_answer_info *ai)
{
	uint32_t ttl;

	if (!ai->has_soa)
		return 0; /* RFC 2308 5: no SOA, no negative caching */
	ttl = ai->soa_ttl < ai->soa_min ? ai->soa_ttl : ai->soa_min;
	return ttl < pol->negative_ttl_max ? ttl : pol->negative_ttl_max;
}

/*
 * dns_entry_decide — the result and TTL of an answer.  Long only because
 * it is one switch over every c-ares status and every record type.
 */
static enum dns_result
dns_entry_decide(struct dns_cache *c, struct dns_entry *e, int status,
		 const unsigned char *abuf, int alen, uint32_t *ttl)
{
	struct dns_answer_info ai;
	enum dns_result res;

	*ttl = c->pol.tempfail_ttl;
	switch (status) {
	case ARES_SUCCESS:
	case ARES_ENODATA:
	case ARES_ENOTFOUND:
		break;
	case ARES_ETIMEOUT:
		dns_err_set(e->err, sizeof(e->err), "timeout");
		return DNS_TEMPFAIL;
	case ARES_ESERVFAIL:
		dns_err_set(e->err, sizeof(e->err), "SERVFAIL");
		return DNS_TEMPFAIL;
	case ARES_EREFUSED:
		dns_err_set(e->err, sizeof(e->err), "REFUSED");
		return DNS_TEMPFAIL;
	case ARES_ECONNREFUSED:
		/* c-ares 1.18 also ends SERVFAIL and REFUSED this way, after
		 * trying every server. */
		dns_err_set(
		    e->err, sizeof(e->err),
		    "no server answered (SERVFAIL, REFUSED or unreachable)");
		return DNS_TEMPFAIL;
	default:
		dns_err_set(e->err, sizeof(e->err), ares_strerror(status));
		return DNS_TEMPFAIL;
	}
	if (abuf == NULL || alen <= 0 ||
	    dns_answer_walk(abuf, (size_t)alen, &ai) != 0) {
		dns_err_set(e->err, sizeof(e->err), "malformed answer");
		return DNS_TEMPFAIL;
	}
	e->ad = ai.ad;
	if (status == ARES_ENOTFOUND) {
		dns_err_set(e->err, sizeof(e->err), "no such domain");
		*ttl = dns_ttl_negative(&c->pol, &ai);
		return DNS_NXDOMAIN;
	}
	res = DNS_NODATA;
	if (status == ARES_SUCCESS) {
		switch (e->type) {
		case DNS_RR_MX:
			res = dns_entry_fill_mx(e, abuf, alen);
			break;
		case DNS_RR_TXT:
			res = dns_entry_fill_txt(e, abuf, alen);
			break;
		case DNS_RR_TLSA:
			res = dns_entry_fill_tlsa(e, abuf, alen);
			break;
		default:
			res = dns_entry_fill_addr(e, abuf, alen);
			break;
		}
	}
	switch (res) {
	case DNS_TEMPFAIL:
		dns_entry_data_free(e);
		return res;
	case DNS_NODATA:
		if (e->err[0] != '\0') /* all MX hosts dropped: data said so */
			*ttl = dns_ttl_positive(&c->pol, &ai);
		else
			*ttl = dns_ttl_negative(&c->pol, &ai);
		break;
	default:
		*ttl = dns_ttl_positive(&c->pol, &ai);
		break;
	}
	/* RFC 5321 5.1: no MX but the domain exists: the implicit MX. */
	if (res == DNS_NODATA && e->type == DNS_RR_MX && e->err[0] == '\0') {
		if ((e->mx = calloc(1, sizeof(*e->mx))) == NULL ||
		    (e->mx[0].name = strdup(e->name)) == NULL) {
			free(e->mx);
			e->mx = NULL;
			dns_err_set(e->err, sizeof(e->err), "out of memory");
			*ttl = c->pol.tempfail_ttl;
			return DNS_TEMPFAIL;
		}
		e->nmx = 1;
		e->implicit = true;
		return DNS_OK;
	}
	if (res == DNS_NODATA && e->err[0] == '\0')
		dns_err_set(e->err, sizeof(e->err), "no record of that type");
	return res;
}

void
dns_cache_complete(struct dns_cache *c, struct dns_entry *e, int status,
		   const unsigned char *abuf, int alen, uint64_t now_ms)
{
	uint32_t ttl;

	dns_entry_data_free(e);
	e->err[0] = '\0';
	e->implicit = false;
	e->ad = false;
	e->result = dns_entry_decide(c, e, status, abuf, alen, &ttl);
	e->ttl = ttl;
	e->expires_ms =
	    c->pol.keep_none ? now_ms : now_ms + (uint64_t)ttl * 1000;
	e->state = DNS_ENTRY_READY;
	if (e->indexed)
		dns_lru_push(c, e);
}
