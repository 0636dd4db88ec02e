#!/usr/bin/python3
"""Queue export and import: node A, whose messages stay queued (its
destinations refuse connections, so each has had attempts), is drained
with `outpost drain --intake-only`, exported with --all --remove (A's
queue is empty after), and the archive imported into node B, which
delivers every recipient exactly once; ids, creation times, attempt
counts and the held state survive.  Importing the archive again adds
nothing, also after B delivered it.  A wrong passphrase, a truncated and
a tampered archive are refused and add nothing; a uid without the export
(delete with --remove, import) right is refused; ID, --domain and --user
select only their messages.

Run as root (make test does): callers without rights run the real
`outpost` under setpriv with a numeric uid."""

import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (SLOW, Daemon, Dns, Sink, TestFailure,  # noqa
                          check, cli_as, control_wait, delivery_config, eq,
                          free_port_on, passwd_hash, run_tests, wait_for)

GID = 60030
READER = 60031    # read only
EXPORTER = 60032  # read and export: no delete, no import
ACCESS = '''  group = "%d"
  access "root" { rights = { "read", "write", "delete", "export",
                             "import" } }
  access "%d" { rights = { "read" } }
  access "%d" { rights = { "read", "export" } }
''' % (GID, READER, EXPORTER)
HOST = "127.0.0.53"
PASSWORD = "campaign password 1"
PASSPHRASE = "correct horse battery staple"


def users():
    return ('user "campaign" {\n  password = "%s"\n'
            '  sender_domains = { "example.test" }\n}\n'
            % passwd_hash(PASSWORD))


class Node(Daemon):
    """A daemon with its own queue, data_dir and control socket (in a
    directory others may enter); listener "main" relays for loopback,
    "auth" takes AUTH in clear (for messages of a user)."""

    def __init__(self, config, user_block):
        run = tempfile.mkdtemp(prefix="outpost-export-")
        os.chmod(run, 0o755)
        self.sock = os.path.join(run, "control.sock")
        ctl = 'control {\n  socket = "%s"\n%s}\n' % (self.sock, ACCESS)
        super().__init__(config=user_block + config + "\n" + ctl,
                         workdir=run,
                         listeners=[("main", 'tls = "none"'),
                                    ("auth", 'tls = "none"\n'
                                     '  auth_without_tls = true')])
        self.own_tmp = True
        self.delivery_log = os.path.join(self.data, "log", "delivery.log")
        self.audit_path = os.path.join(self.data, "log", "audit.log")

    def start(self, wait=True):
        super().start(wait)
        if wait:
            control_wait(self)
        return self


def cli(d, *args, uid=None):
    return cli_as(d, args, uid, GID)


def ok(d, *args):
    return d.cli(*args).stdout


def answer(out):
    """`export`/`import` data lines ("archive HEX", "exported N", …)."""
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def send(d, rcpts, user=False, subject="x"):
    s = d.smtp(port=d.ports["auth" if user else "main"])
    s.ehlo()
    if user:
        s.login("campaign", PASSWORD)
    s.sendmail("news@example.test", rcpts,
               "From: news@example.test\r\nSubject: %s\r\n\r\nhello %s\r\n"
               % (subject, subject))
    s.quit()


def shown(d, qid):
    return json.loads(ok(d, "queue", "show", qid, "--json"))


def snapshot(d):
    """What must survive: per id its creation, hold and, per recipient,
    domain, state and attempts (hashes differ: each node its own key)."""
    out = {}
    for qid in d.queue_ids():
        s = shown(d, qid)
        out[qid] = (s["created_ms"], s["state"],
                    sorted((r["domain"], r["state"], r["attempts"])
                           for r in s["recipients"]))
    return out


def events(d, kind):
    try:
        with open(d.delivery_log) as f:
            return [json.loads(line) for line in f
                    if '"event":"%s"' % kind in line]
    except OSError:
        return []


def tmpdir():
    p = tempfile.mkdtemp(prefix="outpost-archive-")
    os.chmod(p, 0o777)
    return p


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def setup():
    sink_port = free_port_on([HOST])
    dead_port = free_port_on([HOST])  # nothing listens: every try fails
    dns = Dns(mx=[("later.test", "mx.later.test", 10),
                  ("other.test", "mx.other.test", 10)],
              a=[("mx.later.test", HOST), ("mx.other.test", HOST)])
    return sink_port, dead_port, dns


