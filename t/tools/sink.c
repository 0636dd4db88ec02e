/*
 * sink.c — outpost-sink: the SMTP receiver that plays the remote MX hosts
 * of test domains, fast enough for the relay benchmark and scriptable per
 * recipient (rules, delays, TLS misbehaviour).  This file: options,
 * listeners, the TLS context, signals, the ready and stats files.
 *
 * Owns: the global `sink`.  Single-threaded: one libevent loop.  Must not:
 * bind or talk to anything but loopback (127.0.0.0/8, ::1); listen
 * addresses are numeric and checked before bind.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "t/tools/sink_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

struct sink sink;

static const char sink_usage[] =
    "usage: outpost-sink --listen ADDR:PORT [--listen …] [options]\n"
    "  --listen 127.x.y.z:PORT | [::1]:PORT   (loopback only;\n"
    "                      repeatable, up to 4096)\n"
    "  --ready-file F      write \"ready\\n\" once every listener is up\n"
    "  --stats F           counters as JSON (100 ms, SIGUSR1, exit)\n"
    "  --maildir DIR       store accepted messages as DIR/<seq>.eml\n"
    "  --count-only        discard message text (default)\n"
    "  --rules F           PREFIX STAGE [REPLY] lines, STAGE = rcpt|once|\n"
    "                      close|data|delay:MS; %a in REPLY = the address\n"
    "  --no-default-rules  no built-in defer/reject/datadefer/datareject/\n"
    "                      close421/slow/deferonce prefixes\n"
    "  --hostname NAME     greeting and EHLO name (sink.test)\n"
    "  --no-pipelining --no-8bitmime --no-smtputf8 --chunking\n"
    "  --max-size BYTES    SIZE (52428800)    --max-rcpt N (1000)\n"
    "  --starttls [--cert F --key F]   (else a self-signed EC cert)\n"
    "  --tls-broken[=close|garbage|hang]  --tls-min V  --tls-max V\n"
    "  --mail-reply 'CODE TEXT'  --data-reply 'CODE TEXT'\n"
    "  --greeting-reply 'CODE TEXT'\n"
    "  --greeting-delay-ms MS  --reply-delay-ms MS  --slow-ms MS (2000)\n"
    "  --max-connections N  --max-msgs-per-conn N  --timeout-s S (300)\n"
    "  -v, --verbose       trace sessions on stderr (twice: states)\n";

/* Built-in rules: the local-part prefixes tests use without a file. */
static const char *const sink_default_rules[] = {
	"defer rcpt 451 4.2.1 <%a>: mailbox busy, try later",
	"reject rcpt 550 5.1.1 <%a>: user unknown",
	"datadefer data 451 4.3.0 temporary failure, try again later",
	"datareject data 554 5.7.1 message rejected",
	"close421 close 421 4.7.0 too many connections",
	"deferonce once 451 4.7.1 <%a>: greylisted, try again later",
};

void
sink_log(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(buf, sizeof(buf), fmt, ap) >= (int)sizeof(buf))
		buf[sizeof(buf) - 1] = '\0';
	va_end(ap);
	fprintf(stderr, "outpost-sink[%ld]: %s\n", (long)getpid(), buf);
}

static void sink_fatal(const char *fmt, ...) SINK_PRINTF(1, 2);

static void
sink_fatal(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(buf, sizeof(buf), fmt, ap) >= (int)sizeof(buf))
		buf[sizeof(buf) - 1] = '\0';
	va_end(ap);
	fprintf(stderr, "outpost-sink: %s\n", buf);
	exit(2);
}

static long
sink_number(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		sink_fatal("%s: \"%s\" is not a number in %ld..%ld", opt, s,
			   min, max);
	return v;
}

