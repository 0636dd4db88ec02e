/*
 * bounce_rules_test.c — bounce categories (conf/conf_bounce.c, the SHIPPED
 * conf/bounce-categories, mta/deliver/outcome.c's outcome_categorize):
 * a corpus of real-world replies of the large mailbox providers and
 * filters, each classified as delivery does it (outcome_classify, then
 * outcome_categorize with a configuration that names the shipped file);
 * the built-in rules are that same file; the rules-file errors name
 * file:line; bounce { categories } resolves, orders and reloads its files.
 * Single-threaded; writes only under a mkdtemp() directory.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "mta/deliver/outcome.h"
#include "t/unit/test_row.h"

#ifndef OUTPOST_BOUNCE_CATEGORIES
#error "OUTPOST_BOUNCE_CATEGORIES: the path of conf/bounce-categories"
#endif

/* One reply as the SMTP client keeps it: the text without the code, the
 * lines of a multi-line reply joined by '\n'. */
struct corpus_row {
	const char *name;
	enum outcome_stage stage;
	int code;
	const char *text;
	enum conf_bounce_category want;
};

#define BC(x) CONF_BC_##x

static const struct corpus_row corpus[] = {
	/* ---- Gmail ---- */
	{ "gmail nosuchuser", OS_RCPT, 550,
	  "5.1.1 The email account that you tried to reach does not exist. "
	  "Please try\n5.1.1 double-checking the recipient's email address "
	  "for typos or\n5.1.1 unnecessary spaces. "
	  "https://support.google.com/mail/?p=NoSuchUser "
	  "a1si1234567wrb.12 - gsmtp",
	  BC(BAD_MAILBOX) },
	{ "gmail disabled", OS_RCPT, 550,
	  "5.2.1 The email account that you tried to reach is disabled. "
	  "Learn more at\n5.2.1  "
	  "https://support.google.com/mail/?p=DisabledUser "
	  "x7si99wrb.1 - gsmtp",
	  BC(INACTIVE_MAILBOX) },
	{ "gmail over quota 5xx", OS_RCPT, 552,
	  "5.2.2 The email account that you tried to reach is over quota. "
	  "Please direct\n5.2.2 the recipient to\n5.2.2  "
	  "https://support.google.com/mail/?p=OverQuotaPerm "
	  "b3si3wrb.7 - gsmtp",
	  BC(QUOTA) },
	{ "gmail over quota 4xx", OS_RCPT, 452,
	  "4.2.2 The email account that you tried to reach is over quota. "
	  "Please direct\n4.2.2 the recipient to\n4.2.2  "
	  "https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
	  BC(QUOTA) },
	{ "gmail receiving rate", OS_RCPT, 450,
	  "4.2.1 The user you are trying to contact is receiving mail at a "
	  "rate that\n4.2.1 prevents additional messages from being "
	  "delivered. Please resend your\n4.2.1 message at a later time. "
	  "https://support.google.com/mail/?p=ReceivingRate - gsmtp",
	  BC(RATE_LIMITED) },
	{ "gmail 4.7.28 rate limited", OS_EOM, 421,
	  "4.7.28 Our system has detected an unusual rate of unsolicited mail "
	  "originating\n4.7.28 from your IP address. To protect our users "
	  "from spam, mail sent from your\n4.7.28 IP address has been "
	  "temporarily rate limited. - gsmtp",
	  BC(RATE_LIMITED) },
	{ "gmail 5.7.28 blocked", OS_EOM, 550,
	  "5.7.28 Our system has detected an unusual rate of unsolicited mail "
	  "originating\n5.7.28 from your IP address. To protect our users "
	  "from spam, mail sent from your\n5.7.28 IP address has been "
	  "blocked. - gsmtp",
	  BC(SPAM_RELATED) },
	{ "gmail likely unsolicited", OS_EOM, 550,
	  "5.7.1 Our system has detected that this message is likely "
	  "unsolicited mail.\n5.7.1 To reduce the amount of spam sent to "
	  "Gmail, this message has been\n5.7.1 blocked. "
	  "https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
	  BC(SPAM_RELATED) },
	{ "gmail low reputation", OS_EOM, 421,
	  "4.7.0 This message is suspicious due to the very low reputation of "
	  "the\n4.7.0 sending domain. To best protect our users from spam, "
	  "the message has\n4.7.0 been blocked. - gsmtp",
	  BC(SPAM_RELATED) },
	{ "gmail dmarc 5.7.26", OS_EOM, 550,
	  "5.7.26 Unauthenticated email from example.com is not accepted due "
	  "to domain's\n5.7.26 DMARC policy. Please contact the "
	  "administrator of example.com domain - gsmtp",
	  BC(POLICY_RELATED) },
	{ "gmail unauthenticated 5.7.26", OS_EOM, 550,
	  "5.7.26 This mail has been blocked because the sender is "
	  "unauthenticated.\n5.7.26 Gmail requires all senders to "
	  "authenticate with either SPF or DKIM. - gsmtp",
	  BC(POLICY_RELATED) },
	{ "gmail 4.7.26 deferred", OS_EOM, 421,
	  "4.7.26 This mail has been rate limited because it is "
	  "unauthenticated. Gmail\n4.7.26 requires all senders to "
	  "authenticate with either SPF or DKIM. - gsmtp",
	  BC(POLICY_RELATED) },
	{ "gmail no PTR", OS_MAIL, 550,
	  "5.7.25 [127.0.0.21] The IP address sending this message does not "
	  "have a\n5.7.25 PTR record setup, or the corresponding forward DNS "
	  "entry does not\n5.7.25 point to the sending IP. - gsmtp",
	  BC(POLICY_RELATED) },
	{ "gmail security issue", OS_EOM, 552,
	  "5.7.0 This message was blocked because its content presents a "
	  "potential\n5.7.0 security issue. - gsmtp",
	  BC(MESSAGE_CONTENT) },
	{ "gmail size", OS_EOM, 552,
	  "5.3.4 Your message exceeded Google's message size limits. - gsmtp",
	  BC(MESSAGE_CONTENT) },
	{ "gmail not authorized directly", OS_MAIL, 550,
	  "5.7.1 [127.0.0.21] The IP you're using to send mail is not "
	  "authorized to\n5.7.1 send email directly to our servers. Please "
	  "use the SMTP relay at your\n5.7.1 service provider instead. - gsmtp",
	  BC(POLICY_RELATED) },
	{ "gmail temporary system problem", OS_EOM, 451,
	  "4.3.0 Temporary System Problem.  Try again later (10). - gsmtp",
	  BC(TRANSIENT_OTHER) },
	/* ---- Outlook.com, Hotmail, Office 365 ---- */
	{ "outlook mailbox unavailable", OS_RCPT, 550,
	  "5.5.0 Requested action not taken: mailbox unavailable "
	  "(S2017062302). [AM4PEPF00027A5F.eurprd04.prod.outlook.com]",
	  BC(BAD_MAILBOX) },
	{ "o365 access denied 5.4.1", OS_RCPT, 550,
	  "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
	  "[DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
	  BC(BAD_MAILBOX) },
	{ "o365 recipient not found 5.1.10", OS_EOM, 550,
	  "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
	  "address lookup",
	  BC(BAD_MAILBOX) },
	{ "outlook S3150 block list", OS_MAIL, 550,
	  "5.7.1 Unfortunately, messages from [127.0.0.21] weren't sent. "
	  "Please contact your Internet service provider since part of their "
	  "network is on our block list (S3150). You can also refer your "
	  "provider to http://mail.live.com/mail/troubleshooting.aspx#errors. "
	  "[BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]",
	  BC(SPAM_RELATED) },
	{ "o365 banned sending IP", OS_MAIL, 550,
	  "5.7.606 Access denied, banned sending IP [127.0.0.21]. To request "
	  "removal from this list please visit https://sender.office.com/ and "
	  "follow the directions.",
	  BC(SPAM_RELATED) },
	{ "o365 traffic not accepted 5.7.708", OS_MAIL, 550,
	  "5.7.708 Service unavailable. Access denied, traffic not accepted "
	  "from this IP.",
	  BC(SPAM_RELATED) },
	{ "o365 4.7.650 IP reputation", OS_MAIL, 451,
	  "4.7.650 The mail server [127.0.0.21] has been temporarily rate "
	  "limited due to IP reputation. For e-mail delivery information, see "
	  "https://postmaster.live.com (S775)",
	  BC(RATE_LIMITED) },
	{ "o365 server busy", OS_RCPT, 451,
	  "4.7.500 Server busy. Please try again later from [127.0.0.21]. "
	  "(S77714)",
	  BC(RATE_LIMITED) },
	{ "o365 DMARC reject", OS_EOM, 550,
	  "5.7.509 Access denied, sending domain example.com does not pass "
	  "DMARC verification and has a DMARC policy of reject.",
	  BC(POLICY_RELATED) },
	{ "o365 mailbox full", OS_EOM, 554,
	  "5.2.2 mailbox full; STOREDRV.Deliver.Exception:"
	  "QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
	  BC(QUOTA) },
	{ "o365 external forwarding", OS_EOM, 550,
	  "5.7.520 Access denied, Your organization does not allow external "
	  "forwarding. Please contact your administrator for further "
	  "assistance. AS(7555)",
	  BC(POLICY_RELATED) },
	{ "o365 tenant no subscription", OS_RCPT, 451,
	  "4.4.4 Mail received as unauthenticated, incoming to a recipient "
	  "domain configured in a hosted tenant which has no mail-enabled "
	  "subscriptions. ATTR5",
	  BC(ROUTING) },
	{ "hotmail RP-001 hourly limits", OS_MAIL, 421,
	  "RP-001 (COL004-MC1F18) Unfortunately, some messages from "
	  "127.0.0.21 weren't sent. Please try again. We have limits for how "
	  "many messages can be sent per hour and per day.",
	  BC(RATE_LIMITED) },
	{ "hotmail SC-001 dynamic", OS_MAIL, 550,
	  "SC-001 (BAY004-MC1F23) Unfortunately, messages from 127.0.0.21 "
	  "weren't sent. Please contact your Internet service provider. You "
	  "can tell them that Hotmail does not relay dynamically-assigned IP "
	  "ranges.",
	  BC(SPAM_RELATED) },
	/* ---- Yahoo, AOL ---- */
	{ "yahoo policy reasons", OS_EOM, 554,
	  "5.7.9 Message not accepted for policy reasons.  See "
	  "https://help.yahoo.com/kb/postmaster/SLN7304.html",
	  BC(POLICY_RELATED) },
	{ "yahoo TSS04 volume", OS_MAIL, 421,
	  "4.7.0 [TSS04] Messages from 127.0.0.21 temporarily deferred due to "
	  "unexpected volume or user complaints - 4.16.55; see "
	  "https://postmaster.yahooinc.com/error-codes",
	  BC(RATE_LIMITED) },
	{ "yahoo TS01 complaints", OS_MAIL, 421,
	  "4.7.0 [TS01] Messages from 127.0.0.21 temporarily deferred due to "
	  "user complaints - 4.16.55; see "
	  "https://help.yahoo.com/kb/postmaster/SLN3434.html",
	  BC(SPAM_RELATED) },
	{ "yahoo TSS09 permanently deferred", OS_MAIL, 421,
	  "4.7.0 [TSS09] All messages from 127.0.0.21 will be permanently "
	  "deferred; Retrying will NOT succeed. See "
	  "https://postmaster.yahooinc.com/error-codes",
	  BC(SPAM_RELATED) },
	{ "yahoo no account", OS_RCPT, 554,
	  "delivery error: dd This user doesn't have a yahoo.com account "
	  "(someone@yahoo.com) [0] - mta1042.mail.ne1.yahoo.com",
	  BC(BAD_MAILBOX) },
	{ "yahoo mailbox disabled", OS_RCPT, 554,
	  "delivery error: dd Sorry your message to someone@yahoo.com cannot "
	  "be delivered. This mailbox is disabled (554.30). - "
	  "mta4171.mail.bf1.yahoo.com",
	  BC(INACTIVE_MAILBOX) },
	{ "yahoo dd over quota", OS_RCPT, 554,
	  "delivery error: dd Sorry your message to someone@yahoo.com cannot "
	  "be delivered. This account is over quota. - "
	  "mta1234.mail.gq1.yahoo.com",
	  BC(QUOTA) },
	{ "aol mailbox not found", OS_RCPT, 552,
	  "1 Requested mail action aborted, mailbox not found",
	  BC(BAD_MAILBOX) },
	{ "yahoo BL21 spamhaus", OS_MAIL, 553,
	  "5.7.1 [BL21] Connections will not be accepted from 127.0.0.21, "
	  "because the ip is in Spamhaus's list; see "
	  "http://postmaster.yahoo.com/550-bl23.html",
	  BC(SPAM_RELATED) },
	{ "aol will not accept", OS_EOM, 521,
	  "5.2.1 :  AOL will not accept delivery of this message.",
	  BC(SPAM_RELATED) },
	/* ---- Apple iCloud ---- */
	{ "icloud user does not exist", OS_RCPT, 550,
	  "5.1.1 <someone@icloud.com>: user does not exist", BC(BAD_MAILBOX) },
	{ "icloud over quota", OS_RCPT, 552,
	  "5.2.2 <someone@icloud.com>: user is over quota", BC(QUOTA) },
	{ "icloud CS01 local policy", OS_EOM, 554,
	  "5.7.1 [CS01] Message rejected due to local policy. Please visit "
	  "https://support.apple.com/en-us/HT204137",
	  BC(POLICY_RELATED) },
	{ "icloud HM08", OS_EOM, 550,
	  "5.7.1 [HM08] Message rejected due to local policy. Please visit "
	  "https://support.apple.com/en-us/HT204137",
	  BC(POLICY_RELATED) },
	{ "icloud proofpoint blocked", OS_MAIL, 550,
	  "5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=127.0.0.21",
	  BC(SPAM_RELATED) },
	/* ---- GMX, web.de ---- */
	{ "gmx mailbox unavailable", OS_RCPT, 550,
	  "Requested action not taken: mailbox unavailable", BC(BAD_MAILBOX) },
	{ "gmx sender MX", OS_MAIL, 550,
	  "Requested action not taken: mailbox unavailable\ninvalid DNS MX "
	  "or A/AAAA resource record",
	  BC(POLICY_RELATED) },
	{ "gmx blacklisted", OS_GREETING, 554,
	  "gmx.net (mxgmx017) Nemesis ESMTP Service not available\nNo SMTP "
	  "service\nIP address is black listed.\nFor explanation visit "
	  "https://www.gmx.net/mail/senderguidelines?c=bl",
	  BC(SPAM_RELATED) },
	{ "web.de policy restrictions", OS_EOM, 554,
	  "Transaction failed\nReject due to policy restrictions.\nFor "
	  "explanation visit "
	  "https://web.de/email/senderguidelines?ip=127.0.0.21"
	  "&c=hi",
	  BC(POLICY_RELATED) },
	{ "gmx storage allocation", OS_RCPT, 552,
	  "Requested mail action aborted: exceeded storage allocation",
	  BC(QUOTA) },
	/* ---- Orange ---- */
	{ "orange invalid recipient", OS_RCPT, 550,
	  "5.1.1 Adresse d au moins un destinataire invalide. Invalid "
	  "recipient. OFR_416 [416]",
	  BC(BAD_MAILBOX) },
	{ "orange overquota", OS_RCPT, 452,
	  "4.2.2 Boite du destinataire pleine. Recipient overquota. OFR_417 "
	  "[417]",
	  BC(QUOTA) },
	{ "orange archived", OS_RCPT, 554,
	  "5.2.0 Boite du destinataire archivee. Archived recipient. OFR_418 "
	  "[418]",
	  BC(INACTIVE_MAILBOX) },
	{ "orange too many connections", OS_GREETING, 421,
	  "mwinf5c30 ME Trop de connexions, veuillez verifier votre "
	  "configuration. Too many connections, slow down. OFR005_104 [104]",
	  BC(RATE_LIMITED) },
	{ "orange spam block", OS_GREETING, 550,
	  "mwinf5c05 ME Adresse IP source bloquee pour incident de spam. "
	  "Client host blocked for spamming issues. OFR006_102 Ref "
	  "http://csi.cloudmark.com/reset-request/?ip=127.0.0.21 [102]",
	  BC(SPAM_RELATED) },
	/* ---- Comcast ---- */
	{ "comcast DNSBL", OS_GREETING, 554,
	  "resimta-po-12v.sys.comcast.net resimta-po-12v.sys.comcast.net "
	  "127.0.0.21 found on one or more DNSBLs, see "
	  "http://postmaster.comcast.net/smtp-error-codes.php#BL000001",
	  BC(SPAM_RELATED) },
	{ "comcast not our customer", OS_RCPT, 551, "5.1.1 Not our Customer",
	  BC(BAD_MAILBOX) },
	{ "comcast too many sessions", OS_GREETING, 421,
	  "4.7.0 Too many sessions opened from IP 127.0.0.21; see "
	  "http://postmaster.comcast.net/smtp-error-codes.php#RL000001",
	  BC(RATE_LIMITED) },
	{ "comcast PTR", OS_MAIL, 550,
	  "5.2.0 Comcast requires that all mail servers must have a PTR "
	  "record with a valid Reverse DNS entry. Currently your mail server "
	  "does not have a reverse DNS entry.",
	  BC(POLICY_RELATED) },
	/* ---- Mimecast ---- */
	{ "mimecast invalid recipient", OS_RCPT, 550,
	  "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369"
	  "#550 [aBcDeFgHiJkLmNoPqRsTuV.uk123]",
	  BC(BAD_MAILBOX) },
	{ "mimecast anti-spoofing", OS_RCPT, 550,
	  "Rejected by header based Anti-Spoofing policy: someone@example.com "
	  "- https://community.mimecast.com/docs/DOC-1369#550",
	  BC(POLICY_RELATED) },
	{ "mimecast IP blacklisted", OS_MAIL, 451,
	  "IP temporarily blacklisted - "
	  "https://community.mimecast.com/docs/DOC-1369#451",
	  BC(SPAM_RELATED) },
	{ "mimecast open relay", OS_RCPT, 451,
	  "Open relay not allowed - "
	  "https://community.mimecast.com/docs/DOC-1369#451",
	  BC(ROUTING) },
	{ "mimecast security policies", OS_EOM, 554,
	  "Email rejected due to security policies - "
	  "https://community.mimecast.com/docs/DOC-1369#554",
	  BC(POLICY_RELATED) },
	/* ---- Proofpoint, Barracuda ---- */
	{ "proofpoint ipcheck", OS_GREETING, 554,
	  "5.7.1 Service unavailable; Client host [127.0.0.21] blocked using "
	  "proofpoint; see https://ipcheck.proofpoint.com/?ip=127.0.0.21",
	  BC(SPAM_RELATED) },
	{ "proofpoint local policy violation", OS_EOM, 550,
	  "5.7.0 Local Policy Violation", BC(POLICY_RELATED) },
	{ "barracuda reputation", OS_MAIL, 554,
	  "Service unavailable; Client host [127.0.0.21] blocked using "
	  "Barracuda Reputation; http://www.barracudanetworks.com/reputation/"
	  "?r=1&ip=127.0.0.21",
	  BC(SPAM_RELATED) },
	{ "barracuda intent analysis", OS_EOM, 550,
	  "permanent failure for one or more recipients "
	  "(someone@example.com:550 Message rejected because of intent "
	  "analysis)",
	  BC(SPAM_RELATED) },
	{ "barracuda no such user", OS_RCPT, 550,
	  "No such user (someone@example.com)", BC(BAD_MAILBOX) },
	/* ---- Blocklists ---- */
	{ "spamhaus zen", OS_RCPT, 554,
	  "5.7.1 Service unavailable; Client host [127.0.0.21] blocked using "
	  "zen.spamhaus.org; https://www.spamhaus.org/query/ip/127.0.0.21",
	  BC(SPAM_RELATED) },
	{ "spamcop", OS_RCPT, 550,
	  "5.7.1 Rejected - see http://www.spamcop.net/bl.shtml?127.0.0.21",
	  BC(SPAM_RELATED) },
	/* ---- Postfix, Exim, Sendmail and the RFC 3463 codes ---- */
	{ "postfix user unknown", OS_RCPT, 550,
	  "5.1.1 <someone@example.com>: Recipient address rejected: User "
	  "unknown in virtual mailbox table",
	  BC(BAD_MAILBOX) },
	{ "postfix domain not found", OS_RCPT, 450,
	  "4.1.2 <someone@example.invalid>: Recipient address rejected: "
	  "Domain not found",
	  BC(BAD_DOMAIN) },
	{ "postfix relay access denied", OS_RCPT, 554,
	  "5.7.1 <someone@example.com>: Relay access denied", BC(ROUTING) },
	{ "postfix sender rejected", OS_MAIL, 553,
	  "5.7.1 <news@example.com>: Sender address rejected: Domain not "
	  "found",
	  BC(POLICY_RELATED) },
	{ "postfix greylisted", OS_RCPT, 450,
	  "4.2.0 <someone@example.com>: Recipient address rejected: "
	  "Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
	  BC(TRANSIENT_OTHER) },
	{ "exim unrouteable", OS_RCPT, 550, "Unrouteable address",
	  BC(BAD_MAILBOX) },
	{ "sendmail user unknown", OS_RCPT, 550,
	  "5.1.1 <someone@example.com>... User unknown", BC(BAD_MAILBOX) },
	{ "mailbox disabled 5.2.1", OS_RCPT, 550,
	  "5.2.1 Mailbox disabled, not accepting messages",
	  BC(INACTIVE_MAILBOX) },
	{ "size 5.3.4", OS_EOM, 552,
	  "5.3.4 Message size exceeds fixed maximum message size",
	  BC(MESSAGE_CONTENT) },
	{ "content 5.6.0", OS_EOM, 554, "5.6.0 Message contains invalid header",
	  BC(MESSAGE_CONTENT) },
	{ "syntax 5.5.2", OS_MAIL, 501,
	  "5.5.2 Syntax error in parameters or arguments", BC(PROTOCOL) },
	{ "routing 5.4.6 loop", OS_EOM, 554,
	  "5.4.6 Too many hops: mail loop detected", BC(ROUTING) },
	{ "generic spam 5.7.1", OS_EOM, 550,
	  "5.7.1 Message rejected as spam by Content Filtering.",
	  BC(SPAM_RELATED) },
	{ "generic policy 5.7.1", OS_RCPT, 550,
	  "5.7.1 Recipient not authorized to receive this kind of message",
	  BC(POLICY_RELATED) },
	{ "too many connections 4.7.0", OS_GREETING, 421,
	  "4.7.0 Too many concurrent SMTP connections; please try again "
	  "later",
	  BC(RATE_LIMITED) },
	{ "insufficient storage 4.3.1", OS_MAIL, 452,
	  "4.3.1 Insufficient system storage", BC(TRANSIENT_OTHER) },
	{ "unmatched 4xx", OS_RCPT, 451,
	  "4.2.1 <someone@example.com>: mailbox busy, try later",
	  BC(TRANSIENT_OTHER) },
	{ "unmatched 5xx", OS_EOM, 554, "Transaction failed", BC(OTHER) },
	/* ---- What Outpost itself decides ---- */
	{ "null MX", OS_LOCAL, 550,
	  "5.1.10 the recipient domain accepts no mail (null MX, RFC 7505)",
	  BC(BAD_DOMAIN) },
	{ "NXDOMAIN", OS_LOCAL, 550,
	  "5.1.2 the recipient domain does not exist (NXDOMAIN)",
	  BC(BAD_DOMAIN) },
	{ "no usable MX", OS_LOCAL, 550,
	  "5.4.4 no usable mail exchanger: no MX", BC(ROUTING) },
	{ "DNS temporary failure", OS_LOCAL, 451,
	  "4.4.3 DNS lookup of the mail exchanger failed: timeout",
	  BC(ROUTING) },
	{ "8-bit to a 7-bit host", OS_LOCAL, 554,
	  "5.6.3 the receiving host does not support 8BITMIME and the message "
	  "has 8-bit content",
	  BC(MESSAGE_CONTENT) },
	{ "over the host's SIZE", OS_LOCAL, 554,
	  "5.3.4 message size 30000000 exceeds the receiving host's limit of "
	  "10485760",
	  BC(MESSAGE_CONTENT) },
	{ "connection refused", OS_CONNECT, 0, "Connection refused",
	  BC(CONNECTION) },
	{ "TLS failure", OS_TLS, 0,
	  "TLS handshake failed: certificate verify failed", BC(CONNECTION) },
	{ "timeout", OS_EOM, 0, "timeout waiting for the reply",
	  BC(CONNECTION) },
	{ "protocol error", OS_RCPT, 0,
	  "4.5.0 malformed reply line (protocol error)", BC(PROTOCOL) },
	{ "250 to DATA", OS_DATA, 250, "OK", BC(PROTOCOL) },
};

