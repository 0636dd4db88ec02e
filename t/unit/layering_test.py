#!/usr/bin/env python3
"""layering_test.py — the rooms of the tree depend on each other one way.

Three checks, each printing every breach as `file: message` and failing:
  1. symbols: every undefined symbol of a static library (and of the CLI's
     objects) that another Outpost library defines must come from a library
     it may use (EDGES) — a forbidden call fails here even where the link
     order of outpostd would hide it;
  2. includes: a source file includes only headers of its own room or of a
     room its room may use (the CLI may include only control's protocol
     header from mta/control/, nothing else from mta/ but core);
  3. size: no source file of mta/, queue/, dkim/, dns/, conf/ is longer
     than FILE_LINES_MAX lines.

Usage: layering_test.py BUILD_DIR   (the source tree is this file's ../..)
"""
import os
import re
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILE_LINES_MAX = 1500

# room -> rooms it may use.  core <- observe <- {receive, deliver} <- control
# <- main; cli on top of the protocol, core and the libraries.
EDGES = {
    "dns": set(),
    "queue": set(),
    "conf": {"dns"},
    "dkim": {"dns"},
    "core": {"dkim", "dns", "queue"},
    "observe": {"core", "queue", "conf"},
    "receive": {"observe", "core", "queue", "conf", "dkim", "dns"},
    "deliver": {"observe", "core", "queue", "conf", "dns"},
    "control": {"receive", "deliver", "observe", "core", "queue", "conf"},
    "cli": {"core", "queue", "conf", "dkim", "dns"},
    "main": {"control", "receive", "deliver", "observe", "core", "queue",
             "conf", "dkim", "dns"},
}
# Headers of a room that a room outside EDGES may still include.
CLI_PROTOCOL = {"mta/control/control_proto.h"}

LIBS = {
    "dns": "dns/liboutpost_dns.a",
    "queue": "queue/liboutpost_queue.a",
    "conf": "conf/liboutpost_conf.a",
    "dkim": "dkim/liboutpost_dkim.a",
    "core": "mta/core/liboutpost_core.a",
    "observe": "mta/observe/liboutpost_observe.a",
    "receive": "mta/receive/liboutpost_receive.a",
    "deliver": "mta/deliver/liboutpost_deliver.a",
    "control": "mta/control/liboutpost_control.a",
}


def room_of(path):
    """The room of a path relative to SRC, or None outside the rooms."""
    parts = path.split("/")
    if parts[0] in ("dns", "queue", "conf", "dkim"):
        return parts[0]
    if parts[0] == "mta":
        if len(parts) == 2:
            return "main" if parts[1] == "main.c" else "mta-loose"
        return parts[1]
    return None


def nm(paths):
    out = subprocess.run(["nm", "-g", "--defined-only"] + paths,
                         capture_output=True, text=True, check=True).stdout
    defined = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDBRCVW":
            defined.add(f[2])
    out = subprocess.run(["nm", "-g", "--undefined-only"] + paths,
                         capture_output=True, text=True, check=True).stdout
    undefined = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == "U":
            undefined.add(f[1])
    return defined, undefined


def check_symbols(build, errors):
    defs = {}
    undefs = {}
    for room, rel in LIBS.items():
        path = os.path.join(build, rel)
        if not os.path.exists(path):
            errors.append(f"{rel}: missing (build it first)")
            return
        d, u = nm([path])
        undefs[room] = u - d
        for s in d:
            defs.setdefault(s, room)
    cli_dir = os.path.join(build, "mta/cli/CMakeFiles/outpost.dir")
    objs = [os.path.join(cli_dir, f) for f in sorted(os.listdir(cli_dir))
            if f.endswith(".o")] if os.path.isdir(cli_dir) else []
    if not objs:
        errors.append("mta/cli: no object files (build it first)")
    else:
        d, u = nm(objs)
        undefs["cli"] = u - d
    for room, u in sorted(undefs.items()):
        for s in sorted(u):
            owner = defs.get(s)
            if owner is None or owner == room:
                continue
            if owner not in EDGES[room]:
                errors.append(f"{LIBS.get(room, 'mta/cli')}: calls {s} "
                              f"of {owner}, which {room} may not use")


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources():
    out = subprocess.run(["git", "-C", SRC, "ls-files", "--cached",
                          "--others", "--exclude-standard",
                          "mta", "queue", "dkim", "dns", "conf"],
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.split() if p.endswith((".c", ".h"))
            and os.path.exists(os.path.join(SRC, p))]


def check_includes(errors):
    for path in sources():
        room = room_of(path)
        if room == "mta-loose":
            errors.append(f"{path}: mta/ holds only main.c; put it in a room")
            continue
        with open(os.path.join(SRC, path), encoding="utf-8") as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            target = room_of(inc)
            if target is None or target == room:
                continue
            if room == "cli" and inc in CLI_PROTOCOL:
                continue
            if target not in EDGES.get(room, set()):
                errors.append(f"{path}: includes {inc}, but {room} may not "
                              f"use {target}")


def check_sizes(errors):
    for path in sources():
        with open(os.path.join(SRC, path), encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > FILE_LINES_MAX:
            errors.append(f"{path}: {n} lines, over {FILE_LINES_MAX}: "
                          "split it along a seam")


def main():
    if len(sys.argv) != 2:
        print("usage: layering_test.py BUILD_DIR", file=sys.stderr)
        return 2
    results = []
    for name, fn in (("symbols", lambda e: check_symbols(sys.argv[1], e)),
                     ("includes", check_includes), ("sizes", check_sizes)):
        errors = []
        fn(errors)
        for e in errors:
            print(e)
        results.append((name, not errors))
        print(f"{'ok' if not errors else 'not ok'} - {name}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
