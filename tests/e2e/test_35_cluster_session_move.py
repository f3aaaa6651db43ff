"""A durable session follows its client from node to node.

Real nats-server with JetStream, Petrel nodes with LMDB persistence on
loopback. What is checked (src/cluster/session_moves.h):

* a durable client that connected to node A and connects to node B gets
  its session there: session present, its subscriptions, and every
  message queued for it on A, in order -- far more than a session keeps in
  RAM (its window, 1,000) and than one part of a move carries;
* messages in flight keep their packet ids: QoS 1 sent again with DUP,
  a QoS 2 message the client had PUBREC'd gets its PUBREL again;
* a client still connected to A is disconnected there (0x8E) when it
  connects to B, and a publisher that keeps publishing during the move
  loses nothing (duplicates allowed: at least once);
* MQTT 5 session expiry and subscription options travel with it; the old
  node drops its copy after the move;
* a client that starts clean on B ends its session on A;
* with the old node down and no replica of its store to take its sessions
  from (cluster.store_replica false; with one, test_38), B answers with
  what it has.
"""

import os
import signal
import threading
import time
import urllib.request

import pytest

import fastclient as fc
import mqttraw as m
from conftest import HOST, free_port
from natsrun import Nats, js, nodes, receive, stream_ready, sys_value, wait_sys  # noqa: F401 (fixture)

pytestmark = pytest.mark.petrel_only

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
BIG_QUEUES = {"max_queued_messages": 1000000}
RAM_WINDOW = 1000  # Sessions::kRamWindow


def publish_in_background(pubs, topic, n, window):
    """Each publisher publishes `n` QoS 1 messages unthrottled on a thread
    of its own; returns the threads."""
    threads = []
    for p in pubs:
        t = threading.Thread(target=p.publish, args=(topic, n), kwargs=dict(qos=1, window=window, timeout=120),
                             daemon=True)
        t.start()
        threads.append(t)
    return threads


def assert_none_lost(pubs, before, sub, timeout=60):
    """Every message each publisher had acknowledged (all it sent: nothing
    failed) reached the client: through the closed subscribers `before`,
    or `sub`, which is read until they are all there or `timeout`."""
    for p in pubs:
        missing = set(range(p.next_seq))
        for b in before:
            missing -= {seq for (q, seq) in b.first_seen if q == p.name}
        deadline = time.monotonic() + timeout
        while True:
            missing -= {seq for (q, seq) in sub.first_seen if q == p.name}
            if not missing or time.monotonic() > deadline:
                break
            fc.run([sub], lambda: False, 1.0)
        assert not missing, "%d of %s's messages lost, e.g. %r" % (len(missing), p.name, sorted(missing)[:5])


