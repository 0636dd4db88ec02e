#!/bin/bash
# t/bench/peers/postfix.sh — the Postfix peer (Debian's Postfix 3.7): a relay
# with its queue on disk and Postfix's defaults, but for what relaying from
# loopback to the bench's sink needs; SIGN=1 puts OpenDKIM in front of it
# (a milter on a unix socket, RSA-2048, relaxed/relaxed).  Same contract as
# peers/outpost.sh:
#   postfix.sh start WORKDIR LISTEN_PORT SINK_PORT [SIGN] [TLS]
#       listen on 127.0.0.1:LISTEN_PORT; relay sink.test (and, through
#       POSTFIX_EXTRA_MAIN_CF, whatever the caller adds) to
#       127.0.0.1:SINK_PORT, with opportunistic STARTTLS when TLS=1;
#       the PIDs of the roots it started in WORKDIR/pids; SIGN=1: the bare
#       TXT value of the key ("v=DKIM1; k=rsa; p=…", selector "bench",
#       d=sender.test) in WORKDIR/dkim.txt; returns once the port answers
#   postfix.sh stop WORKDIR
#       Postfix by `postfix -c DIR stop`, OpenDKIM by its PID; SIGKILL for
#       whichever is still there after 10 s.
# A private instance: config_directory, queue, data and maillog under
# WORKDIR (nothing in /etc/postfix is read or changed, port 25 is never
# bound).  No DNS (smtp_dns_support_level = disabled): what no transport
# entry covers fails at once (error:), so nothing can leave 127.0.0.1.
# Needs root (Postfix and OpenDKIM drop to their own users).
set -eu
cmd=${1:?start|stop}
W=${2:?WORKDIR}
C=$W/etc                 # Postfix's config_directory
K=$W/dkim                # OpenDKIM's configuration and key
S=$W/milter              # the milter socket, reachable by group postfix

# master_pid: the running master's PID (Postfix writes it in its queue).
master_pid() {
	tr -d ' \n' <"$W/queue/pid/master.pid" 2>/dev/null || true
}

# gone PID SECONDS: until PID has exited; SIGKILL after SECONDS.
gone() {
	local pid=$1 i=0
	[ -n "$pid" ] || return 0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt $(($2 * 10)) ]; then
			kill -KILL "$pid" 2>/dev/null || true
			return 0
		fi
		sleep 0.1
	done
}

