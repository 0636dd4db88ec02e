#!/usr/bin/python3
"""Operators' state survives a restart: an operator's
suspension (its reason and end time), a destination's back-off and the
AUTH limiter's blocks are kept in the queue's LMDB environment ("state"),
sealed, and come back after kill -9 on the same data directory; `resume`
and `auth unblock` are kept too.  Nothing of them is in the queue files in
clear.  DNS is a dnsmasq of our own, the receiver an outpost-sink, the
clients Python sockets: loopback only."""

import json
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, ControlDaemon, Dns, Sink,  # noqa: E402
                          check, control_wait, delivery_config, eq,
                          free_port_on, pipeline, run_tests, wait_empty,
                          wait_for)
import smtp_auth_limit_test as al  # noqa: E402

REASON = "zebra quota talk 4.7.28 kiwi"


def out(d, *args):
    return d.cli(*args).stdout


def jsonl(text):
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def suspensions(d):
    return {x["destination"]: x for x in
            jsonl(out(d, "suspensions", "--json"))}


def queue_ops(d):
    """outpost_queue_ops_total: ops the queue's writer committed."""
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10 * SLOW) as r:
        text = r.read().decode()
    return int(float(re.search(r"^outpost_queue_ops_total (\S+)$", text,
                               re.M).group(1)))


def restart(d):
    """kill -9, then start again on the same data directory."""
    d.kill9()
    d.start()
    control_wait(d)


def queue_files(d):
    """The bytes of every file of the queue's LMDB environment."""
    out = {}
    for path, data in d.files_bytes().items():
        if "/queue/" in path:
            out[path] = data
    check(out, "queue files found")
    return out


def no_clear(d, needles):
    for path, data in queue_files(d).items():
        for n in needles:
            check(n.encode() not in data,
                  "%r in clear in %s" % (n, path))


def test_suspension_survives_kill9():
    hosts = ["127.0.0.91"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("keep.test", "mx.keep.test", 10)],
              a=[("mx.keep.test", "127.0.0.91")])
    d = ControlDaemon(delivery_config(dns, port), prefix="outpost-st-")
    with dns, d, Sink(hosts, port, maildir=False) as sink:
        ops = queue_ops(d)
        out(d, "suspend", "keep.test", "--for", "2h", "--reason", REASON)
        before = suspensions(d)["keep.test"]
        # One write for the suspension, none per message it holds.
        wait_for(lambda: queue_ops(d) == ops + 1, 5, "one queue op")
        pipeline(d, ["k%d@keep.test" % i for i in range(3)])
        wait_for(lambda: queue_ops(d) == ops + 4, 5, "3 inserts")
        time.sleep(1)
        eq(queue_ops(d), ops + 4, "queue ops: the suspension and 3 inserts")
        restart(d)
        after = wait_for(lambda: suspensions(d).get("keep.test"), 10,
                         "the suspension back after kill -9")
        eq(after["reason"], REASON, "the same reason")
        check(abs(after["until_ms"] - before["until_ms"]) <= 1000,
              "the same end: %d, was %d" % (after["until_ms"],
                                            before["until_ms"]))
        row = [json.loads(x) for x in
               out(d, "queue", "summary", "--json").splitlines()
               if x.strip()]
        row = [r for r in row if r.get("domain") == "keep.test"]
        eq(row[0]["suspended"]["reason"], REASON, "summary: suspended")
        time.sleep(3 * SLOW)
        eq(sink.stats().get("connections_total", 0), 0,
           "held after the restart: no connection")
        eq(len(d.queue_ids()), 3, "still queued")
        # Nothing of it in the queue files in clear (the domain neither:
        # the key is a keyed hash, the record sealed).
        no_clear(d, [REASON, "zebra", "keep.test"])
        # resume after a restart works, and is kept across the next one.
        eq(out(d, "resume", "keep.test").strip(), "keep.test resumed",
           "resume")
        sink.wait_messages(3, timeout=30)
        wait_empty(d)
        restart(d)
        time.sleep(1)
        check("keep.test" not in suspensions(d),
              "resumed stays resumed: %s" % suspensions(d))


