#!/bin/bash
# t/bench/acceptance.sh — the acceptance benchmark (called by run.sh).
# How fast does an MTA durably accept mail?  The same load (outpost-load,
# BENCH_SESSIONS pipelining sessions, BENCH_SIZE-byte messages, BENCH_N of
# them after a warm-up of BENCH_WARMUP) against, in one session:
#   ceiling  outpost-load straight into smtp-sink (no MTA: the loopback and
#            load-tool limit the other rows must stay well below)
#   outpost  build/bin/outpostd, fresh data_dir under /tmp, relaying to
#            smtp-sink (routes + relay_host on loopback, DNS on a dead
#            loopback port: nothing can resolve or connect off the box)
#   postfix  Postfix 3.7 via peers/postfix.sh, relaying to smtp-sink
#            (BENCH_PEERS=0 skips it; needs root)
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/acceptance.json and acceptance.md.  Loopback only; every process
# it starts is stopped by PID (or the adapter's stop) on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
bench_init
OUTPOST_CLI=$BUILD/bin/outpost
N=${BENCH_N:-20000}
SESSIONS=${BENCH_SESSIONS:-50}
SIZE=${BENCH_SIZE:-4096}
WARMUP=${BENCH_WARMUP:-200}
MAX_TIME=${BENCH_MAX_TIME:-900}
PEERS=${BENCH_PEERS:-1}
PF_ADAPTER=${BENCH_POSTFIX_ADAPTER:-$HERE/peers/postfix.sh}

