"""TLS listeners end to end: handshakes with openssl s_client, mosquitto
clients and paho; client certificates (good, wrong CA, expired, revoked,
missing); TLS 1.1 refused; garbage and stalled handshakes close only their
own connection; certificates reloaded on SIGHUP and on file change while an
old connection keeps working."""

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from petrel_tls_helpers import (Broker, CertAuthority, RawClient, MqttError, cert_serial,
                                client_context, free_port, tls_connect, tmpdir)


@pytest.fixture(scope="module")
def pki():
    d = tmpdir()
    ca = CertAuthority(d)
    p = {"dir": d, "ca": ca}
    p["server"] = ca.issue("server", "localhost", server=True)
    p["client"] = ca.issue("client", "dev1")
    p["expired"] = ca.issue("expired", "old-device", startdate="20200101000000Z",
                            enddate="20200201000000Z")
    p["revoked"] = ca.issue("revoked", "stolen-device")
    ca.revoke(p["revoked"][0])
    p["crl"] = ca.crl(os.path.join(d, "crl.pem"))
    other = CertAuthority(d, "other", "Some Other CA")
    p["other_ca"] = other
    p["stranger"] = other.issue("stranger", "dev1")  # same CN, wrong CA
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(pki):
    cert, key = pki["server"]
    tls_cfg = {"cert_file": cert, "key_file": key, "ca_file": pki["ca"].cert}
    cfg = lambda: {
        "log_level": "info",
        "listeners": [
            {"address": "127.0.0.1", "port": free_port()},
            {"address": "127.0.0.1", "port": free_port(), "tls": dict(tls_cfg)},
            {"address": "127.0.0.1", "port": free_port(),
             "tls": dict(tls_cfg, require_certificate=True, crl_file=pki["crl"])},
            {"address": "127.0.0.1", "port": free_port(),
             "tls": dict(tls_cfg, handshake_timeout_ms=500)},
        ],
    }
    b = Broker(pki["dir"], cfg).start()
    b.ports = {"plain": b.port(0), "tls": b.port(1), "mtls": b.port(2), "slow": b.port(3)}
    yield b
    b.stop()


def connected(port, ctx, client_id, version=5):
    c = RawClient(tls_connect(port, ctx), version)
    assert c.connect(client_id) == 0
    return c


def refused_handshake(port, ctx):
    """True when the TLS connection fails, during the handshake or (TLS 1.3:
    the server checks the client certificate after the client finished) at
    the first exchange."""
    try:
        s = tls_connect(port, ctx)
        c = RawClient(s, 4)
        c.connect("should-not-connect")
    except (ssl.SSLError, MqttError, ConnectionError, socket.timeout, TimeoutError):
        return True
    return False


def test_openssl_s_client_handshake_and_alpn(broker, pki):
    r = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % broker.ports["tls"],
         "-CAfile", pki["ca"].cert, "-verify_return_error", "-alpn", "mqtt",
         "-servername", "localhost"],
        input=b"", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert "Verify return code: 0 (ok)" in out
    assert "TLSv1.3" in out
    assert "ALPN protocol: mqtt" in out


def test_tls12_handshake_and_mqtt(broker, pki):
    ctx = client_context(pki["ca"].cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = connected(broker.ports["tls"], ctx, "tls12")
    assert c.sock.version() == "TLSv1.2"
    assert c.subscribe("tls12/#") == [1]
    assert c.publish("tls12/x", "over 1.2", qos=1) == 0
    assert c.recv_publish()[1] == b"over 1.2"
    c.disconnect()


def test_mosquitto_clients_over_tls_with_client_certificate(broker, pki):
    cert, key = pki["client"]
    port = str(broker.ports["mtls"])
    tls_args = ["-h", "localhost", "-p", port, "--cafile", pki["ca"].cert,
                "--cert", cert, "--key", key]
    sub = subprocess.Popen(["mosquitto_sub"] + tls_args + ["-t", "mosq/tls", "-C", "1", "-W", "15",
                                                            "-q", "1", "-i", "mosq-sub"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    deadline = time.time() + 10
    while time.time() < deadline and sub.poll() is None:
        subprocess.run(["mosquitto_pub"] + tls_args + ["-t", "mosq/tls", "-m", "hello over tls",
                                                       "-q", "1", "-i", "mosq-pub"],
                       check=True, timeout=10)
        try:
            sub.wait(1)
        except subprocess.TimeoutExpired:
            pass
    out, err = sub.communicate(timeout=15)
    assert sub.returncode == 0, err
    assert out.decode().strip() == "hello over tls"


def test_mosquitto_pub_refused_without_client_certificate(broker, pki):
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(broker.ports["mtls"]),
                        "--cafile", pki["ca"].cert, "-t", "x", "-m", "y"],
                       capture_output=True, timeout=15)
    assert r.returncode != 0


def test_paho_over_tls(broker, pki):
    got = []
    done = threading.Event()
    cert, key = pki["client"]

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload))
        done.set()

    sub = paho.Client(client_id="paho-sub")
    sub.tls_set(ca_certs=pki["ca"].cert, certfile=cert, keyfile=key)
    sub.on_message = on_message
    sub.connect("localhost", broker.ports["mtls"])
    sub.subscribe("paho/#", qos=1)
    sub.loop_start()
    pub = paho.Client(client_id="paho-pub", protocol=paho.MQTTv5)
    pub.tls_set(ca_certs=pki["ca"].cert)
    pub.connect("localhost", broker.ports["tls"])
    pub.loop_start()
    try:
        deadline = time.time() + 10
        while not done.is_set() and time.time() < deadline:
            pub.publish("paho/t", b"from paho", qos=1).wait_for_publish(5)
            done.wait(0.5)
        assert ("paho/t", b"from paho") in got
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()


