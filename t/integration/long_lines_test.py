#!/usr/bin/python3
"""Long lines through the real outpostd (issue 8, "long lines are accepted
and signed, not refused").  Campaign HTML minified to lines of 1,500 and
100,000 octets, in single-part, multipart, nested, message/rfc822, 8-bit,
already quoted-printable and base64 messages, is submitted with smtplib
(DATA) and BDAT, delivered to outpost-sink through a dnsmasq of our own,
and every delivered message is checked: no line over 998 octets, every MIME
part decodes (python email) to the bytes submitted, parts without a long
line are byte-identical, and the DKIM signatures verify with python3-dkim
(RSA and Ed25519) and Mail::DKIM (RSA).  Refusals: `long_lines = reject`,
a header token that cannot be folded, growth past max_message_size, MIME
nesting past the bound.  Loopback only."""

import email
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Raw, Sink, check, delivery_config,  # noqa
                          eq, run_tests)
from dkim_test import (Verifiers, setup, strip_envelope,  # noqa: E402
                       submit_bdat)

HEAD = (b"From: News <news@sender.test>\r\nTo: <x@dest.test>\r\n"
        b"Date: Sun, 29 Nov 2026 04:00:00 +0000\r\n"
        b"Message-ID: <%s@sender.test>\r\nSubject: %s\r\n")


