#!/bin/bash
# t/bench/queue_scale.sh — a large queue with the receiver down (called by
# run.sh).  What does it cost outpostd to hold BENCH_QS_N messages (×
# BENCH_QS_RCPTS recipients) that cannot be delivered, and how fast is it
# back at work after a restart?
#   1. outpostd, fresh data_dir under /tmp; a dnsmasq of ours on a loopback
#      port answers dN.sink.test MX mx.sink.test → 127.0.0.1, and
#      delivery { port } is a loopback port where nothing listens
#      (connection refused).  RSS idle, right after start.
#   2. outpost-load injects the messages (~1 KB, 50 pipelining sessions, 50
#      domains); then wait until each recipient has been deferred once (the
#      daemon's log), and read RSS, VmHWM and the size of the LMDB queue.
#   3. SIGTERM (timed); wait until every message is due again (single retry
#      interval BENCH_QS_RETRY, no jitter); start an outpost-sink on the port
#      the MX points at; exec outpostd again and time "scheduler: N queued
#      message(s) loaded", the first message at the sink and, with
#      BENCH_QS_DRAIN=1, the last.
# Goals (the issue): ≤ 300 bytes of RSS per queued recipient; with 1M queued
# recipients, ready in ≤ 5 s after a restart.
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/queue_scale.json and queue_scale.md.  Loopback only; every
# process it starts is stopped by PID on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
BUILD=${BENCH_BUILD:?BENCH_BUILD is not set (run t/bench/run.sh)}
OUT=${BENCH_OUT:?BENCH_OUT is not set (run t/bench/run.sh)}
LOAD=$BUILD/tools/outpost-load
OSINK=$BUILD/tools/outpost-sink
OUTPOSTD=${OUTPOSTD:-$BUILD/bin/outpostd}
N=${BENCH_QS_N:-1000000}
RCPTS=${BENCH_QS_RCPTS:-1}
SIZE=${BENCH_QS_SIZE:-1024}
SESSIONS=${BENCH_SESSIONS:-50}
RETRY=${BENCH_QS_RETRY:-300}    # seconds: longer than injection + settling
DRAIN=${BENCH_QS_DRAIN:-0}
MAX_TIME=${BENCH_MAX_TIME:-900}
DOMAINS=50
# Free space needed under /tmp: 8 GB for 1M recipients, pro rata (≥ 1 GB).
NEED_KIB=$(( (N * RCPTS / 1000 * 8 * 1024 * 1024 / 1000) ))
[ "$NEED_KIB" -lt 1048576 ] && NEED_KIB=1048576

