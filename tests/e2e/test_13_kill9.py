"""Durability under SIGKILL: the broker is killed several times while a
publisher streams numbered QoS 1 and QoS 2 messages to durable subscribers,
and restarted on the same data directory each time.

What must hold at the end (every message is eventually acknowledged, since
the publisher resends what was not, [MQTT-4.4.0-1]):

* every message arrives at every subscriber;
* QoS 2 messages arrive exactly once, in publish order;
* QoS 1 messages arrive at least once, and the sequence of their first
  occurrences is in publish order;
* every reconnect of a durable session after a restart gets session
  present = 1.

The clients are raw (mqttraw) with their own packet id bookkeeping: the
publisher remembers which PUBLISH got PUBACK / PUBREC and resends the rest
with DUP and the same packet id (and PUBREL for those with PUBREC but no
PUBCOMP); the subscribers remember the QoS 2 packet ids they have received
and not yet seen PUBREL for, so a DUP resend of such an id is not counted
twice (method B of MQTT 5 section 4.3.3 on the receiving side).

The kill moments are random; the seed is printed (set PETREL_KILL9_SEED to
replay one).
"""

import collections
import os
import random
import threading
import time

import pytest

import mqttraw as m

pytestmark = pytest.mark.petrel_only

Q1 = "k9/q1"
Q2 = "k9/q2"
KILLS = 4
PUB_WINDOW = 10          # publisher's unacknowledged PUBLISH/PUBREL at most
PUB_RATE = 500.0         # messages per second at most (both topics)
SUB_RECEIVE_MAX = 10     # v5 subscriber's Receive Maximum
PHASE_DEADLINE_S = 12.0  # each phase after the kills must finish within this


def persistent_broker(make_broker, **persistence):
    p = {"enabled": True}
    p.update(persistence)
    # No queue limits: nothing may be dropped in these tests.
    return make_broker(persistence=p, limits={"max_queued_messages": 0, "max_inflight": 20})


def payload_number(p):
    return int(p.payload.split(b":")[1])


class Errors:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, msg):
        with self.lock:
            self.items.append(msg)


class Peer:
    """A durable client that reconnects whenever its connection drops."""

    def __init__(self, broker, cid, version, errors, abort):
        self.broker = broker
        self.cid = cid
        self.version = version
        self.errors = errors
        self.abort = abort
        self.c = None
        self.sessions = 0      # CONNACKs received
        self.reconnects = 0

    def connect_props(self):
        if self.version == 5:
            return {"session_expiry_interval": 3600, "receive_maximum": SUB_RECEIVE_MAX}
        return None

    def connect(self, deadline, first=False):
        """Connect (retrying while the broker is down); None past deadline."""
        while not self.abort.is_set() and time.monotonic() < deadline:
            c = None
            try:
                c = m.RawClient(self.broker.host, self.broker.port, version=self.version,
                                timeout=2.0, name=self.cid)
                ack = c.connect(self.cid, clean=False, keepalive=60, props=self.connect_props(),
                                expect_reason=None)
            except (m.MQTTRawError, OSError, AssertionError):
                if c is not None:
                    c.close()
                time.sleep(0.05)
                continue
            if ack.reason != 0:
                c.close()
                self.errors.add("%s: CONNACK refused: %r" % (self.cid, ack))
                time.sleep(0.05)
                continue
            if not first and not ack.session_present:
                self.errors.add("%s: session present = 0 on reconnect #%d"
                                % (self.cid, self.reconnects + 1))
            if not first:
                self.reconnects += 1
            self.sessions += 1
            c.connack = ack
            self.c = c
            return c
        return None

    def drop(self):
        if self.c is not None:
            self.c.close()
        self.c = None


