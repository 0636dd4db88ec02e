/*
 * point_keep.c — which restore points stay (every one for a while, then the
 * first of each hour, then the first of each day, none past the lifetime)
 * and the removal of the others and of what an interrupted point left.
 * Owns: nothing past a call.  Must not: remove a file that is not a
 * point's (only names point_name_parse() accepts, and their .tmp).
 * Threads: the restore thread (the only writer of its directories).
 */
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/point_int.h"
#include "queue/queue_int.h"

#define KEEP_HOUR_MS 3600000LL
#define KEEP_DAY_MS  86400000LL

/* Why a point goes (the log's words). */
static const char *const keep_why[] = {
	[QPK_KEEP] = "kept",
	[QPK_LIFETIME] = "older than retention.restore_points",
	[QPK_THINNED] = "not the first of its hour or day",
	[QPK_EXPIRED] = "older than keep_daily",
};

const char *
queue_point_keep_why(enum queue_point_keep_verdict v)
{
	return keep_why[v];
}

/*
 * Oldest first, so that the first point of an hour (or day) claims it for
 * good: a point kept today is kept tomorrow, until its tier ends.  The
 * newest point stays whatever its tier (the latest restore is never
 * thinned away), but not past the lifetime.
 */
void
queue_point_keep_plan(const struct queue_point_info *v, size_t n,
		      int64_t now_ms, const struct queue_point_keep *k,
		      enum queue_point_keep_verdict *out)
{
	int64_t hour = INT64_MIN, day = INT64_MIN, age, h, d;
	size_t i;

	for (i = 0; i < n; i++) {
		age = now_ms - v[i].time_ms;
		h = v[i].time_ms / KEEP_HOUR_MS;
		d = v[i].time_ms / KEEP_DAY_MS;
		if (k->max_age_ms > 0 && age > k->max_age_ms)
			out[i] = QPK_LIFETIME;
		else if (i == n - 1 || age <= k->all_ms)
			out[i] = QPK_KEEP;
		else if (age <= k->hourly_ms && h != hour)
			out[i] = QPK_KEEP;
		else if (age <= k->daily_ms && d != day)
			out[i] = QPK_KEEP;
		else if (age <= k->daily_ms)
			out[i] = QPK_THINNED;
		else
			out[i] = QPK_EXPIRED;
		if (out[i] == QPK_KEEP) {
			hour = h;
			day = d;
		}
	}
}

/* Remove DIR/point-NAME.EXT; a missing file is no error. */
static int
keep_unlink(const char *dir, const char *name, const char *ext)
{
	char path[PATH_MAX];

	if (point_path(path, sizeof(path), dir, name, ext) != 0)
		return -1;
	return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* What an interrupted point left: .tmp files, and a point file without
 * manifest (the manifest is written last).  Each is reported to FN. */
static unsigned
keep_leftovers(const char *dir, queue_point_removed_fn *fn, void *arg)
{
	char name[POINT_NAME_BYTES], path[PATH_MAX], json[PATH_MAX], stem[64];
	struct dirent *de;
	unsigned n = 0;
	size_t len;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (strncmp(de->d_name, POINT_PREFIX, strlen(POINT_PREFIX)) !=
		    0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
		    (int)sizeof(path))
			continue;
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			/* point-NAME.mdb.tmp, point-NAME.json.tmp */
			if (snprintf(stem, sizeof(stem), "%.*s", (int)(len - 4),
				     de->d_name) < (int)sizeof(stem) &&
			    point_name_parse(stem, name) == 0 &&
			    unlink(path) == 0) {
				if (fn != NULL)
					fn(name, "incomplete", arg);
				n++;
			}
			continue;
		}
		if (len > 4 && strcmp(de->d_name + len - 4, ".mdb") == 0 &&
		    point_name_parse(de->d_name, name) == 0 &&
		    point_path(json, sizeof(json), dir, name, "json") == 0 &&
		    access(json, F_OK) != 0 && errno == ENOENT &&
		    unlink(path) == 0) {
			if (fn != NULL)
				fn(name, "no manifest", arg);
			n++;
		}
	}
	closedir(d);
	return n;
}

int
queue_point_prune(const char *dir, int64_t now_ms,
		  const struct queue_point_keep *k, queue_point_removed_fn *fn,
		  void *arg, char *err, size_t errlen)
{
	struct queue_point_info *v = NULL;
	enum queue_point_keep_verdict *plan = NULL;
	size_t n = 0, i;
	int removed;

	removed = (int)keep_leftovers(dir, fn, arg);
	if (queue_point_list(dir, &v, &n, err, errlen) != 0)
		return -1;
	if (n > 0 && (plan = calloc(n, sizeof(*plan))) == NULL) {
		free(v);
		(void)snprintf(err, errlen, "out of memory");
		return -1;
	}
	queue_point_keep_plan(v, n, now_ms, k, plan);
	for (i = 0; i < n; i++) {
		if (plan[i] == QPK_KEEP)
			continue;
		/* The manifest first: a point half removed is incomplete,
		 * never a point that looks whole. */
		if (keep_unlink(dir, v[i].name, "json") != 0 ||
		    keep_unlink(dir, v[i].name, "mdb") != 0) {
			(void)snprintf(err, errlen, "%s: removing point %s: %s",
				       dir, v[i].name, strerror(errno));
			removed = -1;
			break;
		}
		if (fn != NULL)
			fn(v[i].name, keep_why[plan[i]], arg);
		removed++;
	}
	if (removed > 0 && queue_dir_sync(dir, "") != 0) {
		(void)snprintf(err, errlen, "%s: fsync: %s", dir,
			       strerror(errno));
		removed = -1;
	}
	free(plan);
	free(v);
	return removed;
}
