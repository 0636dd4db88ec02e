/*
 * arf.c — the parser of feedback-loop reports (RFC 5965): MIME structure,
 * the machine-readable part, the returned message's header block.
 * Owns nothing past arf_parse()'s return.  Any thread; no global state.
 * Must not: read past LEN (every byte is a provider's, or an attacker's:
 * the feedback address takes mail from anyone), keep a field past its
 * buffer without saying so, call a report good that has no Feedback-Type
 * while claiming to be one.  Invariants: every string in struct arf_report
 * is NUL-terminated and free of control characters.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "mta/receive/arf.h"
#include "mta/receive/mime_int.h"

/* One parse: the unfolded field in hand and the reason of a failure. */
struct arf_ctx {
	struct arf_report *r;
	char name[80];
	char value[ARF_FIELD_MAX_BYTES + 1];
	const char *why;
	bool have_report, have_returned;
	size_t nparts;
};

/* The next field of H into X->name and X->value (mime_hdrs_next). */
static int
arf_hdrs_next(struct arf_ctx *x, struct mime_hdrs *h)
{
	return mime_hdrs_next(h, x->name, sizeof(x->name), x->value,
			      sizeof(x->value), ARF_FIELDS_MAX, &x->why);
}

/* S without leading and trailing white space, into OUT (cut; a tab as a
 * space, other control characters as '?'); ANGLE: one pair of surrounding <>
 * removed too. */
