/*
 * conf_ctx.c — the load in progress (conf_cur), its "file:line: message"
 * errors, where each value was set, and the generic helpers and parse
 * callbacks every section uses (text, host name, choice, boolean, paths).
 * Used by conf.c and by every section file; calls none of them (one-way).
 * Thread: main, under conf.c's conf_mutex (conf_cur is the load that holds
 * it).  Invariants: the first error wins; a message never holds a control
 * character.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "conf/conf_int.h"

#define CONF_MSG_MAX 1024

struct conf_ctx *conf_cur; /* the load in progress; conf.c's conf_mutex */

/* Control characters would break the one-line message: show them as '?'. */
void
conf_err_clean(char *err, size_t errlen)
{
	char *p;

	if (err == NULL || errlen == 0)
		return;
	for (p = err; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

/*
 * Record the first error as "file:line: message" (BUFLINE 0: "file:
 * message", the main file).  Later errors are consequences: dropped.
 */
void
conf_fail(struct conf_ctx *x, unsigned bufline, const char *fmt, ...)
{
	char msg[CONF_MSG_MAX];
	const char *file;
	unsigned line;
	va_list ap;
	int n;

	if (x->failed)
		return;
	x->failed = true;
	if (x->err == NULL || x->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_src_where(&x->src, bufline, &file, &line);
	if (line != 0)
		n = snprintf(x->err, x->errlen, "%s:%u: %s", file, line, msg);
	else
		n = snprintf(x->err, x->errlen, "%s: %s", file, msg);
	/* n >= errlen truncates: the file:line prefix is what must survive */
	if (n < 0)
		snprintf(x->err, x->errlen, "configuration error");
	conf_err_clean(x->err, x->errlen);
}

unsigned
conf_cfg_line(const cfg_t *cfg)
{
	return cfg != NULL && cfg->line > 0 ? (unsigned)cfg->line : 0;
}

/*
 * "control." for a section inside another ("control.access \"root\""):
 * libconfuse keeps no link to the parent, and each such name is unique.
 */
static const char *
conf_sec_parent(const cfg_t *sec)
{
	static const struct {
		const char *sec, *parent;
	} nested[] = {
		{ "access", "control." },
	};
	size_t i;

	for (i = 0; i < sizeof(nested) / sizeof(nested[0]); i++) {
		if (strcmp(sec->name, nested[i].sec) == 0)
			return nested[i].parent;
	}
	return "";
}

void
conf_key_name(const cfg_t *sec, const char *key, char *buf, size_t len)
{
	int n;

	if (sec == NULL || sec->name == NULL || strcmp(sec->name, "root") == 0)
		n = snprintf(buf, len, "%s", key);
	else if (sec->title != NULL)
		n = snprintf(buf, len, "%s%s \"%s\".%s", conf_sec_parent(sec),
			     sec->name, sec->title, key);
	else
		n = snprintf(buf, len, "%s%s.%s", conf_sec_parent(sec),
			     sec->name, key);
	if (n < 0)
		snprintf(buf, len, "%s", key);
	/* n >= len: a long title is cut short, the message stays useful */
}

void
conf_confuse_err_cb(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[CONF_MSG_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (conf_cur == NULL)
		return;
	if (cfg == NULL || cfg->name == NULL || strcmp(cfg->name, "root") == 0)
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s", msg);
	else if (cfg->title != NULL)
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s%s \"%s\": %s",
			  conf_sec_parent(cfg), cfg->name, cfg->title, msg);
	else
		conf_fail(conf_cur, conf_cfg_line(cfg), "%s%s: %s",
			  conf_sec_parent(cfg), cfg->name, msg);
}

void
conf_line_note(struct conf_ctx *x, const cfg_t *sec, const char *key,
	       unsigned line)
{
	if (x->nlines == x->linecap) {
		size_t cap = x->linecap != 0 ? x->linecap * 2 : 64;
		struct conf_line *l = realloc(x->lines, cap * sizeof(*l));

		if (l == NULL)
			return; /* only messages lose their line */
		x->lines = l;
		x->linecap = cap;
	}
	x->lines[x->nlines].sec = sec;
	x->lines[x->nlines].key = key;
	x->lines[x->nlines].line = line;
	x->nlines++;
}

unsigned
conf_line_of(const struct conf_ctx *x, const cfg_t *sec, const char *key)
{
	size_t i;

	for (i = x->nlines; i > 0; i--) {
		const struct conf_line *l = &x->lines[i - 1];

		if (l->sec == sec && strcmp(l->key, key) == 0)
			return l->line;
	}
	return 0;
}

unsigned
conf_where(const struct conf_ctx *x, cfg_t *sec, const char *key)
{
	unsigned line = key != NULL ? conf_line_of(x, sec, key) : 0;

	return line != 0 ? line : conf_sec_line(sec);
}

unsigned
conf_sec_line(cfg_t *sec)
{
	unsigned i;

	for (i = 0; sec->opts[i].name != NULL; i++) {
		if (strcmp(sec->opts[i].name, CONF_LINE_OPT) == 0)
			return (unsigned)cfg_opt_getnint(&sec->opts[i], 0);
	}
	return 0;
}

/*
 * libconfuse marks an option modified when the file assigns it, even "= { }"
 * (and clears the mark after setting a default).
 */
bool
conf_is_set(cfg_t *sec, const char *key)
{
	cfg_opt_t *opt = cfg_getopt(sec, key);

	return opt != NULL && (opt->flags & CFGF_MODIFIED) != 0;
}

/* ---- generic parse callbacks: one value each, with its line ---- */

char conf_line_magic[] = "0";

int
conf_line_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value == NULL || strcmp(value, conf_line_magic) != 0) {
		/* someone wrote the hidden name: as unknown as any typo */
		cfg_error(cfg, "no such option '%s'", opt->name);
		return -1;
	}
	*(long *)result = cfg->line;
	return 0;
}

/* Printable text: paths, cipher lists. */
static int
conf_text_check(struct conf_ctx *x, cfg_t *cfg, cfg_opt_t *opt,
		const char *value)
{
	char key[CONF_KEY_MAX];
	const char *p;

	conf_key_name(cfg, opt->name, key, sizeof(key));
	if (value == NULL || *value == '\0') {
		conf_fail(x, conf_cfg_line(cfg), "%s: must not be empty", key);
		return -1;
	}
	for (p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			conf_fail(x, conf_cfg_line(cfg),
				  "%s: contains a control character", key);
			return -1;
		}
	}
	if (strlen(value) >= PATH_MAX) {
		conf_fail(x, conf_cfg_line(cfg), "%s: longer than %d bytes",
			  key, PATH_MAX - 1);
		return -1;
	}
	conf_line_note(x, cfg, opt->name, conf_cfg_line(cfg));
	return 0;
}

