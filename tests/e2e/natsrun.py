"""Real nats-servers and Petrel nodes linked to them, for the cluster tests.

`Nats` is one nats-server on loopback (restartable on its port; with
JetStream when asked), `NatsCluster` three routed as one (JetStream
clustered when asked). The `nodes` fixture starts Petrel nodes of one
cluster; the helpers read what reaches a client and the nodes' $SYS
values.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

import mqttraw as m
from conftest import DEFAULT_CONFIG, HOST, Broker, free_port, merge

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class Nats:
    """A real nats-server on loopback, restartable on its port."""

    def __init__(self, workdir, port=None, jetstream=False, monitor=False):
        self.port = port or free_port()
        self.monitor_port = free_port() if monitor else None
        self.log_path = os.path.join(str(workdir), "nats-%d.log" % self.port)
        self.proc = None
        self.extra = []
        if jetstream:
            # Its store survives a restart, as on a real server.
            store = os.path.join(str(workdir), "nats-js-%d" % self.port)
            self.extra = ["--jetstream", "--store_dir", store, "--server_name", "n%d" % self.port]
        if monitor:
            self.extra += ["-m", str(self.monitor_port)]

    @property
    def url(self):
        return "nats://%s:%d" % (HOST, self.port)

    def start(self):
        assert os.access(NATS_SERVER, os.X_OK), "nats-server not installed (Debian package nats-server)"
        self.proc = subprocess.Popen([NATS_SERVER, "-a", HOST, "-p", str(self.port)] + self.extra,
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Its own process must be the one listening: another server on
            # the same port would answer too.
            if self.proc.poll() is not None:
                with open(self.log_path, "rb") as f:
                    tail = f.read()[-600:].decode(errors="replace")
                raise AssertionError("nats-server on port %d exited at start:\n%s" % (self.port, tail))
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    time.sleep(0.05)
                    if self.proc.poll() is None:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not come up")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def _stream_detail(self, name, query):
        """Stream `name`'s entry in the server's JetStream monitoring page
        (monitor=True), asked with `query`; None when it has none."""
        url = "http://%s:%d/jsz?%s" % (HOST, self.monitor_port, query)
        with urllib.request.urlopen(url, timeout=5) as r:
            jsz = json.load(r)
        for acc in jsz.get("account_details", []):
            for st in acc.get("stream_detail", []):
                if st["name"] == name:
                    return st
        return None

    def stream_state(self, name):
        """A JetStream stream's state (messages, bytes, first_seq...), from
        the server's monitoring port (monitor=True)."""
        st = self._stream_detail(name, "streams=true")
        return st["state"] if st else None

    def consumer_configs(self, stream):
        """The configs of a JetStream stream's consumers, by consumer name,
        from the server's monitoring port (monitor=True)."""
        st = self._stream_detail(stream, "consumers=true&config=true")
        return {c["name"]: c.get("config", {}) for c in (st or {}).get("consumer_detail") or []}

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def request(self, subject, payload=b"", timeout=5.0):
        """A NATS request through this server, in NATS's own text
        protocol; the reply's payload."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.petrel 1\r\n'
                         b"PUB %s _INBOX.petrel %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
            buf = b""
            while True:
                head, sep, rest = buf.partition(b"\r\n")
                if sep and head.startswith(b"MSG "):
                    size = int(head.split()[-1])
                    if len(rest) >= size + 2:
                        return rest[:size]
                elif sep:
                    if head.startswith(b"PING"):
                        sock.sendall(b"PONG\r\n")
                    buf = rest
                    continue
                chunk = sock.recv(65536)
                assert chunk, "the NATS server closed the connection"
                buf += chunk


class NatsCluster:
    """Three nats-servers routed to each other: one NATS of three servers."""

    def __init__(self, workdir, jetstream=False, monitor=False):
        self.servers = [Nats(workdir, jetstream=jetstream, monitor=monitor) for _ in range(3)]
        self.route_ports = [free_port() for _ in range(3)]
        self._resume = None

    def start(self):
        routes = ",".join("nats://%s:%d" % (HOST, p) for p in self.route_ports)
        for srv, rp in zip(self.servers, self.route_ports):
            srv.extra += ["--cluster_name", "petrel-test", "--cluster", "nats://%s:%d" % (HOST, rp),
                          "--routes", routes]
            srv.start()
        return self

    def stop(self):
        if self._resume:
            self._resume.cancel()
        for srv in self.servers:
            srv.kill()  # a stopped (SIGSTOP) server too

    def lose_quorum(self, seconds):
        """Kills the server leading JetStream's metadata and stops (SIGSTOP)
        a second one for `seconds`: until it goes on and leaders are
        elected, JetStream cannot make consumers, purge or elect (monitor=True)."""
        leader = self.meta_leader()
        stopped = next(x for x in self.servers if x is not leader)
        leader.kill()
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        self._resume = threading.Timer(seconds, os.kill, (stopped.proc.pid, signal.SIGCONT))
        self._resume.start()

    def start_without_quorum(self, node, seconds=15.0):
        """Takes JetStream's quorum away for `seconds` (lose_quorum) and
        starts `node` at once: it must wait for JetStream, longer than
        `seconds`, and say in its log that it asks again. Its log."""
        self.lose_quorum(seconds)
        t0 = time.monotonic()
        node.start(timeout=seconds + 60)
        took = time.monotonic() - t0
        log = node.log()
        assert took > seconds, took
        # Which request JetStream leaves unanswered depends on where the
        # stream's leader was; each wait logs a notice that says so.
        assert "asking again" in log, log
        return log

    def step_down(self, name, timeout=30.0):
        """Has JetStream stream `name` elect another leader, once it has
        one (while it elects one, the request goes unanswered or is
        refused: asked again)."""
        deadline = time.monotonic() + timeout
        self._until_done("$JS.API.STREAM.LEADER.STEPDOWN." + name, "stream %s" % name, deadline,
                         before=lambda: self.stream_leader(name, timeout=max(0.1, deadline - time.monotonic())))

    def step_down_consumer(self, stream, consumer, timeout=30.0):
        """Has consumer `consumer` of JetStream stream `stream` elect
        another leader (asked again while it has none)."""
        self._until_done("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s" % (stream, consumer),
                         "consumer %s of %s" % (consumer, stream), time.monotonic() + timeout)

    def _until_done(self, subject, what, deadline, before=lambda: None):
        """Sends JetStream API request `subject` through a server that is
        up until one answers success."""
        while True:
            before()
            srv = next(x for x in self.servers if x.proc and x.proc.poll() is None)
            try:
                answer = json.loads(srv.request(subject, timeout=2.0))
            except OSError as e:
                answer = {"error": str(e)}
            if answer.get("success"):
                return
            assert time.monotonic() < deadline, "%s did not step down: %s" % (what, answer)
            time.sleep(0.2)

    def _leader(self, what, leader_in, timeout):
        """The server named by `leader_in(jsz)` in the JetStream monitoring
        page of a server that is up (monitor=True)."""
        deadline = time.monotonic() + timeout
        while True:
            for srv in self.servers:
                if not srv.proc or srv.proc.poll() is not None:
                    continue
                url = "http://%s:%d/jsz?streams=true" % (HOST, srv.monitor_port)
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        leader = leader_in(json.load(r))
                except OSError:
                    continue
                if leader:
                    return next(x for x in self.servers if "n%d" % x.port == leader)
            assert time.monotonic() < deadline, "%s has no leader" % what
            time.sleep(0.1)

    def stream_leader(self, name, timeout=10.0):
        """The server that leads JetStream stream `name` (monitor=True)."""
        def leader_in(jsz):
            for acc in jsz.get("account_details", []):
                for st in acc.get("stream_detail", []):
                    if st["name"] == name and st.get("cluster", {}).get("leader"):
                        return st["cluster"]["leader"]
            return None
        return self._leader("stream %s" % name, leader_in, timeout)

    def meta_leader(self, timeout=10.0):
        """The server that leads JetStream's metadata (its streams and
        consumers; monitor=True)."""
        return self._leader("JetStream's metadata", lambda jsz: jsz.get("meta_cluster", {}).get("leader"), timeout)


@pytest.fixture
def nats(tmp_path):
    n = Nats(tmp_path).start()
    yield n
    n.stop()


@pytest.fixture
def js(tmp_path):
    """One nats-server with JetStream (file storage)."""
    n = Nats(tmp_path, jetstream=True).start()
    yield n
    n.stop()


@pytest.fixture
def nodes(request, tmp_path):
    """nodes(nats, count, **overrides) -> started Petrel nodes of one cluster."""
    made = []

    def factory(nats_server, count=2, start=True, **overrides):
        out = []
        for _ in range(count):
            name = "node%d" % len(made)
            urls = [x.url for x in nats_server.servers] if isinstance(nats_server, NatsCluster) else [nats_server.url]
            cfg = merge(DEFAULT_CONFIG, merge({"cluster": {"servers": urls, "node": name},
                                               "mqtt": {"sys_interval": 1}}, overrides))
            b = Broker(tmp_path, cfg, name=name)
            made.append(b)
            if start:
                b.start()
            out.append(b)
        return out

    yield factory
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        # The NATS servers' logs first: they are short, and say whether a
        # server failed to start, closed a node's connection, or lost its
        # JetStream.
        for path in sorted(glob.glob(os.path.join(str(tmp_path), "nats-*.log"))):
            with open(path, "rb") as f:
                print("\n----- %s -----\n%s" % (os.path.basename(path), f.read().decode(errors="replace")))
    for b in made:
        b.kill()
        if failed:
            print("\n----- %s log -----\n%s" % (b.name, b.log()))


def publishes(client, timeout=1.0):
    return [p for p in client.collect(timeout, m.PUBLISH)]


def read_for(client, seconds):
    """Every PUBLISH that arrives within `seconds` (however steady)."""
    out = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            p = client.recv(left)
        except m.ReadTimeout:
            return out
        if p.type == m.PUBLISH:
            out.append(p)


def receive(client, n, prefix, timeout=15.0):
    """The payloads of the first `n` PUBLISHes on topics under `prefix`,
    each acknowledged as it comes (the in-flight window stays open)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            p = client.recv(max(0.01, deadline - time.monotonic()))
        except m.ReadTimeout:
            break
        if p.type != m.PUBLISH:
            continue
        client.ack(p)
        if p.topic.startswith(prefix):
            got.append(p)
    return got


