/*
 * record_fuzz.c — libFuzzer harness for the envelope decoder
 * (queue/record.c).  Any input must decode or fail cleanly; one that decodes
 * must survive encode → decode unchanged (the decoder accepts nothing the
 * encoder cannot write back).  Seeds: t/fuzz/corpus/record, written by
 * `queue_record_test --corpus DIR`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/record_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
str_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int
env_same(const struct queue_envelope *a, const struct queue_envelope *b)
{
	uint32_t i;

	if (a->id != b->id || a->created_ms != b->created_ms ||
	    a->next_attempt_ms != b->next_attempt_ms || a->flags != b->flags ||
	    a->size != b->size || a->nchunks != b->nchunks ||
	    a->nrcpts != b->nrcpts || !str_same(a->sender, b->sender) ||
	    !str_same(a->user, b->user) || !str_same(a->client, b->client) ||
	    !str_same(a->helo, b->helo))
		return 0;
	for (i = 0; i < a->nrcpts; i++)
		if (!str_same(a->rcpts[i].addr, b->rcpts[i].addr) ||
		    a->rcpts[i].state != b->rcpts[i].state ||
		    a->rcpts[i].attempts != b->rcpts[i].attempts ||
		    a->rcpts[i].last_code != b->rcpts[i].last_code ||
		    !str_same(a->rcpts[i].last_reply, b->rcpts[i].last_reply))
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_envelope env, again;
	uint8_t *p;
	size_t n;
	char err[160];

	if (record_envelope_decode(data, size, &env, err, sizeof(err)) != 0)
		return 0;
	if (record_envelope_encode(&env, &p, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "decoded but cannot encode: %s\n", err);
		abort();
	}
	if (record_envelope_decode(p, n, &again, err, sizeof(err)) != 0) {
		fprintf(stderr, "re-encoded record does not decode: %s\n", err);
		abort();
	}
	if (!env_same(&env, &again)) {
		fprintf(stderr, "round trip changed the envelope\n");
		abort();
	}
	queue_envelope_clear(&again);
	queue_envelope_clear(&env);
	free(p);
	return 0;
}
