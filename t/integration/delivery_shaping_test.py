#!/usr/bin/python3
"""Per-destination shaping through the real outpostd, measured at the
receiver: connection cap, rate limit, MX roll-up, source-address pools,
421 back-off, reply-pattern suspension, adaptive back-off (throttle_on),
expiry with a DSN, a third-party receiver (aiosmtpd with STARTTLS), and a
rate-limited destination with a backlog that does not starve another one.
Loopback only."""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port, free_port_on,
                          metrics_text, pipeline, run_tests, wait_empty,
                          wait_for, wait_port)


def test_connection_cap_and_mx_rollup():
    # a.test and b.test share one MX host: one site, one connection cap.
    hosts = ["127.0.0.30"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("a.test", "mx.shared.test", 10),
                  ("b.test", "mx.shared.test", 10)],
              a=[("mx.shared.test", "127.0.0.30")])
    cfg = delivery_config(dns, port, '''
destination "*" {
  max_connections = 2
  max_messages_per_connection = 5
  max_recipients_per_transaction = 1
}''')
    with dns, Sink(hosts, port, ["--reply-delay-ms", "20"],
                   maildir=False) as sink, Daemon(config=cfg) as d:
        rcpts = ["u%d@%s" % (i, "a.test" if i % 2 else "b.test")
                 for i in range(60)]
        pipeline(d, rcpts)
        st = sink.wait_messages(60, timeout=60)
        check(st["connections_max"] <= 2,
              "at most 2 connections at once, saw %d"
              % st["connections_max"])
        check(st["connections_total"] >= 12,
              "at most 5 messages per connection: %d connections"
              % st["connections_total"])
        wait_empty(d)


def test_global_cap_shares_its_slots():
    """delivery.max_connections below the number of destinations: a
    destination turned away by the cap gets a slot when another's
    connection ends (idle_timeout 0s: each closes at once), and when the
    others only hold idle ones (idle_timeout 60s: an idle connection gives
    its slot up to a destination that waits).  Every message goes out
    promptly either way; none waits for a retry or an idle timeout."""
    hosts = ["127.0.0.81", "127.0.0.82", "127.0.0.83", "127.0.0.84"]
    port = free_port_on(hosts)
    domains = ["cap%d.test" % i for i in range(4)]
    for idle in ("0s", "60s"):
        dns = Dns(mx=[(dom, "mx.%s" % dom, 10) for dom in domains],
                  a=[("mx.%s" % dom, h) for dom, h in zip(domains, hosts)])
        cfg = ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
               'delivery {\n  port = %d\n  retry_intervals = { "10m" }\n'
               '  retry_jitter = 0\n  idle_timeout = %s\n'
               '  max_connections = 2\n}\n' % (dns.servers, port, idle))
        with dns, Sink(hosts, port, ["--reply-delay-ms", "20"],
                       maildir=False) as sink, Daemon(config=cfg) as d:
            pipeline(d, ["u%d@%s" % (i, domains[i % 4]) for i in range(8)])
            st = sink.wait_messages(8, timeout=20 * SLOW)
            check(st["connections_max"] <= 2,
                  "idle %s: at most 2 connections at once, saw %d"
                  % (idle, st["connections_max"]))
            wait_empty(d)


def test_rate_limit():
    hosts = ["127.0.0.31"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("slow.test", "mx.slow.test", 10)],
              a=[("mx.slow.test", "127.0.0.31")])
    cfg = delivery_config(dns, port, '''
destination "slow.test" { max_messages_per_minute = 240 }''')
    with dns, Sink(hosts, port, maildir=False) as sink, \
            Daemon(config=cfg) as d:
        pipeline(d, ["r%d@slow.test" % i for i in range(12)])
        st = sink.wait_messages(12, timeout=30)
        spread = st["last_message_time"] - st["first_message_time"]
        # 240/min is one every 250 ms: 12 messages need >= 2.75 s.
        check(spread >= 2.5, "12 messages in %.2fs despite 4/s" % spread)
        for sec, n in st["messages_per_second"]:
            check(n <= 5, "%d messages in one second" % n)


