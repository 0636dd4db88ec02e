/*
 * smtp_data.c — the message data scanner (DATA and BDAT): see smtp_data.h.
 */
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "mta/receive/smtp_data.h"

#define SMTP_TEXT_LINE_MAX 1000 /* RFC 5321 4.5.3.1.6, with CRLF */

void
smtp_data_start(struct smtp_data_scan *sc, bool dot, uint64_t size,
		uint64_t max_size)
{
	sc->pos = SMTP_DATA_BOL;
	sc->dot = dot;
	sc->line_len = 0;
	sc->size = size;
	sc->max_size = max_size;
}

/* Still keeping body octets (not over the size, the caller has memory)? */
static bool
smtp_data_keeping(const struct smtp_data_scan *sc)
{
	return !(sc->bad & (SMTP_DATA_BAD_SIZE | SMTP_DATA_BAD_NOMEM |
			    SMTP_DATA_BAD_HEADER));
}

/* How many of N more body octets fit under the size limit. */
static size_t
smtp_data_fit(const struct smtp_data_scan *sc, size_t n)
{
	if (sc->size >= sc->max_size)
		return 0;
	return sc->max_size - sc->size < n ? (size_t)(sc->max_size - sc->size)
					   : n;
}

/*
 * The length of the run at P (N octets) before its first CR, LF or NUL;
 * *HI gets 0x80 when an octet of the run has its high bit set.  Sixteen
 * octets at a time where SSE2 is (every x86-64): the byte loop alone was
 * 12% of the CPU of a 100 KB relay.  t/unit/smtp_data_test holds it to the
 * byte loop (the same input fed whole and one octet at a time).
 */
static size_t
smtp_data_span(const uint8_t *p, size_t n, unsigned *hi)
{
	size_t i = 0;
	unsigned h = 0;
#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n'),
		      nul = _mm_setzero_si128();
	__m128i acc = _mm_setzero_si128(), v;
	unsigned stop;

	for (; i + 16 <= n; i += 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		stop = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
		    _mm_cmpeq_epi8(v, nul)));
		if (stop != 0) {
			unsigned k = (unsigned)__builtin_ctz(stop);

			/* the high bits of the octets before the stop */
			if ((unsigned)_mm_movemask_epi8(v) & ((1u << k) - 1))
				h = 0x80;
			i += k;
			goto out;
		}
		acc = _mm_or_si128(acc, v);
	}
#endif
	for (; i < n; i++) {
		uint8_t c = p[i];

		if (c == '\r' || c == '\n' || c == '\0')
			break;
		h |= c;
	}
#ifdef __SSE2__
out:
	if (_mm_movemask_epi8(acc) != 0)
		h = 0x80;
#endif
	*hi |= h & 0x80;
	return i;
}

/*
 * One loop over the input, a state per octet only at line boundaries: the
 * run of a line up to its next CR, LF or NUL is found by a tight loop and
 * copied at once (the hot path of every message received).
 */
enum smtp_data_result
smtp_data_scan(struct smtp_data_scan *sc, const uint8_t *in, size_t n,
	       size_t *used, uint8_t *out, size_t room, size_t *out_len)
{
	enum smtp_data_result r = SMTP_DATA_MORE;
	size_t i = 0, o = 0, span, take, fit;
	unsigned hi;

	while (i < n) {
		switch (sc->pos) {
		case SMTP_DATA_BOL:
			if (sc->dot && in[i] == '.') {
				sc->pos = SMTP_DATA_DOT;
				i++;
				continue;
			}
			sc->pos = SMTP_DATA_LINE;
			continue;
		case SMTP_DATA_DOT:
			if (in[i] == '\r') {
				sc->pos = SMTP_DATA_DOTCR;
				i++;
				continue;
			}
			/* A stuffed dot: dropped (RFC 5321 4.5.2), but it
			 * counts in the line's length on the wire. */
			sc->line_len = 1;
			sc->pos = SMTP_DATA_LINE;
			continue;
		case SMTP_DATA_DOTCR:
			if (in[i] == '\n') {
				i++;
				r = SMTP_DATA_END;
				goto done;
			}
			sc->bad |= SMTP_DATA_BAD_BARE;
			if (sc->dot) {
				r = SMTP_DATA_STOP;
				goto done;
			}
			sc->pos = SMTP_DATA_LINE;
			continue;
		case SMTP_DATA_CR:
			if (in[i] != '\n') {
				sc->bad |= SMTP_DATA_BAD_BARE;
				if (sc->dot) {
					r = SMTP_DATA_STOP;
					goto done;
				}
				sc->pos = SMTP_DATA_LINE;
				continue;
			}
			if (smtp_data_keeping(sc)) {
				take = smtp_data_fit(sc, 2);
				if (room - o < take) {
					r = SMTP_DATA_FULL;
					goto done;
				}
				if (take > 0)
					memcpy(out + o, "\r\n", take);
				o += take;
				sc->size += take;
				if (take < 2)
					sc->bad |= SMTP_DATA_BAD_SIZE;
			}
			sc->line_len = 0;
			sc->pos = SMTP_DATA_BOL;
			i++;
			continue;
		case SMTP_DATA_LINE:
			break;
		}
		/* SMTP_DATA_LINE: the run up to the next CR, LF or NUL. */
		hi = 0;
		span = i + smtp_data_span(in + i, n - i, &hi);
		if (hi & 0x80)
			sc->saw8bit = true;
		if (span > i) {
			take = span - i;
			if (smtp_data_keeping(sc)) {
				fit = smtp_data_fit(sc, take);
				if (fit > room - o) {
					take = fit = room - o;
					r = SMTP_DATA_FULL;
				}
				if (fit > 0)
					memcpy(out + o, in + i, fit);
				o += fit;
				sc->size += fit;
				if (fit < take)
					sc->bad |= SMTP_DATA_BAD_SIZE;
			}
			sc->line_len += take;
			if (sc->line_len > SMTP_TEXT_LINE_MAX - 2)
				sc->bad |= SMTP_DATA_BAD_LONG;
			i += take;
			if (r == SMTP_DATA_FULL)
				goto done;
			continue;
		}
		if (in[i] == '\0') {
			sc->bad |= SMTP_DATA_BAD_NUL;
			i++;
		} else if (in[i] == '\r') {
			sc->pos = SMTP_DATA_CR;
			i++;
		} else {
			sc->bad |= SMTP_DATA_BAD_BARE; /* LF without CR */
			if (sc->dot) {
				r = SMTP_DATA_STOP;
				goto done;
			}
			i++;
		}
	}
done:
	*used = i;
	*out_len = o;
	return r;
}

size_t
smtp_data_finish(struct smtp_data_scan *sc)
{
	if (sc->pos == SMTP_DATA_CR || sc->pos == SMTP_DATA_DOTCR) {
		sc->bad |= SMTP_DATA_BAD_BARE;
		return 0;
	}
	if (sc->pos == SMTP_DATA_BOL || !smtp_data_keeping(sc))
		return 0;
	if (smtp_data_fit(sc, 2) < 2) {
		sc->bad |= SMTP_DATA_BAD_SIZE;
		return 0;
	}
	sc->size += 2;
	sc->line_len = 0;
	sc->pos = SMTP_DATA_BOL;
	return 2;
}
