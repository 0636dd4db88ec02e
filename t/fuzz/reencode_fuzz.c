/*
 * reencode_fuzz.c — libFuzzer harness for dkim/reencode.c on untrusted
 * message bytes (any octets: bare CR/LF and NUL too, though outpostd's
 * DATA scanner lets none through).  Invariants checked: the result is one
 * of the enum; REENCODE_UNCHANGED iff no line is over 998 octets; an
 * output never passes the limit, has no line over 998 octets and is left
 * unchanged by a second pass; a single-part message (no Content-Type nor
 * Content-Transfer-Encoding, header within the limit) decodes back to its
 * body, octet for octet.  Seeds: t/fuzz/corpus/reencode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim/dkim.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_die(const char *what)
{
	fprintf(stderr, "reencode_fuzz: %s\n", what);
	abort();
}

static int
fuzz_long(const uint8_t *p, size_t n)
{
	size_t i, col = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			col = 0;
			i++;
		} else if (++col > REENCODE_LINE_MAX)
			return 1;
	}
	return 0;
}

static const uint8_t *
fuzz_find(const uint8_t *p, size_t n, const char *s, int ci)
{
	size_t k = strlen(s), i;

	for (i = 0; i + k <= n; i++)
		if (ci ? strncasecmp((const char *)p + i, s, k) == 0
		       : memcmp(p + i, s, k) == 0)
			return p + i;
	return NULL;
}

static int
fuzz_hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The strict decoder of what reencode_message() writes: "=\r\n" and "=XX"
 * (upper case) only.  Returns the decoded length, or -1. */
static long
fuzz_qp_decode(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (p[i] != '=') {
			out[o++] = p[i];
			continue;
		}
		if (i + 2 >= n)
			return -1;
		if (p[i + 1] == '\r' && p[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (fuzz_hex(p[i + 1]) < 0 || fuzz_hex(p[i + 2]) < 0)
			return -1;
		out[o++] =
		    (uint8_t)(fuzz_hex(p[i + 1]) * 16 + fuzz_hex(p[i + 2]));
		i += 2;
	}
	return (long)o;
}

/* Every line of P[0..N) (CRLF-separated) starts a field: "name:". */
static int
fuzz_plain_fields(const uint8_t *p, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		for (k = i; k < n && p[k] != ':'; k++)
			if (p[k] < 33 || p[k] > 126)
				return 0;
		if (k == i || k == n)
			return 0;
		while (i < n &&
		       !(p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))
			i++;
		i += 2;
	}
	return 1;
}

/* A message without MIME fields: its body comes back from the output. */
static void
fuzz_round_trip(const uint8_t *in, size_t n, const uint8_t *out, size_t on)
{
	const uint8_t *hs = fuzz_find(in, n, "\r\n\r\n", 0), *os, *b;
	size_t hn, bn;
	uint8_t *dec;
	long dn;

	if (hs == NULL || in[0] == '\r')
		return;
	hn = (size_t)(hs - in) + 4;
	if (fuzz_long(in, hn) || fuzz_find(in, hn, "content-", 1) != NULL ||
	    !fuzz_plain_fields(in, hn - 4))
		return; /* folded, MIME or odd header: not this check's */
	b = hs + 4;
	bn = n - hn;
	if (!fuzz_long(b, bn))
		return;
	if ((os = fuzz_find(out, on, "\r\n\r\n", 0)) == NULL)
		fuzz_die("output lost the header/body separator");
	if (fuzz_find(out, (size_t)(os - out) + 2,
		      "\r\nContent-Transfer-Encoding: quoted-printable\r\n",
		      0) == NULL)
		fuzz_die("re-encoded single part without its CTE field");
	if ((dec = malloc(on + 1)) == NULL)
		fuzz_die("out of memory");
	dn = fuzz_qp_decode(os + 4, on - (size_t)(os + 4 - out), dec);
	if (dn < 0 || (size_t)dn != bn || memcmp(dec, b, bn) != 0)
		fuzz_die("single part does not decode to its body");
	free(dec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max = size * 4 + 1024, on, on2;
	uint8_t *out, *out2;
	char why[200];
	enum reencode_result rc;

	rc = reencode_message(data, size, max, &out, &on, why, sizeof(why));
	switch (rc) {
	case REENCODE_UNCHANGED:
		if (fuzz_long(data, size) || out != NULL)
			fuzz_die("unchanged despite a long line");
		return 0;
	case REENCODE_TOO_BIG:
	case REENCODE_REFUSED:
	case REENCODE_NOMEM:
		if (out != NULL || why[0] == '\0')
			fuzz_die("refusal with output or without reason");
		return 0;
	case REENCODE_OK:
		break;
	default:
		fuzz_die("unknown result");
	}
	if (on > max)
		fuzz_die("output over the limit");
	if (fuzz_long(out, on))
		fuzz_die("output line over 998 octets");
	if (reencode_message(out, on, max, &out2, &on2, why, sizeof(why)) !=
	    REENCODE_UNCHANGED)
		fuzz_die("second pass not a no-op");
	fuzz_round_trip(data, size, out, on);
	free(out);
	return 0;
}
