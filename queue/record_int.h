/*
 * record_int.h — private to queue/: the envelope record format and the
 * length-checked byte reader (c-ares ares_buf shape) every decoder in queue/
 * uses for untrusted bytes.  Nothing outside queue/ (but its tests and fuzz
 * harness) includes this file.
 *
 * Envelope record (the plaintext inside a sealed "env" value):
 *   version(1) = RECORD_ENVELOPE_VERSION, then TLVs: tag(1) length(varint)
 *   value(length).  Varints are unsigned LEB128, minimal, at most 10 bytes.
 *   Fixed-width integers are big-endian; strings are raw bytes without NUL.
 *   A recipient is one RT_* TLV list nested in an ET_RCPT value.  Unknown
 *   tags are skipped (forward compatibility); a known tag seen twice, a value
 *   of the wrong width or over a limit makes the record invalid.
 */
#ifndef OUTPOST_QUEUE_RECORD_INT_H
#define OUTPOST_QUEUE_RECORD_INT_H

#include <stddef.h>
#include <stdint.h>

#include "queue/queue.h"

#ifndef OUTPOST_QUEUE_POISON /* once: naming a poisoned word is an error */
#define OUTPOST_QUEUE_POISON
#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif
#endif

#define RECORD_ENVELOPE_VERSION 1
#define RECORD_RCPTS_MAX        1000000u     /* recipients per envelope */
#define RECORD_STRING_MAX_BYTES (64u * 1024) /* one string value */
#define RECORD_TOTAL_MAX_BYTES  (512u << 20) /* one encoded envelope */
#define RECORD_VARINT_MAX_BYTES 10

/* Envelope tags.  Never renumber: records on disk carry them. */
enum record_env_tag {
	ET_ID = 1,      /* be64 */
	ET_CREATED = 2, /* be64, int64 Unix ms */
	ET_NEXT = 3,    /* be64, int64 Unix ms */
	ET_FLAGS = 4,   /* be32, QUEUE_F_* */
	ET_SIZE = 5,    /* be64 */
	ET_NCHUNKS = 6, /* be32 */
	ET_SENDER = 7,  /* string, required ("" = null sender) */
	ET_USER = 8,    /* string; absent = NULL */
	ET_CLIENT = 9,  /* string; absent = NULL */
	ET_HELO = 10,   /* string; absent = NULL */
	ET_NRCPTS = 11, /* varint, required, before the first ET_RCPT */
	ET_RCPT = 12,   /* nested RT_* list, exactly ET_NRCPTS of them */
	/* Added without a version change: a record without them (written
	 * before) loads with NULL, and a reader that predates them skips
	 * them as unknown tags. */
	ET_MSGID = 13,    /* string; absent = NULL */
	ET_CAMPAIGN = 14, /* string; absent = NULL */
	ET_ENVID = 15,    /* string; absent = NULL */
	ET__LAST = ET_ENVID
};

/* Recipient tags, inside an ET_RCPT value. */
enum record_rcpt_tag {
	RT_ADDR = 1,       /* string, required */
	RT_STATE = 2,      /* u8, enum queue_rcpt_state */
	RT_ATTEMPTS = 3,   /* be16 */
	RT_LAST_CODE = 4,  /* be16 */
	RT_LAST_REPLY = 5, /* string; absent = NULL */
	/* Added as ET_MSGID was: absent in older records (0 / NULL). */
	RT_NOTIFY = 6, /* u8, QUEUE_NOTIFY_* (NEVER alone); absent = 0 */
	RT_ORCPT = 7,  /* string; absent = NULL */
	RT__LAST = RT_ORCPT
};

/*
 * The reader, named as every byte reader of the tree (dns/cache.c dns_rd_*,
 * dkim/dmarc.c dmarc_rd_*, dkim/msg.c msg_rd_*): each fetch (_u8, _be16,
 * _be32, _be64, _varint, _bytes, _sub) either succeeds and advances, or
 * fails (-1) and leaves the cursor where it was; record_rd_tag() marks a
 * position that record_rd_rollback() returns to.  The data is never copied
 * or modified; the caller keeps it alive while the reader is used.
 */
struct record_rd {
	const uint8_t *data;
	size_t len;
	size_t off;
	size_t tag;
};

void record_rd_init(struct record_rd *b, const void *data, size_t len);
/* record_rd_left — bytes not read yet. */
size_t record_rd_left(const struct record_rd *b);
void record_rd_tag(struct record_rd *b);
void record_rd_rollback(struct record_rd *b);
int record_rd_u8(struct record_rd *b, uint8_t *v);
int record_rd_be16(struct record_rd *b, uint16_t *v);
int record_rd_be32(struct record_rd *b, uint32_t *v);
int record_rd_be64(struct record_rd *b, uint64_t *v);
/* record_rd_varint — minimal unsigned LEB128 of at most 10 bytes;
 * an overlong or overflowing encoding fails. */
int record_rd_varint(struct record_rd *b, uint64_t *v);
/* record_rd_bytes — point *p at the next N bytes (no copy). */
int record_rd_bytes(struct record_rd *b, size_t n, const uint8_t **p);
/* record_rd_sub — a reader over the next N bytes, consumed here. */
int record_rd_sub(struct record_rd *b, size_t n, struct record_rd *sub);

/* Big-endian helpers for LMDB keys and fixed headers. */
void record_be32_put(uint8_t *p, uint32_t v);
void record_be64_put(uint8_t *p, uint64_t v);
uint32_t record_be32_get(const uint8_t *p);
uint64_t record_be64_get(const uint8_t *p);

/*
 * record_envelope_encode — serialise ENV.  On success *out (malloc'd, owned
 * by the caller; it holds addresses in clear: wipe before free) and *outlen
 * are set and 0 is returned; -1 with err set when ENV breaks a limit (no
 * sender, a recipient without address, a string over 64 KiB, more than
 * RECORD_RCPTS_MAX recipients, an unknown recipient state, over 512 MiB).
 * Any thread.
 */
int record_envelope_encode(const struct queue_envelope *env, uint8_t **out,
			   size_t *outlen, char *err, size_t errlen);

/*
 * record_envelope_decode — parse LEN untrusted bytes at P into ENV (which is
 * overwritten; on success the caller frees it with queue_envelope_clear()).
 * Returns 0, or -1 with err set and ENV zeroed; never reads outside P..P+LEN.
 * Any thread.
 */
int record_envelope_decode(const uint8_t *p, size_t len,
			   struct queue_envelope *env, char *err,
			   size_t errlen);

#endif
