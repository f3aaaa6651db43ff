// Unit tests for mqtt/decoder and mqtt/encoder: round trips of every control
// packet for MQTT 3.1, 3.1.1 and 5.0, the incremental StreamDecoder, and the
// malformed-packet and protocol-error cases the specifications call out.
#include "mqtt/decoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "mqtt/codec_util.h"
#include "mqtt/encoder.h"

namespace petrel::mqtt {

// Readable names in failure messages. Internal linkage, so that other test
// files may define their own.
static void PrintTo(Reason r, std::ostream* os) {
  *os << "0x" << std::hex << int(static_cast<uint8_t>(r)) << std::dec << " (" << reasonName(r)
      << ")";
}
static void PrintTo(Version v, std::ostream* os) { *os << "level " << int(static_cast<uint8_t>(v)); }
static void PrintTo(PacketType t, std::ostream* os) { *os << packetTypeName(t); }

namespace {

using V = Version;

// ---------------------------------------------------------------------------
// Helpers

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

const uint8_t* u8p(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// A packet with the given first byte around `body`.
std::string packet(uint8_t first, const std::string& body) {
  std::string s;
  s.push_back(static_cast<char>(first));
  putVarint(s, static_cast<uint32_t>(body.size()));
  s += body;
  return s;
}

std::string str(const std::string& s) {
  std::string out;
  putString(out, s);
  return out;
}

std::string u16(uint16_t v) {
  std::string out;
  putU16(out, v);
  return out;
}

// The frame of a whole, single packet held in `wire`.
Frame frameOf(const std::string& wire) {
  Frame f;
  const FrameStatus st = peekFrame(u8p(wire), wire.size(), kMaxPacketSize, f);
  EXPECT_EQ(st, FrameStatus::Ok);
  EXPECT_EQ(f.total_len, wire.size());
  return f;
}

std::string bodyOf(const std::string& wire) {
  Frame f = frameOf(wire);
  return std::string(reinterpret_cast<const char*>(f.body), f.body_len);
}

// The same packet with a different first byte (flags).
std::string withFirstByte(std::string wire, uint8_t first) {
  wire[0] = static_cast<char>(first);
  return wire;
}

template <typename T>
Reason parseWire(const std::string& wire, V v, T& out) {
  Frame f = frameOf(wire);
  return parse(f, v, out);
}

Reason parseConnectWire(const std::string& wire, Connect& out) {
  Frame f = frameOf(wire);
  return parseConnect(f, out);
}

// Dispatches on the packet type, as a broker's read loop would.
Reason parseAny(const std::string& wire, V v) {
  Frame f = frameOf(wire);
  switch (f.type) {
    case PacketType::Connect: { Connect p; return parseConnect(f, p); }
    case PacketType::Connack: { Connack p; return parse(f, v, p); }
    case PacketType::Publish: { Publish p; return parse(f, v, p); }
    case PacketType::Puback:
    case PacketType::Pubrec:
    case PacketType::Pubrel:
    case PacketType::Pubcomp: { Ack p; return parse(f, v, p); }
    case PacketType::Subscribe: { Subscribe p; return parse(f, v, p); }
    case PacketType::Suback: { Suback p; return parse(f, v, p); }
    case PacketType::Unsubscribe: { Unsubscribe p; return parse(f, v, p); }
    case PacketType::Unsuback: { Unsuback p; return parse(f, v, p); }
    case PacketType::Disconnect: { Disconnect p; return parse(f, v, p); }
    case PacketType::Auth: { Auth p; return parse(f, v, p); }
    case PacketType::Pingreq:
    case PacketType::Pingresp: return parseEmpty(f);
    case PacketType::Reserved: break;
  }
  ADD_FAILURE() << "reserved packet type";
  return Reason::UnspecifiedError;
}

const char* versionName(V v) {
  switch (v) {
    case V::V31: return "MQTT31";
    case V::V311: return "MQTT311";
    case V::V5: return "MQTT5";
  }
  return "?";
}

void expectSame(const Connect& a, const Connect& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.clean_start, b.clean_start);
  EXPECT_EQ(a.keepalive, b.keepalive);
  EXPECT_EQ(a.client_id, b.client_id);
  EXPECT_EQ(a.username, b.username);
  EXPECT_EQ(a.password, b.password);
  EXPECT_TRUE(a.props == b.props);
  ASSERT_EQ(a.will.has_value(), b.will.has_value());
  if (a.will) {
    EXPECT_EQ(a.will->topic, b.will->topic);
    EXPECT_EQ(a.will->payload, b.will->payload);
    EXPECT_EQ(a.will->qos, b.will->qos);
    EXPECT_EQ(a.will->retain, b.will->retain);
    EXPECT_TRUE(a.will->props == b.will->props);
  }
}

void expectSame(const Publish& a, const Publish& b) {
  EXPECT_EQ(a.topic, b.topic);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.packet_id, b.packet_id);
  EXPECT_EQ(a.qos, b.qos);
  EXPECT_EQ(a.retain, b.retain);
  EXPECT_EQ(a.dup, b.dup);
  EXPECT_TRUE(a.props == b.props);
}

// The four acknowledgements and their fixed-header flags.
struct AckKind {
  PacketType type;
  uint8_t flags;
};
const AckKind kAcks[] = {
    {PacketType::Puback, 0x0},
    {PacketType::Pubrec, 0x0},
    {PacketType::Pubrel, 0x2},
    {PacketType::Pubcomp, 0x0},
};

// ---------------------------------------------------------------------------
// Round trips, for every protocol level

class DecoderRoundTrip : public ::testing::TestWithParam<V> {
 protected:
  V v() const { return GetParam(); }
  bool v5() const { return GetParam() == V::V5; }
};

INSTANTIATE_TEST_SUITE_P(Levels, DecoderRoundTrip, ::testing::Values(V::V31, V::V311, V::V5),
                         [](const ::testing::TestParamInfo<V>& i) {
                           return std::string(versionName(i.param));
                         });

Connect roundTripConnect(const Connect& c) {
  std::string wire;
  encode(c, wire);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0x10);
  Connect back;
  EXPECT_EQ(parseConnectWire(wire, back), Reason::Success);
  return back;
}

TEST_P(DecoderRoundTrip, ConnectMinimal) {
  Connect c;
  c.version = v();
  c.client_id = "client-1";
  c.keepalive = 60;
  c.clean_start = true;
  expectSame(roundTripConnect(c), c);
}

TEST_P(DecoderRoundTrip, ConnectNotCleanAndMaximumKeepAlive) {
  Connect c;
  c.version = v();
  c.client_id = "c";
  c.keepalive = 65535;
  c.clean_start = false;
  expectSame(roundTripConnect(c), c);
}

TEST_P(DecoderRoundTrip, ConnectWithWill) {
  for (uint8_t qos : {0, 1, 2}) {
    for (bool retain : {false, true}) {
      Connect c;
      c.version = v();
      c.client_id = "client-w";
      c.keepalive = 30;
      Will w;
      w.topic = "clients/client-w/status";
      w.payload = std::string("gone\0\xFF", 6);
      w.qos = qos;
      w.retain = retain;
      if (v5()) {
        w.props.will_delay_interval = 10;
        w.props.payload_format_indicator = 0;
        w.props.content_type = "text/plain";
        w.props.user_properties = {{"why", "test"}};
      }
      c.will = w;
      expectSame(roundTripConnect(c), c);
    }
  }
}

TEST_P(DecoderRoundTrip, ConnectWithUsername) {
  Connect c;
  c.version = v();
  c.client_id = "u";
  c.username = "alice";
  expectSame(roundTripConnect(c), c);
}

TEST_P(DecoderRoundTrip, ConnectWithUsernameAndPassword) {
  Connect c;
  c.version = v();
  c.client_id = "u";
  c.username = "alice";
  c.password = std::string("s3cr\0t\xFF", 7);  // binary data
  expectSame(roundTripConnect(c), c);
}

TEST_P(DecoderRoundTrip, ConnectWithEverything) {
  Connect c;
  c.version = v();
  c.client_id = "everything";
  c.clean_start = false;
  c.keepalive = 1234;
  Will w;
  w.topic = "last/will";
  w.payload = "bye";
  w.qos = 2;
  w.retain = true;
  if (v5()) {
    w.props.message_expiry_interval = 100;
    w.props.response_topic = "resp";
    w.props.correlation_data = "corr";
  }
  c.will = w;
  c.username = "";
  c.password = "";
  if (v5()) {
    c.props.session_expiry_interval = 3600;
    c.props.receive_maximum = 100;
    c.props.maximum_packet_size = 65536;
    c.props.topic_alias_maximum = 5;
    c.props.request_problem_information = 0;
    c.props.request_response_information = 1;
    c.props.authentication_method = "PLAIN";
    c.props.authentication_data = std::string("\0a\0b", 4);
    c.props.user_properties = {{"x", "1"}, {"x", "2"}};
  }
  expectSame(roundTripConnect(c), c);
}

