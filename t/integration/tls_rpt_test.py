#!/usr/bin/python3
"""TLS reporting (RFC 8460) through the real outpostd, on the test clock: the
daemon's day ends a few seconds after it starts (OUTPOST_TEST_CLOCK_OFFSET).
Two domains under MTA-STS testing policies publish _smtp._tls records; one's
receiver has a certificate our test CA signed (a successful session), the
other's a self-signed one (a failed one, delivered all the same).  The
daemon is restarted before midnight (the counts are kept in the queue).
After midnight each domain's report reaches its rua mailbox (a sink, by
mail through Outpost's own queue) and one also its https rua (a POST to a
server of our own): multipart/report, gzipped JSON that validates against
RFC 8460's report schema (section 4.4) and counts what happened.
Loopback only."""

import email
import email.policy
import gzip
import json
import os
import re
import shutil
import sys
import time

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (ControlDaemon, Dns, Sink, check,  # noqa
                          delivery_config, eq, free_port_on, metrics_text,
                          run_tests, wait_for)
from mta_sts_test import (ENFORCE, TESTING, PolicyServer, TestCA,  # noqa
                          free_addr_443, need_root)

MSG = (b"From: News <news@sender.test>\r\nTo: <someone@rpt.test>\r\n"
       b"Subject: tls-rpt\r\nMessage-ID: <r1@sender.test>\r\n\r\n"
       b"Hello, reported.\r\n")

DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
RESULT_TYPES = ["starttls-not-supported", "certificate-host-mismatch",
                "certificate-expired", "certificate-not-trusted",
                "validation-failure", "tlsa-invalid", "dnssec-invalid",
                "dane-required", "sts-policy-fetch-error",
                "sts-policy-invalid", "sts-webpki-invalid"]
COUNT = {"type": "integer", "minimum": 0}

# RFC 8460 section 4.4 (the report's fields and their types), as a JSON
# schema: every field the RFC names, nothing else.
SCHEMA = {
    "type": "object",
    "required": ["organization-name", "date-range", "contact-info",
                 "report-id", "policies"],
    "additionalProperties": False,
    "properties": {
        "organization-name": {"type": "string", "minLength": 1},
        "date-range": {
            "type": "object", "additionalProperties": False,
            "required": ["start-datetime", "end-datetime"],
            "properties": {
                "start-datetime": {"type": "string", "pattern": DATETIME},
                "end-datetime": {"type": "string", "pattern": DATETIME}}},
        "contact-info": {"type": "string", "minLength": 1},
        "report-id": {"type": "string", "minLength": 1},
        "policies": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["policy", "summary"],
            "properties": {
                "policy": {
                    "type": "object", "additionalProperties": False,
                    "required": ["policy-type", "policy-domain"],
                    "properties": {
                        "policy-type": {"enum": ["tlsa", "sts",
                                                 "no-policy-found"]},
                        "policy-string": {"type": "array",
                                          "items": {"type": "string"}},
                        "policy-domain": {"type": "string"},
                        "mx-host": {"type": "array",
                                    "items": {"type": "string"}}}},
                "summary": {
                    "type": "object", "additionalProperties": False,
                    "required": ["total-successful-session-count",
                                 "total-failure-session-count"],
                    "properties": {
                        "total-successful-session-count": COUNT,
                        "total-failure-session-count": COUNT}},
                "failure-details": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["result-type", "failed-session-count"],
                    "properties": {
                        "result-type": {"enum": RESULT_TYPES},
                        "sending-mta-ip": {"type": "string"},
                        "receiving-mx-hostname": {"type": "string"},
                        "receiving-mx-helo": {"type": "string"},
                        "receiving-ip": {"type": "string"},
                        "failed-session-count": COUNT,
                        "additional-information": {"type": "string"},
                        "failure-reason-code": {"type": "string"}}}}}}}}}


def submit(d, rcpts):
    s = d.smtp()
    s.sendmail("news@sender.test", rcpts, MSG)
    s.quit()


def report_of(raw):
    """The sink's copy of a report mail: (message, JSON report)."""
    body = raw.split(b"\r\n", 1)[1]  # the sink's envelope line
    msg = email.message_from_bytes(body, policy=email.policy.default)
    eq(msg.get_content_type(), "multipart/report", "media type")
    eq(msg.get_param("report-type"), "tlsrpt", "report-type")
    parts = [p for p in msg.iter_attachments()
             if p.get_content_type() == "application/tlsrpt+gzip"]
    eq(len(parts), 1, "one gzipped report attached")
    fname = parts[0].get_filename()
    check(re.match(r"^outpost\.test![a-z0-9.]+!\d+!\d+!\w+\.json\.gz$",
                   fname or ""), "file name (RFC 8460 5.3): %r" % fname)
    return msg, json.loads(gzip.decompress(parts[0].get_content()))


