"""Several Petrel nodes as one broker, over a real NATS server (`cluster:`).

A nats-server (the Debian package) runs on loopback; each test starts
Petrel nodes that name it. What is checked:

* a message published on one node reaches the subscribers of every other
  node, once each, in order, however many of a node's subscriptions match
  it (the node takes it once from NATS: `duplicates` counts the rest);
* topics whose levels NATS gives a meaning ('.', '*', '>', spaces, empty
  levels, UTF-8, '$') arrive exactly as published; `$` topics follow
  [MQTT-4.7.2-1] across nodes too; `$SYS` stays on its node;
* a node receives only what its subscriptions ask for: after the last
  unsubscribe nothing more comes to it; and sends only what another node
  asks for: traffic among its own clients never goes to NATS (`kept`);
* the nodes know each other's filters across restarts: a node killed and
  restarted is wanted again for the subscriptions in its store, a restarted
  node learns the others' at once (hello); a node over 10,000 filters asks
  for every message, and lists its filters again below 5,000;
* share groups and durable sessions on a node get what other nodes publish
  (the offline durable subscriber finds it queued when it comes back);
* MQTT 5 properties and the expiry cross with the message;
* a node starts while NATS is down and joins when it comes up; a NATS
  restart interrupts routing, which resumes by itself; with three NATS
  servers as one, kill -9 of the one a node is linked to: the node moves to
  another and every message published after that arrives;
* a node far behind its pending limit drops and counts, never silently;
  nodes stop cleanly, linked or not; /metrics and /api/v1/stats show the link;
* configuration errors name the key.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

import mqttraw as m
from conftest import DEFAULT_CONFIG, HOST, PETREL_BIN, Broker, free_port, merge

from natsrun import (Nats, NatsCluster, nats, nodes, publishes, read_for, receive,  # noqa: F401 (fixtures)
                     route_ready, sys_value, wait_sys)

pytestmark = pytest.mark.petrel_only


def test_messages_cross_nodes_once_each_in_order(nats, nodes):
    a, b, c = nodes(nats, 3)
    # Three overlapping subscriptions on b, of which NATS sends each message
    # three times: b takes it once.
    sb = b.connected("sub-b")
    sb.subscribe([("x/#", 1), ("x/+/c", 1), ("x/a.b/c", 1)])
    sc = c.connected("sub-c")
    sc.subscribe([("x/a.b/c", 1)])
    sa = a.connected("sub-a")  # on the publishing node: its own routing, not NATS's
    sa.subscribe([("x/#", 1)])
    route_ready(a, sb, sc)
    pub = a.connected("pub")
    n = 500
    for i in range(n):
        pub.publish("x/a.b/c", b"%d" % i, qos=1, wait_ack=False)
    for s in (sa, sb, sc):
        pkts = receive(s, n, "x/")
        assert all(p.topic == "x/a.b/c" for p in pkts)
        got = [int(p.payload) for p in pkts]
        assert got == list(range(n)), "%d of %d, first wrong at %s" % (
            len(got), n, next((i for i, v in enumerate(got) if v != i), None))
        assert s.collect(0.5, m.PUBLISH) == []  # nothing twice
    assert int(wait_sys(b, "received", lambda v: int(v) >= n)) >= n
    assert int(sys_value(b, "duplicates")) >= 2 * n
    assert int(sys_value(a, "sent")) >= n
    assert sys_value(b, "dropped") == "0"
    assert sys_value(b, "state") == "1"
    assert sys_value(b, "node") == "node1"


ODD_TOPICS = [
    "odd/a.b", "odd/*", "odd/>", "odd/ ", "odd/a b/c", "odd//x", "odd/x/", "odd/_", "odd/_2E",
    "odd/\u00e9t\u00e9", "odd/\U0001F426", "odd/$x", "odd/~%\\",
]


def test_topics_with_nats_special_characters_arrive_as_published(nats, nodes):
    a, b = nodes(nats, 2)
    sb = b.connected("odd-b", version=5)
    sb.subscribe([("odd/#", 0), ("+/+/+", 0)])
    route_ready(a, sb)
    pub = a.connected("odd-pub")
    for t in ODD_TOPICS:
        pub.publish(t, t.encode())
    got = publishes(sb)
    assert [p.topic for p in got] == ODD_TOPICS
    assert all(p.payload == p.topic.encode() for p in got)


def test_dollar_topics_and_sys_across_nodes(nats, nodes):
    a, b = nodes(nats, 2)
    wild = b.connected("wild")
    wild.subscribe([("#", 0), ("+/x", 0)])
    dollar = b.connected("dollar")
    dollar.subscribe([("$app/#", 0), ("$SYS/broker/cluster/node", 0)])
    route_ready(a, wild, dollar)
    pub = a.connected("dollar-pub")
    pub.publish("$app/x", b"d")
    got = read_for(dollar, 2.5)
    assert [p.payload for p in got if p.topic == "$app/x"] == [b"d"]
    # $SYS is each node's own: b's subscriber hears b's node name only.
    assert {p.payload for p in got if p.topic == "$SYS/broker/cluster/node"} == {b"node1"}
    # [MQTT-4.7.2-1] '#' and '+/x' do not match a '$' topic on the other node either.
    assert [p for p in publishes(wild, 0.5) if p.topic.startswith("$")] == []


def test_interest_follows_subscriptions(nats, nodes):
    a, b = nodes(nats, 2)
    sb = b.connected("interest")
    sb.subscribe([("i/#", 0)])
    route_ready(a, sb)
    pub = a.connected("interest-pub")
    for i in range(20):
        pub.publish("i/t", b"%d" % i)
    assert len([p for p in publishes(sb) if p.topic == "i/t"]) == 20
    received = int(wait_sys(b, "received", lambda v: int(v) >= 20))
    sb.unsubscribe("i/#")
    sb.unsubscribe("probe/%d/0" % id(sb))
    time.sleep(0.5)  # the UNSUB reaches NATS
    for i in range(200):
        pub.publish("i/t", b"late")
    time.sleep(1.5)
    # No subscription on b: NATS sends it nothing.
    assert int(sys_value(b, "received")) == received


def test_share_group_and_offline_durable_session_get_remote_messages(nats, nodes):
    a, b = nodes(nats, 2, persistence={"enabled": True})
    # A durable QoS 1 subscriber on b goes offline; its subscription stays,
    # and with it b's interest.
    d = b.connected("durable", clean=False)
    d.subscribe([("jobs/#", 1)])
    g1 = b.connected("worker1", version=5)
    g1.subscribe([("$share/g/jobs/#", 1)])
    route_ready(a, d, g1)
    d.close()
    time.sleep(0.3)
    pub = a.connected("jobs-pub")
    for i in range(50):
        pub.publish("jobs/%d" % i, b"%d" % i, qos=1)
    assert [int(p.payload) for p in receive(g1, 50, "jobs/")] == list(range(50))
    d = b.connected("durable", clean=False)
    assert d.connack.session_present
    assert [int(p.payload) for p in receive(d, 50, "jobs/")] == list(range(50))


def test_mqtt5_properties_and_expiry_cross(nats, nodes):
    a, b = nodes(nats, 2)
    sb = b.connected("props-sub", version=5)
    sb.subscribe([("p/#", 1)])
    route_ready(a, sb)
    pub = a.connected("props-pub", version=5)
    props = {"payload_format_indicator": 1, "content_type": "application/json",
             "response_topic": "reply/here", "correlation_data": b"\x00\x01",
             "user_property": [("k", "v"), ("k", "v2")], "message_expiry_interval": 3600}
    pub.publish("p/1", b"{}", qos=1, props=props)
    got = [p for p in publishes(sb) if p.topic == "p/1"]
    assert len(got) == 1
    pr = got[0].props
    assert pr["payload_format_indicator"] == 1
    assert pr["content_type"] == "application/json"
    assert pr["response_topic"] == "reply/here"
    assert pr["correlation_data"] == b"\x00\x01"
    assert pr["user_property"] == [("k", "v"), ("k", "v2")]
    assert 3590 <= pr["message_expiry_interval"] <= 3600


def test_node_starts_without_nats_and_joins_when_it_comes_up(tmp_path, nodes):
    n = Nats(tmp_path)  # not started: nothing listens on its port
    a, b = nodes(n, 2)
    assert "keeps trying" in a.log()
    # Alone, a node works as one.
    s = a.connected("alone")
    s.subscribe([("local/t", 0)])
    p = a.connected("alone-pub")
    p.publish("local/t", b"x")
    assert [x.payload for x in publishes(s, 0.5)] == [b"x"]
    n.start()
    try:
        wait_sys(a, "state", lambda v: v == "1", timeout=15)
        wait_sys(b, "state", lambda v: v == "1", timeout=15)
        sb = b.connected("joined")
        sb.subscribe([("j/#", 0)])
        route_ready(a, sb)
        p.publish("j/1", b"after")
        assert [x.payload for x in publishes(sb) if x.topic == "j/1"] == [b"after"]
        # The subscription made while NATS was down counts too.
        pb = b.connected("joined-pub")
        deadline = time.monotonic() + 10
        got = []
        while not got:
            pb.publish("local/t", b"from b")
            got = [x for x in publishes(s, 0.3) if x.payload == b"from b"]
            assert time.monotonic() < deadline, "a subscription made while NATS was down never got interest"

    finally:
        n.stop()


def test_routing_resumes_after_a_nats_restart(tmp_path, nodes):
    n = Nats(tmp_path).start()
    a, b = nodes(n, 2)
    sb = b.connected("resume")
    sb.subscribe([("r/#", 0)])
    route_ready(a, sb)
    n.stop()
    wait_sys(a, "state", lambda v: v == "0")
    assert "link to NATS lost" in a.log()
    n.start()
    try:
        wait_sys(a, "state", lambda v: v == "1", timeout=15)
        wait_sys(b, "state", lambda v: v == "1", timeout=15)
        # The subscriptions come back with the link: no new SUBSCRIBE needed.
        p = a.connected("resume-pub")
        deadline = time.monotonic() + 10
        got = []
        while not got and time.monotonic() < deadline:
            p.publish("r/1", b"again")
            got = [x for x in publishes(sb, 0.3) if x.topic == "r/1"]
        assert got, "routing did not resume"
        assert "reconnected to" in a.log()
    finally:
        n.stop()


def test_configuration_errors_name_the_key(tmp_path, nats):
    bad = {
        "cluster": {"servers": ["http://%s:%d" % (HOST, nats.port)]},
    }
    b = Broker(tmp_path, merge(DEFAULT_CONFIG, bad), name="bad-url")
    with pytest.raises(RuntimeError) as e:
        b.start()
    assert "cluster.servers[0]" in str(e.value) and "is not a NATS URL" in str(e.value)
    missing_ca = {"cluster": {"servers": [nats.url], "ca_file": str(tmp_path / "nope.pem")}}
    b = Broker(tmp_path, merge(DEFAULT_CONFIG, missing_ca), name="bad-ca")
    with pytest.raises(RuntimeError) as e:
        b.start()
    assert "cluster.ca_file" in str(e.value)


def test_the_documented_cluster_example_is_valid(tmp_path):
    """config.yaml's commented cluster example, uncommented, loads."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(repo, "config.yaml")).read()
    block = text[text.index("# cluster:\n"):].split("\n\n")[0]
    example = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in block.splitlines()) + "\n"
    assert example.startswith("cluster:\n")
    path = tmp_path / "example.yaml"
    path.write_text(example)
    r = subprocess.run([PETREL_BIN, "--check-config", "--config", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr


def test_metrics_and_stats_show_the_link(nats, nodes):
    import json
    import urllib.request
    http_port = free_port()
    a, = nodes(nats, 1)
    b, = nodes(nats, 1, http={"enabled": True, "address": HOST, "port": http_port})
    sb = b.connected("metrics-sub")
    sb.subscribe([("mt/#", 0)])
    route_ready(a, sb)
    pub = a.connected("metrics-pub")
    for i in range(10):
        pub.publish("mt/x", b"m")
    assert len([p for p in publishes(sb) if p.topic == "mt/x"]) == 10
    deadline = time.monotonic() + 5
    while True:
        text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, http_port), timeout=5).read().decode()
        received = [line for line in text.splitlines() if line.startswith("petrel_cluster_received_total ")]
        if received and int(received[0].split()[1]) >= 10 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert 'petrel_cluster_up{node="node1"} 1' in text
    assert int(received[0].split()[1]) >= 10
    for family in ("sent", "duplicates", "dropped", "send_failed", "kept"):
        assert "petrel_cluster_%s_total " % family in text
    stats = json.loads(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, http_port), timeout=5).read())
    assert stats["cluster"]["enabled"] and stats["cluster"]["up"] and stats["cluster"]["node"] == "node1"
    assert stats["cluster"]["received"] >= 10
    # The status page, rendered by a real browser, says it too.
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium not installed: the status page's cluster line is not rendered")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", "http://%s:%d/" % (HOST, http_port)],
                         capture_output=True, text=True, timeout=25).stdout
    line = re.search(r'<p id="cluster"[^>]*>([^<]*)', dom)
    assert line and line.group(1).startswith("node node1 \u00b7 linked \u00b7 sent "), dom[-2000:]


