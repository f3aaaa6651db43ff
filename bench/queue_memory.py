#!/usr/bin/env python3
"""Broker memory per queued delivery: S clean-session MQTT 5 subscribers
(QoS 1, each with a subscription identifier unless --no-ids) that never
read, one publisher sending N QoS 1 messages of P bytes to them. Each
subscriber's window (limits.max_inflight) fills and the rest waits in its
session queue, in RAM: S x N deliveries of N shared messages. Prints the
broker's RSS before and after, and the growth per delivery.

  bench/queue_memory.py [--subs 100] [--count 10000] [--payload 16] [--no-ids]

Starts the broker itself (PETREL_BIN, default build/petrel) with
persistence off and max_queued_messages above N.
"""
import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(t, body):
    return bytes([t]) + varint(len(body)) + body


def s16(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect(cid):
    # MQTT 5, clean start, keep alive 0, no properties.
    return packet(0x10, s16("MQTT") + bytes([5, 0x02]) + struct.pack(">H", 0) + b"\x00" + s16(cid))


def subscribe(filt, sub_id):
    props = (b"\x0b" + varint(sub_id)) if sub_id else b""
    return packet(0x82, struct.pack(">H", 1) + varint(len(props)) + props + s16(filt) + bytes([1]))


def read_packet(s):
    h = s.recv(1)
    n, mul = 0, 1
    while True:
        b = s.recv(1)[0]
        n += (b & 0x7F) * mul
        mul *= 128
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return h[0], body


def rss_kb(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % pid).read()).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=100)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--payload", type=int, default=16)
    ap.add_argument("--no-ids", action="store_true")
    ap.add_argument("--port", type=int, default=18871)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.environ.get("PETREL_BIN", os.path.join(here, "..", "build", "petrel"))
    work = tempfile.mkdtemp()
    cfg = os.path.join(work, "petrel.yaml")
    with open(cfg, "w") as f:
        f.write("log_level: warning\nworkers: 1\nlisteners:\n  - address: 127.0.0.1\n    port: %d\n"
                "limits:\n  max_queued_messages: %d\npersistence:\n  enabled: false\n" % (a.port, a.count + 1000))
    broker = subprocess.Popen([binary, "--config", cfg])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        subs = []
        for i in range(a.subs):
            s = socket.create_connection(("127.0.0.1", a.port))
            # A small receive buffer: what waits, waits in the broker.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(connect("qm-sub-%d" % i))
            assert read_packet(s)[0] >> 4 == 2
            s.sendall(subscribe("qm/#", 0 if a.no_ids else i + 1))
            assert read_packet(s)[0] >> 4 == 9
            subs.append(s)
        time.sleep(0.5)
        before = rss_kb(broker.pid)
        p = socket.create_connection(("127.0.0.1", a.port))
        p.sendall(connect("qm-pub"))
        assert read_packet(p)[0] >> 4 == 2
        payload = b"x" * a.payload
        acked = 0
        sent = 0
        while acked < a.count:
            while sent < a.count and sent - acked < 500:
                sent += 1
                p.sendall(packet(0x32, s16("qm/t") + struct.pack(">H", (sent % 65535) + 1) + b"\x00" + payload))
            t, _ = read_packet(p)
            if t >> 4 == 4:
                acked += 1
        time.sleep(1.0)
        after = rss_kb(broker.pid)
        deliveries = a.subs * a.count
        print("subs=%d count=%d payload=%d ids=%s: RSS %d kB -> %d kB, %.1f bytes per queued delivery" % (
            a.subs, a.count, a.payload, not a.no_ids, before, after, (after - before) * 1024.0 / deliveries))
    finally:
        broker.kill()
        broker.wait()


if __name__ == "__main__":
    sys.exit(main())
