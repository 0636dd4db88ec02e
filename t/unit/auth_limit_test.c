/*
 * auth_limit_test.c — the AUTH limiter (mta/receive/auth_limit.c) without
 * sockets: attempts in flight count before verification, per (network, user)
 * and per network limits, the exemption of users known good, windows, prefixes,
 * listing and lifting blocks, the bound on the table, and the limiter as a
 * history store (a user's purge, the retention sweep) through the registry
 * (mta/observe/history.h).  Addresses are loopback ones only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "mta/observe/history.h"
#include "mta/receive/auth_limit.h"
#include "mta/receive/peer.h"

#define T0 1000000000 /* a clock, ms */

static const struct conf_auth_limit lim_default = {
	.max_failures = 5,
	.max_failures_per_address = 12,
	.window_ms = 600000,
	.block_ms = 900000,
	.delay_base_ms = 100,
	.delay_max_ms = 1000,
	.success_exempt_ms = 86400000,
	.ipv4_prefix = 32,
	.ipv6_prefix = 64,
	.max_entries = 1000,
};

static struct peer_key
key(const char *text)
{
	struct sockaddr_storage ss;
	struct peer_key k;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	assert_int_equal(peer_key_from(&k, (struct sockaddr *)&ss), 0);
	return k;
}

static enum auth_limit_verdict
reserve(const struct conf_auth_limit *lim, const char *addr, const char *user,
	int64_t now, struct auth_limit_ticket *t, uint64_t *left)
{
	struct peer_key k = key(addr);

	return auth_limit_reserve(lim, &k, user, user, now, t, left);
}

/* One attempt, reserved and settled; the verdict of the reservation. */
static enum auth_limit_verdict
attempt(const struct conf_auth_limit *lim, const char *addr, const char *user,
	bool ok, int64_t now, bool *blocked)
{
	struct auth_limit_ticket t;
	enum auth_limit_verdict v;
	uint64_t left;

	*blocked = false;
	v = reserve(lim, addr, user, now, &t, &left);
	if (v == AUTH_LIMIT_OK)
		(void)auth_limit_settle(lim, &t, ok, now, blocked);
	return v;
}

static int
teardown(void **state)
{
	(void)state;
	auth_limit_clear();
	return 0;
}

static void
test_in_flight_counts(void **state)
{
	struct auth_limit_ticket t[8];
	uint64_t left, delay;
	bool blocked;
	int i;

	(void)state;
	for (i = 0; i < 5; i++)
		assert_int_equal(reserve(&lim_default, "127.0.0.1", "campaign",
					 T0, &t[i], &left),
				 AUTH_LIMIT_OK);
	/* Five guesses in flight use up max_failures: no sixth verify. */
	assert_int_equal(
	    reserve(&lim_default, "127.0.0.1", "campaign", T0, &t[5], &left),
	    AUTH_LIMIT_BUSY);
	assert_int_equal(left, 0);
	for (i = 0; i < 5; i++) {
		delay = auth_limit_settle(&lim_default, &t[i], false, T0 + i,
					  &blocked);
		/* 100, 200, 400, 800, then capped at 1000 ms. */
		assert_int_equal(delay, i < 4 ? 100u << i : 1000);
		assert_int_equal(blocked, i == 4);
	}
	assert_int_equal(reserve(&lim_default, "127.0.0.1", "campaign", T0 + 10,
				 &t[6], &left),
			 AUTH_LIMIT_USER_BLOCKED);
	assert_int_equal(left, 900000 - 6);
	/* Another user from the same address is not concerned... */
	assert_int_equal(attempt(&lim_default, "127.0.0.1", "other", true,
				 T0 + 20, &blocked),
			 AUTH_LIMIT_OK);
	/* ...nor the same user from another address. */
	assert_int_equal(attempt(&lim_default, "127.0.0.2", "campaign", true,
				 T0 + 20, &blocked),
			 AUTH_LIMIT_OK);
	/* The block ends by itself. */
	assert_int_equal(attempt(&lim_default, "127.0.0.1", "campaign", true,
				 T0 + 4 + 900000, &blocked),
			 AUTH_LIMIT_OK);
}

