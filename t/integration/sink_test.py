#!/usr/bin/python3
"""Self-test of outpost-sink, the SMTP receiver that plays remote MX hosts
in Outpost's delivery tests and benchmarks: acceptance and the maildir,
every behaviour rule, STARTTLS and --tls-broken, PIPELINING, BDAT, the
stats file (peak concurrency, per-listener and per-client counts), limits,
timeouts, loopback-only listening, and garbage input.  Loopback only."""

import json
import os
import random
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SANITIZER_MARKS, SLOW, TOOLS, Raw,  # noqa: E402
                          TestFailure, check, eq, free_port, insecure_tls,
                          run_tests)

SINK = os.path.join(TOOLS, "outpost-sink")
MSG = (b"From: news@campaign.example\r\nTo: user@d.test\r\n"
       b"Subject: sink\r\n\r\nline one\r\n.starts with a dot\r\n"
       b"..two dots\r\nlast line\r\n")


class Sink:
    """A private outpost-sink on free loopback ports.

    listen: list of host strings ("127.0.0.1", "127.0.0.2", "::1"); the
    ports are picked here.  self.port is the first listener's port."""

    def __init__(self, *args, listen=("127.0.0.1",), maildir=True):
        self.tmp = tempfile.mkdtemp(prefix="outpost-sink-t-")
        self.stats_path = os.path.join(self.tmp, "stats.json")
        self.ready = os.path.join(self.tmp, "ready")
        self.maildir = os.path.join(self.tmp, "maildir") if maildir else None
        self.log_path = os.path.join(self.tmp, "sink.log")
        self.addrs = []
        for host in listen:
            port = free_port(host if host != "::1" else "127.0.0.1")
            if host == "::1":
                self.addrs.append(("::1", port, "[::1]:%d" % port))
            else:
                self.addrs.append((host, port, "%s:%d" % (host, port)))
        self.port = self.addrs[0][1]
        self.args = []
        for _, _, spec in self.addrs:
            self.args += ["--listen", spec]
        self.args += ["--stats", self.stats_path, "--ready-file", self.ready]
        if self.maildir:
            self.args += ["--maildir", self.maildir]
        self.args += [str(a) for a in args]
        self.proc = None

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SINK] + self.args, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10 * SLOW
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                raise TestFailure("outpost-sink exited %d at start:\n%s"
                                  % (self.proc.returncode, self.log()))
            if time.time() > deadline:
                raise TestFailure("outpost-sink not ready")
            time.sleep(0.01)
        with open(self.ready) as f:
            eq(f.read(), "ready\n", "ready file")
        return self

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("outpost-sink ignored SIGTERM")
        self.proc = None
        self.logf.close()
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise TestFailure("sanitizer report:\n" + text[-4000:])
        eq(rc, 0, "exit status on SIGTERM")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        try:
            self.stop()
        finally:
            if et is not None:
                sys.stderr.write("--- sink log ---\n%s\n" % self.log()[-3000:])
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def smtp(self, port=None, host="127.0.0.1", source=None):
        return smtplib.SMTP(host, port or self.port, timeout=10 * SLOW,
                            local_hostname="client.test",
                            source_address=source)

    def stats(self, pred=lambda d: True, timeout=5):
        """The stats file once pred(stats) holds (it is rewritten within
        100 ms of a change)."""
        deadline = time.time() + timeout * SLOW
        d = None
        while True:
            try:
                with open(self.stats_path) as f:
                    d = json.load(f)
                if pred(d):
                    return d
            except (OSError, ValueError):
                pass
            if time.time() > deadline:
                raise TestFailure("stats never matched; last: %r" % (d,))
            time.sleep(0.02)

    def messages(self, n, timeout=5):
        """The n stored messages, in order, as bytes."""
        deadline = time.time() + timeout * SLOW
        while True:
            names = sorted(f for f in os.listdir(self.maildir)
                           if f.endswith(".eml"))
            if len(names) >= n:
                break
            if time.time() > deadline:
                raise TestFailure("%d messages stored, want %d"
                                  % (len(names), n))
            time.sleep(0.02)
        eq(len(names), n, "stored messages")
        out = []
        for name in names:
            with open(os.path.join(self.maildir, name), "rb") as f:
                out.append(f.read())
        return out


