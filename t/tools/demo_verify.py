#!/usr/bin/python3
"""demo_verify.py DNS_PORT MESSAGE: verify every DKIM-Signature of MESSAGE
(as outpost-sink stored it: its X-Sink-Envelope line first) with
python3-dkim, asking the demo's own dnsmasq on 127.0.0.1:DNS_PORT for the
public keys.  Prints one line per signature; exit status 0 only if there
is at least one signature and every one verifies.  Loopback only."""

import re
import sys

import dkim  # python3-dkim
import dns.message
import dns.query
import dns.rdatatype


def dnsfunc_on(port):
    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        q = dns.message.make_query(name, dns.rdatatype.TXT)
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)
        for rrset in r.answer:
            for rd in rrset:
                return b"".join(rd.strings)
        return None
    return dnsfunc


def tag(sig, name):
    m = re.search(rb"(?:^|;)\s*" + name + rb"\s*=\s*([^;]*)", sig)
    return re.sub(rb"\s+", b"", m.group(1)).decode() if m else "?"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as f:
        msg = f.read()
    if msg.startswith(b"X-Sink-Envelope:"):
        msg = msg.split(b"\r\n", 1)[1]
    sigs = re.findall(
        rb"(?mi)^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", msg)
    if not sigs:
        print("   no DKIM-Signature in %s" % path)
        return 1
    d = dkim.DKIM(msg)
    dnsfunc = dnsfunc_on(port)
    failed = 0
    for i, sig in enumerate(sigs):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
            why = ""
        except dkim.DKIMException as e:
            ok, why = False, ": %s" % e
        what = "%s, d=%s, s=%s" % (tag(sig, b"a"), tag(sig, b"d"),
                                   tag(sig, b"s"))
        if ok:
            print("   DKIM signature verified (%s)" % what)
        else:
            print("   DKIM signature FAILED (%s)%s" % (what, why))
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
