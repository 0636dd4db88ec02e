#!/usr/bin/env python3
"""Restore points, the daemon's side: a point every restore.interval with a
manifest whose counts are the queue's; points taken while a load is being
accepted (every message accepted); `outpost restore now`; the tiers of
retention under the test clock (points made "100 days ago", "10 days ago"
and "2 hours ago", then the daemon at the right time); copy_to gets copies;
a failing command is logged and counted and the next point still comes;
no file of restore.dir holds the queue key or an address in clear.

No DNS server: every delivery defers at once and the messages wait, so
the queue holds what was sent."""
import glob
import json
import os
import re
import time
import urllib.request

from outpost_test import (Daemon, TestFailure, check, eq, promtool_check,
                          run_tests, wait_for)

RCPT_MARK = "rp-secret-4c1e"


def points(d, where=None):
    """The manifests of the restore directory (or WHERE), oldest first."""
    out = []
    for p in sorted(glob.glob(os.path.join(where or restore_dir(d),
                                           "point-*.json"))):
        with open(p) as f:
            out.append(json.load(f))
    return sorted(out, key=lambda m: m["time_ms"])


def restore_dir(d):
    return os.path.join(d.data, "restore")


def send(d, n, rcpts=2):
    """N messages of RCPTS recipients each; their ids."""
    with d.smtp() as s:
        for i in range(n):
            to = ["r%d.%d.%s@dest%d.example" % (i, j, RCPT_MARK, j)
                  for j in range(rcpts)]
            s.sendmail("news@sender.test", to,
                       "From: news@sender.test\r\nSubject: %d\r\n\r\n"
                       "body %d\r\n" % (i, i))


def metrics(d):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics"
                                % d.metrics_port, timeout=10) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def test_interval_points_match_queue(t=None):
    """interval = 1s: points come with manifests whose counts are the
    queue's; each is logged; nothing secret is in the directory."""
    with Daemon('restore { interval = 1s }\n') as d:
        send(d, 5, rcpts=2)
        eq(len(d.queue_ids()), 5, "queued")

        def matching():
            return [m for m in points(d)
                    if m["messages"] == 5 and m["recipients"] == 10]
        m = wait_for(matching, 20, "a point of 5 messages, 10 recipients")[0]
        eq(m["version"], 1, "version")
        eq(m["verified"], True, "verified")
        eq(m["file"], "point-%s.mdb" % m["name"], "file")
        check(re.fullmatch(r"\d{8}T\d{6}Z", m["name"]), m["name"])
        check(re.fullmatch(r"blake2b-256:[0-9a-f]{64}", m["checksum"]),
              m["checksum"])
        check(re.fullmatch(r"[0-9a-f]{8}", m["key_id"]), m["key_id"])
        path = os.path.join(restore_dir(d), m["file"])
        eq(os.path.getsize(path), m["size"], "size")
        eq(os.stat(path).st_mode & 0o777, 0o600, "mode")
        wait_for(lambda: len(points(d)) >= 3, 20, "three points")
        check(re.search(r"restore point %s: 5 messages, 10 recipients, "
                        r"\d+ bytes in \d+ ms" % m["name"], d.log()),
              "the point's log line")
        st = d.cli("status").stdout
        check(re.search(r"restore point\s+\d{8}T\d{6}Z .*5 messages",
                        st), st)
        text = metrics(d)
        promtool_check(text)
        check(metric(text, 'outpost_restore_points_total{result="taken"}')
              >= 3, "taken counted")
        check(metric(text, "outpost_restore_point_last_bytes") > 0,
              "bytes")
        check(metric(text, "outpost_restore_point_last_age_seconds")
              is not None, "age")
        d.stop()
        with open(os.path.join(d.data, "keys", "queue.key")) as f:
            key_hex = f.read().strip()
        check(len(key_hex) == 64, "the queue key file")
        for p in glob.glob(os.path.join(restore_dir(d), "*")):
            with open(p, "rb") as f:
                data = f.read()
            check(key_hex.encode() not in data, "%s holds the key" % p)
            check(bytes.fromhex(key_hex) not in data,
                  "%s holds the raw key" % p)
            check(RCPT_MARK.encode() not in data,
                  "%s holds an address" % p)
        check(RCPT_MARK not in d.log(), "an address in the log")


def test_points_during_load(t=None):
    """Points every second while a load is being accepted: every message
    accepted, none refused, and points were taken meanwhile."""
    n = int(os.environ.get("OUTPOST_RP_LOAD_N", "15000"))
    with Daemon('restore { interval = 1s }\n') as d:
        t0 = time.time()
        rc, rep = d.load("--count", n, "--sessions", 8, "--size", 2048,
                         "--rcpts", 2, "--pipelining", "--progress=never")
        took = time.time() - t0
        eq(rc, 0, "load: %s" % rep)
        eq(rep["accepted"], n, "accepted")
        eq(sum(rep["rejected"].values()), 0, "rejected: %s" % rep)
        # A point with some of the messages, not all: taken mid-load.  It
        # holds what the queue held when it began, and may end after the
        # load (it paces itself while the queue commits): wait for it.
        try:
            wait_for(lambda: [m for m in points(d)
                              if 0 < m["messages"] < n], 30,
                     "a point begun during the load")
        except TestFailure:
            raise TestFailure("no point during the load (%.1f s): %s"
                              % (took, [m["messages"] for m in points(d)]))
        m = wait_for(lambda: [p for p in points(d)
                              if p["messages"] == n], 30,
                     "a point of the whole queue")[0]
        eq(m["recipients"], 2 * n, "recipients")
        print("# %d messages in %.1f s with a point every second; the "
              "last point %d bytes in %d ms"
              % (n, took, m["size"], m["duration_ms"]))


