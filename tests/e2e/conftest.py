"""Fixtures for Petrel's end-to-end tests.

The broker under test is `$PETREL_BIN` (default: <repo>/build/petrel).
With PETREL_TEST_TARGET=mosquitto the same tests run against
/usr/sbin/mosquitto with an equivalent generated configuration, which is how
the tests themselves are checked against an independent implementation.
"""

import copy
import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mqttraw  # noqa: E402
import ports  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
TARGET = os.environ.get("PETREL_TEST_TARGET", "petrel")
MOSQUITTO = TARGET == "mosquitto"
PETREL_BIN = os.environ.get("PETREL_BIN", os.path.join(REPO, "build", "petrel"))
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")
HOST = "127.0.0.1"

# Hard limit per test; a hanging test fails instead of stalling the suite.
TEST_TIMEOUT_S = int(os.environ.get("PETREL_TEST_TIMEOUT", "30"))

# PETREL_TEST_WORKERS=N runs every broker the tests start with `workers: N`
# (unless a test sets it); unset, the broker's default (one per core).
TEST_WORKERS = os.environ.get("PETREL_TEST_WORKERS", "")

# Configuration used by the `broker` fixture (the listener is added per test).
DEFAULT_CONFIG = {
    "log_level": "debug",
    "limits": {
        "max_packet_size": 1048576,
        "max_inflight": 20,
        "max_queued_messages": 1000,
        "max_keepalive": 65535,
    },
    "mqtt": {
        "max_qos": 2,
        "retain_available": True,
        "topic_alias_maximum": 10,
        "allow_zero_length_clientid": True,
    },
    # Each test starts from an empty broker (the store directory is always
    # the test's own). PETREL_TEST_PERSISTENCE=1 runs everything with the
    # store enabled; tests that need durability enable it themselves.
    "persistence": {
        "enabled": os.environ.get("PETREL_TEST_PERSISTENCE", "0") not in ("", "0"),
    },
}


def pytest_configure(config):
    config.addinivalue_line("markers", "petrel_only: Petrel-specific test, skipped against mosquitto")
    config.addinivalue_line("markers", "xfail_mosquitto(reason): mosquitto deviates from the spec here")
    config.addinivalue_line("markers", "time_limit(seconds): a longer bound than PETREL_TEST_TIMEOUT for this test")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MOSQUITTO and item.get_closest_marker("petrel_only"):
            item.add_marker(pytest.mark.skip(reason="Petrel-only test"))
        m = item.get_closest_marker("xfail_mosquitto")
        if MOSQUITTO and m:
            reason = m.kwargs.get("reason") or (m.args[0] if m.args else "mosquitto deviation")
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _bounded_test(request):
    # @pytest.mark.time_limit(s): a test that waits on something slower
    # than Petrel (JetStream electing leaders) gets longer.
    mark = request.node.get_closest_marker("time_limit")
    limit = max(TEST_TIMEOUT_S, mark.args[0]) if mark else TEST_TIMEOUT_S

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded %d s" % limit)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def free_port():
    return ports.free_port(HOST)


