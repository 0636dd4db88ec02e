#!/bin/bash
# t/bench/signing.sh — what does DKIM signing at submission cost? (called by
# run.sh).  In one run:
#   1. openssl speed -seconds 3 rsa2048 ed25519: signatures per second on
#      one core, the yardstick for the signer.  Then outpost-dkim-speed
#      (t/bench/dkim_speed.c): the signer alone (parse + body hash + sign)
#      per CPU-second, RSA-2048 and Ed25519, against a bare RSA signature
#      and libopendkim (the unit tests' dkim_oracle, when built).
#   2. Acceptance, the load of acceptance.sh (outpost-load, BENCH_SESSIONS
#      pipelining sessions, BENCH_N messages of BENCH_SIZE bytes From
#      news@sender.test after a warm-up of BENCH_WARMUP) into outpostd (fresh
#      data_dir under /tmp, relay_host and routes to a loopback outpost-sink,
#      DNS on a dead loopback port), four times: unsigned, RSA-2048,
#      Ed25519, RSA-2048 + Ed25519, the keys made by `outpost dkim keygen`;
#      BENCH_SIGNING_ROUNDS rounds (3) of the four in turn, medians reported.
#      Before them, a 5-message sanity run per kind on a separate instance
#      of the same configuration keeps the messages (outpost-sink --maildir)
#      and python3-dkim verifies every signature against the generated TXT
#      records (no DNS); a row whose signatures do not verify is dropped.
#      Signing CPU = CPU of a signed run − CPU of the unsigned run of the
#      same round (a difference, per 1,000 messages).  The sink's stats also give each
#      row's end-to-end rate (as relay.sh), so the RSA row is the pipelined
#      end-to-end figure.
#   3. End to end through the project's harness (harness.sh), RSA-2048:
#      peers/outpost.sh and Postfix + OpenDKIM (peers/postfix.sh), the same
#      smtp-source load over BENCH_HARNESS_SESSIONS sessions, each sanity
#      run's signatures checked (BENCH_PEERS=0 skips Postfix; it needs
#      root); and Outpost unsigned in the same harness, for reference.
#      /proc/stat is sampled meanwhile, to show what else the machine was
#      doing.
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/signing.json and signing.md.  Loopback only; every process it
# starts is stopped by PID (harness_stop stops the adapters) on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
# shellcheck source-path=SCRIPTDIR source=harness.sh
. "$HERE/harness.sh"
bench_init
OUTPOST_CLI=$(dirname "$OUTPOSTD")/outpost
N=${BENCH_N:-20000}
SESSIONS=${BENCH_SESSIONS:-50}
SIZE=${BENCH_SIZE:-4096}
WARMUP=${BENCH_WARMUP:-200}
MAX_TIME=${BENCH_MAX_TIME:-900}
PEERS=${BENCH_PEERS:-1}
HSESSIONS=${BENCH_HARNESS_SESSIONS:-20}
ROUNDS=${BENCH_SIGNING_ROUNDS:-3}
SANITY_N=5
KINDS="none rsa ed25519 dual"

mkdir -p "$OUT"
work=$(mktemp -d /tmp/outpost-bench-signing.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
chmod 755 "$work" # Postfix's unprivileged processes read below it
KEYS=$work/keys
OPD_PID='' OSINK_PID='' RSS_SAMPLER='' MS_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	rss_sampler_stop
	harness_stop
	stop_pid "$MS_PID" 5
	stop_pid "$OPD_PID" 30
	stop_pid "$OSINK_PID" 5
	mkdir -p "$OUT/signing-logs"
	cp "$work"/*.log "$work"/*.json "$work"/*.txt "$work"/*.metrics? "$OUT/signing-logs/" 2>/dev/null || true
	cp "$work"/harness/*.json "$work"/harness/*.tail "$OUT/signing-logs/" 2>/dev/null || true
	for m in "$work"/sanity-*/maildir; do # the signed messages python3-dkim checked
		[ -d "$m" ] || continue
		mkdir -p "$OUT/signing-logs/$(basename "$(dirname "$m")")"
		cp -r "$m" "$OUT/signing-logs/$(basename "$(dirname "$m")")/"
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "signing: $*" >&2; echo "$*" >>"$work/notes.txt"; }

# machine_jiffies: "BUSY TOTAL" clock ticks of all CPUs since boot
# (/proc/stat; idle and iowait are not busy).
machine_jiffies() {
	local _c u ni sy id io irq sirq st _rest
	read -r _c u ni sy id io irq sirq st _rest </proc/stat
	echo "$((u + ni + sy + irq + sirq + st)) $((u + ni + sy + id + io + irq + sirq + st))"
}

load_args=(--host 127.0.0.1 --size "$SIZE" --pipelining --json
	--from news@sender.test --to 'rcpt%u@sink.test' --timeout 60)

# keys_make: one RSA-2048 (selector s1) and one Ed25519 (selector e1) key
# for sender.test, and their bare TXT values, under KEYS.
keys_make() {
	mkdir -p "$KEYS"
	if [ ! -x "$OUTPOST_CLI" ]; then
		note "keys: $OUTPOST_CLI is not built: no signed rows"
		return 1
	fi
	if ! "$OUTPOST_CLI" dkim keygen sender.test s1 --rsa 2048 --key "$KEYS/rsa.key" \
	    --txt "$KEYS/rsa.txt" >"$work/keygen.log" 2>&1 ||
	    ! "$OUTPOST_CLI" dkim keygen sender.test e1 --ed25519 --key "$KEYS/ed.key" \
	    --txt "$KEYS/ed.txt" >>"$work/keygen.log" 2>&1; then
		note "keys: outpost dkim keygen failed: $(tail -n 3 "$work/keygen.log")"
		return 1
	fi
	cp "$KEYS/rsa.txt" "$work/dkim-rsa.txt"
	cp "$KEYS/ed.txt" "$work/dkim-ed25519.txt"
}

