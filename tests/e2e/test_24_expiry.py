"""Message lifetimes: default lifetimes by topic (`message_expiry:`), the cap
(`mqtt.max_message_expiry`), and expired messages never delivered, on every
way a message reaches a subscriber: the RAM queue, the store (after a
restart too, the lifetime counting while the broker is down), messages in
flight when the client went away, share group queues, retained messages,
wills. The lifetimes here are a second or two; in production they are
minutes or hours.
"""

import os
import re
import shutil
import subprocess
import threading
import time

import pytest

import fastclient as fc
import mqttraw as m
from conftest import PETREL_BIN, poll_until

pytestmark = pytest.mark.petrel_only

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


# --------------------------------------------------------------------------
# helpers

def rules(*pairs):
    return [{"filter": f, "seconds": s} for f, s in pairs]


def expiry_broker(make_broker, lifetimes, persistence=False, mqtt=None, **overrides):
    """`persistence`: on or off, or the persistence section."""
    mq = {"sys_interval": 1}
    mq.update(mqtt or {})
    p = persistence if isinstance(persistence, dict) else {"enabled": persistence}
    return make_broker(message_expiry=lifetimes, mqtt=mq, persistence=p, **overrides)


def durable5(b, cid, **props):
    p = {"session_expiry_interval": 600}
    p.update(props)
    return b.connected(cid, version=5, clean=False, props=p)


def mosquitto_pub(b, topic, message, version="mqttv311", qos=1, extra=()):
    assert os.access(MOSQUITTO_PUB, os.X_OK), "mosquitto_pub missing: apt-get install mosquitto-clients"
    argv = [MOSQUITTO_PUB, "-h", b.host, "-p", str(b.port), "-V", version,
            "-t", topic, "-m", message, "-q", str(qos)] + list(extra)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def drain(c, timeout=0.5):
    """Every PUBLISH that arrives until `timeout` passes without one, acked."""
    got = []
    for p in c.collect(timeout, m.PUBLISH):
        c.ack(p)
        got.append(p)
    return got


def payloads(pkts):
    return [p.payload for p in pkts]


def expiry_of(p):
    return p.props.get("message_expiry_interval")


def sleep_until(t):
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def wait_sys(b, name, want, timeout=4.0):
    """The $SYS/broker/<name> value (published every second) reaches `want`."""
    c = b.connected("sys-%s" % name.replace("/", "-"), version=4)
    c.subscribe([("$SYS/broker/" + name, 0)])
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = int(c.recv_publish(timeout=max(0.05, deadline - time.monotonic())).payload)
        except m.ReadTimeout:
            break
        if last == want:
            break
    c.disconnect()
    assert last == want, "$SYS/broker/%s = %r, want %r" % (name, last, want)


