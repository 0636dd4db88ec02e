#!/usr/bin/python3
"""Strict input through the real outpostd: SMTP smuggling sequences, bare
CR/LF, NUL bytes, over-long lines, 10,000 recipients, BDAT framing, the
error limit.  Each smuggling case also checks that the message hidden after
the fake end of data was NOT queued."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import Daemon, Raw, check, eq, run_tests  # noqa: E402


def session(d):
    r = Raw(d.port)
    eq(r.reply()[0], 220, "greeting")
    eq(r.cmd("EHLO client.test")[0], 250, "EHLO")
    return r


def open_data(r):
    eq(r.cmd("MAIL FROM:<news@example.com>")[0], 250, "MAIL")
    eq(r.cmd("RCPT TO:<jane@example.org>")[0], 250, "RCPT")
    eq(r.cmd("DATA")[0], 354, "DATA")


SMUGGLED = ("MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\n"
            "DATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")


def test_smuggling_sequences():
    """`\\n.\\n`, `\\n.\\r\\n`, `\\r.\\r\\n`, `\\r\\n.\\r` inside data: the
    connection is refused with 5xx and closed; nothing is queued."""
    cases = ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r"]
    with Daemon() as d:
        for seq in cases:
            r = session(d)
            open_data(r)
            r.send("Subject: first\r\n\r\nline" + seq + SMUGGLED +
                   ".\r\n")
            code, text = r.reply()
            check(code is not None and 500 <= code < 600,
                  "%r: reply %r %r, want 5xx" % (seq, code, text))
            check(r.closed(), "%r: connection not closed" % seq)
            r.close()
        eq(d.queue_ids(), [], "nothing queued by smuggling attempts")
        check("smtp bare CR or LF in DATA" in d.log(), "logged")


def test_bare_lf_and_cr_in_data():
    with Daemon() as d:
        for body in ("a\nb\r\n", "a\rb\r\n", "only LF\n"):
            r = session(d)
            open_data(r)
            r.send(body + ".\r\n")
            code, _ = r.reply()
            eq(code // 100, 5, "bare CR/LF in %r" % body)
            check(r.closed(), "closed")
        eq(d.queue_ids(), [], "nothing queued")


def test_bdat_bare_lf_is_refused_and_framing_kept():
    with Daemon() as d:
        r = session(d)
        r.cmd("MAIL FROM:<news@example.com>")
        r.cmd("RCPT TO:<jane@example.org>")
        chunk = "Subject: x\r\n\r\nbare\nlf\r\n"
        r.send("BDAT %d LAST\r\n%s" % (len(chunk), chunk))
        code, _ = r.reply()
        eq(code, 550, "BDAT with bare LF")
        # The chunk was consumed exactly: the session is still in sync.
        eq(r.cmd("NOOP")[0], 250, "NOOP after refused BDAT")
        # A BDAT outside a transaction: data consumed, 503.
        r.send("BDAT 5\r\nQUIT\n")
        eq(r.reply()[0], 503, "BDAT without transaction")
        eq(r.cmd("NOOP")[0], 250, "still in sync")
        eq(d.queue_ids(), [], "nothing queued")
        r2 = session(d)
        r2.send("BDAT x\r\n")
        eq(r2.reply()[0], 501, "BDAT syntax error")
        check(r2.closed(), "closed after an unparsable BDAT")


def test_nul_bytes():
    with Daemon() as d:
        r = session(d)
        eq(r.cmd("NOOP\0x")[0], 500, "NUL in a command")
        open_data(r)
        r.send("Subject: nul\r\n\r\na\0b\r\n.\r\n")
        eq(r.reply()[0], 550, "NUL in data")
        eq(r.cmd("NOOP")[0], 250, "session continues")
        eq(d.queue_ids(), [], "nothing queued")


def test_overlong_lines():
    with Daemon() as d:
        r = session(d)
        eq(r.cmd("NOOP " + "x" * 600)[0], 500, "command over 512")
        eq(r.cmd("NOOP")[0], 250, "in sync after a long command")
        open_data(r)
        # Over 998: re-encoded before signing (long_lines = reencode, the
        # default; long_lines_test has the rest), not refused.
        r.send("From: <news@example.com>\r\nSubject: long\r\n\r\n" +
               "y" * 999 + "\r\n.\r\n")
        eq(r.reply()[0], 250, "text line of 999 characters")
        open_data(r)
        r.send("From: <news@example.com>\r\nSubject: ok\r\n\r\n" + "y" * 998 + "\r\n.\r\n")
        eq(r.reply()[0], 250, "text line of 998 characters")
        # A command line that never ends: refused, then the session goes
        # on once a line end comes.
        r.send("NOOP " + "z" * 5000)
        eq(r.reply()[0], 500, "endless line")
        r.send("zzz\r\n")
        eq(r.cmd("NOOP")[0], 250, "in sync again")
        eq(len(d.queue_ids()), 2, "only the valid messages queued")


def test_bare_lf_in_command():
    with Daemon() as d:
        r = session(d)
        r.send("NOOP\n")
        eq(r.reply()[0], 500, "bare LF command")
        eq(r.cmd("NOOP")[0], 250, "CRLF command")


def test_ten_thousand_rcpts():
    """10,000 pipelined RCPTs: the first max_recipients get 250, the rest
    452 4.5.3; the message is queued for the accepted ones; no crash."""
    with Daemon(config="limits { max_recipients = 1000 }") as d:
        r = session(d)
        eq(r.cmd("MAIL FROM:<news@example.com>")[0], 250, "MAIL")
        r.send("".join("RCPT TO:<user%d@example.org>\r\n" % i
                       for i in range(10000)))
        codes = [r.reply()[0] for _ in range(10000)]
        eq(codes.count(250), 1000, "accepted recipients")
        eq(codes.count(452), 9000, "deferred recipients")
        eq(r.cmd("DATA")[0], 354, "DATA")
        r.send("From: <news@example.com>\r\nSubject: many\r\n\r\nhi\r\n.\r\n")
        code, text = r.reply()
        eq(code, 250, "queued")
        qid = text.split()[2]
        import json
        show = json.loads(d.cli("queue", "show", qid, "--json").stdout)
        eq(len(show["recipients"]), 1000, "recipients queued")
    with Daemon(config="limits { max_recipients = 10000 }") as d:
        r = session(d)
        r.cmd("MAIL FROM:<news@example.com>")
        r.send("".join("RCPT TO:<user%d@example.org>\r\n" % i
                       for i in range(10000)))
        codes = [r.reply()[0] for _ in range(10000)]
        eq(codes.count(250), 10000, "all 10,000 accepted")
        r.cmd("DATA")
        r.send("From: <news@example.com>\r\nSubject: many\r\n\r\nhi\r\n.\r\n")
        eq(r.reply()[0], 250, "queued with 10,000 recipients")


def test_error_limit():
    with Daemon(config="limits { max_errors = 3 }") as d:
        r = session(d)
        for _ in range(3):
            eq(r.cmd("BOGUS")[0], 500, "error")
        eq(r.cmd("BOGUS")[0], 500, "fourth error is answered")
        code, _ = r.reply()
        eq(code, 421, "then 421")
        check(r.closed(), "closed after too many errors")


def test_http_on_smtp_port():
    with Daemon() as d:
        r = Raw(d.port)
        r.reply()
        r.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(r.reply()[0], 521, "HTTP request")
        check(r.closed(), "closed")


run_tests(globals())
