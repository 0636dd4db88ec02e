#!/bin/bash
# t/bench/cluster.sh — what sharing limits through Redis costs a message
# (issue "Shape across nodes"; called by run.sh, not in its default
# BENCHES: `BENCHES=cluster`).  The relay benchmark's Outpost run
# (relay.sh, BENCH_RELAY_RUNS=outpost, no peer) twice in one run, with the
# same load and the same limits: each of the 50 domains with an MX host of
# its own (DNS_MX_PER_DOMAIN=1: 50 sites) and a rate that does not bind
# there (destination "*" { max_messages_per_minute = 60000 }: 1,000 a
# second per site), so that every message takes its rate's turn:
#   alone    no cluster: limits counted in the process
#   shared   cluster { redis = a redis-server of ours on a loopback port }:
#            a connection lease per connection, and the rate's turns
#            asked of Redis (EVALSHA), up to 50 ms of a site's rate at once
# Figures: end-to-end msg/s and outpostd CPU per message of each, and what
# sharing adds per message.  Env in: BENCH_BUILD, BENCH_OUT, and relay.sh's
# (BENCH_N, BENCH_SIZE, BENCH_SESSIONS).  Writes BENCH_OUT/cluster.json and
# cluster.md.  Loopback only; redis-server (Debian's) is stopped on exit.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
work=$(mktemp -d /tmp/outpost-bench-cluster.XXXXXX)
REDIS_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	stop_pid "$REDIS_PID" 10
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! command -v redis-server >/dev/null; then
	echo "cluster: redis-server missing (make deps installs it)" >&2
	exit 1
fi
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
REDIS_PID=$!
wait_port "$rport" 20 "$REDIS_PID" || { echo "cluster: redis-server did not start" >&2; exit 1; }
rate='destination "*" { max_messages_per_minute = 60000 }'
status=0
for run in alone shared; do
	extra=$rate
	[ "$run" = shared ] && extra="$rate
cluster { redis = \"127.0.0.1:$rport\" nodes = 1 }"
	mkdir -p "$work/$run"
	echo "cluster: $run" >&2
	DNS_MX_PER_DOMAIN=1 BENCH_OUT=$work/$run BENCH_PEERS=0 BENCH_RELAY_RUNS=outpost \
	    BENCH_OUTPOST_EXTRA_CONF=$extra "$HERE/relay.sh" >"$work/$run.log" 2>&1 || status=1
	cp "$work/$run/relay.json" "$OUT/cluster-$run-relay.json" 2>/dev/null || status=1
done
"$PY" - "$OUT" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
def load(run):
    try:
        return json.load(open(os.path.join(out, "cluster-%s-relay.json" % run)))["outpost"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
a, s = load("alone"), load("shared")
res = {"benchmark": "cluster", "alone": a, "shared": s}
def f(r, k):
    return r.get(k) if r else None
ca, cs = f(a, "cpu_s_per_1000"), f(s, "cpu_s_per_1000")
ra, rs = f(a, "end_to_end_msg_per_s"), f(s, "end_to_end_msg_per_s")
res["cpu_us_per_msg_added"] = round((cs - ca) * 1000, 1) if ca and cs else None
res["rate_ratio_shared_alone"] = round(rs / ra, 3) if ra and rs else None
json.dump(res, open(os.path.join(out, "cluster.json"), "w"), indent=1)
def c(v, fmt):
    return fmt.format(v) if v is not None else "n/a"
md = ["## Limits shared through Redis: what they cost a message", "",
      "The relay benchmark's Outpost run twice, each of the 50 domains with "
      "an MX host of its own and a rate that does not bind (60,000 a minute "
      "per site; every message takes its turn): alone, and with cluster { "
      "redis } (a lease per connection; the rate's turns asked of Redis, up "
      "to 50 ms of a site's rate at once).", "",
      "| | alone | shared (Redis) |", "|---|---|---|",
      "| end-to-end msg/s | %s | %s |" % (c(ra, "{:,.0f}"), c(rs, "{:,.0f}")),
      "| outpostd CPU s per 1,000 messages | %s | %s |" % (c(ca, "{:.3f}"), c(cs, "{:.3f}")),
      "| peak RSS (MiB, VmHWM) | %s | %s |" % (c(f(a, "peak_rss_mib"), "{:.1f}"),
                                             c(f(s, "peak_rss_mib"), "{:.1f}")),
      "",
      "Sharing adds **%s µs of CPU per message**; shared / alone end to end: **%s**." % (
          c(res["cpu_us_per_msg_added"], "{:.1f}"),
          c(res["rate_ratio_shared_alone"], "{:.3f}")), ""]
open(os.path.join(out, "cluster.md"), "w").write("\n".join(md))
print("\n".join(md))
PYEOF
exit $status
