/*
 * sched_dest.c — destinations (recipient domains): MX lookups and their
 * expiry, routes and the relay host, and the sites (sets of MX hosts) the
 * destinations share.
 *
 * Owns: struct sched_dest and struct sched_site (freed by sched_free).
 * A reload re-reads each destination's limits and route
 * (sched_dest_reconf).  Must not: look a route up in DNS.  Delivery loop
 * thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "dns/dns.h"
#include "mta/core/log.h"
#include "mta/core/util.h"
#include "mta/deliver/sched_int.h"

#define SCHED_DEST_MIN_TTL  5  /* seconds an MX answer is kept at least */
#define SCHED_DEST_FAIL_TTL 30 /* seconds a failed lookup is kept */

static struct sched_site *
sched_dest_site_get(const char *key, const struct dns_mx_host *hosts, size_t n,
		    unsigned port, bool implicit, enum mtasts_mode sts_mode,
		    bool dane, const char *policy_domain)
{
	struct sched_site *s = htab_get(&sched->sites, key);
	size_t i;

	if (s != NULL)
		return s;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->key = strdup(key);
	s->hosts = calloc(n, sizeof(*s->hosts));
	if (s->key == NULL || s->hosts == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		if ((s->hosts[i].name = strdup(hosts[i].name)) == NULL)
			goto fail;
		s->nhosts++;
	}
	s->port = port;
	s->implicit = implicit;
	s->sts_mode = sts_mode;
	s->dane = dane;
	if ((sts_mode != MTASTS_NONE || dane) &&
	    (s->policy_domain = strdup(policy_domain)) == NULL)
		goto fail;
	if (htab_put(&sched->sites, key, s) != 0)
		goto fail;
	return s;
fail:
	for (i = 0; i < s->nhosts; i++)
		free(s->hosts[i].name);
	free(s->hosts);
	free(s->policy_domain);
	free(s->key);
	free(s);
	return NULL;
}

/* Hand JOB to the path of its destination's site. */
static void
sched_dest_route_job(struct sched_dest *d, struct sched_job *job)
{
	struct sched_path *p;

	p = sched_path_get(d->site, job->msg->r->pool, d->cfg);
	if (p == NULL) {
		sched_job_fail(job, OS_LOCAL, 451, "4.3.0 out of memory");
		return;
	}
	sched_state_path_restore(p); /* its pause of before a restart */
	job->path = p;
	job->next = NULL;
	if (p->paused_until_ms > util_wall_ms() &&
	    (job->msg->flags & SM_FORCE)) {
		/* An operator's retry: try now, past the pause. */
		p->paused_until_ms = 0;
		p->suspended = false;
		sched_limit_unpause(p, true, "retried by an operator");
	}
	if (p->paused_until_ms > util_wall_ms()) {
		sched_job_park(job, &p->park);
		return;
	}
	if (p->tail != NULL)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->njobs++;
	sched_path_kick(p);
}

static void
sched_dest_flush(struct sched_dest *d)
{
	struct sched_job *job, *next;

	job = d->waiting;
	d->waiting = NULL;
	for (; job != NULL; job = next) {
		next = job->next;
		job->next = NULL;
		if (d->state == DEST_READY) {
			sched_dest_route_job(d, job);
			continue;
		}
		if (d->sts_nomatch)
			job->cj.tls_failure = "validation-failure";
		if (d->dane_missing) {
			job->cj.tls_failure = "dane-required";
			job->cj.dane = true;
		}
		sched_job_fail(job, OS_LOCAL, d->fail_code, d->fail_text);
	}
}

