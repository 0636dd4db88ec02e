/*
 * json.c — the one JSON string escaper and the terminal form of the same
 * bytes (json.h).
 * Owns nothing; every function is reentrant and runs on any thread.
 * Must not: write a byte of a string that is not valid UTF-8, or cut one
 * inside a character.  The delivery log escapes every text field here, so
 * runs of plain ASCII are copied whole rather than byte by byte.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "mta/core/json.h"

/* Bytes of a string that go out as they are (in JSON and on a terminal
 * alike, but for '"' and '\' in JSON). */
static bool
json_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/*
 * Length of the valid UTF-8 sequence of two bytes or more at S (N bytes
 * left), 0 if there is none: no overlong forms, no surrogates, nothing past
 * U+10FFFF (RFC 3629).
 */
static size_t
json_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

size_t
json_escape(const char *s, size_t len, char *out, size_t outlen, size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, j, k, n;
	const char *from;
	char esc[JSON_CHAR_MAX];

	while (i < len) {
		for (j = i; j < len && json_plain(p[j]); j++)
			;
		if (j > i) {
			k = j - i < outlen - o ? j - i : outlen - o;
			memcpy(out + o, s + i, k);
			o += k;
			i += k;
			if (i < j)
				break;
			continue;
		}
		from = esc;
		n = 1;
		if (p[i] == '"' || p[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)p[i];
			k = 2;
		} else if (p[i] < 0x80) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[p[i] >> 4];
			esc[5] = hex[p[i] & 15];
			k = 6;
		} else if ((n = json_utf8_len(p + i, len - i)) > 0) {
			from = s + i;
			k = n;
		} else {
			from = "\\ufffd";
			k = 6;
			n = 1;
		}
		if (k > outlen - o)
			break;
		memcpy(out + o, from, k);
		o += k;
		i += n;
	}
	*used = i;
	return o;
}

void
json_cat(char *buf, size_t size, size_t *off, const char *s)
{
	size_t len = strlen(s), used;

	if (*off + 1 < size)
		buf[(*off)++] = '"';
	/* Room is kept for the closing quote and the NUL. */
	if (*off + 2 < size)
		*off += json_escape(s, len, buf + *off, size - *off - 2, &used);
	if (*off + 1 < size)
		buf[(*off)++] = '"';
	buf[*off < size ? *off : size - 1] = '\0';
}

size_t
json_audit_record(char *buf, size_t size, int64_t time_ms, unsigned uid,
		  long pid, const char *user, const char *command,
		  const char *result)
{
	char when[40];
	int n;
	size_t off;

	json_time_fmt(time_ms, true, when, sizeof(when));
	n = snprintf(buf, size,
		     "{\"time\":\"%s\",\"time_ms\":%" PRId64
		     ",\"uid\":%u,\"pid\":%ld,\"user\":",
		     when, time_ms, uid, pid);
	off = n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
	json_cat(buf, size, &off, user);
	if (off + 12 < size) {
		memcpy(buf + off, ",\"command\":", 11);
		off += 11;
	}
	json_cat(buf, size, &off, command);
	if (off + 11 < size) {
		memcpy(buf + off, ",\"result\":", 10);
		off += 10;
	}
	json_cat(buf, size, &off, result);
	/* Leave room for the closing brace and LF even when cut. */
	if (off > size - 3)
		off = size - 3;
	buf[off++] = '}';
	buf[off++] = '\n';
	buf[off] = '\0';
	return off;
}

void
json_put(FILE *f, const char *s)
{
	char chunk[512];
	size_t len, used, n;

	if (s == NULL) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (len = strlen(s); len > 0; s += used, len -= used) {
		n = json_escape(s, len, chunk, sizeof(chunk), &used);
		fwrite(chunk, 1, n, f);
	}
	fputc('"', f);
}

void
json_term_put(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, left = strlen(s);

	while (left > 0) {
		for (n = 0; n < left &&
			    (json_plain(p[n]) || p[n] == '"' || p[n] == '\\');
		     n++)
			;
		if (n == 0 && p[0] >= 0x80)
			n = json_utf8_len(p, left);
		/* C1 controls are U+0080..U+009F: 0xc2 0x80..0x9f. */
		if (n == 0 || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			fprintf(f, "\\x%02x", n == 0 ? p[0] : p[1]);
			n = n == 0 ? 1 : 2;
		} else
			fwrite(p, 1, n, f);
		p += n;
		left -= n;
	}
}

void
json_time_fmt(int64_t ms, bool precise, char *buf, size_t size)
{
	struct tm tm;
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	char base[32];
	int n;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(base, sizeof(base),
		     precise ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S",
		     &tm) == 0) {
		n = snprintf(buf, size, "%" PRId64 "ms", ms);
	} else if (precise) {
		n = snprintf(buf, size, "%s.%03dZ", base,
			     (int)(((ms % 1000) + 1000) % 1000));
	} else
		n = snprintf(buf, size, "%s", base);
	if (n < 0 || (size_t)n >= size)
		buf[0] = '\0';
}
