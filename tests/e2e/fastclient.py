"""Fast raw MQTT clients for the at-scale end-to-end tests.

The tests that push a broker far past its windows and buffers need clients
that read and acknowledge hundreds of thousands of messages in seconds:
these read in large chunks, parse every packet in the chunk, and answer
all acknowledgements of a chunk in one write. Packets are built with
mqttraw. Everything is bounded in time.

A subscriber may reach the broker over TLS (`tls`: an ssl.SSLContext) and
over WebSocket (`ws`), or both; publishers use plain TCP.
"""

import selectors
import socket
import ssl
import struct
import threading
import time

import mqttraw as m
import wsclient

# Nothing to read or write on a non-blocking socket at the moment (TLS asks
# for either while it works through a record).
_NOT_NOW = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _split(buf):
    """Yield (header byte, body memoryview) for each complete packet in buf;
    return the number of bytes consumed."""
    out = []
    pos = 0
    n = len(buf)
    while pos + 2 <= n:
        h = buf[pos]
        mult = 1
        length = 0
        i = pos + 1
        while True:
            if i >= n:
                return out, pos
            b = buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if i + length > n:
            break
        out.append((h, bytes(buf[i:i + length])))
        pos = i + length
    return out, pos


class Sub:
    """A subscriber that acknowledges everything it receives (QoS 1 PUBACK,
    QoS 2 PUBREC then PUBCOMP, method B bookkeeping of QoS 2 ids) and
    records arrival times, per-publisher sequence numbers and gaps.

    Payloads written by Pub start with b"<pub id>:<seq>:"."""

    def __init__(self, host, port, cid, version=4, clean=True, expiry=None,
                 receive_max=None, read=True, tls=None, ws=False):
        self.host, self.port, self.cid, self.version = host, port, cid, version
        self.clean, self.expiry, self.receive_max = clean, expiry, receive_max
        self.read = read
        self.tls, self.ws = tls, ws
        self.sock = None    # the socket (TLS-wrapped with `tls`)
        self.frames = None  # with `ws`: the WebSocket framing over it
        self.buf = bytearray()
        self.count = 0             # PUBLISH packets received
        self.by_qos = [0, 0, 0]
        self.first_seen = {}       # (pub, seq) -> True, first deliveries
        self.unique_by_pub = {}    # pub -> first deliveries from it
        self.dups = 0
        self.dups_qos2 = 0
        self.order_errors = 0
        self.last_seq = {}
        self.qos2_pending = set()  # ids between PUBREC and PUBREL
        self.connack_at = None
        self.session_present = None
        self.first_at = None
        self.last_at = None
        self.max_gap = 0.0
        self.max_gap_at = 0
        self.closed = False
        self.disconnect_reason = None

    def connect(self, subscribe=None, qos=1, connack_timeout=5):
        s = wsclient.tcp_connect(self.port, host=self.host, tls_ctx=self.tls)
        if self.ws:
            self.frames = wsclient.WsSocket(self.port, sock=s)  # the opening handshake
        props = {}
        if self.version == 5:
            if self.expiry is not None:
                props["session_expiry_interval"] = self.expiry
            if self.receive_max is not None:
                props["receive_maximum"] = self.receive_max
        self.sock = s
        s.sendall(self._out(m.connect(self.cid, self.version, clean=self.clean, keepalive=600,
                                      props=props or None)))
        t0 = time.monotonic()
        while self.connack_at is None:
            if time.monotonic() - t0 > connack_timeout:
                raise AssertionError("%s: no CONNACK" % self.cid)
            if self.closed:
                raise AssertionError("%s: closed by the broker before a CONNACK" % self.cid)
            self._read_once(connack_timeout)
        if subscribe:
            # A filter, or a list of (filter, QoS) pairs.
            topics = subscribe if isinstance(subscribe, list) else [(subscribe, qos)]
            s.sendall(self._out(m.subscribe(1, topics, v5=self.version == 5)))
            t0 = time.monotonic()
            while not getattr(self, "subacked", False):
                if time.monotonic() - t0 > 5:
                    raise AssertionError("%s: no SUBACK" % self.cid)
                self._read_once(5)
        s.setblocking(False)
        return self

    def _read_once(self, timeout):
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            return
        self.feed(self._in(data))

    def take(self, chunk):
        """Reads what the socket has now, in pieces of `chunk` bytes, and
        handles it; False once the broker closed. Over TLS it reads on while
        the TLS layer holds decrypted bytes, which select() does not see."""
        while True:
            try:
                data = self.sock.recv(chunk)
            except _NOT_NOW:
                return True
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return False
            self.feed(self._in(data))
            if self.tls is None or self.sock is None or not self.sock.pending():
                return True

    def _in(self, data):
        """The MQTT bytes in what the socket gave."""
        f = self.frames
        if f is None:
            return data
        f.rx += data
        while f._parse_one():
            pass
        out, f.payload = f.payload, b""
        if f.close_code is not None:
            self.closed = True
        return out

    def _out(self, data):
        """What goes on the socket for these MQTT bytes."""
        return data if self.frames is None else wsclient.frame(wsclient.BINARY, data)

    def feed(self, data):
        now = time.monotonic()
        self.buf += data
        pkts, used = _split(self.buf)
        del self.buf[:used]
        out = []
        v5 = self.version == 5
        for h, body in pkts:
            t = h >> 4
            if t == m.PUBLISH:
                qos = (h >> 1) & 3
                tl = struct.unpack_from(">H", body, 0)[0]
                pos = 2 + tl
                pid = None
                if qos:
                    pid = struct.unpack_from(">H", body, pos)[0]
                    pos += 2
                if v5:
                    plen, pos = m.decode_varint(body, pos)
                    pos += plen
                payload = body[pos:]
                if qos == 2:
                    out.append(m.pubrec(pid))
                    if pid in self.qos2_pending:
                        continue  # a resend of one we have (method B)
                    self.qos2_pending.add(pid)
                elif qos == 1:
                    out.append(m.puback(pid))
                self._record(payload, qos, now)
            elif t == m.PUBREL:
                pid = struct.unpack_from(">H", body, 0)[0]
                self.qos2_pending.discard(pid)
                out.append(m.pubcomp(pid))
            elif t == m.CONNACK:
                self.connack_at = now
                self.session_present = bool(body[0] & 1)
                if body[1] >= 0x80 or (not v5 and body[1]):
                    raise AssertionError("%s: CONNACK refused: 0x%02x" % (self.cid, body[1]))
            elif t == m.SUBACK:
                self.subacked = True
            elif t == m.DISCONNECT:
                self.disconnect_reason = body[0] if body else 0
        if out:
            data = self._out(b"".join(out))
            self.sock.sendall(data) if self.sock.getblocking() else self._send(data)

    def _send(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except _NOT_NOW:
                if time.monotonic() > deadline:
                    raise AssertionError("%s: cannot send acknowledgements" % self.cid)
                time.sleep(0.0005)

    def _record(self, payload, qos, now):
        self.count += 1
        self.by_qos[qos] += 1
        if self.first_at is None:
            self.first_at = now
        elif now - self.last_at > self.max_gap:
            self.max_gap = now - self.last_at
            self.max_gap_at = self.count
        self.last_at = now
        try:
            pub, seq, _ = payload.split(b":", 2)
            key = (pub, int(seq))
        except ValueError:
            return
        if key in self.first_seen:
            self.dups += 1
            if qos == 2:
                self.dups_qos2 += 1
            return
        self.first_seen[key] = True
        self.unique_by_pub[pub] = self.unique_by_pub.get(pub, 0) + 1
        if self.last_seq.get(pub, -1) > key[1]:
            self.order_errors += 1
        self.last_seq[pub] = max(self.last_seq.get(pub, -1), key[1])

    def unique(self, pub=None):
        if pub is None:
            return len(self.first_seen)
        # Counted as they come: run() asks after every read, and a scan of
        # first_seen made a drain of n messages cost n squared.
        return self.unique_by_pub.get(pub, 0)

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def run(subs, until, timeout, chunk=1 << 20, pause=0.0):
    """Drives the reading subscribers until until() is true or `timeout`
    seconds pass; returns True if until() became true. `chunk` and `pause`
    (seconds after each read) make a slower reader."""
    sel = selectors.DefaultSelector()
    for s in subs:
        if s.read and s.sock is not None:
            sel.register(s.sock, selectors.EVENT_READ, s)
    deadline = time.monotonic() + timeout
    # until() is asked after every read while it is cheap; one that scans
    # what was received (a union of sets, say) is asked at most once per
    # ten times its own cost, so that a drain of n messages does not cost
    # n squared.
    ask_at = 0.0
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= ask_at:
                if until():
                    return True
                ask_at = now + 10 * (time.monotonic() - now)
            for key, _ in sel.select(0.05):
                s = key.data
                if not s.take(chunk):
                    sel.unregister(key.fileobj)
                if pause:
                    time.sleep(pause)
        return until()
    finally:
        sel.close()


class Pub:
    """A publisher that pipelines up to `window` unacknowledged messages and
    resends unacknowledged ones (DUP, same id) after a reconnect."""

    def __init__(self, host, port, cid, version=5, clean=True, expiry=None, name=None):
        self.host, self.port, self.cid, self.version = host, port, cid, version
        self.clean, self.expiry = clean, expiry
        self.name = (name or cid).encode()
        self.sock = None
        self.next_seq = 0
        self.next_pid = 0
        self.unacked = {}      # pid -> packet bytes (without DUP)
        self.released = set()  # QoS 2 ids with PUBREC, waiting for PUBCOMP
        self.acked = 0
        self.buf = bytearray()
        self.receive_max = 65535

    def connect(self):
        s = socket.create_connection((self.host, self.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        props = {"session_expiry_interval": self.expiry} if (self.version == 5 and self.expiry) else None
        s.sendall(m.connect(self.cid, self.version, clean=self.clean, keepalive=600, props=props))
        self.sock = s
        self.buf = bytearray()
        pkts = []
        while not pkts:
            data = s.recv(65536)
            if not data:
                raise AssertionError("%s: closed before CONNACK" % self.cid)
            self.buf += data
            pkts, used = _split(self.buf)
            del self.buf[:used]
        assert pkts[0][0] >> 4 == m.CONNACK
        body = pkts[0][1]
        if self.version == 5 and len(body) > 2:
            # The broker's Receive Maximum bounds our unacknowledged QoS 1/2.
            props, _ = m.decode_props(body, 2)
            self.receive_max = props.get("receive_maximum", 65535)
        # [MQTT-4.4.0-1] resend what was not acknowledged, in order, with DUP.
        out = []
        for pid, pkt in self.unacked.items():
            if pid in self.released:
                out.append(m.pubrel(pid, v5=self.version == 5))
            else:
                out.append(bytes([pkt[0] | 0x08]) + pkt[1:])
        if out:
            s.sendall(b"".join(out))
        return self

    def _pid(self):
        while True:
            self.next_pid = self.next_pid % 65535 + 1
            if self.next_pid not in self.unacked:
                return self.next_pid

    def publish(self, topic, n, qos=1, window=1000, payload_size=16, timeout=60, qos_of=None, topic_of=None):
        """Publishes n numbered messages; returns when all are acknowledged.
        qos_of / topic_of: the QoS / topic of message number seq instead."""
        target = self.next_seq + n
        deadline = time.monotonic() + timeout
        v5 = self.version == 5
        while self.next_seq < target or self.unacked:
            if time.monotonic() > deadline:
                raise AssertionError("%s: %d messages not acknowledged in time" % (self.cid, len(self.unacked)))
            out = []
            while self.next_seq < target and len(self.unacked) < min(window, self.receive_max):
                q = qos_of(self.next_seq) if qos_of else qos
                body = b"%s:%d:" % (self.name, self.next_seq)
                body += b"x" * max(0, payload_size - len(body))
                t = topic_of(self.next_seq) if topic_of else topic
                if q:
                    pid = self._pid()
                    pkt = m.publish(t, body, q, mid=pid, v5=v5)
                    self.unacked[pid] = pkt
                else:
                    pkt = m.publish(t, body, 0, v5=v5)
                out.append(pkt)
                self.next_seq += 1
            if out:
                self.sock.sendall(b"".join(out))
            if not self.unacked:
                continue
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("%s: connection closed" % self.cid)
            self.feed(data)

    def feed(self, data):
        self.buf += data
        pkts, used = _split(self.buf)
        del self.buf[:used]
        out = []
        for h, body in pkts:
            t = h >> 4
            if t in (m.PUBACK, m.PUBCOMP):
                pid = struct.unpack_from(">H", body, 0)[0]
                if self.unacked.pop(pid, None) is not None:
                    self.acked += 1
                self.released.discard(pid)
            elif t == m.PUBREC:
                pid = struct.unpack_from(">H", body, 0)[0]
                self.released.add(pid)
                out.append(m.pubrel(pid, v5=self.version == 5))
        if out:
            self.sock.sendall(b"".join(out))

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


class Bystander(threading.Thread):
    """A client that publishes QoS 0 to itself every `interval` seconds and
    records the round trips: the broker's responsiveness to an unrelated
    client while others load it."""

    def __init__(self, host, port, interval=0.05, cid="bystander"):
        super().__init__(daemon=True)
        self.c = m.RawClient(host, port, version=4, timeout=30)
        self.c.connect(cid, clean=True)
        self.c.subscribe([("bystander/" + cid, 0)])
        self.topic = "bystander/" + cid
        self.interval = interval
        self.rtts = []
        self.stop_flag = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_flag.is_set():
                t = time.monotonic()
                self.c.send(m.publish(self.topic, b"ping", 0))
                p = self.c.recv(timeout=30)
                if p is None or p.type != m.PUBLISH:
                    self.error = "no echo: %r" % (p,)
                    return
                self.rtts.append(time.monotonic() - t)
                self.stop_flag.wait(self.interval)
        except Exception as e:  # reported by stop()
            self.error = repr(e)

    def stop(self):
        self.stop_flag.set()
        self.join(40)
        self.c.close()
        r = sorted(self.rtts)
        if not r:
            return {"n": 0, "p50": 0, "p99": 0, "max": 0}
        return {"n": len(r), "p50": r[len(r) // 2], "p99": r[min(len(r) - 1, int(len(r) * 0.99))],
                "max": r[-1]}
