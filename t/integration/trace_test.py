#!/usr/bin/python3
"""Tracing, through the real outpostd: the delivery log's reception,
delivery, deferral and bounce events carry the message's Message-ID (its
keyed hash always, the text itself only when it is machine-made and holds
no address of the message) and its campaign (log.campaign_header);
`outpost log --id MSGID` finds exactly that message's events, with or
without the angle brackets; a hostile campaign header (over-long, folded,
control characters) leaves every line valid JSON.  Loopback only."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Raw, Sink, check,  # noqa: E402
                          delivery_config, eq, free_port_on, run_tests,
                          wait_for)

SENDER = "news.t9z.sender@sender.test"
MSGID = "<20261205023100.4711.k3j@mailer.sender.test>"
# A Message-ID that is the recipient's own address, and one that looks
# like somebody's mailbox: neither may appear in clear.
JANE = "jane.t9z.alpha@dest.test"
MAILBOX_ID = "<john.t9z.smith@example.test>"


def send(d, rcpt, headers, sender=SENDER):
    """One message to RCPT with the extra HEADERS (text with CRLFs); its
    queue id."""
    r = Raw(d.port)
    r.reply()
    r.cmd("EHLO client.test")
    eq(r.cmd("MAIL FROM:<%s>" % sender)[0], 250, "MAIL")
    eq(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250, "RCPT " + rcpt)
    eq(r.cmd("DATA")[0], 354, "DATA")
    r.send("From: <%s>\r\nSubject: trace\r\n%s\r\nbody\r\n.\r\n"
           % (SENDER, headers))
    code, text = r.reply()
    eq(code, 250, "end of data: %s" % text)
    r.cmd("QUIT")
    r.close()
    return text.split()[2]


def events(d):
    with open(os.path.join(d.data, "log", "delivery.log")) as f:
        return [json.loads(line) for line in f]   # each line is JSON


def log_text(d):
    with open(os.path.join(d.data, "log", "delivery.log")) as f:
        return f.read()


def of(evs, qid):
    return [e for e in evs if e.get("id") == qid]


def setup():
    hosts = ["127.0.0.70"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10),
                  ("sender.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.70")])
    return dns, Sink(hosts, port), port


def test_fields_on_every_event_and_log_id():
    dns, sink, port = setup()
    with dns, sink, Daemon(config=delivery_config(dns, port)) as d:
        hdr = "Message-ID: %s\r\nX-Campaign-ID: spring-2026\r\n" % MSGID
        a = send(d, JANE, hdr)
        b = send(d, "reject-bob.t9z.beta@dest.test",
                 "Message-ID: <20261205.0002.bbb@mailer.sender.test>\r\n"
                 "X-Campaign-ID: spring-2026\r\n")
        c = send(d, "deferonce-carol.t9z.gamma@dest.test",
                 "Message-Id:\r\n <20261205.0003.ccc@mailer.sender.test>\r\n"
                 "x-campaign-id:   tenant-7  \r\n")
        e = send(d, JANE, "Message-ID: <%s>\r\n" % JANE)
        f = send(d, JANE, "Message-ID: %s\r\n" % MAILBOX_ID)
        # c's delivery comes after a retry; the log is written within
        # a second of each event
        wait_for(lambda: len([x for x in events(d) if x.get("id") == c])
                 == 3, what="c deferred then delivered, in the log")
        wait_for(lambda: not d.queue_ids(), what="queue empty")
        evs = events(d)
        # a: received and delivered, both with the Message-ID and campaign
        ea = of(evs, a)
        eq(sorted(x["event"] for x in ea), ["delivery", "reception"],
           "events of a")
        for x in ea:
            eq(x.get("msgid"), MSGID, "msgid in %r" % x)
            eq(x.get("campaign"), "spring-2026", "campaign in %r" % x)
            check(len(x.get("msgid_hash", "")) == 32, "hash in %r" % x)
        eq(len({x["msgid_hash"] for x in ea}), 1, "one hash")
        # b: bounced (and its DSN went to the sender's domain)
        eb = [x for x in of(evs, b) if x["event"] == "bounce"]
        eq(len(eb), 1, "bounce of b")
        eq(eb[0].get("msgid"), "<20261205.0002.bbb@mailer.sender.test>",
           "msgid on the bounce")
        eq(eb[0].get("campaign"), "spring-2026", "campaign on the bounce")
        # c: deferred once, then delivered; folded header, trimmed value
        ec = of(evs, c)
        kinds = sorted(x["event"] for x in ec)
        eq(kinds, ["delivery", "reception", "transient_failure"],
           "events of c")
        for x in ec:
            eq(x.get("msgid"), "<20261205.0003.ccc@mailer.sender.test>",
               "msgid in %r" % x)
            eq(x.get("campaign"), "tenant-7", "campaign in %r" % x)
        # e, f: address-like Message-IDs: the hash only
        for q in (e, f):
            ex = of(evs, q)
            check(len(ex) >= 2, "events of %s: %r" % (q, ex))
            for x in ex:
                check("msgid" not in x, "no msgid in clear: %r" % x)
                check(len(x.get("msgid_hash", "")) == 32, "hash: %r" % x)
        text = log_text(d)
        for secret in ("jane.t9z.alpha", "john.t9z.smith", "t9z.smith"):
            check(secret not in text, "%s in the log" % secret)
        # outpost log --id MSGID: exactly a's lines, with or without <>,
        # any case of the domain
        for form in (MSGID, MSGID.strip("<>"),
                     MSGID.replace("mailer.sender.test", "Mailer.Sender.TEST")):
            out = d.cli("log", "--id", form).stdout.splitlines()
            got = [json.loads(line) for line in out]
            eq(sorted(x["event"] for x in got), ["delivery", "reception"],
               "log --id %s" % form)
            check(all(x["id"] == a for x in got), "only a: %r" % got)
        # the hashed ones are found the same way
        got = [json.loads(line) for line in
               d.cli("log", "--id", MAILBOX_ID).stdout.splitlines()]
        check(len(got) >= 2 and all(x["id"] == f for x in got),
              "log --id of a hashed Message-ID: %r" % got)
        # the queue id still works, and combines with --event
        got = d.cli("log", "--id", c, "--event",
                    "transient_failure").stdout.splitlines()
        eq(len(got), 1, "log --id QUEUEID --event")
        eq(d.cli("log", "--id", "<nobody@nowhere.test>").stdout, "",
           "unknown Message-ID: nothing")


def test_hostile_campaign_and_configured_header():
    dns, sink, port = setup()
    conf = delivery_config(dns, port) + \
        'log {\n  campaign_header = "X-Tenant"\n}\n'
    with dns, sink, Daemon(config=conf) as d:
        long_value = "\r\n ".join(["L" * 100] * 30)   # folded, 3 KB
        a = send(d, "ann.t9z@dest.test",
                 "Message-ID: <20261205.0009.aaa@mailer.sender.test>\r\n"
                 "X-Tenant: %s\r\n" % long_value)
        b = send(d, "ben.t9z@dest.test",
                 "X-Tenant: one\r\n two\r\n\tthree\"\\ \r\n"
                 "X-Campaign-ID: not-this-one\r\n")
        c = send(d, "cy.t9z@dest.test", "X-Tenant: ok\x1b[31m\x7f\r\n")
        wait_for(lambda: len([x for x in events(d) if x.get("id") in
                              (a, b, c)]) == 6, what="6 events in the log")
        evs = events(d)   # every line parses as JSON
        for x in of(evs, a):
            v = x.get("campaign", "")
            check(len(v) == 128 and v.startswith("L" * 100 + " L"),
                  "over-long campaign cut to 128: %r" % v)
        for x in of(evs, b):
            # '\' is written \x5c, as the log writes it in every text
            eq(x.get("campaign"), 'one two three"\\x5c',
               "folded campaign, white space runs as one space")
            check("msgid" not in x and "msgid_hash" not in x,
                  "no Message-ID, no field: %r" % x)
        for x in of(evs, c):
            check("campaign" not in x,
                  "control characters: campaign refused: %r" % x)
        eq(len(of(evs, a)) + len(of(evs, b)) + len(of(evs, c)), 6,
           "reception and delivery of each")
        check("not-this-one" not in log_text(d),
              "only the configured header is read")


if __name__ == "__main__":
    run_tests(globals())
