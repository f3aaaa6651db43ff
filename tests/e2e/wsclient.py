"""A tiny WebSocket client (RFC 6455) for the end-to-end tests: the opening
handshake, masked frames out, frames in (pings answered, close frames
recorded), over a plain or TLS socket.

`WsSocket` has the socket methods the raw MQTT clients use (sendall, recv,
settimeout, setsockopt, close), so `petrel_tls_helpers.RawClient` speaks
MQTT over it unchanged: each sendall() is one binary frame, recv() returns
the payload of the binary frames received.
"""

import base64
import hashlib
import os
import socket
import ssl
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    def __init__(self, status, head, body):
        super().__init__("HTTP %d: %s" % (status, body.decode(errors="replace").strip()))
        self.status = status
        self.head = head
        self.body = body


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """A client frame; `length` overrides the announced payload length."""
    payload = bytes(payload)
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def upgrade_request(path="/mqtt", protocols="mqtt", host="127.0.0.1", key=None, version="13",
                    extra=(), method="GET", upgrade=True):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version:
        lines.append("Sec-WebSocket-Version: %s" % version)
    if protocols:
        lines.append("Sec-WebSocket-Protocol: %s" % protocols)
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def read_http_response(sock, timeout=5.0):
    """(status, head text, headers dict, body bytes, leftover bytes)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline:
            raise TimeoutError("no HTTP response head")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an HTTP response: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, head.decode(), headers, rest[:n], rest[n:]


def tcp_connect(port, host="127.0.0.1", timeout=5.0, tls_ctx=None):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls_ctx is not None:
        s = tls_ctx.wrap_socket(s, server_hostname="localhost")
    return s


class WsSocket:
    """A WebSocket connection that looks like a socket to an MQTT client."""

    def __init__(self, port, path="/mqtt", protocols="mqtt", tls_ctx=None, timeout=5.0, sock=None):
        self.sock = sock or tcp_connect(port, timeout=timeout, tls_ctx=tls_ctx)
        self.rx = b""
        self.payload = b""
        self.close_code = None   # the server's close frame (code, reason)
        self.close_reason = b""
        self.eof = False
        self.pongs = []
        self.frames_seen = []     # opcodes in arrival order
        request, key = upgrade_request(path, protocols)
        self.sock.sendall(request)
        status, head, headers, body, rest = read_http_response(self.sock, timeout)
        if status != 101:
            raise HandshakeRefused(status, head, body)
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == want, head
        assert headers.get("upgrade", "").lower() == "websocket", head
        self.protocol = headers.get("sec-websocket-protocol")
        self.rx = rest

    # -- the socket interface ------------------------------------------------
    def settimeout(self, t):
        self.sock.settimeout(t)

    def setsockopt(self, *a):
        self.sock.setsockopt(*a)

    def sendall(self, data):
        self.sock.sendall(frame(BINARY, data))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, n=65536):
        """Payload of binary frames; b"" once a close frame or EOF came."""
        while True:
            if self.payload:
                out, self.payload = self.payload[:n], self.payload[n:]
                return out
            if self.close_code is not None or self.eof:
                return b""
            if not self._parse_one():
                chunk = self.sock.recv(65536)  # socket.timeout propagates
                if not chunk:
                    self.eof = True
                    continue
                self.rx += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- frames --------------------------------------------------------------
    def _parse_one(self):
        b = self.rx
        if len(b) < 2:
            return False
        assert not b[1] & 0x80, "a server frame is masked"
        n = b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return False
            n = struct.unpack("!H", b[2:4])[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return False
            n = struct.unpack("!Q", b[2:10])[0]
            pos = 10
        if len(b) < pos + n:
            return False
        opcode = b[0] & 0x0F
        assert b[0] & 0x80, "a server frame is not final"
        payload = b[pos:pos + n]
        self.rx = b[pos + n:]
        self.frames_seen.append(opcode)
        if opcode == BINARY:
            self.payload += payload
        elif opcode == PING:
            self.sock.sendall(frame(PONG, payload))
        elif opcode == PONG:
            self.pongs.append(payload)
        elif opcode == CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close_reason = payload[2:]
            try:
                self.sock.sendall(frame(CLOSE, payload[:2]))
            except OSError:
                pass
        else:
            raise AssertionError("unexpected opcode %d from the server" % opcode)
        return True

    def wait_closed(self, timeout=5.0):
        """Reads until the server's close frame and then its EOF; returns
        (close code or None, payload of binary frames seen on the way)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        data = b""
        while not self.eof:
            if time.monotonic() > deadline:
                raise AssertionError("not closed within %.1f s" % timeout)
            if self._parse_one():
                data += self.payload
                self.payload = b""
                continue
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.eof = True
            self.rx += chunk
        while self._parse_one():
            data += self.payload
            self.payload = b""
        return self.close_code, data