# conf_write FILE DATA_DIR LISTEN_PORT SINK_PORT KIND [METRICS_PORT]: the
# configuration of acceptance.sh plus the dkim block of KIND (none, rsa,
# ed25519, dual); the metrics listener on METRICS_PORT, or none (its
# default, a fixed port, would clash with any other outpostd on the box).
conf_write() {
	local f=$1 dd=$2 lp=$3 sp=$4 kind=$5 mp=${6:-} dns dkim=''
	dns=$(free_port) # nothing listens there: no lookup can leave the box
	case "$kind" in
	# unsigned mail from sender.test is not aligned: its DMARC lookup would
	# go to the dead DNS port and end in 451, so the check is off there
	none) dkim='dmarc { check = false }' ;;
	rsa) dkim="dkim \"sender.test\" { selector = \"s1\" rsa_key = \"$KEYS/rsa.key\" }" ;;
	ed25519) dkim="dkim \"sender.test\" { ed25519_selector = \"e1\" ed25519_key = \"$KEYS/ed.key\" }" ;;
	dual) dkim="dkim \"sender.test\" { selector = \"s1\" rsa_key = \"$KEYS/rsa.key\" ed25519_selector = \"e1\" ed25519_key = \"$KEYS/ed.key\" }" ;;
	esac
	cat >"$f" <<EOF
# written by t/bench/signing.sh ($kind): loopback only
data_dir = "$dd"
listener "127.0.0.1:$lp" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$dns" timeout = 1s tries = 1 }
delivery { relay_host = "127.0.0.1:$sp" }
route "sink.test" { host = "127.0.0.1:$sp" }
route "sender.test" { host = "127.0.0.1:$sp" }
metrics { listen = "${mp:+127.0.0.1:$mp}" }
$dkim
${BENCH_OUTPOST_EXTRA_CONF:-}
EOF
}

