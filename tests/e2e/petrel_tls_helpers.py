"""Helpers for the TLS, authentication and ACL end-to-end tests.

Self-contained on purpose (no conftest): starts the broker binary
($PETREL_BIN, default build/petrel) with a generated configuration on free
ports, makes test certificates with the `openssl` command line tool, and
speaks just enough raw MQTT (3.1.1 and 5) over plain or TLS sockets to see
the exact reason codes.
"""

import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import ports

PETREL_BIN = os.environ.get("PETREL_BIN", "build/petrel")


# --------------------------------------------------------------------------
# Ports and processes

free_port = ports.free_port



def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("broker exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("port %d did not open" % port)


class Broker:
    """The petrel binary with a configuration made from a dict (written as
    JSON, which is YAML). stderr goes to a log file the test can read."""

    def __init__(self, workdir, config):
        """`config` is a dict, or a function returning one: it is called
        again (for fresh free ports) if a port was taken meanwhile."""
        self.workdir = workdir
        self.make_config = config if callable(config) else (lambda: config)
        self.config = None
        self.config_path = os.path.join(workdir, "petrel-%d.yaml" % id(self))
        self.log_path = os.path.join(workdir, "petrel-%d.log" % id(self))
        self.proc = None

    def start(self, attempts=3):
        for attempt in range(attempts):
            self.config = self.make_config()
            workers = os.environ.get("PETREL_TEST_WORKERS", "")
            if workers and "workers" not in self.config:
                self.config = dict(self.config, workers=int(workers))
            with open(self.config_path, "w") as f:
                json.dump(self.config, f, indent=1)
            self._log = open(self.log_path, "w")
            self.proc = subprocess.Popen([PETREL_BIN, "--config", self.config_path],
                                         stdout=self._log, stderr=subprocess.STDOUT)
            try:
                for l in self.config.get("listeners", []):
                    wait_port(l["port"], proc=self.proc)
                return self
            except RuntimeError:
                self.proc.wait()
                self._log.close()
                self.proc = None
                # Another process took one of the free ports: try again.
                if "address already in use" not in self.log() or attempt + 1 == attempts:
                    raise RuntimeError("broker did not start:\n" + self.log())

    def port(self, i):
        return self.config["listeners"][i]["port"]

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        raise AssertionError("%r not in the broker log:\n%s" % (text, self.log()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# Certificates, made with the openssl command line tool

CA_CONF = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = {cert}
private_key = {key}
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = dn
prompt = no

[ dn ]
CN = {cn}

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""

CLIENT_EXT = """\
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


class CertAuthority:
    """A test CA in its own directory, signing with `openssl ca`."""

    def __init__(self, base, name="ca", cn="Petrel Test CA"):
        self.dir = os.path.join(base, name)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(CA_CONF.format(dir=self.dir, cert=self.cert, key=self.key, cn=cn))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("01\n")
        for ext, text in (("server.ext", SERVER_EXT), ("client.ext", CLIENT_EXT)):
            with open(os.path.join(self.dir, ext), "w") as f:
                f.write(text)
        openssl("req", "-x509", "-new", "-config", self.conf, "-extensions", "v3_ca",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "365")

    def issue(self, name, cn, server=False, startdate=None, enddate=None, outdir=None):
        """Returns (cert path, key path) of a new certificate."""
        outdir = outdir or self.dir
        key = os.path.join(outdir, name + ".key")
        csr = os.path.join(outdir, name + ".csr")
        cert = os.path.join(outdir, name + ".pem")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-subj", "/CN=" + cn, "-out", csr)
        args = ["ca", "-batch", "-config", self.conf, "-in", csr, "-out", cert, "-notext",
                "-extfile", os.path.join(self.dir, "server.ext" if server else "client.ext")]
        if startdate:
            args += ["-startdate", startdate, "-enddate", enddate]
        openssl(*args)
        return cert, key

    def revoke(self, cert):
        openssl("ca", "-batch", "-config", self.conf, "-revoke", cert)

    def crl(self, path):
        openssl("ca", "-batch", "-config", self.conf, "-gencrl", "-out", path)
        return path


def cert_serial(pem_path):
    out = openssl("x509", "-in", pem_path, "-noout", "-serial")
    return int(out.strip().split("=", 1)[1], 16)


# --------------------------------------------------------------------------
# TLS client contexts


def client_context(cafile, certfile=None, keyfile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def tls_connect(port, ctx, timeout=5.0):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


# --------------------------------------------------------------------------
# A minimal MQTT client over any socket


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(ptype_flags, body):
    return bytes([ptype_flags]) + _varint(len(body)) + body


class MqttError(Exception):
    pass


class RawClient:
    """Speaks MQTT 3.1.1 (version=4) or 5 (version=5) over `sock`."""

    def __init__(self, sock, version=4):
        self.sock = sock
        self.version = version
        self.buf = b""
        self.next_id = 1
        self.pending = []  # PUBLISH packets received while waiting for acks

    # -- framing
    def send(self, data):
        self.sock.sendall(data)

    def _read_more(self, timeout):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise MqttError("connection closed")
        self.buf += data

    def recv_packet(self, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 2:
                mult, length, i = 1, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + length:
                    first, body = self.buf[0], self.buf[i:i + length]
                    self.buf = self.buf[i + length:]
                    return first, body
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no packet")
            self._read_more(left)

    def _props(self, raw=b""):
        return _varint(len(raw)) + raw if self.version == 5 else b""

    def _skip_props(self, body, pos):
        if self.version != 5:
            return pos
        mult, length = 1, 0
        while True:
            b = body[pos]
            pos += 1
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return pos + length

    # -- packets
    def connect(self, client_id, username=None, password=None, clean=True, keepalive=60,
                will=None):
        flags = 0x02 if clean else 0
        payload = _str(client_id)
        if will:
            topic, message, qos, retain = will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += self._props() + _str(topic) + _str(message)
        if username is not None:
            flags |= 0x80
            payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
        body = _str("MQTT") + bytes([self.version, flags]) + struct.pack("!H", keepalive)
        body += self._props() + payload
        self.send(packet(0x10, body))
        first, body = self.recv_packet()
        if first >> 4 != 2:
            raise MqttError("expected CONNACK, got type %d" % (first >> 4))
        return body[1]  # the return code / reason code

    def subscribe(self, *filters, qos=1):
        pid = self._pid()
        body = struct.pack("!H", pid) + self._props()
        for f in filters:
            body += _str(f) + bytes([qos])
        self.send(packet(0x82, body))
        body = self._wait_for(9, pid)
        pos = self._skip_props(body, 2)
        return list(body[pos:])

    def publish(self, topic, payload, qos=0, retain=False):
        """Returns None for QoS 0, else the PUBACK/PUBREC reason (0 = success)."""
        pid = self._pid() if qos else 0
        body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + self._props()
        body += payload.encode() if isinstance(payload, str) else payload
        self.send(packet(0x30 | (qos << 1) | (1 if retain else 0), body))
        if qos == 0:
            return None
        body = self._wait_for(4 if qos == 1 else 5, pid)
        reason = body[2] if len(body) > 2 else 0
        if qos == 2 and reason < 0x80:
            self.send(packet(0x62, struct.pack("!H", pid)))
            self._wait_for(7, pid)
        return reason

    def recv_publish(self, timeout=2.0):
        """(topic, payload, qos, retain) of the next PUBLISH, acked."""
        if self.pending:
            first, body = self.pending.pop(0)
        else:
            while True:
                first, body = self.recv_packet(timeout)
                if first >> 4 == 3:
                    break
        return self._accept_publish(first, body)

    def expect_nothing(self, timeout=0.5):
        try:
            msg = self.recv_publish(timeout)
        except (TimeoutError, socket.timeout):
            return
        raise AssertionError("unexpected message %r" % (msg,))

    def ping(self):
        self.send(b"\xc0\x00")
        self._wait_for(13, None)

    def disconnect(self):
        self.send(b"\xe0\x00")
        self.sock.close()

    # -- internals
    def _pid(self):
        pid = self.next_id
        self.next_id = self.next_id % 65535 + 1
        return pid

    def _wait_for(self, ptype, pid, timeout=5.0):
        while True:
            first, body = self.recv_packet(timeout)
            if first >> 4 == 3:
                self.pending.append((first, body))
                continue
            if first >> 4 == ptype and (pid is None or struct.unpack("!H", body[:2])[0] == pid):
                return body

    def _accept_publish(self, first, body):
        qos = (first >> 1) & 3
        tlen = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack("!H", body[pos:pos + 2])[0]
            pos += 2
        pos = self._skip_props(body, pos)
        if qos == 1:
            self.send(packet(0x40, struct.pack("!H", pid)))
        elif qos == 2:
            self.send(packet(0x50, struct.pack("!H", pid)))
            self._wait_for(6, pid)
            self.send(packet(0x70, struct.pack("!H", pid)))
        return topic, body[pos:], qos, bool(first & 1)


def tmpdir():
    return tempfile.mkdtemp(prefix="petrel-e2e-")
