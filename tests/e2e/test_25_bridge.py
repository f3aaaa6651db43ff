"""Bridges: Petrel as a client of a remote broker, with a durable out queue.

The remote is a real mosquitto (the Debian package, started here on
loopback) or another Petrel. What is checked:

* topic rules with prefixes map topics one to one in both directions, with
  QoS and retain flags kept;
* store and forward: 10,000 QoS 1 messages go out while the remote is
  stopped and restarted, and while the local Petrel is SIGKILLed and
  restarted: none lost, first deliveries in publish order;
* what comes in is acknowledged to the remote only once stored: the local
  Petrel is SIGKILLed while a remote publisher streams, and a durable local
  subscriber still gets everything;
* loop prevention: two Petrels bridged both ways on `#` (one bridge with
  direction both, or one bridge each way), MQTT 5 and 3.1.1: every message
  arrives once on each side;
* the retained status topic, counters, queue limits with counted drops,
  fail-over between addresses, TLS with a verified server certificate, the
  reserved client ids, configuration errors.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import yaml

import fastclient as fc
import mqttraw as m
from conftest import HOST, PETREL_BIN, free_port

pytestmark = pytest.mark.petrel_only

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
MOSQUITTO = "/usr/sbin/mosquitto"
N = 10_000


class Mosquitto:
    """A real mosquitto on loopback, persistent, restartable on its port."""

    def __init__(self, workdir, name="mosquitto", users=None):
        self.port = free_port()
        self.dir = os.path.join(str(workdir), name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        auth = "allow_anonymous true\n"
        if users:
            pw = os.path.join(self.dir, "passwd")
            for i, (user, password) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd"] + (["-c"] if i == 0 else []) + ["-b", pw, user, password],
                               check=True, capture_output=True)
            auth = "allow_anonymous false\npassword_file %s\n" % pw
        with open(self.conf, "w") as f:
            f.write("user root\nlistener %d %s\n" % (self.port, HOST) + auth +
                    "persistence true\npersistence_location %s/\nautosave_interval 1\n"
                    "max_queued_messages 0\nmax_inflight_messages 100\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
                    % self.dir)
        self.proc = None
        self.log_path = os.path.join(self.dir, "log")

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def address(self):
        return "%s:%d" % (HOST, self.port)


@pytest.fixture
def mosquitto(tmp_path):
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip("mosquitto is not installed")
    started = []

    def make(name="mosquitto", users=None):
        mq = Mosquitto(tmp_path, name, users)
        started.append(mq)
        return mq.start()
    yield make
    for mq in started:
        mq.stop()


def bridge(name, address, topics, **kw):
    b = {"name": name, "address": address, "reconnect_min_ms": 100, "reconnect_max_ms": 500,
         "topics": topics}
    b.update(kw)
    return b


def rule(pattern, direction="out", qos=1, local_prefix="", remote_prefix=""):
    return {"pattern": pattern, "direction": direction, "qos": qos,
            "local_prefix": local_prefix, "remote_prefix": remote_prefix}


def petrel(make_broker, bridges=(), persistent=True, **kw):
    return make_broker(persistence={"enabled": persistent}, bridges=list(bridges),
                       limits={"max_queued_messages": 0, "max_inflight": 100},
                       mqtt={"sys_interval": 1}, **kw)


def rewrite(b, **changes):
    """Replace top-level keys of a broker's configuration (before start())."""
    b.rewrite_config(**changes)


def wait_log(b, pattern, count=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, b.log())) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("%r not seen %d times in the log:\n%s" % (pattern, count, b.log()[-3000:]))


def wait_up(b, name="r", count=1):
    wait_log(b, r"bridge %s: connected to" % re.escape(name), count)


