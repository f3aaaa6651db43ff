#!/usr/bin/env python3
"""Whole-broker fuzzing over the network, against the real binary.

The harnesses of tests/fuzz/ feed one decoder at a time. This drives the
whole broker: several clients at once open connections and send sequences
of packets built to be almost right (CONNECT of each protocol level with
wills, session expiry, Receive Maximum, Maximum Packet Size and topic
aliases; SUBSCRIBE with wildcards, share groups, $SYS, subscription ids and
every option; PUBLISH of each QoS with retain, aliases, expiry, $delayed/
topics; acknowledgements for packet ids that may or may not be in flight;
AUTH, PINGREQ, DISCONNECT; consumers of two declared queues), then broken at random places (bytes changed,
cut, inserted, repeated or dropped), sent in pieces of random size. The
client ids come from a small pool, so sessions are taken over, resumed and
expire while messages are queued for them; the clients acknowledge some of
what they are sent and not the rest, and drop their connections at random
(a close, a reset, or nothing at all).

Meanwhile:
* every --check-s seconds a bystander connects, subscribes and publishes a
  QoS 1 message to itself, which must come back within 5 s: the broker
  must keep serving well-behaved clients whatever the others send;
* every --restart-s seconds the broker is killed with SIGKILL and started
  again on its store (persistence on, `sync: fsync`): whatever state the
  clients left must load again.

After each kill and at the end the store is read (mdb_dump, Debian's
lmdb-utils): every queue entry and retained slot must name a message the
store has, and every stored message must be counted by exactly as many of
them as hold it (a record nobody holds would stay for good). At the end
the broker is stopped with SIGTERM and must exit 0.

Then the audit (stored means delivered): the broker is started once more
on its store, and every queue the store holds is drained by a well-behaved
client that acknowledges everything (a session resumed under its client
id, a share group joined by a new member). Each queue must hand out at
least its entries that cannot expire (no message expiry, no queue
lifetime, a session that does not expire meanwhile), and after a SIGTERM
no queue entry may be left. A new subscriber to '#' must be sent every
retained message of the store that cannot expire. The run fails if the
broker died, did not start again, failed a bystander check, left the store
inconsistent, failed the audit, or its log has a sanitizer report (build with clang and -DPETREL_FUZZ=ON,
or -DPETREL_SANITIZE=ON, to get one; build-san/petrel in CI's layout).
Exit status 0 when it passed, 1 otherwise; the seed is always printed.

    /usr/bin/python3 bench/netfuzz.py --broker build-san/petrel --seconds 600 [--workers 2] [--seed N]
"""

import argparse
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import mqttraw as m  # noqa: E402

HOST = "127.0.0.1"
SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
                   b"WARNING: ThreadSanitizer")

CLIENT_IDS = ["fz%d" % i for i in range(8)]
TOPICS = ["a", "a/b", "a/b/c", "t/1", "t/2", "dev/x/temp", "$SYS/x", "", "a//b", "\u00e9/\u00fc",
          "$delayed/1/a/b", "$delayed/0/t/1", "$delayed/x/a", "$delayed/5", "a/+", "#"]
FILTERS = ["#", "a/#", "a/+", "+/+", "a/b/c", "t/1", "dev/+/temp", "$SYS/#", "$share/g/a/#",
           "$share/g/#", "$share/h/t/+", "$share//a", "$share/g", "a/#/b", "a+", "", "+", "/",
           "$delayed/#", "\u00e9/#", "$queue/q1", "$queue/q2", "$queue/none", "$share/q1/a/#"]


