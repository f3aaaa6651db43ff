// src/routing/topic_tree.h — the subscription index: a trie over topic levels with
// `+` and `#` as ordinary children, so a publish walks only the branches that
// can match. Shared subscriptions hang off the same nodes, one group per
// share name: the group's subscription and members. What the group has
// queued is not the tree's business (GroupQueue, src/queues/).
//
// Threading: today the broker runs one event loop that owns the tree. The
// tree holds no pointers into connections, only into sessions, so moving to a
// read-mostly shared index for several loops changes this class, not the
// router.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mqtt/words.h"
#include "src/util/keyed_hash.h"

namespace petrel {

class Session;

struct SubscriptionOptions {
  uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  uint8_t retain_handling = 0;
  uint32_t subscription_id = 0;  // 0 = none
};

struct Subscriber {
  Session* session;
  SubscriptionOptions opts;
};

struct SharedGroup;  // src/queues/shared_group.h

class TopicTree {
 public:
  TopicTree();
  ~TopicTree();

  // Adds or replaces the subscription of `s` to `filter` (or to `filter` in
  // share group `group` when not empty). Returns true if it replaced one.
  bool subscribe(std::string_view filter, std::string_view group, Session* s,
                 const SubscriptionOptions& opts);
  // Returns false if `s` had no such subscription. A share group that is
  // left without members stays (with its queue) until dropGroup().
  bool unsubscribe(std::string_view filter, std::string_view group, Session* s);
  // The share group `group` on `filter`; created when `create`.
  SharedGroup* findGroup(std::string_view filter, std::string_view group, bool create);
  // Removes an unused group (no members, nothing queued or in flight).
  void dropGroup(std::string_view filter, std::string_view group);
  // Every share group, for reports.
  template <typename F>
  void forEachGroup(F&& f);

  // Calls `onMatch(const Subscriber&)` for every plain subscription that
  // matches `topic`, and `onGroup(SharedGroup&)` once for every share group
  // with a matching filter. A session with overlapping subscriptions is
  // reported once per subscription: the router merges them.
  template <typename F, typename G>
  void match(std::string_view topic, F&& onMatch, G&& onGroup);

  size_t subscriptionCount() const { return count_; }

  // Called with a filter when this node gains its first subscription to it
  // (plain, or a share group) and with `on` false when it loses its last
  // (a group counts until dropGroup): the interest a cluster announces.
  using InterestHook = std::function<void(std::string_view filter, bool on)>;
  void setInterestHook(InterestHook h) { interest_ = std::move(h); }

 private:
  struct Node;
  // A node's children. Most nodes have one (a device's own level), so up
  // to kScan of them live in a vector and are compared in turn; past that
  // they move to a hash table: a level under which a fleet's devices each
  // have their own topic has as many children as there are devices.
  class Children {
   public:
    static constexpr size_t kScan = 4;
    size_t size() const { return many_ ? many_->size() : few_.size(); }
    bool empty() const { return size() == 0; }
    Node* find(std::string_view level) const;
    // The child named by the level that starts at `p` (the topic ends at
    // `end`), and in `stop` where that level ends; `stop` is left alone
    // when there is no such child. With a few children each name is
    // compared with the topic where it stands, so the level's end need
    // not be searched for: a name matches when the topic has it and then
    // `/` or its end.
    Node* findAt(const char* p, const char* end, const char*& stop) const {
      if (!many_) {
        const size_t left = static_cast<size_t>(end - p);
        for (const Entry& e : few_) {
          const size_t n = e.name.size();
          if (n <= left && (n == left || p[n] == '/') && mqtt::words::sameBytes(e.name.data(), p, n)) {
            stop = p + n;
            return e.node.get();
          }
        }
        return nullptr;
      }
      const char* const e = levelEnd(p, end);
      auto it = many_->find(std::string_view(p, static_cast<size_t>(e - p)));
      if (it == many_->end()) return nullptr;
      stop = e;
      return it->second.get();
    }
    // The child named `level`, made when missing (`made` says so).
    Node* add(std::string_view level, bool& made);
    // Removes the child named `level` and hands it over (null if none).
    std::unique_ptr<Node> take(std::string_view level);
    template <typename F>
    void forEach(F&& f) const {
      if (many_)
        for (const auto& [name, c] : *many_) f(*c);
      else
        for (const Entry& e : few_) f(*e.node);
    }

