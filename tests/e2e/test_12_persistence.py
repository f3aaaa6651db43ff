"""Persistence across restarts: durable sessions, their subscriptions and
queues, in-flight QoS 1/2 state in both directions, retained messages,
delayed wills, expiry counted in wall-clock time, `petrel inspect`, damaged
stores, and the store's and queues' limits.

Most tests restart the broker twice over: with SIGTERM (clean shutdown) and
with SIGKILL (nothing flushed at exit: whatever was acknowledged must
already be on disk). The restarted broker runs on the same configuration
and data directory.
"""

import glob
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

import mqttraw as m
from conftest import PETREL_BIN

pytestmark = pytest.mark.petrel_only

HOW = pytest.mark.parametrize("how", ["term", "kill"])


# --------------------------------------------------------------------------
# helpers

def pbroker(make_broker, start=True, persistence=None, **overrides):
    p = {"enabled": True}
    p.update(persistence or {})
    return make_broker(start=start, persistence=p, **overrides)


def data_dir(b):
    return b.config["persistence"]["dir"]


def data_file(b):
    return os.path.join(data_dir(b), "data.mdb")


def restart(b, how):
    """Stop the broker (SIGTERM, or SIGKILL) and start it again on the same
    configuration and data directory. The exit status of a SIGTERM stop is
    checked by test_sigterm_exit_status_after_writes, not here, so that a
    bad exit at shutdown does not hide what these tests are about."""
    if how == "term":
        b.stop()
    else:
        b.kill()
        assert b.proc.returncode == -signal.SIGKILL
    b.start(timeout=10)


def v5props(expiry=600, **extra):
    p = {"session_expiry_interval": expiry}
    p.update(extra)
    return p


def durable(b, cid, version=4, expiry=600, **kw):
    """Connect a durable session: v3.1.1 clean_session=0, or v5 with expiry."""
    if version == 5:
        return b.connected(cid, version=5, clean=False, props=v5props(expiry), **kw)
    return b.connected(cid, version=version, clean=False, **kw)


