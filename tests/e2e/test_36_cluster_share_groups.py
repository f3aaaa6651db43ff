"""Share groups across the cluster: each message to one member, whichever
node it is on.

Real nats-server with JetStream, Petrel nodes with LMDB persistence on
loopback. What is checked (src/cluster/group_stream.h):

* a group with members on three nodes gets every message exactly once
  (QoS 1, unthrottled publishers on two nodes, far more messages than a
  node takes for its members at once), and every member gets some;
* published on a node with no member, the group's copy is made by each
  node with members, and JetStream keeps one: still exactly once;
* a member that leaves without acknowledging what it had: those messages
  go to the members on the other nodes at once (what its node took from
  the stream, and what its node had queued as its own);
* kill -9 of a node whose member held messages: they go to the members
  on the other nodes (after the consumer's ack wait);
* with no member online anywhere the messages wait in the stream, and a
  member coming back on any node gets them all;
* three NATS servers, one killed with kill -9 under load: nothing
  acknowledged is lost;
* QoS 0 through a group, and the counters in $SYS, /metrics and
  /api/v1/stats;
* a group whose last member's session ends drops what its node queued as
  its own, and takes nothing more; one whose last member's session moves
  to another node gives it all to that member;
* a message too large for NATS that a node queued as its own waits there
  for a member on that node, offered to the cluster once; with no member
  left there it is dropped, and said in the log.
"""

import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest

import fastclient as fc
import mqttraw as m
from conftest import HOST, PETREL_BIN, free_port
from natsrun import Nats, NatsCluster, acked_seqs, js, nodes, stream_ready, sys_value, wait_sys  # noqa: F401 (fixture)

pytestmark = pytest.mark.petrel_only

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
GROUP = "$share/workers/jobs/#"
ACK_WAIT = 30  # the groups' consumer's ack wait by default, seconds (cluster.group_ack_wait)
SHORT_ACK_WAIT = 6  # set where a test waits for it to pass


def member(node, cid, version=4, clean=True, receive_max=None, qos=1):
    s = fc.Sub(HOST, node.port, cid, version=version, clean=clean, expiry=3600 if version == 5 and not clean else None,
               receive_max=receive_max)
    s.connect(subscribe=GROUP, qos=qos)
    return s


def groups_ready(*nodes_):
    for n in nodes_:
        wait_sys(n, "groups/count", lambda v: v == "1", timeout=10)


def reaches_the_group(node, subs, timeout=10.0):
    """Until a QoS 1 probe published on `node` reaches one of `subs` (the
    members' nodes' filters are known there)."""
    probe = node.connected("probe-%d" % time.monotonic_ns())
    deadline = time.monotonic() + timeout
    while not sum(s.count for s in subs):
        probe.publish("jobs/probe", b"probe:0:", qos=1)
        fc.run(subs, lambda: sum(s.count for s in subs) >= 1, 0.3)
        assert time.monotonic() < deadline, "the group on the other nodes never got a message"
    probe.close()


def seqs(subs, pub_name):
    out = []
    for s in subs:
        out += [seq for (p, seq) in s.first_seen if p == pub_name]
    return out


def drain(subs, until, timeout):
    fc.run(subs, until, timeout)


@pytest.mark.time_limit(150)
def test_members_on_three_nodes_get_each_message_once(js, nodes):
    a, b, c = nodes(js, 3)
    stream_ready(a, b, c)
    subs = [member(n, "w-%d" % i) for i, n in enumerate((a, b, c))]
    groups_ready(a, b, c)
    n = 3000 if SANITIZED else 20000
    pubs = [fc.Pub(HOST, x.port, "pub-%d" % i, version=4, name="p%d" % i).connect() for i, x in enumerate((a, c))]
    # Both publishers at once, unthrottled (1,000 in flight each), while
    # the members read.
    threads = [threading.Thread(target=p.publish, args=("jobs/x", n), kwargs=dict(qos=1, window=1000, timeout=120),
                                daemon=True) for p in pubs]
    for t in threads:
        t.start()
    total = 2 * n
    drain(subs, lambda: sum(s.count for s in subs) >= total, 90)
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a publisher's messages were not all acknowledged"
    time.sleep(1.0)  # nothing more comes
    drain(subs, lambda: False, 0.5)
    for p in pubs:
        got = seqs(subs, p.name)
        assert sorted(got) == list(range(n)), "%s: %d of %d, %d distinct" % (p.name, len(got), n, len(set(got)))
    assert sum(s.count for s in subs) == total  # no message twice, none twice to one member
    for s in subs:
        assert s.count > 0, "%s got nothing: the group's messages did not reach its node" % s.cid
    for p in pubs:
        p.close()
    for s in subs:
        s.close()