# metrics_get PORT FILE: outpostd's /metrics (Prometheus text) into FILE,
# straight to 127.0.0.1 (no proxy from the environment).
metrics_get() {
	"$PY" - "$1" "$2" <<'PYEOF' || : >"$2"
import sys, urllib.request
o = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with open(sys.argv[2], "wb") as f:
    f.write(o.open("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read())
PYEOF
}

# metric FILE NAME: the value of the unlabelled sample NAME (empty if none).
metric() {
	awk -v n="$2" '$1 == n { print $2; exit }' "$1" 2>/dev/null
}

# opd_start LABEL CONF PORT LOG: outpostd -t, then outpostd; sets OPD_PID and
# returns once it listens.
opd_start() {
	local label=$1 conf=$2 port=$3 log=$4 rc=0
	if ! "$OUTPOSTD" -t -c "$conf" >"$log" 2>&1; then
		note "$label: outpostd -t rejects the bench configuration: $(tail -n 3 "$log")"
		return 1
	fi
	"$OUTPOSTD" -c "$conf" >"$log" 2>&1 &
	OPD_PID=$!
	if ! wait_port "$port" 30 "$OPD_PID"; then
		if kill -0 "$OPD_PID" 2>/dev/null; then
			note "$label: outpostd (pid $OPD_PID) did not listen on 127.0.0.1:$port within 30 s"
		else
			wait "$OPD_PID" || rc=$?
			note "$label: outpostd exited (status $rc) before listening"
		fi
		sed 's/^/    outpostd: /' "$log" | tail -n 20 >&2
		stop_pid "$OPD_PID" 10
		OPD_PID=
		return 1
	fi
}

# dkim_verify DIR KIND: python3-dkim verifies every signature of the
# messages in DIR (outpost-sink --maildir) against the generated TXT
# records; KIND says which signatures each must carry (none: no
# DKIM-Signature at all).  A copy of the first signed message with one body
# byte changed must fail (the verifier is not a rubber stamp).  Prints a JSON
# verdict; fails unless all SANITY_N messages pass.
dkim_verify() {
	"$PY" - "$1" "$2" "$SANITY_N" "$KEYS/rsa.txt" "$KEYS/ed.txt" <<'PYEOF'
import glob, json, os, re, sys
d, kind, want_n, rsa_txt, ed_txt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
want = {"none": [], "rsa": ["rsa-sha256"], "ed25519": ["ed25519-sha256"],
        "dual": ["ed25519-sha256", "rsa-sha256"]}[kind]
res = {"kind": kind, "want": want, "files": 0, "verified": 0, "failed": 0,
       "tamper_rejected": None, "errors": []}
try:
    import dkim
except ImportError:
    res["errors"].append("python3-dkim is missing (apt-get install python3-dkim python3-nacl)")
    print(json.dumps(res))
    sys.exit(1)
recs = {}
for sel, path in (("s1", rsa_txt), ("e1", ed_txt)):
    try:
        recs[("%s._domainkey.sender.test." % sel).encode()] = open(path, "rb").read().strip()
    except OSError:
        pass
def dnsfunc(name, timeout=5):
    name = name.lower()
    return recs.get(name if name.endswith(b".") else name + b".")
def verify_all(raw):
    obj = dkim.DKIM(raw)
    sigs = [v for k, v in obj.headers if k.lower() == b"dkim-signature"]
    tags = [dkim.util.parse_tag_value(re.sub(rb"\s+", b"", s)) for s in sigs]
    algs = sorted(t.get(b"a", b"?").decode() for t in tags)
    doms = set(t.get(b"d", b"?").decode() for t in tags)
    oks = []
    for i in range(len(sigs)):
        try:
            oks.append(bool(obj.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:  # e.g. "body hash mismatch"
            oks.append(False)
    return algs, doms, oks
first_signed = None
for fn in sorted(glob.glob(os.path.join(d, "*.eml"))):
    res["files"] += 1
    lines = open(fn, "rb").read().split(b"\n")
    while lines and lines[0].startswith(b"X-Sink-"):  # outpost-sink's envelope line
        lines.pop(0)
    raw = b"\n".join(lines).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    try:
        algs, doms, oks = verify_all(raw)
    except Exception as e:  # a malformed signature is a failure, not a crash
        res["failed"] += 1
        res["errors"].append("%s: %s" % (os.path.basename(fn), e))
        continue
    if algs == want and all(oks) and (not want or doms == {"sender.test"}):
        res["verified"] += 1
        if want and first_signed is None:
            first_signed = raw
    else:
        res["failed"] += 1
        res["errors"].append("%s: signatures %s (d=%s) verified %s, want %s"
                             % (os.path.basename(fn), algs, sorted(doms), oks, want))
if first_signed is not None:
    head, _, body = first_signed.partition(b"\r\n\r\n")
    body = bytes([body[0] ^ 0x01]) + body[1:]
    _, _, oks = verify_all(head + b"\r\n\r\n" + body)
    res["tamper_rejected"] = not any(oks)
good = (res["files"] == want_n and res["verified"] == want_n
        and (not want or res["tamper_rejected"]))
res["ok"] = good
print(json.dumps(res))
sys.exit(0 if good else 1)
PYEOF
}

# sanity_run KIND: a separate outpostd with KIND's configuration relays
# SANITY_N messages to an outpost-sink that keeps them; dkim_verify checks
# them.  Leaves KIND-dkim.json.
sanity_run() {
	local kind=$1 lp sp d=$work/sanity-$1 got rc=0
	lp=$(free_port)
	sp=$(free_port)
	mkdir -p "$d"
	conf_write "$d/outpost.conf" "$d/var" "$lp" "$sp" "$kind"
	"$OSINK" --listen "127.0.0.1:$sp" --maildir "$d/maildir" --stats "$d/stats.json" \
	    --ready-file "$d/ready" >"$work/sanity-$kind-sink.log" 2>&1 &
	OSINK_PID=$!
	for _ in $(seq 200); do
		[ -s "$d/ready" ] && break
		sleep 0.05
	done
	if [ ! -s "$d/ready" ]; then
		note "$kind: sanity: outpost-sink --maildir did not start: $(tail -n 3 "$work/sanity-$kind-sink.log")"
		stop_pid "$OSINK_PID" 5
		OSINK_PID=
		return 1
	fi
	opd_start "$kind sanity" "$d/outpost.conf" "$lp" "$work/sanity-$kind-outpostd.log" || rc=1
	if [ "$rc" = 0 ]; then
		"$LOAD" "${load_args[@]}" --port "$lp" --sessions 1 --count "$SANITY_N" \
		    >"$work/sanity-$kind-load.json" 2>"$work/sanity-$kind-load.log" || rc=$?
		[ "$rc" = 0 ] || note "$kind: sanity: outpost-load exit $rc"
		got=$(osink_wait "$d/stats.json" "$SANITY_N" 30 15) ||
		    { note "$kind: sanity: only $got of $SANITY_N messages reached the sink"; rc=1; }
	fi
	stop_pid "$OPD_PID" 30
	OPD_PID=
	stop_pid "$OSINK_PID" 5
	OSINK_PID=
	[ "$rc" = 0 ] || return 1
	if ! dkim_verify "$d/maildir" "$kind" >"$work/$kind-dkim.json"; then
		note "$kind: SIGNATURES DO NOT VERIFY: row dropped: $(cat "$work/$kind-dkim.json")"
		return 1
	fi
	echo "signing: $kind: sanity: $(cat "$work/$kind-dkim.json")" >&2
}

# row_run KIND TAG: the measured acceptance load of KIND on a fresh
# instance (files TAG.*).  CPU of outpostd's tree is read when the load
# starts (cpu0), when it ends (cpu1) and when the sink has counted warm-up +
# N (cpu2), user and system time at cpu0 and cpu2; /metrics before and
# after (signatures made, commits); the machine's busy ticks and the sink's
# CPU over the load show whether the two cores were saturated (then a rate
# falls with every extra CPU µs).  Leaves TAG.json (load report), TAG.cpu,
# TAG.utst, TAG.metrics0/1, TAG.sigs, TAG.machine, TAG.mem, TAG.hwm, TAG.t0,
# TAG-sink.json, TAG.wait, TAG.loadavg, TAG-outpostd.log.
row_run() {
	local kind=$1 tag=$2 lp sp mp d=$work/$2 rc=0 wsess got cpu0 cpu1 cpu2 t0 hwm
	local scpu0 scpu1 mj0 mj1 us0 want sigs
	lp=$(free_port)
	sp=$(free_port)
	mp=$(free_port)
	mkdir -p "$d"
	conf_write "$d/outpost.conf" "$d/var" "$lp" "$sp" "$kind" "$mp"
	cp "$d/outpost.conf" "$work/$tag.conf.log"
	osink_start "$sp" "$work/$tag-stats.json" ||
	    { note "$tag: outpost-sink did not start: $(tail -n 3 "$work/$tag-stats.json.log")"; return 1; }
	if ! opd_start "$tag" "$d/outpost.conf" "$lp" "$work/$tag-outpostd.log"; then
		stop_pid "$OSINK_PID" 5
		OSINK_PID=
		return 1
	fi
	cut -d' ' -f1-3 /proc/loadavg >"$work/$tag.loadavg"
	wsess=$SESSIONS
	[ "$WARMUP" -lt "$wsess" ] && wsess=$WARMUP
	if [ "$WARMUP" -gt 0 ]; then
		"$LOAD" "${load_args[@]}" --port "$lp" --sessions "$wsess" \
		    --count "$WARMUP" >"$work/$tag-warmup.json" 2>"$work/$tag-warmup.log" || rc=$?
		if [ "$rc" != 0 ]; then
			note "$tag: warm-up failed (exit $rc): $(cat "$work/$tag-warmup.json" "$work/$tag-warmup.log")"
		elif ! got=$(osink_wait "$work/$tag-stats.json" "$WARMUP" 60 30); then
			note "$tag: only $got of $WARMUP warm-up messages reached the sink"
			rc=1
		fi
	fi
	if [ "$rc" = 0 ]; then
		sleep 1
		metrics_get "$mp" "$work/$tag.metrics0"
		cpu0=$(tree_cpu "$OPD_PID")
		us0=$(proc_ut_st "$OPD_PID")
		scpu0=$(tree_cpu "$OSINK_PID")
		mj0=$(machine_jiffies)
		rss_sampler_start "$work/$tag.mem" "$OPD_PID"
		echo "signing: $tag: $N messages, $SESSIONS sessions, $SIZE bytes, pipelining" >&2
		t0=$EPOCHREALTIME
		"$LOAD" "${load_args[@]}" --port "$lp" --sessions "$SESSIONS" --count "$N" \
		    --max-time "$MAX_TIME" >"$work/$tag.json" 2>"$work/$tag-load.log" || rc=$?
		mj1=$(machine_jiffies)
		cpu1=$(tree_cpu "$OPD_PID")
		scpu1=$(tree_cpu "$OSINK_PID")
		echo "$mj0 $mj1 $scpu0 $scpu1" >"$work/$tag.machine"
		if got=$(osink_wait "$work/$tag-stats.json" $((WARMUP + N)) "$MAX_TIME" 60); then
			echo ok >"$work/$tag.wait"
		else
			echo timeout >"$work/$tag.wait"
			note "$tag: the sink counted $((got - WARMUP)) of $N measured messages, then the wait gave up"
		fi
		cpu2=$(tree_cpu "$OPD_PID")
		echo "$us0 $(proc_ut_st "$OPD_PID")" >"$work/$tag.utst"
		rss_sampler_stop
		cp "$work/$tag-stats.json" "$work/$tag-sink.json"
		echo "$t0" >"$work/$tag.t0"
		echo "$cpu0 $cpu1 $cpu2" >"$work/$tag.cpu"
		hwm=$(hwm_kib "$OPD_PID")
		echo "${hwm:-0}" >"$work/$tag.hwm"
		metrics_get "$mp" "$work/$tag.metrics1"
		# Every measured message signed, not only the sanity run's five?
		case "$kind" in none) want=0 ;; dual) want=$((2 * N)) ;; *) want=$N ;; esac
		sigs=$(metric "$work/$tag.metrics1" outpost_dkim_signatures_total)
		if [ -n "$sigs" ]; then
			sigs=$((sigs - $(metric "$work/$tag.metrics0" outpost_dkim_signatures_total)))
			echo "$sigs $want" >"$work/$tag.sigs"
			if [ "$sigs" != "$want" ]; then
				note "$tag: SIGNATURE COUNT WRONG: outpost_dkim_signatures_total grew by $sigs during the load, not $want"
				echo bad >"$work/$tag.sigbad"
			fi
		else
			note "$tag: no outpost_dkim_signatures_total from 127.0.0.1:$mp/metrics: signatures not counted"
		fi
		[ "$rc" = 0 ] || note "$tag: outpost-load exit $rc (not every message accepted)"
		rc=0
		[ -f "$work/$tag.sigbad" ] && rc=1
		if [ ! -s "$work/$tag.json" ]; then
			note "$tag: outpost-load gave no report: $(cat "$work/$tag-load.log")"
			rc=1
		fi
	fi
	stop_pid "$OPD_PID" 30
	OPD_PID=
	stop_pid "$OSINK_PID" 5
	OSINK_PID=
	rm -rf "${d:?}/var" # the queue: up to N × SIZE per row
	return $rc
}

# proc_ut_st PID: "UTIME STIME" of one process (all its threads), clock
# ticks: is what signing adds user time (the crypto) or system time (more
# commits, more writes)?
proc_ut_st() {
	local st f
	st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "0 0"; return; }
	read -r -a f <<<"${st##*) }" # f[0] is field 3 (state): utime is 14
	echo "${f[11]} ${f[12]}"
}

