/*
 * spf_int.h — helpers shared by dkim/spf.c and dkim/spf_cache.c.
 */
#ifndef OUTPOST_DKIM_SPF_INT_H
#define OUTPOST_DKIM_SPF_INT_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

/* The 4 (AF_INET) or 16 (AF_INET6) address bytes of SS. */
static inline const uint8_t *
spf_sa_bytes(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (const uint8_t *)&((const struct sockaddr_in *)ss)
		    ->sin_addr;
	return ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
}

#endif
