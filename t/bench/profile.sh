#!/bin/bash
# t/bench/profile.sh — where does outpostd's CPU go on the 4 KB relay?
# (called by run.sh; not in the default BENCHES: `BENCHES=profile`).
# One outpostd relaying to outpost-sink (relay_conf: routes to the sink, DNS
# at a dead loopback port, no DMARC check, unsigned), BENCH_PROF_N messages
# of BENCH_PROF_SIZE bytes over BENCH_PROF_SESSIONS pipelining sessions,
# after a warm-up; `perf record -g` samples the daemon alone for the
# measured load; then perf report's flat self-time profile (top
# BENCH_PROF_TOP symbols, with their DSO) and the same grouped by part of
# Outpost (its source folder: mta/receive, mta/deliver, queue, …, read from
# its function-name prefix, as the house style names functions after
# their file) and by library.
# Figures: outpostd CPU ms per message (procstat), the same per thread
# (its name: smtpN, deliver, deliverN, queue writer, …), msg/s end to end,
# and the profile tables.  BENCH_PROF_CONF: lines added to the daemon's
# configuration (e.g. 'delivery { threads = 1 }': sections merge).  Needs perf (linux-perf); without it, the CPU figure
# only.  Env in: BENCH_BUILD, BENCH_OUT.  Writes BENCH_OUT/profile.json,
# profile.md and profile-logs/perf.txt.  Loopback only.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_PROF_N:-40000}
SIZE=${BENCH_PROF_SIZE:-4096}
SESSIONS=${BENCH_PROF_SESSIONS:-20}
WARMUP=${BENCH_PROF_WARMUP:-2000}
TOP=${BENCH_PROF_TOP:-40}

