/*
 * conf_print.c — a parsed libconfuse tree printed back as outpost.conf text
 * (conf_print_cfg, for conf_print()): every key, or only those the file
 * set away from their defaults, sections with their titles.
 * Owns no state.  Thread: under conf_load's lock (conf.c), while the tree
 * it prints is alive; it parses nothing (libconfuse's lexer is global).
 * Must not: print a secret (a user's password hash), or read any file.
 * Invariants: what it prints parses back to the same configuration, but
 * for the users (their passwords show as comments).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf_int.h"

/* Keys whose value is never printed, whatever their section. */
static const char *const conf_print_secret[] = { "password" };

static bool
conf_print_is_secret(const char *name)
{
	size_t i;

	for (i = 0;
	     i < sizeof(conf_print_secret) / sizeof(conf_print_secret[0]); i++)
		if (strcmp(name, conf_print_secret[i]) == 0)
			return true;
	return false;
}

/* OPT's assignment as libconfuse prints it, into a new string (NULL: out
 * of memory).  An unset key comes out commented ("# key = ..."). */
static char *
conf_print_opt_text(cfg_opt_t *opt, int depth)
{
	char *text = NULL;
	size_t len = 0;
	FILE *ms;

	if ((ms = open_memstream(&text, &len)) == NULL)
		return NULL;
	if (cfg_opt_print_indent(opt, ms, depth) != 0) {
		fclose(ms);
		free(text);
		return NULL;
	}
	if (fclose(ms) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* S quoted as outpost.conf reads a string. */
static void
conf_print_quoted(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

static int conf_print_sec(cfg_t *sec, FILE *fp, bool all, bool titled,
			  int depth);

/* Does an empty SEC, of section kind OPT, say anything?  Every titled
 * section written says that it exists, but for destination "*": empty, it
 * is what the build adds when the file has none (the built-in defaults). */
static bool
conf_print_sec_says(cfg_opt_t *opt, cfg_t *sec)
{
	const char *title = cfg_title(sec);

	return (opt->flags & CFGF_MULTI) &&
	       !(strcmp(opt->name, "destination") == 0 && title != NULL &&
		 strcmp(title, "*") == 0);
}

/*
 * Section option OPT of a tree (every instance of it) on FP.  A section
 * that may appear once exists whether or not the file names it: without
 * ALL it is printed only when something in it differs.
 */
static int
conf_print_opt_sec(cfg_opt_t *opt, FILE *fp, bool all, int depth)
{
	char *body = NULL;
	size_t len = 0;
	unsigned i, n = cfg_opt_size(opt);
	cfg_t *sub;
	FILE *ms;
	int rc = -1;

	for (i = 0; i < n; i++) {
		sub = cfg_opt_getnsec(opt, i);
		if ((ms = open_memstream(&body, &len)) == NULL)
			return -1;
		if (conf_print_sec(sub, ms, all, (opt->flags & CFGF_TITLE) != 0,
				   depth + 1) != 0) {
			fclose(ms);
			goto done;
		}
		if (fclose(ms) != 0)
			goto done;
		if (len > 0 || all || conf_print_sec_says(opt, sub)) {
			fprintf(fp, "%*s%s ", depth * 2, "", opt->name);
			if ((opt->flags & CFGF_TITLE) &&
			    cfg_title(sub) != NULL) {
				conf_print_quoted(fp, cfg_title(sub));
				fputc(' ', fp);
			}
			fprintf(fp, "{\n%s%*s}\n", body, depth * 2, "");
		}
		free(body);
		body = NULL;
	}
	rc = ferror(fp) ? -1 : 0;
done:
	free(body);
	return rc;
}

/*
 * Does list OPT hold its default, DEF ("{a, b}" as the schema writes it,
 * or NULL for none)?  Compared value by value, quotes and spaces aside.
 */
static bool
conf_print_list_is_default(cfg_opt_t *opt, const char *def)
{
	const char *p = def, *tok, *v;
	unsigned i = 0, n = cfg_opt_size(opt);
	size_t len;

	if (def == NULL)
		return n == 0;
	while (*p == '{' || *p == ' ')
		p++;
	for (;;) {
		while (*p == ' ' || *p == '"')
			p++;
		if (*p == '}' || *p == '\0')
			break;
		for (tok = p; *p != ',' && *p != '}' && *p != '"' && *p != '\0';
		     p++)
			;
		len = (size_t)(p - tok);
		while (len > 0 && tok[len - 1] == ' ')
			len--;
		if (i >= n || opt->type != CFGT_STR ||
		    (v = cfg_opt_getnstr(opt, i)) == NULL || strlen(v) != len ||
		    strncmp(v, tok, len) != 0)
			return false;
		i++;
		while (*p == '"' || *p == ' ' || *p == ',')
			p++;
	}
	return i == n;
}

/* Does OPT hold the default its schema gives it?  (The tree's options
 * carry their schema's default: libconfuse copies it into each.) */
static bool
conf_print_is_default(cfg_opt_t *opt)
{
	const char *v;

	if (opt->flags & CFGF_LIST)
		return conf_print_list_is_default(opt, opt->def.parsed);
	switch (opt->type) {
	case CFGT_STR:
		v = cfg_opt_size(opt) > 0 ? cfg_opt_getnstr(opt, 0) : NULL;
		if (v == NULL || opt->def.string == NULL)
			return v == opt->def.string;
		return strcmp(v, opt->def.string) == 0;
	case CFGT_BOOL:
		return cfg_opt_size(opt) > 0 &&
		       cfg_opt_getnbool(opt, 0) == opt->def.boolean;
	case CFGT_INT:
		return cfg_opt_size(opt) > 0 &&
		       cfg_opt_getnint(opt, 0) == opt->def.number;
	case CFGT_FLOAT:
		return cfg_opt_size(opt) > 0 &&
		       cfg_opt_getnfloat(opt, 0) == opt->def.fpnumber;
	default:
		return false;
	}
}

/*
 * The keys and sections of SEC on FP, indented DEPTH levels.  Without ALL
 * a key is printed when the file set it to another value than the
 * default; in a TITLED section (destination "x", …) when the file set it
 * at all, since there the value left out is not the schema's but one
 * inherited (from destination "*", delivery { }, …).
 */
static int
conf_print_sec(cfg_t *sec, FILE *fp, bool all, bool titled, int depth)
{
	cfg_opt_t *opt;
	char *now;
	int i;

	for (i = 0; sec->opts[i].name != NULL; i++) {
		opt = &sec->opts[i];
		/* '|': the preprocessor's hidden line keys (CONF_OPT_LINE) */
		if (opt->type == CFGT_FUNC || opt->type == CFGT_NONE ||
		    opt->name[0] == '|' ||
		    (opt->flags & (CFGF_DEPRECATED | CFGF_DROP)))
			continue;
		if (opt->type == CFGT_SEC) {
			if (conf_print_opt_sec(opt, fp, all, depth) != 0)
				return -1;
			continue;
		}
		if (!all && (!(opt->flags & CFGF_MODIFIED) ||
			     (!titled && conf_print_is_default(opt))))
			continue;
		if (conf_print_is_secret(opt->name)) {
			fprintf(fp, "%*s# %s = (set; not shown)\n", depth * 2,
				"", opt->name);
			continue;
		}
		if ((opt->flags & CFGF_LIST) && cfg_opt_size(opt) == 0 &&
		    !(opt->flags & CFGF_MODIFIED)) {
			/* unset: "= {}" would set it empty, which some
			 * lists refuse (dkim_sign.headers) */
			fprintf(fp, "%*s# %s = {}\n", depth * 2, "", opt->name);
			continue;
		}
		if ((now = conf_print_opt_text(opt, depth)) == NULL)
			return -1;
		fputs(now, fp);
		free(now);
	}
	return ferror(fp) ? -1 : 0;
}

int
conf_print_cfg(cfg_t *cfg, FILE *fp, bool all)
{
	if (conf_print_sec(cfg, fp, all, false, 0) != 0)
		return -1;
	return fflush(fp) == 0 ? 0 : -1;
}
