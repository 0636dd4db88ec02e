/*
 * queue_point_test.c — restore points (queue/point.c): a point holds the
 * queue's messages and pending recipients, its manifest says so and is
 * listed; two points in one second get two names; verify passes on a
 * whole point and fails, with its reason, on a truncated file, an altered
 * byte, a manifest whose counts lie, and the wrong key; listing passes
 * over temporary files and points without manifest; no file of the
 * directory holds the key's hex or an address in clear; names parse;
 * the headroom written ahead of the data while messages are committed
 * never lands on a page LMDB wrote (every record opens afterwards).
 */
#include <sys/stat.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/point_int.h"
#include "queue/queue.h"
#include "queue/queue_int.h"
#include "t/unit/queue_fixture.h"

#define SECRET   "pt-secret-9d41"
#define NMSG     12
#define BIG_BODY (QUEUE_CHUNK_BYTES + 1000) /* two chunks */

static char rdir[512];

static int
dir_make(void **state)
{
	qfix_setup(state);
	snprintf(rdir, sizeof(rdir), "%s/restore", qfix_dir);
	return 0;
}

/* Message N: 1 + N % 3 recipients, the first delivered when N is odd;
 * every fourth body spans two chunks. */
static void
insert(struct queue *q, unsigned n, uint64_t *pending)
{
	struct queue_op *op = queue_op_new(QOP_INSERT);
	char buf[96];
	uint32_t i;

	assert_non_null(op);
	op->env.id = queue_id_next(q);
	op->env.created_ms = queue_wall_ms();
	op->env.next_attempt_ms = op->env.created_ms;
	op->env.sender = qfix_strdup("sender." SECRET "@example.com");
	op->env.client = qfix_strdup("127.0.0.1");
	op->env.helo = qfix_strdup("helo.example");
	op->env.nrcpts = 1 + n % 3;
	assert_non_null(op->env.rcpts =
			    calloc(op->env.nrcpts, sizeof(*op->env.rcpts)));
	for (i = 0; i < op->env.nrcpts; i++) {
		snprintf(buf, sizeof(buf), "rcpt.%s.%u.%u@example.org", SECRET,
			 n, i);
		op->env.rcpts[i].addr = qfix_strdup(buf);
		op->env.rcpts[i].state =
		    i == 0 && n % 2 == 1 ? QR_DELIVERED : QR_PENDING;
		if (op->env.rcpts[i].state == QR_PENDING)
			(*pending)++;
	}
	op->body_len = n % 4 == 0 ? BIG_BODY : 500 + n;
	assert_non_null(op->body = malloc(op->body_len));
	memset(op->body, 'a' + n % 26, op->body_len);
	queue_submit(q, op, qfix_done, NULL);
}

/* A queue of NMSG messages, committed (closed and reopened). */
static struct queue *
queue_filled(uint64_t *pending)
{
	struct queue *q = qfix_open(64 << 20);
	unsigned n;

	*pending = 0;
	for (n = 0; n < NMSG; n++)
		insert(q, n, pending);
	queue_close(q);
	return qfix_open(64 << 20);
}

static void
key_load(uint8_t key[QUEUE_KEY_BYTES])
{
	char err[256];

	if (queue_keyfile_load(qfix_key, false, key, err, sizeof(err)) != 0)
		fail_msg("key: %s", err);
}

static void
take(struct queue *q, struct queue_point_info *pi)
{
	char err[256] = "";

	if (queue_point_take(q, rdir, pi, err, sizeof(err)) != 0)
		fail_msg("queue_point_take: %s", err);
	assert_true(pi->verified);
}

static void
point_file(char *buf, size_t len, const char *name, const char *ext)
{
	assert_int_equal(point_path(buf, len, rdir, name, ext), 0);
}

/* Does any file of DIR hold NEEDLE? */
static bool
dir_has(const char *dir, const char *needle)
{
	char path[1024], *buf;
	struct dirent *de;
	size_t n, i, len = strlen(needle);
	bool found = false;
	DIR *d;
	FILE *f;

	assert_non_null(d = opendir(dir));
	assert_non_null(buf = malloc(64 << 20));
	while (!found && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		assert_non_null(f = fopen(path, "rb"));
		n = fread(buf, 1, 64 << 20, f);
		fclose(f);
		for (i = 0; i + len <= n && !found; i++)
			found = memcmp(buf + i, needle, len) == 0;
	}
	closedir(d);
	free(buf);
	return found;
}

