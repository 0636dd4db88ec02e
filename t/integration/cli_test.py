#!/usr/bin/python3
"""The operator's CLI against a running outpostd: queue summary, list and
show (--headers), hold/release/retry/delete/bounce through the control
socket, suspend/resume, rights and the audit log, `outpost log`.  The
receivers are outpost-sink processes and DNS is a dnsmasq of our own, all
on loopback.  At the end, a timing of `queue summary` over a large queue
(printed, not asserted; OUTPOST_CLI_PERF_N sets its size)."""

import json
import os
import pwd
import grp
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (ASAN, OUTPOST, SLOW,  # noqa: E402
                          ControlDaemon, Dns, Sink, TestFailure, check,
                          control_raw, delivery_config, eq, free_port_on,
                          pipeline, run_tests, wait_empty, wait_for)

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


# --- helpers ---------------------------------------------------------------

def cli_daemon(config="", access=None):
    """ACCESS: text of access blocks, or None (the default: root may do
    everything)."""
    return ControlDaemon(config, access or "", prefix="outpost-cli-")


def open_to_nobody(d):
    """Let nobody read the configuration and connect to the socket (the
    group of a 0660 socket; as an operators' group would be)."""
    os.chmod(d.tmp, 0o755)
    os.chmod(d.conf_path, 0o644)
    os.chown(d.sock, 0, NOBODY.pw_gid)


def cli(d, *args, rc=0, as_nobody=False, timeout=120):
    cmd = [OUTPOST, "-c", d.conf_path] + [str(a) for a in args]
    if as_nobody:
        cmd = ["setpriv", "--reuid=%d" % NOBODY.pw_uid,
               "--regid=%d" % NOBODY.pw_gid, "--clear-groups"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout * SLOW, cwd="/")
    if rc is not None and r.returncode != rc:
        raise TestFailure("outpost %s: exit %d, want %d\nstdout: %s\n"
                          "stderr: %s" % (" ".join(map(str, args)),
                                          r.returncode, rc, r.stdout[-2000:],
                                          r.stderr[-2000:]))
    return r


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summary(d):
    """queue summary --json, by domain."""
    return {row["domain"]: row
            for row in jsonl(cli(d, "queue", "summary", "--json").stdout)}



def audit(d):
    try:
        with open(d.audit_path) as f:
            return jsonl(f.read())
    except FileNotFoundError:
        return []


def delivery_events(d):
    try:
        with open(d.delivery_log) as f:
            return jsonl(f.read())
    except FileNotFoundError:
        return []


def wait_tried(d, n, timeout=60):
    """Wait until N messages are queued and each has had its first round
    (deferred: its next attempt is an hour away)."""
    def tried():
        ms = jsonl(cli(d, "queue", "list", "--json").stdout)
        later = time.time() * 1000 + 1800 * 1000
        return len(ms) == n and all(m["next_attempt_ms"] > later
                                    for m in ms) and ms
    return wait_for(tried, timeout, "%d messages tried once" % n)


def rcpt_hash(d, addr):
    return cli(d, "hash", addr).stdout.strip()


# --- tests -----------------------------------------------------------------

def test_protocol():
    with cli_daemon() as d:
        eq(control_raw(d, b"ping\n"), "ok\n", "ping")
        eq(control_raw(d, b"suspensions\n"), "ok 0\n", "no suspension")
        for bad in (b"ping \n", b" ping\n", b"hold  all\n", b"ping\r\n",
                    b"hold\tall\n", b"\n", b"hold all\x00\n"):
            check(control_raw(d, bad).startswith("err malformed"),
                  "%r refused" % bad)
        check(control_raw(d, b"frobnicate\n")
              .startswith("err unknown command"),
              "unknown command")
        for bad in (b"hold\n", b"hold id 12\n", b"hold id xyz0123456789abc\n",
                    b"hold domain\n", b"hold domain a..b\n", b"hold all x\n",
                    b"suspend x.test\n", b"suspend x.test 0\n",
                    b"suspend x.test 99999999\n", b"suspend x.test 1h\n",
                    b"resume\n", b"check\n", b"check import\n",
                    b"ping now\n"):
            check(control_raw(d, bad).startswith("err "), "%r refused" % bad)
        check(control_raw(d, b"ping\nping\n").startswith("err one command"),
              "one command per connection")
        check(control_raw(d, b"ping").startswith("err command not ended"),
              "a line without LF, then EOF")
        long = control_raw(d, b"hold user " + b"x" * 5000 + b"\n")
        check(long == "" or long.startswith("err command longer"),
              "a line over 4 KiB: %r" % long[:80])
        # A client that says nothing is dropped after 10 s.
        t0 = time.time()
        eq(control_raw(d, b"", shut=False, timeout=40), "", "silent client")
        took = time.time() - t0
        check(9 <= took <= 15 * SLOW, "dropped after %.1fs" % took)
        # The socket still answers, and the daemon is whole.
        eq(control_raw(d, b"ping\n"), "ok\n", "ping after all that")
        mode = os.stat(d.sock).st_mode & 0o777
        eq(oct(mode), oct(0o660), "socket mode")
    check(not os.path.exists(d.sock), "socket removed at shutdown")


