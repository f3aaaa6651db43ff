// src/session.h — the state MQTT keeps for a client id between connections
// (§4.1): subscriptions, the QoS 1/2 messages in flight in both directions,
// the queue of messages not yet sent, the will, and the expiry.
//
// The session owns the per-receiver flow control: a message is sent when the
// client's Receive Maximum has room, otherwise it waits in the queue; acks
// free the window and pull the next ones. A full window means "wait", never
// "drop"; only the configured queue limit drops (and counts) messages.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "mqtt/packets.h"
#include "src/message.h"
#include "src/topic_tree.h"

namespace petrel {

class Connection;

// One message owed to this session, with its per-receiver attributes.
struct Delivery {
  MessagePtr msg;
  uint8_t qos = 0;
  bool retain = false;
  std::vector<uint32_t> subscription_ids;
};

struct InflightOut {
  uint16_t packet_id;
  Delivery d;
  bool released = false;  // QoS 2: PUBREC received, PUBREL sent
};

struct StoredSubscription {
  std::string group;  // share name, empty for a plain subscription
  std::string filter;
  SubscriptionOptions opts;
};

class Session {
 public:
  explicit Session(std::string client_id) : client_id_(std::move(client_id)) {}

  const std::string& clientId() const { return client_id_; }

  Connection* conn = nullptr;
  mqtt::Version version = mqtt::Version::V311;
  // Who the client authenticated as (CONNECT user name or certificate CN);
  // empty for an anonymous client. The ACL is checked against it.
  std::optional<std::string> username;

  // Seconds the session outlives its connection; 0xFFFFFFFF = never expires
  // (§3.1.2.11.2). v3.1.1 clean_session=0 maps to "never".
  uint32_t expiry_interval = 0;
  int64_t expires_at_ms = 0;  // set while offline, 0 = not scheduled

  // What the client told us in CONNECT (MQTT 5), §3.1.2.11.
  uint16_t client_receive_max = 65535;
  uint32_t client_max_packet = 0;  // 0 = no limit
  uint16_t client_topic_alias_max = 0;

  // The will of the current (or last) connection, and when it fires if it
  // is delayed (§3.1.3.2.2 Will Delay Interval).
  std::optional<mqtt::Will> will;
  int64_t will_at_ms = 0;

  // Subscriptions keyed by the full filter as subscribed ("$share/g/x" too).
  std::map<std::string, StoredSubscription> subscriptions;

  // Outbound QoS 1/2 messages sent and not yet completed, in send order.
  std::deque<InflightOut> inflight;
  // Messages waiting for the window (or for the client to come back).
  std::deque<Delivery> queue;
  // Inbound QoS 2 packet ids: PUBREC sent, PUBREL not yet received.
  std::unordered_set<uint16_t> inbound_qos2;

  uint64_t dropped = 0;       // messages the queue limit discarded
  bool drop_logged = false;   // the first drop is logged, the rest counted

  // Scratch for the router: merges overlapping subscriptions of one publish.
  uint64_t match_gen = 0;
  size_t match_index = 0;

  uint16_t nextPacketId();
  bool packetIdInUse(uint16_t id) const;
  InflightOut* findInflight(uint16_t id);
  void eraseInflight(uint16_t id);

 private:
  std::string client_id_;
  uint16_t last_packet_id_ = 0;
};

}  // namespace petrel
