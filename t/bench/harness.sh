# t/bench/harness.sh — one MTA between Postfix's smtp-source and a counting
# shellcheck shell=bash
# sink, started through a peer adapter (t/bench/peers/NAME.sh: start WORKDIR
# LISTEN_PORT SINK_PORT SIGN TLS / stop WORKDIR), so that Outpost and its
# peers are measured by the same load tool, the same sink and the same code.
# Sourced after lib.sh (free_port, sink_start, stop_pid, osink_start,
# osink_wait, PROCSTAT; BUILD for outpost-sink).  Loopback only; everything
# started here is stopped by PID or by the adapter's stop, also when the
# caller is interrupted (harness_stop from its EXIT trap).
#
#   harness_run LABEL ADAPTER SIGN TLS RESULTS
#       1. sanity: a fresh instance relays 5 messages to outpost-sink
#          --maildir; with SIGN=1 python3-dkim checks every signature
#          against the adapter's WORKDIR/dkim.txt (selector "bench",
#          d=sender.test), and a copy with one body byte flipped must fail:
#          RESULTS/LABEL.dkim.json
#       2. measured: a fresh instance and a fresh smtp-sink -c; HARNESS_WARMUP
#          messages (waited for at the sink), then HARNESS_N messages of
#          ~HARNESS_SIZE bytes over HARNESS_SESSIONS smtp-source sessions
#          (-d: many messages per session, -N: every recipient different):
#          RESULTS/LABEL.run1.json (below)
#       Fails when either step fails.  Knobs: HARNESS_N, HARNESS_SESSIONS,
#       HARNESS_SIZE, HARNESS_WARMUP, HARNESS_TIMEOUT (seconds; 30 s without
#       a new message at the sink also ends the wait).
#   harness_stop   stops whatever a harness_run left running
#
# LABEL.run1.json: inj_rate and e2e_rate (msg/s: N / (load start → smtp-source
# exit), N / (load start → the sink has counted warm-up + N)), delivered,
# complete, waited_s, t0 and t_end (unix times of that window), peer_cpu_s
# (utime+stime of the adapter's process trees over the window, reaped
# children included), peer_cpu_per_msg_ms, peer_cpu_by_root, the peaks of
# the trees' summed RSS (every 0.25 s) and PSS (every 1 s) in MB,
# peer_peak_procs, source_cpu_s, sink_cpu_s, harness_cpu_s (the measuring
# process itself), loadavg at the end.

HARNESS_W='' HARNESS_ADAPTER='' HARNESS_SINK=''

harness_stop() {
	if [ -n "$HARNESS_W" ]; then
		"$HARNESS_ADAPTER" stop "$HARNESS_W/mta" >/dev/null 2>&1 || true
	fi
	stop_pid "$HARNESS_SINK" 5
	HARNESS_SINK=
	if [ -n "$HARNESS_W" ]; then
		rm -rf "$HARNESS_W"
		HARNESS_W=
	fi
}

