#!/usr/bin/python3
"""The queue obeys and tells the truth: a change command answers once its
effect is visible to the next read command (hold, release, delete then
summary, list and show at once: exact, over many rounds; bounce then
list, retry then show); an
operator's bounce writes one bounce event per recipient (reason "admin")
and its DSN says an administrator returned the message; `queue retry
--respect-backoff` and `resume --respect-backoff` make messages due but
leave a destination's back-off in force (plain retry tries at once); each
change is in the audit log.  DNS is a dnsmasq of our own, the receivers
outpost-sinks, all on loopback."""

import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backoff_test import cli, events, metrics  # noqa: E402
from cli_test import audit  # noqa: E402
from outpost_test import (SLOW, ControlDaemon, Dns, Sink,  # noqa: E402
                          check, control_raw, delivery_config, eq,
                          free_port_on, pipeline, run_tests, wait_for)


def raw(d, line):
    """One control command; its data lines and its final line."""
    out = control_raw(d, (line + "\n").encode()).splitlines()
    check(out, "%s: no answer" % line)
    return out[:-1], out[-1]


def raw_ok(d, line, count=None):
    _, final = raw(d, line)
    check(final.startswith("ok"), "%s: %s" % (line, final))
    if count is not None:
        eq(final, "ok %d" % count, line)


def summary(d):
    rows, final = raw(d, "summary json")
    check(final.startswith("ok"), "summary: %s" % final)
    return {r["domain"]: r for r in (json.loads(x) for x in rows)
            if "domain" in r}


def queued(rows):
    """Messages the summary's rows count."""
    return sum(r.get("messages", 0) for r in rows.values())


def listed(d, domain=None):
    rows, final = raw(d, "list json" + (" domain " + domain if domain
                                        else ""))
    check(final.startswith("ok"), "list: %s" % final)
    return [json.loads(x)["id"] for x in rows]


def event_time(e):
    """An event's time ("2026-12-05T02:50:00.123Z") in seconds."""
    t = datetime.datetime.strptime(e["time"].rstrip("Z"),
                                   "%Y-%m-%dT%H:%M:%S.%f")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def held_in_place(hosts_by_domain, extra, retry="1h"):
    """DNS: each domain's MX on its host, a port nobody listens on (yet);
    retries RETRY apart."""
    port = free_port_on(sorted(set(hosts_by_domain.values())))
    mx, a = [], []
    for dom, host in sorted(hosts_by_domain.items()):
        mx.append((dom, "mx." + dom, 10))
        a.append(("mx." + dom, host))
    dns = Dns(mx=mx, a=a)
    cfg = delivery_config(dns, port, extra).replace('"1s" }',
                                                    '"%s" }' % retry)
    return dns, port, ControlDaemon(cfg, prefix="outpost-obey-")


ROUNDS = 12


def test_changes_are_visible_when_answered():
    # Nobody listens: every message waits (an hour's retry, an hour's
    # back-off), so only the operator's changes move the counts.
    dns, port, d = held_in_place(
        {"a.test": "127.0.0.61", "b.test": "127.0.0.61"},
        'destination "*" { backoff_pause = 1h backoff_max = 1h }\n')
    na, nb = 150, 40
    with dns, d:
        for rnd in range(ROUNDS):
            pipeline(d, ["a%d@a.test" % i for i in range(na)] +
                     ["b%d@b.test" % i for i in range(nb)])
            wait_for(lambda: (lambda s: s.get("a.test", {}).get(
                "messages") == na and s.get("b.test", {}).get(
                "messages") == nb)(summary(d)), 30, "round %d queued" % rnd)
            # hold: the summary's HELD at once
            raw_ok(d, "hold domain b.test", nb)
            s = summary(d)
            eq(s["b.test"]["held"], nb, "round %d: held after hold" % rnd)
            eq(len(listed(d, "b.test")), nb, "list after hold")
            # delete: gone from summary, list and show at once
            some_a = listed(d, "a.test")[:3]
            raw_ok(d, "delete domain a.test", na)
            s = summary(d)
            # (a paused destination keeps its row, with nothing queued)
            check(s.get("a.test", {}).get("messages", 0) == 0,
                  "round %d: a.test still in the summary after delete: %s"
                  % (rnd, s.get("a.test")))
            eq(queued(s), nb, "round %d: summary after delete" % rnd)
            eq(len(listed(d)), nb, "round %d: list after delete" % rnd)
            for qid in some_a:
                _, final = raw(d, "show " + qid)
                check(final.startswith("err"),
                      "round %d: show %s after delete: %s"
                      % (rnd, qid, final))
            # release: not held at once
            raw_ok(d, "release domain b.test", nb)
            eq(summary(d)["b.test"]["held"], 0, "held after release")
            # delete by id: show fails at once
            ids_b = listed(d, "b.test")
            raw_ok(d, "delete id " + ids_b[0], 1)
            _, final = raw(d, "show " + ids_b[0])
            check(final.startswith("err"), "show after delete id: %s"
                  % final)
            eq(summary(d)["b.test"]["messages"], nb - 1, "after delete id")
            # the CLI too: delete --all, then summary and list
            cli(d, "queue", "delete", "--all")
            rows = [json.loads(x) for x in cli(d, "queue", "summary",
                                                "--json").splitlines()
                    if x.strip()]
            eq(queued({r.get("domain"): r for r in rows}), 0,
               "round %d: summary after delete --all: %s" % (rnd, rows))
            eq(cli(d, "queue", "list", "--json").strip(), "",
               "list after delete --all")
        # Each change on record, with what it did.
        rec = [(a["command"], a["result"]) for a in audit(d)]
        for want in [("hold domain b.test", "ok %d" % nb),
                     ("delete domain a.test", "ok %d" % na),
                     ("release domain b.test", "ok %d" % nb),
                     ("delete all", "ok %d" % (nb - 1))]:
            eq(rec.count(want), ROUNDS, "audit records of %s" % (want,))


