"""Clients do not affect each other: slow consumers, abrupt disconnects,
concurrent publishers, connection churn."""

import socket
import threading
import time

import mqttraw as m


def test_subscriptions_are_per_client(broker):
    a = broker.connected("iso-a")
    b = broker.connected("iso-b")
    a.subscribe([("only/a", 1)])
    b.subscribe([("only/b", 1)])
    pub = broker.connected("iso-pub")
    pub.publish("only/a", b"A", qos=1)
    pub.publish("only/b", b"B", qos=1)
    assert a.recv_publish().payload == b"A"
    assert b.recv_publish().payload == b"B"
    a.expect_nothing(0.2)
    b.expect_nothing(0.1)


def test_client_ids_are_case_sensitive(broker):
    lower = broker.connected("caseid")
    upper = broker.connected("CASEID")
    lower.ping()
    upper.ping()


def test_slow_consumer_does_not_block_others(broker):
    # A subscriber that never reads must not stall delivery to others or the
    # publisher.
    stalled = broker.client(4)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect("stalled")
    stalled.subscribe([("flood/#", 0)])
    fast = broker.connected("fast")
    fast.subscribe([("flood/#", 0)])
    pub = broker.connected("flooder")
    n = 3000
    payload = b"x" * 1000
    received = []
    done = threading.Event()

    def reader():
        try:
            while len(received) < n:
                received.append(fast.recv_publish(timeout=10))
        except Exception as e:  # reported below
            received.append(e)
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.monotonic()
    for start in range(0, n, 100):
        pub.send(b"".join(m.publish("flood/t", payload) for _ in range(start, start + 100)))
    pub.ping(10)
    assert done.wait(15), "fast subscriber got %d of %d" % (len(received), n)
    assert not any(isinstance(r, Exception) for r in received), received[-1]
    assert len(received) == n
    assert time.monotonic() - t0 < 15
    # Someone new is served promptly.
    other = broker.connected("newcomer")
    t1 = time.monotonic()
    other.ping()
    assert time.monotonic() - t1 < 1


def test_abrupt_disconnects_mid_flow(broker):
    watch = broker.connected("watch")
    watch.subscribe([("mid/#", 2)])
    for i in range(10):
        c = broker.connected("victim-%d" % i, version=4 + i % 2)
        c.subscribe([("mid/#", 2)])
        c.send(m.publish("mid/t", b"%d" % i, qos=2, mid=1, v5=c.v5))
        c.wait_for(m.PUBREC, 1)
        c.close()  # no PUBREL
    pub = broker.connected("mid-pub")
    pub.publish("mid/t", b"real", qos=2)
    # A server may forward a QoS 2 message on PUBLISH or on PUBREL (5.0
    # section 4.3.3), so the victims' messages may or may not show up first.
    while True:
        p = watch.recv_publish()
        if p.payload == b"real":
            break
        assert p.payload in [b"%d" % i for i in range(10)]


def test_concurrent_publishers_keep_per_publisher_order(broker):
    sub = broker.connected("conc-sub")
    sub.subscribe([("conc/#", 1)])
    publishers = 8
    per = 100
    errors = []

    def run(i):
        try:
            c = broker.client(4 + i % 2)
            c.connect("conc-pub-%d" % i)
            for k in range(per):
                c.publish("conc/%d" % i, b"%d" % k, qos=1)
            c.disconnect()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(publishers)]
    for t in threads:
        t.start()
    seen = {}
    for _ in range(publishers * per):
        p = sub.recv_publish(timeout=10)
        seen.setdefault(p.topic, []).append(int(p.payload))
    for t in threads:
        t.join(10)
    assert not errors, errors
    assert sorted(seen) == sorted("conc/%d" % i for i in range(publishers))
    for topic, values in seen.items():
        assert values == list(range(per)), topic


def test_connection_churn(broker):
    sub = broker.connected("churn-sub")
    sub.subscribe([("churn/#", 0)])
    for i in range(150):
        c = broker.client(4 + i % 2)
        c.connect("churn-%d" % (i % 7), clean=bool(i % 2))
        if i % 3 == 0:
            c.disconnect()
        else:
            c.close()
    pub = broker.connected("churn-pub")
    pub.publish("churn/t", b"alive")
    assert sub.recv_publish().payload == b"alive"


def test_takeover_does_not_affect_other_clients(broker):
    bystander = broker.connected("bystander")
    bystander.subscribe([("tk/#", 1)])
    for _ in range(5):
        broker.connected("tk-same")
    pub = broker.connected("tk-pub")
    pub.publish("tk/t", b"fine", qos=1)
    assert bystander.recv_publish().payload == b"fine"
