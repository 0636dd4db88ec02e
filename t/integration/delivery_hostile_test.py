#!/usr/bin/python3
"""Delivery to hostile MX hosts: a scripted receiver (Python, loopback)
misbehaves on its first connection -- replies that do not fit the command
they answer, unsolicited replies, malformed or over-long replies, an EHLO
reply that hides STARTTLS past 1 KB -- and behaves on the next ones.  A
reply counts only for the command it answers: after the hostile attempt
the message must still be queued (a transient_failure in the delivery log,
never a delivery), and the next attempt must bring it intact to the same
host behaving well.  And an old server that refuses EHLO gets HELO with
the same name (the pool's EHLO name).  Loopback only: dnsmasq of our own
points the test domain at the scripted receiver."""

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, TestFailure, check,  # noqa
                          delivery_config, eq, free_port_on, run_tests)

MSG = (b"From: News <news@sender.test>\r\nTo: <someone@hostile.test>\r\n"
       b"Subject: hostile\r\nMessage-ID: <h1@sender.test>\r\n\r\n"
       b"Hello from Outpost.\r\n.a line with a leading dot\r\n"
       b"the end\r\n")

EHLO_OK = (b"250-mx.hostile.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
           b"250 SIZE 10000000\r\n")


def make_cert(tmp):
    """A self-signed certificate for the scripted receiver's STARTTLS."""
    cert = os.path.join(tmp, "cert.pem")
    key = os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=mx.hostile.test", "-days", "2",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


