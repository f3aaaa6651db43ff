// src/sessions/session.h — the state MQTT keeps for a client id between connections
// (§4.1): subscriptions, the QoS 1/2 messages in flight in both directions,
// the queue of messages not yet sent, the will, and the expiry.
//
// Plain state: the behaviour is in Sessions (sessions.h), which needs the
// store, the output budget and the groups; a Session stays small because
// every idle device has one. Per-receiver flow control (delivery.cpp): a
// message is sent when the client's Receive Maximum has room, otherwise it
// waits in the queue; acks free the window and pull the next ones. A full
// window means "wait", never "drop"; only the configured queue limit drops
// (and counts) messages.
#pragma once

#include <cstdint>
#include <deque>
#include <algorithm>
#include <string_view>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "mqtt/packets.h"
#include "src/acks/ack_gate.h"
#include "src/timers/timer_queue.h"
#include "src/util/block_pool.h"
#include "src/util/lazy_deque.h"
#include "src/routing/message.h"
#include "src/routing/topic_tree.h"
#include "src/sessions/subscription_ids.h"

namespace petrel {

class Connection;
struct SharedGroup;

// Where a message of a shared subscription group came from: the group, its
// position in the group's store (0: none, or taken over by a durable
// member) and a declared queue's entry times (GroupEntry). Out of line:
// most deliveries have none, and every queued one would pay for the room.
struct GroupPlace {
  SharedGroup* group = nullptr;
  uint64_t seq = 0;
  int64_t queued_at_ms = 0;
  int64_t deadline_ms = 0;
};

// A GroupPlace or none, copied with its owner; its blocks come from a
// per-thread free list (a share group hands out one per delivery).
class GroupRef {
 public:
  GroupRef() = default;
  GroupRef(const GroupRef& o) : p_(o.p_ ? make(*o.p_) : nullptr) {}
  GroupRef(GroupRef&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  GroupRef& operator=(const GroupRef& o) {
    if (this != &o) set(o.p_ ? *o.p_ : GroupPlace{});
    return *this;
  }
  GroupRef& operator=(GroupRef&& o) noexcept {
    if (this != &o) {
      drop();
      p_ = o.p_;
      o.p_ = nullptr;
    }
    return *this;
  }
  ~GroupRef() { drop(); }

  const GroupPlace* get() const { return p_; }
  GroupPlace* get() { return p_; }
  // A place without a group is none.
  void set(const GroupPlace& g) {
    if (!g.group) {
      drop();
    } else if (p_) {
      *p_ = g;
    } else {
      p_ = make(g);
    }
  }

 private:
  static GroupPlace* make(const GroupPlace& g) { return new (BlockFreeList<sizeof(GroupPlace)>::take()) GroupPlace(g); }
  void drop() {
    if (p_) BlockFreeList<sizeof(GroupPlace)>::give(p_);  // trivially destructible
    p_ = nullptr;
  }
  GroupPlace* p_ = nullptr;
};

// One message owed to this session, with its per-receiver attributes. A
// session's queue may hold tens of thousands: it is kept to 64 bytes.
struct Delivery {
  MessagePtr msg;
  AckGatePtr gate;  // counts in the publisher's early PUBACK (AckGate)
  uint64_t seq = 0;      // queue position of a durable session, 0 = not stored
  SubscriptionIds subscription_ids;
  // A message of a shared subscription group is the group's, not the
  // session's: it goes back to the group if the member leaves.
  GroupRef group_place;
  uint8_t qos = 0;
  bool retain = false;

  SharedGroup* group() const { return group_place.get() ? group_place.get()->group : nullptr; }
  uint64_t groupSeq() const { return group_place.get() ? group_place.get()->seq : 0; }
  // The place in the group's store is given up (a durable member took the
  // message over into its own queue).
  void clearGroupSeq() {
    if (GroupPlace* g = group_place.get()) g->seq = 0;
  }
};
static_assert(sizeof(Delivery) <= 64, "a queued delivery: keep it small (GroupPlace holds what is rare)");
static_assert(std::is_trivially_destructible_v<GroupPlace>, "GroupRef gives its block back without a destructor");

struct InflightOut {
  // A constructor, not an aggregate: it is made in place in the window's
  // deque (emplace_back), and clang before 16 cannot make an aggregate
  // from parentheses.
  InflightOut(uint16_t id, Delivery&& delivery, bool was_released = false, bool unsaved = false)
      : packet_id(id), d(std::move(delivery)), released(was_released), id_unsaved(unsaved) {}

