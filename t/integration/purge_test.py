#!/usr/bin/python3
"""A user's data removed (issue 11, retention): `outpost purge --user NAME`
removes that user's queued messages (no bounce; each logged as purged) and
its per-user history (AUTH blocks, per-user metrics) now, needs the delete
right and is audited either way; a user removed from the configuration
starts a clock (kept in the queue's state) and is purged automatically
retention.user_data later, unless it came back before.  Time is moved with
the test clock (OUTPOST_TEST_CLOCK_OFFSET); clients are Python sockets on
loopback, no message leaves the box (every message is held)."""

import glob
import gzip
import json
import os
import pwd
import re
import smtplib
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, DAEMON_USER,  # noqa: E402
                          check, control_wait, eq, passwd_hash, run_tests,
                          wait_for)
import smtp_auth_limit_test as al  # noqa: E402

DAY = 86400
PASSWORD = "correct horse battery staple"
_HASH = []


def user_blocks(names):
    if not _HASH:
        _HASH.append(passwd_hash(PASSWORD))
    return "".join('user "%s" {\n  password = "%s"\n'
                   '  sender_domains = { "example.com" }\n}\n'
                   % (n, _HASH[0]) for n in names)


class PurgeDaemon(Daemon):
    """AUTH in clear on a loopback listener (no relay network: every
    message has its user), a control socket others may reach, the
    configured users replaceable (set_users) and the test clock set at
    each start (OFFSET, days)."""

    def __init__(self, names, access="", extra=""):
        run = tempfile.mkdtemp(prefix="outpost-purge-")
        os.chmod(run, 0o755)
        self.sock = os.path.join(run, "control.sock")
        ctl = 'control {\n  socket = "%s"\n%s}\n' % (self.sock, access)
        # The watchdog's history (profiles, recipients seen) is written in
        # batches a second apart: left out here, so that the counts of
        # records purged are those of the stores this file checks.
        super().__init__(config="#USERS\n#END\n" + extra + ctl +
                         "watchdog { enabled = no }\n",
                         workdir=run, relay_loopback=False,
                         listeners=[("main", 'tls = "none"\n'
                                     '  auth_without_tls = true')])
        self.own_tmp = True
        self.audit_path = os.path.join(self.data, "log", "audit.log")
        self.delivery_log = os.path.join(self.data, "log", "delivery.log")
        self.offset_days = 0
        self.set_users(names)

    def set_users(self, names):
        with open(self.conf_path) as f:
            text = f.read()
        text = re.sub(r"#USERS\n.*#END\n",
                      lambda m: "#USERS\n" + user_blocks(names) + "#END\n",
                      text, flags=re.S)
        with open(self.conf_path, "w") as f:
            f.write(text)

    def start(self, wait=True):
        old = os.environ.get("OUTPOST_TEST_CLOCK_OFFSET")
        os.environ["OUTPOST_TEST_CLOCK_OFFSET"] = str(
            int(self.offset_days * DAY))
        try:
            super().start(wait)
        finally:
            if old is None:
                del os.environ["OUTPOST_TEST_CLOCK_OFFSET"]
            else:
                os.environ["OUTPOST_TEST_CLOCK_OFFSET"] = old
        if wait:
            control_wait(self)
        return self

    def restart(self, offset_days, names=None):
        self.stop()
        if names is not None:
            self.set_users(names)
        self.offset_days = offset_days
        self.start()


def send(d, user, n=1):
    """N messages submitted by USER (AUTH PLAIN); their queue ids."""
    ids = []
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30 * SLOW,
                     local_hostname="client.test")
    s.login(user, PASSWORD)
    for i in range(n):
        msg = ("From: news@example.com\r\nTo: r%d@dest.test\r\n"
               "Subject: purge %s %d\r\n\r\nbody\r\n" % (i, user, i))
        code, text = s.docmd("MAIL", "FROM:<news@example.com>")
        eq(code, 250, "MAIL")
        code, text = s.docmd("RCPT", "TO:<r%d@dest.test>" % i)
        eq(code, 250, "RCPT")
        code, text = s.data(msg)
        eq(code, 250, "DATA: %s" % text)
        ids.append(re.search(rb"([0-9a-f]{16}) queued", text)
                   .group(1).decode())
    s.quit()
    return ids


