"""$SYS/broker/... metrics, published every mqtt.sys_interval seconds and
retained in memory; share groups get their own subtree."""

import time

import pytest

import mqttraw as m

pytestmark = pytest.mark.petrel_only


def collect(c, want, timeout=5.0):
    """Reads PUBLISHes until every topic in `want` has been seen; returns the
    latest payload per topic."""
    seen = {}
    deadline = time.monotonic() + timeout
    while not want <= seen.keys():
        left = deadline - time.monotonic()
        assert left > 0, "missing %s" % sorted(want - seen.keys())
        p = c.recv_publish(timeout=left)
        seen[p.topic] = p.payload.decode()
    return seen


def test_sys_metrics_and_share_group_subtree(make_broker):
    b = make_broker(mqtt={"sys_interval": 1})
    worker = b.connected("sys-worker", version=5)
    worker.subscribe([("$share/jobs/work/#", 1)])
    pub = b.connected("sys-pub")
    for i in range(3):
        pub.publish("work/a", b"job %d" % i, qos=1)
    for _ in range(3):
        worker.recv_publish()
    watcher = b.connected("sys-watch")
    watcher.subscribe([("$SYS/broker/#", 0)])
    group = "$SYS/broker/shared/jobs/work/%23/"
    got = collect(watcher, {"$SYS/broker/version", "$SYS/broker/clients/connected",
                            "$SYS/broker/messages/received", group + "members",
                            group + "delivered", group + "queued"})
    assert got["$SYS/broker/version"].startswith("petrel ")
    assert int(got["$SYS/broker/clients/connected"]) >= 3
    assert int(got["$SYS/broker/messages/received"]) >= 3
    assert got[group + "members"] == "1"
    assert got[group + "delivered"] == "3"
    assert got[group + "queued"] == "0"


def test_sys_topics_not_matched_by_a_leading_wildcard(make_broker):
    # [MQTT-4.7.2-1]: "#" does not match $SYS topics.
    b = make_broker(mqtt={"sys_interval": 1})
    c = b.connected("sys-hash")
    c.subscribe([("#", 0)])
    c.expect_nothing(1.5)
