/*
 * resolver_int.h — private to dns/ and its tests: hooks that let
 * t/unit/dns_test.c drive the cache clock and capture raw answers (seeds
 * for t/fuzz/corpus/dns).  Not for production callers.
 */
#ifndef OUTPOST_DNS_RESOLVER_INT_H
#define OUTPOST_DNS_RESOLVER_INT_H

#include <stdint.h>

#include "dns/dns.h"

/*
 * dns_resolver_clock_set — the cache reads time (milliseconds, monotonic)
 * from NOW_MS(ARG) instead of CLOCK_MONOTONIC; NULL restores the real
 * clock.  c-ares timeouts keep real time.  Loop thread.
 */
void dns_resolver_clock_set(struct dns_resolver *r,
			    uint64_t (*now_ms)(void *arg), void *arg);

/*
 * dns_resolver_answer_hook_set — FN(type, status, abuf, alen, ARG) sees
 * every raw c-ares result before the cache decodes it (ABUF may be NULL).
 * NULL removes the hook.  Loop thread.
 */
void dns_resolver_answer_hook_set(struct dns_resolver *r,
				  void (*fn)(uint16_t type, int status,
					     const unsigned char *abuf,
					     int alen, void *arg),
				  void *arg);

#endif
