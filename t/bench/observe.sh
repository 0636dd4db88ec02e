#!/bin/bash
# t/bench/observe.sh — what do the delivery log and the metrics endpoint
# cost?  (called by run.sh).  The relay benchmark (relay.sh: BENCH_N
# messages of BENCH_SIZE bytes over BENCH_SESSIONS pipelining sessions to 50
# domains, routed by MX through a dnsmasq of ours, to outpost-sink; plain and
# STARTTLS rows; no Postfix) run BENCH_OBSERVE_ROUNDS times (3) with
#   on   log { delivery_file, audit_file } and metrics { listen } on (the
#        delivery log outside data_dir so that its lines can be counted:
#        every message must show a reception and a delivery line; /metrics
#        scraped once a second during the run, as a busy Prometheus would)
#   off  log { delivery_file = "" audit_file = "" }  metrics { listen = "" }
# in turn, the order swapped every round.  Figures: the median over the
# rounds of end-to-end msg/s and of CPU s per 1,000 messages, and the cost
# of "on" against "off" (goal: at most 5 %).
# Env in: BENCH_BUILD, BENCH_OUT.  Writes BENCH_OUT/observe.json and
# observe.md.  Loopback only.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
ROUNDS=${BENCH_OBSERVE_ROUNDS:-3}
N=${BENCH_N:-20000}
WARMUP=${BENCH_WARMUP:-200}