@pytest.mark.time_limit(120)
def test_published_where_no_member_is_once_all_the_same(js, nodes):
    # The publishing node has no member: the message reaches the nodes with
    # members through the stream between nodes, and each of them makes the
    # group's copy under the same id.
    a, b, c = nodes(js, 3)
    stream_ready(a, b, c)
    subs = [member(b, "w-b"), member(c, "w-c")]
    groups_ready(b, c)
    reaches_the_group(a, subs)
    drain(subs, lambda: False, 1.0)
    before = sum(s.count for s in subs)
    n = 2000 if SANITIZED else 10000
    p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
    p.publish("jobs/y", n, qos=1, window=1000, timeout=120)
    drain(subs, lambda: sum(s.count for s in subs) - before >= n, 60)
    time.sleep(1.0)
    drain(subs, lambda: False, 0.5)
    got = seqs(subs, b"pa")
    assert sorted(got) == list(range(n)), "%d of %d, %d distinct" % (len(got), n, len(set(got)))
    assert sum(s.count for s in subs) - before == n
    assert int(sys_value(b, "groups/stored")) > 0 and int(sys_value(c, "groups/stored")) > 0
    p.close()
    for s in subs:
        s.close()


def hold_without_acking(node, cid, want):
    """A member that reads `want` messages and acknowledges none."""
    c = node.client(4)
    c.connect(cid, clean=True)
    c.subscribe([(GROUP, 1)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline:
        try:
            pkt = c.recv(0.5)
        except m.ReadTimeout:
            continue
        if pkt.type == m.PUBLISH:
            got.append(pkt)
    return c, got


def holding_on_b(js, nodes, topic, n, **overrides):
    """Members of the group on three nodes; the one on b takes messages
    from the groups' stream and acknowledges none. Publishes `n` on `topic`
    from a and returns once b holds some: the nodes, the holder, the
    members on a and c, the publisher."""
    a, b, c = nodes(js, 3, **overrides)
    stream_ready(a, b, c)
    holder, _ = hold_without_acking(b, "holder", 0)
    subs = [member(a, "w-a"), member(c, "w-c")]
    groups_ready(a, b, c)
    p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
    p.publish(topic, n, qos=1, window=1000, timeout=60)
    drain(subs, lambda: False, 1.0)
    wait_sys(b, "groups/held", lambda v: int(v) > 0)
    assert len(set(seqs(subs, b"pa"))) < n  # some are with the holder
    return (a, b, c), holder, subs, p


@pytest.mark.time_limit(90)
def test_a_member_that_leaves_unacknowledged_gives_what_it_took_from_the_stream_to_the_others(js, nodes):
    # Members on three nodes when the messages come: the group's messages
    # are in JetStream, and b takes some for its member, which acknowledges
    # none and goes. b gives them back (nak) at once, for a and c.
    n = 3000
    (a, b, c), holder, subs, p = holding_on_b(js, nodes, "jobs/nak", n)
    holder.close()
    # At once: well before the consumer's ack wait would send them again.
    t0 = time.monotonic()
    drain(subs, lambda: len(set(seqs(subs, b"pa"))) >= n, ACK_WAIT / 3)
    took = time.monotonic() - t0
    got = seqs(subs, b"pa")
    assert sorted(set(got)) == list(range(n)), "%d of %d after %.1f s" % (len(set(got)), n, took)
    assert took < ACK_WAIT / 3
    wait_sys(b, "groups/returned", lambda v: int(v) > 0)
    for s in subs:
        s.close()
    p.close()


@pytest.mark.time_limit(90)
def test_a_member_that_leaves_unacknowledged_gives_its_messages_to_the_others(js, nodes):
    # The holder on b is the group's only member when the messages come: b
    # queues them as its own (no other node wants the topic). Members then
    # join on a and c, and the holder goes without a PUBACK: b gives what
    # it holds to JetStream at once, for them.
    a, b, c = nodes(js, 3)
    stream_ready(a, b, c)
    holder, _ = hold_without_acking(b, "holder", 0)
    groups_ready(b)
    n = 500
    p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
    p.publish("jobs/z", n, qos=1, window=100, timeout=60)
    held = []
    deadline = time.monotonic() + 20
    while len(held) < 10 and time.monotonic() < deadline:
        try:
            pkt = holder.recv(0.5)
        except m.ReadTimeout:
            continue
        if pkt.type == m.PUBLISH:
            held.append(pkt)
    assert len(held) >= 10, "the only member got %d messages" % len(held)
    # Members join on the other nodes; the holder goes without a PUBACK.
    subs = [member(a, "w-a"), member(c, "w-c")]
    time.sleep(0.5)
    holder.close()
    # At once: well before the consumer's ack wait would send them again.
    t0 = time.monotonic()
    drain(subs, lambda: len(set(seqs(subs, b"pa"))) >= n, ACK_WAIT / 3)
    took = time.monotonic() - t0
    got = seqs(subs, b"pa")
    assert sorted(set(got)) == list(range(n)), "%d of %d after %.1f s" % (len(set(got)), n, took)
    assert took < ACK_WAIT / 3
    for s in subs:
        s.close()
    p.close()


@pytest.mark.time_limit(120)
def test_kill_9_of_a_node_holding_group_messages_gives_them_to_the_others(js, nodes):
    # Members on three nodes; the one on b takes messages and acknowledges
    # none. b is killed: what it held goes to the others.
    n = 3000
    (a, b, c), holder, subs, p = holding_on_b(js, nodes, "jobs/k", n, cluster={"group_ack_wait": SHORT_ACK_WAIT})
    b.kill()
    t0 = time.monotonic()
    # What b held comes again once the consumer's ack wait is over: the
    # one the nodes set (group_ack_wait), well before the default's.
    drain(subs, lambda: len(set(seqs(subs, b"pa"))) >= n, ACK_WAIT + 30)
    took = time.monotonic() - t0
    got = seqs(subs, b"pa")
    assert sorted(set(got)) == list(range(n)), "%d of %d" % (len(set(got)), n)
    assert took < ACK_WAIT, "what b held came after %.1f s" % took
    p.close()
    for s in subs:
        s.close()


@pytest.mark.time_limit(120)
def test_with_no_member_online_messages_wait_in_the_stream(js, nodes):
    a, b, c = nodes(js, 3)
    stream_ready(a, b, c)
    # Durable members on b and c, offline while the messages are published.
    for node, cid in ((b, "d-b"), (c, "d-c")):
        s = member(node, cid, clean=False)
        s.close()
    time.sleep(0.5)
    # The publishing node needs to know the group's filter: its members
    # are durable, so their nodes keep announcing it.
    n = 5000
    p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
    p.publish("jobs/w", n, qos=1, window=1000, timeout=60)
    time.sleep(1.0)
    back = fc.Sub(HOST, c.port, "d-c", clean=False)
    back.connect()
    drain([back], lambda: len(set(seqs([back], b"pa"))) >= n, 60)
    assert sorted(set(seqs([back], b"pa"))) == list(range(n))
    assert back.count == n
    back.close()
    p.close()


@pytest.mark.time_limit(60)
def test_qos_0_through_a_group_and_the_counters(js, nodes):
    a, b = nodes(js, 2)
    stream_ready(a, b)
    subs = [member(a, "w-a", qos=0), member(b, "w-b", qos=0)]
    groups_ready(a, b)
    n = 2000
    p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
    p.publish("jobs/q0", n, qos=0, timeout=60)
    drain(subs, lambda: sum(s.count for s in subs) >= n, 30)
    time.sleep(0.5)
    drain(subs, lambda: False, 0.5)
    got = seqs(subs, b"pa")
    assert sorted(got) == list(range(n))
    taken = int(sys_value(a, "groups/taken")) + int(sys_value(b, "groups/taken"))
    assert taken >= n
    assert int(sys_value(a, "groups/held")) == 0
    p.close()
    for s in subs:
        s.close()


@pytest.mark.time_limit(180)
def test_kill_9_of_a_nats_server_under_group_load_loses_nothing(tmp_path, nodes):
    # Three NATS servers, the groups' stream and its consumers on all three:
    # one killed while two nodes' members drain a group under load.
    nc = NatsCluster(tmp_path, jetstream=True).start()
    try:
        a, b = nodes(nc, 2, cluster={"replicas": 3})
        stream_ready(a, b)
        subs = [member(a, "w-a"), member(b, "w-b")]
        groups_ready(a, b)
        n = 2000 if SANITIZED else 10000
        p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
        t = threading.Thread(target=p.publish, args=("jobs/r3", n), kwargs=dict(qos=1, window=1000, timeout=150),
                             daemon=True)
        t.start()
        drain(subs, lambda: sum(s.count for s in subs) >= n // 4, 30)
        nc.servers[0].kill()
        # Every acknowledged message reaches a member (at least once: what
        # was in flight when a server died may come twice).
        drain(subs, lambda: not t.is_alive() and len(set(seqs(subs, b"pa"))) >= n, 150)
        t.join(1)
        assert not t.is_alive(), "the publisher's messages were not all acknowledged"
        got = set(seqs(subs, b"pa"))
        assert got == set(range(n)), "%d acknowledged messages lost" % (n - len(got))
        p.close()
        for s in subs:
            s.close()
    finally:
        nc.stop()


def test_group_counters_in_metrics_and_stats(js, nodes):
    pa = free_port()
    a, = nodes(js, 1, http={"enabled": True, "address": HOST, "port": pa})
    b, = nodes(js, 1)
    stream_ready(a, b)
    subs = [member(a, "w-a"), member(b, "w-b")]
    groups_ready(a, b)
    p = fc.Pub(HOST, b.port, "pub", version=4, name="pb").connect()
    p.publish("jobs/m", 100, qos=1, window=100, timeout=30)
    drain(subs, lambda: sum(s.count for s in subs) >= 100, 20)
    text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, pa), timeout=5).read().decode()
    assert 'petrel_cluster_groups{node="node0"} 1' in text
    assert 'petrel_cluster_group_held{node="node0"} ' in text
    taken = [l for l in text.splitlines() if l.startswith("petrel_cluster_group_taken_total ")]
    assert taken and int(float(taken[0].split()[1])) == subs[0].count
    assert "petrel_cluster_group_returned_total 0\n" in text
    stats = json.load(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, pa), timeout=5))
    g = stats["cluster"]["groups"]
    assert g["count"] == 1 and g["taken"] == subs[0].count and g["returned"] == 0
    # petrel inspect --cluster lists the groups' stream and each group.
    r = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", a.config_path], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "share groups: stream petrel_groups:" in r.stdout, r.stdout
    assert "  $share/workers/jobs/#: 0 waiting" in r.stdout, r.stdout
    p.close()
    for s in subs:
        s.close()