static void
test_take_list(void **state)
{
	struct queue_point_info a, b, *v;
	uint8_t key[QUEUE_KEY_BYTES];
	char hex[2 * QUEUE_KEY_BYTES + 1], path[1024], err[256];
	uint64_t pending;
	struct stat sb;
	struct queue *q = queue_filled(&pending);
	size_t n, i;

	(void)state;
	take(q, &a);
	assert_int_equal(a.messages, NMSG);
	assert_int_equal(a.recipients, pending);
	assert_int_equal(strlen(a.name), 16);
	assert_int_equal(strncmp(a.checksum, "blake2b-256:", 12), 0);
	assert_int_equal(strlen(a.checksum), 12 + 64);
	point_file(path, sizeof(path), a.name, "mdb");
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_true((uint64_t)sb.st_size == a.size);
	/* A second point at once: the same second, another name. */
	take(q, &b);
	assert_string_not_equal(a.name, b.name);
	assert_true(b.time_ms > a.time_ms);
	queue_close(q);

	assert_int_equal(queue_point_list(rdir, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, a.name);
	assert_string_equal(v[1].name, b.name);
	assert_int_equal(v[0].messages, NMSG);
	assert_int_equal(v[0].recipients, pending);
	assert_int_equal(v[0].key_id, a.key_id);
	assert_string_equal(v[0].checksum, a.checksum);
	assert_true(v[0].verified);
	assert_true(v[0].size == a.size && v[0].time_ms == a.time_ms);
	free(v);

	/* The key and the addresses stay out of the restore directory. */
	key_load(key);
	for (i = 0; i < QUEUE_KEY_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	assert_false(dir_has(rdir, hex));
	assert_false(dir_has(rdir, SECRET));
	assert_true(dir_has(rdir, "\"messages\":12"));
}

static void
test_verify(void **state)
{
	struct queue_point_info pi, got;
	uint8_t key[QUEUE_KEY_BYTES], other[QUEUE_KEY_BYTES];
	char path[1024], json[1024], err[256], buf[2048];
	uint64_t pending;
	struct queue *q = queue_filled(&pending);
	FILE *f;
	size_t len;
	char *p;
	int c;

	(void)state;
	take(q, &pi);
	queue_close(q);
	key_load(key);
	assert_int_equal(
	    queue_point_verify(rdir, pi.name, key, &got, err, sizeof(err)), 0);
	assert_true(got.verified);
	assert_int_equal(got.messages, NMSG);
	/* Its file names work too. */
	snprintf(buf, sizeof(buf), "point-%s.mdb", pi.name);
	assert_int_equal(
	    queue_point_verify(rdir, buf, key, NULL, err, sizeof(err)), 0);
	assert_int_equal(
	    queue_point_verify(rdir, "../etc", key, NULL, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "not a restore point"));

	memcpy(other, key, sizeof(other));
	other[0] ^= 1;
	assert_int_equal(
	    queue_point_verify(rdir, pi.name, other, &got, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "key id"));
	assert_false(got.verified);

	/* The manifest lies about the count: the walk finds out. */
	point_file(json, sizeof(json), pi.name, "json");
	assert_non_null(f = fopen(json, "rb"));
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	assert_non_null(p = strstr(buf, "\"messages\":12"));
	p[12] = '3';
	assert_non_null(f = fopen(json, "wb"));
	fwrite(buf, 1, len, f);
	fclose(f);
	assert_int_equal(
	    queue_point_verify(rdir, pi.name, key, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "the manifest says 13"));
	p[12] = '2';
	assert_non_null(f = fopen(json, "wb"));
	fwrite(buf, 1, len, f);
	fclose(f);

	/* One byte altered in the middle. */
	point_file(path, sizeof(path), pi.name, "mdb");
	assert_non_null(f = fopen(path, "r+b"));
	/* Read the byte, then write it back changed at the same place: a
	 * write straight after a read needs a seek between (C11, fopen, on
	 * update streams); without one glibc wrote the byte one further on,
	 * over a byte that was already the changed value 1 time in 256 (no
	 * change at all). */
	assert_int_equal(fseek(f, (long)(pi.size / 2), SEEK_SET), 0);
	assert_true((c = fgetc(f)) != EOF);
	assert_int_equal(fseek(f, (long)(pi.size / 2), SEEK_SET), 0);
	assert_int_equal(fputc(c ^ 0x40, f), c ^ 0x40);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(
	    queue_point_verify(rdir, pi.name, key, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "checksum differs"));

	/* Truncated. */
	assert_int_equal(truncate(path, (off_t)(pi.size / 3)), 0);
	assert_int_equal(
	    queue_point_verify(rdir, pi.name, key, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "truncated"));
}

/* Rewrite the manifest of M (its checksum recomputed): only the walk can
 * tell what changed in the file. */
static void
manifest_rewrite(struct queue_point_info *m)
{
	char path[1024], json[1024], text[1024], err[256];
	uint64_t size;
	FILE *f;
	int n;

	point_file(path, sizeof(path), m->name, "mdb");
	assert_int_equal(
	    point_file_sum(path, &size, m->checksum, err, sizeof(err)), 0);
	n = snprintf(text, sizeof(text),
		     "{\"version\":1,\"name\":\"%s\",\"time_ms\":%lld,"
		     "\"file\":\"point-%s.mdb\",\"size\":%llu,"
		     "\"messages\":%llu,\"recipients\":%llu,"
		     "\"key_id\":\"%08x\",\"checksum\":\"%s\","
		     "\"verified\":true,\"duration_ms\":1}\n",
		     m->name, (long long)m->time_ms, m->name,
		     (unsigned long long)size, (unsigned long long)m->messages,
		     (unsigned long long)m->recipients, m->key_id, m->checksum);
	point_file(json, sizeof(json), m->name, "json");
	assert_non_null(f = fopen(json, "wb"));
	fwrite(text, 1, (size_t)n, f);
	fclose(f);
}

/* An altered sealed record under a matching checksum: the walk opens the
 * seal and fails. */
static void
test_walk_finds_damage(void **state)
{
	struct queue_point_info pi;
	uint8_t key[QUEUE_KEY_BYTES];
	char path[1024], err[256];
	uint64_t pending;
	struct queue *q = queue_filled(&pending);
	long off;
	int c;
	FILE *f;

	(void)state;
	take(q, &pi);
	queue_close(q);
	key_load(key);
	/* The middle of a page in the middle of the file: the big bodies'
	 * overflow pages fill most of it, sealed. */
	off = (long)(pi.size / 2 & ~(uint64_t)4095) + 2048;
	point_file(path, sizeof(path), pi.name, "mdb");
	assert_non_null(f = fopen(path, "r+b"));
	fseek(f, off, SEEK_SET);
	c = fgetc(f);
	fseek(f, off, SEEK_SET);
	fputc(c ^ 0x01, f);
	fclose(f);
	manifest_rewrite(&pi);
	assert_int_equal(
	    queue_point_verify(rdir, pi.name, key, NULL, err, sizeof(err)), -1);
	assert_null(strstr(err, "checksum"));
	assert_non_null(strstr(err, "authentication failed"));
}

static void
test_list_skips(void **state)
{
	struct queue_point_info pi, *v;
	char path[1024], err[256];
	uint64_t pending;
	struct queue *q = queue_filled(&pending);
	size_t n;
	FILE *f;

	(void)state;
	/* No directory yet: no points. */
	assert_int_equal(queue_point_list(rdir, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	take(q, &pi);
	queue_close(q);
	point_file(path, sizeof(path), "20200101T000000Z", "mdb");
	assert_non_null(f = fopen(path, "wb")); /* no manifest */
	fclose(f);
	point_file(path, sizeof(path), "20200101T000001Z", "json.tmp");
	assert_non_null(f = fopen(path, "wb"));
	fputs("{}", f);
	fclose(f);
	point_file(path, sizeof(path), "20200101T000002Z", "json");
	assert_non_null(f = fopen(path, "wb")); /* malformed */
	fputs("{\"version\":1,", f);
	fclose(f);
	assert_int_equal(queue_point_list(rdir, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, pi.name);
	free(v);
}

static void
test_keep_plan(void **state)
{
	const int64_t H = 3600000, D = 24 * H, now = 1000 * D + 30 * 60000;
	/* Ages: 10 min, 50 min (keep_all 1h); 2h10, 2h20 (same hour);
	 * 3h; 1d+1h, 1d+2h (same day, keep_daily 7d); 8d; 100d. */
	const int64_t ages[] = { 100 * D,
				 8 * D,
				 D + 2 * H,
				 D + H,
				 3 * H,
				 2 * H + 20 * 60000,
				 2 * H + 10 * 60000,
				 50 * 60000,
				 10 * 60000 };
	const enum queue_point_keep_verdict want[] = {
		QPK_LIFETIME, QPK_EXPIRED, QPK_KEEP, QPK_THINNED, QPK_KEEP,
		QPK_KEEP,     QPK_THINNED, QPK_KEEP, QPK_KEEP
	};
	struct queue_point_keep k = { H, D, 7 * D, 90 * D };
	struct queue_point_info v[9];
	enum queue_point_keep_verdict got[9];
	size_t i;

	(void)state;
	memset(v, 0, sizeof(v));
	for (i = 0; i < 9; i++)
		v[i].time_ms = now - ages[i];
	queue_point_keep_plan(v, 9, now, &k, got);
	for (i = 0; i < 9; i++)
		if (got[i] != want[i])
			fail_msg("point %zu (age %lld ms): verdict %d, want %d",
				 i, (long long)ages[i], got[i], want[i]);
	/* The newest stays past every tier, not past the lifetime. */
	v[0].time_ms = now - 30 * D;
	queue_point_keep_plan(v, 1, now, &k, got);
	assert_int_equal(got[0], QPK_KEEP);
	v[0].time_ms = now - 91 * D;
	queue_point_keep_plan(v, 1, now, &k, got);
	assert_int_equal(got[0], QPK_LIFETIME);
}

/* What the restore thread said and answered. */
struct heard {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int answers, status;
	struct queue_point_info pi;
	char log[8192];
};

static void
heard_log(enum queue_point_level level, const char *msg, void *arg)
{
	struct heard *h = arg;
	size_t n;

	(void)level;
	pthread_mutex_lock(&h->mu);
	n = strlen(h->log);
	snprintf(h->log + n, sizeof(h->log) - n, "%s\n", msg);
	pthread_mutex_unlock(&h->mu);
}

static void
heard_done(int status, const struct queue_point_info *pi, const char *err,
	   void *arg)
{
	struct heard *h = arg;

	pthread_mutex_lock(&h->mu);
	h->answers++;
	h->status = status;
	if (pi != NULL)
		h->pi = *pi;
	else
		print_message("point failed: %s\n", err);
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Wait up to 10 s for COND about T's counters. */
#define STATS_WAIT(t, st, cond)                                                \
	do {                                                                   \
		int i_;                                                        \
		for (i_ = 0; i_ < 1000; i_++) {                                \
			queue_point_thread_stats((t), &(st));                  \
			if (cond)                                              \
				break;                                         \
			nanosleep(&(struct timespec){ 0, 10000000 }, NULL);    \
		}                                                              \
		assert_true(cond);                                             \
	} while (0)

static void
test_thread(void **state)
{
	static struct heard h;
	char off[600], path[1024], err[256];
	char *cmd[] = { "/bin/sh", "-c", "test -s \"$0\" && exit 3", NULL };
	struct queue_point_settings s = { 0 };
	struct queue_point_thread *t;
	struct queue_point_stats st;
	uint64_t pending;
	struct queue *q = queue_filled(&pending);
	struct stat sb;

	(void)state;
	pthread_mutex_init(&h.mu, NULL);
	pthread_cond_init(&h.cv, NULL);
	snprintf(off, sizeof(off), "%s/offsite", qfix_dir);
	s.dir = rdir;
	s.copy_to = off;
	s.command = cmd;
	s.command_timeout_ms = 5000;
	s.keep =
	    (struct queue_point_keep){ 3600000, 86400000, 7 * 86400000LL, 0 };
	assert_int_equal(queue_point_thread_start(&t, q, &s, heard_log, &h, err,
						  sizeof(err)),
			 0);
	assert_int_equal(queue_point_thread_request(t, heard_done, &h), 0);
	pthread_mutex_lock(&h.mu);
	while (h.answers == 0)
		pthread_cond_wait(&h.cv, &h.mu);
	pthread_mutex_unlock(&h.mu);
	assert_int_equal(h.status, 0);
	assert_int_equal(h.pi.messages, NMSG);
	/* The copy is there, manifest and all; the command saw the point
	 * file (non-empty) and said 3. */
	snprintf(path, sizeof(path), "%s/point-%s.json", off, h.pi.name);
	assert_int_equal(stat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/point-%s.mdb", off, h.pi.name);
	assert_int_equal(stat(path, &sb), 0);
	assert_true((uint64_t)sb.st_size == h.pi.size);
	STATS_WAIT(t, st, st.commands_failed == 1);
	assert_int_equal(st.taken, 1);
	assert_true(st.have_last);
	assert_string_equal(st.last.name, h.pi.name);

	/* A slow command is killed after its timeout; the next point's is
	 * skipped while it runs; the points themselves still come. */
	cmd[2] = "sleep 30";
	s.command_timeout_ms = 1500;
	s.interval_ms = 300;
	assert_int_equal(queue_point_thread_set(t, &s), 0);
	STATS_WAIT(t, st, st.commands_skipped >= 1 && st.taken >= 3);
	STATS_WAIT(t, st, st.commands_killed >= 1);
	queue_point_thread_stop(t);
	queue_close(q);
	assert_non_null(strstr(h.log, "command exited with status 3"));
	assert_non_null(strstr(h.log, "command killed after command_timeout"));
	assert_non_null(strstr(h.log, "command skipped"));
	assert_non_null(strstr(h.log, " messages, "));
}

/* Commits, one tiny message every 2 ms, while STOP is 0: they make a
 * point's copy pace itself (point_copy.c), as a busy daemon's would. */
struct committer {
	struct queue *q;
	_Atomic int stop;
};

static void *
committer_main(void *arg)
{
	struct committer *c = arg;
	struct queue_op *op;

	while (!atomic_load(&c->stop)) {
		op = qfix_insert_op(queue_id_next(c->q));
		assert_non_null(op->body = malloc(100));
		memset(op->body, 'c', 100);
		op->body_len = 100;
		queue_submit(c->q, op, qfix_done, NULL);
		nanosleep(&(struct timespec){ 0, 2000000 }, NULL);
	}
	return NULL;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The time a point of Q takes under commits, in ms (calibration). */
static uint64_t
point_full_ms(struct queue *q)
{
	struct queue_point_info pi;
	char err[256] = "";
	uint64_t t0 = now_ms();

	if (queue_point_take(q, rdir, &pi, err, sizeof(err)) != 0)
		fail_msg("queue_point_take: %s", err);
	return now_ms() - t0;
}

/* A stop gives up a point in progress: it returns in a fraction of the
 * point's time (it used to wait for the whole copy: minutes at millions of
 * messages), the request is answered with a failure, and no point file of
 * it is left. */
static void
test_stop_gives_up_a_point(void **state)
{
	static struct heard h;
	struct queue_point_settings s = { 0 };
	struct queue_point_thread *t;
	struct committer c = { 0 };
	struct queue_op *op;
	pthread_t th;
	char err[256];
	uint64_t full, t0, took;
	struct dirent *de;
	unsigned n, files = 0;
	DIR *d;

	(void)state;
	pthread_mutex_init(&h.mu, NULL);
	pthread_cond_init(&h.cv, NULL);
	c.q = qfix_open((uint64_t)1 << 30);
	for (n = 0; n < 160; n++) {
		op = qfix_insert_op(queue_id_next(c.q));
		assert_non_null(op->body = malloc(1 << 20));
		memset(op->body, 'a' + n % 26, 1 << 20);
		op->body_len = 1 << 20;
		queue_submit(c.q, op, qfix_done, NULL);
	}
	queue_close(c.q); /* all committed */
	c.q = qfix_open((uint64_t)1 << 30);
	assert_int_equal(pthread_create(&th, NULL, committer_main, &c), 0);
	full = point_full_ms(c.q);
	s.dir = rdir;
	s.keep = (struct queue_point_keep){ 0, 0, 0, 0 };
	assert_int_equal(queue_point_thread_start(&t, c.q, &s, heard_log, &h,
						  err, sizeof(err)),
			 0);
	assert_int_equal(queue_point_thread_request(t, heard_done, &h), 0);
	nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	t0 = now_ms();
	queue_point_thread_stop(t);
	took = now_ms() - t0;
	atomic_store(&c.stop, 1);
	pthread_join(th, NULL);
	print_message("# a point takes %" PRIu64 " ms under commits, the stop "
		      "%" PRIu64 " ms\n",
		      full, took);
	if (took * 2 > full)
		fail_msg("the stop took %" PRIu64 " ms, a point %" PRIu64 " ms",
			 took, full);
	assert_int_equal(h.answers, 1);
	assert_int_not_equal(h.status, 0);
	/* Only the calibration point is left. */
	assert_non_null(d = opendir(rdir));
	while ((de = readdir(d)) != NULL)
		files += strncmp(de->d_name, "point-", 6) == 0 &&
			 strstr(de->d_name, ".mdb") != NULL;
	closedir(d);
	assert_int_equal(files, 1);
	queue_close(c.q);
}

static void
test_names(void **state)
{
	char name[POINT_NAME_BYTES];

	(void)state;
	point_name_format(1764912600123LL, name); /* 2025-12-05 05:30:00 */
	assert_string_equal(name, "20251205T053000Z");
	assert_int_equal(point_name_parse("20251205T053000Z", name), 0);
	assert_int_equal(point_name_parse("point-20251205T053000Z", name), 0);
	assert_int_equal(
	    point_name_parse("/x/y/point-20251205T053000Z.json", name), 0);
	assert_string_equal(name, "20251205T053000Z");
	assert_int_equal(
	    point_name_parse("point-20251205T053000Z.mdb.tmp", name), -1);
	assert_int_equal(point_name_parse("/x/20251205T053000Z.mdb", name), -1);
	assert_int_equal(point_name_parse("20251205X053000Z", name), -1);
	assert_int_equal(point_name_parse("2025120", name), -1);
	assert_int_equal(point_name_parse("../../20251205T053000Z", name), -1);
}

#define HEADROOM_MSGS 3000

static void *
headroom_inserter(void *arg)
{
	uint64_t pending = 0;
	unsigned n;

	for (n = 0; n < HEADROOM_MSGS; n++)
		insert(arg, n, &pending);
	return NULL;
}

/* Zeros appended while the writer commits, then a point: every record of
 * every message opens (point_walk), before and after a reopen. */
static void
test_headroom(void **state)
{
	struct queue_point_info pi;
	struct queue_stats st;
	uint64_t written, total = 0, used;
	char path[600];
	struct stat sb;
	struct queue *q;
	pthread_t th;
	unsigned i;

	(void)state;
	q = qfix_open(512 << 20);
	assert_int_equal(pthread_create(&th, NULL, headroom_inserter, q), 0);
	for (i = 1; i <= 64; i++) {
		assert_int_equal(
		    headroom_keep(q, (uint64_t)i << 20, 1 << 20, &written), 0);
		total += written;
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	queue_stats_get(q, &st);
	assert_true(total > 0);
	assert_true(st.headroom_bytes == total);
	queue_close(q); /* every op committed */
	q = qfix_open(512 << 20);
	take(q, &pi);
	assert_int_equal(pi.messages, HEADROOM_MSGS);
	/* The point kept its own headroom: the file runs past LMDB's data. */
	used = headroom_used(q);
	snprintf(path, sizeof(path), "%s/data.mdb", qfix_queue);
	assert_int_equal(stat(path, &sb), 0);
	assert_true((uint64_t)sb.st_size >= used + POINT_HEADROOM_MIN);
	queue_close(q);
	q = qfix_open(512 << 20);
	take(q, &pi);
	assert_int_equal(pi.messages, HEADROOM_MSGS);
	assert_true(used > 0);
	queue_close(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_take_list, dir_make,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_verify, dir_make,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_walk_finds_damage,
						dir_make, qfix_teardown),
		cmocka_unit_test_setup_teardown(test_list_skips, dir_make,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_stop_gives_up_a_point,
						dir_make, qfix_teardown),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_keep_plan),
		cmocka_unit_test_setup_teardown(test_thread, dir_make,
						qfix_teardown),
		cmocka_unit_test_setup_teardown(test_headroom, dir_make,
						qfix_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
