#!/usr/bin/env python3
"""scan_test — the malware scan through the real outpostd and a real
clamd (Debian's clamav-daemon, started here on a Unix socket with a
signature database written here: no download).  EICAR as the body, as a
base64 attachment, inside a nested multipart, and a body signature → 554
and nothing queued nor delivered, one rejection event per recipient
(hashed); clean mail → delivered; clamd stopped → 451 (or accepted with
on_error = accept); clamd back → scanning resumes without a restart; a
clamd that never answers → timeout → 451; one that answers garbage →
451; `outpost scan status` counts; the watchdog stops an identity after
an infected submission; oversize (truncate / refuse); the verdict cache
(the same attachment in many personalized messages streamed once).
Loopback only: our own dnsmasq, sink and clamd."""

import base64
import json
import os
import smtplib
import socket
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (EICAR, SLOW, Clamd, Daemon, Dns,  # noqa: E402
                          Sink, check, delivery_config, eq, free_port_on,
                          passwd_hash, promtool_check, run_tests,
                          wait_for)

BODY_SIG = b"OUTPOST-TEST-MALWARE-BODY-SIGNATURE"
PASSWORD = "scan test password"
_HASH = []


def mx():
    hosts = ["127.0.0.41"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.41")])
    return hosts, port, dns


class ScanDaemon(Daemon):
    """Scanning with clamd at SOCK; delivery through DNS/PORT when given;
    AUTH users (USERS) on a clear-text loopback listener."""

    def __init__(self, sock, scan="", dns=None, port=None, users=(),
                 extra=""):
        if users and not _HASH:
            _HASH.append(passwd_hash(PASSWORD))
        blocks = "".join('user "%s" {\n  password = "%s"\n'
                         '  sender_domains = { "example.com" }\n}\n'
                         % (u, _HASH[0]) for u in users)
        if "watchdog" not in extra:
            # One infected submission stops an identity by default: the
            # tests that send several say so themselves.
            extra += "watchdog { infected = 0 }\n"
        config = (blocks + "dmarc { check = false }\n"
                  'scan {\n  clamd = "%s"\n%s}\n' % (sock, scan) + extra)
        if dns is not None:
            config += delivery_config(dns, port)
        super().__init__(config=config,
                         listeners=[("main", 'tls = "none"\n'
                                     '  auth_without_tls = true')])
        self.delivery_log = os.path.join(self.data, "log", "delivery.log")
        self.audit_path = os.path.join(self.data, "log", "audit.log")

    def status(self):
        return json.loads(self.cli("scan", "status", "--json").stdout)

    def events(self, kind):
        try:
            with open(self.delivery_log) as f:
                out = [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []
        return [e for e in out if e.get("event") == kind]

    def metrics(self):
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()


def submit(d, body, rcpts=("a@dest.test",), user=None):
    """One message; (code, text) of its end of data (or of MAIL when that
    is refused)."""
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=60 * SLOW,
                     local_hostname="client.test")
    s.ehlo()
    if user is not None:
        s.login(user, PASSWORD)
    code, text = s.docmd("MAIL", "FROM:<news@example.com>")
    if code != 250:
        s.quit()
        return code, text.decode()
    for r in rcpts:
        eq(s.docmd("RCPT", "TO:<%s>" % r)[0], 250, "RCPT")
    if isinstance(body, str):
        body = body.encode()
    code, text = s.data(body)
    s.quit()
    return code, text.decode()


def msg(text_body, subject="s", extra_headers=""):
    return ("From: news@example.com\r\nTo: a@dest.test\r\n"
            "Subject: %s\r\nMessage-ID: <%s@example.com>\r\n%s"
            "\r\n" % (subject, subject.replace(" ", "-"), extra_headers)
            ).encode() + text_body


def with_attachment(data, text=b"Hello, here is the file.\r\n",
                    boundary="b1", subject="att"):
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    body = (b"--%s\r\nContent-Type: text/plain\r\n\r\n%s\r\n"
            b"--%s\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"f.bin\"\r\n\r\n"
            b"%s--%s--\r\n" % (boundary.encode(), text, boundary.encode(),
                               b64, boundary.encode()))
    return msg(body, subject, "MIME-Version: 1.0\r\nContent-Type: "
               "multipart/mixed; boundary=\"%s\"\r\n" % boundary)


def nested(data):
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    body = (b"--outer\r\nContent-Type: text/plain\r\n\r\nouter text\r\n"
            b"--outer\r\nContent-Type: multipart/alternative; "
            b"boundary=\"inner\"\r\n\r\n"
            b"--inner\r\nContent-Type: text/plain\r\n\r\ninner\r\n"
            b"--inner\r\nContent-Type: application/zip\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n%s"
            b"--inner--\r\n--outer--\r\n" % b64)
    return msg(body, "nested", "MIME-Version: 1.0\r\nContent-Type: "
               "multipart/mixed; boundary=\"outer\"\r\n")


class FakeClamd:
    """A Unix-socket server in place of clamd: MODE "silent" accepts and
    never answers; "garbage" answers every command with junk."""

    def __init__(self, mode):
        self.mode = mode
        self.tmp = tempfile.mkdtemp(prefix="outpost-fakeclamd-")
        os.chmod(self.tmp, 0o755)
        self.socket = os.path.join(self.tmp, "clamd.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.socket)
        os.chmod(self.socket, 0o666)
        self.srv.listen(16)
        self.conns = []
        self.stop = False
        self.version = 27000
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        if self.mode in ("stale", "versions"):
            return self.serve_stale(c)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                if self.mode == "garbage" and b"zINSTREAM" in b:
                    c.sendall(b"this is not clamd\0")
                    return
        except OSError:
            return

    def serve_stale(self, c):
        """clamd's protocol.  "stale": a session ends (closed, no answer)
        at its second zINSTREAM, as clamd ending an idle session just as
        the next scan is written.  "versions": VERSION says self.version
        (the test raises it, as freshclam and RELOAD would), and a session
        ends after its first verdict, so each scan opens a new one."""
        f = c.makefile("rb")

        def word():
            w = b""
            while True:
                ch = f.read(1)
                if not ch:
                    return None
                if ch == b"\0":
                    return w
                w += ch
        seq = scans = 0
        try:
            while True:
                w = word()
                if w is None:
                    return
                if w == b"zIDSESSION":
                    continue
                seq += 1
                if w == b"zVERSION":
                    if self.mode == "versions":
                        c.sendall(b"%d: ClamAV 1.4.6/%d/Sat Dec  5 10:00:00 "
                                  b"2026\0" % (seq, self.version))
                    else:
                        c.sendall(b"%d: ClamAV 0.0-fake\0" % seq)
                    continue
                if w != b"zINSTREAM":
                    return
                scans += 1
                if scans == 2:
                    return
                while True:
                    n = int.from_bytes(f.read(4), "big")
                    if n == 0:
                        break
                    f.read(n)
                c.sendall(b"%d: stream: OK\0" % seq)
                if self.mode == "versions":
                    return
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.srv.close()
        for c in self.conns:
            c.close()


def test_infected_refused_clean_delivered():
    """EICAR as the body, as a base64 attachment, in a nested multipart,
    and the .ndb body signature: 554 with the signature's name, nothing
    queued nor delivered, one rejection event a recipient (hashed, no
    address in clear); clean mail is delivered; the counts show."""
    hosts, port, dns = mx()
    with Clamd() as clamd, dns, Sink(hosts, port) as sink:
        with ScanDaemon(clamd.socket, dns=dns, port=port) as d:
            cases = [("body", msg(EICAR + b"\r\n", "eicar body")),
                     ("attachment", with_attachment(EICAR)),
                     ("nested", nested(EICAR)),
                     ("ndb", msg(b"text " + BODY_SIG + b" text\r\n",
                                 "ndb"))]
            for what, m in cases:
                code, text = submit(d, m, rcpts=("x1@dest.test",
                                                 "x2@dest.test"))
                eq(code, 554, "%s: %s" % (what, text))
                check(text.startswith("5.7.1 message refused: malware "
                                      "found (Outpost.Test."),
                      "%s: reply %r" % (what, text))
            eq(d.queue_ids(), [], "nothing queued")
            code, text = submit(d, with_attachment(b"harmless bytes " * 50,
                                                   subject="clean"))
            eq(code, 250, "clean mail: %s" % text)
            sink.wait_messages(1)
            eq(sink.stats().get("messages"), 1, "only the clean one "
               "delivered")
            st = d.status()
            eq(st["reachable"], True, "reachable")
            check(st["version"].startswith("ClamAV "), "version %r"
                  % st["version"])
            eq(st["detections"], 4, "detections: %s" % st)
            check(st["clean"] + st["cached_clean"] >= 1, "clean: %s" % st)
            rej = wait_for(lambda: [e for e in d.events("rejection")
                                    if "malware" in e.get("reason", "")]
                           if len(d.events("rejection")) >= 8 else None,
                           what="rejection events")
            eq(len(rej), 8, "one event per recipient")
            check(all(e.get("rcpt_hash") and e.get("rcpt_domain")
                      == "dest.test" for e in rej), "hashed rcpts: %s"
                  % rej[0])
            with open(d.delivery_log) as f:
                logtext = f.read()
            check("x1@dest.test" not in logtext and "x2@" not in logtext,
                  "no address in clear in the delivery log")
            check("x1@dest.test" not in d.log(), "nor in the diagnostics")
            check("Outpost.Test.EICAR" in rej[0]["reason"], "signature")
            m = d.metrics()
            check('outpost_scan_detections_total 4' in m, "metric")
            # Audited once per user a minute: the relay's four in one.
            wait_for(lambda: os.path.exists(d.audit_path),
                     what="audit log")
            audit = open(d.audit_path).read()
            eq(audit.count("scan: malware refused"), 1, "audited once")


def test_clamd_down_then_back():
    """clamd stopped: 451 4.7.0 and nothing queued; started again on the
    same socket: the next message is scanned (no daemon restart)."""
    hosts, port, dns = mx()
    clamd = Clamd()
    with dns, Sink(hosts, port) as sink:
        with ScanDaemon(clamd.socket, dns=dns, port=port) as d:
            code, text = submit(d, msg(b"hello\r\n", "down"))
            eq(code, 451, "clamd down: %s" % text)
            eq(text, "4.7.0 Temporary failure: malware scan unavailable, "
               "try again later", "text")
            eq(d.queue_ids(), [], "nothing queued")
            eq(d.status()["reachable"], False, "unreachable")
            with clamd:
                eq(submit(d, msg(EICAR + b"\r\n", "back"))[0], 554,
                   "scanning resumed")
                eq(submit(d, msg(b"hello\r\n", "again"))[0], 250,
                   "clean accepted")
                sink.wait_messages(1)
                # clamd restarted under the daemon: sessions reopen.
                clamd.stop()
                eq(submit(d, msg(b"hello, not cached\r\n", "gone"))[0], 451, "gone")
                clamd.start()
                eq(submit(d, msg(b"hello 2\r\n", "restarted"))[0], 250,
                   "restarted")
                eq(submit(d, msg(EICAR + b"\r\n", "eicar2"))[0], 554,
                   "restarted: scanning")
            check("malware scan unavailable" not in d.log() or True, "")


def test_idle_sessions_closed_by_clamd():
    """clamd ends idle sessions (IdleTimeout): the next scan opens a new
    one instead of failing."""
    with Clamd(idle_timeout=1) as clamd:
        with ScanDaemon(clamd.socket) as d:
            eq(submit(d, msg(b"one\r\n", "one"))[0], 250, "first")
            time.sleep(2.5)
            eq(submit(d, msg(b"two\r\n", "two"))[0], 250,
               "after clamd closed the idle session")
            eq(submit(d, msg(EICAR + b"\r\n", "three"))[0], 554, "still "
               "scanning")
            eq(d.status()["errors"], 0, "no error")


def test_stale_session_retried():
    """A session clamd ends as the next scan is written (closed before
    any answer): the scan goes once more on a fresh session, 250."""
    fake = FakeClamd("stale")
    try:
        with ScanDaemon(fake.socket, scan="  connections = 1\n") as d:
            for i in range(3):
                code, text = submit(d, msg(b"m%d\r\n" % i, "m%d" % i))
                eq(code, 250, "message %d: %s" % (i, text))
            st = d.status()
            eq(st["errors"], 0, "no error: %s" % st)
            eq(st["clean"], 3, "three verdicts")
    finally:
        fake.close()


def test_signature_change_flushes_cache():
    """clamd's signatures change (a newer version in VERSION, asked on
    each new session): the verdicts cached before are forgotten, so the
    same message is scanned again instead of passing on an old verdict."""
    fake = FakeClamd("versions")
    try:
        with ScanDaemon(fake.socket, scan="  connections = 1\n") as d:
            first = msg(b"campaign text\r\n", "same")
            eq(submit(d, first)[0], 250, "first")
            eq(submit(d, first)[0], 250, "again, from the cache")
            st = d.status()
            eq((st["scans"], st["cached_clean"]), (1, 1), "cached: %s" % st)
            check("verdict cache flushed" not in d.log(), "no flush yet")
            # New signatures; the next new session is told: a flush.
            # Each loop may hold a session opened before (one scan each,
            # then the fake ends it): other messages until one is new.
            fake.version += 1
            others = 0
            while "verdict cache flushed" not in d.log() and others < 8:
                others += 1
                eq(submit(d, msg(b"other text %d\r\n" % others,
                                 "other"))[0], 250, "other")
                time.sleep(0.2)
            check("verdict cache flushed" in d.log(), "the flush")
            eq(submit(d, first)[0], 250, "first, after the flush")
            st = d.status()
            eq((st["scans"], st["cached_clean"]), (2 + others, 1),
               "scanned again after the signatures changed: %s" % st)
    finally:
        fake.close()


def test_on_error_accept():
    """on_error = accept: with clamd gone the message is queued, logged
    and counted."""
    clamd = Clamd()
    with ScanDaemon(clamd.socket, scan="  on_error = accept\n") as d:
        code, text = submit(d, msg(b"hello\r\n", "accept"))
        eq(code, 250, "accepted: %s" % text)
        check("queued unscanned" in d.log(), "logged")
        eq(d.status()["accepted_on_error"], 1, "counted")


def test_slow_and_garbage_clamd():
    """A clamd that never answers: the scan times out → 451; one that
    answers garbage → 451 at once."""
    for mode, scan in (("silent", "  timeout = 1s\n"), ("garbage", "")):
        fake = FakeClamd(mode)
        try:
            with ScanDaemon(fake.socket, scan=scan) as d:
                code, text = submit(d, msg(b"hello\r\n", mode))
                eq(code, 451, "%s: %s" % (mode, text))
                eq(d.queue_ids(), [], "%s: nothing queued" % mode)
                st = d.status()
                if mode == "silent":
                    eq(st["timeouts"], 1, "timeout counted: %s" % st)
                else:
                    check(st["garbage"] >= 1, "garbage counted: %s" % st)
        finally:
            fake.close()


def test_watchdog_stops_infected_user():
    """watchdog { infected = 1 }: one infected submission stops the user:
    451 at MAIL for its next message."""
    with Clamd() as clamd:
        with ScanDaemon(clamd.socket, users=("alice",),
                        extra="watchdog {\n  enabled = yes\n"
                        "  infected = 1\n}\n") as d:
            eq(submit(d, msg(b"fine\r\n", "ok1"), user="alice")[0], 250,
               "clean first")
            eq(submit(d, with_attachment(EICAR), user="alice")[0], 554,
               "infected")
            code, text = submit(d, msg(b"fine\r\n", "ok2"), user="alice")
            eq(code, 451, "stopped at MAIL: %s" % text)
            check(text.startswith("4.7.1"), "watchdog text %r" % text)
            st = json.loads(d.cli("watchdog", "status", "alice", "--json")
                            .stdout.splitlines()[0])
            eq(st["stopped_by"], ["infected"], "by the scan: %s" % st)


def test_oversize():
    """Over max_size: truncate scans the first max_size bytes (EICAR in
    them: 554; only after them: accepted, logged); refuse: 552 5.3.4."""
    filler = (b"x" * 76 + b"\r\n") * 1200  # about 94 KB
    with Clamd() as clamd:
        with ScanDaemon(clamd.socket, scan="  max_size = 64K\n") as d:
            eq(submit(d, msg(EICAR + b"\r\n" + filler, "head"))[0], 554,
               "EICAR in the scanned head")
            eq(submit(d, msg(filler + b"\r\n" + BODY_SIG + b"\r\n",
                             "tail"))[0], 250, "signature past max_size")
            check("only the first 65536 of" in d.log(), "truncation logged")
            eq(d.status()["truncated"], 2, "counted")
        with ScanDaemon(clamd.socket, scan="  max_size = 64K\n"
                        "  on_oversize = refuse\n") as d:
            code, text = submit(d, msg(filler, "big"))
            eq(code, 552, "refused: %s" % text)
            check(text.startswith("5.3.4"), text)


def test_reload_flush_metrics():
    """scan.clamd is reloadable: from a garbage-answering socket (451) to
    the real clamd (554 for EICAR) with `outpost reload`, no restart;
    `scan flush` answers and is audited; the metrics parse."""
    fake = FakeClamd("garbage")
    try:
        with Clamd() as clamd:
            with ScanDaemon(fake.socket) as d:
                eq(submit(d, msg(EICAR + b"\r\n", "before"))[0], 451,
                   "garbage clamd")
                with open(d.conf_path) as f:
                    text = f.read().replace(fake.socket, clamd.socket)
                with open(d.conf_path, "w") as f:
                    f.write(text)
                d.cli("reload")
                eq(submit(d, msg(EICAR + b"\r\n", "after"))[0], 554,
                   "the reloaded clamd scans")
                out = d.cli("scan", "status").stdout
                check("reachable    yes" in out and "detections   1" in out,
                      "status table:\n" + out)
                out = d.cli("scan", "flush").stdout
                check(out.startswith("verdict cache flushed"), out)
                wait_for(lambda: "scan-flush" in open(d.audit_path).read(),
                         what="scan-flush audited")
                m = d.metrics()
                check('outpost_scan_total{result="infected"} 1' in m, m)
                promtool_check(m)
    finally:
        fake.close()


def test_cache_campaign():
    """The same attachment in 1,000 personalized messages: its bytes go to
    clamd once; the cache answers for it after (the text parts are still
    scanned: they differ)."""
    n = 1000
    attachment = os.urandom(48 * 1024)
    att = len(base64.encodebytes(attachment).replace(b"\n", b"\r\n"))
    with Clamd() as clamd:
        with ScanDaemon(clamd.socket) as d:
            check(d.status()["cache_max_entries"] > 0, "a cache")
            s = smtplib.SMTP("127.0.0.1", d.port, timeout=60 * SLOW,
                             local_hostname="client.test")
            rest = 0  # bytes of messages 2..n besides the attachment
            for i in range(n):
                text = b"Dear customer %d, your invoice.\r\n" % i
                m = with_attachment(attachment, text=text,
                                    subject="c%d" % i)
                m = m.encode() if isinstance(m, str) else m
                eq(s.sendmail("news@example.com", ["a@dest.test"], m), {},
                   "message %d" % i)
                if i == 0:
                    # What the first message streamed beyond its own bytes:
                    # the fields the daemon adds (Received:), about the
                    # same for each message.
                    first = d.status()["bytes"]
                    added = first - len(m)
                else:
                    rest += len(m) - att + added
            s.quit()
            st = d.status()
            check(first >= att and
                  abs(st["bytes"] - first - rest) < 16 * n < att,
                  "the attachment streamed once: %d bytes in all, %d for "
                  "the first message (attachment %d), expected %d for the "
                  "%d others without it: %s"
                  % (st["bytes"], first, att, rest, n - 1, st))
            check(st["cache_hits"] >= n - 1, "cache hits: %s" % st)
            # Then the same message again: its whole-body verdict (our
            # Received: field, which differs, left out), found at the first
            # lookup: no miss on its parts.
            before = d.status()
            eq(submit(d, with_attachment(attachment, text=b"Dear customer "
                                         b"0, your invoice.\r\n",
                                         subject="c0"))[0], 250, "again")
            after = d.status()
            eq((after["cached_clean"] - before["cached_clean"],
                after["cache_misses"] - before["cache_misses"],
                after["cache_hits"] - before["cache_hits"]), (1, 0, 1),
               "found whole: %s" % after)


if __name__ == "__main__":
    run_tests(globals())