# machine_sampler FILE: until killed, "UNIX-TIME BUSY TOTAL" every 0.5 s, so
# that the report can tell how busy the machine was during a harness run
# (whose window it knows only from the run's JSON).
machine_sampler() {
	while :; do
		echo "$EPOCHREALTIME $(machine_jiffies)"
		sleep 0.5
	done >"$1"
}

# e2e_run LABEL ADAPTER [SIGN]: harness.sh's run of ADAPTER, RSA signing
# (SIGN=1, the sanity run's signatures checked) or SIGN=0 without.  Its
# results: harness/LABEL.run1.json, harness/LABEL.dkim.json.
e2e_run() {
	local label=$1 adapter=$2 sign=${3:-1} rc=0
	OUTPOSTD=$OUTPOSTD HARNESS_N=$N HARNESS_SESSIONS=$HSESSIONS HARNESS_SIZE=$SIZE \
	    HARNESS_WARMUP=$WARMUP HARNESS_TIMEOUT=$MAX_TIME \
	    harness_run "$label" "$adapter" "$sign" 0 "$work/harness" 2>"$work/$label-harness.log" || rc=$?
	sed 's/^/    /' "$work/$label-harness.log" >&2
	if [ "$rc" != 0 ]; then
		note "$label: harness run failed: $(grep -m 1 -i 'fail\|error\|did not' "$work/$label-harness.log" || tail -n 1 "$work/$label-harness.log")"
	fi
	[ -s "$work/harness/$label.run1.json" ] && [ "$rc" = 0 ]
}

status=0
cut -d' ' -f1-3 /proc/loadavg >"$work/loadavg"
for tool in "$LOAD" "$OSINK" "$OUTPOSTD"; do
	if [ ! -x "$tool" ]; then
		note "$tool is not built: no Outpost figures"
		status=1
	fi
done

# ------------------------------------------------------------ openssl
# openssl_speed WHEN: before and after the acceptance rows (the machine's
# other load moves a single-core figure too); the report uses the mean.
openssl_speed() {
	echo "signing: openssl speed -seconds 3 rsa2048 ed25519 (one core, $1)" >&2
	openssl speed -seconds 3 rsa2048 ed25519 >"$work/openssl-speed-$1.log" 2>&1 ||
	    { note "openssl speed ($1) failed: $(tail -n 2 "$work/openssl-speed-$1.log")"; return 1; }
}
openssl_speed before || status=1

# ------------------------------------------------------------ the signer alone
SIGNER_SPEED=$BUILD/tools/outpost-dkim-speed
if [ -x "$SIGNER_SPEED" ]; then
	echo "signing: outpost-dkim-speed (the signer alone, one core)" >&2
	oracle=()
	[ -x "$BUILD/tests/dkim_oracle" ] && oracle=(--oracle "$BUILD/tests/dkim_oracle")
	"$SIGNER_SPEED" --json "${oracle[@]}" "$HERE/../unit/dkim_corpus/basic.eml" \
	    >"$work/dkim-speed.json" 2>"$work/dkim-speed.err" ||
	    { note "outpost-dkim-speed failed: $(tail -n 2 "$work/dkim-speed.err")"; status=1; }
else
	note "$SIGNER_SPEED missing (cmake --build $BUILD): no signer-alone figures"
	status=1
fi

# ------------------------------------------------------------ acceptance
# Every kind is checked once, then ROUNDS rounds of the four rows in turn,
# so that drift in the machine's other load hits every kind alike.
if [ "$status" = 0 ]; then
	keys_make || status=1
	kinds=()
	for kind in $KINDS; do
		if [ "$kind" != none ] && [ ! -s "$KEYS/rsa.key" ]; then
			note "$kind: no keys: no figures"
			status=1
		elif sanity_run "$kind"; then
			kinds+=("$kind")
		else
			status=1
		fi
	done
	for round in $(seq "$ROUNDS"); do
		for kind in "${kinds[@]}"; do
			row_run "$kind" "$kind.r$round" || status=1
		done
	done
	openssl_speed after || status=1
fi

# ------------------------------------------------------------ end to end
if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
	note "harness: smtp-source or smtp-sink (postfix package) missing: no end-to-end rows"
	status=1