static void
arf_keep(const char *s, bool angle, char *out, size_t outlen)
{
	size_t n, i;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (angle && n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s++;
		n -= 2;
	}
	if (n >= outlen)
		n = outlen - 1;
	for (i = 0; i < n; i++)
		out[i] = s[i] == '\t'                                 ? ' '
			 : (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?'
								      : s[i];
	out[n] = '\0';
}

/* One bare address "local@domain" taken from a To: value (its "<…>" when
 * there is one), or "" for a list, a group, or anything else. */
static void
arf_keep_to(const char *v, char *out, size_t outlen)
{
	const char *lt = strchr(v, '<'), *gt, *at;
	char tmp[ARF_VALUE_MAX];

	out[0] = '\0';
	if (strchr(v, ',') != NULL || strchr(v, ';') != NULL)
		return;
	if (lt != NULL) {
		if ((gt = strchr(lt, '>')) == NULL ||
		    (size_t)(gt - lt) >= sizeof(tmp))
			return;
		memcpy(tmp, lt + 1, (size_t)(gt - lt - 1));
		tmp[gt - lt - 1] = '\0';
	} else {
		arf_keep(v, false, tmp, sizeof(tmp));
	}
	at = strchr(tmp, '@');
	if (at == NULL || at == tmp || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL || strpbrk(tmp, " \t\"()") != NULL)
		return;
	arf_keep(tmp, false, out, outlen);
}

/* Quoted-printable (RFC 2045 6.7) into OUT (at least LEN bytes): soft
 * breaks removed, "=XX" decoded, a stray '=' kept as it is (6.7 (1)). */
static size_t
arf_qp_decode(const uint8_t *p, size_t len, uint8_t *out)
{
	size_t i = 0, n = 0, one;

	while (i < len) {
		if (p[i] != '=') {
			out[n++] = p[i++];
			continue;
		}
		if (i + 1 < len && p[i + 1] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n') {
			i += 3;
			continue;
		}
		if (i + 2 < len &&
		    sodium_hex2bin(out + n, 1, (const char *)p + i + 1, 2, NULL,
				   &one, NULL) == 0 &&
		    one == 1) {
			n++;
			i += 3;
			continue;
		}
		out[n++] = p[i++];
	}
	return n;
}

/*
 * The body [P, P+LEN) of a part decoded by its Content-Transfer-Encoding
 * CTE into *OUT (malloc'd) and *OUTLEN.  0, or -1 (X->why): an unknown
 * encoding, base64 that is not (bad characters, cut short).
 */
static int
arf_decode(struct arf_ctx *x, const char *cte, const uint8_t *p, size_t len,
	   uint8_t **out, size_t *outlen)
{
	char enc[32];

	mime_media_type(cte, enc, sizeof(enc));
	if ((*out = malloc(len + 1)) == NULL) {
		x->why = "out of memory";
		return -1;
	}
	if (enc[0] == '\0' || strcmp(enc, "7bit") == 0 ||
	    strcmp(enc, "8bit") == 0 || strcmp(enc, "binary") == 0) {
		memcpy(*out, p, len);
		*outlen = len;
		return 0;
	}
	if (strcmp(enc, "quoted-printable") == 0) {
		*outlen = arf_qp_decode(p, len, *out);
		return 0;
	}
	if (strcmp(enc, "base64") == 0) {
		if (sodium_base642bin(*out, len + 1, (const char *)p, len,
				      " \t\r\n", outlen, NULL,
				      sodium_base64_VARIANT_ORIGINAL) == 0)
			return 0;
		x->why = "bad or truncated base64 in a part";
	} else {
		x->why = "unknown Content-Transfer-Encoding";
	}
	free(*out);
	*out = NULL;
	return -1;
}

/* How a field is kept: where in struct arf_report, and how. */
enum arf_keep_how { AK_TEXT, AK_ADDR /* <> removed */, AK_TO };

static const struct arf_field {
	const char *name; /* lower-case */
	size_t off, size;
	enum arf_keep_how how;
	bool returned; /* of the returned message, else of the report part */
} arf_fields[] = {
#define AF(n, f, h, ret)                                                       \
	{                                                                      \
		n, offsetof(struct arf_report, f),                             \
		    sizeof(((struct arf_report *)0)->f), h, ret                \
	}
	AF("feedback-type", feedback_type, AK_TEXT, false),
	AF("user-agent", user_agent, AK_TEXT, false),
	AF("version", version, AK_TEXT, false),
	AF("original-rcpt-to", original_rcpt_to, AK_ADDR, false),
	AF("original-mail-from", original_mail_from, AK_ADDR, false),
	AF("arrival-date", arrival_date, AK_TEXT, false),
	AF("received-date", arrival_date, AK_TEXT, false), /* draft ARF */
	AF("source-ip", source_ip, AK_TEXT, false),
	AF("reported-domain", reported_domain, AK_TEXT, false),
	AF("x-outpost-fb", fb_id, AK_TEXT, true),
	AF("feedback-id", feedback_id, AK_TEXT, true),
	AF("to", returned_to, AK_TO, true),
	AF("x-hmxmroriginalrecipient", hotmail_rcpt, AK_ADDR, true), /* JMRP */
#undef AF
};

/* The field in X (name, value) into X->r when it is one of RETURNED's
 * kind and its slot is still empty: the first (topmost) one wins. */
static void
arf_field_keep(struct arf_ctx *x, bool returned)
{
	const struct arf_field *f;
	char *slot;
	size_t i;

	for (i = 0; i < sizeof(arf_fields) / sizeof(arf_fields[0]); i++) {
		f = &arf_fields[i];
		if (f->returned != returned || strcmp(f->name, x->name) != 0)
			continue;
		slot = (char *)x->r + f->off;
		if (slot[0] != '\0')
			return;
		if (f->how == AK_TO)
			arf_keep_to(x->value, slot, f->size);
		else
			arf_keep(x->value, f->how == AK_ADDR, slot, f->size);
		return;
	}
}

/* The machine-readable part: its fields into X->r. */
static int
arf_report_fields(struct arf_ctx *x, const uint8_t *p, size_t len)
{
	struct arf_report *r = x->r;
	struct mime_hdrs h = { p, p + len, 0 };
	int rc;
	size_t i;

	/* Some put an empty line first. */
	while (h.p < h.end && (*h.p == '\r' || *h.p == '\n'))
		h.p++;
	while ((rc = arf_hdrs_next(x, &h)) == 1)
		arf_field_keep(x, false);
	if (rc < 0)
		return -1;
	for (i = 0; r->feedback_type[i] != '\0'; i++) {
		char c = r->feedback_type[i];

		if (c >= 'A' && c <= 'Z')
			r->feedback_type[i] = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   c == '-' || c == '_' || c == '.'))
			break;
	}
	if (r->feedback_type[0] == '\0' || r->feedback_type[i] != '\0') {
		x->why = "feedback-report part without a valid Feedback-Type";
		return -1;
	}
	x->have_report = true;
	return 0;
}