def inspect(*args, timeout=15):
    if not os.access(PETREL_BIN, os.X_OK):
        pytest.skip("broker binary not found: %s" % PETREL_BIN)
    return subprocess.run([PETREL_BIN, "inspect"] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def inspect_counts(b):
    r = inspect("--data", data_dir(b))
    assert r.returncode == 0, r.stderr
    counts = {}
    for key, pat in [("sessions", r"sessions"), ("subscriptions", r"subscriptions"),
                     ("queued", r"queued messages"), ("messages", r"stored messages"),
                     ("retained", r"retained"), ("inbound_qos2", r"inbound QoS 2")]:
        mm = re.search(r"^\s+%s\s+(\d+)" % pat, r.stdout, re.M)
        assert mm, "no '%s' line in:\n%s" % (pat, r.stdout)
        counts[key] = int(mm.group(1))
    return counts, r.stdout


def wait_counts(b, timeout=5.0, **want):
    """Poll `petrel inspect` until the given counts are reached (commits are
    asynchronous when nothing waits on them); return the last counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts, out = inspect_counts(b)
        if all(counts[k] == v for k, v in want.items()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def sync_point(c):
    """A PINGREQ answered after everything the client sent before it: output
    that waits for a commit holds the PINGRESP back too, so its arrival means
    the client's earlier packets are on disk."""
    c.ping(timeout=5)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def expect_no_publish(c, timeout):
    """Nothing delivered within `timeout`. A PUBREL resent for a QoS 2
    exchange whose PUBCOMP the broker had not stored yet is no delivery: it
    is answered, and waiting goes on."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            p = c.recv(left)
        except m.ReadTimeout:
            return
        assert p.type == m.PUBREL, "unexpected packet %r" % (p,)
        c.send(m.pubcomp(p.mid))


def publishes(c, n, timeout=5.0, ack=True):
    return [c.recv_publish(timeout=timeout, ack=ack) for _ in range(n)]


# --------------------------------------------------------------------------
# sessions and subscriptions

@HOW
def test_session_and_subscription_options_survive_restart(make_broker, how):
    b = pbroker(make_broker)
    c5 = b.connected("opts5", version=5, clean=True, props=v5props())
    assert c5.connack.session_present is False
    assert c5.subscribe([("po/nl", m.sub_options(1, no_local=True))]).codes == [1]
    assert c5.subscribe([("po/rap", m.sub_options(1, retain_as_published=True))]).codes == [1]
    assert c5.subscribe([("po/plain", 1)]).codes == [1]
    assert c5.subscribe([("po/id/+", 2)], props={"subscription_identifier": 7}).codes == [2]
    assert c5.subscribe([("$share/grp/po/sh", 1)]).codes == [1]
    assert c5.subscribe([("po/gone", 1)]).codes == [1]
    assert c5.unsubscribe("po/gone").codes == [0]
    c311 = durable(b, "opts311")
    assert c311.subscribe([("po311/#", 2)]).codes == [2]
    c311.disconnect()
    # The v5 client is still connected when the broker stops.
    restart(b, how)
    c5.close()

    c5 = durable(b, "opts5", version=5)
    assert c5.connack.session_present is True
    c311 = durable(b, "opts311")
    assert c311.connack.session_present is True
    pub = b.connected("po-pub", version=5)
    c5.publish("po/nl", b"own", qos=1)          # No Local: not back to opts5
    pub.publish("po/nl", b"other", qos=1)
    pub.publish("po/rap", b"rap", qos=1, retain=True)
    pub.publish("po/plain", b"plain", qos=1, retain=True)
    pub.publish("po/id/x", b"with-id", qos=2)
    pub.publish("po/sh", b"shared", qos=1)
    pub.publish("po/gone", b"unsubscribed", qos=1)
    pub.publish("po311/a/b", b"deep", qos=2)
    got = publishes(c5, 5)
    assert [(p.topic, p.payload, p.qos) for p in got] == [
        ("po/nl", b"other", 1), ("po/rap", b"rap", 1), ("po/plain", b"plain", 1),
        ("po/id/x", b"with-id", 2), ("po/sh", b"shared", 1)]
    # Retain As Published kept; without it a live message has RETAIN 0.
    assert got[1].retain is True
    assert got[2].retain is False
    assert got[3].props.get("subscription_identifier") == [7]
    assert "subscription_identifier" not in got[0].props
    c5.expect_nothing(0.3)
    p = c311.recv_publish()
    assert (p.topic, p.payload, p.qos) == ("po311/a/b", b"deep", 2)
    c311.expect_nothing(0.2)


@HOW
def test_clean_sessions_are_not_restored(make_broker, how):
    b = pbroker(make_broker)
    a = b.connected("cl311", clean=True)
    a.subscribe([("cl/t", 1)])
    c = b.connected("cl5", version=5, clean=False)   # Session Expiry absent = 0
    c.subscribe([("cl/t", 1)])
    d = durable(b, "cl-durable")
    d.subscribe([("cl/t", 1)])
    d.disconnect()
    counts, _ = inspect_counts(b)
    assert counts["sessions"] == 1 and counts["subscriptions"] == 1, counts
    restart(b, how)
    assert "loaded 1 sessions" in b.log()
    a = b.connected("cl311", clean=False)
    assert a.connack.session_present is False
    c = b.connected("cl5", version=5, clean=False)
    assert c.connack.session_present is False
    d = durable(b, "cl-durable")
    assert d.connack.session_present is True
    b.connected("cl-pub").publish("cl/t", b"x", qos=1)
    assert d.recv_publish().payload == b"x"
    a.expect_nothing(0.3)
    c.expect_nothing(0.1)


# --------------------------------------------------------------------------
# queued and in-flight messages

@HOW
def test_queued_messages_survive_restart(make_broker, how):
    b = pbroker(make_broker)
    for level in (4, 5):
        c = durable(b, "queued%d" % level, version=level)
        c.subscribe([("qm/1", 1), ("qm/2", 2), ("qm/0", 0)])
        c.disconnect()
    pub = b.connected("qm-pub")
    expected = []
    for i in range(5):
        pub.publish("qm/1", b"one-%d" % i, qos=1)
        pub.publish("qm/2", b"two-%d" % i, qos=2)
        expected += [("qm/1", b"one-%d" % i, 1), ("qm/2", b"two-%d" % i, 2)]
    pub.publish("qm/1", b"downgraded", qos=2)   # granted QoS 1
    pub.publish("qm/0", b"qos0", qos=0)         # QoS 0 is not queued offline
    expected.append(("qm/1", b"downgraded", 1))
    sync_point(pub)
    counts, _ = inspect_counts(b)
    assert counts["queued"] == 22 and counts["messages"] == 11, counts
    restart(b, how)
    for level in (4, 5):
        c = durable(b, "queued%d" % level, version=level)
        assert c.connack.session_present is True
        got = publishes(c, len(expected))
        assert [(p.topic, p.payload, p.qos) for p in got] == expected
        c.expect_nothing(0.3)
    # Acknowledged deliveries leave the store, and so do the messages
    # (no queue entry refers to them any more).
    counts = wait_counts(b, queued=0, messages=0)
    assert counts["queued"] == 0 and counts["messages"] == 0, counts


def test_acknowledged_queued_messages_leave_the_store(make_broker):
    """Messages queued for an offline durable session, then delivered and
    acknowledged at once: the store keeps none of them (the entries are
    rewritten with their packet ids when sent, and the PUBACKs come back
    while those rewrites may still be waiting for their commit), and none
    is delivered again after a restart."""
    # Large messages: the broker sends them as the socket drains (not all
    # in answer to a packet of the subscriber's).
    n = 60
    body = b"." * 200000
    b = pbroker(make_broker, limits={"max_queued_messages": 0, "max_inflight": 100})
    s = durable(b, "ack-sub")
    s.subscribe([("ack/t", 1)])
    s.disconnect()
    pub = b.connected("ack-pub")
    for i in range(n):
        pub.send(m.publish("ack/t", b"%03d" % i + body, 1, mid=i + 1))
    for i in range(n):
        pub.expect(m.PUBACK)
    counts, _ = inspect_counts(b)
    assert counts["queued"] == n, counts
    s = durable(b, "ack-sub")
    got = [int(p.payload[:3]) for p in publishes(s, n)]   # each PUBACKed on arrival
    assert got == list(range(n))
    sync_point(s)
    counts = wait_counts(b, queued=0, messages=0)
    assert counts["queued"] == 0 and counts["messages"] == 0, counts
    restart(b, "term")
    s.close()
    s = durable(b, "ack-sub")
    assert s.connack.session_present is True
    again = [p.payload for p in s.collect(0.5, ptype=m.PUBLISH)]
    assert again == [], "acknowledged messages delivered again after a restart: %r" % again[:20]


@HOW
def test_inflight_qos1_resent_with_dup_and_same_id(make_broker, how):
    b = pbroker(make_broker)
    s = durable(b, "if1")
    s.subscribe([("if/1", 1)])
    pub = b.connected("if1-pub")
    pub.publish("if/1", b"first", qos=1)     # PUBACK: stored, packet id included
    p = s.recv_publish(ack=False)
    assert (p.payload, p.dup) == (b"first", False)
    restart(b, how)
    s.close()
    s = durable(b, "if1")
    assert s.connack.session_present is True
    again = s.recv_publish(ack=False)
    assert (again.topic, again.payload, again.qos) == ("if/1", b"first", 1)
    assert again.dup is True, again          # [MQTT-3.3.1-1]
    assert again.mid == p.mid, (again, p)
    s.send(m.puback(again.mid))
    sync_point(s)
    s.expect_nothing(0.3)
    # Acknowledged before this restart: not sent again.
    restart(b, how)
    s.close()
    s = durable(b, "if1")
    assert s.connack.session_present is True
    s.expect_nothing(0.5)


def with_backlog(b, cid, topic, n, qos_of):
    """A durable session subscribed to `topic` (QoS 2) that was offline while
    n messages ("000", "001", ...; QoS qos_of(i)) were published and stored
    for it; returns it connected again."""
    s = durable(b, cid)
    s.subscribe([(topic, 2)])
    s.go_offline()  # what follows is its backlog
    pub = b.connected(cid + "-pub")
    for i in range(n):
        pub.publish(topic, b"%03d" % i, qos=qos_of(i))   # each acknowledged: stored
    s = durable(b, cid)
    assert s.connack.session_present is True
    return s


@pytest.mark.parametrize("how", ["reconnect", "term", "kill"])
def test_inflight_from_a_backlog_resent_after_reconnect_and_restart(make_broker, how):
    """QoS 1 messages sent from a stored backlog (queued while the client was
    away) do not get their entries rewritten with the packet id one by one:
    the ids are written when the client goes away or the broker stops. After
    a reconnect (the session's RAM copy dropped, read back from the store)
    or a clean restart the unacknowledged ones come again first, DUP set,
    under their original ids [MQTT-4.4.0-1]. After a kill -9 the ids are
    gone, and the messages come again under new ones (QoS 1 allows that):
    in order, none lost, none acknowledged sent again."""
    b = pbroker(make_broker)            # max_inflight 20 (conftest)
    n = 60
    s = with_backlog(b, "bl1", "bl/1", n, lambda i: 1)
    first = publishes(s, 20, ack=False)           # the window: 20 in flight
    assert [int(p.payload) for p in first] == list(range(20))
    assert not any(p.dup for p in first)
    expect_no_publish(s, 0.3)                     # nothing beyond the window
    for p in first[:5]:
        s.send(m.puback(p.mid))
    more = publishes(s, 5, ack=False)             # the window moved on by 5
    assert [int(p.payload) for p in more] == list(range(20, 25))
    sync_point(s)
    wait_counts(b, queued=n - 5)                  # the 5 acknowledged are gone
    held = first[5:] + more                       # 20 unacknowledged, 5..24
    if how == "reconnect":
        s.close()
        time.sleep(0.5)                           # offline: the RAM copy goes
    else:
        restart(b, how)
        s.close()
    s = durable(b, "bl1")
    assert s.connack.session_present is True
    again = publishes(s, len(held), ack=False)
    assert [p.payload for p in again] == [p.payload for p in held]
    if how != "kill":
        assert all(p.dup for p in again), again
        assert [p.mid for p in again] == [p.mid for p in held]
    for p in again:
        s.send(m.puback(p.mid))
    rest = publishes(s, n - 25)
    assert [int(p.payload) for p in rest] == list(range(25, n))
    expect_no_publish(s, 0.3)
    sync_point(s)
    assert wait_counts(b, queued=0, messages=0)["queued"] == 0


def test_mixed_qos_backlog_in_flight_resent_in_order_after_kill(make_broker):
    """A backlog of QoS 1 and QoS 2 messages alternating, 20 in flight, kill
    -9: every unacknowledged one comes again in the order first sent (the
    QoS 2 ones under their ids, DUP set; none lost, none twice), then the
    rest. A QoS 2 entry stored with its id takes the ids of the QoS 1
    entries sent before it into the same batch, so that after a crash
    nothing sent later is sent again ahead of them."""
    b = pbroker(make_broker)
    n = 50
    s = with_backlog(b, "bl2", "bl/2", n, lambda i: 1 + i % 2)
    held = publishes(s, 20, ack=False)
    assert [int(p.payload) for p in held] == list(range(20))
    assert [p.qos for p in held] == [1 + i % 2 for i in range(20)]
    sync_point(s)
    b.kill()
    b.start(timeout=10)
    s.close()
    s = durable(b, "bl2")
    assert s.connack.session_present is True
    got = []
    while len(got) < n:
        p = s.recv(5)
        if p.type == m.PUBREL:            # PUBRECs are answered as they commit
            s.send(m.pubcomp(p.mid))
            continue
        assert p.type == m.PUBLISH, p
        i = int(p.payload)
        got.append(i)
        if i < 20 and p.qos == 2:
            assert p.dup and p.mid == held[i].mid, (p, held[i])
        s.send(m.pubrec(p.mid) if p.qos == 2 else m.puback(p.mid))
    assert got == list(range(n)), got
    expect_no_publish(s, 0.3)


@HOW
def test_a_smaller_window_after_a_restart_bounds_what_is_sent_again(make_broker, how):
    """The operator lowers limits.max_inflight from 20 to 4 and restarts
    while a durable session has 20 in flight from its backlog (QoS 1 and 2
    alternating, two QoS 2 exchanges at PUBREL). What was in flight is sent
    again no more than 4 unacknowledged at a time [MQTT-3.3.4-9 for the
    window a 3.1.1 client gets], in its order, the QoS 2 ones under their
    ids; then the rest of the backlog: none lost, none twice."""
    b = pbroker(make_broker)            # max_inflight 20 (conftest)
    n = 60
    s = with_backlog(b, "rw", "rw/1", n, lambda i: 1 + i % 2)
    held = publishes(s, 20, ack=False)
    assert [int(p.payload) for p in held] == list(range(20))
    for p in (held[1], held[3]):
        s.send(m.pubrec(p.mid))
        s.wait_for(m.PUBREL, p.mid)     # sent once the PUBREC is stored
    sync_point(s)
    b.rewrite_config(limits=dict(b.config.get("limits", {}), max_inflight=4))
    restart(b, how)
    s.close()
    s = durable(b, "rw")
    assert s.connack.session_present is True
    window, delivered, released = s.complete_within_window(4, n)
    assert [(p.type, p.mid) for p in window] == [
        (m.PUBLISH, held[0].mid), (m.PUBREL, held[1].mid), (m.PUBLISH, held[2].mid), (m.PUBREL, held[3].mid)]
    assert released == [held[1].mid, held[3].mid]
    assert [int(p.payload) for p in delivered] == [i for i in range(n) if i not in (1, 3)]
    for p in delivered[:18]:            # the rest of the 20 in flight
        assert p.dup and p.mid == held[int(p.payload)].mid, p
    sync_point(s)
    assert wait_counts(b, queued=0, messages=0)["queued"] == 0


def test_a_window_past_a_refill_shrunk_by_a_restart_is_sent_again_in_turn(make_broker):
    """As above, with more in flight than the broker reads back from the
    store at once (1,000): 1,500 in flight at a window of 2,000, a restart
    at a window of 100. The first 1,000 come back with the session, the
    other 500 with the next read, each sent again in turn, never more than
    100 unacknowledged; then the rest of the backlog."""
    b = pbroker(make_broker, limits={"max_inflight": 2000, "max_queued_messages": 10000})
    n, in_flight = 1700, 1500
    s = with_backlog(b, "rw-big", "rw/big", n, lambda i: 1)
    held = publishes(s, in_flight, ack=False)
    assert [int(p.payload) for p in held] == list(range(in_flight))
    s.go_offline()                      # their ids are written as it goes
    b.rewrite_config(limits=dict(b.config["limits"], max_inflight=100))
    restart(b, "term")
    s = durable(b, "rw-big")
    assert s.connack.session_present is True
    window, delivered, _ = s.complete_within_window(100, n, batch=50)
    assert [p.mid for p in window] == [p.mid for p in held[:100]]
    assert [int(p.payload) for p in delivered] == list(range(n))
    for p in delivered[:in_flight]:
        assert p.dup and p.mid == held[int(p.payload)].mid, p
    sync_point(s)
    assert wait_counts(b, queued=0, messages=0)["queued"] == 0


def test_a_pubrel_answered_while_it_waited_its_turn_goes_once_the_pubrec_is_stored(make_broker, tmp_path):
    """After a reconnect with a smaller Receive Maximum, the client answers
    (PUBREC) a QoS 2 message of its earlier connection that is still
    waiting to be sent again. Its PUBREL, sent in its turn, must not go out
    before that PUBREC is stored: every fsync takes 1 s here, the turn
    comes within milliseconds, and the broker is killed the moment the
    PUBREL arrives. After the restart the exchange is at PUBREL; the
    message is never sent again."""
    b = pbroker(make_broker, start=False)
    delay = b.slow_disk(tmp_path)
    b.start()
    props = v5props(receive_maximum=10)
    s = b.connected("rel-turn", version=5, clean=False, props=props)
    s.subscribe([("rel/t", 2)])
    pub = b.connected("rel-turn-pub")
    for i in range(8):
        pub.publish("rel/t", b"%d" % i, qos=2 if i == 5 else 1)
    first = publishes(s, 8, ack=False)
    sync_point(s)
    s.close()
    delay.write_text("1000\n")
    s = b.connected("rel-turn", version=5, clean=False, props=v5props(receive_maximum=2))
    assert s.connack.session_present is True
    s.send(m.pubrec(first[5].mid))      # answered while it waits its turn
    for i in range(5):                  # QoS 1: their PUBACKs only delete
        p = s.expect(m.PUBLISH)
        assert int(p.payload) == i and p.dup, p
        s.send(m.puback(p.mid))
    rel = s.wait_for(m.PUBREL, first[5].mid, timeout=10)
    b.kill()
    delay.write_text("0\n")
    b.start(timeout=10)
    s.close()
    s = b.connected("rel-turn", version=5, clean=False, props=v5props(receive_maximum=10))
    assert s.connack.session_present is True
    got = []
    while True:
        try:
            p = s.recv(1.0)
        except m.ReadTimeout:
            break
        got.append(p)
        if p.type == m.PUBREL:
            s.send(m.pubcomp(p.mid))
        else:
            assert p.type == m.PUBLISH, p
            assert int(p.payload) != 5, "message 5 sent again after its PUBREL: %r" % (got,)
            s.send(m.puback(p.mid))
    assert (m.PUBREL, rel.mid) in [(p.type, p.mid) for p in got], got
    assert sorted(int(p.payload) for p in got if p.type == m.PUBLISH and int(p.payload) > 5) == [6, 7]


@pytest.mark.parametrize("back", ["at_once", "after_eviction"])
def test_qos2_ids_stored_ahead_go_out_fresh_in_turn(make_broker, back):
    """QoS 2 from a stored queue: with a client's PUBREC the broker stores
    the packet ids of the next window too (Sessions::storeIdsAhead). Those
    messages are first sent with DUP clear, under those ids, in order and
    within the window; a PUBREC for one of those ids before its message was
    sent is one for an id the client was never given (0x92) and changes
    nothing; after a reconnect they are sent in turn behind the window
    sent before, which comes again with DUP set. Every message once. The
    same when the client comes back after its offline session's entries
    have left RAM (written, evicted) and are read back from the store."""
    b = pbroker(make_broker, limits={"max_inflight": 4, "max_queued_messages": 1000}, mqtt={"sys_interval": 1})
    n = 40
    s = durable(b, "ahead", version=5)
    s.subscribe([("ah/q", 2)])
    s.go_offline()
    pub = b.connected("ahead-pub")
    for i in range(n):
        pub.publish("ah/q", b"%03d" % i, qos=2)
    s = durable(b, "ahead", version=5)
    assert s.connack.session_present is True
    first = publishes(s, 4, ack=False)
    assert [int(p.payload) for p in first] == [0, 1, 2, 3]
    assert not any(p.dup for p in first), first
    s.send(m.pubrec(first[0].mid))       # stores the ids of 4-7 with it
    s.wait_for(m.PUBREL, first[0].mid)
    given_ahead = first[3].mid + 1        # ids are handed out in order
    s.send(m.pubrec(given_ahead))
    rel = s.wait_for(m.PUBREL, given_ahead)
    assert rel.reason == 0x92, rel        # Packet Identifier not found
    s.send(m.pubcomp(first[0].mid))      # frees the window for message 4
    p4 = s.expect(m.PUBLISH)
    assert (int(p4.payload), p4.mid, p4.dup) == (4, given_ahead, False), p4
    s.expect_nothing(0.3)                 # the window: 1, 2, 3 and 4
    # Operators see 4 in flight: 5-7 are queued, their ids only stored.
    watch = b.connected("ahead-sys")
    watch.subscribe([("$SYS/broker/messages/inflight", 0)])
    deadline = time.monotonic() + 5
    while int(watch.recv_publish(timeout=5).payload) != 4:
        assert time.monotonic() < deadline, "$SYS/broker/messages/inflight never showed 4"
    watch.disconnect()
    s.close()                             # 1-4 sent; 5-7 have ids, not sent
    if back == "after_eviction":
        time.sleep(1.0)                   # its last writes commit: evicted
    s = durable(b, "ahead", version=5)
    assert s.connack.session_present is True
    window, delivered, _ = s.complete_within_window(4, n - 1, batch=2)
    assert [int(p.payload) for p in window] == [1, 2, 3, 4]
    assert [int(p.payload) for p in delivered] == list(range(1, n))
    sent_before = {int(p.payload): p.mid for p in first[1:] + [p4]}
    for p in delivered:
        i = int(p.payload)
        if i in sent_before:
            assert p.dup and p.mid == sent_before[i], p
        else:
            assert not p.dup, p
            if i < 8:
                assert p.mid == given_ahead + i - 4, p
    sync_point(s)
    assert wait_counts(b, queued=0, messages=0)["queued"] == 0


@HOW
def test_outbound_qos2_states_resent_after_restart(make_broker, how):
    """One QoS 2 message in PUBREL state (PUBREC received) and one not yet
    acknowledged: after the restart the broker sends PUBREL for the first
    and PUBLISH (DUP, same id) for the second, in that order."""
    b = pbroker(make_broker)
    s = durable(b, "if2", version=5)
    s.subscribe([("if/2", 2)])
    pub = b.connected("if2-pub")
    pub.publish("if/2", b"released", qos=2)
    pub.publish("if/2", b"unacked", qos=2)
    p1 = s.recv_publish(ack=False)
    p2 = s.recv_publish(ack=False)
    assert (p1.payload, p2.payload) == (b"released", b"unacked")
    s.send(m.pubrec(p1.mid))
    rel = s.expect(m.PUBREL)   # sent once PUBREC's state is stored
    assert rel.mid == p1.mid
    restart(b, how)
    s.close()
    s = durable(b, "if2", version=5)
    assert s.connack.session_present is True
    first = s.recv()
    assert first.type == m.PUBREL and first.mid == p1.mid, first
    second = s.recv()
    assert second.type == m.PUBLISH, second
    assert (second.payload, second.qos, second.dup, second.mid) == (b"unacked", 2, True, p2.mid)
    s.send(m.pubcomp(p1.mid))
    s.send(m.pubrec(p2.mid))
    assert s.expect(m.PUBREL).mid == p2.mid
    s.send(m.pubcomp(p2.mid))
    sync_point(s)
    s.expect_nothing(0.3)
    restart(b, how)
    s.close()
    s = durable(b, "if2", version=5)
    s.expect_nothing(0.5)


def test_kill_right_after_acknowledgements_repeats_only_what_the_qos_allows(make_broker):
    """A subscriber's acknowledgements only delete, and nobody waits for
    those deletes: the store may commit them a few milliseconds late, many
    at once. A kill -9 right after a queue was acknowledged may therefore
    bring some of it back, but only as the QoS allows: QoS 1 messages again,
    QoS 2 exchanges as PUBREL (which the client answers), never a QoS 2
    PUBLISH the client completed. Once answered, nothing comes back after
    another restart."""
    n, window = 300, 100
    b = pbroker(make_broker, limits={"max_inflight": window})
    for cid, topic, qos in (("del-q1", "del/1", 1), ("del-q2", "del/2", 2)):
        c = durable(b, cid)
        c.subscribe([(topic, qos)])
        c.disconnect()
    pub = b.connected("del-pub")
    for i in range(n):
        pub.publish("del/1", b"%04d" % i, qos=1)
        pub.publish("del/2", b"%04d" % i, qos=2)
    pub.close()
    counts, _ = inspect_counts(b)
    assert counts["queued"] == 2 * n, counts
    q1 = durable(b, "del-q1")
    q2 = durable(b, "del-q2")
    # QoS 2: every exchange but the last `tail` completed one by one; those
    # wait after PUBREL for their PUBCOMP.
    tail = 20
    got2 = [int(p.payload) for p in publishes(q2, n - tail)]
    last2 = publishes(q2, tail, ack=False)
    for p in last2:
        q2.send(m.pubrec(p.mid))
        q2.wait_for(m.PUBREL, p.mid)
    got2 += [int(p.payload) for p in last2]
    # QoS 1: acknowledged as they come, but the last window's worth (100
    # in flight) is held back.
    got1 = [int(p.payload) for p in publishes(q1, n - window)]
    last1 = publishes(q1, window, ack=False)
    got1 += [int(p.payload) for p in last1]
    assert got1 == list(range(n)) and got2 == list(range(n))
    # The held acknowledgements at once, then a PINGREQ on each connection:
    # its answer means the broker has handled them (PINGREQ waits for no
    # commit), and the kill follows at once, while their deletes are likely
    # still deferred.
    q1.send(b"".join(m.puback(p.mid) for p in last1))
    q2.send(b"".join(m.pubcomp(p.mid) for p in last2))
    q1.ping(timeout=5)
    q2.ping(timeout=5)
    b.kill()
    assert b.proc.returncode == -signal.SIGKILL
    q1.close()
    q2.close()
    b.start(timeout=10)
    q1 = durable(b, "del-q1")
    q2 = durable(b, "del-q2")
    again1 = []
    while True:  # acknowledged as they come, until 0.5 s pass without one
        try:
            p = q1.recv(0.5)
        except m.ReadTimeout:
            break
        assert p.type == m.PUBLISH and p.qos == 1, p
        again1.append(int(p.payload))
        q1.ack(p)
    # Deletes commit in the order of the acknowledgements: what comes back
    # is the end of the queue, in order, nothing else.
    assert again1 == list(range(n - len(again1), n)), again1[:20]
    expect_no_publish(q2, 0.5)  # PUBRELs are answered; a PUBLISH fails the test
    sync_point(q1)
    sync_point(q2)
    print("after the kill: %d QoS 1 messages again" % len(again1))
    q1.close()
    q2.close()
    restart(b, "term")
    q1 = durable(b, "del-q1")
    q2 = durable(b, "del-q2")
    q1.expect_nothing(0.5)
    q2.expect_nothing(0.5)
    counts, _ = inspect_counts(b)
    assert counts["queued"] == 0 and counts["messages"] == 0, counts


@HOW
def test_inbound_qos2_awaiting_pubrel_survives_restart(make_broker, how):
    b = pbroker(make_broker)
    sub = durable(b, "iq-sub")
    sub.subscribe([("iq/t", 2)])
    pub = b.client(5)
    pub.connect("iq-pub", clean=True, props=v5props())
    pub.send(m.publish("iq/t", b"once", 2, mid=42, v5=True))
    rec = pub.expect(m.PUBREC)
    assert rec.mid == 42 and rec.reason == 0, rec
    p = sub.recv_publish()
    assert p.payload == b"once"
    counts, _ = inspect_counts(b)
    assert counts["inbound_qos2"] == 1, counts
    restart(b, how)
    pub.close()
    sub.close()
    sub = durable(b, "iq-sub")
    assert sub.connack.session_present is True
    pub = b.client(5)
    assert pub.connect("iq-pub", clean=False, props=v5props()).session_present is True
    # The publisher did not see PUBREC (as far as the broker knows): it
    # sends the PUBLISH again with DUP. Acknowledged, not delivered again.
    pub.send(m.publish("iq/t", b"once", 2, dup=True, mid=42, v5=True))
    rec = pub.expect(m.PUBREC)
    assert rec.mid == 42 and rec.reason == 0, rec
    pub.send(m.pubrel(42))
    comp = pub.expect(m.PUBCOMP)
    # 0x92 Packet Identifier not found would mean the state was lost.
    assert comp.mid == 42 and comp.reason == 0, comp
    expect_no_publish(sub, 0.5)
    counts = wait_counts(b, inbound_qos2=0)
    assert counts["inbound_qos2"] == 0, counts


@HOW
def test_inbound_qos2_pubrel_after_restart_gets_pubcomp(make_broker, how):
    b = pbroker(make_broker)
    pub = b.client(5)
    pub.connect("iq2-pub", clean=True, props=v5props())
    pub.send(m.publish("iq2/t", b"x", 2, mid=7, v5=True))
    assert pub.expect(m.PUBREC).mid == 7
    restart(b, how)
    pub.close()
    pub = b.client(5)
    assert pub.connect("iq2-pub", clean=False, props=v5props()).session_present is True
    pub.send(m.pubrel(7))
    comp = pub.expect(m.PUBCOMP)
    assert comp.mid == 7 and comp.reason == 0, comp


def test_sigterm_exit_status_after_writes(make_broker):
    """SIGTERM right after the store was written to (here: an inbound QoS 2
    id awaiting PUBREL) ends the broker with exit status 0, every time.
    (A race at exit shows up in a fraction of the stops; hence the rounds.)"""
    rounds = 60
    b = pbroker(make_broker)
    codes = []
    for i in range(rounds):
        if i:
            b.start(timeout=10)
        pub = b.client(5)
        pub.connect("exit-pub", clean=True, props=v5props())
        pub.send(m.publish("exit/t", b"x", 2, mid=100 + i, v5=True))
        assert pub.expect(m.PUBREC).mid == 100 + i
        codes.append(b.stop())
        pub.close()
    assert codes == [0] * rounds, "exit statuses after SIGTERM: %r (-6 = SIGABRT)\n%s" % (
        codes, b.log()[-2000:])


# --------------------------------------------------------------------------
# retained messages

@HOW
def test_retained_messages_survive_restart(make_broker, how):
    b = pbroker(make_broker)
    pub = b.connected("rt-pub")
    pub.publish("rt/a", b"A1", qos=1, retain=True)
    pub.publish("rt/a", b"A2", qos=1, retain=True)   # replaces A1
    pub.publish("rt/b", b"B", qos=2, retain=True)
    pub.publish("rt/c", b"C", qos=1, retain=True)
    pub.publish("rt/c", b"", qos=1, retain=True)     # clears rt/c
    counts, _ = inspect_counts(b)
    # The replaced and the cleared message are gone from the store.
    assert counts["retained"] == 2 and counts["messages"] == 2, counts
    restart(b, how)
    s = b.connected("rt-sub")
    s.subscribe([("rt/#", 2)])
    got = sorted((p.topic, p.payload, p.qos, p.retain) for p in publishes(s, 2))
    assert got == [("rt/a", b"A2", 1, True), ("rt/b", b"B", 2, True)]
    s.expect_nothing(0.3)
    # Clearing after the restart sticks across the next one.
    pub = b.connected("rt-pub")
    pub.publish("rt/a", b"", qos=1, retain=True)
    restart(b, how)
    s = b.connected("rt-sub2")
    s.subscribe([("rt/#", 2)])
    p = s.recv_publish()
    assert (p.topic, p.payload) == ("rt/b", b"B")
    s.expect_nothing(0.3)
    counts, _ = inspect_counts(b)
    assert counts["retained"] == 1 and counts["messages"] == 1, counts


@HOW
def test_retained_message_in_flight_to_a_durable_session_outlives_its_slot(make_broker, how):
    """A retained message sent to a durable subscriber when it subscribes is
    held by that session's queue as well as by the retained slot. Clearing
    the slot while the subscriber has not acknowledged it must leave the
    message in the store, and the subscriber gets it again after a
    restart."""
    b = pbroker(make_broker)
    pub = b.connected("rq-pub")
    pub.publish("rq/t", b"R1", qos=1, retain=True)
    s = durable(b, "rq-sub")
    s.subscribe([("rq/t", 1)])
    p = s.recv_publish(ack=False)
    assert (p.payload, p.retain) == (b"R1", True)
    s.close()  # unacknowledged
    # Clears the slot, and is queued for the subscriber as any message is.
    pub.publish("rq/t", b"", qos=1, retain=True)
    counts = wait_counts(b, retained=0, queued=2)
    assert (counts["retained"], counts["queued"], counts["messages"]) == (0, 2, 2), counts
    restart(b, how)
    s = durable(b, "rq-sub")
    p = s.recv_publish()
    assert (p.topic, p.payload, p.dup) == ("rq/t", b"R1", True)
    p = s.recv_publish()
    assert (p.topic, p.payload) == ("rq/t", b"")
    s.expect_nothing(0.3)
    counts = wait_counts(b, queued=0, messages=0)
    assert (counts["queued"], counts["messages"]) == (0, 0), counts


@HOW
def test_retained_message_acknowledged_by_a_durable_session_stays_retained(make_broker, how):
    """The same message acknowledged by the durable subscriber: its queue
    entry goes, and the retained slot must still have the message, before
    and after a restart."""
    b = pbroker(make_broker)
    pub = b.connected("ra-pub")
    pub.publish("ra/t", b"R1", qos=1, retain=True)
    s = durable(b, "ra-sub")
    s.subscribe([("ra/t", 1)])
    p = s.recv_publish()  # acknowledged
    assert (p.payload, p.retain) == (b"R1", True)
    sync_point(s)
    counts = wait_counts(b, queued=0)
    assert (counts["retained"], counts["queued"], counts["messages"]) == (1, 0, 1), counts
    restart(b, how)
    n = b.connected("ra-new")
    n.subscribe([("ra/#", 1)])
    p = n.recv_publish()
    assert (p.topic, p.payload, p.retain) == ("ra/t", b"R1", True)
    # The durable subscriber is not sent it again: it acknowledged it.
    s = durable(b, "ra-sub")
    s.expect_nothing(0.5)


def test_share_group_message_passed_on_at_once_leaves_no_record_behind(make_broker):
    """A share group with a durable member keeps its messages in the store.
    A message the group hands on while it is being published (to a member
    subscribed with QoS 0, which needs no acknowledgement) leaves the
    group's store entry at once; its stored record must go with it, not
    stay behind with a reference nobody holds."""
    b = pbroker(make_broker)
    a = durable(b, "sg-a")
    a.subscribe([("$share/g/sg/t", 1)])
    a.go_offline()  # a durable member: the group's messages are stored
    m0 = b.connected("sg-b")
    m0.subscribe([("$share/g/sg/t", 0)])
    pub = b.connected("sg-pub")
    for i in range(5):
        pub.publish("sg/t", b"m%d" % i, qos=1)
    got = [p.payload for p in publishes(m0, 5)]
    assert got == [b"m%d" % i for i in range(5)]
    counts = wait_counts(b, queued=0, messages=0)
    assert (counts["queued"], counts["messages"]) == (0, 0), counts
    restart(b, "term")
    counts, _ = inspect_counts(b)
    assert (counts["queued"], counts["messages"]) == (0, 0), counts


# --------------------------------------------------------------------------
# wills and expiry across restarts

WILL_DELAY = 3


def will_watcher(b):
    w = durable(b, "dw-watch", version=5)
    w.subscribe([("dw/#", 1)])
    return w


def test_delayed_will_pending_at_restart_is_published_after_delay(make_broker):
    b = pbroker(make_broker)
    w = will_watcher(b)
    c = b.client(5)
    c.connect("dw-client", clean=True, props=v5props(60),
              will={"topic": "dw/gone", "payload": b"bye", "qos": 1,
                    "props": {"will_delay_interval": WILL_DELAY}})
    c.close()                     # abnormal end: the will waits for its delay
    t_close = time.monotonic()
    w.expect_nothing(0.3)
    restart(b, "term")
    w.close()
    w = durable(b, "dw-watch", version=5)
    assert w.connack.session_present is True
    # Not before the delay (counted from the disconnect, not the restart) ...
    early = (t_close + WILL_DELAY - 0.7) - time.monotonic()
    if early > 0:
        w.expect_nothing(early)
    # ... but soon after it.
    p = w.recv_publish(timeout=WILL_DELAY + 6)
    assert (p.topic, p.payload) == ("dw/gone", b"bye")
    assert time.monotonic() - t_close >= WILL_DELAY - 0.7
    w.expect_nothing(0.3)


def test_delayed_will_of_client_connected_at_kill(make_broker):
    # The connection ended with the broker: its will is due after the
    # delay, counted from the restart.
    b = pbroker(make_broker)
    w = will_watcher(b)
    c = b.client(5)
    c.connect("dw-client", clean=True, props=v5props(60),
              will={"topic": "dw/killed", "payload": b"k", "qos": 1,
                    "props": {"will_delay_interval": WILL_DELAY}})
    restart(b, "kill")
    t_start = time.monotonic()
    c.close()
    w.close()
    w = durable(b, "dw-watch", version=5)
    assert w.connack.session_present is True
    w.expect_nothing(max(0.1, WILL_DELAY - 1.5 - (time.monotonic() - t_start)))
    p = w.recv_publish(timeout=WILL_DELAY + 6)
    assert (p.topic, p.payload) == ("dw/killed", b"k")


def test_session_expiry_counts_across_restart(make_broker):
    b = pbroker(make_broker)
    short = durable(b, "se-short", version=5, expiry=2)
    short.subscribe([("se/t", 1)])
    short.disconnect()
    t_gone = time.monotonic()
    keep = durable(b, "se-long", version=5, expiry=600)
    keep.subscribe([("se/t", 1)])
    keep.disconnect()
    b.connected("se-pub").publish("se/t", b"queued", qos=1)
    b.stop()
    # Down past the 2 s expiry of se-short.
    time.sleep(max(0.0, t_gone + 3.0 - time.monotonic()))
    b.start(timeout=10)
    assert "se-short expired while the broker was stopped" in b.log()
    counts = wait_counts(b, sessions=1)
    assert counts["sessions"] == 1 and counts["queued"] == 1, counts
    short = durable(b, "se-short", version=5, expiry=2)
    assert short.connack.session_present is False
    short.expect_nothing(0.3)
    keep = durable(b, "se-long", version=5)
    assert keep.connack.session_present is True
    assert keep.recv_publish().payload == b"queued"


def test_message_expiry_counts_across_restart(make_broker):
    b = pbroker(make_broker)
    s = durable(b, "me-sub", version=5)
    s.subscribe([("me/t", 1)])
    s.disconnect()
    pub = b.connected("me-pub", version=5)
    pub.publish("me/t", b"short", qos=1, props={"message_expiry_interval": 1})
    t_pub = time.monotonic()
    pub.publish("me/t", b"long", qos=1, props={"message_expiry_interval": 600})
    pub.publish("me/t", b"forever", qos=1)
    b.kill()
    time.sleep(max(0.0, t_pub + 2.0 - time.monotonic()))   # down past the 1 s expiry
    b.start(timeout=10)
    s = durable(b, "me-sub", version=5)
    assert s.connack.session_present is True
    got = publishes(s, 2)
    assert [p.payload for p in got] == [b"long", b"forever"]
    # [MQTT-3.3.2-6] what is left of the interval, wall-clock time.
    assert 590 <= got[0].props["message_expiry_interval"] <= 600, got[0]
    assert "message_expiry_interval" not in got[1].props
    s.expect_nothing(0.3)


# --------------------------------------------------------------------------
# stored once, and `petrel inspect`

def test_message_stored_once_for_200_subscribers(make_broker):
    n = 200
    b = pbroker(make_broker)
    clients = []
    for i in range(n):
        c = b.client(4)
        c.send(m.connect("once-%03d" % i, 4, clean=False))
        c.send(m.subscribe(1, [("once/t", 1)]))
        clients.append(c)
    for c in clients:
        assert c.expect(m.CONNACK, timeout=10).session_present is False
        assert c.expect(m.SUBACK, timeout=10).codes == [1]
        c.disconnect()
    pub = b.connected("once-pub")
    # Whether or not the broker has seen a disconnect yet, each session gets
    # exactly one queue entry (sent and in flight, or queued).
    time.sleep(0.2)
    pub.publish("once/t", b"for everyone", qos=1)
    counts, out = inspect_counts(b)
    assert counts["sessions"] == n and counts["subscriptions"] == n, out
    assert counts["messages"] == 1, out
    assert counts["queued"] == n, out
    restart(b, "kill")
    counts, out = inspect_counts(b)
    assert (counts["messages"], counts["queued"]) == (1, n), out
    # Every subscriber gets it; once all have acknowledged, the message goes.
    clients = []
    for i in range(n):
        c = b.client(4)
        c.send(m.connect("once-%03d" % i, 4, clean=False))
        clients.append(c)
    for c in clients:
        assert c.expect(m.CONNACK, timeout=10).session_present is True
        p = c.expect(m.PUBLISH, timeout=10)
        assert p.payload == b"for everyone"
        c.send(m.puback(p.mid))
    for c in clients:
        sync_point(c)
    counts = wait_counts(b, messages=0, queued=0)
    assert counts["messages"] == 0 and counts["queued"] == 0, counts


def test_inspect_while_running(make_broker):
    b = pbroker(make_broker)
    a = durable(b, "insp-a", version=5, expiry=600)
    a.subscribe([("in/a", 1)])
    a.subscribe([("in/b/#", 2)])
    a.disconnect()
    c = durable(b, "insp-b")
    c.subscribe([("in/c", 0)])
    pub = b.connected("insp-pub")
    for i in range(3):
        pub.publish("in/a", b"0123456789", qos=1)
    pub.publish("in/r", b"kept", qos=1, retain=True)
    r = inspect("--data", data_dir(b), "-v")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "%s/data.mdb" % data_dir(b) in out, out
    assert re.search(r"^\s+size in use\s+\d+\.\d MiB$", out, re.M), out
    for pat, n in [("sessions", 2), ("subscriptions", 3), ("queued messages", 3),
                   ("stored messages", 4), ("retained", 1), (r"inbound QoS 2", 0)]:
        assert re.search(r"^\s+%s\s+%d\b" % (pat, n), out, re.M), (pat, out)
    # One row per session: id, protocol, expiry, queue depth, bytes, subscriptions.
    assert re.search(r"^\s+insp-a\s+5\.0\s+600s\s+3\s+30\s+2\s*$", out, re.M), out
    assert re.search(r"^\s+insp-b\s+3\.1\.1\s+never\s+0\s+0\s+1\s*$", out, re.M), out
    for sub in ("in/a (QoS 1)", "in/b/# (QoS 2)", "in/c (QoS 0)"):
        assert sub in out, out
    # --config finds the data directory from the configuration.
    r2 = inspect("--config", b.config_path)
    assert r2.returncode == 0 and "insp-a" in r2.stdout, r2.stderr
    # The broker was not disturbed.
    c.ping()
    assert b.running()
    a = durable(b, "insp-a", version=5)
    assert [p.payload for p in publishes(a, 3)] == [b"0123456789"] * 3


def test_inspect_without_store_fails_clearly(tmp_path):
    missing = tmp_path / "nothing-here"
    r = inspect("--data", str(missing))
    assert r.returncode == 1, r
    assert str(missing) in r.stderr and "no Petrel data store" in r.stderr, r.stderr
    assert not missing.exists()   # inspect never creates a store


# --------------------------------------------------------------------------
# damaged stores

def filled_store(make_broker):
    """A valid store with sessions, subscriptions, a queue and retained
    messages of some size; returns its (stopped) broker."""
    b = pbroker(make_broker)
    s = durable(b, "victim", version=5)
    s.subscribe([("dmg/#", 1)])
    s.disconnect()
    pub = b.connected("dmg-pub")
    big = bytes(random.Random(1).getrandbits(8) for _ in range(6000))
    for i in range(24):
        pub.publish("dmg/r%d" % i, big, qos=1, retain=True)
    b.stop()
    return b


def mdb_load(dbdir, database, records):
    """Write records (bytes key -> bytes value) into `database` of the LMDB
    environment in `dbdir` (None = the main database) with mdb_load."""
    exe = shutil.which("mdb_load")
    if exe is None:
        pytest.fail("mdb_load missing: apt-get install lmdb-utils")
    lines = ["VERSION=3", "format=bytevalue", "type=btree", "HEADER=END"]
    for k, v in records.items():
        lines += [" " + k.hex(), " " + v.hex()]
    lines.append("DATA=END")
    args = [exe] + (["-s", database] if database else []) + [dbdir]
    r = subprocess.run(args, input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr


def damage(kind, ddir):
    """Damages (or replaces) the store in `ddir`; returns what the error
    message must say."""
    path = os.path.join(ddir, "data.mdb")
    if kind == "truncated_half":
        size = os.path.getsize(path)
        assert size >= 16 * 4096, size
        os.truncate(path, size // 2 // 4096 * 4096)
        return "truncated"
    if kind == "truncated_short":
        os.truncate(path, 4096)
        return "truncated"
    if kind == "garbage":
        shutil.rmtree(ddir)
        os.makedirs(ddir)
        with open(path, "wb") as f:
            f.write(random.Random(64).randbytes(64 * 1024))
        return "not an LMDB file"
    if kind == "schema_newer":
        # One above the schema this Petrel writes (2).
        mdb_load(ddir, "meta", {b"schema": (3).to_bytes(4, "little")})
        return "schema version 3"
    if kind == "schema_older":
        mdb_load(ddir, "meta", {b"schema": (0).to_bytes(4, "little")})
        return "schema version 0"
    if kind == "foreign":
        shutil.rmtree(ddir)
        os.makedirs(ddir)
        mdb_load(ddir, None, {b"hello": b"world", b"answer": b"42"})
        return "not a Petrel data store"
    if kind == "bad_record":
        mdb_load(ddir, "sessions", {b"mangled": b"\x01\x05garbage"})
        return "corrupt session record for client 'mangled'"
    if kind == "bad_queue_entry":
        mdb_load(ddir, "queue", {b"mangled\x00" + (7).to_bytes(8, "big"): b"\x09short"})
        return "corrupt queue entry of client 'mangled'"
    if kind == "bad_message":
        mdb_load(ddir, "messages", {(999999).to_bytes(8, "big"): b"\x07not a message"})
        return "corrupt message record 999999"
    raise ValueError(kind)


DAMAGE = ["truncated_half", "truncated_short", "garbage", "schema_newer", "schema_older",
          "foreign", "bad_record", "bad_queue_entry", "bad_message"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_store_refused_with_on_corrupt_fail(make_broker, kind):
    b = filled_store(make_broker)
    ddir = data_dir(b)
    what = damage(kind, ddir)
    path = os.path.join(ddir, "data.mdb")
    before = sha256(path)
    t0 = time.monotonic()
    r = subprocess.run(b.argv, cwd=b.workdir, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=20)
    took = time.monotonic() - t0
    # Refused: a plain non-zero exit, not a signal (crash) ...
    assert r.returncode > 0, (r.returncode, r.stderr)
    assert took < 10, took
    # ... saying which file and what is wrong with it.
    assert path in r.stderr, r.stderr
    assert what in r.stderr, r.stderr
    assert "on_corrupt" in r.stderr, r.stderr
    # The damaged file is left as it was, nothing moved aside, no core.
    assert sha256(path) == before
    assert not glob.glob(path + ".corrupt-*")
    assert not glob.glob(os.path.join(b.workdir, "core*")) and not glob.glob(os.path.join(ddir, "core*"))


@pytest.mark.parametrize("kind", ["truncated_half", "garbage", "schema_newer", "foreign"])
def test_damaged_store_moved_aside(make_broker, kind):
    victim = filled_store(make_broker)
    ddir = data_dir(victim)
    what = damage(kind, ddir)
    path = os.path.join(ddir, "data.mdb")
    before = sha256(path)
    b = pbroker(make_broker, start=False, persistence={"dir": ddir, "on_corrupt": "move_aside"})
    b.start(timeout=10)
    aside = glob.glob(path + ".corrupt-*")
    assert len(aside) == 1, os.listdir(ddir)
    assert re.search(r"\.corrupt-\d{8}T\d{6}Z$", aside[0]), aside
    assert sha256(aside[0]) == before          # the damaged file, untouched
    log = b.log()
    assert what in log and aside[0] in log and "empty store" in log, log
    # Started empty, and works: a durable session, a retained message.
    s = durable(b, "victim", version=5)
    assert s.connack.session_present is False
    s.subscribe([("dmg/#", 1)])
    s.expect_nothing(0.3)     # the old retained messages are gone
    pub = b.connected("dmg-pub2")
    pub.publish("dmg/new", b"fresh", qos=1, retain=True)
    assert s.recv_publish().payload == b"fresh"
    s.go_offline()
    pub.publish("dmg/new2", b"queued", qos=1)
    # The new store is a good one: it survives a restart.
    restart(b, "term")
    s = durable(b, "victim", version=5)
    assert s.connack.session_present is True
    assert s.recv_publish().payload == b"queued"
    assert len(glob.glob(path + ".corrupt-*")) == 1


# --------------------------------------------------------------------------
# limits

@pytest.mark.parametrize("kind", ["truncated_half", "truncated_short", "garbage", "foreign", "bad_record"])
def test_inspect_of_damaged_store_fails_clearly(make_broker, kind):
    """`petrel inspect` of a damaged store: exit 1 with the file and what is
    wrong with it, no crash, no core, the file untouched. A truncated file
    is read through a page past its end: that walk is made in a child
    process, and only the child faults."""
    b = filled_store(make_broker)
    ddir = data_dir(b)
    what = damage(kind, ddir)
    path = os.path.join(ddir, "data.mdb")
    before = sha256(path)
    r = inspect("--data", ddir)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert path in r.stderr and what in r.stderr, r.stderr
    assert "Sanitizer" not in r.stderr, r.stderr
    assert sha256(path) == before
    assert not glob.glob(os.path.join(ddir, "core*")) and not glob.glob("core*")


def test_store_size_cap_drops_and_keeps_running(make_broker):
    b = pbroker(make_broker, persistence={"max_size_mb": 1}, limits={"max_queued_messages": 0})
    s = durable(b, "full-sub")
    s.subscribe([("full/t", 1)])
    s.disconnect()
    pub = b.connected("full-pub")
    payload = b"x" * 4000
    total = 400   # about 1.6 MB: more than the 1 MiB store can hold
    for i in range(total):
        pub.publish("full/t", b"%04d" % i + payload, qos=1)   # each one acknowledged
    assert b.running()
    log = b.log()
    assert "90% full" in log and "persistence.max_size_mb" in log, log[-3000:]
    assert "dropping messages" in log, log[-3000:]
    # What was kept arrives, in order, from the first message on.
    s = durable(b, "full-sub")
    assert s.connack.session_present is True
    got = []
    while True:
        try:
            got.append(s.recv_publish(timeout=1.0))
        except m.ReadTimeout:
            break
    nums = [int(p.payload[:4]) for p in got]
    assert 0 < len(nums) < total, len(nums)
    assert nums == list(range(len(nums))), nums[:20]
    # The broker still works for everyone.
    pub.ping()
    assert b.running()


def test_store_size_cap_recovers_after_drain(make_broker):
    """Once a full store's queue has been delivered and acknowledged, the
    space is free again: new messages for durable sessions are kept (the
    cap is on what is stored, not on the file's high-water mark)."""
    b = pbroker(make_broker, persistence={"max_size_mb": 1}, limits={"max_queued_messages": 0})
    s = durable(b, "full-sub")
    s.subscribe([("full/t", 1)])
    s.disconnect()
    pub = b.connected("full-pub")
    payload = b"x" * 4000
    for i in range(400):
        pub.publish("full/t", b"%04d" % i + payload, qos=1)
    s = durable(b, "full-sub")
    n = 0
    while True:
        try:
            s.recv_publish(timeout=1.0)
            n += 1
        except m.ReadTimeout:
            break
    assert n > 0
    sync_point(s)
    counts = wait_counts(b, queued=0, messages=0)
    assert counts["queued"] == 0 and counts["messages"] == 0, counts
    s.disconnect()
    time.sleep(0.2)
    pub.publish("full/t", b"after-drain", qos=1)
    s = durable(b, "full-sub")
    p = s.recv_publish(timeout=3)
    assert p.payload == b"after-drain"


@pytest.mark.parametrize("limit", ["max_queued_messages", "max_queued_bytes"])
def test_queue_limits_for_offline_durable_session(make_broker, limit):
    # Five messages fit either way: 5 entries, or 5 x 200 payload bytes.
    limits = {"max_queued_messages": 5} if limit == "max_queued_messages" else \
        {"max_queued_messages": 0, "max_queued_bytes": 1000}
    b = pbroker(make_broker, limits=limits)
    s = durable(b, "ql-sub")
    s.subscribe([("ql/t", 1)])
    s.disconnect()
    pub = b.connected("ql-pub")

    def msg(i):
        return (b"%03d" % i).ljust(200, b".")

    for i in range(3):
        pub.publish("ql/t", msg(i), qos=1)
    # The queue's depth and size are counted from the store after a restart.
    restart(b, "term")
    pub = b.connected("ql-pub")
    for i in range(3, 9):
        pub.publish("ql/t", msg(i), qos=1)
    assert "queue limit reached (limits.%s)" % limit in b.log(), b.log()[-3000:]
    s = durable(b, "ql-sub")
    assert s.connack.session_present is True
    got = publishes(s, 5)
    assert [p.payload for p in got] == [msg(i) for i in range(5)]
    s.expect_nothing(0.5)
    # Delivered and acknowledged: room again.
    sync_point(s)
    pub.publish("ql/t", msg(99), qos=1)
    assert s.recv_publish().payload == msg(99)
