#!/usr/bin/env python3
"""A share group with members on several nodes (the groups' JetStream
stream): PUBS publishers on node A, unthrottled QoS 1 (1,000 in flight
each), COUNT messages each; one member of `$share/bench/jobs/#` on each
of NODES nodes. Reports the rate at which the members got the messages,
how many each got, and whether any was lost or came twice. Then the same
with every member on node A alone (no other node wants the topic: the
group is that node's, as without a cluster) for comparison.

A real nats-server with JetStream (Debian's, file storage) and Petrel
nodes on loopback, all on the machine's cores together:

    /usr/bin/python3 bench/cluster_groups.py [--count N] [--pubs P] [--nodes K] [--bin build/petrel]

Not part of the test suite.
"""

import argparse
import threading
import time

import clusterbench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--pubs", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=3)
    clusterbench.add_bin_argument(ap)
    args = ap.parse_args()
    clusterbench.use_binary(args.bin)
    from conftest import HOST  # noqa: E402 (after use_binary)
    import fastclient as fc  # noqa: E402

    cluster = clusterbench.Cluster("petrel-groups-")

    def run(label, member_nodes, pub_node, tag):
        subs = []
        for i, n in enumerate(member_nodes):
            s = fc.Sub(HOST, n.port, "%s-w%d" % (tag, i))
            s.connect(subscribe="$share/bench/jobs/#", qos=1)
            subs.append(s)
        time.sleep(1.0)  # the nodes' filters reach each other
        pubs = [fc.Pub(HOST, pub_node.port, "%s-p%d" % (tag, i), version=4, name="%sp%d" % (tag, i)).connect()
                for i in range(args.pubs)]
        threads = [threading.Thread(target=p.publish, args=("jobs/%s" % tag, args.count),
                                    kwargs=dict(qos=1, window=1000, timeout=300), daemon=True) for p in pubs]
        total = args.count * len(pubs)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        fc.run(subs, lambda: sum(s.count for s in subs) >= total, 300)
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(30)
        time.sleep(1.0)
        fc.run(subs, lambda: False, 0.5)
        lost = 0
        for p in pubs:
            got = set()
            for s in subs:
                got |= {seq for (pp, seq) in s.first_seen if pp == p.name}
            lost += args.count - len(got)
        delivered = sum(s.count for s in subs)
        print("%-32s %8.0f msg/s  %d messages in %.2f s  per member %s  lost %d  twice %d" % (
            label, total / elapsed, total, elapsed, [s.count for s in subs], lost, delivered - (total - lost)))
        for s in subs:
            s.close()
        for p in pubs:
            p.close()

    try:
        nodes = [cluster.node("n%d" % i) for i in range(args.nodes)]
        run("members on %d nodes" % args.nodes, nodes, nodes[0], "spread")
        run("members on the publishing node", [nodes[0]] * args.nodes, nodes[0], "local")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