work=$(mktemp -d /tmp/outpost-bench-profile.XXXXXX)
chmod 711 "$work"
OPD_PID='' OSINK_PID='' PERF_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	[ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null || :
	stop_pid "$OPD_PID" 30
	stop_pid "$OSINK_PID" 5
	mkdir -p "$OUT/profile-logs"
	cp "$work"/*.log "$work"/*.txt "$OUT/profile-logs/" 2>/dev/null || :
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(free_port) sp=$(free_port)
osink_start "$sp" "$work/sink.json" || { echo "profile: outpost-sink did not start" >&2; exit 1; }
relay_conf "$work/outpost.conf" "$work" "$port" "$sp" \
    ${BENCH_PROF_CONF:+"$BENCH_PROF_CONF"}
mkdir -p "$work/var"
"$OUTPOSTD" -c "$work/outpost.conf" >"$work/outpostd.log" 2>&1 &
OPD_PID=$!
wait_port "$port" 30 || { echo "profile: outpostd did not listen" >&2; exit 1; }

load() { # COUNT JSON
	"$LOAD" --host 127.0.0.1 --port "$port" --pipelining --json \
	    --sessions "$SESSIONS" --count "$1" --size "$SIZE" \
	    --progress=never >"$2" 2>>"$work/load.log"
}
load "$WARMUP" "$work/warmup.json"
osink_wait "$work/sink.json" "$WARMUP" 120 >/dev/null

perf_ok=0
if command -v perf >/dev/null; then
	perf record -F 999 -g -o "$work/perf.data" -p "$OPD_PID" \
	    >"$work/perf-record.log" 2>&1 &
	PERF_PID=$!
	sleep 0.5
	perf_ok=1
fi
cpu0=$(tree_cpu "$OPD_PID")
"$PY" "$PROCSTAT" threads "$OPD_PID" >"$work/threads0.json"
t0=$(date +%s.%N)
load "$N" "$work/load.json"
osink_wait "$work/sink.json" $((WARMUP + N)) 600 >/dev/null
t1=$(date +%s.%N)
cpu1=$(tree_cpu "$OPD_PID")
"$PY" "$PROCSTAT" threads "$OPD_PID" >"$work/threads1.json"
if [ "$perf_ok" = 1 ]; then
	kill -INT "$PERF_PID" 2>/dev/null || :
	wait "$PERF_PID" 2>/dev/null || :
	PERF_PID=''
	perf report -i "$work/perf.data" --no-children --sort dso,symbol \
	    --stdio -g none --percent-limit 0 2>/dev/null \
	    >"$work/perf.txt" || perf_ok=0
	# The same by thread (profile-logs/perf-threads.txt), for reading
	# what one thread spends its time on.
	perf report -i "$work/perf.data" --no-children \
	    --sort comm,dso,symbol --stdio -g none --percent-limit 0.2 \
	    2>/dev/null >"$work/perf-threads.txt" || :
fi

"$PY" - "$work" "$OUT" "$N" "$SIZE" "$SESSIONS" "$t0" "$t1" "$cpu0" "$cpu1" \
    "$perf_ok" "$TOP" <<'PYEOF'
import json, re, sys
work, out, n, size, sessions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0, t1, cpu0, cpu1 = (float(x) for x in sys.argv[6:10])
perf_ok, top = sys.argv[10] == "1", int(sys.argv[11])
rows = []
if perf_ok:
    for line in open(work + "/perf.txt", errors="replace"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.+?)[\s-]*$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
# Parts of Outpost by function prefix (the house style: file name =
# function prefix), libraries by DSO.
PARTS = [("smtp_server", "receive"), ("smtp_data", "receive"), ("intake", "receive"),
         ("listen", "receive"), ("peer", "receive"), ("addr", "receive"),
         ("scan", "receive"), ("sched", "deliver"), ("smtp_client", "deliver"),
         ("outcome", "deliver"), ("bounce", "deliver"), ("queue", "queue"),
         ("writer", "queue"), ("record", "queue"), ("crypt", "queue"),
         ("dkim", "dkim"), ("dmarc", "dkim"), ("dns", "dns"), ("evlog", "observe"),
         ("metrics", "observe"), ("watchdog", "observe"), ("suppress", "observe"),
         ("loop", "core"), ("worker", "core"), ("log", "core"), ("scrub", "core"),
         ("json", "core"), ("htab", "core"), ("idmap", "core"), ("util", "core")]
groups = {}
for pct, dso, sym in rows:
    if dso == "outpostd":
        part = next((p for pre, p in PARTS if sym.startswith(pre)), "outpostd (other)")
    elif dso.startswith("[kernel"):
        part = "kernel"
    else:
        part = re.sub(r"\.so.*$", "", dso)
    groups[part] = groups.get(part, 0.0) + pct
msgs = n
th0 = json.load(open(work + "/threads0.json"))
th1 = json.load(open(work + "/threads1.json"))
res = {"benchmark": "profile", "messages": n, "size": size, "sessions": sessions,
       "elapsed_s": round(t1 - t0, 3), "msg_per_s": round(n / (t1 - t0), 1),
       "cpu_ms_per_msg": round((cpu1 - cpu0) * 1000 / msgs, 4),
       "perf": perf_ok,
       # CPU ms per message of each thread (by name) during the load
       "thread_cpu_ms_per_msg": {k: round((v - th0.get(k, 0.0)) * 1000 / msgs, 4)
                                 for k, v in sorted(th1.items())
                                 if v - th0.get(k, 0.0) > 0},
       "top": [{"pct": p, "dso": d, "symbol": s} for p, d, s in rows[:top]],
       "by_part": dict(sorted(groups.items(), key=lambda kv: -kv[1]))}
json.dump(res, open(out + "/profile.json", "w"), indent=1)
lines = ["## Profile: the %d-byte relay, %d messages, %d sessions, unsigned" % (size, n, sessions), "",
         "outpostd CPU **%.3f ms per message**, %s msg/s end to end." % (res["cpu_ms_per_msg"], "{:,.0f}".format(res["msg_per_s"])), ""]
lines += ["| thread | CPU ms per message |", "|---|---|"]
lines += ["| %s | %.4f |" % kv for kv in res["thread_cpu_ms_per_msg"].items()]
lines.append("")
if perf_ok:
    lines += ["| part (by function prefix or library) | % of outpostd's samples |", "|---|---|"]
    lines += ["| %s | %.1f |" % kv for kv in res["by_part"].items()]
    lines += ["", "| % self | DSO | symbol |", "|---|---|---|"]
    lines += ["| %.2f | %s | %s |" % (p, d, s.replace("|", "\\|")) for p, d, s in rows[:top]]
else:
    lines.append("perf was not available: no profile.")
open(out + "/profile.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:4]))
PYEOF
