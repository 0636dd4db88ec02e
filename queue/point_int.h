/*
 * point_int.h — private to queue/: what point.c (taking, listing and
 * verifying restore points) shares with point_keep.c (which points to keep)
 * and point_run.c (the restore thread): the file names of a point, its
 * manifest, and the walk that opens every record of a point.
 * Nothing outside queue/ (but its tests) includes this file.
 */
#ifndef OUTPOST_QUEUE_POINT_INT_H
#define OUTPOST_QUEUE_POINT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "queue/queue.h"

#define POINT_PREFIX         "point-"
#define POINT_NAME_BYTES     17   /* YYYYMMDDTHHMMSSZ and NUL */
#define POINT_MANIFEST_MAX   2048 /* a manifest is far smaller */
#define POINT_CHECKSUM_LABEL "blake2b-256:"
/* Written blocks kept ahead of the queue's data while a point is taken
 * (point.c, headroom.c): the growth of POINT_HEADROOM_AHEAD_S seconds at
 * the last point's rate, within MIN and MAX; the copy asks for a top-up
 * between two of its windows. */
#define POINT_HEADROOM_MIN     (32ull << 20)
#define POINT_HEADROOM_MAX     (1ull << 30)
#define POINT_HEADROOM_AHEAD_S 2

struct crypt_key;

/* point_name_format — NAME of the second holding MS (UTC). */
void point_name_format(int64_t ms, char name[POINT_NAME_BYTES]);

/*
 * point_name_parse — accept NAME, "point-NAME", "point-NAME.mdb" or
 * "point-NAME.json" (and a leading directory for the last two); copy the
 * bare name (YYYYMMDDTHHMMSSZ, checked character by character, so it can
 * never name another file) into OUT.  0 ok, -1 not a point's name.
 */
int point_name_parse(const char *s, char out[POINT_NAME_BYTES]);

/* point_path — DIR/point-NAME.EXT ("mdb", "json", "mdb.tmp", ...).  0, or
 * -1 (ENAMETOOLONG) when it does not fit LEN bytes. */
int point_path(char *buf, size_t len, const char *dir, const char *name,
	       const char *ext);

/*
 * point_manifest_read — parse the manifest DIR/point-NAME.json into OUT.
 * 0 ok; -1 with err set (missing, unreadable, malformed, not this point's).
 */
int point_manifest_read(const char *dir, const char *name,
			struct queue_point_info *out, char *err, size_t errlen);

/*
 * point_walk — open the point file PATH read-only (no lock file), check its
 * format version and that K's key id sealed it, and open every record:
 * each envelope (decoded; its id matches its key), each body chunk (in
 * order, the sizes agreeing with the envelope, none without an envelope),
 * each state record.  Counts messages and pending recipients into OUT.
 * Any thread.  0 ok; -1 with err naming the first fault.  PATH must be a
 * whole file (a size or checksum check first): LMDB maps it.
 */
int point_walk(const char *path, const struct crypt_key *k,
	       struct queue_point_info *out, char *err, size_t errlen);

/*
 * point_copy_stream — LMDB's compacting copy of Q's environment into FD
 * (point_copy.c), with its size and checksum ("blake2b-256:HEX"); the file
 * is written back as it goes (fsync it after), paced while Q commits.
 * Blocking.  0, or -1 with err set.
 */
int point_copy_stream(struct queue *q, int fd, uint64_t *size, char sum[80],
		      char *err, size_t errlen);

/* point_file_sum — size and BLAKE2b-256 ("blake2b-256:HEX") of PATH.
 * 0, or -1 with err set. */
int point_file_sum(const char *path, uint64_t *size, char sum[80], char *err,
		   size_t errlen);

#endif