def route_ready(pub_node, *subs, timeout=10.0, tag=""):
    """Waits until each subscriber's interest has reached NATS.

    Each subscriber subscribes to its probe topic after its other filters;
    NATS takes a connection's subscriptions in order, so once a probe
    published on `pub_node` arrives, every earlier filter is in place too.
    """
    p = pub_node.connected("prober-%d" % time.monotonic_ns())
    for i, s in enumerate(subs):
        topic = "probe/%d/%d%s" % (id(s), i, tag)
        mid = s.next_mid()
        s.send(m.subscribe(mid, [(topic, 0)], None, s.v5))
        s.wait_for(m.SUBACK, mid)  # what comes first is kept for the test
        deadline = time.monotonic() + timeout
        while True:
            p.publish(topic, b"probe")
            got = [x for x in s.collect(0.1, m.PUBLISH) if x.topic == topic]
            if got:
                break
            assert time.monotonic() < deadline, "a probe from another node never arrived"
        s.collect(0.2)  # further probes
    p.close()


def sys_value(node, what, timeout=5.0):
    """$SYS/broker/cluster/<what> on `node` (published every second)."""
    c = node.connected("sys-%d" % time.monotonic_ns())
    c.subscribe([("$SYS/broker/cluster/" + what, 0)])
    deadline = time.monotonic() + timeout
    try:
        while True:
            p = c.recv(max(0.01, deadline - time.monotonic()))
            if p.type == m.PUBLISH:
                return p.payload.decode()
    finally:
        c.close()


