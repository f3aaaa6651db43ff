"""MQTT 5 properties: pass-through, message expiry, topic aliases, maximum
packet size, No Local, subscription identifiers."""

import time

import pytest

import mqttraw as m


def pair(broker, flt, sub_opts=1, sub_props=None, sub_connect_props=None, name="p"):
    sub = broker.client(5)
    sub.connect(name + "-sub", props=sub_connect_props)
    sub.subscribe([(flt, sub_opts)], props=sub_props)
    pub = broker.connected(name + "-pub", version=5)
    return sub, pub


def test_application_properties_passed_through(broker):
    sub, pub = pair(broker, "props/t")
    user = [("b", "2"), ("a", "1"), ("b", "1"), ("same", "x"), ("same", "x")]
    props = [("payload_format_indicator", 1),
             ("content_type", "text/plain; charset=utf-8"),
             ("response_topic", "props/reply"),
             ("correlation_data", b"\x00\xffcorr")]
    props += [("user_property", u) for u in user]
    pub.publish("props/t", "héllo".encode(), qos=1, props=props)
    p = sub.recv_publish()
    assert p.payload == "héllo".encode()
    assert p.props.get("payload_format_indicator") == 1
    assert p.props.get("content_type") == "text/plain; charset=utf-8"
    assert p.props.get("response_topic") == "props/reply"
    assert p.props.get("correlation_data") == b"\x00\xffcorr"
    # [MQTT-3.3.2-18]: user properties forwarded unaltered, order kept.
    assert p.props.get("user_property") == user
    # Properties that only concern the publisher's connection are not copied.
    assert "topic_alias" not in p.props


def test_properties_to_v311_subscriber_dropped(broker):
    sub = broker.connected("v3sub", version=4)
    sub.subscribe([("props3/t", 1)])
    pub = broker.connected("v5pub", version=5)
    pub.publish("props3/t", b"x", qos=1, props={"user_property": [("k", "v")],
                                                "content_type": "a/b"})
    p = sub.recv_publish()
    assert p.payload == b"x"


def test_retained_message_keeps_properties(broker):
    pub = broker.connected("retprops-pub", version=5)
    pub.publish("retprops/t", b"r", qos=1, retain=True,
                props=[("content_type", "x/y"), ("user_property", ("k", "v"))])
    sub = broker.connected("retprops-sub", version=5)
    sub.subscribe([("retprops/t", 1)])
    p = sub.recv_publish()
    assert p.retain
    assert p.props.get("content_type") == "x/y"
    assert p.props.get("user_property") == [("k", "v")]


def test_message_expiry_drops_queued_message(broker):
    # [MQTT-3.3.2-5]: an expired message is not delivered.
    sprops = {"session_expiry_interval": 60}
    sub = broker.connected("exp-sub", version=5, props=sprops)
    sub.subscribe([("exp/t", 1)])
    sub.disconnect()
    pub = broker.connected("exp-pub", version=5)
    pub.publish("exp/t", b"short", qos=1, props={"message_expiry_interval": 1})
    pub.publish("exp/t", b"long", qos=1, props={"message_expiry_interval": 30})
    pub.publish("exp/t", b"forever", qos=1)
    time.sleep(2.1)
    sub = broker.connected("exp-sub", version=5, clean=False, props=sprops)
    assert sub.connack.session_present
    got = []
    for p in sub.collect(0.5, m.PUBLISH):
        sub.ack(p)
        got.append(p)
    assert [p.payload for p in got] == [b"long", b"forever"]
    # [MQTT-3.3.2-6]: the forwarded interval is the remaining lifetime.
    remaining = got[0].props.get("message_expiry_interval")
    assert remaining is not None and 25 <= remaining <= 28, remaining
    assert "message_expiry_interval" not in got[1].props


def test_message_expiry_live_delivery_present(broker):
    sub, pub = pair(broker, "expl/t", name="expl")
    pub.publish("expl/t", b"x", qos=1, props={"message_expiry_interval": 100})
    p = sub.recv_publish()
    assert 99 <= p.props.get("message_expiry_interval", 0) <= 100


def test_retained_message_expires(broker):
    pub = broker.connected("retexp-pub", version=5)
    pub.publish("retexp/t", b"r", qos=1, retain=True, props={"message_expiry_interval": 1})
    time.sleep(2.1)
    sub = broker.connected("retexp-sub", version=5)
    sub.subscribe([("retexp/t", 1)])
    sub.expect_nothing(0.4)