def test_client_certificate_from_another_ca_is_refused(broker, pki):
    ctx = client_context(pki["ca"].cert, *pki["stranger"])
    assert refused_handshake(broker.ports["mtls"], ctx)
    broker.wait_log("certificate verify failed")


def test_expired_client_certificate_is_refused(broker, pki):
    ctx = client_context(pki["ca"].cert, *pki["expired"])
    assert refused_handshake(broker.ports["mtls"], ctx)
    broker.wait_log("certificate has expired")


def test_revoked_client_certificate_is_refused(broker, pki):
    ctx = client_context(pki["ca"].cert, *pki["revoked"])
    assert refused_handshake(broker.ports["mtls"], ctx)
    broker.wait_log("certificate revoked")


def test_missing_client_certificate_is_refused(broker, pki):
    ctx = client_context(pki["ca"].cert)
    assert refused_handshake(broker.ports["mtls"], ctx)


def test_good_client_certificate_is_accepted_with_crl(broker, pki):
    ctx = client_context(pki["ca"].cert, *pki["client"])
    c = connected(broker.ports["mtls"], ctx, "good-cert")
    c.ping()
    c.disconnect()


def test_tls11_is_refused(broker, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"].cert)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(broker.ports["tls"], ctx)
    # The broker refused it (not just the client library).
    broker.wait_log("unsupported protocol")
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % broker.ports["tls"],
                        "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-brief"],
                       input=b"", capture_output=True, timeout=20)
    assert r.returncode != 0


def test_large_payload_over_tls(broker, pki):
    ctx = client_context(pki["ca"].cert)
    c = connected(broker.ports["tls"], ctx, "big")
    assert c.subscribe("big/#") == [1]
    payload = os.urandom(900 * 1024)
    assert c.publish("big/1", payload, qos=1) == 0
    topic, got, qos, _ = c.recv_publish(10)
    assert got == payload
    c.disconnect()


def test_garbage_before_the_handshake_closes_only_that_connection(broker, pki):
    ctx = client_context(pki["ca"].cert)
    survivor = connected(broker.ports["tls"], ctx, "survivor-1")
    assert survivor.subscribe("alive/#") == [1]
    with socket.create_connection(("127.0.0.1", broker.ports["tls"]), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
        data = s.recv(4096)
        while data:  # an alert, then the close
            data = s.recv(4096)
    assert survivor.publish("alive/1", "still here", qos=1) == 0
    assert survivor.recv_publish()[1] == b"still here"
    survivor.disconnect()
    assert broker.alive()


def test_garbage_during_the_handshake_closes_only_that_connection(broker, pki):
    ctx = client_context(pki["ca"].cert)
    survivor = connected(broker.ports["tls"], ctx, "survivor-2")
    assert survivor.subscribe("alive2/#") == [1]
    # Start a real handshake through memory BIOs, then send junk.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    with socket.create_connection(("127.0.0.1", broker.ports["tls"]), timeout=5) as s:
        s.sendall(outgoing.read())  # ClientHello
        time.sleep(0.2)
        s.recv(65536)  # ServerHello ... Finished
        s.sendall(b"\x16\x03\x03\x00\x10" + os.urandom(16) + os.urandom(300))
        data = s.recv(4096)
        while data:
            data = s.recv(4096)
    assert survivor.publish("alive2/1", "still here", qos=1) == 0
    assert survivor.recv_publish()[1] == b"still here"
    survivor.disconnect()


def test_garbage_after_the_handshake_closes_only_that_connection(broker, pki):
    ctx = client_context(pki["ca"].cert)
    survivor = connected(broker.ports["tls"], ctx, "survivor-3")
    victim = tls_connect(broker.ports["tls"], ctx)
    victim.do_handshake()
    # Junk written under the TLS layer, on the raw socket.
    fd = socket.socket(fileno=os.dup(victim.fileno()))
    fd.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
    fd.settimeout(5)
    try:
        while fd.recv(4096):
            pass
    except ConnectionError:
        pass
    fd.close()
    victim.close()
    survivor.ping()
    survivor.disconnect()


def test_renegotiation_is_refused_and_harmless(broker, pki):
    survivor = connected(broker.ports["tls"], client_context(pki["ca"].cert), "survivor-4")
    # "R" on s_client's input asks for a TLS 1.2 renegotiation.
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % broker.ports["tls"],
                        "-CAfile", pki["ca"].cert, "-tls1_2", "-servername", "localhost"],
                       input=b"R\n", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode()
    assert "RENEGOTIATING" in out
    assert "no renegotiation" in out  # the broker declined
    survivor.ping()
    survivor.disconnect()
    assert broker.alive()


