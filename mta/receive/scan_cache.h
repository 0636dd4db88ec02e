/*
 * scan_cache.h — what a malware scan of a submitted message can skip: the
 * MIME leaf parts of the message (scan_mime.c) and a bounded cache of the
 * verdicts clamd gave, keyed by a keyed BLAKE2b hash of each leaf part's
 * content as sent and of the whole body (scan_cache.c).  Campaign mail
 * repeats the same attachment in every message: its verdict is looked up,
 * not scanned again, and only the parts still unknown are streamed to
 * clamd (mta/receive/scan.c).
 *
 * Thread: every function may be called from any thread; the cache holds its
 * own lock.  No address and no message byte is kept: hashes and signature
 * names only.
 */
#ifndef OUTPOST_MTA_RECEIVE_SCAN_CACHE_H
#define OUTPOST_MTA_RECEIVE_SCAN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCAN_HASH_BYTES 32
#define SCAN_PARTS_MAX                                                         \
	64                /* leaf parts looked up; past it, the rest of        \
			     the message is one part */
#define SCAN_NAME_MAX 128 /* a signature name, NUL included */

/* One MIME leaf part: the byte range of its content (after its header
 * block and the blank line, before the next delimiter's CRLF), as sent.
 * HOFF is where the header block that types the content starts (the
 * part's own, or 0 for the body of a message that is not split): [HOFF,
 * OFF) is that block, and the verdict of a leaf is only worth reusing for
 * the same content under the same Content-Type and
 * Content-Transfer-Encoding, so scan_cache_hash_part() hashes [HOFF, OFF +
 * LEN). */
struct scan_part {
	size_t off, len;
	size_t hoff;
	uint8_t hash[SCAN_HASH_BYTES]; /* set by scan_cache_hash() */
};

/*
 * scan_mime_leaves — walk the MIME structure of MSG (LEN octets, a whole
 * message with CRLF line ends, as queued) and store in PARTS (room for MAX)
 * the content range of each leaf part in order, nested multiparts
 * included.  A message that is not multipart has one leaf: its body.
 * Malformed structure (a missing closing delimiter, a boundary never met)
 * is not an error: what cannot be split stays inside one leaf, so every
 * byte after the top header block belongs to exactly one leaf or to the
 * MIME framing between leaves.  Returns the number of leaves stored (>= 1
 * when the message has a body, 0 when it has none).  Pure; never reads
 * past MSG + LEN.
 *
 * Leaves are in order and do not overlap; each lies inside [0, LEN).  A
 * message/rfc822 part is one leaf (clamd reads the enclosed message
 * itself).  A multipart is walked SCAN_MIME_DEPTH_MAX levels deep; deeper,
 * or with a header block it cannot read whole (a field that is not one,
 * longer than SCAN_MIME_FIELD_MAX bytes, two Content-Type fields), an
 * entity is one leaf.  Past MAX leaves, the last one stored runs to the end
 * of the last leaf found (the rest is one part).
 */
#define SCAN_MIME_DEPTH_MAX 8    /* nested multiparts walked */
#define SCAN_MIME_FIELD_MAX 8192 /* one unfolded header field, bytes */
size_t scan_mime_leaves(const uint8_t *msg, size_t len, struct scan_part *parts,
			size_t max);

enum scan_verdict {
	SCAN_UNKNOWN,  /* not in the cache (or expired) */
	SCAN_CLEAN,    /* clamd said OK */
	SCAN_INFECTED, /* clamd said FOUND; the name is kept */
};

struct scan_cache_stats {
	uint64_t entries, max_entries;
	uint64_t hits, misses; /* scan_cache_get() results */
	uint64_t inserts, evictions, expired, flushes;
};

struct scan_cache;

/*
 * scan_cache_new — a cache of at most MAX_ENTRIES verdicts, each valid for
 * TTL_MS after it was put, under a random hash key of its own (verdicts
 * never outlive the process).  MAX_ENTRIES 0 gives a cache that keeps
 * nothing (every get misses); TTL_MS <= 0, verdicts that only eviction
 * and flush remove.  Returns NULL on allocation failure.  Free with
 * scan_cache_free() (NULL is ignored) once no thread uses it.
 */
struct scan_cache *scan_cache_new(size_t max_entries, int64_t ttl_ms);
void scan_cache_free(struct scan_cache *c);

/* scan_cache_hash — OUT = keyed BLAKE2b-256 of P[0..LEN) under C's key. */
void scan_cache_hash(const struct scan_cache *c, const uint8_t *p, size_t len,
		     uint8_t out[SCAN_HASH_BYTES]);

/*
 * scan_cache_hash_part — PART->hash = scan_cache_hash() of MSG[PART->hoff,
 * PART->off + PART->len): the leaf's content with the header block that
 * types it.  A leaf hashed without its headers would let a verdict on
 * bytes read as 7bit text pass the same bytes declared base64 unscanned.
 * For the body of a message that is not split (HOFF 0), only the typing
 * fields of the message's header block (Content-Type,
 * Content-Transfer-Encoding) count, not its Received: or Message-ID:.
 */
void scan_cache_hash_part(const struct scan_cache *c, const uint8_t *msg,
			  struct scan_part *part);

/*
 * scan_cache_get — the verdict kept for HASH at NOW_MS (an expired entry is
 * removed and misses); for SCAN_INFECTED the signature name is copied into
 * NAME (NAMELEN bytes, may be NULL).  Counts a hit or a miss.
 */
enum scan_verdict scan_cache_get(struct scan_cache *c,
				 const uint8_t hash[SCAN_HASH_BYTES],
				 int64_t now_ms, char *name, size_t namelen);

/*
 * scan_cache_put — keep VERDICT (SCAN_CLEAN or SCAN_INFECTED, with NAME)
 * for HASH from NOW_MS; replaces an entry for the same hash; evicts the
 * least recently used entry when full.
 */
void scan_cache_put(struct scan_cache *c, const uint8_t hash[SCAN_HASH_BYTES],
		    enum scan_verdict verdict, const char *name,
		    int64_t now_ms);

/* scan_cache_flush — forget every verdict (clamd's signatures changed). */
void scan_cache_flush(struct scan_cache *c);

void scan_cache_stats(struct scan_cache *c, struct scan_cache_stats *out);

#endif
