#!/bin/bash
# t/bench/loops.sh — what does delivery cost per message with 1, 2, …
# delivery loops?  (called by run.sh; not in the default BENCHES:
# `BENCHES=loops`).  For each T in BENCH_LOOPS ("1 2"), BENCH_LOOPS_ROUNDS
# times (2): one outpostd with `delivery { threads = T }` relaying to
# outpost-sink (relay_conf: everything to the sink, DNS at a dead loopback
# port, no DMARC check, unsigned); its destination sink.test (up to 50
# connections) suspended (`outpost suspend`); BENCH_LOOPS_N messages of
# BENCH_LOOPS_SIZE bytes (50,000 of 4 KB) queued by outpost-load (50
# pipelining sessions); then the destination resumed, and the delivery
# threads' CPU (deliver, deliver1, …: utime + stime from /proc) counted
# from the resume to the sink's last message.  Delivery alone, from a
# backlog: nothing else runs on the two cores meanwhile but the sink (and
# the resume's one walk of the queue, on a worker), so the figure is the
# delivery loops' own cost per message, and how it moves with T.  (Until
# 2026-12-06 the backlog went to 50 destinations, resumed one by one: 50
# walks of the queue, and the drain ran at the walks' pace, not
# delivery's.)
# BENCH_LOOPS_SINK: options added to outpost-sink's ("--starttls": the
# drain over STARTTLS, which Outpost's default tls = may takes).
# BENCH_LOOPS_WARM=N (0): a drain of N messages of the same shape first,
# unmeasured, so that the figure is a daemon's whose heaps have grown.
# Figures per T: delivery CPU µs per message (each round, their mean), the
# same per thread, the drain's msg/s, the connections the sink took (in
# all, and at once: a second loop may open more in all, each a TLS
# handshake over STARTTLS, while the destination's limit holds at once);
# for each T after the first, its
# difference from the first round by round, with a 95% interval (the
# machine drifts by more than the difference looked for: only an interval
# that excludes 0 tells a fall or a rise).  Env in: BENCH_BUILD, BENCH_OUT.
# Writes BENCH_OUT/loops.json and loops.md.  Loopback only; every process
# it starts is stopped by PID on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
LOOPS=${BENCH_LOOPS:-1 2}
ROUNDS=${BENCH_LOOPS_ROUNDS:-2}
N=${BENCH_LOOPS_N:-50000}
SIZE=${BENCH_LOOPS_SIZE:-4096}
WARM=${BENCH_LOOPS_WARM:-0}
CLI=$(dirname "$OUTPOSTD")/outpost

