"""MQTT over WebSocket end to end (ws and wss listeners): the opening
handshake and each refusal with its HTTP status; MQTT 3.1.1 and 5 at QoS 0,
1 and 2 crossing between WebSocket clients (a raw one written here, and
paho's websocket transport) and TCP clients (mosquitto_sub/pub, paho);
packets split across frames and several packets in one frame; ping/pong;
the close handshake with its codes and the will it triggers; broken frames,
broken handshakes and garbage closing only their own connection; the
handshake timeout, keep alive and the listener's anonymous rule."""

import os
import shutil
import struct
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

import yaml

from petrel_tls_helpers import (PETREL_BIN, Broker, CertAuthority, RawClient, client_context, free_port, packet,
                                tmpdir)
from wsclient import (BINARY, CLOSE, CONTINUATION, PING, TEXT, WsSocket, close_payload, frame,
                      read_http_response, tcp_connect, upgrade_request)


@pytest.fixture(scope="module")
def pki():
    d = tmpdir()
    ca = CertAuthority(d)
    yield {"dir": d, "ca": ca, "server": ca.issue("server", "localhost", server=True)}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(pki):
    cert, key = pki["server"]
    cfg = lambda: {
        "log_level": "debug",
        "limits": {"max_packet_size": 65536},
        "listeners": [
            {"address": "127.0.0.1", "port": free_port()},
            {"address": "127.0.0.1", "port": free_port(), "websocket": None},
            {"address": "127.0.0.1", "port": free_port(), "tls": {"cert_file": cert, "key_file": key},
             "websocket": {"path": "/mqtt"}},
            {"address": "127.0.0.1", "port": free_port(),
             "websocket": {"path": "/small", "max_frame_size": 1024, "handshake_timeout_ms": 500}},
            {"address": "127.0.0.1", "port": free_port(), "allow_anonymous": False, "websocket": {}},
        ],
    }
    b = Broker(pki["dir"], cfg).start()
    b.ports = {"tcp": b.port(0), "ws": b.port(1), "wss": b.port(2), "small": b.port(3), "closed": b.port(4)}
    yield b
    b.stop()


def ws_client(broker, client_id, version=5, kind="ws", pki=None, **connect):
    ctx = client_context(pki["ca"].cert) if kind == "wss" else None
    path = "/small" if kind == "small" else "/mqtt"
    c = RawClient(WsSocket(broker.ports[kind], path=path, tls_ctx=ctx), version)
    assert c.connect(client_id, **connect) == 0
    return c


def tcp_client(broker, client_id, version=5):
    c = RawClient(tcp_connect(broker.ports["tcp"]), version)
    assert c.connect(client_id) == 0
    return c


@pytest.fixture(scope="module")
def survivor(broker):
    """A WebSocket client connected before any bad input of the module."""
    w = ws_client(broker, "survivor")
    assert w.subscribe("alive/#", qos=1) == [1]
    yield w
    w.disconnect()


def still_working(broker, survivor, tag):
    """The survivor still receives, from a new TCP client, and answers pings."""
    c = tcp_client(broker, "check-" + tag)
    assert c.publish("alive/" + tag, "still here", qos=1) == 0
    assert survivor.recv_publish()[:2] == ("alive/" + tag, b"still here")
    survivor.ping()
    c.disconnect()
    assert broker.alive()


# -- the handshake ------------------------------------------------------------

def test_upgrade_answer_and_subprotocols(broker):
    s = tcp_connect(broker.ports["ws"])
    request, key = upgrade_request(protocols="mqttv3.1")
    s.sendall(request)
    status, head, headers, _, _ = read_http_response(s)
    assert status == 101, head
    assert headers["sec-websocket-protocol"] == "mqttv3.1"
    assert headers["connection"].lower() == "upgrade"
    s.close()
    w = WsSocket(broker.ports["ws"], protocols="foo, mqtt")
    assert w.protocol == "mqtt"
    w.close()


