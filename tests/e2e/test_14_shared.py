"""Shared subscriptions as work queues: `$share/<group>/<filter>`.

What is checked here, end to end with raw clients:

* each message of a group goes to exactly one member; other groups and
  ordinary subscriptions on the same topics get their own copies;
* the group holds the queue: members get what their window (Receive
  Maximum, or limits.max_inflight for MQTT 3.1.1) allows, a slow member
  does not hold the others back, and messages left unacknowledged by a
  member whose socket dies go to another member;
* with every member offline the group keeps queueing (bounded by
  shared.max_queued_messages, drops counted) and hands everything to the
  first member back, also after a restart or a SIGKILL of the broker;
* the member strategies, broker-wide (`shared: {strategy: X}`) and per
  group (`shared: {groups: {name: X}}`);
* per-publisher order for each member, the SIGUSR1 report, `petrel
  inspect`, and the protocol edges (No Local, invalid share names, no
  retained messages on a shared subscribe).

Payloads are "<publisher>:<n>" so that every test can tell exactly which
message went where.
"""

import collections
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import mqttraw as m
from conftest import PETREL_BIN, poll_until

pytestmark = pytest.mark.petrel_only

STRATEGIES = ["round_robin", "random", "sticky", "hash_clientid", "hash_topic", "least_inflight"]

REPORT_RE = re.compile(
    r"share group (?P<name>[^/\s]+)/(?P<filter>\S+): strategy (?P<strategy>\w+), "
    r"members (?P<members>\d+) \((?P<online>\d+) online\), queued (?P<queued>\d+), "
    r"in flight (?P<inflight>\d+), delivered (?P<delivered>\d+), "
    r"redelivered (?P<redelivered>\d+), dropped (?P<dropped>\d+)")


# --------------------------------------------------------------------------
# helpers

def v5props(expiry=None, receive_max=None):
    p = {}
    if expiry is not None:
        p["session_expiry_interval"] = expiry
    if receive_max is not None:
        p["receive_maximum"] = receive_max
    return p or None


def member(b, cid, version=5, durable=False, receive_max=None, flt=None, qos=1):
    """Connect a client and (if `flt` is given) subscribe it; return it."""
    if version == 5:
        c = b.connected(cid, version=5, clean=not durable,
                        props=v5props(300 if durable else None, receive_max))
    else:
        c = b.connected(cid, version=version, clean=not durable)
    if flt is not None:
        ack = c.subscribe((flt, qos))
        assert ack.codes == [qos], "SUBACK for %s: %r" % (flt, ack)
    return c


def payload_key(p):
    """("pub", n) from a payload b"pub:n"."""
    who, n = p.payload.split(b":")
    return who.decode(), int(n)


def msgs(who, count, start=1):
    return [b"%s:%d" % (who.encode(), i) for i in range(start, start + count)]


def publish_many(c, topic, payloads, qos=1, window=10):
    """Publish `payloads` (QoS 1 or 2) with up to `window` unacknowledged at
    a time; return once every one is acknowledged. `topic` may be a string
    or a function of the index. Returns the v5 reason codes seen."""
    outstanding = set()
    reasons = []

    def reap():
        pkt = c.recv(10)
        if pkt.type == m.PUBACK or pkt.type == m.PUBCOMP:
            assert pkt.mid in outstanding, "ack for unknown id: %r" % (pkt,)
            outstanding.discard(pkt.mid)
            reasons.append(pkt.reason or 0)
        elif pkt.type == m.PUBREC:
            assert (pkt.reason or 0) < 0x80, "PUBREC %r" % (pkt,)
            c.send(m.pubrel(pkt.mid))
        else:
            raise AssertionError("publisher got %r" % (pkt,))

    for i, p in enumerate(payloads):
        while len(outstanding) >= window:
            reap()
        mid = c.next_mid()
        t = topic(i) if callable(topic) else topic
        c.send(m.publish(t, p, qos, mid=mid, v5=c.v5))
        outstanding.add(mid)
    while outstanding:
        reap()
    assert all(r < 0x80 for r in reasons), reasons
    return reasons


class Consumer:
    """Reads PUBLISHes of one client in a thread and records them.

    ack="now": acknowledge at once; ack="never": keep them unacknowledged;
    ack=<seconds>: acknowledge the oldest one every that many seconds.
    Setting `ack_mode` from "now" to "never" later stops acknowledging.
    `max_unacked` is the most unacknowledged PUBLISHes held at any time."""

    def __init__(self, client, ack="now"):
        self.c = client
        self.ack_mode = ack
        self.got = []
        self.unacked = []
        self.max_unacked = 0
        self.other = []
        self.error = None
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        delay = self.ack_mode if isinstance(self.ack_mode, float) else None
        next_ack = time.monotonic() + (delay or 0)
        try:
            while not self.stop_ev.is_set():
                if delay is not None and self.unacked and time.monotonic() >= next_ack:
                    self.c.ack(self.unacked.pop(0))
                    next_ack = time.monotonic() + delay
                try:
                    p = self.c.recv(0.02)
                except m.ReadTimeout:
                    continue
                if p.type != m.PUBLISH:
                    with self.lock:
                        self.other.append(p)
                    continue
                with self.lock:
                    self.got.append(p)
                if p.qos == 0:
                    continue
                if self.ack_mode == "now":
                    self.c.ack(p)
                else:
                    if not self.unacked:
                        next_ack = time.monotonic() + (delay or 0)
                    self.unacked.append(p)
                    self.max_unacked = max(self.max_unacked, len(self.unacked))
        except (m.ConnectionClosed, OSError):
            pass
        except Exception as e:  # surfaced by stop()
            self.error = e

    def count(self):
        with self.lock:
            return len(self.got)

    def keys(self):
        with self.lock:
            return [payload_key(p) for p in self.got]

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)
        assert not self.thread.is_alive(), "consumer thread did not stop"
        if self.error is not None:
            raise self.error
        return self


