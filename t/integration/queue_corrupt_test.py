#!/usr/bin/python3
"""A corrupt queue record, daemon side, through the real outpostd: one
message's sealed envelope and another's sealed body are damaged on disk
(mdb_dump / mdb_load while the daemon is stopped).  After a restart the
daemon holds each (no retry loop: a few retry intervals and a `queue retry
--all` later it has still been read once), logs it once without any address,
counts it in the metrics, delivers the sound message, and `outpost queue
delete` removes the damaged ones from disk (and, under ASan, leaks nothing).
Loopback only."""

import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port_on, run_tests,
                          wait_for)

HOST = "127.0.0.83"
RCPTS = ["alice.c0rrupt@ok.test", "bob.c0rrupt@ok.test",
         "carol.c0rrupt@ok.test"]


def submit(d, rcpt, n):
    with d.smtp() as s:
        s.sendmail("news@sender.test", [rcpt],
                   b"From: <news@sender.test>\r\nSubject: m%d\r\n\r\n"
                   b"body %d\r\n" % (n, n))


def queue_dir(d):
    return os.path.join(d.data, "queue")


def dump(d, db):
    """(header lines, [(key hex, value hex)]) of database DB (mdb_dump)."""
    out = subprocess.run(["mdb_dump", "-s", db, queue_dir(d)],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    end = lines.index("HEADER=END")
    header = [ln for ln in lines[:end + 1]
              if not ln.startswith("db_pagesize=")]
    body = [ln.strip() for ln in lines[end + 1:] if ln.startswith(" ")]
    return header, list(zip(body[0::2], body[1::2]))


def corrupt(d, db, key_prefix):
    """Flip one byte in the middle of the first value of DB whose key
    starts with KEY_PREFIX (hex); written back with mdb_load."""
    header, pairs = dump(d, db)
    for k, v in pairs:
        if k.startswith(key_prefix):
            b = bytearray.fromhex(v)
            b[len(b) // 2] ^= 0x5a
            text = "\n".join(header) + "\n %s\n %s\nDATA=END\n" % (
                k, b.hex())
            subprocess.run(["mdb_load", "-s", db, queue_dir(d)],
                           input=text, text=True, check=True)
            return
    raise AssertionError("no %s record %s" % (db, key_prefix))


def keys(d, db):
    return [k for k, _ in dump(d, db)[1]]


def metric(d, name):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def test_corrupt_records_held_logged_counted_deleted():
    port = free_port_on([HOST])
    dns = Dns(mx=[("ok.test", "mx.ok.test", 10)], a=[("mx.ok.test", HOST)])
    cfg = delivery_config(dns, port, '''
destination "*" { backoff_pause = 1s backoff_max = 2s }''')
    with dns:
        d = Daemon(config=cfg)
        d.start()
        try:
            # Nobody listens yet: all three are deferred and stay queued.
            for i, r in enumerate(RCPTS):
                submit(d, r, i)
            wait_for(lambda: len(d.queue_ids()) == 3, what="3 queued")
            ids = sorted(d.queue_ids())
            d.stop()
            bad_env, bad_body, good = ids
            corrupt(d, "env", bad_env)
            corrupt(d, "body", bad_body)
            start = len(d.log())
            with Sink([HOST], port) as sink:
                d.start()
                sink.wait_messages(1, timeout=30)
                eq(sink.messages()[0].count(b"Subject: m2"), 1,
                   "the sound message delivered")
                wait_for(lambda: metric(
                    d, 'outpost_queue_messages{state="corrupt"}') == 2,
                    what="corrupt gauge at 2")
                eq(metric(d, "outpost_queue_corrupt_total"), 2,
                   "corrupt counter")
                # A few retry intervals (1 s each), then an operator's
                # retry of everything: a held record is not read again.
                time.sleep(4 * SLOW)
                d.cli("queue", "retry", "--all")
                # Selecting by domain reads envelopes: the damaged ones
                # are passed over, not an error.
                d.cli("queue", "retry", "--domain", "ok.test")
                time.sleep(2 * SLOW)
                log = d.log()[start:]
                for qid in (bad_env, bad_body):
                    lines = [ln for ln in log.splitlines() if qid in ln]
                    eq(len(lines), 1, "log lines about %s: %r" % (qid,
                                                                  lines))
                    check("corrupt" in lines[0], "says corrupt: %r"
                          % lines[0])
                for r in RCPTS:
                    check(r not in d.log(), "no address in clear: " + r)
                eq(sink.stats().get("messages"), 1, "one message delivered")
                # Released, it is read again (a key may have come back):
                # still damaged, held again, said again, counted again.
                d.cli("queue", "release", bad_body)
                wait_for(lambda: metric(d, "outpost_queue_corrupt_total")
                         == 3, what="corrupt counter at 3")
                eq(metric(d, 'outpost_queue_messages{state="corrupt"}'), 2,
                   "still 2 held as corrupt")
                eq(metric(d, 'outpost_queue_messages{state="held"}'), 0,
                   "none held otherwise")
                # Delete both through the daemon.
                for qid in (bad_env, bad_body):
                    d.cli("queue", "delete", qid)
                wait_for(lambda: metric(
                    d, 'outpost_queue_messages{state="corrupt"}') == 0,
                    what="corrupt gauge back to 0")
                d.stop()  # under ASan: no leak report
            eq(keys(d, "env"), [], "no envelope left")
            eq(keys(d, "body"), [], "no body chunk left")
            eq(keys(d, "sched"), [], "no schedule entry left")
        finally:
            if d.proc is not None:
                d.stop()



def add_entry(d, db, key_hex, value_hex):
    header = [ln for ln in dump(d, db)[0]]
    text = "\n".join(header) + "\n %s\n %s\nDATA=END\n" % (key_hex,
                                                            value_hex)
    subprocess.run(["mdb_load", "-s", db, queue_dir(d)], input=text,
                   text=True, check=True)


def test_second_schedule_entry_merged():
    """A message with two entries in the schedule index (what moving a due
    time in memory only, as a failed read did, left behind): after a
    restart it is one message, delivered once, and no entry is left (on
    2014085 the second stub replaced the first in the id map: the message
    was scheduled twice, an entry stayed on disk, and ASan reported the
    32-byte stub from sched_walk_cb as leaked)."""
    host = "127.0.0.84"
    port = free_port_on([host])
    dns = Dns(mx=[("dup.test", "mx.dup.test", 10)], a=[("mx.dup.test", host)])
    cfg = delivery_config(dns, port, '''
destination "*" { backoff_pause = 1s backoff_max = 2s }''')
    with dns:
        d = Daemon(config=cfg)
        d.start()
        try:
            submit(d, "dave.c0rrupt@dup.test", 7)
            wait_for(lambda: len(d.queue_ids()) == 1, what="1 queued")
            d.stop()
            (key, _), = dump(d, "sched")[1]
            due, qid = int(key[:16], 16), key[16:]
            add_entry(d, "sched", "%016x%s" % (due + 3600 * 1000, qid), "")
            eq(len(keys(d, "sched")), 2, "two schedule entries")
            with Sink([host], port) as sink:
                d.start()
                sink.wait_messages(1, timeout=30)
                wait_for(lambda: not d.queue_ids(), what="queue empty")
                time.sleep(2 * SLOW)
                eq(sink.stats().get("messages"), 1, "delivered once")
                d.stop()  # under ASan: no leak report
            eq(keys(d, "sched"), [], "no schedule entry left")
            eq(keys(d, "env"), [], "no envelope left")
        finally:
            if d.proc is not None:
                d.stop()


run_tests(globals())
