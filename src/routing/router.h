// src/routing/router.h — where a published message goes: the topic tree
// (subscriptions), the retained messages, and route(), which matches a
// message once, merges a session's overlapping subscriptions into one
// delivery (highest QoS, every subscription identifier; §3.3.4), hands
// share-group copies to their groups and every other copy to its session,
// and says when the publisher's acknowledgement may go (RouteResult).
//
// May call: Sessions::deliver (the one seam to sessions), SharedGroups
// (enqueue, dispatch), Security (read access), Durable (the message record).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "src/acks/ack_gate.h"
#include "src/config/config.h"
#include "src/routing/message.h"
#include "src/routing/retained_store.h"
#include "src/routing/topic_tree.h"
#include "src/sessions/subscription_ids.h"

namespace petrel {

class Durable;
class Session;
class Sessions;
class SharedGroups;
class Clock;

// What route() did with a message.
struct RouteResult {
  size_t matched = 0;   // sessions and share groups it went to
  uint32_t stored = 0;  // store references it took (queue entries)
  // Non-null: the publisher's PUBACK may go once this gate opens, before the
  // commit (every stored copy went at once to a durable receiver).
  AckGatePtr early_ack;
};

class Router {
 public:
  Router(const Clock& clock, Durable& durable, Sessions& sessions, SharedGroups& groups)
      : clock_(clock), durable_(durable), sessions_(sessions), groups_(groups) {}
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Routes a message to every matching subscription. `extra_refs` counts
  // holders besides queues (the retained slot) for the store's record.
  RouteResult route(const MessagePtr& msg, uint32_t extra_refs = 0);
  // Stores `msg` as the retained message of its topic (empty payload
  // clears); returns the store references it takes (0 or 1).
  uint32_t retain(const MessagePtr& msg);
  // A retained message kept in memory only ($SYS).
  void retainInMemory(const MessagePtr& msg) { retained_.set(msg); }
  // The retained messages matching `filter`, to `s` (on subscribe).
  void sendRetained(Session& s, const std::string& filter, const SubscriptionOptions& o);
  // Removes the subscription `key` ("$share/g/f" or a plain filter) of `s`.
  void unsubscribe(Session& s, std::string_view key);
  // Removes every subscription of `s`: its session ends, or moved to
  // another node of a cluster (`moved_away`: its share groups here hand
  // what they queued to the cluster instead of dropping it).
  void unsubscribeAll(Session& s, bool moved_away = false);

  // Called with every message route() is given, before it is matched here
  // (the cluster sends it to the other nodes).
  using RouteHook = std::function<void(const MessagePtr&)>;
  void setRouteHook(RouteHook h) { on_route_ = std::move(h); }

  // Called by retain() with every retained message (or clearing) that did
  // not come from another node (the cluster's bucket of retained messages).
  using RetainHook = std::function<void(const MessagePtr&)>;
  void setRetainHook(RetainHook h) { on_retain_ = std::move(h); }

  // Called instead of queueing a message in a share group whose messages
  // are the cluster's (GroupQueue::cluster): the group's copy goes to the
  // cluster's stream. False: it is queued here after all.
  using GroupHook = std::function<bool(SharedGroup&, const MessagePtr&)>;
  void setGroupHook(GroupHook h) { on_group_ = std::move(h); }

  TopicTree& tree() { return tree_; }
  SharedGroups& groups() { return groups_; }
  RetainedStore& retained() { return retained_; }

 private:
  // One receiving session of a message, its subscriptions merged.
  struct Target {
    Session* session;
    uint8_t qos;
    bool retain_as_published;
    SubscriptionIds ids;
  };

  void remove(Session& s, std::string_view key, bool all, bool moved_away = false);

  const Clock& clock_;
  Durable& durable_;
  Sessions& sessions_;
  SharedGroups& groups_;
  TopicTree tree_;
  RetainedStore retained_;
  RouteHook on_route_;
  RetainHook on_retain_;
  GroupHook on_group_;
  uint64_t match_gen_ = 0;
  // route()'s lists, kept between calls so that a publish allocates none
  // (a route() within a route() finds them taken and uses its own).
  std::vector<Target> targets_;
  std::vector<SharedGroup*> groups_matched_;
};

}  // namespace petrel