static int
sink_tls_version(const char *s)
{
	if (strcmp(s, "1.0") == 0)
		return TLS1_VERSION;
	if (strcmp(s, "1.1") == 0)
		return TLS1_1_VERSION;
	if (strcmp(s, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(s, "1.3") == 0)
		return TLS1_3_VERSION;
	sink_fatal("TLS version \"%s\": want 1.0, 1.1, 1.2 or 1.3", s);
	return 0;
}

static void
sink_reply_option(const char *opt, const char *r)
{
	size_t i;

	if (strlen(r) < 3 || r[0] < '2' || r[0] > '5' || r[1] < '0' ||
	    r[1] > '9' || r[2] < '0' || r[2] > '9' ||
	    (r[3] != '\0' && r[3] != ' ') || strlen(r) > SINK_REPLY_MAX / 2)
		sink_fatal("%s: want 'CODE TEXT' with CODE 2xx..5xx", opt);
	for (i = 0; r[i] != '\0'; i++)
		if (r[i] == '\r' || r[i] == '\n')
			sink_fatal("%s: no CR or LF in a reply", opt);
}

/*
 * Parse "127.x.y.z:PORT" or "[::1]:PORT" into a loopback socket address;
 * anything else (names, other addresses) is refused: the sink never
 * listens off loopback.
 */
static void
sink_listen_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *port;
	size_t hlen;
	long p;

	memset(ss, 0, sizeof(*ss));
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (close == NULL || close[1] != ':')
			sink_fatal("--listen %s: want [::1]:PORT", spec);
		hlen = (size_t)(close - spec - 1);
		if (hlen >= sizeof(host))
			sink_fatal("--listen %s: bad address", spec);
		memcpy(host, spec + 1, hlen);
		port = close + 2;
	} else {
		const char *colon = strrchr(spec, ':');

		if (colon == NULL)
			sink_fatal("--listen %s: want ADDR:PORT", spec);
		hlen = (size_t)(colon - spec);
		if (hlen >= sizeof(host))
			sink_fatal("--listen %s: bad address", spec);
		memcpy(host, spec, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';
	p = sink_number("--listen port", port, 0, 65535);
	if (spec[0] != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			sink_fatal("--listen %s: not a numeric IPv4 address "
				   "(IPv6 goes in brackets)",
				   spec);
		if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			sink_fatal("--listen %s: refused: not a loopback "
				   "address (127.0.0.0/8, ::1)",
				   spec);
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			sink_fatal("--listen %s: not a numeric IPv6 address",
				   spec);
		if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			sink_fatal("--listen %s: refused: not a loopback "
				   "address (127.0.0.0/8, ::1)",
				   spec);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*sin6);
	}
}

static void
sink_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	(void)lev;
	sink_session_accept(arg, fd, sa, socklen);
}

static void
sink_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct sink_listener *l = arg;

	(void)lev;
	/* EMFILE and friends: say so, keep serving the open sessions. */
	sink_log("accept on %s: %s", l->st.name, strerror(errno));
}

static void
sink_listen(const char *spec)
{
	struct sockaddr_storage ss, bound;
	socklen_t len, blen = sizeof(bound);
	struct sink_listener *l;
	char host[INET6_ADDRSTRLEN];
	int n;

	if (sink.nlisteners == SINK_LISTEN_MAX)
		sink_fatal("too many --listen (at most %d)", SINK_LISTEN_MAX);
	sink_listen_parse(spec, &ss, &len);
	l = &sink.listeners[sink.nlisteners];
	l->lev = evconnlistener_new_bind(
	    sink.base, sink_accept_cb, l,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    1024, (struct sockaddr *)&ss, (int)len);
	if (l->lev == NULL)
		sink_fatal("--listen %s: %s", spec, strerror(errno));
	evconnlistener_set_error_cb(l->lev, sink_accept_error_cb);
	if (getsockname(evconnlistener_get_fd(l->lev),
			(struct sockaddr *)&bound, &blen) != 0)
		sink_fatal("getsockname: %s", strerror(errno));
	if (bound.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&bound;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		n = snprintf(l->st.name, sizeof(l->st.name), "[%s]:%u", host,
			     ntohs(sin6->sin6_port));
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&bound;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		n = snprintf(l->st.name, sizeof(l->st.name), "%s:%u", host,
			     ntohs(sin->sin_port));
	}
	if (n < 0 || n >= (int)sizeof(l->st.name))
		sink_fatal("--listen %s: name too long", spec);
	sink.nlisteners++;
}