static int
sched_dest_host_cmp(const void *a, const void *b)
{
	const struct dns_mx_host *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* D cannot be reached as its TLS policy demands: "451 4.7.5 WHY" to its
 * jobs (retried), for as long as a failed lookup is kept. */
static void __attribute__((format(printf, 3, 4)))
sched_dest_tls_failed(struct sched_dest *d, int64_t now, const char *fmt, ...)
{
	va_list ap;

	d->state = DEST_FAILED;
	d->fail_code = 451;
	memcpy(d->fail_text, "4.7.5 ", 6);
	va_start(ap, fmt);
	vsnprintf(d->fail_text + 6, sizeof(d->fail_text) - 6, fmt, ap);
	va_end(ap);
	d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
}

static void
sched_dest_mx_cb(const struct dns_mx_reply *reply, void *arg)
{
	struct sched_dest *d = arg;
	struct dns_mx_host *sorted, *allowed;
	char key[2048];
	size_t i, n, off = 0;
	int64_t now = util_wall_ms();
	bool dane;
	uint32_t ttl;

	d->q = NULL;
	d->sts_nomatch = d->dane_missing = false;
	/* DANE (RFC 7672 2.2.1): only for hosts of a validated MX answer;
	 * it takes precedence over MTA-STS (whose host list then does not
	 * narrow the validated one: a host without TLSA still follows it). */
	dane = sched->conf->dns.dnssec && reply->secure &&
	       d->cfg->tls != CONF_TLSP_NONE;
	if (reply->result == DNS_OK && !dane &&
	    d->cfg->tls == CONF_TLSP_DANE_ONLY) {
		d->dane_missing = true;
		sched_dest_tls_failed(
		    d, now,
		    "tls = dane-only, but the MX answer of %s "
		    "is not DNSSEC-validated%s",
		    d->domain,
		    sched->conf->dns.dnssec ? "" : " (dns.dnssec is off)");
		sched_dest_flush(d);
		return;
	}
	switch (reply->result) {
	case DNS_OK:
		/* The site key is the set of hosts (order-free) and port;
		 * under an MTA-STS policy, the hosts it allows, the mode and
		 * the domain (RFC 8461 section 4.1: an MX host the policy
		 * does not name is not used in enforce mode). */
		if ((sorted = malloc(reply->nhosts * sizeof(*sorted))) == NULL)
			goto tempfail;
		for (i = 0, n = 0; i < reply->nhosts; i++)
			if (d->sts.mode != MTASTS_ENFORCE || dane ||
			    mtasts_mx_match(&d->sts, reply->hosts[i].name))
				sorted[n++] = reply->hosts[i];
		if (n == 0) {
			free(sorted);
			d->sts_nomatch = true;
			sched_dest_tls_failed(d, now,
					      "no MX host of %s is allowed by "
					      "its MTA-STS policy (enforce)",
					      d->domain);
			break;
		}
		/* kept in preference order for the site's hosts */
		if ((allowed = malloc(n * sizeof(*allowed))) == NULL) {
			free(sorted);
			goto tempfail;
		}
		memcpy(allowed, sorted, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), sched_dest_host_cmp);
		for (i = 0; i < n && off < sizeof(key); i++)
			off += (size_t)snprintf(key + off, sizeof(key) - off,
						"%s%s", i ? "," : "",
						sorted[i].name);
		free(sorted);
		if (off < sizeof(key))
			off +=
			    (size_t)snprintf(key + off, sizeof(key) - off,
					     ":%u", sched->conf->delivery.port);
		if (d->sts.mode != MTASTS_NONE && off < sizeof(key))
			off += (size_t)snprintf(
			    key + off, sizeof(key) - off, "|sts=%s:%s",
			    mtasts_mode_name(d->sts.mode), d->domain);
		if (dane && off < sizeof(key))
			off += (size_t)snprintf(key + off, sizeof(key) - off,
						"|dane:%s", d->domain);
		d->site =
		    off < sizeof(key)
			? sched_dest_site_get(
			      key, allowed, n, sched->conf->delivery.port,
			      reply->implicit, d->sts.mode, dane, d->domain)
			: NULL;
		free(allowed);
		if (d->site == NULL)
			goto tempfail;
		d->state = DEST_READY;
		ttl = reply->ttl < SCHED_DEST_MIN_TTL ? SCHED_DEST_MIN_TTL
						      : reply->ttl;
		d->expires_ms = now + (int64_t)ttl * 1000;
		break;
	case DNS_NULLMX:
		d->state = DEST_FAILED;
		d->fail_code = 550;
		snprintf(
		    d->fail_text, sizeof(d->fail_text),
		    "5.1.10 the recipient domain accepts no mail (null MX, "
		    "RFC 7505)");
		d->expires_ms =
		    now + (int64_t)(reply->ttl ? reply->ttl : 300) * 1000;
		break;
	case DNS_NXDOMAIN:
	case DNS_BADNAME:
		d->state = DEST_FAILED;
		d->fail_code = 550;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "5.1.2 the recipient domain does not exist (%s)",
			 dns_result_str(reply->result));
		d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
		break;
	case DNS_NODATA:
		d->state = DEST_FAILED;
		d->fail_code = 550;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "5.4.4 no usable mail exchanger: %s",
			 reply->err[0] ? reply->err : "no MX");
		d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
		break;
	default:
	tempfail:
		d->state = DEST_FAILED;
		d->fail_code = 451;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "4.4.3 DNS lookup of the mail exchanger failed: %s",
			 reply->err[0] ? reply->err
				       : dns_result_str(reply->result));
		d->expires_ms = now + SCHED_DEST_FAIL_TTL * 1000;
		break;
	}
	if (d->state == DEST_FAILED) {
		char esc[300];

		log_info("destination %s: %s", d->domain,
			 log_escape(esc, sizeof(esc), d->fail_text,
				    strlen(d->fail_text)));
	}
	sched_dest_flush(d);
}

