/*
 * worker.c — the CPU pool.
 *
 * Owns: the job FIFO and the pool threads.  Jobs run in submission order
 * across threads; a job never touches a session directly, only its ARG;
 * the completion runs on the submitting loop (loop_post).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/core/worker.h"

struct worker_job {
	struct loop *loop;
	worker_fn *run, *done;
	void *arg;
	struct worker_job *next;
	/* The completion's post: the job itself goes back and is freed on
	 * its loop, as a rule the thread that made it (no allocation, and
	 * no free into another thread's arena). */
	struct loop_msg post;
};

static pthread_mutex_t worker_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t worker_cv = PTHREAD_COND_INITIALIZER;
static struct worker_job *worker_head, *worker_tail;
static bool worker_stopping;
static pthread_t *worker_threads;
static unsigned worker_n;

static void *
worker_main(void *arg)
{
	struct worker_job *j;
	char name[16];

	(void)snprintf(name, sizeof(name), "worker%u",
		       (unsigned)(uintptr_t)arg);
	thread_name_set(name);
	for (;;) {
		pthread_mutex_lock(&worker_mu);
		while (worker_head == NULL && !worker_stopping)
			pthread_cond_wait(&worker_cv, &worker_mu);
		j = worker_head;
		if (j == NULL) {
			pthread_mutex_unlock(&worker_mu);
			return NULL;
		}
		worker_head = j->next;
		if (worker_head == NULL)
			worker_tail = NULL;
		pthread_mutex_unlock(&worker_mu);
		j->run(j->arg);
		if (j->done != NULL)
			loop_post_msg(j->loop, &j->post);
		else
			free(j);
	}
}

/* On the submitting loop: the job's completion, then the job goes. */
static void
worker_job_done(void *arg)
{
	struct worker_job *j = arg;
	worker_fn *done = j->done;
	void *jarg = j->arg;

	free(j);
	done(jarg);
}

int
worker_start(unsigned n)
{
	unsigned i;

	if ((worker_threads = calloc(n, sizeof(*worker_threads))) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if (pthread_create(&worker_threads[i], NULL, worker_main,
				   (void *)(uintptr_t)i) != 0)
			return -1;
		worker_n++;
	}
	return 0;
}

void
worker_stop(void)
{
	unsigned i;

	pthread_mutex_lock(&worker_mu);
	worker_stopping = true;
	pthread_cond_broadcast(&worker_cv);
	pthread_mutex_unlock(&worker_mu);
	for (i = 0; i < worker_n; i++)
		pthread_join(worker_threads[i], NULL);
	free(worker_threads);
	worker_threads = NULL;
	worker_n = 0;
}

void
worker_submit(struct loop *l, worker_fn *run, worker_fn *done, void *arg)
{
	struct worker_job *j;

	if ((j = malloc(sizeof(*j))) == NULL)
		panic("out of memory submitting a job");
	j->loop = l;
	j->run = run;
	j->done = done;
	j->arg = arg;
	j->next = NULL;
	j->post.fn = worker_job_done;
	j->post.arg = j;
	j->post.ours = false;
	pthread_mutex_lock(&worker_mu);
	if (worker_tail != NULL)
		worker_tail->next = j;
	else
		worker_head = j;
	worker_tail = j;
	pthread_cond_signal(&worker_cv);
	pthread_mutex_unlock(&worker_mu);
}