@pytest.mark.time_limit(120)
def test_a_group_on_one_node_queues_as_its_own_and_gives_to_a_member_elsewhere(js, nodes):
    # Only b has the group (a durable member, offline): no other node wants
    # the topic, so b queues the messages in its own store, as a node alone
    # would (not through JetStream). A member then joins on c: b gives what
    # it holds to the cluster, and c's member gets every message once.
    a, b, c = nodes(js, 3, persistence={"enabled": True})
    stream_ready(a, b, c)
    d = member(b, "d-b", clean=False)
    d.close()
    groups_ready(b)
    # 100 times what a group holds in RAM (1,000), 25 times what it gives
    # at once (4,096).
    n = 20000 if SANITIZED else 100000
    p = fc.Pub(HOST, b.port, "pub", version=4, name="pb").connect()
    p.publish("jobs/own", n, qos=1, window=1000, timeout=120)
    assert sys_value(b, "groups/stored") == "0"
    # b restarts: its store has them.
    b.stop()
    b.start()
    stream_ready(b)
    w = member(c, "w-c")
    drain([w], lambda: len(set(seqs([w], b"pb"))) >= n, 60)
    assert sorted(seqs([w], b"pb")) == list(range(n))
    wait_sys(b, "groups/returned", lambda v: int(v) == n)
    w.close()
    p.close()


