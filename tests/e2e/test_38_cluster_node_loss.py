"""A node of the cluster is lost: its durable sessions are served by
another node (src/cluster/adoption.h).

Real nats-server with JetStream, three Petrel nodes with LMDB persistence
on loopback (node0 is the one killed; node1, whose name sorts first of
those left, takes its sessions). What is checked:

* kill -9 of node0 under unthrottled QoS 1 load from a publisher on it
  and one on node2, into two durable sessions parked on node0: one client
  reconnects to node1, the other to node2, and each finds its session
  and every message either publisher had acknowledged -- those node0 had
  queued (read back from its replica) and those node2 had sent node0
  through the cluster's stream and node0 never took; a delayed publish
  node0 had acknowledged is delivered when due;
* node0, started again on its old disk, lets go of the sessions that were
  taken (its replica was marked), and a client connecting to it takes its
  session back from the node that has it;
* the same with node0's disk lost as well: nothing comes back on node0;
* node0 stopped gracefully (it says bye): its client connecting to node2
  finds its session within seconds; a share group's member parked on
  node0 finds every message node0's group held;
* three NATS servers routed as one (replicas: 3) and one of them killed
  as well, with node0: node0's client finds every acknowledged message;
* node0 started again on its old disk while JetStream has no quorum
  (the server leading its metadata killed, a second one stopped for
  15 s): it waits until it can read whether its sessions were taken, then
  lets go of them instead of serving them twice;
* a client connected to node0 when it was killed: its will goes out from
  node1, and its session expires there when due; one that connects again
  while its session is being taken: only its newer connection gets it;
* the counters in $SYS, /metrics and /api/v1/stats.
"""

import datetime
import json
import os
import shutil
import threading
import time
import urllib.request

import pytest

import fastclient as fc
import mqttraw as m
from conftest import HOST, free_port
from natsrun import (Nats, NatsCluster, acked_seqs, nodes, publish_until_killed,  # noqa: F401 (fixture)
                     read_for, stream_ready, sys_value, wait_acked, wait_sys)

pytestmark = pytest.mark.petrel_only

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
BIG_QUEUES = {"max_queued_messages": 1000000}
RAM_WINDOW = 1000  # Sessions::kRamWindow


@pytest.fixture
def jsm(tmp_path):
    n = Nats(tmp_path, jetstream=True).start()
    yield n
    n.stop()


def three(jsm, nodes, **overrides):
    made = []
    for _ in range(3):
        node, = nodes(jsm, 1, persistence={"enabled": True}, limits=BIG_QUEUES,
                      http={"enabled": True, "address": HOST, "port": free_port()}, **overrides)
        made.append(node)
    a, b, c = made
    stream_ready(a, b, c)
    wait_sys(a, "replica/live", lambda v: v == "1", timeout=30)
    wait_sys(b, "nodes", lambda v: v == "3", timeout=15)
    return a, b, c


def park(node, cid, topic):
    s = fc.Sub(HOST, node.port, cid, version=4, clean=False)
    s.connect(subscribe=topic, qos=1)
    s.close()


def registry_settles():
    time.sleep(0.5)


def logged_at(node, text):
    """The time (s since the epoch) of the first line of the node's log
    that contains `text`."""
    line = next(x for x in node.log().splitlines() if text in x)
    stamp = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


def reconnect(node, cid, timeout=60.0):
    """As a client does: connects until a CONNACK comes (the node may keep
    the CONNECT waiting while it takes the session)."""
    deadline = time.monotonic() + timeout
    while True:
        s = fc.Sub(HOST, node.port, cid, version=4, clean=False)
        try:
            return s.connect(connack_timeout=15)
        except (AssertionError, OSError):
            if s.sock:
                s.sock.close()
            assert time.monotonic() < deadline, "%s: no CONNACK from %s" % (cid, node.name)


def assert_all_there(s, expected, timeout=90.0):
    """`expected`: {publisher name: acknowledged sequence numbers}."""
    deadline = time.monotonic() + timeout
    missing = {}
    while True:
        missing = {p: seqs - {seq for (q, seq) in s.first_seen if q == p} for p, seqs in expected.items()}
        if not any(missing.values()) or time.monotonic() > deadline:
            break
        fc.run([s], lambda: False, 0.5)
    lost = {p.decode(): runs(v) for p, v in missing.items() if v}
    assert not lost, "acknowledged messages lost (runs of sequence numbers): %r of %r" % (
        lost, {p.decode(): len(v) for p, v in expected.items()})


