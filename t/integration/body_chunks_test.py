#!/usr/bin/python3
"""Bodies sent from the queue chunk by chunk (queue_body_next): messages
whose queued size is exactly 1 x, 2 x and 3 x QUEUE_CHUNK_BYTES, one byte
more or less, an empty body, a body of one byte without CRLF (BDAT: the
daemon queues it with a CRLF) and
about 20 MB, with lines that start with a dot, CRLF pairs and dot-lines
placed on every chunk boundary (a boundary just before a '.', between the
CR and the LF, between two dots), are relayed by the real outpostd to two
outpost-sinks, one taking DATA and one CHUNKING (BDAT), and what each
stored is checked byte for byte: the message as submitted after our one
Received: field.  A new message's first attempt sends the body kept from
acceptance when it fits in a chunk; a retry, and a larger body, read the queue (the
metrics say which).  And memory: bodies let go at once to a slow receiver
grow the daemon's anonymous memory by its connections' chunks, not by
the bodies.  Loopback only."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Raw, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port_on, metrics_text,
                          pipeline, run_tests, wait_for)

CHUNK = 64 * 1024  # QUEUE_CHUNK_BYTES (queue/queue.h)
KEEP = 256 * 1024  # SCHED_BODY_KEEP_BYTES (mta/deliver/sched_int.h)
KEEP_TOTAL = 4 << 20  # SCHED_BODY_KEEP_TOTAL
EHLO = "client.test"


def header(name):
    return (b"From: News <news@sender.test>\r\nTo: <a@dest.test>\r\n"
            b"Subject: chunks %s\r\nMessage-ID: <%s@sender.test>\r\n\r\n"
            % (name.encode(), name.encode()))


def repair(b):
    """Every CR followed by LF and every LF preceded by CR: the daemon
    refuses bare ones, and the overwrites below may cut a pair."""
    n = len(b)
    for i in range(n):
        if b[i] == 13 and (i + 1 == n or b[i + 1] != 10):
            b[i] = ord("y")
    for i in range(n):
        if b[i] == 10 and (i == 0 or b[i - 1] != 13):
            b[i] = ord("y")


def message(name, queued, prefix, shape):
    """A message NAME that is QUEUED bytes once the daemon's Received:
    field (PREFIX bytes) is in front, with SHAPE written on each chunk
    boundary of the queued form: 'dot' a line starting with '.' right
    after it, 'crlf' a CRLF cut by it (then a dot-line), 'dots' a line
    '..' cut between its dots."""
    head = header(name)
    total = queued - prefix
    n = total - len(head)
    check(n >= 0, "%s: too small for its header" % name)
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    body = bytearray((line + b"\r\n") * (n // (len(line) + 2) + 1))[:n]
    msg = bytearray(head) + body
    for j in range(1, queued // CHUNK + 1):
        at = j * CHUNK - prefix  # the boundary, in the submitted message
        if at < len(head) + 8 or at + 8 > len(msg):
            continue
        if shape == "dot":
            msg[at - 2:at + 5] = b"\r\n.x\r\n."
        elif shape == "crlf":
            msg[at - 3:at + 5] = b"z\r\n.\r\n.."
        else:
            msg[at - 3:at + 5] = b"\r\n..\r\n.a"
    if len(msg) >= 2 and len(body) >= 2:
        msg[-2:] = b"\r\n"
    repair(msg)
    eq(len(msg), total, name + ": size")
    return bytes(msg)


def submit(port, msg, bdat=False, rcpts=("a@dest.test", "b@bdat.test")):
    r = Raw(port, timeout=300)
    r.reply()
    r.cmd("EHLO " + EHLO)
    eq(r.cmd("MAIL FROM:<news@sender.test>")[0], 250, "MAIL")
    for rcpt in rcpts:
        eq(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250, "RCPT")
    if bdat:
        r.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
    else:
        eq(r.cmd("DATA")[0], 354, "DATA")
        stuffed = msg.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        tail = b"" if stuffed.endswith(b"\r\n") else b"\r\n"
        r.send(stuffed + tail + b".\r\n")
    code, text = r.reply()
    eq(code, 250, "queued: " + text)
    r.close()


def by_subject(sink):
    """{subject name: message as stored (without the sink's line)}."""
    out = {}
    for raw in sink.messages():
        m = raw.split(b"\r\n", 1)[1]
        i = m.find(b"Subject: chunks ")
        check(i >= 0, "a message without our subject")
        name = m[i + 16:m.index(b"\r\n", i)].decode()
        out[name] = m
    return out


def received_len(got, name):
    """The length of the one Received: field the daemon put first."""
    check(got.startswith(b"Received: from " + EHLO.encode()),
          name + ": starts with our Received: field")
    end = got.index(b"\r\n", got.index(b"\r\n\t", got.index(b" id "))
                    + 3) + 2
    check(got[end:end + 6] == b"From: ", name + ": one Received: field")
    return end


def test_bodies_on_chunk_boundaries_byte_for_byte():
    data_host, bdat_host = "127.0.0.61", "127.0.0.62"
    port = free_port_on([data_host, bdat_host])
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10),
                  ("bdat.test", "mx.bdat.test", 10)],
              a=[("mx.dest.test", data_host), ("mx.bdat.test", bdat_host)])
    conf = delivery_config(dns, port) + "limits { max_message_size = 30M }\n"
    with dns, Sink([data_host], port) as sdata, \
            Sink([bdat_host], port, ["--chunking"]) as sbdat, \
            Daemon(config=conf) as d:
        # The size of our Received: field (fixed for one EHLO name and
        # client): a probe tells it, so that boundaries land as planned.
        probe = header("probe") + b"probe\r\n"
        submit(d.port, probe)
        sdata.wait_messages(1)
        sbdat.wait_messages(1)
        prefix = received_len(by_subject(sdata)["probe"], "probe")
        msgs = {"probe": (probe, False)}
        msgs["empty"] = (header("empty"), False)
        msgs["one"] = (header("one") + b"x", True)
        k = 0
        for mult in (1, 2, 3):
            for delta in (-1, 0, 1):
                for shape in ("dot", "crlf", "dots"):
                    name = "k%d%+d-%s" % (mult, delta, shape)
                    msgs[name] = (message(name, mult * CHUNK + delta,
                                          prefix, shape), False)
                    k += 1
        msgs["big"] = (message("big", 320 * CHUNK + 7, prefix, "crlf"),
                       False)
        for name, (msg, bdat) in msgs.items():
            if name != "probe":
                submit(d.port, msg, bdat)
        for sink in (sdata, sbdat):
            sink.wait_messages(len(msgs), timeout=300)
        for sink, how in ((sdata, "DATA"), (sbdat, "BDAT")):
            got = by_subject(sink)
            eq(sorted(got), sorted(msgs), how + ": messages stored")
            for name, (msg, _) in msgs.items():
                g = got[name]
                n = received_len(g, name)
                eq(n, prefix, "%s %s: Received: field size" % (how, name))
                want = msg
                if not msg.endswith(b"\r\n"):
                    want = msg + b"\r\n"  # queued with its last CRLF
                if g[n:] != want:
                    i = next((i for i in range(min(len(g) - n, len(want)))
                              if g[n + i] != want[i]), None)
                    raise AssertionError(
                        "%s %s: %d bytes stored, %d sent; first "
                        "difference at %r (queued offset %r)"
                        % (how, name, len(g) - n, len(want), i,
                           None if i is None else i + n))
        big = len(msgs["big"][0]) + prefix
        check(big > 20 * 1000 * 1000, "the big one is about 20 MB")