def poll_until(read, want, timeout=5.0, interval=0.05):
    """Calls read() until it returns `want` or `timeout` seconds pass; the
    last value read (compare it with `want` to see what it was instead)."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(interval)


def merge(base, override):
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def mosquitto_conf(cfg, port):
    """Translate a Petrel config dict into an equivalent mosquitto.conf."""
    limits = cfg.get("limits", {})
    mq = cfg.get("mqtt", {})
    persist = cfg.get("persistence", {})
    lines = [
        "user root",
        "listener %d %s" % (port, HOST),
        "allow_anonymous true",
        "log_dest stderr",
        "log_type all",
        "connection_messages true",
        "set_tcp_nodelay true",
    ]
    if persist.get("enabled"):
        lines.append("persistence true")
        lines.append("persistence_location %s/" % persist["dir"])
        os.makedirs(persist["dir"], exist_ok=True)
    else:
        lines.append("persistence false")
    if "max_packet_size" in limits:
        lines.append("max_packet_size %d" % limits["max_packet_size"])
    if "max_inflight" in limits:
        lines.append("max_inflight_messages %d" % limits["max_inflight"])
    if "max_queued_messages" in limits:
        lines.append("max_queued_messages %d" % limits["max_queued_messages"])
    if limits.get("max_keepalive"):
        lines.append("max_keepalive %d" % limits["max_keepalive"])
    if limits.get("max_connections"):
        lines.append("max_connections %d" % limits["max_connections"])
    if "max_qos" in mq:
        lines.append("max_qos %d" % mq["max_qos"])
    if "retain_available" in mq:
        lines.append("retain_available %s" % ("true" if mq["retain_available"] else "false"))
    if "topic_alias_maximum" in mq:
        lines.append("max_topic_alias %d" % mq["topic_alias_maximum"])
    if "allow_zero_length_clientid" in mq:
        lines.append("allow_zero_length_clientid %s"
                     % ("true" if mq["allow_zero_length_clientid"] else "false"))
    return "\n".join(lines) + "\n"


class Broker:
    def __init__(self, workdir, config, name="broker"):
        self.host = HOST
        self.port = free_port()
        self.workdir = str(workdir)
        # A test's own listeners (TLS, WebSocket) come after the one every
        # test has.
        self.config = merge(config, {"listeners": [{"address": HOST, "port": self.port}] +
                                     list(config.get("listeners", []))})
        self.name = name
        self.stderr_path = os.path.join(self.workdir, "%s.stderr" % name)
        if "persistence" in self.config:
            self.config["persistence"].setdefault("dir", os.path.join(self.workdir, name + "-data"))
        if MOSQUITTO:
            self.config_path = os.path.join(self.workdir, "%s.conf" % name)
            with open(self.config_path, "w") as f:
                f.write(mosquitto_conf(self.config, self.port))
            self.argv = [MOSQUITTO_BIN, "-c", self.config_path]
        else:
            if TEST_WORKERS and "workers" not in self.config:
                self.config["workers"] = int(TEST_WORKERS)
            self.config_path = os.path.join(self.workdir, "%s.yaml" % name)
            with open(self.config_path, "w") as f:
                yaml.safe_dump(self.config, f, default_flow_style=False, sort_keys=False)
            self.argv = [PETREL_BIN, "--config", self.config_path]
        self.proc = None
        self.stopped = False
        self._stderr = None

    def start(self, timeout=5.0):
        if not MOSQUITTO and not os.access(PETREL_BIN, os.X_OK):
            pytest.skip("broker binary not found: %s (set PETREL_BIN)" % PETREL_BIN)
        self._stderr = open(self.stderr_path, "ab")
        self._log_from = self._stderr.tell()  # this run's lines start here
        self.stopped = False
        # Run in the test's directory so relative paths never touch the repo.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     stdout=self._stderr, stderr=self._stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("broker exited with %s during start-up:\n%s"
                                   % (self.proc.returncode, self.log()))
            if self._says_started():
                return self
            try:
                if self._says_started() is None:
                    # No start-up line to wait for: probe the port.
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("broker did not accept connections within %.1fs:\n%s"
                           % (timeout, self.log()))

    def _says_started(self):
        """True once Petrel has logged that it started (its listeners are
        up): the port is then known to accept without a probe connection,
        which a test counting connections would see. None where no such
        line comes (mosquitto, or a log level above notice)."""
        if MOSQUITTO or self.config.get("log_level", "info") in ("warning", "error"):
            return None
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(self._log_from)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return False
        return re.search(r"notice: petrel \S+ started", text) is not None

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signal the broker and wait; return its exit code."""
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("broker did not exit within %.1fs of signal %d"
                                     % (timeout, sig))
        self._close_log()
        return self.proc.returncode

    def kill(self):
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def rewrite_config(self, **changes):
        """Replaces top-level keys of Petrel's configuration file (a value of
        None removes the key); they take effect at the next start()."""
        for key, value in changes.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f, default_flow_style=False, sort_keys=False)

    def slow_disk(self, tmp_path):
        """Preloads tests/e2e/slow_sync.c into Petrel (built here, before
        start()): each fsync and fdatasync first sleeps for the
        milliseconds written in the returned file (0 to begin with). Skips
        where it cannot be built or preloaded."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            pytest.skip("no C compiler to build the slow-disk shim")
        so = str(tmp_path / "slow_sync.so")
        src = os.path.join(HERE, "slow_sync.c")
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", so, src, "-ldl"], check=True, timeout=60)
        delay = tmp_path / "sync_delay_ms"
        delay.write_text("0\n")
        env = ["env", "LD_PRELOAD=" + so, "PETREL_TEST_SYNC_DELAY_FILE=%s" % delay]
        r = subprocess.run(env + [self.argv[0], "--version"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
        if r.returncode != 0:
            pytest.skip("the shim cannot be preloaded into this broker build: %r" % r.stderr[-200:])
        self.argv = env + self.argv
        return delay

    def _close_log(self):
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # Convenience: raw clients bound to this broker.
    def client(self, version=4, timeout=5.0, name=""):
        return mqttraw.RawClient(self.host, self.port, version=version,
                                 timeout=timeout, name=name)

    def connected(self, client_id="", version=4, clean=True, keepalive=60, **kw):
        c = self.client(version)
        c.connack = c.connect(client_id, clean=clean, keepalive=keepalive, **kw)
        return c


@pytest.fixture
def make_broker(request, tmp_path):
    """Factory: make_broker(limits={...}, mqtt={...}) -> started Broker."""
    brokers = []
    clients = []

    def factory(start=True, **overrides):
        b = Broker(tmp_path, merge(DEFAULT_CONFIG, overrides), name="broker%d" % len(brokers))
        brokers.append(b)
        orig_client = b.client

        def tracked_client(*a, **kw):
            c = orig_client(*a, **kw)
            clients.append(c)
            return c
        b.client = tracked_client
        if start:
            b.start()
        return b

    yield factory

    for c in clients:
        c.close()
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    crashed = []
    for b in brokers:
        if b.proc is not None and not b.stopped and not b.running():
            crashed.append(b)
        b.kill()
        if failed or b in crashed:
            print("\n----- %s log (%s) -----\n%s" % (b.name, " ".join(b.argv), b.log()))
    if crashed and not failed:
        pytest.fail("broker exited unexpectedly during the test (exit code %s)"
                    % ", ".join(str(b.proc.returncode) for b in crashed))


@pytest.fixture
def broker(make_broker):
    return make_broker()


def pytest_report_header(config):
    return "e2e target: %s" % (MOSQUITTO_BIN + " (mosquitto)" if MOSQUITTO else PETREL_BIN)