work=$(mktemp -d /tmp/outpost-bench-queue_scale.XXXXXX)
OPD_PID='' OSINK_PID='' DNS_PID='' RSS_SAMPLER=''
cleanup() {
	rss_sampler_stop
	stop_pid "$OPD_PID" 120
	stop_pid "$OSINK_PID" 5
	stop_pid "$DNS_PID" 5
	mkdir -p "$OUT/queue_scale-logs"
	cp "$work"/*.json "$work"/*.conf "$OUT/queue_scale-logs/" 2>/dev/null || true
	# The daemon's logs hold a line per deferral: keep their heads and tails.
	for f in "$work"/*.log; do
		[ -f "$f" ] || continue
		if [ "$(wc -l <"$f")" -gt 400 ]; then
			{ head -n 200 "$f"; echo "[… $(wc -l <"$f") lines in all …]"; tail -n 200 "$f"; } \
			    >"$OUT/queue_scale-logs/$(basename "$f")"
		else
			cp "$f" "$OUT/queue_scale-logs/"
		fi
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "queue_scale: $*" >&2; echo "$*" >>"$work/notes.txt"; }
# put KEY VALUE: one figure for the report (work/figures, "KEY VALUE" lines).
put() { echo "$1 $2" >>"$work/figures"; }
: >"$work/figures"

# mem PID: "VmRSS RssAnon RssFile VmHWM" of PID, KiB.
mem() {
	awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
	    /^VmHWM:/ { h = $2 } END { print r + 0, a + 0, f + 0, h + 0 }' "/proc/$1/status" 2>/dev/null
}

# log_time FILE PATTERN: unix time (float) of the first line of FILE
# matching PATTERN (outpostd stamps each line "YYYY-MM-DDTHH:MM:SS.mmmZ").
log_time() {
	"$PY" - "$1" "$2" <<'EOF'
import datetime, re, sys
pat = re.compile(sys.argv[2])
with open(sys.argv[1], errors="replace") as f:
    for line in f:
        if pat.search(line):
            t = datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
            print("%.3f" % t.replace(tzinfo=datetime.timezone.utc).timestamp())
            break
EOF
}

# last_time FILE PATTERN: the same for the last matching line.
last_time() {
	local line
	line=$(grep -- "$2" "$1" | tail -n 1)
	[ -n "$line" ] || return 0
	printf '%s\n' "$line" >"$work/last-line.tmp"
	log_time "$work/last-line.tmp" .
}

# start_outpostd LOG: exec outpostd (its exec time in T_EXEC), wait until it
# listens; sets OPD_PID.
start_outpostd() {
	local log=$1 rc=0
	T_EXEC=$EPOCHREALTIME
	"$OUTPOSTD" -c "$d/outpost.conf" >"$log" 2>&1 &
	OPD_PID=$!
	if ! wait_port "$port" 120 "$OPD_PID"; then
		if kill -0 "$OPD_PID" 2>/dev/null; then
			note "outpostd (pid $OPD_PID) did not listen on 127.0.0.1:$port within 120 s"
		else
			wait "$OPD_PID" || rc=$?
			note "outpostd exited (status $rc) before listening"
		fi
		sed 's/^/    outpostd: /' "$log" | tail -n 20 >&2
		stop_pid "$OPD_PID" 10
		OPD_PID=
		return 1
	fi
	T_LISTEN=$EPOCHREALTIME
}

# stop_outpostd: SIGTERM, timed; SIGKILL after 300 s.  Sets T_STOP (seconds).
stop_outpostd() {
	local t0 i=0
	t0=$EPOCHREALTIME
	kill -TERM "$OPD_PID" 2>/dev/null || true
	while kill -0 "$OPD_PID" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt 30000 ]; then
			note "outpostd did not stop within 300 s of SIGTERM: SIGKILL"
			kill -KILL "$OPD_PID" 2>/dev/null || true
			break
		fi
		sleep 0.01
	done
	wait "$OPD_PID" 2>/dev/null || true
	T_STOP=$("$PY" -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$EPOCHREALTIME")
	OPD_PID=
}

# count LOG PATTERN: matching lines (0 when none).
count() {
	grep -c -- "$2" "$1" 2>/dev/null || true
}

run() {
	local avail dp m rcpts deferred last_n stall_t t_first t_last wait_s
	local t_loaded t_due loaded rc=0
	for x in "$OUTPOSTD" "$LOAD" "$OSINK"; do
		[ -x "$x" ] || { note "$x is not built: no figures"; return 1; }
	done
	command -v dnsmasq >/dev/null || { note "dnsmasq missing (apt-get install dnsmasq-base): Outpost routes by MX"; return 1; }
	avail=$(df -Pk /tmp | awk 'NR == 2 { print $4 }')
	put tmp_free_gib "$((avail / 1048576))"
	if [ "$avail" -lt "$NEED_KIB" ]; then
		note "skipped: /tmp has $((avail / 1024)) MiB free, $((NEED_KIB / 1024)) MiB needed for $N × $RCPTS queued recipients (BENCH_QS_N)"
		return 1
	fi
	domains=()
	for i in $(seq 0 $((DOMAINS - 1))); do
		domains+=("d$i.sink.test")
	done
	dns_start "$work" 127.0.0.1 "${domains[@]}" || { note "dnsmasq did not start: $(tail -n 3 "$work/dnsmasq.err")"; return 1; }
	port=$(free_port)
	dp=$(free_port) # nothing listens here until the restart
	d=$work/outpost
	mkdir -p "$d"
	cat >"$d/outpost.conf" <<EOF
# written by t/bench/queue_scale.sh: loopback only
data_dir = "$d/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$DNS_PORT" timeout = 1s tries = 2 }
delivery {
	port = $dp
	retry_intervals = { "${RETRY}s" }
	retry_jitter = 0
}
# One refused connection pauses the site for longer than the injection:
# every other message is deferred at once, without a connection.
destination "*" {
	backoff_pause = 20m
	backoff_max = 1h
}
${BENCH_OUTPOST_EXTRA_CONF:-}
EOF
	cp "$d/outpost.conf" "$work/outpost.conf"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/outpostd-check.log" 2>&1; then
		note "outpostd -t rejects the bench configuration: $(tail -n 3 "$work/outpostd-check.log")"
		return 1
	fi

	# ---- 1. idle
	start_outpostd "$work/outpostd-1.log" || return 1
	sleep 2
	read -r -a m <<<"$(mem "$OPD_PID")"
	put idle_rss_kib "${m[0]}"
	put idle_anon_kib "${m[1]}"
	put idle_file_kib "${m[2]}"
	put idle_hwm_kib "${m[3]}"

	# ---- 2. inject, then settle
	echo "queue_scale: injecting $N messages × $RCPTS recipient(s) of $SIZE bytes, $SESSIONS sessions" >&2
	rss_sampler_start "$work/inject.mem" "$OPD_PID"
	put inject_cpu0 "$(tree_cpu "$OPD_PID")"
	"$LOAD" --host 127.0.0.1 --port "$port" --size "$SIZE" --pipelining --json \
	    --from news@sender.test --to 'rcpt%u@d%d.sink.test' --domains "$DOMAINS" \
	    --rcpts "$RCPTS" --sessions "$SESSIONS" --count "$N" --timeout 60 \
	    --max-time "$MAX_TIME" >"$work/inject.json" 2>"$work/inject-load.log" || rc=$?
	put inject_cpu1 "$(tree_cpu "$OPD_PID")"
	if [ ! -s "$work/inject.json" ]; then
		note "outpost-load gave no report (exit $rc): $(tail -n 3 "$work/inject-load.log")"
		return 1
	fi
	[ "$rc" = 0 ] || note "outpost-load exit $rc (not every message accepted)"
	rcpts=$(json_get "$work/inject.json" rcpts_accepted)
	echo "queue_scale: $(json_get "$work/inject.json" accepted) accepted at $(json_get "$work/inject.json" accepted_per_s) msg/s; waiting for $rcpts first deferrals" >&2
	deferred=0 last_n=-1 stall_t=$SECONDS
	while :; do
		deferred=$(count "$work/outpostd-1.log" ': deferred at ')
		[ "$deferred" -ge "$rcpts" ] && break
		[ "$deferred" != "$last_n" ] && { last_n=$deferred; stall_t=$SECONDS; }
		if [ $((SECONDS - stall_t)) -gt 120 ]; then
			note "only $deferred of $rcpts recipients deferred, no progress for 120 s: measuring anyway"
			break
		fi
		kill -0 "$OPD_PID" 2>/dev/null || { note "outpostd died while settling: $(tail -n 3 "$work/outpostd-1.log")"; return 1; }
		sleep 2
	done
	put settle_deferred "$deferred"
	t_last=$(last_time "$work/outpostd-1.log" ': deferred at ')
	t_first=$(log_time "$work/outpostd-1.log" ': deferred at ')
	put first_deferral_time "${t_first:-}"
	put last_deferral_time "${t_last:-}"
	put settled_time "$EPOCHREALTIME"
	sleep 5 # the last updates committed, the allocator at rest
	rss_sampler_stop
	read -r -a m <<<"$(mem "$OPD_PID")"
	put queued_rss_kib "${m[0]}"
	put queued_anon_kib "${m[1]}"
	put queued_file_kib "${m[2]}"
	put queued_hwm_kib "${m[3]}"
	put queue_du_kib "$(du -sk "$d/var/queue" | cut -f1)"
	put queue_apparent_kib "$(du -sk --apparent-size "$d/var/queue" | cut -f1)"
	put log_lines_1 "$(wc -l <"$work/outpostd-1.log")"

	# ---- 3. stop, wait until due, restart
	echo "queue_scale: stopping outpostd (SIGTERM)" >&2
	stop_outpostd
	put stop_s "$T_STOP"
	grep 'outpostd stopped' "$work/outpostd-1.log" | tail -n 1 >"$work/stopped-1.txt" || true
	put queue_du_after_stop_kib "$(du -sk "$d/var/queue" | cut -f1)"
	if [ -n "$t_first" ] && [ "$(count "$work/outpostd-1.log" ': deferred at ')" -gt "$rcpts" ]; then
		note "some recipients were tried a second time before the stop (retry interval $RETRY s shorter than injection + settling): they are not all due at the restart"
	fi
	t_due=$("$PY" -c "import sys; print('%.3f' % (float(sys.argv[1] or 0) + float(sys.argv[2]) + 2))" "${t_last:-}" "$RETRY")
	wait_s=$("$PY" -c "import sys, time; print(max(0, int(float(sys.argv[1]) - time.time() + 0.999)))" "$t_due")
	put wait_until_due_s "$wait_s"
	echo "queue_scale: waiting $wait_s s until every message is due" >&2
	sleep "$wait_s"
	osink_start "$dp" "$work/sink.json" || { note "outpost-sink did not start on 127.0.0.1:$dp: $(tail -n 3 "$work/sink.json.log")"; return 1; }
	echo "queue_scale: restarting outpostd" >&2
	start_outpostd "$work/outpostd-2.log" || return 1
	put restart_exec_time "$T_EXEC"
	put restart_listen_time "$T_LISTEN"
	t_loaded=''
	for _ in $(seq 6000); do
		if grep -q 'queued message(s) loaded' "$work/outpostd-2.log"; then
			t_loaded=$(log_time "$work/outpostd-2.log" 'queued message\(s\) loaded')
			break
		fi
		kill -0 "$OPD_PID" 2>/dev/null || break
		sleep 0.02
	done
	if [ -z "$t_loaded" ]; then
		note "outpostd never logged 'scheduler: N queued message(s) loaded' within 120 s"
	else
		put restart_loaded_time "$t_loaded"
		loaded=$(grep -o '[0-9]* queued message(s) loaded' "$work/outpostd-2.log" | head -n 1 | cut -d' ' -f1)
		put restart_loaded_n "$loaded"
	fi
	if ! osink_wait "$work/sink.json" 1 120 120 >/dev/null; then
		note "no message reached the sink within 120 s of the restart"
	fi
	cp "$work/sink.json" "$work/sink-first.json"
	read -r -a m <<<"$(mem "$OPD_PID")"
	put restart_rss_kib "${m[0]}"
	put restart_anon_kib "${m[1]}"
	if [ "$DRAIN" = 1 ]; then
		echo "queue_scale: waiting until all $N messages are delivered" >&2
		if ! got=$(osink_wait "$work/sink.json" "$N" "$MAX_TIME" 60); then
			note "drain: $got of $N messages at the sink when the wait gave up (BENCH_MAX_TIME $MAX_TIME s, or 60 s without progress)"
		fi
		cp "$work/sink.json" "$work/sink-drain.json"
		read -r -a m <<<"$(mem "$OPD_PID")"
		put drain_hwm_kib "${m[3]}"
	fi
	put restart_hwm_kib "$(hwm_kib "$OPD_PID")"
	stop_outpostd
	put stop2_s "$T_STOP"
	grep 'outpostd stopped' "$work/outpostd-2.log" | tail -n 1 >"$work/stopped-2.txt" || true
	return 0
}

status=0
run || status=1

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$RCPTS" "$SIZE" "$SESSIONS" "$RETRY" "$DRAIN" "$DOMAINS" <<'EOF'
import json, os, sys
work, out = sys.argv[1:3]
n, rcpts, size, sessions, retry, drain, domains = (int(a) for a in sys.argv[3:10])
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
        fig[k] = float(v) if "." in v else int(v)
    except ValueError:
        fig[k] = v or None
def j(name):
    try:
        return json.loads(read(name) or "")
    except ValueError:
        return None
inj = j("inject.json")
mem = j("inject.mem") or {}
first = j("sink-first.json") or {}
drained = j("sink-drain.json")
def d(a, b, nd=3):
    return round(fig[a] - fig[b], nd) if fig.get(a) is not None and fig.get(b) is not None else None
res = {"benchmark": "queue_scale", "messages": n, "rcpts_per_message": rcpts,
       "size": size, "sessions": sessions, "domains": domains,
       "retry_interval_s": retry,
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "figures": fig, "notes": (read("notes.txt") or "").splitlines()}
q = res["queued"] = None
if inj:
    acc_r = inj["rcpts_accepted"]
    res["inject"] = {"accepted": inj["accepted"], "rcpts_accepted": acc_r,
                     "refused": inj["rejected_4xx"] + inj["rejected_5xx"],
                     "failed": inj["failed"], "elapsed_s": inj["elapsed_s"],
                     "msg_per_s": inj["accepted_per_s"],
                     "cpu_s": d("inject_cpu1", "inject_cpu0", 2),
                     "peak_rss_sampled_mib": round(mem.get("peak_rss_kib", 0) / 1024, 1) or None,
                     "load_report": inj}
    if fig.get("queued_rss_kib"):
        q = res["queued"] = {
            "recipients": acc_r,
            "deferred_once": fig.get("settle_deferred"),
            "settle_s": d("settled_time", "first_deferral_time", 1),
            "idle_rss_mib": round(fig["idle_rss_kib"] / 1024, 1),
            "rss_mib": round(fig["queued_rss_kib"] / 1024, 1),
            "anon_mib": round(fig["queued_anon_kib"] / 1024, 1),
            "file_mib": round(fig["queued_file_kib"] / 1024, 1),
            "hwm_mib": round(fig["queued_hwm_kib"] / 1024, 1),
            "rss_bytes_per_rcpt": round((fig["queued_rss_kib"] - fig["idle_rss_kib"]) * 1024 / acc_r, 1) if acc_r else None,
            "anon_bytes_per_rcpt": round((fig["queued_anon_kib"] - fig["idle_anon_kib"]) * 1024 / acc_r, 1) if acc_r else None,
            "hwm_bytes_per_rcpt": round((fig["queued_hwm_kib"] - fig["idle_rss_kib"]) * 1024 / acc_r, 1) if acc_r else None,
            "lmdb_du_mib": round(fig["queue_du_kib"] / 1024, 1),
            "lmdb_apparent_mib": round(fig["queue_apparent_kib"] / 1024, 1),
            "lmdb_bytes_per_rcpt": round(fig["queue_du_kib"] * 1024 / acc_r) if acc_r else None,
            "stopped_line": read("stopped-1.txt"),
        }
r = res["restart"] = None
if fig.get("restart_exec_time"):
    ft = first.get("first_message_time")
    r = res["restart"] = {
        "stop_s": fig.get("stop_s"),
        "wait_until_due_s": fig.get("wait_until_due_s"),
        "loaded_n": fig.get("restart_loaded_n"),
        "listen_s": d("restart_listen_time", "restart_exec_time"),
        "loaded_s": d("restart_loaded_time", "restart_exec_time"),
        "first_delivery_s": round(ft - fig["restart_exec_time"], 3) if ft else None,
        "rss_after_load_mib": round(fig["restart_rss_kib"] / 1024, 1) if fig.get("restart_rss_kib") else None,
        "hwm_mib": round(fig["restart_hwm_kib"] / 1024, 1) if fig.get("restart_hwm_kib") else None,
        "stop2_s": fig.get("stop2_s"),
        "stopped_line": read("stopped-2.txt"),
    }
    if drained:
        lt = drained.get("last_message_time")
        r["drain_delivered"] = drained.get("messages")
        r["drain_connections"] = drained.get("connections_total")
        r["drain_s"] = round(lt - fig["restart_exec_time"], 2) if lt and drained.get("messages", 0) >= n else None
        r["drain_msg_per_s"] = round(n / r["drain_s"], 1) if r["drain_s"] else None
with open(os.path.join(out, "queue_scale.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")

def c(v, fmt="{}"):
    return "n/a" if v is None else fmt.format(v)
i = res.get("inject") or {}
q = q or {}
r = r or {}
total = n * rcpts
lines = ["## Queue scale: %s messages × %d recipient(s) queued, receiver down" % ("{:,}".format(n), rcpts), "",
         "| | Outpost | goal |", "|---|---|---|",
         "| injection msg/s (%d bytes, %d pipelining sessions) | %s | |" % (size, sessions, c(i.get("msg_per_s"), "{:,.0f}")),
         "| injection time (s) | %s | |" % c(i.get("elapsed_s"), "{:.1f}"),
         "| accepted / refused / failed | %s / %s / %s | |" % (c(i.get("accepted")), c(i.get("refused")), c(i.get("failed"))),
         "| outpostd CPU s during injection | %s | |" % c(i.get("cpu_s"), "{:.1f}"),
         "| recipients deferred once (log) | %s | |" % c(q.get("deferred_once")),
         "| RSS idle, empty queue (MiB) | %s | |" % c(q.get("idle_rss_mib"), "{:.1f}"),
         "| RSS with all queued (MiB): VmRSS / anon / file | %s / %s / %s | |" % (c(q.get("rss_mib"), "{:.1f}"), c(q.get("anon_mib"), "{:.1f}"), c(q.get("file_mib"), "{:.1f}")),
         "| VmHWM after injection (MiB) | %s | |" % c(q.get("hwm_mib"), "{:.1f}"),
         "| **RSS bytes per queued recipient** (VmRSS − idle) | **%s** | ≤ 300 |" % c(q.get("rss_bytes_per_rcpt"), "{:,.0f}"),
         "| anon bytes per queued recipient | %s | |" % c(q.get("anon_bytes_per_rcpt"), "{:,.0f}"),
         "| peak (VmHWM − idle) bytes per recipient | %s | |" % c(q.get("hwm_bytes_per_rcpt"), "{:,.0f}"),
         "| LMDB on disk (MiB; bytes per recipient) | %s (%s) | |" % (c(q.get("lmdb_du_mib"), "{:,.1f}"), c(q.get("lmdb_bytes_per_rcpt"), "{:,}")),
         "| stop with all queued: SIGTERM → exit (s) | %s | |" % c(r.get("stop_s"), "{:.2f}"),
         "| restart: exec → listening (s) | %s | |" % c(r.get("listen_s"), "{:.3f}"),
         "| **restart: exec → \"%s queued message(s) loaded\" (s)** | **%s** | ≤ 5 |" % (c(r.get("loaded_n")), c(r.get("loaded_s"), "{:.3f}")),
         "| **restart: exec → first message at the sink (s)** | **%s** | ≤ 5 |" % c(r.get("first_delivery_s"), "{:.3f}"),
         "| RSS after the restart, queue loaded (MiB) | %s | |" % c(r.get("rss_after_load_mib"), "{:.1f}")]
if drain:
    lines += ["| restart: exec → all %s delivered (s) | %s | |" % ("{:,}".format(n), c(r.get("drain_s"), "{:.1f}")),
              "| drain rate (msg/s) | %s | |" % c(r.get("drain_msg_per_s"), "{:,.0f}"),
              "| VmHWM by the end of the drain (MiB) | %s | |" % c(r.get("hwm_mib"), "{:.1f}")]
lines += ["",
          "The receiver: dnsmasq on loopback answers dN.sink.test MX → "
          "127.0.0.1, delivery port = a loopback port where nothing listens "
          "(connection refused; destination \"*\" backoff_pause 20m, so all "
          "but the first attempts are deferred without a connection), "
          "retry_intervals = { \"%ds\" }, retry_jitter = 0. The daemon is "
          "stopped only once every recipient was deferred once; the restart "
          "waits until every message is due, with an outpost-sink listening "
          "where the MX points. RSS is read 5 s after the last first "
          "deferral (VmRSS; anon = heap, file = LMDB pages mapped). "
          "Load average after the run: %s." % (retry, " ".join(res["loadavg_after"]))]
for line in (q.get("stopped_line"), r.get("stopped_line")):
    if line:
        lines.append("- `%s`" % line.split("outpostd: ", 1)[-1])
for note in res["notes"]:
    lines.append("- note: " + note)
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "queue_scale.md"), "w") as f:
    f.write(text)
print(text)
EOF
exit $status
