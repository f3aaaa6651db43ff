"""What the cluster benches share (cluster_retained.py, cluster_groups.py,
cluster_replica.py): the e2e suite's helpers on the path, the Petrel
binary to run, and a nats-server with JetStream with Petrel nodes linked
to it, all on loopback in a scratch directory.

Not part of the test suite.
"""

import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))


def add_bin_argument(ap):
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "petrel"))


def use_binary(path):
    """Before the e2e helpers are imported: they read PETREL_BIN once."""
    os.environ["PETREL_BIN"] = os.path.abspath(path)


class Cluster:
    """A nats-server with JetStream (file storage) and the nodes started on it."""

    def __init__(self, prefix):
        from natsrun import Nats  # noqa: E402 (after use_binary)
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.nats = Nats(self.work, jetstream=True).start()
        self.started = []

    def node(self, name, ready="stream/up", **overrides):
        """A node named `name`, once its $SYS/broker/cluster/<ready> is 1."""
        from conftest import DEFAULT_CONFIG, Broker, merge  # noqa: E402
        from natsrun import sys_value  # noqa: E402
        cfg = merge(DEFAULT_CONFIG, merge({"log_level": "notice", "mqtt": {"sys_interval": 1},
                                           "cluster": {"servers": [self.nats.url], "node": name}}, overrides))
        b = Broker(self.work, cfg, name=name).start()
        self.started.append(b)
        while sys_value(b, ready) != "1":
            time.sleep(0.1)
        return b

    def close(self):
        for b in self.started:
            b.kill()
        self.nats.stop()
        shutil.rmtree(self.work, ignore_errors=True)
