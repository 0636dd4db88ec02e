/*
 * dns_fuzz.c — libFuzzer harness for dns/cache.c on untrusted bytes: the
 * raw-answer walker (dns_answer_walk) and the decoding of an answer into a
 * cache entry (dns_cache_complete: MX, TXT, A, AAAA through c-ares' parsers
 * plus our TTL, SOA, null-MX and IP-literal rules; TLSA through our own
 * reader, for DANE).  An input is one DNS
 * message as it comes off the wire; the record type and c-ares status are
 * taken from it as c-ares would.  Seeds: t/fuzz/corpus/dns, written by
 * `dns_test --corpus DIR`.
 */
#include <sys/select.h>
#include <ares.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/cache_int.h"
#include "t/fuzz/fuzz_check.h"

static const uint16_t fuzz_types[] = { DNS_RR_A, DNS_RR_AAAA, DNS_RR_MX,
				       DNS_RR_TXT, DNS_RR_TLSA };
#define FUZZ_NTYPES (sizeof(fuzz_types) / sizeof(fuzz_types[0]))

/* What ares_query() reports for a message it accepted (1.18 qcallback). */
static int
fuzz_status(const struct dns_answer_info *ai)
{
	switch (ai->rcode) {
	case 0:
		return ai->ancount > 0 ? ARES_SUCCESS : ARES_ENODATA;
	case 2:
		return ARES_ESERVFAIL;
	case 3:
		return ARES_ENOTFOUND;
	default:
		return ARES_EREFUSED;
	}
}

static void
fuzz_check_entry(const struct dns_entry *e, const struct dns_cache_policy *pol)
{
	char canon[DNS_NAME_MAX + 1], err[DNS_ERR_MAX];
	volatile unsigned sum = 0;
	size_t i, j;

	FUZZ_CHECK(e->state == DNS_ENTRY_READY);
	FUZZ_CHECK(e->result <= DNS_BADNAME && e->result != DNS_BADNAME);
	FUZZ_CHECK(memchr(e->err, '\0', sizeof(e->err)) != NULL);
	FUZZ_CHECK(e->result == DNS_OK || e->err[0] != '\0');
	FUZZ_CHECK(e->ttl <= pol->max_ttl || e->ttl <= pol->negative_ttl_max ||
		   e->ttl <= pol->tempfail_ttl);
	if (e->result != DNS_OK) {
		FUZZ_CHECK(e->nmx == 0 && e->ntxts == 0 && e->naddrs == 0 &&
			   e->ntlsa == 0);
		return;
	}
	switch (e->type) {
	case DNS_RR_MX:
		FUZZ_CHECK(e->nmx > 0);
		for (i = 0; i < e->nmx; i++) {
			FUZZ_CHECK(dns_name_normalize(e->mx[i].name, canon,
						      sizeof(canon), err,
						      sizeof(err)) == 0);
			FUZZ_CHECK(strcmp(canon, e->mx[i].name) == 0);
			FUZZ_CHECK(!dns_name_is_ip_literal(e->mx[i].name));
			FUZZ_CHECK(i == 0 ||
				   e->mx[i - 1].pref <= e->mx[i].pref);
		}
		break;
	case DNS_RR_TXT:
		FUZZ_CHECK(e->ntxts > 0);
		for (i = 0; i < e->ntxts; i++)
			FUZZ_CHECK(e->txts[i][e->lens[i]] == '\0');
		break;
	case DNS_RR_TLSA:
		FUZZ_CHECK(e->ntlsa > 0);
		for (i = 0; i < e->ntlsa; i++) {
			FUZZ_CHECK(e->tlsa[i].len > 0 &&
				   e->tlsa[i].data != NULL);
			/* every octet of the data is ours to read (ASan) */
			for (j = 0; j < e->tlsa[i].len; j++)
				sum += e->tlsa[i].data[j];
		}
		break;
	default:
		FUZZ_CHECK(e->naddrs > 0 && e->naddrs <= DNS_ADDRS_MAX);
		for (i = 0; i < e->naddrs; i++)
			FUZZ_CHECK(e->addrs[i].ss_family ==
				   (e->type == DNS_RR_A ? AF_INET : AF_INET6));
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct dns_cache_policy pol = { 0, 86400, 3600, 5, false };
	struct dns_answer_info ai;
	struct dns_cache c;
	struct dns_entry *e;
	uint16_t type = fuzz_types[size % FUZZ_NTYPES];
	int status = ARES_SUCCESS;
	size_t i;

	if (size > INT_MAX)
		return 0;
	if (dns_answer_walk(data, size, &ai) == 0) {
		FUZZ_CHECK(ai.ttl_min <= 0x7fffffffu);
		FUZZ_CHECK(ai.soa_min <= 0x7fffffffu);
		FUZZ_CHECK(ai.soa_ttl <= 0x7fffffffu);
		FUZZ_CHECK(ai.nmatch <= ai.ancount);
		FUZZ_CHECK(ai.has_ttl == (ai.ancount > 0));
		for (i = 0; i < FUZZ_NTYPES; i++)
			if (ai.qtype == fuzz_types[i])
				type = ai.qtype;
		status = fuzz_status(&ai);
	}
	if (dns_cache_init(&c, 4, &pol) != 0)
		return 0;
	if ((e = dns_cache_add(&c, type, "fuzz.example")) != NULL) {
		dns_entry_ref(e); /* ours: a TTL of 0 drops it from the index */
		dns_cache_complete(&c, e, status, data, (int)size, 1000);
		fuzz_check_entry(e, &pol);
		FUZZ_CHECK(dns_cache_get(&c, type, "fuzz.example", 1000) ==
			   (e->ttl > 0 ? e : NULL));
	}
	dns_cache_fini(&c);
	if (e != NULL)
		dns_entry_unref(e);
	return 0;
}