def test_restore_now(t=None):
    """`outpost restore now` answers once the point is on disk."""
    with Daemon('restore { interval = 0 }\n') as d:
        send(d, 3, rcpts=1)
        r = d.cli("restore", "now")
        m = re.fullmatch(r"restore point (\d{8}T\d{6}Z): 3 messages, 3 "
                         r"recipients, (\d+) bytes in \d+ ms\n", r.stdout)
        check(m, r.stdout)
        ps = points(d)
        eq([p["name"] for p in ps], [m.group(1)], "points")
        eq(ps[0]["size"], int(m.group(2)), "size")
        check(os.path.exists(os.path.join(restore_dir(d),
                                          "point-%s.mdb" % m.group(1))),
              "the point file")
        # A second at once: another name (the next second).
        r2 = d.cli("restore", "now")
        check(m.group(1) not in r2.stdout, r2.stdout)
        eq(len(points(d)), 2, "two points")


def run_at(d, offset, n_points):
    """Start D with the test clock at OFFSET seconds, take N_POINTS points
    with `restore now`, stop; the names taken."""
    os.environ["OUTPOST_TEST_CLOCK_OFFSET"] = str(offset)
    try:
        d.start()
        names = []
        for _ in range(n_points):
            r = d.cli("restore", "now")
            names.append(r.stdout.split()[2].rstrip(":"))
        d.stop()
    finally:
        del os.environ["OUTPOST_TEST_CLOCK_OFFSET"]
    return names


def test_tiers_with_clock(t=None):
    """Points of 100 days ago go (lifetime 90d), of 10 days ago go (past
    keep_daily), of 2 hours ago the first of the hour stays and the
    second goes; a new one stays."""
    cfg = ('restore { interval = 0\n keep_all = 1h\n keep_hourly = 1d\n'
           ' keep_daily = 7d }\nretention { restore_points = 90d }\n')
    with Daemon(cfg) as d:
        d.stop()
        old = run_at(d, -9000000, 2)
        ten = run_at(d, -864000, 2)
        two = run_at(d, -7200, 2)
        # Each run removed what it found past its own time: at -10 days
        # the points of 100 days ago were past their lifetime already.
        have = [p["name"] for p in points(d)]
        check(not set(old) & set(have), "100-day points left: %s" % have)
        d.start()
        now = d.cli("restore", "now").stdout.split()[2].rstrip(":")
        have = [p["name"] for p in points(d)]
        eq(have, [two[0], now], "points kept")
        log = d.log()
        check(re.search(r"restore point %s removed: older than "
                        r"retention.restore_points" % old[0], log),
              "lifetime removal logged")
        check(re.search(r"restore point %s removed: older than keep_daily"
                        % ten[0], log), "keep_daily removal logged")
        check(re.search(r"restore point %s removed: not the first of its "
                        r"hour" % two[1], log), "thinning logged")
        left = sorted(os.listdir(restore_dir(d)))
        eq(left, sorted(["point-%s.%s" % (n, e) for n in (two[0], now)
                         for e in ("mdb", "json")]), "files left")


def test_copy_to_and_failing_command(t=None):
    """copy_to receives each point whole; a command that fails is logged
    and counted, and the next point still comes; a slow one is killed."""
    d = Daemon()
    # Under data_dir: the daemon's user may write there after start-up.
    off = os.path.join(d.data, "offsite")
    script = os.path.join(d.tmp, "ship.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho \"shipping $1\" >&2\n"
                "test -s \"$1\" || exit 9\nexit 4\n")
    os.chmod(script, 0o755)
    with open(d.conf_path, "a") as f:
        f.write('restore { interval = 1s\n copy_to = "%s"\n'
                ' command = { "%s" }\n command_timeout = 5s }\n'
                % (off, script))
    with d:
        send(d, 2, rcpts=1)
        wait_for(lambda: len(points(d)) >= 3, 30, "three points")
        wait_for(lambda: "command exited with status 4" in d.log(), 20,
                 "the command's failure logged")
        ps = points(d, off)
        check(len(ps) >= 2, "copies: %s" % ps)
        for p in ps:
            mdb = os.path.join(off, p["file"])
            eq(os.path.getsize(mdb), p["size"], "copy size")
            src = os.path.join(restore_dir(d), p["file"])
            if os.path.exists(src):
                with open(mdb, "rb") as a, open(src, "rb") as b:
                    eq(a.read() == b.read(), True, "copy bytes")
        text = metrics(d)
        check(metric(text,
                     'outpost_restore_commands_total{result="failed"}')
              >= 1, "failed command counted")
        check("shipping %s" % restore_dir(d) in d.log(),
              "the command's output in the diagnostics")
        # Not while it runs: with a point a second, the next copy may be
        # half-way (its .tmp) at any moment.  After the stop, none.
        d.stop()
        check(os.listdir(off), "the copies are there")
        check(not glob.glob(os.path.join(off, "*.tmp")),
              "a copy's .tmp left after the stop: %s" % os.listdir(off))


if __name__ == "__main__":
    run_tests(globals())
