#!/usr/bin/python3
"""Per user (tenant) quotas through the real outpostd: user "NAME" {
max_messages_per_hour, max_messages_per_day }.  Over quota, MAIL gets
452 4.7.0 with the limit and when the window ends, and the refusal is
counted; a user without a quota is never refused; a reload takes a new
quota at once.  In a cluster (two outpostd sharing a redis-server started
here) the count is the cluster's: a user over quota is refused on every
node; with Redis killed each node keeps to its share of what was left.
Loopback only; nothing is delivered (no DNS: messages wait queued)."""

import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (ControlDaemon, Daemon, Redis, check,  # noqa: E402
                          eq, insecure_tls, metrics_text, passwd_hash,
                          rewrite_config, run_tests, wait_for)

PASSWORD = "tenant pass phrase"
_HASH = []


def users(hour=0, day=0):
    if not _HASH:
        _HASH.append(passwd_hash(PASSWORD))
    return ('user "tenant" {\n  password = "%s"\n'
            '  sender_domains = { "*" }\n'
            '  max_messages_per_hour = %d\n  max_messages_per_day = %d\n}\n'
            'user "free" {\n  password = "%s"\n'
            '  sender_domains = { "*" }\n}\n'
            % (_HASH[0], hour, day, _HASH[0]))


def cluster(redis, name):
    return ('cluster {\n  redis = "%s"\n  node = "%s"\n  nodes = 2\n'
            '  lease = 3s\n  timeout = 300ms\n}\n' % (redis.addr, name))


def submit(d, user, n):
    """N messages as USER over one AUTH session: the MAIL replies."""
    s = d.smtp()
    s.ehlo("client.test")
    s.starttls(context=insecure_tls())
    s.ehlo("client.test")
    s.login(user, PASSWORD)
    codes = []
    try:
        for i in range(n):
            code, text = s.mail("news@sender.example")
            codes.append((code, text.decode(errors="replace")))
            if code != 250:
                s.rset()
                continue
            eq(s.rcpt("rcpt%d@dest.example" % i)[0], 250, "RCPT")
            eq(s.data(b"From: <news@sender.example>\r\nSubject: q\r\n\r\n"
                      b"quota\r\n")[0], 250, "DATA")
        s.quit()
    except smtplib.SMTPException:
        s.close()
        raise
    return codes


def quota_metric(d, name, user, period):
    pat = '%s{user="%s",period="%s"} ' % (name, user, period)
    for line in metrics_text(d).splitlines():
        if line.startswith(pat):
            return float(line.rsplit(" ", 1)[1])
    return None


def refusals(d, user, period):
    return quota_metric(d, "outpost_quota_refusals_total", user, period)


def used(d, user="tenant", period="hour"):
    """What D counts against USER's quota now (in a cluster: the total
    Redis last gave it, plus its own count on the way there)."""
    return quota_metric(d, "outpost_quota_used", user, period)


def accepted(codes):
    return sum(1 for c, _ in codes if c == 250)


