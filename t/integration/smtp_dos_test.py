#!/usr/bin/python3
"""Anti-DoS through the real outpostd: a slow-loris client does not stop
others being served and is cut off at its deadline; 500 idle connections do
not delay a new client's greeting; session limits per client and in total;
a client that never reads its replies cannot grow memory without bound."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Raw, SLOW, check, eq,  # noqa: E402
                          run_tests)


def greeting_time(port, source="127.0.0.1"):
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                 source_address=(source, 0))
    data = s.recv(100)
    dt = time.time() - t0
    s.close()
    check(data.startswith(b"220 "), "greeting %r" % data)
    return dt


def test_slowloris_does_not_block_others():
    cfg = 'limits { command_timeout = "3s" data_timeout = "3s" }\n'
    with Daemon(config=cfg) as d:
        loris = Raw(d.port)
        loris.reply()
        stop = threading.Event()

        def drip():
            # One byte every 200 ms of a command that never ends.
            try:
                for ch in "EHLO " + "x" * 100:
                    if stop.is_set():
                        return
                    loris.sock.sendall(ch.encode())
                    time.sleep(0.2)
            except OSError:
                pass

        th = threading.Thread(target=drip)
        th.start()
        try:
            for i in range(10):
                s = d.smtp()
                s.sendmail("news@example.com", ["jane@example.org"],
                           b"From: <news@example.com>\r\nSubject: %d\r\n\r\nbody\r\n" % i)
                s.quit()
            eq(len(d.queue_ids()), 10, "others served meanwhile")
            # The drip never completes a line: the per-command deadline
            # (not reset by single bytes) cuts it off.
            code, text = loris.reply()
            eq(code, 421, "slow-loris cut off with 421: %r" % text)
            check(loris.closed(), "slow-loris connection closed")
        finally:
            stop.set()
            th.join()


def test_500_idle_connections():
    cfg = 'limits { max_sessions = 2000 max_sessions_per_client = 1000 }\n'
    with Daemon(config=cfg) as d:
        idle = []
        try:
            for i in range(500):
                s = socket.create_connection(("127.0.0.1", d.port),
                                             timeout=10)
                idle.append(s)
            for s in idle[::50]:
                check(s.recv(100).startswith(b"220"), "idle greeted")
            dt = greeting_time(d.port)
            check(dt < 1.0, "greeting took %.3fs with 500 idle" % dt)
            s = d.smtp()
            s.sendmail("news@example.com", ["jane@example.org"],
                       b"From: <news@example.com>\r\nSubject: x\r\n\r\nx\r\n")
            s.quit()
        finally:
            for s in idle:
                s.close()


def test_session_limits():
    cfg = 'limits { max_sessions = 30 max_sessions_per_client = 5 }\n'
    with Daemon(config=cfg) as d:
        held = []
        try:
            for i in range(5):
                r = Raw(d.port)
                eq(r.reply()[0], 220, "session %d" % i)
                held.append(r)
            r = Raw(d.port)
            code, text = r.reply()
            eq(code, 421, "sixth session from one client")
            r.close()
            # Another loopback address is another client.
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5,
                                         source_address=("127.0.0.2", 0))
            check(s.recv(100).startswith(b"220"), "other client served")
            s.close()
            held.pop().close()
            time.sleep(0.3 * SLOW)
            r = Raw(d.port)
            eq(r.reply()[0], 220, "a slot freed by a disconnect")
            held.append(r)
        finally:
            for r in held:
                r.close()
        check("too many sessions from this client" in d.log(), "logged")


def test_client_that_does_not_read():
    """A client pipelining endless commands without reading replies: the
    server stops reading it (back-pressure) instead of buffering replies
    without bound, and stays responsive to others."""
    with Daemon() as d:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        sent = 0
        deadline = time.time() + 5
        chunk = b"NOOP\r\n" * 10000
        while time.time() < deadline:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.05)
        # Far less than all of it can have been taken in: the daemon
        # stopped reading once its output buffer filled.
        check(sent < 200 * 1024 * 1024, "sent %d bytes unchecked" % sent)
        dt = greeting_time(d.port)
        check(dt < 1.0, "others still served (%.3fs)" % dt)
        s.close()


def test_data_timeout():
    cfg = 'limits { data_timeout = "2s" }\n'
    with Daemon(config=cfg) as d:
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<a@example.com>")
        r.cmd("RCPT TO:<b@example.org>")
        r.cmd("DATA")
        r.send("Subject: stalled\r\n")
        t0 = time.time()
        code, _ = r.reply()
        eq(code, 421, "timeout in DATA")
        check(time.time() - t0 < 10 * SLOW, "timed out in time")
        eq(d.queue_ids(), [], "stalled message not queued")


run_tests(globals())