def wait_until(cond, timeout, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


def settle(consumers, quiet=0.3, timeout=10):
    """Wait until no consumer got anything new for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        now = tuple(c.count() for c in consumers)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.02)


def assert_exactly_once(consumers, expected):
    """Every expected key arrived exactly once across `consumers`."""
    seen = collections.Counter()
    for c in consumers:
        seen.update(c.keys())
    dups = sorted(k for k, n in seen.items() if n > 1)
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    assert not dups, "delivered more than once: %r%s" % (dups[:10], " ..." if len(dups) > 10 else "")
    assert not missing, "never delivered (%d): %r" % (len(missing), missing[:10])
    assert not extra, "unexpected: %r" % (extra[:10],)


def assert_publisher_order(keys, who=""):
    """Per publisher, the numbers a member got are strictly increasing."""
    last = {}
    for pub, n in keys:
        assert n > last.get(pub, 0), "%s: %s:%d after %s:%d" % (who, pub, n, pub, last[pub])
        last[pub] = n


def drain(c, n, timeout=5.0, ack=True):
    """Read exactly `n` PUBLISHes from a client (acknowledging them)."""
    out = []
    for _ in range(n):
        out.append(c.recv_publish(timeout=timeout, ack=ack))
    return out


def group_report(b, timeout=5.0):
    """Send SIGUSR1 and return {"name/filter": fields} from the report."""
    start = len(b.log())
    b.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while True:
        text = b.log()[start:]
        if "report:" in text:
            time.sleep(0.1)  # the group lines follow the report line
            text = b.log()[start:]
            break
        if time.monotonic() > deadline:
            raise AssertionError("no report in the log within %.1fs of SIGUSR1:\n%s" % (timeout, text))
        time.sleep(0.02)
    out = {}
    for mm in REPORT_RE.finditer(text[text.index("report:"):]):
        d = {k: (int(v) if v.isdigit() else v) for k, v in mm.groupdict().items()}
        out["%s/%s" % (d["name"], d["filter"])] = d
    return out, text


def restart(b, how):
    """Stop the broker (SIGTERM or SIGKILL), start it on the same data."""
    if how == "term":
        b.stop()
    else:
        b.kill()
        assert b.proc.returncode == -signal.SIGKILL
    b.start(timeout=10)


def inspect(b):
    if not os.access(PETREL_BIN, os.X_OK):
        pytest.skip("broker binary not found: %s" % PETREL_BIN)
    r = subprocess.run([PETREL_BIN, "inspect", "--data", b.config["persistence"]["dir"]],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return r.stdout


def queued_total(text):
    mm = re.search(r"^\s+queued messages\s+(\d+)", text, re.M)
    assert mm, text
    return int(mm.group(1))


def persistent(make_broker, **overrides):
    return make_broker(persistence={"enabled": True}, **overrides)


# --------------------------------------------------------------------------
# one message, one member

def test_exactly_once_per_group_mixed_versions(make_broker):
    """3 members (two v5, one v3.1.1), two publishers, 2000 QoS 1 messages:
    each exactly once in the group, every member gets some, and each
    member sees each publisher's messages in publish order."""
    b = make_broker(log_level="info")
    flt = "$share/workers/work/+"
    cons = [Consumer(member(b, "w1", 5, receive_max=20, flt=flt)),
            Consumer(member(b, "w2", 5, flt=flt)),
            Consumer(member(b, "w3", 4, flt=flt))]
    pubs = [("pa", b.connected("pa", version=5)), ("pb", b.connected("pb", version=4))]
    errors = []

    def run_pub(who, c):
        try:
            publish_many(c, "work/" + who, msgs(who, 1000))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run_pub, args=p, daemon=True) for p in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    assert not errors, errors
    wait_until(lambda: sum(c.count() for c in cons) >= 2000, 15, "2000 deliveries")
    settle(cons)
    for c in cons:
        c.stop()
    expected = [(w, i) for w in ("pa", "pb") for i in range(1, 1001)]
    assert_exactly_once(cons, expected)
    counts = [c.count() for c in cons]
    # Round robin skips a member whose window is full, so the member with
    # the largest window may take more; every member still gets its share.
    assert all(n >= 100 for n in counts), "round robin over 3 members: %r" % counts
    for i, c in enumerate(cons):
        assert_publisher_order(c.keys(), "w%d" % (i + 1))
        assert not any(p.dup for p in c.got)
        assert all(p.qos == 1 for p in c.got)
        assert not c.other, c.other


