"""`workers: N`: client connections on N event loops (threads of their own),
sessions, routing and the store on the main loop.

Every other e2e test also runs with PETREL_TEST_WORKERS=1 and =4 (see
.ci/run); these tests are about the loops themselves: that they exist, that
messages cross between them at volume (far more than the 8 MiB the loops let
wait for each other; the unit tests in test_io_workers.cpp hold one loop
back to make the others wait) without loss, duplicates or reordering, and that a session
taken over by a connection on another loop keeps its guarantees. The QoS 0
flood of test_16_flow_at_scale.py runs on two loops by default (one per
core on a 2-core machine), and on one and four in CI's other runs."""
import glob
import math
import multiprocessing
import os
import re
import signal
import time

import cgroups
import fastclient as fc
import mqttraw as m
import pytest
from petrel_tls_helpers import free_port

pytestmark = pytest.mark.petrel_only

# Under AddressSanitizer the broker is several times slower: less volume,
# no memory bound (shadow memory and quarantine).
SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"

PUBS = 4
SUBS = 6
PER_PUB = 5_000 if SANITIZED else 15_000
PAYLOAD = 700  # 4 x 15,000 x 700 B = 42 MB to each subscriber, 250 MB in all


@pytest.fixture(autouse=True)
def _long_test():
    # Hundreds of megabytes through Python clients: more than the suite's
    # default per-test bound.
    old = signal.alarm(0)
    signal.alarm(150)
    yield
    signal.alarm(old)


def _threads(pid):
    names = []
    for comm in glob.glob("/proc/%d/task/*/comm" % pid):
        try:
            names.append(open(comm).read().strip())
        except OSError:
            pass
    return names


def test_the_store_writes_on_a_thread_of_its_own(make_broker):
    b = make_broker(workers=1, persistence={"enabled": True})
    names = _threads(b.proc.pid)
    assert names.count("petrel-store") == 1, names
    assert not any(n.startswith("petrel-io-") for n in names), names


def test_loops_are_threads_of_their_own(make_broker):
    b = make_broker(workers=3)
    names = _threads(b.proc.pid)
    assert sorted(n for n in names if n.startswith("petrel-io-")) == ["petrel-io-1", "petrel-io-2", "petrel-io-3"], names
    assert "3 event loops carry client connections" in b.log()
    c = b.connected("w-basic")
    c.subscribe([("w/basic", 1)])
    c.publish("w/basic", b"x", qos=1)
    assert c.recv_publish().payload == b"x"


def test_one_loop_runs_no_thread_of_its_own(make_broker):
    b = make_broker(workers=1)
    assert not [n for n in _threads(b.proc.pid) if n.startswith("petrel-io-")]
    assert "1 event loop carries client connections" in b.log()


def _started_in(b, argv_head):
    """Starts broker `b` with `argv_head` in front of its command."""
    b.argv = list(argv_head) + b.argv
    return b.start()


_AUTO = re.compile(r"(\d+) event loops? (?:carries|carry) client connections \(workers: auto: (\d+) CPUs? in the "
                   r"affinity mask, (?:no CPU quota|a CPU quota of ([\d.]+) CPUs \(cgroup (.*)\))\)")


def _auto(b):
    """What `workers: auto` found, from the broker's log: (loops, CPUs in
    the mask, the quota in CPUs or None, the quota's cgroup or None)."""
    found = _AUTO.search(b.log())
    assert found, b.log()
    loops, mask, quota, where = found.groups()
    return int(loops), int(mask), float(quota) if quota else None, where


