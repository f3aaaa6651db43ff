// src/cluster/adoption.h — the durable sessions of a node that is down,
// served by another node of the cluster (cluster.jetstream, with
// persistence and cluster.store_replica).
//
// A client whose session the registry gives to node A connects to node B
// while A is down (killed, its machine gone): no status from A for
// Cluster::kGoneMs, or NATS found nothing listening on A's subject when B
// asked A for the session and A's last status is older than kStatusMs.
// One node takes all of A's sessions at once, the adopter: of the nodes
// up, the one whose name sorts first (Cluster::adopterFor). A client that
// connected to another node waits while it asks the adopter for the
// session, which then moves to it as any session does (session_moves.h).
//
// The adopter, for node A:
//  1. reads A's replica (store_replica.h) into a scratch store of its own,
//     on a thread (JetStream calls block);
//  2. writes every session of it that the registry still gives to A into
//     its own store: the record, the subscriptions, the inbound QoS 2 ids,
//     the queue with its messages; and A's delayed publishes. Once that is
//     committed (and in its own replica), the sessions exist here,
//     offline, as if loaded at start-up, each tagged with A's number here;
//     what A's share groups held goes to the groups here;
//  3. registers each client in the session registry, tells the other
//     nodes to forget A's filters (nothing more is sent for A), and reads
//     A's consumer of the cluster's stream: what other nodes sent A and A
//     never stored goes to the sessions tagged for A alone;
//  4. marks A's replica as taken and purges it (store_replica.h's
//     markAdopted): A, when it starts again on its old disk or an empty
//     one, lets go of the sessions (main.cpp) instead of serving them too.
// The waiting CONNECTs go on once A's consumer has nothing more (or after
// kDrainMaxMs): their sessions are here, present.
//
// Guarantees: every message A acknowledged is in its replica (or in the
// stream, for A): each is delivered, at least once. Messages that came
// both through A's consumer and through the adopter's own subscriptions
// (published while the others learned that A is gone) may arrive twice, as
// QoS 1 allows. A node cut off from NATS for longer than kGoneMs that
// comes back without restarting keeps its copies of the sessions taken
// (its clients were closed, 0x8E, by the registry); restarting it lets go
// of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "persistence/records.h"
#include "src/timers/timer_queue.h"
#include "src/util/keyed_hash.h"

namespace petrel {

namespace persistence {
class Store;
}

class Cluster;
class Clock;
class DelayedPublish;
class Durable;
class LoopTimers;
class Router;
class Sessions;

class Adoption {
 public:
  struct Parts {
    Cluster& cluster;
    Sessions& sessions;
    Router& router;
    Durable& durable;
    DelayedPublish& delayed;
    LoopTimers& timers;
    const Clock& clock;
    std::string scratch_dir;  // where a down node's replica is read into
  };
  struct Counters {
    uint64_t nodes = 0;      // nodes whose sessions were taken
    uint64_t sessions = 0;   // sessions taken
    uint64_t messages = 0;   // queued messages they brought (and delayed publishes)
    uint64_t failed = 0;     // adoptions given up (no replica, a read that failed)
  };
  static constexpr uint64_t kSettleMs = 2000;     // after the others were told: what they sent meanwhile
  static constexpr uint64_t kDrainMaxMs = 30000;  // reading the node's consumer, at most, before CONNECTs go on
  static constexpr int kReadAttempts = 6;         // the replica read, tried again after kReadRetryMs
  static constexpr int kReadRetryMs = 2000;

  explicit Adoption(const Parts& p);
  ~Adoption();
  Adoption(const Adoption&) = delete;
  Adoption& operator=(const Adoption&) = delete;

  // This node can take a down node's sessions (persistence, JetStream,
  // the replicas).
  bool possible() const;
  // Takes node `token`'s sessions (it is down), unless begun already.
  // False when this node cannot (no store, no stream).
  bool begin(const std::string& token, const std::string& name);
  // Begun for `token` and not over yet.
  bool busy(const std::string& token) const;
  // `client_id`'s session comes with an adoption not over yet.
  bool holding(const std::string& client_id) const { return holding_.count(client_id) != 0; }
  // A CONNECT of `client_id` (waiting under `ticket`) for a session of
  // node `token`: done(ticket, false) once its adoption is over. A newer
  // CONNECT of the same client replaces it: done(older ticket, true) at
  // once, and that connection closes.
  void wait(const std::string& token, const std::string& client_id, uint64_t ticket);
  // The same for a CONNECT of a client whose session is being taken; false when none is.
  bool waitFor(const std::string& client_id, uint64_t ticket);
  void setOnDone(std::function<void(uint64_t ticket, bool replaced)> f) { on_done_ = std::move(f); }
  void afterCommit(uint64_t committed);
  void stop();
  Counters counters() const { return counters_; }

 private:
  // One session of the down node's store, as it is written here.
  struct Taken {
    persistence::SessionRecord record;
    std::vector<persistence::SubscriptionRecord> subscriptions;
    std::vector<uint16_t> inbound_qos2;
  };
  struct Job {
    std::string token;
    std::string name;
    uint32_t tag = 0;
    enum class State { Reading, Writing, Settling, Draining, Done } state = State::Reading;
    std::thread thread;
    std::atomic<int> read{0};  // 1 read, -1 failed (the thread's)
    std::string error;        // the thread's, once read != 0
    std::unique_ptr<persistence::Store> scratch;
    uint64_t commit_ticket = 0;
    std::unordered_map<std::string, Taken, KeyedHash, std::equal_to<>> taken;  // by client id, until installed
    std::vector<std::string> clients;  // the sessions taken
    std::vector<std::pair<std::string, uint64_t>> waiting;  // CONNECTs: client id, ticket
    int64_t told_ms = 0;
    uint64_t settled_mark = 0;
    bool marked = false;
    uint64_t groups_ticket = 0;  // the commit of what its share groups held
    std::thread mark_thread;
    uint64_t sessions = 0, messages = 0;
    bool failed = false;
    int64_t finished_ms = 0;
  };
  static constexpr uint64_t kRetryAfterMs = 10000;  // a failed adoption is tried again by a CONNECT after
  void read(Job& j);
  void write(Job& j);
  void install(Job& j);
  void mark(Job& j);
  void finish(Job& j, bool ok);
  void addWaiting(Job& j, const std::string& client_id, uint64_t ticket);
  void arm();
  static void onTimer(Timer& t);
  void tick();

  Cluster& cluster_;
  Sessions& sessions_;
  Router& router_;
  Durable& durable_;
  DelayedPublish& delayed_;
  LoopTimers& timers_;
  const Clock& clock_;
  const std::string scratch_dir_;
  std::unordered_map<std::string, std::unique_ptr<Job>> jobs_;  // by node token
  std::unordered_set<std::string, KeyedHash, std::equal_to<>> holding_;
  std::vector<uint64_t> ready_;  // CONNECTs that go on at the next tick
  uint32_t next_tag_ = 1;
  std::function<void(uint64_t, bool)> on_done_;
  Timer timer_;
  Counters counters_;
};

}  // namespace petrel