/* The returned message's header block (the body of a message/rfc822 part
 * is a message; of text/rfc822-headers, a header block). */
static int
arf_returned(struct arf_ctx *x, const uint8_t *p, size_t len)
{
	struct mime_hdrs h = { p, p + len, 0 };
	const uint8_t *next;
	int rc;

	while (h.p < h.end && (*h.p == '\r' || *h.p == '\n'))
		h.p++;
	/* An mbox separator line some providers leave in front. */
	if (h.end - h.p > 5 && memcmp(h.p, "From ", 5) == 0) {
		mime_line(h.p, h.end, &next);
		h.p = next;
	}
	while ((rc = arf_hdrs_next(x, &h)) == 1)
		arf_field_keep(x, true);
	if (rc < 0)
		return -1;
	if (h.nfields == 0) {
		x->why = "returned message has no header fields";
		return -1;
	}
	x->have_returned = true;
	return 0;
}

/* One entity (a part, or the top-level message's body typed by its own
 * fields): its type decides what is read from it. */
static int
arf_entity(struct arf_ctx *x, const char *type, const char *cte,
	   const uint8_t *body, size_t len)
{
	uint8_t *dec = NULL;
	size_t dlen = 0;
	int rc = 0;
	bool report = strcmp(type, "message/feedback-report") == 0;
	bool returned = strcmp(type, "message/rfc822") == 0 ||
			strcmp(type, "text/rfc822-headers") == 0 ||
			strcmp(type, "message/rfc822-headers") == 0;

	if ((!report || x->have_report) && (!returned || x->have_returned))
		return 0; /* text parts, images, a second copy: not read */
	if (arf_decode(x, cte, body, len, &dec, &dlen) != 0)
		return -1;
	rc = report ? arf_report_fields(x, dec, dlen)
		    : arf_returned(x, dec, dlen);
	free(dec);
	return rc;
}

/* A part's own header block: its Content-Type and CTE values. */
static int
arf_part_fields(struct arf_ctx *x, struct mime_hdrs *h, char *type,
		size_t typelen, char *cte, size_t ctelen, char *ctv,
		size_t ctvlen)
{
	int rc;

	type[0] = cte[0] = '\0';
	if (ctv != NULL)
		ctv[0] = '\0';
	while ((rc = arf_hdrs_next(x, h)) == 1) {
		if (strcmp(x->name, "content-type") == 0 && !type[0]) {
			mime_media_type(x->value, type, typelen);
			if (ctv != NULL)
				arf_keep(x->value, false, ctv, ctvlen);
		} else if (strcmp(x->name, "content-transfer-encoding") == 0 &&
			   !cte[0]) {
			arf_keep(x->value, false, cte, ctelen);
		}
	}
	return rc;
}

/* The parts of a multipart body [P, END) with BOUNDARY, each handed to
 * arf_entity. */
