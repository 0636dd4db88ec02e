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
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, OUTPOSTD, SLOW, ControlDaemon,  # noqa
                          TestFailure, check, cli_as, eq,
                          ensure_daemon_user, run_tests, wait_for)

GID = 60010
NOBODY_UID, READER, WRITER = 60011, 60012, 60013


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
                 what="the change of user")
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
        wait_for(lambda: os.path.exists(d.audit_path), what="the audit log")
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
        wait_for(lambda: os.path.exists(log), what="a new delivery log")
        send_one(d)
        wait_for(lambda: os.path.getsize(log) > 0, what="a line in the new log")
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
                 what="the change of user")
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


# --- outpost status --------------------------------------------------------

ACCESS = '''  group = "%d"
  access "root" { rights = { "read", "write", "delete", "export" } }
  access "%d" { rights = { "read" } }
  access "%d" { rights = { "write" } }
''' % (GID, READER, WRITER)


def cli(d, *args, uid=None):
    return cli_as(d, args, uid, GID)


def status_json(d, uid=None):
    r = cli(d, "status", "--json", uid=uid)
    eq(r.returncode, 0, "outpost status --json: " + r.stderr)
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    eq(len(lines), 1, "lines of status --json")
    return json.loads(lines[0])


def test_status():
    d = ControlDaemon(control=ACCESS)
    os.chmod(d.conf_path, 0o644)
    with d:
        m = re.search(r"outpostd (\S+) ready: ", d.log())
        check(m, "no ready line: " + d.log()[-2000:])
        version = m.group(1)
        addr = "127.0.0.1:%d" % d.port
        r = cli(d, "status")
        eq(r.returncode, 0, "outpost status: " + r.stderr)
        rows = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition(" ")
            rows.setdefault(k, []).append(v.strip())
        eq(rows["version"], [version], "version row")
        eq(rows["config"], [d.conf_path], "config row")
        eq(rows["drain"], ["running"], "drain row")
        eq(rows["listener"], [addr + " tls=starttls auth=yes"],
           "listener row")
        check(rows["messages"][0].startswith("0 "), "messages row: %r"
              % rows["messages"])
        check("uptime" in rows and "loaded" in rows and "rates" in rows,
              "rows: %r" % sorted(rows))
        # A few messages, held: the totals follow.
        for i in range(3):
            send_one(d, "rcpt%d@example.net" % i)
        r = cli(d, "queue", "hold", "--all")
        eq(r.returncode, 0, "queue hold --all: " + r.stderr)
        deadline = time.time() + 10 * SLOW
        while True:
            st = status_json(d)
            if st["queue"]["held"] == 3 or time.time() > deadline:
                break
            time.sleep(0.1)
        eq(st["version"], version, "version")
        eq(st["config"], {"file": d.conf_path, "embedded_defaults": False,
                          "loaded": st["config"]["loaded"]}, "config")
        check(st["config"]["loaded"].endswith("Z"), "loaded: %r"
              % st["config"]["loaded"])
        eq(st["drain"], "running", "drain")
        eq(st["listeners"], [{"address": addr, "tls": "starttls",
                              "auth": True}], "listeners")
        q = st["queue"]
        eq((q["messages"], q["held"], q["corrupt"], q["waiting"],
            q["active"]), (3, 3, 0, 0, 0), "queue totals")
        check(q["recipients"] is None, "recipients: %r" % q)
        eq(st["since_start"]["messages_accepted"], 3, "accepted")
        eq(st["since_start"]["recipients_accepted"], 3,
           "recipients accepted")
        check(st["rates"]["messages_accepted_per_second"] > 0,
              "rate: %r" % st["rates"])
        check(0 < st["rates"]["window_seconds"] <= 61, "window: %r"
              % st["rates"])
        check(isinstance(st["uptime_seconds"], int), "uptime")
        text = cli(d, "status").stdout
        check("messages       3 (waiting 0, active 0, held 3, corrupt 0)"
              in text, "table: " + text)
        # read is the right it takes: a reader may, a uid without it not.
        eq(status_json(d, uid=READER)["queue"]["messages"], 3,
           "status as a reader")
        r = cli(d, "status", uid=NOBODY_UID)
        check(r.returncode != 0 and "permission denied" in r.stderr,
              "status without the read right: rc %d, %s"
              % (r.returncode, r.stderr))
        eq(r.stdout, "", "output without the right")
        r = cli(d, "status", uid=WRITER)
        check(r.returncode != 0 and '"read" right needed' in r.stderr,
              "status with write but not read: rc %d, %s"
              % (r.returncode, r.stderr))


def test_status_grammar():
    """The control command's grammar, straight on the socket."""
    from outpost_test import control_raw
    with ControlDaemon() as d:
        out = control_raw(d, b"status json json\n")
        eq(out, "err usage: status [json]\n", "status json json")
        out = control_raw(d, b"status yaml\n")
        eq(out, "err usage: status [json]\n", "status yaml")
        out = control_raw(d, b"status json\n").splitlines()
        eq(out[-1], "ok 1", "final line")
        eq(json.loads(out[0])["drain"], "running", "drain")


if __name__ == "__main__":
    run_tests(globals())
