#!/usr/bin/python3
"""Bounce categories through the real outpostd: outpost-sink plays the
recipients' MX and answers chosen RCPT and DATA replies (the texts of the
large providers), dnsmasq routes dest.test and the DSN's sender.test to
it.  The delivery log carries the category on bounce and
transient_failure lines, the DSN that reaches the sender carries
X-Outpost-Bounce-Category, /metrics counts outpost_bounce_category_total,
and `outpost reload` with an operator's rules file listed first changes
the category of the next deferral (a broken rules file fails the reload
with its file:line and keeps the rules); an expiry takes the category of
its last failure.  Loopback only."""

import json
import os
import shutil
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Dns, Sink, check, delivery_config,  # noqa
                          eq, free_port_on, run_tests, wait_for)

SRC = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SHIPPED = os.path.join(SRC, "conf", "bounce-categories")

# PREFIX STAGE REPLY: what the sink answers a recipient whose local part
# starts with PREFIX.
SINK_RULES = """\
gone rcpt 550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp
full rcpt 452 4.2.2 The email account that you tried to reach is over quota. - gsmtp
blocked data 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org
"""

MSG = (b"From: News <news@sender.test>\r\nTo: <x@dest.test>\r\n"
       b"Subject: categories\r\nMessage-ID: <c1@sender.test>\r\n\r\n"
       b"Hello.\r\n")


def submit(d, rcpt):
    s = d.smtp()
    s.sendmail("news@sender.test", [rcpt], MSG)
    s.quit()


