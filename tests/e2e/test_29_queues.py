"""Declared queues (`queues:` in the configuration): point-to-point without
a time dependency between producers and consumers.

What is checked here, end to end:

* a declared queue collects every QoS 1/2 message on its filters from
  start-up on, before any consumer ever subscribed, and keeps it across a
  SIGKILL of the broker; consumers attach through `$share/<name>/<filter>`
  or `$queue/<name>` and process each message exactly once;
* `retention` (also across a restart) and `message_ttl` (messages without
  an expiry only): older entries are never handed out;
* the `qos0` option (queue, the default, or drop), one copy for a message
  matching two filters of a queue, `$queue/<unknown>` refused;
* a queue removed from the configuration keeps its stored messages;
* SIGHUP applies `queues:`: a new queue collects at once, a removed one
  keeps what it holds as an ordinary share group, changed parameters and
  filters apply from then on, a broken file changes nothing;
* `petrel inspect` and `$SYS/broker/queues/<name>/...` show the queue.
"""

import os
import re
import signal
import subprocess
import time

import pytest

import fastclient as fc
import mqttraw as m
from conftest import PETREL_BIN

pytestmark = pytest.mark.petrel_only


def queue(name, *filters, **opts):
    q = {"name": name, "filters": list(filters)}
    q.update(opts)
    return q


def persistent(make_broker, queues, **overrides):
    return make_broker(persistence={"enabled": True}, queues=queues, **overrides)


def reconfigure(b, queues):
    """Rewrites the broker's configuration file with `queues` (None: the
    section removed); takes effect at the next start."""
    b.rewrite_config(queues=queues)


