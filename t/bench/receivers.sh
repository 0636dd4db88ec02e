#!/bin/bash
# t/bench/receivers.sh — the realistic-receivers benchmark (called by run.sh).
# How much mail goes out when every receiver is slow, and what does each open
# outbound connection cost?  BENCH_RCV_DOMAINS (1,000) recipient domains
# dN.test, each with its own MX host mxN.test on its own loopback address
# (127.1.x.y; Linux routes 127/8 to lo), served by ONE outpost-sink listening
# on all of them, answering every command (the greeting included) after
# BENCH_RCV_DELAY_MS (50).  Per-domain limits as large mailbox providers set
# them (a default and three named ones; see limits below).  Rows, one run:
#   outpost_mx      outpostd routing by MX: our dnsmasq on a loopback port
#                   answers dN.test MX mxN.test and mxN.test A 127.1.x.y
#   outpost_routes  the same with a static route per domain (the footing
#                   Postfix stands on below: no DNS)
#   postfix         Postfix 3.7 (receivers_postfix.sh: private instance),
#                   transport_maps dN.test -> smtp:[127.1.x.y]:PORT, the
#                   same per-destination concurrency and messages per
#                   connection, the same total outbound cap (needs root;
#                   BENCH_PEERS=0 skips).  /etc/resolv.conf cannot name a
#                   port and is never touched: Postfix makes no DNS lookup
#   hold            outpostd by MX with BENCH_RCV_HOLD (10,000) messages over
#                   the domains, max_connections high enough and the sink
#                   answering after BENCH_RCV_HOLD_DELAY_MS (10,000): how many
#                   connections it holds at once, and RSS per connection
#                   (BENCH_RCV_HOLD=0 skips)
# Load: outpost-load, BENCH_RCV_N (30,000) messages of BENCH_RCV_SIZE (4096)
# bytes, one recipient each, spread evenly (rcptK@d(K mod DOMAINS).test),
# BENCH_RCV_SESSIONS (50) pipelining sessions.  Delivered msg/s = N / (the
# sink's last message time - load start).  Open connections: `ss` on the
# sink's port every 0.5 s (and outpostd's /metrics outpost_pool_connections).
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/receivers.json and receivers.md.  Loopback only; every process it
# starts is stopped by PID (Postfix by its stop command, then by PID) on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_RCV_N:-30000}
SIZE=${BENCH_RCV_SIZE:-4096}
SESSIONS=${BENCH_RCV_SESSIONS:-50}
DOMAINS=${BENCH_RCV_DOMAINS:-1000}
DELAY=${BENCH_RCV_DELAY_MS:-50}
HOLD=${BENCH_RCV_HOLD:-10000}
HOLD_DELAY=${BENCH_RCV_HOLD_DELAY_MS:-10000}
# Small messages in the hold row, so that what outpostd grows by is mostly
# its connections (a queued message costs about its size and more).
HOLD_SIZE=${BENCH_RCV_HOLD_SIZE:-1024}
MAX_TIME=${BENCH_MAX_TIME:-600}
PEERS=${BENCH_PEERS:-1}
PF_HELPER=$HERE/receivers_postfix.sh
# Per-destination limits, as large mailbox providers ask of a sender (and
# as ESPs configure them): a default for everyone, and three big providers.
# Rates are set where providers publish them; at this N they do not bind
# (Postfix has no per-minute cap, only a delay that forces concurrency 1).
#            domain   max_connections  max_messages_per_connection  per_minute
LIMITS="*        5   50  0
d0.test  20 100 6000
d1.test  10  20 3000
d2.test  10  50 3000"
# The total cap on outbound connections, the same for both (Postfix's
# default_process_limit and its smtp maxproc; Outpost's
# delivery.max_connections): by default the sum of the per-destination
# limits over the domains, so that only the per-destination concurrency,
# equal for both, binds.  A cap below that (BENCH_RCV_TOTAL=1000, Postfix's
# default process limit: the runs before 2026-12-05) measures how each
# shares scarce slots instead.
sum_limits() {
	local n=0 named=0 dflt=0 dom mc rest
	while read -r dom mc rest; do
		if [ "$dom" = '*' ]; then dflt=$mc; else n=$((n + mc)) named=$((named + 1)); fi
	done <<<"$LIMITS"
	echo $((n + (DOMAINS - named) * dflt))
}
TOTAL=${BENCH_RCV_TOTAL:-$(sum_limits)}
# Outpost's own cap on outbound connections: by default Postfix's process
# cap (BENCH_RCV_TOTAL), the same footing.  A destination the cap turns
# away waits its turn for the next slot that ends, and idle connections
# give theirs up to it (before 2026-12-05 the scheduler starved such
# destinations: 25 domains got no connection in 60 s at 1,000 slots).
OUTPOST_TOTAL=${BENCH_RCV_OUTPOST_TOTAL:-$TOTAL}
if [ "$DOMAINS" -gt 4000 ]; then
	echo "receivers: BENCH_RCV_DOMAINS is at most 4000 (outpost-sink's listeners)" >&2
	exit 2
