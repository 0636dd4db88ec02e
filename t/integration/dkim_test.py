#!/usr/bin/python3
"""Sign and align through the real outpostd.  Keys are made with `outpost
dkim keygen`, published by a dnsmasq of our own, and every signature that
reaches the sink is checked by two independent verifiers, python3-dkim and
Perl's Mail::DKIM, both asking that dnsmasq for the public keys.  DMARC:
aligned, strict-only misalignment refused, p=none, sp= for subdomains, two
From addresses, no From, policy lookup timeout, hold.  Loopback only."""

import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, SLOW, Daemon, Dns, Raw, Sink,  # noqa
                          TestFailure, check, delivery_config, eq, free_port_on,
                          free_udp_port, run_tests)

import dkim  # python3-dkim
import dns.message
import dns.query
import dns.rdatatype

VERIFY_PL = r'''
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS;
my ($port) = @ARGV;
my $res = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'],
    port => $port, recurse => 0, tcp_timeout => 5, udp_timeout => 5);
Mail::DKIM::DNS::resolver($res);
my $v = Mail::DKIM::Verifier->new();
local $/; my $m = <STDIN>; $m =~ s/\r?\n/\r\n/g;
$v->PRINT($m); $v->CLOSE;
foreach my $s ($v->signatures) {
    printf "%s %s %s\n", $s->algorithm, $s->result, $s->domain;
}
'''