else
	machine_sampler "$work/harness-machine.txt" &
	MS_PID=$!
	if [ -x "$OUTPOSTD" ]; then
		e2e_run outpost-dkim "$HERE/peers/outpost.sh" || status=1
		# the same without signing: what the signature costs in this harness
		e2e_run outpost "$HERE/peers/outpost.sh" 0 || status=1
	fi
	if [ "$PEERS" = 0 ]; then
		note "postfix-dkim: skipped (BENCH_PEERS=0)"
	elif [ "$(id -u)" != 0 ]; then
		note "postfix-dkim: skipped (needs root: Postfix and OpenDKIM drop privileges)"
		status=1
	elif ! command -v postfix >/dev/null || ! command -v opendkim >/dev/null; then
		note "postfix-dkim: postfix or opendkim is not installed (run.sh installs them when run as root)"
		status=1
	else
		e2e_run postfix-dkim "$HERE/peers/postfix.sh" || status=1
	fi
	stop_pid "$MS_PID" 5
	MS_PID=
fi

# ------------------------------------------------------------ report
"$PY" - "$work" "$OUT" "$N" "$SESSIONS" "$SIZE" "$WARMUP" "$HSESSIONS" "$KINDS" "$SANITY_N" "$ROUNDS" <<'EOF'
import json, os, re, statistics, sys
work, out, n, sessions, size, warmup, hsessions, kinds, sanity_n, rounds = sys.argv[1:11]
n, warmup, kinds, rounds = int(n), int(warmup), kinds.split(), int(rounds)
def read(name):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read().strip()
    except OSError:
        return None
def rnd(v, d):
    return round(v, d) if v is not None else None

# openssl speed: "rsa 2048 bits 0.000385s 0.000020s 2597.7 49610.6" and
# " 253 bits EdDSA (Ed25519) 0.0000s 0.0001s 22858.4 8834.2"; before and
# after the rows, the mean of the two used.
speed = {}
for when in ("before", "after"):
    txt = read("openssl-speed-%s.log" % when) or ""
    m = re.search(r"^rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", txt, re.M)
    if m:
        speed["rsa2048_sign_per_s_" + when] = float(m.group(1))
    m = re.search(r"EdDSA \(Ed25519\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", txt, re.M)
    if m:
        speed["ed25519_sign_per_s_" + when] = float(m.group(1))
for k in ("rsa2048", "ed25519"):
    v = [speed[x] for x in (k + "_sign_per_s_before", k + "_sign_per_s_after") if x in speed]
    s = sum(v) / len(v) if v else None
    speed[k + "_sign_per_s"] = rnd(s, 1)
    speed[k + "_ms_per_sign"] = round(1000 / s, 4) if s else None

def run(tag):
    rep = read(tag + ".json")
    if not rep:
        return None
    r = json.loads(rep)
    c0, c1, c2 = (float(x) for x in (read(tag + ".cpu") or "0 0 0").split())
    acc = r["accepted"]
    m = json.loads(read(tag + ".mem") or "{}")
    s = json.loads(read(tag + "-sink.json") or "{}")
    t0 = float(read(tag + ".t0") or 0)
    got = s.get("messages", 0) - warmup
    done = read(tag + ".wait") == "ok"
    last = s.get("last_message_time")
    e2e_s = last - t0 if done and last and t0 else None
    hwm = int(read(tag + ".hwm") or 0)
    stop = re.search(r"outpostd stopped: .*", read(tag + "-outpostd.log") or "")
    def metrics(which):
        v = {}
        for line in (read(tag + ".metrics" + which) or "").splitlines():
            p = line.split()
            if len(p) == 2 and not line.startswith("#"):
                try:
                    v[p[0]] = float(p[1])
                except ValueError:
                    pass
        return v
    m0, m1 = metrics("0"), metrics("1")
    def delta(k):
        return m1[k] - m0[k] if k in m0 and k in m1 else None
    commits, ops = delta("outpost_queue_commits_total"), delta("outpost_queue_ops_total")
    commit_s = delta("outpost_queue_commit_seconds_total")
    sigs = (read(tag + ".sigs") or "").split()
    user = system = None
    utst = (read(tag + ".utst") or "").split()
    if len(utst) == 4 and acc and done:
        tck = os.sysconf("SC_CLK_TCK")
        user = 1000 * (float(utst[2]) - float(utst[0])) / tck / acc
        system = 1000 * (float(utst[3]) - float(utst[1])) / tck / acc
    busy = others = sink_cpu = None
    mach = (read(tag + ".machine") or "").split()
    if len(mach) == 6:
        b0, t0j, b1, t1j, sc0, sc1 = (float(x) for x in mach)
        ncpu, tck = os.cpu_count() or 1, os.sysconf("SC_CLK_TCK")
        wall = (t1j - t0j) / ncpu / tck
        sink_cpu = sc1 - sc0
        if wall > 0:
            busy = (b1 - b0) / tck / wall
            others = busy - ((c1 - c0) + sink_cpu + r["cpu_s"]) / wall
    return {
        "accepted": acc, "count": r["count"], "exit": r["exit"],
        "refused": r["rejected_4xx"] + r["rejected_5xx"], "failed": r["failed"],
        "elapsed_s": r["elapsed_s"], "msg_per_s": r["accepted_per_s"],
        "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
        "max_ms": r["latency_ms"]["max"],
        "cpu_accept_s": round(c1 - c0, 2),
        "cpu_accept_s_per_1000": round(1000 * (c1 - c0) / acc, 4) if acc else None,
        "cpu_all_s": round(c2 - c0, 2),
        "cpu_all_s_per_1000": round(1000 * (c2 - c0) / acc, 4) if acc and done else None,
        "cpu_all_user_s_per_1000": rnd(user, 4),
        "cpu_all_system_s_per_1000": rnd(system, 4),
        "delivered": got, "delivered_all": done,
        "end_to_end_s": round(e2e_s, 3) if e2e_s else None,
        "end_to_end_msg_per_s": round(n / e2e_s, 1) if e2e_s else None,
        "peak_rss_mib": round(hwm / 1024, 1) if hwm else None,
        "peak_rss_sampled_mib": round(m["peak_rss_kib"] / 1024, 1) if m.get("peak_rss_kib") else None,
        "load_tool_cpu_s": r["cpu_s"],
        "sink_cpu_s": rnd(sink_cpu, 2),
        "machine_busy_cores": rnd(busy, 2),
        "other_processes_cores": rnd(others, 2),
        "loadavg_at_start": " ".join((read(tag + ".loadavg") or "").split()),
        "outpostd_stopped": stop.group(0) if stop else None,
        "signatures": int(sigs[0]) if sigs else None,
        "signatures_expected": int(sigs[1]) if sigs else None,
        "queue_commits": commits, "queue_ops": ops,
        "queue_ops_per_commit": round(ops / commits, 1) if commits and ops is not None else None,
        "queue_ms_per_commit": round(1000 * commit_s / commits, 3) if commits and commit_s is not None else None,
        "load_report": r,
    }