class Conn:
    """One SMTP session on the receiver's side: a CRLF line reader over a
    socket that can turn into TLS."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class ScriptedMX:
    """A receiver on HOST:PORT.  Connections numbered 1..HOSTILE_CONNS use
    SCRIPT (verb -> reply bytes, or None: no reply at all, hang) in place
    of the normal reply; the others behave.  Only a well-behaved
    connection stores messages (self.messages: (raw, tls) tuples)."""

    def __init__(self, host, port, script, hostile_conns=1, starttls=False,
                 ehlo=None, store_hostile=False):
        self.script = script
        self.store_hostile = store_hostile
        self.hostile_conns = hostile_conns
        self.starttls = starttls
        self.ehlo = ehlo
        self.messages = []
        self.greetings = []  # (b"EHLO" | b"HELO", its argument), in order
        self.conns = 0
        self.tls_conns = 0
        self.lock = threading.Lock()
        self.tmp = tempfile.mkdtemp(prefix="outpost-hostile-")
        self.ctx = None
        if starttls:
            cert, key = make_cert(self.tmp)
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(16)
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, et, ev, tb):
        self.stop = True
        self.lsock.close()
        return False

    def serve(self):
        while not self.stop:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self.session, args=(s, n),
                             daemon=True).start()

    def session(self, s, n):
        s.settimeout(60)
        try:
            self.dialogue(Conn(s), n <= self.hostile_conns)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def reply(self, c, hostile, verb, normal):
        """Send the reply to VERB; False if the script says hang."""
        if hostile and verb in self.script:
            data = self.script[verb]
            if data is None:
                time.sleep(30)
                return False
            if callable(data):
                data(c)
            else:
                c.send(data)
            return True
        c.send(normal)
        return True

    def ehlo_reply(self, tls):
        if self.ehlo is not None:
            return self.ehlo(tls)
        if self.starttls and not tls:
            return EHLO_OK.replace(b"250 SIZE", b"250-STARTTLS\r\n250 SIZE")
        return EHLO_OK

    def dialogue(self, c, hostile):
        tls = False
        if not self.reply(c, hostile, "greeting", b"220 mx.hostile.test\r\n"):
            return
        rcpts = []
        while True:
            line = c.line()
            if line is None:
                return
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                with self.lock:
                    self.greetings.append((verb, line[5:]))
            if verb == b"EHLO":
                if not self.reply(c, hostile, "ehlo", self.ehlo_reply(tls)):
                    return
            elif verb == b"HELO":
                c.send(b"250 mx.hostile.test\r\n")
            elif verb == b"STARTTLS" and not tls:
                if not self.reply(c, hostile, "starttls",
                                  b"220 2.0.0 go ahead\r\n"):
                    return
                if c.buf:
                    return
                c.sock = self.ctx.wrap_socket(c.sock, server_side=True)
                tls = True
                with self.lock:
                    self.tls_conns += 1
            elif verb == b"MAIL":
                rcpts = []
                if not self.reply(c, hostile, "mail", b"250 2.1.0 ok\r\n"):
                    return
            elif verb == b"RCPT":
                rcpts.append(line)
                if not self.reply(c, hostile, "rcpt", b"250 2.1.5 ok\r\n"):
                    return
            elif verb == b"DATA":
                if not self.reply(c, hostile, "data", b"354 go ahead\r\n"):
                    return
                if hostile and isinstance(self.script.get("data"), bytes) \
                        and not self.script["data"].startswith(b"354"):
                    continue
                lines = []
                while True:
                    ln = c.line()
                    if ln is None:
                        return
                    if ln == b".":
                        break
                    lines.append(ln[1:] if ln.startswith(b".") else ln)
                raw = b"".join(ln + b"\r\n" for ln in lines)
                if not hostile or self.store_hostile:
                    with self.lock:
                        self.messages.append((raw, tls))
                if not self.reply(c, hostile, "eom",
                                  b"250 2.0.0 stored\r\n"):
                    return
            elif verb == b"BDAT":
                parts = line.split()
                size = int(parts[1])
                raw = c.read_exact(size)
                if raw is None:
                    return
                if not hostile or self.store_hostile:
                    with self.lock:
                        self.messages.append((raw, tls))
                if not self.reply(c, hostile, "bdat",
                                  b"250 2.0.0 stored\r\n"):
                    return
            elif verb == b"RSET" or verb == b"NOOP":
                c.send(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                c.send(b"221 2.0.0 bye\r\n")
                return
            else:
                c.send(b"500 5.5.1 what?\r\n")

    def wait_messages(self, n, timeout=30):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return
            time.sleep(0.05)
        raise TestFailure("%d message(s) at the receiver not reached in "
                          "%ds (%d so far, %d connections)"
                          % (n, timeout, len(self.messages), self.conns))


def events(d):
    path = os.path.join(d.data, "log", "delivery.log")
    out = []
    try:
        with open(path) as f:
            for line in f:
                out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def submit(d, rcpts=("someone@hostile.test",)):
    s = d.smtp()
    s.sendmail("news@sender.test", list(rcpts), MSG)
    s.quit()


def hostile_case(script, extra="", hostile_conns=1, starttls=False,
                 ehlo=None, want_stage=None, want_tls=None,
                 rcpts=("someone@hostile.test",)):
    """Run SCRIPT on the receiver's first connection(s); assert the message
    was deferred (not delivered, not bounced) and then arrived intact."""
    host = "127.0.0.70"
    port = free_port_on([host])
    dns = Dns(mx=[("hostile.test", "mx.hostile.test", 10)],
              a=[("mx.hostile.test", host)])
    cfg = delivery_config(dns, port, extra)
    with dns, ScriptedMX(host, port, script, hostile_conns, starttls,
                         ehlo) as mx, Daemon(config=cfg) as d:
        submit(d, rcpts)
        try:
            mx.wait_messages(1, timeout=30)
        except TestFailure:
            evs = [e for e in events(d) if e["event"] != "reception"]
            raise TestFailure("not delivered on a later attempt; events: "
                              "%s" % json.dumps(evs)[:2000])
        # The message settles a moment after the receiver's 250.
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            if [e["event"] for e in events(d)].count("delivery") \
                    >= len(rcpts):
                break
            time.sleep(0.05)
        evs = [e for e in events(d)
               if e["event"] in ("delivery", "bounce", "transient_failure")]
        kinds = [e["event"] for e in evs]
        n = len(rcpts)
        check(len(evs) >= 2 * n and
              kinds[:n] == ["transient_failure"] * n,
              "the hostile attempt is a transient failure first: %s"
              % json.dumps(evs)[:2000])
        eq(kinds[-n:], ["delivery"] * n, "delivered at last")
        eq(kinds.count("delivery"), n, "one delivery event per recipient")
        check("bounce" not in kinds, "never bounced: %s" % kinds)
        if want_stage is not None:
            eq(evs[0].get("stage"), want_stage, "stage of the failure")
        raw, tls = mx.messages[0]
        check(raw.endswith(MSG), "the message arrived intact: %r" % raw)
        eq(len(mx.messages), 1, "stored once")
        if want_tls is not None:
            eq(tls, want_tls, "STARTTLS used")
        wait_queue_empty(d)
        check("protocol error" in d.log() or want_stage == "data",
              "protocol error logged")
        return d, evs


def wait_queue_empty(d, timeout=20):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if not d.queue_ids():
            return
        time.sleep(0.2)
    raise TestFailure("queue not empty: %r" % d.queue_ids())


# --- an old server: EHLO refused, HELO with the same name ----------------------

def helo_fallback_case(extra, relay_loopback, want):
    """Deliver one message to a receiver that answers EHLO with 502; return
    nothing, assert the greetings it saw: EHLO WANT, then HELO WANT."""
    host = "127.0.0.71"
    port = free_port_on([host])
    dns = Dns(mx=[("hostile.test", "mx.hostile.test", 10)],
              a=[("mx.hostile.test", host)])
    cfg = delivery_config(dns, port,
                          'delivery { ehlo = "default-out.outpost.test" }\n'
                          + extra)
    with dns, ScriptedMX(host, port, {"ehlo": b"502 5.5.1 no EHLO\r\n"},
                         hostile_conns=1000, store_hostile=True) as mx, \
            Daemon(config=cfg, relay_loopback=relay_loopback) as d:
        submit(d)
        mx.wait_messages(1, timeout=30)
        with mx.lock:
            greetings = list(mx.greetings)
        eq(greetings[:2], [(b"EHLO", want), (b"HELO", want)],
           "EHLO refused, then HELO with the same name")
        check(mx.messages[0][0].endswith(MSG), "arrived intact")
        wait_queue_empty(d)
        check(b"outpost.test" not in [g[1] for g in greetings],
              "never greeted with the hostname")


def test_helo_fallback_uses_pool_ehlo_name():
    """A receiver that refuses EHLO (502) gets HELO, and HELO carries the
    pool's EHLO name, as EHLO did -- not the hostname (outpost.test), not
    the delivery default."""
    helo_fallback_case(
        'pool "bulk" { source = { "127.0.0.2" } ehlo = "bulk-out.outpost.test" }\n'
        'relay { networks = { "127.0.0.0/8" } pool = "bulk" }\n',
        False, b"bulk-out.outpost.test")


def test_helo_fallback_without_pool():
    """Without a pool, EHLO and the HELO fallback both use delivery's."""
    helo_fallback_case("", True, b"default-out.outpost.test")