def test_source_address_pool():
    hosts = ["127.0.0.32"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("pool.test", "mx.pool.test", 10)],
              a=[("mx.pool.test", "127.0.0.32")])
    cfg = delivery_config(dns, port, '''
pool "bulk" { source = { "127.0.0.2", "127.0.0.3" } ehlo = "bulk1.outpost.test" }
relay { networks = { "127.0.0.0/8" } pool = "bulk" }
destination "*" { max_messages_per_connection = 1 }''')
    with dns, Sink(hosts, port) as sink, \
            Daemon(config=cfg, relay_loopback=False) as d:
        pipeline(d, ["r%d@pool.test" % i for i in range(6)])
        st = sink.wait_messages(6, timeout=30)
        clients = set(st["clients"].keys())
        eq(clients, {"127.0.0.2", "127.0.0.3"}, "source addresses used")
        helos = {m.split(b"helo=")[1].split(b"\r\n")[0].split(b" ")[0]
                 for m in sink.messages()}
        eq(helos, {b"bulk1.outpost.test"}, "pool EHLO name")


class ConnWatch:
    """The most connections the sink held at once while it ran (sampled
    every 10 ms from its stats)."""

    def __init__(self, sink):
        self.sink, self.max, self.stop = sink, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.max = max(self.max,
                           self.sink.stats().get("connections_now", 0))
            time.sleep(0.01)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()


def test_adaptive_backoff_steps_down_and_recovers():
    """throttle_on = rate-limited, 50 % a step, 5 s a step: 8 connections;
    one reply "451 4.7.28 ... rate limited" (its retry is accepted) takes
    the destination to 4, open connections past it close, mail still goes
    (nothing paused or bounced); once the step is over, 8 again."""
    hosts = ["127.0.0.38"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("thr.test", "mx.thr.test", 10)],
              a=[("mx.thr.test", hosts[0])])
    cfg = delivery_config(dns, port, '''
destination "thr.test" {
  max_connections = 8
  max_recipients_per_transaction = 1
  max_messages_per_connection = 1000
  throttle_on = { "rate-limited" }
  throttle_factor = 50
  throttle_for = 5s
  throttle_max_steps = 3
}''')
    tmp = tempfile.mkdtemp(prefix="outpost-thr-")
    rules = os.path.join(tmp, "rules")
    with open(rules, "w") as f:
        f.write("tr once 451 4.7.28 Our system has detected an unusual "
                "rate of mail: rate limited\n")
    with dns, Sink(hosts, port, ["--reply-delay-ms", "40", "--rules",
                                 rules], maildir=False) as sink, \
            Daemon(config=cfg) as d:

        def phase(tag, n=64):
            with ConnWatch(sink) as w:
                pipeline(d, ["%s%d@thr.test" % (tag, i) for i in range(n)])
                wait_empty(d)
            return w.max

        full = phase("a")
        check(full >= 6, "before: %d connections at most" % full)
        pipeline(d, ["tr0@thr.test"])
        wait_for(lambda: "throttled, step 1 of 3: 4 connection(s)" in
                 d.log(), 10, "the step down logged")
        # The idle connections past 4 are told to go at once.
        wait_for(lambda: sink.stats().get("connections_now", 9) <= 4, 5,
                 "idle connections past the step closed")
        # Phase b (about 2 s) within the step: once the step is over,
        # the next kick of the path (with several delivery loops, one
        # comes as soon as another loop's connection ends) opens 8 again.
        low = phase("b")
        check(low <= 4, "throttled: %d connections at once" % low)
        wait_empty(d)
        time.sleep(5.5)  # the step is over
        back = phase("c")
        check(back >= 6, "recovered: %d connections at most" % back)
        # The queue is empty once the last replies came; the sink counts
        # what it took every 100 ms: wait for its count, then check it.
        wait_for(lambda: sink.stats()["messages"] >= 3 * 64 + 1, 5,
                 "the sink's count")
        st = sink.stats()
        eq(st["messages"], 3 * 64 + 1, "everything delivered")
        check("suspended" not in d.log() and "paused" not in d.log(),
              "throttled, not paused")
        check(re.search(r"outpost_destination_throttle_steps_total 1\b",
                        metrics_text(d)), "the step counted")


