// Unit tests for mqtt/properties: the MQTT 5 property list (§2.2.2), which
// packet may carry which property, single-occurrence rules and value ranges.
#include "mqtt/properties.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "mqtt/codec_util.h"

namespace petrel::mqtt {

// Readable reason codes in failure messages (internal linkage).
static void PrintTo(Reason r, std::ostream* os) {
  *os << "0x" << std::hex << int(static_cast<uint8_t>(r)) << std::dec << " (" << reasonName(r)
      << ")";
}

namespace {

using C = PropertyContext;
using P = PropertyId;

const std::vector<C> kAllContexts = {
    C::Connect, C::Will,     C::Connack,   C::Publish,     C::Puback,
    C::Pubrec,  C::Pubrel,   C::Pubcomp,   C::Subscribe,   C::Suback,
    C::Unsubscribe, C::Unsuback, C::Disconnect, C::Auth,
};

const std::vector<P> kAllIds = {
    P::PayloadFormatIndicator, P::MessageExpiryInterval, P::ContentType,
    P::ResponseTopic, P::CorrelationData, P::SubscriptionIdentifier,
    P::SessionExpiryInterval, P::AssignedClientIdentifier, P::ServerKeepAlive,
    P::AuthenticationMethod, P::AuthenticationData, P::RequestProblemInformation,
    P::WillDelayInterval, P::RequestResponseInformation, P::ResponseInformation,
    P::ServerReference, P::ReasonString, P::ReceiveMaximum, P::TopicAliasMaximum,
    P::TopicAlias, P::MaximumQos, P::RetainAvailable, P::UserProperty,
    P::MaximumPacketSize, P::WildcardSubscriptionAvailable,
    P::SubscriptionIdentifierAvailable, P::SharedSubscriptionAvailable,
};

const char* ctxName(C c) {
  switch (c) {
    case C::Connect: return "Connect";
    case C::Will: return "Will";
    case C::Connack: return "Connack";
    case C::Publish: return "Publish";
    case C::Puback: return "Puback";
    case C::Pubrec: return "Pubrec";
    case C::Pubrel: return "Pubrel";
    case C::Pubcomp: return "Pubcomp";
    case C::Subscribe: return "Subscribe";
    case C::Suback: return "Suback";
    case C::Unsubscribe: return "Unsubscribe";
    case C::Unsuback: return "Unsuback";
    case C::Disconnect: return "Disconnect";
    case C::Auth: return "Auth";
  }
  return "?";
}

// The table of §2.2.2.2, written out independently of the implementation.
std::set<C> specContexts(P id) {
  switch (id) {
    case P::PayloadFormatIndicator:
    case P::MessageExpiryInterval:
    case P::ContentType:
    case P::ResponseTopic:
    case P::CorrelationData:
      return {C::Publish, C::Will};
    case P::SubscriptionIdentifier:
      return {C::Publish, C::Subscribe};
    case P::SessionExpiryInterval:
      return {C::Connect, C::Connack, C::Disconnect};
    case P::AssignedClientIdentifier:
    case P::ServerKeepAlive:
    case P::ResponseInformation:
    case P::MaximumQos:
    case P::RetainAvailable:
    case P::WildcardSubscriptionAvailable:
    case P::SubscriptionIdentifierAvailable:
    case P::SharedSubscriptionAvailable:
      return {C::Connack};
    case P::AuthenticationMethod:
    case P::AuthenticationData:
      return {C::Connect, C::Connack, C::Auth};
    case P::RequestProblemInformation:
    case P::RequestResponseInformation:
      return {C::Connect};
    case P::WillDelayInterval:
      return {C::Will};
    case P::ServerReference:
      return {C::Connack, C::Disconnect};
    case P::ReasonString:
      return {C::Connack, C::Puback, C::Pubrec, C::Pubrel, C::Pubcomp,
              C::Suback, C::Unsuback, C::Disconnect, C::Auth};
    case P::ReceiveMaximum:
    case P::TopicAliasMaximum:
    case P::MaximumPacketSize:
      return {C::Connect, C::Connack};
    case P::TopicAlias:
      return {C::Publish};
    case P::UserProperty:
      return {kAllContexts.begin(), kAllContexts.end()};
  }
  return {};
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

// One property (identifier and a valid value) as it appears on the wire.
std::string encodeOne(P id) {
  std::string s;
  s.push_back(static_cast<char>(id));
  switch (id) {
    case P::PayloadFormatIndicator:
    case P::RequestProblemInformation:
    case P::RequestResponseInformation:
    case P::MaximumQos:
    case P::RetainAvailable:
    case P::WildcardSubscriptionAvailable:
    case P::SubscriptionIdentifierAvailable:
    case P::SharedSubscriptionAvailable:
      s.push_back(1);
      break;
    case P::ServerKeepAlive:
    case P::ReceiveMaximum:
    case P::TopicAliasMaximum:
    case P::TopicAlias:
      putU16(s, 10);
      break;
    case P::MessageExpiryInterval:
    case P::SessionExpiryInterval:
    case P::WillDelayInterval:
    case P::MaximumPacketSize:
      putU32(s, 1000);
      break;
    case P::SubscriptionIdentifier:
      putVarint(s, 300);
      break;
    case P::ContentType:
    case P::ResponseTopic:
    case P::AssignedClientIdentifier:
    case P::AuthenticationMethod:
    case P::ResponseInformation:
    case P::ServerReference:
    case P::ReasonString:
      putString(s, "text");
      break;
    case P::CorrelationData:
    case P::AuthenticationData:
      putString(s, std::string("\x00\x01\xFF", 3));
      break;
    case P::UserProperty:
      putString(s, "key");
      putString(s, "value");
      break;
  }
  return s;
}

// A property list: the length prefix, then `body`.
std::string list(const std::string& body) {
  std::string s;
  putVarint(s, static_cast<uint32_t>(body.size()));
  s += body;
  return s;
}

Reason decode(const std::string& wire, C ctx, Properties& out, size_t* end = nullptr) {
  size_t pos = 0;
  Reason r = decodeProperties(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(),
                              pos, ctx, out);
  if (end) *end = pos;
  return r;
}

Reason decode(const std::string& wire, C ctx) {
  Properties p;
  return decode(wire, ctx, p);
}

// Every property that `ctx` may carry, set to a distinctive value.
Properties fullFor(C ctx) {
  Properties p;
  auto allowed = [&](P id) { return specContexts(id).count(ctx) != 0; };
  if (allowed(P::PayloadFormatIndicator)) p.payload_format_indicator = 1;
  if (allowed(P::MessageExpiryInterval)) p.message_expiry_interval = 0xDEADBEEF;
  if (allowed(P::ContentType)) p.content_type = "application/json";
  if (allowed(P::ResponseTopic)) p.response_topic = "reply/\xC3\xA9t\xC3\xA9";
  if (allowed(P::CorrelationData)) p.correlation_data = std::string("\x00\x01\x02\xFF", 4);
  if (allowed(P::SubscriptionIdentifier)) {
    if (ctx == C::Publish)
      p.subscription_identifiers = {1, 127, 128, 16384, 268435455};
    else
      p.subscription_identifiers = {268435455};
  }
  if (allowed(P::SessionExpiryInterval)) p.session_expiry_interval = 0xFFFFFFFF;
  if (allowed(P::AssignedClientIdentifier)) p.assigned_client_identifier = "auto-1234";
  if (allowed(P::ServerKeepAlive)) p.server_keep_alive = 0xFFFF;
  if (allowed(P::AuthenticationMethod)) p.authentication_method = "SCRAM-SHA-256";
  if (allowed(P::AuthenticationData)) p.authentication_data = std::string("\x00\xFE", 2);
  if (allowed(P::RequestProblemInformation)) p.request_problem_information = 0;
  if (allowed(P::WillDelayInterval)) p.will_delay_interval = 30;
  if (allowed(P::RequestResponseInformation)) p.request_response_information = 1;
  if (allowed(P::ResponseInformation)) p.response_information = "resp/";
  if (allowed(P::ServerReference)) p.server_reference = "other.example:1883";
  if (allowed(P::ReasonString)) p.reason_string = "because";
  if (allowed(P::ReceiveMaximum)) p.receive_maximum = 65535;
  if (allowed(P::TopicAliasMaximum)) p.topic_alias_maximum = 0;  // 0 is valid here
  if (allowed(P::TopicAlias)) p.topic_alias = 7;
  if (allowed(P::MaximumQos)) p.maximum_qos = 1;
  if (allowed(P::RetainAvailable)) p.retain_available = 0;
  p.user_properties = {{"k1", "v1"}, {"", ""}, {"k1", "v2"}};
  if (allowed(P::MaximumPacketSize)) p.maximum_packet_size = 1u << 20;
  if (allowed(P::WildcardSubscriptionAvailable)) p.wildcard_subscription_available = 1;
  if (allowed(P::SubscriptionIdentifierAvailable)) p.subscription_identifier_available = 0;
  if (allowed(P::SharedSubscriptionAvailable)) p.shared_subscription_available = 1;
  return p;
}

// ---------------------------------------------------------------------------

TEST(PropertiesTable, MatchesSpecTable) {
  for (P id : kAllIds) {
    const auto expected = specContexts(id);
    for (C ctx : kAllContexts) {
      EXPECT_EQ(propertyAllowed(id, ctx), expected.count(ctx) != 0)
          << "property 0x" << std::hex << int(id) << " in " << ctxName(ctx);
    }
  }
}

TEST(PropertiesCodec, EmptyListIsOneZeroByte) {
  Properties p;
  EXPECT_TRUE(p.empty());
  std::string out;
  encodeProperties(p, out);
  EXPECT_EQ(out, bytes({0x00}));
  EXPECT_EQ(encodedPropertiesSize(p), 1u);
  for (C ctx : kAllContexts) {
    Properties back;
    size_t end = 99;
    EXPECT_EQ(decode(out, ctx, back, &end), Reason::Success);
    EXPECT_EQ(end, 1u);
    EXPECT_TRUE(back.empty());
  }
}

TEST(PropertiesCodec, EmptyReflectsEveryKindOfField) {
  Properties p;
  p.user_properties.emplace_back("", "");
  EXPECT_FALSE(p.empty());
  Properties q;
  q.subscription_identifiers.push_back(5);
  EXPECT_FALSE(q.empty());
  Properties r;
  r.reason_string = "";
  EXPECT_FALSE(r.empty());
}

TEST(PropertiesCodec, KnownWireForm) {
  Properties p;
  p.session_expiry_interval = 0x3C;
  p.receive_maximum = 20;
  p.user_properties = {{"a", "b"}};
  std::string out;
  encodeProperties(p, out);
  // 5 + 3 + 7 bytes of properties, in the encoder's order.
  EXPECT_EQ(out, bytes({15, 0x11, 0, 0, 0, 0x3C, 0x21, 0, 20, 0x26, 0, 1, 'a', 0, 1, 'b'}));
}

class PropertiesByContext : public ::testing::TestWithParam<C> {};

TEST_P(PropertiesByContext, FullSetRoundTrips) {
  const C ctx = GetParam();
  const Properties p = fullFor(ctx);
  std::string out = "xy";  // something before the list
  encodeProperties(p, out);
  EXPECT_EQ(out.size() - 2, encodedPropertiesSize(p));
  out += "tail";  // and something after it

  Properties back;
  size_t pos = 2;
  Reason r = decodeProperties(reinterpret_cast<const uint8_t*>(out.data()), out.size(), pos,
                              ctx, back);
  ASSERT_EQ(r, Reason::Success) << ctxName(ctx);
  EXPECT_EQ(pos, out.size() - 4);
  EXPECT_EQ(back, p) << ctxName(ctx);
}

TEST_P(PropertiesByContext, PropertiesNotAllowedAreProtocolErrors) {
  const C ctx = GetParam();
  for (P id : kAllIds) {
    const Reason r = decode(list(encodeOne(id)), ctx);
    if (specContexts(id).count(ctx)) {
      EXPECT_EQ(r, Reason::Success) << "0x" << std::hex << int(id) << " in " << ctxName(ctx);
    } else {
      EXPECT_EQ(r, Reason::ProtocolError)
          << "0x" << std::hex << int(id) << " in " << ctxName(ctx);
    }
  }
}

TEST_P(PropertiesByContext, NotAllowedAfterAllowedStillFails) {
  const C ctx = GetParam();
  for (P id : kAllIds) {
    if (specContexts(id).count(ctx)) continue;
    const Reason r = decode(list(encodeOne(P::UserProperty) + encodeOne(id)), ctx);
    EXPECT_EQ(r, Reason::ProtocolError) << "0x" << std::hex << int(id) << " in " << ctxName(ctx);
  }
}

TEST_P(PropertiesByContext, DuplicateSingleOccurrenceIsProtocolError) {
  const C ctx = GetParam();
  for (P id : kAllIds) {
    if (!specContexts(id).count(ctx)) continue;
    if (id == P::UserProperty) continue;
    if (id == P::SubscriptionIdentifier && ctx == C::Publish) continue;
    const std::string one = encodeOne(id);
    EXPECT_EQ(decode(list(one + one), ctx), Reason::ProtocolError)
        << "0x" << std::hex << int(id) << " twice in " << ctxName(ctx);
    // Not adjacent either.
    EXPECT_EQ(decode(list(one + encodeOne(P::UserProperty) + one), ctx), Reason::ProtocolError)
        << "0x" << std::hex << int(id) << " twice in " << ctxName(ctx);
  }
}

TEST_P(PropertiesByContext, UserPropertiesRepeatAndKeepOrder) {
  const C ctx = GetParam();
  Properties p;
  p.user_properties = {{"b", "2"}, {"a", "1"}, {"b", "3"}, {"b", "2"}, {"z", ""}};
  std::string out;
  encodeProperties(p, out);
  Properties back;
  ASSERT_EQ(decode(out, ctx, back), Reason::Success);
  ASSERT_EQ(back.user_properties.size(), 5u);
  EXPECT_EQ(back.user_properties, p.user_properties);
}

INSTANTIATE_TEST_SUITE_P(AllContexts, PropertiesByContext, ::testing::ValuesIn(kAllContexts),
                         [](const ::testing::TestParamInfo<C>& info) {
                           return std::string(ctxName(info.param));
                         });

TEST(PropertiesCodec, SeveralSubscriptionIdentifiersInPublishOnly) {
  const std::string two = list(encodeOne(P::SubscriptionIdentifier) + bytes({0x0B, 0x05}));
  Properties pub;
  ASSERT_EQ(decode(two, C::Publish, pub), Reason::Success);
  EXPECT_EQ(pub.subscription_identifiers, (std::vector<uint32_t>{300, 5}));
  EXPECT_EQ(decode(two, C::Subscribe), Reason::ProtocolError);

  Properties sub;
  ASSERT_EQ(decode(list(bytes({0x0B, 0x05})), C::Subscribe, sub), Reason::Success);
  EXPECT_EQ(sub.subscription_identifiers, (std::vector<uint32_t>{5}));
}

TEST(PropertiesCodec, SubscriptionIdentifierZeroIsAnError) {
  EXPECT_EQ(decode(list(bytes({0x0B, 0x00})), C::Subscribe), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x0B, 0x00})), C::Publish), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x0B, 0x05, 0x0B, 0x00})), C::Publish), Reason::ProtocolError);
}

