#!/usr/bin/python3
"""DANE (RFC 7672) through the real outpostd: unbound on a loopback port is
the validating resolver (dns.dnssec), serving zones signed here at test
time with ldns-keygen and ldns-signzone (their DS records are its trust
anchors) and an unsigned one; outpost-sink presents self-signed
certificates that only TLSA records can vouch for.  Cases: TLSA match ->
delivered, verified by DANE; mismatch -> deferred, nothing sent; TLSA in an
unsigned zone (no AD bit) -> as no DANE; a TLSA record whose signature
does not verify (bogus: SERVFAIL) -> deferred; tls = dane-only without a
validated MX -> deferred; DANE before MTA-STS (an enforce policy whose CA
check would refuse the receiver).  unbound refuses every name outside the
test zones and sends nothing off loopback.  Loopback only."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (ControlDaemon, Sink, TestFailure, check,  # noqa
                          delivery_config, delivery_events, end_process, eq,
                          free_port_on, free_udp_port, metrics_text,
                          run_tests, wait_for)
from mta_sts_test import (ENFORCE, PolicyServer, TestCA,  # noqa
                          free_addr_443, need_root)

MSG = (b"From: News <news@sender.test>\r\nTo: <someone@dane.test>\r\n"
       b"Subject: dane\r\nMessage-ID: <d1@sender.test>\r\n\r\n"
       b"Hello over DANE.\r\n")


def cert_sha256(cert):
    """The SHA-256 of CERT's DER (TLSA 2 0 1 data, for a trust anchor)."""
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform",
                          "DER"], check=True, capture_output=True).stdout
    import hashlib
    return hashlib.sha256(der).hexdigest()