def test_groups_and_plain_subscribers_each_get_a_copy(make_broker):
    """Group A (2 members), group B (1 member) and a plain subscriber on the
    same topics: A splits the messages, B and the plain subscriber get
    every one. B's member also holds a plain subscription and so gets two
    copies of each (a shared subscription is never merged with others)."""
    b = make_broker()
    a1 = Consumer(member(b, "a1", 5, flt="$share/A/news/#"))
    a2 = Consumer(member(b, "a2", 4, flt="$share/A/news/#"))
    bc = member(b, "b1", 5, flt="$share/B/news/+")
    assert bc.subscribe(("news/+", 1)).codes == [1]
    b1 = Consumer(bc)
    plain = Consumer(member(b, "plain", 4, flt="news/#"))
    pub = b.connected("pub", version=5)
    publish_many(pub, "news/x", msgs("p", 200))
    wait_until(lambda: a1.count() + a2.count() >= 200 and b1.count() >= 400 and plain.count() >= 200,
               10, "all copies")
    settle([a1, a2, b1, plain])
    for c in (a1, a2, b1, plain):
        c.stop()
    expected = [("p", i) for i in range(1, 201)]
    assert_exactly_once([a1, a2], expected)
    assert a1.count() > 0 and a2.count() > 0
    assert sorted(plain.keys()) == expected
    assert sorted(b1.keys()) == sorted(expected * 2)


def test_v311_members_and_qos(make_broker):
    """A group of MQTT 3.1.1 clients: SUBACK grants the QoS asked for, each
    message reaches one member, at the QoS granted to that member."""
    b = make_broker()
    q2 = Consumer(member(b, "m-q2", 4, flt="$share/old/v3/#", qos=2))
    q0 = Consumer(member(b, "m-q0", 4, flt="$share/old/v3/#", qos=0))
    pub = b.connected("pub3", version=4)
    publish_many(pub, "v3/t", msgs("p", 40), qos=2)
    wait_until(lambda: q2.count() + q0.count() >= 40, 10, "40 deliveries")
    settle([q2, q0])
    q2.stop()
    q0.stop()
    assert_exactly_once([q2, q0], [("p", i) for i in range(1, 41)])
    assert q2.count() > 0 and q0.count() > 0
    assert all(p.qos == 2 for p in q2.got)
    assert all(p.qos == 0 for p in q0.got)
    assert_publisher_order(q2.keys(), "m-q2")
    assert_publisher_order(q0.keys(), "m-q0")


# --------------------------------------------------------------------------
# windows, slow and dead members

def test_slow_member_gets_its_window_only_and_does_not_hold_back(make_broker):
    """A v5 member with Receive Maximum 2 acknowledging every 50 ms never
    holds more than 2; a fast member takes the rest, so 200 messages are
    through long before the slow one could have taken its half."""
    b = make_broker()
    flt = "$share/sl/jobs/#"
    slow = Consumer(member(b, "slow", 5, receive_max=2, flt=flt), ack=0.05)
    fast = Consumer(member(b, "fast", 5, flt=flt))
    pub = b.connected("pub", version=4)
    t0 = time.monotonic()
    publish_many(pub, "jobs/a", msgs("p", 200))
    wait_until(lambda: slow.count() + fast.count() >= 200, 8, "200 deliveries")
    elapsed = time.monotonic() - t0
    settle([slow, fast], quiet=0.2)
    slow.stop()
    fast.stop()
    assert_exactly_once([slow, fast], [("p", i) for i in range(1, 201)])
    assert slow.max_unacked <= 2, "slow member held %d unacknowledged" % slow.max_unacked
    assert fast.count() >= 150, (slow.count(), fast.count())
    # At 50 ms per acknowledgement the slow member alone needs > 5 s for
    # 100 messages; the group is done well before that.
    assert elapsed < 4.0, elapsed
    assert_publisher_order(slow.keys(), "slow")
    assert_publisher_order(fast.keys(), "fast")


@pytest.mark.parametrize("durable", [False, True], ids=["clean", "durable"])
def test_dead_member_messages_go_to_another_member(make_broker, durable):
    """A member (Receive Maximum 10) receives without acknowledging; its
    socket is then closed without DISCONNECT: what it held goes to the
    other member, nothing is lost. A durable dead member stays in the group
    offline and is not picked while the other member is online."""
    b = make_broker()
    flt = "$share/d/q/#"
    dead = Consumer(member(b, "dead", 5, durable=durable, receive_max=10, flt=flt), ack="never")
    live = Consumer(member(b, "live", 5, receive_max=10, flt=flt))
    pub = b.connected("pub", version=5)
    publish_many(pub, "q/1", msgs("p", 100))
    wait_until(lambda: dead.count() >= 10, 5, "the dead member's window to fill")
    settle([dead, live], quiet=0.2)
    assert dead.count() == 10, dead.count()
    held = set(dead.keys())
    dead.c.close()  # no DISCONNECT
    dead.stop()
    wait_until(lambda: live.count() >= 100, 10, "all 100 at the live member")
    if durable:
        publish_many(pub, "q/1", msgs("p", 50, start=101))
        wait_until(lambda: live.count() >= 150, 10, "the next 50 at the live member")
    settle([live], quiet=0.3)
    live.stop()
    n = 150 if durable else 100
    got = live.keys()
    assert sorted(got) == [("p", i) for i in range(1, n + 1)], \
        "live member: %d messages, missing %r" % (len(got), sorted(set(("p", i) for i in range(1, n + 1)) - set(got))[:10])
    assert held <= set(got)
    # The messages that were not handed back keep publish order.
    assert_publisher_order([k for k in got if k not in held], "live")
    report, text = group_report(b)
    g = report.get("d/q/#")
    assert g, text
    assert g["members"] == (2 if durable else 1) and g["online"] == 1, g
    assert g["redelivered"] == 10 and g["queued"] == 0 and g["inflight"] == 0, g


