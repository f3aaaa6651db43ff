"""QoS 1 and 2 between nodes: the cluster's JetStream stream.

Real nats-servers with JetStream and Petrel nodes on loopback. What is
checked:

* QoS 1 and 2 messages published on one node reach durable and online
  subscribers on the others, each exactly once in a run without failures,
  in order, far more of them than a node takes from the stream at once
  (its window, 4,096);
* the publisher's PUBACK waits until JetStream has stored the copies for
  the other nodes: with NATS down no PUBACK comes; when it is back the
  PUBACK comes and the message arrives; the same for copies far past what
  the NATS client buffers while its link is down (it refuses the rest);
* a node that is stopped, or killed with kill -9, while messages for its
  durable sessions are published finds every one of them when it is back;
* kill -9 of the publishing node under unthrottled QoS 1 load: every
  message it acknowledged reaches the subscriber on another node;
* kill -9 of the receiving node under the same load, restarted: every
  acknowledged message reaches its durable subscriber;
* three NATS servers (the stream on all three), kill -9 of one under load:
  nothing acknowledged is lost; nor when the stream's leader steps down
  three times under load and its server is then killed;
* the counters in $SYS, /metrics and /api/v1/stats.
"""

import json
import os
import random
import re
import subprocess
import struct
import threading
import time
import urllib.request

import pytest

import fastclient as fc
import mqttraw as m
from conftest import HOST, free_port
from natsrun import (Nats, NatsCluster, acked_seqs, js, nodes, receive, route_ready,  # noqa: F401 (fixtures)
                     stream_ready, sys_value, wait_acked, wait_sys)

pytestmark = pytest.mark.petrel_only

# What a node holds of the stream at once: cluster::Stream::kWindow stream
# messages, and cluster.max_pending_mb of them (1 MiB here); the tests send
# many times that.
WINDOW = 4096
SMALL = {"max_pending_mb": 1}
# Under ASan the nodes are several times slower: fewer messages, still far
# past the window.
SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
BIG_QUEUES = {"max_queued_messages": 1000000}


def durable(node, cid, filt, qos=1, version=4):
    """A durable subscriber (fastclient.Sub) on `node`, subscribed."""
    s = fc.Sub(HOST, node.port, cid, version=version, clean=False, expiry=3600 if version == 5 else None)
    s.connect(subscribe=filt, qos=qos)
    return s


def ready_for(pub_node, sub_node, filt_topic, timeout=10.0):
    """Until a QoS 1 probe published on pub_node reaches a probe subscriber
    on sub_node (interest and the node's name known)."""
    probe = sub_node.connected("probe-%d" % time.monotonic_ns())
    probe.subscribe([(filt_topic, 1)])
    p = pub_node.connected("prober-%d" % time.monotonic_ns())
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            p.publish(filt_topic, b"probe", qos=1)
            got = [x for x in probe.collect(0.3, m.PUBLISH)]
            for x in got:
                probe.ack(x)
            if got:
                return
        raise AssertionError("a probe from another node never arrived")
    finally:
        p.close()
        probe.close()


def parked_on_b(js, nodes, cid, prefix):
    """Nodes a and b on `js`, and a durable subscriber `cid` to
    `<prefix>/#` on b that a knows of, gone offline. Returns (a, b)."""
    a, b = nodes(js, 2, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b)
    sb = durable(b, cid, prefix + "/#")
    ready_for(a, b, prefix + "/probe")
    sb.close()
    return a, b


def on_three_servers(nc, nodes, cid, prefix):
    """Nodes a and b on the routed servers `nc` (the stream kept on all
    three), and a durable subscriber `cid` to `<prefix>/#` on b that a
    knows of, connected. Returns (a, b, subscriber)."""
    a, b = nodes(nc, 2, persistence={"enabled": True}, limits=BIG_QUEUES, cluster={"replicas": 3})
    stream_ready(a, b)
    sb = durable(b, cid, prefix + "/#")
    ready_for(a, b, prefix + "/probe")
    return a, b, sb


def got_seqs(sub, pub_name):
    return {seq for (p, seq) in sub.first_seen if p == pub_name}


def drain_until_all(sub, pub_name, wanted, timeout, before=()):
    """Reads `sub` until it (with the subscribers in `before`, closed) has
    every sequence number in `wanted`; returns those still missing."""
    had = set()
    for b in before:
        had |= got_seqs(b, pub_name)
    missing = set(wanted) - had
    deadline = time.monotonic() + timeout
    while True:
        missing -= got_seqs(sub, pub_name)
        left = deadline - time.monotonic()
        if not missing or left <= 0:
            return missing
        # Reads (and acknowledges) a second at a time, or until as many new
        # messages as are missing have come.
        target = sub.unique(pub_name) + len(missing)
        fc.run([sub], lambda: sub.unique(pub_name) >= target, min(1.0, left))


