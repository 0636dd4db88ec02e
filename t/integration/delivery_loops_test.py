#!/usr/bin/python3
"""Delivery on several loops (delivery { threads = 4 }) through the real
outpostd, measured at outpost-sink: a destination's max_connections and
its rate, and delivery.max_connections, hold across the loops while
connections are spread over them (the gauge
outpost_delivery_loop_connections shows on which); many destinations over
the loops are all delivered byte for byte; operators' commands, a drain
and a stop work with connections open on several loops.  Loopback
only."""

import json
import os
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Sink, check,  # noqa: E402
                          eq, free_port_on, metrics_text, pipeline, run_tests,
                          wait_empty, wait_for)

THREADS = 4


def loops_config(dns, port, delivery="", extra=""):
    return ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
            'delivery {\n  port = %d\n  threads = %d\n'
            '  retry_intervals = { "1s" }\n  retry_jitter = 0\n'
            '  idle_timeout = 2s\n%s}\n%s'
            % (dns.servers, port, THREADS, delivery, extra))


def delivery_threads(d):
    """The names of the daemon's delivery threads (deliver, deliverN)."""
    names = []
    task = "/proc/%d/task" % d.proc.pid
    for tid in os.listdir(task):
        try:
            with open(os.path.join(task, tid, "comm")) as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("deliver"):
            names.append(name)
    return sorted(names)


def loop_connections(d):
    """outpost_delivery_loop_connections: {loop: connections}."""
    out = {}
    for line in metrics_text(d).splitlines():
        if line.startswith("outpost_delivery_loop_connections{"):
            name, _, value = line.rpartition(" ")
            out[name.split('"')[1]] = int(float(value))
    return out


class LoopWatch:
    """Which loops held connections: the gauge (renewed every second)
    sampled on a thread of its own from start() to stop()."""

    def __init__(self, d):
        self.d = d
        self.seen = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.is_set():
            try:
                for loop, n in loop_connections(self.d).items():
                    if n > 0:
                        self.seen.add(loop)
            except OSError:
                pass  # the daemon is restarting
            self.done.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, et, ev, tb):
        self.done.set()
        self.thread.join()
        return False


def test_threads_setting():
    """threads = 4: four delivery threads; the configuration says so; a
    reload does not change it (restart only)."""
    hosts = ["127.0.0.90"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("t.test", "mx.t.test", 10)], a=[("mx.t.test", hosts[0])])
    with dns, Daemon(config=loops_config(dns, port)) as d:
        wait_for(lambda: len(delivery_threads(d)) == THREADS,
                 what="%d delivery threads" % THREADS)
        eq(delivery_threads(d),
           ["deliver", "deliver1", "deliver2", "deliver3"], "threads")
        out = d.cli("config").stdout
        check('threads="%d"' % THREADS in out, "outpost config: " + out)
        eq(sorted(loop_connections(d)), ["0", "1", "2", "3"],
           "one gauge per loop")
        # A reload keeps the running count, and says so.
        with open(d.conf_path) as f:
            text = f.read()
        with open(d.conf_path, "w") as f:
            f.write(text.replace("threads = %d" % THREADS, "threads = 2"))
        r = d.cli("reload", check_rc=False)
        eq(r.returncode, 0, "outpost reload: %s %s" % (r.stdout, r.stderr))
        check("warning: delivery.threads changed: takes effect at restart"
              in r.stdout, "reload: " + r.stdout)
        eq(len(delivery_threads(d)), THREADS, "delivery threads after")


def test_destination_cap_holds_across_loops():
    """One site (two domains behind one MX), max_connections = 2, and at
    most 3 messages a connection: connections come and go over several
    loops, never more than 2 at once."""
    hosts = ["127.0.0.91"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("a.test", "mx.shared.test", 10),
                  ("b.test", "mx.shared.test", 10)],
              a=[("mx.shared.test", hosts[0])])
    cfg = loops_config(dns, port, extra='''
destination "*" {
  max_connections = 2
  max_messages_per_connection = 3
  max_recipients_per_transaction = 1
}''')
    with dns, Sink(hosts, port, ["--reply-delay-ms", "40"],
                   maildir=False) as sink, Daemon(config=cfg) as d:
        rcpts = ["u%d@%s" % (i, "a.test" if i % 2 else "b.test")
                 for i in range(60)]
        with LoopWatch(d) as w:
            pipeline(d, rcpts)
            st = sink.wait_messages(60, timeout=90)
        check(st["connections_max"] <= 2,
              "at most 2 connections at once, saw %d"
              % st["connections_max"])
        check(st["connections_total"] >= 20,
              "at most 3 messages per connection: %d connections"
              % st["connections_total"])
        check(len(w.seen) >= 2, "connections on one loop only: %s"
              % sorted(w.seen))
        wait_empty(d)


