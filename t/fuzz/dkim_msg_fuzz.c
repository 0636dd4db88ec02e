/*
 * dkim_msg_fuzz.c — libFuzzer harness for dkim/ on untrusted message bytes:
 * dkim_msg_parse(), both header and body canonicalizations, the body hash,
 * and dkim_sign() (header selection, h= from field names, folding) with an
 * Ed25519 key made from a fixed seed.  Invariants checked: every field lies
 * inside the header block and holds its colon; canonicalization never
 * fails on a parsed field; the streamed body hash equals the hash of the
 * materialised canonical body; a signature is made iff there is a From.
 * Seeds: t/fuzz/corpus/dkim_msg (messages as Outpost queues them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/dkim.h"
#include "dkim/canon_int.h"
#include "dkim/keys_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dkim_key *fuzz_key;

static void
fuzz_die(const char *what)
{
	fprintf(stderr, "dkim_msg_fuzz: %s\n", what);
	abort();
}

static void
fuzz_key_init(void)
{
	static const uint8_t seed[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	char err[256];

	if (fuzz_key != NULL)
		return;
	/* A tiny secure heap: the harness holds one Ed25519 key. */
	if (dkim_keys_init(1 << 16, err, sizeof(err)) < 0 ||
	    dkim_key_ed25519_from_seed(seed, &fuzz_key, err, sizeof(err)) != 0)
		fuzz_die(err);
}

static void
fuzz_fields(const struct dkim_msg *m, const uint8_t *data, size_t size)
{
	struct dkim_buf b = { NULL, 0, 0 };
	const struct dkim_header *h;
	const uint8_t *f;
	size_t i;
	int c;

	if (m->body_off > size || m->data != data)
		fuzz_die("body offset outside the message");
	for (i = 0; i < m->nhdrs; i++) {
		h = &m->hdrs[i];
		f = (const uint8_t *)h->field;
		if (f < data || h->len > size ||
		    f + h->len > data + m->body_off || h->name_len == 0 ||
		    h->name_len >= h->len ||
		    memchr(f + h->name_len, ':', h->len - h->name_len) == NULL)
			fuzz_die("field outside the header block");
		if (i > 0 && f < (const uint8_t *)m->hdrs[i - 1].field +
				     m->hdrs[i - 1].len)
			fuzz_die("fields overlap");
		for (c = 0; c < 2; c++) {
			b.len = 0;
			if (dkim_canon_header(&b, (enum dkim_canon)c, h->field,
					      h->len, h->name_len) != 0)
				fuzz_die(
				    "a parsed field does not canonicalize");
		}
		if (dkim_header_find(m, "From", 0) == NULL &&
		    dkim_header_count(m, "from") != 0)
			fuzz_die("find and count disagree");
	}
	dkim_buf_free(&b);
}

static void
fuzz_body(const struct dkim_msg *m, char bh[2][45])
{
	struct dkim_buf b = { NULL, 0, 0 };
	uint8_t d1[DKIM_SHA256_BYTES], d2[DKIM_SHA256_BYTES];
	const uint8_t *body =
	    m->data != NULL ? m->data + m->body_off : (const uint8_t *)"";
	size_t len = m->len - m->body_off;
	int c;

	for (c = 0; c < 2; c++) {
		b.len = 0;
		if (dkim_canon_body_write(&b, body, len, (enum dkim_canon)c) !=
			0 ||
		    dkim_canon_body_sha256(body, len, (enum dkim_canon)c, d1) !=
			0 ||
		    dkim_sha256(b.data != NULL ? b.data : (uint8_t *)"", b.len,
				d2) != 0)
			fuzz_die("body canonicalization failed");
		if (memcmp(d1, d2, sizeof(d1)) != 0)
			fuzz_die("streamed body hash differs");
		if (c == DKIM_CANON_SIMPLE &&
		    (b.len < 2 || memcmp(b.data + b.len - 2, "\r\n", 2) != 0))
			fuzz_die("simple body does not end in CRLF");
		dkim_body_hash(m, (enum dkim_canon)c, bh[c]);
		if (strlen(bh[c]) != DKIM_BH_B64_BYTES)
			fuzz_die("no body hash");
	}
	dkim_buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkim_sign_params p;
	struct dkim_msg m;
	char err[256], bh[2][45], *out = NULL;
	size_t outlen = 0;
	int rc;

	fuzz_key_init();
	if (dkim_msg_parse(data, size, &m, err, sizeof(err)) != 0) {
		if (m.hdrs != NULL || m.nhdrs != 0 || err[0] == '\0')
			fuzz_die("failed parse left state or no reason");
		return 0;
	}
	fuzz_fields(&m, data, size);
	fuzz_body(&m, bh);

	memset(&p, 0, sizeof(p));
	p.domain = "example.com";
	p.selector = "fuzz";
	p.key = fuzz_key;
	p.hcanon = size % 2 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	p.bcanon = size % 3 ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	p.timestamp = 1764388800;
	rc = dkim_sign(&m, bh[p.bcanon], &p, &out, &outlen, err, sizeof(err));
	if ((rc == 0) != (dkim_header_find(&m, "from", 0) != NULL))
		fuzz_die("signed without From, or failed with one");
	if (rc == 0 && (outlen < 2 || strlen(out) != outlen ||
			memcmp(out, "DKIM-Signature: v=1; ", 21) != 0 ||
			memcmp(out + outlen - 2, "\r\n", 2) != 0))
		fuzz_die("malformed DKIM-Signature field");
	free(out);
	dkim_msg_clear(&m);
	return 0;
}
