#!/bin/bash
# t/bench/run.sh BUILD_DIR — `make bench`: the benchmarks of t/bench, in
# sequence, into t/bench/results/<UTC date>/ (gitignored).  Builds nothing.
#   1. set-up: installs Postfix (smtp-source, smtp-sink, and the peer),
#      OpenDKIM and python3-dkim (signing's peer and verifier) if missing,
#      with services kept from starting (policy-rc.d); BENCH_SETUP=0 skips.
#      The peers run from t/bench/peers/, driven by t/bench's own scripts:
#      nothing outside the repository is read
#   2. check-load.sh: outpost-load's figures against smtp-sink's counter
#      (BENCH_CHECK=0 skips); a disagreement stops the run
#   3. every benchmark in BENCHES (default "acceptance relay observe queue_scale
#      signing backoff_scale restore watchdog scan receivers"):
#      t/bench/NAME.sh, run with BENCH_BUILD and BENCH_OUT set, writes
#      NAME.json and NAME.md
#   4. results.json and summary.md: the commit, the machine (CPU, cores,
#      RAM, kernel, the queues' file system and disk), a "Ratios" table of
#      every Outpost / peer figure of this run, then each benchmark's tables
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

# machine.json: the machine, the file system the queues are on (every
# benchmark's data_dir is a mktemp -d under /tmp) and the commit measured
# (git describe of this tree; "unknown" outside a git tree).
"$PY" - "$OUT/machine.json" "$HERE/../.." <<'EOF'
import json, os, platform, subprocess, sys
def run(*cmd, cwd=None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
mem = 0
for line in open("/proc/meminfo"):
    if line.startswith("MemTotal"):
        mem = round(int(line.split()[1]) / 1048576, 1)
mnt = run("findmnt", "-n", "-o", "SOURCE,FSTYPE", "--target", "/tmp").split()
src, fstype = (mnt + ["", ""])[:2]
disk = ""
if src.startswith("/dev/"):
    dev = "/dev/" + (run("lsblk", "-ndo", "PKNAME", src) or os.path.basename(src))
    info = run("lsblk", "-ndo", "ROTA,MODEL", dev).split(None, 1)
    if info:
        # the model when the device names one; ROTA as the kernel reports it
        disk = ", ".join(x for x in ((info[1] if len(info) > 1 else "").strip(),
                                     "rotational" if info[0] == "1" else "non-rotational") if x)
commit = run("git", "describe", "--always", "--dirty", cwd=sys.argv[2]) or "unknown"
json.dump({"cpu_model": cpu, "nproc": os.cpu_count(), "mem_gib": mem,
           "kernel": platform.release(), "queue_dir": "/tmp",
           "queue_fs": fstype, "queue_device": src, "queue_disk": disk,
           "commit": commit,
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
# results.json and summary.md.  The "Ratios" table opens the summary:
# every figure measured for Outpost and for its peer in this run, Outpost /
# peer.  PEER_FIGURES names them by their path in NAME.json; a benchmark
# may add its own as NAME.json's "peer_ratios" (a list of objects with
# what, outpost, peer, peer_name).
"$PY" - "$OUT" "${done_list[@]}" <<'EOF'
import datetime, json, os, sys
out, names = sys.argv[1], sys.argv[2:]
PEER_FIGURES = [
    # benchmark, figure, Outpost's, the peer's, the peer
    ("acceptance", "accepted msg/s", "outpost.msg_per_s", "postfix.msg_per_s", "Postfix"),
    ("acceptance", "CPU s / 1,000 msg", "outpost.cpu_s_per_1000", "postfix.cpu_s_per_1000", "Postfix"),
    ("relay", "end-to-end msg/s", "outpost.end_to_end_msg_per_s",
     "postfix.end_to_end_msg_per_s", "Postfix"),
    ("relay", "end-to-end msg/s, sink with STARTTLS", "outpost_tls.end_to_end_msg_per_s",
     "postfix.end_to_end_msg_per_s", "Postfix (no TLS)"),
    ("relay", "CPU s / 1,000 msg", "outpost.cpu_s_per_1000", "postfix.cpu_s_per_1000", "Postfix"),
    ("signing", "end-to-end msg/s, RSA-2048 (harness.sh)", "harness.outpost_dkim.e2e_msg_per_s",
     "harness.postfix_dkim.e2e_msg_per_s", "Postfix + OpenDKIM"),
    ("signing", "CPU s / 1,000 msg, RSA-2048 (harness.sh)",
     "harness.outpost_dkim.peer_cpu_s_per_1000", "harness.postfix_dkim.peer_cpu_s_per_1000",
     "Postfix + OpenDKIM"),
]
def get(d, path):
    for k in path.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None
m = json.load(open(os.path.join(out, "machine.json")))
m["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "commit": m["commit"], "machine": m, "ratios": [], "benchmarks": {}}
for n in names:
    try:
        res["benchmarks"][n] = json.load(open(os.path.join(out, n + ".json")))
    except (OSError, ValueError):
        res["benchmarks"][n] = None
for n, what, o, p, peer in PEER_FIGURES:
    if n in res["benchmarks"]:
        b = res["benchmarks"][n]
        res["ratios"].append({"benchmark": n, "what": what, "peer_name": peer,
                              "outpost": get(b, o), "peer": get(b, p)})
for n in names:
    for r in (res["benchmarks"][n] or {}).get("peer_ratios") or []:
        res["ratios"].append(dict(r, benchmark=n))
for r in res["ratios"]:
    r["ratio"] = (round(r["outpost"] / r["peer"], 2)
                  if r.get("outpost") is not None and r.get("peer") else None)
def fig(v):
    if v is None:
        return "n/a"
    return "{:,.0f}".format(v) if v >= 100 else "{:.1f}".format(v) if v >= 10 else "{:.3f}".format(v)
md = ["# Outpost benchmarks — %s" % res["date"], "",
      "Commit %s. Machine: %s, %s CPUs, %s GiB RAM, kernel %s; queues under %s on %s %s%s. "
      "Load average before / after: %s / %s." % (
          res["commit"], m["cpu_model"], m["nproc"], m["mem_gib"], m["kernel"],
          m["queue_dir"], m["queue_fs"] or "?", m["queue_device"] or "?",
          " (%s)" % m["queue_disk"] if m["queue_disk"] else "",
          " ".join(m["loadavg_before"]), " ".join(m["loadavg_after"])), "",
      "## Ratios", "",
      "Outpost / peer, both measured in this run on this machine: a ratio means "
      "something only within one run. Rates: above 1 is better; CPU: below 1 "
      "is better. When other work shares the machine (see the load average) "
      "the figures are noisy.", "",
      "| benchmark | figure | Outpost | peer | peer's figure | Outpost / peer |",
      "|---|---|---|---|---|---|"]
for r in res["ratios"]:
    md.append("| %s | %s | %s | %s | %s | %s |" % (
        r["benchmark"], r["what"], fig(r["outpost"]), r["peer_name"], fig(r["peer"]),
        "**%.2f×**" % r["ratio"] if r["ratio"] is not None else "n/a"))
if not res["ratios"]:
    md.append("| none of the benchmarks run has a peer | | | | | |")
md.append("")
for n in names:
    try:
        md.append(open(os.path.join(out, n + ".md")).read())
    except OSError:
        md += ["## %s" % n, "", "no results", ""]
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
open(os.path.join(out, "summary.md"), "w").write("\n".join(md))
EOF
echo
echo "results: $OUT/summary.md, $OUT/results.json"
exit $status