TEST(PropertiesCodec, SubscriptionIdentifierLimits) {
  Properties p;
  ASSERT_EQ(decode(list(bytes({0x0B, 0xFF, 0xFF, 0xFF, 0x7F})), C::Subscribe, p),
            Reason::Success);
  EXPECT_EQ(p.subscription_identifiers, (std::vector<uint32_t>{268435455}));
  // A five-byte Variable Byte Integer is malformed.
  EXPECT_EQ(decode(list(bytes({0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})), C::Subscribe),
            Reason::MalformedPacket);
  // A varint cut short by the end of the list.
  EXPECT_EQ(decode(list(bytes({0x0B, 0x80})), C::Subscribe), Reason::MalformedPacket);
}

TEST(PropertiesCodec, ReceiveMaximumZeroIsProtocolError) {
  EXPECT_EQ(decode(list(bytes({0x21, 0x00, 0x00})), C::Connect), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x21, 0x00, 0x00})), C::Connack), Reason::ProtocolError);
  Properties p;
  ASSERT_EQ(decode(list(bytes({0x21, 0x00, 0x01})), C::Connect, p), Reason::Success);
  EXPECT_EQ(p.receive_maximum, 1);
}

TEST(PropertiesCodec, MaximumPacketSizeZeroIsProtocolError) {
  EXPECT_EQ(decode(list(bytes({0x27, 0, 0, 0, 0})), C::Connect), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x27, 0, 0, 0, 1})), C::Connect), Reason::Success);
}

