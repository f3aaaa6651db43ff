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

namespace petrel {

class Durable;
class Sessions;
class TopicTree;
class Clock;
struct Delivery;

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
  // Drops `g` once it has no members and nothing queued or in flight.
  void maybeDrop(SharedGroup& g);
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
  // One line per group (SIGUSR1).
  std::string report();

 private:
  void dispatchMemberGroupsOf(Session& s);
  size_t refill(SharedGroup& g);
  size_t load(SharedGroup& g, const std::vector<persistence::QueueRecord>& recs);
  void putEntry(SharedGroup& g, const Message& m, uint64_t seq);
  // Moves a member's store entry of `m` back to the group (a hand-back).
  void moveToGroup(SharedGroup& g, Session& s, uint64_t member_seq, const Message& m, uint64_t group_seq);

  const Config& cfg_;
  BrokerStats& stats_;
  const Clock& clock_;
  Durable& durable_;
  TopicTree& tree_;
  Sessions& sessions_;
  std::vector<SharedGroup*> refill_pending_;  // null: group dropped
  // Every group's work queue, by the group's store owner key.
  std::unordered_map<std::string, std::unique_ptr<GroupQueue>> queues_;
};

}  // namespace petrel