/* A self-signed P-256 certificate for conf.hostname, in memory. */
static int
sink_tls_selfsigned(SSL_CTX *ctx)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	unsigned char r[4];
	long serial;
	int rc = -1;

	if ((key = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL)
		goto done;
	if (RAND_bytes(r, sizeof(r)) != 1)
		goto done;
	serial = 1 + (long)(((unsigned long)(r[0] & 0x7f) << 24) |
			    ((unsigned long)r[1] << 16) |
			    ((unsigned long)r[2] << 8) | r[3]);
	if (X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), serial) != 1)
		goto done;
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
	name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(
		name, "CN", MBSTRING_ASC,
		(const unsigned char *)sink.conf.hostname, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    X509_set_pubkey(x, key) != 1 ||
	    X509_sign(x, key, EVP_sha256()) == 0)
		goto done;
	if (SSL_CTX_use_certificate(ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1)
		goto done;
	rc = 0;
done:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

static void
sink_tls_init(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	static const unsigned char sid[] = "outpost-sink";

	if (ctx == NULL)
		sink_fatal("SSL_CTX_new failed");
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	if (sink.conf.tls_min &&
	    SSL_CTX_set_min_proto_version(ctx, sink.conf.tls_min) != 1)
		sink_fatal("--tls-min: refused by OpenSSL");
	if (sink.conf.tls_max &&
	    SSL_CTX_set_max_proto_version(ctx, sink.conf.tls_max) != 1)
		sink_fatal("--tls-max: refused by OpenSSL");
	if (sink.conf.cert_file != NULL) {
		if (SSL_CTX_use_certificate_chain_file(
			ctx, sink.conf.cert_file) != 1)
			sink_fatal("--cert %s: cannot load",
				   sink.conf.cert_file);
		if (SSL_CTX_use_PrivateKey_file(ctx, sink.conf.key_file,
						SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1)
			sink_fatal("--key %s: cannot load or does not match",
				   sink.conf.key_file);
	} else if (sink_tls_selfsigned(ctx) != 0)
		sink_fatal("cannot make a self-signed certificate");
	sink.ssl_ctx = ctx;
}

/* Continue message numbers after the highest DIR/<n>.eml already there. */
static void
sink_maildir_init(void)
{
	struct dirent *de;
	DIR *d;

	if (mkdir(sink.conf.maildir, 0755) != 0 && errno != EEXIST)
		sink_fatal("--maildir %s: %s", sink.conf.maildir,
			   strerror(errno));
	if ((d = opendir(sink.conf.maildir)) == NULL)
		sink_fatal("--maildir %s: %s", sink.conf.maildir,
			   strerror(errno));
	while ((de = readdir(d)) != NULL) {
		char *end;
		unsigned long long n;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		n = strtoull(de->d_name, &end, 10);
		if (strcmp(end, ".eml") == 0 && n > sink.seq)
			sink.seq = n;
	}
	closedir(d);
}

static void
sink_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGUSR1) {
		sink_stats_write(1);
		return;
	}
	event_base_loopbreak(sink.base);
}

static void
sink_stats_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sink_stats_write(0);
}

enum {
	OPT_LISTEN = 256,
	OPT_READY,
	OPT_STATS,
	OPT_MAILDIR,
	OPT_COUNT,
	OPT_RULES,
	OPT_NODEFRULES,
	OPT_HOSTNAME,
	OPT_NOPIPE,
	OPT_NO8BIT,
	OPT_NOUTF8,
	OPT_CHUNKING,
	OPT_MAXSIZE,
	OPT_MAXRCPT,
	OPT_STARTTLS,
	OPT_CERT,
	OPT_KEY,
	OPT_TLSBROKEN,
	OPT_TLSMIN,
	OPT_TLSMAX,
	OPT_MAILREPLY,
	OPT_DATAREPLY,
	OPT_GREETREPLY,
	OPT_GREETDELAY,
	OPT_REPLYDELAY,
	OPT_SLOW,
	OPT_MAXCONN,
	OPT_MAXMSGS,
	OPT_TIMEOUT,
};

static const struct option sink_options[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "ready-file", required_argument, NULL, OPT_READY },
	{ "stats", required_argument, NULL, OPT_STATS },
	{ "maildir", required_argument, NULL, OPT_MAILDIR },
	{ "count-only", no_argument, NULL, OPT_COUNT },
	{ "rules", required_argument, NULL, OPT_RULES },
	{ "no-default-rules", no_argument, NULL, OPT_NODEFRULES },
	{ "hostname", required_argument, NULL, OPT_HOSTNAME },
	{ "no-pipelining", no_argument, NULL, OPT_NOPIPE },
	{ "no-8bitmime", no_argument, NULL, OPT_NO8BIT },
	{ "no-smtputf8", no_argument, NULL, OPT_NOUTF8 },
	{ "chunking", no_argument, NULL, OPT_CHUNKING },
	{ "max-size", required_argument, NULL, OPT_MAXSIZE },
	{ "max-rcpt", required_argument, NULL, OPT_MAXRCPT },
	{ "starttls", no_argument, NULL, OPT_STARTTLS },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "tls-broken", optional_argument, NULL, OPT_TLSBROKEN },
	{ "tls-min", required_argument, NULL, OPT_TLSMIN },
	{ "tls-max", required_argument, NULL, OPT_TLSMAX },
	{ "mail-reply", required_argument, NULL, OPT_MAILREPLY },
	{ "data-reply", required_argument, NULL, OPT_DATAREPLY },
	{ "greeting-reply", required_argument, NULL, OPT_GREETREPLY },
	{ "greeting-delay-ms", required_argument, NULL, OPT_GREETDELAY },
	{ "reply-delay-ms", required_argument, NULL, OPT_REPLYDELAY },
	{ "slow-ms", required_argument, NULL, OPT_SLOW },
	{ "max-connections", required_argument, NULL, OPT_MAXCONN },
	{ "max-msgs-per-conn", required_argument, NULL, OPT_MAXMSGS },
	{ "timeout-s", required_argument, NULL, OPT_TIMEOUT },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Options that need a value are checked here; --listen is bound later. */
