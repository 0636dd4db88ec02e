#!/usr/bin/python3
"""MTA-STS (RFC 8461) through the real outpostd: the policy's TXT record at
a dnsmasq of our own, the policy file served over HTTPS by a server of our
own on 127.x.y.z:443 (a test CA made here signs its certificate and the
receivers'), receivers (outpost-sink) presenting matching, mismatching and
untrusted certificates or no STARTTLS.  Cases: enforce + good certificate
-> delivered, verified; enforce + an untrusted or mismatched certificate,
or no STARTTLS -> deferred, nothing sent; enforce + an MX host the policy
does not name -> never connected; testing -> delivered and reported; a
policy that cannot be fetched, or is invalid, or is served with a
certificate we do not trust -> delivered without it, counted; the cache
survives a restart with the policy server gone; a new id is fetched again.
Loopback only (the daemon refuses any other address)."""

import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (ControlDaemon, Dns, Sink, check,  # noqa
                          delivery_config, delivery_events, eq, free_port_on,
                          metrics_text, run_tests, wait_for)

MSG = (b"From: News <news@sender.test>\r\nTo: <someone@sts.test>\r\n"
       b"Subject: mta-sts\r\nMessage-ID: <s1@sender.test>\r\n\r\n"
       b"Hello over a policy.\r\n")

ENFORCE = ("version: STSv1\r\nmode: enforce\r\nmx: %s\r\n"
           "max_age: 86400\r\n")
TESTING = ("version: STSv1\r\nmode: testing\r\nmx: %s\r\n"
           "max_age: 86400\r\n")


class TestCA:
    """A certificate authority made for one test, and leaves it signs.
    Everything in a directory the daemon's user may read."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="outpost-ca-")
        os.chmod(self.dir, 0o755)
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                  "/CN=Outpost Test CA", "-days", "2", "-keyout", self.key,
                  "-out", self.cert, "-addext",
                  "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign")
        os.chmod(self.cert, 0o644)

    def _run(self, *args):
        subprocess.run(["openssl"] + list(args), check=True,
                       capture_output=True)

    def leaf(self, name, *alt):
        """(cert, key) for NAME (and ALT names), signed by this CA."""
        base = os.path.join(self.dir, name)
        key, csr, crt = base + ".key", base + ".csr", base + ".pem"
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % ",".join(
                "DNS:" + n for n in (name,) + alt))
        self._run("req", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                  "/CN=" + name, "-keyout", key, "-out", csr)
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey",
                  self.key, "-CAcreateserial", "-days", "2", "-out", crt,
                  "-extfile", ext)
        os.chmod(key, 0o644)
        os.chmod(crt, 0o644)
        return crt, key

    def self_signed(self, name):
        """(cert, key) for NAME that no CA vouches for."""
        base = os.path.join(self.dir, "self-" + name)
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                  "/CN=" + name, "-addext", "subjectAltName=DNS:" + name,
                  "-days", "2", "-keyout", base + ".key", "-out",
                  base + ".pem")
        return base + ".pem", base + ".key"

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def free_addr_443():
    """A loopback address (127.x.y.z, off the 127.0.0.x the other tests
    use) whose port 443 is free: the policy host's."""
    for _ in range(100):
        addr = "127.%d.%d.%d" % (random.randint(100, 250),
                                 random.randint(0, 255),
                                 random.randint(2, 250))
        with socket.socket() as s:
            try:
                s.bind((addr, 443))
                return addr
            except OSError:
                continue
    raise AssertionError("no loopback address with 443 free")