def queued(d):
    """The ids of every queued message."""
    return d.queue_ids()


def jsonl(path):
    """The lines of the log PATH and of its rotated files (PATH-DAY and
    PATH-DAY.gz: outpostd rotates a log left from an earlier day at
    start, as the restarts here at other clock offsets do)."""
    out = []
    for p in sorted(glob.glob(glob.escape(path) + "-*")) + [path]:
        opener = gzip.open if p.endswith(".gz") else open
        try:
            with opener(p, "rt") as f:
                out += [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            pass
    return out


def purged_events(d):
    return [e for e in jsonl(d.delivery_log)
            if e.get("event") == "admin" and e.get("reason") == "purged"]


def user_metric(d, user):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10 * SLOW) as r:
        text = r.read().decode()
    m = re.search(r'^outpost_user_messages_received_total\{user="%s"\} '
                  r'(\S+)$' % re.escape(user), text, re.M)
    return None if m is None else float(m.group(1))


def hold_all(d, n):
    out = d.cli("queue", "hold", "--all").stdout
    check(("%d message" % n) in out, "hold: " + out)


# --- tests ----------------------------------------------------------------

def test_purge_user_now():
    access = ('  access "root" { rights = { "read", "write", "delete" } }\n'
              '  access "nobody" { rights = { "read", "write" } }\n')
    limits = al.limits(max_failures=2, block='"1h"', delay_base='"0"',
                       delay_max='"0"')
    with PurgeDaemon(["campaign", "other"], access, limits) as d:
        os.chmod(d.conf_path, 0o644)
        os.chown(d.sock, 0, al.NOBODY.pw_gid)
        # No attempt (so no per-user result counter: the counts below
        # do not hang on when the first attempt comes).
        d.cli("suspend", "dest.test", "--for", "1d")
        mine = send(d, "campaign", 3)
        theirs = send(d, "other", 2)
        hold_all(d, 5)
        # Blocks of both users (campaign from 127.0.0.6, other from .7).
        for user, src in (("campaign", "127.0.0.6"), ("other", "127.0.0.7")):
            s = al.session(d, src)
            eq([s.auth(user, "x")[0] for _ in range(2)], [535, 421],
               user + " blocked")
            s.close()
        wait_for(lambda: user_metric(d, "campaign") == 3, 10,
                 "campaign's accept counter")
        # Without the delete right: refused, recorded, nothing removed.
        r = al.cli(d, "purge", "--user", "campaign", rc=1, as_nobody=True)
        check('"delete" right needed' in r.stderr, r.stderr)
        eq(len(queued(d)), 5, "nothing removed by a refused purge")
        r = d.cli("purge", "--user", "campaign", "--json")
        got = json.loads(r.stdout)
        eq(got["messages"], 3, "messages removed: %r" % got)
        # Its two AUTH entries (the login from 127.0.0.1 that exempts it
        # there, the block from 127.0.0.6) and its accept counter.
        eq(got["history"], 3, "history records removed: %r" % got)
        left = queued(d)
        eq(sorted(left), sorted(theirs), "only other's messages stay")
        # Its block is lifted, other's stays.
        eq(al.attempt(d, "campaign", PASSWORD, "127.0.0.6")[0], 235,
           "campaign's block lifted")
        eq(al.attempt(d, "other", PASSWORD, "127.0.0.7")[0], 454,
           "other's block stays")
        blocks = [json.loads(x) for x in
                  d.cli("auth", "blocks", "--json").stdout.splitlines()]
        eq([b.get("user") for b in blocks], ["other"], "blocks left")
        # Its metrics series is gone; other's stays.
        wait_for(lambda: user_metric(d, "campaign") is None, 10,
                 "campaign's series gone")
        eq(user_metric(d, "other"), 2.0, "other's series")
        # Each message logged as purged, by id, no name in clear.
        ev = wait_for(lambda: len(purged_events(d)) == 3 and
                      purged_events(d), 10, "three purged events")
        eq(sorted(e["id"] for e in ev), sorted(mine), "purged ids")
        for e in ev:
            check(re.fullmatch(r"purge user hash:[0-9a-f]{32}",
                               e["command"]), "event: %r" % e)
        # Audited, refused and done alike; the name as its keyed hash.
        rec = [(a["uid"], a["command"], a["result"])
               for a in jsonl(d.audit_path) if "purge" in a["command"]]
        eq([(u, res) for u, _, res in rec],
           [(al.NOBODY.pw_uid, rec[0][2]), (0, "ok 3")], "audit: %r" % rec)
        check(rec[0][2].startswith("err permission denied"), rec[0][2])
        check(rec[0][1] == rec[1][1] and
              re.fullmatch(r"purge user hash:[0-9a-f]{32}", rec[1][1]),
              "audit commands: %r" % rec)
        with open(d.audit_path) as f:
            check("campaign" not in f.read(), "the name in clear")
        # Plain text; all that is left of it is its login above.
        r = d.cli("purge", "--user", "campaign")
        eq(r.stdout.strip(), "0 messages and 1 history record removed",
           "its login since")
        eq(d.cli("purge", check_rc=False).returncode, 2, "--user needed")


