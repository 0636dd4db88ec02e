#!/bin/bash
# make demo: the whole job on one machine, loopback only.
#
#   outpost-load ──SMTP──▶ outpostd ──SMTP/STARTTLS──▶ outpost-sink
#   (campaign platform)       │                         (the recipients' MX)
#   swaks ──STARTTLS+AUTH──▶  │ ──DKIM-signed──▶ a mailbox (outpost-sink,
#   (a submitting user)       │                  up only later)
#                             └── DNS: a dnsmasq of the demo's own
#
# Every step is checked: the demo exits non-zero at the first one that
# fails.  Its directory (DEMO_DIR, default /tmp/outpost-demo: config, keys,
# queue, logs, the received message) is left for you to look at; the next
# run removes it first.  Usage: demo.sh [BUILD_DIR]; DEMO_N messages (5000).
set -eu
BUILD=$(cd "${1:-build}" && pwd)
BIN=${OUTPOST_BIN:-$BUILD/bin}
TOOLS=${OUTPOST_TOOLS:-$BUILD/tools}
N=${DEMO_N:-5000}
dir=${DEMO_DIR:-/tmp/outpost-demo}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
pw=demo-password-1 # the demo user's password: loopback only, thrown away

pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "demo: FAILED at line $LINENO of $0 (files in $dir)" >&2' ERR
ours=
fail() {
	echo "demo: FAILED: $*" >&2
	if [ -n "$ours" ]; then
		# What the daemon and the load tool said last, for whoever
		# reads this after the directory is gone.
		for f in outpostd.log load.json; do
			[ -s "$dir/$f" ] || continue
			echo "demo: the end of $f:" >&2
			tail -n 20 "$dir/$f" | sed 's/^/   /' >&2
		done
		echo "demo: its files are in $dir" >&2
	fi
	exit 1
}

# A fresh directory each run: a previous demo's is removed, anything else
# at that path is left alone.
if [ -e "$dir" ]; then
	[ -e "$dir/.outpost-demo" ] ||
		fail "$dir exists and is not a demo directory; set DEMO_DIR"
	rm -rf "$dir"
fi
mkdir -p "$dir/keys" "$dir/mailbox"
touch "$dir/.outpost-demo"
ours=1
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$dir"
conf=$dir/demo.conf
outpost() { "$BIN/outpost" -c "$conf" "$@"; }