static int
arf_multipart(struct arf_ctx *x, const uint8_t *p, const uint8_t *end,
	      const char *boundary)
{
	size_t blen = strlen(boundary), n;
	const uint8_t *line = p, *next, *part = NULL;
	char type[80], cte[64];
	int kind;

	while (line < end) {
		n = mime_line(line, end, &next);
		kind = mime_delimiter(line, n, boundary, blen);
		if (kind != 0) {
			if (part != NULL) {
				/* The line break before a delimiter is
				 * part of it (RFC 2046 5.1.1). */
				const uint8_t *pe = line;
				struct mime_hdrs h;

				if (pe > part && pe[-1] == '\n')
					pe--;
				if (pe > part && pe[-1] == '\r')
					pe--;
				if (pe < part)
					pe = part;
				h = (struct mime_hdrs){ part, pe, 0 };
				if (arf_part_fields(x, &h, type, sizeof(type),
						    cte, sizeof(cte), NULL,
						    0) < 0 ||
				    arf_entity(x, type[0] ? type : "text/plain",
					       cte, h.p,
					       (size_t)(pe - h.p)) != 0)
					return -1;
			}
			if (kind == 2 && x->nparts == 0) {
				x->why = "multipart without parts";
				return -1;
			}
			if (kind == 2)
				return 0;
			if (++x->nparts > ARF_PARTS_MAX) {
				x->why = "too many MIME parts";
				return -1;
			}
			part = next;
		}
		line = next;
	}
	if (part == NULL) {
		x->why = "no MIME part with the declared boundary";
		return -1;
	}
	/* No closing delimiter: the last part runs to the end. */
	x->r->truncated = true;
	{
		struct mime_hdrs h = { part, end, 0 };

		if (arf_part_fields(x, &h, type, sizeof(type), cte, sizeof(cte),
				    NULL, 0) < 0 ||
		    arf_entity(x, type[0] ? type : "text/plain", cte, h.p,
			       (size_t)(end - h.p)) != 0)
			return -1;
	}
	return 0;
}

static void
arf_err(char *err, size_t errlen, const char *why)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", why);
}

int
arf_parse(const uint8_t *data, size_t len, struct arf_report *r, char *err,
	  size_t errlen)
{
	struct arf_ctx *x;
	struct mime_hdrs h = { data, data + len, 0 };
	char type[80], cte[64], ctv[ARF_VALUE_MAX], boundary[ARF_BOUNDARY_MAX],
	    rtype[64];
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (len > ARF_REPORT_MAX_BYTES) {
		arf_err(err, errlen, "report too large");
		return -1;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		arf_err(err, errlen, "out of memory");
		return -1;
	}
	x->r = r;
	x->why = "malformed report";
	if (arf_part_fields(x, &h, type, sizeof(type), cte, sizeof(cte), ctv,
			    sizeof(ctv)) < 0)
		goto done;
	if (strncmp(type, "multipart/", 10) == 0) {
		int b = mime_param(ctv, "boundary", boundary, sizeof(boundary));

		if (b <= 0 || boundary[0] == '\0') {
			x->why = b < 0 ? "malformed boundary parameter"
				       : "multipart without a boundary";
			goto done;
		}
		if (arf_multipart(x, h.p, data + len, boundary) != 0)
			goto done;
	} else if (strcmp(type, "message/rfc822") == 0) {
		if (arf_entity(x, type, cte, h.p, (size_t)(data + len - h.p)) !=
		    0)
			goto done;
	} else {
		x->why = "not a multipart report nor a returned message";
		goto done;
	}
	if (!x->have_returned) {
		x->why = "no returned message part";
		goto done;
	}
	if (x->have_report) {
		r->shape = ARF_SHAPE_RFC5965;
	} else {
		/* A declared feedback-report without its part is broken, not
		 * another provider's shape. */
		if (strcmp(type, "multipart/report") == 0 &&
		    mime_param(ctv, "report-type", rtype, sizeof(rtype)) == 1 &&
		    strcasecmp(rtype, "feedback-report") == 0) {
			x->why = "feedback-report without its "
				 "message/feedback-report part";
			goto done;
		}
		r->shape = ARF_SHAPE_RETURNED;
		snprintf(r->feedback_type, sizeof(r->feedback_type), "abuse");
	}
	rc = 0;
done:
	if (rc != 0) {
		arf_err(err, errlen, x->why);
		memset(r, 0, sizeof(*r));
	}
	free(x);
	return rc;
}
