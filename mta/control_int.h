/*
 * control_int.h — between control.c (the socket, rights, audit) and
 * control_view.c (what `outpost queue summary|list|show` print, computed
 * in the daemon, which holds the queue and log-hash keys, so the CLI needs
 * neither the keys nor access to the queue files).
 */
#ifndef OUTPOST_MTA_CONTROL_INT_H
#define OUTPOST_MTA_CONTROL_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct queue;
struct conf;

#define CONTROL_VIEW_RESULT_MAX 320

enum control_view_kind { CVK_SUMMARY, CVK_LIST, CVK_SHOW };

/* One view: filled on the delivery loop, run on a thread of its own. */
struct control_view {
	enum control_view_kind kind;
	bool json;
	bool held, deferred; /* list: only held / only deferred messages */
	bool headers;        /* show: the header block (export right) */
	char domain[256];    /* list: only this recipient domain ("": any) */
	uint64_t id;         /* show */
	char *suspensions;   /* summary: sched_suspensions()'s lines (owned) */
	atomic_bool cancel;  /* set by the loop (shutdown): stop soon */
	char result[CONTROL_VIEW_RESULT_MAX]; /* final line: "ok N" | "err …" */
};

/*
 * control_view_run — walk the queue (read transactions only) and write the
 * view's data lines to FD (a connected, non-blocking stream socket: each
 * write waits at most CONTROL_TIMEOUT_MS for room, so a client that stops
 * reading ends the view, and a large listing streams without being held in
 * memory).  The final line is left in V->result, for the loop to send.
 * Returns 0, or -1 when FD failed (client gone: no final line to send).
 * A view thread (never an I/O loop: a big queue takes seconds to walk).
 */
int control_view_run(struct queue *q, const struct conf *conf, int fd,
		     struct control_view *v);

#endif
