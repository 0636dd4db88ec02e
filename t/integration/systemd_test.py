#!/usr/bin/env python3
"""outpostd as a systemd service, without systemd: the test plays the
service manager.  It binds the notification socket (NOTIFY_SOCKET) and
checks READY=1 comes only once the SMTP port answers and a message queued
before the start is loaded, STATUS= lines, WATCHDOG=1 every WATCHDOG_USEC/2,
STOPPING=1 on SIGTERM; diagnostics carry "<N>" syslog priorities when
stderr is the journal's stream (JOURNAL_STREAM); the unit file passes
`systemd-analyze verify`.  Loopback only."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOSTD, SLOW, SRC, Daemon, check,  # noqa: E402
                          delivery_config, eq, free_port, pipeline,
                          run_tests)

MANAGER_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                "JOURNAL_STREAM")


class ManagedDaemon(Daemon):
    """A Daemon started with ENV (the service manager's variables) in its
    environment and none of the manager's variables the test runs under."""

    env = {}

    def start(self, wait=True):
        saved = {k: os.environ.pop(k, None) for k in MANAGER_VARS}
        os.environ.update(self.env)
        try:
            return super().start(wait)
        finally:
            for k in MANAGER_VARS:
                os.environ.pop(k, None)
                if saved[k] is not None:
                    os.environ[k] = saved[k]


def notify_socket(d):
    """The manager's end: a datagram socket in the daemon's directory that
    the daemon can still write to once it runs as its own account."""
    path = os.path.join(d.tmp, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)
    return s, path


def receive(s, timeout):
    """The next notification (a list of KEY=VALUE lines), or None."""
    s.settimeout(max(timeout, 0.001))
    try:
        data = s.recv(4096)
    except (socket.timeout, BlockingIOError):
        return None
    return data.decode("utf-8", "replace").split("\n")


def greeting(port):
    c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    try:
        return c.makefile("rb").readline()
    finally:
        c.close()


def loaded_lines(d):
    return re.findall(r"scheduler: (\d+) queued message", d.log())


def test_notify_ready_status_watchdog_stopping():
    # Nobody listens on the delivery port and there is no DNS: the message
    # stays queued across the restart.
    d = ManagedDaemon(config=delivery_config(port=free_port()))
    try:
        d.start()
        pipeline(d, ["someone@later.test"])
        deadline = time.time() + 20 * SLOW
        while len(d.queue_ids()) != 1 and time.time() < deadline:
            time.sleep(0.1)
        eq(len(d.queue_ids()), 1, "queued before the restart")
        d.stop()
        eq(loaded_lines(d), ["0"], "first start: empty queue")

        s, path = notify_socket(d)
        d.env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
        t0 = time.time()
        d.start(wait=False)
        msgs = []  # (seconds since start, line)
        ready_at = None
        deadline = time.time() + 20 * SLOW
        while ready_at is None and time.time() < deadline:
            check(d.proc.poll() is None, "outpostd exited:\n" + d.log())
            m = receive(s, deadline - time.time())
            if m is None:
                break
            msgs += [(time.time() - t0, line) for line in m if line]
            if "READY=1" in m:
                ready_at = time.time() - t0
                # Ready means accepting and scheduling: both must hold
                # the moment READY=1 is read.
                eq(loaded_lines(d), ["0", "1"],
                   "queue loaded when READY=1 arrives")
                check(greeting(d.port).startswith(b"220 "),
                      "SMTP port answers when READY=1 arrives")
        check(ready_at is not None, "no READY=1 within 20 s; got %r" % msgs)
        # Three watchdog periods (1 s each) and a STATUS= refresh (5 s).
        end = time.time() + 6 * SLOW
        while time.time() < end:
            m = receive(s, end - time.time())
            if m is not None:
                msgs += [(time.time() - t0, line) for line in m if line]
        d.stop()
        while True:
            m = receive(s, 0.2)
            if m is None:
                break
            msgs += [(time.time() - t0, line) for line in m if line]
        s.close()

        lines = [line for _, line in msgs]
        eq(lines.count("READY=1"), 1, "READY=1 sent once")
        status = [line for line in lines if line.startswith("STATUS=")]
        check(any(re.match(r"STATUS=1 queued", x) for x in status),
              "STATUS= with the queue size: %r" % status)
        check(any("per second" in x for x in status),
              "STATUS= with rates (refreshed every 5 s): %r" % status)
        dogs = [t for t, line in msgs if line == "WATCHDOG=1"]
        check(len(dogs) >= 4, "WATCHDOG=1 every second: %r" % dogs)
        gaps = [b - a for a, b in zip(dogs, dogs[1:])]
        check(max(gaps) < 1.8 * SLOW, "watchdog gaps %r" % gaps)
        check("STOPPING=1" in lines, "STOPPING=1 on SIGTERM: %r" % lines)
        check(lines.index("STOPPING=1") > lines.index("READY=1"),
              "STOPPING=1 after READY=1")
        print("# READY=1 %.2fs after the start; %d watchdog pings"
              % (ready_at, len(dogs)))
    finally:
        if d.proc is not None:
            d.stop()


def test_notify_reloading():
    """SIGHUP: RELOADING=1 (with MONOTONIC_USEC=) then READY=1 again."""
    d = ManagedDaemon()
    try:
        s, path = notify_socket(d)
        d.env = {"NOTIFY_SOCKET": path}
        d.start()
        lines = []
        deadline = time.time() + 20 * SLOW
        while "READY=1" not in lines and time.time() < deadline:
            lines += receive(s, deadline - time.time()) or []
        check("READY=1" in lines, "READY=1 at start: %r" % lines)
        lines = []
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20 * SLOW
        while "READY=1" not in lines and time.time() < deadline:
            lines += receive(s, deadline - time.time()) or []
        s.close()
        check("RELOADING=1" in lines and "READY=1" in lines
              and lines.index("RELOADING=1") < lines.index("READY=1"),
              "RELOADING=1, then READY=1: %r" % lines)
        check(any(x.startswith("MONOTONIC_USEC=") for x in lines),
              "MONOTONIC_USEC= with RELOADING=1: %r" % lines)
    finally:
        if d.proc is not None:
            d.stop()


def test_notify_abstract_socket():
    """NOTIFY_SOCKET may name an abstract socket ("@name", as systemd
    gives containers and --user managers): READY=1 and STOPPING=1 reach
    it."""
    d = ManagedDaemon()
    name = "outpost-notify-%d-%d" % (os.getpid(), int(time.time() * 1000))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    try:
        d.env = {"NOTIFY_SOCKET": "@" + name}
        d.start()
        lines = []
        deadline = time.time() + 20 * SLOW
        while "READY=1" not in lines and time.time() < deadline:
            lines += receive(s, deadline - time.time()) or []
        check("READY=1" in lines, "READY=1 on @%s: %r" % (name, lines))
        d.stop()
        lines = []
        deadline = time.time() + 5 * SLOW
        while "STOPPING=1" not in lines and time.time() < deadline:
            lines += receive(s, deadline - time.time()) or []
        check("STOPPING=1" in lines, "STOPPING=1: %r" % lines)
    finally:
        s.close()
        if d.proc is not None:
            d.stop()


def test_no_watchdog_for_another_pid():
    """WATCHDOG_PID names another process (the variables leaked to a
    child): no WATCHDOG=1, but READY=1 all the same."""
    d = ManagedDaemon()
    try:
        s, path = notify_socket(d)
        d.env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000",
                 "WATCHDOG_PID": str(os.getpid())}
        d.start()
        lines = []
        end = time.time() + 2 * SLOW
        while time.time() < end:
            m = receive(s, end - time.time())
            if m is not None:
                lines += m
        d.stop()
        check("READY=1" in lines, "READY=1: %r" % lines)
        check("WATCHDOG=1" not in lines, "WATCHDOG=1 for another pid")
    finally:
        if d.proc is not None:
            d.stop()