def inspect(b):
    r = subprocess.run([PETREL_BIN, "inspect", "--data", b.config["persistence"]["dir"]],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return r.stdout


def payloads(c, n, timeout=5.0):
    return [c.recv_publish(timeout=timeout).payload for _ in range(n)]


def sys_values(b, name, want, timeout=6.0):
    """$SYS/broker/queues/<name>/<key> values, read until every key of
    `want` (key -> expected value, or None for any) has been seen with its
    expected value; returns the latest of each."""
    w = b.connected("sys-" + name)
    w.subscribe([("$SYS/broker/queues/%s/#" % name, 0)])
    seen = {}

    def done():
        return all(k in seen and (v is None or seen[k] == v) for k, v in want.items())
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        assert left > 0, "$SYS values %r, wanted %r" % (seen, want)
        p = w.recv_publish(timeout=left)
        seen[p.topic.rsplit("/", 1)[1]] = int(p.payload)
    w.close()
    return seen


def test_orders_before_any_worker_survive_kill9_and_go_once_each(make_broker):
    """10,000 QoS 1 orders published to orders/... before any worker has
    ever connected, every one acknowledged; the broker is SIGKILLed and
    restarted; three workers attach through $share/orders/orders/# and one
    through $queue/orders: each order is processed exactly once, none lost."""
    b = persistent(make_broker, [queue("orders", "orders/#")], log_level="info",
                   limits={"max_inflight": 100})
    pub = fc.Pub(b.host, b.port, "shop", version=5).connect()
    t0 = time.monotonic()
    pub.publish("orders/eu/new", 10000, qos=1, window=1000)
    published = time.monotonic() - t0
    assert pub.acked == 10000
    pub.close()
    b.kill()
    b.start(timeout=10)
    workers = [fc.Sub(b.host, b.port, "w%d" % i, version=5, receive_max=50)
               .connect(subscribe="$share/orders/orders/#") for i in range(3)]
    workers.append(fc.Sub(b.host, b.port, "wq", version=4).connect(subscribe="$queue/orders"))
    t1 = time.monotonic()
    assert fc.run(workers, lambda: sum(w.unique() for w in workers) >= 10000, timeout=20)
    drained = time.monotonic() - t1
    fc.run(workers, lambda: False, timeout=0.3)  # nothing more comes
    seen = {}
    for w in workers:
        assert w.dups == 0, (w.cid, w.dups)
        for k in w.first_seen:
            assert k not in seen, "order %r processed by %s and %s" % (k, seen[k], w.cid)
            seen[k] = w.cid
    assert sorted(seq for (_, seq) in seen) == list(range(10000))
    assert all(w.unique() > 0 for w in workers), [w.unique() for w in workers]
    for w in workers:
        w.close()
    print("10,000 orders: published and committed in %.2fs, drained by 4 workers in %.2fs"
          % (published, drained))


def test_retention_holds_across_a_restart(make_broker):
    """retention: 1 s. Five messages queued, the broker stopped for longer
    than that and started again, three more queued: a consumer gets only
    the three; the five are counted as expired."""
    b = persistent(make_broker, [queue("brief", "brief/#", retention=1)], mqtt={"sys_interval": 1})
    pub = b.connected("p-brief", version=5)
    for i in range(5):
        pub.publish("brief/x", b"old %d" % i, qos=1)
    pub.close()
    b.stop()
    time.sleep(1.2)
    b.start(timeout=10)
    pub = b.connected("p-brief", version=5)
    for i in range(3):
        pub.publish("brief/x", b"new %d" % i, qos=1)
    c = b.connected("c-brief", version=5)
    assert c.subscribe([("$queue/brief", 1)]).codes == [1]
    assert payloads(c, 3) == [b"new 0", b"new 1", b"new 2"]
    c.expect_nothing(0.3)
    sys_values(b, "brief", {"expired": 5, "depth": 0, "consumers": 1})


def test_message_ttl_applies_to_messages_without_expiry(make_broker):
    """message_ttl: 1 s. A message without an expiry and one with its own
    (60 s) expiry are queued; after 1.3 s only the second is handed out."""
    b = make_broker(queues=[queue("ttl", "ttl/#", message_ttl=1)])
    pub = b.connected("p-ttl", version=5)
    pub.publish("ttl/a", b"no expiry", qos=1)
    pub.publish("ttl/a", b"own expiry", qos=1, props={"message_expiry_interval": 60})
    time.sleep(1.3)
    c = b.connected("c-ttl", version=5)
    assert c.subscribe([("$share/ttl/ttl/#", 1)]).codes == [1]
    assert payloads(c, 1) == [b"own expiry"]
    c.expect_nothing(0.3)


def test_qos0_option_and_one_copy_for_two_filters(make_broker):
    """qos0: queue (the default) keeps QoS 0 messages for a later consumer;
    qos0: drop does not queue them. A message matching both filters of a
    queue is queued once."""
    b = make_broker(queues=[queue("keep", "k/#"), queue("drop", "d/#", qos0="drop"),
                            queue("two", "two/#", "two/+/x")])
    pub = b.connected("p-q0")
    pub.publish("k/1", b"kept", qos=0)
    pub.publish("d/1", b"dropped", qos=0)
    pub.publish("d/1", b"queued", qos=1)
    pub.publish("two/a/x", b"once", qos=1)
    pub.ping()
    c = b.connected("c-q0", version=5)
    assert c.subscribe([("$queue/keep", 1), ("$queue/drop", 1), ("$queue/two", 1)]).codes == [1, 1, 1]
    got = sorted(payloads(c, 3))
    assert got == [b"kept", b"once", b"queued"], got
    c.expect_nothing(0.4)


def test_queue_of_an_undeclared_name_is_refused(make_broker):
    """$queue/unknown: SUBACK 0x8F (MQTT 5) / 0x80 (3.1.1), logged; other
    filters of the same SUBSCRIBE are granted."""
    b = make_broker(queues=[queue("orders", "orders/#")])
    c5 = b.connected("u5", version=5)
    assert c5.subscribe([("$queue/unknown", 1), ("$queue/orders", 1)]).codes == [0x8F, 1]
    c4 = b.connected("u4", version=4)
    assert c4.subscribe([("$queue/unknown", 1), ("$queue/", 0)]).codes == [0x80, 0x80]
    assert "no such queue is declared" in b.log()
    # Unsubscribing $queue/orders leaves the queue: a message waits for others.
    assert c5.unsubscribe(["$queue/orders"]).codes == [0]
    pub = b.connected("pu")
    pub.publish("orders/1", b"x", qos=1)
    c5.expect_nothing(0.3)
    c4.subscribe([("$queue/orders", 1)])
    assert payloads(c4, 1) == [b"x"]


def test_queue_member_survives_session_restart(make_broker):
    """A durable session's $queue/<name> subscription comes back after a
    restart: messages queued while it was away reach it on reconnect."""
    b = persistent(make_broker, [queue("jobs", "jobs/#")])
    c = b.connected("dq", version=5, clean=False, props={"session_expiry_interval": 300})
    assert c.subscribe([("$queue/jobs", 1)]).codes == [1]
    c.disconnect()
    b.stop()
    b.start(timeout=10)
    pub = b.connected("p-dq")
    for i in range(3):
        pub.publish("jobs/a", b"j%d" % i, qos=1)
    c = b.connected("dq", version=5, clean=False, props={"session_expiry_interval": 300})
    assert c.connack.session_present
    assert payloads(c, 3) == [b"j0", b"j1", b"j2"]


def test_a_qos2_entry_a_member_kept_across_a_restart_keeps_its_ttl(make_broker):
    """message_ttl: 2 s. A durable member takes a QoS 2 message from the
    queue and does not answer it: the message stays with its session,
    stored with the queue entry's times, across a restart. Reconnected,
    the member gets it again and ends its session without answering: the
    message goes back to the queue, where it has outlived its TTL, so a
    later consumer never gets it."""
    b = persistent(make_broker, [queue("q2", "q2/#", message_ttl=2)])
    c = b.connected("keeper", version=5, clean=False, props={"session_expiry_interval": 300})
    assert c.subscribe([("$queue/q2", 2)]).codes == [2]
    pub = b.connected("p-q2", version=5)
    t0 = time.monotonic()
    pub.publish("q2/a", b"kept", qos=2)
    assert c.recv_publish(timeout=5, ack=False).payload == b"kept"
    c.close()
    b.stop()
    b.start(timeout=10)
    c = b.connected("keeper", version=5, clean=False, props={"session_expiry_interval": 300})
    assert c.connack.session_present
    again = c.recv_publish(timeout=5, ack=False)
    assert again.payload == b"kept" and again.dup
    # Ends the session: what it held goes back to the queue.
    c.disconnect(props={"session_expiry_interval": 0})
    time.sleep(max(0.0, t0 + 2.5 - time.monotonic()))
    late = b.connected("late", version=5)
    assert late.subscribe([("$queue/q2", 2)]).codes == [2]
    late.expect_nothing(0.8)


def test_removed_queue_keeps_its_stored_messages(make_broker):
    """20 messages in queue rm; the queue is removed from the configuration
    and the broker restarted: the removal is logged and a
    $share/rm/rm/# member still gets all 20."""
    b = persistent(make_broker, [queue("rm", "rm/#")])
    pub = b.connected("p-rm")
    for i in range(20):
        pub.publish("rm/a", b"m%d" % i, qos=1)
    pub.close()
    b.stop()
    reconfigure(b, None)
    b.start(timeout=10)
    assert re.search(r"queue rm \(rm/#\) is no longer declared: its 20 stored messages are kept", b.log())
    c = b.connected("c-rm", version=5)
    assert c.subscribe([("$share/rm/rm/#", 1)]).codes == [1]
    assert payloads(c, 20) == [b"m%d" % i for i in range(20)]
    c.expect_nothing(0.3)


def test_inspect_and_sys_show_depth_and_consumers(make_broker):
    """25 messages queued, one consumer holding 5 unacknowledged: $SYS
    shows depth 20 and 1 consumer; after a stop, petrel inspect lists the
    queue with its 25 stored entries."""
    b = persistent(make_broker, [queue("insp", "insp/#")], mqtt={"sys_interval": 1})
    pub = b.connected("p-insp")
    for i in range(25):
        pub.publish("insp/a", b"%d" % i, qos=1)
    c = b.connected("c-insp", version=5, props={"receive_maximum": 5})
    assert c.subscribe([("$queue/insp", 1)]).codes == [1]
    for _ in range(5):
        c.recv_publish(timeout=5, ack=False)
    st = sys_values(b, "insp", {"depth": 20, "consumers": 1, "inflight": 5, "oldest_age": None})
    assert 0 <= st["oldest_age"] < 30
    c.close()
    pub.close()
    b.stop()
    text = inspect(b)
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("insp ")]
    assert lines and re.search(r"\binsp/#\s+25\b", lines[0]), text
    assert "queues (declared)" in text