# --- replies that do not fit the command they answer -------------------------

def test_mail_answered_334():
    hostile_case({"mail": b"334 huh?\r\n"})


def test_data_answered_250():
    hostile_case({"data": b"250 2.0.0 thanks\r\n"})


def test_rcpt_answered_354():
    hostile_case({"rcpt": b"354 go ahead\r\n"})


def test_end_of_data_answered_354():
    hostile_case({"eom": b"354 more please\r\n"})


def test_greeting_250():
    hostile_case({"greeting": b"250 mx.hostile.test hello\r\n"})


def test_ehlo_answered_354():
    hostile_case({"ehlo": b"354 mx.hostile.test go on\r\n"})


def test_starttls_answered_250_under_encrypt():
    hostile_case({"starttls": b"250 2.0.0 sure\r\n"},
                 extra='destination "hostile.test" { tls = "encrypt" }\n',
                 starttls=True, want_tls=True)


def test_bdat_last_answered_354():
    ehlo = (lambda tls: EHLO_OK.replace(b"250 SIZE",
                                        b"250-CHUNKING\r\n250 SIZE"))
    hostile_case({"bdat": b"354 go ahead\r\n"}, ehlo=ehlo)


def test_data_answered_1xx():
    hostile_case({"data": b"150 wait\r\n"})


