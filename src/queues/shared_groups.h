// src/queues/shared_groups.h — shared subscription groups run as work
// queues (see shared_group.h for the model): enqueueing, picking a member
// (share_strategy.h), dispatch as members' windows free up, hand-back of
// unacknowledged messages when a member goes away, and the group queues in
// the store with their RAM window.
//
// May call: Sessions (sendNew/sendPublish to a member, its readiness),
// Security (read access), Durable (group queue records), the topic tree
// (where groups live).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

#include "persistence/records.h"
#include "src/config/config.h"
#include "src/metrics/stats.h"
#include "src/queues/shared_group.h"
#include "src/sessions/session.h"
#include "src/util/keyed_hash.h"

namespace petrel {

class Durable;
class Sessions;
struct SubscriptionOptions;
class TopicTree;
class Clock;
struct Delivery;

// A queue declared in the configuration (`queues:`): its share groups,
// `$share/<name>/<filter>` for each of its filters, exist from start-up on,
// keep their queue in the store whether or not a durable member exists,
// and are never dropped for being unused. A message matching several of
// its filters is queued once, in the group of the first filter listed.
struct DeclaredQueue {
  QueueConfig cfg;
  std::vector<SharedGroup*> groups;  // in the order of cfg.filters
};

// What operators see of a declared queue ($SYS, SIGUSR1 report).
struct QueueStats {
  uint64_t depth = 0;        // queued, not yet handed out
  uint64_t bytes = 0;        // their payload bytes
  uint64_t oldest_age_s = 0; // age of the oldest queued entry
  uint64_t consumers = 0;    // distinct member sessions
  uint64_t online = 0;       // of those, connected
  uint64_t inflight = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t expired = 0;
};

class SharedGroups {
 public:
  struct Parts {
    const Config& cfg;
    BrokerStats& stats;
    const Clock& clock;
    Durable& durable;
    TopicTree& tree;
    Sessions& sessions;
  };
  explicit SharedGroups(const Parts& p)
      : cfg_(p.cfg), stats_(p.stats), clock_(p.clock), durable_(p.durable), tree_(p.tree),
        sessions_(p.sessions) {}
  SharedGroups(const SharedGroups&) = delete;
  SharedGroups& operator=(const SharedGroups&) = delete;

  // Queues `m` in `g`; true if it was written to the store for the group.
  bool enqueue(SharedGroup& g, const MessagePtr& m);
  // False when `g` leaves `m` out (a declared queue's `qos0: drop`).
  static bool accepts(const SharedGroup& g, const Message& m);

  // Share groups across a cluster (src/cluster/group_stream.h): a group's
  // messages wait in the cluster's stream, and a node takes some for its
  // members online (enqueueTaken()). Each such message (Message::
  // group_token set) leaves the group through `settle`: done (its member
  // acknowledged it, or it was dropped for good) or back (no member of
  // this node can take it: for another node). `group` hears of each group
  // made (true) and dropped (false) here; `room` that a group's members
  // may take more, or less. `give` offers a message queued here (the
  // node's own: no other node wanted its topic when it came) to the
  // cluster once no member is online here: true when the cluster took it
  // (its store entry, `seq` when not 0, is the cluster's to delete once
  // the stream has it; or to put back with putBack()).
  struct ClusterLink {
    std::function<void(SharedGroup&, bool made)> group;
    std::function<void(const Message&, bool done)> settle;
    std::function<void(SharedGroup&)> room;
    std::function<bool(SharedGroup&, const MessagePtr&, uint64_t seq)> give;
  };
  // Set once, before the store is loaded; the groups that exist already
  // are told of at once.
  void setClusterLink(ClusterLink link);
  // A message taken from the cluster's stream for `g`, queued ahead of
  // the group's limits (what a node takes is bounded by its members' room)
  // and never stored here; then handed to a member if one has room.
  void enqueueTaken(SharedGroup& g, const MessagePtr& m, bool redelivery);
  // How many more messages `g` could hand to its members online here at
  // once, less what waits in its queue; 0 with none online.
  int room(const SharedGroup& g) const;
  // A message give() handed to the cluster that the stream refused: back
  // to the front of its group's queue (under its store entry `seq`).
  // `too_large` (refused for good): kept for the group's members here,
  // and dropped once its member moved to another node (onlyElsewhere():
  // it cannot follow).
  void putBack(const std::string& owner, const MessagePtr& m, uint64_t seq, bool too_large = false);
  // Groups with messages queued here and no member online: offered to
  // the cluster again (what one handBack() left on disk, or what the
  // cluster could not take then).
  void handBackAll();
  // Hands queued messages to members with room.
  void dispatch(SharedGroup& g);
  // A member's window has room again: its groups may hand it more.
  void dispatchMemberGroups(Session& s) {
    if (s.has_shared) dispatchMemberGroupsOf(s);
  }
  // A member's connection ended (or its session, with `session_ends`):
  // group messages it has not completed go back to their groups.
  void returnToGroups(Session& s, bool session_ends = false);
  // A group message left its member (completed, expired, undeliverable).
  void release(SharedGroup& g, const Delivery& d);
  // Once `g` has no members (and is not a declared queue's): what it
  // queued is dropped, and the group goes when nothing of it is in flight.
  void maybeDrop(SharedGroup& g);
  // Groups whose last message left while their caller still held them
  // (release, a dropped entry) go once the loop turn's work is done, if
  // nothing came back to them meanwhile.
  void dropEmptied();
  // A group the topic tree just created (or loaded): its strategy from the
  // configuration, and its work queue.
  void configure(SharedGroup& g);
  // The group whose store owner key is `owner`, or null.
  SharedGroup* byOwner(std::string_view owner);
  // Start-up: group queues come back from the store; QoS 1 messages that
  // were in flight to members go back to their groups.
  void loadQueues();
  void returnAfterRestart();
  // Store commits: groups whose refill waited on them dispatch again.
  void afterCommit();
  // Entries past their deadline (message expiry, a declared queue's
  // retention or message_ttl) at the head of each group's queue go, and
  // are counted as expired, whether or not a member is online to meet
  // them (dispatch drops those it meets): at most `budget` of them in one
  // call, so that a long run of them is spread over several. Returns how
  // many went. Called four times a second (Broker).
  size_t expireHeads(size_t budget);
  static constexpr size_t kExpireBudget = 5000;  // a call: 20,000 a second
  // One line per group (SIGUSR1).
  std::string report();

