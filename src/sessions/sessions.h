// src/sessions/sessions.h — every session of the broker (§4.1) and what
// happens to the messages owed to one: the registry (lookup, takeover, the
// end of a session, wills, expiry), delivery (send now or queue, the
// in-flight window, packet ids, the client's output budget), and the RAM
// window of a durable session's queue over the store.
//
// Files: registry.cpp (lookup, connect, disconnect, end, expiry, wills),
// delivery.cpp (deliver, send, pump, acknowledgements), durable_queue.cpp
// (store records of a session, refill and eviction of its queue).
//
// The seam for routing: deliver() is the one way a routed message reaches a
// session; with several event loops it becomes the hand-over to the loop
// that owns the session.
//
// May call: Durable (store writes), Security (ACL), OutputBudget, AckHolds,
// the Router (wills are published; unsubscribing on session end) and
// SharedGroups (group messages a member holds).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "src/acks/ack_gate.h"
#include "src/config/config.h"
#include "src/durable/durable.h"
#include "src/security/security.h"
#include "src/metrics/stats.h"
#include "src/sessions/publish_cache.h"
#include "src/sessions/session.h"
#include "src/transport/connection.h"
#include "src/util/check.h"
#include "src/util/keyed_hash.h"

namespace petrel {

class AckHolds;
class OutputBudget;
class Router;
class SharedGroups;
class Clock;
class LoopTimers;

// What deliver() did with one receiver's copy.
enum class DeliverOutcome : uint8_t {
  NotStored,     // sent (QoS 0, or a session that is not durable), dropped
  StoredInGate,  // stored, sent at once, counted in the gate
  Stored,        // stored and waiting: the PUBACK waits for the commit
};

class Sessions {
 public:
  // Queue entries of a durable session kept in RAM; the rest wait on disk.
  static constexpr size_t kRamWindow = 1000;

  struct Parts {
    const Config& cfg;
    BrokerStats& stats;
    const Clock& clock;
    Durable& durable;
    Security& security;
    OutputBudget& budget;
    AckHolds& holds;
    Router& router;
    SharedGroups& groups;
    LoopTimers& timers;
  };
  explicit Sessions(const Parts& p)
      : cfg_(p.cfg), stats_(p.stats), clock_(p.clock), durable_(p.durable), security_(p.security),
        budget_(p.budget), holds_(p.holds), router_(p.router), groups_(p.groups), timers_(p.timers) {}
  Sessions(const Sessions&) = delete;
  Sessions& operator=(const Sessions&) = delete;

  // --- registry (registry.cpp) ---
  Session* find(std::string_view client_id) {
    auto it = map_.find(client_id);
    return it == map_.end() ? nullptr : it->second.get();
  }
  Session& create(const std::string& client_id);
  // A session loaded from the store at start-up.
  Session& adopt(std::unique_ptr<Session> s);
  // A durable session as the store holds it (start-up, moved here from
  // another node of a cluster, or taken from a node that is down):
  // offline, its queue on disk, its expiry and pending will armed. `now`
  // is the wall clock; expires_at_ms is set if the record has none.
  Session& restore(std::string_view client_id, const persistence::SessionRecord& r, int64_t now);
  // One of its subscriptions, as stored: into the topic tree, its share
  // group or its declared queue. False when it has no effect (a queue no
  // longer declared).
  bool restoreSubscription(Session& s, const persistence::SubscriptionRecord& r);
  size_t size() const { return map_.size(); }
  template <typename F>
  void forEach(F&& f) {
    for (auto& [id, s] : map_) f(*s);
  }
  // Another connection takes `s` over: the old one ends abnormally (its
  // will goes out, or waits for its delay) and is disconnected.
  void takeOver(Session& s, const std::string& by);
  // Resends what was in flight and sends what queued while offline.
  void resume(Session& s, Connection& c);
  // The connection of `s` ended (`graceful`: DISCONNECT without will).
  void connectionLost(Session& s, bool graceful);
  // The session ends (clean start, expiry, clean session): its will goes
  // out, its subscriptions and stored state go.
  void end(Session* s);
  // Publishes the will of `s` now (ACL checked).
  void publishWill(Session& s);
  // The connection of `s` ended without DISCONNECT (or was taken over): its
  // will goes out now, or waits for its Will Delay Interval unless the
  // session ends with the connection.
  void willAfterAbnormalEnd(Session& s, bool session_ends);
  // Arms (or cancels) the timer of `s` for its delayed will and its expiry
  // while it is offline (expiry.cpp); call after changing either deadline.
  void scheduleExpiry(Session& s);
  // Drops the expired entries at the heads of offline sessions' queues
  // (RAM and store), at most `budget` of them; the broker calls it four
  // times a second. Returns how many went.
  size_t sweepExpiredQueues(size_t budget);
  static constexpr size_t kSweepBudget = 5000;  // a call: 20,000 a second
  // The ACL with the identity of `s` (inline: asked for every receiver).
  bool mayPublish(const Session& s, std::string_view topic) const {
    return security_.mayPublish(s.username, s.clientId(), topic);
  }
  bool mayReceive(const Session& s, std::string_view topic) const {
    return security_.mayReceive(s.username, s.clientId(), topic);
  }
  bool maySubscribe(const Session& s, std::string_view filter) const {
    return security_.maySubscribe(s.username, s.clientId(), filter);
  }

