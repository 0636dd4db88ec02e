/*
 * spf_test.c — unit tests for the pure half of dkim/spf.c: the record
 * parser (RFC 7208 4.6, 12) and the macro expander (7), table-driven.
 * The evaluator runs against dnsmasq in t/integration/spf_test.py.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dkim/dkim.h"
#include "t/unit/test_row.h"

/* Records -------------------------------------------------------------- */

struct rec_case {
	const char *name;
	const char *txt;
	int rc;            /* 0 parsed, -1 refused */
	size_t nterms;     /* when parsed */
	const char *shape; /* kinds and quals: "+a/24//64 -all" as rebuilt */
	const char *redirect;
};

static const struct rec_case rec_cases[] = {
	{ "minimal", "v=spf1", 0, 0, "", NULL },
	{ "case of v", "V=SPF1 -ALL", 0, 1, "-all", NULL },
	{ "all qualifiers", "v=spf1 +all -all ~all ?all", 0, 4,
	  "+all -all ~all ?all", NULL },
	{ "many spaces", "v=spf1   ip4:127.0.0.1    -all  ", 0, 2,
	  "+ip4:127.0.0.1/32 -all", NULL },
	{ "ip4 cidr", "v=spf1 ip4:127.0.0.0/8", 0, 1, "+ip4:127.0.0.0/8",
	  NULL },
	{ "ip6 cidr", "v=spf1 ip6:::1/128 ip6:fe80::/10", 0, 2,
	  "+ip6:::1/128 +ip6:fe80::/10", NULL },
	{ "a forms", "v=spf1 a a/24 a//64 a/24//64 a:x.test a:x.test/16", 0, 6,
	  "+a/32//128 +a/24//128 +a/32//64 +a/24//64 +a:x.test/32//128 "
	  "+a:x.test/16//128",
	  NULL },
	{ "mx forms", "v=spf1 mx mx:m.test//48 ~mx/30", 0, 3,
	  "+mx/32//128 +mx:m.test/32//48 ~mx/30//128", NULL },
	{ "include exists ptr",
	  "v=spf1 include:_spf.x.test exists:%{i}._e.x.test ptr ptr:x.test", 0,
	  4, "+include:_spf.x.test +exists:%{i}._e.x.test +ptr +ptr:x.test",
	  NULL },
	{ "redirect kept", "v=spf1 redirect=_spf.x.test", 0, 0, "",
	  "_spf.x.test" },
	{ "exp and unknown modifiers", "v=spf1 exp=e.%{d} foo=bar -all", 0, 1,
	  "-all", NULL },
	{ "mechanism names any case", "v=spf1 IP4:127.0.0.1 Include:a.test", 0,
	  2, "+ip4:127.0.0.1/32 +include:a.test", NULL },
	/* refused */
	{ "not spf", "v=spf10 -all", -1, 0, NULL, NULL },
	{ "not spf either", "spf1 -all", -1, 0, NULL, NULL },
	{ "tab separator", "v=spf1\t-all", -1, 0, NULL, NULL },
	{ "unknown mechanism", "v=spf1 foo -all", -1, 0, NULL, NULL },
	{ "include without domain", "v=spf1 include", -1, 0, NULL, NULL },
	{ "include empty", "v=spf1 include:", -1, 0, NULL, NULL },
	{ "all with argument", "v=spf1 all:x.test", -1, 0, NULL, NULL },
	{ "ip4 bad", "v=spf1 ip4:127.0.0", -1, 0, NULL, NULL },
	{ "ip4 cidr 33", "v=spf1 ip4:127.0.0.1/33", -1, 0, NULL, NULL },
	{ "ip4 cidr leading zero", "v=spf1 ip4:127.0.0.1/08", -1, 0, NULL,
	  NULL },
	{ "ip6 in ip4", "v=spf1 ip4:::1", -1, 0, NULL, NULL },
	{ "ip6 cidr 129", "v=spf1 ip6:::1/129", -1, 0, NULL, NULL },
	{ "a cidr 33", "v=spf1 a/33", -1, 0, NULL, NULL },
	{ "a cidr6 200", "v=spf1 a//200", -1, 0, NULL, NULL },
	{ "two redirects", "v=spf1 redirect=a.test redirect=b.test", -1, 0,
	  NULL, NULL },
	{ "two exp", "v=spf1 exp=a.test exp=b.test", -1, 0, NULL, NULL },
	{ "redirect empty", "v=spf1 redirect=", -1, 0, NULL, NULL },
	{ "bad macro", "v=spf1 exists:%{z}.test", -1, 0, NULL, NULL },
	{ "unterminated macro", "v=spf1 exists:%{d.test", -1, 0, NULL, NULL },
	{ "lone percent", "v=spf1 a:x%y.test", -1, 0, NULL, NULL },
	{ "control octet", "v=spf1 a:x\x01.test", -1, 0, NULL, NULL },
	{ "double qualifier", "v=spf1 +-all", -1, 0, NULL, NULL },
};

