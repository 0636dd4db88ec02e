#!/bin/bash
# make demo: run outpostd on its embedded defaults (submission on
# 127.0.0.1:2525, data under ./var of a scratch directory), submit a few
# thousand campaign messages with the project's load tool, show the queue,
# stop cleanly.  Loopback only.
set -eu
BUILD=$(cd "${1:-build}" && pwd)
N=${DEMO_N:-5000}
work=$(mktemp -d /tmp/outpost-demo.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"; wait "$pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

if (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; then
	echo "demo: 127.0.0.1:2525 is in use; stop whatever listens there" >&2
	exit 1
fi

echo "== outpostd on its embedded defaults (in $work)"
cd "$work"
OUTPOST_LOOPBACK_ONLY=1 "$BUILD/bin/outpostd" 2>"$work/outpostd.log" &
pid=$!
i=0
until (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
		echo "demo: outpostd did not start:" >&2
		cat "$work/outpostd.log" >&2
		exit 1
	fi
	sleep 0.1
done
sed 's/^/   /' "$work/outpostd.log"

echo
echo "== submitting $N campaign messages (4 KB, 20 pipelining sessions)"
"$BUILD/tools/outpost-load" --host 127.0.0.1 --port 2525 --sessions 20 \
	--count "$N" --size 4096 --pipelining --progress=always \
	--from news@campaign.example --to 'user%u@d%d.example.net' --domains 50

echo
echo "== outpost queue list | head"
"$BUILD/bin/outpost" queue list | head
echo "   ... $("$BUILD/bin/outpost" queue list --json | wc -l) messages queued, encrypted at rest in var/queue"

echo
echo "== stopping outpostd (SIGTERM)"
kill -TERM $pid
wait $pid && echo "   stopped cleanly" || echo "   outpostd exited with status $?"
pid=
tail -n 1 "$work/outpostd.log" | sed 's/^/   /'