int
conf_text_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (conf_text_check(conf_cur, cfg, opt, value) != 0)
		return -1;
	*(const char **)result = value;
	return 0;
}

/* hostname, and the EHLO names of delivery and pools */
int
conf_hostname_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	const char *why;

	if (conf_domain_check(value, false, &why) != 0) {
		return conf_value_fail(cfg, opt, value, why);
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(const char **)result = value;
	return 0;
}

/* VALUE (case-insensitive) in the NULL-terminated list ONEOF, else fail. */
int
conf_choice_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
	       const char *const *oneof, const char *list)
{
	char key[CONF_KEY_MAX];
	size_t i;

	for (i = 0; value != NULL && oneof[i] != NULL; i++) {
		if (strcasecmp(value, oneof[i]) == 0) {
			conf_line_note(conf_cur, cfg, opt->name,
				       conf_cfg_line(cfg));
			*(const char **)result = oneof[i];
			return 0;
		}
	}
	conf_key_name(cfg, opt->name, key, sizeof(key));
	conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" is not one of %s",
		  key, value != NULL ? value : "", list);
	return -1;
}

int
conf_bool_cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char key[CONF_KEY_MAX];
	int b = value != NULL ? cfg_parse_boolean(value) : -1;

	if (b == -1) {
		conf_key_name(cfg, opt->name, key, sizeof(key));
		conf_fail(conf_cur, conf_cfg_line(cfg),
			  "%s: \"%s\" is not true or false", key,
			  value != NULL ? value : "");
		return -1;
	}
	conf_line_note(conf_cur, cfg, opt->name, conf_cfg_line(cfg));
	*(int *)result = b;
	return 0;
}