@pytest.mark.parametrize("name,kw,status,text", [
    ("wrong path", {"path": "/nope"}, 404, "no WebSocket endpoint at '/nope'"),
    ("missing key", {"key": ""}, 400, "no Sec-WebSocket-Key"),
    ("bad key", {"key": "c2hvcnQ="}, 400, "is not 16 bytes in base64"),
    ("wrong version", {"version": "8"}, 426, "version '8' is not supported"),
    ("no upgrade", {"upgrade": False}, 426, "Upgrade: websocket"),
    ("no subprotocol", {"protocols": ""}, 400, "offer the subprotocol mqtt"),
    ("other subprotocol", {"protocols": "wamp"}, 400, "no acceptable subprotocol"),
    ("not GET", {"method": "POST"}, 405, "GET request"),
])
def test_bad_handshakes_are_refused_and_closed(broker, survivor, name, kw, status, text):
    s = tcp_connect(broker.ports["ws"])
    s.sendall(upgrade_request(**kw)[0])
    got, head, headers, body, _ = read_http_response(s)
    assert got == status, head
    assert "close" in headers["connection"].lower()
    assert text in body.decode()
    s.settimeout(5)
    assert s.recv(100) == b""  # then closed
    s.close()
    broker.wait_log("WebSocket handshake refused with %d" % status)
    still_working(broker, survivor, name.replace(" ", "-"))


def test_garbage_closes_only_that_connection(broker, survivor):
    for junk in (b"\x00\xff" + os.urandom(300), packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x")):
        s = tcp_connect(broker.ports["ws"])
        s.sendall(junk)
        status, _, _, _, _ = read_http_response(s)
        assert status == 400
        s.settimeout(5)
        assert s.recv(100) == b""
        s.close()
    still_working(broker, survivor, "garbage")


def test_handshake_timeout(broker):
    t0 = time.monotonic()
    slow = tcp_connect(broker.ports["small"])
    slow.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    silent = tcp_connect(broker.ports["small"])
    for s in (slow, silent):
        s.settimeout(5)
        assert s.recv(100) == b""
    assert time.monotonic() - t0 < 4
    broker.wait_log("no WebSocket handshake within 500 ms")
    slow.close()
    silent.close()


# -- MQTT across WebSocket and TCP --------------------------------------------

@pytest.mark.parametrize("kind", ["ws", "wss"])
@pytest.mark.parametrize("version", [4, 5])
def test_qos_0_1_2_both_ways_with_tcp_clients(broker, pki, kind, version):
    tag = "%s%d" % (kind, version)
    w = ws_client(broker, "w-" + tag, version, kind, pki)
    assert w.subscribe("to-ws/%s/#" % tag, qos=2) == [2]
    t = tcp_client(broker, "t-" + tag, version)
    assert t.subscribe("to-tcp/%s/#" % tag, qos=2) == [2]
    for qos in (0, 1, 2):
        payload = ("tcp->%s q%d " % (kind, qos)).encode() + os.urandom(200)
        assert t.publish("to-ws/%s/%d" % (tag, qos), payload, qos=qos) in (None, 0)
        topic, got, got_qos, _ = w.recv_publish()
        assert (topic, got, got_qos) == ("to-ws/%s/%d" % (tag, qos), payload, qos)
        payload = ("%s->tcp q%d " % (kind, qos)).encode() + os.urandom(3000)
        assert w.publish("to-tcp/%s/%d" % (tag, qos), payload, qos=qos) in (None, 0)
        topic, got, got_qos, _ = t.recv_publish()
        assert (topic, got, got_qos) == ("to-tcp/%s/%d" % (tag, qos), payload, qos)
    # A packet larger than a read: 60 KB over the wire in one frame.
    big = os.urandom(60000)
    assert w.publish("to-ws/%s/big" % tag, big, qos=1) == 0
    assert w.recv_publish(5)[1] == big
    w.disconnect()
    t.disconnect()


def test_mosquitto_clients_on_tcp_see_websocket_traffic(broker):
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.ports["tcp"]), "-t", "mosq/ws/#",
                            "-q", "2", "-v", "-W", "20", "-i", "mosq-sub-ws"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(l.strip() for l in sub.stdout), daemon=True)
    reader.start()
    try:
        w = ws_client(broker, "ws-pub-mosq")
        assert w.subscribe("mosq/back", qos=2) == [2]
        # Probes until mosquitto_sub's subscription is in place.
        deadline = time.time() + 10
        while not lines and time.time() < deadline:
            assert w.publish("mosq/ws/probe", "probe", qos=1) in (0, 0x10)  # 0x10: no subscriber yet
            time.sleep(0.2)
        for qos in (0, 1, 2):
            assert w.publish("mosq/ws/%d" % qos, "from ws q%d" % qos, qos=qos) in (None, 0)
        wanted = ["mosq/ws/%d from ws q%d" % (q, q) for q in (0, 1, 2)]
        while time.time() < deadline + 5 and [l for l in lines if "probe" not in l] != wanted:
            time.sleep(0.05)
        assert [l for l in lines if "probe" not in l] == wanted, lines
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.ports["tcp"]), "-t", "mosq/back",
                        "-m", "from mosquitto_pub", "-q", "2"], check=True, timeout=10)
        assert w.recv_publish(5)[1:3] == (b"from mosquitto_pub", 2)
        w.disconnect()
    finally:
        sub.terminate()
        sub.wait(5)


