#!/bin/bash
# t/bench/watchdog.sh — what does the watchdog cost (called by run.sh)?
#   1. acceptance with the watchdog off and on, in the same run: rounds of
#      OFF, ON (BENCH_WD_ROUNDS, default 3), each a fresh outpostd relaying
#      to smtp-sink, the same load (outpost-load, BENCH_WD_SESSIONS
#      pipelining sessions, BENCH_WD_N messages of 1 recipient, every
#      recipient new, after a warm-up of 200): the ratio ON / OFF of the
#      median accepted msg/s.  ON has learning = 365d, so every message goes
#      through the whole profile (seen lookups and writes, trap check, the
#      signals) but nothing is stopped.
#   2. the recipient history: BENCH_WD_HISTORY new recipients (default
#      200,000; 1,000,000 for the figure of record) in messages of 100
#      recipients, then the "seen" database's entries and pages (mdb_stat)
#      and outpostd's peak RSS, as bytes per recipient and per 1M.
#   3. a profile's memory (sizeof, compiled from the source) per identity.
# Env in: BENCH_BUILD, BENCH_OUT (run.sh sets both).  Writes
# BENCH_OUT/watchdog.json and watchdog.md.  Loopback only; every process it
# starts is stopped by PID on exit.  About 2 minutes on 2 cores by default.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
bench_init
N=${BENCH_WD_N:-10000}
SESSIONS=${BENCH_WD_SESSIONS:-20}
ROUNDS=${BENCH_WD_ROUNDS:-3}
HISTORY=${BENCH_WD_HISTORY:-200000}
WARMUP=200