class Broker:
    def __init__(self, binary, workdir, workers):
        self.binary = binary
        self.workdir = workdir
        self.workers = workers
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.config = os.path.join(workdir, "petrel.yaml")
        self.log_path = os.path.join(workdir, "broker.log")
        self.write_config(sys_interval=10)
        self.proc = None
        self.starts = 0

    def write_config(self, sys_interval):
        workers, workdir = self.workers, self.workdir
        with open(self.config, "w") as f:
            f.write("log_level: warning\n"
                    "workers: %d\n"
                    "listeners:\n"
                    "  - address: %s\n"
                    "    port: %d\n"
                    "limits:\n"
                    "  max_packet_size: 65536\n"
                    "  max_inflight: 20\n"
                    "  max_queued_messages: 200\n"
                    "  max_keepalive: 30\n"
                    "persistence:\n"
                    "  enabled: true\n"
                    "  dir: %s\n"
                    "  sync: fsync\n"
                    "mqtt:\n"
                    "  topic_alias_maximum: 5\n"
                    "  sys_interval: %d\n"
                    "queues:\n"
                    "  - name: q1\n"
                    "    filters: [\"a/#\", \"t/+\"]\n"
                    "    message_ttl: 2\n"
                    "  - name: q2\n"
                    "    filters: [\"dev/+/temp\"]\n"
                    "    strategy: least_inflight\n"
                    "    max_messages: 50\n"
                    % (workers, HOST, self.port, os.path.join(workdir, "data"), sys_interval))

    def start(self):
        log = open(self.log_path, "ab")
        log.write(b"===== start %d =====\n" % (self.starts + 1))
        log.flush()
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, cwd=self.workdir, start_new_session=True)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self):
        """SIGTERM; the exit status, or None if it had to be killed."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read()


# --------------------------------------------------------------------------
# Packets that are almost right

def rand_bytes(rng, lo=0, hi=40):
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(lo, hi)))


def rand_user_props(rng):
    return [("user_property", ("k%d" % rng.randint(0, 3), "v" * rng.randint(0, 5)))
            for _ in range(rng.randint(0, 2))]


def connect_packet(rng, level):
    props = None
    if level == 5:
        props = []
        if rng.random() < 0.6:
            props.append(("session_expiry_interval", rng.choice([0, 1, 5, 60, 0xFFFFFFFF])))
        if rng.random() < 0.5:
            props.append(("receive_maximum", rng.choice([1, 2, 10, 65535])))
        if rng.random() < 0.4:
            props.append(("topic_alias_maximum", rng.randint(0, 10)))
        if rng.random() < 0.3:
            props.append(("maximum_packet_size", rng.choice([20, 64, 200, 100000])))
        if rng.random() < 0.2:
            props.append(("request_problem_information", rng.randint(0, 1)))
        if rng.random() < 0.1:
            props.append(("authentication_method", "none"))
        props += rand_user_props(rng)
    will = None
    if rng.random() < 0.4:
        will = {"topic": rng.choice(TOPICS), "payload": rand_bytes(rng, 0, 20), "qos": rng.randint(0, 2),
                "retain": rng.random() < 0.3}
        if level == 5 and rng.random() < 0.5:
            will["props"] = [("will_delay_interval", rng.choice([0, 1, 3])),
                             ("message_expiry_interval", rng.choice([1, 100]))]
    user = "u" if rng.random() < 0.2 else None
    pw = b"p" if user and rng.random() < 0.5 else None
    return m.connect(rng.choice(CLIENT_IDS + [""]), level=level, clean=rng.random() < 0.4,
                     keepalive=rng.choice([0, 1, 2, 10, 60]), will=will, username=user, password=pw,
                     props=props)


def publish_packet(rng, v5, mids):
    qos = rng.choice([0, 1, 1, 2])
    mid = rng.choice(mids) if qos else None
    props = None
    topic = rng.choice(TOPICS)
    if v5:
        props = []
        if rng.random() < 0.3:
            props.append(("topic_alias", rng.randint(0, 6)))
            if rng.random() < 0.4:
                topic = ""
        if rng.random() < 0.3:
            props.append(("message_expiry_interval", rng.choice([0, 1, 2, 1000])))
        if rng.random() < 0.1:
            props.append(("response_topic", rng.choice(TOPICS)))
        if rng.random() < 0.1:
            props.append(("correlation_data", rand_bytes(rng, 0, 8)))
        if rng.random() < 0.1:
            props.append(("payload_format_indicator", rng.randint(0, 2)))
        if rng.random() < 0.05:
            props.append(("subscription_identifier", rng.randint(1, 5)))
        props += rand_user_props(rng)
    payload = rand_bytes(rng, 0, 64) if rng.random() < 0.95 else b"x" * rng.randint(60000, 70000)
    return m.publish(topic, payload, qos=qos, retain=rng.random() < 0.2, dup=rng.random() < 0.1, mid=mid,
                     props=props, v5=v5)


def subscribe_packet(rng, v5, mids):
    filters = [(rng.choice(FILTERS),
                m.sub_options(qos=rng.randint(0, 2), no_local=rng.random() < 0.2,
                              retain_as_published=rng.random() < 0.2, retain_handling=rng.randint(0, 2))
                if v5 else rng.randint(0, 2)) for _ in range(rng.randint(1, 3))]
    props = None
    if v5 and rng.random() < 0.4:
        props = [("subscription_identifier", rng.choice([1, 2, 300, 268435455]))]
    return m.subscribe(rng.choice(mids), filters, props=props, v5=v5)


def ack_packet(rng, v5, mids):
    kind = rng.choice([m.PUBACK, m.PUBREC, m.PUBREL, m.PUBCOMP])
    reason = rng.choice([None, 0, 0x10, 0x80, 0x92]) if v5 else None
    return m.ack(kind, rng.choice(mids), reason=reason, v5=v5)


def session_bytes(rng):
    """One connection's bytes: a CONNECT and what follows it."""
    level = rng.choice([3, 4, 4, 5, 5])
    v5 = level == 5
    mids = [0, 1, 2, 3, 7, 65535]
    out = [connect_packet(rng, level) if rng.random() < 0.97 else rand_bytes(rng, 1, 30)]
    for _ in range(rng.randint(0, 25)):
        r = rng.random()
        if r < 0.40:
            out.append(publish_packet(rng, v5, mids))
        elif r < 0.58:
            out.append(subscribe_packet(rng, v5, mids))
        elif r < 0.64:
            out.append(m.unsubscribe(rng.choice(mids), [rng.choice(FILTERS)], v5=v5))
        elif r < 0.80:
            out.append(ack_packet(rng, v5, mids))
        elif r < 0.85:
            out.append(m.pingreq())
        elif r < 0.88:
            out.append(m.auth(rng.choice([0, 0x18, 0x19]), props=[("authentication_method", "x")]))
        elif r < 0.91:
            out.append(connect_packet(rng, level))  # a second CONNECT
        elif r < 0.95:
            props = [("session_expiry_interval", rng.choice([0, 10]))] if v5 and rng.random() < 0.5 else None
            out.append(m.disconnect(reason=rng.choice([None, 0, 4]), props=props, v5=v5))
        else:
            out.append(rand_bytes(rng, 1, 12))
    data = bytearray(b"".join(out))
    # Break it: a few edits, or none (a valid sequence is worth sending too).
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5])):
        if not data:
            break
        i = rng.randrange(len(data))
        e = rng.random()
        if e < 0.35:
            data[i] = rng.choice([0x00, 0xFF, 0x80, 0x7F, rng.getrandbits(8), data[i] ^ (1 << rng.randrange(8))])
        elif e < 0.5:
            del data[i:]
        elif e < 0.65:
            data[i:i] = rand_bytes(rng, 1, 8)
        elif e < 0.8:
            j = min(len(data), i + rng.randint(1, 30))
            data[i:i] = data[i:j]
        else:
            del data[i:i + rng.randint(1, 8)]
    return bytes(data)


