#!/bin/bash
# t/bench/peers/outpost.sh — Outpost as the MTA under test, for harness.sh
# (the same contract as peers/postfix.sh, so the harness treats peers alike):
#   outpost.sh start WORKDIR LISTEN_PORT SINK_PORT SIGN TLS
#   outpost.sh stop WORKDIR
# Loopback only: sink.test is routed to 127.0.0.1:SINK_PORT, DNS points at a
# loopback port where nothing listens, and OUTPOST_LOOPBACK_ONLY=1 makes the
# daemon refuse any other address.  OUTPOSTD selects the binary (the CLI
# that makes the DKIM key is the `outpost` next to it).  SIGN=1: an RSA-2048
# key for sender.test (selector "bench"), its bare TXT value in
# WORKDIR/dkim.txt, which harness.sh verifies the sanity run against.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
OUTPOSTD=${OUTPOSTD:-$TOP/build/bin/outpostd}
OUTPOST_CLI=$(dirname "$OUTPOSTD")/outpost
export OUTPOST_LOOPBACK_ONLY=1

cmd=${1:?start|stop}
w=${2:?WORKDIR}
case "$cmd" in
start)
	listen=$3 sink=$4 sign=${5:-0} tls=${6:-0}
	dead=$(/usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$w/var"
	{
		echo "data_dir = \"$w/var\""
		echo "listener \"127.0.0.1:$listen\" { tls = \"none\" }"
		echo 'relay { networks = { "127.0.0.0/8" } }'
		echo "dns { servers = \"127.0.0.1:$dead\" timeout = 1s tries = 1 }"
		echo "route \"sink.test\" { host = \"127.0.0.1:$sink\" }"
		echo "route \"sender.test\" { host = \"127.0.0.1:$sink\" }"
		# no metrics listener: its default port is fixed, and would clash
		# with any other outpostd on the machine
		echo 'metrics { listen = "" }'
		[ "$tls" = 1 ] || echo 'destination "*" { tls = "none" }'
		# unsigned, sender.test's mail is not DKIM-aligned: the DMARC
		# lookup would go to the dead DNS port and end in 451
		[ "$sign" = 1 ] || echo 'dmarc { check = false }'
		if [ "$sign" = 1 ]; then
			"$OUTPOST_CLI" dkim keygen sender.test bench \
			    --rsa 2048 --key "$w/var/dkim-bench.key" \
			    --txt "$w/dkim.txt" >/dev/null
			echo "dkim \"sender.test\" { selector = \"bench\"" \
			    "rsa_key = \"$w/var/dkim-bench.key\" }"
		fi
	} >"$w/outpost.conf"
	"$OUTPOSTD" -t -c "$w/outpost.conf" >/dev/null
	"$OUTPOSTD" -c "$w/outpost.conf" >"$w/outpostd.log" 2>&1 &
	echo $! >"$w/pids"
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$listen") 2>/dev/null && exit 0
		kill -0 "$(cat "$w/pids")" 2>/dev/null || break
		sleep 0.05
	done
	echo "outpost adapter: outpostd did not start:" >&2
	tail -n 20 "$w/outpostd.log" >&2
	exit 1
	;;
stop)
	[ -f "$w/pids" ] || exit 0
	pid=$(cat "$w/pids")
	kill -TERM "$pid" 2>/dev/null || exit 0
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || exit 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	;;
*)
	echo "usage: outpost.sh start|stop WORKDIR ..." >&2
	exit 2
	;;
esac
