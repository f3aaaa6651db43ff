#!/usr/bin/env python3
"""kill -9 soak for Petrel: durable QoS 1/2 delivery across many SIGKILLs.

The real broker runs with persistence on, in a temporary work directory, on
a free loopback port. Each cycle restarts it on the same store, lets several
durable publishers stream numbered QoS 1 / QoS 2 messages at full speed
(pipelined, batched writes) while durable receivers connect and disconnect
at random moments, and SIGKILLs the broker at a random moment:

* a durable MQTT 3.1.1 subscriber (clean session 0),
* a durable MQTT 5 subscriber (Clean Start 0, Session Expiry 3600, Receive
  Maximum),
* a shared subscription group `$share/g/k9s/#` of durable members (MQTT
  3.1.1 and 5).

Clients keep MQTT's state across the kills, as the protocol requires:
publishers remember which packet ids were acknowledged (PUBACK, or PUBREC for
QoS 2 = the broker promised to keep the message) and resend the rest after
reconnecting (PUBLISH with DUP and the same packet id, PUBREL for those with
PUBREC but no PUBCOMP), in their original order, before anything new.
Receivers acknowledge QoS 1 and receive QoS 2 by method B (the packet id is
remembered from PUBLISH to PUBREL, so a DUP resend with that id is answered
with PUBREC and not counted again).

After the last cycle the broker is started once more, publishers only finish
what is unacknowledged, every receiver connects and drains. Verdict per
receiver (each subscriber; the share group as a whole): acknowledged but
never received (lost, must be 0), QoS 2 duplicates (must be 0; a QoS 2
message that reached two group members counts), QoS 1 duplicates (allowed,
counted), order of first deliveries per publisher for the plain subscribers
(must increase). Exit status 0 when correct, 1 otherwise.

Everything runs in one thread over non-blocking sockets and a selector.

    /usr/bin/python3 bench/kill9_soak.py --cycles 100 [--seed N]

The logic is importable: run_soak(parse_args([...])) returns the result
dict (tests/e2e/test_17_kill9_soak.py uses it).
"""

import argparse
import json
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import mqttraw as m  # noqa: E402  (packet builders for the rarely sent packets)

HOST = "127.0.0.1"
TOPIC_PREFIX = "k9s"
KEEPALIVE_S = 600
SHARE_FILTER = "$share/g/%s/#" % TOPIC_PREFIX
SUB_FILTER = "%s/#" % TOPIC_PREFIX

DOWN, CONNECTING, UP, CLOSING = range(4)
SENT, REC = 0, 1          # publisher in-flight states: PUBLISH sent / PUBREC received
MAX_DETAILS = 20          # problem details kept per kind


def now():
    return time.monotonic()


def expected_qos(seq):
    # Every publisher alternates: odd numbers QoS 1, even numbers QoS 2.
    return 1 if seq & 1 else 2


def decode_remaining_length(buf, i, n):
    """Variable byte integer at buf[i:]: (value, next index) or (-1, i) if incomplete."""
    mult = 1
    val = 0
    for _ in range(4):
        if i >= n:
            return -1, i
        b = buf[i]
        i += 1
        val += (b & 0x7F) * mult
        if b < 0x80:
            return val, i
        mult <<= 7
    raise ValueError("malformed remaining length")


class SoakError(Exception):
    pass


# --------------------------------------------------------------------------
# The broker process

