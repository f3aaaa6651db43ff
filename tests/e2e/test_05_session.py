"""Session state: clean session, persistent sessions, session expiry, queue limits."""

import time

import pytest

import mqttraw as m


def test_clean_session_forgets_subscriptions(broker):
    c = broker.connected("forget", clean=True)
    c.subscribe([("fg/t", 1)])
    c.disconnect()
    c = broker.connected("forget", clean=True)
    assert c.connack.session_present is False
    pub = broker.connected("fg-pub")
    pub.publish("fg/t", b"x", qos=1)
    c.expect_nothing(0.4)


def test_clean_session_discards_previous_persistent_session(broker):
    # [MQTT-3.1.2-6]: CleanSession=1 discards any previous session.
    c = broker.connected("discard", clean=False)
    c.subscribe([("dc/t", 1)])
    c.disconnect()
    c = broker.connected("discard", clean=True)
    c.disconnect()
    c = broker.connected("discard", clean=False)
    assert c.connack.session_present is False
    pub = broker.connected("dc-pub")
    pub.publish("dc/t", b"x", qos=1)
    c.expect_nothing(0.4)


@pytest.mark.parametrize("level", [4, 5])
def test_persistent_session_queues_while_offline(broker, level):
    kw = {"props": {"session_expiry_interval": 60}} if level == 5 else {}
    c = broker.client(level)
    c.connect("offline", clean=False, **kw)
    c.subscribe([("off/q1", 1), ("off/q2", 2), ("off/q0", 0)])
    c.disconnect()
    pub = broker.connected("off-pub")
    pub.publish("off/q1", b"one", qos=1)
    pub.publish("off/q2", b"two", qos=2)
    pub.publish("off/q2", b"three", qos=1)
    c = broker.client(level)
    ack = c.connect("offline", clean=False, **kw)
    assert ack.session_present is True
    got = [c.recv_publish() for _ in range(3)]
    assert [(p.topic, p.payload, p.qos) for p in got] == [
        ("off/q1", b"one", 1), ("off/q2", b"two", 2), ("off/q2", b"three", 1)]
    # The subscriptions survived too.
    pub.publish("off/q1", b"live", qos=1)
    assert c.recv_publish().payload == b"live"


def test_session_expiry_zero_v5_forgets(broker):
    # 5.0 section 3.1.2.11.2: absent / 0 Session Expiry -> session ends with
    # the connection.
    c = broker.connected("se0", version=5, clean=False)
    c.subscribe([("se0/t", 1)])
    c.disconnect()
    c = broker.connected("se0", version=5, clean=False)
    assert c.connack.session_present is False
    pub = broker.connected("se0-pub")
    pub.publish("se0/t", b"x", qos=1)
    c.expect_nothing(0.4)


def test_session_expiry_interval_v5(broker):
    props = {"session_expiry_interval": 1}
    c = broker.connected("se1", version=5, clean=True, props=props)
    c.subscribe([("se1/t", 1)])
    c.disconnect()
    pub = broker.connected("se1-pub")
    pub.publish("se1/t", b"queued", qos=1)
    # Within the interval: resumed with the queued message.
    c = broker.connected("se1", version=5, clean=False, props=props)
    assert c.connack.session_present is True
    assert c.recv_publish().payload == b"queued"
    c.disconnect()
    # After the interval: gone.
    time.sleep(2.2)
    c = broker.connected("se1", version=5, clean=False, props=props)
    assert c.connack.session_present is False
    pub.publish("se1/t", b"after", qos=1)
    c.expect_nothing(0.4)


def test_session_expiry_changed_on_disconnect_v5(broker):
    # 5.0 section 3.14.2.2.2: DISCONNECT may set a new Session Expiry
    # Interval (here from 60 to 0, which ends the session).
    c = broker.connected("sed", version=5, props={"session_expiry_interval": 60})
    c.subscribe([("sed/t", 1)])
    c.disconnect(reason=0, props={"session_expiry_interval": 0})
    c = broker.connected("sed", version=5, clean=False, props={"session_expiry_interval": 60})
    assert c.connack.session_present is False


def test_session_expiry_on_disconnect_from_zero_is_error(broker):
    # [MQTT-3.14.2-2]: non-zero Session Expiry in DISCONNECT after 0 in
    # CONNECT is a Protocol Error.
    c = broker.connected("sez", version=5)
    c.send(m.disconnect(0, {"session_expiry_interval": 30}, v5=True))
    packets = c.expect_closed(3)
    assert all(p.type == m.DISCONNECT and p.reason == 0x82 for p in packets), packets
    c = broker.connected("sez", version=5, clean=False)
    assert c.connack.session_present is False


