#!/bin/bash
# t/bench/backoff_scale.sh — a big queue for a destination that is down
# (called by run.sh).  What does outpostd write while BENCH_BS_N messages
# wait for a destination in back-off: delivery-log lines, diagnostic lines
# and queue commits per minute (the goal: about none, but for one pause
# and one resume event per destination and the probes the back-off
# schedule makes)?
#   1. outpostd, fresh data_dir under /tmp, metrics on a loopback port;
#      `route "dead.test" { host = "127.0.0.1:P" }` where nothing listens
#      on P (connection refused); destination defaults (backoff_pause 1m,
#      doubling up to backoff_max 30m, a few probes at each end of pause).
#   2. outpost-load injects the messages (~1 KB, 50 pipelining sessions,
#      one recipient each, all to dead.test); then wait until the scheduler
#      is idle (no round active, the queue writer quiet for 10 s; at most
#      BENCH_BS_SETTLE s).
#   3. for BENCH_BS_MINUTES minutes, once a minute: delivery-log lines (and
#      which events), outpostd's diagnostic lines, queue commits and ops and
#      delivery-log lines from /metrics, RSS and CPU.
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/backoff_scale.json and backoff_scale.md.  Loopback only; every
# process it starts is stopped by PID on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_BS_N:-1000000}
SIZE=${BENCH_BS_SIZE:-1024}
SESSIONS=${BENCH_SESSIONS:-50}
MINUTES=${BENCH_BS_MINUTES:-5}
SETTLE=${BENCH_BS_SETTLE:-600}
MAX_TIME=${BENCH_MAX_TIME:-1800}
# Free space needed under /tmp: 8 GB for 1M messages, pro rata (≥ 1 GB).
NEED_KIB=$((N * 8 * 1024 * 1024 / 1000000))
[ "$NEED_KIB" -lt 1048576 ] && NEED_KIB=1048576