static struct conf *shipped; /* bounce { categories = SHIPPED } */
static char tmpdir[] = "/tmp/outpost-bounce-rules-XXXXXX";

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* DIR/NAME with TEXT; the path into PATH. */
static void
tmp_file(char path[PATH_MAX], const char *name, const char *text)
{
	snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
	write_file(path, text);
}

static struct conf *
load_conf(const char *name, const char *text, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct conf *c = NULL;

	tmp_file(path, name, text);
	if (conf_load(&c, path, err, errlen) != 0)
		return NULL;
	return c;
}

/* As load_conf, and the test stops when it fails. */
static struct conf *
load_conf_ok(const char *name, const char *text)
{
	char err[1024];
	struct conf *c = load_conf(name, text, err, sizeof(err));

	if (c == NULL) {
		print_error("%s: %s\n", name, err);
		fail();
		abort(); /* fail() returns to cmocka by longjmp */
	}
	return c;
}

static int
setup(void **state)
{
	char text[PATH_MAX + 200], err[512];

	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(text, sizeof(text),
		 "listener \"127.0.0.1:2525\" { }\n"
		 "bounce { categories = { \"%s\" } }\n",
		 OUTPOST_BOUNCE_CATEGORIES);
	shipped = load_conf("shipped.conf", text, err, sizeof(err));
	if (shipped == NULL)
		fprintf(stderr, "shipped rules: %s\n", err);
	return shipped != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	conf_free(shipped);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* What delivery does with one result: classify, then categorize. */
static enum conf_bounce_category
categorize(const struct conf *c, const struct corpus_row *r, struct outcome *o)
{
	outcome_classify(r->stage, r->code, r->text, NULL, 0, o);
	outcome_categorize(c, r->code, r->text, o);
	return o->category;
}

/* Every corpus reply gets its category from the shipped file. */
static void
test_corpus(void **state)
{
	struct outcome o;
	size_t i, wrong = 0;

	(void)state;
	assert_true(NELEM(corpus) >= 60);
	for (i = 0; i < NELEM(corpus); i++) {
		const struct corpus_row *r = &corpus[i];
		enum conf_bounce_category got = categorize(shipped, r, &o);

		/* Every row that differs is said, then the test fails. */
		if (got != r->want)
			print_error("row \"%s\": got %s, want %s (status %s)\n",
				    r->name, conf_bounce_category_name(got),
				    conf_bounce_category_name(r->want),
				    o.status);
		wrong += got != r->want;
		ROW_CHECK(o.action != OA_DELIVERED, r->name, "delivered?");
	}
	assert_int_equal(wrong, 0);
}

/* The built-in rules (no file) are the shipped file: same rules, same
 * answers. */
static void
test_builtin_is_shipped(void **state)
{
	struct conf_bounce_rules *builtin = NULL;
	char err[512];
	struct outcome o;
	size_t i;

	(void)state;
	assert_int_equal(
	    conf_bounce_rules_load(&builtin, NULL, 0, err, sizeof(err)), 0);
	assert_true(conf_bounce_rules_count(builtin) > 100);
	assert_int_equal(conf_bounce_rules_count(builtin),
			 conf_bounce_rules_count(shipped->bounce.rules));
	for (i = 0; i < NELEM(corpus); i++) {
		categorize(shipped, &corpus[i], &o);
		ROW_CHECK(conf_bounce_rules_classify(
			      builtin, corpus[i].code, o.status,
			      corpus[i].text) == o.category,
			  corpus[i].name, "built-in differs");
	}
	conf_bounce_rules_free(builtin);
}

/* How fast the shipped rules classify (a bounce storm is settled on the
 * delivery loop): each corpus reply a thousand times. */
static void
test_speed(void **state)
{
	struct timespec a, b;
	struct outcome o;
	size_t i, k, n = 0;
	double us;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (k = 0; k < 1000; k++)
		for (i = 0; i < NELEM(corpus); i++, n++)
			categorize(shipped, &corpus[i], &o);
	clock_gettime(CLOCK_MONOTONIC, &b);
	us = ((double)(b.tv_sec - a.tv_sec) * 1e9 +
	      (double)(b.tv_nsec - a.tv_nsec)) /
	     1e3 / (double)n;
	printf("# %.1f us per classification (%zu replies, %zu rules)\n", us, n,
	       conf_bounce_rules_count(shipped->bounce.rules));
	assert_true(us < 1000.0);
}

static void
test_names(void **state)
{
	unsigned i;

	(void)state;
	assert_null(conf_bounce_category_name(CONF_BC_NONE));
	assert_null(conf_bounce_category_name(CONF_BC__COUNT));
	for (i = 1; i < CONF_BC__COUNT; i++)
		assert_int_equal(
		    conf_bounce_category_lookup(conf_bounce_category_name(i)),
		    i);
	assert_string_equal(conf_bounce_category_name(CONF_BC_RATE_LIMITED),
			    "rate-limited");
	assert_int_equal(conf_bounce_category_lookup("Bad-Mailbox"),
			 CONF_BC_BAD_MAILBOX);
	assert_int_equal(conf_bounce_category_lookup("none"), CONF_BC_NONE);
	assert_int_equal(conf_bounce_category_lookup(NULL), CONF_BC_NONE);
}

/* Without rules: the fall-backs. */
static void
test_fallbacks(void **state)
{
	(void)state;
	assert_int_equal(conf_bounce_rules_classify(NULL, 0, "4.4.1", "x"),
			 CONF_BC_CONNECTION);
	assert_int_equal(conf_bounce_rules_classify(NULL, 451, "4.3.0", "x"),
			 CONF_BC_TRANSIENT_OTHER);
	assert_int_equal(conf_bounce_rules_classify(NULL, 550, NULL, NULL),
			 CONF_BC_OTHER);
	assert_int_equal(conf_bounce_rules_classify(NULL, 250, NULL, ""),
			 CONF_BC_PROTOCOL);
}

/* Wrong lines: "file:line: message", nothing loaded. */
static void
test_errors(void **state)
{
	static const struct {
		const char *text;
		unsigned line;
		const char *want;
	} rows[] = {
		{ "# c\n\nspammy 5xx * spam\n", 3,
		  "unknown category \"spammy\"" },
		{ "quota\n", 1, "a reply code pattern is expected" },
		{ "quota 6xx * x\n", 1, "not \"6xx\"" },
		{ "quota 5x * x\n", 1, "not \"5x\"" },
		{ "quota 55a * x\n", 1, "not \"55a\"" },
		{ "quota 5xx\n", 1, "an enhanced status pattern is expected" },
		{ "quota 5xx 5.2\n", 1, "not \"5.2\"" },
		{ "quota 5xx 5.2.x\n", 1, "not \"5.2.x\"" },
		{ "quota 5xx 5..2\n", 1, "not \"5..2\"" },
		{ "bad-mailbox 550 5.1.1\nquota 5xx * (unclosed\n", 2,
		  "\"(unclosed\" is not an extended regular expression" },
	};
	struct conf_bounce_rules *r;
	char path[PATH_MAX], err[512], want[PATH_MAX + 40];
	const char *files[1] = { path };
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(rows); i++) {
		tmp_file(path, "bad-rules", rows[i].text);
		r = (struct conf_bounce_rules *)1;
		assert_int_equal(
		    conf_bounce_rules_load(&r, files, 1, err, sizeof(err)), -1);
		assert_null(r);
		snprintf(want, sizeof(want), "%s:%u: ", path, rows[i].line);
		ROW_CHECK(strncmp(err, want, strlen(want)) == 0 &&
			      strstr(err, rows[i].want) != NULL,
			  rows[i].text, "err \"%s\"", err);
	}
	/* A file that cannot be read: its name and why. */
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(conf_bounce_rules_load(&r, files, 1, err, sizeof(err)),
			 -1);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);
}

