// src/cluster/move_wire.h — the messages that move a durable session from
// one node to another (session_moves.h), on each node's own subject
// "<name>.h.<node>" (subjects.h).
//
// The node a client connects to asks ('T', take) the node the session
// registry names; that one answers part by part ('P'); the asking node
// ends the move ('F', finish) or asks it to drop the session ('X', the
// client started clean). An old node whose new node restarted before it
// took what came after the snapshot asks it to ('R', resume). Every
// message starts with
//   u8   version (1)
//   u8   kind
//   u64  the move's number (the asking node's), big-endian
//   u64  the asking node's id, big-endian
// then, by kind:
//   'T'  u8 phase (1: the first part, 2: what came after the snapshot),
//        u64 the queue position to read from, str the node to answer
//        (its name's token), str the client id
//   'R'  as 'T' (phase 2): the position to ask from, the old node's token
//   'F', 'X'  str the client id
//   'P'  u8 status (MoveStatus), u8 flags (1: the session's record,
//        subscriptions and inbound QoS 2 ids follow; 2: the last part),
//        u64 the position to ask next, then, if flagged, str the session
//        record, u32 count and each subscription (str key, str record),
//        u32 count and each packet id (u16); then u32 count and each queue
//        entry (u64 position, u64 the message's node and u64 its sequence
//        number there (Message::cluster_node, 0 when unknown), str queue
//        record, str message record).
// Strings are a u32 length (big-endian) and the bytes; the records are
// the store's own encoding (persistence/records.h), so the nodes of a
// cluster run the same Petrel release, on machines of the same byte order
// (the store writes integers as the machine holds them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "persistence/records.h"

namespace petrel::cluster {

constexpr uint8_t kMoveVersion = 1;

enum class MoveKind : uint8_t { Take = 'T', Part = 'P', Finish = 'F', Discard = 'X', Resume = 'R' };

enum class MoveStatus : uint8_t {
  None = 0,  // no such session here: the asking node goes on without it
  Part = 1,  // a part of it
  Busy = 2,  // it is moving here right now: ask again shortly
  Wait = 3,  // nothing more yet, and the move's grace is not over: ask again
};

struct MoveHeader {
  MoveKind kind = MoveKind::Take;
  uint64_t move = 0;  // the asking node's number for the move
  uint64_t node = 0;  // the asking node's id
};

struct MoveTake {
  uint8_t phase = 1;  // 1 first part, 2 after the snapshot
  uint64_t from = 0;  // queue position to read from
  std::string reply_to;
  std::string client_id;
};

struct MoveEntry {
  persistence::QueueRecord queue;
  persistence::MessageRecord message;
  uint64_t node = 0;  // the message's identity in the cluster, when known
  uint64_t seq = 0;
};

struct MovePart {
  MoveStatus status = MoveStatus::None;
  bool has_session = false;
  bool last = false;
  uint64_t next = 0;
  persistence::SessionRecord session;
  std::vector<persistence::SubscriptionRecord> subscriptions;
  std::vector<uint16_t> inbound_qos2;
  std::vector<MoveEntry> entries;
};

void encodeMoveTake(const MoveHeader& h, const MoveTake& t, std::string& out);
void encodeMoveClient(const MoveHeader& h, std::string_view client_id, std::string& out);  // 'F', 'X'
void encodeMovePart(const MoveHeader& h, const MovePart& p, std::string& out);

// The header; false when `data` is not a move message this build sends.
bool decodeMoveHeader(std::string_view data, MoveHeader& h);
bool decodeMoveTake(std::string_view data, MoveTake& t);
bool decodeMoveClient(std::string_view data, std::string& client_id);
bool decodeMovePart(std::string_view data, MovePart& p);

}  // namespace petrel::cluster