# harness_msg FILE SIZE: a campaign-like message of about SIZE bytes, From
# news@sender.test (the signing domain), lines of 76 characters.
harness_msg() {
	"$PY" - "$1" "$2" <<'PYEOF'
import sys
path, size = sys.argv[1], int(sys.argv[2])
head = ("From: News <news@sender.test>\nTo: <rcpt@sink.test>\n"
        "Subject: Benchmark campaign\nDate: Sat, 05 Dec 2026 12:00:00 +0000\n"
        "Message-ID: <bench@sender.test>\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n\n")
line = ("The quick brown fox jumps over the lazy dog, again and again. " * 2)[:76] + "\n"
body = line * max(1, (size - len(head)) // len(line))
open(path, "w").write(head + body)
PYEOF
}

# harness_instance ADAPTER SIGN TLS SINK_PORT: a fresh instance in
# HARNESS_W/mta; sets HARNESS_LP (its port).
harness_instance() {
	HARNESS_LP=$(free_port)
	mkdir -p "$HARNESS_W/mta"
	chmod 755 "$HARNESS_W" "$HARNESS_W/mta"
	if ! "$1" start "$HARNESS_W/mta" "$HARNESS_LP" "$4" "$2" "$3" \
	    >"$HARNESS_W/start.log" 2>&1; then
		echo "harness: $1 start failed:" >&2
		tail -n 20 "$HARNESS_W/start.log" >&2
		return 1
	fi
}

# harness_source PORT COUNT MSG [OPTION...]: smtp-source, many messages per
# session, From news@sender.test to rcpt@sink.test.
harness_source() {
	local port=$1 count=$2 msg=$3
	shift 3
	smtp-source -c -d "$@" -m "$count" -F "$msg" -f news@sender.test \
	    -t rcpt@sink.test "127.0.0.1:$port" >/dev/null
}

# harness_verify MAILDIR TXT: the DKIM verdict of the sanity run (JSON on
# stdout); fails unless every message carries one valid signature by
# sender.test and a tampered copy fails.
harness_verify() {
	"$PY" - "$1" "$2" <<'PYEOF'
import glob, json, os, sys
d, txt = sys.argv[1], sys.argv[2]
res = {"files": 0, "verified": 0, "failed": 0, "tamper_rejected": None, "errors": []}
try:
    import dkim
except ImportError:
    res["errors"].append("python3-dkim is missing")
    print(json.dumps(res))
    sys.exit(1)
rec = open(txt, "rb").read().strip()
def dnsfunc(name, timeout=5):
    return rec if name.lower().rstrip(b".") == b"bench._domainkey.sender.test" else None
def ok(raw):
    try:
        return dkim.verify(raw, dnsfunc=dnsfunc)
    except dkim.DKIMException:
        return False
first = None
for fn in sorted(glob.glob(os.path.join(d, "*.eml"))):
    res["files"] += 1
    lines = open(fn, "rb").read().split(b"\n")
    while lines and lines[0].startswith(b"X-Sink-"):  # outpost-sink's envelope
        lines.pop(0)
    raw = b"\n".join(lines).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if b"d=sender.test" in raw.replace(b" ", b"") and ok(raw):
        res["verified"] += 1
        first = first or raw
    else:
        res["failed"] += 1
        res["errors"].append(os.path.basename(fn) + ": no valid signature by sender.test")
if first:
    head, _, body = first.partition(b"\r\n\r\n")
    res["tamper_rejected"] = not ok(head + b"\r\n\r\n" + bytes([body[0] ^ 1]) + body[1:])
res["ok"] = res["files"] > 0 and res["verified"] == res["files"] and bool(res["tamper_rejected"])
print(json.dumps(res))
sys.exit(0 if res["ok"] else 1)
PYEOF
}

# harness_measure LISTEN_PORT SINK_OUT SINK_PID MSG OUT ROOT...: the
# measured load (see the header); the warm-up is sent first.
harness_measure() {
	"$PY" - "$PROCSTAT" "$@" <<'PYEOF'
import json, os, re, resource, subprocess, sys, threading, time
procstat_py, lp, sink_out, sink_pid, msg, out = sys.argv[1:7]
roots = [int(p) for p in sys.argv[7:]]
sys.path.insert(0, os.path.dirname(procstat_py))
import procstat
n, sessions = int(os.environ["HARNESS_N"]), int(os.environ["HARNESS_SESSIONS"])
warmup, timeout = int(os.environ["HARNESS_WARMUP"]), float(os.environ["HARNESS_TIMEOUT"])
STALL = 30.0
pos, count = 0, 0
def sink_count():
    # smtp-sink -c rewrites its "mesg=N" counter in place: read what is new
    global pos, count
    with open(sink_out, "rb") as f:
        f.seek(pos)
        new = f.read()
    pos += len(new)
    m = re.findall(rb"mesg=(\d+)", new)
    if m:
        count = int(m[-1])
    return count
def source(count, extra=()):
    return subprocess.Popen(["smtp-source", "-c", "-d", *extra, "-s", str(sessions),
                             "-m", str(count), "-F", msg, "-f", "news@sender.test",
                             "-t", "rcpt@sink.test", "127.0.0.1:" + lp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
def wait_sink(target, limit):
    start = last = time.time()
    seen = -1
    while True:
        c = sink_count()
        now = time.time()
        if c != seen:
            seen, last = c, now
        if c >= target or now - start > limit or now - last > STALL:
            return c, now
        time.sleep(0.01)
res = {"n": n, "sessions": sessions, "warmup": warmup, "errors": []}
if warmup:
    w = source(warmup)
    w.wait()
    if sink_count() < warmup and wait_sink(warmup, 60)[0] < warmup:
        res["errors"].append("warm-up: %d of %d at the sink" % (count, warmup))
peak = {"rss": 0, "pss": 0, "procs": 0}
stop = threading.Event()
def sampler():
    i = 0
    while not stop.is_set():
        rss, pss, k = procstat.mem(roots, i % 4 == 0)
        peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
        peak["procs"] = max(peak["procs"], k)
        i += 1
        stop.wait(0.25)
by_root0 = {r: procstat.cpu([r]) for r in roots}
sink0 = procstat.cpu([int(sink_pid)])
self0 = resource.getrusage(resource.RUSAGE_SELF)
threading.Thread(target=sampler, daemon=True).start()
base = sink_count()
t0 = time.time()
src = source(n, ["-N"])
t_inj, src_cpu = None, 0.0
seen, last = -1, t0
while True:
    if t_inj is None:
        pid, status, ru = os.wait4(src.pid, os.WNOHANG)
        if pid:
            t_inj = time.time()
            src.returncode = os.waitstatus_to_exitcode(status)
            src_cpu = ru.ru_utime + ru.ru_stime
    c, now = sink_count(), time.time()
    if c != seen:
        seen, last = c, now
    if c >= warmup + n:
        break
    if now - t0 > timeout or (t_inj is not None and now - last > STALL):
        res["errors"].append("%d of %d at the sink after %.0f s" % (c - base, n, now - t0))
        break
    time.sleep(0.01)
t_end = time.time()
by_root = {str(r): round(procstat.cpu([r]) - by_root0[r], 2) for r in roots}
sink_cpu = procstat.cpu([int(sink_pid)]) - sink0
stop.set()
if t_inj is None:
    src.wait()
    t_inj = time.time()
self1 = resource.getrusage(resource.RUSAGE_SELF)
delivered = count - base
if src.returncode:
    res["errors"].append("smtp-source exit %s: %s" % (src.returncode,
                         src.stderr.read().decode(errors="replace").strip()[-300:]))
waited = t_end - t0
cpu = sum(by_root.values())
res.update({
    "t0": round(t0, 3), "t_end": round(t_end, 3), "waited_s": round(waited, 3),
    "inj_rate": round(n / (t_inj - t0), 1) if not src.returncode else None,
    "e2e_rate": round(n / waited, 1) if delivered >= n else None,
    "delivered": delivered, "complete": delivered >= n,
    "peer_cpu_s": round(cpu, 2), "peer_cpu_by_root": by_root,
    "peer_cpu_per_msg_ms": round(1000 * cpu / delivered, 3) if delivered > 0 else None,
    "peer_peak_rss_mb": round(peak["rss"] / 1024, 1),
    "peer_peak_pss_mb": round(peak["pss"] / 1024, 1),
    "peer_peak_procs": peak["procs"],
    "source_cpu_s": round(src_cpu, 2), "sink_cpu_s": round(sink_cpu, 2),
    "harness_cpu_s": round(self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime, 2),
    "loadavg": open("/proc/loadavg").read().split()[:3],
})
json.dump(res, open(out, "w"), indent=1)
print("   injection %s msg/s, end-to-end %s msg/s, delivered %d/%d, MTA CPU %.2f s, peak RSS %.1f MB"
      % (res["inj_rate"], res["e2e_rate"], delivered, n, cpu, res["peer_peak_rss_mb"]), file=sys.stderr)
sys.exit(0 if res["complete"] and not res["errors"] else 1)
PYEOF
}

harness_run() {
	local label=$1 adapter=$2 sign=$3 tls=$4 results=$5 sp rc=0 roots
	HARNESS_ADAPTER=$adapter
	HARNESS_W=$(mktemp -d "/tmp/outpost-harness-$label.XXXXXX")
	mkdir -p "$results"
	harness_msg "$HARNESS_W/msg.txt" "${HARNESS_SIZE:-4096}"

	# 1. sanity: five messages kept at the sink, signatures checked
	sp=$(free_port)
	mkdir -p "$HARNESS_W/maildir"
	chmod 777 "$HARNESS_W/maildir"
	OSINK_MAILDIR=$HARNESS_W/maildir osink_start "$sp" "$HARNESS_W/sanity.json" ||
	    { echo "harness: $label: outpost-sink did not start" >&2; harness_stop; return 1; }
	HARNESS_SINK=$OSINK_PID
	harness_instance "$adapter" "$sign" "$tls" "$sp" || { harness_stop; return 1; }
	harness_source "$HARNESS_LP" 5 "$HARNESS_W/msg.txt" -s 1 || rc=1
	osink_wait "$HARNESS_W/sanity.json" 5 30 15 >/dev/null || rc=1
	"$adapter" stop "$HARNESS_W/mta" >/dev/null 2>&1 || true
	stop_pid "$HARNESS_SINK" 5
	HARNESS_SINK=
	if [ "$rc" != 0 ]; then
		echo "harness: $label: the sanity run's 5 messages did not all reach the sink" >&2
		harness_stop
		return 1
	fi
	if [ "$sign" = 1 ]; then
		harness_verify "$HARNESS_W/maildir" "$HARNESS_W/mta/dkim.txt" >"$results/$label.dkim.json" || rc=1
		echo "harness: $label: DKIM check: $(cat "$results/$label.dkim.json")" >&2
		[ "$rc" = 0 ] || { harness_stop; return 1; }
	fi
	rm -rf "$HARNESS_W/mta"

	# 2. the measured run, on fresh instances of the MTA and the sink
	sp=$(free_port)
	sink_start "$sp" "$HARNESS_W/sink.out" ||
	    { echo "harness: $label: smtp-sink did not start" >&2; harness_stop; return 1; }
	HARNESS_SINK=$SINK_PID
	harness_instance "$adapter" "$sign" "$tls" "$sp" || { harness_stop; return 1; }
	read -r -a roots <<<"$(tr '\n' ' ' <"$HARNESS_W/mta/pids")"
	echo "harness: $label: ${HARNESS_N:-20000} messages, ${HARNESS_SESSIONS:-20} smtp-source sessions" >&2
	HARNESS_N=${HARNESS_N:-20000} HARNESS_SESSIONS=${HARNESS_SESSIONS:-20} \
	    HARNESS_WARMUP=${HARNESS_WARMUP:-200} HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-600} \
	    harness_measure "$HARNESS_LP" "$HARNESS_W/sink.out" "$HARNESS_SINK" \
	    "$HARNESS_W/msg.txt" "$results/$label.run1.json" "${roots[@]}" || rc=1
	[ -f "$HARNESS_W/mta/maillog" ] && tail -n 100 "$HARNESS_W/mta/maillog" >"$results/$label.maillog.tail"
	harness_stop
	return $rc
}
