#!/usr/bin/python3
"""Delivery through the real outpostd: MX lookup at a dnsmasq of our own,
delivery to outpost-sink playing the MX hosts, TLS negotiated (the sink
says so), TLS session resumption, clear-text fallback under tls=may,
deferral under tls=encrypt,
retry after 4xx, 5xx -> DSN to the sender's domain, null MX, implicit MX,
MX fail-over, 8-bit to a 7-bit receiver.  Loopback only."""

import email
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Sink, check, delivery_config,  # noqa
                          eq, free_port_on, run_tests)

MSG = (b"From: News <news@sender.test>\r\nTo: <someone@dest.test>\r\n"
       b"Subject: delivery\r\nMessage-ID: <d1@sender.test>\r\n\r\n"
       b"Hello from Outpost.\r\n.a line with a leading dot\r\n")


def submit(d, rcpts, sender="news@sender.test", msg=MSG):
    s = d.smtp()
    s.sendmail(sender, rcpts, msg)
    s.quit()


def envelope(raw):
    """The sink's X-Sink-Envelope header as a dict."""
    first = raw.split(b"\r\n", 1)[0].decode()
    check(first.startswith("X-Sink-Envelope: "), "envelope header: " + first)
    out = {}
    for part in first[len("X-Sink-Envelope: "):].split(" "):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def wait_queue_empty(d, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not d.queue_ids():
            return
        time.sleep(0.2)
    raise AssertionError("queue not empty: %r" % d.queue_ids())


def test_delivery_over_starttls():
    hosts = ["127.0.0.10"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx1.dest.test", 10)],
              a=[("mx1.dest.test", "127.0.0.10")])
    with dns, Sink(hosts, port, ["--starttls"]) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        submit(d, ["alice@dest.test", "bob@dest.test"])
        sink.wait_messages(1)
        msgs = sink.messages()
        eq(len(msgs), 1, "one transaction for two recipients")
        env = envelope(msgs[0])
        check(env["tls"].startswith("TLSv1."), "TLS used: %r" % env)
        eq(env["to"], "<alice@dest.test>,<bob@dest.test>", "recipients")
        check(b"\r\n.a line with a leading dot\r\n" in msgs[0],
              "dot-stuffing undone correctly by the receiver")
        eq(sink.stats()["tls_connections"] >= 1, True, "sink counted TLS")
        wait_queue_empty(d)


def test_tls_session_resumed():
    """A second connection to the same MX resumes the TLS session of the
    first (one message per connection forces two)."""
    hosts = ["127.0.0.16"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("resume.test", "mx1.resume.test", 10)],
              a=[("mx1.resume.test", "127.0.0.16")])
    cfg = delivery_config(dns, port, '''
destination "*" { max_messages_per_connection = 1  max_connections = 1 }''')
    with dns, Sink(hosts, port, ["--starttls"]) as sink, \
            Daemon(config=cfg) as d:
        submit(d, ["first@resume.test"])
        sink.wait_messages(1)
        submit(d, ["second@resume.test"])
        sink.wait_messages(2)
        st = sink.stats()
        eq(st["tls_connections"], 2, "two TLS connections")
        eq(st["tls_resumed"], 1, "the second resumed the first's session")
        wait_queue_empty(d)


def test_tls_may_falls_back_to_clear_text():
    hosts = ["127.0.0.11"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.11")])
    with dns, Sink(hosts, port, ["--starttls", "--tls-broken=close"]) \
            as sink, Daemon(config=delivery_config(dns, port)) as d:
        submit(d, ["alice@dest.test"])
        sink.wait_messages(1)
        eq(envelope(sink.messages()[0])["tls"], "none", "clear text")
        wait_queue_empty(d)
        check("retrying in clear text (tls=may)" in d.log(),
              "fallback logged")


def test_tls_encrypt_defers():
    hosts = ["127.0.0.12"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.12")])
    cfg = delivery_config(dns, port,
                          'destination "dest.test" { tls = "encrypt" }\n')
    with dns, Sink(hosts, port) as sink, Daemon(config=cfg) as d:
        submit(d, ["alice@dest.test"])
        time.sleep(2)
        eq(sink.stats().get("messages", 0), 0, "nothing sent in clear")
        eq(len(d.queue_ids()), 1, "message deferred, still queued")
        check("STARTTLS not offered" in d.log(), "reason logged")


def test_retry_after_4xx_then_success():
    hosts = ["127.0.0.13"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10)],
              a=[("mx.dest.test", "127.0.0.13")])
    with dns, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        submit(d, ["deferonce-x@dest.test", "plain@dest.test"])
        sink.wait_messages(2, timeout=20)
        msgs = [envelope(m)["to"] for m in sink.messages()]
        eq(msgs, ["<plain@dest.test>", "<deferonce-x@dest.test>"],
           "first the accepted recipient, then the retried one")
        wait_queue_empty(d)


