#!/usr/bin/python3
"""The queue: kill -9 during a load (every 250-acknowledged message is in
the queue after restart, none half-visible), encryption at rest (grep of
the LMDB files for a body and a recipient finds nothing), group commit (far
fewer commits than messages), and restart."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, LOAD, SLOW, check, eq,  # noqa: E402
                          run_tests)


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


def test_group_commit_and_restart():
    with Daemon(args=["-v"]) as d:
        rc, rep = d.load("--sessions", "50", "--count", "3000", "--size",
                         "4096", "--pipelining")
        eq(rc, 0, "load exit")
        eq(rep["accepted"], 3000, "accepted")
        d.stop()
        log = d.log()
        # The shutdown line reports commits vs. messages.
        check("messages accepted" in log, "shutdown summary")
        d.start()
        eq(len(d.queue_ids()), 3000, "all 3000 still queued after restart")


run_tests(globals())