def envelope(stored):
    """The X-Sink-Envelope fields and the message after that line."""
    head, rest = stored.split(b"\r\n", 1)
    check(head.startswith(b"X-Sink-Envelope: "), "envelope line first")
    fields = {}
    for item in head[len(b"X-Sink-Envelope: "):].decode().split(" "):
        k, v = item.split("=", 1)
        fields[k] = v
    return fields, rest


def send(sink, rcpts, msg=MSG, sender="news@campaign.example"):
    s = sink.smtp()
    try:
        return s.sendmail(sender, rcpts, msg)
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def test_accept_and_maildir():
    with Sink() as k:
        send(k, ["jane@d.test", "joe@d.test"])
        (m,) = k.messages(1)
        env, body = envelope(m)
        eq(env["from"], "<news@campaign.example>", "from")
        eq(env["to"], "<jane@d.test>,<joe@d.test>", "to")
        eq(env["tls"], "none", "tls")
        eq(env["src"], "127.0.0.1", "src")
        eq(env["listen"], "127.0.0.1:%d" % k.port, "listen")
        eq(env["helo"], "client.test", "helo")
        eq(body, MSG, "message text, dot-unstuffed, as sent")
        d = k.stats(lambda d: d["messages"] == 1)
        eq(d["recipients"], 2, "recipients")
        eq(d["bytes"], len(MSG), "bytes")
        check(os.listdir(k.maildir) == ["00000001.eml"],
              "no temporary files left: %r" % os.listdir(k.maildir))


def test_builtin_rules():
    with Sink("--slow-ms", 600) as k:
        s = k.smtp()
        s.ehlo()
        s.mail("news@campaign.example")
        code, text = s.rcpt("defer.x@d.test")
        eq(code, 451, "defer")
        check(text.startswith(b"4.2.1 <defer.x@d.test>"),
              "defer echoes the address: %r" % text)
        code, text = s.rcpt("Reject-7@d.test")
        eq(code, 550, "reject (prefix is case-insensitive)")
        eq(text, b"5.1.1 <Reject-7@d.test>: user unknown", "reject text")
        code, _ = s.rcpt("deferonce1@d.test")
        eq(code, 451, "deferonce, first time")
        code, _ = s.rcpt("deferonce1@d.test")
        eq(code, 250, "deferonce, second time")
        code, _ = s.rcpt("plain@d.test")
        eq(code, 250, "plain")
        eq(s.data(MSG)[0], 250, "data with accepted recipients")
        # datadefer and datareject: accepted at RCPT, refused at the dot.
        for who, want, enh in (("datadefer9", 451, b"4.3.0"),
                               ("datareject", 554, b"5.7.1")):
            s.mail("news@campaign.example")
            eq(s.rcpt(who + "@d.test")[0], 250, who + " at RCPT")
            eq(s.rcpt("other@d.test")[0], 250, "other at RCPT")
            code, text = s.data(MSG)
            eq(code, want, who + " at end of data")
            check(text.startswith(enh), "%s: %r" % (who, text))
        # slow: the end-of-data reply waits --slow-ms.
        s.mail("news@campaign.example")
        s.rcpt("slowpoke@d.test")
        t0 = time.time()
        eq(s.data(MSG)[0], 250, "slow accepted")
        check(time.time() - t0 >= 0.55, "slow reply waited %.2fs"
              % (time.time() - t0))
        # close421: 421 at RCPT and the connection is closed.
        s.mail("news@campaign.example")
        code, text = s.rcpt("close421@d.test")
        eq(code, 421, "close421")
        try:
            s.noop()
            raise TestFailure("connection still open after close421")
        except smtplib.SMTPServerDisconnected:
            pass
        d = k.stats(lambda d: d["messages"] == 2 and
                    d["connections_now"] == 0)
        eq(d["deferred_rcpt"], 3, "deferred_rcpt (defer, deferonce, 421)")
        eq(d["rejected_rcpt"], 1, "rejected_rcpt")
        eq(d["data_deferred"], 1, "data_deferred")
        eq(d["data_rejected"], 1, "data_rejected")
        eq(d["recipients"], 3, "recipients of accepted messages")
        eq(len(k.messages(2)), 2, "only accepted messages stored")