fi

# Descriptors: the sink holds a listener per domain and every connection;
# outpostd one per connection.  Both take the hard limit themselves; the
# shell's soft limit is raised too, for the tools that do not.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

work=$(mktemp -d /tmp/outpost-bench-receivers.XXXXXX)
chmod 755 "$work" # outpostd as user outpost, Postfix's users read below it
OPD_PID='' OSINK_PID='' DNS_PID='' PF_W='' RSS_SAMPLER='' CONN_SAMPLER=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	conn_sampler_stop
	rss_sampler_stop
	stop_pid "$OPD_PID" 30
	if [ -n "$PF_W" ]; then
		"$PF_HELPER" stop "$PF_W" >/dev/null 2>&1 || true
	fi
	stop_pid "$OSINK_PID" 10
	stop_pid "$DNS_PID" 5
	mkdir -p "$OUT/receivers-logs"
	cp "$work"/*.json "$work"/*.conns "$work"/*.conf.log "$work"/notes.txt "$OUT/receivers-logs/" 2>/dev/null || true
	for f in "$work"/*-outpostd.log "$work"/*-stats.json.log; do
		[ -f "$f" ] || continue
		{ head -n 50 "$f"; echo ...; tail -n 100 "$f"; } >"$OUT/receivers-logs/${f##*/}"
	done
	[ -f "$work/postfix/maillog" ] && tail -n 200 "$work/postfix/maillog" >"$OUT/receivers-logs/postfix-maillog.tail"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "receivers: $*" >&2; echo "$*" >>"$work/notes.txt"; }

# addr I: the MX address of domain dI.test (127.1.x.y, y in 1..250).
addr() {
	echo "127.1.$(($1 / 250)).$(($1 % 250 + 1))"
}

# ------------------------------------------------------------ samplers
# conn_sampler_start FILE SINK_PORT PID [METRICS_PORT]: every 0.5 s the
# established connections on the sink's port (ss, the sink's side), the
# RSS of PID and outpostd's own count of open outbound connections; peak,
# mean while any was open, and RSS at the peak go to FILE (JSON) on SIGTERM.
cat >"$work/connsample.py" <<'PYEOF'
import json, signal, subprocess, sys, time, urllib.request
out, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
mport = sys.argv[4] if len(sys.argv) > 4 else ""
samples, stop = [], []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def rss_kib():
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
def metric():
    if not mport:
        return None
    try:
        t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % mport, timeout=1).read().decode()
    except Exception:
        return None
    return sum(float(l.rsplit(" ", 1)[1]) for l in t.splitlines()
               if l.startswith("outpost_pool_connections{"))
while not stop:
    t = time.time()
    r = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%s )" % port],
                       capture_output=True, text=True)
    samples.append({"t": round(t, 2), "ss": r.stdout.count("\n"), "rss_kib": rss_kib(),
                    "metric": metric()})
    time.sleep(max(0.0, 0.5 - (time.time() - t)))