def retention_audit(d):
    return [a for a in jsonl(d.audit_path)
            if a["command"].endswith("(retention)")]


def test_removed_user_purged_after_its_time():
    d = PurgeDaemon(["a", "c", "d"])
    d.offset_days = -100
    with d:
        ids = {u: send(d, u)[0] for u in ("a", "c", "d")}
        hold_all(d, 3)
        # a and c leave while the daemon runs: their clocks start.
        d.set_users(["d"])
        d.cli("reload")
        log = d.log()
        for u in ("a", "c"):
            m = re.search(r"user %s removed from the configuration: its "
                          r"data is purged on (\S+) " % u, log)
            check(m, "removal of %s logged:\n%s" % (u, log[-2000:]))
            want = time.strftime("%Y-%m-%d",
                                 time.gmtime(time.time() - 10 * DAY))
            eq(m.group(1), want, "%s's purge date (90 days on)" % u)
        # 50 days later c is back; a's time has not come.
        d.restart(-50, ["c", "d"])
        check("user c is in the configuration again" in d.log(),
              "c's return logged")
        time.sleep(1)
        eq(sorted(queued(d)), sorted(ids.values()), "nothing purged yet")
        # Now: a's 90 days are over.
        d.restart(0)
        wait_for(lambda: "user a: its data purged" in d.log(), 20,
                 "a purged at start")
        eq(sorted(queued(d)), sorted([ids["c"], ids["d"]]),
           "a's message gone; c (back) and d stay")
        check("user c: its data purged" not in d.log(), "c not purged")
        ev = wait_for(lambda: purged_events(d), 10, "purged event")
        eq([e["id"] for e in ev], [ids["a"]], "a's message logged")
        rec = wait_for(lambda: retention_audit(d), 10, "audit record")
        eq(len(rec), 1, "one retention record: %r" % rec)
        eq(rec[0]["uid"], pwd.getpwnam(DAEMON_USER).pw_uid
           if os.geteuid() == 0 else os.geteuid(), "the daemon's uid")
        eq(rec[0]["result"], "ok 1", "audit result")
        check(re.fullmatch(r"purge user hash:[0-9a-f]{32} \(retention\)",
                           rec[0]["command"]), rec[0]["command"])
        # Its clock is forgotten: the next start purges nothing again.
        d.restart(1)
        time.sleep(1)
        eq(len(retention_audit(d)), 1, "purged once")


def test_removed_user_kept_until_its_time():
    d = PurgeDaemon(["b", "d"])
    d.offset_days = -20
    with d:
        ids = {u: send(d, u)[0] for u in ("b", "d")}
        hold_all(d, 2)
        # b is removed while the daemon is stopped: seen at start.
        d.restart(-10, ["d"])
        check("user b removed from the configuration" in d.log(),
              "b's removal seen at start")
        d.restart(0)
        time.sleep(1)
        eq(sorted(queued(d)), sorted(ids.values()), "b's message stays")
        check("its data purged" not in d.log(), "nothing purged")
        eq(retention_audit(d), [], "no purge recorded")
        # 81 days on: b's 90 days are over.
        d.restart(81)
        wait_for(lambda: "user b: its data purged" in d.log(), 20,
                 "b purged")
        eq(sorted(queued(d)), [ids["d"]], "only d's message stays")


if __name__ == "__main__":
    run_tests(globals())
