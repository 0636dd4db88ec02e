#!/bin/bash
# t/bench/scan.sh — what does malware scanning cost (called by run.sh)?
# The relay benchmark with scanning off and on in the same run: a fresh
# outpostd per run relaying to outpost-sink (routes to the sink, DNS at a
# dead loopback port), the same load (outpost-load --attachment:
# BENCH_SCAN_N campaign-like messages of a personalized text part and a
# ~30 KB base64 PDF-like attachment, BENCH_SCAN_SESSIONS pipelining
# sessions, after a warm-up of BENCH_SCAN_WARMUP):
#   off     no scan {} block
#   unique  scan { clamd = SOCKET }, every attachment different: no cache
#           hit is possible, every message is streamed to clamd
#   shared  the same, one attachment in every message (a campaign): its
#           verdict is cached after the first scan
# clamd is Debian's clamav-daemon, started here: a temporary config
# (Foreground, LocalSocket in a temp dir) and a DatabaseDirectory holding
# two signatures this script writes (EICAR's MD5 in a .hdb, one body
# signature in a .ndb): no freshclam, no download.  Before the runs, it is
# checked to answer (PING, VERSION, EICAR and the body signature FOUND, a
# clean message OK), and the two load modes are checked against an
# outpost-sink --maildir (one attachment shared by all, or all different;
# clamd calls both clean).  outpost-scan-speed measures the walk + hashes.
# Figures: accepted msg/s, on/off ratios, outpostd and clamd CPU per
# message (procstat.py, from the measured load's start until the sink has
# every message), and the cache hit rate from the daemon's /metrics
# (outpost_scan_cache_lookups_total{result="hit"|"miss"}, deltas over the
# measured load; with outpost_scan_total and outpost_scan_bytes_total: what
# was streamed to clamd per message).
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/scan.json and scan.md.  Loopback only; every process it starts
# is stopped by PID on exit.  About 2 minutes on 2 cores by default.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_SCAN_N:-2000}
SESSIONS=${BENCH_SCAN_SESSIONS:-20}
WARMUP=${BENCH_SCAN_WARMUP:-100}
ATTACH=${BENCH_SCAN_ATTACH_BYTES:-22800}
MAX_TIME=${BENCH_MAX_TIME:-900}
CLAMD=${BENCH_CLAMD:-/usr/sbin/clamd}

