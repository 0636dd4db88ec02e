#!/usr/bin/python3
"""The control socket against callers with few or no rights (issue 8
"Harden"): every CLI view goes through outpostd (the CLI holds no key and
reads no queue file), so `read` and `export` are what decide who sees
what; a corrupt queue record is listed as corrupt instead of stopping
`queue list` and `summary`; a uid with no rights cannot lock root out nor
fill the disk with refusals; audit lines carry no address in clear.

Callers other than root run the real `outpost` under setpriv with uids
60001.. (numeric uids in `access`, no user needed) and gid 60000, which is
the socket's group (`control { group = "60000" }`)."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, SLOW, ControlDaemon,  # noqa: E402
                          TestFailure, check, control_raw, eq, pipeline,
                          run_tests)

GID = 60000
READER, EXPORTER, NOBODY_UID, WRITER = 60001, 60002, 60003, 60004


class CtlDaemon(ControlDaemon):
    """The socket in group GID; the configuration readable by all."""

    def __init__(self, access, config=""):
        super().__init__(config, '  group = "%d"\n%s' % (GID, access))
        os.chmod(self.conf_path, 0o644)


ACCESS = '''  access "root" { rights = { "read", "write", "delete", "export" } }
  access "%d" { rights = { "read" } }
  access "%d" { rights = { "read", "export" } }
  access "%d" { rights = { "read", "write" } }
''' % (READER, EXPORTER, WRITER)


def cli(d, *args, uid=None, rc=0, timeout=120):
    cmd = [OUTPOST, "-c", d.conf_path] + [str(a) for a in args]
    if uid is not None:
        cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % GID,
               "--clear-groups"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout * SLOW, cwd="/")
    if rc is not None and r.returncode != rc:
        raise TestFailure("outpost %s (uid %s): exit %d, want %d\n"
                          "stdout: %s\nstderr: %s"
                          % (" ".join(map(str, args)), uid, r.returncode, rc,
                             r.stdout[-2000:], r.stderr[-2000:]))
    return r


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def lines_of(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def as_uid(uid, fn):
    """Run FN() in a child process with uid UID (gid GID); its return
    value (picklable) comes back."""
    import pickle
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(GID)
            os.setuid(uid)
            out = pickle.dumps(("ok", fn()))
        except BaseException as e:  # noqa: B902 — reported to the parent
            out = pickle.dumps(("err", repr(e)))
        os.write(wfd, out)
        os._exit(0)
    os.close(wfd)
    data = b""
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, v = pickle.loads(data)
    if kind != "ok":
        raise TestFailure("child as uid %d: %s" % (uid, v))
    return v


# --- read and export are what decide ---------------------------------------

def test_rights_matrix():
    with CtlDaemon(ACCESS) as d:
        pipeline(d, ["Jane.Doe@example.test"], sender="news@sender.test")
        qid = json.loads(cli(d, "queue", "list", "--json").stdout)["id"]
        st = os.stat(d.sock)
        eq((st.st_gid, oct(st.st_mode & 0o777)), (GID, oct(0o660)),
           "socket group and mode")
        for uid in (READER, EXPORTER):
            r = cli(d, "queue", "summary", uid=uid)
            check("example.test" in r.stdout, r.stdout)
            rows = jsonl(cli(d, "queue", "summary", "--json",
                             uid=uid).stdout)
            eq([(x["domain"], x["recipients"]) for x in rows],
               [("example.test", 1)], "summary rows")
            rows = jsonl(cli(d, "queue", "list", "--json", uid=uid).stdout)
            eq([x["id"] for x in rows], [qid], "list")
            r = cli(d, "queue", "list", uid=uid)
            check(qid in r.stdout and "SENDER" in r.stdout, r.stdout)
            sh = json.loads(cli(d, "queue", "show", qid, "--json",
                                uid=uid).stdout)
            eq(sh["recipients"][0]["domain"], "example.test", "show")
            check("headers" not in sh, "no headers without asking")
            r = cli(d, "queue", "show", qid, uid=uid)
            check("recipients:" in r.stdout, r.stdout)
        # read alone: no headers, no body.
        r = cli(d, "queue", "show", qid, "--headers", uid=READER, rc=1)
        check('"export" right needed (uid %d)' % READER in r.stderr,
              r.stderr)
        check("Subject" not in r.stdout, r.stdout)
        # export: the headers, addresses hashed.
        r = cli(d, "queue", "show", qid, "--headers", uid=EXPORTER)
        check("Subject: m0" in r.stdout, r.stdout)
        check("From: <hash:" in r.stdout and "news@" not in r.stdout,
              r.stdout)
        j = json.loads(cli(d, "queue", "show", qid, "--headers", "--json",
                           uid=EXPORTER).stdout)
        check(any(h.startswith("Subject: m0") for h in j["headers"]),
              j["headers"])
        # nothing: a clear refusal, for every view.
        for args in (("queue", "summary"), ("queue", "list"),
                     ("queue", "show", qid), ("suspensions",)):
            r = cli(d, *args, uid=NOBODY_UID, rc=1)
            check("permission denied" in r.stderr and
                  "uid %d" % NOBODY_UID in r.stderr, r.stderr)
            eq(r.stdout, "", "nothing shown")
        # The CLI needs neither the key nor the queue files any more.
        os.chmod(d.data, 0o700)
        r = cli(d, "queue", "list", "--json", uid=READER)
        eq([x["id"] for x in jsonl(r.stdout)], [qid], "list via daemon")
        r = cli(d, "queue", "summary", uid=READER)
        check("TOTAL" in r.stdout, r.stdout)


# --- a corrupt record --------------------------------------------------------

def corrupt_one(d, qid):
    """Flip a byte of QID's sealed envelope (the daemon is stopped)."""
    import lmdb
    env = lmdb.open(os.path.join(d.data, "queue"), max_dbs=8,
                    map_size=1 << 30)
    db = env.open_db(b"env", create=False)
    with env.begin(write=True, db=db) as txn:
        key = bytes.fromhex(qid)
        v = bytearray(txn.get(key))
        v[len(v) // 2] ^= 0x5a
        txn.put(key, bytes(v))
    env.close()


def test_corrupt_record_listed():
    with CtlDaemon(ACCESS) as d:
        pipeline(d, ["a%d@example.test" % i for i in range(3)])
        ids = sorted(x["id"] for x in
                     jsonl(cli(d, "queue", "list", "--json").stdout))
        eq(len(ids), 3, "queued")
        d.stop()
        corrupt_one(d, ids[1])
        d.start()
        rows = jsonl(cli(d, "queue", "list", "--json").stdout)
        eq(sorted(x["id"] for x in rows), ids, "every id listed")
        bad = [x for x in rows if x["state"] == "corrupt"]
        eq([x["id"] for x in bad], [ids[1]], "the corrupt one")
        r = cli(d, "queue", "list")
        check(ids[0] in r.stdout and ids[2] in r.stdout, r.stdout)
        check(any(ids[1] in ln and "corrupt" in ln
                  for ln in r.stdout.splitlines()), r.stdout)
        sm = jsonl(cli(d, "queue", "summary", "--json").stdout)
        eq([(x["domain"], x["recipients"]) for x in sm
            if "domain" in x], [("example.test", 2)], "summary goes on")
        eq([x["corrupt"] for x in sm if "corrupt" in x], [[ids[1]]],
           "summary names it")
        r = cli(d, "queue", "summary")
        check("corrupt" in r.stdout and ids[1] in r.stdout, r.stdout)
        r = cli(d, "queue", "show", ids[1], rc=1)
        check("corrupt" in r.stderr, r.stderr)
        cli(d, "queue", "delete", ids[1])
        rows = jsonl(cli(d, "queue", "list", "--json").stdout)
        eq(sorted(x["id"] for x in rows), [ids[0], ids[2]], "deleted")


# --- abuse by a uid with no rights ------------------------------------------

@contextlib.contextmanager
def held(d, uid, n, line=b"", pause=0.0):
    """N connections to D's control socket by UID (group GID), from a child
    process, each sending LINE (then PAUSE s) if given.  The block's value
    is the last one's first answer ("" without LINE); the connections stay
    open, never read, until the block ends."""
    rfd, wfd = os.pipe()
    gr, gw = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.close(gw)
        try:
            os.setgroups([])
            os.setgid(GID)
            os.setuid(uid)
            socks = []
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(d.sock)
                socks.append(s)
                if line:
                    s.sendall(line)
                    time.sleep(pause)
            answer = b""
            if line:
                socks[-1].settimeout(10 * SLOW)
                answer = socks[-1].recv(200)[:200]
            os.write(wfd, b"r" + answer)
            os.read(gr, 1)
        finally:
            os._exit(0)
    os.close(wfd)
    os.close(gr)
    try:
        got = os.read(rfd, 201)
        eq(got[:1], b"r", "uid %d connected %d times" % (uid, n))
        yield got[1:].decode()
    finally:
        os.write(gw, b"x")
        os.close(gw)
        os.close(rfd)
        os.waitpid(pid, 0)


def test_idle_sessions_do_not_lock_out_root():
    with CtlDaemon(ACCESS) as d:
        with held(d, NOBODY_UID, 70):
            time.sleep(1 * SLOW)
            # 70 idle connections by a uid with no rights: root gets in.
            eq(control_raw(d, b"ping\n"), "ok\n", "root's ping")
            r = cli(d, "queue", "hold", "--all")
            check("held" in r.stdout, r.stdout)
            eq(control_raw(d, b"ping\n"), "ok\n", "root's second ping")


def test_reader_sessions_leave_a_reserve():
    """70 idle sessions of a uid holding only "read": a uid with write
    still gets in (per-uid cap, reserve for write/delete)."""
    with CtlDaemon(ACCESS) as d:
        with held(d, READER, 70):
            time.sleep(0.5 * SLOW)
            r = cli(d, "queue", "hold", "--all", uid=WRITER)
            check("held" in r.stdout, r.stdout)
            eq(control_raw(d, b"ping\n"), "ok\n", "root's ping")


def test_stalled_views_leave_room():
    """A uid with "read" starts listings of a big queue and never reads
    them: it holds at most two view threads, root still lists, and the
    daemon still stops cleanly."""
    with CtlDaemon(ACCESS) as d:
        pipeline(d, ["r%d@example.test" % i for i in range(3000)])
        with held(d, READER, 3, b"list json\n", 0.3 * SLOW) as third:
            check(third.startswith("err busy"), "third view: %r" % third)
            rows = jsonl(cli(d, "queue", "list", "--json").stdout)
            eq(len(rows), 3000, "root lists meanwhile")
            r = cli(d, "queue", "summary", "--json")
            eq(jsonl(r.stdout)[0]["recipients"], 3000, "summary")
            # Stopping with the views stalled: a clean exit (the walks
            # end, the queue closes after them).
            d.stop()


def test_refusals_bounded():
    """A loop of commands by a uid with no rights, and of refused
    commands by a uid with some: the audit log and the delivery log grow
    by a bounded number of lines, and the refusals are rate-limited."""
    with CtlDaemon(ACCESS) as d:
        a0 = len(lines_of(d.audit_path))

        def spam(line, n):
            answers = {}
            for _ in range(n):
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(10)
                    s.connect(d.sock)
                    try:
                        s.sendall(line)
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    out = b""
                    while True:
                        b = s.recv(4096)
                        if not b:
                            break
                        out += b
                    s.close()
                except OSError as e:
                    out = repr(e).encode()
                k = out.decode(errors="replace").split(":")[0]
                answers[k] = answers.get(k, 0) + 1
            return answers

        nobody = as_uid(NOBODY_UID, lambda: spam(b"delete all\n", 500))
        # Refused at accept: the answer, or (the close racing the
        # client's write) a reset; never served.
        check(all(k.startswith("err") or "ConnectionReset" in k
                  for k in nobody), nobody)
        reader = as_uid(READER, lambda: spam(b"delete all\n", 500))
        check(all(k.startswith("err") for k in reader), reader)
        # Rate-limited: most of the reader's refusals are "slow down".
        check(sum(v for k, v in reader.items()
                  if "too many" in k or "busy" in k) >= 400 or
              any("too many" in k for k in reader), reader)
        time.sleep(2 * SLOW)  # the delivery log is written each second
        audit = lines_of(d.audit_path)[a0:]
        check(len(audit) <= 40, "%d audit lines for 1000 refusals"
              % len(audit))
        recs = [json.loads(x) for x in audit]
        check(any(r["uid"] == NOBODY_UID for r in recs), "nobody recorded")
        check(any(r["uid"] == READER for r in recs), "reader recorded")
        admin = [x for x in lines_of(d.delivery_log) if '"admin"' in x]
        check(len(admin) <= 40, "%d admin events" % len(admin))
        eq(control_raw(d, b"ping\n"), "ok\n", "root still served")
        # Nothing the daemon printed echoes the refused commands by line.
        check(d.log().count("delete all") <= 40, "diagnostics flooded")


# --- no address in clear in the audit log ----------------------------------

def test_audit_hashes_addresses():
    with CtlDaemon(ACCESS) as d:
        secret = "jane.secretpct%40example.org"
        cli(d, "queue", "hold", "--user", secret)
        cli(d, "queue", "hold", "--user", "bounce+x=y@example.org")
        r = cli(d, "queue", "hold", "--user", secret, uid=READER, rc=1)
        check("jane" not in r.stderr, r.stderr)
        control_raw(d, b"frobnicate jane.secret@example.org\n")
        control_raw(d, b"hold user bounce+jane.secret=example.org@x.test "
                    b"extra\n")
        time.sleep(1.5 * SLOW)
        text = "\n".join(lines_of(d.audit_path) + lines_of(d.delivery_log))
        text += d.log()
        for clear in ("jane", "secretpct", "bounce+x", "frobnicate j"):
            check(clear not in text, "%r in logs:\n%s" % (clear, text))
        h = cli(d, "hash", secret).stdout.strip()
        check(any(h in x for x in lines_of(d.audit_path)),
              "the audit line carries the user's hash")


run_tests(globals())