def publish_v5(node, topic, count):
    """`count` QoS 1 messages from an MQTT 5 client: their PUBACK reason codes."""
    q = node.connected("v5-%d" % time.monotonic_ns(), version=5)
    reasons = []
    for _ in range(count):
        mid = q.next_mid()
        q.send(m.publish(topic, b"later", 1, mid=mid, v5=True))
        pkt = q.recv(5)
        assert pkt.type == m.PUBACK and pkt.mid == mid, pkt
        reasons.append(pkt.reason or 0)
    q.disconnect()
    return reasons


def queued_on_b_as_its_own(js, nodes, cid, version, n, too_large=0):
    """Three nodes with LMDB; the group's only member is a durable session
    `cid` on b, offline, and b queues `n` QoS 1 messages published there as
    its own (no other node wants the topic), after `too_large` that MQTT
    takes (up to 4 MiB) and NATS does not (1 MiB, its default
    max_payload), each "big:<i>:" and 2 MiB. Returns the nodes."""
    from test_14_shared import wait_stored_counts
    a, b, c = nodes(js, 3, persistence={"enabled": True}, limits={"max_packet_size": 4 << 20})
    stream_ready(a, b, c)
    d = member(b, cid, version=version, clean=False)
    d.close()
    groups_ready(b)
    time.sleep(0.5)  # the session registry's entry reaches every node
    if too_large:
        q = b.connected("big")
        for i in range(too_large):
            q.publish("jobs/big", b"big:%d:" % i + b"x" * (2 << 20), qos=1)
        q.disconnect()
    p = fc.Pub(HOST, b.port, "pub", version=4, name="pb").connect()
    p.publish("jobs/own", n, qos=1, window=1000, timeout=60)
    p.close()
    want = n + too_large
    assert wait_stored_counts(b, (want, want)) == (want, want)
    return a, b, c


