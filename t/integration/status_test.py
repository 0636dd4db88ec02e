#!/usr/bin/python3
"""Operating outpostd: the delivery log readable by a log shipper's group
(log { delivery_file_group, delivery_file_mode }) through start, the
change of user and SIGUSR1 reopens, while the audit log stays private; and
`outpost status` (the control command `status [json]`, right read).

Run as root (make test does): outpostd starts as root and becomes the
`outpost` account, as in production.  Callers without rights run the real
`outpost` under setpriv with uid 60011 (numeric, no user needed)."""

import grp
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, OUTPOSTD, SLOW, ControlDaemon,  # noqa
                          TestFailure, check, eq, ensure_daemon_user,
                          run_tests)

GID = 60010
NOBODY_UID, READER = 60011, 60012


def require_root():
    if os.geteuid() != 0:
        raise TestFailure("this test starts outpostd as root: run it as "
                          "root (make test does)")


def shipper_group():
    """A group every Debian 12 has: adm (log readers), else daemon."""
    for name in ("adm", "daemon"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            pass
    raise TestFailure("neither group adm nor daemon exists")


def wait_for(pred, what, timeout=10):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise TestFailure("timed out waiting for " + what)


def send_one(d, rcpt="rcpt@example.net"):
    s = d.smtp()
    s.ehlo()
    s.sendmail("sender@example.test", [rcpt],
               "From: sender@example.test\r\nSubject: x\r\n\r\nhi\r\n")
    s.quit()


def mode_of(path):
    return os.stat(path).st_mode & 0o7777


# --- the delivery log, for a log shipper ----------------------------------

def test_delivery_log_group_and_mode():
    require_root()
    pw = ensure_daemon_user()
    gr = shipper_group()
    with ControlDaemon(config='log { delivery_file_group = "%s" }\n'
                       % gr.gr_name) as d:
        wait_for(lambda: "running as user outpost" in d.log(),
                 "the change of user")
        # The daemon's account keeps the group (it gives it to the files
        # it creates after the drop), and only that one.
        with open("/proc/%d/status" % d.proc.pid) as f:
            groups = [x for x in f.read().splitlines()
                      if x.startswith("Groups:")][0].split()[1:]
        eq(sorted(groups), sorted({str(pw.pw_gid), str(gr.gr_gid)}),
           "supplementary groups")
        send_one(d)
        # An audited command makes the audit log if it is not there yet.
        r = subprocess.run([OUTPOST, "-c", d.conf_path, "queue", "hold",
                            "--all"], capture_output=True, text=True,
                           timeout=60 * SLOW)
        eq(r.returncode, 0, "queue hold all: " + r.stderr)
        wait_for(lambda: os.path.exists(d.audit_path), "the audit log")
        log = d.delivery_log
        st = os.stat(log)
        eq(st.st_uid, pw.pw_uid, "owner of the delivery log")
        eq(st.st_gid, gr.gr_gid, "group of the delivery log")
        eq(mode_of(log), 0o640, "mode of the delivery log")
        st = os.stat(d.audit_path)
        eq(st.st_uid, pw.pw_uid, "owner of the audit log")
        eq(mode_of(d.audit_path), 0o600, "mode of the audit log")
        # logrotate renames, then signals: the new file is made by the
        # daemon's account, and still the shipper's to read.
        os.rename(log, log + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(log), "a new delivery log")
        send_one(d)
        wait_for(lambda: os.path.getsize(log) > 0, "a line in the new log")
        st = os.stat(log)
        eq(st.st_uid, pw.pw_uid, "owner of the reopened delivery log")
        eq(st.st_gid, gr.gr_gid, "group of the reopened delivery log")
        eq(mode_of(log), 0o640, "mode of the reopened delivery log")
        eq(mode_of(log + ".1"), 0o640, "mode of the rotated delivery log")
        eq(mode_of(d.audit_path), 0o600, "mode of the audit log")
        check("setting group" not in d.log(), "reopen warned: "
              + d.log()[-2000:])


def test_delivery_log_mode_without_group():
    """delivery_file_mode alone: the daemon's group, the mode asked for;
    without either key the log stays 0600, as before."""
    require_root()
    pw = ensure_daemon_user()
    with ControlDaemon(config='log { delivery_file_mode = "0644" }\n') as d:
        wait_for(lambda: "running as user outpost" in d.log(),
                 "the change of user")
        st = os.stat(d.delivery_log)
        eq(st.st_gid, pw.pw_gid, "group of the delivery log")
        eq(mode_of(d.delivery_log), 0o644, "mode of the delivery log")
    with ControlDaemon() as d:
        eq(mode_of(d.delivery_log), 0o600, "default mode of the log")


def test_unknown_group_is_a_load_error():
    d = ControlDaemon(config='log {\n  delivery_file_group = '
                      '"no-such-group.outpost"\n}\n')
    r = subprocess.run([OUTPOSTD, "-t", "-c", d.conf_path],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0, "-t accepted an unknown group")
    line = [n for n, x in enumerate(open(d.conf_path), 1)
            if "delivery_file_group" in x][0]
    check("%s:%d: log.delivery_file_group \"no-such-group.outpost\": no "
          "such group" % (d.conf_path, line) in r.stderr,
          "no file:line error: " + r.stderr)


if __name__ == "__main__":
    run_tests(globals())
