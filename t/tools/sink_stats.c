/*
 * sink_stats.c — outpost-sink's counters and its --stats file.
 *
 * Owns: the per-client table, the per-second histograms and the last JSON
 * text written.  The stats file is the sink's only report: one JSON object,
 * replaced atomically (write FILE.tmp, rename) and only when its text
 * changed, so that tests may poll it.  Single-threaded (the loop).
 * Must not: block on anything but the local file write.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "t/tools/sink_int.h"

#pragma GCC poison strcpy strcat vsprintf
#ifndef sprintf /* a macro in clang's fortified stdio: cannot be poisoned */
#pragma GCC poison sprintf
#endif

static char *stats_last; /* the JSON text last written */
static size_t stats_last_len;

/*
 * sink_now: the loop's cached wall clock as float unix seconds.
 */
double
sink_now(void)
{
	struct timeval tv;

	if (sink.base == NULL ||
	    event_base_gettimeofday_cached(sink.base, &tv) != 0)
		gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/*
 * sink_stats_client: the counters of client address `ip`, created at first
 * sight.  Returns NULL only when out of memory.  The pointer stays valid
 * until the next call (the table may move): callers keep its index.
 */
struct sink_peer_stats *
sink_stats_client(const char *ip)
{
	struct sink_stats *st = &sink.stats;
	struct sink_peer_stats *c;
	size_t i;

	for (i = 0; i < st->nclients; i++)
		if (strcmp(st->clients[i].name, ip) == 0)
			return &st->clients[i];
	if (st->nclients == st->clients_cap) {
		size_t cap = st->clients_cap ? st->clients_cap * 2 : 16;
		void *p = realloc(st->clients, cap * sizeof(*st->clients));

		if (p == NULL)
			return NULL;
		st->clients = p;
		st->clients_cap = cap;
	}
	c = &st->clients[st->nclients++];
	memset(c, 0, sizeof(*c));
	if (snprintf(c->name, sizeof(c->name), "%s", ip) >=
	    (int)sizeof(c->name))
		c->name[sizeof(c->name) - 1] = '\0';
	return c;
}

/*
 * sink_stats_hist_add: count one event in second `sec` of histogram `h`.
 */
void
sink_stats_hist_add(struct sink_hist *h, int64_t sec)
{
	size_t slot = (size_t)(sec % SINK_HIST_SECONDS);

	if (h->sec[slot] != sec) {
		h->sec[slot] = sec;
		h->count[slot] = 0;
	}
	h->count[slot]++;
}

static void
stats_hist_json(struct evbuffer *b, const char *name, const struct sink_hist *h,
		int64_t now)
{
	int64_t sec;
	const char *sep = "";

	evbuffer_add_printf(b, ",\"%s\":[", name);
	for (sec = now - SINK_HIST_SECONDS + 1; sec <= now; sec++) {
		size_t slot = (size_t)(sec % SINK_HIST_SECONDS);

		if (sec < 0 || h->sec[slot] != sec || h->count[slot] == 0)
			continue;
		evbuffer_add_printf(b, "%s[%" PRId64 ",%" PRIu64 "]", sep, sec,
				    h->count[slot]);
		sep = ",";
	}
	evbuffer_add(b, "]", 1);
}

static void
stats_peer_json(struct evbuffer *b, const struct sink_peer_stats *p,
		const char *sep)
{
	/* Names are numeric addresses: nothing to escape. */
	evbuffer_add_printf(
	    b,
	    "%s\"%s\":{\"connections\":%" PRIu64 ",\"connections_now\":%" PRIu64
	    ",\"connections_max\":%" PRIu64 ",\"messages\":%" PRIu64
	    ",\"recipients\":%" PRIu64 "}",
	    sep, p->name, p->connections, p->connections_now,
	    p->connections_max, p->messages, p->recipients);
}

static void
stats_time_json(struct evbuffer *b, const char *name, double t)
{
	if (t > 0)
		evbuffer_add_printf(b, ",\"%s\":%.6f", name, t);
	else
		evbuffer_add_printf(b, ",\"%s\":null", name);
}

static struct evbuffer *
stats_json(void)
{
	const struct sink_stats *st = &sink.stats;
	struct evbuffer *b = evbuffer_new();
	int64_t now = (int64_t)sink_now();
	size_t i;

	if (b == NULL)
		return NULL;
#define U(name) evbuffer_add_printf(b, ",\"" #name "\":%" PRIu64, st->name)
	evbuffer_add_printf(b, "{\"pid\":%ld", (long)getpid());
	U(connections_total);
	U(connections_now);
	U(connections_max);
	U(connections_refused);
	U(tls_connections);
	U(tls_resumed);
	U(tls_failures);
	U(tls_broken);
	U(messages);
	U(recipients);
	U(rcpt_accepted);
	U(rejected_rcpt);
	U(deferred_rcpt);
	U(mail_rejected);
	U(data_rejected);
	U(data_deferred);
	U(bytes);
	U(bdat_messages);
	U(pipelined_commands);
	U(bare_lf_messages);
	U(timeouts);
	U(protocol_errors);
#undef U
	stats_time_json(b, "first_message_time", st->first_message_time);
	stats_time_json(b, "last_message_time", st->last_message_time);
	evbuffer_add_printf(b, ",\"listeners\":{");
	for (i = 0; i < sink.nlisteners; i++)
		stats_peer_json(b, &sink.listeners[i].st, i ? "," : "");
	evbuffer_add_printf(b, "},\"clients\":{");
	for (i = 0; i < st->nclients; i++)
		stats_peer_json(b, &st->clients[i], i ? "," : "");
	evbuffer_add(b, "}", 1);
	stats_hist_json(b, "messages_per_second", &st->hist_messages, now);
	stats_hist_json(b, "connections_per_second", &st->hist_connections,
			now);
	evbuffer_add(b, "}\n", 2);
	return b;
}

/*
 * sink_file_replace: make `path` hold exactly data[0..len) atomically
 * (write path.tmp, rename).  Returns 0, or -1 with errno set.
 */
int
sink_file_replace(const char *path, const void *data, size_t len)
{
	char tmp[4096];
	const char *p = data;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) != 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

/*
 * sink_stats_write: write the stats file if its text changed since the last
 * write (or always with `force`).  Returns 0, or -1 with a diagnostic
 * printed.  No-op without --stats.
 */
int
sink_stats_write(int force)
{
	struct evbuffer *b;
	size_t len;
	unsigned char *text;
	int rc = 0;

	if (sink.conf.stats_file == NULL)
		return 0;
	if ((b = stats_json()) == NULL)
		return -1;
	len = evbuffer_get_length(b);
	text = evbuffer_pullup(b, -1);
	if (text == NULL) {
		evbuffer_free(b);
		return -1;
	}
	if (!force && stats_last != NULL && stats_last_len == len &&
	    memcmp(stats_last, text, len) == 0)
		goto done;
	if (sink_file_replace(sink.conf.stats_file, text, len) != 0) {
		sink_log("stats: %s: %s", sink.conf.stats_file,
			 strerror(errno));
		rc = -1;
		goto done;
	}
	free(stats_last);
	stats_last = malloc(len);
	stats_last_len = stats_last != NULL ? len : 0;
	if (stats_last != NULL)
		memcpy(stats_last, text, len);
done:
	evbuffer_free(b);
	return rc;
}

/*
 * sink_stats_free: release the tables (at exit, after the last write).
 */
void
sink_stats_free(void)
{
	free(stats_last);
	stats_last = NULL;
	free(sink.stats.clients);
	sink.stats.clients = NULL;
	sink.stats.nclients = sink.stats.clients_cap = 0;
}
