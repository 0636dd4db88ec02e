/*
 * record.c — the envelope record: TLV encode, strict decode, and the
 * length-checked reader (record_rd_*) used for every untrusted byte.
 * Owns: the plaintext layout of "env" values and the memory of a decoded
 * struct queue_envelope (queue_envelope_clear()).  Must not: touch LMDB or
 * keys (queue.c, crypt.c do).  Thread: pure functions, any thread.
 * Invariants: the decoder never reads outside its input, never trusts a
 * length before checking it against what is left, and on failure leaves
 * the envelope zeroed with nothing allocated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/record_int.h"

#define RECORD_RCPT_MIN_BYTES 4 /* ET_RCPT, len, RT_ADDR, len */

/* The reader ---------------------------------------------------------- */

void
record_rd_init(struct record_rd *b, const void *data, size_t len)
{
	b->data = data;
	b->len = data != NULL ? len : 0;
	b->off = 0;
	b->tag = 0;
}

size_t
record_rd_left(const struct record_rd *b)
{
	return b->len - b->off;
}

void
record_rd_tag(struct record_rd *b)
{
	b->tag = b->off;
}

void
record_rd_rollback(struct record_rd *b)
{
	b->off = b->tag;
}

int
record_rd_bytes(struct record_rd *b, size_t n, const uint8_t **p)
{
	if (n > record_rd_left(b))
		return -1;
	*p = b->data + b->off;
	b->off += n;
	return 0;
}

int
record_rd_u8(struct record_rd *b, uint8_t *v)
{
	const uint8_t *p;

	if (record_rd_bytes(b, 1, &p) != 0)
		return -1;
	*v = p[0];
	return 0;
}

int
record_rd_be16(struct record_rd *b, uint16_t *v)
{
	const uint8_t *p;

	if (record_rd_bytes(b, 2, &p) != 0)
		return -1;
	*v = (uint16_t)((unsigned)p[0] << 8 | p[1]);
	return 0;
}

int
record_rd_be32(struct record_rd *b, uint32_t *v)
{
	const uint8_t *p;

	if (record_rd_bytes(b, 4, &p) != 0)
		return -1;
	*v = record_be32_get(p);
	return 0;
}

int
record_rd_be64(struct record_rd *b, uint64_t *v)
{
	const uint8_t *p;

	if (record_rd_bytes(b, 8, &p) != 0)
		return -1;
	*v = record_be64_get(p);
	return 0;
}

int
record_rd_varint(struct record_rd *b, uint64_t *v)
{
	uint64_t x = 0;
	size_t i, start = b->off;
	uint8_t c;

	for (i = 0; i < RECORD_VARINT_MAX_BYTES; i++) {
		if (record_rd_u8(b, &c) != 0)
			goto fail;
		/* The tenth byte may only carry the top bit of a uint64. */
		if (i == RECORD_VARINT_MAX_BYTES - 1 && c > 1)
			goto fail;
		x |= (uint64_t)(c & 0x7f) << (7 * i);
		if ((c & 0x80) == 0) {
			/* Minimal: no trailing zero group (except "0"). */
			if (c == 0 && i > 0)
				goto fail;
			*v = x;
			return 0;
		}
	}
fail:
	b->off = start;
	return -1;
}

int
record_rd_sub(struct record_rd *b, size_t n, struct record_rd *sub)
{
	const uint8_t *p;

	if (record_rd_bytes(b, n, &p) != 0)
		return -1;
	record_rd_init(sub, p, n);
	return 0;
}

void
record_be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void
record_be64_put(uint8_t *p, uint64_t v)
{
	record_be32_put(p, (uint32_t)(v >> 32));
	record_be32_put(p + 4, (uint32_t)v);
}

uint32_t
record_be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint64_t
record_be64_get(const uint8_t *p)
{
	return (uint64_t)record_be32_get(p) << 32 | record_be32_get(p + 4);
}

/* The writer ---------------------------------------------------------- */

