#!/usr/bin/python3
"""MX fan-out is bounded, through the real outpostd: a destination with 25
MX hosts of 10 addresses each (every one of them a 127.x address), where
nothing listens or a tarpit accepts and never answers.  One delivery attempt
tries at most max_mx_addresses addresses, opens at most max_mx_sessions
sessions and ends by attempt_timeout; the message is deferred, neither lost
nor bounced.  Loopback only (dnsmasq and the tarpit on 127.0.x.y)."""

import json
import os
import re
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, check, eq,  # noqa: E402
                          free_port, run_tests)

NMX = 25
NADDR = 10


def fanout_dns(domain, net):
    """DOMAIN: NMX MX hosts, each with NADDR addresses 127.NET+i.j."""
    mx, a = [], []
    for i in range(NMX):
        host = "mx%02d.%s" % (i, domain)
        mx.append((domain, host, 10 + i))
        for j in range(NADDR):
            a.append((host, "127.%d.%d.%d" % (net, i + 1, j + 1)))
    return mx, a


def addrs(net):
    return ["127.%d.%d.%d" % (net, i + 1, j + 1)
            for i in range(NMX) for j in range(NADDR)]


class Tarpit:
    """Listens on every one of HOSTS at PORT; accepts, never says a word,
    keeps the connection open.  Counts accepts."""

    def __init__(self, hosts, port):
        self.hosts, self.port = hosts, port
        self.accepts = 0
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.stop_flag = False

    def __enter__(self):
        for h in self.hosts:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((h, self.port))
            s.listen(64)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop_flag:
            for key, _ in self.sel.select(0.1):
                try:
                    c, _ = key.fileobj.accept()
                except OSError:
                    continue
                self.conns.append(c)
                with self.lock:
                    self.accepts += 1

    def count(self):
        with self.lock:
            return self.accepts

    def __exit__(self, et, ev, tb):
        self.stop_flag = True
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        for c in self.conns:
            c.close()
        self.sel.close()
        return False


def config(dns, port, delivery="", extra=""):
    return ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
            'delivery {\n  port = %d\n  retry_intervals = { "1s" }\n'
            '  retry_jitter = 0\n  connect_timeout = 1s\n'
            '  greeting_timeout = 1s\n%s}\n'
            # One walk per test: after it the site is backed off.
            'destination "*" { backoff_pause = 1h backoff_max = 1h }\n%s'
            % (dns.servers, port, delivery, extra))


def submit(d, rcpt):
    with d.smtp() as s:
        s.sendmail("news@sender.test", [rcpt],
                   b"From: <news@sender.test>\r\nSubject: fan-out\r\n\r\n"
                   b"body\r\n")


def events(d):
    path = os.path.join(d.data, "log", "delivery.log")
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_deferred(d, domain, timeout=30):
    """The first transient_failure of a recipient at DOMAIN."""
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        for e in events(d):
            if (e["event"] == "transient_failure"
                    and e.get("rcpt_domain") == domain):
                return e
        time.sleep(0.1)
    raise AssertionError("no deferral for %s within %ds; log tail:\n%s"
                         % (domain, timeout, d.log()[-1500:]))


def connect_tries(d, domain):
    """Addresses of DOMAIN's MX hosts outpostd tried (diagnostics: one
    'connect failed' line per refused address)."""
    pat = re.compile(r"smtp-out mx\d\d\.%s\[[0-9.]+\][^ ]*: connect failed"
                     % re.escape(domain))
    return len(pat.findall(d.log()))


def still_queued(d, n):
    eq(len(d.queue_ids()), n, "messages still queued")
    kinds = {e["event"] for e in events(d)}
    check("bounce" not in kinds, "nothing bounced: %r" % kinds)


