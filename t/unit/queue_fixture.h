/*
 * queue_fixture.h — what the queue's unit tests share: a scratch
 * directory (under $TMPDIR) holding a queue and its key file, removed
 * whole after each test, and the queue opened there.  One test at a time.
 */
#ifndef OUTPOST_T_UNIT_QUEUE_FIXTURE_H
#define OUTPOST_T_UNIT_QUEUE_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "queue/queue.h"

/* The paths of the current test (valid between setup and teardown). */
extern char qfix_dir[256], qfix_queue[300], qfix_key[300];

/* cmocka setup / teardown: make the directory, remove it whole. */
int qfix_setup(void **state);
int qfix_teardown(void **state);

/* The queue at qfix_queue with the key qfix_key (a failure fails the
 * test). */
struct queue *qfix_open(uint64_t map_size);

/* Does the queue's data.mdb hold NEEDLE in clear (its first 16 MiB)? */
bool qfix_file_has(const char *needle);

/* strdup that fails the test when out of memory. */
char *qfix_strdup(const char *s);

/* A queue op's completion that expects success and frees the op. */
void qfix_done(struct queue_op *op, int status, void *arg);

/* LEN bytes (malloc'd, one more allocated) of SEED, no two chunks alike,
 * so that order shows. */
uint8_t *qfix_body(unsigned seed, size_t len);

/* A QOP_INSERT of ID from s@example.test to r@example.test, no body. */
struct queue_op *qfix_insert_op(uint64_t id);

#endif