struct record_out {
	uint8_t *p;
	size_t len, cap;
	int bad; /* out of memory or over the limit: later puts do nothing */
};

static void
record_out_put(struct record_out *o, const void *data, size_t n)
{
	size_t cap;
	uint8_t *np;

	if (o->bad)
		return;
	if (n > RECORD_TOTAL_MAX_BYTES - o->len) {
		o->bad = 1;
		return;
	}
	if (o->len + n > o->cap) {
		cap = o->cap != 0 ? o->cap : 256;
		while (cap < o->len + n)
			cap *= 2;
		if ((np = realloc(o->p, cap)) == NULL) {
			o->bad = 1;
			return;
		}
		o->p = np;
		o->cap = cap;
	}
	if (n > 0)
		memcpy(o->p + o->len, data, n);
	o->len += n;
}

/* Minimal unsigned LEB128 into BUF; returns its length (1..10). */
static size_t
record_varint_encode(uint8_t buf[RECORD_VARINT_MAX_BYTES], uint64_t v)
{
	size_t n = 0;

	do {
		buf[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			buf[n] |= 0x80;
		n++;
	} while (v != 0);
	return n;
}

static void
record_out_varint(struct record_out *o, uint64_t v)
{
	uint8_t tmp[RECORD_VARINT_MAX_BYTES];

	record_out_put(o, tmp, record_varint_encode(tmp, v));
}

static void
record_out_tlv(struct record_out *o, uint8_t tag, const void *v, size_t n)
{
	record_out_put(o, &tag, 1);
	record_out_varint(o, n);
	record_out_put(o, v, n);
}

static void
record_out_tlv_be64(struct record_out *o, uint8_t tag, uint64_t v)
{
	uint8_t tmp[8];

	record_be64_put(tmp, v);
	record_out_tlv(o, tag, tmp, sizeof(tmp));
}

static void
record_out_tlv_be32(struct record_out *o, uint8_t tag, uint32_t v)
{
	uint8_t tmp[4];

	record_be32_put(tmp, v);
	record_out_tlv(o, tag, tmp, sizeof(tmp));
}

static void
record_out_tlv_be16(struct record_out *o, uint8_t tag, uint16_t v)
{
	uint8_t tmp[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	record_out_tlv(o, tag, tmp, sizeof(tmp));
}

static void
record_out_tlv_varint(struct record_out *o, uint8_t tag, uint64_t v)
{
	uint8_t tmp[RECORD_VARINT_MAX_BYTES];

	record_out_tlv(o, tag, tmp, record_varint_encode(tmp, v));
}

/* A string TLV; NULL writes nothing (the field is absent). */
static int
record_out_tlv_str(struct record_out *o, uint8_t tag, const char *s,
		   const char *what, char *err, size_t errlen)
{
	size_t n;

	if (s == NULL)
		return 0;
	if ((n = strlen(s)) > RECORD_STRING_MAX_BYTES) {
		(void)snprintf(err, errlen, "%s: %zu bytes, limit %u", what, n,
			       RECORD_STRING_MAX_BYTES);
		return -1;
	}
	record_out_tlv(o, tag, s, n);
	return 0;
}

static int
record_rcpt_encode(struct record_out *o, const struct queue_rcpt *r, uint32_t i,
		   char *err, size_t errlen)
{
	if (r->addr == NULL) {
		(void)snprintf(err, errlen, "recipient %u: no address", i);
		return -1;
	}
	if (r->state > QR_EXPIRED) {
		(void)snprintf(err, errlen, "recipient %u: unknown state %u", i,
			       r->state);
		return -1;
	}
	if (record_out_tlv_str(o, RT_ADDR, r->addr, "recipient address", err,
			       errlen) != 0)
		return -1;
	if (r->state != QR_PENDING)
		record_out_tlv(o, RT_STATE, &r->state, 1);
	if (r->attempts != 0)
		record_out_tlv_be16(o, RT_ATTEMPTS, r->attempts);
	if (r->last_code != 0)
		record_out_tlv_be16(o, RT_LAST_CODE, r->last_code);
	if (r->notify != 0)
		record_out_tlv(o, RT_NOTIFY, &r->notify, 1);
	if (record_out_tlv_str(o, RT_ORCPT, r->orcpt, "recipient orcpt", err,
			       errlen) != 0)
		return -1;
	return record_out_tlv_str(o, RT_LAST_REPLY, r->last_reply,
				  "recipient reply", err, errlen);
}

int
record_envelope_encode(const struct queue_envelope *env, uint8_t **out,
		       size_t *outlen, char *err, size_t errlen)
{
	struct record_out o = { 0 }, rc = { 0 };
	uint8_t version = RECORD_ENVELOPE_VERSION;
	uint32_t i;

	*out = NULL;
	*outlen = 0;
	if (env->sender == NULL) {
		(void)snprintf(err, errlen, "envelope without sender");
		goto fail;
	}
	if (env->nrcpts > RECORD_RCPTS_MAX) {
		(void)snprintf(err, errlen, "%u recipients, limit %u",
			       env->nrcpts, RECORD_RCPTS_MAX);
		goto fail;
	}
	if (env->nrcpts > 0 && env->rcpts == NULL) {
		(void)snprintf(err, errlen, "recipients missing");
		goto fail;
	}
	record_out_put(&o, &version, 1);
	record_out_tlv_be64(&o, ET_ID, env->id);
	record_out_tlv_be64(&o, ET_CREATED, (uint64_t)env->created_ms);
	record_out_tlv_be64(&o, ET_NEXT, (uint64_t)env->next_attempt_ms);
	record_out_tlv_be32(&o, ET_FLAGS, env->flags);
	record_out_tlv_be64(&o, ET_SIZE, env->size);
	record_out_tlv_be32(&o, ET_NCHUNKS, env->nchunks);
	if (record_out_tlv_str(&o, ET_SENDER, env->sender, "sender", err,
			       errlen) != 0 ||
	    record_out_tlv_str(&o, ET_USER, env->user, "user", err, errlen) !=
		0 ||
	    record_out_tlv_str(&o, ET_CLIENT, env->client, "client", err,
			       errlen) != 0 ||
	    record_out_tlv_str(&o, ET_HELO, env->helo, "helo", err, errlen) !=
		0 ||
	    record_out_tlv_str(&o, ET_MSGID, env->msgid, "message-id", err,
			       errlen) != 0 ||
	    record_out_tlv_str(&o, ET_CAMPAIGN, env->campaign, "campaign", err,
			       errlen) != 0 ||
	    record_out_tlv_str(&o, ET_ENVID, env->envid, "envid", err,
			       errlen) != 0)
		goto fail;
	record_out_tlv_varint(&o, ET_NRCPTS, env->nrcpts);
	for (i = 0; i < env->nrcpts && !o.bad; i++) {
		rc.len = 0;
		if (record_rcpt_encode(&rc, &env->rcpts[i], i, err, errlen) !=
		    0)
			goto fail;
		if (rc.bad)
			break;
		record_out_tlv(&o, ET_RCPT, rc.p, rc.len);
	}
	if (o.bad || rc.bad) {
		(void)snprintf(
		    err, errlen,
		    "envelope too large (limit %u bytes) or out of memory",
		    RECORD_TOTAL_MAX_BYTES);
		goto fail;
	}
	free(rc.p);
	*out = o.p;
	*outlen = o.len;
	return 0;
fail:
	free(rc.p);
	free(o.p);
	return -1;
}

/* The decoder --------------------------------------------------------- */

/* Next tag and value; the value is a sub-reader, already consumed. */
static int
record_tlv_next(struct record_rd *b, uint8_t *tag, struct record_rd *val,
		const char *where, char *err, size_t errlen)
{
	uint64_t n;
	size_t at = b->off;

	record_rd_tag(b);
	if (record_rd_u8(b, tag) != 0 || record_rd_varint(b, &n) != 0) {
		record_rd_rollback(b);
		(void)snprintf(err, errlen,
			       "%s: bad tag or length at offset %zu", where,
			       at);
		return -1;
	}
	if (n > record_rd_left(b) || record_rd_sub(b, (size_t)n, val) != 0) {
		(void)snprintf(
		    err, errlen,
		    "%s: tag %u at offset %zu: length %llu past the end "
		    "(%zu left)",
		    where, *tag, at, (unsigned long long)n, record_rd_left(b));
		record_rd_rollback(b);
		return -1;
	}
	return 0;
}

/* A known tag may appear once (tags < 32 only; ET_RCPT is exempt). */
static int
record_tag_once(uint32_t *seen, uint8_t tag, const char *where, char *err,
		size_t errlen)
{
	uint32_t bit = 1u << tag;

	if (*seen & bit) {
		(void)snprintf(err, errlen, "%s: tag %u repeated", where, tag);
		return -1;
	}
	*seen |= bit;
	return 0;
}

static int
record_val_fixed(struct record_rd *val, size_t width, uint64_t *v,
		 const char *where, uint8_t tag, char *err, size_t errlen)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	int rc = -1;

	if (record_rd_left(val) != width) {
		(void)snprintf(err, errlen, "%s: tag %u: %zu bytes, want %zu",
			       where, tag, record_rd_left(val), width);
		return -1;
	}
	switch (width) {
	case 1:
		if ((rc = record_rd_u8(val, &u8)) == 0)
			*v = u8;
		break;
	case 2:
		if ((rc = record_rd_be16(val, &u16)) == 0)
			*v = u16;
		break;
	case 4:
		if ((rc = record_rd_be32(val, &u32)) == 0)
			*v = u32;
		break;
	case 8:
		rc = record_rd_be64(val, v);
		break;
	}
	return rc;
}

/* Copy a string value: no NUL inside, at most 64 KiB. */
static int
record_val_str(struct record_rd *val, char **out, const char *what, char *err,
	       size_t errlen)
{
	size_t n = record_rd_left(val);
	const uint8_t *p;

	if (n > RECORD_STRING_MAX_BYTES) {
		(void)snprintf(err, errlen, "%s: %zu bytes, limit %u", what, n,
			       RECORD_STRING_MAX_BYTES);
		return -1;
	}
	if (record_rd_bytes(val, n, &p) != 0)
		return -1;
	if (memchr(p, '\0', n) != NULL) {
		(void)snprintf(err, errlen, "%s: contains NUL", what);
		return -1;
	}
	if ((*out = malloc(n + 1)) == NULL) {
		(void)snprintf(err, errlen, "%s: out of memory", what);
		return -1;
	}
	memcpy(*out, p, n);
	(*out)[n] = '\0';
	return 0;
}

static int
record_rcpt_decode(struct record_rd *b, struct queue_rcpt *r, uint32_t i,
		   char *err, size_t errlen)
{
	struct record_rd val;
	char where[48];
	uint32_t seen = 0;
	uint64_t v;
	uint8_t tag;

	if (snprintf(where, sizeof(where), "recipient %u", i) >=
	    (int)sizeof(where))
		where[0] = '\0';
	while (record_rd_left(b) > 0) {
		if (record_tlv_next(b, &tag, &val, where, err, errlen) != 0)
			return -1;
		if (tag == 0 || tag > RT__LAST)
			continue; /* unknown or reserved: skipped */
		if (record_tag_once(&seen, tag, where, err, errlen) != 0)
			return -1;
		switch ((enum record_rcpt_tag)tag) {
		case RT_ADDR:
			if (record_val_str(&val, &r->addr, where, err,
					   errlen) != 0)
				return -1;
			break;
		case RT_STATE:
			if (record_val_fixed(&val, 1, &v, where, tag, err,
					     errlen) != 0)
				return -1;
			if (v > QR_EXPIRED) {
				(void)snprintf(err, errlen,
					       "%s: unknown state %u", where,
					       (unsigned)v);
				return -1;
			}
			r->state = (uint8_t)v;
			break;
		case RT_ATTEMPTS:
			if (record_val_fixed(&val, 2, &v, where, tag, err,
					     errlen) != 0)
				return -1;
			r->attempts = (uint16_t)v;
			break;
		case RT_LAST_CODE:
			if (record_val_fixed(&val, 2, &v, where, tag, err,
					     errlen) != 0)
				return -1;
			r->last_code = (uint16_t)v;
			break;
		case RT_LAST_REPLY:
			if (record_val_str(&val, &r->last_reply, where, err,
					   errlen) != 0)
				return -1;
			break;
		case RT_NOTIFY:
			if (record_val_fixed(&val, 1, &v, where, tag, err,
					     errlen) != 0)
				return -1;
			if (v == 0 || v > 0x0f ||
			    ((v & QUEUE_NOTIFY_NEVER) &&
			     v != QUEUE_NOTIFY_NEVER)) {
				(void)snprintf(err, errlen,
					       "%s: bad notify bits 0x%02x",
					       where, (unsigned)v);
				return -1;
			}
			r->notify = (uint8_t)v;
			break;
		case RT_ORCPT:
			if (record_val_str(&val, &r->orcpt, where, err,
					   errlen) != 0)
				return -1;
			break;
		default:
			break;
		}
	}
	if (r->addr == NULL) {
		(void)snprintf(err, errlen, "%s: no address", where);
		return -1;
	}
	return 0;
}

/* ET_NRCPTS: a varint filling its value, bounded by what is left. */
static int
record_nrcpts_decode(struct record_rd *val, const struct record_rd *b,
		     struct queue_envelope *env, char *err, size_t errlen)
{
	uint64_t n;

	if (record_rd_varint(val, &n) != 0 || record_rd_left(val) != 0) {
		(void)snprintf(err, errlen, "recipient count: bad varint");
		return -1;
	}
	if (n > RECORD_RCPTS_MAX ||
	    n > record_rd_left(b) / RECORD_RCPT_MIN_BYTES) {
		(void)snprintf(
		    err, errlen,
		    "recipient count %llu: over the limit or the record "
		    "(%zu bytes left)",
		    (unsigned long long)n, record_rd_left(b));
		return -1;
	}
	if (n > 0 && (env->rcpts = calloc(n, sizeof(*env->rcpts))) == NULL) {
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	env->nrcpts = (uint32_t)n;
	return 0;
}

/*
 * One switch over the envelope tags; long because each tag has its own
 * width and bounds, and splitting it would only scatter that table.
 */
int
record_envelope_decode(const uint8_t *p, size_t len, struct queue_envelope *env,
		       char *err, size_t errlen)
{
	struct record_rd b, val;
	uint32_t seen = 0, got = 0;
	uint64_t v;
	uint8_t version, tag;
	const char *where = "envelope";

	memset(env, 0, sizeof(*env));
	if (len > RECORD_TOTAL_MAX_BYTES) {
		(void)snprintf(err, errlen, "envelope of %zu bytes, limit %u",
			       len, RECORD_TOTAL_MAX_BYTES);
		goto fail;
	}
	record_rd_init(&b, p, len);
	if (record_rd_u8(&b, &version) != 0) {
		(void)snprintf(err, errlen, "empty envelope");
		goto fail;
	}
	if (version != RECORD_ENVELOPE_VERSION) {
		(void)snprintf(
		    err, errlen,
		    "envelope format %u not supported (this build reads %u)",
		    version, RECORD_ENVELOPE_VERSION);
		goto fail;
	}
	while (record_rd_left(&b) > 0) {
		if (record_tlv_next(&b, &tag, &val, where, err, errlen) != 0)
			goto fail;
		if (tag == 0 || tag > ET__LAST)
			continue; /* unknown or reserved: skipped */
		if (tag != ET_RCPT &&
		    record_tag_once(&seen, tag, where, err, errlen) != 0)
			goto fail;
		switch ((enum record_env_tag)tag) {
		case ET_ID:
			if (record_val_fixed(&val, 8, &env->id, where, tag, err,
					     errlen) != 0)
				goto fail;
			break;
		case ET_CREATED:
			if (record_val_fixed(&val, 8, &v, where, tag, err,
					     errlen) != 0)
				goto fail;
			env->created_ms = (int64_t)v;
			break;
		case ET_NEXT:
			if (record_val_fixed(&val, 8, &v, where, tag, err,
					     errlen) != 0)
				goto fail;
			env->next_attempt_ms = (int64_t)v;
			break;
		case ET_FLAGS:
			if (record_val_fixed(&val, 4, &v, where, tag, err,
					     errlen) != 0)
				goto fail;
			env->flags = (uint32_t)v;
			break;
		case ET_SIZE:
			if (record_val_fixed(&val, 8, &env->size, where, tag,
					     err, errlen) != 0)
				goto fail;
			break;
		case ET_NCHUNKS:
			if (record_val_fixed(&val, 4, &v, where, tag, err,
					     errlen) != 0)
				goto fail;
			env->nchunks = (uint32_t)v;
			break;
		case ET_SENDER:
			if (record_val_str(&val, &env->sender, "sender", err,
					   errlen) != 0)
				goto fail;
			break;
		case ET_USER:
			if (record_val_str(&val, &env->user, "user", err,
					   errlen) != 0)
				goto fail;
			break;
		case ET_CLIENT:
			if (record_val_str(&val, &env->client, "client", err,
					   errlen) != 0)
				goto fail;
			break;
		case ET_HELO:
			if (record_val_str(&val, &env->helo, "helo", err,
					   errlen) != 0)
				goto fail;
			break;
		case ET_MSGID:
			if (record_val_str(&val, &env->msgid, "message-id", err,
					   errlen) != 0)
				goto fail;
			break;
		case ET_CAMPAIGN:
			if (record_val_str(&val, &env->campaign, "campaign",
					   err, errlen) != 0)
				goto fail;
			break;
		case ET_ENVID:
			if (record_val_str(&val, &env->envid, "envid", err,
					   errlen) != 0)
				goto fail;
			break;
		case ET_NRCPTS:
			if (record_nrcpts_decode(&val, &b, env, err, errlen) !=
			    0)
				goto fail;
			break;
		case ET_RCPT:
			if (!(seen & (1u << ET_NRCPTS)) || got >= env->nrcpts) {
				(void)snprintf(
				    err, errlen,
				    "recipient %u: not announced by the "
				    "recipient count",
				    got);
				goto fail;
			}
			if (record_rcpt_decode(&val, &env->rcpts[got], got, err,
					       errlen) != 0)
				goto fail;
			got++;
			break;
		default:
			break;
		}
	}
	if (!(seen & (1u << ET_ID)) || !(seen & (1u << ET_SENDER)) ||
	    !(seen & (1u << ET_NRCPTS))) {
		(void)snprintf(err, errlen,
			       "envelope lacks id, sender or "
			       "recipient count");
		goto fail;
	}
	if (got != env->nrcpts) {
		(void)snprintf(err, errlen,
			       "envelope announces %u recipients, "
			       "holds %u",
			       env->nrcpts, got);
		goto fail;
	}
	return 0;
fail:
	queue_envelope_clear(env);
	return -1;
}

void
queue_envelope_clear(struct queue_envelope *env)
{
	uint32_t i;

	if (env == NULL)
		return;
	free(env->sender);
	free(env->user);
	free(env->client);
	free(env->helo);
	free(env->msgid);
	free(env->campaign);
	free(env->envid);
	if (env->rcpts != NULL) {
		for (i = 0; i < env->nrcpts; i++) {
			free(env->rcpts[i].addr);
			free(env->rcpts[i].last_reply);
			free(env->rcpts[i].orcpt);
		}
		free(env->rcpts);
	}
	memset(env, 0, sizeof(*env));
}