class BrokerProc:
    def __init__(self, binary, workdir, args):
        self.binary = binary
        self.workdir = workdir
        self.port = self._free_port()
        self.config_path = os.path.join(workdir, "petrel.yaml")
        self.log_path = os.path.join(workdir, "broker.log")
        self.data_dir = os.path.join(workdir, "data")
        self.proc = None
        self._log = None
        self.starts = 0
        self.binaries = []          # (mtime, size) of the binary at each start, distinct
        self.binary_changes = []    # start numbers where a new binary was seen
        with open(self.config_path, "w") as f:
            f.write(
                "log_level: %s\n"
                "listeners:\n"
                "  - address: %s\n"
                "    port: %d\n"
                "limits:\n"
                "  max_queued_messages: 0\n"
                "  max_queued_bytes: 0\n"
                "  max_inflight: %d\n"
                "  max_keepalive: 65535\n"
                "shared:\n"
                "  max_queued_messages: 0\n"
                "persistence:\n"
                "  enabled: true\n"
                "  dir: %s\n"
                "  sync: %s\n"
                "  max_size_mb: %d\n"
                % (args.log_level, HOST, self.port, args.max_inflight, self.data_dir, args.sync,
                   args.store_mb))

    @staticmethod
    def _free_port():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            return s.getsockname()[1]

    def start(self, timeout=30.0):
        # The binary may be replaced by a rebuild while we run: wait for it.
        deadline = now() + max(timeout, 120.0)
        while not os.access(self.binary, os.X_OK):
            if now() > deadline:
                raise SoakError("broker binary not found: %s" % self.binary)
            time.sleep(0.5)
        try:
            st = os.stat(self.binary)
            ident = (st.st_mtime, st.st_size)
        except OSError:
            ident = None
        if ident not in self.binaries:
            self.binaries.append(ident)
            self.binary_changes.append(self.starts + 1)
        self._log = open(self.log_path, "ab")
        self._log.write(b"===== start %d =====\n" % (self.starts + 1))
        self._log.flush()
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     cwd=self.workdir, start_new_session=True)
        self.starts += 1
        deadline = now() + timeout
        while now() < deadline:
            if self.proc.poll() is not None:
                raise SoakError("broker exited with %s during start-up; log: %s\n%s"
                                % (self.proc.returncode, self.log_path, self.log_tail()))
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise SoakError("broker did not accept connections within %.0f s" % timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        """(VmRSS, RssAnon) in KiB. VmRSS includes the store's mapped file pages (RssFile)."""
        vals = {}
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(("VmRSS:", "RssAnon:")):
                        vals[line.split(":")[0]] = int(line.split()[1])
        except (OSError, ValueError, AttributeError):
            pass
        return vals.get("VmRSS", 0), vals.get("RssAnon", 0)

    def cpu_s(self):
        """User + system CPU seconds of the running broker."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return 0.0

    def kill(self):
        """SIGKILL; returns the exit status seen (None if it was not running)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            rc = None
        self._close_log()
        return rc

    def stop(self, timeout=15.0):
        """SIGTERM and wait; the exit status (or 'timeout')."""
        if not self.running():
            self._close_log()
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = "timeout"
        self._close_log()
        return rc

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# --------------------------------------------------------------------------
# Receivers (what is verified) and clients (sockets + MQTT state)

class Receiver:
    """One verdict unit: a plain durable subscriber, or the share group."""

    def __init__(self, soak, name, ordered):
        self.soak = soak
        self.name = name
        self.ordered = ordered
        npub = len(soak.pubs)
        self.counts = [bytearray(1 << 16) for _ in range(npub)]   # [pub][seq] -> deliveries (<=255)
        # Share group: which member got a message first, and in which cycle.
        self.owner = [bytearray(1 << 16) for _ in range(npub)] if not ordered else None
        self.first_cycle = [bytearray(1 << 16) for _ in range(npub)] if not ordered else None
        self.last = [0] * npub          # last first delivery per publisher (order check)
        self.members = []
        self.delivered = 0
        self.firsts = 0
        self.dup1 = 0
        self.dup2 = 0
        self.dup2_cross = 0             # share group: QoS 2 message at two members
        self.dup2_same_cycle = 0        # share group: both deliveries between the same two kills
        self.order_violations = 0
        self.dup2_ignored = 0           # DUP QoS 2 resends with a remembered id (not counted)
        self.id_reuse = 0               # new QoS 2 PUBLISH on an id still awaiting PUBREL
        self.details = {"dup2": [], "order": [], "lost": []}

    def grow(self, pub, seq):
        for arrs in (self.counts, self.owner, self.first_cycle):
            if arrs is None:
                continue
            a = arrs[pub]
            if seq >= len(a):
                a.extend(bytes(max(seq + 1 - len(a), len(a))))

    def online(self):
        return any(c.state == UP for c in self.members)

    def record(self, pub, seq, qos, member):
        """A PUBLISH counted as delivered (QoS 1, or QoS 2 with a new id)."""
        self.delivered += 1
        cnt = self.counts[pub]
        if seq >= len(cnt):
            self.grow(pub, seq)
            cnt = self.counts[pub]
        c = cnt[seq]
        if c == 0:
            cnt[seq] = 1
            p = self.soak.pubs[pub]
            if seq <= 0 or seq >= p.next_seq:
                self.soak.problem("%s: message %s #%d was never published" % (self.name, p.cid, seq))
                return
            if qos != expected_qos(seq):
                self.soak.problem("%s: %s #%d arrived with QoS %d, published with QoS %d"
                                  % (self.name, p.cid, seq, qos, expected_qos(seq)))
            self.firsts += 1
            if self.ordered:
                if seq < self.last[pub]:
                    self.order_violations += 1
                    if len(self.details["order"]) < MAX_DETAILS:
                        self.details["order"].append(
                            {"cycle": self.soak.cycle, "publisher": p.cid, "seq": seq,
                             "after": self.last[pub], "member": member.cid})
                else:
                    self.last[pub] = seq
            else:
                self.owner[pub][seq] = member.index + 1
                self.first_cycle[pub][seq] = min(self.soak.cycle, 255)
        else:
            if c < 255:
                cnt[seq] = c + 1
            if qos == 2:
                self.dup2 += 1
                cross = self.owner is not None and self.owner[pub][seq] != member.index + 1
                if cross:
                    self.dup2_cross += 1
                if self.first_cycle is not None and self.first_cycle[pub][seq] == min(self.soak.cycle, 255):
                    self.dup2_same_cycle += 1     # no kill between the two deliveries
                if len(self.details["dup2"]) < MAX_DETAILS:
                    d = {"cycle": self.soak.cycle, "publisher": self.soak.pubs[pub].cid, "seq": seq,
                         "member": member.cid, "deliveries": c + 1}
                    if self.owner is not None:
                        d["first_member"] = self.members[self.owner[pub][seq] - 1].cid
                        d["first_cycle"] = self.first_cycle[pub][seq]
                    self.details["dup2"].append(d)
            else:
                self.dup1 += 1


class Client:
    """A non-blocking MQTT client: socket, output buffer, incremental parser."""

    def __init__(self, soak, cid, version, index=0):
        self.soak = soak
        self.cid = cid
        self.version = version
        self.v5 = version == 5
        self.index = index
        self.sock = None
        self.state = DOWN
        self.rbuf = b""
        self.ob = bytearray()
        self.want_write = False
        self.retry_at = 0.0
        self.close_deadline = 0.0
        self.connacks = 0
        self.unexpected_drops = 0
        self.last_sent = 0.0  # when a byte last went to the broker

    # -- connection management -------------------------------------------
    def connect_props(self):
        return None

    def open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(1.0)
        try:
            s.connect((HOST, self.soak.broker.port))
        except OSError:
            s.close()
            self.retry_at = now() + 0.05
            return False
        s.setblocking(False)
        self.sock = s
        self.state = CONNECTING
        self.rbuf = b""
        self.last_sent = now()
        self.ob = bytearray(m.connect(self.cid, self.version, clean=False, keepalive=self.soak.args.keepalive,
                                      props=self.connect_props()))
        self.want_write = False
        self.soak.sel.register(s, selectors.EVENT_READ, self)
        return True

    def close_now(self):
        if self.sock is not None:
            try:
                self.soak.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        was = self.state
        self.state = DOWN
        self.rbuf = b""
        self.ob = bytearray()
        self.want_write = False
        if was == UP:
            self.soak.update_offline()

    def lost(self, why):
        expected = self.state == CLOSING or not self.soak.broker_alive
        self.close_now()
        self.retry_at = now() + 0.02
        if not expected:
            self.unexpected_drops += 1
            self.soak.problem("%s: connection lost while the broker was up: %s" % (self.cid, why))

    def close_gracefully(self):
        """DISCONNECT after every queued acknowledgement; then wait for EOF."""
        if self.sock is None:
            return
        if self.state != UP:
            self.close_now()
            return
        self.ob += m.disconnect(v5=self.v5)
        self.state = CLOSING
        self.close_deadline = now() + 2.0
        self.soak.update_offline()
        self.flush()
        if self.sock is not None and not self.ob:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # -- I/O ---------------------------------------------------------------
    def flush(self):
        ob = self.ob
        if not ob or self.sock is None:
            return
        try:
            n = self.sock.send(ob)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self.lost("send: %s" % e)
            return
        del ob[:n]
        if n:
            self.last_sent = now()
        if ob:
            if not self.want_write:
                self.soak.sel.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)
                self.want_write = True
        else:
            if self.want_write:
                self.soak.sel.modify(self.sock, selectors.EVENT_READ, self)
                self.want_write = False
            if self.state == CLOSING:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def on_read(self):
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.lost("recv: %s" % e)
            return
        if not data:
            self.lost("EOF")
            return
        if self.state == CLOSING:
            return  # leaving: what still arrives is not taken (the broker redelivers it)
        buf = self.rbuf + data if self.rbuf else data
        try:
            i = self.parse(buf)
        except (ValueError, IndexError) as e:
            self.soak.problem("%s: unparsable input from the broker: %r" % (self.cid, e))
            self.close_now()
            return
        if self.sock is None:
            return
        self.rbuf = buf[i:] if i < len(buf) else b""

    def on_connack(self, body):
        sp = bool(body[0] & 1) if body else False
        rc = body[1] if len(body) > 1 else 255
        props = {}
        if self.v5 and len(body) > 2:
            props, _ = m.decode_props(bytes(body), 2)
        if rc != 0:
            self.soak.problem("%s: CONNACK refused, reason %d" % (self.cid, rc))
            self.close_now()
            self.retry_at = now() + 0.2
            return False
        if not sp:
            self.soak.problem("%s: session present = 0 on reconnect (session lost) in cycle %s"
                              % (self.cid, self.soak.cycle))
        self.connacks += 1
        self.state = UP
        self.soak.update_offline()
        self.on_up(props)
        return True

    def on_up(self, props):
        pass

    def on_other(self, t, body):
        if t == m.PINGRESP:
            return
        if t == m.DISCONNECT:
            reason = body[0] if body else 0
            self.soak.problem("%s: DISCONNECT from the broker, reason 0x%02x %r"
                              % (self.cid, reason, bytes(body)))
        else:
            self.soak.problem("%s: unexpected packet type %d %r" % (self.cid, t, bytes(body[:32])))
        self.close_now()