def spki_sha256(cert):
    """The SHA-256 of CERT's SubjectPublicKeyInfo (TLSA 3 1 1 data)."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey",
                          "-noout"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                         input=pub, check=True, capture_output=True).stdout
    import hashlib
    return hashlib.sha256(der).hexdigest()


class Unbound:
    """unbound on 127.0.0.1:PORT, a validating resolver for ZONES only.

    zones: {name: (records, signed)}; records are zone-file lines relative
    to the zone ("@ IN MX 10 mx", "mx IN A 127.0.4.1").  A signed zone is
    signed here and its DS made a trust anchor; TAMPER maps a zone to a
    (old, new) text replacement made in the signed file after signing (a
    record whose signature then fails: bogus)."""

    def __init__(self, zones, tamper=None):
        self.tmp = tempfile.mkdtemp(prefix="outpost-unbound-")
        self.zones = zones
        self.tamper = tamper or {}
        self.proc = None
        self.port = None

    def _zone_file(self, name, records):
        path = os.path.join(self.tmp, name + ".zone")
        with open(path, "w") as f:
            f.write("$ORIGIN %s.\n$TTL 60\n" % name)
            f.write("@ IN SOA ns.%s. admin.%s. 1 3600 600 86400 60\n"
                    % (name, name))
            f.write("@ IN NS ns.%s.\nns IN A 127.0.0.1\n" % name)
            for r in records:
                f.write(r + "\n")
        return path

    def _sign(self, name, path):
        def keygen(*extra):
            out = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256"] +
                                 list(extra) + [name], cwd=self.tmp,
                                 check=True, capture_output=True, text=True)
            return out.stdout.strip()
        zsk = keygen()
        ksk = keygen("-k")
        subprocess.run(["ldns-signzone", "-n", path, zsk, ksk],
                       cwd=self.tmp, check=True, capture_output=True)
        signed = path + ".signed"
        if name in self.tamper:
            old, new = self.tamper[name]
            text = open(signed).read()
            check(old in text, "tamper target in the signed zone")
            with open(signed, "w") as f:
                f.write(text.replace(old, new))
        return signed, os.path.join(self.tmp, ksk + ".ds")

    def _conf(self, port):
        lines = ["server:",
                 "  interface: 127.0.0.1", "  port: %d" % port,
                 "  outgoing-interface: 127.0.0.1",
                 "  do-daemonize: no", '  username: ""', '  chroot: ""',
                 '  directory: "%s"' % self.tmp, '  pidfile: ""',
                 "  use-syslog: no",
                 '  logfile: "%s"' % os.path.join(self.tmp, "unbound.log"),
                 "  verbosity: 1", "  val-log-level: 2",
                 '  module-config: "validator iterator"',
                 "  access-control: 127.0.0.0/8 allow",
                 # Nothing outside the test zones: no recursion to the
                 # Internet, ever.
                 '  local-zone: "." refuse']
        auth = []
        for name, (records, signed) in self.zones.items():
            path = self._zone_file(name, records)
            lines.append('  local-zone: "%s." transparent' % name)
            if signed:
                path, ds = self._sign(name, path)
                lines.append('  trust-anchor-file: "%s"' % ds)
            auth += ["auth-zone:", '  name: "%s"' % name,
                     '  zonefile: "%s"' % path, "  for-upstream: yes",
                     "  for-downstream: no"]
        return "\n".join(lines + auth) + "\n"

    def __enter__(self):
        for _ in range(8):
            port = free_udp_port()
            conf = os.path.join(self.tmp, "unbound.conf")
            with open(conf, "w") as f:
                f.write(self._conf(port))
            proc = subprocess.Popen(["unbound", "-d", "-c", conf],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            deadline = time.time() + 10
            while time.time() < deadline and proc.poll() is None:
                if self._answers(port):
                    self.proc, self.port = proc, port
                    return self
                time.sleep(0.05)
            err = proc.stderr.read().decode() if proc.poll() is not None \
                else "no answer"
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if "address already in use" not in err.lower():
                raise TestFailure("unbound failed: %s" % err)
        raise TestFailure("unbound: no free port")

    def _answers(self, port):
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" \
            b"\x00\x00\x02\x00\x01"  # ". NS"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(q, ("127.0.0.1", port))
                return s.recv(512)[:2] == b"\x12\x34"
            except OSError:
                return False

    @property
    def servers(self):
        return "127.0.0.1:%d" % self.port

    def __exit__(self, et, ev, tb):
        if self.proc is not None:
            end_process(self.proc, 10)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def config(ub, port, extra=""):
    """delivery_config without its dnsmasq: unbound, trusted for AD."""
    return ('dns { servers = "%s" timeout = 2s tries = 1 dnssec = true }\n'
            % ub.servers) + delivery_config(None, port, extra)


def submit(d, rcpts):
    s = d.smtp()
    s.sendmail("news@sender.test", rcpts, MSG)
    s.quit()


def mx_zone(addr, tlsa=None, extra=()):
    recs = ["@ IN MX 10 mx", "mx IN A %s" % addr]
    if tlsa is not None:
        recs.append("_%%d._tcp.mx IN TLSA %s" % tlsa)
    return recs + list(extra)


def zones(port, spec):
    """SPEC: {zone: (records with %d for the port, signed)}."""
    return {z: ([r.replace("%d", str(port)) for r in recs], signed)
            for z, (recs, signed) in spec.items()}


def test_dane_match_mismatch_and_insecure():
    """A signed zone whose TLSA (DANE-EE, 3 1 1) matches the receiver's
    self-signed key: delivered, DANE-verified.  One whose TLSA (DANE-TA,
    2 0 1) names the CA of the receiver's chain, the leaf valid for the MX
    host: delivered, verified.  A signed zone whose TLSA does not match:
    deferred, nothing sent.  An unsigned zone whose TLSA does not match:
    not validated, so no DANE: delivered opportunistically."""
    ca = TestCA()
    h_ok, h_bad, h_plain, h_ta = ("127.0.4.10", "127.0.4.11", "127.0.4.12",
                                  "127.0.4.13")
    port = free_port_on([h_ok, h_bad, h_plain, h_ta])
    cert, key = ca.self_signed("mx.good.test")
    good = "3 1 1 " + spki_sha256(cert)
    wrong = "3 1 1 " + "ab" * 32
    ta_leaf, ta_key = ca.leaf("mx.ta.test")
    ta_chain = ta_leaf + ".chain"
    with open(ta_chain, "w") as f:
        f.write(open(ta_leaf).read() + open(ca.cert).read())
    spec = {"good.test": (mx_zone(h_ok, good), True),
            "ta.test": (mx_zone(h_ta, "2 0 1 " + cert_sha256(ca.cert)),
                        True),
            "bad.test": (mx_zone(h_bad, wrong), True),
            "plain.test": (mx_zone(h_plain, wrong), False)}
    tls = ["--starttls", "--cert", cert, "--key", key]
    try:
        with Unbound(zones(port, spec)) as ub, \
                Sink([h_ok], port, tls) as s_ok, \
                Sink([h_bad], port, tls) as s_bad, \
                Sink([h_plain], port, tls) as s_plain, \
                Sink([h_ta], port, ["--starttls", "--cert", ta_chain,
                                    "--key", ta_key]) as s_ta, \
                ControlDaemon(config(ub, port),
                              prefix="outpost-dane-") as d:
            submit(d, ["a@good.test", "b@bad.test", "c@plain.test",
                       "d@ta.test"])
            s_ok.wait_messages(1)
            s_plain.wait_messages(1)
            s_ta.wait_messages(1)
            dl = {e["rcpt_domain"]: e for e in wait_for(
                lambda: len(delivery_events(d, "delivery")) >= 3 and
                delivery_events(d, "delivery"), 10, "three deliveries")}
            e = dl["good.test"]
            eq((e.get("tls_policy"), e.get("tls_result"),
                e.get("tls_verified")), ("dane", "success", True),
               "DANE match: %r" % e)
            e = dl["ta.test"]
            eq((e.get("tls_policy"), e.get("tls_result"),
                e.get("tls_verified")), ("dane", "success", True),
               "DANE-TA match: %r" % e)
            e = dl["plain.test"]
            eq(e.get("tls_policy"), "none", "unsigned: no DANE: %r" % e)
            eq(e.get("tls_verified"), False, "self-signed, unverified")
            t = wait_for(lambda: [x for x in delivery_events(d, "transient_failure")
                                  if x["rcpt_domain"] == "bad.test"], 20,
                         "deferral")[0]
            eq((t.get("tls_policy"), t.get("tls_result")),
               ("dane", "validation-failure"), "DANE mismatch: %r" % t)
            eq(s_bad.stats()["messages"], 0, "nothing sent on a mismatch")
            text = metrics_text(d)
            check('outpost_tls_policy_results_total{policy="dane",'
                  'result="success"} 2' in text, "successes counted")
    finally:
        ca.close()


def test_dane_bogus_and_dane_only():
    """A TLSA record whose signature fails (bogus: the resolver says
    SERVFAIL) defers the mail, never downgrading; tls = dane-only defers
    mail to a domain whose MX is not validated."""
    ca = TestCA()
    h_bogus, h_only = "127.0.4.20", "127.0.4.21"
    port = free_port_on([h_bogus, h_only])
    cert, key = ca.self_signed("mx.bogus.test")
    good = "3 1 1 " + spki_sha256(cert)
    spec = {"bogus.test": (mx_zone(h_bogus, good), True),
            "only.test": (mx_zone(h_only), False)}
    digest = good.split()[-1]
    tamper = {"bogus.test": (digest, "00" * 32)}
    tls = ["--starttls", "--cert", cert, "--key", key]
    try:
        with Unbound(zones(port, spec), tamper) as ub, \
                Sink([h_bogus], port, tls) as s_bogus, \
                Sink([h_only], port, tls) as s_only, \
                ControlDaemon(config(ub, port, 'destination "only.test" '
                                     '{ tls = "dane-only" }\n'),
                              prefix="outpost-dane-") as d:
            submit(d, ["a@bogus.test", "b@only.test"])
            want = {"bogus.test": "dnssec-invalid",
                    "only.test": "dane-required"}

            def got():
                g = {e["rcpt_domain"]: e for e in
                     delivery_events(d, "transient_failure")}
                return g if set(want) <= set(g) else None
            g = wait_for(got, 20, "two deferrals")
            for dom, result in want.items():
                eq((g[dom].get("tls_policy"), g[dom].get("tls_result")),
                   ("dane", result), "%s: %r" % (dom, g[dom]))
            time.sleep(1)
            eq(s_bogus.stats()["connections_total"], 0, "bogus: no connect")
            eq(s_only.stats()["connections_total"], 0, "only: no connect")
            eq(len(d.queue_ids()), 1, "still queued")
    finally:
        ca.close()


def test_dane_before_mta_sts():
    """A domain with both: an MTA-STS enforce policy (whose CA check would
    refuse the receiver's self-signed certificate) and TLSA records that
    match it.  DANE takes precedence: delivered, logged as dane."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    host = "127.0.4.30"
    port = free_port_on([host])
    cert, key = ca.self_signed("mx.both.test")
    good = "3 1 1 " + spki_sha256(cert)
    spec = {"both.test": (mx_zone(host, good, [
        '_mta-sts IN TXT "v=STSv1; id=b1;"',
        "mta-sts IN A %s" % paddr]), True)}
    pcert, pkey = ca.leaf("mta-sts.both.test")
    pol = {"mta-sts.both.test": (200, "text/plain",
                                 ENFORCE % "mx.both.test")}
    try:
        with Unbound(zones(port, spec)) as ub, \
                PolicyServer(paddr, pcert, pkey, pol), \
                Sink([host], port, ["--starttls", "--cert", cert, "--key",
                                    key]) as sink, \
                ControlDaemon(config(ub, port, 'delivery { tls_ca_file = '
                                     '"%s" }\n' % ca.cert),
                              prefix="outpost-dane-") as d:
            submit(d, ["a@both.test"])
            sink.wait_messages(1)
            e = wait_for(lambda: delivery_events(d, "delivery"), 10, "event")[0]
            eq((e.get("tls_policy"), e.get("tls_result")),
               ("dane", "success"), "DANE first: %r" % e)
    finally:
        ca.close()


if __name__ == "__main__":
    run_tests(globals())