def publish_in_background(pub, topic, n, qos=1, payload_size=16):
    """Publishes unthrottled (1,000 in flight) on a thread; returns it."""
    err = []

    def run():
        try:
            pub.publish(topic, n, qos=qos, window=1000, timeout=120, payload_size=payload_size)
        except (OSError, ConnectionError, AssertionError) as e:
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.err = err
    t.start()
    return t


@pytest.mark.time_limit(120)
def test_qos1_and_qos2_cross_nodes_exactly_once_far_past_the_window(js, nodes):
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits=BIG_QUEUES, cluster=SMALL)
    stream_ready(a, b, c)
    sb = durable(b, "dur-b", "x/#", qos=1)
    sc = durable(c, "dur-c", "x/#", qos=2, version=5)
    ready_for(a, b, "x/probe-b")
    ready_for(a, c, "x/probe-c")
    pub = fc.Pub(HOST, a.port, "pub-a").connect()
    n1, n2 = (3 if SANITIZED else 5) * WINDOW, 2000
    t0 = time.monotonic()
    pub.publish("x/1", n1, qos=1, window=1000, timeout=120, payload_size=1000)  # 12-20 MB
    pub.publish("x/2", n2, qos=2, window=1000, timeout=120)
    total = n1 + n2
    print("published in %.1f s" % (time.monotonic() - t0))
    fc.run([sb, sc], lambda: sb.unique(b"pub-a") >= total and sc.unique(b"pub-a") >= total, 60)
    print("b has %d, c has %d" % (sb.unique(b"pub-a"), sc.unique(b"pub-a")))
    took = time.monotonic() - t0
    print("%d messages across nodes to two subscribers in %.1f s" % (total, took))
    for s in (sb, sc):
        assert s.unique(b"pub-a") == total
        assert s.dups == 0 and s.order_errors == 0
    assert sc.dups_qos2 == 0
    assert int(wait_sys(a, "stream/stored", lambda v: int(v) >= 2 * total)) >= 2 * total
    # $SYS is published once a second: the value read may be from before
    # the last messages were taken.
    assert int(wait_sys(b, "stream/taken", lambda v: int(v) >= total)) >= total
    wait_sys(a, "stream/waiting", lambda v: v == "0")


@pytest.mark.time_limit(120)
def test_the_puback_waits_until_the_stream_has_the_message(tmp_path, nodes):
    js = Nats(tmp_path, jetstream=True).start()
    try:
        a, b = nodes(js, 2, persistence={"enabled": True}, limits=BIG_QUEUES)
        stream_ready(a, b)
        sb = b.connected("held-sub", clean=False)
        sb.subscribe([("held/#", 1)])
        ready_for(a, b, "held/probe")
        pub = a.connected("held-pub")
        js.kill()  # NATS gone: JetStream cannot store the copy for b
        time.sleep(0.3)
        mid = pub.next_mid()
        pub.send(m.publish("held/1", b"stored first", 1, mid=mid))
        # No PUBACK while the copy for b is not stored (acknowledged means
        # stored, for the other nodes too).
        assert [p for p in pub.collect(3.0) if p.type == m.PUBACK] == []
        js.start()
        pub.wait_for(m.PUBACK, mid, timeout=20)
        got = receive(sb, 1, "held/1", timeout=20)
        assert [p.payload for p in got] == [b"stored first"]
    finally:
        js.kill()