busy = [s for s in samples if s["ss"] > 0]
peak = max(samples, key=lambda s: s["ss"]) if samples else None
mets = [s["metric"] for s in samples if s["metric"] is not None]
json.dump({"samples": len(samples), "peak": peak["ss"] if peak else 0,
           "mean": round(sum(s["ss"] for s in busy) / len(busy), 1) if busy else 0,
           "rss_kib_at_peak": peak["rss_kib"] if peak else 0,
           "metric_peak": max(mets) if mets else None,
           "metric_mean": round(sum(m for m in mets if m > 0) / max(1, len([m for m in mets if m > 0])), 1) if mets else None,
           "series": samples}, open(out, "w"))
PYEOF

conn_sampler_start() {
	"$PY" "$work/connsample.py" "$@" &
	CONN_SAMPLER=$!
}

conn_sampler_stop() {
	if [ -n "${CONN_SAMPLER:-}" ]; then
		kill -TERM "$CONN_SAMPLER" 2>/dev/null || true
		wait "$CONN_SAMPLER" 2>/dev/null || true
		CONN_SAMPLER=
	fi
}

rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# --------------------------------------------------------------- receivers
# sink_up LABEL DELAY_MS: one outpost-sink on every MX address, port SP.
sink_up() {
	local label=$1 delay=$2 i args=()
	SP=$(free_port)
	for ((i = 0; i < DOMAINS; i++)); do
		args+=(--listen "$(addr "$i"):$SP")
	done
	osink_start "$SP" "$work/$label-stats.json" --reply-delay-ms "$delay" \
	    --timeout-s 600 "${args[@]}" && return 0
	note "$label: outpost-sink did not start: $(tail -n 3 "$work/$label-stats.json.log")"
	stop_pid "$OSINK_PID" 5
	OSINK_PID=
	return 1
}

# dns_up: dnsmasq on a free 127.0.0.1 port with dN.test MX 10 mxN.test and
# mxN.test A 127.1.x.y, NXDOMAIN for the rest of .test, never forwarding,
# never reading /etc/hosts or /etc/resolv.conf.  Sets DNS_PORT, DNS_PID.
dns_up() {
	local i user=()
	command -v dnsmasq >/dev/null || { note "dnsmasq missing (apt-get install dnsmasq-base)"; return 1; }
	[ "$(id -u)" = 0 ] && user=(--user=root)
	{
		for ((i = 0; i < DOMAINS; i++)); do
			echo "mx-host=d$i.test,mx$i.test,10"
			echo "host-record=mx$i.test,$(addr "$i")"
		done
		echo 'txt-record=_dmarc.sender.test,"v=DMARC1; p=none"'
	} >"$work/dnsmasq.conf"
	for _ in 1 2 3 4 5; do
		DNS_PORT=$(free_dns_port)
		dnsmasq --keep-in-foreground --no-daemon "--port=$DNS_PORT" \
		    --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
		    --no-hosts "--conf-file=$work/dnsmasq.conf" "${user[@]}" \
		    "--pid-file=$work/dnsmasq.pid" --local-ttl=3600 --local=/test/ \
		    --cache-size=10000 "--log-facility=$work/dnsmasq.log" \
		    >/dev/null 2>"$work/dnsmasq.err" &
		DNS_PID=$!
		for _ in $(seq 100); do
			kill -0 "$DNS_PID" 2>/dev/null || break
			dns_answers "$DNS_PORT" mx0.test && return 0
			sleep 0.05
		done
		stop_pid "$DNS_PID" 5
		DNS_PID=
		grep -q "in use" "$work/dnsmasq.err" 2>/dev/null || break
	done
	note "dnsmasq did not start: $(tail -n 3 "$work/dnsmasq.err")"
	return 1
}

load_args=(--host 127.0.0.1 --size "$SIZE" --pipelining --json
	--from news@sender.test --to 'rcpt%u@d%d.test' --domains "$DOMAINS"
	--timeout 120)

