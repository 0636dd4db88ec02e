/*
 * scan_mime_fuzz.c — libFuzzer harness: the MIME leaf walker
 * (mta/receive/scan_mime.c) on arbitrary bytes.  Properties checked, the
 * contract of scan_cache.h: at most MAX leaves; each inside the message,
 * its typing header block before it; leaves in order and disjoint (header
 * block included); at least one leaf when the message has a body (bytes
 * after the first empty line); the same leaves, the first MAX - 1 of them
 * exactly, with a smaller MAX.  The first byte picks that smaller MAX.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mta/receive/scan_cache.h"
#include "t/fuzz/fuzz_check.h"

/* Where the body starts: past the first empty line (LF or CR LF), or
 * SIZE when there is none. */
static size_t
fuzz_body_start(const uint8_t *p, size_t size)
{
	size_t i = 0, n;
	const uint8_t *lf;

	while (i < size) {
		lf = memchr(p + i, '\n', size - i);
		if (lf == NULL)
			return size;
		n = (size_t)(lf - (p + i));
		if (n == 0 || (n == 1 && p[i] == '\r'))
			return (size_t)(lf - p) + 1;
		i = (size_t)(lf - p) + 1;
	}
	return size;
}

static void
fuzz_contract(const struct scan_part *parts, size_t n, size_t max, size_t size)
{
	size_t i;

	FUZZ_CHECK(n <= max);
	for (i = 0; i < n; i++) {
		FUZZ_CHECK(parts[i].hoff <= parts[i].off);
		FUZZ_CHECK(parts[i].off <= size);
		FUZZ_CHECK(parts[i].len <= size - parts[i].off);
		if (i > 0)
			FUZZ_CHECK(parts[i].hoff >=
				   parts[i - 1].off + parts[i - 1].len);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scan_part all[SCAN_PARTS_MAX], few[SCAN_PARTS_MAX];
	size_t n, m, max, i, body;

	n = scan_mime_leaves(data, size, all, SCAN_PARTS_MAX);
	fuzz_contract(all, n, SCAN_PARTS_MAX, size);
	body = fuzz_body_start(data, size);
	for (i = 0; i < n; i++)
		FUZZ_CHECK(all[i].off >= body);
	if (body < size)
		FUZZ_CHECK(n >= 1);
	else
		FUZZ_CHECK(n == 0);
	max = size > 0 ? data[0] % SCAN_PARTS_MAX : 0;
	m = scan_mime_leaves(data, size, few, max);
	fuzz_contract(few, m, max, size);
	FUZZ_CHECK(m == (n < max ? n : max));
	for (i = 0; i + 1 < m; i++)
		FUZZ_CHECK(few[i].hoff == all[i].hoff &&
			   few[i].off == all[i].off &&
			   few[i].len == all[i].len);
	/* The last one starts where it did and runs to the end of the last
	 * leaf found. */
	if (m > 0)
		FUZZ_CHECK(few[m - 1].off == all[m - 1].off &&
			   few[m - 1].off + few[m - 1].len ==
			       all[n - 1].off + all[n - 1].len);
	return 0;
}