def runs(seqs, most=8):
    """'<count> in <runs> runs: first-last, ...' of a set of sequence
    numbers (the first `most` runs listed)."""
    out = []
    for seq in sorted(seqs):
        if out and out[-1][1] == seq - 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    text = ", ".join("%d-%d" % (a, b) if a != b else str(a) for a, b in out[:most])
    return "%d in %d runs: %s%s" % (len(seqs), len(out), text, ", ..." if len(out) > most else "")


def wait_log(node, text, timeout=30.0):
    deadline = time.monotonic() + timeout
    while text not in node.log():
        assert time.monotonic() < deadline, "%r not in %s's log" % (text, node.name)
        time.sleep(0.05)


@pytest.mark.time_limit(240)
def test_kill_9_under_load_the_other_nodes_serve_its_sessions(jsm, nodes):
    a, b, c = three(jsm, nodes)
    park(a, "mail", "su/#")
    park(a, "sms", "su/#")
    registry_settles()
    # Each session is owed at least n // 2 + n messages: past 100 times the
    # RAM window (the sanitized build, 10 times slower, at a tenth).
    n = (7 if SANITIZED else 70) * RAM_WINDOW
    # A delayed publish node0 acknowledged, due after the kill.
    d = a.connected("delayer", version=5)
    d.publish("$delayed/12/su/late", b"delayer:0:late", qos=1)  # waits for its PUBACK
    d.close()
    pa = fc.Pub(HOST, a.port, "pub-a").connect()
    pc = fc.Pub(HOST, c.port, "pub-c").connect()
    ta = publish_until_killed(pa, "su/a", n)
    tc = threading.Thread(target=pc.publish, args=("su/c", n), kwargs=dict(qos=1, window=1000, timeout=150,
                                                                             payload_size=100), daemon=True)
    tc.start()
    wait_acked(pa, n // 2, timeout=120)
    a.kill()
    killed_at = time.monotonic()
    ta.join(10)
    acked_a = acked_seqs(pa)
    print("node0 killed: %d of pub-a's acknowledged, %d of pub-c's so far" % (len(acked_a), pc.acked))
    assert len(acked_a) >= n // 2
    # One client reconnects to the node that takes node0's sessions, the
    # other to another node, which takes its session from there.
    s1 = reconnect(b, "mail")
    print("mail: CONNACK on node1 %.1f s after the kill" % (time.monotonic() - killed_at))
    assert s1.session_present is True
    s2 = reconnect(c, "sms")
    assert s2.session_present is True
    tc.join(150)
    assert pc.acked == n
    expected = {b"pub-a": acked_a, b"pub-c": set(range(n))}
    assert_all_there(s1, expected)
    assert_all_there(s2, expected)
    # The delayed publish, when due, to both.
    for s in (s1, s2):
        fc.run([s], lambda: (b"delayer", 0) in s.first_seen, 30)
        assert (b"delayer", 0) in s.first_seen
    print("duplicates: mail %d, sms %d" % (s1.dups, s2.dups))
    assert int(sys_value(b, "adopted/sessions")) >= 2
    assert int(sys_value(b, "adopted/nodes")) == 1
    assert int(sys_value(b, "adopted/failed")) == 0
    # node0 back on its old disk: it lets go of what node1 took.
    a.start()
    wait_log(a, "took this node's sessions while it was down")
    stream_ready(a)
    wait_sys(a, "nodes", lambda v: v == "3", timeout=20)
    # Its client connects to it: the session comes back from node1.
    s1.close()
    registry_settles()
    s3 = reconnect(a, "mail")
    assert s3.session_present is True
    assert int(wait_sys(a, "moves/in", lambda v: v == "1", timeout=10)) == 1


@pytest.mark.time_limit(180)
def test_disk_lost_too_nothing_comes_back_on_the_dead_node(jsm, nodes):
    a, b, c = three(jsm, nodes)
    park(a, "lonely", "dl/#")
    registry_settles()
    n = (2 if SANITIZED else 10) * RAM_WINDOW
    pub = fc.Pub(HOST, c.port, "pub-dl").connect()
    pub.publish("dl/1", n, qos=1, window=500, timeout=120)
    a.kill()
    shutil.rmtree(a.config["persistence"]["dir"])
    s = reconnect(c, "lonely")
    assert s.session_present is True
    assert_all_there(s, {b"pub-dl": set(range(n))})
    # node0 on an empty disk: its replica was taken, nothing is read back.
    a.start()
    wait_log(a, "took this node's sessions while it was down")
    assert "read back from its replica" not in a.log()
    wait_sys(a, "replica/live", lambda v: v == "1", timeout=20)
    st = json.load(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, a.config['http']['port']), timeout=5))
    assert st["clients"]["sessions_offline"] == 0, st["clients"]