class PolicyServer:
    """HTTPS on ADDR:443.  POLICIES maps a host name ("mta-sts.x.test") to
    (status, content type, body); every request is counted by host.  A
    POST (a TLS report) is kept in POSTS as (host, path, content type,
    body) and answered 201."""

    def __init__(self, addr, cert, key, policies):
        self.addr = addr
        self.policies = policies
        self.hits = {}
        self.posts = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                server.posts.append(
                    ((self.headers.get("Host") or "").split(":")[0],
                     self.path, self.headers.get("Content-Type"), body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                server.hits[host] = server.hits.get(host, 0) + 1
                if self.path != "/.well-known/mta-sts.txt" or \
                        host not in server.policies:
                    self.send_response(404)
                    self.end_headers()
                    return
                status, ctype, body = server.policies[host]
                body = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((addr, 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket,
                                            server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __exit__(self, et, ev, tb):
        self.stop()
        return False


def metric(d, line_start):
    for line in metrics_text(d).splitlines():
        if line.startswith(line_start):
            return float(line.rpartition(" ")[2])
    raise AssertionError("no metric " + line_start)


def submit(d, rcpts, msg=MSG):
    s = d.smtp()
    s.sendmail("news@sender.test", rcpts, msg)
    s.quit()


def need_root():
    if os.geteuid() != 0:
        print("# skipped: binding the policy host's port 443 needs root")
        return False
    return True


def setup(ca, domains, policy_addr):
    """DNS for DOMAINS: each (domain, mx host, mx addr, txt or None)."""
    mx, a, txt = [], [("mta-sts." + d, policy_addr) for d, _, _, _ in
                      domains], []
    for dom, host, addr, rec in domains:
        mx.append((dom, host, 10))
        a.append((host, addr))
        if rec is not None:
            txt.append(("_mta-sts." + dom, rec))
    return Dns(mx=mx, a=a, txt=txt)


def config(dns, port, ca, extra=""):
    return delivery_config(dns, port, 'delivery { tls_ca_file = "%s" }\n'
                           % ca.cert + extra)


def test_enforce_delivers_over_verified_tls():
    """enforce + a certificate the CA signed for the MX host: delivered
    over TLS, the log line says mta-sts, enforce, success."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    hosts = ["127.0.3.10"]
    port = free_port_on(hosts)
    dns = setup(ca, [("sts.test", "mx.sts.test", hosts[0],
                      "v=STSv1; id=20261206a;")], paddr)
    pcert, pkey = ca.leaf("mta-sts.sts.test")
    mcert, mkey = ca.leaf("mx.sts.test")
    pol = {"mta-sts.sts.test": (200, "text/plain",
                                ENFORCE % "mx.sts.test")}
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol) as ps, \
                Sink(hosts, port, ["--starttls", "--cert", mcert, "--key",
                                   mkey]) as sink, \
                ControlDaemon(config(dns, port, ca),
                              prefix="outpost-sts-") as d:
            submit(d, ["alice@sts.test"])
            sink.wait_messages(1)
            check(b" tls=TLSv1." in sink.messages()[0].split(b"\r\n")[0],
                  "delivered over TLS")
            ev = wait_for(lambda: delivery_events(d, "delivery"), 10,
                          "delivery event")[0]
            eq(ev.get("tls_policy"), "mta-sts", "policy logged: %r" % ev)
            eq(ev.get("tls_policy_mode"), "enforce", "mode logged")
            eq(ev.get("tls_result"), "success", "result logged")
            eq(ev.get("tls_verified"), True, "verified")
            eq(ps.hits.get("mta-sts.sts.test"), 1, "policy fetched once")
            eq(metric(d, 'outpost_mta_sts_fetches_total{result="ok"}'), 1,
               "fetch counted")
            eq(metric(d, 'outpost_tls_policy_results_total{policy="mta-sts"'
                      ',mode="enforce",result="success"}'), 1,
               "result counted")
            # A second message: the cached policy, no second fetch.
            submit(d, ["bob@sts.test"])
            sink.wait_messages(2)
            eq(ps.hits.get("mta-sts.sts.test"), 1, "served from cache")
    finally:
        ca.close()


def test_enforce_defers_bad_tls():
    """enforce: an untrusted certificate, one for another name, and no
    STARTTLS each defer the message; nothing reaches those receivers; the
    log says why in RFC 8460's words.  The same receivers without a policy
    get their mail (tls=may), so the policy is what held it back."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    h_untrusted, h_mismatch, h_plain, h_nopol = (
        "127.0.3.21", "127.0.3.22", "127.0.3.23", "127.0.3.24")
    hosts = [h_untrusted, h_mismatch, h_plain, h_nopol]
    port = free_port_on(hosts)
    txt = "v=STSv1; id=1;"
    dns = setup(ca, [
        ("untrusted.test", "mx.untrusted.test", h_untrusted, txt),
        ("mismatch.test", "mx.mismatch.test", h_mismatch, txt),
        ("plain.test", "mx.plain.test", h_plain, txt),
        ("nopolicy.test", "mx.nopolicy.test", h_nopol, None)], paddr)
    pcert, pkey = ca.leaf("mta-sts.untrusted.test", "mta-sts.mismatch.test",
                          "mta-sts.plain.test")
    pol = {"mta-sts.%s.test" % n: (200, "text/plain; charset=utf-8",
                                   ENFORCE % ("mx.%s.test" % n))
           for n in ("untrusted", "mismatch", "plain")}
    selfc, selfk = ca.self_signed("mx.untrusted.test")
    wrongc, wrongk = ca.leaf("mx.elsewhere.test")
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol), \
                Sink([h_untrusted], port, ["--starttls", "--cert", selfc,
                                           "--key", selfk]) as s1, \
                Sink([h_mismatch], port, ["--starttls", "--cert", wrongc,
                                          "--key", wrongk]) as s2, \
                Sink([h_plain], port) as s3, \
                Sink([h_nopol], port, ["--starttls", "--cert", selfc,
                                       "--key", selfk]) as s4, \
                ControlDaemon(config(dns, port, ca),
                              prefix="outpost-sts-") as d:
            submit(d, ["a@untrusted.test", "b@mismatch.test",
                       "c@plain.test", "d@nopolicy.test"])
            s4.wait_messages(1)
            want = {"untrusted.test": "certificate-not-trusted",
                    "mismatch.test": "certificate-host-mismatch",
                    "plain.test": "starttls-not-supported"}

            def deferred():
                got = {}
                for e in delivery_events(d, "transient_failure"):
                    got[e.get("rcpt_domain")] = e
                return got if set(want) <= set(got) else None
            got = wait_for(deferred, 20, "three deferrals")
            for dom, result in want.items():
                e = got[dom]
                eq((e.get("tls_policy"), e.get("tls_policy_mode"),
                    e.get("tls_result")), ("mta-sts", "enforce", result),
                   "%s: %r" % (dom, e))
            for s in (s1, s2, s3):
                eq(s.stats().get("messages", 0), 0, "nothing sent there")
            eq(len(d.queue_ids()), 1, "the message waits for three")
            nop = [e for e in delivery_events(d, "delivery")
                   if e.get("rcpt_domain") == "nopolicy.test"][0]
            eq(nop.get("tls_policy"), "none", "no policy: %r" % nop)
            check("tls_result" not in nop, "no result without a policy")
    finally:
        ca.close()


def test_enforce_skips_mx_outside_policy():
    """enforce: an MX host the policy does not name is never connected;
    with none left the message is deferred (4.7.5)."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    hosts = ["127.0.3.31"]
    port = free_port_on(hosts)
    dns = setup(ca, [("other.test", "mx.rogue.test", hosts[0],
                      "v=STSv1; id=7;")], paddr)
    pcert, pkey = ca.leaf("mta-sts.other.test")
    mcert, mkey = ca.leaf("mx.rogue.test")
    pol = {"mta-sts.other.test": (200, "text/plain",
                                  ENFORCE % "*.other.test")}
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol), \
                Sink(hosts, port, ["--starttls", "--cert", mcert, "--key",
                                   mkey]) as sink, \
                ControlDaemon(config(dns, port, ca),
                              prefix="outpost-sts-") as d:
            submit(d, ["x@other.test"])
            e = wait_for(lambda: delivery_events(d, "transient_failure"), 20, "deferral")[0]
            eq(e.get("enhanced_status"), "4.7.5", "status: %r" % e)
            eq(e.get("tls_result"), "validation-failure", "result")
            eq(sink.stats().get("connections_total", 0), 0, "never connected")
            eq(len(d.queue_ids()), 1, "still queued")
    finally:
        ca.close()


def test_testing_mode_delivers_and_reports():
    """testing: an untrusted certificate is used all the same, and the
    log and metrics report it."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    hosts = ["127.0.3.41"]
    port = free_port_on(hosts)
    dns = setup(ca, [("trial.test", "mx.trial.test", hosts[0],
                      "v=STSv1; id=t1;")], paddr)
    pcert, pkey = ca.leaf("mta-sts.trial.test")
    selfc, selfk = ca.self_signed("mx.trial.test")
    pol = {"mta-sts.trial.test": (200, "text/plain",
                                  TESTING % "mx.trial.test")}
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol), \
                Sink(hosts, port, ["--starttls", "--cert", selfc, "--key",
                                   selfk]) as sink, \
                ControlDaemon(config(dns, port, ca),
                              prefix="outpost-sts-") as d:
            submit(d, ["t@trial.test"])
            sink.wait_messages(1)
            ev = wait_for(lambda: delivery_events(d, "delivery"), 10, "event")[0]
            eq((ev.get("tls_policy"), ev.get("tls_policy_mode"),
                ev.get("tls_result")),
               ("mta-sts", "testing", "certificate-not-trusted"),
               "reported: %r" % ev)
            eq(metric(d, 'outpost_tls_policy_results_total{policy="mta-sts"'
                      ',mode="testing",result="certificate-not-trusted"}'),
               1, "counted")
    finally:
        ca.close()


def test_policy_failures_fall_back():
    """A TXT record whose policy cannot be had (404, HTML, larger than 64
    KiB, a certificate our CA did not sign, one it signed for another
    name) leaves the domain
    without a policy: delivered opportunistically, each failure counted by
    its RFC 8460 type."""
    if not need_root():
        return
    ca = TestCA()
    paddr, paddr2, paddr3 = free_addr_443(), free_addr_443(), \
        free_addr_443()
    hosts = ["127.0.3.51"]
    port = free_port_on(hosts)
    txt = "v=STSv1; id=f1;"
    doms = [("gone.test", "mx.gone.test", hosts[0], txt),
            ("html.test", "mx.html.test", hosts[0], txt),
            ("badweb.test", "mx.badweb.test", hosts[0], txt),
            ("wrongname.test", "mx.wrongname.test", hosts[0], txt),
            ("big.test", "mx.big.test", hosts[0], txt)]
    dns = setup(ca, doms, paddr)
    # badweb's policy host is another server, with a certificate no CA
    # we trust signed; wrongname's, one our CA signed for another name.
    dns.spec[1][:] = [x for x in dns.spec[1]
                      if x[0] not in ("mta-sts.badweb.test",
                                      "mta-sts.wrongname.test")] + \
        [("mta-sts.badweb.test", paddr2),
         ("mta-sts.wrongname.test", paddr3)]
    pcert, pkey = ca.leaf("mta-sts.gone.test", "mta-sts.html.test",
                          "mta-sts.big.test")
    bcert, bkey = ca.self_signed("mta-sts.badweb.test")
    wcert, wkey = ca.leaf("mta-sts.other.test")
    # big's would be a valid enforce policy (blank lines are skipped),
    # were it not 80 KB long: read whole, it would stop delivery to a
    # sink without STARTTLS.
    pol = {"mta-sts.html.test": (200, "text/html",
                                 "<html>" + ENFORCE % "mx.html.test"),
           "mta-sts.big.test": (200, "text/plain",
                                ENFORCE % "mx.big.test" + "\r\n" * 40000)}
    bpol = {"mta-sts.badweb.test": (200, "text/plain",
                                    ENFORCE % "mx.badweb.test")}
    wpol = {"mta-sts.wrongname.test": (200, "text/plain",
                                       ENFORCE % "mx.wrongname.test")}
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol), \
                PolicyServer(paddr2, bcert, bkey, bpol) as bad, \
                PolicyServer(paddr3, wcert, wkey, wpol) as wrong, \
                Sink(hosts, port) as sink, \
                ControlDaemon(config(dns, port, ca),
                              prefix="outpost-sts-") as d:
            submit(d, ["a@gone.test", "b@html.test", "c@badweb.test",
                       "d@wrongname.test", "e@big.test"])
            sink.wait_messages(5)
            for e in delivery_events(d, "delivery"):
                eq(e.get("tls_policy"), "none", "no policy: %r" % e)
            eq(metric(d, 'outpost_mta_sts_fetches_total{result='
                      '"sts-policy-fetch-error"}'), 2,
               "404 and too large counted")
            eq(metric(d, 'outpost_mta_sts_fetches_total{result='
                      '"sts-policy-invalid"}'), 1, "text/html counted")
            eq(metric(d, 'outpost_mta_sts_fetches_total{result='
                      '"sts-webpki-invalid"}'), 2,
               "bad certificate, wrong name")
            eq(bad.hits, {}, "no request past a bad certificate")
            eq(wrong.hits, {}, "no request past a certificate for another "
               "name")
            check("policy fetch failed" in d.log(), "failure logged")
            check("the answer is too large" in d.log(),
                  "too large said: %s" % [x for x in d.log().splitlines()
                                          if "big.test" in x])
    finally:
        ca.close()


