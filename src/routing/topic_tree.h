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
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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
  // Levels are looked up by string_view (no std::string per lookup).
  struct LevelHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  // Children and share groups are allocated on first use: most nodes are
  // leaves with one subscriber (a device's own topic), and an empty table
  // costs 48 to 56 bytes.
  struct Node {
    // A hash table: a level under which a fleet's devices each have their
    // own topic has as many children as there are devices.
    using Children = std::unordered_map<std::string, std::unique_ptr<Node>, LevelHash, std::equal_to<>>;
    using Groups = std::map<std::string, std::unique_ptr<SharedGroup>, std::less<>>;
    std::unique_ptr<Children> children;
    std::vector<Subscriber> subs;
    std::unique_ptr<Groups> groups;
    // The `+` and `#` children (also in `children`), which every publish
    // looks for at every level it walks: found without a map lookup.
    Node* plus = nullptr;
    Node* hash = nullptr;
    // Holds a subscription or a share group (not only children).
    bool interested() const { return !subs.empty() || (groups && !groups->empty()); }
    bool empty() const {
      return (!children || children->empty()) && subs.empty() && (!groups || groups->empty());
    }
    Node* child(std::string_view level) const {
      if (!children) return nullptr;
      if (children->size() <= kScanChildren) {
        // A few children: comparing is cheaper than hashing.
        for (const auto& [name, c] : *children)
          if (name == level) return c.get();
        return nullptr;
      }
      auto it = children->find(level);
      return it == children->end() ? nullptr : it->second.get();
    }
    static constexpr size_t kScanChildren = 4;
    Node* addChild(std::string_view level);
    void eraseChild(Children::iterator it);
  };

  template <typename F, typename G>
  void matchNode(Node& n, std::string_view topic, size_t pos, bool root, F& onMatch, G& onGroup);
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

template <typename F, typename G>
void TopicTree::matchNode(Node& n, std::string_view topic, size_t pos, bool root,
                          F& onMatch, G& onGroup) {
  // [MQTT-4.7.2-1] wildcards in the first level never match a `$` topic.
  const bool dollar = root && !topic.empty() && topic[0] == '$';
  if (!n.children) return;
  if (!dollar) {
    // `#` matches this level and everything below, including the parent
    // level itself ("sport/#" matches "sport").
    if (Node* h = n.hash) report(*h, onMatch, onGroup);
  }
  const size_t end = topic.find('/', pos);
  const std::string_view level =
      topic.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
  auto visit = [&](Node& child) {
    if (end == std::string_view::npos) {
      report(child, onMatch, onGroup);
      if (Node* h = child.hash) report(*h, onMatch, onGroup);
    } else {
      matchNode(child, topic, end + 1, false, onMatch, onGroup);
    }
  };
  if (Node* exact = n.child(level)) visit(*exact);
  if (!dollar) {
    if (Node* plus = n.plus) visit(*plus);
  }
}

template <typename F, typename G>
void TopicTree::match(std::string_view topic, F&& onMatch, G&& onGroup) {
  matchNode(*root_, topic, 0, true, onMatch, onGroup);
}

template <typename F>
void TopicTree::walkGroups(Node& n, F& f) {
  if (n.groups)
    for (auto& [name, g] : *n.groups) f(*g);
  if (n.children)
    for (auto& [level, child] : *n.children) walkGroups(*child, f);
}

template <typename F>
void TopicTree::forEachGroup(F&& f) {
  walkGroups(*root_, f);
}

}  // namespace petrel
