/*
 * sink_rules.c — outpost-sink's behaviour rules: what a recipient's local
 * part makes the sink do (defer, reject, close, delay, fail the data…).
 *
 * Owns: the rule list (sink.rules) and the set of addresses a `once` rule
 * has seen (sink.once).  A rule is `PREFIX STAGE [REPLY]`; the longest
 * matching prefix wins and a rules-file rule beats a built-in of the same
 * length.  Single-threaded (the loop); rules are loaded before it starts.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "t/tools/sink_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

#define RULE_LINE_MAX 2048

static const struct {
	const char *name;
	enum sink_stage stage;
} rule_stages[] = {
	{ "rcpt", STAGE_RCPT },   { "once", STAGE_ONCE },
	{ "close", STAGE_CLOSE }, { "data", STAGE_DATA },
	{ "delay", STAGE_DELAY },
};

static int
rule_reply_check(const char *reply, int *code)
{
	size_t i;

	if (strlen(reply) < 3 || reply[0] < '2' || reply[0] > '5' ||
	    !isdigit((unsigned char)reply[1]) ||
	    !isdigit((unsigned char)reply[2]) ||
	    (reply[3] != '\0' && reply[3] != ' '))
		return -1;
	if (strlen(reply) > SINK_REPLY_MAX / 2)
		return -1;
	for (i = 0; reply[i] != '\0'; i++)
		if (reply[i] == '\r' || reply[i] == '\n')
			return -1;
	*code =
	    (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
	return 0;
}

static char *
rule_token(char **pp)
{
	char *p = *pp, *start;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return NULL;
	start = p;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	if (*p != '\0')
		*p++ = '\0';
	*pp = p;
	return start;
}

/*
 * sink_rules_add: parse one rule line `PREFIX STAGE [REPLY]` (PREFIX `*`
 * matches every recipient) and add it.  `builtin` marks the defaults.
 * Returns 0, or -1 with a message in err.
 */
