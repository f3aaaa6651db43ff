"""Interoperability with real clients: mosquitto_pub / mosquitto_sub and paho."""

import os
import select
import shutil
import subprocess
import threading
import time

import pytest

import mqttraw as m

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
STDBUF = shutil.which("stdbuf")

# The real clients are part of the test set-up (README, .ci/run): missing
# ones are a failure, not a reason to skip.
needs_clients = pytest.mark.usefixtures("require_mosquitto_clients")


@pytest.fixture
def require_mosquitto_clients():
    assert os.access(MOSQUITTO_PUB, os.X_OK) and os.access(MOSQUITTO_SUB, os.X_OK), \
        "mosquitto_pub/mosquitto_sub missing: apt-get install mosquitto-clients"

VERSIONS = ["mqttv311", "mqttv5"]


def common(broker, version):
    return ["-h", broker.host, "-p", str(broker.port), "-V", version]


def mpub(broker, version, topic, message=None, qos=0, extra=()):
    argv = [MOSQUITTO_PUB] + common(broker, version) + ["-t", topic, "-q", str(qos)]
    argv += ["-n"] if message is None else ["-m", message]
    argv += list(extra)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r


class Sub:
    """mosquitto_sub running in the background; ready once it got SUBACK."""

    def __init__(self, broker, version, topic, qos=0, count=1, wait=5, extra=()):
        argv = [MOSQUITTO_SUB] + common(broker, version) + [
            "-t", topic, "-q", str(qos), "-C", str(count), "-W", str(wait), "-d"] + list(extra)
        if STDBUF:
            argv = [STDBUF, "-oL"] + argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []
        deadline = time.monotonic() + 5
        buf = b""
        while not any("SUBACK" in ln for ln in self.lines):
            remaining = deadline - time.monotonic()
            # Asked once: if it exited between two asks, the second would
            # see the exit without its output having been read.
            exited = self.proc.poll() is not None
            if exited:
                # It may have got SUBACK and its messages and exited (-C)
                # before its output was read here: read the rest first.
                buf += self.proc.stdout.read()
                *done, buf = buf.split(b"\n")
                self.lines += [d.decode("utf-8", "replace") for d in done]
                if any("SUBACK" in ln for ln in self.lines):
                    break
            if remaining <= 0 or exited:
                self.proc.kill()
                raise AssertionError("mosquitto_sub not subscribed: %r" % self.lines)
            r, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                buf += chunk
                *done, buf = buf.split(b"\n")
                self.lines += [d.decode("utf-8", "replace") for d in done]
        self.rest = buf

    def finish(self, timeout=10):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError("mosquitto_sub did not exit")
        text = (self.rest + out).decode("utf-8", "replace")
        self.lines += text.split("\n")
        payloads = [ln for ln in self.lines
                    if ln and not ln.startswith(("Client ", "Subscribed (mid"))]
        return self.proc.returncode, payloads, "\n".join(self.lines)


@needs_clients
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_pub_sub(broker, version, qos):
    sub = Sub(broker, version, "cli/%d" % qos, qos=qos, count=2)
    mpub(broker, version, "cli/%d" % qos, "first-%s" % version, qos=qos)
    mpub(broker, version, "cli/%d" % qos, "second", qos=qos)
    rc, payloads, log = sub.finish()
    assert rc == 0, log
    assert payloads == ["first-%s" % version, "second"], log
    # The subscriber's debug output shows the delivery QoS.
    assert "q%d" % qos in log