def test_topic_alias_inbound(broker):
    sub, pub = pair(broker, "alias/#", name="alias")
    assert pub.connack.props.get("topic_alias_maximum", 0) >= 2
    pub.publish("alias/one", b"1", qos=1, props={"topic_alias": 1})
    pub.publish("", b"2", qos=1, props={"topic_alias": 1})
    pub.publish("alias/two", b"3", qos=0, props={"topic_alias": 2})
    pub.publish("", b"4", qos=0, props={"topic_alias": 2})
    # Re-map alias 1 to another topic.
    pub.publish("alias/three", b"5", qos=1, props={"topic_alias": 1})
    pub.publish("", b"6", qos=1, props={"topic_alias": 1})
    got = [sub.recv_publish() for _ in range(6)]
    assert [(p.topic, p.payload) for p in got] == [
        ("alias/one", b"1"), ("alias/one", b"2"), ("alias/two", b"3"), ("alias/two", b"4"),
        ("alias/three", b"5"), ("alias/three", b"6")]
    for p in got:
        assert "topic_alias" not in p.props


def test_topic_alias_not_shared_between_connections(broker):
    a = broker.connected("alias-a", version=5)
    a.publish("alias/a", b"x", props={"topic_alias": 1})
    b = broker.connected("alias-b", version=5)
    b.send(m.publish("", b"y", props={"topic_alias": 1}, v5=True))
    packets = b.expect_closed(3)
    assert all(p.type == m.DISCONNECT and p.reason in (0x82, 0x94) for p in packets), packets


# mosquitto 2.0.11 answers alias 0 with 0x81 (Malformed) instead of 0x94.
@pytest.mark.parametrize("alias", [
    pytest.param(0, marks=pytest.mark.xfail_mosquitto(reason="alias 0 -> 0x81")), 11],
    ids=["zero", "above-max"])
def test_topic_alias_invalid(make_broker, alias):
    # [MQTT-3.3.2-8], [MQTT-3.3.2-9]: 0x94 Topic Alias invalid.
    b = make_broker(mqtt={"topic_alias_maximum": 10})
    watch = b.connected("alias-watch", version=5)
    watch.subscribe([("#", 0)])
    c = b.connected("alias-bad", version=5)
    c.send(m.publish("alias/x", b"x", props={"topic_alias": alias}, v5=True))
    packets = c.expect_closed(3)
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x94)], packets
    watch.expect_nothing(0.2)


def test_topic_alias_unknown_mapping(broker):
    # 5.0 section 3.3.4: an empty topic with an unmapped alias is a
    # Protocol Error.
    c = broker.connected("alias-unknown", version=5)
    c.send(m.publish("", b"x", props={"topic_alias": 3}, v5=True))
    packets = c.expect_closed(3)
    assert all(p.type == m.DISCONNECT and p.reason in (0x82, 0x94) for p in packets), packets


def test_topic_alias_disabled(make_broker):
    b = make_broker(mqtt={"topic_alias_maximum": 0})
    c = b.connected("alias-off", version=5)
    assert c.connack.props.get("topic_alias_maximum", 0) == 0
    c.send(m.publish("a/b", b"x", props={"topic_alias": 1}, v5=True))
    packets = c.expect_closed(3)
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x94)], packets


def test_client_maximum_packet_size_respected(broker):
    # [MQTT-3.1.2-24] (5.0): the server must not send packets exceeding the
    # client's Maximum Packet Size; it drops that message for that client.
    small = broker.client(5)
    small.connect("mps-small", props={"maximum_packet_size": 200})
    small.subscribe([("mps/#", 1)])
    big = broker.connected("mps-big", version=5)
    big.subscribe([("mps/#", 1)])
    pub = broker.connected("mps-pub", version=5)
    pub.publish("mps/a", b"a" * 100, qos=1)
    pub.publish("mps/b", b"b" * 500, qos=1)
    pub.publish("mps/c", b"c" * 100, qos=0)
    got_small = [small.recv_publish() for _ in range(2)]
    assert [p.topic for p in got_small] == ["mps/a", "mps/c"]
    small.expect_nothing(0.3)
    got_big = [big.recv_publish() for _ in range(3)]
    assert [p.topic for p in got_big] == ["mps/a", "mps/b", "mps/c"]


def test_client_maximum_packet_size_counts_properties(broker):
    # The limit covers the whole packet, properties included.
    small = broker.client(5)
    small.connect("mps-props", props={"maximum_packet_size": 120})
    small.subscribe([("mpp/#", 0)])
    pub = broker.connected("mpp-pub", version=5)
    pub.publish("mpp/a", b"x" * 50, props={"user_property": [("k", "v" * 100)]})
    pub.publish("mpp/b", b"x" * 50)
    p = small.recv_publish()
    assert p.topic == "mpp/b"
    assert len(m.publish(p.topic, p.payload, p.qos, mid=p.mid, props=p.props, v5=True)) <= 120


