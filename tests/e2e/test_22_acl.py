"""ACL end to end, mosquitto's acl_file format: anonymous topics, per-user
topics with read / write / readwrite / deny, %c and %u patterns; applied to
PUBLISH (MQTT 5 reason 0x87, MQTT 3.1.1 acknowledged and dropped), to each
SUBSCRIBE filter (0x87 / 0x80), to retained messages and wills at delivery,
and reloaded on SIGHUP."""

import os
import shutil
import socket
import subprocess
import time

import pytest

from petrel_tls_helpers import (Broker, CertAuthority, RawClient, client_context, free_port,
                                tls_connect, tmpdir)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ACL = """\
# Anonymous clients (before any user line): read-only public topics.
topic read public/#

user alice
topic readwrite alice/#
topic read shared/#
topic write shared/inbox
topic deny shared/secret

user bob
topic read alice/status
topic readwrite bob/#

user carol
topic readwrite #

user sensor-9
topic write devices/sensor-9/#

pattern readwrite clients/%c/#
pattern read users/%u/inbox
"""

# PUBACK reasons of an accepted publish: success / no matching subscribers.
OK = (0, 0x10)

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


@pytest.fixture(scope="module")
def env():
    d = tmpdir()
    pw = os.path.join(d, "passwd")
    first = True
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd"] + (["-c"] if first else []) + ["-b", pw, user, password],
                       check=True)
        first = False
    acl = os.path.join(d, "acl")
    with open(acl, "w") as f:
        f.write(ACL)
    ca = CertAuthority(d)
    server = ca.issue("server", "localhost", server=True)
    sensor = ca.issue("sensor", "sensor-9")
    cfg = lambda: {
        "log_level": "info",
        "auth": {"password_file": pw, "acl_file": acl},
        "listeners": [
            {"address": "127.0.0.1", "port": free_port()},
            {"address": "127.0.0.1", "port": free_port(),
             "tls": {"cert_file": server[0], "key_file": server[1], "ca_file": ca.cert,
                     "require_certificate": True, "use_identity_as_username": True}},
        ],
    }
    b = Broker(d, cfg).start()
    yield {"broker": b, "port": b.port(0), "tls_port": b.port(1), "acl": acl, "ca": ca,
           "sensor": sensor}
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


def client(env, client_id, user=None, version=5, will=None):
    c = RawClient(socket.create_connection(("127.0.0.1", env["port"]), timeout=5), version)
    rc = c.connect(client_id, user, PASSWORDS.get(user) if user else None, will=will)
    assert rc == 0, "CONNACK %d" % rc
    return c


def test_publish_denied_v5_reason_codes(env):
    bob = client(env, "bob-pub-5", "bob")
    assert bob.publish("bob/ok", "x", qos=1) in OK
    assert bob.publish("alice/status", "x", qos=1) == 0x87  # bob may only read it
    assert bob.publish("alice/status", "x", qos=2) == 0x87
    assert bob.publish("elsewhere", "x", qos=1) == 0x87
    bob.ping()  # still connected
    bob.disconnect()


def test_publish_denied_v311_is_acknowledged_and_dropped(env):
    carol = client(env, "carol-watch-1", "carol")
    assert carol.subscribe("alice/#") == [1]
    bob = client(env, "bob-pub-4", "bob", version=4)
    assert bob.publish("alice/status", "forged", qos=1) in OK   # PUBACK as usual
    assert bob.publish("alice/status", "forged2", qos=2) in OK  # PUBREC/PUBCOMP as usual
    bob.publish("alice/status", "forged0", qos=0)
    carol.expect_nothing()
    alice = client(env, "alice-pub-4", "alice", version=4)
    assert alice.publish("alice/status", "genuine", qos=1) in OK
    assert carol.recv_publish()[:2] == ("alice/status", b"genuine")
    for c in (carol, bob, alice):
        c.disconnect()


@pytest.mark.parametrize("version,refused", [(5, 0x87), (4, 0x80)])
def test_subscribe_denied_per_filter(env, version, refused):
    alice = client(env, "alice-sub-%d" % version, "alice", version=version)
    granted = alice.subscribe("alice/#", "bob/#", "shared/#", "#", "users/alice/inbox",
                              "users/bob/inbox", "clients/alice-sub-%d/x" % version,
                              "clients/other/x")
    assert granted == [1, refused, 1, refused, 1, refused, 1, refused]
    alice.disconnect()


def test_delivery_checks_read_access_and_deny(env):
    alice = client(env, "alice-read", "alice")
    assert alice.subscribe("shared/#") == [1]
    carol = client(env, "carol-write", "carol")
    assert carol.publish("shared/news", "for everyone", qos=1) in OK
    assert carol.publish("shared/secret", "not for alice", qos=1) in OK
    assert carol.publish("shared/more", "also for everyone", qos=1) in OK
    got = [alice.recv_publish()[:2], alice.recv_publish()[:2]]
    assert got == [("shared/news", b"for everyone"), ("shared/more", b"also for everyone")]
    alice.expect_nothing()
    alice.disconnect()
    carol.disconnect()


def test_retained_messages_are_checked_at_delivery(env):
    carol = client(env, "carol-retain", "carol")
    assert carol.publish("shared/ret-ok", "visible", qos=1, retain=True) in OK
    assert carol.publish("shared/secret", "hidden", qos=1, retain=True) in OK
    alice = client(env, "alice-retain", "alice")
    assert alice.subscribe("shared/#") == [1]
    topic, payload, _, retain = alice.recv_publish()
    assert (topic, payload, retain) == ("shared/ret-ok", b"visible", True)
    alice.expect_nothing()
    # Clean up the retained messages.
    carol.publish("shared/ret-ok", b"", qos=1, retain=True)
    carol.publish("shared/secret", b"", qos=1, retain=True)
    alice.disconnect()
    carol.disconnect()