class Publisher(Client):
    """Streams "<seq>" to k9s/p<i>: odd seq QoS 1, even seq QoS 2."""

    def __init__(self, soak, index, version):
        super().__init__(soak, "k9s-pub%d-v%d" % (index, version), version, index)
        self.topic = ("%s/p%d" % (TOPIC_PREFIX, index)).encode()
        self.tenc = len(self.topic).to_bytes(2, "big") + self.topic
        self.next_seq = 1
        self.acked = bytearray(1 << 16)
        self.n_acked = 0
        self.inflight = {}        # packet id -> [seq, qos, state]; insertion order = send order
        self.q2_out = 0           # QoS 2 entries in flight (until PUBCOMP)
        self.last_mid = 0
        self.window = soak.args.window
        self.q2_cap = soak.args.max_inflight   # the broker's inbound QoS 2 limit
        self.publishing = True
        self.resent_publish = 0
        self.resent_pubrel = 0
        self.rejected = 0

    def connect_props(self):
        return {"session_expiry_interval": 3600} if self.v5 else None

    def on_up(self, props):
        if self.v5:
            self.window = min(self.soak.args.window, props.get("receive_maximum", 65535))
        # [MQTT-4.4.0-1] resend what is unacknowledged, in the original order,
        # before anything new: PUBLISH with DUP and the same packet id, or PUBREL.
        ob = self.ob
        for mid, ent in self.inflight.items():
            if ent[2] == REC:
                ob += bytes((0x62, 2, mid >> 8, mid & 0xFF))
                self.resent_pubrel += 1
            else:
                ob += self.publish_packet(ent[0], ent[1], mid, True)
                self.resent_publish += 1
        self.fill()

    def publish_packet(self, seq, qos, mid, dup):
        payload = b"%d" % seq
        rl = len(self.tenc) + 2 + (1 if self.v5 else 0) + len(payload)
        hdr = 0x30 | (qos << 1) | (0x08 if dup else 0)
        return (bytes((hdr, rl)) + self.tenc + bytes((mid >> 8, mid & 0xFF))
                + (b"\x00" if self.v5 else b"") + payload)

    def fill(self):
        if not self.publishing or self.state != UP or not self.soak.broker_alive:
            return
        inflight = self.inflight
        room = self.window - len(inflight)
        if room <= 0:
            return
        ob = self.ob
        tenc = self.tenc
        v5p = b"\x00" if self.v5 else b""
        fixed_len = len(tenc) + 2 + len(v5p)
        seq = self.next_seq
        acked = self.acked
        last_mid = self.last_mid
        q2_out = self.q2_out
        q2_cap = self.q2_cap
        while room > 0:
            qos = 1 if seq & 1 else 2
            if qos == 2:
                if q2_out >= q2_cap:
                    break
                q2_out += 1
            last_mid = last_mid % 65535 + 1
            while last_mid in inflight:
                last_mid = last_mid % 65535 + 1
            if seq >= len(acked):
                acked.extend(bytes(len(acked)))
            inflight[last_mid] = [seq, qos, SENT]
            payload = b"%d" % seq
            ob += bytes((0x30 | (qos << 1), fixed_len + len(payload)))
            ob += tenc
            ob += bytes((last_mid >> 8, last_mid & 0xFF))
            ob += v5p
            ob += payload
            seq += 1
            room -= 1
        self.next_seq = seq
        self.last_mid = last_mid
        self.q2_out = q2_out

    def mark_acked(self, seq):
        if not self.acked[seq]:
            self.acked[seq] = 1
            self.n_acked += 1
            soak = self.soak
            soak.cycle_acked += 1
            soak.cycle_queued_offline += soak.n_offline

    def parse(self, buf):
        n = len(buf)
        i = 0
        inflight = self.inflight
        ob = self.ob
        while n - i >= 2:
            ln = buf[i + 1]
            if ln < 0x80:
                p = i + 2
            else:
                ln, p = decode_remaining_length(buf, i + 1, n)
                if ln < 0:
                    break
            e = p + ln
            if e > n:
                break
            t = buf[i] >> 4
            if t == 4:      # PUBACK
                mid = (buf[p] << 8) | buf[p + 1]
                ent = inflight.get(mid)
                if ent is None or ent[1] != 1:
                    self.soak.problem("%s: PUBACK for packet id %d not in flight as QoS 1 (%r)"
                                      % (self.cid, mid, ent))
                else:
                    del inflight[mid]
                    if ln > 2 and buf[p + 2] >= 0x80:
                        self.reject(ent[0], "PUBACK", buf[p + 2])
                    else:
                        self.mark_acked(ent[0])
            elif t == 5:    # PUBREC
                mid = (buf[p] << 8) | buf[p + 1]
                ent = inflight.get(mid)
                if ent is None or ent[1] != 2:
                    self.soak.problem("%s: PUBREC for packet id %d not in flight as QoS 2 (%r)"
                                      % (self.cid, mid, ent))
                elif ln > 2 and buf[p + 2] >= 0x80:
                    del inflight[mid]
                    self.q2_out -= 1
                    self.reject(ent[0], "PUBREC", buf[p + 2])
                else:
                    if ent[2] == SENT:
                        ent[2] = REC
                        self.mark_acked(ent[0])
                    ob += bytes((0x62, 2, mid >> 8, mid & 0xFF))
            elif t == 7:    # PUBCOMP
                mid = (buf[p] << 8) | buf[p + 1]
                ent = inflight.get(mid)
                if ent is None or ent[2] != REC:
                    self.soak.problem("%s: PUBCOMP for packet id %d not awaiting it (%r)"
                                      % (self.cid, mid, ent))
                else:
                    del inflight[mid]
                    self.q2_out -= 1
            elif t == 2 and self.state == CONNECTING:
                if not self.on_connack(buf[p:e]):
                    return e
            else:
                self.on_other(t, buf[p:e])
                return e
            i = e
        self.fill()
        return i

    def reject(self, seq, what, reason):
        self.rejected += 1
        self.soak.problem("%s: #%d refused by %s reason 0x%02x" % (self.cid, seq, what, reason))

    def done(self):
        return not self.inflight


