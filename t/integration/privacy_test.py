#!/usr/bin/python3
"""No recipient address leaks through any output of outpostd: a scripted MX
of our own echoes each recipient in its 4xx/5xx replies in every form an
MX uses or an attacker can think of (plain, %40, VERP `=`, `at`, quoted
local part, bare local part, HTML-encoded, upper-cased, and one reply cut
by the client's 1,024-byte reply buffer with the address straddling the
cut).  The daemon runs with debug diagnostics and the `-T smtp` trace on;
then every file under its directory and its stdout/stderr are searched
for every distinctive local part.  Loopback only."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, check,  # noqa
                          delivery_config, free_port_on, run_tests)

MX_IP = "127.0.0.23"
DOMAIN = "evil.test"

# Recipients: local part -> reply code.  Every local part is distinctive,
# so a grep for it (any case) finds nothing but a leak.
PLAIN = {"zqalphasecret": 550, "zqbetasecret": 450, "zqgammasecret": 550}
QUOTED = '"zqdeltasecret zqepsilonsecret"'
CUT = "zqcutsecretlocal"
FORBIDDEN = [k for k in PLAIN] + ["zqdeltasecret", "zqepsilonsecret",
                                  "zqcut", "zqaudit"]
# Operator commands naming addresses in encoded forms: the audit log, the
# delivery log's admin events and the diagnostics see them.
AUDIT_ARGS = [["queue", "hold", "--user", "zqaudit1%40evil.test"],
              ["queue", "hold", "--domain", "bounce+zqaudit2=evil.test"],
              ["queue", "release", "--user", "zqaudit3 at evil.test"],
              ["queue", "hold", "--user", '"zqaudit4 x"@evil.test']]


def echo_forms(local):
    """Every way the scripted MX echoes LOCAL back."""
    bare = local.strip('"')
    first = bare.split(" ")[0]
    return [
        "<%s@%s> unknown" % (local, DOMAIN),
        "%s%%40%s rejected" % (first, DOMAIN),
        "see bounce+%s=%s@mx.%s" % (first, DOMAIN, DOMAIN),
        "user %s at %s unknown" % (first, DOMAIN),
        '"%s x"@%s quoted' % (first, DOMAIN),
        "qw.echo_bare_local.%s" % first,
        "%s... User unknown" % first,
        "mailbox '%s' unavailable" % first.upper(),
        "&lt;%s&#64;%s&gt; html" % (first, DOMAIN),
        "%s@%s upper" % (first.upper(), DOMAIN.upper()),
        "no such user: %s" % bare,
    ]


class ScriptedMx:
    """An SMTP receiver on MX_IP that answers each RCPT with a multi-line
    4xx/5xx reply echoing the recipient, the cut recipient with one long
    line, and accepts everything else (the DSNs)."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((MX_IP, port))
        self.sock.listen(16)
        self.stop = False
        self.rcpts = []
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.sock.close()
        return False

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,),
                             daemon=True).start()

    def reply_for(self, addr):
        local, _, _ = addr.rpartition("@")
        bare = local.strip('"')
        if bare == CUT:
            # rtext keeps 1,023 bytes of the text after "550 ": put 6
            # bytes of the local part before the cut, the rest after.
            pad = 1023 - 6 - 1
            return "550 5.1.1 " + "x" * (pad - 6) + " " + addr + " gone"
        code = PLAIN.get(bare, 550)
        enh = "5.1.1" if code >= 500 else "4.2.1"
        lines = ["%d-%s %s" % (code, enh, f) for f in echo_forms(local)]
        lines.append("%d %s %s" % (code, enh, bare.upper()))
        return "\r\n".join(lines)

    def session(self, c):
        f = c.makefile("rb")
        try:
            c.sendall(b"220 mx.evil.test ESMTP\r\n")
            data = False
            while True:
                line = f.readline()
                if not line:
                    return
                if data:
                    if line == b".\r\n":
                        data = False
                        c.sendall(b"250 2.0.0 ok\r\n")
                    continue
                cmd = line.decode("utf-8", "replace").strip()
                up = cmd.upper()
                if up.startswith("EHLO") or up.startswith("HELO"):
                    c.sendall(b"250-mx.evil.test\r\n250 PIPELINING\r\n")
                elif up.startswith("RCPT TO:"):
                    addr = cmd[8:].strip().lstrip("<").rstrip(">")
                    self.rcpts.append(addr)
                    if addr.lower().endswith("@" + DOMAIN):
                        c.sendall((self.reply_for(addr) + "\r\n").encode())
                    else:
                        c.sendall(b"250 2.1.5 ok\r\n")
                elif up == "DATA":
                    data = True
                    c.sendall(b"354 go\r\n")
                elif up == "QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            return
        finally:
            c.close()


def test_no_local_part_in_any_output():
    port = free_port_on([MX_IP])
    dns = Dns(mx=[(DOMAIN, "mx." + DOMAIN, 10),
                  ("sender.test", "mx." + DOMAIN, 10)],
              a=[("mx." + DOMAIN, MX_IP)])
    rcpts = ["%s@%s" % (k, DOMAIN) for k in PLAIN] + \
            ["%s@%s" % (QUOTED, DOMAIN), "%s@%s" % (CUT, DOMAIN)]
    with dns, ScriptedMx(port) as mx, \
            Daemon(config=delivery_config(dns, port),
                   args=["-v", "-T", "smtp"]) as d:
        s = d.smtp()
        s.sendmail("news@sender.test", rcpts,
                   b"From: <news@sender.test>\r\nSubject: p\r\n"
                   b"Message-ID: <p1@sender.test>\r\n\r\nhello\r\n")
        s.quit()
        # Every recipient refused at least once, and the deferred one
        # retried (a second round of logging).
        deadline = time.time() + 30 * SLOW
        while time.time() < deadline:
            seen = [r for r in mx.rcpts if r.endswith("@" + DOMAIN)]
            if len(seen) >= len(rcpts) + 1:
                break
            time.sleep(0.2)
        check(len(seen) >= len(rcpts) + 1,
              "the MX saw %d of the recipients" % len(seen))
        for args in AUDIT_ARGS:
            d.cli(*args, check_rc=False)
        time.sleep(1.5)  # the delivery log's writer flushes every second
        d.stop()
        files = d.files_bytes()
    check(any(p.endswith("delivery.log") for p in files),
          "no delivery log written")
    check(b"trace: smtp-out" in files[d.log_path],
          "the -T smtp trace is on")
    check(any(p.endswith("audit.log") for p in files),
          "no audit log written")
    leaks = []
    for path, data in sorted(files.items()):
        low = data.lower()
        for f in FORBIDDEN:
            i = low.find(f.encode())
            if i >= 0:
                leaks.append("%s: %r" % (path, data[max(0, i - 60):i + 40]))
    check(not leaks, "local parts in clear:\n" + "\n".join(leaks))


run_tests(globals())