def test_paho_websocket_transport_and_paho_tcp(broker):
    got = []
    done = threading.Event()

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload, msg.qos))
        if len(got) == 3:
            done.set()

    ws_sub = paho.Client(client_id="paho-ws-sub", protocol=paho.MQTTv5, transport="websockets")
    ws_sub.ws_set_options(path="/mqtt")
    ws_sub.on_message = on_message
    subscribed = threading.Event()
    ws_sub.on_subscribe = lambda *a: subscribed.set()
    ws_sub.connect("127.0.0.1", broker.ports["ws"])
    ws_sub.loop_start()
    tcp_pub = paho.Client(client_id="paho-tcp-pub", protocol=paho.MQTTv311)
    tcp_pub.connect("127.0.0.1", broker.ports["tcp"])
    tcp_pub.loop_start()
    try:
        ws_sub.subscribe("paho/ws/#", qos=2)
        assert subscribed.wait(5)
        for qos in (0, 1, 2):
            tcp_pub.publish("paho/ws/%d" % qos, b"tcp to paho ws q%d" % qos, qos=qos).wait_for_publish(5)
        assert done.wait(10), got
        assert sorted(got) == [("paho/ws/%d" % q, b"tcp to paho ws q%d" % q, q) for q in (0, 1, 2)]
    finally:
        tcp_pub.loop_stop()
        ws_sub.loop_stop()
        tcp_pub.disconnect()
        ws_sub.disconnect()


# -- framing ------------------------------------------------------------------

def test_packets_split_across_frames_and_several_in_one_frame(broker):
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 4)
    connect = packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x05split")
    # CONNECT in three frames of one fragmented message, a ping in between,
    # then a plain frame holding the last byte.
    ws.send_raw(frame(BINARY, connect[:3], fin=False) + frame(PING, b"mid") +
                frame(CONTINUATION, connect[3:9], fin=False) + frame(CONTINUATION, connect[9:-1]) +
                frame(BINARY, connect[-1:]))
    first, body = c.recv_packet()
    assert first >> 4 == 2 and body[1] == 0
    # SUBSCRIBE + PUBLISH (QoS 1) + PINGREQ in one frame.
    sub = packet(0x82, struct.pack("!H", 1) + struct.pack("!H", 7) + b"split/#" + b"\x01")
    pub = packet(0x32, struct.pack("!H", 7) + b"split/x" + struct.pack("!H", 2) + b"one frame")
    ws.send_raw(frame(BINARY, sub + pub + b"\xc0\x00"))
    types = []
    deadline = time.time() + 5
    while len(types) < 4 and time.time() < deadline:
        first, body = c.recv_packet()
        types.append(first >> 4)
        if first >> 4 == 3:
            assert body.endswith(b"one frame")
    assert sorted(types) == [3, 4, 9, 13]  # PUBLISH, PUBACK, SUBACK, PINGRESP
    assert ws.pongs == [b"mid"]
    c.disconnect()


def test_a_stream_of_packets_straddling_frames_and_reads(broker):
    """Packets cut across frames of odd sizes, in one large write: each
    packet completes in the decoder, the rest is decoded in place."""
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 4)
    assert c.connect("straddle") == 0
    assert c.subscribe("straddle/#", qos=0) == [0]
    payloads = [os.urandom(700 + 37 * i) for i in range(150)]
    stream = b"".join(packet(0x30, struct.pack("!H", 10) + b"straddle/x" + p) for p in payloads)
    cut = 997
    ws.send_raw(b"".join(frame(BINARY, stream[i:i + cut]) for i in range(0, len(stream), cut)))
    for p in payloads:
        assert c.recv_publish(5)[1] == p
    c.disconnect()


def test_ping_is_answered_with_its_payload(broker):
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 5)
    assert c.connect("pinger") == 0
    ws.send_raw(frame(PING, b"are you there"))
    c.ping()  # MQTT PINGREQ/PINGRESP behind it
    assert ws.pongs == [b"are you there"]
    c.disconnect()


def test_client_close_is_answered_and_publishes_the_will(broker):
    t = tcp_client(broker, "will-watcher")
    assert t.subscribe("will/ws") == [1]
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 4)
    assert c.connect("will-owner", will=("will/ws", "gone", 1, False)) == 0
    ws.send_raw(frame(CLOSE, close_payload(1001, b"going away")))
    code, _ = ws.wait_closed()
    assert code == 1001  # echoed
    assert t.recv_publish(5)[:2] == ("will/ws", b"gone")
    t.disconnect()


