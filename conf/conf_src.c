/*
 * conf_src.c — configuration source preprocessor: reads a file and what it
 * include()s into the one buffer libconfuse parses, blanks comments (their
 * newlines stay), keeps the map from buffer lines to file:line.  Owns:
 * struct conf_src.  Thread: the caller's (conf_load() holds its mutex).
 * Invariants: no comment and no include() reach libconfuse, so it counts
 * lines right; each buffer line maps to one file line; braces pair up per
 * file; nesting <= CONF_SRC_DEPTH_MAX; bytes <= CONF_SRC_TOTAL_MAX_BYTES.
 * Tokens are recognised as libconfuse 3.3's lexer (lexer.l) does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf_int.h"

#define SRC_BRACES_MAX 32

/* What came last, to tell `include("x")` from a value that reads "include". */
enum src_last { SL_NONE, SL_ASSIGN, SL_OTHER };

struct src_scan {
	struct conf_src *src;
	const char *text;
	size_t len, i;
	unsigned file; /* index into src->files */
	unsigned line; /* line of text[i] in that file */
	int depth;
	enum src_last last;
	/*
	 * Open "{" of this file.  libconfuse takes the end of input for the
	 * end of an open section; we want "{" and "}" to pair up per file.
	 */
	unsigned braces;
	unsigned brace_line[SRC_BRACES_MAX]; /* the innermost ones kept */
	char *err;
	size_t errlen;
};

static int src_scan_text(struct conf_src *, unsigned, const char *, size_t, int,
			 char *, size_t);

static void src_fail(const struct src_scan *, unsigned, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* "file:line: message" into the caller's err. */
static void
src_fail(const struct src_scan *st, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	if (st->err == NULL || st->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(st->err, st->errlen, "%s:%u: %s", st->src->files[st->file],
		     line, msg);
	/* n >= errlen truncates: the file:line prefix is what must survive */
	if (n < 0)
		snprintf(st->err, st->errlen, "configuration error");
}

static int
src_fail_oom(const struct src_scan *st)
{
	src_fail(st, st->line, "out of memory");
	return -1;
}

static int
src_reserve(struct conf_src *src, size_t more)
{
	size_t want, cap;
	char *p;

	if (more > SIZE_MAX - src->len - 1)
		return -1;
	want = src->len + more + 1;
	if (want <= src->cap)
		return 0;
	cap = src->cap != 0 ? src->cap : 4096;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	if ((p = realloc(src->buf, cap)) == NULL)
		return -1;
	src->buf = p;
	src->cap = cap;
	return 0;
}

static int
src_put(struct conf_src *src, const char *p, size_t n)
{
	size_t k;

	if (src_reserve(src, n) != 0)
		return -1;
	memcpy(src->buf + src->len, p, n);
	for (k = 0; k < n; k++)
		src->newlines += p[k] == '\n';
	src->len += n;
	src->buf[src->len] = '\0';
	return 0;
}

static int
src_putc(struct conf_src *src, char c)
{
	return src_put(src, &c, 1);
}

/* From the next buffer line on, lines come from FILE starting at FILELINE. */
static int
src_seg(struct conf_src *src, unsigned file, unsigned fileline)
{
	struct conf_src_seg *s;
	unsigned bufline = src->newlines + 1;

	if (src->nsegs > 0 && src->segs[src->nsegs - 1].bufline == bufline) {
		s = &src->segs[src->nsegs - 1]; /* nothing emitted under it */
	} else {
		if (src->nsegs == src->segcap) {
			size_t cap = src->segcap != 0 ? src->segcap * 2 : 16;

			s = realloc(src->segs, cap * sizeof(*s));
			if (s == NULL)
				return -1;
			src->segs = s;
			src->segcap = cap;
		}
		s = &src->segs[src->nsegs++];
	}
	s->bufline = bufline;
	s->file = file;
	s->fileline = fileline;
	return 0;
}

static int
src_file_add(struct conf_src *src, const char *name, unsigned *idx)
{
	char *dup;

	if (src->nfiles == src->filecap) {
		size_t cap = src->filecap != 0 ? src->filecap * 2 : 8;
		char **f = realloc(src->files, cap * sizeof(*f));

		if (f == NULL)
			return -1;
		src->files = f;
		src->filecap = cap;
	}
	if ((dup = strdup(name)) == NULL)
		return -1;
	src->files[src->nfiles] = dup;
	*idx = (unsigned)src->nfiles++;
	return 0;
}

/* Read PATH whole.  -1 with *why = strerror() or a limit phrase. */
static int
src_read(const char *path, char **out, size_t *outlen, const char **why)
{
	char *buf = NULL, *p;
	size_t len = 0, cap = 0, n;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		*why = strerror(errno);
		return -1;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap != 0 ? cap * 2 : 8192;
			if ((p = realloc(buf, cap)) == NULL) {
				*why = "out of memory";
				goto fail;
			}
			buf = p;
		}
		n = fread(buf + len, 1, cap - len - 1, fp);
		len += n;
		if (len > CONF_SRC_FILE_MAX_BYTES) {
			*why = "file larger than 16 MiB";
			goto fail;
		}
		if (n == 0)
			break;
	}
	if (ferror(fp)) {
		*why = strerror(errno != 0 ? errno : EIO);
		goto fail;
	}
	fclose(fp);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail:
	fclose(fp);
	free(buf);
	return -1;
}