free_port() {
	$py -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Until port $1 accepts (60 s at most: an ASan build on a busy machine
# is slow to start); false at once if process $2, when given, exits.
wait_tcp() {
	for _ in $(seq 1200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		[ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
wait_file() {
	for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.05; done
	return 1
}
json() { $py -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
indent() { sed 's/^/   /'; }
# Until dnsmasq (pid $2) answers on port $1; false if it exits first.
wait_dns() {
	$py - "$1" "$2" <<'PY'
import os, sys, time
import dns.message, dns.query, dns.rdatatype
q = dns.message.make_query("mx.demo.test", dns.rdatatype.A)
for _ in range(100):
    if not os.path.exists("/proc/%s" % sys.argv[2]):
        sys.exit(1)
    try:
        if dns.query.udp(q, "127.0.0.1", port=int(sys.argv[1]), timeout=0.2).answer:
            sys.exit(0)
    except Exception:
        time.sleep(0.05)
sys.exit(1)
PY
}

# Five TCP ports at once, each socket held until all are picked: one at a
# time, the kernel can hand out a port it just gave (the inbox's "not up
# yet" MX then was the campaign's sink, and its mail left at once).
read -r relay_port submit_port sink_port mbox_port metrics_port < <($py -c '
import socket
held = [socket.socket() for _ in range(5)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))')
dns_port=$(free_port SOCK_DGRAM)

echo "== 1. keys for the demo's sender domain brand.demo.test"
"$BIN/outpost" dkim keygen brand.demo.test s2026 \
	--key "$dir/keys/brand.s2026.key" --txt "$dir/keys/brand.s2026.txt" \
	>"$dir/keys/keygen.out" || fail "outpost dkim keygen (RSA)"
"$BIN/outpost" dkim keygen brand.demo.test e2026 --ed25519 \
	--key "$dir/keys/brand.e2026.key" --txt "$dir/keys/brand.e2026.txt" \
	>>"$dir/keys/keygen.out" || fail "outpost dkim keygen (Ed25519)"
# Started as root, outpostd reads keys again (outpost reload) as outpost:
# the keys are its own, 0600, as outpostd(8) asks.
if [ "$(id -u)" = 0 ] && id outpost >/dev/null 2>&1; then
	chown outpost "$dir/keys/brand.s2026.key" "$dir/keys/brand.e2026.key"
fi
rsa_txt=$(cat "$dir/keys/brand.s2026.txt")
ed_txt=$(cat "$dir/keys/brand.e2026.txt")
echo "   outpost dkim keygen brand.demo.test s2026            (RSA-2048)"
echo "   outpost dkim keygen brand.demo.test e2026 --ed25519"
echo "   published: s2026._domainkey.brand.demo.test TXT \"${rsa_txt:0:40}...\""
echo "              e2026._domainkey.brand.demo.test TXT \"$ed_txt\""
user_block=$(printf '%s\n' "$pw" | "$BIN/outpost" passwd demo brand.demo.test) ||
	fail "outpost passwd"
echo "   outpost passwd demo brand.demo.test  (an Argon2id hash of its password)"

echo "== 2. the recipients' side: DNS (dnsmasq) and an MX host (outpost-sink, STARTTLS)"
mx_args=()
for i in $(seq 0 9); do
	mx_args+=("--mx-host=d$i.demo.test,mx.demo.test,10")
done
# The port was free a moment ago; if another program took it since, dnsmasq
# exits at once: try another.
for try in 1 2 3 4 5; do
	dnsmasq --keep-in-foreground --no-daemon --port="$dns_port" \
		--listen-address=127.0.0.1 --bind-interfaces --no-resolv \
		--no-hosts --conf-file=/dev/null --user=root \
		--pid-file="$dir/dnsmasq.pid" --local=/test/ \
		--host-record=mx.demo.test,127.0.0.1 \
		--mx-host=campaign.demo.test,mx.demo.test,10 "${mx_args[@]}" \
		--txt-record="s2026._domainkey.brand.demo.test,$rsa_txt" \
		--txt-record="e2026._domainkey.brand.demo.test,$ed_txt" \
		2>"$dir/dnsmasq.log" &
	dpid=$!
	pids+=("$dpid")
	wait_dns "$dns_port" $dpid && break
	kill -0 $dpid 2>/dev/null &&
		fail "dnsmasq does not answer: $(cat "$dir/dnsmasq.log")"
	[ "$try" -lt 5 ] ||
		fail "dnsmasq did not start: $(cat "$dir/dnsmasq.log")"
	dns_port=$(free_port SOCK_DGRAM)
done
"$TOOLS/outpost-sink" --listen "127.0.0.1:$sink_port" --starttls \
	--stats "$dir/sink.json" --ready-file "$dir/sink.ready" \
	--count-only >"$dir/sink.log" 2>&1 &
pids+=($!)
wait_file "$dir/sink.ready" || fail "outpost-sink did not start: $(cat "$dir/sink.log")"
echo "   DNS on 127.0.0.1:$dns_port (UDP); MX of d0..d9.demo.test and campaign.demo.test: 127.0.0.1:$sink_port"

echo "== 3. outpostd on its embedded defaults, plus what the demo needs"
cat >"$conf" <<EOF
# The embedded defaults, plus the demo's DNS, MX port, a submission
# listener for its user, and its DKIM keys; every port its own (another
# outpostd may hold the defaults' 2525 and 9025).
listener "127.0.0.1:$relay_port" { }
metrics { listen = "127.0.0.1:$metrics_port" }
listener "127.0.0.1:$submit_port" { tls = starttls  require_auth = true }
relay { networks = { "127.0.0.0/8", "::1/128" } }
tls { generate = true }
data_dir = "$dir/var"
dns { servers = "127.0.0.1:$dns_port" }
delivery { port = $sink_port  retry_intervals = { "2s" }  retry_jitter = 0 }
# The mailbox of inbox.demo.test: its MX host is not up yet.
route "inbox.demo.test" { host = "127.0.0.1:$mbox_port" }
$user_block
dkim "brand.demo.test" {
	selector = "s2026"  rsa_key = "$dir/keys/brand.s2026.key"
	ed25519_selector = "e2026"  ed25519_key = "$dir/keys/brand.e2026.key"
}
EOF
sed 's/^/   | /' "$conf"
"$BIN/outpostd" -c "$conf" 2>"$dir/outpostd.log" &
opid=$!
pids+=("$opid")
if ! wait_tcp "$submit_port" $opid || ! wait_tcp "$relay_port" $opid ||
	! kill -0 $opid 2>/dev/null; then
	cat "$dir/outpostd.log" >&2
	fail "outpostd did not start"
fi

echo "== 4. a campaign: $N messages of 4 KB to 10 domains, 20 pipelining sessions"
t0=$(date +%s.%N)
"$TOOLS/outpost-load" --host 127.0.0.1 --port "$relay_port" --sessions 20 \
	--count "$N" --size 4096 --pipelining --progress=always \
	--from news@campaign.demo.test --to 'user%u@d%d.demo.test' \
	--domains 10 --json >"$dir/load.json" || fail "outpost-load"
echo
echo "   and a few that will not go smoothly: 20 deferred once, 10 unknown users"
"$TOOLS/outpost-load" --host 127.0.0.1 --port "$relay_port" --sessions 2 \
	--count 20 --from news@campaign.demo.test \
	--to 'deferonce%u@d1.demo.test' --json >/dev/null || fail "outpost-load"
"$TOOLS/outpost-load" --host 127.0.0.1 --port "$relay_port" --sessions 2 \
	--count 10 --from news@campaign.demo.test \
	--to 'reject%u@d2.demo.test' --json >/dev/null || fail "outpost-load"
want=$((N + 20 + 10)) # every message, plus the 10 DSNs to the sender
echo "== 5. waiting for the queue to drain"
drained=
for _ in $(seq 240); do
	got=$(json "$dir/sink.json" 'messages' 2>/dev/null || echo 0)
	left=$(outpost queue list --json | wc -l)
	if [ "$got" -ge "$want" ] && [ "$left" -eq 0 ]; then
		drained=1
		break
	fi
	sleep 0.5
done
echo "   delivered $got, queued $left"
[ -n "$drained" ] || fail "the queue did not drain in 2 minutes"

echo
echo "== 6. AUTH over STARTTLS: swaks as user demo, From brand.demo.test"
sw=$(swaks --server "127.0.0.1:$submit_port" --tls --auth PLAIN \
	--auth-user demo --auth-password "$pw" \
	--from hello@brand.demo.test --to alice@inbox.demo.test \
	--header "Subject: hello from the Outpost demo" \
	--body "Signed by outpostd, verified by python3-dkim." 2>&1) || {
	echo "$sw" | indent
	fail "swaks"
}
printf '%s\n' "$sw" >"$dir/swaks.log"
echo "$sw" | grep -E '^ *(<-  220|-> STARTTLS|<-  220 .*TLS|=== TLS started|~> AUTH|<~  235|~> MAIL|<~  250 .*queued)' |
	sed -E 's/(AUTH PLAIN) .*/\1 (credentials)/' | indent
qid=$(echo "$sw" | sed -nE 's/^ *<~  250 [0-9.]+ ([0-9a-f]+) queued.*/\1/p')
[ -n "$qid" ] || fail "no \"250 ... queued\" from outpostd (see $dir/swaks.log)"

echo
echo "== 7. outpost queue summary while mail waits: inbox.demo.test's MX is not up yet"
for _ in $(seq 100); do
	outpost queue summary --json |
		grep -q '"domain":"inbox.demo.test".*"deferred":[1-9]' && break
	sleep 0.1
done
summary=$(outpost queue summary) || fail "outpost queue summary"
echo "$summary" | indent
echo "$summary" | grep -q '^inbox\.demo\.test  *1 ' ||
	fail "the summary does not show the message for inbox.demo.test"

echo
echo "== 8. the MX comes up; outpost queue retry --domain inbox.demo.test"
"$TOOLS/outpost-sink" --listen "127.0.0.1:$mbox_port" --starttls \
	--maildir "$dir/mailbox" --ready-file "$dir/mailbox.ready" \
	>"$dir/mailbox.log" 2>&1 &
pids+=($!)
wait_file "$dir/mailbox.ready" || fail "the mailbox's outpost-sink did not start"
outpost queue retry --domain inbox.demo.test | indent
eml=
for _ in $(seq 300); do
	for f in "$dir"/mailbox/*.eml; do
		[ -e "$f" ] && eml=$f
	done
	[ -n "$eml" ] && break
	sleep 0.1
done
[ -n "$eml" ] || fail "the message did not reach inbox.demo.test's MX"
log="$dir/var/log/delivery.log"
delivered() { grep '"event":"delivery"' "$log" | grep "\"id\":\"$qid\""; }
for _ in $(seq 50); do
	delivered >/dev/null && break
	sleep 0.1
done
delivered >/dev/null || fail "no delivery event for $qid in $log"
delivered |
	grep -oE '"(destination|code|attempt|tls_version)":("[^"]*"|[0-9]+)' |
	tr '\n' ' ' | sed 's/^/   delivered: /'
echo
summary=$(outpost queue summary) || fail "outpost queue summary"
echo "$summary" | indent

echo
echo "== 9. the message as the mailbox received it, checked by python3-dkim"
grep -iE '^(DKIM-Signature|From|Subject):' "$eml" | cut -c1-76 | indent
$py "$here/demo_verify.py" "$dns_port" "$eml" ||
	fail "DKIM verification of $eml"

echo
echo "== the delivery log: one JSON object per event, no address in clear"
grep -m 2 '"event":"delivery"' "$log" | indent
grep -m 1 '"event":"bounce"' "$log" | indent
echo
rcpt=user42@d2.demo.test
h=$(outpost hash "$rcpt")
echo "== one recipient's lines: grep \$(outpost hash $rcpt) delivery.log"
echo "   (outpost hash $rcpt = $h)"
grep "$h" "$log" | cut -c1-160 | indent

kill -TERM $opid
wait $opid || fail "outpostd exited with status $?"

echo
echo "== report"
$py - "$dir" "$t0" "$N" <<'PY' || fail "the report found a fault"
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
empty = "queued=0" in log
print("   accepted    %6d messages, %8.0f msg/s (durably queued, 250 after fsync)"
      % (load["accepted"], load["accepted_per_s"]))
print("   delivered   %6d messages at the MX; the campaign end to end "
      "at %.0f msg/s (first injection to last delivery)"
      % (sink["messages"], n / span))
print("   TLS share   %5.1f%% of connections to the MX used STARTTLS" % (100 * tls))
print("   deferrals   %6d (retried and then delivered)" % defer)
print("   bounces     %6d (each answered with a DSN to the sender)" % bounce)
print("   queue       %s" % ("empty" if empty else "NOT empty"))
sys.exit(0 if load["accepted"] == n and sink["messages"] >= n + 30
         and bounce == 10 and empty else 1)
PY

echo
echo "== where things are: $dir (left for you to look at)"
echo "   demo.conf              the configuration outpostd ran with"
echo "   var/                   outpostd's data_dir: queue (LMDB), keys, log/delivery.log"
echo "   keys/                  the DKIM keys of brand.demo.test and their TXT records"
echo "   mailbox/               the signed message as inbox.demo.test's MX received it"
echo "   outpostd.log swaks.log sink.log dnsmasq.log"
echo "   The next demo removes it first; to remove it now: rm -rf $dir"