@pytest.mark.parametrize("qos", [0, 1])
def test_no_local(broker, qos):
    # [MQTT-3.8.3-3] (5.0): No Local -> own messages are not forwarded.
    c = broker.connected("nolocal", version=5)
    c.subscribe([("nl/t", m.sub_options(qos=qos, no_local=True))])
    other = broker.connected("nolocal-other", version=5)
    c.publish("nl/t", b"mine", qos=qos)
    other.publish("nl/t", b"theirs", qos=qos)
    p = c.recv_publish()
    assert p.payload == b"theirs"
    c.expect_nothing(0.3)


def test_local_delivery_without_no_local(broker):
    c = broker.connected("local", version=5)
    c.subscribe([("loc/t", 1)])
    c.publish("loc/t", b"mine", qos=1)
    assert c.recv_publish().payload == b"mine"


def test_subscription_identifier_delivered(broker):
    c = broker.connected("subid", version=5)
    c.subscribe([("sid/a", 1)], props={"subscription_identifier": 42})
    c.subscribe([("sid/b", 1)])
    c.subscribe([("sid/big", 1)], props={"subscription_identifier": 268435455})
    pub = broker.connected("subid-pub", version=5)
    pub.publish("sid/a", b"a", qos=1)
    pub.publish("sid/b", b"b", qos=1)
    pub.publish("sid/big", b"c", qos=1)
    got = [c.recv_publish() for _ in range(3)]
    assert got[0].props.get("subscription_identifier") == [42]
    assert "subscription_identifier" not in got[1].props
    assert got[2].props.get("subscription_identifier") == [268435455]
    # Re-subscribing replaces the identifier [MQTT-3.8.4-3].
    c.subscribe([("sid/a", 1)], props={"subscription_identifier": 7})
    pub.publish("sid/a", b"a2", qos=1)
    assert c.recv_publish().props.get("subscription_identifier") == [7]


def test_subscription_identifier_on_retained(broker):
    pub = broker.connected("sidr-pub", version=5)
    pub.publish("sidr/t", b"r", qos=1, retain=True)
    c = broker.connected("sidr", version=5)
    c.subscribe([("sidr/#", 1)], props={"subscription_identifier": 9})
    p = c.recv_publish()
    assert p.retain and p.props.get("subscription_identifier") == [9]


def test_reason_codes_in_suback_v5(make_broker):
    b = make_broker(mqtt={"max_qos": 1})
    c = b.connected("rc", version=5)
    ack = c.subscribe([("rc/a", 0), ("rc/b", 1), ("rc/c", 2)])
    assert ack.codes == [0, 1, 1]


def test_user_properties_on_acks_ignored(broker):
    # A client may attach properties to acks; the broker accepts them.
    sub, pub = pair(broker, "ackprops/t", sub_opts=2, name="ackprops")
    pub.publish("ackprops/t", b"x", qos=2)
    p = sub.recv_publish(ack=False)
    sub.send(m.pubrec(p.mid, 0, {"user_property": [("a", "b")]}, v5=True))
    assert sub.expect(m.PUBREL).mid == p.mid
    sub.send(m.pubcomp(p.mid, 0, {"reason_string": "fine"}, v5=True))
    sub.ping()


def test_puback_error_reason_from_subscriber(broker):
    # A subscriber may refuse with a reason >= 0x80; the message is then
    # acknowledged and not re-sent.
    sub, pub = pair(broker, "refuse/t", name="refuse")
    pub.publish("refuse/t", b"x", qos=1)
    p = sub.recv_publish(ack=False)
    sub.send(m.puback(p.mid, 0x80, v5=True))
    sub.expect_nothing(0.3)
    pub.publish("refuse/t", b"y", qos=1)
    assert sub.recv_publish().payload == b"y"


def test_auth_without_method_is_error(broker):
    # 5.0 section 4.12: AUTH without an authentication method in CONNECT is
    # a Protocol Error.
    c = broker.connected("noauth", version=5)
    c.send(m.auth(0x19, {"authentication_method": "X"}))
    packets = c.expect_closed(3)
    assert all(p.type == m.DISCONNECT and p.reason in (0x82, 0x8C) for p in packets), packets


def test_unsupported_authentication_method(broker):
    # 5.0 section 4.12: unknown method -> CONNACK 0x8C (Bad authentication
    # method) or 0x87, then close.
    c = broker.client(5)
    c.send(m.connect("authm", 5, props={"authentication_method": "NOPE"}))
    packets = c.expect_closed(3)
    assert [p.type for p in packets] == [m.CONNACK]
    assert packets[0].reason in (0x8C, 0x87), packets
