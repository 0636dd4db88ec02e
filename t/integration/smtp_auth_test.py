#!/usr/bin/python3
"""AUTH through the real outpostd: PLAIN and LOGIN over STARTTLS with
smtplib and swaks, failures, AUTH refused before TLS, the loopback
auth_without_tls exception, per-user sender domains, and brute-force
throttling (growing delay, then 421/454)."""

import base64
import os
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from outpost_test import (Daemon, Raw, SLOW, check, eq,  # noqa: E402
                          insecure_tls, passwd_hash, run_tests)

PASSWORD = "correct horse battery staple"
_HASH = []


def users(extra=""):
    if not _HASH:
        _HASH.append(passwd_hash(PASSWORD))
    return ('user "campaign" {\n  password = "%s"\n'
            '  sender_domains = { "example.com", ".news.example.net" }\n}\n'
            '%s' % (_HASH[0], extra))


def outsider_daemon(config="", **kw):
    """Loopback is NOT a relay network here: only AUTH may relay."""
    return Daemon(config=users() + config, relay_loopback=False, **kw)


def tls_session(d):
    s = d.smtp()
    s.ehlo("client.test")
    s.starttls(context=insecure_tls())
    s.ehlo("client.test")
    return s


def test_auth_plain_and_login_over_starttls():
    with outsider_daemon() as d:
        for mech in ("PLAIN", "LOGIN"):
            s = tls_session(d)
            check(s.has_extn("auth"), "AUTH offered after TLS")
            check(mech in s.esmtp_features["auth"].upper(), mech)
            s.user, s.password = "campaign", PASSWORD
            code, _ = s.auth(mech, {"PLAIN": s.auth_plain,
                                    "LOGIN": s.auth_login}[mech],
                             initial_response_ok=(mech == "PLAIN"))
            eq(code, 235, "AUTH " + mech)
            s.sendmail("news@example.com", ["jane@example.org"],
                       b"From: <news@example.com>\r\nSubject: a\r\n\r\nauth\r\n")
            s.quit()
        eq(len(d.queue_ids()), 2, "queued by authenticated users")
        check(PASSWORD not in d.log(), "password in the log")


def test_auth_swaks():
    with outsider_daemon() as d:
        r = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port),
             "--tls", "--auth", "PLAIN", "--auth-user", "campaign",
             "--auth-password", PASSWORD, "--from", "news@example.com",
             "--to", "jane@example.org"],
            capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, "swaks AUTH:\n" + r.stdout + r.stderr)
        r = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port),
             "--tls", "--auth", "LOGIN", "--auth-user", "campaign",
             "--auth-password", "wrong", "--from", "news@example.com",
             "--to", "jane@example.org"],
            capture_output=True, text=True, timeout=60)
        check(r.returncode != 0, "swaks with a wrong password succeeded")
        check("535" in r.stdout, "535 for a wrong password")


def test_auth_not_before_tls():
    with outsider_daemon() as d:
        r = Raw(d.port)
        r.reply()
        code, text = r.cmd("EHLO client.test")
        check("AUTH" not in text, "AUTH offered in clear")
        token = base64.b64encode(b"\0campaign\0" + PASSWORD.encode()).decode()
        eq(r.cmd("AUTH PLAIN " + token)[0], 530, "AUTH in clear")
        # Unauthenticated outsider: relay refused at RCPT.
        eq(r.cmd("MAIL FROM:<news@example.com>")[0], 250, "MAIL")
        eq(r.cmd("RCPT TO:<jane@example.org>")[0], 554, "relay denied")


def test_auth_without_tls_on_loopback():
    listeners = [("main", 'tls = "none"\n  auth_without_tls = true')]
    with outsider_daemon(listeners=listeners) as d:
        s = d.smtp()
        s.ehlo("client.test")
        check(s.has_extn("auth"), "AUTH offered in clear on loopback")
        s.login("campaign", PASSWORD)
        s.sendmail("news@example.com", ["jane@example.org"],
                   b"From: <news@example.com>\r\nSubject: a\r\n\r\nx\r\n")
        s.quit()


def test_sender_domains():
    with outsider_daemon() as d:
        s = tls_session(d)
        s.login("campaign", PASSWORD)
        eq(s.mail("news@example.com")[0], 250, "own domain")
        s.rset()
        eq(s.mail("a@mail.news.example.net")[0], 250, "listed subdomain")
        s.rset()
        eq(s.mail("a@news.example.net")[0], 550,
           "'.news.example.net' does not cover news.example.net itself")
        s.rset()
        code, text = s.mail("ceo@bank.example")
        eq(code, 550, "foreign domain")
        check(b"5.7.1" in text, "5.7.1: %r" % text)
        eq(s.mail("")[0], 550, "null sender for a user without '*'")
        s.quit()


def test_bad_credentials_and_protocol():
    with outsider_daemon() as d:
        s = tls_session(d)
        try:
            s.login("campaign", "wrong password")
            check(False, "wrong password accepted")
        except smtplib.SMTPAuthenticationError as e:
            eq(e.smtp_code, 535, "wrong password")
        s.close()
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.starttls()
        r.cmd("EHLO client.test")
        eq(r.cmd("AUTH CRAM-MD5")[0], 504, "unknown mechanism")
        eq(r.cmd("AUTH PLAIN !!!notbase64")[0], 501, "bad base64")
        eq(r.cmd("AUTH LOGIN")[0], 334, "LOGIN username prompt")
        eq(r.cmd("*")[0], 501, "cancelled")
        bad = base64.b64encode(b"other\0campaign\0x").decode()
        eq(r.cmd("AUTH PLAIN " + bad)[0], 501, "authzid != authcid")
        r.close()


def test_brute_force_throttling():
    cfg = ('auth_limit { max_failures = 4  window = "10m"  block = "10m"\n'
           '  delay_base = "200ms"  delay_max = "1s" }\n')
    with outsider_daemon(config=cfg) as d:
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.starttls()
        r.cmd("EHLO client.test")
        delays = []
        token = base64.b64encode(b"\0campaign\0nope").decode()
        for i in range(3):
            t0 = time.time()
            eq(r.cmd("AUTH PLAIN " + token)[0], 535, "failure %d" % i)
            delays.append(time.time() - t0)
        # Growing delay: 200 ms, 400 ms, 800 ms (plus Argon2id time).
        check(delays[0] >= 0.2, "first failure delayed: %r" % delays)
        check(delays[2] >= 0.8 and delays[2] > delays[0],
              "delay grows: %r" % delays)
        eq(r.cmd("AUTH PLAIN " + token)[0], 421, "blocked at the limit")
        check(r.closed(), "closed when blocked")
        # A new session from the same client: refused even with the right
        # password while blocked (454, temporary).
        r = Raw(d.port)
        r.reply()
        r.cmd("EHLO client.test")
        r.starttls()
        r.cmd("EHLO client.test")
        good = base64.b64encode(b"\0campaign\0" + PASSWORD.encode()).decode()
        eq(r.cmd("AUTH PLAIN " + good)[0], 454, "blocked client")
        log = d.log()
        check("AUTH failure user=campaign" in log, "failures logged")
        check("client blocked" in log, "block logged")


def test_unknown_user_not_logged():
    with outsider_daemon() as d:
        s = tls_session(d)
        try:
            s.login("jane@example.org", "x")
        except smtplib.SMTPAuthenticationError:
            pass
        s.close()
        log = d.log()
        check("jane@example.org" not in log and "jane" not in log,
              "an unknown user name reached the log")
        check("user=(unknown)" in log, "unknown user logged as such")


run_tests(globals())