def test_qos2_released_by_a_member_that_left_is_not_delivered_again(make_broker):
    """A clean member got a QoS 2 message, sent PUBREC (so it has it) and got
    PUBREL, then its socket died before PUBCOMP. Its session ends with it:
    the group has nothing in flight any more, and the message is not
    delivered again - neither to the group's durable member (offline, so
    the group queue is stored) after a restart."""
    b = persistent(make_broker)
    flt = "$share/q2/q2/#"
    d = member(b, "q2-durable", 5, durable=True, flt=flt, qos=2)
    d.disconnect()
    c = member(b, "q2-clean", 5, flt=flt, qos=2)
    pub = b.connected("p", version=4)
    publish_many(pub, "q2/t", msgs("p", 1), qos=2)
    p = c.recv_publish(timeout=3, ack=False)
    assert p.qos == 2 and payload_key(p) == ("p", 1)
    c.send(m.pubrec(p.mid))
    c.wait_for(m.PUBREL, p.mid, timeout=3)
    c.close()  # no PUBCOMP, no DISCONNECT
    wait_until(lambda: "client q2-clean disconnected" in b.log(), 3, "the clean member to leave")
    report, text = group_report(b)
    g = report["q2/q2/#"]
    assert (g["members"], g["online"], g["queued"]) == (1, 0, 0), g
    problems = []
    if g["inflight"] != 0:
        problems.append("the group still counts the message in flight: %r" % (g,))
    restart(b, "term")
    d = member(b, "q2-durable", 5, durable=True)
    assert d.connack.session_present
    try:
        again = d.recv(0.5)
    except m.ReadTimeout:
        again = None
    if again is not None:
        problems.append("delivered again after the restart: %r" % (again,))
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# queues outlive their consumers

def test_all_members_offline_queue_waits_for_first_reconnect(make_broker):
    """Durable members (v3.1.1 clean_session=0, v5 session expiry) all
    offline: the group keeps 100 messages and hands all of them, in order,
    to the first member that comes back."""
    b = make_broker()
    flt = "$share/off/jobs/#"
    m1 = member(b, "off-1", 4, durable=True, flt=flt)
    m2 = member(b, "off-2", 5, durable=True, flt=flt)
    m1.disconnect()
    m2.close()  # no DISCONNECT: just as offline
    time.sleep(0.1)
    pub = b.connected("pub", version=4)
    publish_many(pub, "jobs/x", msgs("p", 100))
    report, text = group_report(b)
    g = report.get("off/jobs/#")
    assert g, text
    assert (g["members"], g["online"], g["queued"]) == (2, 0, 100), g
    c = member(b, "off-2", 5, durable=True)
    assert c.connack.session_present
    got = drain(c, 100)
    assert [payload_key(p) for p in got] == [("p", i) for i in range(1, 101)]
    c.expect_nothing(0.3)
    # The other member, back later, gets nothing twice.
    c1 = member(b, "off-1", 4, durable=True)
    assert c1.connack.session_present
    c1.expect_nothing(0.3)


@pytest.mark.parametrize("how", ["term", "kill"])
def test_group_queue_survives_restart(make_broker, how):
    """Members offline, 100 QoS 1 messages acknowledged to the publisher,
    broker stopped (SIGTERM or SIGKILL) and restarted on the same store:
    the first member back gets all 100, in order, once."""
    b = persistent(make_broker)
    flt = "$share/kq/jobs/#"
    m1 = member(b, "kq-1", 4, durable=True, flt=flt)
    m2 = member(b, "kq-2", 5, durable=True, flt=flt)
    m1.disconnect()
    m2.disconnect()
    time.sleep(0.1)
    pub = b.connected("kq-pub", version=5)
    publish_many(pub, "jobs/x", msgs("p", 100))
    pub.close()
    restart(b, how)
    report, text = group_report(b)
    g = report.get("kq/jobs/#")
    assert g, "group not restored:\n%s" % text
    assert (g["members"], g["online"], g["queued"]) == (2, 0, 100), g
    c = member(b, "kq-1", 4, durable=True)
    assert c.connack.session_present
    got = drain(c, 100)
    assert [payload_key(p) for p in got] == [("p", i) for i in range(1, 101)]
    c.expect_nothing(0.3)
    c2 = member(b, "kq-2", 5, durable=True)
    assert c2.connack.session_present
    c2.expect_nothing(0.3)


