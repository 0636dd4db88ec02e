/*
 * dsn_param.c — RFC 3461 parameters of MAIL and RCPT, parsed from peer
 * bytes (dsn_param.h).
 * Owns nothing; pure functions, any thread.  Must not: accept a form the
 * RFC does not allow (a lower-case hex digit, a bare '=' or '+', a decoded
 * control or 8-bit byte: these values end up in DSN header fields).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/queue.h"
#include "mta/receive/dsn_param.h"

static int
dsn_param_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
dsn_param_xtext(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	int hi, lo;
	unsigned char c;

	for (; *in != '\0'; in++) {
		c = (unsigned char)*in;
		if (c == '+') {
			if ((hi = dsn_param_hex(in[1])) < 0 ||
			    (lo = dsn_param_hex(in[2])) < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			in += 2;
			if (c < ' ' || c > '~')
				return -1;
		} else if (c < '!' || c > '~' || c == '=') {
			return -1;
		}
		if (n + 1 >= cap)
			return -1;
		out[n++] = (char)c;
	}
	if (cap == 0)
		return -1;
	out[n] = '\0';
	return 0;
}

int
dsn_param_envid(const char *in, char **out)
{
	char buf[DSN_ENVID_MAX_BYTES + 1];
	size_t n = strlen(in);

	*out = NULL;
	if (n == 0 || n > DSN_ENVID_MAX_BYTES ||
	    dsn_param_xtext(in, buf, sizeof(buf)) != 0)
		return -1;
	return (*out = strdup(buf)) != NULL ? 0 : -1;
}

int
dsn_param_orcpt(const char *in, char **out)
{
	/* RFC 5322 atext: an atom of the address type. */
	static const char atext[] = "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				    "!#$%&'*+-/=?^_`{|}~";
	char buf[DSN_ORCPT_MAX_BYTES + 1];
	const char *semi = strchr(in, ';');
	size_t tlen;

	*out = NULL;
	if (strlen(in) > DSN_ORCPT_MAX_BYTES || semi == NULL || semi == in ||
	    semi[1] == '\0')
		return -1;
	tlen = (size_t)(semi - in);
	if (strspn(in, atext) != tlen)
		return -1;
	memcpy(buf, in, tlen + 1); /* with the ';' */
	if (dsn_param_xtext(semi + 1, buf + tlen + 1, sizeof(buf) - tlen - 1) !=
	    0)
		return -1;
	return (*out = strdup(buf)) != NULL ? 0 : -1;
}

int
dsn_param_notify(const char *in, uint8_t *out)
{
	static const struct {
		const char *word;
		uint8_t bit;
	} words[] = { { "SUCCESS", QUEUE_NOTIFY_SUCCESS },
		      { "FAILURE", QUEUE_NOTIFY_FAILURE },
		      { "DELAY", QUEUE_NOTIFY_DELAY } };
	const char *p = in, *e;
	uint8_t v = 0, bit;
	size_t i, n;

	if (strcasecmp(in, "NEVER") == 0) {
		*out = QUEUE_NOTIFY_NEVER;
		return 0;
	}
	for (;;) {
		e = strchr(p, ',');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		bit = 0;
		for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (n == strlen(words[i].word) &&
			    strncasecmp(p, words[i].word, n) == 0)
				bit = words[i].bit;
		if (bit == 0 || (v & bit))
			return -1; /* unknown, empty, NEVER in a list, twice */
		v |= bit;
		if (e == NULL)
			break;
		p = e + 1;
	}
	*out = v;
	return 0;
}

int
dsn_param_ret(const char *in, uint32_t *out)
{
	if (strcasecmp(in, "FULL") == 0)
		*out = QUEUE_F_RET_FULL;
	else if (strcasecmp(in, "HDRS") == 0)
		*out = QUEUE_F_RET_HDRS;
	else
		return -1;
	return 0;
}