def move_under_load(a, b, pub_nodes, cid, topic, n, window, part):
    """A durable client subscribed to `topic`/# on `a`; a publisher on each
    of `pub_nodes` sends `n` QoS 1 messages unthrottled; once 1/`part` of
    them has come, the client connects to `b` (session present). Returns
    the two subscribers, the publishers and their threads."""
    s = fc.Sub(HOST, a.port, cid, version=4, clean=False)
    s.connect(subscribe=topic + "/#", qos=1)
    registry_settles()
    pubs = [fc.Pub(HOST, x.port, "pub-%s" % x.name).connect() for x in pub_nodes]
    threads = publish_in_background(pubs, topic + "/x", n, window)
    fc.run([s], lambda: s.count >= n // part, 30)
    s2 = fc.Sub(HOST, b.port, cid, version=4, clean=False)
    s2.connect()
    assert s2.session_present is True
    return s, s2, pubs, threads


def moved_in(node, n, timeout=10.0):
    return wait_sys(node, "moves/in", lambda v: int(v) >= n, timeout=timeout)


def moved_out(node, n, timeout=15.0):
    """The old node finishes after the grace (2 s) and once its stream had
    nothing more for it."""
    return wait_sys(node, "moves/out", lambda v: int(v) >= n, timeout=timeout)


def offline_subscriber(node, cid, filt):
    """A durable client (3.1.1, clean session 0) subscribed to `filt` at
    QoS 1 on `node`, then gone, its registry entry known to every node."""
    s = fc.Sub(HOST, node.port, cid, version=4, clean=False)
    s.connect(subscribe=filt, qos=1)
    s.close()
    registry_settles()
    return s


def registry_settles():
    """The session registry's entry of a client that just connected reaches
    every node through JetStream's watch: a few milliseconds; this leaves
    room."""
    time.sleep(0.5)


@pytest.mark.time_limit(150)
def test_a_durable_session_moves_with_its_queue_and_back(js, nodes):
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    s = offline_subscriber(a, "mover", "mv/#")
    assert s.session_present is False
    pub = fc.Pub(HOST, c.port, "pub-c").connect()
    # 10x the RAM window of a session, 40 parts of a move (256 KiB each).
    n = (2 if SANITIZED else 10) * RAM_WINDOW
    pub.publish("mv/1", n, qos=1, window=1000, timeout=120, payload_size=1000)
    t0 = time.monotonic()
    s2 = fc.Sub(HOST, b.port, "mover", version=4, clean=False)
    s2.connect()
    print("CONNACK on b after %.2f s (the move of %d queued messages)" % (time.monotonic() - t0, n))
    assert s2.session_present is True
    fc.run([s2], lambda: s2.unique(b"pub-c") >= n, 60)
    assert s2.unique(b"pub-c") == n
    assert s2.order_errors == 0 and s2.dups == 0
    assert int(moved_in(b, 1)) == 1
    assert int(sys_value(b, "moves/messages_in")) >= n
    # A drops its copy after the move; its subscription came to B: a
    # message published on A reaches the client on B, once.
    assert int(moved_out(a, 1)) == 1
    pub_a = fc.Pub(HOST, a.port, "pub-a").connect()
    pub_a.publish("mv/2", 10, qos=1, timeout=30)
    fc.run([s2], lambda: s2.unique(b"pub-a") >= 10, 15)
    assert s2.unique(b"pub-a") == 10
    s2.close()
    registry_settles()
    # And back to A, with what was published for it meanwhile.
    pub.publish("mv/3", 500, qos=1, timeout=60)
    s3 = fc.Sub(HOST, a.port, "mover", version=4, clean=False)
    s3.connect()
    assert s3.session_present is True
    fc.run([s3], lambda: s3.unique(b"pub-c") >= 500, 30)
    assert s3.unique(b"pub-c") == 500 and s3.dups == 0
    assert int(moved_in(a, 1)) == 1
    assert int(moved_out(b, 1)) == 1
    assert sys_value(a, "moves/failed") == "0" and sys_value(b, "moves/failed") == "0"


@pytest.mark.time_limit(90)
def test_messages_in_flight_keep_their_packet_ids(js, nodes):
    a, b = nodes(js, 2, persistence={"enabled": True})
    stream_ready(a, b)
    c = a.connected("inflight", version=5, clean=False, props={"session_expiry_interval": 600})
    c.subscribe([("if/1", 1), ("if/2", 2)])
    p = a.connected("if-pub")
    p.publish("if/1", b"one", qos=1)
    p.publish("if/2", b"two", qos=2)
    p.publish("if/2", b"three", qos=2)
    got = [c.expect(m.PUBLISH) for _ in range(3)]
    by = {x.payload: x for x in got}
    # "one" not acknowledged; "two" PUBREC'd (its PUBREL comes), not
    # completed; "three" not answered.
    c.send(m.pubrec(by[b"two"].mid, v5=True))
    c.wait_for(m.PUBREL, by[b"two"].mid)
    # A QoS 2 message of its own, PUBREC'd by the broker, not released.
    c.send(m.publish("if/own", b"own", 2, mid=77, v5=True))
    c.wait_for(m.PUBREC, 77)
    registry_settles()
    c2 = b.connected("inflight", version=5, clean=False, props={"session_expiry_interval": 600})
    assert c2.connack.session_present is True
    # The old connection on A was closed as taken over (0x8E).
    d = c.expect(m.DISCONNECT, timeout=5)
    assert d.reason == 0x8E
    again = c2.collect(2.0)
    pubs = {x.payload: x for x in again if x.type == m.PUBLISH}
    rels = [x for x in again if x.type == m.PUBREL]
    assert pubs[b"one"].dup and pubs[b"one"].mid == by[b"one"].mid
    assert pubs[b"three"].dup and pubs[b"three"].mid == by[b"three"].mid
    assert b"two" not in pubs
    assert [x.mid for x in rels] == [by[b"two"].mid]
    # Its own QoS 2 message: the PUBREL completes it on B, and it is not
    # routed a second time.
    c2.send(m.pubrel(77, v5=True))
    assert c2.wait_for(m.PUBCOMP, 77).mid == 77
    c2.subscribe([("if/own", 2)])
    assert [x for x in c2.collect(1.0) if x.type == m.PUBLISH and x.topic == "if/own"] == []


@pytest.mark.time_limit(90)
def test_expiry_and_subscription_options_move_too(js, nodes):
    a, b = nodes(js, 2, persistence={"enabled": True})
    stream_ready(a, b)
    c = a.connected("opts", version=5, clean=False, props={"session_expiry_interval": 900})
    c.subscribe([("op/#", m.sub_options(qos=1, no_local=True))], props={"subscription_identifier": 42})
    c.disconnect()
    registry_settles()
    p = a.connected("op-pub", version=5)
    p.publish("op/x", b"queued", qos=1)
    c2 = b.connected("opts", version=5, clean=False, props={"session_expiry_interval": 900})
    assert c2.connack.session_present is True
    x = c2.expect(m.PUBLISH)
    assert x.payload == b"queued" and x.props.get("subscription_identifier") in (42, [42])
    c2.ack(x)
    # No Local came along: its own message does not come back to it.
    c2.publish("op/own", b"own", qos=1)
    # And the subscription identifier on what B routes itself.
    p_b = b.connected("op-pub-b", version=5)
    p_b.publish("op/y", b"live", qos=1)
    got = [x for x in c2.collect(1.5) if x.type == m.PUBLISH]
    assert [x.payload for x in got] == [b"live"]
    assert got[0].props.get("subscription_identifier") in (42, [42])


@pytest.mark.time_limit(90)
def test_a_clean_start_elsewhere_ends_the_session(js, nodes):
    a, b = nodes(js, 2, persistence={"enabled": True})
    stream_ready(a, b)
    c = a.connected("cleaner", clean=False)
    c.subscribe([("cl/#", 1)])
    c.close()
    registry_settles()
    c2 = b.connected("cleaner", clean=True)
    assert c2.connack.session_present is False
    c2.disconnect()
    registry_settles()
    # A dropped its copy: a durable connect there starts a new session.
    c3 = a.connected("cleaner", clean=False)
    assert c3.connack.session_present is False


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_with_the_old_node_down_the_client_connects_without_it(js, nodes, how):
    a, b = nodes(js, 2, persistence={"enabled": True}, cluster={"store_replica": False})
    stream_ready(a, b)
    c = a.connected("orphan", clean=False)
    c.subscribe([("or/#", 1)])
    c.close()
    registry_settles()
    if how == "stop":
        a.stop()
    else:
        a.kill()
    t0 = time.monotonic()
    c2 = b.client(timeout=10)
    connack = c2.connect("orphan", clean=False)
    took = time.monotonic() - t0
    assert connack.session_present is False
    # Stopped: B knows at once (its bye). Killed: NATS tells B at once
    # that nothing listens on A's subject; B asks again until A's status is
    # overdue (Cluster::kStatusMs + kDownSlackMs, 6 s), then knows it down.
    assert took < (1.0 if how == "stop" else 8.0), took
    if how == "kill":
        wait_sys(b, "moves/failed", lambda v: v == "1")


@pytest.mark.time_limit(150)
def test_a_move_under_load_loses_nothing(js, nodes):
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    n = 10000 if SANITIZED else 40000
    # Reads on A until a quarter has come, then connects to B.
    s, s2, pubs, threads = move_under_load(a, b, (a, c), "busy", "ld", n, 500, 4)
    for t in threads:
        t.join(120)
    assert_none_lost(pubs, [s], s2)
    total = sum(p.next_seq for p in pubs)
    dups = sum(1 for k in s2.first_seen if k in s.first_seen) + s2.dups
    print("%d messages, %d before the move, %d duplicates" % (total, s.unique(), dups))


def wait_log(node, text, timeout=30.0, step=0.01):
    deadline = time.monotonic() + timeout
    while text not in node.log():
        assert time.monotonic() < deadline, "%s never logged %r" % (node.name, text)
        time.sleep(step)


@pytest.mark.time_limit(180)
def test_kill_9_of_the_new_node_mid_move_then_the_whole_queue_moves(js, nodes):
    """100x the RAM window queued on A; B is killed while it takes them
    (before the last part), restarted, and the client's next connect moves
    the whole queue, once."""
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    offline_subscriber(a, "big", "bg/#")
    n = (20 if SANITIZED else 100) * RAM_WINDOW
    pub = fc.Pub(HOST, c.port, "pub-big").connect()
    pub.publish("bg/1", n, qos=1, window=1000, timeout=150, payload_size=200)
    first = fc.Sub(HOST, b.port, "big", version=4, clean=False)
    t = threading.Thread(target=lambda: pytest.raises(Exception, first.connect), daemon=True)
    t.start()
    wait_log(b, "client big: taking its session from node node0")
    time.sleep(0.05)
    b.kill()
    t.join(10)
    assert "session moved here" not in b.log(), "the move finished before the kill"
    b.start()
    stream_ready(b)
    registry_settles()
    t0 = time.monotonic()
    s2 = fc.Sub(HOST, b.port, "big", version=4, clean=False)
    s2.connect()
    print("%d queued messages moved in %.2f s (CONNACK)" % (n, time.monotonic() - t0))
    assert s2.session_present is True
    fc.run([s2], lambda: s2.unique(b"pub-big") >= n, 90)
    assert s2.unique(b"pub-big") == n
    assert s2.dups == 0 and s2.order_errors == 0


@pytest.mark.time_limit(150)
def test_kill_9_of_the_old_node_after_the_move_loses_nothing(js, nodes):
    """A publisher keeps publishing while the client moves from A to B;
    A is killed right after B's CONNACK (its grace not over) and restarted:
    what it queued after the snapshot still reaches B."""
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    n = 5000 if SANITIZED else 20000
    s, s2, pubs, threads = move_under_load(a, b, (c, b), "hop", "hp", n, 200, 10)
    a.kill()
    time.sleep(0.5)
    a.start()
    for th in threads:
        th.join(120)
    assert_none_lost(pubs, [s], s2)
    dups = sum(1 for k in s2.first_seen if k in s.first_seen) + s2.dups
    print("%d duplicates" % dups)


@pytest.mark.time_limit(120)
def test_a_session_moves_from_a_node_that_restarted_since(js, nodes):
    """The registry names the node's earlier run: the node is asked by name."""
    a, b, c = nodes(js, 3, persistence={"enabled": True})
    stream_ready(a, b, c)
    s = fc.Sub(HOST, a.port, "sleeper", version=4, clean=False)
    s.connect(subscribe="sl/#", qos=1)
    s.close()
    registry_settles()
    pub = fc.Pub(HOST, c.port, "pub-sl").connect()
    pub.publish("sl/1", 500, qos=1, timeout=60)
    a.stop()
    a.start()
    stream_ready(a)
    wait_sys(b, "nodes", lambda v: v == "3", timeout=15)
    s2 = fc.Sub(HOST, b.port, "sleeper", version=4, clean=False)
    s2.connect()
    assert s2.session_present is True
    fc.run([s2], lambda: s2.unique(b"pub-sl") >= 500, 30)
    assert s2.unique(b"pub-sl") == 500 and s2.dups == 0


@pytest.mark.time_limit(150)
def test_kill_9_of_the_new_node_after_the_move_loses_nothing(js, nodes):
    """B is killed right after its CONNACK, before it took what A queued
    during the grace, and restarted: A asks it to take the rest ('R')."""
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    n = 5000 if SANITIZED else 20000
    s, s2, pubs, threads = move_under_load(a, b, (a, c), "back", "bk", n, 200, 10)
    b.kill()
    assert "its move is complete" not in b.log()
    time.sleep(0.5)
    b.start()
    stream_ready(b)
    for th in threads:
        th.join(120)
    # Registered on B before the kill: A asks B to take the rest ('R').
    # Or not yet (the kill came first): the registry still names A, and
    # this connect takes the session from A again.
    s3 = fc.Sub(HOST, b.port, "back", version=4, clean=False)
    s3.connect()
    assert s3.session_present is True
    assert_none_lost(pubs, [s, s2], s3)
    wait_log(a, "session moved to another node; dropped here", timeout=60)
    print("the rest taken through 'R': %s" % ("taking what node node0 queued for it after its move" in b.log()))


@pytest.mark.time_limit(120)
def test_a_connect_while_the_new_node_waits_on_the_old_one_goes_on(js, nodes):
    """After the move, B asks A for what A queued after the snapshot; A is
    frozen (SIGSTOP) and does not answer. The client connects to B again
    meanwhile: its CONNACK comes at once (the session is on B), not after
    B gave up on A; once A answers, nothing is lost."""
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    offline_subscriber(a, "frozen", "fz/#")
    pub = fc.Pub(HOST, c.port, "pub-fz").connect()
    n = 3 * RAM_WINDOW
    pub.publish("fz/1", n, qos=1, window=500, timeout=60)
    s2 = fc.Sub(HOST, b.port, "frozen", version=4, clean=False)
    s2.connect()
    assert s2.session_present is True
    a.send_signal(signal.SIGSTOP)
    try:
        # B waits out its grace (2 s), then asks A, which cannot answer.
        wait_log(b, "session moved here from node node0", timeout=10)
        time.sleep(2.5)
        s2.close()
        s3 = fc.Sub(HOST, b.port, "frozen", version=4, clean=False)
        t0 = time.monotonic()
        s3.connect()
        took = time.monotonic() - t0
    finally:
        a.send_signal(signal.SIGCONT)
    print("CONNACK after %.3f s" % took)
    assert s3.session_present is True
    assert took < 1.0
    assert_none_lost([pub], [s2], s3)
    wait_log(b, "its move is complete", timeout=30)


@pytest.mark.time_limit(150)
def test_a_connect_held_past_the_connect_deadline_still_gets_its_session(js, nodes):
    """B's link to NATS is down when the client, whose session is on A,
    connects to B: B holds the CONNECT for the link (up to
    SessionMoves::kSilentMs, 20 s). Held longer than the 10 s a socket has
    to send its CONNECT, it is not closed as if none had come: once NATS
    is back, the session moves and the CONNACK says so, with every message
    queued on A."""
    a, b = nodes(js, 2, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b)
    offline_subscriber(a, "held", "hd/#")
    pub = fc.Pub(HOST, a.port, "pub-hd").connect()
    pub.publish("hd/1", 3 * RAM_WINDOW, qos=1, window=500, timeout=60)
    js.stop()
    wait_log(b, "link to NATS lost", timeout=10)
    s2 = fc.Sub(HOST, b.port, "held", version=4, clean=False)
    back = threading.Timer(10.5, js.start)
    t0 = time.monotonic()
    back.start()
    try:
        s2.connect(connack_timeout=30)
    finally:
        back.join()
    took = time.monotonic() - t0
    print("CONNACK after %.3f s" % took)
    assert took > 10.0
    assert s2.session_present is True
    assert "no CONNECT within" not in b.log()
    assert_none_lost([pub], [], s2)


@pytest.mark.time_limit(120)
def test_a_connect_held_past_max_connect_wait_is_refused_and_nothing_is_lost(js, nodes):
    """limits.max_connect_wait (3 s here, 120 by default): B's link to NATS
    is down when the client, whose session is on A, connects to B. B holds
    the CONNECT for the link; after 3 s it answers Server unavailable
    (0x88), closes the connection, logs it and counts it as refused
    ("other"). Once NATS is back, the client's next CONNECT to B gets its
    session, with every message queued on A."""
    hp = free_port()
    a, = nodes(js, 1, persistence={"enabled": True}, limits=BIG_QUEUES)
    b, = nodes(js, 1, persistence={"enabled": True}, limits=dict(BIG_QUEUES, max_connect_wait=3),
               http={"enabled": True, "address": HOST, "port": hp})
    stream_ready(a, b)
    offline_subscriber(a, "refused", "rf/#")
    pub = fc.Pub(HOST, a.port, "pub-rf").connect()
    pub.publish("rf/1", 3 * RAM_WINDOW, qos=1, window=500, timeout=60)
    js.stop()
    wait_log(b, "link to NATS lost", timeout=10)
    c = b.client(version=5, timeout=15)
    t0 = time.monotonic()
    connack = c.connect("refused", clean=False, props={"session_expiry_interval": 0xFFFFFFFF},
                        expect_reason=0x88)
    took = time.monotonic() - t0
    print("CONNACK 0x%02x after %.3f s" % (connack.reason, took))
    assert connack.session_present is False
    assert 3.0 < took < 6.0, took
    c.expect_closed(timeout=5)
    assert "waited 3 s for this broker (limits.max_connect_wait)" in b.log()
    text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, hp), timeout=5).read().decode()
    assert 'petrel_connections_refused_total{reason="other"} 1' in text
    js.start()
    wait_log(b, "cluster: reconnected to", timeout=20)
    s2 = fc.Sub(HOST, b.port, "refused", version=4, clean=False)
    s2.connect(connack_timeout=30)
    assert s2.session_present is True
    assert_none_lost([pub], [], s2)


