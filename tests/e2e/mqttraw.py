"""Minimal raw MQTT client for byte-level end-to-end tests.

Builds packets for MQTT 3.1 (protocol level 3), 3.1.1 (level 4) and 5.0
(level 5), parses packets read back from a socket incrementally, and allows
arbitrary bytes to be written for malformed-input tests. Every read is
bounded by a timeout; nothing here blocks forever.
"""

import socket
import struct
import time

# Packet types
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

TYPE_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH",
    PUBACK: "PUBACK", PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# Property identifiers (MQTT 5.0, section 2.2.2.2): id -> (name, kind)
BYTE, U16, U32, VARINT, STR, BIN, PAIR = "byte", "u16", "u32", "varint", "str", "bin", "pair"
PROPS = {
    0x01: ("payload_format_indicator", BYTE),
    0x02: ("message_expiry_interval", U32),
    0x03: ("content_type", STR),
    0x08: ("response_topic", STR),
    0x09: ("correlation_data", BIN),
    0x0B: ("subscription_identifier", VARINT),
    0x11: ("session_expiry_interval", U32),
    0x12: ("assigned_client_identifier", STR),
    0x13: ("server_keep_alive", U16),
    0x15: ("authentication_method", STR),
    0x16: ("authentication_data", BIN),
    0x17: ("request_problem_information", BYTE),
    0x18: ("will_delay_interval", U32),
    0x19: ("request_response_information", BYTE),
    0x1A: ("response_information", STR),
    0x1C: ("server_reference", STR),
    0x1F: ("reason_string", STR),
    0x21: ("receive_maximum", U16),
    0x22: ("topic_alias_maximum", U16),
    0x23: ("topic_alias", U16),
    0x24: ("maximum_qos", BYTE),
    0x25: ("retain_available", BYTE),
    0x26: ("user_property", PAIR),
    0x27: ("maximum_packet_size", U32),
    0x28: ("wildcard_subscription_available", BYTE),
    0x29: ("subscription_identifier_available", BYTE),
    0x2A: ("shared_subscription_available", BYTE),
}
PROP_IDS = {name: pid for pid, (name, _) in PROPS.items()}
# Properties that may legitimately appear more than once; parsed into lists.
MULTI = {"user_property", "subscription_identifier"}


class MQTTRawError(Exception):
    pass


class ConnectionClosed(MQTTRawError):
    pass


class ReadTimeout(MQTTRawError):
    pass


# --------------------------------------------------------------------------
# Encoding helpers