static void
sink_option(int c, const char *arg, int *count_only)
{
	struct sink_conf *cf = &sink.conf;
	const long day_ms = 86400000L;

	switch (c) {
	case OPT_READY:
		cf->ready_file = arg;
		break;
	case OPT_STATS:
		cf->stats_file = arg;
		break;
	case OPT_MAILDIR:
		cf->maildir = arg;
		break;
	case OPT_COUNT:
		*count_only = 1;
		break;
	case OPT_RULES:
		cf->rules_file = arg;
		break;
	case OPT_NODEFRULES:
		cf->default_rules = 0;
		break;
	case OPT_HOSTNAME:
		cf->hostname = arg;
		break;
	case OPT_NOPIPE:
		cf->pipelining = 0;
		break;
	case OPT_NO8BIT:
		cf->eightbitmime = 0;
		break;
	case OPT_NOUTF8:
		cf->smtputf8 = 0;
		break;
	case OPT_CHUNKING:
		cf->chunking = 1;
		break;
	case OPT_MAXSIZE:
		cf->max_size =
		    (uint64_t)sink_number("--max-size", arg, 1, INT64_MAX);
		break;
	case OPT_MAXRCPT:
		cf->max_rcpt =
		    (unsigned)sink_number("--max-rcpt", arg, 1, 1000000);
		break;
	case OPT_STARTTLS:
		cf->starttls = 1;
		break;
	case OPT_CERT:
		cf->cert_file = arg;
		break;
	case OPT_KEY:
		cf->key_file = arg;
		break;
	case OPT_TLSBROKEN:
		if (arg == NULL || strcmp(arg, "close") == 0)
			cf->tls_broken = TLS_BROKEN_CLOSE;
		else if (strcmp(arg, "garbage") == 0)
			cf->tls_broken = TLS_BROKEN_GARBAGE;
		else if (strcmp(arg, "hang") == 0)
			cf->tls_broken = TLS_BROKEN_HANG;
		else
			sink_fatal("--tls-broken=%s: want close, garbage or "
				   "hang",
				   arg);
		break;
	case OPT_TLSMIN:
		cf->tls_min = sink_tls_version(arg);
		break;
	case OPT_TLSMAX:
		cf->tls_max = sink_tls_version(arg);
		break;
	case OPT_MAILREPLY:
		sink_reply_option("--mail-reply", arg);
		cf->mail_reply = arg;
		break;
	case OPT_DATAREPLY:
		sink_reply_option("--data-reply", arg);
		cf->data_reply = arg;
		break;
	case OPT_GREETREPLY:
		sink_reply_option("--greeting-reply", arg);
		cf->greeting_reply = arg;
		break;
	case OPT_GREETDELAY:
		cf->greeting_delay_ms =
		    (int)sink_number("--greeting-delay-ms", arg, 0, day_ms);
		break;
	case OPT_REPLYDELAY:
		cf->reply_delay_ms =
		    (int)sink_number("--reply-delay-ms", arg, 0, day_ms);
		break;
	case OPT_SLOW:
		cf->slow_ms = (int)sink_number("--slow-ms", arg, 0, day_ms);
		break;
	case OPT_MAXCONN:
		cf->max_connections = (unsigned)sink_number("--max-connections",
							    arg, 1, 10000000);
		break;
	case OPT_MAXMSGS:
		cf->max_msgs_per_conn = (unsigned)sink_number(
		    "--max-msgs-per-conn", arg, 1, 100000000);
		break;
	case OPT_TIMEOUT:
		cf->timeout_s = (int)sink_number("--timeout-s", arg, 1, 86400);
		break;
	case 'v':
		cf->verbose++;
		break;
	case 'h':
		fputs(sink_usage, stdout);
		exit(0);
	default:
		fputs(sink_usage, stderr);
		exit(2);
	}
}