   private:
    struct Entry {
      std::string name;
      std::unique_ptr<Node> node;
    };
    // Levels are looked up by string_view (no std::string per lookup),
    // hashed with this process's secret key: clients choose them.
    using Map = std::unordered_map<std::string, std::unique_ptr<Node>, KeyedHash, std::equal_to<>>;
    std::vector<Entry> few_;     // while there are at most kScan children
    std::unique_ptr<Map> many_;  // once there have been more (few_ is then empty)
  };
  // Children and share groups are allocated on first use: most nodes are
  // leaves with one subscriber (a device's own topic).
  struct Node {
    using Groups = std::map<std::string, std::unique_ptr<SharedGroup>, std::less<>>;
    std::unique_ptr<Children> children;
    std::vector<Subscriber> subs;
    std::unique_ptr<Groups> groups;
    // The `+` and `#` children (also in `children`), which every publish
    // looks for at every level it walks: found without a lookup.
    Node* plus = nullptr;
    Node* hash = nullptr;
    // Holds a subscription or a share group (not only children).
    bool interested() const { return !subs.empty() || (groups && !groups->empty()); }
    bool empty() const {
      return (!children || children->empty()) && subs.empty() && (!groups || groups->empty());
    }
    Node* child(std::string_view level) const { return children ? children->find(level) : nullptr; }
    Node* addChild(std::string_view level);
    void eraseChild(std::string_view level);
  };

  // The end of the level that starts at `p`: the next `/`, or `end`.
  static const char* levelEnd(const char* p, const char* end) {
    if (p == end) return end;
    const auto* slash = static_cast<const char*>(std::memchr(p, '/', static_cast<size_t>(end - p)));
    return slash ? slash : end;
  }
  // Matches the levels from `p` to `end` below `n`; `wild` is false only
  // for the first level of a `$` topic.
  template <typename F, typename G>
  static void walk(Node* n, const char* p, const char* end, bool wild, F& onMatch, G& onGroup);
  template <typename F, typename G>
  static void report(Node& n, F& onMatch, G& onGroup);
  template <typename F>
  static void walkGroups(Node& n, F& f);

  bool removeFrom(Node& n, std::string_view filter, std::string_view group, Session* s, bool& lost);
  // The node of `filter`, made when missing.
  Node* nodeOf(std::string_view filter);

  std::unique_ptr<Node> root_;
  size_t count_ = 0;
  InterestHook interest_;
};

template <typename F, typename G>
void TopicTree::report(Node& n, F& onMatch, G& onGroup) {
  for (const Subscriber& s : n.subs) onMatch(s);
  if (n.groups)
    for (auto& [name, g] : *n.groups) onGroup(*g);
}

// The walk follows one path as a loop and recurses only where a level has
// both an exact child and a `+` child: a device's topic of six levels
// under a tree with no wildcards on its path costs six turns of the loop,
// not six calls.
template <typename F, typename G>
void TopicTree::walk(Node* n, const char* p, const char* const end, bool wild,
                     F& onMatch, G& onGroup) {
  while (n->children) {
    // `#` matches this level and everything below, including the parent
    // level itself ("sport/#" matches "sport").
    if (wild && n->hash) report(*n->hash, onMatch, onGroup);
    Node* const plus = wild ? n->plus : nullptr;
    const char* stop = nullptr;
    Node* const exact = n->children->findAt(p, end, stop);
    if (!exact) {
      if (!plus) return;
      stop = levelEnd(p, end);
    }
    if (stop == end) {  // the topic's last level
      for (Node* c : {exact, plus}) {
        if (!c) continue;
        report(*c, onMatch, onGroup);
        if (c->hash) report(*c->hash, onMatch, onGroup);
      }
      return;
    }
    p = stop + 1;
    wild = true;
    if (!plus) {  // then `exact` is not null
      n = exact;
      continue;
    }
    if (exact) walk(exact, p, end, true, onMatch, onGroup);
    n = plus;
  }
}

template <typename F, typename G>
void TopicTree::match(std::string_view topic, F&& onMatch, G&& onGroup) {
  // [MQTT-4.7.2-1] wildcards in the first level never match a `$` topic.
  const bool wild = topic.empty() || topic[0] != '$';
  walk(root_.get(), topic.data(), topic.data() + topic.size(), wild, onMatch, onGroup);
}

template <typename F>
void TopicTree::walkGroups(Node& n, F& f) {
  if (n.groups)
    for (auto& [name, g] : *n.groups) f(*g);
  if (n.children) n.children->forEach([&](Node& child) { walkGroups(child, f); });
}

template <typename F>
void TopicTree::forEachGroup(F&& f) {
  walkGroups(*root_, f);
}

}  // namespace petrel
