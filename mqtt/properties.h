// mqtt/properties.h — MQTT 5 properties (§2.2.2): one struct that can hold
// every property, with the rules of which packet may carry which property and
// which may appear more than once. The decoder fills it, the encoder writes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mqtt/protocol.h"

namespace petrel::mqtt {

enum class PropertyId : uint8_t {
  PayloadFormatIndicator = 0x01,
  MessageExpiryInterval = 0x02,
  ContentType = 0x03,
  ResponseTopic = 0x08,
  CorrelationData = 0x09,
  SubscriptionIdentifier = 0x0B,
  SessionExpiryInterval = 0x11,
  AssignedClientIdentifier = 0x12,
  ServerKeepAlive = 0x13,
  AuthenticationMethod = 0x15,
  AuthenticationData = 0x16,
  RequestProblemInformation = 0x17,
  WillDelayInterval = 0x18,
  RequestResponseInformation = 0x19,
  ResponseInformation = 0x1A,
  ServerReference = 0x1C,
  ReasonString = 0x1F,
  ReceiveMaximum = 0x21,
  TopicAliasMaximum = 0x22,
  TopicAlias = 0x23,
  MaximumQos = 0x24,
  RetainAvailable = 0x25,
  UserProperty = 0x26,
  MaximumPacketSize = 0x27,
  WildcardSubscriptionAvailable = 0x28,
  SubscriptionIdentifierAvailable = 0x29,
  SharedSubscriptionAvailable = 0x2A,
};

// Where a property list occurs. The will properties of CONNECT have their own
// set of allowed properties (§3.1.3.2).
enum class PropertyContext : uint8_t {
  Connect, Will, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp,
  Subscribe, Suback, Unsubscribe, Unsuback, Disconnect, Auth,
};

using UserProperties = std::vector<std::pair<std::string, std::string>>;

struct Properties {
  std::optional<uint8_t> payload_format_indicator;
  std::optional<uint32_t> message_expiry_interval;
  std::optional<std::string> content_type;
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;
  std::vector<uint32_t> subscription_identifiers;  // several only in PUBLISH
  std::optional<uint32_t> session_expiry_interval;
  std::optional<std::string> assigned_client_identifier;
  std::optional<uint16_t> server_keep_alive;
  std::optional<std::string> authentication_method;
  std::optional<std::string> authentication_data;
  std::optional<uint8_t> request_problem_information;
  std::optional<uint32_t> will_delay_interval;
  std::optional<uint8_t> request_response_information;
  std::optional<std::string> response_information;
  std::optional<std::string> server_reference;
  std::optional<std::string> reason_string;
  std::optional<uint16_t> receive_maximum;
  std::optional<uint16_t> topic_alias_maximum;
  std::optional<uint16_t> topic_alias;
  std::optional<uint8_t> maximum_qos;
  std::optional<uint8_t> retain_available;
  UserProperties user_properties;
  std::optional<uint32_t> maximum_packet_size;
  std::optional<uint8_t> wildcard_subscription_available;
  std::optional<uint8_t> subscription_identifier_available;
  std::optional<uint8_t> shared_subscription_available;

  bool empty() const;
  bool operator==(const Properties&) const = default;
};

// Whether `id` may appear in a property list of `ctx` (§2.2.2.2 table).
bool propertyAllowed(PropertyId id, PropertyContext ctx);

// Appends the property list (its Variable Byte Integer length, then each
// property) to `out`. Only set properties are written.
void encodeProperties(const Properties& p, std::string& out);

// Size of what encodeProperties would write, the length prefix included.
size_t encodedPropertiesSize(const Properties& p);

// Decodes a property list starting at data[pos] (at its length prefix);
// advances pos past it. Returns Success, MalformedPacket (truncated, bad
// encoding, bad UTF-8, value out of range) or ProtocolError (a property not
// allowed in `ctx`, or a property that may appear once given twice).
Reason decodeProperties(const uint8_t* data, size_t len, size_t& pos,
                        PropertyContext ctx, Properties& out);

}  // namespace petrel::mqtt
