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
from outpost_test import (OUTPOST, OUTPOSTD, SLOW, SRC, Daemon,  # noqa
                          check, eq, free_port, open_to_daemon, run_tests,
                          wait_port)


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
    """The example file as an operator would install it: -t checks the
    host too (key files, pool addresses), so its data_dir gets the keys it
    names and its pools loopback addresses; nothing else changes."""
    import re
    with open(os.path.join(SRC, "conf", "outpost.conf")) as f:
        text = f.read()
    tmp = tempfile.mkdtemp(prefix="outpost-example-")
    text = re.sub(r'(?m)^data_dir = ".*"$', 'data_dir = "%s"' % tmp, text)
    text = re.sub(r'(?m)^(\s*source = ).*$', r'\1{ "127.0.0.1" }', text)
    for m in re.finditer(r'(?ms)^dkim "([^"]+)" \{(.*?)^\}', text):
        body = dict(re.findall(r'(\w+) = "([^"]*)"', m.group(2)))
        for sel, key, ed in (("selector", "rsa_key", False),
                             ("ed25519_selector", "ed25519_key", True)):
            if key in body:
                path = os.path.join(tmp, body[key])
                r = subprocess.run(
                    [OUTPOST, "dkim", "keygen", m.group(1), body[sel],
                     "--key", path, "--txt", path + ".txt"] +
                    (["--ed25519"] if ed else []),
                    capture_output=True, text=True, timeout=60)
                eq(r.returncode, 0, "keygen: " + r.stderr)
    r, name = outpostd_t(text)
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


def host_cases(tmp):
    """(name, config text, line of the fault or None when valid)."""
    key = os.path.join(tmp, "k.key")
    r = subprocess.run([OUTPOST, "dkim", "keygen", "sender.test", "s1",
                        "--key", key, "--txt", key + ".txt"],
                       capture_output=True, text=True, timeout=60)
    eq(r.returncode, 0, "keygen: " + r.stderr)
    open_key = os.path.join(tmp, "open.key")
    with open(key, "rb") as src, open(open_key, "wb") as dst:
        dst.write(src.read())
    os.chmod(open_key, 0o644)
    missing = os.path.join(tmp, "missing.key")
    head = 'data_dir = "%s"\nlistener "127.0.0.1:2525" { }\n' % tmp

    def dkim(path):
        return head + ('dkim "sender.test" {\n  selector = "s1"\n'
                       '  rsa_key = "%s"\n}\n' % path)

    def pool(addr):
        return head + 'pool "default" {\n  source = { "127.0.0.1", "%s" }\n}\n' % addr
    return [
        ("good key and pool", dkim(key) + 'pool "default" {\n'
         '  source = { "127.0.0.1", "127.0.0.2" }\n}\n', None),
        ("key mode 0644", dkim(open_key), 5),
        ("key missing", dkim(missing), 5),
        # A documentation address (RFC 3849), never assigned here: bind()
        # fails with EADDRNOTAVAIL and no packet is sent.
        ("pool address not on this host", pool("2001:db8::1"), 4),
    ]


def test_host_checks_in_dash_t():
    """-t fails with file:line on a DKIM key that is missing or 0644 and
    on a pool source address that this host does not have."""
    tmp = tempfile.mkdtemp(prefix="outpost-conf-")
    for what, text, line in host_cases(tmp):
        r, name = outpostd_t(text)
        if line is None:
            eq(r.returncode, 0, "%s: -t said: %s" % (what, r.stderr))
            continue
        check(r.returncode != 0, "%s: -t accepted:\n%s" % (what, text))
        check("%s:%d:" % (name, line) in r.stderr,
              "%s: want %s:%d: in %r" % (what, name, line, r.stderr))


def test_host_checks_at_start():
    """The same faults stop the daemon at start-up, with file:line."""
    tmp = tempfile.mkdtemp(prefix="outpost-conf-")
    env = dict(os.environ, OUTPOST_LOOPBACK_ONLY="1")
    for what, text, line in host_cases(tmp):
        if line is None:
            continue
        path = os.path.join(tmp, "start.conf")
        with open(path, "w") as f:
            f.write(text.replace("127.0.0.1:2525", "127.0.0.1:%d"
                                 % free_port()) +
                    "tls { generate = true }\n"
                    "metrics { listen = \"127.0.0.1:%d\" }\n"
                    % free_port())
        r = subprocess.run([OUTPOSTD, "-c", path], capture_output=True,
                           text=True, timeout=60 * SLOW, env=env, cwd=tmp)
        check(r.returncode != 0, "%s: the daemon started" % what)
        out = r.stdout + r.stderr
        check("%s:%d:" % (path, line) in out,
              "%s: want %s:%d: in %r" % (what, path, line, out[-2000:]))


run_tests(globals())
