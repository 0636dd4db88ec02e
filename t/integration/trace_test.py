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


def send(d, rcpt, headers, mail="", rcpts=None, want_dsn=False):
    """One message to RCPT (or to RCPTS: "<addr> PARAMS" each) with the
    extra HEADERS (text with CRLFs) and MAIL parameters; its queue id."""
    r = Raw(d.port)
    r.reply()
    code, text = r.cmd("EHLO client.test")
    if want_dsn:
        check("250-DSN" in text, "DSN advertised: %s" % text)
    eq(r.cmd(("MAIL FROM:<%s> %s" % (SENDER, mail)).rstrip())[0], 250,
       "MAIL " + mail)
    for rc in rcpts or ["<%s>" % rcpt]:
        eq(r.cmd("RCPT TO:%s" % rc)[0], 250, "RCPT " + rc)
    eq(r.cmd("DATA")[0], 354, "DATA")
    r.send("From: <%s>\r\nSubject: trace\r\n%s\r\nTHE BODY t9z\r\n"
           ".\r\n" % (SENDER, headers))
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


def dsn_session(d, mail, rcpts, headers=""):
    return send(d, None, headers, mail=mail, rcpts=rcpts, want_dsn=True)


def dsns(sink, qid):
    """The DSNs at the sink about queue id QID, as text."""
    out = []
    for m in sink.messages():
        t = m.decode("utf-8", "replace")
        if "X-Outpost-Queue-ID: %s" % qid in t:
            out.append(t)
    return out


def test_dsn_parameters():
    dns, sink, port = setup()
    with dns, sink, Daemon(config=delivery_config(dns, port)) as d:
        # Strict syntax (a session for each: errors are counted).
        def try_cmd(mail_params, rcpt_params=None):
            r = Raw(d.port)
            r.reply()
            r.cmd("EHLO client.test")
            code, _ = r.cmd("MAIL FROM:<%s>%s" % (SENDER, mail_params))
            if rcpt_params is not None:
                eq(code, 250, "MAIL")
                code, _ = r.cmd("RCPT TO:<x@dest.test>%s" % rcpt_params)
            r.cmd("QUIT")
            r.close()
            return code

        for bad, code in ((" ENVID=a+2b", 501), (" ENVID=a=b", 501),
                          (" ENVID=" + "e" * 101, 501), (" ENVID=", 501),
                          (" ENVID=x ENVID=y", 501), (" RET=BOGUS", 501),
                          (" RET=FULL RET=HDRS", 501), (" XYZZY=1", 555),
                          (" ENVID=e+0D+0Ax", 501)):
            eq(try_cmd(bad), code, "MAIL" + bad)
        eq(try_cmd(" ENVID=%s RET=hdrs" % ("e" * 100)), 250, "ENVID of 100")
        for bad, code in ((" NOTIFY=NEVER,SUCCESS", 501), (" NOTIFY=", 501),
                          (" NOTIFY=FAILURE,FAILURE", 501),
                          (" NOTIFY=SOMETIMES", 501), (" ORCPT=rfc822", 501),
                          (" ORCPT=rfc822;a=b@c", 501),
                          (" ORCPT=rfc822;" + "o" * 494, 501),
                          (" NOTIFY=NEVER NOTIFY=NEVER", 555),
                          (" FOO=BAR", 555), ("NOTIFY=NEVER", 501)):
            eq(try_cmd("", bad), code, "RCPT" + bad)
        eq(try_cmd("", " ORCPT=rfc822;" + "o" * 493), 250, "ORCPT of 500")

        # ENVID names the campaign when the header is absent; the failure
        # DSN carries it and the ORCPT; RET=HDRS: headers only.
        a = dsn_session(d, "RET=HDRS ENVID=QQ314159+2Bt7",
                        ["<reject-ann.t9z@dest.test> NOTIFY=FAILURE "
                         "ORCPT=rfc822;orig+2Bann@list.test"])
        # NOTIFY=NEVER: no DSN for that one; RET=FULL: the whole message
        b = dsn_session(d, "RET=FULL",
                        ["<reject-never.t9z@dest.test> NOTIFY=NEVER",
                         "<reject-ben.t9z@dest.test>"])
        # NOTIFY=SUCCESS: a "relayed" report once delivered; none without
        c = dsn_session(d, "ENVID=c1",
                        ["<cy.t9z@dest.test> NOTIFY=SUCCESS,FAILURE",
                         "<dee.t9z@dest.test>"],
                        "X-Campaign-ID: from-header\r\n")
        # every recipient of a, b, c reached, and the 3 DSNs
        sink.wait(lambda st: st.get("messages", 0) >= 1 + 3, timeout=30,
                  what="c delivered and three DSNs")
        wait_for(lambda: not d.queue_ids(), what="queue empty")
        wait_for(lambda: len([x for x in events(d) if x.get("id") == a])
                 >= 2, what="events of a")
        # (Its bounce also puts the recipient on the suppression list: an
        # "admin" event of the daemon's own, with the id, no campaign.)
        evs = [x for x in events(d) if x.get("event") != "admin"]
        for x in of(evs, a):
            eq(x.get("campaign"), "QQ314159+t7", "ENVID as campaign")
        for x in of(evs, c):
            eq(x.get("campaign"), "from-header", "the header first")
        da = dsns(sink, a)
        eq(len(da), 1, "one DSN for a")
        check("\r\nOriginal-Envelope-Id: QQ314159+t7\r\nReporting-MTA:"
              in da[0], "Original-Envelope-Id: %s" % da[0])
        check("\r\nOriginal-Recipient: rfc822;orig+ann@list.test\r\n"
              "Final-Recipient: rfc822; reject-ann.t9z@dest.test\r\n"
              "Action: failed\r\n" in da[0], "Original-Recipient")
        check("text/rfc822-headers" in da[0] and "THE BODY" not in da[0],
              "RET=HDRS: headers only")
        db = dsns(sink, b)
        eq(len(db), 1, "one DSN for b")
        check("reject-ben.t9z@dest.test" in db[0], "ben reported")
        check("reject-never.t9z" not in db[0], "NOTIFY=NEVER: not reported")
        check("Original-Envelope-Id" not in db[0], "no ENVID, no field")
        check("Content-Type: message/rfc822" in db[0] and
              "THE BODY t9z" in db[0], "RET=FULL: the whole message")
        dc = dsns(sink, c)
        eq(len(dc), 1, "one relayed report for c")
        check("Action: relayed\r\nStatus: 2.0.0" in dc[0] and
              "cy.t9z@dest.test" in dc[0] and "dee.t9z" not in dc[0],
              "relayed report of cy only: %s" % dc[0])
        check("Original-Envelope-Id: c1\r\n" in dc[0], "ENVID c1")


