/*
 * conf_int.h — private interfaces of conf/: the source preprocessor
 * (conf_src.c) and the value scanners (conf_parse.c) used by conf.c.
 * Nothing outside conf/ includes this file.
 */
#ifndef OUTPOST_CONF_INT_H
#define OUTPOST_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"

#pragma GCC poison strcpy strcat sprintf vsprintf

/*
 * The preprocessor turns a configuration file and everything it include()s
 * into one buffer for libconfuse, with comments blanked (newlines kept) and
 * include("FILE") replaced by FILE's text.  A table of segments maps each
 * line of that buffer back to the file and line it came from.
 *
 * Why: libconfuse 3.3 (Debian 12) miscounts lines after every comment (a
 * "#" line counts as three), rejects comments inside lists, and leaks its
 * include stack when an included file has an error, which after ten failed
 * reloads makes every include() fail.  Feeding it a comment-free buffer
 * without include() calls sidesteps all three.
 */
#define CONF_SRC_DEPTH_MAX       8           /* include() nesting */
#define CONF_SRC_FILE_MAX_BYTES  (16u << 20) /* one file */
#define CONF_SRC_TOTAL_MAX_BYTES (64u << 20) /* all files together */

struct conf_src_seg {
	unsigned bufline;  /* first buffer line of this segment */
	unsigned file;     /* index into conf_src.files */
	unsigned fileline; /* line in that file of bufline */
};

struct conf_src {
	char *buf; /* NUL-terminated; what libconfuse parses */
	size_t len, cap;
	unsigned newlines; /* '\n' emitted so far: current line - 1 */
	struct conf_src_seg *segs;
	size_t nsegs, segcap;
	char **files; /* file names as shown in messages */
	size_t nfiles, filecap;
	size_t total; /* bytes read from files, for the limit */
};

/*
 * conf_src_load — read PATH (with its includes) into SRC, or, when TEXT is
 * not NULL, use TEXT with PATH as its label (the embedded defaults).
 * SRC must be zeroed.  Returns 0, or -1 with "file:line: message" in err.
 * SRC is freed with conf_src_free() in both cases.
 */
int conf_src_load(struct conf_src *src, const char *path, const char *text,
		  char *err, size_t errlen);

/*
 * conf_src_where — map buffer line BUFLINE to *file and *line.  *line is 0
 * when BUFLINE is 0 (a default value, no line).  *file is never NULL.
 */
void conf_src_where(const struct conf_src *src, unsigned bufline,
		    const char **file, unsigned *line);

/* conf_src_free — release what conf_src_load() allocated; SRC is zeroed. */
void conf_src_free(struct conf_src *src);

/*
 * Value scanners (conf_parse.c).  They return 0 and set *out, -1 when S is
 * not of the kind at all, or -2 when it is but does not fit in 64 bits.
 */
int conf_count_scan(const char *s, uint64_t *out);
int conf_size_scan(const char *s, uint64_t *out);
/* Durations in microseconds; "us" is accepted only when ALLOW_US. */
int conf_duration_scan(const char *s, uint64_t *out_us, bool allow_us);

/* conf_size_format / conf_duration_format — "25M", "5m", "250ms", "30us". */
void conf_size_format(uint64_t bytes, char *buf, size_t len);
void conf_duration_format(uint64_t us, char *buf, size_t len);

/*
 * conf_addr_scan — conf_addr_parse() that also says why it failed: *why is
 * set to a static phrase ("port must be 1..65535", …) on -1.
 */
int conf_addr_scan(const char *s, struct sockaddr_storage *ss, socklen_t *len,
		   const char **why);

/* conf_addr_is_loopback — 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. */
bool conf_addr_is_loopback(const struct sockaddr_storage *ss);

/*
 * conf_cidr_parse — "10.0.0.0/8", "2001:db8::/32", or a bare address (a
 * host).  A v4-mapped v6 network of prefix >= 96 becomes the v4 network.
 * 0 ok, -1 with *why set; *why may use BUF (LEN bytes) for a suggestion.
 */
int conf_cidr_parse(const char *s, struct conf_network *n, const char **why,
		    char *buf, size_t len);

/*
 * conf_domain_check — LDH labels of 1..63, 253 at most, no trailing dot.
 * With ALLOW_WILD also "*" and ".example.com".  0 ok, -1 with *why set.
 */
int conf_domain_check(const char *s, bool allow_wild, const char **why);

#endif