static void
test_window_and_success(void **state)
{
	bool blocked;
	int i;

	(void)state;
	for (i = 0; i < 4; i++)
		assert_int_equal(attempt(&lim_default, "127.0.0.1", "campaign",
					 false, T0 + i, &blocked),
				 AUTH_LIMIT_OK);
	/* The window ended: its failures are forgotten. */
	for (i = 0; i < 4; i++) {
		assert_int_equal(attempt(&lim_default, "127.0.0.1", "campaign",
					 false, T0 + 600000 + i, &blocked),
				 AUTH_LIMIT_OK);
		assert_false(blocked);
	}
	/* A success forgets the user's failures. */
	assert_int_equal(attempt(&lim_default, "127.0.0.1", "campaign", true,
				 T0 + 600010, &blocked),
			 AUTH_LIMIT_OK);
	for (i = 0; i < 4; i++) {
		assert_int_equal(attempt(&lim_default, "127.0.0.1", "campaign",
					 false, T0 + 600020 + i, &blocked),
				 AUTH_LIMIT_OK);
		assert_false(blocked);
	}
}

static void
test_address_cap(void **state)
{
	struct conf_auth_limit lim = lim_default;
	char name[32];
	uint64_t left;
	struct auth_limit_ticket t;
	bool blocked;
	int i;

	(void)state;
	lim.max_failures = 3;
	lim.max_failures_per_address = 5;
	assert_int_equal(attempt(&lim, "127.0.0.1", "good", true, T0, &blocked),
			 AUTH_LIMIT_OK);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "spray%d", i);
		assert_int_equal(
		    attempt(&lim, "127.0.0.1", name, false, T0 + i, &blocked),
		    AUTH_LIMIT_OK);
		assert_int_equal(blocked, i == 4);
	}
	/* Any name, configured or not, is refused from there now... */
	assert_int_equal(
	    reserve(&lim, "127.0.0.1", "spray9", T0 + 9, &t, &left),
	    AUTH_LIMIT_ADDR_BLOCKED);
	assert_int_equal(
	    reserve(&lim, "127.0.0.1", "campaign", T0 + 9, &t, &left),
	    AUTH_LIMIT_ADDR_BLOCKED);
	/* ...but a user who got in from there before still may... */
	assert_int_equal(
	    attempt(&lim, "127.0.0.1", "good", true, T0 + 10, &blocked),
	    AUTH_LIMIT_OK);
	/* ...and its success did not reset the network's count. */
	assert_int_equal(
	    reserve(&lim, "127.0.0.1", "spray9", T0 + 11, &t, &left),
	    AUTH_LIMIT_ADDR_BLOCKED);
	/* Attempts in flight count against the network too. */
	auth_limit_clear();
	for (i = 0; i < 5; i++) {
		struct auth_limit_ticket tt;

		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(
		    reserve(&lim, "127.0.0.1", name, T0, &tt, &left),
		    AUTH_LIMIT_OK);
	}
	assert_int_equal(reserve(&lim, "127.0.0.1", "n9", T0, &t, &left),
			 AUTH_LIMIT_BUSY);
}

static void
test_prefixes(void **state)
{
	struct conf_auth_limit lim = lim_default;
	struct peer_key k;
	uint64_t left;
	struct auth_limit_ticket t;
	bool blocked;
	int i;

	(void)state;
	lim.max_failures = 2;
	lim.ipv4_prefix = 24;
	for (i = 0; i < 2; i++)
		assert_int_equal(attempt(&lim, "127.0.0.2", "campaign", false,
					 T0 + i, &blocked),
				 AUTH_LIMIT_OK);
	assert_true(blocked);
	assert_int_equal(
	    reserve(&lim, "127.0.0.200", "campaign", T0 + 5, &t, &left),
	    AUTH_LIMIT_USER_BLOCKED);
	assert_int_equal(
	    attempt(&lim, "127.0.1.2", "campaign", true, T0 + 5, &blocked),
	    AUTH_LIMIT_OK);
	/* IPv6 is counted per /64: ::1 is ::/64. */
	for (i = 0; i < 2; i++)
		assert_int_equal(
		    attempt(&lim, "::1", "campaign", false, T0 + i, &blocked),
		    AUTH_LIMIT_OK);
	assert_true(blocked);
	/* Lifting by an address inside the network, by the network, or by
	 * a wider one. */
	k = key("::1");
	assert_int_equal(auth_limit_unblock_net(&lim, &k, -1, T0 + 10), 1);
	k = key("127.0.0.9");
	assert_int_equal(auth_limit_unblock_net(&lim, &k, 8, T0 + 10), 1);
	assert_int_equal(
	    attempt(&lim, "127.0.0.2", "campaign", true, T0 + 11, &blocked),
	    AUTH_LIMIT_OK);
}