work=$(mktemp -d /tmp/outpost-bench-observe.XXXXXX)
# outpostd started as root becomes user outpost: let it reach its data_dir.
chmod 711 "$work"
SCRAPER=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	[ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null
	mkdir -p "$OUT/observe-logs"
	cp "$work"/*.txt "$OUT/observe-logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

status=0
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
	for mode in $order; do
		o=$work/$mode.$r
		mkdir -p "$o"
		if [ "$mode" = on ]; then
			mp=$(free_port)
			extra="log { delivery_file = \"$work/delivery.$r.log\" audit_file = \"$work/audit.$r.log\" }
metrics { listen = \"127.0.0.1:$mp\" }"
			# A scraper, once a second, for as long as the round runs.
			(while :; do
				curl -s -o /dev/null "http://127.0.0.1:$mp/metrics" &&
				    echo ok >>"$work/scrapes.$r.txt"
				sleep 1
			done) &
			SCRAPER=$!
		else
			extra='log { delivery_file = "" audit_file = "" }
metrics { listen = "" }'
		fi
		echo "observe: round $r, logs and metrics $mode"
		BENCH_PEERS=0 BENCH_OUT=$o BENCH_OUTPOST_EXTRA_CONF="$extra" \
		    "$HERE/relay.sh" >"$work/relay.$mode.$r.txt" 2>&1 ||
		    { echo "observe: relay.sh failed (round $r, $mode): $(tail -n 3 "$work/relay.$mode.$r.txt")"; status=1; }
		if [ -n "$SCRAPER" ]; then
			kill "$SCRAPER" 2>/dev/null || true
			wait "$SCRAPER" 2>/dev/null || true
			SCRAPER=
		fi
		if [ "$mode" = on ]; then
			# Both rows (plain, STARTTLS) wrote to the same log.
			grep -c '"event":"reception"' "$work/delivery.$r.log" >"$work/receptions.$r.txt" || true
			grep -c '"event":"delivery"' "$work/delivery.$r.log" >"$work/deliveries.$r.txt" || true
		fi
	done
done

"$PY" - "$work" "$OUT" "$ROUNDS" "$N" "$WARMUP" <<'EOF' || status=1
import json, os, statistics, sys
work, out, rounds, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def relay(mode, r):
    try:
        return json.load(open(os.path.join(work, "%s.%d" % (mode, r), "relay.json")))
    except (OSError, ValueError):
        return None
def num(path):
    try:
        return int(open(os.path.join(work, path)).read().strip() or 0)
    except (OSError, ValueError):
        return 0
res = {"benchmark": "observe", "rounds": rounds, "n": n, "rows": {}, "notes": []}
ok = True
for row in ("outpost", "outpost_tls"):
    per = {}
    for mode in ("on", "off"):
        rate, cpu = [], []
        for r in range(1, rounds + 1):
            j = relay(mode, r)
            x = j and j.get(row)
            if x and x.get("end_to_end_msg_per_s"):
                rate.append(x["end_to_end_msg_per_s"])
                cpu.append(x["cpu_s_per_1000"])
        per[mode] = {"end_to_end_msg_per_s": rate, "cpu_s_per_1000": cpu,
                     "median_rate": statistics.median(rate) if rate else None,
                     "median_cpu": statistics.median(cpu) if cpu else None}
    on, off = per["on"], per["off"]
    if on["median_rate"] and off["median_rate"]:
        per["rate_cost_pct"] = round(100 * (off["median_rate"] - on["median_rate"]) / off["median_rate"], 1)
        per["cpu_cost_pct"] = round(100 * (on["median_cpu"] - off["median_cpu"]) / off["median_cpu"], 1)
    else:
        ok = False
        res["notes"].append("%s: missing rounds" % row)
    res["rows"][row] = per
# Each round's log: the plain and the STARTTLS row, warm-up included.
want = 2 * (n + warmup)
res["log_lines"] = []
for r in range(1, rounds + 1):
    try:  # a line per successful scrape
        sc = len(open(os.path.join(work, "scrapes.%d.txt" % r)).read().split())
    except OSError:
        sc = 0
    rec, dl = num("receptions.%d.txt" % r), num("deliveries.%d.txt" % r)
    res["log_lines"].append({"round": r, "receptions": rec, "deliveries": dl, "scrapes": sc})
    if rec != want or dl != want:
        ok = False
        res["notes"].append("round %d: %d reception and %d delivery lines in the log, want %d each" % (r, rec, dl, want))
    if sc == 0:
        ok = False
        res["notes"].append("round %d: /metrics was never scraped" % r)
json.dump(res, open(os.path.join(out, "observe.json"), "w"), indent=1)
f = lambda v, p="%.0f": (p % v) if v is not None else "n/a"
md = ["## Cost of the delivery log and the metrics endpoint: relay, %d messages, median of %d rounds" % (n, rounds), "",
      "| | logs + metrics on | off | cost of on |", "|---|---|---|---|"]
for row, what in (("outpost", "plain"), ("outpost_tls", "STARTTLS to the sink")):
    p = res["rows"][row]
    md.append("| end-to-end msg/s, %s | %s | %s | %s %% |" % (what, f(p["on"]["median_rate"]), f(p["off"]["median_rate"]), f(p.get("rate_cost_pct"), "%.1f")))
    md.append("| CPU s / 1,000 msg, %s | %s | %s | %s %% |" % (what, f(p["on"]["median_cpu"], "%.3f"), f(p["off"]["median_cpu"], "%.3f"), f(p.get("cpu_cost_pct"), "%.1f")))
    md.append("| … every round, msg/s (on / off), %s | %s | %s | |" % (what, ", ".join("%.0f" % x for x in p["on"]["end_to_end_msg_per_s"]), ", ".join("%.0f" % x for x in p["off"]["end_to_end_msg_per_s"])))
md.append("")
md.append("Delivery-log lines per round (both rows, warm-up included; want %d each): %s." % (want, "; ".join("round %(round)d: %(receptions)d receptions, %(deliveries)d deliveries, %(scrapes)d scrapes" % x for x in res["log_lines"])))
md.append("Goal: logging and metrics cost at most 5 %% of the end-to-end relay (plain row: %s %% by rate, %s %% by CPU)." % (f(res["rows"]["outpost"].get("rate_cost_pct"), "%.1f"), f(res["rows"]["outpost"].get("cpu_cost_pct"), "%.1f")))
for x in res["notes"]:
    md.append("- note: " + x)
md.append("")
open(os.path.join(out, "observe.md"), "w").write("\n".join(md))
print("\n".join(md))
sys.exit(0 if ok else 1)
EOF
exit $status