work=$(mktemp -d /tmp/outpost-bench-acceptance.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
chmod 755 "$work" # Postfix's unprivileged processes read below it
OPD_PID='' SINK_PID='' PF_W='' RSS_SAMPLER=''
cleanup() {
	rss_sampler_stop
	stop_pid "$OPD_PID" 30
	if [ -n "$PF_W" ]; then
		"$PF_ADAPTER" stop "$PF_W" >/dev/null 2>&1 || true
	fi
	stop_pid "$SINK_PID" 5
	mkdir -p "$OUT/acceptance-logs"
	cp "$work"/*.log "$work"/*.json "$OUT/acceptance-logs/" 2>/dev/null || true
	[ -f "$work/postfix/maillog" ] && tail -n 200 "$work/postfix/maillog" >"$OUT/acceptance-logs/postfix-maillog.tail"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "acceptance: $*" >&2; echo "$*" >>"$work/notes.txt"; }

load_args=(--host 127.0.0.1 --size "$SIZE" --pipelining --json
	--from news@sender.test --to 'rcpt%u@sink.test' --timeout 60)

# measure LABEL PORT ROOT_PID...: warm-up, then the measured load, with the
# CPU of the process trees sampled around it and their memory during it.
# Leaves LABEL.json (load report), LABEL.cpu ("cpu0 cpu1") and LABEL.mem
# (peaks, JSON).
measure() {
	local label=$1 port=$2 rc=0 cpu0 cpu1 wsess
	shift 2
	wsess=$SESSIONS
	[ "$WARMUP" -lt "$wsess" ] && wsess=$WARMUP
	if [ "$WARMUP" -gt 0 ]; then
		"$LOAD" "${load_args[@]}" --port "$port" --sessions "$wsess" \
		    --count "$WARMUP" >"$work/$label-warmup.json" 2>"$work/$label-warmup.log" || rc=$?
		if [ "$rc" != 0 ]; then
			note "$label: warm-up failed (exit $rc): $(cat "$work/$label-warmup.json" "$work/$label-warmup.log")"
			return 1
		fi
	fi
	[ -n "${WARMUP_WAIT:-}" ] && $WARMUP_WAIT
	sleep 1
	cpu0=$( [ $# -gt 0 ] && tree_cpu "$@" || echo 0)
	[ $# -gt 0 ] && rss_sampler_start "$work/$label.mem" "$@"
	echo "acceptance: $label: $N messages, $SESSIONS sessions, $SIZE bytes, pipelining" >&2
	"$LOAD" "${load_args[@]}" --port "$port" --sessions "$SESSIONS" --count "$N" \
	    --max-time "$MAX_TIME" >"$work/$label.json" 2>"$work/$label-load.log" || rc=$?
	cpu1=$( [ $# -gt 0 ] && tree_cpu "$@" || echo 0)
	rss_sampler_stop
	echo "$cpu0 $cpu1" >"$work/$label.cpu"
	if [ ! -s "$work/$label.json" ]; then
		note "$label: outpost-load gave no report (exit $rc): $(cat "$work/$label-load.log")"
		return 1
	fi
	[ "$rc" = 0 ] || note "$label: outpost-load exit $rc (not every message accepted)"
	return 0
}

# ------------------------------------------------------------ ceiling
ceiling_run() {
	local port
	command -v smtp-sink >/dev/null || { note "ceiling: smtp-sink missing (postfix package)"; return 1; }
	port=$(free_port)
	sink_start "$port" "$work/ceiling-sink.log" || { note "ceiling: smtp-sink did not start"; return 1; }
	WARMUP=0 measure ceiling "$port" || true
	stop_pid "$SINK_PID" 5
	SINK_PID=
}

# ------------------------------------------------------------ outpost
outpost_run() {
	local port sp dns d hwm queued="" rc=0
	if [ ! -x "$OUTPOSTD" ]; then
		note "outpost: $OUTPOSTD is not built: no Outpost figures"
		return 1
	fi
	port=$(free_port)
	sp=$(free_port)
	dns=$(free_port) # nothing listens there: no lookup can leave the box
	d=$work/outpost
	mkdir -p "$d"
	cat >"$d/outpost.conf" <<EOF
# written by t/bench/acceptance.sh: loopback only
data_dir = "$d/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$dns" timeout = 1s tries = 1 }
delivery { relay_host = "127.0.0.1:$sp" }
route "sink.test" { host = "127.0.0.1:$sp" }
route "sender.test" { host = "127.0.0.1:$sp" }
# No DNS here, so no DMARC policy and no SPF can be had: an identical
# envelope domain no longer counts as aligned without SPF, and every
# message would wait for a dead server.  Measure intake without the check.
dmarc { check = false }
${BENCH_OUTPOST_EXTRA_CONF:-}
EOF
	cp "$d/outpost.conf" "$work/outpost.conf.log"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/outpostd-check.log" 2>&1; then
		note "outpost: outpostd -t rejects the bench configuration: $(tail -n 3 "$work/outpostd-check.log")"
		return 1
	fi
	sink_start "$sp" "$work/outpost-sink.log" || { note "outpost: smtp-sink did not start"; return 1; }
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/outpostd.log" 2>&1 &
	OPD_PID=$!
	if ! wait_port "$port" 30 "$OPD_PID"; then
		if kill -0 "$OPD_PID" 2>/dev/null; then
			note "outpost: outpostd (pid $OPD_PID) did not listen on 127.0.0.1:$port within 30 s"
		else
			wait "$OPD_PID" || rc=$?
			note "outpost: outpostd exited (status $rc) before listening"
		fi
		sed 's/^/    outpostd: /' "$work/outpostd.log" | tail -n 20 >&2
		stop_pid "$OPD_PID" 10
		OPD_PID=
		stop_pid "$SINK_PID" 5
		SINK_PID=
		return 1
	fi
	if ! measure outpost "$port" "$OPD_PID"; then
		stop_pid "$OPD_PID" 30
		OPD_PID=
		return 1
	fi
	hwm=$(hwm_kib "$OPD_PID")
	echo "${hwm:-0}" >"$work/outpost.hwm"
	sink_count "$work/outpost-sink.log" >"$work/outpost.delivered"
	stop_pid "$OPD_PID" 30
	OPD_PID=
	stop_pid "$SINK_PID" 5
	SINK_PID=
	# Cross-check (information only): what the queue holds after a clean stop.
	if [ -x "$OUTPOST_CLI" ]; then
		queued=$(timeout 120 "$OUTPOST_CLI" -c "$d/outpost.conf" queue list --json 2>/dev/null | grep -c . || true)
		echo "${queued:-}" >"$work/outpost.queued"
	fi
	return 0
}

# ------------------------------------------------------------ postfix
# Postfix relays as it accepts: let the warm-up drain to the sink (≤ 30 s)
# so that its backlog does not weigh on the measured run.
pf_wait_warmup() {
	local i=0 c
	while [ "$i" -lt 600 ]; do
		c=$(sink_count "$work/postfix-sink.log")
		[ "${c:-0}" -ge "$WARMUP" ] && return 0
		sleep 0.05
		i=$((i + 1))
	done
	note "postfix: only ${c:-0} of $WARMUP warm-up messages reached the sink in 30 s"
}

postfix_run() {
	local lp sp roots
	if [ "$PEERS" = 0 ]; then
		note "postfix: skipped (BENCH_PEERS=0)"
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		note "postfix: skipped (needs root: Postfix drops privileges)"
		return 1
	fi
	if [ ! -x "$PF_ADAPTER" ]; then
		note "postfix: adapter $PF_ADAPTER not found (set BENCH_POSTFIX_ADAPTER)"
		return 1
	fi
	if ! command -v postfix >/dev/null || ! command -v smtp-sink >/dev/null; then
		note "postfix: not installed (run.sh installs it when run as root)"
		return 1
	fi
	lp=$(free_port)
	sp=$(free_port)
	sink_start "$sp" "$work/postfix-sink.log" || { note "postfix: smtp-sink did not start"; return 1; }
	PF_W=$work/postfix
	mkdir -p "$PF_W"
	chmod 755 "$PF_W"
	if ! "$PF_ADAPTER" start "$PF_W" "$lp" "$sp" 0 0 >"$work/postfix-start.log" 2>&1; then
		note "postfix: adapter start failed: $(tail -n 5 "$work/postfix-start.log")"
		return 1
	fi
	read -r -a roots <<<"$(tr '\n' ' ' <"$PF_W/pids")"
	WARMUP_WAIT=pf_wait_warmup measure postfix "$lp" "${roots[@]}" || true
	sink_count "$work/postfix-sink.log" >"$work/postfix.delivered"
	"$PF_ADAPTER" stop "$PF_W" >/dev/null 2>&1 || true
	PF_W=
	stop_pid "$SINK_PID" 5
	SINK_PID=
	[ -s "$work/postfix.json" ]
}

status=0
ceiling_run || true
outpost_run || status=1
postfix_run || status=1

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$SESSIONS" "$SIZE" "$WARMUP" <<'EOF'
import json, os, sys
work, out, n, sessions, size, warmup = sys.argv[1:7]
def read(name):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read().strip()
    except OSError:
        return None
def row(label, hwm_file=None):
    rep = read(label + ".json")
    if not rep:
        return None
    r = json.loads(rep)
    cpu0, cpu1 = (read(label + ".cpu") or "0 0").split()
    cpu = float(cpu1) - float(cpu0)
    acc = r["accepted"]
    m = json.loads(read(label + ".mem") or "{}")
    peak_kib = int(read(hwm_file) or 0) if hwm_file else m.get("peak_rss_kib", 0)
    return {
        "accepted": acc, "count": r["count"], "exit": r["exit"],
        "refused": r["rejected_4xx"] + r["rejected_5xx"], "failed": r["failed"],
        "elapsed_s": r["elapsed_s"], "msg_per_s": r["accepted_per_s"],
        "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
        "max_ms": r["latency_ms"]["max"],
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000": round(1000 * cpu / acc, 3) if acc and label != "ceiling" else None,
        "peak_rss_mib": round(peak_kib / 1024, 1) if peak_kib else None,
        "rss_kind": "VmHWM" if hwm_file else "peak of summed VmRSS over the process tree",
        "peak_pss_mib": round(m["peak_pss_kib"] / 1024, 1) if m.get("peak_pss_kib") else None,
        "peak_procs": m.get("peak_procs"),
        "load_tool_cpu_s": r["cpu_s"],
        "load_report": r,
    }
res = {"benchmark": "acceptance", "n": int(n), "sessions": int(sessions),
       "size": int(size), "warmup": int(warmup), "pipelining": True,
       "ceiling": row("ceiling"), "outpost": row("outpost", "outpost.hwm"),
       "postfix": row("postfix"), "notes": (read("notes.txt") or "").splitlines()}
for label in ("outpost", "postfix"):
    if res[label] is not None:
        d = read(label + ".delivered")
        res[label]["delivered_during_run"] = int(d) if d else None
if res["outpost"] is not None:
    q = read("outpost.queued")
    res["outpost"]["queued_after_stop"] = int(q) if q else None
o, p = res["outpost"], res["postfix"]
res["ratio_outpost_postfix"] = (round(o["msg_per_s"] / p["msg_per_s"], 2)
                                if o and p and p["msg_per_s"] else None)
with open(os.path.join(out, "acceptance.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")

def cell(r, k, fmt="{}"):
    if r is None or r.get(k) is None:
        return "n/a"
    return fmt.format(r[k])
cols = [("ceiling", "load tool → smtp-sink (no MTA)"), ("outpost", "Outpost"),
        ("postfix", "Postfix 3.7")]
lines = ["## Acceptance: %s messages of %s bytes, %s pipelining sessions "
         "(after a %s-message warm-up)" % (n, size, sessions, warmup), "",
         "| | " + " | ".join(c[1] for c in cols) + " |",
         "|---|" + "---|" * len(cols)]
for key, name, fmt in [
        ("msg_per_s", "accepted msg/s (durable: 250 after commit)", "{:,.0f}"),
        ("p50_ms", "acceptance latency p50 (ms)", "{:.2f}"),
        ("p99_ms", "acceptance latency p99 (ms)", "{:.2f}"),
        ("cpu_s_per_1000", "MTA CPU s per 1,000 messages", "{:.3f}"),
        ("peak_rss_mib", "MTA peak RSS (MiB)", "{:.1f}"),
        ("peak_pss_mib", "MTA peak PSS (MiB, all processes)", "{:.1f}"),
        ("peak_procs", "MTA processes (peak)", "{}"),
        ("accepted", "accepted", "{}"),
        ("refused", "refused", "{}"),
        ("failed", "failed (connection lost)", "{}"),
        ("delivered_during_run", "relayed to the sink by the end", "{}"),
        ("load_tool_cpu_s", "load tool CPU s", "{:.2f}")]:
    lines.append("| %s | " % name + " | ".join(cell(res[c], key, fmt) for c, _ in cols) + " |")
lines.append("")
if res["ratio_outpost_postfix"] is not None:
    lines.append("**Outpost / Postfix acceptance rate: %.2f×**" % res["ratio_outpost_postfix"])
else:
    lines.append("**Outpost / Postfix acceptance rate: n/a** (one side has no figures)")
lines += ["", "Latency: from writing the final \".\" to reading its reply. "
          "Outpost's RSS is VmHWM of outpostd; Postfix's is the peak of the "
          "summed RSS of its processes (shared pages counted once per "
          "process: PSS is the fairer figure there). Both MTAs relay to an "
          "smtp-sink while they accept, and their CPU covers the whole "
          "process tree (Postfix's qmgr/smtp included). \"Relayed\" counts "
          "warm-up messages too."]
if o and o.get("queued_after_stop") is not None:
    lines.append("`outpost queue list` after a clean stop: %d messages still "
                 "queued." % o["queued_after_stop"])
for note in res["notes"]:
    lines.append("- note: " + note)
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "acceptance.md"), "w") as f:
    f.write(text)
print(text)
EOF
exit $status