def test_5xx_bounce_dsn_reaches_sender_domain():
    hosts = ["127.0.0.14", "127.0.0.15"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.dest.test", "127.0.0.14"),
                 ("mx.sender.test", "127.0.0.15")])
    with dns, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dns, port),
                   args=os.environ.get("OUTPOST_DARGS", "").split()) as d:
        submit(d, ["reject-jane@dest.test"])
        st = sink.wait_messages(1, timeout=20)
        dsn = sink.messages()[0]
        env = envelope(dsn)
        eq(env["from"], "<>", "DSN has a null sender")
        eq(env["to"], "<news@sender.test>", "DSN to the envelope sender")
        m = email.message_from_bytes(dsn.split(b"\r\n", 1)[1])
        eq(m.get_content_type(), "multipart/report", "DSN type")
        check("delivery-status" in m["Content-Type"], "report-type")
        parts = [p.get_content_type() for p in m.walk()]
        check("message/delivery-status" in parts, "status part: %r" % parts)
        body = dsn.decode("utf-8", "replace")
        check("Status: 5.1.1" in body, "status 5.1.1 in DSN")
        check("Final-Recipient: rfc822; reject-jane@dest.test" in body,
              "final recipient")
        check("Subject: delivery" in body, "original headers included")
        wait_queue_empty(d)
        check(st["rejected_rcpt"] >= 1, "the sink rejected at RCPT")


def test_null_mx_bounces():
    hosts = ["127.0.0.16"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("nullmx.test", ".", 0),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.sender.test", "127.0.0.16")])
    with dns, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        submit(d, ["someone@nullmx.test"])
        sink.wait_messages(1, timeout=20)
        dsn = sink.messages()[0].decode()
        check("Status: 5.1.10" in dsn, "null MX status in DSN")
        wait_queue_empty(d)


def test_implicit_mx_and_failover():
    # implicit.test has no MX, only an A record; failover.test has two MX
    # hosts, the first with nobody listening.
    hosts = ["127.0.0.17", "127.0.0.18"]
    port = free_port_on(hosts + ["127.0.0.19"])
    dns = Dns(mx=[("failover.test", "mx1.failover.test", 10),
                  ("failover.test", "mx2.failover.test", 20)],
              a=[("implicit.test", "127.0.0.17"),
                 ("mx1.failover.test", "127.0.0.19"),
                 ("mx2.failover.test", "127.0.0.18")])
    with dns, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        submit(d, ["a@implicit.test"])
        submit(d, ["b@failover.test"])
        st = sink.wait_messages(2, timeout=20)
        by_listener = {k: v for k, v in st["listeners"].items()} \
            if isinstance(st.get("listeners"), dict) else st["listeners"]
        text = str(by_listener)
        check("127.0.0.17" in text and "127.0.0.18" in text,
              "both hosts received: %s" % text)
        wait_queue_empty(d)


def test_8bit_to_7bit_receiver_bounces():
    hosts = ["127.0.0.20"]
    port = free_port_on(hosts + ["127.0.0.21"])
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.dest.test", "127.0.0.20"),
                 ("mx.sender.test", "127.0.0.21")])
    body = ("From: <news@sender.test>\r\nSubject: caf\u00e9\r\n\r\nCaf\u00e9 cr\u00e8me\r\n").encode()
    with dns, Sink(hosts, port, ["--no-8bitmime"]) as seven, \
            Sink(["127.0.0.21"], port) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        s = d.smtp()
        s.ehlo("client.test")
        s.mail("news@sender.test", ["BODY=8BITMIME"])
        s.rcpt("x@dest.test")
        s.data(body)
        s.quit()
        sink.wait_messages(1, timeout=20)
        dsn = sink.messages()[0].decode("utf-8", "replace")
        check("8BITMIME" in dsn and "Status: 5.6.3" in dsn,
              "DSN gives the reason")
        eq(seven.stats().get("messages", 0), 0, "nothing reached the "
           "7-bit receiver")
        wait_queue_empty(d)


def test_internationalized_domain():
    """SMTPUTF8: the MX of b\u00fccher.test is found by its A-labels and
    the message goes out with SMTPUTF8 to a receiver that offers it."""
    hosts = ["127.0.0.22"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("xn--bcher-kva.test", "mx.xn--bcher-kva.test", 10)],
              a=[("mx.xn--bcher-kva.test", "127.0.0.22")])
    with dns, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dns, port)) as d:
        s = d.smtp()
        s.ehlo("client.test")
        s.mail("news@sender.test", ["SMTPUTF8", "BODY=8BITMIME"])
        eq(s.rcpt("j\u00fcrgen@b\u00fccher.test")[0], 250, "RCPT")
        code, _ = s.data(("From: <news@sender.test>\r\nSubject: idn\r\n"
                          "\r\nGr\u00fc\u00dfe\r\n").encode())
        eq(code, 250, "queued")
        s.quit()
        sink.wait_messages(1, timeout=20)
        env = envelope(sink.messages()[0])
        eq(env.get("smtputf8"), "yes", "SMTPUTF8 used: %r" % env)
        check("b\u00fccher.test".encode() in sink.messages()[0],
              "the U-label address was kept")
        wait_queue_empty(d)


run_tests(globals())
