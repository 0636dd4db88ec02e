/*
 * control_scan.c — the malware scan's commands (scan-status: read;
 * scan-flush: write, audited) and the audit record of a detection: one
 * per user a minute (the scanner limits them), recorded as the daemon's
 * own.
 * Owns: nothing past a session.  Must not: write a user in clear in the
 * audit log (recorded as "user hash:", as every user).
 * Threads: the delivery loop; control_scan_on_detect hands over to it
 * from the I/O loop that refused the message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conf/conf.h"
#include "mta/control/control_int.h"
#include "mta/core/log.h"
#include "mta/core/loop.h"
#include "mta/observe/evlog.h"
#include "mta/receive/scan.h"

/* A detection to record: the signature, and the user ("" for relay
 * clients). */
struct control_scan_note {
	char name[SCAN_NAME_MAX];
	char user[];
};

/* Delivery loop: the audit record of a detection (ARG: what). */
static void
control_scan_audit(void *arg)
{
	struct control_scan_note *n = arg;
	char hex[QUEUE_HASH_HEX_BYTES], cmd[200];

	if (n->user[0] != '\0') {
		evlog_hash(n->user, hex);
		snprintf(cmd, sizeof(cmd),
			 "scan: malware refused from user hash:%s", hex);
	} else
		snprintf(cmd, sizeof(cmd),
			 "scan: malware refused from a relay client");
	if (!control_server.stopped)
		control_audit_coalesced(getuid(), cmd,
					"554 malware found (%s); more this "
					"minute are counted, not recorded",
					n->name);
	free(n);
}

/* The scanner's audit hook: any thread; hands the record to the loop. */
static void
control_scan_on_detect(const char *user, const char *name, void *arg)
{
	struct control_scan_note *n;
	size_t len = user != NULL ? strlen(user) : 0;

	(void)arg;
	if (control_server.loop == NULL ||
	    (n = calloc(1, sizeof(*n) + len + 1)) == NULL) {
		log_warnx("scan: a detection not recorded in the audit log");
		return;
	}
	snprintf(n->name, sizeof(n->name), "%s", name);
	memcpy(n->user, user != NULL ? user : "", len + 1);
	loop_post(control_server.loop, control_scan_audit, n);
}

void
control_scan_start(void)
{
	scan_audit_hook(control_scan_on_detect, NULL);
}

/* [json] */
int
control_scan_parse_status(struct control_session *s, char *args)
{
	char *w;

	while ((w = control_word(&args)) != NULL) {
		if (strcmp(w, "json") != 0) {
			control_result(s, false,
				       "err usage: scan-status [json]");
			return -1;
		}
		s->json = true;
	}
	return 0;
}

void
control_scan_run_status(struct control_session *s)
{
	size_t len;
	char *text = scan_status(control_server.conf, s->json, &len);

	if (text == NULL)
		control_result(s, false, "err out of memory");
	else {
		if (s->bev != NULL)
			evbuffer_add(bufferevent_get_output(s->bev), text, len);
		control_result(s, true, "ok");
	}
	free(text);
	control_finish(s);
}

void
control_scan_run_flush(struct control_session *s)
{
	uint64_t n = scan_flush();

	s->count = n > INT32_MAX ? INT32_MAX : (int)n;
	control_result(s, true, "ok %d", s->count);
	control_finish(s);
}