def test_inflight_at_kill9_goes_to_a_member_after_restart(make_broker):
    """A member holds 10 unacknowledged messages of its group (30 more
    wait in the queue) when the broker is killed with SIGKILL. After the
    restart the other member gets all 40; nothing is stuck with the first."""
    b = persistent(make_broker)
    flt = "$share/kf/jobs/#"
    hold = member(b, "kf-hold", 5, durable=True, receive_max=10, flt=flt)
    other = member(b, "kf-other", 4, durable=True, flt=flt)
    other.disconnect()
    time.sleep(0.1)
    pub = b.connected("kf-pub", version=4)
    publish_many(pub, "jobs/y", msgs("p", 40))
    held = drain(hold, 10, ack=False)
    hold.expect_nothing(0.2)
    restart(b, "kill")
    c = member(b, "kf-other", 4, durable=True)
    assert c.connack.session_present
    got = drain(c, 40)
    assert sorted(payload_key(p) for p in got) == [("p", i) for i in range(1, 41)]
    assert {payload_key(p) for p in held} <= {payload_key(p) for p in got}
    c.expect_nothing(0.3)
    h = member(b, "kf-hold", 5, durable=True, receive_max=10)
    assert h.connack.session_present
    h.expect_nothing(0.3)


def stored_counts(b):
    """(queue entries, stored messages) as `petrel inspect` shows them."""
    text = inspect(b)
    mm = re.search(r"^\s+stored messages\s+(\d+)", text, re.M)
    assert mm, text
    return queued_total(text), int(mm.group(1))


def wait_stored_counts(b, want, timeout=5.0):
    return poll_until(lambda: stored_counts(b), want, timeout)


@pytest.mark.parametrize("how", ["term", "kill"])
@pytest.mark.parametrize("count", [20, 100000])
def test_group_whose_last_member_left_holds_and_takes_nothing(make_broker, how, count):
    """The only member of a group is a durable session, offline while
    `count` QoS 1 messages queue in the group (100,000 is 100 times the
    group's RAM window, and `shared.max_queued_messages`); then its session
    ends (a clean start). The group's subscription ends with it, and so
    does its queue, at once, as a restart always did with it: the store
    holds nothing, messages published afterwards match no subscriber
    (MQTT 5 PUBACK 0x10) and are not kept, and a member that joins after a
    restart gets nothing."""
    b = persistent(make_broker)
    flt = "$share/gone/jobs/#"
    m1 = member(b, "gone-1", 5, durable=True, flt=flt)
    m1.disconnect()
    time.sleep(0.1)
    pub = b.connected("gone-pub", version=5)
    assert publish_many(pub, "jobs/x", msgs("p", count), window=50) == [0] * count
    assert wait_stored_counts(b, (count, count)) == (count, count)
    c = b.connected("gone-1", version=5, clean=True)
    assert not c.connack.session_present
    c.go_offline()
    assert publish_many(pub, "jobs/x", msgs("q", 3)) == [0x10] * 3
    pub.disconnect()
    assert wait_stored_counts(b, (0, 0)) == (0, 0)
    restart(b, how)
    assert stored_counts(b) == (0, 0)
    c2 = member(b, "gone-2", 5, durable=True, flt=flt)
    c2.expect_nothing(0.5)


@pytest.mark.parametrize("count", [20, 2500, 100000])
def test_group_whose_last_member_unsubscribed_keeps_only_what_is_in_flight(make_broker, count):
    """The only member of a group holds 5 unacknowledged messages (its
    Receive Maximum) of `count`, then unsubscribes: the queued ones go
    (with 2,500 and 100,000, 2.5 and 100 times the group's RAM window,
    those still on disk go once nothing is in flight; 100,000 is also
    `shared.max_queued_messages`), the 5 in flight stay with it until it
    acknowledges them, and a message published afterwards matches no
    subscriber. Once it has acknowledged the 5, the store holds nothing,
    and the group itself is gone (the SIGUSR1 report no longer lists it)."""
    b = persistent(make_broker)
    flt = "$share/left/jobs/#"
    c = member(b, "left-1", 5, durable=True, receive_max=5, flt=flt)
    pub = b.connected("left-pub", version=5)
    publish_many(pub, "jobs/x", msgs("p", count), window=50)
    held = drain(c, 5, ack=False)
    c.expect_nothing(0.2)
    assert wait_stored_counts(b, (count, count)) == (count, count)
    c.unsubscribe(flt)
    if count == 20:
        assert wait_stored_counts(b, (5, 5)) == (5, 5)
    assert publish_many(pub, "jobs/x", msgs("q", 2)) == [0x10] * 2
    report, text = group_report(b)
    assert report["left/jobs/#"]["members"] == 0 and report["left/jobs/#"]["inflight"] == 5, text
    for p in held:
        c.ack(p)
    c.expect_nothing(0.3)
    assert wait_stored_counts(b, (0, 0)) == (0, 0)
    report, text = group_report(b)
    assert report == {}, text
    b.stop()
    assert stored_counts(b) == (0, 0)


def test_inspect_shows_group_queue(make_broker):
    """`petrel inspect --data DIR` on the store of a broker whose group
    holds 25 messages: the queue entries are counted, and the group's queue
    is shown with its name and depth."""
    b = persistent(make_broker)
    m1 = member(b, "iq-1", 5, durable=True, flt="$share/inspq/iq/#")
    m1.disconnect()
    time.sleep(0.1)
    pub = b.connected("iq-pub", version=4)
    publish_many(pub, "iq/a", msgs("p", 25))
    pub.disconnect()
    b.stop()
    text = inspect(b)
    assert queued_total(text) == 25, text
    lines = [ln for ln in text.splitlines() if "inspq" in ln]
    assert lines, "the group's queue is not shown by petrel inspect:\n%s" % text
    assert any(re.search(r"\b25\b", ln) for ln in lines), text