def test_backoff_survives_kill9():
    hosts = ["127.0.0.92"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("wait.test", "mx.wait.test", 10)],
              a=[("mx.wait.test", "127.0.0.92")])
    pause = 14
    cfg = delivery_config(dns, port, '''
destination "*" { backoff_pause = %ds backoff_max = %ds }
''' % (pause, pause))
    d = ControlDaemon(cfg, prefix="outpost-st-")
    with dns, d:
        # Nobody listens: the first attempt fails, the site backs off.
        pipeline(d, ["w%d@wait.test" % i for i in range(20)])
        before = wait_for(lambda: suspensions(d).get("wait.test"), 20,
                          "the back-off")
        check("back-off" in before["reason"], "backed off: %s" % before)
        until = before["until_ms"] / 1000.0
        check(until - time.time() > pause - 5, "a %ds pause: %.1f s left"
              % (pause, until - time.time()))
        with Sink(hosts, port, maildir=False) as sink:
            # The receiver answers now: a daemon that forgot its back-off
            # would deliver at once.
            restart(d)
            after = wait_for(lambda: suspensions(d).get("wait.test"), 10,
                             "the back-off back after kill -9")
            check(abs(after["until_ms"] - before["until_ms"]) <= 1000,
                  "the same end: %d, was %d" % (after["until_ms"],
                                                before["until_ms"]))
            while time.time() < until - 1.5:
                eq(sink.stats().get("connections_total", 0), 0,
                   "no attempt before the old next attempt (%.1f s left)"
                   % (until - time.time()))
                time.sleep(0.5)
            sink.wait_messages(20, timeout=30)
            check(time.time() >= until - 1.5, "delivered after the pause")
            wait_empty(d)


def stored_auth_blocks(d):
    """The AUTH blocks committed to the queue's "state" database (keys
    'a' + a keyed hash: queue/state.c), read as another process would."""
    import lmdb  # python3-lmdb
    env = lmdb.open(os.path.join(d.data, "queue"), readonly=True,
                    max_dbs=16, lock=True, subdir=True)
    try:
        with env.begin() as txn:
            try:
                db = env.open_db(b"state", txn=txn, create=False)
            except lmdb.NotFoundError:
                return 0
            return sum(1 for k, _ in txn.cursor(db) if bytes(k[:1]) == b"a")
    finally:
        env.close()


def test_auth_block_survives_kill9():
    cfg = al.limits(max_failures=2, block='"1h"', delay_base='"0"',
                    delay_max='"0"')
    with al.LimitDaemon(cfg) as d:
        s = al.session(d)
        eq([s.auth("ops@example.com", "x")[0] for _ in range(2)],
           [535, 421], "ops@example.com blocked")
        s.close()
        s = al.session(d, "127.0.0.4")
        eq([s.auth("ghost@else.test", "x")[0] for _ in range(2)],
           [535, 421], "an unknown name blocked")
        s.close()
        before = jsonl(al.cli(d, "auth", "blocks", "--json").stdout)
        eq(len(before), 2, "two blocks: %r" % before)
        # A block is written by the queue's writer in the commit after it
        # starts, not before the 421: on a loaded machine the CLI can be
        # faster than that commit.  What must survive is what was
        # committed, so wait for both records to be.
        wait_for(lambda: stored_auth_blocks(d) == 2, 10 * SLOW,
                 "both blocks committed")
        d.kill9()
        d.start()
        after = jsonl(al.cli(d, "auth", "blocks", "--json").stdout)
        key = (lambda b: (b["network"], b.get("user") or ""))
        eq(sorted(map(key, after)), sorted(map(key, before)),
           "the same blocks after kill -9")
        for a in after:
            b = [x for x in before if key(x) == key(a)][0]
            eq(a["until_ms"], b["until_ms"], "the same end")
        code, text = al.attempt(d, "ops@example.com", al.PASSWORD)
        eq(code, 454, "still blocked after kill -9: " + text)
        code, text = al.attempt(d, "ghost@else.test", "x", "127.0.0.4")
        eq(code, 454, "the unknown name too: " + text)
        eq(al.attempt(d, "campaign", al.PASSWORD)[0], 235,
           "others get in")
        no_clear(d, ["ops@example.com", "ghost@else.test", "ghost",
                     "127.0.0.4"])
        # A lift is kept as well.
        r = al.cli(d, "auth", "unblock", "ops@example.com")
        check("1 block lifted" in r.stdout, r.stdout)
        d.kill9()
        d.start()
        eq(al.attempt(d, "ops@example.com", al.PASSWORD)[0], 235,
           "unblocked stays unblocked")
        eq(al.attempt(d, "ghost@else.test", "x", "127.0.0.4")[0], 454,
           "the other block still holds")


if __name__ == "__main__":
    run_tests(globals())
