// src/cluster/session_moves.h — a durable session follows its client from
// one node of a cluster to another (cluster.jetstream, with persistence).
//
// A client that connects to node B wanting its session (clean start 0),
// when the session registry says it last connected to node A (up), waits
// for its CONNACK while B takes the session from A (move_wire.h):
//
//  1. B asks A for it. A closes the client's connection there (0x8E, as a
//     takeover), waits until what that wrote is committed, and answers with
//     the session's record, its subscriptions, its inbound QoS 2 packet
//     ids, then its queue from the store, part by part (each part about
//     kPartBytes), B asking for the next one each time. Messages in flight
//     keep their packet ids (sent again with DUP; a QoS 2 one PUBREC'd gets
//     its PUBREL again).
//  2. B writes each part to its store as it comes (an older copy of the
//     session on B goes first). When the last has committed, the session
//     exists on B, offline, as if loaded at start-up; the CONNACK goes with
//     session present, and B registers the client.
//  3. A keeps the session, subscribed, for kGraceMs after its last part, and
//     until every stream message for A stored before then has been taken:
//     whatever a node published before it knew that B wants the session's
//     filters went to A, and is queued there. B then asks A for what was
//     queued after the snapshot, delivers it, and tells A to finish: A
//     drops its copy (no will).
//
// Guarantees: nothing queued for the session is lost while both nodes run;
// a message published during the move may arrive twice (at least once, as
// QoS 1 allows: through A's queue and B's own subscription), and what came
// through A after the snapshot may arrive after newer messages. When A
// does not answer within kAnswerMs, the CONNACK goes without the moved
// session (B's own copy, or a new one); the session stays on A.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/cluster/move_wire.h"
#include "src/timers/timer_queue.h"
#include "src/util/keyed_hash.h"

namespace petrel {

class Adoption;
class Cluster;
class Clock;
class Router;
struct Delivery;
class Durable;
class LoopTimers;
class Session;
class Sessions;

class SessionMoves {
 public:
  struct Parts {
    Cluster& cluster;
    Sessions& sessions;
    Router& router;
    Durable& durable;
    LoopTimers& timers;
    const Clock& clock;
    Adoption& adoption;
  };
  struct Counters {
    uint64_t moved_in = 0;       // sessions taken from other nodes
    uint64_t moved_out = 0;      // sessions other nodes took from this one (finished)
    uint64_t entries_in = 0;     // queued messages they brought (snapshot and after)
    uint64_t entries_out = 0;    // queued messages this node sent
    uint64_t failed = 0;         // moves given up (no answer in time)
    uint64_t duplicates = 0;     // entries after the snapshot the new node had already
  };
  static constexpr uint64_t kAnswerMs = 5000;      // an answer waited for, at most
  static constexpr uint64_t kGraceMs = 2000;       // the old node keeps the session after its snapshot
  static constexpr uint64_t kTailMs = 60 * 1000;   // asking for what came after the snapshot, at most
  static constexpr uint64_t kOutIdleMs = 2 * 60 * 1000;  // a move out with no word from the new node ends
  static constexpr uint64_t kResumeAfterMs = 3000;      // the new node quiet this long after the snapshot: 'R'
  static constexpr size_t kPartBytes = 256 * 1024;
  // Asking the node that takes a down node's sessions (adoption.h), at most.
  static constexpr uint64_t kAdoptWaitMs = 60 * 1000;
  // A node the registry names that does not answer: asked again until it
  // is known to be down (then its sessions are taken), at most this long.
  static constexpr uint64_t kSilentMs = 20 * 1000;

  explicit SessionMoves(const Parts& p);
  ~SessionMoves();
  SessionMoves(const SessionMoves&) = delete;
  SessionMoves& operator=(const SessionMoves&) = delete;

  // A CONNECT (waiting under `ticket`) for `client_id` with clean start 0:
  // true when its session is on another node and is being taken; `done`
  // is called later with the ticket (the CONNECT goes on, the session here
  // or not).
  bool moveIn(const std::string& client_id, uint64_t ticket);
  // A CONNECT with clean start 1: the node that had the session drops it.
  void discardElsewhere(const std::string& client_id);
  // `replaced`: another CONNECT of the same client came while it waited.
  void setOnDone(std::function<void(uint64_t ticket, bool replaced)> f) { on_done_ = std::move(f); }
  // A message on this node's move subject.
  void onMessage(std::string_view body);
  // Nothing listened to request `move` (Cluster::setOnUnanswered).
  void unanswered(uint64_t move);
  // A QoS 1 or 2 delivery to a session marked moving (Sessions::setMoveHook).
  void delivered(Session& s, const Delivery& d);
  void afterCommit(uint64_t committed);
  Counters counters() const { return counters_; }
  // Its session is moving here (or comes with a down node's being taken
  // here): every CONNECT of it waits (moveIn).
  bool movingIn(const std::string& client_id) const;