def keygen(tmp, domain, sel, ed=False):
    key = os.path.join(tmp, "%s.%s.key" % (domain, sel))
    txt = os.path.join(tmp, "%s.%s.txt" % (domain, sel))
    args = [OUTPOST, "dkim", "keygen", domain, sel, "--key", key,
            "--txt", txt] + (["--ed25519"] if ed else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    eq(r.returncode, 0, "keygen: " + r.stderr)
    with open(txt) as f:
        return key, f.read().strip()


class Verifiers:
    def __init__(self, dns_port, tmp):
        self.port = dns_port
        self.pl = os.path.join(tmp, "verify.pl")
        with open(self.pl, "w") as f:
            f.write(VERIFY_PL)

    def dnsfunc(self, name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        q = dns.message.make_query(name, dns.rdatatype.TXT)
        r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)
        for rrset in r.answer:
            for rd in rrset:
                return b"".join(rd.strings)
        return None

    def python(self, msg):
        """[(algorithm, ok)] for every DKIM-Signature, python3-dkim."""
        d = dkim.DKIM(msg)
        n = msg.count(b"\nDKIM-Signature:") + \
            (1 if msg.startswith(b"DKIM-Signature:") else 0)
        out = []
        for i in range(n):
            try:
                ok = d.verify(idx=i, dnsfunc=self.dnsfunc)
            except dkim.DKIMException:
                ok = False
            out.append((d.signature_fields.get(b"a", b"?").decode(), ok))
        return out

    def opendkim(self, msg, keys):
        """libopendkim (the reference implementation) on MSG, keys from a
        file of "SELECTOR._domainkey.DOMAIN<TAB>TXT" lines: True if it
        verifies."""
        f = tempfile.NamedTemporaryFile(delete=False)
        f.write(msg)
        f.close()
        r = subprocess.run([ORACLE, "verify", keys, f.name],
                           capture_output=True, text=True, timeout=60)
        os.unlink(f.name)
        return r.stdout.startswith("pass")

    def perl(self, msg):
        r = subprocess.run(["perl", self.pl, str(self.port)], input=msg,
                           capture_output=True, timeout=60)
        eq(r.returncode, 0, "Mail::DKIM: " + r.stderr.decode())
        return [tuple(l.split()[:2]) for l in
                r.stdout.decode().splitlines() if l.strip()]


def strip_envelope(raw):
    return raw.split(b"\r\n", 1)[1]


def only_signature(msg, alg):
    """MSG without the DKIM-Signature fields whose a= is not ALG."""
    lines = msg.split(b"\r\n")
    out, skip = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skip:
            continue
        skip = False
        if line.lower().startswith(b"dkim-signature:"):
            field = [line]
            skip = ("a=" + alg).encode() not in line
        if not skip:
            out.append(line)
    return b"\r\n".join(out)


# libopendkim, the second verifier of Ed25519 signatures: Debian 12's
# Mail::DKIM (1.20230212) has no ed25519-sha256 (it came in 1.20230630).
ORACLE = os.path.join(os.path.dirname(os.environ.get("OUTPOST_BIN", "")),
                      "tests", "dkim_oracle")


def corpus():
    base = (b"From: News <news@sender.test>\r\nTo: <x@dest.test>\r\n"
            b"Date: Sun, 29 Nov 2026 04:00:00 +0000\r\n"
            b"Message-ID: <%s@sender.test>\r\n")
    msgs = {}
    msgs["folded"] = base % b"f" + (
        b"Subject: a folded\r\n  subject  line\r\n\twith tabs\r\n"
        b"X-Long: " + b"v" * 900 + b"\r\n"
        b"List-Unsubscribe: <mailto:u@sender.test>,\r\n"
        b" <https://sender.test/u>\r\n\r\nbody\r\n")
    msgs["utf8"] = base % b"u" + (
        "Subject: caf\u00e9\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Gr\u00fc\u00dfe, cr\u00e8me br\u00fbl\u00e9e \u2603\r\n"
        .encode())
    msgs["empty"] = base % b"e" + b"Subject: empty body\r\n\r\n"
    msgs["trailing"] = base % b"t" + (
        b"Subject: trailing   \r\n\r\nline with spaces   \r\n\t\r\n"
        b"\r\n\r\n\r\n")
    msgs["dotline"] = base % b"d" + b"Subject: dot\r\n\r\n.\r\n"
    msgs["dots"] = base % b"dd" + (
        b"Subject: dots\r\n\r\n.leading\r\n..two\r\n. \r\n")
    msgs["crlf"] = base % b"c" + (
        b"Subject: crlf\r\n\r\n" + b"x y  z\r\n" * 40)
    big = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n") * 140000
    msgs["10MB"] = base % b"big" + b"Subject: big\r\n\r\n" + big
    return msgs


def submit_data(d, msg, sender="news@sender.test"):
    s = d.smtp(timeout=120)
    s.sendmail(sender, ["x@dest.test"], msg)
    s.quit()


def submit_bdat(d, msg, sender="news@sender.test"):
    r = Raw(d.port, timeout=60)
    r.reply()
    r.cmd("EHLO client.test")
    eq(r.cmd("MAIL FROM:<%s>" % sender)[0], 250, "MAIL")
    eq(r.cmd("RCPT TO:<x@dest.test>")[0], 250, "RCPT")
    half = len(msg) // 2
    r.send(b"BDAT %d\r\n" % half + msg[:half])
    eq(r.reply()[0], 250, "BDAT 1")
    r.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
    code, text = r.reply()
    eq(code, 250, "BDAT LAST: " + text)
    r.close()


def setup(tmp, extra_txt=(), extra_conf=""):
    rsa, rsa_txt = keygen(tmp, "sender.test", "s1")
    ed, ed_txt = keygen(tmp, "sender.test", "e1", ed=True)
    org, org_txt = keygen(tmp, "org.test", "o1")
    hosts = ["127.0.0.50"]
    port = free_port_on(hosts)
    dnsd = Dns(mx=[("dest.test", "mx.dest.test", 10)],
               a=[("mx.dest.test", "127.0.0.50")],
               txt=[("s1._domainkey.sender.test", rsa_txt),
                    ("e1._domainkey.sender.test", ed_txt),
                    ("o1._domainkey.org.test", org_txt),
                    ("_dmarc.sender.test", "v=DMARC1; p=reject"),
                    ("_dmarc.org.test", "v=DMARC1; p=reject; adkim=s"),
                    ("_dmarc.loose.test", "v=DMARC1; p=none"),
                    ("_dmarc.parent.test",
                     "v=DMARC1; p=none; sp=reject")] + list(extra_txt))
    conf = ('dkim "sender.test" {\n  selector = "s1"\n  rsa_key = "%s"\n'
            '  ed25519_selector = "e1"\n  ed25519_key = "%s"\n}\n'
            'dkim "org.test" { selector = "o1" rsa_key = "%s" }\n'
            % (rsa, ed, org)) + extra_conf
    return dnsd, hosts, port, conf


def test_signatures_verify_with_two_verifiers():
    tmp = tempfile.mkdtemp(prefix="outpost-dkim-")
    dnsd, hosts, port, conf = setup(tmp)
    keys = os.path.join(tmp, "keys.txt")
    with open(keys, "w") as f:
        for name, txt in dnsd.spec[2]:
            if "_domainkey" in name:
                f.write("%s\t%s\n" % (name, txt))
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, conf)) as d:
        v = Verifiers(dnsd.port, tmp)
        msgs = corpus()
        n = 0
        for name, msg in msgs.items():
            submit_data(d, msg)
            n += 1
            if name in ("folded", "utf8", "trailing", "dotline"):
                submit_bdat(d, msg)
                n += 1
        sink.wait_messages(n, timeout=120)
        for raw in sink.messages():
            m = strip_envelope(raw)
            py = v.python(m)
            eq(sorted(a for a, _ in py), ["ed25519-sha256", "rsa-sha256"],
               "two signatures")
            check(all(ok for _, ok in py),
                  "python3-dkim: %r for %r" % (py, m[:300]))
            # Mail::DKIM checks the RSA signature (it has no Ed25519 in
            # Debian 12), libopendkim each one alone.
            pl = dict(v.perl(m))
            eq(pl.get("rsa-sha256"), "pass", "Mail::DKIM for %r" % m[:200])
            for alg in ("rsa-sha256", "ed25519-sha256"):
                one = only_signature(m, alg)
                eq(one.count(b"DKIM-Signature:"), 1, "one signature left")
                check(v.opendkim(one, keys), "libopendkim: %s for %r"
                      % (alg, m[:200]))
            check(b"h=From:" in m or b"h=from:" in m.lower(),
                  "From is signed")
        # The verifiers can fail: change one body byte, add a From.
        m = strip_envelope(sink.messages()[0])
        bad = m.replace(b"body\r\n", b"b0dy\r\n")
        check(bad != m, "tampering changed the message")
        check(not any(ok for _, ok in v.python(bad)),
              "python3-dkim accepted a modified body")
        check(all(r != "pass" for _, r in v.perl(bad)),
              "Mail::DKIM accepted a modified body")
        for alg in ("rsa-sha256", "ed25519-sha256"):
            check(not v.opendkim(only_signature(bad, alg), keys),
                  "libopendkim accepted a modified body (%s)" % alg)
        second_from = m.replace(b"\r\n\r\n",
                                b"\r\nFrom: evil@attacker.test\r\n\r\n", 1)
        check(all(r != "pass" for _, r in v.perl(second_from)),
              "a second From was not caught (over-signing)")