  // Queue limits of one session instead of limits.max_queued_* (a
  // bridge's out queue, bridges/); `qos0`: QoS 0 messages are queued too,
  // as QoS 1.
  struct QueueLimits {
    uint32_t max_messages = 0;  // 0 = no limit
    uint64_t max_bytes = 0;     // 0 = no limit
    bool qos0 = false;
  };
  void setQueueLimits(Session& s, const QueueLimits& l) {
    PETREL_CHECK(s.bridge);  // deliver() looks them up for bridge sessions only
    own_limits_[&s] = l;
  }

  // Told of every QoS 1 and 2 delivery to a session marked `moving` (after
  // its queue position is set).
  void setMoveHook(std::function<void(Session&, const Delivery&)> f) { move_hook_ = std::move(f); }

  // --- delivery (delivery.cpp) ---
  // Sends or queues `d` for `s`. With a gate, a durable QoS 1 delivery
  // sent at once counts in it (DeliverOutcome).
  DeliverOutcome deliver(Session& s, Delivery&& d, const AckGatePtr& gate = nullptr);
  // Sends a new QoS 1/2 delivery with a fresh packet id and records it in
  // flight (and in the store); false if it could not be sent. `stored`:
  // its queue entry is in the store already (it waited in the queue).
  bool sendNew(Session& s, Connection& c, Delivery&& d, bool stored = false);
  // Encodes one PUBLISH to `c`; false if it was dropped (expired, larger
  // than the client's maximum packet size). `held`: the caller holds this
  // output until a commit (a QoS 2 PUBLISH whose packet id is being
  // stored), so it must go into the connection's output, where the hold
  // keeps it, and not be handed to a worker loop by reference.
  bool sendPublish(Session& s, Connection& c, const Delivery& d, uint16_t pid, bool dup, bool held = false);
  // Fills the in-flight window from the queue (and the store).
  void pump(Session& s);
  // True when the queue of `s` has a head in RAM, read back from the
  // store (refill) if the RAM part is empty.
  bool queueHead(Session& s);
  // A PUBREC of `s` is being stored; with QoS 2 messages next in its
  // stored queue, stores the packet ids of up to one more window of them in
  // the same batch, so that each is sent the moment the window frees
  // instead of after a commit of its own.
  void storeIdsAhead(Session& s);
  // Sends the in-flight `f` whose turn came (pump()): for the first time
  // (fresh) or again (resendInflight). False when the entry is gone.
  bool sendInflight(Session& s, Connection& c, InflightOut& f);
  // Sends the in-flight `f` again after a reconnect [MQTT-4.4.0-1]: its
  // PUBLISH (DUP), or its PUBREL. False when the entry is gone: a QoS 1
  // message that expired is dropped instead of sent (the caller erases it).
  bool resendInflight(Session& s, Connection& c, InflightOut& f);
  // Drops the expired messages at the head of the queue of `s` (RAM, then
  // store), so that stale messages do not hold the room of live ones when
  // a queue limit is reached; returns how many went.
  size_t purgeExpiredHead(Session& s, size_t max = SIZE_MAX);
  // The exchange of an outbound QoS 1/2 message is over.
  void completeDelivery(Session& s, uint16_t packet_id) { completeDelivery(s, packet_id, s.findInflight(packet_id)); }
  // The same, with its window entry already looked up (`inf`, may be null).
  void completeDelivery(Session& s, uint16_t packet_id, InflightOut* inf);
  // A delivery leaves the session (acknowledged, expired, undeliverable).
  void forget(Session& s, const Delivery& d);
  // True while `s` can take a message now (online, window and output room).
  bool ready(const Session& s) const;
  // Encode once: the router opens it around a message with several
  // receivers (publish_cache.h).
  PublishCache& publishCache() { return encoded_; }

