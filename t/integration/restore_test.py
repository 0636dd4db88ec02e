#!/usr/bin/python3
"""`outpost restore`: a restore point taken while mail waits, some of it
delivered after the point, the queue destroyed (data.mdb truncated), the
point restored with the daemon stopped (its delivery log rotated and
compressed meanwhile).  Every message accepted before
the point and not delivered after it arrives exactly once; those the
delivery log shows delivered after the point are not sent again (log
replay), and are with --no-log-replay.  A corrupted point fails `restore
verify` and is refused; a restore is refused while outpostd runs; the
queue it replaces is kept aside.  The receiver is an outpost-sink on
loopback, reached by routes."""

import gzip
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (ControlDaemon, Sink, check, delivery_config,  # noqa
                          ensure_daemon_user, eq, run_tests, wait_for)

PRE_A = ["a%d@a.test" % i for i in range(1, 4)]  # waits: a.test suspended
PRE_B = ["b%d@b.test" % i for i in range(1, 4)]  # delivered after the point
MIXED = ["m1@a.test", "m2@b.test"]  # one message: half after the point
POST = ["a9@a.test", "b9@b.test"]  # accepted after the point


def route(domain, port):
    return 'route "%s" {\n  host = "127.0.0.1:%d"\n}\n' % (domain, port)


def daemon(sink):
    conf = (delivery_config(port=sink.port) + route("a.test", sink.port)
            + route("b.test", sink.port) + "restore {\n  interval = 0\n}\n")
    return ControlDaemon(conf, prefix="outpost-restore-")


def send(d, rcpts):
    s = d.smtp()
    s.sendmail("news@sender.test", rcpts,
               "From: <news@sender.test>\r\nSubject: r\r\n\r\nbody\r\n")
    s.quit()


def per_rcpt(sink):
    """How many times the sink took each recipient (X-Sink-Envelope)."""
    counts = {}
    for m in sink.messages():
        head = m.split(b"\r\n", 1)[0].decode()
        to = re.search(r" to=(\S*)", head).group(1)
        for r in to.split(","):
            r = r.strip("<>")
            counts[r] = counts.get(r, 0) + 1
    return counts


def cli(d, *args, rc=0):
    r = d.cli(*args, check_rc=False)
    if rc is not None and r.returncode != rc:
        raise AssertionError("outpost %s: exit %d, want %d\n%s%s"
                             % (" ".join(args), r.returncode, rc,
                                r.stdout, r.stderr))
    return r


def point_now(d):
    r = cli(d, "restore", "now")
    names = re.findall(r"\b(\d{8}T\d{6}Z)\b", r.stdout)
    check(names, "restore now named no point: %r" % r.stdout)
    return names[0]


def queue_path(d):
    return os.path.join(d.data, "queue")


def point_file(d, name):
    return os.path.join(d.data, "restore", "point-%s.mdb" % name)


def resume_all(d):
    cli(d, "resume", "a.test")
    cli(d, "resume", "b.test")