def test_421_backs_off_and_pattern_suspends():
    hosts = ["127.0.0.33", "127.0.0.34"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("busy.test", "mx.busy.test", 10),
                  ("pat.test", "mx.pat.test", 10)],
              a=[("mx.busy.test", "127.0.0.33"),
                 ("mx.pat.test", "127.0.0.34")])
    rules = tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False)
    rules.write("blocked rcpt 451 4.7.1 Rate limited: try again later\n")
    rules.close()
    cfg = delivery_config(dns, port, '''
destination "*" { backoff_pause = 5s }
destination "pat.test" {
  suspend_on = { "rate limited" }
  suspend_for = 30s
}''')
    with dns, Sink(hosts, port, ["--rules", rules.name]) as sink, \
            Daemon(config=cfg) as d:
        pipeline(d, ["close421-x@busy.test", "blocked-y@pat.test",
                     "fine@pat.test"])
        time.sleep(2 * SLOW)
        log = d.log()
        check("destination mx.busy.test:%d backed off" % port in log,
              "421 backed the destination off")
        check("suspended for 30 s" in log, "pattern suspended pat.test")
    os.unlink(rules.name)


def test_last_of_64_suspend_patterns_suspends():
    # The config allows 64 suspend_on patterns: the 64th must count as
    # much as the first (the scheduler used to look at 32 only).
    hosts = ["127.0.0.38"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("many.test", "mx.many.test", 10)],
              a=[("mx.many.test", "127.0.0.38")])
    rules = tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False)
    rules.write("blocked rcpt 451 4.7.1 Pattern sixty-four matched\n")
    rules.close()
    pats = ", ".join('"never matched %d"' % i for i in range(1, 64))
    cfg = delivery_config(dns, port, '''
destination "many.test" {
  suspend_on = { %s, "pattern sixty-four" }
  suspend_for = 30s
}''' % pats)
    with dns, Sink(hosts, port, ["--rules", rules.name]) as sink, \
            Daemon(config=cfg) as d:
        pipeline(d, ["blocked-y@many.test"])
        deadline = time.time() + 10 * SLOW
        while ("suspended for 30 s" not in d.log() and
               time.time() < deadline):
            time.sleep(0.1)
        check("suspended for 30 s" in d.log(),
              "the 64th suspend_on pattern suspended many.test")
    os.unlink(rules.name)


def test_expiry_sends_dsn():
    hosts = ["127.0.0.35"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("gone.test", "mx.gone.test", 10),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.gone.test", "127.0.0.36"),   # nobody listens
                 ("mx.sender.test", "127.0.0.35")])
    cfg = delivery_config(dns, port).replace(
        "delivery {", 'delivery {\n  max_age = 3s\n  connect_timeout = 1s')
    with dns, Sink(hosts, port) as sink, Daemon(config=cfg) as d:
        pipeline(d, ["x@gone.test"])
        sink.wait_messages(1, timeout=30)
        dsn = sink.messages()[0].decode()
        check("Status: 4.4.7" in dsn, "expiry status in the DSN")
        check("Action: failed" in dsn, "action failed")
        wait_empty(d)


