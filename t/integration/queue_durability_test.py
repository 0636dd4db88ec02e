#!/usr/bin/python3
"""The queue: kill -9 during a load (every 250-acknowledged message is in
the queue after restart, none half-visible), encryption at rest (grep of
the LMDB files for a body and a recipient finds nothing), group commit (far
fewer commits than messages), and restart."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, LOAD, SLOW, Sink,  # noqa: E402
                          TestFailure, check, eq, free_port, run_tests)


def test_encryption_grep():
    marker = "PLAINTEXT-BODY-MARKER-7f3a9c"
    rcpt = "secret.recipient.4242@example.org"
    sender = "secret.sender.77@example.com"
    with Daemon() as d:
        s = d.smtp()
        s.sendmail(sender, [rcpt],
                   ("From: <" + sender + ">\r\nSubject: grep me\r\nX-Helo-Check: yes\r\n\r\n" +
                    (marker + "\r\n") * 50).encode())
        big = (marker + " big\r\n") * 40000  # over one 256 KiB chunk
        s.sendmail(sender, [rcpt], ("From: <" + sender + ">\r\nSubject: big\r\n\r\n" + big).encode())
        s.quit()
        eq(len(d.queue_ids()), 2, "queued")
        files = d.files_bytes()
        queue_files = [p for p in files if "/queue/" in p]
        check(queue_files, "queue files found")
        for path in queue_files:
            data = files[path]
            for needle in (marker, rcpt, sender, "secret.recipient",
                           "secret.sender", "client.test", "grep me"):
                check(needle.encode() not in data,
                      "%r found in clear in %s" % (needle, path))
        # The CLI decrypts it with the key: the body is really there.
        for qid in d.queue_ids():
            show = json.loads(d.cli("queue", "show", qid, "--json").stdout)
            check(show["size"] > 1000, "size recorded")
        # And no file the daemon wrote (logs included) holds an address.
        for path, data in files.items():
            check(rcpt.encode() not in data and sender.encode() not in data,
                  "address in clear in %s" % path)


def test_kill9_during_load():
    """Every message whose 250 the client read survives kill -9."""
    with Daemon() as d:
        ids_file = os.path.join(d.tmp, "acked.ids")
        load = subprocess.Popen(
            [LOAD, "--host", "127.0.0.1", "--port", str(d.port),
             "--sessions", "20", "--count", "200000", "--size", "2048",
             "--pipelining", "--ids", ids_file, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Let it run, then kill the daemon hard mid-flight.
        deadline = time.time() + 30 * SLOW
        while time.time() < deadline:
            time.sleep(0.2)
            if os.path.exists(ids_file) and os.path.getsize(ids_file) > \
                    17 * 2000:
                break
        d.kill9()
        load.wait(timeout=120)
        with open(ids_file) as f:
            acked = [l.strip() for l in f if l.strip()]
        check(len(acked) >= 2000, "only %d acknowledged" % len(acked))
        d.start()
        queued = set(d.queue_ids())
        missing = [i for i in acked if i not in queued]
        eq(missing[:5], [], "acknowledged messages lost (%d of %d)"
           % (len(missing), len(acked)))
        # Nothing half-visible: every queued message reads back whole.
        for qid in list(queued)[:50]:
            show = json.loads(d.cli("queue", "show", qid, "--json").stdout)
            eq(len(show["recipients"]), 1, "recipients of " + qid)
        # The restarted daemon accepts mail again, with fresh ids.
        s = d.smtp()
        code, msg = s.sendmail("a@example.com", ["b@example.org"],
                               b"From: <a@example.com>\r\nSubject: after\r\n\r\nx\r\n") or (250, b"")
        s.quit()
        eq(len(set(d.queue_ids())), len(queued) + 1, "one more queued")


def scrape(d):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10 * SLOW) as r:
        eq(r.status, 200, "metrics status")
        return r.read().decode()


def metric(text, name):
    """The value of the series NAME (exactly: labels included)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise TestFailure("no series %s in /metrics" % name)


def test_group_commit_and_restart():
    """3000 messages over 50 pipelining sessions: the queue writer groups
    them into far fewer LMDB transactions than messages (counted both on
    /metrics and in the stop line), and every one is there after restart."""
    n = 3000
    with Daemon(args=["-v"]) as d:
        rc, rep = d.load("--sessions", "50", "--count", str(n), "--size",
                         "4096", "--pipelining")
        eq(rc, 0, "load exit")
        eq(rep["accepted"], n, "accepted")
        m = scrape(d)
        commits = metric(m, "outpost_queue_commits_total")
        ops = metric(m, "outpost_queue_ops_total")
        batches = metric(m, "outpost_queue_commit_batch_ops_count")
        single = metric(m, 'outpost_queue_commit_batch_ops_bucket{le="1"}')
        check(ops >= n, "ops_total %d < %d messages" % (ops, n))
        # Group commit: at most one transaction per 4 messages on average,
        # and most transactions carry more than one operation.
        check(commits * 4 <= n, "%d commits for %d messages: no group "
              "commit" % (commits, n))
        check(single * 2 < batches, "%d of %d commits held one op"
              % (single, batches))
        d.stop()
        # The stop line reports the same figures.
        line = re.search(r"outpostd stopped: (\d+) messages accepted .*"
                         r"queue: (\d+) ops in (\d+) commits "
                         r"\(largest (\d+)\)", d.log())
        check(line, "stop line with the queue figures")
        accepted, ops2, commits2, largest = map(int, line.groups())
        eq(accepted, n, "messages accepted in the stop line")
        check(ops2 >= ops and commits2 >= commits,
              "stop line below /metrics: %d ops, %d commits" % (ops2,
                                                                commits2))
        check(commits2 * 4 <= accepted, "stop line: %d commits for %d "
              "messages" % (commits2, accepted))
        check(largest > 1, "largest batch %d" % largest)
        d.start()
        eq(len(d.queue_ids()), n, "all still queued after restart")