def test_summary_list_and_deferrals():
    hosts = ["127.0.0.40"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("a.test", "mx.cli.test", 10), ("b.test", "mx.cli.test", 10),
                  ("c.test", "mx.cli.test", 10)],
              a=[("mx.cli.test", "127.0.0.40")])
    cfg = delivery_config(dns, port).replace('"1s"', '"1h"')
    with dns, Sink(hosts, port, ["--data-reply", "451 4.3.0 try later"],
                   maildir=False), cli_daemon(cfg) as d:
        pipeline(d, ["u%d@a.test" % i for i in range(30)])
        pipeline(d, ["v%d@B.test" % i for i in range(20)])
        pipeline(d, ["w%d@c.test" % i for i in range(10)], per_msg=2)
        # Every recipient gets its first attempt (451), then waits 1 h.
        s = wait_for(lambda: (lambda s: s if all(
            s.get(k, {}).get("deferred") == n for k, n in
            (("a.test", 30), ("b.test", 20), ("c.test", 10))) else None)(
                summary(d)), 60, "every recipient deferred once")
        for dom, msgs, rcpts in (("a.test", 30, 30), ("b.test", 20, 20),
                                 ("c.test", 5, 10)):
            row = s[dom]
            eq(row["messages"], msgs, dom + " messages")
            eq(row["recipients"], rcpts, dom + " recipients")
            eq(row["held"], 0, dom + " held")
            eq(row["last_error"], {"code": 451, "status": "4.3.0"},
               dom + " last error")
            eq(row["suspended"], False, dom + " suspended")
            check(0 <= row["oldest_age_s"] < 600, "oldest age")
        eq(set(s), {"a.test", "b.test", "c.test"}, "domains")
        text = cli(d, "queue", "summary").stdout
        check("TOTAL" in text and " 60 " in text.split("TOTAL")[1] + " ",
              "table total: " + text)
        check("451 4.3.0" in text, "last error in the table")
        # queue list filters.
        eq(len(jsonl(cli(d, "queue", "list", "--json").stdout)), 55,
           "all messages")
        eq(len(jsonl(cli(d, "queue", "list", "--domain", "b.test",
                         "--json").stdout)), 20, "--domain b.test")
        eq(len(jsonl(cli(d, "queue", "list", "--deferred",
                         "--json").stdout)), 55, "--deferred")
        eq(len(jsonl(cli(d, "queue", "list", "--held", "--json").stdout)),
           0, "--held")
        # Hold by domain: the summary and the list see it at once (the
        # schedule index), before and after a restart.
        r = cli(d, "queue", "hold", "--domain", "c.test")
        eq(r.stdout.strip(), "5 messages held", "hold output")
        wait_for(lambda: summary(d)["c.test"]["held"] == 10, 10,
                 "c.test held in the summary")
        held = jsonl(cli(d, "queue", "list", "--held", "--json").stdout)
        eq(len(held), 5, "--held after hold")
        check(all(m["state"] == "held" for m in held), "state held")
        shown = json.loads(cli(d, "queue", "show", held[0]["id"],
                               "--json").stdout)
        eq(shown["state"], "held", "show: held")
        check("held" in shown["flags"], "show: held flag")
        # No address in clear anywhere.
        for out in (text, cli(d, "queue", "list").stdout,
                    cli(d, "queue", "show", held[0]["id"]).stdout):
            check("@" not in out, "no address in: " + out[:300])
        # Usage errors exit 2.
        cli(d, "queue", "hold", rc=2)
        cli(d, "queue", "hold", "--all", "--domain", "a.test", rc=2)
        cli(d, "queue", "hold", "nothex", rc=2)
        cli(d, "queue", "summary", "--held", rc=2)
        cli(d, "suspend", "x.test", "--for", "forever", rc=2)
        # An unknown id: a runtime error.
        r = cli(d, "queue", "release", "0123456789abcdef", rc=1)
        check("no such message" in r.stderr, r.stderr)


