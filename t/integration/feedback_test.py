#!/usr/bin/python3
"""Feedback loops (ARF, RFC 5965) through the real outpostd.  A campaign
message from an authenticated user goes out to a sink (dnsmasq DNS,
loopback); the delivered copy carries X-Outpost-FB, DKIM-signed (python3-
dkim verifies it, and the signature breaks when the header is altered);
a report built around that copy with Python's email package, sent by an
unauthenticated client to feedback.address on a listener that requires
AUTH, gives a "complaint" event (rcpt_hash equal to `outpost hash`, the
identity, the campaign, the queue id) and the counters; a forged or
missing identifier gives no complaint; malformed reports are counted and
the daemon keeps running; per-client rate and size limits.  Loopback
only."""

import email
import email.policy
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import urllib.request
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, Daemon, Dns, Sink, check, eq,  # noqa
                          delivery_config, free_port_on, passwd_hash,
                          run_tests, wait_for)
from dkim_test import Verifiers, keygen, strip_envelope  # noqa

PASSWORD = "feedback horse battery staple"
FBL = "fbl@outpost.test"
RCPT = "Jane.Doe@dest.test"


def events(d, kind=None):
    path = os.path.join(d.data, "log", "delivery.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        evs = [json.loads(line) for line in f]
    return [e for e in evs if kind is None or e.get("event") == kind]


def metric(d, name, labels=""):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    want = name + ("{%s}" % labels if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[1])
    return None


def setup(tmp, feedback=""):
    key, txt = keygen(tmp, "shop.test", "s1")
    hosts = ["127.0.0.81"]
    port = free_port_on(hosts)
    dnsd = Dns(mx=[("dest.test", "mx.dest.test", 10)],
               a=[("mx.dest.test", "127.0.0.81")],
               txt=[("s1._domainkey.shop.test", txt)])
    conf = ('dkim "shop.test" { selector = "s1" rsa_key = "%s" }\n'
            'user "acme" {\n  password = "%s"\n'
            '  sender_domains = { "shop.test" }\n}\n'
            'feedback {\n  address = "%s"\n%s}\n'
            % (key, passwd_hash(PASSWORD), FBL, feedback))
    return dnsd, hosts, port, conf


def daemon(dnsd, port, conf):
    # "auth" requires AUTH: a report must get through without it.
    return Daemon(config=delivery_config(dnsd, port, conf),
                  listeners=[("main", 'tls = "none"'),
                             ("auth", 'tls = "none"\n'
                              '  auth_without_tls = true\n'
                              '  require_auth = true')])


def send_campaign(d, rcpts=(RCPT,), extra=""):
    s = smtplib.SMTP("127.0.0.1", d.ports["auth"], timeout=30)
    s.ehlo()
    s.login("acme", PASSWORD)
    msg = ("From: Shop <news@shop.test>\r\nTo: %s\r\n"
           "Subject: Spring sale\r\nX-Campaign-ID: spring-sale\r\n%s"
           "Message-ID: <20261205.1234567@shop.test>\r\n\r\n"
           "Buy now.\r\n" % (", ".join(rcpts), extra))
    s.mail("bounce@shop.test")
    for r in rcpts:
        s.rcpt(r)
    code, text = s.data(msg.encode())
    s.quit()
    eq(code, 250, "campaign message: %r" % text)
    return text.decode().split()[1]


def arf_report(returned, agent="Yahoo!-Mail-Feedback/2.0",
               rcpt_to=None):
    """An RFC 5965 report around RETURNED (bytes), with the email package."""
    rep = MIMEMultipart("report", report_type="feedback-report")
    rep["From"] = "fbl@provider.test"
    rep["To"] = FBL
    rep["Subject"] = "Complaint about a message from shop.test"
    rep.attach(MIMEText("This is an email abuse report.\n"))
    fb = MIMEBase("message", "feedback-report")
    fields = "Feedback-Type: abuse\nUser-Agent: %s\nVersion: 1\n" % agent
    if rcpt_to:
        fields += "Original-Rcpt-To: <%s>\n" % rcpt_to
    fb.set_payload(fields)
    rep.attach(fb)
    orig = email.message_from_bytes(returned, policy=email.policy.compat32)
    rep.attach(MIMEMessage(orig))
    return rep.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def submit_report(d, data, port_name="auth"):
    """Send DATA to the feedback address without AUTH; the reply text."""
    s = smtplib.SMTP("127.0.0.1", d.ports[port_name], timeout=30)
    s.ehlo()
    s.mail("fbl-bounces@provider.test")
    code, text = s.rcpt(FBL)
    eq(code, 250, "RCPT to the feedback address: %r" % text)
    code, text = s.data(data)
    s.quit()
    eq(code, 250, "report: %r" % text)
    return text.decode()


def fb_value(m):
    """The X-Outpost-FB field of M (bytes), unfolded."""
    msg = email.message_from_bytes(m, policy=email.policy.compat32)
    v = msg["X-Outpost-FB"]
    return None if v is None else "".join(v.split())


def hash_of(d, addr):
    return d.cli("hash", addr).stdout.strip()


def test_complaint_from_a_returned_copy():
    tmp = tempfile.mkdtemp(prefix="outpost-fbl-")
    dnsd, hosts, port, conf = setup(tmp)
    with dnsd, Sink(hosts, port) as sink, daemon(dnsd, port, conf) as d:
        qid = send_campaign(d)
        sink.wait_messages(1, timeout=60)
        m = strip_envelope(sink.messages()[0])
        v = fb_value(m)
        check(v is not None and v.startswith("v=1;id="),
              "X-Outpost-FB on the delivered copy: %r" % m[:600])
        # Sealed: neither the identity, nor the recipient, nor the
        # campaign in clear.
        for word in ("acme", "jane", "dest.test", "spring"):
            check(word not in v.lower(), "%s in clear in %s" % (word, v))
        # Signed, and covered by the signature.
        ver = Verifiers(dnsd.port, tmp)
        eq([ok for _, ok in ver.python(m)], [True], "python3-dkim")
        sig = email.message_from_bytes(m)["DKIM-Signature"]
        tags = dict(t.split("=", 1) for t in "".join(sig.split()).split(";")
                    if "=" in t)
        h = tags["h"].lower()
        check("x-outpost-fb" in h.split(":"), "h= lists it: " + h)
        bad = m.replace(b"X-Outpost-FB: v=1; id=", b"X-Outpost-FB: v=1; id=A", 1)
        check(bad != m, "altered")
        eq([ok for _, ok in ver.python(bad)], [False],
           "DKIM breaks when X-Outpost-FB is altered")

        # The report, from anyone: no AUTH on a listener that requires it.
        text = submit_report(d, arf_report(m))
        check("(ok)" in text, "reply: " + text)
        wait_for(lambda: events(d, "complaint"), what="complaint event")
        ev = events(d, "complaint")
        eq(len(ev), 1, "complaint events")
        ev = ev[0]
        eq(ev.get("user"), "acme", "identity")
        eq(ev.get("campaign"), "spring-sale", "campaign")
        eq(ev.get("id"), qid, "queue id")
        eq(ev.get("rcpt_hash"), hash_of(d, RCPT), "rcpt_hash = outpost hash")
        eq(ev.get("rcpt_domain"), "dest.test", "rcpt_domain")
        eq(ev.get("feedback_type"), "abuse", "feedback_type")
        eq(ev.get("agent"), "Yahoo!-Mail-Feedback/2.0", "agent")
        with open(os.path.join(d.data, "log", "delivery.log")) as f:
            check("jane" not in f.read().lower(), "address in clear")
        eq(metric(d, "outpost_complaints_total"), 1.0, "complaints")
        eq(metric(d, "outpost_feedback_reports_total", 'result="ok"'), 1.0,
           "ok reports")

        # Forged: one character of the identifier changed.
        forged = m.replace(b"X-Outpost-FB: v=1; id=",
                           b"X-Outpost-FB: v=1; id=A", 1)
        text = submit_report(d, arf_report(forged))
        check("(unverified)" in text, "reply: " + text)
        # None of ours: the header gone (a Feedback-ID proves nothing).
        gone = email.message_from_bytes(m, policy=email.policy.compat32)
        del gone["X-Outpost-FB"]
        text = submit_report(d, arf_report(gone.as_bytes()))
        check("(unknown-message)" in text, "reply: " + text)
        eq(metric(d, "outpost_feedback_reports_total",
                  'result="unverified"'), 1.0, "unverified reports")
        eq(metric(d, "outpost_feedback_reports_total",
                  'result="unknown-message"'), 1.0, "unknown reports")
        eq(len(events(d, "complaint")), 1, "no complaint from them")
        eq(metric(d, "outpost_complaints_total"), 1.0, "complaints")

        # A sender's own X-Outpost-FB (copied from another message, say)
        # is taken out: the delivered copy has ours only.  (Another
        # recipient: the complaint above suppressed RCPT.)
        send_campaign(d, rcpts=("carol@dest.test",), extra="X-Outpost-FB: v=1; id=planted\r\n"
                      "X-Outpost-FB: %s\r\n" % v.replace(";", "; "))
        sink.wait_messages(2, timeout=60)
        m2 = strip_envelope(sink.messages()[1])
        eq(len(email.message_from_bytes(m2).get_all("X-Outpost-FB")), 1,
           "X-Outpost-FB fields: %r" % m2)
        v2 = fb_value(m2)
        check(v2 != v and "planted" not in v2, "ours: " + v2)
        eq([ok for _, ok in ver.python(m2)], [True], "python3-dkim (2)")

        # Mail to another recipient without AUTH is still refused.
        s = smtplib.SMTP("127.0.0.1", d.ports["auth"], timeout=30)
        s.ehlo()
        s.mail("x@provider.test")
        eq(s.rcpt("victim@dest.test")[0], 530, "no relay through FBL")
        s.quit()


def test_malformed_reports_are_counted():
    tmp = tempfile.mkdtemp(prefix="outpost-fbl-")
    dnsd, hosts, port, conf = setup(tmp)
    with dnsd, daemon(dnsd, port, conf) as d:
        bad = [
            b"Subject: not a report\r\n\r\nplease stop\r\n",
            b"Content-Type: multipart/report; report-type=feedback-report;"
            b" boundary=right\r\n\r\n--wrong\r\nContent-Type: "
            b"message/rfc822\r\n\r\nFrom: a@b.test\r\n\r\nx\r\n--wrong--\r\n",
            b"Content-Type: multipart/report; report-type=feedback-report;"
            b" boundary=b\r\n\r\n--b\r\nContent-Type: message/feedback-report"
            b"\r\n\r\nFeedback-Type: abuse\r\n\r\n--b\r\nContent-Type: "
            b"message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"RnJvbTogYUBiLnRlc3QNCg0KeA0K\r\nRnJvb\r\n--b--\r\n",
            b"Subject: x\r\n" + b"X-Long: a\r\n" + b"\tb\r\n" * 5000 +
            b"\r\n\r\n",
        ]
        for data in bad:
            text = submit_report(d, data)
            check("(malformed)" in text, "reply: " + text)
        eq(metric(d, "outpost_feedback_reports_total", 'result="malformed"'),
           float(len(bad)), "malformed reports")
        check(d.proc.poll() is None, "the daemon still runs")
        check("malformed report from 127.0.0.1" in d.log(),
              "logged: " + d.log()[-2000:])
        eq(events(d, "complaint"), [], "no complaint")


def test_limits():
    tmp = tempfile.mkdtemp(prefix="outpost-fbl-")
    dnsd, hosts, port, conf = setup(
        tmp, "  reports_per_minute = 2\n  max_report_size = 16K\n")
    with dnsd, daemon(dnsd, port, conf) as d:
        small = b"Subject: x\r\n\r\ny\r\n"
        submit_report(d, small)
        # Too large: refused after the data, and not parsed.
        s = smtplib.SMTP("127.0.0.1", d.ports["main"], timeout=30)
        s.ehlo()
        s.mail("a@provider.test")
        eq(s.rcpt(FBL)[0], 250, "RCPT")
        code, text = s.data(b"Subject: big\r\n\r\n" +
                            (b"y" * 76 + b"\r\n") * 300)
        eq(code, 552, "over max_report_size: %r" % text)
        # A report travels alone.
        s.mail("a@provider.test")
        eq(s.rcpt("x@dest.test")[0], 250, "relayed recipient (loopback)")
        eq(s.rcpt(FBL)[0], 452, "FBL mixed with another recipient")
        s.rset()
        # Third report in the minute: 450.
        s.mail("a@provider.test")
        code, text = s.rcpt(FBL)
        eq(code, 450, "over reports_per_minute: %r" % text)
        s.quit()
        eq(metric(d, "outpost_feedback_reports_total", 'result="malformed"'),
           1.0, "only the small one was parsed")


def test_complaint_suppresses_the_recipient():
    """A verified complaint puts its recipient on the sending identity's
    suppression list (main.c hands it to suppress_complaint): the next
    RCPT to it from that identity is refused."""
    tmp = tempfile.mkdtemp(prefix="outpost-fbl-")
    dnsd, hosts, port, conf = setup(tmp)
    with dnsd, Sink(hosts, port) as sink, daemon(dnsd, port, conf) as d:
        send_campaign(d)
        sink.wait_messages(1, timeout=60)
        m = strip_envelope(sink.messages()[0])
        submit_report(d, arf_report(m))
        wait_for(lambda: events(d, "complaint"), what="complaint event")
        s = smtplib.SMTP("127.0.0.1", d.ports["auth"], timeout=30)
        s.ehlo()
        s.login("acme", PASSWORD)
        s.mail("bounce@shop.test")

        def refused():
            code, text = s.rcpt(RCPT)
            if code == 250:
                s.rset()
                s.mail("bounce@shop.test")
            return code == 550 and b"suppressed" in text
        wait_for(refused, what="RCPT refused as suppressed")
        s.quit()


def test_complaints_stop_the_sender():
    """Complaints feed the watchdog (main.c hands them to
    watchdog_note_complaint): past complaint_rate the identity is
    stopped, its next MAIL gets 451 4.7.1, and a provider's report still
    gets through (it sends as no identity)."""
    tmp = tempfile.mkdtemp(prefix="outpost-fbl-")
    dnsd, hosts, port, conf = setup(tmp)
    # Every signal but complaints out of reach (ratios cannot exceed 1):
    # all these recipients are new.
    conf += ("watchdog {\n  enabled = yes\n  learning = 0\n"
             "  min_messages = 1\n  complaint_rate = 0.3\n"
             "  new_recipient_share = 1\n  domain_shift = 1\n"
             "  bounce_rate = 1\n  volume_factor = 1000\n}\n")
    others = ("ann@dest.test", "bob@dest.test", "cy@dest.test")
    with dnsd, Sink(hosts, port) as sink, daemon(dnsd, port, conf) as d:
        for r in (RCPT,) + others:
            send_campaign(d, rcpts=(r,))
        sink.wait_messages(4, timeout=60)
        copies = [strip_envelope(x) for x in sink.messages()]
        wait_for(lambda: len(events(d, "delivery")) >= 4,
                 what="four deliveries")
        # One complaint in four deliveries: under 0.3 (and the next MAIL
        # is taken); the second makes it 0.5.
        submit_report(d, arf_report(copies[0]))
        wait_for(lambda: len(events(d, "complaint")) == 1,
                 what="first complaint")
        send_campaign(d, rcpts=("dee@dest.test",))
        submit_report(d, arf_report(copies[1]))
        wait_for(lambda: events(d, "watchdog"), what="watchdog event")
        s = smtplib.SMTP("127.0.0.1", d.ports["auth"], timeout=30)
        s.ehlo()
        s.login("acme", PASSWORD)
        code, text = s.mail("bounce@shop.test")
        s.quit()
        eq(code, 451, "MAIL of a stopped sender: %r" % text)
        check(b"4.7.1" in text, "enhanced status: %r" % text)
        ev = events(d, "watchdog")[0]
        eq(ev.get("user"), "acme", "watchdog event: %r" % ev)
        check("complaint" in json.dumps(ev.get("signals")),
              "the complaint signal: %r" % ev)
        # Reports come from providers, who send as nobody: not stopped.
        text = submit_report(d, arf_report(copies[2]))
        check("(ok)" in text, "report after the stop: " + text)


if __name__ == "__main__":
    run_tests(globals())