/* A rule's parts: code digits, status parts, the regex anywhere in the
 * text, case-insensitive; 000 only for no reply, * for any code. */
static void
test_rule_parts(void **state)
{
	struct conf_bounce_rules *r = NULL;
	char path[PATH_MAX], err[512];
	const char *files[1] = { path };

	(void)state;
	tmp_file(path, "parts",
		 "quota 45x *.2.* full\n"
		 "routing 000 * refused\n"
		 "spam-related * 5.7.* \n"
		 "bad-domain 5x1 *\n");
	assert_int_equal(conf_bounce_rules_load(&r, files, 1, err, sizeof(err)),
			 0);
	assert_int_equal(conf_bounce_rules_count(r), 4);
	assert_int_equal(
	    conf_bounce_rules_classify(r, 452, "4.2.0", "Mailbox FULL"),
	    CONF_BC_QUOTA);
	assert_int_equal(conf_bounce_rules_classify(r, 442, "4.2.0", "full"),
			 CONF_BC_TRANSIENT_OTHER);
	assert_int_equal(conf_bounce_rules_classify(r, 0, "4.4.1",
						    "connect: Connection "
						    "refused"),
			 CONF_BC_ROUTING);
	assert_int_equal(
	    conf_bounce_rules_classify(r, 550, "5.1.1", "Connection refused"),
	    CONF_BC_OTHER);
	assert_int_equal(conf_bounce_rules_classify(r, 554, "5.7.1", NULL),
			 CONF_BC_SPAM_RELATED);
	assert_int_equal(conf_bounce_rules_classify(r, 0, "5.7.1", NULL),
			 CONF_BC_CONNECTION);
	assert_int_equal(conf_bounce_rules_classify(r, 521, NULL, "x"),
			 CONF_BC_BAD_DOMAIN);
	conf_bounce_rules_free(r);
}

