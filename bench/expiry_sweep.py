#!/usr/bin/env python3
"""Expired messages going with nobody online to meet them, and what that
costs an unrelated client.

--target queue (the default): a declared queue with `message_ttl` TTL
collects COUNT QoS 1 messages (all acknowledged) and no consumer ever
subscribes. --target session: the queue of an offline durable session
(MQTT 3.1.1, clean_session=0) collects them, with a default lifetime of
TTL for their topic (`message_expiry:`). Then, for SECONDS, a bystander
client publishes QoS 0 to itself every 2 ms and measures the round trip,
while the broker's one-second timer drops the expired messages at the
heads of the queues. The same run with a lifetime nobody reaches
(--control-ttl) is the baseline; the two alternate for --rounds.

Printed per run: publishing time, when $SYS showed the queue empty
(queue: its depth at 0; session: messages/expired at COUNT) in seconds
after the last PUBACK ("-" when it did not within SECONDS), and the
bystander's p50 / p99 / max round trip.

    bench/expiry_sweep.py --count 100000 --ttl 2 --rounds 2
    bench/expiry_sweep.py --target session --count 100000 --ttl 2 --rounds 2

Starts its own broker (--broker, default build/petrel, pinned to CPU 0
with `taskset`) on a loopback port with persistence in a temporary
directory, and stops it at the end of each run.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import fastclient as fc  # noqa: E402
import mqttraw as m  # noqa: E402

HOST = "127.0.0.1"


def one_run(broker, port, count, ttl, seconds, target):
    work = tempfile.mkdtemp(prefix="petrel-expiry-")
    try:
        cfg = os.path.join(work, "petrel.yaml")
        with open(cfg, "w") as f:
            f.write("log_level: notice\nworkers: 1\n"
                    "listeners:\n  - address: %s\n    port: %d\n"
                    "persistence:\n  enabled: true\n  dir: %s\n"
                    "mqtt:\n  sys_interval: 1\n" % (HOST, port, os.path.join(work, "data")))
            if target == "queue":
                f.write("queues:\n  - name: short\n    filters: [\"short/#\"]\n    message_ttl: %d\n" % ttl)
            else:
                f.write("limits:\n  max_queued_messages: %d\n"
                        "message_expiry:\n  - filter: \"short/#\"\n    seconds: %d\n" % (2 * count, ttl))
        with open(os.path.join(work, "log"), "w") as log:
            proc = subprocess.Popen(["taskset", "-c", "0", broker, "--config", cfg], stderr=log,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    pub = fc.Pub(HOST, port, "expiry-pub", version=5).connect()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            if target == "session":
                sub = m.RawClient(HOST, port, version=4, timeout=5)
                sub.connect("expiry-sub", clean=False)
                sub.subscribe([("short/#", 1)])
                sub.go_offline()
            t0 = time.monotonic()
            pub.publish("short/a", count, qos=1, window=1000, timeout=300)
            published = time.monotonic() - t0
            pub.close()
            watcher = m.RawClient(HOST, port, version=4, timeout=5)
            watcher.connect("expiry-watch", clean=True)
            if target == "queue":
                watcher.subscribe([("$SYS/broker/queues/short/depth", 0)])
                done = 0
            else:
                watcher.subscribe([("$SYS/broker/messages/expired", 0)])
                done = count
            by = fc.Bystander(HOST, port, interval=0.002)
            by.start()
            t1 = time.monotonic()
            emptied = None
            while time.monotonic() - t1 < seconds:
                try:
                    p = watcher.recv_publish(timeout=max(0.05, seconds - (time.monotonic() - t1)))
                except Exception:
                    break
                if emptied is None and int(p.payload) == done:
                    emptied = time.monotonic() - t1
            left = seconds - (time.monotonic() - t1)
            if left > 0:
                time.sleep(left)
            r = by.stop()
            watcher.close()
        finally:
            proc.terminate()
            proc.wait(30)
        return published, emptied, r
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", default=os.path.join(REPO, "build", "petrel"))
    ap.add_argument("--port", type=int, default=18931)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--ttl", type=int, default=2)
    ap.add_argument("--control-ttl", type=int, default=100000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--target", choices=("queue", "session"), default="queue")
    a = ap.parse_args()
    for _ in range(a.rounds):
        for ttl in (a.ttl, a.control_ttl):
            published, emptied, r = one_run(a.broker, a.port, a.count, ttl, a.seconds, a.target)
            print("%s, lifetime %6d: %d published in %.2f s; empty after %s; bystander n=%d p50 %.2f ms, "
                  "p99 %.2f ms, max %.2f ms"
                  % (a.target, ttl, a.count, published, "%.1f s" % emptied if emptied is not None else "-", r["n"],
                     r["p50"] * 1e3, r["p99"] * 1e3, r["max"] * 1e3), flush=True)


if __name__ == "__main__":
    main()
