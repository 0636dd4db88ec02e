#!/usr/bin/python3
"""Retention of the logs, through the real outpostd and `outpost` on the
test clock (OUTPOST_TEST_CLOCK_OFFSET): the daemon rotates its delivery log
and its audit log itself, at UTC midnight and at start-up for a file of an
earlier day, into FILE-YYYY-MM-DD.gz; it removes rotated files past
retention.delivery_log / audit_log (at start, and at once after a reload
shortens them), each removal logged; `outpost log` reads the compressed
files; a midnight passed while the daemon runs loses no line.
Loopback only."""

import datetime
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, ControlDaemon, Dns, Raw,  # noqa: E402
                          Sink, check, delivery_config, eq, free_port_on,
                          rewrite_config, run_tests, wait_for)

DAY = 86400
SENDER = "news@sender.test"


def clock(offset):
    """Run what follows (the daemon, the CLI) OFFSET seconds off."""
    os.environ["OUTPOST_TEST_CLOCK_OFFSET"] = str(int(offset))


def day_name(offset):
    """The UTC day OFFSET seconds from now, as the rotated files name it."""
    t = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=offset)
    return t.strftime("%Y-%m-%d")


def send(d, n=1, tag="m"):
    """N messages (one recipient each) over one session; their queue ids."""
    r = Raw(d.port)
    r.reply()
    r.cmd("EHLO client.test")
    ids = []
    for i in range(n):
        eq(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 250, "MAIL")
        eq(r.cmd("RCPT TO:<%s%d@dest.test>" % (tag, i))[0], 250, "RCPT")
        eq(r.cmd("DATA")[0], 354, "DATA")
        r.send("From: <%s>\r\nSubject: %s %d\r\n\r\nbody\r\n.\r\n"
               % (SENDER, tag, i))
        code, text = r.reply()
        eq(code, 250, "queued: %s" % text)
        ids.append(text.split()[2])
    r.cmd("QUIT")
    r.close()
    return ids


def receptions(text):
    """The queue ids of the reception lines of TEXT (JSON Lines)."""
    out = []
    for line in text.splitlines():
        ev = json.loads(line)
        if ev.get("event") == "reception":
            out.append(ev["id"])
    return out


def gz_text(path):
    with gzip.open(path, "rt") as f:
        return f.read()


def plain_text(path):
    with open(path) as f:
        return f.read()