class Publisher(Peer):
    """Streams "q1:<n>" on Q1 (QoS 1) and "q2:<n>" on Q2 (QoS 2)."""

    def __init__(self, broker, errors, abort):
        super().__init__(broker, "k9-pub", 4, errors, abort)
        self.inflight = collections.OrderedDict()  # mid -> [topic, n, qos, state]
        self.next_n = {Q1: 1, Q2: 1}
        self.acked = {Q1: set(), Q2: set()}
        self.last_mid = 0
        self.stop = threading.Event()
        self.done = threading.Event()
        self.resent_publish = 0
        self.resent_pubrel = 0

    def free_mid(self):
        while True:
            self.last_mid = self.last_mid % 65535 + 1
            if self.last_mid not in self.inflight:
                return self.last_mid

    def resend(self, c):
        # [MQTT-4.4.0-1]: unacknowledged PUBLISH (DUP, same id) and PUBREL,
        # in their original order.
        for mid, (topic, n, qos, state) in self.inflight.items():
            if state == "rec":
                c.send(m.pubrel(mid))
                self.resent_pubrel += 1
            else:
                c.send(m.publish(topic, b"%s:%d" % (topic[-2:].encode(), n), qos,
                                 dup=True, mid=mid))
                self.resent_publish += 1

    def on_packet(self, c, p):
        entry = self.inflight.get(p.mid)
        if p.type == m.PUBACK:
            if entry is None or entry[2] != 1:
                self.errors.add("publisher: PUBACK for unknown id %r" % (p,))
                return
            self.acked[Q1].add(entry[1])
            del self.inflight[p.mid]
        elif p.type == m.PUBREC:
            if entry is None or entry[2] != 2:
                self.errors.add("publisher: PUBREC for unknown id %r" % (p,))
                return
            # PUBREC means the broker has the message: it counts as acknowledged.
            self.acked[Q2].add(entry[1])
            entry[3] = "rec"
            c.send(m.pubrel(p.mid))
        elif p.type == m.PUBCOMP:
            if entry is None or entry[3] != "rec":
                self.errors.add("publisher: PUBCOMP for unknown id %r" % (p,))
                return
            del self.inflight[p.mid]
        else:
            self.errors.add("publisher: unexpected %r" % (p,))

    def run(self, deadline_fn):
        interval = 1.0 / PUB_RATE
        next_send = time.monotonic()
        turn = 0
        try:
            while not self.abort.is_set():
                if self.stop.is_set() and not self.inflight:
                    break
                if time.monotonic() > deadline_fn():
                    self.errors.add("publisher: could not complete; %d still in flight: %r"
                                    % (len(self.inflight), list(self.inflight.items())[:5]))
                    return
                if self.c is None:
                    if self.connect(deadline_fn()) is None:
                        continue
                    self.resend(self.c)
                c = self.c
                try:
                    now = time.monotonic()
                    if (not self.stop.is_set() and len(self.inflight) < PUB_WINDOW
                            and now >= next_send):
                        topic = Q1 if turn % 2 == 0 else Q2
                        turn += 1
                        qos = 1 if topic == Q1 else 2
                        n = self.next_n[topic]
                        self.next_n[topic] += 1
                        mid = self.free_mid()
                        self.inflight[mid] = [topic, n, qos, "sent"]
                        c.send(m.publish(topic, b"%s:%d" % (topic[-2:].encode(), n), qos, mid=mid))
                        next_send = max(next_send + interval, now - 0.1)
                    wait = 0.002 if len(self.inflight) < PUB_WINDOW and not self.stop.is_set() else 0.1
                    try:
                        p = c.recv(wait)
                    except m.ReadTimeout:
                        continue
                    self.on_packet(c, p)
                except (m.MQTTRawError, OSError):
                    self.drop()
        finally:
            self.drop()
            self.done.set()


