#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses into tests/fuzz/corpus/.

    python3 tests/fuzz/make_seeds.py            # (re)write every corpus
    python3 tests/fuzz/make_seeds.py decoder    # only the named ones

Seeds are small, valid (and a few deliberately broken) inputs in the format
each harness expects; see the comment at the top of each fuzz_*.cpp.
Existing files with the same names are overwritten; other files (inputs
merged in by `MERGE=1 bench/fuzz.sh`) are left alone.
"""
import base64
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


# --- MQTT primitives (§1.5) -------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return u16(len(b)) + b


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


# MQTT 5 properties: (id, kind, value); kind: b=byte, h=u16, i=u32, v=varint,
# s=string, p=string pair.
def props(*items):
    body = bytearray()
    for pid, kind, value in items:
        body += varint(pid)
        if kind == "b":
            body.append(value)
        elif kind == "h":
            body += u16(value)
        elif kind == "i":
            body += u32(value)
        elif kind == "v":
            body += varint(value)
        elif kind == "s":
            body += s(value)
        elif kind == "p":
            body += s(value[0]) + s(value[1])
    return varint(len(body)) + bytes(body)


NOPROPS = b"\x00"


def connect(level, client_id, clean=True, keepalive=60, will=None, user=None,
            password=None, cprops=NOPROPS, wprops=NOPROPS):
    name = "MQIsdp" if level == 3 else "MQTT"
    flags = 0x02 if clean else 0
    if will:
        topic, payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
    if password is not None:
        flags |= 0x40
    if user is not None:
        flags |= 0x80
    body = s(name) + bytes([level, flags]) + u16(keepalive)
    if level == 5:
        body += cprops
    body += s(client_id)
    if will:
        if level == 5:
            body += wprops
        body += s(will[0]) + s(will[1])
    if user is not None:
        body += s(user)
    if password is not None:
        body += s(password)
    return packet(1, 0, body)


def publish(level, topic, payload, qos=0, pid=1, retain=False, dup=False, pprops=NOPROPS):
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = s(topic) + (u16(pid) if qos else b"")
    if level == 5:
        body += pprops
    return packet(3, flags, body + payload)


def ack(ptype, pid, level=4, reason=None, aprops=None):
    body = u16(pid)
    if level == 5 and reason is not None:
        body += bytes([reason])
        if aprops is not None:
            body += aprops
    return packet(ptype, 2 if ptype == 6 else 0, body)


def subscribe(level, pid, topics, sprops=NOPROPS):
    body = u16(pid) + (sprops if level == 5 else b"")
    for f, opts in topics:
        body += s(f) + bytes([opts])
    return packet(8, 2, body)


def unsubscribe(level, pid, filters, uprops=NOPROPS):
    body = u16(pid) + (uprops if level == 5 else b"")
    for f in filters:
        body += s(f)
    return packet(10, 2, body)


def decoder_seeds():
    # First byte of every seed: bits 0-1 protocol level (0: 3.1, 1: 3.1.1,
    # 2: 5), bits 2-3 maximum packet size (0: 1 MiB), bits 4-7 chunk sizes.
    V31, V311, V5 = 0x30, 0x31, 0x32
    out = {}
    c311 = connect(4, "dev-1", will=("will/t", b"gone", 1, True), user="alice", password=b"secret")
    c5 = connect(5, "dev-5", keepalive=30,
                 cprops=props((0x11, "i", 3600), (0x21, "h", 20), (0x27, "i", 65536),
                              (0x22, "h", 10), (0x19, "b", 1), (0x17, "b", 0),
                              (0x26, "p", ("k", "v"))),
                 will=("will/5", b"bye", 2, False),
                 wprops=props((0x18, "i", 5), (0x01, "b", 1), (0x02, "i", 60),
                              (0x03, "s", "text/plain"), (0x08, "s", "resp/t"),
                              (0x09, "s", b"\x01\x02")),
                 user="bob", password=b"pw")
    out["connect_v311"] = bytes([V311]) + c311
    out["connect_v311_min"] = bytes([V311]) + connect(4, "")
    out["connect_v31"] = bytes([V31]) + connect(3, "old-client", user="u")
    out["connect_v5"] = bytes([V5]) + c5
    out["connect_v5_min"] = bytes([V5]) + connect(5, "c")
    out["connect_bad_level"] = bytes([V311]) + connect(4, "x")[:8] + b"\x07" + connect(4, "x")[9:]
    out["publish_v311"] = bytes([V311]) + c311 + publish(4, "a/b", b"hello") + \
        publish(4, "a/c", b"q1", qos=1, pid=7) + publish(4, "a/d", b"q2", qos=2, pid=8, retain=True)
    out["publish_v5"] = bytes([V5]) + c5 + publish(
        5, "sensors/1/temp", b"21.5", qos=1, pid=3,
        pprops=props((0x01, "b", 1), (0x02, "i", 10), (0x23, "h", 1), (0x08, "s", "r/1"),
                     (0x09, "s", b"id"), (0x03, "s", "json"), (0x26, "p", ("a", "b")))) + \
        publish(5, "", b"alias", qos=0, pprops=props((0x23, "h", 1)))
    out["acks_v311"] = bytes([V311]) + ack(4, 1) + ack(5, 2) + ack(6, 2) + ack(7, 2)
    out["acks_v5"] = bytes([V5]) + ack(4, 1, 5, 0x10) + ack(5, 2, 5, 0x00, props((0x1F, "s", "ok"))) + \
        ack(6, 2, 5, 0x92, NOPROPS) + ack(7, 2, 5)
    out["subscribe_v311"] = bytes([V311]) + subscribe(4, 10, [("a/+/c", 1), ("#", 0), ("$share/g/x/#", 2)])
    out["subscribe_v5"] = bytes([V5]) + subscribe(
        5, 11, [("a/#", 0x01 | 0x04), ("$share/grp/b/+", 0x02 | 0x20), ("c", 0x08 | 0x10)],
        props((0x0B, "v", 300), (0x26, "p", ("x", "y"))))
    out["unsubscribe_v311"] = bytes([V311]) + unsubscribe(4, 12, ["a/+/c", "#"])
    out["unsubscribe_v5"] = bytes([V5]) + unsubscribe(5, 13, ["a/#", "$share/grp/b/+"],
                                                      props((0x26, "p", ("k", "v"))))
    out["ping_disconnect_v311"] = bytes([V311]) + packet(12, 0, b"") + packet(14, 0, b"")
    out["disconnect_v5"] = bytes([V5]) + packet(14, 0, bytes([0x04]) + props(
        (0x11, "i", 0), (0x1F, "s", "bye"), (0x1C, "s", "other:1883")))
    out["auth_v5"] = bytes([V5]) + packet(15, 0, bytes([0x18]) + props(
        (0x15, "s", "SCRAM"), (0x16, "s", b"\x00\x01"))) + packet(15, 0, b"")
    out["connack_v311"] = bytes([V311]) + packet(2, 0, b"\x01\x00") + packet(2, 0, b"\x00\x05")
    out["connack_v5"] = bytes([V5]) + packet(2, 0, b"\x00\x00" + props(
        (0x24, "b", 1), (0x25, "b", 1), (0x27, "i", 1048576), (0x12, "s", "auto-1"),
        (0x13, "h", 30), (0x28, "b", 1), (0x29, "b", 0), (0x2A, "b", 1), (0x22, "h", 10),
        (0x21, "h", 100), (0x1A, "s", "info")))
    out["suback_v5"] = bytes([V5]) + packet(9, 0, u16(10) + NOPROPS + b"\x00\x01\x02\x80\x87") + \
        packet(11, 0, u16(12) + NOPROPS + b"\x00\x11")
    out["suback_v311"] = bytes([V311]) + packet(9, 0, u16(10) + b"\x00\x80") + packet(11, 0, u16(12))
    # A full session in one stream, fed in small chunks.
    out["session_v311_chunked"] = bytes([V311 | 0x10]) + c311 + subscribe(4, 1, [("t/#", 1)]) + \
        publish(4, "t/1", b"x" * 200, qos=1, pid=2) + ack(4, 5) + packet(12, 0, b"") + packet(14, 0, b"")
    out["session_v5_chunked"] = bytes([V5 | 0xF0]) + c5 + subscribe(5, 1, [("t/#", 2)]) + \
        publish(5, "t/1", b"y" * 300, qos=2, pid=2) + ack(6, 2, 5) + packet(14, 0, b"")
    # Framing edge cases.
    out["frame_rl_5_bytes"] = bytes([V311]) + b"\x30\xff\xff\xff\xff\x7f"
    out["frame_too_large"] = bytes([V5 | 0x0C]) + publish(5, "big", b"z" * 40)  # max 16 bytes
    out["frame_partial"] = bytes([V311]) + publish(4, "a", b"12345")[:-2]
    out["frame_long_rl"] = bytes([V311]) + b"\x30\x80\x80\x01" + b"\x00"
    return out


def properties_seeds():
    out = {}
    out["empty"] = NOPROPS
    out["connect"] = props((0x11, "i", 3600), (0x21, "h", 20), (0x27, "i", 65536), (0x22, "h", 10),
                           (0x19, "b", 1), (0x17, "b", 0), (0x15, "s", "m"), (0x16, "s", b"d"),
                           (0x26, "p", ("k", "v")))
    out["will"] = props((0x18, "i", 5), (0x01, "b", 1), (0x02, "i", 60), (0x03, "s", "text/plain"),
                        (0x08, "s", "resp/t"), (0x09, "s", b"\x00\xff"))
    out["connack"] = props((0x24, "b", 1), (0x25, "b", 0), (0x27, "i", 1048576), (0x12, "s", "auto"),
                           (0x13, "h", 30), (0x28, "b", 1), (0x29, "b", 1), (0x2A, "b", 0),
                           (0x1A, "s", "info"), (0x1C, "s", "srv"), (0x1F, "s", "why"))
    out["publish"] = props((0x01, "b", 0), (0x23, "h", 3), (0x0B, "v", 1), (0x0B, "v", 268435455),
                           (0x26, "p", ("a", "b")), (0x26, "p", ("a", "c")))
    out["subscribe"] = props((0x0B, "v", 16384), (0x26, "p", ("", "")))
    out["ack"] = props((0x1F, "s", "reason"), (0x26, "p", ("x", "y")))
    out["disconnect"] = props((0x11, "i", 0), (0x1C, "s", "other"), (0x1F, "s", "bye"))
    out["auth"] = props((0x15, "s", "SCRAM-SHA-1"), (0x16, "s", b"client-first"), (0x1F, "s", "r"))
    out["utf8"] = props((0x03, "s", "caf\u00e9 \u2603 \U0001F600"))
    out["dup_protocol_error"] = props((0x11, "i", 1), (0x11, "i", 2))
    out["receive_max_zero"] = props((0x21, "h", 0))
    out["bad_utf8"] = b"\x05\x03\x00\x02\xc0\xaf"
    out["truncated"] = b"\x0a\x26\x00\x05ab"
    out["nonminimal_varint"] = b"\x83\x80\x00" + b"\x0b\x81\x00"
    return out


def topic_seeds():
    out = {}
    out["basic"] = b"a/b/c\na/+/c\na/#\n#\n+\n\na/b/c\na\na/b\n"
    out["dollar"] = b"#\n+/#\n$SYS/#\n$SYS/+/x\n\n$SYS/broker/x\n$SYS\n$other\n"
    out["shared"] = b"$share/g1/a/+\n$share/g1/a/+\n$share/g2/#\n$share//x\n$share/g+/x\n$share/g\n\na/b\nb\n"
    out["empty_levels"] = b"/\n//\n+/+\n/#\na//b\n+//+\n\n/\n//\na//b\n/a\n"
    out["invalid"] = b"a/#/b\na+/b\n#a\nsport/tennis#\n+a\n\na/+\n#\n"
    out["same_lines"] = b"sport/tennis/player1\nsport/+/player1\nsport/#\nsport/tennis/+\n"
    out["overlap"] = b"a/b\na/+\n+/b\n+/+\na/b/#\na/+/#\n#\n\na/b\na/b/c\na\n"
    out["utf8"] = "caf\u00e9/\u2603\n+/\u2603\n\ncaf\u00e9/\u2603\n".encode()
    return out


def records_seeds():
    # persistence/records.cpp: little-endian fixed integers, strings as a u32
    # length and bytes, a leading record version of 1 (queue entries: none).
    def st(b):
        b = b.encode() if isinstance(b, str) else b
        return struct.pack("<I", len(b)) + b

    def message(qos, retain, expires, topic, origin, pr, payload):
        return bytes([1, qos, 1 if retain else 0]) + struct.pack("<q", expires) + \
            st(topic) + st(origin) + st(pr) + st(payload)

    def session(version, expiry, expires, will_at, user, will):
        b = bytes([1, version]) + struct.pack("<Iqq", expiry, expires, will_at)
        b += bytes([1 if user is not None else 0]) + st(user or "")
        if will is None:
            return b + b"\x00"
        qos, retain, topic, pr, payload = will
        return b + bytes([1, qos, 1 if retain else 0]) + st(topic) + st(pr) + st(payload)

    def subscription(qos, no_local, rap, rh, sub_id, group, flt):
        return bytes([1, qos, (1 if no_local else 0) | (2 if rap else 0), rh]) + \
            struct.pack("<I", sub_id) + st(group) + st(flt)

    def queue(msg_id, qos, retain, released, pid, nbytes, ids):
        return struct.pack("<QBBHIB", msg_id, qos, (1 if retain else 0) | (2 if released else 0),
                           pid, nbytes, len(ids)) + b"".join(struct.pack("<I", i) for i in ids)

    out = {}
    out["message_qos0"] = message(0, False, 0, "a/b", "pub-1", b"", b"hello")
    out["message_v5"] = message(2, True, 1700000000000, "sensors/t", "dev", props((0x02, "i", 60)), b"\x00" * 16)
    out["session_plain"] = session(4, 0, 0, 0, None, None)
    out["session_user_will"] = session(5, 3600, 1700000000000, 1700000005000, "alice",
                                       (1, True, "will/t", props((0x18, "i", 5)), b"gone"))
    out["session_v31"] = session(3, 60, 0, 0, "", (0, False, "w", b"", b""))
    out["subscription_plain"] = subscription(1, False, False, 0, 0, "", "a/+/c")
    out["subscription_shared"] = subscription(2, True, True, 2, 268435455, "grp", "x/#")
    out["queue_qos1"] = queue(42, 1, False, False, 0, 5, [])
    out["queue_qos2_ids"] = queue(7, 2, True, True, 65535, 1 << 20, [1, 2, 300])
    return out


def config_seeds():
    out = {}
    with open(os.path.join(ROOT, "config.yaml"), "rb") as f:
        out["config_yaml"] = f.read()
    out["minimal"] = b"log_level: debug\n"
    out["empty"] = b""
    out["listeners"] = b"""listeners:
  - address: 127.0.0.1
    port: 1883
  - address: "::"
    port: 1884
    allow_anonymous: false
  - address: 0.0.0.0
    port: 8883
    tls:
      cert_file: /tmp/c.pem
      key_file: /tmp/k.pem
      ca_file: /tmp/ca.pem
      require_certificate: true
      use_identity_as_username: true
      min_version: "1.3"
      handshake_timeout_ms: 5000
