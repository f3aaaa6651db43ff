"""Will messages."""

import time

import pytest

import mqttraw as m


def watcher(broker, flt="will/#", qos=1, version=5, name="will-watch"):
    w = broker.connected(name, version=version)
    w.subscribe([(flt, qos)])
    return w


def will_client(broker, name, level=4, keepalive=60, props=None, **will):
    spec = {"topic": "will/" + name, "payload": b"gone:" + name.encode(), "qos": 1}
    spec.update(will)
    c = broker.client(level)
    c.connect(name, keepalive=keepalive, will=spec, props=props)
    return c


@pytest.mark.parametrize("level", [3, 4, 5])
def test_will_on_socket_close(broker, level):
    w = watcher(broker)
    c = will_client(broker, "abrupt%d" % level, level)
    c.close()
    p = w.recv_publish()
    assert (p.topic, p.payload, p.qos, p.retain) == (
        "will/abrupt%d" % level, b"gone:abrupt%d" % level, 1, False)


@pytest.mark.parametrize("level", [4, 5])
def test_no_will_on_normal_disconnect(broker, level):
    w = watcher(broker)
    c = will_client(broker, "polite", level)
    c.disconnect(reason=0 if level == 5 else None)
    w.expect_nothing(0.6)


def test_will_on_disconnect_with_will_reason_v5(broker):
    # 5.0 section 3.14.2.1: reason 0x04 "Disconnect with Will Message".
    w = watcher(broker)
    c = will_client(broker, "withwill", 5)
    c.disconnect(reason=0x04)
    assert w.recv_publish().payload == b"gone:withwill"


def test_will_on_keepalive_timeout(broker):
    # [MQTT-3.1.2-8]: keep alive expiry publishes the will. The wait allows
    # for servers that check keep alive coarsely.
    w = watcher(broker)
    c = will_client(broker, "silent", 4, keepalive=1)
    t0 = time.monotonic()
    p = w.recv_publish(timeout=8)
    assert p.payload == b"gone:silent"
    assert time.monotonic() - t0 >= 0.9
    c.expect_closed(1)


def test_will_on_protocol_error(broker):
    # [MQTT-3.1.2-8]: closing for a protocol error publishes the will.
    w = watcher(broker)
    c = will_client(broker, "violator", 4)
    c.send_quiet(m.subscribe(1, []))
    c.expect_closed(3)
    assert w.recv_publish().payload == b"gone:violator"


def test_will_qos_downgraded_to_subscription(broker):
    w = watcher(broker, qos=0)
    c = will_client(broker, "wq", 4, qos=2)
    c.close()
    p = w.recv_publish()
    assert (p.payload, p.qos) == (b"gone:wq", 0)


def test_will_retain_honoured(broker):
    c = will_client(broker, "retwill", 4, retain=True)
    c.close()
    time.sleep(0.3)
    late = broker.connected("late")
    late.subscribe([("will/retwill", 1)])
    p = late.recv_publish()
    assert (p.payload, p.retain) == (b"gone:retwill", True)


def test_will_not_retained_without_flag(broker):
    w = watcher(broker)
    c = will_client(broker, "noretwill", 4)
    c.close()
    w.recv_publish()
    late = broker.connected("late2")
    late.subscribe([("will/noretwill", 1)])
    late.expect_nothing(0.4)


def test_will_retain_live_subscriber_sees_retain_clear(broker):
    w = watcher(broker)
    c = will_client(broker, "retlive", 4, retain=True)
    c.close()
    p = w.recv_publish()
    assert p.retain is False


def test_will_on_takeover(broker):
    # The existing connection is closed by the server; its will is published
    # (3.1.1: [MQTT-3.1.4-2] closes it, [MQTT-3.1.2-8] publishes the will).
    w = watcher(broker)
    will_client(broker, "taken", 4)
    broker.connected("taken")
    assert w.recv_publish().payload == b"gone:taken"


def test_will_delay_v5(broker):
    # 5.0 section 3.1.3.2.2: the will waits Will Delay Interval.
    w = watcher(broker)
    c = broker.client(5)
    c.connect("delayed", props={"session_expiry_interval": 30},
              will={"topic": "will/delayed", "payload": b"late", "qos": 1,
                    "props": {"will_delay_interval": 1}})
    c.close()
    t0 = time.monotonic()
    w.expect_nothing(0.7)
    p = w.recv_publish(timeout=3)
    assert p.payload == b"late"
    assert time.monotonic() - t0 >= 0.8


def test_will_delay_cancelled_by_reconnect_v5(broker):
    # [MQTT-3.1.3-9]: a new connection for the session before the delay
    # elapses means no will is sent.
    w = watcher(broker)
    props = {"session_expiry_interval": 30}
    c = broker.client(5)
    c.connect("cancel", props=props,
              will={"topic": "will/cancel", "payload": b"never", "qos": 1,
                    "props": {"will_delay_interval": 2}})
    c.close()
    time.sleep(0.3)
    c = broker.connected("cancel", version=5, clean=False, props=props)
    assert c.connack.session_present
    w.expect_nothing(2.5)


def test_will_delay_capped_by_session_end_v5(broker):
    # 5.0 section 3.1.3.2.2: the will is sent when the session ends, if that
    # happens before the Will Delay Interval (here session expiry 1 s,
    # delay 60 s).
    w = watcher(broker)
    c = broker.client(5)
    c.connect("capped", props={"session_expiry_interval": 1},
              will={"topic": "will/capped", "payload": b"ended", "qos": 1,
                    "props": {"will_delay_interval": 60}})
    c.close()
    p = w.recv_publish(timeout=4)
    assert p.payload == b"ended"


def test_will_properties_passed_through_v5(broker):
    w = watcher(broker)
    c = broker.client(5)
    c.connect("wprops", will={"topic": "will/wprops", "payload": b"{}", "qos": 1, "props": [
        ("content_type", "application/json"),
        ("response_topic", "reply/here"),
        ("correlation_data", b"\x01\x02"),
        ("user_property", ("k1", "v1")),
        ("user_property", ("k2", "v2")),
        ("payload_format_indicator", 1),
    ]})
    c.close()
    p = w.recv_publish()
    assert p.props.get("content_type") == "application/json"
    assert p.props.get("response_topic") == "reply/here"
    assert p.props.get("correlation_data") == b"\x01\x02"
    assert p.props.get("user_property") == [("k1", "v1"), ("k2", "v2")]
    assert p.props.get("payload_format_indicator") == 1


def test_will_topic_with_wildcard_refused(broker):
    # [MQTT-3.1.3-11]: the Will Topic must be a valid topic name.
    w = watcher(broker, flt="#")
    c = broker.client(4)
    c.send(m.connect("badwill", 4, will={"topic": "will/+", "payload": b"x"}))
    packets = c.expect_closed(3)
    assert all(p.type == m.CONNACK and p.reason != 0 for p in packets), packets
    w.expect_nothing(0.3)


def test_will_qos3_refused(broker):
    # [MQTT-3.1.2-14]: Will QoS 3 is invalid.
    c = broker.client(4)
    c.send(m.connect("willq3", 4, will={"topic": "will/q3", "payload": b"x", "qos": 3}))
    packets = c.expect_closed(3)
    assert all(p.type == m.CONNACK and p.reason != 0 for p in packets), packets