def test_changes_wait_for_an_attempt_in_flight():
    # A receiver slow to greet, then deferring: the messages are in the
    # middle of an attempt when the operator acts.  The answer comes once
    # the attempt settled and the change is written.
    hosts = {"slow.test": "127.0.0.67"}
    dns, port, d = held_in_place(hosts, "")
    with dns, d, Sink(["127.0.0.67"], port,
                      ["--greeting-delay-ms", int(1500 * SLOW),
                       "--data-reply", "451 4.3.0 try later"],
                      maildir=False) as sink:
        pipeline(d, ["h@slow.test", "x@slow.test"])
        sink.wait(lambda st: st.get("connections_now", 0) >= 1, 10,
                  "an attempt in flight")
        ids = listed(d, "slow.test")
        eq(len(ids), 2, "queued")
        t0 = time.time()
        raw_ok(d, "hold id " + ids[0], 1)
        eq(summary(d)["slow.test"]["held"], 1, "held once answered")
        raw_ok(d, "delete id " + ids[1], 1)
        check(time.time() - t0 >= 0.3, "answered before the attempt ended")
        eq(listed(d, "slow.test"), [ids[0]], "listed once answered")
        _, final = raw(d, "show " + ids[1])
        check(final.startswith("err"), "show after delete: %s" % final)
        rec = [a for a in audit(d) if a["command"].startswith(("hold",
                                                                 "delete"))]
        eq([(a["command"], a["result"]) for a in rec],
           [("hold id " + ids[0], "ok 1"), ("delete id " + ids[1], "ok 1")],
           "audited")


