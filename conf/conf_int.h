/*
 * conf_int.h — private interfaces of conf/: the source preprocessor
 * (conf_src.c), the value scanners (conf_parse.c), the load context with
 * its errors and generic callbacks (conf_ctx.c), the numeric ranges
 * (conf_num.c), and each section file's schema, build and free.
 * Dependencies go one way: conf.c uses the section files, every file uses
 * conf_ctx.c, conf_num.c and conf_parse.c, and nothing calls into conf.c.
 * Nothing outside conf/ includes this file.
 */
#ifndef OUTPOST_CONF_INT_H
#define OUTPOST_CONF_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <confuse.h>

#include "conf/conf.h"

#ifndef OUTPOST_CONF_POISON /* once: naming a poisoned word is an error */
#define OUTPOST_CONF_POISON
#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif
#endif

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

/*
 * conf_hostport_scan — "HOST[:PORT]" with HOST an IPv4 address, an IPv6
 * address in brackets, or (when NAMES) a host name.  Sets host (IPv6
 * canonical, without brackets; a name lower-cased; HOSTLEN >=
 * INET6_ADDRSTRLEN), *port (0 when absent) and, for an
 * address, *ss with that port (the family is AF_UNSPEC for a name).
 * 0 ok, -1 with *why set to a phrase that follows the quoted value.
 */
int conf_hostport_scan(const char *s, bool names, char *host, size_t hostlen,
		       unsigned *port, struct sockaddr_storage *ss,
		       const char **why);

/* conf_ip_scan — a bare IPv4 or IPv6 address, port 0.  0, or -1 + *why. */
int conf_ip_scan(const char *s, struct sockaddr_storage *ss, socklen_t *len,
		 const char **why);

/*
 * ---- the load in progress (conf_ctx.c), used by every file of conf/ ----
 * conf.c holds conf_mutex for the whole of conf_load() and points conf_cur
 * at its context; callbacks reach it there.  Section files: conf_core.c
 * (top keys, tls, queue, limits, auth_limit, relay, listener, user),
 * conf_deliver.c (dns, delivery, destination, pool, route and the pool
 * references of user and relay), conf_dkim.c (dkim, dkim_sign, dmarc and
 * the dkim_domain references of user and relay), conf_observe.c (log,
 * metrics, control) and conf_host.c (what conf_check_host() checks).
 */
#define CONF_KEY_MAX 160

/* Where a value was set, for checks that involve more than one value. */
struct conf_line {
	const cfg_t *sec;
	const char *key; /* libconfuse's copy of the option name */
	unsigned line;   /* buffer line, see conf_src_where() */
};

/* One conf_load() in progress. */
struct conf_ctx {
	struct conf_src src;
	char *err;
	size_t errlen;
	bool failed;
	struct conf_line *lines;
	size_t nlines, linecap;
	char norm[256]; /* a normalised value on its way into libconfuse */
};

extern struct conf_ctx *conf_cur; /* the load in progress; conf.c's mutex */

#define CONF_THREADS_MAX                                                       \
	64 /* smtp_threads, worker_threads, delivery.threads                   \
	    */
/* conf_threads — a thread count as configured, 0 resolved to one per online
 * CPU (at most CONF_THREADS_MAX); never 0.  conf_core.c. */
unsigned conf_threads(uint64_t n);

/*
 * A hidden option in every titled section.  Its default is parsed by
 * libconfuse when the section opens, so its callback sees the line of the
 * "{" — which libconfuse does not keep (a section's own line ends up at its
 * closing brace).  conf_sec_line() reads it.  A file that writes the name
 * anyway is told there is no such option (conf_line_cb).
 */
#define CONF_LINE_OPT "|line"
extern char conf_line_magic[];
int conf_line_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
#define CONF_OPT_LINE                                                          \
	{                                                                      \
		.name = CONF_LINE_OPT, .type = CFGT_INT, .flags = CFGF_NONE,   \
		.def = { .parsed = conf_line_magic }, .parsecb = conf_line_cb, \
	}

/* Control characters in ERR become '?' (the message stays one line). */
void conf_err_clean(char *err, size_t errlen);
/* libconfuse's error function: its messages become conf_fail()s. */
void conf_confuse_err_cb(cfg_t *cfg, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* "file:line: message"; the first error wins. */
void conf_fail(struct conf_ctx *x, unsigned bufline, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
unsigned conf_cfg_line(const cfg_t *cfg);
/* "hostname", "limits.max_errors", "listener \"[::1]:25\".tls" */
void conf_key_name(const cfg_t *sec, const char *key, char *buf, size_t len);
void conf_line_note(struct conf_ctx *x, const cfg_t *sec, const char *key,
		    unsigned line);
/* The line KEY of SEC was last set on, or 0 if it holds its default. */
unsigned conf_line_of(const struct conf_ctx *x, const cfg_t *sec,
		      const char *key);
/* The line KEY was set on, else the line of SEC's "{", else 0. */
unsigned conf_where(const struct conf_ctx *x, cfg_t *sec, const char *key);
unsigned conf_sec_line(cfg_t *sec);
/* Did the file set KEY of SEC (even to an empty list)? */
bool conf_is_set(cfg_t *sec, const char *key);

/* Generic parse callbacks (libconfuse's cfg_callback_t). */
int conf_text_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
int conf_hostname_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
		     void *result);
int conf_choice_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
		   const char *const *oneof, const char *list);
int conf_bool_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);

/*
 * conf_num.c: the range table.  conf_num_cb scans and range-checks a
 * numeric key as it is read (a key without a row is an error).
 */