# ------------------------------------------------------------ outpost
# outpost_conf FILE DIR PORT MPORT MODE(mx|routes) TOTAL HOLD(0|1)
outpost_conf() {
	local file=$1 dir=$2 port=$3 mport=$4 mode=$5 total=$6 hold=$7 i dom c m r
	{
		cat <<EOF
# written by t/bench/receivers.sh: loopback only
data_dir = "$dir/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$DNS_PORT" timeout = 3s tries = 4 }
metrics { listen = "127.0.0.1:$mport" }
queue { map_size = 4G }
delivery { port = $SP max_connections = $total }
EOF
		if [ "$hold" = 1 ]; then
			# Enough connections per domain that every message has one.
			c=$(((HOLD + DOMAINS - 1) / DOMAINS))
			echo "destination \"*\" { max_connections = $c max_messages_per_connection = 1 tls = none }"
		else
			while read -r dom c m r; do
				printf 'destination "%s" { max_connections = %s max_messages_per_connection = %s max_messages_per_minute = %s tls = none }\n' \
				    "$dom" "$c" "$m" "$r"
			done <<<"$LIMITS"
		fi
		if [ "$mode" = routes ]; then
			for ((i = 0; i < DOMAINS; i++)); do
				echo "route \"d$i.test\" { host = \"$(addr "$i"):$SP\" }"
			done
		fi
	} >"$file"
}

# udp_drops: datagrams the kernel dropped for a full receive buffer (all
# sockets): a burst of lookups can overflow dnsmasq's.
udp_drops() {
	awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp
}

# outpost_run LABEL MODE N DELAY_MS TOTAL HOLD SIZE: one Outpost row.
outpost_run() {
	local label=$1 mode=$2 n=$3 delay=$4 total=$5 hold=$6 size=$7 port mport d rc=0 cpu0 cpu1 t0 got u0
	if [ ! -x "$OUTPOSTD" ] || [ ! -x "$OSINK" ]; then
		note "$label: $OUTPOSTD or $OSINK is not built: no Outpost figures"
		return 1
	fi
	[ -n "$DNS_PID" ] || dns_up || return 1
	sink_up "$label" "$delay" || return 1
	port=$(free_port)
	mport=$(free_port)
	d=$work/$label
	mkdir -p "$d"
	chmod 755 "$d"
	outpost_conf "$d/outpost.conf" "$d" "$port" "$mport" "$mode" "$total" "$hold"
	cp "$d/outpost.conf" "$work/$label.conf.log"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/$label-check.log" 2>&1; then
		note "$label: outpostd -t rejects the configuration: $(tail -n 3 "$work/$label-check.log")"
		stop_pid "$OSINK_PID" 5
		OSINK_PID=
		return 1
	fi
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/$label-outpostd.log" 2>&1 &
	OPD_PID=$!
	if ! wait_port "$port" 30 "$OPD_PID"; then
		note "$label: outpostd did not listen: $(tail -n 5 "$work/$label-outpostd.log")"
		stop_pid "$OPD_PID" 10
		OPD_PID=
		stop_pid "$OSINK_PID" 5
		OSINK_PID=
		return 1
	fi
	sleep 1
	rss_kib "$OPD_PID" >"$work/$label.idle"
	awk '/^Max open files/ { print $4 }' "/proc/$OPD_PID/limits" >"$work/$label.nofile"
	cpu0=$(tree_cpu "$OPD_PID")
	conn_sampler_start "$work/$label.conns" "$SP" "$OPD_PID" "$mport"
	echo "receivers: $label: $n messages to $DOMAINS domains, replies after $delay ms" >&2
	u0=$(udp_drops)
	t0=$EPOCHREALTIME
	"$LOAD" "${load_args[@]}" --size "$size" --port "$port" --sessions "$SESSIONS" --count "$n" \
	    --max-time "$MAX_TIME" >"$work/$label.json" 2>"$work/$label-load.log" || rc=$?
	[ "$rc" = 0 ] || note "$label: outpost-load exit $rc: $(tail -n 2 "$work/$label-load.log")"
	if got=$(osink_wait "$work/$label-stats.json" "$n" "$MAX_TIME" $((delay * 6 / 1000 + 60))); then
		echo ok >"$work/$label.wait"
	else
		echo timeout >"$work/$label.wait"
		note "$label: the sink counted $got of $n messages, then the wait gave up"
	fi
	cpu1=$(tree_cpu "$OPD_PID")
	echo $(($(udp_drops) - u0)) >"$work/$label.udpdrops"
	grep -c 'address lookup: tempfail' "$work/$label-outpostd.log" >"$work/$label.dnsfail" || true
	conn_sampler_stop
	hwm_kib "$OPD_PID" >"$work/$label.hwm"
	cp "$work/$label-stats.json" "$work/$label-sink.json"
	echo "$t0" >"$work/$label.t0"
	echo "$cpu0 $cpu1" >"$work/$label.cpu"
	grep -c 'EMFILE\|Too many open files' "$work/$label-outpostd.log" >"$work/$label.emfile" || true
	grep -c ': \(deferred\|bounced\) at ' "$work/$label-outpostd.log" >"$work/$label.deferred" || true
	stop_pid "$OPD_PID" 30
	OPD_PID=
	stop_pid "$OSINK_PID" 10
	OSINK_PID=
	return 0
}