def test_malformed_code():
    hostile_case({"mail": b"25O 2.1.0 ok\r\n"})


def test_bare_lf_reply():
    hostile_case({"mail": b"250 2.1.0 ok\n"})


def test_multiline_mixed_codes():
    hostile_case({"eom": b"250-2.0.0 ok\r\n550 5.7.1 no\r\n"})


def test_reply_line_over_limit():
    hostile_case({"mail": b"250 " + b"x" * 5000 + b"\r\n"})


# --- unsolicited replies (they would pair with the wrong commands) ----------

def test_two_replies_to_one_rcpt():
    # Pipelined, the extra reply shifts every later one onto the wrong
    # command: the second RCPT gets it, DATA gets a 250.
    hostile_case({"rcpt": b"250 2.1.5 ok\r\n250 2.1.5 ok too\r\n"},
                 rcpts=("one@hostile.test", "two@hostile.test"))


def test_rcpt_refusal_then_out_of_step():
    # A 550 to the first RCPT, then DATA answered 250: once out of step,
    # the 550 cannot be trusted either: both recipients are deferred
    # (not bounced), and both get the message on the next attempt.
    replies = iter([b"550 5.1.1 no such user\r\n", b"250 2.1.5 ok\r\n"])

    def rcpt(c):
        c.send(next(replies, b"250 2.1.5 ok\r\n"))

    hostile_case({"rcpt": rcpt, "data": b"250 2.0.0 thanks\r\n"},
                 rcpts=("one@hostile.test", "two@hostile.test"))


def test_extra_250_after_ehlo():
    hostile_case({"ehlo": EHLO_OK + b"250 2.0.0 ok\r\n" * 6})


def test_extra_replies_after_greeting():
    hostile_case({"greeting": b"220 mx.hostile.test\r\n"
                  + b"250 2.0.0 ok\r\n" * 6})


def test_354_and_250_at_once():
    # The end-of-data reply comes before the body was sent.
    hostile_case({"data": b"354 go ahead\r\n250 2.0.0 stored\r\n"})


def test_extra_reply_after_end_of_data():
    hostile_case({"eom": b"250 2.0.0 stored\r\n250 2.0.0 stored again\r\n"})


def test_plaintext_after_starttls_220():
    hostile_case({"starttls": b"220 2.0.0 go ahead\r\n250 2.0.0 ok\r\n"},
                 starttls=True, want_tls=True)


# --- replies split across reads: still a good session -----------------------

