/*
 * conf_test_dkim.c — unit tests of the signing sections of conf/ (dkim,
 * dkim_sign, dmarc) and the dkim_domain of user and relay: defaults,
 * canonicalisation, limits, many domains, lookups, the shipped example, and
 * the exact "file:line: message" of each error.  Helpers in
 * conf_test_util.[ch].  Single-threaded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "t/unit/conf_test_util.h"

#ifndef OUTPOST_CONF_EXAMPLE
#error "OUTPOST_CONF_EXAMPLE (path of conf/outpost.conf) must be defined"
#endif

/* The signing half of every tree whose file leaves it out. */
static void
check_dkim_defaults(const struct conf *c)
{
	size_t i;

	assert_int_equal(c->ndkims, 0);
	assert_null(c->dkims);
	assert_null(c->dkims_by_domain);
	assert_null(conf_dkim_find(c, "example.com"));
	assert_int_equal(c->dkim_sign.hcanon, CONF_CANON_RELAXED);
	assert_int_equal(c->dkim_sign.bcanon, CONF_CANON_RELAXED);
	assert_null(c->dkim_sign.headers);
	assert_int_equal(c->dkim_sign.nheaders, 0);
	assert_null(c->dkim_sign.oversign);
	assert_int_equal(c->dkim_sign.noversign, 0);
	assert_true(c->dkim_sign.expire_ms == 0);
	assert_true(c->dkim_sign.timestamp);
	assert_true(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_REJECT);
	assert_null(c->dmarc.psl_file);
	assert_null(c->relay_dkim_fallback);
	assert_false(c->relay_allow_unaligned);
	for (i = 0; i < c->nusers; i++) {
		assert_null(c->users[i].dkim_fallback);
		assert_false(c->users[i].allow_unaligned);
	}
}