@pytest.mark.time_limit(150)
def test_many_sessions_move_at_once(js, nodes):
    """20 durable clients, each with 2,000 messages queued on A (2x the RAM
    window each, 40,000 in all), connect to B at the same moment: every
    session moves, with every message, once."""
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b, c)
    k, per = (8, 1000) if SANITIZED else (20, 2000)
    for i in range(k):
        s = fc.Sub(HOST, a.port, "many-%d" % i, version=4, clean=False)
        s.connect(subscribe="mn/%d/#" % i, qos=1)
        s.close()
    registry_settles()
    pubs = [fc.Pub(HOST, c.port, "pub-mn-%d" % i).connect() for i in range(k)]
    threads = [threading.Thread(target=p.publish, args=("mn/%d/x" % i, per),
                                kwargs=dict(qos=1, window=500, timeout=120), daemon=True)
               for i, p in enumerate(pubs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    subs = [fc.Sub(HOST, b.port, "many-%d" % i, version=4, clean=False) for i in range(k)]
    connecting = [threading.Thread(target=x.connect, daemon=True) for x in subs]
    t0 = time.monotonic()
    for t in connecting:
        t.start()
    for t in connecting:
        t.join(30)
    print("%d sessions with %d queued messages each moved in %.2f s" % (k, per, time.monotonic() - t0))
    assert all(x.session_present is True for x in subs)
    fc.run(subs, lambda: all(x.unique(p.name) >= per for x, p in zip(subs, pubs)), 60)
    for x, p in zip(subs, pubs):
        assert x.unique(p.name) == per and x.dups == 0 and x.order_errors == 0
    assert int(moved_in(b, k)) == k