def test_hold_release_retry():
    hosts = ["127.0.0.41"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("r.test", "mx.r.test", 10)],
              a=[("mx.r.test", "127.0.0.41")])
    cfg = delivery_config(dns, port, '''
destination "*" { backoff_pause = 1s backoff_max = 1s }''').replace(
        '"1s" }', '"1h" }')
    sink = Sink(hosts, port)   # not listening yet: connections fail
    with dns, cli_daemon(cfg) as d:
        pipeline(d, ["m%d@r.test" % i for i in range(6)])
        ids = [m["id"] for m in wait_tried(d, 6)]
        r = cli(d, "queue", "hold", ids[0], ids[1])
        eq(r.stdout.strip(), "2 messages held", "hold two by id")
        with sink:
            # Due in an hour: nothing goes until retried.
            time.sleep(1.5 * SLOW)
            eq(sink.stats().get("messages", 0), 0, "nothing before retry")
            r = cli(d, "queue", "retry", "--domain", "r.test", "--json")
            eq(json.loads(r.stdout), {"command": "retry", "changed": 4},
               "retry skips held messages")
            sink.wait_messages(4, timeout=30)
            time.sleep(2 * SLOW)
            eq(sink.stats()["messages"], 4, "held messages stay")
            s = summary(d)
            eq((s["r.test"]["recipients"], s["r.test"]["held"]), (2, 2),
               "two held left")
            r = cli(d, "queue", "release", "--all")
            eq(r.stdout.strip(), "2 messages released", "release --all")
            sink.wait_messages(6, timeout=30)
            wait_empty(d)
        verbs = [a["command"].split()[0] for a in audit(d)]
        eq(verbs, ["hold", "hold", "retry", "release"], "audited changes")
        check(all(a["uid"] == 0 and a["user"] == "root" for a in audit(d)),
              "audited as root")
        admin = wait_for(lambda: (lambda a: a if len(a) == 4 else None)(
            [e for e in delivery_events(d) if e["event"] == "admin"]), 10,
            "4 admin events in the delivery log")
        eq([(e["command"], e.get("count")) for e in admin],
           [("hold id " + ids[0], 1), ("hold id " + ids[1], 1),
            ("retry domain r.test", 4), ("release all", 2)],
           "EV_ADMIN events")


def test_suspend_resume():
    hosts = ["127.0.0.42"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("s.test", "mx.s.test", 10)],
              a=[("mx.s.test", "127.0.0.42")])
    with dns, Sink(hosts, port) as sink, \
            cli_daemon(delivery_config(dns, port)) as d:
        r = cli(d, "suspend", "S.test", "--for", "2h", "--reason",
                "asked  by postmaster@s.test")
        check(r.stdout.startswith("S.test suspended until"), r.stdout)
        pipeline(d, ["x%d@s.test" % i for i in range(3)])
        time.sleep(3 * SLOW)
        eq(sink.stats().get("connections_total", 0), 0,
           "no connection while suspended")
        sus = jsonl(cli(d, "suspensions", "--json").stdout)
        eq([x["destination"] for x in sus], ["s.test"], "listed")
        eq(sus[0]["reason"], "asked by <address>", "reason, scrubbed")
        left = sus[0]["until_ms"] / 1000 - time.time()
        check(7000 < left <= 7200, "until in 2 h: %.0f s" % left)
        row = summary(d)["s.test"]
        eq(row["recipients"], 3, "queued while suspended")
        eq(row["suspended"]["reason"], "asked by <address>", "in summary")
        check("until" in cli(d, "queue", "summary").stdout, "table")
        eq(cli(d, "resume", "s.test").stdout.strip(), "s.test resumed",
           "resume")
        sink.wait_messages(3, timeout=30)
        wait_empty(d)
        eq(jsonl(cli(d, "suspensions", "--json").stdout), [],
           "no suspension left")
        eq([a["command"] for a in audit(d)],
           ["suspend s.test 7200 asked by <address>", "resume s.test"],
           "audited (scrubbed)")


