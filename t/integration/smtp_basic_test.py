#!/usr/bin/python3
"""Submission basics through the real outpostd: EHLO, a message with
smtplib (lock-step and pipelined), swaks, BDAT, the 250 reply carrying the
queue id only after commit, and the queue CLI seeing it."""

import json
import os
import re
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Raw, Sink, TestFailure,  # noqa: E402
                          check, dns_ask_a, eq, run_tests)

MSG = ("From: News <news@example.com>\r\nTo: <jane@example.org>\r\n"
       "Subject: hello\r\nMessage-ID: <1@example.com>\r\n\r\n"
       "Hello Jane.\r\n.leading dot line\r\n")
QUEUED = re.compile(r"^2\.0\.0 ([0-9a-f]{16}) queued$")


def test_ehlo_capabilities():
    with Daemon() as d:
        s = d.smtp()
        code, text = s.ehlo("client.test")
        eq(code, 250, "EHLO")
        caps = text.decode().upper().split("\n")[1:]
        for cap in ("PIPELINING", "8BITMIME", "SMTPUTF8", "CHUNKING",
                    "ENHANCEDSTATUSCODES", "STARTTLS"):
            check(cap in caps, "capability %s missing: %r" % (cap, caps))
        check(any(c.startswith("SIZE ") for c in caps), "SIZE missing")
        # AUTH is not offered before TLS (no user configured here either).
        check(not any(c.startswith("AUTH") for c in caps), "AUTH offered")
        s.quit()


def test_smtplib_lockstep_and_queue_show():
    with Daemon() as d:
        s = d.smtp()
        s.ehlo("client.test")
        code, msg = s.mail("news@example.com")
        eq(code, 250, "MAIL")
        eq(s.rcpt("jane@example.org")[0], 250, "RCPT")
        eq(s.rcpt("john@example.net")[0], 250, "RCPT 2")
        code, msg = s.data(MSG.encode())
        eq(code, 250, "end of data")
        m = QUEUED.match(msg.decode())
        check(m, "reply %r is not '2.0.0 <id> queued'" % msg)
        qid = m.group(1)
        s.quit()
        eq(d.queue_ids(), [qid], "queue list")
        show = json.loads(d.cli("queue", "show", qid, "--json").stdout)
        eq(show["id"], qid, "show id")
        out = d.cli("queue", "show", qid).stdout + json.dumps(show)
        # The CLI never prints an address in clear: hash + domain only.
        for secret in ("jane@", "john@", "news@"):
            check(secret not in out, "address in clear in CLI output")
        check("example.org" in out and "example.net" in out,
              "recipient domains missing from queue show")
        eq(d.cli("hash", "jane@example.org").stdout.strip() in out, True,
           "recipient hash in queue show")


def test_pipelined_transactions():
    """Several whole transactions in one write (RFC 2920)."""
    with Daemon() as d:
        r = Raw(d.port)
        eq(r.reply()[0], 220, "greeting")
        eq(r.cmd("EHLO client.test")[0], 250, "EHLO")
        batch = ""
        for i in range(5):
            batch += ("MAIL FROM:<news@example.com>\r\n"
                      "RCPT TO:<r%d@example.org>\r\nDATA\r\n" % i)
            batch += ("From: <news@example.com>\r\nSubject: %d\r\n\r\nbody %d\r\n.\r\n" % (i, i))
        batch += "QUIT\r\n"
        r.send(batch)
        ids = []
        for i in range(5):
            eq(r.reply()[0], 250, "MAIL %d" % i)
            eq(r.reply()[0], 250, "RCPT %d" % i)
            eq(r.reply()[0], 354, "DATA %d" % i)
            code, text = r.reply()
            eq(code, 250, "end of data %d" % i)
            ids.append(QUEUED.match(text[4:]).group(1))
        eq(r.reply()[0], 221, "QUIT")
        eq(len(set(ids)), 5, "distinct queue ids")
        eq(sorted(d.queue_ids()), sorted(ids), "queue list")