def test_a_node_far_behind_drops_and_counts_never_silently(nats, nodes):
    """max_pending_mb: a node whose loop falls behind what NATS brings it
    keeps at most that much waiting; the rest is dropped and counted, so
    received + dropped is everything sent, and memory stays bounded."""
    a, = nodes(nats, 1)
    b, = nodes(nats, 1, cluster={"servers": [nats.url], "node": "slow", "max_pending_mb": 1})
    subs = [b.connected("big-%d" % i) for i in range(10)]
    for s in subs:
        s.subscribe([("big/#", 0)])
    route_ready(a, *subs)
    time.sleep(1.5)  # the probes are counted, and $SYS says so
    base_received, base_dropped = int(sys_value(b, "received")), int(sys_value(b, "dropped"))
    n, size = 300, 200_000  # 60 MB towards a node allowed 1 MB in waiting
    pub = a.connected("big-pub")
    payload = b"x" * size
    for i in range(n):
        pub.publish("big/t", payload)
    deadline = time.monotonic() + 20
    while True:
        received = int(sys_value(b, "received"))
        dropped = int(sys_value(b, "dropped"))
        received -= base_received
        dropped -= base_dropped
        if received + dropped >= n or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert received + dropped == n, (received, dropped)
    assert dropped > 0  # the limit was reached, far past
    # Every subscriber got exactly what the node took.
    for s in subs:
        assert len([p for p in publishes(s, 0.5) if p.topic == "big/t"]) == received
    rss_kb = int(open("/proc/%d/status" % b.proc.pid).read().split("VmRSS:")[1].split()[0])
    assert rss_kb < 400_000, rss_kb


