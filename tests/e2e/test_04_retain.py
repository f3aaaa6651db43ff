"""Retained messages."""

import pytest

import mqttraw as m


def retained_on_subscribe(broker, flt, qos=1, version=4, name="ret-check", opts=None, props=None):
    """Subscribe a fresh client and return the retained PUBLISHes it gets."""
    c = broker.connected(name, version=version)
    c.subscribe([(flt, opts if opts is not None else qos)], props=props)
    got = c.collect(0.4, m.PUBLISH)
    for p in got:
        if p.qos:
            c.ack(p)
    c.disconnect()
    return got


@pytest.mark.parametrize("level", [4, 5])
def test_retained_delivered_on_subscribe(broker, level):
    pub = broker.connected("ret-pub", version=level)
    pub.publish("ret/a", b"first", qos=1, retain=True)
    got = retained_on_subscribe(broker, "ret/#", version=level)
    assert [(p.topic, p.payload, p.retain, p.qos) for p in got] == [("ret/a", b"first", True, 1)]


def test_retained_qos_is_min_of_publish_and_subscription(broker):
    pub = broker.connected("ret-q")
    pub.publish("retq/a", b"x", qos=2, retain=True)
    assert [p.qos for p in retained_on_subscribe(broker, "retq/a", qos=1)] == [1]
    assert [p.qos for p in retained_on_subscribe(broker, "retq/a", qos=0)] == [0]
    assert [p.qos for p in retained_on_subscribe(broker, "retq/a", qos=2)] == [2]


def test_retained_replace_and_clear(broker):
    pub = broker.connected("ret-rc")
    pub.publish("rc/t", b"v1", qos=1, retain=True)
    pub.publish("rc/t", b"v2", qos=1, retain=True)
    got = retained_on_subscribe(broker, "rc/t")
    assert [p.payload for p in got] == [b"v2"]
    # [MQTT-3.3.1-10]: an empty retained payload removes the message.
    pub.publish("rc/t", b"", qos=1, retain=True)
    assert retained_on_subscribe(broker, "rc/t") == []


def test_empty_retained_not_stored_or_forwarded_as_retained(broker):
    # [MQTT-3.3.1-11]: a zero-byte retained message is not stored.
    pub = broker.connected("ret-empty")
    pub.publish("re/t", b"", qos=0, retain=True)
    # Its PINGRESP comes after the broker has routed it (a QoS 0 publish has
    # no answer of its own): otherwise, on another event loop, the checking
    # subscriber could subscribe first and get it live.
    pub.ping()
    assert retained_on_subscribe(broker, "re/#") == []


def test_retained_wildcards_match(broker):
    pub = broker.connected("ret-wc")
    for t in ["w/a", "w/b/c", "w/b/d", "x/a", "$ret/a"]:
        pub.publish(t, t.encode(), qos=1, retain=True)
    assert sorted(p.topic for p in retained_on_subscribe(broker, "w/#")) == ["w/a", "w/b/c", "w/b/d"]
    assert sorted(p.topic for p in retained_on_subscribe(broker, "w/b/+")) == ["w/b/c", "w/b/d"]
    assert sorted(p.topic for p in retained_on_subscribe(broker, "+/a")) == ["w/a", "x/a"]
    # $-topics are not matched by a leading wildcard [MQTT-4.7.2-1].
    assert "$ret/a" not in [p.topic for p in retained_on_subscribe(broker, "#")]


def test_live_delivery_has_retain_clear(broker):
    # [MQTT-3.3.1-9]: messages forwarded to existing subscriptions have
    # RETAIN=0 (3.1.1; in 5.0 unless Retain As Published).
    sub = broker.connected("live-sub")
    sub.subscribe([("live/t", 1)])
    pub = broker.connected("live-pub")
    pub.publish("live/t", b"r", qos=1, retain=True)
    p = sub.recv_publish()
    assert p.payload == b"r" and p.retain is False


def test_non_retained_publish_keeps_retained(broker):
    pub = broker.connected("nr-pub")
    pub.publish("nr/t", b"kept", qos=1, retain=True)
    pub.publish("nr/t", b"transient", qos=1, retain=False)
    assert [p.payload for p in retained_on_subscribe(broker, "nr/t")] == [b"kept"]


