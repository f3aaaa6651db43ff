"""Authentication end to end: a password file made by mosquitto_passwd,
CONNACK codes for bad credentials and anonymous clients (MQTT 3.1.1 and 5),
secure-by-default anonymous access, `petrel passwd`, SIGHUP reload of the
password file, and the certificate CN as the user name."""

import os
import select
import shutil
import socket
import subprocess
import time

import pytest

import mqttraw
from petrel_tls_helpers import (PETREL_BIN, Broker, CertAuthority, RawClient, client_context,
                                free_port, tls_connect, tmpdir)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def mosquitto_passwd(*args):
    subprocess.run(["mosquitto_passwd"] + list(args), check=True, capture_output=True)


def petrel_passwd(*args, input=None):
    return subprocess.run([PETREL_BIN, "passwd"] + list(args), input=input, capture_output=True,
                          text=True, timeout=20)


@pytest.fixture(scope="module")
def setup():
    d = tmpdir()
    pw = os.path.join(d, "passwd")
    mosquitto_passwd("-c", "-b", pw, "alice", "secret")          # $7$ PBKDF2
    mosquitto_passwd("-H", "sha512", "-b", pw, "bob", "hunter2")  # $6$ SHA-512
    with open(pw) as f:
        text = f.read()
    assert "alice:$7$" in text and "bob:$6$" in text
    ca = CertAuthority(d)
    server = ca.issue("server", "localhost", server=True)
    client = ca.issue("client", "sensor-9")
    cfg = lambda: {
        "log_level": "info",
        "auth": {"password_file": pw},
        "listeners": [
            # Loopback, but anonymous refused explicitly.
            {"address": "127.0.0.1", "port": free_port(), "allow_anonymous": False},
            # Loopback, default: anonymous allowed.
            {"address": "127.0.0.1", "port": free_port()},
            # Not loopback, default: anonymous refused.
            {"address": "0.0.0.0", "port": free_port()},
            {"address": "127.0.0.1", "port": free_port(),
             "tls": {"cert_file": server[0], "key_file": server[1], "ca_file": ca.cert,
                     "require_certificate": True, "use_identity_as_username": True}},
        ],
    }
    b = Broker(d, cfg).start()
    yield {"broker": b, "dir": d, "pw": pw, "ca": ca, "client": client,
           "ports": {"closed": b.port(0), "open": b.port(1), "any": b.port(2),
                     "tls_id": b.port(3)}}
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


def connack(port, version, client_id, username=None, password=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    c = RawClient(s, version)
    rc = c.connect(client_id, username, password)
    s.close()
    return rc


@pytest.mark.parametrize("version", [4, 5])
def test_mosquitto_passwd_hashes_are_accepted(setup, version):
    port = setup["ports"]["closed"]
    assert connack(port, version, "a-%d" % version, "alice", "secret") == 0
    assert connack(port, version, "b-%d" % version, "bob", "hunter2") == 0


def test_wrong_passwords_are_refused(setup):
    port = setup["ports"]["closed"]
    assert connack(port, 5, "w1", "alice", "wrong") == 0x86
    assert connack(port, 4, "w2", "alice", "wrong") == 4
    assert connack(port, 5, "w3", "bob", "") == 0x86
    assert connack(port, 5, "w4", "mallory", "secret") == 0x86
    assert connack(port, 4, "w5", "alice", None) == 4
    log = setup["broker"].log()
    assert "refusing client 'w1' from 127.0.0.1:" in log
    assert "wrong password" in log and "unknown user" in log


def test_mosquitto_clients_with_passwords(setup):
    port = str(setup["ports"]["closed"])
    ok = subprocess.run(["mosquitto_pub", "-p", port, "-u", "alice", "-P", "secret", "-t", "x",
                         "-m", "y", "-q", "1"], capture_output=True, timeout=15)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["mosquitto_pub", "-p", port, "-u", "alice", "-P", "nope", "-t", "x",
                          "-m", "y"], capture_output=True, timeout=15)
    assert bad.returncode != 0


def test_anonymous_refused_where_configured(setup):
    assert connack(setup["ports"]["closed"], 5, "anon1") == 0x87
    assert connack(setup["ports"]["closed"], 4, "anon2") == 5


def test_anonymous_allowed_on_loopback_by_default(setup):
    assert connack(setup["ports"]["open"], 4, "anon3") == 0
    assert connack(setup["ports"]["open"], 5, "anon4") == 0
    # A password is still checked when a user name is given.
    assert connack(setup["ports"]["open"], 5, "anon5", "alice", "bad") == 0x86


def test_anonymous_refused_on_other_addresses_by_default(setup):
    assert connack(setup["ports"]["any"], 5, "anon6") == 0x87
    assert connack(setup["ports"]["any"], 4, "anon7") == 5
    assert connack(setup["ports"]["any"], 4, "named", "alice", "secret") == 0


def test_certificate_cn_is_the_user_name(setup):
    ctx = client_context(setup["ca"].cert, *setup["client"])
    c = RawClient(tls_connect(setup["ports"]["tls_id"], ctx), 5)
    # No user name in CONNECT: the certificate's CN stands in for it.
    assert c.connect("cn-client") == 0
    c.disconnect()
    setup["broker"].wait_log("client cn-client connected")


