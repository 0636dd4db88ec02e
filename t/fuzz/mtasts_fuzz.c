/*
 * mtasts_fuzz.c — libFuzzer harness for the pure half of
 * mta/deliver/mtasts.c on untrusted bytes: anyone's DNS answers with the
 * TXT record, anyone's HTTPS server with the policy.  Every input is parsed
 * as a policy file (mtasts_policy_parse: a parsed policy has a mode, a
 * max_age in range and 1..MTASTS_MX_MAX host-name patterns, and a copy of
 * it matches as it does; a refused one holds nothing) and as a TXT record
 * (mtasts_txt_id: an id of 1..32 letters and digits).  Its first line, if
 * a policy was had, is matched as an MX host name.  Seeds:
 * t/fuzz/corpus/mtasts.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta/deliver/mtasts.h"
#include "t/fuzz/fuzz_check.h"

static void
fuzz_check_policy(const struct mtasts_policy *p)
{
	size_t i, j, n;

	FUZZ_CHECK(p->mode == MTASTS_NONE || p->mode == MTASTS_TESTING ||
		   p->mode == MTASTS_ENFORCE);
	FUZZ_CHECK(p->max_age_s <= MTASTS_MAX_AGE_MAX_S);
	FUZZ_CHECK(p->nmx <= MTASTS_MX_MAX);
	FUZZ_CHECK(p->mode == MTASTS_NONE || p->nmx > 0);
	for (i = 0; i < p->nmx; i++) {
		const char *m = p->mx[i];

		n = strlen(m);
		FUZZ_CHECK(n > 0 && n < 256);
		/* a "*." only leftmost; the rest letters, digits, - and . */
		for (j = m[0] == '*' ? 2 : 0; j < n; j++)
			FUZZ_CHECK(isalnum((unsigned char)m[j]) ||
				   m[j] == '-' || m[j] == '.');
		FUZZ_CHECK(m[0] != '*' || m[1] == '.');
		/* A pattern matches itself, bar the wildcard. */
		if (m[0] != '*')
			FUZZ_CHECK(mtasts_mx_match(p, m));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mtasts_policy p, q;
	char err[256], id[MTASTS_ID_MAX + 1], host[300];
	const char *text = (const char *)data;
	const char *nl;
	size_t i, n;
	int rc;

	if (size > MTASTS_BODY_MAX)
		return 0;
	memset(&p, 0xa5, sizeof(p));
	err[0] = '\0';
	if (mtasts_policy_parse(text, size, &p, err, sizeof(err)) == 0) {
		fuzz_check_policy(&p);
		FUZZ_CHECK(mtasts_policy_copy(&q, &p) == 0);
		FUZZ_CHECK(q.nmx == p.nmx && q.mode == p.mode &&
			   q.max_age_s == p.max_age_s);
		nl = memchr(text, '\n', size);
		n = nl != NULL ? (size_t)(nl - text) : size;
		if (n < sizeof(host) && memchr(text, '\0', n) == NULL) {
			memcpy(host, text, n);
			host[n] = '\0';
			FUZZ_CHECK(mtasts_mx_match(&p, host) ==
				   mtasts_mx_match(&q, host));
		}
		mtasts_policy_clear(&q);
		mtasts_policy_clear(&p);
	} else {
		FUZZ_CHECK(p.mx == NULL && p.nmx == 0);
		FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
	}
	memset(id, 0xa5, sizeof(id));
	rc = mtasts_txt_id(text, size, id);
	FUZZ_CHECK(rc >= -1 && rc <= 1);
	if (rc == 1) {
		n = strnlen(id, sizeof(id));
		FUZZ_CHECK(n > 0 && n <= MTASTS_ID_MAX);
		for (i = 0; i < n; i++)
			FUZZ_CHECK(isalnum((unsigned char)id[i]));
	}
	return 0;
}