@needs_clients
@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_retained(broker, version):
    mpub(broker, version, "cli/ret", "kept", qos=1, extra=["-r"])
    sub = Sub(broker, version, "cli/ret", qos=1, count=1)
    rc, payloads, log = sub.finish()
    assert rc == 0 and payloads == ["kept"], log
    assert "r1" in log  # RETAIN flag set on the stored copy
    # Clear it.
    mpub(broker, version, "cli/ret", None, qos=1, extra=["-r"])
    r = subprocess.run([MOSQUITTO_SUB] + common(broker, version) +
                       ["-t", "cli/ret", "-C", "1", "-W", "1"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and r.stdout == "", r


@needs_clients
@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_sub_count_and_timeout(broker, version):
    sub = Sub(broker, version, "cli/count/#", qos=1, count=3, wait=2)
    for i in range(5):
        mpub(broker, version, "cli/count/%d" % i, "m%d" % i, qos=1)
    rc, payloads, log = sub.finish()
    assert rc == 0 and payloads == ["m0", "m1", "m2"], log
    # -W: gives up when fewer messages arrive.
    sub = Sub(broker, version, "cli/none", qos=1, count=1, wait=1)
    t0 = time.monotonic()
    rc, payloads, log = sub.finish()
    assert rc != 0 and payloads == []
    assert time.monotonic() - t0 < 4


@needs_clients
def test_mosquitto_v5_user_property(broker):
    sub = Sub(broker, "mqttv5", "cli/props", qos=1, count=1, extra=["-F", "%P|%p"])
    mpub(broker, "mqttv5", "cli/props", "body", qos=1,
         extra=["-D", "publish", "user-property", "key", "value"])
    rc, payloads, log = sub.finish()
    assert rc == 0, log
    assert payloads == ["key:value|body"], log


@needs_clients
def test_mosquitto_cross_version(broker):
    sub = Sub(broker, "mqttv311", "cli/x", qos=2, count=1)
    mpub(broker, "mqttv5", "cli/x", "from-v5", qos=2)
    rc, payloads, log = sub.finish()
    assert rc == 0 and payloads == ["from-v5"], log


@needs_clients
def test_mosquitto_pub_many_lines(broker):
    sub = Sub(broker, "mqttv311", "cli/lines", qos=1, count=100)
    argv = [MOSQUITTO_PUB] + common(broker, "mqttv311") + ["-t", "cli/lines", "-q", "1", "-l"]
    r = subprocess.run(argv, input="".join("line %d\n" % i for i in range(100)),
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    rc, payloads, log = sub.finish()
    assert rc == 0 and payloads == ["line %d" % i for i in range(100)]


# -- paho ------------------------------------------------------------------------

import paho.mqtt.client as mqtt  # noqa: E402  (python3-paho-mqtt)


class PahoSide:
    def __init__(self, broker, client_id, v5):
        self.v5 = v5
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.c = mqtt.Client(client_id=client_id, protocol=proto)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.messages = []
        self.msg_event = threading.Event()
        self.rc = None
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(5), "paho did not connect"

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.rc = rc
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.append(msg)
        self.msg_event.set()

    def subscribe(self, topic, qos):
        self.subscribed.clear()
        self.c.subscribe(topic, qos)
        assert self.subscribed.wait(5)

    def wait_messages(self, n, timeout=5):
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            self.msg_event.wait(0.05)
            self.msg_event.clear()
        return self.messages

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def paho_clients():
    made = []
    yield made
    for p in made:
        try:
            p.close()
        except Exception:
            pass


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_paho_roundtrip(broker, paho_clients, v5):
    sub = PahoSide(broker, "paho-sub", v5)
    pub = PahoSide(broker, "paho-pub", v5)
    paho_clients += [sub, pub]
    sub.subscribe("paho/#", 2)
    for qos in (0, 1, 2):
        info = pub.c.publish("paho/q%d" % qos, b"payload-%d" % qos, qos=qos)
        info.wait_for_publish(5) if hasattr(info, "wait_for_publish") else None
        assert info.is_published()
    msgs = sub.wait_messages(3)
    assert sorted((x.topic, x.payload, x.qos) for x in msgs) == [
        ("paho/q0", b"payload-0", 0), ("paho/q1", b"payload-1", 1), ("paho/q2", b"payload-2", 2)]


def test_paho_v5_properties(broker, paho_clients):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    sub = PahoSide(broker, "paho5-sub", True)
    pub = PahoSide(broker, "paho5-pub", True)
    paho_clients += [sub, pub]
    sub.subscribe("paho5/t", 1)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("a", "1"), ("b", "2")]
    props.ContentType = "text/plain"
    props.ResponseTopic = "paho5/reply"
    props.CorrelationData = b"id-1"
    pub.c.publish("paho5/t", b"req", qos=1, properties=props).wait_for_publish(5)
    msgs = sub.wait_messages(1)
    assert len(msgs) == 1
    p = msgs[0].properties
    assert p.UserProperty == [("a", "1"), ("b", "2")]
    assert p.ContentType == "text/plain"
    assert p.ResponseTopic == "paho5/reply"
    assert p.CorrelationData == b"id-1"


def test_paho_and_raw_interoperate(broker, paho_clients):
    sub = PahoSide(broker, "paho-mixed", False)
    paho_clients.append(sub)
    sub.subscribe("mixed/t", 1)
    raw = broker.connected("raw-mixed", version=5)
    raw.publish("mixed/t", b"from-raw", qos=1)
    msgs = sub.wait_messages(1)
    assert [(x.topic, x.payload) for x in msgs] == [("mixed/t", b"from-raw")]
