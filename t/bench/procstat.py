#!/usr/bin/python3
"""procstat.py — process accounting for the benchmarks (stdlib only).

  procstat.py cpu ROOT...          CPU seconds of the process trees: for every
                                   live member utime+stime+cutime+cstime
                                   (children already reaped count via their
                                   parent), threads included
  procstat.py sample FILE ROOT...  until SIGTERM: every 0.25 s the summed RSS
                                   of the trees (and every 1 s their PSS);
                                   writes the peaks to FILE as JSON
  procstat.py hwm PID              VmHWM (peak RSS) of one process, KiB
  procstat.py threads PID          CPU seconds of each thread of one process
                                   (/proc/PID/task/*/stat), as JSON
                                   {"name": seconds}; threads of one name
                                   summed (name: its comm, e.g. deliver1)

One process reads /proc directly, so sampling costs the measured MTA little.
"""
import json
import os
import signal
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def tree(roots):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(int(d))
            if st:
                kids.setdefault(int(st[1]), []).append(int(d))
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen or not os.path.exists("/proc/%d" % p):
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
    return seen


def cpu(roots):
    total = 0
    for p in tree(roots):
        st = stat(p)
        if st:
            total += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    return total / CLK


def mem(roots, with_pss):
    rss = pss = n = 0
    for p in tree(roots):
        try:
            with open("/proc/%d/statm" % p) as f:
                rss += int(f.read().split()[1]) * PAGE_KIB
            n += 1
            if with_pss:
                with open("/proc/%d/smaps_rollup" % p) as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
                            break
        except OSError:
            pass
    return rss, pss, n


def sample(path, roots):
    peak = {"peak_rss_kib": 0, "peak_pss_kib": 0, "peak_procs": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def write():
        with open(path + ".tmp", "w") as f:
            json.dump(peak, f)
        os.replace(path + ".tmp", path)

    i = 0
    while not stop:
        rss, pss, n = mem(roots, i % 4 == 0)
        peak["peak_rss_kib"] = max(peak["peak_rss_kib"], rss)
        peak["peak_pss_kib"] = max(peak["peak_pss_kib"], pss)
        peak["peak_procs"] = max(peak["peak_procs"], n)
        if i % 4 == 0:
            write()
        i += 1
        time.sleep(0.25)
    write()


def threads(pid):
    out = {}
    task = "/proc/%d/task" % pid
    for tid in os.listdir(task):
        try:
            with open("%s/%s/comm" % (task, tid)) as f:
                name = f.read().strip()
        except OSError:
            continue
        st = stat_path("%s/%s/stat" % (task, tid))
        if st:
            out[name] = out.get(name, 0.0) + \
                (int(st[11]) + int(st[12])) / CLK
    return out


def stat_path(path):
    try:
        with open(path) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "cpu":
        print("%.2f" % cpu([int(a) for a in args]))
    elif cmd == "sample":
        sample(args[0], [int(a) for a in args[1:]])
    elif cmd == "hwm":
        try:
            with open("/proc/%s/status" % args[0]) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        print(line.split()[1])
        except OSError:
            pass
    elif cmd == "threads":
        print(json.dumps(threads(int(args[0])), sort_keys=True))
    else:
        sys.exit("usage: procstat.py cpu|sample|hwm|threads ...")


if __name__ == "__main__":
    main()
