/*
 * loop.h — an I/O loop: one thread, one libevent base, and a mailbox through
 * which other threads (queue writer, worker pool, main) hand it work.
 *
 * Sessions belong to exactly one loop and are only touched by its thread;
 * everything another thread wants done to them goes through loop_post().
 */
#ifndef OUTPOST_MTA_LOOP_H
#define OUTPOST_MTA_LOOP_H

#include <pthread.h>
#include <stdbool.h>

struct event_base;
struct dns_resolver;

typedef void loop_fn(void *arg);

struct loop_msg {
	loop_fn *fn;
	void *arg;
	struct loop_msg *next;
	bool ours; /* loop_post's own: the loop frees it */
};

/* A step run once at the end of a loop's turn (loop_turn_end): a batch
 * gathered over the turn's events, handed on in one go. */
struct loop_turn {
	loop_fn *fn;
	void *arg;
	bool queued; /* for this turn's end */
	struct loop_turn *next;
};

struct loop {
	struct event_base *base;
	unsigned index;
	pthread_t thread;
	bool threaded; /* runs on its own thread (else on main) */
	pthread_mutex_t mu;
	struct loop_msg *head, *tail; /* mailbox, FIFO */
	struct event *wake;
	struct event *turn_ev; /* active while turns is not empty */
	struct loop_turn *turns;
	void *sessions; /* owned by smtp_server.c: this loop's sessions */
	struct dns_resolver *dns; /* this loop's resolver (DMARC), or NULL */
	char name[16]; /* its thread's name (top -H, perf), set before start */
	/* run on its thread before its first event, if set (before start) */
	loop_fn *on_start;
	void *on_start_arg;
	/* run on its thread after its last event, if set (before start) */
	loop_fn *on_stop;
	void *on_stop_arg;
};

/* thread_name_set — name the calling thread (at most 15 bytes shown). */
void thread_name_set(const char *name);

/* loop_current — the loop whose thread calls, or NULL (main, a worker). */
struct loop *loop_current(void);

/* loop_init — create the base and the mailbox.  0 ok, -1 fail. Main thread. */
int loop_init(struct loop *l, unsigned index);
/* loop_start — run the loop on a new thread until loop_stop(). */
int loop_start(struct loop *l);
/* loop_post — run FN(ARG) on L's thread, soon, in FIFO order.  Any thread.
 * Never fails (allocation failure aborts: losing a completion would strand
 * a message). */
void loop_post(struct loop *l, loop_fn *fn, void *arg);
/* loop_post_msg — loop_post with the caller's M (its fn and arg set): no
 * allocation.  M stays the caller's: valid until its FN runs, which may
 * free it (the loop reads nothing of M after calling FN).  Any thread. */
void loop_post_msg(struct loop *l, struct loop_msg *m);
/* loop_post_defer — loop_post_msg, held by the calling thread until its
 * next loop_post_flush(), which appends each loop's posts in one go: one
 * lock of a mailbox for a group of completions (a queue commit's: see
 * queue_done_hook) rather than one each.  In order, per loop.  Any thread
 * that calls loop_post_flush() before it waits for anything. */
void loop_post_defer(struct loop *l, struct loop_msg *m);
void loop_post_flush(void);
/* loop_turn_end — T->fn(T->arg) runs at the end of the calling loop's
 * current turn (after the events active now), once however many times
 * this is called before it runs.  False when the caller is not a loop's
 * thread (or its loop has ended): nothing is queued, and the caller does
 * the step itself.  T stays the caller's; a loop that ends runs what is
 * queued on its thread, before its on_stop. */
bool loop_turn_end(struct loop_turn *t);
/* loop_turn_cancel — T no longer runs at the turn's end (before T is
 * freed).  The thread that queued it. */
void loop_turn_cancel(struct loop_turn *t);
/* loop_stop — ask L to leave its event loop.  Any thread. */
void loop_stop(struct loop *l);
/* loop_join — wait for a threaded loop to end.  Main. */
void loop_join(struct loop *l);
/* loop_flush — run what is left in the mailbox (completions must not be
 * lost); how many jobs ran (one may have posted to another loop).  Main,
 * after loop_join() and after every thread that posts to L has stopped;
 * the owner of L's events frees them after it, before loop_free(). */
size_t loop_flush(struct loop *l);
/* loop_free — loop_flush(), then free L's base: every event made on it
 * must have been freed already.  Main. */
void loop_free(struct loop *l);

#endif