def test_queue_limit_drops_and_counts(make_broker):
    """shared.max_queued_messages: 50, members offline, 80 published: the
    first 50 arrive on reconnect, the report counts 30 dropped."""
    b = make_broker(shared={"max_queued_messages": 50})
    flt = "$share/lim/l/#"
    m1 = member(b, "lim-1", 5, durable=True, flt=flt)
    m2 = member(b, "lim-2", 4, durable=True, flt=flt)
    m1.disconnect()
    m2.disconnect()
    time.sleep(0.1)
    pub = b.connected("pub", version=4)
    publish_many(pub, "l/x", msgs("p", 80))
    report, text = group_report(b)
    g = report.get("lim/l/#")
    assert g, text
    assert (g["queued"], g["dropped"]) == (50, 30), g
    c = member(b, "lim-1", 5, durable=True)
    got = drain(c, 50)
    assert [payload_key(p) for p in got] == [("p", i) for i in range(1, 51)]
    c.expect_nothing(0.3)
    report, text = group_report(b)
    g = report["lim/l/#"]
    assert (g["queued"], g["inflight"], g["delivered"], g["dropped"]) == (0, 0, 50, 30), g
    assert "shared.max_queued_messages" in b.log()


# --------------------------------------------------------------------------
# strategies

def run_strategy(b, flt, members, publishers, timeout=10):
    """Connect consumers (list of (cid, version, receive_max, ack)), publish
    from each publisher (list of (cid, topic function, count)) and return
    the consumers once everything arrived."""
    cons = [Consumer(member(b, cid, v, receive_max=rm, flt=flt), ack=ack)
            for cid, v, rm, ack in members]
    total = 0
    for cid, topic, count in publishers:
        c = b.connected(cid, version=4)
        publish_many(c, topic, msgs(cid, count))
        total += count
    wait_until(lambda: sum(c.count() for c in cons) >= total, timeout, "%d deliveries" % total)
    settle(cons, quiet=0.2)
    for c in cons:
        c.stop()
    expected = [(cid, i) for cid, _, count in publishers for i in range(1, count + 1)]
    assert_exactly_once(cons, expected)
    for c in cons:
        assert_publisher_order(c.keys())
    return cons


# The broker caps every client's window at limits.max_inflight (20 in these
# tests); the spreading tests want windows that never fill.
WIDE = {"max_inflight": 65535}


def three(mixed=False):
    """Three members. Equal ones (v5, no Receive Maximum; with a WIDE broker
    a window never fills and no member is skipped) unless `mixed`: then the
    second is an MQTT 3.1.1 client with the window limits.max_inflight."""
    return [("s1", 5, None, "now"), ("s2", 4 if mixed else 5, None, "now"), ("s3", 5, None, "now")]


def test_round_robin_default_spreads_evenly(make_broker):
    b = make_broker(limits=WIDE)
    cons = run_strategy(b, "$share/rr/rr/#", three(), [("p", "rr/t", 300)])
    counts = [c.count() for c in cons]
    assert all(80 <= n <= 120 for n in counts), counts
    report, text = group_report(b)
    assert report["rr/rr/#"]["strategy"] == "round_robin", text


def test_random_every_member_gets_some(make_broker):
    b = make_broker(shared={"strategy": "random"}, limits=WIDE)
    cons = run_strategy(b, "$share/rnd/rnd/#", three(), [("p", "rnd/t", 300)])
    counts = [c.count() for c in cons]
    assert all(n >= 40 for n in counts), counts
    report, text = group_report(b)
    assert report["rnd/rnd/#"]["strategy"] == "random", text


def test_sticky_one_member_gets_all_while_online(make_broker):
    """Broker-wide sticky: one member gets all 60; once it is gone, one of
    the others gets all of the next 60. A group configured round_robin on
    the same broker still spreads."""
    b = make_broker(shared={"strategy": "sticky", "groups": {"spread": "round_robin"}})
    flt = "$share/st/st/#"
    cons = [Consumer(member(b, "st%d" % i, 5, flt=flt)) for i in range(3)]
    spread = [Consumer(member(b, "sp%d" % i, 5, flt="$share/spread/st/#")) for i in range(2)]
    pub = b.connected("p", version=4)
    publish_many(pub, "st/t", msgs("p", 60))
    wait_until(lambda: sum(c.count() for c in cons) >= 60, 10, "60 deliveries")
    wait_until(lambda: sum(c.count() for c in spread) >= 60, 10, "60 deliveries (spread)")
    settle(cons + spread, quiet=0.2)
    counts = [c.count() for c in cons]
    assert sorted(counts) == [0, 0, 60], counts
    assert all(c.count() >= 20 for c in spread), [c.count() for c in spread]
    first = counts.index(60)
    cons[first].c.close()
    cons[first].stop()
    rest = [c for i, c in enumerate(cons) if i != first]
    time.sleep(0.1)
    publish_many(pub, "st/t", msgs("p", 60, start=61))
    wait_until(lambda: sum(c.count() for c in rest) >= 60, 10, "the next 60")
    settle(rest + spread, quiet=0.2)
    for c in rest + spread:
        c.stop()
    assert sorted(c.count() for c in rest) == [0, 60], [c.count() for c in rest]
    assert_exactly_once(spread, [("p", i) for i in range(1, 121)])
    report, text = group_report(b)
    assert report["st/st/#"]["strategy"] == "sticky", text
    assert report["spread/st/#"]["strategy"] == "round_robin", text