struct seen {
	unsigned n;
	char text[1024];
};

static void
collect(const struct auth_limit_block *b, void *arg)
{
	struct seen *s = arg;
	size_t off = strlen(s->text);

	snprintf(s->text + off, sizeof(s->text) - off, "%s %s %s|",
		 b->user_scope ? "user" : "net", b->network,
		 b->user != NULL ? b->user : "-");
	s->n++;
}

static void
test_blocks_and_unblock(void **state)
{
	struct conf_auth_limit lim = lim_default;
	struct auth_limit_ticket t;
	struct peer_key k = key("127.0.0.3");
	struct seen s;
	uint64_t left;
	bool blocked;
	int i;

	(void)state;
	lim.max_failures = 2;
	lim.max_failures_per_address = 4;
	for (i = 0; i < 2; i++) {
		assert_int_equal(attempt(&lim, "127.0.0.1", "campaign", false,
					 T0 + i, &blocked),
				 AUTH_LIMIT_OK);
		/* Not configured: counted alike, kept without its name. */
		assert_int_equal(auth_limit_reserve(&lim, &k, "ghost", NULL,
						    T0 + i, &t, &left),
				 AUTH_LIMIT_OK);
		(void)auth_limit_settle(&lim, &t, false, T0 + i, &blocked);
	}
	memset(&s, 0, sizeof(s));
	assert_int_equal(auth_limit_blocks(T0 + 5, collect, &s), 2);
	assert_non_null(strstr(s.text, "user 127.0.0.1/32 campaign|"));
	assert_non_null(strstr(s.text, "user 127.0.0.3/32 -|"));
	/* An attempt in flight survives a lift. */
	assert_int_equal(reserve(&lim, "127.0.0.1", "other", T0 + 6, &t, &left),
			 AUTH_LIMIT_OK);
	assert_int_equal(auth_limit_unblock_user("campaign", T0 + 7), 1);
	assert_int_equal(auth_limit_unblock_user("campaign", T0 + 7), 0);
	assert_int_equal(auth_limit_unblock_user("ghost", T0 + 7), 1);
	(void)auth_limit_settle(&lim, &t, true, T0 + 8, &blocked);
	memset(&s, 0, sizeof(s));
	assert_int_equal(auth_limit_blocks(T0 + 9, collect, &s), 0);
	/* The network block is listed as such. */
	for (i = 0; i < 4; i++)
		(void)attempt(&lim, "127.0.0.5", i % 2 ? "a" : "b", false,
			      T0 + 10 + i, &blocked);
	memset(&s, 0, sizeof(s));
	assert_int_equal(auth_limit_blocks(T0 + 20, collect, &s), 3);
	assert_non_null(strstr(s.text, "net 127.0.0.5/32 -|"));
}

