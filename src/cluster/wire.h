// src/cluster/wire.h — a message as it travels between nodes: the body of a
// NATS message whose subject is the topic (subjects.h).
//
//   u8   version (1)
//   u8   flags: bits 0-1 QoS, bit 2 retain, bit 3 properties follow,
//        bit 4 came in over a bridge (no bridge of any node sends it on)
//   u64  the sending node's id (random, new at every start), big-endian
//   u64  its sequence number for the message, from 1
//   i64  expiry, wall-clock milliseconds since the epoch (0: never)
//   ...  the MQTT 5 properties forwarded to subscribers (their encoding,
//        length prefix first), when flagged
//   ...  the payload: the rest
//
// The node id and sequence number let a receiving node take each message
// once although several of its subscriptions match it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "src/routing/message.h"

namespace petrel::cluster {

constexpr uint8_t kWireVersion = 1;
constexpr size_t kWireHeader = 2 + 8 + 8 + 8;

void encodeWire(const Message& m, uint64_t node, uint64_t seq, std::string& out);

struct WireInfo {
  uint64_t node = 0;
  uint64_t seq = 0;
};
// Fills `m` (all but its topic) from a body; false when it is not one
// encodeWire makes (another version, truncated, bad properties).
bool decodeWire(const uint8_t* data, size_t len, Message& m, WireInfo& info);

}  // namespace petrel::cluster