def collect(c, n, timeout=5.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            got.append(c.recv_publish(timeout=max(0.05, deadline - time.monotonic())))
        except m.ReadTimeout:
            break
    return got


def sub_client(port, filt, version=4, qos=1, cid="", clean=True):
    c = m.RawClient(HOST, port, version=version)
    c.connect(cid, clean=clean)
    c.subscribe([(filt, qos)])
    return c


def sys_value(port, topic, timeout=3.0):
    c = m.RawClient(HOST, port)
    c.connect("")
    c.subscribe([(topic, 0)])
    try:
        return c.recv_publish(timeout=timeout).payload.decode()
    finally:
        c.close()


def when_acked(pub, count, action):
    """Runs `action` on a thread once `pub` has `count` acknowledgements:
    in the middle of its stream, not between two calls."""
    def run():
        deadline = time.monotonic() + 20
        while pub.acked < count and time.monotonic() < deadline:
            time.sleep(0.0005)
        action()
    t = threading.Thread(target=run)
    t.start()
    return t


def publish_through(pub, topic, n, window=100):
    """Publishes until `n` messages are numbered, riding out the broker
    going away: returns once the connection broke or all were acknowledged."""
    try:
        pub.publish(topic, n - pub.next_seq, window=window)
        return True
    except (ConnectionError, OSError, AssertionError):
        pub.close()
        return False


def wait_sys(port, topic, pred, timeout=5.0):
    """The $SYS value once `pred` holds for it ($SYS is published every
    mqtt.sys_interval, here 1 s: a value read at once may be older)."""
    deadline = time.monotonic() + timeout
    while True:
        v = sys_value(port, topic)
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.2)


def drain(subs, n, timeout):
    ok = fc.run(subs, lambda: all(s.unique() >= n for s in subs), timeout)
    return ok


# --- mapping, both directions, a real mosquitto as the remote -------------

@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv5"])
def test_mosquitto_remote_topics_map_both_ways(make_broker, mosquitto, protocol):
    mq = mosquitto()
    p = petrel(make_broker, [bridge("r", mq.address(), [
        rule("sensors/#", "out", 1, "", "site1/"),
        rule("cmd/#", "in", 1, "remote/", ""),
        rule("echo/#", "both", 1),
    ], protocol=protocol)])
    wait_up(p)
    remote = sub_client(mq.port, "#")
    local = sub_client(p.port, "#", cid="local")
    time.sleep(0.3)  # the bridge's SUBSCRIBE on the remote is in place

    pub = m.RawClient(HOST, p.port)
    pub.connect("pub")
    pub.publish("sensors/t1", b"21.5", qos=1)
    pub.publish("sensors/t2", b"r", qos=1, retain=True)
    got = collect(remote, 2)
    assert [(g.topic, g.payload) for g in got] == [("site1/sensors/t1", b"21.5"), ("site1/sensors/t2", b"r")]
    # The retained message is retained on the remote too.
    late = sub_client(mq.port, "site1/sensors/t2")
    r = late.recv_publish(timeout=3)
    assert r.payload == b"r" and r.retain

    rpub = m.RawClient(HOST, mq.port)
    rpub.connect("rpub")
    rpub.publish("cmd/reboot", b"now", qos=1)
    got = [g for g in collect(local, 3) if g.topic.startswith("remote/")]
    assert [(g.topic, g.payload) for g in got] == [("remote/cmd/reboot", b"now")]

    # Both ways on echo/#: each side gets a message once, never back.
    pub.publish("echo/a", b"from-petrel", qos=1)
    rpub.publish("echo/b", b"from-mosquitto", qos=1)
    time.sleep(1.0)
    local_echo = [(g.topic, g.payload) for g in collect(local, 10, 1.0) if g.topic.startswith("echo/")]
    remote_echo = [(g.topic, g.payload) for g in collect(remote, 10, 1.0) if g.topic.startswith("echo/")]
    # (the local subscriber saw sensors/* before; only echo/* counts here)
    assert sorted(local_echo) == [("echo/a", b"from-petrel"), ("echo/b", b"from-mosquitto")]
    assert sorted(remote_echo) == [("echo/a", b"from-petrel"), ("echo/b", b"from-mosquitto")]
    assert sys_value(p.port, "$SYS/broker/bridge/r/state") == "1"


# --- store and forward ---------------------------------------------------

