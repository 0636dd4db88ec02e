"""outpost_test — harness for integration tests against the real outpostd.

Every test here talks to loopback only: the daemon listens on 127.0.0.1
ports picked by the kernel, and any DNS or receiver a test needs is started
by the test itself on loopback.

Usage in a test script:

    from outpost_test import Daemon, run_tests
    def test_something(t):
        with Daemon() as d:
            ...
    run_tests(globals())

Environment: OUTPOST_BIN (outpostd, outpost), OUTPOST_TOOLS (outpost-load,
sink), OUTPOST_ASAN=1 when the binaries are the ASan+UBSan flavour (the
daemon's stderr is then checked for sanitizer reports at stop).
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

SRC = os.environ.get(
    "OUTPOST_SRC",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("OUTPOST_BIN", os.path.join(SRC, "build", "bin"))
TOOLS = os.environ.get("OUTPOST_TOOLS", os.path.join(SRC, "build", "tools"))
ASAN = os.environ.get("OUTPOST_ASAN") == "1"
# Sanitized binaries are slower; timing-based expectations scale by this.
SLOW = 3.0 if ASAN else 1.0

OUTPOSTD = os.path.join(BIN, "outpostd")
OUTPOST = os.path.join(BIN, "outpost")
LOAD = os.path.join(TOOLS, "outpost-load")


class TestFailure(Exception):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what="value"):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (what, got, want))


_GIVEN = set()


def _random_port(kind, host="127.0.0.1"):
    """A port that was free a moment ago, and not given out before by this
    test program (two listeners of one daemon must not get the same).
    Picked at random below the kernel's ephemeral range (32768+), so the
    source ports of outgoing connections (ours, c-ares') never take it
    before its owner binds it."""
    import random
    for _ in range(200):
        port = random.randint(10000, 30999)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
                _GIVEN.add(port)
                return port
            except OSError:
                continue
    raise TestFailure("no free port")


def free_port(host="127.0.0.1"):
    return _random_port(socket.SOCK_STREAM, host)


def wait_port(host, port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TestFailure("process exited with %s while starting"
                              % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TestFailure("nothing listens on %s:%d after %.0fs"
                      % (host, port, timeout))


def passwd_hash(password):
    """An Argon2id hash made by `outpost passwd` (the operator's tool)."""
    r = subprocess.run([OUTPOST, "passwd"], input=password + "\n",
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise TestFailure("outpost passwd failed: " + r.stderr)
    h = r.stdout.strip().splitlines()[-1].strip()
    check(h.startswith("$argon2id$"), "not an argon2id hash: %r" % h)
    return h


DAEMON_USER = "outpost"


def ensure_daemon_user():
    """outpostd started as root becomes DAEMON_USER (`make deps` creates
    it; a bare ctest run on a new machine creates it here)."""
    import pwd
    try:
        return pwd.getpwnam(DAEMON_USER)
    except KeyError:
        if os.geteuid() != 0:
            raise
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", DAEMON_USER], check=True)
    return pwd.getpwnam(DAEMON_USER)


def read_log(path):
    """The text of the log file PATH ("" while it does not exist)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def open_to_daemon(path):
    """Let the daemon's user search PATH (a test's private directory,
    0700 from mkdtemp) so that it can reach data_dir after giving up
    root; nothing in it becomes readable by others."""
    os.chmod(path, 0o711)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")
# libevent's own warnings and errors (its default log: "[warn] …" on
# stderr), e.g. an epoll change on a closed descriptor: each is a defect.
LIBEVENT_MARKS = ("\n[warn] ", "\n[err] ")


class Daemon:
    """A private outpostd: its own data_dir, config and ports.

    config: text appended to a generated base config (data_dir, one
    listener).  listeners: list of (name, text) where text is the body of a
    `listener "127.0.0.1:PORT" { … }` block; the first is `self.port`.
    """

    def __init__(self, config="", listeners=None, relay_loopback=True,
                 workdir=None, args=(), wrapper=()):
        self.tmp = workdir or tempfile.mkdtemp(prefix="outpost-t-")
        self.wrapper = list(wrapper)  # e.g. valgrind and its options
        self.own_tmp = workdir is None
        if os.geteuid() == 0:
            ensure_daemon_user()
            open_to_daemon(self.tmp)
        self.data = os.path.join(self.tmp, "var")
        self.conf_path = os.path.join(self.tmp, "outpost.conf")
        self.log_path = os.path.join(self.tmp, "outpostd.log")
        self.ports = {}
        self.args = list(args)
        self.proc = None
        self.logf = None
        if listeners is None:
            listeners = [("main", 'tls = "starttls"')]
        blocks = []
        for name, body in listeners:
            port = free_port()
            self.ports[name] = port
            blocks.append('listener "127.0.0.1:%d" {\n  %s\n}\n'
                          % (port, body))
        self.port = self.ports[listeners[0][0]]
        relay = ('relay { networks = { "127.0.0.0/8", "::1/128" } }\n'
                 if relay_loopback else "")
        # Metrics on a port of its own (parallel daemons must not clash).
        self.metrics_port = free_port()
        text = ('hostname = "outpost.test"\n'
                'data_dir = "%s"\n'
                'tls { generate = true }\n'
                'metrics { listen = "127.0.0.1:%d" }\n'
                '%s%s%s\n' % (self.data, self.metrics_port,
                               "".join(blocks), relay, config))
        with open(self.conf_path, "w") as f:
            f.write(text)

    # -- process --
    def start(self, wait=True):
        """Start the daemon; with WAIT, until every listener answers.  A
        port picked at random can be taken by a parallel test between the
        pick and the daemon's bind: then the ports are picked again and
        the daemon started again (any other failure to start is the
        test's, reported with the daemon's log)."""
        for attempt in range(4):
            start_at = os.path.getsize(self.log_path) \
                if os.path.exists(self.log_path) else 0
            self._spawn()
            if not wait:
                return self
            try:
                for port in self.ports.values():
                    wait_port("127.0.0.1", port, 20 * SLOW, self.proc)
                return self
            except TestFailure as e:
                if self.proc.poll() is None:
                    raise
                self.proc = None
                self.logf.close()
                text = self.log()[start_at:]
                if "Address already in use" not in text or attempt == 3:
                    raise TestFailure("%s; log:\n%s" % (e, text[-3000:]))
                self._move_ports()
        return self

    def _move_ports(self):
        """New ports for the listeners and the metrics endpoint, written
        into the config in place of the old ones."""
        with open(self.conf_path) as f:
            text = f.read()
        for name, old in list(self.ports.items()):
            new = free_port()
            text = text.replace('"127.0.0.1:%d"' % old, '"127.0.0.1:%d"' % new)
            self.ports[name] = new
        new = free_port()
        text = text.replace('"127.0.0.1:%d"' % self.metrics_port,
                            '"127.0.0.1:%d"' % new)
        self.metrics_port = new
        self.port = self.ports[next(iter(self.ports))]
        with open(self.conf_path, "w") as f:
            f.write(text)

    def _spawn(self):
        self.logf = open(self.log_path, "ab")
        env = dict(os.environ)
        # Network safety: the daemon refuses every non-loopback address
        # and never falls back to the system resolver.
        env["OUTPOST_LOOPBACK_ONLY"] = "1"
        # The test clock (seconds), when a test moves time between starts.
        if getattr(self, "clock_offset", None) is not None:
            env["OUTPOST_TEST_CLOCK_OFFSET"] = str(int(self.clock_offset))
        self.proc = subprocess.Popen(
            self.wrapper + [OUTPOSTD, "-c", self.conf_path] + self.args,
            stdout=self.logf, stderr=subprocess.STDOUT, cwd=self.tmp,
            env=env)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop the daemon; with SIGTERM, require a clean exit."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("outpostd did not stop within %ds" % timeout)
        self.proc = None
        self.logf.close()
        self.check_sanitizers()
        if sig == signal.SIGTERM and rc != 0:
            raise TestFailure("outpostd exited %d on SIGTERM; log:\n%s"
                              % (rc, self.log()[-3000:]))
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.logf.close()

    def log(self):
        return read_log(self.log_path)

    def check_sanitizers(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise TestFailure("sanitizer report in outpostd log:\n"
                                  + text[text.index(mark) - 200:][:4000])
        text = "\n" + text
        for mark in LIBEVENT_MARKS:
            if mark in text:
                raise TestFailure("libevent complained in outpostd log:\n"
                                  + text[text.index(mark) - 200:][:2000])

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        try:
            if self.proc is not None:
                self.stop()
        finally:
            if et is not None:
                sys.stderr.write("--- outpostd log (tail) ---\n%s\n"
                                 % self.log()[-4000:])
            if self.own_tmp and et is None and not os.environ.get(
                    "OUTPOST_KEEP"):
                shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    # -- tools --
    def cli(self, *args, check_rc=True, input=None):
        r = subprocess.run([OUTPOST, "-c", self.conf_path] + list(args),
                           capture_output=True, text=True, timeout=120,
                           input=input, cwd=self.tmp)
        if check_rc and r.returncode != 0:
            raise TestFailure("outpost %s failed (%d): %s"
                              % (" ".join(args), r.returncode, r.stderr))
        return r

    def queue_ids(self):
        """Ids of the queued messages, from `outpost queue list --json`."""
        import json
        r = self.cli("queue", "list", "--json")
        ids = []
        for line in r.stdout.splitlines():
            if line.strip():
                ids.append(json.loads(line)["id"])
        return ids

    def smtp(self, port=None, timeout=10):
        s = smtplib.SMTP("127.0.0.1", port or self.port,
                         timeout=timeout * SLOW,
                         local_hostname="client.test")
        return s

    def smtps(self, port, timeout=10):
        return smtplib.SMTP_SSL("127.0.0.1", port, timeout=timeout * SLOW,
                                context=insecure_tls(),
                                local_hostname="client.test")

    def load(self, *args, timeout=600, port=None):
        """Run outpost-load against this daemon; returns (rc, json)."""
        import json
        cmd = [LOAD, "--host", "127.0.0.1", "--port",
               str(port or self.port), "--json"] + [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout * SLOW)
        try:
            report = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TestFailure("outpost-load gave no report (rc %d): %s %s"
                              % (r.returncode, r.stdout, r.stderr))
        return r.returncode, report

    def files_bytes(self):
        """Every file the daemon wrote under its work directory."""
        out = {}
        for root, _, files in os.walk(self.tmp):
            for fn in files:
                p = os.path.join(root, fn)
                if not os.path.isfile(p):  # the control socket
                    continue
                with open(p, "rb") as f:
                    out[p] = f.read()
        return out


def insecure_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A raw SMTP connection: exact bytes out, replies in."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port),
                                             timeout=timeout * SLOW)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One (possibly multi-line) reply: (code, text).  (None, '') at
        EOF."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return (None, "\n".join(lines))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            line = line.decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return (int(line[:3]), "\n".join(lines))

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True if the server closed the connection (EOF) in time."""
        self.sock.settimeout(timeout * SLOW)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def starttls(self):
        code, _ = self.cmd("STARTTLS")
        eq(code, 220, "STARTTLS reply")
        self.sock = insecure_tls().wrap_socket(self.sock)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def control_raw(d, data, timeout=30, shut=True):
    """Talk to D's control socket (d.sock) directly: DATA out, the write
    side shut (unless SHUT is false), the whole answer back as text."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout * SLOW)
    s.connect(d.sock)
    if data:
        s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except ConnectionResetError:
        pass
    s.close()
    return out.decode()


class ControlDaemon(Daemon):
    """A daemon whose control socket lives in a directory others may
    enter (TMP 0755, TMP/control.sock); CONTROL: the rest of the control
    block (access blocks, group).  start() waits until the socket answers
    (the delivery loop makes it a moment after the listeners)."""

    def __init__(self, config="", control="", prefix="outpost-ctl-"):
        run = tempfile.mkdtemp(prefix=prefix)
        os.chmod(run, 0o755)
        self.sock = os.path.join(run, "control.sock")
        ctl = 'control {\n  socket = "%s"\n%s}\n' % (self.sock, control)
        super().__init__(config=config + "\n" + ctl, workdir=run)
        self.own_tmp = True
        self.audit_path = os.path.join(self.data, "log", "audit.log")
        self.delivery_log = os.path.join(self.data, "log", "delivery.log")

    def start(self, wait=True):
        super().start(wait)
        if wait:
            control_wait(self)
        return self


def cli_as(d, args, uid=None, gid=None):
    """Run `outpost ARGS` against D; with UID, as that uid and GID (no
    supplementary groups) under setpriv, as a caller without rights."""
    cmd = [OUTPOST, "-c", d.conf_path] + list(args)
    if uid is not None:
        cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
               "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=60 * SLOW, cwd="/")


def control_wait(d):
    """Wait until D's control socket answers."""
    deadline = time.time() + 20 * SLOW
    while True:
        try:
            if control_raw(d, b"ping\n", timeout=5) == "ok\n":
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise TestFailure("control socket not answering")
        time.sleep(0.05)


def run_tests(namespace):
    """Run every test_* function of the calling module, TAP style."""
    only = os.environ.get("OUTPOST_ONLY")
    tests = [(n, f) for n, f in sorted(namespace.items())
             if n.startswith("test_") and callable(f)
             and (not only or only in n)]
    # Keep the order of definition, not alphabetical.
    tests.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    print("1..%d" % len(tests))
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        t0 = time.time()
        try:
            fn()
            print("ok %d - %s (%.1fs)" % (i, name, time.time() - t0))
        except Exception:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        sys.stdout.flush()
    if failed:
        print("# %d of %d failed" % (failed, len(tests)))
    sys.exit(1 if failed else 0)


# --- peers for delivery tests: a DNS server and receivers of our own ------

SINK = os.path.join(TOOLS, "outpost-sink")


class Dns:
    """dnsmasq on a free loopback UDP port, answering only what it is told
    (--no-resolv --no-hosts: never forwards, never reads /etc/hosts).

    mx: list of (domain, host, pref); host "." is a null MX.
    a: list of (name, "127.0.0.x").  txt: list of (name, text)."""

    def __init__(self, mx=(), a=(), txt=(), ttl=60):
        import random
        self.spec = (mx, a, txt, ttl)
        self.tmp = tempfile.mkdtemp(prefix="outpost-dns-")
        self.log_path = os.path.join(self.tmp, "dnsmasq.log")
        # A name only this dnsmasq knows: the readiness probe asks it, so
        # another test's dnsmasq on the port cannot pass for this one.
        self.probe = "probe-%08x.test" % random.getrandbits(32)
        self.proc = None
        self._port = None

    # Tests build the daemon's config (servers, port) before they enter
    # the Dns: the first read starts dnsmasq, so the port it names is the
    # one dnsmasq holds, not one it had to leave.
    @property
    def port(self):
        self._start()
        return self._port

    @property
    def servers(self):
        return "127.0.0.1:%d" % self.port

    def _args(self, port):
        mx, a, txt, ttl = self.spec
        args = ["dnsmasq", "--keep-in-foreground", "--no-daemon",
                "--port=%d" % port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts",
                "--conf-file=/dev/null", "--user=root",
                "--pid-file=" + os.path.join(self.tmp, "pid"),
                "--local-ttl=%d" % ttl, "--local=/test/",
                "--log-facility=" + self.log_path,
                "--host-record=%s,127.0.0.1" % self.probe]
        for domain, host, pref in mx:
            args.append("--mx-host=%s,%s,%d" % (domain, host, pref))
        for name, addr in a:
            args.append("--host-record=%s,%s" % (name, addr))
        for name, text in txt:
            args.append("--txt-record=%s,%s" % (name, text))
        return args

    def _start(self):
        if self.proc is not None:
            return
        # The port was free a moment ago; another test may take it first
        # (parallel ctest): pick another one and try again.
        import atexit
        for attempt in range(8):
            port = free_udp_port()
            proc = subprocess.Popen(self._args(port),
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            deadline = time.time() + 10
            while time.time() < deadline:
                if proc.poll() is not None:
                    break
                if self._answers(port) and proc.poll() is None:
                    self.proc, self._port = proc, port
                    # Killed at exit if the test never enters or leaves.
                    atexit.register(self._kill)
                    return
                time.sleep(0.05)
            err = proc.stderr.read().decode() \
                if proc.poll() is not None else "no answer"
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if "in use" not in err:
                raise TestFailure("dnsmasq failed: %s" % err)
        raise TestFailure("dnsmasq: no free port")

    def __enter__(self):
        self._start()
        return self

    def _answers(self, port):
        """True once this dnsmasq answers its own probe name."""
        return dns_ask_a(port, self.probe, timeout=0.2) is not None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, et, ev, tb):
        if self.proc is not None:
            end_process(self.proc, 10)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def end_process(proc, timeout):
    """SIGTERM, then SIGKILL if PROC is still there after TIMEOUT s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def dns_ask_a(port, name, timeout=2):
    """The first A record the DNS server on 127.0.0.1:PORT gives for NAME
    (one UDP query), or None: no answer in time, or none in it."""
    import struct
    q = b"\x43\x21\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, ("127.0.0.1", port))
            r = s.recv(512)
        except OSError:
            return None
    # Our id, and an answer (ANCOUNT > 0), not "no such domain".
    if len(r) < 16 or r[:2] != b"\x43\x21" or \
            struct.unpack("!H", r[6:8])[0] == 0:
        return None
    return socket.inet_ntoa(r[-4:])


def free_udp_port():
    return _random_port(socket.SOCK_DGRAM)


def free_port_on(hosts):
    """A TCP port free on every one of HOSTS (all MX hosts share the
    delivery port, as on the Internet they share 25)."""
    for _ in range(100):
        port = free_port()
        ok = True
        for h in hosts:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((h, port))
            except OSError:
                ok = False
                break
        if ok:
            return port
    raise TestFailure("no common free port")


class Sink:
    """outpost-sink playing remote MX hosts: one process listening on each
    of HOSTS (127.0.0.x) at PORT.  Extra ARGS go to the sink as they are."""

    def __init__(self, hosts=("127.0.0.1",), port=None, args=(),
                 maildir=True):
        self.tmp = tempfile.mkdtemp(prefix="outpost-sink-")
        self.hosts = list(hosts)
        self.extra = [str(a) for a in args]
        # A port the sink picked may still move at the start (another
        # test took it), as long as nobody has read it (self.port).
        self._port = port or free_port_on(self.hosts)
        self._port_movable = port is None
        self.stats_path = os.path.join(self.tmp, "stats.json")
        self.ready = os.path.join(self.tmp, "ready")
        self.maildir = os.path.join(self.tmp, "maildir") if maildir else None
        self.log_path = os.path.join(self.tmp, "sink.log")
        self.proc = None

    @property
    def port(self):
        self._port_movable = False
        return self._port

    @property
    def args(self):
        args = []
        for h in self.hosts:
            args += ["--listen", "%s:%d" % (h, self._port)]
        args += ["--stats", self.stats_path, "--ready-file", self.ready]
        if self.maildir:
            args += ["--maildir", self.maildir]
        return args + self.extra

    def __enter__(self):
        for attempt in range(4):
            self.logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen([SINK] + self.args,
                                         stdout=self.logf,
                                         stderr=subprocess.STDOUT)
            deadline = time.time() + 10 * SLOW
            while not os.path.exists(self.ready):
                if self.proc.poll() is not None:
                    break
                if time.time() > deadline:
                    raise TestFailure("outpost-sink not ready")
                time.sleep(0.01)
            if self.proc.poll() is None:
                return self
            self.proc = None
            self.logf.close()
            # A port in a config already cannot move: say so clearly.
            if not self._port_movable or "in use" not in self.log():
                break
            self._port = free_port_on(self.hosts)
        raise TestFailure("outpost-sink exited at start: %s" % self.log())

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.logf.close()

    def __exit__(self, et, ev, tb):
        self.stop()
        if et is not None:
            sys.stderr.write("--- sink log ---\n%s\n" % self.log()[-2000:])
        elif not os.environ.get("OUTPOST_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def log(self):
        return read_log(self.log_path)

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait(self, pred, timeout=30, what="sink condition"):
        """Wait until pred(stats) holds; returns the stats."""
        deadline = time.time() + timeout * SLOW
        while True:
            st = self.stats()
            if st and pred(st):
                return st
            if time.time() > deadline:
                raise TestFailure("%s not met in %ds; stats: %s"
                                  % (what, timeout, json.dumps(st)[:1500]))
            time.sleep(0.05)

    def wait_messages(self, n, timeout=30):
        return self.wait(lambda s: s.get("messages", 0) >= n, timeout,
                         "%d messages at the sink" % n)

    def messages(self):
        """Stored messages, in arrival order, as bytes."""
        if not self.maildir or not os.path.isdir(self.maildir):
            return []
        out = []
        for name in sorted(os.listdir(self.maildir)):
            if name.endswith(".eml"):
                with open(os.path.join(self.maildir, name), "rb") as f:
                    out.append(f.read())
        return out


import json  # noqa: E402  (used by the helpers above)


def delivery_config(dns=None, port=None, extra=""):
    """Config text for a daemon that delivers through DNS and PORT."""
    text = ""
    if dns is not None:
        text += 'dns { servers = "%s" timeout = 1s tries = 1 }\n' % dns.servers
    text += ('delivery {\n  port = %d\n  retry_intervals = { "1s" }\n'
             '  retry_jitter = 0\n  idle_timeout = 2s\n}\n' % (port or 25))
    return text + extra


def pipeline(d, rcpts, sender="news@sender.test", per_msg=1):
    """Submit one message per recipient group over one pipelined session."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30 * SLOW)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise AssertionError("connection closed")
            if line[3:4] != b"-":
                return int(line[:3])

    eq(reply(), 220, "greeting")
    s.sendall(b"EHLO client.test\r\n")
    eq(reply(), 250, "EHLO")
    groups = [rcpts[i:i + per_msg] for i in range(0, len(rcpts), per_msg)]
    batch = b""
    for i, g in enumerate(groups):
        batch += b"MAIL FROM:<%s>\r\n" % sender.encode()
        for r in g:
            batch += b"RCPT TO:<%s>\r\n" % r.encode()
        batch += b"DATA\r\n"
        batch += (b"From: <%s>\r\nSubject: m%d\r\nMessage-ID: <m%d@x.test>"
                  b"\r\n\r\nbody %d\r\n.\r\n" % (sender.encode(), i, i, i))
    s.sendall(batch)
    for g in groups:
        eq(reply(), 250, "MAIL")
        for _ in g:
            eq(reply(), 250, "RCPT")
        eq(reply(), 354, "DATA")
        eq(reply(), 250, "queued")
    s.sendall(b"QUIT\r\n")
    s.close()

def rewrite_config(d, old, new):
    """D's configuration file with OLD (which must be there) made NEW."""
    with open(d.conf_path) as f:
        text = f.read()
    check(old in text, "config holds %r" % old)
    with open(d.conf_path, "w") as f:
        f.write(text.replace(old, new))


def delivery_events(d, kind=None):
    """The delivery log of D (a ControlDaemon) as dicts, those whose event
    is KIND ("delivery", "transient_failure", ...) or all; [] before the
    log exists."""
    import json
    try:
        with open(d.delivery_log) as f:
            return [e for e in (json.loads(x) for x in f if x.strip())
                    if kind is None or e.get("event") == kind]
    except FileNotFoundError:
        return []


def metrics_text(d):
    """The daemon's metrics exposition (GET /metrics) as text."""
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def wait_for(pred, timeout=30, what="condition"):
    """Poll PRED until it returns something true (returned), or fail."""
    deadline = time.time() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise TestFailure("%s not met within %ds" % (what, timeout))
        time.sleep(0.2)


def promtool_check(text):
    """`promtool check metrics` passes on TEXT (a scrape), when promtool is
    installed; else says that the format was not checked."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("# promtool not installed: format not checked")
        return
    p = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    eq(p.returncode, 0, "promtool: " + p.stdout + p.stderr)


def wait_empty(d, timeout=60):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if not d.queue_ids():
            return
        time.sleep(0.2)
    raise AssertionError("queue not empty: %d left" % len(d.queue_ids()))



# The EICAR test file (68 bytes): every scanner's agreed harmless sample.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
         b"$H+H*")


class Redis:
    """redis-server (Debian's) on a loopback port of its own, in the
    foreground, nothing saved to disk.  `addr` is what cluster { redis = … }
    takes.  stop()/start() take it away and bring it back on the same
    port (kill=True: SIGKILL, as a crash).  cmd() speaks RESP to it."""

    def __init__(self, password=None):
        self.tmp = tempfile.mkdtemp(prefix="outpost-redis-")
        os.chmod(self.tmp, 0o755)
        self.log_path = os.path.join(self.tmp, "redis.log")
        self.password = password
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.proc = None

    def start(self, timeout=20):
        args = ["redis-server", "--port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.tmp, "--logfile", self.log_path,
                "--daemonize", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("redis-server exited at start: %s"
                                  % self.log()[-2000:])
            try:
                if self.cmd("PING") in ("PONG", b"PONG") or \
                        self.password is not None:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TestFailure("redis-server did not answer in %ds: %s"
                          % (timeout, self.log()[-2000:]))

    def stop(self, kill=False):
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
            self.proc.wait()
        else:
            end_process(self.proc, 10)
        self.proc = None

    def cmd(self, *args):
        """One command; the reply decoded (str, int, list, None), or an
        exception for an error reply."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            if self.password is not None:
                auth = self.password.encode()
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n"
                          % (len(auth), auth))
                f = s.makefile("rb")
                self._read(f)
                s.sendall(out)
                return self._read(f)
            s.sendall(out)
            return self._read(s.makefile("rb"))

    def _read(self, f):
        line = f.readline()
        if not line:
            raise OSError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise TestFailure("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read(f) for _ in range(n)]
        raise TestFailure("redis: unexpected reply %r" % line)

    def log(self):
        return read_log(self.log_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        self.stop(kill=True)
        if et is not None:
            sys.stderr.write("--- redis log ---\n%s\n" % self.log()[-2000:])
        if not os.environ.get("OUTPOST_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


class Clamd:
    """clamd (Debian's clamav-daemon) on a Unix socket in a temp directory,
    in the foreground, with a signature database written here (no
    download, no freshclam): the EICAR file's MD5 in a .hdb (MD5:SIZE:
    NAME: a file that is EICAR exactly, e.g. a decoded attachment) and the
    body signatures NDB [(name, bytes)] in a .ndb (NAME:0:*:HEX: EICAR's
    text anywhere, e.g. in a body with its line end).  `socket` is what scan { clamd = … } takes.  stop()/start()
    let a test take it away and bring it back on the same socket."""

    EICAR_NAME = "Outpost.Test.EICAR"

    def __init__(self, ndb=(("Outpost.Test.Body",
                             b"OUTPOST-TEST-MALWARE-BODY-SIGNATURE"),
                            ("Outpost.Test.EICAR-Text",
                             b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE")),
                 idle_timeout=30):
        import hashlib
        self.tmp = tempfile.mkdtemp(prefix="outpost-clamd-")
        os.chmod(self.tmp, 0o755)
        self.db = os.path.join(self.tmp, "db")
        os.mkdir(self.db)
        self.socket = os.path.join(self.tmp, "clamd.sock")
        self.log_path = os.path.join(self.tmp, "clamd.log")
        with open(os.path.join(self.db, "outpost.hdb"), "w") as f:
            f.write("%s:%d:%s\n" % (hashlib.md5(EICAR).hexdigest(),
                                    len(EICAR), self.EICAR_NAME))
        with open(os.path.join(self.db, "outpost.ndb"), "w") as f:
            for name, data in ndb:
                f.write("%s:0:*:%s\n" % (name, data.hex()))
        self.conf = os.path.join(self.tmp, "clamd.conf")
        with open(self.conf, "w") as f:
            f.write("Foreground yes\n"
                    "LocalSocket %s\n"
                    "LocalSocketMode 666\n"
                    "DatabaseDirectory %s\n"
                    "TemporaryDirectory %s\n"
                    "LogFile %s\n"
                    "LogTime yes\n"
                    "MaxThreads 4\n"
                    "IdleTimeout 30\n"
                    "CommandReadTimeout %d\n"
                    "ReadTimeout %d\n"
                    "StreamMaxLength 25M\n"
                    "Bytecode no\n"
                    % (self.socket, self.db, self.tmp, self.log_path,
                       idle_timeout, idle_timeout))
            if os.geteuid() == 0:
                f.write("User root\n")
        self.proc = None

    def start(self, timeout=60):
        """Start clamd and wait until it answers PING on its socket (the
        database loads first: seconds)."""
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen(["clamd", "--config-file=" + self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("clamd exited at start: %s"
                                  % self.log()[-2000:])
            if self.ping():
                return self
            time.sleep(0.1)
        raise TestFailure("clamd did not answer in %ds: %s"
                          % (timeout, self.log()[-2000:]))

    def ping(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect(self.socket)
                s.sendall(b"zPING\0")
                return s.recv(16) == b"PONG\0"
        except OSError:
            return False

    def stop(self):
        if self.proc is None:
            return
        end_process(self.proc, 20)
        self.proc = None

    def log(self):
        return read_log(self.log_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        self.stop()
        if et is not None:
            sys.stderr.write("--- clamd log ---\n%s\n" % self.log()[-2000:])
        if not os.environ.get("OUTPOST_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False
