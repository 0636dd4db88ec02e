#!/usr/bin/python3
"""dkim_verify.py KEYS MSG... -- verify each message's first DKIM-Signature
with python3-dkim (an implementation independent of libopendkim and of
dkim/), for t/unit/dkim_sign_test.c.

KEYS holds lines "SELECTOR._domainkey.DOMAIN<TAB>TXT record"; the DNS lookup
is replaced by that map (dnsfunc), so nothing touches the network.  Prints
"pass MSG" or "fail MSG: why" per message; exits 0 when every message was
checked (whatever the verdicts), 2 on a usage or key-file error.
"""
import sys

import dkim


def load_keys(path):
    keys = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            name, txt = line.split(b"\t", 1)
            keys[name.lower().rstrip(b".")] = txt
    return keys


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        keys = load_keys(argv[1])
    except (OSError, ValueError) as e:
        print("dkim_verify.py: %s: %s" % (argv[1], e), file=sys.stderr)
        return 2

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return keys.get(name.lower().rstrip(b"."))

    for path in argv[2:]:
        try:
            with open(path, "rb") as f:
                data = f.read()
            ok = dkim.verify(data, dnsfunc=dnsfunc)
            why = "" if ok else ": signature did not verify"
        except Exception as e:  # a verifier error is a failed check
            ok, why = False, ": %s: %s" % (type(e).__name__, e)
        print("%s %s%s" % ("pass" if ok else "fail", path, why))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