def events(d):
    path = os.path.join(d.data, "log", "delivery.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def find(d, event, **fields):
    """The delivery-log lines of EVENT whose fields equal FIELDS."""
    return [e for e in events(d) if e.get("event") == event and
            all(e.get(k) == v for k, v in fields.items())]


def scrape(d):
    url = "http://127.0.0.1:%d/metrics" % d.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def counter(text, category, kind):
    key = ('outpost_bounce_category_total{category="%s",kind="%s"} '
           % (category, kind))
    for line in text.splitlines():
        if line.startswith(key):
            return int(line[len(key):])
    return None


def dsn_for(sink, code):
    """The DSN the sink received whose diagnostic is CODE's."""
    for m in sink.messages():
        text = m.decode("utf-8", "replace")
        if "Diagnostic-Code: smtp; %d" % code in text:
            return text
    return None


def world(dest_ip, sender_ip, delivery=None):
    """dnsmasq, the sink playing both MX hosts (DEST_IP for dest.test,
    SENDER_IP for the DSNs' sender.test) with SINK_RULES, and a daemon
    delivering through them (DELIVERY replaces "delivery {")."""
    hosts = [dest_ip, sender_ip]
    port = free_port_on(hosts)
    dns = Dns(mx=[("dest.test", "mx.dest.test", 10),
                  ("sender.test", "mx.sender.test", 10)],
              a=[("mx.dest.test", dest_ip), ("mx.sender.test", sender_ip)])
    cfg = delivery_config(dns, port)
    if delivery:
        cfg = cfg.replace("delivery {", delivery)
    d = Daemon(config=cfg)
    rules = os.path.join(d.tmp, "sink-rules")
    with open(rules, "w") as f:
        f.write(SINK_RULES)
    return dns, Sink(hosts, port, ["--rules", rules]), d


def test_categories_log_dsn_metrics_reload():
    dns, sink, d = world("127.0.0.31", "127.0.0.32")
    with dns, sink, d:
        check(not os.path.exists(os.path.join(d.tmp, "bounce-categories")),
              "no rules file beside the configuration: the built-in rules")
        submit(d, "gone-1@dest.test")
        submit(d, "blocked-2@dest.test")
        submit(d, "full-3@dest.test")
        # The delivery log: bounces and deferrals with their category.
        wait_for(lambda: find(d, "bounce", code=550), 30, "the 550 bounce")
        eq(find(d, "bounce", code=550)[0].get("category"), "bad-mailbox",
           "category of the 550 5.1.1 bounce")
        wait_for(lambda: find(d, "bounce", code=554), 30, "the 554 bounce")
        eq(find(d, "bounce", code=554)[0].get("category"), "spam-related",
           "category of the DATA refusal (Spamhaus)")
        wait_for(lambda: find(d, "transient_failure", code=452), 30,
                 "the 452 deferral")
        eq({e.get("category") for e in find(d, "transient_failure",
                                             code=452)},
           {"quota"}, "category of the 452 4.2.2 deferrals")
        # The DSNs that reached the sender's MX say it to their reader.
        wait_for(lambda: dsn_for(sink, 550) and dsn_for(sink, 554), 30,
                 "both DSNs at the sender's MX")
        dsn = dsn_for(sink, 550)
        check("X-Outpost-Bounce-Category: bad-mailbox\r\n" in dsn,
              "category field in the 550 DSN:\n" + dsn[:3000])
        check("(bounce category: bad-mailbox)" in dsn,
              "category in the DSN's text for people")
        check("X-Outpost-Bounce-Category: spam-related\r\n"
              in dsn_for(sink, 554), "category field in the 554 DSN")
        # /metrics counts them by category and kind.
        text = scrape(d)
        eq(counter(text, "bad-mailbox", "bounce"), 1, "bad-mailbox bounces")
        eq(counter(text, "spam-related", "bounce"), 1, "spam bounces")
        check((counter(text, "quota", "defer") or 0) >= 1,
              "quota deferrals counted")
        eq(counter(text, "quota", "bounce"), 0, "no quota bounce")

        # The operator's rules, listed before the shipped file (copied
        # beside the configuration, as the package installs it): the
        # next deferral of full-3 takes the operator's category.
        shutil.copy(SHIPPED, os.path.join(d.tmp, "bounce-categories"))
        local = os.path.join(d.tmp, "local-categories")
        with open(local, "w") as f:
            f.write("# ours: over quota at this provider is throttling\n"
                    "rate-limited 452 4.2.2 over quota\n")
        os.chmod(local, 0o644)
        with open(d.conf_path, "a") as f:
            f.write('bounce {\n  categories = { "local-categories", '
                    '"bounce-categories" }\n}\n')
        r = d.cli("reload", check_rc=False)
        eq(r.returncode, 0, "outpost reload: %s %s" % (r.stdout, r.stderr))
        wait_for(lambda: find(d, "transient_failure", code=452,
                              category="rate-limited"), 30,
                 "a deferral categorized by the operator's rule")
        wait_for(lambda: (counter(scrape(d), "rate-limited", "defer")
                          or 0) >= 1, 10, "rate-limited deferrals counted")

        # A broken rules file: the reload fails with its file:line, the
        # rules in force stay.
        with open(local, "a") as f:
            f.write("quota 4xx 4.2.2 (unclosed\n")
        r = d.cli("reload", check_rc=False)
        check(r.returncode != 0, "reload with a broken rules file fails")
        check("local-categories:3: " in r.stdout + r.stderr,
              "the error names the rules file and line: %s %s"
              % (r.stdout, r.stderr))
        n = len(find(d, "transient_failure", code=452))
        wait_for(lambda: len(find(d, "transient_failure", code=452)) > n,
                 30, "another deferral")
        eq(find(d, "transient_failure", code=452)[-1].get("category"),
           "rate-limited", "the rules in force were kept")


def test_expiry_takes_the_last_failure():
    """A recipient deferred until max_age expires with the category of its
    last failure: on its expiration line, in its DSN, counted as a
    bounce."""
    dns, sink, d = world("127.0.0.33", "127.0.0.34",
                         "delivery {\n  max_age = 3s")
    with dns, sink, d:
        submit(d, "full-9@dest.test")
        wait_for(lambda: find(d, "expiration"), 30, "the expiration")
        eq(find(d, "expiration")[0].get("category"), "quota",
           "the expiry's category is its last failure's")
        wait_for(lambda: sink.messages(), 30, "the DSN")
        dsn = sink.messages()[0].decode("utf-8", "replace")
        check("Status: 4.4.7\r\n" in dsn and
              "X-Outpost-Bounce-Category: quota\r\n" in dsn,
              "the expiry DSN carries the category:\n" + dsn[:3000])
        eq(counter(scrape(d), "quota", "bounce"), 1,
           "an expiry counts as a bounce")


if __name__ == "__main__":
    run_tests(globals())
