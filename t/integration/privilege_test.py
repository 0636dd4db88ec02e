#!/usr/bin/env python3
"""Privileges: outpostd started as root binds, reads its keys and opens its
queue and logs, then runs as its own account for good (no uid 0 in any
thread, no capability, no_new_privs), and keeps working as that account.
Loopback only."""

import os
import pwd
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOSTD, SLOW, Daemon, TestFailure, check, eq,  # noqa
                          ensure_daemon_user, run_tests, wait_for)


def status_fields(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def require_root():
    if os.geteuid() != 0:
        raise TestFailure("this test starts outpostd as root: run it as "
                          "root (make test does)")


def test_runs_as_its_own_user():
    require_root()
    pw = ensure_daemon_user()
    with Daemon() as d:
        pid = d.proc.pid
        # The listeners take connections into their backlog while it is
        # still starting; the change of user comes before any is served.
        wait_for(lambda: "running as user outpost" in d.log(),
                 what="the change of user")
        # Every thread: real, effective, saved and fs ids are the account's.
        tasks = os.listdir("/proc/%d/task" % pid)
        check(len(tasks) >= 4, "expected the daemon's threads, got %r"
              % tasks)
        for t in tasks:
            st = status_fields("/proc/%d/task/%s/status" % (pid, t))
            eq(st["Uid"], [str(pw.pw_uid)] * 4, "thread %s Uid" % t)
            eq(st["Gid"], [str(pw.pw_gid)] * 4, "thread %s Gid" % t)
            eq(st["Groups"], [str(pw.pw_gid)], "thread %s Groups" % t)
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                eq(int(st[cap][0], 16), 0, "thread %s %s" % (t, cap))
            eq(st["NoNewPrivs"], ["1"], "thread %s NoNewPrivs" % t)
        # Its files belong to it, and stay private.
        for root, dirs, files in os.walk(d.data):
            for n in dirs + files:
                p = os.path.join(root, n)
                st = os.lstat(p)
                eq(st.st_uid, pw.pw_uid, "owner of " + p)
                # The control socket is for its group too (rights are
                # checked per caller by the daemon).
                eq(st.st_mode & (0o007 if n == "control.sock" else 0o077),
                   0, "mode of " + p)
        # It still does its work as that account: accept (queue commit),
        # and rotate its delivery log on SIGUSR1 (a new file it creates).
        s = d.smtp()
        s.ehlo()
        s.sendmail("sender@example.test", ["rcpt@example.net"],
                   "From: sender@example.test\r\nSubject: x\r\n\r\nhi\r\n")
        s.quit()
        log = os.path.join(d.data, "log", "delivery.log")
        os.rename(log, log + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(log), what="a new delivery log")
        eq(os.stat(log).st_uid, pw.pw_uid, "owner of the new delivery log")


def test_missing_user_is_a_clear_error():
    require_root()
    d = Daemon(config='run_as = "outpost-nosuch"\n')
    r = subprocess.run([OUTPOSTD, "-t", "-c", d.conf_path],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0, "-t accepted a missing user")
    check("useradd --system" in r.stderr and "outpost-nosuch" in r.stderr,
          "-t error does not say how to create the user: " + r.stderr)
    d.start(wait=False)
    rc = d.proc.wait(timeout=30)
    d.proc = None
    d.logf.close()
    check(rc != 0, "outpostd started with a missing user")
    check("useradd --system" in d.log(), "start-up error: " + d.log())
    check(not os.path.exists(os.path.join(d.data, "queue")),
          "the daemon created its queue before checking its user")


def test_root_needs_allow_root():
    require_root()
    d = Daemon(config='run_as = "root"\n')
    r = subprocess.run([OUTPOSTD, "-t", "-c", d.conf_path],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0, "-t accepted run_as = root")
    check(d.conf_path + ":" in r.stderr and "allow_root" in r.stderr,
          "no file:line error naming allow_root: " + r.stderr)
    # With allow_root, it says so and stays root (for set-ups that must).
    with Daemon(config="allow_root = true\n") as d2:
        st = status_fields("/proc/%d/status" % d2.proc.pid)
        eq(st["Uid"][1], "0", "euid with allow_root")
        check("keeps running as root" in d2.log(), "no warning: "
              + d2.log()[-1000:])


def test_unreachable_data_dir_is_named():
    require_root()
    tmp = tempfile.mkdtemp(prefix="outpost-priv-")
    os.chmod(tmp, 0o700)  # the daemon's account cannot search it
    inner = os.path.join(tmp, "inner")
    os.mkdir(inner)
    d = Daemon(workdir=inner)
    os.chmod(tmp, 0o700)
    d.start(wait=False)
    rc = d.proc.wait(timeout=30)
    d.proc = None
    d.logf.close()
    check(rc != 0, "outpostd ran with a data_dir it cannot reach")
    check("searchable" in d.log() and d.data in d.log(),
          "error does not name the directory: " + d.log()[-1000:])


def test_hard_link_is_not_handed_over():
    """A hard link in data_dir to a file of root's (which the daemon's
    account could have made after a compromise, where links to others'
    files are allowed) must not make root hand that file over at the next
    start: outpostd refuses to start and the file stays root's."""
    require_root()
    tmp = tempfile.mkdtemp(prefix="outpost-priv-")
    with Daemon(workdir=tmp) as d:
        pass  # data_dir made and handed over once
    secret = os.path.join(tmp, "root-secret")
    with open(secret, "w") as f:
        f.write("root only\n")
    os.chmod(secret, 0o600)
    os.link(secret, os.path.join(d.data, "keys", "planted"))
    d.start(wait=False)
    try:
        rc = d.proc.wait(timeout=20 * SLOW)
    except subprocess.TimeoutExpired:
        rc = None
        d.proc.kill()
        d.proc.wait()
    d.proc = None
    d.logf.close()
    eq(os.stat(secret).st_uid, 0, "owner of the linked root file")
    check(rc not in (None, 0), "outpostd started with a planted hard link")
    check("hard link" in d.log(), "error does not say why: "
          + d.log()[-1000:])


run_tests(globals())