TEST(PropertiesCodec, ByteFlagsAboveOneAreProtocolErrors) {
  EXPECT_EQ(decode(list(bytes({0x01, 0x02})), C::Publish), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x17, 0x02})), C::Connect), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x19, 0xFF})), C::Connect), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x24, 0x02})), C::Connack), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x25, 0x02})), C::Connack), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x28, 0x02})), C::Connack), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x29, 0x02})), C::Connack), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x2A, 0x02})), C::Connack), Reason::ProtocolError);
  EXPECT_EQ(decode(list(bytes({0x01, 0x00})), C::Will), Reason::Success);
}

TEST(PropertiesCodec, TruncatedListIsMalformed) {
  Properties p;
  p.content_type = "text/plain";
  p.message_expiry_interval = 60;
  std::string full;
  encodeProperties(p, full);
  // Every proper prefix is malformed: the length announces more than there is.
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(decode(full.substr(0, n), C::Publish), Reason::MalformedPacket) << "prefix " << n;
  }
  EXPECT_EQ(decode(full, C::Publish), Reason::Success);
}

TEST(PropertiesCodec, TruncatedLengthPrefixIsMalformed) {
  EXPECT_EQ(decode(bytes({0x80}), C::Publish), Reason::MalformedPacket);
  EXPECT_EQ(decode(bytes({0xFF, 0xFF, 0xFF, 0xFF, 0x01}), C::Publish), Reason::MalformedPacket);
}

