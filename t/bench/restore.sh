#!/bin/bash
# t/bench/restore.sh — restore points over a large queue (called by run.sh).
# Does acceptance slow down while points are taken every 10 s, and what
# does a point of a large queue cost (size, time)?
#   1. outpostd, fresh data_dir under /tmp, restore.interval = 0, its 50
#      recipient domains suspended (`outpost suspend`): no delivery
#      attempt, so no deferral writes mix with acceptance; the queue only
#      grows.  outpost-load fills it with BENCH_RP_N messages (~1 KB, one
#      recipient, 50 pipelining sessions).
#   2. Measured injections of BENCH_RP_M messages each, alternating:
#      W0, W1 … without points, P1, P2 … (BENCH_RP_ROUNDS of them, 3) with
#      restore.interval = 10s (set by `outpost reload`; the first point
#      comes at once): the phases without bracket those with, so a drift
#      of the machine (or of the rate as the queue grows) cancels out.
#      Each W starts once the point in progress (one over 1M messages
#      outlasts a phase) is written.
#   3. `outpost restore now` over the whole queue: the point's size and
#      time, and `outpost restore`'s point files of phase B.
# Goal (the issue): mean(P) within 10% of mean(W); each round's ratio
# Pi / mean(Wi-1, Wi) is reported too.  Env in:
# BENCH_BUILD, BENCH_OUT (run.sh sets both); BENCH_RP_N (200000),
# BENCH_RP_M (150000), BENCH_RP_INTERVAL (10s), BENCH_RP_DIR (restore.dir;
# default under the data_dir: the queue's disk).  Writes BENCH_OUT/restore.json
# and restore.md.  Loopback only; every process it starts is stopped by PID.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_RP_N:-200000}
M=${BENCH_RP_M:-150000}
ROUNDS=${BENCH_RP_ROUNDS:-3}
INTERVAL=${BENCH_RP_INTERVAL:-10s}
SIZE=1024
SESSIONS=${BENCH_SESSIONS:-50}
CLI=$(dirname "$OUTPOSTD")/outpost
# Free space: the queue (~3 KB a message) and a few points of it.
NEED_KIB=$(((N + (2 * ROUNDS + 1) * M) * 3 * 5))
work=$(mktemp -d /tmp/outpost-bench-restore.XXXXXX)
chmod 711 "$work" # outpostd started as root becomes user outpost
OPD_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	stop_pid "$OPD_PID" 120
	mkdir -p "$OUT/restore-logs"
	cp "$work"/*.json "$work"/*.jsonl "$work"/*.conf "$work"/*.log "$OUT/restore-logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "restore: $*" >&2; echo "$*" >>"$work/notes.txt"; }

# inject COUNT NAME: outpost-load into the daemon; its report NAME.json.
inject() {
	local rc=0
	"$LOAD" --host 127.0.0.1 --port "$port" --size "$SIZE" --pipelining \
	    --json --from news@sender.test --to 'rcpt%u@d%d.sink.test' \
	    --domains 50 --sessions "$SESSIONS" --count "$1" --timeout 60 \
	    --progress=never >"$work/$2.json" 2>"$work/$2-load.log" || rc=$?
	[ "$rc" = 0 ] || note "$2: outpost-load exit $rc: $(tail -n 2 "$work/$2-load.log")"
	echo "restore: $2: $(json_get "$work/$2.json" accepted) accepted at $(json_get "$work/$2.json" accepted_per_s) msg/s" >&2
	date +%s.%N >"$work/$2.end"
}

# scrape NAME: the queue writer's counters from /metrics into NAME.
scrape() {
	curl -s --max-time 30 "http://127.0.0.1:$mport/metrics" |
	    grep '^outpost_queue_\(commits_total\|ops_total\|commit_seconds_total\|headroom_bytes_total\|txn_wait_seconds_total\) ' >"$work/$1" || :
}

# phase_names: W0 P1 W1 P2 W2 …, ROUNDS pairs after W0.
phase_names() {
	local i
	echo W0
	for i in $(seq 1 "$ROUNDS"); do echo "P$i W$i"; done
}

# interval VALUE: restore.interval = VALUE, by `outpost reload`.
interval() {
	sed -i "s/^restore { interval = [^ ]* /restore { interval = $1 /" "$d/outpost.conf"
	"$CLI" -c "$d/outpost.conf" reload >>"$work/reload.log" 2>&1 ||
	    { note "reload to interval $1 failed: $(tail -n 2 "$work/reload.log")"; return 1; }
}

# points_idle: wait until no point is being written (a point over a large
# queue outlasts a phase: measured "without points" it must have ended).
# Written: every point-*.mdb has its manifest and no *.tmp is left.
points_idle() {
	local dir=${BENCH_RP_DIR:-$d/var/restore} i f busy
	for i in $(seq 1 1200); do
		busy=
		for f in "$dir"/*.tmp "$dir"/point-*.mdb; do
			[ -e "$f" ] || continue
			case $f in
			*.tmp) busy=1 ;;
			*.mdb) [ -e "${f%.mdb}.json" ] || busy=1 ;;
			esac
		done
		[ -z "$busy" ] && return 0
		sleep 0.25
	done
	note "a point was still being written after 300 s"
	return 1
}

run() {
	local avail
	for x in "$OUTPOSTD" "$LOAD" "$CLI"; do
		[ -x "$x" ] || { note "$x is not built: no figures"; return 1; }
	done
	avail=$(df -Pk /tmp | awk 'NR == 2 { print $4 }')
	if [ "$avail" -lt "$NEED_KIB" ]; then
		note "skipped: /tmp has $((avail / 1024)) MiB free, $((NEED_KIB / 1024)) MiB needed (set BENCH_RP_N lower)"
		return 1
	fi
	port=$(free_port)
	mport=$(free_port)
	d=$work/outpost
	mkdir -p "$d"
	cat >"$d/outpost.conf" <<EOF
# written by t/bench/restore.sh: loopback only, no DNS server
data_dir = "$d/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
queue { map_size = 64G }
restore { interval = 0 ${BENCH_RP_DIR:+dir = \"$BENCH_RP_DIR\" }}
metrics { listen = "127.0.0.1:$mport" }
EOF
	cp "$d/outpost.conf" "$work/outpost.conf"
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/outpostd.log" 2>&1 &
	OPD_PID=$!
	wait_port "$port" 60 "$OPD_PID" || { note "outpostd did not listen: $(tail -n 3 "$work/outpostd.log")"; return 1; }
	for x in $(seq 0 49); do
		"$CLI" -c "$d/outpost.conf" suspend "d$x.sink.test" --for 1d \
		    --reason bench >>"$work/suspend.log" 2>&1 ||
		    { note "suspend d$x.sink.test failed: $(tail -n 1 "$work/suspend.log")"; return 1; }
	done
	echo "restore: filling the queue with $N messages" >&2
	inject "$N" fill
	# The fill's write-back settles before A, which would pay for it.
	sync
	sleep 5
	for x in $(phase_names); do
		case $x in
		P*) interval "$INTERVAL" || return 1 ;;
		W0) ;;
		W*) interval 0 && points_idle || return 1 ;;
		esac
		date +%s.%N >"$work/$x.start"
		scrape "$x.m0"
		inject "$M" "$x"
		scrape "$x.m1"
	done
	echo "restore: a point of the whole queue ($((N + (2 * ROUNDS + 1) * M)) messages)" >&2
	"$CLI" -c "$d/outpost.conf" restore now >"$work/now.log" 2>&1 ||
	    note "restore now failed: $(tail -n 2 "$work/now.log")"
	cat "${BENCH_RP_DIR:-$d/var/restore}"/point-*.json >"$work/manifests.jsonl" 2>/dev/null ||
	    note "no manifest in ${BENCH_RP_DIR:-$d/var/restore}"
	du -sk "$d/var/queue" | cut -f1 >"$work/queue_du_kib"
	stop_pid "$OPD_PID" 120
	OPD_PID=
	return 0
}

cut -d' ' -f1-3 /proc/loadavg >"$work/loadavg"
status=0
run || status=1

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$M" "$INTERVAL" "$SESSIONS" "$ROUNDS" <<'EOF'
import json, os, re, sys
work, out, n, m, interval, sessions, rounds = sys.argv[1:8]
n, m, rounds = int(n), int(m), int(rounds)
W = ["W%d" % i for i in range(rounds + 1)]
P = ["P%d" % i for i in range(1, rounds + 1)]
ORDER = [W[0]] + [x for i in range(rounds) for x in (P[i], W[i + 1])]
def read(name):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read().strip()
    except OSError:
        return None
def load(name):
    try:
        return json.loads(read(name + ".json") or "")
    except ValueError:
        return None
phases = {}
for p in ["fill"] + ORDER:
    r = load(p)
    if r:
        phases[p] = {"accepted": r["accepted"], "elapsed_s": r["elapsed_s"],
                     "msg_per_s": r["accepted_per_s"],
                     "refused": sum(r["rejected"].values()) if isinstance(r["rejected"], dict) else r["rejected"],
                     "failed": r["failed"],
                     "start": float(read(p + ".start") or 0) or None,
                     "end": float(read(p + ".end") or 0) or None}
        # The queue writer during the phase (/metrics before and after):
        # how long a commit took, how many ops it carried.
        def counters(name):
            v = {}
            for line in (read(name) or "").splitlines():
                k, _, x = line.partition(" ")
                v[k] = float(x)
            return v
        a, b = counters(p + ".m0"), counters(p + ".m1")
        try:
            commits = b["outpost_queue_commits_total"] - a["outpost_queue_commits_total"]
            ops = b["outpost_queue_ops_total"] - a["outpost_queue_ops_total"]
            secs = b["outpost_queue_commit_seconds_total"] - a["outpost_queue_commit_seconds_total"]
            phases[p]["writer"] = {"commits": int(commits), "ops_per_commit": round(ops / commits, 1),
                                   "ms_per_commit": round(secs * 1000 / commits, 3),
                                   "commit_share": round(secs / r["elapsed_s"], 3),
                                   "headroom_mib": round((b.get("outpost_queue_headroom_bytes_total", 0)
                                                          - a.get("outpost_queue_headroom_bytes_total", 0)) / 2**20, 1),
                                   "lock_wait_s": round(b.get("outpost_queue_txn_wait_seconds_total", 0)
                                                        - a.get("outpost_queue_txn_wait_seconds_total", 0), 2)}
        except (KeyError, ZeroDivisionError):
            pass
points = []
for line in (read("manifests.jsonl") or "").splitlines():
    try:
        points.append(json.loads(line))
    except ValueError:
        pass
points.sort(key=lambda x: x["time_ms"])
# While restore.interval was in force: from the reload before B (D) to
# the one after it (the first point comes with the reload).
def between(before, after):
    x, y = phases.get(before, {}), phases.get(after, {})
    return [p for p in points if x.get("end") and y.get("start")
            and x["end"] <= p["time_ms"] / 1000 <= y["start"]]
during = [pt for i in range(rounds) for pt in between(W[i], W[i + 1])]
now = re.search(r"restore point (\S+): (\d+) messages, (\d+) recipients, "
                r"(\d+) bytes in (\d+) ms", read("now.log") or "")
res = {"benchmark": "restore", "fill": n, "measured": m, "interval": interval,
       "sessions": sessions, "phases": phases,
       "points_during_B": [{k: p[k] for k in ("name", "messages", "size",
                                                "duration_ms", "verified")}
                           for p in during],
       "whole_queue_point": None, "queue_du_kib": read("queue_du_kib"),
       "loadavg_before": (read("loadavg") or "").split(),
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "notes": (read("notes.txt") or "").splitlines()}
if now:
    res["whole_queue_point"] = {"name": now.group(1),
                                "messages": int(now.group(2)),
                                "bytes": int(now.group(4)),
                                "ms": int(now.group(5))}
def mean(keys):
    v = [phases[k]["msg_per_s"] for k in keys if k in phases]
    return sum(v) / len(v) if len(v) == len(keys) else None
with_p, without = mean(P), mean(W)
res["round_ratios"] = []
for i in range(rounds):
    x, y = mean([P[i]]), mean([W[i], W[i + 1]])
    res["round_ratios"].append(round(x / y, 3) if x and y else None)
res["rate_with_points"] = with_p and round(with_p, 1)
res["rate_without_points"] = without and round(without, 1)
res["ratio"] = round(with_p / without, 3) if with_p and without else None
with open(os.path.join(out, "restore.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")
def c(v, fmt="{}"):
    return "n/a" if v is None else fmt.format(v)
w = res["whole_queue_point"] or {}
lines = ["## Restore points: acceptance over a queue of %s+ messages, points every %s" % ("{:,}".format(n), interval), "",
         "| | msg/s | accepted / refused / failed | writer: ms per commit, ops per commit, share of the phase in commit, s waiting for headroom, MiB of headroom written | goal |", "|---|---|---|---|---|"]
for p in ORDER:
    what = p + (": a point every " + interval if p in P else ": no points")
    x = phases.get(p, {})
    wr = x.get("writer") or {}
    lines.append("| %s (%s messages) | %s | %s / %s / %s | %s, %s, %s, %s, %s | |" % (
        what, "{:,}".format(m), c(x.get("msg_per_s"), "{:,.0f}"), c(x.get("accepted")),
        c(x.get("refused")), c(x.get("failed")), c(wr.get("ms_per_commit")),
        c(wr.get("ops_per_commit")), c(wr.get("commit_share")),
        c(wr.get("lock_wait_s")), c(wr.get("headroom_mib"))))
lines += ["| mean without points (W) / with (P) | %s / %s | | | |" % (
              c(res["rate_without_points"], "{:,.0f}"), c(res["rate_with_points"], "{:,.0f}")),
          "| **with / without** | **%s** | | | ≥ 0.90 |" % c(res["ratio"], "{:.3f}"),
          "| each round: P / mean of the W on either side | %s | | | |" % ", ".join(c(r, "{:.3f}") for r in res["round_ratios"]),
          "| points taken during the P phases | %d | | | ≥ %d |" % (len(during), rounds)]
for p in during:
    lines.append("| point %s: messages, MiB, ms | %s, %.1f, %s | | | |" % (
        p["name"], "{:,}".format(p["messages"]), p["size"] / 1048576, p["duration_ms"]))
lines += ["| **point of the whole queue: messages, MiB, s** | **%s, %s, %s** | | | |" % (
    c(w.get("messages"), "{:,}"), c(w.get("bytes") and w["bytes"] / 1048576, "{:,.1f}"),
    c(w.get("ms") and w["ms"] / 1000, "{:.2f}")),
          "| LMDB queue on disk (MiB) | %s | | | |" % c(res["queue_du_kib"] and int(res["queue_du_kib"]) / 1024, "{:,.1f}"),
          "",
          "~1 KB messages, one recipient, %s pipelining sessions, every "
          "destination suspended (no delivery attempts). A point is the compacted copy "
          "(mdb_env_copyfd2), its walk opening every record, its checksum "
          "and manifest. Load average before / after: %s / %s." % (
              sessions, " ".join(res["loadavg_before"]), " ".join(res["loadavg_after"]))]
for note in res["notes"]:
    lines.append("- note: " + note)
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "restore.md"), "w") as f:
    f.write(text)
print(text)
EOF
exit $status
