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
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--pubs", type=int, default=2)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "petrel"))
    args = ap.parse_args()
    os.environ["PETREL_BIN"] = os.path.abspath(args.bin)
    from conftest import DEFAULT_CONFIG, HOST, Broker, merge  # noqa: E402 (after PETREL_BIN)
    import fastclient as fc  # noqa: E402
    from natsrun import Nats, sys_value  # noqa: E402

    def one(replica, round_):
        work = tempfile.mkdtemp(prefix="petrel-replica-")
        nats = Nats(work, jetstream=True).start()
        name = "r%d" % round_
        cfg = merge(DEFAULT_CONFIG, {"log_level": "notice", "mqtt": {"sys_interval": 1},
                                     "limits": {"max_queued_messages": 10000000},
                                     "persistence": {"enabled": True},
                                     "cluster": {"servers": [nats.url], "node": name, "store_replica": replica}})
        b = Broker(work, cfg, name=name).start()
        try:
            while sys_value(b, "stream/up") != "1":
                time.sleep(0.1)
            if replica:
                while sys_value(b, "replica/live") != "1":
                    time.sleep(0.1)
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
                extra = ", replica: %s snapshots, %s records" % (sys_value(b, "replica/snapshots"),
                                                                 sys_value(b, "replica/records"))
            print("store_replica %-5s round %d: %d acknowledged at %7.0f msg/s; drained at %7.0f msg/s "
                  "(%d of %d, %d duplicates)%s" % (str(replica).lower(), round_, total, total / pub_s,
                                                   got / drain_s, got, total, s2.dups, extra), flush=True)
            return total / pub_s, got / drain_s
        finally:
            b.stop()
            nats.stop()
            shutil.rmtree(work, ignore_errors=True)

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