def stored_retained(b):
    r = subprocess.run([PETREL_BIN, "inspect", "--data", b.config["persistence"]["dir"]],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    mm = re.search(r"^\s+retained\s+(\d+)", r.stdout, re.M)
    assert mm, r.stdout
    return int(mm.group(1))


def wait_stored_retained(b, want, timeout=5.0):
    return poll_until(lambda: stored_retained(b), want, timeout, interval=0.1)


def stored_queue(b, cid):
    """The entries in the store's queue of session `cid` (`petrel inspect`)."""
    r = subprocess.run([PETREL_BIN, "inspect", "--data", b.config["persistence"]["dir"]],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    mm = re.search(r"^\s+%s\s+\S+\s+\S+\s+(\d+)\s" % re.escape(cid), r.stdout, re.M)
    assert mm, r.stdout
    return int(mm.group(1))


def publish_acked(b, cid, topic, n, window=1000, timeout=120):
    """`n` QoS 1 messages to `topic` from an MQTT 5 publisher with no rate
    limit but its window; every one acknowledged."""
    pub = fc.Pub(b.host, b.port, cid, version=5).connect()
    pub.publish(topic, n, qos=1, window=window, timeout=timeout)
    assert pub.acked == n
    pub.close()


SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"


# --------------------------------------------------------------------------
# which lifetime a message gets

def test_v311_publisher_gets_the_default_lifetime(make_broker):
    b = expiry_broker(make_broker, rules(("dl/#", 1)))
    live = b.connected("dl-live", version=5)
    live.subscribe([("dl/#", 1), ("nodl/#", 1)])
    off = durable5(b, "dl-offline")
    off.subscribe([("dl/#", 1), ("nodl/#", 1)])
    off.disconnect()
    # A real MQTT 3.1.1 client: its messages carry no lifetime of their own.
    mosquitto_pub(b, "dl/a", "stale-soon")
    mosquitto_pub(b, "nodl/a", "kept")
    got = [live.recv_publish(), live.recv_publish()]
    assert [(p.topic, expiry_of(p)) for p in got] == [("dl/a", 1), ("nodl/a", None)]
    time.sleep(1.2)
    off = durable5(b, "dl-offline")
    assert off.connack.session_present
    assert payloads(drain(off)) == [b"kept"]
    wait_sys(b, "messages/expired", 1)


def test_v5_lifetimes_default_own_and_capped(make_broker):
    b = expiry_broker(make_broker, rules(("v5d/big/#", 1000), ("v5d/#", 30)),
                      mqtt={"max_message_expiry": 60})
    sub = b.connected("v5d-sub", version=5)
    sub.subscribe([("v5d/#", 1), ("nr/#", 1)])
    pub = b.connected("v5d-pub", version=5)
    pub.publish("v5d/a", b"default", qos=1)
    pub.publish("v5d/a", b"own", qos=1, props={"message_expiry_interval": 10})
    pub.publish("v5d/big/x", b"default-capped", qos=1)
    pub.publish("nr/x", b"none", qos=1)
    pub.publish("nr/x", b"own-capped", qos=1, props={"message_expiry_interval": 5000})
    # A real MQTT 5 client asking for more than the cap.
    mosquitto_pub(b, "v5d/a", "mosquitto-capped", version="mqttv5",
                  extra=["-D", "publish", "message-expiry-interval", "100000"])
    got = {p.payload: expiry_of(p) for p in (sub.recv_publish() for _ in range(6))}
    want = {b"default": 30, b"own": 10, b"default-capped": 60, b"none": None,
            b"own-capped": 60, b"mosquitto-capped": 60}
    assert set(got) == set(want)
    for k, v in want.items():
        # The remaining lifetime, rounded up: at most a second less.
        assert got[k] == v or (v is not None and got[k] == v - 1), (k, got[k], v)


def test_first_matching_rule_wins(make_broker):
    b = expiry_broker(make_broker, rules(("fm/keep/#", 0), ("fm/a/#", 5), ("fm/+/x", 50), ("fm/#", 500)))
    sub = b.connected("fm-sub", version=5)
    sub.subscribe([("fm/#", 1)])
    pub = b.connected("fm-pub", version=4)
    for t in ("fm/a/x", "fm/b/x", "fm/b/y", "fm/keep/x", "fm"):
        pub.publish(t, t.encode(), qos=1)
    got = {p.topic: expiry_of(p) for p in (sub.recv_publish() for _ in range(5))}
    # fm/a/x matches all but the first rule: the first match decides.
    assert got["fm/a/x"] in (5, 4)
    assert got["fm/b/x"] in (50, 49)
    assert got["fm/b/y"] in (500, 499)
    assert got["fm"] in (500, 499)        # '#' matches the parent level
    assert got["fm/keep/x"] is None       # a 0-second rule: no lifetime


# --------------------------------------------------------------------------
# expired messages are never delivered

def test_expired_messages_are_not_delivered_from_the_ram_queue(make_broker):
    b = expiry_broker(make_broker, rules(("ram/short/#", 1)))
    pub = b.connected("ram-pub", version=4)
    # An offline session: what it is owed waits in its RAM queue.
    off = durable5(b, "ram-off")
    off.subscribe([("ram/#", 1)])
    off.disconnect()
    # An online one with a window of one (Receive Maximum): the rest waits.
    slow = durable5(b, "ram-slow", receive_maximum=1)
    slow.subscribe([("ram/#", 1)])
    for t in ("ram/long/1", "ram/short/1", "ram/long/2", "ram/short/2"):
        pub.publish(t, t.encode(), qos=1)
    first = slow.recv_publish(ack=False)
    assert first.topic == "ram/long/1"
    time.sleep(1.2)
    slow.ack(first)
    assert [p.topic for p in drain(slow)] == ["ram/long/2"]
    off = durable5(b, "ram-off")
    assert [p.topic for p in drain(off)] == ["ram/long/1", "ram/long/2"]
    wait_sys(b, "messages/expired", 4)


@pytest.mark.parametrize("how", ["term", "kill"])
def test_expired_while_the_broker_was_down_is_not_delivered(make_broker, how):
    b = expiry_broker(make_broker, rules(("rs/long/#", 60), ("rs/#", 3), ("rsr/#", 3)), persistence=True)
    sub = durable5(b, "rs-sub")
    sub.subscribe([("rs/#", 1)])
    sub.disconnect()
    pub = b.connected("rs-pub", version=4)
    t0 = time.monotonic()
    pub.publish("rs/a", b"s1", qos=1)
    pub.publish("rs/long/x", b"L", qos=1)
    pub.publish("rs/b", b"s2", qos=1)
    pub.publish("rsr/x", b"retained", qos=1, retain=True)
    # Stopped well before the 3 s lifetimes end: they end while it is down.
    if how == "term":
        b.stop()
    else:
        b.kill()
    assert time.monotonic() - t0 < 2.5, "too slow to stop before the lifetime ended"
    sleep_until(t0 + 3.3)
    b.start(timeout=10)
    sub = durable5(b, "rs-sub")
    assert sub.connack.session_present
    got = drain(sub)
    assert payloads(got) == [b"L"]
    # The lifetime kept counting: what is sent is what remains of the 60 s.
    assert 54 <= expiry_of(got[0]) <= 57, got[0]
    # The retained message expired while the broker was down: gone.
    late = b.connected("rs-late", version=5)
    late.subscribe([("rsr/#", 1)])
    late.expect_nothing(0.3)
    assert wait_stored_retained(b, 0) == 0
    wait_sys(b, "messages/expired", 2)


@pytest.mark.parametrize("where", ["ram", "store", "restart"])
def test_expired_messages_in_flight_are_not_sent_again(make_broker, where):
    """[MQTT-4.4.0-1] asks for unacknowledged PUBLISH packets to be sent
    again on reconnect, [MQTT-3.3.2-5] that an expired message is not
    delivered. An expired QoS 1 message in flight is dropped; a QoS 2 one
    gets a PUBREL instead of its PUBLISH, so that the client, which may hold
    its packet id, ends that exchange too."""
    life = 2 if where == "restart" else 1
    b = expiry_broker(make_broker, rules(("inf/#", life)), persistence=where != "ram")
    sub = durable5(b, "inf-sub")
    sub.subscribe([("inf/q1", 1), ("inf/q2", 2), ("keep/#", 1)])
    pub = b.connected("inf-pub", version=4)
    t0 = time.monotonic()
    pub.publish("inf/q1", b"a", qos=1)
    pub.publish("inf/q2", b"b", qos=2)
    pub.publish("keep/x", b"k", qos=1)
    got = [sub.recv_publish(ack=False) for _ in range(3)]
    assert [p.payload for p in got] == [b"a", b"b", b"k"]
    sub.close()  # no acknowledgement, no DISCONNECT
    if where == "restart":
        b.stop()
    sleep_until(t0 + life + 0.3)
    if where == "restart":
        b.start(timeout=10)
    sub = durable5(b, "inf-sub")
    assert sub.connack.session_present
    pkts = sub.collect(0.5)
    assert [(p.type, p.mid) for p in pkts] == [(m.PUBREL, got[1].mid), (m.PUBLISH, got[2].mid)], pkts
    assert pkts[1].dup and pkts[1].payload == b"k"
    sub.send(m.pubcomp(got[1].mid))
    sub.send(m.puback(got[2].mid))
    sub.expect_nothing(0.3)
    # The exchanges are over: new messages flow under any packet id.
    pub = b.connected("inf-pub", version=4)
    pub.publish("inf/q2", b"fresh", qos=2)
    p = sub.recv_publish()
    assert p.payload == b"fresh" and 0 < expiry_of(p) <= life
    wait_sys(b, "messages/expired", 2)


@pytest.mark.parametrize("restart", [False, True], ids=["ram", "restart"])
def test_expired_messages_are_not_handed_out_by_a_share_group(make_broker, restart):
    life = 2 if restart else 1
    b = expiry_broker(make_broker, rules(("sg/short/#", life)), persistence=restart)
    member = durable5(b, "sg-member")
    member.subscribe([("$share/workers/sg/#", 1)])
    member.disconnect()  # still a member: the group queues for it
    pub = b.connected("sg-pub", version=4)
    t0 = time.monotonic()
    for t in ("sg/short/1", "sg/long/1", "sg/short/2", "sg/long/2"):
        pub.publish(t, t.encode(), qos=1)
    if restart:
        b.stop()
    sleep_until(t0 + life + 0.3)
    if restart:
        b.start(timeout=10)
    member = durable5(b, "sg-member")
    assert [p.topic for p in drain(member)] == ["sg/long/1", "sg/long/2"]
    wait_sys(b, "messages/expired", 2)


def test_an_expired_retained_message_is_not_sent_and_is_removed(make_broker):
    b = expiry_broker(make_broker, rules(("rt/#", 2)), persistence=True)
    mosquitto_pub(b, "kept/a", "state", extra=["-r"])
    t0 = time.monotonic()
    mosquitto_pub(b, "rt/a", "state", extra=["-r"])
    early = b.connected("rt-early", version=5)
    early.subscribe([("rt/#", 1)])
    p = early.recv_publish()
    assert p.retain and expiry_of(p) in (1, 2)
    assert wait_stored_retained(b, 2) == 2
    sleep_until(t0 + 2.3)
    late = b.connected("rt-late", version=5)
    late.subscribe([("rt/#", 1), ("kept/#", 1)])
    assert [p.topic for p in drain(late)] == ["kept/a"]
    assert wait_stored_retained(b, 1) == 1  # removed from the store


def test_a_will_gets_the_default_lifetime_unless_it_has_its_own(make_broker):
    b = expiry_broker(make_broker, rules(("will/#", 1)))
    live = b.connected("will-live", version=5)
    live.subscribe([("will/#", 1)])
    off = durable5(b, "will-off")
    off.subscribe([("will/#", 1)])
    off.disconnect()
    dev = b.client(version=4)
    dev.connect("dev-311", will={"topic": "will/dev-311", "payload": b"gone", "qos": 1})
    dev5 = b.client(version=5)
    dev5.connect("dev-5", will={"topic": "will/dev-5", "payload": b"gone", "qos": 1,
                                "props": {"message_expiry_interval": 30}})
    dev.close()   # no DISCONNECT: the wills go out
    dev5.close()
    got = {p.topic: expiry_of(p) for p in (live.recv_publish() for _ in range(2))}
    assert got["will/dev-311"] == 1
    assert got["will/dev-5"] in (30, 29)
    time.sleep(1.2)
    off = durable5(b, "will-off")
    assert [p.topic for p in drain(off)] == ["will/dev-5"]


@pytest.mark.parametrize("persistence", [False, True], ids=["ram", "store"])
def test_expired_messages_do_not_take_the_room_of_live_ones(make_broker, persistence):
    """limits.max_queued_messages counts messages owed; once the ones at the
    head of a queue have expired they make room for new ones."""
    b = expiry_broker(make_broker, rules(("lim/short/#", 1)), persistence=persistence,
                      limits={"max_queued_messages": 5})
    sub = b.connected("lim-sub", version=4, clean=False)
    sub.subscribe([("lim/#", 1)])
    # The limit holds for a queue, not for a client online with room in its
    # window (those go out at once): the broker must have taken the
    # DISCONNECT before the first publish. With several event loops, the
    # publisher's CONNECT and PUBLISHes can be served before it.
    sub.go_offline()
    pub = b.connected("lim-pub", version=4)
    for i in range(5):
        pub.publish("lim/short/%d" % i, b"stale", qos=1)
    pub.publish("lim/live/over", b"over the limit", qos=1)  # dropped: the queue is full of live ones
    time.sleep(1.2)
    for i in range(3):
        pub.publish("lim/live/%d" % i, b"fresh", qos=1)
    sub = b.connected("lim-sub", version=4, clean=False)
    assert [p.topic for p in drain(sub)] == ["lim/live/0", "lim/live/1", "lim/live/2"]
    wait_sys(b, "messages/expired", 5)


def test_far_beyond_the_ram_window_exactly_the_live_messages_are_delivered(make_broker):
    """20,000 messages for an offline durable session (its RAM window is
    1,000: they are read back from the store as it drains), every other one
    with a lifetime that ends before it comes back."""
    n = 20000
    b = expiry_broker(make_broker, rules(("fw/short/#", 2)),
                      persistence={"enabled": True, "sync": "periodic"},
                      limits={"max_queued_messages": 2 * n, "max_inflight": 100})
    sub = b.connected("fw-sub", version=4, clean=False)
    sub.subscribe([("fw/#", 1)])
    sub.disconnect()
    pub = b.connected("fw-pub", version=4)
    blob = bytearray()
    for i in range(n):
        topic = "fw/short/%d" % i if i % 2 == 0 else "fw/long/%d" % i
        blob += m.publish(topic, b"%d" % i, qos=1, mid=i % 65535 + 1)
    pub.send(blob)
    acks = 0
    while acks < n:
        acks += pub.recv(10).type == m.PUBACK
    time.sleep(2.2)  # every short lifetime has ended
    sub = b.connected("fw-sub", version=4, clean=False)
    assert sub.connack.session_present
    got = []
    while len(got) < n // 2:
        p = sub.recv_publish(timeout=5)
        got.append(int(p.payload))
    assert got == list(range(1, n, 2))
    sub.expect_nothing(0.3)
    wait_sys(b, "messages/expired", n // 2)


# --------------------------------------------------------------------------
# expired messages leave the queues of sessions that stay away

@pytest.mark.parametrize("persistence", [False, True], ids=["ram", "store"])
def test_expired_messages_leave_the_queue_of_a_session_that_stays_away(make_broker, persistence):
    """100,000 messages with a 2 s lifetime for an offline durable session
    (100 times its RAM window of 1,000), from a publisher with no rate
    limit. The session never comes back during their lifetime: once it
    ends, they leave its queue within seconds (the sweep takes at most
    20,000 a second), not when the session returns or its queue fills.
    $SYS counts them expired and the broker holds none of them."""
    n = 20000 if SANITIZED else 100000
    p = {"enabled": True, "sync": "periodic"} if persistence else False
    b = expiry_broker(make_broker, rules(("sw/#", 2)), persistence=p,
                      limits={"max_queued_messages": 2 * n})
    sub = b.connected("sw-sub", version=4, clean=False)
    sub.subscribe([("sw/#", 1)])
    sub.go_offline()
    publish_acked(b, "sw-pub", "sw/a", n)
    wait_sys(b, "messages/expired", n, timeout=20 if SANITIZED else 12)
    if persistence:
        wait_sys(b, "store/messages/count", 0)
        assert poll_until(lambda: stored_queue(b, "sw-sub"), 0, 5, interval=0.1) == 0
    sub = b.connected("sw-sub", version=4, clean=False)
    assert sub.connack.session_present
    sub.expect_nothing(0.3)
    pub = b.connected("sw-pub2", version=4)
    pub.publish("sw/late", b"late", qos=1)
    assert payloads(drain(sub)) == [b"late"]


def test_expired_messages_leave_the_queues_of_many_sessions_that_stay_away(make_broker):
    """Ten offline durable sessions, each owed the same 10,000 messages
    with a 2 s lifetime (2,000 under ASan), ten times a session's RAM
    window: 100,000 queue entries, swept together under one budget. Each
    queue empties in the store; the sessions come back to nothing."""
    per = 2000 if SANITIZED else 10000
    ids = ["ms-sub%d" % i for i in range(10)]
    b = expiry_broker(make_broker, rules(("ms/#", 2)), persistence={"enabled": True, "sync": "periodic"},
                      limits={"max_queued_messages": 2 * per})
    for cid in ids:
        sub = b.connected(cid, version=4, clean=False)
        sub.subscribe([("ms/#", 1)])
        sub.go_offline()
    publish_acked(b, "ms-pub", "ms/a", per)
    wait_sys(b, "messages/expired", per * len(ids), timeout=20 if SANITIZED else 12)
    wait_sys(b, "store/messages/count", 0)
    for cid in ids:
        assert poll_until(lambda: stored_queue(b, cid), 0, 5, interval=0.1) == 0
    for cid in ids[:3]:
        sub = b.connected(cid, version=4, clean=False)
        assert sub.connack.session_present
        sub.expect_nothing(0.2)


def test_the_sweep_stops_at_a_live_message(make_broker):
    """The sweep takes the queue's head: 10 messages that expire, then one
    that lives, then 10 more that expire. The first 10 go while the session
    is away; the other 10 wait behind the live one until the session comes
    back, which gets the live one alone."""
    b = expiry_broker(make_broker, rules(("hd/long/#", 600), ("hd/#", 1)), persistence=True)
    sub = b.connected("hd-sub", version=4, clean=False)
    sub.subscribe([("hd/#", 1)])
    sub.go_offline()
    pub = b.connected("hd-pub", version=4)
    for i in range(10):
        pub.publish("hd/a", b"a%d" % i, qos=1)
    pub.publish("hd/long/x", b"live", qos=1)
    for i in range(10):
        pub.publish("hd/b", b"b%d" % i, qos=1)
    wait_sys(b, "messages/expired", 10)
    assert poll_until(lambda: stored_queue(b, "hd-sub"), 11, 5, interval=0.1) == 11
    time.sleep(1.5)  # several more sweeps: the head is live
    assert stored_queue(b, "hd-sub") == 11
    sub = b.connected("hd-sub", version=4, clean=False)
    assert payloads(drain(sub)) == [b"live"]
    wait_sys(b, "messages/expired", 20)


@pytest.mark.parametrize("how", ["term", "kill"])
def test_expired_messages_leave_the_queue_of_a_session_restored_after_a_restart(make_broker, how):
    """2,500 messages with a 5 s lifetime queued for an offline session
    (2.5 times its RAM window), the broker stopped (SIGTERM, or kill -9)
    before they expire and started again: the restored session's queue is
    swept with nobody connecting."""
    n = 2500
    b = expiry_broker(make_broker, rules(("rr/#", 5)), persistence=True, limits={"max_queued_messages": 2 * n})
    sub = b.connected("rr-sub", version=4, clean=False)
    sub.subscribe([("rr/#", 1)])
    sub.go_offline()
    t0 = time.monotonic()
    publish_acked(b, "rr-pub", "rr/a", n, window=500, timeout=30)
    if how == "term":
        b.stop()
    else:
        b.kill()
    assert time.monotonic() - t0 < 4.5, "too slow to stop before the lifetime ended"
    assert stored_queue(b, "rr-sub") == n
    b.start(timeout=10)
    wait_sys(b, "messages/expired", n, timeout=12)
    assert poll_until(lambda: stored_queue(b, "rr-sub"), 0, 5, interval=0.1) == 0
    wait_sys(b, "store/messages/count", 0)


def test_expired_qos1_messages_in_flight_leave_the_queue_of_a_session_that_went_away(make_broker):
    """A client with Receive Maximum 20 gets 20 of 50 messages (2 s
    lifetime) and goes away without acknowledging them. Once they expire,
    the 20 it had in flight go with the 30 it never got: it would not be
    sent them again (they expired)."""
    b = expiry_broker(make_broker, rules(("if/#", 2)), persistence=True)
    sub = durable5(b, "if-sub", receive_maximum=20)
    sub.subscribe([("if/#", 1)])
    pub = b.connected("if-pub", version=4)
    for i in range(50):
        pub.publish("if/a", b"%d" % i, qos=1)
    got = sub.collect(0.5, m.PUBLISH)
    assert len(got) == 20
    sub.close()  # no PUBACK, no DISCONNECT
    wait_sys(b, "messages/expired", 50, timeout=8)
    assert poll_until(lambda: stored_queue(b, "if-sub"), 0, 5, interval=0.1) == 0
    sub = durable5(b, "if-sub")
    assert sub.connack.session_present
    sub.expect_nothing(0.3)


# --------------------------------------------------------------------------
# the sign-up scenario

import paho.mqtt.client as paho  # noqa: E402  (python3-paho-mqtt)


class Service:
    """A back-end service: a durable MQTT 3.1.1 session (clean_session=0)
    with a QoS 1 subscription, online or offline."""

    def __init__(self, broker, client_id, topic):
        self.broker, self.client_id, self.topic = broker, client_id, topic
        self.messages = []
        self.lock = threading.Lock()
        self.c = None

    def online(self):
        self.c = paho.Client(client_id=self.client_id, clean_session=False, protocol=paho.MQTTv311)
        connected, subscribed = threading.Event(), threading.Event()
        self.c.on_connect = lambda *a: connected.set()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(self.broker.host, self.broker.port, keepalive=30)
        self.c.loop_start()
        assert connected.wait(5), "%s did not connect" % self.client_id
        self.c.subscribe(self.topic, 1)
        assert subscribed.wait(5)

    def offline(self):
        self.c.disconnect()
        self.c.loop_stop()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(msg.topic)

    def received(self, n, timeout=5.0):
        """What arrived once `n` messages have (and nothing more came)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.02)
        time.sleep(0.5)
        with self.lock:
            return list(self.messages)


def test_signup_scenario_sms_is_not_sent_stale_mail_gets_everything(make_broker):
    """A web front end (MQTT 3.1.1, it cannot set a lifetime) publishes each
    sign-up to the mail service and to the sms service. A welcome text is
    useless after a while (30 minutes in production, 2 s here:
    message_expiry: [{filter: signup/sms/#, seconds: 1800}]); a welcome mail
    is not. Both services are offline while the sign-ups happen."""
    b = expiry_broker(make_broker, rules(("signup/sms/#", 2)), persistence=True)
    mail = Service(b, "mail-service", "signup/mail/#")
    sms = Service(b, "sms-service", "signup/sms/#")
    web = paho.Client(client_id="signup-web", protocol=paho.MQTTv311)
    web.connect(b.host, b.port, keepalive=30)
    web.loop_start()
    try:
        for s in (mail, sms):
            s.online()
            s.offline()
        users = ["user%d" % i for i in range(20)]
        for u in users:
            for service in ("mail", "sms"):
                web.publish("signup/%s/%s" % (service, u), b'{"user": "%s"}' % u.encode(),
                            qos=1).wait_for_publish(5)
        time.sleep(2.3)  # the sms lifetime ends before the service is back
        mail.online()
        sms.online()
        assert mail.received(len(users)) == ["signup/mail/%s" % u for u in users]
        assert sms.received(0) == []
        # A sign-up while the sms service is up is sent at once.
        web.publish("signup/sms/late", b'{"user": "late"}', qos=1).wait_for_publish(5)
        assert sms.received(1) == ["signup/sms/late"]
        mail.offline()
        sms.offline()
    finally:
        web.disconnect()
        web.loop_stop()