def test_anonymous_clients_use_the_rules_before_the_first_user(env):
    anon = client(env, "anon-1")
    assert anon.subscribe("public/#", "alice/#") == [1, 0x87]
    assert anon.publish("public/x", "no", qos=1) == 0x87  # read only
    carol = client(env, "carol-public", "carol")
    assert carol.publish("public/news", "hello anonymous", qos=1) in OK
    assert anon.recv_publish()[:2] == ("public/news", b"hello anonymous")
    anon.disconnect()
    carol.disconnect()


def test_patterns_for_client_id_and_user_name(env):
    bob = client(env, "dev7", "bob")
    assert bob.publish("clients/dev7/status", "up", qos=1) in OK
    assert bob.publish("clients/dev8/status", "up", qos=1) == 0x87
    assert bob.subscribe("users/bob/inbox", "users/alice/inbox") == [1, 0x87]
    carol = client(env, "carol-inbox", "carol")
    assert carol.publish("users/bob/inbox", "mail for bob", qos=1) in OK
    assert bob.recv_publish()[:2] == ("users/bob/inbox", b"mail for bob")
    # An anonymous client gets %c patterns but never %u ones.
    anon = client(env, "anon-dev")
    assert anon.publish("clients/anon-dev/x", "ok", qos=1) in OK
    assert anon.subscribe("users/anon-dev/inbox") == [0x87]
    for c in (bob, carol, anon):
        c.disconnect()


def test_wills_are_checked_when_published_and_delivered(env):
    carol = client(env, "carol-wills", "carol")
    assert carol.subscribe("alice/#", "bob/#") == [1, 1]
    alice = client(env, "alice-wills", "alice")
    assert alice.subscribe("shared/#") == [1]
    # bob may not write alice/status: his will is dropped.
    bob = client(env, "bob-will-1", "bob", will=("alice/status", "bob died", 1, False))
    bob.sock.close()
    # carol's will goes to shared/secret: alice (denied) must not get it.
    carol2 = client(env, "carol-will-2", "carol", will=("shared/secret", "carol died", 1, False))
    carol2.sock.close()
    # bob's will on his own topic is delivered.
    bob2 = client(env, "bob-will-3", "bob", will=("bob/status", "bob-will-3 died", 1, False))
    bob2.sock.close()
    assert carol.recv_publish(3)[:2] == ("bob/status", b"bob-will-3 died")
    carol.expect_nothing()
    alice.expect_nothing()
    env["broker"].wait_log("will on 'alice/status' denied by the ACL")
    carol.disconnect()
    alice.disconnect()


def test_certificate_identity_is_the_acl_user(env):
    ctx = client_context(env["ca"].cert, *env["sensor"])
    c = RawClient(tls_connect(env["tls_port"], ctx), 5)
    assert c.connect("any-id", "carol", "carol-pw") == 0  # the CN wins over CONNECT's name
    assert c.publish("devices/sensor-9/temp", "21.5", qos=1) in OK
    assert c.publish("devices/sensor-8/temp", "21.5", qos=1) == 0x87
    assert c.publish("elsewhere", "x", qos=1) == 0x87  # not carol's rights
    c.disconnect()


def test_acl_reload_on_sighup(env):
    b = env["broker"]
    anon = client(env, "anon-reload")
    assert anon.publish("public/x", "no", qos=1) == 0x87
    with open(env["acl"], "w") as f:
        f.write(ACL.replace("topic read public/#", "topic readwrite public/#"))
    try:
        b.hup()
        b.wait_log("ACL file %s reloaded" % env["acl"])
        # The connected client gets the new rules immediately.
        assert anon.publish("public/x", "yes", qos=1) in OK

        # A broken file is refused and the rules in force stay.
        with open(env["acl"], "w") as f:
            f.write("topic sometimes public/#\n")
        b.hup()
        b.wait_log("ACL file not reloaded")
        assert anon.publish("public/x", "still yes", qos=1) in OK
    finally:
        with open(env["acl"], "w") as f:
            f.write(ACL)
        b.hup()
        time.sleep(0.3)
    anon.disconnect()


def test_share_group_member_without_read_access_is_skipped(env):
    # alice may read shared/# except shared/secret; carol may read all. In a
    # share group, a message goes only to a member allowed to read it.
    alice = client(env, "alice-grp", "alice")
    carol = client(env, "carol-grp", "carol")
    assert alice.subscribe("$share/acl/shared/#") == [1]
    assert carol.subscribe("$share/acl/shared/#") == [1]
    pub = client(env, "carol-grp-pub", "carol")
    for i in range(4):
        assert pub.publish("shared/secret", "s%d" % i, qos=1) in OK
    got = [carol.recv_publish()[:2] for _ in range(4)]
    assert got == [("shared/secret", b"s%d" % i) for i in range(4)]
    alice.expect_nothing()
    pub.disconnect()
    alice.disconnect()
    carol.disconnect()


def test_share_group_message_nobody_may_read_does_not_block_the_queue(env):
    alice = client(env, "alice-grp2", "alice")
    assert alice.subscribe("$share/acl2/shared/#") == [1]
    pub = client(env, "carol-grp2-pub", "carol")
    assert pub.publish("shared/secret", "nobody", qos=1) in OK
    assert pub.publish("shared/news", "after", qos=1) in OK
    assert alice.recv_publish()[:2] == ("shared/news", b"after")
    pub.disconnect()
    alice.disconnect()
