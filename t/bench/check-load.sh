#!/bin/bash
# t/bench/check-load.sh BUILD_DIR — are outpost-load's figures right?  Runs
# it against Postfix's smtp-sink (an independent counter) on loopback:
#   1. --count N (CHECK_N, 5000), pipelining: accepted = N = the sink's count
#   2. the same in lock-step
#   3. the sink answers "421" to every "." (-Q .): nothing accepted, every
#      message refused 4xx at end of data, the sink still saw every "."
# Prints one line per check and the load tool's ceiling into the sink
# (msg/s); exits non-zero if a figure disagrees.  Needs smtp-sink (postfix).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
BUILD=$(cd "${1:-build}" && pwd)
LOAD=${LOAD:-$BUILD/tools/outpost-load}
N=${CHECK_N:-5000}

command -v smtp-sink >/dev/null || { echo "check-load: smtp-sink missing (apt-get install postfix)" >&2; exit 2; }
[ -x "$LOAD" ] || { echo "check-load: $LOAD not built" >&2; exit 2; }

work=$(mktemp -d /tmp/outpost-check-load.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
SINK_PID=
cleanup() {
	stop_pid "$SINK_PID" 5
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0
# run_case NAME "SINK OPTIONS" LOAD OPTION...: one run; the report is
# left in $work/NAME.json, the sink's output in $work/NAME.sink.
run_case() {
	local name=$1 sink_opts=$2 port
	shift 2
	port=$(free_port)
	# shellcheck disable=SC2086
	if ! sink_start "$port" "$work/$name.sink" $sink_opts; then
		echo "check-load: smtp-sink did not start" >&2
		exit 2
	fi
	"$LOAD" --host 127.0.0.1 --port "$port" --json "$@" >"$work/$name.json" 2>"$work/$name.err" || true
	sleep 0.2 # the sink updates its counter when a session ends
	stop_pid "$SINK_PID" 5
	SINK_PID=
}

verdict() {
	local name=$1 ok=$2 detail=$3
	if [ "$ok" = 1 ]; then
		printf '  ok    %-22s %s\n' "$name" "$detail"
	else
		printf '  FAIL  %-22s %s\n' "$name" "$detail"
		fails=$((fails + 1))
	fi
}

echo "check-load: $LOAD against smtp-sink, $N messages of 4 KB, 50 sessions"
for mode in pipelining lockstep; do
	opt=--pipelining
	[ $mode = lockstep ] && opt=
	run_case "$mode" "" --sessions 50 --count "$N" --size 4096 $opt
	acc=$(json_get "$work/$mode.json" accepted)
	ex=$(json_get "$work/$mode.json" exit)
	rate=$(json_get "$work/$mode.json" accepted_per_s)
	sunk=$(sink_count "$work/$mode.sink")
	ok=0
	[ "$acc" = "$N" ] && [ "${sunk:-x}" = "$N" ] && [ "$ex" = 0 ] && ok=1
	verdict "$mode" $ok "accepted=$acc sink=$sunk exit=$ex ($rate msg/s)"
done

run_case refuse-eod "-Q ." --sessions 10 --count 500 --size 4096 --pipelining
acc=$(json_get "$work/refuse-eod.json" accepted)
eod=$(json_get "$work/refuse-eod.json" rejected.eod_4xx)
failed=$(json_get "$work/refuse-eod.json" failed)
ex=$(json_get "$work/refuse-eod.json" exit)
sunk=$(sink_count "$work/refuse-eod.sink")
ok=0
[ "$acc" = 0 ] && [ "$eod" = 500 ] && [ "$failed" = 0 ] && [ "${sunk:-x}" = 500 ] && [ "$ex" = 1 ] && ok=1
verdict "421-at-end-of-data" $ok "accepted=$acc eod_4xx=$eod failed=$failed sink=$sunk exit=$ex"

[ "$fails" = 0 ] || { echo "check-load: $fails check(s) failed; reports in:" >&2; cat "$work"/*.err >&2; exit 1; }
echo "check-load: all figures agree"
