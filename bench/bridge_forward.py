#!/usr/bin/env python3
"""Bridge forwarding: COUNT (100,000) numbered QoS 1 messages published on a
local broker as fast as its acknowledgements allow (1,000 in flight), carried
by a bridge (`data/#` out, QoS 1) to a remote broker, received there by a
subscriber. Reports messages per second from the first PUBLISH to the last
message received on the remote side, and the CPU time the local broker (the
one running the bridge) spent per message; checks that none is lost and the
order is kept. One Python process drives both clients (publish, then
drain), so the rate is bounded by it; the CPU per message is the broker's
own cost.

Pairs measured in the same run, alternating, ROUNDS times each:
  petrel-fsync     Petrel -> Petrel, the local store in `sync: fsync`
  petrel-periodic  Petrel -> Petrel, `sync: periodic` (200 ms)
  mosquitto        mosquitto -> mosquitto (Debian's), persistence on

    /usr/bin/python3 bench/bridge_forward.py [--count N] [--rounds R] [--bin build/petrel]

Not part of the test suite. The brokers share the machine's cores with the
clients; the ratio between pairs is what to read.
"""

import argparse
import os
import shutil
import socket
import statistics
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


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("broker exited during start-up")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("broker did not start")


def petrel_pair(args, work, sync):
    rport, lport = free_port(), free_port()
    procs = []
    for name, port, bridge in (("remote", rport, ""), ("local", lport, (
            "bridges:\n  - name: r\n    address: %s:%d\n    reconnect_min_ms: 100\n"
            "    topics:\n      - {pattern: \"data/#\", direction: out, qos: 1}\n" % (HOST, rport)))):
        conf = os.path.join(work, name + ".yaml")
        with open(conf, "w") as f:
            f.write("log_level: warning\nlisteners:\n  - {address: %s, port: %d}\n"
                    "persistence:\n  dir: %s\n  sync: %s\n"
                    "limits: {max_queued_messages: 0, max_inflight: 1000}\n%s"
                    % (HOST, port, os.path.join(work, name + "-data"), sync, bridge))
        p = subprocess.Popen([args.bin, "--config", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, p)
        procs.append(p)
    return rport, lport, procs


def mosquitto_pair(args, work):
    rport, lport = free_port(), free_port()
    procs = []
    for name, port, bridge in (("remote", rport, ""), ("local", lport, (
            "connection r\naddress %s:%d\ntopic data/# out 1\ncleansession false\n"
            "bridge_protocol_version mqttv311\nrestart_timeout 1\n" % (HOST, rport)))):
        d = os.path.join(work, name + "-mq")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("user root\nlistener %d %s\nallow_anonymous true\npersistence true\n"
                    "persistence_location %s/\nmax_queued_messages 0\nmax_inflight_messages 1000\n%s"
                    % (port, HOST, d, bridge))
        p = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, p)
        procs.append(p)
    return rport, lport, procs


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(kind, args):
    work = tempfile.mkdtemp(prefix="petrel-bridge-bench-")
    try:
        if kind == "mosquitto":
            rport, lport, procs = mosquitto_pair(args, work)
        else:
            rport, lport, procs = petrel_pair(args, work, kind.split("-")[1])
        try:
            sub = fc.Sub(HOST, rport, "rsub", version=4).connect("data/#", qos=1)
            time.sleep(1.0)  # the bridge is connected
            pub = fc.Pub(HOST, lport, "pub", version=4, name="p").connect()
            cpu0 = cpu_seconds(procs[1].pid)
            t0 = time.monotonic()
            pub.publish("data/x", args.count, qos=1, window=1000, timeout=600)
            ok = fc.run([sub], lambda: sub.unique() >= args.count, 600)
            elapsed = (sub.last_at or time.monotonic()) - t0
            if not ok:
                raise RuntimeError("%s: %d of %d arrived" % (kind, sub.unique(), args.count))
            if sub.order_errors:
                raise RuntimeError("%s: %d out of order" % (kind, sub.order_errors))
            cpu = cpu_seconds(procs[1].pid) - cpu0
            return args.count / elapsed, cpu * 1e6 / args.count, sub.dups
        finally:
            for p in procs:
                p.kill()
                p.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "petrel"))
    args = ap.parse_args()
    kinds = ["petrel-fsync", "petrel-periodic", "mosquitto"]
    results = {k: [] for k in kinds}
    cpus = {k: [] for k in kinds}
    for r in range(args.rounds):
        for k in kinds:
            rate, cpu_us, dups = run_once(k, args)
            results[k].append(rate)
            cpus[k].append(cpu_us)
            print("round %d %-16s %9.0f msg/s  local broker %.1f us CPU/msg  (duplicates %d)"
                  % (r + 1, k, rate, cpu_us, dups), flush=True)
    base = statistics.median(results["mosquitto"])
    base_cpu = statistics.median(cpus["mosquitto"])
    print("\nmedian of %d rounds, %d QoS 1 messages through the bridge:" % (args.rounds, args.count))
    for k in kinds:
        med = statistics.median(results[k])
        cpu = statistics.median(cpus[k])
        print("  %-16s %9.0f msg/s (%.2fx mosquitto)  local broker %.1f us CPU/msg (%.2fx mosquitto)"
              % (k, med, med / base, cpu, cpu / base_cpu))


if __name__ == "__main__":
    main()
