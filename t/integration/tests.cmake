# Integration tests: the real outpostd on loopback ports, real clients.
outpost_integration_test(config t/integration/config_test.py SERIAL)
outpost_integration_test(smtp_basic t/integration/smtp_basic_test.py)
outpost_integration_test(smtp_tls t/integration/smtp_tls_test.py)
outpost_integration_test(smtp_auth t/integration/smtp_auth_test.py)
outpost_integration_test(smtp_auth_limit t/integration/smtp_auth_limit_test.py)
outpost_integration_test(smtp_relay t/integration/smtp_relay_test.py)
outpost_integration_test(smtp_strict t/integration/smtp_strict_test.py)
outpost_integration_test(smtp_dos t/integration/smtp_dos_test.py SERIAL
	TIMEOUT 600)
outpost_integration_test(queue_durability t/integration/queue_durability_test.py
	SERIAL TIMEOUT 900)
outpost_integration_test(delivery t/integration/delivery_test.py TIMEOUT 600)
outpost_integration_test(delivery_shaping t/integration/delivery_shaping_test.py TIMEOUT 600)
# Delivery on four loops: limits hold across them, operators, drain, stop.
outpost_integration_test(delivery_loops t/integration/delivery_loops_test.py TIMEOUT 600)
outpost_integration_test(delivery_restart t/integration/delivery_restart_test.py SERIAL TIMEOUT 900)
outpost_integration_test(dkim t/integration/dkim_test.py TIMEOUT 600)
outpost_integration_test(long_lines t/integration/long_lines_test.py TIMEOUT 600)
# Bodies sent from the queue chunk by chunk, checked byte for byte.
outpost_integration_test(body_chunks t/integration/body_chunks_test.py TIMEOUT 600)
# Bodies spooled as they arrive: sizes, DKIM, kill -9 mid-body, give-ups,
# peak RSS of 30 sessions at once (SERIAL: it measures memory).
outpost_integration_test(accept_stream t/integration/accept_stream_test.py
	SERIAL TIMEOUT 900)
outpost_integration_test(observe t/integration/observe_test.py TIMEOUT 600)
# Bounce categories: log, DSN, metrics, reload with an operator's rules.
outpost_integration_test(bounce_categories t/integration/bounce_categories_test.py TIMEOUT 600)
outpost_integration_test(metrics t/integration/metrics_test.py TIMEOUT 600)
outpost_integration_test(privilege t/integration/privilege_test.py)
outpost_integration_test(spf t/integration/spf_test.py TIMEOUT 600)
outpost_integration_test(privacy t/integration/privacy_test.py TIMEOUT 600)
outpost_integration_test(logspace t/integration/logspace_test.py SERIAL TIMEOUT 600)
# The control socket against callers with few or no rights: read/export
# through the daemon, corrupt records listed, abuse bounded, audit hashed.
outpost_integration_test(control t/integration/control_test.py TIMEOUT 600)
outpost_integration_test(delivery_hostile t/integration/delivery_hostile_test.py TIMEOUT 900)
outpost_integration_test(delivery_fanout t/integration/delivery_fanout_test.py TIMEOUT 600)
outpost_integration_test(dns_inflight t/integration/dns_inflight_test.py TIMEOUT 300)
# A destination that refuses connections: messages held in place, the
# summary and DSNs truthful, retry and resume try now.
outpost_integration_test(backoff t/integration/backoff_test.py TIMEOUT 600)
outpost_integration_test(queue_corrupt t/integration/queue_corrupt_test.py SERIAL TIMEOUT 600)
outpost_integration_test(systemd t/integration/systemd_test.py TIMEOUT 300)
# Operating it: the delivery log's group and mode for a log shipper, and
# `outpost status`.
outpost_integration_test(status t/integration/status_test.py TIMEOUT 600)
outpost_integration_test(drain t/integration/drain_test.py TIMEOUT 600)
outpost_integration_test(export t/integration/export_test.py TIMEOUT 600)
# `make demo` whole: AUTH over STARTTLS, queue summary while mail waits,
# DKIM verified by python3-dkim, its directory left; a failing step fails it.
outpost_integration_test(demo t/integration/demo_test.py TIMEOUT 600)
# Operators' state (suspensions, back-off, AUTH blocks) kept across kill -9.
outpost_integration_test(state_persist t/integration/state_persist_test.py TIMEOUT 300)
# A user's data removed: `outpost purge --user` now (delete right,
# audited), and retention.user_data after its removal from the
# configuration (the test clock moves the daemon 100 days back and on).
outpost_integration_test(purge t/integration/purge_test.py TIMEOUT 300)
# The suppression list: `outpost suppress` (rights, audit), RCPT refused or
# dropped per scope, a hard bounce suppresses, retention ends entries.
outpost_integration_test(suppress t/integration/suppress_test.py TIMEOUT 300)
# The queue obeys: a change answers once visible, an operator's bounce
# logged per recipient with an administrator's DSN, --respect-backoff.
outpost_integration_test(queue_obey t/integration/queue_obey_test.py TIMEOUT 600)
# Tracing: Message-ID and campaign on every event, `outpost log --id MSGID`.
outpost_integration_test(trace t/integration/trace_test.py TIMEOUT 600)
# SIGHUP and `outpost reload`: a new configuration for new sessions, under
# load without loss, an invalid file refused with file:line.
outpost_integration_test(reload t/integration/reload_test.py TIMEOUT 600)
# Restore points: interval, during a load, restore now, tiers under the
# test clock, copy_to, a failing command, nothing secret in restore.dir.
outpost_integration_test(restore_points t/integration/restore_points_test.py
	TIMEOUT 600)