static void
test_table_bound(void **state)
{
	struct conf_auth_limit lim = lim_default;
	struct auth_limit_ticket t[60];
	char addr[32];
	uint64_t left;
	bool blocked;
	int i;

	(void)state;
	lim.max_entries = 100;
	lim.max_failures = 1;
	/* 500 networks each blocking a name: never more than 100 entries,
	 * the newest blocks kept. */
	for (i = 0; i < 500; i++) {
		snprintf(addr, sizeof(addr), "127.0.%d.%d", i / 250, i % 250);
		assert_int_equal(
		    attempt(&lim, addr, "x", false, T0 + i, &blocked),
		    AUTH_LIMIT_OK);
		assert_true(blocked);
		assert_true(auth_limit_entries() <= 100);
	}
	assert_int_equal(
	    reserve(&lim, "127.0.1.249", "x", T0 + 600, &t[0], &left),
	    AUTH_LIMIT_USER_BLOCKED);
	/* Entries with an attempt in flight are never dropped: 50 attempts
	 * hold all 100; the 51st finds no room. */
	auth_limit_clear();
	for (i = 0; i < 50; i++) {
		snprintf(addr, sizeof(addr), "127.1.0.%d", i);
		assert_int_equal(reserve(&lim, addr, "y", T0, &t[i], &left),
				 AUTH_LIMIT_OK);
	}
	assert_int_equal(reserve(&lim, "127.1.1.1", "y", T0, &t[50], &left),
			 AUTH_LIMIT_FULL);
	for (i = 0; i < 50; i++)
		(void)auth_limit_settle(&lim, &t[i], false, T0 + 1, &blocked);
	assert_int_equal(reserve(&lim, "127.1.1.1", "y", T0 + 2, &t[50], &left),
			 AUTH_LIMIT_OK);
	(void)auth_limit_settle(&lim, &t[50], true, T0 + 3, &blocked);
	assert_true(auth_limit_entries() <= 100);
}

/* Through the registry, as `outpost purge` and the hourly sweep reach it. */
static void
test_history_store(void **state)
{
	static const struct history_store store = { "auth-limit",
						    auth_limit_purge_user,
						    auth_limit_expire, NULL };
	struct conf_auth_limit lim = lim_default;
	struct auth_limit_ticket t;
	struct seen s;
	uint64_t left;
	bool blocked;
	int i;

	(void)state;
	lim.max_failures = 2;
	assert_int_equal(history_register(&store), 0);
	for (i = 0; i < 2; i++) {
		(void)attempt(&lim, "127.0.0.1", "campaign", false, T0 + i,
			      &blocked);
		(void)attempt(&lim, "127.0.0.3", "other", false, T0 + i,
			      &blocked);
	}
	(void)attempt(&lim, "127.0.0.2", "campaign", false, T0 + 2, &blocked);
	/* An attempt in flight: its entry is cleared, never dropped. */
	assert_int_equal(
	    reserve(&lim, "127.0.0.4", "campaign", T0 + 3, &t, &left),
	    AUTH_LIMIT_OK);
	/* 4 networks, campaign's 3 entries, other's 1. */
	assert_int_equal(auth_limit_entries(), 8);
	assert_int_equal(history_purge_user("campaign"), 3);
	assert_int_equal(auth_limit_entries(), 6);
	memset(&s, 0, sizeof(s));
	assert_int_equal(auth_limit_blocks(T0 + 4, collect, &s), 1);
	assert_non_null(strstr(s.text, "user 127.0.0.3/32 other|"));
	assert_int_equal(
	    attempt(&lim, "127.0.0.1", "campaign", true, T0 + 5, &blocked),
	    AUTH_LIMIT_OK);
	assert_int_equal(history_purge_user("nobody-here"), 0);
	(void)auth_limit_settle(&lim, &t, false, T0 + 6, &blocked);
	/* The sweep: nothing is older than the start; past every end (the
	 * exemption of the login above is the last), everything goes. */
	assert_int_equal(history_expire(T0 - 1), 0);
	assert_int_equal(auth_limit_entries(), 7);
	assert_int_equal(history_expire(T0 + 5 + lim.success_exempt_ms), 6);
	assert_int_equal(history_expire(T0 + 6 + lim.success_exempt_ms), 1);
	assert_int_equal(auth_limit_entries(), 0);
	history_clear();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_in_flight_counts, teardown),
		cmocka_unit_test_teardown(test_window_and_success, teardown),
		cmocka_unit_test_teardown(test_address_cap, teardown),
		cmocka_unit_test_teardown(test_prefixes, teardown),
		cmocka_unit_test_teardown(test_blocks_and_unblock, teardown),
		cmocka_unit_test_teardown(test_table_bound, teardown),
		cmocka_unit_test_teardown(test_history_store, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
