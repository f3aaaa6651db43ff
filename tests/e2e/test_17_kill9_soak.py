"""A short run of the kill -9 soak (bench/kill9_soak.py): the broker is
SIGKILLed 5 times while durable publishers stream QoS 1 / QoS 2 messages at
full speed and durable receivers come and go; afterwards nothing that was
acknowledged may be missing, no QoS 2 message may arrive twice, and the
first deliveries per publisher must keep publish order (plain subscribers).

The long version is run by hand: /usr/bin/python3 bench/kill9_soak.py
--cycles 100 (see its --help). The seed of each run is printed; replay one
with PETREL_SOAK_SEED.
"""

import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))

import kill9_soak  # noqa: E402

pytestmark = pytest.mark.petrel_only

PETREL_BIN = os.environ.get("PETREL_BIN", os.path.join(REPO, "build", "petrel"))
TEST_BOUND_S = 80   # per test; replaces conftest's default alarm for these


def soak(tmp_path, share_members):
    if not os.access(PETREL_BIN, os.X_OK):
        pytest.skip("broker binary not found: %s (set PETREL_BIN)" % PETREL_BIN)
    signal.alarm(TEST_BOUND_S)  # conftest's fixture set a shorter one; it clears it afterwards
    argv = ["--broker", PETREL_BIN, "--cycles", "5", "--min-cycle-s", "0.3", "--max-cycle-s", "0.8",
            "--share-members", str(share_members), "--final-s", "15", "--drain-idle-s", "8",
            "--max-time", str(TEST_BOUND_S - 10), "--workdir", str(tmp_path / "soak"),
            "--store-mb", "4096"]
    if os.environ.get("PETREL_SOAK_SEED"):
        argv += ["--seed", os.environ["PETREL_SOAK_SEED"]]
    res = kill9_soak.run_soak(kill9_soak.parse_args(argv), out=sys.stdout)
    print("seed %d (PETREL_SOAK_SEED=%d replays the schedule)" % (res["seed"], res["seed"]))
    return res


def check(res):
    assert res["cycles"] == 5 and not res["time_limited"] and not res["interrupted"], res
    assert not res["broker_crashes"], res["broker_crashes"]
    # Load: a meaningful number of acknowledged messages, and every cycle
    # queued messages for a receiver that was offline.
    assert res["acknowledged"] > 10000, res["acknowledged"]
    assert res["unacknowledged_at_end"] == 0
    assert all(n > 0 for n in res["queued_offline_per_cycle"]["all"]), res["queued_offline_per_cycle"]
    for r in res["receivers"]:
        assert r["lost"] == 0, r
        assert r["dup_qos2"] == 0, r
        assert r["order_violations"] == 0, r
    assert res["problems"] == 0, res["problem_samples"]
    assert res["ok"]


def test_kill9_soak_plain_subscribers(tmp_path):
    """3 publishers (3.1.1 and 5), a durable 3.1.1 and a durable 5 subscriber."""
    check(soak(tmp_path, share_members=0))


def test_kill9_soak_with_share_group(tmp_path):
    """The same plus a durable share group of 3 members (3.1.1 and 5)."""
    check(soak(tmp_path, share_members=3))