# ------------------------------------------------------------ postfix
postfix_run() {
	local lp i dom c m r t cpu0 cpu1 t0 got rc=0 roots
	if [ "$PEERS" = 0 ]; then
		note "postfix: skipped (BENCH_PEERS=0)"
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		note "postfix: skipped (needs root: Postfix drops privileges)"
		return 1
	fi
	if ! command -v postfix >/dev/null; then
		note "postfix: not installed (run.sh installs it when run as root)"
		return 1
	fi
	sink_up postfix "$DELAY" || return 1
	PF_W=$work/postfix
	mkdir -p "$PF_W"
	# Named providers get a transport each (Postfix's per-destination knobs
	# are per transport); everyone else the default smtp transport.
	declare -A tr=()
	: >"$PF_W/main.extra"
	: >"$PF_W/master.extra"
	t=0
	while read -r dom c m r; do
		if [ "$dom" = "*" ]; then
			cat >>"$PF_W/main.extra" <<EOF
default_destination_concurrency_limit = $c
initial_destination_concurrency = $c
smtp_connection_reuse_count_limit = $m
EOF
			continue
		fi
		t=$((t + 1))
		tr[$dom]=prov$t
		cat >>"$PF_W/main.extra" <<EOF
prov${t}_destination_concurrency_limit = $c
prov${t}_initial_destination_concurrency = $c
EOF
		echo "prov$t unix - - n - $c smtp -o smtp_connection_reuse_count_limit=$m" >>"$PF_W/master.extra"
	done <<<"$LIMITS"
	for ((i = 0; i < DOMAINS; i++)); do
		echo "d$i.test ${tr[d$i.test]:-smtp}:[$(addr "$i")]:$SP"
	done >"$PF_W/transport"
	lp=$(free_port)
	if ! "$PF_HELPER" start "$PF_W" "$lp" "$TOTAL" >"$work/postfix-start.log" 2>&1; then
		note "postfix: start failed: $(tail -n 5 "$work/postfix-start.log")"
		"$PF_HELPER" stop "$PF_W" >/dev/null 2>&1 || true
		PF_W=
		stop_pid "$OSINK_PID" 10
		OSINK_PID=
		return 1
	fi
	read -r -a roots <<<"$(tr '\n' ' ' <"$PF_W/pids")"
	cpu0=$(tree_cpu "${roots[@]}")
	rss_sampler_start "$work/postfix.mem" "${roots[@]}"
	conn_sampler_start "$work/postfix.conns" "$SP" "${roots[0]}"
	echo "receivers: postfix: $N messages to $DOMAINS domains, replies after $DELAY ms" >&2
	t0=$EPOCHREALTIME
	"$LOAD" "${load_args[@]}" --port "$lp" --sessions "$SESSIONS" --count "$N" \
	    --max-time "$MAX_TIME" >"$work/postfix.json" 2>"$work/postfix-load.log" || rc=$?
	[ "$rc" = 0 ] || note "postfix: outpost-load exit $rc: $(tail -n 2 "$work/postfix-load.log")"
	if got=$(osink_wait "$work/postfix-stats.json" "$N" "$MAX_TIME" 60); then
		echo ok >"$work/postfix.wait"
	else
		echo timeout >"$work/postfix.wait"
		note "postfix: the sink counted $got of $N messages, then the wait gave up"
	fi
	cpu1=$(tree_cpu "${roots[@]}")
	conn_sampler_stop
	rss_sampler_stop
	cp "$work/postfix-stats.json" "$work/postfix-sink.json"
	echo "$t0" >"$work/postfix.t0"
	echo "$cpu0 $cpu1" >"$work/postfix.cpu"
	"$PF_HELPER" stop "$PF_W" >/dev/null 2>&1 || true
	stop_pid "$OSINK_PID" 10
	OSINK_PID=
	grep ' status=' "$PF_W/maillog" | grep -vc ' status=sent' >"$work/postfix.notsent" || true
	grep -c ' status=sent' "$PF_W/maillog" >"$work/postfix.sent" || true
	cp "$PF_W/maillog" "$work/postfix-maillog" 2>/dev/null || true
	PF_W=
}