def test_auto_takes_no_more_loops_than_the_cgroups_cpu_quota(make_broker):
    # A container limited to one CPU (docker --cpus=1, a Kubernetes CPU
    # limit, systemd's CPUQuota=100%) on a host of any size: one loop, not
    # one per CPU of the host; then two and a half CPUs. A child's quota
    # may not exceed its parent's in cgroup v1, and the parent (the
    # hierarchy's root, or a container's own cgroup) may have one: the
    # test keeps below it. (A parent's lower limit binding its children is
    # a unit test, test_cgroup_limits.cpp.)
    mask = len(os.sched_getaffinity(0))
    d = cgroups.make("petrel-test-%d" % os.getpid(), "cpu")
    parent_quota = cgroups.cpu_quota_in(os.path.dirname(d))
    in_d = cgroups.run_in(d)
    b = None
    try:
        for cpus in (1.0, 2.5):
            if parent_quota is not None:
                cpus = min(cpus, parent_quota)
            try:
                cgroups.set_cpu_quota(d, cpus)
            except OSError as e:
                pytest.skip("cannot set a CPU quota here: %s" % e)
            b = make_broker(start=False, workers="auto")
            _started_in(b, in_d)
            loops, m, q, where = _auto(b)
            assert (m, q, where) == (mask, round(cpus, 2), d), b.log()  # the log has two decimals
            # One loop per CPU of the mask, no more than the quota rounded up.
            assert loops == min(mask, math.ceil(cpus)), b.log()
            workers = [n for n in _threads(b.proc.pid) if n.startswith("petrel-io-")]
            assert len(workers) == (loops if loops > 1 else 0), workers
            c = b.connected("w-quota")
            c.subscribe([("w/quota", 1)])
            c.publish("w/quota", b"x", qos=1)
            assert c.recv_publish().payload == b"x"
            b.kill()
    finally:
        if b:
            b.kill()  # a cgroup with a process in it cannot be removed
        cgroups.remove(d)


def test_auto_takes_one_loop_per_cpu_of_the_affinity_mask(make_broker):
    b = make_broker(start=False, workers="auto")
    _started_in(b, ["taskset", "-c", str(min(os.sched_getaffinity(0)))])
    loops, mask, _, _ = _auto(b)
    assert (loops, mask) == (1, 1), b.log()
    assert not [n for n in _threads(b.proc.pid) if n.startswith("petrel-io-")]


def _loop_flow(http_port):
    # petrel_loop_input_pauses_total and petrel_loop_output_waits_total:
    # one sample for each of the four worker loops; their sums.
    import urllib.request
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=5).read().decode()
    sums = {}
    for name in ("petrel_loop_input_pauses_total", "petrel_loop_output_waits_total"):
        values = re.findall(r'^%s\{thread="petrel-io-\d+"\} (\d+)$' % name, body, re.M)
        assert len(values) == 4, (name, body)
        sums[name] = sum(int(v) for v in values)
    return sums


def _publisher(port, i, q, go):
    p = fc.Pub("127.0.0.1", port, "w-pub%d" % i, version=5 if i % 2 else 4, name="p%d" % i).connect()
    q.put("ready")
    go.wait(30)
    t0 = time.monotonic()
    p.publish("w/%d" % i, PER_PUB, qos=1, window=2000, payload_size=PAYLOAD, timeout=150)
    q.put(("done", time.monotonic() - t0))
    p.close()


def test_volume_across_loops_without_loss_duplicates_or_reordering(make_broker):
    # Four loops, publishers and subscribers spread over them: every message
    # crosses from one loop to the main loop and out to the others. The
    # publishers' windows (2,000 each) keep far more than 8 MiB moving.
    http_port = free_port()
    b = make_broker(workers=4, limits={"max_inflight": 1000, "max_queued_messages": 0},
                    http={"enabled": True, "address": "127.0.0.1", "port": http_port})
    subs = [fc.Sub(b.host, b.port, "w-sub%d" % i, version=5 if i % 2 else 4).connect("w/#", 1)
            for i in range(SUBS)]
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    go = ctx.Event()
    pubs = [ctx.Process(target=_publisher, args=(b.port, i, q, go), daemon=True) for i in range(PUBS)]
    for p in pubs:
        p.start()
    for _ in pubs:
        assert q.get(timeout=20) == "ready"
    go.set()
    total = PUBS * PER_PUB
    assert fc.run(subs, lambda: all(s.unique() >= total for s in subs), 180), \
        [(s.cid, s.unique()) for s in subs]
    for _ in pubs:
        assert q.get(timeout=60)[0] == "done"
    for p in pubs:
        p.join(10)
    for s in subs:
        assert s.unique() == total and s.dups == 0 and s.order_errors == 0, (s.cid, s.unique(), s.dups, s.order_errors)
        for i in range(PUBS):
            assert s.unique(b"p%d" % i) == PER_PUB
    # The flow control between the loops is counted for each worker loop.
    # Whether it engages here depends on the machine's cores; the unit
    # tests in test_io_workers.cpp make it engage both ways.
    _loop_flow(http_port)
    # Flow control kept memory bounded: 250 MB went through.
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % b.proc.pid).read()).group(1))
    assert SANITIZED or rss_kb < 400 << 10, rss_kb
    for s in subs:
        s.close()