def test_delete_and_bounce():
    hosts = ["127.0.0.43"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("gone.test", "mx.gone.test", 10),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.gone.test", "127.0.0.44"),      # nobody listens
                 ("mx.sender.test", "127.0.0.43")])
    # A message that reaches gone.test while it is backed off waits, held
    # in place, for the pause to end before its first attempt: short.
    cfg = delivery_config(dns, port, '''
destination "gone.test" { backoff_pause = 1s backoff_max = 1s }''').replace(
        '"1s" }', '"1h" }', 1)
    with dns, Sink(hosts, port) as sink, cli_daemon(cfg) as d:
        pipeline(d, ["g%d@gone.test" % i for i in range(3)])
        ids = [m["id"] for m in wait_tried(d, 3)]
        row = summary(d)["gone.test"]
        check(row["deferred"] >= 1, "deferred: %s" % row)
        eq(row["last_error"]["code"], 0, "no reply: %s" % row)
        r = cli(d, "queue", "delete", ids[0])
        eq(r.stdout.strip(), "1 message deleted", "delete by id")
        wait_for(lambda: len(d.queue_ids()) == 2, 10, "one gone")
        cli(d, "queue", "show", ids[0], rc=1)
        r = cli(d, "queue", "bounce", "--domain", "gone.test")
        eq(r.stdout.strip(), "2 messages bounced", "bounce by domain")
        sink.wait_messages(2, timeout=30)
        wait_empty(d)
        time.sleep(1 * SLOW)
        dsns = sink.messages()
        eq(len(dsns), 2, "one DSN per bounced message, none for the "
           "deleted one")
        for m in dsns:
            check(b"Action: failed" in m, "a failure DSN")
        eq([a["result"] for a in audit(d)], ["ok 1", "ok 2"], "audited")


def test_rights_refused_and_audited():
    access = '''  access "root" { rights = { "read", "write", "delete" } }
  access "nobody" { rights = { "read" } }
'''
    with cli_daemon(access=access) as d:
        pipeline(d, ["z@nowhere.test"])
        qid = d.queue_ids()[0]
        open_to_nobody(d)
        # Reading is allowed...
        r = cli(d, "suspensions", as_nobody=True)
        check("DESTINATION" in r.stdout, r.stdout)
        # ...changing is not, and says which right is missing.
        r = cli(d, "queue", "hold", "--all", rc=1, as_nobody=True)
        check('permission denied: "write" right needed (uid %d)'
              % NOBODY.pw_uid in r.stderr, r.stderr)
        r = cli(d, "queue", "delete", qid, rc=1, as_nobody=True)
        check('"delete" right needed' in r.stderr, r.stderr)
        r = cli(d, "suspend", "x.test", rc=1, as_nobody=True)
        check('"write" right needed' in r.stderr, r.stderr)
        # Views go through outpostd: "read" is enough, no queue file or
        # key is opened by the CLI.
        r = cli(d, "queue", "summary", as_nobody=True)
        check("TOTAL" in r.stdout, r.stdout)
        # Root lacks "export" here: no headers.
        r = cli(d, "queue", "show", qid, "--headers", rc=1)
        check('"export" right needed (uid 0)' in r.stderr, r.stderr)
        eq(len(d.queue_ids()), 1, "nothing changed")
        rec = audit(d)
        eq([(a["uid"], a["user"], a["command"]) for a in rec],
           [(NOBODY.pw_uid, "nobody", "hold all"),
            (NOBODY.pw_uid, "nobody", "delete id " + qid),
            (NOBODY.pw_uid, "nobody", "suspend x.test 3600"),
            (0, "root", "show %s headers" % qid)], "audit records")
        check(all(a["result"].startswith("err permission denied")
                  for a in rec), "refusals recorded")
        st = os.stat(d.audit_path)
        eq(oct(st.st_mode & 0o777), oct(0o600), "audit log mode")
        admin = wait_for(lambda: (lambda a: a if len(a) == 4 else None)(
            [e for e in delivery_events(d) if e["event"] == "admin"]), 10,
            "an admin event per refusal")
        eq(admin[0]["admin"], "nobody (uid %d)" % NOBODY.pw_uid, "who")


def test_show_headers():
    with cli_daemon() as d:
        pipeline(d, ["Jane.Doe@Example.TEST"], sender="news@sender.test")
        qid = d.queue_ids()[0]
        r = cli(d, "queue", "show", qid, "--headers")
        check("headers:" in r.stdout, r.stdout)
        h = rcpt_hash(d, "news@sender.test")
        check("From: <hash:%s@sender.test>" % h in r.stdout,
              "From scrubbed: " + r.stdout)
        for clear in ("news@", "Jane", "jane", "m0@"):
            check(clear not in r.stdout, "%r in %s" % (clear, r.stdout))
        j = json.loads(cli(d, "queue", "show", qid, "--headers",
                           "--json").stdout)
        check("From: <hash:%s@sender.test>" % h in j["headers"],
              j["headers"])
        eq(j["recipients"][0]["hash"], rcpt_hash(d, "jane.doe@example.test"),
           "recipient hash")
        eq(j["recipients"][0]["domain"], "example.test", "recipient domain")
        rec = audit(d)
        eq([(a["command"], a["result"]) for a in rec],
           [("show %s headers" % qid, "ok"),
            ("show %s json headers" % qid, "ok")], "each look recorded")


