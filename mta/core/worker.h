/*
 * worker.h — the CPU pool: threads that take jobs too heavy for an I/O loop
 * (Argon2id verification, DKIM signing and the queue's sealing on intake,
 * reading queued messages for delivery, control-socket walks) and post each
 * job's completion back to the loop that submitted it (Redis bio.c shape).
 */
#ifndef OUTPOST_MTA_WORKER_H
#define OUTPOST_MTA_WORKER_H

struct loop;

typedef void worker_fn(void *arg);

/* worker_start — start N threads.  0 ok, -1 fail.  Main thread. */
int worker_start(unsigned n);
/* worker_stop — finish queued jobs, then join the threads.  Main thread,
 * after the loops have stopped submitting; completions are posted as usual
 * (loop_join() runs what is left in each mailbox). */
void worker_stop(void);
/*
 * worker_submit — run RUN(ARG) on a pool thread, then DONE(ARG) on loop L.
 * ARG is owned by the caller throughout; it must stay valid until DONE runs.
 * Any thread.
 */
void worker_submit(struct loop *l, worker_fn *run, worker_fn *done, void *arg);

#endif