def test_replies_one_byte_at_a_time():
    """Every reply of the first connection arrives a byte per write (the
    session is sound, so this one delivers at once)."""
    host = "127.0.0.71"
    port = free_port_on([host])
    dns = Dns(mx=[("hostile.test", "mx.hostile.test", 10)],
              a=[("mx.hostile.test", host)])

    def trickle(data):
        def send(c):
            for i in range(len(data)):
                c.sock.sendall(data[i:i + 1])
                time.sleep(0.002)
        return send

    script = {"greeting": trickle(b"220-mx.hostile.test\r\n220 hi\r\n"),
              "ehlo": trickle(EHLO_OK),
              "mail": trickle(b"250 2.1.0 ok\r\n"),
              "rcpt": trickle(b"250 2.1.5 ok\r\n"),
              "data": trickle(b"354 go ahead\r\n"),
              "eom": trickle(b"250 2.0.0 stored\r\n")}

    mx = ScriptedMX(host, port, script, store_hostile=True)
    with dns, mx, Daemon(config=delivery_config(dns, port)) as d:
        submit(d)
        deadline = time.time() + 20 * SLOW
        while time.time() < deadline:
            if any(e["event"] == "delivery" for e in events(d)):
                break
            time.sleep(0.05)
        kinds = [e["event"] for e in events(d)
                 if e["event"] != "reception"]
        eq(kinds, ["delivery"], "delivered on the first attempt")
        eq(mx.conns, 1, "one connection")
        check(mx.messages[0][0].endswith(MSG), "intact")


# --- the failure is reported at the command it answers ----------------------

def test_timeout_waiting_for_354_is_stage_data():
    host = "127.0.0.72"
    port = free_port_on([host])
    dns = Dns(mx=[("hostile.test", "mx.hostile.test", 10)],
              a=[("mx.hostile.test", host)])
    cfg = delivery_config(dns, port).replace(
        "  idle_timeout = 2s\n", "  idle_timeout = 2s\n  command_timeout = 2s\n")
    with dns, ScriptedMX(host, port, {"data": None}) as mx, \
            Daemon(config=cfg) as d:
        submit(d)
        mx.wait_messages(1, timeout=30)
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            if any(e["event"] == "delivery" for e in events(d)):
                break
            time.sleep(0.05)
        evs = [e for e in events(d)
               if e["event"] in ("delivery", "bounce", "transient_failure")]
        eq([e["event"] for e in evs], ["transient_failure", "delivery"],
           "deferred, then delivered")
        eq(evs[0]["stage"], "data", "the timeout awaited the DATA reply")
        check(mx.messages[0][0].endswith(MSG), "intact")


# --- EHLO: every line counts, within a bound ---------------------------------

def test_starttls_after_a_long_ehlo_reply():
    """STARTTLS offered as the last keyword of a 2 KB EHLO reply is seen
    (tls=may would otherwise send in clear)."""
    host = "127.0.0.73"
    port = free_port_on([host])
    dns = Dns(mx=[("hostile.test", "mx.hostile.test", 10)],
              a=[("mx.hostile.test", host)])

    def ehlo(tls):
        # 24 lines: few enough for any line-count limit, long enough
        # to push STARTTLS well past the first 1,024 bytes.
        pad = b"".join(b"250-X-PADDING-%03d %s\r\n" % (i, b"p" * 60)
                       for i in range(24))
        head = b"250-mx.hostile.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
        if tls:
            return head + pad + b"250 SIZE 10000000\r\n"
        return head + pad + b"250-SIZE 10000000\r\n250 STARTTLS\r\n"

    check(len(ehlo(False)) > 1024 + 512, "the reply is long")
    with dns, ScriptedMX(host, port, {}, hostile_conns=0, starttls=True,
                         ehlo=ehlo) as mx, \
            Daemon(config=delivery_config(dns, port)) as d:
        submit(d)
        mx.wait_messages(1, timeout=30)
        raw, tls = mx.messages[0]
        eq(tls, True, "the receiver saw STARTTLS and TLS")
        check(raw.endswith(MSG), "intact")
        wait_queue_empty(d)


def test_ehlo_reply_over_the_bound():
    """An EHLO reply past 64 KB is a protocol error: the message is
    deferred, the daemon lives on, the next attempt delivers."""
    huge = b"250-mx.hostile.test\r\n" + b"".join(
        b"250-X-KEYWORD-%05d %s\r\n" % (i, b"k" * 60)
        for i in range(1200)) + b"250 PIPELINING\r\n"
    check(len(huge) > 65536, "over 64 KB")
    hostile_case({"ehlo": huge})


run_tests(globals())