cut -d' ' -f1-3 /proc/loadavg >"$work/loadavg"
status=0
outpost_run outpost_mx mx "$N" "$DELAY" "$OUTPOST_TOTAL" 0 "$SIZE" || status=1
outpost_run outpost_routes routes "$N" "$DELAY" "$OUTPOST_TOTAL" 0 "$SIZE" || status=1
postfix_run || status=1
if [ "$HOLD" -gt 0 ]; then
	outpost_run hold mx "$HOLD" "$HOLD_DELAY" $((HOLD + 1000)) 1 "$HOLD_SIZE" || status=1
fi

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$SIZE" "$DOMAINS" "$DELAY" "$TOTAL" "$HOLD" "$HOLD_DELAY" "$NOFILE" "$OUTPOST_TOTAL" "$HOLD_SIZE" "$LIMITS" <<'EOF' || status=1
import json, os, sys
work, out = sys.argv[1:3]
n, size, domains, delay, total, hold, hold_delay, nofile, ototal, hold_size = map(int, sys.argv[3:13])
limits = sys.argv[13]
def read(name):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read().strip()
    except OSError:
        return None
def js(name):
    try:
        return json.loads(read(name) or "null")
    except ValueError:
        return None
def row(label, n):
    rep = js(label + ".json")
    s = js(label + "-sink.json")
    if rep is None or s is None:
        return None
    cpu0, cpu1 = (read(label + ".cpu") or "0 0").split()
    t0 = float(read(label + ".t0") or 0)
    done = read(label + ".wait") == "ok"
    last, first = s.get("last_message_time"), s.get("first_message_time")
    got = s.get("messages", 0)
    e2e = last - t0 if last and t0 else None
    c = js(label + ".conns") or {}
    r = {"accepted": rep.get("accepted"), "injection_msg_per_s": rep.get("accepted_per_s"),
         "delivered": got, "delivered_all": done,
         "end_to_end_s": round(e2e, 2) if e2e else None,
         "delivered_msg_per_s": round(got / e2e, 1) if e2e and got else None,
         "delivery_window_msg_per_s": round(got / (last - first), 1) if last and first and last > first else None,
         "cpu_s": round(float(cpu1) - float(cpu0), 2),
         "cpu_ms_per_msg": round((float(cpu1) - float(cpu0)) * 1000 / got, 3) if got else None,
         "conns_peak_ss": c.get("peak"), "conns_mean_ss": c.get("mean"),
         "conns_peak_metrics": c.get("metric_peak"), "conns_mean_metrics": c.get("metric_mean"),
         "sink_connections_total": s.get("connections_total"),
         "sink_connections_max": s.get("connections_max"),
         "sink_timeouts": s.get("timeouts")}
    idle = read(label + ".idle")
    if idle is not None:  # outpostd: one process
        idle = int(idle or 0)
        at_peak = c.get("rss_kib_at_peak") or 0
        r.update({"rss_idle_mib": round(idle / 1024, 1),
                  "rss_at_peak_conns_mib": round(at_peak / 1024, 1),
                  "peak_rss_mib": round(int(read(label + ".hwm") or 0) / 1024, 1),
                  "rss_per_conn_kib": round((at_peak - idle) / c["peak"], 1) if c.get("peak") else None,
                  "nofile_limit": int(read(label + ".nofile") or 0),
                  "deferred_log_lines": int(read(label + ".deferred") or 0),
                  "address_lookup_tempfail_lines": int(read(label + ".dnsfail") or 0),
                  "udp_rcvbuf_drops": int(read(label + ".udpdrops") or 0)})
    else:
        m = js(label + ".mem") or {}
        r.update({"peak_rss_mib": round(m.get("peak_rss_kib", 0) / 1024, 1) or None,
                  "peak_pss_mib": round(m.get("peak_pss_kib", 0) / 1024, 1) or None,
                  "peak_procs": m.get("peak_procs"),
                  "pss_per_conn_kib": round(m["peak_pss_kib"] / c["peak"], 1) if c.get("peak") and m.get("peak_pss_kib") else None,
                  "maillog_sent": int(read(label + ".sent") or 0),
                  "maillog_not_sent": int(read(label + ".notsent") or 0)})
    return r