def html_line(n, seed=b"a"):
    """One minified HTML line of N octets (no CRLF), with '=', '-' (a soft
    line break could otherwise start a line with "--"), tabs, trailing
    spaces and dots that QP must treat with care."""
    unit = (b'<td style="color:#333;padding:0"> --' + seed +
            b' =3D.\tcaf\xc3\xa9 </td>')
    out = (unit * (n // len(unit) + 1))[:n - 2]
    return out + b"  "  # trailing whitespace before the CRLF


def single_7bit(n):
    return HEAD % (b"s7-%d" % n, b"single 7bit") + (
        b"\r\n<html>\r\n" + html_line(n).replace(b"\xc3\xa9", b"e") +
        b"\r\n</html>\r\n")


def single_8bit(n):
    return HEAD % (b"s8-%d" % n, b"single 8bit") + (
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" +
        html_line(n) + b"\r\n.\r\n" + html_line(n // 2, b"z") + b"\r\n")


def qp_line(n):
    """An already quoted-printable line of about N octets, without soft
    breaks: what a careless generator emits."""
    unit = b"caf=C3=A9 --x =3D soft=20 "
    return (unit * (n // len(unit) + 1))[:n].rstrip(b"=")


def single_qp(n):
    return HEAD % (b"sq-%d" % n, b"single QP") + (
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
        qp_line(n) + b"\r\nshort=\r\n line\r\n" + qp_line(n // 3) + b"\r\n")


SHORT = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
         b"Short text, left as it is.\r\n")


def multipart(n):
    b = b"==b1=="
    b64 = b"QUJD" * (n // 4)
    return HEAD % (b"mp-%d" % n, b"multipart") + (
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\n"
        b"preamble\r\n"
        b"--" + b + b"\r\n" + SHORT +
        b"--" + b + b"  \r\n"  # trailing whitespace after a boundary
        b"Content-Type: text/html; charset=utf-8\r\n\r\n" +
        html_line(n) + b"\r\n"
        b"--" + b + b"\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
        qp_line(n) + b"\r\n"
        b"--" + b + b"\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"\r\n"
        b"--" + b + b"--\r\nepilogue\r\n")


def nested(n):
    """mixed > (alternative > (plain, html 8bit), message/rfc822 whose own
    body has a long line), with the final boundary of the outer part
    missing."""
    inner = (b"From: <a@sender.test>\r\nSubject: inner\r\n"
             b"Content-Type: text/html\r\n\r\n" + html_line(n, b"r") +
             b"\r\n")
    return HEAD % (b"nest-%d" % n, b"nested") + (
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed;\r\n boundary=outer\r\n\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=\"in ner\"\r\n"
        b"\r\n--in ner\r\n" + SHORT +
        b"--in ner\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + html_line(n) +
        b"\r\n--in ner--\r\n"
        b"--outer\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + inner)


def long_header(n):
    words = b" ".join(b"word%d" % i for i in range(n // 6))
    return HEAD % (b"hdr-%d" % n, words) + b"\r\nshort body\r\n"


def leaves(raw):
    """[(content type, decoded bytes)] of every non-multipart part."""
    m = email.message_from_bytes(raw)
    out = []
    for part in m.walk():
        if part.is_multipart():
            continue
        out.append((part.get_content_type(), part.get_payload(decode=True)))
    return out


def check_delivered(v, orig, got, what):
    for i, line in enumerate(got.split(b"\r\n")):
        check(len(line) <= 998, "%s: line %d has %d octets"
              % (what, i, len(line)))
    want = leaves(orig)
    have = leaves(got)
    eq(len(have), len(want), what + ": number of parts")
    for (wt, wb), (ht, hb) in zip(want, have):
        eq(ht, wt, what + ": content type")
        check(hb == wb, "%s: %s part decodes to %d octets, want %d "
              "(first difference at %s)" % (what, wt, len(hb or b""),
                                            len(wb or b""),
                                            first_diff(hb or b"", wb or b"")))
    py = v.python(got)
    eq(sorted(a for a, _ in py), ["ed25519-sha256", "rsa-sha256"],
       what + ": two signatures")
    check(all(ok for _, ok in py), "%s: python3-dkim: %r" % (what, py))
    pl = dict(v.perl(got))
    eq(pl.get("rsa-sha256"), "pass", what + ": Mail::DKIM")


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return "%d: %r vs %r" % (i, a[i:i + 20], b[i:i + 20])
    return "end"


def send(d, msg, sender="news@sender.test"):
    """DATA through Raw: (code, text)."""
    r = Raw(d.port, timeout=120)
    r.reply()
    r.cmd("EHLO client.test")
    eq(r.cmd("MAIL FROM:<%s>" % sender)[0], 250, "MAIL")
    eq(r.cmd("RCPT TO:<x@dest.test>")[0], 250, "RCPT")
    eq(r.cmd("DATA")[0], 354, "DATA")
    stuffed = msg.replace(b"\r\n.", b"\r\n..")
    r.send(stuffed + b".\r\n")
    code, text = r.reply()
    eq(r.cmd("NOOP")[0], 250, "session goes on after %d" % code)
    r.close()
    return code, text


def test_long_lines_reencoded_signed_and_verified():
    tmp = tempfile.mkdtemp(prefix="outpost-long-")
    dnsd, hosts, port, conf = setup(tmp)
    msgs = {}
    for n in (1500, 100000):
        msgs["single 7bit %d" % n] = single_7bit(n)
        msgs["single 8bit %d" % n] = single_8bit(n)
        msgs["single QP %d" % n] = single_qp(n)
        msgs["multipart %d" % n] = multipart(n)
        msgs["nested %d" % n] = nested(n)
    msgs["long header"] = long_header(1500)
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, conf)) as d:
        v = Verifiers(dnsd.port, tmp)
        for name, msg in msgs.items():
            code, text = send(d, msg)
            eq(code, 250, "%s: %s" % (name, text))
        submit_bdat(d, msgs["multipart 1500"])
        sink.wait_messages(len(msgs) + 1, timeout=120)
        got = {}
        for raw in sink.messages():
            m = strip_envelope(raw)
            mid = email.message_from_bytes(m)["Message-ID"]
            got.setdefault(mid, []).append(m)
        for name, msg in msgs.items():
            mid = email.message_from_bytes(msg)["Message-ID"]
            check(mid in got, name + ": delivered")
            for m in got[mid]:
                check_delivered(v, msg, m, name)
        eq(len(got[email.message_from_bytes(
            msgs["multipart 1500"])["Message-ID"]]), 2, "BDAT copy too")
        # Untouched parts stay byte-identical; re-encoded ones say so.
        for n in (1500, 100000):
            m = got[email.message_from_bytes(
                msgs["multipart %d" % n])["Message-ID"]][0]
            check(SHORT in m, "the short part is byte-identical")
            check(b"preamble\r\n" in m and b"epilogue\r\n" in m,
                  "preamble and epilogue kept")
            check(b"QUJD" * 19 + b"\r\n" in m,
                  "base64 part re-wrapped, still base64")
            check(b"Content-Transfer-Encoding: quoted-printable" in m,
                  "re-encoded part says quoted-printable")
            check(m.count(b"Content-Transfer-Encoding: quoted-printable")
                  == 2, "exactly two QP parts (no CTE added twice)")
            s = got[email.message_from_bytes(
                msgs["single 7bit %d" % n])["Message-ID"]][0]
            check(b"\r\nContent-Transfer-Encoding: quoted-printable\r\n"
                  in s, "single part: CTE header added")
            check(b"\r\nMIME-Version: 1.0\r\n" in s, "MIME-Version added")
            q = got[email.message_from_bytes(
                msgs["single QP %d" % n])["Message-ID"]][0]
            check(b"=3D3D" not in q, "QP re-wrapped, not encoded twice")
            check(q.count(b"\r\nContent-Transfer-Encoding:") == 1,
                  "one CTE")
            e = got[email.message_from_bytes(
                msgs["single 8bit %d" % n])["Message-ID"]][0]
            check(b"Content-Transfer-Encoding: 8bit" not in e,
                  "8bit CTE replaced")
        h = got[email.message_from_bytes(
            msgs["long header"])["Message-ID"]][0]
        subj = email.message_from_bytes(h)["Subject"]
        want = email.message_from_bytes(msgs["long header"])["Subject"]
        eq(" ".join(subj.split()), " ".join(want.split()),
           "folded Subject unfolds to the original words")


def test_refusals():
    tmp = tempfile.mkdtemp(prefix="outpost-long-")
    dnsd, hosts, port, conf = setup(
        tmp, extra_conf="limits { max_message_size = 64K }\n")
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, conf)) as d:
        # A header token of 1,200 octets cannot be folded.
        code, text = send(d, HEAD % (b"tok", b"x" * 1200) +
                          b"\r\nbody\r\n")
        eq(code, 550, "unfoldable header: " + text)
        check("5.6.0" in text and "header" in text, text)
        # 50,000 '=' fit the limit but grow to 150,000 in QP.
        code, text = send(d, HEAD % (b"big", b"grows") + b"\r\n" +
                          b"=" * 50000 + b"\r\n")
        eq(code, 552, "grown past max_message_size: " + text)
        check("5.3.4" in text, text)
        # Multiparts nested 40 deep, a long line at the bottom.
        body = b""
        for i in range(40):
            body += (b"--b%d\r\nContent-Type: multipart/mixed; "
                     b"boundary=b%d\r\n\r\n" % (i, i + 1))
        body += b"--b40\r\n\r\n" + b"y" * 1500 + b"\r\n"
        code, text = send(d, HEAD % (b"deep", b"deep") +
                          b"MIME-Version: 1.0\r\n"
                          b"Content-Type: multipart/mixed; boundary=b0"
                          b"\r\n\r\n" + body)
        eq(code, 550, "nested too deep: " + text)
        check("5.6.0" in text and "nest" in text, text)
        # Within the limits, accepted.
        code, text = send(d, single_7bit(1500))
        eq(code, 250, "a long line: " + text)
        sink.wait_messages(1, timeout=60)
        eq(len(d.queue_ids()), 0, "only the good one was queued")


def test_reject_mode_keeps_550():
    tmp = tempfile.mkdtemp(prefix="outpost-long-")
    dnsd, hosts, port, conf = setup(
        tmp, extra_conf="limits { long_lines = reject }\n")
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, conf)) as d:
        for msg in (single_7bit(1500), multipart(100000),
                    long_header(1500)):
            code, text = send(d, msg)
            eq(code, 550, "long_lines = reject: " + text)
            check("5.6.0" in text and "998" in text, text)
        code, text = send(d, single_7bit(998))
        eq(code, 250, "998 octets are fine: " + text)
        sink.wait_messages(1, timeout=60)
        eq(sink.stats().get("messages"), 1, "only one delivered")


if __name__ == "__main__":
    run_tests(globals())