TEST(PropertiesCodec, ValueCutByTheListLengthIsMalformed) {
  // The list claims 3 bytes, but a four-byte integer property needs 5; the
  // bytes after the list must not be borrowed.
  std::string s = bytes({0x03, 0x02, 0x00, 0x00, 0x00, 0x3C});
  EXPECT_EQ(decode(s, C::Publish), Reason::MalformedPacket);
  // A string whose length points past the end of the list.
  EXPECT_EQ(decode(bytes({0x04, 0x1F, 0x00, 0x05, 'a', 'b', 'c', 'd', 'e'}), C::Connack),
            Reason::MalformedPacket);
  // A user property with a key but no value.
  EXPECT_EQ(decode(list(bytes({0x26, 0x00, 0x01, 'k'})), C::Publish), Reason::MalformedPacket);
  // An identifier with no value at all.
  EXPECT_EQ(decode(list(bytes({0x13})), C::Connack), Reason::MalformedPacket);
}

TEST(PropertiesCodec, InvalidUtf8InStringPropertyIsMalformed) {
  EXPECT_EQ(decode(list(bytes({0x03, 0x00, 0x03, 0xED, 0xA0, 0x80})), C::Publish),
            Reason::MalformedPacket);
  EXPECT_EQ(decode(list(bytes({0x1F, 0x00, 0x01, 0x00})), C::Puback), Reason::MalformedPacket);
  EXPECT_EQ(decode(list(bytes({0x26, 0x00, 0x01, 'k', 0x00, 0x01, 0xC0})), C::Publish),
            Reason::MalformedPacket);
  // Binary properties carry any bytes.
  EXPECT_EQ(decode(list(bytes({0x09, 0x00, 0x03, 0xED, 0xA0, 0x80})), C::Publish),
            Reason::Success);
}

