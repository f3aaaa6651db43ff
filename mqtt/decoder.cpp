#include "mqtt/decoder.h"

#include <cstring>

#include "mqtt/codec_util.h"

namespace petrel::mqtt {

namespace {

// [MQTT-2.2.2-1/2] the flags each packet type must carry (PUBLISH excepted).
bool flagsValid(PacketType t, uint8_t flags) {
  switch (t) {
    case PacketType::Publish: return true;
    case PacketType::Pubrel:
    case PacketType::Subscribe:
    case PacketType::Unsubscribe: return flags == 0x2;
    default: return flags == 0;
  }
}

bool isV5(Version v) { return v == Version::V5; }

}  // namespace

FrameStatus peekFrame(const uint8_t* data, size_t len, uint32_t max_packet_size,
                      Frame& f) {
  f.total_len = 0;
  if (len < 2) return FrameStatus::Incomplete;
  uint32_t rl = 0;
  size_t i = 1;
  for (;; ++i) {
    if (i > 4) return FrameStatus::Malformed;  // §1.5.5: at most 4 bytes
    if (i >= len) return FrameStatus::Incomplete;
    uint8_t b = data[i];
    rl |= uint32_t(b & 0x7F) << (7 * (i - 1));
    if (!(b & 0x80)) break;
  }
  const size_t hdr = i + 1;
  f.type = static_cast<PacketType>(data[0] >> 4);
  f.flags = data[0] & 0x0F;
  f.total_len = static_cast<uint32_t>(hdr + rl);
  if (f.total_len > max_packet_size) return FrameStatus::TooLarge;
  if (len < f.total_len) return FrameStatus::Incomplete;
  f.body = data + hdr;
  f.body_len = rl;
  return FrameStatus::Ok;
}

uint8_t* StreamDecoder::writeSpace(size_t min, size_t& avail) {
  size_t need = min;
  if (want_ > buffered() && want_ - buffered() > need) need = want_ - buffered();
  if (buf_.size() - end_ < need) {
    if (start_ > 0) compact();
    if (buf_.size() - end_ < need) buf_.resize(end_ + need);
  }
  avail = buf_.size() - end_;
  return buf_.data() + end_;
}

FrameStatus StreamDecoder::next(Frame& f) {
  FrameStatus st = peekFrame(buf_.data() + start_, end_ - start_, max_packet_size_, f);
  if (st == FrameStatus::Ok) {
    start_ += f.total_len;
    want_ = 0;
    if (start_ == end_) start_ = end_ = 0;
  } else if (st == FrameStatus::Incomplete && f.total_len > 0) {
    want_ = f.total_len;
  }
  return st;
}

void StreamDecoder::compact() {
  if (start_ > 0) {
    std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  // Give back the memory of one large packet once it has been handled, so an
  // idle connection keeps only a small buffer.
  constexpr size_t kKeep = 64 * 1024;
  if (buf_.size() > kKeep && end_ <= kKeep && want_ <= kKeep) {
    buf_.resize(kKeep);
    buf_.shrink_to_fit();
  }
}

Reason parseConnect(const Frame& f, Connect& c) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  Reader r(f.body, f.body_len);
  std::string name;
  uint8_t level;
  if (!r.utf8(name) || !r.u8(level)) return Reason::MalformedPacket;
  // A bridge announces itself with the top bit of the level (MQTT 3.1 and
  // 3.1.1; mosquitto's try_private).
  if ((level & 0x80) && (level & 0x7F) != 5) {
    c.bridge = true;
    level &= 0x7F;
  }
  // [MQTT-3.1.2-1] protocol name; [MQTT-3.1.2-2] unsupported level gets
  // CONNACK 0x01 / 0x84.
  if (name == "MQTT") {
    if (level != 4 && level != 5) {
      c.version = static_cast<Version>(level);
      return Reason::UnsupportedProtocolVersion;
    }
  } else if (name == "MQIsdp") {
    if (level != 3) {
      c.version = static_cast<Version>(level);
      return Reason::UnsupportedProtocolVersion;
    }
  } else {
    return Reason::UnsupportedProtocolVersion;
  }
  c.version = static_cast<Version>(level);
  const bool v5 = isV5(c.version);
  uint8_t flags;
  if (!r.u8(flags) || !r.u16(c.keepalive)) return Reason::MalformedPacket;
  // [MQTT-3.1.2-3] the reserved flag must be 0.
  if (flags & 0x01) return Reason::MalformedPacket;
  c.clean_start = flags & 0x02;
  const bool will = flags & 0x04;
  const uint8_t will_qos = (flags >> 3) & 0x03;
  const bool will_retain = flags & 0x20;
  const bool has_password = flags & 0x40;
  const bool has_username = flags & 0x80;
  if (will_qos == 3) return Reason::MalformedPacket;  // [MQTT-3.1.2-14]
  if (!will && (will_qos != 0 || will_retain)) return Reason::MalformedPacket;  // [MQTT-3.1.2-11/13/15]
  if (!v5 && has_password && !has_username) return Reason::MalformedPacket;  // [MQTT-3.1.2-22]
  size_t pos = r.pos();
  if (v5) {
    Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Connect, c.props);
    if (rc != Reason::Success) return rc;
  }
  Reader p(f.body, f.body_len, pos);
  if (!p.utf8(c.client_id)) return Reason::MalformedPacket;
  if (will) {
    Will w;
    w.qos = will_qos;
    w.retain = will_retain;
    if (v5) {
      size_t wp = p.pos();
      Reason rc = decodeProperties(f.body, f.body_len, wp, PropertyContext::Will, w.props);
      if (rc != Reason::Success) return rc;
      p = Reader(f.body, f.body_len, wp);
    }
    if (!p.utf8(w.topic) || !p.binary(w.payload)) return Reason::MalformedPacket;
    c.will = std::move(w);
  }
  if (has_username) {
    std::string u;
    if (!p.utf8(u)) return Reason::MalformedPacket;
    c.username = std::move(u);
  }
  if (has_password) {
    std::string pw;
    if (!p.binary(pw)) return Reason::MalformedPacket;
    c.password = std::move(pw);
  }
  if (!p.atEnd()) return Reason::MalformedPacket;
  return Reason::Success;
}