def test_retain_as_published_v5(broker):
    sub = broker.connected("rap", version=5)
    sub.subscribe([("rap/t", m.sub_options(qos=1, retain_as_published=True)),
                   ("rap/u", m.sub_options(qos=1))])
    pub = broker.connected("rap-pub", version=5)
    pub.publish("rap/t", b"a", qos=1, retain=True)
    pub.publish("rap/u", b"b", qos=1, retain=True)
    pub.publish("rap/t", b"c", qos=1, retain=False)
    got = [sub.recv_publish() for _ in range(3)]
    assert [(p.payload, p.retain) for p in got] == [(b"a", True), (b"b", False), (b"c", False)]


def test_retain_handling_v5(broker):
    pub = broker.connected("rh-pub", version=5)
    pub.publish("rh/t", b"stored", qos=1, retain=True)
    c = broker.connected("rh-sub", version=5)
    # 0: send retained messages at every subscribe.
    c.subscribe([("rh/t", m.sub_options(qos=1, retain_handling=0))])
    assert [p.payload for p in c.collect(0.3, m.PUBLISH)] == [b"stored"]
    c.subscribe([("rh/t", m.sub_options(qos=1, retain_handling=0))])
    assert [p.payload for p in c.collect(0.3, m.PUBLISH)] == [b"stored"]
    # 1: only if the subscription did not exist.
    c.subscribe([("rh/t", m.sub_options(qos=1, retain_handling=1))])
    assert c.collect(0.3, m.PUBLISH) == []
    c.subscribe([("rh/+", m.sub_options(qos=1, retain_handling=1))])
    assert [p.payload for p in c.collect(0.3, m.PUBLISH)] == [b"stored"]
    # 2: never.
    c.subscribe([("rh/#", m.sub_options(qos=1, retain_handling=2))])
    assert c.collect(0.3, m.PUBLISH) == []
    c2 = broker.connected("rh-sub2", version=5)
    c2.subscribe([("rh/t", m.sub_options(qos=1, retain_handling=2))])
    c2.expect_nothing(0.3)
    # Live messages still flow on a retain-handling-2 subscription.
    pub.publish("rh/t", b"live", qos=1)
    assert c2.recv_publish().payload == b"live"


def test_retain_handling_3_is_protocol_error(broker):
    # 5.0 section 3.8.3.1: Retain Handling 3 is a Protocol Error.
    c = broker.connected("rh3", version=5)
    c.send(m.subscribe(1, [("x", 0x30)], v5=True))
    packets = c.expect_closed(3)
    assert all(p.type == m.DISCONNECT and p.reason in (0x81, 0x82) for p in packets)


def test_retain_unavailable_v5_disconnect(make_broker):
    # 5.0 section 3.2.2.3.5: retained PUBLISH when Retain Available is 0 ->
    # DISCONNECT 0x9A.
    b = make_broker(mqtt={"retain_available": False})
    c = b.connected("noret", version=5)
    assert c.connack.props.get("retain_available") == 0
    c.send(m.publish("nr/t", b"x", qos=1, mid=1, retain=True, v5=True))
    packets = c.expect_closed(3)
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x9A)]


def test_retain_unavailable_v311_not_stored(make_broker):
    b = make_broker(mqtt={"retain_available": False})
    pub = b.client(4)
    pub.connect("noret311")
    pub.send(m.publish("nr311/t", b"x", qos=0, retain=True))
    # Either the message is accepted without being stored, or the client is
    # disconnected; it must not be retained.
    try:
        pub.ping(1)
    except (m.ConnectionClosed, AssertionError, m.ReadTimeout):
        pass
    assert retained_on_subscribe(b, "nr311/#") == []


def test_many_retained(broker):
    pub = broker.connected("many-ret")
    n = 200
    data = b"".join(m.publish("mr/%d" % i, b"%d" % i, qos=0, retain=True) for i in range(n))
    pub.send(data)
    pub.ping()
    c = broker.connected("many-ret-sub")
    c.subscribe([("mr/+", 0)])
    got = set()
    while len(got) < n:
        p = c.recv_publish(timeout=3)
        assert p.retain
        got.add(p.topic)
    assert got == set("mr/%d" % i for i in range(n))