class Subscriber(Client):
    """A durable receiving client (plain subscriber or share group member)."""

    def __init__(self, soak, receiver, cid, version, index, receive_max, graceful_only):
        super().__init__(soak, cid, version, index)
        self.receiver = receiver
        self.receive_max = receive_max
        self.graceful_only = graceful_only
        self.awaiting_rel = {}     # QoS 2 packet id -> (pub, seq), from PUBLISH to PUBREL
        self.want_online = False
        self.next_toggle = 0.0
        self.toggles = 0

    def connect_props(self):
        if self.v5:
            return {"session_expiry_interval": 3600, "receive_maximum": self.receive_max}
        return None

    def go_offline(self, rng):
        self.want_online = False
        if self.sock is None:
            return
        if self.graceful_only or rng.random() < 0.5:
            self.close_gracefully()
        else:
            # Abrupt: unsent acknowledgements die with the connection and the
            # broker sends those messages again (allowed for plain sessions).
            self.close_now()

    def parse(self, buf):
        n = len(buf)
        i = 0
        ob = self.ob
        awaiting = self.awaiting_rel
        rcv = self.receiver
        topics = self.soak.topic_index
        v5 = self.v5
        while n - i >= 2:
            ln = buf[i + 1]
            if ln < 0x80:
                p = i + 2
            else:
                ln, p = decode_remaining_length(buf, i + 1, n)
                if ln < 0:
                    break
            e = p + ln
            if e > n:
                break
            h = buf[i]
            t = h >> 4
            if t == 3:      # PUBLISH
                qos = (h >> 1) & 3
                tl = (buf[p] << 8) | buf[p + 1]
                q = p + 2 + tl
                pub = topics.get(buf[p + 2:q])
                mid = 0
                if qos:
                    mid = (buf[q] << 8) | buf[q + 1]
                    q += 2
                if v5:
                    pl = buf[q]
                    if pl < 0x80:
                        q += 1 + pl
                    else:
                        pl, q = decode_remaining_length(buf, q, e)
                        q += pl
                if pub is None:
                    self.soak.problem("%s: PUBLISH on unexpected topic %r"
                                      % (self.cid, bytes(buf[p + 2:p + 2 + tl])))
                    seq = -1
                else:
                    seq = int(buf[q:e])
                if qos == 2:
                    prev = awaiting.get(mid)
                    if prev is not None:
                        pcycle = prev[2]
                        prev = prev[:2]
                        # Method B: the id is still ours until PUBREL; a resend
                        # (DUP) is acknowledged again, not delivered again.
                        if prev != (pub, seq) or not h & 0x08:
                            # The broker reused an id we still hold (method B):
                            # the message is taken as a resend and not delivered.
                            rcv.id_reuse += 1
                            self.soak.problem(
                                "%s: QoS 2 PUBLISH %s (DUP=%d) with packet id %d that still awaits PUBREL "
                                "for %s (PUBLISH received in cycle %d); now cycle %d: not delivered "
                                "(method B)" % (self.cid, self.soak.msg_name(pub, seq), (h >> 3) & 1, mid,
                                                self.soak.msg_name(*prev), pcycle, self.soak.cycle))
                        else:
                            rcv.dup2_ignored += 1
                    else:
                        awaiting[mid] = (pub, seq, self.soak.cycle)
                        if pub is not None:
                            rcv.record(pub, seq, 2, self)
                    ob += bytes((0x50, 2, mid >> 8, mid & 0xFF))
                elif qos == 1:
                    if pub is not None:
                        rcv.record(pub, seq, 1, self)
                    ob += bytes((0x40, 2, mid >> 8, mid & 0xFF))
                else:
                    self.soak.problem("%s: QoS 0 delivery" % self.cid)
            elif t == 6:    # PUBREL
                mid = (buf[p] << 8) | buf[p + 1]
                awaiting.pop(mid, None)
                ob += bytes((0x70, 2, mid >> 8, mid & 0xFF))
            elif t == 2 and self.state == CONNECTING:
                if not self.on_connack(buf[p:e]):
                    return e
            else:
                self.on_other(t, buf[p:e])
                return e
            i = e
        return i