static bool
src_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A character of an unquoted string in libconfuse's lexer. */
static bool
src_is_tok(char c)
{
	return c != '\0' && strchr(" \t\n\r#\"'={}()+,*", c) == NULL;
}

static void
src_skip_space(struct src_scan *st, size_t *k, unsigned *line)
{
	while (*k < st->len && src_is_space(st->text[*k])) {
		if (st->text[*k] == '\n')
			(*line)++;
		(*k)++;
	}
}

/* Copy a quoted string starting at text[i] (the quote) to the buffer. */
static int
src_copy_string(struct src_scan *st)
{
	char q = st->text[st->i];
	unsigned start = st->line;
	size_t k = st->i + 1;

	while (k < st->len && st->text[k] != q) {
		if (st->text[k] == '\\' && k + 1 < st->len)
			k++; /* keep the escape; libconfuse decodes it */
		if (st->text[k] == '\n')
			st->line++;
		k++;
	}
	if (k >= st->len) {
		src_fail(st, start,
			 "unterminated string (a %c without its closing %c)", q,
			 q);
		return -1;
	}
	k++;
	if (src_put(st->src, st->text + st->i, k - st->i) != 0) {
		src_fail_oom(st);
		return -1;
	}
	st->i = k;
	st->last = SL_OTHER;
	return 0;
}

/* Blank a comment at text[i]; its newlines stay so lines keep count. */
static int
src_skip_comment(struct src_scan *st)
{
	unsigned start = st->line;
	bool block = st->text[st->i] == '/' && st->text[st->i + 1] == '*';
	size_t k = st->i + (block ? 2 : 1);

	if (!block) {
		while (k < st->len && st->text[k] != '\n')
			k++;
		st->i = k;
		return src_putc(st->src, ' ') == 0 ? 0 : src_fail_oom(st);
	}
	for (; k < st->len; k++) {
		if (st->text[k] == '*' && k + 1 < st->len &&
		    st->text[k + 1] == '/')
			break;
		if (st->text[k] == '\n') {
			st->line++;
			if (src_putc(st->src, '\n') != 0) {
				src_fail_oom(st);
				return -1;
			}
		}
	}
	if (k >= st->len) {
		src_fail(st, start, "unterminated /* comment");
		return -1;
	}
	st->i = k + 2;
	return src_putc(st->src, ' ') == 0 ? 0 : src_fail_oom(st);
}

/*
 * Read the argument of include( at text[*k] into a new string, quotes and
 * escapes removed, and move *k past the closing parenthesis.
 */
static char *
src_include_arg(struct src_scan *st, size_t *k, unsigned *line)
{
	const char *t = st->text;
	char *arg;
	size_t n = 0, j;

	src_skip_space(st, k, line);
	if ((arg = malloc(st->len - *k + 1)) == NULL)
		return NULL;
	if (*k < st->len && (t[*k] == '"' || t[*k] == '\'')) {
		char q = t[(*k)++];

		for (j = *k; j < st->len && t[j] != q && t[j] != '\n'; j++) {
			if (t[j] == '\\' && j + 1 < st->len && t[j + 1] != '\n')
				j++;
			arg[n++] = t[j];
		}
		if (j >= st->len || t[j] != q)
			goto bad;
		*k = j + 1;
	} else {
		for (j = *k; j < st->len && src_is_tok(t[j]); j++)
			arg[n++] = t[j];
		*k = j;
	}
	arg[n] = '\0';
	src_skip_space(st, k, line);
	if (n == 0 || *k >= st->len || t[*k] != ')')
		goto bad;
	(*k)++;
	return arg;
bad:
	arg[0] = '\0';
	return arg;
}