def test_admin_bounce_dsn_and_events():
    # The senders' domain is reachable (the DSNs go there); the
    # recipients' is not, so the messages wait until bounced.
    hosts = {"sender.test": "127.0.0.62", "gone.test": "127.0.0.63"}
    dns, port, d = held_in_place(
        hosts, 'destination "*" { backoff_pause = 1h backoff_max = 1h }\n')
    with dns, d, Sink(["127.0.0.62"], port) as sink:
        rcpts = ["r%d@gone.test" % i for i in range(5)]
        pipeline(d, rcpts[:3], per_msg=3)
        pipeline(d, rcpts[3:], per_msg=2)
        wait_for(lambda: events(d, "transient_failure"), 30, "an attempt")
        m0 = metrics(d)
        out = cli(d, "queue", "bounce", "--domain", "gone.test")
        check(out.startswith("2 messages bounced"), out)
        # Answered once done: the DSNs are queued (or already sent), the
        # originals gone.
        eq(listed(d, "gone.test"), [], "bounced messages left")
        sink.wait_messages(2, timeout=30)
        for dsn in sink.messages():
            text = dsn.decode("utf-8", "replace")
            low = " ".join(text.lower().split())
            check("returned by the mail system administrator" in low,
                  "DSN says the administrator returned it: %s"
                  % text[:2500])
            check("refused it permanently" not in low and
                  "receiving server" not in low,
                  "DSN blames the receiver: %s" % text[:2500])
            check("Action: failed" in text, "Action: failed")
            check("Status: 5.0.0" in text, "Status: 5.0.0")
            check("Diagnostic-Code:" in text and "administrator" in
                  text.split("Diagnostic-Code:", 1)[1].split("\r\n", 1)[0],
                  "Diagnostic-Code names the administrator: %s"
                  % text[:2500])
        bounces = wait_for(lambda: (lambda e: e if len(e) >= 5 else None)(
            events(d, "bounce")), 10, "5 bounce events")
        eq(len(bounces), 5, "one bounce event per recipient")
        hashes = set()
        for e in bounces:
            eq(e.get("reason"), "admin", "bounce event reason: %s" % e)
            eq(e.get("rcpt_domain"), "gone.test", "rcpt_domain")
            check(e.get("rcpt_hash"), "hashed recipient: %s" % e)
            # Traced as every other event: the message's Message-ID.
            check(e.get("msgid_hash"), "msgid_hash on the event: %s" % e)
            hashes.add(e["rcpt_hash"])
        eq(len(hashes), 5, "distinct recipients")
        with open(d.delivery_log) as f:
            log = f.read()
        for r in rcpts:
            check(r not in log, "address in clear in the delivery log")
        m1 = metrics(d)
        key = 'outpost_deliveries_total{result="bounced"}'
        eq(m1[key] - m0.get(key, 0), 5, "deliveries_total{bounced}")
        rec = [a for a in audit(d) if a["command"].startswith("bounce")]
        check(rec and rec[-1]["command"] == "bounce domain gone.test" and
              rec[-1]["result"] == "ok 2", "audit: %s" % rec)


def test_respect_backoff():
    # Three destinations on three hosts (three sites, three back-offs):
    # an hour between retries, a back-off of PAUSE.
    pause = 8
    hosts = {"gentle.test": "127.0.0.64", "now.test": "127.0.0.65",
             "resume.test": "127.0.0.66"}
    dns, port, d = held_in_place(
        hosts, 'destination "*" { backoff_pause = %ds backoff_max = %ds }\n'
        % (pause, pause))
    with dns, d:
        for dom in hosts:
            pipeline(d, ["x@" + dom])
        t_fail = wait_for(lambda: (lambda e: e if len(e) >= 3 else None)(
            events(d, "transient_failure")), 30, "three attempts")
        t_fail = max(event_time(e) for e in t_fail)
        sinks = {dom: Sink([h], port, maildir=False)
                 for dom, h in hosts.items()}
        for s in sinks.values():
            s.__enter__()
        try:
            out = cli(d, "queue", "retry", "--respect-backoff", "--domain",
                      "gentle.test")
            check(out.startswith("1 message"), out)
            # Due at once, to go when the back-off ends (not in an hour).
            qid = listed(d, "gentle.test")[0]
            r = json.loads(cli(d, "queue", "show", qid, "--json"))
            nxt = r["recipients"][0].get("next_attempt_ms", 0) / 1000.0
            check(nxt <= t_fail + pause + 2, "next attempt %.1f s after "
                  "the failure" % (nxt - t_fail))
            cli(d, "resume", "resume.test", "--respect-backoff")
            cli(d, "queue", "retry", "--domain", "now.test")
            # Plain retry: at once, past the back-off.
            sinks["now.test"].wait_messages(1, timeout=pause - 3)
            # The gentle ones: nothing before the back-off ends...
            while time.time() < t_fail + pause - 1.5:
                for dom in ("gentle.test", "resume.test"):
                    eq(sinks[dom].stats().get("connections_total", 0), 0,
                       "%s: a connection during its back-off" % dom)
                time.sleep(0.1)
            # ...then due, not an hour later.
            for dom in ("gentle.test", "resume.test"):
                sinks[dom].wait_messages(1, timeout=20)
        finally:
            for s in sinks.values():
                s.__exit__(None, None, None)
        cmds = [a["command"] for a in audit(d)]
        check("retry respect-backoff domain gentle.test" in cmds and
              "resume resume.test respect-backoff" in cmds and
              "retry domain now.test" in cmds, "audit: %s" % cmds)


if __name__ == "__main__":
    run_tests(globals())