# --------------------------------------------------------------------------
# The store's references

def dump_table(data_dir, table):
    """[(key, value)] of one table of the store, read with mdb_dump."""
    r = subprocess.run(["mdb_dump", "-s", table, data_dir], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("mdb_dump -s %s: %s" % (table, r.stderr.strip()))
    lines = r.stdout.split("\n")
    i = lines.index("HEADER=END") + 1
    out = []
    while i + 1 < len(lines) and lines[i] != "DATA=END":
        out.append((bytes.fromhex(lines[i].strip()), bytes.fromhex(lines[i + 1].strip())))
        i += 2
    return out


def store_problems(data_dir):
    """What is wrong with the message references of a stopped broker's store.

    Messages are keyed by their id (8 bytes, big-endian); a queue entry's
    value and a retained slot's begin with the id of the message they hold
    (8 bytes, little-endian); `refs` has a message's count of holders
    (4 bytes, little-endian) where it is not 1."""
    stored = {int.from_bytes(k, "big") for k, _ in dump_table(data_dir, "messages")}
    counts = {int.from_bytes(k, "big"): int.from_bytes(v[:4], "little") for k, v in dump_table(data_dir, "refs")}
    holders = {}
    problems = []
    for table in ("queue", "retained"):
        for k, v in dump_table(data_dir, table):
            mid = int.from_bytes(v[:8], "little")
            holders[mid] = holders.get(mid, 0) + 1
            if mid not in stored:
                problems.append("%s entry %r names message %d, which the store does not have"
                                % (table, k.decode("utf-8", "replace"), mid))
    for mid in sorted(stored):
        want, have = holders.get(mid, 0), counts.get(mid, 1)
        if want != have:
            problems.append("message %d: counted %d holder(s), held by %d" % (mid, have, want))
    return problems


# --------------------------------------------------------------------------
# Clients

def answer(buf, rng):
    """Acknowledge some of the PUBLISHes the broker sent; keep the rest of buf."""
    out = []
    while len(buf) >= 2:
        mult, n, pos = 1, 0, 1
        while True:
            if pos >= len(buf):
                return buf, out
            b = buf[pos]
            n += (b & 0x7F) * mult
            mult *= 128
            pos += 1
            if not b & 0x80 or pos > 4:
                break
        if len(buf) < pos + n:
            return buf, out
        ptype, flags, body = buf[0] >> 4, buf[0] & 0x0F, buf[pos:pos + n]
        buf = buf[pos + n:]
        qos = (flags >> 1) & 3
        if ptype == m.PUBLISH and qos and len(body) >= 2:
            tl = int.from_bytes(body[:2], "big")
            if len(body) >= tl + 4 and rng.random() < 0.7:
                mid = int.from_bytes(body[2 + tl:4 + tl], "big")
                out.append(m.puback(mid) if qos == 1 else m.pubrec(mid))
        elif ptype == m.PUBREC and len(body) >= 2 and rng.random() < 0.8:
            out.append(m.pubrel(int.from_bytes(body[:2], "big")))
        elif ptype == m.PUBREL and len(body) >= 2 and rng.random() < 0.8:
            out.append(m.pubcomp(int.from_bytes(body[:2], "big")))
    return buf, out


def read_and_answer(s, buf, rng):
    """One read (up to the socket's short timeout), answered; (buf, still open)."""
    try:
        got = s.recv(65536)
    except socket.timeout:
        return buf, True
    if not got:
        return buf, False
    buf, acks = answer(buf + got, rng)
    if acks:
        s.sendall(b"".join(acks))
    return buf, True


def fuzz_client(port, seed, deadline, stats, lock):
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        data = session_bytes(rng)
        try:
            s = socket.create_connection((HOST, port), timeout=2)
        except OSError:
            time.sleep(0.1)  # the broker is being restarted
            continue
        s.settimeout(0.05)
        buf = b""
        try:
            pos = 0
            while pos < len(data):
                n = rng.choice([1, 2, 7, 64, 1000, len(data)])
                s.sendall(data[pos:pos + n])
                pos += n
                if rng.random() < 0.3:
                    buf, open_ = read_and_answer(s, buf, rng)
                    if not open_:
                        break
            # Stay a while, reading and answering, then go in one of three ways.
            stay = time.monotonic() + rng.choice([0, 0.05, 0.2, 1.0])
            while time.monotonic() < stay:
                buf, open_ = read_and_answer(s, buf, rng)
                if not open_:
                    break
        except OSError:
            pass
        way = rng.random()
        try:
            if way < 0.3:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif way < 0.4:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        s.close()
        with lock:
            stats["connections"] += 1
            stats["bytes"] += len(data)


def bystander(port, n):
    """Connect, subscribe, publish QoS 1 to itself; None if it all came back, else what failed."""
    topic = "bystander/%d" % n
    c = None
    try:
        c = m.RawClient(HOST, port, version=4, timeout=5.0)
        c.connect("bystander-%d" % n, clean=True, keepalive=30)
        c.send(m.subscribe(1, [(topic, 1)]))
        c.expect(m.SUBACK)
        c.send(m.publish(topic, b"hello", qos=1, mid=2))
        got = set()
        deadline = time.monotonic() + 5
        while len(got) < 2:
            p = c.recv(max(0.01, deadline - time.monotonic()))
            if p.type == m.PUBACK and p.mid == 2:
                got.add("puback")
            elif p.type == m.PUBLISH and p.topic == topic and p.payload == b"hello":
                got.add("publish")
                if p.qos:
                    c.send(m.puback(p.mid))
        c.send(m.disconnect())
        return None
    except Exception as e:  # noqa: BLE001  (any failure of the round trip is the finding)
        return "%s: %s" % (type(e).__name__, e)
    finally:
        if c is not None:
            c.close()


def queue_owners(data_dir):
    """{owner: [entries, entries that cannot expire]} of the store's queue
    table, for the owners that hold entries.

    A key is the owner (a client id, or a group's "\\x01share/<name>/<filter>"),
    a 0 byte and the entry's 8-byte sequence number. An entry's value is the
    message id (8 bytes), QoS, flags, packet id (2), bytes (4), a count of
    subscription ids and the ids (4 each), then optionally the group (a
    4-byte length and the name) and a declared queue's queued-at and
    deadline (8 each, the deadline 0 for none). A message record is a
    version byte, QoS, retain and its expiry (8 bytes, 0 for none). A
    session record is a version byte, the protocol level and its expiry
    interval (4 bytes), which a 3.1/3.1.1 session ignores."""
    le = lambda b: int.from_bytes(b, "little")  # noqa: E731
    expiring_msgs = {int.from_bytes(k, "big") for k, v in dump_table(data_dir, "messages") if le(v[3:11])}
    lasting_sessions = set()
    for k, v in dump_table(data_dir, "sessions"):
        if v[1] < 5 or le(v[2:6]) == 0xFFFFFFFF:
            lasting_sessions.add(k.decode("utf-8", "replace"))
    # A share group's queue lasts while a member's session does (its last
    # member's session ending drops it), a declared queue's whatever its
    # members. A subscription's key is the client id, a 0 byte and the
    # filter.
    held_groups = set()
    for k, _ in dump_table(data_dir, "subscriptions"):
        cid, _, flt = k.partition(b"\0")
        if flt.startswith(b"$share/") and cid.decode("utf-8", "replace") in lasting_sessions:
            held_groups.add("\x01share/" + flt[len(b"$share/"):].decode("utf-8", "replace"))
    owners = {}
    for k, v in dump_table(data_dir, "queue"):
        owner = k[:-9].decode("utf-8", "replace")
        counts = owners.setdefault(owner, [0, 0])
        counts[0] += 1
        pos = 17 + 4 * v[16]
        if pos < len(v):
            pos += 4 + le(v[pos:pos + 4])
        queued_at = le(v[pos:pos + 8]) if pos + 16 <= len(v) else 0
        deadline = le(v[pos + 8:pos + 16]) if pos + 16 <= len(v) else 0
        if owner.startswith("\x01share/"):
            lasting = queued_at != 0 or owner in held_groups
        else:
            lasting = owner in lasting_sessions
        if not deadline and le(v[:8]) not in expiring_msgs and lasting:
            counts[1] += 1
    return owners


def drain(port, owner):
    """Take everything the broker owes `owner`, acknowledging it all: a session
    is resumed under its client id, a group is joined by a new member. The
    number of entries handed out (PUBLISHes, and PUBRELs of exchanges the
    client had answered before), or what went wrong."""
    group = owner.startswith("\x01share/")
    c = m.RawClient(HOST, port, version=5 if group else 4, timeout=5.0)
    try:
        if group:
            name, flt = owner[len("\x01share/"):].split("/", 1)
            c.connect("audit-member", clean=True, keepalive=30)
            c.subscribe([("$share/%s/%s" % (name, flt), m.sub_options(qos=2))])
        else:
            ack = c.connect(owner, clean=False, keepalive=30, expect_reason=None)
            if ack.reason != 0:
                return "CONNACK %r" % ack
        taken = 0
        # An entry the client had answered with PUBREC before (its message
        # delivered then) comes back as a PUBREL alone: it counts as handed
        # out. A PUBREL that follows a PUBLISH of this drain does not.
        published_qos2 = set()
        while True:
            try:
                p = c.recv(1.5)
            except m.ReadTimeout:
                break
            if p.type == m.PUBLISH:
                taken += 1
                if p.qos == 1:
                    c.send(m.puback(p.mid, v5=c.v5))
                elif p.qos == 2:
                    published_qos2.add(p.mid)
                    c.send(m.pubrec(p.mid, v5=c.v5))
            elif p.type == m.PUBREL:
                if p.mid in published_qos2:
                    published_qos2.discard(p.mid)
                else:
                    taken += 1
                c.send(m.pubcomp(p.mid, v5=c.v5))
        c.go_offline()
        return taken
    except Exception as e:  # noqa: BLE001  (any failure to drain is the finding)
        return "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def retained_topics(data_dir):
    """Topics (not starting with '$') of the store's retained slots whose
    message cannot expire. A slot's key is its topic, its value begins with
    the message id (8 bytes, little-endian)."""
    expiring = {int.from_bytes(k, "big") for k, v in dump_table(data_dir, "messages")
                if int.from_bytes(v[3:11], "little")}
    out = set()
    for k, v in dump_table(data_dir, "retained"):
        topic = k.decode("utf-8", "replace")
        if not topic.startswith("$") and int.from_bytes(v[:8], "little") not in expiring:
            out.add(topic)
    return out


def retained_sent(port):
    """Topics of the retained messages a new subscriber to '#' is sent, or
    what went wrong."""
    c = m.RawClient(HOST, port, version=5, timeout=5.0)
    try:
        c.connect("audit-retained", clean=True, keepalive=30)
        c.subscribe([("#", m.sub_options(qos=1))])
        got = set()
        while True:
            try:
                p = c.recv(1.0)
            except m.ReadTimeout:
                break
            if p.type == m.PUBLISH:
                if p.retain:
                    got.add(p.topic)
                if p.qos == 1:
                    c.send(m.puback(p.mid, v5=True))
        c.go_offline()
        return got
    except Exception as e:  # noqa: BLE001  (any failure is the finding)
        return "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def last_due_ms(data_dir, start_ms):
    """When the last will of a stored session, or the last $delayed/ message,
    comes due (wall clock, ms) once the broker starts at `start_ms`; 0 for
    none. A will delay is whatever a client sent, a mutated CONNECT's too
    (one of 65 s once: a flipped bit), so the run's choices (at most 3 s)
    do not bound it. A session record is a version byte, the protocol
    level, the expiry interval (4), its expiry and its will's due time (8
    each, 0 for none scheduled), the username (a flag, a 4-byte length and
    the bytes), then a will flag and the will: QoS, retain, and its topic,
    properties and payload, each a 4-byte length and the bytes. A will not
    scheduled (its session was online when the broker stopped) goes its
    delay after the start. A delayed message's key begins with its due
    time (8 bytes, big-endian)."""
    le = lambda b: int.from_bytes(b, "little")  # noqa: E731
    latest = 0
    for _, v in dump_table(data_dir, "sessions"):
        try:
            will_at = int.from_bytes(v[14:22], "little", signed=True)
            pos = 22
            pos += 5 + le(v[pos + 1:pos + 5])  # username
            if not v[pos]:
                continue
            pos += 3
            pos += 4 + le(v[pos:pos + 4])  # topic
            props = v[pos + 4:pos + 4 + le(v[pos:pos + 4])]
            if will_at == 0:
                delay = m.decode_props(props, 0)[0].get("will_delay_interval", 0) if v[1] == 5 and props else 0
                will_at = start_ms + 1000 * min(delay, le(v[2:6]))
            latest = max(latest, will_at)
        except (IndexError, ValueError, struct.error, m.MQTTRawError):
            continue
    for k, _ in dump_table(data_dir, "delayed"):
        latest = max(latest, int.from_bytes(k[:8], "big"))
    return latest


def audit(broker):
    """Stored means delivered: after the fuzzing, every queue the store holds is
    drained by a well-behaved client, and then no entry may be left. Returns
    (problems, summary)."""
    data_dir = os.path.join(broker.workdir, "data")
    owners = queue_owners(data_dir)
    retained = retained_topics(data_dir)
    before = os.path.join(broker.workdir, "data-before-audit")  # kept for a look afterwards, and read below
    shutil.copytree(data_dir, before)
    broker.write_config(sys_interval=0)  # no $SYS message may come in behind a drain
    if not broker.start():
        return ["the broker did not start for the audit"], ""
    # Wills with a delay and $delayed/ messages come due first, so that
    # nothing is routed to a queue after it was drained (those due more than
    # 5 minutes on come long after the audit).
    now_ms = int(time.time() * 1000)
    due_ms = last_due_ms(before, now_ms)  # the store as the fuzzing left it, not the live one
    wait_s = (due_ms - now_ms) / 1000.0 + 1 if due_ms <= now_ms + 300000 else 0
    if wait_s > 4:
        print("audit: waiting %.0f s for the last will or delayed message to come due" % wait_s, flush=True)
    time.sleep(max(4, wait_s))
    problems, taken = [], 0
    for owner, (entries, lasting) in sorted(owners.items()):
        got = drain(broker.port, owner)
        if isinstance(got, str):
            problems.append("draining %r: %s" % (owner, got))
            continue
        taken += got
        if got < lasting:
            problems.append("%r held %d entries, %d of which cannot expire; %d were delivered"
                            % (owner, entries, lasting, got))
    sent = retained_sent(broker.port)
    if isinstance(sent, str):
        problems.append("subscribing to '#' for the retained messages: %s" % sent)
    else:
        for topic in sorted(retained - sent):
            problems.append("retained message on %r (stored, no expiry) not sent on SUBSCRIBE" % topic)
    rc = broker.stop()
    if rc != 0:
        problems.append("SIGTERM after the audit: exit status %s" % rc)
    left = queue_owners(data_dir)
    for owner, (n, _) in sorted(left.items()):
        problems.append("%d entr%s of %r still queued after it was drained (%d before)"
                        % (n, "y" if n == 1 else "ies", owner, owners.get(owner, [0])[0]))
    problems += store_problems(data_dir)
    return problems, ("%d queues drained, %d entries of which %d cannot expire; %d messages taken; "
                      "%d retained messages sent on SUBSCRIBE" % (
                          len(owners), sum(e for e, _ in owners.values()), sum(n for _, n in owners.values()),
                          taken, len(retained)))


def check_store(broker, when):
    """None, or what is wrong with the store of the stopped broker."""
    if not shutil.which("mdb_dump"):
        if not getattr(check_store, "warned", False):
            print("mdb_dump not found (apt-get install lmdb-utils): the store is not checked", flush=True)
            check_store.warned = True
        return None
    problems = store_problems(os.path.join(broker.workdir, "data"))
    check_store.checks = getattr(check_store, "checks", 0) + 1
    if not problems:
        return None
    return "store %s: %d problem(s):\n    %s" % (when, len(problems), "\n    ".join(problems[:10]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--broker", default=os.path.join(REPO, "build", "petrel"), help="broker binary")
    ap.add_argument("--seconds", type=float, default=300, help="how long to fuzz")
    ap.add_argument("--seed", type=int, default=None, help="random seed; random when absent, always printed")
    ap.add_argument("--workers", type=int, default=2, help="the broker's workers:")
    ap.add_argument("--clients", type=int, default=6, help="fuzzing clients at once")
    ap.add_argument("--check-s", type=float, default=2.0, help="seconds between bystander checks")
    ap.add_argument("--restart-s", type=float, default=30.0, help="seconds between kill -9 and restart (0: never)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-audit", action="store_true", help="skip draining every stored queue at the end")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print("seed %d" % seed, flush=True)
    workdir = tempfile.mkdtemp(prefix="petrel-netfuzz-")
    broker = Broker(os.path.abspath(args.broker), workdir, args.workers)
    failures = []
    stats = {"connections": 0, "bytes": 0}
    lock = threading.Lock()
    checks = 0
    try:
        if not broker.start():
            failures.append("the broker did not start")
            raise SystemExit
        start = time.monotonic()
        deadline = start + args.seconds
        threads = [threading.Thread(target=fuzz_client, args=(broker.port, seed * 1000 + i, deadline, stats, lock),
                                    daemon=True) for i in range(args.clients)]
        for t in threads:
            t.start()
        next_restart = start + args.restart_s if args.restart_s > 0 else float("inf")
        while time.monotonic() < deadline and not failures:
            time.sleep(args.check_s)
            if not broker.alive():
                failures.append("the broker exited with %s" % broker.proc.returncode)
                break
            checks += 1
            why = bystander(broker.port, checks)
            if why:
                failures.append("bystander check %d: %s" % (checks, why))
                break
            if time.monotonic() >= next_restart and time.monotonic() < deadline - 5:
                broker.kill()
                found = check_store(broker, "after kill -9 (start %d)" % broker.starts)
                if found:
                    failures.append(found)
                    break
                if not broker.start():
                    failures.append("the broker did not start again after kill -9 (start %d)" % broker.starts)
                    break
                next_restart = time.monotonic() + args.restart_s
        for t in threads:
            t.join(timeout=10)
        if not failures:
            rc = broker.stop()
            if rc != 0:
                failures.append("SIGTERM: exit status %s" % rc)
            found = check_store(broker, "after SIGTERM")
            if found:
                failures.append(found)
        if not failures and not args.no_audit and shutil.which("mdb_dump"):
            problems, summary = audit(broker)
            print("audit: " + summary, flush=True)
            if problems:
                failures.append("audit: %d problem(s):\n    %s" % (len(problems), "\n    ".join(problems[:20])))
    finally:
        if broker.alive():
            broker.kill()
        log = broker.log()
        for mark in SANITIZER_MARKS:
            if mark in log:
                at = log.index(mark)
                failures.append("sanitizer report in the broker's log:\n" +
                                log[max(0, at - 200):at + 3000].decode("utf-8", "replace"))
                break
        print("%d connections, %d bytes sent, %d bystander checks, %d broker starts, %d store checks"
              % (stats["connections"], stats["bytes"], checks, broker.starts, getattr(check_store, "checks", 0)))
        if failures:
            print("FAIL (seed %d; log %s)" % (seed, broker.log_path))
            for f in failures:
                print("  " + f)
        else:
            print("PASS")
        if args.keep or failures:
            print("work directory: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
