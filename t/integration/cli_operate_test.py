#!/usr/bin/env python3
"""`outpost config` (the effective configuration, like `postconf -n`) and
`outpost log`'s filters (--id, --since, --until) and -f from the end of the
file, with the real programs (mta/cli/cli_config.c, cli_log.c,
conf/conf_print.c)."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, OUTPOSTD, SLOW, SRC,  # noqa: E402
                          ControlDaemon, Dns, Sink, TestFailure, check,
                          delivery_config, eq, free_port_on, pipeline,
                          run_tests)
from cli_test import Lines, cli, delivery_events, jsonl, wait_for  # noqa


def run(*args, rc=0, env=None):
    r = subprocess.run([str(a) for a in args], capture_output=True,
                       text=True, timeout=60 * SLOW, cwd="/", env=env)
    if rc is not None and r.returncode != rc:
        raise TestFailure("%s: exit %d, want %d\nstdout: %s\nstderr: %s"
                          % (" ".join(map(str, args)), r.returncode, rc,
                             r.stdout[-2000:], r.stderr[-2000:]))
    return r


def write(dirname, name, text):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def config_of(path, *more):
    return run(OUTPOST, "-c", path, "config", *more).stdout


# A few keys away from their defaults, one section with a title.
CHANGED = '''hostname = "mx.example.test"
listener "127.0.0.1:2525" { }
limits {
  max_message_size = 50M
  max_recipients = 1000
}
destination "gmail.com" { max_connections = 30 }
'''


def test_config_prints_what_differs():
    tmp = tempfile.mkdtemp(prefix="outpost-config-")
    data = 'data_dir = "%s"\n' % tmp
    path = write(tmp, "a.conf", data + CHANGED)
    out = config_of(path)
    # max_recipients = 1000 is its default: not printed.
    eq(out, 'hostname="mx.example.test"\n' + data.replace(" = ", "=") +
       'limits {\n  max_message_size="50M"\n}\n'
       'listener "127.0.0.1:2525" {\n}\n'
       'destination "gmail.com" {\n  max_connections="30"\n}\n',
       "outpost config: exactly the changed keys")
    again = write(tmp, "b.conf", out)
    r = run(OUTPOSTD, "-t", "-c", again)
    check("valid" in r.stdout + r.stderr, "outpostd -t: %r" % r.stdout)
    eq(config_of(again), out, "its own output gives the same again")
    full = config_of(path, "--all")
    check('  max_recipients="1000"\n' in full and
          '  max_connections="30"\n' in full and
          'run_as="outpost"\n' in full,
          "--all: the defaults too:\n%s" % full)
    check(full.count("\n") > 3 * out.count("\n"), "--all is all")
    alls = write(tmp, "c.conf", full)
    run(OUTPOSTD, "-t", "-c", alls)
    eq(config_of(alls, "--all"), full, "--all: the same again")
    # Found as the CLI finds its file: OUTPOST_CONF.
    env = dict(os.environ, OUTPOST_CONF=path)
    eq(run(OUTPOST, "config", env=env).stdout, out, "via OUTPOST_CONF")


def test_config_hides_passwords():
    tmp = tempfile.mkdtemp(prefix="outpost-config-")
    r = subprocess.run([OUTPOST, "passwd", "alice", "example.test"],
                       input="correct horse\n", capture_output=True,
                       text=True, timeout=60 * SLOW)
    eq(r.returncode, 0, "passwd: " + r.stderr)
    user = r.stdout
    hashed = user.split('"')[3]
    check(hashed.startswith("$argon2id$"), "a hash: %r" % user)
    path = write(tmp, "u.conf", 'data_dir = "%s"\n' % tmp +
                 'listener "127.0.0.1:2587" { auth = true }\n' + user)
    for more in ((), ("--all",)):
        out = config_of(path, *more)
        check('user "alice" {' in out and "example.test" in out,
              "the user is shown: %s" % out)
        check(hashed not in out and "argon2" not in out,
              "no password hash: %s" % out)


def test_config_of_the_example_file():
    """conf/outpost.conf, every section: what it prints reads back to the
    same (both forms).  Without its users: their passwords are not shown,
    and a user without one is refused."""
    import re
    tmp = tempfile.mkdtemp(prefix="outpost-config-")
    with open(os.path.join(SRC, "conf", "outpost.conf")) as f:
        text = re.sub(r'(?ms)^user "[^"]*" \{.*?^\}', "", f.read())
    example = write(tmp, "example.conf", text)
    for more in ((), ("--all",)):
        out = config_of(example, *more)
        again = write(tmp, "x.conf", out)
        eq(config_of(again, *more), out, "fixpoint %s" % (more,))


# --- log filters, on a real daemon's delivery log --------------------------

def log(d, *args, rc=0):
    return jsonl(cli(d, "log", *args, rc=rc).stdout)


def test_log_filters_and_follow():
    hosts = ["127.0.0.46"]
    port = free_port_on(hosts)
    dns = Dns(mx=[("l.test", "mx.l.test", 10)],
              a=[("mx.l.test", "127.0.0.46")])
    with dns, Sink(hosts, port) as sink, \
            ControlDaemon(delivery_config(dns, port), "",
                          prefix="outpost-cli-") as d:
        pipeline(d, ["one@l.test", "two@l.test"])
        sink.wait_messages(2, timeout=30)
        wait_for(lambda: sum(1 for e in delivery_events(d)
                             if e["event"] == "delivery") == 2, 10,
                 "two deliveries in the log")
        events = delivery_events(d)
        ids = sorted({e["id"] for e in events})
        eq(len(ids), 2, "two queue ids: %s" % ids)
        mine = [e for e in events if e["id"] == ids[0]]
        check(len(mine) >= 2, "reception and delivery: %s" % mine)
        eq(log(d, "--id", ids[0]), mine, "--id: only its lines")
        eq(log(d, "--id", ids[0].upper()), mine, "--id: any case")
        log(d, "--id", "12345", rc=2)
        eq(log(d, "--since", "1h"), events, "--since 1h: all")
        eq(log(d, "--since", "2099-01-01T00:00:00Z"), [],
           "--since in the future: nothing")
        eq(log(d, "--until", "2001-01-01T00:00:00Z"), [],
           "--until in the past: nothing")
        eq(log(d, "--until", "2099-01-01T00:00:00Z", "--id", ids[1]),
           [e for e in events if e["id"] == ids[1]], "--until, --id")
        log(d, "--since", "yesterday", rc=2)
        # -f begins at the end: nothing old, then what comes.
        follower = subprocess.Popen(
            [OUTPOST, "-c", d.conf_path, "log", "-f"],
            stdout=subprocess.PIPE)
        out = Lines(follower)
        try:
            time.sleep(1)
            pipeline(d, ["three@l.test"])
            sink.wait_messages(3, timeout=30)
            first = out.next(timeout=20)
            check(first["id"] not in ids,
                  "-f printed an old line first: %s" % first)
            eq(first["event"], "reception", "the new message's first line")
        finally:
            follower.kill()
            follower.wait()


if __name__ == "__main__":
    run_tests(globals())
