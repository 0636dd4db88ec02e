/*
 * tlsrpt.c — TLS reporting (RFC 8460): per-day counts of sessions under a
 * policy, kept in the queue's state database; after each UTC day (plus a
 * random delay), the report of each domain built (JSON, RFC 8460 section
 * 4.4), gzipped and sent to the rua URIs of its _smtp._tls record.
 *
 * Owns: the records (under tr.mu: delivery loops note sessions), the
 * reports under way.  Must not: block (DNS, HTTPS and the queue are
 * asynchronous); write the state database per session.
 * Thread: the scheduler's loop, but for tlsrpt_note, tlsrpt_metrics_text
 * and tlsrpt_txt_rua (any thread).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>
#include <zlib.h>

#include "conf/conf.h"
#include "dns/dns.h"
#include "mta/core/htab.h"
#include "mta/core/json.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/deliver/https.h"
#include "mta/deliver/mtasts.h"
#include "mta/deliver/tlsrpt.h"
#include "queue/queue.h"

#define TLSRPT_DAY_MS        INT64_C(86400000)
#define TLSRPT_DETAILS_MAX   32    /* failure-details rows kept per record */
#define TLSRPT_MX_MAX        8     /* mx-host names kept per tlsa record */
#define TLSRPT_TICK_MS       60000 /* counts written, reports looked for */
#define TLSRPT_KEEP_DAYS     7     /* a record not reported is dropped after */
#define TLSRPT_RUA_MAX       8     /* rua URIs used per domain */
#define TLSRPT_STATE_VERSION 1
#define TLSRPT_POST_MAX      4096 /* bytes of an HTTPS answer kept */

struct tlsrpt_detail {
	char result[32], src[48], mx[256], ip[48];
	uint64_t n;
};

struct tlsrpt_rec {
	uint32_t day; /* days since the epoch, UTC */
	char *domain;
	bool dane;
	uint64_t ok, fail;
	struct tlsrpt_detail *d; /* grown as failures of new kinds come */
	unsigned nd;
	char *mx[TLSRPT_MX_MAX]; /* tlsa: the MX hosts seen */
	unsigned nmx;
	bool dirty;
	struct tlsrpt_rec *next; /* in a report being sent */
};

/* One domain's report for one day, on its way. */
struct tlsrpt_job {
	uint32_t day;
	char *domain;
	struct tlsrpt_rec *recs; /* its policies (sts, tlsa) */
	struct dns_query *q;
	unsigned pending; /* POSTs not answered yet */
	struct tlsrpt_job *next;
};

static struct {
	struct event_base *base;
	struct dns_resolver *dns;
	struct queue *queue;
	tlsrpt_queue_fn *enqueue;
	const struct conf *conf;
	pthread_mutex_t mu;
	bool enabled;     /* read by tlsrpt_note on any thread: under mu */
	struct htab recs; /* "day|domain|t" -> rec, under mu */
	struct event *timer;
	int64_t report_after_ms; /* of the current day: jitter added */
	uint32_t jitter_day;
	struct tlsrpt_job *jobs;
	bool stopping, ready;
	_Atomic uint64_t n_mailed, n_posted, n_failed, n_norua, n_sessions;
} tr;

/* Pure: the TXT record ------------------------------------------------ */

static bool
tlsrpt_wsp(char c)
{
	return c == ' ' || c == '\t';
}

