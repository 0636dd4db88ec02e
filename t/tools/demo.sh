#!/bin/bash
# make demo: the whole job on one machine, loopback only.
#
#   outpost-load ──SMTP──▶ outpostd ──SMTP/STARTTLS──▶ outpost-sink
#   (campaign platform)    127.0.0.1:2525               (the recipients' MX)
#                             │
#                             └── DNS: a dnsmasq of the demo's own
#
# outpostd runs on its embedded defaults; the demo only adds what it needs to
# find the demo's DNS server and MX port.  Everything is torn down at the end.
set -eu
BUILD=$(cd "${1:-build}" && pwd)
N=${DEMO_N:-5000}
work=$(mktemp -d /tmp/outpost-demo.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_tcp() {
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
json() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }

if (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; then
	echo "demo: 127.0.0.1:2525 is in use; stop whatever listens there" >&2
	exit 1
fi
sink_port=$(free_port SOCK_STREAM)
dns_port=$(free_port SOCK_DGRAM)

echo "== 1. the recipients' side: an MX host (outpost-sink, STARTTLS) and DNS"
mx_args=()
for i in $(seq 0 9); do
	mx_args+=("--mx-host=d$i.demo.test,mx.demo.test,10")
done
dnsmasq --keep-in-foreground --no-daemon --port="$dns_port" \
	--listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
	--conf-file=/dev/null --user=root --pid-file="$work/dnsmasq.pid" \
	--local=/test/ --host-record=mx.demo.test,127.0.0.1 \
	--mx-host=campaign.demo.test,mx.demo.test,10 "${mx_args[@]}" \
	2>"$work/dnsmasq.log" &
pids+=($!)
"$BUILD/tools/outpost-sink" --listen "127.0.0.1:$sink_port" --starttls \
	--stats "$work/sink.json" --ready-file "$work/sink.ready" \
	--count-only >"$work/sink.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -e "$work/sink.ready" ] && break; sleep 0.05; done
echo "   MX for d0..d9.demo.test and campaign.demo.test: 127.0.0.1:$sink_port"

echo "== 2. outpostd on its embedded defaults (submission on 127.0.0.1:2525)"
cat >"$work/demo.conf" <<EOF
# The embedded defaults, plus where the demo's DNS and MX port are.
listener "127.0.0.1:2525" { }
relay { networks = { "127.0.0.0/8", "::1/128" } }
tls { generate = true }
data_dir = "$work/var"
dns { servers = "127.0.0.1:$dns_port" }
delivery { port = $sink_port  retry_intervals = { "2s" }  retry_jitter = 0 }
EOF
sed 's/^/   | /' "$work/demo.conf"
OUTPOST_LOOPBACK_ONLY=1 "$BUILD/bin/outpostd" -c "$work/demo.conf" \
	2>"$work/outpostd.log" &
opid=$!
pids+=($opid)
if ! wait_tcp 2525; then
	echo "demo: outpostd did not start:" >&2
	cat "$work/outpostd.log" >&2
	exit 1
fi

echo "== 3. a campaign: $N messages of 4 KB to 10 domains, 20 pipelining sessions"
t0=$(date +%s.%N)
"$BUILD/tools/outpost-load" --host 127.0.0.1 --port 2525 --sessions 20 \
	--count "$N" --size 4096 --pipelining --progress=always \
	--from news@campaign.demo.test --to 'user%u@d%d.demo.test' \
	--domains 10 --json >"$work/load.json"
echo "   and a few that will not go smoothly: 20 deferred once, 10 unknown users"
"$BUILD/tools/outpost-load" --host 127.0.0.1 --port 2525 --sessions 2 \
	--count 20 --from news@campaign.demo.test \
	--to 'deferonce%u@d1.demo.test' --json >/dev/null
"$BUILD/tools/outpost-load" --host 127.0.0.1 --port 2525 --sessions 2 \
	--count 10 --from news@campaign.demo.test \
	--to 'reject%u@d2.demo.test' --json >/dev/null
want=$((N + 20 + 10))   # every message, plus the 10 DSNs to the sender
echo "== 4. waiting for the queue to drain"
for _ in $(seq 600); do
	got=$(json "$work/sink.json" 'messages' 2>/dev/null || echo 0)
	left=$("$BUILD/bin/outpost" -c "$work/demo.conf" queue list --json | wc -l)
	printf '\r   delivered %6d  queued %6d' "$got" "$left"
	[ "$got" -ge "$want" ] && [ "$left" -eq 0 ] && break
	sleep 0.5
done
echo
"$BUILD/bin/outpost" -c "$work/demo.conf" queue list | head -5

echo
echo "== the delivery log: one JSON object per event, no address in clear"
log="$work/var/log/delivery.log"
for _ in $(seq 40); do [ -s "$log" ] && break; sleep 0.1; done
grep -m 2 '"event":"delivery"' "$log" | sed 's/^/   /'
grep -m 1 '"event":"bounce"' "$log" | sed 's/^/   /'
echo
rcpt=user42@d2.demo.test
h=$("$BUILD/bin/outpost" -c "$work/demo.conf" hash "$rcpt")
echo "== one recipient's lines: grep \$(outpost hash $rcpt) delivery.log"
echo "   (outpost hash $rcpt = $h)"
grep "$h" "$log" | cut -c1-160 | sed 's/^/   /'
echo
echo "== outpost queue summary"
"$BUILD/bin/outpost" -c "$work/demo.conf" queue summary 2>&1 | head -12 | sed 's/^/   /'

kill -TERM $opid
wait $opid || true

echo
echo "== report"
/usr/bin/python3 - "$work" "$t0" "$N" <<'PY'
import json, re, sys
work, t0, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
load = json.load(open(work + "/load.json"))
sink = json.load(open(work + "/sink.json"))
log = open(work + "/outpostd.log").read()
m = re.search(r"delivery: (\d+) delivered, (\d+) deferred, (\d+) bounced, "
              r"(\d+) expired", log)
deliv, defer, bounce, exp = map(int, m.groups()) if m else (0, 0, 0, 0)
# End to end for the campaign: until the sink held N messages.
cum, span = 0, sink["last_message_time"] - t0
for sec, cnt in sink.get("messages_per_second", []):
    cum += cnt
    if cum >= n:
        span = max(sec + 1 - t0, 0.001)
        break
tls = sink["tls_connections"] / max(1, sink["connections_total"])
print("   accepted    %6d messages, %8.0f msg/s (durably queued, 250 after fsync)"
      % (load["accepted"], load["accepted_per_s"]))
print("   delivered   %6d messages at the MX; the campaign end to end "
      "at %.0f msg/s (first injection to last delivery)"
      % (sink["messages"], n / span))
print("   TLS share   %5.1f%% of connections to the MX used STARTTLS" % (100 * tls))
print("   deferrals   %6d (retried and then delivered)" % defer)
print("   bounces     %6d (each answered with a DSN to the sender)" % bounce)
print("   queue       %s" % ("empty" if "queued=0" in log else "NOT empty"))
PY