def test_cache_survives_restart_and_new_id_refetched():
    """The policy kept in the queue serves after a restart with the policy
    server gone (an untrusted MX is still refused); a new TXT id makes it
    fetched again, and the new policy (testing) then applies."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    hosts = ["127.0.3.61"]
    port = free_port_on(hosts)
    dom = [("keep.test", "mx.keep.test", hosts[0], "v=STSv1; id=one;")]
    pcert, pkey = ca.leaf("mta-sts.keep.test")
    mcert, mkey = ca.leaf("mx.keep.test")
    selfc, selfk = ca.self_signed("mx.keep.test")
    pol = {"mta-sts.keep.test": (200, "text/plain",
                                 ENFORCE % "mx.keep.test")}
    d = None
    try:
        dns = setup(ca, dom, paddr)
        with dns, PolicyServer(paddr, pcert, pkey, pol) as ps:
            with Sink(hosts, port, ["--starttls", "--cert", mcert, "--key",
                                    mkey]) as sink:
                d = ControlDaemon(config(dns, port, ca),
                                  prefix="outpost-sts-")
                d.start()
                submit(d, ["first@keep.test"])
                sink.wait_messages(1)
                eq(ps.hits.get("mta-sts.keep.test"), 1, "fetched")
                d.stop()
            ps.stop()
            # The policy server is gone; the receiver's certificate is
            # now one nobody signed: the kept policy must refuse it.
            with Sink(hosts, port, ["--starttls", "--cert", selfc, "--key",
                                    selfk]) as sink:
                d.start()
                eq(metric(d, "outpost_mta_sts_policies_loaded"), 1,
                   "policy loaded from the queue")
                submit(d, ["second@keep.test"])
                e = wait_for(lambda: [x for x in delivery_events(d, "transient_failure")
                                      if x.get("rcpt_domain") ==
                                      "keep.test"], 20, "deferral")[0]
                eq((e.get("tls_policy_mode"), e.get("tls_result")),
                   ("enforce", "certificate-not-trusted"),
                   "kept policy enforced: %r" % e)
                eq(sink.stats().get("messages", 0), 0, "nothing sent")
                d.stop()
        # A new id, and the policy server back with a testing policy.
        dom2 = [("keep.test", "mx.keep.test", hosts[0],
                 "v=STSv1; id=two;")]
        dns2 = setup(ca, dom2, paddr)
        pol2 = {"mta-sts.keep.test": (200, "text/plain",
                                      TESTING % "mx.keep.test")}
        d.conf_path_text = open(d.conf_path).read()
        with open(d.conf_path, "w") as f:
            f.write(d.conf_path_text.replace(dns.servers, dns2.servers))
        with dns2, PolicyServer(paddr, pcert, pkey, pol2) as ps2, \
                Sink(hosts, port, ["--starttls", "--cert", selfc, "--key",
                                   selfk]) as sink:
            d.start()
            # The deferred message goes at its retry, under the new
            # policy: delivered, reported.
            sink.wait_messages(1, timeout=30)
            eq(ps2.hits.get("mta-sts.keep.test"), 1, "new id fetched")
            ev = wait_for(lambda: delivery_events(d, "delivery")[1:], 10,
                          "second delivery")[0]
            eq((ev.get("tls_policy_mode"), ev.get("tls_result")),
               ("testing", "certificate-not-trusted"), "new policy: %r" % ev)
            d.stop()
    finally:
        ca.close()
        if d is not None:
            if d.proc is not None:
                d.stop()
            if not os.environ.get("OUTPOST_KEEP"):
                shutil.rmtree(d.tmp, ignore_errors=True)


def test_policy_refreshed_before_expiry():
    """A policy is fetched again once half its max_age has passed, with no
    mail going to its domain (RFC 8461 section 5.1: refreshed before it
    expires, so that an attacker who strips the TXT record later finds
    it still in force)."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    hosts = ["127.0.3.81"]
    port = free_port_on(hosts)
    dns = setup(ca, [("fresh.test", "mx.fresh.test", hosts[0],
                      "v=STSv1; id=r1;")], paddr)
    pcert, pkey = ca.leaf("mta-sts.fresh.test")
    mcert, mkey = ca.leaf("mx.fresh.test")
    pol = {"mta-sts.fresh.test": (200, "text/plain",
                                  (ENFORCE % "mx.fresh.test").replace(
                                      "86400", "4"))}
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol) as ps, \
                Sink(hosts, port, ["--starttls", "--cert", mcert, "--key",
                                   mkey]) as sink, \
                ControlDaemon(config(dns, port, ca),
                              prefix="outpost-sts-") as d:
            submit(d, ["a@fresh.test"])
            sink.wait_messages(1)
            eq(ps.hits.get("mta-sts.fresh.test"), 1, "fetched")
            wait_for(lambda: ps.hits.get("mta-sts.fresh.test", 0) >= 3, 15,
                     "two refreshes without mail")
            eq(sink.stats()["messages"], 1, "no more mail meanwhile")
    finally:
        ca.close()


def test_no_policy_no_fetch():
    """A domain without the TXT record is never fetched from, and a
    destination with mta_sts = false ignores a policy that would refuse
    its receiver."""
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    hosts = ["127.0.3.71"]
    port = free_port_on(hosts)
    dns = setup(ca, [("bare.test", "mx.bare.test", hosts[0], None),
                     ("optout.test", "mx.optout.test", hosts[0],
                      "v=STSv1; id=o;")], paddr)
    pcert, pkey = ca.leaf("mta-sts.bare.test", "mta-sts.optout.test")
    pol = {"mta-sts.bare.test": (200, "text/plain",
                                 ENFORCE % "nomatch.example"),
           "mta-sts.optout.test": (200, "text/plain",
                                   ENFORCE % "nomatch.example")}
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol) as ps, \
                Sink(hosts, port) as sink, \
                ControlDaemon(config(dns, port, ca, 'destination '
                                     '"optout.test" { mta_sts = false }\n'),
                              prefix="outpost-sts-") as d:
            submit(d, ["a@bare.test", "b@optout.test"])
            sink.wait_messages(2)
            eq(ps.hits, {}, "no fetch")
    finally:
        ca.close()


if __name__ == "__main__":
    run_tests(globals())
