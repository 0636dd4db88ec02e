#!/usr/bin/python3
"""The Debian package, as an operator gets it: `make package` (a Release
build of its own, CPack) makes the .deb; lintian finds no error in it;
`dpkg -i` installs it (the system user outpost, root:outpost /etc/outpost,
the unit enabled but not started, hardened and stripped programs); the
INSTALLED outpostd with the INSTALLED /etc/outpost/outpost.conf relays a
message on loopback to our own receiver, and the installed `outpost` finds
that configuration by itself; `dpkg -r` keeps the queue, logs and
configuration, `dpkg --purge` removes them.  The user outpost stays after
the purge, as Debian leaves system users: files it owned elsewhere must not
pass to a later account with its uid.

Root only (ctest label "root"; skipped otherwise, exit 77).  It changes
system paths, so it runs alone (RUN_SERIAL) and skips, touching nothing,
when a package or any file of that name is already there.  Talks to
loopback only: the packaged listener is 127.0.0.1:587, the route and the
DNS server are ours on 127.0.0.1."""

import grp
import gzip
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (BIN, SRC, Dns, Sink, TestFailure,  # noqa: E402
                          check, eq, free_port, insecure_tls, run_tests,
                          wait_for, wait_port)

PKG = "outpost"
SBIN = ("/usr/sbin/outpostd", "/usr/sbin/outpost")
ETC = "/etc/outpost"
CONF = ETC + "/outpost.conf"
STATE = "/var/lib/outpost"
LOGS = "/var/log/outpost"
RUN = "/run/outpost"
UNIT = "/lib/systemd/system/outpostd.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/outpostd.service"
MASK = "/etc/systemd/system/outpostd.service"
DSH_STATE = ("/var/lib/systemd/deb-systemd-helper-enabled",
             "/var/lib/systemd/deb-systemd-helper-masked")
OURS = SBIN + (ETC, STATE, LOGS, RUN, UNIT, WANTS, MASK,
               "/usr/share/doc/outpost")
SUBMISSION = ("127.0.0.1", 587)


def skip(why):
    print("1..0 # SKIP " + why)
    sys.exit(77)