  // Declared queues (`queues:` of the configuration): their groups are
  // created, before the store's subscriptions come back.
  void declareQueues();
  // A reload (SIGHUP) of `queues:`: a new queue is declared at once; a
  // removed one (or a filter removed from a queue) stops being declared,
  // its groups kept as ordinary share groups until what they hold is
  // consumed or expires; changed parameters apply to messages queued from
  // then on. Members through `$queue/<name>` follow the queue's groups.
  void applyQueues(const std::vector<QueueConfig>& queues);
  DeclaredQueue* findQueue(std::string_view name);
  // `$queue/<name>`: `s` becomes a member of every group of `q` (added to
  // `joined`, when given); leaving drops those memberships, except the
  // ones `s` also holds as `$share/<name>/<filter>` (unless `all`).
  void joinQueue(Session& s, DeclaredQueue& q, const SubscriptionOptions& o,
                 std::vector<SharedGroup*>* joined);
  void leaveQueue(Session& s, std::string_view name, bool all);
  // True when `s` is a member of `g` through `$queue/<name>`.
  bool memberThroughQueue(const Session& s, const SharedGroup& g) const;
  // Of the groups a message matched, one per declared queue stays (that
  // of its first filter listed): it is queued once.
  static void oncePerQueue(std::vector<SharedGroup*>& groups);
  QueueStats queueStats(const DeclaredQueue& q) const;
  void forEachQueue(const std::function<void(const DeclaredQueue&)>& f) const {
    for (const auto& e : declared_) f(*e.second);
  }

 private:
  void dispatchMemberGroupsOf(Session& s);
  // `g` may have nothing left: looked at again by dropEmptied().
  void noteIfEmptied(const SharedGroup& g);
  size_t refill(SharedGroup& g);
  size_t load(SharedGroup& g, const std::vector<persistence::QueueRecord>& recs);
  void putEntry(SharedGroup& g, const GroupEntry& e);
  // Moves a member's store entry of `m` back to the group (a hand-back).
  void moveToGroup(SharedGroup& g, Session& s, uint64_t member_seq, const GroupEntry& e);
  // Takes the queued entry at `pos` out of the group's queue for good
  // (dropped: full, expired, nobody may read it); the entry after it.
  LazyDeque<GroupEntry>::iterator dropEntry(SharedGroup& g, LazyDeque<GroupEntry>::iterator pos, bool expired);
  // A message the cluster cannot carry, of a group whose member moved to
  // another node: said in the log (it counts as dropped).
  static void logTooLarge(const SharedGroup& g, const Message& m);
  // Groups kept from a queue removed from the configuration.
  void keepRemovedQueue(std::string_view owner);
  // The last member of `g` left: drops what it queued (the RAM window at
  // once, the entries on disk once nothing of it is in flight). A
  // cluster's group gives what it took from the cluster's stream back to
  // it, and drops what it queued as the node's own.
  void dropAbandoned(SharedGroup& g);
  // Creates the queue `qc` with its groups.
  DeclaredQueue& declareQueue(const QueueConfig& qc);
  // `g` of `q`, on `filter_index`, created if need be.
  SharedGroup& declareGroup(DeclaredQueue& q, size_t filter_index);
  // `g` stops being part of its declared queue (reload): members through
  // `$queue/<name>` leave it, what it holds stays (logged) until consumed
  // or expired, as in any share group.
  void undeclareGroup(SharedGroup& g);
  // Sessions subscribed to `$queue/<name>` of `q` join `g` (a group the
  // queue gained on a reload).
  void joinQueueMembers(DeclaredQueue& q, SharedGroup& g);

  // A group's messages taken from the cluster that no member online here
  // can take go back (ClusterLink::settle).
  void handBack(SharedGroup& g, bool give_own);
  // The share groups `s` is a member of.
  void forEachGroupOf(const Session& s, const std::function<void(SharedGroup&)>& f);
  void settleTaken(const Message& m, bool done) {
    if (m.group_token && link_.settle) link_.settle(m, done);
  }
  ClusterLink link_;

  const Config& cfg_;
  BrokerStats& stats_;
  const Clock& clock_;
  Durable& durable_;
  TopicTree& tree_;
  Sessions& sessions_;
  std::vector<SharedGroup*> refill_pending_;  // null: group dropped
  std::vector<std::string> emptied_;  // owner keys, for dropEmptied()
  // Every group's work queue, by the group's store owner key.
  std::unordered_map<std::string, std::unique_ptr<GroupQueue>, KeyedHash, std::equal_to<>> queues_;
  std::map<std::string, std::unique_ptr<DeclaredQueue>, std::less<>> declared_;
};

}  // namespace petrel