int
tlsrpt_txt_rua(const char *txt, size_t len, char *buf, size_t buflen,
	       const char **uris, int max)
{
	size_t i, n;
	char *p, *field, *save = NULL;
	int nuris = 0, nfield = 0;
	bool have_rua = false;

	if (len + 1 > buflen)
		return -1;
	if (memchr(txt, '\0', len) != NULL)
		return -1;
	memcpy(buf, txt, len);
	buf[len] = '\0';
	for (field = strtok_r(buf, ";", &save); field != NULL;
	     field = strtok_r(NULL, ";", &save)) {
		while (tlsrpt_wsp(*field))
			field++;
		n = strlen(field);
		while (n > 0 && tlsrpt_wsp(field[n - 1]))
			field[--n] = '\0';
		if (n == 0)
			continue;
		if (nfield++ == 0) {
			if (strcmp(field, "v=TLSRPTv1") != 0)
				return 0;
			continue;
		}
		if (strncmp(field, "rua=", 4) != 0 || have_rua)
			continue;
		have_rua = true;
		for (p = field + 4; *p != '\0';) {
			char *end = strchr(p, ',');

			if (end != NULL)
				*end = '\0';
			while (tlsrpt_wsp(*p))
				p++;
			for (i = strlen(p); i > 0 && tlsrpt_wsp(p[i - 1]); i--)
				p[i - 1] = '\0';
			if ((strncmp(p, "mailto:", 7) == 0 && p[7] != '\0') ||
			    strncmp(p, "https://", 8) == 0) {
				if (nuris < max)
					uris[nuris++] = p;
			} else if (*p != '\0') {
				return -1; /* RFC 8460 3: mailto or https */
			}
			if (end == NULL)
				break;
			p = end + 1;
		}
	}
	if (nfield == 0)
		return 0;
	return have_rua && nuris > 0 ? nuris : -1;
}

/* Records -------------------------------------------------------------- */

static void
tlsrpt_key(char *buf, size_t len, uint32_t day, const char *domain, bool dane)
{
	snprintf(buf, len, "%" PRIu32 "|%s|%c", day, domain, dane ? 't' : 's');
}

static uint32_t
tlsrpt_today(void)
{
	return (uint32_t)(util_wall_ms() / TLSRPT_DAY_MS);
}

/* The record of (DAY, DOMAIN, DANE), made if new.  Under tr.mu. */
static struct tlsrpt_rec *
tlsrpt_rec_get(uint32_t day, const char *domain, bool dane)
{
	struct tlsrpt_rec *r;
	char key[400];

	tlsrpt_key(key, sizeof(key), day, domain, dane);
	if ((r = htab_get(&tr.recs, key)) != NULL)
		return r;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if ((r->domain = strdup(domain)) == NULL ||
	    htab_put(&tr.recs, key, r) != 0) {
		free(r->domain);
		free(r);
		return NULL;
	}
	r->day = day;
	r->dane = dane;
	return r;
}

static void
tlsrpt_rec_free(struct tlsrpt_rec *r)
{
	unsigned i;

	for (i = 0; i < r->nmx; i++)
		free(r->mx[i]);
	free(r->d);
	free(r->domain);
	free(r);
}

/* A new failure-details row of R (NULL: at the cap, or no memory: the
 * failure is counted in the summary only).  Under tr.mu. */
static struct tlsrpt_detail *
tlsrpt_detail_add(struct tlsrpt_rec *r)
{
	struct tlsrpt_detail *d;

	if (r->nd == TLSRPT_DETAILS_MAX ||
	    (d = realloc(r->d, (r->nd + 1) * sizeof(*d))) == NULL)
		return NULL;
	r->d = d;
	memset(&d[r->nd], 0, sizeof(*d));
	return &d[r->nd++];
}

/* HOST among R's MX hosts (tlsa).  Under tr.mu. */
static void
tlsrpt_mx_add(struct tlsrpt_rec *r, const char *host)
{
	unsigned i;

	for (i = 0; i < r->nmx; i++)
		if (strcmp(r->mx[i], host) == 0)
			return;
	if (r->nmx < TLSRPT_MX_MAX && (r->mx[r->nmx] = strdup(host)) != NULL)
		r->nmx++;
}

