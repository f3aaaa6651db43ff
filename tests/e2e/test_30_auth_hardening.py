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


def connack(port, user, password, version=4, client_id="c", timeout=5.0):
    c = m.RawClient(HOST, port, version=version, timeout=timeout)
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
    an unknown user cost the broker the same CPU time (within a generous
    bound), and neither answers markedly sooner (the measured numbers are
    in bench/README.md)."""
    path = str(tmp_path / "passwd")
    passwd(path, "slow", "secret", iterations=20000, create=True)
    b = make_broker(auth={"password_file": path})

    def cpu():
        # Nanoseconds on a CPU, every thread of the broker (the scheduler's
        # own count: the clock ticks of /proc/PID/stat are as long as one
        # attempt).
        total = 0
        for task in os.listdir("/proc/%d/task" % b.proc.pid):
            try:
                total += int(open("/proc/%d/task/%s/schedstat" % (b.proc.pid, task)).read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that ended between the two reads
        return total / 1e9

    def timed(user):
        c0, t0 = cpu(), time.perf_counter()
        assert connack(b.port, user, "wrong") == 4
        return time.perf_counter() - t0, cpu() - c0
    for _ in range(3):
        timed("slow"), timed("nobody")  # warm up

    def measure(round_):
        # Alternated, in pairs: a burst of load on the machine falls on one
        # pair's two attempts alike.
        pairs = [(timed("slow"), timed("nobody-%d-%d" % (round_, i))) for i in range(20)]
        # The broker's own CPU time, which other processes' load moves far
        # less than the clock's wall time (under a full parallel run the
        # wall medians came out at 0.68 once and 1.54 once).
        cpu_wrong = sum(w[1] for w, _ in pairs)
        cpu_unknown = sum(u[1] for _, u in pairs)
        ratio = statistics.median(u[0] / w[0] for w, u in pairs)
        return cpu_wrong, cpu_unknown, ratio, pairs

    # Under the full suite on two cores the CPU time too was skewed once
    # (0.63: every "slow" attempt 17 ms, every unknown one 10 ms, in one
    # run of 20 pairs, not seen again alone or beside the cluster tests).
    # A real difference shows in every round; a burst of load in one.
    for round_ in range(3):
        cpu_wrong, cpu_unknown, ratio, pairs = measure(round_)
        if 0.7 < cpu_unknown / cpu_wrong < 1.4 and 0.5 < ratio < 2.0:
            break
    assert cpu_wrong > 0.1, pairs  # PBKDF2 at 20,000 iterations: about 10 ms each
    assert 0.7 < cpu_unknown / cpu_wrong < 1.4, (cpu_wrong, cpu_unknown, pairs)
    # The clock: an unknown user is not answered without the work (that
    # would be far below half).
    assert 0.5 < ratio < 2.0, (ratio, pairs)


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


def _guess(port, user, n, out):
    codes = []
    for i in range(n):
        c = m.RawClient(HOST, port)
        try:
            codes.append(c.connect("g", username=user, password="guess-%d" % i, expect_reason=None).reason)
        finally:
            c.close()
    out.put(codes)


def guess_and_ping(port, user, attempts, procs=8):
    """`attempts` wrong-password CONNECTs for `user` from `procs` processes
    (their own interpreters: the bystander's timing must not include
    waiting for a shared interpreter lock), while a connected bystander
    pings: returns (bystander RTTs in ms, attack seconds, CONNACK codes)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    bystander = m.RawClient(HOST, port)
    bystander.connect("bystander")
    workers = [ctx.Process(target=_guess, args=(port, user, attempts // procs, out)) for _ in range(procs)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    rtts = []
    while any(w.is_alive() for w in workers) and time.monotonic() - t0 < 25:
        s = time.perf_counter()
        bystander.ping()
        rtts.append((time.perf_counter() - s) * 1000)
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    codes = []
    for _ in workers:
        codes += out.get(timeout=10)
    for w in workers:
        w.join(5)
    bystander.close()
    return rtts, elapsed, codes


def test_password_guessing_does_not_slow_other_clients(make_broker, tmp_path):
    """200 wrong-password attempts against a 20,000-iteration user: the
    hashing runs off the loop, and a bystander's ping stays fast."""
    path = str(tmp_path / "passwd")
    passwd(path, "slow", "secret", iterations=20000, create=True)
    b = make_broker(auth={"password_file": path})
    rtts, elapsed, codes = guess_and_ping(b.port, "slow", 200)
    assert len(codes) == 200 and set(codes) <= {4, 0x89, 3}, set(codes)
    assert codes.count(4) >= 150, codes.count(4)  # refused as wrong, not turned away busy
    rtts.sort()
    p99 = rtts[int(len(rtts) * 0.99) - 1]
    bound = 60.0 if SANITIZED else 30.0  # generous (CI runs tests side by side); bench/README.md has the numbers
    assert p99 < bound, "bystander ping p99 %.2f ms over %d pings (%.1f s of guessing)" % (p99, len(rtts), elapsed)
    assert connack(b.port, "slow", "secret") == 0


def test_an_expensive_hash_never_blocks_the_loop(make_broker, tmp_path):
    """One wrong password for a user whose hash takes about half a second: the
    check runs on a worker thread, so a bystander's pings meanwhile are
    answered at once (with the hash on the loop, each would wait for it)."""
    path = str(tmp_path / "passwd")
    passwd(path, "vault", "secret", iterations=1_000_000, create=True)
    b = make_broker(auth={"password_file": path})
    bystander = m.RawClient(HOST, b.port)
    bystander.connect("bystander")
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(connack(b.port, "vault", "wrong", timeout=25)))
    t0 = time.monotonic()
    t.start()
    worst = 0.0
    while t.is_alive():
        s = time.perf_counter()
        bystander.ping()
        worst = max(worst, time.perf_counter() - s)
        time.sleep(0.005)
    hash_time = time.monotonic() - t0
    assert result == [4]
    assert hash_time > 0.3, hash_time  # the hash was really that expensive
    assert worst < hash_time / 3, (worst, hash_time)


def tls_listener_config(tmp_path, cert, key, ca=None, crl=None, port=None):
    tls = {"cert_file": cert, "key_file": key}
    if ca:
        tls.update({"ca_file": ca, "require_certificate": True})
    if crl:
        tls["crl_file"] = crl
    conf = tmp_path / "tls.yaml"
    import yaml
    conf.write_text(yaml.safe_dump({"listeners": [{"address": HOST, "port": port or free_port(), "tls": tls}],
                                    "persistence": {"enabled": False}}))
    return conf


@pytest.mark.parametrize("kind", ["expired", "expiring"])
def test_crl_expired_or_expiring_is_warned_about(tmp_path, kind):
    from petrel_tls_helpers import CertAuthority, openssl
    ca = CertAuthority(str(tmp_path))
    cert, key = ca.issue("server", "localhost", server=True)
    crl = str(tmp_path / "crl.pem")
    if kind == "expired":
        openssl("ca", "-batch", "-config", ca.conf, "-gencrl", "-crlsec", "1", "-out", crl)
        time.sleep(2.2)
    else:
        openssl("ca", "-batch", "-config", ca.conf, "-gencrl", "-crldays", "3", "-out", crl)
    conf = tls_listener_config(tmp_path, cert, key, ca=ca.cert, crl=crl)
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    if kind == "expired":
        assert re.search(r"warning: listener .*: the CRL .*crl\.pem expired .*every client certificate is refused",
                         r.stderr), r.stderr
    else:
        assert re.search(r"warning: listener .*: the CRL .*crl\.pem expires on .* \(in (6[0-9]|7[0-2]) h\)",
                         r.stderr), r.stderr


def test_key_mismatch_names_the_files_and_the_config_key(tmp_path):
    from petrel_tls_helpers import CertAuthority
    ca = CertAuthority(str(tmp_path))
    cert, _ = ca.issue("server", "localhost", server=True)
    _, other_key = ca.issue("other", "other", server=True)
    conf = tls_listener_config(tmp_path, cert, other_key)
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert "listeners[0].tls" in r.stderr and "key_file %s does not match cert_file %s" % (other_key, cert) \
        in r.stderr, r.stderr
