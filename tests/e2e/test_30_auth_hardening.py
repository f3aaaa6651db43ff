"""Authentication and logging under hostile input and operator mistakes:

1. a broken password file (truncated, garbage, empty) never replaces a
   good one on SIGHUP, and never starts the broker;
2. an unknown user costs what a known user's check costs (timing);
4. peer strings (client ids, user names) cannot forge log lines or send
   terminal escapes;
5. --check-config loads every file the start would load;
6. a listener that takes user names unverified is warned about.
"""

import os
import re
import signal
import statistics
import subprocess
import time

import pytest

import mqttraw as m
from conftest import HOST, PETREL_BIN, free_port

pytestmark = pytest.mark.petrel_only

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"


def passwd(path, user, password, iterations=None, create=False):
    args = [PETREL_BIN, "passwd"] + (["-c"] if create else []) + ["-b"]
    if iterations:
        args += ["-I", str(iterations)]
    r = subprocess.run(args + [path, user, password], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def connack(port, user, password, version=4, client_id="c"):
    c = m.RawClient(HOST, port, version=version)
    try:
        return c.connect(client_id, username=user, password=password, expect_reason=None).reason
    finally:
        c.close()


def wait_log(b, pattern, timeout=5.0, start=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, b.log()[start:]):
            return
        time.sleep(0.05)
    raise AssertionError("%r not in the log:\n%s" % (pattern, b.log()[-2000:]))


@pytest.fixture
def pwfile(tmp_path):
    path = str(tmp_path / "passwd")
    passwd(path, "alice", "secret", create=True)
    passwd(path, "bob", "hunter2")
    return path


@pytest.mark.parametrize("breakage", ["truncated", "garbage", "empty", "clear text line"])
def test_broken_password_file_on_reload_keeps_the_old_one(make_broker, pwfile, breakage):
    b = make_broker(auth={"password_file": pwfile}, listeners=[])
    assert connack(b.port, "alice", "secret") == 0
    good = open(pwfile).read()
    broken = {"truncated": good[:60], "garbage": "garbage\n", "empty": "",
              "clear text line": good + "carol:letmein\n"}[breakage]
    with open(pwfile + ".tmp", "w") as f:
        f.write(broken)
    os.replace(pwfile + ".tmp", pwfile)
    start = len(b.log())
    b.send_signal(signal.SIGHUP)
    wait_log(b, r"password file not reloaded, the previous one stays in use: .*passwd", start=start)
    assert "reloaded: 0 users" not in b.log()
    assert connack(b.port, "alice", "secret") == 0
    assert connack(b.port, "bob", "hunter2") == 0
    assert connack(b.port, "alice", "wrong") == 4


def test_broken_password_file_refuses_to_start(tmp_path, pwfile):
    with open(pwfile, "a") as f:
        f.write("mallory\n")
    conf = tmp_path / "c.yaml"
    conf.write_text("listeners:\n  - {address: %s, port: %d}\nauth: {password_file: %s}\n"
                    "persistence: {enabled: false}\n" % (HOST, free_port(), pwfile))
    for args in (["--config", str(conf)], ["--check-config", "--config", str(conf)]):
        r = subprocess.run([PETREL_BIN] + args, capture_output=True, text=True, timeout=10)
        assert r.returncode == 1, (args, r.stderr)
        assert re.search(r"auth\.password_file: .*passwd:3: not a 'user:hash' line", r.stderr), r.stderr


def test_peer_strings_cannot_forge_log_lines(make_broker, pwfile):
    b = make_broker(auth={"password_file": pwfile})
    forged = "mallory\n2026-11-30T00:00:00.000Z notice: client admin connected (forged)\x1b[31m"
    assert connack(b.port, forged, "x") == 4
    assert connack(b.port, None, None, client_id="evil\r\n2026-11-30T00:00:00.000Z error: forged\x1b]0;t\x07") == 0
    time.sleep(0.3)
    log = b.log()
    assert "\x1b" not in log and "\x07" not in log and "\r" not in log
    for line in log.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \w+: ", line), repr(line)
        assert "forged" not in line or "\\n" in line, repr(line)
    assert "mallory\\n2026-11-30T00:00:00.000Z notice: client admin connected (forged)\\x1b[31m" in log


def test_unknown_user_costs_what_a_wrong_password_costs(make_broker, tmp_path):
    """Timing: with a user at 20,000 PBKDF2 iterations, a wrong password and
    an unknown user take the same time (medians within a generous bound;
    the measured numbers are in bench/README.md)."""
    path = str(tmp_path / "passwd")
    passwd(path, "slow", "secret", iterations=20000, create=True)
    b = make_broker(auth={"password_file": path})

    def timed(user):
        t0 = time.perf_counter()
        assert connack(b.port, user, "wrong") == 4
        return time.perf_counter() - t0
    for _ in range(3):
        timed("slow"), timed("nobody")  # warm up
    wrong = statistics.median(timed("slow") for _ in range(15))
    unknown = statistics.median(timed("nobody-%d" % i) for i in range(15))
    assert 0.7 < unknown / wrong < 1.4, (wrong, unknown)


def test_check_config_loads_every_file(tmp_path, pwfile):
    def check(text):
        conf = tmp_path / "c.yaml"
        conf.write_text(text)
        return subprocess.run([PETREL_BIN, "--check-config", "--config", str(conf)], capture_output=True,
                              text=True, timeout=10)
    base = "listeners:\n  - {address: %s, port: %d}\npersistence: {enabled: false}\n" % (HOST, free_port())
    r = check(base + "auth: {password_file: %s}\n" % pwfile)
    assert r.returncode == 0, r.stderr
    r = check(base + "auth: {password_file: %s}\n" % (pwfile + ".missing"))
    assert r.returncode == 1 and "auth.password_file" in r.stderr and "cannot open" in r.stderr, r.stderr
    r = check(base + "auth: {acl_file: %s}\n" % (tmp_path / "no-acl"))
    assert r.returncode == 1 and "auth.acl_file" in r.stderr, r.stderr
    r = check("listeners:\n  - address: %s\n    port: %d\n    tls: {cert_file: %s, key_file: %s}\n"
              % (HOST, free_port(), tmp_path / "no.pem", tmp_path / "no.key"))
    assert r.returncode == 1 and "listeners[0]" in r.stderr and "no.pem" in r.stderr, r.stderr
    r = check(base + "bridges:\n  - name: b\n    address: %s:1\n    tls: {ca_file: %s}\n"
              "    topics: [{pattern: '#'}]\n" % (HOST, tmp_path / "no-ca.pem"))
    assert r.returncode == 1 and "bridge b" in r.stderr and "no-ca.pem" in r.stderr, r.stderr


def test_unverified_user_names_are_warned_about(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user admin\ntopic readwrite #\n")
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text("listeners:\n  - {address: %s, port: %d}\nauth: {acl_file: %s}\n"
                    "persistence: {enabled: false}\n" % (HOST, port, acl))
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0
    assert re.search(r"listener 127\.0\.0\.1:%d takes user names as given" % port, r.stderr), r.stderr
