/*
 * scan_mime.c — the MIME leaf parts of a queued message (scan_mime_leaves):
 * which byte ranges a cached verdict may stand for.  Owns nothing past the
 * call.  Any thread; pure.  Must not: read past LEN (the message is a
 * client's), fail on malformed structure (what cannot be split stays one
 * leaf), split where a MIME reader could disagree (an unreadable header
 * block is not walked).  Invariants: leaves are in order, disjoint, inside
 * the message; at most MAX of them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mta/receive/mime_int.h"
#include "mta/receive/scan_cache.h"

#define SCAN_MIME_BOUNDARY_MAX 201 /* RFC 2046 says 70; some exceed */

/* One walk: the message, the leaves found, the field in hand. */
struct scan_walk {
	const uint8_t *msg;
	struct scan_part *parts;
	size_t max, n;
	char name[80];
	char value[SCAN_MIME_FIELD_MAX + 1];
};

/* What an entity's header block says of its content. */
enum scan_mime_kind {
	SMK_LEAF,      /* scanned as a whole */
	SMK_MULTIPART, /* walked, with the boundary found */
};

/* Store the leaf [S, E) typed by the header block at H; past MAX, the last
 * leaf stored grows to E (the rest of the message is one part). */
static void
scan_mime_leaf(struct scan_walk *w, const uint8_t *h, const uint8_t *s,
	       const uint8_t *e)
{
	struct scan_part *last;

	if (w->max == 0)
		return;
	if (w->n < w->max) {
		w->parts[w->n].hoff = (size_t)(h - w->msg);
		w->parts[w->n].off = (size_t)(s - w->msg);
		w->parts[w->n].len = (size_t)(e - s);
		w->n++;
		return;
	}
	last = &w->parts[w->max - 1];
	last->len = (size_t)(e - w->msg) - last->off;
}

/* Past the field at H->p (malformed): its line and its continuations. */
static void
scan_mime_field_skip(struct mime_hdrs *h)
{
	const uint8_t *line = h->p, *next;

	do {
		mime_line(line, h->end, &next);
		line = next;
	} while (line < h->end && (line[0] == ' ' || line[0] == '\t'));
	h->p = line;
}

/*
 * The header block at P (up to END): returns where the content starts (past
 * the blank line), or NULL when no blank line ends the block.  *KIND is
 * SMK_MULTIPART, with BOUNDARY, only for a block read whole with one
 * Content-Type multipart/... carrying a boundary.
 */
static const uint8_t *
scan_mime_headers(struct scan_walk *w, const uint8_t *p, const uint8_t *end,
		  char *boundary, size_t boundarylen, enum scan_mime_kind *kind)
{
	struct mime_hdrs h = { p, end, 0 };
	const uint8_t *at = p;
	const char *why;
	char type[64];
	unsigned ntype = 0;
	bool bad = false, split = false;
	int rc;

	*kind = SMK_LEAF;
	for (;;) {
		at = h.p;
		rc = mime_hdrs_next(&h, w->name, sizeof(w->name), w->value,
				    sizeof(w->value), SIZE_MAX, &why);
		if (rc == 0)
			break;
		if (rc < 0) {
			bad = true;
			scan_mime_field_skip(&h);
			continue;
		}
		if (strcmp(w->name, "content-type") != 0 || ntype++ > 0)
			continue;
		mime_media_type(w->value, type, sizeof(type));
		split = strncmp(type, "multipart/", 10) == 0 &&
			mime_param(w->value, "boundary", boundary,
				   boundarylen) == 1 &&
			boundary[0] != '\0';
	}
	if (at >= end)
		return NULL;
	if (split && !bad && ntype == 1)
		*kind = SMK_MULTIPART;
	return h.p;
}

static size_t scan_mime_entity(struct scan_walk *w, const uint8_t *p,
			       const uint8_t *end, unsigned depth);

/*
 * The body parts of the multipart content [P, END) with boundary B, each an
 * entity one level deeper.  Delimiter lines, the line break before each,
 * the preamble and the epilogue are framing.  Without a closing delimiter
 * the last part runs to END.  Returns the leaves found (0: no part).
 */
static size_t
scan_mime_multipart(struct scan_walk *w, const uint8_t *p, const uint8_t *end,
		    const char *b, unsigned depth)
{
	size_t blen = strlen(b), n, leaves = 0;
	const uint8_t *line = p, *next, *part = NULL, *pe;
	int kind;

	for (; line < end; line = next) {
		n = mime_line(line, end, &next);
		if ((kind = mime_delimiter(line, n, b, blen)) == 0)
			continue;
		if (part != NULL) {
			/* The line break before a delimiter is part of it
			 * (RFC 2046 5.1.1). */
			pe = line;
			if (pe > part && pe[-1] == '\n')
				pe--;
			if (pe > part && pe[-1] == '\r')
				pe--;
			leaves += scan_mime_entity(w, part, pe, depth + 1);
		}
		if (kind == 2)
			return leaves;
		part = next;
	}
	if (part != NULL)
		leaves += scan_mime_entity(w, part, end, depth + 1);
	return leaves;
}

/* The entity [P, END) (header block, then content) at DEPTH (0: the
 * message itself).  Returns the leaves found. */
static size_t
scan_mime_entity(struct scan_walk *w, const uint8_t *p, const uint8_t *end,
		 unsigned depth)
{
	char boundary[SCAN_MIME_BOUNDARY_MAX];
	enum scan_mime_kind kind;
	const uint8_t *c;
	size_t leaves;

	c = scan_mime_headers(w, p, end, boundary, sizeof(boundary), &kind);
	if (c == NULL || (depth == 0 && c == end)) {
		if (depth == 0)
			return 0; /* a message without a body */
		/* A part without a blank line: no header block to trust,
		 * all of it is content. */
		scan_mime_leaf(w, p, p, end);
		return 1;
	}
	if (kind == SMK_MULTIPART && depth < SCAN_MIME_DEPTH_MAX &&
	    (leaves = scan_mime_multipart(w, c, end, boundary, depth)) > 0)
		return leaves;
	scan_mime_leaf(w, p, c, end);
	return 1;
}

size_t
scan_mime_leaves(const uint8_t *msg, size_t len, struct scan_part *parts,
		 size_t max)
{
	struct scan_walk w;

	w.msg = msg;
	w.parts = parts;
	w.max = max;
	w.n = 0;
	if (len > 0)
		scan_mime_entity(&w, msg, msg + len, 0);
	return w.n;
}
