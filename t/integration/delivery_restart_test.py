#!/usr/bin/python3
"""Restart and crash during delivery, through the real outpostd: a queue of
10,000 deferred messages survives a restart and is delivered once the
receiver is back; kill -9 during heavy delivery loses nothing (duplicates
only for the few messages in flight).  Loopback only."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port_on, pipeline,
                          run_tests)


def queued(d):
    return len(d.queue_ids())


def test_restart_with_10000_deferred():
    hosts = ["127.0.0.40"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("later.test", "mx.later.test", 10)],
              a=[("mx.later.test", "127.0.0.40")])
    cfg = delivery_config(dns, port, '''
destination "*" {
  backoff_pause = 1s
  backoff_max = 2s
  max_connections = 10
  max_recipients_per_transaction = 50
}''')
    n = 10000
    with dns:
        d = Daemon(config=cfg)
        d.start()
        try:
            # Nobody listens yet: every message is deferred.
            for k in range(0, n, 2500):
                pipeline(d, ["u%d@later.test" % i
                             for i in range(k, k + 2500)])
            deadline = time.time() + 60 * SLOW
            while time.time() < deadline:
                if "backed off" in d.log() and queued(d) == n:
                    break
                time.sleep(0.5)
            eq(queued(d), n, "all deferred and queued")
            d.stop()
            with Sink(hosts, port, maildir=False) as sink:
                t0 = time.time()
                d.start()
                # The scheduler loads the queue after the listeners are
                # up: wait for the second start's line, not the first's.
                loaded = []
                deadline = time.time() + 30 * SLOW
                while len(loaded) < 2 and time.time() < deadline:
                    loaded = re.findall(r"scheduler: (\d+) queued message",
                                        d.log())
                    time.sleep(0.1)
                eq(loaded[-1], str(n), "loaded at restart")
                sink.wait_messages(n, timeout=180)
                print("# 10,000 delivered %.1fs after the restart"
                      % (time.time() - t0))
                deadline = time.time() + 60 * SLOW
                while queued(d) and time.time() < deadline:
                    time.sleep(0.5)
                eq(queued(d), 0, "queue empty after delivery")
                eq(sink.stats()["messages"], n, "each delivered once")
            d.stop()
        finally:
            if d.proc is not None:
                d.stop()


def test_kill9_during_delivery():
    hosts = ["127.0.0.41"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("busy.test", "mx.busy.test", 10)],
              a=[("mx.busy.test", "127.0.0.41")])
    cfg = delivery_config(dns, port, '''
destination "*" { max_connections = 4 }''')
    n = 3000
    with dns, Sink(hosts, port, ["--reply-delay-ms", "2"]) as sink:
        d = Daemon(config=cfg)
        d.start()
        pipeline(d, ["u%d@busy.test" % i for i in range(n)])
        # Kill once part of it is delivered.
        sink.wait(lambda s: s.get("messages", 0) >= n // 5, timeout=60,
                  what="some deliveries")
        d.kill9()
        before = sink.stats()["messages"]
        check(before < n, "the kill came too late to test anything")
        d.start()
        sink.wait_messages(n, timeout=120)
        deadline = time.time() + 60 * SLOW
        while queued(d) and time.time() < deadline:
            time.sleep(0.5)
        eq(queued(d), 0, "queue empty")
        d.stop()
        ids = {}
        for raw in sink.messages():
            m = re.search(rb"Message-ID: <m(\d+)@", raw)
            check(m, "message id in delivered mail")
            ids[int(m.group(1))] = ids.get(int(m.group(1)), 0) + 1
        missing = [i for i in range(n) if i not in ids]
        eq(missing[:10], [], "lost messages (%d)" % len(missing))
        dups = sum(c - 1 for c in ids.values())
        print("# %d delivered before the kill, %d duplicates after it"
              % (before, dups))
        check(dups <= 4 * 50, "duplicates beyond what was in flight: %d"
              % dups)


run_tests(globals())