class Subscriber(Peer):
    def __init__(self, broker, cid, version, errors, abort, ack_delay, seed):
        super().__init__(broker, cid, version, errors, abort)
        self.q1 = []                 # every QoS 1 arrival, duplicates included
        self.q2 = []                 # QoS 2 deliveries (first receipt of an id)
        self.awaiting_rel = {}       # QoS 2 id -> n: received, no PUBREL yet
        self.ack_delay = ack_delay   # (min, max) seconds before acknowledging
        self.rng = random.Random(seed)
        self.online = threading.Event()
        self.stop = threading.Event()
        self.dup_q2_ignored = 0
        self.thread = None

    def setup(self):
        c = self.connect(time.monotonic() + 5, first=True)
        assert c is not None, "%s could not connect" % self.cid
        assert c.connack.session_present is False, c.connack
        sub_id = {"subscription_identifier": 9} if self.version == 5 else None
        c.send(m.subscribe(1, [(Q1, 1), (Q2, 2)], sub_id, self.version == 5))
        ack = c.expect(m.SUBACK)
        assert ack.codes == [1, 2], ack

    def on_publish(self, p, pending):
        n = payload_number(p)
        if p.topic == Q1:
            if p.qos != 1:
                self.errors.add("%s: Q1 message with QoS %d" % (self.cid, p.qos))
            self.q1.append(n)
            pending.append((self.due(), m.puback(p.mid)))
        elif p.topic == Q2:
            if p.qos != 2:
                self.errors.add("%s: Q2 message with QoS %d" % (self.cid, p.qos))
            if p.mid in self.awaiting_rel:
                if not p.dup:
                    self.errors.add("%s: PUBLISH without DUP reuses id %d still awaiting PUBREL: %r"
                                    % (self.cid, p.mid, p))
                if self.awaiting_rel[p.mid] != n:
                    self.errors.add("%s: id %d resent with another message (%d, was %d)"
                                    % (self.cid, p.mid, n, self.awaiting_rel[p.mid]))
                self.dup_q2_ignored += 1
            else:
                self.q2.append(n)
                self.awaiting_rel[p.mid] = n
            pending.append((self.due(), m.pubrec(p.mid)))
        else:
            self.errors.add("%s: message on unexpected topic %r" % (self.cid, p))

    def due(self):
        return time.monotonic() + self.rng.uniform(*self.ack_delay)

    def run(self, deadline_fn):
        try:
            while not self.abort.is_set() and not self.stop.is_set():
                if not self.online.is_set():
                    self.drop()
                    self.online.wait(0.05)
                    continue
                if time.monotonic() > deadline_fn():
                    return
                if self.c is None:
                    if self.connect(deadline_fn()) is None:
                        continue
                pending = collections.deque()
                c = self.c
                try:
                    while not self.abort.is_set() and not self.stop.is_set() and self.online.is_set():
                        now = time.monotonic()
                        while pending and pending[0][0] <= now:
                            c.send(pending.popleft()[1])
                        try:
                            p = c.recv(0.01 if pending else 0.1)
                        except m.ReadTimeout:
                            continue
                        if p.type == m.PUBLISH:
                            self.on_publish(p, pending)
                        elif p.type == m.PUBREL:
                            self.awaiting_rel.pop(p.mid, None)
                            c.send(m.pubcomp(p.mid))
                        elif p.type == m.DISCONNECT:
                            raise m.ConnectionClosed("DISCONNECT %r" % (p,))
                        else:
                            self.errors.add("%s: unexpected %r" % (self.cid, p))
                    # Going offline on purpose: acknowledgements not sent yet
                    # are simply lost, as with a crash of the client.
                    self.drop()
                except (m.MQTTRawError, OSError):
                    # Unsent acknowledgements die with the connection; the
                    # broker resends those messages.
                    self.drop()
        finally:
            self.drop()

    def complete(self, n1, n2):
        return set(range(1, n1 + 1)) <= set(self.q1) and len(set(self.q2)) >= n2