def setup():
    hosts = ["127.0.0.71"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.71")])
    return dns, Sink(hosts, port), port


def config(dns, port, delivery_days):
    return delivery_config(dns, port, "retention { delivery_log = %dd }\n"
                           % delivery_days)


def run(d, offset, what):
    """Start D at OFFSET, send one message and make one audit record;
    both queue ids (delivered) and the suspended domain."""
    clock(offset)
    d.start()
    try:
        qid = send(d, 1, what)[0]
        dom = "%s.example" % what
        d.cli("suspend", dom, "--for", "1h")
        wait_for(lambda: qid in receptions(plain_text(d.delivery_log)),
                 what="reception of %s written" % qid)
        wait_for(lambda: dom in plain_text(d.audit_path),
                 what="audit of %s written" % dom)
    except BaseException:
        d.stop()
        raise
    return qid, dom


def test_rotated_named_compressed_removed_and_read():
    dns, sink, port = setup()
    with dns, sink:
        d = ControlDaemon(config=config(dns, port, 200))
        logdir = os.path.dirname(d.delivery_log)
        try:
            q100, a100 = run(d, -100 * DAY, "old")
            d.stop()
            d100 = day_name(-100 * DAY)
            q1, a1 = run(d, -1 * DAY, "yesterday")
            d.stop()
            d1 = day_name(-1 * DAY)
            # At -1 day: the -100 day audit file was past 90 days (the
            # default) at start, the delivery one not (200 days).  Renamed
            # at start and removed by the keeper before it was compressed
            # (or compressed first, as it was before the rename moved out
            # of the keeper thread).
            check(re.search(r"audit log: removed .*audit\.log-%s(\.gz)?\b" % d100,
                            d.log()), "removal of the old audit file "
                  "logged:\n" + d.log()[-3000:])
            q0, a0 = run(d, 0, "today")
            names = sorted(os.listdir(logdir))
            # Both earlier days' delivery files, compressed (200 days).
            for name in ("delivery.log-%s.gz" % d100,
                         "delivery.log-%s.gz" % d1,
                         "audit.log-%s.gz" % d1, "delivery.log",
                         "audit.log"):
                wait_for(lambda: os.path.exists(os.path.join(logdir, name)),
                         what="%s in %s" % (name, names))
            names = sorted(os.listdir(logdir))
            for name in names:
                check(not re.search(r"-\d\d\d\d-\d\d-\d\d$", name),
                      "no rotated file left plain: %s" % names)
                check(not name.endswith(".tmp"), "no .tmp: %s" % names)
            check("audit.log-%s.gz" % d100 not in names,
                  "old audit file removed: %s" % names)
            # Each day's lines in its own file, today's in FILE.
            eq(receptions(gz_text(os.path.join(
                logdir, "delivery.log-%s.gz" % d100))), [q100], "day -100")
            eq(receptions(gz_text(os.path.join(
                logdir, "delivery.log-%s.gz" % d1))), [q1], "day -1")
            eq(receptions(plain_text(d.delivery_log)), [q0], "today")
            check(a1 in gz_text(os.path.join(logdir, "audit.log-%s.gz"
                                             % d1)), "audit of day -1")
            check(a0 in plain_text(d.audit_path) and
                  a1 not in plain_text(d.audit_path), "audit of today")
            # The group and mode of the delivery log carry over.
            eq(os.stat(os.path.join(logdir, "delivery.log-%s.gz" % d1))
               .st_mode & 0o777, os.stat(d.delivery_log).st_mode & 0o777,
               "mode of the rotated file")

            # `outpost log` finds a line only in the compressed file and
            # one only in FILE; --since from that day on.
            out = d.cli("log", "--event", "reception").stdout
            eq(receptions(out), [q100, q1, q0], "outpost log: all days")
            out = d.cli("log", "--id", q1).stdout
            eq(receptions(out), [q1], "outpost log --id (in the .gz)")
            out = d.cli("log", "--id", q0).stdout
            eq(receptions(out), [q0], "outpost log --id (in FILE)")
            out = d.cli("log", "--since", "2d", "--event",
                        "reception").stdout
            eq(receptions(out), [q1, q0], "outpost log --since 2d")
            out = d.cli("log", d.audit_path).stdout
            check(a1 in out and a0 in out and a100 not in out,
                  "outpost log AUDIT: %s" % out)

            # A reload takes the new lifetime at once: 90 days removes
            # the -100 day delivery file, logged; -1 day stays.
            rewrite_config(d, "delivery_log = 200d", "delivery_log = 90d")
            d.cli("reload")
            gone = os.path.join(logdir, "delivery.log-%s.gz" % d100)
            wait_for(lambda: not os.path.exists(gone),
                     what="%s removed after the reload" % gone)
            # The line follows the unlink: wait for it too.
            wait_for(lambda: re.search(
                r"delivery log: removed .*delivery\.log-%s\.gz" % d100,
                d.log()), what="removal logged")
            check(os.path.exists(os.path.join(
                logdir, "delivery.log-%s.gz" % d1)), "day -1 kept")
            out = d.cli("log", "--event", "reception").stdout
            eq(receptions(out), [q1, q0], "outpost log after removal")
            d.stop()
            shutil.rmtree(d.tmp, ignore_errors=True)
        finally:
            clock(0)
            if d.proc is not None:
                d.stop()


def test_midnight_while_running_loses_no_line():
    """Start a few seconds before a UTC midnight of the test clock, send
    all along while it passes: every line in the day's .gz or in FILE, once,
    each on the side of midnight its time says (give or take the moment
    between midnight and the rename); `outpost log -f` sees them all."""
    dns, sink, port = setup()
    now = time.time()
    midnight = (int(now) // DAY + 1) * DAY
    offset = midnight - 8 - int(now)   # the daemon's clock: 23:59:52
    with dns, sink:
        d = ControlDaemon(config=config(dns, port, 90))
        logdir = os.path.dirname(d.delivery_log)
        clock(offset)
        follow = None
        try:
            d.start()
            fpath = os.path.join(d.tmp, "follow.out")
            follow = subprocess.Popen(
                [OUTPOST, "-c", d.conf_path, "log", "-f", "--event",
                 "reception"], stdout=open(fpath, "w"))
            ids = []
            gz = None
            deadline = time.time() + 40
            while time.time() < deadline:
                ids += send(d, 3, "n%d-" % len(ids))
                names = os.listdir(logdir)
                gz = [n for n in names if n.startswith("delivery.log-")
                      and n.endswith(".gz")]
                if gz and time.time() + offset > midnight + 2:
                    break
                time.sleep(0.2)
            check(gz, "rotated at midnight: %s" % os.listdir(logdir))
            ids += send(d, 3, "after")
            day = datetime.datetime.fromtimestamp(
                midnight - DAY, datetime.timezone.utc).strftime("%Y-%m-%d")
            eq(gz, ["delivery.log-%s.gz" % day], "the day's name")
            wait_for(lambda: ids[-1] in receptions(
                plain_text(d.delivery_log)), what="last line written")
            before = gz_text(os.path.join(logdir, gz[0]))
            after = plain_text(d.delivery_log)
            got = receptions(before) + receptions(after)
            eq(sorted(got), sorted(ids), "every reception once")
            check(receptions(before) and receptions(after),
                  "lines on both sides: %d %d"
                  % (len(receptions(before)), len(receptions(after))))
            for line in before.splitlines():
                t = json.loads(line)["time"]
                check(t[:10] == day or t[11:19] == "00:00:00",
                      "a line of the day before: %s" % t)
            for line in after.splitlines():
                check(json.loads(line)["time"][:10] > day,
                      "a line of the new day: %s" % line)
            out = d.cli("log", "--event", "reception").stdout
            eq(receptions(out), got, "outpost log: oldest first")
            # -f followed the rename: it prints the last line, and none
            # twice.
            wait_for(lambda: ids[-1] in receptions(plain_text(fpath)),
                     what="outpost log -f printing the last line")
            follow.terminate()
            follow.wait(timeout=10)
            follow = None
            fgot = receptions(plain_text(fpath))
            eq(sorted(fgot), sorted(set(fgot)), "-f: each line once")
            check(set(fgot) & set(receptions(before)) and
                  set(fgot) & set(receptions(after)),
                  "-f saw both days")
            check(set(fgot) <= set(ids) and len(fgot) > len(ids) // 2,
                  "outpost log -f across the rotation: %d of %d"
                  % (len(fgot), len(ids)))
            check(re.search(r"delivery log: rotated .*delivery\.log to "
                            r".*delivery\.log-%s" % day, d.log()),
                  "rotation logged")
            d.stop()
            shutil.rmtree(d.tmp, ignore_errors=True)
        finally:
            if follow is not None:
                follow.kill()
                follow.wait()
            clock(0)
            if d.proc is not None:
                d.stop()


if __name__ == "__main__":
    run_tests(globals())
