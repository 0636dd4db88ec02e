#!/usr/bin/python3
"""Draining outpostd: `outpost drain --intake-only` refuses new SMTP
connections with 421 4.3.2 while delivery goes on, `outpost resume-intake`
takes them again, and `outpost drain` stops the daemon as SIGTERM does:
new connections get 421 while a delivery in flight to a slow receiver
finishes, then outpostd exits 0 with nothing left queued.  Both commands
need the write right.

Run as root (make test does): callers without rights run the real `outpost`
under setpriv with a numeric uid."""

import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, ControlDaemon, Dns, Sink,  # noqa
                          TestFailure, check, cli_as, delivery_config, eq,
                          free_port_on, run_tests, wait_for)

GID = 60020
READER = 60021
ACCESS = '''  group = "%d"
  access "root" { rights = { "read", "write", "delete", "export" } }
  access "%d" { rights = { "read" } }
''' % (GID, READER)
HOST = "127.0.0.52"


def require_root():
    if os.geteuid() != 0:
        raise TestFailure("this test runs outpost under setpriv: run it as "
                          "root (make test does)")


def cli(d, *args, uid=None):
    return cli_as(d, args, uid, GID)


def ok(d, *args):
    r = cli(d, *args)
    eq(r.returncode, 0, "outpost %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def drain_state(d):
    r = cli(d, "status", "--json")
    eq(r.returncode, 0, "outpost status --json: " + r.stderr)
    return json.loads(r.stdout)["drain"]


def greeting(d):
    """The first line a new connection reads, and whether it then closed."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10 * SLOW)
    try:
        f = s.makefile("rb")
        line = f.readline().decode("ascii", "replace").rstrip("\r\n")
        s.sendall(b"QUIT\r\n")
        return line
    finally:
        s.close()


def refused(d):
    """A new connection gets 421 4.3.2 and is closed."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10 * SLOW)
    try:
        f = s.makefile("rb")
        line = f.readline().decode("ascii", "replace")
        check(line.startswith("421 4.3.2 "), "new connection: %r" % line)
        eq(f.read(), b"", "nothing after the 421 (closed)")
    finally:
        s.close()


def send_one(d, rcpt):
    s = d.smtp()
    s.ehlo()
    s.sendmail("sender@example.test", [rcpt],
               "From: sender@example.test\r\nSubject: x\r\n\r\nhi\r\n")
    s.quit()


def setup(sink_args=()):
    port = free_port_on([HOST])
    dns = Dns(mx=[("later.test", "mx.later.test", 10)],
              a=[("mx.later.test", HOST)])
    return port, dns, sink_args


def test_intake_only_then_resume():
    port, dns, _ = setup()
    with dns, Sink([HOST], port) as sink:
        with ControlDaemon(config=delivery_config(dns, port)) as d:
            eq(drain_state(d), "running", "drain state at start")
            # Queued but not yet delivered: the destination is suspended.
            ok(d, "suspend", "later.test", "--for", "1h")
            send_one(d, "a@later.test")
            out = ok(d, "drain", "--intake-only")
            check("intake stopped" in out, "drain --intake-only: " + out)
            refused(d)
            eq(drain_state(d), "intake stopped", "drain state")
            # Delivery goes on.
            ok(d, "resume", "later.test")
            sink.wait_messages(1)
            refused(d)
            ok(d, "resume-intake")
            eq(drain_state(d), "running", "drain state after resume-intake")
            check(greeting(d).startswith("220 "), "greeting after resume")
            send_one(d, "b@later.test")
            sink.wait_messages(2)
            check(d.proc.poll() is None, "outpostd still running")


def test_drain_lets_a_slow_delivery_finish():
    drain_with_a_slow_delivery(lambda d: ok(d, "drain"),
                               "outpost drain: shutting down")


def test_sigterm_lets_a_slow_delivery_finish():
    drain_with_a_slow_delivery(lambda d: d.proc.send_signal(signal.SIGTERM),
                               "signal 15: shutting down")


def drain_with_a_slow_delivery(stop, logged):
    port, dns, _ = setup()
    with dns, Sink([HOST], port, ["--slow-ms", "3000"]) as sink:
        d = ControlDaemon(config=delivery_config(dns, port))
        with d:
            send_one(d, "slow@later.test")
            # The receiver has the recipient: the delivery is in flight
            # (the reply to DATA waits 3 s).
            sink.wait(lambda st: st.get("rcpt_accepted", 0) >= 1,
                      what="the recipient at the sink")
            check(d.proc.poll() is None, "outpostd running before drain")
            stop(d)
            # A signal is taken asynchronously: wait until the stop began
            # (`outpost drain` stops intake before it answers).
            wait_for(lambda: logged in d.log(), what="the stop to begin")
            refused(d)
            rc = d.proc.wait(timeout=30 * SLOW)
            eq(rc, 0, "exit status after drain")
            eq(sink.stats().get("messages", 0), 1, "the receiver has it")
            log = d.log()
            check(logged in log,
                  "drain logged: " + log[-2000:])
            check("1 delivered" in log and "queued=0" in log,
                  "delivered before the exit: " + log[-2000:])


def test_drain_needs_write():
    require_root()
    with ControlDaemon(control=ACCESS) as d:
        for args in (["drain"], ["drain", "--intake-only"],
                     ["resume-intake"]):
            r = cli(d, *args, uid=READER)
            check(r.returncode != 0, "%s as a reader: allowed" % args)
            check("permission denied" in r.stderr and "write" in r.stderr,
                  "%s as a reader: %s" % (args, r.stderr))
        eq(drain_state(d), "running", "nothing changed")
        check(greeting(d).startswith("220 "), "still taking connections")


def test_drain_grammar():
    with ControlDaemon() as d:
        r = cli(d, "drain", "--for", "1h")
        check(r.returncode != 0, "drain --for: accepted")
        r = cli(d, "resume-intake", "x")
        check(r.returncode != 0, "resume-intake x: accepted")
        ok(d, "drain", "--intake-only")
        ok(d, "drain", "--intake-only")  # again: still stopped, ok
        ok(d, "drain")
        r = cli(d, "resume-intake")
        # The daemon may already be gone (connect error) or answer
        # "draining": both are refusals.
        check(r.returncode != 0, "resume-intake while draining: allowed")
        eq(d.proc.wait(timeout=30 * SLOW), 0, "exit status after drain")


if __name__ == "__main__":
    run_tests(globals())