def check_subscriber(s, n1, n2):
    problems = []
    # QoS 2: exactly once, in order.
    if s.q2 != list(range(1, n2 + 1)):
        counts = collections.Counter(s.q2)
        dups = sorted(k for k, v in counts.items() if v > 1)
        missing = sorted(set(range(1, n2 + 1)) - set(s.q2))
        out_of_order = [(a, b) for a, b in zip(s.q2, s.q2[1:]) if b <= a]
        problems.append("%s QoS 2: %d deliveries for %d messages; duplicates %r, missing %r, "
                        "out of order %r" % (s.cid, len(s.q2), n2, dups[:20], missing[:20],
                                             out_of_order[:10]))
    # QoS 1: at least once; first occurrences in order.
    firsts = []
    seen = set()
    for n in s.q1:
        if n not in seen:
            seen.add(n)
            firsts.append(n)
    missing = sorted(set(range(1, n1 + 1)) - seen)
    if missing:
        problems.append("%s QoS 1: missing %d of %d: %r" % (s.cid, len(missing), n1, missing[:20]))
    if firsts != sorted(firsts):
        bad = [(a, b) for a, b in zip(firsts, firsts[1:]) if b < a]
        problems.append("%s QoS 1: first occurrences out of order at %r" % (s.cid, bad[:10]))
    extra = seen - set(range(1, n1 + 1))
    if extra:
        problems.append("%s QoS 1: never published: %r" % (s.cid, sorted(extra)[:10]))
    return problems


def run_kill9(make_broker, variant, sync):
    seed = int(os.environ.get("PETREL_KILL9_SEED", "0")) or random.randrange(1, 1 << 30)
    print("kill -9 test variant=%s sync=%s seed=%d (PETREL_KILL9_SEED=%d to replay)"
          % (variant, sync, seed, seed))
    rng = random.Random(seed)
    b = persistent_broker(make_broker, sync=sync)
    errors = Errors()
    abort = threading.Event()
    phase_deadline = [time.monotonic() + 30]

    def deadline():
        return phase_deadline[0]

    sub311 = Subscriber(b, "k9-sub311", 4, errors, abort, (0.0, 0.005), seed + 1)
    sub5 = Subscriber(b, "k9-sub5", 5, errors, abort, (0.0, 0.03), seed + 2)
    subs = [sub311, sub5]
    for s in subs:
        s.setup()
        s.drop()
    # Offline variant: the v3.1.1 subscriber stays away until the end, its
    # messages wait in the store; the v5 one receives (slowly) throughout.
    # Online variant: both receive QoS 1 and QoS 2 throughout the kills.
    online = [sub5] if variant == "offline" else [sub311, sub5]
    pub = Publisher(b, errors, abort)
    assert pub.connect(time.monotonic() + 5, first=True) is not None
    threads = []
    for s in subs:
        s.thread = threading.Thread(target=s.run, args=(deadline,), daemon=True)
        threads.append(s.thread)
    pub_thread = threading.Thread(target=pub.run, args=(deadline,), daemon=True)
    threads.append(pub_thread)
    try:
        for s in online:
            s.online.set()
        for t in threads:
            t.start()
        kills = []
        time.sleep(rng.uniform(0.3, 0.8))
        for i in range(KILLS):
            at = dict(pub.next_n)
            b.kill()  # SIGKILL
            assert b.proc.returncode == -9, b.proc.returncode
            time.sleep(rng.uniform(0.0, 0.3))
            b.start(timeout=10)
            kills.append(at)
            time.sleep(rng.uniform(0.05, 1.0))
        print("killed at (next message numbers):", kills)
        # Publishing ends; the publisher completes what it has in flight.
        phase_deadline[0] = time.monotonic() + PHASE_DEADLINE_S
        pub.stop.set()
        assert pub.done.wait(PHASE_DEADLINE_S + 1), "publisher did not finish"
        assert not pub.inflight, "unacknowledged at the end: %r" % (list(pub.inflight.items())[:10],)
        n1, n2 = pub.next_n[Q1] - 1, pub.next_n[Q2] - 1
        assert pub.acked[Q1] == set(range(1, n1 + 1))
        assert pub.acked[Q2] == set(range(1, n2 + 1))
        print("published %d QoS 1 and %d QoS 2 messages; publisher resent %d PUBLISH and %d PUBREL"
              % (n1, n2, pub.resent_publish, pub.resent_pubrel))
        # Drain: everyone online until every message has arrived.
        for s in subs:
            s.online.set()
        drain_deadline = time.monotonic() + PHASE_DEADLINE_S
        while time.monotonic() < drain_deadline and not all(s.complete(n1, n2) for s in subs):
            time.sleep(0.05)
        time.sleep(0.5)  # late duplicates, if any, would show up now
        for s in subs:
            s.stop.set()
        for t in threads:
            t.join(5)
        for s in subs:
            print("%s: %d QoS 1 arrivals (%d distinct), %d QoS 2 deliveries, %d DUP QoS 2 resends "
                  "ignored, %d reconnects" % (s.cid, len(s.q1), len(set(s.q1)), len(s.q2),
                                             s.dup_q2_ignored, s.reconnects))
        problems = list(errors.items)
        for s in subs:
            problems += check_subscriber(s, n1, n2)
        assert not problems, "\n".join(problems)
        # Every durable client came back to its session after each kill.
        assert pub.reconnects >= KILLS
        for s in online:
            assert s.reconnects >= KILLS
        assert b.running()
    finally:
        abort.set()
        for t in threads:
            t.join(2)