def journal_stream(path):
    st = os.stat(path)
    return "%d:%d" % (st.st_dev, st.st_ino)


PRIO = re.compile(r"<([0-7])>")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z outpostd: ")


def test_journal_priorities():
    d = ManagedDaemon()
    try:
        open(d.log_path, "ab").close()
        d.env = {"JOURNAL_STREAM": journal_stream(d.log_path)}
        d.start()
        check(greeting(d.port).startswith(b"220 "), "serving")
        d.stop()
        lines = [x for x in d.log().splitlines() if x]
        check(lines, "no diagnostics")
        bad = [x for x in lines if not PRIO.match(x) or STAMP.search(x)]
        check(not bad, "lines without a priority or with a time stamp: %r"
              % bad[:5])
        check(any(re.match(r"<6>outpostd .* ready: ", x) for x in lines),
              "the ready line at info (<6>): %r" % lines[:10])
    finally:
        if d.proc is not None:
            d.stop()


def test_journal_stream_elsewhere_is_plain():
    """JOURNAL_STREAM inherited, but stderr is another file: unchanged."""
    d = ManagedDaemon()
    try:
        open(d.log_path, "ab").close()
        other = os.path.join(d.tmp, "other")
        open(other, "w").close()
        d.env = {"JOURNAL_STREAM": journal_stream(other)}
        d.start()
        d.stop()
        lines = [x for x in d.log().splitlines() if x]
        check(lines and all(STAMP.match(x) for x in lines),
              "plain lines: %r" % lines[:5])
    finally:
        if d.proc is not None:
            d.stop()


def test_unit_file_verifies():
    """systemd-analyze verify on mta/outpostd.service, its ExecStart
    pointed at the outpostd under test (verify wants the binary to exist);
    any complaint (unknown key, bad value) fails."""
    unit = os.path.join(SRC, "mta", "outpostd.service")
    with open(unit) as f:
        text = f.read()
    for want in ("Type=notify", "WatchdogSec=30", "Restart=on-failure",
                 "ExecStart=/usr/sbin/outpostd -c /etc/outpost/outpost.conf"):
        check(re.search("^%s$" % re.escape(want), text, re.M),
              "unit lacks " + want)
    check(re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M),
          "ExecReload= sends SIGHUP (a reload)")
    # Without User=, StateDirectory=/LogsDirectory= make systemd hand those
    # trees back to root at every start: the log directory would then be
    # root's and outpostd (as outpost) could not make its log again after
    # logrotate.  The package and `make install` make them, outpost's.
    if not re.search(r"^User=", text, re.M):
        for key in ("StateDirectory", "LogsDirectory"):
            check(not re.search(r"^%s=" % key, text, re.M),
                  "%s= without User= chowns the tree to root at start"
                  % key)
    tool = shutil.which("systemd-analyze")
    if tool is None:
        print("# systemd-analyze absent: the unit file is not verified")
        return
    tmp = tempfile.mkdtemp(prefix="outpost-unit-")
    try:
        path = os.path.join(tmp, "outpostd.service")
        with open(path, "w") as f:
            f.write(text.replace("ExecStart=/usr/sbin/outpostd",
                                 "ExecStart=" + os.path.abspath(OUTPOSTD)))
        r = subprocess.run([tool, "verify", path], capture_output=True,
                           text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        eq((r.returncode, out), (0, ""), "systemd-analyze verify")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


run_tests(globals())
