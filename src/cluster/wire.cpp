#include "src/cluster/wire.h"

#include <memory>

#include "mqtt/properties.h"

namespace petrel::cluster {

namespace {

void put64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>(v >> shift & 0xFF);
}

uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}

constexpr uint8_t kRetain = 0x04;
constexpr uint8_t kProps = 0x08;
constexpr uint8_t kFromBridge = 0x10;

}  // namespace

void encodeWire(const Message& m, uint64_t node, uint64_t seq, std::string& out) {
  out.clear();
  const bool props = m.props && !m.props->empty();
  out.reserve(kWireHeader + m.payload.size() + (props ? mqtt::encodedPropertiesSize(*m.props) : 0));
  out += static_cast<char>(kWireVersion);
  out += static_cast<char>((m.qos & 3) | (m.retain ? kRetain : 0) | (props ? kProps : 0) |
                           (m.from_bridge ? kFromBridge : 0));
  put64(out, node);
  put64(out, seq);
  put64(out, static_cast<uint64_t>(m.expires_at_ms));
  if (props) mqtt::encodeProperties(*m.props, out);
  out += m.payload;
}

bool wireNode(std::string_view body, uint64_t& node) {
  if (body.size() < kWireHeader || static_cast<uint8_t>(body[0]) != kWireVersion) return false;
  node = get64(reinterpret_cast<const uint8_t*>(body.data()) + 2);
  return true;
}

bool decodeWire(const uint8_t* data, size_t len, Message& m, WireInfo& info) {
  if (len < kWireHeader || data[0] != kWireVersion) return false;
  const uint8_t flags = data[1];
  if ((flags & 3) == 3 || (flags & ~uint8_t(0x1F)) != 0) return false;
  m.qos = flags & 3;
  m.retain = (flags & kRetain) != 0;
  m.from_bridge = (flags & kFromBridge) != 0;
  info.node = get64(data + 2);
  info.seq = get64(data + 10);
  m.expires_at_ms = static_cast<int64_t>(get64(data + 18));
  size_t pos = kWireHeader;
  if (flags & kProps) {
    mqtt::Properties p;
    if (mqtt::decodeProperties(data, len, pos, mqtt::PropertyContext::Publish, p) != mqtt::Reason::Success)
      return false;
    if (!p.empty()) m.props = std::make_shared<const mqtt::Properties>(std::move(p));
  }
  m.payload.assign(reinterpret_cast<const char*>(data) + pos, len - pos);
  return true;
}

void encodeControl(ControlKind kind, uint64_t node, uint64_t gen, std::string_view filter, std::string& out,
                   uint64_t index) {
  out.clear();
  out += static_cast<char>(kWireVersion);
  out += static_cast<char>(kind);
  put64(out, node);
  put64(out, gen);
  put64(out, index);
  out.append(filter);
}

bool decodeControl(const uint8_t* data, size_t len, Control& out) {
  constexpr size_t kFixed = 26;
  if (len < kFixed || data[0] != kWireVersion) return false;
  const auto kind = static_cast<ControlKind>(data[1]);
  const bool with_rest = kind == ControlKind::Add || kind == ControlKind::Remove || kind == ControlKind::Status ||
                         kind == ControlKind::Adopted;
  if (!with_rest && kind != ControlKind::All && kind != ControlKind::End && kind != ControlKind::Hello &&
      kind != ControlKind::Bye && kind != ControlKind::Query)
    return false;
  if (with_rest != (len > kFixed)) return false;  // a filter or status where one belongs, and only there
  out.kind = kind;
  out.node = get64(data + 2);
  out.gen = get64(data + 10);
  out.index = get64(data + 18);
  out.filter = std::string_view(reinterpret_cast<const char*>(data) + kFixed, len - kFixed);
  return true;
}

void encodeStatus(const NodeStatus& s, std::string& out) {
  out.clear();
  for (uint64_t v : {s.clients, s.sessions, s.filters, s.sent, s.received, s.retained}) put64(out, v);
  out += s.name;
}

bool decodeStatus(std::string_view rest, NodeStatus& out) {
  constexpr size_t kFixed = 6 * 8;
  if (rest.size() <= kFixed) return false;  // a name is never empty
  const auto* d = reinterpret_cast<const uint8_t*>(rest.data());
  uint64_t* fields[] = {&out.clients, &out.sessions, &out.filters, &out.sent, &out.received, &out.retained};
  for (size_t i = 0; i < 6; ++i) *fields[i] = get64(d + 8 * i);
  out.name.assign(rest.substr(kFixed));
  return true;
}

void encodeRegistration(uint64_t node, uint64_t seq, std::string_view name, std::string& out) {
  out.clear();
  put64(out, node);
  put64(out, seq);
  out.append(name);
}

bool decodeRegistration(std::string_view value, Registration& out) {
  if (value.size() < 16) return false;
  const auto* d = reinterpret_cast<const uint8_t*>(value.data());
  out.node = get64(d);
  out.seq = get64(d + 8);
  out.name = value.substr(16);
  return true;
}

void appendBatchEntry(std::string_view topic, std::string_view body, std::string& out) {
  auto u32 = [&out](size_t v) {
    const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
    out.append(b, 4);
  };
  u32(topic.size());
  out.append(topic);
  u32(body.size());
  out.append(body);
}

bool nextBatchEntry(std::string_view batch, size_t& pos, std::string_view& topic, std::string_view& body,
                    bool& bad) {
  bad = false;
  if (pos >= batch.size()) return false;
  auto field = [&](std::string_view& v) {
    if (batch.size() - pos < 4) return false;
    const auto* p = reinterpret_cast<const uint8_t*>(batch.data() + pos);
    const size_t n = size_t(p[0]) << 24 | size_t(p[1]) << 16 | size_t(p[2]) << 8 | p[3];
    pos += 4;
    if (batch.size() - pos < n) return false;
    v = batch.substr(pos, n);
    pos += n;
    return true;
  };
  if (!field(topic) || !field(body)) {
    bad = true;
    return false;
  }
  return true;
}

}  // namespace petrel::cluster
