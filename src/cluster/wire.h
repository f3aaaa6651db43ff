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
#include <string_view>

#include "src/routing/message.h"

namespace petrel::cluster {

constexpr uint8_t kWireVersion = 1;
constexpr size_t kWireHeader = 2 + 8 + 8 + 8;

void encodeWire(const Message& m, uint64_t node, uint64_t seq, std::string& out);

struct WireInfo {
  uint64_t node = 0;
  uint64_t seq = 0;
};
// The sending node's id in a body; false when it is not one encodeWire
// makes.
bool wireNode(std::string_view body, uint64_t& node);
// Fills `m` (all but its topic) from a body; false when it is not one
// encodeWire makes (another version, truncated, bad properties).
bool decodeWire(const uint8_t* data, size_t len, Message& m, WireInfo& info);

// A control message between nodes, on "<name>.c" (subjects.h): what a node
// announces of its filters (remote_interest.h).
//   u8   version (1)
//   u8   kind: '+' a filter, '-' no more that filter, 'A' every message,
//        'E' the end of a full announcement, 'H' hello (announce in full),
//        'S' the node's status, 'B' bye (the node stops), 'Q' a query
//        (every node sends its status now: petrel inspect --cluster),
//        'D' another node's sessions are served by this one (it is down:
//        src/cluster/adoption.h; its filters are forgotten)
//   u64  the node's id, big-endian
//   u64  the generation of its announcements
//   u64  the message's number among the node's control messages (from 1;
//        0 from `petrel inspect`): a node's stream messages say how many
//        it had sent (Cluster::takeStream waits for them)
//   ...  the rest: the filter ('+', '-'), the status ('S', NodeStatus),
//        the node's name as a subject token ('D')
enum class ControlKind : uint8_t {
  Add = '+',
  Remove = '-',
  All = 'A',
  End = 'E',
  Hello = 'H',
  Status = 'S',
  Bye = 'B',
  Query = 'Q',
  Adopted = 'D',
};

struct Control {
  ControlKind kind = ControlKind::Hello;
  uint64_t node = 0;
  uint64_t gen = 0;
  uint64_t index = 0;
  std::string_view filter;  // into the decoded body
};

void encodeControl(ControlKind kind, uint64_t node, uint64_t gen, std::string_view filter, std::string& out,
                   uint64_t index = 0);
bool decodeControl(const uint8_t* data, size_t len, Control& out);

// What a node tells the others of itself every few seconds (its 'S'
// control message's rest): six u64 big-endian, then its name.
struct NodeStatus {
  uint64_t clients = 0;    // connected
  uint64_t sessions = 0;   // connected and offline durable ones
  uint64_t filters = 0;    // the filters it has subscriptions to
  uint64_t sent = 0;       // messages it sent to the other nodes
  uint64_t received = 0;   // and took from them
  uint64_t retained = 0;   // retained messages in its store
  std::string name;
};
void encodeStatus(const NodeStatus& s, std::string& out);
bool decodeStatus(std::string_view rest, NodeStatus& out);

// A value of the session registry's bucket (cluster.h): the node a client
// connected to, the node's number for that registration, and its name.
//   u64  node id, big-endian
//   u64  registration number
//   ...  the node's name: the rest
struct Registration {
  uint64_t node = 0;
  uint64_t seq = 0;
  std::string_view name;  // into the decoded value
};
void encodeRegistration(uint64_t node, uint64_t seq, std::string_view name, std::string& out);
bool decodeRegistration(std::string_view value, Registration& out);

// QoS 1 and 2 messages for one node through the cluster's stream
// (stream.h) go several to a stream message: entries one after another,
//   u32  the topic's length, big-endian; the topic
//   u32  the wire body's length, big-endian; the body (encodeWire)
void appendBatchEntry(std::string_view topic, std::string_view body, std::string& out);
// The entry at `pos` of `batch`, and `pos` moved past it; false at the end
// or when the rest is not an entry (`bad` true then).
bool nextBatchEntry(std::string_view batch, size_t& pos, std::string_view& topic, std::string_view& body, bool& bad);

}  // namespace petrel::cluster