  uint16_t packet_id;
  Delivery d;
  bool released = false;  // QoS 2: PUBREC received, PUBREL sent
  // QoS 1 sent from a stored queue entry: the entry does not carry this
  // packet id yet. It is written when the client goes away, or before an
  // entry sent after it is stored with its id (Sessions::saveInflightIds),
  // not once per message sent.
  bool id_unsaved = false;
  // Not sent on this connection yet: the session resumed with more in
  // flight than the client's Receive Maximum allows at once, and this one
  // is sent again (its PUBLISH, DUP set, or its PUBREL) when the window
  // has room (Sessions::resume, Sessions::pump). Such entries are always
  // the window's last ones.
  bool unsent = false;
  // Never sent: a QoS 2 message of a stored queue whose packet id was
  // stored ahead of its turn (Sessions::storeIdsAhead). It is sent with
  // DUP clear when the window has room, and not before `id_ticket` (the
  // batch with its id) has committed. An acknowledgement for its id is
  // one for an id the client was never given.
  bool fresh = false;
  uint64_t id_ticket = 0;
};

// Outbound QoS 1/2 messages sent and not yet completed, in send order. A
// client may allow up to 65,535 messages in flight, and scanning the window
// for every new packet id made a large drain quadratic (seconds of a frozen
// loop). Small windows are scanned (they fit in a cache line or two); from
// kIndexFrom entries on, a 65,536-bit map of the ids in use answers "is
// this id taken" in constant time. An acknowledgement is looked for where
// its id says it should be (see position()): constant time when acks come
// in order, proportional to the entries completed out of order before it
// otherwise -- which is why the broker caps every window at
// limits.max_inflight.
class InflightWindow {
 public:
  using iterator = LazyDeque<InflightOut>::iterator;
  using const_iterator = LazyDeque<InflightOut>::const_iterator;

  bool empty() const { return q_.empty(); }
  size_t size() const { return q_.size(); }
  InflightOut& front() { return q_.front(); }
  const InflightOut& front() const { return q_.front(); }
  InflightOut& back() { return q_.back(); }
  iterator begin() { return q_.begin(); }
  iterator end() { return q_.end(); }
  const_iterator begin() const { return q_.begin(); }
  const_iterator end() const { return q_.end(); }

  void push_back(InflightOut&& f) { emplace_back(f.packet_id, std::move(f.d), f.released, f.id_unsaved); }
  // Made in place: a Delivery moved once, from the caller into the window.
  void emplace_back(uint16_t id, Delivery&& d, bool released, bool id_unsaved) {
    if (id_unsaved) ++unsaved_;
    if (q_.empty()) ordered_ = true;
    else if (ordered_ && id != following(q_.back().packet_id)) ordered_ = false;
    q_.emplace_back(id, std::move(d), released, id_unsaved);
    if (ids_) set(id);
    else if (q_.size() > kIndexFrom) buildIndex();
  }
  bool contains(uint16_t id) const {
    if (ids_) return (ids_[id >> 6] >> (id & 63)) & 1;
    if (q_.empty()) return false;
    // Ids handed out one after another, as nextPacketId() does: every id in
    // the window lies between the front's and the back's, so the next one
    // after the back's is free without a look at each entry.
    if (ordered_ && ringDistance(q_.front().packet_id, id) > ringDistance(q_.front().packet_id, q_.back().packet_id))
      return false;
    for (const auto& f : q_)
      if (f.packet_id == id) return true;
    return false;
  }
  InflightOut* find(uint16_t id) {
    const size_t i = position(id);
    return i == kNone ? nullptr : &q_[i];
  }
  // Removes the entry with `id`; false if there is none.
  bool erase(uint16_t id) {
    const size_t i = position(id);
    if (i == kNone) return false;
    if (i == 0) pop_front();
    else erase(q_.begin() + static_cast<std::ptrdiff_t>(i));
    return true;
  }
  iterator erase(iterator it) {
    if (ids_) clear(it->packet_id);
    if (it->id_unsaved) --unsaved_;
    if (it->unsent) --unsent_;
    auto next = q_.erase(it);
    if (q_.empty()) ids_.reset();
    return next;
  }
  void pop_front() {
    if (ids_) clear(q_.front().packet_id);
    if (q_.front().id_unsaved) --unsaved_;
    if (q_.front().unsent) --unsent_;
    q_.pop_front();
    if (q_.empty()) ids_.reset();
  }
  void clear() {
    q_.clear();
    ids_.reset();
    unsaved_ = 0;
    unsent_ = 0;
  }
  // Entries whose store entries do not carry their packet ids yet
  // (InflightOut::id_unsaved); markSaved() once the id is written.
  size_t unsavedIds() const { return unsaved_; }
  void markSaved(InflightOut& f) {
    if (!f.id_unsaved) return;
    f.id_unsaved = false;
    --unsaved_;
  }

