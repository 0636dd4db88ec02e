#!/usr/bin/env python3
"""bench_peers_test.py SRC — `make bench` needs nothing outside the repository.

Fails when a file of t/bench (scripts, adapters, harness, README) or the
Makefile's bench recipe names a path outside the tree (/work/..., a
../shared harness, $HOME); when a script's peer adapter (peers/NAME.sh, or
the default of BENCH_POSTFIX_ADAPTER) is not an executable file of
t/bench/peers; or when an adapter lacks the start/stop contract that
harness.sh and the scripts rely on.  Static: it runs no peer (the peers need
root and Postfix; `make bench` runs them).
"""
import os
import re
import sys

OUTSIDE = re.compile(r"/work/|\.\./shared|\$HOME|\$\{HOME\}|~/")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def main():
    src = sys.argv[1]
    bench = os.path.join(src, "t", "bench")
    peers = os.path.join(bench, "peers")
    files = []
    for root, _, names in os.walk(bench):
        if os.path.relpath(root, bench).startswith("results"):
            continue  # run output, gitignored
        files += [os.path.join(root, n) for n in sorted(names)]
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        rel = os.path.relpath(path, src)
        for no, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                fail("%s:%d names a path outside the repository: %s"
                     % (rel, no, line.strip()))
        if not path.endswith(".sh"):
            continue
        for m in re.finditer(r"peers/([A-Za-z0-9_-]+\.sh)", text):
            if m.group(1) != "NAME.sh" and not os.access(  # NAME: prose
                    os.path.join(peers, m.group(1)), os.X_OK):
                fail("%s uses peers/%s, which is not an executable file of "
                     "t/bench/peers" % (rel, m.group(1)))
        m = re.search(r"BENCH_POSTFIX_ADAPTER:-([^}]*)\}", text)
        if m and not m.group(1).startswith("$HERE/peers/"):
            fail("%s: BENCH_POSTFIX_ADAPTER defaults to %s, not t/bench/peers"
                 % (rel, m.group(1)))
    with open(os.path.join(src, "Makefile"), encoding="utf-8") as f:
        recipe = re.search(r"^bench:.*?(?=^\S|\Z)", f.read(), re.S | re.M)
    if recipe and OUTSIDE.search(recipe.group(0)):
        fail("Makefile's bench recipe names a path outside the repository")
    for name in sorted(os.listdir(peers)):
        path = os.path.join(peers, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # the contract: start WORKDIR LISTEN_PORT SINK_PORT [SIGN] [TLS], stop
        # WORKDIR; the PIDs it started in WORKDIR/pids
        for want in ("start)", "stop)", "/pids", "start WORKDIR LISTEN_PORT SINK_PORT"):
            if want not in text:
                fail("peers/%s lacks %r of the adapter contract" % (name, want))
    print("%d file(s) of t/bench checked" % len(files))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
