"""Retained messages of a cluster: one JetStream bucket for all nodes.

Real nats-servers with JetStream and Petrel nodes on loopback. What is
checked:

* a retained message published on any node is what a subscriber on every
  node gets; a newer one replaces it everywhere, an empty one clears it
  everywhere; `$SYS` stays each node's own;
* nodes publishing to one topic at once end with the same message;
* a node that joins later, or comes back after changes (restarted, or
  killed with kill -9), finds every retained message as the others have
  it, far more of them than its pending limit holds at once, and its own
  store keeps them across a restart;
* a retained message published while a node is cut off from NATS reaches
  the others once the link is back, also far past what the NATS client
  buffers meanwhile; one too large for NATS stays on its node, counted;
* with three NATS servers (the bucket on all three), kill -9 of the one a
  node is linked to: its next retained messages still reach the others;
* without JetStream (or with `jetstream: false`) retained messages stay on
  their node, said once in the log; nothing else changes.
"""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

import mqttraw as m
from conftest import HOST, free_port
from natsrun import Nats, NatsCluster, js, nodes, receive, sys_value, wait_sys  # noqa: F401 (fixture)

pytestmark = pytest.mark.petrel_only


def retained(node, filt, quiet=0.4, timeout=10.0, qos=0):
    """{topic: payload} of the retained messages a new subscriber to `filt`
    on `node` gets."""
    c = node.connected("ret-%d" % time.monotonic_ns())
    try:
        c.subscribe([(filt, qos)])
        out = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p = c.recv(quiet)
            except m.ReadTimeout:
                break
            if p.type == m.PUBLISH:
                c.ack(p)
                # A QoS 1 message published on another node just before
                # this subscription may also come live, through the
                # cluster's stream, when an earlier subscriber to the filter
                # on this node had just gone (README, "Cluster"): not a
                # retained message, so not counted as one. (A retained
                # message that lost its flag would be missing from `out`.)
                if not p.retain:
                    continue
                out[p.topic] = p.payload
        return out
    finally:
        c.close()


