#!/usr/bin/env python3
"""Delayed publish at scale: schedules COUNT (1,000,000) delayed messages far
in the future ($delayed/<DELAY>/bench/delayed/<i>, QoS 1, each acknowledged
once stored), reports the broker's RSS with all of them pending, kills it
with SIGKILL, restarts it on the same store and reports the start-up time
(until it accepts connections, having loaded the count and the first RAM
window) and its RSS after start-up; then checks the pending count in $SYS
and `petrel inspect`.

    /usr/bin/python3 bench/delayed_million.py [--count N] [--bin build/petrel]

Not part of the test suite (it takes a minute and some GB of disk).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import mqttraw as m  # noqa: E402

CHUNK = 10000        # PUBLISH packets written at once
OUTSTANDING = 50000  # unacknowledged PUBLISH at most


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    """VmRSS, RssAnon and RssFile of `pid`, in MiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024.0
    return out


def fmt(r):
    return "RSS %.1f MiB (anonymous %.1f, file-backed %.1f; peak %.1f)" % (
        r["VmRSS"], r["RssAnon"], r["RssFile"], r["VmHWM"])


def start(binary, config, log, port):
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "--config", config], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    while True:
        if p.poll() is not None:
            sys.exit("broker exited with %s" % p.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p, time.monotonic() - t0
        except OSError:
            time.sleep(0.005)


def sys_pending(port, timeout=5):
    c = m.RawClient("127.0.0.1", port, version=4, timeout=timeout)
    c.connect("bench-sys")
    c.subscribe([("$SYS/broker/delayed/pending", 0)])
    p = c.recv_publish(timeout=timeout)
    c.disconnect()
    return int(p.payload)


def probe(port):
    """Schedules 5 messages 1-3 s ahead next to what is pending; returns how
    late each reached a subscriber, in seconds."""
    sub = m.RawClient("127.0.0.1", port, version=4)
    sub.connect("bench-probe-sub")
    sub.subscribe([("bench/probe/#", 1)])
    pub = m.RawClient("127.0.0.1", port, version=4)
    pub.connect("bench-probe-pub")
    due = {}
    for i, n in enumerate((1, 2, 3, 2, 1)):
        t = time.monotonic()
        pub.publish("$delayed/%d/bench/probe/%d" % (n, i), b"probe", qos=1)
        due["bench/probe/%d" % i] = t + n
    late = []
    for _ in due:
        p = sub.recv_publish(timeout=10)
        late.append(time.monotonic() - due[p.topic])
    sub.disconnect()
    pub.disconnect()
    return late


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--delay", type=int, default=30 * 86400, help="seconds ahead (default 30 days)")
    ap.add_argument("--payload", type=int, default=32, help="payload bytes")
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "petrel"))
    ap.add_argument("--dir", help="scratch directory (default: a new one in /tmp, removed at the end)")
    ap.add_argument("--sync", default="fsync", choices=("fsync", "periodic"))
    args = ap.parse_args()

    work = args.dir or tempfile.mkdtemp(prefix="petrel-delayed-bench-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    port = free_port()
    config = os.path.join(work, "petrel.yaml")
    with open(config, "w") as f:
        f.write("log_level: notice\n"
                "listeners:\n  - address: 127.0.0.1\n    port: %d\n"
                "persistence:\n  enabled: true\n  dir: %s\n  sync: %s\n  max_size_mb: 16384\n"
                "delayed:\n  max_pending: %d\n"
                "mqtt:\n  sys_interval: 1\n" % (port, data, args.sync, args.count + 100))
    log = open(os.path.join(work, "petrel.log"), "ab")
    broker, _ = start(args.bin, config, log, port)
    print("broker pid %d, store %s" % (broker.pid, data))
    print("idle: %s" % fmt(rss(broker.pid)))

    # Schedule: QoS 1, pipelined; every PUBACK of MQTT 3.1.1 is 4 bytes.
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(m.connect("bench-delayed", 4))
    assert s.recv(4) == b"\x20\x02\x00\x00"
    payload = b"p" * args.payload
    sent = acked_bytes = 0
    t0 = time.monotonic()
    while acked_bytes < 4 * args.count:
        if sent < args.count and sent - acked_bytes // 4 <= OUTSTANDING - CHUNK:
            n = min(CHUNK, args.count - sent)
            s.sendall(b"".join(m.publish("$delayed/%d/bench/delayed/%d" % (args.delay, i), payload, qos=1,
                                         mid=i % 65535 + 1) for i in range(sent, sent + n)))
            sent += n
            continue
        data_in = s.recv(1 << 20)
        if not data_in:
            sys.exit("broker closed the connection")
        acked_bytes += len(data_in)
    took = time.monotonic() - t0
    if acked_bytes != 4 * args.count:
        sys.exit("unexpected acknowledgements (%d bytes)" % acked_bytes)
    s.close()
    print("scheduled %d in %.1f s (%.0f/s), each acknowledged after its commit"
          % (args.count, took, args.count / took))
    time.sleep(1.5)
    print("%d pending: %s" % (args.count, fmt(rss(broker.pid))))
    print("$SYS/broker/delayed/pending: %d" % sys_pending(port))
    size = os.path.getsize(os.path.join(data, "data.mdb"))
    print("store file: %.0f MiB" % (size / 1048576.0))

    # kill -9 and restart on the same store.
    broker.send_signal(signal.SIGKILL)
    broker.wait()
    broker, startup = start(args.bin, config, log, port)
    after = rss(broker.pid)
    print("restart after SIGKILL: accepting connections after %.3f s; %s" % (startup, fmt(after)))
    pending = sys_pending(port)
    print("$SYS/broker/delayed/pending after the restart: %d" % pending)
    time.sleep(1.0)
    print("1 s later: %s" % fmt(rss(broker.pid)))
    lateness = probe(port)
    print("with %d pending, 5 probes 1-3 s ahead reached a subscriber %.1f..%.1f ms after their due time"
          % (pending, min(lateness) * 1000, max(lateness) * 1000))
    t1 = time.monotonic()
    r = subprocess.run([args.bin, "inspect", "--data", data], capture_output=True, text=True)
    mm = re.search(r"^\s+delayed\s+(\d+)", r.stdout, re.M)
    print("petrel inspect: delayed %s (%.2f s)" % (mm.group(1) if mm else "?", time.monotonic() - t1))
    loaded = [l for l in open(os.path.join(work, "petrel.log"), errors="replace")
              if "delayed publishes pending" in l]
    if loaded:
        print("log: %s" % loaded[-1].strip())
    broker.send_signal(signal.SIGTERM)
    broker.wait()
    log.close()
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    if pending != args.count:
        sys.exit("FAILED: %d pending after the restart, %d scheduled" % (pending, args.count))


if __name__ == "__main__":
    main()
