/*
 * addr.c — address facts the resolver and its users share
 * (dns_addr_is_loopback).  Pure functions; any thread.
 */
#include <netinet/in.h>
#include <string.h>

#include "dns/dns.h"

bool
dns_addr_is_loopback(const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	const uint8_t *a;

	if (sa->sa_family == AF_INET) {
		a = (const uint8_t *)&(
			(const struct sockaddr_in *)(const void *)sa)
			->sin_addr;
		return a[0] == 127;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	if (memcmp(a, mapped, sizeof(mapped)) == 0)
		return a[12] == 127;
	return IN6_IS_ADDR_LOOPBACK(
	    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
}