  // Entries waiting to be sent again on this connection (InflightOut::
  // unsent), and those on the wire: what the client's Receive Maximum
  // bounds.
  size_t unsent() const { return unsent_; }
  size_t onWire() const { return q_.size() - unsent_; }
  void markUnsent(InflightOut& f) {
    if (f.unsent) return;
    f.unsent = true;
    ++unsent_;
  }
  void markSent(InflightOut& f) {
    if (!f.unsent) return;
    f.unsent = false;
    --unsent_;
  }
  // The first entry waiting to be sent again (they are the window's last).
  iterator firstUnsent() { return q_.begin() + static_cast<std::ptrdiff_t>(q_.size() - unsent_); }
  // Entries never sent (InflightOut::fresh, the window's last): queued
  // messages whose packet ids were stored ahead, not in flight yet.
  size_t neverSent() const {
    size_t n = 0;
    while (n < q_.size() && q_[q_.size() - 1 - n].fresh) ++n;
    return n;
  }

  static constexpr size_t kIndexFrom = 64;

 private:
  static constexpr size_t kNone = SIZE_MAX;
  // Packet ids run 1..65535 and then 1 again (0 is not an id).
  static uint16_t following(uint16_t id) { return id == 65535 ? 1 : static_cast<uint16_t>(id + 1); }
  // Steps from `from` to `to` along that ring.
  static uint32_t ringDistance(uint16_t from, uint16_t to) {
    return (static_cast<uint32_t>(to) + 65535 - from) % 65535;
  }
  size_t unsaved_ = 0;
  size_t unsent_ = 0;
  // Each entry's id follows the one before it (erasing keeps that): see
  // contains(). Entries read back from the store may not.
  bool ordered_ = true;
  // Where `id` is in the window. Ids are handed out in increasing order
  // (mod 2^16), so with no gaps the entry is at (id - front id); entries
  // acknowledged out of order only move it towards the front. Looking from
  // that guess backwards, then forwards, is constant time for acks in any
  // order short of a client scrambling them on purpose.
  size_t position(uint16_t id) {
    if (q_.empty()) return kNone;
    if (q_.front().packet_id == id) return 0;  // the usual case: acks in order
    if (ids_ && !contains(id)) return kNone;
    const size_t n = q_.size();
    size_t guess = static_cast<uint16_t>(id - q_.front().packet_id);
    if (guess >= n) guess = n - 1;
    for (size_t i = guess + 1; i-- > 0;)
      if (q_[i].packet_id == id) return i;
    for (size_t i = guess + 1; i < n; ++i)
      if (q_[i].packet_id == id) return i;
    return kNone;
  }
  void set(uint16_t id) { ids_[id >> 6] |= uint64_t(1) << (id & 63); }
  void clear(uint16_t id) { ids_[id >> 6] &= ~(uint64_t(1) << (id & 63)); }
  void buildIndex() {
    ids_ = std::make_unique<uint64_t[]>(65536 / 64);  // zeroed
    for (const auto& f : q_) set(f.packet_id);
  }