# SIGHUP: the configuration file is read again and its queues: section
# applied (other sections are not reloaded).

def wait_log(b, pattern, timeout=5.0, start=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, b.log()[start:])
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("%r not in the log:\n%s" % (pattern, b.log()[-2000:]))


def hup(b, queues):
    """Rewrites the configuration with `queues` and sends SIGHUP; returns
    once the broker has applied it."""
    reconfigure(b, queues)
    start = len(b.log())
    b.send_signal(signal.SIGHUP)
    wait_log(b, r"queues reloaded: ", start=start)
    return start


def test_sighup_declares_a_new_queue_that_collects_at_once(make_broker):
    """No queue at start: a message to fresh/... is lost. SIGHUP declares
    fresh: five QoS 1 messages published before any consumer are kept,
    across a restart too, and a consumer gets them all."""
    b = persistent(make_broker, [])
    pub = b.connected("p-fresh")
    pub.publish("fresh/a", b"before", qos=1)
    start = hup(b, [queue("fresh", "fresh/#")])
    assert re.search(r"queue fresh declared", b.log()[start:])
    assert re.search(r"queues reloaded: 1 added, 0 removed, 0 changed", b.log()[start:])
    for i in range(5):
        pub.publish("fresh/a", b"m%d" % i, qos=1)
    pub.close()
    b.stop()
    b.start(timeout=10)
    c = b.connected("c-fresh", version=5)
    assert c.subscribe([("$queue/fresh", 1)]).codes == [1]
    assert payloads(c, 5) == [b"m%d" % i for i in range(5)]
    c.expect_nothing(0.3)