def varint(n):
    if n < 0 or n > 268435455:
        raise ValueError("varint out of range: %d" % n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def mqtt_bin(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return u16(len(b)) + b


mqtt_str = mqtt_bin


def _encode_prop_value(kind, value):
    if kind == BYTE:
        return bytes([value])
    if kind == U16:
        return u16(value)
    if kind == U32:
        return u32(value)
    if kind == VARINT:
        return varint(value)
    if kind in (STR, BIN):
        return mqtt_bin(value)
    if kind == PAIR:
        k, v = value
        return mqtt_str(k) + mqtt_str(v)
    raise ValueError(kind)


def encode_props(props):
    """Encode properties (with the leading length).

    `props` is a dict name -> value (lists for repeated properties) or a list
    of (name, value) tuples, which keeps order and allows duplicates of any
    property for negative tests. `raw` bytes may be given instead.
    """
    if props is None:
        return varint(0)
    if isinstance(props, (bytes, bytearray)):
        return varint(len(props)) + bytes(props)
    items = []
    if isinstance(props, dict):
        for name, value in props.items():
            if name in MULTI and isinstance(value, (list, tuple)) and \
                    (name != "user_property" or (value and isinstance(value[0], (list, tuple)))):
                for v in value:
                    items.append((name, v))
            else:
                items.append((name, value))
    else:
        items = list(props)
    body = bytearray()
    for name, value in items:
        pid = PROP_IDS[name] if isinstance(name, str) else name
        kind = PROPS[pid][1]
        body += varint(pid) + _encode_prop_value(kind, value)
    return varint(len(body)) + bytes(body)


def fixed(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + bytes(body)


# --------------------------------------------------------------------------
# Packet builders

def connect(client_id="", level=4, clean=True, keepalive=60, will=None,
            username=None, password=None, props=None, reserved=False):
    """Build CONNECT. `will` is a dict: topic, payload, qos, retain, props."""
    if level == 3:
        proto = mqtt_str("MQIsdp")
    else:
        proto = mqtt_str("MQTT")
    flags = 0
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | ((will.get("qos", 0) & 3) << 3)
        if will.get("retain"):
            flags |= 0x20
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    if reserved:
        flags |= 0x01
    body = proto + bytes([level, flags]) + u16(keepalive)
    if level == 5:
        body += encode_props(props)
    body += mqtt_str(client_id)
    if will is not None:
        if level == 5:
            body += encode_props(will.get("props"))
        body += mqtt_str(will["topic"]) + mqtt_bin(will.get("payload", b""))
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_bin(password)
    return fixed(CONNECT, 0, body)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, mid=None,
            props=None, v5=False):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    flags = (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = mqtt_str(topic)
    if qos > 0:
        body += u16(mid if mid is not None else 1)
    if v5:
        body += encode_props(props)
    body += payload
    return fixed(PUBLISH, flags & 0x0F, body)


def ack(ptype, mid, reason=None, props=None, v5=False):
    """PUBACK / PUBREC / PUBREL / PUBCOMP."""
    flags = 0x02 if ptype == PUBREL else 0
    body = u16(mid)
    if v5 and (reason is not None or props is not None):
        body += bytes([reason or 0])
        if props is not None:
            body += encode_props(props)
    return fixed(ptype, flags, body)


def puback(mid, reason=None, props=None, v5=False):
    return ack(PUBACK, mid, reason, props, v5)


def pubrec(mid, reason=None, props=None, v5=False):
    return ack(PUBREC, mid, reason, props, v5)


def pubrel(mid, reason=None, props=None, v5=False):
    return ack(PUBREL, mid, reason, props, v5)


def pubcomp(mid, reason=None, props=None, v5=False):
    return ack(PUBCOMP, mid, reason, props, v5)


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return (qos & 3) | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | \
        ((retain_handling & 3) << 4)


def subscribe(mid, filters, props=None, v5=False, flags=0x02):
    """`filters`: list of (filter, options byte) or (filter, qos) tuples, or
    plain strings (QoS 0)."""
    body = u16(mid)
    if v5:
        body += encode_props(props)
    for f in filters:
        if isinstance(f, str):
            f = (f, 0)
        body += mqtt_str(f[0]) + bytes([f[1]])
    return fixed(SUBSCRIBE, flags, body)


def unsubscribe(mid, filters, props=None, v5=False):
    body = u16(mid)
    if v5:
        body += encode_props(props)
    for f in filters:
        body += mqtt_str(f)
    return fixed(UNSUBSCRIBE, 0x02, body)


def pingreq():
    return b"\xc0\x00"


def disconnect(reason=None, props=None, v5=False):
    body = b""
    if v5 and (reason is not None or props is not None):
        body += bytes([reason or 0])
        if props is not None:
            body += encode_props(props)
    return fixed(DISCONNECT, 0, body)


def auth(reason=0, props=None):
    return fixed(AUTH, 0, bytes([reason]) + encode_props(props))


# --------------------------------------------------------------------------
# Parsing

class Packet:
    def __init__(self, ptype, flags, body, v5):
        self.type = ptype
        self.flags = flags
        self.body = bytes(body)
        self.v5 = v5
        self.props = {}
        self.reason = None
        self.mid = None
        self.codes = []
        self.topic = None
        self.payload = None
        self.qos = (flags >> 1) & 3
        self.retain = bool(flags & 1)
        self.dup = bool(flags & 8)
        self.session_present = None
        self._parse()

    @property
    def name(self):
        return TYPE_NAMES.get(self.type, str(self.type))

    def __repr__(self):
        fields = ["%s" % self.name]
        for attr in ("topic", "payload", "qos", "retain", "dup", "mid", "reason",
                     "codes", "session_present"):
            v = getattr(self, attr)
            if v not in (None, [], False) and not (attr == "qos" and self.type != PUBLISH):
                fields.append("%s=%r" % (attr, v))
        if self.props:
            fields.append("props=%r" % (self.props,))
        return "<" + " ".join(fields) + ">"

    def _parse(self):
        b = self.body
        t = self.type
        if t == CONNACK:
            self.session_present = bool(b[0] & 1) if len(b) > 0 else None
            self.reason = b[1] if len(b) > 1 else None
            if self.v5 and len(b) > 2:
                self.props, _ = decode_props(b, 2)
        elif t == PUBLISH:
            tl = struct.unpack_from("!H", b, 0)[0]
            self.topic = b[2:2 + tl].decode("utf-8", "replace")
            pos = 2 + tl
            if self.qos > 0:
                self.mid = struct.unpack_from("!H", b, pos)[0]
                pos += 2
            if self.v5:
                self.props, pos = decode_props(b, pos)
            self.payload = b[pos:]
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.mid = struct.unpack_from("!H", b, 0)[0]
            self.reason = b[2] if len(b) > 2 else 0
            if len(b) > 3:
                self.props, _ = decode_props(b, 3)
        elif t in (SUBACK, UNSUBACK):
            self.mid = struct.unpack_from("!H", b, 0)[0]
            pos = 2
            if self.v5:
                self.props, pos = decode_props(b, pos)
            self.codes = list(b[pos:])
        elif t in (DISCONNECT, AUTH):
            self.reason = b[0] if len(b) > 0 else 0
            if len(b) > 1:
                self.props, _ = decode_props(b, 1)


def decode_varint(buf, pos):
    mult = 1
    value = 0
    for i in range(4):
        if pos >= len(buf):
            return None, pos
        byte = buf[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos
        mult *= 128
    raise MQTTRawError("malformed variable byte integer")


def decode_props(buf, pos):
    length, pos = decode_varint(buf, pos)
    end = pos + length
    props = {}
    while pos < end:
        pid, pos = decode_varint(buf, pos)
        if pid not in PROPS:
            raise MQTTRawError("unknown property id 0x%02x" % pid)
        name, kind = PROPS[pid]
        if kind == BYTE:
            value = buf[pos]
            pos += 1
        elif kind == U16:
            value = struct.unpack_from("!H", buf, pos)[0]
            pos += 2
        elif kind == U32:
            value = struct.unpack_from("!I", buf, pos)[0]
            pos += 4
        elif kind == VARINT:
            value, pos = decode_varint(buf, pos)
        elif kind in (STR, BIN):
            n = struct.unpack_from("!H", buf, pos)[0]
            value = bytes(buf[pos + 2:pos + 2 + n])
            if kind == STR:
                value = value.decode("utf-8")
            pos += 2 + n
        else:
            n = struct.unpack_from("!H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8")
            pos += 2 + n
            n = struct.unpack_from("!H", buf, pos)[0]
            v = bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8")
            pos += 2 + n
            value = (k, v)
        if name in MULTI:
            props.setdefault(name, []).append(value)
        else:
            props[name] = value
    return props, end


# --------------------------------------------------------------------------
# Client

class RawClient:
    """A socket plus an incremental packet reader.

    `version` is the protocol level (3, 4 or 5); it decides whether
    properties are encoded and expected in packets.
    """

    def __init__(self, host, port, version=4, timeout=5.0, name=""):
        self.host = host
        self.port = port
        self.version = version
        self.timeout = timeout
        self.name = name
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        self.pending = []
        self._next_mid = 0

    @property
    def v5(self):
        return self.version == 5

    def next_mid(self):
        self._next_mid = self._next_mid % 65535 + 1
        return self._next_mid

    # -- raw I/O -----------------------------------------------------------
    def send(self, data):
        self.sock.sendall(bytes(data))

    def send_quiet(self, data):
        """Send, ignoring errors from a peer that already closed."""
        try:
            self.sock.sendall(bytes(data))
            return True
        except OSError:
            return False

    def _try_parse(self):
        if len(self.buf) < 2:
            return None
        length, pos = decode_varint(self.buf, 1)
        if length is None or pos + length > len(self.buf):
            return None
        header = self.buf[0]
        body = self.buf[pos:pos + length]
        del self.buf[:pos + length]
        return Packet(header >> 4, header & 0x0F, body, self.v5)

    def recv(self, timeout=None):
        """Return the next packet; raise ReadTimeout or ConnectionClosed."""
        timeout = self.timeout if timeout is None else timeout
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._try_parse()
            if pkt is not None:
                return pkt
            if self.closed:
                raise ConnectionClosed("connection closed by peer")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout("no packet within %.1fs" % timeout)
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise ReadTimeout("no packet within %.1fs" % timeout)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed = True
                if self._try_parse() is None:
                    raise ConnectionClosed("connection closed by peer")
                continue
            self.buf += data

    def expect(self, ptype, timeout=None):
        pkt = self.recv(timeout)
        if pkt.type != ptype:
            raise AssertionError("expected %s, got %r" % (TYPE_NAMES[ptype], pkt))
        return pkt

    def expect_closed(self, timeout=None):
        """Wait until the peer closes; return the packets received first."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        packets = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("connection not closed within %.1fs (got %r)"
                                     % (timeout, packets))
            try:
                packets.append(self.recv(remaining))
            except ConnectionClosed:
                return packets
            except ReadTimeout:
                raise AssertionError("connection not closed within %.1fs (got %r)"
                                     % (timeout, packets))

    def expect_nothing(self, timeout=0.5):
        """Assert that no packet arrives within `timeout` seconds."""
        try:
            pkt = self.recv(timeout)
        except ReadTimeout:
            return
        raise AssertionError("unexpected packet %r" % (pkt,))

    def collect(self, timeout=0.5, ptype=None):
        """Read packets until `timeout` passes without one."""
        out = []
        while True:
            try:
                pkt = self.recv(timeout)
            except ReadTimeout:
                return out
            if ptype is None or pkt.type == ptype:
                out.append(pkt)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # -- protocol helpers ----------------------------------------------------
    def connect(self, client_id="", clean=True, keepalive=60, will=None,
                username=None, password=None, props=None, expect_reason=0):
        self.send(connect(client_id, self.version, clean, keepalive, will,
                          username, password, props))
        pkt = self.expect(CONNACK)
        if expect_reason is not None:
            assert pkt.reason == expect_reason, "CONNACK %r" % (pkt,)
        return pkt

    def publish(self, topic, payload=b"", qos=0, retain=False, dup=False,
                mid=None, props=None, wait_ack=True):
        """Publish; for QoS>0 complete the handshake when wait_ack is set.
        Returns the packet id used (or None for QoS 0)."""
        if qos > 0 and mid is None:
            mid = self.next_mid()
        self.send(publish(topic, payload, qos, retain, dup, mid, props, self.v5))
        if qos == 1 and wait_ack:
            self.wait_for(PUBACK, mid)
        elif qos == 2 and wait_ack:
            self.wait_for(PUBREC, mid)
            self.send(pubrel(mid))
            self.wait_for(PUBCOMP, mid)
        return mid

    def subscribe(self, filters, props=None, mid=None):
        """Subscribe and return the SUBACK. `filters` as in subscribe()."""
        if isinstance(filters, (str, tuple)):
            filters = [filters]
        mid = mid or self.next_mid()
        self.send(subscribe(mid, filters, props, self.v5))
        pkt = self.expect(SUBACK)
        assert pkt.mid == mid
        return pkt

    def unsubscribe(self, filters, props=None):
        if isinstance(filters, str):
            filters = [filters]
        mid = self.next_mid()
        self.send(unsubscribe(mid, filters, props, self.v5))
        pkt = self.expect(UNSUBACK)
        assert pkt.mid == mid
        return pkt

    def ack(self, pkt):
        """Acknowledge a received PUBLISH (completing QoS 2 fully)."""
        if pkt.qos == 1:
            self.send(puback(pkt.mid))
        elif pkt.qos == 2:
            self.send(pubrec(pkt.mid))
            self.wait_for(PUBREL, pkt.mid)
            self.send(pubcomp(pkt.mid))

    def wait_for(self, ptype, mid=None, timeout=None):
        """Read until a packet of `ptype` (and `mid`) arrives; packets read
        meanwhile are kept and returned by later recv() calls."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        held = []
        try:
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                pkt = self._recv_wire(remaining)
                if pkt.type == ptype and (mid is None or pkt.mid == mid):
                    return pkt
                held.append(pkt)
        finally:
            self.pending.extend(held)

    def _recv_wire(self, timeout):
        saved = self.pending
        self.pending = []
        try:
            return self.recv(timeout)
        finally:
            self.pending = saved + self.pending

    def recv_publish(self, timeout=None, ack=True):
        """Next PUBLISH (skipping nothing else); acknowledged when `ack`."""
        pkt = self.expect(PUBLISH, timeout)
        if ack:
            self.ack(pkt)
        return pkt

    def ping(self, timeout=None):
        self.send(pingreq())
        return self.expect(PINGRESP, timeout)

    def disconnect(self, reason=None, props=None):
        self.send_quiet(disconnect(reason, props, self.v5))
        self.close()

    def go_offline(self, timeout=5.0):
        """Send DISCONNECT and wait until the broker closes the connection,
        which it does once it has taken the DISCONNECT (and so every
        acknowledgement sent before it): from then on the session is
        offline, whichever loop another client is on. (disconnect() closes
        the socket at once; a stop or a publish right after it may come
        before the broker has read it.)"""
        self.send(disconnect(v5=self.v5))
        self.expect_closed(timeout)
        self.close()

    def complete_within_window(self, limit, count, timeout=5.0, batch=1):
        """Complete `count` PUBLISH and PUBREL exchanges as they come, the
        oldest first (`batch` of them at a time), checking what a client with
        Receive Maximum `limit` may rely on [MQTT-3.3.4-9]: never more than
        `limit` of them unacknowledged, and no packet id in use twice.
        Everything the broker sends is read before each completion, so one
        sent too early is seen. Returns (the first window, the PUBLISH
        packets completed in order, the ids of the PUBRELs completed in
        order)."""
        outstanding = {}  # packet id -> the PUBLISH or PUBREL not completed

        def read_what_comes(wait):
            try:
                got = [self.recv(wait)]
            except ReadTimeout:
                return
            while True:
                try:
                    got.append(self.recv(0.05))
                except ReadTimeout:
                    break
            for pkt in got:
                assert pkt.type in (PUBLISH, PUBREL), pkt
                assert pkt.mid not in outstanding, "packet id %d in use twice" % pkt.mid
                outstanding[pkt.mid] = pkt
            assert len(outstanding) <= limit, "%d unacknowledged, Receive Maximum %d" % (len(outstanding), limit)

        read_what_comes(timeout)
        first = list(outstanding.values())
        published, released = [], []
        while outstanding:
            for mid, oldest in list(outstanding.items())[:batch]:
                del outstanding[mid]
                if oldest.type == PUBREL:
                    self.send(pubcomp(mid))
                    released.append(mid)
                elif oldest.qos == 1:
                    self.send(puback(mid))
                    published.append(oldest)
                else:
                    self.send(pubrec(mid))
                    self.wait_for(PUBREL, mid)
                    self.send(pubcomp(mid))
                    published.append(oldest)
            left = count - len(published) - len(released) - len(outstanding)
            read_what_comes(timeout if left > 0 else 0.3)
        return first, published, released
