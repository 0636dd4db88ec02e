#!/usr/bin/python3
"""The programs' own options and the CLI's configuration, through the real
binaries: --help and --version of outpostd and outpost; `outpost` finding
its configuration without -c (OUTPOST_CONF, else /etc/outpost/outpost.conf
when it is there, else the embedded defaults); `outpost dkim keygen` for a
domain that has a key of the other type already: one block to paste, which
outpostd loads and signs with.  Receivers and DNS are our own, on
loopback."""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (OUTPOST, OUTPOSTD, SLOW, SRC,  # noqa: E402
                          ControlDaemon, Daemon, Dns, Sink, TestFailure,
                          check, delivery_config, ensure_daemon_user, eq,
                          free_port_on, run_tests)

SYSTEM_CONF = "/etc/outpost/outpost.conf"


def version():
    """The project's version, as CMakeLists.txt gives it to the programs."""
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        m = re.search(r"project\(outpost VERSION ([0-9.]+)", f.read())
    check(m is not None, "no version in CMakeLists.txt")
    return m.group(1)


def run(args, env_conf=None, cwd="/", timeout=60):
    """ARGS run with OUTPOST_CONF set to ENV_CONF (None: not set)."""
    env = dict(os.environ)
    env.pop("OUTPOST_CONF", None)
    if env_conf is not None:
        env["OUTPOST_CONF"] = env_conf
    return subprocess.run([str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout * SLOW, cwd=cwd,
                          env=env)


def want(r, rc, what):
    if r.returncode != rc:
        raise TestFailure("%s: exit %d, want %d\nstdout: %s\nstderr: %s"
                          % (what, r.returncode, rc, r.stdout[-1500:],
                             r.stderr[-1500:]))


# --- --help and --version ----------------------------------------------------

def test_outpostd_help_and_version():
    for opt in ("--help", "-h"):
        r = run([OUTPOSTD, opt])
        want(r, 0, "outpostd " + opt)
        check(r.stdout.startswith("usage: outpostd"), "usage on stdout: %r"
              % r.stdout)
        check("--version" in r.stdout, "--version in the usage")
        eq(r.stderr, "", "outpostd %s stderr" % opt)
    r = run([OUTPOSTD, "--version"])
    want(r, 0, "outpostd --version")
    eq(r.stdout, "outpostd %s\n" % version(), "outpostd --version")
    for bad in (["--bogus"], ["-x"], ["stray"]):
        r = run([OUTPOSTD] + bad)
        want(r, 2, "outpostd " + bad[0])
        eq(r.stdout, "", "outpostd %s stdout" % bad[0])
        check("usage: outpostd" in r.stderr, "usage on stderr: %r"
              % r.stderr)


def test_outpost_help_and_version():
    for opt in ("--help", "-h"):
        r = run([OUTPOST, opt])
        want(r, 0, "outpost " + opt)
        check(r.stdout.startswith("usage: outpost"), "usage on stdout")
        check("OUTPOST_CONF" in r.stdout, "the usage says OUTPOST_CONF")
        eq(r.stderr, "", "outpost %s stderr" % opt)
    r = run([OUTPOST, "--version"])
    want(r, 0, "outpost --version")
    eq(r.stdout, "outpost %s\n" % version(), "outpost --version")
    for bad in (["--bogus"], ["queue", "summary", "--bogus"], []):
        r = run([OUTPOST] + bad)
        want(r, 2, "outpost " + " ".join(bad))
        eq(r.stdout, "", "outpost %s stdout" % " ".join(bad))
        check("usage: outpost" in r.stderr, "usage on stderr: %r"
              % r.stderr)


# --- where the CLI finds its configuration -----------------------------------

def test_outpost_conf_from_environment():
    """OUTPOST_CONF names the daemon's file: `queue summary` reaches its
    control socket with no -c; -c still wins over OUTPOST_CONF."""
    with ControlDaemon(prefix="outpost-opt-") as d:
        r = run([OUTPOST, "queue", "summary"], env_conf=d.conf_path)
        want(r, 0, "OUTPOST_CONF=%s outpost queue summary" % d.conf_path)
        check(r.stdout.startswith("DOMAIN"), "the summary's header: %r"
              % r.stdout)
        r = run([OUTPOST, "-c", d.conf_path, "queue", "summary", "--json"],
                env_conf="/nonexistent/outpost.conf")
        want(r, 0, "-c over a bad OUTPOST_CONF")


def test_outpost_conf_from_environment_bad():
    """A file OUTPOST_CONF names that cannot be read, or is not a valid
    configuration, is an error naming it (file:line), not the defaults."""
    missing = "/nonexistent/outpost-opt.conf"
    r = run([OUTPOST, "queue", "summary"], env_conf=missing)
    want(r, 1, "OUTPOST_CONF=" + missing)
    check(missing in r.stderr and "OUTPOST_CONF" in r.stderr,
          "the error names the file and OUTPOST_CONF: %r" % r.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write('hostname = "x.test"\nlimits {\n  max_recipents = 5\n}\n')
        f.flush()
        r = run([OUTPOST, "queue", "summary"], env_conf=f.name)
        want(r, 1, "OUTPOST_CONF=<invalid file>")
        check("%s:3:" % f.name in r.stderr, "file:line in %r" % r.stderr)
        # A key needs the configuration too: it is not made elsewhere.
        r = run([OUTPOST, "dkim", "keygen", "x.test", "s1"],
                env_conf=f.name, cwd=tempfile.gettempdir())
        want(r, 1, "keygen with an invalid OUTPOST_CONF")


def test_outpost_conf_embedded_defaults():
    """Neither -c nor OUTPOST_CONF (unset or empty), and no system file:
    the embedded defaults (data under ./var).  Never creates the system
    file: that path belongs to the package."""
    if os.path.lexists(SYSTEM_CONF):
        print("# %s exists; skipping the embedded-defaults check"
              % SYSTEM_CONF)
        return
    for env_conf in (None, ""):
        tmp = tempfile.mkdtemp(prefix="outpost-opt-defaults-")
        r = run([OUTPOST, "dkim", "keygen", "defaults.test", "s1",
                 "--ed25519"], env_conf=env_conf, cwd=tmp)
        want(r, 0, "keygen with the embedded defaults")
        key = os.path.join(tmp, "var", "keys", "dkim",
                           "defaults.test.s1.key")
        check(os.path.exists(key), "key under ./var: %s" % r.stdout)
    # The CLI waits a moment for a socket that is not there yet.
    r = run([OUTPOST, "queue", "summary"], cwd=tmp)
    want(r, 1, "queue summary with no daemon")
    check(os.path.join(tmp, "var") in r.stderr,
          "the default control socket under ./var: %r" % r.stderr)


# --- dkim keygen beside a key of the other type ------------------------------

def keygen(args, conf=None):
    r = run([OUTPOST] + (["-c", conf] if conf else []) +
            ["dkim", "keygen"] + list(args))
    want(r, 0, "keygen " + " ".join(args))
    return r.stdout


def printed_blocks(out, domain):
    """The dkim blocks of DOMAIN in keygen's output (its comment lines
    left out)."""
    text = "\n".join(line for line in out.splitlines()
                     if not line.startswith("#"))
    return re.findall(r'(?ms)^dkim "%s" \{.*?\}$' % re.escape(domain), text)


def test_dkim_keygen_joins_the_other_key():
    """A domain signed with RSA gets an Ed25519 key: keygen prints one
    dkim block holding both; pasted in place of the old block, outpostd -t
    takes it and mail goes out with both signatures, each verifying."""
    tmp = tempfile.mkdtemp(prefix="outpost-opt-dkim-")
    rsa = os.path.join(tmp, "rsa.key")
    ed = os.path.join(tmp, "ed.key")
    out = keygen(["sender.test", "s1", "--key", rsa, "--txt", rsa + ".txt"])
    old = printed_blocks(out, "sender.test")
    eq(len(old), 1, "one block for a new domain")
    hosts = ["127.0.0.1"]
    port = free_port_on(hosts)
    with open(rsa + ".txt") as f:
        rsa_txt = f.read().strip()
    # -t binds nothing: the listener's port may be in use.
    head = ('data_dir = "%s"\nlistener "127.0.0.1:2525" { }\n'
            % os.path.join(tmp, "var"))
    conf = os.path.join(tmp, "outpost.conf")
    with open(conf, "w") as f:
        f.write(head + old[0] + "\n")
    out = keygen(["sender.test", "e1", "--ed25519", "--key", ed,
                  "--txt", ed + ".txt"], conf=conf)
    new = printed_blocks(out, "sender.test")
    eq(len(new), 1, "one block printed:\n" + out)
    for want_line in ('selector = "s1"', 'rsa_key = "%s"' % rsa,
                      'ed25519_selector = "e1"', 'ed25519_key = "%s"' % ed):
        check(want_line in new[0], "%s in the block:\n%s" % (want_line, out))
    check("%s:" % conf in out, "keygen names the block it replaces:\n" + out)
    with open(conf, "w") as f:
        f.write(head + new[0] + "\n")
    if os.geteuid() == 0:
        ensure_daemon_user()  # -t looks up the account it would run as
    r = run([OUTPOSTD, "-t", "-c", conf])
    want(r, 0, "outpostd -t with the pasted block")
    with open(ed + ".txt") as f:
        ed_txt = f.read().strip()

    dnsd = Dns(mx=[("dest.test", "mx.dest.test", 10)],
               a=[("mx.dest.test", "127.0.0.1")],
               txt=[("s1._domainkey.sender.test", rsa_txt),
                    ("e1._domainkey.sender.test", ed_txt)])
    with dnsd, Sink(hosts, port) as sink, \
            Daemon(config=delivery_config(dnsd, port, new[0] + "\n")) as d:
        s = d.smtp(timeout=60 * SLOW)
        s.sendmail("news@sender.test", ["x@dest.test"],
                   b"From: <news@sender.test>\r\nTo: <x@dest.test>\r\n"
                   b"Subject: two keys\r\n\r\nsigned twice\r\n")
        s.quit()
        sink.wait_messages(1, timeout=60)
        msg = sink.messages()[0].split(b"\r\n", 1)[1]
    sigs = re.findall(
        rb"(?mi)^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", msg)
    eq(len(sigs), 2, "two signatures in:\n%r" % msg[:1500])
    tags = sorted((re.search(rb"\ba=([\w-]+)", s).group(1).decode(),
                   re.search(rb"\bs=([\w-]+)", s).group(1).decode())
                  for s in sigs)
    eq(tags, [("ed25519-sha256", "e1"), ("rsa-sha256", "s1")], "a= and s=")
    try:
        import dkim
    except ImportError:
        print("# python3-dkim not importable: signatures not verified")
        return
    records = {"s1._domainkey.sender.test.": rsa_txt.encode(),
               "e1._domainkey.sender.test.": ed_txt.encode()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name if name.endswith(".") else name + ".")
    v = dkim.DKIM(msg)
    for i in range(2):
        check(v.verify(idx=i, dnsfunc=dnsfunc),
              "signature %d does not verify" % i)


run_tests(globals())
