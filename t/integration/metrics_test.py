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
        if line.startswith(family + " "):
            out[frozenset()] = float(line.split()[1])
            continue
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


def auth_send(d, user, sender, rcpts, together=False):
    """One message per recipient (TOGETHER: one to them all), over one
    AUTH PLAIN session (USER None: a relay-network client, no AUTH)."""
    r = Raw(d.port)
    r.reply()
    r.cmd("EHLO client.test")
    if user is not None:
        token = base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode())
        eq(r.cmd("AUTH PLAIN " + token.decode())[0], 235, "AUTH " + user)
    for batch in [rcpts] if together else [[rcpt] for rcpt in rcpts]:
        eq(r.cmd("MAIL FROM:<%s>" % sender)[0], 250, "MAIL")
        for rcpt in batch:
            eq(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250, "RCPT " + rcpt)
        eq(r.cmd("DATA")[0], 354, "DATA")
        eq(r.cmd("From: <news@big.test>\r\nSubject: m\r\n\r\nbody\r\n.")[0],
           250, "queued")
    r.cmd("QUIT")
    r.close()


def metrics_conf(d, **keys):
    """Restart D with KEYS added to its `metrics { }` section."""
    d.stop()
    with open(d.conf_path) as f:
        text = f.read()
    text = text.replace(
        'metrics { listen = "127.0.0.1:%d" }' % d.metrics_port,
        'metrics {\n  listen = "127.0.0.1:%d"\n%s}' % (
            d.metrics_port, "".join("  %s = %s\n" % kv
                                    for kv in sorted(keys.items()))))
    with open(d.conf_path, "w") as f:
        f.write(text)
    d.start()


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
        metrics_conf(d, top_destinations=TOP_DEST, top_users=TOP_USERS)
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
        age = [line for line in t.splitlines()
               if line.startswith("outpost_queue_oldest_message_age_seconds ")]
        check(age and float(age[0].split()[1]) > 0, "oldest age: %r" % age)


def test_held_messages_by_destination():
    """A destination that refuses connections backs off; what comes for it
    then is held in place; the scan counts it with the message that waits
    out its retry interval, under the recipient domain."""
    port = free_port_on([DEAD])
    dns = Dns(mx=[("down.test", "mx.down.test", 10)],
              a=[("mx.down.test", DEAD)])
    cfg = ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
           'delivery {\n  port = %d\n  retry_intervals = { "1h" }\n}\n'
           'destination "*" { backoff_pause = 10m }\n' % (dns.servers, port))
    with dns, Daemon(config=cfg) as d:
        metrics_conf(d, queue_scan_interval="1s")
        auth_send(d, None, "", ["first@down.test"])
        wait_for(lambda: value(scrape(d), "outpost_deliveries_total",
                               result="deferred") >= 1,
                 what="the first deferral")
        auth_send(d, None, "", ["h%d@down.test" % i for i in range(3)])

        def held():
            t = scrape(d)
            return t if value(t, "outpost_destination_queued_messages",
                              destination="down.test") == 4 else None
        t = wait_for(held, what="4 messages queued for down.test")
        eq(value(t, "outpost_destination_deliveries_total",
                 destination="down.test", result="deferred"), 1.0,
           "held messages are not deferred again")
        time.sleep(2.2)
        t = scrape(d)
        check(value(t, "outpost_destination_oldest_message_age_seconds",
                    destination="down.test") >= 1,
              "age of the oldest queued message")
        promtool_check(t)


def scan_after(d, since):
    """The first metrics text whose queue scan began after SINCE."""
    def done():
        t = scrape(d)
        at = [line for line in t.splitlines() if line.startswith(
            "outpost_queue_scan_timestamp_seconds ")]
        return t if at and float(at[0].split()[1]) > since else None
    return wait_for(done, what="a queue scan after %.1f" % since)