work=$(mktemp -d /tmp/outpost-bench-scan.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir
# and clamd's socket.
chmod 711 "$work"
CLAMD_PID='' OPD_PID='' OSINK_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	stop_pid "$OPD_PID" 30
	stop_pid "$OSINK_PID" 5
	stop_pid "$CLAMD_PID" 10
	mkdir -p "$OUT/scan-logs"
	cp "$work"/*.log "$work"/*.json "$work"/*.prom "$OUT/scan-logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "scan: $*" >&2; echo "$*" >>"$work/notes.txt"; }

# clamd ---------------------------------------------------------------------
# The EICAR test file, kept encoded so that no scanner flags this script.
EICAR=$(echo 'WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=' | base64 -d)
BODY_SIG=OUTPOST-SCAN-BENCH-BODY-SIGNATURE
SOCK=$work/clamd/clamd.ctl

# clamd_start: the database and the configuration, then clamd in the
# foreground until its socket answers PING; sets CLAMD_PID.
clamd_start() {
	local d=$work/clamd
	mkdir -p "$d/db" "$d/tmp"
	chmod 711 "$d"
	echo "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature" >"$d/db/outpost-bench.hdb"
	printf 'Outpost.Bench.Body:0:*:%s\n' \
	    "$(printf '%s' "$BODY_SIG" | od -An -tx1 | tr -d ' \n')" >"$d/db/outpost-bench.ndb"
	cat >"$d/clamd.conf" <<EOF
# written by t/bench/scan.sh: a private clamd, its own signatures only
Foreground yes
LocalSocket $SOCK
LocalSocketMode 666
DatabaseDirectory $d/db
TemporaryDirectory $d/tmp
StreamMaxLength 25M
SelfCheck 0
EOF
	"$CLAMD" -c "$d/clamd.conf" >"$work/clamd.log" 2>&1 &
	CLAMD_PID=$!
	for _ in $(seq 300); do
		kill -0 "$CLAMD_PID" 2>/dev/null || return 1
		if [ -S "$SOCK" ] && clamq PING >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# clamq CMD [FILE]: one clamd command on the socket ("z" form); with FILE,
# zINSTREAM of its bytes.  Prints the reply.
clamq() {
	"$PY" - "$SOCK" "$@" <<'PYEOF'
import socket, struct, sys
path, cmd = sys.argv[1], sys.argv[2].encode()
data = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else None
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(path)
s.sendall(b"z" + cmd + b"\0")
if data is not None:
    for i in range(0, len(data), 65536):
        s.sendall(struct.pack("!I", len(data[i:i + 65536])) + data[i:i + 65536])
    s.sendall(struct.pack("!I", 0))
out = b""
while not out.endswith(b"\0"):
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.rstrip(b"\0").decode())
PYEOF
}

# clamd_check: what the script's database finds, into clamd-check.json.
clamd_check() {
	local d=$work/clamd-check ok=true v e b m c
	mkdir -p "$d"
	printf '%s' "$EICAR" >"$d/eicar"
	printf 'Subject: x\r\n\r\nsome text %s more\r\n' "$BODY_SIG" >"$d/body"
	printf 'Subject: y\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--b--\r\n' \
	    "$(printf '%s' "$EICAR" | base64 -w 76)" >"$d/mime"
	printf 'Subject: clean\r\n\r\nnothing here\r\n' >"$d/clean"
	v=$(clamq VERSION) || v=''
	e=$(clamq INSTREAM "$d/eicar") || e=''
	b=$(clamq INSTREAM "$d/body") || b=''
	m=$(clamq INSTREAM "$d/mime") || m=''
	c=$(clamq INSTREAM "$d/clean") || c=''
	case $e in *Eicar-Test-Signature*FOUND) ;; *) ok=false; note "clamd: EICAR not found: $e" ;; esac
	case $b in *Outpost.Bench.Body*FOUND) ;; *) ok=false; note "clamd: body signature not found: $b" ;; esac
	case $m in *Eicar-Test-Signature*FOUND) ;; *) ok=false; note "clamd: base64 EICAR attachment not found: $m" ;; esac
	case $c in *": OK") ;; *) ok=false; note "clamd: clean message not OK: $c" ;; esac
	"$PY" - "$work/clamd-check.json" "$ok" "$v" "$e" "$b" "$m" "$c" <<'PYEOF'
import json, sys
f, ok, v, e, b, m, c = sys.argv[1:]
json.dump({"ok": ok == "true", "version": v, "eicar": e, "body_signature": b,
           "eicar_base64_attachment": m, "clean": c}, open(f, "w"))
PYEOF
	[ "$ok" = true ]
}

# load_check: outpost-load's two modes against outpost-sink --maildir: every
# message a multipart/mixed with a text part and a %PDF attachment; shared
# gives one attachment for all, unique one each; clamd calls them clean.
load_check() {
	local mode port rc=0 dir emls
	for mode in shared unique; do
		port=$(free_port)
		dir=$work/maildir-$mode
		mkdir -p "$dir"
		OSINK_MAILDIR=$dir osink_start "$port" "$work/loadcheck-$mode-stats.json" ||
			{ note "load check: outpost-sink did not start"; return 1; }
		"$LOAD" --host 127.0.0.1 --port "$port" --count 20 --sessions 4 \
		    --pipelining --attachment "$mode" --attachment-size "$ATTACH" \
		    --json >"$work/loadcheck-$mode.json" 2>"$work/loadcheck-$mode-load.log" || rc=1
		osink_wait "$work/loadcheck-$mode-stats.json" 20 30 >/dev/null || rc=1
		stop_pid "$OSINK_PID" 5
		OSINK_PID=
		emls=("$dir"/*.eml)
		clamq INSTREAM "${emls[0]}" >"$work/loadcheck-$mode-clamd.log" || rc=1
	done
	"$PY" - "$work" <<'PYEOF' || rc=1
import email, glob, hashlib, json, os, sys
from email import policy
work = sys.argv[1]
res = {}
for mode in ("shared", "unique"):
    atts, texts, n = set(), set(), 0
    for f in sorted(glob.glob(os.path.join(work, "maildir-" + mode, "*.eml"))):
        msg = email.message_from_bytes(open(f, "rb").read(), policy=policy.default)
        leaves = [p for p in msg.walk() if not p.is_multipart()]
        if msg.get_content_type() != "multipart/mixed" or len(leaves) != 2:
            continue
        pdf = leaves[1].get_payload(decode=True)
        if leaves[1].get_content_type() != "application/pdf" or not pdf.startswith(b"%PDF-"):
            continue
        n += 1
        atts.add(hashlib.sha256(pdf).hexdigest())
        texts.add(leaves[0].get_content())
    clamd = open(os.path.join(work, "loadcheck-%s-clamd.log" % mode)).read().strip()
    res[mode] = {"messages": n, "distinct_attachments": len(atts),
                 "distinct_texts": len(texts), "clamd": clamd}
ok = (res["shared"]["messages"] == 20 and res["shared"]["distinct_attachments"] == 1
      and res["unique"]["messages"] == 20 and res["unique"]["distinct_attachments"] == 20
      and all(r["distinct_texts"] == 20 and r["clamd"].endswith(": OK") for r in res.values()))
res["ok"] = ok
json.dump(res, open(os.path.join(work, "loadcheck.json"), "w"))
sys.exit(0 if ok else 1)
PYEOF
	[ "$rc" = 0 ] || note "load check failed: $(cat "$work/loadcheck.json" 2>/dev/null)"
	return $rc
}

# runs ----------------------------------------------------------------------
# start LABEL SCAN(0|1): a fresh outpostd (data under $work/LABEL) relaying
# to the sink on $SP, metrics on $MPORT; sets OPD_PID, PORT.  Returns 2 when
# outpostd -t refuses the configuration (a scan {} it does not know).
start() {
	local d=$work/$1 scan=''
	PORT=$(free_port)
	MPORT=$(free_port)
	[ "$2" = 1 ] && scan="scan { clamd = \"$SOCK\" }"
	rm -rf "$d"
	mkdir -p "$d"
	relay_conf "$d/outpost.conf" "$d" "$PORT" "$SP" \
	    "metrics { listen = \"127.0.0.1:$MPORT\" }" "$scan"
	cp "$d/outpost.conf" "$work/$1.conf.log"
	if ! "$OUTPOSTD" -t -c "$d/outpost.conf" >"$work/$1-check.log" 2>&1; then
		note "$1: outpostd -t rejects the configuration: $(tail -n 2 "$work/$1-check.log")"
		return 2
	fi
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/$1-outpostd.log" 2>&1 &
	OPD_PID=$!
	wait_port "$PORT" 30 "$OPD_PID" || { note "$1: outpostd did not start"; return 1; }
}

metrics() {
	curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | grep '^outpost_scan_' >"$1" || true
}

# run LABEL SCAN MODE: warm-up, then the measured load; CPU of outpostd and
# of clamd, metrics before and after.
run() {
	local label=$1 mode=$3 rc=0 c0 c1 k0 k1 t0 t1
	stop_pid "$OSINK_PID" 5
	SP=$(free_port)
	osink_start "$SP" "$work/$label-stats.json" || { note "$label: outpost-sink did not start"; return 1; }
	start "$label" "$2" || { rc=$?; stop_pid "$OPD_PID" 10; OPD_PID=; return $rc; }
	largs=(--host 127.0.0.1 --port "$PORT" --pipelining --json --timeout 60
		--from news@sender.test --attachment "$mode" --attachment-size "$ATTACH")
	"$LOAD" "${largs[@]}" --sessions "$SESSIONS" --count "$WARMUP" \
	    --to "warm-%u@sink.test" >"$work/$label-warmup.json" 2>"$work/$label-warmup.log" ||
		note "$label: warm-up exit $?"
	osink_wait "$work/$label-stats.json" "$WARMUP" 120 60 >/dev/null ||
		note "$label: warm-up did not all reach the sink"
	metrics "$work/$label-before.prom"
	c0=$(tree_cpu "$OPD_PID")
	k0=$(tree_cpu "$CLAMD_PID")
	echo "scan: $label: $N messages ($mode attachment), $SESSIONS sessions" >&2
	t0=$EPOCHREALTIME
	"$LOAD" "${largs[@]}" --sessions "$SESSIONS" --count "$N" --max-time "$MAX_TIME" \
	    --to "$label-%u@sink.test" >"$work/$label.json" 2>"$work/$label-load.log" ||
		note "$label: load exit $? (not every message accepted)"
	osink_wait "$work/$label-stats.json" $((WARMUP + N)) "$MAX_TIME" 60 >/dev/null ||
		note "$label: not every message reached the sink"
	t1=$EPOCHREALTIME
	c1=$(tree_cpu "$OPD_PID")
	k1=$(tree_cpu "$CLAMD_PID")
	metrics "$work/$label-after.prom"
	if [ "$2" = 1 ]; then
		"$BUILD/bin/outpost" -c "$work/$label/outpost.conf" scan status --json \
		    >"$work/$label-status.json" 2>"$work/$label-status.log" ||
			note "$label: outpost scan status --json failed: $(head -c 200 "$work/$label-status.log")"
	fi
	echo "$c0 $c1 $k0 $k1 $t0 $t1" >"$work/$label.cpu"
	stop_pid "$OPD_PID" 30
	OPD_PID=
	stop_pid "$OSINK_PID" 5
	OSINK_PID=
}

status=0
command -v curl >/dev/null || { note "curl missing: no metrics"; }
[ -x "$CLAMD" ] || { note "clamd missing (apt-get install clamav-daemon)"; exit 1; }
if [ ! -x "$LOAD" ] || [ ! -x "$OSINK" ] || [ ! -x "$OUTPOSTD" ]; then
	note "build first: $LOAD, $OSINK, $OUTPOSTD"
	exit 1
fi
clamd_start || { note "clamd did not start: $(tail -n 5 "$work/clamd.log")"; exit 1; }
clamd_check || status=1
load_check || status=1
"$BUILD/tools/outpost-scan-speed" --json >"$work/speed.json" 2>"$work/speed.log" ||
	note "outpost-scan-speed failed"
run off 0 shared || status=1
run unique 1 unique || { [ $? = 2 ] && note "scan runs skipped: this outpostd has no scan {} (op-scan not merged)"; status=1; }
[ -f "$work/unique.cpu" ] && { run shared 1 shared || status=1; }

"$PY" - "$work" "$OUT" "$N" "$SESSIONS" "$WARMUP" "$ATTACH" <<'EOF'
import json, os, re, sys
work, out, n, sessions, warmup, attach = sys.argv[1:]
n = int(n)
def read(name):
    try:
        return open(os.path.join(work, name)).read().strip()
    except OSError:
        return None
def prom(name):
    v = {}
    for line in (read(name) or "").splitlines():
        m = re.match(r"^(outpost_scan_[a-zA-Z0-9_]+)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            v[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return v
# A sum over the series whose name and labels hold every word, gauges
# (entries, rates) left out: outpost_scan_cache_lookups_total{result="hit"}.
def summed(d, *words):
    if not d:
        return None
    return sum(x for k, x in d.items() if all(w in k for w in words)
               and k.split("{")[0].endswith("_total"))
def per(v, acc, nd=3):
    return None if v is None or v is False else round(v / acc, nd)
def row(label):
    rep = read(label + ".json")
    if not rep:
        return None
    r = json.loads(rep)
    c0, c1, k0, k1, t0, t1 = map(float, (read(label + ".cpu") or "0 0 0 0 0 0").split())
    s = json.loads(read(label + "-stats.json") or "{}")
    got = s.get("messages", 0) - int(warmup)
    acc = r["accepted"] or 1
    b, a = prom(label + "-before.prom"), prom(label + "-after.prom")
    delta = {k: a[k] - b.get(k, 0) for k in a}
    hits, misses = summed(delta, "cache", "hit"), summed(delta, "cache", "miss")
    res = {"accepted": r["accepted"], "refused": r["rejected_4xx"] + r["rejected_5xx"],
           "accepted_msg_per_s": r["accepted_per_s"], "message_bytes": r["message_bytes"],
           "delivered": got,
           "end_to_end_msg_per_s": round(n / (t1 - t0), 1) if t1 > t0 and got >= n else None,
           "outpostd_cpu_ms_per_msg": round(1000 * (c1 - c0) / acc, 3),
           "clamd_cpu_ms_per_msg": round(1000 * (k1 - k0) / acc, 3),
           "cpu_ms_per_msg": round(1000 * (c1 - c0 + k1 - k0) / acc, 3),
           "cache_hits": hits, "cache_misses": misses,
           "streamed_per_msg": per(summed(delta, "outpost_scan_total", '"clean"') is not None and
                                   summed(delta, "outpost_scan_total", '"clean"') +
                                   summed(delta, "outpost_scan_total", '"infected"'), acc),
           "cached_per_msg": per(summed(delta, "outpost_scan_total", '"cached_'), acc),
           "bytes_streamed_per_msg": per(summed(delta, "outpost_scan_bytes_total"), acc, 0),
           "cache_hit_rate": round(hits / (hits + misses), 4) if hits is not None and misses is not None and hits + misses > 0 else None,
           "scan_metrics_delta": delta,
           "scan_status": json.loads(read(label + "-status.json") or "null") if read(label + "-status.json") else None}
    return res
res = {"benchmark": "scan", "n": n, "sessions": int(sessions), "warmup": int(warmup),
       "attachment_bytes_decoded": int(attach),
       "clamd_check": json.loads(read("clamd-check.json") or "null"),
       "load_check": json.loads(read("loadcheck.json") or "null"),
       "walk_and_hash": json.loads(read("speed.json") or "null"),
       "off": row("off"), "unique": row("unique"), "shared": row("shared"),
       "notes": (read("notes.txt") or "").splitlines()}
o = res["off"]
for k in ("unique", "shared"):
    r = res[k]
    res["ratio_%s_off" % k] = (round(r["accepted_msg_per_s"] / o["accepted_msg_per_s"], 3)
                              if r and o and o["accepted_msg_per_s"] else None)
with open(os.path.join(out, "scan.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")
def cell(r, k, fmt):
    return "n/a" if r is None or r.get(k) is None else fmt.format(r[k])
cols = [("off", "scan off"), ("unique", "scan on, every attachment different"),
        ("shared", "scan on, one shared attachment")]
lines = ["## Scan: %d campaign-like messages (text part + %s-byte attachment, base64), "
         "%s pipelining sessions, after a %s-message warm-up" % (n, attach, sessions, warmup), "",
         "| | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---|" * len(cols)]
for key, name, fmt in [("accepted_msg_per_s", "**accepted msg/s**", "**{:,.0f}**"),
                       ("end_to_end_msg_per_s", "end-to-end msg/s", "{:,.0f}"),
                       ("outpostd_cpu_ms_per_msg", "outpostd CPU ms / message", "{:.3f}"),
                       ("clamd_cpu_ms_per_msg", "clamd CPU ms / message", "{:.3f}"),
                       ("cpu_ms_per_msg", "both, ms / message", "{:.3f}"),
                       ("cache_hit_rate", "cache hit rate (lookups: whole body and leaves)", "{:.1%}"),
                       ("streamed_per_msg", "streamed to clamd, per message", "{:.3f}"),
                       ("cached_per_msg", "answered by the cache alone, per message", "{:.3f}"),
                       ("bytes_streamed_per_msg", "bytes streamed to clamd, per message", "{:,.0f}"),
                       ("accepted", "accepted", "{}"), ("refused", "refused", "{}"),
                       ("delivered", "delivered to the sink", "{}")]:
    lines.append("| %s | " % name + " | ".join(cell(res[c], key, fmt) for c, _ in cols) + " |")
lines += ["", "**on / off, every attachment different: %s; one shared attachment: %s**" % (
    res["ratio_unique_off"] or "n/a", res["ratio_shared_off"] or "n/a"), ""]
w = res["walk_and_hash"]
if w:
    lines.append("Leaf walk + keyed hashes (outpost-scan-speed, one core): %s-byte message, "
                 "walk %s ns, hashes %s ns, both %s ns." % (w["message_bytes"], w["walk_ns"],
                                                          w["hash_ns"], w["walk_and_hash_ns"]))
cc, lc = res["clamd_check"], res["load_check"]
lines.append("clamd (%s) with this script's database: %s. Load modes against outpost-sink: %s." % (
    cc and cc.get("version"), "answers as expected" if cc and cc.get("ok") else "CHECK FAILED",
    "as expected" if lc and lc.get("ok") else "CHECK FAILED"))
lines += ["- note: " + x for x in res["notes"]]
text = "\n".join(lines) + "\n"
open(os.path.join(out, "scan.md"), "w").write(text)
print(text)
EOF
exit $status
