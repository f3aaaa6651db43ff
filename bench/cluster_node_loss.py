#!/usr/bin/env python3
"""How long a killed node's durable sessions take to come back on another
node (src/cluster/adoption.h): three cluster nodes with persistence
(fsync), SESSIONS durable QoS 1 sessions parked on node a, COUNT messages
of SIZE bytes queued for each by a publisher on node a; then kill -9 of
node a, and each client reconnects to node b (the node that takes them).
Reports the time from the kill to the first CONNACK (session present),
to the last one, and to the last queued message delivered, with the
drain rate from the first CONNACK; checks that every message came.
With --move, node a is not killed: the sessions move from it to node b
as when a client connects elsewhere (session_moves.h), for comparison.
A real nats-server with JetStream (Debian's, file storage) and Petrel
nodes on loopback, all on the machine's cores together:

    /usr/bin/python3 bench/cluster_node_loss.py [--count N] [--sessions S] [--size B] [--move] [--bin build/petrel]

Not part of the test suite.
"""

import argparse
import time

import clusterbench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--move", action="store_true", help="node a stays up: the sessions move")
    clusterbench.add_bin_argument(ap)
    args = ap.parse_args()
    clusterbench.use_binary(args.bin)
    from conftest import HOST  # noqa: E402 (after use_binary)
    import fastclient as fc  # noqa: E402
    from natsrun import sys_value  # noqa: E402

    cluster = clusterbench.Cluster("petrel-node-loss-")
    try:
        common = dict(limits={"max_queued_messages": 10000000}, persistence={"enabled": True})
        a = cluster.node("a", ready="replica/live", **common)
        b = cluster.node("b", ready="replica/live", **common)
        cluster.node("c", ready="replica/live", **common)
        while sys_value(b, "nodes") != "3":
            time.sleep(0.2)
        cids = ["keeper%d" % i for i in range(args.sessions)]
        for cid in cids:
            s = fc.Sub(HOST, a.port, cid, version=4, clean=False)
            s.connect(subscribe="nl/#", qos=1)
            s.close()
        time.sleep(0.5)  # the registry's entries
        pub = fc.Pub(HOST, a.port, "pub-nl").connect()
        t0 = time.monotonic()
        pub.publish("nl/1", args.count, qos=1, window=1000, payload_size=args.size, timeout=600)
        queued_s = time.monotonic() - t0
        if not args.move:
            a.kill()
        killed = time.monotonic()
        subs, connacks = [], []
        for cid in cids:
            while True:
                s = fc.Sub(HOST, b.port, cid, version=4, clean=False)
                try:
                    s.connect(connack_timeout=60)
                    break
                except (AssertionError, OSError):
                    if s.sock:
                        s.sock.close()
            assert s.session_present is True, cid
            connacks.append(time.monotonic() - killed)
            subs.append(s)
        fc.run(subs, lambda: all(s.unique(b"pub-nl") >= args.count for s in subs), 600)
        drained = time.monotonic() - killed
        got = [s.unique(b"pub-nl") for s in subs]
        dups = sum(s.dups for s in subs)
        adopted = sys_value(b, "adopted/messages")
        what = "the clients connecting to node b" if args.move else "the kill"
        print("%d sessions x %d messages of %d bytes queued on node a (%.1f s to queue); %s"
              % (args.sessions, args.count, args.size, queued_s,
                 "they move to node b" if args.move else "kill -9 of node a"))
        print("first CONNACK (session present) on node b %.2f s after %s, last %.2f s" % (connacks[0], what, connacks[-1]))
        print("every queued message delivered %.2f s after %s: %.0f msg/s from the first CONNACK"
              % (drained, what, args.sessions * args.count / max(1e-9, drained - connacks[0])))
        print("delivered %s of %d each, %d twice; node b: adopted/messages %s" % (got, args.count, dups, adopted))
        assert all(g == args.count for g in got)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
