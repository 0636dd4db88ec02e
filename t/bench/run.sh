#!/bin/bash
# t/bench/run.sh BUILD_DIR — `make bench`: the benchmarks of t/bench, in
# sequence, into t/bench/results/<UTC date>/ (gitignored).  Builds nothing.
#   1. set-up: installs Postfix (smtp-sink, and the peer), OpenDKIM and
#      python3-dkim (signing's peer and verifier) if missing, as the shared
#      harness does (services kept from starting); BENCH_SETUP=0 skips
#   2. check-load.sh: outpost-load's figures against smtp-sink's counter
#      (BENCH_CHECK=0 skips); a disagreement stops the run
#   3. every benchmark in BENCHES (default "acceptance relay observe queue_scale
#      signing backoff_scale restore watchdog scan receivers"):
#      t/bench/NAME.sh, run with BENCH_BUILD and BENCH_OUT set, writes
#      NAME.json and NAME.md
#   4. results.json (machine + every benchmark) and summary.md
# A new benchmark is a script t/bench/NAME.sh with that contract, added to
# the default BENCHES below.  Loopback only.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
BUILD=$(cd "${1:-build}" && pwd)
BENCHES=${BENCHES:-acceptance relay observe queue_scale signing backoff_scale restore watchdog scan receivers}
OUT=${BENCH_OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# tee ignores SIGINT: it must outlive a Ctrl-C so the clean-ups can still
# write (a dead pipe would SIGPIPE them); it ends when its input closes.
exec > >(trap '' INT TERM; exec tee -a "$OUT/run.log") 2>&1
trap 'echo "run.sh: interrupted"; exit 130' INT TERM

echo "== outpost benchmarks: $BUILD -> $OUT"
if [ ! -x "$BUILD/tools/outpost-load" ]; then
	echo "run.sh: $BUILD/tools/outpost-load is not built (make build)" >&2
	exit 2
fi

# ---------------------------------------------------------------- set-up
need=()
{ command -v smtp-sink >/dev/null && command -v postfix >/dev/null; } || need+=(postfix)
command -v opendkim >/dev/null || need+=(opendkim)
command -v opendkim-genkey >/dev/null || need+=(opendkim-tools)
"$PY" -c 'import dkim, nacl' 2>/dev/null || need+=(python3-dkim python3-nacl)
if [ "${BENCH_SETUP:-1}" = 1 ] && [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "run.sh: ${need[*]} missing; run as root to install" >&2
	else
		echo "== installing ${need[*]} (services are not started: policy-rc.d)"
		pol=0
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod +x /usr/sbin/policy-rc.d
			pol=1
		fi
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" ||
		    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } ||
		    echo "run.sh: installing ${need[*]} failed: no ceiling, no peer, or no signing verifier" >&2
		[ "$pol" = 1 ] && rm -f /usr/sbin/policy-rc.d
	fi
fi

"$PY" - "$OUT/machine.json" <<'EOF'
import json, os, platform, subprocess, sys
cpu = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
mem = 0
for line in open("/proc/meminfo"):
    if line.startswith("MemTotal"):
        mem = round(int(line.split()[1]) / 1048576, 1)
df = subprocess.run(["df", "-T", "/tmp"], capture_output=True, text=True).stdout.split("\n")
json.dump({"cpu_model": cpu, "nproc": os.cpu_count(), "mem_gib": mem,
           "kernel": platform.release(),
           "tmp_fs": " ".join(df[1].split()[:2]) if len(df) > 1 else "",
           "loadavg_before": open("/proc/loadavg").read().split()[:3]},
          open(sys.argv[1], "w"), indent=1)
EOF

# ---------------------------------------------------------- load tool check
if [ "${BENCH_CHECK:-1}" = 1 ]; then
	if command -v smtp-sink >/dev/null; then
		echo "== check-load"
		if ! CHECK_N=${CHECK_N:-5000} "$HERE/check-load.sh" "$BUILD"; then
			echo "run.sh: outpost-load's figures disagree with smtp-sink: not benchmarking" >&2
			exit 1
		fi
	else
		echo "run.sh: smtp-sink missing: load tool check skipped" >&2
	fi
fi

# ------------------------------------------------------------ benchmarks
status=0
done_list=()
for b in $BENCHES; do
	echo
	echo "== $b"
	if [ ! -x "$HERE/$b.sh" ]; then
		echo "run.sh: no benchmark $HERE/$b.sh" >&2
		status=1
		continue
	fi
	BENCH_BUILD=$BUILD BENCH_OUT=$OUT "$HERE/$b.sh" || { echo "!! $b: incomplete (see notes above)"; status=1; }
	done_list+=("$b")
done

# --------------------------------------------------------------- summary
"$PY" - "$OUT" "${done_list[@]}" <<'EOF'
import datetime, json, os, sys
out, names = sys.argv[1], sys.argv[2:]
res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "machine": json.load(open(os.path.join(out, "machine.json"))),
       "benchmarks": {}}
md = ["# Outpost benchmarks — %s" % res["date"], "",
      "Machine: %(cpu_model)s, %(nproc)s CPUs, %(mem_gib)s GiB, kernel %(kernel)s, "
      "/tmp on %(tmp_fs)s." % res["machine"],
      "Ratios against a peer mean something only within one run on one machine.", ""]
for n in names:
    try:
        res["benchmarks"][n] = json.load(open(os.path.join(out, n + ".json")))
        md.append(open(os.path.join(out, n + ".md")).read())
    except (OSError, ValueError):
        res["benchmarks"][n] = None
        md += ["## %s" % n, "", "no results", ""]
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
open(os.path.join(out, "summary.md"), "w").write("\n".join(md))
EOF
echo
echo "results: $OUT/summary.md, $OUT/results.json"
exit $status
