// src/routing/message.h — an application message as the broker holds it: stored
// once, immutable, shared by reference between every session queue, the
// retained store and in-flight windows that hold it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mqtt/properties.h"
#include "src/util/block_pool.h"

namespace petrel {

struct Message {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  // Properties forwarded to subscribers (§3.3.2.3): payload format, content
  // type, response topic, correlation data, user properties. Topic Alias,
  // Subscription Identifiers and the expiry interval are per delivery.
  // Null when there are none (every MQTT 3.1.1 message, most MQTT 5 ones):
  // a Properties object is several hundred bytes.
  std::shared_ptr<const mqtt::Properties> props;
  // Wall-clock deadline in milliseconds since the epoch, 0 = never expires
  // (§3.3.2.3.3 Message Expiry Interval).
  int64_t expires_at_ms = 0;
  // Client id of the publisher, for No Local (§3.8.3.1).
  std::string origin;
  // Came in over a bridge (ours, or another broker's connecting to us):
  // never forwarded by a bridge again (loop prevention, bridges/).
  bool from_bridge = false;
  // Id in the persistent store (assigned to every message when persistence
  // is on; the record is written only when a durable holder exists).
  uint64_t id = 0;
};

using MessagePtr = std::shared_ptr<const Message>;

// A new message (and its reference count, one block) from the loop
// thread's pool: one is made and dropped for every PUBLISH.
inline std::shared_ptr<Message> makeMessage() { return std::allocate_shared<Message>(PoolAllocator<Message>()); }

}  // namespace petrel
