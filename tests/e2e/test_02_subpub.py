"""Topic matching, overlapping subscriptions, unsubscribe, invalid filters."""

import pytest

import mqttraw as m

# (filter, topic, should match): mostly the examples of MQTT 3.1.1 section 4.7
# and MQTT 5.0 section 4.7.
MATCH_CASES = [
    ("sport/tennis/player1", "sport/tennis/player1", True),
    ("sport/tennis/player1", "sport/tennis/player2", False),
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/#", "sport/tennis", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
    ("a/b", "A/b", False),
    ("a//c", "a//c", True),
    ("a/+/c", "a//c", True),
    ("#", "$test/x", False),
    ("+/x", "$test/x", False),
    ("+/#", "$test/x", False),
    ("$test/#", "$test/x", True),
    ("$test/+", "$test/x", True),
]


def test_topic_matching(broker):
    pub = broker.connected("match-pub")
    failures = []
    for i, (flt, topic, expected) in enumerate(MATCH_CASES):
        sub = broker.connected("match-sub-%d" % i)
        sentinel = "sentinel/%d" % i
        ack = sub.subscribe([(flt, 0), (sentinel, 0)])
        assert ack.codes == [0, 0], (flt, ack)
        pub.publish(topic, b"case")
        pub.publish(sentinel, b"end")
        got = []
        while True:
            p = sub.recv_publish()
            if p.topic == sentinel:
                break
            got.append(p.topic)
        if got != ([topic] if expected else []):
            failures.append((flt, topic, expected, got))
        sub.disconnect()
    assert not failures


def test_exact_and_wildcard_payload_intact(broker):
    sub = broker.connected("payload-sub")
    sub.subscribe([("bin/#", 0)])
    pub = broker.connected("payload-pub")
    payload = bytes(range(256)) * 40
    pub.publish("bin/data", payload)
    pub.publish("bin/empty", b"")
    p = sub.recv_publish()
    assert (p.topic, p.payload, p.qos, p.retain) == ("bin/data", payload, 0, False)
    p = sub.recv_publish()
    assert (p.topic, p.payload) == ("bin/empty", b"")


# mosquitto 2.0.11 delivers at the QoS of one subscription only.
@pytest.mark.xfail_mosquitto(reason="overlapping subscriptions: not the maximum QoS")
@pytest.mark.parametrize("level", [4, 5])
def test_overlapping_subscriptions_one_copy_max_qos(broker, level):
    # [MQTT-3.3.5-1] (5.0 section 3.3.4): one delivery at the maximum QoS of
    # all matching subscriptions.
    sub = broker.connected("overlap-%d" % level, version=level)
    sub.subscribe([("ov/#", 0)])
    sub.subscribe([("ov/+/c", 2)])
    sub.subscribe([("ov/b/c", 1)])
    pub = broker.connected("overlap-pub")
    pub.publish("ov/b/c", b"one", qos=2)
    p = sub.recv_publish()
    assert p.payload == b"one" and p.qos == 2
    sub.expect_nothing(0.5)


# mosquitto 2.0.11 sends one copy per subscription.
@pytest.mark.xfail_mosquitto(reason="one copy per overlapping subscription")
def test_overlapping_subscription_identifiers_v5(broker):
    # 5.0 section 3.3.4: the single copy carries all matching Subscription
    # Identifiers.
    sub = broker.connected("overlap-ids", version=5)
    sub.subscribe([("ids/#", 1)], props={"subscription_identifier": 7})
    sub.subscribe([("ids/+", 0)], props={"subscription_identifier": 300})
    sub.subscribe([("ids/x", 0)])
    pub = broker.connected("overlap-ids-pub", version=5)
    pub.publish("ids/x", b"m", qos=1)
    p = sub.recv_publish()
    assert p.qos == 1
    assert sorted(p.props.get("subscription_identifier", [])) == [7, 300]
    sub.expect_nothing(0.5)


def test_resubscribe_replaces_qos(broker):
    sub = broker.connected("resub")
    assert sub.subscribe([("rs/t", 2)]).codes == [2]
    assert sub.subscribe([("rs/t", 0)]).codes == [0]
    pub = broker.connected("resub-pub")
    pub.publish("rs/t", b"x", qos=2)
    p = sub.recv_publish()
    assert p.qos == 0
    sub.expect_nothing(0.3)


def test_multiple_filters_in_one_subscribe(broker):
    sub = broker.connected("multi")
    ack = sub.subscribe([("mf/a", 0), ("mf/b", 1), ("mf/c", 2)])
    assert ack.codes == [0, 1, 2]


