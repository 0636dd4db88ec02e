#!/usr/bin/python3
"""outpostd under valgrind's memcheck, through a whole life: start, accept
and deliver, a reload (SIGHUP), a metrics queue scan, then an orderly stop.
Any invalid read or write, use of freed memory or of an uninitialised value
makes valgrind exit 9 and fails the test: libevent, OpenSSL and LMDB are
Debian's uninstrumented libraries, so the ASan suite cannot see what our
code makes them do (freeing an event after its base, say); memcheck can.
Skipped in the ASan variant (the two tools do not mix)."""

import os
import shutil
import signal
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Sink, check, delivery_config,  # noqa
                          free_port_on, run_tests, wait_for)

HOST = "127.0.0.57"
VALGRIND = ["valgrind", "--tool=memcheck", "--error-exitcode=9", "-q",
            "--num-callers=30"]


def scanned(d):
    """The metrics say a queue scan has run."""
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("outpost_queue_scan_timestamp_seconds "):
            return float(line.split()[1]) > 0
    return False


def test_whole_life_is_clean():
    if os.environ.get("OUTPOST_ASAN") or shutil.which("valgrind") is None:
        print("# skip: %s" % ("the ASan variant" if os.environ.get(
            "OUTPOST_ASAN") else "valgrind is not installed"))
        return
    port = free_port_on([HOST])
    dns = Dns(mx=[("mc.test", "mx.mc.test", 10)], a=[("mx.mc.test", HOST)])
    with dns, Sink([HOST], port) as sink:
        d = Daemon(config=delivery_config(dns, port) +
                   "metrics { queue_scan_interval = 1s }\n",
                   wrapper=VALGRIND)
        with d:
            for i in range(3):
                s = d.smtp(timeout=60)
                s.ehlo()
                s.sendmail("news@sender.test", ["r%d@mc.test" % i],
                           "From: news@sender.test\r\nSubject: %d\r\n"
                           "Message-ID: <m%d@sender.test>\r\n\r\nhi\r\n"
                           % (i, i))
                s.quit()
            sink.wait_messages(3, timeout=120)
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "generation 2" in d.log(), 60, "the reload")
            wait_for(lambda: scanned(d), 60, "a queue scan")
            check(d.proc.poll() is None, "outpostd runs after the reload")
            d.stop(timeout=120)  # valgrind's 9 fails it, with the report


if __name__ == "__main__":
    run_tests(globals())
