#!/usr/bin/python3
"""A destination that refuses connections (its MX port closed on loopback)
while N messages wait for it: the back-off holds them in place (no
delivery-log line, counter or queue write per message beyond the real
attempts, and one probe a pause over every delivery loop), `queue summary`
counts them all as deferred with the real cause, the receiver's answer to
that probe lets every loop's held messages go at once,
an expiry DSN gives that cause, and `queue retry` / `resume` deliver them
at once when the receiver comes back, past the back-off.  DNS is a dnsmasq
of our own and the receiver an outpost-sink, all on loopback."""

import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, SLOW, ControlDaemon, Dns,  # noqa: E402
                          Sink, TestFailure, check, delivery_config, eq,
                          free_port_on, pipeline, run_tests, wait_empty,
                          wait_for)

N = 200


def cli(d, *args):
    r = subprocess.run([OUTPOST, "-c", d.conf_path] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=120 * SLOW,
                       cwd="/")
    if r.returncode != 0:
        raise TestFailure("outpost %s: exit %d: %s%s" % (
            " ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
    return r.stdout


def summary(d):
    return {row["domain"]: row for row in
            (json.loads(x) for x in
             cli(d, "queue", "summary", "--json").splitlines() if x.strip())
            if "domain" in row}


def metrics(d):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def events(d, kind):
    try:
        with open(d.delivery_log) as f:
            return [e for e in (json.loads(x) for x in f if x.strip())
                    if e.get("event") == kind]
    except FileNotFoundError:
        return []


def refusing(name, host, extra, retry="1s"):
    """DNS for NAME -> HOST, a port nobody listens on (yet), a daemon whose
    retries come every RETRY and whose back-off is as EXTRA says."""
    port = free_port_on([host])
    dns = Dns(mx=[(name, "mx." + name, 10)], a=[("mx." + name, host)])
    cfg = delivery_config(dns, port, extra).replace('"1s" }',
                                                    '"%s" }' % retry)
    return dns, port, ControlDaemon(cfg, prefix="outpost-bo-")


def test_backoff_holds_messages_in_place():
    dns, port, d = refusing("bo.test", "127.0.0.51", '''
destination "*" { backoff_pause = 3s backoff_max = 3s max_connections = 2 }
''')
    with dns, d:
        pipeline(d, ["r%d@bo.test" % i for i in range(N)])
        # Every message had its round: tried, or held by the back-off.
        wait_for(lambda: events(d, "transient_failure"), 30, "an attempt")
        time.sleep(2 * SLOW)
        m0, tr0 = metrics(d), len(events(d, "transient_failure"))
        # Several back-off intervals (3 s), a retry interval each second.
        time.sleep(10)  # wall-clock pauses: not scaled for ASan
        m1, tr1 = metrics(d), len(events(d, "transient_failure"))
        key = 'outpost_deliveries_total{result="deferred"}'
        grown = m1[key] - m0[key]
        ops = m1["outpost_queue_ops_total"] - m0["outpost_queue_ops_total"]
        # A probe or two per interval may be tried for real, not N.
        check(tr1 - tr0 <= 12, "delivery-log deferrals while backed off: "
              "%d (per message?)" % (tr1 - tr0))
        check(grown <= 12, "deliveries_total{deferred} grew by %d" % grown)
        check(ops <= 12, "queue writes while backed off: %d" % ops)
        # Every pause ended by its own timer, none by the sweep that
        # catches one left without (its warning in the log says how).
        eq(m1["outpost_destination_pauses_overdue_total"], 0,
           "pauses found past their end")
        row = summary(d)["bo.test"]
        eq(row["deferred"], N, "DEFERRED")
        eq(row["recipients"], N, "recipients")
        err = row["last_error"]
        eq(err["code"], 0, "no reply: %s" % err)
        check("connect" in err.get("text", "") and
              "refused" in err.get("text", "").lower(),
              "LAST ERROR names the connect failure: %s" % err)
        table = cli(d, "queue", "summary")
        check("Connection refused" in table and "no reply 4.4.2"
              not in table, "summary table: %s" % table)
        # Every deferral in the log is a real attempt, with its cause.
        tried = events(d, "transient_failure")
        check(tried, "the real attempts are in the log")
        fake = [e for e in tried if "backed off" in e.get("reply", "") or
                e.get("stage") == "local"]
        check(not fake, "%d deferrals without an attempt, e.g. %s"
              % (len(fake), fake[:1]))
        # queue show: each recipient's state, attempts, next attempt (not
        # in the past: when the pause ends) and last reply.
        ids = sorted(json.loads(x)["id"] for x in
                     cli(d, "queue", "list", "--json").splitlines())
        now_ms = time.time() * 1000
        replies = []
        for qid in ids[:5] + ids[-5:]:
            r = json.loads(cli(d, "queue", "show", qid, "--json"))
            r = r["recipients"][0]
            eq(r["state"], "pending", "show: state")
            check(r.get("next_attempt_ms", 0) > now_ms - 1000,
                  "show: next attempt when the pause ends: %s" % r)
            replies.append(r.get("last_reply") or "")
        check(any("connect: Connection refused" in x for x in replies),
              "show: last reply of the tried: %s" % replies)
        text = cli(d, "queue", "show", ids[0])
        check("next attempt:" in text and "last reply:" in text,
              "show text: %s" % text)
        # The destination says when it pauses and when it resumes, once
        # each (the pauses come every 3 s at most).
        log = d.log()
        check(1 <= log.count("resumed (its pause is over)") <= 5,
              "a line when the pause ends: %d" % log.count("resumed ("))
        check(log.count("backed off for") <= 6, "a line per pause")
        # Each pause is said to end once and probed once over every
        # delivery loop: at level 1 and up the path's 2 connections halve
        # to 1, and a loop that did not take the probe waits for its
        # outcome.  (The first pause's stretch may hold the second of the
        # two first connections failing too.)
        after = log[log.index("backed off for"):].split("backed off for")
        for part in after[2:]:
            check(part.count("resumed (") <= 1 and
                  part.count("connect failed") <= 1,
                  "one pause's end said and probed once: %s" % part)
        paused = events(d, "destination_paused")
        resumed = events(d, "destination_resumed")
        check(1 <= len(paused) <= 6 and 1 <= len(resumed) <= 5,
              "delivery log: %d paused, %d resumed events"
              % (len(paused), len(resumed)))
        check("Connection refused" in paused[0].get("reason", ""),
              "the pause says why: %s" % paused[0])


def test_answer_lets_every_loop_go():
    """The receiver comes back while backed off: its pause ends, one
    probe gets through, and every message held for it (over every
    delivery loop) goes at once, not a pause later."""
    dns, port, d = refusing("back.test", "127.0.0.55", '''
destination "*" { backoff_pause = 8s backoff_max = 8s }
''')
    with dns, d:
        pipeline(d, ["r%d@back.test" % i for i in range(N)])
        wait_for(lambda: "backed off for" in d.log(), 30, "a pause")
        t0 = time.time()
        with Sink(["127.0.0.55"], port, maildir=False) as sink:
            # The pause ends 8 s after it began; another pause's time
            # later is when held messages go without news of the probe.
            sink.wait_messages(N, timeout=30)
            took = time.time() - t0
            check(took < 8 + 5 * SLOW, "all %d delivered %.1f s after "
                  "the pause began" % (N, took))
            wait_empty(d, timeout=30)
        log = d.log()
        eq(log.count("resumed (its pause is over)"), 1, "resumed lines")


def retry_now(verb):
    # Retries an hour apart, and as long a back-off: only "try now"
    # delivers within the test.
    dns, port, d = refusing("now.test", "127.0.0.52", '''
destination "*" { backoff_pause = 1h backoff_max = 1h }
''', retry="1h")
    with dns, d:
        pipeline(d, ["r%d@now.test" % i for i in range(N)])
        wait_for(lambda: events(d, "transient_failure"), 30, "an attempt")
        time.sleep(2 * SLOW)
        with Sink(["127.0.0.52"], port, maildir=False) as sink:
            t0 = time.time()
            if verb == "retry":
                cli(d, "queue", "retry", "--domain", "now.test")
            else:
                cli(d, "resume", "now.test")
            # The back-off has an hour to go: only "try now" delivers.
            sink.wait_messages(N, timeout=30)
            wait_empty(d, timeout=30)
            check(time.time() - t0 < 30 * SLOW, "promptly")


def test_queue_retry_tries_now_past_backoff():
    retry_now("retry")


def test_resume_tries_now_past_backoff():
    retry_now("resume")


def test_expiry_while_held_gives_the_real_error():
    hosts = ["127.0.0.53", "127.0.0.54"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("gone.test", "mx.gone.test", 10),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.gone.test", "127.0.0.53"),      # nobody listens
                 ("mx.sender.test", "127.0.0.54")])
    cfg = delivery_config(dns, port, '''
destination "gone.test" { backoff_pause = 1h backoff_max = 1h }
''').replace("  retry_jitter = 0\n", "  retry_jitter = 0\n  max_age = 4s\n")
    with dns, Sink(["127.0.0.54"], port) as sink, \
            ControlDaemon(cfg, prefix="outpost-bo-") as d:
        pipeline(d, ["g%d@gone.test" % i for i in range(5)])
        sink.wait_messages(5, timeout=30)
        for dsn in sink.messages():
            text = dsn.decode("utf-8", "replace")
            check("backed off" not in text, "DSN: %s" % text[-1500:])
            check("Connection refused" in text,
                  "DSN gives the real error: %s" % text[-1500:])
        ex = wait_for(lambda: (lambda e: e if len(e) == 5 else None)(
            events(d, "expiration")), 10, "5 expiration events")
        for e in ex:
            check("Connection refused" in e.get("reply", ""),
                  "expiration gives the real error: %s" % e)
        wait_empty(d)


if __name__ == "__main__":
    run_tests(globals())
