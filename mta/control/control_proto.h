/*
 * control_proto.h — the control socket's protocol, shared by outpostd's
 * control room (control.c) and the `outpost` CLI (mta/cli/), which may
 * include nothing else of mta/control/.  Only constants and the grammar:
 * no code, no structs.
 *
 * Protocol: one command per connection.  The client writes ONE line: at most
 * CONTROL_LINE_MAX bytes including the LF that ends it, printable ASCII
 * words separated by single spaces (no CR, no tab, no leading, trailing or
 * double space), and nothing after the LF.  The server answers with zero or
 * more data lines, then one final line, and closes:
 *     ok              done (ping, check)
 *     ok COUNT        done; COUNT = messages (or destinations) changed, or
 *                     data lines sent (suspensions)
 *     err TEXT        refused or failed; TEXT is for people
 * A client that has not sent its line within CONTROL_TIMEOUT_MS is dropped.
 *
 *   command                           right   answer
 *   ping                              read    ok
 *   suspensions                       read    "suspended DOMAIN UNTIL_MS
 *                                             REASON" lines, then ok N
 *   status [json]                     read    the `outpost status` table
 *                                             (version, uptime, config and
 *                                             its load time, drain state,
 *                                             one line per listener, queue
 *                                             totals, rates), ok LINES; json:
 *                                             one object, ok 1.  Answered
 *                                             on the delivery loop from the
 *                                             daemon's own counters; queue
 *                                             counts messages (recipients
 *                                             are not counted in memory:
 *                                             null); rates per second over
 *                                             the last minute (less just
 *                                             after start), plus totals
 *                                             since start; drain "running",
 *                                             "intake stopped" or "draining"
 *   summary [json]                    read    the `queue summary` table (or
 *                                             JSON Lines), then ok ROWS
 *   list [json] [held] [deferred] [domain DOMAIN]
 *                                     read    the `queue list` rows, ok N
 *   show HEX16 [json] [headers]       read    the `queue show` text, ok 1;
 *                                     +export with headers (recorded first)
 *   (views run on a thread of their own and stream; a corrupt record is
 *   listed as corrupt with its id; at most CONTROL_VIEWS_MAX at once)
 *   hold SEL | release SEL | retry SEL  write ok COUNT
 *   delete SEL | bounce SEL           delete  ok COUNT
 *   suspend DOMAIN SECONDS [REASON…]  write   ok 1 (SECONDS 1..31536000;
 *                                             REASON: the rest of the line)
 *   resume DOMAIN                     write   ok 1
 *   auth-blocks                       read    "block SCOPE NETWORK UNTIL_MS
 *                                             WHO" lines (SCOPE address or
 *                                             user; WHO "-", name:HEX of a
 *                                             configured user's name, or
 *                                             hash:HEX of another), ok N
 *   auth-unblock address ADDR[/LEN] | user NAME | user-hex HEX | all
 *                                     write   ok COUNT (blocks lifted;
 *                                             NAME: the rest of the line)
 *   purge user NAME | user-hex HEX    delete  a cancelled account's data
 *                                             removed now: the messages
 *                                             NAME submitted (no bounce;
 *                                             each an "admin" event with
 *                                             reason "purged" in the
 *                                             delivery log) and its
 *                                             per-user history (AUTH
 *                                             entries, metrics series, the
 *                                             history stores); one line
 *                                             "purged MESSAGES RECORDS",
 *                                             then ok MESSAGES.  NAME: the
 *                                             rest of the line; HEX: a name
 *                                             of any bytes but NUL.  Audited
 *                                             as "purge user hash:HASH"
 *   drain [intake-only]               write   ok; new SMTP connections
 *                                             get "421 4.3.2" and are closed.
 *                                             Without intake-only the daemon
 *                                             then stops as on SIGTERM
 *                                             (transactions, then deliveries
 *                                             in flight, end within
 *                                             shutdown_timeout each; exit 0)
 *                                             once this answer is written;
 *                                             with it, delivery goes on.
 *                                             err already draining
 *   resume-intake                     write   ok: connections taken again
 *                                             (err while draining)
 *   reload                            write   the configuration read again
 *                                             (as SIGHUP): "generation N in
 *                                             MS ms: users …" and "warning:
 *                                             KEY changed: takes effect at
 *                                             restart" lines, ok LINES; err
 *                                             FILE:LINE: MESSAGE when it is
 *                                             invalid (the old one stays)
 *   export XSEL [remove]              export  (and delete with remove)
 *   import                            import
 *                                             the server answers the data
 *                                             line CONTROL_XFER_PROMPT; the
 *                                             client then sends, in one
 *                                             sendmsg, CONTROL_XFER_BYTES
 *                                             bytes with the archive's
 *                                             descriptor (SCM_RIGHTS; a
 *                                             file the client opened:
 *                                             export a new empty one open
 *                                             for writing, import one open
 *                                             for reading):
 *                                               kdf(1) opslimit(4)
 *                                               memlimit(8) salt(16)
 *                                               key(32)
 *                                             (integers big-endian; the
 *                                             header fields of
 *                                             queue/archive.h, which the
 *                                             daemon writes (export) or
 *                                             reads from the file (import:
 *                                             only the key is used); the
 *                                             key is the archive key the
 *                                             client made from a key file
 *                                             or passphrase, never logged).
 *                                             Then "archive HEX32",
 *                                             "exported N" / "imported N",
 *                                             "skipped M" (export: in a
 *                                             delivery attempt, damaged or
 *                                             gone; import: id queued
 *                                             already), export remove:
 *                                             "removed N" (after the
 *                                             archive's fsync), then ok N.
 *                                             An export that fails removes
 *                                             nothing: its file may be
 *                                             deleted.  An import refused
 *                                             (wrong key, truncated,
 *                                             altered, imported already)
 *                                             adds nothing.  One export or
 *                                             import at a time.
 *   restore-point                     write   a restore point now (restore
 *                                             thread; answered once it is
 *                                             on disk): "point NAME size
 *                                             BYTES messages N recipients M
 *                                             duration_ms MS verified
 *                                             yes|no", ok 1; err why
 *   SEL = id HEX16 | domain DOMAIN | user USER | all
 *   XSEL = id HEX16 [HEX16…] (at most 256) | domain DOMAIN | user USER | all
 *
 * DOMAIN is a host name (letters, digits, '-', '.', '_'; any case; compared
 * lower-case); USER the authenticated submission user; HEX16 a queue id.
 * COUNT counts the messages the change applies to, including those in the
 * middle of a delivery attempt, which take it when the attempt settles
 * (delivery.h, sched_admin).  A caller without the right gets
 *     err permission denied: "delete" right needed (uid 1001)
 *
 */
#ifndef OUTPOST_MTA_CONTROL_PROTO_H
#define OUTPOST_MTA_CONTROL_PROTO_H

#define CONTROL_LINE_MAX    4096  /* bytes of a command, LF included */
#define CONTROL_TIMEOUT_MS  10000 /* to send the command; to take the answer */
#define CONTROL_XFER_PROMPT "key" /* export, import: send the handoff */
#define CONTROL_XFER_BYTES  61    /* the handoff's bytes */

#endif
