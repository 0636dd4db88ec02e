#!/usr/bin/env python3
"""watchdog_test — the watchdog through the real outpostd: a sending
identity's pattern is learnt over hours and days (the test clock,
OUTPOST_TEST_CLOCK_OFFSET: the daemon is restarted at each new time, so its
profiles must outlive a restart), then a departure stops it: 451 4.7.1 at
MAIL, its queued mail held, a "watchdog" event, an audit line, the metric,
the alert command.  Traps stop at once; a bounce spike from the receiver
(outpost-sink answering 550 5.1.1) stops, so does a new domain mix; a
normal Monday after a quiet weekend does not; release (and --learn) let it
send again.  Loopback only:
our own dnsmasq and sink."""

import json
import os
import smtplib
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port_on,
                          passwd_hash, run_tests, wait_for)

HOUR = 3600
DAY = 86400
PASSWORD = "watchdog test password"
_HASH = []


class WatchDaemon(Daemon):
    """AUTH in clear on a loopback listener (users ALICE-like names), relay
    for loopback too, the test clock (clock_offset, s) set at each start."""

    def __init__(self, users=("alice",), extra=""):
        if not _HASH:
            _HASH.append(passwd_hash(PASSWORD))
        blocks = "".join('user "%s" {\n  password = "%s"\n'
                         '  sender_domains = { "example.com" }\n}\n'
                         % (u, _HASH[0]) for u in users)
        super().__init__(config=blocks + "dmarc { check = false }\n" + extra,
                         listeners=[("main", 'tls = "none"\n'
                                     '  auth_without_tls = true')])
        self.clock_offset = 0
        self.audit_path = os.path.join(self.data, "log", "audit.log")
        self.delivery_log = os.path.join(self.data, "log", "delivery.log")

    def restart(self, offset):
        self.stop()
        self.clock_offset = offset
        self.start()

    def status(self, ident):
        r = self.cli("watchdog", "status", ident, "--json")
        return json.loads(r.stdout.strip().splitlines()[0])

    def events(self, kind):
        out = []
        logdir = os.path.dirname(self.delivery_log)
        for name in sorted(os.listdir(logdir)):
            if name.startswith("delivery.log") and not name.endswith(".gz"):
                with open(os.path.join(logdir, name)) as f:
                    out += [json.loads(x) for x in f if x.strip()]
        return [e for e in out if e.get("event") == kind]

    def metrics(self):
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()


def send(d, user, rcpts):
    """One message per recipient over one session (AUTH as USER, or
    relay with USER None); stops at the first MAIL not answered 250.
    Returns (messages queued, (code, text) of the refused MAIL or None)."""
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30 * SLOW,
                     local_hostname="client.test")
    s.ehlo()
    if user is not None:
        s.login(user, PASSWORD)
    n = 0
    refused = None
    for r in rcpts:
        code, text = s.docmd("MAIL", "FROM:<news@example.com>")
        if code != 250:
            refused = (code, text.decode())
            break
        code, text = s.docmd("RCPT", "TO:<%s>" % r)
        eq(code, 250, "RCPT %s: %s" % (r, text))
        code, text = s.data("From: news@example.com\r\nTo: %s\r\n"
                            "Subject: w\r\n\r\nbody\r\n" % r)
        eq(code, 250, "DATA: %s" % text)
        n += 1
    s.quit()
    return n, refused