work=$(mktemp -d /tmp/outpost-bench-backoff_scale.XXXXXX)
chmod 711 "$work" # outpostd started as root becomes user outpost
OPD_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	stop_pid "$OPD_PID" 300
	mkdir -p "$OUT/backoff_scale-logs"
	cp "$work"/*.json "$work"/*.conf "$work"/samples "$OUT/backoff_scale-logs/" 2>/dev/null || true
	for f in "$work"/*.log; do
		[ -f "$f" ] || continue
		{ head -n 100 "$f"; echo "[… $(wc -l <"$f") lines in all …]"; tail -n 100 "$f"; } \
		    >"$OUT/backoff_scale-logs/$(basename "$f")"
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "backoff_scale: $*" >&2; echo "$*" >>"$work/notes.txt"; }
put() { echo "$1 $2" >>"$work/figures"; }
: >"$work/figures"
: >"$work/samples"

# metric NAME: one unlabelled sample of the scrape in $work/scrape.
metric() {
	awk -v n="$1" '$1 == n { print $2; exit }' "$work/scrape"
}

# sample LABEL: one line of figures into $work/samples (JSON).
sample() {
	curl -s --max-time 30 "http://127.0.0.1:$mport/metrics" >"$work/scrape" || : >"$work/scrape"
	"$PY" - "$1" "$work/scrape" "$DLOG" "$work/outpostd.log" "$(tree_cpu "$OPD_PID")" \
	    "$(awk '/^VmRSS:/ { print $2 }' "/proc/$OPD_PID/status")" >>"$work/samples" <<'PYEOF'
import json, sys, time
label, scrape, dlog, olog, cpu, rss = sys.argv[1:7]
m = {}
for line in open(scrape, errors="replace"):
    if line.startswith("#") or " " not in line:
        continue
    k, v = line.rsplit(" ", 1)
    try:
        m[k] = float(v)
    except ValueError:
        pass
events = {}
lines = 0
try:
    with open(dlog, "rb") as f:
        for line in f:
            lines += 1
            i = line.find(b'"event":"')
            if i >= 0:
                e = line[i + 9:line.find(b'"', i + 9)].decode()
                events[e] = events.get(e, 0) + 1
except OSError:
    pass
olines = sum(1 for _ in open(olog, "rb"))
print(json.dumps({
    "label": label, "time": round(time.time(), 3),
    "dlog_lines": lines, "dlog_events": events, "daemon_lines": olines,
    "commits": m.get("outpost_queue_commits_total"),
    "ops": m.get("outpost_queue_ops_total"),
    "log_lines_metric": m.get("outpost_log_lines_total"),
    "deferred": m.get('outpost_deliveries_total{result="deferred"}'),
    "waiting": m.get('outpost_queue_messages{state="waiting"}'),
    "active": m.get('outpost_queue_messages{state="active"}'),
    "connections": m.get("outpost_delivery_connections"),
    "cpu_s": float(cpu or 0), "rss_kib": int(rss or 0)}))
PYEOF
}

run() {
	local avail port dead mport x rc=0 i last_ops ops quiet t0
	for x in "$OUTPOSTD" "$LOAD"; do
		[ -x "$x" ] || { note "$x is not built: no figures"; return 1; }
	done
	command -v curl >/dev/null || { note "curl missing: cannot read /metrics"; return 1; }
	avail=$(df -Pk /tmp | awk 'NR == 2 { print $4 }')
	if [ "$avail" -lt "$NEED_KIB" ]; then
		note "skipped: /tmp has $((avail / 1024)) MiB free, $((NEED_KIB / 1024)) MiB needed for $N messages (set BENCH_BS_N lower)"
		return 1
	fi
	port=$(free_port)
	dead=$(free_port) # nothing listens here: connection refused
	mport=$(free_port)
	d=$work/outpost
	mkdir -p "$d"
	cat >"$d/outpost.conf" <<EOF
# written by t/bench/backoff_scale.sh: loopback only
data_dir = "$d/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
metrics { listen = "127.0.0.1:$mport" }
route "dead.test" { host = "127.0.0.1:$dead" }
${BENCH_OUTPOST_EXTRA_CONF:-}
EOF
	cp "$d/outpost.conf" "$work/outpost.conf"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/outpostd-check.log" 2>&1; then
		note "outpostd -t rejects the bench configuration: $(tail -n 3 "$work/outpostd-check.log")"
		return 1
	fi
	DLOG=$d/var/log/delivery.log
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/outpostd.log" 2>&1 &
	OPD_PID=$!
	if ! wait_port "$port" 120 "$OPD_PID"; then
		note "outpostd did not listen: $(tail -n 3 "$work/outpostd.log")"
		return 1
	fi
	wait_port "$mport" 30 "$OPD_PID" || { note "no metrics listener"; return 1; }

	echo "backoff_scale: injecting $N messages of $SIZE bytes to dead.test, $SESSIONS sessions" >&2
	t0=$EPOCHREALTIME
	"$LOAD" --host 127.0.0.1 --port "$port" --size "$SIZE" --pipelining --json \
	    --from news@sender.test --to 'rcpt%u@dead.test' \
	    --sessions "$SESSIONS" --count "$N" --timeout 60 \
	    --max-time "$MAX_TIME" >"$work/inject.json" 2>"$work/inject-load.log" || rc=$?
	put inject_s "$("$PY" -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$EPOCHREALTIME")"
	if [ ! -s "$work/inject.json" ]; then
		note "outpost-load gave no report (exit $rc): $(tail -n 3 "$work/inject-load.log")"
		return 1
	fi
	[ "$rc" = 0 ] || note "outpost-load exit $rc (not every message accepted)"
	sample injected

	# Settle: no round active and the queue writer quiet for 10 s.
	echo "backoff_scale: waiting until the scheduler is idle" >&2
	t0=$EPOCHREALTIME
	last_ops=-1 quiet=0
	for i in $(seq "$SETTLE"); do
		curl -s --max-time 30 "http://127.0.0.1:$mport/metrics" >"$work/scrape" || : >"$work/scrape"
		ops=$(metric outpost_queue_ops_total)
		if [ "${ops:-x}" = "$last_ops" ] &&
		    grep -q '^outpost_queue_messages{state="active"} 0$' "$work/scrape"; then
			quiet=$((quiet + 1))
			[ "$quiet" -ge 10 ] && break
		else
			quiet=0
		fi
		last_ops=${ops:-x}
		sleep 1
	done
	[ "$quiet" -ge 10 ] || note "not idle after $SETTLE s (BENCH_BS_SETTLE): measured as it is"
	put settle_s "$("$PY" -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$EPOCHREALTIME")"
	sample settled
	for i in $(seq "$MINUTES"); do
		echo "backoff_scale: minute $i of $MINUTES in back-off" >&2
		sleep 60
		kill -0 "$OPD_PID" 2>/dev/null || { note "outpostd died: $(tail -n 3 "$work/outpostd.log")"; OPD_PID=; return 1; }
		sample "minute$i"
	done
	put queue_du_kib "$(du -sk "$d/var/queue" | cut -f1)"
	return 0
}

cut -d' ' -f1-3 /proc/loadavg >"$work/loadavg"
status=0
run || status=1

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$SIZE" "$SESSIONS" "$MINUTES" <<'EOF'
import json, os, sys
work, out = sys.argv[1:3]
n, size, sessions, minutes = (int(a) for a in sys.argv[3:7])
def read(name):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read().strip()
    except OSError:
        return None
fig = {}
for line in (read("figures") or "").splitlines():
    k, _, v = line.partition(" ")
    try:
        fig[k] = float(v)
    except ValueError:
        fig[k] = v
samples = [json.loads(l) for l in (read("samples") or "").splitlines() if l.strip()]
try:
    inj = json.loads(read("inject.json") or "")
except ValueError:
    inj = None
by = {s["label"]: s for s in samples}
per_min = []
prev = by.get("settled")
for i in range(1, minutes + 1):
    s = by.get("minute%d" % i)
    if not s or not prev:
        break
    mins = (s["time"] - prev["time"]) / 60
    def d(k):
        if s.get(k) is None or prev.get(k) is None:
            return None
        return round((s[k] - prev[k]) / mins, 1)
    ev = {k: v - prev["dlog_events"].get(k, 0) for k, v in s["dlog_events"].items()
          if v - prev["dlog_events"].get(k, 0)}
    per_min.append({"minute": i, "dlog_lines": d("dlog_lines"),
                    "daemon_lines": d("daemon_lines"), "commits": d("commits"),
                    "ops": d("ops"), "deferred": d("deferred"),
                    "cpu_pct": round(100 * (s["cpu_s"] - prev["cpu_s"]) / (60 * mins), 2),
                    "rss_mib": round(s["rss_kib"] / 1024, 1), "events": ev,
                    "waiting": s.get("waiting")})
    prev = s
st = by.get("settled") or {}
res = {"benchmark": "backoff_scale", "messages": n, "size": size,
       "sessions": sessions, "minutes": minutes,
       "inject": inj and {"accepted": inj.get("accepted"),
                          "elapsed_s": inj.get("elapsed_s"),
                          "msg_per_s": inj.get("accepted_per_s")},
       "settle_s": fig.get("settle_s"), "queue_du_mib": round(fig["queue_du_kib"] / 1024) if fig.get("queue_du_kib") else None,
       "at_settle": st, "per_minute": per_min,
       "loadavg_before": (read("loadavg") or "").split(),
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "notes": (read("notes.txt") or "").splitlines()}
with open(os.path.join(out, "backoff_scale.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")
def c(v, fmt="{}"):
    return "n/a" if v is None else fmt.format(v)
lines = ["## Back-off at scale: %s messages queued for a destination that refuses connections" % "{:,}".format(n), "",
         "Injection: %s accepted in %s s (%s msg/s); then %s s until the scheduler was idle; queue on disk %s MiB. "
         "At that point: %s delivery-log lines, %s deferrals, %s waiting, RSS %s MiB." % (
             c((inj or {}).get("accepted"), "{:,}"), c((inj or {}).get("elapsed_s"), "{:.0f}"),
             c((inj or {}).get("accepted_per_s"), "{:,.0f}"), c(fig.get("settle_s"), "{:.0f}"),
             c(res["queue_du_mib"], "{:,}"), c(st.get("dlog_lines"), "{:,}"),
             c(st.get("deferred"), "{:,.0f}"), c(st.get("waiting"), "{:,.0f}"),
             c(round(st["rss_kib"] / 1024, 1) if st.get("rss_kib") else None)), "",
         "| minute in back-off | delivery-log lines | daemon log lines | queue commits | queue ops | deferrals | outpostd CPU % | RSS MiB | delivery-log events |",
         "|---|---|---|---|---|---|---|---|---|"]
for p in per_min:
    lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        p["minute"], c(p["dlog_lines"]), c(p["daemon_lines"]), c(p["commits"]),
        c(p["ops"]), c(p["deferred"]), c(p["cpu_pct"]), c(p["rss_mib"]),
        ", ".join("%s %d" % kv for kv in sorted(p["events"].items())) or "none"))
lines += ["", "Goal: about 0 a minute while backed off, but for one pause and one resume "
          "event per destination (and the few probes each end of pause sends). "
          "route \"dead.test\" → a loopback port where nothing listens; destination defaults "
          "(backoff_pause 1m doubling to backoff_max 30m). Figures per minute from "
          "/metrics (outpost_queue_commits_total, outpost_queue_ops_total, "
          "outpost_deliveries_total{deferred}) and the files. Load average before / after: %s / %s." % (
              " ".join(res["loadavg_before"]), " ".join(res["loadavg_after"]))]
for note in res["notes"]:
    lines.append("- note: " + note)
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "backoff_scale.md"), "w") as f:
    f.write(text)
print(text)
EOF
exit $status