def expect(d, sender, from_hdr, want, what, extra_hdr=b""):
    msg = b""
    if from_hdr is not None:
        msg += b"From: " + from_hdr.encode() + b"\r\n"
    msg += extra_hdr + b"Subject: dmarc\r\n\r\nbody\r\n"
    r = Raw(d.port, timeout=30)
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<%s>" % sender)
    r.cmd("RCPT TO:<x@dest.test>")
    eq(r.cmd("DATA")[0], 354, "DATA")
    r.send(msg + b".\r\n")
    code, text = r.reply()
    r.close()
    eq(code, want, "%s: %s" % (what, text))
    return text


def test_dmarc_alignment_decisions():
    tmp = tempfile.mkdtemp(prefix="outpost-dmarc-")
    dnsd, hosts, port, conf = setup(tmp)
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, conf)) as d:
        expect(d, "bounce@esp.test", "<news@sender.test>", 250,
               "aligned by DKIM (d=sender.test)")
        text = expect(d, "bounce@esp.test", "<a@mail.org.test>", 550,
                      "relaxed-only alignment under adkim=s")
        check("DMARC" in text and "adkim=s" in text, "reason: " + text)
        expect(d, "bounce@esp.test", "<a@loose.test>", 250,
               "misaligned but p=none")
        expect(d, "bounce@esp.test", "<a@sub.parent.test>", 550,
               "subdomain: sp=reject")
        expect(d, "bounce@esp.test", "<a@parent.test>", 250,
               "organizational domain itself: p=none")
        expect(d, "a@unknown.test", "<b@unknown.test>", 250,
               "no record, SPF-aligned")
        expect(d, "a@sender.test", "<a@sender.test>, <b@sender.test>",
               550, "two From addresses")
        expect(d, "a@sender.test", None, 550, "no From")
        expect(d, "a@sender.test", "<a@sender.test>", 550,
               "two From fields", extra_hdr=b"From: <b@sender.test>\r\n")
        sink.wait_messages(4, timeout=30)
        check("dmarc: refused mail From mail.org.test" in d.log(),
              "refusal logged with the domain only")


