#!/bin/bash
# t/bench/queue_scale.sh — a large queue with the receiver down (called by
# run.sh).  What does it cost outpostd to hold BENCH_QS_N messages (×
# BENCH_QS_RCPTS recipients) that cannot be delivered, and how fast is it
# back at work after a restart?
#   1. outpostd, fresh data_dir under /tmp; a dnsmasq of ours on a loopback
#      port answers dN.sink.test MX mx.sink.test → 127.0.0.1, and
#      delivery { port } is a loopback port where nothing listens
#      (connection refused).  BENCH_QS_DOWN=dns instead: DNS points at a
#      loopback port where nothing listens (every lookup fails: 4xx), and
#      dnsmasq starts there only for the restart.  RSS idle, after start.
#   2. outpost-load injects the messages (~1 KB, 50 pipelining sessions, 50
#      domains); wait until each recipient has been deferred once (the
#      daemon's log) or no deferral came for BENCH_QS_STALL s, then read
#      RSS, VmHWM and the size of the LMDB queue.
#   3. SIGTERM (timed); wait until every message is due again (one retry
#      interval, BENCH_QS_RETRY s, no jitter); start an outpost-sink where
#      the MX points; exec outpostd again and time "scheduler: N queued
#      message(s) loaded", the first message at the sink and, with
#      BENCH_QS_DRAIN=1, the last.
# Goals (the issue): ≤ 150 bytes of RSS per queued recipient; with 10M queued
# recipients, ready in ≤ 5 s after a restart.
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/queue_scale.json and queue_scale.md.  Loopback only; every
# process it starts is stopped by PID on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_QS_N:-1000000}
RCPTS=${BENCH_QS_RCPTS:-1}
SIZE=${BENCH_QS_SIZE:-1024}
SESSIONS=${BENCH_SESSIONS:-50}
DOWN=${BENCH_QS_DOWN:-refused}  # refused | dns
RETRY=${BENCH_QS_RETRY:-300}    # seconds: longer than injection + settling
STALL=${BENCH_QS_STALL:-30}     # seconds without a new deferral: settled
DRAIN=${BENCH_QS_DRAIN:-0}
MAX_TIME=${BENCH_MAX_TIME:-900}
DOMAINS=50
# Free space needed under /tmp, measured: LMDB holds ~2.4 KB per message of
# 1 KB with one recipient and ~0.9 KB per further recipient (1M x 10: 9.2
# GB), the delivery log ~0.5 KB per recipient (its reception lines): 4 KiB
# per message and 1.5 KiB per further recipient, ≥ 1 GB.
NEED_KIB=$((N * 4 + N * (RCPTS - 1) * 3 / 2))
[ "$NEED_KIB" -lt 1048576 ] && NEED_KIB=1048576