res = {"benchmark": "receivers", "n": n, "size": size, "domains": domains,
       "reply_delay_ms": delay, "postfix_smtp_processes": total,
       "outpost_max_connections": ototal,
       "limits": [l.split() for l in limits.splitlines()],
       "hold_target": hold, "hold_reply_delay_ms": hold_delay, "hold_size": hold_size,
       "script_nofile": nofile,
       "loadavg_before": (read("loadavg") or "").split(),
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "outpost_mx": row("outpost_mx", n), "outpost_routes": row("outpost_routes", n),
       "postfix": row("postfix", n), "hold": row("hold", hold) if hold else None,
       "notes": (read("notes.txt") or "").splitlines()}
p = res["postfix"]
for k in ("outpost_mx", "outpost_routes"):
    o = res[k]
    res["ratio_%s_postfix" % k] = (round(o["delivered_msg_per_s"] / p["delivered_msg_per_s"], 2)
        if o and p and o.get("delivered_msg_per_s") and p.get("delivered_msg_per_s") else None)
json.dump(res, open(os.path.join(out, "receivers.json"), "w"), indent=1)
def cell(r, k, fmt="{}"):
    if r is None or r.get(k) is None:
        return "n/a"
    return fmt.format(r[k])
cols = [("outpost_mx", "Outpost (MX via dnsmasq)"), ("outpost_routes", "Outpost (static routes)"),
        ("postfix", "Postfix 3.7 (transport_maps)")]
L = ["## Realistic receivers: %d messages of %d bytes to %d domains, every reply after %d ms"
     % (n, size, domains, delay), "",
     "| | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---|" * len(cols)]