Reason parse(const Frame& f, Version v, Connack& c) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  Reader r(f.body, f.body_len);
  uint8_t ack, code;
  if (!r.u8(ack) || !r.u8(code)) return Reason::MalformedPacket;
  if (ack & 0xFE) return Reason::MalformedPacket;
  c.session_present = ack & 1;
  if (isV5(v)) {
    c.reason = static_cast<Reason>(code);
  } else {
    // §3.2.2.3 of 3.1.1: return codes 0..5, mapped to the v5 reasons.
    static constexpr Reason kV3[] = {Reason::Success, Reason::UnsupportedProtocolVersion,
                                     Reason::ClientIdentifierNotValid, Reason::ServerUnavailable,
                                     Reason::BadUserNameOrPassword, Reason::NotAuthorized};
    if (code > 5) return Reason::MalformedPacket;
    c.reason = kV3[code];
  }
  if (isV5(v)) {
    size_t pos = r.pos();
    Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Connack, c.props);
    if (rc != Reason::Success) return rc;
    if (pos != f.body_len) return Reason::MalformedPacket;
  } else if (!r.atEnd()) {
    return Reason::MalformedPacket;
  }
  return Reason::Success;
}

Reason parse(const Frame& f, Version v, Publish& p) {
  p.dup = f.flags & 0x08;
  p.qos = (f.flags >> 1) & 0x03;
  p.retain = f.flags & 0x01;
  if (p.qos == 3) return Reason::MalformedPacket;  // [MQTT-3.3.1-4]
  if (p.qos == 0 && p.dup) return Reason::MalformedPacket;  // [MQTT-3.3.1-2]
  Reader r(f.body, f.body_len);
  if (!r.utf8(p.topic)) return Reason::MalformedPacket;
  if (p.qos > 0) {
    if (!r.u16(p.packet_id)) return Reason::MalformedPacket;
    if (p.packet_id == 0) return Reason::MalformedPacket;  // [MQTT-2.2.1-3]
  } else {
    p.packet_id = 0;
  }
  size_t pos = r.pos();
  if (isV5(v)) {
    Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Publish, p.props);
    if (rc != Reason::Success) return rc;
  }
  p.payload.assign(reinterpret_cast<const char*>(f.body + pos), f.body_len - pos);
  return Reason::Success;
}

Reason parse(const Frame& f, Version v, Ack& a) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  a.type = f.type;
  Reader r(f.body, f.body_len);
  if (!r.u16(a.packet_id)) return Reason::MalformedPacket;
  if (a.packet_id == 0) return Reason::MalformedPacket;
  if (!isV5(v)) return r.atEnd() ? Reason::Success : Reason::MalformedPacket;
  // §3.4.2.1: the reason code and properties may be omitted.
  if (r.atEnd()) {
    a.reason = Reason::Success;
    return Reason::Success;
  }
  uint8_t code;
  r.u8(code);
  if (!isKnownReason(code)) return Reason::ProtocolError;
  a.reason = static_cast<Reason>(code);
  if (r.atEnd()) return Reason::Success;
  size_t pos = r.pos();
  PropertyContext ctx = f.type == PacketType::Puback   ? PropertyContext::Puback
                        : f.type == PacketType::Pubrec ? PropertyContext::Pubrec
                        : f.type == PacketType::Pubrel ? PropertyContext::Pubrel
                                                       : PropertyContext::Pubcomp;
  Reason rc = decodeProperties(f.body, f.body_len, pos, ctx, a.props);
  if (rc != Reason::Success) return rc;
  return pos == f.body_len ? Reason::Success : Reason::MalformedPacket;
}