def test_hour_and_day_quotas_alone():
    """5 an hour: the sixth MAIL gets 452 4.7.0 saying 5 per hour and
    until when; "free" has none; a day quota the same; a reload raises the
    hour quota and the tenant may send again."""
    d = ControlDaemon(config=users(hour=5))
    with d:
        codes = submit(d, "tenant", 7)
        eq([c for c, _ in codes], [250] * 5 + [452] * 2, "MAIL replies")
        text = codes[5][1]
        check(re.match(r"4\.7\.0 Quota exceeded: this account may submit "
                       r"5 messages per hour; try again after "
                       r"\d\d:00 UTC$", text), "452 text: %r" % text)
        want = time.strftime("%H:00", time.gmtime(time.time() + 3600))
        check(want in text or time.gmtime().tm_min == 59,
              "the window's end (%s): %r" % (want, text))
        eq(refusals(d, "tenant", "hour"), 2.0, "refusals counted")
        eq(used(d), 5.0, "used: the 5 accepted")
        eq(quota_metric(d, "outpost_quota_limit", "tenant", "hour"), 5.0,
           "the quota")
        eq(accepted(submit(d, "free", 8)), 8, "a user without a quota")
        eq(len(d.queue_ids()), 13, "queued: 5 + 8")
        check("over its quota of 5 messages per hour" in d.log(),
              "refusal logged")
        # A reload: 7 an hour, so 2 more.
        rewrite_config(d, "max_messages_per_hour = 5",
                       "max_messages_per_hour = 7")
        d.cli("reload")
        eq([c for c, _ in submit(d, "tenant", 3)], [250, 250, 452],
           "after the reload")
    with Daemon(config=users(day=3)) as d:
        codes = submit(d, "tenant", 4)
        eq([c for c, _ in codes], [250, 250, 250, 452], "day quota")
        check("3 messages per day; try again after " in codes[3][1] and
              "00:00 UTC" in codes[3][1], "452 text: %r" % codes[3][1])
        eq(refusals(d, "tenant", "day"), 1.0, "day refusal counted")


def quota_total(redis):
    keys = redis.cmd("KEYS", "outpost:quota:tenant:h:*") or []
    return sum(int(redis.cmd("GET", k) or 0) for k in keys)


def test_quota_is_the_clusters():
    """10 an hour over two nodes: 6 through a, then b takes 4 and refuses
    the fifth, and a refuses too once it has heard (each node gives Redis
    its count and reads the total every second)."""
    with Redis() as redis:
        a = Daemon(config=users(hour=10) + cluster(redis, "a"))
        b = Daemon(config=users(hour=10) + cluster(redis, "b"))
        with a, b:
            eq(accepted(submit(a, "tenant", 6)), 6, "a: 6")
            wait_for(lambda: quota_total(redis) == 6, 10,
                     "Redis counts 6 (%s)" % quota_total(redis))
            wait_for(lambda: used(b) == 6, 10,
                     "b has read the total (%s)" % used(b))
            codes = submit(b, "tenant", 6)
            eq([c for c, _ in codes], [250] * 4 + [452] * 2,
               "b: the cluster's quota")
            wait_for(lambda: quota_total(redis) == 10, 10,
                     "Redis counts 10 (%s)" % quota_total(redis))
            wait_for(lambda: used(a) == 10, 10,
                     "a has read the total (%s)" % used(a))
            eq(submit(a, "tenant", 1)[0][0], 452, "a refuses too")


def test_redis_away_each_node_keeps_to_its_share():
    """10 an hour, 2 nodes, Redis killed before anything was sent: each
    node takes 5 (its share of what was left), then refuses; Redis back,
    what they took is counted there."""
    redis = Redis()
    redis.start()
    try:
        a = Daemon(config=users(hour=10) + cluster(redis, "a"))
        b = Daemon(config=users(hour=10) + cluster(redis, "b"))
        with a, b:
            for d in (a, b):
                wait_for(lambda: "cluster: Redis %s ready" % redis.addr
                         in d.log(), 10, "linked")
            redis.stop(kill=True)
            for d in (a, b):
                wait_for(lambda: "away" in d.log(), 10, "away seen")
                codes = submit(d, "tenant", 7)
                eq([c for c, _ in codes], [250] * 5 + [452] * 2,
                   "its share")
            redis.start()
            wait_for(lambda: quota_total(redis) == 10, 15,
                     "both nodes' counts in Redis (%s)"
                     % quota_total(redis))
            for d in (a, b):
                wait_for(lambda: used(d) == 10, 10,
                         "the node has read the total (%s)" % used(d))
                eq(submit(d, "tenant", 1)[0][0], 452, "still over")
    finally:
        redis.stop(kill=True)


if __name__ == "__main__":
    run_tests(globals())