for key, name, fmt in [
        ("delivered_msg_per_s", "**delivered msg/s** (load start → last at the sink)", "**{:,.0f}**"),
        ("delivery_window_msg_per_s", "msg/s, first → last at the sink", "{:,.0f}"),
        ("injection_msg_per_s", "injection msg/s", "{:,.0f}"),
        ("delivered", "delivered", "{}"),
        ("conns_peak_ss", "open connections, peak (ss, sink port)", "{}"),
        ("conns_mean_ss", "open connections, mean while any (ss)", "{}"),
        ("conns_peak_metrics", "open connections, peak (outpost /metrics)", "{:.0f}"),
        ("conns_mean_metrics", "open connections, mean (outpost /metrics)", "{}"),
        ("sink_connections_total", "connections made", "{}"),
        ("cpu_ms_per_msg", "MTA CPU ms per message", "{:.3f}"),
        ("rss_idle_mib", "outpostd RSS idle (MiB)", "{}"),
        ("rss_at_peak_conns_mib", "outpostd RSS at the connection peak (MiB)", "{}"),
        ("rss_per_conn_kib", "RSS per open connection (KiB; (at peak − idle) / peak)", "{}"),
        ("peak_rss_mib", "peak RSS (MiB; Outpost VmHWM, Postfix summed)", "{}"),
        ("peak_pss_mib", "Postfix peak PSS (MiB)", "{}"),
        ("pss_per_conn_kib", "Postfix PSS per open connection (KiB)", "{}"),
        ("peak_procs", "Postfix processes (peak)", "{}"),
        ("address_lookup_tempfail_lines", "outpostd log: address lookup tempfail", "{}"),
        ("udp_rcvbuf_drops", "UDP datagrams dropped (kernel, whole machine)", "{}")]:
    L.append("| %s | " % name + " | ".join(cell(res[c], key, fmt) for c, _ in cols) + " |")
L.append("")
for k, what in (("outpost_mx", "Outpost by MX"), ("outpost_routes", "Outpost by routes")):
    r = res["ratio_%s_postfix" % k]
    L.append("**%s / Postfix delivered msg/s: %s** (goal ≥ 10×)" % (what, "%.2f×" % r if r else "n/a"))
h = res["hold"]
L += ["", "### %d simultaneous outbound connections (%d messages of %d bytes, replies after %d ms)"
      % (hold, hold, hold_size, hold_delay), ""]
if h:
    L += ["| held at once (ss peak) | outpost /metrics peak | outpostd RSS idle → at peak (MiB) | RSS per connection (KiB, goal ≤ 20) | delivered | sink timeouts | fd limit | lookup tempfails | UDP drops |",
          "|---|---|---|---|---|---|---|---|---|",
          "| %s | %s | %s → %s | **%s** | %s of %d | %s | %s | %s | %s |" % (
              cell(h, "conns_peak_ss"), cell(h, "conns_peak_metrics", "{:.0f}"), cell(h, "rss_idle_mib"),
              cell(h, "rss_at_peak_conns_mib"), cell(h, "rss_per_conn_kib"), cell(h, "delivered"), hold,
              cell(h, "sink_timeouts"), cell(h, "nofile_limit"),
              cell(h, "address_lookup_tempfail_lines"), cell(h, "udp_rcvbuf_drops"))]
else:
    L.append("not run")
L += ["", "Limits (domain, max_connections, max_messages_per_connection, per minute): " +
      "; ".join(" ".join(l.split()) for l in limits.splitlines()) +
      ". Postfix: %d smtp processes at most (default_process_limit, the smtp "
      "transport's maxproc; the named providers' transports add their own, and "
      "its connection cache holds a few more open); Outpost: delivery.max_connections "
      "= %d (by default Postfix's process cap: the same footing; both by default the sum of the per-destination limits, so that only those bind). Postfix has the same per-destination concurrency "
      "(initial = limit) and connection reuse count, no per-minute cap. "
      "One outpost-sink listens on every MX address (127.1.x.y). Open "
      "connections are sampled every 0.5 s. RSS per connection counts all "
      "that outpostd grows by under load (queued messages included), so it "
      "overstates. Load average before / after: %s / %s: short runs beside "
      "other work, the rates are noisy; CPU and RSS less so."
      % (total, ototal, " ".join(res["loadavg_before"]), " ".join(res["loadavg_after"]))]
for note in res["notes"]:
    L.append("- note: " + note)
text = "\n".join(L) + "\n"
open(os.path.join(out, "receivers.md"), "w").write(text)
print(text)
EOF
exit $status