TEST(PropertiesCodec, UnknownIdentifierIsMalformed) {
  for (int id : {0x00, 0x04, 0x05, 0x06, 0x07, 0x0A, 0x0C, 0x10, 0x14, 0x1B, 0x1D, 0x1E, 0x20,
                 0x2B, 0x30, 0x7F}) {
    EXPECT_EQ(decode(list(bytes({id, 0x00})), C::Publish), Reason::MalformedPacket)
        << "identifier 0x" << std::hex << id;
  }
  // A multi-byte identifier does not name any defined property.
  EXPECT_EQ(decode(list(bytes({0x80, 0x01, 0x00})), C::Publish), Reason::MalformedPacket);
}

TEST(PropertiesCodec, LongListHasTwoByteLength) {
  Properties p;
  p.reason_string = std::string(200, 'r');
  std::string out;
  encodeProperties(p, out);
  ASSERT_EQ(out.size(), 2u + 3u + 200u);
  EXPECT_EQ(encodedPropertiesSize(p), out.size());
  EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x80 | (203 & 0x7F));
  EXPECT_EQ(static_cast<uint8_t>(out[1]), 203 >> 7);
  Properties back;
  size_t end = 0;
  ASSERT_EQ(decode(out, C::Disconnect, back, &end), Reason::Success);
  EXPECT_EQ(end, out.size());
  EXPECT_EQ(back, p);
}

TEST(PropertiesCodec, DecodeAppendsToTheRightFields) {
  Properties p;
  std::string body = encodeOne(P::TopicAlias) + encodeOne(P::ContentType) +
                     encodeOne(P::CorrelationData) + encodeOne(P::MessageExpiryInterval);
  ASSERT_EQ(decode(list(body), C::Publish, p), Reason::Success);
  EXPECT_EQ(p.topic_alias, 10);
  EXPECT_EQ(p.content_type, "text");
  EXPECT_EQ(p.correlation_data, std::string("\x00\x01\xFF", 3));
  EXPECT_EQ(p.message_expiry_interval, 1000u);
  EXPECT_FALSE(p.response_topic.has_value());
}

}  // namespace
}  // namespace petrel::mqtt
