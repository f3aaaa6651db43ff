#!/usr/bin/env python3
"""What the replica of a node's store in JetStream costs
(src/cluster/store_replica.h): one cluster node with persistence (fsync),
one durable QoS 1 subscriber parked offline, PUBS publishers on the node,
unthrottled QoS 1 (1,000 in flight each), COUNT messages each of SIZE
bytes. Reports the rate at which the publishers got their PUBACKs (every
one waits for the node's commit, and with the replica for JetStream to
store the batch too), then the rate at which the subscriber, reconnecting,
drains the queue (its acknowledgements are batches of the log as well).
Runs with `store_replica: true` and `false` in turn, ROUNDS times each, a
fresh node and stream each time.

A real nats-server with JetStream (Debian's, file storage) and a Petrel
node on loopback, all on the machine's cores together:

    /usr/bin/python3 bench/cluster_replica.py [--count N] [--pubs P] [--size B] [--rounds R] [--bin build/petrel]

Not part of the test suite.
"""

import argparse
import threading
import time

import clusterbench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--pubs", type=int, default=2)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    clusterbench.add_bin_argument(ap)
    args = ap.parse_args()
    clusterbench.use_binary(args.bin)
    from conftest import HOST  # noqa: E402 (after use_binary)
    import fastclient as fc  # noqa: E402
    from natsrun import sys_value  # noqa: E402

    def one(replica, round_):
        cluster = clusterbench.Cluster("petrel-replica-")
        try:
            b = cluster.node("r%d" % round_, ready="replica/live" if replica else "stream/up",
                             limits={"max_queued_messages": 10000000}, persistence={"enabled": True},
                             cluster={"store_replica": replica})
            s = fc.Sub(HOST, b.port, "parked", version=4, clean=False)
            s.connect(subscribe="rb/#", qos=1)
            s.close()
            pubs = [fc.Pub(HOST, b.port, "p%d" % i).connect() for i in range(args.pubs)]
            threads = [threading.Thread(target=p.publish, args=("rb/%d" % i, args.count),
                                        kwargs=dict(qos=1, window=1000, payload_size=args.size, timeout=600))
                       for i, p in enumerate(pubs)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            pub_s = time.monotonic() - t0
            total = args.count * args.pubs
            s2 = fc.Sub(HOST, b.port, "parked", version=4, clean=False)
            t1 = time.monotonic()
            s2.connect()
            fc.run([s2], lambda: s2.count >= total, 600)
            drain_s = time.monotonic() - t1
            got = sum(s2.unique(p.name) for p in pubs)
            extra = ""
            if replica:
                time.sleep(1.1)  # the next $SYS report
                extra = ", replica: %s snapshots, %s records" % (sys_value(b, "replica/snapshots"),
                                                                 sys_value(b, "replica/records"))
            print("store_replica %-5s round %d: %d acknowledged at %7.0f msg/s; drained at %7.0f msg/s "
                  "(%d of %d, %d duplicates)%s" % (str(replica).lower(), round_, total, total / pub_s,
                                                   got / drain_s, got, total, s2.dups, extra), flush=True)
            return total / pub_s, got / drain_s
        finally:
            cluster.close()

    results = {True: [], False: []}
    for r in range(args.rounds):
        for replica in (False, True):
            results[replica].append(one(replica, r))
    for what, i in (("acknowledged", 0), ("drained", 1)):
        off = sum(x[i] for x in results[False]) / args.rounds
        on = sum(x[i] for x in results[True]) / args.rounds
        print("%s: %.0f msg/s without the replica, %.0f with it (%.2fx)" % (what, off, on, on / off))


if __name__ == "__main__":
    main()