def mx():
    hosts = ["127.0.0.31"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.31")])
    return hosts, port, dns


def held(d):
    r = d.cli("queue", "list", "--held", "--json")
    return len([x for x in r.stdout.splitlines() if x.strip()])


def alert_script(d):
    """An alert command writing its arguments where the test reads them
    (the daemon runs as its own user: the directory is open to it)."""
    path = os.path.join(d.tmp, "alert.sh")
    outdir = os.path.join(d.tmp, "alert")
    os.mkdir(outdir)
    os.chmod(outdir, 0o1777)
    out = os.path.join(outdir, "alert.out")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nprintf "%%s\\n" "$@" > %s\n' % out)
    os.chmod(path, 0o755)
    return path, out


def test_new_recipients_stop_and_release():
    """A week of history is not needed: an hour learnt, then mostly
    never-seen addresses stop alice; release delivers her held mail."""
    hosts, port, dns = mx()
    listed = ["l%d@dest.test" % i for i in range(30)]
    fresh = ["n%d@dest.test" % i for i in range(60)]
    with dns, Sink(hosts, port) as sink:
        d = WatchDaemon(extra=delivery_config(dns, port)
                        + "watchdog {\n  enabled = yes\n  learning = 1h\n"
                        "  min_messages = 20\n  alert_command = "
                        '{ "/bin/sh", "ALERT" }\n}\n')
        script, out = alert_script(d)
        with open(d.conf_path) as f:
            text = f.read().replace('"ALERT"', '"%s"' % script)
        with open(d.conf_path, "w") as f:
            f.write(text)
        with d:
            eq(send(d, "alice", listed), (30, None), "learning hour")
            sink.wait_messages(30)
            # Two hours on: past learning; the same list is no news.
            d.restart(2 * HOUR)
            eq(send(d, "alice", listed), (30, None), "the usual list")
            # Delivered before the suspension: only the fresh ones wait.
            sink.wait_messages(60)
            st = d.status("alice")
            eq(st["state"], "watching", "after learning: %s" % st)
            d.cli("suspend", "dest.test", "--for", "1h")
            n, refused = send(d, "alice", fresh)
            check(refused is not None, "never-seen addresses: stopped")
            check(refused[0] == 451 and "4.7.1" in refused[1],
                  "451 4.7.1 at MAIL: %r" % (refused,))
            check(25 <= n < 60, "stopped on the way: %d sent" % n)
            st = d.status("alice")
            eq(st["state"], "stopped", "status")
            check("new_recipient_share" in st["stopped_by"], "%s" % st)
            wait_for(lambda: held(d) == n, what="alice's mail held")
            ev = wait_for(lambda: d.events("watchdog"), what="event")
            eq(ev[0]["user"], "alice", "event user")
            check(ev[0]["signals"]["new_recipient_share"]["value"] > 0.5,
                  "signals in the event: %s" % ev[0])
            wait_for(lambda: os.path.exists(d.audit_path) and
                     "watchdog stop" in open(d.audit_path).read(),
                     what="audit line")
            check("alice" not in open(d.audit_path).read(),
                  "the identity is hashed in the audit log")
            m = d.metrics()
            check('outpost_watchdog_stopped{identity="alice"} 1' in m, m)
            check("outpost_watchdog_stops_total 1" in m, "stops_total")
            args = wait_for(lambda: os.path.exists(out) and
                            open(out).read().split("\n"),
                            what="alert command ran")
            eq(args[0], "alice", "alert: identity")
            check(json.loads(args[1])["tripped"] ==
                  ["new_recipient_share"], "alert: signals %r" % args)
            # The stop outlives a restart, even a kill -9 (written when
            # it happened, not at shutdown).
            d.kill9()
            d.clock_offset = 2 * HOUR + 60
            d.start()
            eq(send(d, "alice", ["x@dest.test"])[1][0], 451,
               "still stopped after a restart")
            h = d.cli("watchdog", "history", "alice").stdout
            check("stop" in h and "new_recipient_share" in h, h)
            # Release: the held mail goes, MAIL gets 250.
            d.cli("resume", "dest.test")
            d.cli("watchdog", "release", "alice")
            sink.wait_messages(60 + n)
            eq(held(d), 0, "nothing held")
            eq(d.status("alice")["state"], "watching", "released")
            eq(send(d, "alice", ["l1@dest.test"]), (1, None), "250 again")
            check("watchdog-release user hash:" in
                  open(d.audit_path).read(), "release audited")


def test_trap_stops_at_once():
    """One trap address (the list holds its hash as `outpost hash` prints
    it, and an address in clear) stops the relay identity at once, even
    while it is still being learnt; its queued mail (no user) is held."""
    d = WatchDaemon(extra="watchdog {\n  enabled = yes\n"
                    '  traps = "../traps.txt"\n}\n')
    traps = os.path.join(d.tmp, "traps.txt")
    with open(traps, "w") as f:
        f.write("# traps\nother-trap@dest.test\n")
    with d:
        h = d.cli("hash", "Trap@Dest.test").stdout.strip()
        with open(traps, "a") as f:
            f.write("hash:%s\n" % h)
        d.restart(0)
        eq(send(d, None, ["a@dest.test", "b@dest.test"]), (2, None),
           "relay mail")
        # A transaction whose MAIL comes before the stop and its data
        # after: accepted, and held too.
        late = smtplib.SMTP("127.0.0.1", d.port, timeout=30 * SLOW,
                            local_hostname="client.test")
        late.ehlo()
        eq(late.docmd("MAIL", "FROM:<news@example.com>")[0], 250, "MAIL")
        eq(late.docmd("RCPT", "TO:<late@dest.test>")[0], 250, "RCPT")
        eq(send(d, None, ["trap@dest.test", "c@dest.test"])[0], 1,
           "stopped right after the trap")
        st = d.status("relay")
        eq(st["state"], "stopped", "trap: %s" % st)
        eq(st["stopped_by"], ["trap_hits"], "by the trap")
        eq(late.data("Subject: late\r\n\r\nbody\r\n")[0], 250, "late")
        late.quit()
        wait_for(lambda: held(d) == 4, what="relay mail held, the late too")
        # The audit line is written by the log thread, a moment after the
        # hold shows.
        wait_for(lambda: "hold id " in open(d.audit_path).read(),
                 what="late hold audited")
        # A user's mail is not the relay's.
        eq(send(d, "alice", ["d@dest.test"]), (1, None), "alice sends")


def test_bounce_spike_stops():
    """550 5.1.1 from the receiver for most of a new batch stops alice."""
    hosts, port, dns = mx()
    ok = ["ok%d@dest.test" % i for i in range(25)]
    bad = ["reject%d@dest.test" % i for i in range(25)]
    with dns, Sink(hosts, port) as sink:
        d = WatchDaemon(extra=delivery_config(dns, port)
                        + "watchdog {\n  enabled = yes\n  learning = 1h\n"
                        "  min_messages = 20\n}\n"
                        'watchdog_override "alice" {\n'
                        "  new_recipient_share = 1\n}\n")
        with d:
            eq(send(d, "alice", ok), (25, None), "good list")
            sink.wait_messages(25)
            d.restart(2 * HOUR)
            # Deliveries run while it sends: the stop may come before
            # the list is all in.
            n, refused = send(d, "alice", bad)
            check(n >= 3, "bad list accepted at first (%d)" % n)
            st = wait_for(lambda: (lambda s: s if s["state"] == "stopped"
                                   else None)(d.status("alice")),
                          what="stopped by bounces")
            eq(st["stopped_by"], ["bounce_rate"], "by bounces: %s" % st)
            eq(send(d, "alice", ["ok1@dest.test"])[1][0], 451, "451")


def test_domain_shift_stops():
    """An hour to dest.test learnt; two hours on, the same volume to
    another domain: the mix has moved (new recipients allowed here)."""
    d = WatchDaemon(extra="watchdog {\n  enabled = yes\n  learning = 1h\n"
                    "  min_messages = 20\n  new_recipient_share = 1\n}\n")
    with d:
        eq(send(d, "alice", ["l%d@dest.test" % i for i in range(30)]),
           (30, None), "the usual domain")
        d.restart(2 * HOUR)
        n, refused = send(d, "alice", ["m%d@other.test" % i
                                       for i in range(30)])
        check(refused is not None and refused[0] == 451,
              "another domain: stopped (%d sent)" % n)
        eq(d.status("alice")["stopped_by"], ["domain_shift"], "by the mix")
        table = d.cli("watchdog", "status").stdout
        check("identity alice: stopped" in table and "domain_shift" in table,
              table)


def monday_offset():
    """Seconds to add to now for a Tuesday 10:00 UTC to come (a week of
    history starts there; the Monday after is 6 days on)."""
    import time
    now = int(time.time())
    day0 = now - now % DAY  # today 00:00 UTC
    wd = (day0 // DAY + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    ahead = (1 - wd) % 7 or 7  # the next Tuesday
    return day0 + ahead * DAY + 10 * HOUR - now


def test_quiet_weekend_then_monday():
    """Tuesday to Friday at 10:00, the same 30 recipients; nothing on the
    weekend; Monday 10:00 the same: not stopped.  Then four times the
    busiest hour in that hour: stopped by volume; release --learn adopts
    it, and the same again is not stopped."""
    listed = ["l%d@dest.test" % i for i in range(30)]
    base = monday_offset()
    d = WatchDaemon(users=("bob",),
                    extra="watchdog {\n  enabled = yes\n  learning = 1d\n"
                    "  min_messages = 20\n}\n")
    d.clock_offset = base
    with d:
        for day in range(4):  # Tuesday .. Friday
            if day:
                d.restart(base + day * DAY)
            eq(send(d, "bob", listed), (30, None), "weekday %d" % day)
        d.restart(base + 6 * DAY)  # Monday
        eq(send(d, "bob", listed), (30, None), "a normal Monday")
        st = d.status("bob")
        eq(st["state"], "watching", "Monday: %s" % st)
        check(st["signals"]["volume"]["baseline"] >= 30,
              "the weekdays are the baseline: %s" % st)
        n, refused = send(d, "bob", listed * 4)
        check(refused is not None and refused[0] == 451,
              "four times the usual: stopped (%d sent)" % n)
        eq(d.status("bob")["stopped_by"], ["volume"], "by volume")
        d.cli("watchdog", "release", "bob", "--learn")
        eq(send(d, "bob", listed * 4), (120, None),
           "the learnt pattern is the baseline now")
        h = d.cli("watchdog", "history", "bob", "--json").stdout
        kinds = [json.loads(x)["event"] for x in h.splitlines()]
        check("stop" in kinds and "release-learn" in kinds, h)


if __name__ == "__main__":
    run_tests(globals())
