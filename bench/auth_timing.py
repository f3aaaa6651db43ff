#!/usr/bin/env python3
"""Authentication under attack:

1. Timing: CONNECT -> CONNACK time of a wrong password and of an unknown
   user name (median of 50 each), for a mosquitto_passwd file ($7$, 101
   iterations) and for a file of users added with `petrel passwd -I 20000`.
2. Loop latency: a connected bystander pings every 2 ms, alone and while 8
   processes send 200 wrong-password CONNECTs for the 20,000-iteration
   user; median, p99 and maximum round trip.

    /usr/bin/python3 bench/auth_timing.py [--bin build/petrel]

Not part of the test suite.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import mqttraw as m  # noqa: E402


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, pwfile, work):
    port = free_port()
    conf = os.path.join(work, "bench.yaml")
    with open(conf, "w") as f:
        f.write("log_level: error\nlisteners:\n  - {address: 127.0.0.1, port: %d}\n"
                "persistence: {enabled: false}\nauth: {password_file: %s}\n" % (port, pwfile))
    p = subprocess.Popen([binary, "--config", conf])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            c = m.RawClient("127.0.0.1", port)
            c.close()
            return p, port
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("broker did not start")


def connack_time(port, user, password):
    c = m.RawClient("127.0.0.1", port, timeout=30)
    try:
        t0 = time.perf_counter()
        c.connect("bench", username=user, password=password, expect_reason=None)
        return (time.perf_counter() - t0) * 1000
    finally:
        c.close()


def _guess(port, user, n):
    for i in range(n):
        connack_time(port, user, "guess-%d" % i)


def pings(port, seconds=None, while_alive=None):
    c = m.RawClient("127.0.0.1", port)
    c.connect("bystander")
    out = []
    t0 = time.monotonic()
    while (while_alive and any(w.is_alive() for w in while_alive)) or (seconds and time.monotonic() - t0 < seconds):
        s = time.perf_counter()
        c.ping()
        out.append((time.perf_counter() - s) * 1000)
        time.sleep(0.002)
    c.close()
    out.sort()
    return out


def summary(rtts):
    return "median %.2f ms, p99 %.2f ms, max %.2f ms (%d pings)" % (
        rtts[len(rtts) // 2], rtts[max(0, int(len(rtts) * 0.99) - 1)], rtts[-1], len(rtts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "petrel"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="petrel-auth-bench-")
    # Two password files, as the operator would have them: one written by
    # mosquitto_passwd ($7$, 101 iterations), one with users added by
    # `petrel passwd -I 20000`.
    cheap = os.path.join(work, "mosquitto.passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", cheap, "alice", "secret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", cheap, "bob", "hunter2"], check=True)
    dear = os.path.join(work, "petrel.passwd")
    for i, user in enumerate(("slow", "slower")):
        subprocess.run([args.bin, "passwd", "-b", "-I", "20000"] + (["-c"] if i == 0 else []) + [dear, user, "secret"],
                       check=True, capture_output=True)
    print("1. CONNECT -> CONNACK, median of 50:")
    for pw, user, label in ((cheap, "alice", "mosquitto_passwd file ($7$, 101 it.)"),
                            (dear, "slow", "petrel passwd -I 20000 file")):
        p, port = start(args.bin, pw, work)
        try:
            for _ in range(5):
                connack_time(port, user, "x"), connack_time(port, "warmup", "x")
            wrong = statistics.median(connack_time(port, user, "wrong") for _ in range(50))
            unknown = statistics.median(connack_time(port, "nobody-%d" % i, "x") for i in range(50))
            print("   %-40s wrong password %.3f ms, unknown user %.3f ms (ratio %.2f)"
                  % (label, wrong, unknown, unknown / wrong))
        finally:
            p.kill()
            p.wait()
    p, port = start(args.bin, dear, work)
    try:
        print("2. bystander pings every 2 ms (petrel passwd -I 20000 file):")
        print("   alone:                      " + summary(pings(port, seconds=5)))
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_guess, args=(port, "slow", 25)) for _ in range(8)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        rtts = pings(port, while_alive=workers)
        for w in workers:
            w.join()
        print("   200 wrong passwords (%.1f s): %s" % (time.monotonic() - t0, summary(rtts)))
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