def test_rules_file():
    tmp = tempfile.mkdtemp(prefix="outpost-sink-rules-")
    try:
        rules = os.path.join(tmp, "rules")
        with open(rules, "w") as f:
            f.write("# comment\n\n"
                    "defer rcpt 452 4.2.2 <%a>: over quota\n"
                    "full rcpt 552 5.2.2 <%a>: mailbox full (100%%)\n"
                    "grey once 450 4.7.1 greylisted %a\n"
                    "bye close 421 4.3.2 shutting down\n"
                    "spam data 550 5.7.1 spam\n"
                    "hold delay:300\n"
                    "holdfail delay:200 451 4.4.1 slow and failed\n")
        with Sink("--rules", rules) as k:
            s = k.smtp()
            s.ehlo()
            s.mail("a@b.test")
            eq(s.rcpt("defer@d.test"), (452, b"4.2.2 <defer@d.test>: "
                                             b"over quota"),
               "file rule beats the built-in")
            eq(s.rcpt("full.1@d.test"), (552, b"5.2.2 <full.1@d.test>: "
                                              b"mailbox full (100%)"),
               "rcpt rule, %% escape")
            eq(s.rcpt("grey@d.test")[0], 450, "once, first")
            eq(s.rcpt("grey@d.test")[0], 250, "once, again")
            eq(s.rcpt("reject@d.test")[0], 550, "built-ins still apply")
            eq(s.data(MSG)[0], 250, "accepted")
            s.mail("a@b.test")
            s.rcpt("holdme@d.test")
            t0 = time.time()
            eq(s.data(MSG)[0], 250, "delay rule, normal reply")
            check(time.time() - t0 >= 0.25, "delay:300 waited")
            s.mail("a@b.test")
            s.rcpt("holdfail@d.test")
            eq(s.data(MSG), (451, b"4.4.1 slow and failed"),
               "delay rule with a reply (longest prefix wins)")
            s.mail("a@b.test")
            s.rcpt("spam@d.test")
            eq(s.data(MSG)[0], 550, "data rule")
            s.mail("a@b.test")
            eq(s.rcpt("bye@d.test"), (421, b"4.3.2 shutting down"), "close")
            check(disconnected(s), "closed after the close rule")
        # A bad rules file stops the sink with file:line.
        with open(rules, "a") as f:
            f.write("oops sometimes 250 ok\n")
        r = subprocess.run([SINK, "--listen", "127.0.0.1:%d" % free_port(),
                            "--rules", rules], capture_output=True,
                           text=True, timeout=30)
        eq(r.returncode, 2, "bad rules file exit status")
        check("%s:10:" % rules in r.stderr, "file:line in %r" % r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def disconnected(s):
    try:
        s.noop()
    except smtplib.SMTPServerDisconnected:
        return True
    return False


def test_starttls():
    with Sink("--starttls") as k:
        s = k.smtp()
        s.ehlo()
        check(s.has_extn("starttls"), "STARTTLS offered")
        s.starttls(context=insecure_tls())
        s.ehlo()
        check(not s.has_extn("starttls"), "no STARTTLS inside TLS")
        version = s.sock.version()
        s.sendmail("a@b.test", ["u@d.test"], MSG)
        s.quit()
        (m,) = k.messages(1)
        env, _ = envelope(m)
        eq(env["tls"], version, "tls= in the envelope line")
        d = k.stats(lambda d: d["messages"] == 1)
        eq(d["tls_connections"], 1, "tls_connections")
    tmp = tempfile.mkdtemp(prefix="outpost-sink-cert-")
    try:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                        "-subj", "/CN=mx.sink.test"], check=True,
                       capture_output=True, timeout=60)
        with Sink("--starttls", "--cert", cert, "--key", key,
                  "--tls-max", "1.2") as k:
            s = k.smtp()
            s.starttls(context=insecure_tls())
            eq(s.sock.version(), "TLSv1.2", "--tls-max 1.2")
            der = s.sock.getpeercert(binary_form=True)
            with open(cert) as f:
                pem = f.read()
            eq(der, ssl.PEM_cert_to_DER_cert(pem), "the --cert certificate")
            s.quit()
            # A client that wants TLS 1.3 meets --tls-max 1.2.
            ctx = insecure_tls()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            s = k.smtp()
            try:
                s.starttls(context=ctx)
                raise TestFailure("TLS 1.3-only client got through")
            except (ssl.SSLError, OSError, smtplib.SMTPException):
                pass
            d = k.stats(lambda d: d["tls_failures"] == 1)
            eq(d["tls_connections"], 1, "one good handshake")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_tls_broken():
    for mode in ("close", "garbage", "hang"):
        args = ["--tls-broken=" + mode] if mode != "close" else [
            "--tls-broken"]
        with Sink(*args) as k:
            s = k.smtp()
            s.ehlo()
            check(s.has_extn("starttls"), mode + ": STARTTLS offered")
            code, _ = s.docmd("STARTTLS")
            eq(code, 220, mode + ": 220 to STARTTLS")
            ctx = insecure_tls()
            s.sock.settimeout(1.0 * SLOW)
            try:
                ctx.wrap_socket(s.sock)
                raise TestFailure(mode + ": handshake succeeded")
            except (ssl.SSLError, OSError, socket.timeout):
                pass
            s.close()
            k.stats(lambda d: d["tls_broken"] == 1)


