/*
 * conf_parse.c — scanners for the values a configuration holds: counts,
 * sizes, durations, "ADDR:PORT", "HOST[:PORT]", IP addresses, CIDR networks
 * and domain names; and the public conf_parse_size(), conf_parse_duration(),
 * conf_addr_parse().
 *
 * Owns no state.  Pure functions of their arguments: any thread.
 * Invariants: overflow is detected before it happens (never wraps); no
 * scanner reads past the terminating NUL; no scanner touches DNS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf/conf_int.h"

/* Decimal digits with overflow check; *end is the first non-digit. */
static int
conf_digits_scan(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;

	*end = s;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10) {
			/* Consume the rest so the caller can tell overflow
			   of a well-formed number from garbage. */
			while (*p >= '0' && *p <= '9')
				p++;
			*end = p;
			return -2;
		}
		v = v * 10 + d;
	}
	*out = v;
	*end = p;
	return 0;
}

int
conf_count_scan(const char *s, uint64_t *out)
{
	const char *end;
	int rc;

	if (s == NULL)
		return -1;
	rc = conf_digits_scan(s, out, &end);
	if (*end != '\0')
		return -1;
	return rc;
}

int
conf_size_scan(const char *s, uint64_t *out)
{
	const char *p;
	uint64_t v;
	unsigned shift = 0;
	int rc;

	if (s == NULL)
		return -1;
	rc = conf_digits_scan(s, &v, &p);
	if (rc == -1)
		return -1;
	switch (*p) {
	case 'k':
	case 'K':
		shift = 10;
		p++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		p++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		p++;
		break;
	case 't':
	case 'T':
		shift = 40;
		p++;
		break;
	default:
		break;
	}
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p != '\0')
		return -1;
	if (rc == -2 || v > (UINT64_MAX >> shift))
		return -2;
	*out = v << shift;
	return 0;
}

int
conf_duration_scan(const char *s, uint64_t *out_us, bool allow_us)
{
	static const struct {
		const char *suffix;
		uint64_t us;
		bool only_if_allowed;
	} units[] = {
		{ "", 1000000, false }, /* a bare number is seconds */
		{ "us", 1, true },           { "ms", 1000, false },
		{ "s", 1000000, false },     { "m", 60000000, false },
		{ "h", 3600000000u, false }, { "d", 86400000000u, false },
	};
	const char *p;
	uint64_t v;
	size_t i;
	int rc;

	if (s == NULL)
		return -1;
	rc = conf_digits_scan(s, &v, &p);
	if (rc == -1)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (units[i].only_if_allowed && !allow_us)
			return -1;
		if (rc == -2 || v > UINT64_MAX / units[i].us)
			return -2;
		*out_us = v * units[i].us;
		return 0;
	}
	return -1;
}

int
conf_parse_size(const char *s, uint64_t *out)
{
	uint64_t v;

	if (out == NULL || conf_size_scan(s, &v) != 0)
		return -1;
	*out = v;
	return 0;
}

int
conf_parse_duration(const char *s, uint64_t *out_ms)
{
	uint64_t us;

	if (out_ms == NULL || conf_duration_scan(s, &us, false) != 0)
		return -1;
	*out_ms = us / 1000; /* exact: every unit but "us" is whole ms */
	return 0;
}

void
conf_size_format(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "TGMK";
	unsigned shift = 40;
	size_t i;

	for (i = 0; units[i] != '\0'; i++, shift -= 10) {
		uint64_t unit = (uint64_t)1 << shift;

		if (bytes != 0 && bytes % unit == 0) {
			snprintf(buf, len, "%llu%c",
				 (unsigned long long)(bytes / unit), units[i]);
			return;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)bytes);
}

void
conf_duration_format(uint64_t us, char *buf, size_t len)
{
	static const struct {
		const char *suffix;
		uint64_t us;
	} units[] = {
		{ "d", 86400000000u }, { "h", 3600000000u }, { "m", 60000000 },
		{ "s", 1000000 },      { "ms", 1000 },
	};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (us != 0 && us % units[i].us == 0) {
			snprintf(buf, len, "%llu%s",
				 (unsigned long long)(us / units[i].us),
				 units[i].suffix);
			return;
		}
	}
	if (us == 0)
		snprintf(buf, len, "0s");
	else
		snprintf(buf, len, "%lluus", (unsigned long long)us);
}