# Each round's signed run is set against the unsigned run of the same round
# (minutes apart at most); a row's figure is the median over the rounds.
runs = {k: [run("%s.r%d" % (k, i)) for i in range(1, rounds + 1)] for k in kinds}
for k in kinds:
    for i, r in enumerate(runs[k]):
        u = runs["none"][i] if "none" in runs else None
        if k == "none" or r is None or u is None:
            continue
        for w in ("accept", "all", "all_user", "all_system"):
            a, b = r.get("cpu_%s_s_per_1000" % w), u.get("cpu_%s_s_per_1000" % w)
            r["signing_cpu_%s_s_per_1000" % w] = rnd(a - b, 4) if a is not None and b is not None else None
        r["rate_vs_unsigned_pct"] = (round(100 * (r["msg_per_s"] / u["msg_per_s"] - 1), 1)
                                     if u["msg_per_s"] else None)

def agg(k):
    rs = [r for r in runs[k] if r is not None]
    if not rs:
        return None
    out = {}
    for key in rs[0]:
        vals = [r.get(key) for r in rs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = rnd(statistics.median(vals), 4)
    out["rounds"] = len(rs)
    out["msg_per_s_range"] = "%s–%s" % ("{:,.0f}".format(min(r["msg_per_s"] for r in rs)),
                                        "{:,.0f}".format(max(r["msg_per_s"] for r in rs)))
    out["delivered_all"] = all(r["delivered_all"] for r in rs)
    out["loadavg_at_start"] = [r["loadavg_at_start"] for r in rs]
    out["sanity_dkim"] = json.loads(read(k + "-dkim.json") or "null")
    out["runs"] = rs
    return out
rows = {k: agg(k) for k in kinds}

def ratio(k, cost):
    r = rows.get(k)
    v = r.get("signing_cpu_all_s_per_1000") if r else None
    return round(v / cost, 2) if v is not None and cost else None
rsa_ms, ed_ms = speed.get("rsa2048_ms_per_sign"), speed.get("ed25519_ms_per_sign")
ratios = {
    # CPU s per 1,000 messages = CPU ms per message
    "rsa_signing_cpu_vs_openssl": ratio("rsa", rsa_ms),
    "ed25519_signing_cpu_vs_openssl": ratio("ed25519", ed_ms),
    "dual_signing_cpu_vs_openssl": ratio("dual", (rsa_ms or 0) + (ed_ms or 0) if rsa_ms and ed_ms else None),
    "ed25519_rate_vs_unsigned_pct": rows["ed25519"].get("rate_vs_unsigned_pct") if rows.get("ed25519") else None,
    # the RSA row's rate against every core doing nothing but openssl's signatures
    "rsa_rate_vs_openssl_all_cores_pct": (
        round(100 * rows["rsa"]["msg_per_s"] / (speed["rsa2048_sign_per_s"] * (os.cpu_count() or 1)), 1)
        if rows.get("rsa") and speed.get("rsa2048_sign_per_s") else None),
}

def hrow(label):
    rep = read("harness/%s.run1.json" % label)
    if not rep:
        return None
    r = json.loads(rep)
    dk = json.loads(read("harness/%s.dkim.json" % label) or "null")
    # the machine's busy ticks over the samples inside the measured window
    busy = others = None
    start, end = r.get("t0") or 0, r.get("t_end") or 0
    inside = [x for x in samples if start <= x[0] <= end]
    if len(inside) >= 2 and inside[-1][2] > inside[0][2]:
        ncpu, tck = os.cpu_count() or 1, os.sysconf("SC_CLK_TCK")
        wall = inside[-1][0] - inside[0][0]
        busy = ncpu * (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2])
        own = sum(r.get(k) or 0 for k in ("peer_cpu_s", "source_cpu_s", "sink_cpu_s", "harness_cpu_s"))
        others = busy - own / (r.get("waited_s") or wall)
    return {
        "machine_busy_cores": rnd(busy, 2), "other_processes_cores": rnd(others, 2),
        "e2e_msg_per_s": r.get("e2e_rate"), "inj_msg_per_s": r.get("inj_rate"),
        "delivered": r.get("delivered"), "complete": r.get("complete"),
        "peer_cpu_s": r.get("peer_cpu_s"),
        "peer_cpu_s_per_1000": r.get("peer_cpu_per_msg_ms"),
        "peer_cpu_by_root": r.get("peer_cpu_by_root"),
        "peer_peak_rss_mb": r.get("peer_peak_rss_mb"),
        "peer_peak_pss_mb": r.get("peer_peak_pss_mb"),
        "peer_peak_procs": r.get("peer_peak_procs"),
        "source_cpu_s": r.get("source_cpu_s"), "sink_cpu_s": r.get("sink_cpu_s"),
        "loadavg": r.get("loadavg"), "dkim_sanity": dk, "run": r,
    }
try:
    signer = json.loads(read("dkim-speed.json") or "null")
except ValueError:
    signer = None
samples = []
for line in (read("harness-machine.txt") or "").splitlines():
    try:
        samples.append(tuple(float(x) for x in line.split()))
    except ValueError:
        pass
harness = {"outpost_dkim": hrow("outpost-dkim"), "outpost": hrow("outpost"),
           "postfix_dkim": hrow("postfix-dkim")}
if harness["outpost_dkim"] and harness["outpost"]:
    a, b = harness["outpost_dkim"]["peer_cpu_s_per_1000"], harness["outpost"]["peer_cpu_s_per_1000"]
    harness["outpost_dkim"]["signing_cpu_s_per_1000"] = rnd(a - b, 3) if a is not None and b is not None else None
ho, hp = harness["outpost_dkim"], harness["postfix_dkim"]
ratios["harness_e2e_outpost_vs_postfix_dkim"] = (
    round(ho["e2e_msg_per_s"] / hp["e2e_msg_per_s"], 2)
    if ho and hp and ho["e2e_msg_per_s"] and hp["e2e_msg_per_s"] else None)
