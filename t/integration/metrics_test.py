#!/usr/bin/python3
"""Metrics per destination, pool and user, through the real outpostd: known
numbers of messages delivered, refused 5xx and deferred 4xx by an
outpost-sink, and one refused connection, give exact per-destination,
per-pool and per-user counters; more destinations and users than
`metrics { top_destinations; top_users }` give at most N + 1 series a
family (the rest summed under "_other"); a user name that is an address
appears only as its keyed hash (`outpost hash`).  Loopback only."""

import base64
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Raw, Sink, check, eq,  # noqa: E402
                          free_port_on, passwd_hash, promtool_check,
                          run_tests, wait_for)

PASSWORD = "metrics horse battery staple"
TOP_DEST, TOP_USERS = 3, 2
HOSTS = ["127.0.0.70"]       # the sink
DEAD = "127.0.0.71"          # nothing listens there: connection refused
SMALL = ["d%d.test" % i for i in range(1, 7)]
DAVE = "dave@tenant.test"    # a user name that is an address


def scrape(d):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        eq(r.status, 200, "metrics status")
        return r.read().decode()


def samples(text, family):
    """{frozenset(label items): value} of FAMILY's samples."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(family + "{"):
            continue
        body, value = line.rsplit(" ", 1)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"',
                                 body[len(family):]))
        out[frozenset(labels.items())] = float(value)
    return out


def value(text, family, **labels):
    return samples(text, family).get(frozenset(labels.items()), 0.0)


def label_values(text, family, name):
    return {dict(k)[name] for k in samples(text, family)}


def auth_send(d, user, sender, rcpts):
    """One message per recipient, over one AUTH PLAIN session (USER None:
    a relay-network client, no AUTH)."""
    r = Raw(d.port)
    r.reply()
    r.cmd("EHLO client.test")
    if user is not None:
        token = base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode())
        eq(r.cmd("AUTH PLAIN " + token.decode())[0], 235, "AUTH " + user)
    for rcpt in rcpts:
        eq(r.cmd("MAIL FROM:<%s>" % sender)[0], 250, "MAIL")
        eq(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250, "RCPT " + rcpt)
        eq(r.cmd("DATA")[0], 354, "DATA")
        eq(r.cmd("From: <news@big.test>\r\nSubject: m\r\n\r\nbody\r\n.")[0],
           250, "queued")
    r.cmd("QUIT")
    r.close()


def config(h, dns, port):
    users = "".join(
        'user "%s" {\n  password = "%s"\n  sender_domains = { "*" }\n%s}\n'
        % (name, h, extra) for name, extra in
        [(DAVE, ""), ("bob", ""), ("alice", '  pool = "bulk"\n')])
    return (users +
            'pool "bulk" { source = { "127.0.0.2" } }\n'
            'dns { servers = "%s" timeout = 1s tries = 1 }\n'
            'delivery {\n  port = %d\n  retry_intervals = { "1h" }\n'
            '  retry_jitter = 0\n  idle_timeout = 2s\n}\n'
            % (dns.servers, port))


def test_per_destination_pool_user_exact_and_bounded():
    port = free_port_on(HOSTS + [DEAD])
    mx = [(dom, "mx.sink.test", 10) for dom in ["big.test"] + SMALL]
    mx.append(("down.test", "mx.down.test", 10))
    dns = Dns(mx=mx, a=[("mx.sink.test", HOSTS[0]),
                        ("mx.down.test", DEAD)])
    h = passwd_hash(PASSWORD)
    listeners = [("main", 'tls = "none"\n  auth_without_tls = true')]
    with dns, Sink(HOSTS, port) as sink, \
            Daemon(config=config(h, dns, port), listeners=listeners) as d:
        d.stop()
        with open(d.conf_path) as f:
            text = f.read()
        text = text.replace(
            'metrics { listen = "127.0.0.1:%d" }' % d.metrics_port,
            'metrics {\n  listen = "127.0.0.1:%d"\n  top_destinations = %d\n'
            '  top_users = %d\n}' % (d.metrics_port, TOP_DEST, TOP_USERS))
        with open(d.conf_path, "w") as f:
            f.write(text)
        d.start()
        # dave: big.test, 5 delivered, 2 refused 5xx (null sender: no
        # DSN to count), 3 deferred 4xx (retried in an hour: once).
        big = (["ok%d@big.test" % i for i in range(5)] +
               ["reject-%d@big.test" % i for i in range(2)] +
               ["defer-%d@big.test" % i for i in range(3)])
        auth_send(d, DAVE, "", big)
        sink.wait_messages(5, timeout=30)
        wait_for(lambda: value(scrape(d), "outpost_deliveries_total",
                               result="deferred") >= 3,
                 what="big.test's deferrals")
        # alice (pool bulk): 3 to big.test; bob: 1 to each small domain;
        # a relay client (no AUTH): 1 to a host that refuses connections.
        auth_send(d, "alice", "", ["a%d@big.test" % i for i in range(3)])
        auth_send(d, "bob", "", ["b@" + dom for dom in SMALL])
        auth_send(d, None, "", ["c@down.test"])
        sink.wait_messages(14, timeout=30)

        def settled():
            t = scrape(d)
            ok = (value(t, "outpost_user_deliveries_total", user="_other",
                        result="deferred") >= 1 and
                  value(t, "outpost_user_deliveries_total", user="bob",
                        result="delivered") >= 6)
            return t if ok else None
        t = wait_for(settled, what="per-user counters settled")
        time.sleep(1.2)    # one more snapshot: nothing else may move
        t = scrape(d)

        promtool_check(t)
        # Global counters agree with what the sink did.
        eq(value(t, "outpost_deliveries_total", result="delivered"), 14.0,
           "delivered in all")
        # Per destination: exact.
        for result, n in (("delivered", 8), ("bounced", 2),
                          ("deferred", 3), ("expired", 0)):
            eq(value(t, "outpost_destination_deliveries_total",
                     destination="big.test", result=result), float(n),
               "big.test " + result)
        eq(value(t, "outpost_destination_deferrals_total",
                 destination="big.test", reason="reply_4xx"), 3.0,
           "big.test deferrals by 4xx")
        # The refused connection, by reason, wherever down.test is.
        eq(sum(v for k, v in samples(
            t, "outpost_destination_deferrals_total").items()
            if dict(k)["reason"] == "connect"), 1.0, "connect deferral")
        # Every recipient counted once: the series sum to the totals.
        for result in ("delivered", "bounced", "deferred"):
            eq(sum(v for k, v in samples(
                t, "outpost_destination_deliveries_total").items()
                if dict(k)["result"] == result),
               value(t, "outpost_deliveries_total", result=result),
               "destination series sum to the total (%s)" % result)
        # Per pool.
        eq(value(t, "outpost_pool_deliveries_total", pool="bulk",
                 result="delivered"), 3.0, "pool bulk delivered")
        eq(value(t, "outpost_pool_deliveries_total", pool="default",
                 result="delivered"), 11.0, "default pool delivered")
        # Per user: an address only as its keyed hash.
        hd = "hash:" + d.cli("hash", DAVE).stdout.strip()
        for result, n in (("delivered", 5), ("bounced", 2),
                          ("deferred", 3)):
            eq(value(t, "outpost_user_deliveries_total", user=hd,
                     result=result), float(n), "dave " + result)
        eq(value(t, "outpost_user_deferrals_total", user=hd,
                 reason="reply_4xx"), 3.0, "dave deferrals by 4xx")
        eq(value(t, "outpost_user_deliveries_total", user="bob",
                 result="delivered"), 6.0, "bob delivered")
        # alice (3 delivered) and the relay client (1 deferred): _other.
        eq(value(t, "outpost_user_deliveries_total", user="_other",
                 result="delivered"), 3.0, "others delivered")
        eq(value(t, "outpost_user_messages_received_total", user=hd),
           10.0, "dave's messages accepted")
        eq(value(t, "outpost_user_messages_received_total", user="bob"),
           6.0, "bob's messages accepted")
        eq(value(t, "outpost_user_messages_received_total", user="_other"),
           4.0, "alice's and the relay client's")
        check(DAVE not in t and "@" not in "".join(
            re.findall(r'\{[^}]*\}', t)), "no address in a label")
        # Bounded: N + 1 label values a family at most, with "_other".
        for fam, name, n in (
                ("outpost_destination_deliveries_total", "destination",
                 TOP_DEST),
                ("outpost_destination_deferrals_total", "destination",
                 TOP_DEST),
                ("outpost_user_deliveries_total", "user", TOP_USERS),
                ("outpost_user_messages_received_total", "user",
                 TOP_USERS)):
            vals = label_values(t, fam, name)
            check(len(vals) <= n + 1, "%s: %d series > %d: %s"
                  % (fam, len(vals), n + 1, sorted(vals)))
        check("_other" in label_values(
            t, "outpost_destination_deliveries_total", "destination"),
            "destinations beyond the top summed under _other")
        check(len(label_values(t, "outpost_destination_connections",
                               "destination")) <= TOP_DEST + 1,
              "connections bounded")
        # Queue depth and age: the deferred wait an hour.
        check(value(t, "outpost_destination_queued_messages",
                    destination="big.test") >= 0, "queued gauge")
        check(samples(t, "outpost_destination_queued_messages") != {} or
              "outpost_destination_queued_messages" in t,
              "queued gauge present")
        age = [line for line in t.splitlines()
               if line.startswith("outpost_queue_oldest_message_age_seconds ")]
        check(age and float(age[0].split()[1]) > 0, "oldest age: %r" % age)


def test_held_messages_by_destination():
    """A destination that refuses connections backs off; what comes for it
    then is held in place, and the gauges say how much and how old."""
    port = free_port_on([DEAD])
    dns = Dns(mx=[("down.test", "mx.down.test", 10)],
              a=[("mx.down.test", DEAD)])
    cfg = ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
           'delivery {\n  port = %d\n  retry_intervals = { "1h" }\n}\n'
           'destination "*" { backoff_pause = 10m }\n' % (dns.servers, port))
    with dns, Daemon(config=cfg) as d:
        auth_send(d, None, "", ["first@down.test"])
        wait_for(lambda: value(scrape(d), "outpost_deliveries_total",
                               result="deferred") >= 1,
                 what="the first deferral")
        auth_send(d, None, "", ["h%d@down.test" % i for i in range(3)])

        def held():
            t = scrape(d)
            return t if value(t, "outpost_destination_queued_messages",
                              destination="mx.down.test") == 3 else None
        t = wait_for(held, what="3 messages held for mx.down.test")
        eq(value(t, "outpost_destination_deliveries_total",
                 destination="down.test", result="deferred"), 1.0,
           "held messages are not deferred again")
        time.sleep(2.2)
        t = scrape(d)
        check(value(t, "outpost_destination_oldest_message_age_seconds",
                    destination="mx.down.test") >= 1,
              "age of the oldest held message")
        promtool_check(t)


if __name__ == "__main__":
    run_tests(globals())