MIX_PUBS = 2
MIX_ONES = 3  # subscribers that also get a topic of their own
MIX_PER_PUB = 10_000 if SANITIZED else 60_000


def _mix_topic(seq):
    # Even numbers to a topic every subscriber has, odd ones in turn to a
    # topic only one subscriber has.
    return "w/mix/fan" if seq % 2 == 0 else "w/mix/one/%d" % (seq // 2 % MIX_ONES)


def _mix_publisher(port, i, q, go):
    p = fc.Pub("127.0.0.1", port, "w-mix-pub%d" % i, version=5 if i % 2 else 4, name="m%d" % i).connect()
    q.put("ready")
    go.wait(30)
    p.publish(None, MIX_PER_PUB, qos=1, window=2000, payload_size=100, timeout=120, topic_of=_mix_topic)
    q.put("done")
    p.close()


def test_output_for_many_and_for_one_keeps_its_order(make_broker):
    # A message with several receivers is copied once to each loop, and
    # every connection there it goes to names that copy; one with a single
    # receiver is encoded into its connection's own output. A subscriber
    # that gets both kinds, interleaved, from one publisher must get them
    # in the order they were published: a shared write may not pass bytes
    # already waiting in the connection's own output, or held there behind
    # an acknowledgement that waits for a commit: one subscriber keeps
    # publishing retained QoS 1 messages, whose PUBACKs wait for the store,
    # and what is written to it meanwhile waits behind them. Four loops,
    # publishers with no pause between messages, each subscriber getting
    # 120-160 times its in-flight window of 500 (so its queue fills and
    # drains as well).
    b = make_broker(workers=4, persistence={"enabled": True},
                    limits={"max_inflight": 500, "max_queued_messages": 0})
    ones = [fc.Sub(b.host, b.port, "w-mix-one%d" % k, version=5 if k % 2 else 4)
            .connect([("w/mix/fan", 1), ("w/mix/one/%d" % k, 1)]) for k in range(MIX_ONES)]
    fans = [fc.Sub(b.host, b.port, "w-mix-fan%d" % k, version=4 if k % 2 else 5).connect("w/mix/fan", 1)
            for k in range(2)]
    subs = ones + fans
    want = {s.cid: sum(1 for seq in range(MIX_PER_PUB) if _mix_topic(seq) in ("w/mix/fan", "w/mix/one/%d" % k))
            for k, s in enumerate(ones)}
    for s in fans:
        want[s.cid] = (MIX_PER_PUB + 1) // 2
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    go = ctx.Event()
    pubs = [ctx.Process(target=_mix_publisher, args=(b.port, i, q, go), daemon=True) for i in range(MIX_PUBS)]
    for p in pubs:
        p.start()
    for _ in pubs:
        assert q.get(timeout=20) == "ready"
    holder = ones[0]
    kept = [0]

    def until():
        # Called after every read: four more retained QoS 1 messages from
        # `holder` (their PUBACKs, which the client ignores, wait for a commit).
        out = []
        for _ in range(4):
            kept[0] += 1
            out.append(m.publish("w/mix/kept", b"%d" % kept[0], 1, retain=True, mid=kept[0] % 65535 + 1,
                                 v5=holder.version == 5))
        holder._send(b"".join(out))
        return all(s.unique() >= MIX_PUBS * want[s.cid] for s in subs)

    go.set()
    assert fc.run(subs, until, 120, chunk=1 << 13), [(s.cid, s.unique(), MIX_PUBS * want[s.cid]) for s in subs]
    # Enough of them to have held its output many times (under the
    # sanitizer the run is a sixth as long: some hundreds).
    assert kept[0] > 200, kept
    for _ in pubs:
        assert q.get(timeout=60) == "done"
    for p in pubs:
        p.join(10)
    for s in subs:
        assert s.dups == 0 and s.order_errors == 0, (s.cid, s.dups, s.order_errors)
        for i in range(MIX_PUBS):
            assert s.unique(b"m%d" % i) == want[s.cid], (s.cid, i, s.unique(b"m%d" % i), want[s.cid])
    for s in subs:
        s.close()


def test_session_taken_over_from_another_loop(make_broker):
    # Two loops, connections handed out in turn: the second connection of a
    # client id lands on the other loop and takes the session over (the
    # first gets DISCONNECT 0x8E), with its subscription and its queue.
    b = make_broker(workers=2, persistence={"enabled": True})
    props = {"session_expiry_interval": 300}
    first = b.connected("w-owner", version=5, clean=False, props=props)
    first.subscribe([("w/take", 1)])
    pub = b.connected("w-taker-pub")
    second = b.client(5)
    ack = second.connect("w-owner", clean=False, props=props)
    assert ack.session_present is True
    packets = first.expect_closed(5)
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x8E)], packets
    for i in range(20):
        pub.publish("w/take", b"%d" % i, qos=1)
    got = [second.recv_publish().payload for _ in range(20)]
    assert got == [b"%d" % i for i in range(20)]