def test_queue_depth_by_destination_pool_user():
    """The periodic queue scan: exact queued messages and recipients, held
    messages and the oldest message's age per recipient domain, pool and
    user, counting what waits out a retry interval and what is held; the
    top N by depth, the rest under "_other"; 0 once the queue is empty."""
    port = free_port_on(["127.0.0.72"])
    doms = ["a.test", "b.test", "c.test", "d.test"]
    dns = Dns(mx=[(dom, "mx.sink.test", 10) for dom in doms],
              a=[("mx.sink.test", "127.0.0.72")])
    h = passwd_hash(PASSWORD)
    listeners = [("main", 'tls = "none"\n  auth_without_tls = true')]
    with dns, Sink(["127.0.0.72"], port), \
            Daemon(config=config(h, dns, port), listeners=listeners) as d:
        metrics_conf(d, top_destinations=2, top_users=1,
                     queue_scan_interval="1s")
        t_first = time.time()
        # bob (pool default): a 3, b 3 (one of them to 2 recipients), c 1,
        # d 1; alice (pool bulk): a 2, c 1.  Every recipient answers 4xx
        # and waits an hour for its retry.
        auth_send(d, "bob", "", ["defer-x@b.test", "defer-y@b.test"],
                  together=True)
        auth_send(d, "bob", "", ["defer-b%d@a.test" % i for i in range(3)] +
                  ["defer-b0@b.test", "defer-b1@b.test", "defer-b@c.test",
                   "defer-b@d.test"])
        auth_send(d, "alice", "", ["defer-a0@a.test", "defer-a1@a.test",
                                   "defer-a@c.test"])
        t_sent = time.time()
        wait_for(lambda: value(scrape(d), "outpost_deliveries_total",
                               result="deferred") >= 12,
                 what="12 recipients deferred")
        d.cli("queue", "hold", "--domain", "c.test")
        time.sleep(max(0.0, t_sent + 3 - time.time()))
        t = scan_after(d, time.time())
        promtool_check(t)

        def fam(what, dim):
            return "outpost_%s_%s" % (dim, what)
        expect = {
            "destination": {"a.test": (5, 5, 0), "b.test": (3, 4, 0),
                            "_other": (3, 3, 2)},
            "pool": {"default": (8, 9, 1), "bulk": (3, 3, 1)},
            "user": {"bob": (8, 9, 1), "_other": (3, 3, 1)},
        }
        for dim, want in expect.items():
            eq(label_values(t, fam("queued_messages", dim), dim),
               set(want), "%s label values" % dim)
            for label, (msgs, rcpts, held) in want.items():
                lab = {dim: label}
                eq(value(t, fam("queued_messages", dim), **lab),
                   float(msgs), "%s %s queued messages" % (dim, label))
                eq(value(t, fam("queued_recipients", dim), **lab),
                   float(rcpts), "%s %s queued recipients" % (dim, label))
                eq(value(t, fam("held_messages", dim), **lab),
                   float(held), "%s %s held messages" % (dim, label))
                age = value(t, fam("oldest_message_age_seconds", dim),
                            **lab)
                check(2 <= age <= time.time() - t_first + 1,
                      "%s %s oldest age %s" % (dim, label, age))
        eq(value(t, "outpost_queue_scan_messages"), 11.0, "scanned")
        eq(value(t, "outpost_queue_scan_recipients"), 12.0,
           "scanned recipients")
        eq(value(t, "outpost_queue_scan_held_messages"), 2.0,
           "scanned held")
        check(value(t, "outpost_queue_scan_duration_seconds") < 5,
              "scan duration")
        # Delivered or deleted: 0 at the next scan.
        d.cli("queue", "delete", "--all")
        wait_for(lambda: d.queue_ids() == [], what="queue empty")
        t = scan_after(d, time.time())
        eq(value(t, "outpost_queue_scan_messages"), 0.0, "scanned, empty")
        for dim in expect:
            for what in ("queued_messages", "queued_recipients",
                         "held_messages"):
                eq(sum(samples(t, fam(what, dim)).values()), 0.0,
                   "%s %s once empty" % (dim, what))


if __name__ == "__main__":
    run_tests(globals())