int conf_num_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/*
 * A numeric value of SEC from the range table, in its unit: bytes, a count,
 * ms (CK_MS), µs (CK_US) or seconds (CK_S).  0 with the error recorded.
 */
uint64_t conf_num_get(struct conf_ctx *x, cfg_t *sec, const char *key);
/*
 * LO must not exceed HI (both numeric keys of SEC); the error goes on the
 * line of whichever of the two was written last in the file.
 */
int conf_order_check(struct conf_ctx *x, cfg_t *sec, const char *lo,
		     uint64_t lov, const char *hi, uint64_t hiv);
char *conf_strdup(struct conf_ctx *x, const char *s);
/*
 * P made absolute: as is when it starts with "/", else under BASE (the
 * working directory when BASE is NULL), "." and empty parts dropped.
 * Malloc'd; NULL with the error recorded.
 */
char *conf_path_abs(struct conf_ctx *x, cfg_t *sec, const char *key,
		    const char *base, const char *p);
/* A path option of SEC resolved against data_dir; NULL stays NULL. */
int conf_path_get(struct conf_ctx *x, const struct conf *c, cfg_t *sec,
		  const char *key, char **out);

/*
 * conf_core.c: the top-level keys and the sections tls, queue, limits,
 * auth_limit, relay, listener and user.  EMBEDDED: the built-in defaults
 * (no listener is then not an error).
 */
extern cfg_opt_t conf_tls_opts[];
extern cfg_opt_t conf_queue_opts[];
extern cfg_opt_t conf_limits_opts[];
extern cfg_opt_t conf_auth_limit_opts[];
extern cfg_opt_t conf_relay_opts[];
extern cfg_opt_t conf_listener_opts[];
extern cfg_opt_t conf_user_opts[];
int conf_core_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c,
		    bool embedded);
void conf_core_free(struct conf *c);

/* conf_deliver.c: its sections, the build and the release of its part. */
extern cfg_opt_t conf_dns_opts[];
extern cfg_opt_t conf_cluster_opts[];
extern cfg_opt_t conf_tls_report_opts[];
extern cfg_opt_t conf_delivery_opts[];
extern cfg_opt_t conf_destination_opts[];
extern cfg_opt_t conf_pool_opts[];
extern cfg_opt_t conf_route_opts[];
int conf_deliver_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_deliver_free(struct conf *c);

/*
 * conf_dkim.c: the sections dkim, dkim_sign and dmarc, and the dkim_domain
 * references of user and relay (conf_dkim_domain_cb checks the value as it
 * is read; conf_dkim_build() resolves it once every section is known).
 */
extern cfg_opt_t conf_dkim_opts[];
extern cfg_opt_t conf_dkim_sign_opts[];
extern cfg_opt_t conf_dmarc_opts[];
int conf_dkim_domain_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value,
			void *result);
int conf_dkim_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_dkim_free(struct conf *c);

/* conf_host.c: where key files and pool sources were written (for
 * conf_check_host()); after the dkim and pool sections are built. */
int conf_host_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_host_free(struct conf *c);

/*
 * conf_observe.c: the sections log, metrics and control (with its access
 * sections).  conf_observe_build() runs last: it checks metrics.listen
 * against the listeners and the paths against each other.
 */
extern cfg_opt_t conf_log_opts[];
extern cfg_opt_t conf_metrics_opts[];
extern cfg_opt_t conf_control_opts[];
int conf_observe_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_observe_free(struct conf *c);

/*
 * conf_keep.c: the sections restore and retention; conf_keep_build() runs
 * after the paths are known (data_dir) and checks the points' schedule
 * against their lifetime.
 */
extern cfg_opt_t conf_restore_opts[];
extern cfg_opt_t conf_retention_opts[];
int conf_keep_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_keep_free(struct conf *c);

/* conf_suppress.c: the section suppress. */
extern cfg_opt_t conf_suppress_opts[];
int conf_suppress_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
/*
 * conf_bounce.c: the section bounce (the rules files of the bounce
 * categories); conf_bounce_build() reads and compiles them (relative names
 * against the configuration file's directory; EMBEDDED: no file, the
 * built-in rules).
 */
extern cfg_opt_t conf_bounce_opts[];
int conf_bounce_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c,
		      bool embedded);
void conf_bounce_free(struct conf *c);
/* conf_scan.c: the section scan (clamd, the verdict cache). */
extern cfg_opt_t conf_scan_opts[];
int conf_scan_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_scan_free(struct conf *c);

/* conf_feedback.c: the section feedback (ARF reports, X-Outpost-FB). */
extern cfg_opt_t conf_feedback_opts[];
int conf_feedback_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_feedback_free(struct conf *c);
/*
 * conf_watchdog.c: the sections watchdog and watchdog_override; built
 * after conf_keep_build() (its paths resolve against data_dir).
 */
extern cfg_opt_t conf_watchdog_opts[];
extern cfg_opt_t conf_watchdog_override_opts[];
int conf_watchdog_build(struct conf_ctx *x, cfg_t *cfg, struct conf *c);
void conf_watchdog_free(struct conf *c);

/* A refused value reported as "KEY: \"VALUE\" WHY"; returns -1. */
int conf_value_fail(cfg_t *cfg, cfg_opt_t *opt, const char *value,
		    const char *why);

/* conf_print.c: CFG (a whole parsed tree) on FP as conf_print() says.
 * 0, or -1 (errno set). */
int conf_print_cfg(cfg_t *cfg, FILE *fp, bool all);

#endif
