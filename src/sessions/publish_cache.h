// src/sessions/publish_cache.h — encode once: while one message fans out to
// several receivers, its PUBLISH is encoded once per (protocol level, QoS,
// retain flag) and copied to each receiver, with only the packet id put in.
// Deliveries with per-receiver parts (subscription identifiers, a topic
// alias, a remaining expiry interval, DUP) are encoded for the receiver.
//
// The router opens a scope (begin/end) around the deliveries of one message
// when it has more than one receiver; a single delivery is encoded straight
// into the client's output as before, so nothing is copied twice.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mqtt/encoder.h"
#include "mqtt/protocol.h"
#include "src/routing/message.h"

namespace petrel {

class PublishCache {
 public:
  struct Encoded {
    std::string bytes;  // the whole PUBLISH, packet id 0
    size_t id_at = 0;   // where the packet id goes (QoS 1/2)
    uint64_t gen = 0;   // valid while equal to the cache's generation
  };

  void begin(const Message& m) {
    msg_ = &m;
    ++gen_;
  }
  void end() { msg_ = nullptr; }
  bool active(const Message& m) const { return msg_ == &m; }

  // The encoding of the active message for (v, qos, retain); `props` are
  // the message's own properties (v5) or null.
  const Encoded& get(mqtt::Version v, uint8_t qos, bool retain, const mqtt::Properties* props) {
    Encoded& e = slots_[slot(v, qos, retain)];
    if (e.gen != gen_) {
      e.bytes.clear();
      mqtt::encodePublish(e.bytes, v, msg_->topic, msg_->payload, qos, retain, false, 0, props);
      // Fixed header: type byte, then the remaining length (1-4 bytes, the
      // high bit marks continuation); then the topic and the packet id.
      size_t at = 1;
      while (static_cast<uint8_t>(e.bytes[at]) & 0x80) ++at;
      e.id_at = at + 1 + 2 + msg_->topic.size();
      e.gen = gen_;
    }
    return e;
  }
  static void append(std::string& out, const Encoded& e, uint8_t qos, uint16_t packet_id) {
    const size_t base = out.size();
    out.append(e.bytes);
    if (qos) {
      out[base + e.id_at] = static_cast<char>(packet_id >> 8);
      out[base + e.id_at + 1] = static_cast<char>(packet_id & 0xFF);
    }
  }

 private:
  static size_t slot(mqtt::Version v, uint8_t qos, bool retain) {
    const size_t level = v == mqtt::Version::V5 ? 2 : v == mqtt::Version::V311 ? 1 : 0;
    return (level * 3 + qos) * 2 + (retain ? 1 : 0);
  }
  const Message* msg_ = nullptr;
  uint64_t gen_ = 0;
  Encoded slots_[18];
};

}  // namespace petrel