  LazyDeque<InflightOut> q_;
  std::unique_ptr<uint64_t[]> ids_;  // null while the window is small
};

// A small set of packet ids (at most the Receive Maximum we announce, and
// usually empty): a vector costs nothing while empty, unlike a hash set.
class PacketIdSet {
 public:
  size_t count(uint16_t id) const {
    for (uint16_t v : ids_)
      if (v == id) return 1;
    return 0;
  }
  void insert(uint16_t id) {
    if (!count(id)) ids_.push_back(id);
  }
  size_t erase(uint16_t id) {
    for (size_t i = 0; i < ids_.size(); ++i) {
      if (ids_[i] == id) {
        ids_[i] = ids_.back();
        ids_.pop_back();
        if (ids_.empty()) ids_.shrink_to_fit();
        return 1;
      }
    }
    return 0;
  }
  size_t size() const { return ids_.size(); }
  const std::vector<uint16_t>& ids() const { return ids_; }

 private:
  std::vector<uint16_t> ids_;
};

// A session's subscriptions: the filter as subscribed ("$share/g/f" too)
// and its options. Sessions have few subscriptions, most have one: a sorted
// vector costs ~50 bytes an entry where a std::map node costs ~150.
class SubscriptionList {
 public:
  struct Entry {
    std::string key;
    SubscriptionOptions opts;
  };
  const SubscriptionOptions* find(std::string_view key) const {
    auto it = lower(key);
    return it != v_.end() && it->key == key ? &it->opts : nullptr;
  }
  // Adds or replaces; returns true if the key was new.
  bool set(std::string_view key, const SubscriptionOptions& o) {
    auto it = lower(key);
    if (it != v_.end() && it->key == key) {
      it->opts = o;
      return false;
    }
    v_.insert(it, Entry{std::string(key), o});
    return true;
  }
  bool erase(std::string_view key) {
    auto it = lower(key);
    if (it == v_.end() || it->key != key) return false;
    v_.erase(it);
    if (v_.empty()) v_.shrink_to_fit();
    return true;
  }
  size_t size() const { return v_.size(); }
  std::vector<Entry>::const_iterator begin() const { return v_.begin(); }
  std::vector<Entry>::const_iterator end() const { return v_.end(); }

 private:
  std::vector<Entry>::iterator lower(std::string_view key) {
    return std::lower_bound(v_.begin(), v_.end(), key,
                            [](const Entry& e, std::string_view k) { return e.key < k; });
  }
  std::vector<Entry>::const_iterator lower(std::string_view key) const {
    return std::lower_bound(v_.begin(), v_.end(), key,
                            [](const Entry& e, std::string_view k) { return e.key < k; });
  }
  std::vector<Entry> v_;
};


class Session;
class Sessions;

// The timer of an offline session's delayed will and expiry.
struct SessionTimer {
  SessionTimer(Sessions& r, Session& s, Timer::Callback cb) : timer(cb, this), registry(&r), session(&s) {}
  Timer timer;
  Sessions* registry;
  Session* session;
};

class Session {
 public:
  explicit Session(std::string client_id) : client_id_(std::move(client_id)) {}

  const std::string& clientId() const { return client_id_; }

  Connection* conn = nullptr;
  // Who the client authenticated as (CONNECT user name or certificate CN);
  // empty for an anonymous client. The ACL is checked against it.
  std::optional<std::string> username;

  // Seconds the session outlives its connection; 0xFFFFFFFF = never expires
  // (§3.1.2.11.2). v3.1.1 clean_session=0 maps to "never".
  uint32_t expiry_interval = 0;
  // What the client told us in CONNECT (MQTT 5), §3.1.2.11; see also
  // client_receive_max and client_topic_alias_max below.
  uint32_t client_max_packet = 0;  // 0 = no limit
  int64_t expires_at_ms = 0;  // set while offline, 0 = not scheduled
  // Offline: when the sweep of expired queue entries next looks at its
  // queue's head (Sessions::sweepExpiredQueues), 0 = not watched.
  int64_t sweep_at_ms = 0;

  // The will of the current (or last) connection, and when it fires if it
  // is delayed (§3.1.3.2.2 Will Delay Interval).
  std::unique_ptr<mqtt::Will> will;  // a pointer: most sessions have none
  int64_t will_at_ms = 0;
  // Fires at the earlier of will_at_ms and expires_at_ms while offline
  // (sessions/expiry.cpp); allocated only while one of them is set.
  std::unique_ptr<SessionTimer> timer;