def bodies(d):
    """outpost_delivery_bodies_total by source: (memory, queue)."""
    got = {}
    for line in metrics_text(d).splitlines():
        if line.startswith("outpost_delivery_bodies_total{from="):
            got[line.split('"')[1]] = int(line.split()[-1])
    return got.get("memory"), got.get("queue")


def test_first_attempt_from_memory_retry_from_queue():
    """A new message up to a chunk (256 KiB) goes out, on its first
    attempt, from the body kept since acceptance (no queue read); its
    retry and a larger message read the queue; all three arrive byte for
    byte."""
    host = "127.0.0.63"
    port = free_port_on([host])
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", host)])
    with dns, Sink([host], port) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        small = header("small") + b"kept in memory\r\n"
        submit(d.port, small, rcpts=("a@dest.test",))
        sink.wait_messages(1)
        wait_for(lambda: bodies(d) == (1, 0), 10, "one body from memory")
        again = header("again") + b"deferred once\r\n"
        submit(d.port, again, rcpts=("deferonce-r@dest.test",))
        sink.wait_messages(2, timeout=60)
        wait_for(lambda: bodies(d) == (2, 1), 10,
                 "the retry's body from the queue")
        large = message("large", KEEP + 4096, 0, "dot")
        submit(d.port, large, rcpts=("a@dest.test",))
        sink.wait_messages(3)
        wait_for(lambda: bodies(d) == (2, 2), 10,
                 "a body over the kept size from the queue")
        got = by_subject(sink)
        for name, msg in (("small", small), ("again", again),
                          ("large", large)):
            g = got[name]
            eq(g[received_len(g, name):], msg, name + ": byte for byte")


