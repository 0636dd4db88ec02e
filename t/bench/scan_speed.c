/*
 * scan_speed.c — outpost-scan-speed: what the scan's cache look-up costs
 * per message before any byte goes to clamd, on one core, in CPU time: the
 * MIME leaf walk (scan_mime_leaves) and the keyed BLAKE2b hashes of the
 * whole message and of every leaf with its header block
 * (scan_cache_hash_part), on a campaign message of --size bytes (default
 * 100 KB: a text part, an HTML part and a base64 attachment).  A
 * benchmark, not a test (t/unit/scan_mime_test.c checks the walk).
 *
 *   outpost-scan-speed [--size BYTES] [--seconds S] [--json]
 *
 * Prints ns per message for the walk, the hashes and both, and MB/s; best
 * of 5 rounds of S CPU-seconds (default 0.5), as the machine may be shared.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mta/receive/scan_cache.h"

static double
speed_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A campaign message of about SIZE bytes; *LEN its length. */
static char *
speed_message(size_t size, size_t *len)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *m = malloc(size + 4096);
	size_t n = 0, i;
	uint32_t x = 2463534242u;

	if (m == NULL)
		return NULL;
	n += (size_t)snprintf(
	    m + n, size + 4096 - n,
	    "Received: from client.example.com (127.0.0.1)\r\n"
	    "From: <news@sender.test>\r\nTo: <rcpt1@sink.test>\r\n"
	    "Subject: Your statement\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"=_m\"\r\n\r\n"
	    "--=_m\r\nContent-Type: multipart/alternative; boundary=\"=_a\""
	    "\r\n\r\n--=_a\r\nContent-Type: text/plain\r\n\r\n");
	for (i = 0; i < 20; i++)
		n += (size_t)snprintf(m + n, size + 4096 - n,
				      "Dear customer, line %zu of your text "
				      "part, personalised.\r\n",
				      i);
	n += (size_t)snprintf(m + n, size + 4096 - n,
			      "--=_a\r\nContent-Type: text/html\r\n\r\n");
	for (i = 0; i < 40; i++)
		n += (size_t)snprintf(
		    m + n, size + 4096 - n,
		    "<p>Dear customer, paragraph %zu.</p>\r\n", i);
	n += (size_t)snprintf(
	    m + n, size + 4096 - n,
	    "--=_a--\r\n--=_m\r\nContent-Type: application/pdf\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	while (n + 100 < size) {
		for (i = 0; i < 76; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			m[n++] = b64[x % 64];
		}
		m[n++] = '\r';
		m[n++] = '\n';
	}
	n += (size_t)snprintf(m + n, size + 4096 - n, "--=_m--\r\n");
	*len = n;
	return m;
}

/* ns per message of one round of S CPU-seconds: WALK, HASH or both. */
static double
speed_round(struct scan_cache *c, const uint8_t *m, size_t len, double s,
	    int walk, int hash, size_t *leaves)
{
	struct scan_part p[SCAN_PARTS_MAX];
	uint8_t whole[SCAN_HASH_BYTES];
	double t0 = speed_cpu_s(), t;
	uint64_t iters = 0;
	size_t n = 0, i;

	if (!walk) /* hashing alone: the leaves of one walk */
		n = scan_mime_leaves(m, len, p, SCAN_PARTS_MAX);
	do {
		for (int k = 0; k < 16; k++) {
			if (walk)
				n = scan_mime_leaves(m, len, p, SCAN_PARTS_MAX);
			if (hash) {
				scan_cache_hash(c, m, len, whole);
				for (i = 0; i < n; i++)
					scan_cache_hash_part(c, m, &p[i]);
			}
		}
		iters += 16;
		t = speed_cpu_s() - t0;
	} while (t < s);
	*leaves = n;
	return t * 1e9 / (double)iters;
}

int
main(int argc, char **argv)
{
	size_t size = 100 * 1024, len, leaves = 0;
	double secs = 0.5, best[3] = { 1e18, 1e18, 1e18 }, v;
	int json = 0, i, r;
	struct scan_cache *c;
	char *m;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
			size = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			secs = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			fprintf(stderr, "usage: outpost-scan-speed [--size "
					"BYTES] [--seconds S] [--json]\n");
			return 2;
		}
	}
	if (size < 4096 || size > (1u << 30) || !(secs > 0) ||
	    (m = speed_message(size, &len)) == NULL ||
	    (c = scan_cache_new(1000, 0)) == NULL)
		return 2;
	for (r = 0; r < 5; r++) {
		v = speed_round(c, (uint8_t *)m, len, secs, 1, 0, &leaves);
		best[0] = v < best[0] ? v : best[0];
		v = speed_round(c, (uint8_t *)m, len, secs, 0, 1, &leaves);
		best[1] = v < best[1] ? v : best[1];
		v = speed_round(c, (uint8_t *)m, len, secs, 1, 1, &leaves);
		best[2] = v < best[2] ? v : best[2];
	}
	if (json)
		printf("{\"message_bytes\":%zu,\"leaves\":%zu,\"walk_ns\":%.0f,"
		       "\"hash_ns\":%.0f,\"walk_and_hash_ns\":%.0f,"
		       "\"walk_and_hash_mb_per_s\":%.1f}\n",
		       len, leaves, best[0], best[1], best[2],
		       (double)len / best[2] * 1e3);
	else
		printf(
		    "outpost-scan-speed: %zu-byte message, %zu leaves\n"
		    "  walk (scan_mime_leaves)        %9.0f ns\n"
		    "  hashes (whole + every leaf)    %9.0f ns\n"
		    "  walk + hashes                  %9.0f ns  (%.1f MB/s)\n",
		    len, leaves, best[0], best[1], best[2],
		    (double)len / best[2] * 1e3);
	scan_cache_free(c);
	free(m);
	return 0;
}