def test_json_is_utf8_whatever_the_message_holds():
    """Bytes that are not UTF-8 in a queued message's header (8BITMIME
    lets them in) reach the control socket's JSON through `show … json
    headers`: every JSON line, from the socket and from the CLI, decodes as
    strict UTF-8 and parses, each invalid byte as U+FFFD, valid UTF-8 kept;
    the audit log too."""
    with cli_daemon() as d:
        s = d.smtp()
        s.ehlo()
        s.sendmail("news@sender.test", ["someone@x.test"],
                   b"From: <news@sender.test>\r\n"
                   b"Subject: caf\xc3 \xff\xfe end \xe2\x82\r\n"
                   b"X-Fine: Gr\xc3\xbc\xc3\x9fe \xf0\x9f\x8e\x89\r\n"
                   b"\r\nbody\r\n", mail_options=["BODY=8BITMIME"])
        s.quit()
        qid = d.queue_ids()[0]
        raw = subprocess.run(
            [OUTPOST, "-c", d.conf_path, "queue", "show", qid, "--json",
             "--headers"], capture_output=True, timeout=60 * SLOW).stdout
        j = json.loads(raw.decode("utf-8", "strict"))
        subject = [h for h in j["headers"] if h.startswith("Subject:")]
        eq(subject, ["Subject: caf\ufffd \ufffd\ufffd end \ufffd\ufffd"],
           "invalid bytes as U+FFFD")
        check("X-Fine: Gr\u00fc\u00dfe \U0001f389" in j["headers"],
              "valid UTF-8 kept: %r" % j["headers"])
        # The socket itself: every line but the final one is JSON.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30 * SLOW)
        sock.connect(d.sock)
        sock.sendall(b"show %s json headers\n" % qid.encode())
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = sock.recv(65536)
            if not b:
                break
            out += b
        sock.close()
        lines = out.split(b"\n")
        check(lines[-1] == b"" and lines[-2].startswith(b"ok"),
              "final line: %r" % out[-200:])
        check(len(lines) > 2, "a JSON line: %r" % out[:200])
        for line in lines[:-2]:
            json.loads(line.decode("utf-8", "strict"))
        with open(d.audit_path, "rb") as f:
            for line in f:
                json.loads(line.decode("utf-8", "strict"))


def test_log_rcpt_and_follow():
    hosts = ["127.0.0.45"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("l.test", "mx.l.test", 10)],
              a=[("mx.l.test", "127.0.0.45")])
    with dns, Sink(hosts, port) as sink, \
            cli_daemon(delivery_config(dns, port)) as d:
        pipeline(d, ["one@l.test", "two@l.test", "one@l.test",
                     "defer1@l.test"])
        sink.wait_messages(3, timeout=30)
        h1 = rcpt_hash(d, "one@l.test")
        # The delivery log is written at least once a second.
        wait_for(lambda: sum(1 for e in delivery_events(d)
                             if e.get("rcpt_hash") == h1
                             and e["event"] == "delivery") == 2, 10,
                 "two deliveries of one@ in the log")
        want = [e for e in delivery_events(d) if e.get("rcpt_hash") == h1]
        got = jsonl(cli(d, "log", "--rcpt", "ONE@l.test").stdout)
        eq(got, want, "log --rcpt: exactly the recipient's lines")
        check(len(got) >= 4, "reception and delivery, twice: %d" % len(got))
        got = jsonl(cli(d, "log", "--rcpt", "one@l.test", "--event",
                        "delivery", d.delivery_log).stdout)
        eq(len(got), 2, "--event delivery")
        got = wait_for(lambda: jsonl(cli(d, "log", "--event",
                                         "transient_failure,bounce").stdout),
                       10, "defer1@ deferred, in the log")
        check(all(e["event"] == "transient_failure" for e in got),
              "only transient failures: %s" % got)
        eq({e["rcpt_hash"] for e in got}, {rcpt_hash(d, "defer1@l.test")},
           "of defer1@")
        with open(d.delivery_log, "rb") as f:
            raw = f.read().decode()
        check("one@l.test" not in raw, "no address in the log")
        log_follow(d)