"""
    out["limits"] = b"""limits:
  max_packet_size: 16
  max_inflight: 65535
  max_queued_messages: 0
  max_connections: 4294967295
  max_topic_levels: 1
  max_keepalive: 0
  max_session_expiry: 0
  max_queued_bytes: 1125899906842624
"""
    out["persistence_shared"] = b"""persistence:
  enabled: false
  dir: /var/lib/petrel
  sync: periodic
  sync_interval_ms: 50
  max_size_mb: 1
  on_corrupt: move_aside
shared:
  strategy: sticky
  max_queued_messages: 10
  groups:
    g1: hash_clientid
    g2: least_inflight
mqtt:
  max_qos: 1
  retain_available: false
  topic_alias_maximum: 0
  outbound_topic_aliases: 16
  allow_zero_length_clientid: false
  sys_interval: 0
auth:
  password_file: /etc/petrel/passwd
  acl_file: /etc/petrel/acl
"""
    out["errors"] = b"limits:\n  max_pakcet_size: 10\n  max_inflight: 0\nlisteners: {}\n"
    out["bad_types"] = b"log_level: [a, b]\nlimits: 3\npersistence:\n  enabled: maybe\n"
    out["yaml_syntax"] = b"listeners:\n  - address: [\n"
    out["anchors"] = b"base: &b {port: 1}\nlisteners:\n  - *b\n  - {address: x, port: 2, tls: {}}\n"
    out["flow_nested"] = b"{limits: {max_inflight: 10}, mqtt: {max_qos: 3}, shared: {groups: [x]}}\n"
    return out


def _sha512_hash(password, salt):
    digest = hashlib.sha512(password + salt).digest()
    return "$6$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def _pbkdf2_hash(password, salt, iterations):
    digest = hashlib.pbkdf2_hmac("sha512", password, salt, iterations, 64)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def password_seeds():
    salt = b"petrel-salt!"  # 12 bytes, like mosquitto_passwd
    h6 = _sha512_hash(b"secret", salt)
    h7 = _pbkdf2_hash(b"secret", salt, 10)
    h7_101 = _pbkdf2_hash(b"hunter2", b"another-salt", 101)
    out = {}
    out["one_sha512"] = ("alice:%s\n" % h6).encode()
    out["one_pbkdf2"] = ("bob:%s\n" % h7).encode()
    out["mosquitto_101"] = ("carol:%s\n" % h7_101).encode()
    out["mixed"] = ("# users\n\nalice:%s\r\n  bob : %s  \nalice:%s\nno-colon\nplain:text\n:%s\n"
                    % (h6, h7, h7, h6)).encode()
    out["bad_hashes"] = ("a:$6$c2FsdA==$AAAA\nb:$7$0$%s\nc:$7$abc$x$y\nd:$5$x$y\ne:$7$10$!!$%s\nf:$6$$\n"
                         % (h7.split("$", 3)[3], h6.split("$")[3])).encode()
    return out


def acl_seeds():
    out = {}
    out["mosquitto_style"] = b"""# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write sensors/+/temp