def test_nodes_stop_cleanly_linked_or_not(tmp_path, nats, nodes):
    a, = nodes(nats, 1)
    s = a.connected("stopping")
    s.subscribe([("s/#", 1)])
    assert a.stop() == 0
    assert "petrel stopped" in a.log()
    # A node that never reached NATS stops as promptly.
    lonely, = nodes(Nats(tmp_path), 1)
    t0 = time.monotonic()
    assert lonely.stop() == 0
    assert time.monotonic() - t0 < 4


def test_a_nats_server_killed_the_cluster_keeps_serving(tmp_path, nodes):
    """Three NATS servers as one; kill -9 the one a node is linked to: the
    node moves to another and messages flow again, with no SUBSCRIBE
    repeated by any client."""
    nc = NatsCluster(tmp_path).start()
    try:
        a, b, c = nodes(nc, 3)
        sb = b.connected("ha-b")
        sb.subscribe([("ha/#", 1)])
        sc = c.connected("ha-c")
        sc.subscribe([("ha/#", 1)])
        route_ready(a, sb, sc)
        # The server node a is linked to.
        port = int(re.search(r"node node0 connected to nats://[\d.]+:(\d+)", a.log()).group(1))
        victim = next(x for x in nc.servers if x.port == port)
        victim.kill()
        deadline = time.monotonic() + 15
        while "reconnected to" not in a.log():
            assert time.monotonic() < deadline, "node0 did not move to another NATS server"
            time.sleep(0.1)
        pub = a.connected("ha-pub")
        # Routing is back once a message gets through; from then on every
        # message arrives, on both nodes, in order.
        for node in (b, c):
            wait_sys(node, "state", lambda v: v == "1", timeout=15)
        deadline = time.monotonic() + 15
        waiting = {sb, sc}
        while waiting:
            pub.publish("ha/probe", b"p", qos=1)
            waiting = {x for x in waiting if not receive(x, 1, "ha/probe", timeout=0.3)}
            assert time.monotonic() < deadline, "routing did not resume"
        for x in (sb, sc):
            receive(x, 1000, "ha/probe", timeout=0.5)  # the other probes
        for i in range(200):
            pub.publish("ha/t", b"%d" % i, qos=1, wait_ack=False)
        for s_ in (sb, sc):
            got = [int(p.payload) for p in receive(s_, 200, "ha/t")]
            assert got == list(range(200))
    finally:
        nc.stop()