def test_kept_bodies_count_their_memory():
    """A body kept for its first attempt counts as the memory it holds, not
    its octets.  1,200 small messages without SIZE= (an 8 KiB buffer each)
    are queued while the destination's one connection waits on a slow
    recipient: at most 4 MiB / 8 KiB = 512 can be kept, the rest go out
    from the queue.  (Counted by octets, all 1,200 would be kept.)"""
    host = "127.0.0.64"
    port = free_port_on([host])
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", host)])
    conf = delivery_config(dns, port, """
destination "*" { max_connections = 1 }
""")
    n = 1200
    with dns, Sink([host], port, ["--slow-ms", "4000"]) as sink, \
            Daemon(config=conf) as d:
        submit(d.port, header("slow") + b"holds the connection\r\n",
               rcpts=("slow-x@dest.test",))
        # The slow transaction holds the one connection from here on.
        wait_for(lambda: sink.stats().get("connections_now") == 1, 10,
                 "the slow recipient's connection")
        pipeline(d, ["r%d@dest.test" % i for i in range(n)])
        sink.wait_messages(n + 1, timeout=120)
        wait_for(lambda: sum(x or 0 for x in bodies(d)) == n + 1, 10,
                 "every body counted")
        memory, queue = bodies(d)
        kept = KEEP_TOTAL // (8 << 10)
        check(memory <= kept + 1 and queue >= n - kept,
              "bodies from memory %d, from the queue %d" % (memory, queue))


def rss_anon_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon for %d" % pid)


def test_memory_per_message_in_flight_bounded_by_chunks():
    """24 messages of 3 MB parked by a suspended destination are let go at
    once to a slow receiver with 2 connections: the daemon's anonymous
    memory grows by about those connections' chunks, not by the bodies
    (72 MB when each round read its body whole)."""
    if os.environ.get("OUTPOST_ASAN"):
        print("# skip: the ASan variant (its heap is not the daemon's)")
        return
    host = "127.0.0.63"
    port = free_port_on([host])
    dns = Dns(mx=[("rss.test", "mx.rss.test", 10)], a=[("mx.rss.test", host)])
    conf = delivery_config(dns, port, """
destination "*" { max_connections = 2 }
""")
    n, size = 24, 3 * 1000 * 1000
    with dns, Sink([host], port, ["--reply-delay-ms", "50"]) as sink, \
            Daemon(config=conf) as d:
        d.cli("suspend", "rss.test", "--for", "1h")
        for i in range(n):
            name = "rss%d" % i
            submit(d.port, message(name, size, 0, "dot"),
                   rcpts=["x@rss.test"])
        wait_for(lambda: len(d.queue_ids()) == n, what="%d queued" % n)
        time.sleep(1)
        base = min(rss_anon_kib(d.proc.pid) for _ in range(5))
        d.cli("resume", "rss.test")
        peak = base
        deadline = time.time() + 120
        while sink.stats().get("messages", 0) < n:
            peak = max(peak, rss_anon_kib(d.proc.pid))
            check(time.time() < deadline, "delivered in time: %r"
                  % sink.stats())
            time.sleep(0.01)
        grew = (peak - base) / 1024.0
        print("# RssAnon %.1f MiB before, grew %.1f MiB while %d x %d MB "
              "went out" % (base / 1024.0, grew, n, size // 1000000))
        check(grew < 24, "anonymous memory grew %.1f MiB delivering %d "
              "bodies of %d MB over 2 connections" % (grew, n,
                                                      size // 1000000))


if __name__ == "__main__":
    run_tests(globals())