  SubscriptionList subscriptions;

  // Outbound QoS 1/2 messages sent and not yet completed, in send order.
  InflightWindow inflight;
  // Messages waiting for the window (or for the client to come back).
  LazyDeque<Delivery> queue;
  // Inbound QoS 2 packet ids: PUBREC sent, PUBREL not yet received.
  PacketIdSet inbound_qos2;

  uint64_t dropped = 0;       // messages the queue limit discarded
  uint64_t queued_bytes = 0;  // payload bytes in queue + on disk

  // Durable state (persistence/). A durable session writes every QoS 1/2
  // message it is owed to the store (seq order). Only a window of the queue
  // is in RAM: entries from `next_read_seq` on (`disk_count` of them) are
  // read back as the window drains. Offline sessions keep nothing in RAM
  // once their last writes have committed (`evict_ticket`).
  uint64_t next_seq = 1;
  uint64_t next_read_seq = 0;
  uint64_t disk_count = 0;
  uint64_t evict_ticket = 0;    // evict RAM state once this ticket commits
  // Entries stored with a packet id from this seq on were never sent
  // (InflightOut::fresh, at the window's tail when evicted): read back, they
  // go with DUP clear. Only known in RAM: after a restart such an entry may
  // have been sent before the crash, and it goes with DUP set.
  uint64_t fresh_from_seq = 0;

  size_t queuedCount() const { return queue.size() + disk_count; }
  // Room in the outbound window (Receive Maximum).
  size_t windowFree() const {
    return inflight.size() < client_receive_max ? client_receive_max - inflight.size() : 0;
  }
  // Its window is full while messages wait for it: in its queue, or in the
  // queue of a share group it is a member of. Such a subscriber gets more
  // only as fast as its acknowledgements are handled (AckPoller, and the
  // urgent lane of worker loops).
  bool windowHolds() const { return windowFree() == 0 && (queuedCount() > 0 || has_shared); }

  // Scratch for the router: merges overlapping subscriptions of one publish.
  uint64_t match_gen = 0;
  uint32_t match_index = 0;

  // Small fields together, so that the object has no padding holes (every
  // idle client has a session: its size is the broker's memory per device).
  mqtt::Version version = mqtt::Version::V311;
  bool drop_logged = false;     // the first drop is logged, the rest counted
  bool stored = false;          // the store has a record of this session
  bool evicted = false;         // offline with nothing in RAM
  bool refill_waiting = false;  // disk entries not committed yet
  bool has_shared = false;      // member of a shared subscription group
  bool bridge = false;          // the out queue of one of our bridges (bridges/)
  // Another broker's bridge (CONNECT's bridge bit or user property): its
  // own messages are never sent back to it, and retain flags go as
  // published, on every subscription.
  bool peer_bridge = false;
  // Moving to or from another node of a cluster: what it is given is told
  // to the move (Sessions::setMoveHook).
  bool moving = false;
  // Taken from a node that is down (src/cluster/adoption.h): its number
  // there, which the copies still waiting for that node carry; 0 otherwise.
  uint32_t adopted_from = 0;
  uint16_t client_receive_max = 65535;
  uint16_t client_topic_alias_max = 0;

  // The id after the last one, in the usual case that it is free (ids
  // handed out in order, acknowledged mostly in order); inline, as it is
  // asked once per message sent.
  uint16_t nextPacketId() {
    const uint16_t id = last_packet_id_ == 65535 ? 1 : static_cast<uint16_t>(last_packet_id_ + 1);
    if (!inflight.contains(id)) return last_packet_id_ = id;
    return nextFreePacketId();
  }
  bool packetIdInUse(uint16_t id) const { return inflight.contains(id); }
  InflightOut* findInflight(uint16_t id) {
    // The usual acknowledgement is for the window's front.
    if (!inflight.empty() && inflight.front().packet_id == id) return &inflight.front();
    return inflight.find(id);
  }
  void eraseInflight(uint16_t id) { inflight.erase(id); }

 private:
  uint16_t nextFreePacketId();
  std::string client_id_;
  uint16_t last_packet_id_ = 0;
};

}  // namespace petrel