def test_rate_holds_across_loops():
    """240 messages a minute (one every 250 ms) to one destination with
    up to 8 connections spread over the loops."""
    hosts = ["127.0.0.92"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("slow.test", "mx.slow.test", 10)],
              a=[("mx.slow.test", hosts[0])])
    cfg = loops_config(dns, port, extra='''
destination "slow.test" {
  max_messages_per_minute = 240
  max_connections = 8
  max_recipients_per_transaction = 1
}''')
    with dns, Sink(hosts, port, maildir=False) as sink, \
            Daemon(config=cfg) as d:
        pipeline(d, ["r%d@slow.test" % i for i in range(16)])
        st = sink.wait_messages(16, timeout=40)
        spread = st["last_message_time"] - st["first_message_time"]
        # 15 gaps of 250 ms: >= 3.75 s.
        check(spread >= 3.5, "16 messages in %.2fs despite 4/s" % spread)
        for sec, n in st["messages_per_second"]:
            check(n <= 5, "%d messages in one second" % n)


def receivers(tag, first, n):
    """N domains TAGi.test, each with its MX on 127.0.0.(FIRST+i), one
    delivery port for all, and the dnsmasq that says so."""
    hosts = ["127.0.0.%d" % (first + i) for i in range(n)]
    port = free_port_on(hosts)
    domains = ["%s%d.test" % (tag, i) for i in range(n)]
    dns = Dns(mx=[(dom, "mx." + dom, 10) for dom in domains],
              a=[("mx." + dom, h) for dom, h in zip(domains, hosts)])
    return hosts, port, domains, dns


def test_global_cap_holds_across_loops():
    """delivery.max_connections = 3 over 6 destinations on 6 hosts."""
    hosts, port, domains, dns = receivers("g", 93, 6)
    cfg = loops_config(dns, port, "  max_connections = 3\n")
    with dns, Sink(hosts, port, ["--reply-delay-ms", "30"],
                   maildir=False) as sink, Daemon(config=cfg) as d:
        with LoopWatch(d) as w:
            pipeline(d, ["u%d@%s" % (i, domains[i % 6]) for i in range(36)])
            st = sink.wait_messages(36, timeout=60)
        check(st["connections_max"] <= 3,
              "at most 3 connections at once, saw %d"
              % st["connections_max"])
        check(len(w.seen) >= 2, "connections on one loop only: %s"
              % sorted(w.seen))
        wait_empty(d)


def messages_active(d):
    for line in metrics_text(d).splitlines():
        if line.startswith('outpost_queue_messages{state="active"} '):
            return int(float(line.rpartition(" ")[2]))
    raise AssertionError("no active gauge")


def test_messages_in_memory_cap_holds_across_loops():
    """delivery.max_messages_in_memory is the daemon's, not each loop's:
    400 messages for 8 slow receivers, at most 100 in rounds at once over
    the 4 loops (each its part), and all delivered."""
    hosts, port, domains, dns = receivers("m", 101, 8)
    cfg = loops_config(dns, port, "  max_messages_in_memory = 100\n")
    with dns, Sink(hosts, port, ["--reply-delay-ms", "200"],
                   maildir=False) as sink, Daemon(config=cfg) as d:
        pipeline(d, ["u%d@%s" % (i, domains[i % 8]) for i in range(400)])
        most = 0
        deadline = time.time() + 120 * SLOW
        while sink.stats().get("messages", 0) < 400:
            check(time.time() < deadline, "400 delivered: %s"
                  % sink.stats())
            most = max(most, messages_active(d))
            time.sleep(0.05)
        print("# at most %d messages in rounds at once" % most)
        check(50 <= most <= 100, "messages in rounds at once: %d" % most)
        wait_empty(d)


def body_of(name, size):
    """A message NAME of about SIZE bytes, its lines numbered."""
    head = (b"From: <news@sender.test>\r\nSubject: %s\r\n"
            b"Message-ID: <%s@sender.test>\r\n\r\n"
            % (name.encode(), name.encode()))
    lines = []
    n, i = len(head), 0
    while n < size:
        line = b"%s line %06d %s\r\n" % (name.encode(), i, b"x" * (i % 70))
        if i % 97 == 0:
            line = b"." + line  # dot-stuffed on the wire, not stored
        lines.append(line)
        n += len(line)
        i += 1
    return head + b"".join(lines)


def stored_body(raw):
    """What the sink stored, less its envelope line and our Received:
    field (the first, folded, field after it)."""
    check(raw.startswith(b"X-Sink-Envelope: "), "stored: %r" % raw[:80])
    lines = raw.split(b"\r\n")[1:]
    i = 1
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    check(lines[0].startswith(b"Received:"), "stored: %r" % raw[:80])
    return b"\r\n".join(lines[i:])


