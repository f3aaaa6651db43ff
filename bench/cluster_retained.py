#!/usr/bin/env python3
"""The cluster's retained messages (a JetStream key-value bucket): COUNT
(100,000) retained messages on as many topics, 100 bytes each, published on
node A at QoS 0 as fast as one client sends them, then one QoS 1 retained
message. Reports how long until node B had taken all of them from the
bucket into its store (its $SYS/broker/cluster/retained/taken, published
every second: the figure is rounded up to the next second's report), and
how long a third node, started afterwards, took to read the whole bucket.

A real nats-server with JetStream (Debian's, file storage) and Petrel
nodes on loopback, all on the machine's cores together:

    /usr/bin/python3 bench/cluster_retained.py [--count N] [--bin build/petrel]

Not part of the test suite.
"""

import argparse
import time

import clusterbench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100000)
    clusterbench.add_bin_argument(ap)
    args = ap.parse_args()
    clusterbench.use_binary(args.bin)
    from natsrun import sys_value  # noqa: E402 (after use_binary)

    cluster = clusterbench.Cluster("petrel-retained-")

    def node(name):
        return cluster.node(name, ready="retained/bucket")

    def taken(b, n):
        while int(sys_value(b, "retained/taken")) < n:
            time.sleep(0.05)

    try:
        a, b = node("a"), node("b")
        c = a.connected("bench-pub")
        t0 = time.monotonic()
        for i in range(args.count):
            c.publish("fleet/%07d/state" % i, b"x" * 100, qos=0, retain=True)
        c.publish("fleet/done", b"1", qos=1, retain=True)
        sent = time.monotonic() - t0
        taken(b, args.count + 1)
        across = time.monotonic() - t0
        print("%d retained messages published on A in %.2f s; all in B's store after %.2f s (%.0f/s); "
              "A's puts: %s, refused: %s" % (args.count + 1, sent, across, (args.count + 1) / across,
                                             sys_value(a, "retained/put"), sys_value(a, "retained/failed")))
        t1 = time.monotonic()
        late = node("late")
        taken(late, args.count + 1)
        joined = time.monotonic() - t1
        print("a node started afterwards had them all %.2f s after it started (%.0f/s)"
              % (joined, (args.count + 1) / joined))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
