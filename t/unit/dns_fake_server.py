#!/usr/bin/python3
"""dns_fake_server.py - a tiny authoritative DNS responder for dns_test.

Listens on 127.0.0.1 only (UDP, an ephemeral port unless --port), prints
"PORT <n>" on stdout once bound, and answers from the ZONE below until it
gets SIGTERM or stdin closes.  Standard library only; packets are built by
hand so that the tests control every TTL, the SOA of negative answers, and
broken behaviour (SERVFAIL, REFUSED, silence, truncated or garbage packets,
slow answers).  It never forwards anything anywhere.
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import time

T_A, T_CNAME, T_SOA, T_MX, T_TXT, T_AAAA = 1, 5, 6, 15, 16, 28
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5

# The zone: every name under "fake.test".  (type, ttl, data) per record.
# MX data = (pref, host); TXT data = list of byte strings (one record);
# A/AAAA data = address text; CNAME data = target.
ZONE = {
    "ttl.fake.test": [
        (T_MX, 300, (10, "a.ttl.fake.test")),
        (T_MX, 60, (20, "b.ttl.fake.test")),
    ],
    "alias.fake.test": [(T_CNAME, 30, "real.fake.test")],
    "real.fake.test": [(T_MX, 600, (10, "mx.real.fake.test"))],
    "dangling.fake.test": [(T_CNAME, 40, "nomx.fake.test")],
    "nomx.fake.test": [(T_A, 100, "127.0.0.9")],
    "null.fake.test": [(T_MX, 100, (0, ""))],
    "nullmix.fake.test": [
        (T_MX, 100, (0, "")),
        (T_MX, 100, (10, "mx.nullmix.fake.test")),
    ],
    "literal.fake.test": [
        (T_MX, 100, (10, "1.2.3.4")),
        (T_MX, 100, (20, "[1.2.3.4]")),
        (T_MX, 100, (25, "[IPv6:2001:db8::1]")),
        (T_MX, 100, (30, "Mx.Literal.Fake.Test")),
    ],
    "literalonly.fake.test": [(T_MX, 100, (10, "192.0.2.1"))],
    "equal.fake.test": [
        (T_MX, 100, (10, "a.equal.fake.test")),
        (T_MX, 100, (10, "b.equal.fake.test")),
        (T_MX, 100, (5, "first.equal.fake.test")),
        (T_MX, 100, (20, "last.equal.fake.test")),
    ],
    "addr.fake.test": [
        (T_A, 200, "127.0.0.1"),
        (T_A, 200, "127.0.0.2"),
        (T_AAAA, 100, "::1"),
    ],
    "v4.fake.test": [(T_A, 200, "127.0.0.4")],
    "addralias.fake.test": [(T_CNAME, 50, "v4.fake.test")],
    "nonloop.fake.test": [(T_A, 100, "192.0.2.10")],
    "mixed.fake.test": [
        (T_A, 100, "192.0.2.11"),
        (T_A, 100, "127.0.0.3"),
    ],
    "txt.fake.test": [
        (T_TXT, 100, [b"v=spf1 ", b"-all"]),
        (T_TXT, 100, [b"a" * 255, b"b" * 45]),
        (T_TXT, 100, [b"nul\x00byte"]),
    ],
    "slow.fake.test": [(T_MX, 100, (10, "mx.slow.fake.test"))],
    "hugettl.fake.test": [(T_MX, 0x80000001, (10, "mx.hugettl.fake.test"))],
}
ZONE_APEX = "fake.test"
SOA = {"ttl": 900, "minimum": 120}  # negative TTL = min(900, 120) = 120
SOA_BY_NAME = {"nomx.fake.test": {"ttl": 50, "minimum": 300}}
SERVFAIL = {"servfail.fake.test"}
REFUSED = {"refused.fake.test"}
SILENT = {"silent.fake.test"}
SLOW = {"slow.fake.test": 0.1}
NOSOA = {"nosoa.fake.test"}
# Any "<label>.burst.fake.test" has one MX, "mx.<label>.burst.fake.test",
# answered after BURST_DELAY s: many distinct questions that each hold a
# slot for a while (the resolver's max_inflight tests).
BURST_SUFFIX = ".burst.fake.test"
BURST_DELAY = 0.05


def zone_add_burst(name):
    if name.endswith(BURST_SUFFIX) and name not in ZONE:
        ZONE[name] = [(T_MX, 100, (10, "mx." + name))]
GARBAGE = {"garbage.fake.test", "badrdata.fake.test", "badsoa.fake.test"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("latin-1")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def decode_question(pkt):
    """Return (id, flags, qname wire, qname text, qtype) or None."""
    if len(pkt) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", pkt[:6])
    if qd != 1 or flags & 0x8000:
        return None
    off, labels = 12, []
    while True:
        if off >= len(pkt):
            return None
        n = pkt[off]
        if n == 0:
            off += 1
            break
        if n > 63 or off + 1 + n > len(pkt):
            return None
        labels.append(pkt[off + 1:off + 1 + n].decode("latin-1"))
        off += 1 + n
    if off + 4 > len(pkt):
        return None
    qtype, qclass = struct.unpack("!HH", pkt[off:off + 4])
    return qid, flags, pkt[12:off + 4], ".".join(labels).lower(), qtype


def rr(owner_ptr, rtype, ttl, rdata):
    return owner_ptr + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def rdata_of(rtype, data):
    if rtype == T_MX:
        return struct.pack("!H", data[0]) + encode_name(data[1])
    if rtype == T_TXT:
        return b"".join(bytes([len(s)]) + s for s in data)
    if rtype == T_A:
        return socket.inet_pton(socket.AF_INET, data)
    if rtype == T_AAAA:
        return socket.inet_pton(socket.AF_INET6, data)
    if rtype == T_CNAME:
        return encode_name(data)
    raise ValueError(rtype)


def soa_rr(name):
    soa = SOA_BY_NAME.get(name, SOA)
    rdata = encode_name("ns." + ZONE_APEX) + encode_name(
        "hostmaster." + ZONE_APEX) + struct.pack(
            "!IIIII", 1, 3600, 600, 86400, soa["minimum"])
    return encode_name(ZONE_APEX) + struct.pack(
        "!HHIH", T_SOA, 1, soa["ttl"], len(rdata)) + rdata


def header(qid, qflags, rcode, an, ns):
    flags = 0x8000 | 0x0400 | (qflags & 0x0100) | rcode  # QR AA RD
    return struct.pack("!HHHHHH", qid, flags, 1, an, ns, 0)


def answer(pkt):
    q = decode_question(pkt)
    if q is None:
        return None
    qid, qflags, question, name, qtype = q
    zone_add_burst(name)
    if name in SILENT:
        return None
    if name in SERVFAIL:
        return header(qid, qflags, RCODE_SERVFAIL, 0, 0) + question
    if name in REFUSED:
        return header(qid, qflags, RCODE_REFUSED, 0, 0) + question
    if name == "garbage.fake.test":
        # ANCOUNT says 1, the record stops in the middle of its header.
        return header(qid, qflags, RCODE_NOERROR, 1, 0) + question + \
            b"\xc0\x0c\x00\x0f\x00"
    if name == "badrdata.fake.test":
        # RDLENGTH runs past the end of the packet.
        return header(qid, qflags, RCODE_NOERROR, 1, 0) + question + \
            b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, 200) + b"\0\x0a"
    if name == "badsoa.fake.test":
        # NXDOMAIN whose SOA RDATA is too short to hold its five numbers.
        rdata = b"\0\0" + b"\0" * 8
        return header(qid, qflags, RCODE_NXDOMAIN, 0, 1) + question + \
            b"\xc0\x0c" + struct.pack("!HHIH", T_SOA, 1, 60, len(rdata)) + \
            rdata
    owner = b"\xc0\x0c"  # the question name
    records, target, seen = [], name, 0
    while target in ZONE and seen < 8:
        seen += 1
        rrs = ZONE[target]
        cname = [r for r in rrs if r[0] == T_CNAME]
        if cname and qtype != T_CNAME:
            _, ttl, dest = cname[0]
            records.append(rr(owner, T_CNAME, ttl, rdata_of(T_CNAME, dest)))
            owner, target = encode_name(dest), dest
            continue
        for rtype, ttl, data in rrs:
            if rtype == qtype:
                records.append(rr(owner, rtype, ttl, rdata_of(rtype, data)))
        break
    exists = name in ZONE
    if not any(True for r in records) and not exists:
        rcode = RCODE_NXDOMAIN
    else:
        rcode = RCODE_NOERROR
    has_data = target in ZONE and any(
        r[0] == qtype for r in ZONE[target])
    auth = []
    if not has_data and name not in NOSOA:
        auth.append(soa_rr(target))
    return header(qid, qflags, rcode, len(records), len(auth)) + \
        question + b"".join(records) + b"".join(auth)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("PORT %d" % sock.getsockname()[1], flush=True)
    delayed = []  # (due, reply, peer)
    watch = [sock, sys.stdin]
    while True:
        now = time.monotonic()
        timeout = min((d[0] for d in delayed), default=now + 60) - now
        ready, _, _ = select.select(watch, [], [], max(timeout, 0))
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 512):
            return
        if sock in ready:
            pkt, peer = sock.recvfrom(65535)
            reply = answer(pkt)
            q = decode_question(pkt)
            if reply is not None:
                delay = SLOW.get(q[3], 0) if q else 0
                if q and q[3].endswith(BURST_SUFFIX):
                    delay = BURST_DELAY
                delayed.append((time.monotonic() + delay, reply, peer))
        now = time.monotonic()
        for item in [d for d in delayed if d[0] <= now]:
            delayed.remove(item)
            sock.sendto(item[1], item[2])


if __name__ == "__main__":
    main()
