# t/bench/lib.sh — helpers shared by the benchmark scripts (sourced, not run).
# Everything here talks to 127.0.0.1 only, and stops processes by PID only.

PY=${PYTHON:-/usr/bin/python3}

# Network safety: every outpostd a benchmark starts refuses non-loopback
# addresses and never falls back to the system resolver.
export OUTPOST_LOOPBACK_ONLY=1

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT SECONDS [PID]: until 127.0.0.1:PORT accepts; fails early if
# PID (the process meant to listen) has exited.
wait_port() {
	local port=$1 secs=$2 pid=${3:-} i=0
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		i=$((i + 1))
		[ "$i" -gt $((secs * 20)) ] && return 1
		sleep 0.05
	done
	return 0
}

PROCSTAT=$(dirname "${BASH_SOURCE[0]}")/procstat.py

# tree_cpu PID...: CPU seconds of the process trees (procstat.py cpu).
tree_cpu() {
	"$PY" "$PROCSTAT" cpu "$@"
}

# hwm_kib PID: peak resident set of one process (VmHWM), KiB.
hwm_kib() {
	"$PY" "$PROCSTAT" hwm "$1"
}

# rss_sampler_start FILE PID...: one background sampler of the trees' summed
# RSS and PSS, peaks written to FILE as JSON; sets RSS_SAMPLER (its PID).
rss_sampler_start() {
	local file=$1
	shift
	"$PY" "$PROCSTAT" sample "$file" "$@" &
	RSS_SAMPLER=$!
}

rss_sampler_stop() {
	if [ -n "${RSS_SAMPLER:-}" ]; then
		kill -TERM "$RSS_SAMPLER" 2>/dev/null || true
		wait "$RSS_SAMPLER" 2>/dev/null || true
		RSS_SAMPLER=
	fi
}

# stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL.  Only our own PIDs.
stop_pid() {
	local pid=$1 secs=${2:-20} i=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt $((secs * 10)) ]; then
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
}

# sink_start PORT OUTFILE [SMTP-SINK OPTION...]: Postfix's smtp-sink,
# counting (-c), 1024 backlog; sets SINK_PID.
sink_start() {
	local port=$1 out=$2 user=()
	shift 2
	[ "$(id -u)" = 0 ] && user=(-u nobody)
	smtp-sink -c "${user[@]}" "$@" "127.0.0.1:$port" 1024 >"$out" 2>&1 &
	SINK_PID=$!
	wait_port "$port" 10 "$SINK_PID"
}

# sink_count OUTFILE: messages the sink has counted ("mesg=N").
sink_count() {
	tr '\r' '\n' <"$1" 2>/dev/null | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2
}

# json_get FILE KEY[.KEY...]: one value of a JSON file (empty if absent).
json_get() {
	"$PY" - "$1" "$2" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2].split("."):
        v = v[k]
    print(v if not isinstance(v, bool) else str(v).lower())
except (OSError, ValueError, KeyError, TypeError):
    print("")
EOF
}

# free_dns_port: a port on 127.0.0.1 free for UDP and TCP a moment ago
# (dnsmasq binds both).
free_dns_port() {
	"$PY" - <<'PYEOF'
import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
PYEOF
}

# dns_start DIR ADDR DOMAIN...: dnsmasq on a free 127.0.0.1 port answering
# "DOMAIN MX 10 mx.sink.test" for each DOMAIN and "mx.sink.test A ADDR"
# (DNS_MX_PER_DOMAIN=1: "DOMAIN MX 10 mx.DOMAIN", each at ADDR),
# NXDOMAIN for anything else under .test; it never forwards (--no-resolv)
# and never reads /etc/hosts.  Flags as t/integration/outpost_test.py's Dns.
# Sets DNS_PID and DNS_PORT; log in DIR/dnsmasq.log.  Retries on a port
# clash, unless DNS_FIXED_PORT names the port to use.
# The sending domain publishes DMARC (p=none), as an ESP's senders do: the
# pre-check's policy lookup is then a cached answer, as in production
# (dnsmasq's --local NXDOMAIN carries no SOA, so a missing record would be
# asked again for every message: RFC 2308 forbids caching it).
dns_start() {
	local dir=$1 addr=$2 d args user=()
	shift 2
	[ "$(id -u)" = 0 ] && user=(--user=root)
	args=()
	for d in "$@"; do
		if [ "${DNS_MX_PER_DOMAIN:-0}" = 1 ]; then
			# An MX host of its own: a site (connections, limits)
			# of its own in Outpost, at the same address.
			args+=("--mx-host=$d,mx.$d,10" "--host-record=mx.$d,$addr")
		else
			args+=("--mx-host=$d,mx.sink.test,10")
		fi
	done
	for _ in 1 2 3 4 5 6 7 8; do
		DNS_PORT=${DNS_FIXED_PORT:-$(free_dns_port)}
		dnsmasq --keep-in-foreground --no-daemon "--port=$DNS_PORT" \
		    --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
		    --no-hosts --conf-file=/dev/null "${user[@]}" \
		    "--pid-file=$dir/dnsmasq.pid" --local-ttl=3600 --local=/test/ \
		    "--log-facility=$dir/dnsmasq.log" \
		    "--host-record=mx.sink.test,$addr" "${args[@]}" \
		    "--txt-record=_dmarc.sender.test,v=DMARC1; p=none" \
		    >/dev/null 2>"$dir/dnsmasq.err" &
		DNS_PID=$!
		for _ in $(seq 100); do
			kill -0 "$DNS_PID" 2>/dev/null || break
			if dns_answers "$DNS_PORT"; then
				return 0
			fi
			sleep 0.05
		done
		stop_pid "$DNS_PID" 5
		DNS_PID=
		if [ -n "${DNS_FIXED_PORT:-}" ] || ! grep -q "in use" "$dir/dnsmasq.err" 2>/dev/null; then
			return 1
		fi
	done
	return 1
}