def test_sighup_removes_a_queue_keeping_what_it_holds(make_broker):
    """Queue gone holds 10 messages, queue idle nothing (a $queue/idle
    consumer is online). SIGHUP removes both: logged with their depth;
    $queue/gone is refused from then on; a $share/gone/gone/# member gets
    the 10; once drained and left, new messages queue nowhere, as in an
    undeclared group; the $queue/idle consumer is no member any more."""
    b = persistent(make_broker, [queue("gone", "gone/#"), queue("idle", "idle/#")])
    pub = b.connected("p-gone")
    for i in range(10):
        pub.publish("gone/a", b"g%d" % i, qos=1)
    idle = b.connected("c-idle", version=5)
    assert idle.subscribe([("$queue/idle", 1)]).codes == [1]
    start = hup(b, None)
    log = b.log()[start:]
    assert re.search(r"queue gone \(gone/#\) is no longer declared: its 10 queued messages", log), log
    assert re.search(r"queue idle \(idle/#\) is no longer declared: nothing was queued", log), log
    assert re.search(r"queues reloaded: 0 added, 2 removed, 0 changed, 0 declared", log), log
    pub.publish("idle/x", b"nobody", qos=1)
    idle.expect_nothing(0.3)
    c5 = b.connected("r5", version=5)
    assert c5.subscribe([("$queue/gone", 1)]).codes == [0x8F]
    c4 = b.connected("r4", version=4)
    assert c4.subscribe([("$queue/gone", 1)]).codes == [0x80]
    c = b.connected("c-gone", version=5)
    assert c.subscribe([("$share/gone/gone/#", 1)]).codes == [1]
    assert payloads(c, 10) == [b"g%d" % i for i in range(10)]
    c.expect_nothing(0.3)
    assert c.unsubscribe(["$share/gone/gone/#"]).codes == [0]
    for i in range(3):
        pub.publish("gone/a", b"late %d" % i, qos=1)
    pub.ping()
    later = b.connected("c-later", version=5)
    assert later.subscribe([("$share/gone/gone/#", 1), ("$share/idle/idle/#", 1)]).codes == [1, 1]
    later.expect_nothing(0.4)