/* D's fixed site when a route (or the relay host) names one: no MX
 * lookup.  True when there is one. */
static bool
sched_dest_route(struct sched_dest *d)
{
	const struct conf_route *route =
	    conf_route_find(sched->conf, d->domain);
	struct dns_mx_host h;
	char key[600];
	unsigned port;

	if (route == NULL && sched->conf->delivery.relay_host == NULL)
		return false;
	h.name = route ? route->host : sched->conf->delivery.relay_host;
	port = route ? route->port : sched->conf->delivery.relay_port;
	snprintf(key, sizeof(key), "route:%s:%u", h.name, port);
	d->site = sched_dest_site_get(key, &h, 1, port, false, MTASTS_NONE,
				      false, NULL);
	if (d->site != NULL) {
		d->state = DEST_READY;
		d->expires_ms = INT64_MAX;
	}
	/* An operator's route: no MTA-STS (nor a policy's second look). */
	mtasts_policy_clear(&d->sts);
	d->sts_gen = 0;
	return true;
}

void
sched_dest_reconf(void)
{
	struct htab_entry *e;
	size_t it;

	for (e = htab_first(&sched->dests, &it); e != NULL;
	     e = htab_next(&sched->dests, e, &it)) {
		struct sched_dest *d = e->value;
		unsigned i;

		d->cfg = conf_destination_find(sched->conf, d->domain);
		/* A lookup in flight finishes as it began; its jobs then go
		 * where it says, the next ones where the route now says. */
		if (d->state != DEST_RESOLVING && d->state != DEST_POLICY &&
		    !sched_dest_route(d) && d->site != NULL &&
		    strncmp(d->site->key, "route:", 6) == 0) {
			/* No route any more: the MX answer decides again (one
			 * got before the reload stays good). */
			d->site = NULL;
			d->state = DEST_NEW;
		}
		/* Its site's paths take its limits, as when they were made
		 * for it (a site shared by several domains: the last one). */
		for (i = 0; d->site != NULL && i < d->site->npaths; i++)
			d->site->paths[i]->cfg = d->cfg;
	}
}

struct sched_dest *
sched_dest_get(const char *domain)
{
	struct sched_dest *d = htab_get(&sched->dests, domain);
	char *ace = NULL;
	size_t k;

	if (d != NULL)
		return d;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	if ((d->domain = strdup(domain)) == NULL ||
	    htab_put(&sched->dests, domain, d) != 0) {
		free(d->domain);
		free(d);
		return NULL;
	}
	d->cfg = conf_destination_find(sched->conf, domain);
	/* An internationalized domain (SMTPUTF8) is looked up by its
	 * A-labels (IDNA2008, RFC 5891). */
	for (k = 0; domain[k] != '\0'; k++) {
		if ((unsigned char)domain[k] < 0x80)
			continue;
		if (idn2_to_ascii_8z(domain, &ace,
				     IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) ==
		    IDN2_OK)
			d->ace = ace;
		break;
	}
	sched_dest_route(d);
	return d;
}