TEST_P(DecoderRoundTrip, ConnectEmptyClientId) {
  if (v() == V::V31) GTEST_SKIP() << "MQTT 3.1 requires a client identifier";
  Connect c;
  c.version = v();
  c.client_id = "";
  expectSame(roundTripConnect(c), c);
}

TEST_P(DecoderRoundTrip, Connack) {
  for (bool sp : {false, true}) {
    Connack c;
    c.session_present = sp;
    std::string wire;
    encode(c, v(), wire);
    EXPECT_EQ(wire.size(), v5() ? 5u : 4u);
    Connack back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
    EXPECT_EQ(back.session_present, sp);
    EXPECT_EQ(back.reason, Reason::Success);
    EXPECT_TRUE(back.props.empty());
  }
}

TEST_P(DecoderRoundTrip, ConnackFailureWithProperties) {
  if (!v5()) GTEST_SKIP() << "reason codes and properties are MQTT 5";
  Connack c;
  c.reason = Reason::NotAuthorized;
  c.props.reason_string = "no";
  c.props.server_reference = "elsewhere";
  std::string wire;
  encode(c, v(), wire);
  Connack back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_FALSE(back.session_present);
  EXPECT_EQ(back.reason, Reason::NotAuthorized);
  EXPECT_EQ(back.props, c.props);
}

TEST_P(DecoderRoundTrip, ConnackWithServerProperties) {
  if (!v5()) GTEST_SKIP();
  Connack c;
  c.session_present = true;
  c.props.assigned_client_identifier = "auto-42";
  c.props.server_keep_alive = 120;
  c.props.receive_maximum = 10;
  c.props.maximum_qos = 1;
  c.props.retain_available = 0;
  c.props.topic_alias_maximum = 16;
  c.props.maximum_packet_size = 1 << 20;
  c.props.wildcard_subscription_available = 1;
  c.props.subscription_identifier_available = 1;
  c.props.shared_subscription_available = 0;
  std::string wire;
  encode(c, v(), wire);
  Connack back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_TRUE(back.session_present);
  EXPECT_EQ(back.props, c.props);
}

TEST_P(DecoderRoundTrip, PublishAllQosAndFlags) {
  struct Case {
    uint8_t qos;
    bool dup;
    bool retain;
    uint16_t id;
  };
  for (const Case& k : {Case{0, false, false, 0}, Case{0, false, true, 0},
                        Case{1, false, false, 1}, Case{1, true, false, 0xFFFF},
                        Case{1, true, true, 77}, Case{2, false, true, 2},
                        Case{2, true, false, 3}, Case{2, true, true, 0x8000}}) {
    Publish p;
    p.topic = "sport/tennis/player1";
    p.payload = "score 15-0";
    p.qos = k.qos;
    p.dup = k.dup;
    p.retain = k.retain;
    p.packet_id = k.id;
    std::string wire;
    encode(p, v(), wire);
    EXPECT_EQ(wire.size(), encodedSize(p, v()));
    const uint8_t first = static_cast<uint8_t>(wire[0]);
    EXPECT_EQ(first >> 4, 3);
    EXPECT_EQ(first & 0x0F, (k.dup ? 8 : 0) | (k.qos << 1) | (k.retain ? 1 : 0));
    Publish back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success)
        << "qos " << int(k.qos) << " dup " << k.dup << " retain " << k.retain;
    expectSame(back, p);
  }
}

TEST_P(DecoderRoundTrip, PublishPayloadShapes) {
  for (size_t n : {size_t(0), size_t(1), size_t(100), size_t(200), size_t(20000),
                   size_t(2100000)}) {
    Publish p;
    p.topic = "big";
    p.qos = 1;
    p.packet_id = 9;
    p.payload.resize(n);
    for (size_t i = 0; i < n; ++i) p.payload[i] = static_cast<char>(i * 131 + 7);
    std::string wire;
    encode(p, v(), wire);
    EXPECT_EQ(wire.size(), encodedSize(p, v())) << "payload " << n;
    Publish back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success) << "payload " << n;
    EXPECT_EQ(back.payload.size(), n);
    EXPECT_TRUE(back.payload == p.payload);
  }
}

TEST_P(DecoderRoundTrip, PublishUtf8Topic) {
  Publish p;
  p.topic = "caf\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x98\x80";
  p.payload = "x";
  std::string wire;
  encode(p, v(), wire);
  Publish back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.topic, p.topic);
}

TEST_P(DecoderRoundTrip, PublishWithProperties) {
  if (!v5()) GTEST_SKIP();
  Publish p;
  p.topic = "";  // replaced by the topic alias
  p.payload = "{}";
  p.qos = 1;
  p.packet_id = 5;
  p.props.topic_alias = 3;
  p.props.payload_format_indicator = 1;
  p.props.message_expiry_interval = 60;
  p.props.content_type = "application/json";
  p.props.response_topic = "r/1";
  p.props.correlation_data = std::string("\x01\x00", 2);
  p.props.subscription_identifiers = {1, 2, 300000};
  p.props.user_properties = {{"a", "b"}};
  std::string wire;
  encode(p, v(), wire);
  EXPECT_EQ(wire.size(), encodedSize(p, v()));
  Publish back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  expectSame(back, p);
}

TEST_P(DecoderRoundTrip, PublishPropertiesAreNotWrittenBeforeV5) {
  if (v5()) GTEST_SKIP();
  Publish p;
  p.topic = "t";
  p.payload = "x";
  p.props.message_expiry_interval = 60;
  std::string wire;
  encode(p, v(), wire);
  EXPECT_EQ(wire, bytes({0x30, 0x04, 0x00, 0x01, 't', 'x'}));
}

TEST_P(DecoderRoundTrip, AcksShortForm) {
  for (const AckKind& k : kAcks) {
    Ack a;
    a.type = k.type;
    a.packet_id = 0x1234;
    std::string wire;
    encode(a, v(), wire);
    EXPECT_EQ(wire, packet(static_cast<uint8_t>((static_cast<int>(k.type) << 4) | k.flags),
                           bytes({0x12, 0x34})));
    Ack back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success) << packetTypeName(k.type);
    EXPECT_EQ(back.type, k.type);
    EXPECT_EQ(back.packet_id, 0x1234);
    EXPECT_EQ(back.reason, Reason::Success);
    EXPECT_TRUE(back.props.empty());
  }
}

TEST_P(DecoderRoundTrip, AcksWithReasonOnly) {
  for (const AckKind& k : kAcks) {
    Ack a;
    a.type = k.type;
    a.packet_id = 7;
    a.reason = k.type == PacketType::Pubrel || k.type == PacketType::Pubcomp
                   ? Reason::PacketIdentifierNotFound
                   : Reason::NoMatchingSubscribers;
    std::string wire;
    encode(a, v(), wire);
    Ack back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
    EXPECT_EQ(back.type, k.type);
    EXPECT_EQ(back.packet_id, 7);
    if (v5()) {
      EXPECT_EQ(wire.size(), 5u);  // no property length when there are none
      EXPECT_EQ(back.reason, a.reason);
    } else {
      EXPECT_EQ(wire.size(), 4u);  // MQTT 3 has no reason code
      EXPECT_EQ(back.reason, Reason::Success);
    }
  }
}

TEST_P(DecoderRoundTrip, AcksWithReasonAndProperties) {
  if (!v5()) GTEST_SKIP();
  for (const AckKind& k : kAcks) {
    for (Reason r : {Reason::Success, Reason::ImplementationSpecificError}) {
      Ack a;
      a.type = k.type;
      a.packet_id = 65535;
      a.reason = r;
      a.props.reason_string = "why not";
      a.props.user_properties = {{"k", "v"}, {"k", "w"}};
      std::string wire;
      encode(a, v(), wire);
      Ack back;
      ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
      EXPECT_EQ(back.type, k.type);
      EXPECT_EQ(back.packet_id, 65535);
      EXPECT_EQ(back.reason, r);
      EXPECT_EQ(back.props, a.props);
    }
  }
}

TEST_P(DecoderRoundTrip, AckReasonWithEmptyPropertyList) {
  if (!v5()) GTEST_SKIP();
  // §3.4.2.1: a reason code followed by a zero-length property list.
  Ack back;
  ASSERT_EQ(parseWire(packet(0x40, bytes({0x00, 0x05, 0x10, 0x00})), v(), back),
            Reason::Success);
  EXPECT_EQ(back.packet_id, 5);
  EXPECT_EQ(back.reason, Reason::NoMatchingSubscribers);
}