@pytest.mark.parametrize("level", [4, 5])
def test_unsubscribe_stops_delivery(broker, level):
    sub = broker.connected("unsub-%d" % level, version=level)
    sub.subscribe([("us/a", 1), ("us/b", 1)])
    pub = broker.connected("unsub-pub")
    ack = sub.unsubscribe(["us/a"])
    if level == 5:
        assert ack.codes == [0x00]
    pub.publish("us/a", b"gone", qos=1)
    pub.publish("us/b", b"kept", qos=1)
    p = sub.recv_publish()
    assert (p.topic, p.payload) == ("us/b", b"kept")
    sub.expect_nothing(0.3)


def test_unsubscribe_unknown_filter_v5(broker):
    # 5.0 section 3.11.3: 0x11 No subscription existed.
    sub = broker.connected("unsub-unknown", version=5)
    sub.subscribe([("uu/known", 0)])
    ack = sub.unsubscribe(["uu/known", "uu/unknown"])
    assert ack.codes == [0x00, 0x11]


def test_unsubscribe_unknown_filter_v311(broker):
    # [MQTT-3.10.4-5]: UNSUBACK even when nothing was removed.
    sub = broker.connected("unsub-unknown-311")
    sub.unsubscribe(["never/subscribed"])
    sub.ping()


# [MQTT-4.7.1-2/3]: misplaced wildcards make a filter invalid. MQTT 3.1.1
# allows SUBACK 0x80 for that filter (section 3.9.3); MQTT 5.0 defines 0x8F
# "Topic Filter invalid". mosquitto 2.0.11 closes the connection instead.
@pytest.mark.xfail_mosquitto(reason="closes the connection on an invalid filter")
@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize("bad", ["a/#/b", "a+", "#x", "a/b#", "+a/b"])
def test_invalid_filter_suback_failure(broker, level, bad):
    sub = broker.connected("badfilter", version=level)
    ack = sub.subscribe([("ok/1", 1), (bad, 1), ("ok/2", 0)])
    fail = 0x80 if level == 4 else 0x8F
    assert ack.codes == [1, fail, 0]
    # The rest of the subscription works.
    pub = broker.connected("badfilter-pub")
    pub.publish("ok/1", b"x", qos=1)
    assert sub.recv_publish().topic == "ok/1"


@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "#", "a/+/b"])
def test_publish_wildcard_topic_closes(broker, level, topic):
    # [MQTT-3.3.2-2]: the Topic Name must not contain wildcards; 5.0 uses
    # reason 0x90 Topic Name invalid.
    watcher = broker.connected("wild-watch")
    watcher.subscribe([("#", 0)])
    c = broker.connected("wild-pub", version=level)
    c.send(m.publish(topic, b"bad", qos=0, v5=c.v5))
    packets = c.expect_closed(3)
    if level == 5:
        # 0x90 preferred (see next test); a Protocol Error is acceptable here.
        assert all(p.type == m.DISCONNECT and p.reason in (0x81, 0x82, 0x90)
                   for p in packets), packets
    else:
        assert packets == []
    watcher.expect_nothing(0.2)
    # Isolation: other clients are unaffected.
    pub = broker.connected("wild-good")
    pub.publish("good/topic", b"ok")
    assert watcher.recv_publish().payload == b"ok"


@pytest.mark.xfail_mosquitto(reason="DISCONNECT 0x82 instead of 0x90")
def test_publish_wildcard_topic_disconnect_reason_v5(broker):
    # 5.0 sections 3.3.2.1 and 4.13: Petrel names the error with 0x90.
    c = broker.connected("wild-reason", version=5)
    c.send(m.publish("x/#", b"bad", v5=True))
    packets = c.expect_closed(3)
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x90)]


def test_empty_topic_publish_closes(broker):
    # [MQTT-4.7.3-1]: topic names are at least one character long.
    c = broker.connected("empty-topic")
    c.send(m.publish("", b"x"))
    assert c.expect_closed(3) == []


def test_subscribe_empty_filter_fails(broker):
    # [MQTT-4.7.3-1]: filters are at least one character long.
    c = broker.connected("empty-filter")
    c.send(m.subscribe(1, [("", 0)]))
    try:
        pkt = c.recv(3)
    except m.ConnectionClosed:
        return
    assert pkt.type == m.SUBACK and pkt.codes == [0x80]


def test_max_qos_downgrades_grant(make_broker):
    b = make_broker(mqtt={"max_qos": 1})
    sub = b.connected("maxqos")
    assert sub.subscribe([("mq/t", 2)]).codes == [1]
