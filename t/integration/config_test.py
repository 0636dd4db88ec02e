#!/usr/bin/python3
"""Configuration through the real binaries: `outpostd -t` accepts the
example file and refuses bad ones with file:line; the embedded defaults
(no -c) serve submission on 127.0.0.1:2525 and create their keys 0600."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOSTD, SLOW, SRC, Daemon, check, eq,  # noqa
                          open_to_daemon, run_tests, wait_port)


def outpostd_t(text):
    with tempfile.NamedTemporaryFile("w", suffix=".conf",
                                     delete=False) as f:
        f.write(text)
    try:
        r = subprocess.run([OUTPOSTD, "-t", "-c", f.name],
                           capture_output=True, text=True, timeout=30)
        return r, f.name
    finally:
        os.unlink(f.name)


def test_example_config_is_valid():
    r = subprocess.run([OUTPOSTD, "-t", "-c",
                        os.path.join(SRC, "conf", "outpost.conf")],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, "outpostd -t conf/outpost.conf: " + r.stderr)


def test_errors_carry_file_and_line():
    cases = [
        ('listener "127.0.0.1:2525" { }\nlimits {\n  max_recipents = 5\n}\n',
         3),
        ('listener "127.0.0.1:2525" { }\nlimits {\n'
         '  max_message_size = "25Q"\n}\n', 3),
        ('listener "127.0.0.1:99999" { }\n', 1),
        ('listener "10.1.2.3:25" { auth_without_tls = true }\n', 1),
        ('listener "127.0.0.1:25" { }\nuser "x" {\n  password = "plain"\n'
         '  sender_domains = { "example.com" }\n}\n', 3),
    ]
    for text, line in cases:
        r, name = outpostd_t(text)
        check(r.returncode != 0, "accepted:\n" + text)
        check("%s:%d:" % (name, line) in r.stderr,
              "want %s:%d: in %r" % (name, line, r.stderr))


def test_embedded_defaults():
    """`outpostd` with no -c: 127.0.0.1:2525, ./var, keys 0600."""
    try:
        socket.create_connection(("127.0.0.1", 2525), timeout=0.5).close()
        print("# port 2525 busy; skipping the default-port check")
        return
    except OSError:
        pass
    tmp = tempfile.mkdtemp(prefix="outpost-defaults-")
    open_to_daemon(tmp)
    log = open(os.path.join(tmp, "log"), "wb")
    env = dict(os.environ, OUTPOST_LOOPBACK_ONLY="1")
    p = subprocess.Popen([OUTPOSTD], cwd=tmp, stdout=log,
                         stderr=subprocess.STDOUT, env=env)
    try:
        wait_port("127.0.0.1", 2525, 20 * SLOW, p)
        import smtplib
        s = smtplib.SMTP("127.0.0.1", 2525, timeout=10 * SLOW)
        s.sendmail("a@example.com", ["b@example.org"],
                   b"From: <a@example.com>\r\nSubject: defaults\r\n\r\nx\r\n")
        s.quit()
        for key in ("queue.key", "loghash.key", "tls.key"):
            path = os.path.join(tmp, "var", "keys", key)
            check(os.path.exists(path), key + " created")
            eq(os.stat(path).st_mode & 0o777, 0o600, key + " mode")
        eq(os.stat(os.path.join(tmp, "var")).st_mode & 0o777, 0o700,
           "var mode")
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
        log.close()
    eq(rc, 0, "clean exit")


run_tests(globals())