void
tlsrpt_note(const struct tlsrpt_session *s)
{
	struct tlsrpt_rec *r;
	unsigned i;

	pthread_mutex_lock(&tr.mu);
	if (!tr.enabled || s->domain == NULL ||
	    (r = tlsrpt_rec_get(tlsrpt_today(), s->domain, s->dane)) == NULL)
		goto out;
	atomic_fetch_add(&tr.n_sessions, 1);
	r->dirty = true;
	if (s->dane && s->mx_host != NULL && s->mx_host[0] != '\0')
		tlsrpt_mx_add(r, s->mx_host);
	if (s->failure == NULL) {
		r->ok++;
		goto out;
	}
	r->fail++;
	for (i = 0; i < r->nd; i++) {
		struct tlsrpt_detail *d = &r->d[i];

		if (strcmp(d->result, s->failure) == 0 &&
		    strcmp(d->src, s->source_ip ? s->source_ip : "") == 0 &&
		    strcmp(d->mx, s->mx_host ? s->mx_host : "") == 0 &&
		    strcmp(d->ip, s->mx_ip ? s->mx_ip : "") == 0)
			break;
	}
	if (i == r->nd) {
		struct tlsrpt_detail *d = tlsrpt_detail_add(r);

		if (d == NULL)
			goto out; /* counted in the summary only */
		snprintf(d->result, sizeof(d->result), "%s", s->failure);
		snprintf(d->src, sizeof(d->src), "%s",
			 s->source_ip ? s->source_ip : "");
		snprintf(d->mx, sizeof(d->mx), "%s",
			 s->mx_host ? s->mx_host : "");
		snprintf(d->ip, sizeof(d->ip), "%s", s->mx_ip ? s->mx_ip : "");
	}
	r->d[i].n++;
out:
	pthread_mutex_unlock(&tr.mu);
}

/* Persistence ---------------------------------------------------------- */

/* R as a state record: lines "v1", day, domain, t|s, ok, fail, then
 * "mx\tHOST" and "f\tRESULT\tSRC\tMX\tIP\tN".  Under tr.mu. */
static void
tlsrpt_persist(struct tlsrpt_rec *r)
{
	char buf[QUEUE_STATE_DATA_MAX], key[400];
	size_t off;
	unsigned i;
	int n;

	n = snprintf(buf, sizeof(buf),
		     "v%d\n%" PRIu32 "\n%s\n%c\n%" PRIu64 "\n%" PRIu64 "\n",
		     TLSRPT_STATE_VERSION, r->day, r->domain,
		     r->dane ? 't' : 's', r->ok, r->fail);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return;
	off = (size_t)n;
	for (i = 0; i < r->nmx && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
					"mx\t%s\n", r->mx[i]);
	for (i = 0; i < r->nd && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
					"f\t%s\t%s\t%s\t%s\t%" PRIu64 "\n",
					r->d[i].result, r->d[i].src, r->d[i].mx,
					r->d[i].ip, r->d[i].n);
	if (off >= sizeof(buf))
		return; /* cannot happen with the caps above */
	tlsrpt_key(key, sizeof(key), r->day, r->domain, r->dane);
	if (queue_state_put(tr.queue, QS_TLSRPT, key, strlen(key),
			    ((int64_t)r->day + 1 + TLSRPT_KEEP_DAYS) *
				TLSRPT_DAY_MS,
			    buf, off) == 0)
		r->dirty = false;
}

static void
tlsrpt_flush(void)
{
	struct htab_entry *he;
	size_t it;

	pthread_mutex_lock(&tr.mu);
	for (he = htab_first(&tr.recs, &it); he != NULL;
	     he = htab_next(&tr.recs, he, &it)) {
		struct tlsrpt_rec *r = he->value;

		if (r->dirty)
			tlsrpt_persist(r);
	}
	pthread_mutex_unlock(&tr.mu);
}

/* One kept record back (its text as tlsrpt_persist wrote it): the six
 * header lines, then mx and failure lines. */
