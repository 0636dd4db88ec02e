/*
 * addr.c — SMTP path parsing (RFC 5321 4.1.2, RFC 6531 for UTF-8).
 *
 * Owns: the grammar of Path/Mailbox.  Reads untrusted bytes with explicit
 * bounds; never writes past struct addr_path.  Thread: any (pure).
 */
#include <string.h>

#include "mta/core/util.h"
#include "mta/receive/addr.h"

static bool
addr_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

/* Length of a valid UTF-8 sequence at P (at most N bytes), or 0. */
static size_t
addr_utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	len = p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
	if (n < len)
		return 0;
	cp = p[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* An 8-bit character at Q (before END): its length when UTF8_OK allows it
 * and it is valid UTF-8 (*UTF8 is then set), else 0 with *WHY = ADDR_UTF8. */
static size_t
addr_utf8_take(const unsigned char *q, const unsigned char *end, bool utf8_ok,
	       bool *utf8, enum addr_result *why)
{
	size_t u;

	if (!utf8_ok || (u = addr_utf8_len(q, (size_t)(end - q))) == 0) {
		*why = ADDR_UTF8;
		return 0;
	}
	*utf8 = true;
	return u;
}

/* Local part at P..END: Dot-string or Quoted-string.  Returns its length
 * or 0 when invalid; sets *utf8 when 8-bit bytes were seen. */
static size_t
addr_local_part(const unsigned char *p, const unsigned char *end, bool utf8_ok,
		bool *utf8, enum addr_result *why)
{
	const unsigned char *q = p;
	size_t u;

	if (q < end && *q == '"') {
		q++;
		while (q < end && *q != '"') {
			if (*q == '\\') {
				if (q + 1 >= end || q[1] < 0x20 || q[1] > 0x7e)
					return 0;
				q += 2;
			} else if (*q >= 0x80) {
				if ((u = addr_utf8_take(q, end, utf8_ok, utf8,
							why)) == 0)
					return 0;
				q += u;
			} else if (*q >= 0x20 && *q <= 0x7e) {
				q++;
			} else {
				return 0;
			}
		}
		if (q >= end)
			return 0;
		return (size_t)(q + 1 - p);
	}
	for (;;) {
		const unsigned char *atom = q;

		while (q < end) {
			if (addr_atext(*q)) {
				q++;
			} else if (*q >= 0x80) {
				if ((u = addr_utf8_take(q, end, utf8_ok, utf8,
							why)) == 0)
					return 0;
				q += u;
			} else {
				break;
			}
		}
		if (q == atom)
			return 0; /* empty atom: leading, trailing or double dot
				   */
		if (q < end && *q == '.') {
			q++;
			continue;
		}
		return (size_t)(q - p);
	}
}

/* Domain at P..END (LDH labels, or U-labels with SMTPUTF8). */
static bool
addr_domain(const unsigned char *p, const unsigned char *end, bool utf8_ok,
	    bool *utf8, enum addr_result *why)
{
	const unsigned char *q = p, *label;
	size_t u;

	if (p == end || (size_t)(end - p) > ADDR_DOMAIN_MAX)
		return false;
	for (;;) {
		label = q;
		while (q < end && *q != '.') {
			if ((*q >= 'a' && *q <= 'z') ||
			    (*q >= 'A' && *q <= 'Z') ||
			    (*q >= '0' && *q <= '9') || *q == '-') {
				q++;
			} else if (*q >= 0x80) {
				if ((u = addr_utf8_take(q, end, utf8_ok, utf8,
							why)) == 0)
					return false;
				q += u;
			} else {
				return false;
			}
		}
		if (q == label || q - label > 63 || *label == '-' ||
		    q[-1] == '-')
			return false;
		if (q == end)
			return true;
		q++; /* '.'; a trailing dot leaves an empty label: refused */
	}
}

enum addr_result
addr_path_parse(const char *s, bool null_ok, bool utf8_ok,
		struct addr_path *out, const char **rest)
{
	const unsigned char *p = (const unsigned char *)s, *close, *at, *end;
	enum addr_result why = ADDR_SYNTAX;
	size_t n;
	bool inq = false;

	memset(out, 0, sizeof(*out));
	while (*p == ' ')
		p++;
	if (*p != '<')
		return ADDR_SYNTAX;
	p++;
	/* Find the closing '>' outside a quoted string. */
	for (close = p; *close != '\0'; close++) {
		if (inq && *close == '\\' && close[1] != '\0')
			close++;
		else if (*close == '"')
			inq = !inq;
		else if (!inq && *close == '>')
			break;
	}
	if (*close != '>')
		return ADDR_SYNTAX;
	*rest = (const char *)close + 1;
	if (close == p) {
		if (!null_ok)
			return ADDR_SYNTAX;
		out->null = true;
		return ADDR_OK;
	}
	if (*p == '@')
		return ADDR_SOURCE_ROUTE;
	if ((size_t)(close - p) > ADDR_PATH_MAX)
		return ADDR_TOO_LONG;
	n = addr_local_part(p, close, utf8_ok, &out->utf8, &why);
	if (n == 0)
		return why;
	if (n > ADDR_LOCAL_MAX)
		return ADDR_TOO_LONG;
	at = p + n;
	if (at == close)
		return ADDR_NO_DOMAIN;
	if (*at != '@')
		return ADDR_SYNTAX;
	end = close;
	if (at + 1 < end && at[1] == '[')
		return ADDR_LITERAL;
	why = ADDR_SYNTAX;
	if (!addr_domain(at + 1, end, utf8_ok, &out->utf8, &why))
		return why;
	memcpy(out->mailbox, p, (size_t)(close - p));
	out->mailbox[close - p] = '\0';
	/* The domain has no final dot (addr_domain) and fits: copied whole. */
	util_domain_lower(out->mailbox + (at + 1 - p), out->domain,
			  sizeof(out->domain));
	return ADDR_OK;
}

const char *
addr_result_str(enum addr_result r)
{
	switch (r) {
	case ADDR_OK:
		return "ok";
	case ADDR_SYNTAX:
		return "syntax error in address";
	case ADDR_TOO_LONG:
		return "address too long";
	case ADDR_SOURCE_ROUTE:
		return "source routes are not accepted";
	case ADDR_LITERAL:
		return "address literals are not accepted";
	case ADDR_NO_DOMAIN:
		return "address has no domain";
	case ADDR_UTF8:
		return "8-bit address without SMTPUTF8";
	}
	return "bad address";
}