class Lines:
    """A child's stdout, line by line, with a timeout."""

    def __init__(self, proc):
        self.proc, self.buf = proc, b""

    def next(self, timeout=10):
        import select
        deadline = time.time() + timeout * SLOW
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.proc.stdout], [], [],
                                              left)[0]:
                raise TestFailure("no line in %ds (have %r)"
                                  % (timeout, self.buf))
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise TestFailure("EOF (have %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def log_follow(d):
    """-f: follow a file across a rotation (rename, then a new file)."""
    tmp = tempfile.mkdtemp(prefix="outpost-log-")
    path = os.path.join(tmp, "d.log")
    with open(path, "w") as f:
        f.write('{"event":"delivery","rcpt_hash":"aa"}\n'
                '{"event":"reception","rcpt_hash":"aa"}\n')
    follower = subprocess.Popen(
        [OUTPOST, "-c", d.conf_path, "log", "-f", "--event", "delivery",
         path], stdout=subprocess.PIPE)
    out = Lines(follower)
    try:
        # -f starts at the end (as tail -f): "aa" is history.  Lines "s"
        # tell when it has got there.
        for i in range(50):
            with open(path, "a") as f:
                f.write('{"event":"delivery","rcpt_hash":"s%d"}\n' % i)
            try:
                first = out.next(timeout=0.3)
                break
            except TestFailure:
                continue
        else:
            raise TestFailure("-f printed nothing")
        check(first["rcpt_hash"].startswith("s"), "from the end: %s" % first)
        with open(path, "a") as f:
            f.write('{"event":"delivery","rcpt_hash":"bb"}\n'
                    '{"event":"delivery","rcpt')
        got = out.next()
        while got["rcpt_hash"].startswith("s"):
            got = out.next()
        eq(got["rcpt_hash"], "bb", "appended line")
        time.sleep(0.6)
        with open(path, "a") as f:
            f.write('_hash":"cc"}\n')
        eq(out.next()["rcpt_hash"], "cc", "a line written in two pieces")
        os.rename(path, path + ".1")
        with open(path + ".1", "a") as f:
            f.write('{"event":"delivery","rcpt_hash":"dd"}\n')
        with open(path, "w") as f:
            f.write('{"event":"bounce","rcpt_hash":"ee"}\n'
                    '{"event":"delivery","rcpt_hash":"ff"}\n')
        eq(out.next()["rcpt_hash"], "dd", "the rest of the rotated file")
        eq(out.next()["rcpt_hash"], "ff", "then the new file")
        with open(path, "a") as f:
            f.write('{"event":"delivery","rcpt_hash":"gg"}\n')
        eq(out.next()["rcpt_hash"], "gg", "and what is added to it")
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def test_summary_speed():
    """Not asserted: how long `queue summary` takes over a large queue
    (OUTPOST_CLI_PERF_N messages of one recipient each, 1000 domains),
    computed by the daemon (idle: no DNS server, every message waits)."""
    n = int(os.environ.get("OUTPOST_CLI_PERF_N",
                           "20000" if ASAN else "200000"))
    if n <= 0:
        print("# summary speed: skipped (OUTPOST_CLI_PERF_N=0)")
        return
    # No DNS server: every delivery defers at once, then waits (5 min).
    with cli_daemon('queue { map_size = 16G }\n') as d:
        t0 = time.time()
        rc, rep = d.load("--count", n, "--sessions", 8, "--size", 1024,
                         "--pipelining", "--domains", 1000,
                         "--progress=never", timeout=1800)
        eq(rc, 0, "load: %s" % rep)
        print("# summary speed: %d messages queued in %.1f s"
              % (n, time.time() - t0))
        for _ in range(2):  # the second run: the queue in the page cache
            t0 = time.time()
            r = cli(d, "queue", "summary", "--json", rc=None, timeout=600)
            took = time.time() - t0
            eq(r.returncode, 0, "summary: " + r.stderr)
            rows = jsonl(r.stdout)
            eq(sum(x["recipients"] for x in rows), n, "recipients counted")
            eq(len(rows), 1000, "domains")
            print("# summary speed: queue summary over %d recipients: "
                  "%.2f s wall (%s build)"
                  % (n, took, "ASan" if ASAN else "release"))


if __name__ == "__main__":  # cli_operate_test imports the helpers
    run_tests(globals())