work=$(mktemp -d /tmp/outpost-bench-watchdog.XXXXXX)
chmod 711 "$work"
OPD_PID='' SINK_PID=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	stop_pid "$OPD_PID" 30
	stop_pid "$SINK_PID" 5
	mkdir -p "$OUT/watchdog-logs"
	cp "$work"/*.log "$work"/*.json "$OUT/watchdog-logs/" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { echo "watchdog: $*" >&2; echo "$*" >>"$work/notes.txt"; }

# start LABEL ENABLED: a fresh outpostd (data under $work/LABEL) relaying
# to the sink; sets OPD_PID and PORT.
start() {
	local d=$work/$1
	PORT=$(free_port)
	rm -rf "$d"
	mkdir -p "$d"
	relay_conf "$d/outpost.conf" "$d" "$PORT" "$2" \
	    "watchdog { enabled = $3 learning = 365d }"
	"$OUTPOSTD" -c "$d/outpost.conf" >"$work/$1-outpostd.log" 2>&1 &
	OPD_PID=$!
	wait_port "$PORT" 30 "$OPD_PID" || { note "$1: outpostd did not start"; return 1; }
}

load() {
	"$LOAD" --host 127.0.0.1 --port "$PORT" --pipelining --json \
	    --from news@sender.test --timeout 60 "$@"
}

sp=$(free_port)
sink_start "$sp" "$work/sink.log" || { note "smtp-sink did not start"; exit 1; }

# 1. off / on ---------------------------------------------------------------
r=0
while [ "$r" -lt "$ROUNDS" ]; do
	for mode in off on; do
		label=$mode-$r
		enabled=no
		[ "$mode" = on ] && enabled=yes
		start "$label" "$sp" "$enabled" || exit 1
		load --sessions "$SESSIONS" --count "$WARMUP" \
		    --to "warm$r%u@sink.test" >/dev/null 2>"$work/$label-warm.log" || true
		echo "watchdog: $label: $N messages, $SESSIONS sessions" >&2
		load --sessions "$SESSIONS" --count "$N" --to "$label-%u@sink.test" \
		    >"$work/$label.json" 2>"$work/$label-load.log" || note "$label: load exit $?"
		stop_pid "$OPD_PID" 30
		OPD_PID=
	done
	r=$((r + 1))
done

# 2. history ------------------------------------------------------------------
start history "$sp" yes || exit 1
msgs=$(((HISTORY + 99) / 100))
echo "watchdog: history: $HISTORY recipients in $msgs messages" >&2
t0=$(date +%s.%N)
load --sessions "$SESSIONS" --count "$msgs" --rcpts 100 \
    --to "h%u@d%d.sink.test" --domains 50 >"$work/history.json" \
    2>"$work/history-load.log" || note "history: load exit $?"
t1=$(date +%s.%N)
hwm=$(hwm_kib "$OPD_PID")
stop_pid "$OPD_PID" 30
OPD_PID=
mdb_stat -e -s seen "$work/history/var/queue" >"$work/history-mdbstat.log" 2>&1 ||
	note "mdb_stat failed: $(cat "$work/history-mdbstat.log")"
# A baseline daemon's peak for the same load, watchdog off.
start history-off "$sp" no || exit 1
load --sessions "$SESSIONS" --count "$msgs" --rcpts 100 \
    --to "h%u@d%d.sink.test" --domains 50 >"$work/history-off.json" \
    2>"$work/history-off-load.log" || note "history-off: load exit $?"
hwm_off=$(hwm_kib "$OPD_PID")
stop_pid "$OPD_PID" 30
OPD_PID=

# 3. a profile's size ------------------------------------------------------------
cat >"$work/sz.c" <<'EOF'
#include <stdio.h>
#include "mta/observe/watchdog_int.h"
int main(void) { printf("%zu\n", sizeof(struct wd_profile)); return 0; }
EOF
profile=$(cc -I"$SRC" -o "$work/sz" "$work/sz.c" 2>"$work/sz.log" && "$work/sz" || echo "")

"$PY" - "$work" "$OUT" "$N" "$SESSIONS" "$ROUNDS" "$HISTORY" "${hwm:-0}" \
    "${hwm_off:-0}" "${profile:-0}" "$t0" "$t1" <<'EOF'
import json, os, re, statistics, sys
(work, out, n, sessions, rounds, history, hwm, hwm_off, profile, t0,
 t1) = sys.argv[1:]
def rate(label):
    try:
        return json.load(open(os.path.join(work, label + ".json")))["accepted_per_s"]
    except (OSError, ValueError, KeyError):
        return None
off = [rate("off-%d" % r) for r in range(int(rounds))]
on = [rate("on-%d" % r) for r in range(int(rounds))]
med = lambda v: statistics.median([x for x in v if x]) if any(v) else None
mo, mn = med(off), med(on)
st = open(os.path.join(work, "history-mdbstat.log")).read()
def stat(key):
    m = re.search(key + r":\s*(\d+)", st)
    return int(m.group(1)) if m else None
entries, psize = stat("Entries"), stat("Page size")
pages = sum(stat(k) or 0 for k in ("Branch pages", "Leaf pages",
                                   "Overflow pages"))
db = pages * psize if psize else None
per = db / entries if db and entries else None
name_max, htab = 256, 24
ident = int(profile) + name_max + htab if int(profile) else None
notes = []
try:
    notes = open(os.path.join(work, "notes.txt")).read().splitlines()
except OSError:
    pass
res = {"benchmark": "watchdog", "n": int(n), "sessions": int(sessions),
       "rounds": int(rounds), "off_msg_per_s": off, "on_msg_per_s": on,
       "ratio_on_off": round(mn / mo, 3) if mo and mn else None,
       "history_recipients": int(history), "seen_entries": entries,
       "seen_bytes": db, "seen_bytes_per_recipient": round(per, 1) if per else None,
       "seen_mib_per_1m": round(per * 1e6 / 2**20, 1) if per else None,
       "history_load_s": round(float(t1) - float(t0), 1),
       "rss_peak_kib_on": int(hwm), "rss_peak_kib_off": int(hwm_off),
       "profile_bytes": int(profile) or None,
       "identity_bytes": ident,
       "identities_max_default_mib": round(ident * 10000 / 2**20, 1) if ident else None,
       "notes": notes}
with open(os.path.join(out, "watchdog.json"), "w") as f:
    json.dump(res, f, indent=1)
    f.write("\n")
fmt = lambda v: "n/a" if v is None else ("{:,.0f}".format(v) if isinstance(v, (int, float)) else str(v))
lines = ["## Watchdog: %s messages, %s pipelining sessions, %s rounds of off/on" % (n, sessions, rounds), "",
         "| | off | on |", "|---|---|---|",
         "| accepted msg/s (each round) | %s | %s |" % (", ".join(fmt(x) for x in off), ", ".join(fmt(x) for x in on)),
         "| median | %s | %s |" % (fmt(mo), fmt(mn)), "",
         "**on / off: %s**" % (res["ratio_on_off"] if res["ratio_on_off"] is not None else "n/a"), "",
         "Recipient history: %s recipients → %s entries in the seen database, "
         "%s bytes (%s bytes a recipient: %s MiB per 1M recipients, on disk "
         "and in the page cache, not the heap)." % (fmt(int(history)), fmt(entries), fmt(db),
             res["seen_bytes_per_recipient"], res["seen_mib_per_1m"]),
         "outpostd peak RSS for that load: %s KiB with the watchdog, %s KiB without." % (fmt(int(hwm)), fmt(int(hwm_off))),
         "A profile: %s bytes; an identity with its name and table entry about %s bytes "
         "(watchdog.identities_max = 10000: %s MiB at most)." % (fmt(res["profile_bytes"]), fmt(ident), res["identities_max_default_mib"])]
lines += ["- note: " + x for x in notes]
text = "\n".join(lines) + "\n"
open(os.path.join(out, "watchdog.md"), "w").write(text)
print(text)
EOF