# --------------------------------------------------------------------------
# The soak

class Soak:
    def __init__(self, args, out=None):
        self.args = args
        self.out = out if out is not None else sys.stdout
        self.seed = args.seed if args.seed is not None else random.randrange(1, 1 << 31)
        self.rng = random.Random(self.seed)
        self.sel = selectors.DefaultSelector()
        self.broker = None
        self.broker_alive = False
        self.cycle = 0
        self.problems = []
        self.n_problems = 0
        self.cycle_acked = 0
        self.cycle_queued_offline = 0
        self.n_offline = 0
        self.cycles = []            # per-cycle stats
        self.rss_max = 0
        self.rss_last = 0
        self.anon_max = 0
        self.anon_last = 0
        self.broker_crashes = []
        self.broker_cpu = 0.0
        self.final = {}
        self.interrupted = False
        self.time_limited = False

        vers = [4, 5]
        self.pubs = [Publisher(self, i, vers[i % 2]) for i in range(args.pubs)]
        self.topic_index = {p.topic: p.index for p in self.pubs}
        self.receivers = []
        r = Receiver(self, "sub-v311", ordered=True)
        r.members = [Subscriber(self, r, "k9s-sub-v311", 4, 0, 0, False)]
        self.receivers.append(r)
        r = Receiver(self, "sub-v5", ordered=True)
        r.members = [Subscriber(self, r, "k9s-sub-v5", 5, 0, args.sub_receive_max, False)]
        self.receivers.append(r)
        if args.share_members > 0:
            r = Receiver(self, "share-g(%d)" % args.share_members, ordered=False)
            r.members = [Subscriber(self, r, "k9s-g%d-v%d" % (i, 4 if i % 2 == 0 else 5),
                                    4 if i % 2 == 0 else 5, i, args.sub_receive_max, True)
                         for i in range(args.share_members)]
            self.receivers.append(r)
        self.subs = [c for r in self.receivers for c in r.members]
        self.clients = self.pubs + self.subs

    # -- bookkeeping ---------------------------------------------------------
    def log(self, msg):
        if not self.args.quiet:
            print(msg, file=self.out, flush=True)

    def problem(self, msg):
        self.n_problems += 1
        if len(self.problems) < 200:
            self.problems.append(msg)
            if len(self.problems) <= 20:
                self.log("  PROBLEM: " + msg)

    def msg_name(self, pub, seq):
        if pub is None or pub >= len(self.pubs):
            return "?#%s" % seq
        return "%s#%d" % (self.pubs[pub].cid, seq)

    def note_rss(self, rss, anon):
        self.rss_max = max(self.rss_max, rss)
        self.rss_last = rss
        self.anon_max = max(self.anon_max, anon)
        self.anon_last = anon

    def update_offline(self):
        self.n_offline = sum(1 for r in self.receivers if not r.online())

    # -- the event loop --------------------------------------------------------
    def run_loop(self, until, done=None, toggling=False):
        sel = self.sel
        clients = self.clients
        subs = self.subs
        rng = self.rng
        while True:
            t = now()
            if t >= until or (done is not None and done()):
                return
            if self.args.max_time and t > self.hard_deadline:
                self.time_limited = True
                return
            for c in clients:
                if c.state == DOWN:
                    if self.broker_alive and t >= c.retry_at and \
                            (isinstance(c, Publisher) or c.want_online):
                        c.open()
                elif c.state == CLOSING and t > c.close_deadline:
                    c.close_now()
            if toggling:
                for s in subs:
                    if t >= s.next_toggle:
                        s.toggles += 1
                        s.next_toggle = t + rng.uniform(self.args.toggle_min_s, self.args.toggle_max_s)
                        if s.want_online:
                            s.go_offline(rng)
                        else:
                            s.want_online = True
                            s.retry_at = 0.0
            for key, mask in sel.select(min(0.005, max(0.0, until - t))):
                c = key.data
                if mask & selectors.EVENT_READ and c.sock is not None:
                    c.on_read()
                if mask & selectors.EVENT_WRITE and c.sock is not None:
                    c.flush()
            for c in clients:
                if c.state == UP and not c.ob and t - c.last_sent > self.args.keepalive / 2:
                    # A client with nothing to send while the final drain goes
                    # on (which can outlast the keep alive) says it is alive.
                    c.ob += m.pingreq()
                if c.ob and c.sock is not None:
                    c.flush()

    def hard_limit_check(self):
        if self.args.max_time and now() > self.hard_deadline:
            self.time_limited = True
            return True
        return False

    # -- phases ------------------------------------------------------------------
    def setup(self):
        """Create every durable session and subscription, then stop the broker cleanly."""
        self.broker.start()
        for c in self.clients:
            rc = m.RawClient(HOST, self.broker.port, version=c.version, timeout=5.0, name=c.cid)
            try:
                ack = rc.connect(c.cid, clean=False, keepalive=self.args.keepalive, props=c.connect_props())
                if ack.session_present:
                    raise SoakError("%s: session present on a fresh store" % c.cid)
                if isinstance(c, Subscriber):
                    filt = SHARE_FILTER if not c.receiver.ordered else SUB_FILTER
                    suback = rc.subscribe([(filt, 2)])
                    if suback.codes != [2]:
                        raise SoakError("%s: SUBACK %r" % (c.cid, suback))
                rc.disconnect()
            finally:
                rc.close()
        rc = self.broker.stop()
        if rc != 0:
            raise SoakError("broker exited with %r on SIGTERM after setup" % (rc,))

    def kill_broker(self):
        rss = self.broker.rss_kb()
        self.broker_cpu += self.broker.cpu_s()
        self.broker_alive = False
        rc = self.broker.kill()
        if rc is not None:
            self.broker_crashes.append({"cycle": self.cycle, "exit": rc})
            self.problem("broker had exited by itself (status %r) before the kill in cycle %d; log %s"
                         % (rc, self.cycle, self.broker.log_path))
        # Take what the broker wrote before it died (acknowledgements count),
        # then drop every connection.
        self.run_loop(now() + 2.0, done=lambda: all(c.sock is None for c in self.clients))
        for c in self.clients:
            c.close_now()
        return rss

    def one_cycle(self):
        a = self.args
        rng = self.rng
        self.broker.start()
        self.broker_alive = True
        t0 = now()
        dur = rng.uniform(a.min_cycle_s, a.max_cycle_s)
        # Receivers start on or off at random, at least one of them off.
        for s in self.subs:
            s.want_online = rng.random() < 0.5
            s.next_toggle = t0 + rng.uniform(a.toggle_min_s, a.toggle_max_s)
            s.retry_at = 0.0
        off = rng.choice(self.receivers)
        for s in off.members:
            s.want_online = False
            s.next_toggle = t0 + rng.uniform(max(a.toggle_min_s, 0.15), max(a.toggle_max_s, 0.3))
        for p in self.pubs:
            p.retry_at = 0.0
        self.update_offline()
        self.cycle_acked = 0
        self.cycle_queued_offline = 0
        self.run_loop(t0 + dur, toggling=True)
        rss, anon = self.kill_broker()
        elapsed = now() - t0
        self.note_rss(rss, anon)
        st = {"cycle": self.cycle, "seconds": round(dur, 3), "acked": self.cycle_acked,
              "queued_offline": self.cycle_queued_offline, "rss_kb": rss, "rss_anon_kb": anon}
        self.cycles.append(st)
        backlog = sum(sum(p.n_acked for p in self.pubs) - r.firsts for r in self.receivers)
        self.log("cycle %3d/%d: killed after %.2f s, acked %6d (%6.0f msg/s), queued while offline %6d, "
                 "backlog %7d, in flight %3d, RSS %d MiB (anon %d)"
                 % (self.cycle, a.cycles, elapsed, self.cycle_acked, self.cycle_acked / max(dur, 1e-6),
                    self.cycle_queued_offline, backlog, sum(len(p.inflight) for p in self.pubs),
                    rss // 1024, anon // 1024))

    def finish(self):
        """Last start: publishers complete what is unacknowledged, receivers drain."""
        a = self.args
        self.cycle = a.cycles + 1
        self.broker.start()
        self.broker_alive = True
        for p in self.pubs:
            p.publishing = False
            p.retry_at = 0.0
        for s in self.subs:
            s.want_online = True
            s.retry_at = 0.0
        self.update_offline()
        t0 = now()
        self.run_loop(t0 + a.final_s,
                      done=lambda: all(p.state == UP and p.done() for p in self.pubs))
        pubs_done = all(p.done() for p in self.pubs)
        if not pubs_done:
            self.problem("publishers could not complete within %.0f s: %s still unacknowledged"
                         % (a.final_s, ", ".join("%s %d" % (p.cid, len(p.inflight)) for p in self.pubs)))
        t_pub = now() - t0
        total = sum(p.next_seq - 1 for p in self.pubs)
        last_firsts = -1
        last_progress = now()
        complete_at = None
        next_report = now() + 5.0
        while True:
            self.run_loop(now() + 0.2)
            if self.time_limited:
                break
            firsts = sum(r.firsts for r in self.receivers)
            t = now()
            if t >= next_report:
                next_report = t + 5.0
                self.log("  drain %5.1f s: %s" % (t - t0, ", ".join(
                    "%s %d/%d" % (r.name, r.firsts, total) for r in self.receivers)))
            if firsts != last_firsts:
                last_firsts = firsts
                last_progress = t
            if all(r.firsts >= total for r in self.receivers):
                if complete_at is None:
                    complete_at = t
                elif t - complete_at >= a.settle_s:
                    break     # late duplicates, if any, had their chance
            elif t - last_progress > a.drain_idle_s:
                break
        t_drain = now() - t0 - t_pub
        self.note_rss(*self.broker.rss_kb())
        self.broker_cpu += self.broker.cpu_s()
        self.broker_alive = False
        for c in self.clients:
            c.close_now()
        rc = self.broker.stop()
        self.final = {"resend_s": round(t_pub, 2), "drain_s": round(t_drain, 2),
                      "publishers_complete": pubs_done, "broker_exit_on_sigterm": rc}
        if rc != 0:
            self.problem("broker exited with %r on SIGTERM at the end" % (rc,))

    # -- verdict -------------------------------------------------------------------
    def verdict(self, elapsed):
        pubs = self.pubs
        published = sum(p.next_seq - 1 for p in pubs)
        acked = sum(p.n_acked for p in pubs)
        unacked = sum(len(p.inflight) for p in pubs)
        zero_to_one = bytes([1] + [0] * 255)
        rows = []
        ok = True
        for r in self.receivers:
            lost = 0
            for p in pubs:
                nseq = p.next_seq
                cnt = bytes(r.counts[p.index][:nseq])
                if len(cnt) < nseq:
                    cnt += bytes(nseq - len(cnt))
                acked_bits = int.from_bytes(bytes(p.acked[:nseq]), "little")
                missing_bits = int.from_bytes(cnt.translate(zero_to_one), "little")
                lost_mask = acked_bits & missing_bits
                nlost = bin(lost_mask).count("1")
                lost += nlost
                if nlost:
                    for seq in range(1, nseq):
                        if p.acked[seq] and cnt[seq] == 0:
                            if len(r.details["lost"]) >= MAX_DETAILS:
                                break
                            r.details["lost"].append({"publisher": p.cid, "seq": seq,
                                                      "qos": expected_qos(seq)})
            row = {"receiver": r.name, "delivered": r.delivered, "distinct": r.firsts, "lost": lost,
                   "dup_qos1": r.dup1, "dup_qos2": r.dup2, "order_violations": r.order_violations,
                   "dup_qos2_resends_ignored": r.dup2_ignored, "qos2_id_reuse": r.id_reuse,
                   "connects": sum(c.connacks for c in r.members)}
            if not r.ordered:
                row["dup_qos2_cross_member"] = r.dup2_cross
                row["dup_qos2_same_cycle"] = r.dup2_same_cycle
            if lost or r.dup2 or r.order_violations:
                ok = False
            rows.append(row)
        if self.n_problems or unacked or self.interrupted or self.time_limited \
                or len(self.cycles) < self.args.cycles:
            ok = False
        qo = [c["queued_offline"] for c in self.cycles]
        res = {
            "ok": ok,
            "seed": self.seed,
            "cycles": len(self.cycles),
            "cycles_requested": self.args.cycles,
            "published": published,
            "acknowledged": acked,
            "unacknowledged_at_end": unacked,
            "delivered": sum(r["delivered"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
            "dup_qos1": sum(r["dup_qos1"] for r in rows),
            "dup_qos2": sum(r["dup_qos2"] for r in rows),
            "order_violations": sum(r["order_violations"] for r in rows),
            "receivers": rows,
            "publishers": [{"client": p.cid, "published": p.next_seq - 1, "acked": p.n_acked,
                            "resent_publish": p.resent_publish, "resent_pubrel": p.resent_pubrel,
                            "rejected": p.rejected, "connects": p.connacks} for p in pubs],
            "acked_per_s_during_cycles": round(sum(c["acked"] for c in self.cycles)
                                               / max(1e-6, sum(c["seconds"] for c in self.cycles))),
            "queued_offline_per_cycle": {"min": min(qo) if qo else 0, "max": max(qo) if qo else 0,
                                         "all": qo},
            "cycles_without_offline_queueing": sum(1 for x in qo if x == 0),
            "rss_kb_max": self.rss_max,
            "rss_kb_last": self.rss_last,
            "rss_anon_kb_max": self.anon_max,
            "rss_anon_kb_last": self.anon_last,
            "broker_crashes": self.broker_crashes,
            "broker_binary_replaced_at_start": self.broker.binary_changes[1:] if self.broker else [],
            "final": self.final,
            "problems": self.n_problems,
            "problem_samples": self.problems[:20],
            "details": {r.name: r.details for r in self.receivers if any(r.details.values())},
            "interrupted": self.interrupted,
            "time_limited": self.time_limited,
            "total_s": round(elapsed, 1),
            "cpu_s": {"broker": round(self.broker_cpu, 1),
                      "tool": round(sum(os.times()[:2]), 1)},
            "workdir": self.workdir,
        }
        return res

    def report(self, res):
        w = self.out
        print("", file=w)
        print("kill -9 soak: seed %d, %d/%d cycles, %.1f s total, broker %s"
              % (res["seed"], res["cycles"], res["cycles_requested"], res["total_s"], self.args.broker),
              file=w)
        print("published %d, acknowledged %d (unacknowledged at end %d), %d msg/s acknowledged during cycles"
              % (res["published"], res["acknowledged"], res["unacknowledged_at_end"],
                 res["acked_per_s_during_cycles"]), file=w)
        hdr = "%-16s %10s %10s %6s %8s %8s %6s %9s %8s %8s" % (
            "receiver", "delivered", "distinct", "lost", "dup_q1", "dup_q2", "order",
            "q2_resend", "id_reuse", "connects")
        print(hdr, file=w)
        print("-" * len(hdr), file=w)
        for r in res["receivers"]:
            print("%-16s %10d %10d %6d %8d %8d %6d %9d %8d %8d" % (
                r["receiver"], r["delivered"], r["distinct"], r["lost"], r["dup_qos1"], r["dup_qos2"],
                r["order_violations"], r["dup_qos2_resends_ignored"], r["qos2_id_reuse"],
                r["connects"]), file=w)
        print("(q2_resend: DUP QoS 2 resends on a remembered packet id, acknowledged, not counted; "
              "id_reuse: new QoS 2 PUBLISH on a packet id still awaiting PUBREL, not delivered by "
              "method B)", file=w)
        for r in res["receivers"]:
            if "dup_qos2_cross_member" in r:
                print("%s: QoS 2 duplicates at another member %d, with no kill between the two "
                      "deliveries %d" % (r["receiver"], r["dup_qos2_cross_member"], r["dup_qos2_same_cycle"]),
                      file=w)
        print("-" * len(hdr), file=w)
        print("%-16s %10d %10s %6d %8d %8d %6d" % (
            "total", res["delivered"], "", res["lost"], res["dup_qos1"], res["dup_qos2"],
            res["order_violations"]), file=w)
        for p in res["publishers"]:
            print("  %s: published %d, acked %d, resent %d PUBLISH + %d PUBREL, %d connects"
                  % (p["client"], p["published"], p["acked"], p["resent_publish"], p["resent_pubrel"],
                     p["connects"]), file=w)
        qo = res["queued_offline_per_cycle"]
        print("queued while a receiver was offline, per cycle: min %d, max %d; cycles without: %d"
              % (qo["min"], qo["max"], res["cycles_without_offline_queueing"]), file=w)
        print("broker VmRSS (before each kill and at the end): max %.1f MiB, last %.1f MiB "
              "(of it anonymous: max %.1f, last %.1f; the rest is the store's mapped file); crashes %d"
              % (res["rss_kb_max"] / 1024.0, res["rss_kb_last"] / 1024.0, res["rss_anon_kb_max"] / 1024.0,
                 res["rss_anon_kb_last"] / 1024.0, len(res["broker_crashes"])), file=w)
        print("CPU seconds: broker %.1f, this tool %.1f; final phase: %s"
              % (res["cpu_s"]["broker"], res["cpu_s"]["tool"], res["final"]), file=w)
        if res["problems"]:
            print("problems: %d, e.g.:" % res["problems"], file=w)
            for p in res["problem_samples"][:10]:
                print("  " + p, file=w)
        for name, d in res["details"].items():
            for kind, items in d.items():
                if items:
                    print("%s %s (first %d): %s" % (name, kind, min(len(items), 5),
                                                    json.dumps(items[:5])), file=w)
        if res["broker_binary_replaced_at_start"]:
            print("NOTE: the broker binary was replaced during the run (before starts %s)"
                  % res["broker_binary_replaced_at_start"], file=w)
        if res["interrupted"]:
            print("INTERRUPTED", file=w)
        if res["time_limited"]:
            print("stopped by --max-time", file=w)
        print("VERDICT: %s" % ("PASS" if res["ok"] else "FAIL"), file=w)
        slim = dict(res)
        slim["queued_offline_per_cycle"] = {k: v for k, v in qo.items() if k != "all"}
        slim["problem_samples"] = res["problem_samples"][:3]
        slim["details"] = {name: {k: v[:3] for k, v in d.items() if v}
                           for name, d in res["details"].items()}
        print("JSON " + json.dumps(slim, sort_keys=True), file=w, flush=True)

    # -- driver -------------------------------------------------------------------
    def run(self):
        a = self.args
        t_start = now()
        self.hard_deadline = t_start + a.max_time if a.max_time else float("inf")
        self.workdir = a.workdir or tempfile.mkdtemp(prefix="petrel-kill9-soak-")
        os.makedirs(self.workdir, exist_ok=True)
        self.broker = BrokerProc(a.broker, self.workdir, a)
        self.log("kill -9 soak: seed %d (--seed %d replays the schedule), %d cycles of %.2f-%.2f s, "
                 "%d publishers, receivers %s, port %d, work dir %s"
                 % (self.seed, self.seed, a.cycles, a.min_cycle_s, a.max_cycle_s, len(self.pubs),
                    ", ".join(r.name for r in self.receivers), self.broker.port, self.workdir))
        old_term = None
        try:
            if threading_main():
                old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
            self.setup()
            reserve = a.final_s + a.drain_idle_s + 10
            for k in range(1, a.cycles + 1):
                if a.max_time and now() + reserve > self.hard_deadline:
                    self.time_limited = True
                    self.log("--max-time: stopping after %d cycles" % (k - 1))
                    break
                self.cycle = k
                self.one_cycle()
            self.finish()
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            for c in self.clients:
                c.close_now()
            if self.broker is not None:
                self.broker.kill()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        res = self.verdict(now() - t_start)
        self.report(res)
        if res["ok"] and not a.keep and not a.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            res["workdir"] = None
        elif not res["ok"]:
            print("work dir kept: %s (broker log: %s)" % (self.workdir, self.broker.log_path),
                  file=self.out, flush=True)
        return res


def threading_main():
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--broker", default=os.path.join(REPO, "build", "petrel"), help="broker binary")
    ap.add_argument("--cycles", type=int, default=100, help="kill -9 cycles")
    ap.add_argument("--seed", type=int, default=None, help="random seed; random when absent, always printed")
    ap.add_argument("--pubs", type=int, default=3, help="publishers (alternately MQTT 3.1.1 and 5)")
    ap.add_argument("--share-members", type=int, default=3,
                    help="members of the share group (alternately 3.1.1 and 5; 0: no group)")
    ap.add_argument("--min-cycle-s", type=float, default=0.3, help="earliest kill after a start")
    ap.add_argument("--max-cycle-s", type=float, default=2.5, help="latest kill after a start")
    ap.add_argument("--toggle-min-s", type=float, default=0.05,
                    help="shortest on/off period of a receiving client")
    ap.add_argument("--toggle-max-s", type=float, default=0.8,
                    help="longest on/off period of a receiving client")
    ap.add_argument("--window", type=int, default=200,
                    help="unacknowledged PUBLISH per publisher (MQTT 5: at most the broker's Receive Maximum; "
                         "MQTT 3.1.1: QoS 2 ones at most --max-inflight)")
    ap.add_argument("--max-inflight", type=int, default=100, help="broker limits.max_inflight")
    ap.add_argument("--sub-receive-max", type=int, default=50, help="Receive Maximum of MQTT 5 receivers")
    ap.add_argument("--sync", choices=("fsync", "periodic"), default="fsync", help="persistence.sync")
    ap.add_argument("--store-mb", type=int, default=32768,
                    help="persistence.max_size_mb (above 90%% of it the broker drops new messages)")
    ap.add_argument("--log-level", default="notice", help="broker log level")
    ap.add_argument("--keepalive", type=int, default=KEEPALIVE_S,
                    help="keep alive of every client (s); one with nothing to send pings after half of it")
    ap.add_argument("--final-s", type=float, default=60.0,
                    help="deadline for the publishers to complete after the last start")
    ap.add_argument("--drain-idle-s", type=float, default=30.0,
                    help="final drain ends when nothing new arrived for this long")
    ap.add_argument("--settle-s", type=float, default=1.0,
                    help="wait for late duplicates once everything has arrived")
    ap.add_argument("--max-time", type=float, default=3600.0, help="overall time limit in seconds (0: none)")
    ap.add_argument("--workdir", default=None, help="work directory; a new temporary one when absent")
    ap.add_argument("--keep", action="store_true", help="keep the work directory after a pass")
    ap.add_argument("--quiet", action="store_true", help="no per-cycle lines")
    args = ap.parse_args(argv)
    if args.min_cycle_s <= 0 or args.max_cycle_s < args.min_cycle_s:
        ap.error("need 0 < --min-cycle-s <= --max-cycle-s")
    if args.window < 1 or args.pubs < 1 or args.cycles < 0:
        ap.error("--window, --pubs must be >= 1 and --cycles >= 0")
    return args


def run_soak(args, out=None):
    """Run one soak; returns the result dict (also printed, as a table and one JSON line)."""
    return Soak(args, out).run()


def main(argv=None):
    args = parse_args(argv)
    res = run_soak(args)
    if res["interrupted"]:
        return 130
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
