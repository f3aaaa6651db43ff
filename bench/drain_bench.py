#!/usr/bin/env python3
"""Large durable queues draining side by side, with a bystander.

S durable subscribers (alternately MQTT 3.1.1 clean_session=0 and MQTT 5
with Session Expiry 3600 and no Receive Maximum) subscribe to one topic and
go offline; a publisher sends COUNT messages (QoS 1 or 2, all acknowledged);
then every subscriber reconnects at the same moment, each in its own
process, and drains its queue. Meanwhile a bystander client publishes QoS 0
to itself every 50 ms and measures the round trip.

Printed per subscriber: time from CONNACK to its first message, the longest
silence while draining, drain time; for the bystander: p50 / p99 / max
round trip; and the drain of one subscriber alone for comparison (--alone).

    bench/drain_bench.py --subs 2 --count 180000
    bench/drain_bench.py --subs 10 --count 180000 --qos 2

Starts its own broker (--broker, default build/petrel) on a free loopback
port with persistence in a temporary directory, and stops it at the end.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import fastclient as fc  # noqa: E402

HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_broker(binary, workdir, port):
    cfg = os.path.join(workdir, "petrel.yaml")
    with open(cfg, "w") as f:
        f.write("log_level: notice\nlisteners:\n  - {address: %s, port: %d}\n"
                "limits:\n  max_queued_messages: 0\n"
                "persistence:\n  enabled: true\n  dir: %s\n" % (HOST, port, os.path.join(workdir, "data")))
    log = open(os.path.join(workdir, "petrel.log"), "ab")
    p = subprocess.Popen([binary, "--config", cfg], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.02)
    p.kill()
    raise SystemExit("broker did not start")


def sub_version(i):
    return 4 if i % 2 == 0 else 5


def make_sub(port, i, clean):
    v = sub_version(i)
    return fc.Sub(HOST, port, "drain%d" % i, version=v, clean=clean if v == 4 else clean,
                  expiry=3600 if v == 5 else None)


def drainer(port, i, count, q, go, nice):
    if nice:
        os.nice(nice)  # the subscribers yield the CPU to the broker and the bystander
    s = make_sub(port, i, False)
    go.wait(30)
    t0 = time.monotonic()
    s.connect()
    fc.run([s], lambda: s.unique() >= count, 600)
    q.put({"sub": s.cid, "version": "3.1.1" if s.version == 4 else "5.0", "unique": s.unique(),
           "first_ms": round(((s.first_at or 0) - s.connack_at) * 1e3, 1),
           "max_gap_ms": round(s.max_gap * 1e3, 1), "gap_at": s.max_gap_at,
           "drain_s": round((s.last_at or t0) - t0, 2), "dups": s.dups,
           "order_errors": s.order_errors, "session_present": s.session_present})
    s.close()


def fill(port, subs, count, qos):
    for i in range(subs):
        s = make_sub(port, i, True)
        if s.version == 4:
            s.clean = False
        s.connect("drain/t", qos)
        s.close()
    pub = fc.Pub(HOST, port, "drain-pub", version=5).connect()
    t0 = time.monotonic()
    pub.publish("drain/t", count, qos=qos, window=100, timeout=600)
    pub.close()
    return time.monotonic() - t0


def drain(port, subs, count, nice=0):
    ctx = multiprocessing.get_context("fork")
    q, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=drainer, args=(port, i, count, q, go, nice)) for i in range(subs)]
    for p in procs:
        p.start()
    by = fc.Bystander(HOST, port)
    by.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    go.set()
    results = [q.get(timeout=900) for _ in procs]
    total = time.monotonic() - t0
    for p in procs:
        p.join(10)
    rt = by.stop()
    return sorted(results, key=lambda r: r["sub"]), rt, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--broker", default=os.path.join(REPO, "build", "petrel"))
    ap.add_argument("--subs", type=int, default=2)
    ap.add_argument("--count", type=int, default=180000)
    ap.add_argument("--qos", type=int, default=1, choices=(1, 2))
    ap.add_argument("--alone", action="store_true", help="also drain one subscriber alone first")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the subscriber processes (on a small machine they compete "
                         "with the broker and the bystander for the CPU)")
    a = ap.parse_args()
    out = {"subs": a.subs, "count": a.count, "qos": a.qos}
    for phase in (["alone"] if a.alone else []) + ["together"]:
        n = 1 if phase == "alone" else a.subs
        workdir = tempfile.mkdtemp(prefix="petrel-drain-")
        port = free_port()
        broker = start_broker(a.broker, workdir, port)
        try:
            fill_s = fill(port, n, a.count, a.qos)
            results, rt, total = drain(port, n, a.count, a.nice)
        finally:
            broker.terminate()
            broker.wait(30)
            shutil.rmtree(workdir, ignore_errors=True)
        print("# %s: %d subscriber(s) x %d QoS %d messages (published in %.1f s), drained in %.1f s"
              % (phase, n, a.count, a.qos, fill_s, total))
        print("# %-8s %-6s %9s %10s %12s %9s %6s" % ("sub", "MQTT", "unique", "first ms", "max gap ms", "drain s", "dups"))
        for r in results:
            print("# %-8s %-6s %9d %10.1f %12.1f %9.2f %6d" % (r["sub"], r["version"], r["unique"],
                                                              r["first_ms"], r["max_gap_ms"], r["drain_s"], r["dups"]))
        print("# bystander: %d round trips, p50 %.2f ms, p99 %.2f ms, max %.2f ms"
              % (rt["n"], rt["p50"] * 1e3, rt["p99"] * 1e3, rt["max"] * 1e3))
        out[phase] = {"drain_s": round(total, 2), "subs": results,
                      "bystander_ms": {k: round(v * 1e3, 2) for k, v in rt.items() if k != "n"}}
        ok = all(r["unique"] == a.count for r in results)
        out[phase]["complete"] = ok
    print(json.dumps(out))
    return 0 if all(out[p]["complete"] for p in out if isinstance(out[p], dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