def test_expiry_event_and_dsn():
    """A recipient that is always deferred expires: the expiration event
    carries the fields, and its DSN the ENVID; NOTIFY=NEVER silences
    the other's."""
    dns, sink, port = setup()
    conf = delivery_config(dns, port).replace(
        "delivery {", "delivery {\n  max_age = 3s")
    with dns, sink, Daemon(config=conf) as d:
        a = send(d, None, "Message-ID: <20261205.7777.exp@mailer.sender.test>"
                 "\r\nX-Campaign-ID: late\r\n", mail="ENVID=exp1",
                 rcpts=["<defer-eve.t9z@dest.test>",
                        "<defer-fay.t9z@dest.test> NOTIFY=NEVER"])
        wait_for(lambda: len([x for x in events(d) if x.get("id") == a and
                              x["event"] == "expiration"]) == 2,
                 timeout=30, what="both expired, in the log")
        for x in of(events(d), a):
            eq(x.get("msgid"), "<20261205.7777.exp@mailer.sender.test>",
               "msgid on %s" % x["event"])
            eq(x.get("campaign"), "late", "campaign on %s" % x["event"])
        wait_for(lambda: dsns(sink, a), what="the expiry DSN")
        da = dsns(sink, a)
        eq(len(da), 1, "one DSN")
        check("Original-Envelope-Id: exp1\r\n" in da[0] and
              "defer-eve.t9z" in da[0] and "defer-fay.t9z" not in da[0],
              "expiry DSN: ENVID, eve only: %s" % da[0])


if __name__ == "__main__":
    run_tests(globals())
