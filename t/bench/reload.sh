#!/bin/bash
# t/bench/reload.sh — how long does a reload take with a large
# configuration?  Not run by run.sh (not a timed benchmark): run it by hand,
#   t/bench/reload.sh [BUILD_DIR]        (default build)
# It writes a configuration with RELOAD_USERS users (10000; one Argon2id
# hash from `outpost passwd`, shared: a reload does not verify passwords)
# and RELOAD_DKIM dkim blocks (1000), each with a key of its own: Ed25519
# keys made by `openssl genpkey` (RSA-2048 for a thousand domains takes
# minutes to generate; loading Ed25519 is cheaper than RSA, so this is the
# lower bound of the key part), starts outpostd on loopback, runs
# `outpost reload` RELOAD_ROUNDS times (5) and prints the daemon's own
# figure ("generation N in MS ms", the time from reading the file to the
# new generation in force) and the CLI's wall time, with their medians.
# As root the daemon keeps root (allow_root): the figure is the same, and
# the key files need no change of owner.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)
USERS=${RELOAD_USERS:-10000}
DKIM=${RELOAD_DKIM:-1000}
ROUNDS=${RELOAD_ROUNDS:-5}
TMP=$(mktemp -d /tmp/outpost-reload-bench.XXXXXX)
PID=
cleanup() {
	if [ -n "$PID" ]; then
		kill -TERM "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(free_port)
MPORT=$(free_port)
HASH=$(printf 'bench password\n' | "$BIN/outpost" passwd | tail -1)
mkdir -p "$TMP/keys"
echo "reload bench: $USERS users, $DKIM Ed25519 keys (generating)" >&2
for ((i = 0; i < DKIM; i++)); do
	openssl genpkey -algorithm ed25519 -out "$TMP/keys/d$i.key" 2>/dev/null
done
chmod 600 "$TMP"/keys/*.key
CONF=$TMP/outpost.conf
{
	printf 'hostname = "outpost.test"\ndata_dir = "%s/var"\n' "$TMP"
	[ "$(id -u)" = 0 ] && printf 'allow_root = true\n'
	printf 'tls { generate = true }\nmetrics { listen = "127.0.0.1:%s" }\n' "$MPORT"
	printf 'listener "127.0.0.1:%s" { tls = "starttls" }\n' "$PORT"
	printf 'relay { networks = { "127.0.0.0/8" } }\ndmarc { check = false }\n'
	for ((i = 0; i < USERS; i++)); do
		printf 'user "user%d" {\n  password = "%s"\n  sender_domains = { "d%d.test" }\n}\n' \
			"$i" "$HASH" "$((i % DKIM))"
	done
	for ((i = 0; i < DKIM; i++)); do
		printf 'dkim "d%d.test" {\n  ed25519_selector = "s1"\n  ed25519_key = "%s/keys/d%d.key"\n}\n' \
			"$i" "$TMP" "$i"
	done
} >"$CONF"

"$BIN/outpostd" -c "$CONF" >"$TMP/outpostd.log" 2>&1 &
PID=$!
wait_port "$PORT" 120 "$PID" || { cat "$TMP/outpostd.log" >&2; exit 1; }
for _ in $(seq 100); do
	"$BIN/outpost" -c "$CONF" status >/dev/null 2>&1 && break
	sleep 0.1
done

daemon_ms=()
cli_ms=()
for ((r = 0; r < ROUNDS; r++)); do
	t0=$(date +%s%N)
	out=$("$BIN/outpost" -c "$CONF" reload)
	t1=$(date +%s%N)
	ms=$(sed -n 's/^generation [0-9]* in \([0-9]*\) ms.*/\1/p' <<<"$out")
	daemon_ms+=("$ms")
	cli_ms+=($(((t1 - t0) / 1000000)))
	echo "round $((r + 1)): $out (CLI wall $(((t1 - t0) / 1000000)) ms)" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "reload with $USERS users and $DKIM Ed25519 DKIM keys: daemon" \
	"$(median "${daemon_ms[@]}") ms median (${daemon_ms[*]}), outpost reload" \
	"wall $(median "${cli_ms[@]}") ms median (${cli_ms[*]})"