 private:
  // B's side: a session being taken from another node.
  struct In {
    uint64_t move = 0;
    std::string client_id;
    uint64_t from_node = 0;
    std::string from_token;
    std::string from_name;
    uint64_t ticket = 0;        // the waiting CONNECT (0: gone, or answered)
    enum class State { Asking, Installing, Grace, Tail } state = State::Asking;
    uint8_t phase = 1;
    uint64_t next = 0;          // queue position to ask from
    bool waiting_answer = false;
    bool silent = false;
    bool cannot_adopt = false;  // its node is down and its sessions cannot be taken: it goes on without        // the old node did not answer, or nothing listened: down?
    // Asking the node that takes the sessions of `down_token` (down).
    bool patient = false;
    std::string down_token;
    std::string down_name;
    int64_t asked_ms = 0;       // the last request (uv time)
    int64_t started_ms = 0;     // of the phase
    int64_t retry_at_ms = 0;    // Busy, Wait: ask again then
    bool wrote = false;         // the store has parts of it
    uint64_t commit_ticket = 0;
    persistence::SessionRecord record;
    std::vector<persistence::SubscriptionRecord> subscriptions;
    std::vector<uint16_t> inbound_qos2;
    uint64_t entries = 0;
    // From its install on: the first sequence number of each node's
    // messages it was given here, per topic (firstKey()). The node that
    // published one knew then that this node wants the topic, and sent it
    // every later one on it: what the old node queued after the snapshot
    // from that node on that topic, from that number on, came here too.
    std::unordered_map<std::string, uint64_t, KeyedHash, std::equal_to<>> first_seen;
    uint64_t duplicates = 0;
  };
  // A's side: a session another node takes.
  struct Out {
    uint64_t move = 0;
    uint64_t node = 0;
    std::string reply_to;
    int64_t heard_ms = 0;      // uv time of its last request
    bool snapshot_done = false;
    int64_t snapshot_end_ms = 0;
    uint64_t settled_mark = 0; // Cluster::streamSettledSeen() then
    bool unsubscribed = false; // its subscriptions left the topic tree here
    uint64_t next = 0;         // queue position after the snapshot
    int64_t resumed_ms = 0;    // uv time of the last 'R' sent
    // The cluster identity of what was queued for it since the move
    // began, by queue position.
    std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> ids;
  };
  // A request answered once the store has committed `ticket` (and the
  // session's connection has gone).
  struct Pending {
    std::string client_id;
    cluster::MoveHeader header;
    cluster::MoveTake take;
    uint64_t ticket = 0;
    bool conn_gone = false;  // its connection here had ended when the ticket was taken
  };

  static std::string firstKey(uint64_t node, std::string_view topic);
  void ask(In& in);
  // The node `in` asks is down: its sessions are taken here (the CONNECT
  // waits for that), or by the node that takes them, asked instead.
  void toAdopter(In& in, std::string token, std::string name);  // (copies: `in` may go)
  void onPart(const cluster::MoveHeader& h, std::string_view body);
  void onTake(const cluster::MoveHeader& h, std::string_view body);
  void onFinish(const cluster::MoveHeader& h, const std::string& client_id);
  void onDiscard(const std::string& client_id);
  void onResume(const cluster::MoveHeader& h, std::string_view body);
  void answer(const Pending& p);
  void reply(const cluster::MoveHeader& h, const std::string& to, const cluster::MovePart& part);
  void install(In& in);
  void writePart(In& in, cluster::MovePart& part);
  void deliverTail(In& in, cluster::MovePart& part);
  void finishIn(uint64_t move, bool ok);
  uint64_t writtenTicket();
  void arm();
  static void onTimer(Timer& t);
  void tick();

  Cluster& cluster_;
  Sessions& sessions_;
  Router& router_;
  Durable& durable_;
  LoopTimers& timers_;
  const Clock& clock_;
  Adoption& adoption_;
  std::function<void(uint64_t, bool)> on_done_;
  uint64_t next_move_ = 1;
  std::unordered_map<uint64_t, In> in_;                  // by move number
  std::unordered_map<std::string, uint64_t, KeyedHash, std::equal_to<>> in_by_client_;
  std::unordered_map<std::string, Out, KeyedHash, std::equal_to<>> out_;  // by client id
  std::vector<Pending> pending_;                         // answers waiting for a commit
  Timer timer_;
  Counters counters_;
  std::string buf_;
};

}  // namespace petrel
