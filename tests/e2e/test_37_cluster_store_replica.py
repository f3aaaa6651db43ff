"""The replica of a node's store in JetStream (src/cluster/store_replica.h).

Real nats-server with JetStream (its monitoring port read for the stream's
size), Petrel nodes with LMDB persistence on loopback. What is checked:

* kill -9 of a node under unthrottled QoS 1 load into an offline durable
  session (100x its RAM window), its data directory then deleted: started
  again on an empty store, the node reads its replica back, and the
  client finds its session and every message the publisher had
  acknowledged;
* the replica stays about the size of the store: far more log than its
  snapshot threshold goes through it, new snapshots purge what came before
  (the stream's bytes, read from NATS, stay bounded);
* a node started on an empty store while NATS is away does not overwrite
  the replica it could not read; started again with NATS there, it reads
  it back;
* kill -9 during the snapshot a restart begins with: the replica read
  back is the previous run's, with everything it had acknowledged;
* three NATS servers keeping the replica (replicas: 3), one killed under
  load: the node keeps acknowledging, and its replica, read back, has
  every acknowledged message; a node started while JetStream has no
  quorum (its metadata leader killed, a second server stopped for 15 s)
  reads its replica once JetStream can serve it again, rather than start
  empty;
* six nodes starting at once on new streams, ten times: the NATS server
  (2.9, which crashes on a read of a stream still being created) stays
  up, and every replica goes live;
* the replica in $SYS, /metrics, /api/v1/stats and `petrel inspect
  --cluster`; none with `store_replica: false`;
* JetStream gone under load: acknowledgements wait for the replica, then
  after its stall time follow the node's disk alone; JetStream back, the
  replica is live again from a new snapshot, and what is acknowledged from
  then on survives the loss of the disk again.
"""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

import fastclient as fc
import mqttraw as m
from conftest import HOST, PETREL_BIN, free_port
from natsrun import (Nats, NatsCluster, acked_seqs, nodes, publish_until_killed,  # noqa: F401 (fixture)
                     sys_value, wait_acked, wait_sys)

pytestmark = pytest.mark.petrel_only

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
BIG_QUEUES = {"max_queued_messages": 1000000}
RAM_WINDOW = 1000  # Sessions::kRamWindow
STREAM = "petrel_replica"


@pytest.fixture
def jsm(tmp_path):
    """One nats-server with JetStream and its monitoring port."""
    n = Nats(tmp_path, jetstream=True, monitor=True).start()
    yield n
    n.stop()


def live(node, timeout=15.0):
    wait_sys(node, "replica/live", lambda v: v == "1", timeout=timeout)


def wipe(node):
    shutil.rmtree(node.config["persistence"]["dir"])


def park(node, cid, topic):
    """A durable (clean session 0) QoS 1 subscriber of topic/#, gone offline."""
    s = fc.Sub(HOST, node.port, cid, version=4, clean=False)
    s.connect(subscribe=topic + "/#", qos=1)
    s.close()


def queued_node(server, nodes, topic, n, window=200, payload_size=16, **overrides):
    """A node (persistence on, its replica live) with a durable session
    parked on topic/# and `n` QoS 1 messages from one publisher queued for
    it; returns the node and the publisher."""
    a, = nodes(server, 1, persistence={"enabled": True}, limits=BIG_QUEUES, **overrides)
    live(a)
    park(a, "keeper", topic)
    pub = fc.Pub(HOST, a.port, "pub-" + topic).connect()
    pub.publish(topic + "/1", n, qos=1, window=window, payload_size=payload_size, timeout=150)
    return a, pub


def assert_all_there(node, cid, pub_name, acked, timeout=90.0):
    """The durable client connects again: session present, every
    acknowledged message of `pub_name` there."""
    s = fc.Sub(HOST, node.port, cid, version=4, clean=False)
    s.connect()
    assert s.session_present is True
    missing = set(acked)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        fc.run([s], lambda: False, 0.5)
        missing -= {seq for (q, seq) in s.first_seen if q == pub_name}
    assert not missing, "%d of %d acknowledged messages lost, e.g. %r" % (
        len(missing), len(acked), sorted(missing)[:5])
    return s


