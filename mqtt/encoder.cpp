#include "mqtt/encoder.h"

#include <cstring>

#include "mqtt/codec_util.h"

namespace petrel::mqtt {

namespace {

void fixedHeader(std::string& out, PacketType t, uint8_t flags, size_t remaining) {
  char b[6];
  b[0] = static_cast<char>((static_cast<uint8_t>(t) << 4) | flags);
  out.append(b, 1 + varintBytes(b + 1, static_cast<uint32_t>(remaining)));
}

bool isV5(Version v) { return v == Version::V5; }

}  // namespace

void encode(const Connect& c, std::string& out) {
  const bool v5 = isV5(c.version);
  const std::string_view name = c.version == Version::V31 ? "MQIsdp" : "MQTT";
  size_t len = 2 + name.size() + 1 + 1 + 2;
  if (v5) len += encodedPropertiesSize(c.props);
  len += 2 + c.client_id.size();
  if (c.will) {
    if (v5) len += encodedPropertiesSize(c.will->props);
    len += 2 + c.will->topic.size() + 2 + c.will->payload.size();
  }
  if (c.username) len += 2 + c.username->size();
  if (c.password) len += 2 + c.password->size();
  fixedHeader(out, PacketType::Connect, 0, len);
  putString(out, name);
  out.push_back(static_cast<char>(static_cast<uint8_t>(c.version) | (c.bridge ? 0x80 : 0)));
  uint8_t flags = 0;
  if (c.clean_start) flags |= 0x02;
  if (c.will) {
    flags |= 0x04 | (c.will->qos << 3);
    if (c.will->retain) flags |= 0x20;
  }
  if (c.password) flags |= 0x40;
  if (c.username) flags |= 0x80;
  out.push_back(static_cast<char>(flags));
  putU16(out, c.keepalive);
  if (v5) encodeProperties(c.props, out);
  putString(out, c.client_id);
  if (c.will) {
    if (v5) encodeProperties(c.will->props, out);
    putString(out, c.will->topic);
    putString(out, c.will->payload);
  }
  if (c.username) putString(out, *c.username);
  if (c.password) putString(out, *c.password);
}

void encode(const Connack& c, Version v, std::string& out) {
  const bool v5 = isV5(v);
  size_t len = 2 + (v5 ? encodedPropertiesSize(c.props) : 0);
  fixedHeader(out, PacketType::Connack, 0, len);
  out.push_back(c.session_present ? 1 : 0);
  out.push_back(static_cast<char>(v5 ? static_cast<uint8_t>(c.reason) : connackCodeV3(c.reason)));
  if (v5) encodeProperties(c.props, out);
}

size_t publishSize(Version v, std::string_view topic, uint8_t qos, const Properties* props,
                   size_t payload_len) {
  size_t len = 2 + topic.size() + (qos ? 2 : 0) + payload_len;
  if (isV5(v)) len += props ? encodedPropertiesSize(*props) : 1;
  return 1 + varintSize(static_cast<uint32_t>(len)) + len;
}

void encodePublish(std::string& out, Version v, std::string_view topic, std::string_view payload,
                   uint8_t qos, bool retain, bool dup, uint16_t packet_id, const Properties* props) {
  const bool v5 = isV5(v);
  const size_t props_len = v5 ? (props ? encodedPropertiesSize(*props) : 1) : 0;
  const size_t len = 2 + topic.size() + (qos ? 2 : 0) + props_len + payload.size();
  const uint8_t flags = static_cast<uint8_t>((dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0));
  // Everything before the properties is written in place: the output grows
  // once (one capacity check, two copies), instead of an append per field
  // (each with its own checks), which was most of this function's cost on
  // the delivery path. With properties, those and the payload follow as
  // appends (a message with properties is the rare case).
  const bool with_props = v5 && props;
  const size_t head = 1 + varintSize(static_cast<uint32_t>(len)) + 2 + topic.size() + (qos ? 2 : 0);
  const size_t in_place = head + (with_props ? 0 : props_len + payload.size());
  const size_t at = out.size();
  if (with_props) out.reserve(at + head + len);  // the rest comes as appends
  out.resize(at + in_place);
  char* p = out.data() + at;
  *p++ = static_cast<char>((static_cast<uint8_t>(PacketType::Publish) << 4) | flags);
  p += varintBytes(p, static_cast<uint32_t>(len));
  *p++ = static_cast<char>(topic.size() >> 8);
  *p++ = static_cast<char>(topic.size() & 0xFF);
  if (!topic.empty()) std::memcpy(p, topic.data(), topic.size());
  p += topic.size();
  if (qos) {
    *p++ = static_cast<char>(packet_id >> 8);
    *p++ = static_cast<char>(packet_id & 0xFF);
  }
  if (with_props) {
    encodeProperties(*props, out);
    out.append(payload);
    return;
  }
  if (v5) *p++ = 0;  // an empty property list
  if (!payload.empty()) std::memcpy(p, payload.data(), payload.size());
}

size_t encodedSize(const Publish& p, Version v) {
  return publishSize(v, p.topic, p.qos, &p.props, p.payload.size());
}

void encode(const Publish& p, Version v, std::string& out) {
  encodePublish(out, v, p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, &p.props);
}

void encodeAck(std::string& out, PacketType type, uint16_t packet_id) {
  const char b[4] = {static_cast<char>((static_cast<uint8_t>(type) << 4) | (type == PacketType::Pubrel ? 0x2 : 0)),
                     2, static_cast<char>(packet_id >> 8), static_cast<char>(packet_id & 0xFF)};
  out.append(b, 4);
}

void encode(const Ack& a, Version v, std::string& out) {
  const uint8_t flags = a.type == PacketType::Pubrel ? 0x2 : 0;
  // §3.4.2.1: with reason Success and no properties the short form is used.
  if (!isV5(v) || (a.reason == Reason::Success && a.props.empty())) return encodeAck(out, a.type, a.packet_id);
  if (a.props.empty()) {
    fixedHeader(out, a.type, flags, 3);
    putU16(out, a.packet_id);
    out.push_back(static_cast<char>(a.reason));
    return;
  }
  fixedHeader(out, a.type, flags, 3 + encodedPropertiesSize(a.props));
  putU16(out, a.packet_id);
  out.push_back(static_cast<char>(a.reason));
  encodeProperties(a.props, out);
}

void encode(const Subscribe& s, Version v, std::string& out) {
  size_t len = 2 + (isV5(v) ? encodedPropertiesSize(s.props) : 0);
  for (const auto& t : s.topics) len += 2 + t.filter.size() + 1;
  fixedHeader(out, PacketType::Subscribe, 0x2, len);
  putU16(out, s.packet_id);
  if (isV5(v)) encodeProperties(s.props, out);
  for (const auto& t : s.topics) {
    putString(out, t.filter);
    uint8_t o = t.qos;
    if (isV5(v)) {
      if (t.no_local) o |= 0x04;
      if (t.retain_as_published) o |= 0x08;
      o |= t.retain_handling << 4;
    }
    out.push_back(static_cast<char>(o));
  }
}

void encode(const Suback& s, Version v, std::string& out) {
  size_t len = 2 + s.reasons.size() + (isV5(v) ? encodedPropertiesSize(s.props) : 0);
  fixedHeader(out, PacketType::Suback, 0, len);
  putU16(out, s.packet_id);
  if (isV5(v)) encodeProperties(s.props, out);
  out.append(s.reasons.begin(), s.reasons.end());
}

void encode(const Unsubscribe& u, Version v, std::string& out) {
  size_t len = 2 + (isV5(v) ? encodedPropertiesSize(u.props) : 0);
  for (const auto& f : u.filters) len += 2 + f.size();
  fixedHeader(out, PacketType::Unsubscribe, 0x2, len);
  putU16(out, u.packet_id);
  if (isV5(v)) encodeProperties(u.props, out);
  for (const auto& f : u.filters) putString(out, f);
}

void encode(const Unsuback& u, Version v, std::string& out) {
  if (!isV5(v)) {
    fixedHeader(out, PacketType::Unsuback, 0, 2);
    putU16(out, u.packet_id);
    return;
  }
  fixedHeader(out, PacketType::Unsuback, 0, 2 + encodedPropertiesSize(u.props) + u.reasons.size());
  putU16(out, u.packet_id);
  encodeProperties(u.props, out);
  out.append(u.reasons.begin(), u.reasons.end());
}

void encode(const Disconnect& d, Version v, std::string& out) {
  if (!isV5(v) || (d.reason == Reason::Success && d.props.empty())) {
    fixedHeader(out, PacketType::Disconnect, 0, 0);
    return;
  }
  if (d.props.empty()) {
    fixedHeader(out, PacketType::Disconnect, 0, 1);
    out.push_back(static_cast<char>(d.reason));
    return;
  }
  fixedHeader(out, PacketType::Disconnect, 0, 1 + encodedPropertiesSize(d.props));
  out.push_back(static_cast<char>(d.reason));
  encodeProperties(d.props, out);
}

void encode(const Auth& a, std::string& out) {
  if (a.reason == Reason::Success && a.props.empty()) {
    fixedHeader(out, PacketType::Auth, 0, 0);
    return;
  }
  fixedHeader(out, PacketType::Auth, 0, 1 + encodedPropertiesSize(a.props));
  out.push_back(static_cast<char>(a.reason));
  encodeProperties(a.props, out);
}

void encodePingreq(std::string& out) { fixedHeader(out, PacketType::Pingreq, 0, 0); }
void encodePingresp(std::string& out) { fixedHeader(out, PacketType::Pingresp, 0, 0); }

}  // namespace petrel::mqtt
