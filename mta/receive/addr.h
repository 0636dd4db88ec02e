/*
 * addr.h — strict parsing of SMTP paths (RFC 5321 4.1.2) from MAIL FROM and
 * RCPT TO.  No normalisation of what is relayed: the mailbox is kept as the
 * client wrote it; only the domain is also kept lower-cased for policy.
 */
#ifndef OUTPOST_MTA_ADDR_H
#define OUTPOST_MTA_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_PATH_MAX   256 /* RFC 5321 4.5.3.1.3, without the brackets */
#define ADDR_LOCAL_MAX  64
#define ADDR_DOMAIN_MAX 255

enum addr_result {
	ADDR_OK,
	ADDR_SYNTAX, /* not a valid path */
	ADDR_TOO_LONG,
	ADDR_SOURCE_ROUTE, /* <@a,@b:user@c>: refused, never relayed through */
	ADDR_LITERAL,      /* user@[1.2.3.4]: refused for relay */
	ADDR_NO_DOMAIN,    /* <user>, <user!host>, <"a@b">: no domain part */
	ADDR_UTF8,         /* 8-bit bytes without SMTPUTF8 (or bad UTF-8) */
};

struct addr_path {
	bool null;                        /* <> */
	char mailbox[ADDR_PATH_MAX + 1];  /* local@domain as written */
	char domain[ADDR_DOMAIN_MAX + 1]; /* lower-cased (ASCII) */
	bool utf8;                        /* holds 8-bit bytes */
};

/*
 * addr_path_parse — parse "<…>" at the start of S (spaces before '<' are
 * tolerated).  NULL_OK allows "<>"; UTF8_OK allows UTF-8 in the local part
 * and domain (SMTPUTF8).  On ADDR_OK, *REST points just after '>'.
 */
enum addr_result addr_path_parse(const char *s, bool null_ok, bool utf8_ok,
				 struct addr_path *out, const char **rest);

/* addr_result_str — a short reason for replies and logs. */
const char *addr_result_str(enum addr_result r);

#endif