# wait_listen PORT SECONDS: until 127.0.0.1:PORT accepts a connection.
wait_listen() {
	local i
	for i in $(seq $(($2 * 20))); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# dkim_start: an RSA-2048 key made with openssl (the TXT value is the
# base64 DER public key: what a DNS zone would publish), then OpenDKIM in
# the foreground of a background job, so its PID is ours to stop.
dkim_start() {
	local pid
	mkdir -p "$K" "$S"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	    -out "$K/bench.key" 2>/dev/null
	printf 'v=DKIM1; k=rsa; p=%s\n' "$(openssl pkey -in "$K/bench.key" \
	    -pubout -outform DER 2>/dev/null | base64 -w 0)" >"$W/dkim.txt"
	cat >"$K/opendkim.conf" <<EOF
# written by postfix.sh: the bench's signer, loopback only
Background              no
Syslog                  no
Mode                    s
Domain                  sender.test
Selector                bench
KeyFile                 $K/bench.key
Canonicalization        relaxed/relaxed
SignatureAlgorithm      rsa-sha256
Socket                  local:$S/opendkim.sock
UserID                  opendkim:postfix
UMask                   007
RequireSafeKeys         false
EOF
	chown -R opendkim "$K"
	chmod 700 "$K"
	chmod 600 "$K/bench.key"
	chown opendkim:postfix "$S"
	chmod 750 "$S"
	opendkim -x "$K/opendkim.conf" >"$W/opendkim.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$W/opendkim.pid"
	for _ in $(seq 100); do
		[ -S "$S/opendkim.sock" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "postfix.sh: opendkim did not open its socket:" >&2
	tail -n 5 "$W/opendkim.log" >&2
	return 1
}

# postfix_conf PORT SINK TLS SIGN: the packaged master.cf with chroot off
# (the queue under /tmp has no chroot tree) and the smtpd listener moved to
# 127.0.0.1:PORT; main.cf holds only what differs from `postconf -d`.
postfix_conf() {
	local port=$1 sink=$2 tls=$3 sign=$4 proto
	mkdir -p "$C" "$W/queue" "$W/data"
	chown postfix "$W/data"
	for proto in /usr/share/postfix/master.cf.dist /etc/postfix/master.cf.proto; do
		[ -f "$proto" ] && break
	done
	grep -v '^#' "$proto" | grep -v '^$' >"$C/master.cf"
	cat >"$C/main.cf" <<EOF
# written by postfix.sh: the bench's peer, loopback only
compatibility_level = 3.6
queue_directory = $W/queue
data_directory = $W/data
maillog_file_prefixes = $W
maillog_file = $W/maillog
syslog_name = postfix-bench
myhostname = peer.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = inline:{ sink.test=smtp:[127.0.0.1]:$sink }
default_transport = error:the bench peer relays only to its sink
relay_transport = \$default_transport
local_transport = error:no local delivery in the bench peer
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
notify_classes =
EOF
	if [ "$tls" = 1 ]; then
		echo "smtp_tls_security_level = may" >>"$C/main.cf"
	else
		echo "smtp_tls_security_level = none" >>"$C/main.cf"
	fi
	if [ "$sign" = 1 ]; then
		echo "smtpd_milters = unix:$S/opendkim.sock" >>"$C/main.cf"
	fi
	[ -z "${POSTFIX_EXTRA_MAIN_CF:-}" ] || printf '%s\n' "$POSTFIX_EXTRA_MAIN_CF" >>"$C/main.cf"
	postconf -c "$C" -F '*/*/chroot = n'
	postconf -c "$C" -MX smtp/inet
	postconf -c "$C" -M "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - n - - smtpd"
}

start() {
	local port=${1:?LISTEN_PORT} sink=${2:?SINK_PORT} sign=${3:-0} tls=${4:-0} pid
	mkdir -p "$W"
	chmod 755 "$W" # Postfix's and OpenDKIM's unprivileged processes go below it
	: >"$W/pids"
	if [ "$sign" = 1 ]; then
		dkim_start || return 1
		cat "$W/opendkim.pid" >>"$W/pids"
	fi
	postfix_conf "$port" "$sink" "$tls" "$sign"
	if ! postfix -c "$C" start >"$W/postfix-start.log" 2>&1; then
		echo "postfix.sh: postfix start failed:" >&2
		cat "$W/postfix-start.log" >&2
		# Postfix writes its reasons to stderr only when it is a terminal
		script -qc "postfix -c '$C' check" /dev/null >&2 || true
		return 1
	fi
	for _ in $(seq 100); do
		pid=$(master_pid)
		[ -n "$pid" ] && break
		sleep 0.1
	done
	[ -n "$pid" ] && echo "$pid" >>"$W/pids"
	if ! wait_listen "$port" 20; then
		echo "postfix.sh: nothing answers on 127.0.0.1:$port" >&2
		tail -n 20 "$W/maillog" >&2 2>/dev/null || true
		return 1
	fi
}

stop() {
	local pid
	pid=$(master_pid)
	if [ -f "$C/main.cf" ]; then
		postfix -c "$C" stop >/dev/null 2>&1 || true
	fi
	gone "$pid" 10
	if [ -f "$W/opendkim.pid" ]; then
		pid=$(cat "$W/opendkim.pid")
		kill -TERM "$pid" 2>/dev/null || true
		gone "$pid" 10
	fi
	return 0
}

case "$cmd" in
start)
	shift 2
	# a half-started instance is stopped before the failure is reported
	start "$@" || { stop; exit 1; }
	;;
stop) stop ;;
*)
	echo "usage: postfix.sh start WORKDIR LISTEN_PORT SINK_PORT [SIGN] [TLS] | stop WORKDIR" >&2
	exit 2
	;;
esac