def test_swaks_pipelining_and_bdat():
    with Daemon() as d:
        for extra in (["--pipeline"], ["--pipeline", "--data", MSG]):
            r = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(d.port),
                 "--from", "news@example.com", "--to", "jane@example.org",
                 "--helo", "client.test", "--silent", "2"] + extra,
                capture_output=True, text=True, timeout=60)
            eq(r.returncode, 0, "swaks exit (%s)" % r.stdout + r.stderr)
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<news@example.com>")
        r.cmd("RCPT TO:<jane@example.org>")
        part1 = "From: <news@example.com>\r\nSubject: chunked\r\n\r\nfirst "
        part2 = "chunk\r\nsecond line\r\n"
        r.send("BDAT %d\r\n%s" % (len(part1), part1))
        eq(r.reply()[0], 250, "BDAT 1")
        r.send("BDAT %d LAST\r\n%s" % (len(part2), part2))
        code, text = r.reply()
        eq(code, 250, "BDAT LAST")
        check(QUEUED.match(text[4:]), "BDAT LAST reply %r" % text)
        eq(len(d.queue_ids()), 3, "queued messages")


def test_reply_waits_for_commit():
    """A pipelined client gets nothing for the next command before the 250
    of the message (the reply order is the command order)."""
    with Daemon() as d:
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
               "DATA\r\n")
        for want in (250, 250, 354):
            eq(r.reply()[0], want, "reply")
        r.send("From: <a@example.com>\r\n\r\nx\r\n.\r\nNOOP\r\n")
        code, text = r.reply()
        eq(code, 250, "end of data")
        check("queued" in text, "first reply after data is the 250 queued")
        eq(r.reply()[0], 250, "NOOP after")


def test_rset_noop_vrfy_help_unknown():
    with Daemon() as d:
        r = Raw(d.port)
        r.reply()
        eq(r.cmd("MAIL FROM:<a@example.com>")[0], 503, "MAIL before EHLO")
        eq(r.cmd("HELO client.test")[0], 250, "HELO")
        eq(r.cmd("NOOP")[0], 250, "NOOP")
        eq(r.cmd("VRFY root")[0], 252, "VRFY")
        eq(r.cmd("HELP")[0], 214, "HELP")
        eq(r.cmd("FOO bar")[0], 500, "unknown")
        eq(r.cmd("RCPT TO:<a@example.org>")[0], 503, "RCPT before MAIL")
        eq(r.cmd("MAIL FROM:<a@example.com>")[0], 250, "MAIL")
        eq(r.cmd("DATA")[0], 554, "DATA without RCPT")
        eq(r.cmd("RSET")[0], 250, "RSET")
        eq(r.cmd("RCPT TO:<a@example.org>")[0], 503, "RCPT after RSET")
        eq(r.cmd("MAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME")[0], 250,
           "MAIL with params")
        eq(r.cmd("MAIL FROM:<a@example.com>")[0], 503, "nested MAIL")
        eq(r.cmd("QUIT")[0], 221, "QUIT")
        check(r.closed(), "closed after QUIT")


def test_mail_parameters():
    with Daemon(config="limits { max_message_size = \"1M\" }") as d:
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        eq(r.cmd("MAIL FROM:<a@example.com> SIZE=2000000")[0], 552,
           "SIZE over the limit")
        eq(r.cmd("MAIL FROM:<a@example.com> FOO=BAR")[0], 555,
           "unknown parameter")
        eq(r.cmd("MAIL FROM:<a@example.com> BODY=BINARYMIME")[0], 501,
           "BODY=BINARYMIME not offered")
        eq(r.cmd("MAIL FROM:<j\u00f6rg@example.com>")[0], 553,
           "UTF-8 sender without SMTPUTF8")
        eq(r.cmd("MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8")[0], 250,
           "UTF-8 sender with SMTPUTF8")
        eq(r.cmd("RCPT TO:<\u00fcser@\u00e9xample.org>")[0], 250,
           "UTF-8 recipient in an SMTPUTF8 transaction")
        eq(r.cmd("RCPT TO:<a@example.org> XYZZY=1")[0], 555,
           "unknown RCPT parameter (DSN's: trace_test)")
        eq(r.cmd("DATA")[0], 354, "DATA")
        big = ("x" * 900 + "\r\n") * 1300  # about 1.2 MB
        r.send("Subject: big\r\n\r\n" + big + ".\r\n")
        eq(r.reply()[0], 552, "message over max_message_size")
        eq(r.cmd("NOOP")[0], 250, "session goes on")