def wait_retained(node, filt, expected, timeout=15.0):
    """Until a new subscriber on `node` gets exactly `expected`."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = retained(node, filt, quiet=0.2)
        if got == expected:
            return
        time.sleep(0.1)
    raise AssertionError("%s: retained under %s is %r, not %r" % (node.name, filt, got, expected))


def publish_retained(node, items, qos=1):
    """Publishes {topic: payload} retained on `node`; returns once every
    PUBACK is in."""
    c = node.connected("rpub-%d" % time.monotonic_ns())
    if qos == 2:
        for topic, payload in items.items():
            c.publish(topic, payload, qos=2, retain=True)
        c.close()
        return
    mids = set()
    for topic, payload in items.items():
        mids.add(c.publish(topic, payload, qos=qos, retain=True, wait_ack=False))
        if len(mids) >= 500:
            for p in c.collect(0.05, m.PUBACK):
                mids.discard(p.mid)
    deadline = time.monotonic() + 30
    while qos and mids and time.monotonic() < deadline:
        try:
            p = c.recv(1.0)
        except m.ReadTimeout:
            continue
        if p.type == m.PUBACK:
            mids.discard(p.mid)
    assert not mids or not qos, "%d PUBACKs missing" % len(mids)
    c.close()


def test_retained_messages_are_the_clusters(js, nodes):
    a, b, c = nodes(js, 3)
    for n in (a, b, c):
        wait_sys(n, "retained/bucket", lambda v: v == "1", timeout=15)
    publish_retained(a, {"cfg/x": b"one", "cfg/y": b"why", "$app/z": b"dollar"})
    for n in (a, b, c):
        wait_retained(n, "cfg/#", {"cfg/x": b"one", "cfg/y": b"why"})
        wait_retained(n, "$app/#", {"$app/z": b"dollar"})
    # A newer one from another node replaces it everywhere; an empty one
    # from a third clears it everywhere.
    publish_retained(b, {"cfg/x": b"two"})
    for n in (a, b, c):
        wait_retained(n, "cfg/#", {"cfg/x": b"two", "cfg/y": b"why"})
    publish_retained(c, {"cfg/y": b""})
    for n in (a, b, c):
        wait_retained(n, "cfg/#", {"cfg/x": b"two"})
    # $SYS is each node's own: a's node name is not b's.
    assert sys_value(a, "node") == "node0"
    assert sys_value(b, "node") == "node1"
    # QoS and the retain flag as published; a QoS 2 retained message too.
    publish_retained(b, {"q/two": b"2"}, qos=2)
    s = c.connected("q-sub")
    deadline = time.monotonic() + 15
    while True:
        s.subscribe([("q/two", 2)])
        got = s.collect(0.5, m.PUBLISH)
        if got:
            break
        assert time.monotonic() < deadline, "the QoS 2 retained message never reached node2"
        s.unsubscribe("q/two")
    assert got[0].qos == 2 and got[0].retain and got[0].payload == b"2"
    assert int(sys_value(a, "retained/put")) >= 3
    assert int(sys_value(a, "retained/taken")) >= 2
    assert sys_value(a, "retained/failed") == "0"


def test_nodes_publishing_to_one_topic_at_once_end_the_same(js, nodes):
    a, b, c = nodes(js, 3)
    for n in (a, b, c):
        wait_sys(n, "retained/bucket", lambda v: v == "1", timeout=15)
    pa, pb = a.connected("race-a"), b.connected("race-b")
    for i in range(300):
        pa.publish("race/t", b"a%d" % i, qos=0, retain=True)
        pb.publish("race/t", b"b%d" % i, qos=0, retain=True)
    pa.publish("race/t", b"a299", qos=1, retain=True, wait_ack=True)
    pb.publish("race/t", b"b299", qos=1, retain=True, wait_ack=True)
    # All three end with the same one of the two last, and stay with it.
    final = ({"race/t": b"a299"}, {"race/t": b"b299"})
    deadline = time.monotonic() + 15
    while True:
        views = [retained(n, "race/t") for n in (a, b, c)]
        if views[0] == views[1] == views[2] and views[0] in final:
            break
        assert time.monotonic() < deadline, "the nodes disagree: %r" % views
        time.sleep(0.3)
    time.sleep(1.0)
    assert [retained(n, "race/t") for n in (a, b, c)] == views


def test_a_node_joining_later_finds_them_all_far_past_its_pending_limit(js, nodes):
    """10,000 retained messages (5 MB in the bucket) reach a node allowed
    1 MB of pending entries: it reads the bucket no faster than it stores
    them, loses none, and keeps them across a restart."""
    a, = nodes(js, 1)
    wait_sys(a, "retained/bucket", lambda v: v == "1", timeout=15)
    items = {"fleet/%05d/state" % i: b"v%d-" % i + b"x" * 500 for i in range(10000)}
    publish_retained(a, items)
    wait_sys(a, "retained/put", lambda v: int(v) >= 10000, timeout=20)
    late, = nodes(js, 1, persistence={"enabled": True},
                  limits={"max_queued_messages": 100000, "max_inflight": 1000},
                  cluster={"servers": [js.url], "node": "late", "max_pending_mb": 1})
    wait_sys(late, "retained/taken", lambda v: int(v) == 10000, timeout=20)
    got = retained(late, "fleet/#", quiet=1.0, timeout=20, qos=1)
    assert got == items
    # Its own store has them: restarted with NATS gone, it still serves them.
    late.stop()
    js.stop()
    late.start()
    got = retained(late, "fleet/+/state", quiet=1.0, timeout=20, qos=1)
    assert len(got) == 10000 and got["fleet/01234/state"] == items["fleet/01234/state"]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_node_coming_back_catches_up_on_changes(js, nodes, how):
    a, b = nodes(js, 2, persistence={"enabled": True})
    for n in (a, b):
        wait_sys(n, "retained/bucket", lambda v: v == "1", timeout=15)
    publish_retained(a, {"back/1": b"old", "back/2": b"old", "back/3": b"same"})
    wait_retained(b, "back/#", {"back/1": b"old", "back/2": b"old", "back/3": b"same"})
    if how == "kill":
        b.kill()
    else:
        assert b.stop() == 0
    # While b is away: one changed, one cleared, one new.
    publish_retained(a, {"back/1": b"new", "back/2": b"", "back/4": b"added"})
    b.start()
    wait_retained(b, "back/#", {"back/1": b"new", "back/3": b"same", "back/4": b"added"})
    # b's store followed: restarted with NATS gone, it serves the same.
    assert b.stop() == 0
    js.stop()
    b.start()
    assert retained(b, "back/#") == {"back/1": b"new", "back/3": b"same", "back/4": b"added"}


def test_retained_published_while_cut_off_reaches_the_others_when_linked(tmp_path, nodes):
    n = Nats(tmp_path, jetstream=True)  # not started yet
    a, = nodes(n, 1, persistence={"enabled": True})
    publish_retained(a, {"cut/off": b"kept"})
    assert retained(a, "cut/#") == {"cut/off": b"kept"}
    n.start()
    try:
        b, = nodes(n, 1)
        wait_retained(b, "cut/#", {"cut/off": b"kept"}, timeout=20)
        # Published before a ever joined a cluster, and later too: both go.
        publish_retained(a, {"cut/later": b"too"})
        wait_retained(b, "cut/#", {"cut/off": b"kept", "cut/later": b"too"})
    finally:
        n.stop()


def test_retained_kept_through_a_restart_while_cut_off_reaches_the_bucket(tmp_path, nodes):
    """a publishes two retained messages while NATS is down, and is killed
    (kill -9) and started again before NATS comes: what it meant to put in
    the bucket is now only in its store. Once linked, its catch-up puts
    them in the bucket, only for keys the bucket holds nothing for (the
    bucket is empty here, so both go), and a node that joins gets them."""
    n = Nats(tmp_path, jetstream=True)  # not started yet
    a, = nodes(n, 1, persistence={"enabled": True})
    publish_retained(a, {"kept/1": b"one", "kept/2": b"two"})
    a.kill()
    a.start()
    assert retained(a, "kept/#") == {"kept/1": b"one", "kept/2": b"two"}
    n.start()
    try:
        wait_sys(a, "retained/bucket", lambda v: v == "1", timeout=20)
        b, = nodes(n, 1)
        wait_retained(b, "kept/#", {"kept/1": b"one", "kept/2": b"two"}, timeout=20)
        put = re.search(r"cluster: 2 retained messages of this node put in bucket \S+, where it holds none", a.log())
        assert put, a.log()[-2000:]
        assert "already held a value" not in a.log()
    finally:
        n.stop()


def test_retained_past_the_nats_clients_reconnect_buffer_reach_the_others_when_linked(tmp_path, nodes):
    """With the link to NATS down, the NATS client buffers puts (8 MB) and
    then refuses more (NATS_INSUFFICIENT_BUFFER): those are put once the
    link is back, like the rest, not left on their node."""
    js = Nats(tmp_path, jetstream=True).start()
    try:
        a, b = nodes(js, 2, persistence={"enabled": True})
        for n in (a, b):
            wait_sys(n, "retained/bucket", lambda v: v == "1", timeout=15)
        js.kill()
        time.sleep(0.3)
        # 400 of 32 KB: 12.5 MB, half as much again as the client buffers.
        items = {"big/%03d" % i: (b"%03d" % i) * 10923 for i in range(400)}
        publish_retained(a, items)
        time.sleep(3)  # the buffer full, the rest refused
        js.start()
        wait_retained(b, "big/#", items, timeout=60)
        assert sys_value(a, "retained/failed") == "0"
    finally:
        js.kill()


def test_a_retained_message_too_large_for_nats_stays_on_its_node(js, nodes):
    # nats-server allows 1 MB per message by default.
    a, b = nodes(js, 2, limits={"max_packet_size": 4 << 20})
    for x in (a, b):
        wait_sys(x, "retained/bucket", lambda v: v == "1", timeout=15)
    big = b"B" * (2 << 20)
    publish_retained(a, {"big/one": big, "big/small": b"s"})
    wait_retained(b, "big/#", {"big/small": b"s"})
    assert retained(a, "big/one", timeout=20) == {"big/one": big}
    wait_sys(a, "retained/failed", lambda v: v == "1")
    assert "not put in bucket" in a.log()


@pytest.mark.time_limit(60)
def test_a_nats_server_killed_retained_messages_still_cross(tmp_path, nodes):
    """The bucket kept by all three NATS servers (replicas: 3); kill -9 of
    the one node a is linked to. JetStream elects new leaders for the
    bucket (5 to 15 s on a 2-core machine), then it serves again."""
    nc = NatsCluster(tmp_path, jetstream=True).start()
    try:
        a, b = nodes(nc, 2, cluster={"servers": [s.url for s in nc.servers], "replicas": 3})
        for x in (a, b):
            wait_sys(x, "retained/bucket", lambda v: v == "1", timeout=30)
        publish_retained(a, {"ha/before": b"1"})
        wait_retained(b, "ha/#", {"ha/before": b"1"})
        port = int(re.search(r"node node0 connected to nats://[\d.]+:(\d+)", a.log()).group(1))
        next(s for s in nc.servers if s.port == port).kill()
        deadline = time.monotonic() + 20
        while "reconnected to" not in a.log():
            assert time.monotonic() < deadline, "node0 did not move to another NATS server"
            time.sleep(0.1)
        publish_retained(a, {"ha/after": b"2"})
        wait_retained(b, "ha/#", {"ha/before": b"1", "ha/after": b"2"}, timeout=30)
        publish_retained(b, {"ha/before": b"3"})
        wait_retained(a, "ha/#", {"ha/before": b"3", "ha/after": b"2"}, timeout=30)
    finally:
        nc.stop()


def test_metrics_stats_and_status_page_show_the_buckets(js, nodes):
    http_port = free_port()
    a, = nodes(js, 1)
    b, = nodes(js, 1, http={"enabled": True, "address": HOST, "port": http_port})
    wait_sys(b, "retained/bucket", lambda v: v == "1", timeout=15)
    wait_sys(b, "sessions/bucket", lambda v: v == "1", timeout=15)
    publish_retained(a, {"mr/1": b"1", "mr/2": b"2"})
    publish_retained(b, {"mr/3": b"3"})
    wait_retained(b, "mr/#", {"mr/1": b"1", "mr/2": b"2", "mr/3": b"3"})
    base = "http://%s:%d" % (HOST, http_port)
    deadline = time.monotonic() + 5
    while True:
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        if "petrel_cluster_retained_taken_total 2" in text or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert 'petrel_cluster_retained_bucket_up{node="node1"} 1' in text
    assert 'petrel_cluster_sessions_bucket_up{node="node1"} 1' in text
    assert "petrel_cluster_retained_put_total 1\n" in text
    assert "petrel_cluster_retained_taken_total 2\n" in text
    assert "petrel_cluster_retained_failed_total 0\n" in text
    assert "petrel_cluster_taken_over_total 0\n" in text
    stats = json.loads(urllib.request.urlopen(base + "/api/v1/stats", timeout=5).read())
    assert stats["cluster"]["retained"] == {"bucket_up": True, "put": 1, "taken": 2, "failed": 0}
    assert stats["cluster"]["taken_over"] == 0
    assert stats["cluster"]["sessions_bucket_up"] is True
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium not installed: the status page's cluster line is not rendered")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", base + "/"], capture_output=True, text=True, timeout=25).stdout
    line = re.search(r'<p id="cluster"[^>]*>([^<]*)', dom)
    assert line and line.group(1).endswith("\u00b7 retained bucket open \u00b7 session registry open"), dom[-2000:]


@pytest.mark.parametrize("jetstream", [True, False])
def test_without_jetstream_retained_messages_stay_on_their_node(tmp_path, nats_plain, nodes, jetstream):
    a, b = nodes(nats_plain, 2, cluster={"servers": [nats_plain.url], "jetstream": jetstream})
    publish_retained(a, {"own/x": b"1"})
    # Routing works as ever: a live message crosses.
    s = b.connected("own-sub")
    s.subscribe([("own/#", 1)])
    deadline = time.monotonic() + 10
    pub = a.connected("own-pub")
    while not receive(s, 1, "own/live", timeout=0.3):
        pub.publish("own/live", b"l", qos=1)
        assert time.monotonic() < deadline, "routing does not work"
    assert retained(a, "own/x") == {"own/x": b"1"}
    assert retained(b, "own/x") == {}
    said = "retained messages: " in a.log()
    assert said == jetstream, a.log()
    if jetstream:
        assert sys_value(a, "retained/bucket") == "0"
        assert sys_value(a, "sessions/bucket") == "0"
        # Said once for each bucket, not at every attempt.
        assert a.log().count("cluster: retained messages: ") == 1
        assert a.log().count("cluster: session registry: ") == 1


@pytest.fixture
def nats_plain(tmp_path):
    n = Nats(tmp_path).start()
    yield n
    n.stop()


def test_petrel_inspect_cluster_lists_the_nodes_and_the_bucket(tmp_path, js, nodes):
    from conftest import PETREL_BIN
    a, b = nodes(js, 2)
    for x in (a, b):
        wait_sys(x, "retained/bucket", lambda v: v == "1", timeout=15)
    publish_retained(a, {"in/1": b"1", "in/2": b"2"})
    publish_retained(b, {"in/3": b"3"})
    wait_retained(a, "in/#", {"in/1": b"1", "in/2": b"2", "in/3": b"3"})
    held = [b.connected("held-%d" % i) for i in range(3)]
    cfg = tmp_path / "inspect.yaml"
    cfg.write_text("cluster:\n  servers: [%s]\n" % js.url)
    deadline = time.monotonic() + 10
    while True:  # the held clients are in b's next status, which the query asks for at once
        r = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", str(cfg)], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines() if line.startswith("  node")}
        if rows.get("node1", [None])[0] == "3":
            break
        assert time.monotonic() < deadline, r.stdout
        time.sleep(0.2)
    assert "cluster petrel, through %s" % js.url in r.stdout
    assert "nodes: 2 answered" in r.stdout
    # node1: 3 clients, 3 sessions; each node holds the 3 retained messages.
    assert rows["node1"][0:2] == ["3", "3"] and rows["node0"][-1] == "3" and rows["node1"][-1] == "3", r.stdout
    assert re.search(r"bucket petrel_retained: 3 entries \(cleared topics included\), \d+ bytes, 1 replicas",
                     r.stdout), r.stdout
    for c in held:
        c.close()
    # Errors: no cluster section; no NATS answering.
    cfg.write_text("log_level: info\n")
    r = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 2 and "no cluster: section" in r.stderr
    js.stop()
    cfg.write_text("cluster:\n  servers: [%s]\n" % js.url)
    r = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and "no NATS server of cluster.servers answers" in r.stderr, r.stderr


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "packaging", "cluster")


@pytest.mark.time_limit(60)
def test_the_three_node_example_runs(tmp_path):
    """packaging/cluster/ as shipped (its ports moved to free ones): three
    NATS servers with JetStream as one, three Petrel nodes; a retained
    message and a live one cross, the bucket is on all three servers."""
    import yaml
    from conftest import PETREL_BIN, Broker
    from natsrun import NATS_SERVER
    ports = {p: free_port() for p in (4222, 4223, 4224, 6222, 6223, 6224)}

    def moved(text):
        for old, new in ports.items():
            text = text.replace("127.0.0.1:%d" % old, "127.0.0.1:%d" % new)
        return text
    servers, nodes_ = [], []
    try:
        for i in (1, 2, 3):
            d = tmp_path / ("nats-%d" % i)
            d.mkdir()
            conf = d / "nats.conf"
            conf.write_text(moved(open(os.path.join(EXAMPLE, "nats-%d.conf" % i)).read()))
            servers.append(subprocess.Popen([NATS_SERVER, "--config", str(conf)], cwd=str(d),
                                            stdout=open(str(d / "log"), "wb"), stderr=subprocess.STDOUT))
        for i in (1, 2, 3):
            cfg = yaml.safe_load(moved(open(os.path.join(EXAMPLE, "node-%d.yaml" % i)).read()))
            assert cfg["listeners"][0]["port"] == 1882 + i and cfg["persistence"]["dir"] == "./data"
            cfg["cluster"]["servers"] = [moved(u) for u in cfg["cluster"]["servers"]]
            cfg["mqtt"] = {"sys_interval": 1}
            # Each in a working directory of its own, as its unit's (the
            # store is ./data); on a port of the test's choosing.
            d = tmp_path / ("node-%d" % i)
            d.mkdir()
            b = Broker(d, cfg, name="node-%d" % i)
            nodes_.append(b.start())
        n1, n2, n3 = nodes_
        for b in nodes_:
            wait_sys(b, "retained/bucket", lambda v: v == "1", timeout=40)
        publish_retained(n1, {"example/config": b"v1"})
        wait_retained(n3, "example/#", {"example/config": b"v1"})
        s = n1.connected("example-sub")
        s.subscribe([("live/#", 1)])
        pub = n2.connected("example-pub")
        deadline = time.monotonic() + 10
        while not receive(s, 1, "live/x", timeout=0.3):
            pub.publish("live/x", b"hello", qos=1)
            assert time.monotonic() < deadline, "a live message did not cross"
        r = subprocess.run([PETREL_BIN, "inspect", "--cluster", "--config", n1.config_path], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert "nodes: 3 answered" in r.stdout and "node-3" in r.stdout, r.stdout
        assert "bucket petrel_retained: 1 entries (cleared topics included)" in r.stdout
        assert ", 3 replicas, leader nats-" in r.stdout, r.stdout
    finally:
        for b in nodes_:
            b.kill()
        for p in servers:
            p.kill()
            p.wait(5)


def test_the_example_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    from conftest import PETREL_BIN
    from natsrun import NATS_SERVER
    etc = tmp_path / "etc"
    (etc / "petrel" / "cluster").mkdir(parents=True)
    for name in os.listdir(EXAMPLE):
        if name.endswith((".conf", ".yaml")):
            shutil.copy(os.path.join(EXAMPLE, name), etc / "petrel" / "cluster" / name)
    text = open(os.path.join(EXAMPLE, "petrel-node@.service.in")).read()
    text = text.replace("@CMAKE_INSTALL_FULL_BINDIR@", os.path.dirname(PETREL_BIN)).replace(
        "@CMAKE_INSTALL_FULL_SYSCONFDIR@", str(etc))
    assert not re.search(r"@[A-Z_]+@", text)
    unit = tmp_path / "petrel-node@2.service"
    unit.write_text(text)
    nats_text = open(os.path.join(EXAMPLE, "nats-node@.service")).read().replace(
        "/usr/sbin/nats-server", NATS_SERVER).replace("/etc/petrel", str(etc / "petrel"))
    nats_unit = tmp_path / "nats-node@2.service"
    nats_unit.write_text(nats_text)
    for u in (unit, nats_unit):
        r = subprocess.run([analyze, "verify", str(u)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", r.stdout + r.stderr
    # Each node's configuration is valid as shipped, and names its own files.
    for i in (1, 2, 3):
        cfg = str(etc / "petrel" / "cluster" / ("node-%d.yaml" % i))
        assert subprocess.run([PETREL_BIN, "--check-config", "--config", cfg], capture_output=True,
                              timeout=10).returncode == 0
    assert "--config %s/petrel/cluster/node-%%i.yaml" % etc in text
    r = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m and float(m.group(1)) <= 2.0, r.stdout[-500:]


def test_a_key_deleted_in_the_bucket_by_hand_clears_the_topic_on_every_node(js, nodes):
    """What `nats kv del petrel_retained <key>` sends (a delete marker, a
    header and no body), sent here over a raw NATS connection."""
    import socket
    a, b = nodes(js, 2)
    for x in (a, b):
        wait_sys(x, "retained/bucket", lambda v: v == "1", timeout=15)
    publish_retained(a, {"by/hand": b"x", "by/keep": b"k"})
    wait_retained(b, "by/#", {"by/hand": b"x", "by/keep": b"k"})
    with socket.create_connection(("127.0.0.1", js.port), timeout=5) as s:
        s.recv(4096)  # INFO
        headers = b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"
        s.sendall(b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n' +
                  b"HPUB $KV.petrel_retained.by.hand %d %d\r\n%s\r\nPING\r\n" % (len(headers), len(headers), headers))
        got = b""
        while b"PONG" not in got:
            got += s.recv(4096)
        assert b"-ERR" not in got, got
    for x in (a, b):
        wait_retained(x, "by/#", {"by/keep": b"k"})


def test_mqtt5_properties_and_expiry_of_a_retained_message_hold_on_every_node(js, nodes):
    """A retained message's properties reach the other nodes' subscribers
    as published; its expiry counts from the publish on every node: after
    it, no node sends it, and a node joining later does not take it."""
    a, b = nodes(js, 2)
    for x in (a, b):
        wait_sys(x, "retained/bucket", lambda v: v == "1", timeout=15)
    pub = a.connected("rp-pub", version=5)
    props = {"content_type": "text/plain", "user_property": [("k", "v")], "message_expiry_interval": 4}
    pub.publish("rp/short", b"brief", qos=1, retain=True, props=props)
    pub.publish("rp/long", b"stays", qos=1, retain=True,
                props={"content_type": "text/plain", "message_expiry_interval": 3600})
    published = time.monotonic()
    wait_retained(b, "rp/#", {"rp/short": b"brief", "rp/long": b"stays"})
    s = b.connected("rp-sub", version=5)
    s.subscribe([("rp/short", 1)])
    got = [p for p in s.collect(0.5, m.PUBLISH)]
    assert len(got) == 1 and got[0].retain
    assert got[0].props["content_type"] == "text/plain" and got[0].props["user_property"] == [("k", "v")]
    assert 1 <= got[0].props["message_expiry_interval"] <= 4
    s.close()
    time.sleep(max(0.0, 4.5 - (time.monotonic() - published)))
    for x in (a, b):
        assert retained(x, "rp/#") == {"rp/long": b"stays"}
    late, = nodes(js, 1)
    wait_retained(late, "rp/#", {"rp/long": b"stays"})
    assert int(sys_value(late, "retained/taken")) >= 1


def test_a_client_id_is_connected_to_one_node_at_a_time(js, nodes):
    """A client that connects to node b while its connection to node a is
    open: a closes the old one, MQTT 5 with DISCONNECT 0x8E (session taken
    over), 3.1.1 by closing it. The newer connection stays, also when the
    client goes back and forth quickly; the old connection's will goes out."""
    a, b, c = nodes(js, 3)
    for x in (a, b, c):
        wait_sys(x, "retained/bucket", lambda v: v == "1", timeout=15)
    watcher = c.connected("will-watch")
    watcher.subscribe([("wills/#", 0)])
    old = a.client(version=5)
    old.connect("roamer", clean=True, will={"topic": "wills/roamer", "payload": b"gone", "qos": 0})
    time.sleep(0.3)  # a's registration is in the bucket before b's
    new = b.connected("roamer", version=5)
    pkt = old.expect(m.DISCONNECT, timeout=10)
    assert pkt.reason == 0x8E
    with pytest.raises((m.ConnectionClosed, m.ReadTimeout)):
        old.recv(2.0)
    new.send(m.pingreq())
    new.expect(m.PINGRESP)
    assert "client roamer: session taken over on node node1" in a.log()
    wait_sys(a, "taken_over", lambda v: v == "1")
    assert sys_value(b, "taken_over") == "0"
    # The old connection's will, published on a, reaches c.
    got = [p for p in watcher.collect(2.0, m.PUBLISH) if p.topic == "wills/roamer"]
    assert [p.payload for p in got] == [b"gone"]
    # MQTT 3.1.1: the old connection is closed. Back and forth ten times,
    # each time the newest connection is the one left open.
    conns = []
    for i in range(10):
        node = (a, b, c)[i % 3]
        conns.append(node.connected("hopper"))
        time.sleep(0.15)
    time.sleep(1.5)
    open_ = []
    for x in conns:
        try:
            x.send(m.pingreq())
            x.expect(m.PINGRESP, timeout=1.0)
            open_.append(x)
        except (m.ConnectionClosed, m.ReadTimeout, OSError):
            pass
    assert open_ == [conns[-1]]