/* FILE relative to the directory of the including file FROM. */
static char *
src_resolve(const char *from, const char *file)
{
	const char *slash = strrchr(from, '/');
	size_t dl, fl = strlen(file);
	char *p;

	if (file[0] == '/' || slash == NULL)
		return strdup(file);
	dl = (size_t)(slash - from);
	if ((p = malloc(dl + 1 + fl + 1)) == NULL)
		return NULL;
	memcpy(p, from, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, file, fl + 1);
	return p;
}

/*
 * At text[i] is the word "include" followed by "(": splice in the file.
 * The text before it stays on its buffer line, the included text starts on
 * a new one, and what follows ")" continues on a line of its own that maps
 * back to this file.
 */
static int
src_include(struct src_scan *st, size_t k, unsigned line)
{
	unsigned at = st->line, idx;
	char *arg = NULL, *path = NULL, *text = NULL;
	const char *why;
	size_t len;
	int rc = -1;

	k++; /* the "(" */
	if ((arg = src_include_arg(st, &k, &line)) == NULL) {
		src_fail_oom(st);
		goto out;
	}
	if (arg[0] == '\0') {
		src_fail(st, at, "include: expected include(\"FILE\")");
		goto out;
	}
	if (st->depth + 1 > CONF_SRC_DEPTH_MAX) {
		src_fail(
		    st, at,
		    "include(\"%s\"): nested more than %d deep (does a file "
		    "include itself?)",
		    arg, CONF_SRC_DEPTH_MAX);
		goto out;
	}
	if ((path = src_resolve(st->src->files[st->file], arg)) == NULL) {
		src_fail_oom(st);
		goto out;
	}
	if (src_read(path, &text, &len, &why) != 0) {
		src_fail(st, at, "include(\"%s\"): %s: %s", arg, path, why);
		goto out;
	}
	st->src->total += len;
	if (st->src->total > CONF_SRC_TOTAL_MAX_BYTES) {
		src_fail(st, at,
			 "include(\"%s\"): configuration larger than 64 MiB",
			 arg);
		goto out;
	}
	if (src_file_add(st->src, path, &idx) != 0 ||
	    src_putc(st->src, '\n') != 0) {
		src_fail_oom(st);
		goto out;
	}
	if (src_scan_text(st->src, idx, text, len, st->depth + 1, st->err,
			  st->errlen) != 0)
		goto out;
	if ((st->src->len > 0 && st->src->buf[st->src->len - 1] != '\n' &&
	     src_putc(st->src, '\n') != 0) ||
	    src_seg(st->src, st->file, line) != 0) {
		src_fail_oom(st);
		goto out;
	}
	st->i = k;
	st->line = line;
	st->last = SL_NONE;
	rc = 0;
out:
	free(text);
	free(path);
	free(arg);
	return rc;
}

/* An unquoted word at text[i]; it may be include(…). */
static int
src_word(struct src_scan *st)
{
	size_t j = st->i, k;
	unsigned line;

	if (st->text[j] == '$' && j + 1 < st->len && st->text[j + 1] == '{') {
		/* ${VAR}: libconfuse substitutes the environment */
		const char *nl = memchr(st->text + j, '\n', st->len - j);
		const char *cl = memchr(st->text + j, '}', st->len - j);

		if (cl == NULL || (nl != NULL && nl < cl)) {
			src_fail(st, st->line, "unterminated ${");
			return -1;
		}
		j = (size_t)(cl - st->text) + 1;
	} else {
		while (j < st->len && src_is_tok(st->text[j]))
			j++;
		if (j == st->i)
			j++; /* "*": libconfuse skips it, so do we (verbatim) */
	}
	if (j - st->i == 7 && memcmp(st->text + st->i, "include", 7) == 0 &&
	    st->last != SL_ASSIGN) {
		k = j;
		line = st->line;
		src_skip_space(st, &k, &line);
		if (k < st->len && st->text[k] == '(')
			return src_include(st, k, line);
	}
	if (src_put(st->src, st->text + st->i, j - st->i) != 0) {
		src_fail_oom(st);
		return -1;
	}
	st->i = j;
	st->last = SL_OTHER;
	return 0;
}