@pytest.mark.time_limit(120)
def test_a_node_stopped_its_client_finds_its_session_elsewhere(jsm, nodes):
    a, b, c = three(jsm, nodes)
    park(a, "quiet", "qt/#")
    registry_settles()
    pub = fc.Pub(HOST, b.port, "pub-qt").connect()
    pub.publish("qt/1", 3000, qos=1, window=500, timeout=60)
    a.stop()
    t0 = time.monotonic()
    s = reconnect(c, "quiet")
    took = time.monotonic() - t0
    print("CONNACK %.1f s after the stop" % took)
    assert s.session_present is True
    # Stopped, it said bye: known down at once; reading its replica and
    # what the stream held for it takes a few seconds.
    assert took < 15, took
    assert_all_there(s, {b"pub-qt": set(range(3000))})
    # The counters.
    metrics = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, b.config['http']['port']), timeout=5).read().decode()
    assert "petrel_cluster_adopted_sessions_total" in metrics
    line = [x for x in metrics.splitlines() if x.startswith("petrel_cluster_adopted_sessions_total")][0]
    assert float(line.split()[-1]) >= 1
    st = json.load(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, b.config['http']['port']), timeout=5))
    assert st["cluster"]["adopted"]["sessions"] >= 1
    assert st["cluster"]["adopted"]["nodes"] == 1


@pytest.mark.time_limit(150)
def test_a_node_stopped_its_share_group_member_finds_the_groups_messages_elsewhere(jsm, nodes):
    # The only member of a share group is a durable session parked on
    # node0, which queued the group's messages as its own (no other node
    # wanted the topic). node0 stops; node1 takes its sessions and what its
    # groups held (from its replica); the member connects to node2, its
    # session moves there from node1, and node1 gives the group's messages
    # to the cluster: every one reaches the member.
    a, b, c = three(jsm, nodes)
    park(a, "worker", "$share/w/jobs/#")
    registry_settles()
    n = 3000
    pub = fc.Pub(HOST, a.port, "pub-w").connect()
    pub.publish("jobs/1", n, qos=1, window=500, timeout=60)
    pub.close()
    a.stop()
    s = reconnect(c, "worker")
    assert s.session_present is True
    assert_all_there(s, {b"pub-w": set(range(n))})
    assert int(sys_value(b, "adopted/sessions")) >= 1
    assert "have no group here to go to" not in b.log()


@pytest.mark.time_limit(150)
def test_a_client_connecting_again_while_its_session_is_taken_replaces_its_older_connect(jsm, nodes):
    """node0 is killed; its client connects to node1 and, while node1 reads
    node0's replica, gives up and connects again. The older connection
    closes without a CONNACK (a client never has two), the newer one gets
    the session with every message."""
    a, b, c = three(jsm, nodes)
    park(a, "twice", "tw/#")
    registry_settles()
    pub = fc.Pub(HOST, c.port, "pub-tw").connect()
    pub.publish("tw/1", 5 * RAM_WINDOW, qos=1, window=500, timeout=60)
    a.kill()
    first = b.client(timeout=60)
    first.send(m.connect("twice", 4, clean=False, keepalive=600))
    wait_log(b, "node node0 is down: this node takes its durable sessions", timeout=30)
    second = fc.Sub(HOST, b.port, "twice", version=4, clean=False)
    connecting = threading.Thread(target=second.connect, kwargs=dict(connack_timeout=60), daemon=True)
    connecting.start()
    # Closed as the newer CONNECT comes, not when its own deadline runs out.
    assert first.expect_closed(timeout=2) == [], "the older connection got packets"
    connecting.join(60)
    assert second.session_present is True
    assert_all_there(second, {b"pub-tw": set(range(5 * RAM_WINDOW))})