def test_request_response_across_nodes_never_misses_the_reply(nats, nodes):
    """A requester subscribes to a fresh reply topic on one node and at once
    sends its request; the responder on another node answers at once: the
    reply always finds the new subscription (a node sends its SUB and its
    later PUB to NATS in order)."""
    a, b = nodes(nats, 2)
    responder = a.connected("responder", version=5)
    responder.subscribe([("req/#", 1)])
    requester = b.connected("requester", version=5)
    route_ready(b, responder)
    for i in range(30):
        reply = "resp/%d" % i
        requester.subscribe([(reply, 1)])
        requester.publish("req/%d" % i, b"q", qos=1, props={"response_topic": reply})
        req = receive(responder, 1, "req/", timeout=5)
        assert req and req[0].props["response_topic"] == reply
        responder.publish(reply, b"answer-%d" % i, qos=1)
        got = receive(requester, 1, reply, timeout=5)
        assert [p.payload for p in got] == [b"answer-%d" % i]
        requester.unsubscribe(reply)


def counter(node, what):
    return int(sys_value(node, what))


def test_traffic_among_one_nodes_clients_stays_on_it(nats, nodes):
    a, b = nodes(nats, 2)
    other = b.connected("other-b")
    other.subscribe([("other/#", 0)])
    local = a.connected("local-a")
    local.subscribe([("loc/#", 1)])
    route_ready(a, other)  # a knows b's filters
    time.sleep(1.2)
    sent0, kept0 = counter(a, "sent"), counter(a, "kept")
    pub = a.connected("local-pub")
    for i in range(200):
        pub.publish("loc/x", b"%d" % i, qos=1)
    assert len(receive(local, 200, "loc/")) == 200
    kept = int(wait_sys(a, "kept", lambda v: int(v) >= kept0 + 200))
    assert kept >= kept0 + 200
    assert counter(a, "sent") == sent0  # none of it went to NATS
    # Once b wants it, it goes.
    sb = b.connected("loc-b")
    sb.subscribe([("loc/#", 1)])
    route_ready(a, sb)
    for i in range(20):
        pub.publish("loc/y", b"%d" % i, qos=1)
    assert [int(p.payload) for p in receive(sb, 20, "loc/y")] == list(range(20))
    assert int(wait_sys(a, "sent", lambda v: int(v) >= sent0 + 20)) >= sent0 + 20