topic deny sensors/1/temp

user bob
topic sensors/#

pattern read devices/%c/#
pattern write devices/%u/cmd
pattern deny $SYS/#
"""
    out["patterns_only"] = b"pattern readwrite %u/%c/#\npattern read +/status\npattern write %c\n"
    out["dollar"] = b"topic read $SYS/#\ntopic read #\ntopic deny +/private\n"
    out["errors"] = b"topic\n"
    out["bad_keyword"] = b"user x\nsubscribe a/b\n"
    out["bad_access"] = b"topic readonly a/b\n"
    out["bad_filter"] = b"topic read a/#/b\n"
    out["spacing"] = b"  user\t carol \r\n\ttopic   write   a b/c  \r\n#c\n\n"
    return out


def _ws_frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = b"\x37\xfa\x21\x3d"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def websocket_seeds():
    # The first byte: bit 0 = the input starts with the request head; the
    # other bits choose the size of the reads (see fuzz_websocket.cpp).
    head = (b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
    conn = connect(4, "ws-client")
    out = {}
    out["upgrade_and_connect"] = b"\x01" + head + _ws_frame(2, conn)
    out["upgrade_in_small_reads"] = b"\x07" + head + _ws_frame(2, conn)
    out["bad_head"] = b"\x01GET /other HTTP/1.1\r\nHost: h\r\n\r\n"
    out["no_subprotocol"] = b"\x01" + head.replace(b"Sec-WebSocket-Protocol: mqtt\r\n", b"")
    out["fragments_and_ping"] = b"\x00" + _ws_frame(2, conn[:5], fin=False) + _ws_frame(9, b"ping") + \
        _ws_frame(0, conn[5:], fin=False) + _ws_frame(0, b"", fin=True) + _ws_frame(10, b"pong")
    out["several_packets"] = b"\x10" + _ws_frame(2, conn + packet(12, 0, b"") + packet(14, 0, b""))
    out["long_frame"] = b"\x20" + _ws_frame(2, b"x" * 300) + _ws_frame(2, b"y" * 1000)
    out["close_with_reason"] = b"\x00" + _ws_frame(8, b"\x03\xe8bye")
    out["close_bad_code"] = b"\x00" + _ws_frame(8, b"\x03\xed")
    out["unmasked"] = b"\x00" + _ws_frame(2, b"abc", mask=False)
    out["text"] = b"\x00" + _ws_frame(1, b"hello")
    out["rsv"] = b"\x00" + _ws_frame(2, b"abc", rsv=0x40)
    out["oversize"] = b"\x00" + _ws_frame(2, b"z" * 1100)
    return out


GENERATORS = {
    "decoder": decoder_seeds,
    "properties": properties_seeds,
    "topic": topic_seeds,
    "records": records_seeds,
    "config": config_seeds,
    "acl": acl_seeds,
    "password": password_seeds,
    "websocket": websocket_seeds,
}


def main(argv):
    names = argv[1:] or list(GENERATORS)
    for name in names:
        d = os.path.join(CORPUS, name)
        os.makedirs(d, exist_ok=True)
        seeds = GENERATORS[name]()
        for fname, data in seeds.items():
            with open(os.path.join(d, fname), "wb") as f:
                f.write(data)
        print("%-10s %3d seeds -> %s" % (name, len(seeds), os.path.relpath(d, ROOT)))


if __name__ == "__main__":
    main(sys.argv)