@pytest.mark.time_limit(180)
def test_a_node_whose_disk_is_lost_comes_back_with_every_acknowledged_message(jsm, nodes):
    a, = nodes(jsm, 1, persistence={"enabled": True}, limits=BIG_QUEUES)
    live(a)
    park(a, "keeper", "rp")
    n = (20 if SANITIZED else 100) * RAM_WINDOW
    pub = fc.Pub(HOST, a.port, "pub-a").connect()
    t0 = time.monotonic()
    th = publish_until_killed(pub, "rp/1", n)
    wait_acked(pub, n * 3 // 4, timeout=120)
    print("%d acknowledged in %.1f s" % (pub.acked, time.monotonic() - t0))
    a.kill()
    th.join(10)
    acked = acked_seqs(pub)
    assert len(acked) >= n * 3 // 4
    wipe(a)
    a.start()
    assert "read back from its replica" in a.log(), a.log()
    s = assert_all_there(a, "keeper", b"pub-a", acked)
    # Nothing else came (what was sent and not acknowledged may be there).
    assert {seq for (q, seq) in s.first_seen if q == b"pub-a"} <= set(range(pub.next_seq))


@pytest.mark.time_limit(180)
def test_the_replica_stays_the_size_of_the_store(jsm, nodes):
    a, = nodes(jsm, 1, persistence={"enabled": True}, limits=BIG_QUEUES)
    live(a)
    s = fc.Sub(HOST, a.port, "drainer", version=4, clean=False)
    s.connect(subscribe="big/#", qos=1)
    # Every message is queued for the durable subscriber and acknowledged by
    # it: two records per message go through the log, and the store stays
    # small. 1,000-byte payloads: far past the 16 MB after which the log
    # is folded into a new snapshot.
    n = 20000 if SANITIZED else 60000
    pub = fc.Pub(HOST, a.port, "pub-big").connect()
    done = threading.Thread(target=pub.publish, args=("big/1", n),
                            kwargs=dict(qos=1, window=500, payload_size=1000, timeout=150), daemon=True)
    done.start()
    fc.run([s], lambda: s.unique(b"pub-big") >= n, 150)
    done.join(10)
    assert s.unique(b"pub-big") == n
    snapshots = int(wait_sys(a, "replica/snapshots", lambda v: v is not None and int(v) >= (2 if SANITIZED else 3), timeout=20))
    state = jsm.stream_state(STREAM)
    print("%d MB of payload; %d snapshots; stream %s: %d messages, %d bytes" % (
        n * 1000 >> 20, snapshots, STREAM, state["messages"], state["bytes"]))
    # A snapshot of a near-empty store plus at most the log threshold and
    # one record.
    assert state["bytes"] < 20 * 1024 * 1024
    assert state["bytes"] < n * 1000 // 2


@pytest.mark.time_limit(120)
def test_an_empty_node_without_nats_leaves_its_replica_alone(jsm, nodes):
    a, pub = queued_node(jsm, nodes, "em", 2000)
    acked = acked_seqs(pub)
    a.kill()
    wipe(a)
    jsm.stop()
    a.start(timeout=15)
    assert "without reading a replica of it back" in a.log()
    jsm.start()
    deadline = time.monotonic() + 20
    while "left as it is" not in a.log():
        assert time.monotonic() < deadline, a.log()
        time.sleep(0.1)
    assert sys_value(a, "replica/live") == "0"
    a.kill()
    a.start()
    assert "read back from its replica" in a.log()
    assert_all_there(a, "keeper", b"pub-em", acked)


@pytest.mark.time_limit(150)
def test_jetstream_away_then_back(jsm, nodes):
    a, pub = queued_node(jsm, nodes, "aw", 1000, window=100)
    jsm.kill()
    # Acknowledgements wait for the replica, until it gives up (10 s).
    t0 = time.monotonic()
    pub.publish("aw/1", 1000, qos=1, window=100, timeout=60)
    waited = time.monotonic() - t0
    print("1,000 more acknowledged %.1f s after JetStream went" % waited)
    assert waited > 5
    # ($SYS values are published every second: the next one says it.)
    wait_sys(a, "replica/live", lambda v: v == "0", timeout=5)
    assert int(sys_value(a, "replica/stalls")) == 1
    jsm.start()
    live(a, timeout=30)
    # Live again from a new snapshot: what is acknowledged now survives the
    # loss of the disk, with everything that was queued before.
    pub.publish("aw/1", 1000, qos=1, window=100)
    acked = acked_seqs(pub)
    assert len(acked) == 3000
    a.kill()
    wipe(a)
    a.start()
    assert "read back from its replica" in a.log()
    assert_all_there(a, "keeper", b"pub-aw", acked)


def test_the_replica_in_metrics_stats_and_inspect(jsm, nodes):
    pa = free_port()
    a, = nodes(jsm, 1, persistence={"enabled": True}, http={"enabled": True, "address": HOST, "port": pa})
    b, = nodes(jsm, 1, persistence={"enabled": True}, cluster={"store_replica": False})
    live(a)
    park(a, "keeper", "mt")
    fc.Pub(HOST, a.port, "pub-mt").connect().publish("mt/1", 100, qos=1, window=100)
    records = int(wait_sys(a, "replica/records", lambda v: v is not None and int(v) >= 1))
    text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, pa), timeout=5).read().decode()
    assert 'petrel_cluster_replica_live{node="node0"} 1' in text
    assert "petrel_cluster_replica_snapshots_total 1\n" in text
    assert "petrel_cluster_replica_stalls_total 0\n" in text
    stats = json.load(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, pa), timeout=5))
    r = stats["cluster"]["replica"]
    assert r["live"] is True and r["snapshots"] == 1 and r["records"] >= records and r["bytes"] > 100 * 16
    # The node without a replica has none, and writes none.
    wait_sys(b, "stream/up", lambda v: v == "1")
    with pytest.raises(m.ReadTimeout):
        sys_value(b, "replica/live", timeout=2)
    out = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", a.config_path], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "stores' replicas: stream petrel_replica:" in out.stdout, out.stdout
    assert "  node0: a snapshot in 2 records, " in out.stdout, out.stdout
    assert "node1:" not in out.stdout.split("stores' replicas")[1], out.stdout


