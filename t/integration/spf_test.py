#!/usr/bin/python3
"""SPF in the DMARC pre-check, through the real outpostd and a dnsmasq of
our own publishing SPF records (--txt-record).  A MAIL FROM domain equal to
the From domain counts as aligned only when its SPF record authorizes every
source address of the pool the message leaves from (here 127.0.0.2 and
127.0.0.3);
otherwise DKIM alone decides.  The delivery log's dmarc field says which
alignment decided (align=spf|dkim|none) and the SPF result.  Loopback
only: the records name 127.0.0.x, nothing is delivered off the box."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Raw, check, eq,  # noqa
                          run_tests)

POOL = 'pool "default" {\n  source = { "127.0.0.2", "127.0.0.3" }\n}\n'

RECORDS = [
    # Authorizes 127.0.0.99 only: not the pool's address.
    ("spf-fail.test", "v=spf1 ip4:127.0.0.99 -all"),
    ("_dmarc.spf-fail.test", "v=DMARC1; p=reject"),
    # Authorizes one of the pool's two addresses: not enough.
    ("spf-half.test", "v=spf1 ip4:127.0.0.2 -all"),
    ("_dmarc.spf-half.test", "v=DMARC1; p=reject"),
    # Through include and a/24: out.esp.test is 127.0.0.1, so 127.0.0.2
    # and 127.0.0.3 pass.
    ("spf-pass.test", "v=spf1 include:_spf.esp.test -all"),
    ("_spf.esp.test", "v=spf1 a:out.esp.test/24 -all"),
    ("_dmarc.spf-pass.test", "v=DMARC1; p=reject"),
    # A bounce subdomain that redirects to its parent: relaxed alignment.
    ("bounce.spf-pass.test", "v=spf1 redirect=spf-pass.test"),
    # softfail is not pass.
    ("spf-soft.test", "v=spf1 ip4:127.0.0.99 ~all"),
    ("_dmarc.spf-soft.test", "v=DMARC1; p=reject"),
    # Two SPF records: permerror.
    ("spf-two.test", "v=spf1 +all"),
    ("spf-two.test", "v=spf1 -all"),
    ("_dmarc.spf-two.test", "v=DMARC1; p=reject"),
    # An include loop: permerror, not a hang.
    ("spf-loop.test", "v=spf1 include:spf-loop.test -all"),
    ("_dmarc.spf-loop.test", "v=DMARC1; p=reject"),
    # The include's name is outside the zone dnsmasq serves and it has no
    # upstream (--no-resolv): REFUSED, a temperror.  451, not 550.
    ("spf-temp.test", "v=spf1 include:spf.unserved.invalid -all"),
    ("_dmarc.spf-temp.test", "v=DMARC1; p=reject"),
    # Passes, but the policy is none: accepted either way.
    ("_dmarc.spf-none.test", "v=DMARC1; p=none"),
    ("spf-none.test", "v=spf1 -all"),
]


def dns():
    return Dns(a=[("out.esp.test", "127.0.0.1")], txt=RECORDS)


def config(d, pool=True):
    return ('dns { servers = "%s" timeout = 1s tries = 1 }\n' % d.servers +
            (POOL if pool else ""))


def submit(d, sender, from_addr):
    """(code, text) of the reply to the end of DATA.  A recipient of its
    own each time: dest.test has no mail server, so each one bounces and
    goes on the suppression list."""
    submit.n = getattr(submit, "n", 0) + 1
    r = Raw(d.port, timeout=30)
    r.reply()
    r.cmd("EHLO client.test")
    eq(r.cmd("MAIL FROM:<%s>" % sender)[0], 250, "MAIL")
    eq(r.cmd("RCPT TO:<x%d@dest.test>" % submit.n)[0], 250, "RCPT")
    eq(r.cmd("DATA")[0], 354, "DATA")
    r.send(b"From: <" + from_addr.encode() +
           b">\r\nSubject: spf\r\n\r\nbody\r\n.\r\n")
    code, text = r.reply()
    r.cmd("QUIT")
    r.close()
    return code, text


def events(d):
    path = os.path.join(d.data, "log", "delivery.log")
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def last_dmarc(d, kind):
    """The dmarc field of the newest reception or rejection event, which
    must be of KIND (the log is written in batches: wait for it)."""
    seen = getattr(d, "spf_seen", 0)
    deadline = time.time() + 10 * SLOW
    while True:
        evs = [e for e in events(d)
               if e.get("event") in ("reception", "rejection")]
        if len(evs) > seen:
            break
        check(time.time() < deadline,
              "no new %s event in the delivery log" % kind)
        time.sleep(0.05)
    d.spf_seen = len(evs)
    eq(evs[-1].get("event"), kind, "event")
    return evs[-1].get("dmarc", "")


def test_spf_decides_alignment_of_identical_domains():
    with dns() as dd, Daemon(config=config(dd)) as d:
        code, text = submit(d, "news@spf-fail.test", "news@spf-fail.test")
        eq(code, 550, "SPF does not authorize the pool, no DKIM, "
           "p=reject: " + text)
        check("DMARC" in text, "reason: " + text)
        field = last_dmarc(d, "rejection")
        check("align=none" in field and "spf=fail" in field,
              "rejection dmarc field: %r" % field)

        code, text = submit(d, "news@spf-pass.test", "news@spf-pass.test")
        eq(code, 250, "SPF authorizes the pool (include, a/24): " + text)
        field = last_dmarc(d, "reception")
        check("align=spf" in field and "spf=pass" in field,
              "reception dmarc field: %r" % field)

        # Again: from the cache, same answer.
        code, text = submit(d, "other@spf-pass.test", "news@spf-pass.test")
        eq(code, 250, "second message: " + text)
        check("align=spf" in last_dmarc(d, "reception"), "cached pass")

        code, text = submit(d, "b@bounce.spf-pass.test",
                            "news@spf-pass.test")
        eq(code, 250, "redirect, relaxed alignment: " + text)
        check("align=spf" in last_dmarc(d, "reception"), "redirect")

        for dom, res in (("spf-half.test", "fail"),
                         ("spf-soft.test", "softfail"),
                         ("spf-two.test", "permerror"),
                         ("spf-loop.test", "permerror")):
            code, text = submit(d, "a@" + dom, "a@" + dom)
            eq(code, 550, "%s: %s" % (dom, text))
            field = last_dmarc(d, "rejection")
            check("spf=" + res in field, "%s: %r" % (dom, field))

        code, text = submit(d, "a@spf-temp.test", "a@spf-temp.test")
        eq(code, 451, "SPF temperror under p=reject: " + text)
        check("4.4.3" in text, text)
        check("spf=temperror" in last_dmarc(d, "rejection"), "temperror")

        code, text = submit(d, "a@spf-none.test", "a@spf-none.test")
        eq(code, 250, "p=none: " + text)
        field = last_dmarc(d, "reception")
        check("align=none" in field and "spf=fail" in field,
              "p=none dmarc field: %r" % field)

        log = d.log()
        with open(os.path.join(d.data, "log", "delivery.log")) as f:
            dl = f.read()
        for addr in ("news@spf-pass.test", "news@spf-fail.test",
                     "other@spf-pass.test"):
            check(addr not in log and addr not in dl,
                  "%s in clear in a log" % addr)


def test_no_source_address_means_dkim_alone():
    """Without a pool the daemon leaves by the OS default route: SPF cannot
    be evaluated for it, so it does not count; the log says so."""
    with dns() as dd, Daemon(config=config(dd, pool=False)) as d:
        code, text = submit(d, "news@spf-pass.test", "news@spf-pass.test")
        eq(code, 550, "no source address, no DKIM, p=reject: " + text)
        field = last_dmarc(d, "rejection")
        check("align=none" in field and "spf=unevaluated" in field,
              "rejection dmarc field: %r" % field)
        check("no source address" in d.log(), "diagnostic says why")


run_tests(globals())
