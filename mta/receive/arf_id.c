/*
 * arf_id.c — the sealed identifier X-Outpost-FB that the intake adds to
 * every message before it is DKIM-signed (so that the signature covers
 * it): queue id, time, sending identity, campaign and — when the message
 * has a single recipient — that recipient, encrypted and authenticated
 * with XChaCha20-Poly1305 under a key derived from the queue key.  A
 * returned copy in a complaint report is traced with it and nothing else.
 * Owns no state.  Any thread.  Must not: put an identity or address in
 * clear into a header, accept an identifier whose tag does not verify.
 */
#include <string.h>

#include <sodium.h>

#include "queue/queue.h"
#include "mta/receive/arf.h"

#define ARF_ID_VERSION 1
/* Bound to the header's name and version: a sealed box made for another
 * purpose with the same key does not open as an identifier. */
static const unsigned char arf_id_ad[] = "X-Outpost-FB v=1";
#define ARF_ID_AD_LEN (sizeof(arf_id_ad) - 1)
#define ARF_ID_NONCE  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define ARF_ID_TAG    crypto_aead_xchacha20poly1305_ietf_ABYTES
/* version, queue id, time, three length-prefixed strings */
#define ARF_ID_PLAIN_MAX (1 + 8 + 8 + 3 * 256)
#define ARF_ID_PLAIN_MIN (1 + 8 + 8 + 3)
#define ARF_ID_LINE_MAX  78 /* columns of a folded line (RFC 5322 2.1.1) */

void
arf_id_key(struct queue *q, uint8_t key[32])
{
	queue_state_subkey(q, "feedback", key);
}

static void
arf_id_put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t
arf_id_get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* S length-prefixed at P; -1 when over 255 bytes. */
static int
arf_id_put_str(uint8_t *p, size_t *off, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n > 255)
		return -1;
	p[(*off)++] = (uint8_t)n;
	if (n > 0)
		memcpy(p + *off, s, n);
	*off += n;
	return 0;
}

int
arf_id_seal(const uint8_t key[32], const struct arf_id *id, char *out,
	    size_t outlen)
{
	uint8_t plain[ARF_ID_PLAIN_MAX];
	uint8_t box[ARF_ID_NONCE + ARF_ID_PLAIN_MAX + ARF_ID_TAG];
	char b64[sodium_base64_ENCODED_LEN(
	    sizeof(box), sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	unsigned long long clen;
	size_t off = 0, blen, n, col, i;
	static const char head[] = ARF_ID_HEADER ": v=1; id=";

	plain[off++] = ARF_ID_VERSION;
	arf_id_put64(plain + off, id->queue_id);
	off += 8;
	arf_id_put64(plain + off, (uint64_t)id->time_ms);
	off += 8;
	if (arf_id_put_str(plain, &off, id->identity) != 0 ||
	    arf_id_put_str(plain, &off, id->campaign) != 0 ||
	    arf_id_put_str(plain, &off, id->rcpt) != 0)
		return -1;
	randombytes_buf(box, ARF_ID_NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	    box + ARF_ID_NONCE, &clen, plain, off, arf_id_ad, ARF_ID_AD_LEN,
	    NULL, box, key);
	sodium_memzero(plain, sizeof(plain));
	blen = ARF_ID_NONCE + (size_t)clen;
	sodium_bin2base64(b64, sizeof(b64), box, blen,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	n = strlen(b64);
	/* Head, then the token cut into folded lines: a tab and at most
	 * ARF_ID_LINE_MAX - 1 characters each. */
	if (outlen < sizeof(head) + n + 3 * (n / (ARF_ID_LINE_MAX - 1) + 2))
		return -1;
	memcpy(out, head, sizeof(head) - 1);
	off = sizeof(head) - 1;
	col = off;
	for (i = 0; i < n; i++) {
		if (col >= ARF_ID_LINE_MAX) {
			memcpy(out + off, "\r\n\t", 3);
			off += 3;
			col = 1;
		}
		out[off++] = b64[i];
		col++;
	}
	memcpy(out + off, "\r\n", 3);
	return (int)(off + 2);
}

/* A length-prefixed string at P[*OFF] (of LEN) into OUT (256 bytes). */
static int
arf_id_get_str(const uint8_t *p, size_t len, size_t *off, char *out)
{
	size_t n, i;

	if (*off >= len || (n = p[*off]) > len - *off - 1)
		return -1;
	for (i = 0; i < n; i++)
		if (p[*off + 1 + i] < 0x20 || p[*off + 1 + i] == 0x7f)
			return -1;
	memcpy(out, p + *off + 1, n);
	out[n] = '\0';
	*off += 1 + n;
	return 0;
}

int
arf_id_open(const uint8_t key[32], const char *value, struct arf_id *id)
{
	char tok[ARF_ID_VALUE_MAX];
	uint8_t box[ARF_ID_VALUE_MAX], plain[ARF_ID_VALUE_MAX];
	unsigned long long plen;
	size_t n = 0, blen, off = 0;
	const char *p = value;
	int rc = -1;

	memset(id, 0, sizeof(*id));
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncmp(p, "v=1", 3) != 0)
		return -1;
	for (p += 3; *p == ' ' || *p == '\t'; p++)
		;
	if (*p++ != ';')
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncmp(p, "id=", 3) != 0)
		return -1;
	/* The token, its folding white space dropped. */
	for (p += 3; *p != '\0' && *p != ';'; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			continue;
		if (n + 1 >= sizeof(tok))
			return -1;
		tok[n++] = *p;
	}
	tok[n] = '\0';
	if (sodium_base642bin(box, sizeof(box), tok, n, NULL, &blen, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    blen < ARF_ID_NONCE + ARF_ID_TAG + ARF_ID_PLAIN_MIN)
		return -1;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		plain, &plen, NULL, box + ARF_ID_NONCE, blen - ARF_ID_NONCE,
		arf_id_ad, ARF_ID_AD_LEN, box, key) != 0)
		return -1;
	if (plain[off++] != ARF_ID_VERSION)
		goto done;
	id->queue_id = arf_id_get64(plain + off);
	off += 8;
	id->time_ms = (int64_t)arf_id_get64(plain + off);
	off += 8;
	if (arf_id_get_str(plain, plen, &off, id->identity) != 0 ||
	    arf_id_get_str(plain, plen, &off, id->campaign) != 0 ||
	    arf_id_get_str(plain, plen, &off, id->rcpt) != 0 || off != plen ||
	    id->identity[0] == '\0')
		goto done;
	rc = 0;
done:
	sodium_memzero(plain, sizeof(plain));
	if (rc != 0)
		memset(id, 0, sizeof(*id));
	return rc;
}
