#!/usr/bin/python3
"""No open relay: a client that is neither authenticated nor in a relay
network gets 5xx at RCPT for every classic address trick; a client inside a
configured network may relay; address syntax is strict."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import Daemon, Raw, check, eq, run_tests  # noqa: E402

TRICKS = [
    "victim@example.org",
    "victim%example.org@outpost.test",
    "victim%example.org@[127.0.0.1]",
    "example.org!victim",
    "example.org!victim@outpost.test",
    "@outpost.test:victim@example.org",
    "@outpost.test,@relay.test:victim@example.org",
    '"victim@example.org"',
    '"victim@example.org"@outpost.test',
    '"victim%example.org"@outpost.test',
    "victim@example.org@outpost.test",
    "victim",
    "postmaster",
    "victim@[127.0.0.1]",
    "victim@example.org.",
]


def session(port):
    r = Raw(port)
    eq(r.reply()[0], 220, "greeting")
    eq(r.cmd("EHLO client.test")[0], 250, "EHLO")
    return r


def test_outsider_is_refused_for_every_trick():
    # Only 10.0.0.0/8 may relay: a loopback client is an outsider.
    cfg = ('relay { networks = { "10.0.0.0/8" } }\n'
           'limits { max_errors = 100 }\n')
    with Daemon(config=cfg, relay_loopback=False) as d:
        r = session(d.port)
        eq(r.cmd("MAIL FROM:<news@example.com>")[0], 250, "MAIL")
        for addr in TRICKS:
            code, text = r.cmd("RCPT TO:<%s>" % addr)
            check(code is not None and 500 <= code < 600,
                  "RCPT TO:<%s> got %r %r" % (addr, code, text))
        eq(r.cmd("DATA")[0], 554, "DATA without accepted recipients")
        eq(d.queue_ids(), [], "nothing queued")
        check("victim" not in d.log(), "an address reached the log")
        check("relay denied" in d.log(), "relay refusals logged")


def test_network_client_may_relay_but_syntax_is_strict():
    with Daemon(config="limits { max_errors = 100 }") as d:
        r = session(d.port)
        eq(r.cmd("MAIL FROM:<news@example.com>")[0], 250, "MAIL")
        good = ["victim@example.org", '"john doe"@example.org',
                "a.b+tag@sub.example.org"]
        for addr in good:
            eq(r.cmd("RCPT TO:<%s>" % addr)[0], 250, addr)
        bad = {
            "@outpost.test:victim@example.org": "source route",
            "victim@[127.0.0.1]": "address literal",
            "example.org!victim": "no domain",
            '"victim@example.org"': "quoted, no domain",
            "victim": "no domain",
            "a..b@example.org": "double dot",
            ".a@example.org": "leading dot",
            "a@-example.org": "label starts with hyphen",
            "a@example.org.": "trailing dot",
            "a@exa mple.org": "space",
            "x" * 65 + "@example.org": "local part over 64",
            "a@" + "b" * 64 + ".org": "label over 63",
        }
        for addr, why in bad.items():
            code, _ = r.cmd("RCPT TO:<%s>" % addr)
            eq(code // 100, 5, "%s (%s)" % (addr, why))
        eq(r.cmd("RCPT TO:victim@example.org")[0], 501,
           "RCPT without brackets")
        eq(r.cmd("DATA")[0], 354, "DATA")
        r.send("From: <news@example.com>\r\nSubject: ok\r\n\r\nok\r\n.\r\n")
        eq(r.reply()[0], 250, "queued")


run_tests(globals())