/* The MX lookup of D (its policy known). */
static void
sched_dest_mx_lookup(struct sched_dest *d)
{
	d->state = DEST_RESOLVING;
	d->q = dns_mx_lookup(sched->dns, d->ace ? d->ace : d->domain,
			     sched_dest_mx_cb, d);
}

static void
sched_dest_sts_cb(const struct mtasts_policy *pol, enum mtasts_fail fail,
		  void *arg)
{
	struct sched_dest *d = arg;

	d->sts_q = NULL;
	d->sts_fail = fail;
	d->sts_gen = mtasts_generation();
	mtasts_policy_clear(&d->sts);
	if (pol != NULL && mtasts_policy_copy(&d->sts, pol) != 0) {
		/* No memory to keep it: try again in a moment. */
		d->state = DEST_FAILED;
		d->fail_code = 451;
		snprintf(d->fail_text, sizeof(d->fail_text),
			 "4.3.0 out of memory for the MTA-STS policy");
		d->expires_ms = util_wall_ms() + 1000;
		sched_dest_flush(d);
		return;
	}
	sched_dest_mx_lookup(d);
}

/*
 * Resolve D: its MTA-STS policy first when one may apply (a destination
 * with mta_sts, without tls = none, reached by MX, not by a route), then
 * its MX hosts.
 */
static void
sched_dest_resolve(struct sched_dest *d)
{
	if (d->cfg->mta_sts && d->cfg->tls != CONF_TLSP_NONE) {
		d->state = DEST_POLICY;
		d->sts_q = sched_sts_get(d->ace ? d->ace : d->domain,
					 sched_dest_sts_cb, d);
		if (d->sts_q != NULL)
			return;
		log_warnx("destination %s: out of memory for its MTA-STS "
			  "lookup; its MX hosts are used without it",
			  d->domain);
	}
	mtasts_policy_clear(&d->sts);
	d->sts_gen = 0;
	sched_dest_mx_lookup(d);
}

void
sched_dest_submit(struct sched_dest *d, struct sched_job *job)
{
	int64_t now = util_wall_ms();

	if (d->suspended_until_ms > now) {
		d->park.until_ms = d->suspended_until_ms;
		sched_job_park(job, &d->park);
		return;
	}
	if ((d->state == DEST_READY || d->state == DEST_FAILED) &&
	    (d->expires_ms <= now ||
	     (d->sts_gen != 0 && d->sts_gen != mtasts_generation())))
		d->state = DEST_NEW; /* the answer expired, or a policy came
					in: ask again */
	switch (d->state) {
	case DEST_READY:
		sched_dest_route_job(d, job);
		return;
	case DEST_FAILED:
		sched_job_fail(job, OS_LOCAL, d->fail_code, d->fail_text);
		return;
	case DEST_NEW:
		if (sched->dns == NULL) {
			sched_job_fail(
			    job, OS_LOCAL, 451,
			    "4.4.3 no DNS resolver (loopback_only without dns "
			    "servers)");
			return;
		}
		job->next = d->waiting;
		d->waiting = job;
		sched_dest_resolve(d);
		return;
	case DEST_POLICY:
	case DEST_RESOLVING:
		job->next = d->waiting;
		d->waiting = job;
		return;
	}
}

const char *
sched_dest_last_error(const char *domain, const struct conf_pool *pool)
{
	struct sched_dest *d = htab_get(&sched->dests, domain);
	unsigned i;

	if (d == NULL)
		return NULL;
	if (d->suspended_until_ms > util_wall_ms())
		return "4.4.2 destination suspended by an operator";
	for (i = 0; d->site != NULL && i < d->site->npaths; i++)
		if (d->site->paths[i]->pool == pool &&
		    d->site->paths[i]->last_error[0] != '\0')
			return d->site->paths[i]->last_error;
	if (d->state == DEST_FAILED)
		return d->fail_text;
	return NULL;
}