static int
tlsrpt_load_one(int64_t until_ms, const uint8_t *data, size_t len, void *arg)
{
	char text[QUEUE_STATE_DATA_MAX + 1], *lines[6], *line, *save = NULL;
	struct tlsrpt_rec *r;
	unsigned i;

	(void)until_ms;
	(void)arg;
	if (len > QUEUE_STATE_DATA_MAX)
		return 0;
	memcpy(text, data, len);
	text[len] = '\0';
	for (i = 0; i < 6; i++) {
		lines[i] = strtok_r(i == 0 ? text : NULL, "\n", &save);
		if (lines[i] == NULL)
			return 0;
	}
	if (strcmp(lines[0], "v1") != 0 ||
	    (strcmp(lines[3], "t") != 0 && strcmp(lines[3], "s") != 0))
		return 0;
	pthread_mutex_lock(&tr.mu);
	r = tlsrpt_rec_get((uint32_t)strtoul(lines[1], NULL, 10), lines[2],
			   lines[3][0] == 't');
	if (r == NULL)
		goto out;
	r->ok += strtoull(lines[4], NULL, 10);
	r->fail += strtoull(lines[5], NULL, 10);
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		char *f[5], *p = line + 2;
		struct tlsrpt_detail *d;

		if (strncmp(line, "mx\t", 3) == 0) {
			tlsrpt_mx_add(r, line + 3);
			continue;
		}
		if (strncmp(line, "f\t", 2) != 0)
			continue;
		for (i = 0; i < 5 && p != NULL; i++) {
			f[i] = p;
			if ((p = strchr(p, '\t')) != NULL)
				*p++ = '\0';
		}
		if (i < 5 || (d = tlsrpt_detail_add(r)) == NULL)
			continue;
		snprintf(d->result, sizeof(d->result), "%s", f[0]);
		snprintf(d->src, sizeof(d->src), "%s", f[1]);
		snprintf(d->mx, sizeof(d->mx), "%s", f[2]);
		snprintf(d->ip, sizeof(d->ip), "%s", f[3]);
		d->n = strtoull(f[4], NULL, 10);
	}
out:
	pthread_mutex_unlock(&tr.mu);
	return 0;
}

/* The report ----------------------------------------------------------- */

/* "2026-12-05T00:00:00Z" for MS. */
static void
tlsrpt_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One policy of the report, appended to F (a "policies" array item). */
static void
tlsrpt_json_policy(FILE *f, const struct tlsrpt_rec *r)
{
	const struct mtasts_policy *pol =
	    r->dane ? NULL : mtasts_peek(r->domain);
	unsigned i;
	char line[300];

	fputs("{\"policy\":{\"policy-type\":", f);
	json_put(f, r->dane ? "tlsa" : "sts");
	if (pol != NULL) {
		fputs(",\"policy-string\":[\"version: STSv1\",", f);
		snprintf(line, sizeof(line), "mode: %s",
			 mtasts_mode_name(pol->mode));
		json_put(f, line);
		for (i = 0; i < pol->nmx; i++) {
			snprintf(line, sizeof(line), "mx: %s", pol->mx[i]);
			fputc(',', f);
			json_put(f, line);
		}
		snprintf(line, sizeof(line), "max_age: %" PRIu32,
			 pol->max_age_s);
		fputc(',', f);
		json_put(f, line);
		fputc(']', f);
	}
	fputs(",\"policy-domain\":", f);
	json_put(f, r->domain);
	if (pol != NULL && pol->nmx > 0) {
		fputs(",\"mx-host\":[", f);
		for (i = 0; i < pol->nmx; i++) {
			if (i > 0)
				fputc(',', f);
			json_put(f, pol->mx[i]);
		}
		fputc(']', f);
	} else if (r->dane && r->nmx > 0) {
		fputs(",\"mx-host\":[", f);
		for (i = 0; i < r->nmx; i++) {
			if (i > 0)
				fputc(',', f);
			json_put(f, r->mx[i]);
		}
		fputc(']', f);
	}
	fprintf(f,
		"},\"summary\":{\"total-successful-session-count\":%" PRIu64
		",\"total-failure-session-count\":%" PRIu64 "}",
		r->ok, r->fail);
	if (r->nd > 0) {
		fputs(",\"failure-details\":[", f);
		for (i = 0; i < r->nd; i++) {
			const struct tlsrpt_detail *d = &r->d[i];

			fputs(i > 0 ? ",{\"result-type\":"
				    : "{\"result-type\":",
			      f);
			json_put(f, d->result);
			if (d->src[0] != '\0') {
				fputs(",\"sending-mta-ip\":", f);
				json_put(f, d->src);
			}
			if (d->mx[0] != '\0') {
				fputs(",\"receiving-mx-hostname\":", f);
				json_put(f, d->mx);
			}
			if (d->ip[0] != '\0') {
				fputs(",\"receiving-ip\":", f);
				json_put(f, d->ip);
			}
			fprintf(f, ",\"failed-session-count\":%" PRIu64 "}",
				d->n);
		}
		fputc(']', f);
	}
	fputc('}', f);
}