Reason parse(const Frame& f, Version v, Subscribe& s) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  Reader r(f.body, f.body_len);
  if (!r.u16(s.packet_id) || s.packet_id == 0) return Reason::MalformedPacket;
  size_t pos = r.pos();
  if (isV5(v)) {
    Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Subscribe, s.props);
    if (rc != Reason::Success) return rc;
  }
  Reader p(f.body, f.body_len, pos);
  while (!p.atEnd()) {
    SubscribeTopic t;
    uint8_t opts;
    if (!p.utf8(t.filter) || !p.u8(opts)) return Reason::MalformedPacket;
    t.qos = opts & 0x03;
    // QoS 3: Malformed in 3.1.1 [MQTT-3.8.3-4], a Protocol Error in 5.0.
    if (t.qos == 3) return isV5(v) ? Reason::ProtocolError : Reason::MalformedPacket;
    if (isV5(v)) {
      if (opts & 0xC0) return Reason::MalformedPacket;  // [MQTT-3.8.3-5]
      t.no_local = opts & 0x04;
      t.retain_as_published = opts & 0x08;
      t.retain_handling = (opts >> 4) & 0x03;
      if (t.retain_handling == 3) return Reason::ProtocolError;
    } else if (opts & 0xFC) {
      return Reason::MalformedPacket;  // [MQTT-3.8.3-4] reserved bits
    }
    s.topics.push_back(std::move(t));
  }
  // [MQTT-3.8.3-3] at least one topic filter.
  if (s.topics.empty()) return Reason::ProtocolError;
  return Reason::Success;
}

Reason parse(const Frame& f, Version v, Suback& s) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  Reader r(f.body, f.body_len);
  if (!r.u16(s.packet_id)) return Reason::MalformedPacket;
  size_t pos = r.pos();
  if (isV5(v)) {
    Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Suback, s.props);
    if (rc != Reason::Success) return rc;
  }
  s.reasons.assign(f.body + pos, f.body + f.body_len);
  return s.reasons.empty() ? Reason::ProtocolError : Reason::Success;
}

Reason parse(const Frame& f, Version v, Unsubscribe& u) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  Reader r(f.body, f.body_len);
  if (!r.u16(u.packet_id) || u.packet_id == 0) return Reason::MalformedPacket;
  size_t pos = r.pos();
  if (isV5(v)) {
    Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Unsubscribe, u.props);
    if (rc != Reason::Success) return rc;
  }
  Reader p(f.body, f.body_len, pos);
  while (!p.atEnd()) {
    std::string t;
    if (!p.utf8(t)) return Reason::MalformedPacket;
    u.filters.push_back(std::move(t));
  }
  // [MQTT-3.10.3-2] at least one topic filter.
  if (u.filters.empty()) return Reason::ProtocolError;
  return Reason::Success;
}

Reason parse(const Frame& f, Version v, Unsuback& u) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  Reader r(f.body, f.body_len);
  if (!r.u16(u.packet_id)) return Reason::MalformedPacket;
  if (!isV5(v)) return r.atEnd() ? Reason::Success : Reason::MalformedPacket;
  size_t pos = r.pos();
  Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Unsuback, u.props);
  if (rc != Reason::Success) return rc;
  u.reasons.assign(f.body + pos, f.body + f.body_len);
  return Reason::Success;
}

Reason parse(const Frame& f, Version v, Disconnect& d) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  if (!isV5(v)) return f.body_len == 0 ? Reason::Success : Reason::MalformedPacket;
  if (f.body_len == 0) {
    d.reason = Reason::Success;
    return Reason::Success;
  }
  uint8_t code = f.body[0];
  if (!isKnownReason(code)) return Reason::ProtocolError;
  d.reason = static_cast<Reason>(code);
  if (f.body_len == 1) return Reason::Success;
  size_t pos = 1;
  Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Disconnect, d.props);
  if (rc != Reason::Success) return rc;
  return pos == f.body_len ? Reason::Success : Reason::MalformedPacket;
}

Reason parse(const Frame& f, Version v, Auth& a) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  if (!isV5(v)) return Reason::ProtocolError;  // AUTH exists only in MQTT 5
  if (f.body_len == 0) {
    a.reason = Reason::Success;
    return Reason::Success;
  }
  uint8_t code = f.body[0];
  if (code != 0x00 && code != 0x18 && code != 0x19) return Reason::ProtocolError;
  a.reason = static_cast<Reason>(code);
  size_t pos = 1;
  if (pos == f.body_len) return Reason::Success;
  Reason rc = decodeProperties(f.body, f.body_len, pos, PropertyContext::Auth, a.props);
  if (rc != Reason::Success) return rc;
  return pos == f.body_len ? Reason::Success : Reason::MalformedPacket;
}

Reason parseEmpty(const Frame& f) {
  if (!flagsValid(f.type, f.flags)) return Reason::MalformedPacket;
  return f.body_len == 0 ? Reason::Success : Reason::MalformedPacket;
}

}  // namespace petrel::mqtt