@pytest.mark.time_limit(150)
def test_nodes_starting_at_once_on_new_streams_leave_nats_running(jsm, nodes):
    """nats-server 2.9 (Debian 12's) crashes on a "get message" request for
    a stream that another client is still creating. Six nodes with stores
    start at once, ten times, each time as a cluster of a new name (so on
    new streams): the server stays up and every node's replica goes live.
    Before nodes waited for the stream to answer a direct get, each of five
    runs of this test killed the server."""
    for r in range(10):
        ns = nodes(jsm, 6, start=False, persistence={"enabled": True}, cluster={"name": "start%d" % r})
        starting = [threading.Thread(target=n.start, kwargs={"timeout": 30}) for n in ns]
        for t in starting:
            t.start()
        for t in starting:
            t.join()
        deadline = time.monotonic() + 15
        while not all("replica of the store live in stream start%d_replica" % r in n.log() for n in ns):
            assert jsm.proc.poll() is None, "round %d: the NATS server exited" % r
            assert time.monotonic() < deadline, "round %d: not every replica went live" % r
            time.sleep(0.1)
        assert jsm.proc.poll() is None, "round %d: the NATS server exited" % r
        for n in ns:
            n.kill()


@pytest.mark.time_limit(120)
def test_large_messages_cross_in_pieces(jsm, nodes):
    # 900 KB messages: a loop turn's batch, and a snapshot's record of one
    # message, is larger than a stream message (512 KiB here): both go in
    # pieces, and are put together again on the way back.
    a, pub = queued_node(jsm, nodes, "lg", 20, window=10, payload_size=900 * 1024)
    pub.close()
    # A restart writes a new snapshot: the 20 messages are in it.
    a.stop()
    a.start()
    live(a)
    pub = fc.Pub(HOST, a.port, "pub-lg").connect()
    pub.next_seq = 20
    pub.publish("lg/1", 10, qos=1, window=10, payload_size=900 * 1024, timeout=60)
    a.kill()
    wipe(a)
    a.start()
    assert "read back from its replica" in a.log()
    s = assert_all_there(a, "keeper", b"pub-lg", set(range(30)))
    assert s.dups == 0


