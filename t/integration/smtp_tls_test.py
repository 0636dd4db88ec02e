#!/usr/bin/python3
"""TLS through the real outpostd: STARTTLS (smtplib, swaks), implicit TLS
(RFC 8314), the STARTTLS command injection (CVE-2011-0411), the TLS key
file permission check, and TLS >= 1.2."""

import os
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Raw, SLOW, check, eq,  # noqa: E402
                          insecure_tls, run_tests, OUTPOSTD)

MSG = b"From: <news@example.com>\r\nSubject: tls\r\n\r\nover TLS\r\n"


def test_starttls_smtplib():
    with Daemon() as d:
        s = d.smtp()
        s.ehlo("client.test")
        check(s.has_extn("starttls"), "STARTTLS offered")
        s.starttls(context=insecure_tls())
        s.ehlo("client.test")
        check(not s.has_extn("starttls"), "STARTTLS not offered twice")
        s.sendmail("news@example.com", ["jane@example.org"], MSG)
        check(isinstance(s.sock, ssl.SSLSocket), "socket is TLS")
        check(s.sock.version() in ("TLSv1.2", "TLSv1.3"),
              "TLS version %s" % s.sock.version())
        s.quit()
        eq(len(d.queue_ids()), 1, "queued over STARTTLS")


def test_starttls_swaks():
    with Daemon() as d:
        r = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port),
             "--tls", "--from", "news@example.com", "--to",
             "jane@example.org", "--helo", "client.test"],
            capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, "swaks --tls:\n" + r.stdout + r.stderr)
        check("TLS started" in r.stdout, "swaks saw TLS start")
        eq(len(d.queue_ids()), 1, "queued")


def test_implicit_tls_listener():
    listeners = [("main", 'tls = "starttls"'), ("smtps", 'tls = "implicit"')]
    with Daemon(listeners=listeners) as d:
        s = d.smtps(d.ports["smtps"])
        code, text = s.ehlo("client.test")
        eq(code, 250, "EHLO over implicit TLS")
        check(not s.has_extn("starttls"), "no STARTTLS inside TLS")
        s.sendmail("news@example.com", ["jane@example.org"], MSG)
        s.quit()
        r = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port",
             str(d.ports["smtps"]), "--tls-on-connect", "--from",
             "news@example.com", "--to", "jane@example.org"],
            capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, "swaks --tls-on-connect:\n" + r.stdout)
        eq(len(d.queue_ids()), 2, "queued over implicit TLS")
        # Plain text on the TLS port goes nowhere.
        raw = socket.create_connection(("127.0.0.1", d.ports["smtps"]),
                                       timeout=5 * SLOW)
        raw.sendall(b"EHLO plain.test\r\n")
        raw.settimeout(10 * SLOW)
        try:
            data = raw.recv(100)
        except OSError:
            data = b""
        check(not data.startswith(b"250"), "plain EHLO answered on TLS port")
        raw.close()


def test_starttls_injection_discarded():
    """CVE-2011-0411: commands pipelined after STARTTLS in the same packet
    must not be executed after the handshake."""
    with Daemon() as d:
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\n")
        eq(r.reply()[0], 220, "STARTTLS")
        r.sock = insecure_tls().wrap_socket(r.sock)
        r.buf = b""
        # Had the injected commands survived, their replies would come
        # first.  The first reply inside TLS must answer our EHLO.
        code, text = r.cmd("EHLO client.test")
        eq(code, 250, "EHLO after STARTTLS (injected replies seen?)")
        check("outpost.test" in text.split("\n")[0], "EHLO reply")
        # And no transaction was started by the injected MAIL.
        eq(r.cmd("RCPT TO:<jane@example.org>")[0], 503,
           "injected MAIL was not executed")


def test_state_reset_after_starttls():
    with Daemon() as d:
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.starttls()
        eq(r.cmd("MAIL FROM:<a@example.com>")[0], 503,
           "EHLO is required again after STARTTLS")


def test_tls_versions():
    with Daemon() as d:
        ctx = insecure_tls()
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        eq(r.cmd("STARTTLS")[0], 220, "STARTTLS")
        try:
            ctx.wrap_socket(r.sock)
            ok = True
        except (ssl.SSLError, OSError):
            ok = False
        check(not ok, "a TLS 1.1 handshake succeeded")
        # The daemon is unharmed.
        s = d.smtp()
        s.ehlo("client.test")
        s.starttls(context=insecure_tls())
        s.ehlo("client.test")
        s.quit()


def test_key_file_permissions():
    d = Daemon()
    d.start()
    d.stop()
    key = os.path.join(d.data, "keys", "tls.key")
    check(os.path.exists(key), "self-signed key generated")
    eq(os.stat(key).st_mode & 0o777, 0o600, "TLS key mode")
    for name in ("queue.key", "loghash.key"):
        p = os.path.join(d.data, "keys", name)
        eq(os.stat(p).st_mode & 0o777, 0o600, name + " mode")
    os.chmod(key, 0o644)
    r = subprocess.run([OUTPOSTD, "-c", d.conf_path], capture_output=True,
                       text=True, timeout=30 * SLOW)
    check(r.returncode != 0, "outpostd started with a 0644 TLS key")
    check("tls.key" in r.stderr and "0644" in r.stderr,
          "error names the file and mode: %r" % r.stderr)


run_tests(globals())