static void
test_dkim_defaults(void **state)
{
	char err[512], path[PATH_MAX];
	struct conf *c = NULL;

	(void)state;
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	check_dkim_defaults(c);
	conf_free(c);
	assert_int_equal(load_text(LISTENER "user \"u\" { password = \"" HASH
					    "\"\n"
					    "  sender_domains = \"*\" }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	assert_int_equal(c->nusers, 1);
	check_dkim_defaults(c);
	conf_free(c);
	/* empty sections change nothing */
	assert_int_equal(load_text(LISTENER "dkim_sign { }\ndmarc { }\n"
					    "relay { }\n",
				   &c, err, sizeof(err), path, sizeof(path)),
			 0);
	check_dkim_defaults(c);
	conf_free(c);
}

#define L  LISTENER
#define U  "user \"u\" {\n\tpassword = \"" HASH "\"\n\tsender_domains = \"*\"\n"
#define DK "dkim \"esp.example\" { selector = s1  rsa_key = k.pem }\n"
static const struct conf_error_row dkim_error_rows[] = {
	/* dkim "DOMAIN" */
	{ "dkim: no title", L "dkim { selector = s1 rsa_key = k }\n",
	  "2: missing title for section 'dkim'" },
	{ "dkim: unknown key", L "dkim \"a.example\" {\n\tkey = k.pem\n}\n",
	  "3: dkim \"a.example\": no such option 'key'" },
	{ "dkim: star", L "dkim \"*\" { selector = s1 rsa_key = k }\n",
	  "2: dkim \"*\": a dkim section is for one signing domain (d=); for "
	  "a fallback signing domain set dkim_domain in user or relay" },
	{ "dkim: star with a dot", L "dkim \"*.\" { }\n",
	  "2: dkim \"*.\": a dkim section is for one signing domain (d=); for "
	  "a fallback signing domain set dkim_domain in user or relay" },
	{ "dkim: subdomains", L "\ndkim \".A.example\" {\n}\n",
	  "3: dkim \".A.example\": a dkim section is for one signing domain "
	  "(d=): write \"a.example\" (under relaxed DMARC alignment it covers "
	  "mail from its subdomains)" },
	{ "dkim: wildcard label", L "dkim \"*.a.example\" { }\n",
	  "2: dkim \"*.a.example\": a dkim section is for one signing domain "
	  "(d=): write \"a.example\" (under relaxed DMARC alignment it covers "
	  "mail from its subdomains)" },
	{ "dkim: bad domain", L "dkim \"a_b.example\" { }\n",
	  "2: dkim \"a_b.example\": the domain may hold only letters, digits, "
	  "'-' and '.' (use the xn-- form for international names)" },
	{ "dkim: empty title", L "dkim \"\" { }\n",
	  "2: dkim \"\": the domain is empty" },
	{ "dkim: empty label", L "dkim \"a..example\" { }\n",
	  "2: dkim \"a..example\": the domain has an empty label" },
	{ "dkim: a dot", L "dkim \".\" { }\n",
	  "2: dkim \".\": the domain has an empty label" },
	{ "dkim: label ends in -", L "dkim \"a-.example\" { }\n",
	  "2: dkim \"a-.example\": the domain has a label ending in '-'" },
	{ "dkim: duplicate title",
	  L "dkim \"a.example\" { selector = s1 rsa_key = k }\n"
	    "dkim \"a.example\" { selector = s1 rsa_key = k }\n",
	  "3: found duplicate title 'a.example'" },
	{ "dkim: duplicate in another case",
	  L "dkim \"a.example\" { selector = s1 rsa_key = k }\n\n"
	    "dkim \"A.Example\" { selector = s2 rsa_key = k2 }\n",
	  "4: dkim \"A.Example\": the same domain as dkim \"a.example\"" },
	{ "dkim: duplicate with a trailing dot",
	  L "dkim \"a.example.\" { selector = s1 rsa_key = k }\n"
	    "dkim \"a.example\" {\n\tselector = s1 rsa_key = k\n}\n",
	  "3: dkim \"a.example\": the same domain as dkim \"a.example.\"" },
	{ "dkim: the first repeat in file order, not in sorted order",
	  L "dkim \"z.example\" { selector = s rsa_key = k }\n"
	    "dkim \"a.example\" { selector = s rsa_key = k }\n"
	    "dkim \"Z.example\" { selector = s rsa_key = k }\n"
	    "dkim \"A.example\" { selector = s rsa_key = k }\n"
	    "dkim \"z.EXAMPLE\" { selector = s rsa_key = k }\n",
	  "4: dkim \"Z.example\": the same domain as dkim \"z.example\"" },
	{ "dkim: no key", L "\ndkim \"a.example\" {\n}\n",
	  "3: dkim \"a.example\": no key (set selector and rsa_key, and/or "
	  "ed25519_selector and ed25519_key)" },
	{ "dkim: selectors only",
	  L "dkim \"a.example\" {\n\tselector = s1\n"
	    "\ted25519_selector = s2\n}\n",
	  "2: dkim \"a.example\": no key (set selector and rsa_key, and/or "
	  "ed25519_selector and ed25519_key)" },
	{ "dkim: rsa_key without selector",
	  L "dkim \"a.example\" {\n\trsa_key = \"k.pem\"\n}\n",
	  "3: dkim \"a.example\": rsa_key needs selector (its public key is "
	  "published at SELECTOR._domainkey.a.example)" },
	{ "dkim: ed25519_key without ed25519_selector",
	  L "dkim \"A.Example\" {\n\tselector = s1 rsa_key = r.pem\n"
	    "\ted25519_key = \"e.pem\"\n}\n",
	  "4: dkim \"A.Example\": ed25519_key needs ed25519_selector (its "
	  "public key is published at SELECTOR._domainkey.a.example)" },
	{ "dkim: selector for an Ed25519 key",
	  L "dkim \"a.example\" {\n\tselector = s1\n\ted25519_key = e.pem\n"
	    "}\n",
	  "3: dkim \"a.example\": selector is set but rsa_key is not "
	  "(selector names the record of the RSA key; the Ed25519 key's is "
	  "ed25519_selector)" },
	{ "dkim: ed25519_selector without ed25519_key",
	  L "dkim \"a.example\" {\n\tselector = s1 rsa_key = r.pem\n\n"
	    "\ted25519_selector = s2\n}\n",
	  "5: dkim \"a.example\": ed25519_selector is set but ed25519_key is "
	  "not (ed25519_selector names the record of the Ed25519 key)" },
	{ "dkim: one selector for both keys",
	  L "dkim \"a.example\" {\n\tselector = s1\n\trsa_key = r.pem\n"
	    "\ted25519_key = e.pem\n\ted25519_selector = s1\n}\n",
	  "6: dkim \"a.example\": RSA and Ed25519 keys need different "
	  "selectors (one TXT record per selector)" },
	{ "dkim: one selector for both keys, in another case",
	  L "dkim \"a.example\" {\n\ted25519_selector = Sel.2024\n"
	    "\tselector = sel.2024\n\trsa_key = r.pem\n\ted25519_key = e.pem\n"
	    "}\n",
	  "4: dkim \"a.example\": RSA and Ed25519 keys need different "
	  "selectors (one TXT record per selector)" },
	{ "dkim: one file for both keys",
	  L "dkim \"a.example\" {\n\tselector = s1 ed25519_selector = s2\n"
	    "\ted25519_key = \"/k/./k.pem\"\n\trsa_key = \"/k/k.pem\"\n}\n",
	  "5: dkim \"a.example\": rsa_key and ed25519_key are the same file "
	  "(each key has a file of its own)" },
	{ "dkim.selector: underscore",
	  L "dkim \"a.example\" {\n\tselector = \"s_1\"\n}\n",
	  "3: dkim \"a.example\".selector: \"s_1\" may hold only letters, "
	  "digits, '-' and '.' (use the xn-- form for international names)" },
	{ "dkim.selector: empty", L "dkim \"a.example\" { selector = \"\" }\n",
	  "2: dkim \"a.example\".selector: \"\" is empty" },
	{ "dkim.selector: trailing dot",
	  L "dkim \"a.example\" { selector = \"s1.\" }\n",
	  "2: dkim \"a.example\".selector: \"s1.\" ends with a dot" },
	{ "dkim.selector: empty label",
	  L "dkim \"a.example\" { selector = \"s1..x\" }\n",
	  "2: dkim \"a.example\".selector: \"s1..x\" has an empty label" },
	{ "dkim.selector: leading -",
	  L "dkim \"a.example\" { selector = \"-s1\" }\n",
	  "2: dkim \"a.example\".selector: \"-s1\" has a label starting with "
	  "'-'" },
	{ "dkim.selector: space",
	  L "dkim \"a.example\" { selector = \"s 1\" }\n",
	  "2: dkim \"a.example\".selector: \"s 1\" may hold only letters, "
	  "digits, '-' and '.' (use the xn-- form for international names)" },
	{ "dkim.ed25519_selector: label of 64",
	  L "dkim \"a.example\" { ed25519_selector = \"x.aaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" }\n",
	  "2: dkim \"a.example\".ed25519_selector: \"x.aaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" has a label longer "
	  "than 63 characters" },
	{ "dkim.ed25519_selector: trailing -",
	  L "dkim \"a.example\" { ed25519_selector = \"ed-\" }\n",
	  "2: dkim \"a.example\".ed25519_selector: \"ed-\" has a label ending "
	  "in '-'" },
	{ "dkim.rsa_key: empty", L "dkim \"a.example\" { rsa_key = \"\" }\n",
	  "2: dkim \"a.example\".rsa_key: must not be empty" },
	{ "dkim.ed25519_key: control character",
	  L "dkim \"a.example\" {\n\ted25519_key = \"a\\tb\"\n}\n",
	  "3: dkim \"a.example\".ed25519_key: contains a control character" },

	/* dkim_sign */
	{ "dkim_sign: unknown key", L "dkim_sign {\n\tcanon = relaxed\n}\n",
	  "3: dkim_sign: no such option 'canon'" },
	{ "dkim_sign: titled", L "dkim_sign \"x\" { }\n",
	  "2: missing opening brace for section 'dkim_sign'" },
	{ "dkim_sign.canonicalization: half",
	  L "dkim_sign { canonicalization = \"relaxed/\" }\n",
	  "2: dkim_sign.canonicalization: \"relaxed/\" is not one of "
	  "relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple, "
	  "relaxed, simple" },
	{ "dkim_sign.canonicalization: nowsp",
	  L "dkim_sign {\n\tcanonicalization = nowsp\n}\n",
	  "3: dkim_sign.canonicalization: \"nowsp\" is not one of "
	  "relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple, "
	  "relaxed, simple" },
	{ "dkim_sign.canonicalization: spaces",
	  L "dkim_sign { canonicalization = \"relaxed / relaxed\" }\n",
	  "2: dkim_sign.canonicalization: \"relaxed / relaxed\" is not one of "
	  "relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple, "
	  "relaxed, simple" },
	{ "dkim_sign.headers: empty name",
	  L "dkim_sign { headers = { \"From\", \"\" } }\n",
	  "2: dkim_sign.headers: an empty name" },
	{ "dkim_sign.headers: with its colon",
	  L "dkim_sign {\n\theaders = { \"From\",\n\t\t\"Subject:\" }\n}\n",
	  "4: dkim_sign.headers: \"Subject:\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: a space",
	  L "dkim_sign { headers = { \"From\", \"Reply To\" } }\n",
	  "2: dkim_sign.headers: \"Reply To\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: not ASCII",
	  L "dkim_sign { headers = { \"From\", \"S\xc3\xbc"
	    "bject\" } }\n",
	  "2: dkim_sign.headers: \"S\xc3\xbc"
	  "bject\" is not a header field "
	  "name (printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: a tab",
	  L "dkim_sign { headers = { \"From\", \"X\\tY\" } }\n",
	  "2: dkim_sign.headers: \"X?Y\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.headers: listed twice",
	  L "dkim_sign {\n\theaders = { \"From\", \"to\",\n\t\t\"To\" }\n}\n",
	  "4: dkim_sign.headers: \"To\" is listed twice (as \"to\"; names are "
	  "not case-sensitive)" },
	{ "dkim_sign.headers: listed twice across +=",
	  L "dkim_sign {\n\theaders = { \"From\" }\n"
	    "\theaders += { \"FROM\" }\n}\n",
	  "4: dkim_sign.headers: \"FROM\" is listed twice (as \"From\"; names "
	  "are not case-sensitive)" },
	{ "dkim_sign.headers: no From",
	  L "dkim_sign {\n\theaders = { \"To\",\n\t\t\"Subject\" }\n}\n",
	  "4: dkim_sign.headers: \"From\" is missing (RFC 6376 5.4: the From "
	  "field is always signed)" },
	{ "dkim_sign.headers: empty", L "dkim_sign {\n\theaders = { }\n\n}\n",
	  "5: dkim_sign.headers: \"From\" is missing (RFC 6376 5.4: the From "
	  "field is always signed)" },
	{ "dkim_sign.headers: += without From",
	  L "dkim_sign {\n\theaders += { \"To\" }\n}\n",
	  "3: dkim_sign.headers: \"From\" is missing (RFC 6376 5.4: the From "
	  "field is always signed)" },
	{ "dkim_sign.oversign: bad name",
	  L "dkim_sign { oversign = { \"From\", \"a:b\" } }\n",
	  "2: dkim_sign.oversign: \"a:b\" is not a header field name "
	  "(printable ASCII without ':' or spaces)" },
	{ "dkim_sign.oversign: listed twice",
	  L "dkim_sign { oversign = { \"subject\", \"Subject\" } }\n",
	  "2: dkim_sign.oversign: \"Subject\" is listed twice (as \"subject\"; "
	  "names are not case-sensitive)" },
	{ "dkim_sign.expire: below one minute",
	  L "dkim_sign {\n\texpire = 30s\n}\n",
	  "3: dkim_sign.expire: \"30s\" is less than the minimum, 1m (or 0 for "
	  "no x= tag)" },
	{ "dkim_sign.expire: 59", L "dkim_sign { expire = 59 }\n",
	  "2: dkim_sign.expire: \"59\" is less than the minimum, 1m (or 0 for "
	  "no x= tag)" },
	{ "dkim_sign.expire: above maximum", L "dkim_sign { expire = 366d }\n",
	  "2: dkim_sign.expire: \"366d\" is more than the maximum, 365d" },
	{ "dkim_sign.expire: overflow",
	  L "dkim_sign { expire = 99999999999999999999d }\n",
	  "2: dkim_sign.expire: \"99999999999999999999d\" is more than the "
	  "maximum, 365d" },
	{ "dkim_sign.expire: not whole seconds",
	  L "dkim_sign { expire = 90500ms }\n",
	  "2: dkim_sign.expire: \"90500ms\" is not a whole number of seconds" },
	{ "dkim_sign.expire: not a duration",
	  L "dkim_sign { expire = never }\n",
	  "2: dkim_sign.expire: \"never\" is not a duration (use e.g. 30s, 5m, "
	  "1h)" },
	{ "dkim_sign.expire: negative", L "dkim_sign { expire = -1 }\n",
	  "2: dkim_sign.expire: \"-1\" is not a duration (use e.g. 30s, 5m, "
	  "1h)" },
	{ "dkim_sign.timestamp: bad bool",
	  L "dkim_sign { timestamp = sometimes }\n",
	  "2: dkim_sign.timestamp: \"sometimes\" is not true or false" },

	/* dmarc */
	{ "dmarc: unknown key", L "dmarc {\n\tpolicy = reject\n}\n",
	  "3: dmarc: no such option 'policy'" },
	{ "dmarc.action: quarantine", L "dmarc { action = quarantine }\n",
	  "2: dmarc.action: \"quarantine\" is not one of reject, hold, "
	  "accept" },
	{ "dmarc.action: empty", L "dmarc {\n\taction = \"\"\n}\n",
	  "3: dmarc.action: \"\" is not one of reject, hold, accept" },
	{ "dmarc.check: bad bool", L "dmarc { check = perhaps }\n",
	  "2: dmarc.check: \"perhaps\" is not true or false" },
	{ "dmarc.psl_file: control character",
	  L "dmarc { psl_file = \"psl\\n.dat\" }\n",
	  "2: dmarc.psl_file: contains a control character" },

	/* dkim_domain and allow_unaligned of user and relay */
	{ "user.dkim_domain: undefined",
	  L U "\tdkim_domain = \"esp.example\"\n}\n",
	  "5: user \"u\".dkim_domain: no dkim \"esp.example\" is defined (add "
	  "dkim \"esp.example\" { selector = ...  rsa_key = ... })" },
	{ "user.dkim_domain: a subdomain of a dkim section",
	  L DK U "\tdkim_domain = \"News.ESP.example\"\n}\n",
	  "6: user \"u\".dkim_domain: no dkim \"news.esp.example\" is defined "
	  "(add dkim \"news.esp.example\" { selector = ...  rsa_key = ... })" },
	{ "user.dkim_domain: star", L DK U "\tdkim_domain = \"*\"\n}\n",
	  "6: user \"u\".dkim_domain: \"*\" may hold only letters, digits, '-' "
	  "and '.' (use the xn-- form for international names)" },
	{ "user.dkim_domain: subdomains",
	  L DK U "\tdkim_domain = \".esp.example\"\n}\n",
	  "6: user \"u\".dkim_domain: \".esp.example\" has an empty label" },
	{ "user.dkim_domain: empty", L U "\tdkim_domain = \"\"\n}\n",
	  "5: user \"u\".dkim_domain: \"\" is empty" },
	{ "user.dkim_domain: too long",
	  L U
	  "\tdkim_domain = \""
	  "a.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "\"\n}\n",
	  "5: user \"u\".dkim_domain: \"a.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaa\" is longer than 253 characters" },
	{ "user.allow_unaligned: without dkim_domain",
	  L U "\n\tallow_unaligned = true\n}\n",
	  "6: user \"u\": allow_unaligned = true needs dkim_domain (the "
	  "fallback signing domain it lets sign unaligned mail)" },
	{ "user.allow_unaligned: bad bool",
	  L DK U "\tdkim_domain = esp.example\n\tallow_unaligned = often\n}\n",
	  "7: user \"u\".allow_unaligned: \"often\" is not true or false" },
	{ "relay.dkim_domain: undefined",
	  L DK "relay {\n\tdkim_domain = \"esp.example.net\"\n}\n",
	  "4: relay.dkim_domain: no dkim \"esp.example.net\" is defined (add "
	  "dkim \"esp.example.net\" { selector = ...  rsa_key = ... })" },
	{ "relay.dkim_domain: bad domain",
	  L "relay { dkim_domain = \"esp..example\" }\n",
	  "2: relay.dkim_domain: \"esp..example\" has an empty label" },
	{ "relay.allow_unaligned: without dkim_domain",
	  L DK
	  "relay {\n\tnetworks = \"127.64.0.0/10\"\n\tallow_unaligned = yes\n"
	  "}\n",
	  "5: relay: allow_unaligned = true needs dkim_domain (the fallback "
	  "signing domain it lets sign unaligned mail)" },
	{ "relay.allow_unaligned: bad bool",
	  L "relay { allow_unaligned = 2 }\n",
	  "2: relay.allow_unaligned: \"2\" is not true or false" },
};
#undef DK
#undef U
#undef L

static void
test_dkim_errors(void **state)
{
	(void)state;
	CONF_TEST_ERROR_ROWS(dkim_error_rows);
}

static void
test_dkim_good(void **state)
{
	static const struct {
		const char *domain;
		const char *want; /* the section's domain; NULL: none */
	} rows[] = {
		{ "shop.example", "shop.example" },
		{ "SHOP.Example", "shop.example" },
		{ "shop.example.", "shop.example" },
		{ "esp.example", "esp.example" },
		{ "both.example", "both.example" },
		{ "a.shop.example", NULL }, /* exact only */
		{ "xshop.example", NULL },
		{ "shop.exampl", NULL },
		{ "example", NULL },
		{ "", NULL },
		{ ".", NULL },
		{ ".shop.example", NULL },
	};
	char err[1024], path[PATH_MAX];
	struct conf *c = NULL;
	const struct conf_dkim *d;
	const struct conf_dkim_sign *s;
	const struct conf_user *u;
	size_t i;

	(void)state;
	assert_int_equal(
	    load_text(
		LISTENER
		"data_dir = /srv/outpost\n"
		/* references before the sections they name */
		"user \"a\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  dkim_domain = \"ESP.Example.\"  allow_unaligned = yes }\n"
		"user \"b\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  dkim_domain = shop.example }\n"
		"user \"c\" { password = \"" HASH "\" sender_domains = \"*\"\n"
		"  allow_unaligned = false }\n"
		"relay { networks = \"127.64.0.0/10\"  dkim_domain = "
		"esp.example\n"
		"  allow_unaligned = on }\n"
		"dkim \"Shop.Example\" {\n"
		"  selector = \"S1\"  rsa_key = \"keys/shop.pem\"\n"
		"}\n"
		"dkim \"esp.example.\" {\n"
		"  ed25519_selector = \"ed.2024-1\"\n"
		"  ed25519_key = \"/etc/dkim//esp.ed\"\n"
		"}\n"
		"dkim \"both.example\" {\n"
		"  selector = a  rsa_key = r.pem\n"
		"  ed25519_selector = b  ed25519_key = e.pem\n"
		"}\n"
		"dkim_sign {\n"
		"  canonicalization = SIMPLE/relaxed\n"
		"  headers = { \"From\", \"subject\", \"X-Campaign-ID\" }\n"
		"  headers += { \"List-Unsubscribe\" }\n"
		"  oversign = { }\n"
		"  expire = 7d  timestamp = false\n"
		"}\n"
		"dmarc { check = no  action = HOLD\n"
		"  psl_file = \"psl/public_suffix_list.dafsa\" }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_string_equal(err, "");
	/* no key file exists: they are named, not opened */
	assert_int_equal(c->ndkims, 3);
	d = &c->dkims[0];
	assert_string_equal(d->domain, "shop.example");
	assert_string_equal(d->selector, "S1");
	assert_string_equal(d->rsa_key, "/srv/outpost/keys/shop.pem");
	assert_null(d->ed25519_selector);
	assert_null(d->ed25519_key);
	d = &c->dkims[1];
	assert_string_equal(d->domain, "esp.example");
	assert_null(d->selector);
	assert_null(d->rsa_key);
	assert_string_equal(d->ed25519_selector, "ed.2024-1");
	assert_string_equal(d->ed25519_key, "/etc/dkim/esp.ed");
	d = &c->dkims[2];
	assert_string_equal(d->selector, "a");
	assert_string_equal(d->rsa_key, "/srv/outpost/r.pem");
	assert_string_equal(d->ed25519_selector, "b");
	assert_string_equal(d->ed25519_key, "/srv/outpost/e.pem");
	for (i = 0; i < 3; i++)
		assert_non_null(c->dkims_by_domain[i]);

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		d = conf_dkim_find(c, rows[i].domain);
		if (rows[i].want == NULL) {
			CHECK_INT(rows[i].domain, d == NULL, 1);
			continue;
		}
		CHECK_INT(rows[i].domain, d != NULL, 1);
		CHECK_STR(rows[i].domain, d->domain, rows[i].want);
		CHECK_INT(rows[i].domain,
			  d >= c->dkims && d < c->dkims + c->ndkims, 1);
	}
	assert_null(conf_dkim_find(c, NULL));
	assert_null(conf_dkim_find(NULL, "shop.example"));

	u = conf_user_find(c, "a");
	assert_ptr_equal(u->dkim_fallback, &c->dkims[1]);
	assert_true(u->allow_unaligned);
	u = conf_user_find(c, "b");
	assert_ptr_equal(u->dkim_fallback, &c->dkims[0]);
	assert_false(u->allow_unaligned);
	u = conf_user_find(c, "c");
	assert_null(u->dkim_fallback);
	assert_false(u->allow_unaligned);
	assert_ptr_equal(c->relay_dkim_fallback, &c->dkims[1]);
	assert_true(c->relay_allow_unaligned);

	s = &c->dkim_sign;
	assert_int_equal(s->hcanon, CONF_CANON_SIMPLE);
	assert_int_equal(s->bcanon, CONF_CANON_RELAXED);
	assert_int_equal(s->nheaders, 4);
	assert_string_equal(s->headers[0], "From");
	assert_string_equal(s->headers[1], "subject");
	assert_string_equal(s->headers[2], "X-Campaign-ID");
	assert_string_equal(s->headers[3], "List-Unsubscribe");
	assert_null(s->headers[4]);
	/* set to nothing: not NULL (the built-in list), an empty one */
	assert_non_null(s->oversign);
	assert_int_equal(s->noversign, 0);
	assert_null(s->oversign[0]);
	assert_true(s->expire_ms == (uint64_t)7 * 86400000);
	assert_false(s->timestamp);

	assert_false(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_HOLD);
	assert_string_equal(c->dmarc.psl_file,
			    "/srv/outpost/psl/public_suffix_list.dafsa");
	conf_free(c);

	/* the other ends: expire 1m and 365d, accept, "" for the PSL */
	assert_int_equal(
	    load_text(
		LISTENER
		"dkim_sign { expire = 1m  oversign = { \"From\" }\n"
		"  headers = { \"from\" } }\n"
		"dmarc { action = accept  psl_file = \"\"  check = true }\n",
		&c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_true(c->dkim_sign.expire_ms == 60000);
	assert_int_equal(c->dkim_sign.nheaders, 1);
	assert_int_equal(c->dkim_sign.noversign, 1);
	assert_string_equal(c->dkim_sign.oversign[0], "From");
	assert_null(c->dkim_sign.oversign[1]);
	assert_true(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_ACCEPT);
	assert_null(c->dmarc.psl_file);
	conf_free(c);
	assert_int_equal(
	    load_text(LISTENER "dkim_sign { expire = 365d }\n"
			       "dmarc { action = reject psl_file = /a.dat }\n",
		      &c, err, sizeof(err), path, sizeof(path)),
	    0);
	assert_true(c->dkim_sign.expire_ms == (uint64_t)365 * 86400000);
	assert_int_equal(c->dmarc.action, CONF_DMARC_REJECT);
	assert_string_equal(c->dmarc.psl_file, "/a.dat");
	conf_free(c);
}

static void
test_dkim_canon(void **state)
{
	static const struct {
		const char *in;
		enum conf_canon h, b;
	} rows[] = {
		{ "relaxed/relaxed", CONF_CANON_RELAXED, CONF_CANON_RELAXED },
		{ "relaxed/simple", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
		{ "simple/relaxed", CONF_CANON_SIMPLE, CONF_CANON_RELAXED },
		{ "simple/simple", CONF_CANON_SIMPLE, CONF_CANON_SIMPLE },
		/* RFC 6376 3.5: one word is the header's; the body's simple */
		{ "relaxed", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
		{ "simple", CONF_CANON_SIMPLE, CONF_CANON_SIMPLE },
		{ "Relaxed/Relaxed", CONF_CANON_RELAXED, CONF_CANON_RELAXED },
		{ "RELAXED", CONF_CANON_RELAXED, CONF_CANON_SIMPLE },
	};
	char err[1024], path[PATH_MAX], text[512];
	struct conf *c = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text),
			 LISTENER "dkim_sign { canonicalization = \"%s\" }\n",
			 rows[i].in);
		if (load_text(text, &c, err, sizeof(err), path, sizeof(path)) !=
		    0)
			fail_msg("%s: %s", rows[i].in, err);
		CHECK_INT(rows[i].in, c->dkim_sign.hcanon, rows[i].h);
		CHECK_INT(rows[i].in, c->dkim_sign.bcanon, rows[i].b);
		conf_free(c);
	}
}

/* One past each limit: the list's size, a selector's DNS name. */
static void
test_dkim_limits(void **state)
{
	static const char *const keys[] = { "headers", "oversign" };
	char err[1024], path[PATH_MAX], want[PATH_MAX + 800];
	char text[4096], dom[256], sel[64];
	struct conf *c = NULL;
	size_t i, len;
	unsigned k, n;
	int rc;

	(void)state;
	for (i = 0; i < 2; i++) {
		for (n = 64; n <= 65; n++) {
			len = (size_t)snprintf(
			    text, sizeof(text),
			    "%sdkim_sign { %s = {\n\"From\",\n", LISTENER,
			    keys[i]);
			for (k = 1; k < n; k++)
				len += (size_t)snprintf(text + len,
							sizeof(text) - len,
							"\"X-H%u\",\n", k);
			snprintf(text + len, sizeof(text) - len, "} }\n");
			rc = load_text(text, &c, err, sizeof(err), path,
				       sizeof(path));
			if (n == 64) {
				if (rc != 0)
					fail_msg("%s: %u names: %s", keys[i], n,
						 err);
				conf_free(c);
				continue;
			}
			CHECK_INT(keys[i], rc, -1);
			/* name N+1 is on line 2 + N + 1 */
			snprintf(want, sizeof(want),
				 "%s:%u: dkim_sign.%s: more than 64 names",
				 path, n + 2, keys[i]);
			CHECK_STR(keys[i], err, want);
		}
	}

	/* a name of 128, of 129 */
	memset(sel, 0, sizeof(sel));
	for (n = 128; n <= 129; n++) {
		len = (size_t)snprintf(text, sizeof(text),
				       "%sdkim_sign { headers = { From, \"",
				       LISTENER);
		memset(text + len, 'X', n);
		snprintf(text + len + n, sizeof(text) - len - n, "\" } }\n");
		rc = load_text(text, &c, err, sizeof(err), path, sizeof(path));
		if (n == 128) {
			if (rc != 0)
				fail_msg("a name of 128: %s", err);
			assert_int_equal(strlen(c->dkim_sign.headers[1]), 128);
			conf_free(c);
			continue;
		}
		snprintf(want, sizeof(want),
			 "%s:2: dkim_sign.headers: a name longer than 128 "
			 "characters",
			 path);
		CHECK_STR("a name of 129", err, want);
	}

	/* SELECTOR._domainkey.DOMAIN: 253 is fine, 254 is not */
	snprintf(
	    dom, sizeof(dom), "%.63s.%.63s.%.63s.example",
	    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	    "ccc",
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbb",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaa");
	assert_int_equal(strlen(dom), 199);
	for (n = 42; n <= 43; n++) { /* 42 + 12 + 199 = 253 */
		memset(sel, 's', n);
		sel[n] = '\0';
		snprintf(text, sizeof(text),
			 "%sdkim \"%s\" {\n\ted25519_selector = \"%s\"\n"
			 "\ted25519_key = k\n}\n",
			 LISTENER, dom, sel);
		rc = load_text(text, &c, err, sizeof(err), path, sizeof(path));
		if (n == 42) {
			if (rc != 0)
				fail_msg("selector of 42: %s", err);
			conf_free(c);
			continue;
		}
		snprintf(want, sizeof(want),
			 "%s:3: dkim \"%s\".ed25519_selector: "
			 "\"%s._domainkey.%s\" would be longer than 253 "
			 "characters",
			 path, dom, sel, dom);
		CHECK_STR("selector of 43", err, want);
	}
}

/* An ESP's worth of dkim sections: found by the index, repeats caught. */
static void
test_dkim_many(void **state)
{
	enum { N = 3000 };
	char err[1024], path[PATH_MAX], want[PATH_MAX + 200], name[64];
	struct conf *c = NULL;
	const struct conf_dkim *d;
	size_t len, cap = (size_t)N * 80 + 1024;
	char *text = malloc(cap);
	unsigned i, k;

	(void)state;
	assert_non_null(text);
	len = (size_t)snprintf(text, cap, "%s", LISTENER);
	/* not in sorted order: d<k>.example with k a permutation of 0..N-1 */
	for (i = 0; i < N; i++) {
		k = (i * 1009u) % N;
		len += (size_t)snprintf(text + len, cap - len,
					"dkim \"D%u.example\" { selector = s%u "
					"rsa_key = k%u }\n",
					k, k, k);
	}
	assert_true(len < cap - 200);
	assert_int_equal(
	    load_text(text, &c, err, sizeof(err), path, sizeof(path)), 0);
	assert_int_equal(c->ndkims, N);
	for (i = 0; i < N; i++) {
		k = (i * 1009u) % N;
		snprintf(name, sizeof(name), "d%u.example", k);
		d = conf_dkim_find(c, name);
		CHECK_INT(name, d == &c->dkims[i], 1);
		CHECK_STR(name, c->dkims[i].domain, name);
		CHECK_INT(name,
			  i == 0 || strcmp(c->dkims_by_domain[i - 1]->domain,
					   c->dkims_by_domain[i]->domain) < 0,
			  1);
	}
	assert_null(conf_dkim_find(c, "d3000.example"));
	conf_free(c);

	/* the same domain again, last: an error on its line */
	snprintf(text + len, cap - len,
		 "dkim \"d1009.example.\" { selector = s rsa_key = k }\n");
	assert_int_equal(
	    load_text(text, &c, err, sizeof(err), path, sizeof(path)), -1);
	snprintf(want, sizeof(want),
		 "%s:%u: dkim \"d1009.example.\": the same domain as dkim "
		 "\"D1009.example\"",
		 path, N + 2);
	assert_string_equal(err, want);
	free(text);
}

static void
test_example_dkim(void **state)
{
	char err[1024];
	struct conf *c = NULL;
	const struct conf_dkim *d, *esp;
	const struct conf_user *u;

	(void)state;
	if (conf_load(&c, OUTPOST_CONF_EXAMPLE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c->ndkims, 2);
	d = conf_dkim_find(c, "example.com");
	assert_non_null(d);
	assert_string_equal(d->selector, "s2024");
	assert_string_equal(d->rsa_key,
			    "/var/lib/outpost/keys/dkim/example.com.s2024.key");
	assert_string_equal(d->ed25519_selector, "s2024e");
	assert_string_equal(
	    d->ed25519_key,
	    "/var/lib/outpost/keys/dkim/example.com.s2024e.key");
	esp = conf_dkim_find(c, "esp.example");
	assert_non_null(esp);
	assert_null(esp->ed25519_key);
	u = conf_user_find(c, "campaigns");
	assert_ptr_equal(u->dkim_fallback, esp);
	assert_false(u->allow_unaligned);
	assert_ptr_equal(c->relay_dkim_fallback, esp);
	assert_false(c->relay_allow_unaligned);
	/* the example shows the defaults, but for the header lists */
	assert_int_equal(c->dkim_sign.hcanon, CONF_CANON_RELAXED);
	assert_int_equal(c->dkim_sign.bcanon, CONF_CANON_RELAXED);
	assert_int_equal(c->dkim_sign.nheaders, 17);
	assert_string_equal(c->dkim_sign.headers[0], "From");
	assert_int_equal(c->dkim_sign.noversign, 4);
	assert_string_equal(c->dkim_sign.oversign[3], "List-Unsubscribe-Post");
	assert_true(c->dkim_sign.expire_ms == 0);
	assert_true(c->dkim_sign.timestamp);
	assert_true(c->dmarc.check);
	assert_int_equal(c->dmarc.action, CONF_DMARC_REJECT);
	assert_null(c->dmarc.psl_file);
	conf_free(c);
}

/* ---- observe: log, metrics, control ---- */

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dkim_defaults),
		cmocka_unit_test(test_dkim_errors),
		cmocka_unit_test(test_dkim_good),
		cmocka_unit_test(test_dkim_canon),
		cmocka_unit_test(test_dkim_limits),
		cmocka_unit_test(test_dkim_many),
		cmocka_unit_test(test_example_dkim),
	};

	return cmocka_run_group_tests(tests, conf_test_setup,
				      conf_test_teardown);
}