def fill_a(a):
    """Four messages on A, each tried at least once, then left alone
    (suspended), one of them held.  Returns (ids, the held id)."""
    send(a, ["a@later.test"], subject="one")
    send(a, ["b@later.test", "c@later.test"], subject="two")
    send(a, ["d@other.test"], subject="three")
    send(a, ["e@later.test"], user=True, subject="four")
    # One try per site: a refused connection backs the site off (60 s),
    # so the others wait in place, untried.
    wait_for(lambda: len({e["destination"] for e in
                          events(a, "transient_failure")}) == 2,
             what="both sites tried on A")
    ok(a, "suspend", "later.test", "--for", "1h")
    ok(a, "suspend", "other.test", "--for", "1h")
    ids = sorted(a.queue_ids())
    eq(len(ids), 4, "messages queued on A")
    ok(a, "queue", "hold", ids[0])
    # Attempts settle before the hold and suspensions are all in force.
    wait_for(lambda: shown(a, ids[0])["state"] == "held", what="held")
    return ids, ids[0]


def test_export_remove_import_delivers_once():
    sink_port, dead_port, dns = setup()
    work = tmpdir()
    pp = os.path.join(work, "pass")
    write(pp, PASSPHRASE + "\n", 0o600)
    wpp = os.path.join(work, "pass-world")  # for the uids refused
    write(wpp, PASSPHRASE + "\n", 0o644)
    archive = os.path.join(work, "a.archive")
    ub = users()
    with dns, Sink([HOST], sink_port) as sink:
        with Node(delivery_config(dns, dead_port), ub) as a, \
                Node(delivery_config(dns, sink_port), ub) as b:
            ids, held = fill_a(a)
            before = snapshot(a)
            check(sum(r[2] for s in before.values() for r in s[2]) >= 2,
                  "recipients with attempts: %s" % before)
            out = ok(a, "drain", "--intake-only")
            # Rights: a uid without export; one without delete (remove).
            r = cli(a, "queue", "export", "--all", "--to",
                    os.path.join(work, "r1"), "--passphrase-file", wpp,
                    uid=READER)
            check(r.returncode != 0 and
                  '"export" right needed' in r.stderr, r.stderr)
            check(not os.path.exists(os.path.join(work, "r1")),
                  "a refused export leaves no file")
            r = cli(a, "queue", "export", "--all", "--remove", "--to",
                    os.path.join(work, "r2"), "--passphrase-file", wpp,
                    uid=EXPORTER)
            check(r.returncode != 0 and
                  '"delete" right needed' in r.stderr, r.stderr)
            eq(sorted(a.queue_ids()), ids, "nothing removed by refusals")

            out = answer(ok(a, "queue", "export", "--all", "--remove",
                            "--to", archive, "--passphrase-file", pp))
            eq(out.get("exported"), "4", "exported: %s" % out)
            eq(out.get("removed"), "4", "removed: %s" % out)
            eq(a.queue_ids(), [], "A's queue after export --remove")
            eq(os.stat(archive).st_mode & 0o777, 0o600, "archive mode")
            # The delivery log is written behind: wait for its lines.
            wait_for(lambda: sorted(e["id"] for e in events(a, "exported"))
                     == ids, what="an exported event per message")
            eq(len(events(a, "bounce")), 0, "no bounce on A")
            audit = open(a.audit_path).read()
            check("export all remove" in audit, "audited: " + audit[-600:])
            check(PASSPHRASE not in audit, "no passphrase in the audit log")

            # B: destinations suspended first, to look before delivery.
            ok(b, "suspend", "later.test", "--for", "1h")
            ok(b, "suspend", "other.test", "--for", "1h")
            pub = os.path.join(work, "public-copy")
            shutil.copy(archive, pub)
            os.chmod(pub, 0o644)
            r = cli(b, "queue", "import", pub, "--passphrase-file", wpp,
                    uid=EXPORTER)
            check(r.returncode != 0 and
                  '"import" right needed' in r.stderr, r.stderr)
            # Refused archives add nothing.
            bad = os.path.join(work, "wrong")
            write(bad, "not the passphrase\n", 0o600)
            r = cli(b, "queue", "import", archive, "--passphrase-file", bad)
            check(r.returncode != 0 and "wrong key or passphrase"
                  in r.stderr, "wrong passphrase: " + r.stderr)
            data = open(archive, "rb").read()
            cut = os.path.join(work, "cut")
            with open(cut, "wb") as f:
                f.write(data[:len(data) - 40])
            r = cli(b, "queue", "import", cut, "--passphrase-file", pp)
            check(r.returncode != 0 and "truncated" in r.stderr,
                  "truncated: " + r.stderr)
            bent = os.path.join(work, "bent")
            flip = bytearray(data)
            flip[len(data) // 2] ^= 0x01
            with open(bent, "wb") as f:
                f.write(bytes(flip))
            r = cli(b, "queue", "import", bent, "--passphrase-file", pp)
            check(r.returncode != 0 and "altered" in r.stderr,
                  "tampered: " + r.stderr)
            eq(b.queue_ids(), [], "nothing imported from refused archives")

            out = answer(ok(b, "queue", "import", archive,
                            "--passphrase-file", pp))
            eq(out.get("imported"), "4", "imported: %s" % out)
            after = snapshot(b)
            eq(after, before, "ids, creation, hold and attempts on B")
            wait_for(lambda: sorted(e["id"] for e in events(b, "imported"))
                     == ids, what="an imported event per message")
            r = cli(b, "queue", "import", archive, "--passphrase-file", pp)
            check(r.returncode != 0 and "imported here already" in r.stderr,
                  "second import: " + r.stderr)
            eq(sorted(b.queue_ids()), ids, "a second import adds none")

            ok(b, "resume", "later.test")
            ok(b, "resume", "other.test")
            sink.wait(lambda st: st.get("rcpt_accepted", 0) >= 4,
                      what="the recipients not held")
            eq(b.queue_ids(), [held], "the held one waits")
            ok(b, "queue", "release", held)
            sink.wait_messages(4)
            wait_for(lambda: b.queue_ids() == [], what="B's queue empty")
            r = cli(b, "queue", "import", archive, "--passphrase-file", pp)
            check(r.returncode != 0 and "imported here already" in r.stderr,
                  "import after delivery: " + r.stderr)
            time.sleep(1.5 * SLOW)
            got = []
            for m in sink.messages():
                env = m.split(b"\r\n", 1)[0].decode()
                got += re.findall(r"<([^>]*)>", env.split(" to=", 1)[1]
                                  .split(" tls=")[0])
            eq(sorted(got), ["a@later.test", "b@later.test", "c@later.test",
                             "d@other.test", "e@later.test"],
               "each recipient delivered exactly once")
    shutil.rmtree(work, ignore_errors=True)


def test_selection():
    """ID…, --domain and --user export only theirs (copies: nothing
    leaves A); a key file works as well as a passphrase."""
    sink_port, dead_port, dns = setup()
    work = tmpdir()
    key = os.path.join(work, "key")
    write(key, os.urandom(32).hex() + "\n", 0o600)
    ub = users()
    with dns:
        with Node(delivery_config(dns, dead_port), ub) as a, \
                Node(delivery_config(dns, dead_port), ub) as c:
            ids, _ = fill_a(a)
            ok(c, "suspend", "later.test", "--for", "1h")
            ok(c, "suspend", "other.test", "--for", "1h")
            by = {}
            for qid in ids:
                s = shown(a, qid)
                by[qid] = ({r["domain"] for r in s["recipients"]},
                           s.get("user"))
            other = [q for q in ids if "other.test" in by[q][0]]
            mine = [q for q in ids if by[q][1]]
            eq(len(other), 1, "one message to other.test")
            eq(len(mine), 1, "one message of a user")
            cases = [("ids", [ids[0]], [ids[0]]),
                     ("domain", ["--domain", "other.test"], other),
                     ("user", ["--user", "campaign"], mine)]
            for name, sel, want in cases:
                path = os.path.join(work, name)
                out = answer(ok(a, "queue", "export", *sel, "--to", path,
                                "--key-file", key))
                eq(out.get("exported"), str(len(want)), name + ": " +
                   str(out))
                eq(sorted(a.queue_ids()), ids, "a copy leaves A as it was")
                before = set(c.queue_ids())
                out = answer(ok(c, "queue", "import", path, "--key-file",
                                key))
                eq(sorted(set(c.queue_ids()) - before), sorted(want),
                   "%s: only the selected messages" % name)
            r = cli(c, "queue", "import", os.path.join(work, "user"),
                    "--key-file", key)
            check(r.returncode != 0, "the same archive again: refused")
            path = os.path.join(work, "all")
            ok(a, "queue", "export", "--all", "--to", path, "--key-file",
               key)
            out = answer(ok(c, "queue", "import", path, "--key-file", key))
            eq(out.get("imported"), "1", "only the one not there: %s" % out)
            eq(out.get("skipped"), "3", "the others skipped: %s" % out)
            eq(shown(c, ids[0])["state"], "held", "held by id, kept held")
            eq(sorted(c.queue_ids()), ids, "C holds each once")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise TestFailure("run as root: callers without rights run under "
                          "setpriv")
    run_tests(globals())