def test_restore():
    with Sink() as sink, daemon(sink) as d:
        cli(d, "suspend", "a.test", "--for", "1h")
        cli(d, "suspend", "b.test", "--for", "1h")
        for r in PRE_A + PRE_B:
            send(d, [r])
        send(d, MIXED)
        wait_for(lambda: len(d.queue_ids()) == 7, what="7 queued")
        point = point_now(d)

        # After the point: b.test goes, a.test still waits.
        cli(d, "resume", "b.test")
        sink.wait_messages(4)
        wait_for(lambda: len(d.queue_ids()) == 4, what="4 left")
        send(d, [POST[0]])
        send(d, [POST[1]])
        sink.wait_messages(5)
        bad = point_now(d)  # to be damaged below

        # Never while the daemon runs; nothing changed.
        r = cli(d, "restore", point, rc=1)
        check("stop" in r.stderr and "process %d" % d.proc.pid in r.stderr,
              "the refusal names the daemon: " + r.stderr)
        check(not os.path.exists(queue_path(d) + ".before-restore-"
                                 + point), "nothing moved aside")
        d.stop()
        eq(sorted(per_rcpt(sink)), sorted(PRE_B + [MIXED[1], POST[1]]),
           "delivered before the crash")

        # The delivery log as the daemon rotates it at midnight: the
        # replay reads rotated, compressed files too.
        day = "%s-%s-%s" % (point[0:4], point[4:6], point[6:8])
        with open(d.delivery_log, "rb") as f, \
                gzip.open(d.delivery_log + "-" + day + ".gz", "wb") as g:
            g.write(f.read())
        os.unlink(d.delivery_log)

        # The crash: the queue's file is cut short.
        data_mdb = os.path.join(queue_path(d), "data.mdb")
        with open(data_mdb, "r+b") as f:
            f.truncate(4096)

        # The list: both points, verified when taken.
        r = cli(d, "restore", "list", "--json")
        rows = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        eq([x["name"] for x in rows], [point, bad], "points listed")
        eq(rows[0]["messages"], 7, "messages in the point")
        eq(rows[0]["recipients"], 8, "pending recipients in the point")
        check(all(x["verified"] for x in rows), "verified: %r" % rows)
        r = cli(d, "restore", "list")
        check(point in r.stdout and "yes" in r.stdout, r.stdout)

        # A damaged point: verify fails, restore refuses and changes
        # nothing.
        with open(point_file(d, bad), "r+b") as f:
            f.seek(os.path.getsize(point_file(d, bad)) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x40]))
        r = cli(d, "restore", "verify", bad, rc=1)
        check("does not verify" in r.stderr, r.stderr)
        r = cli(d, "restore", bad, rc=1)
        check("refused" in r.stderr and "nothing changed" in r.stderr,
              r.stderr)
        eq(os.path.getsize(data_mdb), 4096, "queue untouched")
        check(not os.path.exists(queue_path(d) + ".before-restore-" + bad),
              "nothing moved aside for a refused point")

        r = cli(d, "restore", "verify", point)
        check("verified" in r.stdout and "7 messages" in r.stdout, r.stdout)

        # The restore, with the log replay.
        r = cli(d, "restore", point)
        check("4 recipients marked done" in r.stdout
              and "3 messages removed" in r.stdout, r.stdout)
        aside = queue_path(d) + ".before-restore-" + point
        eq(os.path.getsize(os.path.join(aside, "data.mdb")), 4096,
           "the damaged queue kept aside, as it was")
        check(os.path.exists(point_file(d, point)), "the point stays")
        st = os.stat(os.path.join(queue_path(d), "data.mdb"))
        eq(st.st_mode & 0o777, 0o600, "data.mdb mode")
        if os.geteuid() == 0:
            eq(st.st_uid, ensure_daemon_user().pw_uid, "data.mdb owner")
            eq(os.stat(queue_path(d)).st_mode & 0o777, 0o700, "queue dir")
        with open(d.audit_path) as f:
            audit = [json.loads(x) for x in f if x.strip()]
        eq(audit[-1]["command"], "restore " + point, "audited")
        check(audit[-1]["result"].startswith("ok 7 messages"),
              audit[-1]["result"])

        d.start()
        eq(len(d.queue_ids()), 4, "restored: the a.test ones")
        resume_all(d)  # the point kept the suspensions
        sink.wait_messages(9)
        wait_for(lambda: not d.queue_ids(), what="queue empty")
        d.stop()
        got = per_rcpt(sink)
        for r in PRE_A + [MIXED[0]]:
            eq(got.get(r), 1, r + " delivered once")
        for r in PRE_B + [MIXED[1], POST[1]]:
            eq(got.get(r), 1, r + " not sent again")
        eq(got.get(POST[0]), None, "accepted after the point: not in it")

        # Again without the replay: what the log settled goes again.
        cli(d, "restore", point, "--no-log-replay")
        check(os.path.isdir(aside + ".1"), "a second aside, the first kept")
        d.start()
        eq(len(d.queue_ids()), 7, "all of the point")
        resume_all(d)
        wait_for(lambda: not d.queue_ids(), what="queue empty")
        got = per_rcpt(sink)
        for r in PRE_B + [MIXED[1]]:
            eq(got.get(r), 2, r + " sent again without the replay")


if __name__ == "__main__":
    run_tests(globals())
