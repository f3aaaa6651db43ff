#!/usr/bin/env python3
"""Broker memory while subscribers stop reading: S clean-session
subscribers (QoS 0) that never read, one publisher sending N QoS 0
messages of P bytes to them as fast as it can. Each one is owed N x P
bytes it does not take; the broker buffers up to its output budgets
(limits.max_client_output per client, limits.max_output_memory for all)
and drops the rest of their QoS 0. Prints the broker's peak RSS, the
budget each stuck subscriber was held to (from the broker's log), and
whether the kernel killed the broker.

  bench/output_memory.py [--workers 2] [--stuck 3] [--count 300000]
      [--payload 1024] [--max-output-memory auto|BYTES] [--memory-limit BYTES]

--memory-limit runs the broker in a new cgroup limited to that much memory
(as a container's --memory would; root, a writable cgroup file system).
Starts the broker itself (PETREL_BIN, default build/petrel) with
persistence off.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

from queue_memory import packet, s16  # the packets, written out by hand

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import cgroups  # noqa: E402  (the tests' helpers: cgroups, free ports)
import ports  # noqa: E402


def connect(port, cid):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(packet(0x10, s16("MQTT") + bytes([4, 0x02]) + (600).to_bytes(2, "big") + s16(cid)))
    ack = s.recv(4)
    if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
        sys.exit("%s: no CONNACK" % cid)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="2")
    ap.add_argument("--stuck", type=int, default=3)
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--payload", type=int, default=1024)
    ap.add_argument("--max-output-memory", default="auto")
    ap.add_argument("--memory-limit", type=int, default=0)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.environ.get("PETREL_BIN", os.path.join(here, "..", "build", "petrel"))
    work = tempfile.mkdtemp(prefix="petrel-output-memory-")
    port = ports.free_port()
    cfg = os.path.join(work, "petrel.yaml")
    with open(cfg, "w") as f:
        f.write("log_level: info\nworkers: %s\nlisteners:\n  - address: 127.0.0.1\n    port: %d\n"
                "limits:\n  max_output_memory: %s\npersistence:\n  enabled: false\n"
                % (a.workers, port, a.max_output_memory))
    argv = [binary, "--config", cfg]
    cgroup = None
    if a.memory_limit:
        try:
            cgroup = cgroups.make_or_raise("petrel-output-memory-%d" % os.getpid(), "memory")
        except cgroups.Unavailable as e:
            sys.exit("--memory-limit: %s" % e)
        cgroups.set_memory_limit(cgroup, a.memory_limit)
        argv = cgroups.run_in(cgroup) + argv
    log_path = os.path.join(work, "broker.log")
    log = open(log_path, "wb")
    broker = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        stuck = []
        for i in range(a.stuck):
            c = connect(port, "stuck-%d" % i)
            c.sendall(packet(0x82, (1).to_bytes(2, "big") + s16("out/t") + b"\x00"))
            c.recv(5)  # SUBACK; then nothing is read again
            stuck.append(c)
        peak = [0]
        done = threading.Event()

        def watch():
            while not done.is_set() and broker.poll() is None:
                try:
                    with open("/proc/%d/status" % broker.pid) as f:
                        kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
                    peak[0] = max(peak[0], kb)
                except (OSError, AttributeError):
                    pass
                time.sleep(0.02)
        threading.Thread(target=watch, daemon=True).start()
        pub = connect(port, "flooder")
        one = packet(0x30, s16("out/t") + b"x" * a.payload)
        batch = one * 256
        t0 = time.monotonic()
        sent = 0
        try:
            while sent < a.count:
                n = min(256, a.count - sent)
                pub.sendall(batch if n == 256 else one * n)
                sent += n
        except OSError as e:
            print("publisher: %s after %d messages" % (e, sent))
        took = time.monotonic() - t0
        time.sleep(1.0)
        done.set()
        alive = broker.poll() is None
        text = open(log_path, encoding="utf-8", errors="replace").read()
        sized = re.search(r"limits\.max_output_memory: auto: .*", text)
        budgets = re.findall(r"client (stuck-\d+): (\d+) bytes of output not yet read by the client \(budget (\d+)\)",
                             text)
        print("workers %s, %d stuck subscribers, %d messages of %d bytes published in %.1f s"
              % (a.workers, a.stuck, sent, a.payload, took))
        if sized:
            print(sized.group(0))
        for cid, pending, budget in budgets:
            print("  %s held to %.1f MiB" % (cid, int(budget) / (1 << 20)))
        print("broker peak RSS %.0f MB; %s" % (peak[0] / 1024, "alive" if alive else
                                               "GONE (exit %s)" % broker.returncode))
        for c in stuck:
            c.close()
        pub.close()
    finally:
        broker.kill()
        broker.wait()
        if cgroup:
            cgroups.remove(cgroup)


if __name__ == "__main__":
    main()