def test_mqtt_disconnect_then_normal_closure(broker):
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 5)
    assert c.connect("polite") == 0
    ws.sendall(b"\xe0\x00")
    code, _ = ws.wait_closed()
    assert code == 1000


@pytest.mark.parametrize("name,data,code", [
    ("unmasked frame", frame(BINARY, b"\xc0\x00", mask=False), 1002),
    ("text frame", frame(TEXT, b"hello"), 1003),
    ("oversize frame", frame(BINARY, b"x" * 1025), 1009),
    ("oversize header only", frame(BINARY, b"", length=1 << 30), 1009),
    ("reserved bit", frame(BINARY, b"\xc0\x00", rsv=0x20), 1002),
    ("reserved opcode", frame(0x5, b"x"), 1002),
    ("continuation first", frame(CONTINUATION, b"\xc0\x00"), 1002),
    ("long ping", frame(PING, b"x" * 126), 1002),
    ("bad close code", frame(CLOSE, close_payload(1005)), 1002),
    ("close reason not UTF-8", frame(CLOSE, close_payload(1000, b"\xc3\x28")), 1007),
])
def test_bad_frames_close_only_that_connection(broker, survivor, name, data, code):
    tag = name.replace(" ", "-")
    ws = WsSocket(broker.ports["small"], path="/small")
    c = RawClient(ws, 5)
    assert c.connect("bad-" + tag) == 0
    ws.send_raw(data)
    got, _ = ws.wait_closed()
    assert got == code, ws.close_reason
    assert ws.close_reason  # the rule broken, in words
    broker.wait_log("(close %d)" % code)
    still_working(broker, survivor, tag)


def test_mqtt_errors_over_websocket_follow_the_tcp_rules(broker, survivor):
    # A first packet that is not CONNECT: closed (after the close frame).
    ws = WsSocket(broker.ports["ws"])
    ws.sendall(b"\xc0\x00")
    code, data = ws.wait_closed()
    assert code == 1000 and data == b""
    # A malformed packet: DISCONNECT 0x81 in a binary frame, then the close frame.
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 5)
    assert c.connect("malformed") == 0
    ws.sendall(b"\x82\x02\x00\x01")  # SUBSCRIBE without properties or filters
    code, data = ws.wait_closed()
    assert data[:1] == b"\xe0" and data[2] in (0x81, 0x82), data
    assert code == 1000
    # Keep alive: nothing for 1.5 x 1 s -> DISCONNECT 0x8D.
    ws = WsSocket(broker.ports["ws"])
    c = RawClient(ws, 5)
    assert c.connect("sleepy", keepalive=1) == 0
    code, data = ws.wait_closed(6)
    assert data[:1] == b"\xe0" and data[2] == 0x8D, data
    still_working(broker, survivor, "mqtt-errors")


def test_listener_refuses_anonymous_clients(broker):
    c = RawClient(WsSocket(broker.ports["closed"]), 5)
    assert c.connect("anonymous") == 0x87
    c4 = RawClient(WsSocket(broker.ports["closed"]), 4)
    assert c4.connect("anonymous4") == 5


def test_wss_handshake_needs_tls(broker, pki):
    # Plain HTTP on the wss port is a TLS error, not an upgrade.
    s = tcp_connect(broker.ports["wss"])
    s.sendall(upgrade_request()[0])
    s.settimeout(5)
    try:
        data = s.recv(100)  # a TLS alert, or nothing
    except ConnectionResetError:
        data = b""
    assert not data.startswith(b"HTTP/1.1 101")
    s.close()
    w = ws_client(broker, "wss-ok", kind="wss", pki=pki)
    w.ping()
    w.disconnect()


def test_the_documented_websocket_example_is_valid(tmp_path):
    """config.yaml's commented WebSocket listener, uncommented, loads."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(repo, "config.yaml")).read()
    start = text.index("  # - address: 127.0.0.1\n  #   port: 8080")
    end = text.index("handshake_timeout_ms: 10000", start) + len("handshake_timeout_ms: 10000")
    example = "listeners:\n" + "\n".join(l.replace("  # ", "  ", 1) for l in text[start:end].splitlines()) + "\n"
    path = tmp_path / "example.yaml"
    path.write_text(example)
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr + example
    assert yaml.safe_load(example)["listeners"][0]["websocket"]["path"] == "/mqtt"
