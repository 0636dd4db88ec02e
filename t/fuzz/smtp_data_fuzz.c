/*
 * smtp_data_fuzz.c — libFuzzer harness for mta/receive/smtp_data.c, the
 * DATA/BDAT scanner, on untrusted message octets.  The first 4 octets choose
 * the mode (DATA or BDAT), the size limit, the caller's header size and a seed;
 * the rest is the input.  Property: fed in one piece and fed in pieces of
 * random sizes (from the seed) into output buffers of random room, the
 * scanner gives the same result, octets consumed, body, flags and state;
 * it consumes no more than given, writes no more than the room, reads no
 * octet past a piece (each piece is copied to a buffer of exactly its
 * size: ASan sees an over-read) and always progresses.  Checked too: the
 * body holds no bare CR/LF nor NUL, and in DATA mode without flags it is
 * the input unstuffed.  Seeds: t/fuzz/corpus/smtp_data.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/receive/smtp_data.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	enum smtp_data_result res;
	size_t used, out_len;
	uint8_t *out;
	struct smtp_data_scan sc;
};

static void
fuzz_die(const char *what)
{
	fprintf(stderr, "smtp_data_fuzz: %s\n", what);
	abort();
}

static uint32_t
fuzz_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Feed IN[0..N): pieces of 1..MAXPIECE octets (0: one piece), output room
 * of 1..MAXROOM a call (0: all of it), from the seed X. */
static void
fuzz_feed(const uint8_t *in, size_t n, bool dot, uint64_t hdr, uint64_t max,
	  uint32_t x, size_t maxpiece, size_t maxroom, struct run *r)
{
	size_t from = 0, cap = n + 2, u, o, room;
	bool stuck = false;

	memset(&r->sc, 0, sizeof(r->sc));
	smtp_data_start(&r->sc, dot, hdr, max);
	if ((r->out = malloc(cap)) == NULL)
		fuzz_die("out of memory");
	r->used = r->out_len = 0;
	r->res = SMTP_DATA_MORE;
	while (from < n && r->res == SMTP_DATA_MORE) {
		size_t len = n - from, off = 0;
		uint8_t *piece;

		if (maxpiece > 0 && len > 1 + fuzz_rand(&x) % maxpiece)
			len = 1 + x % maxpiece;
		if ((piece = malloc(len)) == NULL)
			fuzz_die("out of memory");
		memcpy(piece, in + from, len);
		for (;;) {
			room = cap - r->out_len;
			if (maxroom > 0 && room > 1 + fuzz_rand(&x) % maxroom)
				room = 1 + x % maxroom;
			if (stuck && room < 2 && cap - r->out_len >= 2)
				room = 2;
			r->res =
			    smtp_data_scan(&r->sc, piece + off, len - off, &u,
					   r->out + r->out_len, room, &o);
			if (u > len - off)
				fuzz_die("consumed more than given");
			if (o > room)
				fuzz_die("wrote past the room");
			off += u;
			r->out_len += o;
			if (r->res != SMTP_DATA_FULL)
				break;
			stuck = u == 0 && o == 0;
			if (stuck && room >= 2)
				fuzz_die("FULL without progress");
		}
		if (r->res == SMTP_DATA_MORE && off != len)
			fuzz_die("MORE with input left");
		if (!dot && r->res != SMTP_DATA_MORE)
			fuzz_die("BDAT mode ended or stopped");
		free(piece);
		from += off;
		r->used += off;
	}
	if (!dot && (o = smtp_data_finish(&r->sc)) > 0) {
		if (o != 2 || cap - r->out_len < 2)
			fuzz_die("finish");
		memcpy(r->out + r->out_len, "\r\n", 2);
		r->out_len += 2;
	}
}

/* No bare CR or LF, no NUL, in a body kept whole (DATA: up to the end). */
static void
fuzz_check_body(const struct run *r)
{
	size_t i;

	if (r->sc.bad & (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM))
		return;
	for (i = 0; i < r->out_len; i++) {
		uint8_t c = r->out[i];

		if (c == '\0')
			fuzz_die("NUL in the body");
		if (c == '\r' && (i + 1 == r->out_len || r->out[i + 1] != '\n'))
			fuzz_die("bare CR in the body");
		if (c == '\n' && (i == 0 || r->out[i - 1] != '\r'))
			fuzz_die("bare LF in the body");
	}
}

/* DATA mode, no flags: the body is the input up to CRLF.CRLF, each line's
 * leading dot removed. */
static void
fuzz_check_unstuffed(const uint8_t *in, const struct run *r)
{
	size_t i = 0, o = 0;
	bool bol = true;

	if (r->sc.bad != 0 || r->res != SMTP_DATA_END)
		return;
	while (i < r->used - 3) { /* all but ".\r\n" */
		if (bol && in[i] == '.')
			i++;
		if (o >= r->out_len || r->out[o] != in[i])
			fuzz_die("body is not the input unstuffed");
		bol = in[i] == '\n';
		i++;
		o++;
	}
	if (o != r->out_len)
		fuzz_die("body longer than the input unstuffed");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run one, cut;
	uint64_t max, hdr;
	uint32_t seed;
	bool dot;
	int k;

	if (size < 4)
		return 0;
	dot = !(data[0] & 1);
	/* A limit in reach of small inputs, or none. */
	max = data[1] == 0xff ? UINT64_MAX / 2 : (uint64_t)data[1] * 4;
	hdr = data[2] & 0x0f;
	seed = 0x9e3779b9u ^ data[3] ^ ((uint32_t)data[0] << 8) ^
	       ((uint32_t)size << 16);
	data += 4;
	size -= 4;

	fuzz_feed(data, size, dot, hdr, max, 0, 0, 0, &one);
	fuzz_check_body(&one);
	if (dot && hdr == 0 && max > size)
		fuzz_check_unstuffed(data, &one);
	for (k = 0; k < 4; k++) {
		static const size_t piece[] = { 1, 3, 17, 700 },
				    room[] = { 1, 0, 5, 64 };

		fuzz_feed(data, size, dot, hdr, max,
			  (seed + (uint32_t)k * 7919) | 1, piece[k], room[k],
			  &cut);
		if (cut.res != one.res || cut.used != one.used ||
		    cut.out_len != one.out_len ||
		    memcmp(cut.out, one.out, one.out_len) != 0 ||
		    cut.sc.bad != one.sc.bad ||
		    cut.sc.saw8bit != one.sc.saw8bit ||
		    cut.sc.pos != one.sc.pos ||
		    cut.sc.line_len != one.sc.line_len ||
		    cut.sc.size != one.sc.size)
			fuzz_die("pieces differ from one piece");
		free(cut.out);
	}
	free(one.out);
	return 0;
}
