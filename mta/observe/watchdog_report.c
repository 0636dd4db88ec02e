/*
 * watchdog_report.c — what `outpost watchdog status` and `outpost watchdog
 * history` show of a profile: its state, each signal's value, limit and
 * baseline; its stops and releases and the signal values of its last
 * days.  As table lines or one JSON object a line.
 * Owns: nothing.  Must not: change a profile (it is handed a copy).
 * Threads: any (the caller holds the profile).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mta/core/json.h"
#include "mta/observe/watchdog_int.h"

static const char *
wd_state_name(const struct wd_profile *p, const struct wd_eval *e)
{
	if (p->stopped)
		return "stopped";
	return e->learning ? "learning" : "watching";
}

static const char *const wd_event_names[] = {
	[WDE_STOP] = "stop",
	[WDE_RELEASE] = "release",
	[WDE_LEARN] = "release-learn",
};

static const char *
wd_event_name(uint32_t k)
{
	return k >= WDE_STOP && k <= WDE_LEARN ? wd_event_names[k] : "unknown";
}

/* The tripped signals' names, space-separated ("-": none). */
static void
wd_tripped_put(FILE *f, uint32_t tripped)
{
	unsigned i;
	bool any = false;

	for (i = 0; i < WS__COUNT; i++)
		if (tripped & (1u << i)) {
			fprintf(f, "%s%s", any ? "," : "",
				wd_signal_name((enum watchdog_signal)i));
			any = true;
		}
	if (!any)
		fputc('-', f);
}

void
wd_report_status(FILE *f, const char *name, const struct wd_profile *p,
		 const struct wd_eval *e, bool json, bool header)
{
	char t1[32], t2[32];
	unsigned i;

	json_time_fmt(p->first_ms, json, t1, sizeof(t1));
	json_time_fmt(p->stopped ? p->stopped_ms : 0, json, t2, sizeof(t2));
	if (json) {
		fputs("{\"identity\":", f);
		json_put(f, name);
		fprintf(f, ",\"state\":\"%s\",\"first_seen\":\"%s\"",
			wd_state_name(p, e), t1);
		if (p->stopped) {
			fprintf(f, ",\"stopped_at\":\"%s\",\"stopped_by\":[",
				t2);
			for (i = 0; i < WS__COUNT; i++)
				if (p->tripped & (1u << i))
					fprintf(f, "%s\"%s\"",
						(p->tripped & ((1u << i) - 1))
						    ? ","
						    : "",
						wd_signal_name(
						    (enum watchdog_signal)i));
			fputc(']', f);
		}
		fprintf(f, ",\"trap_hits_total\":%" PRIu32 ",\"signals\":",
			p->trap_hits);
		wd_signals_json(f, e);
		fputs("}\n", f);
		return;
	}
	if (!header)
		fputc('\n', f);
	fputs("identity ", f);
	json_term_put(f, name);
	fprintf(f, ": %s", wd_state_name(p, e));
	if (p->stopped) {
		fprintf(f, " since %s by ", t2);
		wd_tripped_put(f, p->tripped);
	}
	fprintf(f, " (first seen %s; trap hits %" PRIu32 ")\n", t1,
		p->trap_hits);
	fprintf(f, "  %-20s %10s %10s %10s  %s\n", "SIGNAL", "VALUE", "LIMIT",
		"BASELINE", "JUDGED");
	for (i = 0; i < WS__COUNT; i++)
		fprintf(f, "  %-20s %10.4g %10.4g %10.4g  %s\n",
			wd_signal_name((enum watchdog_signal)i),
			(double)e->v[i], (double)e->limit[i],
			(double)e->baseline[i],
			e->enough[i]
			    ? (e->learning && i != WS_TRAP && i != WS_INFECTED
				   ? "learning"
				   : "yes")
			    : "too few");
}

void
wd_report_history(FILE *f, const char *name, const struct wd_profile *p,
		  bool json)
{
	const struct wd_event *ev;
	const struct wd_day *d;
	uint32_t k, first;
	char t[32];
	unsigned i, j;

	first = p->nevents > WD_EVENTS ? p->nevents - WD_EVENTS : 0;
	if (!json)
		fprintf(f, "%-24s %-14s %-28s %s\n", "TIME (UTC)", "EVENT",
			"SIGNALS", "VALUES");
	for (k = first; k < p->nevents; k++) {
		ev = &p->events[k % WD_EVENTS];
		json_time_fmt(ev->ms, json, t, sizeof(t));
		if (json) {
			fputs("{\"identity\":", f);
			json_put(f, name);
			fprintf(f, ",\"time\":\"%s\",\"event\":\"%s\",", t,
				wd_event_name(ev->kind));
			fputs("\"tripped\":\"", f);
			wd_tripped_put(f, ev->tripped);
			fputs("\",\"values\":{", f);
			for (j = 0; j < WS__COUNT; j++)
				fprintf(f, "%s\"%s\":%.4g", j ? "," : "",
					wd_signal_name((enum watchdog_signal)j),
					(double)ev->v[j]);
			fputs("}}\n", f);
			continue;
		}
		fprintf(f, "%-24s %-14s ", t, wd_event_name(ev->kind));
		wd_tripped_put(f, ev->tripped);
		fputs("  ", f);
		for (j = 0; j < WS__COUNT; j++)
			fprintf(f, "%s%s=%.4g", j ? " " : "",
				wd_signal_name((enum watchdog_signal)j),
				(double)ev->v[j]);
		fputc('\n', f);
	}
	/* The days' highest values, oldest first. */
	for (i = 1; i <= WD_HISTORY_DAYS; i++) {
		d = &p->days[(unsigned)((p->day + i) % WD_HISTORY_DAYS)];
		if (d->day == 0 || d->day <= p->day - WD_HISTORY_DAYS)
			continue;
		json_time_fmt(d->day * WD_DAY_MS, json, t, sizeof(t));
		if (json) {
			fputs("{\"identity\":", f);
			json_put(f, name);
			fprintf(f,
				",\"time\":\"%s\",\"event\":\"day\","
				"\"values\":{",
				t);
		} else
			fprintf(f, "%-24s %-14s %-28s ", t, "day", "-");
		for (j = 0; j < WS__COUNT; j++)
			fprintf(f, json ? "%s\"%s\":%.4g" : "%s%s=%.4g",
				j ? (json ? "," : " ") : "",
				wd_signal_name((enum watchdog_signal)j),
				(double)d->v[j]);
		fputs(json ? "}}\n" : "\n", f);
	}
}