@pytest.mark.time_limit(150)
def test_a_killed_nodes_client_has_its_will_sent_and_its_session_expire(jsm, nodes):
    """An MQTT 5 client with a will and a session expiry of 4 s is
    connected to node0 when node0 is killed. Once node1 takes node0's
    sessions (another of node0's clients connecting to it), the will goes
    out from node1 -- the connection ended without DISCONNECT, as when a
    broker restarts on its store -- and the session ends there 4 s later:
    a taken session's deadlines run, as a loaded one's do."""
    a, b, c = three(jsm, nodes)
    park(a, "trigger", "tg/#")
    watcher = b.connected("will-watcher")
    watcher.subscribe([("wl/#", 1)])
    willing = a.connected("willing", version=5, clean=False, keepalive=600, props={"session_expiry_interval": 4},
                          will={"topic": "wl/willing", "payload": b"gone", "qos": 1})
    registry_settles()
    a.kill()
    willing.close()
    s = reconnect(b, "trigger")
    assert s.session_present is True
    taken = time.monotonic()
    wills = []
    while not wills and time.monotonic() - taken < 10:
        wills = [x for x in read_for(watcher, 0.5) if x.topic == "wl/willing"]
    assert wills and wills[0].payload == b"gone", "node0's client's will never came"
    deadline = time.monotonic() + 15
    while "session willing expired" not in b.log():
        assert time.monotonic() < deadline, "the taken session never expired"
        time.sleep(0.1)
    # Its 4 s, from when it was taken (before the CONNACK above).
    assert logged_at(b, "session willing expired") - logged_at(b, "durable sessions are served here") >= 3.9
    again = b.client(version=5)
    connack = again.connect("willing", clean=False, props={"session_expiry_interval": 60})
    assert connack.session_present is False


@pytest.mark.time_limit(240)
def test_three_nats_servers_a_node_and_a_server_killed(tmp_path, nodes):
    nc = NatsCluster(tmp_path, jetstream=True).start()
    try:
        a, b, c = three(nc, nodes, cluster={"replicas": 3})
        park(a, "far", "fr/#")
        registry_settles()
        n = (3 if SANITIZED else 20) * RAM_WINDOW
        pa = fc.Pub(HOST, a.port, "pub-fa").connect()
        pc = fc.Pub(HOST, c.port, "pub-fc").connect()
        ta = publish_until_killed(pa, "fr/a", n)
        tc = threading.Thread(target=pc.publish, args=("fr/c", n), kwargs=dict(qos=1, window=1000, timeout=150),
                              daemon=True)
        tc.start()
        wait_acked(pa, n // 2, timeout=120)
        a.kill()
        nc.servers[2].kill()
        ta.join(10)
        acked_a = acked_seqs(pa)
        s = reconnect(b, "far", timeout=90)
        assert s.session_present is True
        tc.join(150)
        assert pc.acked == n
        assert_all_there(s, {b"pub-fa": acked_a, b"pub-fc": set(range(n))}, timeout=120)
        print("node0 and a NATS server killed: %d + %d acknowledged messages all there, %d twice" % (
            len(acked_a), n, s.dups))
    finally:
        nc.stop()


@pytest.mark.time_limit(240)
def test_started_while_jetstream_has_no_quorum_the_node_waits_to_learn_its_sessions_were_taken(tmp_path, nodes):
    """node0 stops, node1 takes its durable session. node0 starts again on
    its old disk the moment the NATS server leading JetStream's metadata is
    killed and a second one stops for 15 s (SIGSTOP): it asks again until
    JetStream answers, finds that its sessions were taken and lets go of
    them (it used to give up after 3 s and serve them as well)."""
    nc = NatsCluster(tmp_path, jetstream=True, monitor=True).start()
    try:
        a, b, c = three(nc, nodes, cluster={"replicas": 3})
        park(a, "taken", "tk/#")
        registry_settles()
        n = 2 * RAM_WINDOW
        pub = fc.Pub(HOST, c.port, "pub-tk").connect()
        pub.publish("tk/1", n, qos=1, window=500, payload_size=100, timeout=60)
        pub.close()
        a.stop()
        s = reconnect(b, "taken")
        assert s.session_present is True
        assert_all_there(s, {b"pub-tk": set(range(n))})
        assert int(sys_value(b, "adopted/sessions")) == 1
        # The mark is read through any server holding the stream, and
        # purged through the stream's leader: either may wait.
        log = nc.start_without_quorum(a, 15.0)
        assert "took this node's sessions while it was down" in log, log
        st = json.load(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, a.config['http']['port']),
                                              timeout=5))
        assert st["clients"]["sessions_offline"] == 0, st["clients"]
    finally:
        nc.stop()
