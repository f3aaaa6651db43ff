// mqtt/packets.h — the fifteen MQTT control packets as plain structs. The
// same structs serve every protocol level; fields that a level lacks (reason
// codes and properties before MQTT 5) are simply left at their defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/properties.h"
#include "mqtt/protocol.h"

namespace petrel::mqtt {

struct Will {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  Properties props;  // MQTT 5 will properties
};

struct Connect {
  Version version = Version::V311;
  // The bridge bit of the protocol level (0x80, as mosquitto sends it):
  // the client is another broker's bridge.
  bool bridge = false;
  bool clean_start = true;
  uint16_t keepalive = 0;
  std::string client_id;
  std::optional<Will> will;
  std::optional<std::string> username;
  std::optional<std::string> password;
  Properties props;
};

struct Connack {
  bool session_present = false;
  Reason reason = Reason::Success;
  Properties props;
};

struct Publish {
  std::string topic;
  std::string payload;
  uint16_t packet_id = 0;
  uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  Properties props;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape (§3.4–§3.7).
struct Ack {
  PacketType type = PacketType::Puback;
  uint16_t packet_id = 0;
  Reason reason = Reason::Success;
  Properties props;
};

struct SubscribeTopic {
  std::string filter;
  uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  uint8_t retain_handling = 0;
};

struct Subscribe {
  uint16_t packet_id = 0;
  std::vector<SubscribeTopic> topics;
  Properties props;
};

struct Suback {
  uint16_t packet_id = 0;
  std::vector<uint8_t> reasons;  // granted QoS or a failure reason per filter
  Properties props;
};

struct Unsubscribe {
  uint16_t packet_id = 0;
  std::vector<std::string> filters;
  Properties props;
};

struct Unsuback {
  uint16_t packet_id = 0;
  std::vector<uint8_t> reasons;  // MQTT 5 only
  Properties props;
};

struct Disconnect {
  Reason reason = Reason::Success;
  Properties props;
};

struct Auth {
  Reason reason = Reason::Success;
  Properties props;
};

}  // namespace petrel::mqtt