def test_a_restarted_node_is_wanted_again_for_its_stored_subscriptions(nats, nodes):
    """kill -9 of node b, which holds a durable session: when it is back,
    its subscriptions come from its store, not from a client, and node a
    learns them from b's announcement."""
    a, b = nodes(nats, 2, persistence={"enabled": True})
    d = b.connected("durable-r", clean=False)
    d.subscribe([("r/#", 1)])
    route_ready(a, d)
    d.close()
    b.kill()
    b.start()
    d = b.connected("durable-r", clean=False)
    assert d.connack.session_present
    pub = a.connected("r-pub")
    deadline = time.monotonic() + 10
    while not receive(d, 1, "r/probe", timeout=0.3):
        pub.publish("r/probe", b"p", qos=1)
        assert time.monotonic() < deadline, "node a never learned the restarted node's filters"
    receive(d, 1000, "r/probe", timeout=0.5)
    for i in range(50):
        pub.publish("r/t", b"%d" % i, qos=1)
    assert [int(p.payload) for p in receive(d, 50, "r/t")] == list(range(50))


def test_a_restarted_node_learns_the_others_filters_at_once(nats, nodes):
    """Node a restarts: its hello makes b announce its filters again, long
    before the periodic announcement (a minute)."""
    a, b = nodes(nats, 2)
    sb = b.connected("hello-b")
    sb.subscribe([("h/#", 0)])
    route_ready(a, sb)
    a.kill()
    a.start()
    pub = a.connected("hello-pub")
    deadline = time.monotonic() + 10
    got = []
    while not got:
        pub.publish("h/x", b"again")
        got = [p for p in publishes(sb, 0.2) if p.topic == "h/x"]
        assert time.monotonic() < deadline, "the restarted node never learned b's filter"