def test_harness_moves_off_a_port_taken_before_the_bind():
    """The harness picks ports at random; a parallel test can take one
    between the pick and the daemon's bind (outpostd then exits 1 with
    "Address already in use").  start() must pick again, not fail."""
    import socket
    d = Daemon()
    taken = d.port
    with socket.socket() as s:
        s.bind(("127.0.0.1", taken))  # bound, not listening: refuses
        with d:
            check(d.port != taken, "the daemon kept the taken port")
            eq(d.smtp().ehlo("client.test")[0], 250, "EHLO on the new port")
            check("Address already in use" in d.log(),
                  "the first start did not meet the taken port")


def test_harness_dns_is_its_own():
    """Tests build the daemon's config from a Dns before they enter it, and
    a parallel test's dnsmasq may hold the port the Dns picked: the config
    must still name the dnsmasq that answers this test's names, not the
    other one (CI: a DMARC lookup sent to a port whose dnsmasq had gone,
    451 "could not be looked up")."""
    import outpost_test
    # A stranger on the first port the harness will pick: another test's
    # dnsmasq, answering every name with "no such domain".
    other = Dns()
    with other:
        taken = other.port
        picks = [taken]
        real_pick = outpost_test.free_udp_port
        outpost_test.free_udp_port = \
            lambda: picks.pop() if picks else real_pick()
        try:
            dns = Dns(a=[("mx.own.test", "127.0.0.77")])
            servers = dns.servers  # as delivery_config reads it
            with dns:
                port = int(servers.rsplit(":", 1)[1])
                eq(dns_ask_a(port, "mx.own.test"), "127.0.0.77",
                   "the config's DNS server (%s; the stranger is on %d)"
                   % (servers, taken))
                eq(dns.servers, servers, "the Dns moved after the config")
        finally:
            outpost_test.free_udp_port = real_pick


def test_harness_sink_moves_off_a_taken_port():
    """A Sink that picked its own port moves off it when another test
    binds it first, as long as nobody has read the port yet; one whose
    port was read (it is in a config) fails and says why."""
    import socket
    import outpost_test
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        taken = held.getsockname()[1]
        real_pick = outpost_test.free_port_on
        picks = [taken]
        outpost_test.free_port_on = \
            lambda hosts: picks.pop() if picks else real_pick(hosts)
        try:
            with Sink() as sink:
                check(sink.port != taken, "the sink kept the taken port")
                with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
                    eq(c.ehlo("client.test")[0], 250, "EHLO on the sink")
            picks.append(taken)
            sink = Sink()
            eq(sink.port, taken, "the port read")
            try:
                with sink:
                    raise AssertionError("the sink started on a held port")
            except TestFailure as e:
                check("exited at start" in str(e), str(e))
        finally:
            outpost_test.free_port_on = real_pick


def test_port_held_by_another_process_is_refused():
    """The loops' listening sockets set SO_REUSEPORT; a process of the same
    user that holds the port with SO_REUSEPORT too (a second outpostd,
    anything run as root) must not share our connections: outpostd refuses
    to start and says why, and the holder keeps every connection."""
    import socket
    d = Daemon()
    with socket.socket() as s:
        s.settimeout(5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", d.port))
        s.listen(64)
        d.start(wait=False)
        try:
            rc = d.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            d.stop()
        else:
            d.proc = None
            d.logf.close()
        check(rc not in (None, 0), "outpostd started on a held port")
        check("another process listens there" in d.log(),
              "the reason is not in the log: %r" % d.log()[-500:])
        # Nothing of ours answers there: every connection is the holder's.
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=2)
            a, _ = s.accept()
            a.close()
            c.close()


run_tests(globals())
