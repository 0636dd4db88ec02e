/*
 * loop.c — I/O loop threads and their mailboxes.
 *
 * Owns: each loop's event_base and mailbox.  The mailbox is a mutex-guarded
 * FIFO plus one libevent event made active from the posting thread
 * (evthread_use_pthreads() is called in main before any base exists).
 */
#include <sys/prctl.h>
#include <stdlib.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "dkim/dkim.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"

/* Run L's mailbox as it is now; how many jobs ran. */
static size_t
loop_run_mail(struct loop *l)
{
	struct loop_msg *m, *next;
	size_t n = 0;

	pthread_mutex_lock(&l->mu);
	m = l->head;
	l->head = l->tail = NULL;
	pthread_mutex_unlock(&l->mu);
	for (; m != NULL; m = next, n++) {
		loop_fn *fn = m->fn;
		void *arg = m->arg;

		next = m->next;
		if (m->ours)
			free(m);
		fn(arg); /* may free a caller's M (loop_post_msg) */
	}
	return n;
}

/* The loop whose thread this is (loop_main), or NULL. */
static _Thread_local struct loop *loop_self;

/* Run the turn's queued steps, in the order queued (one queued while
 * they run waits for the next turn's end). */
static void
loop_turns_run(struct loop *l)
{
	struct loop_turn *t = l->turns, *prev = NULL, *next;

	l->turns = NULL;
	/* Queued newest first: reverse. */
	for (; t != NULL; t = next) {
		next = t->next;
		t->next = prev;
		prev = t;
	}
	for (t = prev; t != NULL; t = next) {
		next = t->next;
		t->next = NULL;
		t->queued = false;
		t->fn(t->arg);
	}
}

static void
loop_turn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	loop_turns_run(arg);
}

bool
loop_turn_end(struct loop_turn *t)
{
	struct loop *l = loop_self;

	if (l == NULL)
		return false;
	if (t->queued)
		return true;
	if (l->turns == NULL)
		event_active(l->turn_ev, EV_TIMEOUT, 1);
	t->queued = true;
	t->next = l->turns;
	l->turns = t;
	return true;
}

void
loop_turn_cancel(struct loop_turn *t)
{
	struct loop *l = loop_self;
	struct loop_turn **pp;

	if (!t->queued)
		return;
	t->queued = false;
	if (l == NULL)
		return; /* an ended loop's: loop_main ran or dropped them */
	for (pp = &l->turns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	t->next = NULL;
}

static void
loop_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)loop_run_mail(arg);
}

int
loop_init(struct loop *l, unsigned index)
{
	struct event_config *cfg;

	l->index = index;
	l->head = l->tail = NULL;
	l->sessions = NULL;
	l->dns = NULL;
	l->threaded = false;
	if (pthread_mutex_init(&l->mu, NULL) != 0)
		return -1;
	if ((cfg = event_config_new()) == NULL)
		return -1;
	/* Precise timers are not needed; cheaper clock reads are. */
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	l->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (l->base == NULL)
		return -1;
	l->wake = event_new(l->base, -1, EV_PERSIST, loop_wake_cb, l);
	if (l->wake == NULL || event_add(l->wake, NULL) != 0)
		return -1;
	l->turns = NULL;
	if ((l->turn_ev = event_new(l->base, -1, 0, loop_turn_cb, l)) == NULL)
		return -1;
	return 0;
}

void
thread_name_set(const char *name)
{
	(void)prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

struct loop *
loop_current(void)
{
	return loop_self;
}

static void *
loop_main(void *arg)
{
	struct loop *l = arg;

	loop_self = l;

	if (l->name[0] != '\0')
		thread_name_set(l->name);
	if (l->on_start != NULL)
		l->on_start(l->on_start_arg);
	event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
	/* The last turn's steps (its end may not have come), then the
	 * owner's; from then on, steps are done where they are asked. */
	loop_turns_run(l);
	if (l->on_stop != NULL)
		l->on_stop(l->on_stop_arg);
	loop_self = NULL;
	loop_turns_run(l);
	dmarc_memo_free(); /* this thread's memo of DMARC policies */
	return NULL;
}

int
loop_start(struct loop *l)
{
	l->threaded = true;
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
		l->threaded = false;
		return -1;
	}
	return 0;
}

void
loop_post(struct loop *l, loop_fn *fn, void *arg)
{
	struct loop_msg *m;

	if ((m = malloc(sizeof(*m))) == NULL)
		panic("out of memory posting to loop %u", l->index);
	m->fn = fn;
	m->arg = arg;
	m->ours = true;
	loop_post_msg(l, m);
}

/* Append the chain HEAD..TAIL (linked, TAIL's next NULL) to L's mailbox. */
static void
loop_post_chain(struct loop *l, struct loop_msg *head, struct loop_msg *tail)
{
	bool first;

	pthread_mutex_lock(&l->mu);
	first = l->head == NULL;
	if (l->tail != NULL)
		l->tail->next = head;
	else
		l->head = head;
	l->tail = tail;
	pthread_mutex_unlock(&l->mu);
	/* Only the first message of a batch wakes the loop: the others find
	 * the wake-up pending (loop_wake_cb empties the whole mailbox), and
	 * each wake-up costs the base's lock and a write to its eventfd. */
	if (first)
		event_active(l->wake, EV_READ, 0);
}

void
loop_post_msg(struct loop *l, struct loop_msg *m)
{
	m->next = NULL;
	loop_post_chain(l, m, m);
}

/* Posts held by the calling thread for loop_post_flush: a chain per loop,
 * for the few loops one thread's completions go to. */
#define LOOP_DEFER_MAX 16
static _Thread_local struct loop_defer {
	struct loop *l;
	struct loop_msg *head, *tail;
} loop_defer[LOOP_DEFER_MAX];
static _Thread_local unsigned loop_ndefer;

void
loop_post_defer(struct loop *l, struct loop_msg *m)
{
	struct loop_defer *d;
	unsigned i;

	m->next = NULL;
	for (i = 0; i < loop_ndefer; i++) {
		d = &loop_defer[i];
		if (d->l == l) {
			d->tail->next = m;
			d->tail = m;
			return;
		}
	}
	if (loop_ndefer == LOOP_DEFER_MAX)
		loop_post_flush();
	d = &loop_defer[loop_ndefer++];
	d->l = l;
	d->head = d->tail = m;
}

void
loop_post_flush(void)
{
	unsigned i, n = loop_ndefer;

	loop_ndefer = 0;
	for (i = 0; i < n; i++)
		loop_post_chain(loop_defer[i].l, loop_defer[i].head,
				loop_defer[i].tail);
}

void
loop_stop(struct loop *l)
{
	event_base_loopexit(l->base, NULL);
}

void
loop_join(struct loop *l)
{
	if (l->threaded)
		pthread_join(l->thread, NULL);
	l->threaded = false;
}

size_t
loop_flush(struct loop *l)
{
	return loop_run_mail(l);
}

void
loop_free(struct loop *l)
{
	loop_flush(l);
	event_free(l->wake);
	event_free(l->turn_ev);
	event_base_free(l->base);
	pthread_mutex_destroy(&l->mu);
}