/*
 * bounce { categories }: files read in order (an operator's rule before
 * the shipped ones wins), relative names against the configuration's
 * directory, the default bounce-categories there when present (else the
 * built-in rules), a missing file named at the key's line, a wrong line
 * of a rules file as that file's file:line.
 */
static void
test_conf_files(void **state)
{
	char path[PATH_MAX], text[2 * PATH_MAX], err[1024], want[3 * PATH_MAX];
	struct conf *c;
	struct outcome o;
	const struct corpus_row quota = { "q", OS_RCPT, 552,
					  "5.2.2 mailbox full", BC(QUOTA) };

	(void)state;
	/* No key, no file beside it: the built-in rules. */
	c = load_conf_ok("a.conf", "listener \"127.0.0.1:2525\" { }\n");
	assert_int_equal(c->bounce.ncategories, 0);
	assert_int_equal(conf_bounce_rules_count(c->bounce.rules),
			 conf_bounce_rules_count(shipped->bounce.rules));
	conf_free(c);
	/* The default file beside the configuration. */
	tmp_file(path, "bounce-categories", "other 5xx *\n");
	c = load_conf_ok("a.conf", "listener \"127.0.0.1:2525\" { }\n");
	assert_int_equal(c->bounce.ncategories, 1);
	assert_string_equal(c->bounce.categories[0], path);
	assert_int_equal(categorize(c, &quota, &o), CONF_BC_OTHER);
	conf_free(c);
	unlink(path);
	/* The operator's file first, then the shipped one. */
	tmp_file(path, "local-rules",
		 "# ours\nspam-related 552 5.2.2 mailbox full\n");
	snprintf(text, sizeof(text),
		 "listener \"127.0.0.1:2525\" { }\n"
		 "bounce {\n  categories = { \"local-rules\", \"%s\" }\n}\n",
		 OUTPOST_BOUNCE_CATEGORIES);
	c = load_conf_ok("b.conf", text);
	assert_int_equal(c->bounce.ncategories, 2);
	assert_string_equal(c->bounce.categories[0], path);
	assert_int_equal(categorize(c, &quota, &o), CONF_BC_SPAM_RELATED);
	assert_int_equal(categorize(c, &corpus[0], &o), CONF_BC_BAD_MAILBOX);
	conf_free(c);
	assert_int_equal(categorize(shipped, &quota, &o), CONF_BC_QUOTA);
	/* A missing file: at the key. */
	c = load_conf("c.conf",
		      "listener \"127.0.0.1:2525\" { }\n"
		      "bounce {\n  categories = { \"nowhere\" }\n}\n",
		      err, sizeof(err));
	assert_null(c);
	snprintf(want, sizeof(want),
		 "%s/c.conf:3: bounce.categories: %s/nowhere: No such file or "
		 "directory",
		 tmpdir, tmpdir);
	assert_string_equal(err, want);
	/* A wrong line: the rules file's own line. */
	tmp_file(path, "local-rules", "quota 5xx 5.2.2\nbogus 5xx *\n");
	c = load_conf("d.conf",
		      "listener \"127.0.0.1:2525\" { }\n"
		      "bounce { categories = { \"local-rules\" } }\n",
		      err, sizeof(err));
	assert_null(c);
	snprintf(want, sizeof(want), "%s:2: unknown category \"bogus\"", path);
	assert_memory_equal(err, want, strlen(want));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_fallbacks),
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_builtin_is_shipped),
		cmocka_unit_test(test_rule_parts),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_conf_files),
		cmocka_unit_test(test_speed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
