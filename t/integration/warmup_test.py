#!/usr/bin/python3
"""IP warm-up through the real outpostd: pool "NAME" { warmup_start,
warmup "CLASS" { daily = { … } } }.  A source address sends at most the
day's budget to the destinations of its class, spread evenly over the day
(so the test's budgets are per-second rates in disguise: 864,000 a day is
10 a second); the budget rises day by day (the daemon's clock moved on
with the test clock, OUTPOST_TEST_CLOCK_OFFSET), and past the schedule's
last day there is no limit.  Destinations of another class are not held
back.  In a cluster, the day's budget is the cluster's.  Loopback only."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Redis, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port_on, metrics_text,
                          pipeline, run_tests, wait_empty, wait_for)

DAY = 86400
HOST = "127.0.0.67"


def today():
    return time.strftime("%Y-%m-%d", time.gmtime())


def config(dns, port, extra=""):
    return delivery_config(dns, port, '''
pool "new" {
  source = { "127.0.0.2" }
  warmup_start = "%s"
  warmup "warm.test" { daily = { 864000, 2592000 } }
}
relay { networks = { "127.0.0.0/8" } pool = "new" }
destination "warm.test" { max_connections = 4
  max_recipients_per_transaction = 1 max_messages_per_connection = 1000 }
destination "*" { max_connections = 4
  max_recipients_per_transaction = 1 max_messages_per_connection = 1000 }
%s''' % (today(), extra))


def at_day(offset_days):
    os.environ["OUTPOST_TEST_CLOCK_OFFSET"] = str(int(offset_days * DAY))


def spread(sink, before, n, tag, d):
    """Send N to TAG's domain through D; the seconds the receiver took
    between the first and the last of them."""
    t0 = time.time()
    pipeline(d, ["%s%d@%s" % (tag[0], i, tag) for i in range(n)])
    sink.wait_messages(before + n, timeout=60)
    wait_empty(d)
    return time.time() - t0


def test_budget_rises_by_day_and_ends():
    """Day 1: 10 a second to warm.test (20 messages take about 2 s);
    day 2: 30 a second; day 3: past the schedule, no limit.  other.test
    (class "*", no warmup of its own) is never held back."""
    other = "127.0.0.69"  # its own MX host: a site of its own
    dns = Dns(mx=[("warm.test", "mx.warm.test", 10),
                  ("other.test", "mx.other.test", 10)],
              a=[("mx.warm.test", HOST), ("mx.other.test", other)])
    port = free_port_on([HOST, other])
    took = {}
    try:
        with dns, Sink([HOST, other], port, maildir=False) as sink:
            n = 0
            for day in (0, 1, 2):
                at_day(day)
                with Daemon(config=config(dns, port),
                            relay_loopback=False) as d:
                    took[day] = spread(sink, n, 21, "warm.test", d)
                    n += 21
                    if day == 0:
                        took["other"] = spread(sink, n, 21, "other.test",
                                               d)
                        n += 21
    finally:
        os.environ.pop("OUTPOST_TEST_CLOCK_OFFSET", None)
    check(took[0] >= 20 * 0.1 * 0.9,
          "day 1 (10/s): 21 messages in %.2fs" % took[0])
    check(took[1] >= 20 / 30.0 * 0.9 and took[1] < took[0] * 0.7,
          "day 2 (30/s): 21 messages in %.2fs (day 1: %.2fs)"
          % (took[1], took[0]))
    check(took[2] < took[1],
          "day 3 (past the schedule): %.2fs (day 2: %.2fs)"
          % (took[2], took[1]))
    check(took["other"] < took[0] * 0.6,
          "other.test is not warming up: %.2fs" % took["other"])


def test_budget_is_the_clusters():
    """Two nodes warming the same address range up, 10 a second to
    warm.test on day 1: 10 a second at the receiver, not 20."""
    dns = Dns(mx=[("warm.test", "mx.warm.test", 10)],
              a=[("mx.warm.test", "127.0.0.68")])
    port = free_port_on(["127.0.0.68"])
    with Redis() as redis, dns, \
            Sink(["127.0.0.68"], port, maildir=False) as sink:
        extra = ('cluster {\n  redis = "%s"\n  node = "%%s"\n  nodes = 2\n'
                 '  lease = 3s\n  timeout = 300ms\n}\n' % redis.addr)
        a = Daemon(config=config(dns, port, extra % "a"),
                   relay_loopback=False)
        b = Daemon(config=config(dns, port, extra % "b"),
                   relay_loopback=False)
        with a, b:
            for d in (a, b):
                wait_for(lambda: "outpost_cluster_redis_up 1" in
                         metrics_text(d), what="linked")
            pipeline(a, ["a%d@warm.test" % i for i in range(20)])
            pipeline(b, ["b%d@warm.test" % i for i in range(20)])
            st = sink.wait_messages(40, timeout=60)
            took = st["last_message_time"] - st["first_message_time"]
            check(took >= 39 * 0.1 * 0.95,
                  "40 messages in %.2fs at 10/s for the cluster" % took)
            for d in (a, b):
                wait_empty(d)
            eq(len(redis.cmd("KEYS", "outpost:rate:*:d")), 1,
               "the day's budget counted in Redis")


if __name__ == "__main__":
    run_tests(globals())