def test_a_node_with_very_many_filters_asks_for_everything(nats, nodes):
    a, b = nodes(nats, 2)
    many = b.client(timeout=30)
    many.connack = many.connect("many")
    filters = [("many/%d" % i, 0) for i in range(10_001)]  # one over the limit
    ack = many.subscribe(filters)
    assert ack.codes == [0] * len(filters)
    probe = b.connected("many-probe")
    route_ready(a, probe)
    pub = a.connected("many-pub")
    # "Every message": what no filter of b matches goes to NATS too.
    time.sleep(1.2)
    sent0 = counter(a, "sent")
    for _ in range(10):
        pub.publish("unrelated/x", b"u")
    assert int(wait_sys(a, "sent", lambda v: int(v) >= sent0 + 10)) >= sent0 + 10
    pub.publish("many/17", b"m")
    assert [p.payload for p in publishes(many) if p.topic == "many/17"] == [b"m"]
    # Back under half the limit: the filters one by one again.
    many.unsubscribe(["many/%d" % i for i in range(6_000)])
    route_ready(a, probe, tag="again")  # a new filter: announced after the unsubscribes
    time.sleep(1.2)
    kept0 = counter(a, "kept")
    for _ in range(10):
        pub.publish("unrelated/x", b"u")
    assert int(wait_sys(a, "kept", lambda v: int(v) >= kept0 + 10)) >= kept0 + 10
    pub.publish("many/9000", b"still")
    assert [p.payload for p in publishes(many) if p.topic == "many/9000"] == [b"still"]


def test_no_matching_subscribers_means_on_no_node(nats, nodes):
    """MQTT 5 PUBACK/PUBREC 0x10 when no node has a matching subscription;
    success when only another node has one."""
    a, b = nodes(nats, 2)
    sb = b.connected("nm-b")
    sb.subscribe([("nm/wanted", 1)])
    route_ready(a, sb)
    pub = a.connected("nm-pub", version=5)
    for qos, ack in ((1, m.PUBACK), (2, m.PUBREC)):
        mid = pub.publish("nm/wanted", b"x", qos=qos, wait_ack=False)
        assert pub.wait_for(ack, mid).reason == 0x00
        if qos == 2:
            pub.send(m.pubrel(mid))
            pub.wait_for(m.PUBCOMP, mid)
        mid = pub.publish("nm/nobody", b"x", qos=qos, wait_ack=False)
        assert pub.wait_for(ack, mid).reason == 0x10
        if qos == 2:
            pub.send(m.pubrel(mid))
            pub.wait_for(m.PUBCOMP, mid)
    assert len(receive(sb, 2, "nm/wanted")) == 2