def test_hash_clientid_per_group(make_broker):
    """hash_clientid configured for one group only: all messages of one
    publisher go to one member; the group next to it (broker default,
    round_robin) spreads each publisher over its members."""
    b = make_broker(shared={"groups": {"hc": "hash_clientid"}}, limits=WIDE)
    flt = "$share/hc/hc/#"
    cons = [Consumer(member(b, "h%d" % i, 5 if i % 2 else 4, flt=flt)) for i in range(3)]
    rr = [Consumer(member(b, "r%d" % i, 5, flt="$share/rrg/hc/#")) for i in range(2)]
    pubs = [("pubA", 60), ("pubB", 60), ("pubC", 60)]
    for cid, n in pubs:
        publish_many(b.connected(cid, version=4), "hc/t", msgs(cid, n))
    wait_until(lambda: sum(c.count() for c in cons) >= 180 and sum(c.count() for c in rr) >= 180,
               10, "180 deliveries per group")
    settle(cons + rr, quiet=0.2)
    for c in cons + rr:
        c.stop()
    expected = [(cid, i) for cid, n in pubs for i in range(1, n + 1)]
    assert_exactly_once(cons, expected)
    assert_exactly_once(rr, expected)
    for cid, _ in pubs:
        holders = [i for i, c in enumerate(cons) if any(k[0] == cid for k in c.keys())]
        assert len(holders) == 1, "%s's messages went to members %r" % (cid, holders)
        for c in rr:
            assert sum(1 for k in c.keys() if k[0] == cid) >= 15, "round_robin group: %r" % (c.keys(),)
    for c in cons:
        assert_publisher_order(c.keys())
    report, text = group_report(b)
    assert report["hc/hc/#"]["strategy"] == "hash_clientid", text
    assert report["rrg/hc/#"]["strategy"] == "round_robin", text


def test_hash_topic(make_broker):
    """hash_topic: all messages of one topic go to one member."""
    b = make_broker(shared={"strategy": "hash_topic"})
    topics = ["ht/a", "ht/b", "ht/c", "ht/d", "ht/e"]
    cons = run_strategy(b, "$share/ht/ht/+", three(mixed=True),
                        [("p", lambda i: topics[i % len(topics)], 200)])
    for i, t in enumerate(topics):
        nums = {n for n in range(1, 201) if (n - 1) % len(topics) == i}
        holders = [j for j, c in enumerate(cons) if nums & {k[1] for k in c.keys()}]
        assert len(holders) == 1, "topic %s went to members %r" % (t, holders)
    for c in cons:
        for p in c.got:
            assert p.topic == topics[(payload_key(p)[1] - 1) % len(topics)]


def test_hash_topic_busy_member_does_not_hold_back_other_topics(make_broker):
    """hash_topic with two members: while the member of topic A has a full
    window (it stopped acknowledging), messages of a topic B that maps to
    the other member keep flowing to that member; A's messages wait for
    their member."""
    b = make_broker(shared={"strategy": "hash_topic"})
    flt = "$share/hb/hb/+"
    x = Consumer(member(b, "hb-x", 5, receive_max=2, flt=flt))
    y = Consumer(member(b, "hb-y", 5, receive_max=2, flt=flt))
    pub = b.connected("p", version=4)
    # Learn which topics map to which member.
    topics = ["hb/%d" % i for i in range(16)]
    publish_many(pub, lambda i: topics[i], msgs("p", len(topics)))
    wait_until(lambda: x.count() + y.count() >= len(topics), 5, "one message per topic")
    settle([x, y], quiet=0.2)
    on_x = {p.topic for p in x.got}
    on_y = {p.topic for p in y.got}
    assert on_x and on_y, "all 16 topics hash to one member: %r %r" % (on_x, on_y)
    ta, tb = sorted(on_x)[0], sorted(on_y)[0]
    x.ack_mode = "never"
    nx, ny = x.count(), y.count()
    # A, B, A, B, ...: x can take 2 of A's 10; all 10 of B's must reach y.
    start = len(topics) + 1
    publish_many(pub, lambda i: ta if i % 2 == 0 else tb, msgs("p", 20, start=start))
    deadline = time.monotonic() + 2
    while y.count() < ny + 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    settle([x, y], quiet=0.2)
    x.stop()
    y.stop()
    got_b = [payload_key(p)[1] for p in y.got[ny:]]
    assert len(got_b) == 10, \
        "topic %s: %d of its 10 messages reached its member (%r) while the member of %s " \
        "held %d unacknowledged" % (tb, len(got_b), got_b, ta, x.count() - nx)
    assert x.count() - nx == 2, x.count() - nx
    assert {p.topic for p in y.got[ny:]} == {tb}