static void
rec_shape(const struct spf_record *r, char *out, size_t len)
{
	static const char *const names[] = {
		[SPF_T_ALL] = "all", [SPF_T_INCLUDE] = "include",
		[SPF_T_A] = "a",     [SPF_T_MX] = "mx",
		[SPF_T_PTR] = "ptr", [SPF_T_IP4] = "ip4",
		[SPF_T_IP6] = "ip6", [SPF_T_EXISTS] = "exists",
	};
	size_t i, o = 0;

	out[0] = '\0';
	for (i = 0; i < r->nterms && o < len; i++) {
		const struct spf_term *t = &r->terms[i];
		char q = t->qual == SPF_PASS       ? '+'
			 : t->qual == SPF_FAIL     ? '-'
			 : t->qual == SPF_SOFTFAIL ? '~'
						   : '?';
		char ip[INET6_ADDRSTRLEN] = "";
		int n;

		if (t->kind == SPF_T_IP4 || t->kind == SPF_T_IP6)
			inet_ntop(t->kind == SPF_T_IP4 ? AF_INET : AF_INET6,
				  t->ip, ip, sizeof(ip));
		n = snprintf(out + o, len - o, "%s%c%s%s%s", i ? " " : "", q,
			     names[t->kind], t->spec || ip[0] ? ":" : "",
			     t->spec ? t->spec : ip);
		o += (size_t)n;
		if (t->kind == SPF_T_A || t->kind == SPF_T_MX)
			n = snprintf(out + o, len - o, "/%u//%u", t->cidr4,
				     t->cidr6);
		else if (t->kind == SPF_T_IP4)
			n = snprintf(out + o, len - o, "/%u", t->cidr4);
		else if (t->kind == SPF_T_IP6)
			n = snprintf(out + o, len - o, "/%u", t->cidr6);
		else
			n = 0;
		o += (size_t)n;
	}
}

static void
test_record_parse(void **state)
{
	struct spf_record r;
	char err[160], shape[512];
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(rec_cases); i++) {
		const struct rec_case *c = &rec_cases[i];

		err[0] = '\0';
		rc = spf_record_parse(c->txt, strlen(c->txt), &r, err,
				      sizeof(err));
		ROW_CHECK(rc == c->rc, c->name, "rc %d, want %d (%s)", rc,
			  c->rc, err);
		if (rc != 0) {
			ROW_CHECK(err[0] != '\0', c->name, "no reason given");
			ROW_CHECK(r.terms == NULL && r.buf == NULL, c->name,
				  "a refused record holds memory");
			continue;
		}
		ROW_CHECK(r.nterms == c->nterms, c->name, "%zu terms, want %zu",
			  r.nterms, c->nterms);
		rec_shape(&r, shape, sizeof(shape));
		ROW_CHECK(strcmp(shape, c->shape) == 0, c->name,
			  "got \"%s\", want \"%s\"", shape, c->shape);
		ROW_CHECK((r.redirect == NULL) == (c->redirect == NULL) &&
			      (r.redirect == NULL ||
			       strcmp(r.redirect, c->redirect) == 0),
			  c->name, "redirect %s",
			  r.redirect ? r.redirect : "-");
		spf_record_clear(&r);
	}
}

static void
test_record_is(void **state)
{
	(void)state;
	assert_true(spf_record_is("v=spf1", 6));
	assert_true(spf_record_is("v=spf1 -all", 11));
	assert_false(spf_record_is("v=spf1x", 7));
	assert_false(spf_record_is("v=spf", 5));
	assert_false(spf_record_is(NULL, 0));
	/* the length counts, not a NUL */
	assert_false(spf_record_is("v=spf1", 5));
}

/* Macros (RFC 7208 7.4's examples) ------------------------------------- */

struct mac_case {
	const char *name;
	const char *spec;
	bool v6;
	const char *want; /* NULL: refused */
	bool sender;
};

