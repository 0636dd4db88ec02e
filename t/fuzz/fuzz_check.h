/*
 * fuzz_check.h — the assertion of the libFuzzer harnesses: a broken
 * property aborts with file:line and the condition, which libFuzzer (and
 * t/fuzz/replay.c under ctest) reports as a crash with the input kept.
 */
#ifndef OUTPOST_T_FUZZ_FUZZ_CHECK_H
#define OUTPOST_T_FUZZ_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The harness's entry point, called by libFuzzer or t/fuzz/replay.c. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,     \
				#cond);                                        \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
