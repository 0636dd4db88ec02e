#!/usr/bin/python3
"""AUTH limits through the real outpostd (issue 8, item 7): attempts in
flight are counted before Argon2id runs (parallel guesses cannot exceed
max_failures), a lockout is per (address, user), unknown and known user
names are refused alike, one address cannot spray many names (per-address
cap; users who authenticated from it before stay exempt), IPv4 prefixes
group neighbours, and `outpost auth blocks` / `outpost auth unblock`
through the control socket (read / write rights, audited).  All clients
are Python sockets on loopback addresses (127.0.0.0/8)."""

import base64
import json
import os
import pwd
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, SLOW, Daemon, TestFailure,  # noqa: E402
                          check, eq, passwd_hash, run_tests)

NOBODY = pwd.getpwnam("nobody")
PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "another good passphrase"
_HASH = {}


def hashed(pw):
    if pw not in _HASH:
        _HASH[pw] = passwd_hash(pw)
    return _HASH[pw]


def users():
    return ''.join('user "%s" {\n  password = "%s"\n'
                   '  sender_domains = { "example.com" }\n}\n'
                   % (name, hashed(pw)) for name, pw in
                   (("campaign", PASSWORD), ("other", OTHER_PASSWORD),
                    ("ops@example.com", PASSWORD), ("jürgen", PASSWORD)))


def limits(**kw):
    return "auth_limit {\n%s}\n" % "".join(
        "  %s = %s\n" % (k, v) for k, v in kw.items())


class LimitDaemon(Daemon):
    """Loopback is not a relay network; AUTH is offered in clear on the
    loopback listener (no TLS handshakes: 30 of them would only slow the
    test down).  The control socket lives in a directory others may enter
    (TMP 0755), so that `nobody` can be refused by the daemon itself."""

    def __init__(self, config="", access=None):
        run = tempfile.mkdtemp(prefix="outpost-authlim-")
        os.chmod(run, 0o755)
        self.sock = os.path.join(run, "control.sock")
        ctl = 'control {\n  socket = "%s"\n%s}\n' % (self.sock,
                                                     access or "")
        super().__init__(config=users() + config + ctl, workdir=run,
                         relay_loopback=False,
                         listeners=[("main", 'tls = "none"\n'
                                     '  auth_without_tls = true')])
        self.own_tmp = True
        self.audit_path = os.path.join(self.data, "log", "audit.log")

    def start(self, wait=True):
        super().start(wait)
        deadline = time.time() + 20 * SLOW
        while wait and not os.path.exists(self.sock):
            if time.time() > deadline:
                raise TestFailure("control socket not created")
            time.sleep(0.05)
        return self


def session(d, source="127.0.0.1"):
    """A raw SMTP session from SOURCE (a loopback address), after EHLO."""
    s = Session(d.port, source)
    eq(s.reply()[0], 220, "greeting")
    eq(s.cmd("EHLO client.test")[0], 250, "EHLO")
    return s


class Session:
    def __init__(self, port, source):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=30 * SLOW,
                                             source_address=(source, 0))
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return (None, "\n".join(lines))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            line = line.decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return (int(line[:3]), "\n".join(lines))

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def auth(self, user, password):
        token = base64.b64encode(b"\0" + user.encode() + b"\0"
                                 + password.encode()).decode()
        return self.cmd("AUTH PLAIN " + token)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def attempt(d, user, password, source="127.0.0.1"):
    """One AUTH in a fresh session: (code, text)."""
    s = session(d, source)
    try:
        return s.auth(user, password)
    finally:
        s.close()


def verified(d):
    """How many passwords outpostd checked and found wrong: its "AUTH
    failure" diagnostics (one per failed verification)."""
    return d.log().count("smtp AUTH failure ")


def metric(d, name):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10 * SLOW) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    check(m is not None, "metric %s missing" % name)
    return int(m.group(1))


def wait_idle(d, want_lines, timeout=60):
    """Wait until the log holds WANT_LINES "AUTH failure"/"AUTH refused"
    lines (every attempt answered)."""
    deadline = time.time() + timeout * SLOW
    while True:
        log = d.log()
        n = log.count("smtp AUTH failure ") + log.count("smtp AUTH refused ")
        if n >= want_lines or time.time() > deadline:
            return n
        time.sleep(0.1)