def test_many_destinations_byte_for_byte():
    """24 destinations on 24 hosts, 3 messages each (one of them over
    two queue chunks): all delivered, each exactly as submitted, with
    connections on every loop."""
    hosts = ["127.0.0.%d" % (110 + i) for i in range(24)]
    port = free_port_on(hosts)
    domains = ["m%d.test" % i for i in range(24)]
    dns = Dns(mx=[(dom, "mx." + dom, 10) for dom in domains],
              a=[("mx." + dom, h) for dom, h in zip(domains, hosts)])
    cfg = loops_config(dns, port)
    sent = {}
    with dns, Sink(hosts, port, ["--reply-delay-ms", "30"]) as sink, \
            Daemon(config=cfg) as d:
        with LoopWatch(d) as w:
            s = smtplib.SMTP("127.0.0.1", d.port, timeout=60 * SLOW)
            for i in range(72):
                dom = domains[i % 24]
                name = "m%03d" % i
                size = 600 * 1024 if i % 24 == 5 else 300 + 97 * i
                msg = body_of(name, size)
                sent[name] = msg
                s.sendmail("news@sender.test", ["u%d@%s" % (i, dom)], msg)
            s.quit()
            sink.wait_messages(72, timeout=120)
            # Idle for idle_timeout (2 s): the gauge (renewed every
            # second) shows them.
            wait_for(lambda: len(w.seen) == THREADS, timeout=10,
                     what="connections on every loop: %s" % w.seen)
        got = {}
        for raw in sink.messages():
            body = stored_body(raw)
            name = body.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
            got[name.decode()] = body
        eq(sorted(got), sorted(sent), "messages stored")
        for name, msg in sent.items():
            check(got[name] == msg, "%s differs (%d bytes stored, %d sent)"
                  % (name, len(got[name]), len(msg)))
        wait_empty(d)


def submit_slow(d, domains, n, tag):
    """N messages whose DATA the sink answers after --slow-ms."""
    pipeline(d, ["slow%s%d@%s" % (tag, i, domains[i % len(domains)])
                 for i in range(n)])


def test_operators_drain_and_stop_across_loops():
    """Connections open on several loops (the sink answers DATA after
    1.5 s): hold, release, delete, retry, suspend and resume are answered
    and obeyed; `outpost drain` lets the deliveries in flight finish and
    the daemon exits 0 with nothing lost; after a restart, a stop
    (SIGTERM) with connections open on several loops exits 0 too."""
    hosts = ["127.0.0.%d" % (140 + i) for i in range(8)]
    port = free_port_on(hosts)
    domains = ["o%d.test" % i for i in range(8)]
    dns = Dns(mx=[(dom, "mx." + dom, 10) for dom in domains] +
              [("p.test", "mx.o0.test", 10)],
              a=[("mx." + dom, h) for dom, h in zip(domains, hosts)])
    cfg = loops_config(dns, port, "  max_connections = 64\n")
    with dns, Sink(hosts, port, ["--slow-ms", "1500"],
                   maildir=False) as sink:
        d = Daemon(config=cfg)
        with d:
            d.cli("suspend", "p.test", "--for", "1h")
            pipeline(d, ["p%d@p.test" % i for i in range(4)])
            submit_slow(d, domains, 24, "a")
            with LoopWatch(d) as w:
                wait_for(lambda: len(w.seen) >= 2 and
                         sink.stats().get("rcpt_accepted", 0) >= 8,
                         what="connections open on two loops")
            # A hold while deliveries are in flight: those settle, the
            # rest wait; release makes them due again.
            out = json.loads(d.cli("queue", "hold", "--all",
                                   "--json").stdout)
            check(out["changed"] >= 4, "hold: %s" % out)
            out = json.loads(d.cli("queue", "release", "--all",
                                   "--json").stdout)
            check(out["changed"] >= 4, "release: %s" % out)
            d.cli("queue", "retry", "--domain", "o1.test")
            # p.test is suspended: its 4 messages stay; delete one.
            out = d.cli("queue", "list", "--domain", "p.test",
                        "--json").stdout
            ids = [json.loads(x)["id"] for x in out.splitlines() if x]
            eq(len(ids), 4, "p.test messages waiting")
            d.cli("queue", "delete", ids[0])
            d.cli("resume", "p.test")
            st = sink.wait_messages(27, timeout=60)
            wait_empty(d)
            eq(st["messages"], 27, "every message but the deleted one")
            # Drain with connections open on several loops.
            submit_slow(d, domains, 16, "b")
            with LoopWatch(d) as w:
                wait_for(lambda: len(w.seen) >= 2 and
                         sink.stats().get("rcpt_accepted", 0) >= 27 + 8,
                         what="connections open on two loops")
            d.cli("drain")
            rc = d.proc.wait(timeout=60 * SLOW)
            eq(rc, 0, "exit status after drain")
            log = d.log()
            check("outpost drain: shutting down" in log, log[-2000:])
            d.proc = None
            d.logf.close()
            d.check_sanitizers()
            got = sink.stats()["messages"]
            # Restart: what the drain left queued goes now; then a stop
            # with connections open on several loops.
            d.start()
            submit_slow(d, domains, 16, "c")
            with LoopWatch(d) as w:
                wait_for(lambda: len(w.seen) >= 2,
                         what="connections open on two loops")
            d.stop()  # SIGTERM: exit 0 required
            d.start()
            st = sink.wait_messages(27 + 16 + 16, timeout=90)
            wait_empty(d)
            check(got <= st["messages"], "counts went back")
            eq(st["messages"], 27 + 16 + 16, "delivered once each")


if __name__ == "__main__":
    run_tests(globals())