# outpostd's whole life under valgrind memcheck (what ASan cannot see inside
# Debian's uninstrumented libevent/OpenSSL/LMDB); skipped in the ASan variant.
outpost_integration_test(memcheck t/integration/memcheck_test.py TIMEOUT 600)
# `outpost restore`: a point restored over a truncated queue; messages from
# before the point delivered exactly once, the log replay keeps the ones
# delivered after it from going twice; a damaged point refused.
outpost_integration_test(restore t/integration/restore_test.py SERIAL TIMEOUT 600)
# Retention of the logs on the test clock: the daemon's own rotation at UTC
# midnight and at start, FILE-YYYY-MM-DD.gz, removal by age (and at a
# reload), `outpost log` over the compressed files.
outpost_integration_test(retention t/integration/retention_test.py TIMEOUT 600)
# Feedback loops (ARF): the sealed X-Outpost-FB on a DKIM-signed campaign
# copy, a report around it to feedback.address from an unauthenticated
# client, the complaint event and counters, forged/missing identifiers,
# malformed reports, rate and size limits.
outpost_integration_test(feedback t/integration/feedback_test.py TIMEOUT 600)
# The watchdog: a sending identity stopped when its mail departs from its
# pattern (new recipients, a trap, a bounce spike, volume), not on a
# normal Monday after a quiet weekend; release and --learn (test clock).
outpost_integration_test(watchdog t/integration/watchdog_test.py TIMEOUT 600)
# The malware scan through a real clamd (Unix socket, signatures written by
# the test): EICAR variants refused, clean mail delivered, clamd down /
# back / slow / garbage, on_error, oversize, the watchdog's infected
# signal, `scan status`, the verdict cache.
outpost_integration_test(scan t/integration/scan_test.py TIMEOUT 600)
# A cluster's shared limits (redis-server started by the test): connection
# leases across two nodes, each node's share while Redis is away, leases of
# a node killed with -9 expiring, AUTH.
outpost_integration_test(cluster t/integration/cluster_test.py TIMEOUT 600)
# Per user quotas (messages per hour / day): 452 4.7.0 over quota, counted;
# in a cluster (redis-server started by the test) the count is shared.
outpost_integration_test(quota t/integration/quota_test.py TIMEOUT 300)
# IP warm-up: a pool's daily budget by destination class, rising with the
# test clock, shared in a cluster (redis-server started by the test).
outpost_integration_test(warmup t/integration/warmup_test.py TIMEOUT 300)
outpost_integration_test(mta_sts t/integration/mta_sts_test.py)
outpost_integration_test(dane t/integration/dane_test.py)
outpost_integration_test(tls_rpt t/integration/tls_rpt_test.py)