def test_least_inflight(make_broker):
    """least_inflight: a member that never acknowledges gets at most its
    window (10); the acknowledging member gets the rest."""
    b = make_broker(shared={"groups": {"li": "least_inflight"}})
    flt = "$share/li/li/#"
    stuck = Consumer(member(b, "stuck", 5, receive_max=10, flt=flt), ack="never")
    busy = Consumer(member(b, "busy", 5, receive_max=10, flt=flt))
    pub = b.connected("p", version=4)
    publish_many(pub, "li/t", msgs("p", 100))
    wait_until(lambda: stuck.count() + busy.count() >= 100, 10, "100 deliveries")
    settle([stuck, busy], quiet=0.3)
    stuck.stop()
    busy.stop()
    assert_exactly_once([stuck, busy], [("p", i) for i in range(1, 101)])
    assert stuck.count() <= 10, stuck.count()
    assert busy.count() >= 90, busy.count()
    report, text = group_report(b)
    g = report["li/li/#"]
    assert g["strategy"] == "least_inflight", g
    assert g["inflight"] == stuck.count() and g["queued"] == 0, g


def test_unknown_strategy_refused(make_broker):
    b = make_broker(start=False, shared={"groups": {"g1": "fastest"}})
    with pytest.raises(RuntimeError) as e:
        b.start()
    b.stopped = True  # exiting at start-up is what is tested here
    assert "fastest" in str(e.value) and "shared.groups.g1" in str(e.value), str(e.value)


# --------------------------------------------------------------------------
# operators and protocol edges

def test_sigusr1_report(make_broker):
    """The SIGUSR1 report line of a group as its state changes: a sticky
    member holds its window (3) with the rest queued; when its socket dies
    the other member gets everything, 3 of them redelivered."""
    b = make_broker(shared={"groups": {"rep": "sticky"}})
    report, text = group_report(b)
    assert report == {} and "no share groups" in text, text
    flt = "$share/rep/r/#"
    holder = member(b, "rep-hold", 5, durable=True, receive_max=3, flt=flt)
    other = Consumer(member(b, "rep-other", 4, flt=flt))
    pub = b.connected("p", version=4)
    publish_many(pub, "r/1", msgs("p", 10))
    held = drain(holder, 3, ack=False)
    holder.expect_nothing(0.2)
    assert other.count() == 0
    report, text = group_report(b)
    assert list(report) == ["rep/r/#"], text
    g = report["rep/r/#"]
    assert g == dict(name="rep", filter="r/#", strategy="sticky", members=2, online=2, queued=7,
                     inflight=3, delivered=3, redelivered=0, dropped=0), text
    holder.close()
    wait_until(lambda: other.count() >= 10, 5, "10 at the other member")
    settle([other], quiet=0.2)
    other.stop()
    assert sorted(other.keys()) == [("p", i) for i in range(1, 11)]
    assert {payload_key(p) for p in held} <= set(other.keys())
    report, text = group_report(b)
    g = report["rep/r/#"]
    assert g == dict(name="rep", filter="r/#", strategy="sticky", members=2, online=1, queued=0,
                     inflight=0, delivered=13, redelivered=3, dropped=0), text
    # A line per group.
    member(b, "rep2", 5, flt="$share/second/x/+")
    report, text = group_report(b)
    assert set(report) == {"rep/r/#", "second/x/+"}, text


def test_no_local_on_shared_subscription_is_protocol_error(make_broker):
    b = make_broker()
    c = b.connected("nl", version=5)
    c.send(m.subscribe(1, [("$share/g/nl/t", m.sub_options(qos=1, no_local=True))], v5=True))
    packets = c.expect_closed(3)
    assert [p.type for p in packets] == [m.DISCONNECT], packets
    assert packets[0].reason == 0x82, packets


@pytest.mark.parametrize("version", [4, 5])
def test_invalid_share_names(make_broker, version):
    """`$share//x`, `$share/a+b/x`, `$share/a#b/x`, `$share/g` fail alone:
    0x8F (v5) / 0x80 (v3.1.1); a valid one in the same SUBSCRIBE is granted
    and works."""
    b = make_broker()
    c = b.connected("inv", version=version)
    bad = ["$share//x", "$share/a+b/x", "$share/a#b/x", "$share/g", "$share/g/"]
    ack = c.subscribe([(f, 1) for f in bad] + [("$share/ok/x", 1)])
    code = 0x8F if version == 5 else 0x80
    assert ack.codes == [code] * len(bad) + [1], ack
    pub = b.connected("p", version=4)
    pub.publish("x", b"p:1", qos=1)
    p = c.recv_publish(timeout=3)
    assert (p.topic, p.payload) == ("x", b"p:1")
    c.expect_nothing(0.3)


def test_retained_not_sent_on_shared_subscribe(make_broker):
    b = make_broker()
    pub = b.connected("p", version=4)
    pub.publish("ret/a", b"p:1", qos=1, retain=True)
    c = b.connected("rs", version=5)
    assert c.subscribe(("$share/g/ret/#", m.sub_options(qos=1))).codes == [1]
    c.expect_nothing(0.5)
    # A plain subscription on the same client still gets it (sanity).
    assert c.subscribe(("ret/#", 1)).codes == [1]
    p = c.recv_publish(timeout=3)
    assert p.retain and p.payload == b"p:1"
    c.expect_nothing(0.3)
    # Live messages do reach the group.
    c2 = b.connected("rs2", version=4)
    assert c2.subscribe(("$share/g2/ret/#", 1)).codes == [1]
    c2.expect_nothing(0.3)
    pub.publish("ret/a", b"p:2", qos=1, retain=True)
    p = c2.recv_publish(timeout=3)
    assert p.payload == b"p:2" and not p.retain
