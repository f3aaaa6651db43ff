#include "mqtt/properties.h"

#include "mqtt/codec_util.h"

namespace petrel::mqtt {

namespace {

using C = PropertyContext;

constexpr uint32_t bit(C c) { return 1u << static_cast<uint8_t>(c); }

// §2.2.2.2: the packets each property may appear in.
uint32_t allowedMask(PropertyId id) {
  switch (id) {
    case PropertyId::PayloadFormatIndicator:
    case PropertyId::MessageExpiryInterval:
    case PropertyId::ContentType:
    case PropertyId::ResponseTopic:
    case PropertyId::CorrelationData:
      return bit(C::Publish) | bit(C::Will);
    case PropertyId::SubscriptionIdentifier:
      return bit(C::Publish) | bit(C::Subscribe);
    case PropertyId::SessionExpiryInterval:
      return bit(C::Connect) | bit(C::Connack) | bit(C::Disconnect);
    case PropertyId::AssignedClientIdentifier:
    case PropertyId::ServerKeepAlive:
    case PropertyId::ResponseInformation:
    case PropertyId::MaximumQos:
    case PropertyId::RetainAvailable:
    case PropertyId::WildcardSubscriptionAvailable:
    case PropertyId::SubscriptionIdentifierAvailable:
    case PropertyId::SharedSubscriptionAvailable:
      return bit(C::Connack);
    case PropertyId::AuthenticationMethod:
    case PropertyId::AuthenticationData:
      return bit(C::Connect) | bit(C::Connack) | bit(C::Auth);
    case PropertyId::RequestProblemInformation:
    case PropertyId::RequestResponseInformation:
      return bit(C::Connect);
    case PropertyId::WillDelayInterval:
      return bit(C::Will);
    case PropertyId::ServerReference:
      return bit(C::Connack) | bit(C::Disconnect);
    case PropertyId::ReasonString:
      return bit(C::Connack) | bit(C::Puback) | bit(C::Pubrec) |
             bit(C::Pubrel) | bit(C::Pubcomp) | bit(C::Suback) |
             bit(C::Unsuback) | bit(C::Disconnect) | bit(C::Auth);
    case PropertyId::ReceiveMaximum:
    case PropertyId::TopicAliasMaximum:
    case PropertyId::MaximumPacketSize:
      return bit(C::Connect) | bit(C::Connack);
    case PropertyId::TopicAlias:
      return bit(C::Publish);
    case PropertyId::UserProperty:
      return 0xFFFFFFFFu;
  }
  return 0;
}

template <typename T>
bool setOnce(std::optional<T>& slot, T v) {
  if (slot) return false;
  slot = std::move(v);
  return true;
}

void putByteProp(std::string& out, PropertyId id, const std::optional<uint8_t>& v) {
  if (!v) return;
  out.push_back(static_cast<char>(id));
  out.push_back(static_cast<char>(*v));
}
void putU16Prop(std::string& out, PropertyId id, const std::optional<uint16_t>& v) {
  if (!v) return;
  out.push_back(static_cast<char>(id));
  putU16(out, *v);
}
void putU32Prop(std::string& out, PropertyId id, const std::optional<uint32_t>& v) {
  if (!v) return;
  out.push_back(static_cast<char>(id));
  putU32(out, *v);
}
void putStrProp(std::string& out, PropertyId id, const std::optional<std::string>& v) {
  if (!v) return;
  out.push_back(static_cast<char>(id));
  putString(out, *v);
}

size_t bodySize(const Properties& p) {
  size_t n = 0;
  auto b = [&](const auto& v, size_t sz) { if (v) n += 1 + sz; };
  auto s = [&](const std::optional<std::string>& v) { if (v) n += 3 + v->size(); };
  b(p.payload_format_indicator, 1);
  b(p.message_expiry_interval, 4);
  s(p.content_type);
  s(p.response_topic);
  s(p.correlation_data);
  for (uint32_t id : p.subscription_identifiers) n += 1 + varintSize(id);
  b(p.session_expiry_interval, 4);
  s(p.assigned_client_identifier);
  b(p.server_keep_alive, 2);
  s(p.authentication_method);
  s(p.authentication_data);
  b(p.request_problem_information, 1);
  b(p.will_delay_interval, 4);
  b(p.request_response_information, 1);
  s(p.response_information);
  s(p.server_reference);
  s(p.reason_string);
  b(p.receive_maximum, 2);
  b(p.topic_alias_maximum, 2);
  b(p.topic_alias, 2);
  b(p.maximum_qos, 1);
  b(p.retain_available, 1);
  for (const auto& [k, v] : p.user_properties) n += 5 + k.size() + v.size();
  b(p.maximum_packet_size, 4);
  b(p.wildcard_subscription_available, 1);
  b(p.subscription_identifier_available, 1);
  b(p.shared_subscription_available, 1);
  return n;
}

}  // namespace

bool Properties::empty() const { return bodySize(*this) == 0; }

bool propertyAllowed(PropertyId id, PropertyContext ctx) {
  return (allowedMask(id) & bit(ctx)) != 0;
}

size_t encodedPropertiesSize(const Properties& p) {
  size_t n = bodySize(p);
  return varintSize(static_cast<uint32_t>(n)) + n;
}

void encodeProperties(const Properties& p, std::string& out) {
  putVarint(out, static_cast<uint32_t>(bodySize(p)));
  putByteProp(out, PropertyId::PayloadFormatIndicator, p.payload_format_indicator);
  putU32Prop(out, PropertyId::MessageExpiryInterval, p.message_expiry_interval);
  putStrProp(out, PropertyId::ContentType, p.content_type);
  putStrProp(out, PropertyId::ResponseTopic, p.response_topic);
  putStrProp(out, PropertyId::CorrelationData, p.correlation_data);
  for (uint32_t id : p.subscription_identifiers) {
    out.push_back(static_cast<char>(PropertyId::SubscriptionIdentifier));
    putVarint(out, id);
  }
  putU32Prop(out, PropertyId::SessionExpiryInterval, p.session_expiry_interval);
  putStrProp(out, PropertyId::AssignedClientIdentifier, p.assigned_client_identifier);
  putU16Prop(out, PropertyId::ServerKeepAlive, p.server_keep_alive);
  putStrProp(out, PropertyId::AuthenticationMethod, p.authentication_method);
  putStrProp(out, PropertyId::AuthenticationData, p.authentication_data);
  putByteProp(out, PropertyId::RequestProblemInformation, p.request_problem_information);
  putU32Prop(out, PropertyId::WillDelayInterval, p.will_delay_interval);
  putByteProp(out, PropertyId::RequestResponseInformation, p.request_response_information);
  putStrProp(out, PropertyId::ResponseInformation, p.response_information);
  putStrProp(out, PropertyId::ServerReference, p.server_reference);
  putStrProp(out, PropertyId::ReasonString, p.reason_string);
  putU16Prop(out, PropertyId::ReceiveMaximum, p.receive_maximum);
  putU16Prop(out, PropertyId::TopicAliasMaximum, p.topic_alias_maximum);
  putU16Prop(out, PropertyId::TopicAlias, p.topic_alias);
  putByteProp(out, PropertyId::MaximumQos, p.maximum_qos);
  putByteProp(out, PropertyId::RetainAvailable, p.retain_available);
  for (const auto& [k, v] : p.user_properties) {
    out.push_back(static_cast<char>(PropertyId::UserProperty));
    putString(out, k);
    putString(out, v);
  }
  putU32Prop(out, PropertyId::MaximumPacketSize, p.maximum_packet_size);
  putByteProp(out, PropertyId::WildcardSubscriptionAvailable, p.wildcard_subscription_available);
  putByteProp(out, PropertyId::SubscriptionIdentifierAvailable, p.subscription_identifier_available);
  putByteProp(out, PropertyId::SharedSubscriptionAvailable, p.shared_subscription_available);
}

Reason decodeProperties(const uint8_t* data, size_t len, size_t& pos,
                        PropertyContext ctx, Properties& p) {
  Reader hdr(data, len, pos);
  uint32_t plen;
  if (!hdr.varint(plen) || hdr.remaining() < plen) return Reason::MalformedPacket;
  const size_t end = hdr.pos() + plen;
  Reader r(data, end, hdr.pos());
  while (!r.atEnd()) {
    // §2.2.2.2: the identifier is a Variable Byte Integer; every defined one
    // fits in a single byte.
    uint32_t raw;
    if (!r.varint(raw)) return Reason::MalformedPacket;
    if (raw > 0x2A) return Reason::MalformedPacket;
    const auto id = static_cast<PropertyId>(raw);
    const uint32_t mask = allowedMask(id);
    if (mask == 0) return Reason::MalformedPacket;  // unknown identifier
    if (!(mask & bit(ctx))) return Reason::ProtocolError;
    bool ok = true;
    bool once = true;
    uint8_t b8;
    uint16_t b16;
    uint32_t b32;
    std::string s;
    auto byteProp = [&](std::optional<uint8_t>& slot, uint8_t max) {
      if (!r.u8(b8)) return false;
      if (b8 > max) { ok = false; return true; }
      once = setOnce(slot, b8);
      return true;
    };
    auto u16Prop = [&](std::optional<uint16_t>& slot) {
      if (!r.u16(b16)) return false;
      once = setOnce(slot, b16);
      return true;
    };
    auto u32Prop = [&](std::optional<uint32_t>& slot) {
      if (!r.u32(b32)) return false;
      once = setOnce(slot, b32);
      return true;
    };
    auto strProp = [&](std::optional<std::string>& slot) {
      if (!r.utf8(s)) return false;
      once = setOnce(slot, std::move(s));
      return true;
    };
    auto binProp = [&](std::optional<std::string>& slot) {
      if (!r.binary(s)) return false;
      once = setOnce(slot, std::move(s));
      return true;
    };
    bool read = true;
    switch (id) {
      case PropertyId::PayloadFormatIndicator: read = byteProp(p.payload_format_indicator, 1); break;
      case PropertyId::MessageExpiryInterval: read = u32Prop(p.message_expiry_interval); break;
      case PropertyId::ContentType: read = strProp(p.content_type); break;
      case PropertyId::ResponseTopic: read = strProp(p.response_topic); break;
      case PropertyId::CorrelationData: read = binProp(p.correlation_data); break;
      case PropertyId::SubscriptionIdentifier:
        // §3.8.2.1.2: 1..268,435,455; [MQTT-3.8.2.1.2] only one in SUBSCRIBE.
        read = r.varint(b32);
        if (read) {
          if (b32 == 0) ok = false;
          if (ctx == C::Subscribe && !p.subscription_identifiers.empty()) once = false;
          p.subscription_identifiers.push_back(b32);
        }
        break;
      case PropertyId::SessionExpiryInterval: read = u32Prop(p.session_expiry_interval); break;
      case PropertyId::AssignedClientIdentifier: read = strProp(p.assigned_client_identifier); break;
      case PropertyId::ServerKeepAlive: read = u16Prop(p.server_keep_alive); break;
      case PropertyId::AuthenticationMethod: read = strProp(p.authentication_method); break;
      case PropertyId::AuthenticationData: read = binProp(p.authentication_data); break;
      case PropertyId::RequestProblemInformation: read = byteProp(p.request_problem_information, 1); break;
      case PropertyId::WillDelayInterval: read = u32Prop(p.will_delay_interval); break;
      case PropertyId::RequestResponseInformation: read = byteProp(p.request_response_information, 1); break;
      case PropertyId::ResponseInformation: read = strProp(p.response_information); break;
      case PropertyId::ServerReference: read = strProp(p.server_reference); break;
      case PropertyId::ReasonString: read = strProp(p.reason_string); break;
      case PropertyId::ReceiveMaximum:
        read = u16Prop(p.receive_maximum);
        if (read && b16 == 0) ok = false;  // §3.1.2.11.3: 0 is a Protocol Error
        break;
      case PropertyId::TopicAliasMaximum: read = u16Prop(p.topic_alias_maximum); break;
      case PropertyId::TopicAlias: read = u16Prop(p.topic_alias); break;
      case PropertyId::MaximumQos: read = byteProp(p.maximum_qos, 1); break;
      case PropertyId::RetainAvailable: read = byteProp(p.retain_available, 1); break;
      case PropertyId::UserProperty: {
        std::string k, v;
        read = r.utf8(k) && r.utf8(v);
        if (read) p.user_properties.emplace_back(std::move(k), std::move(v));
        break;
      }
      case PropertyId::MaximumPacketSize:
        read = u32Prop(p.maximum_packet_size);
        if (read && b32 == 0) ok = false;
        break;
      case PropertyId::WildcardSubscriptionAvailable: read = byteProp(p.wildcard_subscription_available, 1); break;
      case PropertyId::SubscriptionIdentifierAvailable: read = byteProp(p.subscription_identifier_available, 1); break;
      case PropertyId::SharedSubscriptionAvailable: read = byteProp(p.shared_subscription_available, 1); break;
    }
    if (!read) return Reason::MalformedPacket;
    // §2.2.2.2: including a property more than once (other than User
    // Property and, in PUBLISH, Subscription Identifier) is a Protocol Error;
    // so is a value out of its range (Receive Maximum 0, a flag above 1).
    if (!once || !ok) return Reason::ProtocolError;
  }
  pos = end;
  return Reason::Success;
}

}  // namespace petrel::mqtt