TEST_P(DecoderRoundTrip, SubscribeWithOptions) {
  Subscribe s;
  s.packet_id = 10;
  s.topics.push_back({"a/b", 0, false, false, 0});
  s.topics.push_back({"c/+", 1, v5(), false, static_cast<uint8_t>(v5() ? 1 : 0)});
  s.topics.push_back({"d/#", 2, false, v5(), static_cast<uint8_t>(v5() ? 2 : 0)});
  s.topics.push_back({"$share/g/e", 1, v5(), v5(), 0});
  s.topics.push_back({"\xC3\xA9t\xC3\xA9/+", 2, false, false, 0});
  if (v5()) {
    s.props.subscription_identifiers = {42};
    s.props.user_properties = {{"u", "p"}};
  }
  std::string wire;
  encode(s, v(), wire);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0x82);
  Subscribe back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.packet_id, 10);
  ASSERT_EQ(back.topics.size(), s.topics.size());
  for (size_t i = 0; i < s.topics.size(); ++i) {
    EXPECT_EQ(back.topics[i].filter, s.topics[i].filter);
    EXPECT_EQ(back.topics[i].qos, s.topics[i].qos);
    EXPECT_EQ(back.topics[i].no_local, s.topics[i].no_local);
    EXPECT_EQ(back.topics[i].retain_as_published, s.topics[i].retain_as_published);
    EXPECT_EQ(back.topics[i].retain_handling, s.topics[i].retain_handling);
  }
  EXPECT_EQ(back.props, s.props);
}

TEST_P(DecoderRoundTrip, Suback) {
  Suback s;
  s.packet_id = 10;
  s.reasons = {0x00, 0x01, 0x02, 0x80};
  if (v5()) {
    s.reasons.insert(s.reasons.end(), {0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2});
    s.props.reason_string = "partial";
  }
  std::string wire;
  encode(s, v(), wire);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0x90);
  Suback back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.packet_id, 10);
  EXPECT_EQ(back.reasons, s.reasons);
  EXPECT_EQ(back.props, s.props);
}

TEST_P(DecoderRoundTrip, Unsubscribe) {
  Unsubscribe u;
  u.packet_id = 0xBEEF;
  u.filters = {"a/b", "c/#", "+", "$share/g/x"};
  if (v5()) u.props.user_properties = {{"k", "v"}};
  std::string wire;
  encode(u, v(), wire);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0xA2);
  Unsubscribe back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.packet_id, 0xBEEF);
  EXPECT_EQ(back.filters, u.filters);
  EXPECT_EQ(back.props, u.props);
}

TEST_P(DecoderRoundTrip, Unsuback) {
  Unsuback u;
  u.packet_id = 3;
  if (v5()) {
    u.reasons = {0x00, 0x11, 0x87, 0x8F};
    u.props.reason_string = "done";
  }
  std::string wire;
  encode(u, v(), wire);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0xB0);
  if (!v5()) {
    EXPECT_EQ(wire, bytes({0xB0, 0x02, 0x00, 0x03}));
  }
  Unsuback back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.packet_id, 3);
  EXPECT_EQ(back.reasons, u.reasons);
  EXPECT_EQ(back.props, u.props);
}

TEST_P(DecoderRoundTrip, PingreqAndPingresp) {
  std::string req, resp;
  encodePingreq(req);
  encodePingresp(resp);
  EXPECT_EQ(req, bytes({0xC0, 0x00}));
  EXPECT_EQ(resp, bytes({0xD0, 0x00}));
  EXPECT_EQ(frameOf(req).type, PacketType::Pingreq);
  EXPECT_EQ(frameOf(resp).type, PacketType::Pingresp);
  EXPECT_EQ(parseAny(req, v()), Reason::Success);
  EXPECT_EQ(parseAny(resp, v()), Reason::Success);
}

TEST_P(DecoderRoundTrip, DisconnectNormal) {
  Disconnect d;
  std::string wire;
  encode(d, v(), wire);
  EXPECT_EQ(wire, bytes({0xE0, 0x00}));
  Disconnect back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.reason, Reason::Success);
}

TEST_P(DecoderRoundTrip, DisconnectWithReason) {
  Disconnect d;
  d.reason = Reason::DisconnectWithWill;
  std::string wire;
  encode(d, v(), wire);
  if (v5()) {
    EXPECT_EQ(wire, bytes({0xE0, 0x01, 0x04}));
  } else {
    EXPECT_EQ(wire, bytes({0xE0, 0x00}));  // MQTT 3 DISCONNECT has no body
  }
  Disconnect back;
  ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
  EXPECT_EQ(back.reason, v5() ? Reason::DisconnectWithWill : Reason::Success);
}

TEST_P(DecoderRoundTrip, DisconnectWithProperties) {
  if (!v5()) GTEST_SKIP();
  for (Reason r : {Reason::Success, Reason::ServerShuttingDown, Reason::UseAnotherServer}) {
    Disconnect d;
    d.reason = r;
    d.props.session_expiry_interval = 0;
    d.props.reason_string = "maintenance";
    d.props.server_reference = "b.example";
    d.props.user_properties = {{"a", "1"}};
    std::string wire;
    encode(d, v(), wire);
    Disconnect back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
    EXPECT_EQ(back.reason, r);
    EXPECT_EQ(back.props, d.props);
  }
}

TEST_P(DecoderRoundTrip, Auth) {
  if (!v5()) GTEST_SKIP() << "AUTH exists only in MQTT 5";
  {
    Auth a;
    std::string wire;
    encode(a, wire);
    EXPECT_EQ(wire, bytes({0xF0, 0x00}));
    Auth back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
    EXPECT_EQ(back.reason, Reason::Success);
  }
  for (Reason r : {Reason::Success, Reason::ContinueAuthentication, Reason::ReAuthenticate}) {
    Auth a;
    a.reason = r;
    a.props.authentication_method = "SCRAM-SHA-1";
    a.props.authentication_data = std::string("\x00\x10\x20", 3);
    a.props.reason_string = "step";
    std::string wire;
    encode(a, wire);
    Auth back;
    ASSERT_EQ(parseWire(wire, v(), back), Reason::Success);
    EXPECT_EQ(back.reason, r);
    EXPECT_EQ(back.props, a.props);
  }
  // A reason code alone (no property length) is accepted too.
  Auth back;
  ASSERT_EQ(parseWire(bytes({0xF0, 0x01, 0x18}), v(), back), Reason::Success);
  EXPECT_EQ(back.reason, Reason::ContinueAuthentication);
}

// ---------------------------------------------------------------------------
// Exact wire forms

TEST(EncoderWireForm, ConnectV311) {
  Connect c;
  c.version = V::V311;
  c.client_id = "c";
  c.keepalive = 60;
  std::string wire;
  encode(c, wire);
  EXPECT_EQ(wire, bytes({0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
                         0x00, 0x01, 'c'}));
}

TEST(EncoderWireForm, ConnectV31UsesMQIsdp) {
  Connect c;
  c.version = V::V31;
  c.client_id = "c";
  c.keepalive = 60;
  std::string wire;
  encode(c, wire);
  EXPECT_EQ(wire, bytes({0x10, 0x0F, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02,
                         0x00, 0x3C, 0x00, 0x01, 'c'}));
}

TEST(EncoderWireForm, ConnectV5HasPropertyLength) {
  Connect c;
  c.version = V::V5;
  c.client_id = "c";
  c.keepalive = 60;
  std::string wire;
  encode(c, wire);
  EXPECT_EQ(wire, bytes({0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3C,
                         0x00, 0x00, 0x01, 'c'}));
}

TEST(EncoderWireForm, ConnectFlagsByte) {
  Connect c;
  c.version = V::V311;
  c.client_id = "c";
  c.will = Will{"t", "p", 1, true, {}};
  c.username = "u";
  c.password = "p";
  std::string wire;
  encode(c, wire);
  // user, password, will retain, will QoS 1, will, clean start
  EXPECT_EQ(static_cast<uint8_t>(wire[9]), 0xEE);
  c.will->qos = 2;
  c.will->retain = false;
  c.clean_start = false;
  c.password.reset();
  wire.clear();
  encode(c, wire);
  EXPECT_EQ(static_cast<uint8_t>(wire[9]), 0x80 | 0x10 | 0x04);
}

TEST(EncoderWireForm, Connack) {
  Connack c;
  c.session_present = true;
  std::string v3, v5;
  encode(c, V::V311, v3);
  encode(c, V::V5, v5);
  EXPECT_EQ(v3, bytes({0x20, 0x02, 0x01, 0x00}));
  EXPECT_EQ(v5, bytes({0x20, 0x03, 0x01, 0x00, 0x00}));
}

TEST(EncoderWireForm, ConnackV3ReturnCodes) {
  const std::pair<Reason, uint8_t> cases[] = {
      {Reason::Success, 0},
      {Reason::UnsupportedProtocolVersion, 1},
      {Reason::ClientIdentifierNotValid, 2},
      {Reason::ServerUnavailable, 3},
      {Reason::ServerBusy, 3},
      {Reason::BadUserNameOrPassword, 4},
      {Reason::NotAuthorized, 5},
  };
  for (auto [r, code] : cases) {
    Connack c;
    c.reason = r;
    std::string wire;
    encode(c, V::V311, wire);
    EXPECT_EQ(wire, bytes({0x20, 0x02, 0x00, code})) << reasonName(r);
  }
}

