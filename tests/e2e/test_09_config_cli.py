"""Command line, configuration validation and signals."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import mqttraw as m
from conftest import PETREL_BIN, REPO, free_port

petrel_only = pytest.mark.petrel_only


def run(*args, timeout=10, cwd=None):
    if not os.access(PETREL_BIN, os.X_OK):
        pytest.skip("broker binary not found: %s" % PETREL_BIN)
    # A scratch working directory: relative paths in a config (the
    # persistence store) must never land in the repository.
    with tempfile.TemporaryDirectory() as scratch:
        return subprocess.run([PETREL_BIN] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or scratch)


def check(tmp_path, text):
    path = tmp_path / "petrel.yaml"
    path.write_text(text)
    return run("--check-config", "--config", str(path))


def assert_names_line(stderr, key, line):
    assert key in stderr, stderr
    assert re.search(r"line\D{0,3}%d\b" % line, stderr), stderr


@petrel_only
def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert re.search(r"petrel\s+\d+\.\d+", r.stdout + r.stderr, re.I), r


@petrel_only
def test_help():
    r = run("--help")
    assert r.returncode == 0
    out = r.stdout + r.stderr
    assert "--config" in out and "--check-config" in out


@petrel_only
def test_unknown_argument():
    r = run("--no-such-option")
    assert r.returncode != 0
    assert "--no-such-option" in r.stderr


@petrel_only
def test_check_repo_config():
    r = run("--check-config", "--config", os.path.join(REPO, "config.yaml"))
    assert r.returncode == 0, r.stderr


@petrel_only
def test_check_generated_test_config(broker):
    r = run("--check-config", "--config", broker.config_path)
    assert r.returncode == 0, r.stderr


@petrel_only
def test_unknown_key_named_with_line(tmp_path):
    r = check(tmp_path, "\n".join([
        "# comment",
        "log_level: info",
        "listeners:",
        "  - address: 127.0.0.1",
        "    port: 1883",
        "limits:",
        "  max_inflight: 10",
        "  max_pakcet_size: 5",
        "",
    ]))
    assert r.returncode != 0
    assert_names_line(r.stderr, "max_pakcet_size", 8)


@petrel_only
def test_unknown_top_level_key(tmp_path):
    r = check(tmp_path, "log_level: info\nlisteners:\n  - address: 127.0.0.1\n    port: 1\nlistner: x\n")
    assert r.returncode != 0
    assert_names_line(r.stderr, "listner", 5)


@petrel_only
def test_wrong_type_named_with_line(tmp_path):
    r = check(tmp_path, "log_level: info\nlisteners:\n  - address: 127.0.0.1\n    port: abc\n")
    assert r.returncode != 0
    assert_names_line(r.stderr, "port", 4)


@petrel_only
@pytest.mark.parametrize("text,key,line", [
    ("mqtt:\n  max_qos: 3\n", "max_qos", 2),
    ("mqtt:\n  retain_available: maybe\n", "retain_available", 2),
    ("log_level: loud\n", "log_level", 1),
    ("limits:\n  max_packet_size: 0\n", "max_packet_size", 2),
    ("limits:\n  max_inflight: -1\n", "max_inflight", 2),
    ("listeners:\n  - address: 127.0.0.1\n    port: 70000\n", "port", 3),
    ("limits: 5\n", "limits", 1),
])
def test_invalid_values(tmp_path, text, key, line):
    r = check(tmp_path, text)
    assert r.returncode != 0, (text, r.stderr)
    assert_names_line(r.stderr, key, line)


@petrel_only
def test_yaml_syntax_error(tmp_path):
    r = check(tmp_path, "limits:\n  max_inflight: [1, 2\nmqtt:\n")
    assert r.returncode != 0
    assert r.stderr.strip()


@petrel_only
def test_missing_config_file(tmp_path):
    r = run("--check-config", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode != 0
    assert "nope.yaml" in r.stderr


@petrel_only
def test_invalid_config_refused_at_start(tmp_path):
    port = free_port()
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n  - address: 127.0.0.1\n    port: %d\nlimits:\n  bogus: 1\n" % port)
    r = run("--config", str(path))
    assert r.returncode != 0
    assert_names_line(r.stderr, "bogus", 5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


@petrel_only
def test_port_override(tmp_path):
    port = free_port()
    path = tmp_path / "p.yaml"
    path.write_text("listeners:\n  - address: 127.0.0.1\n    port: 1\n")
    proc = subprocess.Popen([PETREL_BIN, "--config", str(path), "--port", str(port)],
                            cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_clean_exit(broker, sig):
    clients = [broker.connected("sig-%d" % i, version=4 + i % 2) for i in range(4)]
    clients[0].subscribe([("sig/#", 1)])
    clients[1].publish("sig/t", b"x", qos=1)
    t0 = time.monotonic()
    assert broker.stop(sig, timeout=5) == 0
    assert time.monotonic() - t0 < 3
    for c in clients:
        c.expect_closed(2)


def test_signal_idle_exit(broker):
    t0 = time.monotonic()
    assert broker.stop(signal.SIGTERM, timeout=5) == 0
    assert time.monotonic() - t0 < 2


@petrel_only
def test_log_mentions_client(broker):
    c = broker.connected("log-me-please")
    c.disconnect()
    deadline = time.monotonic() + 2
    while "log-me-please" not in broker.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "log-me-please" in broker.log()


@petrel_only
def test_max_connections(make_broker):
    b = make_broker(limits={"max_connections": 3})
    keep = [b.connected("mc-%d" % i) for i in range(3)]
    try:
        extra = b.client(4)
        extra.send(m.connect("mc-extra", 4))
        packets = extra.expect_closed(3)
        assert all(p.type == m.CONNACK and p.reason != 0 for p in packets), packets
    except (ConnectionResetError, BrokenPipeError):
        pass
    for c in keep:
        c.ping()
    keep[0].disconnect()
    time.sleep(0.3)
    b.connected("mc-again").ping()


# -- message_expiry: and mqtt.max_message_expiry -------------------------------

@petrel_only
def test_message_expiry_rules_accepted(tmp_path):
    r = check(tmp_path, "\n".join([
        "message_expiry:",
        "  - filter: signup/sms/#",
        "    seconds: 1800",
        "  - {filter: 'fleet/+/telemetry', seconds: 60}",
        "  - filter: audit/#",
        "    seconds: 0",
        "mqtt:",
        "  max_message_expiry: 86400",
        "",
    ]))
    assert r.returncode == 0, r.stderr


@petrel_only
@pytest.mark.parametrize("text,key,line", [
    ("message_expiry:\n  - filter: a/#/b\n    seconds: 5\n", "message_expiry[0].filter", 2),
    ("message_expiry:\n  - filter: ok/#\n    seconds: 5\n  - filter: a+\n    seconds: 5\n",
     "message_expiry[1].filter", 4),
    ("message_expiry:\n  - filter: $share/g/a\n    seconds: 5\n", "message_expiry[0].filter", 2),
    ("message_expiry:\n  - filter: a\n    seconds: -1\n", "message_expiry[0].seconds", 3),
    ("message_expiry:\n  - filter: a\n    seconds: 4294967296\n", "message_expiry[0].seconds", 3),
    ("message_expiry:\n  - filter: a\n    seconds: 1h\n", "message_expiry[0].seconds", 3),
    ("message_expiry:\n  - filter: a\n", "message_expiry[0].seconds", 2),
    ("message_expiry:\n  - seconds: 5\n", "message_expiry[0].filter", 2),
    ("message_expiry:\n  - filter: a\n    seconds: 5\n    topic: b\n", "message_expiry[0].topic", 4),
    ("log_level: info\nmessage_expiry: 60\n", "message_expiry", 2),
    ("message_expiry:\n  a/#: 60\n", "message_expiry", 2),
    ("mqtt:\n  max_message_expiry: -1\n", "max_message_expiry", 2),
    ("mqtt:\n  max_message_expiry: 4294967296\n", "max_message_expiry", 2),
])
def test_message_expiry_invalid_values(tmp_path, text, key, line):
    r = check(tmp_path, text)
    assert r.returncode != 0, (text, r.stderr)
    assert_names_line(r.stderr, key, line)