def cli(d, *args, rc=0, as_nobody=False):
    cmd = [OUTPOST, "-c", d.conf_path] + [str(a) for a in args]
    if as_nobody:
        cmd = ["setpriv", "--reuid=%d" % NOBODY.pw_uid,
               "--regid=%d" % NOBODY.pw_gid, "--clear-groups"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=60 * SLOW, cwd="/")
    if rc is not None and r.returncode != rc:
        raise TestFailure("outpost %s: exit %d, want %d\nstdout: %s\n"
                          "stderr: %s" % (" ".join(map(str, args)),
                                          r.returncode, rc, r.stdout[-2000:],
                                          r.stderr[-2000:]))
    return r


def audit(d):
    try:
        with open(d.audit_path) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def seconds_blind(text):
    return re.sub(r"\d+ seconds?", "N seconds", text)


# --- tests -----------------------------------------------------------------

def test_parallel_guesses_are_counted_before_verifying():
    """30 sessions from one address, one wrong password each, all sent at
    once: at most max_failures Argon2id verifications run; the rest are
    refused (454 4.7.0) without one."""
    n = 30
    with LimitDaemon(limits(max_failures=5, delay_base='"0"',
                            delay_max='"0"')) as d:
        sessions = [session(d) for _ in range(n)]
        replies = [None] * n
        go = threading.Barrier(n)

        def guess(i):
            go.wait()
            replies[i] = sessions[i].auth("campaign", "wrong %d" % i)

        threads = [threading.Thread(target=guess, args=(i,))
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120 * SLOW)
        for s in sessions:
            s.close()
        codes = [r[0] for r in replies]
        check(all(c in (535, 454, 421) for c in codes),
              "every guess answered (535/454/421): %r" % codes)
        ran = verified(d)
        check(ran <= 5, "%d password verifications ran for %d parallel "
              "guesses; max_failures = 5" % (ran, n))
        check(ran >= 1, "no verification at all")
        eq(metric(d, "outpost_auth_verifications_total"), ran,
           "Argon2id runs (metric)")
        refused = [r for r in replies if r[0] == 454]
        eq(len(refused), n - ran, "refused without verifying")
        check(all("4.7.0" in r[1] for r in refused), "454 4.7.0: %r"
              % refused[:1])
        # The user is now blocked from this address: the right password
        # is refused too, without a verification.
        eq(attempt(d, "campaign", PASSWORD)[0], 454, "blocked user")
        eq(metric(d, "outpost_auth_verifications_total"), ran,
           "no verification for a blocked user")


def test_lockout_is_per_user():
    """Four bad passwords for campaign lock campaign out from this
    address; other, with its right password from the same address, still
    gets in; campaign's right password is refused until the block ends."""
    with LimitDaemon(limits(max_failures=4, block='"3s"',
                            delay_base='"0"', delay_max='"0"')) as d:
        s = session(d)
        for i in range(3):
            eq(s.auth("campaign", "nope %d" % i)[0], 535, "failure %d" % i)
        eq(s.auth("campaign", "nope 3")[0], 421, "blocked at the 4th")
        s.close()
        code, text = attempt(d, "other", OTHER_PASSWORD)
        eq(code, 235, "another user from the same address: " + text)
        code, text = attempt(d, "campaign", PASSWORD)
        eq(code, 454, "the blocked user, right password: " + text)
        check("4.7.0" in text, text)
        # other's wrong passwords are other's: one failure, then in.
        s = session(d)
        eq(s.auth("other", "bad")[0], 535, "other: wrong password")
        eq(s.auth("other", OTHER_PASSWORD)[0], 235, "other: right one")
        s.close()
        # The block ends by itself.
        time.sleep(3.5)
        eq(attempt(d, "campaign", PASSWORD)[0], 235, "after the block")


def test_unknown_and_known_names_refused_alike():
    """An unknown name is limited exactly like a configured one, so the
    replies never tell which names exist; neither reaches the log in
    clear when it looks like an address."""
    with LimitDaemon(limits(max_failures=3, delay_base='"0"',
                            delay_max='"0"')) as d:
        seen = {}
        for name in ("ghost@example.org", "ops@example.com"):
            s = session(d)
            got = [s.auth(name, "wrong")[0] for _ in range(3)]
            s.close()
            eq(got, [535, 535, 421], name + ": failures then closed")
            code, text = attempt(d, name, "wrong again")
            eq(code, 454, name + " blocked")
            seen[name] = seconds_blind(text)
        eq(seen["ghost@example.org"], seen["ops@example.com"],
           "the same refusal for an unknown and a known name")
        # The right password of the (known) blocked name: refused alike.
        code, text = attempt(d, "ops@example.com", PASSWORD)
        eq((code, seconds_blind(text)), (454, seen["ghost@example.org"]),
           "known name, right password, blocked")
        log = d.log()
        for clear in ("ghost@example.org", "ops@example.com", "ghost"):
            check(clear not in log, "%r in the log" % clear)