def wait_sys(node, what, pred, timeout=8.0):
    deadline = time.monotonic() + timeout
    v = None
    while time.monotonic() < deadline:
        v = sys_value(node, what)
        if pred(v):
            return v
        time.sleep(0.3)
    raise AssertionError("$SYS/broker/cluster/%s stayed %r" % (what, v))


def stream_ready(*nodes_):
    """Until each node's stream and consumer are open (stream/up) and its
    session registry too (sessions/bucket): a node whose registry is not
    open yet knows no other node's sessions (its first try can time out
    while JetStream servers are still electing leaders)."""
    for n in nodes_:
        wait_sys(n, "stream/up", lambda v: v == "1", timeout=15)
        wait_sys(n, "sessions/bucket", lambda v: v == "1", timeout=15)


def acked_seqs(pub):
    """The sequence numbers fastclient.Pub sent and had acknowledged."""
    unacked = set()
    for pkt in pub.unacked.values():
        payload = pkt[pkt.index(pub.name + b":"):]
        unacked.add(int(payload.split(b":")[1]))
    return set(range(pub.next_seq)) - unacked


def publish_until_killed(pub, topic, n):
    """Publishes `n` QoS 1 messages unthrottled (1,000 in flight) on a
    thread; returns it (the publisher stops when its node dies)."""
    def go():
        try:
            pub.publish(topic, n, qos=1, window=1000, timeout=150, payload_size=100)
        except (ConnectionError, OSError, AssertionError):
            pass
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def wait_acked(pub, n, timeout=60.0):
    """Until `pub` has `n` PUBACKs."""
    deadline = time.monotonic() + timeout
    while pub.acked < n:
        assert time.monotonic() < deadline, "only %d of %d acknowledged" % (pub.acked, n)
        time.sleep(0.01)