  // --- durable state (durable_queue.cpp) ---
  bool durable(const Session& s) const { return durable_.enabled() && s.expiry_interval > 0; }
  void save(Session& s);
  void saveSubscription(Session& s, std::string_view key, const SubscriptionOptions& o);
  void saveQueueEntry(Session& s, const Delivery& d, uint16_t pid, bool released);
  // Writes the packet ids of the QoS 1 messages in flight whose entries do
  // not carry them yet (the client went away, or the broker stops).
  void saveInflightIds(Session& s);
  // Reads the queue's next window from the store (`resend`: PUBLISH what
  // was in flight again, to a connected client).
  void refill(Session& s, bool resend);
  // Offline: drop the RAM copy once its writes have committed.
  void scheduleEvict(Session& s);
  // Store commits up to `done`: evictions and refills that waited on them.
  void afterCommit(uint64_t done);

 private:
  void evict(Session& s);
  static void onExpiryTimer(Timer& t);
  void expiryDue(Session& s);
  void forgetPending(Session* s);
  // A stored entry an expiry purge may drop once its message expired: not
  // one in flight, except an unacknowledged QoS 1 message (a QoS 2
  // exchange, whose packet id the client may hold, is never cut).
  static bool purgeable(const persistence::QueueRecord& q) { return !q.released && (!q.packet_id || q.qos == 1); }
  // When the head of the queue of `s` expires: 0 if it never does or
  // cannot be dropped (a QoS 2 message in flight), -1 if the store has not
  // committed it yet.
  int64_t queueHeadExpiry(Session& s);
  // Puts `s` in the sweep at `at` (0: takes it out).
  void setSweep(Session& s, int64_t at);
  // Watches the head of an offline session's queue (scheduleExpiry).
  void watchQueueHead(Session& s);

  const Config& cfg_;
  BrokerStats& stats_;
  const Clock& clock_;
  Durable& durable_;
  Security& security_;
  OutputBudget& budget_;
  AckHolds& holds_;
  Router& router_;
  SharedGroups& groups_;
  LoopTimers& timers_;
  // Keyed by a view of the session's own client id (no second copy),
  // which the client chose: hashed with this process's secret key.
  std::unordered_map<std::string_view, std::unique_ptr<Session>, KeyedHash> map_;
  std::unordered_map<const Session*, QueueLimits> own_limits_;
  std::vector<Session*> evict_pending_;
  std::function<void(Session&, const Delivery&)> move_hook_;
  std::vector<Session*> refill_pending_;
  // Offline sessions by when their queue's head expires (Session::sweep_at_ms).
  std::set<std::pair<int64_t, Session*>> sweep_;
  // refill()'s buffers, kept between calls.
  std::vector<persistence::QueueRecord> refill_recs_;
  std::vector<uint64_t> refill_ids_;
  PublishCache encoded_;
  mqtt::Properties scratch_props_;  // sendPublish's per-receiver properties
};

}  // namespace petrel