def installed():
    """The package's dpkg status, or None when dpkg has no record of it."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def preconditions():
    if os.geteuid() != 0:
        skip("not root: dpkg -i and the service user need root")
    if shutil.which("dpkg") is None:
        skip("no dpkg: not a Debian system")
    st = installed()
    if st is not None and not st.startswith("un"):
        skip("package %s is on this machine already (%s): not clobbering it"
             % (PKG, st))
    there = [p for p in OURS if os.path.lexists(p)]
    if there:
        skip("files the package owns exist already (%s): not clobbering "
             "them" % ", ".join(there))
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(SUBMISSION)
        except OSError as e:
            skip("127.0.0.1:587, the packaged listener, is taken (%s)" % e)
    if shutil.which("lintian") is None:
        raise SystemExit("lintian is missing: `make deps` installs it")


def sh(args, what, timeout=300, env=None, ok=(0,)):
    t0 = time.time()
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=timeout, env=env)
    if r.returncode not in ok:
        raise TestFailure("%s: exit %d\nstdout: %s\nstderr: %s"
                          % (what, r.returncode, r.stdout[-3000:],
                             r.stderr[-3000:]))
    print("# %s: %.1fs" % (what, time.time() - t0))
    return r


def build_deb(tmp):
    """The .deb of `make package`, in a Release build directory of its own;
    the current build serves when it is Release itself."""
    build = os.path.dirname(os.path.abspath(BIN))
    cache = os.path.join(build, "CMakeCache.txt")
    btype = ""
    if os.path.exists(cache):
        with open(cache) as f:
            m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", f.read(), re.M)
            btype = m.group(1) if m else ""
    if btype == "Release":
        out = os.path.join(tmp, "cpack")
        sh(["cpack", "-G", "DEB", "-B", out, "--config",
            os.path.join(build, "CPackConfig.cmake")], "cpack (build %s)"
           % build)
    else:
        out = os.path.join(tmp, "build-pkg")
        # Not the jobserver or variables of a `make test` above us.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        sh(["make", "-C", SRC, "package", "PKG_BUILD=" + out,
            "JOBS=%d" % max(2, os.cpu_count() or 2)],
           "make package (Release build of its own)", timeout=600, env=env)
    debs = [f for f in os.listdir(out) if re.match(r"outpost_.*\.deb$", f)]
    eq(len(debs), 1, "the .deb made: %s" % debs)
    deb = os.path.join(out, debs[0])
    print("# %s: %d bytes" % (debs[0], os.path.getsize(deb)))
    return deb


def check_control(deb):
    r = sh(["dpkg-deb", "-f", deb], "dpkg-deb -f")
    f = dict(re.findall(r"^([\w-]+): (.*)$", r.stdout, re.M))
    eq(f.get("Package"), PKG, "Package")
    eq(f.get("Section"), "mail", "Section")
    eq(f.get("Priority"), "optional", "Priority")
    for k in ("Maintainer", "Homepage", "Description", "Version"):
        check(f.get(k), "no %s field" % k)
    check(re.match(r"^\d+\.\d+\.\d+-\d+$", f["Version"]),
          "Version %r is not UPSTREAM-REVISION" % f["Version"])
    dep = f.get("Depends", "")
    # From dpkg-shlibdeps: what the programs are linked against.
    for lib in ("libc6", "libssl3", "libevent-core",
                "libsodium23", "libconfuse2", "zlib1g", "adduser"):
        check(lib in dep, "Depends lacks %s: %s" % (lib, dep))
    # LMDB is linked in (Debian's liblmdb.a, its writes cut into pieces:
    # queue/map.c), so nothing may ask for the shared one.
    check("liblmdb" not in dep, "Depends names liblmdb: %s" % dep)
    r = sh(["dpkg-deb", "-I", deb], "dpkg-deb -I")
    for member in ("conffiles", "postinst", "prerm", "postrm", "md5sums"):
        check(re.search(r"^\s+\d+ bytes,.*\s%s\s" % member, r.stdout,
                        re.M), "no %s in the control archive" % member)


def run_lintian(deb):
    r = sh(["lintian", "--no-tag-display-limit", deb], "lintian",
           ok=(0, 1, 2))
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    for ln in lines:
        print("# lintian: " + ln)
    if not lines:
        print("# lintian: clean")
    errors = [ln for ln in lines if ln.startswith("E:")]
    check(not errors, "lintian errors:\n" + "\n".join(errors))
    eq(r.returncode, 0, "lintian exit status")


def mode_owner(path, mode, user, group):
    st = os.lstat(path)
    eq("%04o" % stat.S_IMODE(st.st_mode), "%04o" % mode, path + " mode")
    eq(pwd.getpwuid(st.st_uid).pw_name, user, path + " owner")
    eq(grp.getgrgid(st.st_gid).gr_name, group, path + " group")


def as_user(name):
    pw = pwd.getpwnam(name)

    def drop():
        os.setgroups(os.getgrouplist(name, pw.pw_gid))
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


def check_elf(path):
    """PIE, full RELRO, the stack protector, fortified calls, stripped."""
    def readelf(*opts):
        return subprocess.run(["readelf", "-W"] + list(opts) + [path],
                              capture_output=True, text=True,
                              check=True).stdout
    check("DYN (Position-Independent Executable" in readelf("-h"),
          path + ": not PIE")
    check("GNU_RELRO" in readelf("-l"), path + ": no RELRO")
    check(re.search(r"FLAGS.*BIND_NOW", readelf("-d")),
          path + ": no BIND_NOW (-z now)")
    syms = readelf("--dyn-syms")
    check("__stack_chk_fail" in syms, path + ": no stack protector")
    check(re.search(r"__\w+_chk@", syms), path + ": no _FORTIFY_SOURCE")
    check(".symtab" not in readelf("-S"), path + ": not stripped")


def check_installed():
    check(installed().startswith("ii"), "dpkg status %r" % installed())
    pw = pwd.getpwnam("outpost")
    eq(grp.getgrgid(pw.pw_gid).gr_name, "outpost", "outpost's group")
    check(pw.pw_uid < 1000, "outpost is not a system user: uid %d"
          % pw.pw_uid)
    for p in SBIN:
        mode_owner(p, 0o755, "root", "root")
        check_elf(p)
    mode_owner(ETC, 0o750, "root", "outpost")
    mode_owner(CONF, 0o640, "root", "outpost")
    mode_owner(STATE, 0o700, "outpost", "outpost")
    mode_owner(LOGS, 0o750, "outpost", "adm")
    mode_owner(UNIT, 0o644, "root", "root")
    r = sh(["dpkg-query", "-W", "-f=${Conffiles}", PKG], "conffiles")
    check(CONF in r.stdout, "%s is not a conffile: %r" % (CONF, r.stdout))
    check(ETC + "/bounce-categories" in r.stdout,
          "the bounce-category rules are not a conffile: %r" % r.stdout)
    # outpostd rotates its logs itself: logrotate must not do it again.
    check("logrotate" not in r.stdout,
          "a logrotate file among the conffiles: %r" % r.stdout)
    r = sh(["dpkg", "-L", PKG], "dpkg -L")
    check("logrotate" not in r.stdout,
          "the package installs a logrotate file: %r" % r.stdout)
    # Enabled as `systemctl enable` would (no systemd runs here), not
    # started: nothing listens yet.
    check(os.path.islink(WANTS), WANTS + " missing: the unit is not enabled")
    eq(os.readlink(WANTS), UNIT, WANTS + " target")
    import socket
    with socket.socket() as s:
        check(s.connect_ex(SUBMISSION) != 0, "something listens on "
              "127.0.0.1:587 after dpkg -i: the package started a daemon")
    for page in ("/usr/share/man/man8/outpostd.8.gz",
                 "/usr/share/man/man8/outpost.8.gz",
                 "/usr/share/man/man5/outpost.conf.5.gz",
                 "/usr/share/doc/outpost/changelog.Debian.gz"):
        with open(page, "rb") as f:
            head = f.read(10)
        # gzip -n: no name flag, no time stamp; -9: XFL 2.
        eq((head[:2], head[3] & 0x08, head[4:8], head[8]),
           (b"\x1f\x8b", 0, b"\0\0\0\0", 2), page + " gzip header")
        with gzip.open(page) as f:
            check(f.read(64), page + " is empty")
    with open("/usr/share/doc/outpost/copyright") as f, \
            open(os.path.join(SRC, "COPYING")) as g:
        eq(f.read(), g.read(), "copyright")
    # The daemon's account reads its configuration (as reload does);
    # others do not.
    r = subprocess.run(["cat", CONF], preexec_fn=as_user("outpost"),
                       capture_output=True)
    eq(r.returncode, 0, "outpost reads %s: %s" % (CONF, r.stderr))
    r = subprocess.run(["cat", CONF], preexec_fn=as_user("nobody"),
                       capture_output=True)
    check(r.returncode != 0, "nobody reads " + CONF)
    sh([SBIN[0], "-t", "-c", CONF], "outpostd -t " + CONF)


def relay_through_installed(tmp):
    """The installed daemon with the installed configuration, plus only
    what loopback needs: our DNS, a route to our receiver, a metrics port
    no one else has."""
    with Dns() as dns, Sink() as sink:
        wrap = os.path.join(tmp, "loopback.conf")
        extra = ['include("%s")' % CONF,
                 'dns { servers = "%s" timeout = 1s tries = 1 }'
                 % dns.servers,
                 'route "pkg.test" { host = "127.0.0.1:%d" }' % sink.port,
                 'metrics { listen = "127.0.0.1:%d" }' % free_port()]
        with open(wrap, "w") as f:
            f.write("\n".join(extra) + "\n")
        # What RuntimeDirectory= of the unit makes under systemd.
        os.mkdir(RUN, 0o755)
        env = dict(os.environ, OUTPOST_LOOPBACK_ONLY="1")
        env.pop("OUTPOST_CONF", None)
        errf = open(os.path.join(tmp, "outpostd.stderr"), "w+")
        d = subprocess.Popen([SBIN[0], "-c", wrap], env=env,
                             stdout=errf, stderr=subprocess.STDOUT)
        try:
            wait_port(*SUBMISSION, timeout=30, proc=d)
            # The listener is bound before the privileges are dropped:
            # the port may answer a moment before the uid changes.
            want, deadline = pwd.getpwnam("outpost").pw_uid, time.time() + 10
            while True:
                with open("/proc/%d/status" % d.pid) as f:
                    uid = int(re.search(r"^Uid:\s+(\d+)", f.read(),
                                        re.M).group(1))
                if uid == want or time.time() > deadline:
                    break
                time.sleep(0.05)
            eq(uid, want, "daemon's uid")
            with smtplib.SMTP(*SUBMISSION, timeout=30) as s:
                s.ehlo("client.pkg.test")
                s.starttls(context=insecure_tls())  # the generated cert
                s.ehlo("client.pkg.test")
                s.sendmail("news@pkg.test", ["user@pkg.test"],
                           b"From: news@pkg.test\r\nTo: user@pkg.test\r\n"
                           b"Subject: installed\r\n\r\nfrom the package\r\n")
            sink.wait_messages(1)
            check(b"from the package" in sink.messages()[0],
                  "the message at the receiver")
            log = LOGS + "/delivery.log"

            def delivered():
                if not os.path.exists(log):
                    return False
                with open(log) as f:
                    return any(json.loads(ln).get("event") == "delivery"
                               for ln in f if ln.strip())
            wait_for(delivered, 30, "a delivery event in " + log)
            mode_owner(log, 0o600, "outpost", "outpost")
            # The installed CLI finds /etc/outpost/outpost.conf by itself,
            # and through it the daemon's socket.
            r = sh([SBIN[1], "status"], "outpost status", env=env)
            check(re.search(r"^listener\s+127\.0\.0\.1:587 ", r.stdout,
                            re.M), "status: " + r.stdout)
            d.send_signal(signal.SIGTERM)
            eq(d.wait(timeout=60), 0, "outpostd exit status")
        finally:
            if d.poll() is None:
                d.kill()
                d.wait()
            errf.seek(0)
            err = errf.read()
            errf.close()
            print("# outpostd: " + "\n# outpostd: ".join(
                err.strip().splitlines()[-8:]))
    check(os.listdir(STATE + "/queue"), "no queue in " + STATE)


def remove_then_purge():
    sh(["dpkg", "-r", PKG], "dpkg -r")
    for p in SBIN + (UNIT,):
        check(not os.path.exists(p), "%s left after dpkg -r" % p)
    for p in (CONF, STATE + "/queue", STATE + "/keys/queue.key",
              LOGS + "/delivery.log"):
        check(os.path.exists(p), "%s gone after dpkg -r (kept until "
              "purge)" % p)
    sh(["dpkg", "--purge", PKG], "dpkg --purge")
    st = installed()
    check(st is None or st[1] == "n", "dpkg status after purge: %r" % st)
    left = [p for p in OURS if os.path.lexists(p)]
    # deb-systemd-helper's own record of the enablement and the mask.
    for top in DSH_STATE:
        for dirpath, dirs, files in os.walk(top):
            left += [os.path.join(dirpath, n) for n in dirs + files
                     if "outpostd" in n]
    check(not left, "left after dpkg --purge: %s" % left)
    pwd.getpwnam("outpost")  # stays: Debian keeps system users
    print("# the system user outpost stays after the purge (Debian "
          "convention)")


def purge_quietly():
    subprocess.run(["dpkg", "--purge", PKG], capture_output=True)
    if os.path.isdir(RUN):
        shutil.rmtree(RUN, ignore_errors=True)


def test_package_install_relay_purge():
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="outpost-pkg-")
    done = False
    try:
        deb = build_deb(tmp)
        check_control(deb)
        run_lintian(deb)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["dpkg", "-i", deb], "dpkg -i", env=env)
        check_installed()
        relay_through_installed(tmp)
        remove_then_purge()
        done = True
    finally:
        if not done:
            purge_quietly()
        shutil.rmtree(tmp, ignore_errors=True)
    print("# package test: %.1fs" % (time.time() - t0))


preconditions()
run_tests(globals())