@pytest.mark.time_limit(150)
def test_copies_past_the_nats_clients_reconnect_buffer_still_wait_for_the_stream(tmp_path, nodes):
    """While the link to NATS is down, the NATS client buffers what is
    published (8 MB) and then refuses more (NATS_INSUFFICIENT_BUFFER). Such
    a refusal passes once the link is back: the copies beyond the buffer
    must wait for it like the rest, their PUBACKs too, and none may be
    acknowledged to its publisher without being stored."""
    js = Nats(tmp_path, jetstream=True).start()
    try:
        a, b = parked_on_b(js, nodes, "buffered", "buf")
        js.kill()  # the link from a is down: its NATS client buffers, then refuses
        time.sleep(0.3)
        # Four times the client's buffer, from one publisher with 1,000 in
        # flight (MQTT 3.1.1: no Receive Maximum to shrink its window).
        n, size = 1000, 32 * 1024
        pub = fc.Pub(HOST, a.port, "pub-buf", version=4).connect()
        t = publish_in_background(pub, "buf/t", n, payload_size=size)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and pub.next_seq < n:
            time.sleep(0.1)
        assert pub.next_seq == n, "the publisher could not send its window: %d sent" % pub.next_seq
        time.sleep(4)  # the buffer full and the rest refused, well past it
        assert pub.acked == 0, "%d messages acknowledged while NATS was down" % pub.acked
        js.start()
        t.join(120)
        assert not t.err, t.err
        assert pub.acked == n
        assert sys_value(a, "stream/failed") == "0"  # no copy given up
        sb = durable(b, "buffered", "buf/#")
        assert sb.session_present
        missing = drain_until_all(sb, b"pub-buf", range(n), timeout=60)
        assert not missing, "%d acknowledged messages missing, e.g. %s" % (len(missing), sorted(missing)[:5])
        assert sb.order_errors == 0
    finally:
        js.kill()


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_node_away_gets_what_was_sent_for_it_when_back(tmp_path, js, nodes, how):
    a, b = nodes(js, 2, persistence={"enabled": True}, limits=BIG_QUEUES, cluster=SMALL)
    stream_ready(a, b)
    sb = durable(b, "away", "away/#")
    ready_for(a, b, "away/probe")
    sb.close()
    if how == "kill":
        b.kill()
    else:
        b.stop()
    # a keeps b's filters (its durable session is owed what matches), and
    # the stream keeps the copies, far more than b takes at once.
    n = 3 * WINDOW
    pub = fc.Pub(HOST, a.port, "pub-away").connect()
    pub.publish("away/t", n, qos=1, window=1000, timeout=60, payload_size=1000)  # 12 MB
    wait_sys(a, "stream/waiting", lambda v: v == "0")
    # What waits for b, as an operator sees it.
    from conftest import PETREL_BIN
    cfg = tmp_path / "inspect.yaml"
    cfg.write_text("cluster:\n  servers: [%s]\n" % js.url)
    r = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert "messages between nodes: stream petrel_messages:" in r.stdout, r.stdout
    waiting = re.search(r"for node1: (\d+) waiting", r.stdout)
    assert waiting and int(waiting.group(1)) > 0, r.stdout
    b.start()
    sb = durable(b, "away", "away/#")
    assert sb.session_present
    assert fc.run([sb], lambda: sb.unique(b"pub-away") >= n, 60)
    assert got_seqs(sb, b"pub-away") == set(range(n))
    assert sb.order_errors == 0


@pytest.mark.time_limit(120)
def test_what_waited_for_a_node_goes_to_its_durable_sessions_not_to_newer_clean_ones(tmp_path, nodes):
    js = Nats(tmp_path, jetstream=True).start()
    try:
        a, b = parked_on_b(js, nodes, "owed", "owed")
        b.kill()
        pub = fc.Pub(HOST, a.port, "pub-owed").connect()
        pub.publish("owed/t", 500, qos=1, window=100, timeout=30)
        wait_sys(a, "stream/waiting", lambda v: v == "0")
        # b comes back while NATS is down: a clean subscriber is there
        # before b can take anything from the stream.
        js.kill()
        b.start()
        clean = b.connected("newcomer")
        clean.subscribe([("owed/#", 1)])
        js.start()
        sb = durable(b, "owed", "owed/#")
        missing = drain_until_all(sb, b"pub-owed", range(500), 30)
        assert not missing, "%d messages owed to the durable session lost" % len(missing)
        # Published before it subscribed: the clean subscriber gets none.
        assert [p for p in clean.collect(1.0, m.PUBLISH) if p.topic == "owed/t"] == []
    finally:
        js.kill()


@pytest.mark.time_limit(120)
def test_kill9_of_the_publishing_node_loses_nothing_it_acknowledged(js, nodes):
    a, b = nodes(js, 2, persistence={"enabled": True}, limits=BIG_QUEUES)
    stream_ready(a, b)
    sb = durable(b, "victim-sub", "load/#")
    ready_for(a, b, "load/probe")
    pub = fc.Pub(HOST, a.port, "pub-k", version=4).connect()
    n = 150000 if SANITIZED else 400000
    t = publish_in_background(pub, "load/t", n)
    # Unthrottled QoS 1 for a random moment, then kill -9 of the publisher's node.
    delay = random.uniform(0.3, 0.8)
    print("kill -9 of the publishing node after %.2f s" % delay)
    time.sleep(delay)
    a.kill()
    t.join(30)
    acked = acked_seqs(pub)
    assert len(acked) > WINDOW, "too few acknowledged before the kill (%d) to test anything" % len(acked)
    assert len(acked) < n, "every message acknowledged before the kill: nothing was in flight"
    missing = drain_until_all(sb, b"pub-k", acked, 60)
    assert not missing, "%d acknowledged messages lost" % len(missing)
    print("%d acknowledged before the kill, all delivered" % len(acked))


