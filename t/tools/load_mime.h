/*
 * load_mime.h — campaign-like messages for outpost-load (--attachment):
 * a multipart/mixed message with a personalized text part and a base64
 * PDF-like attachment, the attachment the same in every message (shared:
 * what a malware scan's verdict cache is for) or different in each
 * (unique: no cache hit possible).  Single-threaded, as outpost-load.
 */
#ifndef OUTPOST_T_TOOLS_LOAD_MIME_H
#define OUTPOST_T_TOOLS_LOAD_MIME_H

#include <stddef.h>
#include <stdint.h>

enum load_mime_mode {
	LOAD_MIME_NONE,   /* the plain text message (the default) */
	LOAD_MIME_SHARED, /* one attachment, identical in every message */
	LOAD_MIME_UNIQUE, /* every message's attachment differs */
};

#define LOAD_MIME_ATTACH_BYTES 22800 /* decoded; about 30 KB in base64 */

struct load_mime {
	enum load_mime_mode mode;
	char first[80]; /* the shared first base64 line, NUL-terminated */
	char tag[64];   /* the run's: text parts and unique attachments of
			   two runs differ */
};

/*
 * load_mime_prepare — build the attachment of BYTES decoded octets (at
 * least 57): *TAIL (malloc'd, owned by the caller) is every base64 line but
 * the first, then the closing delimiter; the first line goes into M->first.
 * TAG (run-unique) goes into M->tag.  0, or -1 out of memory.
 */
int load_mime_prepare(struct load_mime *m, size_t bytes, const char *tag,
		      char **tail, size_t *tail_len);

/*
 * load_mime_head — the MIME fields of message SEQ's header block, its
 * blank line, the preamble, the text part (personalized with SEQ and the
 * run's tag: no two messages of any two runs share it), the attachment's
 * header block and its first base64 line (shared, or made of TAG and SEQ).
 * Written into BUF; returns the length, or 0 if it does not fit.
 */
size_t load_mime_head(const struct load_mime *m, uint64_t seq, char *buf,
		      size_t size);

#endif