def test_deliveries_start_while_a_large_queue_loads():
    """60,000 queued messages, all due at a restart: the first delivery
    comes while the schedule index still loads (in steps), not after it.
    The steps used to activate one another at once, which libevent runs
    without polling in between: no DNS answer, connection or timer until
    the whole queue was loaded (11.8 s at 10M messages)."""
    n = 60000
    port = free_port()
    conf = ('route "sink.test" { host = "127.0.0.1:%d" }\n'
            'delivery {\n  retry_intervals = { "2s" }\n'
            '  retry_jitter = 0\n}\n' % port)
    d = Daemon(config=conf, args=["-v"]).start()
    try:
        # The sink's default rules defer "defer..." recipients (4xx): what
        # is tried before the stop is due again 2 s later.
        with Sink(port=port):
            rc, rep = d.load("--sessions", 50, "--count", n, "--size",
                             512, "--pipelining", "--to",
                             "defer%u@sink.test")
            eq(rep["accepted"], n, "accepted")
            d.stop()
        time.sleep(2.5)
        with Sink(port=port, args=["--no-default-rules"]) as sink:
            before = len(d.log())
            d.start()
            sink.wait_messages(1)
            wait_for_line = time.time() + 60 * SLOW
            while "queued message(s) loaded" not in d.log()[before:]:
                check(time.time() < wait_for_line, "the load ends")
                time.sleep(0.05)
            log = d.log()[before:]
            loaded = log.index("queued message(s) loaded")
            check(": delivered" in log[:loaded],
                  "a delivery before the load ended:\n%s"
                  % "\n".join(l for l in log[:loaded].splitlines()
                              if "scheduler" in l or "delivered" in l))
    finally:
        d.stop()


def rss_file_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    return 0


def rss_file_growth(pid, action):
    """KiB by which PID's RssFile rose at most (sampled every ms) while
    ACTION ran, from where it stood half a second after the last work (the
    writer's own trim)."""
    import threading
    time.sleep(0.5)
    base = rss_file_kib(pid)
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_file_kib(pid))
            time.sleep(0.001)
    t = threading.Thread(target=sample)
    t.start()
    try:
        action()
    finally:
        done.set()
        t.join()
    return peak[0] - base


def test_queue_walk_leaves_the_map():
    """`queue summary` and a restore point walk every record in the daemon; each page it
    reads maps into the daemon's page tables (on 6.18 a whole page-cache
    folio, up to 2 MiB, per fault).  The walk unmaps what it read as it
    goes: the daemon's RSS must not take in the queue file.  Before, the
    walk of ~100 MB of queue mapped most of it until the writer's next
    trim."""
    n = 50000
    port = free_port()  # nothing listens: every attempt is refused
    conf = ('route "sink.test" { host = "127.0.0.1:%d" }\n'
            'delivery {\n  retry_intervals = { "1h" }\n}\n' % port)
    with Daemon(config=conf) as d:
        rc, rep = d.load("--sessions", 50, "--count", n, "--size", 512,
                         "--pipelining", "--to", "x%u@sink.test")
        eq(rep["accepted"], n, "accepted")
        data = os.path.join(d.data, "queue", "data.mdb")
        size_kib = os.path.getsize(data) // 1024
        check(size_kib > 48 * 1024, "a queue of %d KiB" % size_kib)
        pid = d.proc.pid

        def summaries():
            for _ in range(3):
                out = d.cli("queue", "summary", "--json").stdout
                check("sink.test" in out, "the summary: %s" % out[:300])
        grew = rss_file_growth(pid, summaries)
        sys.stderr.write("# queue %d KiB; RssFile +%d KiB at most during "
                         "the walks\n" % (size_kib, grew))
        check(grew < 24 * 1024,
              "RssFile grew %d KiB during the walks (queue %d KiB)"
              % (grew, size_kib))

        # A restore point copies the whole queue through the map, then
        # walks the copy through its own: both unmap as they go.  Before,
        # +94 MB here (the queue, then the point, mapped whole).
        def point():
            out = d.cli("restore", "now").stdout
            check("50000 messages" in out, "the point: %s" % out[:300])
        grew = rss_file_growth(pid, point)
        sys.stderr.write("# RssFile +%d KiB at most during a restore "
                         "point\n" % grew)
        check(grew < 40 * 1024,
              "RssFile grew %d KiB during a restore point (queue %d KiB)"
              % (grew, size_kib))

run_tests(globals())