/* ---- paths and copies for the build ---- */

/* Absolute IN with "." and empty components dropped ("/a/./b//" -> "/a/b"). */
static char *
conf_path_clean(const char *in)
{
	size_t o = 0, l;
	const char *p = in, *e;
	char *out;

	if ((out = malloc(strlen(in) + 2)) == NULL)
		return NULL;
	for (;;) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e != '\0' && *e != '/'; e++)
			;
		l = (size_t)(e - p);
		if (!(l == 1 && p[0] == '.')) {
			out[o++] = '/';
			memcpy(out + o, p, l);
			o += l;
		}
		p = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return out;
}

/*
 * P made absolute: as is when it starts with "/", else under BASE (or the
 * working directory when BASE is NULL).  NULL with the error recorded.
 */
char *
conf_path_abs(struct conf_ctx *x, cfg_t *sec, const char *key, const char *base,
	      const char *p)
{
	char cwd[PATH_MAX], joined[2 * PATH_MAX + 2];
	char name[CONF_KEY_MAX];
	char *out;
	int n;

	conf_key_name(sec, key, name, sizeof(name));
	if (p[0] == '/') {
		n = snprintf(joined, sizeof(joined), "%s", p);
	} else {
		if (base == NULL) {
			if (getcwd(cwd, sizeof(cwd)) == NULL) {
				conf_fail(x, conf_where(x, sec, key),
					  "%s: cannot make \"%s\" absolute: %s",
					  name, p, strerror(errno));
				return NULL;
			}
			base = cwd;
		}
		n = snprintf(joined, sizeof(joined), "%s/%s", base, p);
	}
	if (n < 0 || (size_t)n >= sizeof(joined)) {
		conf_fail(x, conf_where(x, sec, key), "%s: path too long",
			  name);
		return NULL;
	}
	if ((out = conf_path_clean(joined)) == NULL) {
		conf_fail(x, conf_where(x, sec, key), "out of memory");
		return NULL;
	}
	if (strlen(out) >= PATH_MAX) {
		conf_fail(x, conf_where(x, sec, key), "%s: path too long",
			  name);
		free(out);
		return NULL;
	}
	return out;
}

int
conf_path_get(struct conf_ctx *x, const struct conf *c, cfg_t *sec,
	      const char *key, char **out)
{
	const char *p = cfg_getstr(sec, key);

	*out = NULL;
	if (p == NULL)
		return 0;
	*out = conf_path_abs(x, sec, key, c->data_dir, p);
	return *out != NULL ? 0 : -1;
}

char *
conf_strdup(struct conf_ctx *x, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		conf_fail(x, 0, "out of memory");
	return d;
}

/*
 * conf_value_fail — the one report of a refused value: "KEY: \"VALUE\"
 * WHY" at the option's line (VALUE NULL prints as "").  Returns -1, what a
 * libconfuse callback returns for it.
 */
int
conf_value_fail(cfg_t *cfg, cfg_opt_t *opt, const char *value, const char *why)
{
	char key[CONF_KEY_MAX];

	conf_key_name(cfg, opt->name, key, sizeof(key));
	conf_fail(conf_cur, conf_cfg_line(cfg), "%s: \"%s\" %s", key,
		  value != NULL ? value : "", why);
	return -1;
}