def test_petrel_passwd_batch_stdin_update_delete(setup, tmp_path):
    pw = str(tmp_path / "pw")
    r = petrel_passwd("-b", pw, "dave", "pa55word")
    assert r.returncode == 0, r.stderr
    r = petrel_passwd(pw, "erin", input="from stdin\n")
    assert r.returncode == 0, r.stderr
    text = open(pw).read()
    assert text.startswith("dave:$7$1000$") and "\nerin:$7$" in text
    assert oct(os.stat(pw).st_mode & 0o777) == "0o600"
    first = text
    r = petrel_passwd("-b", pw, "dave", "changed")
    assert r.returncode == 0
    text = open(pw).read()
    assert text.count("dave:") == 1 and text != first and "erin:" in text
    r = petrel_passwd("-D", pw, "erin")
    assert r.returncode == 0
    assert "erin:" not in open(pw).read()
    assert petrel_passwd("-D", pw, "nobody").returncode != 0
    assert petrel_passwd("-b", pw, "bad:name", "x").returncode != 0
    assert petrel_passwd("-b", pw).returncode == 2


def test_petrel_passwd_prompts_twice_on_a_terminal(tmp_path):
    import pty
    pw = str(tmp_path / "pw")
    for answers, expect_ok in ((["s3cret", "s3cret"], True), (["one", "two"], False)):
        master, slave = pty.openpty()
        p = subprocess.Popen([PETREL_BIN, "passwd", pw, "tty-user"], stdin=slave, stdout=slave,
                             stderr=slave, close_fds=True)
        os.close(slave)
        out = b""
        for answer in answers:
            deadline = time.time() + 10
            while b"assword: " not in out[-30:] and time.time() < deadline:
                if select.select([master], [], [], 0.5)[0]:
                    out += os.read(master, 1024)
            os.write(master, answer.encode() + b"\n")
            out = b""
        try:
            assert p.wait(10) == (0 if expect_ok else 1)
        finally:
            if p.poll() is None:
                p.kill()
        os.close(master)
    assert "tty-user:$7$" in open(pw).read()


def test_petrel_passwd_file_works_with_mosquitto_and_petrel(setup, tmp_path):
    """A file written by `petrel passwd` is read by mosquitto itself, and
    petrel reloads it on SIGHUP."""
    pw = setup["pw"]
    assert petrel_passwd("-b", pw, "frank", "new-user").returncode == 0
    b = setup["broker"]
    port = setup["ports"]["closed"]
    assert connack(port, 5, "f1", "frank", "new-user") == 0x86  # not loaded yet
    b.hup()
    b.wait_log("password file %s reloaded" % pw)
    assert connack(port, 5, "f2", "frank", "new-user") == 0
    assert connack(port, 5, "f3", "alice", "secret") == 0  # the others are still there

    mport = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nuser root\n"
                    % (mport, pw))
    m = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        from petrel_tls_helpers import wait_port
        wait_port(mport, proc=m)
        assert connack(mport, 4, "m1", "frank", "new-user") == 0
        assert connack(mport, 4, "m2", "frank", "wrong") != 0
    finally:
        m.terminate()
        m.wait(10)


def test_bad_password_file_at_reload_keeps_the_old_one(setup):
    b = setup["broker"]
    pw = setup["pw"]
    saved = pw + ".saved"
    os.rename(pw, saved)
    try:
        b.hup()
        b.wait_log("password file not reloaded")
        assert connack(setup["ports"]["closed"], 5, "g1", "alice", "secret") == 0
    finally:
        os.rename(saved, pw)


@pytest.mark.parametrize("workers", [1, 2])
def test_packets_behind_a_connect_being_checked_wait_for_it(make_broker, tmp_path, workers):
    """While a CONNECT waits for its password check, whatever the client
    sent after it waits too -- also when the CONNECT came in two reads and
    the second one brought the next packets. Here the next packet is a
    second CONNECT, a protocol error once the first is answered: one
    CONNACK, then the connection closes, and the second client id gets no
    session. Handled while the first still waited, the second CONNECT was
    checked and answered as well, both sessions named the connection, and
    the first kept naming it after it closed: the next client with that id
    touched a freed connection."""
    m = mqttraw
    pw = str(tmp_path / "passwd")
    r = petrel_passwd("-c", "-b", pw, "alice", "secret")
    assert r.returncode == 0, r.stderr
    b = make_broker(workers=workers, auth={"password_file": pw})
    first = m.connect("split-a", level=4, clean=False, username="alice", password=b"secret")
    second = m.connect("split-b", level=4, clean=False, username="alice", password=b"secret")
    c = b.client()
    c.send(first[:-1])
    time.sleep(0.3)  # read and kept as a partial packet
    c.send(first[-1:] + second)
    got = c.expect_closed(10)
    assert [(p.type, p.reason) for p in got] == [(m.CONNACK, 0)], got
    # split-a's session is offline, split-b has none; both ids connect.
    for cid in ("split-a", "split-b", "split-a"):
        n = b.client()
        n.send(m.connect(cid, level=4, username="alice", password=b"secret", clean=False))
        p = n.expect(m.CONNACK)
        assert p.reason == 0
        assert p.session_present == (cid == "split-a"), (cid, p)
        n.send(m.disconnect())
        n.expect_closed(5)