def test_address_cap_spares_known_good_users():
    """One address failing for many names hits max_failures_per_address:
    every name is refused from there, except users who authenticated from
    that address before."""
    cfg = limits(max_failures=3, max_failures_per_address=5,
                 delay_base='"0"', delay_max='"0"')
    with LimitDaemon(cfg) as d:
        eq(attempt(d, "other", OTHER_PASSWORD)[0], 235, "other logs in")
        s = session(d)
        got = [s.auth("spray%d" % i, "x")[0] for i in range(5)]
        s.close()
        eq(got, [535, 535, 535, 535, 421], "the 5th failure blocks")
        before = verified(d)
        eq(before, 5, "five verifications")
        eq(attempt(d, "spray9", "x")[0], 454, "a new name: refused")
        eq(attempt(d, "campaign", PASSWORD)[0], 454,
           "a user new to this address: refused (as any name)")
        eq(attempt(d, "other", OTHER_PASSWORD)[0], 235,
           "a user known good from here: still in")
        eq(verified(d), before, "no verification for refused names")
        # Another address is not concerned.
        eq(attempt(d, "campaign", PASSWORD, source="127.0.0.2")[0], 235,
           "another address")


def test_ipv4_prefix_groups_neighbours():
    cfg = limits(max_failures=2, ipv4_prefix=24, delay_base='"0"',
                 delay_max='"0"')
    with LimitDaemon(cfg) as d:
        s = session(d, "127.0.0.2")
        eq([s.auth("campaign", "x")[0] for _ in range(2)], [535, 421],
           "blocked after 2")
        s.close()
        eq(attempt(d, "campaign", PASSWORD, source="127.0.0.3")[0], 454,
           "the same /24")
        eq(attempt(d, "campaign", PASSWORD, source="127.0.1.3")[0], 235,
           "another /24")


def test_hanging_up_does_not_escape_the_count():
    """A client that sends its guess and hangs up before the answer is
    still counted (else it could make Argon2id run without end)."""
    with LimitDaemon(limits(max_failures=3, delay_base='"0"',
                            delay_max='"0"')) as d:
        for i in range(8):
            s = session(d)
            token = base64.b64encode(b"\0campaign\0guess %d" % i).decode()
            s.sock.sendall(b"AUTH PLAIN " + token.encode() + b"\r\n")
            s.close()
        deadline = time.time() + 30 * SLOW
        while d.log().count("smtp AUTH ") < 8 and time.time() < deadline:
            time.sleep(0.1)
        ran = verified(d)
        check(ran <= 3, "%d verifications for 8 hung-up guesses; "
              "max_failures = 3" % ran)
        eq(metric(d, "outpost_auth_verifications_total"), ran,
           "Argon2id runs (metric)")
        code, text = attempt(d, "campaign", PASSWORD)
        eq(code, 454, "blocked by the hung-up guesses: " + text)