/* One of = , + { } ( ): copied; braces must pair up within the file. */
static int
src_punct(struct src_scan *st, char c)
{
	if (c == '{') {
		if (st->braces < SRC_BRACES_MAX)
			st->brace_line[st->braces] = st->line;
		st->braces++;
	} else if (c == '}') {
		if (st->braces == 0) {
			src_fail(st, st->line, "} without a matching {");
			return -1;
		}
		st->braces--;
	}
	if (src_putc(st->src, c) != 0)
		return src_fail_oom(st);
	st->i++;
	st->last = c == '=' || c == ',' || c == '+' ? SL_ASSIGN : SL_OTHER;
	return 0;
}

/*
 * Preprocess TEXT (file FILE) into SRC.  One switch over the first byte of
 * each token, as a lexer is; splitting it would scatter the token rules.
 */
static int
src_scan_text(struct conf_src *src, unsigned file, const char *text, size_t len,
	      int depth, char *err, size_t errlen)
{
	struct src_scan st = {
		.src = src,
		.text = text,
		.len = len,
		.file = file,
		.line = 1,
		.depth = depth,
		.last = SL_NONE,
		.err = err,
		.errlen = errlen,
	};

	if (src_seg(src, file, 1) != 0) {
		src_fail_oom(&st);
		return -1;
	}
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		st.i = 3; /* a UTF-8 byte order mark, as some editors write */
	while (st.i < st.len) {
		char c = text[st.i];
		char next = st.i + 1 < st.len ? text[st.i + 1] : '\0';
		int rc = 0;

		switch (c) {
		case '\0':
			src_fail(&st, st.line,
				 "NUL byte (is this a text file?)");
			return -1;
		case '\n':
			st.line++;
			__attribute__((fallthrough)); /* gcc and clang */
		case ' ':
		case '\t':
		case '\r':
			rc = src_putc(src, c);
			st.i++;
			if (rc != 0)
				src_fail_oom(&st);
			break;
		case '#':
			rc = src_skip_comment(&st);
			break;
		case '"':
		case '\'':
			rc = src_copy_string(&st);
			break;
		case '{':
		case '}':
		case '=':
		case ',':
		case '+':
		case '(':
		case ')':
			rc = src_punct(&st, c);
			break;
		default:
			/*
			 * "/" + "/" or "*" at the start of a word opens a
			 * comment.  (libconfuse reads "//x" as a word; we take
			 * it for the comment it surely is.)
			 */
			if (c == '/' && (next == '/' || next == '*'))
				rc = src_skip_comment(&st);
			else
				rc = src_word(&st);
			break;
		}
		if (rc != 0)
			return -1;
	}
	if (st.braces > 0) {
		unsigned k =
		    st.braces <= SRC_BRACES_MAX ? st.braces : SRC_BRACES_MAX;

		src_fail(&st, st.brace_line[k - 1],
			 "{ without a matching } (the block opened here is not "
			 "closed)");
		return -1;
	}
	return 0;
}

int
conf_src_load(struct conf_src *src, const char *path, const char *text,
	      char *err, size_t errlen)
{
	char *owned = NULL;
	const char *why;
	unsigned idx;
	size_t len;
	int rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path == NULL)
		path = "(null)";
	if (text == NULL) {
		if (src_read(path, &owned, &len, &why) != 0) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen, "%s: %s", path, why);
			return -1;
		}
		text = owned;
	} else {
		len = strlen(text);
	}
	src->total = len;
	if (src_file_add(src, path, &idx) != 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	if (src_scan_text(src, idx, text, len, 0, err, errlen) != 0)
		goto out;
	/* fmemopen() of zero bytes fails on some libcs; never hand it one. */
	if (src_putc(src, '\n') != 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	rc = 0;
out:
	free(owned);
	return rc;
}

void
conf_src_where(const struct conf_src *src, unsigned bufline, const char **file,
	       unsigned *line)
{
	size_t lo = 0, hi = src->nsegs;

	*file = src->nfiles > 0 ? src->files[0] : "(configuration)";
	*line = 0;
	if (bufline == 0 || src->nsegs == 0)
		return;
	/* the last segment that starts at or before BUFLINE */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (src->segs[mid].bufline <= bufline)
			lo = mid;
		else
			hi = mid;
	}
	if (src->segs[lo].bufline > bufline)
		return;
	*file = src->files[src->segs[lo].file];
	*line = src->segs[lo].fileline + (bufline - src->segs[lo].bufline);
}

void
conf_src_free(struct conf_src *src)
{
	size_t i;

	for (i = 0; i < src->nfiles; i++)
		free(src->files[i]);
	free(src->files);
	free(src->segs);
	free(src->buf);
	memset(src, 0, sizeof(*src));
}