@pytest.mark.time_limit(120)
def test_kill9_of_the_receiving_node_loses_nothing_acknowledged(js, nodes):
    a, b = nodes(js, 2, persistence={"enabled": True}, limits=BIG_QUEUES, cluster=SMALL)
    stream_ready(a, b)
    sb = durable(b, "dies", "die/#")
    ready_for(a, b, "die/probe")
    pub = fc.Pub(HOST, a.port, "pub-d", version=4).connect()
    n = (10 if SANITIZED else 25) * WINDOW
    t = publish_in_background(pub, "die/t", n, payload_size=200)  # 8-20 MB
    fc.run([sb], lambda: sb.unique(b"pub-d") >= random.randint(WINDOW, 3 * WINDOW), 30)
    b.kill()
    sb.close()
    time.sleep(random.uniform(0.2, 1.0))
    b.start()
    restarted = time.monotonic()
    t.join(120)
    assert not t.err, t.err
    assert len(acked_seqs(pub)) == n
    print("all %d acknowledged %.1f s after the restart" % (n, time.monotonic() - restarted))
    sb2 = durable(b, "dies", "die/#")
    assert sb2.session_present
    missing = drain_until_all(sb2, b"pub-d", range(n), 60, before=[sb])
    assert not missing, "%d acknowledged messages lost" % len(missing)
    print("before the kill %d, after %d (duplicates %d)" % (sb.unique(), sb2.unique(), sb2.dups))


@pytest.mark.time_limit(120)
def test_a_nats_server_killed_under_load_nothing_acknowledged_is_lost(tmp_path, nodes):
    nc = NatsCluster(tmp_path, jetstream=True).start()
    try:
        a, b, sb = on_three_servers(nc, nodes, "r3-sub", "r3")
        pub = fc.Pub(HOST, a.port, "pub-r3", version=4).connect()
        n = 5 * WINDOW
        t = publish_in_background(pub, "r3/t", n)
        time.sleep(0.5)
        nc.servers[0].kill()
        t.join(120)
        assert not t.err, t.err
        missing = drain_until_all(sb, b"pub-r3", range(n), 60)
        assert not missing, "%d acknowledged messages lost" % len(missing)
    finally:
        nc.stop()