TEST(EncoderWireForm, Publish) {
  Publish p;
  p.topic = "a/b";
  p.payload = "hi";
  p.qos = 1;
  p.packet_id = 10;
  std::string v3, v5;
  encode(p, V::V311, v3);
  encode(p, V::V5, v5);
  EXPECT_EQ(v3, bytes({0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'}));
  EXPECT_EQ(v5, bytes({0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 0x00, 'h', 'i'}));
}

TEST(EncoderWireForm, SubscribeOptionsByte) {
  Subscribe s;
  s.packet_id = 1;
  s.topics.push_back({"t", 1, true, true, 2});
  std::string v3, v5;
  encode(s, V::V311, v3);
  encode(s, V::V5, v5);
  EXPECT_EQ(v3, bytes({0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 't', 0x01}));
  EXPECT_EQ(v5, bytes({0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 't', 0x2D}));
}

TEST(EncoderWireForm, AckV5Forms) {
  Ack a;
  a.type = PacketType::Pubrel;
  a.packet_id = 1;
  std::string w1, w2, w3;
  encode(a, V::V5, w1);
  EXPECT_EQ(w1, bytes({0x62, 0x02, 0x00, 0x01}));
  a.reason = Reason::PacketIdentifierNotFound;
  encode(a, V::V5, w2);
  EXPECT_EQ(w2, bytes({0x62, 0x03, 0x00, 0x01, 0x92}));
  a.props.reason_string = "x";
  encode(a, V::V5, w3);
  EXPECT_EQ(w3, bytes({0x62, 0x08, 0x00, 0x01, 0x92, 0x04, 0x1F, 0x00, 0x01, 'x'}));
}

TEST(EncoderWireForm, EncoderAppends) {
  std::string out = "prefix";
  encodePingreq(out);
  Disconnect d;
  encode(d, V::V311, out);
  EXPECT_EQ(out, "prefix" + bytes({0xC0, 0x00, 0xE0, 0x00}));
}

// The delivery path's PUBLISH (encodePublish, written in place) against the
// wire form built here field by field: every level and QoS, with and without
// properties, remaining lengths of one to three bytes, appended after what a
// connection's output already holds.
TEST(EncoderWireForm, PublishFromItsPartsAppendsTheExactWireForm) {
  Properties props;
  props.content_type = "text/plain";
  const std::string prop_block = bytes({0x0D, 0x03, 0x00, 0x0A}) + "text/plain";
  for (V v : {V::V31, V::V311, V::V5}) {
    for (uint8_t qos : {0, 1, 2}) {
      for (const Properties* p : {static_cast<const Properties*>(nullptr), static_cast<const Properties*>(&props)}) {
        for (size_t topic_len : {size_t(0), size_t(5), size_t(300)}) {
          for (size_t payload_len : {size_t(0), size_t(64), size_t(200), size_t(20000)}) {
            if (topic_len == 0 && v != V::V5) continue;  // an empty topic is an MQTT 5 alias
            const std::string topic(topic_len, 't');
            std::string payload(payload_len, '\0');
            for (size_t i = 0; i < payload_len; ++i) payload[i] = static_cast<char>(i * 7 + 1);
            std::string body = bytes({int(topic_len >> 8), int(topic_len & 0xFF)}) + topic;
            if (qos) body += bytes({0x12, 0x34});
            if (v == V::V5) body += p ? prop_block : bytes({0x00});
            body += payload;
            std::string want = "held";
            want += static_cast<char>(0x30 | 0x08 | (qos << 1) | 1);
            for (size_t n = body.size();;) {  // the remaining length, 7 bits a byte
              const uint8_t low = n & 0x7F;
              n >>= 7;
              want += static_cast<char>(n ? low | 0x80 : low);
              if (!n) break;
            }
            want += body;
            std::string out = "held";
            out.shrink_to_fit();  // so that the PUBLISH makes it grow
            encodePublish(out, v, topic, payload, qos, true, true, 0x1234, p);
            ASSERT_EQ(out, want) << "level " << int(v) << " qos " << int(qos) << " properties " << (p != nullptr)
                                 << " topic " << topic_len << " payload " << payload_len;
            EXPECT_EQ(out.size() - 4, publishSize(v, topic, qos, p, payload_len));
          }
        }
      }
    }
  }
}

TEST(EncoderWireForm, ParseConnectReportsTheLevel) {
  for (V v : {V::V31, V::V311, V::V5}) {
    Connect c;
    c.version = v;
    c.client_id = "x";
    std::string wire;
    encode(c, wire);
    Connect back;
    back.version = v == V::V5 ? V::V31 : V::V5;
    ASSERT_EQ(parseConnectWire(wire, back), Reason::Success);
    EXPECT_EQ(back.version, v);
  }
}

// §3.2.2.3 of 3.1.1: a CONNACK return code decoded at level 3/4 should mean
// what the encoder meant when it wrote it.
TEST(EncoderWireForm, ConnackV3ReturnCodeDecodesToTheSameReason) {
  for (Reason r : {Reason::UnsupportedProtocolVersion, Reason::ClientIdentifierNotValid,
                   Reason::ServerUnavailable, Reason::BadUserNameOrPassword,
                   Reason::NotAuthorized}) {
    Connack c;
    c.reason = r;
    std::string wire;
    encode(c, V::V311, wire);
    Connack back;
    ASSERT_EQ(parseWire(wire, V::V311, back), Reason::Success);
    EXPECT_EQ(back.reason, r) << reasonName(r) << ": return code "
                              << int(static_cast<uint8_t>(wire[3]))
                              << " decoded as reason 0x" << std::hex
                              << int(static_cast<uint8_t>(back.reason));
  }
}

// ---------------------------------------------------------------------------
// peekFrame and StreamDecoder

struct Copied {
  PacketType type;
  uint8_t flags;
  std::string body;
  uint32_t total_len;
  bool operator==(const Copied&) const = default;
};

Copied copy(const Frame& f) {
  return {f.type, f.flags, std::string(reinterpret_cast<const char*>(f.body), f.body_len),
          f.total_len};
}

std::vector<std::string> samplePackets() {
  std::vector<std::string> pkts;
  std::string w;
  encodePingreq(w);
  pkts.push_back(w);
  {
    Connect c;
    c.version = V::V5;
    c.client_id = "stream";
    c.will = Will{"w", "x", 1, false, {}};
    c.props.session_expiry_interval = 10;
    w.clear();
    encode(c, w);
    pkts.push_back(w);
  }
  for (size_t n : {size_t(0), size_t(5), size_t(120), size_t(125), size_t(200), size_t(16380),
                   size_t(20000), size_t(70000)}) {
    Publish p;
    p.topic = "t/" + std::to_string(n);
    p.qos = n % 3;
    p.packet_id = p.qos ? static_cast<uint16_t>(n % 60000 + 1) : 0;
    p.payload.assign(n, static_cast<char>('a' + n % 26));
    w.clear();
    encode(p, V::V5, w);
    pkts.push_back(w);
  }
  {
    Subscribe s;
    s.packet_id = 4;
    s.topics = {{"a/#", 1, false, false, 0}, {"b/+", 2, true, true, 1}};
    w.clear();
    encode(s, V::V5, w);
    pkts.push_back(w);
  }
  for (const AckKind& k : kAcks) {
    Ack a;
    a.type = k.type;
    a.packet_id = 99;
    w.clear();
    encode(a, V::V5, w);
    pkts.push_back(w);
  }
  {
    Disconnect d;
    d.reason = Reason::DisconnectWithWill;
    w.clear();
    encode(d, V::V5, w);
    pkts.push_back(w);
  }
  w.clear();
  encodePingresp(w);
  pkts.push_back(w);
  return pkts;
}

std::vector<Copied> expectedFrames(const std::vector<std::string>& pkts) {
  std::vector<Copied> out;
  for (const auto& p : pkts) out.push_back(copy(frameOf(p)));
  return out;
}

std::string concat(const std::vector<std::string>& pkts) {
  std::string s;
  for (const auto& p : pkts) s += p;
  return s;
}

// Feeds `data` to a StreamDecoder in chunks of the sizes `chunk()` returns,
// collecting every frame as soon as it is complete.
std::vector<Copied> feed(const std::string& data, const std::function<size_t()>& chunk,
                         const std::function<bool()>& compact_now = nullptr) {
  StreamDecoder dec;
  std::vector<Copied> frames;
  size_t off = 0;
  while (off < data.size()) {
    const size_t n = std::min(std::max<size_t>(chunk(), 1), data.size() - off);
    size_t avail = 0;
    uint8_t* w = dec.writeSpace(n, avail);
    EXPECT_GE(avail, n);
    std::memcpy(w, data.data() + off, n);
    dec.commit(n);
    off += n;
    Frame f;
    FrameStatus st;
    while ((st = dec.next(f)) == FrameStatus::Ok) frames.push_back(copy(f));
    EXPECT_EQ(st, FrameStatus::Incomplete);
    if (compact_now && compact_now()) dec.compact();
  }
  EXPECT_EQ(dec.buffered(), 0u);
  return frames;
}

TEST(StreamDecoderTest, OneByteAtATime) {
  const auto pkts = samplePackets();
  const auto frames = feed(concat(pkts), [] { return size_t(1); });
  EXPECT_TRUE(frames == expectedFrames(pkts));
  EXPECT_EQ(frames.size(), pkts.size());
}

TEST(StreamDecoderTest, RandomChunkSizes) {
  const auto pkts = samplePackets();
  const std::string data = concat(pkts);
  const auto expected = expectedFrames(pkts);
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> size(1, seed % 2 ? 17 : 9000);
    std::bernoulli_distribution compact(0.3);
    const auto frames = feed(
        data, [&] { return size(rng); }, [&] { return compact(rng); });
    EXPECT_TRUE(frames == expected) << "seed " << seed;
  }
}

TEST(StreamDecoderTest, SocketStyleReadsIntoTheOfferedSpace) {
  // Read as a socket would: ask for a little room, fill up to what is offered.
  const auto pkts = samplePackets();
  const std::string data = concat(pkts);
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> want(1, 4096);
  StreamDecoder dec;
  std::vector<Copied> frames;
  size_t off = 0;
  while (off < data.size()) {
    size_t avail = 0;
    uint8_t* w = dec.writeSpace(want(rng), avail);
    ASSERT_GT(avail, 0u);
    const size_t n = std::min(avail, data.size() - off);
    std::memcpy(w, data.data() + off, n);
    dec.commit(n);
    off += n;
    Frame f;
    while (dec.next(f) == FrameStatus::Ok) frames.push_back(copy(f));
    dec.compact();
  }
  EXPECT_TRUE(frames == expectedFrames(pkts));
}

TEST(StreamDecoderTest, AllInOneFeed) {
  const auto pkts = samplePackets();
  const auto frames = feed(concat(pkts), [] { return size_t(1) << 30; });
  EXPECT_TRUE(frames == expectedFrames(pkts));
}

TEST(StreamDecoderTest, ManySmallPacketsInOneFeed) {
  std::vector<std::string> pkts;
  for (int i = 0; i < 2000; ++i) {
    Publish p;
    p.topic = "m";
    p.qos = 1;
    p.packet_id = static_cast<uint16_t>(i + 1);
    p.payload = std::to_string(i);
    std::string w;
    encode(p, V::V311, w);
    pkts.push_back(w);
  }
  const std::string data = concat(pkts);
  StreamDecoder dec;
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(data.size(), avail);
  ASSERT_GE(avail, data.size());
  std::memcpy(w, data.data(), data.size());
  dec.commit(data.size());
  EXPECT_EQ(dec.buffered(), data.size());
  Frame f;
  int n = 0;
  while (dec.next(f) == FrameStatus::Ok) {
    Publish p;
    ASSERT_EQ(parse(f, V::V311, p), Reason::Success);
    EXPECT_EQ(p.packet_id, n + 1);
    EXPECT_EQ(p.payload, std::to_string(n));
    ++n;
  }
  EXPECT_EQ(n, 2000);
  EXPECT_EQ(dec.buffered(), 0u);
}

TEST(StreamDecoderTest, PartialPacketStaysBuffered) {
  Publish p;
  p.topic = "t";
  p.payload = std::string(50, 'x');
  std::string wire;
  encode(p, V::V311, wire);
  StreamDecoder dec;
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(10, avail);
  std::memcpy(w, wire.data(), 10);
  dec.commit(10);
  Frame f;
  EXPECT_EQ(dec.next(f), FrameStatus::Incomplete);
  EXPECT_EQ(dec.buffered(), 10u);
  EXPECT_EQ(dec.next(f), FrameStatus::Incomplete);  // asking again changes nothing
  w = dec.writeSpace(wire.size() - 10, avail);
  std::memcpy(w, wire.data() + 10, wire.size() - 10);
  dec.commit(wire.size() - 10);
  ASSERT_EQ(dec.next(f), FrameStatus::Ok);
  EXPECT_TRUE(copy(f) == copy(frameOf(wire)));
  EXPECT_EQ(dec.next(f), FrameStatus::Incomplete);
}

TEST(StreamDecoderTest, OffersRoomForAnAnnouncedLargePacket) {
  std::string hdr;
  hdr.push_back(0x30);
  putVarint(hdr, 100000 - 4);  // a 3-byte length: 100000 bytes in all
  StreamDecoder dec;
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(hdr.size(), avail);
  std::memcpy(w, hdr.data(), hdr.size());
  dec.commit(hdr.size());
  Frame f;
  ASSERT_EQ(dec.next(f), FrameStatus::Incomplete);
  dec.writeSpace(1, avail);
  EXPECT_GE(avail, 100000 - hdr.size());
}

TEST(StreamDecoderTest, TooLargeFromTheFixedHeaderAlone) {
  // A 10 MB PUBLISH against a 1 MB limit: the first 5 bytes are enough.
  constexpr uint32_t kTotal = 10'000'000;
  std::string hdr;
  hdr.push_back(0x30);
  putVarint(hdr, kTotal - 5);
  ASSERT_EQ(hdr.size(), 5u);

  StreamDecoder dec(1u << 20);
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(2, avail);
  std::memcpy(w, hdr.data(), 2);
  dec.commit(2);
  Frame f;
  EXPECT_EQ(dec.next(f), FrameStatus::Incomplete);  // length not complete yet
  w = dec.writeSpace(3, avail);
  std::memcpy(w, hdr.data() + 2, 3);
  dec.commit(3);
  ASSERT_EQ(dec.next(f), FrameStatus::TooLarge);
  EXPECT_EQ(f.total_len, kTotal);

  Frame g;
  ASSERT_EQ(peekFrame(u8p(hdr), hdr.size(), 1u << 20, g), FrameStatus::TooLarge);
  EXPECT_EQ(g.total_len, kTotal);
  EXPECT_EQ(g.type, PacketType::Publish);
}

TEST(StreamDecoderTest, MaximumPacketSizeIsInclusive) {
  Publish p;
  p.topic = "t";
  p.payload = std::string(100, 'x');
  std::string wire;
  encode(p, V::V311, wire);
  const uint32_t size = static_cast<uint32_t>(wire.size());
  Frame f;
  EXPECT_EQ(peekFrame(u8p(wire), wire.size(), size, f), FrameStatus::Ok);
  EXPECT_EQ(peekFrame(u8p(wire), wire.size(), size - 1, f), FrameStatus::TooLarge);

  StreamDecoder dec(size - 1);
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(wire.size(), avail);
  std::memcpy(w, wire.data(), wire.size());
  dec.commit(wire.size());
  EXPECT_EQ(dec.next(f), FrameStatus::TooLarge);
  dec.setMaxPacketSize(size);
  ASSERT_EQ(dec.next(f), FrameStatus::Ok);
  EXPECT_EQ(f.total_len, size);
}

TEST(StreamDecoderTest, LargestRemainingLengthIsNotTooLargeByDefault) {
  const std::string hdr = bytes({0x30, 0xFF, 0xFF, 0xFF, 0x7F});
  Frame f;
  EXPECT_EQ(peekFrame(u8p(hdr), hdr.size(), kMaxPacketSize, f), FrameStatus::Incomplete);
  EXPECT_EQ(peekFrame(u8p(hdr), hdr.size(), kMaxPacketSize - 1, f), FrameStatus::TooLarge);
  EXPECT_EQ(f.total_len, kMaxPacketSize);
}

TEST(StreamDecoderTest, FiveByteRemainingLengthIsMalformed) {
  for (const std::string& s : {bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF}),
                               bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}),
                               bytes({0x30, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00})}) {
    Frame f;
    EXPECT_EQ(peekFrame(u8p(s), s.size(), kMaxPacketSize, f), FrameStatus::Malformed);
    StreamDecoder dec;
    size_t avail = 0;
    uint8_t* w = dec.writeSpace(s.size(), avail);
    std::memcpy(w, s.data(), s.size());
    dec.commit(s.size());
    EXPECT_EQ(dec.next(f), FrameStatus::Malformed);
  }
  // Four continuation bytes so far: still waiting for the fifth.
  const std::string four = bytes({0x30, 0xFF, 0xFF, 0xFF});
  Frame f;
  EXPECT_EQ(peekFrame(u8p(four), four.size(), kMaxPacketSize, f), FrameStatus::Incomplete);
}

