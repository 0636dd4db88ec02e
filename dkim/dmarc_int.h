/*
 * dmarc_int.h — private to dkim/dmarc.c (and its unit test): the
 * length-checked reader the record and From parsers walk untrusted bytes
 * with.  Not part of the public interface (dkim/dkim.h).
 */
#ifndef OUTPOST_DKIM_DMARC_INT_H
#define OUTPOST_DKIM_DMARC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * struct dmarc_rd — a reader over LEN bytes at DATA (c-ares ares_buf
 * shape), named as every byte reader of the tree (queue/record.c
 * record_rd_*, dns/cache.c dns_rd_*, dkim/msg.c msg_rd_*).  OFF <= LEN
 * always.  The bytes are never copied or modified; the caller keeps them
 * alive.  Pure; any thread.
 */
struct dmarc_rd {
	const uint8_t *data;
	size_t len;
	size_t off;
};

/* dmarc_rd_init — a reader over LEN bytes at DATA (none when DATA is
 * NULL). */
void dmarc_rd_init(struct dmarc_rd *r, const void *data, size_t len);

/* dmarc_rd_peek — the byte AT bytes past the cursor into *C, without
 * moving.  0, or -1 when there is no such byte. */
int dmarc_rd_peek(const struct dmarc_rd *r, size_t at, uint8_t *c);

/* dmarc_rd_is — whether the byte AT bytes past the cursor is WANT. */
bool dmarc_rd_is(const struct dmarc_rd *r, size_t at, uint8_t want);

/* dmarc_rd_skip — move the cursor N bytes on.  0, or -1 when fewer than N
 * bytes are left: then the cursor does not move. */
int dmarc_rd_skip(struct dmarc_rd *r, size_t n);

/* dmarc_rd_span — move the cursor past the bytes for which IN holds; how
 * many it passed (0 when the next byte fails IN, or at the end). */
size_t dmarc_rd_span(struct dmarc_rd *r, bool (*in)(uint8_t));

#endif