@pytest.mark.time_limit(120)
def test_a_group_whose_last_member_left_drops_what_it_queued_as_its_own(js, nodes):
    # Only b has the group (a durable member, offline): b queues the
    # messages as its own, 5 times what a group holds in RAM. Then the
    # member's session ends and no node has a member: the group ends, as
    # on a node alone. What it queued is dropped (b's store holds nothing),
    # a message published afterwards, on b or on another node, matches
    # nothing (MQTT 5 PUBACK 0x10), and a member that joins later, after
    # a kill -9 of b or not, gets nothing. Before, the group kept queueing
    # (PUBACK 0) and a later member got everything, unless b had been
    # restarted meanwhile: then nothing.
    from test_14_shared import stored_counts, wait_stored_counts
    a, b, c = queued_on_b_as_its_own(js, nodes, "d-b", 5, 5000)
    ends = fc.Sub(HOST, b.port, "d-b", version=5, clean=True)
    ends.connect()
    ends.close()
    wait_sys(b, "groups/count", lambda v: v == "0", timeout=10)
    assert wait_stored_counts(b, (0, 0)) == (0, 0)
    assert publish_v5(b, "jobs/later", 3) == [0x10] * 3
    assert publish_v5(a, "jobs/later", 3) == [0x10] * 3
    b.kill()
    b.start(timeout=10)
    stream_ready(b)
    assert stored_counts(b) == (0, 0)
    late = [member(c, "late-c"), member(b, "late-b")]
    drain(late, lambda: False, 3.0)
    assert [s.count for s in late] == [0, 0]
    for s in late:
        s.close()