TEST(StreamDecoderTest, ShortInputIsIncomplete) {
  Frame f;
  const std::string one = bytes({0xC0});
  EXPECT_EQ(peekFrame(u8p(one), 0, kMaxPacketSize, f), FrameStatus::Incomplete);
  EXPECT_EQ(peekFrame(u8p(one), 1, kMaxPacketSize, f), FrameStatus::Incomplete);
  const std::string two = bytes({0xC0, 0x00});
  EXPECT_EQ(peekFrame(u8p(two), 2, kMaxPacketSize, f), FrameStatus::Ok);
  EXPECT_EQ(f.type, PacketType::Pingreq);
  EXPECT_EQ(f.body_len, 0u);
  EXPECT_EQ(f.total_len, 2u);
}

TEST(StreamDecoderTest, CompactReleasesALargeBuffer) {
  Publish p;
  p.topic = "big";
  p.payload = std::string(2 << 20, 'x');
  std::string wire;
  encode(p, V::V311, wire);
  StreamDecoder dec;
  Frame f;
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(wire.size(), avail);
  std::memcpy(w, wire.data(), wire.size());
  dec.commit(wire.size());
  ASSERT_EQ(dec.next(f), FrameStatus::Ok);
  dec.compact();
  dec.writeSpace(1, avail);
  EXPECT_LT(avail, size_t(1) << 20);
}