int
conf_addr_scan(const char *s, struct sockaddr_storage *ss, socklen_t *len,
	       const char **why)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *hs, *he;
	uint64_t port;
	const char *end;

	*why = "not ADDR:PORT (use e.g. \"127.0.0.1:2525\" or \"[::1]:2525\")";
	if (s == NULL || ss == NULL || len == NULL || *s == '\0')
		return -1;
	if (*s == '[') {
		hs = s + 1;
		he = strchr(hs, ']');
		if (he == NULL)
			return -1;
		if (he[1] != ':') {
			*why = "missing port (use e.g. \"[::1]:2525\")";
			return -1;
		}
		colon = he + 1;
	} else {
		hs = s;
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*why = "missing port (use e.g. \"127.0.0.1:2525\")";
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			*why = "an IPv6 address needs brackets: \"[::1]:2525\"";
			return -1;
		}
		he = colon;
	}
	if (he == hs || (size_t)(he - hs) >= sizeof(host))
		return -1;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';

	if (colon[1] == '\0') {
		*why = "missing port";
		return -1;
	}
	if (conf_digits_scan(colon + 1, &port, &end) != 0 || *end != '\0' ||
	    port < 1 || port > 65535) {
		*why = "port must be 1..65535";
		return -1;
	}

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why = "not an IPv6 address (names are not resolved)";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*why = "not an IPv4 address (names are not resolved)";
			return -1;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
	}
	return 0;
}

int
conf_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	const char *why;

	return conf_addr_scan(s, ss, len, &why);
}

int
conf_cidr_parse(const char *s, struct conf_network *n, const char **why,
		char *buf, size_t len)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash, *end;
	uint64_t prefix;
	unsigned bits, i;
	size_t hl;

	*why = "not a network (use e.g. \"10.0.0.0/8\" or \"2001:db8::/32\")";
	if (s == NULL || *s == '\0')
		return -1;
	memset(n, 0, sizeof(*n));
	slash = strchr(s, '/');
	hl = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, n->addr) == 1) {
		n->family = AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, host, n->addr) == 1) {
		n->family = AF_INET6;
		bits = 128;
	} else {
		return -1;
	}
	prefix = bits;
	if (slash != NULL && (conf_digits_scan(slash + 1, &prefix, &end) != 0 ||
			      *end != '\0' || prefix > bits)) {
		*why = n->family == AF_INET ? "prefix length must be 0..32"
					    : "prefix length must be 0..128";
		return -1;
	}
	n->prefix = (unsigned)prefix;

	for (i = n->prefix; i < bits; i++) {
		if (n->addr[i / 8] & (0x80u >> (i % 8)))
			break;
	}
	if (i < bits) {
		char net[INET6_ADDRSTRLEN];
		uint8_t a[16];

		memcpy(a, n->addr, sizeof(a));
		for (i = n->prefix; i < bits; i++)
			a[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
		if (inet_ntop(n->family, a, net, sizeof(net)) != NULL) {
			int w = snprintf(
			    buf, len,
			    "has host bits set (did you mean \"%s/%u\"?)", net,
			    n->prefix);

			*why = w > 0 && (size_t)w < len ? buf
							: "has host bits set";
		} else {
			*why = "has host bits set";
		}
		return -1;
	}

	if (n->family == AF_INET6 && n->prefix >= 96 &&
	    memcmp(n->addr, mapped, sizeof(mapped)) == 0) {
		/* ::ffff:10.0.0.0/104 is 10.0.0.0/8: match it as v4. */
		memmove(n->addr, n->addr + 12, 4);
		memset(n->addr + 4, 0, 12);
		n->family = AF_INET;
		n->prefix -= 96;
	}
	return 0;
}

