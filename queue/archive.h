/*
 * archive.h — the queue's portable archive (`outpost queue export|import`):
 * messages (envelope with its delivery state, and body) of one queue,
 * encrypted with a key the operator gives, for another queue to take in.
 *
 * Format, version ARCHIVE_VERSION (integers big-endian):
 *   header, ARCHIVE_HEADER_BYTES, in clear:
 *     magic "OUTPOSTA"(8) version(1) kdf(1: 0 key file, 1 Argon2id)
 *     reserved(2, zero) opslimit(4) memlimit(8, bytes) salt(16)
 *     archive id(16, random) key check(16) secretstream header(24)
 *   then records, each length(4) and a libsodium
 *   crypto_secretstream_xchacha20poly1305 message of type(1) + payload:
 *     'M' manifest: messages(8) time_ms(8) source (the rest: host name)
 *     'E' a message's envelope, as queue/record.c encodes it (id, created,
 *         next attempt, flags with the held bit, size, sender, user,
 *         client, helo, msgid, campaign, envid, and per recipient its
 *         address, state, attempts, last reply, DSN NOTIFY and ORCPT)
 *     'B' a piece of its body (<= ARCHIVE_CHUNK_BYTES); its pieces follow
 *         its 'E' and add up to the envelope's size
 *     'F' the end, tagged TAG_FINAL: messages(8) body bytes(8)
 * The first 72 header bytes are the first record's additional data, so a
 * changed header does not open.  The key check (keyed BLAKE2b-128 of the
 * archive id) tells a wrong key from a damaged archive.  The stream binds
 * every record to its place: a record dropped, moved or changed, or an
 * archive cut short (no 'F'), is refused.
 *
 * Threads: any; one archive per thread.  Errors: (err, errlen) as queue.h.
 */
#ifndef OUTPOST_QUEUE_ARCHIVE_H
#define OUTPOST_QUEUE_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/queue.h"

#define ARCHIVE_VERSION      1
#define ARCHIVE_HEADER_BYTES 96
#define ARCHIVE_SALT_BYTES   16
#define ARCHIVE_ID_BYTES     16
#define ARCHIVE_CHUNK_BYTES  (64 * 1024)
#define ARCHIVE_SOURCE_MAX   255 /* bytes of the manifest's source */

enum archive_kdf {
	ARCHIVE_KDF_KEY = 0,      /* a key file: 64 hex digits */
	ARCHIVE_KDF_ARGON2ID = 1, /* a passphrase, Argon2id13 */
};

/* How the archive's key is made; the header carries it. */
struct archive_params {
	enum archive_kdf kdf;
	uint32_t opslimit; /* Argon2id: passes */
	uint64_t memlimit; /* Argon2id: bytes */
	uint8_t salt[ARCHIVE_SALT_BYTES];
};

struct archive_manifest {
	uint64_t messages; /* selected when written (the end record counts
			      those written) */
	int64_t time_ms;
	char source[ARCHIVE_SOURCE_MAX + 1];
	uint8_t id[ARCHIVE_ID_BYTES];
};

/* archive_params_new — KDF's parameters for a new archive: a random salt
 * and libsodium's interactive limits for Argon2id. */
void archive_params_new(struct archive_params *p, enum archive_kdf kdf);

/*
 * archive_key_derive — the archive key from passphrase PW (PWLEN bytes)
 * and P (Argon2id; P's limits were checked by archive_header_read).  Slow
 * (tens of ms, 64 MiB): never on an I/O loop.  0, or -1 with err.
 */
int archive_key_derive(const struct archive_params *p, const char *pw,
		       size_t pwlen, uint8_t key[QUEUE_KEY_BYTES], char *err,
		       size_t errlen);

/*
 * archive_header_read — the parameters of the archive open on FD (read at
 * offset 0 with pread: FD's offset does not move), so that the key can be
 * made before the archive is opened.  0, or -1 with err ("not an Outpost
 * archive", "version N not supported", limits out of range).
 */
int archive_header_read(int fd, struct archive_params *p, char *err,
			size_t errlen);

struct archive_writer;

/*
 * archive_writer_open — write the header (P, a new random id) and the
 * manifest M (M->id is set here) at the start of FD, a new empty file open
 * for writing.  0 with *WP set, or -1 with err.
 */
int archive_writer_open(struct archive_writer **wp, int fd,
			const uint8_t key[QUEUE_KEY_BYTES],
			const struct archive_params *p,
			struct archive_manifest *m, char *err, size_t errlen);
/* archive_writer_message — the next message's envelope; its body follows
 * with archive_writer_body, ENV->size bytes in all.  0, or -1 with err. */
int archive_writer_message(struct archive_writer *w,
			   const struct queue_envelope *env, char *err,
			   size_t errlen);
int archive_writer_body(struct archive_writer *w, const uint8_t *data,
			size_t len, char *err, size_t errlen);
/* archive_writer_end — the end record, then fsync(FD): once it returns 0
 * the archive is on disk.  -1 with err. */
int archive_writer_end(struct archive_writer *w, char *err, size_t errlen);
/* archive_writer_free — wipe and free W (FD stays the caller's). */
void archive_writer_free(struct archive_writer *w);

struct archive_reader;

/*
 * archive_reader_open — check FD's header against KEY and read the
 * manifest into M.  FD is read from offset 0 with pread.  0 with *RP set,
 * or -1 with err: "wrong key or passphrase", "truncated", "damaged or
 * altered".
 */
int archive_reader_open(struct archive_reader **rp, int fd,
			const uint8_t key[QUEUE_KEY_BYTES],
			struct archive_manifest *m, char *err, size_t errlen);
/*
 * archive_reader_next — the next message: 1 with ENV filled (clear it with
 * queue_envelope_clear) and *BODY (malloc'd, owned by the caller) of
 * *BODY_LEN bytes (= env->size); 0 at the verified end (no byte after it);
 * -1 with err (the archive is refused: nothing it holds may be trusted).
 */
int archive_reader_next(struct archive_reader *r, struct queue_envelope *env,
			uint8_t **body, size_t *body_len, char *err,
			size_t errlen);
void archive_reader_free(struct archive_reader *r);

#endif