// After a large packet, a few bytes of the next packet's fixed header (its
// Remaining Length not yet complete) must not make the decoder reserve room
// for a packet of the previous packet's size.
TEST(StreamDecoderTest, IncompleteHeaderDoesNotReuseThePreviousLength) {
  Publish p;
  p.topic = "big";
  p.payload = std::string(2 << 20, 'x');
  std::string wire;
  encode(p, V::V311, wire);
  StreamDecoder dec;
  Frame f;  // reused across calls, as a read loop does
  size_t avail = 0;
  uint8_t* w = dec.writeSpace(wire.size(), avail);
  std::memcpy(w, wire.data(), wire.size());
  dec.commit(wire.size());
  ASSERT_EQ(dec.next(f), FrameStatus::Ok);
  dec.compact();

  // The next packet is a small PUBLISH whose length byte has not all arrived.
  const std::string next = bytes({0x30, 0x80});
  w = dec.writeSpace(next.size(), avail);
  std::memcpy(w, next.data(), next.size());
  dec.commit(next.size());
  ASSERT_EQ(dec.next(f), FrameStatus::Incomplete);
  dec.writeSpace(1, avail);
  EXPECT_LT(avail, size_t(1) << 20) << "the decoder reserved room for a stale packet length";

  // The stream itself still decodes correctly.
  std::string rest = bytes({0x01});  // Remaining Length 128
  std::string body = str("t") + std::string(125, 'y');
  rest += body;
  w = dec.writeSpace(rest.size(), avail);
  std::memcpy(w, rest.data(), rest.size());
  dec.commit(rest.size());
  ASSERT_EQ(dec.next(f), FrameStatus::Ok);
  EXPECT_EQ(f.total_len, 131u);
}

// ---------------------------------------------------------------------------
// Malformed packets and protocol errors

// One valid packet of each type other than PUBLISH, at the given level.
std::vector<std::string> oneOfEach(V v) {
  std::vector<std::string> out;
  std::string w;
  {
    Connect c;
    c.version = v;
    c.client_id = "x";
    encode(c, w);
    out.push_back(w);
  }
  {
    Connack c;
    w.clear();
    encode(c, v, w);
    out.push_back(w);
  }
  for (const AckKind& k : kAcks) {
    Ack a;
    a.type = k.type;
    a.packet_id = 1;
    w.clear();
    encode(a, v, w);
    out.push_back(w);
  }
  {
    Subscribe s;
    s.packet_id = 1;
    s.topics = {{"a", 0, false, false, 0}};
    w.clear();
    encode(s, v, w);
    out.push_back(w);
  }
  {
    Suback s;
    s.packet_id = 1;
    s.reasons = {0};
    w.clear();
    encode(s, v, w);
    out.push_back(w);
  }
  {
    Unsubscribe u;
    u.packet_id = 1;
    u.filters = {"a"};
    w.clear();
    encode(u, v, w);
    out.push_back(w);
  }
  {
    Unsuback u;
    u.packet_id = 1;
    w.clear();
    encode(u, v, w);
    out.push_back(w);
  }
  w.clear();
  encodePingreq(w);
  out.push_back(w);
  w.clear();
  encodePingresp(w);
  out.push_back(w);
  {
    Disconnect d;
    w.clear();
    encode(d, v, w);
    out.push_back(w);
  }
  if (v == V::V5) {
    Auth a;
    w.clear();
    encode(a, w);
    out.push_back(w);
  }
  return out;
}

class DecoderMalformed : public ::testing::TestWithParam<V> {
 protected:
  V v() const { return GetParam(); }
  bool v5() const { return GetParam() == V::V5; }
  // The property list, or nothing, as the level requires.
  std::string noProps() const { return v5() ? bytes({0x00}) : std::string(); }
};

INSTANTIATE_TEST_SUITE_P(Levels, DecoderMalformed, ::testing::Values(V::V31, V::V311, V::V5),
                         [](const ::testing::TestParamInfo<V>& i) {
                           return std::string(versionName(i.param));
                         });

TEST_P(DecoderMalformed, ValidPacketsOfEachTypeParse) {
  for (const auto& w : oneOfEach(v())) {
    EXPECT_EQ(parseAny(w, v()), Reason::Success)
        << packetTypeName(static_cast<PacketType>(static_cast<uint8_t>(w[0]) >> 4));
  }
}

TEST_P(DecoderMalformed, WrongFixedHeaderFlags) {
  for (const auto& w : oneOfEach(v())) {
    const uint8_t first = static_cast<uint8_t>(w[0]);
    const auto type = static_cast<PacketType>(first >> 4);
    const uint8_t good = first & 0x0F;
    const uint8_t expected = type == PacketType::Pubrel || type == PacketType::Subscribe ||
                                     type == PacketType::Unsubscribe
                                 ? 0x2
                                 : 0x0;
    ASSERT_EQ(good, expected) << packetTypeName(type);
    for (uint8_t flags = 0; flags < 16; ++flags) {
      if (flags == good) continue;
      EXPECT_EQ(parseAny(withFirstByte(w, static_cast<uint8_t>((first & 0xF0) | flags)), v()),
                Reason::MalformedPacket)
          << packetTypeName(type) << " with flags " << int(flags);
    }
  }
}

TEST_P(DecoderMalformed, PublishQos3) {
  const std::string body = str("t") + u16(1) + noProps() + "x";
  for (uint8_t flags : {0x6, 0x7, 0xE, 0xF}) {
    Publish p;
    EXPECT_EQ(parseWire(packet(0x30 | flags, body), v(), p), Reason::MalformedPacket)
        << "flags " << int(flags);
  }
}

TEST_P(DecoderMalformed, PublishQos0WithDup) {
  const std::string body = str("t") + noProps() + "x";
  Publish p;
  EXPECT_EQ(parseWire(packet(0x38, body), v(), p), Reason::MalformedPacket);
  Publish q;
  EXPECT_EQ(parseWire(packet(0x39, body), v(), q), Reason::MalformedPacket);
  Publish ok;
  EXPECT_EQ(parseWire(packet(0x31, body), v(), ok), Reason::Success);
}

TEST_P(DecoderMalformed, PacketIdentifierZero) {
  for (uint8_t first : {0x32, 0x34, 0x3A}) {
    Publish p;
    EXPECT_EQ(parseWire(packet(first, str("t") + u16(0) + noProps()), v(), p),
              Reason::MalformedPacket);
  }
  for (const AckKind& k : kAcks) {
    Ack a;
    EXPECT_EQ(parseWire(packet(static_cast<uint8_t>((int(k.type) << 4) | k.flags), u16(0)), v(), a),
              Reason::MalformedPacket)
        << packetTypeName(k.type);
  }
  Subscribe s;
  EXPECT_EQ(parseWire(packet(0x82, u16(0) + noProps() + str("a") + bytes({0})), v(), s),
            Reason::MalformedPacket);
  Unsubscribe u;
  EXPECT_EQ(parseWire(packet(0xA2, u16(0) + noProps() + str("a")), v(), u),
            Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, PublishMissingPacketIdentifier) {
  Publish p;
  EXPECT_EQ(parseWire(packet(0x32, str("t") + bytes({0x01})), v(), p), Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, InvalidUtf8InPublishTopic) {
  for (const std::string& topic :
       {std::string("a\0b", 3), std::string("\xED\xA0\x80"), std::string("\xC0\xAF"),
        std::string("ok/\xFF"), std::string("\xE2\x82")}) {
    Publish p;
    EXPECT_EQ(parseWire(packet(0x30, str(topic) + noProps() + "payload"), v(), p),
              Reason::MalformedPacket);
  }
}

TEST_P(DecoderMalformed, PublishTopicLengthBeyondPacket) {
  Publish p;
  EXPECT_EQ(parseWire(packet(0x30, bytes({0x00, 0x10, 'a', 'b'})), v(), p),
            Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, InvalidUtf8InFilters) {
  Subscribe s;
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps() + str("\xED\xBF\xBF") + bytes({0})), v(), s),
            Reason::MalformedPacket);
  Unsubscribe u;
  EXPECT_EQ(parseWire(packet(0xA2, u16(1) + noProps() + str(std::string("a\0", 2))), v(), u),
            Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, SubscribeWithNoTopicsIsProtocolError) {
  Subscribe s;
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps()), v(), s), Reason::ProtocolError);
}