static const struct mac_case mac_cases[] = {
	{ "s", "%{s}", false, "strong-bad@email.example.com", true },
	{ "o", "%{o}", false, "email.example.com", false },
	{ "d", "%{d}", false, "email.example.com", false },
	{ "d4", "%{d4}", false, "email.example.com", false },
	{ "d3", "%{d3}", false, "email.example.com", false },
	{ "d2", "%{d2}", false, "example.com", false },
	{ "d1", "%{d1}", false, "com", false },
	{ "dr", "%{dr}", false, "com.example.email", false },
	{ "d2r", "%{d2r}", false, "example.email", false },
	{ "l", "%{l}", false, "strong-bad", true },
	{ "l-", "%{l-}", false, "strong.bad", true },
	{ "lr", "%{lr}", false, "strong-bad", true },
	{ "lr-", "%{lr-}", false, "bad.strong", true },
	{ "l1r-", "%{l1r-}", false, "strong", true },
	{ "ir v", "%{ir}.%{v}._spf.%{d2}", false,
	  "3.2.0.192.in-addr._spf.example.com", false },
	{ "lr- domain", "%{lr-}.lp._spf.%{d2}", false,
	  "bad.strong.lp._spf.example.com", true },
	{ "ip6", "%{ir}.%{v}._spf.%{d2}", true,
	  "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
	  ".ip6._spf.example.com",
	  false },
	{ "h", "%{h}", false, "mx.example.org", false },
	{ "p", "%{p}", false, "unknown", false },
	{ "escapes", "a%%b%_c%-d", false, "a%b c%20d", false },
	{ "upper escapes", "%{L}", false, "strong-bad", true },
	{ "literal", "_spf.example.com", false, "_spf.example.com", false },
	{ "trailing dot dropped", "example.com.", false, "example.com", false },
	{ "c refused", "%{c}", false, NULL, false },
	{ "r refused", "%{r}", false, NULL, false },
	{ "t refused", "%{t}", false, NULL, false },
	{ "zero digit", "%{d0}", false, NULL, false },
	{ "unknown letter", "%{x}", false, NULL, false },
	{ "unterminated", "%{d", false, NULL, false },
	{ "lone percent", "a%b", false, NULL, false },
};

static void
test_macro_expand(void **state)
{
	struct sockaddr_storage v4, v6;
	char out[300];
	size_t i;

	(void)state;
	memset(&v4, 0, sizeof(v4));
	memset(&v6, 0, sizeof(v6));
	v4.ss_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.3", &((struct sockaddr_in *)&v4)->sin_addr);
	v6.ss_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::cb01",
		  &((struct sockaddr_in6 *)&v6)->sin6_addr);
	for (i = 0; i < NELEM(mac_cases); i++) {
		const struct mac_case *c = &mac_cases[i];
		struct spf_macro_env e = {
			.local = "strong-bad",
			.sender_domain = "email.example.com",
			.domain = "email.example.com",
			.ip = c->v6 ? &v6 : &v4,
			.helo = "mx.example.org",
		};
		bool sender = false;
		int rc =
		    spf_macro_expand(c->spec, &e, out, sizeof(out), &sender);

		if (c->want == NULL) {
			ROW_CHECK(rc == -1, c->name, "expanded to \"%s\"", out);
			continue;
		}
		ROW_CHECK(rc == 0, c->name, "refused");
		ROW_CHECK(strcmp(out, c->want) == 0, c->name,
			  "got \"%s\", want \"%s\"", out, c->want);
		ROW_CHECK(sender == c->sender, c->name, "uses_sender %d",
			  sender);
	}
}

static void
test_macro_long_result_loses_left_labels(void **state)
{
	struct spf_macro_env e = { .local = "",
				   .sender_domain = "x.test",
				   .domain = "x.test" };
	char spec[400], out[300];
	size_t i;

	(void)state;
	/* 70 labels "abc." and "x.test": 286 octets, over 253 */
	for (i = 0; i < 70; i++)
		memcpy(spec + i * 4, "abc.", 4);
	memcpy(spec + 280, "%{d}", 5);
	assert_int_equal(spf_macro_expand(spec, &e, out, sizeof(out), NULL), 0);
	assert_true(strlen(out) <= 253);
	assert_true(strlen(out) > 240);
	assert_string_equal(out + strlen(out) - 7, ".x.test");
	assert_int_equal(strncmp(out, "abc.", 4), 0);
	/* the local part is "postmaster" when empty */
	assert_int_equal(spf_macro_expand("%{l}", &e, out, sizeof(out), NULL),
			 0);
	assert_string_equal(out, "postmaster");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_parse),
		cmocka_unit_test(test_record_is),
		cmocka_unit_test(test_macro_expand),
		cmocka_unit_test(test_macro_long_result_loses_left_labels),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