def test_pipelining():
    with Sink("--chunking") as k:
        r = Raw(k.port)
        eq(r.reply()[0], 220, "greeting")
        code, text = r.cmd("EHLO client.test")
        check("PIPELINING" in text, "PIPELINING offered")
        # One write: two transactions' envelopes, replies come in order.
        r.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<one@d.test>\r\n"
               "RCPT TO:<reject@d.test>\r\nRCPT TO:<two@d.test>\r\nDATA\r\n")
        got = [r.reply()[0] for _ in range(5)]
        eq(got, [250, 250, 550, 250, 354], "pipelined replies in order")
        r.send(b"Subject: p1\r\n\r\n..x\r\n.\r\n"
               b"MAIL FROM:<a@b.test>\r\nRCPT TO:<three@d.test>\r\nDATA\r\n")
        got = [r.reply()[0] for _ in range(4)]
        eq(got, [250, 250, 250, 354], "data end + next envelope")
        r.send(b"Subject: p2\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        got = [r.reply()[0] for _ in range(4)]
        eq(got, [250, 250, 250, 221], "end of data, RSET, NOOP, QUIT")
        check(r.closed(), "closed after QUIT")
        m1, m2 = k.messages(2)
        eq(envelope(m1)[1], b"Subject: p1\r\n\r\n.x\r\n", "first message")
        eq(envelope(m1)[0]["to"], "<one@d.test>,<two@d.test>", "first to")
        eq(envelope(m2)[1], b"Subject: p2\r\n\r\nbody\r\n", "second message")
        d = k.stats(lambda d: d["messages"] == 2)
        check(d["pipelined_commands"] >= 4, "pipelined_commands %d"
              % d["pipelined_commands"])


def test_half_close():
    """A client that pipelines to the end and shuts down its side still
    gets every reply (the delayed one included)."""
    with Sink("--slow-ms", 200) as k:
        with socket.create_connection(("127.0.0.1", k.port),
                                      timeout=10 * SLOW) as c:
            c.sendall(b"HELO x\r\nMAIL FROM:<a@b.test>\r\n"
                      b"RCPT TO:<slow@d.test>\r\nDATA\r\nhi\r\n.\r\n")
            c.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        codes = [int(line[:3]) for line in data.split(b"\r\n") if line]
        eq(codes, [220, 250, 250, 250, 354, 250], "replies after half-close")


def test_bdat():
    body = b"Subject: chunks\r\n\r\n.not stuffed\r\n" + bytes(range(128, 256))
    with Sink("--chunking") as k:
        r = Raw(k.port)
        r.reply()
        check("CHUNKING" in r.cmd("EHLO client.test")[1], "CHUNKING offered")
        r.send(b"MAIL FROM:<a@b.test> BODY=8BITMIME\r\nRCPT TO:<c@d.test>\r\n"
               b"BDAT 10\r\n" + body[:10] + b"BDAT %d LAST\r\n"
               % (len(body) - 10) + body[10:])
        got = [r.reply()[0] for _ in range(4)]
        eq(got, [250, 250, 250, 250], "BDAT replies")
        # A chunk without a transaction is read and refused; then on.
        r.send(b"BDAT 7 LAST\r\nabcdefgNOOP\r\n")
        eq(r.reply()[0], 503, "BDAT without MAIL")
        eq(r.reply()[0], 250, "session continues after the chunk")
        r.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@d.test>\r\nBDAT 0 LAST\r\n")
        eq([r.reply()[0] for _ in range(3)], [250, 250, 250], "BDAT 0 LAST")
        r.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@d.test>\r\nBDAT 2\r\nabDATA\r\n")
        eq([r.reply()[0] for _ in range(4)], [250, 250, 250, 503],
           "DATA after BDAT")
        r.cmd("QUIT")
        m1, m2 = k.messages(2)
        env, text = envelope(m1)
        eq(text, body, "BDAT text stored as sent (no unstuffing)")
        eq(env["body"], "8BITMIME", "BODY= recorded")
        eq(envelope(m2)[1], b"", "empty message")
        d = k.stats(lambda d: d["messages"] == 2)
        eq(d["bdat_messages"], 2, "bdat_messages")
    with Sink() as k:
        r = Raw(k.port)
        r.reply()
        check("CHUNKING" not in r.cmd("EHLO client.test")[1],
              "CHUNKING off by default")
        eq(r.cmd("BDAT 3 LAST")[0], 502, "BDAT when not offered")


def hold_connections(k, n, host="127.0.0.1", source=None, port=None):
    out = []
    for _ in range(n):
        r = Raw.__new__(Raw)
        r.sock = socket.create_connection(
            (host, port or k.port), timeout=10 * SLOW,
            source_address=(source, 0) if source else None)
        r.buf = b""
        eq(r.reply()[0], 220, "greeting")
        out.append(r)
    return out


def test_stats_and_concurrency():
    with Sink(listen=("127.0.0.1", "127.0.0.2")) as k:
        port2 = k.addrs[1][1]
        errors = []

        def one(i):
            try:
                s = k.smtp(source=("127.0.0.3", 0))
                s.ehlo()
                s.mail("a@b.test")
                s.rcpt("u%d@d.test" % i)
                barrier.wait(timeout=10 * SLOW)  # all 5 open at once
                s.data(MSG)
                s.quit()
            except Exception as e:  # noqa: BLE001 — reported below
                errors.append(e)

        barrier = threading.Barrier(5)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        eq(errors, [], "parallel sessions")
        held = hold_connections(k, 2, source="127.0.0.2", port=port2,
                                host="127.0.0.2")
        d = k.stats(lambda d: d["connections_now"] == 2)
        for r in held:
            r.close()
        d = k.stats(lambda d: d["connections_now"] == 0)
        eq(d["connections_max"], 5, "peak concurrency")
        eq(d["connections_total"], 7, "connections_total")
        eq(d["messages"], 5, "messages")
        l1 = d["listeners"]["127.0.0.1:%d" % k.port]
        l2 = d["listeners"]["127.0.0.2:%d" % port2]
        eq((l1["connections"], l1["messages"], l1["connections_max"]),
           (5, 5, 5), "first listener")
        eq((l2["connections"], l2["messages"], l2["connections_max"]),
           (2, 0, 2), "second listener")
        eq(d["clients"]["127.0.0.3"]["connections"], 5, "client 127.0.0.3")
        eq(d["clients"]["127.0.0.2"]["connections"], 2, "client 127.0.0.2")
        check(isinstance(d["first_message_time"], float) and
              abs(d["first_message_time"] - time.time()) < 60,
              "first_message_time")
        check(d["last_message_time"] >= d["first_message_time"],
              "last_message_time")
        eq(sum(c for _, c in d["messages_per_second"]), 5, "msg histogram")
        eq(sum(c for _, c in d["connections_per_second"]), 7,
           "connection histogram")
        for sec, _ in d["messages_per_second"]:
            check(isinstance(sec, int) and abs(sec - time.time()) < 60,
                  "histogram seconds are unix seconds")
        # SIGUSR1 rewrites the file even when nothing changed; so does
        # the exit.
        os.unlink(k.stats_path)
        k.proc.send_signal(signal.SIGUSR1)
        k.stats(lambda d: d["messages"] == 5)
        os.unlink(k.stats_path)
        k.stop()
        with open(k.stats_path) as f:
            eq(json.load(f)["messages"], 5, "stats written at exit")


def test_many_listeners():
    """1,000 listeners (the receivers benchmark's MX hosts on 127.1.x.y),
    started under a soft descriptor limit of 256: the sink takes the hard
    limit itself, and every listener answers and is counted apart."""
    import resource
    hosts = ["127.1.%d.%d" % (i // 250, i % 250 + 1) for i in range(1000)]
    k = Sink(listen=hosts, maildir=False)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        print("skip: hard RLIMIT_NOFILE %d < 2048" % hard)
        return

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    k.logf = open(k.log_path, "ab")
    k.proc = subprocess.Popen([SINK] + k.args, stdout=k.logf,
                              stderr=subprocess.STDOUT,
                              preexec_fn=low_nofile)
    try:
        deadline = time.time() + 20 * SLOW
        while not os.path.exists(k.ready):
            if k.proc.poll() is not None:
                raise TestFailure("outpost-sink exited %d with 1,000 "
                                  "listeners:\n%s"
                                  % (k.proc.returncode, k.log()[-2000:]))
            check(time.time() < deadline, "1,000 listeners ready")
            time.sleep(0.02)
        held = []
        for host, port, _ in k.addrs[-300:]:
            held.append(socket.create_connection((host, port),
                                                 timeout=5 * SLOW))
        d = k.stats(lambda d: d["connections_now"] == 300, timeout=10)
        eq(len(d["listeners"]), 1000, "listeners in the stats")
        last = d["listeners"][k.addrs[-1][2]]
        eq((last["connections"], last["connections_now"]), (1, 1),
           "the last listener's count")
        for c in held:
            c.close()
        k.stats(lambda d: d["connections_now"] == 0, timeout=10)
    except BaseException:
        if k.proc.poll() is None:
            k.proc.kill()
        k.proc.wait()
        k.proc = None
        sys.stderr.write("--- sink log ---\n%s\n" % k.log()[-3000:])
        raise
    k.__exit__(None, None, None)


def test_limits():
    with Sink("--max-connections", 2, "--max-msgs-per-conn", 2,
              "--max-rcpt", 3, "--max-size", 2000) as k:
        held = hold_connections(k, 2)
        r = Raw(k.port)
        code, text = r.reply()
        eq(code, 421, "over --max-connections")
        check(r.closed(), "refused connection closed")
        for h in held:
            h.close()
        k.stats(lambda d: d["connections_now"] == 0)
        s = k.smtp()
        s.ehlo()
        eq(s.docmd("MAIL FROM:<a@b.test> SIZE=5000")[0], 552, "SIZE=")
        s.mail("a@b.test")
        for i in range(3):
            s.rcpt("u%d@d.test" % i)
        eq(s.rcpt("u3@d.test")[0], 452, "--max-rcpt")
        eq(s.data(MSG)[0], 250, "message 1")
        s.mail("a@b.test")
        s.rcpt("u@d.test")
        eq(s.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")[0], 552,
           "over --max-size")
        code, _ = s.docmd("MAIL FROM:<a@b.test>")
        eq(code, 421, "--max-msgs-per-conn")
        d = k.stats(lambda d: d["connections_refused"] == 1)
        eq(d["connections_max"], 2, "refused ones do not count as live")


def test_replies_and_delays():
    with Sink("--mail-reply", "451 4.3.2 <%a> try later",
              "--greeting-delay-ms", 300) as k:
        t0 = time.time()
        s = k.smtp()
        check(time.time() - t0 >= 0.25, "greeting delayed")
        s.ehlo()
        eq(s.mail("a@b.test"), (451, b"4.3.2 <a@b.test> try later"),
           "--mail-reply")
        s.quit()
    with Sink("--reply-delay-ms", 100, "--data-reply", "250 2.0.0 fine") as k:
        t0 = time.time()
        s = k.smtp()
        s.ehlo()
        s.mail("a@b.test")
        s.rcpt("u@d.test")
        eq(s.data(MSG), (250, b"2.0.0 fine"), "--data-reply")
        # greeting, EHLO, MAIL, RCPT, DATA, end of data: 6 replies.
        check(time.time() - t0 >= 0.55, "every reply delayed")
        s.quit()
    with Sink("--greeting-reply", "554 5.7.1 no service here") as k:
        r = Raw(k.port)
        eq(r.reply()[0], 554, "greeting reply")
        eq(r.cmd("EHLO x")[0], 503, "nothing but QUIT after 554")
        eq(r.cmd("QUIT")[0], 221, "QUIT")


def test_8bit_and_smtputf8():
    with Sink("--no-8bitmime", "--no-smtputf8") as k:
        s = k.smtp()
        s.ehlo()
        check(not s.has_extn("8bitmime"), "no 8BITMIME")
        check(not s.has_extn("smtputf8"), "no SMTPUTF8")
        eq(s.docmd("MAIL FROM:<a@b.test> BODY=8BITMIME")[0], 555, "BODY=")
        eq(s.docmd("MAIL FROM:<a@b.test> SMTPUTF8")[0], 555, "SMTPUTF8")
        s.mail("a@b.test")
        s.rcpt("u@d.test")
        eq(s.data("Subject: é\r\n\r\nbody\r\n".encode())[0], 554,
           "8-bit text to a 7-bit receiver")
        s.quit()
    with Sink() as k:
        r = Raw(k.port)
        r.reply()
        r.cmd("EHLO client.test")
        eq(r.cmd("MAIL FROM:<jöe@b.test>")[0], 553, "UTF-8 without SMTPUTF8")
        eq(r.cmd("MAIL FROM:<jöe@b.test> SMTPUTF8 BODY=8BITMIME")[0], 250,
           "UTF-8 with SMTPUTF8")
        eq(r.cmd("RCPT TO:<ünï@d.test>")[0], 250, "UTF-8 recipient")
        eq(r.cmd("DATA")[0], 354, "DATA")
        r.send("Subject: é\r\n\r\nbody\r\n.\r\n")
        eq(r.reply()[0], 250, "8-bit text accepted")
        r.cmd("QUIT")
        (m,) = k.messages(1)
        env, _ = envelope(m)
        eq(env["smtputf8"], "yes", "smtputf8 recorded")
        eq(env["body"], "8BITMIME", "body recorded")


def test_timeout():
    with Sink("--timeout-s", 1) as k:
        r = Raw(k.port)
        r.reply()
        eq(r.reply()[0], 421, "idle session told 421")
        check(r.closed(), "and closed")
        k.stats(lambda d: d["timeouts"] == 1)


def test_loopback_only():
    for spec in ("0.0.0.0:%d", "192.0.2.1:%d", "[::]:%d", "localhost:%d",
                 "[::ffff:127.0.0.1]:%d", "10.0.0.1:%d"):
        spec = spec % free_port()
        r = subprocess.run([SINK, "--listen", spec], capture_output=True,
                           text=True, timeout=30)
        eq(r.returncode, 2, "--listen %s refused" % spec)
        check(spec in r.stderr, "message names %s: %r" % (spec, r.stderr))


def test_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
    except OSError:
        print("# skip: no ::1")
        return
    with Sink(listen=("::1",)) as k:
        s = k.smtp(host="::1")
        s.sendmail("a@b.test", ["u@d.test"], MSG)
        s.quit()
        (m,) = k.messages(1)
        env, _ = envelope(m)
        eq(env["listen"], "[::1]:%d" % k.port, "listen")
        eq(env["src"], "::1", "src")
        d = k.stats(lambda d: d["messages"] == 1)
        check("[::1]:%d" % k.port in d["listeners"], "listener key")


def test_garbage():
    rnd = random.Random(5321)
    junk = [b"\x00" * 100 + b"\r\n", b"x" * 10000 + b"\r\n",
            b"MAIL FROM:<" + b"a" * 3000 + b">\r\n", b"EHLO\n", b"\r\n",
            b"BDAT 99999999999999999999999 LAST\r\n",
            b"BDAT -1\r\n", b"RCPT TO:<>\r\n", b"DATA\r\n",
            b"MAIL FROM:<a@b> SIZE=-5 FOO=bar\r\n",
            b"MAIL FROM:a@b\r\nRCPT TO:<\r\n", b"STARTTLS junk\r\n",
            b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
            b"bare\nlf\r\n.\n.\r\n"]
    with Sink("--chunking", "--starttls") as k:
        for i in range(60):
            try:
                with socket.create_connection(("127.0.0.1", k.port),
                                              timeout=2 * SLOW) as c:
                    for _ in range(rnd.randint(1, 6)):
                        if rnd.random() < 0.5:
                            c.sendall(rnd.choice(junk))
                        else:
                            c.sendall(bytes(rnd.getrandbits(8) for _ in
                                            range(rnd.randint(1, 3000))))
                    c.shutdown(socket.SHUT_WR)
                    c.settimeout(0.5 * SLOW)
                    try:
                        while c.recv(65536):
                            pass
                    except (socket.timeout, OSError):
                        pass
            except OSError:
                pass
        send(k, ["still@d.test"])
        d = k.stats(lambda d: d["messages"] >= 1)
        check(d["protocol_errors"] > 0, "garbage was noticed")


if __name__ == "__main__":
    run_tests(globals())
