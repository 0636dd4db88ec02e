/*
 * auth_fuzz.c — libFuzzer harness for what AUTH reads before anyone is
 * authenticated (mta/receive/auth.c): the base64 of a response
 * (auth_b64_decode, into the buffer smtp_server_auth_step gives it) and a
 * decoded PLAIN response (auth_plain_split, into the session's user and
 * password).  Decoded data stays within its buffer and is NUL-ended; a
 * split gives a non-empty user and password without a NUL, the authzid
 * empty or the user's.  Every input is tried as base64 (up to its first
 * NUL) and, as it is, as a decoded response.  Seeds: t/fuzz/corpus/auth.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/observe/stats.h"
#include "mta/receive/auth.h"
#include "t/fuzz/fuzz_check.h"

/* auth.c counts its runs here (outpostd defines it in main.c). */
struct stats stats;

static void
fuzz_split(const char *resp, size_t len)
{
	char user[AUTH_USER_MAX + 1], pass[AUTH_PASS_MAX + 1];
	const char *nul;
	size_t ulen, plen;

	if (auth_plain_split(resp, len, user, sizeof(user), pass,
			     sizeof(pass)) != 0)
		return;
	ulen = strnlen(user, sizeof(user));
	plen = strnlen(pass, sizeof(pass));
	FUZZ_CHECK(ulen > 0 && ulen < sizeof(user));
	FUZZ_CHECK(plen > 0 && plen < sizeof(pass));
	/* authzid NUL user NUL password, nothing else */
	nul = memchr(resp, '\0', len);
	FUZZ_CHECK(nul != NULL);
	FUZZ_CHECK(
	    (size_t)(nul - resp) == 0 ||
	    ((size_t)(nul - resp) == ulen && memcmp(resp, user, ulen) == 0));
	FUZZ_CHECK(memcmp(nul + 1, user, ulen) == 0 && nul[1 + ulen] == '\0');
	FUZZ_CHECK((size_t)(nul - resp) + ulen + plen + 2 == len);
	FUZZ_CHECK(memcmp(nul + 2 + ulen, pass, plen) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dec[AUTH_USER_MAX + AUTH_PASS_MAX + 4], *src;
	size_t n = 0;

	if ((src = malloc(size + 1)) == NULL)
		return 0;
	memcpy(src, data, size);
	src[size] = '\0';
	memset(dec, 0xa5, sizeof(dec));
	if (auth_b64_decode(src, dec, sizeof(dec), &n) == 0) {
		FUZZ_CHECK(n < sizeof(dec) && dec[n] == '\0');
		fuzz_split(dec, n);
	}
	free(src);
	fuzz_split((const char *)data, size);
	return 0;
}