def listed_in_report(b, name):
    """Whether the SIGUSR1 report lists a share group named `name`."""
    start = len(b.log())
    b.send_signal(signal.SIGUSR1)
    wait_log(b, r"report:", start=start)
    time.sleep(0.1)  # the group lines follow the report line
    return re.search(r"share group %s/" % re.escape(name), b.log()[start:]) is not None


def test_a_removed_queue_goes_when_the_last_of_it_in_flight_is_acknowledged(make_broker):
    """Queue held holds 5 messages, all in flight to its one consumer
    ($queue/held, Receive Maximum 5, nothing acknowledged). SIGHUP removes
    the queue: the consumer is no member any more and keeps the 5. Once it
    acknowledges them, nothing is left, and the group goes: the SIGUSR1
    report no longer lists it, and messages published to its filter match
    no subscriber (MQTT 5 PUBACK 0x10) and are kept nowhere, as for any
    share group without members, across a restart too."""
    b = persistent(make_broker, [queue("held", "held/#")])
    pub = b.connected("p-held", version=5)
    for i in range(5):
        pub.publish("held/a", b"h%d" % i, qos=1)
    c = b.connected("c-held", version=5, props={"receive_maximum": 5})
    assert c.subscribe([("$queue/held", 1)]).codes == [1]
    held = [c.recv_publish(timeout=5, ack=False) for _ in range(5)]
    assert [p.payload for p in held] == [b"h%d" % i for i in range(5)]
    start = hup(b, None)
    assert re.search(r"queue held \(held/#\) is no longer declared: its 0 queued messages \(5 in flight\)",
                     b.log()[start:]), b.log()[start:]
    assert listed_in_report(b, "held")
    for p in held:
        c.ack(p)
    c.ping()
    deadline = time.monotonic() + 5
    while listed_in_report(b, "held"):
        assert time.monotonic() < deadline, "the emptied group is still listed:\n" + b.log()[-2000:]
    codes = []
    for i in range(3):
        mid = pub.publish("held/a", b"late %d" % i, qos=1, wait_ack=False)
        codes.append(pub.wait_for(m.PUBACK, mid).reason or 0)
    assert codes == [0x10] * 3
    c.expect_nothing(0.2)
    pub.close()
    b.stop()
    b.start(timeout=10)
    later = b.connected("c-later", version=5)
    assert later.subscribe([("$share/held/held/#", 1)]).codes == [1]
    later.expect_nothing(0.4)


@pytest.mark.time_limit(60)
def test_expired_entries_go_with_no_consumer_online(make_broker):
    """Queue short (message_ttl 2 s) collects 100,000 QoS 1 messages, 100
    times a group's RAM window, with no consumer ever online. Within
    seconds of their lifetime's end every one is gone, not only those a
    later publish met at the head of the queue: $SYS shows depth 0 and
    100,000 expired, the store holds none of them across a restart, and a
    consumer gets nothing."""
    b = persistent(make_broker, [queue("short", "short/#", message_ttl=2)], mqtt={"sys_interval": 1})
    pub = fc.Pub(b.host, b.port, "p-short", version=5).connect()
    pub.publish("short/a", 100000, qos=1, window=1000, timeout=120)
    assert pub.acked == 100000
    pub.close()
    sys_values(b, "short", {"depth": 0, "expired": 100000, "bytes": 0, "consumers": 0}, timeout=20)
    b.stop()
    b.start(timeout=10)
    assert sys_values(b, "short", {"depth": 0, "expired": 0})["depth"] == 0
    c = b.connected("c-short", version=5)
    assert c.subscribe([("$queue/short", 1)]).codes == [1]
    c.expect_nothing(0.5)