ratios["pipelined_rsa_e2e_vs_postfix_dkim_harness"] = (
    round(rows["rsa"]["end_to_end_msg_per_s"] / hp["e2e_msg_per_s"], 2)
    if rows.get("rsa") and rows["rsa"]["end_to_end_msg_per_s"] and hp and hp["e2e_msg_per_s"] else None)

res = {"benchmark": "signing", "n": n, "sessions": int(sessions), "size": int(size),
       "warmup": warmup, "pipelining": True, "harness_sessions": int(hsessions),
       "loadavg_before": (read("loadavg") or "").split(),
       "loadavg_after": open("/proc/loadavg").read().split()[:3],
       "openssl_speed": speed, "signer": signer, "rows": rows, "harness": harness, "ratios": ratios,
       "goals": {"rsa_signing_cpu_vs_openssl_max": 1.3,
                 "ed25519_rate_vs_unsigned_min_pct": -10,
                 "harness_e2e_outpost_vs_postfix_dkim_min": 8},
       "notes": (read("notes.txt") or "").splitlines()}
with open(os.path.join(out, "signing.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")

def cell(r, k, fmt="{}"):
    if r is None or r.get(k) is None:
        return "n/a"
    return fmt.format(r[k])
def sanity(r):
    d = r and r.get("sanity_dkim")
    if not d:
        return "n/a"
    if not d["want"]:
        return "%d/%d unsigned" % (d["verified"], d["files"])
    return "%d/%d verify (%s)%s" % (d["verified"], d["files"], " + ".join(d["want"]),
                                    ", tampered copy fails" if d["tamper_rejected"] else "")
names = {"none": "unsigned", "rsa": "RSA-2048", "ed25519": "Ed25519", "dual": "RSA-2048 + Ed25519"}
lines = ["## DKIM signing at submission: %d messages of %s bytes, %s pipelining "
         "sessions (after a %d-message warm-up), median of %d rounds"
         % (n, size, sessions, warmup, rounds), "",
         "| Outpost | " + " | ".join(names[k] for k in kinds) + " |",
         "|---|" + "---|" * len(kinds)]
for key, name, fmt in [
        ("msg_per_s", "**accepted msg/s** (durable)", "**{:,.0f}**"),
        ("msg_per_s_range", "accepted msg/s, lowest–highest round", "{}"),
        ("rate_vs_unsigned_pct", "accepted rate vs unsigned, same round (%)", "{:+.1f}"),
        ("p50_ms", "acceptance latency p50 (ms)", "{:.2f}"),
        ("p99_ms", "acceptance latency p99 (ms)", "{:.2f}"),
        ("cpu_accept_s_per_1000", "CPU s / 1,000 msg, during the load", "{:.3f}"),
        ("cpu_all_s_per_1000", "CPU s / 1,000 msg, until all relayed", "{:.3f}"),
        ("signing_cpu_all_s_per_1000", "**signing CPU s / 1,000 msg** (difference, until all relayed)", "**{:.3f}**"),
        ("signing_cpu_all_user_s_per_1000", "… of which user time", "{:.3f}"),
        ("signing_cpu_all_system_s_per_1000", "… of which system time", "{:.3f}"),
        ("signing_cpu_accept_s_per_1000", "signing CPU s / 1,000 msg (difference, during the load)", "{:.3f}"),
        ("end_to_end_msg_per_s", "end-to-end msg/s (load start → last at the sink)", "{:,.0f}"),
        ("peak_rss_mib", "peak RSS (MiB, VmHWM)", "{:.1f}"),
        ("signatures", "DKIM signatures made during the load (/metrics)", "{:,.0f}"),
        ("signatures_expected", "… expected (N × signatures per message)", "{:,.0f}"),
        ("queue_commits", "LMDB commits during the load and its relaying (/metrics)", "{:,.0f}"),
        ("queue_ops_per_commit", "queue ops per commit (a message: queued, then done)", "{:.1f}"),
        ("queue_ms_per_commit", "ms per commit", "{:.2f}"),
        ("accepted", "accepted", "{:.0f}"),
        ("refused", "refused", "{:.0f}"),
        ("failed", "failed (connection lost)", "{:.0f}"),
        ("delivered", "delivered to the sink (measured)", "{:.0f}"),
        ("load_tool_cpu_s", "load tool CPU s", "{:.2f}"),
        ("sink_cpu_s", "outpost-sink CPU s (during the load)", "{:.2f}"),
        ("machine_busy_cores", "machine CPU busy during the load (cores of %d)" % (os.cpu_count() or 1), "{:.2f}"),
        ("other_processes_cores", "of which other processes (cores)", "{:.2f}")]:
    lines.append("| %s | " % name + " | ".join(cell(rows[k], key, fmt) for k in kinds) + " |")
lines.append("| sanity run: signatures (python3-dkim) | " + " | ".join(sanity(rows[k]) for k in kinds) + " |")
lines.append("| 1-min load average at each round's start | " + " | ".join(
    " / ".join(la.split()[0] for la in rows[k]["loadavg_at_start"] if la) if rows[k] else "n/a"
    for k in kinds) + " |")
lines.append("")
def fv(v, fmt):
    return fmt.format(v) if v is not None else "n/a"
lines += ["| openssl speed, one core | sign/s before the rows | after | mean | ms per signature (mean) |",
          "|---|---|---|---|---|"]
for k, name, ms in (("rsa2048", "RSA-2048", rsa_ms), ("ed25519", "Ed25519", ed_ms)):
    lines.append("| %s | %s | %s | %s | %s |" % (
        name, fv(speed.get(k + "_sign_per_s_before"), "{:,.0f}"),
        fv(speed.get(k + "_sign_per_s_after"), "{:,.0f}"),
        fv(speed.get(k + "_sign_per_s"), "{:,.0f}"), fv(ms, "{:.4f}")))
lines.append("")
if signer:
    lines += ["| the signer alone (outpost-dkim-speed), one core, %d-byte message | per CPU-second |"
              % signer["message_bytes"], "|---|---|",
              "| outpost RSA-2048: parse + body hash + sign | %s |" % fv(signer["rsa_sign_per_s"], "{:,.0f}"),
              "| outpost Ed25519: parse + body hash + sign | %s |" % fv(signer["ed25519_sign_per_s"], "{:,.0f}"),
              "| bare RSA-2048 signature | %s |" % fv(signer["bare_rsa_per_s"], "{:,.0f}"),
              "| CPU per RSA message, in bare RSA signatures (goal <= 1.3) | %s |" % fv(signer["rsa_vs_bare"], "{:.2f}"),
              "| libopendkim 2.11, key re-parsed per message | %s |" % fv(signer["opendkim_per_s"], "{:,.0f}"),
              "| body hash of 10 MB, simple / relaxed (MB/s) | %s / %s |" % (
                  fv(signer["body_hash_mb_per_s"]["simple"], "{:,.0f}"),
                  fv(signer["body_hash_mb_per_s"]["relaxed"], "{:,.0f}")),
              ""]
def goal(v, ok):
    return "n/a" if v is None else ("met" if ok(v) else "NOT met")
r = ratios["rsa_signing_cpu_vs_openssl"]
lines.append("**Outpost signing CPU per RSA message / openssl's RSA-2048 sign: %s** (goal ≤ 1.3×: %s)"
             % (fv(r, "{:.2f}×"), goal(r, lambda v: v <= 1.3)))
r = ratios["ed25519_rate_vs_unsigned_pct"]
lines.append("**Ed25519 acceptance rate vs unsigned: %s** (goal: less than 10 %% lower: %s)"
             % (fv(r, "{:+.1f} %"), goal(r, lambda v: v > -10)))
lines.append("Ed25519 signing CPU / openssl's Ed25519 sign: %s; dual / (RSA + Ed25519 sign): %s. "
             "RSA-2048 row: %s %% of %d cores doing nothing but openssl's RSA signatures."
             % (fv(ratios["ed25519_signing_cpu_vs_openssl"], "{:.2f}×"),
                fv(ratios["dual_signing_cpu_vs_openssl"], "{:.2f}×"),
                fv(ratios["rsa_rate_vs_openssl_all_cores_pct"], "{:.0f}"), os.cpu_count() or 1))
lines.append("")
hn = [("outpost_dkim", "Outpost, RSA-2048"), ("postfix_dkim", "Postfix 3.7 + OpenDKIM 2.11, RSA-2048"),
      ("outpost", "Outpost, unsigned (reference)")]
lines += ["### End to end with RSA-2048 signing, t/bench/harness.sh (smtp-source, %s sessions, "
          "%d messages, 1 run, sanity run's signatures verified)" % (hsessions, n), "",
          "| | " + " | ".join(x[1] for x in hn) + " |", "|---|" + "---|" * len(hn)]
def dk(h):
    d = h and h.get("dkim_sanity")
    return "%d/%d verify" % (d["verified"], d["files"]) if d else "n/a"
for key, name, fmt in [
        ("e2e_msg_per_s", "**end-to-end msg/s**", "**{:,.0f}**"),
        ("inj_msg_per_s", "injection msg/s", "{:,.0f}"),
        ("peer_cpu_s_per_1000", "MTA CPU s / 1,000 msg", "{:.3f}"),
        ("signing_cpu_s_per_1000", "signing CPU s / 1,000 msg (difference with unsigned)", "{:.3f}"),
        ("peer_peak_rss_mb", "MTA peak RSS (MB, summed over processes)", "{:.1f}"),
        ("peer_peak_pss_mb", "MTA peak PSS (MB)", "{:.1f}"),
        ("peer_peak_procs", "MTA processes (peak)", "{}"),
        ("delivered", "delivered", "{}"),
        ("source_cpu_s", "smtp-source CPU s", "{:.2f}"),
        ("sink_cpu_s", "smtp-sink CPU s", "{:.2f}"),
        ("machine_busy_cores", "machine CPU busy during the run (cores of %d)" % (os.cpu_count() or 1), "{:.2f}"),
        ("other_processes_cores", "of which other processes (cores)", "{:.2f}")]:
    lines.append("| %s | " % name + " | ".join(cell(harness[h], key, fmt) for h, _ in hn) + " |")
lines.append("| sanity run: signatures (python3-dkim) | " + " | ".join(dk(harness[h]) for h, _ in hn) + " |")
lines.append("| load average at the end | " + " | ".join(
    " ".join(harness[h]["loadavg"]) if harness[h] and harness[h]["loadavg"] else "n/a" for h, _ in hn) + " |")
lines.append("")
r = ratios["harness_e2e_outpost_vs_postfix_dkim"]
lines.append("**Outpost / Postfix + OpenDKIM end to end, same harness: %s** (goal ≥ 8×: %s)"
             % (fv(r, "{:.2f}×"), goal(r, lambda v: v >= 8)))
lines.append("Outpost pipelined (outpost-load, %s sessions, RSA row above) end to end: %s msg/s, "
             "%s× the harness's Postfix + OpenDKIM (different load tools: for scale only)."
             % (sessions, cell(rows.get("rsa"), "end_to_end_msg_per_s", "{:,.0f}"),
                fv(ratios["pipelined_rsa_e2e_vs_postfix_dkim_harness"], "{:.2f}")))
lines += ["", "Signing CPU is a difference: (CPU of outpostd's process tree in the "
          "signed run − in the unsigned run of the same round) per 1,000 accepted "
          "messages, the median over the rounds (user and system time: outpostd's "
          "own /proc/PID/stat), from the "
          "start of the measured load until the sink had every message (so both rows "
          "count the same relaying work; the during-the-load difference is shown too). "
          "CPU s per 1,000 messages = CPU ms per message, set against openssl's "
          "single-core cost of one signature. It covers everything the signed path "
          "adds: header parse, body hash, signature, the longer message sealed, "
          "committed and relayed. Keys: `outpost dkim keygen` (RSA-2048 s1, Ed25519 e1, "
          "d=sender.test = the From domain, so no DMARC lookup). Each row's sanity run "
          "(a separate outpostd with the same configuration, %d messages kept by "
          "outpost-sink --maildir) is verified by python3-dkim against the generated "
          "TXT records; the unsigned row must carry no signature. The four rows run "
          "in turn, %d round(s), so that drift in the machine's other load touches each "
          "alike; when every core is busy (the machine CPU row), a rate falls with "
          "each µs of CPU a message costs, whoever spends it. Load average before "
          "/ after: %s / %s." % (int(sanity_n), rounds, " ".join(res["loadavg_before"]),
                                 " ".join(res["loadavg_after"]))]
for note in res["notes"]:
    lines.append("- note: " + note)
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "signing.md"), "w") as f:
    f.write(text)
print(text)
EOF
exit $status