work=$(mktemp -d /tmp/outpost-bench-loops.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
OPD_PID='' OSINK_PID='' PERF_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	stop_pid "$PERF_PID" 10
	stop_pid "$OPD_PID" 30
	stop_pid "$OSINK_PID" 5
	mkdir -p "$OUT/loops-logs"
	cp "$work"/*.log "$OUT/loops-logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The delivery threads' CPU ticks (deliver*), as JSON {name: ticks}.
deliver_ticks() {
	"$PY" - "$1" <<'PYEOF'
import glob, json, sys
out = {}
for t in glob.glob("/proc/%s/task/*" % sys.argv[1]):
    try:
        name = open(t + "/comm").read().strip()
        f = open(t + "/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if name.startswith("deliver"):
        out[name] = out.get(name, 0) + int(f[11]) + int(f[12])
print(json.dumps(out))
PYEOF
}

# run T ROUND: one drain; appends a JSON line to $work/runs.jsonl.
run() {
	local t=$1 round=$2 d="$work/t$1-r$2" port sp t0 t1 c0 c1 hwm conns
	mkdir -p "$d"
	chmod 755 "$d"
	port=$(free_port)
	sp=$(free_port)
	# shellcheck disable=SC2086 # words of the sink's options
	osink_start "$sp" "$d/sink.json" ${BENCH_LOOPS_SINK:-} || {
		echo "loops: the sink did not start" >&2
		return 1
	}
	relay_conf "$d/outpost.conf" "$d" "$port" "$sp" \
		"delivery { threads = $t }" \
		"destination \"sink.test\" { max_connections = 50 ${BENCH_LOOPS_DEST:-} }"
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/t$t-r$round-outpostd.log" 2>&1 &
	OPD_PID=$!
	wait_port "$port" 30 "$OPD_PID" || {
		echo "loops: outpostd did not listen" >&2
		return 1
	}
	if [ "$WARM" -gt 0 ]; then
		# A drain of the same shape before the measured one: the
		# delivery threads' heaps grow to their peak here, not in
		# the figure (a daemon that has run a while has them).
		"$CLI" -c "$d/outpost.conf" suspend sink.test --for 1h \
			>/dev/null
		"$LOAD" --port "$port" --sessions 50 --count "$WARM" \
			--size "$SIZE" --pipelining \
			>"$work/t$t-r$round-warm.log" 2>&1
		sleep 1
		"$CLI" -c "$d/outpost.conf" resume sink.test >/dev/null
		osink_wait "$d/sink.json" "$WARM" 600 >/dev/null || {
			echo "loops: the warm-up did not reach the sink" >&2
			return 1
		}
	fi
	"$CLI" -c "$d/outpost.conf" suspend sink.test --for 1h >/dev/null
	"$LOAD" --port "$port" --sessions 50 --count "$N" --size "$SIZE" \
		--pipelining \
		>"$work/t$t-r$round-load.log" 2>&1
	sleep 1 # the last commits' completions reach the scheduler
	if [ -n "${BENCH_LOOPS_PERF:-}" ]; then
		mkdir -p "$BENCH_LOOPS_PERF"
		# shellcheck disable=SC2086 # words of perf's options
		perf record -q ${BENCH_LOOPS_PERF_ARGS:--F 4999 -g} -p "$OPD_PID" \
			-o "$BENCH_LOOPS_PERF/t$t-r$round.data" 2>/dev/null &
		PERF_PID=$!
		sleep 0.5
	fi
	c0=$(deliver_ticks "$OPD_PID")
	t0=$(date +%s.%N)
	"$CLI" -c "$d/outpost.conf" resume sink.test >/dev/null
	osink_wait "$d/sink.json" $((WARM + N)) 600 >/dev/null || {
		echo "loops: the sink did not get $N messages" >&2
		return 1
	}
	t1=$(date +%s.%N)
	c1=$(deliver_ticks "$OPD_PID")
	conns=$(cat "$d/sink.json")
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$OPD_PID/status")
	if [ -n "$PERF_PID" ]; then
		kill -INT "$PERF_PID" 2>/dev/null || true
		wait "$PERF_PID" 2>/dev/null || true
		PERF_PID=''
	fi
	stop_pid "$OPD_PID" 30
	OPD_PID=''
	stop_pid "$OSINK_PID" 5
	OSINK_PID=''
	# Its queue goes now: a run after another's 400 MB of queue files
	# cost up to a quarter more (the page cache's to reclaim).
	rm -rf "$d/var"
	"$PY" - "$t" "$round" "$N" "$t0" "$t1" "$c0" "$c1" \
		"$(getconf CLK_TCK)" "$hwm" "$conns" >>"$work/runs.jsonl" <<'PYEOF'
import json, sys
t, rnd, n, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
hwm = int(sys.argv[9] or 0)
try:
    sink = json.loads(sys.argv[10])
except ValueError:
    sink = {}
c0, c1, hz = json.loads(sys.argv[6]), json.loads(sys.argv[7]), int(sys.argv[8])
per = {k: round((v - c0.get(k, 0)) * 1e6 / hz / n, 2) for k, v in sorted(c1.items())}
print(json.dumps({"loops": t, "round": rnd, "messages": n,
                  "drain_s": round(t1 - t0, 3), "msg_per_s": round(n / (t1 - t0), 1),
                  "deliver_us_per_msg": round(sum(per.values()), 2),
                  "vmhwm_mib": round(hwm / 1024, 1),
                  "sink_connections": sink.get("connections_total"),
                  "sink_tls_connections": sink.get("tls_connections"),
                  "sink_connections_max": sink.get("connections_max"),
                  "thread_us_per_msg": per}))
PYEOF
	tail -n 1 "$work/runs.jsonl" >&2
}

# Rounds alternate between the loop counts, so that a drift of the
# machine's over the runs falls on each alike.
for ((r = 1; r <= ROUNDS; r++)); do
	for t in $LOOPS; do
		run "$t" "$r"
	done
done

"$PY" - "$work/runs.jsonl" "$OUT" "$N" "$SIZE" <<'PYEOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
out, n, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
by = {}
for r in runs:
    by.setdefault(r["loops"], []).append(r)
summary = []
for t, rs in sorted(by.items()):
    summary.append({"loops": t,
                    "deliver_us_per_msg": round(sum(r["deliver_us_per_msg"] for r in rs) / len(rs), 2),
                    "msg_per_s": round(sum(r["msg_per_s"] for r in rs) / len(rs), 1),
                    "rounds": rs})
lines = ["## Delivery loops: %d messages of %d bytes drained from a backlog to outpost-sink" % (n, size), "",
         "| delivery loops | delivery CPU µs per message (mean) | each round | per thread (first round) | drain msg/s | VmHWM MiB (max) | connections to the sink, each round (at once, max) |",
         "|---|---|---|---|---|---|---|"]
for s in summary:
    lines.append("| %d | **%.1f** | %s | %s | %s | %.1f | %s (%s) |" % (
        s["loops"], s["deliver_us_per_msg"],
        ", ".join("%.1f" % r["deliver_us_per_msg"] for r in s["rounds"]),
        ", ".join("%s %.1f" % kv for kv in s["rounds"][0]["thread_us_per_msg"].items()),
        "{:,.0f}".format(s["msg_per_s"]),
        max(r.get("vmhwm_mib", 0) for r in s["rounds"]),
        ", ".join(str(r.get("sink_connections")) for r in s["rounds"]),
        max((r.get("sink_connections_max") or 0) for r in s["rounds"])))
# Each loop count against the first, round by round (the rounds ran in
# turns, so a pair shares the machine's state of the moment): the mean
# difference and its 95% interval (Student's t), which says whether the
# rounds can tell a rise or a fall from the machine's drift.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36,
       8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}
base = summary[0]
for s in summary[1:]:
    d = [b["deliver_us_per_msg"] - a["deliver_us_per_msg"]
         for a, b in zip(base["rounds"], s["rounds"])]
    if len(d) < 2:
        continue
    mean = sum(d) / len(d)
    sd = (sum((x - mean) ** 2 for x in d) / (len(d) - 1)) ** 0.5
    t = T95[max(k for k in T95 if k <= len(d) - 1)]
    half = t * sd / len(d) ** 0.5
    s["paired_diff_us"] = round(mean, 2)
    s["paired_ci95_us"] = [round(mean - half, 2), round(mean + half, 2)]
    verdict = ("falls" if mean + half < 0 else
               "rises" if mean - half > 0 else
               "no change the rounds can tell")
    lines.append("")
    lines.append("%d loops against %d, round by round: %+.1f µs per message "
                 "(95%% interval %+.1f to %+.1f, %d pairs): %s." % (
                     s["loops"], base["loops"], mean, mean - half,
                     mean + half, len(d), verdict))
json.dump({"benchmark": "loops", "messages": n, "size": size, "loops": summary},
          open(out + "/loops.json", "w"), indent=1)
lines += ["", "Delivery CPU: utime + stime of the threads named deliver* (loop 0, deliver, "
          "drives its connections; deliverN its own shard's, or loop 0's connections with a cluster), "
          "from `outpost resume` to the sink's last message, over the messages.  The drain time "
          "includes the resume's walk of the queue."]
open(out + "/loops.md", "w").write("\n".join(lines) + "\n")
print("\n".join(l for l in lines if not l.startswith("Delivery CPU:")))
PYEOF