def test_cli_blocks_and_unblock():
    access = ('  access "root" { rights = { "read", "write" } }\n'
              '  access "nobody" { rights = { "read" } }\n')
    cfg = limits(max_failures=2, delay_base='"0"', delay_max='"0"')
    with LimitDaemon(cfg, access=access) as d:
        os.chmod(d.conf_path, 0o644)
        os.chown(d.sock, 0, NOBODY.pw_gid)
        r = cli(d, "auth", "blocks")
        check("campaign" not in r.stdout, "no block yet: " + r.stdout)
        s = session(d)
        eq([s.auth("campaign", "x")[0] for _ in range(2)], [535, 421],
           "campaign blocked")
        s.close()
        s = session(d, "127.0.0.4")
        eq([s.auth("ghost", "x")[0] for _ in range(2)], [535, 421],
           "an unknown name blocked")
        s.close()
        r = cli(d, "auth", "blocks")
        check(re.search(r"^127\.0\.0\.1/32 .* campaign$", r.stdout, re.M),
              "campaign's block listed:\n" + r.stdout)
        check("127.0.0.4/32" in r.stdout, "the unknown name's block "
              "listed:\n" + r.stdout)
        check("ghost" not in r.stdout, "an unconfigured name is shown as "
              "such, not as typed:\n" + r.stdout)
        rows = [json.loads(x) for x in
                cli(d, "auth", "blocks", "--json").stdout.splitlines()]
        mine = [b for b in rows if b.get("user") == "campaign"]
        eq(len(mine), 1, "JSON rows: %r" % rows)
        eq(mine[0]["network"], "127.0.0.1/32", "network")
        check(mine[0]["until_ms"] > time.time() * 1000, "until in future")
        # Reading needs "read": nobody has it.  Lifting needs "write".
        r = cli(d, "auth", "blocks", as_nobody=True)
        check("campaign" in r.stdout, r.stdout)
        r = cli(d, "auth", "unblock", "campaign", rc=1, as_nobody=True)
        check('"write" right needed' in r.stderr, r.stderr)
        eq(attempt(d, "campaign", PASSWORD)[0], 454, "still blocked")
        r = cli(d, "auth", "unblock", "campaign")
        check("1 block lifted" in r.stdout, r.stdout)
        eq(attempt(d, "campaign", PASSWORD)[0], 235, "lifted")
        r = cli(d, "auth", "unblock", "127.0.0.4")
        check("1 block lifted" in r.stdout, r.stdout)
        r = cli(d, "auth", "blocks", "--json")
        eq(r.stdout.strip(), "", "no block left")
        cli(d, "auth", "unblock", "127.0.0.0/33", rc=2)
        # A name outside printable ASCII travels as hex.
        s = session(d)
        eq([s.auth("jürgen", "x")[0] for _ in range(2)], [535, 421],
           "jürgen blocked")
        s.close()
        r = cli(d, "auth", "blocks")
        check("jürgen" in r.stdout, r.stdout)
        r = cli(d, "auth", "unblock", "jürgen", "--json")
        eq(json.loads(r.stdout)["lifted"], 1, r.stdout)
        eq(attempt(d, "jürgen", PASSWORD)[0], 235, "jürgen lifted")
        rec = [(a["uid"], a["command"], a["result"].split(" ")[0])
               for a in audit(d)]
        # User names are often addresses: the audit log has their keyed
        # hash, the same for the same name, never the name.
        hashed = [re.fullmatch(r"auth-unblock user hash:([0-9a-f]{32})", c)
                  for _, c, _ in rec]
        check(hashed[0] and hashed[1] and hashed[3] and not hashed[2],
              "audit records: %r" % rec)
        eq(hashed[0].group(1), hashed[1].group(1), "same name, same hash")
        check(hashed[3].group(1) != hashed[0].group(1), "names differ")
        eq([(u, r) for u, _, r in rec],
           [(NOBODY.pw_uid, "err"), (0, "ok"), (0, "ok"), (0, "ok")],
           "audit uids and results")
        eq(rec[2][1], "auth-unblock address 127.0.0.4", "address record")
        with open(d.audit_path, encoding="utf-8") as f:
            text = f.read()
        check("campaign" not in text and "jürgen" not in text
              and "jürgen".encode().hex() not in text,
              "a user name in clear in the audit log:\n" + text)


def ctl_raw(d, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30 * SLOW)
    s.connect(d.sock)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()


def test_control_protocol():
    with LimitDaemon(limits(max_failures=2)) as d:
        eq(ctl_raw(d, b"auth-blocks\n"), "ok 0\n", "no block")
        for bad in (b"auth-blocks now\n", b"auth-unblock\n",
                    b"auth-unblock address\n", b"auth-unblock all x\n",
                    b"auth-unblock address 127.0.0.1/33\n",
                    b"auth-unblock address ::1/129\n",
                    b"auth-unblock address 127.0.0.1 x\n",
                    b"auth-unblock address localhost\n",
                    b"auth-unblock user-hex zz\n",
                    b"auth-unblock user-hex 610\n",
                    b"auth-unblock user-hex 6100\n",
                    b"auth-unblock user " + b"x" * 300 + b"\n",
                    b"auth-unblock frob x\n"):
            check(ctl_raw(d, bad).startswith("err "), "%r refused" % bad)
        for good in (b"auth-unblock all\n", b"auth-unblock address ::1\n",
                     b"auth-unblock address ::1/64\n",
                     b"auth-unblock address ::ffff:127.0.0.1/120\n",
                     b"auth-unblock address 127.0.0.0/8\n",
                     b"auth-unblock user two words\n",
                     b"auth-unblock user-hex 6a\n"):
            eq(ctl_raw(d, good), "ok 0\n", good)
        eq(ctl_raw(d, b"ping\n"), "ok\n", "still whole")


if __name__ == "__main__":
    run_tests(globals())