def stats_of(port):
    import json
    import urllib.request
    return json.loads(urllib.request.urlopen("http://%s:%d/api/v1/stats" % (HOST, port), timeout=5).read())


def wait_nodes(port, pred, timeout=10.0):
    """The `cluster.nodes` list of the node serving HTTP on `port`, once
    `pred` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        got = stats_of(port)["cluster"]["nodes"]
        if pred(got):
            return got
        assert time.monotonic() < deadline, "cluster.nodes stayed %r" % got
        time.sleep(0.2)


@pytest.mark.time_limit(60)
def test_every_node_lists_the_cluster_and_forgets_a_node_that_leaves(nats, nodes):
    """Each node tells the others its name, clients, sessions and filters
    every 5 s. One that stops says bye: it is off the list and its filters
    are forgotten at once (nothing more is sent towards it). One killed
    with kill -9 is off the list within 15 s."""
    import urllib.request
    http_port = free_port()
    a, = nodes(nats, 1, http={"enabled": True, "address": HOST, "port": http_port})
    b, c = nodes(nats, 2)
    cb1, cb2 = b.connected("nb-1"), b.connected("nb-2")
    cb1.subscribe([("nl/#", 0), ("nl/+/x", 0)])
    cc = c.connected("nc-1", clean=False)
    cc.subscribe([("other/#", 1)])

    def by_name(ns):
        return {n["name"]: n for n in ns}

    ns = wait_nodes(http_port, lambda ns: len(ns) == 3 and by_name(ns)["node1"]["clients"] == 2
                    and by_name(ns)["node2"]["filters"] == 1, timeout=15)
    assert [n["name"] for n in ns] == ["node0", "node1", "node2"] and ns[0]["self"]
    assert by_name(ns)["node1"]["filters"] == 2 and by_name(ns)["node1"]["sessions"] == 2
    assert by_name(ns)["node2"]["clients"] == 1 and by_name(ns)["node2"]["sessions"] == 1
    assert all(n["heard_ms_ago"] < 10000 for n in ns)
    text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, http_port), timeout=5).read().decode()
    assert 'petrel_cluster_nodes{node="node0"} 3' in text
    assert 'petrel_cluster_node_clients{node="node1"} 2' in text
    assert 'petrel_cluster_node_sessions{node="node2"} 1' in text
    assert sys_value(a, "nodes") == "3"
    # The status page lists them, rendered by a real browser.
    chromium = shutil.which("chromium")
    if chromium:
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                              "--dump-dom", "http://%s:%d/" % (HOST, http_port)],
                             capture_output=True, text=True, timeout=25).stdout
        table = re.search(r'<table id="nodes".*?</table>', dom, re.S)
        assert table and "node0 (this node)" in table.group(0) and "node2" in table.group(0), dom[-3000:]
    # b stops: off the list, and a sends it nothing more.
    route_ready(a, cb1)
    pub = a.connected("nl-pub")
    time.sleep(1.2)  # a's $SYS values come every second: the last probe is in
    sent_before = int(sys_value(a, "sent"))
    assert b.stop() == 0
    wait_nodes(http_port, lambda ns: [n["name"] for n in ns] == ["node0", "node2"], timeout=3)
    for i in range(50):
        pub.publish("nl/%d/x" % i, b"gone")
    time.sleep(1.2)  # a's $SYS values come every second
    assert int(sys_value(a, "sent")) == sent_before
    # c is killed: it says nothing, and is off the list within 15 s.
    c.kill()
    wait_nodes(http_port, lambda ns: [n["name"] for n in ns] == ["node0"], timeout=25)
