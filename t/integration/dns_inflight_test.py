#!/usr/bin/python3
"""DNS questions in flight are capped, through the real outpostd: 500
destinations, each with an MX record in the test's dnsmasq, reached through
a proxy of the test's own that holds every answer 30 ms and counts the
questions asked but not yet answered.  With dns { max_inflight = 8 } that
count never passes 8 and every message is delivered (without the cap
outpostd asks hundreds at once).  Loopback only."""

import os
import selectors
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Sink, TestFailure, check,  # noqa
                          delivery_config, eq, free_udp_port, pipeline,
                          run_tests, wait_for)

NDOMAINS = 500
CAP = 8
HOLD_S = 0.03


class HoldingProxy:
    """UDP on 127.0.0.1: each question goes to UPSTREAM (dnsmasq) at once,
    its answer goes back to the asker HOLD_S later.  Counted for names
    under ZONE only (what delivery asks: the intake's DMARC questions come
    from another loop's resolver, with a cap of its own): outstanding:
    asked, not yet answered; peak: its maximum; asked: questions in all."""

    ZONE = b"\x03cap\x04test\x00"

    def __init__(self, upstream_port):
        self.up = ("127.0.0.1", upstream_port)
        self.outstanding = self.peak = self.asked = 0
        self.pending = {}  # (id, question) -> asker
        self.held = []     # (due, answer, asker)
        self.stop_flag = False
        for _ in range(20):
            self.port = free_udp_port()
            self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.front.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.front.close()
        self.front.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.back.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.servers = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.run, daemon=True)

    @staticmethod
    def key(pkt):
        """The id and the question (name, type, class): what a query and
        its answer share (the EDNS record after it may differ)."""
        off = 12
        while off < len(pkt) and pkt[off] != 0:
            off += 1 + pkt[off]
        return pkt[:2] + pkt[12:off + 5]

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.front, selectors.EVENT_READ, "front")
        sel.register(self.back, selectors.EVENT_READ, "back")
        while not self.stop_flag:
            now = time.monotonic()
            wait = min([h[0] for h in self.held], default=now + 0.05) - now
            for k, _ in sel.select(max(0.0, min(wait, 0.05))):
                if k.data == "front":
                    pkt, asker = self.front.recvfrom(4096)
                    if len(pkt) < 12:
                        continue
                    k = self.key(pkt)
                    if k[:-4].endswith(self.ZONE):
                        self.asked += 1
                        self.outstanding += 1
                        self.peak = max(self.peak, self.outstanding)
                    self.pending[k] = asker
                    self.back.sendto(pkt, self.up)
                else:
                    pkt, _ = self.back.recvfrom(4096)
                    asker = self.pending.pop(self.key(pkt), None)
                    if asker is not None:
                        self.held.append((time.monotonic() + HOLD_S, pkt,
                                          asker))
            now = time.monotonic()
            for h in [h for h in self.held if h[0] <= now]:
                self.held.remove(h)
                if self.key(h[1])[:-4].endswith(self.ZONE):
                    self.outstanding -= 1
                self.front.sendto(h[1], h[2])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, et, ev, tb):
        self.stop_flag = True
        self.thread.join(5)
        self.front.close()
        self.back.close()
        return False


def test_inflight_capped():
    domains = ["d%03d.cap.test" % i for i in range(NDOMAINS)]
    mx = [(dom, "mx.cap.test", 10) for dom in domains]
    with Dns(mx=mx, a=[("mx.cap.test", "127.0.0.1")]) as dns, \
            HoldingProxy(dns.port) as proxy, Sink() as sink:
        conf = delivery_config(port=sink.port, extra=(
            'dns { servers = "%s" timeout = 5s tries = 2 max_inflight = %d'
            ' }\n' % (proxy.servers, CAP)))
        with Daemon(conf) as d:
            rcpts = ["u@%s" % dom for dom in domains]
            # 10 messages of 50 domains each: 500 destinations at once.
            pipeline(d, rcpts, per_msg=50)
            sink.wait_messages(NDOMAINS, timeout=120)
            # The gauges are rendered once a second: wait for the last.
            url = "http://127.0.0.1:%d/metrics" % d.metrics_port
            got = {}

            def settled():
                with urllib.request.urlopen(url, timeout=10) as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith("outpost_dns_"):
                            k, v = line.split()
                            got[k] = float(v)
                # A rendering taken while the last lookups (the MX
                # host's addresses) were still out shows them in flight:
                # wait for one where nothing is, which never comes if a
                # count leaks.
                return (got.get("outpost_dns_queries_total", 0) >= NDOMAINS
                        and got.get("outpost_dns_queries_inflight") == 0
                        and got.get("outpost_dns_queries_waiting") == 0)
            try:
                wait_for(settled, what="outpost_dns_queries_total >= %d, "
                         "none in flight or waiting" % NDOMAINS)
            except TestFailure as e:
                raise TestFailure("%s; last rendering: %r" % (e, got))
            eq(got["outpost_dns_queries_inflight"], 0, "in flight")
            eq(got["outpost_dns_queries_waiting"], 0, "waiting")
            eq(got["outpost_dns_wait_timeouts_total"], 0, "wait timeouts")
        check(proxy.asked >= NDOMAINS,
              "only %d questions reached the proxy" % proxy.asked)
        check(proxy.peak <= CAP,
              "%d questions in flight at once (max_inflight = %d)"
              % (proxy.peak, CAP))
        check(proxy.peak >= 2, "the burst never overlapped: peak %d"
              % proxy.peak)
        eq(sink.stats().get("messages"), NDOMAINS, "messages delivered")


def test_cache_size_zero_asks_every_time():
    """dns { cache_size = 0 } is "no cache" (outpost.conf): a second
    message to a domain, on a connection of its own, asks its MX again,
    where the default cache answers it.  Before the fix 0 meant "the
    default 100000" in dns/, and both asked alike."""
    mx = [("one.cap.test", "mx.cap.test", 10)]
    again = {}
    for size in ("0", "100000"):
        with Dns(mx=mx, a=[("mx.cap.test", "127.0.0.1")]) as dns, \
                HoldingProxy(dns.port) as proxy, Sink() as sink:
            conf = delivery_config(port=sink.port, extra=(
                'dns { servers = "%s" cache_size = %s }\n'
                'destination "*" { max_messages_per_connection = 1 }\n'
                # one shard: each has a resolver (and a cache) of its own
                'delivery { threads = 1 }\n'
                % (proxy.servers, size)))
            with Daemon(conf) as d:
                pipeline(d, ["a@one.cap.test"])
                sink.wait_messages(1)
                first = proxy.asked
                check(first >= 1, "cache_size %s: the first message asked"
                      % size)
                pipeline(d, ["b@one.cap.test"])
                sink.wait_messages(2)
                again[size] = proxy.asked - first
    # With the cache, only what no cache keeps is asked again (a NODATA
    # without an SOA, RFC 2308 5).
    check(again["0"] > again["100000"],
          "questions asked again for the second message: %r" % again)


run_tests(globals())