@pytest.mark.time_limit(120)
def test_more_than_64_mb_waiting_is_not_waited_for(jsm, nodes):
    # JetStream gone, and 100 MB of QoS 1 messages in flight: the replica's
    # queue passes its 64 MB before the 10 s stall; the acknowledgements
    # then follow the node's disk, and the replica is live again once
    # JetStream is back.
    a, = nodes(jsm, 1, persistence={"enabled": True}, limits=BIG_QUEUES)
    live(a)
    park(a, "keeper", "ov")
    jsm.kill()
    pub = fc.Pub(HOST, a.port, "pub-ov").connect()
    pub.publish("ov/1", 1000, qos=1, window=1000, payload_size=100 * 1024, timeout=90)
    assert "more than 64 MB wait to be stored" in a.log()
    wait_sys(a, "replica/live", lambda v: v == "0", timeout=5)
    assert int(sys_value(a, "replica/stalls")) == 1
    jsm.start()
    live(a, timeout=30)
    assert int(sys_value(a, "replica/snapshots")) >= 2


@pytest.mark.time_limit(180)
def test_kill_9_during_the_first_snapshot_of_a_run(jsm, nodes):
    # 40,000 queued messages of 2 KB (80 MB): the snapshot a restart
    # begins with takes a moment; the node is killed within it, so the
    # replica's newest complete snapshot is the previous run's.
    n = 10000 if SANITIZED else 40000
    a, pub = queued_node(jsm, nodes, "fs", n, window=1000, payload_size=2000)
    pub.close()
    acked = acked_seqs(pub)
    a.stop()
    a.start()
    a.kill()
    assert "replica of the store live" not in a.log().split("petrel 0.1.0 started")[-1], \
        "the snapshot was done before the kill"
    wipe(a)
    a.start()
    assert "read back from its replica" in a.log()
    s = assert_all_there(a, "keeper", b"pub-fs", acked, timeout=120)
    assert s.dups == 0


@pytest.mark.time_limit(180)
def test_a_nats_server_killed_under_load_the_replica_holds(tmp_path, nodes):
    nc = NatsCluster(tmp_path, jetstream=True).start()
    try:
        a, = nodes(nc, 1, persistence={"enabled": True}, limits=BIG_QUEUES, cluster={"replicas": 3})
        live(a, timeout=30)
        park(a, "keeper", "r3")
        n = (10 if SANITIZED else 30) * RAM_WINDOW
        pub = fc.Pub(HOST, a.port, "pub-r3").connect()
        th = threading.Thread(target=pub.publish, args=("r3/1", n),
                              kwargs=dict(qos=1, window=1000, payload_size=100, timeout=120), daemon=True)
        th.start()
        wait_acked(pub, n // 4)
        nc.servers[0].kill()
        th.join(120)
        assert pub.acked == n
        assert sys_value(a, "replica/live") == "1"
        a.kill()
        wipe(a)
        # JetStream may still be electing leaders (the killed server's):
        # the node reads its replica again until it can (up to 60 s).
        a.start(timeout=75)
        assert "read back from its replica" in a.log()
        assert_all_there(a, "keeper", b"pub-r3", set(range(n)))
    finally:
        nc.stop()


@pytest.mark.time_limit(180)
def test_started_while_jetstream_has_no_quorum_the_node_waits_and_reads_its_replica(tmp_path, nodes):
    """A node whose disk is lost, started again the moment the NATS server
    leading JetStream's metadata is killed and a second one stops for 15 s
    (SIGSTOP): JetStream cannot serve the replica until the second one is
    back and leaders are elected. The node asks again until it can, rather
    than start on its empty store (it used to give up after about 12 s)."""
    nc = NatsCluster(tmp_path, jetstream=True, monitor=True).start()
    try:
        a, = nodes(nc, 1, persistence={"enabled": True}, limits=BIG_QUEUES, cluster={"replicas": 3})
        live(a, timeout=30)
        park(a, "keeper", "nq")
        n = 2 * RAM_WINDOW
        pub = fc.Pub(HOST, a.port, "pub-nq").connect()
        pub.publish("nq/1", n, qos=1, window=200, payload_size=100, timeout=60)
        pub.close()
        a.kill()
        wipe(a)
        log = nc.start_without_quorum(a, 15.0)
        assert "read back from its replica" in log, log
        assert_all_there(a, "keeper", b"pub-nq", set(range(n)))
    finally:
        nc.stop()