def _flooder(port, i, stop):
    # Keeps the loops busy: QoS 0 batches to a topic nobody reads.
    p = fc.Pub("127.0.0.1", port, "w-flood%d" % i, name="f%d" % i).connect()
    while not stop.is_set():
        p.publish("w/flood/%d" % i, 2_000, qos=0, payload_size=200, timeout=30)
    p.close()


def test_disconnect_then_connect_at_once_across_loops(make_broker):
    # A client sends DISCONNECT and at once connects again: the two
    # connections' bytes come through different loops, and the main loop
    # may hear of the new CONNECT first. The session must still be the one
    # the DISCONNECT left: ended (MQTT 5 expiry 0, or a 3.1.1 clean session)
    # -> session present 0; kept -> 1. The loops are kept busy meanwhile,
    # so that one of them is now and then late (a broker without the wait
    # got it wrong within a few rounds, flood or not). Under AddressSanitizer
    # the flood alone fills the main loop, and the loops are late anyway:
    # no flood, fewer rounds.
    b = make_broker(workers=4)
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    floods = [ctx.Process(target=_flooder, args=(b.port, i, stop), daemon=True)
              for i in range(0 if SANITIZED else 3)]
    for p in floods:
        p.start()
    try:
        wrong = []
        for i in range(40 if SANITIZED else 150):
            cid = "w-race-%d" % i
            # MQTT 5, no expiry: the session ends with the DISCONNECT.
            c = b.connected(cid, version=5, clean=True)
            c.subscribe([("w/race/%d" % i, 1)])
            c.disconnect()
            c = b.connected(cid, version=5, clean=False, props={"session_expiry_interval": 60})
            if c.connack.session_present:
                wrong.append((cid, "v5 expiry 0 then resumed"))
            # Expiry set to 0 by the DISCONNECT itself.
            c.disconnect(reason=0, props={"session_expiry_interval": 0})
            c = b.connected(cid, version=5, clean=False, props={"session_expiry_interval": 60})
            if c.connack.session_present:
                wrong.append((cid, "DISCONNECT expiry 0 then resumed"))
            # A kept session: resumed, whatever loop the new connection is on.
            c.disconnect()
            c = b.connected(cid, version=5, clean=False, props={"session_expiry_interval": 60})
            if not c.connack.session_present:
                wrong.append((cid, "kept session lost"))
            c.disconnect(reason=0, props={"session_expiry_interval": 0})
            # MQTT 3.1.1 clean session, then a persistent one.
            cid4 = "w-race4-%d" % i
            c = b.connected(cid4, version=4, clean=True)
            c.disconnect()
            c = b.connected(cid4, version=4, clean=False)
            if c.connack.session_present:
                wrong.append((cid4, "3.1.1 clean session then resumed"))
            c.disconnect()
            c = b.connected(cid4, version=4, clean=True)
            c.disconnect()
        assert wrong == [], wrong
    finally:
        stop.set()
        for p in floods:
            p.join(30)
    assert b.proc.poll() is None