TEST_P(DecoderMalformed, SubscribeFilterWithoutOptionsByte) {
  Subscribe s;
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps() + str("a")), v(), s),
            Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, SubscriptionOptionsReservedBits) {
  const std::vector<int> reserved =
      v5() ? std::vector<int>{0x40, 0x80, 0xC0, 0x41} : std::vector<int>{0x04, 0x08, 0x10, 0x20, 0x40, 0x80};
  for (int opts : reserved) {
    Subscribe s;
    EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps() + str("a") + bytes({opts})), v(), s),
              Reason::MalformedPacket)
        << "options 0x" << std::hex << opts;
  }
}

TEST_P(DecoderMalformed, SubscribeRetainHandling3) {
  if (!v5()) GTEST_SKIP() << "retain handling is MQTT 5";
  Subscribe s;
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps() + str("a") + bytes({0x30})), v(), s),
            Reason::ProtocolError);
  Subscribe ok;
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps() + str("a") + bytes({0x2E})), v(), ok),
            Reason::Success);
  ASSERT_EQ(ok.topics.size(), 1u);
  EXPECT_EQ(ok.topics[0].retain_handling, 2);
  EXPECT_EQ(ok.topics[0].qos, 2);
  EXPECT_TRUE(ok.topics[0].no_local);
  EXPECT_TRUE(ok.topics[0].retain_as_published);
}

TEST_P(DecoderMalformed, SubscribeQos3) {
  // 3.1.1 [MQTT-3.8.3-4]: malformed. 5.0 §3.8.3.1: "It is a Protocol Error if
  // the Maximum QoS field has the value 3."
  Subscribe s;
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + noProps() + str("a") + bytes({0x03})), v(), s),
            v5() ? Reason::ProtocolError : Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, UnsubscribeEmptyIsProtocolError) {
  Unsubscribe u;
  EXPECT_EQ(parseWire(packet(0xA2, u16(1) + noProps()), v(), u), Reason::ProtocolError);
}

TEST_P(DecoderMalformed, UnsubscribeTruncatedFilter) {
  Unsubscribe u;
  EXPECT_EQ(parseWire(packet(0xA2, u16(1) + noProps() + bytes({0x00, 0x05, 'a'})), v(), u),
            Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, TrailingBytes) {
  // Packets whose length is fully determined by their content.
  for (const auto& w : oneOfEach(v())) {
    const auto type = static_cast<PacketType>(static_cast<uint8_t>(w[0]) >> 4);
    if (type == PacketType::Subscribe || type == PacketType::Unsubscribe ||
        type == PacketType::Suback)
      continue;  // their payload is a list: extra bytes are more entries
    if (v5() && (type == PacketType::Unsuback))
      continue;  // MQTT 5 UNSUBACK ends with a list of reason codes
    const std::string longer = packet(static_cast<uint8_t>(w[0]), bodyOf(w) + "z");
    const bool short_form_v5 =
        v5() && (type == PacketType::Puback || type == PacketType::Pubrec ||
                 type == PacketType::Pubrel || type == PacketType::Pubcomp ||
                 type == PacketType::Disconnect || type == PacketType::Auth);
    if (short_form_v5) {
      // The extra byte reads as a reason code ('z' is not a known one).
      EXPECT_EQ(parseAny(longer, v()), Reason::ProtocolError) << packetTypeName(type);
    } else {
      EXPECT_EQ(parseAny(longer, v()), Reason::MalformedPacket) << packetTypeName(type);
    }
  }
}

TEST_P(DecoderMalformed, TruncatedPackets) {
  // Every proper prefix of the body fails to parse (for the types whose body
  // cannot legally be shorter).
  for (const auto& w : oneOfEach(v())) {
    const auto type = static_cast<PacketType>(static_cast<uint8_t>(w[0]) >> 4);
    const std::string body = bodyOf(w);
    for (size_t n = 0; n < body.size(); ++n) {
      if (v5() && n >= 2 &&
          (type == PacketType::Puback || type == PacketType::Pubrec ||
           type == PacketType::Pubrel || type == PacketType::Pubcomp))
        continue;  // the MQTT 5 short forms are valid prefixes
      if (v5() && type == PacketType::Disconnect) continue;
      const Reason r = parseAny(packet(static_cast<uint8_t>(w[0]), body.substr(0, n)), v());
      EXPECT_NE(r, Reason::Success) << packetTypeName(type) << " cut to " << n;
    }
  }
}

TEST_P(DecoderMalformed, PingWithBody) {
  EXPECT_EQ(parseAny(bytes({0xC0, 0x01, 0x00}), v()), Reason::MalformedPacket);
  EXPECT_EQ(parseAny(bytes({0xD0, 0x01, 0x00}), v()), Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, ConnackReservedAcknowledgeFlags) {
  Connack c;
  EXPECT_EQ(parseWire(packet(0x20, bytes({0x02, 0x00}) + noProps()), v(), c),
            Reason::MalformedPacket);
  Connack d;
  EXPECT_EQ(parseWire(packet(0x20, bytes({0x00})), v(), d), Reason::MalformedPacket);
}

TEST_P(DecoderMalformed, AuthOnlyInV5) {
  Auth a;
  const Reason r = parseWire(bytes({0xF0, 0x00}), v(), a);
  EXPECT_EQ(r, v5() ? Reason::Success : Reason::ProtocolError);
  Auth b;
  EXPECT_EQ(parseWire(bytes({0xF0, 0x02, 0x18, 0x00}), v(), b),
            v5() ? Reason::Success : Reason::ProtocolError);
}

TEST_P(DecoderMalformed, DisconnectBodyBeforeV5) {
  if (v5()) GTEST_SKIP();
  Disconnect d;
  EXPECT_EQ(parseWire(bytes({0xE0, 0x01, 0x00}), v(), d), Reason::MalformedPacket);
}

// CONNECT is built by hand so that every flag can be set freely.
std::string connectPacket(const std::string& name, uint8_t level, uint8_t flags,
                          const std::string& rest) {
  std::string body = str(name);
  body.push_back(static_cast<char>(level));
  body.push_back(static_cast<char>(flags));
  body += u16(60);
  body += rest;
  return packet(0x10, body);
}

class DecoderConnectErrors : public DecoderMalformed {
 protected:
  std::string name() const { return v() == V::V31 ? "MQIsdp" : "MQTT"; }
  uint8_t level() const { return static_cast<uint8_t>(v()); }
  std::string connect(uint8_t flags, const std::string& payload) const {
    return connectPacket(name(), level(), flags, noProps() + payload);
  }
  std::string willPart() const { return noProps() + str("w/t") + str("msg"); }
};

INSTANTIATE_TEST_SUITE_P(Levels, DecoderConnectErrors, ::testing::Values(V::V31, V::V311, V::V5),
                         [](const ::testing::TestParamInfo<V>& i) {
                           return std::string(versionName(i.param));
                         });

TEST_P(DecoderConnectErrors, HandBuiltConnectParses) {
  Connect c;
  ASSERT_EQ(parseConnectWire(connect(0x02, str("id")), c), Reason::Success);
  EXPECT_EQ(c.client_id, "id");
  EXPECT_EQ(c.keepalive, 60);
  EXPECT_TRUE(c.clean_start);
  Connect w;
  ASSERT_EQ(parseConnectWire(connect(0x02 | 0x04 | 0x10 | 0x20 | 0x80 | 0x40,
                                     str("id") + willPart() + str("user") + str("pw")),
                             w),
            Reason::Success);
  ASSERT_TRUE(w.will.has_value());
  EXPECT_EQ(w.will->topic, "w/t");
  EXPECT_EQ(w.will->payload, "msg");
  EXPECT_EQ(w.will->qos, 2);
  EXPECT_TRUE(w.will->retain);
  EXPECT_EQ(w.username, "user");
  EXPECT_EQ(w.password, "pw");
}

TEST_P(DecoderConnectErrors, ReservedFlag) {
  Connect c;
  EXPECT_EQ(parseConnectWire(connect(0x03, str("id")), c), Reason::MalformedPacket);
  Connect d;
  EXPECT_EQ(parseConnectWire(connect(0x01, str("id")), d), Reason::MalformedPacket);
}

TEST_P(DecoderConnectErrors, WillQos3) {
  Connect c;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x04 | 0x18, str("id") + willPart()), c),
            Reason::MalformedPacket);
}

TEST_P(DecoderConnectErrors, WillFlagsWithoutWill) {
  for (uint8_t flags : {0x08, 0x10, 0x20, 0x28, 0x18}) {
    Connect c;
    EXPECT_EQ(parseConnectWire(connect(0x02 | flags, str("id")), c), Reason::MalformedPacket)
        << "flags 0x" << std::hex << int(flags);
  }
}

TEST_P(DecoderConnectErrors, PasswordWithoutUsername) {
  Connect c;
  const Reason r = parseConnectWire(connect(0x02 | 0x40, str("id") + str("pw")), c);
  if (v5()) {
    // MQTT 5 allows a password without a user name.
    ASSERT_EQ(r, Reason::Success);
    EXPECT_FALSE(c.username.has_value());
    EXPECT_EQ(c.password, "pw");
  } else {
    EXPECT_EQ(r, Reason::MalformedPacket);  // [MQTT-3.1.2-22]
  }
}