mkdir -p "$OUT"
work=$(mktemp -d /tmp/outpost-bench-queue_scale.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
OPD_PID='' OSINK_PID='' DNS_PID='' RSS_SAMPLER=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	rss_sampler_stop
	stop_pid "$OPD_PID" 120
	stop_pid "$OSINK_PID" 5
	stop_pid "$DNS_PID" 5
	mkdir -p "$OUT/queue_scale-logs"
	cp "$work"/*.json "$work"/*.conf "$work"/figures "$work"/notes.txt "$OUT/queue_scale-logs/" 2>/dev/null || true
	# The daemon's log may hold a line per attempt: keep its head and tail.
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
# put KEY VALUE: one figure for the report ("KEY VALUE" lines).
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
	"$PY" - "$1" "$2" <<'PYEOF'
import datetime, re, sys
pat = re.compile(sys.argv[2])
with open(sys.argv[1], errors="replace") as f:
    for line in f:
        if pat.search(line):
            t = datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
            print("%.3f" % t.replace(tzinfo=datetime.timezone.utc).timestamp())
            break
PYEOF
}

# logwatch STATE LOG TARGET STALL TIMEOUT: follow outpostd's delivery LOG
# from where the last call stopped (STATE, JSON: offset, counts of
# "transient_failure" events (deferrals),
# connection and greeting failures, back-offs, first and last deferral
# time) until TARGET deferrals, or STALL seconds without a new one, or
# TIMEOUT (STALL 0: one pass).  Reads each byte once (the log may grow to
# gigabytes).  Fails if it stopped short of TARGET.
logwatch() {
	"$PY" - "$@" <<'PYEOF'
import datetime, json, sys, time
state, log = sys.argv[1], sys.argv[2]
target, stall, timeout = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
try:
    with open(state) as f:
        st = json.load(f)
except (OSError, ValueError):
    st = {"offset": 0, "lines": 0, "deferred": 0, "connect_failed": 0,
          "greeting_failed": 0, "backoffs": 0, "first_deferral": None,
          "last_deferral": None}
def when(line):
    if line.startswith(b"{"):  # a delivery-log event: its "time" field
        i = line.find(b'"time":"')
        line = line[i + 8:] if i >= 0 else b""
    try:
        t = datetime.datetime.strptime(line[:23].decode(), "%Y-%m-%dT%H:%M:%S.%f")
        return round(t.replace(tzinfo=datetime.timezone.utc).timestamp(), 3)
    except ValueError:
        return None
start = last_change = time.time()
with open(log, "rb") as f:
    f.seek(st["offset"])
    while True:
        n0 = st["deferred"]
        for line in iter(f.readline, b""):
            if not line.endswith(b"\n"):
                break  # a partial line: read again on the next turn
            st["offset"] += len(line)
            st["lines"] += 1
            if b'"event":"transient_failure"' in line or b": deferred at " in line:
                st["deferred"] += 1
                t = when(line)
                if st["first_deferral"] is None:
                    st["first_deferral"] = t
                st["last_deferral"] = t
            elif b": connect failed: " in line:
                st["connect_failed"] += 1
            elif b": greeting failed: " in line:
                st["greeting_failed"] += 1
            elif b" backed off for " in line:
                st["backoffs"] += 1
        f.seek(st["offset"])
        now = time.time()
        if st["deferred"] != n0:
            last_change = now
        if (st["deferred"] >= target or stall <= 0 or now - last_change > stall
                or now - start > timeout):
            break
        time.sleep(1)
with open(state, "w") as f:
    json.dump(st, f)
sys.exit(0 if st["deferred"] >= target else 1)
PYEOF
}

# start_outpostd LOG: exec outpostd (the time in T_EXEC), wait until it
# listens (T_LISTEN); sets OPD_PID.
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

# stop_outpostd: SIGTERM, timed (T_STOP, seconds); SIGKILL after 300 s.
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
	T_STOP=$("$PY" -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$EPOCHREALTIME")
	OPD_PID=
}

run() {
	local avail dp dnsport m mx rcpts t_last t_due wait_s t_loaded loaded got x rc=0
	for x in "$OUTPOSTD" "$LOAD" "$OSINK"; do
		[ -x "$x" ] || { note "$x is not built: no figures"; return 1; }
	done
	case $DOWN in
	refused | dns) ;;
	*) note "BENCH_QS_DOWN=$DOWN: expected refused or dns"; return 1 ;;
	esac
	command -v dnsmasq >/dev/null || { note "dnsmasq missing (apt-get install dnsmasq-base): Outpost routes by MX"; return 1; }
	avail=$(df -Pk /tmp | awk 'NR == 2 { print $4 }')
	put tmp_free_gib "$((avail / 1048576))"
	if [ "$avail" -lt "$NEED_KIB" ]; then
		note "skipped: /tmp has $((avail / 1024)) MiB free, $((NEED_KIB / 1024)) MiB needed for $N × $RCPTS queued recipients (set BENCH_QS_N lower)"
		return 1
	fi
	domains=()
	for x in $(seq 0 $((DOMAINS - 1))); do
		domains+=("d$x.sink.test")
	done
	if [ "$DOWN" = refused ]; then
		dns_start "$work" 127.0.0.1 "${domains[@]}" || { note "dnsmasq did not start: $(tail -n 3 "$work/dnsmasq.err")"; return 1; }
		dnsport=$DNS_PORT
	else
		dnsport=$(free_dns_port) # nothing listens here until the restart
	fi
	port=$(free_port)
	dp=$(free_port) # nothing listens here until the restart
	d=$work/outpost
	mkdir -p "$d"
	cat >"$d/outpost.conf" <<EOF
# written by t/bench/queue_scale.sh ($DOWN): loopback only
data_dir = "$d/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$dnsport" timeout = 1s tries = 2 }
delivery {
	port = $dp
	retry_intervals = { "${RETRY}s" }
	retry_jitter = 0
}
# A site that fails is paused for longer than the injection: what waits on
# it is deferred at once, without a connection.  The pause (kept across the
# restart, with its end time) is over when the restart comes: RETRY after
# the last deferral, so at least RETRY after the first failure.
destination "*" {
	backoff_pause = ${RETRY}s
	backoff_max = ${RETRY}s
}
# No restore points: each is a compacting copy of the whole queue (20 GB at
# 10M recipients, every 5 minutes by default, and one in progress holds
# the stop); t/bench/restore.sh measures them.
restore { interval = 0 }
${BENCH_OUTPOST_EXTRA_CONF:-}
EOF
	cp "$d/outpost.conf" "$work/outpost.conf"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/outpostd-check.log" 2>&1; then
		note "outpostd -t rejects the bench configuration: $(tail -n 3 "$work/outpostd-check.log")"
		return 1
	fi

	# ---- 1. idle
	DLOG=$d/var/log/delivery.log # one "transient_failure" event per deferral
	start_outpostd "$work/outpostd-1.log" || return 1
	sleep 2
	read -r -a m <<<"$(mem "$OPD_PID")"
	put idle_rss_kib "${m[0]}"
	put idle_anon_kib "${m[1]}"
	put idle_hwm_kib "${m[3]}"

	# ---- 2. inject, then settle
	echo "queue_scale: injecting $N messages × $RCPTS recipient(s) of $SIZE bytes, $SESSIONS sessions; receiver down: $DOWN" >&2
	rss_sampler_start "$work/inject.mem" "$OPD_PID"
	put inject_cpu0 "$(tree_cpu "$OPD_PID")"
	"$LOAD" --host 127.0.0.1 --port "$port" --size "$SIZE" --pipelining --json \
	    --from news@sender.test --to 'rcpt%u@d%d.sink.test' --domains "$DOMAINS" \
	    --rcpts "$RCPTS" --sessions "$SESSIONS" --count "$N" --timeout 60 \
	    --max-time "$MAX_TIME" >"$work/inject.json" 2>"$work/inject-load.log" || rc=$?
	put inject_cpu1 "$(tree_cpu "$OPD_PID")"
	put inject_end_time "$EPOCHREALTIME"
	if [ ! -s "$work/inject.json" ]; then
		note "outpost-load gave no report (exit $rc): $(tail -n 3 "$work/inject-load.log")"
		return 1
	fi
	[ "$rc" = 0 ] || note "outpost-load exit $rc (not every message accepted)"
	rcpts=$(json_get "$work/inject.json" rcpts_accepted)
	echo "queue_scale: $(json_get "$work/inject.json" accepted) accepted at $(json_get "$work/inject.json" accepted_per_s) msg/s; waiting for $rcpts first deferrals" >&2
	put settle_cpu0 "$(tree_cpu "$OPD_PID")"
	logwatch "$work/watch-1.json" "$DLOG" 0 0 0 || true
	cp "$work/watch-1.json" "$work/watch-injected.json"
	if ! logwatch "$work/watch-1.json" "$DLOG" "$rcpts" "$STALL" "$MAX_TIME"; then
		note "only $(json_get "$work/watch-1.json" deferred) of $rcpts recipients deferred after the injection, none for the last $STALL s (BENCH_QS_STALL): measured as it is"
	fi
	kill -0 "$OPD_PID" 2>/dev/null || { note "outpostd died while settling: $(tail -n 3 "$work/outpostd-1.log")"; OPD_PID=; return 1; }
	sleep 5 # the last updates committed, the allocator at rest
	put settle_cpu1 "$(tree_cpu "$OPD_PID")"
	put settled_time "$EPOCHREALTIME"
	rss_sampler_stop
	logwatch "$work/watch-1.json" "$DLOG" 0 0 0 || true
	cp "$work/watch-1.json" "$work/watch-settled.json"
	# The queue's writer unmaps the LMDB pages the daemon touched every
	# 5 s (they stay in the page cache); in between, pages read fault back
	# in and count in VmRSS: the sample of 6 s with the least VmRSS, and
	# the most as well.
	m=() mx=0
	for _ in $(seq 24); do
		read -r -a x <<<"$(mem "$OPD_PID")"
		if [ "${#m[@]}" = 0 ] || [ "${x[0]}" -lt "${m[0]}" ]; then m=("${x[@]}"); fi
		[ "${x[0]}" -gt "$mx" ] && mx=${x[0]}
		sleep 0.25
	done
	put queued_rss_max_kib "$mx"
	put queued_rss_kib "${m[0]}"
	put queued_anon_kib "${m[1]}"
	put queued_file_kib "${m[2]}"
	put queued_hwm_kib "${m[3]}"
	put queue_du_kib "$(du -sk "$d/var/queue" | cut -f1)"
	put queue_apparent_kib "$(du -sk --apparent-size "$d/var/queue" | cut -f1)"
	# The CLI's summary over the whole queue, the daemon running (LMDB
	# read-only): twice, the second with the pages in the page cache.
	for k in 1 2; do
		t0=$EPOCHREALTIME
		"$(dirname "$OUTPOSTD")/outpost" -c "$d/outpost.conf" queue summary --json >"$work/summary-$k.json" 2>&1 ||
		    note "outpost queue summary failed: $(tail -n 2 "$work/summary-$k.json")"
		put "summary${k}_s" "$("$PY" -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$EPOCHREALTIME")"
	done

	# ---- 3. stop, wait until due, restart
	echo "queue_scale: stopping outpostd (SIGTERM)" >&2
	stop_outpostd
	put stop_s "$T_STOP"
	grep 'outpostd stopped' "$work/outpostd-1.log" | tail -n 1 >"$work/stopped-1.txt" || true
	put log1_bytes "$(stat -c %s "$work/outpostd-1.log")"
	logwatch "$work/watch-1.json" "$DLOG" 0 0 0 || true
	if [ "$(json_get "$work/watch-1.json" deferred)" -gt "$rcpts" ]; then
		note "more deferrals ($(json_get "$work/watch-1.json" deferred)) than recipients ($rcpts): some were tried twice before the stop (BENCH_QS_RETRY $RETRY s shorter than injection + settling?)"
	fi
	# A message deferred at time T is due at T + RETRY (no jitter).
	t_last=$(json_get "$work/watch-1.json" last_deferral)
	t_due=$("$PY" -c 'import sys; print("%.3f" % (float(sys.argv[1] or 0) + float(sys.argv[2]) + 2))' "${t_last:-}" "$RETRY")
	wait_s=$("$PY" -c 'import sys, time; print(max(0, int(float(sys.argv[1]) - time.time() + 0.999)))' "$t_due")
	put wait_until_due_s "$wait_s"
	echo "queue_scale: waiting $wait_s s until every message is due" >&2
	sleep "$wait_s"
	if [ "$DOWN" = dns ]; then
		DNS_FIXED_PORT=$dnsport dns_start "$work" 127.0.0.1 "${domains[@]}" ||
		    { note "dnsmasq did not start on 127.0.0.1:$dnsport for the restart: $(tail -n 3 "$work/dnsmasq.err")"; return 1; }
	fi
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
	"$PY" "$PROCSTAT" threads "$OPD_PID" >"$work/threads-first.json" 2>/dev/null || :
	read -r -a m <<<"$(mem "$OPD_PID")"
	put restart_rss_kib "${m[0]}"
	if [ "$DRAIN" = 1 ]; then
		echo "queue_scale: waiting until all $N messages are delivered" >&2
		if ! got=$(osink_wait "$work/sink.json" "$N" "$MAX_TIME" 60); then
			note "drain: $got of $N messages at the sink when the wait gave up (BENCH_MAX_TIME $MAX_TIME s, or 60 s without progress)"
		fi
		cp "$work/sink.json" "$work/sink-drain.json"
		"$PY" "$PROCSTAT" threads "$OPD_PID" >"$work/threads-drained.json" 2>/dev/null || :
	fi
	put restart_hwm_kib "$(hwm_kib "$OPD_PID")"
	stop_outpostd
	put stop2_s "$T_STOP"
	grep 'outpostd stopped' "$work/outpostd-2.log" | tail -n 1 >"$work/stopped-2.txt" || true
	return 0
}

cut -d' ' -f1-3 /proc/loadavg >"$work/loadavg"
status=0
run || status=1

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$RCPTS" "$SIZE" "$SESSIONS" "$RETRY" "$DRAIN" "$DOMAINS" "$STALL" "$DOWN" <<'EOF'
import json, os, sys
work, out = sys.argv[1:3]
n, rcpts, size, sessions, retry, drain, domains, stall = (int(a) for a in sys.argv[3:11])
down = sys.argv[11]
def read(name):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read().strip()
    except OSError:
        return None
def j(name):
    try:
        return json.loads(read(name) or "")
    except ValueError:
        return None
fig = {}
for line in (read("figures") or "").splitlines():
    k, _, v = line.partition(" ")
    try:
        fig[k] = float(v) if "." in v else int(v)
    except ValueError:
        fig[k] = v or None
def diff(a, b, nd=3):
    if fig.get(a) is None or fig.get(b) is None:
        return None
    return round(fig[a] - fig[b], nd)
def mib(k):
    return round(fig[k] / 1024, 1) if fig.get(k) else None
inj = j("inject.json")
mem = j("inject.mem") or {}
injected = j("watch-injected.json") or {}
settled = j("watch-settled.json") or {}
whole = j("watch-1.json") or {}
first = j("sink-first.json") or {}
drained = j("sink-drain.json")
res = {"benchmark": "queue_scale", "messages": n, "rcpts_per_message": rcpts,
       "size": size, "sessions": sessions, "domains": domains,
       "receiver_down": down, "retry_interval_s": retry,
       "loadavg_before": (read("loadavg") or "").split(),
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "inject": None, "queued": None, "restart": None,
       "figures": fig, "notes": (read("notes.txt") or "").splitlines()}
if inj:
    res["inject"] = {
        "accepted": inj["accepted"], "rcpts_accepted": inj["rcpts_accepted"],
        "refused": inj["rejected_4xx"] + inj["rejected_5xx"],
        "failed": inj["failed"], "elapsed_s": inj["elapsed_s"],
        "msg_per_s": inj["accepted_per_s"],
        "outpostd_cpu_s": diff("inject_cpu1", "inject_cpu0", 2),
        "outpostd_peak_rss_sampled_mib": round(mem.get("peak_rss_kib", 0) / 1024, 1) or None,
        "load_report": inj}
if inj and fig.get("queued_rss_kib"):
    r = inj["rcpts_accepted"]
    win = diff("settled_time", "inject_end_time")
    cpu = diff("settle_cpu1", "settle_cpu0", 2)
    res["queued"] = {
        "recipients": r,
        "deferred_once_before_measure": settled.get("deferred"),
        "connect_failures_until_measure": settled.get("connect_failed"),
        "connect_failures_after_injection": (settled.get("connect_failed") or 0) - (injected.get("connect_failed") or 0),
        "deferred_during_injection": injected.get("deferred"),
        "log_lines_until_measure": settled.get("lines"),
        "after_injection_s": win,
        "outpostd_cpu_pct_after_injection": round(100 * cpu / win, 1) if cpu is not None and win else None,
        "idle_rss_mib": mib("idle_rss_kib"),
        "rss_mib": mib("queued_rss_kib"), "anon_mib": mib("queued_anon_kib"),
        "file_mib": mib("queued_file_kib"), "hwm_mib": mib("queued_hwm_kib"),
        "rss_bytes_per_rcpt": round((fig["queued_rss_kib"] - fig["idle_rss_kib"]) * 1024 / r, 1) if r else None,
        "anon_bytes_per_rcpt": round((fig["queued_anon_kib"] - fig["idle_anon_kib"]) * 1024 / r, 1) if r else None,
        "hwm_bytes_per_rcpt": round((fig["queued_hwm_kib"] - fig["idle_rss_kib"]) * 1024 / r, 1) if r else None,
        "lmdb_du_mib": mib("queue_du_kib"), "lmdb_apparent_mib": mib("queue_apparent_kib"),
        "lmdb_bytes_per_rcpt": round(fig["queue_du_kib"] * 1024 / r) if r else None,
        "stop_s": fig.get("stop_s"),
        "cli_summary_s": [fig.get("summary1_s"), fig.get("summary2_s")],
        "deferred_by_stop": whole.get("deferred"),
        "connect_failures_total": whole.get("connect_failed"),
        "log_mib": round(fig["log1_bytes"] / 1048576, 1) if fig.get("log1_bytes") else None,
        "stopped_line": read("stopped-1.txt")}
if fig.get("restart_exec_time"):
    ft = first.get("first_message_time")
    rs = res["restart"] = {
        "wait_until_due_s": fig.get("wait_until_due_s"),
        "loaded_n": fig.get("restart_loaded_n"),
        "listen_s": diff("restart_listen_time", "restart_exec_time"),
        "loaded_s": diff("restart_loaded_time", "restart_exec_time"),
        "first_delivery_s": round(ft - fig["restart_exec_time"], 3) if ft else None,
        "rss_after_first_delivery_mib": mib("restart_rss_kib"),
        "hwm_mib": mib("restart_hwm_kib"),
        "stop_s": fig.get("stop2_s"),
        "stopped_line": read("stopped-2.txt")}
    if drained:
        lt = drained.get("last_message_time")
        rs["drain_delivered"] = drained.get("messages")
        rs["drain_s"] = round(lt - fig["restart_exec_time"], 2) if lt and drained.get("messages", 0) >= n else None
        rs["drain_msg_per_s"] = round(n / rs["drain_s"], 1) if rs["drain_s"] else None
        # CPU per message by thread, from the first message at the sink to
        # the last: the delivery half at work, nothing accepted meanwhile.
        t0, t1 = j("threads-first.json"), j("threads-drained.json")
        m = (drained.get("messages") or 0) - (first.get("messages") or 0)
        if t0 is not None and t1 and m > 0:
            per = {k: round((v - t0.get(k, 0)) * 1000 / m, 4)
                   for k, v in sorted(t1.items())}
            rs["drain_cpu_ms_per_msg_by_thread"] = per
            rs["drain_cpu_ms_per_msg"] = round(sum(per.values()), 4)
            rs["drain_delivery_cpu_ms_per_msg"] = round(sum(
                v for k, v in per.items() if k.startswith("deliver")), 4)
q = res["queued"]
if q and (q["deferred_once_before_measure"] or 0) < q["recipients"] and q["after_injection_s"]:
    res["notes"].insert(0, (
        "outpostd did not settle: %s of %s recipients deferred %.0f s after "
        "the injection, while in that time %s connection attempts failed (%.0f/s) and "
        "outpostd used %s%% CPU; the queue was measured in that state "
        "(rounds in progress count in its RSS)" % (
            q["deferred_once_before_measure"], q["recipients"],
            q["after_injection_s"], "{:,}".format(q["connect_failures_after_injection"]),
            q["connect_failures_after_injection"] / q["after_injection_s"],
            q["outpostd_cpu_pct_after_injection"])))
with open(os.path.join(out, "queue_scale.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")

def c(v, fmt="{}"):
    return "n/a" if v is None else fmt.format(v)
i, q, r = res["inject"] or {}, res["queued"] or {}, res["restart"] or {}
how = {"refused": "MX → 127.0.0.1, nothing listening on the delivery port (connection refused)",
       "dns": "DNS server down (every MX lookup fails, 4xx)"}[down]
lines = ["## Queue scale: %s messages × %d recipient(s) queued, receiver down (%s)" % ("{:,}".format(n), rcpts, down), "",
         "| | Outpost | goal |", "|---|---|---|",
         "| injection msg/s (%d bytes, %d pipelining sessions) | %s | |" % (size, sessions, c(i.get("msg_per_s"), "{:,.0f}")),
         "| injection time (s) | %s | |" % c(i.get("elapsed_s"), "{:.1f}"),
         "| accepted / refused / failed | %s / %s / %s | |" % (c(i.get("accepted")), c(i.get("refused")), c(i.get("failed"))),
         "| recipients deferred once when measured | %s of %s | all |" % (c(q.get("deferred_once_before_measure")), c(q.get("recipients"))),
         "| connection attempts that failed, by then | %s | |" % c(q.get("connect_failures_until_measure"), "{:,}"),
         "| outpostd CPU after the injection (%%, %s s) | %s | ~0 |" % (c(q.get("after_injection_s"), "{:.0f}"), c(q.get("outpostd_cpu_pct_after_injection"), "{:.0f}")),
         "| RSS idle, empty queue (MiB) | %s | |" % c(q.get("idle_rss_mib"), "{:.1f}"),
         "| RSS with all queued (MiB, the least of 6 s of samples): VmRSS / anon / file | %s / %s / %s | |" % (c(q.get("rss_mib"), "{:.1f}"), c(q.get("anon_mib"), "{:.1f}"), c(q.get("file_mib"), "{:.1f}")),
         "| VmRSS, the most in the same 6 s of samples (MiB) | %s | |" % c(mib("queued_rss_max_kib"), "{:.1f}"),
         "| VmHWM by then (MiB) | %s | |" % c(q.get("hwm_mib"), "{:.1f}"),
         "| **RSS bytes per queued recipient** (VmRSS − idle) | **%s** | ≤ 150 |" % c(q.get("rss_bytes_per_rcpt"), "{:,.0f}"),
         "| of which anonymous (heap) | %s | |" % c(q.get("anon_bytes_per_rcpt"), "{:,.0f}"),
         "| peak: (VmHWM − idle) per recipient | %s | |" % c(q.get("hwm_bytes_per_rcpt"), "{:,.0f}"),
         "| LMDB on disk, MiB (bytes per recipient) | %s (%s) | |" % (c(q.get("lmdb_du_mib"), "{:,.1f}"), c(q.get("lmdb_bytes_per_rcpt"), "{:,}")),
         "| daemon log by the stop (MiB) | %s | |" % c(q.get("log_mib"), "{:,.1f}"),
         "| `outpost queue summary` over the queue, daemon running (s): first / again | %s / %s | < 2 |" % (c(fig.get("summary1_s"), "{:.2f}"), c(fig.get("summary2_s"), "{:.2f}")),
         "| stop: SIGTERM → exit (s) | %s | |" % c(q.get("stop_s"), "{:.2f}"),
         "| restart: exec → listening (s) | %s | |" % c(r.get("listen_s"), "{:.3f}"),
         "| **restart: exec → \"%s queued message(s) loaded\" (s)** | **%s** | ≤ 5 |" % (c(r.get("loaded_n")), c(r.get("loaded_s"), "{:.3f}")),
         "| **restart: exec → first message at the sink (s)** | **%s** | ≤ 5 |" % c(r.get("first_delivery_s"), "{:.3f}"),
         "| RSS at the first delivery (MiB) | %s | |" % c(r.get("rss_after_first_delivery_mib"), "{:.1f}")]
if drain:
    lines += ["| restart: exec → all %s delivered (s) | %s | |" % ("{:,}".format(n), c(r.get("drain_s"), "{:.1f}")),
              "| drain rate (msg/s) | %s | |" % c(r.get("drain_msg_per_s"), "{:,.0f}"),
              "| VmHWM by the end of the drain (MiB) | %s | |" % c(r.get("hwm_mib"), "{:.1f}"),
              "| drain: outpostd CPU ms per message | %s | |" % c(r.get("drain_cpu_ms_per_msg"), "{:.4f}"),
              "| drain: delivery loops' CPU ms per message (deliver*) | %s | |" % c(r.get("drain_delivery_cpu_ms_per_msg"), "{:.4f}")]
    for k, v in sorted((r.get("drain_cpu_ms_per_msg_by_thread") or {}).items()):
        if v >= 0.0005:
            lines.append("| drain: thread %s, CPU ms per message | %.4f | |" % (k, v))
lines += ["",
          "Receiver down: %s; retry_intervals = { \"%ds\" }, retry_jitter = 0, "
          "destination \"*\" backoff_pause = the retry interval. RSS is read once every "
          "recipient was deferred once (the daemon's log), or %s s after the "
          "last deferral if that never happens, + 5 s (anon = heap, file = "
          "LMDB pages mapped). The restart comes once every message is due "
          "again, with an outpost-sink where the MX points. outpostd's "
          "VmHWM includes its start-up peak (idle: %s MiB). Load average "
          "before / after the run: %s / %s." % (
              how, retry, stall, c(mib("idle_hwm_kib")),
              " ".join(res["loadavg_before"]), " ".join(res["loadavg_after"]))]
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