int
sink_rules_add(const char *line, int builtin, char *err, size_t errlen)
{
	char buf[RULE_LINE_MAX], *p = buf, *prefix, *stage, *rest;
	const char *reply;
	struct sink_rule *r;
	size_t i, n;

	if (snprintf(buf, sizeof(buf), "%s", line) >= (int)sizeof(buf)) {
		snprintf(err, errlen, "rule too long");
		return -1;
	}
	if ((prefix = rule_token(&p)) == NULL ||
	    (stage = rule_token(&p)) == NULL) {
		snprintf(err, errlen, "want: PREFIX STAGE [REPLY]");
		return -1;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	rest = p;
	n = strlen(rest);
	while (n > 0 && (rest[n - 1] == ' ' || rest[n - 1] == '\t'))
		rest[--n] = '\0';
	reply = rest;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->builtin = builtin;
	for (i = 0; i < sizeof(rule_stages) / sizeof(rule_stages[0]); i++) {
		size_t len = strlen(rule_stages[i].name);

		if (strncmp(stage, rule_stages[i].name, len) == 0 &&
		    (stage[len] == '\0' || stage[len] == ':'))
			break;
	}
	if (i == sizeof(rule_stages) / sizeof(rule_stages[0])) {
		snprintf(
		    err, errlen,
		    "stage \"%s\": want rcpt, once, close, data or delay:MS",
		    stage);
		goto fail;
	}
	r->stage = rule_stages[i].stage;
	if (r->stage == STAGE_DELAY) {
		char *end;
		long ms;

		errno = 0;
		ms = stage[5] == ':' ? strtol(stage + 6, &end, 10) : -1;
		if (stage[5] != ':' || errno != 0 || *end != '\0' ||
		    end == stage + 6 || ms < 0 || ms > 3600000) {
			snprintf(err, errlen, "want delay:MS (0..3600000)");
			goto fail;
		}
		r->delay_ms = (int)ms;
	} else if (strchr(stage, ':') != NULL) {
		snprintf(err, errlen, "stage \"%s\" takes no argument", stage);
		goto fail;
	}
	if (*reply == '\0' && r->stage == STAGE_CLOSE)
		reply = "421 4.7.0 closing connection";
	if (*reply == '\0' && r->stage != STAGE_DELAY) {
		snprintf(err, errlen, "stage \"%s\" needs a reply", stage);
		goto fail;
	}
	if (*reply != '\0') {
		if (rule_reply_check(reply, &r->code) != 0) {
			snprintf(
			    err, errlen,
			    "reply \"%s\": want \"CODE TEXT\", CODE 2xx..5xx",
			    reply);
			goto fail;
		}
		if ((r->reply = strdup(reply)) == NULL)
			goto nomem;
	}
	if (strcmp(prefix, "*") == 0)
		prefix = "";
	if ((r->prefix = strdup(prefix)) == NULL)
		goto nomem;
	r->prefix_len = strlen(prefix);
	r->next = sink.rules;
	sink.rules = r;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	free(r->reply);
	free(r);
	return -1;
}

/*
 * sink_rules_load: add every rule of file `path` (blank lines and lines
 * starting with # are skipped).  Returns 0, or -1 with "path:line: message"
 * in err.
 */
int
sink_rules_load(const char *path, char *err, size_t errlen)
{
	char line[RULE_LINE_MAX], msg[512];
	FILE *f;
	int lineno = 0, rc = 0;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);
		char *p = line;

		lineno++;
		if (n > 0 && line[n - 1] != '\n' && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line too long", path,
				 lineno);
			rc = -1;
			break;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (sink_rules_add(p, 0, msg, sizeof(msg)) != 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

/*
 * sink_rules_match: the rule for recipient `addr` (the text between < and
 * >), or NULL.  The local part is everything before the last '@'.
 */
const struct sink_rule *
sink_rules_match(const char *addr)
{
	const struct sink_rule *r, *best = NULL;
	const char *at = strrchr(addr, '@');
	size_t local = at != NULL ? (size_t)(at - addr) : strlen(addr);

	/* A quoted local part ("defer me"@x) is matched inside the quotes. */
	if (local > 0 && addr[0] == '"') {
		addr++;
		local--;
	}
	for (r = sink.rules; r != NULL; r = r->next) {
		if (r->prefix_len > local ||
		    strncasecmp(addr, r->prefix, r->prefix_len) != 0)
			continue;
		if (best == NULL || r->prefix_len > best->prefix_len ||
		    (r->prefix_len == best->prefix_len && best->builtin &&
		     !r->builtin))
			best = r;
	}
	return best;
}

/*
 * sink_rules_format: expand `reply` into buf: %a becomes `addr`, %% a %.
 * Returns 0, or -1 if it did not fit (buf then holds a truncated text).
 */
int
sink_rules_format(const char *reply, const char *addr, char *buf, size_t size)
{
	size_t o = 0, alen = strlen(addr);
	const char *p;

	if (size == 0)
		return -1;
	for (p = reply; *p != '\0'; p++) {
		if (p[0] == '%' && (p[1] == 'a' || p[1] == '%')) {
			const char *s = p[1] == 'a' ? addr : "%";
			size_t n = p[1] == 'a' ? alen : 1;

			if (o + n >= size)
				goto full;
			memcpy(buf + o, s, n);
			o += n;
			p++;
			continue;
		}
		if (o + 1 >= size)
			goto full;
		buf[o++] = *p;
	}
	buf[o] = '\0';
	return 0;
full:
	buf[o] = '\0';
	return -1;
}

static uint64_t
once_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int
once_grow(void)
{
	size_t cap = sink.once_cap ? sink.once_cap * 2 : 1024, i;
	char **t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return -1;
	for (i = 0; i < sink.once_cap; i++) {
		size_t j;

		if (sink.once[i] == NULL)
			continue;
		j = (size_t)(once_hash(sink.once[i]) & (cap - 1));
		while (t[j] != NULL)
			j = (j + 1) & (cap - 1);
		t[j] = sink.once[i];
	}
	free(sink.once);
	sink.once = t;
	sink.once_cap = cap;
	return 0;
}

/*
 * sink_once_seen: 1 if exact address `addr` was seen by a `once` rule
 * before; else remember it and return 0.  Out of memory counts as seen
 * (the sink then accepts: a test would see a missing deferral, not a hang).
 */
int
sink_once_seen(const char *addr)
{
	size_t j;

	if ((sink.once_len + 1) * 2 > sink.once_cap && once_grow() != 0)
		return 1;
	j = (size_t)(once_hash(addr) & (sink.once_cap - 1));
	while (sink.once[j] != NULL) {
		if (strcmp(sink.once[j], addr) == 0)
			return 1;
		j = (j + 1) & (sink.once_cap - 1);
	}
	if ((sink.once[j] = strdup(addr)) == NULL)
		return 1;
	sink.once_len++;
	return 0;
}

/*
 * sink_rules_free: release the rules and the `once` set (at exit).
 */
void
sink_rules_free(void)
{
	struct sink_rule *r, *next;
	size_t i;

	for (r = sink.rules; r != NULL; r = next) {
		next = r->next;
		free(r->prefix);
		free(r->reply);
		free(r);
	}
	sink.rules = NULL;
	for (i = 0; i < sink.once_cap; i++)
		free(sink.once[i]);
	free(sink.once);
	sink.once = NULL;
	sink.once_cap = sink.once_len = 0;
}
