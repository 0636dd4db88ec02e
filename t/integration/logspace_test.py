#!/usr/bin/python3
"""Logs never take the queue's last free space: outpostd runs with its whole
directory (data_dir, delivery and audit logs, its stderr) on a 20 MB tmpfs
of the test's own; a file fills it to just above log.disk_reserve; then
mail and operator commands make log traffic (reception lines, deferrals
to a closed loopback port every second, the -T smtp trace, audit records).
The logs must stop growing before they reach the reserve, mail must still be
accepted (250) and queued, and /metrics must count the dropped lines.
Needs root to mount a tmpfs; skips with a message when it cannot.
Loopback only."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, check,  # noqa
                          delivery_config, free_port_on, run_tests)

RESERVE = 8 << 20
HEADROOM = 256 << 10  # free space left above the reserve after the fill
LOGS = ("var/log/delivery.log", "var/log/audit.log", "outpostd.log")


def mount_tmpfs():
    mnt = tempfile.mkdtemp(prefix="outpost-logspace-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=0700",
                        "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        return None, (r.stderr or "mount failed").strip()
    return mnt, None


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def sizes(mnt):
    out = {}
    for rel in LOGS:
        try:
            out[rel] = os.path.getsize(os.path.join(mnt, rel))
        except FileNotFoundError:
            out[rel] = 0
    return out


def dropped(d):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    text = urllib.request.urlopen(url, timeout=10 * SLOW).read().decode()
    out = {}
    for m in re.finditer(r'^outpost_log_reserve_dropped_lines_total'
                         r'\{log="(\w+)"\} (\d+)$', text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def submit(d, n, first):
    s = d.smtp()
    for i in range(first, first + n):
        s.sendmail("news@sender.test", ["user%d@dest.test" % i],
                   b"From: <news@sender.test>\r\nSubject: m%d\r\n"
                   b"Message-ID: <m%d@sender.test>\r\n\r\nhello\r\n"
                   % (i, i))
    s.quit()


def test_logs_stop_at_the_reserve():
    mnt, why = mount_tmpfs()
    if mnt is None:
        print("# SKIP: cannot mount a tmpfs (%s); needs root" % why)
        return
    try:
        run_on(mnt)
    finally:
        subprocess.run(["umount", "-l", mnt])
        shutil.rmtree(mnt, ignore_errors=True)


def run_on(mnt):
    closed = free_port_on(["127.0.0.1"])  # nobody listens: deferrals
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.1")])
    conf = delivery_config(dns, closed) + (
        "log {\n  disk_reserve = %d\n  disk_reserve_percent = 0\n}\n"
        % RESERVE)
    with dns, Daemon(config=conf, workdir=mnt,
                     args=["-v", "-T", "smtp"]) as d:
        submit(d, 5, 0)
        time.sleep(1.5)
        check(sizes(mnt)["var/log/delivery.log"] > 0, "delivery log written")
        d.cli("queue", "hold", "--domain", "dest.test")
        check(sizes(mnt)["var/log/audit.log"] > 0, "audit log written")
        # Fill the filesystem to just above the reserve.
        fill = free_bytes(mnt) - RESERVE - HEADROOM
        with open(os.path.join(mnt, "filler"), "wb") as f:
            f.write(b"\0" * fill)
        d.cli("queue", "release", "--domain", "dest.test")
        # The logs read the free space at most once a second: past that,
        # each knows of the filler.
        time.sleep(1.2)
        before = sizes(mnt)
        room = free_bytes(mnt) - RESERVE
        sent = 5
        deadline = time.time() + 120 * SLOW
        while not dropped(d).get("delivery") and time.time() < deadline:
            submit(d, 20, sent)
            sent += 20
            d.cli("queue", "summary")
            time.sleep(0.2)
        got = dropped(d)
        check(got.get("delivery", 0) > 0,
              "no delivery-log line dropped after %d messages: %r"
              % (sent, got))
        # Past that point: more mail, more commands; the logs stay put.
        time.sleep(2.5)  # a flush and a fresh free-space reading
        mid = sizes(mnt)
        submit(d, 40, sent)
        sent += 40
        d.cli("queue", "hold", "--domain", "dest.test")
        d.cli("queue", "release", "--domain", "dest.test")
        time.sleep(2.5)
        after = sizes(mnt)
        grown = sum(after.values()) - sum(before.values())
        print("# log bytes before/at drop/after: %r %r %r; room %d; "
              "dropped %r" % (before, mid, after, room, dropped(d)))
        check(grown <= room,
              "the logs grew %d bytes with only %d above the reserve"
              % (grown, room))
        # Below the reserve a log writes only what still fits in the room
        # left when it stopped (a short trace line may fit where a delivery
        # line did not): no log grows past that room after the drop.
        left = room - (sum(mid.values()) - sum(before.values()))
        for rel in LOGS:
            check(after[rel] - mid[rel] <= max(left, 0),
                  "%s grew %d bytes below the reserve (room left %d)"
                  % (rel, after[rel] - mid[rel], left))
        got = dropped(d)
        for log in ("delivery", "audit", "diagnostics"):
            check(got.get(log, 0) > 0, "no %s line counted as dropped: %r"
                  % (log, got))
        # Every message was accepted (submit raises on anything but 250)
        # and is in the queue.
        ids = d.queue_ids()
        check(len(ids) == sent, "%d of %d messages queued"
              % (len(ids), sent))
        check(free_bytes(mnt) > 0, "the filesystem filled up")
        d.stop()


run_tests(globals())