@pytest.mark.parametrize("variant,sync", [("offline", "fsync"), ("online", "periodic")])
def test_kill9_during_publishing(make_broker, variant, sync):
    run_kill9(make_broker, variant, sync)


X_ROUNDS = 25


def next_publish(c, not_released, timeout=5):
    """The next PUBLISH, or None. A PUBREL before it is answered and passed
    over: the previous round's message, whose PUBCOMP the kill may have
    beaten to the store (never `not_released`, which was not PUBRECed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            p = c.recv(max(0.0, deadline - time.monotonic()))
        except m.ReadTimeout:
            return None
        if p.type != m.PUBREL:
            assert p.type == m.PUBLISH, p
            return p
        assert p.mid != not_released, p
        c.send(m.pubcomp(p.mid))


def test_qos2_publish_to_several_on_worker_loops_waits_for_its_packet_id(make_broker):
    # A QoS 2 message for two durable subscribers is encoded once, and on a
    # worker loop that encoding may be handed to the loop by reference. A
    # QoS 2 PUBLISH must still wait until its packet id is stored: a client
    # that has seen it must, after any crash, get it again under that id
    # with DUP set, never as a new message under another id (which it
    # would take as a second message). Each round the broker is killed the
    # moment the first subscriber has read the PUBLISH, before it answers.
    b = make_broker(workers=2, persistence={"enabled": True, "sync": "fsync"},
                    limits={"max_queued_messages": 0, "max_inflight": 20})
    subs = {}
    for cid in ("x-first", "x-second"):
        c = b.client(4)
        c.connect(cid, clean=False)
        assert c.subscribe([("k9x/t", 2)]).codes == [2]
        subs[cid] = c
    for r in range(X_ROUNDS):
        pub = b.client(4)
        pub.connect("x-pub", clean=True)
        pub.publish("k9x/t", b"round %d" % r, qos=2, wait_ack=False)
        first = subs["x-first"].expect(m.PUBLISH)
        b.kill()
        assert first.payload == b"round %d" % r and not first.dup, first
        for c in list(subs.values()) + [pub]:
            c.close()
        b.start(timeout=10)
        again = b.client(4)
        ack = again.connect("x-first", clean=False)
        assert ack.session_present, ack
        p = next_publish(again, first.mid)
        assert p is not None and (p.payload, p.mid, p.dup) == (first.payload, first.mid, True), \
            "round %d: got %r before the kill, then %r after it" % (r, first, p)
        again.ack(p)
        other = b.client(4)
        other.connect("x-second", clean=False)
        q = next_publish(other, None)
        assert q is not None and q.payload == first.payload, q
        other.ack(q)
        subs = {"x-first": again, "x-second": other}
