#!/usr/bin/python3
"""`make demo` (t/tools/demo.sh) runs whole and says what it showed: AUTH
over STARTTLS, `queue summary` while a message waits for an MX that is not
up yet, the message delivered after `queue retry`, both DKIM signatures
verified by python3-dkim, the data directory left and named.  A second run
on the same directory works; a step that fails (a wrong password, a
signature that does not verify) fails the demo.  Loopback only."""

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (BIN, LIBEVENT_MARKS, SANITIZER_MARKS, SLOW,  # noqa
                          SRC, TOOLS, Dns, check, ensure_daemon_user, eq,
                          open_to_daemon, run_tests)

DEMO = os.path.join(SRC, "t", "tools", "demo.sh")
VERIFY = os.path.join(SRC, "t", "tools", "demo_verify.py")
N = 300


def run_demo(demo_dir, path_prefix=None):
    """Run the demo on DEMO_DIR (its parent must be a test's private
    directory): (exit status, stdout and stderr together)."""
    ensure_daemon_user()
    open_to_daemon(os.path.dirname(demo_dir.rstrip("/")))
    env = dict(os.environ, DEMO_N=str(N), DEMO_DIR=demo_dir,
               OUTPOST_BIN=BIN, OUTPOST_TOOLS=TOOLS,
               OUTPOST_LOOPBACK_ONLY="1")
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    r = subprocess.run(["bash", DEMO, os.path.dirname(BIN)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=240 * SLOW)
    log = os.path.join(demo_dir, "outpostd.log")
    if os.path.exists(log):
        with open(log) as f:
            text = f.read()
        for mark in SANITIZER_MARKS + LIBEVENT_MARKS:
            check(mark not in text, "outpostd.log: %s" % text[-3000:])
    return r.returncode, r.stdout


def section(out, title):
    """The lines of OUT's section whose heading holds TITLE."""
    m = re.search(r"(?ms)^== [^\n]*%s[^\n]*\n(.*?)(?=^== |\Z)"
                  % re.escape(title), out)
    check(m is not None, "no section %r in:\n%s" % (title, out))
    return m.group(1)


def check_demo_output(out, demo_dir):
    auth = section(out, "AUTH over STARTTLS")
    check(re.search(r"=== TLS started with cipher TLSv1\.[23]:", auth),
          "TLS version and cipher:\n" + auth)
    check(re.search(r"(?m)^ +<~  235 2\.7\.0 ", auth), "235:\n" + auth)
    m = re.search(r"(?m)^ +<~  250 2\.0\.0 ([0-9a-f]{16}) queued", auth)
    check(m, "250 queued:\n" + auth)
    check("AUTH PLAIN (credentials)" in auth and
          "AGRlbW8" not in auth, "credentials shown:\n" + auth)
    qid = m.group(1)

    waiting = section(out, "queue summary while mail waits")
    check(re.search(r"(?m)^ +DOMAIN +MSGS +RCPTS +DEFERRED", waiting),
          "summary heading:\n" + waiting)
    check(re.search(r"(?mi)^ +inbox\.demo\.test +1 +1 +1 .*"
                    r"connection refused", waiting),
          "the waiting message, deferred, connection refused:\n" + waiting)
    check(re.search(r"(?m)^ +TOTAL +1 +1 +1 ", waiting),
          "summary total:\n" + waiting)

    retry = section(out, "outpost queue retry")
    check(re.search(r"(?m)^ +1 message", retry), "retry's answer:\n" + retry)
    check(re.search(r'delivered: "destination":"inbox\.demo\.test" '
                    r'"attempt":[2-9][0-9]* "code":250', retry), retry)
    check(re.search(r"(?m)^ +TOTAL +0 +0 +0 ", retry),
          "empty after delivery:\n" + retry)

    dkim = section(out, "checked by python3-dkim")
    for what in ("rsa-sha256, d=brand.demo.test, s=s2026",
                 "ed25519-sha256, d=brand.demo.test, s=e2026"):
        check("DKIM signature verified (%s)" % what in dkim,
              "%s not verified:\n%s" % (what, dkim))
    check("FAILED" not in dkim, dkim)

    report = section(out, "report")
    check(re.search(r"accepted +%d messages" % N, report), report)
    check(re.search(r"bounces +10 ", report), report)
    check(re.search(r"queue +empty", report), report)

    where = section(out, "where things are")
    check(("== where things are: %s" % demo_dir) in out, out[-800:])
    check(("rm -rf %s" % demo_dir) in where, where)
    # Left for the user: the configuration, the queue and logs, the keys,
    # the message received.
    for rel in ("demo.conf", "var/log/delivery.log", "outpostd.log",
                "swaks.log", "keys/brand.s2026.key",
                "keys/brand.e2026.txt"):
        check(os.path.exists(os.path.join(demo_dir, rel)), "missing " + rel)
    emls = glob.glob(os.path.join(demo_dir, "mailbox", "*.eml"))
    eq(len(emls), 1, "messages in the mailbox")
    with open(os.path.join(demo_dir, "var/log/delivery.log")) as f:
        check([l for l in f if '"event":"delivery"' in l and
               '"id":"%s"' % qid in l],
              "the delivery of %s in the delivery log" % qid)
    return emls[0]


def test_demo_runs_while_the_default_ports_are_taken():
    """Two demos at once (ctest runs the normal and the ASan variant side
    by side) or a daemon already on the embedded defaults' ports: the demo
    uses ports of its own, including for metrics."""
    held = []
    for port in (2525, 9025):  # the embedded defaults' listener, metrics
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            held.append(s)
        except OSError:
            s.close()  # taken already: the point holds all the same
    tmp = tempfile.mkdtemp(prefix="outpost-demo-test-")
    try:
        rc, out = run_demo(os.path.join(tmp, "demo"))
        eq(rc, 0, "demo exit status with 2525 and 9025 taken; output:\n"
           + out)
    finally:
        for s in held:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_demo_runs_twice_and_leaves_its_directory():
    tmp = tempfile.mkdtemp(prefix="outpost-demo-test-")
    try:
        demo_dir = os.path.join(tmp, "demo")
        for run in (1, 2):
            rc, out = run_demo(demo_dir)
            eq(rc, 0, "demo run %d exit status; output:\n%s" % (run, out))
            check_demo_output(out, demo_dir)
        check(not out.startswith("demo: FAILED"), out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_demo_fails_when_auth_fails():
    """A swaks that sends the wrong password: 535, and the demo stops there
    with a non-zero status (no signature is reported verified)."""
    tmp = tempfile.mkdtemp(prefix="outpost-demo-test-")
    try:
        shim = os.path.join(tmp, "shim")
        os.mkdir(shim)
        swaks = shutil.which("swaks")
        check(swaks is not None, "swaks is not installed")
        with open(os.path.join(shim, "swaks"), "w") as f:
            f.write('#!/bin/sh\nexec %s "$@" --auth-password wrong\n' % swaks)
        os.chmod(os.path.join(shim, "swaks"), 0o755)
        demo_dir = os.path.join(tmp, "demo")
        rc, out = run_demo(demo_dir, path_prefix=shim)
        check(rc != 0, "the demo passed with a wrong password:\n" + out)
        check("535 5.7.8" in out, out[-2000:])
        check("demo: FAILED: swaks" in out, out[-2000:])
        check("DKIM signature verified" not in out, out[-2000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_demo_leaves_a_foreign_directory_alone():
    tmp = tempfile.mkdtemp(prefix="outpost-demo-test-")
    try:
        foreign = os.path.join(tmp, "foreign")
        os.mkdir(foreign)
        keep = os.path.join(foreign, "precious")
        with open(keep, "w") as f:
            f.write("mine\n")
        rc, out = run_demo(foreign)
        check(rc != 0, "the demo took over a foreign directory:\n" + out)
        check("is not a demo directory" in out, out)
        check(os.path.exists(keep), "the demo removed a file not its own")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_verify_fails_on_a_changed_message():
    """demo_verify.py (what the demo's DKIM step runs) passes on the
    message as received and fails on it with one body byte changed, or
    with a key that is not the signer's."""
    tmp = tempfile.mkdtemp(prefix="outpost-demo-test-")
    try:
        demo_dir = os.path.join(tmp, "demo")
        rc, out = run_demo(demo_dir)
        eq(rc, 0, "demo exit status; output:\n" + out)
        eml = check_demo_output(out, demo_dir)
        keys = os.path.join(demo_dir, "keys")

        def txt(sel):
            with open(os.path.join(keys, "brand.%s.txt" % sel)) as f:
                return f.read().strip()
        good = [("s2026._domainkey.brand.demo.test", txt("s2026")),
                ("e2026._domainkey.brand.demo.test", txt("e2026"))]
        with open(eml, "rb") as f:
            msg = f.read()
        changed = os.path.join(tmp, "changed.eml")
        with open(changed, "wb") as f:
            f.write(msg.replace(b"verified by python3-dkim",
                                b"verified by python3-dkiM"))

        def verify(records, path):
            with Dns(txt=records) as dnsd:
                return subprocess.run(
                    ["/usr/bin/python3", VERIFY, str(dnsd.port), path],
                    capture_output=True, text=True, timeout=60)
        r = verify(good, eml)
        eq(r.returncode, 0, "the message as received: " + r.stdout +
           r.stderr)
        eq(r.stdout.count("DKIM signature verified"), 2, r.stdout)
        r = verify(good, changed)
        check(r.returncode != 0, "a changed body verified: " + r.stdout)
        check("verified" not in r.stdout, r.stdout)
        eq(r.stdout.count("DKIM signature FAILED"), 2, r.stdout)
        # Another domain's keys under the same names.
        other = os.path.join(tmp, "other")
        os.mkdir(other)
        wrong = []
        for sel, extra in (("s2026", []), ("e2026", ["--ed25519"])):
            t = os.path.join(other, sel + ".txt")
            subprocess.run([os.path.join(BIN, "outpost"), "dkim", "keygen",
                            "brand.demo.test", sel, "--key",
                            os.path.join(other, sel + ".key"), "--txt", t]
                           + extra, check=True, capture_output=True,
                           timeout=60)
            with open(t) as f:
                wrong.append(("%s._domainkey.brand.demo.test" % sel,
                              f.read().strip()))
        r = verify(wrong, eml)
        check(r.returncode != 0, "verified with other keys: " + r.stdout)
        eq(r.stdout.count("DKIM signature FAILED"), 2, r.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


run_tests(globals())
