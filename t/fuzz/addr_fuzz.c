/*
 * addr_fuzz.c — libFuzzer harness: SMTP path parsing (mta/receive/addr.c) and
 * the log escaper/address scrubber (mta/core/log.c) on arbitrary bytes.
 * Invariants checked: the parser never reads past the NUL, a parsed mailbox
 * fits its buffer, and log_escape() output is NUL-terminated printable ASCII
 * with no '@' left in it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/receive/addr.h"
#include "mta/core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct addr_path p;
	const char *rest;
	char *s, out[300];
	size_t i;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	for (i = 0; i < 4; i++) {
		if (addr_path_parse(s, i & 1, i & 2, &p, &rest) == ADDR_OK) {
			if (strlen(p.mailbox) > ADDR_PATH_MAX ||
			    strlen(p.domain) > ADDR_DOMAIN_MAX || rest < s ||
			    rest > s + size)
				abort();
		}
	}
	log_escape(out, sizeof(out), (const char *)data, size);
	for (i = 0; out[i] != '\0'; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == '@')
			abort();
	if (i >= sizeof(out))
		abort();
	free(s);
	return 0;
}