int
conf_domain_check(const char *s, bool allow_wild, const char **why)
{
	size_t total, label = 0;
	const char *p;

	*why = "is not a domain name";
	if (s == NULL || *s == '\0') {
		*why = "is empty";
		return -1;
	}
	if (allow_wild && strcmp(s, "*") == 0)
		return 0;
	if (allow_wild && *s == '.')
		s++;
	total = strlen(s);
	if (total == 0)
		return -1;
	if (total > 253) {
		*why = "is longer than 253 characters";
		return -1;
	}
	for (p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0) {
				*why = *p == '\0' && p > s
					   ? "ends with a dot"
					   : "has an empty label";
				return -1;
			}
			if (label > 63) {
				*why = "has a label longer than 63 characters";
				return -1;
			}
			if (p[-1] == '-') {
				*why = "has a label ending in '-'";
				return -1;
			}
			if (*p == '\0')
				return 0;
			label = 0;
			continue;
		}
		if (*p == '-' && label == 0) {
			*why = "has a label starting with '-'";
			return -1;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-')) {
			*why =
			    "may hold only letters, digits, '-' and '.' (use "
			    "the xn-- form for international names)";
			return -1;
		}
		label++;
	}
}

/* HOST, not an address, as a host name: checked, then lower-cased. */
static int
conf_hostname_scan(char *host, const char **why)
{
	const char *dot;
	size_t i;

	if (conf_domain_check(host, false, why) != 0)
		return -1;
	/* "192.0.2.300": no top-level domain is all digits (RFC 3696 2) */
	dot = strrchr(host, '.');
	for (i = dot != NULL ? (size_t)(dot - host) + 1 : 0; host[i] != '\0';
	     i++) {
		if (host[i] < '0' || host[i] > '9')
			break;
	}
	if (host[i] == '\0') {
		*why = "is neither an IPv4 address nor a host name";
		return -1;
	}
	for (i = 0; host[i] != '\0'; i++) {
		if (host[i] >= 'A' && host[i] <= 'Z')
			host[i] = (char)(host[i] - 'A' + 'a');
	}
	return 0;
}

int
conf_hostport_scan(const char *s, bool names, char *host, size_t hostlen,
		   unsigned *port, struct sockaddr_storage *ss,
		   const char **why)
{
	const char *hs, *he, *ps = NULL, *end;
	uint64_t p;
	size_t hl;

	*why = names ? "is not HOST[:PORT] (use e.g. \"mx.example.net:25\", "
		       "\"192.0.2.1\" or \"[2001:db8::1]:25\")"
		     : "is not ADDR[:PORT] (use e.g. \"127.0.0.1:53\" or "
		       "\"[::1]:53\")";
	if (s == NULL || *s == '\0') {
		*why = "is empty";
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	*port = 0;
	if (*s == '[') {
		hs = s + 1;
		if ((he = strchr(hs, ']')) == NULL) {
			*why = "has a [ without its ]";
			return -1;
		}
		if (he[1] == ':')
			ps = he + 2;
		else if (he[1] != '\0')
			return -1;
	} else {
		hs = s;
		if ((he = strchr(s, ':')) != NULL) {
			if (strchr(he + 1, ':') != NULL) {
				*why = "is an IPv6 address without brackets "
				       "(write e.g. \"[2001:db8::1]\")";
				return -1;
			}
			ps = he + 1;
		} else {
			he = s + strlen(s);
		}
	}
	hl = (size_t)(he - hs);
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (ps != NULL) {
		if (conf_digits_scan(ps, &p, &end) != 0 || *end != '\0' ||
		    p < 1 || p > 65535) {
			*why = "has a bad port (use 1..65535)";
			return -1;
		}
		*port = (unsigned)p;
	}
	if (*s == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why = "has [ ] around something that is not an IPv6 "
			       "address";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)*port);
		/* the canonical form: "2001:DB8:0::1" -> "2001:db8::1" */
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, host,
			      (socklen_t)hostlen) == NULL)
			return -1;
		return 0;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) ==
	    1) {
		((struct sockaddr_in *)ss)->sin_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)*port);
		return 0;
	}
	if (!names) {
		*why = "is not an IP address (names are not resolved here)";
		return -1;
	}
	return conf_hostname_scan(host, why);
}

int
conf_ip_scan(const char *s, struct sockaddr_storage *ss, socklen_t *len,
	     const char **why)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	*why = "is not an IP address (use e.g. \"192.0.2.1\" or "
	       "\"2001:db8::1\", without a port)";
	memset(ss, 0, sizeof(*ss));
	if (s == NULL)
		return -1;
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}