AIOSMTPD_SERVER = r'''
import asyncio, ssl, sys, os
from aiosmtpd.controller import Controller
host, port, cert, key, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
class H:
    async def handle_DATA(self, server, session, envelope):
        tls = session.ssl is not None
        with open(out, "a") as f:
            f.write("%s %s %d\n" % ("tls" if tls else "clear",
                    ",".join(envelope.rcpt_tos), len(envelope.content)))
        return "250 2.0.0 OK aiosmtpd"
c = Controller(H(), hostname=host, port=port, tls_context=ctx,
               require_starttls=True)
c.start()
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
except KeyboardInterrupt:
    pass
'''


def test_aiosmtpd_receiver_with_starttls():
    tmp = tempfile.mkdtemp(prefix="outpost-aio-")
    cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=mx.aio.test"], check=True,
                   capture_output=True)
    script = os.path.join(tmp, "srv.py")
    with open(script, "w") as f:
        f.write(AIOSMTPD_SERVER)
    out = os.path.join(tmp, "received")
    port = free_port_on(["127.0.0.37"])
    srv = subprocess.Popen(["/usr/bin/python3", script, "127.0.0.37",
                            str(port), cert, key, out],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        eq(srv.stdout.readline().strip(), b"ready", "aiosmtpd started")
        dns = Dns(mx=[("aio.test", "mx.aio.test", 10)],
                  a=[("mx.aio.test", "127.0.0.37")])
        with dns, Daemon(config=delivery_config(dns, port)) as d:
            pipeline(d, ["one@aio.test", "two@aio.test"], per_msg=2)
            deadline = time.time() + 30 * SLOW
            while not os.path.exists(out) and time.time() < deadline:
                time.sleep(0.1)
            with open(out) as f:
                lines = f.read().split()
            eq(lines[0], "tls", "aiosmtpd received over STARTTLS")
            eq(lines[1], "one@aio.test,two@aio.test", "both recipients")
            wait_empty(d)
    finally:
        srv.terminate()
        srv.wait()


def test_a_slow_destination_does_not_starve_the_others():
    """Messages in a round are bounded (delivery.max_messages_in_memory,
    here its least, 100); 300 messages for a destination held to one a
    second would take every round, and a message for another destination
    would wait behind them for minutes.  The slow destination's line is
    held to what it delivers in 30 s (64 at least): the others wait parked
    (no round, nothing written), so the other message goes at once, and
    the slow ones keep their pace, none lost."""
    hosts = ["127.0.0.35", "127.0.0.36"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("slow.test", "mx.slow.test", 10),
                  ("fast.test", "mx.fast.test", 10)],
              a=[("mx.slow.test", "127.0.0.35"),
                 ("mx.fast.test", "127.0.0.36")])
    cfg = delivery_config(dns, port, '''
delivery { max_messages_in_memory = 100 }
destination "slow.test" { max_messages_per_minute = 60 }''')
    with dns, Sink(hosts, port) as sink, Daemon(config=cfg) as d:
        pipeline(d, ["r%d@slow.test" % i for i in range(300)])
        # The slow line is measured over a window of 2 s.
        time.sleep(3 * SLOW)
        t0 = time.time()
        pipeline(d, ["x@fast.test"])
        deadline = t0 + 15 * SLOW
        while not any(b"x@fast.test" in m for m in sink.messages()):
            check(time.time() < deadline,
                  "the message for fast.test still waits after %.0fs "
                  "(%d at the sink)" % (time.time() - t0,
                                        sink.stats().get("messages", 0)))
            time.sleep(0.2)
        took = time.time() - t0
        print("# fast.test delivered %.1fs after it was queued" % took)
        # The queue first, the sink then: a message gone from the queue
        # by the first look is at the sink by the second (none lost),
        # once the sink's stats file (written every 100 ms) shows it.
        left = len(d.queue_ids())
        time.sleep(0.3)
        slow = sink.stats().get("messages", 0) - 1
        check(slow <= 3 + (time.time() - t0 + 3 * SLOW + 2) * 1.2,
              "slow.test went over its rate: %d" % slow)
        check(left + slow >= 300, "slow.test: %d queued and %d delivered "
              "of 300" % (left, slow))


run_tests(globals())
