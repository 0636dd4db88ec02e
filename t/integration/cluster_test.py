#!/usr/bin/python3
"""Limits shared by a cluster's nodes through Redis (cluster { redis = … }):
two outpostd on loopback share a redis-server started here and one
receiver (outpost-sink); a destination's max_connections holds across
both, seen at the receiver; with Redis killed each node keeps to its share
(the limit / nodes) and every message is still delivered; Redis back, the
limit is shared again; a node killed with -9 frees its leases when they
expire; a destination's rate holds across both, and with Redis away each
keeps to its share of it; a step down of the adaptive back-off and the
suppression list are shared.  Loopback only."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Redis, Sink, check,  # noqa: E402
                          eq, free_port_on, metrics_text, pipeline, run_tests,
                          wait_empty, wait_for)


def node_config(dns, port, redis, name, limit, nodes=2, lease="3s",
                idle="1s", more="", per_conn=3):
    return ('dns { servers = "%s" timeout = 1s tries = 1 }\n'
            'delivery {\n  port = %d\n  threads = 2\n'
            '  retry_intervals = { "1s" }\n  retry_jitter = 0\n'
            '  idle_timeout = %s\n}\n'
            'cluster {\n  redis = "%s"\n  node = "%s"\n  nodes = %d\n'
            '  lease = %s\n  timeout = 300ms\n%s}\n'
            'destination "*" {\n  max_connections = %d\n'
            '  max_messages_per_connection = %d\n'
            '  max_recipients_per_transaction = 1\n}\n'
            % (dns.servers, port, idle, redis.addr, name, nodes, lease,
               more, limit, per_conn))


def metric(d, name):
    for line in metrics_text(d).splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_linked(*nodes):
    """Each of NODES has its link to Redis up (its first command answered,
    its scripts loaded)."""
    for d in nodes:
        wait_for(lambda: metric(d, "outpost_cluster_redis_up") == 1,
                 what="node linked to Redis")


def leases(redis):
    """Live leases in Redis: {key: members}."""
    out = {}
    for key in redis.cmd("KEYS", "outpost:conn:*") or []:
        out[key] = redis.cmd("ZCARD", key)
    return out


def send(d, tag, n):
    pipeline(d, ["%s%d@dest.test" % (tag, i) for i in range(n)])


def setup(host):
    port = free_port_on([host])
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", host)])
    return dns, port


def test_connection_limit_holds_across_nodes():
    """max_connections = 3 on two nodes: at most 3 at the receiver, and
    both nodes deliver all theirs."""
    dns, port = setup("127.0.0.61")
    with Redis() as redis, dns, \
            Sink(["127.0.0.61"], port, ["--reply-delay-ms", "40"],
                 maildir=False) as sink, \
            Daemon(config=node_config(dns, port, redis, "a", 3)) as a, \
            Daemon(config=node_config(dns, port, redis, "b", 3)) as b:
        wait_linked(a, b)
        send(a, "a", 30)
        send(b, "b", 30)
        st = sink.wait_messages(60, timeout=120)
        check(st["connections_max"] <= 3,
              "at most 3 connections at once across the nodes, saw %d"
              % st["connections_max"])
        check(st["connections_max"] >= 2, "the limit was reached: %d"
              % st["connections_max"])
        for d in (a, b):
            wait_empty(d)
            check(metric(d, "outpost_cluster_lease_requests_total"
                         '{result="granted"}') >= 1, "leases granted")
            check(metric(d, "outpost_cluster_lease_requests_total"
                         '{result="denied"}') is not None, "denials counted")
        # Idle connections close (1 s): their leases are given back.
        wait_for(lambda: sum(leases(redis).values()) == 0, 20,
                 "leases released: %s" % leases(redis))


def queued(d):
    return len(d.queue_ids())


def test_a_waiting_node_gets_the_next_free_place():
    """Limit 2, 3 messages a connection: a has 60 messages and both
    places; b comes with 6.  Each place a gives back goes to b (it waits
    in line in Redis), not to a again: b is done long before a."""
    dns, port = setup("127.0.0.66")
    with Redis() as redis, dns, \
            Sink(["127.0.0.66"], port, ["--reply-delay-ms", "30"],
                 maildir=False) as sink, \
            Daemon(config=node_config(dns, port, redis, "a", 2)) as a, \
            Daemon(config=node_config(dns, port, redis, "b", 2)) as b:
        wait_linked(a, b)
        send(a, "a", 60)
        wait_for(lambda: sink.stats().get("connections_now", 0) == 2,
                 what="a holds both places")
        send(b, "b", 6)
        wait_for(lambda: queued(b) == 0, 60, "b delivered")
        left = queued(a)
        check(left >= 20, "b waited for a's backlog: a has %d left" % left)
        sink.wait_messages(66, timeout=120)
        wait_empty(a)


def test_redis_away_each_node_keeps_to_its_share():
    """Redis killed while mail goes: each of the 2 nodes keeps to 2 of the
    4 connections, says so once, and delivers everything; Redis back:
    shared again."""
    dns, port = setup("127.0.0.62")
    redis = Redis()
    redis.start()
    try:
        with dns, Sink(["127.0.0.62"], port, ["--reply-delay-ms", "40"],
                       maildir=False) as sink, \
                Daemon(config=node_config(dns, port, redis, "a", 4)) as a, \
                Daemon(config=node_config(dns, port, redis, "b", 4)) as b:
            wait_linked(a, b)
            # Killed mid-run: once the connections opened before have
            # made way (a second), each node holds at most its share.
            send(a, "a", 60)
            send(b, "b", 60)
            wait_for(lambda: sink.stats().get("messages", 0) >= 10, 30,
                     "mail flowing")
            redis.stop(kill=True)
            time.sleep(1.0)
            peak = 0
            while sink.stats().get("messages", 0) < 120:
                peak = max(peak, sink.stats().get("connections_now", 0))
                time.sleep(0.01)
            check(peak <= 4, "each node at its share (2): at most 4, saw "
                  "%d" % peak)
            st = sink.wait_messages(120, timeout=120)
            for d in (a, b):
                wait_empty(d)
                eq(metric(d, "outpost_cluster_redis_up"), 0.0, "up gauge")
                eq(metric(d, "outpost_cluster_redis_away_total"), 1.0,
                   "away counted once")
                eq(d.log().count("keeps to 1/2 of each connection limit"),
                   1, "said once")
            # Back: shared again, and the nodes say so.
            redis.start()
            for d in (a, b):
                wait_for(lambda: "Redis %s back" % redis.addr in d.log(),
                         20, "back logged")
                wait_linked(d)
            before = sink.stats()["messages"]
            send(a, "c", 20)
            send(b, "d", 20)
            sink.wait_messages(before + 40, timeout=120)
            for d in (a, b):
                wait_empty(d)
                check(metric(d, "outpost_cluster_lease_requests_total"
                             '{result="granted"}') >= 1,
                      "leases from Redis after its return")
    finally:
        redis.stop(kill=True)


def test_slow_redis_counts_as_away():
    """Redis paused for 3 s (CLIENT PAUSE) while mail goes: a command
    unanswered for cluster.timeout (300 ms) means away; the node keeps to
    its share, delivers everything, and is back once Redis answers."""
    dns, port = setup("127.0.0.70")
    with Redis() as redis, dns, \
            Sink(["127.0.0.70"], port, ["--reply-delay-ms", "20"],
                 maildir=False) as sink, \
            Daemon(config=node_config(dns, port, redis, "a", 4)) as a:
        wait_linked(a)
        redis.cmd("CLIENT", "PAUSE", "3000", "ALL")
        t0 = time.time()
        send(a, "a", 30)
        st = sink.wait_messages(30, timeout=60)
        check(st["connections_max"] <= 4, "connections: %d"
              % st["connections_max"])
        wait_for(lambda: "no answer in 300 ms" in a.log(), 10,
                 "the timeout said")
        check(time.time() - t0 < 30, "delivered while Redis was slow")
        wait_empty(a)
        wait_for(lambda: metric(a, "outpost_cluster_redis_up") == 1, 20,
                 "back after the pause")
        # Away once for the pause.  A loaded machine may make a later
        # command miss its 300 ms too: each away is then said once in
        # the log, and counted once.
        said = [x for x in a.log().splitlines() if "cluster: Redis" in x
                and " away (" in x]
        check(said and "no answer in 300 ms" in said[0],
              "the pause was the first away: %s" % said[:1])
        eq(metric(a, "outpost_cluster_redis_away_total"), float(len(said)),
           "away counted as often as said")


def test_killed_node_frees_its_leases():
    """Node a holds leases on idle connections (idle_timeout 60s) and is
    killed with -9: its leases expire (lease = 3s) and b may take the
    whole limit."""
    dns, port = setup("127.0.0.63")
    with Redis() as redis, dns, \
            Sink(["127.0.0.63"], port, ["--reply-delay-ms", "20"],
                 maildir=False) as sink, \
            Daemon(config=node_config(dns, port, redis, "a", 2,
                                      idle="60s", per_conn=100)) as a, \
            Daemon(config=node_config(dns, port, redis, "b", 2,
                                      idle="60s", per_conn=100)) as b:
        wait_linked(a)
        send(a, "a", 6)
        sink.wait_messages(6, timeout=60)
        wait_empty(a)
        held = leases(redis)
        eq(sum(held.values()), 2, "a holds 2 leases on idle connections: "
           "%s" % held)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        a.proc = None
        # b is turned away while a's leases live, then takes them over.
        send(b, "b", 6)
        wait_for(lambda: sink.stats()["messages"] >= 12, 30,
                 "b delivered after a's leases expired")
        wait_empty(b)
        check(metric(b, "outpost_cluster_lease_requests_total"
                     '{result="denied"}') >= 1,
              "b was turned away while a's leases lived")
        members = []
        for key in redis.cmd("KEYS", "outpost:conn:*") or []:
            members += redis.cmd("ZRANGE", key, "0", "-1")
        check(all(m.startswith("b:") for m in members),
              "only b's leases are left: %s" % members)


def rate_config(dns, port, redis, name):
    return node_config(dns, port, redis, name, 4, per_conn=1000).replace(
        "  max_recipients_per_transaction = 1\n",
        "  max_recipients_per_transaction = 1\n"
        "  max_messages_per_minute = 600\n")


def check_rate(st, n, what):
    """N messages at 600 a minute (one every 100 ms) across the cluster:
    they span (N - 1) x 100 ms at least (5% off for the clocks), and no
    second holds more than 11."""
    spread = st["last_message_time"] - st["first_message_time"]
    check(spread >= (n - 1) * 0.1 * 0.95,
          "%s: %d messages in %.2fs, faster than 10/s" % (what, n, spread))
    for sec, k in st["messages_per_second"]:
        check(k <= 11, "%s: %d messages in one second" % (what, k))


def test_shared_rate_holds_across_nodes():
    """max_messages_per_minute = 600 on two nodes sending at once: 10 a
    second at the receiver, not 20; Redis killed, each node keeps to 300
    a minute, so the pair still does 10 a second."""
    dns, port = setup("127.0.0.65")
    redis = Redis()
    redis.start()
    try:
        with dns:
            with Sink(["127.0.0.65"], port, maildir=False) as sink, \
                    Daemon(config=rate_config(dns, port, redis, "a")) as a, \
                    Daemon(config=rate_config(dns, port, redis, "b")) as b:
                for d in (a, b):
                    wait_for(lambda: metric(d, "outpost_cluster_redis_up")
                             == 1, what="node linked to Redis")
                send(a, "a", 25)
                send(b, "b", 25)
                st = sink.wait_messages(50, timeout=60)
                check_rate(st, 50, "shared")
                for d in (a, b):
                    wait_empty(d)
                    check(metric(d, "outpost_cluster_rate_requests_total"
                                 '{result="now"}') >= 20,
                          "messages counted in Redis")
            redis.stop(kill=True)
            with Sink(["127.0.0.65"], port, maildir=False) as sink, \
                    Daemon(config=rate_config(dns, port, redis, "a")) as a, \
                    Daemon(config=rate_config(dns, port, redis, "b")) as b:
                send(a, "c", 15)
                send(b, "d", 15)
                st = sink.wait_messages(30, timeout=60)
                check_rate(st, 30, "Redis away")
                for d in (a, b):
                    wait_empty(d)
                    eq(metric(d, "outpost_cluster_redis_up"), 0.0, "away")
    finally:
        redis.stop(kill=True)


def test_a_step_down_holds_on_every_node():
    """throttle_on = rate-limited: a reply "451 4.7.28 ... rate limited"
    to node a takes the destination a step down (8 -> 4 connections); b,
    which had not sent there yet, hears of it within a second or so, says
    so when it does, and keeps to it too."""
    import tempfile
    dns, port = setup("127.0.0.71")
    tmp = tempfile.mkdtemp(prefix="outpost-thr-")
    rules = os.path.join(tmp, "rules")
    with open(rules, "w") as f:
        f.write("tr once 451 4.7.28 Our system has detected an unusual "
                "rate of mail: rate limited\n")
    more = ('destination "dest.test" {\n  max_connections = 8\n'
            '  max_recipients_per_transaction = 1\n'
            '  max_messages_per_connection = 1000\n'
            '  throttle_on = { "rate-limited" }\n  throttle_for = 20s\n}\n')
    with Redis() as redis, dns, \
            Sink(["127.0.0.71"], port, ["--reply-delay-ms", "40",
                                         "--rules", rules],
                 maildir=False) as sink, \
            Daemon(config=node_config(dns, port, redis, "a", 8) +
                   more) as a, \
            Daemon(config=node_config(dns, port, redis, "b", 8) +
                   more) as b:
        wait_linked(a, b)
        send(a, "tr", 1)
        wait_for(lambda: "throttled, step 1 of 4: 4 connection(s)" in
                 a.log(), 20, "a steps down")
        wait_for(lambda: sink.stats().get("connections_now", 9) <= 4, 10,
                 "connections past the step closed")
        time.sleep(1.5)  # b reads the steps in force every second
        before = sink.stats()["messages"]
        peak = [0]

        def watch():
            while sink.stats()["messages"] < before + 48:
                peak[0] = max(peak[0], sink.stats()["connections_now"])
                time.sleep(0.01)
        import threading
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        send(b, "b", 48)
        sink.wait_messages(before + 48, timeout=60)
        t.join(5)
        check(peak[0] <= 4, "b kept to the step: %d connections" % peak[0])
        check("throttled by another node of the cluster, step 1 of 4: 4 "
              "connection(s)" in b.log(), "b says it follows")
        wait_empty(b)


def rcpt_code(d, addr):
    """The reply to RCPT TO:<ADDR> at D (then RSET): 250, or 550 when the
    address is on the suppression list."""
    import smtplib
    s = d.smtp()
    try:
        s.ehlo("client.test")
        s.mail("news@sender.test")
        code = s.rcpt(addr)[0]
        s.rset()
        s.quit()
    finally:
        s.close()
    return code


def test_suppression_list_is_shared():
    """Nodes that share Redis and the delivery log's key share the
    suppression list: `outpost suppress add` on a makes b refuse the
    address within a second or so; `suppress remove` on a lets it through
    on b again; b, started after the add, learns it at start."""
    import tempfile
    from outpost_test import ControlDaemon
    gone = "gone.away@dest.test"
    keydir = tempfile.mkdtemp(prefix="outpost-key-")
    os.chmod(keydir, 0o755)
    key = 'hash_key_file = "%s"\n' % os.path.join(keydir, "loghash.key")
    with Redis() as redis:
        def node(name):
            return ControlDaemon(config=key + (
                'cluster {\n  redis = "%s"\n  node = "%s"\n'
                '  nodes = 2\n  lease = 3s\n  timeout = 300ms\n}\n'
                % (redis.addr, name)))
        a = node("a")
        with a:
            wait_linked(a)
            eq(rcpt_code(a, gone), 250, "not suppressed yet")
            a.cli("suppress", "add", gone)
            eq(rcpt_code(a, gone), 550, "suppressed on a")
            b = node("b")
            with b:
                wait_for(lambda: rcpt_code(b, gone) == 550, 10,
                         "b refuses it (learnt at start)")
                a.cli("suppress", "remove", gone)
                wait_for(lambda: rcpt_code(b, gone) == 250, 10,
                         "b lets it through again")
                b.cli("suppress", "add", gone)
                wait_for(lambda: rcpt_code(a, gone) == 550, 10,
                         "a hears of b's add")
                check(gone not in a.log() and gone not in b.log(),
                      "an address in the diagnostics")
        stream = redis.cmd("XRANGE", "outpost:suppress", "-", "+")
        eq(len(stream), 3, "three changes in the stream")
        check(gone not in repr(stream), "the address in Redis in clear")


def test_watchdog_stop_holds_on_every_node():
    """A trap hit on node a stops the relay identity there; node b (no
    trap list of its own) stops it too within a second or so: 451 at MAIL,
    its queued mail of that identity held.  `outpost watchdog release` on
    a lets it go on b as well, held mail included."""
    from watchdog_test import WatchDaemon, held, send
    with Redis() as redis:
        def node(name, extra=""):
            return WatchDaemon(extra=(
                'watchdog {\n  enabled = yes\n%s}\n'
                'cluster {\n  redis = "%s"\n  node = "%s"\n'
                '  nodes = 2\n  lease = 3s\n  timeout = 300ms\n}\n'
                % (extra, redis.addr, name)))
        a = node("a", '  traps = "../traps.txt"\n')
        with open(os.path.join(a.tmp, "traps.txt"), "w") as f:
            f.write("trap@dest.test\n")
        b = node("b")
        with a, b:
            wait_linked(a, b)
            eq(send(b, None, ["x@dest.test", "y@dest.test"]), (2, None),
               "b queues relay mail (no DNS: it waits)")
            eq(send(a, None, ["trap@dest.test", "z@dest.test"])[0], 1,
               "a stops at the trap")
            wait_for(lambda: send(b, None, ["w@dest.test"])[0] == 0, 10,
                     "b refuses the relay identity too")
            check("stopped by another node of the cluster" in b.log(),
                  "b says why")
            # Every relay message b had queued (2, and any the loop above
            # got in before the stop reached b) is held.
            wait_for(lambda: held(b) >= 2 and held(b) == len(b.queue_ids()),
                     10, "b's queued mail held")
            a.cli("watchdog", "release", "relay")
            wait_for(lambda: held(b) == 0, 10, "b's mail released")
            check("released by another node of the cluster" in b.log(),
                  "b says so")
            eq(send(b, None, ["v@dest.test"]), (1, None), "b takes it again")


def password_file(tmp, name, text):
    """A password file only the daemon's user reads (it runs as outpost
    when the tests run as root)."""
    path = os.path.join(tmp, "redis-%s.pass" % name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        import pwd
        try:
            pw = pwd.getpwnam("outpost")
            os.chown(path, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
    return path


def test_password_and_refusal():
    """AUTH with cluster.password_file; a wrong password is Redis away
    (the share), said once, and mail still goes."""
    dns, port = setup("127.0.0.64")
    with Redis(password="s3cret-pw") as redis, dns, \
            Sink(["127.0.0.64"], port, ["--reply-delay-ms", "10"],
                 maildir=False) as sink:
        more = '  password_file = "%s"\n' % password_file(redis.tmp, "good",
                                                         "s3cret-pw")
        with Daemon(config=node_config(dns, port, redis, "a", 2,
                                       more=more)) as good:
            wait_linked(good)
            send(good, "a", 4)
            sink.wait_messages(4, timeout=60)
            wait_empty(good)
            check(metric(good, "outpost_cluster_lease_requests_total"
                         '{result="granted"}') >= 1, "leases granted")
            check("s3cret-pw" not in good.log(), "password in the log")
        more = '  password_file = "%s"\n' % password_file(redis.tmp, "bad",
                                                         "wrong")
        with Daemon(config=node_config(dns, port, redis, "b", 2,
                                       more=more)) as bad:
            wait_for(lambda: "AUTH refused" in bad.log(), 20,
                     "refusal logged")
            send(bad, "b", 4)
            sink.wait_messages(8, timeout=60)
            wait_empty(bad)
            eq(bad.log().count("AUTH refused"), 1, "said once")


if __name__ == "__main__":
    run_tests(globals())
