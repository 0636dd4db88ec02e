/*
 * https_test.c — which addresses an HTTPS request made on behalf of other
 * people's DNS (an MTA-STS policy host, a TLS-RPT report URI) may reach
 * (mta/deliver/https.c, https_addr_public): never the daemon's own
 * network (SSRF).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "mta/deliver/https.h"

static const struct {
	const char *addr;
	bool public;
} cases[] = {
	{ "93.184.216.34", true },
	{ "8.8.8.8", true },
	{ "127.0.0.1", false },
	{ "127.200.1.2", false },
	{ "10.1.2.3", false },
	{ "172.16.0.1", false },
	{ "172.31.255.255", false },
	{ "172.32.0.1", true },
	{ "192.168.1.1", false },
	{ "169.254.169.254", false }, /* cloud metadata */
	{ "100.64.0.1", false },
	{ "100.128.0.1", true },
	{ "0.0.0.0", false },
	{ "224.0.0.1", false },
	{ "255.255.255.255", false },
	{ "2001:4860:4860::8888", true },
	{ "::1", false },
	{ "::", false },
	{ "fe80::1", false },
	{ "fd00::1", false },
	{ "fc00::1", false },
	{ "ff02::1", false },
	{ "::ffff:127.0.0.1", false },
	{ "::ffff:10.0.0.1", false },
	{ "::ffff:8.8.8.8", true },
};

static void
test_addr_public(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, cases[i].addr,
			      &((struct sockaddr_in *)&ss)->sin_addr) == 1)
			ss.ss_family = AF_INET;
		else if (inet_pton(AF_INET6, cases[i].addr,
				   &((struct sockaddr_in6 *)&ss)->sin6_addr) ==
			 1)
			ss.ss_family = AF_INET6;
		else
			fail_msg("%s: not an address", cases[i].addr);
		if (https_addr_public((struct sockaddr *)&ss) !=
		    cases[i].public)
			fail_msg("%s: want %s", cases[i].addr,
				 cases[i].public ? "public" : "refused");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_public),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
