#!/bin/bash
# t/bench/relay.sh — the end-to-end relay benchmark (called by run.sh).
# How fast does mail go through an MTA, from the client's DATA to the
# receiving MX?  The same load (outpost-load, BENCH_SESSIONS pipelining
# sessions, BENCH_N messages of BENCH_SIZE bytes to 50 domains
# d0..d49.sink.test, after a warm-up of BENCH_WARMUP) through, in one run:
#   outpost      build/bin/outpostd, fresh data_dir under /tmp, routing by
#                MX: a dnsmasq of ours on a loopback port answers
#                dN.sink.test MX mx.sink.test, mx.sink.test A 127.0.0.1,
#                and delivery { port } is the sink's; the receiver is
#                outpost-sink (plain)
#   outpost_tls  the same, the sink offering STARTTLS (Outpost's default
#                tls = may takes it)
#   postfix      Postfix 3.7 via peers/postfix.sh, relaying *.sink.test to
#                an outpost-sink (BENCH_PEERS=0 skips it; needs root)
# End to end = N / (the sink's time of the last of the N measured messages
# - the moment the measured load started).
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both), BENCH_RELAY_RUNS (the
# runs, default "outpost outpost_tls postfix").  Writes
# BENCH_OUT/relay.json and relay.md.  Loopback only; every process it starts
# is stopped by PID (or the adapter's stop) on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_N:-20000}
SESSIONS=${BENCH_SESSIONS:-50}
SIZE=${BENCH_SIZE:-4096}
WARMUP=${BENCH_WARMUP:-200}
MAX_TIME=${BENCH_MAX_TIME:-900}
PEERS=${BENCH_PEERS:-1}
DOMAINS=50
PF_ADAPTER=${BENCH_POSTFIX_ADAPTER:-$HERE/peers/postfix.sh}
# The adapter routes only "sink.test"; this makes its transport_maps entry
# (and relay checks) match subdomains too, so dN.sink.test goes to the same
# loopback sink and nothing else is routed anywhere.
PF_SUBDOMAINS="parent_domain_matches_subdomains = debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps,transport_maps"

work=$(mktemp -d /tmp/outpost-bench-relay.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
chmod 755 "$work" # Postfix's unprivileged processes read below it
OPD_PID='' OSINK_PID='' DNS_PID='' PF_W='' RSS_SAMPLER=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	rss_sampler_stop
	stop_pid "$OPD_PID" 30
	if [ -n "$PF_W" ]; then
		"$PF_ADAPTER" stop "$PF_W" >/dev/null 2>&1 || true
	fi
	stop_pid "$OSINK_PID" 5
	stop_pid "$DNS_PID" 5
	mkdir -p "$OUT/relay-logs"
	cp "$work"/*.log "$work"/*.json "$OUT/relay-logs/" 2>/dev/null || true
	[ -f "$work/postfix/maillog" ] && tail -n 200 "$work/postfix/maillog" >"$OUT/relay-logs/postfix-maillog.tail"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "relay: $*" >&2; echo "$*" >>"$work/notes.txt"; }

load_args=(--host 127.0.0.1 --size "$SIZE" --pipelining --json
	--from news@sender.test --to 'rcpt%u@d%d.sink.test' --domains "$DOMAINS"
	--timeout 60)

# measure LABEL PORT STATS ROOT_PID...: warm-up (and wait until the sink has
# it), then the measured load; CPU of the process trees from its start until
# the sink has counted warm-up + N (or the wait gave up), memory during it.
# Leaves LABEL.json (load report), LABEL.t0 (unix time the measured load
# started), LABEL.cpu ("cpu0 cpu1"), LABEL.mem (peaks), LABEL-sink.json (the
# sink's stats at the end of the wait), LABEL.wait ("ok" or "timeout").
measure() {
	local label=$1 port=$2 stats=$3 rc=0 cpu0 cpu1 wsess t0 got
	shift 3
	wsess=$SESSIONS
	[ "$WARMUP" -lt "$wsess" ] && wsess=$WARMUP
	if [ "$WARMUP" -gt 0 ]; then
		"$LOAD" "${load_args[@]}" --port "$port" --sessions "$wsess" \
		    --count "$WARMUP" >"$work/$label-warmup.json" 2>"$work/$label-warmup.log" || rc=$?
		if [ "$rc" != 0 ]; then
			note "$label: warm-up failed (exit $rc): $(cat "$work/$label-warmup.json" "$work/$label-warmup.log")"
			return 1
		fi
		if ! got=$(osink_wait "$stats" "$WARMUP" 60 30); then
			note "$label: only $got of $WARMUP warm-up messages reached the sink"
			return 1
		fi
	fi
	sleep 1
	cpu0=$(tree_cpu "$@")
	rss_sampler_start "$work/$label.mem" "$@"
	echo "relay: $label: $N messages, $SESSIONS sessions, $SIZE bytes, $DOMAINS domains, pipelining" >&2
	t0=$EPOCHREALTIME
	"$LOAD" "${load_args[@]}" --port "$port" --sessions "$SESSIONS" --count "$N" \
	    --max-time "$MAX_TIME" >"$work/$label.json" 2>"$work/$label-load.log" || rc=$?
	if got=$(osink_wait "$stats" $((WARMUP + N)) "$MAX_TIME" 60); then
		echo ok >"$work/$label.wait"
	else
		echo timeout >"$work/$label.wait"
		note "$label: the sink counted $((got - WARMUP)) of $N measured messages, then the wait gave up (BENCH_MAX_TIME $MAX_TIME s, or 60 s without progress)"
	fi
	cpu1=$(tree_cpu "$@")
	rss_sampler_stop
	cp "$stats" "$work/$label-sink.json"
	echo "$t0" >"$work/$label.t0"
	echo "$cpu0 $cpu1" >"$work/$label.cpu"
	if [ ! -s "$work/$label.json" ]; then
		note "$label: outpost-load gave no report (exit $rc): $(cat "$work/$label-load.log")"
		return 1
	fi
	[ "$rc" = 0 ] || note "$label: outpost-load exit $rc (not every message accepted)"
	return 0
}

domains=()
for i in $(seq 0 $((DOMAINS - 1))); do
	domains+=("d$i.sink.test")
done

# ------------------------------------------------------------ outpost
# outpost_run LABEL [OUTPOST-SINK OPTION...]
outpost_run() {
	local label=$1 port sp d hwm rc=0
	shift
	if [ ! -x "$OUTPOSTD" ] || [ ! -x "$OSINK" ]; then
		note "$label: $OUTPOSTD or $OSINK is not built: no Outpost figures"
		return 1
	fi
	if [ -z "$DNS_PID" ]; then
		if ! command -v dnsmasq >/dev/null; then
			note "$label: dnsmasq missing (apt-get install dnsmasq-base): Outpost routes by MX"
			return 1
		fi
		if ! dns_start "$work" 127.0.0.1 "${domains[@]}"; then
			note "$label: dnsmasq did not start: $(tail -n 3 "$work/dnsmasq.err")"
			return 1
		fi
	fi
	port=$(free_port)
	sp=$(free_port)
	d=$work/$label
	mkdir -p "$d"
	cat >"$d/outpost.conf" <<EOF
# written by t/bench/relay.sh: loopback only
data_dir = "$d/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$DNS_PORT" timeout = 1s tries = 2 }
delivery { port = $sp }
${BENCH_OUTPOST_EXTRA_CONF:-}
EOF
	cp "$d/outpost.conf" "$work/$label.conf.log"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/$label-check.log" 2>&1; then
		note "$label: outpostd -t rejects the bench configuration: $(tail -n 3 "$work/$label-check.log")"
		return 1
	fi
	osink_start "$sp" "$work/$label-stats.json" "$@" || { note "$label: outpost-sink did not start: $(tail -n 3 "$work/$label-stats.json.log")"; return 1; }
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/$label-outpostd.log" 2>&1 &
	OPD_PID=$!
	if ! wait_port "$port" 30 "$OPD_PID"; then
		if kill -0 "$OPD_PID" 2>/dev/null; then
			note "$label: outpostd (pid $OPD_PID) did not listen on 127.0.0.1:$port within 30 s"
		else
			wait "$OPD_PID" || rc=$?
			note "$label: outpostd exited (status $rc) before listening"
		fi
		sed 's/^/    outpostd: /' "$work/$label-outpostd.log" | tail -n 20 >&2
		stop_pid "$OPD_PID" 10
		OPD_PID=
		stop_pid "$OSINK_PID" 5
		OSINK_PID=
		return 1
	fi
	measure "$label" "$port" "$work/$label-stats.json" "$OPD_PID" || rc=1
	hwm=$(hwm_kib "$OPD_PID")
	echo "${hwm:-0}" >"$work/$label.hwm"
	stop_pid "$OPD_PID" 30
	OPD_PID=
	stop_pid "$OSINK_PID" 5
	OSINK_PID=
	grep -c ': \(deferred\|bounced\) at ' "$work/$label-outpostd.log" >"$work/$label.deferred" || true
	return $rc
}

# ------------------------------------------------------------ postfix
postfix_run() {
	local lp sp roots sent other
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
	if ! command -v postfix >/dev/null || [ ! -x "$OSINK" ]; then
		note "postfix: Postfix not installed (run.sh installs it when run as root) or $OSINK not built"
		return 1
	fi
	lp=$(free_port)
	sp=$(free_port)
	osink_start "$sp" "$work/postfix-stats.json" || { note "postfix: outpost-sink did not start"; return 1; }
	PF_W=$work/postfix
	mkdir -p "$PF_W"
	chmod 755 "$PF_W"
	if ! POSTFIX_EXTRA_MAIN_CF="$PF_SUBDOMAINS${POSTFIX_EXTRA_MAIN_CF:+
$POSTFIX_EXTRA_MAIN_CF}" "$PF_ADAPTER" start "$PF_W" "$lp" "$sp" 0 0 >"$work/postfix-start.log" 2>&1; then
		note "postfix: adapter start failed: $(tail -n 5 "$work/postfix-start.log")"
		return 1
	fi
	read -r -a roots <<<"$(tr '\n' ' ' <"$PF_W/pids")"
	measure postfix "$lp" "$work/postfix-stats.json" "${roots[@]}" || true
	"$PF_ADAPTER" stop "$PF_W" >/dev/null 2>&1 || true
	stop_pid "$OSINK_PID" 5
	OSINK_PID=
	# Did dN.sink.test really go to the loopback sink (and nothing elsewhere)?
	sent=$(grep -c "to=<rcpt[0-9]*@d[0-9]*\.sink\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$sp,.* status=sent" "$PF_W/maillog" || true)
	other=$(grep ' status=' "$PF_W/maillog" | grep -vc " relay=127\.0\.0\.1\[127\.0\.0\.1\]:$sp,.* status=sent" || true)
	echo "${sent:-0} ${other:-0}" >"$work/postfix.maillog"
	[ "${sent:-0}" -gt 0 ] || note "postfix: its maillog shows no dN.sink.test delivery to the sink 127.0.0.1:$sp (parent_domain_matches_subdomains trick failed?)"
	[ "${other:-0}" = 0 ] || note "postfix: $other maillog deliveries were not 'sent' to the sink: $(grep ' status=' "$PF_W/maillog" | grep -v " relay=127\.0\.0\.1\[127\.0\.0\.1\]:$sp,.* status=sent" | head -n 1)"
	PF_W=
	[ -s "$work/postfix.json" ]
}

cut -d' ' -f1-3 /proc/loadavg >"$work/loadavg"
status=0
# BENCH_RELAY_RUNS: which of the three to run (cluster.sh runs outpost
# alone, with and without a cluster).
RUNS=" ${BENCH_RELAY_RUNS:-outpost outpost_tls postfix} "
case $RUNS in *" outpost "*) outpost_run outpost || status=1 ;; esac
case $RUNS in *" outpost_tls "*) outpost_run outpost_tls --starttls || status=1 ;; esac
case $RUNS in *" postfix "*) postfix_run || status=1 ;; esac

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$SESSIONS" "$SIZE" "$WARMUP" "$DOMAINS" <<'EOF'
import json, os, sys
work, out, n, sessions, size, warmup, domains = sys.argv[1:8]
n, warmup = int(n), int(warmup)
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
    s = json.loads(read(label + "-sink.json") or "{}")
    t0 = float(read(label + ".t0") or 0)
    got = s.get("messages", 0) - warmup
    done = read(label + ".wait") == "ok"
    last = s.get("last_message_time")
    e2e_s = last - t0 if done and last and t0 else None
    peak_kib = int(read(hwm_file) or 0) if hwm_file else m.get("peak_rss_kib", 0)
    conns = s.get("connections_total", 0)
    return {
        "accepted": acc, "count": r["count"], "exit": r["exit"],
        "refused": r["rejected_4xx"] + r["rejected_5xx"], "failed": r["failed"],
        "injection_s": r["elapsed_s"], "injection_msg_per_s": r["accepted_per_s"],
        "delivered": got, "delivered_all": done,
        "end_to_end_s": round(e2e_s, 3) if e2e_s else None,
        "end_to_end_msg_per_s": round(n / e2e_s, 1) if e2e_s else None,
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000": round(1000 * cpu / got, 3) if got > 0 else None,
        "peak_rss_mib": round(peak_kib / 1024, 1) if peak_kib else None,
        "rss_kind": "VmHWM" if hwm_file else "peak of summed VmRSS over the process tree",
        "peak_rss_sampled_mib": round(m["peak_rss_kib"] / 1024, 1) if m.get("peak_rss_kib") else None,
        "peak_pss_mib": round(m["peak_pss_kib"] / 1024, 1) if m.get("peak_pss_kib") else None,
        "peak_procs": m.get("peak_procs"),
        "sink_connections": conns,
        "sink_connections_max": s.get("connections_max"),
        "sink_tls_connections": s.get("tls_connections"),
        "tls_share_pct": round(100.0 * s.get("tls_connections", 0) / conns, 1) if conns else None,
        "load_tool_cpu_s": r["cpu_s"],
        "load_report": r,
    }
res = {"benchmark": "relay", "n": n, "sessions": int(sessions),
       "size": int(size), "warmup": warmup, "domains": int(domains),
       "pipelining": True,
       "loadavg_before": (read("loadavg") or "").split(),
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "outpost": row("outpost", "outpost.hwm"),
       "outpost_tls": row("outpost_tls", "outpost_tls.hwm"),
       "postfix": row("postfix"),
       "notes": (read("notes.txt") or "").splitlines()}
for label in ("outpost", "outpost_tls"):
    if res[label] is not None:
        d = read(label + ".deferred")
        res[label]["deferred_or_bounced_log_lines"] = int(d) if d else None
if res["postfix"] is not None:
    sent, other = (read("postfix.maillog") or "0 0").split()
    res["postfix"]["maillog_sent_to_sink"] = int(sent)
    res["postfix"]["maillog_other_status"] = int(other)
p = res["postfix"]
for label in ("outpost", "outpost_tls"):
    o = res[label]
    res["ratio_%s_postfix" % label] = (
        round(o["end_to_end_msg_per_s"] / p["end_to_end_msg_per_s"], 2)
        if o and p and o["end_to_end_msg_per_s"] and p["end_to_end_msg_per_s"] else None)
with open(os.path.join(out, "relay.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")

def cell(r, k, fmt="{}"):
    if r is None or r.get(k) is None:
        return "n/a"
    return fmt.format(r[k])
cols = [("outpost", "Outpost"), ("outpost_tls", "Outpost, sink with STARTTLS"),
        ("postfix", "Postfix 3.7")]
lines = ["## Relay end to end: %d messages of %s bytes to %s domains, %s "
         "pipelining sessions (after a %d-message warm-up)" % (n, size, domains, sessions, warmup), "",
         "| | " + " | ".join(c[1] for c in cols) + " |",
         "|---|" + "---|" * len(cols)]
for key, name, fmt in [
        ("end_to_end_msg_per_s", "**end-to-end msg/s** (load start → last at the sink)", "**{:,.0f}**"),
        ("end_to_end_s", "end-to-end time (s)", "{:.2f}"),
        ("injection_msg_per_s", "injection msg/s (outpost-load)", "{:,.0f}"),
        ("cpu_s_per_1000", "MTA CPU s per 1,000 messages", "{:.3f}"),
        ("peak_rss_mib", "MTA peak RSS (MiB; Outpost: VmHWM)", "{:.1f}"),
        ("peak_rss_sampled_mib", "MTA peak RSS during the measured load (MiB, sampled)", "{:.1f}"),
        ("peak_pss_mib", "MTA peak PSS (MiB, all processes)", "{:.1f}"),
        ("peak_procs", "MTA processes (peak)", "{}"),
        ("accepted", "accepted", "{}"),
        ("delivered", "delivered to the sink (measured)", "{}"),
        ("refused", "refused", "{}"),
        ("sink_connections", "connections to the sink (with warm-up)", "{}"),
        ("sink_connections_max", "of them at once (peak)", "{}"),
        ("tls_share_pct", "of them with STARTTLS (%)", "{:.1f}"),
        ("load_tool_cpu_s", "load tool CPU s", "{:.2f}")]:
    lines.append("| %s | " % name + " | ".join(cell(res[c], key, fmt) for c, _ in cols) + " |")
lines.append("")
# The goals of the issues: 10x at 4 KB (Rooms), 5x at 100 KB (Scale up);
# none was set for larger messages, whose rate the disk bounds.
goal = ("≥ 10×" if int(size) <= 16384 else
        "≥ 5×" if int(size) <= 200000 else "none set")
for label, what in (("outpost", "Outpost"), ("outpost_tls", "Outpost with STARTTLS to the sink")):
    r = res["ratio_%s_postfix" % label]
    lines.append("**%s / Postfix end to end: %s** (goal: %s)" %
                 (what, "%.2f×" % r if r is not None else "n/a (one side has no figures)",
                  goal))
lines += ["", "End to end: N / (the sink's time of the last of the N measured "
          "messages − the moment the measured load started). Outpost routes "
          "by MX (dnsmasq on loopback: dN.sink.test → mx.sink.test → "
          "127.0.0.1, delivery port = the sink's); Postfix by its "
          "transport_maps (sink.test and, via parent_domain_matches_subdomains, "
          "its subdomains → the sink), without DNS and without TLS. "
          "Receiver: outpost-sink --count-only. CPU covers the MTA's whole "
          "process tree from the start of the measured load until the sink "
          "had every message. Outpost's peak RSS is VmHWM of outpostd "
          "(it includes start-up: the sampled row shows the load alone); "
          "Postfix's the peak of the summed RSS of its processes (PSS is "
          "the fairer figure there). Load average before / after the run: "
          "%s / %s (2-minute runs: other work on the machine shows "
          "there)." % (" ".join(res["loadavg_before"]), " ".join(res["loadavg_after"]))]
if p is not None:
    lines.append("Postfix maillog: %d deliveries of dN.sink.test to the sink, %d "
                 "other delivery statuses." % (p["maillog_sent_to_sink"], p["maillog_other_status"]))
for note in res["notes"]:
    lines.append("- note: " + note)
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "relay.md"), "w") as f:
    f.write(text)
print(text)
EOF
exit $status