def test_session_expiry_survives_abnormal_close_v5(broker):
    props = {"session_expiry_interval": 30}
    c = broker.connected("seab", version=5, props=props)
    c.subscribe([("seab/t", 2)])
    c.close()  # no DISCONNECT
    pub = broker.connected("seab-pub", version=5)
    pub.publish("seab/t", b"q", qos=2)
    c = broker.connected("seab", version=5, clean=False, props=props)
    assert c.connack.session_present is True
    assert c.recv_publish().payload == b"q"


def test_max_queued_messages_drops_excess(make_broker):
    b = make_broker(limits={"max_queued_messages": 5, "max_inflight": 20})
    c = b.connected("mq", clean=False)
    c.subscribe([("mq/t", 1)])
    c.disconnect()
    pub = b.connected("mq-pub")
    for i in range(30):
        pub.publish("mq/t", b"%d" % i, qos=1)
    # The broker keeps serving.
    pub.ping()
    c = b.connected("mq", clean=False)
    assert c.connack.session_present
    got = drain(c)
    assert 5 <= len(got) <= 5 + 20, got
    assert got == sorted(got) and got[0] == 0
    # Dropping is per session and temporary: live traffic flows afterwards.
    pub.publish("mq/t", b"999", qos=1)
    assert drain(c) == [999]


def drain(c, timeout=0.5):
    got = []
    while True:
        try:
            p = c.recv_publish(timeout=timeout)
        except m.ReadTimeout:
            return got
        got.append(int(p.payload))


def test_max_queued_messages_exact(make_broker):
    # With the in-flight window being part of the session, an offline
    # client receives at most window + queue limit messages; here a window of
    # 1 makes the bound tight.
    b = make_broker(limits={"max_queued_messages": 3, "max_inflight": 1})
    c = b.connected("mqx", clean=False)
    c.subscribe([("mqx/t", 1)])
    c.disconnect()
    pub = b.connected("mqx-pub")
    for i in range(10):
        pub.publish("mqx/t", b"%d" % i, qos=1)
    c = b.connected("mqx", clean=False)
    got = drain(c)
    assert got[:3] == [0, 1, 2]
    assert 3 <= len(got) <= 4, got


def test_offline_qos0_not_required(broker):
    # QoS 0 messages for offline sessions may be dropped; whatever happens,
    # QoS 1 messages after them arrive in order.
    c = broker.connected("q0off", clean=False)
    c.subscribe([("q0off/t", 1)])
    c.disconnect()
    pub = broker.connected("q0off-pub")
    pub.publish("q0off/t", b"a", qos=0)
    pub.publish("q0off/t", b"b", qos=1)
    c = broker.connected("q0off", clean=False)
    got = [p.payload for p in c.collect(0.4, m.PUBLISH)]
    assert got in ([b"b"], [b"a", b"b"])


def test_session_resumed_subscription_qos_kept(broker):
    c = broker.connected("sq", clean=False)
    c.subscribe([("sq/t", 2)])
    c.close()
    c = broker.connected("sq", clean=False)
    pub = broker.connected("sq-pub")
    pub.publish("sq/t", b"x", qos=2)
    p = c.recv_publish()
    assert p.qos == 2


def test_durable_state_survives_restart(make_broker):
    b = make_broker(persistence={"enabled": True})
    c = b.connected("durable", clean=False)
    c.subscribe([("dur/t", 1)])
    c.disconnect()
    pub = b.connected("dur-pub")
    pub.publish("dur/t", b"queued", qos=1)
    pub.publish("dur/r", b"retained", qos=1, retain=True)
    pub.disconnect()
    assert b.stop() == 0
    b.start()
    c = b.connected("durable", clean=False)
    assert c.connack.session_present is True
    assert c.recv_publish().payload == b"queued"
    c.subscribe([("dur/r", 1)])
    p = c.recv_publish()
    assert (p.payload, p.retain) == (b"retained", True)
    # The subscription itself was restored.
    pub = b.connected("dur-pub2")
    pub.publish("dur/t", b"live", qos=1)
    assert c.recv_publish().payload == b"live"


@pytest.mark.parametrize("level", [4, 5])
def test_durable_session_live_flow_with_persistence(make_broker, level):
    # With the store enabled, messages for a durable session are committed
    # before delivery; the live flow must keep going past the first few.
    b = make_broker(persistence={"enabled": True})
    kw = {"props": {"session_expiry_interval": 60}} if level == 5 else {}
    c = b.client(level)
    c.connect("durable-live", clean=False, **kw)
    c.subscribe([("dl/t", 1)])
    pub = b.connected("dl-pub")
    for i in range(20):
        pub.publish("dl/t", b"%d" % i, qos=1)
        assert c.recv_publish(timeout=2).payload == b"%d" % i