def test_daily_report_mailed_and_posted():
    if not need_root():
        return
    ca = TestCA()
    paddr = free_addr_443()
    h_ok, h_bad, h_rep = "127.0.5.10", "127.0.5.11", "127.0.5.20"
    h_enf = "127.0.5.12"
    port = free_port_on([h_ok, h_bad, h_rep, h_enf])
    dns = Dns(mx=[("rpt.test", "mx.rpt.test", 10),
                  ("rpt2.test", "mx.rpt2.test", 10),
                  ("rpt3.test", "mx.rpt3.test", 10),
                  ("reports.test", "mx.reports.test", 10)],
              a=[("mx.rpt.test", h_ok), ("mx.rpt2.test", h_bad),
                 ("mx.rpt3.test", h_enf),
                 ("mx.reports.test", h_rep),
                 ("mta-sts.rpt.test", paddr), ("mta-sts.rpt2.test", paddr),
                 ("mta-sts.rpt3.test", paddr),
                 ("post.reports.test", paddr)],
              txt=[("_mta-sts.rpt.test", "v=STSv1; id=a;"),
                   ("_mta-sts.rpt2.test", "v=STSv1; id=a;"),
                   ("_mta-sts.rpt3.test", "v=STSv1; id=a;"),
                   ("_smtp._tls.rpt3.test",
                    "v=TLSRPTv1;rua=mailto:tls3@reports.test"),
                   # (dnsmasq cuts a text at a comma: one URI each;
                   # lists of URIs are unit/tlsrpt_test's)
                   ("_smtp._tls.rpt.test",
                    "v=TLSRPTv1; rua=https://post.reports.test/v1/tlsrpt"),
                   ("_smtp._tls.rpt2.test",
                    "v=TLSRPTv1;rua=mailto:tls@reports.test")])
    pcert, pkey = ca.leaf("mta-sts.rpt.test", "mta-sts.rpt2.test",
                          "mta-sts.rpt3.test", "post.reports.test")
    good_c, good_k = ca.leaf("mx.rpt.test")
    bad_c, bad_k = ca.self_signed("mx.rpt2.test")
    pol = {"mta-sts.rpt.test": (200, "text/plain",
                                TESTING % "mx.rpt.test"),
           "mta-sts.rpt2.test": (200, "text/plain",
                                 TESTING % "mx.rpt2.test"),
           "mta-sts.rpt3.test": (200, "text/plain",
                                 ENFORCE % "mx.rpt3.test")}
    cfg = delivery_config(dns, port, '''
delivery { tls_ca_file = "%s" }
tls_report {
  enabled = true
  organization = "Outpost Test ESP"
  contact = "tls-admin@outpost.test"
  delay = 0s
}
''' % ca.cert)
    # The daemon's clock: 12 s before a UTC midnight.
    now = time.time()
    midnight = (int(now) // 86400 + 1) * 86400
    offset = midnight - 12 - int(now)
    day_before = time.strftime("%Y-%m-%dT00:00:00Z",
                               time.gmtime(midnight - 86400))
    try:
        with dns, PolicyServer(paddr, pcert, pkey, pol) as ps, \
                Sink([h_ok], port, ["--starttls", "--cert", good_c, "--key",
                                    good_k]) as s_ok, \
                Sink([h_bad], port, ["--starttls", "--cert", bad_c,
                                     "--key", bad_k]) as s_bad, \
                Sink([h_enf], port, ["--starttls", "--cert", bad_c,
                                     "--key", bad_k]) as s_enf, \
                Sink([h_rep], port) as s_rep:
            d = ControlDaemon(cfg, prefix="outpost-rpt-")
            d.clock_offset = offset
            t0 = time.time()
            d.start()
            try:
                run(d, ps, t0, day_before, offset,
                    dict(ok=s_ok, bad=s_bad, enf=s_enf, rep=s_rep))
            finally:
                if d.proc is not None and d.proc.poll() is None:
                    d.stop()
                if not os.environ.get("OUTPOST_KEEP"):
                    shutil.rmtree(d.tmp, ignore_errors=True)
    finally:
        ca.close()


def run(d, ps, t0, day_before, offset, sinks):
    """The test's body, the daemon started: SINKS the receivers of rpt.test
    (ok), rpt2.test (bad), rpt3.test (enf) and the reports (rep)."""
    s_ok, s_bad, s_enf, s_rep = (sinks["ok"], sinks["bad"], sinks["enf"],
                                 sinks["rep"])
    submit(d, ["a@rpt.test"])
    submit(d, ["b@rpt2.test"])
    submit(d, ["c@rpt3.test"])
    s_ok.wait_messages(1)
    s_bad.wait_messages(1)
    # enforce: the untrusted certificate defers (each attempt a
    # failed session), nothing is sent
    wait_for(lambda: s_enf.stats()["tls_connections"] >= 1, 10,
             "a TLS session refused by the policy")
    # The counts outlive a restart (written at the stop).
    d.stop()
    d.clock_offset = offset
    d.start()
    check(time.time() - t0 < 11, "sessions before the day ended")
    reports = {}

    def got():
        for raw in s_rep.messages():
            msg, rep = report_of(raw)
            reports[msg["TLS-Report-Domain"]] = (msg, rep)
        return len(reports) >= 2 and ps.posts
    wait_for(got, 40, "the report mails and the POST")
    eq(sorted(reports), ["rpt2.test", "rpt3.test"], "by mail")
    eq(s_enf.stats()["messages"], 0, "enforce: nothing sent")
    host, path, ctype, body = ps.posts[0]
    eq((host, path, ctype), ("post.reports.test", "/v1/tlsrpt",
                             "application/tlsrpt+gzip"), "POST")
    reports["rpt.test"] = (None, json.loads(gzip.decompress(body)))
    for dom, (msg, rep) in reports.items():
        jsonschema.validate(rep, SCHEMA)
        if msg is not None:
            eq(msg["TLS-Report-Submitter"], "Outpost Test ESP",
               "submitter")
            check(msg["Subject"].startswith(
                "Report Domain: %s Submitter: Outpost Test ESP "
                "Report-ID: <" % dom), "subject: %s" % msg["Subject"])
            eq(msg["From"], "tlsrpt-noreply@outpost.test", "From")
        eq(rep["organization-name"], "Outpost Test ESP", "org")
        eq(rep["date-range"]["start-datetime"], day_before,
           "the day before")
        eq(rep["contact-info"], "tls-admin@outpost.test", "contact")
        eq(len(rep["policies"]), 1, "one policy")
        p = rep["policies"][0]
        eq(p["policy"]["policy-type"], "sts", "sts")
        eq(p["policy"]["policy-domain"], dom, "domain")
        check(("mode: enforce" if dom == "rpt3.test" else
               "mode: testing") in p["policy"]["policy-string"],
              "policy string: %r" % p["policy"])
    ok = reports["rpt.test"][1]["policies"][0]
    eq(ok["summary"], {"total-successful-session-count": 1,
                       "total-failure-session-count": 0},
       "rpt.test summary")
    eq(ok["policy"]["mx-host"], ["mx.rpt.test"], "mx-host")
    bad = reports["rpt2.test"][1]["policies"][0]
    eq(bad["summary"], {"total-successful-session-count": 0,
                        "total-failure-session-count": 1},
       "rpt2.test summary")
    eq(bad["failure-details"], [{
        "result-type": "certificate-not-trusted",
        "sending-mta-ip": "127.0.0.1",
        "receiving-mx-hostname": "mx.rpt2.test",
        "receiving-ip": "127.0.5.11", "failed-session-count": 1}],
       "failure details")
    enf = reports["rpt3.test"][1]["policies"][0]
    eq(enf["summary"]["total-successful-session-count"], 0,
       "rpt3.test: no success")
    check(enf["summary"]["total-failure-session-count"] >= 1,
          "rpt3.test: failures: %r" % enf["summary"])
    eq([(f["result-type"], f["receiving-mx-hostname"])
        for f in enf["failure-details"]],
       [("certificate-not-trusted", "mx.rpt3.test")], "rpt3.test: why")
    text = metrics_text(d)
    check('outpost_tls_reports_total{result="mailed"} 2' in text,
          "mailed counted")
    check('outpost_tls_reports_total{result="posted"} 1' in text,
          "posted counted")


if __name__ == "__main__":
    run_tests(globals())