@pytest.mark.time_limit(150)
def test_the_streams_leader_changing_under_load_nothing_acknowledged_is_lost(tmp_path, nodes):
    # The stream's leader steps down three times, then its server is
    # killed. What JetStream is sent meanwhile is answered late, or not at
    # all, or refused: each copy is tried again, and its PUBACK waits.
    nc = NatsCluster(tmp_path, jetstream=True, monitor=True).start()
    try:
        a, b, sb = on_three_servers(nc, nodes, "lead-sub", "lead")
        pub = fc.Pub(HOST, a.port, "pub-lead", version=4).connect()
        n = (5 if SANITIZED else 20) * WINDOW
        t = publish_in_background(pub, "lead/t", n)
        for k in (1, 2, 3):
            wait_acked(pub, k * n // 8)
            nc.step_down("petrel_messages")
        wait_acked(pub, n // 2)
        leader = nc.stream_leader("petrel_messages")
        leader.kill()
        t.join(120)
        assert not t.err, t.err
        missing = drain_until_all(sb, b"pub-lead", range(n), 60)
        assert not missing, "%d acknowledged messages lost" % len(missing)
        logs = a.log() + b.log()
        assert "acknowledged to their publishers without it" not in logs
        print("the stream's leader stepped down 3 times and killed under load: %d acknowledged, none lost; refused "
              "for a while: %s" % (n, "refused messages for another node for now" in logs))
    finally:
        nc.stop()


@pytest.mark.time_limit(150)
def test_a_consumer_leader_change_while_a_node_is_away_loses_nothing_acknowledged(tmp_path, nodes):
    # The publishing node's own consumer changes leader: its waiting fetch
    # is answered "Leadership Change" and the node opens the stream again.
    # Meanwhile the copies for the node that is away wait for the stream
    # with their PUBACKs: the core way, which does not store, would reach
    # nobody.
    nc = NatsCluster(tmp_path, jetstream=True, monitor=True).start()
    try:
        a, b, sb = on_three_servers(nc, nodes, "lead-away", "lead-away")
        sb.close()
        b.stop()
        pub = fc.Pub(HOST, a.port, "pub-lead-away", version=4).connect()
        changed = "Leadership Change; opening it again"
        # The consumer steps down every half second until a fetch of node0
        # has seen it; the publisher sends, unthrottled, until 5,000 more
        # were acknowledged after that.
        stop, steps = threading.Event(), []

        def step_down():
            while not stop.is_set() and changed not in a.log():
                nc.step_down_consumer("petrel_messages", a.name)
                steps.append(1)
                stop.wait(0.5)

        stepper = threading.Thread(target=step_down, daemon=True)
        stepper.start()
        seen_at = None
        try:
            for _ in range(300):
                pub.publish("lead-away/t", 1000, qos=1, window=1000, timeout=60)
                if seen_at is None and changed in a.log():
                    seen_at = pub.next_seq
                if seen_at is not None and pub.next_seq >= seen_at + 5000:
                    break
        finally:
            stop.set()
            stepper.join(30)
        n = pub.next_seq
        assert seen_at is not None, "the consumer's leader changed %d times, and no fetch of node0 saw it" % len(steps)
        reopened = a.log().count("Leadership Change; opening it again")
        b.start()
        sb = durable(b, "lead-away", "lead-away/#")
        assert sb.session_present
        missing = drain_until_all(sb, b"pub-lead-away", range(n), 60)
        assert not missing, "%d acknowledged messages lost (the stream opened again %d times)" % (len(missing),
                                                                                                 reopened)
        print("the publishing node's consumer changed leader %d times under load (its stream opened again %d "
              "times) while the receiving node was away: %d acknowledged, none lost" % (len(steps), reopened, n))
    finally:
        nc.stop()


def test_stream_counters_in_metrics_and_stats(js, nodes):
    pa, pb = free_port(), free_port()
    a, = nodes(js, 1, http={"enabled": True, "address": HOST, "port": pa})
    b, = nodes(js, 1, http={"enabled": True, "address": HOST, "port": pb})
    stream_ready(a, b)
    sb = b.connected("cnt-sub")
    sb.subscribe([("cnt/#", 1)])
    ready_for(a, b, "cnt/probe")
    pub = a.connected("cnt-pub")
    for i in range(10):
        pub.publish("cnt/t", b"%d" % i, qos=1)
    assert len(receive(sb, 10, "cnt/t")) == 10
    text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, pa), timeout=5).read().decode()
    stored = [l for l in text.splitlines() if l.startswith("petrel_cluster_stream_stored_total ")]
    assert stored and int(float(stored[0].split()[1])) >= 10  # the probes too
    assert 'petrel_cluster_stream_up{node="node0"} 1' in text
    assert 'petrel_cluster_stream_waiting{node="node0"} 0' in text
    assert "petrel_cluster_stream_failed_total 0\n" in text
    assert "petrel_cluster_stream_unnamed_total 0\n" in text
    assert "petrel_cluster_stream_overflow_total 0\n" in text
    assert "petrel_cluster_stream_retried_total " in text
    stats = json.load(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, pb), timeout=5))
    assert stats["cluster"]["stream"]["taken"] >= 10
    assert stats["cluster"]["stream"]["up"] is True
    assert {"stored", "failed", "waiting", "overflow", "unnamed", "retried"} <= set(stats["cluster"]["stream"])


def test_qos1_request_response_through_the_stream_finds_the_new_reply_subscription(js, nodes):
    """A requester subscribes to a fresh reply topic on one node and at once
    sends a QoS 1 request, which crosses through the stream; the responder
    on another node answers at once, at QoS 1: the reply finds the new
    subscription (its announcement came first on the same connection, and
    the node takes announcements before the stream's messages)."""
    a, b = nodes(js, 2)
    stream_ready(a, b)
    responder = a.connected("responder", version=5)
    responder.subscribe([("req/#", 1)])
    requester = b.connected("requester", version=5)
    ready_for(b, a, "req/probe")
    for i in range(50):
        reply = "resp/%d" % i
        requester.subscribe([(reply, 1)])
        requester.publish("req/%d" % i, b"q", qos=1, props={"response_topic": reply})
        req = receive(responder, 1, "req/%d" % i, timeout=5)
        assert req and req[0].props["response_topic"] == reply
        responder.publish(reply, b"answer-%d" % i, qos=1)
        got = receive(requester, 1, reply, timeout=5)
        assert [p.payload for p in got] == [b"answer-%d" % i]
        requester.unsubscribe(reply)
    assert int(wait_sys(a, "stream/taken", lambda v: int(v) >= 50)) >= 50  # the requests took the stream
