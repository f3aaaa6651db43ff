// src/queues/shared_group.h — a shared subscription group `$share/<name>/<filter>`
// (MQTT 5 §4.8.2) run as a work queue: the group, not its members, holds
// the messages. Each message goes to exactly one member; it waits in the
// group queue until a member is online with room in its window (Receive
// Maximum), so a slow member never gets more than it can take and an
// offline member is never picked while another is online. QoS 1/2 messages
// a member had not acknowledged when it disconnected go back to the front
// of the queue for another member.
//
// A message sent to a durable member moves into that member's session
// (its queue entry in the store carries the packet id, the QoS 2 state and
// the group), so a restart resumes the exchange with that member.
//
// Trade-off (documented in README): a QoS 1 message handed back after a
// member died may already have been processed by that member, so QoS 1
// group delivery is at least once. QoS 2 stays with a durable member until
// it completes or its session ends (exactly once); per-publisher order
// holds for each member, but a handed-back message can arrive at its new
// member after later messages did.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/util/lazy_deque.h"
#include "src/routing/message.h"
#include "src/routing/topic_tree.h"

namespace petrel {

class Session;

enum class ShareStrategy : uint8_t {
  RoundRobin,     // the next member in turn that has room
  Random,         // a random member with room
  Sticky,         // the last member while it has room
  HashClientId,   // by publisher client id: one publisher, one member
  HashTopic,      // by topic: one topic, one member
  LeastInflight,  // the member with the most free window
};

bool parseShareStrategy(std::string_view name, ShareStrategy& out);
const char* shareStrategyName(ShareStrategy s);

// A message waiting in a group queue.
struct GroupEntry {
  MessagePtr msg;
  uint64_t seq = 0;  // position in the persisted group queue, 0 = not stored
  bool redelivery = false;
  // Declared queues (DeclaredQueue): when it was queued and when it may no
  // longer be handed out (0 = never), kept in its store record.
  int64_t queued_at_ms = 0;
  int64_t deadline_ms = 0;
  // The cluster refused it as larger than its NATS servers take: it is for
  // the group's members on this node, never offered to the cluster again.
  bool local_only = false;
};

struct SharedGroup;
struct DeclaredQueue;

// The work queue of one share group: owned by SharedGroups (queues/), not
// by the topic tree, which holds only the group's subscription (below).
struct GroupQueue {
  explicit GroupQueue(SharedGroup& g) : group(&g) {}
  SharedGroup* group;            // the group it serves
  LazyDeque<GroupEntry> queue;   // waiting for a member (the RAM window)
  size_t inflight = 0;           // handed to members, not yet acknowledged

  // Persistence: the queue's entries live in the store under the group's
  // owner(). Like a durable session's queue, only a window of it is in RAM:
  // the `disk_count` entries from `next_read_seq` on wait in the store until
  // the window drains (SharedGroups::refill).
  bool stored = false;
  bool refill_waiting = false;  // disk entries not committed yet
  uint64_t next_seq = 1;
  uint64_t next_read_seq = 0;
  uint64_t disk_count = 0;
  // Entries handed back by a member while others waited on disk: they are
  // in RAM already, under positions the refill has not reached yet.
  std::vector<uint64_t> handed_back;

  uint64_t bytes = 0;            // payload bytes queued (RAM window and disk)
  // The group's messages are the cluster's (SharedGroups::ClusterLink):
  // they wait in its stream, and what was taken from it for the members
  // online here is never stored on this node. What the group queued as
  // its own (no other node wanted the topic) is, as without a cluster,
  // until it gives it to the cluster.
  bool cluster = false;
  size_t taken = 0;  // entries of `queue` taken from the cluster's stream

  size_t queued() const { return queue.size() + disk_count; }
  bool empty() const { return queue.empty() && disk_count == 0 && inflight == 0; }

  // For operators.
  uint64_t delivered = 0;
  uint64_t redelivered = 0;
  uint64_t dropped = 0;
  uint64_t expired = 0;  // of those dropped: past retention or lifetime
  bool drop_logged = false;
};

// A share group as the topic tree holds it: a subscription whose members
// are the subscribers, and how one of them is picked. Its queue is `work`.
struct SharedGroup {
  std::string name;    // the share name
  std::string filter;  // the topic filter
  std::vector<Subscriber> members;
  ShareStrategy strategy = ShareStrategy::RoundRobin;
  size_t cursor = 0;            // round robin / sticky position
  GroupQueue* work = nullptr;   // set by SharedGroups::configure
  // The declared queue (`queues:`) this group serves, and which of its
  // filters; null for a group that exists because members subscribed.
  DeclaredQueue* declared = nullptr;
  size_t filter_index = 0;
  // A group left over from a queue removed from the configuration: what it
  // holds stays until consumed or expired, with members or without.
  bool leftover_queue = false;
  // Its last member here was a session that moved to another node (a
  // cluster): the member lives on there, so what the group queued here as
  // the node's own goes to the cluster (SharedGroups::handBackAll), not
  // away. Until a member subscribes here again.
  bool handing_over = false;

  size_t queued() const { return work ? work->queued() : 0; }
  // The store key that owns this group's queue entries; it cannot collide
  // with a client id (client ids never start with U+0001 in practice, and a
  // share name cannot contain '/').
  std::string owner() const { return ownerKey(name, filter); }
  static std::string ownerKey(const std::string& name, const std::string& filter) {
    return "\x01share/" + name + "/" + filter;
  }
  // A group whose last member left holds nothing for the next one: the
  // group ends with its subscription, as at a restart (SharedGroups::
  // loadQueues). A declared queue's group, a leftover one and one handing
  // over to the cluster hold on.
  bool abandoned() const { return !declared && !leftover_queue && !handing_over && members.empty(); }
  // Handing over, and nothing else keeps it here: what only this node can
  // deliver (too large for the cluster) has nobody to go to.
  bool onlyElsewhere() const { return handing_over && !declared && !leftover_queue && members.empty(); }
  // No members and nothing queued or in flight: the group may go (a
  // declared queue's never does).
  bool unused() const { return !declared && members.empty() && (!work || work->empty()); }
};

}  // namespace petrel