def test_dmarc_hold_action():
    tmp = tempfile.mkdtemp(prefix="outpost-dmarc-")
    dnsd, hosts, port, conf = setup(
        tmp, extra_conf='dmarc { action = "hold" }\n')
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, conf)) as d:
        text = expect(d, "bounce@esp.test", "<a@sub.parent.test>", 250,
                      "held instead of refused")
        check("held" in text, "the reply says held: " + text)
        time.sleep(1.5 * SLOW)
        eq(sink.stats().get("messages", 0), 0, "held: not delivered")
        eq(len(d.queue_ids()), 1, "held in the queue")


def test_policy_lookup_timeout_is_451():
    tmp = tempfile.mkdtemp(prefix="outpost-dmarc-")
    # A DNS "server" that never answers.
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.1", free_udp_port()))
    key, _ = keygen(tmp, "signed.test", "s1")
    cfg = ('dns { servers = "127.0.0.1:%d" timeout = 1s tries = 1 }\n'
           'dkim "signed.test" { selector = "s1" rsa_key = "%s" }\n'
           % (mute.getsockname()[1], key))
    with Daemon(config=cfg) as d:
        t0 = time.time()
        text = expect(d, "bounce@esp.test", "<a@elsewhere.test>", 451,
                      "policy lookup timed out")
        check("4.4.3" in text, text)
        check(time.time() - t0 < 20 * SLOW, "answered in time")
        # Signed by the From domain itself (DKIM identical): the policy
        # is not needed, accepted.
        expect(d, "a@elsewhere.test", "<b@signed.test>", 250,
               "DKIM-aligned, no lookup needed")
        # The same envelope domain is no proof: SPF unknown (no source
        # address to evaluate), so the policy is needed, and cannot be
        # had.
        expect(d, "a@elsewhere.test", "<b@elsewhere.test>", 451,
               "envelope domain alone, policy unknown")
    mute.close()


def test_two_from_addresses_reply_cites_once():
    """A From holding two addresses is refused with one RFC citation, not
    the same one twice (smtplib, the reply text as a client sees it)."""
    with Daemon() as d:
        s = d.smtp()
        try:
            s.sendmail("a@sender.test", ["x@dest.test"],
                       b"From: <a@sender.test>, <b@sender.test>\r\n"
                       b"Subject: two authors\r\n\r\nbody\r\n")
            raise TestFailure("accepted")
        except smtplib.SMTPDataError as e:
            eq(e.smtp_code, 550, "code")
            text = e.smtp_error.decode()
        s.quit()
        check("2 addresses" in text, "reason given: " + text)
        eq(text.count("RFC 7489 6.6.1"), 1, "citations of 6.6.1 in " + text)
        eq(text.count("RFC 5322 3.6.2"), 1, "citations of 3.6.2 in " + text)

if __name__ == "__main__":
    run_tests(globals())