/* The JSON report of JOB (RFC 8460 4.4) into *OUT (malloc'd).  0 or -1. */
static int
tlsrpt_json(const struct tlsrpt_job *job, const char *report_id, char **out,
	    size_t *outlen)
{
	const struct conf_tls_report *c = &tr.conf->tls_report;
	int64_t start = (int64_t)job->day * TLSRPT_DAY_MS;
	char t0[32], t1[32];
	const struct tlsrpt_rec *r;
	FILE *f;

	if ((f = open_memstream(out, outlen)) == NULL)
		return -1;
	tlsrpt_time(start, t0, sizeof(t0));
	tlsrpt_time(start + TLSRPT_DAY_MS - 1000, t1, sizeof(t1));
	fputs("{\"organization-name\":", f);
	json_put(f, c->organization);
	fputs(",\"date-range\":{\"start-datetime\":", f);
	json_put(f, t0);
	fputs(",\"end-datetime\":", f);
	json_put(f, t1);
	fputs("},\"contact-info\":", f);
	json_put(f, c->contact);
	fputs(",\"report-id\":", f);
	json_put(f, report_id);
	fputs(",\"policies\":[", f);
	for (r = job->recs; r != NULL; r = r->next) {
		tlsrpt_json_policy(f, r);
		if (r->next != NULL)
			fputc(',', f);
	}
	fputs("]}\n", f);
	if (ferror(f) != 0) {
		fclose(f);
		free(*out);
		*out = NULL;
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

/* IN (LEN bytes) gzipped into *OUT (malloc'd).  0 or -1. */
static int
tlsrpt_gzip(const char *in, size_t len, uint8_t **out, size_t *outlen)
{
	z_stream z;
	uLong cap;
	int rc;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	cap = deflateBound(&z, (uLong)len) + 32;
	if ((*out = malloc(cap)) == NULL) {
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = *out;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	*outlen = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/*
 * The report mail (RFC 8460 5.3): multipart/report; report-type=tlsrpt, a
 * line of text and the gzipped JSON, base64, named as 5.3 says.  Into *OUT
 * (malloc'd, CRLF lines).  0 or -1.
 */
static int
tlsrpt_mail(const struct tlsrpt_job *job, const char *to, const char *id,
	    const char *fname, const uint8_t *gz, size_t gzlen, uint8_t **out,
	    size_t *outlen)
{
	const struct conf_tls_report *c = &tr.conf->tls_report;
	char date[64], boundary[64], *b64, *p;
	size_t b64len =
	    sodium_base64_encoded_len(gzlen, sodium_base64_VARIANT_ORIGINAL);
	uint8_t rnd[12];
	time_t now = (time_t)(util_wall_ms() / 1000);
	struct tm tm;
	FILE *f;
	size_t i, n;

	if ((b64 = malloc(b64len)) == NULL)
		return -1;
	sodium_bin2base64(b64, b64len, gz, gzlen,
			  sodium_base64_VARIANT_ORIGINAL);
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(boundary, sizeof(boundary), rnd, sizeof(rnd));
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if ((f = open_memstream((char **)out, outlen)) == NULL) {
		free(b64);
		return -1;
	}
	fprintf(f,
		"From: %s\r\nTo: %s\r\nDate: %s\r\n"
		"Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n"
		"TLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n"
		"Message-ID: <tlsrpt.%s@%s>\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
		"\tboundary=\"%s\"\r\n\r\n"
		"--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
		"This is an aggregate TLS report (RFC 8460) from %s\r\n"
		"for %s.\r\n\r\n"
		"--%s\r\nContent-Type: application/tlsrpt+gzip\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: attachment;\r\n\tfilename=\"%s\"\r\n\r\n",
		c->from, to, date, job->domain, c->organization, id,
		job->domain, c->organization, boundary, tr.conf->hostname,
		boundary, boundary, c->organization, job->domain, boundary,
		fname);
	n = strlen(b64);
	for (p = b64, i = 0; i < n; i += 76)
		fprintf(f, "%.*s\r\n", (int)(n - i < 76 ? n - i : 76), p + i);
	fprintf(f, "\r\n--%s--\r\n", boundary);
	free(b64);
	if (ferror(f) != 0) {
		fclose(f);
		free(*out);
		*out = NULL;
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

static void
tlsrpt_job_free(struct tlsrpt_job *job)
{
	struct tlsrpt_job **pp;
	struct tlsrpt_rec *r;

	for (pp = &tr.jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	if (job->q != NULL)
		dns_cancel(job->q);
	while ((r = job->recs) != NULL) {
		job->recs = r->next;
		tlsrpt_rec_free(r);
	}
	free(job->domain);
	free(job);
}

static void
tlsrpt_posted(const struct https_response *r, void *arg)
{
	struct tlsrpt_job *job = arg;
	char esc[300];

	if (r->fail == HTTPS_OK && r->status >= 200 && r->status < 300) {
		atomic_fetch_add(&tr.n_posted, 1);
		log_info("tls-report %s: posted (HTTP %ld)", job->domain,
			 r->status);
	} else {
		atomic_fetch_add(&tr.n_failed, 1);
		if (r->fail != HTTPS_OK)
			log_info("tls-report %s: post failed: %s", job->domain,
				 log_escape(esc, sizeof(esc), r->err,
					    strlen(r->err)));
		else
			log_info("tls-report %s: post refused: HTTP %ld",
				 job->domain, r->status);
	}
	if (--job->pending == 0)
		tlsrpt_job_free(job);
}

/* Send JOB's report to its rua URIS (N of them). */
static void
tlsrpt_send(struct tlsrpt_job *job, const char *const *uris, int n)
{
	char id[400], fname[600], esc[300];
	const char *why;
	uint8_t rnd[8], *gz = NULL, *msg;
	char hex[17], *json = NULL;
	size_t jsonlen = 0, gzlen = 0, msglen;
	int64_t start = (int64_t)job->day * TLSRPT_DAY_MS;
	struct https_request req;
	int i;

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	tlsrpt_time(start, id, sizeof(id));
	snprintf(id + strlen(id), sizeof(id) - strlen(id), "_%s_%s",
		 job->domain, hex);
	/* RFC 8460 5.3: sender!policy-domain!begin!end!unique-id.json.gz */
	snprintf(fname, sizeof(fname),
		 "%s!%s!%" PRId64 "!%" PRId64 "!%s.json.gz", tr.conf->hostname,
		 job->domain, start / 1000, (start + TLSRPT_DAY_MS) / 1000 - 1,
		 hex);
	if (tlsrpt_json(job, id, &json, &jsonlen) != 0 ||
	    tlsrpt_gzip(json, jsonlen, &gz, &gzlen) != 0) {
		log_warnx("tls-report %s: out of memory building the report",
			  job->domain);
		atomic_fetch_add(&tr.n_failed, 1);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (strncmp(uris[i], "mailto:", 7) == 0) {
			const char *to = uris[i] + 7;

			/* a mailto: URI's hfields ("?subject=") or
			 * %-escapes are not decoded: such an address fails
			 * the check (its domain is no host name) */
			if (conf_mailbox_check(to, &why) != 0 ||
			    tlsrpt_mail(job, to, id, fname, gz, gzlen, &msg,
					&msglen) != 0) {
				log_info("tls-report %s: rua %s not used",
					 job->domain,
					 log_escape(esc, sizeof(esc), uris[i],
						    strlen(uris[i])));
				atomic_fetch_add(&tr.n_failed, 1);
				continue;
			}
			if (tr.enqueue(msg, msglen, to) == 0) {
				atomic_fetch_add(&tr.n_mailed, 1);
				log_info("tls-report %s: report %s queued for "
					 "mail",
					 job->domain, hex);
			} else {
				atomic_fetch_add(&tr.n_failed, 1);
			}
			continue;
		}
		memset(&req, 0, sizeof(req));
		req.url = uris[i];
		req.ctype = "application/tlsrpt+gzip";
		req.body = gz;
		req.body_len = gzlen;
		req.max_response = TLSRPT_POST_MAX;
		req.what = "tls-report";
		if (https_start(&req, tlsrpt_posted, job) != NULL)
			job->pending++;
		else
			atomic_fetch_add(&tr.n_failed, 1);
	}
out:
	free(json);
	free(gz);
	if (job->pending == 0)
		tlsrpt_job_free(job);
}

static void
tlsrpt_txt_cb(const struct dns_txt_reply *r, void *arg)
{
	struct tlsrpt_job *job = arg;
	const char *uris[TLSRPT_RUA_MAX], *use[TLSRPT_RUA_MAX];
	char buf[1024];
	size_t i;
	int n, found = 0, nuse = 0, k;

	job->q = NULL;
	/* Exactly one TLSRPT record (RFC 8460 3: more is as none). */
	for (i = 0; r->result == DNS_OK && i < r->ntxts; i++) {
		if (r->lens[i] < 10 ||
		    strncmp(r->txts[i], "v=TLSRPTv1", 10) != 0)
			continue;
		if (found++ > 0)
			break;
		n = tlsrpt_txt_rua(r->txts[i], r->lens[i], buf, sizeof(buf),
				   uris, TLSRPT_RUA_MAX);
		for (k = 0; k < n; k++)
			use[nuse++] = uris[k];
	}
	if (found != 1 || nuse == 0) {
		atomic_fetch_add(&tr.n_norua, 1);
		log_info("tls-report %s: no usable _smtp._tls record (%s); "
			 "the day's report is dropped",
			 job->domain,
			 r->result != DNS_OK ? dns_result_str(r->result)
			 : found > 1         ? "more than one"
			 : found == 0        ? "none"
					     : "no usable rua");
		tlsrpt_job_free(job);
		return;
	}
	tlsrpt_send(job, use, nuse);
}

/* Every record of a day before today: grouped by domain, removed from the
 * table and the state database, each group's report started. */
static void
tlsrpt_report_due(void)
{
	struct htab_entry *he, *next;
	struct tlsrpt_job *job, *mine = NULL;
	uint32_t today = tlsrpt_today();
	char key[400], name[300];
	size_t it;

	pthread_mutex_lock(&tr.mu);
	for (he = htab_first(&tr.recs, &it); he != NULL; he = next) {
		struct tlsrpt_rec *r = he->value;

		next = htab_next(&tr.recs, he, &it);
		if (r->day >= today)
			continue;
		for (job = mine; job != NULL; job = job->next)
			if (job->day == r->day &&
			    strcmp(job->domain, r->domain) == 0)
				break;
		if (job == NULL) {
			if ((job = calloc(1, sizeof(*job))) == NULL ||
			    (job->domain = strdup(r->domain)) == NULL) {
				free(job);
				continue; /* next tick */
			}
			job->day = r->day;
			job->next = mine;
			mine = job;
		}
		tlsrpt_key(key, sizeof(key), r->day, r->domain, r->dane);
		htab_del(&tr.recs, key);
		(void)queue_state_del(tr.queue, QS_TLSRPT, key, strlen(key));
		r->next = job->recs;
		job->recs = r;
	}
	pthread_mutex_unlock(&tr.mu);
	while ((job = mine) != NULL) {
		mine = job->next;
		job->next = tr.jobs;
		tr.jobs = job;
		snprintf(name, sizeof(name), "_smtp._tls.%s", job->domain);
		if (tr.dns == NULL ||
		    (job->q = dns_txt_lookup(tr.dns, name, tlsrpt_txt_cb,
					     job)) == NULL)
			tlsrpt_job_free(job);
	}
}

/* When the reports of the days before today may go: today's midnight
 * plus a random delay (drawn once a day, up to tls_report.delay). */
static int64_t
tlsrpt_report_after(void)
{
	uint32_t today = tlsrpt_today();
	uint64_t d = tr.conf->tls_report.delay_ms;

	if (tr.jitter_day != today) {
		tr.jitter_day = today;
		tr.report_after_ms =
		    (int64_t)today * TLSRPT_DAY_MS +
		    (int64_t)(d > 0 ? randombytes_uniform((
					  uint32_t)(d < UINT32_MAX ? d + 1 : d))
				    : 0);
	}
	return tr.report_after_ms;
}

static void
tlsrpt_tick(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = util_wall_ms(), next, after;
	struct timeval tv;

	(void)fd;
	(void)what;
	(void)arg;
	if (tr.stopping)
		return;
	tlsrpt_flush();
	after = tlsrpt_report_after();
	if (now >= after)
		tlsrpt_report_due();
	/* The next tick: in a minute, or sooner when reports fall due (at
	 * AFTER today, else from the next midnight on). */
	next = now + TLSRPT_TICK_MS;
	if (now < after) {
		if (after < next)
			next = after;
	} else if ((int64_t)(tlsrpt_today() + 1) * TLSRPT_DAY_MS < next) {
		next = (int64_t)(tlsrpt_today() + 1) * TLSRPT_DAY_MS;
	}
	tv = util_ms_timeval(next - now > 0 ? next - now : 1);
	evtimer_add(tr.timer, &tv);
}

/* Set-up --------------------------------------------------------------- */

int
tlsrpt_init(struct event_base *base, struct dns_resolver *dns, struct queue *q,
	    tlsrpt_queue_fn *queue, const struct conf *c, char *err,
	    size_t errlen)
{
	memset(&tr, 0, sizeof(tr));
	tr.base = base;
	tr.dns = dns;
	tr.queue = q;
	tr.enqueue = queue;
	tr.conf = c;
	tr.enabled = c->tls_report.enabled;
	pthread_mutex_init(&tr.mu, NULL);
	if (htab_init(&tr.recs) != 0 ||
	    (tr.timer = evtimer_new(base, tlsrpt_tick, NULL)) == NULL) {
		snprintf(err, errlen, "tls-report: out of memory");
		return -1;
	}
	tr.ready = true;
	return 0;
}

void
tlsrpt_reconf(const struct conf *c)
{
	tr.conf = c;
	pthread_mutex_lock(&tr.mu);
	tr.enabled = c->tls_report.enabled;
	pthread_mutex_unlock(&tr.mu);
	tr.jitter_day = 0; /* the delay may have changed */
}

void
tlsrpt_load(void)
{
	uint64_t dropped = 0;
	char err[256];
	struct timeval tv = { 1, 0 };

	if (!tr.ready)
		return;
	if (queue_state_load(tr.queue, QS_TLSRPT, util_wall_ms(),
			     tlsrpt_load_one, NULL, &dropped, err,
			     sizeof(err)) != 0)
		log_warnx("tls-report: the kept counts cannot be read: %s",
			  err);
	evtimer_add(tr.timer, &tv);
}

void
tlsrpt_stop(void)
{
	if (!tr.ready)
		return;
	tr.stopping = true;
	evtimer_del(tr.timer);
	tlsrpt_flush();
	while (tr.jobs != NULL)
		tlsrpt_job_free(tr.jobs);
}

void
tlsrpt_free(void)
{
	struct htab_entry *he;
	size_t it;

	if (!tr.ready)
		return;
	while (tr.jobs != NULL)
		tlsrpt_job_free(tr.jobs);
	for (he = htab_first(&tr.recs, &it); he != NULL;
	     he = htab_next(&tr.recs, he, &it))
		tlsrpt_rec_free(he->value);
	htab_free(&tr.recs);
	if (tr.timer != NULL)
		event_free(tr.timer);
	pthread_mutex_destroy(&tr.mu);
	memset(&tr, 0, sizeof(tr));
}

size_t
tlsrpt_metrics_text(char *buf, size_t len)
{
	int n;

	n = snprintf(
	    buf, len,
	    "# HELP outpost_tls_report_sessions_total Sessions under a TLS "
	    "policy counted for TLS reports (RFC 8460).\n"
	    "# TYPE outpost_tls_report_sessions_total counter\n"
	    "outpost_tls_report_sessions_total %" PRIu64 "\n"
	    "# HELP outpost_tls_reports_total Daily TLS reports, by what "
	    "became of them.\n"
	    "# TYPE outpost_tls_reports_total counter\n"
	    "outpost_tls_reports_total{result=\"mailed\"} %" PRIu64 "\n"
	    "outpost_tls_reports_total{result=\"posted\"} %" PRIu64 "\n"
	    "outpost_tls_reports_total{result=\"failed\"} %" PRIu64 "\n"
	    "outpost_tls_reports_total{result=\"no-rua\"} %" PRIu64 "\n",
	    atomic_load(&tr.n_sessions), atomic_load(&tr.n_mailed),
	    atomic_load(&tr.n_posted), atomic_load(&tr.n_failed),
	    atomic_load(&tr.n_norua));
	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}