def test_refused_addresses_capped_by_default():
    """Nothing listens anywhere: with the built-in limit, 5 addresses are
    tried in the attempt, not all 250."""
    mx, a = fanout_dns("refuse.test", 10)
    port = free_port()
    dns = Dns(mx=mx, a=a)
    with dns, Daemon(config=config(dns, port)) as d:
        submit(d, "someone@refuse.test")
        wait_deferred(d, "refuse.test")
        time.sleep(3 * SLOW)  # a walk that went on would show here
        eq(connect_tries(d, "refuse.test"), 5, "addresses tried")
        still_queued(d, 1)


def test_limits_inherit_delivery_then_destination():
    """delivery { max_mx_addresses } is the default of every destination;
    destination "x" { max_mx_addresses } overrides it for x only."""
    mx1, a1 = fanout_dns("wide.test", 20)
    mx2, a2 = fanout_dns("narrow.test", 30)
    port = free_port()
    dns = Dns(mx=mx1 + mx2, a=a1 + a2)
    cfg = config(dns, port, "  max_mx_addresses = 7\n",
                 'destination "narrow.test" { max_mx_addresses = 3 }\n')
    with dns, Daemon(config=cfg) as d:
        submit(d, "someone@wide.test")
        submit(d, "someone@narrow.test")
        wait_deferred(d, "wide.test")
        wait_deferred(d, "narrow.test")
        time.sleep(3 * SLOW)
        eq(connect_tries(d, "wide.test"), 7, "wide.test addresses tried")
        eq(connect_tries(d, "narrow.test"), 3,
           "narrow.test addresses tried")
        still_queued(d, 2)


def test_tarpit_sessions_capped():
    """A tarpit on every address: accepts, never greets.  Each accepted
    connection is a session; the built-in limit (2) ends the attempt."""
    mx, a = fanout_dns("tarpit.test", 40)
    port = free_port()
    dns = Dns(mx=mx, a=a)
    with dns, Tarpit(addrs(40), port) as pit, \
            Daemon(config=config(dns, port)) as d:
        submit(d, "someone@tarpit.test")
        wait_deferred(d, "tarpit.test")
        time.sleep(3 * SLOW)
        eq(pit.count(), 2, "connections the tarpit accepted")
        still_queued(d, 1)


def test_tarpit_sessions_per_destination():
    mx, a = fanout_dns("tarpit3.test", 50)
    port = free_port()
    dns = Dns(mx=mx, a=a)
    cfg = config(dns, port, "",
                 'destination "tarpit3.test" { max_mx_sessions = 3 }\n')
    with dns, Tarpit(addrs(50), port) as pit, Daemon(config=cfg) as d:
        submit(d, "someone@tarpit3.test")
        wait_deferred(d, "tarpit3.test")
        time.sleep(3 * SLOW)
        eq(pit.count(), 3, "connections the tarpit accepted")
        still_queued(d, 1)


def test_attempt_deadline():
    """A tarpit and a greeting timeout of an hour: attempt_timeout ends the
    attempt (the remaining time bounds the wait for the greeting), and the
    message is deferred, not stuck."""
    mx, a = fanout_dns("slow.test", 60)
    port = free_port()
    dns = Dns(mx=mx, a=a)
    cfg = ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
           'delivery {\n  port = %d\n  retry_intervals = { "1s" }\n'
           '  retry_jitter = 0\n  greeting_timeout = 1h\n'
           '  max_mx_sessions = 50\n  max_mx_addresses = 250\n}\n'
           'destination "*" { backoff_pause = 1h backoff_max = 1h }\n'
           'destination "slow.test" { attempt_timeout = 2s }\n'
           % (dns.servers, port))
    with dns, Tarpit(addrs(60), port) as pit, Daemon(config=cfg) as d:
        submit(d, "someone@slow.test")
        e = wait_deferred(d, "slow.test", timeout=30)
        eq(pit.count(), 1, "connections the tarpit accepted")
        check("4." in e.get("reply", "") or e.get("code", 0) == 0,
              "a deferral: %r" % e)
        still_queued(d, 1)


run_tests(globals())