static void
sink_rules_init(void)
{
	char err[512], line[128];
	size_t i;

	if (sink.conf.default_rules) {
		for (i = 0; i < sizeof(sink_default_rules) /
				    sizeof(sink_default_rules[0]);
		     i++)
			if (sink_rules_add(sink_default_rules[i], 1, err,
					   sizeof(err)) != 0)
				sink_fatal("built-in rule: %s", err);
		if (snprintf(line, sizeof(line), "slow delay:%d",
			     sink.conf.slow_ms) >= (int)sizeof(line) ||
		    sink_rules_add(line, 1, err, sizeof(err)) != 0)
			sink_fatal("built-in rule: %s", err);
	}
	if (sink.conf.rules_file != NULL &&
	    sink_rules_load(sink.conf.rules_file, err, sizeof(err)) != 0)
		sink_fatal("%s", err);
}

static void
sink_defaults(void)
{
	struct sink_conf *cf = &sink.conf;

	cf->hostname = "sink.test";
	cf->pipelining = cf->eightbitmime = cf->smtputf8 = 1;
	cf->default_rules = 1;
	cf->slow_ms = SINK_DEFAULT_SLOW_MS;
	cf->max_rcpt = SINK_DEFAULT_RCPT;
	cf->max_size = SINK_DEFAULT_SIZE;
	cf->timeout_s = 300;
}

/* Thousands of listeners and held connections (the receivers benchmark)
 * need more descriptors than the usual soft limit of 1024: take the hard
 * limit.  A failure is not fatal; accept errors are logged and survived. */
static void
sink_nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		sink_log("setrlimit(RLIMIT_NOFILE, %llu): %s",
			 (unsigned long long)rl.rlim_max, strerror(errno));
}

int
main(int argc, char **argv)
{
	const char *listen[SINK_LISTEN_MAX];
	struct event *sigs[4], *stats_ev = NULL;
	static const int signums[4] = { SIGTERM, SIGINT, SIGUSR1, SIGHUP };
	struct timeval tick = { 0, 100000 };
	size_t nlisten = 0, i;
	int c, count_only = 0;

	signal(SIGPIPE, SIG_IGN);
	sink_nofile_raise();
	sink_defaults();
	while ((c = getopt_long(argc, argv, "vh", sink_options, NULL)) != -1) {
		if (c == OPT_LISTEN) {
			if (nlisten == SINK_LISTEN_MAX)
				sink_fatal("too many --listen (at most %d)",
					   SINK_LISTEN_MAX);
			listen[nlisten++] = optarg;
		} else
			sink_option(c, optarg, &count_only);
	}
	if (optind != argc || nlisten == 0) {
		fputs(sink_usage, stderr);
		return 2;
	}
	if (count_only && sink.conf.maildir != NULL)
		sink_fatal("--count-only and --maildir exclude each other");
	if ((sink.conf.cert_file == NULL) != (sink.conf.key_file == NULL))
		sink_fatal("--cert and --key go together");
	if (sink.conf.tls_broken)
		sink.conf.starttls = 0;
	sink_rules_init();
	if (sink.conf.maildir != NULL)
		sink_maildir_init();
	if ((sink.base = event_base_new()) == NULL)
		sink_fatal("event_base_new failed");
	if (sink.conf.starttls)
		sink_tls_init();
	for (i = 0; i < nlisten; i++)
		sink_listen(listen[i]);
	for (i = 0; i < 4; i++) {
		sigs[i] =
		    evsignal_new(sink.base, signums[i], sink_signal_cb, NULL);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) != 0)
			sink_fatal("cannot handle signal %d", signums[i]);
	}
	if (sink.conf.stats_file != NULL) {
		stats_ev =
		    event_new(sink.base, -1, EV_PERSIST, sink_stats_cb, NULL);
		if (stats_ev == NULL || event_add(stats_ev, &tick) != 0)
			sink_fatal("cannot start the stats timer");
		if (sink_stats_write(1) != 0)
			sink_fatal("--stats %s: cannot write",
				   sink.conf.stats_file);
	}
	for (i = 0; i < sink.nlisteners; i++)
		sink_log("listening on %s", sink.listeners[i].st.name);
	if (sink.conf.ready_file != NULL &&
	    sink_file_replace(sink.conf.ready_file, "ready\n", 6) != 0)
		sink_fatal("--ready-file %s: %s", sink.conf.ready_file,
			   strerror(errno));

	event_base_dispatch(sink.base);

	sink_stats_write(1);
	sink_session_free_all();
	for (i = 0; i < sink.nlisteners; i++)
		evconnlistener_free(sink.listeners[i].lev);
	for (i = 0; i < 4; i++)
		event_free(sigs[i]);
	if (stats_ev != NULL)
		event_free(stats_ev);
	SSL_CTX_free(sink.ssl_ctx);
	event_base_free(sink.base);
	sink_rules_free();
	sink_stats_free();
	return 0;
}
