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