# dns_answers PORT [NAME]: the DNS server on 127.0.0.1:PORT answers an A
# query for NAME (default probe.test) at all (any rcode).
dns_answers() {
	"$PY" - "$1" "${2:-probe.test}" <<'PYEOF'
import socket, sys
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
q += b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[2].split("."))
q += b"\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
try:
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
    sys.exit(0 if s.recv(512)[:2] == b"\x12\x34" else 1)
except OSError:
    sys.exit(1)
PYEOF
}

# osink_start PORT STATSFILE [OUTPOST-SINK OPTION...]: build/tools/outpost-sink
# (BUILD must be set) on 127.0.0.1:PORT, --count-only, counters in
# STATSFILE (JSON, rewritten every 100 ms); log STATSFILE.log.  Sets
# OSINK_PID; returns once it is ready.  OSINK_MAILDIR=DIR in the
# environment: the messages are kept there instead (--maildir).
osink_start() {
	local port=$1 stats=$2 keep=(--count-only)
	shift 2
	[ -n "${OSINK_MAILDIR:-}" ] && keep=(--maildir "$OSINK_MAILDIR")
	rm -f "$stats" "$stats.ready"
	"$BUILD/tools/outpost-sink" --listen "127.0.0.1:$port" "${keep[@]}" \
	    --stats "$stats" --ready-file "$stats.ready" "$@" >"$stats.log" 2>&1 &
	OSINK_PID=$!
	for _ in $(seq 200); do
		[ -s "$stats.ready" ] && return 0
		kill -0 "$OSINK_PID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# osink_wait STATSFILE TARGET TIMEOUT [STALL]: until the sink's stats count
# TARGET messages; fails after TIMEOUT seconds, or after STALL seconds
# (default 60) without a new message.  Prints the last count.  One poller
# process (every 20 ms), so waiting costs the measured MTA little.
osink_wait() {
	"$PY" - "$@" <<'PYEOF'
import json, sys, time
path, target, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stall = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
start = last_change = time.time()
n = last = -1
while True:
    try:
        with open(path) as f:
            n = json.load(f).get("messages", 0)
    except (OSError, ValueError):
        pass
    now = time.time()
    if n != last:
        last, last_change = n, now
    if n >= target:
        print(n)
        sys.exit(0)
    if now - start > timeout or now - last_change > stall:
        print(max(n, 0))
        sys.exit(1)
    time.sleep(0.02)
PYEOF
}

# relay_conf FILE DIR PORT SINK_PORT [LINE...]: an outpost.conf (written
# by the calling script) relaying everything to 127.0.0.1:SINK_PORT: data
# under DIR/var, a plain listener on 127.0.0.1:PORT, relay for 127.0.0.0/8,
# routes for sink.test and sender.test, DNS at a loopback port where
# nothing listens (no lookup can leave the box), no DMARC check; each LINE
# appended as it is.
relay_conf() {
	local file=$1 dir=$2 port=$3 sp=$4 dns
	shift 4
	dns=$(free_port)
	{
		cat <<EOF
# written by ${0##*/}: loopback only
data_dir = "$dir/var"
listener "127.0.0.1:$port" { tls = "none" }
relay { networks = { "127.0.0.0/8" } }
dns { servers = "127.0.0.1:$dns" timeout = 1s tries = 1 }
delivery { relay_host = "127.0.0.1:$sp" }
route "sink.test" { host = "127.0.0.1:$sp" }
route "sender.test" { host = "127.0.0.1:$sp" }
dmarc { check = false }
queue { map_size = 8G }
EOF
		printf '%s\n' "$@"
	} >"$file"
}

# bench_init — what every benchmark takes from run.sh: BUILD and OUT (both
# required), LOAD and OSINK (the build's load generator and sink), OUTPOSTD
# (OUTPOSTD= in the environment measures another build's daemon).
# shellcheck disable=SC2034 # used by the scripts that source this
bench_init() {
	BUILD=${BENCH_BUILD:?BENCH_BUILD is not set (run t/bench/run.sh)}
	OUT=${BENCH_OUT:?BENCH_OUT is not set (run t/bench/run.sh)}
	LOAD=$BUILD/tools/outpost-load
	OSINK=$BUILD/tools/outpost-sink
	OUTPOSTD=${OUTPOSTD:-$BUILD/bin/outpostd}
}