@pytest.mark.time_limit(150)
def test_a_member_whose_session_moves_gets_what_its_old_node_queued(js, nodes):
    # Only b has the group (a durable member, offline): b queues the
    # messages as its own, 100 times what a group holds in RAM. The member
    # then connects to c, and its session moves there with its share
    # subscription (c, which had no such group, makes it: a node used to
    # crash there). b's group has no member any more, but its member lives
    # on, on c: b gives what it queued to the cluster, and the member gets
    # every message, once; b's store is left with nothing.
    from test_14_shared import wait_stored_counts
    n = 20000 if SANITIZED else 100000
    a, b, c = queued_on_b_as_its_own(js, nodes, "mover", 4, n)
    moved = fc.Sub(HOST, c.port, "mover", version=4, clean=False)
    moved.connect()
    assert moved.session_present is True
    drain([moved], lambda: len(set(seqs([moved], b"pb"))) >= n, 90)
    assert sorted(seqs([moved], b"pb")) == list(range(n))
    wait_sys(b, "moves/out", lambda v: int(v) >= 1, timeout=15)
    assert wait_stored_counts(b, (0, 0), timeout=10) == (0, 0)
    assert "dropped with its subscription" not in b.log()
    moved.close()


NOT_STORED = "messages for another node not stored in stream"


@pytest.mark.time_limit(180)
def test_a_message_too_large_for_the_cluster_waits_for_its_member_here(js, nodes):
    # b queues, as its own for its offline member, one message too large
    # for NATS and then 99,999 more: 100 times what a group holds in RAM
    # (less one: a group holds at most 100,000). A member comes on c: b
    # offers what it queued to the cluster, NATS refuses the large one,
    # and c's member gets all the others, while the refused one stays at
    # the head of b's queue. It stays on b for the member there, and is
    # not offered again: before, b offered it again at once, each refusal
    # followed by the next offer, for as long as its member was away
    # (about 2,000 refusals logged in 3 s, and the node's loop kept busy).
    from test_14_shared import stored_counts, wait_stored_counts
    n = 20000 if SANITIZED else 99999
    a, b, c = queued_on_b_as_its_own(js, nodes, "d-b", 4, n, too_large=1)
    other = member(c, "w-c")
    drain([other], lambda: len(set(seqs([other], b"pb"))) >= n, 120)
    drain([other], lambda: False, 3.0)
    assert sorted(seqs([other], b"pb")) == list(range(n))
    assert seqs([other], b"big") == []
    assert 1 <= b.log().count(NOT_STORED) <= 2, b.log().count(NOT_STORED)
    assert stored_counts(b) == (1, 1)
    back = fc.Sub(HOST, b.port, "d-b", version=4, clean=False)
    back.connect()
    drain([back], lambda: seqs([back], b"big") == [0], 10)
    assert seqs([back], b"big") == [0]
    assert wait_stored_counts(b, (0, 0), timeout=10) == (0, 0)
    back.close()
    other.close()


@pytest.mark.time_limit(120)
def test_a_message_too_large_for_the_cluster_goes_when_its_member_moves(js, nodes):
    # As above, but the member itself connects to c: its session moves
    # there, and b's group has no member left on b. The 10 reach it on c;
    # the one too large for NATS cannot, and is dropped at once, said in
    # b's log; b's store is left with nothing.
    from test_14_shared import wait_stored_counts
    a, b, c = queued_on_b_as_its_own(js, nodes, "mover", 4, 10, too_large=1)
    moved = fc.Sub(HOST, c.port, "mover", version=4, clean=False)
    moved.connect()
    assert moved.session_present is True
    drain([moved], lambda: len(set(seqs([moved], b"pb"))) >= 10, 30)
    assert wait_stored_counts(b, (0, 0), timeout=10) == (0, 0)
    drain([moved], lambda: False, 1.0)
    assert sorted(seqs([moved], b"pb")) == list(range(10))
    assert seqs([moved], b"big") == []
    assert "a message on jobs/big (2097158 bytes) is larger than the cluster's NATS servers take" in b.log()
    assert b.log().count(NOT_STORED) <= 2, b.log().count(NOT_STORED)
    moved.close()


