#!/bin/bash
# t/bench/receivers_postfix.sh — a private Postfix 3.7 instance for
# receivers.sh (the realistic-receivers benchmark), nothing else.
#
#   receivers_postfix.sh start WORKDIR LISTEN_PORT PROCS
#   receivers_postfix.sh stop  WORKDIR
#
# start: config, queue and data under WORKDIR (which must be reachable by
# the postfix user); listens on 127.0.0.1:LISTEN_PORT and relays for
# 127.0.0.0/8.  Routing comes from the caller, in WORKDIR:
#   transport    a texthash transport map ("d0.test smtp:[127.1.0.1]:PORT");
#                every domain not in it goes to error: (no DNS is ever
#                asked: smtp_dns_support_level = disabled, and every next
#                hop is a bracketed loopback address)
#   main.extra   lines appended to main.cf (per-destination limits)
#   master.extra lines appended to master.cf (named smtp transports)
# PROCS is the smtp transport's process limit (Postfix's bound on its
# outbound connections).  Writes WORKDIR/pids (the master's PID) and returns
# once the listener answers.
# stop: `postfix stop`; then every process of the instance still alive
# (recorded by PID and start time before the stop) gets SIGKILL.
# Needs root (Postfix drops privileges to its own users).  Loopback only.
set -eu
cmd=${1:?start|stop}
W=${2:?workdir}

master_pid() {
	tr -d ' ' <"$W/queue/pid/master.pid" 2>/dev/null || true
}

# snapshot: "PID STARTTIME" of the master and each descendant, so that the
# final clean-up kills only processes of this instance (PID reuse safe).
snapshot() {
	local m=$1
	python3 - "$m" <<'EOF'
import os, sys
root = int(sys.argv[1])
kids = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        f = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    kids.setdefault(int(f[1]), []).append((int(p), f[19]))
todo, seen = [root], []
try:
    st = open("/proc/%d/stat" % root).read().rsplit(")", 1)[1].split()[19]
    seen.append((root, st))
except OSError:
    pass
while todo:
    for pid, st in kids.get(todo.pop(), []):
        seen.append((pid, st))
        todo.append(pid)
for pid, st in seen:
    print(pid, st)
EOF
}

start() {
	local port=${1:?listen port} procs=${2:?process limit}
	mkdir -p "$W/conf" "$W/queue" "$W/data"
	chmod 755 "$W" "$W/conf"
	chown postfix "$W/data"
	touch "$W/transport" "$W/main.extra" "$W/master.extra"
	cat >"$W/conf/main.cf" <<EOF
# written by t/bench/receivers_postfix.sh: loopback only
compatibility_level = 3.7
queue_directory = $W/queue
data_directory = $W/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-receivers
maillog_file_prefixes = $W
maillog_file = $W/maillog
myhostname = relay.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
transport_maps = texthash:$W/transport
default_transport = error:receivers bench routes only its own domains
relay_transport = error:receivers bench routes only its own domains
local_transport = error:local delivery disabled
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
notify_classes =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
default_process_limit = $procs
EOF
	cat "$W/main.extra" >>"$W/conf/main.cf"
	cat >"$W/conf/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  $procs smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
	cat "$W/master.extra" >>"$W/conf/master.cf"
	if ! postfix -c "$W/conf" start >"$W/postfix-start.log" 2>&1; then
		# postfix logs to stderr only on a terminal: check under script(1)
		script -qc "postfix -c '$W/conf' check" /dev/null >&2 || true
		cat "$W/postfix-start.log" >&2
		return 1
	fi
	for _ in $(seq 200); do
		[ -n "$(master_pid)" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.1
	done
	[ -n "$(master_pid)" ] || { echo "postfix: no master.pid" >&2; return 1; }
	master_pid >"$W/pids"
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
	    { echo "postfix: 127.0.0.1:$port never answered" >&2; return 1; }
}

stop() {
	local m pid st
	m=$(master_pid)
	[ -n "$m" ] && snapshot "$m" >"$W/owned" 2>/dev/null
	[ -d "$W/conf" ] && postfix -c "$W/conf" stop >/dev/null 2>&1
	if [ -n "$m" ]; then
		for _ in $(seq 100); do
			kill -0 "$m" 2>/dev/null || break
			sleep 0.1
		done
	fi
	[ -f "$W/owned" ] || return 0
	while read -r pid st; do
		if [ "$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null | awk '{print $20}')" = "$st" ]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done <"$W/owned"
	return 0
}

case $cmd in
start)
	shift 2
	start "$@"
	;;
stop) stop ;;
*)
	echo "usage: $0 start WORKDIR LISTEN_PORT PROCS | stop WORKDIR" >&2
	exit 2
	;;
esac