TEST_P(DecoderConnectErrors, TrailingGarbage) {
  Connect c;
  EXPECT_EQ(parseConnectWire(connect(0x02, str("id") + "junk"), c), Reason::MalformedPacket);
  Connect d;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x80, str("id") + str("u") + bytes({0})), d),
            Reason::MalformedPacket);
}

TEST_P(DecoderConnectErrors, MissingFields) {
  Connect a;
  EXPECT_EQ(parseConnectWire(connect(0x02, ""), a), Reason::MalformedPacket);  // no client id
  Connect b;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x04, str("id")), b),
            Reason::MalformedPacket);  // will flag, no will
  Connect c;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x80, str("id")), c),
            Reason::MalformedPacket);  // user name flag, no user name
  Connect d;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x80 | 0x40, str("id") + str("u")), d),
            Reason::MalformedPacket);  // password flag, no password
  Connect e;
  EXPECT_EQ(parseConnectWire(packet(0x10, str(name()) + bytes({level(), 0x02})), e),
            Reason::MalformedPacket);  // no keep alive
}

TEST_P(DecoderConnectErrors, InvalidUtf8) {
  Connect a;
  EXPECT_EQ(parseConnectWire(connect(0x02, str("\xED\xA0\x80")), a), Reason::MalformedPacket);
  Connect b;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x04, str("id") + noProps() +
                                                      str(std::string("w\0", 2)) + str("m")),
                             b),
            Reason::MalformedPacket);
  Connect c;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x80, str("id") + str("\xC0\x80")), c),
            Reason::MalformedPacket);
  // The will payload and the password are binary data.
  Connect d;
  EXPECT_EQ(parseConnectWire(connect(0x02 | 0x04 | 0x80 | 0x40,
                                     str("id") + noProps() + str("w") + str("\xC0\x80") +
                                         str("u") + str(std::string("\0\xFF", 2))),
                             d),
            Reason::Success);
}

TEST(DecoderConnectProtocol, UnknownNameOrLevelIsUnsupported) {
  const struct {
    std::string name;
    uint8_t level;
  } cases[] = {
      {"MQTT", 3}, {"MQTT", 6}, {"MQTT", 0}, {"MQTT", 255}, {"MQIsdp", 4}, {"MQIsdp", 5},
      {"MQTX", 4}, {"mqtt", 4}, {"MQTTT", 4}, {"", 4},     {"MQIsdp", 1},
  };
  for (const auto& k : cases) {
    Connect c;
    EXPECT_EQ(parseConnectWire(connectPacket(k.name, k.level, 0x02, str("id")), c),
              Reason::UnsupportedProtocolVersion)
        << "'" << k.name << "' level " << int(k.level);
  }
}

TEST(DecoderConnectProtocol, V5PropertyRules) {
  // A property that CONNECT may not carry.
  Connect a;
  EXPECT_EQ(parseConnectWire(connectPacket("MQTT", 5, 0x02, bytes({0x03, 0x23, 0x00, 0x01}) +
                                                              str("id")),
                             a),
            Reason::ProtocolError);
  // A will property list with a property only CONNECT may carry.
  Connect b;
  EXPECT_EQ(parseConnectWire(connectPacket("MQTT", 5, 0x06,
                                           bytes({0x00}) + str("id") +
                                               bytes({0x05, 0x11, 0, 0, 0, 1}) + str("w") +
                                               str("m")),
                             b),
            Reason::ProtocolError);
  // Receive Maximum 0.
  Connect c;
  EXPECT_EQ(parseConnectWire(connectPacket("MQTT", 5, 0x02, bytes({0x03, 0x21, 0x00, 0x00}) +
                                                              str("id")),
                             c),
            Reason::ProtocolError);
  // A property list longer than the packet.
  Connect d;
  EXPECT_EQ(parseConnectWire(connectPacket("MQTT", 5, 0x02, bytes({0x20}) + str("id")), d),
            Reason::MalformedPacket);
}

TEST(DecoderV5Errors, DisconnectUnknownReasonCode) {
  for (int code : {0x03, 0x05, 0x12, 0x7F, 0xA3, 0xC0, 0xFF}) {
    Disconnect d;
    EXPECT_EQ(parseWire(bytes({0xE0, 0x01, code}), V::V5, d), Reason::ProtocolError)
        << "code 0x" << std::hex << code;
    Disconnect e;
    EXPECT_EQ(parseWire(bytes({0xE0, 0x02, code, 0x00}), V::V5, e), Reason::ProtocolError)
        << "code 0x" << std::hex << code;
  }
}

TEST(DecoderV5Errors, DisconnectBadProperties) {
  Disconnect a;
  EXPECT_EQ(parseWire(bytes({0xE0, 0x03, 0x00, 0x05, 0x11}), V::V5, a), Reason::MalformedPacket);
  Disconnect b;  // a property DISCONNECT may not carry
  EXPECT_EQ(parseWire(bytes({0xE0, 0x05, 0x00, 0x03, 0x23, 0x00, 0x01}), V::V5, b),
            Reason::ProtocolError);
  Disconnect c;  // bytes after the property list
  EXPECT_EQ(parseWire(bytes({0xE0, 0x03, 0x00, 0x00, 0x00}), V::V5, c), Reason::MalformedPacket);
}

TEST(DecoderV5Errors, AckUnknownReasonCode) {
  for (const AckKind& k : kAcks) {
    Ack a;
    EXPECT_EQ(parseWire(packet(static_cast<uint8_t>((int(k.type) << 4) | k.flags),
                               u16(1) + bytes({0x03})),
                        V::V5, a),
              Reason::ProtocolError)
        << packetTypeName(k.type);
  }
}

TEST(DecoderV5Errors, AckBadProperties) {
  Ack a;  // property list longer than the packet
  EXPECT_EQ(parseWire(packet(0x40, u16(1) + bytes({0x00, 0x09, 0x1F})), V::V5, a),
            Reason::MalformedPacket);
  Ack b;  // a property PUBACK may not carry
  EXPECT_EQ(parseWire(packet(0x40, u16(1) + bytes({0x00, 0x02, 0x01, 0x01})), V::V5, b),
            Reason::ProtocolError);
  Ack c;  // bytes after the property list
  EXPECT_EQ(parseWire(packet(0x40, u16(1) + bytes({0x00, 0x00, 0x00})), V::V5, c),
            Reason::MalformedPacket);
}

TEST(DecoderV5Errors, AuthBadReasonCode) {
  for (int code : {0x01, 0x04, 0x80, 0x87, 0xFF}) {
    Auth a;
    EXPECT_EQ(parseWire(bytes({0xF0, 0x02, code, 0x00}), V::V5, a), Reason::ProtocolError)
        << "code 0x" << std::hex << code;
  }
  Auth b;  // a property AUTH may not carry
  EXPECT_EQ(parseWire(bytes({0xF0, 0x04, 0x18, 0x02, 0x01, 0x01}), V::V5, b),
            Reason::ProtocolError);
}

TEST(DecoderV5Errors, SubscribeProperties) {
  Subscribe a;  // two subscription identifiers
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + bytes({0x04, 0x0B, 0x01, 0x0B, 0x02}) + str("a") +
                                       bytes({0x00})),
                      V::V5, a),
            Reason::ProtocolError);
  Subscribe b;  // subscription identifier 0
  EXPECT_EQ(parseWire(packet(0x82, u16(1) + bytes({0x02, 0x0B, 0x00}) + str("a") + bytes({0x00})),
                      V::V5, b),
            Reason::ProtocolError);
  Subscribe c;
  ASSERT_EQ(parseWire(packet(0x82, u16(1) + bytes({0x02, 0x0B, 0x07}) + str("a") + bytes({0x00})),
                      V::V5, c),
            Reason::Success);
  EXPECT_EQ(c.props.subscription_identifiers, (std::vector<uint32_t>{7}));
  Unsubscribe d;  // UNSUBSCRIBE carries only user properties
  EXPECT_EQ(parseWire(packet(0xA2, u16(1) + bytes({0x02, 0x0B, 0x07}) + str("a")), V::V5, d),
            Reason::ProtocolError);
}

TEST(DecoderV5Errors, PublishProperties) {
  Publish a;  // a property PUBLISH may not carry
  EXPECT_EQ(parseWire(packet(0x30, str("t") + bytes({0x05, 0x11, 0, 0, 0, 1}) + "x"), V::V5, a),
            Reason::ProtocolError);
  Publish b;  // property list longer than the packet
  EXPECT_EQ(parseWire(packet(0x30, str("t") + bytes({0x40})), V::V5, b), Reason::MalformedPacket);
  Publish c;  // topic alias twice
  EXPECT_EQ(parseWire(packet(0x30, str("t") + bytes({0x06, 0x23, 0, 1, 0x23, 0, 2}) + "x"),
                      V::V5, c),
            Reason::ProtocolError);
}

}  // namespace
}  // namespace petrel::mqtt