@pytest.mark.parametrize("remote_kind", ["mosquitto", "petrel"])
def test_store_and_forward_while_the_remote_is_down(make_broker, mosquitto, remote_kind):
    """10,000 QoS 1 messages; the remote is stopped in the middle of the
    stream and restarted later: Petrel acknowledges what it stored, and
    forwards all of it, in order, once the link is back."""
    if remote_kind == "mosquitto":
        remote = mosquitto()
        stop, start = remote.stop, remote.start
    else:
        remote = petrel(make_broker)
        stop, start = remote.kill, remote.start
    address = "%s:%d" % (HOST, remote.port)
    p = petrel(make_broker, [bridge("r", address, [rule("data/#", "out", 1)],
                                    protocol="mqttv311" if remote_kind == "mosquitto" else "mqttv5",
                                    keepalive=2)])
    wait_up(p)
    # A durable subscriber on the remote, offline while its broker is down.
    rsub = fc.Sub(HOST, remote.port, "rsub", version=5, clean=False, expiry=3600).connect("data/#", qos=1)
    rsub.close()
    pub = fc.Pub(HOST, p.port, "pub", version=4, name="p").connect()
    stopper = when_acked(pub, N // 4, stop)
    assert publish_through(pub, "data/x", N * 3 // 4)  # Petrel stays up throughout
    stopper.join()
    wait_log(p, r"bridge r: link to .* lost")
    assert sys_value(p.port, "$SYS/broker/bridge/r/state") == "0"  # published on change
    queued = int(wait_sys(p.port, "$SYS/broker/bridge/r/queued", lambda v: int(v) > N // 4))
    assert queued > N // 4, queued  # held by Petrel while the remote was away
    time.sleep(1.0)  # down "for a while": a few reconnect attempts fail
    start()
    assert publish_through(pub, "data/x", N)  # while the link comes back
    rsub = fc.Sub(HOST, remote.port, "rsub", version=5, clean=False, expiry=3600).connect()
    assert drain([rsub], N, 30), "remote got %d of %d" % (rsub.unique(), N)
    assert rsub.order_errors == 0
    assert int(wait_sys(p.port, "$SYS/broker/bridge/r/reconnects", lambda v: int(v) >= 2)) >= 2
    assert sys_value(p.port, "$SYS/broker/bridge/r/dropped") == "0"


def test_store_and_forward_across_kill9_of_the_local_petrel(make_broker):
    """Petrel to Petrel: the local one is SIGKILLed in the middle of the
    stream and restarted; every message it acknowledged reaches the remote,
    first deliveries in publish order."""
    remote = petrel(make_broker)
    rsub = fc.Sub(HOST, remote.port, "rsub", version=5, clean=False, expiry=3600).connect("data/#", qos=1)
    local = petrel(make_broker, [bridge("r", "%s:%d" % (HOST, remote.port), [rule("data/#", "out", 1)])])
    wait_up(local)
    pub = fc.Pub(HOST, local.port, "pub", version=5, clean=False, expiry=3600, name="p").connect()
    for k in range(2):  # twice, at different points of the stream
        killer = when_acked(pub, N * (k + 1) // 3, local.kill)
        assert not publish_through(pub, "data/x", N), "the kill came after the stream"
        killer.join()
        local.start()
        pub.connect()  # resends what was not acknowledged
    assert publish_through(pub, "data/x", N)
    assert drain([rsub], N, 30), "remote got %d of %d" % (rsub.unique(), N)
    assert rsub.order_errors == 0
    wait_up(local, count=3)


def test_qos2_exactly_once_across_kill9(make_broker):
    """QoS 2 through a Petrel to Petrel bridge, the local one SIGKILLed in
    the middle: each message arrives exactly once (the resend after the
    restart carries the stored packet id, the remote's session remembers it)."""
    n = N // 2
    remote = petrel(make_broker)
    rsub = fc.Sub(HOST, remote.port, "rsub", version=5, clean=False, expiry=3600).connect("q2/#", qos=2)
    local = petrel(make_broker, [bridge("r", "%s:%d" % (HOST, remote.port), [rule("q2/#", "out", 2)])])
    wait_up(local)
    pub = fc.Pub(HOST, local.port, "pub", version=5, clean=False, expiry=3600, name="p").connect()
    killer = when_acked(pub, n // 2, local.kill)
    try:
        pub.publish("q2/x", n, qos=2, window=100)
    except (ConnectionError, OSError, AssertionError):
        pub.close()
    killer.join()
    local.start()
    pub.connect()
    pub.publish("q2/x", n - pub.next_seq, qos=2, window=100)
    assert drain([rsub], n, 30), "remote got %d of %d" % (rsub.unique(), n)
    time.sleep(0.3)
    fc.run([rsub], lambda: False, 0.3)
    assert rsub.dups == 0 and rsub.order_errors == 0, (rsub.dups, rsub.order_errors)


def test_incoming_acknowledged_only_once_stored(make_broker, mosquitto):
    """In rules: the local Petrel is SIGKILLed while a remote publisher
    streams; the remote keeps what Petrel had not acknowledged (Petrel's
    persistent session there) and a durable local subscriber gets all."""
    mq = mosquitto()
    p = petrel(make_broker, [bridge("r", mq.address(), [rule("feed/#", "in", 1)], protocol="mqttv5")])
    wait_up(p)
    time.sleep(0.3)  # the bridge's subscription on the remote
    fc.Sub(HOST, p.port, "lsub", version=4, clean=False).connect("feed/#", qos=1).close()
    pub = fc.Pub(HOST, mq.port, "rpub", version=4, name="r").connect()
    killer = when_acked(pub, N // 3, p.kill)
    assert publish_through(pub, "feed/a", N)  # mosquitto queues while Petrel is gone
    killer.join()
    p.start()
    wait_up(p)
    lsub = fc.Sub(HOST, p.port, "lsub", version=4, clean=False).connect()
    assert drain([lsub], N, 30), "local got %d of %d" % (lsub.unique(), N)
    assert lsub.order_errors == 0
    assert "remote session resumed" in p.log()


# --- loop prevention -----------------------------------------------------

@pytest.mark.parametrize("layout,protocol", [("one bridge, both", "mqttv5"),
                                             ("one bridge, both", "mqttv311"),
                                             ("a bridge each way", "mqttv5"),
                                             ("a bridge each way", "mqttv311")])
def test_two_petrels_bridged_both_ways_on_everything(make_broker, layout, protocol):
    b = petrel(make_broker)
    if layout == "one bridge, both":
        a = petrel(make_broker, [bridge("r", "%s:%d" % (HOST, b.port), [rule("#", "both", 1)],
                                        protocol=protocol)])
        wait_up(a)
    else:
        # B bridges to A (A's port is fixed before it starts), A to B.
        a = petrel(make_broker, [bridge("r", "%s:%d" % (HOST, b.port), [rule("#", "out", 1)],
                                        protocol=protocol)])
        wait_up(a)
        b.stop()
        rewrite(b, bridges=[bridge("r", "%s:%d" % (HOST, a.port), [rule("#", "out", 1)], protocol=protocol)])
        b.start()
        wait_up(b)
        wait_up(a, count=2)
    sub_a = sub_client(a.port, "t/#", cid="sa")
    sub_b = sub_client(b.port, "t/#", cid="sb")
    time.sleep(0.5)
    pa = m.RawClient(HOST, a.port)
    pa.connect("pa")
    pb = m.RawClient(HOST, b.port)
    pb.connect("pb")
    for i in range(20):
        pa.publish("t/a", b"a%d" % i, qos=1)
        pb.publish("t/b", b"b%d" % i, qos=1)
    want = sorted([b"a%d" % i for i in range(20)] + [b"b%d" % i for i in range(20)])
    got_a = sorted(g.payload for g in collect(sub_a, 100, 3.0))
    got_b = sorted(g.payload for g in collect(sub_b, 100, 3.0))
    assert got_a == want, "A: %d messages for 40" % len(got_a)
    assert got_b == want, "B: %d messages for 40" % len(got_b)


# --- status, limits, fail-over, TLS, configuration -------------------------

@pytest.mark.parametrize("limit,key", [({"max_messages": 100}, "queue.max_messages"),
                                       ({"max_bytes": 1600}, "queue.max_bytes")])  # 16-byte payloads
def test_queue_limit_drops_and_counts(make_broker, limit, key):
    dead = free_port()  # nothing listens there
    p = petrel(make_broker, [bridge("r", "%s:%d" % (HOST, dead), [rule("q/#", "out", 1)],
                                    queue=limit)])
    pub = fc.Pub(HOST, p.port, "pub", version=4, name="p").connect()
    pub.publish("q/x", 150)
    assert wait_sys(p.port, "$SYS/broker/bridge/r/queued", lambda v: v == "100") == "100"
    assert wait_sys(p.port, "$SYS/broker/bridge/r/dropped", lambda v: v == "50") == "50"
    assert sys_value(p.port, "$SYS/broker/bridge/r/state") == "0"
    wait_log(p, r"bridge r: connection failed; next attempt in \d+ ms", 3)
    assert "queue limit reached (%s)" % key in p.log()


def test_qos0_queued_when_asked(make_broker, mosquitto):
    mq = mosquitto()
    sub_client(mq.port, "z/#", cid="rs", clean=False).close()  # durable on the remote
    mq.stop()
    p = petrel(make_broker, [bridge("r", mq.address(), [rule("z/#", "out", 1)],
                                    protocol="mqttv311", queue={"qos0": True})])
    pub = m.RawClient(HOST, p.port)
    pub.connect("pub")
    for i in range(5):
        pub.publish("z/x", b"%d" % i, qos=0)
    pub.ping()
    assert wait_sys(p.port, "$SYS/broker/bridge/r/queued", lambda v: v == "5") == "5"
    mq.start()
    wait_up(p)
    time.sleep(0.3)
    rsub = m.RawClient(HOST, mq.port)
    rsub.connect("rs", clean=False)
    got = collect(rsub, 5, 5)
    assert [g.payload for g in got] == [b"%d" % i for i in range(5)]


def test_fail_over_to_the_next_address(make_broker, mosquitto):
    mq = mosquitto()
    dead = "%s:%d" % (HOST, free_port())
    cfg = bridge("r", dead, [rule("f/#", "out", 1)], protocol="mqttv311")
    del cfg["address"]
    cfg["addresses"] = [dead, mq.address()]
    p = petrel(make_broker, [cfg])
    wait_up(p)
    assert ("connected to %s" % mq.address()) in p.log()
    rsub = sub_client(mq.port, "f/#")
    pub = m.RawClient(HOST, p.port)
    pub.connect("pub")
    pub.publish("f/1", b"x", qos=1)
    assert [g.payload for g in collect(rsub, 1)] == [b"x"]


def test_tls_bridge_verifies_the_remote(make_broker, tmp_path):
    from petrel_tls_helpers import CertAuthority
    ca = CertAuthority(str(tmp_path))
    cert, key = ca.issue("server", "localhost", server=True)
    tls_port = free_port()
    client_cert, client_key = ca.issue("client", "site1")
    remote = make_broker(start=False, persistence={"enabled": False})
    rewrite(remote, listeners=[{"address": HOST, "port": remote.port},
                               {"address": HOST, "port": tls_port,
                                "tls": {"cert_file": cert, "key_file": key, "ca_file": ca.cert,
                                        "require_certificate": True}}])
    remote.start()
    # Host name verified (the certificate names localhost), client certificate shown.
    ok = petrel(make_broker, [bridge("ok", "localhost:%d" % tls_port, [rule("s/#", "out", 1)],
                                     tls={"ca_file": ca.cert, "cert_file": client_cert,
                                          "key_file": client_key})])
    wrong = petrel(make_broker, [bridge("wrong", "%s:%d" % (HOST, tls_port), [rule("s/#", "out", 1)],
                                        tls={"ca_file": ca.cert, "cert_file": client_cert,
                                             "key_file": client_key, "server_name": "other.example"})])
    wait_up(ok, "ok")
    rsub = sub_client(remote.port, "s/#")
    pub = m.RawClient(HOST, ok.port)
    pub.connect("pub")
    pub.publish("s/1", b"secure", qos=1)
    assert [g.payload for g in collect(rsub, 1)] == [b"secure"]
    wait_log(wrong, r"bridge wrong: connection failed", 2)
    assert "bridge wrong: connected" not in wrong.log()
    assert sys_value(wrong.port, "$SYS/broker/bridge/wrong/state") == "0"


def test_user_name_and_password(make_broker, mosquitto):
    mq = mosquitto(users={"site1": "s3cret"})
    good = petrel(make_broker, [bridge("r", mq.address(), [rule("u/#", "out", 1)], protocol="mqttv311",
                                       username="site1", password="s3cret")])
    bad = petrel(make_broker, [bridge("r", mq.address(), [rule("u/#", "out", 1)], protocol="mqttv311",
                                      username="site1", password="wrong")])
    wait_up(good)
    wait_log(bad, r"bridge r: .* refused the connection: ", 2)  # and keeps trying
    assert "bridge r: connected" not in bad.log()


def test_dead_remote_detected_by_keep_alive(make_broker, mosquitto):
    mq = mosquitto()
    p = petrel(make_broker, [bridge("r", mq.address(), [rule("k/#", "out", 1)], keepalive=1)])
    wait_up(p)
    mq.proc.send_signal(signal.SIGSTOP)  # the TCP connection stays, nothing answers
    try:
        wait_log(p, r"bridge r: no answer from .* for 1 s", timeout=5)
        wait_log(p, r"bridge r: link to .* lost")
    finally:
        mq.proc.send_signal(signal.SIGCONT)
    wait_up(p, count=2)


def test_bridge_session_ids_are_reserved(make_broker):
    p = petrel(make_broker)
    c = m.RawClient(HOST, p.port, version=5)
    ack = c.connect("$bridge/x", expect_reason=None)
    assert ack.reason == 0x85


def test_removed_bridge_drops_its_queue_with_a_notice(make_broker):
    dead = "%s:%d" % (HOST, free_port())
    p = petrel(make_broker, [bridge("old", dead, [rule("o/#", "out", 1)])])
    pub = fc.Pub(HOST, p.port, "pub", version=4, name="p").connect()
    pub.publish("o/x", 10)
    pub.close()
    p.stop()
    rewrite(p, bridges=[])
    p.start()
    wait_log(p, r"bridge old is no longer configured: its queue of 10 messages is dropped")


@pytest.mark.parametrize("bridges,error", [
    ([{"name": "x", "address": "h:1", "topics": [{"pattern": "#", "direction": "sideways"}]}],
     r"bridges\[0\]\.topics\[0\]\.direction: 'sideways' is not one of out, in, both"),
    ([{"name": "x", "topics": [{"pattern": "#"}]}], r"bridges\[0\]\.address: required"),
    ([{"name": "x", "address": "h:99999", "topics": [{"pattern": "#"}]}],
     r"bridges\[0\]\.address: 'h:99999': the port must be 1\.\.65535"),
    ([{"name": "x", "address": "h", "topics": [{"pattern": "a/#/b"}]}],
     r"bridges\[0\]\.topics\[0\]: 'a/#/b' with its prefixes is not a valid topic filter"),
    ([{"name": "x", "address": "h", "topics": [{"pattern": "#", "local_prefix": "+/"}]}],
     r"a prefix must not contain"),
    ([{"name": "a/b", "address": "h", "topics": [{"pattern": "#"}]}], r"bridges\[0\]\.name"),
])
def test_bad_bridge_config_is_refused_with_key_and_line(tmp_path, bridges, error):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"bridges": bridges}))
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0
    assert re.search(error, r.stderr), r.stderr
    assert re.search(r"bad\.yaml:\d+:", r.stderr), r.stderr


def test_the_documented_bridge_example_is_valid(tmp_path):
    """config.yaml's commented bridge example, uncommented, loads."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(repo, "config.yaml")).read()
    lines = text[text.index("bridges: []"):].splitlines()[1:]
    example = "bridges:\n" + "\n".join(line[1:] if line.startswith("#") else line for line in lines) + "\n"
    # --check-config loads the files it names: a real CA stands in for the
    # example's.
    from petrel_tls_helpers import CertAuthority
    ca = CertAuthority(str(tmp_path))
    assert "/etc/petrel/hq-ca.pem" in example
    example = example.replace("/etc/petrel/hq-ca.pem", ca.cert)
    path = tmp_path / "example.yaml"
    path.write_text(example)
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert len(yaml.safe_load(example)["bridges"][0]["topics"]) == 2