def test_a_removed_queue_whose_messages_expired_goes(make_broker):
    """Queue brief (message_ttl 2 s) holds 2,000 messages, twice a group's
    RAM window, with no consumer, when SIGHUP removes it. Once they have
    expired, its group is gone: the SIGUSR1 report no longer lists it, a
    message to its filter matches nothing (PUBACK 0x10), and the restarted
    broker finds nothing of it in the store."""
    b = persistent(make_broker, [queue("brief", "brief/#", message_ttl=2)])
    pub = fc.Pub(b.host, b.port, "p-brief", version=5).connect()
    pub.publish("brief/a", 2000, qos=1, window=500)
    pub.close()
    start = hup(b, None)
    kept = re.search(r"queue brief \(brief/#\) is no longer declared: its (\d+) queued messages", b.log()[start:])
    assert kept and int(kept.group(1)) > 0, b.log()[start:]
    deadline = time.monotonic() + 10
    while listed_in_report(b, "brief"):
        assert time.monotonic() < deadline, "the expired group is still listed:\n" + b.log()[-2000:]
        time.sleep(0.2)
    late = b.connected("p-late", version=5)
    mid = late.publish("brief/a", b"late", qos=1, wait_ack=False)
    assert (late.wait_for(m.PUBACK, mid).reason or 0) == 0x10
    late.close()
    b.stop()
    start = len(b.log())
    b.start(timeout=10)
    assert "queue brief" not in b.log()[start:], b.log()[start:]
    assert not listed_in_report(b, "brief")


def test_sighup_changes_parameters_and_filters(make_broker):
    """Queue chg on a/# (qos0 queued) becomes b/# with qos0 drop: a
    $queue/chg consumer gets the b/# QoS 1 message only; the a/# group,
    no longer part of the queue, keeps its message for a
    $share/chg/a/# member."""
    b = make_broker(queues=[queue("chg", "a/#")])
    pub = b.connected("p-chg")
    pub.publish("a/1", b"a1", qos=1)
    pub.ping()
    start = hup(b, [queue("chg", "b/#", qos0="drop")])
    log = b.log()[start:]
    assert re.search(r"queue chg changed: qos0 drop, filter added b/#, filter removed a/#", log), log
    assert re.search(r"queue chg \(a/#\) is no longer declared: its 1 queued messages", log), log
    pub.publish("b/1", b"b1", qos=1)
    pub.publish("b/2", b"b2 qos0", qos=0)
    pub.ping()
    c = b.connected("c-chg", version=5)
    assert c.subscribe([("$queue/chg", 1)]).codes == [1]
    assert payloads(c, 1) == [b"b1"]
    c.expect_nothing(0.3)
    s = b.connected("s-chg", version=5)
    assert s.subscribe([("$share/chg/a/#", 1)]).codes == [1]
    assert payloads(s, 1) == [b"a1"]


def test_sighup_with_a_broken_configuration_changes_nothing(make_broker):
    """A configuration file with an unknown key: the SIGHUP is logged with
    the key and its line, queue keep stays declared (and collecting), the
    queue the broken file adds is not declared."""
    b = make_broker(queues=[queue("keep", "keep/#")])
    reconfigure(b, [queue("keep", "keep/#"), {"name": "other", "filters": ["o/#"], "bogus": 1}])
    line = next(i for i, ln in enumerate(open(b.config_path).read().splitlines(), 1) if "bogus" in ln)
    start = len(b.log())
    b.send_signal(signal.SIGHUP)
    found = wait_log(b, r"SIGHUP: configuration not reloaded, queues unchanged: .*", start=start)
    assert "queues[1].bogus: unknown key" in found.group(0), found.group(0)
    assert "(line %d)" % line in found.group(0), found.group(0)
    assert "queues reloaded" not in b.log()[start:]
    pub = b.connected("p-keep")
    pub.publish("keep/x", b"kept", qos=1)
    pub.ping()
    c = b.connected("c-keep", version=5)
    assert c.subscribe([("$queue/keep", 1), ("$queue/other", 1)]).codes == [1, 0x8F]
    assert payloads(c, 1) == [b"kept"]