@pytest.mark.time_limit(120)
def test_kill_9_of_the_publishing_node_loses_nothing_it_acknowledged(js, nodes):
    # Members on b and c; an unthrottled QoS 1 publisher on a, whose node is
    # killed mid-load: every message a acknowledged was in the groups'
    # stream (or the nodes' stream), and reaches a member.
    a, b, c = nodes(js, 3)
    stream_ready(a, b, c)
    subs = [member(b, "w-b"), member(c, "w-c")]
    groups_ready(b, c)
    reaches_the_group(a, subs)
    p = fc.Pub(HOST, a.port, "pub", version=4, name="pa").connect()
    n = 200000

    def run():
        try:
            p.publish("jobs/kill", n, qos=1, window=1000, timeout=60)
        except (OSError, ConnectionError, AssertionError):
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    drain(subs, lambda: False, 1.5)
    a.kill()
    t.join(30)
    acked = acked_seqs(p)
    assert 1000 < len(acked) < n, "%d acknowledged before the kill: nothing to test" % len(acked)
    drain(subs, lambda: acked <= set(seqs(subs, b"pa")), 60)
    missing = acked - set(seqs(subs, b"pa"))
    assert not missing, "%d acknowledged messages lost" % len(missing)
    for s in subs:
        s.close()


@pytest.mark.time_limit(60)
def test_group_ack_wait_is_the_consumers_and_the_last_node_to_open_it_sets_it(tmp_path, nodes):
    # cluster.group_ack_wait is the ack wait of the group's consumer in
    # JetStream (30 s by default). A node that opens the consumer another
    # node made with another wait (its config changed since) sets its own.
    srv = Nats(tmp_path, jetstream=True, monitor=True).start()
    try:
        def ack_waits():
            deadline = time.monotonic() + 15
            while True:
                waits = sorted(c.get("ack_wait", 0) / 1e9 for c in srv.consumer_configs("petrel_groups").values())
                if waits or time.monotonic() > deadline:
                    return waits
                time.sleep(0.1)

        a, = nodes(srv, 1)
        stream_ready(a)
        sa = member(a, "w-a")
        groups_ready(a)
        assert ack_waits() == [ACK_WAIT]
        b, = nodes(srv, 1, cluster={"group_ack_wait": 7})
        stream_ready(b)
        sb = member(b, "w-b")
        groups_ready(b)
        deadline = time.monotonic() + 15
        while ack_waits() != [7] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ack_waits() == [7]
        sa.close()
        sb.close()
    finally:
        srv.stop()


@pytest.mark.time_limit(120)
def test_a_message_held_longer_than_the_ack_wait_stays_with_its_member(js, nodes):
    # The node renews what its members hold (every third of the ack wait):
    # JetStream does not send it to another node after its ack wait.
    a, b = nodes(js, 2, cluster={"group_ack_wait": SHORT_ACK_WAIT})
    stream_ready(a, b)
    holder, _ = hold_without_acking(a, "slow", 0)
    other = member(b, "w-b")
    groups_ready(a, b)
    pub = b.connected("pub-slow")
    deadline = time.monotonic() + 10
    held = []
    while not held:
        pub.publish("jobs/slow", b"pa:%d:" % len(held), qos=1)
        try:
            pkt = holder.recv(0.3)
            if pkt.type == m.PUBLISH:
                held.append(pkt)
        except m.ReadTimeout:
            pass
        assert time.monotonic() < deadline, "the holder never got a message"
    held += [x for x in holder.collect(0.5, m.PUBLISH)]
    drain([other], lambda: False, 1.0)
    before = other.count
    time.sleep(2 * SHORT_ACK_WAIT + 2)
    drain([other], lambda: False, 1.0)
    assert other.count == before, "a message the holder had went to the other member"
    # The holder acknowledges at last: it leaves JetStream, and comes to
    # nobody again.
    for x in held:
        holder.ack(x)
    time.sleep(1.0)
    holder.close()
    drain([other], lambda: False, 2.0)
    assert other.count == before
    other.close()