def test_stalled_handshake_times_out(broker, pki):
    with socket.create_connection(("127.0.0.1", broker.ports["slow"]), timeout=5) as s:
        start = time.time()
        assert s.recv(10) == b""  # closed by the broker, nothing sent
        assert time.time() - start < 3
    broker.wait_log("no TLS handshake within 500 ms")


# ---------------------------------------------------------------------------
# Certificate reload


def server_serial(port, cafile):
    s = tls_connect(port, client_context(cafile))
    serial = int(s.getpeercert()["serialNumber"], 16)
    s.close()
    return serial


def test_certificate_reload_on_sighup_and_on_file_change(pki):
    d = tmpdir()
    ca = pki["ca"]
    live = os.path.join(d, "live")
    os.makedirs(live)
    cert, key = os.path.join(live, "cert.pem"), os.path.join(live, "key.pem")

    def install(name):
        c, k = ca.issue(name, "localhost", server=True, outdir=d)
        # Written in place, one file after the other, like a renewal script.
        shutil.copyfile(c, cert)
        shutil.copyfile(k, key)
        return cert_serial(c)

    first = install("first")
    cfg = lambda: {"log_level": "info", "listeners": [
        {"address": "127.0.0.1", "port": free_port(),
         "tls": {"cert_file": cert, "key_file": key}}]}
    with Broker(d, cfg) as b:
        port = b.port(0)
        assert server_serial(port, ca.cert) == first
        old = connected(port, client_context(ca.cert), "old-connection")
        assert old.subscribe("reload/#") == [1]

        # 1. New files, then SIGHUP.
        second = install("second")
        b.hup()
        b.wait_log("TLS files reloaded (SIGHUP)")
        assert server_serial(port, ca.cert) == second
        assert old.publish("reload/1", "after sighup", qos=1) == 0
        assert old.recv_publish()[1] == b"after sighup"

        # 2. New files and no signal: the file watch picks them up.
        third = install("third")
        deadline = time.time() + 10
        while time.time() < deadline and server_serial(port, ca.cert) != third:
            time.sleep(0.2)
        assert server_serial(port, ca.cert) == third
        b.wait_log("TLS files reloaded (files changed)")

        # The serial seen by openssl s_client too.
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-CAfile", ca.cert, "-servername", "localhost", "-showcerts"],
                           input=b"", capture_output=True, timeout=20)
        x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=r.stdout,
                           capture_output=True, timeout=10)
        assert int(x.stdout.decode().strip().split("=")[1], 16) == third

        # 3. A broken certificate: refused, the last good one stays.
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        b.hup()
        b.wait_log("refused, the previous certificate stays in use")
        assert server_serial(port, ca.cert) == third

        # The connection from before all reloads still publishes.
        assert old.publish("reload/2", "still working", qos=1) == 0
        assert old.recv_publish()[1] == b"still working"
        old.disconnect()
        assert b.alive()
    shutil.rmtree(d, ignore_errors=True)


def test_config_refuses_tls_1_1_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners:\n  - address: 127.0.0.1\n    port: 18999\n    tls:\n'
                   '      cert_file: a.pem\n      key_file: a.key\n      min_version: "1.1"\n')
    r = subprocess.run([os.environ.get("PETREL_BIN", "build/petrel"), "--check-config", "--config",
                        str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "min_version" in r.stderr and ":7:" in r.stderr
    bad.write_text("listeners:\n  - address: 127.0.0.1\n    port: %d\n    tls:\n"
                   "      cert_file: /nonexistent/cert.pem\n      key_file: /nonexistent/key.pem\n"
                   % free_port())
    r = subprocess.run([os.environ.get("PETREL_BIN", "build/petrel"), "--config", str(bad)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "/nonexistent/cert.pem" in r.stderr
